// @ts-check
// `hpa` in JavaScript: the Kubernetes HPA's multi-metric formula, decision for decision the same as the Rust plugin
// in plugins/hpa (host/tests/languages.rs feeds both the same 1,000 random inputs). Each configured target gives a
// proposal (the HPA formula, tolerance 0.1 by default); the decision is the largest. A configured metric that is
// unavailable never lets the result fall below the current replica count.
//
// Built with componentize-qjs (QuickJS): `ballast plugin build plugins/hpa-js`. How componentize-qjs maps the WIT:
// records are objects with camelCase keys, u64 arrives as a number, an absent option is null, and the error case of
// the result is thrown as `{ tag, val }`. Integers cross the boundary through abi.js.

/**
 * @typedef {{ waiting: number, prioritized: number, paused: number, active: number, delayed: number,
 *   failed: number, waitingChildren: number, completedSinceLast: number | null,
 *   isPaused: boolean }} QueueCounts
 * @typedef {{ gpuDutyCyclePercent: number | null, cpuPercentOfRequest: number | null,
 *   memoryPercentOfRequest: number | null, queue: QueueCounts | null, latencyP50Ms: number | null,
 *   latencyP95Ms: number | null, latencyP99Ms: number | null, requestRate: number | null,
 *   custom: { name: string, value: number }[] }} Observations
 * @typedef {{ service: { namespace: string, name: string }, nowMs: number, currentReplicas: number,
 *   readyReplicas: number, minReplicas: number, maxReplicas: number, config: string, state: Uint8Array | null,
 *   observations: Observations }} PolicyInput
 * @typedef {{ metric: string, replicas: number }} MetricProposal
 * @typedef {{ replicas: number, reason: string, proposals: MetricProposal[], state: Uint8Array | null }} Decision
 * @typedef {{ gpuUtilization: number | null, cpuUtilization: number | null, memoryUtilization: number | null,
 *   jobsPerPod: number | null, latencyP95Ms: number | null, requestsPerPod: number | null,
 *   custom: [string, number][], tolerance: number }} HpaConfig
 */

import { fromU32, fromU64, toU32 } from "./abi.js";
import { parseConfig } from "./config.js";

/** The HPA's default tolerance: a usage ratio within 10% of 1.0 proposes no change. */
const TOLERANCE = 0.1;
const U32_MAX = 4294967295;

/**
 * Rounds a replica estimate up, saturating at u32::MAX, exactly as the Rust SDK's `ceil_replicas` (`NaN as u32`
 * is 0 there).
 * @param {number} estimate
 */
function ceilReplicas(estimate) {
  const up = Math.ceil(estimate);
  if (up >= U32_MAX) return U32_MAX;
  if (up <= 0 || Number.isNaN(up)) return 0;
  return up;
}

/**
 * Utilization-style metric: `ceil(ready * usage / target)`, or `current` within tolerance; null without ready pods
 * or with unusable inputs.
 * @param {number} current @param {number} ready @param {number} usage @param {number} target
 * @param {number} tolerance
 */
function utilizationProposal(current, ready, usage, target, tolerance) {
  if (ready === 0 || !Number.isFinite(usage) || !Number.isFinite(target) || target <= 0 || usage < 0) return null;
  const ratio = usage / target;
  if (Math.abs(ratio - 1) <= tolerance) return current;
  return ceilReplicas(ratio * ready);
}

/**
 * Per-pod average of a total: `ceil(total / perPod)`, or `current` within tolerance. Works from zero replicas.
 * @param {number} current @param {number} total @param {number} perPod @param {number} tolerance
 */
function perPodProposal(current, total, perPod, tolerance) {
  if (!Number.isFinite(total) || !Number.isFinite(perPod) || perPod <= 0 || total < 0) return null;
  if (current > 0) {
    const ratio = total / (perPod * current);
    if (Math.abs(ratio - 1) <= tolerance) return current;
  }
  return ceilReplicas(total / perPod);
}

/**
 * @param {PolicyInput} input
 * @returns {Decision}
 */
function decide(input) {
  const cfg = parseConfig(input.config);
  const obs = input.observations;
  const current = fromU32(input.currentReplicas);
  const ready = fromU32(input.readyReplicas);
  const tol = cfg.tolerance;

  /** @type {MetricProposal[]} */
  const proposals = [];
  /** @type {string[]} */
  const missing = [];
  /** @param {string} name @param {number | null} target @param {number | null} proposal */
  const consider = (name, target, proposal) => {
    if (target === null) return;
    if (proposal === null) missing.push(name);
    else proposals.push({ metric: name, replicas: proposal });
  };
  /** @param {number | null} value @param {number | null} target */
  const utilization = (value, target) =>
    value === null || target === null ? null : utilizationProposal(current, ready, value, target, tol);
  /** @param {number | null} total @param {number | null} target */
  const perPod = (total, target) =>
    total === null || target === null ? null : perPodProposal(current, total, target, tol);

  consider("gpu", cfg.gpuUtilization, utilization(obs.gpuDutyCyclePercent, cfg.gpuUtilization));
  consider("cpu", cfg.cpuUtilization, utilization(obs.cpuPercentOfRequest, cfg.cpuUtilization));
  consider("memory", cfg.memoryUtilization, utilization(obs.memoryPercentOfRequest, cfg.memoryUtilization));
  const q = obs.queue;
  if (q !== null && q.isPaused) {
    // A paused queue's jobs wait for the resume: hold for them (as the Rust `hpa` does).
    consider("queue-paused", cfg.jobsPerPod, current);
  } else {
    const backlog =
      q === null ? null : fromU64(q.waiting) + fromU64(q.prioritized) + fromU64(q.active) + fromU64(q.delayed);
    consider("queue", cfg.jobsPerPod, perPod(backlog, cfg.jobsPerPod));
  }
  consider("latency-p95", cfg.latencyP95Ms, utilization(obs.latencyP95Ms, cfg.latencyP95Ms));
  consider("request-rate", cfg.requestsPerPod, perPod(obs.requestRate, cfg.requestsPerPod));
  for (const [name, target] of cfg.custom) {
    const metric = obs.custom.find((m) => m.name === name);
    consider(name, target, perPod(metric === undefined ? null : metric.value, target));
  }

  // Capped at maxReplicas (or the current count, if above) as the HPA caps it. Among equal proposals the last one
  // names the reason, as Rust's `max_by_key` picks the last maximum.
  const cap = Math.max(fromU32(input.maxReplicas), current);
  /** @type {MetricProposal | null} */
  let best = null;
  for (const p of proposals) if (best === null || p.replicas >= best.replicas) best = p;
  let replicas;
  let reason;
  if (best !== null) {
    replicas = Math.min(best.replicas, cap);
    reason = `${best.metric} proposes ${replicas} (largest of ${proposals.length})`;
  } else {
    replicas = current;
    reason = `no configured metric available; holding ${current}`;
  }
  if (missing.length > 0 && replicas < current) {
    reason = `${reason}; ${missing.join(", ")} unavailable, so no scale-down below ${current}`;
    replicas = current;
  }
  return {
    replicas: toU32(replicas),
    reason,
    proposals: proposals.map((p) => ({ metric: p.metric, replicas: toU32(p.replicas) })),
    state: null,
  };
}

export const policy = { decide };
