//! `ballast doctor`: what a cluster is missing for Ballast to scale, each finding with its fix. It reads what the
//! host would read (the CRD, the policies, the leader Lease, RBAC, metrics.k8s.io, other autoscalers) and, when
//! given, asks Redis for every policy's queues and Prometheus for every policy's metrics.

use std::fmt::Write as _;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;

use super::conflicts::Claims;
use super::lease::DEFAULT_LEASE_NAME;
use super::metrics_api::MetricsApi;
use crate::policy::documents::service_key;
use crate::sources::bullmq::{BullmqSource, ConnectOptions};
use crate::sources::prometheus::{PromTarget, PrometheusSource};
use crate::spec::ScalingPolicy;

/// The ClusterRole deploy/base grants the host: what a cluster's `ballast` ClusterRole must cover.
const SHIPPED_RBAC: &str = include_str!("../../../deploy/base/rbac.yaml");
const CRD_NAME: &str = "scalingpolicies.ballast.dev";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One check's outcome: which check, how it went, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub(crate) check: &'static str,
    pub(crate) message: String,
}

/// Where to look besides the API server.
pub struct Sources<'a> {
    pub redis: Option<&'a BullmqSource>,
    pub prometheus: Option<&'a PrometheusSource>,
    /// Namespace of the host's leader Lease (`--lease-namespace` of `ballast run`).
    pub lease_namespace: &'a str,
    /// Only the policies of this namespace (all when absent).
    pub namespace: Option<&'a str>,
}

/// Runs every check; the findings come in a fixed order, the failures carrying their fix.
pub async fn diagnose(client: &kube::Client, sources: &Sources<'_>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut note = |level, check, message: String| findings.push(Finding { level, check, message });
    match client.apiserver_version().await {
        Ok(version) => note(Level::Ok, "api", format!("API server {}.{} answers", version.major, version.minor)),
        Err(e) => {
            note(Level::Fail, "api", format!("the API server does not answer ({e}); check --kubeconfig and --context"));
            return findings;
        }
    }
    match Api::<CustomResourceDefinition>::all(client.clone()).get_opt(CRD_NAME).await {
        Ok(Some(_)) => note(Level::Ok, "crd", format!("{CRD_NAME} is installed")),
        Ok(None) => note(
            Level::Fail,
            "crd",
            format!("{CRD_NAME} is not installed: `ballast crd | kubectl apply -f -` (or helm install the chart)"),
        ),
        Err(e) => note(Level::Warn, "crd", format!("cannot read CustomResourceDefinitions to check ({e})")),
    }
    let policies = match sources.namespace {
        Some(namespace) => Api::<ScalingPolicy>::namespaced(client.clone(), namespace),
        None => Api::<ScalingPolicy>::all(client.clone()),
    };
    let policies = match policies.list(&Default::default()).await {
        Ok(list) => list.items,
        Err(e) => {
            note(Level::Fail, "policies", format!("cannot list ScalingPolicies ({e})"));
            Vec::new()
        }
    };
    let invalid: Vec<String> =
        policies.iter().filter_map(|p| p.spec.check().err().map(|why| format!("{}: {why}", service_key(p)))).collect();
    match (policies.len(), invalid.is_empty()) {
        (0, _) => note(Level::Warn, "policies", "no ScalingPolicy yet: nothing will be scaled".into()),
        (n, true) => note(Level::Ok, "policies", format!("{n} ScalingPolicies, all valid")),
        (n, false) => {
            note(Level::Fail, "policies", format!("{} of {n} are invalid: {}", invalid.len(), invalid.join("; ")))
        }
    }
    let (level, message) = leader(client, sources.lease_namespace).await;
    note(level, "host", message);
    let (level, message) = rbac(client).await;
    note(level, "rbac", message);
    if policies.iter().any(|p| p.spec.metrics.resources) {
        match MetricsApi::probe(client).await {
            Some(MetricsApi::Served) => note(Level::Ok, "metrics-server", "metrics.k8s.io is served".into()),
            Some(MetricsApi::Unusable(why)) => note(Level::Fail, "metrics-server", why),
            None => note(Level::Warn, "metrics-server", "could not ask discovery about metrics.k8s.io".into()),
        }
    }
    match Claims::list(client).await {
        Ok(claims) => {
            let conflicts: Vec<String> =
                policies.iter().filter_map(|p| claims.conflict(&service_key(p), &p.spec.target)).collect();
            if conflicts.is_empty() {
                note(Level::Ok, "conflicts", "no HPA or KEDA ScaledObject scales a policy's target".into());
            }
            for conflict in conflicts {
                note(Level::Fail, "conflicts", conflict);
            }
        }
        Err(why) => note(Level::Warn, "conflicts", why.to_string()),
    }
    for finding in redis(client, sources.redis, &policies).await {
        findings.push(finding);
    }
    for finding in prometheus(sources.prometheus, &policies).await {
        findings.push(finding);
    }
    findings
}

/// Whether a host holds the leader Lease and renews it.
async fn leader(client: &kube::Client, namespace: &str) -> (Level, String) {
    let lease = match Api::<Lease>::namespaced(client.clone(), namespace).get_opt(DEFAULT_LEASE_NAME).await {
        Ok(Some(lease)) => lease,
        Ok(None) => {
            return (
                Level::Fail,
                format!(
                    "no Lease {namespace}/{DEFAULT_LEASE_NAME}: no Ballast host has run here; install it \
                     (helm install ballast deploy/helm/ballast, or kubectl apply -k deploy/base)"
                ),
            );
        }
        Err(e) => return (Level::Warn, format!("cannot read Lease {namespace}/{DEFAULT_LEASE_NAME} ({e})")),
    };
    let spec = lease.spec.unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let renewed = spec.renew_time.map(|t| k8s_openapi::jiff::Timestamp::now().as_second() - t.0.as_second());
    match renewed {
        Some(age) if !holder.is_empty() && age <= duration => {
            (Level::Ok, format!("{holder} leads (renewed {age}s ago, lease {duration}s)"))
        }
        Some(age) => (
            Level::Fail,
            format!(
                "the leader lease was last renewed {age}s ago (lease {duration}s): no host is leading, so nothing \
                 scales; `kubectl -n {namespace} get pods` and the hosts' logs say why"
            ),
        ),
        None => (Level::Fail, format!("Lease {namespace}/{DEFAULT_LEASE_NAME} was never renewed: no host leads")),
    }
}

/// Whether the cluster's `ballast` ClusterRole grants what deploy/base's does.
async fn rbac(client: &kube::Client) -> (Level, String) {
    let granted = match Api::<ClusterRole>::all(client.clone()).get_opt("ballast").await {
        Ok(Some(role)) => role.rules.unwrap_or_default(),
        Ok(None) => {
            return (
                Level::Fail,
                "no ClusterRole `ballast`: the host cannot read policies or write /scale; apply deploy/base/rbac.yaml \
                 (or helm install the chart)"
                    .into(),
            );
        }
        Err(e) => return (Level::Warn, format!("cannot read ClusterRoles to check RBAC ({e})")),
    };
    let mut missing = Vec::new();
    for rule in shipped_rules() {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    if !granted.iter().any(|granted| allows(granted, group, resource, verb)) {
                        missing.push(format!("{verb} {resource}.{group}"));
                    }
                }
            }
        }
    }
    if missing.is_empty() {
        (Level::Ok, "ClusterRole `ballast` grants everything deploy/base/rbac.yaml does".into())
    } else {
        (Level::Fail, format!("ClusterRole `ballast` lacks: {}; apply deploy/base/rbac.yaml", missing.join(", ")))
    }
}

fn shipped_rules() -> Vec<PolicyRule> {
    serde_yaml_ng::Deserializer::from_str(SHIPPED_RBAC)
        .filter_map(|document| serde::Deserialize::deserialize(document).ok())
        .filter_map(|role: ClusterRole| role.rules)
        .flatten()
        .collect()
}

fn allows(rule: &PolicyRule, group: &str, resource: &str, verb: &str) -> bool {
    let has = |list: &Option<Vec<String>>, want: &str| list.iter().flatten().any(|x| x == want || x == "*");
    has(&rule.api_groups, group)
        && has(&rule.resources, resource)
        && rule.verbs.iter().any(|v| v == verb || v == "*")
        && rule.resource_names.as_ref().is_none_or(Vec::is_empty)
}

/// Every policy's queues, read from Redis as the host reads them: through the policy's Secret connection when it
/// names one, else through `--redis`.
async fn redis(client: &kube::Client, redis: Option<&BullmqSource>, policies: &[ScalingPolicy]) -> Vec<Finding> {
    use k8s_openapi::api::core::v1::Secret;
    let finding = |level, message| Finding { level, check: "redis", message };
    let mut findings = Vec::new();
    let mut read = 0;
    let mut without_redis = 0;
    for policy in policies.iter().filter(|p| !p.spec.metrics.queues.is_empty()) {
        let key = service_key(policy);
        let own;
        let source = match &policy.spec.metrics.redis {
            Some(connection) => {
                let what = format!("Secret {}/{}", key.namespace, connection.secret_name);
                let api: Api<Secret> = Api::namespaced(client.clone(), &key.namespace);
                let data = match api.get_opt(&connection.secret_name).await {
                    Ok(Some(secret)) => secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect(),
                    Ok(None) => {
                        findings.push(finding(Level::Fail, format!("{key}: {what} does not exist")));
                        continue;
                    }
                    Err(e) => {
                        findings.push(finding(Level::Warn, format!("{key}: cannot read {what} ({e})")));
                        continue;
                    }
                };
                match BullmqSource::from_secret(&what, &data, ConnectOptions::default().timeout) {
                    Ok(source) => {
                        own = source;
                        &own
                    }
                    Err(e) => {
                        findings.push(finding(Level::Fail, format!("{key}: {e}")));
                        continue;
                    }
                }
            }
            None => match redis {
                Some(source) => source,
                None => {
                    without_redis += 1;
                    continue;
                }
            },
        };
        match source.counts(&policy.spec.metrics.queues).await {
            Ok(states) => {
                for state in states {
                    match state {
                        Ok(_) => read += 1,
                        Err(e) => findings.push(finding(Level::Fail, format!("{key}: {e}"))),
                    }
                }
            }
            Err(e) => findings.push(finding(Level::Fail, format!("{key}: {e}"))),
        }
    }
    if without_redis > 0 {
        let message =
            format!("{without_redis} policies read BullMQ queues from the host's Redis; pass --redis to check them");
        findings.push(finding(Level::Warn, message));
    }
    if read > 0 && findings.iter().all(|f| f.level != Level::Fail) {
        findings.insert(0, finding(Level::Ok, format!("{read} queues read, every one of them")));
    }
    findings
}

/// Every policy's Prometheus metrics, queried as the host queries them.
async fn prometheus(prometheus: Option<&PrometheusSource>, policies: &[ScalingPolicy]) -> Vec<Finding> {
    let targets: Vec<PromTarget> = policies
        .iter()
        .filter_map(|p| {
            let metrics = p.spec.metrics.prometheus.clone()?;
            let key = service_key(p);
            Some(PromTarget { namespace: key.namespace.clone(), deployment: p.spec.target.name.clone(), key, metrics })
        })
        .collect();
    let finding = |level, message| Finding { level, check: "prometheus", message };
    let Some(prometheus) = prometheus else {
        if targets.is_empty() {
            return Vec::new();
        }
        let message = format!("{} policies read Prometheus; pass --prometheus to check them", targets.len());
        return vec![finding(Level::Warn, message)];
    };
    if targets.is_empty() {
        return Vec::new();
    }
    let collection = prometheus.collect(&targets).await;
    let mut findings: Vec<Finding> =
        collection.failures.iter().map(|failure| finding(Level::Fail, failure.error.to_string())).collect();
    if findings.is_empty() {
        let mut without_gpu = String::new();
        for (key, values) in &collection.values {
            if values.gpu_duty_cycle_percent.is_none() {
                let _ = write!(without_gpu, "{}{key}", if without_gpu.is_empty() { "" } else { ", " });
            }
        }
        findings.push(finding(Level::Ok, format!("Prometheus answers every query of {} policies", targets.len())));
        if !without_gpu.is_empty() {
            findings.push(finding(
                Level::Warn,
                format!(
                    "no fresh DCGM_FI_DEV_GPU_UTIL samples for the pods of {without_gpu}: is dcgm-exporter scraped, \
                     with namespace and pod labels?"
                ),
            ));
        }
    }
    findings
}

/// The findings as printed: one line each, the failures first-glance visible.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for finding in findings {
        let level = match finding.level {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        let _ = writeln!(
            out,
            "{level:<5} {:<15} {}",
            finding.check,
            crate::runtime::text::escaped(&finding.message, usize::MAX)
        );
    }
    out
}
