//! Bad input is refused where it enters, through the real `ballast` binary: unknown or misspelt fields in the
//! documents `simulate` and `run --config` read (with the file, the line, the field's path and the closest known
//! field), zero and absurd durations on every duration flag, and absurd durations, arrivals, times and rates given
//! to `simulate`. Each was a silent default, a panic (exit 101), an abort or memory without end before.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ballast::sim::{self, PolicySet, SimOptions, Trace};

/// Runs the binary; one that is still running after a minute has taken bad input as good, and fails the test.
fn ballast(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(args)
        .env("BALLAST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the ballast binary");
    let started = Instant::now();
    while child.try_wait().expect("poll ballast").is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().expect("stop ballast");
            let output = child.wait_with_output().expect("ballast output");
            panic!("ballast {args:?} accepted its input and kept running: {}", String::from_utf8_lossy(&output.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("ballast output")
}

/// Asserts that `ballast args` exited with `code` (2: refused while parsing the command line; 1: an error), not a
/// panic (101) or a signal, and returns its standard error.
fn refused(args: &[&str], code: i32) -> String {
    let output = ballast(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "ballast {args:?}: {}\n{stderr}", output.status);
    assert!(!stderr.contains("panicked"), "ballast {args:?}: {stderr}");
    stderr
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A policy of one service `svc` with its `simulation:` section (lines 1-10).
const POLICY: &str = "apiVersion: ballast.dev/v1alpha1
kind: ScalingPolicy
metadata: {name: svc, namespace: t}
spec:
  target: {name: svc}
  maxReplicas: 4
  plugin: {builtin: hpa}
  config: {jobsPerPod: 4}
  fallback: {mode: hold}
simulation: {serviceSeconds: 1, startupSeconds: 10, baseRate: 2}
";

struct Files(tempfile::TempDir);

impl Files {
    fn new() -> Self {
        Files(tempfile::tempdir().expect("temporary directory"))
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let file = self.0.path().join(name);
        std::fs::write(&file, text).expect("write a test file");
        file
    }
}

/// `ballast simulate` on `policies` with `more` arguments (a minute of simulated time without any), refused with
/// exit code 1; its standard error, the policy file's path written `FILE`.
fn simulate_refused(policies: &str, more: &[&str]) -> String {
    let files = Files::new();
    let file = files.write("policies.yaml", policies);
    let mut args = vec!["simulate", "--policies", path(&file)];
    args.extend(if more.is_empty() { &["--duration", "60s"] } else { more });
    refused(&args, 1).replace(path(&file), "FILE")
}

#[test]
fn simulate_refuses_unknown_fields_with_the_line_the_path_and_the_closest_field() {
    let doc = "FILE: document 1 (`svc`, from line 1)";
    let cases = [
        (
            POLICY.replace("  fallback:", "  behaviour: {scaleDown: {stabilizationWindowSeconds: 0}}\n  fallback:"),
            "spec: unknown field `behaviour` (did you mean `behavior`?) at line 9 column 3",
        ),
        (
            POLICY.replace("  fallback:", "  metrics: {queue: [{name: q}]}\n  fallback:"),
            "spec.metrics: unknown field `queue` (did you mean `queues`?) at line 9 column 13",
        ),
        (
            POLICY.replace(
                "  fallback:",
                "  behavior:\n    scaleDown:\n      policies:\n        - {type: Pods, value: 1, periodSecond: 60}\n  \
                 fallback:",
            ),
            "spec.behavior.scaleDown.policies[0]: unknown field `periodSecond` (did you mean `periodSeconds`?) at \
             line 12 column 34",
        ),
        (
            POLICY.replace("serviceSeconds: 1", "serviceSecond: 1"),
            "simulation: unknown field `serviceSecond` (did you mean `serviceSeconds`?) at line 10 column 14",
        ),
        (
            POLICY.replace("namespace: t}", "namespace: t, lables: {a: b}}"),
            "metadata: unknown field `lables` (did you mean `labels`?) at line 3 column 37",
        ),
        (
            POLICY.replace("plugin: {builtin: hpa}", "plugin: {bultin: hpa}"),
            "spec.plugin: unknown field `bultin` (did you mean `builtin`?) at line 7 column 12",
        ),
        (
            POLICY.replace("target: {name: svc}", "target: {name: svc, knd: Deployment}"),
            "spec.target: unknown field `knd` (did you mean `kind`?) at line 5 column 23",
        ),
        (
            POLICY.replace("{mode: hold}", "{mode: fixed, replicas: 2, replica: 3}"),
            "spec.fallback: unknown field `replica` (did you mean `replicas`?) at line 9 column 40",
        ),
        (format!("{POLICY}specs: {{}}\n"), "unknown field `specs` (did you mean `spec`?) at line 11 column 1"),
    ];
    for (policies, expected) in cases {
        let stderr = simulate_refused(&policies, &[]);
        assert!(stderr.contains(&format!("{doc}: {expected}")), "expected `{doc}: {expected}` in:\n{stderr}");
    }
}

#[test]
fn plugin_config_maps_and_simulation_files_are_strict_too() {
    let files = Files::new();
    let plugin = files.write(
        "plugin.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: p\n  namespace: t\n  labels: {ballast.dev/plugin: \"true\"}\n\
         binarydata: {plugin.wasm: AA==}\n",
    );
    let policies = files.write("policies.yaml", POLICY);
    let dir = files.0.path();
    let stderr = refused(&["simulate", "--policies", path(dir), "--duration", "60s"], 1);
    let expected = format!(
        "{}: document 1 (`p`, from line 1): unknown field `binarydata` (did you mean `binaryData`?) at line 7 column 1",
        plugin.display()
    );
    assert!(stderr.contains(&expected), "expected `{expected}` in:\n{stderr}");

    let sim = files.write(
        "sim.yaml",
        "apiVersion: ballast.dev/v1alpha1\nkind: Simulation\nservices:\n  svc: {serviceSecnds: 1, startupSeconds: 1}\n",
    );
    let stderr = refused(&["simulate", "--policies", path(&policies), "--sim", path(&sim), "--duration", "60s"], 1);
    let expected = format!(
        "{}: services.svc: unknown field `serviceSecnds` (did you mean `serviceSeconds`?) at line 4 column 9",
        sim.display()
    );
    assert!(stderr.contains(&expected), "expected `{expected}` in:\n{stderr}");
}

#[test]
fn run_config_refuses_unknown_fields_in_spec_and_status() {
    let files = Files::new();
    // The policies are read before anything talks to this (unreachable) API server.
    let kubeconfig = files.write(
        "kubeconfig",
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"http://127.0.0.1:9\"}}]\n\
         users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n\
         current-context: c\n",
    );
    let config = files.write("policies.yaml", &POLICY.replace("  maxReplicas: 4", "  maxReplica: 4\n  maxReplicas: 4"));
    let args = ["run", "--kubeconfig", path(&kubeconfig), "--config", path(&config), "--metrics-listen", "127.0.0.1:0"];
    let stderr = refused(&args, 1);
    let expected = format!(
        "{}: document 1 (`svc`, from line 1): spec: unknown field `maxReplica` (did you mean `maxReplicas`?) at line \
         6 column 3",
        config.display()
    );
    assert!(stderr.contains(&expected), "expected `{expected}` in:\n{stderr}");

    let with_status = format!("{POLICY}status: {{currentReplica: 3}}\n");
    let err = ballast::policy::documents::documents_from_yaml("p.yaml", &with_status, None).unwrap_err().to_string();
    assert_eq!(
        err,
        "p.yaml: document 1 (`svc`, from line 1): status: unknown field `currentReplica` (did you mean \
         `currentReplicas`?) at line 11 column 10"
    );
    // The controller ignores `simulation:` sections (they are the simulator's), and reads the rest strictly.
    let read = ballast::policy::documents::documents_from_yaml("p.yaml", POLICY, None).expect("a good policy");
    assert_eq!(read.policies.len(), 1);
}

#[test]
fn zero_and_absurd_durations_are_refused_on_every_duration_flag() {
    let redis = ["--redis", "redis://127.0.0.1:9"];
    let kube = ["--kubeconfig", "/nonexistent/kubeconfig"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        ([&["exporter", "--listen", "127.0.0.1:0", "--interval", "0s"][..], &redis, &["q"]].concat(), "--interval"),
        ([&["exporter", "--listen", "127.0.0.1:0", "--interval", "99ms"][..], &redis, &["q"]].concat(), "--interval"),
        ([&["exporter", "--interval", "18446744073709551615m"][..], &redis, &["q"]].concat(), "--interval"),
        ([&["exporter", "--interval", "61m"][..], &redis, &["q"]].concat(), "--interval"),
        ([&["queues", "--timeout", "0s"][..], &redis, &["q"]].concat(), "--timeout"),
        ([&["queues", "--timeout", "18446744073709551615s"][..], &redis, &["q"]].concat(), "--timeout"),
        ([&["run", "--tick", "0s"][..], &kube].concat(), "--tick"),
        ([&["run", "--tick", "18446744073709551615ms"][..], &kube].concat(), "--tick"),
        ([&["run", "--status-every", "0ms"][..], &kube].concat(), "--status-every"),
        ([&["run", "--resources-every", "0s"][..], &kube].concat(), "--resources-every"),
        ([&["run", "--resources-every", "307445734561825861m"][..], &kube].concat(), "--resources-every"),
        ([&["run", "--redis-deadline", "9ms"][..], &kube].concat(), "--redis-deadline"),
        ([&["run", "--conflicts-every", "0s"][..], &kube].concat(), "--conflicts-every"),
        ([&["run", "--prometheus-rate-window", "1500ms"][..], &kube].concat(), "--prometheus-rate-window"),
        (vec!["simulate", "--policies", "x.yaml", "--duration", "18446744073709551615s"], "--duration"),
        (vec!["simulate", "--policies", "x.yaml", "--duration", "18446744073709551615d"], "--duration"),
        (vec!["simulate", "--policies", "x.yaml", "--duration", "32d"], "--duration"),
        (vec!["simulate", "--policies", "x.yaml", "--duration", "2678401"], "--duration"),
        (vec!["simulate", "--policies", "x.yaml", "--duration", "0s"], "--duration"),
        (vec!["simulate", "--policies", "x.yaml", "--step", "0s"], "--step"),
        (vec!["simulate", "--policies", "x.yaml", "--sample", "18446744073709551615h"], "--sample"),
    ];
    for (args, flag) in cases {
        let stderr = refused(&args, 2);
        assert!(stderr.contains(flag) && stderr.contains("must be"), "ballast {args:?}: {stderr}");
    }
    let stderr = refused(&["simulate", "--policies", "x.yaml", "--duration", "32d"], 2);
    assert!(stderr.contains("at most 31d"), "{stderr}");
    let stderr = refused(&["exporter", "--interval", "0s", "--redis", "redis://127.0.0.1:9", "q"], 2);
    assert!(stderr.contains("from 100ms to 60m"), "{stderr}");
}

#[test]
fn simulate_refuses_absurd_trace_rows_with_the_line_and_the_bound() {
    let files = Files::new();
    let policies = files.write("policies.yaml", POLICY);
    let cases = [
        (
            "0,svc,10000000000\n",
            "line 1: 10000000000 arrivals for `svc` in second 0; at most 10000 per second per service",
        ),
        ("0,svc,10001\n", "line 1: 10001 arrivals for `svc` in second 0; at most 10000 per second per service"),
        ("0,svc,6000\n0,svc,4001\n", "line 2: 10001 arrivals for `svc` in second 0; at most 10000"),
        ("0,svc,18446744073709551615\n0,svc,1\n", "line 1: 18446744073709551615 arrivals for `svc`"),
        ("0,svc,99999999999999999999\n", "line 1: arrivals `99999999999999999999` is not a whole number"),
        ("time_s,service,arrivals\n1764633600,svc,5\n", "line 2: time_s 1764633600 is past the 31 days"),
        ("2678400,svc,1\n", "line 1: time_s 2678400 is past the 31 days"),
        ("18446744073709551615,svc,1\n", "line 1: time_s 18446744073709551615 is past the 31 days"),
    ];
    for (rows, expected) in cases {
        let trace = files.write("trace.csv", rows);
        let stderr = refused(&["simulate", "--policies", path(&policies), "--trace", path(&trace)], 1);
        let expected = format!("{}: {expected}", trace.display());
        assert!(stderr.contains(&expected), "expected `{expected}` in:\n{stderr}");
    }
    // The last second a run may have is fine.
    let trace = Trace::parse_csv("t.csv", "2678399,svc,10000\n").expect("the last second of 31 days");
    assert_eq!(trace.length_s(), sim::MAX_DURATION_S);
}

#[test]
fn simulate_refuses_absurd_rates_and_times_in_simulation_sections() {
    let section = "simulation: {serviceSeconds: 1, startupSeconds: 10, baseRate: 2}";
    let cases = [
        (
            "baseRate: 2",
            "baseRate: 1e9",
            "simulation.baseRate 1000000000 is out of range: use 0 to 1000 jobs per second",
        ),
        ("baseRate: 2", "baseRate: 1000.5", "simulation.baseRate 1000.5 is out of range: use 0 to 1000"),
        ("baseRate: 2", "baseRate: -1", "simulation.baseRate -1 is out of range"),
        ("baseRate: 2", "baseRate: .nan", "simulation.baseRate NaN is out of range"),
        ("baseRate: 2", "baseRate: .inf", "simulation.baseRate inf is out of range"),
        (
            "serviceSeconds: 1",
            "serviceSeconds: 1e300",
            "simulation.serviceSeconds 1e300 is out of range: use more than 0 up to 86400 seconds",
        ),
        (
            "startupSeconds: 10",
            "startupSeconds: 86401",
            "simulation.startupSeconds 86401 is out of range: use 0 to 86400 seconds",
        ),
        (
            "baseRate: 2",
            "baseRate: 2, retryBackoffSeconds: 1e300",
            "simulation.retryBackoffSeconds 1e300 is out of range",
        ),
        ("baseRate: 2", "baseRate: 2, retryBackoffSeconds: -5", "simulation.retryBackoffSeconds -5 is out of range"),
        (
            "baseRate: 2",
            "baseRate: 2, metricsDelaySeconds: 18446744073709551615",
            "simulation.metricsDelaySeconds 18446744073709551615 is out of range: use 0 to 86400",
        ),
        (
            "baseRate: 2",
            "baseRate: 2, decisionIntervalSeconds: 86401",
            "simulation.decisionIntervalSeconds 86401 is out of range: use 1 to 86400",
        ),
        ("baseRate: 2", "baseRate: 2, waitSloSeconds: .nan", "simulation.waitSloSeconds NaN is out of range"),
        (
            "baseRate: 2",
            "baseRate: 2, gpuPercentBusy: 1e308",
            "simulation.gpuPercentBusy 1e308 is out of range: use 0 to 100",
        ),
        (
            "baseRate: 2",
            "baseRate: 2, cpuPercentIdle: -1",
            "simulation.cpuPercentIdle -1 is out of range: use 0 to 1000",
        ),
        (
            "baseRate: 2",
            "baseRate: 2, concurrency: 4294967295",
            "spec.maxReplicas (4) x simulation.concurrency (4294967295) is 17179869180 worker slots; at most 2000",
        ),
        (
            "baseRate: 2",
            "baseRate: 2, concurrency: 501",
            "spec.maxReplicas (4) x simulation.concurrency (501) is 2004 worker slots; at most 2000",
        ),
        (
            "baseRate: 2",
            "baseRate: 2, initialReplicas: 4294967295",
            "simulation.initialReplicas (4294967295) is above spec.maxReplicas (4)",
        ),
    ];
    for (from, to, expected) in cases {
        let policies = POLICY.replace(section, &section.replace(from, to));
        assert_ne!(policies, POLICY);
        let stderr = simulate_refused(&policies, &[]);
        let expected = format!("FILE: document 1 (`svc`, from line 1): {expected}");
        assert!(stderr.contains(&expected), "expected `{expected}` in:\n{stderr}");
    }
    let huge = POLICY.replace("maxReplicas: 4", "maxReplicas: 4294967295");
    let stderr = simulate_refused(&huge, &[]);
    assert!(
        stderr.contains("maxReplicas (4294967295) x simulation.concurrency (1) is 4294967295 worker slots"),
        "{stderr}"
    );
}

#[test]
fn simulate_refuses_runs_that_would_bring_more_jobs_or_rows_than_it_keeps() {
    let policies = POLICY.replace("baseRate: 2", "baseRate: 1000");
    let stderr = simulate_refused(&policies, &["--duration", "31d"]);
    assert!(
        stderr.contains("builtin:day brings about 1")
            && stderr.contains("jobs over 2678400 s; a run may bring at most 30000000"),
        "{stderr}"
    );
    let stderr = simulate_refused(POLICY, &["--duration", "31d", "--sample", "1s"]);
    assert!(
        stderr.contains("2678400 timeline rows (1 services over 2678400 s, a row every 1 s); at most 1000000"),
        "{stderr}"
    );
}

/// The bounds on a whole run, at the value and just over it, without running the simulation.
#[test]
fn run_bounds_hold_at_the_limit_and_refuse_just_over_it() {
    let set = PolicySet::parse("t", "p.yaml", POLICY, None).expect("a good policy");
    // 3,000 seconds of 10,000 jobs: exactly the limit of jobs in one run.
    let full: String = (0..3000).map(|t| format!("{t},svc,10000\n")).collect();
    let trace = Trace::parse_csv("t.csv", &full).unwrap();
    assert_eq!(sim::MAX_RUN_ARRIVALS, 30_000_000);
    trace.check_load(&set.services, 3000).expect("the limit itself");
    let over = Trace::parse_csv("t.csv", &format!("{full}3000,svc,1\n")).unwrap();
    let err = over.check_load(&set.services, 3001).unwrap_err().to_string();
    assert!(err.contains("t.csv brings 30000001 jobs over 3001 s; a run may bring at most 30000000"), "{err}");
    over.check_load(&set.services, 3000).expect("rows after the run's end bring nothing");

    let options = |duration_s, sample_s| SimOptions { seed: 1, duration_s, step_s: 1, sample_s };
    options(sim::MAX_DURATION_S, 3).check(1).expect("892800 rows");
    let err = options(1_000_001, 1).check(1).unwrap_err().to_string();
    assert!(err.contains("1000001 timeline rows"), "{err}");
    let err = options(sim::MAX_DURATION_S + 1, 60).check(1).unwrap_err().to_string();
    assert!(err.contains("2678401 s of simulated time; at most 2678400 s (31 days)"), "{err}");
}
