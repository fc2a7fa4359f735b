//! The object store: JSON objects keyed by (group, version, plural, namespace, name), one global resourceVersion
//! counter, a bounded history of watch events and the write semantics of the real registry (optimistic
//! concurrency, status subresource, generation, finalizers, defaults and the validation tests depend on).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::events;
use crate::meta;
use crate::patch::{self, PatchType};
use crate::resources::{self, ResourceType, SelectorSource};
use crate::schema::{self, FieldError};
use crate::selector::{FieldSelector, LabelSelector, format_label_selector};
use crate::status::{self, ApiError};

/// (group, version, plural, namespace, name); the namespace is empty for cluster-scoped objects.
pub type ObjectKey = (String, String, String, String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the history and fanned out to watchers.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub resource_version: u64,
    pub key: ObjectKey,
    pub event_type: EventType,
    pub object: Value,
    /// The object before a MODIFIED, so selector watches can turn it into ADDED/DELETED.
    pub previous: Option<Value>,
}

/// Which part of an object a write targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Main,
    Status,
}

/// Parsed LIST/WATCH query parameters.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

pub struct Store {
    types: Vec<ResourceType>,
    objects: BTreeMap<ObjectKey, Value>,
    resource_version: u64,
    history: VecDeque<Arc<StoredEvent>>,
    history_capacity: usize,
    /// Events with a resourceVersion at or below this have been dropped from the history.
    compacted: u64,
    events: broadcast::Sender<Arc<StoredEvent>>,
    /// Paths of the fields custom resource schemas pruned from request bodies since the last `take_unknown_fields`.
    unknown_fields: Vec<String>,
}

fn key(rt: &ResourceType, namespace: &str, name: &str) -> ObjectKey {
    (rt.group.clone(), rt.version.clone(), rt.plural.clone(), namespace.to_owned(), name.to_owned())
}

pub fn resource_version_of(object: &Value) -> &str {
    object["metadata"]["resourceVersion"].as_str().unwrap_or_default()
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

fn get_path<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(object, |node, key| node.get(key))
}

fn set_path(object: &mut Value, path: &[String], value: Value) {
    let mut node = object;
    for key in path {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        node = node.as_object_mut().expect("made an object above").entry(key.clone()).or_insert(Value::Null);
    }
    *node = value;
}

/// A lowercase RFC 1123 subdomain, as `metadata.name` must be for the resources served here.
fn valid_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn with_type_meta(rt: &ResourceType, mut object: Value) -> Value {
    if let Value::Object(map) = &mut object {
        map.insert("apiVersion".into(), json!(rt.api_version()));
        map.insert("kind".into(), json!(rt.kind));
    }
    object
}

/// The object without `metadata` (and without `status` when it has its own subresource): what a generation counts.
fn generation_relevant(rt: &ResourceType, object: &Value) -> Value {
    let mut object = object.clone();
    // Deployments also count annotations, which the deployment controller copies to ReplicaSets.
    let annotations =
        (rt.group == "apps" && rt.plural == "deployments").then(|| object["metadata"]["annotations"].clone());
    if let Value::Object(map) = &mut object {
        map.remove("metadata");
        if let Some(annotations) = annotations {
            map.insert("metadata.annotations".into(), annotations);
        }
        map.remove("apiVersion");
        map.remove("kind");
        if rt.status_subresource {
            map.remove("status");
        }
    }
    object
}

fn is_apps_workload(rt: &ResourceType) -> bool {
    rt.group == "apps" && (rt.plural == "deployments" || rt.plural == "statefulsets")
}

fn default_missing(object: &mut Value, path: &[&str], value: Value) {
    let path: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
    if get_path(object, &path).is_none_or(Value::is_null) {
        set_path(object, &path, value);
    }
}

/// The defaults the real API server fills in that controllers commonly read back.
fn apply_defaults(rt: &ResourceType, object: &mut Value) {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("apps", "deployments") => {
            default_missing(object, &["spec", "replicas"], json!(1));
            default_missing(
                object,
                &["spec", "strategy"],
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
            );
            default_missing(object, &["spec", "revisionHistoryLimit"], json!(10));
            default_missing(object, &["spec", "progressDeadlineSeconds"], json!(600));
            default_pod_template(object);
        }
        ("apps", "statefulsets") => {
            default_missing(object, &["spec", "replicas"], json!(1));
            default_missing(object, &["spec", "podManagementPolicy"], json!("OrderedReady"));
            default_missing(
                object,
                &["spec", "updateStrategy"],
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            default_missing(object, &["spec", "revisionHistoryLimit"], json!(10));
            default_missing(
                object,
                &["spec", "persistentVolumeClaimRetentionPolicy"],
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            default_pod_template(object);
        }
        ("", "namespaces") => {
            let name = name_of(object).to_owned();
            default_missing(object, &["metadata", "labels", "kubernetes.io/metadata.name"], json!(name));
            default_missing(object, &["spec", "finalizers"], json!(["kubernetes"]));
        }
        _ => {}
    }
}

fn default_pod_template(object: &mut Value) {
    default_missing(object, &["spec", "template", "spec", "restartPolicy"], json!("Always"));
    default_missing(object, &["spec", "template", "spec", "terminationGracePeriodSeconds"], json!(30));
    default_missing(object, &["spec", "template", "spec", "dnsPolicy"], json!("ClusterFirst"));
    default_missing(object, &["spec", "template", "spec", "schedulerName"], json!("default-scheduler"));
    default_missing(object, &["spec", "template", "spec", "securityContext"], json!({}));
}

/// `TotalAnnotationSizeLimitB`: the sum of the annotations' key and value lengths (what makes a `kubectl apply` of a
/// big ConfigMap fail, its last-applied annotation holding the whole object).
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;
/// `MaxConfigMapSize`: the sum of a ConfigMap's `data` and `binaryData` value lengths (binary data decoded).
pub const MAX_CONFIG_MAP_BYTES: usize = 1024 * 1024;

/// The limits of every object's metadata, and a ConfigMap's size, as `ValidateObjectMeta` and `ValidateConfigMap`
/// check them.
fn validate_limits(rt: &ResourceType, object: &Value) -> Result<(), ApiError> {
    let too_long = |field: &str, limit: usize| FieldError {
        field: field.to_owned(),
        reason: "FieldValueTooLong",
        message: format!("Too long: must have at most {limit} bytes"),
    };
    let mut errors = Vec::new();
    let annotations: usize = object["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, value)| key.len() + value.as_str().map_or(0, str::len))
        .sum();
    if annotations > MAX_ANNOTATIONS_BYTES {
        errors.push(too_long("metadata.annotations", MAX_ANNOTATIONS_BYTES));
    }
    if rt.group.is_empty() && rt.plural == "configmaps" {
        let text: usize =
            object["data"].as_object().into_iter().flatten().map(|(_, v)| v.as_str().map_or(0, str::len)).sum();
        // binaryData travels as base64: its size is that of the decoded bytes.
        let binary: usize = object["binaryData"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, v)| v.as_str().and_then(|b64| BASE64.decode(b64).ok()).map_or(0, |bytes| bytes.len()))
            .sum();
        if text + binary > MAX_CONFIG_MAP_BYTES {
            errors.push(too_long("[]", MAX_CONFIG_MAP_BYTES));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(ApiError::invalid_fields(rt, name_of(object), &errors)) }
}

/// Validation of Deployments and StatefulSets (the checks a scaler can trip over) and of events.k8s.io Events.
fn validate(rt: &ResourceType, object: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    validate_limits(rt, object)?;
    if rt.group == "events.k8s.io" {
        let errors = events::validate(object, old);
        return if errors.is_empty() { Ok(()) } else { Err(ApiError::invalid_fields(rt, name_of(object), &errors)) };
    }
    if !is_apps_workload(rt) {
        return Ok(());
    }
    let mut causes = Vec::new();
    let spec = &object["spec"];
    if let Some(replicas) = spec["replicas"].as_i64().filter(|r| *r < 0) {
        causes.push((
            "spec.replicas".to_owned(),
            format!("Invalid value: {replicas}: must be greater than or equal to 0"),
        ));
    }
    let selector = &spec["selector"];
    if !selector.is_object() {
        causes.push(("spec.selector".to_owned(), "Required value".to_owned()));
    } else {
        let template_labels = &spec["template"]["metadata"]["labels"];
        let selects = selector["matchLabels"]
            .as_object()
            .into_iter()
            .flatten()
            .all(|(key, value)| template_labels.get(key) == Some(value));
        if !selects {
            causes.push((
                "spec.template.metadata.labels".to_owned(),
                format!("Invalid value: {template_labels}: `selector` does not match template `labels`"),
            ));
        }
        if old.is_some_and(|old| old["spec"]["selector"] != *selector) {
            causes.push(("spec.selector".to_owned(), format!("Invalid value: {selector}: field is immutable")));
        }
    }
    if spec["template"]["spec"]["containers"].as_array().is_none_or(Vec::is_empty) {
        causes.push(("spec.template.spec.containers".to_owned(), "Required value".to_owned()));
    }
    if causes.is_empty() { Ok(()) } else { Err(ApiError::invalid(rt, name_of(object), &causes)) }
}

/// A custom resource against its CRD version's schema; `old` is the stored object on updates (ratcheting).
fn validate_custom(rt: &ResourceType, object: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let Some(schema) = &rt.schema else { return Ok(()) };
    let errors = schema::validate(object, schema, old);
    if errors.is_empty() { Ok(()) } else { Err(ApiError::invalid_fields(rt, name_of(object), &errors)) }
}

/// The status the registry strategy leaves on a freshly created object.
fn initial_status(rt: &ResourceType) -> Option<Value> {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("apps", "deployments") => Some(json!({})),
        ("apps", "statefulsets") => Some(json!({"replicas": 0, "availableReplicas": 0})),
        ("", "pods") => Some(json!({"phase": "Pending"})),
        ("", "namespaces") => Some(json!({"phase": "Active"})),
        _ => None,
    }
}

/// The opaque continue token: base64 JSON like the real one.
fn encode_continue(resource_version: u64, after: &ObjectKey) -> String {
    let start = format!("{}/{}", after.3, after.4);
    BASE64.encode(json!({"v": "meta.k8s.io/v1", "rv": resource_version, "start": start}).to_string())
}

fn decode_continue(token: &str) -> Result<(u64, String, String), ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let bytes = BASE64.decode(token).map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let rv = value["rv"].as_u64().ok_or_else(invalid)?;
    let (namespace, name) = value["start"].as_str().and_then(|s| s.split_once('/')).ok_or_else(invalid)?;
    Ok((rv, namespace.to_owned(), name.to_owned()))
}

impl Store {
    pub fn new(history_capacity: usize) -> Self {
        let (events, _) = broadcast::channel(4096);
        let mut store = Self {
            types: resources::builtin_types(),
            objects: BTreeMap::new(),
            resource_version: 0,
            history: VecDeque::new(),
            history_capacity: history_capacity.max(1),
            compacted: 0,
            events,
            unknown_fields: Vec::new(),
        };
        for namespace in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            store.ensure_namespace(namespace);
        }
        store
    }

    /// The fields pruned by custom resource schemas since the last call, as `spec.a.b` paths.
    pub fn take_unknown_fields(&mut self) -> Vec<String> {
        std::mem::take(&mut self.unknown_fields)
    }

    /// The API server's decoding of a custom resource in a request (see `schema::decode`).
    fn decode_custom(&mut self, rt: &ResourceType, object: &mut Value) {
        if let Some(schema) = &rt.schema {
            let pruned = schema::decode(object, schema);
            self.unknown_fields.extend(pruned);
        }
    }

    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    pub fn current_resource_version(&self) -> u64 {
        self.resource_version
    }

    pub fn compacted_resource_version(&self) -> u64 {
        self.compacted
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.events.subscribe()
    }

    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types.iter().find(|rt| rt.same_resource(group, version, plural)).cloned()
    }

    pub fn type_for_kind(&self, api_version: &str, kind: &str) -> Option<ResourceType> {
        self.types.iter().find(|rt| rt.api_version() == api_version && rt.kind == kind).cloned()
    }

    fn namespace_type(&self) -> ResourceType {
        self.find_type("", "v1", "namespaces").expect("namespaces are built in")
    }

    /// Creates the namespace if it is missing (library convenience; the REST API requires it to exist).
    pub fn ensure_namespace(&mut self, namespace: &str) {
        let rt = self.namespace_type();
        if !self.objects.contains_key(&key(&rt, "", namespace)) {
            let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
            self.create(&rt, None, object, false, false).expect("a valid namespace name");
        }
    }

    fn next_resource_version(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    fn record(&mut self, key: ObjectKey, event_type: EventType, object: Value, previous: Option<Value>) {
        let event =
            Arc::new(StoredEvent { resource_version: self.resource_version, key, event_type, object, previous });
        self.history.push_back(event.clone());
        while self.history.len() > self.history_capacity {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted = dropped.resource_version;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(event);
    }

    /// Forgets the whole event history: a watch resuming from any resourceVersion handed out so far, even the
    /// current one, gets 410 Expired and must re-list. The counter moves on by one so the re-list's
    /// resourceVersion is watchable again.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.next_resource_version();
    }

    /// Events after `resource_version`, or `None` when some of them have been dropped from the history.
    pub fn events_since(&self, resource_version: u64) -> Option<Vec<Arc<StoredEvent>>> {
        if resource_version < self.compacted {
            return None;
        }
        Some(self.history.iter().filter(|e| e.resource_version > resource_version).cloned().collect())
    }

    /// The current objects of a resource, optionally in one namespace, in key order.
    pub fn objects_of<'a>(
        &'a self,
        rt: &'a ResourceType,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a Value)> + 'a {
        let start = (rt.group.clone(), rt.version.clone(), rt.plural.clone(), String::new(), String::new());
        self.objects
            .range(start..)
            .take_while(move |(k, _)| rt.same_resource(&k.0, &k.1, &k.2))
            .filter(move |(k, _)| namespace.is_none_or(|ns| k.3 == ns))
    }

    fn check_namespace(&self, rt: &ResourceType, namespace: Option<&str>) -> Result<(), ApiError> {
        match namespace {
            Some(ns) if rt.namespaced => {
                if self.objects.contains_key(&key(&self.namespace_type(), "", ns)) {
                    Ok(())
                } else {
                    Err(ApiError::namespace_not_found(ns))
                }
            }
            _ => Ok(()),
        }
    }

    pub fn get(&self, rt: &ResourceType, namespace: Option<&str>, name: &str) -> Result<Value, ApiError> {
        let namespace = namespace.unwrap_or_default();
        let shared = || {
            let other = self.events_v1_type(rt)?;
            self.objects.get(&key(&other, namespace, name)).map(events::to_core_v1)
        };
        self.objects
            .get(&key(rt, namespace, name))
            .cloned()
            .or_else(shared)
            .map(|object| with_type_meta(rt, object))
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// For core `v1` events, the `events.k8s.io/v1` type, whose Events core `v1` reads show too (converted).
    fn events_v1_type(&self, rt: &ResourceType) -> Option<ResourceType> {
        let core_events = rt.group.is_empty() && rt.plural == "events";
        core_events.then(|| self.find_type("events.k8s.io", "v1", "events")).flatten()
    }

    fn parse_resource_version(text: &str) -> Result<u64, ApiError> {
        text.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version: {text:?}")))
    }

    pub fn list(&self, rt: &ResourceType, namespace: Option<&str>, options: &ListOptions) -> Result<Value, ApiError> {
        let current = self.resource_version;
        let mut list_rv = current;
        let mut after: Option<(String, String)> = None;
        if let Some(token) = options.continue_token.as_deref().filter(|t| !t.is_empty()) {
            let (rv, ns, name) = decode_continue(token)?;
            if rv < self.compacted {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a \
                     new list without the continue parameter, or use the continue token in this response to retrieve \
                     the remainder of the results. Continuing with the provided token results in an inconsistent list \
                     - objects that were created, modified, or deleted between the time the first chunk was returned \
                     and now may show up in the list.",
                ));
            }
            list_rv = rv;
            after = Some((ns, name));
        } else if let Some(text) = options.resource_version.as_deref().filter(|t| !t.is_empty() && *t != "0") {
            let requested = Self::parse_resource_version(text)?;
            if requested > current {
                return Err(ApiError::too_large_resource_version(requested, current));
            }
            if options.resource_version_match.as_deref() == Some("Exact") && requested < self.compacted {
                return Err(ApiError::expired(format!(
                    "too old resource version: {requested} ({})",
                    self.compacted + 1
                )));
            }
        }
        let mut items = Vec::new();
        let mut last_key = None;
        let mut remaining = 0usize;
        let mut objects: Vec<(ObjectKey, Value)> =
            self.objects_of(rt, namespace).map(|(k, o)| (k.clone(), o.clone())).collect();
        if let Some(other) = self.events_v1_type(rt) {
            let converted =
                self.objects_of(&other, namespace).map(|(k, o)| (key(rt, &k.3, &k.4), events::to_core_v1(o)));
            objects.extend(converted);
            objects.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let matching = objects
            .iter()
            .filter(|(k, _)| after.as_ref().is_none_or(|(ns, name)| (&k.3, &k.4) > (ns, name)))
            .filter(|(_, o)| options.labels.matches(o) && options.fields.matches(o));
        for (k, object) in matching {
            if options.limit.is_some_and(|limit| limit > 0 && items.len() >= limit) {
                remaining += 1;
                continue;
            }
            // Built-in types are listed without apiVersion/kind on the items, as the real server's typed lists
            // are; custom resources (unstructured there) keep them.
            let mut item = object.clone();
            if !rt.custom
                && let Value::Object(map) = &mut item
            {
                map.remove("apiVersion");
                map.remove("kind");
            }
            items.push(item);
            last_key = Some(k.clone());
        }
        let mut metadata = json!({"resourceVersion": list_rv.to_string()});
        if remaining > 0 {
            let last_key = last_key.expect("a limit of at least one item was reached");
            metadata["continue"] = json!(encode_continue(list_rv, &last_key));
            if options.labels.is_empty() && options.fields.is_empty() {
                metadata["remainingItemCount"] = json!(remaining);
            }
        }
        Ok(json!({"kind": rt.list_kind(), "apiVersion": rt.api_version(), "metadata": metadata, "items": items}))
    }

    /// POST. `keep_status` lets the library insert objects with a status already set.
    pub fn create(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        mut object: Value,
        dry_run: bool,
        keep_status: bool,
    ) -> Result<Value, ApiError> {
        if rt.read_only {
            return Err(ApiError::method_not_allowed());
        }
        if !object.is_object() {
            return Err(ApiError::bad_request("the object provided is unrecognized or malformed: not a JSON object"));
        }
        if let Some(api_version) = object["apiVersion"].as_str().filter(|v| *v != rt.api_version()) {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({})",
                rt.api_version()
            )));
        }
        self.decode_custom(rt, &mut object);
        if !object["metadata"].is_object() {
            object["metadata"] = json!({});
        }
        let metadata = &mut object["metadata"];
        match (namespace, metadata["namespace"].as_str()) {
            (Some(url_ns), Some(body_ns)) if rt.namespaced && url_ns != body_ns && !body_ns.is_empty() => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            (Some(url_ns), _) if rt.namespaced => metadata["namespace"] = json!(url_ns),
            _ => {
                if let Some(map) = metadata.as_object_mut() {
                    map.remove("namespace");
                }
            }
        }
        if metadata["resourceVersion"].as_str().is_some_and(|rv| !rv.is_empty()) {
            return Err(ApiError::internal_error("resourceVersion should not be set on objects to be created"));
        }
        let mut name = metadata["name"].as_str().unwrap_or_default().to_owned();
        if name.is_empty() {
            if let Some(prefix) = metadata["generateName"].as_str().filter(|p| !p.is_empty()) {
                name = format!("{prefix}{}", meta::name_suffix());
                metadata["name"] = json!(name);
            } else {
                return Err(ApiError::invalid(
                    rt,
                    "",
                    &[("metadata.name".into(), "Required value: name or generateName is required".into())],
                ));
            }
        }
        if !valid_name(&name) {
            return Err(ApiError::invalid(
                rt,
                &name,
                &[(
                    "metadata.name".into(),
                    format!(
                        "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case \
                         alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character \
                         (e.g. 'example.com', regex used for validation is \
                         '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
                    ),
                )],
            ));
        }
        self.check_namespace(rt, namespace)?;
        let object_key = key(rt, if rt.namespaced { namespace.unwrap_or_default() } else { "" }, &name);
        if self.objects.contains_key(&object_key) {
            return Err(ApiError::already_exists(rt, &name));
        }
        let metadata = object["metadata"].as_object_mut().expect("set to an object above");
        metadata.insert("uid".into(), json!(meta::new_uid()));
        metadata.insert("creationTimestamp".into(), json!(meta::timestamp(SystemTime::now())));
        for server_owned in ["deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"] {
            metadata.remove(server_owned);
        }
        if rt.generation {
            metadata.insert("generation".into(), json!(1));
        } else {
            metadata.remove("generation");
        }
        if rt.status_subresource && !keep_status {
            match initial_status(rt) {
                Some(status) => object["status"] = status,
                None => {
                    object.as_object_mut().expect("checked above").remove("status");
                }
            }
        }
        apply_defaults(rt, &mut object);
        validate(rt, &object, None)?;
        validate_custom(rt, &object, None)?;
        let object = with_type_meta(rt, object);
        if dry_run {
            return Ok(object);
        }
        let mut object = object;
        object["metadata"]["resourceVersion"] = json!(self.next_resource_version().to_string());
        self.objects.insert(object_key.clone(), object.clone());
        self.record(object_key, EventType::Added, object.clone(), None);
        if is_crd(rt) {
            return Ok(self.establish_crd(rt, object));
        }
        Ok(object)
    }

    /// Serves the CRD's versions and marks it Established, as the apiextensions controllers do.
    fn establish_crd(&mut self, rt: &ResourceType, crd: Value) -> Value {
        self.register_crd(&crd);
        let mut established = crd.clone();
        let now = meta::timestamp(SystemTime::now());
        let condition = |kind: &str, reason: &str, message: &str| json!({"type": kind, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message});
        let storage_versions: Vec<Value> = crd["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["storage"].as_bool() == Some(true))
            .map(|v| v["name"].clone())
            .collect();
        let mut accepted_names = crd["spec"]["names"].clone();
        if accepted_names["singular"].is_null() {
            accepted_names["singular"] = json!(accepted_names["kind"].as_str().unwrap_or_default().to_lowercase());
        }
        if accepted_names["listKind"].is_null() {
            accepted_names["listKind"] = json!(format!("{}List", accepted_names["kind"].as_str().unwrap_or_default()));
        }
        established["status"] = json!({
            "conditions": [
                condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            ],
            "acceptedNames": accepted_names,
            "storedVersions": storage_versions,
        });
        let name = name_of(&crd).to_owned();
        self.write(rt, None, &name, established, Part::Status, false).unwrap_or(crd)
    }

    fn register_crd(&mut self, crd: &Value) {
        let served = resources::types_from_crd(crd);
        let group = crd["spec"]["group"].as_str().unwrap_or_default();
        let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default();
        self.types.retain(|rt| !(rt.custom && rt.group == group && rt.plural == plural));
        self.types.extend(served);
    }

    /// PUT, and the final step of every PATCH: optimistic concurrency, status/main separation, generation, no-op
    /// detection, finalizer completion.
    pub fn write(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        mut new: Value,
        part: Part,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if rt.read_only {
            return Err(ApiError::method_not_allowed());
        }
        if !new.is_object() || !new["metadata"].is_object() {
            return Err(ApiError::bad_request(
                "the object provided is unrecognized or malformed: metadata is required",
            ));
        }
        if let Some(body_name) = new["metadata"]["name"].as_str().filter(|n| *n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if rt.namespaced {
            let body_ns = new["metadata"]["namespace"].as_str().unwrap_or_default();
            if !body_ns.is_empty() && Some(body_ns) != namespace {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        let object_key = key(rt, namespace.unwrap_or_default(), name);
        let old = self.objects.get(&object_key).cloned().ok_or_else(|| ApiError::not_found(rt, name))?;
        self.decode_custom(rt, &mut new);
        let requested_rv = resource_version_of(&new).to_owned();
        if requested_rv.is_empty() {
            if rt.custom {
                return Err(ApiError::invalid(
                    rt,
                    name,
                    &[(
                        "metadata.resourceVersion".into(),
                        "Invalid value: 0x0: must be specified for an update".into(),
                    )],
                ));
            }
        } else if requested_rv != resource_version_of(&old) {
            return Err(ApiError::conflict(rt, name));
        }
        let mut result = match part {
            Part::Status => {
                let mut result = old.clone();
                match new.as_object_mut().and_then(|m| m.remove("status")) {
                    Some(status) => result["status"] = status,
                    None => {
                        result.as_object_mut().expect("stored objects are objects").remove("status");
                    }
                }
                result
            }
            Part::Main => {
                let metadata = new["metadata"].as_object_mut().expect("checked above");
                for immutable in [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                    "namespace",
                    "name",
                ] {
                    match old["metadata"].get(immutable) {
                        Some(value) => metadata.insert(immutable.into(), value.clone()),
                        None => metadata.remove(immutable),
                    };
                }
                metadata.remove("managedFields");
                metadata.remove("selfLink");
                if rt.status_subresource {
                    match old.get("status") {
                        Some(status) => new["status"] = status.clone(),
                        None => {
                            new.as_object_mut().expect("checked above").remove("status");
                        }
                    }
                }
                apply_defaults(rt, &mut new);
                validate(rt, &new, Some(&old))?;
                new
            }
        };
        validate_custom(rt, &result, Some(&old))?;
        result["metadata"]["resourceVersion"] = json!(resource_version_of(&old));
        let result_typed = with_type_meta(rt, result.clone());
        result = result_typed;
        if rt.generation && generation_relevant(rt, &result) != generation_relevant(rt, &old) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            result["metadata"]["generation"] = json!(generation);
        }
        if result == old {
            return Ok(old);
        }
        let finished_deleting = result["metadata"]["deletionTimestamp"].is_string()
            && result["metadata"]["finalizers"].as_array().is_none_or(Vec::is_empty);
        if dry_run {
            return Ok(result);
        }
        result["metadata"]["resourceVersion"] = json!(self.next_resource_version().to_string());
        if finished_deleting {
            self.remove(rt, object_key, result.clone());
            return Ok(result);
        }
        self.objects.insert(object_key.clone(), result.clone());
        self.record(object_key, EventType::Modified, result.clone(), Some(old));
        if is_crd(rt) && part == Part::Main {
            self.register_crd(&result);
        }
        Ok(result)
    }

    /// PATCH: `created` is true when an apply patch created the object.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        patch_type: PatchType,
        body: &Value,
        part: Part,
        dry_run: bool,
    ) -> Result<(Value, bool), ApiError> {
        if rt.read_only {
            return Err(ApiError::method_not_allowed());
        }
        let current = match self.objects.get(&key(rt, namespace.unwrap_or_default(), name)) {
            Some(current) => with_type_meta(rt, current.clone()),
            None if patch_type == PatchType::Apply && part == Part::Main => {
                self.check_namespace(rt, namespace)?;
                if name_of(body) != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({}) does not match the name on the URL ({name})",
                        name_of(body)
                    )));
                }
                return self.create(rt, namespace, body.clone(), dry_run, false).map(|o| (o, true));
            }
            None => return Err(ApiError::not_found(rt, name)),
        };
        let mut patched = current.clone();
        match patch_type {
            PatchType::Merge => patch::merge_patch(&mut patched, body),
            PatchType::StrategicMerge => patch::strategic_merge_patch(&mut patched, body),
            PatchType::Json => patch::json_patch(&mut patched, body)?,
            PatchType::Apply => {
                if name_of(body) != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({}) does not match the name on the URL ({name})",
                        name_of(body)
                    )));
                }
                patch::apply(&mut patched, body);
            }
        }
        if !patched["metadata"].is_object() {
            return Err(ApiError::bad_request("the patch removed metadata"));
        }
        // A patch without a resourceVersion applies to the current object; one with a stale one conflicts.
        if resource_version_of(&patched).is_empty() {
            patched["metadata"]["resourceVersion"] = json!(resource_version_of(&current));
        }
        self.write(rt, namespace, name, patched, part, dry_run).map(|o| (o, false))
    }

    fn remove(&mut self, rt: &ResourceType, object_key: ObjectKey, mut object: Value) {
        self.objects.remove(&object_key);
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.record(object_key.clone(), EventType::Deleted, object.clone(), None);
        if is_crd(rt) {
            let group = object["spec"]["group"].as_str().unwrap_or_default().to_owned();
            let plural = object["spec"]["names"]["plural"].as_str().unwrap_or_default().to_owned();
            let instances: Vec<(ObjectKey, Value)> = self
                .objects
                .iter()
                .filter(|(k, _)| k.0 == group && k.2 == plural)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (instance_key, instance) in instances {
                self.next_resource_version();
                self.objects.remove(&instance_key);
                self.record(instance_key, EventType::Deleted, instance, None);
            }
            self.types.retain(|t| !(t.custom && t.group == group && t.plural == plural));
        }
        if rt.group.is_empty() && rt.plural == "namespaces" {
            let namespace = object_key.4.clone();
            let contents: Vec<(ObjectKey, Value)> =
                self.objects.iter().filter(|(k, _)| k.3 == namespace).map(|(k, v)| (k.clone(), v.clone())).collect();
            for (content_key, content) in contents {
                self.next_resource_version();
                self.objects.remove(&content_key);
                self.record(content_key, EventType::Deleted, content, None);
            }
        }
    }

    /// DELETE of one object. `options` is the DeleteOptions body (preconditions are honoured).
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        options: &Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if rt.read_only {
            return Err(ApiError::method_not_allowed());
        }
        let object_key = key(rt, namespace.unwrap_or_default(), name);
        let current = self.objects.get(&object_key).cloned().ok_or_else(|| ApiError::not_found(rt, name))?;
        let preconditions = &options["preconditions"];
        for (field, what) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
            if let Some(wanted) = preconditions[field].as_str() {
                let actual = current["metadata"][field].as_str().unwrap_or_default();
                if wanted != actual {
                    return Err(ApiError::precondition_failed(rt, name, what, wanted, actual));
                }
            }
        }
        let has_finalizers = current["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if current["metadata"]["deletionTimestamp"].is_string() || dry_run {
                return Ok(current);
            }
            let mut terminating = current.clone();
            terminating["metadata"]["deletionTimestamp"] = json!(meta::timestamp(SystemTime::now()));
            terminating["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            terminating["metadata"]["resourceVersion"] = json!(self.next_resource_version().to_string());
            self.objects.insert(object_key.clone(), terminating.clone());
            self.record(object_key, EventType::Modified, terminating.clone(), Some(current));
            return Ok(terminating);
        }
        let uid = current["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
        if !dry_run {
            self.next_resource_version();
            self.remove(rt, object_key, current.clone());
        }
        if rt.delete_returns_object { Ok(current) } else { Ok(status::delete_success(rt, name, &uid)) }
    }

    /// DELETE on a collection: deletes every matching object and answers with the list of them.
    pub fn delete_collection(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        options: &ListOptions,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let unpaged = ListOptions { limit: None, continue_token: None, ..options.clone() };
        let list = self.list(rt, namespace, &unpaged)?;
        let mut deleted = Vec::new();
        for item in list["items"].as_array().into_iter().flatten() {
            let item_ns = item["metadata"]["namespace"].as_str();
            let item_name = name_of(item).to_owned();
            self.delete(rt, item_ns, &item_name, &Value::Null, dry_run)?;
            deleted.push(item.clone());
        }
        let mut list = list;
        list["items"] = Value::Array(deleted);
        list["metadata"] = json!({"resourceVersion": self.resource_version.to_string()});
        Ok(list)
    }

    /// GET of the `autoscaling/v1` Scale view of a resource with a scale subresource.
    pub fn get_scale(&self, rt: &ResourceType, namespace: Option<&str>, name: &str) -> Result<Value, ApiError> {
        let parent = self.get(rt, namespace, name)?;
        Ok(scale_of(rt, &parent))
    }

    /// PUT of a Scale: writes the parent's replicas (bumping its resourceVersion and generation).
    pub fn update_scale(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        scale: &Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let paths = rt.scale.clone().ok_or_else(ApiError::path_not_found)?;
        let parent = self.get(rt, namespace, name)?;
        if let Some(body_name) = scale["metadata"]["name"].as_str().filter(|n| *n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let requested_rv = resource_version_of(scale);
        if !requested_rv.is_empty() && requested_rv != resource_version_of(&parent) {
            return Err(ApiError::conflict(rt, name));
        }
        let scale_type = ResourceType { group: "autoscaling".into(), kind: "Scale".into(), ..rt.clone() };
        let replicas = match &scale["spec"]["replicas"] {
            Value::Null => 0,
            value => value.as_i64().ok_or_else(|| {
                ApiError::bad_request(format!("unable to decode Scale: spec.replicas is not an integer: {value}"))
            })?,
        };
        if replicas < 0 {
            return Err(ApiError::invalid(
                &scale_type,
                name,
                &[("spec.replicas".into(), format!("Invalid value: {replicas}: must be greater than or equal to 0"))],
            ));
        }
        let mut updated = parent.clone();
        set_path(&mut updated, &paths.spec_replicas, json!(replicas));
        let written = self.write(rt, namespace, name, updated, Part::Main, dry_run)?;
        Ok(scale_of(rt, &written))
    }

    pub fn patch_scale(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        patch_type: PatchType,
        body: &Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut scale = self.get_scale(rt, namespace, name)?;
        match patch_type {
            PatchType::Merge | PatchType::Apply => patch::merge_patch(&mut scale, body),
            PatchType::StrategicMerge => patch::strategic_merge_patch(&mut scale, body),
            PatchType::Json => patch::json_patch(&mut scale, body)?,
        }
        self.update_scale(rt, namespace, name, &scale, dry_run)
    }

    /// Library write that bypasses the REST checks: sets an object's status directly.
    pub fn set_status(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        status: Value,
    ) -> Result<Value, ApiError> {
        let mut object = self.get(rt, namespace, name)?;
        object["status"] = status;
        self.write(rt, namespace, name, object, Part::Status, false)
    }

    /// Library upsert for read-only resources (metrics).
    pub fn upsert_unchecked(&mut self, rt: &ResourceType, namespace: Option<&str>, mut object: Value) -> Value {
        let name = name_of(&object).to_owned();
        let object_key = key(rt, namespace.unwrap_or_default(), &name);
        let previous = self.objects.get(&object_key).cloned();
        if previous.is_none() {
            object["metadata"]["creationTimestamp"] = json!(meta::timestamp(SystemTime::now()));
        }
        let object = with_type_meta(rt, object);
        self.next_resource_version();
        self.objects.insert(object_key.clone(), object.clone());
        let event_type = if previous.is_some() { EventType::Modified } else { EventType::Added };
        self.record(object_key, event_type, object.clone(), previous);
        object
    }

    /// Library delete for read-only resources (metrics).
    pub fn remove_unchecked(&mut self, rt: &ResourceType, namespace: Option<&str>, name: &str) {
        let object_key = key(rt, namespace.unwrap_or_default(), name);
        if let Some(object) = self.objects.get(&object_key).cloned() {
            self.next_resource_version();
            self.remove(rt, object_key, object);
        }
    }

    /// Every Deployment and StatefulSet, for the built-in controller.
    pub fn workloads(&self) -> Vec<(ResourceType, Value)> {
        self.types
            .iter()
            .filter(|rt| is_apps_workload(rt))
            .flat_map(|rt| self.objects_of(rt, None).map(move |(_, o)| (rt.clone(), o.clone())))
            .collect()
    }
}

fn is_crd(rt: &ResourceType) -> bool {
    rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions"
}

/// The Scale view of `parent`.
fn scale_of(rt: &ResourceType, parent: &Value) -> Value {
    let paths = rt.scale.as_ref().expect("callers check for a scale subresource");
    let metadata = &parent["metadata"];
    let mut scale_meta = json!({
        "name": metadata["name"],
        "uid": metadata["uid"],
        "resourceVersion": metadata["resourceVersion"],
        "creationTimestamp": metadata["creationTimestamp"],
    });
    if rt.namespaced {
        scale_meta["namespace"] = metadata["namespace"].clone();
    }
    let spec_replicas = get_path(parent, &paths.spec_replicas).and_then(Value::as_i64).unwrap_or(0);
    let status_replicas = get_path(parent, &paths.status_replicas).and_then(Value::as_i64).unwrap_or(0);
    let mut status = json!({"replicas": status_replicas});
    let selector = match &paths.selector {
        SelectorSource::LabelSelectorObject(path) => get_path(parent, path).map(format_label_selector),
        SelectorSource::StringPath(path) => get_path(parent, path).and_then(Value::as_str).map(str::to_owned),
        SelectorSource::None => None,
    };
    if let Some(selector) = selector.filter(|s| !s.is_empty()) {
        status["selector"] = json!(selector);
    }
    let spec = if spec_replicas == 0 { json!({}) } else { json!({"replicas": spec_replicas}) };
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": scale_meta, "spec": spec, "status": status})
}
