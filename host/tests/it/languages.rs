//! The same policy in three languages, through the production runtime: the Rust `hpa` plugin and its JavaScript
//! (plugins/hpa-js, QuickJS) and Python (plugins/hpa-py, CPython) builds must decide identically on 1,000 seeded
//! random inputs: replicas, reason, proposals, state and error variant. And isolation holds for every language: the
//! JavaScript and Python hostile plugins end in the right failure kind and the host keeps working.
//!
//! The JavaScript and Python components are built from source by scripts/test.sh before the tests (see
//! `plugin_bytes` for the command).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ballast::runtime::{
    CustomMetric, Decision, Observations, Plugin, PluginFailure, PolicyEngine, PolicyInput, QueueCounts, RuntimeLimits,
    ServiceId,
};
use ballast::testing::{self, InputBuilder};

/// How each language's plugins are named in ballast_test_plugins::DIR, and the project they are built from.
const HPA: [(&str, &str, &str); 3] = [
    ("rust", "hpa.wasm", "plugins/hpa"),
    ("js", "hpa_js.wasm", "plugins/hpa-js"),
    ("python", "hpa_py.wasm", "plugins/hpa-py"),
];
const CASES: usize = 1000;
const SEED: u64 = 0x6261_6c6c_6173_7400;

fn plugin_bytes(file: &str, project: &str) -> Vec<u8> {
    let path = PathBuf::from(ballast_test_plugins::DIR).join(file);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. It is built from {project} by scripts/test.sh; build it alone with\n  \
             cargo run -p ballast -- plugin build {project} --out {}",
            path.display(),
            path.display()
        )
    })
}

/// An engine whose compiled components persist across test runs (the Python component takes ~20 s to compile).
/// Loads are serialized so that a second engine finds the first one's compilation on disk instead of redoing it.
fn engine(deadline: Duration) -> Arc<PolicyEngine> {
    let cache_dir = Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache"));
    testing::engine(RuntimeLimits { max_instances: 16, deadline, cache_dir, ..RuntimeLimits::default() })
}

fn load(engine: &Arc<PolicyEngine>, file: &str, project: &str) -> Plugin {
    static LOADING: Mutex<()> = Mutex::new(());
    let bytes = plugin_bytes(file, project);
    let _one_at_a_time = LOADING.lock().unwrap_or_else(|p| p.into_inner());
    Plugin::new(engine.clone(), engine.load(file, &bytes).unwrap())
}

/// SplitMix64: a seeded, dependency-free source of test inputs.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// A config number as people write them (integers, decimals, exponents) and, now and then, a full-precision
    /// f64 that tests correctly rounded parsing.
    fn config_number(&mut self, low: f64, high: f64) -> String {
        let x = low + self.unit() * (high - low);
        match self.below(5) {
            0 => format!("{}", x.round()),
            1 => format!("{x:.2}"),
            2 => format!("{}e{}", (x * 10.0).round(), -1),
            3 => format!("{x:?}"),
            _ => format!("{:.17e}", x),
        }
    }

    /// A metric reading: usually ordinary, sometimes out of the ordinary (NaN, infinite, negative, zero, huge).
    fn reading(&mut self, high: f64) -> f64 {
        match self.below(40) {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => -1.0,
            3 => 0.0,
            4 => 1e300,
            _ => self.unit() * high,
        }
    }

    fn maybe_reading(&mut self, high: f64) -> Option<f64> {
        self.chance(75).then(|| self.reading(high))
    }
}

const CUSTOM_NAMES: &[&str] = &["tokens", "sessions", "b", "a", "é", "🚀"];

/// A config: a random subset of targets, sometimes explicit nulls, sometimes invalid in one of the ways serde
/// refuses.
fn random_config(r: &mut Random) -> String {
    if r.chance(8) {
        return r
            .pick(&[
                r#"{"gpu": 80}"#,
                r#"{"gpuUtilization": "80"}"#,
                r#"{"gpuUtilization": 80, "gpuUtilization": 70}"#,
                r#"{"tolerance": null}"#,
                r#"{"custom": null}"#,
                r#"{"custom": {"tokens": null}}"#,
                r#"{"custom": [1]}"#,
                r#"{"gpuUtilization": 80,}"#,
                r#"{"gpuUtilization": 1e400}"#,
                r#"{"gpuUtilization": 08}"#,
                r#"{"gpuUtilization": NaN}"#,
                r#"{"gpuUtilization": true}"#,
                r#"{"custom": {"\ud800": 1}}"#,
                "[]",
                "null",
                "80",
                "{",
                "{} {}",
                r#"[80, null, 5]"#,
            ])
            .to_owned();
    }
    if r.chance(3) {
        // Valid but unusual: empty text (means `{}`), the struct as an array, escapes, duplicate custom names.
        return r
            .pick(&[
                "",
                " \n\t",
                "\u{a0}",
                "{}",
                r#"[80, null, null, 5, null, null]"#,
                r#"[80, 70, null, 5, null, null, {"tokens": 3}, 0.2]"#,
                r#"{"gpu\u0055tilization": 80, "jobsPerPod": 5}"#,
                r#"{"jobsPerPod": 5, "custom": {"tokens": 1, "tokens": 4}}"#,
                r#"{"gpuUtilization": -0, "cpuUtilization": 70}"#,
            ])
            .to_owned();
    }
    let mut fields = Vec::new();
    for (name, low, high) in [
        ("gpuUtilization", 30.0, 100.0),
        ("cpuUtilization", 30.0, 100.0),
        ("memoryUtilization", 30.0, 100.0),
        ("jobsPerPod", 0.5, 20.0),
        ("latencyP95Ms", 100.0, 5000.0),
        ("requestsPerPod", 0.1, 20.0),
    ] {
        if r.chance(45) {
            fields.push(format!(r#""{name}": {}"#, r.config_number(low, high)));
        } else if r.chance(5) {
            fields.push(format!(r#""{name}": null"#));
        }
    }
    if r.chance(25) {
        let entries: Vec<String> = (0..1 + r.below(3))
            .map(|_| format!(r#""{}": {}"#, r.pick(CUSTOM_NAMES), r.config_number(0.5, 10.0)))
            .collect();
        fields.push(format!(r#""custom": {{{}}}"#, entries.join(", ")));
    }
    if r.chance(30) {
        let tolerance = r.pick(&["0", "0.05", "0.1", "0.2", "1.5", "-0.1", "0.1000000000000000055511151231257827"]);
        fields.push(format!(r#""tolerance": {tolerance}"#));
    }
    // Shuffle: member order must not matter.
    for i in (1..fields.len()).rev() {
        fields.swap(i, r.below(i as u64 + 1) as usize);
    }
    format!("{{{}}}", fields.join(", "))
}

fn random_input(r: &mut Random) -> PolicyInput {
    // Now and then counts of 2^31 and more, which componentize-qjs passes through an i32 (see plugins/hpa-js/abi.js).
    let huge = [1 << 31, 3_000_000_000, u32::MAX - 1, u32::MAX];
    let current = if r.chance(2) { r.pick(&huge) } else { r.pick(&[0, 1, 2, 3, 4, 6, 8, 10, 20]) };
    let ready = if r.chance(20) { r.below(u64::from(current) + 3) as u32 } else { current };
    let min = 1 + r.below(3) as u32;
    let max = if r.chance(3) { r.pick(&huge) } else { r.pick(&[1, 2, 5, 8, 10, 30]) };
    let queue = r.chance(70).then(|| {
        let mut count = || match r.below(100) {
            0..3 => 1_000_000_000_000,
            3 => u64::MAX >> 13,
            _ => r.below(200),
        };
        QueueCounts {
            waiting: count(),
            prioritized: count(),
            paused: count(),
            active: count(),
            delayed: count(),
            failed: count(),
            waiting_children: count(),
            completed_since_last: None,
            is_paused: false,
        }
    });
    let custom = (0..r.below(3))
        .map(|_| CustomMetric { name: r.pick(CUSTOM_NAMES).to_owned(), value: r.reading(100.0) })
        .collect();
    let observations = Observations {
        gpu_duty_cycle_percent: r.maybe_reading(150.0),
        cpu_percent_of_request: r.maybe_reading(150.0),
        memory_percent_of_request: r.maybe_reading(150.0),
        queue,
        latency_p50_ms: r.maybe_reading(3000.0),
        latency_p95_ms: r.maybe_reading(9000.0),
        latency_p99_ms: r.maybe_reading(12000.0),
        request_rate: r.maybe_reading(50.0),
        custom,
    };
    PolicyInput {
        service: ServiceId { namespace: "ai-models".into(), name: "whisper-pyannote-stt".into() },
        now_ms: r.below(2_000_000_000_000),
        current_replicas: current,
        ready_replicas: ready,
        min_replicas: min,
        max_replicas: max,
        config: random_config(r),
        state: r.chance(10).then(|| vec![r.below(256) as u8; 3]),
        observations,
    }
}

/// What is compared: the whole decision, or the error's variant (the message is each language's own words).
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Decided(Decision),
    Refused { variant: String },
    Failed(String),
}

fn verdict(result: Result<Decision, PluginFailure>) -> Verdict {
    match result {
        Ok(decision) => Verdict::Decided(decision),
        Err(PluginFailure::Error(message)) => {
            Verdict::Refused { variant: message.split(':').next().unwrap_or_default().to_owned() }
        }
        Err(other) => Verdict::Failed(other.to_string()),
    }
}

/// The first case where `other` differs from `baseline`, described for a human.
fn first_difference(inputs: &[PolicyInput], baseline: (&str, &[Verdict]), other: (&str, &[Verdict])) -> Option<String> {
    let i = baseline.1.iter().zip(other.1).position(|(a, b)| a != b)?;
    let input = &inputs[i];
    let differing = baseline.1.iter().zip(other.1).filter(|(a, b)| a != b).count();
    Some(format!(
        "case {i} of {} (seed {SEED:#x}; {differing} cases differ in all) decides differently in {} and {}:\n  \
         config: {:?}\n  replicas: current {}, ready {}, min {}, max {}\n  observations: {:?}\n  {}: {:?}\n  {}: {:?}",
        inputs.len(),
        baseline.0,
        other.0,
        input.config,
        input.current_replicas,
        input.ready_replicas,
        input.min_replicas,
        input.max_replicas,
        input.observations,
        baseline.0,
        baseline.1[i],
        other.0,
        other.1[i],
    ))
}

#[test]
fn rust_javascript_and_python_hpa_decide_identically() {
    let engine = engine(Duration::from_secs(2));
    let mut r = Random(SEED);
    let inputs: Vec<PolicyInput> = (0..CASES).map(|_| random_input(&mut r)).collect();
    let runs: Vec<(&str, Vec<Verdict>)> = HPA
        .iter()
        .map(|(language, file, project)| {
            let mut plugin = load(&engine, file, project);
            (*language, inputs.iter().map(|input| verdict(plugin.decide(input).result)).collect())
        })
        .collect();
    let (rust, verdicts) = (&runs[0].0, &runs[0].1);

    // The inputs must reach every branch, or agreement proves little.
    let count =
        |f: &dyn Fn(&PolicyInput, &Verdict) -> bool| inputs.iter().zip(verdicts).filter(|(i, v)| f(i, v)).count();
    let decided = |v: &Verdict| match v {
        Verdict::Decided(d) => Some(d.clone()),
        _ => None,
    };
    let coverage = [
        ("invalid config", count(&|_, v| matches!(v, Verdict::Refused { variant } if variant == "invalid config"))),
        ("scale up", count(&|i, v| decided(v).is_some_and(|d| d.replicas > i.current_replicas))),
        ("scale down", count(&|i, v| decided(v).is_some_and(|d| d.replicas < i.current_replicas))),
        ("hold", count(&|i, v| decided(v).is_some_and(|d| d.replicas == i.current_replicas))),
        (
            "capped at max",
            count(&|_, v| decided(v).is_some_and(|d| d.proposals.iter().any(|p| p.replicas > d.replicas))),
        ),
        ("u32 of 2^31 or more", count(&|_, v| decided(v).is_some_and(|d| d.replicas >= 1 << 31))),
        (
            "saturated u32",
            count(&|_, v| decided(v).is_some_and(|d| d.proposals.iter().any(|p| p.replicas == u32::MAX))),
        ),
        ("no scale-down: missing", count(&|_, v| decided(v).is_some_and(|d| d.reason.contains("unavailable")))),
        ("nothing available", count(&|_, v| decided(v).is_some_and(|d| d.reason.starts_with("no configured")))),
        (
            "custom metric",
            count(&|_, v| {
                decided(v).is_some_and(|d| d.proposals.iter().any(|p| CUSTOM_NAMES.contains(&p.metric.as_str())))
            }),
        ),
        (
            "tie between metrics",
            count(&|_, v| {
                decided(v).is_some_and(|d| {
                    let best = d.proposals.iter().map(|p| p.replicas).max();
                    d.proposals.iter().filter(|p| Some(p.replicas) == best).count() > 1
                })
            }),
        ),
    ];
    println!("{CASES} random inputs; Rust verdicts: {coverage:?}");
    for (what, n) in coverage {
        assert!(n >= 5, "only {n} of {CASES} inputs reach `{what}`: the generator no longer exercises it");
    }
    assert!(!verdicts.iter().any(|v| matches!(v, Verdict::Failed(_))), "the Rust plugin failed on some input");

    let differences: Vec<String> = runs[1..]
        .iter()
        .filter_map(|(language, other)| first_difference(&inputs, (rust, verdicts), (language, other)))
        .collect();
    assert!(differences.is_empty(), "{}", differences.join("\n\n"));
}

#[test]
fn a_single_differing_case_is_reported_with_its_input_and_both_decisions() {
    let mut r = Random(SEED);
    let inputs: Vec<PolicyInput> = (0..3).map(|_| random_input(&mut r)).collect();
    let decision = |reason: &str| {
        Verdict::Decided(Decision { replicas: 3, reason: reason.into(), proposals: vec![], state: None })
    };
    let rust = vec![decision("gpu proposes 3 (largest of 1)"); 3];
    let mut js = rust.clone();
    js[1] = decision("gpu proposes 3 (largest of 2)");
    assert_eq!(first_difference(&inputs, ("rust", &rust), ("js", &rust)), None);
    let report = first_difference(&inputs, ("rust", &rust), ("js", &js)).expect("a difference");
    assert!(report.starts_with("case 1 of 3"), "{report}");
    assert!(report.contains("1 cases differ"), "{report}");
    assert!(report.contains(&format!("{:?}", inputs[1].config)), "{report}");
    assert!(report.contains("(largest of 1)") && report.contains("(largest of 2)"), "{report}");
}

fn input(config: &str) -> PolicyInput {
    InputBuilder::new(config).min_replicas(1).gpu(95.0).build()
}

type FailureCheck<'a> = dyn Fn(&PluginFailure) -> bool + 'a;

/// Each misdeed ends in its failure kind; afterwards the same plugin decides again (on a fresh instance after a
/// trap, on the same one after an error result) and a well-behaved plugin in the same engine is unaffected.
fn isolation_holds(file: &str, project: &str, exception_mode: &str) {
    let count = |plugin: &mut Plugin| plugin.decide(&input(r#"{"mode": "count"}"#)).result.map(|d| d.replicas);
    // The production call deadline stops the loop. A fresh instance's first call pays one-time costs (CPython
    // touches its heap image: ~2 ms unloaded, more than 10 ms on a machine loaded by parallel builds), so first
    // calls run under a generous deadline and only the looping call under the production one.
    let loop_deadline = RuntimeLimits::default().deadline;
    let generous = engine(Duration::from_secs(5));
    let mut looping = load(&generous, file, project);
    assert_eq!(count(&mut looping), Ok(1));
    looping.lower_limits(Some(loop_deadline), None);
    assert_eq!(looping.decide(&input(r#"{"mode": "loop"}"#)).result, Err(PluginFailure::Timeout(loop_deadline)));
    looping.lower_limits(None, None);
    assert_eq!(count(&mut looping), Ok(1), "{file}: the looping instance is replaced");

    let engine = engine(Duration::from_secs(5));
    let mut plugin = load(&engine, file, project);
    let mut bystander = load(&engine, "hpa_js.wasm", "plugins/hpa-js");
    let healthy = bystander.decide(&input(r#"{"gpuUtilization": 80}"#)).result.unwrap();
    let memory_cap = RuntimeLimits::default().memory_bytes >> 20;
    let misdeeds: [(&str, &FailureCheck); 3] = [
        ("alloc", &|f| *f == PluginFailure::MemoryLimit(memory_cap)),
        (exception_mode, &|f| matches!(f, PluginFailure::Trap(_))),
        ("error", &|f| *f == PluginFailure::Error("internal error: hostile plugin returns an error on purpose".into())),
    ];
    for (mode, expected) in misdeeds {
        let before = count(&mut plugin).unwrap();
        let failure = plugin.decide(&input(&format!(r#"{{"mode": "{mode}"}}"#))).result.expect_err(mode);
        assert!(expected(&failure), "{file} mode {mode}: {failure:?}");
        let survived = matches!(failure, PluginFailure::Error(_));
        assert_eq!(count(&mut plugin), Ok(if survived { before + 1 } else { 1 }), "{file} after {mode}");
        assert_eq!(bystander.decide(&input(r#"{"gpuUtilization": 80}"#)).result.unwrap(), healthy);
    }
    let logged = plugin.decide(&input(r#"{"mode": "log"}"#));
    assert_eq!(logged.logs.len(), 1, "{file}: {:?}", logged.result);
    assert_eq!((logged.logs[0].level, logged.logs[0].message.as_str()), ("warn", "hostile plugin says hello"));
}

#[test]
fn javascript_misdeeds_end_in_fallbacks_and_the_host_goes_on() {
    isolation_holds("hostile_js.wasm", "tests/plugins/hostile-js", "throw");
}

#[test]
fn python_misdeeds_end_in_fallbacks_and_the_host_goes_on() {
    isolation_holds("hostile_py.wasm", "tests/plugins/hostile-py", "raise");
}

/// What a JavaScript or Python plugin prints becomes its log lines, its exception is the failure's message, and its
/// output is capped and escaped, as for Rust.
fn words_reach_people(file: &str, project: &str, exception_mode: &str, exception_text: &str, printed_as: [&str; 2]) {
    let engine = engine(Duration::from_secs(5));
    let mut plugin = load(&engine, file, project);
    let printed = plugin.decide(&input(r#"{"mode": "print"}"#));
    assert!(printed.result.is_ok(), "{file}: {:?}", printed.result);
    let lines: Vec<(&str, &str)> = printed.logs.iter().map(|l| (l.level, l.message.as_str())).collect();
    assert_eq!(
        lines,
        [(printed_as[0], "hostile plugin prints to stdout"), (printed_as[1], "hostile plugin prints to stderr")],
        "{file}"
    );
    let thrown = plugin.decide(&input(&format!(r#"{{"mode": "{exception_mode}"}}"#)));
    let Err(PluginFailure::Trap(why)) = &thrown.result else { panic!("{file}: {:?}", thrown.result) };
    assert!(why.contains(exception_text), "{file}: the exception's text is the failure's: {why}");
    let cap = RuntimeLimits::default().max_reason_bytes;
    let long = plugin.decide(&input(&format!(r#"{{"mode": "big-reason", "size": {}}}"#, cap + 1)));
    assert!(matches!(long.result, Err(PluginFailure::Nonsense(_))), "{file}: {:?}", long.result);
    let escaped = plugin.decide(&input(r#"{"mode": "escape"}"#)).result.unwrap().reason;
    assert_eq!(escaped, "\\u{1b}[2J\\u{1b}[31mred\\nstt  3  3  forged row", "{file}");
}

#[test]
fn javascript_output_and_exceptions_reach_people() {
    // QuickJS has no WASI here: `ballast plugin build` sends `console` to the host's log.
    let console = ["info", "error"];
    words_reach_people(
        "hostile_js.wasm",
        "tests/plugins/hostile-js",
        "throw",
        "hostile plugin throws on purpose",
        console,
    );
}

#[test]
fn python_output_and_exceptions_reach_people_and_a_sleep_returns_at_once() {
    let streams = ["stdout", "stderr"];
    words_reach_people(
        "hostile_py.wasm",
        "tests/plugins/hostile-py",
        "raise",
        "hostile plugin raises on purpose",
        streams,
    );
    let engine = engine(Duration::from_secs(2));
    let slept = load(&engine, "hostile_py.wasm", "tests/plugins/hostile-py").decide(&input(r#"{"mode": "sleep"}"#));
    assert_eq!(slept.result.map(|d| d.reason), Ok("slept 3 s".to_owned()), "time.sleep(3) returns at once");
}
