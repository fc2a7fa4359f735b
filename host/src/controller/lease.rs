//! Leader election through a `coordination.k8s.io/v1` Lease: one host scales, the others stand by.
//!
//! A small loop rather than a library: every update is a replace guarded by the Lease's resourceVersion (two
//! candidates cannot both win), and the leader counts its own term from the moment it *sent* the last successful
//! renewal, so it stops writing before any follower may take over, whatever happens to its API calls.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};

/// The Lease the hosts elect their leader with, unless told otherwise: the one name deploy/base/rbac.yaml lets them
/// update.
pub const DEFAULT_LEASE_NAME: &str = "ballast-leader";

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// This host's identity in `holderIdentity` (the pod name in a cluster).
    pub identity: String,
    /// `leaseDurationSeconds`: how long a term lasts without renewal.
    pub duration: Duration,
    /// How often the leader renews, and a follower checks for an expired lease.
    pub renew_every: Duration,
}

impl LeaseConfig {
    pub fn new(name: impl Into<String>, namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        LeaseConfig {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }
}

/// Whether this host leads right now. Cheap to clone and to ask.
#[derive(Clone)]
pub struct Leadership(Arc<Mutex<Term>>);

enum Term {
    Always,
    Until(Option<Instant>),
}

impl Leadership {
    /// A host that always leads (single-replica runs, tests of one host).
    pub fn always() -> Self {
        Leadership(Arc::new(Mutex::new(Term::Always)))
    }

    fn follower() -> Self {
        Leadership(Arc::new(Mutex::new(Term::Until(None))))
    }

    pub fn is_leader(&self) -> bool {
        match &*self.0.lock().expect("leadership poisoned") {
            Term::Always => true,
            Term::Until(until) => until.is_some_and(|until| Instant::now() < until),
        }
    }

    fn set_until(&self, until: Option<Instant>) {
        *self.0.lock().expect("leadership poisoned") = Term::Until(until);
    }
}

/// Starts the election loop; the returned handle says whether this host leads. The loop ends when `shutdown`
/// fires, giving the lease up if held so another host takes over at once.
pub fn spawn(
    client: kube::Client,
    config: LeaseConfig,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> (Leadership, tokio::task::JoinHandle<()>) {
    let leadership = Leadership::follower();
    let handle = leadership.clone();
    let task = tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        loop {
            let sent = Instant::now();
            match try_acquire_or_renew(&api, &config).await {
                Ok(true) => {
                    // The term runs from when the renewal was sent, less a margin for clock rate differences.
                    let margin = config.duration / 10;
                    if !leadership.is_leader() {
                        tracing::info!(lease = %config.name, identity = %config.identity, "became the leader");
                    }
                    leadership.set_until(Some(sent + config.duration - margin));
                }
                Ok(false) => {
                    if leadership.is_leader() {
                        tracing::warn!(lease = %config.name, "lost the lease to another host");
                    }
                    leadership.set_until(None);
                }
                Err(e) => tracing::warn!(lease = %config.name, "lease {}/{}: {e}", config.namespace, config.name),
            }
            tokio::select! {
                _ = tokio::time::sleep(config.renew_every) => {}
                _ = shutdown.changed() => {
                    if leadership.is_leader() {
                        leadership.set_until(None);
                        if let Err(e) = release(&api, &config).await {
                            tracing::warn!("releasing lease {}/{}: {e}", config.namespace, config.name);
                        }
                    }
                    return;
                }
            }
        }
    });
    (handle, task)
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// One round: take the lease if it is free, expired or ours; Ok(true) when we hold it now.
async fn try_acquire_or_renew(api: &Api<Lease>, config: &LeaseConfig) -> kube::Result<bool> {
    let seconds = config.duration.as_secs().max(1) as i32;
    let existing = api.get_opt(&config.name).await?;
    let Some(mut lease) = existing else {
        let lease = Lease {
            metadata: ObjectMeta { name: Some(config.name.clone()), ..ObjectMeta::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(now_micro()),
                renew_time: Some(now_micro()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let ours = holder.as_deref() == Some(config.identity.as_str());
    if !ours && holder.is_some() && !expired(spec) {
        return Ok(false);
    }
    if !ours {
        spec.acquire_time = Some(now_micro());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        spec.holder_identity = Some(config.identity.clone());
    }
    spec.renew_time = Some(now_micro());
    spec.lease_duration_seconds = Some(seconds);
    // `replace` sends the resourceVersion we read: if anyone updated the lease since, this is a 409 and we lost.
    match api.replace(&config.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

fn expired(spec: &LeaseSpec) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else { return true };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let expires = renewed.0.as_millisecond().saturating_add(duration * 1000);
    k8s_openapi::jiff::Timestamp::now().as_millisecond() >= expires
}

/// Gives the lease up (holder cleared) so a follower need not wait for it to expire.
async fn release(api: &Api<Lease>, config: &LeaseConfig) -> kube::Result<()> {
    let Some(mut lease) = api.get_opt(&config.name).await? else { return Ok(()) };
    let Some(spec) = lease.spec.as_mut() else { return Ok(()) };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    api.replace(&config.name, &PostParams::default(), &lease).await.map(|_| ())
}
