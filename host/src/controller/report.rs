//! `ballast status` and `ballast explain`: the controller's view, read back from ScalingPolicy status.

use std::fmt::Write as _;

use kube::ResourceExt;

use super::crd::{ScalingPolicy, service_key};
use crate::runtime::text::escaped;

/// Status text as printed: whoever can write a policy's status (or a plugin whose words reached it) must not be
/// able to send a terminal escape sequence or forge a line.
fn printable(text: &str) -> String {
    escaped(text, usize::MAX)
}

/// A table of policies: target, current, desired, last reason, plugin digest, age.
pub fn status_table(policies: &[ScalingPolicy], now: k8s_openapi::jiff::Timestamp) -> String {
    let mut out = format!(
        "{:<32} {:<32} {:>7} {:>7} {:<14} {:<60} {:>6}\n",
        "POLICY", "TARGET", "CURRENT", "DESIRED", "PLUGIN", "LAST REASON", "AGE"
    );
    for policy in policies {
        let status = policy.status.clone().unwrap_or_default();
        let count = |n: Option<u32>| n.map_or("-".to_owned(), |n| n.to_string());
        let digest = status.plugin_digest.as_deref().map_or("-".to_owned(), |d| d.chars().take(12).collect());
        let reason = status.last_decision.as_ref().map_or("-".to_owned(), |d| printable(&d.summary));
        let age = policy.creation_timestamp().map_or("-".to_owned(), |t| age(now.as_second() - t.0.as_second()));
        let _ = writeln!(
            out,
            "{:<32} {:<32} {:>7} {:>7} {:<14} {:<60} {:>6}",
            printable(&service_key(policy).to_string()),
            printable(&format!("{}/{}", policy.spec.target.kind, policy.spec.target.name)),
            count(status.current_replicas),
            count(status.desired_replicas),
            printable(&digest),
            reason,
            age
        );
    }
    out
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

/// The policy's name in `NS/NAME` form, `default` when no namespace is given.
pub fn parse_policy_name(text: &str) -> (String, String) {
    match text.split_once('/') {
        Some((namespace, name)) => (namespace.to_owned(), name.to_owned()),
        None => ("default".to_owned(), text.to_owned()),
    }
}

/// Whether `policy` is the one named `NS/NAME`.
pub fn is_named(policy: &ScalingPolicy, namespace: &str, name: &str) -> bool {
    policy.namespace().as_deref() == Some(namespace) && policy.name_any() == name
}
