//! Loading a policy's plugins, as a state machine the reconcile loop drives: no Kubernetes, no tasks, no clock
//! (the time is passed in), so every transition is unit-tested below.
//!
//! A policy has one [`Slot`] per [`Role`] (live and shadow, independent of each other), held in [`Roles`]. A slot
//! remembers:
//! - running: which version the running plugin was loaded from, so an unchanged plugin file is not read again;
//! - pending: the version a load is in flight for; a load that finishes for any other version is dropped;
//! - refused: a version that failed, not tried again until the reference (or its pin) names another;
//! - backoff: a version that failed in a way worth retrying (a pull, a canary that only ran out of time), tried
//!   again once its retry is due: 5 s, doubling up to 5 minutes.
//!
//! Its inputs are events: the spec changed ([`Slot::spec_changed`]), the reference names this now ([`Slot::found`]),
//! a load finished ([`Slot::finished`]), time passed ([`Slot::retry_due`]). Its outputs are [`Command`]s the loop
//! executes: start a load, install a plugin, report on the role's condition (and in an Event).

use std::ops::{Index, IndexMut};
use std::time::{Duration, Instant};

use crate::policy::status::{PLUGIN_READY, SHADOW_READY};

/// Which of a policy's plugins: the one whose decisions are applied, or the one only evaluated beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Live,
    Shadow,
}

impl Role {
    pub(crate) const ALL: [Role; 2] = [Role::Live, Role::Shadow];

    /// How messages about this plugin start.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Role::Live => "",
            Role::Shadow => "shadow plugin: ",
        }
    }

    /// The status condition that reports on this plugin.
    pub(crate) fn condition(self) -> &'static str {
        match self {
            Role::Live => PLUGIN_READY,
            Role::Shadow => SHADOW_READY,
        }
    }
}

/// One `T` per [`Role`], indexed by role.
#[derive(Debug, Default)]
pub(crate) struct Roles<T>([T; 2]);

impl<T> Roles<T> {
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter()
    }
}

impl<T> Index<Role> for Roles<T> {
    type Output = T;
    fn index(&self, role: Role) -> &T {
        &self.0[role as usize]
    }
}

impl<T> IndexMut<Role> for Roles<T> {
    fn index_mut(&mut self, role: Role) -> &mut T {
        &mut self.0[role as usize]
    }
}

/// What a role's reference names now, as the loop found it. `S` is how to load it.
#[derive(Debug)]
pub(crate) enum Found<S> {
    /// The spec names no plugin for this role (a policy without a shadow).
    Unnamed,
    /// The reference cannot be followed (a ConfigMap that is not there, a file outside the plugin directories).
    Unavailable(String),
    /// A component in hand, known by its sha256.
    Component { name: String, digest: String, source: S },
    /// A plugin file, known by its identity until it is read.
    File { name: String, token: String, source: S },
    /// An OCI artifact not pulled yet, known by its manifest digest until it is.
    Pull { token: String, source: S },
}

/// Why a version was not loaded.
#[derive(Debug)]
pub(crate) struct LoadFailure {
    pub(crate) message: String,
    /// The version not to load again until something changes: the component's digest once it is known.
    pub(crate) digest: String,
    /// A failed pull (registry unreachable, credentials missing) or a canary that only ran out of time is retried
    /// after a backoff; a refused component is not.
    pub(crate) retry: bool,
    /// The Event's and the condition's reason: `PluginPullFailed`, `PluginUnavailable` (a file not read) or
    /// `PluginRejected`.
    pub(crate) reason: &'static str,
}

/// What the loop is to do for a slot. `S` is how to load a version, `L` a loaded plugin.
#[derive(Debug, PartialEq)]
pub(crate) enum Command<S, L> {
    /// Start loading `source`; its outcome comes back to [`Slot::finished`] with `token`.
    Load { token: String, source: S },
    /// Install the plugin (live), or attach it (shadow), and report it loaded.
    Install(L),
    /// The wanted version is the one running: a condition still reporting a failure is stale; `message` replaces it.
    Running { message: String },
    /// The reference cannot be followed: the condition says `message` (`PluginUnavailable`), and when that is news,
    /// a warning and a `PluginRejected` Event say it too.
    Unavailable { message: String },
    /// A version was not loaded: the condition, a warning and an Event say `message`, with `reason`.
    Refused { reason: &'static str, message: String },
    /// The spec names no plugin for this role any more: drop it and its condition.
    Drop,
}

/// A version that failed, so it is not tried again until the reference or its pin changes, or (for a retryable
/// failure) until `retry_at`.
#[derive(Debug, Clone, PartialEq)]
struct Refusal {
    digest: String,
    pin: Option<String>,
    retry_at: Option<Instant>,
}

impl Refusal {
    fn holds(&self, digest: &str, pin: Option<&str>, now: Instant) -> bool {
        self.digest == digest && self.pin.as_deref() == pin && self.retry_at.is_none_or(|at| now < at)
    }
}

/// Wait before trying again after `failures` retryable failures in a row: 5 s doubling up to 5 minutes.
fn retry_backoff(failures: u32) -> Duration {
    Duration::from_secs(5u64.saturating_mul(1 << failures.min(6)).min(300))
}

/// Loading progress of one plugin of a policy.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// The version a load is in flight for.
    pending: Option<String>,
    refused: Option<Refusal>,
    /// Retryable failures (pulls, canary timeouts) in a row, for the backoff.
    failures: u32,
    /// What the running plugin was loaded from (its digest, or a plugin file's identity), so an unchanged file is
    /// not read again.
    loaded_from: Option<String>,
}

impl Slot {
    /// The spec changed: earlier refusals no longer hold, and a file is read again.
    pub(crate) fn spec_changed(&mut self) {
        self.refused = None;
        self.loaded_from = None;
    }

    /// Whether a retryable failure's backoff has run out (nothing else would trigger the retry).
    pub(crate) fn retry_due(&self, now: Instant) -> bool {
        self.pending.is_none() && self.refused.as_ref().and_then(|r| r.retry_at).is_some_and(|at| at <= now)
    }

    /// The reference names `found`; `running` is the digest of the plugin running in this role, `pin` the sha256
    /// the spec pins it to. Says what to do, if anything: a version neither running, nor in flight, nor refused is
    /// loaded.
    pub(crate) fn found<S, L>(
        &mut self,
        role: Role,
        found: Found<S>,
        running: Option<&str>,
        pin: Option<&str>,
        now: Instant,
    ) -> Option<Command<S, L>> {
        let (token, source) = match found {
            Found::Unnamed => {
                self.pending = None;
                return Some(Command::Drop);
            }
            Found::Unavailable(why) => {
                self.refused = None;
                let why = format!("{}{why}", role.prefix());
                let message = match running {
                    Some(_) => format!("{why}; the previous plugin keeps running"),
                    None => why,
                };
                return Some(Command::Unavailable { message });
            }
            Found::Component { name, digest, source } => {
                let pin_ok = pin.is_none_or(|p| p.trim().eq_ignore_ascii_case(&digest));
                if running == Some(digest.as_str()) && pin_ok {
                    return Some(self.running_again(format!("{}{name} (sha256 {digest}) is running", role.prefix())));
                }
                (digest, source)
            }
            Found::File { name, token, source } => {
                if running.is_some() && self.loaded_from.as_deref() == Some(token.as_str()) {
                    return Some(self.running_again(format!("{}{name} is running", role.prefix())));
                }
                (token, source)
            }
            Found::Pull { token, source } => (token, source),
        };
        let pending = self.pending.as_deref() == Some(token.as_str());
        let refused = self.refused.as_ref().is_some_and(|r| r.holds(&token, pin, now));
        if pending || refused {
            return None;
        }
        self.pending = Some(token.clone());
        Some(Command::Load { token, source })
    }

    /// The spec names the version that is running (again, e.g. after a refused update was rolled back).
    fn running_again<S, L>(&mut self, message: String) -> Command<S, L> {
        self.refused = None;
        self.failures = 0;
        Command::Running { message }
    }

    /// The load for `token` finished with `result`; `running` is whether a plugin runs in this role (it stays if
    /// this version is refused), `pin` the spec's sha256 pin. A load for a version no longer pending is dropped.
    pub(crate) fn finished<S, L>(
        &mut self,
        role: Role,
        token: &str,
        result: Result<L, LoadFailure>,
        running: bool,
        pin: Option<&str>,
        now: Instant,
    ) -> Option<Command<S, L>> {
        if self.pending.as_deref() != Some(token) {
            return None;
        }
        self.pending = None;
        match result {
            Ok(loaded) => {
                self.refused = None;
                self.failures = 0;
                self.loaded_from = Some(token.to_owned());
                Some(Command::Install(loaded))
            }
            Err(failure) => {
                let why = format!("{}{}", role.prefix(), failure.message);
                let message = if running { format!("{why}; the previous plugin keeps running") } else { why };
                let retry_at = failure.retry.then(|| {
                    let wait = retry_backoff(self.failures);
                    self.failures = self.failures.saturating_add(1);
                    now + wait
                });
                self.refused = Some(Refusal { digest: failure.digest, pin: pin.map(str::to_owned), retry_at });
                Some(Command::Refused { reason: failure.reason, message })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sources and loaded plugins stand in as their names.
    type Step = Option<Command<&'static str, &'static str>>;

    fn component(digest: &str) -> Found<&'static str> {
        Found::Component { name: "configmap:ns/p/plugin.wasm".into(), digest: digest.into(), source: "bytes" }
    }

    fn load(token: &str) -> Step {
        Some(Command::Load { token: token.into(), source: "bytes" })
    }

    fn refused(retry: bool) -> Result<&'static str, LoadFailure> {
        Err(LoadFailure { message: "no".into(), digest: "b".into(), retry, reason: "PluginRejected" })
    }

    /// Fails version `b` once in a slot that runs `a`.
    fn fail_b(slot: &mut Slot, retry: bool, now: Instant) {
        assert_eq!(slot.found(Role::Live, component("b"), Some("a"), None, now), load("b") as Step);
        let step: Step = slot.finished(Role::Live, "b", refused(retry), true, None, now);
        assert!(matches!(step, Some(Command::Refused { .. })), "{step:?}");
    }

    #[test]
    fn a_new_version_is_loaded_once_and_installed() {
        let (mut slot, now) = (Slot::default(), Instant::now());
        assert_eq!(slot.found(Role::Live, component("a"), None, None, now), load("a") as Step);
        // Found again while in flight: not loaded twice.
        assert_eq!(slot.found(Role::Live, component("a"), None, None, now), None as Step);
        assert_eq!(
            slot.finished(Role::Live, "a", Ok("plugin a"), false, None, now),
            Some(Command::Install("plugin a")) as Step
        );
        let step: Step = slot.found(Role::Live, component("a"), Some("a"), None, now);
        assert_eq!(step, Some(Command::Running { message: "configmap:ns/p/plugin.wasm (sha256 a) is running".into() }));
    }

    #[test]
    fn a_refused_new_version_keeps_the_running_one_and_is_not_retried() {
        let (mut slot, now) = (Slot::default(), Instant::now());
        assert_eq!(slot.found(Role::Live, component("b"), Some("a"), None, now), load("b") as Step);
        let step: Step = slot.finished(Role::Live, "b", refused(false), true, None, now);
        let message = "no; the previous plugin keeps running".to_owned();
        assert_eq!(step, Some(Command::Refused { reason: "PluginRejected", message }));
        assert_eq!(
            slot.found(Role::Live, component("b"), Some("a"), None, now + Duration::from_secs(3600)),
            None as Step
        );
        assert!(!slot.retry_due(now + Duration::from_secs(3600)));
    }

    #[test]
    fn a_refusal_without_a_running_plugin_says_nothing_keeps_running() {
        let (mut slot, now) = (Slot::default(), Instant::now());
        assert_eq!(slot.found(Role::Live, component("b"), None, None, now), load("b") as Step);
        let step: Step = slot.finished(Role::Live, "b", refused(false), false, None, now);
        assert_eq!(step, Some(Command::Refused { reason: "PluginRejected", message: "no".into() }));
    }

    #[test]
    fn a_changed_reference_is_loaded_after_a_refusal() {
        let (mut slot, now) = (Slot::default(), Instant::now());
        fail_b(&mut slot, false, now);
        assert_eq!(slot.found(Role::Live, component("c"), Some("a"), None, now), load("c") as Step);
    }

    #[test]
    fn a_changed_pin_or_spec_retries_a_refused_version() {
        let (mut slot, now) = (Slot::default(), Instant::now());
        fail_b(&mut slot, false, now);
        assert_eq!(slot.found(Role::Live, component("b"), Some("a"), Some("b"), now), load("b") as Step);
        let mut slot = Slot::default();
        fail_b(&mut slot, false, now);
        slot.spec_changed();
        assert_eq!(slot.found(Role::Live, component("b"), Some("a"), None, now), load("b") as Step);
    }

    #[test]
    fn rolling_back_to_the_running_version_clears_the_refusal() {
        let (mut slot, now) = (Slot::default(), Instant::now());
        fail_b(&mut slot, true, now);
        assert!(matches!(
            slot.found::<_, &str>(Role::Live, component("a"), Some("a"), None, now),
            Some(Command::Running { .. })
        ));
        assert!(!slot.retry_due(now + Duration::from_secs(3600)));
        // And the backoff starts over.
        fail_b(&mut slot, true, now);
        assert!(slot.retry_due(now + Duration::from_secs(5)));
    }

    #[test]
    fn a_retryable_failure_is_retried_after_a_backoff_that_doubles_up_to_five_minutes() {
        let (mut slot, mut now) = (Slot::default(), Instant::now());
        let mut waits = Vec::new();
        for _ in 0..9 {
            fail_b(&mut slot, true, now);
            let wait = (1..=600).map(Duration::from_secs).find(|&wait| slot.retry_due(now + wait)).expect("due");
            // Not retried before it is due, then retried.
            assert_eq!(
                slot.found(Role::Live, component("b"), Some("a"), None, now + wait - Duration::from_millis(1)),
                None as Step
            );
            waits.push(wait.as_secs());
            now += wait;
        }
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        // A success starts the backoff over.
        assert_eq!(slot.found(Role::Live, component("b"), Some("a"), None, now), load("b") as Step);
        assert_eq!(
            slot.finished(Role::Live, "b", Ok("plugin b"), true, None, now),
            Some(Command::Install("plugin b")) as Step
        );
        fail_b(&mut slot, true, now);
        assert!(slot.retry_due(now + Duration::from_secs(5)));
    }

    #[test]
    fn no_retry_is_due_while_a_load_is_in_flight() {
        let (mut slot, now) = (Slot::default(), Instant::now());
        fail_b(&mut slot, true, now);
        let later = now + Duration::from_secs(5);
        assert_eq!(slot.found(Role::Live, component("b"), Some("a"), None, later), load("b") as Step);
        assert!(!slot.retry_due(later));
    }

    #[test]
    fn a_load_for_a_version_no_longer_wanted_is_dropped() {
        let (mut slot, now) = (Slot::default(), Instant::now());
        assert_eq!(slot.found(Role::Live, component("b"), Some("a"), None, now), load("b") as Step);
        assert_eq!(slot.found(Role::Live, component("c"), Some("a"), None, now), load("c") as Step);
        assert_eq!(slot.finished(Role::Live, "b", Ok("plugin b"), true, None, now), None as Step);
        assert_eq!(
            slot.finished(Role::Live, "c", Ok("plugin c"), true, None, now),
            Some(Command::Install("plugin c")) as Step
        );
        // A shadow the spec no longer names: its load in flight is dropped too.
        assert_eq!(slot.found(Role::Shadow, component("d"), Some("c"), None, now), load("d") as Step);
        assert_eq!(slot.found(Role::Shadow, Found::<&str>::Unnamed, Some("c"), None, now), Some(Command::Drop) as Step);
        assert_eq!(slot.finished(Role::Shadow, "d", Ok("plugin d"), true, None, now), None as Step);
    }

    #[test]
    fn an_unchanged_file_is_not_read_again_until_the_spec_changes() {
        let (mut slot, now) = (Slot::default(), Instant::now());
        let file = || Found::File { name: "/plugins/p.wasm".into(), token: "ino-1".into(), source: "file" };
        assert_eq!(
            slot.found(Role::Live, file(), None, None, now),
            Some(Command::Load { token: "ino-1".into(), source: "file" }) as Step
        );
        assert_eq!(
            slot.finished(Role::Live, "ino-1", Ok("plugin"), false, None, now),
            Some(Command::Install("plugin")) as Step
        );
        let step: Step = slot.found(Role::Live, file(), Some("digest"), None, now);
        assert_eq!(step, Some(Command::Running { message: "/plugins/p.wasm is running".into() }));
        slot.spec_changed();
        assert!(matches!(
            slot.found::<_, &str>(Role::Live, file(), Some("digest"), None, now),
            Some(Command::Load { .. })
        ));
    }

    #[test]
    fn an_unavailable_reference_reports_and_forgets_the_refusal() {
        let (mut slot, now) = (Slot::default(), Instant::now());
        fail_b(&mut slot, false, now);
        let step: Step = slot.found(Role::Shadow, Found::Unavailable("no ConfigMap".into()), Some("a"), None, now);
        let message = "shadow plugin: no ConfigMap; the previous plugin keeps running".to_owned();
        assert_eq!(step, Some(Command::Unavailable { message }));
        assert_eq!(slot.found(Role::Live, component("b"), Some("a"), None, now), load("b") as Step);
    }

    #[test]
    fn a_running_component_is_loaded_again_only_when_the_pin_does_not_match_it() {
        let (mut slot, now) = (Slot::default(), Instant::now());
        let step: Step = slot.found(Role::Live, component("a"), Some("a"), Some(" A "), now);
        assert!(matches!(step, Some(Command::Running { .. })), "{step:?}");
        // Loaded to be refused by the pin check, with the pin in the message.
        assert_eq!(slot.found(Role::Live, component("a"), Some("a"), Some("b"), now), load("a") as Step);
    }

    #[test]
    fn shadow_and_live_slots_are_independent() {
        let (mut slots, now) = (Roles::<Slot>::default(), Instant::now());
        fail_b(&mut slots[Role::Live], true, now);
        assert_eq!(slots[Role::Shadow].found(Role::Shadow, component("b"), None, None, now), load("b") as Step);
        let step: Step = slots[Role::Shadow].finished(Role::Shadow, "b", refused(false), false, None, now);
        assert_eq!(step, Some(Command::Refused { reason: "PluginRejected", message: "shadow plugin: no".into() }));
        assert!(slots[Role::Live].retry_due(now + Duration::from_secs(5)));
        assert!(!slots[Role::Shadow].retry_due(now + Duration::from_secs(3600)));
        assert_eq!(slots.iter().filter(|slot| slot.retry_due(now + Duration::from_secs(5))).count(), 1);
    }
}
