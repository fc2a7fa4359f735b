//! Least privilege, checked: every request the host under test made to the API stand-in must be allowed by
//! deploy/base/rbac.yaml, evaluated as the API server's RBAC authorizer would (ClusterRole rules everywhere, Role
//! rules in their namespace, `resourceNames` limiting a rule to named objects).

use kube_standin::RecordedRequest;
use serde_json::Value;

/// One rule of a (Cluster)Role, and where it applies (`None`: every namespace, from a ClusterRole).
struct Grant {
    namespace: Option<String>,
    rule: Value,
}

/// The API request behind a URL, as RBAC sees it.
#[derive(Debug)]
struct Attributes {
    verb: &'static str,
    group: String,
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
}

fn grants() -> Vec<Grant> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/base/rbac.yaml");
    let text = std::fs::read_to_string(path).expect("deploy/base/rbac.yaml");
    let mut grants = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let doc = serde_json::to_value(<serde_yaml_ng::Value as serde::Deserialize>::deserialize(document).unwrap())
            .expect("RBAC YAML as JSON");
        let namespace = match doc["kind"].as_str() {
            Some("ClusterRole") => None,
            Some("Role") => Some(doc["metadata"]["namespace"].as_str().expect("a Role's namespace").to_owned()),
            _ => continue,
        };
        for rule in doc["rules"].as_array().into_iter().flatten() {
            grants.push(Grant { namespace: namespace.clone(), rule: rule.clone() });
        }
    }
    grants
}

/// `None` for URLs that are not resources (discovery, `/version`), which every authenticated user may read.
fn attributes(request: &RecordedRequest) -> Option<Attributes> {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => ((*group).to_owned(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, rest @ ..] if !rest.is_empty() => (Some((*namespace).to_owned()), rest),
        rest => (None, rest),
    };
    let (resource, name, subresource) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some((*name).to_owned()), None),
        [resource, name, subresource] => (*resource, Some((*name).to_owned()), Some(*subresource)),
        _ => return None,
    };
    let watching = request.query.split('&').any(|pair| pair == "watch=true" || pair == "watch=1");
    let verb = match (request.method.as_str(), &name) {
        ("GET", _) if watching => "watch",
        ("GET", Some(_)) => "get",
        ("GET", None) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", Some(_)) => "delete",
        ("DELETE", None) => "deletecollection",
        _ => "unknown",
    };
    let resource = match subresource {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_owned(),
    };
    Some(Attributes { verb, group, resource, namespace, name })
}

fn lists(rule: &Value, field: &str, value: &str) -> bool {
    rule[field].as_array().is_some_and(|items| items.iter().any(|item| item == value || item == "*"))
}

fn allows(grant: &Grant, request: &Attributes) -> bool {
    let in_scope = grant.namespace.is_none() || grant.namespace == request.namespace;
    let named = match grant.rule["resourceNames"].as_array() {
        None => true,
        Some(names) => request.name.as_ref().is_some_and(|name| names.iter().any(|n| n == name.as_str())),
    };
    in_scope
        && named
        && lists(&grant.rule, "apiGroups", &request.group)
        && lists(&grant.rule, "resources", &request.resource)
        && lists(&grant.rule, "verbs", request.verb)
}

/// Panics listing every request of `user` that deploy/base/rbac.yaml would forbid.
pub fn assert_allowed(requests: &[RecordedRequest], user: &str) {
    let grants = grants();
    let forbidden: std::collections::BTreeSet<String> = requests
        .iter()
        .filter(|request| request.user.as_deref() == Some(user))
        .filter_map(|request| attributes(request).map(|a| (request, a)))
        .filter(|(_, attributes)| !grants.iter().any(|grant| allows(grant, attributes)))
        .map(|(request, a)| {
            format!(
                "{} {}?{} ({} {}/{} in {:?})",
                request.method, request.path, request.query, a.verb, a.group, a.resource, a.namespace
            )
        })
        .collect();
    assert!(
        forbidden.is_empty(),
        "deploy/base/rbac.yaml does not allow what the host did; grant it (and say why in deploy/README.md) or \
         stop doing it:\n{}",
        forbidden.into_iter().collect::<Vec<_>>().join("\n")
    );
}
