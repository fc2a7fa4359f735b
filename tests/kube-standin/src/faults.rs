//! Fault injection and request accounting for tests.

use std::collections::HashMap;

use crate::status::ApiError;

/// The error an injected fault answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// 409 Conflict, as a stale resourceVersion would give.
    Conflict,
    /// 429 with `Retry-After`.
    TooManyRequests { retry_after_seconds: u64 },
    /// 500 InternalError.
    InternalError,
    /// 503 with `Retry-After`.
    ServiceUnavailable { retry_after_seconds: u64 },
}

/// Makes the next `times` matching requests fail with `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// HTTP method to match (`"PUT"`, `"PATCH"`, ...); `None` matches any write (POST, PUT, PATCH, DELETE).
    pub method: Option<String>,
    /// Exact request path without the query, e.g. `/apis/apps/v1/namespaces/default/deployments/web/scale`.
    pub path: String,
    pub kind: FaultKind,
    pub times: u32,
}

impl Fault {
    /// The next `times` writes to `path` fail with `kind`.
    pub fn writes(path: impl Into<String>, kind: FaultKind, times: u32) -> Self {
        Self { method: None, path: path.into(), kind, times }
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        let method_matches = match &self.method {
            Some(wanted) => wanted.eq_ignore_ascii_case(method),
            None => matches!(method, "POST" | "PUT" | "PATCH" | "DELETE"),
        };
        method_matches && self.path == path && self.times > 0
    }
}

/// One request as the stand-in saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Who sent it: the bearer token, which the stand-in takes as the user name (like a static token file).
    pub user: Option<String>,
}

/// A field a custom resource's schema does not declare, pruned from a request body (a real API server warns
/// `unknown field "spec.x"` and drops it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownField {
    pub method: String,
    pub path: String,
    /// Dotted path in the object, e.g. `status.lastDecision.extra` or `spec.queues[0].weight`.
    pub field: String,
}

#[derive(Debug, Default)]
pub struct Faults {
    pending: Vec<Fault>,
    counts: HashMap<(String, String), u64>,
    log: Vec<RecordedRequest>,
    unknown_fields: Vec<UnknownField>,
}

impl Faults {
    pub fn inject(&mut self, fault: Fault) {
        self.pending.push(fault);
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Counts the request and returns the kind of a matching fault, consuming one of its repetitions.
    pub fn on_request(&mut self, method: &str, path: &str, query: &str, user: Option<&str>) -> Option<FaultKind> {
        *self.counts.entry((method.to_owned(), path.to_owned())).or_default() += 1;
        self.log.push(RecordedRequest {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            user: user.map(str::to_owned),
        });
        let fault = self.pending.iter_mut().find(|f| f.matches(method, path))?;
        fault.times -= 1;
        let kind = fault.kind.clone();
        self.pending.retain(|f| f.times > 0);
        Some(kind)
    }

    pub fn count(&self, method: &str, path: &str) -> u64 {
        self.counts.get(&(method.to_ascii_uppercase(), path.to_owned())).copied().unwrap_or(0)
    }

    pub fn log(&self) -> Vec<RecordedRequest> {
        self.log.clone()
    }

    pub fn record_unknown_fields(&mut self, method: &str, path: &str, fields: &[String]) {
        self.unknown_fields.extend(fields.iter().map(|field| UnknownField {
            method: method.to_owned(),
            path: path.to_owned(),
            field: field.clone(),
        }));
    }

    pub fn unknown_fields(&self) -> Vec<UnknownField> {
        self.unknown_fields.clone()
    }
}

impl FaultKind {
    /// The error to answer with; `conflict` builds the Conflict for the addressed object.
    pub fn to_error(&self, conflict: impl FnOnce() -> ApiError) -> ApiError {
        match self {
            Self::Conflict => conflict(),
            Self::TooManyRequests { retry_after_seconds } => ApiError::too_many_requests(*retry_after_seconds),
            Self::InternalError => ApiError::internal_error("injected fault"),
            Self::ServiceUnavailable { retry_after_seconds } => ApiError::service_unavailable(*retry_after_seconds),
        }
    }
}
