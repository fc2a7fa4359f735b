//! The validation the API server applies to `events.k8s.io/v1` Events (`ValidateEventCreate` /
//! `ValidateEventUpdate` in k8s.io/kubernetes `pkg/apis/core/validation/events.go`). Field paths are those of the
//! internal Event the server validates: `note` is reported as `message`, `regarding` as `involvedObject`,
//! `deprecatedCount` as `count`, and so on.

use serde_json::Value;

use crate::schema::FieldError;

const REPORTING_INSTANCE_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const REASON_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

/// (events.k8s.io/v1 field, internal field) pairs that may not change after creation.
const IMMUTABLE: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("reason", "reason"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("type", "type"),
    ("eventTime", "eventTime"),
    ("action", "action"),
    ("related", "related"),
    ("reportingController", "reportingController"),
    ("reportingInstance", "reportingInstance"),
];

fn text<'a>(event: &'a Value, field: &str) -> &'a str {
    event[field].as_str().unwrap_or_default()
}

fn required(field: &str) -> FieldError {
    FieldError { field: field.to_owned(), reason: "FieldValueRequired", message: "Required value".to_owned() }
}

fn invalid(field: &str, value: &str, detail: &str) -> FieldError {
    FieldError {
        field: field.to_owned(),
        reason: "FieldValueInvalid",
        message: format!("Invalid value: {value:?}: {detail}"),
    }
}

/// `IsQualifiedName`: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
fn qualified_name_errors(value: &str) -> Vec<String> {
    let (prefix, name) = match value.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, value),
    };
    let mut errors = Vec::new();
    let name_chars = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let ends_alphanumeric = name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if name.is_empty() {
        errors.push("name part must be non-empty".to_owned());
    } else if name.len() > 63 {
        errors.push("name part must be no more than 63 characters".to_owned());
    }
    let well_formed = name_chars && ends_alphanumeric;
    if !name.is_empty() && !well_formed {
        errors.push(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an \
             alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is \
             '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
                .to_owned(),
        );
    }
    if let Some(prefix) = prefix {
        let subdomain = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|label| {
                !label.is_empty()
                    && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !subdomain {
            errors.push("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".to_owned());
        }
    }
    errors
}

/// `legacyValidateEvent` for an Event with an `eventTime` (and the namespace rule for one without).
fn legacy(event: &Value, errors: &mut Vec<FieldError>) {
    let namespace = event["metadata"]["namespace"].as_str().unwrap_or_default();
    let regarding_namespace = event["regarding"]["namespace"].as_str().unwrap_or_default();
    let namespace_mismatch =
        || invalid("involvedObject.namespace", regarding_namespace, "does not match event.namespace");
    if event["eventTime"].is_null() {
        let agrees = if regarding_namespace.is_empty() {
            namespace.is_empty() || namespace == "default"
        } else {
            namespace == regarding_namespace
        };
        if !agrees {
            errors.push(namespace_mismatch());
        }
        return;
    }
    if regarding_namespace.is_empty() && namespace != "default" && namespace != "kube-system" {
        errors.push(namespace_mismatch());
    }
    let controller = text(event, "reportingController");
    if controller.is_empty() {
        errors.push(required("reportingController"));
    }
    for message in qualified_name_errors(controller) {
        errors.push(invalid("reportingController", controller, &message));
    }
    let limited = [
        ("reportingInstance", "reportingInstance", REPORTING_INSTANCE_LIMIT, true),
        ("action", "action", ACTION_LIMIT, true),
        ("reason", "reason", REASON_LIMIT, true),
        ("note", "message", NOTE_LIMIT, false),
    ];
    for (field, internal, limit, must_be_set) in limited {
        let value = text(event, field);
        if must_be_set && value.is_empty() {
            errors.push(required(internal));
        }
        // Go's len: bytes, not characters.
        if value.len() > limit {
            errors.push(invalid(internal, "", &format!("can have at most {limit} characters")));
        }
    }
}

fn series(event: &Value, errors: &mut Vec<FieldError>) {
    let series = &event["series"];
    if series.is_null() {
        return;
    }
    if series["count"].as_i64().unwrap_or(0) < 2 {
        errors.push(invalid("series.count", "", "should be at least 2"));
    }
    if series["lastObservedTime"].is_null() {
        errors.push(required("series.lastObservedTime"));
    }
}

/// The errors of an `events.k8s.io/v1` Event about to be created (`old` = None) or updated.
pub fn validate(event: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    legacy(event, &mut errors);
    let Some(old) = old else {
        series(event, &mut errors);
        if event["eventTime"].is_null() {
            errors.push(required("eventTime"));
        }
        let event_type = text(event, "type");
        if event_type != "Normal" && event_type != "Warning" {
            errors.push(invalid("type", "", &format!("has invalid value: {event_type}")));
        }
        for (field, internal) in
            [("deprecatedFirstTimestamp", "firstTimestamp"), ("deprecatedLastTimestamp", "lastTimestamp")]
        {
            if !event[field].is_null() {
                errors.push(invalid(internal, "", "needs to be unset"));
            }
        }
        if event["deprecatedCount"].as_i64().unwrap_or(0) != 0 {
            errors.push(invalid("count", "", "needs to be unset"));
        }
        if !text(&event["deprecatedSource"], "component").is_empty()
            || !text(&event["deprecatedSource"], "host").is_empty()
        {
            errors.push(invalid("source", "", "needs to be unset"));
        }
        return errors;
    };
    if event["series"] != old["series"] {
        series(event, &mut errors);
    }
    for (field, internal) in IMMUTABLE {
        if event[*field] != old[*field] {
            errors.push(FieldError {
                field: (*internal).to_owned(),
                reason: "FieldValueInvalid",
                message: format!("Invalid value: {}: field is immutable", event[*field]),
            });
        }
    }
    errors
}

/// An `events.k8s.io/v1` Event as core `v1` shows it (the two versions share one storage in a real API server; the
/// conversion is `k8s.io/kubernetes/pkg/apis/events/v1`'s): `note` is `message`, `regarding` is `involvedObject`,
/// `reportingController` is `reportingComponent`, `deprecated*` lose the prefix.
pub fn to_core_v1(event: &Value) -> Value {
    const RENAMED: &[(&str, &str)] = &[
        ("note", "message"),
        ("regarding", "involvedObject"),
        ("reportingController", "reportingComponent"),
        ("deprecatedSource", "source"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
    ];
    let mut core = serde_json::Map::new();
    for (field, value) in event.as_object().into_iter().flatten() {
        let name = RENAMED.iter().find(|(from, _)| from == field).map_or(field.as_str(), |(_, to)| to);
        core.insert(name.to_owned(), value.clone());
    }
    // The core version's `source` and `reportingComponent` are always present (empty when unset).
    core.entry("source").or_insert_with(|| serde_json::json!({}));
    core.entry("reportingComponent").or_insert_with(|| Value::String(String::new()));
    core.entry("reportingInstance").or_insert_with(|| Value::String(String::new()));
    Value::Object(core)
}
