//! A CustomResourceDefinition version's `openAPIV3Schema` applied to custom resources as kube-apiserver's
//! apiextensions code does (k8s.io/apiextensions-apiserver `pkg/apiserver/schema/{pruning,defaulting}` and the
//! kube-openapi validator behind `ValidateCustomResource`):
//!
//! 1. [`decode`], on every request body (and on the patched object): prune fields the schema does not declare,
//!    drop nulls of non-nullable fields without a default, keep only ObjectMeta's fields in `metadata`, apply
//!    `default`s.
//! 2. [`validate`], on the object about to be stored: types, `nullable`, `required`, `enum`, bounds, lengths,
//!    `pattern`, item counts, `allOf`/`anyOf`/`oneOf`/`not`; on updates a value equal to the stored one is not
//!    validated again (CRD validation ratcheting).

use serde_json::{Map, Value};

/// The fields of `metav1.ObjectMeta`: others in a custom resource's `metadata` are dropped on decoding.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Kept as they are in an embedded resource (and at the root): the schema does not describe them.
const TYPE_AND_OBJECT_META: &[&str] = &["apiVersion", "kind", "metadata"];

/// One failed field, as `k8s.io/apimachinery` `field.Error` renders it.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: String,
    /// The `StatusCause` reason: `FieldValueInvalid`, `FieldValueTypeInvalid`, `FieldValueRequired`, ...
    pub reason: &'static str,
    /// The error body, e.g. `Invalid value: "x": spec.a in body must be of type integer: "string"`.
    pub message: String,
}

fn flag(schema: &Value, name: &str) -> bool {
    schema[name].as_bool() == Some(true)
}

/// The schema of the values of an `additionalProperties` map: `Some(None)` for `additionalProperties: true`.
fn additional(schema: &Value) -> Option<Option<&Value>> {
    match schema.get("additionalProperties") {
        Some(values @ Value::Object(_)) => Some(Some(values)),
        Some(Value::Bool(true)) => Some(None),
        _ => None,
    }
}

/// The schema a field of an object falls under: its property, else the `additionalProperties` schema.
fn field_schema<'a>(schema: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    let schema = schema?;
    schema["properties"].get(key).or_else(|| additional(schema).flatten())
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// Removes undeclared fields, collecting their paths (for `unknown field` warnings and strict validation).
fn prune(value: &mut Value, schema: Option<&Value>, embedded: bool, path: &str, pruned: &mut Vec<String>) {
    let preserve = schema.is_some_and(|s| flag(s, "x-kubernetes-preserve-unknown-fields"));
    match value {
        Value::Object(map) => {
            let embedded = embedded || schema.is_some_and(|s| flag(s, "x-kubernetes-embedded-resource"));
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if embedded && TYPE_AND_OBJECT_META.contains(&key.as_str()) {
                    continue;
                }
                let declared = schema.and_then(|s| s["properties"].get(&key).map(Some).or_else(|| additional(s)));
                let child = child_path(path, &key);
                match declared {
                    Some(sub) => prune(map.get_mut(&key).expect("listed above"), sub, false, &child, pruned),
                    None if preserve => {}
                    None => {
                        map.remove(&key);
                        pruned.push(child);
                    }
                }
            }
        }
        Value::Array(items) => {
            let item_schema = schema.and_then(|s| s.get("items"));
            for (index, item) in items.iter_mut().enumerate() {
                prune(item, item_schema, false, &format!("{path}[{index}]"), pruned);
            }
        }
        _ => {}
    }
}

/// Drops `null` where the schema neither allows it (`nullable`) nor has a default to put there.
fn drop_nulls(value: &mut Value, schema: Option<&Value>) {
    match value {
        Value::Object(map) => {
            map.retain(|key, child| {
                let sub = field_schema(schema, key);
                !(child.is_null() && sub.is_some_and(|s| !flag(s, "nullable") && s.get("default").is_none()))
            });
            for (key, child) in map.iter_mut() {
                drop_nulls(child, field_schema(schema, key));
            }
        }
        Value::Array(items) => {
            let item_schema = schema.and_then(|s| s.get("items"));
            for item in items {
                drop_nulls(item, item_schema);
            }
        }
        _ => {}
    }
}

fn replaces_with_default(value: Option<&Value>, schema: &Value) -> bool {
    value.is_none_or(|v| v.is_null() && !flag(schema, "nullable"))
}

/// Fills in `default`s for absent fields (and non-nullable nulls), top-down so a default's own fields get theirs.
fn apply_defaults(value: &mut Value, schema: Option<&Value>) {
    let Some(schema) = schema else { return };
    match value {
        Value::Object(map) => {
            for (key, property) in schema["properties"].as_object().into_iter().flatten() {
                if let Some(default) = property.get("default")
                    && replaces_with_default(map.get(key), property)
                {
                    map.insert(key.clone(), default.clone());
                }
            }
            let values = additional(schema).flatten();
            for (key, child) in map.iter_mut() {
                match schema["properties"].get(key) {
                    Some(property) => apply_defaults(child, Some(property)),
                    None => {
                        if let Some(values) = values {
                            if let Some(default) = values.get("default")
                                && replaces_with_default(Some(child), values)
                            {
                                *child = default.clone();
                            }
                            apply_defaults(child, Some(values));
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = schema.get("items") else { return };
            for item in items {
                if let Some(default) = item_schema.get("default")
                    && replaces_with_default(Some(item), item_schema)
                {
                    *item = default.clone();
                }
                apply_defaults(item, Some(item_schema));
            }
        }
        _ => {}
    }
}

/// What the API server's decoding does to a custom resource in a request: prune, drop nulls, coerce `metadata`,
/// default. Returns the paths of the pruned (unknown) fields.
pub fn decode(object: &mut Value, schema: &Value) -> Vec<String> {
    let mut pruned = Vec::new();
    prune(object, Some(schema), true, "", &mut pruned);
    drop_nulls(object, Some(schema));
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        let unknown: Vec<String> =
            metadata.keys().filter(|k| !OBJECT_META_FIELDS.contains(&k.as_str())).cloned().collect();
        for key in unknown {
            metadata.remove(&key);
            pruned.push(format!("metadata.{key}"));
        }
    }
    apply_defaults(object, Some(schema));
    pruned
}

/// The JSON-schema type name of a value, as the validator reports it.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A value as `field.Error` prints it: strings quoted, numbers and booleans bare, the rest as JSON.
fn render(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// A schema bound as Go's `%v` prints a float64: `1`, not `1.0`.
fn render_bound(bound: f64) -> String {
    if bound.fract() == 0.0 && bound.abs() < 1e15 { format!("{}", bound as i64) } else { bound.to_string() }
}

struct Validator<'a> {
    errors: &'a mut Vec<FieldError>,
}

impl Validator<'_> {
    fn invalid(&mut self, path: &str, value: &Value, detail: String) {
        let message = format!("Invalid value: {}: {detail}", render(value));
        self.errors.push(FieldError { field: path.to_owned(), reason: "FieldValueInvalid", message });
    }

    fn push(&mut self, path: &str, reason: &'static str, message: String) {
        self.errors.push(FieldError { field: path.to_owned(), reason, message });
    }

    /// Validates `value` at `path`; `old` is the stored value at the same place, for ratcheting.
    fn node(&mut self, value: &Value, schema: &Value, path: &str, old: Option<&Value>) {
        if old == Some(value) {
            return;
        }
        let in_body = format!("{path} in body");
        if value.is_null() && flag(schema, "nullable") {
            return;
        }
        let actual = type_name(value);
        let (accepted, wanted): (&[&str], &str) = if flag(schema, "x-kubernetes-int-or-string") {
            (&["integer", "string"], "integer,string")
        } else {
            match schema["type"].as_str() {
                Some("number") => (&["number", "integer"], "number"),
                Some("integer") => (&["integer"], "integer"),
                Some("string") => (&["string"], "string"),
                Some("boolean") => (&["boolean"], "boolean"),
                Some("array") => (&["array"], "array"),
                Some("object") => (&["object"], "object"),
                _ => (&[], ""),
            }
        };
        if !accepted.is_empty() && !accepted.contains(&actual) {
            let message = format!("Invalid value: {actual:?}: {in_body} must be of type {wanted}: {actual:?}");
            return self.push(path, "FieldValueTypeInvalid", message);
        }
        if let Some(allowed) = schema["enum"].as_array()
            && !allowed.contains(value)
        {
            let supported: Vec<String> = allowed
                .iter()
                .map(|v| format!("{:?}", v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
                .collect();
            let message = format!("Unsupported value: {}: supported values: {}", render(value), supported.join(", "));
            self.push(path, "FieldValueNotSupported", message);
        }
        match value {
            Value::Number(number) => self.number(number.as_f64().unwrap_or_default(), value, schema, &in_body, path),
            Value::String(text) => self.string(text, value, schema, &in_body, path),
            Value::Array(items) => {
                let count = items.len() as u64;
                if let Some(min) = schema["minItems"].as_u64().filter(|min| count < *min) {
                    self.invalid(path, &Value::from(count), format!("{in_body} should have at least {min} items"));
                }
                if let Some(max) = schema["maxItems"].as_u64().filter(|max| count > *max) {
                    self.push(path, "FieldValueTooMany", format!("Too many: {count}: must have at most {max} items"));
                }
                if let Some(item_schema) = schema.get("items") {
                    for (index, item) in items.iter().enumerate() {
                        self.node(item, item_schema, &format!("{path}[{index}]"), None);
                    }
                }
            }
            Value::Object(map) => self.object(map, schema, path, old),
            _ => {}
        }
        self.combinators(value, schema, &in_body, path);
    }

    fn number(&mut self, number: f64, value: &Value, schema: &Value, in_body: &str, path: &str) {
        if let Some(min) = schema["minimum"].as_f64() {
            let exclusive = flag(schema, "exclusiveMinimum");
            if number < min || (exclusive && number == min) {
                let relation = if exclusive { "greater than" } else { "greater than or equal to" };
                self.invalid(path, value, format!("{in_body} should be {relation} {}", render_bound(min)));
            }
        }
        if let Some(max) = schema["maximum"].as_f64() {
            let exclusive = flag(schema, "exclusiveMaximum");
            if number > max || (exclusive && number == max) {
                let relation = if exclusive { "less than" } else { "less than or equal to" };
                self.invalid(path, value, format!("{in_body} should be {relation} {}", render_bound(max)));
            }
        }
        if let Some(factor) = schema["multipleOf"].as_f64().filter(|f| *f > 0.0)
            && (number / factor).fract() != 0.0
        {
            self.invalid(path, value, format!("{in_body} should be a multiple of {}", render_bound(factor)));
        }
    }

    fn string(&mut self, text: &str, value: &Value, schema: &Value, in_body: &str, path: &str) {
        let length = text.chars().count() as u64;
        if let Some(min) = schema["minLength"].as_u64().filter(|min| length < *min) {
            self.invalid(path, value, format!("{in_body} should be at least {min} chars long"));
        }
        if let Some(max) = schema["maxLength"].as_u64().filter(|max| length > *max) {
            let unit = if max == 1 { "byte" } else { "bytes" };
            self.push(path, "FieldValueTooLong", format!("Too long: may not be more than {max} {unit}"));
        }
        if let Some(pattern) = schema["pattern"].as_str() {
            match regex::Regex::new(pattern) {
                Ok(regex) if regex.is_match(text) => {}
                // The API server refuses a CRD whose pattern does not compile; here it fails every value.
                _ => self.invalid(path, value, format!("{in_body} should match '{pattern}'")),
            }
        }
    }

    fn object(&mut self, map: &Map<String, Value>, schema: &Value, path: &str, old: Option<&Value>) {
        for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !map.contains_key(required) {
                self.push(&child_path(path, required), "FieldValueRequired", "Required value".to_owned());
            }
        }
        let embedded = flag(schema, "x-kubernetes-embedded-resource") || path.is_empty();
        for (key, child) in map {
            if embedded && TYPE_AND_OBJECT_META.contains(&key.as_str()) {
                continue;
            }
            if let Some(sub) = field_schema(Some(schema), key) {
                self.node(child, sub, &child_path(path, key), old.and_then(|o| o.get(key)));
            }
        }
    }

    /// `allOf`, `anyOf`, `oneOf` and `not`: value validations over the same place.
    fn combinators(&mut self, value: &Value, schema: &Value, in_body: &str, path: &str) {
        let passes = |sub: &Value| {
            let mut errors = Vec::new();
            Validator { errors: &mut errors }.node(value, sub, path, None);
            errors.is_empty()
        };
        for sub in schema["allOf"].as_array().into_iter().flatten() {
            self.node(value, sub, path, None);
        }
        if let Some(any) = schema["anyOf"].as_array()
            && !any.iter().any(passes)
        {
            self.invalid(path, value, format!("{in_body} must validate at least one schema (anyOf)"));
        }
        if let Some(one) = schema["oneOf"].as_array()
            && one.iter().filter(|sub| passes(sub)).count() != 1
        {
            self.invalid(path, value, format!("{in_body} must validate one and only one schema (oneOf)"));
        }
        if let Some(not) = schema.get("not")
            && passes(not)
        {
            self.invalid(path, value, format!("{in_body} must not validate the schema (not)"));
        }
    }
}

/// Validates a decoded custom resource against its schema; `old` is the stored object on updates.
pub fn validate(object: &Value, schema: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    Validator { errors: &mut errors }.node(object, schema, "", old);
    errors
}
