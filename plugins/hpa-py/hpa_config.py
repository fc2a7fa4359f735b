"""The `hpa` config, parsed exactly as the Rust plugin's serde derive (`rename_all = "camelCase"`,
`deny_unknown_fields`, serde_json) parses it: the same texts are accepted and the same ones refused. The json module
is not used because it takes duplicate keys, NaN and Infinity, which serde_json refuses."""

import math
import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

FIELDS = [
    "gpuUtilization",
    "cpuUtilization",
    "memoryUtilization",
    "jobsPerPod",
    "latencyP95Ms",
    "requestsPerPod",
    "custom",
    "tolerance",
]
# Fields serde fills in when absent (`#[serde(default)]`), so a struct-as-array may stop before them.
FIELDS_WITHOUT_DEFAULT = 6
DEFAULT_TOLERANCE = 0.1
# serde_json's recursion limit.
MAX_DEPTH = 128
# What Rust's `str::trim` removes (Unicode White_Space): a config of only these means `{}`.
RUST_WHITESPACE = re.compile("[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*")
NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
HEX4 = re.compile("[0-9a-fA-F]{4}")
ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


@dataclass
class HpaConfig:
    gpu_utilization: Optional[float]
    cpu_utilization: Optional[float]
    memory_utilization: Optional[float]
    jobs_per_pod: Optional[float]
    latency_p95_ms: Optional[float]
    requests_per_pod: Optional[float]
    custom: List[Tuple[str, float]]
    tolerance: float


class ConfigError(Exception):
    pass


class JsonObject:
    """A parsed JSON object: its members in document order, duplicates kept."""

    def __init__(self, entries: List[Tuple[str, object]]):
        self.entries = entries


class _Parser:
    """Strict RFC 8259 JSON, as serde_json reads it."""

    def __init__(self, text: str):
        self.text = text
        self.at = 0

    def fail(self, what: str):
        before = self.text[: self.at].split("\n")
        raise ConfigError(f"{what} at line {len(before)} column {len(before[-1]) + 1}")

    def peek(self) -> str:
        return self.text[self.at] if self.at < len(self.text) else ""

    def skip_whitespace(self):
        while self.at < len(self.text) and self.text[self.at] in " \t\n\r":
            self.at += 1

    def document(self) -> object:
        result = self.value(0)
        self.skip_whitespace()
        if self.at < len(self.text):
            self.fail("trailing characters")
        return result

    def value(self, depth: int) -> object:
        self.skip_whitespace()
        c = self.peek()
        if c in ("{", "["):
            if depth >= MAX_DEPTH:
                self.fail("recursion limit exceeded")
            return self.object(depth + 1) if c == "{" else self.array(depth + 1)
        if c == '"':
            return self.string()
        if c == "-" or "0" <= c <= "9":
            return self.number()
        for word, result in (("true", True), ("false", False), ("null", None)):
            if self.text.startswith(word, self.at):
                self.at += len(word)
                return result
        self.fail("EOF while parsing a value" if c == "" else "expected value")

    def object(self, depth: int) -> JsonObject:
        self.at += 1
        entries: List[Tuple[str, object]] = []
        self.skip_whitespace()
        if self.peek() == "}":
            self.at += 1
            return JsonObject(entries)
        while True:
            self.skip_whitespace()
            if self.peek() != '"':
                self.fail("key must be a string")
            key = self.string()
            self.skip_whitespace()
            if self.peek() != ":":
                self.fail("expected `:`")
            self.at += 1
            entries.append((key, self.value(depth)))
            self.skip_whitespace()
            c = self.peek()
            self.at += 1
            if c == "}":
                return JsonObject(entries)
            if c != ",":
                self.at -= 1
                self.fail("expected `,` or `}`")

    def array(self, depth: int) -> list:
        self.at += 1
        items: list = []
        self.skip_whitespace()
        if self.peek() == "]":
            self.at += 1
            return items
        while True:
            items.append(self.value(depth))
            self.skip_whitespace()
            c = self.peek()
            self.at += 1
            if c == "]":
                return items
            if c != ",":
                self.at -= 1
                self.fail("expected `,` or `]`")

    def number(self) -> float:
        match = NUMBER.match(self.text, self.at)
        if match is None:
            self.fail("invalid number")
        self.at = match.end()
        try:
            n = float(match.group(0))
        except OverflowError:
            n = math.inf
        if not math.isfinite(n):
            self.fail("number out of range")
        return n

    def string(self) -> str:
        self.at += 1
        out = []
        while True:
            if self.at >= len(self.text):
                self.fail("EOF while parsing a string")
            c = self.text[self.at]
            self.at += 1
            if c == '"':
                return "".join(out)
            if c < " ":
                self.fail("control character (\\u0000-\\u001F) found while parsing a string")
            if c != "\\":
                out.append(c)
                continue
            e = self.peek()
            self.at += 1
            if e in ESCAPES:
                out.append(ESCAPES[e])
                continue
            if e != "u":
                self.fail("invalid escape")
            unit = self.hex4()
            if 0xDC00 <= unit <= 0xDFFF:
                self.fail("lone trailing surrogate in hex escape")
            if 0xD800 <= unit <= 0xDBFF:
                if not self.text.startswith("\\u", self.at):
                    self.fail("lone leading surrogate in hex escape")
                self.at += 2
                low = self.hex4()
                if not 0xDC00 <= low <= 0xDFFF:
                    self.fail("lone leading surrogate in hex escape")
                out.append(chr(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)))
            else:
                out.append(chr(unit))

    def hex4(self) -> int:
        if HEX4.fullmatch(self.text, self.at, self.at + 4) is None:
            self.fail("invalid escape")
        self.at += 4
        return int(self.text[self.at - 4 : self.at], 16)


def _describe(v: object) -> str:
    """serde's words for what it found."""
    if v is None:
        return "null"
    if isinstance(v, JsonObject):
        return "map"
    if isinstance(v, list):
        return "sequence"
    if isinstance(v, str):
        return f"string {v!r}"
    if isinstance(v, bool):
        return f"boolean `{str(v).lower()}`"
    return f"floating point `{v}`"


def _f64(v: object, field: str) -> float:
    # bool is an int subclass in Python, but not a number in JSON.
    if isinstance(v, bool) or not isinstance(v, float):
        raise ConfigError(f"invalid type: {_describe(v)}, expected f64 (field `{field}`)")
    return v


def _custom_targets(v: object) -> List[Tuple[str, float]]:
    """`custom` in Rust's BTreeMap order (Python orders str by code point, as Rust does); a repeated name keeps its
    last value, as BTreeMap::insert does."""
    if not isinstance(v, JsonObject):
        raise ConfigError(f"invalid type: {_describe(v)}, expected a map (field `custom`)")
    targets = {}
    for name, target in v.entries:
        targets[name] = _f64(target, f"custom.{name}")
    return sorted(targets.items())


def _to_config(doc: object) -> HpaConfig:
    given = {}
    if isinstance(doc, JsonObject):
        for key, v in doc.entries:
            if key not in FIELDS:
                expected = ", ".join(f"`{f}`" for f in FIELDS)
                raise ConfigError(f"unknown field `{key}`, expected one of {expected}")
            if key in given:
                raise ConfigError(f"duplicate field `{key}`")
            given[key] = v
    elif isinstance(doc, list):
        # serde derive also reads a struct from an array of its fields in order.
        if not FIELDS_WITHOUT_DEFAULT <= len(doc) <= len(FIELDS):
            raise ConfigError(f"invalid length {len(doc)}, expected struct HpaConfig with 8 elements")
        given = dict(zip(FIELDS, doc))
    else:
        raise ConfigError(f"invalid type: {_describe(doc)}, expected struct HpaConfig")

    def optional(field: str) -> Optional[float]:
        v = given.get(field)
        return None if v is None else _f64(v, field)

    return HpaConfig(
        gpu_utilization=optional("gpuUtilization"),
        cpu_utilization=optional("cpuUtilization"),
        memory_utilization=optional("memoryUtilization"),
        jobs_per_pod=optional("jobsPerPod"),
        latency_p95_ms=optional("latencyP95Ms"),
        requests_per_pod=optional("requestsPerPod"),
        custom=_custom_targets(given["custom"]) if "custom" in given else [],
        tolerance=_f64(given["tolerance"], "tolerance") if "tolerance" in given else DEFAULT_TOLERANCE,
    )


_cached: Optional[Tuple[str, HpaConfig]] = None


def parse_config(text: str) -> HpaConfig:
    """Parses the config JSON (empty means `{}`); the parsed value is kept while the text stays the same. Raises
    ConfigError with serde's kind of message."""
    global _cached
    if _cached is not None and _cached[0] == text:
        return _cached[1]
    config = _to_config(_Parser("{}" if RUST_WHITESPACE.fullmatch(text) else text).document())
    _cached = (text, config)
    return config
