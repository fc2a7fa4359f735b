//! `decide()` on the `hpa` plugin: a reused instance, a fresh instance per call, and the same logic as native Rust
//! (the baseline) in the same run. Run: `cargo bench -p ballast --bench decide`.

use std::hint::black_box;
use std::time::Duration;

use ballast::runtime::{Plugin, PolicyInput, builtin};
use ballast::testing;
use criterion::{Criterion, criterion_group, criterion_main};

mod common;

const CONFIG: &str = r#"{"gpuUtilization": 80, "cpuUtilization": 70, "jobsPerPod": 5}"#;

fn bench(c: &mut Criterion) {
    let engine = testing::engine(testing::limits(8));
    let compiled = engine.load("built-in hpa", builtin("hpa").unwrap()).unwrap();
    let input = testing::busy_input(CONFIG);
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
