//! Every setting of the host (`ballast run`), with its default, in one place: `ballast run` builds a
//! [`HostConfig`] from its flags and the library reads its intervals, timeouts and limits from it. The library
//! types that have defaults of their own (`PrometheusConfig::new`, `ResourceConfig::default`, `LeaseConfig::new`)
//! take them from here, so README.md and `--help` have one set of figures to state.
//!
//! Constants that stay beside their code are not settings: the epoch tick (`runtime::limits`), Kubernetes'
//! fixed HPA semantics (`clamps/`), the simulator's model and test-only values.

use std::time::Duration;

use crate::runtime::RuntimeLimits;

/// What `ballast run` is configured with, apart from where things are (URLs, files, names).
#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    pub schedule: Schedule,
    pub redis: RedisSettings,
    pub prometheus: PrometheusSettings,
    pub resources: ResourceSettings,
    pub lease: LeaseTimings,
    pub checks: ClusterChecks,
    pub requests: Requests,
    pub limits: RuntimeLimits,
}

/// How often the host decides and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Time between decisions.
    pub tick: Duration,
    /// Each policy's status is written after any decision that changed something, and at least this often.
    pub status_every: Duration,
    /// A Prometheus or metrics.k8s.io snapshot older than this is not used at all.
    pub snapshot_max_age: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            tick: Duration::from_secs(1),
            status_every: Duration::from_secs(10),
            snapshot_max_age: Duration::from_secs(60),
        }
    }
}

/// The host's Redis connections: `--redis`, and those of policies that name a Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisSettings {
    /// How long a tick waits for the Redis collection it asked for before deciding on older counts.
    pub deadline: Duration,
    /// Queue counts older than this are unavailable.
    pub max_age: Duration,
    /// Bound on one collection, connecting included.
    pub timeout: Duration,
    /// How often a policy's connection Secret is read again (so a rotated password is picked up).
    pub secret_refresh: Duration,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            deadline: Duration::from_millis(250),
            max_age: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            secret_refresh: Duration::from_secs(30),
        }
    }
}

/// Prometheus's queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrometheusSettings {
    /// How often Prometheus is queried (one query per distinct template, every policy together).
    pub every: Duration,
    /// Per query.
    pub timeout: Duration,
    /// Samples older than this are ignored (`{max_sample_age}` in templates).
    pub max_sample_age: Duration,
    /// The `rate()` window of the default templates (`{rate_window}`).
    pub rate_window: Duration,
}

impl Default for PrometheusSettings {
    fn default() -> Self {
        PrometheusSettings {
            every: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            max_sample_age: Duration::from_secs(60),
            rate_window: Duration::from_secs(60),
        }
    }
}

/// CPU and memory from metrics.k8s.io.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceSettings {
    /// How often they are read (the HPA's sync period is 15 s).
    pub every: Duration,
    /// Per API request.
    pub timeout: Duration,
    /// The HPA controller's `--horizontal-pod-autoscaler-cpu-initialization-period`.
    pub cpu_initialization_period: Duration,
    /// The HPA controller's `--horizontal-pod-autoscaler-initial-readiness-delay`.
    pub initial_readiness_delay: Duration,
}

impl Default for ResourceSettings {
    fn default() -> Self {
        ResourceSettings {
            every: Duration::from_secs(15),
            timeout: Duration::from_secs(5),
            cpu_initialization_period: Duration::from_secs(300),
            initial_readiness_delay: Duration::from_secs(30),
        }
    }
}

/// Leader election: client-go's defaults (`leaseDuration`, `renewDeadline`, `retryPeriod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimings {
    pub duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        LeaseTimings {
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What the controller asks the cluster besides its watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterChecks {
    /// How often discovery is asked whether metrics.k8s.io is served.
    pub metrics_api_every: Duration,
    /// How often HPAs and KEDA ScaledObjects are listed: a new one stops Ballast's writes within this, sooner
    /// than the HPA's own first sync (15 s).
    pub conflicts_every: Duration,
    /// How long the first tick waits for the first list of other autoscalers.
    pub conflicts_first_wait: Duration,
}

/// Requests to the cluster and to registries that are retried or bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requests {
    /// The first wait before retrying a `/scale` read or write that conflicted or could not connect; doubled
    /// after each retry.
    pub scale_retry: Duration,
    pub registry: RegistryTimeouts,
}

impl Default for Requests {
    fn default() -> Self {
        Requests { scale_retry: Duration::from_millis(100), registry: RegistryTimeouts::default() }
    }
}

/// Bounds on an OCI registry's answers when a plugin is pulled or pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryTimeouts {
    pub connect: Duration,
    /// Between two reads of an answer (a large layer takes longer as a whole).
    pub read: Duration,
}

impl Default for RegistryTimeouts {
    fn default() -> Self {
        RegistryTimeouts { connect: Duration::from_secs(10), read: Duration::from_secs(60) }
    }
}

impl Default for ClusterChecks {
    fn default() -> Self {
        ClusterChecks {
            metrics_api_every: Duration::from_secs(30),
            conflicts_every: Duration::from_secs(5),
            conflicts_first_wait: Duration::from_secs(10),
        }
    }
}
