//! The resource source: CPU and memory usage from `metrics.k8s.io` as a percentage of container requests, with the
//! pods grouped by the HPA's rules so a policy can reproduce the HPA's replica count.
//!
//! # What is read
//! Each collection reads, for every namespace with observed services, ONE pod list and ONE PodMetrics list (the
//! whole namespace), plus the `/scale` of each target for its pod selector (`status.selector`, the string form of a
//! label selector). Pods are matched to services by that selector here, so the number of metrics requests grows
//! with namespaces, not with services or pods. Every request has a timeout and a shared concurrency limit.
//!
//! # The HPA's rules (kubernetes pkg/controller/podautoscaler/replica_calculator.go)
//! Per resource, the selected pods are grouped as `groupPods` does:
//! - pods being deleted and `Failed` pods are ignored;
//! - `Pending` pods are *unready*;
//! - running pods without a usage sample (or whose sample lacks the resource for a container) are *missing*;
//! - for CPU only, a pod with a sample is *unready* if it has no Ready condition or start time, or, within the CPU
//!   initialization period (5 min) after its start, if it is not ready or its sample's window began before it
//!   became ready, or, after that period, if it is not ready and never was (its last readiness change came within
//!   the initial readiness delay, 30 s, of its start);
//! - the rest are *ready* and counted with their measured usage.
//!
//! A pod's request is the sum of its containers' and sidecars' (restartable init containers') requests, or its
//! pod-level request when the pod sets one for the resource. A container without a request makes the resource
//! unavailable for the whole service, with an error naming the pod and container (as the HPA refuses it).
//! Quantities are converted as `Quantity.MilliValue()` does (rounded up to a milli-unit), so sums and the whole
//! percent below are exactly the HPA's.
//!
//! # What an observation carries
//! `cpu_percent_of_request` / `memory_percent_of_request`: `100 × usage / request` over the ready pods (what
//! `kubectl get hpa` shows, before the HPA truncates it to a whole percent), and, per resource, seven custom
//! metrics with the groups behind it ([`custom_metrics`], read by the SDK's `hpa::PodGroups`): pods, usage and
//! request of the ready group, pods and request of the unready and missing groups. CPU is in millicores, memory in
//! bytes. Whether missing and unready pods count as 0% or 100% depends on the direction, so on the target, which
//! only the policy knows: the SDK's `hpa::resource_proposal` applies the rules for a target.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::config::ResourceSettings;
use crate::spec::{ServiceKey, TargetRef};
use crate::workload::{describe_target, target_api};

/// The names of the custom metrics carrying a resource's pod groups, in the order of [`PodGroups::fields`]; the
/// SDK's `hpa::POD_GROUP_FIELDS` and `hpa::Resource::metric_name` spell the same names.
pub(crate) const POD_GROUP_FIELDS: [&str; 7] = [
    "ready_pods",
    "ready_usage",
    "ready_request",
    "unready_pods",
    "unready_request",
    "missing_pods",
    "missing_request",
];

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceConfig {
    /// Per API request.
    pub timeout: Duration,
    /// API requests in flight at once.
    pub max_concurrency: usize,
    pub cpu_initialization_period: Duration,
    pub initial_readiness_delay: Duration,
}

impl ResourceConfig {
    /// The timeout and the HPA's periods of `settings`, 4 requests in flight.
    pub(crate) fn new(settings: &ResourceSettings) -> Self {
        ResourceConfig {
            timeout: settings.timeout,
            max_concurrency: 4,
            cpu_initialization_period: settings.cpu_initialization_period,
            initial_readiness_delay: settings.initial_readiness_delay,
        }
    }
}

impl Default for ResourceConfig {
    /// The defaults of [`ResourceSettings`].
    fn default() -> Self {
        ResourceConfig::new(&ResourceSettings::default())
    }
}

/// CPU or memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    Cpu,
    Memory,
}

impl Resource {
    /// The resource name in requests and usage maps.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
        }
    }

    /// Milli-units per unit of the custom metrics: millicores are sent as is, memory in bytes.
    fn milli_per_unit(self) -> f64 {
        match self {
            Resource::Cpu => 1.0,
            Resource::Memory => 1000.0,
        }
    }
}

/// One service to collect for: its key (the namespace is the target's) and its scale target.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceTarget {
    pub key: ServiceKey,
    pub target: TargetRef,
}

/// A service's pods for one resource, grouped by the HPA's rules; usage and requests in milli-units
/// (`Quantity.MilliValue()`: millicores, or thousandths of a byte).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodGroups {
    pub ready_pods: u32,
    pub ready_usage_milli: u128,
    pub ready_request_milli: u128,
    pub unready_pods: u32,
    pub unready_request_milli: u128,
    pub missing_pods: u32,
    pub missing_request_milli: u128,
}

impl PodGroups {
    /// The seven values of [`POD_GROUP_FIELDS`], in the custom metrics' units.
    fn fields(&self, resource: Resource) -> [f64; 7] {
        let unit = |milli: u128| milli as f64 / resource.milli_per_unit();
        [
            f64::from(self.ready_pods),
            unit(self.ready_usage_milli),
            unit(self.ready_request_milli),
            f64::from(self.unready_pods),
            unit(self.unready_request_milli),
            f64::from(self.missing_pods),
            unit(self.missing_request_milli),
        ]
    }
}

/// What one resource of one service came to.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceUsage {
    pub groups: PodGroups,
    /// Age of the oldest sample among the ready pods at collection time.
    pub sample_age: Duration,
}

impl ResourceUsage {
    /// `100 × usage / request` over the ready pods.
    pub fn percent_of_request(&self) -> f64 {
        self.groups.ready_usage_milli as f64 * 100.0 / self.groups.ready_request_milli as f64
    }
}

/// The custom metrics carrying `usage`'s pod groups: `resources.cpu.ready_pods`, ... (see the module docs).
pub fn custom_metrics(resource: Resource, usage: &ResourceUsage) -> Vec<(String, f64)> {
    POD_GROUP_FIELDS
        .iter()
        .zip(usage.groups.fields(resource))
        .map(|(field, value)| (format!("resources.{}.{field}", resource.name()), value))
        .collect()
}

/// CPU and memory of one service; an error says why a resource is unavailable.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceValues {
    pub cpu: Result<ResourceUsage, ResourceError>,
    pub memory: Result<ResourceUsage, ResourceError>,
}

impl ResourceValues {
    fn failed(error: ResourceError) -> Self {
        ResourceValues { cpu: Err(error.clone()), memory: Err(error) }
    }
}

#[derive(Debug, Default)]
pub struct ResourceCollection {
    /// Every requested service.
    pub values: BTreeMap<ServiceKey, ResourceValues>,
    /// Failed API requests (each also shows in the values of the services it concerns).
    pub failures: Vec<ResourceError>,
    /// Namespaces whose pods and PodMetrics were both listed.
    pub namespaces_read: usize,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResourceError {
    #[error(
        "metrics.k8s.io: listing PodMetrics in namespace {namespace}: {detail}; check that metrics-server runs and \
         its APIService is Available (`kubectl get apiservice v1beta1.metrics.k8s.io`) and that the host may list \
         metrics.k8s.io pods"
    )]
    MetricsApi { namespace: String, detail: String },
    #[error("listing pods in namespace {namespace}: {detail}; the host needs get and list on pods")]
    Pods { namespace: String, detail: String },
    #[error("{target}: reading /scale for the pod selector: {detail}")]
    Scale { target: String, detail: String },
    #[error(
        "{what} got no answer within {timeout:?} (the client retries 429, 503 and 504 answers until then); the API \
         server or metrics-server is slow, unreachable or down"
    )]
    Timeout { what: String, timeout: Duration },
    #[error(
        "{target}: its /scale has no status.selector, so its pods cannot be found; CPU and memory need a target \
         whose /scale reports a selector (for a custom resource, the CRD's scale labelSelectorPath), or set \
         metrics.resources: false"
    )]
    NoSelector { target: String },
    #[error("{target}: /scale status.selector {selector:?} is not a label selector: {source}")]
    BadSelector { target: String, selector: String, source: SelectorError },
    #[error(
        "{target}: container `{container}` of pod {pod} has no {resource} request, so {resource} usage cannot be a \
         percentage of requests (the HPA refuses it too); set resources.requests.{resource} on every container of \
         the pod template, or set metrics.resources: false in the ScalingPolicy"
    )]
    MissingRequest { target: String, pod: String, container: String, resource: &'static str },
    #[error("{target}: container `{container}` of pod {pod} requests {quantity:?}, which is not a quantity: {source}")]
    BadRequest { target: String, pod: String, container: String, quantity: String, source: QuantityError },
    #[error("{target}: no pods match its selector {selector:?}")]
    NoPods { target: String, selector: String },
    #[error("{target}: metrics.k8s.io has no sample for any of its {pods} pods")]
    NoSamples { target: String, pods: usize },
    #[error("{target}: no ready pod has a {resource} sample (the pods are pending, not ready or being deleted)")]
    NoReadySamples { target: String, resource: &'static str },
}

impl ResourceError {
    /// Whether the error needs someone to fix something (logged as a warning and counted as a source error), rather
    /// than a normal absence (no pods, samples not there yet) or an API failure counted once per request.
    pub fn is_misconfiguration(&self) -> bool {
        matches!(
            self,
            ResourceError::NoSelector { .. }
                | ResourceError::BadSelector { .. }
                | ResourceError::MissingRequest { .. }
                | ResourceError::BadRequest { .. }
        )
    }
}

/// Reads PodMetrics and pods through the Kubernetes API.
#[derive(Clone)]
pub struct ResourceSource {
    client: kube::Client,
    config: ResourceConfig,
    in_flight: Arc<Semaphore>,
}

/// A PodMetrics object's body (`metrics.k8s.io/v1beta1`).
#[derive(Debug, Deserialize)]
struct PodMetricsBody {
    timestamp: Time,
    window: String,
    #[serde(default)]
    containers: Vec<ContainerMetrics>,
}

#[derive(Debug, Deserialize)]
struct ContainerMetrics {
    #[serde(default)]
    usage: BTreeMap<String, Quantity>,
}

/// One pod's sample: its time, window, and the usage of each resource over all its containers (`None` when a
/// container lacks the resource, which makes the HPA treat the pod as missing).
#[derive(Debug, Clone)]
struct Sample {
    timestamp: Timestamp,
    window: Duration,
    cpu_milli: Option<u128>,
    memory_milli: Option<u128>,
}

impl Sample {
    fn usage(&self, resource: Resource) -> Option<u128> {
        match resource {
            Resource::Cpu => self.cpu_milli,
            Resource::Memory => self.memory_milli,
        }
    }
}

/// What one namespace's two lists gave.
struct NamespaceState {
    pods: Vec<Pod>,
    samples: HashMap<String, Sample>,
}

impl ResourceSource {
    pub fn new(client: kube::Client, config: ResourceConfig) -> Self {
        let in_flight = Arc::new(Semaphore::new(config.max_concurrency.max(1)));
        ResourceSource { client, config, in_flight }
    }

    /// Runs one API request under the concurrency limit and the timeout.
    async fn call<T>(
        &self,
        what: impl FnOnce() -> String,
        request: impl Future<Output = kube::Result<T>>,
    ) -> Result<kube::Result<T>, ResourceError> {
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self.in_flight.acquire().await;
        tokio::time::timeout(self.config.timeout, request)
            .await
            .map_err(|_| ResourceError::Timeout { what: what(), timeout: self.config.timeout })
    }

    async fn selector(&self, target: &ResourceTarget) -> Result<Selector, ResourceError> {
        let described = describe_target(&target.key, &target.target);
        let api = target_api(&self.client, &target.key, &target.target)
            .map_err(|e| ResourceError::Scale { target: described.clone(), detail: e.to_string() })?;
        let scale = self
            .call(|| format!("{described}: reading /scale"), api.get_scale(&target.target.name))
            .await?
            .map_err(|e| ResourceError::Scale { target: described.clone(), detail: e.to_string() })?;
        let text = scale.status.and_then(|s| s.selector).filter(|s| !s.is_empty());
        let text = text.ok_or_else(|| ResourceError::NoSelector { target: described.clone() })?;
        Selector::parse(&text).map_err(|source| ResourceError::BadSelector {
            target: described,
            selector: text,
            source,
        })
    }

    async fn pods(&self, namespace: &str) -> Result<Vec<Pod>, ResourceError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let error = |detail: String| ResourceError::Pods { namespace: namespace.to_owned(), detail };
        let list = self
            .call(|| format!("listing pods in namespace {namespace}"), api.list(&ListParams::default()))
            .await?
            .map_err(|e| error(e.to_string()))?;
        Ok(list.items)
    }

    async fn samples(&self, namespace: &str) -> Result<HashMap<String, Sample>, ResourceError> {
        let gvk = GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics");
        let resource = ApiResource::from_gvk_with_plural(&gvk, "pods");
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &resource);
        let error = |detail: String| ResourceError::MetricsApi { namespace: namespace.to_owned(), detail };
        let list = self
            .call(
                || format!("metrics.k8s.io: listing PodMetrics in namespace {namespace}"),
                api.list(&ListParams::default()),
            )
            .await?
            .map_err(|e| error(e.to_string()))?;
        // As for the HPA's client, an item that does not decode spoils the whole answer.
        list.items
            .into_iter()
            .map(|item| {
                let name = item.metadata.name.clone().unwrap_or_default();
                let body: PodMetricsBody = serde_json::from_value(item.data)
                    .map_err(|e| error(format!("PodMetrics {name} does not decode: {e}")))?;
                let window = parse_go_duration(&body.window)
                    .ok_or_else(|| error(format!("PodMetrics {name}: window {:?} is not a duration", body.window)))?;
                let usage = |resource: Resource| -> Result<Option<u128>, ResourceError> {
                    if body.containers.is_empty() {
                        return Ok(None);
                    }
                    let mut sum = 0u128;
                    for container in &body.containers {
                        let Some(quantity) = container.usage.get(resource.name()) else { return Ok(None) };
                        let milli = milli_value(&quantity.0).map_err(|detail| {
                            error(format!("PodMetrics {name}: {} usage {:?}: {detail}", resource.name(), quantity.0))
                        })?;
                        sum = sum.saturating_add(milli);
                    }
                    Ok(Some(sum))
                };
                let sample = Sample {
                    timestamp: body.timestamp.0,
                    window,
                    cpu_milli: usage(Resource::Cpu)?,
                    memory_milli: usage(Resource::Memory)?,
                };
                Ok((name, sample))
            })
            .collect()
    }

    async fn namespace(&self, namespace: &str) -> Result<NamespaceState, ResourceError> {
        let (pods, samples) = futures::join!(self.pods(namespace), self.samples(namespace));
        Ok(NamespaceState { pods: pods?, samples: samples? })
    }

    /// Collects every target's CPU and memory. Never fails as a whole: failures are listed, and the services they
    /// concern get the error instead of a value.
    pub async fn collect(&self, targets: &[ResourceTarget]) -> ResourceCollection {
        let mut namespaces: Vec<&str> = targets.iter().map(|t| t.key.namespace.as_str()).collect();
        namespaces.sort_unstable();
        namespaces.dedup();
        let (selectors, states) = futures::join!(
            join_all(targets.iter().map(|t| self.selector(t))),
            join_all(namespaces.iter().map(|ns| self.namespace(ns)))
        );
        let mut collection = ResourceCollection::default();
        let states: HashMap<&str, Result<NamespaceState, ResourceError>> = namespaces.into_iter().zip(states).collect();
        for state in states.values() {
            match state {
                Ok(_) => collection.namespaces_read += 1,
                Err(error) => collection.failures.push(error.clone()),
            }
        }
        let now = Timestamp::now();
        for (target, selector) in targets.iter().zip(selectors) {
            let values = match (selector, &states[target.key.namespace.as_str()]) {
                (Err(error), _) => {
                    if !error.is_misconfiguration() {
                        collection.failures.push(error.clone());
                    }
                    ResourceValues::failed(error)
                }
                (Ok(_), Err(error)) => ResourceValues::failed(error.clone()),
                (Ok(selector), Ok(state)) => self.values(target, &selector, state, now),
            };
            collection.values.insert(target.key.clone(), values);
        }
        collection
    }

    fn values(
        &self,
        target: &ResourceTarget,
        selector: &Selector,
        state: &NamespaceState,
        now: Timestamp,
    ) -> ResourceValues {
        let described = describe_target(&target.key, &target.target);
        let pods: Vec<&Pod> = state.pods.iter().filter(|pod| selector.matches_pod(pod)).collect();
        if pods.is_empty() {
            return ResourceValues::failed(ResourceError::NoPods {
                target: described,
                selector: selector.text.clone(),
            });
        }
        let named = |pod: &Pod| pod.metadata.name.clone().unwrap_or_default();
        if !pods.iter().any(|pod| state.samples.contains_key(&named(pod))) {
            return ResourceValues::failed(ResourceError::NoSamples { target: described, pods: pods.len() });
        }
        let grouping = Grouping { pods: &pods, samples: &state.samples, config: &self.config, now, target: &described };
        ResourceValues { cpu: grouping.usage(Resource::Cpu), memory: grouping.usage(Resource::Memory) }
    }
}

/// The selected pods of one service and their samples, at one moment.
struct Grouping<'a> {
    pods: &'a [&'a Pod],
    samples: &'a HashMap<String, Sample>,
    config: &'a ResourceConfig,
    now: Timestamp,
    target: &'a str,
}

/// Where `groupPods` puts a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Ignored,
    Unready,
    Missing,
    Ready,
}

impl Grouping<'_> {
    fn usage(&self, resource: Resource) -> Result<ResourceUsage, ResourceError> {
        // The HPA computes every listed pod's request (ignored ones too), so any missing request is an error. It checks
        // for ready samples first; the misconfiguration is reported first here, as it is what someone must fix.
        let requests = self
            .pods
            .iter()
            .map(|pod| pod_request(pod, resource, self.target))
            .collect::<Result<Vec<u128>, ResourceError>>()?;
        let mut groups = PodGroups::default();
        let mut oldest: Option<Timestamp> = None;
        for (pod, request) in self.pods.iter().zip(requests) {
            let sample = self.samples.get(pod.metadata.name.as_deref().unwrap_or_default());
            match group_pod(pod, sample.filter(|s| s.usage(resource).is_some()), resource, self.config, self.now) {
                Group::Ignored => {}
                Group::Unready => {
                    groups.unready_pods += 1;
                    groups.unready_request_milli += request;
                }
                Group::Missing => {
                    groups.missing_pods += 1;
                    groups.missing_request_milli += request;
                }
                Group::Ready => {
                    let sample = sample.expect("ready pods have a sample");
                    groups.ready_pods += 1;
                    groups.ready_usage_milli += sample.usage(resource).unwrap_or_default();
                    groups.ready_request_milli += request;
                    oldest = Some(oldest.map_or(sample.timestamp, |o| o.min(sample.timestamp)));
                }
            }
        }
        // As the HPA: without a ready pod carrying a sample (or with no request to divide by) there is no value.
        let Some(oldest) = oldest.filter(|_| groups.ready_request_milli > 0) else {
            return Err(ResourceError::NoReadySamples { target: self.target.to_owned(), resource: resource.name() });
        };
        let sample_age = self.now.duration_since(oldest).try_into().unwrap_or(Duration::ZERO);
        Ok(ResourceUsage { groups, sample_age })
    }
}

/// `groupPods` for one pod; `sample` is the pod's sample if it has the resource for every container.
fn group_pod(pod: &Pod, sample: Option<&Sample>, resource: Resource, config: &ResourceConfig, now: Timestamp) -> Group {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref());
    if pod.metadata.deletion_timestamp.is_some() || phase == Some("Failed") {
        return Group::Ignored;
    }
    if phase == Some("Pending") {
        return Group::Unready;
    }
    let Some(sample) = sample else { return Group::Missing };
    if resource == Resource::Cpu {
        let ready = status.and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
        let start = status.and_then(|s| s.start_time.as_ref()).map(|t| t.0);
        let unready = match (ready, start) {
            (Some(ready), Some(start)) => {
                let not_ready = ready.status == "False";
                // Go's zero time when absent: before anything.
                let transition = ready.last_transition_time.as_ref().map_or(Timestamp::MIN, |t| t.0);
                if plus(start, config.cpu_initialization_period) > now {
                    not_ready || sample.timestamp < plus(transition, sample.window)
                } else {
                    not_ready && plus(start, config.initial_readiness_delay) > transition
                }
            }
            _ => true,
        };
        if unready {
            return Group::Unready;
        }
    }
    Group::Ready
}

fn plus(at: Timestamp, duration: Duration) -> Timestamp {
    SignedDuration::try_from(duration).ok().and_then(|d| at.checked_add(d).ok()).unwrap_or(Timestamp::MAX)
}

/// `calculatePodRequestsFromContainers` / `calculatePodLevelRequests`: the pod-level request when the pod sets one
/// for the resource, else the sum over containers and restartable init containers (sidecars).
fn pod_request(pod: &Pod, resource: Resource, target: &str) -> Result<u128, ResourceError> {
    let pod_name = || {
        let meta = &pod.metadata;
        format!("{}/{}", meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default())
    };
    let Some(spec) = &pod.spec else { return Ok(0) };
    // `None` when the resource is not requested; the API server only stores valid quantities, but say so if not.
    let requested = |requests: Option<&BTreeMap<String, Quantity>>, container: &str| {
        requests
            .and_then(|r| r.get(resource.name()))
            .map(|quantity| {
                milli_value(&quantity.0).map_err(|source| ResourceError::BadRequest {
                    target: target.to_owned(),
                    pod: pod_name(),
                    container: container.to_owned(),
                    quantity: quantity.0.clone(),
                    source,
                })
            })
            .transpose()
    };
    if let Some(pod_level) = requested(spec.resources.as_ref().and_then(|r| r.requests.as_ref()), "(pod level)")? {
        return Ok(pod_level);
    }
    let sidecars = spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
    let mut sum = 0u128;
    for container in spec.containers.iter().chain(sidecars) {
        sum += requested(container_requests(container), &container.name)?.ok_or_else(|| {
            ResourceError::MissingRequest {
                target: target.to_owned(),
                pod: pod_name(),
                container: container.name.clone(),
                resource: resource.name(),
            }
        })?;
    }
    Ok(sum)
}

fn container_requests(container: &Container) -> Option<&BTreeMap<String, Quantity>> {
    container.resources.as_ref().and_then(|r| r.requests.as_ref())
}

/// Why a text is not a Kubernetes quantity [`milli_value`] can read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantityError {
    #[error("negative quantity")]
    Negative,
    #[error("not a number")]
    NotANumber,
    #[error("too many digits")]
    TooManyDigits,
    #[error("too large")]
    TooLarge,
    #[error("unknown suffix {0:?}")]
    UnknownSuffix(String),
}

/// A Kubernetes quantity (`250m`, `1.5`, `12345Ki`, `1234567n`, `1e3`) in milli-units, rounded up as
/// `Quantity.MilliValue()` rounds.
pub(crate) fn milli_value(text: &str) -> Result<u128, QuantityError> {
    let text = text.trim();
    let number_end =
        text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let number = number.strip_prefix('+').unwrap_or(number);
    if number.starts_with('-') {
        return Err(QuantityError::Negative);
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || !(whole.chars().chain(fraction.chars()).all(|c| c.is_ascii_digit()))
    {
        return Err(QuantityError::NotANumber);
    }
    let digits = format!("{whole}{fraction}");
    if digits.len() > 30 {
        return Err(QuantityError::TooManyDigits);
    }
    let mantissa: u128 = digits.parse().map_err(|_| QuantityError::NotANumber)?;
    let scale = fraction.len() as i32;
    let binary = |power: u32| -> Result<u128, QuantityError> {
        let numerator = mantissa
            .checked_mul(1u128 << (10 * power))
            .and_then(|n| n.checked_mul(1000))
            .ok_or(QuantityError::TooLarge)?;
        Ok(numerator.div_ceil(10u128.pow(scale as u32)))
    };
    let exponent = match suffix {
        "Ki" => return binary(1),
        "Mi" => return binary(2),
        "Gi" => return binary(3),
        "Ti" => return binary(4),
        "Pi" => return binary(5),
        "Ei" => return binary(6),
        "n" => -9,
        "u" => -6,
        "m" => -3,
        "" => 0,
        "k" => 3,
        "M" => 6,
        "G" => 9,
        "T" => 12,
        "P" => 15,
        "E" => 18,
        other => match other.strip_prefix(['e', 'E']).map(str::parse::<i32>) {
            Some(Ok(exponent)) if exponent.abs() <= 40 => exponent,
            _ => return Err(QuantityError::UnknownSuffix(other.to_owned())),
        },
    };
    // value × 1000 = mantissa × 10^(exponent + 3 - scale)
    let shift = exponent + 3 - scale;
    if shift >= 0 {
        10u128.checked_pow(shift as u32).and_then(|p| mantissa.checked_mul(p)).ok_or(QuantityError::TooLarge)
    } else {
        Ok(10u128.checked_pow(shift.unsigned_abs()).map_or(u128::from(mantissa > 0), |p| mantissa.div_ceil(p)))
    }
}

/// A Go `time.Duration` string (`15s`, `10.808s`, `1m0s`, `500ms`) as `metav1.Duration` serializes it.
pub(crate) fn parse_go_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(number_end);
        let value: f64 = number.parse().ok()?;
        let unit_end = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * seconds;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Why a text is not a label selector.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SelectorError {
    #[error("empty requirement in {0:?}")]
    EmptyRequirement(String),
    #[error("invalid label key {0:?}")]
    InvalidKey(String),
    #[error("a value set must be in parentheses: {0:?}")]
    SetWithoutParentheses(String),
}

/// A label selector in its string form (`app=stt,tier in (a,b),!canary`), as `/scale` reports it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Selector {
    text: String,
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    /// Parses the grammar of `labels.Parse`: comma-separated requirements `k=v`, `k==v`, `k!=v`, `k in (v,...)`,
    /// `k notin (v,...)`, `k`, `!k`. The empty selector matches every pod.
    pub(crate) fn parse(text: &str) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                return Err(SelectorError::EmptyRequirement(text.to_owned()));
            }
            let key = |k: &str| -> Result<String, SelectorError> {
                let k = k.trim();
                if k.is_empty() || k.contains(|c: char| c.is_whitespace() || "()!=,".contains(c)) {
                    Err(SelectorError::InvalidKey(k.to_owned()))
                } else {
                    Ok(k.to_owned())
                }
            };
            let requirement = if let Some(k) = part.strip_prefix('!') {
                Requirement::DoesNotExist(key(k)?)
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(key(k)?, v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Equals(key(k)?, v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Equals(key(k)?, v.trim().to_owned())
            } else if let Some((k, set)) = split_set(part, "notin") {
                Requirement::NotIn(key(k)?, parse_set(set)?)
            } else if let Some((k, set)) = split_set(part, "in") {
                Requirement::In(key(k)?, parse_set(set)?)
            } else {
                Requirement::Exists(key(part)?)
            };
            requirements.push(requirement);
        }
        Ok(Selector { text: text.to_owned(), requirements })
    }

    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let label = |k: &str| labels.get(k).map(String::as_str);
        self.requirements.iter().all(|requirement| match requirement {
            Requirement::Equals(k, v) => label(k) == Some(v),
            Requirement::NotEquals(k, v) => label(k) != Some(v),
            Requirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::DoesNotExist(k) => label(k).is_none(),
        })
    }

    fn matches_pod(&self, pod: &Pod) -> bool {
        static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
        self.matches(pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS))
    }
}

/// Splits on commas outside parentheses; an empty text has no parts.
fn split_top_level(text: &str) -> Vec<&str> {
    if text.trim().is_empty() {
        return Vec::new();
    }
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// `key in (…)` / `key notin (…)`: the key and the parenthesized set.
fn split_set<'a>(part: &'a str, operator: &str) -> Option<(&'a str, &'a str)> {
    let open = part.find('(')?;
    let (head, set) = part.split_at(open);
    let key = head.trim_end().strip_suffix(operator)?;
    key.ends_with(char::is_whitespace).then_some((key, set))
}

fn parse_set(set: &str) -> Result<Vec<String>, SelectorError> {
    let inner = set.trim().strip_prefix('(').and_then(|s| s.strip_suffix(')'));
    let inner = inner.ok_or_else(|| SelectorError::SetWithoutParentheses(set.to_owned()))?;
    Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_become_milli_values_rounded_up() {
        assert_eq!(milli_value("250m"), Ok(250));
        assert_eq!(milli_value("1"), Ok(1000));
        assert_eq!(milli_value("1.5"), Ok(1500));
        assert_eq!(milli_value("0.9"), Ok(900));
        assert_eq!(milli_value("1234567n"), Ok(2), "1.234567m rounds up, as MilliValue does");
        assert_eq!(milli_value("1000000n"), Ok(1));
        assert_eq!(milli_value("0"), Ok(0));
        assert_eq!(milli_value("12345Ki"), Ok(12_345 * 1024 * 1000));
        assert_eq!(milli_value("1.5Gi"), Ok(1_610_612_736_000));
        assert_eq!(milli_value("128Mi"), Ok(134_217_728_000));
        assert_eq!(milli_value("1G"), Ok(1_000_000_000_000));
        assert_eq!(milli_value("2k"), Ok(2_000_000));
        assert_eq!(milli_value("1e3"), Ok(1_000_000));
        assert_eq!(milli_value("5u"), Ok(1));
        assert!(milli_value("-1").is_err());
        assert!(milli_value("12Qi").is_err());
        assert!(milli_value("abc").is_err());
        assert!(milli_value("").is_err());
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("15s"), Some(Duration::from_secs(15)));
        assert_eq!(parse_go_duration("10.808s"), Some(Duration::from_millis(10_808)));
        assert_eq!(parse_go_duration("1m0s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_go_duration("1h2m5s"), Some(Duration::from_secs(3_725)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("15"), None);
        assert_eq!(parse_go_duration("fast"), None);
    }

    /// A pod started `started` seconds ago whose Ready condition is `ready` since `changed` seconds ago.
    fn pod_at(now: Timestamp, phase: &str, started: Option<i64>, ready: Option<(&str, i64)>) -> Pod {
        let at = |seconds: i64| (now - SignedDuration::from_secs(seconds)).to_string();
        let mut status = serde_json::json!({"phase": phase});
        if let Some(started) = started {
            status["startTime"] = serde_json::json!(at(started));
        }
        if let Some((ready, changed)) = ready {
            status["conditions"] =
                serde_json::json!([{"type": "Ready", "status": ready, "lastTransitionTime": at(changed)}]);
        }
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "status": status})).unwrap()
    }

    /// Kubernetes' TestGroupPods cases for CPU, with the default 5 min initialization period and 30 s delay.
    #[test]
    fn pods_are_grouped_as_group_pods_groups_them() {
        let now = Timestamp::now();
        let config = ResourceConfig::default();
        let sample = |age: i64, window: u64| Sample {
            timestamp: now - SignedDuration::from_secs(age),
            window: Duration::from_secs(window),
            cpu_milli: Some(1),
            memory_milli: Some(1),
        };
        let fresh = sample(0, 30);
        let cpu = |pod: &Pod, sample: Option<&Sample>| group_pod(pod, sample, Resource::Cpu, &config, now);
        let cases = [
            ("no Ready condition", pod_at(now, "Running", Some(0), None), Some(&fresh), Group::Unready),
            (
                "ready, sample window after readiness, in the initialization period",
                pod_at(now, "Running", Some(60), Some(("True", 45))),
                Some(&fresh),
                Group::Ready,
            ),
            (
                "ready, sample window began before readiness, in the initialization period",
                pod_at(now, "Running", Some(60), Some(("True", 15))),
                Some(&fresh),
                Group::Unready,
            ),
            (
                "not ready in the initialization period",
                pod_at(now, "Running", Some(60), Some(("False", 55))),
                Some(&fresh),
                Group::Unready,
            ),
            (
                "ready after the initialization period, old sample",
                pod_at(now, "Running", Some(600), Some(("True", 590))),
                Some(&sample(120, 60)),
                Group::Ready,
            ),
            (
                "not ready after the initialization period, but was ready once",
                pod_at(now, "Running", Some(600), Some(("False", 540))),
                Some(&fresh),
                Group::Ready,
            ),
            (
                "not ready after the initialization period, never ready",
                pod_at(now, "Running", Some(600), Some(("False", 590))),
                Some(&fresh),
                Group::Unready,
            ),
            ("pending", pod_at(now, "Pending", None, None), Some(&fresh), Group::Unready),
            ("failed", pod_at(now, "Failed", Some(600), Some(("False", 10))), Some(&fresh), Group::Ignored),
            ("no sample", pod_at(now, "Running", Some(600), Some(("True", 590))), None, Group::Missing),
        ];
        for (name, pod, sample, expected) in &cases {
            assert_eq!(cpu(pod, *sample), *expected, "{name}");
        }
        // Memory has no readiness rule: an unready running pod with a sample counts.
        let unready = pod_at(now, "Running", Some(0), None);
        assert_eq!(group_pod(&unready, Some(&fresh), Resource::Memory, &config, now), Group::Ready);
        let mut deleting = pod_at(now, "Running", Some(600), Some(("True", 590)));
        deleting.metadata.deletion_timestamp = Some(Time(now));
        assert_eq!(cpu(&deleting, Some(&fresh)), Group::Ignored);
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn selectors_match_as_kubernetes_label_selectors() {
        let stt = labels(&[("app", "stt"), ("tier", "gpu")]);
        let matches = |text: &str| Selector::parse(text).unwrap().matches(&stt);
        assert!(matches("app=stt"));
        assert!(matches("app==stt,tier=gpu"));
        assert!(!matches("app=stt,tier=cpu"));
        assert!(matches("app!=mt"));
        assert!(matches("tier in (cpu, gpu)"));
        assert!(!matches("tier notin (gpu)"));
        assert!(matches("app,!canary"));
        assert!(!matches("canary"));
        assert!(matches(""), "the empty selector selects everything");
        assert!(Selector::parse("app in gpu").is_err(), "a set needs parentheses");
        assert!(Selector::parse("app=stt,,tier=gpu").is_err());
        assert!(Selector::parse("a b").is_err());
    }
}
