//! API errors rendered as `meta.k8s.io/v1` `Status` objects, with the messages and reasons the real API server uses.

use serde_json::{Map, Value, json};

use crate::resources::ResourceType;
use crate::schema::FieldError;

/// One failed request: an HTTP code plus the `Status` body the real server would send.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds for the `Retry-After` header (429 and 503 faults).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>, details: Option<Value>) -> Self {
        Self { code, reason, message: message.into(), details, retry_after: None }
    }

    /// `details` naming an object by its qualified resource, as `NewNotFound`/`NewConflict` do.
    fn resource_details(rt: &ResourceType, name: &str) -> Value {
        let mut details = Map::new();
        details.insert("name".into(), json!(name));
        if !rt.group.is_empty() {
            details.insert("group".into(), json!(rt.group));
        }
        details.insert("kind".into(), json!(rt.plural));
        Value::Object(details)
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        let message = format!("{} \"{name}\" not found", rt.qualified());
        Self::new(404, "NotFound", message, Some(Self::resource_details(rt, name)))
    }

    /// A namespaced request into a namespace that does not exist (the NamespaceLifecycle admission answer).
    pub fn namespace_not_found(namespace: &str) -> Self {
        let message = format!("namespaces \"{namespace}\" not found");
        Self::new(404, "NotFound", message, Some(json!({"name": namespace, "kind": "namespaces"})))
    }

    /// A path that names no served resource.
    pub fn path_not_found() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource", Some(json!({})))
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        let message = format!("{} \"{name}\" already exists", rt.qualified());
        Self::new(409, "AlreadyExists", message, Some(Self::resource_details(rt, name)))
    }

    pub fn conflict(rt: &ResourceType, name: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes \
             to the latest version and try again",
            rt.qualified()
        );
        Self::new(409, "Conflict", message, Some(Self::resource_details(rt, name)))
    }

    pub fn precondition_failed(rt: &ResourceType, name: &str, what: &str, wanted: &str, actual: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: {what} in precondition: {wanted}, \
             {what} in object meta: {actual}",
            rt.qualified()
        );
        Self::new(409, "Conflict", message, Some(Self::resource_details(rt, name)))
    }

    /// 422 with one cause per field, formatted like `NewInvalid`.
    pub fn invalid(rt: &ResourceType, name: &str, causes: &[(String, String)]) -> Self {
        let causes: Vec<FieldError> = causes
            .iter()
            .map(|(field, message)| FieldError {
                field: field.clone(),
                reason: "FieldValueInvalid",
                message: message.clone(),
            })
            .collect();
        Self::invalid_fields(rt, name, &causes)
    }

    /// 422 with one cause per field error, each with its own reason (`FieldValueRequired`, ...).
    pub fn invalid_fields(rt: &ResourceType, name: &str, causes: &[FieldError]) -> Self {
        let qualified_kind = if rt.group.is_empty() { rt.kind.clone() } else { format!("{}.{}", rt.kind, rt.group) };
        let joined: Vec<String> = causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect();
        let message = if joined.len() == 1 {
            format!("{qualified_kind} \"{name}\" is invalid: {}", joined[0])
        } else {
            format!("{qualified_kind} \"{name}\" is invalid: [{}]", joined.join(", "))
        };
        let causes: Vec<Value> =
            causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect();
        let mut details = Map::new();
        details.insert("name".into(), json!(name));
        if !rt.group.is_empty() {
            details.insert("group".into(), json!(rt.group));
        }
        details.insert("kind".into(), json!(rt.kind));
        details.insert("causes".into(), Value::Array(causes));
        Self::new(422, "Invalid", message, Some(Value::Object(details)))
    }

    /// 413 for a request body over the server's limit.
    pub fn request_entity_too_large(limit: usize) -> Self {
        Self::new(413, "RequestEntityTooLarge", format!("Request entity too large: limit is {limit}"), None)
    }

    /// 422 without a named object: a patch that cannot be applied.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message, None)
    }

    /// 504 for a resourceVersion newer than the server has reached.
    pub fn too_large_resource_version(requested: u64, current: u64) -> Self {
        let mut error = Self::new(
            504,
            "Timeout",
            format!("Too large resource version: {requested}, current: {current}"),
            Some(
                json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}),
            ),
        );
        error.retry_after = Some(1);
        error
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message, None)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", None)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"
            ),
            None,
        )
    }

    /// 410 for a resourceVersion older than the retained history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message, None)
    }

    pub fn too_many_requests(retry_after: u64) -> Self {
        let mut error = Self::new(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
            Some(json!({"retryAfterSeconds": retry_after})),
        );
        error.retry_after = Some(retry_after);
        error
    }

    pub fn internal_error(message: impl Into<String>) -> Self {
        let message = format!("Internal error occurred: {}", message.into());
        Self::new(500, "InternalError", message.clone(), Some(json!({"causes": [{"message": message}]})))
    }

    pub fn service_unavailable(retry_after: u64) -> Self {
        let mut error =
            Self::new(503, "ServiceUnavailable", "the server is currently unable to handle the request", None);
        error.retry_after = Some(retry_after);
        error
    }

    /// The `Status` body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// The `Status` a successful DELETE answers with for resources that do not return the deleted object.
pub fn delete_success(rt: &ResourceType, name: &str, uid: &str) -> Value {
    let mut details = Map::new();
    details.insert("name".into(), json!(name));
    if !rt.group.is_empty() {
        details.insert("group".into(), json!(rt.group));
    }
    details.insert("kind".into(), json!(rt.plural));
    details.insert("uid".into(), json!(uid));
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}
