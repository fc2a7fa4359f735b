//! A tiny stand-in for the deployment and statefulset controllers: status follows spec.replicas, with readiness
//! after a configurable delay, so scalers see the status fields they read on a real cluster.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::meta;
use crate::server::Shared;

/// Knobs for the built-in controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerSettings {
    /// When false, workload status is left alone (tests can set it through `StandIn::set_status`).
    pub enabled: bool,
    /// How long new replicas take to become ready and available. Scaling down is immediate.
    pub ready_delay: Duration,
    /// Whether pods ever become ready, as on a cluster whose nodes run them. When false (a cluster without
    /// nodes), `readyReplicas` and `availableReplicas` stay absent (0) whatever `spec.replicas` says.
    pub pods_run: bool,
    /// How often the controller looks at workloads.
    pub period: Duration,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        Self { enabled: true, ready_delay: Duration::ZERO, pods_run: true, period: Duration::from_millis(20) }
    }
}

/// Per-workload memory: the replica count being rolled out and when it will be ready.
struct Rollout {
    target: i64,
    ready_at: Instant,
}

pub async fn run(shared: Arc<Shared>) {
    let mut rollouts: HashMap<(String, String, String), Rollout> = HashMap::new();
    let mut shutdown = shared.shutdown.clone();
    loop {
        let settings = shared.controller.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if settings.enabled {
            reconcile(&shared, &settings, &mut rollouts);
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.period) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn reconcile(
    shared: &Shared,
    settings: &ControllerSettings,
    rollouts: &mut HashMap<(String, String, String), Rollout>,
) {
    let mut store = shared.store();
    let now = Instant::now();
    for (rt, workload) in store.workloads() {
        let namespace = workload["metadata"]["namespace"].as_str().unwrap_or_default().to_owned();
        let name = workload["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let desired = workload["spec"]["replicas"].as_i64().unwrap_or(1);
        let current_ready = workload["status"]["readyReplicas"].as_i64().unwrap_or(0);
        let ready = if !settings.pods_run {
            0
        } else if desired <= current_ready || settings.ready_delay.is_zero() {
            desired
        } else {
            let rollout = rollouts
                .entry((rt.plural.clone(), namespace.clone(), name.clone()))
                .or_insert(Rollout { target: desired, ready_at: now + settings.ready_delay });
            if rollout.target != desired {
                *rollout = Rollout { target: desired, ready_at: now + settings.ready_delay };
            }
            if now >= rollout.ready_at { desired } else { current_ready }
        };
        let status = if rt.plural == "deployments" {
            deployment_status(&workload, desired, ready)
        } else {
            statefulset_status(&workload, desired, ready)
        };
        if workload["status"] != status {
            // The write is a status update through the store: it bumps the resourceVersion and notifies watchers.
            let _ = store.set_status(&rt, Some(&namespace), &name, status);
        }
    }
    rollouts.retain(|_, rollout| now < rollout.ready_at + Duration::from_secs(3600));
}

fn put_nonzero(status: &mut Value, field: &str, value: i64) {
    if value != 0 {
        status[field] = json!(value);
    }
}

/// A condition, keeping the previous timestamps while its status and reason stay the same.
fn condition(workload: &Value, kind: &str, status: bool, reason: &str, message: &str) -> Value {
    let status = if status { "True" } else { "False" };
    let previous = workload["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind && c["status"] == status && c["reason"] == reason);
    let now = meta::timestamp(SystemTime::now());
    let (updated, transitioned) = match previous {
        Some(previous) => (previous["lastUpdateTime"].clone(), previous["lastTransitionTime"].clone()),
        None => (json!(now), json!(now)),
    };
    json!({
        "type": kind,
        "status": status,
        "lastUpdateTime": updated,
        "lastTransitionTime": transitioned,
        "reason": reason,
        "message": message,
    })
}

fn deployment_status(workload: &Value, desired: i64, ready: i64) -> Value {
    let mut status = json!({"observedGeneration": workload["metadata"]["generation"]});
    put_nonzero(&mut status, "replicas", desired);
    put_nonzero(&mut status, "updatedReplicas", desired);
    put_nonzero(&mut status, "readyReplicas", ready);
    put_nonzero(&mut status, "availableReplicas", ready);
    put_nonzero(&mut status, "unavailableReplicas", desired - ready);
    let available = ready >= desired;
    let name = workload["metadata"]["name"].as_str().unwrap_or_default();
    status["conditions"] = json!([
        if available {
            condition(workload, "Available", true, "MinimumReplicasAvailable", "Deployment has minimum availability.")
        } else {
            condition(
                workload,
                "Available",
                false,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        },
        condition(
            workload,
            "Progressing",
            true,
            "NewReplicaSetAvailable",
            &format!("ReplicaSet \"{name}\" has successfully progressed."),
        ),
    ]);
    status
}

fn statefulset_status(workload: &Value, desired: i64, ready: i64) -> Value {
    let mut status = json!({
        "observedGeneration": workload["metadata"]["generation"],
        "replicas": desired,
        "availableReplicas": ready,
    });
    put_nonzero(&mut status, "readyReplicas", ready);
    put_nonzero(&mut status, "currentReplicas", desired);
    put_nonzero(&mut status, "updatedReplicas", desired);
    status
}
