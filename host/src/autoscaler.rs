//! The control loop shared by the live host and the simulator: each tick, observe every service, decide, and
//! write changed replica counts. Where observations come from ([`Observer`]) and where replica counts go
//! ([`ScaleTarget`]) are the only parts that differ between a cluster and the simulated one.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::decision::{Decider, DecisionRecord, Moment, ServiceMemory, ShadowRecord};
use crate::observation::Observation;
use k8s_openapi::api::core::v1::ConfigMap;

use crate::oci::OciStore;
use crate::policy::plugins::{self, Resolved};
use crate::runtime::{self, FailureKind, Plugin, PolicyEngine};
use crate::spec::{ScalingPolicySpec, ServiceKey};
use crate::{Error, Result};

/// The target's replica counts as its `/scale` subresource (and pod readiness) report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleState {
    pub current: u32,
    pub ready: u32,
}

/// Produces the observations of a tick for every service (metric sources, or the simulated cluster).
pub trait Observer {
    /// One observation per service asked about, in the order asked (a service nothing is known about gets one
    /// with every metric unavailable). By position rather than by key: the control loop walks the services in
    /// order anyway, and a map of a thousand observations cost a key copy and a move per service.
    fn observe(
        &mut self,
        services: &[(&ServiceKey, &ScalingPolicySpec)],
        now_ms: u64,
    ) -> impl Future<Output = Vec<Observation>>;
}

/// Reads and writes replica counts (the Kubernetes `/scale` subresource, or the simulated cluster).
pub trait ScaleTarget {
    /// Why a read or write failed: the cause of the tick's [`ScaleFailure`].
    type Error: Into<BoxError>;
    fn read(
        &mut self,
        key: &ServiceKey,
        spec: &ScalingPolicySpec,
    ) -> impl Future<Output = std::result::Result<ScaleState, Self::Error>>;
    fn write(
        &mut self,
        key: &ServiceKey,
        spec: &ScalingPolicySpec,
        replicas: u32,
    ) -> impl Future<Output = std::result::Result<(), Self::Error>>;
}

/// Any error, boxed: the cause of a [`ScaleFailure`], whichever [`ScaleTarget`] failed.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a due service's target could not be read (no decision) or written (the next tick tries again).
#[derive(Debug, thiserror::Error)]
pub enum ScaleFailure {
    #[error("reading the scale of {key}: {source}")]
    Read { key: ServiceKey, source: BoxError },
    #[error("writing {replicas} replicas to {key}: {source}")]
    Write { key: ServiceKey, replicas: u32, source: BoxError },
}

impl ScaleFailure {
    /// The service whose target failed.
    pub(crate) fn key(&self) -> &ServiceKey {
        match self {
            ScaleFailure::Read { key, .. } | ScaleFailure::Write { key, .. } => key,
        }
    }
}

/// One service under management: what it decides with (spec, config, plugin) and its memory. It decides itself.
pub struct ManagedService {
    pub decider: Decider,
    pub memory: ServiceMemory,
    /// The shadow plugin: decides beside the live one on the same observation, never applied.
    pub(crate) shadow: Option<ShadowPlugin>,
    last_decided_ms: Option<u64>,
    backoff: Backoff,
    /// Why the service sits out every tick (e.g. another autoscaler scales its target): neither decided nor
    /// written while set.
    pub(crate) hold: Option<String>,
}

/// A shadow plugin with the spec it decides with (see [`ScalingPolicySpec::shadow_spec`]).
pub(crate) struct ShadowPlugin {
    pub(crate) decider: Decider,
    backoff: Backoff,
}

/// Ticks a plugin sits out after costly failures in a row, so that plugins that time out or trap every call
/// cannot take the tick from the healthy ones: after the n-th such failure it skips 2^(n-1) - 1 of its decision
/// intervals, at most [`Backoff::MAX_SKIPPED`], holding its replicas meanwhile. A failure that is only a bad
/// answer (an error result, nonsense) costs no more than a good call and does not count.
#[derive(Debug, Default, Clone, Copy)]
struct Backoff {
    costly_failures: u32,
    skip: u32,
}

impl Backoff {
    const MAX_SKIPPED: u32 = 63;

    /// Whether this tick is one to sit out (counting it).
    fn sits_out(&mut self) -> bool {
        if self.skip == 0 {
            return false;
        }
        self.skip -= 1;
        true
    }

    fn record(&mut self, failure: Option<FailureKind>) {
        match failure {
            Some(FailureKind::Timeout | FailureKind::Trap | FailureKind::Memory | FailureKind::Instantiate) => {
                self.costly_failures = self.costly_failures.saturating_add(1);
                self.skip = (1u32 << (self.costly_failures - 1).min(6)).saturating_sub(1).min(Self::MAX_SKIPPED);
            }
            _ => *self = Backoff::default(),
        }
    }
}

impl ManagedService {
    pub fn new(spec: ScalingPolicySpec, plugin: Plugin) -> Self {
        ManagedService {
            decider: Decider::new(spec, plugin),
            memory: ServiceMemory::default(),
            shadow: None,
            last_decided_ms: None,
            backoff: Backoff::default(),
            hold: None,
        }
    }

    /// Adds the shadow plugin the spec names (ignored when the spec has no shadow).
    pub(crate) fn with_shadow(mut self, plugin: Option<Plugin>) -> Self {
        self.set_shadow(plugin);
        self
    }

    /// Replaces the shadow plugin; it decides with the spec's shadow config.
    pub(crate) fn set_shadow(&mut self, plugin: Option<Plugin>) {
        self.shadow = plugin
            .zip(self.spec().shadow_spec())
            .map(|(plugin, spec)| ShadowPlugin { decider: Decider::new(spec, plugin), backoff: Backoff::default() });
    }

    pub fn spec(&self) -> &ScalingPolicySpec {
        &self.decider.spec
    }

    /// Whether this service's decision interval has passed. A tenth of the interval is allowed for timer jitter,
    /// so a 1 s policy ticked every second never skips a beat.
    fn is_due(&self, now_ms: u64) -> bool {
        let interval = self.spec().decision_interval_ms();
        self.last_decided_ms.is_none_or(|last| now_ms.saturating_sub(last) + interval / 10 >= interval)
    }

    /// The live plugin's decision (and the shadow's beside it) on this tick's observation.
    fn decide(&mut self, key: &ServiceKey, observation: Observation, at: Moment) -> DecisionRecord {
        let mut record = self.decider.decide(key, &mut self.memory, observation, at);
        self.backoff.record(record.failure());
        record.shadow =
            self.shadow.as_mut().and_then(|shadow| shadow.decide(key, &mut self.memory, &record.observation, at));
        record
    }
}

impl ShadowPlugin {
    /// Runs the shadow plugin on the observation the live one saw, against a copy of the live scale history (in
    /// `memory`, the service's), and keeps its own plugin state there. Nothing it says is applied.
    fn decide(
        &mut self,
        key: &ServiceKey,
        memory: &mut ServiceMemory,
        observation: &Observation,
        at: Moment,
    ) -> Option<ShadowRecord> {
        if self.backoff.sits_out() {
            return None;
        }
        let mut own = memory.shadow.take().map(|m| *m).unwrap_or_default();
        own.history = memory.history.clone();
        let record = self.decider.decide(key, &mut own, observation.clone(), at);
        own.history = Default::default();
        memory.shadow = Some(Box::new(own));
        self.backoff.record(record.failure());
        Some(ShadowRecord::from(record))
    }
}

/// Loads the component a spec's plugin reference names: a built-in, a file, or a ConfigMap that `config_map` finds by
/// namespace and name (the controller's watch cache, or the ConfigMaps given to the simulator). OCI references
/// must have been pulled to a file first ([`crate::oci::localize`]).
pub fn load_plugin(
    engine: &Arc<PolicyEngine>,
    key: &ServiceKey,
    spec: &ScalingPolicySpec,
    config_map: impl Fn(&str, &str) -> Option<Arc<ConfigMap>>,
) -> Result<Plugin> {
    let no_oci = OciStore::new(None);
    let source = match plugins::resolve(key, spec, config_map, &no_oci)? {
        Resolved::Ready(source) => source,
        Resolved::Pull(pull) => return Err(Error::NotPulled { key: key.clone(), name: pull.name }),
    };
    let compiled = engine.load_digested(&source.name, &source.bytes, &source.digest, spec.plugin.sha256.as_deref())?;
    Ok(spec.new_plugin(engine, compiled))
}

/// Every managed service, decided tick by tick.
#[derive(Default)]
pub struct Fleet {
    pub services: BTreeMap<ServiceKey, ManagedService>,
}

/// What one tick did for one service.
#[derive(Debug)]
pub struct TickResult {
    pub record: DecisionRecord,
    /// Set when writing the new replica count failed; the next tick tries again.
    pub(crate) write_error: Option<ScaleFailure>,
}

/// A due service's decision with the scale it was made on, or why it could not be made.
type Decided = std::result::Result<(DecisionRecord, ScaleState), ScaleFailure>;

impl Fleet {
    /// Observes, decides and actuates every service once. One service's failure never stops the others.
    ///
    /// Three phases: observe and read the targets' scale (async), decide (plugin calls: synchronous, and run
    /// where blocking is allowed, see [`runtime::off_async`]), then write the counts that changed (async).
    pub async fn tick<O: Observer, T: ScaleTarget>(
        &mut self,
        observer: &mut O,
        target: &mut T,
        now_ms: u64,
    ) -> Vec<std::result::Result<TickResult, ScaleFailure>> {
        let due = self.due(now_ms);
        if !due.contains(&true) {
            return Vec::new();
        }
        // References to keys and specs only: a reference to the fleet (its plugins) would make the future !Send.
        let list: Vec<(&ServiceKey, &ScalingPolicySpec)> =
            self.services.iter().zip(&due).filter(|(_, due)| **due).map(|((k, s), _)| (k, s.spec())).collect();
        let (observations, reads) = observe(&list, observer, target, now_ms).await;
        let decided = self.decide(&due, observations, reads, now_ms);
        self.actuate(&due, decided, target, now_ms).await
    }

    /// Which services decide now, in key order; a service backing off after failures sits this one out.
    fn due(&mut self, now_ms: u64) -> Vec<bool> {
        self.services
            .values_mut()
            .map(|service| {
                if service.hold.is_some() || !service.is_due(now_ms) {
                    return false;
                }
                if service.backoff.sits_out() {
                    service.last_decided_ms = Some(now_ms);
                    return false;
                }
                true
            })
            .collect()
    }

    /// Decide: every due service's plugin calls, off the async runtime.
    fn decide(
        &mut self,
        due: &[bool],
        observations: Vec<Observation>,
        reads: Vec<std::result::Result<ScaleState, BoxError>>,
        now_ms: u64,
    ) -> Vec<Decided> {
        let services = &mut self.services;
        runtime::off_async(|| {
            let mut observations = observations.into_iter();
            due_services(services, due)
                .zip(reads)
                .map(|((key, service), read)| {
                    service.last_decided_ms = Some(now_ms);
                    let observation = observations.next().unwrap_or_default();
                    match read {
                        Ok(state) => {
                            let at = Moment { now_ms, current: state.current, ready: state.ready };
                            Ok((service.decide(key, observation, at), state))
                        }
                        Err(source) => Err(ScaleFailure::Read { key: key.clone(), source }),
                    }
                })
                .collect()
        })
    }

    /// Actuate: writes the replica counts that changed, and records each scale in the service's memory.
    async fn actuate<T: ScaleTarget>(
        &mut self,
        due: &[bool],
        decided: Vec<Decided>,
        target: &mut T,
        now_ms: u64,
    ) -> Vec<std::result::Result<TickResult, ScaleFailure>> {
        let mut results = Vec::with_capacity(decided.len());
        for ((key, service), decided) in due_services(&mut self.services, due).zip(decided) {
            let (record, state) = match decided {
                Ok(decided) => decided,
                Err(failed) => {
                    results.push(Err(failed));
                    continue;
                }
            };
            let mut write_error = None;
            if record.replicas != state.current {
                match target.write(key, &service.decider.spec, record.replicas).await {
                    Ok(()) => {
                        service.memory.record_scale(&service.decider.spec, state.current, record.replicas, now_ms)
                    }
                    Err(e) => {
                        let (key, replicas) = (key.clone(), record.replicas);
                        write_error = Some(ScaleFailure::Write { key, replicas, source: e.into() });
                    }
                }
            }
            results.push(Ok(TickResult { record, write_error }));
        }
        results
    }
}

/// Observe: the observations of the services in `list` and their targets' scale, in the order of `list`.
async fn observe<O: Observer, T: ScaleTarget>(
    list: &[(&ServiceKey, &ScalingPolicySpec)],
    observer: &mut O,
    target: &mut T,
    now_ms: u64,
) -> (Vec<Observation>, Vec<std::result::Result<ScaleState, BoxError>>) {
    let observations = observer.observe(list, now_ms).await;
    let mut reads = Vec::with_capacity(list.len());
    for (key, spec) in list {
        reads.push(target.read(key, spec).await.map_err(Into::into));
    }
    (observations, reads)
}

/// The services `due` marks, in key order.
fn due_services<'a>(
    services: &'a mut BTreeMap<ServiceKey, ManagedService>,
    due: &'a [bool],
) -> impl Iterator<Item = (&'a ServiceKey, &'a mut ManagedService)> {
    services.iter_mut().zip(due).filter(|(_, due)| **due).map(|(service, _)| service)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeLimits;
    use crate::testing;

    /// Observes what it was given for the services asked about.
    struct Given(BTreeMap<ServiceKey, Observation>);

    impl Observer for Given {
        async fn observe(&mut self, services: &[(&ServiceKey, &ScalingPolicySpec)], _now_ms: u64) -> Vec<Observation> {
            services.iter().map(|(key, _)| self.0.get(*key).cloned().unwrap_or_default()).collect()
        }
    }

    /// Every target at 2 replicas; writes succeed.
    struct Steady;

    impl ScaleTarget for Steady {
        type Error = std::convert::Infallible;
        async fn read(
            &mut self,
            _key: &ServiceKey,
            _spec: &ScalingPolicySpec,
        ) -> std::result::Result<ScaleState, Self::Error> {
            Ok(ScaleState { current: 2, ready: 2 })
        }
        async fn write(
            &mut self,
            _: &ServiceKey,
            _: &ScalingPolicySpec,
            _: u32,
        ) -> std::result::Result<(), Self::Error> {
            Ok(())
        }
    }

    #[test]
    fn each_service_decides_on_its_own_observation_or_on_none() {
        let engine = testing::engine(RuntimeLimits { max_instances: 8, ..RuntimeLimits::default() });
        let key = |name: &str| ServiceKey { namespace: "ai".into(), name: name.into() };
        let spec: ScalingPolicySpec = serde_json::from_value(serde_json::json!({
            "target": {"name": "x"}, "maxReplicas": 8, "plugin": {"builtin": "hpa"}, "config": {"jobsPerPod": 5}
        }))
        .unwrap();
        let mut fleet = Fleet::default();
        for name in ["b", "d", "f"] {
            let plugin = load_plugin(&engine, &key(name), &spec, |_, _| None).unwrap();
            fleet.services.insert(key(name), ManagedService::new(spec.clone(), plugin));
        }
        let with_queue = |waiting| Observation {
            queue: Some(crate::observation::QueueCounts { waiting, ..Default::default() }),
            ..Observation::default()
        };
        // Observations for services the fleet does not manage ("a", "c", "g") and none for "d".
        let given = [("a", 1), ("b", 10), ("c", 30), ("f", 40), ("g", 50)].map(|(n, w)| (key(n), with_queue(w)));
        let results = futures::executor::block_on(fleet.tick(&mut Given(given.into()), &mut Steady, 1000));
        let waiting: Vec<_> = results
            .iter()
            .map(|r| {
                let record = &r.as_ref().unwrap().record;
                (record.service.name.as_str(), record.observation.queue.map(|q| q.waiting))
            })
            .collect();
        assert_eq!(waiting, [("b", Some(10)), ("d", None), ("f", Some(40))]);

        // A held service (another autoscaler scales its target) is neither decided nor written.
        fleet.services.get_mut(&key("d")).unwrap().hold = Some("an HPA scales it".into());
        let results = futures::executor::block_on(fleet.tick(&mut Given(BTreeMap::new()), &mut Steady, 2000));
        let decided: Vec<_> = results.iter().map(|r| r.as_ref().unwrap().record.service.name.clone()).collect();
        assert_eq!(decided, ["b", "f"]);
    }
}
