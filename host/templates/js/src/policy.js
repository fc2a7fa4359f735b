// @ts-check
// {{name}}: a Ballast scaling policy. Scales on the GPU duty cycle with the HPA's formula: replicas =
// ceil(ready * duty cycle / target), no change within 10% of the target, and no change while the metric is
// unavailable.
//
// componentize-qjs maps the WIT like this: records are objects with camelCase keys, u64 arrives as a number, an
// absent option is null, and the error case of the result is thrown as `{ tag, val }` (tag: "invalid-config",
// "insufficient-data" or "internal"). Any other exception traps, and the host applies the policy's fallback.
// componentize-qjs 0.4.5 passes u32 through an i32: read u32 arguments as `x >>> 0` and return u32 results as
// `x | 0`, or values of 2^31 and more come out wrong.

import { log } from "ballast:policy/host@0.2.0";

const TOLERANCE = 0.1;
const U32_MAX = 4294967295;

/** @param {string} text @returns {{ targetGpuPercent: number }} */
function parseConfig(text) {
  let raw;
  try {
    raw = text.trim() === "" ? {} : JSON.parse(text);
  } catch (e) {
    throw { tag: "invalid-config", val: `config JSON: ${e}` };
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw { tag: "invalid-config", val: "config JSON: expected an object" };
  }
  for (const key of Object.keys(raw)) {
    if (key !== "targetGpuPercent") {
      throw { tag: "invalid-config", val: `config JSON: unknown field \`${key}\`, expected \`targetGpuPercent\`` };
    }
  }
  const target = raw.targetGpuPercent ?? 80;
  if (typeof target !== "number") {
    throw { tag: "invalid-config", val: "config JSON: `targetGpuPercent` must be a number" };
  }
  return { targetGpuPercent: target };
}

/**
 * @param {{ currentReplicas: number, readyReplicas: number, config: string,
 *   observations: { gpuDutyCyclePercent: number | null } }} input
 */
function decide(input) {
  const cfg = parseConfig(input.config);
  const current = input.currentReplicas >>> 0;
  const hold = (/** @type {string} */ why) => ({
    replicas: current,
    reason: `holding ${current} replicas: ${why}`,
    proposals: [],
    state: null,
  });
  const gpu = input.observations.gpuDutyCyclePercent;
  if (gpu === null) return hold("gpu duty cycle unavailable");
  const target = cfg.targetGpuPercent;
  if (input.readyReplicas === 0 || !Number.isFinite(gpu) || gpu < 0 || !(target > 0)) {
    return hold("no ready pods or an unusable gpu duty cycle");
  }
  const ratio = gpu / target;
  const ready = input.readyReplicas >>> 0;
  const replicas =
    Math.abs(ratio - 1) <= TOLERANCE ? current : Math.min(Math.max(Math.ceil(ratio * ready), 0), U32_MAX);
  if (replicas !== current) log("debug", `gpu at ${gpu}% of a ${target}% target`);
  const proposals = [{ metric: "gpu", replicas: replicas | 0 }];
  return { replicas: replicas | 0, reason: `gpu proposes ${replicas}`, proposals, state: null };
}

export const policy = { decide };
