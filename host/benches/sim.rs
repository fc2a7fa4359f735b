//! Simulator speed: one simulated day of the five model services, and one tick of 1,000 services with plugin
//! calls, against the same tick deciding with the `hpa` policy compiled natively (no wasm) as the baseline.
//!
//! Run: cargo bench -p ballast --bench sim [-- day|tick] (both parts without a filter)

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast::autoscaler::{Fleet, ManagedService, Observer, ScaleTarget, load_plugin};
use ballast::clamps::{self, ClampInput};
use ballast::decision::{Moment, policy_input};
use ballast::runtime::PolicyEngine;
use ballast::sim::{self, PolicySet, SimCluster, SimHandle, SimOptions, Trace};

mod common;

#[path = "common/quick.rs"]
mod quick;

const SERVICES: usize = 1000;
/// Ticks of 15 simulated seconds each (the steady trace is an hour long).
const TICKS: u64 = 101;
/// Ticks, and simulated seconds of the day, when the benchmark only shows it works (see [`quick`]).
const QUICK_TICKS: u64 = 3;
const QUICK_DAY_S: u64 = 3600;

fn main() {
    // cargo passes `--bench`; any other argument picks the parts to run.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wanted = |part: &str| filters.is_empty() || filters.iter().any(|f| f == part);
    let engine = sim::run::engine(sim::run::limits()).expect("policy engine");
    if wanted("day") {
        day(&engine);
    }
    if wanted("tick") {
        tick(&engine);
    }
}

/// One simulated day of the demo's policy sets.
fn day(engine: &Arc<PolicyEngine>) {
    let trace = Trace::from_arg("builtin:day").expect("built-in trace");
    let duration_s = if quick::quick() { QUICK_DAY_S } else { 86_400 };
    println!("== {duration_s} steps of 1 s of the built-in day, five model services ==");
    for set in sim::demo::policy_sets().expect("demo policies") {
        let started = Instant::now();
        let options = SimOptions { duration_s, ..SimOptions::default() };
        let result = sim::run(engine, &set, &trace, options, &mut ()).expect("simulation");
        let seconds = started.elapsed().as_secs_f64();
        let pod_hours: f64 = result.summaries.iter().map(|s| s.pod_hours).sum();
        println!(
            "{:>12}: {seconds:.2} s wall ({:.0}x real time), {pod_hours:.1} pod-hours",
            set.label,
            duration_s as f64 / seconds
        );
    }
}

/// One tick of 1,000 services, with wasm plugin calls and with the policy compiled natively.
fn tick(engine: &Arc<PolicyEngine>) {
    let steady = Trace::from_arg("builtin:steady").expect("built-in trace");
    let ticks = if quick::quick() { QUICK_TICKS } else { TICKS };
    println!("== one tick of {SERVICES} services (observe, decide, clamp, scale), mean of {ticks} ticks ==");
    let set = thousand_services();
    let cluster = RefCell::new(SimCluster::new(&set.services, 1));
    let mut fleet = Fleet::default();
    for setup in &set.services {
        let plugin =
            load_plugin(engine, &setup.key, &setup.spec, |ns, name| set.config_map(ns, name)).expect("hpa plugin");
        fleet.services.insert(setup.key.clone(), ManagedService::new(setup.spec.clone(), plugin));
    }
    let arrivals: Vec<Vec<u64>> = set.services.iter().map(|s| steady.arrivals(s, 3600, 1).collect()).collect();
    let step = |now_s: u64| {
        let mut c = cluster.borrow_mut();
        for ((_, service), arrivals) in c.services.iter_mut().zip(&arrivals) {
            service.step(now_s * 1000, 15_000, arrivals[now_s as usize..now_s as usize + 15].iter().sum());
        }
        c.now_ms = (now_s + 15) * 1000;
    };
    // Driven by a plain executor, as `ballast simulate` is: plugin calls run on this thread, whose CPU time is
    // measured. Warm-up: instantiate every plugin (first calls) and fill the queues.
    let start_s = 0;
    futures::executor::block_on(fleet.tick(&mut SimHandle(&cluster), &mut SimHandle(&cluster), start_s * 1000));

    // Time on the CPU, and wall time: on a shared machine the first is what one core costs.
    let (mut wasm, mut wasm_wall) = (Duration::ZERO, Duration::ZERO);
    let (mut native, mut native_wall) = (Duration::ZERO, Duration::ZERO);
    let mut native_fleet_memory: Vec<_> = fleet.services.values().map(|s| s.memory.clone()).collect();
    for tick in 0..ticks {
        let now_s = start_s + 15 * tick;
        step(now_s);
        let now_ms = (now_s + 15) * 1000;

        // Which goes first alternates, so neither always finds the data they share warmed by the other.
        let turns = if tick % 2 == 0 { [true, false] } else { [false, true] };
        for wasm_turn in turns {
            let (started, cpu) = (Instant::now(), thread_cpu_time());
            if wasm_turn {
                let results =
                    futures::executor::block_on(fleet.tick(&mut SimHandle(&cluster), &mut SimHandle(&cluster), now_ms));
                (wasm, wasm_wall) = (wasm + (thread_cpu_time() - cpu), wasm_wall + started.elapsed());
                assert!(results.iter().all(|r| r.as_ref().is_ok_and(|t| t.record.failure().is_none())));
            } else {
                // Baseline: the same observe/read/clamp/write path with the policy as native Rust (its own
                // decision memory, so the two never share stabilization history).
                futures::executor::block_on(native_tick(&fleet, &mut native_fleet_memory, &cluster, now_ms));
                (native, native_wall) = (native + (thread_cpu_time() - cpu), native_wall + started.elapsed());
            }
        }
    }
    let per_tick = |total: Duration| total.as_secs_f64() * 1000.0 / ticks as f64;
    let report = |what: &str, cpu: Duration, wall: Duration| {
        let per_service = per_tick(cpu) * 1000.0 / SERVICES as f64;
        println!(
            "{what:>15}: {:.2} ms CPU per tick ({per_service:.1} us per service), {:.2} ms wall",
            per_tick(cpu),
            per_tick(wall)
        );
    };
    report("wasm plugins", wasm, wasm_wall);
    report("native policy", native, native_wall);
    println!(
        "          ratio: {:.2}x CPU, {:.2}x wall (target: at most 10 ms CPU per tick)",
        wasm.as_secs_f64() / native.as_secs_f64(),
        wasm_wall.as_secs_f64() / native_wall.as_secs_f64()
    );
}

/// Time this thread has spent on a CPU, to the nanosecond (`CLOCK_THREAD_CPUTIME_ID` brings the running thread's
/// account up to date when read; `/proc/thread-self/schedstat`, read before, moved only at scheduler ticks). Other
/// processes on a shared machine stretch wall time, not this.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec for the call to write.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The services of the demo, repeated to 1,000 (names suffixed), all with the `hpa` plugin (from its shipped
/// ConfigMap).
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
    PolicySet { label: "hpa x1000".into(), services, config_maps: base.config_maps, pipeline: base.pipeline }
}

/// One tick as `Fleet::tick` does it, but deciding with the natively compiled `hpa` policy.
async fn native_tick(
    fleet: &Fleet,
    memories: &mut [ballast::decision::ServiceMemory],
    cluster: &RefCell<SimCluster>,
    now_ms: u64,
) {
    let list: Vec<_> = fleet.services.iter().map(|(k, s)| (k, s.spec())).collect();
    let observations = SimHandle(cluster).observe(&list, now_ms).await;
    for (((key, service), memory), observation) in fleet.services.iter().zip(memories).zip(observations) {
        let state = SimHandle(cluster).read(key, service.spec()).await.expect("simulated service");
        let at = Moment { now_ms, current: state.current, ready: state.ready };
        let input = policy_input(key, service.spec(), service.decider.config_json(), memory, &observation, at);
        let decision = hpa::decide(&common::to_sdk(&input)).expect("native hpa decides");
        let clamp = ClampInput {
            current: state.current,
            desired: decision.replicas,
            min: service.spec().min_replicas,
            max: service.spec().max_replicas,
            behavior: service.spec().behavior.as_ref(),
            now_ms,
        };
        let outcome = clamps::clamp(&clamp, &mut memory.history);
        if outcome.replicas != state.current {
            SimHandle(cluster).write(key, service.spec(), outcome.replicas).await.expect("simulated service");
            memory.record_scale(service.spec(), state.current, outcome.replicas, now_ms);
        }
    }
}
