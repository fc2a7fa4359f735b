"""{{name}}: a Ballast scaling policy. Scales on the GPU duty cycle with the HPA's formula: replicas =
ceil(ready * duty cycle / target), no change within 10% of the target, and no change while the metric is
unavailable.

componentize-py generates the `wit_world` bindings from wit/ at build time. An error result is raised as
`Err(PolicyError_...)`; any other exception traps, and the host applies the policy's fallback."""

import json
import math

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.policy import Decision, MetricProposal, PolicyError_InvalidConfig, PolicyInput
from wit_world.imports import host

TOLERANCE = 0.1
U32_MAX = 4294967295


def parse_config(text: str) -> float:
    """The target GPU duty cycle (%), `targetGpuPercent` in the config (80 when absent)."""
    try:
        raw = json.loads(text) if text.strip() else {}
    except ValueError as e:
        raise Err(PolicyError_InvalidConfig(f"config JSON: {e}"))
    if not isinstance(raw, dict):
        raise Err(PolicyError_InvalidConfig("config JSON: expected an object"))
    for key in raw:
        if key != "targetGpuPercent":
            raise Err(PolicyError_InvalidConfig(f"config JSON: unknown field `{key}`, expected `targetGpuPercent`"))
    target = raw.get("targetGpuPercent", 80)
    if isinstance(target, bool) or not isinstance(target, (int, float)):
        raise Err(PolicyError_InvalidConfig("config JSON: `targetGpuPercent` must be a number"))
    return float(target)


class Policy(exports.Policy):
    def decide(self, input: PolicyInput) -> Decision:
        target = parse_config(input.config)
        current = input.current_replicas

        def hold(why: str) -> Decision:
            return Decision(replicas=current, reason=f"holding {current} replicas: {why}", proposals=[], state=None)

        gpu = input.observations.gpu_duty_cycle_percent
        if gpu is None:
            return hold("gpu duty cycle unavailable")
        if input.ready_replicas == 0 or not math.isfinite(gpu) or gpu < 0 or not target > 0:
            return hold("no ready pods or an unusable gpu duty cycle")
        ratio = gpu / target
        if abs(ratio - 1) <= TOLERANCE:
            replicas = current
        else:
            replicas = min(max(math.ceil(ratio * input.ready_replicas), 0), U32_MAX)
        if replicas != current:
            host.log(host.LogLevel.DEBUG, f"gpu at {gpu}% of a {target}% target")
        return Decision(
            replicas=replicas,
            reason=f"gpu proposes {replicas}",
            proposals=[MetricProposal(metric="gpu", replicas=replicas)],
            state=None,
        )
