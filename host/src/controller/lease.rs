//! Leader election through a `coordination.k8s.io/v1` Lease: one host scales, the others stand by.
//!
//! A small loop rather than a library, with client-go's timings: every update is a replace guarded by the Lease's
//! resourceVersion (two candidates cannot both win). The leader renews every retry period and counts its term from
//! the moment it *sent* the last successful renewal, for the renew deadline only, so it stops writing before any
//! follower may take over (the lease duration after that renewal), whatever happens to its API calls. A follower
//! tries every retry period, and at the moment the lease it watches expires, so a leader that dies is replaced
//! within one lease duration of its last renewal.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::config::LeaseTimings;

/// The Lease the hosts elect their leader with, unless told otherwise: the one name deploy/base/rbac.yaml lets them
/// update.
pub const DEFAULT_LEASE_NAME: &str = "ballast-leader";

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// This host's identity in `holderIdentity` (the pod name in a cluster).
    pub identity: String,
    /// `leaseDurationSeconds`: how long after the last renewal a follower may take over (whole seconds).
    pub duration: Duration,
    /// How long the leader keeps leading without a successful renewal; shorter than `duration`, so it has stopped
    /// writing before anyone takes over.
    pub renew_deadline: Duration,
    /// How often the leader renews, and a follower tries to acquire.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// A lease with client-go's timings ([`LeaseTimings::default`]).
    pub fn new(name: impl Into<String>, namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        let timings = LeaseTimings::default();
        LeaseConfig {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            duration: timings.duration,
            renew_deadline: timings.renew_deadline,
            retry_period: timings.retry_period,
        }
    }

    /// Refuses timings that could let two hosts lead at once, as client-go's `NewLeaderElector` does.
    pub(crate) fn check(&self) -> Result<(), TimingError> {
        let (duration, deadline, retry) = (self.duration, self.renew_deadline, self.retry_period);
        if duration.subsec_nanos() != 0 || duration.is_zero() {
            return Err(TimingError::Duration(duration));
        }
        if deadline >= duration {
            return Err(TimingError::Deadline { deadline, duration });
        }
        // client-go's JitterFactor: a renewal may come 20% late and still meet the deadline.
        if retry.is_zero() || retry.mul_f64(1.2) >= deadline {
            return Err(TimingError::Retry { retry, deadline });
        }
        Ok(())
    }
}

/// Lease timings that could let two hosts lead at once.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum TimingError {
    #[error("the lease duration ({0:?}) must be a whole number of seconds, at least 1")]
    Duration(Duration),
    #[error("the renew deadline ({deadline:?}) must be shorter than the lease duration ({duration:?})")]
    Deadline { deadline: Duration, duration: Duration },
    #[error("the retry period ({retry:?}) must be above 0 and at most the renew deadline ({deadline:?}) / 1.2")]
    Retry { retry: Duration, deadline: Duration },
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

    pub(crate) fn is_leader(&self) -> bool {
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
            let mut next = config.retry_period;
            match try_acquire_or_renew(&api, &config).await {
                Ok(Round::Leading) => {
                    if !leadership.is_leader() {
                        tracing::info!(lease = %config.name, identity = %config.identity, "became the leader");
                    }
                    leadership.set_until(Some(sent + config.renew_deadline));
                }
                Ok(Round::Following { expires_in }) => {
                    if leadership.is_leader() {
                        tracing::warn!(lease = %config.name, "lost the lease to another host");
                    }
                    leadership.set_until(None);
                    // Try again as soon as the holder's term is over, not up to a retry period later.
                    if let Some(expires_in) = expires_in {
                        next = next.min(expires_in + EXPIRY_MARGIN);
                    }
                }
                Err(e) => tracing::warn!(lease = %config.name, "lease {}/{}: {e}", config.namespace, config.name),
            }
            tokio::select! {
                _ = tokio::time::sleep(next) => {}
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

/// How long after the expiry computed from the Lease a follower tries: the millisecond rounding of `renewTime`.
const EXPIRY_MARGIN: Duration = Duration::from_millis(5);

/// What one round of the election found.
enum Round {
    /// We hold the lease now.
    Leading,
    /// Another host holds it; its term ends in `expires_in` (by the Lease's times), unknown after a lost race.
    Following { expires_in: Option<Duration> },
}

/// One round: take the lease if it is free, expired or ours.
async fn try_acquire_or_renew(api: &Api<Lease>, config: &LeaseConfig) -> kube::Result<Round> {
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
            Ok(_) => Ok(Round::Leading),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Round::Following { expires_in: None }),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let ours = holder.as_deref() == Some(config.identity.as_str());
    if !ours && holder.is_some() {
        let expires_in = expires_in(spec);
        if !expires_in.is_zero() {
            return Ok(Round::Following { expires_in: Some(expires_in) });
        }
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
        Ok(_) => Ok(Round::Leading),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Round::Following { expires_in: None }),
        Err(e) => Err(e),
    }
}

/// Time left in the holder's term: zero once `renewTime + leaseDurationSeconds` has passed.
fn expires_in(spec: &LeaseSpec) -> Duration {
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else { return Duration::ZERO };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let expires = renewed.0.as_millisecond().saturating_add(duration * 1000);
    let left = expires.saturating_sub(k8s_openapi::jiff::Timestamp::now().as_millisecond());
    Duration::from_millis(u64::try_from(left).unwrap_or(0))
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
