//! The whole decision path (observation -> wasm plugin -> fallback -> clamps) under arbitrary plugin answers.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ballast::clamps::{Behavior, HpaScalingPolicy, ScalingPolicyType, ScalingRules, SelectPolicy};
use ballast::decision::{self, Decider, Moment, PluginVerdict, ServiceMemory};
use ballast::observation::Observation;
use ballast::runtime::{FailureKind, Plugin, PolicyEngine, RuntimeLimits};
use ballast::spec::{Fallback, PluginRef, ScalingPolicySpec, ServiceKey, TargetRef};
use ballast::testing;
use proptest::prelude::*;

fn engine() -> &'static Arc<PolicyEngine> {
    static ENGINE: OnceLock<Arc<PolicyEngine>> = OnceLock::new();
    ENGINE.get_or_init(|| testing::engine(testing::limits(32)))
}

fn hostile() -> Plugin {
    let path = format!("{}/hostile.wasm", ballast_test_plugins::DIR);
    let compiled = engine().load(&path, &std::fs::read(&path).unwrap()).unwrap();
    Plugin::new(engine().clone(), compiled)
}

fn spec(min: u32, max: u32, behavior: Option<Behavior>, fallback: Fallback) -> ScalingPolicySpec {
    ScalingPolicySpec {
        target: TargetRef { api_version: "apps/v1".into(), kind: "Deployment".into(), name: "stt".into() },
        min_replicas: min,
        max_replicas: max,
        plugin: PluginRef {
            builtin: None,
            config_map: None,
            path: Some("hostile.wasm".into()),
            sha256: None,
            oci: None,
        },
        config: serde_json::Value::Null,
        metrics: Default::default(),
        behavior,
        fallback,
        shadow: None,
        paused: false,
        decision_interval_seconds: 1,
        limits: None,
        wait_objective_seconds: None,
    }
}

/// `spec` deciding with `config` (the plugin's config as JSON text) through `plugin`.
fn decider(spec: &ScalingPolicySpec, config: &str, plugin: Plugin) -> Decider {
    let config = serde_json::from_str(config).expect("a test config is JSON");
    Decider::new(ScalingPolicySpec { config, ..spec.clone() }, plugin)
}

fn key() -> ServiceKey {
    ServiceKey { namespace: "ai-models".into(), name: "stt".into() }
}

/// One Pods policy per direction, so the rate limit is a simple sum over a sliding window.
fn pods_behavior(up: i32, down: i32, period: i32) -> Behavior {
    let rules = |value| ScalingRules {
        stabilization_window_seconds: Some(0),
        select_policy: Some(SelectPolicy::Max),
        policies: Some(vec![HpaScalingPolicy { kind: ScalingPolicyType::Pods, value, period_seconds: period }]),
        tolerance: None,
    };
    Behavior { scale_up: Some(rules(up)), scale_down: Some(rules(down)) }
}

fn asks() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..40, Just(u32::MAX), Just(u32::MAX - 1), 1000u32..100_000]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the plugin returns, what is applied stays in [min, max] and never moves further from the replica
    /// count at the start of any period than the behavior allows.
    #[test]
    fn applied_replicas_respect_bounds_and_rate_limits(
        min in 0u32..5,
        span in 0u32..20,
        start in 0u32..25,
        up in 1i32..5,
        down in 1i32..5,
        period in 5i32..60,
        answers in prop::collection::vec(asks(), 1..30),
    ) {
        let max = min + span;
        let current0 = start.clamp(min, max);
        let spec = spec(min, max, Some(pods_behavior(up, down, period)), Fallback::Hold);
        let mut memory = ServiceMemory::default();
        let mut current = current0;
        let mut applied: Vec<(u64, u32, u32)> = Vec::new();
        for (step, ask) in answers.iter().enumerate() {
            let now_ms = step as u64 * 5_000;
            let config = format!(r#"{{"mode": "fixed", "replicas": {ask}}}"#);
            let at = Moment { now_ms, current, ready: current };
            let record = decider(&spec, &config, hostile()).decide(&key(), &mut memory, Observation::default(), at);
            let out = record.replicas;
            prop_assert!(out >= min && out <= max, "{out} outside [{min}, {max}]: {}", record.summary());
            if *ask > 10 * max.max(current).max(1) {
                prop_assert!(matches!(record.plugin, PluginVerdict::Failed { .. }), "absurd answer must fall back");
                prop_assert_eq!(out, current, "fallback holds");
            }
            // The HPA measures from the replica count at the start of the period: the current count less what
            // changed within it (events strictly younger than `period`, both directions netted).
            let window_start = now_ms as i64 - i64::from(period) * 1000;
            let net: i64 = applied
                .iter()
                .filter(|(t, _, _)| *t as i64 > window_start)
                .map(|(_, from, to)| i64::from(*to) - i64::from(*from))
                .sum();
            let period_start = i64::from(current) - net;
            if out > current {
                prop_assert!(i64::from(out) - period_start <= i64::from(up), "{out} > {period_start}+{up}");
            }
            if out < current {
                prop_assert!(period_start - i64::from(out) <= i64::from(down), "{out} < {period_start}-{down}");
            }
            if out != current {
                memory.record_scale(&spec, current, out, now_ms);
                applied.push((now_ms, current, out));
            }
            current = out;
        }
    }

    /// Without `behavior`, the legacy limits apply: bounds hold and one step never more than doubles (or +4).
    #[test]
    fn legacy_limits_hold_for_any_answer(min in 1u32..5, span in 0u32..30, start in 1u32..40, ask in asks()) {
        let max = min + span;
        let current = start.clamp(min, max);
        let spec = spec(min, max, None, Fallback::Fixed { replicas: 3 });
        let mut memory = ServiceMemory::default();
        let config = format!(r#"{{"mode": "fixed", "replicas": {ask}}}"#);
        let at = Moment { now_ms: 1_000_000, current, ready: current };
        let record = decider(&spec, &config, hostile()).decide(&key(), &mut memory, Observation::default(), at);
        prop_assert!(record.replicas >= min && record.replicas <= max);
        prop_assert!(record.replicas <= (2 * current).max(4));
    }
}

#[test]
fn plugin_failure_falls_back_and_says_why() {
    let spec = spec(2, 8, None, Fallback::Hold);
    let mut memory = ServiceMemory::default();
    let at = Moment { now_ms: 0, current: 5, ready: 5 };
    let record =
        decider(&spec, r#"{"mode": "loop"}"#, hostile()).decide(&key(), &mut memory, Observation::default(), at);
    assert_eq!(record.replicas, 5);
    assert!(matches!(&record.plugin, PluginVerdict::Failed { kind: FailureKind::Timeout, .. }), "{:?}", record.plugin);
    let fallback = record.fallback.as_deref().unwrap();
    assert!(fallback.starts_with("holding 5 replicas: plugin timed out after 1s"), "{fallback}");
}

#[test]
fn plugin_state_is_handed_back_and_reset_for_a_new_plugin() {
    let spec = spec(0, 100, None, Fallback::Hold);
    let mut memory = ServiceMemory::default();
    let cfg = r#"{"mode": "echo-state"}"#;
    let mut live = decider(&spec, cfg, hostile());
    for expected in 1..=3u32 {
        let at = Moment { now_ms: u64::from(expected) * 1000, current: 1, ready: 1 };
        let record = live.decide(&key(), &mut memory, Observation::default(), at);
        assert_eq!(record.desired, expected);
    }
    // The memory survives serialization (it is persisted in status) ...
    let json = serde_json::to_string(&memory).unwrap();
    let mut restored: ServiceMemory = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, memory);
    let at = Moment { now_ms: 9000, current: 1, ready: 1 };
    let record = decider(&spec, cfg, hostile()).decide(&key(), &mut restored, Observation::default(), at);
    assert_eq!(record.desired, 4, "a restarted host continues from the persisted state");
    // ... and a different plugin starts from nothing.
    restored.plugin_digest = Some("another plugin".into());
    let record = decider(&spec, cfg, hostile()).decide(&key(), &mut restored, Observation::default(), at);
    assert_eq!(record.desired, 1);
}

#[test]
fn completions_since_last_come_from_the_running_total() {
    let spec = spec(0, 10, None, Fallback::Hold);
    let mut memory = ServiceMemory::default();
    let mut obs = Observation::default();
    let mut live = decider(&spec, r#"{"mode": "fixed", "replicas": 1}"#, hostile());
    let mut completed_seen = Vec::new();
    for total in [10u64, 14, 14, 3] {
        obs.queue = Some(ballast::observation::QueueCounts { completed: total, ..Default::default() });
        let at = Moment { now_ms: 0, current: 1, ready: 1 };
        let record = live.decide(&key(), &mut memory, obs.clone(), at);
        completed_seen.push(record.observation.completed_since_last);
    }
    // First call: unknown; then +4, +0; a total that went down (trimmed set) is unknown, never negative.
    assert_eq!(completed_seen, [None, Some(4), Some(0), None]);
}

/// Observes nothing for every service asked about.
struct Nothing;

impl ballast::autoscaler::Observer for Nothing {
    async fn observe(&mut self, services: &[(&ServiceKey, &ScalingPolicySpec)], _now_ms: u64) -> Vec<Observation> {
        vec![Observation::default(); services.len()]
    }
}

/// Every target at 2 replicas; counts the reads, i.e. the decisions made for each service.
#[derive(Default)]
struct Counting(std::collections::BTreeMap<String, u32>);

impl ballast::autoscaler::ScaleTarget for Counting {
    type Error = String;
    async fn read(
        &mut self,
        key: &ServiceKey,
        _: &ScalingPolicySpec,
    ) -> Result<ballast::autoscaler::ScaleState, String> {
        *self.0.entry(key.name.clone()).or_default() += 1;
        Ok(ballast::autoscaler::ScaleState { current: 2, ready: 2 })
    }
    async fn write(&mut self, _: &ServiceKey, _: &ScalingPolicySpec, _: u32) -> Result<(), String> {
        Ok(())
    }
}

#[test]
fn services_whose_plugins_keep_timing_out_back_off_and_healthy_ones_decide_every_tick() {
    use ballast::autoscaler::{Fleet, ManagedService};
    // The default 10 ms deadline: a looping plugin costs that much each time it is called.
    let engine = testing::engine(RuntimeLimits { max_instances: 64, ..RuntimeLimits::default() });
    let path = format!("{}/hostile.wasm", ballast_test_plugins::DIR);
    let compiled = engine.load(&path, &std::fs::read(&path).unwrap()).unwrap();
    let mut fleet = Fleet::default();
    let with_config = |config: serde_json::Value| ScalingPolicySpec { config, ..spec(1, 10, None, Fallback::Hold) };
    for i in 0..30 {
        let key = ServiceKey { namespace: "tenant".into(), name: format!("loop-{i:02}") };
        let service = ManagedService::new(
            with_config(serde_json::json!({"mode": "loop"})),
            Plugin::new(engine.clone(), compiled.clone()),
        );
        fleet.services.insert(key, service);
    }
    let healthy = ManagedService::new(
        with_config(serde_json::json!({"mode": "fixed", "replicas": 3})),
        Plugin::new(engine.clone(), compiled.clone()),
    );
    fleet.services.insert(ServiceKey { namespace: "ai-models".into(), name: "healthy".into() }, healthy);
    let mut target = Counting::default();
    for second in 0..20u64 {
        let results = futures::executor::block_on(fleet.tick(&mut Nothing, &mut target, second * 1000));
        let healthy = results.iter().flatten().find(|r| r.record.service.name == "healthy").expect("healthy decided");
        assert_eq!(healthy.record.replicas, 3, "second {second}");
    }
    assert_eq!(target.0["healthy"], 20, "the healthy service decided every second");
    // Each looping plugin was called on ticks 0, 1, 3, 7 and 15 only: 2^(n-1) - 1 ticks skipped after n timeouts.
    for i in 0..30 {
        assert_eq!(target.0[&format!("loop-{i:02}")], 5, "loop-{i:02}");
    }
}

#[test]
fn a_policy_may_lower_its_plugins_limits_but_never_raise_them() {
    use ballast::spec::PluginLimitsSpec;
    let path = format!("{}/hostile.wasm", ballast_test_plugins::DIR);
    let compiled = engine().load(&path, &std::fs::read(&path).unwrap()).unwrap();
    let alloc = |memory_mib: u32| {
        let limits = PluginLimitsSpec { memory_mib: Some(memory_mib), deadline_milliseconds: None };
        let spec = ScalingPolicySpec { limits: Some(limits), ..spec(1, 10, None, Fallback::Hold) };
        let plugin = spec.new_plugin(engine(), compiled.clone());
        let at = Moment { now_ms: 0, current: 1, ready: 1 };
        decider(&spec, r#"{"mode": "alloc"}"#, plugin).decide(
            &key(),
            &mut ServiceMemory::default(),
            Observation::default(),
            at,
        )
    };
    let message = |record: decision::DecisionRecord| match record.plugin {
        PluginVerdict::Failed { kind: FailureKind::Memory, message } => message,
        other => panic!("{other:?}"),
    };
    assert_eq!(message(alloc(16)), "exceeded its memory cap of 16 MiB");
    assert_eq!(message(alloc(4096)), "exceeded its memory cap of 64 MiB", "the host's cap stands");
    let looping = |deadline_milliseconds: u32| {
        let limits = PluginLimitsSpec { deadline_milliseconds: Some(deadline_milliseconds), memory_mib: None };
        let spec = ScalingPolicySpec { limits: Some(limits), ..spec(1, 10, None, Fallback::Hold) };
        let mut plugin = spec.new_plugin(engine(), compiled.clone());
        plugin
            .decide(&decision::policy_input(
                &key(),
                &spec,
                r#"{"mode": "loop"}"#,
                &ServiceMemory::default(),
                &Observation::default(),
                Moment { now_ms: 0, current: 1, ready: 1 },
            ))
            .result
    };
    assert_eq!(looping(20), Err(ballast::runtime::PluginFailure::Timeout(Duration::from_millis(20))));
    assert_eq!(
        looping(60_000),
        Err(ballast::runtime::PluginFailure::Timeout(Duration::from_secs(1))),
        "the host's deadline stands"
    );
}
