//! Every limit the runtime enforces on plugins, in one place.

use std::path::PathBuf;
use std::time::Duration;

/// The largest component any source hands over (a file, a ConfigMap's bytes after gunzip, an OCI layer) and the
/// default of [`RuntimeLimits::max_component_bytes`]: one bound, so no source reads what the engine would refuse.
pub const MAX_COMPONENT_BYTES: u64 = 64 << 20;

/// Canary attempts before a timeout counts (the host's validation and `ballast plugin check`): a fresh instance's
/// first call pays one-time costs (a JavaScript or Python heap image touched for the first time) that CPU
/// contention can stretch past the call deadline.
pub const CANARY_ATTEMPTS: usize = 3;

#[derive(Debug, Clone)]
pub struct RuntimeLimits {
    /// Wall-clock budget of one `decide` call; past it the call is interrupted (epoch deadline).
    pub deadline: Duration,
    /// Wall-clock budget of creating an instance, which runs the guest's start-up code: a language runtime (a
    /// CPython interpreter in a Python plugin) takes several milliseconds to set up, once per instance.
    pub instantiate_deadline: Duration,
    /// Linear memory one instance may hold, all its memories together.
    pub memory_bytes: usize,
    /// Largest state blob a plugin may hand back.
    pub max_state_bytes: usize,
    /// Longest reason a decision may give (and the longest error text kept).
    pub max_reason_bytes: usize,
    /// Most per-metric proposals a decision may list, and the longest metric name in one.
    pub max_proposals: usize,
    pub max_proposal_name_bytes: usize,
    /// Largest component accepted (after decompression), before anything parses it.
    pub max_component_bytes: usize,
    /// What one component may declare: linear memories, tables and core instances, all its modules together.
    pub max_memories: u32,
    pub max_tables: u32,
    pub max_core_instances: u32,
    /// Memory (address space) and time a compilation may take. Compiling untrusted code is the one step whose
    /// cost grows with the input rather than with a call, so it runs in a child process held to these.
    pub compile_memory_bytes: usize,
    pub compile_deadline: Duration,
    /// The `ballast` executable that compiles components in a child process (`ballast compile-plugin`); `None`
    /// compiles in this process, unguarded (tools and tests that only load trusted components).
    pub compiler: Option<PathBuf>,
    /// Every call on a fresh instance, so a decision depends only on its recorded input (replayable), at the cost
    /// of an instantiation per call.
    pub fresh_instance_per_call: bool,
    /// Instances the pooling allocator keeps slots for (one per service, plus validation and canary headroom).
    pub max_instances: u32,
    /// Where compiled components are cached across restarts; `None` keeps the cache in memory only.
    pub cache_dir: Option<PathBuf>,
    /// A plugin asking for more than this many times max(maxReplicas, current, 1) is talking nonsense.
    pub absurd_factor: u32,
    /// Log lines kept per call (printed lines included), each truncated to `max_log_line` bytes, at most
    /// `max_log_bytes` in all; the rest are counted and dropped.
    pub max_log_lines: usize,
    pub max_log_line: usize,
    pub max_log_bytes: usize,
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        RuntimeLimits {
            deadline: Duration::from_millis(10),
            instantiate_deadline: Duration::from_millis(250),
            memory_bytes: 64 << 20,
            max_state_bytes: 64 << 10,
            max_reason_bytes: 1024,
            max_proposals: 32,
            max_proposal_name_bytes: 64,
            max_component_bytes: MAX_COMPONENT_BYTES as usize,
            max_memories: 4,
            max_tables: 8,
            max_core_instances: 32,
            compile_memory_bytes: 2 << 30,
            compile_deadline: Duration::from_secs(120),
            compiler: None,
            fresh_instance_per_call: false,
            max_instances: 1100,
            cache_dir: None,
            absurd_factor: 10,
            max_log_lines: 16,
            max_log_line: 1024,
            max_log_bytes: 8 << 10,
        }
    }
}

/// How often the epoch advances; deadlines are whole ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

impl RuntimeLimits {
    /// Epoch ticks for creating an instance.
    pub(crate) fn instantiate_ticks(&self) -> u64 {
        ticks(self.instantiate_deadline)
    }
}

/// A budget in epoch ticks: rounded up, plus one because the current tick may be about to end.
pub(crate) fn ticks(budget: Duration) -> u64 {
    let ticks = budget.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64;
    ticks.max(1) + 1
}
