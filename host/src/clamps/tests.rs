//! Cases ported from the Kubernetes sources (each test names the Go test it comes from), plus property tests.
//!
//! Go tests build timestamps as `time.Now().Add(-d)` and run a moment later, so "exactly d old" never happens
//! there; here time is exact and the cases use the same ages.

use proptest::prelude::*;

use super::error::ClampError;
use super::history::*;
use super::normalize::*;
use super::*;

const NOW: u64 = 1_000_000_000_000;

fn ago(seconds: i64) -> u64 {
    (NOW as i64 - seconds * 1000) as u64
}

fn rec(replicas: u32, seconds_ago: i64) -> TimestampedRecommendation {
    TimestampedRecommendation { replicas, timestamp_ms: ago(seconds_ago) }
}

fn event(replica_change: u32, seconds_ago: i64, outdated: bool) -> ScaleEvent {
    ScaleEvent { replica_change, timestamp_ms: ago(seconds_ago), outdated }
}

fn pods(value: i32, period_seconds: i32) -> HpaScalingPolicy {
    HpaScalingPolicy { kind: ScalingPolicyType::Pods, value, period_seconds }
}

fn percent(value: i32, period_seconds: i32) -> HpaScalingPolicy {
    HpaScalingPolicy { kind: ScalingPolicyType::Percent, value, period_seconds }
}

/// Go's `generateScalingRules`: selectPolicy Max; a zero value leaves that policy out; no policy at all leaves
/// `policies` nil (so defaulting fills it).
fn generate_scaling_rules(pods_value: i32, pods_period: i32, pct: i32, pct_period: i32, window: i32) -> ScalingRules {
    let mut policies = Vec::new();
    if pods_value != 0 {
        policies.push(pods(pods_value, pods_period));
    }
    if pct != 0 {
        policies.push(percent(pct, pct_period));
    }
    ScalingRules {
        stabilization_window_seconds: Some(window),
        select_policy: Some(SelectPolicy::Max),
        policies: (!policies.is_empty()).then_some(policies),
        tolerance: None,
    }
}

/// Go's `generateEventsUniformDistribution`: events spread over the last `period` seconds, each in the middle of
/// its segment, the age truncated to whole seconds like Go's `time.Duration(float64)`.
fn uniform_events(raw: &[u32], period: i64) -> Vec<ScaleEvent> {
    let segment = period as f64 / raw.len() as f64;
    raw.iter()
        .enumerate()
        .map(|(index, &change)| {
            let seconds = (period as f64 - segment * (index + 1) as f64 + segment / 2.0) as i64;
            event(change, seconds, false)
        })
        .collect()
}

fn clamp_once(current: u32, desired: u32, min: u32, max: u32, behavior: Option<&Behavior>) -> ClampOutcome {
    clamp(&ClampInput { current, desired, min, max, behavior, now_ms: NOW }, &mut ScaleHistory::default())
}

// ---- defaults: pkg/apis/autoscaling/v2/defaults_test.go ----

/// (name, user policies, user window, user selectPolicy, expected resolved rules)
type GenerateRulesCase =
    (&'static str, Option<Vec<HpaScalingPolicy>>, Option<i32>, Option<SelectPolicy>, ResolvedRules<'static>);

#[test]
fn generate_scale_down_rules() {
    // TestGenerateScaleDownRules. Kubernetes leaves the window nil there and the controller fills in its
    // downscale-stabilization flag (300 s), which resolved rules already contain.
    let max = Some(SelectPolicy::Max);
    let min = Some(SelectPolicy::Min);
    let cases: Vec<GenerateRulesCase> = vec![
        ("Default values", None, None, None, ResolvedRules::default_scale_down()),
        (
            "All parameters are specified",
            Some(vec![pods(1, 2), percent(3, 4)]),
            Some(25),
            max,
            ResolvedRules {
                stabilization_window_seconds: 25,
                select_policy: SelectPolicy::Max,
                policies: vec![pods(1, 2), percent(3, 4)].into(),
            },
        ),
        (
            "Percent policy is specified",
            Some(vec![percent(1, 2)]),
            None,
            min,
            ResolvedRules {
                stabilization_window_seconds: 300,
                select_policy: SelectPolicy::Min,
                policies: vec![percent(1, 2)].into(),
            },
        ),
        (
            "Pods policy is specified",
            Some(vec![pods(3, 4)]),
            None,
            None,
            ResolvedRules {
                stabilization_window_seconds: 300,
                select_policy: SelectPolicy::Max,
                policies: vec![pods(3, 4)].into(),
            },
        ),
    ];
    assert_eq!(ResolvedRules::default_scale_down().policies, vec![percent(100, 15)]);
    for (name, policies, window, select_policy, expected) in cases {
        let behavior = Behavior {
            scale_up: None,
            scale_down: Some(ScalingRules {
                stabilization_window_seconds: window,
                select_policy,
                policies,
                tolerance: None,
            }),
        };
        assert_eq!(behavior.resolved_scale_down(), expected, "{name}");
    }
}

#[test]
fn generate_scale_up_rules() {
    // TestGenerateScaleUpRules
    let cases: Vec<GenerateRulesCase> = vec![
        (
            "Default values",
            None,
            None,
            None,
            ResolvedRules {
                stabilization_window_seconds: 0,
                select_policy: SelectPolicy::Max,
                policies: vec![pods(4, 15), percent(100, 15)].into(),
            },
        ),
        (
            "All parameters are specified",
            Some(vec![pods(1, 2), percent(3, 4)]),
            Some(25),
            Some(SelectPolicy::Max),
            ResolvedRules {
                stabilization_window_seconds: 25,
                select_policy: SelectPolicy::Max,
                policies: vec![pods(1, 2), percent(3, 4)].into(),
            },
        ),
        (
            "Pod policy is specified",
            Some(vec![pods(1, 2)]),
            None,
            Some(SelectPolicy::Min),
            ResolvedRules {
                stabilization_window_seconds: 0,
                select_policy: SelectPolicy::Min,
                policies: vec![pods(1, 2)].into(),
            },
        ),
        (
            "Percent policy is specified",
            Some(vec![percent(7, 10)]),
            None,
            None,
            ResolvedRules {
                stabilization_window_seconds: 0,
                select_policy: SelectPolicy::Max,
                policies: vec![percent(7, 10)].into(),
            },
        ),
        (
            "Pod policy and stabilization window are specified",
            Some(vec![pods(4, 2)]),
            Some(25),
            None,
            ResolvedRules {
                stabilization_window_seconds: 25,
                select_policy: SelectPolicy::Max,
                policies: vec![pods(4, 2)].into(),
            },
        ),
        (
            "Percent policy and stabilization window are specified",
            Some(vec![percent(7, 60)]),
            Some(25),
            None,
            ResolvedRules {
                stabilization_window_seconds: 25,
                select_policy: SelectPolicy::Max,
                policies: vec![percent(7, 60)].into(),
            },
        ),
    ];
    for (name, policies, window, select_policy, expected) in cases {
        let behavior = Behavior {
            scale_up: Some(ScalingRules {
                stabilization_window_seconds: window,
                select_policy,
                policies,
                tolerance: None,
            }),
            scale_down: None,
        };
        assert_eq!(behavior.resolved_scale_up(), expected, "{name}");
        assert_eq!(behavior.resolved_scale_down(), ResolvedRules::default_scale_down(), "{name}: other direction");
    }
}

#[test]
fn per_field_defaulting_keeps_defaults_for_unset_fields() {
    let behavior: Behavior = serde_json::from_str(
        r#"{"scaleDown": {"selectPolicy": "Min"}, "scaleUp": {"stabilizationWindowSeconds": 60}}"#,
    )
    .unwrap();
    let down = behavior.resolved_scale_down();
    assert_eq!((down.stabilization_window_seconds, down.select_policy), (300, SelectPolicy::Min));
    assert_eq!(down.policies, vec![percent(100, 15)]);
    let up = behavior.resolved_scale_up();
    assert_eq!((up.stabilization_window_seconds, up.select_policy), (60, SelectPolicy::Max));
    assert_eq!(up.policies, vec![pods(4, 15), percent(100, 15)]);
}

// ---- validation: pkg/apis/autoscaling/validation (validateScalingRules) ----

#[test]
fn validation_names_the_field() {
    let cases = [
        (r#"{"scaleUp": {"stabilizationWindowSeconds": -1}}"#, "behavior.scaleUp.stabilizationWindowSeconds"),
        (r#"{"scaleDown": {"stabilizationWindowSeconds": 3601}}"#, "behavior.scaleDown.stabilizationWindowSeconds"),
        (r#"{"scaleDown": {"policies": []}}"#, "behavior.scaleDown.policies"),
        (
            r#"{"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 1}, {"type": "Percent", "value": 0, "periodSeconds": 60}]}}"#,
            "behavior.scaleUp.policies[1].value",
        ),
        (
            r#"{"scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 1801}]}}"#,
            "behavior.scaleDown.policies[0].periodSeconds",
        ),
        (
            r#"{"scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 0}]}}"#,
            "behavior.scaleDown.policies[0].periodSeconds",
        ),
    ];
    for (json, field) in cases {
        let behavior: Behavior = serde_json::from_str(json).unwrap();
        match behavior.validate() {
            Err(ClampError::InvalidField { field: got, .. }) => assert_eq!(got, field, "{json}"),
            other => panic!("{json}: expected an error on {field}, got {other:?}"),
        }
    }
    let valid: Behavior = serde_json::from_str(
        r#"{"scaleUp": {"stabilizationWindowSeconds": 3600, "selectPolicy": "Disabled"},
            "scaleDown": {"policies": [{"type": "Percent", "value": 1000, "periodSeconds": 1800}]}}"#,
    )
    .unwrap();
    valid.validate().unwrap();
    assert!(serde_json::from_str::<Behavior>(r#"{"scaleDown": {"stabilizationWindowSecond": 1}}"#).is_err());
}

// ---- horizontal_test.go: TestNormalizeDesiredReplicas (legacy stabilizeRecommendation) ----

#[test]
fn normalize_desired_replicas() {
    // (name, recommendations, prenormalized desired, expected stabilized, expected log length)
    let cases = [
        ("empty log", vec![], 5, 5, 1),
        ("stabilize", vec![rec(4, 120), rec(5, 60)], 3, 5, 3),
        ("no stabilize", vec![rec(1, 120), rec(2, 60)], 3, 3, 3),
        ("no stabilize - old recommendations", vec![rec(10, 600), rec(9, 540)], 3, 3, 2),
        ("stabilize - old recommendations", vec![rec(10, 600), rec(4, 60), rec(5, 120), rec(9, 540)], 3, 5, 4),
    ];
    for (name, mut recommendations, desired, expected, log_length) in cases {
        let stabilized = stabilize_recommendation(&mut recommendations, desired, 300, NOW);
        assert_eq!(stabilized, expected, "{name}");
        assert_eq!(recommendations.len(), log_length, "{name}");
        assert!(recommendations.iter().any(|r| r.replicas == desired as u32 && r.timestamp_ms == NOW), "{name}");
    }
}

// ---- horizontal_test.go: TestNormalizeDesiredReplicasWithBehavior (stabilizeRecommendationWithBehaviors) ----

#[test]
fn normalize_desired_replicas_with_behavior() {
    struct Case {
        name: &'static str,
        recommendations: Vec<TimestampedRecommendation>,
        current: i64,
        desired: i64,
        expected: i64,
        expected_recommendations: Option<Vec<u32>>,
        up_window: i32,
        down_window: i32,
    }
    let cases = [
        Case {
            name: "empty recommendations for scaling down",
            recommendations: vec![],
            current: 100,
            desired: 5,
            expected: 5,
            expected_recommendations: Some(vec![5]),
            up_window: 0,
            down_window: 0,
        },
        Case {
            name: "simple scale down stabilization",
            recommendations: vec![rec(4, 120), rec(5, 60)],
            current: 100,
            desired: 3,
            expected: 5,
            expected_recommendations: Some(vec![4, 5, 3]),
            up_window: 0,
            down_window: 180,
        },
        Case {
            name: "simple scale up stabilization",
            recommendations: vec![rec(4, 120), rec(5, 60)],
            current: 1,
            desired: 7,
            expected: 4,
            expected_recommendations: Some(vec![4, 5, 7]),
            up_window: 300,
            down_window: 0,
        },
        Case {
            name: "no scale down stabilization",
            recommendations: vec![rec(1, 120), rec(2, 60)],
            current: 100,
            desired: 3,
            expected: 3,
            expected_recommendations: Some(vec![1, 2, 3]),
            up_window: 300,
            down_window: 0,
        },
        Case {
            name: "no scale up stabilization",
            recommendations: vec![rec(4, 120), rec(5, 60)],
            current: 1,
            desired: 3,
            expected: 3,
            expected_recommendations: Some(vec![4, 5, 3]),
            up_window: 0,
            down_window: 300,
        },
        Case {
            name: "no scale down stabilization, reuse recommendation element",
            recommendations: vec![rec(10, 600), rec(9, 540)],
            current: 100,
            desired: 3,
            expected: 3,
            expected_recommendations: Some(vec![10, 3]),
            up_window: 0,
            down_window: 0,
        },
        Case {
            name: "no scale up stabilization, reuse recommendation element",
            recommendations: vec![rec(10, 600), rec(9, 540)],
            current: 1,
            desired: 100,
            expected: 100,
            expected_recommendations: Some(vec![10, 100]),
            up_window: 0,
            down_window: 0,
        },
        Case {
            name: "scale down stabilization, reuse one of obsolete recommendation element",
            recommendations: vec![rec(10, 600), rec(4, 60), rec(5, 120), rec(9, 540)],
            current: 100,
            desired: 3,
            expected: 5,
            expected_recommendations: Some(vec![10, 4, 5, 3]),
            up_window: 0,
            down_window: 180,
        },
        Case {
            // Only the first recommendation is obsolete for both windows, so only it is reused.
            name: "scale up stabilization, reuse one of obsolete recommendation element",
            recommendations: vec![rec(10, 6000), rec(6, 60), rec(5, 120), rec(9, 180)],
            current: 1,
            desired: 100,
            expected: 5,
            expected_recommendations: Some(vec![100, 6, 5, 9]),
            up_window: 300,
            down_window: 0,
        },
        Case {
            name: "scale up and down stabilization, do not scale up when prenormalized rec goes down",
            recommendations: vec![rec(2, 6000), rec(3, 180)],
            current: 2,
            desired: 1,
            expected: 2,
            expected_recommendations: None,
            up_window: 300,
            down_window: 300,
        },
        Case {
            name: "scale up and down stabilization, do not scale down when prenormalized rec goes up",
            recommendations: vec![rec(2, 6000), rec(1, 180)],
            current: 2,
            desired: 3,
            expected: 2,
            expected_recommendations: None,
            up_window: 300,
            down_window: 300,
        },
    ];
    for mut case in cases {
        let stabilized = stabilize_recommendation_with_behaviors(
            &mut case.recommendations,
            case.current,
            case.desired,
            case.up_window,
            case.down_window,
            NOW,
        );
        assert_eq!(stabilized.replicas, case.expected, "{}", case.name);
        if let Some(expected) = case.expected_recommendations {
            let stored: Vec<u32> = case.recommendations.iter().map(|r| r.replicas).collect();
            assert_eq!(stored, expected, "{}", case.name);
        }
    }
}

// ---- horizontal_test.go: TestScalingWithRules (convertDesiredReplicasWithBehaviorRate) ----

#[test]
fn scaling_with_rules() {
    struct Case {
        name: &'static str,
        up_events: Vec<ScaleEvent>,
        down_events: Vec<ScaleEvent>,
        min: i64,
        max: i64,
        up: Option<ScalingRules>,
        down: Option<ScalingRules>,
        current: i64,
        desired: i64,
        expected: i64,
        reason: Reason,
    }
    let case = |name, min, max, up, down, current, desired, expected, reason| Case {
        name,
        up_events: vec![],
        down_events: vec![],
        min,
        max,
        up,
        down,
        current,
        desired,
        expected,
        reason,
    };
    let rules = |a, b, c, d, e| Some(generate_scaling_rules(a, b, c, d, e));
    use Reason::*;
    let cases = vec![
        case("prenormalized desired replicas within range", 3, 8, None, None, 5, 7, 7, DesiredWithinRange),
        case("prenormalized desired replicas < minReplicas", 2, 8, None, None, 3, 1, 2, TooFewReplicas),
        case(
            "prenormalized desired replicas within range when minReplicas is 0",
            0,
            10,
            None,
            None,
            1,
            0,
            0,
            DesiredWithinRange,
        ),
        case(
            "maxReplicas is the limit because maxReplicas < scaleUpLimit",
            1,
            10,
            None,
            None,
            20,
            1000,
            10,
            TooManyReplicas,
        ),
        case(
            "desired replica count is more than the maximum replica count",
            100,
            150,
            None,
            None,
            100,
            1000,
            150,
            TooManyReplicas,
        ),
        case(
            "scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies",
            1,
            2000,
            rules(0, 0, 1, 60, 0),
            None,
            3,
            1000,
            4,
            ScaleUpLimit,
        ),
        // Skipped in Go (testThis); the expectation holds all the same.
        case(
            "scaleDownLimit is the limit because scaleDownLimit > minReplicas with user defined policies",
            3,
            2000,
            None,
            rules(20, 60, 0, 0, 0),
            1000,
            3,
            980,
            ScaleDownLimit,
        ),
        case("scaleUp with default behavior", 1, 1000, None, None, 10, 50, 20, ScaleUpLimit),
        case(
            "scaleUp with pods policy larger than percent policy",
            1,
            1000,
            rules(100, 60, 100, 60, 0),
            None,
            10,
            500,
            110,
            ScaleUpLimit,
        ),
        case(
            "scaleUp with percent policy larger than pods policy",
            1,
            1000,
            rules(2, 60, 100, 60, 0),
            None,
            10,
            500,
            20,
            ScaleUpLimit,
        ),
        case(
            "scaleUp with spec MaxReplicas limitation with large pod policy",
            1,
            1000,
            rules(100, 60, 0, 0, 0),
            None,
            10,
            50,
            50,
            DesiredWithinRange,
        ),
        case(
            "scaleUp with spec MaxReplicas limitation with large percent policy",
            1,
            1000,
            rules(10000, 60, 0, 0, 0),
            None,
            10,
            50,
            50,
            DesiredWithinRange,
        ),
        case("scaleUp with pod policy limitation", 1, 1000, rules(30, 60, 0, 0, 0), None, 10, 50, 40, ScaleUpLimit),
        case(
            "scaleUp with percent policy limitation",
            1,
            1000,
            rules(0, 0, 200, 60, 0),
            None,
            10,
            50,
            30,
            ScaleUpLimit,
        ),
        case(
            "scaleDown with percent policy larger than pod policy",
            1,
            1000,
            None,
            rules(20, 60, 1, 60, 300),
            100,
            2,
            80,
            ScaleDownLimit,
        ),
        case(
            "scaleDown with pod policy larger than percent policy",
            1,
            1000,
            None,
            rules(2, 60, 1, 60, 300),
            100,
            2,
            98,
            ScaleDownLimit,
        ),
        case(
            "scaleDown with spec MinReplicas=nil limitation with large pod policy",
            1,
            1000,
            None,
            rules(100, 60, 0, 0, 300),
            10,
            0,
            1,
            TooFewReplicas,
        ),
        case(
            "scaleDown with spec MinReplicas limitation with large pod policy",
            1,
            1000,
            None,
            rules(100, 60, 0, 0, 300),
            10,
            0,
            1,
            TooFewReplicas,
        ),
        case(
            "scaleDown with spec MinReplicas limitation with large percent policy",
            5,
            1000,
            None,
            rules(0, 0, 100, 60, 300),
            10,
            2,
            5,
            TooFewReplicas,
        ),
        case("scaleDown with pod policy limitation", 1, 1000, None, rules(5, 60, 0, 0, 300), 10, 2, 5, ScaleDownLimit),
        case(
            "scaleDown with percent policy limitation",
            1,
            1000,
            None,
            rules(0, 0, 50, 60, 300),
            10,
            5,
            5,
            DesiredWithinRange,
        ),
        Case {
            up_events: uniform_events(&[1, 5, 9], 120),
            ..case(
                "scaleUp with spec MaxReplicas limitation with large pod policy and events",
                1,
                200,
                rules(300, 60, 0, 0, 0),
                None,
                100,
                500,
                200,
                TooManyReplicas,
            )
        },
        Case {
            up_events: uniform_events(&[1, 5, 9], 120),
            ..case(
                "scaleUp with spec MaxReplicas limitation with large percent policy and events",
                1,
                200,
                rules(0, 0, 10000, 60, 0),
                None,
                100,
                500,
                200,
                TooManyReplicas,
            )
        },
        Case {
            // 120 s ago there were 100 - 15 replicas and only 5 may be added: no scale-up, not a scale-down.
            up_events: uniform_events(&[1, 5, 9], 120),
            ..case(
                "scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events",
                1,
                1000,
                rules(5, 120, 0, 0, 0),
                None,
                100,
                500,
                100,
                ScaleUpLimit,
            )
        },
        Case {
            up_events: uniform_events(&[1, 5, 9], 120),
            ..case(
                "scaleUp with pod policy and previous scale up events",
                1,
                1000,
                rules(150, 120, 0, 0, 0),
                None,
                100,
                500,
                235,
                ScaleUpLimit,
            )
        },
        Case {
            up_events: uniform_events(&[1, 5, 9], 120),
            ..case(
                "scaleUp with percent policy and previous scale up events",
                1,
                1000,
                rules(0, 0, 200, 120, 0),
                None,
                100,
                500,
                255,
                ScaleUpLimit,
            )
        },
        Case {
            up_events: uniform_events(&[4], 120),
            down_events: uniform_events(&[2], 120),
            ..case(
                "scaleUp with percent policy and previous scale up and down events",
                1,
                1000,
                rules(0, 0, 300, 300, 0),
                None,
                6,
                24,
                16,
                ScaleUpLimit,
            )
        },
        Case {
            down_events: uniform_events(&[1, 5, 9], 120),
            ..case(
                "scaleDown with default policy and previous events",
                1,
                1000,
                None,
                None,
                10,
                5,
                5,
                DesiredWithinRange,
            )
        },
        Case {
            down_events: uniform_events(&[1, 5, 9], 120),
            ..case(
                "scaleDown with spec MinReplicas=nil limitation with large pod policy and previous events",
                1,
                1000,
                None,
                rules(115, 120, 0, 0, 300),
                100,
                0,
                1,
                TooFewReplicas,
            )
        },
        Case {
            down_events: uniform_events(&[1, 5, 9], 120),
            ..case(
                "scaleDown with spec MinReplicas limitation with large pod policy and previous events",
                5,
                1000,
                None,
                rules(130, 120, 0, 0, 300),
                100,
                0,
                5,
                TooFewReplicas,
            )
        },
        Case {
            down_events: uniform_events(&[1, 5, 9], 120),
            ..case(
                "scaleDown with spec MinReplicas limitation with large percent policy and previous events",
                5,
                1000,
                None,
                rules(0, 0, 100, 120, 300),
                100,
                2,
                5,
                TooFewReplicas,
            )
        },
        Case {
            down_events: uniform_events(&[1, 5, 9], 120),
            ..case(
                "scaleDown with pod policy limitation and previous events",
                1,
                1000,
                None,
                rules(5, 120, 0, 0, 300),
                100,
                2,
                100,
                ScaleDownLimit,
            )
        },
        Case {
            down_events: uniform_events(&[2, 4, 6], 120),
            ..case(
                "scaleDown with percent policy limitation and previous events",
                1,
                1000,
                None,
                rules(0, 0, 50, 120, 300),
                100,
                0,
                56,
                ScaleDownLimit,
            )
        },
        Case {
            up_events: uniform_events(&[2], 120),
            down_events: uniform_events(&[4], 120),
            ..case(
                "scaleDown with percent policy and previous scale up and down events",
                1,
                1000,
                None,
                rules(0, 0, 50, 180, 0),
                10,
                1,
                6,
                ScaleDownLimit,
            )
        },
        Case {
            // (100 + 30) - 10% = 117 is above the current 100: stay at 100.
            down_events: uniform_events(&[10, 10, 10], 120),
            ..case(
                "scaleDown with previous events preventing further scale down",
                1,
                1000,
                None,
                rules(0, 0, 10, 120, 300),
                100,
                0,
                100,
                ScaleDownLimit,
            )
        },
        Case {
            // (10 + 30) - 1000% = -360 is below the desired 5.
            down_events: uniform_events(&[10, 10, 10], 120),
            ..case(
                "scaleDown with with previous events still allowing more scale down",
                1,
                1000,
                None,
                rules(0, 0, 1000, 120, 300),
                10,
                5,
                5,
                DesiredWithinRange,
            )
        },
        Case {
            up_events: uniform_events(&[8, 12, 9, 11], 120),
            ..case(
                "check 'outdated' flag for events for one behavior for up",
                1,
                1000,
                rules(1000, 60, 0, 0, 0),
                None,
                100,
                200,
                200,
                DesiredWithinRange,
            )
        },
        Case {
            up_events: uniform_events(&[8, 12, 9, 11], 120),
            ..case(
                "check that events were not marked 'outdated' for two different policies in the behavior for up",
                1,
                1000,
                rules(1000, 120, 100, 60, 0),
                None,
                100,
                200,
                200,
                DesiredWithinRange,
            )
        },
        Case {
            up_events: uniform_events(&[8, 12, 9, 11], 120),
            ..case(
                "check that events were marked 'outdated' for two different policies in the behavior for up",
                1,
                1000,
                rules(1000, 30, 100, 60, 0),
                None,
                100,
                200,
                200,
                DesiredWithinRange,
            )
        },
        Case {
            down_events: uniform_events(&[8, 12, 9, 11], 120),
            ..case(
                "check 'outdated' flag for events for one behavior for down",
                1,
                1000,
                None,
                rules(1000, 60, 0, 0, 300),
                100,
                5,
                5,
                DesiredWithinRange,
            )
        },
        Case {
            down_events: uniform_events(&[8, 12, 9, 11], 120),
            ..case(
                "check that events were not marked 'outdated' for two different policies in the behavior for down",
                1,
                1000,
                None,
                rules(1000, 120, 100, 60, 300),
                100,
                5,
                5,
                DesiredWithinRange,
            )
        },
        Case {
            down_events: uniform_events(&[8, 12, 9, 11], 120),
            ..case(
                "check that events were marked 'outdated' for two different policies in the behavior for down",
                1,
                1000,
                None,
                rules(1000, 30, 100, 60, 300),
                100,
                5,
                5,
                DesiredWithinRange,
            )
        },
    ];
    assert_eq!(cases.len(), 42);
    for case in cases {
        let behavior = Behavior { scale_up: case.up, scale_down: case.down };
        let converted = convert_desired_replicas_with_behavior_rate(&RateArgs {
            current: case.current,
            desired: case.desired,
            min: case.min,
            max: case.max,
            scale_up: &behavior.resolved_scale_up(),
            scale_down: &behavior.resolved_scale_down(),
            up_events: &case.up_events,
            down_events: &case.down_events,
            now_ms: NOW,
        });
        assert_eq!((converted.replicas, converted.reason), (case.expected, case.reason), "{}", case.name);
    }
}

#[test]
fn uniform_events_match_the_go_helper() {
    // The worked example in generateEventsUniformDistribution's comment: 4 events over 120 s.
    let ages: Vec<u64> = uniform_events(&[1, 2, 3, 4], 120).iter().map(|e| (NOW - e.timestamp_ms) / 1000).collect();
    assert_eq!(ages, vec![105, 75, 45, 15]);
}

// ---- horizontal_test.go: TestCalculateScaleUpLimitWithScalingRules, TestCalculateScaleDownLimitWithBehaviors ----

#[test]
fn calculate_scale_limits_with_min_select_policy() {
    let rules = ResolvedRules {
        stabilization_window_seconds: 300,
        select_policy: SelectPolicy::Min,
        policies: vec![pods(2, 60), percent(50, 60)].into(),
    };
    assert_eq!(calculate_scale_up_limit_with_scaling_rules(1, &[], &[], &rules, NOW).0, 2);
    assert_eq!(calculate_scale_down_limit_with_behaviors(5, &[], &[], &rules, NOW).0, 3);
}

// ---- horizontal_test.go: TestConvertDesiredReplicasWithRules (legacy path) ----

#[test]
fn convert_desired_replicas_with_rules_cases() {
    // The Go test package sets scaleUpLimitFactor to 8; the production factor 2 is used here.
    let cases = [
        ("prenormalized desired replicas within range", 5, 7, 3, 8, 7, Reason::DesiredWithinRange),
        ("prenormalized desired replicas < minReplicas", 3, 1, 2, 8, 2, Reason::TooFewReplicas),
        ("prenormalized desired zeroed replicas within range", 1, 0, 0, 10, 0, Reason::DesiredWithinRange),
        ("maxReplicas is the limit because maxReplicas < scaleUpLimit", 20, 1000, 1, 10, 10, Reason::TooManyReplicas),
        (
            "scaleUpLimit is the limit because scaleUpLimit < maxReplicas",
            3,
            1000,
            1,
            2000,
            calculate_scale_up_limit(3),
            Reason::ScaleUpLimit,
        ),
    ];
    assert_eq!(calculate_scale_up_limit(3), 6);
    assert_eq!(calculate_scale_up_limit(0), 4);
    for (name, current, desired, min, max, expected, reason) in cases {
        let converted = convert_desired_replicas_with_rules(current, desired, min, max);
        assert_eq!((converted.replicas, converted.reason), (expected, reason), "{name}");
    }
}

// ---- horizontal_test.go: TestStoreScaleEvents ----

#[test]
fn store_scale_events() {
    struct Case {
        name: &'static str,
        previous: Vec<ScaleEvent>,
        expected: Vec<(u32, bool)>,
        rules: Option<ScalingRules>,
        expected_change: i64,
    }
    let cases = [
        Case {
            name: "empty entries with default behavior",
            previous: vec![],
            expected: vec![],
            rules: None,
            expected_change: 0,
        },
        Case {
            name: "empty entries with two-policy-behavior",
            previous: vec![],
            expected: vec![(5, false)],
            rules: Some(generate_scaling_rules(10, 60, 100, 60, 0)),
            expected_change: 0,
        },
        Case {
            name: "one outdated entry to be kept untouched without behavior",
            previous: vec![event(7, 61, false)],
            expected: vec![(7, false)],
            rules: None,
            expected_change: 0,
        },
        Case {
            name: "one outdated entry to be replaced with behavior",
            previous: vec![event(7, 61, false)],
            expected: vec![(5, false)],
            rules: Some(generate_scaling_rules(10, 60, 100, 60, 0)),
            expected_change: 0,
        },
        Case {
            name: "one actual entry to be not touched with behavior",
            previous: vec![event(7, 58, false)],
            expected: vec![(7, false), (5, false)],
            rules: Some(generate_scaling_rules(10, 60, 100, 60, 0)),
            expected_change: 7,
        },
        Case {
            name: "two entries, one of them to be replaced",
            previous: vec![event(7, 61, false), event(6, 59, false)],
            expected: vec![(5, false), (6, false)],
            rules: Some(generate_scaling_rules(10, 60, 0, 0, 0)),
            expected_change: 6,
        },
        Case {
            name: "replace one entry, use policies with different periods",
            previous: vec![event(8, 29, false), event(6, 59, false), event(7, 61, false), event(9, 61, false)],
            expected: vec![(8, false), (6, false), (7, true), (5, false)],
            rules: Some(generate_scaling_rules(10, 60, 100, 30, 0)),
            expected_change: 14,
        },
        Case {
            name: "two entries, both actual",
            previous: vec![event(7, 58, false), event(6, 59, false)],
            expected: vec![(7, false), (6, false), (5, false)],
            rules: Some(generate_scaling_rules(10, 120, 100, 30, 0)),
            expected_change: 13,
        },
    ];
    let summary = |events: &[ScaleEvent]| events.iter().map(|e| (e.replica_change, e.outdated)).collect::<Vec<_>>();
    for case in cases {
        assert_eq!(replicas_change_per_period(60, &case.previous, NOW), case.expected_change, "{}", case.name);

        let behavior_up = case.rules.clone().map(|rules| Behavior { scale_up: Some(rules), scale_down: None });
        let mut up = ScaleHistory { scale_up_events: case.previous.clone(), ..ScaleHistory::default() };
        record_scale(&mut up, behavior_up.as_ref(), 10, 15, NOW);
        assert_eq!(summary(&up.scale_up_events), case.expected, "up: {}", case.name);

        let behavior_down = case.rules.clone().map(|rules| Behavior { scale_up: None, scale_down: Some(rules) });
        let mut down = ScaleHistory { scale_down_events: case.previous.clone(), ..ScaleHistory::default() };
        record_scale(&mut down, behavior_down.as_ref(), 10, 5, NOW);
        assert_eq!(summary(&down.scale_down_events), case.expected, "down: {}", case.name);
    }
}

// ---- horizontal_test.go: TestZeroReplicas, TestTooFewReplicas, TestTooManyReplicas (reconcileAutoscaler) ----

#[test]
fn bounds_rules_bypass_stabilization_and_rates() {
    for behavior in [None, Some(Behavior::default())] {
        // TestZeroReplicas: min 3, max 5, 0 replicas -> scaling disabled, stays 0.
        let outcome = clamp_once(0, 4, 3, 5, behavior.as_ref());
        assert_eq!((outcome.replicas, outcome.reason), (0, Reason::ScalingDisabled));
        // TestTooFewReplicas: min 3, max 5, 2 replicas -> 3.
        let outcome = clamp_once(2, 0, 3, 5, behavior.as_ref());
        assert_eq!((outcome.replicas, outcome.reason), (3, Reason::TooFewReplicas));
        // TestTooManyReplicas: min 3, max 5, 10 replicas -> 5 at once, whatever the scale-down rate.
        let outcome = clamp_once(10, 10, 3, 5, behavior.as_ref());
        assert_eq!((outcome.replicas, outcome.reason), (5, Reason::TooManyReplicas));
        assert_eq!(outcome.steps.len(), 1);
        assert_eq!(outcome.steps[0].stage, ClampStage::Bounds);
    }
}

#[test]
fn scale_from_zero_when_min_is_zero() {
    // Ballast: minReplicas 0 is scale-to-zero, so 0 replicas is a normal state, not "scaling disabled".
    let outcome = clamp_once(0, 7, 0, 10, Some(&Behavior::default()));
    assert_eq!((outcome.replicas, outcome.reason), (4, Reason::ScaleUpLimit)); // 4 pods per 15 s from 0
    let outcome = clamp_once(0, 7, 0, 10, None);
    assert_eq!((outcome.replicas, outcome.reason), (4, Reason::ScaleUpLimit)); // max(2 x 0, 4)
    let outcome = clamp_once(0, 0, 0, 10, None);
    assert_eq!((outcome.replicas, outcome.reason), (0, Reason::DesiredWithinRange));
}

#[test]
fn fresh_history_records_current_as_initial_recommendation() {
    // recordInitialRecommendation: a new controller holds the current count for the scale-down window.
    let mut history = ScaleHistory::default();
    let input =
        ClampInput { current: 10, desired: 2, min: 1, max: 20, behavior: Some(&Behavior::default()), now_ms: NOW };
    let outcome = clamp(&input, &mut history);
    assert_eq!((outcome.replicas, outcome.reason), (10, Reason::ScaleDownStabilized));
    let stored: Vec<u32> = history.recommendations.iter().map(|r| r.replicas).collect();
    assert_eq!(stored, vec![10, 2]);
    let later = ClampInput { now_ms: NOW + 300_000, ..input };
    let outcome = clamp(&later, &mut history);
    assert_eq!((outcome.replicas, outcome.reason), (2, Reason::DesiredWithinRange));
}

#[test]
fn hostile_desired_is_capped_without_overflow() {
    for behavior in [None, Some(Behavior::default())] {
        let outcome = clamp_once(3, u32::MAX, 1, u32::MAX, behavior.as_ref());
        assert!(outcome.replicas <= 8, "{outcome:?}");
        assert_eq!(outcome.reason, Reason::ScaleUpLimit);
        let outcome = clamp_once(u32::MAX, u32::MAX, 0, u32::MAX, behavior.as_ref());
        assert_eq!(outcome.replicas, u32::MAX);
    }
    let huge = Behavior {
        scale_up: Some(ScalingRules {
            policies: Some(vec![pods(i32::MAX, 1800), percent(i32::MAX, 1800)]),
            ..ScalingRules::default()
        }),
        scale_down: None,
    };
    let outcome = clamp_once(u32::MAX - 1, u32::MAX, 0, u32::MAX, Some(&huge));
    assert_eq!((outcome.replicas, outcome.reason), (u32::MAX, Reason::DesiredWithinRange));
}

#[test]
fn legacy_stabilization_reports_scale_down_stabilized() {
    let mut history = ScaleHistory { recommendations: vec![rec(8, 100)], ..ScaleHistory::default() };
    let outcome =
        clamp(&ClampInput { current: 8, desired: 3, min: 1, max: 10, behavior: None, now_ms: NOW }, &mut history);
    assert_eq!(outcome.replicas, 8);
    assert_eq!(outcome.reason, Reason::ScaleDownStabilized);
    assert_eq!(outcome.able_to_scale_reason, Some(Reason::ScaleDownStabilized));
    assert_eq!(outcome.stabilized_replicas, Some(8));
}

#[test]
fn history_round_trips_through_json() {
    let history = ScaleHistory {
        recommendations: vec![rec(3, 10)],
        scale_up_events: vec![event(2, 5, false)],
        scale_down_events: vec![event(1, 50, true)],
    };
    let json = serde_json::to_string(&history).unwrap();
    assert!(json.contains(r#""scaleUpEvents":[{"replicaChange":2,"#), "{json}");
    assert_eq!(serde_json::from_str::<ScaleHistory>(&json).unwrap(), history);
    assert_eq!(serde_json::from_str::<ScaleHistory>("{}").unwrap(), ScaleHistory::default());
}

fn policy_strategy() -> impl Strategy<Value = HpaScalingPolicy> {
    (prop_oneof![Just(ScalingPolicyType::Pods), Just(ScalingPolicyType::Percent)], 1..=1000i32, 1..=600i32)
        .prop_map(|(kind, value, period_seconds)| HpaScalingPolicy { kind, value, period_seconds })
}

fn rules_strategy() -> impl Strategy<Value = Option<ScalingRules>> {
    let select = prop_oneof![Just(SelectPolicy::Max), Just(SelectPolicy::Min), Just(SelectPolicy::Disabled)];
    proptest::option::of(
        (
            proptest::option::of(0..=900i32),
            proptest::option::of(select),
            proptest::option::of(proptest::collection::vec(policy_strategy(), 1..4)),
        )
            .prop_map(|(stabilization_window_seconds, select_policy, policies)| ScalingRules {
                stabilization_window_seconds,
                select_policy,
                policies,
                tolerance: None,
            }),
    )
}

fn behavior_strategy() -> impl Strategy<Value = Option<Behavior>> {
    proptest::option::of(
        (rules_strategy(), rules_strategy()).prop_map(|(scale_up, scale_down)| Behavior { scale_up, scale_down }),
    )
}

fn history_strategy() -> impl Strategy<Value = ScaleHistory> {
    let recommendation = (0..2000u32, 0..1200i64).prop_map(|(replicas, seconds)| rec(replicas, seconds));
    let scale_event =
        (1..200u32, 0..1200i64, any::<bool>()).prop_map(|(change, seconds, old)| event(change, seconds, old));
    (
        proptest::collection::vec(recommendation, 0..25),
        proptest::collection::vec(scale_event.clone(), 0..10),
        proptest::collection::vec(scale_event, 0..10),
    )
        .prop_map(|(recommendations, scale_up_events, scale_down_events)| ScaleHistory {
            recommendations,
            scale_up_events,
            scale_down_events,
        })
}

fn desired_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![0..=3000u32, Just(u32::MAX), any::<u32>()]
}

/// (min, max, current) with min <= current <= max.
fn in_range_strategy() -> impl Strategy<Value = (u32, u32, u32)> {
    (0..=50u32, 0..=2000u32).prop_flat_map(|(min, span)| (Just(min), Just(min + span), min..=min + span))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// With the current count in range the result is in [min, max], between the current and the (bounded)
    /// desired count when `behavior` is set, and within the rate limits computed from the history.
    #[test]
    fn result_within_bounds_and_rate_limits(
        behavior in behavior_strategy(),
        (min, max, current) in in_range_strategy(),
        desired in desired_strategy(),
        mut history in history_strategy(),
    ) {
        let before = history.clone();
        let outcome = clamp(&ClampInput { current, desired, min, max, behavior: behavior.as_ref(), now_ms: NOW }, &mut history);
        let (r, c) = (i64::from(outcome.replicas), i64::from(current));
        prop_assert!(outcome.replicas >= min && outcome.replicas <= max, "{outcome:?}");
        prop_assert_eq!(outcome.steps.last().map(|step| step.replicas_out), Some(outcome.replicas));
        match &behavior {
            Some(behavior) => {
                let bounded = i64::from(desired.clamp(min, max));
                prop_assert!(r >= c.min(bounded) && r <= c.max(bounded), "moved past the desired count: {outcome:?}");
                let (up_limit, _) = calculate_scale_up_limit_with_scaling_rules(
                    c, &before.scale_up_events, &before.scale_down_events, &behavior.resolved_scale_up(), NOW);
                let (down_limit, _) = calculate_scale_down_limit_with_behaviors(
                    c, &before.scale_up_events, &before.scale_down_events, &behavior.resolved_scale_down(), NOW);
                if r > c {
                    prop_assert!(r <= up_limit, "above the scale-up limit {up_limit}: {outcome:?}");
                }
                if r < c {
                    prop_assert!(r >= down_limit, "below the scale-down limit {down_limit}: {outcome:?}");
                }
            }
            None => {
                if r > c {
                    prop_assert!(r <= calculate_scale_up_limit(c), "{outcome:?}");
                }
            }
        }
        // The raw decision is recorded.
        prop_assert!(history.recommendations.iter().any(|rec| rec.replicas == desired && rec.timestamp_ms == NOW));
    }

    /// Outside [min, max] (or at 0 with min > 0) the bounds rules decide, for any history and behavior.
    #[test]
    fn bounds_rules_for_any_current(
        behavior in behavior_strategy(),
        (min, max) in (0..=100u32, 0..=100u32).prop_map(|(a, b)| (a.min(b), a.max(b))),
        current in prop_oneof![0..=200u32, Just(u32::MAX)],
        desired in desired_strategy(),
        mut history in history_strategy(),
    ) {
        let outcome = clamp(&ClampInput { current, desired, min, max, behavior: behavior.as_ref(), now_ms: NOW }, &mut history);
        if current == 0 && min != 0 {
            prop_assert_eq!((outcome.replicas, outcome.reason), (0, Reason::ScalingDisabled));
        } else if current > max {
            prop_assert_eq!((outcome.replicas, outcome.reason), (max, Reason::TooManyReplicas));
        } else if current < min {
            prop_assert_eq!((outcome.replicas, outcome.reason), (min, Reason::TooFewReplicas));
        } else {
            prop_assert!(outcome.replicas >= min && outcome.replicas <= max);
        }
    }

    /// Driving the clamps in a loop (decide, scale, record) with single Pods policies, every scale leaves the net
    /// change over the policy period ending then within the policy's value: the rate limit holds across calls.
    #[test]
    fn pods_policies_hold_over_any_period(
        up_pods in 1..20i32,
        up_period in 1..120i32,
        down_pods in 1..20i32,
        down_period in 1..120i32,
        steps in proptest::collection::vec((1..40u64, 0..200u32), 1..60),
    ) {
        let behavior = Behavior {
            scale_up: Some(ScalingRules { policies: Some(vec![pods(up_pods, up_period)]), ..ScalingRules::default() }),
            scale_down: Some(ScalingRules {
                stabilization_window_seconds: Some(0),
                policies: Some(vec![pods(down_pods, down_period)]),
                ..ScalingRules::default()
            }),
        };
        let mut history = ScaleHistory::default();
        let mut current = 50u32;
        let mut now = NOW;
        let mut applied: Vec<(u64, i64)> = Vec::new();
        for (gap_seconds, desired) in steps {
            now += gap_seconds * 1000;
            let outcome = clamp(&ClampInput { current, desired, min: 0, max: 200, behavior: Some(&behavior), now_ms: now }, &mut history);
            if outcome.replicas == current {
                continue;
            }
            record_scale(&mut history, Some(&behavior), current, outcome.replicas, now);
            let scaled_up = outcome.replicas > current;
            applied.push((now, i64::from(outcome.replicas) - i64::from(current)));
            current = outcome.replicas;
            // The policy bounds the change since the period's start, judged when scaling.
            let net_within = |period: i32| -> i64 {
                applied.iter().filter(|(at, _)| within(now, *at, period)).map(|(_, change)| change).sum()
            };
            if scaled_up {
                prop_assert!(net_within(up_period) <= i64::from(up_pods), "net scale-up in {up_period}s above {up_pods}");
            } else {
                prop_assert!(-net_within(down_period) <= i64::from(down_pods), "net scale-down in {down_period}s above {down_pods}");
            }
        }
    }
}
