// @ts-check
// Helpers for Ballast policies, the same in meaning as the Rust SDK's (ballast-policy-sdk): the queue backlog, the
// HPA's replica formulas (tolerance 0.1, rounded up), config parsing with errors that name the field, and decisions.
//
// componentize-qjs 0.4.5 passes u32 through an i32: u32 arguments are read as `x >>> 0` and u32 results returned as
// `x | 0` (here, in `hold` and `decision`), or values of 2^31 and more come out wrong.

/** The HPA's default tolerance: a usage ratio within 10% of 1.0 proposes no change. */
export const TOLERANCE = 0.1;
const U32_MAX = 4294967295;

/**
 * @typedef {{ waiting: number, prioritized: number, active: number, delayed: number }} QueueCounts
 * @typedef {{ metric: string, replicas: number }} MetricProposal
 * @typedef {{ replicas: number, reason: string, proposals: MetricProposal[], state: Uint8Array | null }} Decision
 */

/**
 * Jobs not yet finished: waiting, prioritized, active and delayed. Paused, failed and waiting-children jobs are not
 * work the pods can take now.
 * @param {QueueCounts} queue
 */
export function backlog(queue) {
  return queue.waiting + queue.prioritized + queue.active + queue.delayed;
}

/** Jobs a pod could pick up right now: waiting and prioritized. @param {QueueCounts} queue */
export function readyToRun(queue) {
  return queue.waiting + queue.prioritized;
}

/** Rounds a replica estimate up, saturating at 2^32 - 1 (NaN gives 0, as Rust's `as u32`). @param {number} estimate */
export function ceilReplicas(estimate) {
  const up = Math.ceil(estimate);
  if (up >= U32_MAX) return U32_MAX;
  return up > 0 ? up : 0;
}

/**
 * Utilization-style metric (GPU, CPU, memory %, latency): `ceil(ready * usage / target)`, or `current` when the
 * ratio is within `tolerance` of 1; null without ready pods or with unusable inputs.
 * @param {number} current @param {number} ready @param {number} usage @param {number} target @param {number} tolerance
 * @returns {number | null}
 */
export function utilizationProposal(current, ready, usage, target, tolerance) {
  if (ready === 0 || !Number.isFinite(usage) || !Number.isFinite(target) || target <= 0 || usage < 0) return null;
  const ratio = usage / target;
  if (Math.abs(ratio - 1) <= tolerance) return current;
  return ceilReplicas(ratio * ready);
}

/**
 * Per-pod average of a total (jobs per pod, requests per second per pod): `ceil(total / perPod)`, or `current` when
 * within `tolerance`; null with unusable inputs. Works from zero replicas.
 * @param {number} current @param {number} total @param {number} perPod @param {number} tolerance
 * @returns {number | null}
 */
export function perPodProposal(current, total, perPod, tolerance) {
  if (!Number.isFinite(total) || !Number.isFinite(perPod) || perPod <= 0 || total < 0) return null;
  if (current > 0 && Math.abs(total / (perPod * current) - 1) <= tolerance) return current;
  return ceilReplicas(total / perPod);
}

/** @param {string} message @returns {never} */
function invalidConfig(message) {
  throw { tag: "invalid-config", val: `config JSON: ${message}` };
}

/**
 * Parses the config JSON (empty means `{}`) against `fields`: name -> `Number`, `String` or `Boolean` for a required
 * field, or its default value for an optional one. Unknown, missing and mistyped fields are an `invalid-config`
 * error naming the field, as the Rust SDK's `config::parse` with `deny_unknown_fields` reports them. (JSON.parse
 * keeps the last of duplicate keys, where serde refuses them.)
 * @param {string} text @param {Record<string, unknown>} fields @returns {Record<string, any>}
 */
export function parseConfig(text, fields) {
  let raw;
  try {
    raw = text.trim() === "" ? {} : JSON.parse(text);
  } catch (e) {
    invalidConfig(String(e));
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) invalidConfig("expected an object");
  const names = Object.keys(fields);
  const expected = names.map((n) => `\`${n}\``).join(", ");
  for (const key of Object.keys(raw)) {
    if (!names.includes(key)) invalidConfig(`unknown field \`${key}\`, expected ${expected}`);
  }
  /** @type {Record<string, any>} */
  const config = {};
  for (const [name, spec] of Object.entries(fields)) {
    const required = spec === Number || spec === String || spec === Boolean;
    if (!(name in raw)) {
      if (required) invalidConfig(`missing field \`${name}\``);
      config[name] = spec;
      continue;
    }
    const type = required ? spec.name.toLowerCase() : typeof spec;
    const value = raw[name];
    // 1e400 parses to Infinity, which serde refuses as out of range.
    if (typeof value !== type || (type === "number" && !Number.isFinite(value))) {
      const shown = typeof value === "number" ? String(value) : JSON.stringify(value);
      invalidConfig(`\`${name}\` must be a ${type === "number" ? "finite number" : type}, not ${shown}`);
    }
    config[name] = value;
  }
  return config;
}

/**
 * A decision with no per-metric proposals and no state.
 * @param {number} replicas @param {string} reason @returns {Decision}
 */
export function decision(replicas, reason) {
  return { replicas: replicas | 0, reason, proposals: [], state: null };
}

/**
 * Keep the current replica count.
 * @param {{ currentReplicas: number }} input @param {string} why @returns {Decision}
 */
export function hold(input, why) {
  const current = input.currentReplicas >>> 0;
  return decision(current, `holding ${current} replicas: ${why}`);
}
