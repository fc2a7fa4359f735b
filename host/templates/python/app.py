"""{{name}}: a Ballast scaling policy for a queue-fed service. Scales on the BullMQ backlog (waiting, prioritized,
active and delayed jobs) with the HPA's per-pod formula: replicas = ceil(backlog / jobsPerPod), no change within 10%
of the target, and no change while the queue counts are unavailable or the queue is paused.

componentize-py generates the `wit_world` bindings from wit/ at build time. An error result is raised as
`Err(PolicyError_...)`; any other exception traps, and the host applies the policy's fallback. The helpers in
ballast_sdk.py are the Rust SDK's."""

from wit_world import exports
from wit_world.exports.policy import Decision, MetricProposal, PolicyInput

from ballast_sdk import TOLERANCE, backlog, decision, hold, invalid_config, parse_config, per_pod_proposal


class Policy(exports.Policy):
    def decide(self, input: PolicyInput) -> Decision:
        cfg = parse_config(input.config, {"jobsPerPod": float})
        queue = input.observations.queue
        if queue is None:
            return hold(input, "queue counts unavailable")
        # A paused queue's jobs stay under `waiting`, but no worker takes them: more pods would not help.
        if queue.is_paused:
            return hold(input, "the queue is paused")
        jobs = backlog(queue)
        replicas = per_pod_proposal(input.current_replicas, jobs, cfg["jobsPerPod"], TOLERANCE)
        if replicas is None:
            raise invalid_config("`jobsPerPod` must be above 0")
        result = decision(replicas, f"backlog {jobs} at {cfg['jobsPerPod']} jobs per pod")
        result.proposals.append(MetricProposal(metric="backlog", replicas=replicas))
        return result
