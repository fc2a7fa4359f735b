// A JavaScript plugin that misbehaves on purpose, for the host's isolation tests (the JavaScript counterpart of
// tests/plugins/hostile). The config's `mode` picks the misdeed.

import { log } from "ballast:policy/host@0.2.0";

let calls = 0;

/** @param {{ currentReplicas: number, nowMs: number, config: string, state: Uint8Array | null }} input */
function decide(input) {
  const cfg = JSON.parse(input.config);
  switch (cfg.mode) {
    case "loop": {
      let n = input.nowMs;
      for (;;) n = (n * 1103515245 + 12345) % 2147483648;
    }
    case "alloc": {
      // Touch every buffer: QuickJS allocates lazily only what is written.
      const hoard = [];
      for (;;) hoard.push(new Uint8Array(8 << 20).fill(1));
    }
    case "throw":
      throw new Error("hostile plugin throws on purpose");
    case "error":
      throw { tag: "internal", val: "hostile plugin returns an error on purpose" };
    case "fixed":
      return { replicas: cfg.replicas, reason: "asks for what its config says", proposals: [], state: null };
    case "log":
      log("warn", "hostile plugin says hello");
      return { replicas: input.currentReplicas, reason: "logged a line", proposals: [], state: null };
    case "print":
      // What a plugin author debugging does first; the host turns the output into log lines.
      console.log("hostile plugin prints to stdout");
      console.error("hostile plugin prints to stderr");
      return { replicas: input.currentReplicas, reason: "printed two lines", proposals: [], state: null };
    case "big-reason":
      return { replicas: input.currentReplicas, reason: "r".repeat(cfg.size), proposals: [], state: null };
    case "escape":
      return { replicas: input.currentReplicas, reason: "\u001b[2J\u001b[31mred\nstt  3  3  forged row", proposals: [], state: null };
    case "count":
      // Counts calls in the instance's memory: shows whether the host kept the instance or started a fresh one.
      calls += 1;
      return { replicas: calls, reason: `call ${calls} of this instance`, proposals: [], state: null };
    default:
      throw { tag: "invalid-config", val: `unknown mode ${cfg.mode}` };
  }
}

export const policy = { decide };
