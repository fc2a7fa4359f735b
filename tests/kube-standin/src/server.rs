//! The HTTP front: path routing, query parsing, the verbs, and WATCH streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};

use crate::controller::ControllerSettings;
use crate::faults::Faults;
use crate::metrics::{self, MetricsApi};
use crate::patch::{self, PatchType};
use crate::resources::{self, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{EventType, ListOptions, Part, Store, StoredEvent};

/// Everything the handlers and the library share.
pub struct Shared {
    pub store: Mutex<Store>,
    pub faults: Mutex<Faults>,
    pub controller: Mutex<ControllerSettings>,
    pub metrics_api: Mutex<MetricsApi>,
    pub bookmark_interval: Duration,
    pub server_address: String,
    pub shutdown: watch::Receiver<bool>,
    /// Bumped to cut every open watch (clients re-watch from their last resourceVersion).
    pub watch_generation: watch::Sender<u64>,
}

impl Shared {
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn metrics_api(&self) -> MetricsApi {
        *self.metrics_api.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The served types, as discovery shows them: without metrics.k8s.io while its APIService is not registered.
    fn discoverable_types(&self) -> Vec<ResourceType> {
        let hidden = self.metrics_api() == MetricsApi::NotRegistered;
        self.store().types().iter().filter(|rt| !(hidden && rt.group == metrics::GROUP)).cloned().collect()
    }
}

/// What the aggregation layer answers for metrics.k8s.io when metrics-server is not there to answer.
fn metrics_api_answer(shared: &Shared, path: &str) -> Option<Response> {
    let metrics_path = path.strip_prefix("/apis/").and_then(|rest| rest.split('/').next()) == Some(metrics::GROUP);
    if !metrics_path {
        return None;
    }
    match shared.metrics_api() {
        MetricsApi::Available => None,
        // No APIService: the request falls through every handler to Go's http.NotFound, which is not a Status.
        MetricsApi::NotRegistered => Some(plain_text(StatusCode::NOT_FOUND, metrics::NOT_REGISTERED_BODY)),
        // The group document is served by the aggregator itself; everything below a version is proxied.
        MetricsApi::Unavailable if path.trim_end_matches('/') == format!("/apis/{}", metrics::GROUP) => None,
        MetricsApi::Unavailable => Some(plain_text(StatusCode::SERVICE_UNAVAILABLE, metrics::UNAVAILABLE_BODY)),
    }
}

/// A plain-text answer as Go's `http.Error` writes it.
fn plain_text(code: StatusCode, body: &'static str) -> Response {
    let mut response = (code, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

/// What a path addresses.
#[derive(Debug, Clone)]
pub enum Route {
    Version,
    ApiVersions,
    ApiGroupList,
    ApiGroup(String),
    ResourceList(String, String),
    Resource(Box<ResourceTarget>),
}

#[derive(Debug, Clone)]
pub struct ResourceTarget {
    pub rt: ResourceType,
    /// `None` for cluster-scoped resources and all-namespaces lists.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

pub fn parse_route(store: &Store, path: &str) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return Ok(Route::Version),
        ["api"] => return Ok(Route::ApiVersions),
        ["apis"] => return Ok(Route::ApiGroupList),
        ["apis", group] => return Ok(Route::ApiGroup((*group).to_owned())),
        ["api", version] => return Ok(Route::ResourceList(String::new(), (*version).to_owned())),
        ["apis", group, version] => return Ok(Route::ResourceList((*group).to_owned(), (*version).to_owned())),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::path_not_found()),
    };
    let namespaced_type = |plural: &str| store.find_type(group, version, plural).filter(|rt| rt.namespaced);
    let target = |rt: ResourceType, namespace: Option<&str>, name: Option<&&str>, sub: Option<&&str>| {
        Route::Resource(Box::new(ResourceTarget {
            rt,
            namespace: namespace.map(str::to_owned),
            name: name.map(|n| (*n).to_owned()),
            subresource: sub.map(|s| (*s).to_owned()),
        }))
    };
    match rest {
        ["namespaces", namespace, plural, tail @ ..] if tail.len() <= 2 && namespaced_type(plural).is_some() => {
            let rt = namespaced_type(plural).expect("checked in the guard");
            Ok(target(rt, Some(namespace), tail.first(), tail.get(1)))
        }
        [plural, tail @ ..] if tail.len() <= 2 => {
            let rt = store.find_type(group, version, plural).ok_or_else(ApiError::path_not_found)?;
            if rt.namespaced && !tail.is_empty() {
                return Err(ApiError::path_not_found());
            }
            Ok(target(rt, None, tail.first(), tail.get(1)))
        }
        _ => Err(ApiError::path_not_found()),
    }
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    let mut response = (code, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub fn error_response(error: &ApiError) -> Response {
    let code = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(code, &error.to_status());
    if let Some(seconds) = error.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn parse_query(uri: &Uri) -> Result<HashMap<String, String>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(uri.query().unwrap_or_default())
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    Ok(pairs.into_iter().collect())
}

fn list_options(query: &HashMap<String, String>, rt: &ResourceType) -> Result<ListOptions, ApiError> {
    let limit = match query.get("limit").filter(|l| !l.is_empty()) {
        Some(text) => Some(text.parse().map_err(|_| ApiError::bad_request(format!("invalid limit: {text:?}")))?),
        None => None,
    };
    Ok(ListOptions {
        labels: LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or_default())?,
        fields: FieldSelector::parse(
            query.get("fieldSelector").map(String::as_str).unwrap_or_default(),
            rt.extra_field_labels,
        )?,
        limit,
        continue_token: query.get("continue").cloned(),
        resource_version: query.get("resourceVersion").cloned(),
        resource_version_match: query.get("resourceVersionMatch").cloned(),
    })
}

fn is_true(query: &HashMap<String, String>, key: &str) -> bool {
    query.get(key).is_some_and(|v| v == "true" || v == "1")
}

fn dry_run(query: &HashMap<String, String>) -> Result<bool, ApiError> {
    match query.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => {
            Err(ApiError::bad_request(format!("Invalid dry run value: {other:?}: supported values are \"All\"")))
        }
    }
}

/// The single handler behind every path.
pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if body.len() > MAX_REQUEST_BODY_BYTES {
        return error_response(&ApiError::request_entity_too_large(MAX_REQUEST_BODY_BYTES));
    }
    match respond(&shared, &method, &uri, &headers, &body) {
        Ok(response) => response,
        Err(error) => error_response(&error),
    }
}

/// The API server's `MaxRequestBodyBytes`: a larger body is refused before it is decoded.
pub const MAX_REQUEST_BODY_BYTES: usize = 3 * 1024 * 1024;

fn respond(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let path = uri.path();
    let user = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let fault = shared.faults().on_request(method.as_str(), path, uri.query().unwrap_or_default(), user);
    let route = parse_route(&shared.store(), path);
    if let Some(fault) = fault {
        let conflict = || match &route {
            Ok(Route::Resource(target)) => ApiError::conflict(&target.rt, target.name.as_deref().unwrap_or_default()),
            _ => ApiError::conflict(&resources::builtin_types()[0], ""),
        };
        return Err(fault.to_error(conflict));
    }
    if let Some(response) = metrics_api_answer(shared, path) {
        return Ok(response);
    }
    let query = parse_query(uri)?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let aggregated = resources::wants_aggregated_discovery(accept);
    match route.clone()? {
        Route::Version if method == Method::GET => Ok(json_response(StatusCode::OK, &version_info())),
        Route::ApiVersions | Route::ApiGroupList if method == Method::GET && aggregated => {
            let core = matches!(route, Ok(Route::ApiVersions));
            let mut response =
                json_response(StatusCode::OK, &resources::aggregated_discovery(&shared.discoverable_types(), core));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(resources::AGGREGATED_DISCOVERY_V2));
            Ok(response)
        }
        Route::ApiVersions if method == Method::GET => {
            Ok(json_response(StatusCode::OK, &resources::api_versions(&shared.server_address)))
        }
        Route::ApiGroupList if method == Method::GET => {
            Ok(json_response(StatusCode::OK, &resources::api_group_list(&shared.discoverable_types())))
        }
        Route::ApiGroup(group) if method == Method::GET => resources::api_group_doc(shared.store().types(), &group)
            .map(|doc| json_response(StatusCode::OK, &doc))
            .ok_or_else(ApiError::path_not_found),
        Route::ResourceList(group, version) if method == Method::GET => {
            resources::api_resource_list(shared.store().types(), &group, &version)
                .map(|doc| json_response(StatusCode::OK, &doc))
                .ok_or_else(ApiError::path_not_found)
        }
        Route::Resource(target) => resource_request(shared, method, path, &target, &query, headers, body),
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "35",
        "gitVersion": "v1.35.0-kube-standin",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn parse_object(body: &[u8]) -> Result<Value, ApiError> {
    patch::parse_body(body, false)
}

fn resource_request(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    target: &ResourceTarget,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let rt = &target.rt;
    let ns = target.namespace.as_deref();
    let dry = dry_run(query)?;
    let part = match target.subresource.as_deref() {
        None => Some(Part::Main),
        Some("status") if rt.status_subresource => Some(Part::Status),
        Some("scale") if rt.scale.is_some() => None,
        Some(_) => return Err(ApiError::path_not_found()),
    };
    if rt.read_only && method != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    let ok = |value: Value| Ok(json_response(StatusCode::OK, &value));
    if rt.group == metrics::GROUP && rt.plural == "pods" && part == Some(Part::Main) && !is_true(query, "watch") {
        let store = shared.store();
        return match (target.name.as_deref(), ns) {
            (None, _) => ok(metrics::list(&store, rt, ns, &list_options(query, rt)?)),
            (Some(name), Some(ns)) => ok(metrics::get(&store, rt, ns, name)?),
            (Some(_), None) => Err(ApiError::path_not_found()),
        };
    }
    let Some(name) = target.name.as_deref() else {
        return match *method {
            Method::GET if is_true(query, "watch") => {
                if rt.read_only {
                    return Err(ApiError::method_not_allowed());
                }
                start_watch(shared, target, query)
            }
            Method::GET => ok(shared.store().list(rt, ns, &list_options(query, rt)?)?),
            Method::POST if rt.namespaced && ns.is_none() => Err(ApiError::method_not_allowed()),
            Method::POST => {
                let object = parse_object(body)?;
                let (object, unknown) =
                    decoding_write(shared, query, dry, |store, dry| store.create(rt, ns, object.clone(), dry, false))?;
                Ok(with_warnings(shared, method, path, json_response(StatusCode::CREATED, &object), &unknown))
            }
            Method::DELETE => ok(shared.store().delete_collection(rt, ns, &list_options(query, rt)?, dry)?),
            _ => Err(ApiError::method_not_allowed()),
        };
    };
    match (method.clone(), part) {
        (Method::GET, Some(_)) => ok(shared.store().get(rt, ns, name)?),
        (Method::GET, None) => ok(shared.store().get_scale(rt, ns, name)?),
        (Method::PUT, Some(part)) => {
            let object = parse_object(body)?;
            let (object, unknown) =
                decoding_write(shared, query, dry, |store, dry| store.write(rt, ns, name, object.clone(), part, dry))?;
            Ok(with_warnings(shared, method, path, json_response(StatusCode::OK, &object), &unknown))
        }
        (Method::PUT, None) => ok(shared.store().update_scale(rt, ns, name, &parse_object(body)?, dry)?),
        (Method::PATCH, part) => {
            let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
            let patch_type = PatchType::from_content_type(content_type)?;
            check_patch_options(patch_type, query)?;
            let patch_body = patch::parse_body(body, patch_type == PatchType::Apply)?;
            match part {
                Some(part) => {
                    let ((object, created), unknown) = decoding_write(shared, query, dry, |store, dry| {
                        store.patch(rt, ns, name, patch_type, &patch_body, part, dry)
                    })?;
                    let code = if created { StatusCode::CREATED } else { StatusCode::OK };
                    Ok(with_warnings(shared, method, path, json_response(code, &object), &unknown))
                }
                None => ok(shared.store().patch_scale(rt, ns, name, patch_type, &patch_body, dry)?),
            }
        }
        (Method::DELETE, Some(Part::Main)) => {
            let options = if body.is_empty() { Value::Null } else { parse_object(body)? };
            ok(shared.store().delete(rt, ns, name, &options, dry)?)
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// The `fieldValidation` directive: what becomes of fields a custom resource's schema does not declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldValidation {
    Ignore,
    /// The default: pruned, with a `Warning` header each.
    Warn,
    /// 400 BadRequest, nothing written.
    Strict,
}

fn field_validation(query: &HashMap<String, String>) -> Result<FieldValidation, ApiError> {
    match query.get("fieldValidation").map(String::as_str) {
        None | Some("" | "Warn") => Ok(FieldValidation::Warn),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some(other) => Err(ApiError::bad_request(format!(
            "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
        ))),
    }
}

/// Runs a create/update/patch and returns what it answered plus the unknown fields its decoding pruned. Under
/// `fieldValidation=Strict` a dry run goes first, so a body with unknown fields is refused before anything is stored.
fn decoding_write<T>(
    shared: &Shared,
    query: &HashMap<String, String>,
    dry: bool,
    write: impl Fn(&mut Store, bool) -> Result<T, ApiError>,
) -> Result<(T, Vec<String>), ApiError> {
    let directive = field_validation(query)?;
    let mut store = shared.store();
    store.take_unknown_fields();
    if directive == FieldValidation::Strict {
        write(&mut store, true)?;
        let unknown = store.take_unknown_fields();
        if !unknown.is_empty() {
            let listed: Vec<String> = unknown.iter().map(|field| format!("unknown field {field:?}")).collect();
            return Err(ApiError::bad_request(format!("strict decoding error: {}", listed.join(", "))));
        }
    }
    let answer = write(&mut store, dry)?;
    let unknown = store.take_unknown_fields();
    Ok((answer, if directive == FieldValidation::Ignore { Vec::new() } else { unknown }))
}

/// Records pruned fields for the library and sends each as a `Warning: 299 - "unknown field ..."` header.
fn with_warnings(shared: &Shared, method: &Method, path: &str, mut response: Response, unknown: &[String]) -> Response {
    if unknown.is_empty() {
        return response;
    }
    shared.faults().record_unknown_fields(method.as_str(), path, unknown);
    for field in unknown {
        let warning = format!("299 - {:?}", format!("unknown field {field:?}"));
        if let Ok(value) = HeaderValue::from_str(&warning) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

/// PatchOptions validation: apply needs a field manager; `force` is only for apply.
fn check_patch_options(patch_type: PatchType, query: &HashMap<String, String>) -> Result<(), ApiError> {
    let invalid =
        |message: &str| Err(ApiError::unprocessable(format!("PatchOptions.meta.k8s.io \"\" is invalid: {message}")));
    let has_manager = query.get("fieldManager").is_some_and(|m| !m.is_empty());
    match patch_type {
        PatchType::Apply if !has_manager => invalid("fieldManager: Required value: is required for apply patch"),
        PatchType::Apply => Ok(()),
        _ if query.contains_key("force") => invalid("force: Forbidden: may not be specified for non-apply patch"),
        _ => Ok(()),
    }
}

/// Per-watch filter over stored events.
struct WatchFilter {
    rt: ResourceType,
    namespace: Option<String>,
    options: ListOptions,
}

impl WatchFilter {
    fn matches(&self, object: &Value) -> bool {
        self.options.labels.matches(object) && self.options.fields.matches(object)
    }

    /// The event this watcher sees for `event`, turning selector transitions into ADDED/DELETED as the watch cache
    /// does.
    fn translate(&self, event: &StoredEvent) -> Option<(EventType, Value)> {
        let (group, version, plural, namespace, _) = &event.key;
        if !self.rt.same_resource(group, version, plural) {
            return None;
        }
        if self.namespace.as_ref().is_some_and(|ns| ns != namespace) {
            return None;
        }
        let now = self.matches(&event.object);
        match event.event_type {
            EventType::Added | EventType::Deleted => now.then(|| (event.event_type, event.object.clone())),
            EventType::Modified => {
                let before = event.previous.as_ref().is_some_and(|p| self.matches(p));
                match (before, now) {
                    (true, true) => Some((EventType::Modified, event.object.clone())),
                    (false, true) => Some((EventType::Added, event.object.clone())),
                    (true, false) => {
                        let mut previous = event.previous.clone().expect("matched above");
                        previous["metadata"]["resourceVersion"] = json!(event.resource_version.to_string());
                        Some((EventType::Deleted, previous))
                    }
                    (false, false) => None,
                }
            }
        }
    }
}

fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": event_type, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn bookmark_line(rt: &ResourceType, resource_version: u64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": resource_version.to_string(), "creationTimestamp": null});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line("BOOKMARK", &json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": metadata}))
}

fn start_watch(
    shared: &Arc<Shared>,
    target: &ResourceTarget,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let filter = WatchFilter {
        rt: target.rt.clone(),
        namespace: target.namespace.clone(),
        options: list_options(query, &target.rt)?,
    };
    let bookmarks = is_true(query, "allowWatchBookmarks");
    let send_initial_events = is_true(query, "sendInitialEvents");
    let timeout = match query.get("timeoutSeconds").filter(|t| !t.is_empty()) {
        Some(text) => Some(Duration::from_secs(
            text.parse().map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {text:?}")))?,
        )),
        None => None,
    };
    let requested_rv = query.get("resourceVersion").filter(|rv| !rv.is_empty() && *rv != "0");
    let mut initial = Vec::new();
    let mut close_after_initial = false;
    let (receiver, start_rv) = {
        let store = shared.store();
        let receiver = store.subscribe();
        let current = store.current_resource_version();
        match requested_rv.filter(|_| !send_initial_events) {
            Some(text) => {
                let from: u64 =
                    text.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version: {text:?}")))?;
                match store.events_since(from) {
                    Some(events) => {
                        initial.extend(
                            events.iter().filter_map(|e| filter.translate(e)).map(|(t, o)| event_line(t.as_str(), &o)),
                        );
                    }
                    None => {
                        let expired = ApiError::expired(format!(
                            "too old resource version: {from} ({})",
                            store.compacted_resource_version() + 1
                        ));
                        initial.push(event_line("ERROR", &expired.to_status()));
                        close_after_initial = true;
                    }
                }
            }
            None => {
                for (_, object) in store.objects_of(&filter.rt, filter.namespace.as_deref()) {
                    if filter.matches(object) {
                        initial.push(event_line("ADDED", object));
                    }
                }
                if send_initial_events && bookmarks {
                    initial.push(bookmark_line(&filter.rt, current, true));
                }
            }
        }
        (receiver, current)
    };
    let (sender, mut lines) = mpsc::channel::<Bytes>(256);
    let shutdown = shared.shutdown.clone();
    let cut = shared.watch_generation.subscribe();
    let bookmark_interval = shared.bookmark_interval;
    let shared = shared.clone();
    tokio::spawn(async move {
        for line in initial {
            if sender.send(line).await.is_err() {
                return;
            }
        }
        if !close_after_initial {
            stream_events(
                shared,
                filter,
                receiver,
                start_rv,
                sender,
                (shutdown, cut),
                bookmarks.then_some(bookmark_interval),
                timeout,
            )
            .await;
        }
    });
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| {
        lines.poll_recv(cx).map(|line| line.map(Ok::<Bytes, std::io::Error>))
    }));
    let mut response = Response::new(body);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

#[allow(clippy::too_many_arguments)]
async fn stream_events(
    shared: Arc<Shared>,
    filter: WatchFilter,
    mut receiver: broadcast::Receiver<Arc<StoredEvent>>,
    mut last_rv: u64,
    sender: mpsc::Sender<Bytes>,
    (mut shutdown, mut cut): (watch::Receiver<bool>, watch::Receiver<u64>),
    bookmark_interval: Option<Duration>,
    timeout: Option<Duration>,
) {
    let deadline = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(365 * 24 * 3600)));
    tokio::pin!(deadline);
    let mut bookmark_tick = tokio::time::interval(bookmark_interval.unwrap_or(Duration::from_secs(3600)));
    bookmark_tick.tick().await;
    loop {
        let line = tokio::select! {
            _ = &mut deadline => return,
            _ = shutdown.changed() => return,
            _ = cut.changed() => return,
            _ = bookmark_tick.tick(), if bookmark_interval.is_some() => {
                // Events are published under the store lock, so once drained under it nothing at or below
                // `current` can still arrive: the bookmark never skips an event.
                let (current, pending) = {
                    let store = shared.store();
                    let mut pending = Vec::new();
                    while let Ok(event) = receiver.try_recv() {
                        pending.push(event);
                    }
                    (store.current_resource_version(), pending)
                };
                for event in pending.iter().filter(|e| e.resource_version > last_rv) {
                    if let Some((event_type, object)) = filter.translate(event)
                        && sender.send(event_line(event_type.as_str(), &object)).await.is_err()
                    {
                        return;
                    }
                }
                last_rv = last_rv.max(current);
                bookmark_line(&filter.rt, last_rv, false)
            }
            received = receiver.recv() => match received {
                Ok(event) if event.resource_version <= last_rv => continue,
                Ok(event) => {
                    last_rv = event.resource_version;
                    match filter.translate(&event) {
                        Some((event_type, object)) => event_line(event_type.as_str(), &object),
                        None => continue,
                    }
                }
                // A watcher too slow for the fan-out buffer is cut off; the client re-watches from its last RV.
                Err(_) => return,
            },
        };
        if sender.send(line).await.is_err() {
            return;
        }
    }
}
