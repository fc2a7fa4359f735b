//! Every limit the runtime enforces on plugins, in one place.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RuntimeLimits {
    /// Wall-clock budget of one `decide` call; past it the call is interrupted (epoch deadline).
    pub deadline: Duration,
    /// Wall-clock budget of creating an instance, which runs the guest's start-up code: a language runtime (a
    /// CPython interpreter in a Python plugin) takes several milliseconds to set up, once per instance.
    pub instantiate_deadline: Duration,
    /// Linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// Largest state blob a plugin may hand back.
    pub max_state_bytes: usize,
    /// Instances the pooling allocator keeps slots for (one per service, plus validation and canary headroom).
    pub max_instances: u32,
    /// Where compiled components are cached across restarts; `None` keeps the cache in memory only.
    pub cache_dir: Option<PathBuf>,
    /// A plugin asking for more than this many times max(maxReplicas, current, 1) is talking nonsense.
    pub absurd_factor: u32,
    /// Log lines kept per call; each line is truncated to `max_log_line` bytes.
    pub max_log_lines: usize,
    pub max_log_line: usize,
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        RuntimeLimits {
            deadline: Duration::from_millis(10),
            instantiate_deadline: Duration::from_millis(250),
            memory_bytes: 64 << 20,
            max_state_bytes: 64 << 10,
            max_instances: 1100,
            cache_dir: None,
            absurd_factor: 10,
            max_log_lines: 16,
            max_log_line: 1024,
        }
    }
}

/// How often the epoch advances; deadlines are whole ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

impl RuntimeLimits {
    /// Epoch ticks for one call.
    pub(crate) fn deadline_ticks(&self) -> u64 {
        ticks(self.deadline)
    }

    /// Epoch ticks for creating an instance.
    pub(crate) fn instantiate_ticks(&self) -> u64 {
        ticks(self.instantiate_deadline)
    }
}

/// A budget in epoch ticks: rounded up, plus one because the current tick may be about to end.
fn ticks(budget: Duration) -> u64 {
    let ticks = budget.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64;
    ticks.max(1) + 1
}
