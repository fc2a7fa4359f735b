//! `ballast status` and `ballast explain`: the controller's view, read back from ScalingPolicy status.

use std::fmt::Write as _;

use kube::ResourceExt;

use crate::policy::documents::service_key;
use crate::runtime::text::escaped;
use crate::spec::ScalingPolicy;

/// Status text as printed: whoever can write a policy's status (or a plugin whose words reached it) must not be
/// able to send a terminal escape sequence or forge a line.
fn printable(text: &str) -> String {
    escaped(text, usize::MAX)
}

/// One policy as `ballast status` shows it; the table's row, and the item of `-o json|yaml`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusRow {
    pub(crate) namespace: String,
    pub(crate) name: String,
    /// `Kind/name` of the workload.
    pub(crate) target: String,
    pub(crate) current_replicas: Option<u32>,
    pub(crate) desired_replicas: Option<u32>,
    pub(crate) plugin_digest: Option<String>,
    pub(crate) last_reason: Option<String>,
    /// Seconds since the policy was created.
    pub(crate) age_seconds: Option<i64>,
    pub(crate) conditions: Vec<crate::policy::status::Condition>,
}

impl StatusRow {
    pub fn of(policy: &ScalingPolicy, now: k8s_openapi::jiff::Timestamp) -> Self {
        let status = policy.status.clone().unwrap_or_default();
        let key = service_key(policy);
        StatusRow {
            namespace: key.namespace,
            name: key.name,
            target: format!("{}/{}", policy.spec.target.kind, policy.spec.target.name),
            current_replicas: status.current_replicas,
            desired_replicas: status.desired_replicas,
            plugin_digest: status.plugin_digest,
            last_reason: status.last_decision.map(|d| d.summary),
            age_seconds: policy.creation_timestamp().map(|t| (now.as_second() - t.0.as_second()).max(0)),
            conditions: status.conditions,
        }
    }
}

/// A table of policies: target, current, desired, last reason, plugin digest, age.
pub fn status_table(policies: &[ScalingPolicy], now: k8s_openapi::jiff::Timestamp) -> String {
    let mut out = format!(
        "{:<32} {:<32} {:>7} {:>7} {:<14} {:<60} {:>6}\n",
        "POLICY", "TARGET", "CURRENT", "DESIRED", "PLUGIN", "LAST REASON", "AGE"
    );
    for row in policies.iter().map(|p| StatusRow::of(p, now)) {
        let count = |n: Option<u32>| n.map_or("-".to_owned(), |n| n.to_string());
        let digest = row.plugin_digest.as_deref().map_or("-".to_owned(), |d| d.chars().take(12).collect());
        let _ = writeln!(
            out,
            "{:<32} {:<32} {:>7} {:>7} {:<14} {:<60} {:>6}",
            printable(&format!("{}/{}", row.namespace, row.name)),
            printable(&row.target),
            count(row.current_replicas),
            count(row.desired_replicas),
            printable(&digest),
            row.last_reason.as_deref().map_or("-".to_owned(), printable),
            row.age_seconds.map_or("-".to_owned(), age)
        );
    }
    out
}

/// The last decision of one policy as data (`ballast explain -o json|yaml`): the policy, its target and plugin, the
/// whole recorded decision and the conditions.
pub fn explain_document(policy: &ScalingPolicy) -> serde_json::Value {
    let key = service_key(policy);
    let status = policy.status.clone().unwrap_or_default();
    serde_json::json!({
        "namespace": key.namespace,
        "name": key.name,
        "target": format!("{}/{}", policy.spec.target.kind, policy.spec.target.name),
        "plugin": status.plugin_name,
        "pluginDigest": status.plugin_digest,
        "lastDecision": status.last_decision,
        "conditions": status.conditions,
    })
}

fn age(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// The last decision of one policy: inputs, plugin proposals, each clamp step and the final count.
pub fn explain(policy: &ScalingPolicy) -> String {
    let key = service_key(policy);
    let Some(status) = &policy.status else {
        return format!("ScalingPolicy {key} has no status yet: no ballast controller has decided for it\n");
    };
    let Some(decision) = &status.last_decision else {
        return format!("ScalingPolicy {key} has no decision recorded yet\n");
    };
    let mut out = String::new();
    let target = format!("{}/{}", policy.spec.target.kind, policy.spec.target.name);
    let _ = writeln!(out, "ScalingPolicy {} -> {}", printable(&key.to_string()), printable(&target));
    let _ = writeln!(out, "decided at:     {}", printable(&decision.time));
    let _ = writeln!(
        out,
        "plugin:         {} (sha256 {})",
        printable(status.plugin_name.as_deref().unwrap_or("-")),
        printable(&decision.plugin_digest)
    );
    let _ = writeln!(out, "summary:        {}", printable(&decision.summary));
    let record = decision.record.clone().unwrap_or_default();
    let _ = writeln!(out, "replicas:       current {} (ready {})", decision.current, record["ready"]);
    let _ = writeln!(out, "inputs:");
    if let Some(observation) = record["observation"].as_object() {
        for (name, value) in observation {
            if !value.is_null() {
                let _ = writeln!(out, "  {name}: {value}");
            }
        }
    }
    let _ = writeln!(out, "plugin verdict: {}", record["plugin"]);
    for proposal in &decision.proposals {
        let _ = writeln!(out, "  proposal {}: {} replicas", printable(&proposal.metric), proposal.replicas);
    }
    if let Some(logs) = record["logs"].as_array().filter(|logs| !logs.is_empty()) {
        let _ = writeln!(out, "plugin log:");
        for line in logs {
            let field = |name: &str| printable(line[name].as_str().unwrap_or("-"));
            let _ = writeln!(out, "  [{}] {}", field("level"), field("message"));
        }
    }
    if let Some(fallback) = record["fallback"].as_str() {
        let _ = writeln!(out, "fallback:       {}", printable(fallback));
    }
    let _ = writeln!(out, "desired:        {}", decision.desired);
    match record["clamp"]["steps"].as_array() {
        Some(steps) => {
            let _ = writeln!(out, "clamp steps:");
            for step in steps {
                let _ = writeln!(out, "  {step}");
            }
        }
        None => {
            let _ = writeln!(out, "clamp steps:    none (paused)");
        }
    }
    let _ = writeln!(
        out,
        "final:          {} replicas ({})",
        decision.replicas,
        printable(decision.clamp_reason.as_deref().unwrap_or("-"))
    );
    if let Some(shadow) = &decision.shadow {
        let failed = shadow.failure.as_ref().map(|kind| format!(" failed ({kind})")).unwrap_or_default();
        let _ = writeln!(
            out,
            "shadow:         would set {} replicas (asked {}){failed}: {} [sha256 {}, never applied]",
            shadow.replicas,
            shadow.desired,
            printable(&shadow.reason),
            printable(&shadow.plugin_digest)
        );
    }
    for condition in &status.conditions {
        let _ = writeln!(
            out,
            "condition {}={} {}: {}",
            printable(&condition.type_),
            printable(&condition.status),
            printable(&condition.reason),
            printable(&condition.message)
        );
    }
    out
}

/// A policy named `NS/NAME` with `--namespace` saying another namespace.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{text} names namespace {named}, but --namespace says {given}; give one of them")]
pub struct NamespaceMismatch {
    text: String,
    named: String,
    given: String,
}

/// The policy's namespace and name from `NS/NAME`, or `NAME` in `namespace` (`default` when none is given). A
/// `NS/NAME` whose namespace disagrees with `namespace` is refused.
pub fn parse_policy_name(text: &str, namespace: Option<&str>) -> Result<(String, String), NamespaceMismatch> {
    match (text.split_once('/'), namespace) {
        (Some((ns, _)), Some(given)) if ns != given => {
            Err(NamespaceMismatch { text: text.to_owned(), named: ns.to_owned(), given: given.to_owned() })
        }
        (Some((ns, name)), _) => Ok((ns.to_owned(), name.to_owned())),
        (None, given) => Ok((given.unwrap_or("default").to_owned(), text.to_owned())),
    }
}

/// Whether `policy` is the one named `NS/NAME`.
pub fn is_named(policy: &ScalingPolicy, namespace: &str, name: &str) -> bool {
    policy.namespace().as_deref() == Some(namespace) && policy.name_any() == name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_is_named_with_its_namespace_or_in_the_given_one() {
        let parse = |text, namespace| parse_policy_name(text, namespace);
        assert_eq!(parse("web", None), Ok(("default".into(), "web".into())));
        assert_eq!(parse("web", Some("ai")), Ok(("ai".into(), "web".into())));
        assert_eq!(parse("ai/web", None), Ok(("ai".into(), "web".into())));
        assert_eq!(parse("ai/web", Some("ai")), Ok(("ai".into(), "web".into())));
        let refused = parse("ai/web", Some("other")).unwrap_err().to_string();
        assert!(refused.contains("ai/web") && refused.contains("other"), "{refused}");
    }

    #[test]
    fn structured_output_is_the_rows_and_keeps_plugin_text_escaped() {
        let mut policy: ScalingPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "ballast.dev/v1alpha1", "kind": "ScalingPolicy",
            "metadata": {"name": "web", "namespace": "ai"},
            "spec": {"target": {"name": "web"}, "maxReplicas": 4, "plugin": {"builtin": "hpa"}},
        }))
        .unwrap();
        let mut status = crate::policy::status::ScalingPolicyStatus {
            current_replicas: Some(2),
            desired_replicas: Some(3),
            ..Default::default()
        };
        status.last_decision = Some(crate::policy::status::LastDecision {
            summary: "2 -> 3 (\u{1b}[2Jforged\nrow)".into(),
            ..Default::default()
        });
        policy.status = Some(status);
        let row = StatusRow::of(&policy, k8s_openapi::jiff::Timestamp::now());
        assert_eq!((row.namespace.as_str(), row.target.as_str()), ("ai", "Deployment/web"));
        assert_eq!((row.current_replicas, row.desired_replicas), (Some(2), Some(3)));
        let yaml = serde_yaml_ng::to_string(&explain_document(&policy)).unwrap();
        let json = serde_json::to_string(&serde_json::json!({ "items": [row] })).unwrap();
        for text in [&yaml, &json] {
            assert!(!text.contains('\u{1b}'), "an escape sequence reached the output: {text}");
            assert!(!text.contains("\nrow"), "a newline in plugin text forged a line: {text}");
        }
        assert!(yaml.contains("lastDecision:") && yaml.contains("forged"), "{yaml}");
    }
}
