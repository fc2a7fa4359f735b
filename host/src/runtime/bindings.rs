//! Host-side bindings of the `ballast:policy@0.1.0` world. A future 0.2 world gets its own module beside this one.

wasmtime::component::bindgen!({
    path: "../policies-wit/wit",
    world: "scaling-policy",
    additional_derives: [PartialEq],
});

pub use self::ballast::policy::host::LogLevel;
pub use self::exports::ballast::policy::policy::{
    CustomMetric, Decision, MetricProposal, Observations, PolicyError, PolicyInput, QueueCounts, ServiceId,
};

/// The export every 0.1 plugin must have; named in refusal messages.
pub const POLICY_EXPORT: &str = "ballast:policy/policy@0.1.0";
/// The world this host serves.
pub const WORLD: &str = "ballast:policy/scaling-policy@0.1.0";

/// The plugin's own words, without the Debug wrapping of the generated `Display`.
pub fn describe(error: &PolicyError) -> String {
    match error {
        PolicyError::InvalidConfig(m) => format!("invalid config: {m}"),
        PolicyError::InsufficientData(m) => format!("insufficient data: {m}"),
        PolicyError::Internal(m) => format!("internal error: {m}"),
    }
}
