"""Helpers for Ballast policies, the same in meaning as the Rust SDK's (ballast-policy-sdk): the queue backlog, the
HPA's replica formulas (tolerance 0.1, rounded up), config parsing with errors that name the field, and decisions."""

import json
import math
from typing import Any, Dict, Optional

from componentize_py_types import Err
from wit_world.exports.policy import Decision, PolicyError_InvalidConfig, PolicyInput, QueueCounts

# The HPA's default tolerance: a usage ratio within 10% of 1.0 proposes no change.
TOLERANCE = 0.1
U32_MAX = 4294967295


def backlog(queue: QueueCounts) -> int:
    """Jobs not yet finished: waiting, prioritized, active and delayed. Paused, failed and waiting-children jobs are
    not work the pods can take now."""
    return queue.waiting + queue.prioritized + queue.active + queue.delayed


def ready_to_run(queue: QueueCounts) -> int:
    """Jobs a pod could pick up right now: waiting and prioritized."""
    return queue.waiting + queue.prioritized


def ceil_replicas(estimate: float) -> int:
    """Rounds a replica estimate up, saturating at 2^32 - 1 (NaN gives 0, as Rust's `as u32`; math.ceil refuses NaN
    and infinities, so they are handled first)."""
    if math.isnan(estimate):
        return 0
    if math.isinf(estimate):
        return U32_MAX if estimate > 0 else 0
    return min(max(math.ceil(estimate), 0), U32_MAX)


def utilization_proposal(current: int, ready: int, usage: float, target: float, tolerance: float) -> Optional[int]:
    """Utilization-style metric (GPU, CPU, memory %, latency): `ceil(ready * usage / target)`, or `current` when the
    ratio is within `tolerance` of 1; None without ready pods or with unusable inputs."""
    if ready == 0 or not math.isfinite(usage) or not math.isfinite(target) or target <= 0 or usage < 0:
        return None
    ratio = usage / target
    if abs(ratio - 1) <= tolerance:
        return current
    return ceil_replicas(ratio * ready)


def per_pod_proposal(current: int, total: float, per_pod: float, tolerance: float) -> Optional[int]:
    """Per-pod average of a total (jobs per pod, requests per second per pod): `ceil(total / per_pod)`, or `current`
    when within `tolerance`; None with unusable inputs. Works from zero replicas."""
    if not math.isfinite(total) or not math.isfinite(per_pod) or per_pod <= 0 or total < 0:
        return None
    if current > 0 and abs(total / (per_pod * current) - 1) <= tolerance:
        return current
    return ceil_replicas(total / per_pod)


def invalid_config(message: str) -> Err:
    """The `invalid-config` error result, to raise."""
    return Err(PolicyError_InvalidConfig(f"config JSON: {message}"))


def _object(pairs):
    keys = [k for k, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise invalid_config(f"duplicate field `{key}`")
    return dict(pairs)


def _refuse_constant(name: str):
    raise invalid_config(f"{name} is not JSON")


def _finite(number) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an integer beyond any float, which serde refuses as out of range
        return False


def parse_config(text: str, fields: Dict[str, Any]) -> Dict[str, Any]:
    """Parses the config JSON (empty means `{}`) against `fields`: name -> `float`, `str` or `bool` for a required
    field, or its default value for an optional one. Unknown, duplicate, missing and mistyped fields raise an
    `invalid-config` error naming the field, as the Rust SDK's `config::parse` with `deny_unknown_fields` does."""
    try:
        raw = json.loads(text if text.strip() else "{}", object_pairs_hook=_object, parse_constant=_refuse_constant)
    except ValueError as e:
        raise invalid_config(str(e))
    if not isinstance(raw, dict):
        raise invalid_config("expected an object")
    expected = ", ".join(f"`{name}`" for name in fields)
    for key in raw:
        if key not in fields:
            raise invalid_config(f"unknown field `{key}`, expected {expected}")
    config = {}
    for name, spec in fields.items():
        required = spec in (float, str, bool)
        if name not in raw:
            if required:
                raise invalid_config(f"missing field `{name}`")
            config[name] = spec
            continue
        kind = spec if required else type(spec)
        value = raw[name]
        if kind in (int, float):
            # JSON has one number type; bool is an int in Python but not a number in JSON.
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
                raise invalid_config(f"`{name}` must be a finite number, not {json.dumps(value)}")
        elif type(value) is not kind:
            raise invalid_config(f"`{name}` must be a {kind.__name__}, not {json.dumps(value)}")
        config[name] = value
    return config


def decision(replicas: int, reason: str) -> Decision:
    """A decision with no per-metric proposals and no state."""
    return Decision(replicas=replicas, reason=reason, proposals=[], state=None)


def hold(input: PolicyInput, why: str) -> Decision:
    """Keep the current replica count."""
    return decision(input.current_replicas, f"holding {input.current_replicas} replicas: {why}")
