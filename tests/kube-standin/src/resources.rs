//! The served resource types: the built-in ones and those registered by CustomResourceDefinitions, plus the
//! discovery documents (`/api`, `/apis`, `/apis/{group}`, APIResourceList) built from them.

use std::sync::Arc;

use serde_json::{Value, json};

/// Where a scale subresource reads and writes its fields, as JSON paths split into keys.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalePaths {
    pub spec_replicas: Vec<String>,
    pub status_replicas: Vec<String>,
    pub selector: SelectorSource,
}

/// How the Scale's `status.selector` string is found.
#[derive(Debug, Clone, PartialEq)]
pub enum SelectorSource {
    /// A `metav1.LabelSelector` object (Deployments, StatefulSets) serialized to the string form.
    LabelSelectorObject(Vec<String>),
    /// A CRD `labelSelectorPath`: already a string.
    StringPath(Vec<String>),
    /// No selector path configured.
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub status_subresource: bool,
    pub scale: Option<ScalePaths>,
    /// `metadata.generation` is maintained (Deployments, StatefulSets, CRDs and custom resources).
    pub generation: bool,
    /// A CustomResourceDefinition instance: PUT needs `metadata.resourceVersion`, items keep their type meta.
    pub custom: bool,
    /// Only GET and LIST (metrics.k8s.io).
    pub read_only: bool,
    /// DELETE answers with the object rather than a `Status` (`ReturnDeletedObject` in the real registry).
    pub delete_returns_object: bool,
    /// Field selectors accepted beyond `metadata.name` / `metadata.namespace`.
    pub extra_field_labels: &'static [&'static str],
    /// A custom resource version's `openAPIV3Schema`: pruning, defaulting and validation (see `schema.rs`).
    pub schema: Option<Arc<Value>>,
}

impl ResourceType {
    fn builtin(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            namespaced,
            short_names: Vec::new(),
            status_subresource: false,
            scale: None,
            generation: false,
            custom: false,
            read_only: false,
            delete_returns_object: false,
            extra_field_labels: &[],
            schema: None,
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// `deployments.apps`, or `configmaps` for the core group: how errors name the resource.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.clone() } else { format!("{}.{}", self.plural, self.group) }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn same_resource(&self, group: &str, version: &str, plural: &str) -> bool {
        self.group == group && self.version == version && self.plural == plural
    }

    /// The APIResource entries for discovery: the resource and its subresources.
    fn discovery_entries(&self) -> Vec<Value> {
        let verbs: Vec<&str> = if self.read_only {
            vec!["get", "list"]
        } else {
            vec!["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        };
        let mut main = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        let mut entries = vec![main];
        if self.status_subresource {
            entries.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if self.scale.is_some() {
            entries.push(json!({
                "name": format!("{}/scale", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }));
        }
        entries
    }
}

fn path(dotted: &str) -> Vec<String> {
    dotted.trim_start_matches('.').split('.').map(str::to_owned).collect()
}

fn apps_scale() -> ScalePaths {
    ScalePaths {
        spec_replicas: path(".spec.replicas"),
        status_replicas: path(".status.replicas"),
        selector: SelectorSource::LabelSelectorObject(path(".spec.selector")),
    }
}

/// The resource types served from start-up.
pub fn builtin_types() -> Vec<ResourceType> {
    let mut configmaps = ResourceType::builtin("", "v1", "configmaps", "ConfigMap", true);
    configmaps.short_names = vec!["cm".into()];
    let secrets = ResourceType::builtin("", "v1", "secrets", "Secret", true);
    let mut pods = ResourceType::builtin("", "v1", "pods", "Pod", true);
    pods.short_names = vec!["po".into()];
    pods.status_subresource = true;
    pods.delete_returns_object = true;
    pods.extra_field_labels = &[
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ];
    let mut core_events = ResourceType::builtin("", "v1", "events", "Event", true);
    core_events.short_names = vec!["ev".into()];
    core_events.extra_field_labels = &[
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ];
    let mut namespaces = ResourceType::builtin("", "v1", "namespaces", "Namespace", false);
    namespaces.short_names = vec!["ns".into()];
    namespaces.status_subresource = true;
    namespaces.delete_returns_object = true;
    namespaces.extra_field_labels = &["status.phase"];
    let mut deployments = ResourceType::builtin("apps", "v1", "deployments", "Deployment", true);
    deployments.short_names = vec!["deploy".into()];
    deployments.status_subresource = true;
    deployments.generation = true;
    deployments.scale = Some(apps_scale());
    let mut statefulsets = ResourceType::builtin("apps", "v1", "statefulsets", "StatefulSet", true);
    statefulsets.short_names = vec!["sts".into()];
    statefulsets.status_subresource = true;
    statefulsets.generation = true;
    statefulsets.scale = Some(apps_scale());
    let leases = ResourceType::builtin("coordination.k8s.io", "v1", "leases", "Lease", true);
    let cluster_roles = ResourceType::builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false);
    let mut hpas =
        ResourceType::builtin("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", true);
    hpas.short_names = vec!["hpa".into()];
    hpas.status_subresource = true;
    hpas.generation = true;
    let mut events = ResourceType::builtin("events.k8s.io", "v1", "events", "Event", true);
    events.short_names = vec!["ev".into()];
    events.extra_field_labels = &[
        "regarding.kind",
        "regarding.namespace",
        "regarding.name",
        "regarding.uid",
        "regarding.apiVersion",
        "reason",
        "reportingController",
        "type",
    ];
    let mut crds = ResourceType::builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
    );
    crds.short_names = vec!["crd".into(), "crds".into()];
    crds.status_subresource = true;
    crds.generation = true;
    crds.delete_returns_object = true;
    let mut pod_metrics = ResourceType::builtin("metrics.k8s.io", "v1beta1", "pods", "PodMetrics", true);
    pod_metrics.read_only = true;
    let mut node_metrics = ResourceType::builtin("metrics.k8s.io", "v1beta1", "nodes", "NodeMetrics", false);
    node_metrics.read_only = true;
    vec![
        configmaps,
        secrets,
        pods,
        core_events,
        namespaces,
        deployments,
        statefulsets,
        leases,
        cluster_roles,
        hpas,
        events,
        crds,
        pod_metrics,
        node_metrics,
    ]
}

/// The resource types a CustomResourceDefinition serves: one per served version.
pub fn types_from_crd(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default();
    let kind = names["kind"].as_str().unwrap_or_default();
    let singular = names["singular"].as_str().map(str::to_owned).unwrap_or_else(|| kind.to_lowercase());
    let short_names: Vec<String> = names["shortNames"]
        .as_array()
        .map(|names| names.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let mut types = Vec::new();
    for version in spec["versions"].as_array().into_iter().flatten() {
        if version["served"].as_bool() != Some(true) {
            continue;
        }
        let subresources = &version["subresources"];
        let scale = subresources.get("scale").filter(|s| s.is_object()).map(|scale| ScalePaths {
            spec_replicas: path(scale["specReplicasPath"].as_str().unwrap_or(".spec.replicas")),
            status_replicas: path(scale["statusReplicasPath"].as_str().unwrap_or(".status.replicas")),
            selector: match scale["labelSelectorPath"].as_str() {
                Some(selector) => SelectorSource::StringPath(path(selector)),
                None => SelectorSource::None,
            },
        });
        types.push(ResourceType {
            group: group.into(),
            version: version["name"].as_str().unwrap_or_default().into(),
            plural: plural.into(),
            singular: singular.clone(),
            kind: kind.into(),
            namespaced,
            short_names: short_names.clone(),
            status_subresource: subresources.get("status").is_some_and(Value::is_object),
            scale,
            generation: true,
            custom: true,
            read_only: false,
            delete_returns_object: false,
            extra_field_labels: &[],
            schema: version["schema"].get("openAPIV3Schema").filter(|s| s.is_object()).cloned().map(Arc::new),
        });
    }
    types
}

/// `/api`: the legacy group's versions.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// The named groups and their versions in order of first appearance; the first version is preferred.
fn groups(types: &[ResourceType]) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for rt in types.iter().filter(|rt| !rt.group.is_empty()) {
        match groups.iter_mut().find(|(group, _)| *group == rt.group) {
            Some((_, versions)) if !versions.contains(&rt.version) => versions.push(rt.version.clone()),
            Some(_) => {}
            None => groups.push((rt.group.clone(), vec![rt.version.clone()])),
        }
    }
    groups
}

fn api_group(name: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
    json!({"name": name, "versions": versions.clone(), "preferredVersion": versions[0]})
}

/// `/apis`
pub fn api_group_list(types: &[ResourceType]) -> Value {
    let groups: Vec<Value> = groups(types).iter().map(|(name, versions)| api_group(name, versions)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`
pub fn api_group_doc(types: &[ResourceType], group: &str) -> Option<Value> {
    groups(types).iter().find(|(name, _)| name == group).map(|(name, versions)| {
        let mut doc = api_group(name, versions);
        doc["kind"] = json!("APIGroup");
        doc["apiVersion"] = json!("v1");
        doc
    })
}

/// `/api/v1` or `/apis/{group}/{version}`
pub fn api_resource_list(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let served: Vec<&ResourceType> = types.iter().filter(|rt| rt.group == group && rt.version == version).collect();
    if served.is_empty() {
        return None;
    }
    let resources: Vec<Value> = served.iter().flat_map(|rt| rt.discovery_entries()).collect();
    let group_version = if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}))
}

/// The media type of aggregated discovery (`apidiscovery.k8s.io/v2`), which kubectl and kube's
/// `Discovery::run_aggregated` ask for in `Accept`.
pub const AGGREGATED_DISCOVERY_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an `Accept` header asks for aggregated discovery v2.
pub fn wants_aggregated_discovery(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

fn resource_discovery(rt: &ResourceType) -> Value {
    let verbs: Vec<&str> = if rt.read_only {
        vec!["get", "list"]
    } else {
        vec!["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    };
    let mut subresources = Vec::new();
    if rt.status_subresource {
        subresources.push(json!({
            "subresource": "status",
            "responseKind": gvk(&rt.group, &rt.version, &rt.kind),
            "verbs": ["get", "patch", "update"],
        }));
    }
    if rt.scale.is_some() {
        subresources.push(json!({
            "subresource": "scale",
            "responseKind": gvk("autoscaling", "v1", "Scale"),
            "verbs": ["get", "patch", "update"],
        }));
    }
    let mut resource = json!({
        "resource": rt.plural,
        "responseKind": gvk(&rt.group, &rt.version, &rt.kind),
        "scope": if rt.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": rt.singular,
        "verbs": verbs,
    });
    if !rt.short_names.is_empty() {
        resource["shortNames"] = json!(rt.short_names);
    }
    if !subresources.is_empty() {
        resource["subresources"] = json!(subresources);
    }
    resource
}

/// `/api` (core = true) or `/apis` as an aggregated `APIGroupDiscoveryList`.
pub fn aggregated_discovery(types: &[ResourceType], core: bool) -> Value {
    let group_names: Vec<(String, Vec<String>)> =
        if core { vec![(String::new(), vec!["v1".to_owned()])] } else { groups(types) };
    let items: Vec<Value> = group_names
        .iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|version| {
                    let resources: Vec<Value> = types
                        .iter()
                        .filter(|rt| rt.group == *group && rt.version == *version)
                        .map(resource_discovery)
                        .collect();
                    json!({"version": version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let metadata = if group.is_empty() {
                json!({"creationTimestamp": null})
            } else {
                json!({"name": group, "creationTimestamp": null})
            };
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}
