// @ts-check
// The `hpa` config, parsed exactly as the Rust plugin's serde derive (`rename_all = "camelCase"`,
// `deny_unknown_fields`, serde_json) parses it: the same texts are accepted and the same ones refused. JSON.parse
// is not used because it takes duplicate keys silently and reads out-of-range numbers as Infinity, which
// serde_json refuses.

const FIELDS = [
  "gpuUtilization",
  "cpuUtilization",
  "memoryUtilization",
  "jobsPerPod",
  "latencyP95Ms",
  "requestsPerPod",
  "custom",
  "tolerance",
];
/** Fields serde fills in when absent (`#[serde(default)]`), so a struct-as-array may stop before them. */
const FIELDS_WITHOUT_DEFAULT = 6;
const DEFAULT_TOLERANCE = 0.1;
/** serde_json's recursion limit. */
const MAX_DEPTH = 128;
/** What Rust's `str::trim` removes (Unicode White_Space): a config of only these means `{}`. */
const RUST_WHITESPACE = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$/;

/** A parsed JSON object: its members in document order, duplicates kept. */
class JsonObject {
  /** @param {[string, unknown][]} entries */
  constructor(entries) {
    this.entries = entries;
  }
}

class ConfigError {
  /** @param {string} message */
  constructor(message) {
    this.message = message;
  }
}

/**
 * Strict RFC 8259 JSON, as serde_json reads it.
 * @param {string} text
 * @returns {unknown}
 */
function parseJson(text) {
  let at = 0;
  /** @param {string} what @returns {never} */
  const fail = (what) => {
    const before = text.slice(0, at).split("\n");
    throw new ConfigError(`${what} at line ${before.length} column ${before[before.length - 1].length + 1}`);
  };
  const skipWhitespace = () => {
    while (at < text.length && " \t\n\r".includes(text[at])) at++;
  };
  /** @param {number} depth @returns {unknown} */
  const value = (depth) => {
    skipWhitespace();
    const c = text[at];
    if (c === "{" || c === "[") {
      if (depth >= MAX_DEPTH) fail("recursion limit exceeded");
      return c === "{" ? object(depth + 1) : array(depth + 1);
    }
    if (c === '"') return string();
    if (c === "-" || (c >= "0" && c <= "9")) return number();
    for (const [word, result] of /** @type {[string, unknown][]} */ ([["true", true], ["false", false], ["null", null]])) {
      if (text.startsWith(word, at)) {
        at += word.length;
        return result;
      }
    }
    return fail(at >= text.length ? "EOF while parsing a value" : "expected value");
  };
  /** @param {number} depth */
  const object = (depth) => {
    at++;
    /** @type {[string, unknown][]} */
    const entries = [];
    skipWhitespace();
    if (text[at] === "}") {
      at++;
      return new JsonObject(entries);
    }
    for (;;) {
      skipWhitespace();
      if (text[at] !== '"') fail("key must be a string");
      const key = string();
      skipWhitespace();
      if (text[at] !== ":") fail("expected `:`");
      at++;
      entries.push([key, value(depth)]);
      skipWhitespace();
      if (text[at] === ",") at++;
      else if (text[at] === "}") {
        at++;
        return new JsonObject(entries);
      } else fail("expected `,` or `}`");
    }
  };
  /** @param {number} depth */
  const array = (depth) => {
    at++;
    const items = [];
    skipWhitespace();
    if (text[at] === "]") {
      at++;
      return items;
    }
    for (;;) {
      items.push(value(depth));
      skipWhitespace();
      if (text[at] === ",") at++;
      else if (text[at] === "]") {
        at++;
        return items;
      } else fail("expected `,` or `]`");
    }
  };
  const number = () => {
    const match = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(at));
    if (match === null) return fail("invalid number");
    at += match[0].length;
    const n = Number(match[0]);
    if (!Number.isFinite(n)) fail("number out of range");
    return n;
  };
  const string = () => {
    at++;
    let out = "";
    for (;;) {
      if (at >= text.length) fail("EOF while parsing a string");
      const c = text[at++];
      if (c === '"') return out;
      if (c < " ") fail("control character (\\u0000-\\u001F) found while parsing a string");
      if (c !== "\\") {
        out += c;
        continue;
      }
      const e = text[at++];
      const simple = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" }[e];
      if (simple !== undefined) {
        out += simple;
        continue;
      }
      if (e !== "u") fail("invalid escape");
      const unit = hex4();
      if (unit >= 0xdc00 && unit <= 0xdfff) fail("lone trailing surrogate in hex escape");
      if (unit >= 0xd800 && unit <= 0xdbff) {
        if (text[at] !== "\\" || text[at + 1] !== "u") fail("lone leading surrogate in hex escape");
        at += 2;
        const low = hex4();
        if (low < 0xdc00 || low > 0xdfff) fail("lone leading surrogate in hex escape");
        out += String.fromCharCode(unit, low);
      } else out += String.fromCharCode(unit);
    }
  };
  const hex4 = () => {
    const digits = text.slice(at, at + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(digits)) fail("invalid escape");
    at += 4;
    return parseInt(digits, 16);
  };

  const result = value(0);
  skipWhitespace();
  if (at < text.length) fail("trailing characters");
  return result;
}

/** serde's words for what it found. @param {unknown} v */
function describe(v) {
  if (v === null) return "null";
  if (v instanceof JsonObject) return "map";
  if (Array.isArray(v)) return "sequence";
  if (typeof v === "string") return `string ${JSON.stringify(v)}`;
  if (typeof v === "boolean") return `boolean \`${v}\``;
  return `floating point \`${v}\``;
}

/** @param {unknown} v @param {string} field @returns {number} */
function f64(v, field) {
  if (typeof v !== "number") throw new ConfigError(`invalid type: ${describe(v)}, expected f64 (field \`${field}\`)`);
  return v;
}

/** @param {unknown} v @param {string} field */
function optionalF64(v, field) {
  return v === null ? null : f64(v, field);
}

/**
 * `custom`: a map of metric name to per-pod target, in Rust's BTreeMap order (by code point); a repeated name keeps
 * its last value, as BTreeMap::insert does.
 * @param {unknown} v
 * @returns {[string, number][]}
 */
function customTargets(v) {
  if (!(v instanceof JsonObject)) throw new ConfigError(`invalid type: ${describe(v)}, expected a map (field \`custom\`)`);
  /** @type {Map<string, number>} */
  const targets = new Map();
  for (const [name, target] of v.entries) targets.set(name, f64(target, `custom.${name}`));
  return [...targets.entries()].sort(([a], [b]) => compareCodePoints(a, b));
}

/** Orders strings by code point (Rust's `str` order), not by UTF-16 unit. @param {string} a @param {string} b */
function compareCodePoints(a, b) {
  const x = Array.from(a, (c) => /** @type {number} */ (c.codePointAt(0)));
  const y = Array.from(b, (c) => /** @type {number} */ (c.codePointAt(0)));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/**
 * @param {unknown} doc
 * @returns {import("./policy.js").HpaConfig}
 */
function toConfig(doc) {
  /** @type {Map<string, unknown>} */
  const given = new Map();
  if (doc instanceof JsonObject) {
    for (const [key, v] of doc.entries) {
      if (!FIELDS.includes(key)) {
        const expected = FIELDS.map((f) => `\`${f}\``).join(", ");
        throw new ConfigError(`unknown field \`${key}\`, expected one of ${expected}`);
      }
      if (given.has(key)) throw new ConfigError(`duplicate field \`${key}\``);
      given.set(key, v);
    }
  } else if (Array.isArray(doc)) {
    // serde derive also reads a struct from an array of its fields in order.
    if (doc.length < FIELDS_WITHOUT_DEFAULT || doc.length > FIELDS.length) {
      throw new ConfigError(`invalid length ${doc.length}, expected struct HpaConfig with 8 elements`);
    }
    doc.forEach((v, i) => given.set(FIELDS[i], v));
  } else {
    throw new ConfigError(`invalid type: ${describe(doc)}, expected struct HpaConfig`);
  }
  /** @param {string} field */
  const optional = (field) => optionalF64(given.has(field) ? given.get(field) : null, field);
  return {
    gpuUtilization: optional("gpuUtilization"),
    cpuUtilization: optional("cpuUtilization"),
    memoryUtilization: optional("memoryUtilization"),
    jobsPerPod: optional("jobsPerPod"),
    latencyP95Ms: optional("latencyP95Ms"),
    requestsPerPod: optional("requestsPerPod"),
    custom: given.has("custom") ? customTargets(given.get("custom")) : [],
    tolerance: given.has("tolerance") ? f64(given.get("tolerance"), "tolerance") : DEFAULT_TOLERANCE,
  };
}

/** @type {{ text: string, config: import("./policy.js").HpaConfig } | null} */
let cached = null;

/**
 * Parses the config JSON (empty means `{}`); the parsed value is kept while the text stays the same. Errors are
 * thrown as the WIT `invalid-config` case.
 * @param {string} text
 */
export function parseConfig(text) {
  if (cached !== null && cached.text === text) return cached.config;
  try {
    const config = toConfig(parseJson(RUST_WHITESPACE.test(text) ? "{}" : text));
    cached = { text, config };
    return config;
  } catch (e) {
    if (e instanceof ConfigError) throw { tag: "invalid-config", val: `config JSON: ${e.message}` };
    throw e;
  }
}
