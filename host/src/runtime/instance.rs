//! Running a plugin: one reusable instance per service, discarded after any trap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::WasiCtx;

use super::bindings::{Decision, LogLevel, Observations, PolicyInput, ScalingPolicy, ServiceId, ballast};
use super::engine::{CompiledPolicy, PolicyEngine};

/// Per-instance host data.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryCap,
    pub(crate) logs: Vec<PluginLog>,
    pub(crate) max_log_lines: usize,
    pub(crate) max_log_line: usize,
}

/// A line a plugin logged during a call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginLog {
    pub level: &'static str,
    pub message: String,
}

impl ballast::policy::host::Host for HostState {
    fn log(&mut self, level: LogLevel, mut message: String) {
        if self.logs.len() >= self.max_log_lines {
            return;
        }
        if message.len() > self.max_log_line {
            let mut cut = self.max_log_line;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let level = match level {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        };
        self.logs.push(PluginLog { level, message });
    }
}

/// Caps linear memory per instance and remembers that the cap was hit, so the failure can say so.
pub(crate) struct MemoryCap {
    max_bytes: usize,
    hit: bool,
}

impl MemoryCap {
    pub(crate) fn new(max_bytes: usize) -> Self {
        MemoryCap { max_bytes, hit: false }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            // An error (not `Ok(false)`) traps at once: a guest allocator that ignores a failed grow can't go on.
            return Err(wasmtime::format_err!("memory cap of {} MiB exceeded", self.max_bytes >> 20));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Why a call produced no usable decision. Each kind is counted separately in the metrics.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PluginFailure {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("exceeded its memory cap of {0} MiB")]
    MemoryLimit(usize),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    #[error("returned an error: {0}")]
    Error(String),
    #[error("returned nonsense: {0}")]
    Nonsense(String),
}

impl PluginFailure {
    /// [`Self::kind`] of a call that ran out of time.
    pub const TIMEOUT_KIND: &'static str = "timeout";

    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginFailure::Timeout(_) => Self::TIMEOUT_KIND,
            PluginFailure::MemoryLimit(_) => "memory",
            PluginFailure::Trap(_) => "trap",
            PluginFailure::Instantiate(_) => "instantiate",
            PluginFailure::Error(_) => "error",
            PluginFailure::Nonsense(_) => "nonsense",
        }
    }
}

/// The result of one call, with what the plugin logged and how long it took.
#[derive(Debug)]
pub struct CallOutcome {
    pub result: Result<Decision, PluginFailure>,
    pub logs: Vec<PluginLog>,
    pub duration: Duration,
}

/// One service's plugin: the validated component and, between calls, its live instance.
pub struct Plugin {
    engine: Arc<PolicyEngine>,
    compiled: Arc<CompiledPolicy>,
    live: Option<(Store<HostState>, ScalingPolicy)>,
    /// The input of the last [`Plugin::decide_in_place`] call: refilled in place, so its strings and state buffer
    /// are allocated once, not on every call.
    input: Option<PolicyInput>,
    /// Instantiate anew for every call instead of reusing (for benchmarks and paranoid operators).
    pub fresh_each_call: bool,
}

impl Plugin {
    pub fn new(engine: Arc<PolicyEngine>, compiled: Arc<CompiledPolicy>) -> Self {
        Plugin { engine, compiled, live: None, input: None, fresh_each_call: false }
    }

    pub fn compiled(&self) -> &Arc<CompiledPolicy> {
        &self.compiled
    }

    pub fn digest(&self) -> &str {
        &self.compiled.digest
    }

    /// Calls `decide`. Never fails as a Rust error: every misbehaviour is a [`PluginFailure`].
    pub fn decide(&mut self, input: &PolicyInput) -> CallOutcome {
        let started = Instant::now();
        let (result, logs) = self.call(input);
        CallOutcome { result, logs, duration: started.elapsed() }
    }

    /// Calls `decide` with the input `fill` writes over the previous call's (every field must be written).
    pub fn decide_in_place(&mut self, fill: impl FnOnce(&mut PolicyInput)) -> CallOutcome {
        let mut input = self.input.take().unwrap_or_else(empty_input);
        fill(&mut input);
        let outcome = self.decide(&input);
        self.input = Some(input);
        outcome
    }

    fn call(&mut self, input: &PolicyInput) -> (Result<Decision, PluginFailure>, Vec<PluginLog>) {
        if self.live.is_none() || self.fresh_each_call {
            let mut store = self.engine.new_store();
            match self.compiled.pre.instantiate(&mut store) {
                Ok(bindings) => self.live = Some((store, bindings)),
                Err(e) => {
                    self.live = None;
                    return (Err(self.classify(&store, e, "instantiating")), Vec::new());
                }
            }
        }
        let (store, bindings) = self.live.as_mut().expect("instance was just created");
        store.set_epoch_deadline(self.engine.limits().deadline_ticks());
        let called = bindings.ballast_policy_policy().call_decide(&mut *store, input);
        let logs = std::mem::take(&mut store.data_mut().logs);
        let result = match called {
            Ok(Ok(decision)) => self.check(input, decision),
            Ok(Err(policy_error)) => Err(PluginFailure::Error(super::bindings::describe(&policy_error))),
            Err(e) => {
                // A trapped instance may be in any state: throw it away; the next call instantiates afresh.
                let (store, _) = self.live.take().expect("instance is live");
                Err(self.classify(&store, e, "running decide"))
            }
        };
        (result, logs)
    }

    fn classify(&self, store: &Store<HostState>, error: wasmtime::Error, during: &str) -> PluginFailure {
        let limits = self.engine.limits();
        if store.data().limiter.hit {
            return PluginFailure::MemoryLimit(limits.memory_bytes >> 20);
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PluginFailure::Timeout(limits.deadline),
            Some(trap) => PluginFailure::Trap(format!("{trap} while {during}")),
            None if during == "instantiating" => PluginFailure::Instantiate(format!("{error:#}")),
            None => PluginFailure::Trap(format!("{error:#} while {during}")),
        }
    }

    /// Refuses answers no sane policy gives: absurd replica counts and oversized state.
    fn check(&self, input: &PolicyInput, decision: Decision) -> Result<Decision, PluginFailure> {
        let limits = self.engine.limits();
        let ceiling =
            u64::from(input.max_replicas.max(input.current_replicas).max(1)) * u64::from(limits.absurd_factor);
        if u64::from(decision.replicas) > ceiling {
            return Err(PluginFailure::Nonsense(format!(
                "{} replicas is more than {}x max(maxReplicas {}, current {})",
                decision.replicas, limits.absurd_factor, input.max_replicas, input.current_replicas
            )));
        }
        if let Some(state) = &decision.state
            && state.len() > limits.max_state_bytes
        {
            return Err(PluginFailure::Nonsense(format!(
                "state blob of {} bytes exceeds the {}-byte cap",
                state.len(),
                limits.max_state_bytes
            )));
        }
        Ok(decision)
    }
}

/// An input with nothing in it, to fill.
pub(crate) fn empty_input() -> PolicyInput {
    PolicyInput {
        service: ServiceId { namespace: String::new(), name: String::new() },
        now_ms: 0,
        current_replicas: 0,
        ready_replicas: 0,
        min_replicas: 0,
        max_replicas: 0,
        config: String::new(),
        state: None,
        observations: Observations {
            gpu_duty_cycle_percent: None,
            cpu_percent_of_request: None,
            memory_percent_of_request: None,
            queue: None,
            latency_p50_ms: None,
            latency_p95_ms: None,
            latency_p99_ms: None,
            request_rate: None,
            custom: Vec::new(),
        },
    }
}
