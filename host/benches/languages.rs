//! The `hpa` policy in Rust, JavaScript (componentize-qjs) and Python (componentize-py), measured in one run through
//! the production runtime: component size (and gzipped, what a ConfigMap holds), compile time, a fresh instance's
//! first decision, `decide()` with a reused instance, and the smallest memory cap the plugin decides under. Every
//! figure is also given as a ratio against Rust's.
//!
//! `cargo bench -p ballast --bench languages` (the JavaScript and Python builds come from scripts/test.sh or
//! `ballast plugin build plugins/hpa-js --out target/wasm-plugins/wasm32-wasip2/plugin/hpa_js.wasm`, and likewise
//! for plugins/hpa-py).

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast::runtime::{Decision, Plugin, PolicyEngine, PolicyInput, RuntimeLimits};
use ballast::testing;

#[path = "common/quick.rs"]
mod quick;

const PLUGINS: [(&str, &str, &str); 3] = [
    ("Rust", "hpa.wasm", "plugins/hpa"),
    ("JavaScript", "hpa_js.wasm", "plugins/hpa-js"),
    ("Python", "hpa_py.wasm", "plugins/hpa-py"),
];
/// Memory caps tried, smallest first, for the floor each plugin decides under.
const MEMORY_CAPS_MIB: [usize; 7] = [2, 4, 8, 16, 24, 32, 64];

fn engine(memory_mib: usize, cache_dir: Option<PathBuf>) -> Arc<PolicyEngine> {
    // A generous deadline: this measures speed, and a loaded machine may preempt a call for longer than 10 ms.
    let limits = RuntimeLimits {
        max_instances: 8,
        deadline: Duration::from_secs(5),
        memory_bytes: memory_mib << 20,
        cache_dir,
        ..RuntimeLimits::default()
    };
    testing::engine(limits)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Per-call time of `calls` calls, median of `batches` batches.
fn per_call(plugin: &mut Plugin, input: &PolicyInput, batches: usize, calls: u32) -> Duration {
    median(
        (0..batches)
            .map(|_| {
                let started = Instant::now();
                for _ in 0..calls {
                    std::hint::black_box(plugin.decide(input).result.expect("decides"));
                }
                started.elapsed() / calls
            })
            .collect(),
    )
}

struct Row {
    language: &'static str,
    size: u64,
    gzipped: u64,
    compile: Duration,
    fresh: Duration,
    reused: Duration,
    memory_floor: Option<usize>,
    decision: Decision,
}

/// How many rounds or calls: one value for the quick run, one for a slow plugin (Python), one for the rest.
fn by_mode<T>(slow: bool, quick: T, when_slow: T, otherwise: T) -> T {
    if quick::quick() {
        quick
    } else if slow {
        when_slow
    } else {
        otherwise
    }
}

fn measure(language: &'static str, file: &str, project: &str) -> Row {
    let path = PathBuf::from(ballast_test_plugins::DIR).join(file);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build it with `cargo run -p ballast -- plugin build {project} --out {}`",
            path.display(),
            path.display()
        )
    });
    let slow = language == "Python";
    let input = testing::busy_input(r#"{"gpuUtilization": 80, "cpuUtilization": 70, "jobsPerPod": 5}"#);
    eprintln!("{language}: compiling");
    // A fresh engine per round, without a disk cache: every round compiles.
    let compile = median(
        (0..by_mode(slow, 1, 3, 7)).map(|_| engine(64, None).load(file, &bytes).expect("loads").compile_time).collect(),
    );
    let engine = engine(64, None);
    let compiled = engine.load(file, &bytes).expect("loads");
    eprintln!("{language}: calling");
    let mut fresh = Plugin::new(engine.clone(), compiled.clone());
    fresh.fresh_each_call = true;
    let (batches, calls) = by_mode(slow, (1, 2), (5, 10), (11, 50));
    let fresh = per_call(&mut fresh, &input, batches, calls);
    let mut reused = Plugin::new(engine.clone(), compiled);
    let decision = reused.decide(&input).result.expect("decides");
    let (batches, calls) = by_mode(slow, (1, 10), (11, 1_000), (11, 5_000));
    let reused = per_call(&mut reused, &input, batches, calls);

    eprintln!("{language}: memory floor");
    let cache = std::env::temp_dir().join(format!("ballast-bench-languages-{}", std::process::id()));
    let memory_floor = MEMORY_CAPS_MIB.into_iter().find(|&mib| {
        // A component whose initial memory exceeds the cap is refused at load already.
        let engine = self::engine(mib, Some(cache.clone()));
        engine.load(file, &bytes).is_ok_and(|compiled| Plugin::new(engine, compiled).decide(&input).result.is_ok())
    });
    let _ = std::fs::remove_dir_all(&cache);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&bytes).expect("gzip");
    let gzipped = gz.finish().expect("gzip").len() as u64;
    Row { language, size: bytes.len() as u64, gzipped, compile, fresh, reused, memory_floor, decision }
}

fn main() {
    // Python takes a minute to compile in each round; the quick run leaves it to host/tests/it/languages.rs.
    let languages = if quick::quick() { &PLUGINS[..2] } else { &PLUGINS[..] };
    let rows: Vec<Row> = languages.iter().map(|(language, file, project)| measure(language, file, project)).collect();
    for row in &rows[1..] {
        assert_eq!(row.decision, rows[0].decision, "{} decides differently from Rust", row.language);
    }
    let rust = &rows[0];
    let mib = |bytes: u64| format!("{:.2} MiB", bytes as f64 / f64::from(1 << 20));
    let ratio = |value: f64, base: f64| format!("{:.1}×", value / base);
    let time = |d: Duration| {
        if d >= Duration::from_secs(1) {
            format!("{:.2} s", d.as_secs_f64())
        } else if d >= Duration::from_millis(1) {
            format!("{:.2} ms", d.as_secs_f64() * 1e3)
        } else {
            format!("{:.2} µs", d.as_secs_f64() * 1e6)
        }
    };
    println!(
        "| language | component | gzipped | compile (cranelift) | fresh instance + first `decide()` | `decide()`, \
         reused instance | smallest memory cap that decides |"
    );
    println!("|---|---|---|---|---|---|---|");
    for row in &rows {
        let floor = row.memory_floor.map_or_else(|| "> 64 MiB".to_owned(), |m| format!("{m} MiB"));
        println!(
            "| {} | {} ({}) | {} ({}) | {} ({}) | {} ({}) | {} ({}) | {} |",
            row.language,
            mib(row.size),
            ratio(row.size as f64, rust.size as f64),
            mib(row.gzipped),
            ratio(row.gzipped as f64, rust.gzipped as f64),
            time(row.compile),
            ratio(row.compile.as_secs_f64(), rust.compile.as_secs_f64()),
            time(row.fresh),
            ratio(row.fresh.as_secs_f64(), rust.fresh.as_secs_f64()),
            time(row.reused),
            ratio(row.reused.as_secs_f64(), rust.reused.as_secs_f64()),
            floor,
        );
    }
    println!("(ratios against Rust, measured in this run; every plugin returned: {:?})", rust.decision.reason);
}
