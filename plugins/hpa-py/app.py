"""`hpa` in Python: the Kubernetes HPA's multi-metric formula, decision for decision the same as the Rust plugin in
plugins/hpa (host/tests/languages.rs feeds both the same 1,000 random inputs). Each configured target gives a
proposal (the HPA formula, tolerance 0.1 by default); the decision is the largest. A configured metric that is
unavailable never lets the result fall below the current replica count.

Built with componentize-py: `ballast plugin build plugins/hpa-py`. The bindings (`wit_world`) are generated at build
time from the WIT; an error result is raised as `Err(PolicyError_...)`."""

import math
from typing import List, Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.policy import Decision, MetricProposal, PolicyError_InvalidConfig, PolicyInput

from hpa_config import ConfigError, parse_config

# The HPA's default tolerance: a usage ratio within 10% of 1.0 proposes no change.
TOLERANCE = 0.1
U32_MAX = 4294967295


def ceil_replicas(estimate: float) -> int:
    """Rounds a replica estimate up, saturating at u32::MAX, exactly as the Rust SDK's `ceil_replicas` (`NaN as u32`
    is 0 there; math.ceil refuses NaN and infinities, so they are handled first)."""
    if math.isnan(estimate):
        return 0
    if math.isinf(estimate):
        return U32_MAX if estimate > 0 else 0
    up = math.ceil(estimate)
    if up >= U32_MAX:
        return U32_MAX
    return 0 if up <= 0 else up


def utilization_proposal(current: int, ready: int, usage: float, target: float, tolerance: float) -> Optional[int]:
    """Utilization-style metric: `ceil(ready * usage / target)`, or `current` within tolerance; None without ready
    pods or with unusable inputs."""
    if ready == 0 or not math.isfinite(usage) or not math.isfinite(target) or target <= 0.0 or usage < 0.0:
        return None
    ratio = usage / target
    if abs(ratio - 1.0) <= tolerance:
        return current
    return ceil_replicas(ratio * float(ready))


def per_pod_proposal(current: int, total: float, per_pod: float, tolerance: float) -> Optional[int]:
    """Per-pod average of a total: `ceil(total / per_pod)`, or `current` within tolerance. Works from zero replicas."""
    if not math.isfinite(total) or not math.isfinite(per_pod) or per_pod <= 0.0 or total < 0.0:
        return None
    if current > 0:
        ratio = total / (per_pod * float(current))
        if abs(ratio - 1.0) <= tolerance:
            return current
    return ceil_replicas(total / per_pod)


def decide(input: PolicyInput) -> Decision:
    try:
        cfg = parse_config(input.config)
    except ConfigError as e:
        raise Err(PolicyError_InvalidConfig(f"config JSON: {e}"))
    obs = input.observations
    current, ready, tol = input.current_replicas, input.ready_replicas, cfg.tolerance

    proposals: List[MetricProposal] = []
    missing: List[str] = []

    def consider(name: str, target: Optional[float], proposal: Optional[int]):
        if target is None:
            return
        if proposal is None:
            missing.append(name)
        else:
            proposals.append(MetricProposal(metric=name, replicas=proposal))

    def utilization(value: Optional[float], target: Optional[float]) -> Optional[int]:
        if value is None or target is None:
            return None
        return utilization_proposal(current, ready, value, target, tol)

    def per_pod(total: Optional[float], target: Optional[float]) -> Optional[int]:
        if total is None or target is None:
            return None
        return per_pod_proposal(current, total, target, tol)

    consider("gpu", cfg.gpu_utilization, utilization(obs.gpu_duty_cycle_percent, cfg.gpu_utilization))
    consider("cpu", cfg.cpu_utilization, utilization(obs.cpu_percent_of_request, cfg.cpu_utilization))
    consider("memory", cfg.memory_utilization, utilization(obs.memory_percent_of_request, cfg.memory_utilization))
    q = obs.queue
    if q is not None and q.is_paused:
        # A paused queue's jobs wait for the resume: hold for them (as the Rust `hpa` does).
        consider("queue-paused", cfg.jobs_per_pod, current)
    else:
        # Summed as u64 and converted once, as the Rust SDK's `backlog() as f64`.
        backlog = None if q is None else float((q.waiting + q.prioritized + q.active + q.delayed) & 0xFFFF_FFFF_FFFF_FFFF)
        consider("queue", cfg.jobs_per_pod, per_pod(backlog, cfg.jobs_per_pod))
    consider("latency-p95", cfg.latency_p95_ms, utilization(obs.latency_p95_ms, cfg.latency_p95_ms))
    consider("request-rate", cfg.requests_per_pod, per_pod(obs.request_rate, cfg.requests_per_pod))
    for name, target in cfg.custom:
        value = next((m.value for m in obs.custom if m.name == name), None)
        consider(name, target, per_pod(value, target))

    # Capped at maxReplicas (or the current count, if above) as the HPA caps it. Among equal proposals the last one
    # names the reason, as Rust's `max_by_key` picks the last maximum (Python's max() would pick the first).
    cap = max(input.max_replicas, current)
    best: Optional[MetricProposal] = None
    for p in proposals:
        if best is None or p.replicas >= best.replicas:
            best = p
    if best is not None:
        replicas = min(best.replicas, cap)
        reason = f"{best.metric} proposes {replicas} (largest of {len(proposals)})"
    else:
        replicas = current
        reason = f"no configured metric available; holding {current}"
    if missing and replicas < current:
        reason = f"{reason}; {', '.join(missing)} unavailable, so no scale-down below {current}"
        replicas = current
    return Decision(replicas=replicas, reason=reason, proposals=proposals, state=None)


class Policy(exports.Policy):
    def decide(self, input: PolicyInput) -> Decision:
        return decide(input)
