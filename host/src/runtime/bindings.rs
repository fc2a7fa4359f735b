//! Host-side bindings of the WIT worlds this host serves, one module per version: 0.2 (`policies-wit/wit`, whose
//! types are the host's own) and 0.1 (`policies-wit/wit-0.1`, frozen). A component's export name says which world
//! it implements; a 0.1 plugin gets the 0.2 input without the fields 0.2 added.

use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

use super::instance::HostState;

mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../policies-wit/wit",
        world: "scaling-policy",
        additional_derives: [PartialEq],
    });
    /// The world's bindings: bindgen names them after the WIT world (`ScalingPolicy`, `ScalingPolicyPre`), which
    /// says nothing of what they are beside the CRD's `ScalingPolicy`.
    pub(crate) type PolicyWorld = ScalingPolicy;
    pub(crate) type PolicyWorldPre<T> = ScalingPolicyPre<T>;
}

mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../policies-wit/wit-0.1",
        world: "scaling-policy",
        additional_derives: [PartialEq],
    });
    /// The world's bindings: bindgen names them after the WIT world (`ScalingPolicy`, `ScalingPolicyPre`), which
    /// says nothing of what they are beside the CRD's `ScalingPolicy`.
    pub(crate) type PolicyWorld = ScalingPolicy;
    pub(crate) type PolicyWorldPre<T> = ScalingPolicyPre<T>;
}

pub use self::v0_2::exports::ballast::policy::policy::{
    CustomMetric, Decision, MetricProposal, Observations, PolicyError, PolicyInput, QueueCounts, ServiceId,
};

/// A version of the `ballast:policy` world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    V0_1,
    V0_2,
}

impl World {
    /// Every world this host runs, newest first.
    pub const ALL: [World; 2] = [World::V0_2, World::V0_1];
    /// The world new plugins are built against (`policies-wit/wit`).
    pub const CURRENT: World = World::V0_2;

    /// The world's name, as `wasm-tools component wit` prints it.
    pub fn name(self) -> &'static str {
        match self {
            World::V0_1 => "ballast:policy/scaling-policy@0.1.0",
            World::V0_2 => "ballast:policy/scaling-policy@0.2.0",
        }
    }

    /// The package version, as WIT writes it.
    pub(crate) fn version(self) -> &'static str {
        match self {
            World::V0_1 => "0.1.0",
            World::V0_2 => "0.2.0",
        }
    }

    /// The export a plugin of this world has, which tells the worlds apart.
    pub(crate) fn policy_export(self) -> &'static str {
        match self {
            World::V0_1 => "ballast:policy/policy@0.1.0",
            World::V0_2 => "ballast:policy/policy@0.2.0",
        }
    }

    /// The world a component with these exports implements (the newest, if it somehow exports both).
    pub fn of_exports(exports: &[String]) -> Option<World> {
        World::ALL.into_iter().find(|world| exports.iter().any(|e| e == world.policy_export()))
    }
}

/// Adds every world's host interface to the linker.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    v0_2::PolicyWorld::add_to_linker::<_, HasSelf<HostState>>(linker, |s| s)?;
    v0_1::PolicyWorld::add_to_linker::<_, HasSelf<HostState>>(linker, |s| s)
}

/// A component pre-linked and type-checked against its world.
#[derive(Clone)]
pub(crate) enum PolicyPre {
    V0_1(v0_1::PolicyWorldPre<HostState>),
    V0_2(v0_2::PolicyWorldPre<HostState>),
}

impl PolicyPre {
    pub fn new(world: World, instance_pre: InstancePre<HostState>) -> wasmtime::Result<Self> {
        Ok(match world {
            World::V0_1 => PolicyPre::V0_1(v0_1::PolicyWorldPre::new(instance_pre)?),
            World::V0_2 => PolicyPre::V0_2(v0_2::PolicyWorldPre::new(instance_pre)?),
        })
    }

    pub fn world(&self) -> World {
        match self {
            PolicyPre::V0_1(_) => World::V0_1,
            PolicyPre::V0_2(_) => World::V0_2,
        }
    }

    pub(crate) fn instance_pre(&self) -> &InstancePre<HostState> {
        match self {
            PolicyPre::V0_1(pre) => pre.instance_pre(),
            PolicyPre::V0_2(pre) => pre.instance_pre(),
        }
    }

    pub(crate) fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<PolicyInstance> {
        Ok(match self {
            PolicyPre::V0_1(pre) => PolicyInstance::V0_1(pre.instantiate(store)?),
            PolicyPre::V0_2(pre) => PolicyInstance::V0_2(pre.instantiate(store)?),
        })
    }
}

/// An instance of a plugin, of either world.
pub(crate) enum PolicyInstance {
    V0_1(v0_1::PolicyWorld),
    V0_2(v0_2::PolicyWorld),
}

impl PolicyInstance {
    /// Calls `decide`, in the host's (0.2) types whatever the plugin's world.
    pub(crate) fn call_decide(
        &self,
        store: &mut Store<HostState>,
        input: &PolicyInput,
    ) -> wasmtime::Result<Result<Decision, PolicyError>> {
        match self {
            PolicyInstance::V0_2(bindings) => bindings.ballast_policy_policy().call_decide(store, input),
            PolicyInstance::V0_1(bindings) => {
                let answer = bindings.ballast_policy_policy().call_decide(store, &to_v0_1(input))?;
                Ok(answer.map(from_v0_1_decision).map_err(from_v0_1_error))
            }
        }
    }
}

/// The 0.1 view of an input: everything but what 0.2 added.
fn to_v0_1(input: &PolicyInput) -> v0_1::exports::ballast::policy::policy::PolicyInput {
    use v0_1::exports::ballast::policy::policy as old;
    let o = &input.observations;
    old::PolicyInput {
        service: old::ServiceId { namespace: input.service.namespace.clone(), name: input.service.name.clone() },
        now_ms: input.now_ms,
        current_replicas: input.current_replicas,
        ready_replicas: input.ready_replicas,
        min_replicas: input.min_replicas,
        max_replicas: input.max_replicas,
        config: input.config.clone(),
        state: input.state.clone(),
        observations: old::Observations {
            gpu_duty_cycle_percent: o.gpu_duty_cycle_percent,
            cpu_percent_of_request: o.cpu_percent_of_request,
            memory_percent_of_request: o.memory_percent_of_request,
            queue: o.queue.as_ref().map(|q| old::QueueCounts {
                waiting: q.waiting,
                prioritized: q.prioritized,
                paused: q.paused,
                active: q.active,
                delayed: q.delayed,
                failed: q.failed,
                waiting_children: q.waiting_children,
                completed_since_last: q.completed_since_last,
            }),
            latency_p50_ms: o.latency_p50_ms,
            latency_p95_ms: o.latency_p95_ms,
            latency_p99_ms: o.latency_p99_ms,
            request_rate: o.request_rate,
            custom: o.custom.iter().map(|m| old::CustomMetric { name: m.name.clone(), value: m.value }).collect(),
        },
    }
}

fn from_v0_1_decision(decision: v0_1::exports::ballast::policy::policy::Decision) -> Decision {
    Decision {
        replicas: decision.replicas,
        reason: decision.reason,
        proposals: decision
            .proposals
            .into_iter()
            .map(|p| MetricProposal { metric: p.metric, replicas: p.replicas })
            .collect(),
        state: decision.state,
    }
}

fn from_v0_1_error(error: v0_1::exports::ballast::policy::policy::PolicyError) -> PolicyError {
    use v0_1::exports::ballast::policy::policy::PolicyError as Old;
    match error {
        Old::InvalidConfig(m) => PolicyError::InvalidConfig(m),
        Old::InsufficientData(m) => PolicyError::InsufficientData(m),
        Old::Internal(m) => PolicyError::Internal(m),
    }
}

/// A plugin's `log` call, whichever world's interface it came through.
macro_rules! impl_log_host {
    ($world:ident) => {
        impl $world::ballast::policy::host::Host for HostState {
            fn log(&mut self, level: $world::ballast::policy::host::LogLevel, message: String) {
                use $world::ballast::policy::host::LogLevel;
                let level = match level {
                    LogLevel::Debug => "debug",
                    LogLevel::Info => "info",
                    LogLevel::Warn => "warn",
                    LogLevel::Error => "error",
                };
                self.log_line(level, &message);
            }
        }
    };
}
impl_log_host!(v0_2);
impl_log_host!(v0_1);

/// The plugin's own words, without the Debug wrapping of the generated `Display`.
pub fn describe(error: &PolicyError) -> String {
    match error {
        PolicyError::InvalidConfig(m) => format!("invalid config: {m}"),
        PolicyError::InsufficientData(m) => format!("insufficient data: {m}"),
        PolicyError::Internal(m) => format!("internal error: {m}"),
    }
}
