//! `ballast plugin test FILE --cases CASES.yaml`: table tests of a plugin. Each case is one `decide` call on a
//! fresh instance: an input (replica counts, config, state, the host's Observation) and what must come out (a
//! replica count or a policy error, and optionally words of the reason). A case with `steps:` instead makes one
//! call per step, each passed the state the previous step's decision returned, as the host passes it from one
//! decision to the next.
//!
//! ```yaml
//! cases:
//!   - name: scales up on high GPU duty cycle
//!     input:
//!       currentReplicas: 2        # required
//!       readyReplicas: 2          # default: currentReplicas
//!       minReplicas: 1            # default 1
//!       maxReplicas: 10           # default 10
//!       nowMs: 0                  # default 0
//!       config: {}                # plugin config object, default {}
//!       state: null               # base64 state blob, optional
//!       observation:              # the host's Observation (camelCase, every field optional)
//!         gpuDutyCyclePercent: 90
//!     expect:
//!       replicas: 3               # or `error: TEXT` (a substring of the policy error)
//!       reasonContains: gpu       # optional substring of the reason
//!   - name: learns across calls
//!     steps:
//!       - input: {currentReplicas: 2, config: {...}, observation: {...}}
//!         expect: {replicas: 2}
//!       - afterMs: 10000          # nowMs moves on this much from the previous step (default 1000)
//!         input: {currentReplicas: 2, observation: {...}}   # no state or nowMs; config defaults to the last
//!         expect: {replicas: 7, reasonContains: arrivals 3.00/s}
//! ```
//!
//! Unknown fields are errors naming the case and the field: a misspelt metric would otherwise test nothing.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::decision::{Moment, ServiceMemory, policy_input};
use crate::observation::{Observation, QueueCounts};
use crate::runtime::{CompiledPolicy, Decision, Plugin, PluginFailure, PluginLog, PolicyEngine};
use crate::spec::ServiceKey;

#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    #[error("{what}: not YAML: {source}")]
    Yaml { what: String, source: serde_yaml_ng::Error },
    #[error("{what}: {source}")]
    Invalid { what: String, source: CaseError },
}

/// What is wrong with a cases file, where in it. Each message says what to write instead.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("{0} must be a mapping")]
    NotMapping(&'static str),
    #[error("{path}: unknown field `{field}` (known: {})", .known.join(", "))]
    UnknownField { path: &'static str, field: String, known: Vec<String> },
    #[error("{path}.{field} must be a whole number of 0 or more, not {value}")]
    NotWhole { path: &'static str, field: &'static str, value: Value },
    #[error("{path}.{field} must be text, not {value}")]
    NotText { path: &'static str, field: &'static str, value: Value },
    /// A required field is absent, or a rule of the format is broken; the text says which.
    #[error("{0}")]
    Format(&'static str),
    #[error(
        "input.{0} is given only in the first step: later steps get the previous decision's state, and `afterMs` \
         (beside `input`) moves the time on"
    )]
    CarriedInLaterStep(&'static str),
    #[error("input.config must be a mapping (the plugin's config), not {0}")]
    ConfigNotMapping(Value),
    #[error("input.state must be base64 (as in a policy's status.memory.pluginState): {0}")]
    StateNotBase64(base64::DecodeError),
    #[error("input.observation: {0}")]
    Observation(serde_json::Error),
    #[error("step {step}: {source}")]
    InStep { step: usize, source: Box<CaseError> },
    #[error("{label}: {source}")]
    InCase { label: String, source: Box<CaseError> },
    #[error("{0}: another case has the same name; names must be unique")]
    DuplicateName(String),
}

/// One table row: one step, or several run in order with the state carried from one to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub(crate) name: String,
    pub(crate) steps: Vec<Step>,
}

/// One `decide` call of a case. Only the first step's `input.state` is read: a later step gets the state the
/// previous step's decision returned (or the one before, when that step failed, as the host keeps it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Step {
    pub(crate) input: CaseInput,
    pub(crate) expect: Expectation,
}

/// How far the host's clock moves between two steps that do not say: one tick.
const DEFAULT_STEP_MS: u64 = 1000;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CaseInput {
    pub(crate) current_replicas: u32,
    pub(crate) ready_replicas: u32,
    pub(crate) min_replicas: u32,
    pub(crate) max_replicas: u32,
    pub(crate) now_ms: u64,
    pub(crate) config: Value,
    pub(crate) state: Option<Vec<u8>>,
    pub(crate) observation: Observation,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expected {
    Replicas(u32),
    /// A policy error whose message contains this text.
    Error(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Expectation {
    pub(crate) outcome: Expected,
    pub(crate) reason_contains: Option<String>,
}

/// Parses a cases file; `what` names it in errors.
pub fn parse(what: &str, text: &str) -> Result<Vec<Case>, CasesError> {
    let invalid = |source: CaseError| CasesError::Invalid { what: what.into(), source };
    let root: Value = serde_yaml_ng::from_str(text).map_err(|source| CasesError::Yaml { what: what.into(), source })?;
    let root = object(&root, "the file").map_err(invalid)?;
    only_fields(root, "the file", &["cases"]).map_err(invalid)?;
    let Some(Value::Array(rows)) = root.get("cases") else {
        return Err(invalid(CaseError::Format("`cases:` must be a list of cases (name, input, expect)")));
    };
    if rows.is_empty() {
        return Err(invalid(CaseError::Format("`cases:` is empty; add at least one case")));
    }
    let mut cases: Vec<Case> = Vec::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        let name = row.get("name").and_then(Value::as_str).map(str::to_owned);
        let label = match &name {
            Some(name) => format!("case {} ({name})", index + 1),
            None => format!("case {}", index + 1),
        };
        let case = parse_case(row, name)
            .map_err(|source| invalid(CaseError::InCase { label: label.clone(), source: source.into() }))?;
        if cases.iter().any(|c| c.name == case.name) {
            return Err(invalid(CaseError::DuplicateName(label)));
        }
        cases.push(case);
    }
    Ok(cases)
}

fn object<'a>(value: &'a Value, path: &'static str) -> Result<&'a Map<String, Value>, CaseError> {
    value.as_object().ok_or(CaseError::NotMapping(path))
}

fn only_fields(map: &Map<String, Value>, path: &'static str, allowed: &[&str]) -> Result<(), CaseError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(CaseError::UnknownField {
            path,
            field: unknown.clone(),
            known: allowed.iter().map(|f| f.to_string()).collect(),
        }),
        None => Ok(()),
    }
}

fn whole<T: TryFrom<u64>>(
    map: &Map<String, Value>,
    path: &'static str,
    field: &'static str,
) -> Result<Option<T>, CaseError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_u64().and_then(|n| T::try_from(n).ok()).map(Some).ok_or_else(|| CaseError::NotWhole {
            path,
            field,
            value: value.clone(),
        }),
    }
}

fn text(map: &Map<String, Value>, path: &'static str, field: &'static str) -> Result<Option<String>, CaseError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(value) => Err(CaseError::NotText { path, field, value: value.clone() }),
    }
}

fn parse_case(row: &Value, name: Option<String>) -> Result<Case, CaseError> {
    let map = object(row, "the case")?;
    only_fields(map, "the case", &["name", "input", "expect", "steps"])?;
    let name = name.ok_or(CaseError::Format("has no `name` (text)"))?;
    let Some(steps) = map.get("steps") else {
        let input = parse_input(map.get("input").ok_or(CaseError::Format("has no `input` (or `steps`)"))?, None)?;
        let expect = parse_expect(map.get("expect").ok_or(CaseError::Format("has no `expect`"))?)?;
        return Ok(Case { name, steps: vec![Step { input, expect }] });
    };
    if map.contains_key("input") || map.contains_key("expect") {
        return Err(CaseError::Format("has both `steps` and `input`/`expect`; with steps, each step has its own"));
    }
    let Value::Array(rows) = steps else {
        return Err(CaseError::Format("`steps` must be a list of steps (input, expect)"));
    };
    if rows.is_empty() {
        return Err(CaseError::Format("`steps` is empty; give at least one step"));
    }
    let mut parsed: Vec<Step> = Vec::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        let step = parse_step(row, parsed.last())
            .map_err(|source| CaseError::InStep { step: index + 1, source: source.into() })?;
        parsed.push(step);
    }
    Ok(Case { name, steps: parsed })
}

fn parse_step(row: &Value, previous: Option<&Step>) -> Result<Step, CaseError> {
    let map = object(row, "the step")?;
    let allowed: &[&str] = if previous.is_some() { &["afterMs", "input", "expect"] } else { &["input", "expect"] };
    only_fields(map, "the step", allowed)?;
    let mut input = parse_input(map.get("input").ok_or(CaseError::Format("has no `input`"))?, previous)?;
    if let Some(previous) = previous {
        let after = whole::<u64>(map, "the step", "afterMs")?.unwrap_or(DEFAULT_STEP_MS);
        input.now_ms =
            previous.input.now_ms.checked_add(after).ok_or(CaseError::Format("afterMs takes nowMs past 2^64 - 1"))?;
    }
    let expect = parse_expect(map.get("expect").ok_or(CaseError::Format("has no `expect`"))?)?;
    Ok(Step { input, expect })
}

/// A case's or a step's input. A step after the first (`previous` is the step before) gives no `nowMs` (its step's
/// `afterMs` moves the time on) and no `state` (the previous decision's is passed), and keeps the previous config
/// unless it gives one.
fn parse_input(value: &Value, previous: Option<&Step>) -> Result<CaseInput, CaseError> {
    let map = object(value, "input")?;
    let mut fields = vec!["currentReplicas", "readyReplicas", "minReplicas", "maxReplicas", "config", "observation"];
    match previous {
        None => fields.extend(["nowMs", "state"]),
        Some(_) => {
            if let Some(carried) = ["nowMs", "state"].into_iter().find(|f| map.contains_key(*f)) {
                return Err(CaseError::CarriedInLaterStep(carried));
            }
        }
    }
    only_fields(map, "input", &fields)?;
    let current =
        whole::<u32>(map, "input", "currentReplicas")?.ok_or(CaseError::Format("input.currentReplicas is required"))?;
    let config = match map.get("config") {
        None | Some(Value::Null) => previous.map_or_else(|| Value::Object(Map::new()), |p| p.input.config.clone()),
        Some(config @ Value::Object(_)) => config.clone(),
        Some(other) => return Err(CaseError::ConfigNotMapping(other.clone())),
    };
    let state = text(map, "input", "state")?
        .map(|b64| base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(CaseError::StateNotBase64))
        .transpose()?;
    let observation = match map.get("observation") {
        None | Some(Value::Null) => Observation::default(),
        Some(value) => parse_observation(value)?,
    };
    Ok(CaseInput {
        current_replicas: current,
        ready_replicas: whole(map, "input", "readyReplicas")?.unwrap_or(current),
        min_replicas: whole(map, "input", "minReplicas")?.unwrap_or(1),
        max_replicas: whole(map, "input", "maxReplicas")?.unwrap_or(10),
        now_ms: whole(map, "input", "nowMs")?.unwrap_or(0),
        config,
        state,
        observation,
    })
}

/// Field names of a type as it serializes (every field present).
fn serialized_fields(value: impl serde::Serialize) -> Vec<String> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The host's Observation, with the friendlier forms a table wants: queue counts default to 0 and `custom` may be
/// a mapping of name to value.
fn parse_observation(value: &Value) -> Result<Observation, CaseError> {
    let map = object(value, "input.observation")?;
    let mut full = Observation::default();
    // Fields left out when empty are fields too.
    full.sample_age_ms.insert(String::new(), 0);
    full.queue_paused = Some(false);
    let known = serialized_fields(full);
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    only_fields(map, "input.observation", &known)?;
    let mut map = map.clone();
    if let Some(queue) = map.get_mut("queue").filter(|q| !q.is_null()) {
        let given = object(queue, "input.observation.queue")?;
        let queue_fields = serialized_fields(QueueCounts::default());
        let queue_fields: Vec<&str> = queue_fields.iter().map(String::as_str).collect();
        only_fields(given, "input.observation.queue", &queue_fields)?;
        let Value::Object(mut counts) = serde_json::to_value(QueueCounts::default()).expect("serializes") else {
            unreachable!("QueueCounts is a struct")
        };
        counts.extend(given.clone());
        *queue = Value::Object(counts);
    }
    if let Some(Value::Object(custom)) = map.get("custom") {
        let pairs: Vec<Value> =
            custom.iter().map(|(name, v)| Value::Array(vec![name.clone().into(), v.clone()])).collect();
        map.insert("custom".into(), Value::Array(pairs));
    }
    serde_json::from_value(Value::Object(map)).map_err(CaseError::Observation)
}

fn parse_expect(value: &Value) -> Result<Expectation, CaseError> {
    let map = object(value, "expect")?;
    only_fields(map, "expect", &["replicas", "error", "reasonContains"])?;
    let replicas = whole::<u32>(map, "expect", "replicas")?;
    let error = text(map, "expect", "error")?;
    let reason_contains = text(map, "expect", "reasonContains")?;
    let outcome = match (replicas, error) {
        (Some(n), None) => Expected::Replicas(n),
        (None, Some(text)) if reason_contains.is_none() => Expected::Error(text),
        (None, Some(_)) => {
            return Err(CaseError::Format(
                "expect.reasonContains applies to decisions; with `error:` put the words there",
            ));
        }
        _ => return Err(CaseError::Format("expect must have exactly one of `replicas` or `error`")),
    };
    Ok(Expectation { outcome, reason_contains })
}

/// What one case did, step by step.
#[derive(Debug)]
pub struct CaseResult {
    pub(crate) name: String,
    pub(crate) steps: Vec<StepResult>,
}

/// What one `decide` call of a case did.
#[derive(Debug)]
pub(crate) struct StepResult {
    pub(crate) duration: Duration,
    /// Empty when the step passed; otherwise the diff, `-` expected and `+` got.
    pub(crate) diff: Vec<String>,
    /// What the plugin logged and printed during the call.
    pub(crate) logs: Vec<PluginLog>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.steps.iter().all(|step| step.diff.is_empty())
    }
}

/// Runs every case, each call on a fresh instance of the plugin: only the state blob carries anything from one
/// step to the next (the host may replace an instance between any two calls).
pub fn run(engine: &Arc<PolicyEngine>, compiled: &Arc<CompiledPolicy>, cases: &[Case]) -> Vec<CaseResult> {
    let key = ServiceKey { namespace: "default".into(), name: "plugin-test".into() };
    cases
        .iter()
        .map(|case| {
            let mut state = case.steps[0].input.state.clone();
            let steps = case
                .steps
                .iter()
                .map(|step| {
                    let i = &step.input;
                    let spec = super::check::sample_spec(i.min_replicas, i.max_replicas);
                    let memory = ServiceMemory { plugin_state: state.clone(), ..ServiceMemory::default() };
                    let at = Moment { now_ms: i.now_ms, current: i.current_replicas, ready: i.ready_replicas };
                    let config = crate::decision::config_text(&i.config);
                    let input = policy_input(&key, &spec, &config, &memory, &i.observation, at);
                    let outcome = Plugin::new(engine.clone(), compiled.clone()).decide(&input);
                    // As the host does: a decision's state replaces the last; a failed call keeps it.
                    if let Ok(decision) = &outcome.result {
                        state.clone_from(&decision.state);
                    }
                    let diff = compare(&step.expect, &outcome.result);
                    StepResult { duration: outcome.duration, diff, logs: outcome.logs }
                })
                .collect();
            CaseResult { name: case.name.clone(), steps }
        })
        .collect()
}

fn compare(expect: &Expectation, got: &Result<Decision, PluginFailure>) -> Vec<String> {
    let mut diff = Vec::new();
    match (&expect.outcome, got) {
        (Expected::Replicas(want), Ok(decision)) => {
            if decision.replicas != *want {
                diff.push(format!("- replicas: {want}"));
                diff.push(format!("+ replicas: {}", decision.replicas));
            }
            if let Some(words) = &expect.reason_contains
                && !decision.reason.contains(words.as_str())
            {
                diff.push(format!("- reason containing {words:?}"));
                diff.push(format!("+ reason: {:?}", decision.reason));
            } else if !diff.is_empty() {
                diff.push(format!("  reason: {:?}", decision.reason));
            }
        }
        (Expected::Replicas(want), Err(failure)) => {
            diff.push(format!("- replicas: {want}"));
            diff.push(format!("+ the plugin {failure}"));
        }
        (Expected::Error(words), Err(PluginFailure::Error(message))) => {
            if !message.contains(words.as_str()) {
                diff.push(format!("- policy error containing {words:?}"));
                diff.push(format!("+ policy error: {message:?}"));
            }
        }
        (Expected::Error(words), Err(failure)) => {
            diff.push(format!("- policy error containing {words:?}"));
            diff.push(format!("+ the plugin {failure}"));
        }
        (Expected::Error(words), Ok(decision)) => {
            diff.push(format!("- policy error containing {words:?}"));
            diff.push(format!("+ replicas: {} ({:?})", decision.replicas, decision.reason));
        }
    }
    diff
}

/// Test-runner output: a line per case, the diff under each failure (under the step's number in a case of several
/// steps), what the plugin logged, and a summary line.
pub fn render(results: &[CaseResult]) -> String {
    let mut out = String::new();
    for result in results {
        let ms = result.steps.iter().map(|s| s.duration.as_secs_f64()).sum::<f64>() * 1000.0;
        let verdict = if result.passed() { "ok  " } else { "FAIL" };
        out.push_str(&format!("{verdict}  {} ({ms:.2} ms)\n", result.name));
        let several = result.steps.len() > 1;
        for (n, step) in result.steps.iter().enumerate() {
            let indent = if several { "          " } else { "        " };
            if several && !(step.diff.is_empty() && step.logs.is_empty()) {
                let status = if step.diff.is_empty() { "ok" } else { "FAIL" };
                out.push_str(&format!("        step {} of {}: {status}\n", n + 1, result.steps.len()));
            }
            for line in &step.diff {
                out.push_str(&format!("{indent}{line}\n"));
            }
            for line in &step.logs {
                out.push_str(&format!("{indent}log [{}] {}\n", line.level, line.message));
            }
        }
    }
    let passed = results.iter().filter(|r| r.passed()).count();
    let failed = results.len() - passed;
    out.push_str(&format!("\n{} cases: {passed} passed, {failed} failed\n", results.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    const ONE: &str = "cases:\n  - name: up\n    input:\n      currentReplicas: 2\n      config: {gpuUtilization: 60}\n      \
                       observation: {gpuDutyCyclePercent: 90, queue: {waiting: 3}, custom: {tokens: 5}}\n    \
                       expect: {replicas: 3, reasonContains: gpu}\n";

    #[test]
    fn parses_defaults_and_friendly_forms() {
        let cases = parse("t.yaml", ONE).unwrap();
        let input = &cases[0].steps[0].input;
        assert_eq!((input.ready_replicas, input.min_replicas, input.max_replicas, input.now_ms), (2, 1, 10, 0));
        assert_eq!(input.observation.queue.unwrap().waiting, 3);
        assert_eq!(input.observation.custom, vec![("tokens".to_owned(), 5.0)]);
        assert_eq!(cases[0].steps[0].expect.outcome, Expected::Replicas(3));
        let paused = parse("t.yaml", &ONE.replace("queue: {waiting: 3}", "queue: {waiting: 3}, queuePaused: true"));
        assert_eq!(paused.unwrap()[0].steps[0].input.observation.queue_paused, Some(true));
    }

    #[test]
    fn unknown_fields_name_the_case_and_the_field() {
        let cases = [
            (ONE.replace("gpuDutyCyclePercent", "gpuDutyCycle"), "input.observation: unknown field `gpuDutyCycle`"),
            (ONE.replace("waiting: 3", "wating: 3"), "input.observation.queue: unknown field `wating`"),
            (ONE.replace("currentReplicas", "current"), "input: unknown field `current`"),
            (ONE.replace("reasonContains", "reason"), "expect: unknown field `reason`"),
            (ONE.replace("    expect", "    exepct"), "the case: unknown field `exepct`"),
        ];
        for (text, expected) in cases {
            let err = parse("t.yaml", &text).unwrap_err().to_string();
            assert!(err.starts_with("t.yaml: case 1 (up): ") && err.contains(expected), "{err}");
        }
        let err = parse("t.yaml", &ONE.replace("replicas: 3, ", "")).unwrap_err().to_string();
        assert!(err.contains("exactly one of `replicas` or `error`"), "{err}");
    }

    const STEPS: &str = "cases:\n  - name: two\n    steps:\n      - input: {currentReplicas: 2, nowMs: 500, config: {a: 1}}\n        \
                         expect: {replicas: 2}\n      - input: {currentReplicas: 3}\n        expect: {replicas: 3}\n      \
                         - afterMs: 10000\n        input: {currentReplicas: 3, config: {a: 2}}\n        \
                         expect: {replicas: 3}\n";

    #[test]
    fn steps_move_the_clock_keep_the_config_and_refuse_what_is_carried() {
        let steps = &parse("t.yaml", STEPS).unwrap()[0].steps;
        assert_eq!(steps.iter().map(|s| s.input.now_ms).collect::<Vec<_>>(), [500, 1500, 11500]);
        assert_eq!(steps[1].input.config, serde_json::json!({"a": 1}));
        assert_eq!(steps[2].input.config, serde_json::json!({"a": 2}));
        let refused = [
            (
                STEPS.replace("{currentReplicas: 3}", "{currentReplicas: 3, state: AAAA}"),
                "step 2: input.state is given only",
            ),
            (
                STEPS.replace("{currentReplicas: 3}", "{currentReplicas: 3, nowMs: 9}"),
                "step 2: input.nowMs is given only",
            ),
            (
                STEPS.replace("- input: {currentReplicas: 2,", "- afterMs: 5\n        input: {currentReplicas: 2,"),
                "step 1: the step: unknown field `afterMs`",
            ),
            (
                STEPS.replace("    steps:", "    input: {currentReplicas: 1}\n    steps:"),
                "has both `steps` and `input`",
            ),
        ];
        for (text, expected) in refused {
            let err = parse("t.yaml", &text).unwrap_err().to_string();
            assert!(err.starts_with("t.yaml: case 1 (two): ") && err.contains(expected), "{err}");
        }
    }

    #[test]
    fn a_failing_case_shows_a_diff() {
        let engine = testing::engine(crate::runtime::RuntimeLimits::default());
        let compiled = engine.load("hpa", crate::runtime::builtin("hpa").unwrap()).unwrap();
        let text = ONE.replace("replicas: 3", "replicas: 7");
        let results = run(&engine, &compiled, &parse("t.yaml", &text).unwrap());
        assert!(!results[0].passed());
        let rendered = render(&results);
        assert!(rendered.contains("- replicas: 7\n") && rendered.contains("+ replicas: 3\n"), "{rendered}");
        assert!(rendered.contains("1 cases: 0 passed, 1 failed"), "{rendered}");
        let results = run(&engine, &compiled, &parse("t.yaml", ONE).unwrap());
        assert!(results[0].passed(), "{}", render(&results));
    }
}
