//! Hand-written schema pieces where the derived one would not be a structural Kubernetes schema.

use schemars::{Schema, SchemaGenerator, json_schema};

/// Any JSON object, kept as written (plugin config).
pub(crate) fn free_form(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

/// Any JSON object, kept as written, optional (status blobs the controller reads back).
pub(crate) fn free_form_optional(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "object", "nullable": true, "x-kubernetes-preserve-unknown-fields": true })
}

/// A Kubernetes quantity (`0.1`, `100m`): a number or a string.
pub(crate) fn quantity(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "nullable": true, "x-kubernetes-int-or-string": true })
}

/// `fallback`: `{mode: hold}` or `{mode: fixed, replicas: N}` (an internally tagged enum, flattened for the
/// structural schema).
pub(crate) fn fallback(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "description": "What to do when the plugin fails: hold the current count, or go to `replicas` (mode fixed).",
        "properties": {
            "mode": { "type": "string", "enum": ["hold", "fixed"] },
            "replicas": { "type": "integer", "format": "int32", "minimum": 0 }
        },
        "required": ["mode"]
    })
}
