//! What `ballast simulate` reads: `ScalingPolicy` documents (the format the live host reads) and the simulated
//! physics of each service (service time, start-up delay, concurrency, ...), either in a separate simulation file
//! keyed by service or in a `simulation` section of the policy document itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use serde::Deserialize;

use super::{MAX_BASE_RATE, MAX_DURATION_S, MAX_SECONDS, MAX_WORKER_SLOTS, SimError};
use crate::policy::documents::{self, Documents};
use crate::spec::{PluginRef, ScalingPolicySpec, ServiceKey};

pub(crate) const API_VERSION: &str = "ballast.dev/v1alpha1";

/// How one simulated service behaves. Times in seconds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimulationSpec {
    /// Mean time one job occupies one worker slot.
    pub(crate) service_seconds: f64,
    /// Relative spread of the service time: each job takes `serviceSeconds * (1 + jitter * u)`, u uniform in
    /// [-1, 1).
    #[serde(default)]
    pub(crate) jitter: f64,
    /// Time from pod creation to taking work (image pull, model load).
    pub(crate) startup_seconds: f64,
    /// Jobs one pod works on in parallel (BullMQ worker concurrency).
    #[serde(default = "one")]
    pub(crate) concurrency: u32,
    /// Jobs per second at level 1.0 of a built-in trace (its daytime peak before bursts).
    #[serde(default)]
    pub(crate) base_rate: f64,
    /// The BullMQ queue's name, for the timeline; defaults to the spec's first queue.
    #[serde(default)]
    pub(crate) queue: Option<String>,
    /// Replicas at the start; `minReplicas` when unset.
    #[serde(default)]
    pub(crate) initial_replicas: Option<u32>,
    /// How often the policy decides, overriding its `decisionIntervalSeconds` (to model another pipeline; the
    /// HPA's sync period is 15 s). Unset: the policy's own interval, as `ballast run` uses it.
    #[serde(default)]
    pub(crate) decision_interval_seconds: Option<u64>,
    /// Age of the metrics the policy sees (a scrape-and-adapter pipeline lags by tens of seconds).
    #[serde(default)]
    pub(crate) metrics_delay_seconds: u64,
    /// A job waiting longer than this before it starts breaks the wait objective.
    #[serde(default = "sixty")]
    pub(crate) wait_slo_seconds: f64,
    /// GPU duty cycle of a pod whose slots are all busy; idle pods read 0.
    #[serde(default = "gpu_busy")]
    pub(crate) gpu_percent_busy: f64,
    /// CPU use in percent of requests of a fully busy pod, and of an idle one.
    #[serde(default = "cpu_busy")]
    pub(crate) cpu_percent_busy: f64,
    #[serde(default = "cpu_idle")]
    pub(crate) cpu_percent_idle: f64,
    /// Probability that an attempt fails; BullMQ retries it after `retryBackoffSeconds` (delayed), up to
    /// `maxAttempts`, then moves it to the failed set.
    #[serde(default)]
    pub(crate) failure_rate: f64,
    #[serde(default = "three")]
    pub(crate) max_attempts: u32,
    #[serde(default = "five")]
    pub(crate) retry_backoff_seconds: f64,
}

fn one() -> u32 {
    1
}
fn three() -> u32 {
    3
}
fn five() -> f64 {
    5.0
}
fn sixty() -> f64 {
    60.0
}
fn gpu_busy() -> f64 {
    95.0
}
fn cpu_busy() -> f64 {
    50.0
}
fn cpu_idle() -> f64 {
    5.0
}

impl SimulationSpec {
    /// Refuses values that mean nothing (NaN, negative times) or that the simulator cannot hold (see the bounds in
    /// [`super`]), naming the field and its range.
    fn validate(&self, what: &str) -> Result<(), SimError> {
        let out_of_range = |field: &str, value: String, range: &str| {
            Err(SimError::Invalid(format!("{what}: simulation.{field} {value} is out of range: use {range}")))
        };
        let day = MAX_SECONDS as f64;
        // Each check is written so that NaN fails it.
        let times = [
            ("serviceSeconds", self.service_seconds, self.service_seconds > 0.0, "more than 0 up to 86400 seconds"),
            ("startupSeconds", self.startup_seconds, self.startup_seconds >= 0.0, "0 to 86400 seconds"),
            (
                "retryBackoffSeconds",
                self.retry_backoff_seconds,
                self.retry_backoff_seconds >= 0.0,
                "0 to 86400 seconds",
            ),
        ];
        for (field, value, above_floor, range) in times {
            if !(above_floor && value <= day) {
                return out_of_range(field, number(value), range);
            }
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return out_of_range("jitter", number(self.jitter), "0 up to (not including) 1; 0.2 means +-20%");
        }
        if self.concurrency == 0 {
            return out_of_range("concurrency", "0".into(), "at least 1");
        }
        if !(0.0..=MAX_BASE_RATE).contains(&self.base_rate) {
            return out_of_range("baseRate", number(self.base_rate), "0 to 1000 jobs per second");
        }
        if let Some(interval) = self.decision_interval_seconds
            && !(1..=MAX_SECONDS).contains(&interval)
        {
            return out_of_range("decisionIntervalSeconds", interval.to_string(), "1 to 86400");
        }
        if self.metrics_delay_seconds > MAX_SECONDS {
            return out_of_range("metricsDelaySeconds", self.metrics_delay_seconds.to_string(), "0 to 86400");
        }
        if !(self.wait_slo_seconds > 0.0 && self.wait_slo_seconds <= MAX_DURATION_S as f64) {
            return out_of_range("waitSloSeconds", number(self.wait_slo_seconds), "more than 0 up to 2678400 seconds");
        }
        if !(0.0..=100.0).contains(&self.gpu_percent_busy) {
            return out_of_range("gpuPercentBusy", number(self.gpu_percent_busy), "0 to 100");
        }
        for (field, value) in [("cpuPercentBusy", self.cpu_percent_busy), ("cpuPercentIdle", self.cpu_percent_idle)] {
            if !(0.0..=1000.0).contains(&value) {
                return out_of_range(field, number(value), "0 to 1000 (percent of the pod's request)");
            }
        }
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return out_of_range("failureRate", number(self.failure_rate), "a probability from 0 to 1");
        }
        if self.max_attempts == 0 {
            return out_of_range("maxAttempts", "0".into(), "at least 1");
        }
        Ok(())
    }

    /// Refuses physics the service's spec cannot have: more slots than the simulator keeps, or more pods at the
    /// start than `maxReplicas`.
    fn check_against(&self, spec: &ScalingPolicySpec, what: &str) -> Result<(), SimError> {
        let slots = u64::from(spec.max_replicas) * u64::from(self.concurrency);
        if slots > MAX_WORKER_SLOTS {
            return Err(SimError::Invalid(format!(
                "{what}: spec.maxReplicas ({}) x simulation.concurrency ({}) is {slots} worker slots; at most \
                 {MAX_WORKER_SLOTS} are simulated per service",
                spec.max_replicas, self.concurrency
            )));
        }
        if let Some(initial) = self.initial_replicas
            && initial > spec.max_replicas
        {
            return Err(SimError::Invalid(format!(
                "{what}: simulation.initialReplicas ({initial}) is above spec.maxReplicas ({})",
                spec.max_replicas
            )));
        }
        Ok(())
    }
}

/// A number as a message shows it: `1e300` rather than its 301 digits.
fn number(value: f64) -> String {
    if value.is_finite() && value.abs() >= 1e15 { format!("{value:e}") } else { format!("{value}") }
}

/// A simulation file: `kind: Simulation`, `services:` keyed by `name` or `namespace/name`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimulationFile {
    api_version: String,
    kind: String,
    services: BTreeMap<String, SimulationSpec>,
}

impl SimulationFile {
    pub fn parse(what: &str, text: &str) -> Result<Self, SimError> {
        let file: SimulationFile =
            crate::strict::from_yaml_str(text).map_err(|e| SimError::Yaml { what: what.into(), source: e })?;
        check_header(what, &file.api_version, &file.kind, "Simulation")?;
        for (name, spec) in &file.services {
            spec.validate(&format!("{what}: services.{name}"))?;
        }
        Ok(file)
    }

    pub fn read(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path).map_err(|e| SimError::Io { path: path.into(), source: e })?;
        Self::parse(&path.display().to_string(), &text)
    }

    fn lookup(&self, key: &ServiceKey) -> Option<&SimulationSpec> {
        self.services.get(&key.to_string()).or_else(|| self.services.get(&key.name))
    }
}

fn check_header(what: &str, api_version: &str, kind: &str, expected: &str) -> Result<(), SimError> {
    if api_version != API_VERSION {
        return Err(SimError::Invalid(format!("{what}: apiVersion is `{api_version}`; use `{API_VERSION}`")));
    }
    if kind != expected {
        return Err(SimError::Invalid(format!("{what}: kind is `{kind}`; expected `{expected}`")));
    }
    Ok(())
}

/// The path from a service's load to its policy's decision that a simulation models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Pipeline {
    /// Ballast's: each policy decides every `decisionIntervalSeconds` of its spec, on metrics as old as the
    /// simulation parameters' `metricsDelaySeconds` (0 unless set: queue counts read straight from Redis).
    #[default]
    Direct,
    /// The original design's: the HPA syncs every 15 s on metrics that went through the queue exporter,
    /// Prometheus and the Prometheus Adapter (30-90 s behind; 60 s here), whatever the spec says.
    Original,
}

impl Pipeline {
    /// The original pipeline's decision interval and metrics age, in seconds.
    pub(crate) const ORIGINAL: (u64, u64) = (15, 60);

    fn apply(self, spec: &mut SimulationSpec) {
        if self == Pipeline::Original {
            spec.decision_interval_seconds = Some(Self::ORIGINAL.0);
            spec.metrics_delay_seconds = Self::ORIGINAL.1;
        }
    }

    /// The name printed in the header of every table and chart.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Pipeline::Direct => "direct",
            Pipeline::Original => "original",
        }
    }
}

/// One service as the simulator runs it: its policy and its physics.
#[derive(Debug, Clone)]
pub struct ServiceSetup {
    pub key: ServiceKey,
    pub spec: ScalingPolicySpec,
    pub(crate) sim: SimulationSpec,
}

/// The services of one policy file (or directory), run together; `label` names the set in tables and charts.
#[derive(Debug, Clone)]
pub struct PolicySet {
    pub label: String,
    pub services: Vec<ServiceSetup>,
    /// Plugin ConfigMaps given beside the policies, by namespace and name: what `configMap` plugin references
    /// resolve to, as the controller resolves them from its watch cache.
    pub config_maps: BTreeMap<(String, String), Arc<ConfigMap>>,
    /// The pipeline its services' decisions are modelled behind.
    pub pipeline: Pipeline,
}

/// One YAML text of a policy set: where it came from (for messages) and its text.
pub(crate) struct PolicySource {
    pub(crate) what: String,
    pub(crate) text: String,
}

impl ServiceSetup {
    /// How often this service decides in the simulation: the simulation parameters' override, else the spec's.
    pub(crate) fn decision_interval_s(&self) -> u64 {
        self.sim.decision_interval_seconds.unwrap_or(self.spec.decision_interval_ms() / 1000)
    }
}

impl PolicySet {
    /// The same set behind another pipeline.
    pub fn with_pipeline(mut self, pipeline: Pipeline) -> Self {
        for service in &mut self.services {
            pipeline.apply(&mut service.sim);
        }
        self.pipeline = pipeline;
        self
    }

    /// Reads a multi-document YAML file of `ScalingPolicy` (and plugin `ConfigMap`) documents, or every `*.yaml`
    /// file of a directory laid out for `kubectl apply -k` (its `kustomization.yaml` is skipped), as the controller
    /// reads them ([`documents::read_manifests`]). Relative plugin paths are resolved against the file's directory.
    pub fn read(path: &Path, simulation: Option<&SimulationFile>) -> Result<Self, SimError> {
        let documents = documents::read_manifests(path)?;
        let label = path.file_stem().map_or_else(|| "policies".into(), |s| s.to_string_lossy().into_owned());
        Self::from_documents(&label, &path.display().to_string(), documents, simulation)
    }

    /// Parses policy documents from one text; `what` names the source in errors.
    pub fn parse(label: &str, what: &str, text: &str, simulation: Option<&SimulationFile>) -> Result<Self, SimError> {
        Self::parse_sources(label, &[PolicySource { what: what.into(), text: text.into() }], simulation)
    }

    /// Parses `ScalingPolicy` and plugin `ConfigMap` documents from several texts, as one set.
    pub(crate) fn parse_sources(
        label: &str,
        sources: &[PolicySource],
        simulation: Option<&SimulationFile>,
    ) -> Result<Self, SimError> {
        let mut documents = Documents::default();
        for source in sources {
            documents.extend(documents::parse_documents(&source.what, &source.text, None)?);
        }
        let what = sources.iter().map(|s| s.what.as_str()).collect::<Vec<_>>().join(", ");
        Self::from_documents(label, &what, documents, simulation)
    }

    /// The set of the documents read from `what`: each policy with its simulation parameters (its own `simulation:`
    /// section, else its entry in `simulation`), every `configMap` plugin among the ConfigMaps.
    fn from_documents(
        label: &str,
        what: &str,
        documents: Documents<SimulationSpec>,
        simulation: Option<&SimulationFile>,
    ) -> Result<Self, SimError> {
        let mut services: Vec<ServiceSetup> = Vec::new();
        for document in documents.policies {
            let doc_what = &document.what;
            let key = documents::service_key(&document.policy);
            let sim = match document.simulation.or_else(|| simulation.and_then(|s| s.lookup(&key)).cloned()) {
                Some(sim) => sim,
                None => {
                    return Err(SimError::Invalid(format!(
                        "{doc_what}: no simulation parameters for {key}: add a `simulation:` section to the \
                         document or an entry `{}` under `services:` of the simulation file (--sim)",
                        key.name
                    )));
                }
            };
            sim.validate(doc_what)?;
            sim.check_against(&document.policy.spec, doc_what)?;
            if services.iter().any(|s| s.key == key) {
                return Err(SimError::Invalid(format!("{doc_what}: {key} is described twice; names must be unique")));
            }
            services.push(ServiceSetup { key, spec: document.policy.spec, sim });
        }
        if services.is_empty() {
            return Err(SimError::Invalid(format!("{what}: no ScalingPolicy documents")));
        }
        let config_maps = documents
            .config_maps
            .into_iter()
            .map(|cm| {
                let at =
                    (cm.metadata.namespace.clone().unwrap_or_default(), cm.metadata.name.clone().unwrap_or_default());
                (at, cm)
            })
            .collect();
        let set = PolicySet { label: label.into(), services, config_maps, pipeline: Pipeline::Direct };
        for service in &set.services {
            for plugin in std::iter::once(&service.spec.plugin).chain(service.spec.shadow.as_ref().map(|s| &s.plugin)) {
                if let Some(cm) = &plugin.config_map
                    && set.config_map(&service.key.namespace, &cm.name).is_none()
                {
                    return Err(SimError::Invalid(format!(
                        "{what}: {} refers to the plugin ConfigMap {}/{}, which is not among these documents; \
                         add it (`ballast plugin pack`), or simulate the directory that holds it",
                        service.key, service.key.namespace, cm.name
                    )));
                }
            }
        }
        Ok(set)
    }

    /// A plugin ConfigMap of the set, by namespace and name.
    pub fn config_map(&self, namespace: &str, name: &str) -> Option<Arc<ConfigMap>> {
        self.config_maps.get(&(namespace.to_owned(), name.to_owned())).cloned()
    }
}

/// `ballast simulate`'s policy sets: each file or directory of `paths` read with `simulation`'s parameters, behind
/// its pipeline (one for every set, or one per set), named by `labels`, and refused when they simulate a service
/// under different physics unless `allow_different_physics`.
pub fn read_sets<'a>(
    paths: impl IntoIterator<Item = &'a PathBuf>,
    simulation: &SimulationFile,
    pipelines: &[Pipeline],
    labels: &[String],
    allow_different_physics: bool,
) -> Result<Vec<PolicySet>, SimError> {
    let sets = paths.into_iter().map(|path| PolicySet::read(path, Some(simulation))).collect::<Result<Vec<_>, _>>()?;
    if pipelines.len() != 1 && pipelines.len() != sets.len() {
        return Err(SimError::Invalid(format!(
            "{} --pipeline values for {} policy sets: give one for all of them or one per set",
            pipelines.len(),
            sets.len()
        )));
    }
    let mut sets: Vec<PolicySet> =
        sets.into_iter().enumerate().map(|(i, set)| set.with_pipeline(pipelines[i.min(pipelines.len() - 1)])).collect();
    label_sets(&mut sets, labels)?;
    if !allow_different_physics {
        check_same_physics(&sets)?;
    }
    Ok(sets)
}

/// The plugins of `sets` given as OCI references (live and shadow), to pull before the run.
pub fn oci_plugins(sets: &mut [PolicySet]) -> Vec<&mut PluginRef> {
    sets.iter_mut()
        .flat_map(|set| set.services.iter_mut())
        .flat_map(|service| {
            std::iter::once(&mut service.spec.plugin).chain(service.spec.shadow.as_mut().map(|s| &mut s.plugin))
        })
        .filter(|plugin| plugin.oci.is_some())
        .collect()
}

/// Refuses sets that simulate a service under different physics (service time, start-up, concurrency, load, ...):
/// their figures would compare the clusters, not the policies. The pipeline (decision interval, metrics delay) may
/// differ: modelling it is what `--pipeline` is for.
pub fn check_same_physics(sets: &[PolicySet]) -> Result<(), SimError> {
    let physics = |sim: &SimulationSpec| SimulationSpec {
        decision_interval_seconds: None,
        metrics_delay_seconds: 0,
        queue: None,
        ..sim.clone()
    };
    for (i, set) in sets.iter().enumerate() {
        for other in &sets[..i] {
            for service in &set.services {
                let Some(same) = other.services.iter().find(|s| s.key == service.key) else { continue };
                if physics(&service.sim) != physics(&same.sim) {
                    return Err(SimError::Invalid(format!(
                        "{} is simulated with other physics in `{}` than in `{}` ({:?} against {:?}): the comparison \
                         would measure the clusters, not the policies. Give both sets the same `simulation:` \
                         parameters (or one --sim file), or pass --allow-different-physics",
                        service.key,
                        set.label,
                        other.label,
                        physics(&service.sim),
                        physics(&same.sim)
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Names the sets `labels` in order (`--label`; the rest keep their file names) and refuses two sets named alike:
/// a table or chart with two rows called the same could not be read.
pub fn label_sets(sets: &mut [PolicySet], labels: &[String]) -> Result<(), SimError> {
    if labels.len() > sets.len() {
        return Err(SimError::Invalid(format!(
            "{} labels for {} policy sets: give at most one per set",
            labels.len(),
            sets.len()
        )));
    }
    for (set, label) in sets.iter_mut().zip(labels) {
        set.label.clone_from(label);
    }
    for (i, set) in sets.iter().enumerate() {
        if sets[..i].iter().any(|other| other.label == set.label) {
            return Err(SimError::Invalid(format!(
                "two policy sets are named `{}`: name them apart with --label (one per set, in the order of --policies \
                 then --compare)",
                set.label
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_whose_physics_differ_are_refused_but_their_pipelines_may() {
        let set = |label: &str, startup: u32| {
            let text = format!(
                "apiVersion: ballast.dev/v1alpha1\nkind: ScalingPolicy\nmetadata: {{name: a, namespace: t}}\nspec:\n  \
                 target: {{name: a}}\n  maxReplicas: 2\n  plugin: {{builtin: hpa}}\nsimulation: {{serviceSeconds: 1, \
                 startupSeconds: {startup}, baseRate: 1}}\n"
            );
            PolicySet::parse(label, label, &text, None).unwrap()
        };
        let same = [set("a", 60), set("b", 60).with_pipeline(Pipeline::Original)];
        check_same_physics(&same).unwrap();
        let error = check_same_physics(&[set("a", 60), set("b", 90)]).unwrap_err().to_string();
        assert!(
            error.contains("t/a") && error.contains("`b`") && error.contains("--allow-different-physics"),
            "{error}"
        );
    }

    #[test]
    fn sets_are_labelled_in_order_and_never_named_alike() {
        let text = "apiVersion: ballast.dev/v1alpha1\nkind: ScalingPolicy\nmetadata: {name: a, namespace: t}\nspec:\n  \
                    target: {name: a}\n  maxReplicas: 2\n  plugin: {builtin: hpa}\nsimulation: {serviceSeconds: 1, \
                    startupSeconds: 1}\n";
        let set = PolicySet::parse("policies", "p.yaml", text, None).unwrap();
        let mut sets = vec![set.clone(), set.clone()];
        let err = label_sets(&mut sets, &[]).unwrap_err().to_string();
        assert!(err.contains("two policy sets are named `policies`") && err.contains("--label"), "{err}");
        label_sets(&mut sets, &["before".into(), "after".into()]).unwrap();
        assert_eq!((sets[0].label.as_str(), sets[1].label.as_str()), ("before", "after"));
        let mut three = vec![set.clone(), set];
        let err = label_sets(&mut three, &["x".into(), "y".into(), "z".into()]).unwrap_err().to_string();
        assert!(err.contains("3 labels for 2 policy sets"), "{err}");
    }

    const SIM: &str = "simulation: {serviceSeconds: 2, startupSeconds: 30, baseRate: 1}";

    fn doc(name: &str, extra: &str) -> String {
        format!(
            "apiVersion: ballast.dev/v1alpha1\nkind: ScalingPolicy\nmetadata: {{name: {name}, namespace: ai}}\n\
             spec:\n  target: {{name: {name}}}\n  minReplicas: 1\n  maxReplicas: 4\n  plugin: {{builtin: hpa}}\n\
             {extra}\n{SIM}\n"
        )
    }

    #[test]
    fn reads_many_documents() {
        let text = format!("{}---\n{}", doc("a", ""), doc("b", ""));
        let set = PolicySet::parse("t", "test.yaml", &text, None).unwrap();
        let names: Vec<_> = set.services.iter().map(|s| s.key.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(set.services[1].sim.service_seconds, 2.0);
    }

    #[test]
    fn errors_name_the_document_and_field() {
        let text =
            format!("{}---\n{}", doc("a", ""), doc("b", "  behavior: {scaleUp: {stabilizationWindowSecond: 3}}"));
        let err = PolicySet::parse("t", "test.yaml", &text, None).unwrap_err().to_string();
        assert!(err.contains("document 2 (`b`"), "{err}");
        assert!(err.contains("stabilizationWindowSecond"), "{err}");
    }

    /// A policy on the `hpa` plugin from the ConfigMap `hpa-plugin` (pinned to `pin`), and that ConfigMap.
    fn with_config_map(pin: &str) -> (String, String) {
        use crate::authoring::pack::{PackTarget, pack};
        let policy = doc("a", "").replace(
            "plugin: {builtin: hpa}",
            &format!("plugin: {{configMap: {{name: hpa-plugin, key: plugin.wasm}}, sha256: {pin}}}"),
        );
        let target = PackTarget { name: "hpa-plugin".into(), namespace: "ai".into(), key: "plugin.wasm".into() };
        let component = crate::runtime::builtin("hpa").unwrap();
        let config_map = pack("hpa", component, &target).unwrap().to_yaml("hpa", &target).unwrap();
        (policy, config_map)
    }

    fn load(set: &PolicySet) -> crate::Result<crate::runtime::Plugin> {
        let engine = crate::testing::engine(crate::runtime::RuntimeLimits::default());
        let service = &set.services[0];
        crate::autoscaler::load_plugin(&engine, &service.key, &service.spec, |ns, name| set.config_map(ns, name))
    }

    #[test]
    fn config_map_plugins_load_from_the_documents_given_with_the_policies() {
        let digest = crate::runtime::digest(crate::runtime::builtin("hpa").unwrap());
        let (policy, config_map) = with_config_map(&digest);
        let set = PolicySet::parse("t", "test.yaml", &format!("{config_map}---\n{policy}"), None).unwrap();
        assert_eq!(load(&set).unwrap().digest(), digest);

        let err = load(
            &PolicySet::parse(
                "t",
                "test.yaml",
                &format!("{config_map}---\n{}", with_config_map(&"0".repeat(64)).0),
                None,
            )
            .unwrap(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("configmap:ai/hpa-plugin/plugin.wasm") && err.contains("pins"), "{err}");
    }

    #[test]
    fn a_missing_or_unlabelled_plugin_config_map_is_refused_with_the_fix() {
        let (policy, config_map) = with_config_map("");
        let err = PolicySet::parse("t", "test.yaml", &policy, None).unwrap_err().to_string();
        assert!(err.contains("ConfigMap ai/hpa-plugin, which is not among these documents"), "{err}");

        let unlabelled = config_map.replace("ballast.dev/plugin: \"true\"", "app: x");
        assert_ne!(unlabelled, config_map);
        let err =
            PolicySet::parse("t", "test.yaml", &format!("{unlabelled}---\n{policy}"), None).unwrap_err().to_string();
        assert!(err.contains("without the label ballast.dev/plugin=true"), "{err}");
    }
}
