//! The `ballast` command line's flags: every command and its arguments, with the parsers of their values.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use ballast::config::{
    ClusterChecks, HostConfig, LeaseTimings, PrometheusSettings, RedisSettings, RegistryTimeouts, Requests,
    ResourceSettings, Schedule,
};
use ballast::sources::bullmq::{ConnectOptions, DEFAULT_PREFIX};
use ballast::spec::QueueRef;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ballast",
    version,
    about = "Autoscaler for GPU inference services with WebAssembly scaling policies",
    after_help = "Environment: BALLAST_LOG sets the log filter (e.g. info, ballast=debug; default info). \
                  NO_COLOR (any value) turns colour off; the log is coloured only when standard error is a terminal."
)]
pub struct Cli {
    /// Log format on standard error: text, or json (one object per line, for log pipelines).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// The host's log on standard error: `BALLAST_LOG` filters it; colour only on a terminal and without
    /// `NO_COLOR`.
    pub fn init_logging(self) {
        use std::io::IsTerminal;
        let filter = tracing_subscriber::EnvFilter::try_from_env("BALLAST_LOG").unwrap_or_else(|_| "info".into());
        let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let log = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
        match self {
            LogFormat::Text => log.with_ansi(colour).init(),
            LogFormat::Json => log.json().with_ansi(false).init(),
        }
    }
}

/// How `status` and `explain` print.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// For people (a table, or the explanation).
    Text,
    Json,
    Yaml,
}

#[derive(Subcommand)]
pub enum Command {
    /// Apply HPA `behavior` (or the legacy limits) to one decision, as the HPA controller would: JSON document in
    /// ({currentReplicas, desiredReplicas, minReplicas, maxReplicas, behavior, scaleUpEvents, scaleDownEvents,
    /// recommendations}), JSON out ({replicas, reason, ...}).
    Behavior {
        /// The input document's path, or `-` for standard input.
        #[arg(long)]
        input: String,
    },
    /// Serve BullMQ queue depths as Prometheus metrics under the old queue exporter's names (redis_queue_depth,
    /// ...): a drop-in for teams that keep their HPAs.
    Exporter {
        #[command(flatten)]
        redis: RedisArgs,
        /// Address to serve /metrics, /healthz and /readyz on.
        #[arg(long, default_value = "0.0.0.0:9090")]
        listen: SocketAddr,
        /// Time between collections, e.g. 5s, 500ms, 1m (100ms to 60m).
        #[arg(long, default_value = "5s", value_parser = duration_flag(TIMER_MIN, TIMER_MAX))]
        interval: Duration,
    },
    /// Run the controller: watch ScalingPolicies (or read them from --config), decide every tick, write /scale.
    Run(Box<RunArgs>),
    /// Print the ScalingPolicy CustomResourceDefinition (YAML).
    Crd,
    /// Print every ScalingPolicy's target, replicas, last reason and plugin, from their status.
    Status {
        #[command(flatten)]
        kube: KubeArgs,
        /// Only this namespace (all namespaces when absent).
        #[arg(long, short)]
        namespace: Option<String>,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Explain a policy's last decision (inputs, plugin proposals, each clamp step, the final count).
    Explain {
        #[command(flatten)]
        kube: KubeArgs,
        /// The policy: NAME (in --namespace, or `default`), or NAMESPACE/NAME.
        policy: String,
        /// The policy's namespace.
        #[arg(long, short)]
        namespace: Option<String>,
        /// Output format: the explanation as text, or the policy's last decision record as JSON or YAML.
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Check what the cluster lacks for Ballast to scale: the CRD, the host (its leader Lease), RBAC, metrics-server,
    /// other autoscalers on the same workloads, and with --redis / --prometheus every policy's queues and queries.
    /// One line per check, each failure with its fix; exits non-zero when a check fails.
    Doctor(Box<DoctorArgs>),
    /// Print BullMQ job counts per queue, as a table or JSON.
    Queues {
        #[command(flatten)]
        redis: RedisArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Replay load against scaling policies on a simulated cluster (pods with start-up delays, BullMQ-like queues)
    /// and report pod-hours, job waits and scale events per service. Decisions go through the real plugins and
    /// clamps. Deterministic: the same inputs and seed give byte-identical outputs.
    ///
    /// Example: ballast simulate --policies deploy/policies/hpa --compare
    /// deploy/policies/queue-drain --trace builtin:day --out out/day
    ///
    /// The table, per service and policy set: pod-hours (every pod, starting or ready, as billed); x bound (pod-hours
    /// over the lower bound; below 1 the set cannot have met the objective as the bound models it); wait mean (mean
    /// wait of completed jobs, arrival to the start of the attempt that completed, 0 s waits included: most jobs
    /// find a free slot, so a median would be 0 s); wait p95 and wait max (the same waits); over SLO s (seconds in
    /// which a waiting job had waited longer than waitSloSeconds); scales (replica changes); failures (plugin calls
    /// that failed); completed (jobs); left (jobs still waiting or running at the end). Each service's `lower bound`
    /// row: the fewest pod-hours that meet its wait objective on this trace, by Erlang C (M/M/c) per minute: each
    /// minute's exact arrivals / 60 s as the rate, 1 / serviceSeconds per slot, concurrency slots per pod, pods added
    /// where they save most until at most 5% of all jobs are expected to wait longer than waitSloSeconds (the p95
    /// wait meets it). It assumes pods ready at once (no start-up delay, no minReplicas or maxReplicas), Poisson
    /// arrivals within each minute, exponential service times and no failed attempts.
    ///
    /// chart.svg (or --chart FILE, PNG when FILE ends in .png): per service, every set's replicas with the load
    /// and the lower bound's pods, and every set's p95 wait per sample with waitSloSeconds as a dashed line.
    ///
    /// timeline.csv, a row per service and policy set every --sample: time_s (end of the interval), policy, service,
    /// arrivals and completed (jobs in the interval), waiting, active, delayed, failed (queue counts at time_s),
    /// replicas and ready (pods at time_s), busy_percent (busy share of ready pods' slots over the interval; empty
    /// with no ready pod), oldest_wait_s (the oldest waiting job's wait at time_s), wait_p95_s (p95 wait of the
    /// jobs completed in the interval; empty when none did), lower_bound_pods (mean pods of the lower bound over
    /// the interval).
    Simulate(SimulateArgs),
    /// Build a trace of what queues received, from Prometheus's history of `ballast_queue_jobs_added_total` (the
    /// host and `ballast exporter` export it), and a Simulation document for it: to ask what a policy would have
    /// done last week. The trace holds every job added in the span, spread evenly within each step.
    ///
    /// Example: ballast trace --prometheus http://prometheus:9090 --from now-7d --queue stt-queue=whisper-pyannote-stt
    /// --out week.csv --simulation week.yaml, then ballast simulate --policies deploy/policies/queue-drain --trace
    /// week.csv --sim week.yaml
    Trace(Box<TraceArgs>),
    /// The five model services of the original design over a simulated day with bursts: the original HPA
    /// configuration (`hpa` plugin) against `queue-drain`. Prints the comparison and writes summary.txt,
    /// timeline.csv and chart.svg. Needs no cluster, network or files.
    Demo {
        /// Directory for summary.txt, timeline.csv and chart.svg.
        #[arg(long, default_value = "out/demo")]
        out: PathBuf,
        /// Seed of the load noise and service-time jitter.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Instead of the day: the scorecard, the original HPAs against queue-drain on every built-in shape it is
        /// scored on (day, three days, burst, wave, spikes, batches), a line per shape and seed: the five
        /// services' pod-hours (with the Erlang-C lower bound) and seconds over their wait objectives (with the
        /// floor no policy within maxReplicas avoids), and whether the candidate halves the HPAs' seconds over
        /// (`half`) and the part of them above that floor (`feasible`) with no more pod-hours.
        #[arg(long)]
        scorecard: bool,
        /// The scorecard's seeds.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3", requires = "scorecard")]
        seeds: Vec<u64>,
        /// The scorecard's candidate instead of the shipped queue-drain: a policy file or directory for the five
        /// services (simulated with the demo's physics).
        #[arg(long, value_name = "FILE|DIR", requires = "scorecard")]
        policies: Option<PathBuf>,
    },
    /// Author policy plugins: create a project, build it, check a component, run its table tests, ship it as a
    /// ConfigMap or an OCI artifact.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Compile a component read from standard input into an artifact on standard output, within a memory and CPU
    /// budget: the child process the host compiles untrusted plugins in.
    #[command(name = ballast::runtime::COMPILE_COMMAND, hide = true)]
    CompilePlugin {
        /// Address-space limit of this process (RLIMIT_AS), in bytes.
        #[arg(long)]
        memory_bytes: u64,
        /// CPU-time limit of this process (RLIMIT_CPU), in seconds.
        #[arg(long)]
        cpu_seconds: u64,
    },
}

#[derive(Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Only the policies of this namespace (all namespaces when absent).
    #[arg(long, short)]
    pub namespace: Option<String>,
    /// Redis URL of the BullMQ queues, to check every policy's queues.
    #[arg(long, env = "BALLAST_REDIS_URL")]
    pub redis: Option<String>,
    #[command(flatten)]
    pub prometheus: PrometheusArgs,
    /// Namespace of the host's leader Lease (`ballast run --lease-namespace`).
    #[arg(long, default_value = "ballast-system")]
    pub lease_namespace: String,
}

/// Where Prometheus is and how to authenticate to it. Secrets come from files (a mounted Secret), read at every
/// refresh so a rotated one is picked up.
#[derive(Args, Clone, Default)]
pub struct PrometheusArgs {
    /// Prometheus base URL (GPU, latency and custom metrics are unavailable without it).
    #[arg(long, env = "BALLAST_PROMETHEUS_URL")]
    pub prometheus: Option<String>,
    /// File holding a bearer token sent to Prometheus (`Authorization: Bearer`).
    #[arg(long, value_name = "FILE", conflicts_with = "prometheus_basic_auth_user")]
    pub prometheus_bearer_token_file: Option<PathBuf>,
    /// User for HTTP basic auth to Prometheus (its --web.config.file `basic_auth_users`); needs
    /// --prometheus-basic-auth-password-file.
    #[arg(long, value_name = "USER", requires = "prometheus_basic_auth_password_file")]
    pub prometheus_basic_auth_user: Option<String>,
    /// File holding the basic-auth password; needs --prometheus-basic-auth-user.
    #[arg(long, value_name = "FILE", requires = "prometheus_basic_auth_user")]
    pub prometheus_basic_auth_password_file: Option<PathBuf>,
    /// PEM file of CA certificates to trust for an https Prometheus URL (besides the system's).
    #[arg(long, value_name = "FILE")]
    pub prometheus_ca_file: Option<PathBuf>,
    /// Accept any certificate from an https Prometheus (for testing only: anyone in the path can answer).
    #[arg(long)]
    pub prometheus_insecure_skip_verify: bool,
}

impl PrometheusArgs {
    pub fn source(
        &self,
        settings: &PrometheusSettings,
    ) -> anyhow::Result<Option<ballast::sources::prometheus::PrometheusSource>> {
        use ballast::sources::prometheus::{Credential, PrometheusAuth, PrometheusConfig, PrometheusSource};
        let Some(url) = &self.prometheus else { return Ok(None) };
        let mut config = PrometheusConfig::new(url.clone()).with_settings(settings);
        config.auth = match (&self.prometheus_bearer_token_file, &self.prometheus_basic_auth_user) {
            (Some(token), _) => PrometheusAuth::Bearer(Credential::File(token.clone())),
            (None, Some(user)) => PrometheusAuth::Basic {
                user: user.clone(),
                password: Credential::File(self.prometheus_basic_auth_password_file.clone().unwrap_or_default()),
            },
            (None, None) => PrometheusAuth::None,
        };
        config.ca_file.clone_from(&self.prometheus_ca_file);
        config.insecure = self.prometheus_insecure_skip_verify;
        Ok(Some(PrometheusSource::new(config)?))
    }
}

/// Limits on plugins (see README, "Plugin limits"); each defaults to the host's built-in value.
#[derive(Args, Clone, Default)]
pub struct PluginLimitArgs {
    /// Wall-clock budget of one plugin call, e.g. 10ms (default 10ms; 1ms to 60s).
    #[arg(long, value_parser = duration_flag(Duration::from_millis(1), Duration::from_secs(60)))]
    pub plugin_deadline: Option<Duration>,
    /// Linear memory one plugin instance may hold, all its memories together, in MiB (default 64; 1 to 4096).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub plugin_memory_mib: Option<u64>,
    /// Memory a plugin's compilation may take (in a child process), in MiB (default 2048; 64 to 65536).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(64..=65536))]
    pub plugin_compile_memory_mib: Option<u64>,
    /// Time a plugin's compilation may take, e.g. 2m (default 120s; 1s to 60m).
    #[arg(long, value_parser = duration_flag(REFRESH_MIN, TIMER_MAX))]
    pub plugin_compile_timeout: Option<Duration>,
    /// Run every plugin call on a fresh instance, so that a decision depends only on its recorded input (costs an
    /// instantiation per call; see BENCHMARKS.md).
    #[arg(long)]
    pub fresh_instance_per_call: bool,
}

impl PluginLimitArgs {
    /// The runtime limits these flags give, compiling plugins in a child process of this executable.
    pub fn limits(&self, base: ballast::runtime::RuntimeLimits) -> anyhow::Result<ballast::runtime::RuntimeLimits> {
        // The flags' ranges keep these products far below usize::MAX.
        let mib = |value: Option<u64>, default: usize| value.map_or(default, |n| (n as usize) << 20);
        Ok(ballast::runtime::RuntimeLimits {
            deadline: self.plugin_deadline.unwrap_or(base.deadline),
            memory_bytes: mib(self.plugin_memory_mib, base.memory_bytes),
            compile_memory_bytes: mib(self.plugin_compile_memory_mib, base.compile_memory_bytes),
            compile_deadline: self.plugin_compile_timeout.unwrap_or(base.compile_deadline),
            compiler: Some(std::env::current_exe().context("locating the ballast executable (the plugin compiler)")?),
            fresh_instance_per_call: self.fresh_instance_per_call || base.fresh_instance_per_call,
            ..base
        })
    }
}

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Create a plugin project NAME/ (Rust, JavaScript or Python) with the WIT world, a small queue-backlog policy,
    /// a cases.yaml of table tests and a README.
    New {
        /// The plugin's language.
        #[arg(long, value_enum)]
        lang: ballast::authoring::build::Language,
        /// The project's name, also its directory's.
        name: String,
        /// Where to create the project directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Build the plugin project in DIR (its language detected from Cargo.toml, package.json or app.py) into a
    /// component, installing what the language needs; prints the component's path and size.
    Build {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where to write the component (default: DIR/dist/NAME.wasm).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Validate a component against the ballast:policy world as the controller does, and print its size (and
    /// gzipped size), imports, exports, compile and instantiate times, and a canary decision on a sample
    /// observation. Exits non-zero for a wrong world, a non-component, or a canary that traps.
    Check {
        /// The component (.wasm), or builtin:NAME (hpa, queue-drain).
        #[arg(value_name = "COMPONENT")]
        file: PathBuf,
        /// The plugin config (JSON) for the canary decision.
        #[arg(long, default_value = "{}")]
        config: String,
        #[command(flatten)]
        limits: PluginLimitArgs,
    },
    /// Run table tests: each case's input through the plugin, its replicas (or policy error) and reason compared
    /// with what the case expects. Exits non-zero when a case fails.
    Test {
        /// The component (.wasm), or builtin:NAME (hpa, queue-drain).
        #[arg(value_name = "COMPONENT")]
        file: PathBuf,
        /// The cases file (YAML; see policies-wit/README.md).
        #[arg(long, value_name = "CASES")]
        cases: PathBuf,
        #[command(flatten)]
        limits: PluginLimitArgs,
    },
    /// Print a ConfigMap carrying the plugin (gzip-compressed when smaller, labelled for the controller, with the
    /// sha256 to pin), or push it to an OCI registry with --oci and print the digest-pinned reference.
    Pack(PackArgs),
}

#[derive(Args)]
pub struct PackArgs {
    /// The component (.wasm).
    #[arg(value_name = "COMPONENT")]
    pub file: PathBuf,
    /// Name of the ConfigMap.
    #[arg(long, required_unless_present = "oci")]
    pub config_map: Option<String>,
    /// Namespace of the ConfigMap: the ScalingPolicy's.
    #[arg(long, required_unless_present = "oci")]
    pub namespace: Option<String>,
    /// The binaryData key holding the component.
    #[arg(long, default_value = ballast::authoring::pack::DEFAULT_KEY)]
    pub key: String,
    /// Push to this OCI repository instead (REGISTRY/REPOSITORY or REGISTRY/REPOSITORY:TAG).
    #[arg(long, value_name = "REF", conflicts_with = "config_map")]
    pub oci: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Args)]
pub struct RegistryArgs {
    /// Docker config.json with the registry's credentials (as `docker login` writes it).
    #[arg(long, env = "BALLAST_REGISTRY_AUTH", value_name = "FILE")]
    pub registry_auth: Option<PathBuf>,
    /// Speak plain HTTP to the registry (loopback registries always get plain HTTP).
    #[arg(long)]
    pub insecure: bool,
}

impl RegistryArgs {
    pub fn access(&self, registry: &str, insecure: bool) -> anyhow::Result<ballast::oci::RegistryAccess> {
        let mut access = ballast::oci::RegistryAccess { insecure: self.insecure || insecure, ..Default::default() };
        if let Some(path) = &self.registry_auth {
            let json = std::fs::read(path).with_context(|| format!("reading --registry-auth {}", path.display()))?;
            access.auth = ballast::oci::auth_from_docker_config(&path.display().to_string(), &json, registry)?;
        }
        Ok(access)
    }
}

#[derive(Args)]
pub struct RedisArgs {
    /// Redis URL: redis://[user:password@]host[:port][/db], or rediss:// for TLS.
    #[arg(long, env = "BALLAST_REDIS_URL")]
    pub redis: String,
    /// BullMQ key prefix of the queues.
    #[arg(long, default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    /// PEM file of the CA that signed the server's TLS certificate, when not a system root.
    #[arg(long)]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Give up on a collection after this long (10ms to 5m).
    #[arg(long, default_value = "5s", value_parser = duration_flag(TIMEOUT_MIN, TIMEOUT_MAX))]
    pub timeout: Duration,
    /// BullMQ queue names.
    #[arg(required = true)]
    pub queues: Vec<String>,
}

impl RedisArgs {
    pub fn queue_refs(&self) -> Vec<QueueRef> {
        self.queues.iter().map(|name| QueueRef { name: name.clone(), prefix: Some(self.prefix.clone()) }).collect()
    }

    pub fn options(&self) -> anyhow::Result<ConnectOptions> {
        let ca_cert_pem = match &self.ca_cert {
            Some(path) => Some(std::fs::read(path).with_context(|| format!("reading --ca-cert {}", path.display()))?),
            None => None,
        };
        Ok(ConnectOptions { timeout: self.timeout, ca_cert_pem })
    }
}

#[derive(Args)]
pub struct KubeArgs {
    /// Kubeconfig file; in-cluster configuration or ~/.kube/config when absent.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use (its current context when absent).
    #[arg(long)]
    pub context: Option<String>,
}

impl KubeArgs {
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let options = kube::config::KubeConfigOptions { context: self.context.clone(), ..Default::default() };
        let config = match (&self.kubeconfig, &self.context) {
            (Some(path), _) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .with_context(|| format!("kubeconfig {}", path.display()))?
            }
            (None, Some(context)) => kube::Config::from_kubeconfig(&options)
                .await
                .with_context(|| format!("context {context} of ~/.kube/config"))?,
            (None, None) => kube::Config::infer().await.context(
                "no Kubernetes configuration: not in a cluster and no kubeconfig; pass --kubeconfig or set KUBECONFIG",
            )?,
        };
        kube::Client::try_from(config).context("creating the Kubernetes client")
    }
}

/// The ScalingPolicies of `namespace`, or of every namespace.
pub async fn list_policies(
    kube: &KubeArgs,
    namespace: Option<&str>,
) -> anyhow::Result<Vec<ballast::spec::ScalingPolicy>> {
    use ballast::spec::ScalingPolicy;
    let client = kube.client().await?;
    let api: kube::Api<ScalingPolicy> = match namespace {
        Some(ns) => kube::Api::namespaced(client, ns),
        None => kube::Api::all(client),
    };
    let list = api
        .list(&Default::default())
        .await
        .context("listing ScalingPolicies (is the CRD installed? `ballast crd | kubectl apply -f -`)")?;
    Ok(list.items)
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Read ScalingPolicy documents (and the plugin ConfigMaps they name) from this YAML file or directory instead
    /// of watching the CRD (scale targets stay in the cluster; nothing is written to policy status).
    #[arg(long, value_name = "FILE|DIR")]
    pub config: Option<std::path::PathBuf>,
    /// Redis URL of the BullMQ queues (queue metrics are unavailable without it).
    #[arg(long, env = "BALLAST_REDIS_URL")]
    pub redis: Option<String>,
    /// How long a tick waits for the Redis collection it asked for before deciding on older counts (10ms to 5m).
    #[arg(long, default_value = "250ms", value_parser = duration_flag(TIMEOUT_MIN, TIMEOUT_MAX))]
    pub redis_deadline: Duration,
    /// Queue counts older than this are unavailable (100ms to 60m).
    #[arg(long, default_value = "5s", value_parser = duration_flag(TIMER_MIN, TIMER_MAX))]
    pub redis_max_age: Duration,
    /// Give up on a Redis collection, connecting included, after this long (10ms to 5m).
    #[arg(long, default_value = "2s", value_parser = duration_flag(TIMEOUT_MIN, TIMEOUT_MAX))]
    pub redis_timeout: Duration,
    /// How often a policy's Redis connection Secret (`metrics.redis`) is read again, so a rotated password is
    /// picked up (1s to 60m).
    #[arg(long, default_value = "30s", value_parser = duration_flag(REFRESH_MIN, TIMER_MAX))]
    pub redis_secret_every: Duration,
    #[command(flatten)]
    pub prometheus: PrometheusArgs,
    /// Time between decisions (100ms to 60m).
    #[arg(long, default_value = "1s", value_parser = duration_flag(TIMER_MIN, TIMER_MAX))]
    pub tick: Duration,
    /// How often CPU and memory are read from metrics.k8s.io (the HPA's sync period is 15 s; 1s to 60m).
    #[arg(long, default_value = "15s", value_parser = duration_flag(REFRESH_MIN, TIMER_MAX))]
    pub resources_every: Duration,
    /// Give up on one metrics.k8s.io or pod list request after this long (10ms to 5m).
    #[arg(long, default_value = "5s", value_parser = duration_flag(TIMEOUT_MIN, TIMEOUT_MAX))]
    pub resources_timeout: Duration,
    /// The time after a pod starts in which its CPU sample counts only when the pod is ready and the sample was
    /// taken since (the HPA controller's --horizontal-pod-autoscaler-cpu-initialization-period; 0s to 60m).
    #[arg(long, default_value = "5m", value_parser = duration_flag(Duration::ZERO, TIMER_MAX))]
    pub cpu_initialization_period: Duration,
    /// The time after a pod starts in which its readiness changes count as its first readiness (the HPA
    /// controller's --horizontal-pod-autoscaler-initial-readiness-delay; 0s to 60m).
    #[arg(long, default_value = "30s", value_parser = duration_flag(Duration::ZERO, TIMER_MAX))]
    pub initial_readiness_delay: Duration,
    /// How often Prometheus is queried (one query per distinct template, every policy together; 1s to 60m).
    #[arg(long, default_value = "5s", value_parser = duration_flag(REFRESH_MIN, TIMER_MAX))]
    pub prometheus_every: Duration,
    /// Give up on one Prometheus query after this long (10ms to 5m).
    #[arg(long, default_value = "5s", value_parser = duration_flag(TIMEOUT_MIN, TIMEOUT_MAX))]
    pub prometheus_timeout: Duration,
    /// Prometheus samples older than this are ignored (`{max_sample_age}` in templates; whole seconds, 1s to 60m).
    #[arg(long, default_value = "60s", value_parser = seconds_flag(REFRESH_MIN, TIMER_MAX))]
    pub prometheus_max_sample_age: Duration,
    /// The `rate()` window of the default Prometheus templates (`{rate_window}`; whole seconds, 1s to 60m).
    #[arg(long, default_value = "60s", value_parser = seconds_flag(REFRESH_MIN, TIMER_MAX))]
    pub prometheus_rate_window: Duration,
    /// A Prometheus or metrics.k8s.io collection older than this is not used at all (1s to 60m).
    #[arg(long, default_value = "60s", value_parser = duration_flag(REFRESH_MIN, TIMER_MAX))]
    pub snapshot_max_age: Duration,
    /// Write each policy's status at least this often (and after every decision that changed something; 1s to
    /// 60m).
    #[arg(long, default_value = "10s", value_parser = duration_flag(REFRESH_MIN, TIMER_MAX))]
    pub status_every: Duration,
    /// How often HPAs and KEDA ScaledObjects are listed: a policy whose workload one scales is held (1s to 60m).
    #[arg(long, default_value = "5s", value_parser = duration_flag(REFRESH_MIN, TIMER_MAX))]
    pub conflicts_every: Duration,
    /// How long the first tick waits for the first list of HPAs and ScaledObjects before scaling without it (1s to
    /// 60m).
    #[arg(long, default_value = "10s", value_parser = duration_flag(REFRESH_MIN, TIMER_MAX))]
    pub conflicts_first_wait: Duration,
    /// How often discovery is asked whether metrics.k8s.io is served (1s to 60m).
    #[arg(long, default_value = "30s", value_parser = duration_flag(REFRESH_MIN, TIMER_MAX))]
    pub metrics_api_every: Duration,
    /// The first wait before retrying a /scale read or write that conflicted or could not connect; doubled after
    /// each retry (10ms to 5m).
    #[arg(long, default_value = "100ms", value_parser = duration_flag(TIMEOUT_MIN, TIMEOUT_MAX))]
    pub scale_retry_backoff: Duration,
    /// Give up connecting to an OCI registry after this long, when a plugin is pulled (10ms to 5m).
    #[arg(long, default_value = "10s", value_parser = duration_flag(TIMEOUT_MIN, TIMEOUT_MAX))]
    pub registry_connect_timeout: Duration,
    /// Give up on a registry's answer when it sends nothing for this long (10ms to 5m).
    #[arg(long, default_value = "60s", value_parser = duration_flag(TIMEOUT_MIN, TIMEOUT_MAX))]
    pub registry_read_timeout: Duration,
    /// Address to serve /metrics, /healthz and /readyz on.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_listen: SocketAddr,
    /// Lease used for leader election among the host replicas.
    #[arg(long, default_value = ballast::controller::lease::DEFAULT_LEASE_NAME)]
    pub lease_name: String,
    /// Namespace of the lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// How long after the leader's last renewal another host may take over (client-go's leaseDuration; 1s to 60m).
    #[arg(long, default_value = "15s", value_parser = duration_flag(REFRESH_MIN, TIMER_MAX))]
    pub lease_duration: Duration,
    /// How long the leader keeps scaling while its renewals fail (client-go's renewDeadline); shorter than
    /// --lease-duration, so it has stopped before another host takes over (1s to 60m).
    #[arg(long, default_value = "10s", value_parser = duration_flag(REFRESH_MIN, TIMER_MAX))]
    pub renew_deadline: Duration,
    /// How often the leader renews and the other hosts try to acquire the lease (client-go's retryPeriod; 100ms to
    /// 60m).
    #[arg(long, default_value = "2s", value_parser = duration_flag(TIMER_MIN, TIMER_MAX))]
    pub retry_period: Duration,
    /// This host's identity in the lease and in Events.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Directory for compiled plugins, so restarts skip compilation.
    #[arg(long, env = "BALLAST_CACHE_DIR")]
    pub cache_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub plugin_limits: PluginLimitArgs,
    /// A directory whose component files ScalingPolicies may name in `plugin.path` (repeatable). Without it, file
    /// plugins are refused in cluster mode: any namespace's policy could otherwise read any file of the host.
    #[arg(long = "plugin-dir", value_name = "DIR")]
    pub plugin_dirs: Vec<std::path::PathBuf>,
}

impl RunArgs {
    /// The host's settings these flags give.
    pub fn config(&self) -> anyhow::Result<HostConfig> {
        let limits = ballast::runtime::RuntimeLimits { cache_dir: self.cache_dir.clone(), ..Default::default() };
        Ok(HostConfig {
            schedule: Schedule {
                tick: self.tick,
                status_every: self.status_every,
                snapshot_max_age: self.snapshot_max_age,
            },
            redis: RedisSettings {
                deadline: self.redis_deadline,
                max_age: self.redis_max_age,
                timeout: self.redis_timeout,
                secret_refresh: self.redis_secret_every,
            },
            prometheus: PrometheusSettings {
                every: self.prometheus_every,
                timeout: self.prometheus_timeout,
                max_sample_age: self.prometheus_max_sample_age,
                rate_window: self.prometheus_rate_window,
            },
            resources: ResourceSettings {
                every: self.resources_every,
                timeout: self.resources_timeout,
                cpu_initialization_period: self.cpu_initialization_period,
                initial_readiness_delay: self.initial_readiness_delay,
            },
            lease: LeaseTimings {
                duration: self.lease_duration,
                renew_deadline: self.renew_deadline,
                retry_period: self.retry_period,
            },
            checks: ClusterChecks {
                metrics_api_every: self.metrics_api_every,
                conflicts_every: self.conflicts_every,
                conflicts_first_wait: self.conflicts_first_wait,
            },
            requests: Requests {
                scale_retry: self.scale_retry_backoff,
                registry: RegistryTimeouts { connect: self.registry_connect_timeout, read: self.registry_read_timeout },
            },
            limits: self.plugin_limits.limits(limits)?,
        })
    }
}

/// The shortest and longest period of a timer flag (a zero period panics the timer that takes it, and an absurd one
/// overflows it), the shortest period of a refresh from the API server, and the range of a Redis timeout.
const TIMER_MIN: Duration = Duration::from_millis(100);
const TIMER_MAX: Duration = Duration::from_secs(3600);
const REFRESH_MIN: Duration = Duration::from_secs(1);
const TIMEOUT_MIN: Duration = Duration::from_millis(10);
const TIMEOUT_MAX: Duration = Duration::from_secs(300);

/// The parser of a duration flag (`500ms`, `5s`, `1m`) that refuses a duration outside `min..=max`, naming the
/// range.
fn duration_flag(min: Duration, max: Duration) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync {
    move |text| match parse_duration(text)? {
        Some(duration) if (min..=max).contains(&duration) => Ok(duration),
        _ => Err(format!("must be from {} to {}", show_duration(min), show_duration(max))),
    }
}

/// `500ms`, `5s` or `1m`; `None` when too long for a `Duration` of milliseconds.
fn parse_duration(text: &str) -> Result<Option<Duration>, String> {
    match scaled_number(text, &[("ms", 1), ("s", 1000), ("m", 60_000)]) {
        Ok(millis) => Ok(millis.map(Duration::from_millis)),
        Err(NumberError::Unit(unit)) => Err(format!("{text:?}: unknown unit {unit:?}; use ms, s or m (e.g. 5s)")),
        Err(NumberError::NoDigits) => Err(format!("{text:?} is not a duration like 5s, 500ms or 1m")),
    }
}

/// Why a number with a unit could not be read.
enum NumberError<'a> {
    Unit(&'a str),
    NoDigits,
}

/// The leading digits of `text` times the factor of the unit after them, one of `units` (unit, factor); `None` when
/// the product is beyond u64.
fn scaled_number<'a>(text: &'a str, units: &[(&str, u64)]) -> Result<Option<u64>, NumberError<'a>> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let Some(&(_, factor)) = units.iter().find(|(name, _)| *name == unit) else { return Err(NumberError::Unit(unit)) };
    if number.is_empty() {
        return Err(NumberError::NoDigits);
    }
    // `number` is all digits: it fails to parse only when it is beyond u64.
    Ok(number.parse::<u64>().ok().and_then(|n| n.checked_mul(factor)))
}

/// [`duration_flag`] for a setting used in whole seconds (written into PromQL as such).
fn seconds_flag(min: Duration, max: Duration) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync {
    let within = duration_flag(min, max);
    move |text| match within(text)? {
        duration if duration.subsec_nanos() == 0 => Ok(duration),
        _ => Err("must be whole seconds".into()),
    }
}

/// A duration as the flags take it: `0s`, `100ms`, `5s`, `60m`.
fn show_duration(duration: Duration) -> String {
    match duration.as_millis() {
        0 => "0s".into(),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

#[derive(Args)]
pub struct TraceArgs {
    #[command(flatten)]
    pub prometheus: PrometheusArgs,
    /// Start of the span: RFC 3339 (2026-11-30T00:00:00Z), Unix seconds, or now-N with a unit of s, m, h or d.
    #[arg(long, value_parser = trace_time)]
    pub from: i64,
    /// End of the span, as --from.
    #[arg(long, default_value = "now", value_parser = trace_time)]
    pub to: i64,
    /// Time between samples read: whole seconds from 1s to 60m. Arrivals within a step are spread evenly, so use
    /// the scrape interval for bursts.
    #[arg(long, default_value = "15s", value_parser = duration_flag(Duration::from_secs(1), Duration::from_secs(3600)))]
    pub step: Duration,
    /// A BullMQ queue to read, and the service (ScalingPolicy name) its jobs go to in the trace; SERVICE defaults
    /// to the queue's name. Repeat for each queue (at most 100).
    #[arg(long = "queue", value_name = "QUEUE[=SERVICE]", required = true)]
    pub queues: Vec<String>,
    /// Where to write the trace CSV (`time_s,service,arrivals`), `-` for standard output.
    #[arg(long, default_value = "-")]
    pub out: PathBuf,
    /// Where to write the Simulation document (service time from the history where it tells it, the rest marked
    /// as guesses to review).
    #[arg(long, value_name = "FILE")]
    pub simulation: Option<PathBuf>,
}

/// `--from`/`--to` of `ballast trace`: Unix seconds.
fn trace_time(text: &str) -> Result<i64, String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?;
    let now = i64::try_from(now.as_secs()).map_err(|e| e.to_string())?;
    if text == "now" {
        return Ok(now);
    }
    if let Some(ago) = text.strip_prefix("now-") {
        let split = ago.find(|c: char| !c.is_ascii_digit()).unwrap_or(ago.len());
        let (number, unit) = ago.split_at(split);
        let seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(format!("{text:?}: unknown unit {unit:?}; use s, m, h or d (e.g. now-7d)")),
        };
        let ago = number.parse::<i64>().ok().and_then(|n| n.checked_mul(seconds)).filter(|&s| s <= now);
        return ago.map(|ago| now - ago).ok_or_else(|| format!("{text:?} is before 1970"));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().map_err(|_| format!("{text:?} is too large for Unix seconds"));
    }
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|e| format!("{text:?} is not RFC 3339 (2026-11-30T00:00:00Z), Unix seconds or now-N: {e}"))
}

#[derive(Args)]
pub struct SimulateArgs {
    /// A multi-document YAML file of ScalingPolicy documents (apiVersion ballast.dev/v1alpha1), one per service,
    /// with the plugin ConfigMaps they refer to; or a directory of such files (as `kubectl apply -k` applies them).
    /// Repeat to compare several policy sets on the same trace and seed.
    #[arg(long = "policies", value_name = "FILE|DIR", required = true)]
    pub policies: Vec<PathBuf>,
    /// Another policy set to run on the same trace and seed, printed side by side (same as repeating --policies).
    #[arg(long, value_name = "FILE|DIR")]
    pub compare: Vec<PathBuf>,
    /// The metrics pipeline each set's decisions are modelled behind: `direct` (Ballast: each policy's
    /// decisionIntervalSeconds, metrics as old as metricsDelaySeconds) or `original` (the HPA's 15 s sync on
    /// metrics 60 s old). Once for every set, or once per set in the order of --policies then --compare.
    #[arg(long, value_enum, default_values_t = [ballast::sim::Pipeline::Direct])]
    pub pipeline: Vec<ballast::sim::Pipeline>,
    /// A name for a policy set in tables, CSV and charts (default: its file's name); once per set, in the order of
    /// --policies then --compare. Two sets may not be named alike.
    #[arg(long)]
    pub label: Vec<String>,
    /// Compare sets even when they simulate a service under different physics (service time, start-up, load):
    /// refused by default, since the figures would then compare the clusters rather than the policies.
    #[arg(long)]
    pub allow_different_physics: bool,
    /// Simulation parameters per service (kind: Simulation; serviceSeconds, startupSeconds, concurrency, jitter,
    /// baseRate, ...). Default: the built-in parameters of the five model services. A `simulation:` section in a
    /// policy document takes precedence.
    #[arg(long, value_name = "FILE")]
    pub sim: Option<PathBuf>,
    /// Load: a CSV file of `time_s,service,arrivals` rows (jobs arriving in that second), or under a
    /// `time_s,service,rate` header rate rows (jobs per second from that time until the service's next row, as
    /// seeded Poisson arrivals), or builtin:NAME scaled by each service's baseRate: day (a diurnal day with four
    /// flash bursts, repeating every 24 h), burst (30% with a 10-minute burst to 250% every 3 hours), step (30%, then
    /// 100% after a third of the run), ramp (0 to 150% over the run), sawtooth (10% to 120% every hour), steady
    /// (60%), wave (20% to 100% and back every 6 hours), spikes (40% with a 1-3 minute spike at 2.5-4x at a
    /// different minute of every hour), batches (15% with a 5-minute upload at 150% every 40 minutes).
    #[arg(long, value_name = "FILE|builtin:NAME", default_value = "builtin:day")]
    pub trace: String,
    /// Seed of the load noise and service-time jitter.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated time to run (e.g. 90s, 30m, 6h, 1d; at most 31d). Default: the trace's length (a day for
    /// built-ins).
    #[arg(long, value_parser = parse_duration_s)]
    pub duration: Option<u64>,
    /// Simulation step (whole seconds).
    #[arg(long, default_value = "1s", value_parser = parse_duration_s)]
    pub step: u64,
    /// Interval of the timeline's rows and the chart's points.
    #[arg(long, default_value = "60s", value_parser = parse_duration_s)]
    pub sample: u64,
    /// Directory for summary.txt, timeline.csv and chart.svg; without it only the table is printed.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also draw the chart to FILE: PNG when FILE ends in .png (1200 pixels wide), else SVG.
    #[arg(long, value_name = "FILE")]
    pub chart: Option<PathBuf>,
    /// Credentials for plugins given as `oci:` references (pulled once, cached under BALLAST_CACHE_DIR).
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub plugin_limits: PluginLimitArgs,
}

/// `90`, `90s`, `15m`, `6h` or `1d`, in seconds: at least a second, at most the 31 days a simulation may last.
fn parse_duration_s(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let seconds = match scaled_number(text, &[("", 1), ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)]) {
        // Digits beyond u64 are too long, as are those that overflow with their unit.
        Ok(seconds) => seconds.unwrap_or(u64::MAX),
        Err(NumberError::Unit(unit)) => return Err(format!("unknown unit `{unit}` in `{text}`: use s, m, h or d")),
        Err(NumberError::NoDigits) => return Err(format!("`{text}` is not a duration such as 90s, 15m, 6h or 1d")),
    };
    match seconds {
        0 => Err("must be at least 1s".into()),
        s if s > ballast::sim::MAX_DURATION_S => Err(format!(
            "must be at most 31d ({} s): a simulation keeps every job and timeline row",
            ballast::sim::MAX_DURATION_S
        )),
        s => Ok(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag's parser agrees with its field's type (clap checks that only when the flag is given) and takes
    /// its bounds; one past them is refused.
    #[test]
    fn run_and_simulate_take_every_bounded_flag() {
        let limits = [
            "--plugin-deadline=5ms",
            "--plugin-memory-mib=4096",
            "--plugin-compile-memory-mib=64",
            "--plugin-compile-timeout=60m",
            "--fresh-instance-per-call",
        ];
        let lease = ["--lease-duration=15s", "--renew-deadline=10s", "--retry-period=100ms", "--prometheus-every=1s"];
        let run = ["ballast", "run"].into_iter().chain(limits).chain(lease);
        let cli = Cli::try_parse_from(run).unwrap_or_else(|e| panic!("{e}"));
        let Command::Run(args) = cli.command else { panic!("not run") };
        assert_eq!(args.retry_period, TIMER_MIN);
        assert_eq!(args.plugin_limits.plugin_memory_mib, Some(4096));
        let limits_now = args.plugin_limits.limits(ballast::runtime::RuntimeLimits::default()).unwrap();
        assert_eq!((limits_now.memory_bytes, limits_now.compile_memory_bytes), (4096 << 20, 64 << 20));
        let simulate = ["ballast", "simulate", "--policies", "p.yaml"].into_iter().chain(limits);
        Cli::try_parse_from(simulate).unwrap_or_else(|e| panic!("{e}"));
        let auth = [
            "--prometheus=https://prometheus.monitoring:9090",
            "--prometheus-basic-auth-user=ballast",
            "--prometheus-basic-auth-password-file=/run/secrets/password",
            "--prometheus-ca-file=/run/secrets/ca.pem",
        ];
        let Command::Run(args) = Cli::try_parse_from(["ballast", "run"].into_iter().chain(auth)).unwrap().command
        else {
            panic!("not run")
        };
        let error = args
            .prometheus
            .source(&PrometheusSettings::default())
            .err()
            .expect("the password file does not exist")
            .to_string();
        assert!(error.contains("/run/secrets/password") || error.contains("/run/secrets/ca.pem"), "{error}");
        for alone in ["--prometheus-basic-auth-user=ballast", "--prometheus-basic-auth-password-file=/p"] {
            assert!(Cli::try_parse_from(["ballast", "run", alone]).is_err(), "{alone} without its pair was taken");
        }
        let both = ["ballast", "run", "--prometheus-bearer-token-file=/t", "--prometheus-basic-auth-user=u"];
        assert!(Cli::try_parse_from(both.into_iter().chain(["--prometheus-basic-auth-password-file=/p"])).is_err());
        for over in [
            "--plugin-deadline=61s",
            "--plugin-memory-mib=4097",
            "--plugin-memory-mib=0",
            "--plugin-compile-memory-mib=63",
            "--plugin-compile-timeout=61m",
            "--lease-duration=0s",
            "--retry-period=99ms",
            "--prometheus-every=999ms",
            "--prometheus-every=61m",
        ] {
            assert!(Cli::try_parse_from(["ballast", "run", over]).is_err(), "{over} was taken");
        }
    }

    fn run_config(flags: &[&str]) -> Result<HostConfig, String> {
        let cli = Cli::try_parse_from(["ballast", "run"].iter().chain(flags)).map_err(|e| e.to_string())?;
        let Command::Run(args) = cli.command else { panic!("not run") };
        Ok(args.config().expect("limits"))
    }

    /// `ballast run` without flags runs on the library's defaults, so `--help` and README state the real ones.
    #[test]
    fn run_defaults_are_the_host_config_defaults() {
        let (given, defaults) = (run_config(&[]).unwrap(), HostConfig::default());
        assert_eq!(given.schedule, defaults.schedule);
        assert_eq!(given.redis, defaults.redis);
        assert_eq!(given.prometheus, defaults.prometheus);
        assert_eq!(given.resources, defaults.resources);
        assert_eq!(given.lease, defaults.lease);
        assert_eq!(given.checks, defaults.checks);
        assert_eq!(given.requests, defaults.requests);
        assert_eq!(given.limits.deadline, defaults.limits.deadline);
        assert_eq!(given.limits.memory_bytes, defaults.limits.memory_bytes);
    }

    /// Each interval and timeout flag reaches its setting at both bounds, and one step past a bound is refused
    /// with a message naming the flag.
    #[test]
    fn run_interval_flags_take_their_bounds_and_name_themselves_past_them() {
        let lowest = [
            "--redis-deadline=10ms",
            "--redis-max-age=100ms",
            "--redis-timeout=10ms",
            "--redis-secret-every=1s",
            "--resources-timeout=10ms",
            "--cpu-initialization-period=0s",
            "--initial-readiness-delay=0s",
            "--prometheus-timeout=10ms",
            "--prometheus-max-sample-age=1s",
            "--prometheus-rate-window=1s",
            "--snapshot-max-age=1s",
            "--conflicts-every=1s",
            "--conflicts-first-wait=1s",
            "--metrics-api-every=1s",
            "--scale-retry-backoff=10ms",
            "--registry-connect-timeout=10ms",
            "--registry-read-timeout=10ms",
        ];
        let config = run_config(&lowest).unwrap_or_else(|e| panic!("{e}"));
        let ms = Duration::from_millis;
        assert_eq!((config.redis.deadline, config.redis.max_age, config.redis.timeout), (ms(10), ms(100), ms(10)));
        assert_eq!(config.redis.secret_refresh, ms(1000));
        assert_eq!(config.resources.timeout, ms(10));
        assert_eq!(config.resources.cpu_initialization_period, Duration::ZERO);
        assert_eq!(config.resources.initial_readiness_delay, Duration::ZERO);
        assert_eq!(config.prometheus.timeout, ms(10));
        assert_eq!((config.prometheus.max_sample_age, config.prometheus.rate_window), (ms(1000), ms(1000)));
        assert_eq!(config.schedule.snapshot_max_age, ms(1000));
        assert_eq!(config.checks.metrics_api_every, ms(1000));
        assert_eq!((config.checks.conflicts_every, config.checks.conflicts_first_wait), (ms(1000), ms(1000)));
        assert_eq!(config.requests.scale_retry, ms(10));
        assert_eq!((config.requests.registry.connect, config.requests.registry.read), (ms(10), ms(10)));
        let highest: Vec<String> = lowest.iter().map(|flag| highest_of(flag)).collect();
        let highest: Vec<&str> = highest.iter().map(String::as_str).collect();
        let config = run_config(&highest).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.redis.deadline, Duration::from_secs(300));
        assert_eq!(config.resources.cpu_initialization_period, TIMER_MAX);
        assert_eq!(config.checks.metrics_api_every, TIMER_MAX);
        assert_eq!(config.requests.scale_retry, TIMEOUT_MAX);
        assert_eq!(config.requests.registry.read, TIMEOUT_MAX);
        for over in [
            "--redis-deadline=9ms",
            "--redis-deadline=301s",
            "--redis-max-age=99ms",
            "--redis-timeout=300001ms",
            "--redis-secret-every=999ms",
            "--resources-timeout=9ms",
            "--cpu-initialization-period=61m",
            "--initial-readiness-delay=61m",
            "--prometheus-timeout=301s",
            "--prometheus-max-sample-age=1500ms",
            "--prometheus-rate-window=0s",
            "--snapshot-max-age=61m",
            "--conflicts-every=999ms",
            "--conflicts-first-wait=61m",
            "--metrics-api-every=0s",
            "--scale-retry-backoff=9ms",
            "--registry-connect-timeout=301s",
            "--registry-read-timeout=9ms",
        ] {
            let flag = over.split('=').next().unwrap();
            let error = run_config(&[over]).expect_err(over);
            assert!(error.contains(flag) && error.contains("must be"), "{over}: {error}");
        }
    }

    /// The flag at the top of its range: 5m for a timeout, 60m for a period.
    fn highest_of(flag: &str) -> String {
        let name = flag.split('=').next().unwrap();
        let top = match name {
            "--redis-deadline" | "--scale-retry-backoff" => "5m",
            _ if name.ends_with("timeout") => "5m",
            _ => "60m",
        };
        format!("{name}={top}")
    }

    #[test]
    fn status_and_explain_take_kubectl_habits() {
        let cli = Cli::try_parse_from(["ballast", "explain", "web", "-n", "ai", "-o", "yaml", "--context", "prod"]);
        let Command::Explain { kube, policy, namespace, output } = cli.unwrap().command else { panic!("not explain") };
        assert_eq!((policy.as_str(), namespace.as_deref()), ("web", Some("ai")));
        assert!(output == OutputFormat::Yaml && kube.context.as_deref() == Some("prod"));
        let cli = Cli::try_parse_from(["ballast", "status", "-o", "json", "--log-format", "json"]).unwrap();
        assert!(cli.log_format == LogFormat::Json);
        assert!(matches!(cli.command, Command::Status { output: OutputFormat::Json, .. }));
        assert!(Cli::try_parse_from(["ballast", "status", "-o", "wide"]).is_err());
    }

    #[test]
    fn trace_times_take_rfc3339_unix_seconds_and_now_minus() {
        assert_eq!(trace_time("2026-11-30T00:00:00Z"), Ok(1_795_996_800));
        assert_eq!(trace_time("1795996800"), Ok(1_795_996_800));
        let now = trace_time("now").unwrap();
        let week_ago = trace_time("now-7d").unwrap();
        assert!((now - week_ago - 7 * 86_400).abs() <= 1, "{now} {week_ago}");
        for bad in ["now-7w", "now-", "yesterday", "2026-11-30", "now-99999999999999d", "99999999999999999999"] {
            assert!(trace_time(bad).is_err(), "{bad}");
        }
        let cli = Cli::try_parse_from(["ballast", "trace", "--from", "now-1h", "--queue", "q", "--step", "61m"]);
        assert!(cli.is_err(), "--step past 60m");
    }

    /// Every option of every command says what it is for (`--help` lists no bare flag).
    #[test]
    fn every_option_and_argument_is_described() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.get_help().is_none() && !matches!(id, "help" | "version") {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&<Cli as clap::CommandFactory>::command(), "ballast", &mut missing);
        assert!(missing.is_empty(), "undescribed: {missing:?}");
    }

    #[test]
    fn duration_flags_take_their_bounds_and_refuse_just_past_them() {
        let parse = duration_flag(TIMER_MIN, TIMER_MAX);
        assert_eq!(parse("100ms"), Ok(TIMER_MIN));
        assert_eq!(parse("60m"), Ok(TIMER_MAX));
        assert_eq!(parse("3600s"), Ok(TIMER_MAX));
        for text in ["99ms", "0s", "3600001ms", "61m", "18446744073709551615m", "99999999999999999999999s"] {
            assert_eq!(parse(text), Err("must be from 100ms to 60m".into()), "{text}");
        }
        assert!(parse("5h").unwrap_err().contains("unknown unit \"h\""));
        assert!(parse("s").unwrap_err().contains("is not a duration"));
    }

    #[test]
    fn simulated_durations_are_one_second_to_31_days() {
        assert_eq!(parse_duration_s("1"), Ok(1));
        assert_eq!(parse_duration_s("31d"), Ok(2_678_400));
        assert_eq!(parse_duration_s("2678400s"), Ok(2_678_400));
        for text in ["2678401", "745h", "18446744073709551615d", "99999999999999999999999"] {
            assert!(parse_duration_s(text).unwrap_err().starts_with("must be at most 31d"), "{text}");
        }
        assert_eq!(parse_duration_s("0s"), Err("must be at least 1s".into()));
        assert!(parse_duration_s("1w").unwrap_err().contains("unknown unit `w`"));
    }
}
