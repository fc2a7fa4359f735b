//! `ballast plugin check FILE`: is this component a plugin this host will run? Validates it against the world
//! exactly as the controller does, and reports its size (raw and gzipped, as a ConfigMap would hold it), imports
//! and exports, compile and instantiate times, and a canary decision on a built-in sample observation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::decision::{Moment, ServiceMemory, policy_input};
use crate::observation::{Observation, QueueCounts};
use crate::runtime::{self, CANARY_ATTEMPTS, Decision, Plugin, PluginFailure, PluginLog, PolicyEngine};
use crate::spec::{ScalingPolicySpec, ServiceKey};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{what}: {why}")]
    NotAComponent { what: String, why: String },
    #[error(transparent)]
    Refused(#[from] crate::Error),
    #[error("{what}: cannot be instantiated: {source:#}")]
    Instantiate { what: String, source: wasmtime::Error },
}

/// Tells a component from a core module or something else entirely, for a clearer refusal than the parser's.
fn sniff(what: &str, bytes: &[u8]) -> Result<(), CheckError> {
    let refuse = |why: &str| Err(CheckError::NotAComponent { what: what.into(), why: why.into() });
    if !bytes.starts_with(b"\0asm") || bytes.len() < 8 {
        return refuse("not WebAssembly at all (no `\\0asm` header); build the plugin for wasm32-wasip2");
    }
    match bytes[4..8] {
        // A core module: version 1, layer 0.
        [1, 0, 0, 0] => refuse(
            "a core WebAssembly module, not a component; build for wasm32-wasip2 (Rust) or wrap it with \
             `wasm-tools component new`",
        ),
        _ => Ok(()),
    }
}

/// What the canary decision ran on.
#[derive(Debug, Clone)]
pub(crate) struct SampleInput {
    pub(crate) observation: Observation,
    pub(crate) current: u32,
    pub(crate) ready: u32,
    pub(crate) min: u32,
    pub(crate) max: u32,
}

/// A busy inference service: every metric the host gathers, at levels that should make most policies scale up.
pub(crate) fn sample_input() -> SampleInput {
    let queue = QueueCounts { waiting: 40, active: 4, completed: 1200, ..QueueCounts::default() };
    let observation = Observation {
        gpu_duty_cycle_percent: Some(92.0),
        cpu_percent_of_request: Some(65.0),
        memory_percent_of_request: Some(55.0),
        queue: Some(queue),
        completed_since_last: Some(12),
        latency_p50_ms: Some(350.0),
        latency_p95_ms: Some(900.0),
        latency_p99_ms: Some(1400.0),
        request_rate: Some(6.5),
        ..Observation::default()
    };
    SampleInput { observation, current: 2, ready: 2, min: 1, max: 10 }
}

/// Everything `ballast plugin check` reports.
#[derive(Debug)]
pub struct CheckReport {
    pub(crate) what: String,
    pub(crate) digest: String,
    pub(crate) size: usize,
    pub(crate) gzip_size: usize,
    pub(crate) imports: Vec<String>,
    pub(crate) exports: Vec<String>,
    /// The version of the world the component implements.
    pub(crate) world: runtime::World,
    /// Time spent compiling; zero when the compiled component came from the on-disk cache.
    pub(crate) compile_time: Duration,
    /// Whether the component came from the compile cache, loaded in `load_time`, instead of being compiled.
    pub(crate) from_cache: bool,
    /// Time from the bytes to a validated component (compiling, or reading the cache, and validating).
    pub(crate) load_time: Duration,
    pub(crate) instantiate_time: Duration,
    pub(crate) sample: SampleInput,
    pub(crate) canary: Result<Decision, PluginFailure>,
    /// The last canary `decide`, each on a fresh instance.
    pub(crate) canary_time: Duration,
    /// Canary calls made: more than one when a call only ran out of time (as the host retries one).
    pub(crate) canary_attempts: usize,
    /// What the plugin logged and printed during the canary.
    pub(crate) canary_logs: Vec<PluginLog>,
}

impl CheckReport {
    /// Passed unless the canary trapped, timed out, ran out of memory or answered nonsense. A clean policy error
    /// (e.g. invalid config) is the plugin working as written.
    pub fn passed(&self) -> bool {
        matches!(&self.canary, Ok(_) | Err(PluginFailure::Error(_)))
    }

    pub fn render(&self) -> String {
        let kib = |n: usize| format!("{:.1} KiB", n as f64 / 1024.0);
        let fits = if self.gzip_size.min(self.size) <= super::pack::CONFIG_MAP_MAX_BYTES {
            "fits a ConfigMap"
        } else {
            "too large for a ConfigMap: publish it to an OCI registry (`ballast plugin pack --oci`)"
        };
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
        let list = |items: &[String]| if items.is_empty() { "(none)".to_owned() } else { items.join("\n            ") };
        let s = &self.sample;
        let sample = format!(
            "current {} (ready {}), min {}, max {}, gpu {}%, cpu {}%, queue waiting {}, p95 {} ms",
            s.current,
            s.ready,
            s.min,
            s.max,
            s.observation.gpu_duty_cycle_percent.unwrap_or_default(),
            s.observation.cpu_percent_of_request.unwrap_or_default(),
            s.observation.queue.map(|q| q.waiting).unwrap_or_default(),
            s.observation.latency_p95_ms.unwrap_or_default(),
        );
        let canary = match &self.canary {
            Ok(d) => {
                let proposals: Vec<String> =
                    d.proposals.iter().map(|p| format!("{} {}", p.metric, p.replicas)).collect();
                let proposals =
                    if proposals.is_empty() { String::new() } else { format!(" [{}]", proposals.join(", ")) };
                format!("{} -> {} replicas{proposals}: {}", s.current, d.replicas, d.reason)
            }
            Err(PluginFailure::Error(message)) => {
                format!("the policy returned an error: {message} (pass the policy's config with --config)")
            }
            Err(failure) => format!("FAILED: the plugin {failure}"),
        };
        let mut out = String::new();
        out.push_str(&format!("plugin      {}\n", self.what));
        out.push_str(&format!("world       {} (ok)\n", self.world.name()));
        out.push_str(&format!("sha256      {}\n", self.digest));
        out.push_str(&format!("size        {} ({} gzipped; {fits})\n", kib(self.size), kib(self.gzip_size)));
        out.push_str(&format!("imports     {}\n", list(&self.imports)));
        out.push_str(&format!("exports     {}\n", list(&self.exports)));
        if self.from_cache {
            // Not compiled this time: the time to report is reading the artifact compiled by an earlier run.
            out.push_str(&format!(
                "compile     none: this sha256 was compiled before, loaded from the compile cache in {}\n",
                ms(self.load_time)
            ));
        } else {
            out.push_str(&format!("compile     {}\n", ms(self.compile_time)));
        }
        out.push_str(&format!("instantiate {}\n", ms(self.instantiate_time)));
        out.push_str(&format!("sample      {sample}\n"));
        let attempts = match self.canary_attempts {
            1 => String::new(),
            n if self.canary.is_ok() => format!("; {} earlier attempts ran out of time", n - 1),
            n => format!("; in each of {n} attempts"),
        };
        out.push_str(&format!("canary      {canary} ({}{attempts})\n", ms(self.canary_time)));
        for line in &self.canary_logs {
            out.push_str(&format!("  log       [{}] {}\n", line.level, line.message));
        }
        out
    }
}

/// Validates `bytes` against the world and runs the canary. `what` names the component in messages; `config` is
/// the plugin config handed to the canary. With a disk cache in `engine`, a component compiled before is loaded
/// from it, and the report says so instead of giving a compile time.
pub fn check(
    engine: &Arc<PolicyEngine>,
    what: &str,
    bytes: &[u8],
    config: &serde_json::Value,
) -> Result<CheckReport, CheckError> {
    sniff(what, bytes)?;
    let started = Instant::now();
    let compiled = engine.load(what, bytes)?;
    let load_time = started.elapsed();
    let (imports, exports) = engine.interface(&compiled);

    let started = Instant::now();
    let mut store = engine.new_store();
    compiled.pre.instantiate(&mut store).map_err(|source| CheckError::Instantiate { what: what.into(), source })?;
    let instantiate_time = started.elapsed();
    drop(store);

    let sample = sample_input();
    let key = ServiceKey { namespace: "default".into(), name: "plugin-check".into() };
    let spec = sample_spec(sample.min, sample.max);
    let at = Moment { now_ms: 0, current: sample.current, ready: sample.ready };
    let config_json = crate::decision::config_text(config);
    let input = policy_input(&key, &spec, &config_json, &ServiceMemory::default(), &sample.observation, at);
    let mut plugin = Plugin::new(engine.clone(), compiled.clone());
    // A fresh instance's first call pays one-time costs that a busy machine can stretch past the deadline: a
    // timeout is tried again, as the host tries a canary again, and only one in every attempt fails the check.
    let mut outcome = plugin.decide(&input);
    let mut canary_attempts = 1;
    while matches!(outcome.result, Err(PluginFailure::Timeout(_))) && canary_attempts < CANARY_ATTEMPTS {
        outcome = plugin.decide(&input);
        canary_attempts += 1;
    }

    Ok(CheckReport {
        what: what.into(),
        digest: compiled.digest.to_string(),
        size: bytes.len(),
        gzip_size: super::pack::gzip(bytes).len(),
        imports,
        exports,
        world: compiled.world(),
        compile_time: compiled.compile_time,
        from_cache: compiled.from_disk_cache,
        load_time,
        instantiate_time,
        sample,
        canary: outcome.result,
        canary_time: outcome.duration,
        canary_logs: outcome.logs,
        canary_attempts,
    })
}

/// A policy spec with only the bounds set: what [`policy_input`] reads.
pub(crate) fn sample_spec(min: u32, max: u32) -> ScalingPolicySpec {
    ScalingPolicySpec {
        target: crate::spec::TargetRef { api_version: "apps/v1".into(), kind: "Deployment".into(), name: "-".into() },
        min_replicas: min,
        max_replicas: max,
        plugin: crate::spec::PluginRef::default(),
        config: serde_json::Value::Null,
        metrics: crate::spec::MetricsSpec::default(),
        behavior: None,
        fallback: crate::spec::Fallback::default(),
        shadow: None,
        paused: false,
        decision_interval_seconds: 1,
        limits: None,
        wait_objective_seconds: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn engine() -> Arc<PolicyEngine> {
        testing::engine(runtime::RuntimeLimits::default())
    }

    #[test]
    fn the_builtin_hpa_passes_with_a_canary_decision() {
        let config = serde_json::json!({ "gpuUtilization": 60 });
        let report = check(&engine(), "hpa", runtime::builtin("hpa").unwrap(), &config).unwrap();
        assert!(report.passed(), "{}", report.render());
        // gpu 92% against a 60% target on 2 pods: ceil(2 * 92 / 60) = 4.
        assert_eq!(report.canary.as_ref().unwrap().replicas, 4, "{}", report.render());
        assert!(report.exports.iter().any(|e| e == runtime::World::CURRENT.policy_export()), "{:?}", report.exports);
        assert!(report.gzip_size < report.size);
        let text = report.render();
        assert!(text.contains("canary      2 -> 4 replicas") && text.contains("fits a ConfigMap"), "{text}");
    }

    #[test]
    fn a_policy_error_is_reported_but_passes() {
        let report =
            check(&engine(), "queue-drain", runtime::builtin("queue-drain").unwrap(), &serde_json::json!({})).unwrap();
        assert!(matches!(report.canary, Err(PluginFailure::Error(_))), "{}", report.render());
        assert!(report.passed());
        assert!(report.render().contains("--config"));
    }

    fn test_plugin(name: &str) -> Vec<u8> {
        ballast_test_plugins::read(name)
    }

    #[test]
    fn a_wrong_world_is_refused_naming_the_export() {
        let text = check(&engine(), "wrong_world.wasm", &test_plugin("wrong_world.wasm"), &serde_json::Value::Null)
            .unwrap_err()
            .to_string();
        assert!(text.contains("wrong_world.wasm") && text.contains(runtime::World::CURRENT.policy_export()), "{text}");
    }

    #[test]
    fn a_trapping_canary_fails_the_check() {
        let config = serde_json::json!({ "mode": "trap" });
        let report = check(&engine(), "hostile.wasm", &test_plugin("hostile.wasm"), &config).unwrap();
        assert!(!report.passed());
        assert!(report.render().contains("FAILED: the plugin trapped"), "{}", report.render());
    }

    #[test]
    fn a_canary_that_runs_out_of_time_is_tried_again_and_fails_only_if_every_attempt_does() {
        let report =
            check(&engine(), "hostile.wasm", &test_plugin("hostile.wasm"), &serde_json::json!({"mode": "loop"}))
                .unwrap();
        assert!(!report.passed());
        assert_eq!(report.canary_attempts, CANARY_ATTEMPTS);
        assert!(report.render().contains("timed out") && report.render().contains("in each of 3 attempts"));
        let trap = check(&engine(), "hostile.wasm", &test_plugin("hostile.wasm"), &serde_json::json!({"mode": "trap"}))
            .unwrap();
        assert_eq!(trap.canary_attempts, 1, "only a timeout is tried again");
    }

    #[test]
    fn non_components_are_refused_clearly() {
        let text = check(&engine(), "x.wasm", b"hello", &serde_json::Value::Null).unwrap_err().to_string();
        assert!(text.contains("not WebAssembly at all"), "{text}");
        let core = b"\0asm\x01\0\0\0";
        let text = check(&engine(), "x.wasm", core, &serde_json::Value::Null).unwrap_err().to_string();
        assert!(text.contains("core WebAssembly module"), "{text}");
    }
}
