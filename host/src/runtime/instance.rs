//! Running a plugin: one reusable instance per service, discarded after any trap.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::WasiCtx;

use super::bindings::{Decision, Observations, PolicyInput, PolicyInstance, ServiceId};
use super::engine::{CompiledPolicy, PolicyEngine};
use super::limits::RuntimeLimits;
use super::log::{CallLog, PluginLog};
use super::text::escaped;

/// Per-store host data.
pub(crate) struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryCap,
    /// The running call's log lines and printed output (shared with the WASI standard streams).
    pub(crate) log: Arc<Mutex<CallLog>>,
}

impl HostState {
    fn take_log(&mut self) -> Vec<PluginLog> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// A plugin's `log()` call.
    pub(crate) fn log_line(&mut self, level: &'static str, message: &str) {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).push(level, message);
    }
}

/// Caps the linear memory of the instance being made or called, all its memories together, and remembers that
/// the cap was hit, so the failure can say so. A store holds many instances but runs one at a time: the caller
/// sets `used` to that instance's total before entering it and reads it back after.
pub(crate) struct MemoryCap {
    max_bytes: usize,
    /// Bytes of linear memory the running instance holds.
    used: usize,
    /// Core instances (and as many memories and tables) one store may hold: a shared store holds every service's
    /// instance of its component, each a handful of core instances.
    max_core_instances: usize,
    hit: bool,
}

impl MemoryCap {
    pub(crate) fn new(limits: &RuntimeLimits) -> Self {
        let max_core_instances = (limits.max_instances as usize).saturating_mul(limits.max_core_instances as usize);
        MemoryCap { max_bytes: limits.memory_bytes, used: 0, max_core_instances, hit: false }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // `current` is 0 when a memory is created: its initial size counts like any growth.
        let used = self.used.saturating_add(desired.saturating_sub(current));
        if used > self.max_bytes {
            self.hit = true;
            // An error (not `Ok(false)`) traps at once: a guest allocator that ignores a failed grow can't go on.
            return Err(wasmtime::format_err!("memory cap of {} MiB exceeded", self.max_bytes >> 20));
        }
        self.used = used;
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

impl SharedStore {
    pub(crate) fn new(store: Store<HostState>) -> Self {
        SharedStore { store, generation: 0, live: 0, abandoned: 0 }
    }

    fn instantiate(&mut self, plugin: &Plugin) -> Result<Live, PluginFailure> {
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

/// What kind of failure a call ended in: one vocabulary for the runtime, decisions, metrics, Events and the
/// simulator.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// Ran past its deadline.
    Timeout,
    /// Grew its memory past the cap.
    Memory,
    /// Trapped: a panic, an uncaught exception, `unreachable`, an out-of-bounds access.
    Trap,
    /// Could not be instantiated (its start-up code failed, or it needs more than the host gives one plugin).
    Instantiate,
    /// Returned its own `policy-error`.
    Error,
    /// Answered something no policy should: an absurd replica count, or output over a cap.
    Nonsense,
}

impl FailureKind {
    pub const ALL: [FailureKind; 6] = [
        FailureKind::Timeout,
        FailureKind::Memory,
        FailureKind::Trap,
        FailureKind::Instantiate,
        FailureKind::Error,
        FailureKind::Nonsense,
    ];

    /// The value of the `kind` label in metrics, and the word in Events, status and reports.
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Memory => "memory",
            FailureKind::Trap => "trap",
            FailureKind::Instantiate => "instantiate",
            FailureKind::Error => "error",
            FailureKind::Nonsense => "nonsense",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
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

    pub fn kind(&self) -> FailureKind {
        match self {
            PluginFailure::Timeout(_) => FailureKind::Timeout,
            PluginFailure::MemoryLimit(_) => FailureKind::Memory,
            PluginFailure::Trap(_) => FailureKind::Trap,
            PluginFailure::Instantiate(_) => FailureKind::Instantiate,
            PluginFailure::Error(_) => FailureKind::Error,
            PluginFailure::Nonsense(_) => FailureKind::Nonsense,
        }
    }

    /// A trap or failed start-up, with what the plugin printed about it (a Rust panic message, a JavaScript or
    /// Python exception): the last lines of its standard error or error log.
    fn with_words(self, logs: &[PluginLog]) -> Self {
        // Enough for a Python traceback's last frame and exception line behind the toolchain's own panic lines.
        const WORDS: usize = 4;
        let said: Vec<&str> = logs
            .iter()
            .filter(|l| l.is_error())
            .map(|l| l.message.trim())
            .filter(|m| !m.is_empty() && !m.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        if said.is_empty() {
            return self;
        }
        let words = said[said.len().saturating_sub(WORDS)..].join(" / ");
        match self {
            PluginFailure::Trap(m) => PluginFailure::Trap(format!("{m}; the plugin said: {words}")),
            PluginFailure::Instantiate(m) => PluginFailure::Instantiate(format!("{m}; the plugin said: {words}")),
            other => other,
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

/// An instance and the linear memory it holds (for the memory cap, which counts all its memories).
struct Live {
    bindings: PolicyInstance,
    memory_bytes: usize,
}

/// One service's plugin: the validated component and, between calls, its live instance.
pub struct Plugin {
    engine: Arc<PolicyEngine>,
    compiled: Arc<CompiledPolicy>,
    /// The instance in the component's shared store, made in the store generation given.
    shared: Option<(u64, Live)>,
    /// The instance in a store of its own, once an instance of this plugin trapped: a plugin failing call after
    /// call then costs only its own instances, not a rebuild of the store its siblings share.
    own: Option<(Store<HostState>, Live)>,
    /// Set while the plugin runs apart after a trap in the shared store.
    isolation: Option<Isolation>,
    /// Good calls the next isolation will take before the plugin rejoins the shared store.
    rejoin_after: u32,
    /// The input of the last [`Plugin::decide_in_place`] call: refilled in place, so its strings and state buffer
    /// are allocated once, not on every call.
    input: Option<PolicyInput>,
    /// Instantiate anew, in a store of its own, for every call instead of reusing: decisions then depend only on
    /// their input ([`RuntimeLimits::fresh_instance_per_call`] sets it for every plugin).
    pub fresh_each_call: bool,
    /// This plugin's call deadline and memory cap: the engine's, or lower (see [`Plugin::lower_limits`]).
    deadline: Duration,
    memory_bytes: usize,
}

type CallResult = (Result<Decision, PluginFailure>, Vec<PluginLog>);

impl Plugin {
    pub fn new(engine: Arc<PolicyEngine>, compiled: Arc<CompiledPolicy>) -> Self {
        let limits = engine.limits();
        let (fresh_each_call, deadline, memory_bytes) =
            (limits.fresh_instance_per_call, limits.deadline, limits.memory_bytes);
        Plugin {
            engine,
            compiled,
            shared: None,
            own: None,
            isolation: None,
            rejoin_after: REJOIN_AFTER,
            input: None,
            fresh_each_call,
            deadline,
            memory_bytes,
        }
    }

    /// Holds this plugin to a shorter deadline or a smaller memory cap than the engine's (a policy's own limits);
    /// a value above the engine's limit leaves the engine's.
    pub fn lower_limits(&mut self, deadline: Option<Duration>, memory_bytes: Option<usize>) {
        let limits = self.engine.limits();
        self.deadline = deadline.map_or(limits.deadline, |d| d.min(limits.deadline));
        self.memory_bytes = memory_bytes.map_or(limits.memory_bytes, |m| m.min(limits.memory_bytes));
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
    pub(crate) fn shared_digest(&self) -> &Arc<str> {
        &self.compiled.digest
    }

    /// Calls `decide`. Never fails as a Rust error: every misbehaviour is a [`PluginFailure`]. Blocking (the
    /// plugin's WASI calls are synchronous): call it where blocking is allowed ([`super::off_async`]).
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
        let mut live = match self.shared.take().filter(|(made_in, _)| *made_in == generation) {
            Some((_, live)) => live,
            None => match shared.instantiate(self) {
                Ok(live) => live,
                // Instances given up still hold their slots in the pool: free them, then try once more.
                Err(_) if shared.abandoned > 0 => {
                    shared.rebuild(&self.engine);
                    generation = shared.generation;
                    match shared.instantiate(self) {
                        Ok(live) => live,
                        Err(failure) => return self.give_up(&mut shared, generation, failure),
                    }
                }
                Err(failure) => return self.give_up(&mut shared, generation, failure),
            },
        };
        let (result, logs) = self.call(&mut shared.store, &mut live, input);
        match result {
            Err(failure) if failure.ends_instance() => {
                let (result, _) = self.give_up(&mut shared, generation, failure);
                (result, logs)
            }
            result => {
                self.shared = Some((generation, live));
                (result, logs)
            }
        }
    }

    /// After a trap (or a failed instantiation) in the shared store: gives the instance up, and runs this plugin
    /// in a store of its own until it has made enough good calls there.
    fn give_up(&mut self, shared: &mut SharedStore, generation: u64, failure: PluginFailure) -> CallResult {
        // What it printed before failing (a start-up error) is read before the store goes.
        let logs = shared.store.data_mut().take_log();
        shared.abandon(&self.engine, generation, true);
        self.isolation = Some(Isolation { good_calls: 0, needed: self.rejoin_after });
        // A plugin that traps again soon after rejoining stays apart twice as long the next time.
        self.rejoin_after = self.rejoin_after.saturating_mul(2).min(MAX_REJOIN_AFTER);
        (Err(failure.with_words(&logs)), logs)
    }

    fn call_own(&mut self, input: &PolicyInput) -> CallResult {
        let (mut store, mut live) = match self.own.take() {
            Some(live) => live,
            None => {
                let mut store = self.engine.new_store();
                match self.instantiate(&mut store) {
                    Ok(live) => (store, live),
                    Err(failure) => {
                        let logs = store.data_mut().take_log();
                        return (Err(failure.with_words(&logs)), logs);
                    }
                }
            }
        };
        let (result, logs) = self.call(&mut store, &mut live, input);
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
            self.own = Some((store, live));
        }
        (result, logs)
    }

    fn instantiate(&self, store: &mut Store<HostState>) -> Result<Live, PluginFailure> {
        let limiter = &mut store.data_mut().limiter;
        limiter.hit = false;
        limiter.used = 0;
        limiter.max_bytes = self.memory_bytes;
        store.set_epoch_deadline(self.engine.limits().instantiate_ticks());
        match self.compiled.pre.instantiate(&mut *store) {
            Ok(bindings) => Ok(Live { bindings, memory_bytes: store.data().limiter.used }),
            Err(e) => Err(self.classify(store, e, "instantiating")),
        }
    }

    fn call(&self, store: &mut Store<HostState>, live: &mut Live, input: &PolicyInput) -> CallResult {
        let limiter = &mut store.data_mut().limiter;
        limiter.hit = false;
        limiter.used = live.memory_bytes;
        limiter.max_bytes = self.memory_bytes;
        store.set_epoch_deadline(super::limits::ticks(self.deadline));
        let called = live.bindings.call_decide(&mut *store, input);
        live.memory_bytes = store.data().limiter.used;
        // Kept whatever happened: what a plugin printed before it trapped is what explains the trap.
        let logs = store.data_mut().take_log();
        let result = match called {
            Ok(Ok(decision)) => self.check(input, decision),
            Ok(Err(policy_error)) => Err(PluginFailure::Error(escaped(
                &super::bindings::describe(&policy_error),
                self.engine.limits().max_reason_bytes,
            ))),
            // A trapped instance may be in any state: it is given up, and the next call instantiates afresh.
            Err(e) => Err(self.classify(store, e, "running decide").with_words(&logs)),
        };
        (result, logs)
    }

    fn classify(&self, store: &Store<HostState>, error: wasmtime::Error, during: &str) -> PluginFailure {
        if store.data().limiter.hit {
            return PluginFailure::MemoryLimit(self.memory_bytes >> 20);
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PluginFailure::Timeout(self.deadline),
            Some(trap) => PluginFailure::Trap(format!("{trap} while {during}")),
            None if during == "instantiating" => PluginFailure::Instantiate(format!("{error:#}")),
            None => PluginFailure::Trap(format!("{error:#} while {during}")),
        }
    }

    /// Refuses answers no sane policy gives (absurd replica counts, output over a cap), and escapes control
    /// characters in the text of the rest, so that nothing a plugin says can forge or garble what operators read.
    fn check(&self, input: &PolicyInput, mut decision: Decision) -> Result<Decision, PluginFailure> {
        let limits = self.engine.limits();
        let ceiling =
            u64::from(input.max_replicas.max(input.current_replicas).max(1)) * u64::from(limits.absurd_factor);
        let over = |what: &str, size: usize, cap: usize| {
            Err(PluginFailure::Nonsense(format!("{what} of {size} bytes exceeds the {cap}-byte cap")))
        };
        if u64::from(decision.replicas) > ceiling {
            return Err(PluginFailure::Nonsense(format!(
                "{} replicas is more than {}x max(maxReplicas {}, current {})",
                decision.replicas, limits.absurd_factor, input.max_replicas, input.current_replicas
            )));
        }
        if let Some(state) = &decision.state
            && state.len() > limits.max_state_bytes
        {
            return over("state blob", state.len(), limits.max_state_bytes);
        }
        if decision.reason.len() > limits.max_reason_bytes {
            return over("reason", decision.reason.len(), limits.max_reason_bytes);
        }
        if decision.proposals.len() > limits.max_proposals {
            return Err(PluginFailure::Nonsense(format!(
                "{} metric proposals exceed the cap of {}",
                decision.proposals.len(),
                limits.max_proposals
            )));
        }
        if let Some(long) = decision.proposals.iter().find(|p| p.metric.len() > limits.max_proposal_name_bytes) {
            return over("a proposal's metric name", long.metric.len(), limits.max_proposal_name_bytes);
        }
        if super::text::needs_escaping(&decision.reason) {
            decision.reason = escaped(&decision.reason, limits.max_reason_bytes);
        }
        for proposal in &mut decision.proposals {
            if super::text::needs_escaping(&proposal.metric) {
                proposal.metric = escaped(&proposal.metric, limits.max_proposal_name_bytes);
            }
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
pub fn empty_input() -> PolicyInput {
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
