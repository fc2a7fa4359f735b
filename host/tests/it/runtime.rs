//! The wasm policy runtime against real components built from plugins/ and deliberately hostile test plugins.

use std::sync::Arc;
use std::time::Duration;

use ballast::runtime::{Plugin, PluginFailure, PolicyEngine, PolicyInput, QueueCounts, RuntimeLimits, World};
use ballast::testing::{self, InputBuilder};

fn plugin_bytes(file: &str) -> Vec<u8> {
    ballast_test_plugins::read(file)
}

fn engine() -> Arc<PolicyEngine> {
    testing::engine(testing::limits(16))
}

fn input(config: &str) -> PolicyInput {
    let queue = QueueCounts { completed_since_last: Some(5), ..testing::queue(30, 3) };
    InputBuilder::new(config).gpu(95.0).cpu(40.0).queue(queue).build()
}

fn hostile(engine: &Arc<PolicyEngine>) -> Plugin {
    let compiled = engine.load("hostile.wasm", &plugin_bytes("hostile.wasm")).unwrap();
    Plugin::new(engine.clone(), compiled)
}

#[test]
fn hpa_plugin_decides_like_the_native_code() {
    let engine = engine();
    let compiled = engine.load("hpa.wasm", &plugin_bytes("hpa.wasm")).unwrap();
    let mut plugin = Plugin::new(engine, compiled);
    let cfg = r#"{"gpuUtilization": 80, "cpuUtilization": 70, "jobsPerPod": 5}"#;
    let outcome = plugin.decide(&input(cfg));
    let decision = outcome.result.unwrap();
    // queue: 33 jobs / 5 per pod = 7; gpu: ceil(3 * 95/80) = 4; cpu: ceil(3 * 40/70) = 2.
    assert_eq!(decision.replicas, 7, "{}", decision.reason);
    let names: Vec<_> = decision.proposals.iter().map(|p| (p.metric.as_str(), p.replicas)).collect();
    assert_eq!(names, [("gpu", 4), ("cpu", 2), ("queue", 7)]);
    // The reused instance gives the same answer again.
    assert_eq!(plugin.decide(&input(cfg)).result.unwrap(), decision);
}

#[test]
fn a_paused_queue_reaches_a_0_2_plugin_and_a_0_1_plugin_still_loads_and_runs() {
    let engine = engine();
    let hpa = engine.load("hpa.wasm", &plugin_bytes("hpa.wasm")).unwrap();
    assert_eq!(hpa.world(), World::V0_2);
    let mut paused = input(r#"{"gpuUtilization": 80, "jobsPerPod": 5}"#);
    paused.observations.gpu_duty_cycle_percent = Some(10.0);
    if let Some(queue) = &mut paused.observations.queue {
        queue.is_paused = true;
    }
    // 33 jobs would ask for 7 pods, and an idle GPU for 1; the paused queue's jobs hold the 3 there are.
    let decision = Plugin::new(engine.clone(), hpa.clone()).decide(&paused).result.unwrap();
    assert_eq!(decision.replicas, 3, "{}", decision.reason);
    assert!(decision.reason.starts_with("queue-paused proposes 3"), "{}", decision.reason);

    // A plugin built against the frozen 0.1 world: the same input, less what 0.2 added; its log() arrives too.
    let old = engine.load("world_0_1.wasm", &plugin_bytes("world_0_1.wasm")).unwrap();
    assert_eq!(old.world(), World::V0_1);
    let (imports, exports) = engine.interface(&old);
    assert!(exports.contains(&"ballast:policy/policy@0.1.0".to_owned()), "{exports:?}");
    assert!(imports.contains(&"ballast:policy/host@0.1.0".to_owned()), "{imports:?}");
    let mut plugin = Plugin::new(engine.clone(), old);
    paused.state = Some(b"kept".to_vec());
    for _ in 0..2 {
        let outcome = plugin.decide(&paused);
        let decision = outcome.result.unwrap();
        assert_eq!(decision.replicas, 7, "ceil(33 / 5): {}", decision.reason);
        assert_eq!(decision.reason, "world 0.1: 33 jobs (waiting 30) at 5 per pod");
        assert_eq!(decision.state.as_deref(), Some(&b"kept"[..]), "the state goes through both ways");
        assert_eq!(outcome.logs.len(), 1, "{:?}", outcome.logs);
        assert_eq!((outcome.logs[0].level, outcome.logs[0].message.as_str()), ("info", "0.1 plugin saw 33 jobs"));
    }
    paused.observations.queue = None;
    let Err(PluginFailure::Error(said)) = plugin.decide(&paused).result else { panic!("a 0.1 policy error") };
    assert_eq!(said, "insufficient data: no queue counts");
}

#[test]
fn infinite_loop_times_out_at_the_default_deadline() {
    let engine = testing::engine(RuntimeLimits { max_instances: 4, ..RuntimeLimits::default() });
    let mut plugin = hostile(&engine);
    let outcome = plugin.decide(&input(r#"{"mode": "loop"}"#));
    assert_eq!(outcome.result, Err(PluginFailure::Timeout(Duration::from_millis(10))));
}

#[test]
fn unbounded_allocation_hits_the_memory_cap() {
    let engine = engine();
    let mut plugin = hostile(&engine);
    let outcome = plugin.decide(&input(r#"{"mode": "alloc"}"#));
    assert_eq!(outcome.result, Err(PluginFailure::MemoryLimit(64)));
}

#[test]
fn trap_and_panic_are_traps_and_the_instance_is_replaced() {
    let engine = engine();
    let mut plugin = hostile(&engine);
    for mode in ["trap", "panic"] {
        let outcome = plugin.decide(&input(&format!(r#"{{"mode": "{mode}"}}"#)));
        assert!(matches!(outcome.result, Err(PluginFailure::Trap(_))), "{mode}: {:?}", outcome.result);
        // The next call runs on a fresh instance and works.
        let again = plugin.decide(&input(r#"{"mode": "echo-state"}"#));
        assert_eq!(again.result.unwrap().replicas, 1, "a fresh instance starts from no state");
    }
}

/// The replica counts `count-calls` answers: each is the number of calls its instance has seen.
fn count_calls(plugin: &mut Plugin) -> u32 {
    let outcome = plugin.decide(&input(r#"{"mode": "count-calls"}"#));
    outcome.result.expect("count-calls decides").replicas
}

#[test]
fn services_of_one_plugin_keep_their_instances_apart() {
    let engine = engine();
    let (mut a, mut b) = (hostile(&engine), hostile(&engine));
    let mut plugins = [&mut a, &mut b];
    let seen: Vec<u32> = [0, 0, 1, 0, 1].into_iter().map(|i| count_calls(plugins[i])).collect();
    assert_eq!(seen, [1, 2, 1, 3, 2], "each instance counts only its own calls");
}

#[test]
fn a_service_whose_plugin_traps_does_not_disturb_its_siblings() {
    let engine = testing::engine(RuntimeLimits { max_instances: 4, ..engine().limits().clone() });
    let (mut failing, mut sibling) = (hostile(&engine), hostile(&engine));
    assert_eq!(count_calls(&mut sibling), 1);
    let mut sibling_counts = Vec::new();
    for _ in 0..40 {
        let trap = failing.decide(&input(r#"{"mode": "trap"}"#));
        assert!(matches!(trap.result, Err(PluginFailure::Trap(_))), "{:?}", trap.result);
        assert_eq!(failing.decide(&input(r#"{"mode": "echo-state"}"#)).result.unwrap().replicas, 1, "fresh instance");
        sibling_counts.push(count_calls(&mut sibling));
    }
    // The first trap cost the sibling its instance (a trap stops a whole store); the failing plugin then runs
    // apart, and the sibling's instance lives on through the other 39, counting on.
    assert_eq!(sibling_counts, (1..=40).collect::<Vec<_>>());
}

#[test]
fn a_plugin_that_trapped_rejoins_the_shared_store_after_enough_good_calls() {
    let engine = testing::engine(RuntimeLimits { max_instances: 4, ..engine().limits().clone() });
    let (mut once, mut sibling) = (hostile(&engine), hostile(&engine));
    let good = |plugin: &mut Plugin| {
        assert_eq!(plugin.decide(&input(r#"{"mode": "echo-state"}"#)).result.unwrap().replicas, 1)
    };
    let trap = |plugin: &mut Plugin| {
        assert!(matches!(plugin.decide(&input(r#"{"mode": "trap"}"#)).result, Err(PluginFailure::Trap(_))))
    };
    // Good calls, apart until the last of them.
    let rejoins_after = |plugin: &mut Plugin, calls: usize| {
        for call in 1..=calls {
            good(plugin);
            assert_eq!(plugin.isolated(), call < calls, "after good call {call} of {calls}");
        }
    };
    good(&mut once);
    assert!(!once.isolated(), "a plugin starts in the shared store");
    // The first isolation lasts 64 good calls in a row; a trap there starts the count again.
    trap(&mut once);
    for _ in 0..10 {
        good(&mut once);
    }
    trap(&mut once);
    rejoins_after(&mut once, 64);
    assert_eq!(count_calls(&mut sibling), 1);
    good(&mut once);
    assert_eq!(count_calls(&mut sibling), 2, "the sibling's instance lives on beside the plugin that rejoined");
    // Trapping in the shared store again: apart twice as long.
    trap(&mut once);
    rejoins_after(&mut once, 128);
}

#[test]
fn instances_given_up_free_their_pool_slots() {
    // Four slots: without the instances of dropped plugins and memory-cap failures being freed, the fifth
    // instantiation would find the pool full.
    let engine = testing::engine(RuntimeLimits { max_instances: 4, ..engine().limits().clone() });
    let mut survivor = hostile(&engine);
    for _ in 0..20 {
        assert_eq!(count_calls(&mut hostile(&engine)), 1, "a new service gets a fresh instance");
        let hog = hostile(&engine).decide(&input(r#"{"mode": "alloc"}"#));
        assert_eq!(hog.result, Err(PluginFailure::MemoryLimit(64)));
        assert!(count_calls(&mut survivor) >= 1);
    }
}

#[test]
fn error_result_is_reported_with_the_plugins_words() {
    let engine = engine();
    let outcome = hostile(&engine).decide(&input(r#"{"mode": "error"}"#));
    assert_eq!(
        outcome.result,
        Err(PluginFailure::Error("internal error: hostile plugin returns an error on purpose".into()))
    );
}

#[test]
fn absurd_replica_counts_and_oversized_state_are_nonsense() {
    let engine = engine();
    let mut plugin = hostile(&engine);
    let Err(PluginFailure::Nonsense(why)) = plugin.decide(&input(r#"{"mode": "max"}"#)).result else {
        panic!("u32::MAX replicas must be refused");
    };
    assert!(why.contains("4294967295"), "{why}");
    let big = plugin.decide(&input(r#"{"mode": "big-state", "state_bytes": 100000}"#));
    assert!(matches!(big.result, Err(PluginFailure::Nonsense(ref w)) if w.contains("state blob")), "{:?}", big.result);
}

#[test]
fn log_lines_reach_the_host() {
    let engine = engine();
    let outcome = hostile(&engine).decide(&input(r#"{"mode": "log"}"#));
    assert!(outcome.result.is_ok());
    assert_eq!(outcome.logs.len(), 1);
    assert_eq!(outcome.logs[0].level, "warn");
    assert_eq!(outcome.logs[0].message, "hostile plugin says hello");
}

#[test]
fn wrong_world_is_refused_naming_the_missing_export() {
    let engine = engine();
    let err = engine.load("wrong_world.wasm", &plugin_bytes("wrong_world.wasm")).unwrap_err().to_string();
    assert!(err.contains("wrong_world.wasm"), "{err}");
    assert!(err.contains("ballast:policy/policy@0.2.0") && err.contains("ballast:policy/policy@0.1.0"), "{err}");
    assert!(err.contains("test:wrong/policy@0.1.0"), "names what it does export: {err}");
}

#[test]
fn garbage_bytes_and_pin_mismatch_are_refused() {
    let engine = engine();
    let err = engine.load("junk", b"not wasm at all").unwrap_err().to_string();
    assert!(err.contains("not a valid WebAssembly component"), "{err}");
    let hpa = plugin_bytes("hpa.wasm");
    let digest = ballast::runtime::digest(&hpa);
    let err = engine.load_digested("hpa.wasm", &hpa, &digest, Some(&"0".repeat(64))).unwrap_err().to_string();
    assert!(err.contains("sha256 is"), "{err}");
    let pinned = engine.load_digested("hpa.wasm", &hpa, &digest, Some(&digest.to_uppercase())).unwrap();
    assert_eq!(*pinned.digest, digest);
}

#[test]
fn compiled_components_are_cached_by_digest_in_memory_and_on_disk() {
    let dir = std::env::temp_dir().join(format!("ballast-cache-{}", std::process::id()));
    let limits = RuntimeLimits { max_instances: 4, cache_dir: Some(dir.clone()), ..RuntimeLimits::default() };
    let hpa = plugin_bytes("hpa.wasm");
    let first = testing::engine(limits.clone()).load("hpa", &hpa).unwrap();
    assert!(first.compile_time > Duration::ZERO);
    let digest = ballast::runtime::digest(&hpa);
    assert!(dir.join(format!("{digest}.cwasm")).exists());
    // A new engine (a restarted host) takes it from disk without compiling.
    let engine = testing::engine(limits);
    let again = engine.load("hpa", &hpa).unwrap();
    assert_eq!(again.compile_time, Duration::ZERO);
    assert!(Arc::ptr_eq(&again, &engine.load("hpa", &hpa).unwrap()), "second load is the in-memory entry");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn plugins_see_no_clock_or_randomness() {
    // Two fresh instances given the same input return byte-identical decisions and state.
    let engine = engine();
    let mut a = hostile(&engine);
    let mut b = hostile(&engine);
    let cfg = r#"{"mode": "echo-state"}"#;
    assert_eq!(a.decide(&input(cfg)).result, b.decide(&input(cfg)).result);
}

/// The outcome of one call of the hostile plugin in `mode` (with more config fields in `extra`).
fn hostile_call(engine: &Arc<PolicyEngine>, mode: &str, extra: &str) -> ballast::runtime::CallOutcome {
    hostile(engine).decide(&input(&format!(r#"{{"mode": "{mode}"{extra}}}"#)))
}

fn lines(outcome: &ballast::runtime::CallOutcome) -> Vec<(&'static str, &str)> {
    outcome.logs.iter().map(|l| (l.level, l.message.as_str())).collect()
}

#[test]
fn printed_output_becomes_log_lines() {
    let outcome = hostile_call(&engine(), "print", "");
    assert_eq!(outcome.result.as_ref().unwrap().reason, "printed two lines");
    assert_eq!(
        lines(&outcome),
        [("stdout", "hostile plugin prints to stdout"), ("stderr", "hostile plugin prints to stderr")]
    );
}

#[test]
fn a_sleep_returns_at_once_and_sockets_are_refused() {
    let engine = engine();
    let slept = hostile_call(&engine, "sleep", "");
    assert_eq!(slept.result.unwrap().reason, "slept 3 s");
    // The plugin asked for 3 s; the call's deadline is 1 s, and the sleep must not have happened at all.
    assert!(slept.duration < Duration::from_millis(900), "the sleep blocked for {:?}", slept.duration);
    let socket = hostile_call(&engine, "socket", "");
    assert_eq!(socket.result.unwrap().reason, "tcp connect ok: false, udp bind ok: false");
}

#[test]
fn a_plugin_that_prints_or_sleeps_inside_an_async_runtime_does_not_take_it_down() {
    // wasmtime-wasi's blocking calls panic on a thread that runs async tasks: the control loop's plugin calls
    // must go where blocking is allowed, whatever runtime the caller is in.
    for flavor in ["multi_thread", "current_thread"] {
        let runtime = match flavor {
            "multi_thread" => tokio::runtime::Builder::new_multi_thread().worker_threads(2).build(),
            _ => tokio::runtime::Builder::new_current_thread().build(),
        }
        .unwrap();
        let engine = engine();
        let outcomes = runtime.block_on(async {
            ballast::runtime::off_async(|| {
                ["print", "sleep", "socket"].map(|mode| hostile_call(&engine, mode, "").result.map(|d| d.reason))
            })
        });
        assert!(outcomes.iter().all(Result::is_ok), "{flavor}: {outcomes:?}");
    }
}

#[test]
fn output_over_a_cap_is_nonsense_and_at_the_cap_is_fine() {
    let engine = engine();
    let limits = engine.limits().clone();
    let nonsense = |outcome: ballast::runtime::CallOutcome| matches!(outcome.result, Err(PluginFailure::Nonsense(_)));
    let size = |n: usize| format!(r#", "size": {n}"#);
    for (mode, cap) in [
        ("big-reason", limits.max_reason_bytes),
        ("many-proposals", limits.max_proposals),
        ("long-proposal-name", limits.max_proposal_name_bytes),
    ] {
        assert!(hostile_call(&engine, mode, &size(cap)).result.is_ok(), "{mode} at its cap of {cap}");
        assert!(nonsense(hostile_call(&engine, mode, &size(cap + 1))), "{mode} just over its cap of {cap}");
    }
    let state = |n: usize| format!(r#", "state_bytes": {n}"#);
    assert!(hostile_call(&engine, "big-state", &state(limits.max_state_bytes)).result.is_ok());
    assert!(nonsense(hostile_call(&engine, "big-state", &state(limits.max_state_bytes + 1))));
    // A reason of 16 MiB (a quarter of the memory cap) is refused and nothing of it is kept.
    let huge = hostile_call(&engine, "big-reason", &size(16 << 20));
    assert!(matches!(&huge.result, Err(PluginFailure::Nonsense(why)) if why.len() < 200), "{:?}", huge.result);
}

#[test]
fn log_and_output_floods_are_capped_per_call() {
    let engine = engine();
    let limits = engine.limits().clone();
    for mode in ["log-flood", "print-flood"] {
        let outcome = hostile_call(&engine, mode, "");
        assert!(outcome.result.is_ok(), "{mode}: {:?}", outcome.result);
        let (kept, note) = outcome.logs.split_at(outcome.logs.len() - 1);
        assert!(kept.len() <= limits.max_log_lines, "{mode}: {} lines", kept.len());
        let bytes: usize = kept.iter().map(|l| l.message.len()).sum();
        assert!(bytes <= limits.max_log_bytes, "{mode}: {bytes} bytes");
        assert!(kept.iter().all(|l| l.message.len() <= limits.max_log_line));
        assert!(note[0].message.contains("more lines dropped"), "{mode}: {:?}", note[0]);
    }
}

#[test]
fn a_panic_says_why_and_logs_survive_a_trap() {
    let engine = engine();
    let panicked = hostile_call(&engine, "panic", "");
    let Err(PluginFailure::Trap(why)) = &panicked.result else { panic!("{:?}", panicked.result) };
    assert!(why.contains("hostile plugin panics on purpose"), "the panic message is the failure's: {why}");
    let trapped = hostile_call(&engine, "log-then-trap", "");
    assert!(matches!(&trapped.result, Err(PluginFailure::Trap(why)) if why.contains("about to abort")));
    assert_eq!(lines(&trapped), [("error", "about to abort")]);
}

#[test]
fn control_characters_from_a_plugin_are_escaped() {
    let outcome = hostile_call(&engine(), "escape", "");
    let reason = outcome.result.as_ref().unwrap().reason.clone();
    assert_eq!(reason, "\\u{1b}[2J\\u{1b}[31mred\\nstt  3  3  forged row");
    assert_eq!(lines(&outcome), [("info", "\\u{1b}[2J\\u{1b}[Hcleared your terminal\\nforged line")]);
}

#[test]
fn fresh_instances_make_each_decision_depend_only_on_its_input() {
    let limits = RuntimeLimits { fresh_instance_per_call: true, ..engine().limits().clone() };
    let engine = testing::engine(limits);
    let mut plugin = hostile(&engine);
    let seen: Vec<u32> = (0..3).map(|_| count_calls(&mut plugin)).collect();
    assert_eq!(seen, [1, 1, 1], "no call sees what an earlier one left in memory");
}

#[test]
fn failure_kinds_have_one_name_each() {
    use ballast::runtime::FailureKind;
    let labels: Vec<&str> = FailureKind::ALL.iter().map(|k| k.label()).collect();
    assert_eq!(labels, ["timeout", "memory", "trap", "instantiate", "error", "nonsense"]);
    let engine = engine();
    let kinds: Vec<FailureKind> = [("alloc", ""), ("trap", ""), ("error", ""), ("max", "")]
        .iter()
        .map(|(mode, extra)| hostile_call(&engine, mode, extra).result.unwrap_err().kind())
        .collect();
    assert_eq!(kinds, [FailureKind::Memory, FailureKind::Trap, FailureKind::Error, FailureKind::Nonsense]);
}

/// A component of `modules` core modules, each instantiated once with a memory of `pages` 64 KiB pages.
fn many_memories(modules: usize, pages: u32) -> Vec<u8> {
    let mut text = String::from("(component\n");
    for i in 0..modules {
        text.push_str(&format!("  (core module $m{i} (memory {pages}))\n  (core instance (instantiate $m{i}))\n"));
    }
    text.push(')');
    wat::parse_str(&text).expect("valid component text")
}

#[test]
fn a_component_declaring_more_memories_than_one_plugin_may_is_refused_and_starves_no_one() {
    let limits = RuntimeLimits { max_instances: 4, ..engine().limits().clone() };
    let engine = testing::engine(limits.clone());
    // The attacks: 40 memories of 64 MiB each, and enough to exhaust a shared pool.
    for (modules, pages) in [(40, 1024), (990, 1), (limits.max_memories as usize + 1, 1)] {
        let err = engine.load("hog", &many_memories(modules, pages)).unwrap_err().to_string();
        assert!(err.contains("hog") && err.contains("exceeds the configured maximum"), "{modules} memories: {err}");
    }
    let over = limits.max_memories + 1;
    let err = engine.load("hog", &many_memories(over as usize, 1)).unwrap_err().to_string();
    let expected =
        format!("{over} Wasm linear memories, which exceeds the configured maximum of {}", limits.max_memories);
    assert!(err.contains(&expected), "{err}");
    // Within the budget, a component's load goes on to the world check (it exports no policy).
    let err = engine.load("fits", &many_memories(limits.max_memories as usize, 1)).unwrap_err().to_string();
    assert!(err.contains("does not export"), "{err}");
    // Every slot the pool has is still there for well-behaved plugins.
    let compiled = engine.load("hpa.wasm", &plugin_bytes("hpa.wasm")).unwrap();
    let cfg = r#"{"jobsPerPod": 5}"#;
    let mut plugins: Vec<Plugin> = (0..4).map(|_| Plugin::new(engine.clone(), compiled.clone())).collect();
    for plugin in &mut plugins {
        assert_eq!(plugin.decide(&input(cfg)).result.unwrap().replicas, 7);
    }
}

#[test]
fn an_oversized_component_is_refused_before_it_is_parsed() {
    let limits = RuntimeLimits { max_component_bytes: 1 << 20, ..engine().limits().clone() };
    let engine = testing::engine(limits);
    let err = engine.load("big", &vec![0u8; (1 << 20) + 1]).unwrap_err().to_string();
    assert!(err.contains("over the 1048576-byte cap"), "{err}");
}

/// A component of `functions` functions, each `instructions` constants dropped: small when gzipped, costly to
/// compile.
fn compile_bomb(functions: usize, instructions: usize) -> Vec<u8> {
    let func = format!("(func {})", "i32.const 1 drop ".repeat(instructions));
    let text = format!("(component (core module {}))", vec![func; functions].join(" "));
    wat::parse_str(&text).expect("valid component text")
}

#[test]
fn a_compile_bomb_dies_in_the_compile_child_and_the_host_goes_on() {
    let compiler = Some(std::path::PathBuf::from(env!("CARGO_BIN_EXE_ballast")));
    let limits = RuntimeLimits {
        compiler,
        compile_memory_bytes: 512 << 20,
        compile_deadline: Duration::from_secs(60),
        ..engine().limits().clone()
    };
    let engine = testing::engine(limits);
    let bomb = compile_bomb(8, 2_000_000);
    let err = engine.load("bomb.wasm", &bomb).unwrap_err().to_string();
    assert!(err.contains("bomb.wasm") && err.contains("512 MiB"), "{err}");
    // The same engine compiles and runs a real plugin through the child.
    let compiled = engine.load("hpa.wasm", &plugin_bytes("hpa.wasm")).unwrap();
    let decided = Plugin::new(engine.clone(), compiled).decide(&input(r#"{"jobsPerPod": 5}"#));
    assert_eq!(decided.result.unwrap().replicas, 7);
}
