//! Simulator speed: one simulated day of the five model services, and one tick of 1,000 services with plugin
//! calls, against the same tick deciding with the `hpa` policy compiled natively (no wasm) as the baseline.
//!
//! Run: cargo bench -p ballast --bench sim

use std::cell::RefCell;
use std::time::{Duration, Instant};

use ballast::autoscaler::{Fleet, ManagedService, Observer, ScaleTarget, load_plugin};
use ballast::clamps::{self, ClampInput};
use ballast::decision::{Moment, policy_input};
use ballast::sim::{self, PolicySet, RunOptions, SimCluster, SimHandle, Trace};
use ballast_policy_sdk as sdk;

const SERVICES: usize = 1000;
const TICKS: u64 = 30;

fn main() {
    let engine = sim::run::engine().expect("policy engine");
    let trace = Trace::from_arg("builtin:day").expect("built-in trace");
    let steady = Trace::from_arg("builtin:steady").expect("built-in trace");

    println!("== one simulated day (86,400 steps of 1 s), five model services ==");
    for set in sim::demo::policy_sets().expect("demo policies") {
        let started = Instant::now();
        let result = sim::run(&engine, &set, &trace, RunOptions::default(), &mut ()).expect("simulation");
        let seconds = started.elapsed().as_secs_f64();
        let pod_hours: f64 = result.summaries.iter().map(|s| s.pod_hours).sum();
        println!(
            "{:>12}: {seconds:.2} s wall ({:.0}x real time), {pod_hours:.1} pod-hours",
            set.label,
            86_400.0 / seconds
        );
    }

    println!("== one tick of {SERVICES} services (observe, decide, clamp, scale), mean of {TICKS} ticks ==");
    let set = thousand_services();
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let cluster = RefCell::new(SimCluster::new(&set.services, 1));
    let mut fleet = Fleet::default();
    for setup in &set.services {
        let plugin = load_plugin(&engine, &setup.key, &setup.spec).expect("built-in plugin");
        fleet.services.insert(setup.key.clone(), ManagedService::new(setup.spec.clone(), plugin));
    }
    let arrivals: Vec<Vec<u64>> = set.services.iter().map(|s| steady.arrivals(s, 3600, 1)).collect();
    let step = |now_s: u64| {
        let mut c = cluster.borrow_mut();
        for ((_, service), arrivals) in c.services.iter_mut().zip(&arrivals) {
            service.step(now_s * 1000, 15_000, arrivals[now_s as usize..now_s as usize + 15].iter().sum());
        }
        c.now_ms = (now_s + 15) * 1000;
    };
    // Warm-up: instantiate every plugin (first calls) and fill the queues.
    let start_s = 0;
    runtime.block_on(fleet.tick(&mut SimHandle(&cluster), &mut SimHandle(&cluster), start_s * 1000));

    let mut wasm = Duration::ZERO;
    let mut native = Duration::ZERO;
    let mut native_fleet_memory: Vec<_> = fleet.services.values().map(|s| s.memory.clone()).collect();
    for tick in 0..TICKS {
        let now_s = start_s + 15 * tick;
        step(now_s);
        let now_ms = (now_s + 15) * 1000;

        let started = Instant::now();
        let results = runtime.block_on(fleet.tick(&mut SimHandle(&cluster), &mut SimHandle(&cluster), now_ms));
        wasm += started.elapsed();
        assert!(results.iter().all(|r| r.as_ref().is_ok_and(|t| t.record.failure().is_none())));

        // Baseline: the same observe/read/clamp/write path with the policy as native Rust (its own
        // decision memory, so the two never share stabilization history).
        let started = Instant::now();
        runtime.block_on(native_tick(&fleet, &mut native_fleet_memory, &cluster, now_ms));
        native += started.elapsed();
    }
    let per_tick = |d: Duration| d.as_secs_f64() * 1000.0 / TICKS as f64;
    let (wasm_ms, native_ms) = (per_tick(wasm), per_tick(native));
    println!("   wasm plugins: {wasm_ms:.2} ms per tick ({:.1} us per service)", wasm_ms * 1000.0 / SERVICES as f64);
    println!(
        "  native policy: {native_ms:.2} ms per tick ({:.1} us per service)",
        native_ms * 1000.0 / SERVICES as f64
    );
    println!("          ratio: {:.1}x (target: at most 10 ms per tick)", wasm_ms / native_ms);
}

/// The services of the demo, repeated to 1,000 (names suffixed), all with the `hpa` plugin.
fn thousand_services() -> PolicySet {
    let mut sets = sim::demo::policy_sets().expect("demo policies");
    let base = sets.remove(0);
    let services = (0..SERVICES)
        .map(|i| {
            let mut setup = base.services[i % base.services.len()].clone();
            setup.key.name = format!("{}-{i:04}", setup.key.name);
            setup
        })
        .collect();
    PolicySet { label: "hpa x1000".into(), services }
}

/// One tick as `Fleet::tick` does it, but deciding with the natively compiled `hpa` policy.
async fn native_tick(
    fleet: &Fleet,
    memories: &mut [ballast::decision::ServiceMemory],
    cluster: &RefCell<SimCluster>,
    now_ms: u64,
) {
    let list: Vec<_> = fleet.services.iter().map(|(k, s)| (k, &s.spec)).collect();
    let mut observations = SimHandle(cluster).observe(&list, now_ms).await;
    for ((key, service), memory) in fleet.services.iter().zip(memories) {
        let state = SimHandle(cluster).read(key, &service.spec).await.expect("simulated service");
        let observation = observations.remove(key).unwrap_or_default();
        let at = Moment { now_ms, current: state.current, ready: state.ready };
        let input = policy_input(key, &service.spec, service.config_json(), memory, &observation, at);
        let decision = hpa::decide(&to_sdk(&input)).expect("native hpa decides");
        let clamp = ClampInput {
            current: state.current,
            desired: decision.replicas,
            min: service.spec.min_replicas,
            max: service.spec.max_replicas,
            behavior: service.spec.behavior.as_ref(),
            now_ms,
        };
        let outcome = clamps::clamp(&clamp, &mut memory.history);
        if outcome.replicas != state.current {
            SimHandle(cluster).write(key, &service.spec, outcome.replicas).await.expect("simulated service");
            memory.record_scale(&service.spec, state.current, outcome.replicas, now_ms);
        }
    }
}

/// The host's input, as the SDK's (guest-side) types.
fn to_sdk(input: &ballast::runtime::PolicyInput) -> sdk::PolicyInput {
    let o = &input.observations;
    sdk::PolicyInput {
        service: sdk::ServiceId { namespace: input.service.namespace.clone(), name: input.service.name.clone() },
        now_ms: input.now_ms,
        current_replicas: input.current_replicas,
        ready_replicas: input.ready_replicas,
        min_replicas: input.min_replicas,
        max_replicas: input.max_replicas,
        config: input.config.clone(),
        state: input.state.clone(),
        observations: sdk::Observations {
            gpu_duty_cycle_percent: o.gpu_duty_cycle_percent,
            cpu_percent_of_request: o.cpu_percent_of_request,
            memory_percent_of_request: o.memory_percent_of_request,
            queue: o.queue.map(|q| sdk::QueueCounts {
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
            custom: o.custom.iter().map(|c| sdk::CustomMetric { name: c.name.clone(), value: c.value }).collect(),
        },
    }
}
