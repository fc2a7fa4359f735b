//! HPA `behavior` end to end: the examples of the Kubernetes documentation ("Configurable scaling behavior" in
//! tasks/run-application/horizontal-pod-autoscale) driven through the public API in a decide-scale-record loop,
//! and the `ballast behavior` command (library function and the real binary).

use std::io::Write;
use std::process::{Command, Stdio};

use ballast::clamps::{Behavior, ClampInput, ClampOutcome, Reason, ScaleHistory, clamp, cli, record_scale};

const T0: u64 = 1_700_000_000_000;

/// One workload under the clamps: every tick asks for `desired`, applies the outcome and records the scale.
struct Workload {
    behavior: Option<Behavior>,
    history: ScaleHistory,
    current: u32,
    min: u32,
    max: u32,
    now_ms: u64,
}

impl Workload {
    fn new(behavior_json: Option<&str>, current: u32, min: u32, max: u32) -> Self {
        let behavior = behavior_json.map(|json| serde_json::from_str::<Behavior>(json).expect("behavior JSON"));
        if let Some(behavior) = &behavior {
            behavior.validate().expect("valid behavior");
        }
        Workload { behavior, history: ScaleHistory::default(), current, min, max, now_ms: T0 }
    }

    fn tick(&mut self, desired: u32) -> ClampOutcome {
        let input = ClampInput {
            current: self.current,
            desired,
            min: self.min,
            max: self.max,
            behavior: self.behavior.as_ref(),
            now_ms: self.now_ms,
        };
        let outcome = clamp(&input, &mut self.history);
        if outcome.replicas != self.current {
            record_scale(&mut self.history, self.behavior.as_ref(), self.current, outcome.replicas, self.now_ms);
            self.current = outcome.replicas;
        }
        outcome
    }

    fn advance(&mut self, seconds: u64) {
        self.now_ms += seconds * 1000;
    }

    /// Run at a steady desired count for ten minutes (the controller has been up a while): fills the history.
    fn steady(&mut self, sync_seconds: u64) {
        for _ in 0..(600 / sync_seconds) {
            let outcome = self.tick(self.current);
            assert_eq!(outcome.replicas, self.current);
            self.advance(sync_seconds);
        }
    }

    /// Tick every `sync_seconds` for `duration_seconds`, asking for `desired`; returns (seconds since start,
    /// new replica count, reason) for every tick that changed the count.
    fn changes(&mut self, desired: u32, sync_seconds: u64, duration_seconds: u64) -> Vec<(u64, u32, Reason)> {
        let start = self.now_ms;
        let mut changes = Vec::new();
        while self.now_ms - start <= duration_seconds * 1000 {
            let before = self.current;
            let outcome = self.tick(desired);
            if outcome.replicas != before {
                changes.push(((self.now_ms - start) / 1000, outcome.replicas, outcome.reason));
            }
            self.advance(sync_seconds);
        }
        changes
    }
}

fn counts(changes: &[(u64, u32, Reason)]) -> Vec<u32> {
    changes.iter().map(|change| change.1).collect()
}

fn gaps(changes: &[(u64, u32, Reason)]) -> Vec<u64> {
    changes.windows(2).map(|pair| pair[1].0 - pair[0].0).collect()
}

#[test]
fn docs_scaling_policies_pods_4_or_10_percent_per_minute() {
    // "if there are 80 replicas and the target has to be scaled down to 10 replicas then during the first step 8
    // replicas will be reduced. In the next iteration when the number of replicas is 72, 10% of the pods is 7.2
    // but the number is rounded up to 8. [...] When the number of replicas falls below 40 the first policy (Pods)
    // is applied and 4 replicas will be reduced at a time."
    let mut workload = Workload::new(
        Some(
            r#"{"scaleDown": {"policies": [{"type": "Pods", "value": 4, "periodSeconds": 60},
                                           {"type": "Percent", "value": 10, "periodSeconds": 60}]}}"#,
        ),
        80,
        1,
        100,
    );
    workload.steady(15);
    let changes = workload.changes(10, 15, 1800);
    assert_eq!(counts(&changes), vec![72, 64, 57, 51, 45, 40, 36, 32, 28, 24, 20, 16, 12, 10]);
    // The default 300 s scale-down window holds 80 first (the last 80 was recommended 15 s before the drop), then
    // one step per 60 s policy period.
    assert_eq!(changes[0].0, 285);
    assert!(gaps(&changes).iter().all(|&gap| gap == 60), "{changes:?}");
    let decrements: Vec<u32> = counts(&changes).windows(2).map(|pair| pair[0] - pair[1]).collect();
    assert_eq!(&decrements[..5], &[8, 7, 6, 6, 5]); // 10% rounded up while above 40 replicas
    assert_eq!(&decrements[6..12], &[4, 4, 4, 4, 4, 4]); // then the Pods policy
    assert!(changes[..13].iter().all(|change| change.2 == Reason::ScaleDownLimit));
    assert_eq!(changes[13].2, Reason::DesiredWithinRange);
}

#[test]
fn docs_default_behavior_scale_up_4_pods_or_double_every_15s() {
    // "There are 2 policies where 4 pods or a 100% of the currently running replicas may at most be added every
    // 15 seconds till the HPA reaches its steady state." No stabilization for scaling up.
    let mut workload = Workload::new(Some("{}"), 1, 1, 100);
    let changes = workload.changes(1000, 5, 120);
    assert_eq!(counts(&changes), vec![5, 10, 20, 40, 80, 100]);
    assert_eq!(changes[0].0, 0);
    assert!(gaps(&changes).iter().all(|&gap| gap == 15), "{changes:?}");
    assert!(changes[..5].iter().all(|change| change.2 == Reason::ScaleUpLimit));
    assert_eq!(changes[5].2, Reason::TooManyReplicas);
}

#[test]
fn docs_default_behavior_scale_down_after_300s_window() {
    // "For scaling down the stabilization window is 300 seconds [...] a single policy for scaling down which
    // allows a 100% of the currently running replicas to be removed".
    let mut workload = Workload::new(Some("{}"), 10, 1, 20);
    workload.steady(15);
    let held = workload.tick(2);
    assert_eq!((held.replicas, held.reason), (10, Reason::ScaleDownStabilized));
    assert_eq!(held.able_to_scale_reason, Some(Reason::ScaleDownStabilized));
    assert_eq!(held.stabilized_replicas, Some(10));
    workload.advance(15);
    let changes = workload.changes(2, 15, 600);
    // The last recommendation of 10 was made 15 s before the drop: it leaves the window 285 s after the drop.
    assert_eq!(changes, vec![(270, 2, Reason::DesiredWithinRange)]);
}

#[test]
fn docs_change_downscale_stabilization_window_to_60s() {
    let mut workload = Workload::new(Some(r#"{"scaleDown": {"stabilizationWindowSeconds": 60}}"#), 10, 1, 20);
    workload.steady(15);
    let changes = workload.changes(3, 15, 300);
    // The last recommendation of 10 was made 15 s before the drop; it leaves the 60 s window 45 s after.
    assert_eq!(changes, vec![(45, 3, Reason::DesiredWithinRange)]);
}

#[test]
fn docs_limit_scale_down_rate_to_10_percent_per_minute() {
    let mut workload = Workload::new(
        Some(r#"{"scaleDown": {"policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}]}}"#),
        100,
        1,
        100,
    );
    workload.steady(15);
    let changes = workload.changes(1, 15, 600);
    assert_eq!(&counts(&changes)[..6], &[90, 81, 72, 64, 57, 51]); // truncation: 72.9 -> 72, 64.8 -> 64
    assert!(gaps(&changes).iter().all(|&gap| gap == 60), "{changes:?}");
}

#[test]
fn docs_limit_scale_down_to_5_pods_per_minute_with_select_min() {
    // "To ensure that no more than 5 Pods are removed per minute, you can add a second scale-down policy with a
    // fixed size of 5, and set selectPolicy to minimum."
    let mut workload = Workload::new(
        Some(
            r#"{"scaleDown": {"policies": [{"type": "Percent", "value": 10, "periodSeconds": 60},
                                           {"type": "Pods", "value": 5, "periodSeconds": 60}],
                              "selectPolicy": "Min"}}"#,
        ),
        100,
        1,
        100,
    );
    workload.steady(15);
    let changes = workload.changes(1, 15, 1800);
    let replicas = counts(&changes);
    assert_eq!(&replicas[..4], &[95, 90, 85, 80]);
    let mut previous = 100;
    for count in replicas {
        let removed = previous - count;
        assert!(removed <= 5 && removed <= previous / 10 + 1, "{previous} -> {count}");
        // Min picks the smaller change: 10% (rounded up) once it is below 5 pods.
        assert_eq!(count, previous - 5.min(previous - (previous as f64 * 0.9) as u32));
        previous = count;
    }
    assert!(gaps(&changes).iter().all(|&gap| gap == 60), "{changes:?}");
}

#[test]
fn docs_disable_scale_down() {
    let mut workload = Workload::new(Some(r#"{"scaleDown": {"selectPolicy": "Disabled"}}"#), 10, 1, 20);
    workload.steady(15);
    let mut last = None;
    for _ in 0..40 {
        let outcome = workload.tick(1);
        assert_eq!(outcome.replicas, 10);
        last = Some(outcome.reason);
        workload.advance(15);
    }
    // First held by the 300 s window (ScaleDownStabilized), then by the disabled direction.
    assert_eq!(last, Some(Reason::ScaleDownLimit));
    let outcome = workload.tick(15);
    assert_eq!((outcome.replicas, outcome.reason), (15, Reason::DesiredWithinRange));
}

#[test]
fn legacy_limits_without_behavior() {
    // No `behavior`: scale-up capped at max(2 x current, 4) per decision, 300 s downscale stabilization, no
    // scale events kept.
    let mut workload = Workload::new(None, 1, 1, 100);
    let changes = workload.changes(50, 15, 60);
    assert_eq!(counts(&changes), vec![4, 8, 16, 32, 50]);
    assert!(workload.history.scale_up_events.is_empty());
}

// ---- `ballast behavior` ----

fn evaluate(json: &str) -> serde_json::Value {
    serde_json::from_str(&cli::evaluate_json(json).expect("valid input")).expect("JSON output")
}

fn error_of(json: &str) -> String {
    cli::evaluate_json(json).expect_err("invalid input").to_string()
}

#[test]
fn cli_reports_limiting_then_stabilization_reason() {
    let docs_policies = r#""behavior": {"scaleDown": {"policies": [{"type": "Pods", "value": 4, "periodSeconds": 60},
                                                             {"type": "Percent", "value": 10, "periodSeconds": 60}]}}"#;
    // Rate-limited: 80 -> 72 although 10 is wanted.
    let output = evaluate(&format!(
        r#"{{"currentReplicas": 80, "desiredReplicas": 10, "maxReplicas": 100, {docs_policies},
            "recommendations": [{{"replicas": 10, "secondsAgo": 15}}]}}"#
    ));
    assert_eq!(output["replicas"], 72);
    assert_eq!(output["reason"], "ScaleDownLimit");
    assert_eq!(output["stabilizedReplicas"], 10);
    assert_eq!(output["message"], "the desired replica count is decreasing faster than the maximum scale rate");
    // The earlier scale-down of 8 (30 s ago) counts against the period: 72 + 8 = 80 -> 72, no further step.
    let output = evaluate(&format!(
        r#"{{"currentReplicas": 72, "desiredReplicas": 10, "maxReplicas": 100, {docs_policies},
            "recommendations": [{{"replicas": 10, "secondsAgo": 15}}],
            "scaleDownEvents": [{{"replicaChange": 8, "secondsAgo": 30}}]}}"#
    ));
    assert_eq!((output["replicas"].as_u64(), output["reason"].as_str()), (Some(72), Some("ScaleDownLimit")));
    // Stabilized: a recommendation of 60 two minutes ago holds the scale-down at 60, within the rate.
    let output = evaluate(&format!(
        r#"{{"currentReplicas": 64, "desiredReplicas": 10, "maxReplicas": 100, {docs_policies},
            "recommendations": [{{"replicas": 60, "secondsAgo": 120}}]}}"#
    ));
    assert_eq!(output["replicas"], 60);
    assert_eq!(output["reason"], "ScaleDownStabilized");
    assert_eq!(output["ableToScaleReason"], "ScaleDownStabilized");
    assert_eq!(output["steps"].as_array().map(Vec::len), Some(2));
    // Within range.
    let output = evaluate(
        r#"{"currentReplicas": 5, "desiredReplicas": 7, "minReplicas": 3, "maxReplicas": 8,
                              "behavior": {}}"#,
    );
    assert_eq!((output["replicas"].as_u64(), output["reason"].as_str()), (Some(7), Some("DesiredWithinRange")));
    assert_eq!(output["ableToScaleReason"], "ReadyForNewScale");
    // Scaling disabled, and legacy limits when behavior is null.
    let output = evaluate(r#"{"currentReplicas": 0, "desiredReplicas": 7, "minReplicas": 1, "maxReplicas": 8}"#);
    assert_eq!((output["replicas"].as_u64(), output["reason"].as_str()), (Some(0), Some("ScalingDisabled")));
    let output = evaluate(r#"{"currentReplicas": 3, "desiredReplicas": 100, "maxReplicas": 50, "behavior": null}"#);
    assert_eq!((output["replicas"].as_u64(), output["reason"].as_str()), (Some(6), Some("ScaleUpLimit")));
}

#[test]
fn cli_errors_name_the_field() {
    let cases = [
        ("[1, 2]", "input"),
        (r#"{"desiredReplicas": 1, "maxReplicas": 3}"#, "currentReplicas: is required"),
        (
            r#"{"currentReplicas": -1, "desiredReplicas": 1, "maxReplicas": 3}"#,
            "currentReplicas: must be a whole number",
        ),
        (r#"{"currentReplicas": 1, "desiredReplicas": 1.5, "maxReplicas": 3}"#, "desiredReplicas"),
        (r#"{"currentReplicas": 1, "desiredReplicas": 4294967296, "maxReplicas": 3}"#, "desiredReplicas"),
        (
            r#"{"currentReplicas": 1, "desiredReplicas": 1, "maxReplicas": 3, "minReplicas": 4}"#,
            "minReplicas: 4 is above maxReplicas 3",
        ),
        (r#"{"currentReplica": 1, "desiredReplicas": 1, "maxReplicas": 3}"#, "currentReplica: unknown field"),
        (
            r#"{"currentReplicas": 1, "desiredReplicas": 1, "maxReplicas": 3, "behavior": {"scaleUp": {"selectPolicy": "Maxx"}}}"#,
            "behavior.scaleUp: unknown variant `Maxx`",
        ),
        (
            r#"{"currentReplicas": 1, "desiredReplicas": 1, "maxReplicas": 3,
                "behavior": {"scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}, {"type": "Pod", "value": 1, "periodSeconds": 60}]}}}"#,
            "behavior.scaleDown.policies[1]: unknown variant `Pod`",
        ),
        (
            r#"{"currentReplicas": 1, "desiredReplicas": 1, "maxReplicas": 3,
                "behavior": {"scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 0}]}}}"#,
            "behavior.scaleDown.policies[0].periodSeconds: 0 is out of range",
        ),
        (
            r#"{"currentReplicas": 1, "desiredReplicas": 1, "maxReplicas": 3, "behavior": {"scaleDwn": {}}}"#,
            "behavior: unknown field `scaleDwn`",
        ),
        (
            r#"{"currentReplicas": 1, "desiredReplicas": 1, "maxReplicas": 3, "scaleUpEvents": [{"replicaChange": 2}]}"#,
            "scaleUpEvents[0].secondsAgo",
        ),
        (
            r#"{"currentReplicas": 1, "desiredReplicas": 1, "maxReplicas": 3, "recommendations": [{"replicas": 2, "secondsAgo": -5}]}"#,
            "recommendations[0].secondsAgo",
        ),
        (
            r#"{"currentReplicas": 1, "desiredReplicas": 1, "maxReplicas": 3, "scaleDownEvents": {"replicaChange": 2}}"#,
            "scaleDownEvents: must be an array",
        ),
    ];
    for (json, expected) in cases {
        let error = error_of(json);
        assert!(error.contains(expected), "{json}\n  error: {error}\n  expected to contain: {expected}");
    }
    assert!(error_of("{not json").starts_with("input is not valid JSON"));
}

fn run_ballast(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the ballast binary");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("ballast output")
}

#[test]
fn binary_reads_stdin_and_files() {
    let input = r#"{"currentReplicas": 10, "desiredReplicas": 50, "minReplicas": 1, "maxReplicas": 1000,
                    "behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 30, "periodSeconds": 60}]}}}"#;
    let output = run_ballast(&["behavior", "--input", "-"], input);
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!((result["replicas"].as_u64(), result["reason"].as_str()), (Some(40), Some("ScaleUpLimit")));

    let path = std::env::temp_dir().join(format!("ballast-behavior-{}.json", std::process::id()));
    std::fs::write(&path, input).expect("write input file");
    let output = run_ballast(&["behavior", "--input", path.to_str().expect("utf-8 path")], "");
    std::fs::remove_file(&path).expect("remove input file");
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    let from_file: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(from_file, result);
}

#[test]
fn binary_fails_with_the_field_on_bad_input() {
    let output = run_ballast(
        &["behavior", "--input", "-"],
        r#"{"currentReplicas": 3, "desiredReplicas": 1, "maxReplicas": 5,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 4000}}}"#,
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("behavior.scaleDown.stabilizationWindowSeconds: 4000 is out of range"), "{stderr}");
    assert!(output.stdout.is_empty());

    let output = run_ballast(&["behavior", "--input", "/nonexistent/ballast-input.json"], "");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/ballast-input.json"));
}
