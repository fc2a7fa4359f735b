"""A Python plugin that misbehaves on purpose, for the host's isolation tests (the Python counterpart of
tests/plugins/hostile). The config's `mode` picks the misdeed."""

import json
import sys
import time

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.policy import Decision, PolicyError_Internal, PolicyError_InvalidConfig, PolicyInput
from wit_world.imports import host

calls = 0


class Policy(exports.Policy):
    def decide(self, input: PolicyInput) -> Decision:
        global calls
        cfg = json.loads(input.config)
        mode = cfg["mode"]
        if mode == "loop":
            n = input.now_ms
            while True:
                n = (n * 1103515245 + 12345) % 2147483648
        if mode == "alloc":
            hoard = []
            while True:
                hoard.append(bytearray(8 << 20))
        if mode == "raise":
            raise RuntimeError("hostile plugin raises on purpose")
        if mode == "error":
            raise Err(PolicyError_Internal("hostile plugin returns an error on purpose"))
        if mode == "fixed":
            return Decision(replicas=cfg["replicas"], reason="asks for what its config says", proposals=[], state=None)
        if mode == "log":
            host.log(host.LogLevel.WARN, "hostile plugin says hello")
            return Decision(replicas=input.current_replicas, reason="logged a line", proposals=[], state=None)
        if mode == "print":
            # What a plugin author debugging does first; the host turns the output into log lines.
            print("hostile plugin prints to stdout")
            print("hostile plugin prints to stderr", file=sys.stderr)
            return Decision(replicas=input.current_replicas, reason="printed two lines", proposals=[], state=None)
        if mode == "sleep":
            time.sleep(3)
            return Decision(replicas=input.current_replicas, reason="slept 3 s", proposals=[], state=None)
        if mode == "big-reason":
            return Decision(replicas=input.current_replicas, reason="r" * cfg["size"], proposals=[], state=None)
        if mode == "escape":
            reason = "\x1b[2J\x1b[31mred\nstt  3  3  forged row"
            return Decision(replicas=input.current_replicas, reason=reason, proposals=[], state=None)
        if mode == "count":
            # Counts calls in the instance's memory: shows whether the host kept the instance or started a fresh one.
            calls += 1
            return Decision(replicas=calls, reason=f"call {calls} of this instance", proposals=[], state=None)
        raise Err(PolicyError_InvalidConfig(f"unknown mode {mode}"))
