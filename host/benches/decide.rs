//! `decide()` on the `hpa` plugin: a reused instance, a fresh instance per call, and the same logic as native Rust
//! (the baseline) in the same run. Run: `cargo bench -p ballast --bench decide`.

use std::hint::black_box;
use std::time::Duration;

use ballast::runtime::{
    Observations, Plugin, PolicyEngine, PolicyInput, QueueCounts, RuntimeLimits, ServiceId, builtin,
};
use criterion::{Criterion, criterion_group, criterion_main};

mod common;

const CONFIG: &str = r#"{"gpuUtilization": 80, "cpuUtilization": 70, "jobsPerPod": 5}"#;

fn wasm_input() -> PolicyInput {
    PolicyInput {
        service: ServiceId { namespace: "ai-models".into(), name: "whisper-pyannote-stt".into() },
        now_ms: 1_700_000_000_000,
        current_replicas: 3,
        ready_replicas: 3,
        min_replicas: 2,
        max_replicas: 8,
        config: CONFIG.into(),
        state: None,
        observations: Observations {
            gpu_duty_cycle_percent: Some(91.5),
            cpu_percent_of_request: Some(55.0),
            memory_percent_of_request: Some(60.0),
            queue: Some(QueueCounts {
                waiting: 21,
                prioritized: 0,
                paused: 0,
                active: 3,
                delayed: 1,
                failed: 0,
                waiting_children: 0,
                completed_since_last: Some(2),
                is_paused: false,
            }),
            latency_p50_ms: Some(800.0),
            latency_p95_ms: Some(2400.0),
            latency_p99_ms: Some(4000.0),
            request_rate: Some(0.4),
            custom: vec![],
        },
    }
}

fn bench(c: &mut Criterion) {
    // A generous deadline: this measures speed, and a loaded machine may preempt a call for longer than 10 ms.
    let limits = RuntimeLimits { max_instances: 8, deadline: Duration::from_secs(1), ..RuntimeLimits::default() };
    let engine = PolicyEngine::new(limits).unwrap();
    let compiled = engine.load("built-in hpa", builtin("hpa").unwrap()).unwrap();
    let input = wasm_input();
    let native = common::to_sdk(&input);
    let expected = hpa::decide(&native).unwrap().replicas;

    let mut group = c.benchmark_group("decide-hpa");
    group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    group.bench_function("native-rust", |b| b.iter(|| hpa::decide(black_box(&native)).unwrap().replicas));
    let mut reused = Plugin::new(engine.clone(), compiled.clone());
    assert_eq!(reused.decide(&input).result.unwrap().replicas, expected, "wasm and native disagree");
    group.bench_function("wasm-reused-instance", |b| b.iter(|| reused.decide(black_box(&input)).result.unwrap()));
    // The call's fixed cost: the same input through a plugin that only parses its (cached) config and answers.
    let echo_bytes = ballast_test_plugins::read("hostile.wasm");
    let mut echo = Plugin::new(engine.clone(), engine.load("hostile", &echo_bytes).unwrap());
    let echo_input = PolicyInput { config: r#"{"mode": "fixed", "replicas": 3}"#.into(), ..input.clone() };
    group.bench_function("wasm-reused-trivial-policy", |b| {
        b.iter(|| echo.decide(black_box(&echo_input)).result.unwrap())
    });
    let mut fresh = Plugin::new(engine.clone(), compiled.clone());
    fresh.fresh_each_call = true;
    group.bench_function("wasm-fresh-instance", |b| b.iter(|| fresh.decide(black_box(&input)).result.unwrap()));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
