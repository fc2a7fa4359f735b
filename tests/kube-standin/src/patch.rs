//! The four PATCH content types. Strategic merge and server-side apply are simplified (see README): both merge maps
//! key by key and replace lists whole.

use serde_json::Value;

use crate::status::ApiError;

/// The PATCH flavours, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
    Apply,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        match media_type {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::StrategicMerge),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(Self::Apply),
            _ => Err(ApiError::unsupported_media_type(content_type)),
        }
    }
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let target_map = target.as_object_mut().expect("made an object above");
    for (key, value) in patch_map {
        if value.is_null() {
            target_map.remove(key);
        } else {
            merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Strategic merge patch, simplified: maps merge as in a merge patch, `$patch: delete` on a map removes it, other
/// `$`-directives are dropped, and lists are replaced whole (no merge keys).
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = strip_directives(patch);
        return;
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("delete") {
        *target = Value::Null;
        return;
    }
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = strip_directives(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let target_map = target.as_object_mut().expect("made an object above");
    for (key, value) in patch_map.iter().filter(|(key, _)| !key.starts_with('$')) {
        if value.is_null() {
            target_map.remove(key);
            continue;
        }
        let slot = target_map.entry(key.clone()).or_insert(Value::Null);
        strategic_merge_patch(slot, value);
        if slot.is_null() {
            target_map.remove(key);
        }
    }
}

fn strip_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| !key.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// RFC 6902 JSON patch.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let operations: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| {
        ApiError::bad_request(format!("the server rejected our request due to an error in our request: {e}"))
    })?;
    json_patch::patch(target, &operations).map_err(|e| {
        ApiError::unprocessable(format!("the server rejected our request due to an error in our request: {e}"))
    })
}

/// Server-side apply, simplified: the applied configuration is merged into the live object (maps key by key, lists
/// replaced, explicit nulls remove). Fields a manager stops applying are not removed and there are no conflicts.
pub fn apply(target: &mut Value, applied: &Value) {
    merge_patch(target, applied);
}

/// Parses a body as JSON, or as YAML for apply patches (JSON is YAML, so JSON bodies work for both).
pub fn parse_body(body: &[u8], yaml: bool) -> Result<Value, ApiError> {
    match serde_json::from_slice(body) {
        Ok(value) => Ok(value),
        Err(json_error) if !yaml => {
            Err(ApiError::bad_request(format!("the object provided is unrecognized or malformed: {json_error}")))
        }
        Err(_) => {
            serde_norway::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}, "l": [3]}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
    }

    #[test]
    fn strategic_merge_honours_delete_directive() {
        let mut target = json!({"spec": {"x": {"y": 1}, "z": 2}});
        strategic_merge_patch(&mut target, &json!({"spec": {"x": {"$patch": "delete"}, "w": [1]}}));
        assert_eq!(target, json!({"spec": {"z": 2, "w": [1]}}));
    }

    #[test]
    fn json_patch_test_failure_is_an_error() {
        let mut target = json!({"a": 1});
        let error = json_patch(&mut target, &json!([{"op": "test", "path": "/a", "value": 2}])).unwrap_err();
        assert_eq!(error.code, 422);
        json_patch(&mut target, &json!([{"op": "replace", "path": "/a", "value": 2}])).unwrap();
        assert_eq!(target, json!({"a": 2}));
    }

    #[test]
    fn parses_yaml_apply_bodies() {
        let value = parse_body(b"apiVersion: v1\nkind: ConfigMap\ndata:\n  k: v\n", true).unwrap();
        assert_eq!(value["data"]["k"], "v");
        assert!(parse_body(b"kind: x", false).is_err());
    }
}
