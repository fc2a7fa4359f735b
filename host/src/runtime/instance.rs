//! Running a plugin: one reusable instance per service, discarded after any trap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::WasiCtx;

use super::bindings::{Decision, LogLevel, Observations, PolicyInput, ScalingPolicy, ServiceId, ballast};
use super::engine::{CompiledPolicy, PolicyEngine};
use super::limits::RuntimeLimits;

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
    /// Core instances (and as many memories and tables) one store may hold: a shared store holds every service's
    /// instance of its component, each a handful of core instances.
    max_core_instances: usize,
    hit: bool,
}

impl MemoryCap {
    pub(crate) fn new(limits: &RuntimeLimits) -> Self {
        let max_core_instances = (limits.max_instances as usize).saturating_mul(CORE_INSTANCES_PER_COMPONENT);
        MemoryCap { max_bytes: limits.memory_bytes, max_core_instances, hit: false }
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

    fn instances(&self) -> usize {
        self.max_core_instances
    }

    fn tables(&self) -> usize {
        self.max_core_instances
    }

    fn memories(&self) -> usize {
        self.max_core_instances
    }
}

/// The store all instances of one compiled component live in, one instance per service.
///
/// A tick calls a thousand instances one after another; wasmtime looks up the called export's code and options
/// in the store on every call, and with a store per instance each of those lookups met cold memory. Instances in
/// one store stay as isolated as in separate ones (each has its own linear memory, tables and globals); the store
/// only holds them, with one memory cap, deadline and log buffer that each call sets for itself.
///
/// A trap anywhere in a store stops every instance in it from being entered again, so a trap rebuilds the store;
/// the plugin that trapped then runs in a store of its own (see [`Plugin`]) until it has made 64 good calls in a
/// row there (twice as many each time it traps again), so that a plugin failing call after call does not make its
/// siblings start over each time. A store frees an instance's memory (and its slot in the
/// instance pool) only when the store itself goes, so an instance given up because its service went away is
/// counted, and the store is rebuilt after a few, or when no live instance is left in it. After a rebuild the
/// other plugins instantiate afresh in the new store on their next call.
pub(crate) struct SharedStore {
    store: Store<HostState>,
    /// Which store this is; an instance made in an earlier one is instantiated anew.
    generation: u64,
    live: usize,
    abandoned: usize,
}

/// Good calls in a store of its own after which a plugin that trapped in the shared store goes back to it: a
/// trap may be a one-off (a timeout on a loaded node), and the shared store is the faster place to run.
const REJOIN_AFTER: u32 = 64;
/// The longest a plugin stays apart, however often it trapped: doubling from [`REJOIN_AFTER`], it costs its
/// siblings a re-instantiation at most once per this many of its calls.
const MAX_REJOIN_AFTER: u32 = 1 << 16;

/// A plugin running apart after a trap: its good calls in a row there, and how many take it back.
struct Isolation {
    good_calls: u32,
    needed: u32,
}

/// Instances given up without a trap that a shared store keeps before it is rebuilt.
const ABANDONED_BEFORE_REBUILD: usize = 4;
/// Core instances a policy component is made of (its module, the WASI adapter and shims), with headroom.
const CORE_INSTANCES_PER_COMPONENT: usize = 16;

impl SharedStore {
    pub(crate) fn new(store: Store<HostState>) -> Self {
        SharedStore { store, generation: 0, live: 0, abandoned: 0 }
    }

    fn instantiate(&mut self, plugin: &Plugin) -> Result<ScalingPolicy, PluginFailure> {
        let made = plugin.instantiate(&mut self.store);
        // A failed instantiation may leave a partly made instance behind: it counts as live until given up.
        self.live += 1;
        made
    }

    /// Counts an instance of this store's `generation` as given up, rebuilding the store when that is due.
    fn abandon(&mut self, engine: &PolicyEngine, generation: u64, trapped: bool) {
        if generation != self.generation {
            return;
        }
        self.live -= 1;
        self.abandoned += 1;
        if trapped || self.live == 0 || self.abandoned >= ABANDONED_BEFORE_REBUILD {
            self.rebuild(engine);
        }
    }

    fn rebuild(&mut self, engine: &PolicyEngine) {
        self.store = engine.new_store();
        self.generation += 1;
        self.live = 0;
        self.abandoned = 0;
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

    /// Whether the instance that failed this way is unusable (it trapped), rather than having answered badly.
    fn ends_instance(&self) -> bool {
        matches!(
            self,
            PluginFailure::Timeout(_)
                | PluginFailure::MemoryLimit(_)
                | PluginFailure::Trap(_)
                | PluginFailure::Instantiate(_)
        )
    }

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
    /// The instance in the component's shared store, made in the store generation given.
    shared: Option<(u64, ScalingPolicy)>,
    /// The instance in a store of its own, once an instance of this plugin trapped: a plugin failing call after
    /// call then costs only its own instances, not a rebuild of the store its siblings share.
    own: Option<(Store<HostState>, ScalingPolicy)>,
    /// Set while the plugin runs apart after a trap in the shared store.
    isolation: Option<Isolation>,
    /// Good calls the next isolation will take before the plugin rejoins the shared store.
    rejoin_after: u32,
    /// The input of the last [`Plugin::decide_in_place`] call: refilled in place, so its strings and state buffer
    /// are allocated once, not on every call.
    input: Option<PolicyInput>,
    /// Instantiate anew, in a store of its own, for every call instead of reusing (for benchmarks and paranoid
    /// operators).
    pub fresh_each_call: bool,
}

type CallResult = (Result<Decision, PluginFailure>, Vec<PluginLog>);

impl Plugin {
    pub fn new(engine: Arc<PolicyEngine>, compiled: Arc<CompiledPolicy>) -> Self {
        Plugin {
            engine,
            compiled,
            shared: None,
            own: None,
            isolation: None,
            rejoin_after: REJOIN_AFTER,
            input: None,
            fresh_each_call: false,
        }
    }

    /// Whether the plugin runs in a store of its own after a trap, until it has made enough good calls there.
    pub fn isolated(&self) -> bool {
        self.isolation.is_some()
    }

    pub fn compiled(&self) -> &Arc<CompiledPolicy> {
        &self.compiled
    }

    pub fn digest(&self) -> &str {
        &self.compiled.digest
    }

    /// [`Self::digest`], shared: a record or memory naming the plugin holds it without a copy.
    pub fn shared_digest(&self) -> &Arc<str> {
        &self.compiled.digest
    }

    /// Calls `decide`. Never fails as a Rust error: every misbehaviour is a [`PluginFailure`].
    pub fn decide(&mut self, input: &PolicyInput) -> CallOutcome {
        let started = Instant::now();
        let (result, logs) =
            if self.isolated() || self.fresh_each_call { self.call_own(input) } else { self.call_shared(input) };
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

    fn call_shared(&mut self, input: &PolicyInput) -> CallResult {
        let compiled = self.compiled.clone();
        let mut shared = compiled.shared_store();
        let mut generation = shared.generation;
        let bindings = match self.shared.take().filter(|(made_in, _)| *made_in == generation) {
            Some((_, bindings)) => bindings,
            None => match shared.instantiate(self) {
                Ok(bindings) => bindings,
                // Instances given up still hold their slots in the pool: free them, then try once more.
                Err(_) if shared.abandoned > 0 => {
                    shared.rebuild(&self.engine);
                    generation = shared.generation;
                    match shared.instantiate(self) {
                        Ok(bindings) => bindings,
                        Err(failure) => return self.give_up(&mut shared, generation, failure),
                    }
                }
                Err(failure) => return self.give_up(&mut shared, generation, failure),
            },
        };
        let (result, logs) = self.call(&mut shared.store, &bindings, input);
        match result {
            Err(failure) if failure.ends_instance() => (self.give_up(&mut shared, generation, failure).0, logs),
            result => {
                self.shared = Some((generation, bindings));
                (result, logs)
            }
        }
    }

    /// After a trap (or a failed instantiation) in the shared store: gives the instance up, and runs this plugin
    /// in a store of its own until it has made enough good calls there.
    fn give_up(&mut self, shared: &mut SharedStore, generation: u64, failure: PluginFailure) -> CallResult {
        shared.abandon(&self.engine, generation, true);
        self.isolation = Some(Isolation { good_calls: 0, needed: self.rejoin_after });
        // A plugin that traps again soon after rejoining stays apart twice as long the next time.
        self.rejoin_after = self.rejoin_after.saturating_mul(2).min(MAX_REJOIN_AFTER);
        (Err(failure), Vec::new())
    }

    fn call_own(&mut self, input: &PolicyInput) -> CallResult {
        let (mut store, bindings) = match self.own.take() {
            Some(live) => live,
            None => {
                let mut store = self.engine.new_store();
                match self.instantiate(&mut store) {
                    Ok(bindings) => (store, bindings),
                    Err(failure) => return (Err(failure), Vec::new()),
                }
            }
        };
        let (result, logs) = self.call(&mut store, &bindings, input);
        let reusable = !result.as_ref().is_err_and(PluginFailure::ends_instance);
        if let Some(isolation) = &mut self.isolation {
            isolation.good_calls = if reusable { isolation.good_calls + 1 } else { 0 };
            if isolation.good_calls >= isolation.needed {
                // Back to the shared store (instantiated there on the next call); this store and its slot go.
                self.isolation = None;
                return (result, logs);
            }
        }
        if reusable && !self.fresh_each_call {
            self.own = Some((store, bindings));
        }
        (result, logs)
    }

    fn instantiate(&self, store: &mut Store<HostState>) -> Result<ScalingPolicy, PluginFailure> {
        store.data_mut().limiter.hit = false;
        store.set_epoch_deadline(self.engine.limits().instantiate_ticks());
        self.compiled.pre.instantiate(&mut *store).map_err(|e| self.classify(store, e, "instantiating"))
    }

    fn call(&self, store: &mut Store<HostState>, bindings: &ScalingPolicy, input: &PolicyInput) -> CallResult {
        store.data_mut().limiter.hit = false;
        store.set_epoch_deadline(self.engine.limits().deadline_ticks());
        let called = bindings.ballast_policy_policy().call_decide(&mut *store, input);
        let logs = std::mem::take(&mut store.data_mut().logs);
        let result = match called {
            Ok(Ok(decision)) => self.check(input, decision),
            Ok(Err(policy_error)) => Err(PluginFailure::Error(super::bindings::describe(&policy_error))),
            // A trapped instance may be in any state: it is given up, and the next call instantiates afresh.
            Err(e) => Err(self.classify(store, e, "running decide")),
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

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Some((generation, _)) = self.shared.take() {
            self.compiled.shared_store().abandon(&self.engine, generation, false);
        }
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
