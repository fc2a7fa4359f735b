//! Hostile plugins beside healthy services: 100 services running the built-in `hpa` policy, alone (the baseline)
//! and then beside 100 services whose plugins misbehave in every way the sandbox knows (loop, allocate, trap,
//! panic, flood their output, sleep, answer nonsense, behave for the canary and then loop). Each tick is one
//! decision second, with the default limits (10 ms deadline, 64 MiB per plugin). Reports the healthy services'
//! decisions per tick, the tick's wall time and the host's resident memory.
//!
//! Run: cargo bench -p ballast --bench sandbox

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ballast::autoscaler::{Fleet, ManagedService, Observer, ScaleState, ScaleTarget};
use ballast::observation::{Observation, QueueCounts};
use ballast::runtime::{Plugin, PolicyEngine, RuntimeLimits, builtin};
use ballast::spec::{ScalingPolicySpec, ServiceKey};
use ballast::testing;

#[path = "common/quick.rs"]
mod quick;

const HEALTHY: usize = 100;
const HOSTILE: usize = 100;
const TICKS: u64 = 120;
const QUICK_TICKS: u64 = 3;
const MISDEEDS: [&str; 10] = [
    r#"{"mode": "loop"}"#,
    r#"{"mode": "alloc"}"#,
    r#"{"mode": "trap"}"#,
    r#"{"mode": "panic"}"#,
    r#"{"mode": "print-flood"}"#,
    r#"{"mode": "log-flood"}"#,
    r#"{"mode": "sleep"}"#,
    r#"{"mode": "big-reason", "size": 4000000}"#,
    r#"{"mode": "max"}"#,
    r#"{"mode": "loop-after", "after": 1}"#,
];

/// A queue of 20 jobs for every service.
struct Backlog;

impl Observer for Backlog {
    async fn observe(&mut self, services: &[(&ServiceKey, &ScalingPolicySpec)], _now_ms: u64) -> Vec<Observation> {
        let observation =
            Observation { queue: Some(QueueCounts { waiting: 20, ..QueueCounts::default() }), ..Default::default() };
        vec![observation; services.len()]
    }
}

/// Targets at 2 replicas; counts decisions (reads) per service.
#[derive(Default)]
struct Targets(BTreeMap<ServiceKey, u32>);

impl ScaleTarget for Targets {
    type Error = String;
    async fn read(&mut self, key: &ServiceKey, _: &ScalingPolicySpec) -> Result<ScaleState, String> {
        *self.0.entry(key.clone()).or_default() += 1;
        Ok(ScaleState { current: 2, ready: 2 })
    }
    async fn write(&mut self, _: &ServiceKey, _: &ScalingPolicySpec, _: u32) -> Result<(), String> {
        Ok(())
    }
}

fn spec(config: serde_json::Value) -> ScalingPolicySpec {
    serde_json::from_value(serde_json::json!({
        "target": {"name": "x"}, "maxReplicas": 20, "plugin": {"builtin": "hpa"}, "config": config
    }))
    .expect("a valid spec")
}

fn fleet(engine: &std::sync::Arc<PolicyEngine>, hostile: usize) -> Fleet {
    let hpa = engine.load("builtin:hpa", builtin("hpa").expect("built in")).expect("hpa loads");
    let hostile_bytes = ballast_test_plugins::read("hostile.wasm");
    let bad = engine.load("hostile.wasm", &hostile_bytes).expect("hostile loads");
    let mut fleet = Fleet::default();
    for i in 0..HEALTHY {
        let key = ServiceKey { namespace: "healthy".into(), name: format!("svc-{i:03}") };
        let service =
            ManagedService::new(spec(serde_json::json!({"jobsPerPod": 5})), Plugin::new(engine.clone(), hpa.clone()));
        fleet.services.insert(key, service);
    }
    for i in 0..hostile {
        let key = ServiceKey { namespace: "hostile".into(), name: format!("svc-{i:03}") };
        let config: serde_json::Value = serde_json::from_str(MISDEEDS[i % MISDEEDS.len()]).expect("json");
        fleet.services.insert(key, ManagedService::new(spec(config), Plugin::new(engine.clone(), bad.clone())));
    }
    fleet
}

/// Kilobytes of this process's resident memory now and at its peak (`VmRSS`, `VmHWM`).
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Run {
    healthy_per_tick: Vec<u32>,
    tick_ms: Vec<f64>,
    hostile_calls: u32,
}

fn run(engine: &std::sync::Arc<PolicyEngine>, hostile: usize, ticks: u64) -> Run {
    let mut fleet = fleet(engine, hostile);
    let mut targets = Targets::default();
    let mut healthy_per_tick = Vec::new();
    let mut tick_ms = Vec::new();
    for second in 0..ticks {
        let started = Instant::now();
        let results = futures::executor::block_on(fleet.tick(&mut Backlog, &mut targets, second * 1000));
        tick_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let healthy = results
            .iter()
            .flatten()
            .filter(|r| r.record.service.namespace == "healthy" && r.record.failure().is_none())
            .count();
        healthy_per_tick.push(healthy as u32);
    }
    let hostile_calls = targets.0.iter().filter(|(k, _)| k.namespace == "hostile").map(|(_, n)| n).sum();
    Run { healthy_per_tick, tick_ms, hostile_calls }
}

fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let ticks = if quick::quick() { QUICK_TICKS } else { TICKS };
    let limits = RuntimeLimits { max_instances: 400, ..RuntimeLimits::default() };
    let engine = testing::engine(limits);
    println!("== {HEALTHY} healthy services (hpa), alone and beside {HOSTILE} hostile ones; {ticks} ticks of 1 s ==");
    let (rss_before, _) = rss_kib();
    let baseline = run(&engine, 0, ticks);
    let with_hostile = run(&engine, HOSTILE, ticks);
    let (rss_after, rss_peak) = rss_kib();
    for (what, run) in [("healthy alone", &baseline), ("beside hostile", &with_hostile)] {
        let min_healthy = run.healthy_per_tick.iter().min().copied().unwrap_or(0);
        let mean_healthy = run.healthy_per_tick.iter().sum::<u32>() as f64 / ticks as f64;
        println!(
            "{what:>15}: healthy decisions per tick {mean_healthy:.1} (min {min_healthy} of {HEALTHY}); tick p50 \
             {:.2} ms, p99 {:.2} ms, max {:.2} ms; hostile calls {}",
            percentile(&run.tick_ms, 0.5),
            percentile(&run.tick_ms, 0.99),
            percentile(&run.tick_ms, 1.0),
            run.hostile_calls,
        );
        assert_eq!(min_healthy as usize, HEALTHY, "{what}: a healthy service missed a tick");
    }
    let ratio = percentile(&with_hostile.tick_ms, 0.5) / percentile(&baseline.tick_ms, 0.5);
    println!(
        "          ratio: tick p50 {ratio:.2}x beside hostile plugins; every tick under {:.0} ms: {}",
        Duration::from_secs(1).as_secs_f64() * 1000.0,
        with_hostile.tick_ms.iter().all(|ms| *ms < 1000.0)
    );
    println!(
        "            RSS: {:.0} MiB before, {:.0} MiB after, {:.0} MiB peak",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        rss_peak as f64 / 1024.0
    );
}
