// @ts-check
// {{name}}: a Ballast scaling policy for a queue-fed service. Scales on the BullMQ backlog (waiting, prioritized,
// active and delayed jobs) with the HPA's per-pod formula: replicas = ceil(backlog / jobsPerPod), no change within
// 10% of the target, and no change while the queue counts are unavailable or the queue is paused.
//
// componentize-qjs maps the WIT like this: records are objects with camelCase keys, u64 arrives as a number, an
// absent option is null, and the error case of the result is thrown as `{ tag, val }` (tag: "invalid-config",
// "insufficient-data" or "internal"). Any other exception traps, and the host applies the policy's fallback.
// The helpers in ./ballast.js are the Rust SDK's.

import { decision, hold, parseConfig, perPodProposal, backlog, TOLERANCE } from "./ballast.js";

/**
 * @param {{ currentReplicas: number, config: string,
 *   observations: { queue: (import("./ballast.js").QueueCounts & { isPaused: boolean }) | null } }} input
 */
function decide(input) {
  const cfg = parseConfig(input.config, { jobsPerPod: Number });
  const queue = input.observations.queue;
  if (queue === null) return hold(input, "queue counts unavailable");
  // A paused queue's jobs stay under `waiting`, but no worker takes them: more pods would not help.
  if (queue.isPaused) return hold(input, "the queue is paused");
  const jobs = backlog(queue);
  const replicas = perPodProposal(input.currentReplicas >>> 0, jobs, cfg.jobsPerPod, TOLERANCE);
  if (replicas === null) throw { tag: "invalid-config", val: "config JSON: `jobsPerPod` must be above 0" };
  const result = decision(replicas, `backlog ${jobs} at ${cfg.jobsPerPod} jobs per pod`);
  result.proposals.push({ metric: "backlog", replicas: replicas | 0 });
  return result;
}

export const policy = { decide };
