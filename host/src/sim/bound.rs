//! The lower bound every report prints beside each policy's pod-hours: the fewest pod-hours that would meet a
//! service's wait objective on the run's own arrivals, by Erlang C (the M/M/c queue), minute by minute.
//!
//! Per minute of the run, with λ the minute's exact arrivals / 60 s, μ = 1 / `serviceSeconds` per worker slot and
//! t = `waitSloSeconds`, c slots make a share P(wait > t) = C(c, λ/μ) · e^-(cμ-λ)t of the minute's jobs late. The
//! bound gives every minute with load enough pods (`concurrency` slots each) to be stable (cμ > λ), then adds pods
//! one at a time where they save the most late jobs per pod-second, until at most 5% of all the run's jobs are
//! expected late: the objective is on the p95 wait of the run, as the table reports it. (Late jobs fall as pods are
//! added, ever more slowly, so this greedy choice is the cheapest.) It assumes that pods follow each minute's need
//! exactly and are ready at once (no start-up delay, no `minReplicas` or `maxReplicas`), that jobs arrive at random
//! within the minute (Poisson) and take exponentially distributed times, and that no attempt fails. It is computed
//! from the trace after the run, so the run pays nothing for it.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

use super::config::SimulationSpec;

/// The window whose arrivals give one rate, in seconds.
pub(crate) const WINDOW_S: u64 = 60;
/// The share of jobs that may wait longer than the objective: the objective is on the p95 wait.
pub(crate) const TOLERANCE: f64 = 0.05;
/// The most worker slots counted in one window. A load that needs more is counted as needing this many: a lower
/// bound still, far past the 2,000 slots a service may have, and it keeps the search short.
pub(crate) const MAX_SLOTS: u32 = 100_000;

/// Erlang C: the probability that a job waits at all in an M/M/c queue of `servers` servers offered `erlangs` = λ/μ
/// of load; 1 when `servers` ≤ `erlangs` (the queue grows without end).
#[cfg(test)]
pub(crate) fn erlang_c(servers: u32, erlangs: f64) -> f64 {
    let mut blocking = 1.0;
    for c in 1..=servers {
        blocking = erlang_b_step(blocking, c, erlangs);
    }
    from_erlang_b(blocking, servers, erlangs)
}

/// Erlang B for `c` servers from Erlang B for c - 1: the stable recursion, no factorials.
fn erlang_b_step(previous: f64, c: u32, erlangs: f64) -> f64 {
    erlangs * previous / (f64::from(c) + erlangs * previous)
}

/// Erlang C from Erlang B of the same servers and load.
fn from_erlang_b(blocking: f64, servers: u32, erlangs: f64) -> f64 {
    let c = f64::from(servers);
    if c <= erlangs { 1.0 } else { c * blocking / (c - erlangs * (1.0 - blocking)) }
}

/// The share of jobs arriving at `lambda` per second that wait longer than `objective_s` in an M/M/c queue of
/// `servers` servers of rate `mu`, from Erlang B of those servers: 1 when the queue is unstable.
fn late_share(blocking: f64, servers: u32, lambda: f64, mu: f64, objective_s: f64) -> f64 {
    let erlangs = lambda / mu;
    let waits = from_erlang_b(blocking, servers, erlangs);
    if waits >= 1.0 { 1.0 } else { waits * (-(f64::from(servers) * mu - lambda) * objective_s).exp() }
}

/// One window of the bound: its load and the slots given to it so far.
#[derive(Debug, Clone)]
struct Window {
    count: u64,
    length_s: u64,
    slots: u32,
    /// Erlang B of `slots` servers, carried so that adding a pod costs its slots' steps only.
    blocking: f64,
    /// Jobs expected to wait longer than the objective.
    late: f64,
}

impl Window {
    fn new(count: u64, length_s: u64) -> Self {
        Window { count, length_s, slots: 0, blocking: 1.0, late: count as f64 }
    }

    /// The window with `slots` slots (at most [`MAX_SLOTS`]).
    fn with_slots(&self, slots: u32, sim: &SimulationSpec) -> Self {
        let lambda = self.count as f64 / self.length_s as f64;
        let mu = 1.0 / sim.service_seconds;
        let mut next = self.clone();
        while next.slots < slots.min(MAX_SLOTS) {
            next.slots += 1;
            next.blocking = erlang_b_step(next.blocking, next.slots, lambda * sim.service_seconds);
        }
        next.late = self.count as f64 * late_share(next.blocking, next.slots, lambda, mu, sim.wait_slo_seconds);
        next
    }
}

/// A pod that could be added to a window: the late jobs it saves per pod-second, and the window it makes.
struct Candidate {
    saving: f64,
    index: usize,
    next: Window,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    /// The biggest saving first; the earlier window on a tie, so the bound is the same on every run.
    fn cmp(&self, other: &Self) -> Ordering {
        self.saving.total_cmp(&other.saving).then(other.index.cmp(&self.index))
    }
}

/// One service's lower bound: the pods each window needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bound {
    /// Pods needed in each [`WINDOW_S`] window from the run's start (the last one may be shorter).
    pub(crate) pods: Vec<u32>,
    duration_s: u64,
}

impl Bound {
    /// The bound of a service of physics `sim` on `arrivals` (one count per second from the run's start).
    pub fn new(arrivals: impl Iterator<Item = u64>, sim: &SimulationSpec) -> Self {
        let mut counts = Vec::new();
        let mut duration_s = 0;
        for (second, count) in arrivals.enumerate() {
            if (second as u64).is_multiple_of(WINDOW_S) {
                counts.push(0);
            }
            *counts.last_mut().expect("pushed at the window's first second") += count;
            duration_s = second as u64 + 1;
        }
        let pod = sim.concurrency;
        let erlangs = |count: u64, length_s: u64| count as f64 / length_s as f64 * sim.service_seconds;
        // Windows with the same load start alike: each loaded one from the fewest pods that keep it stable.
        let mut stable: BTreeMap<(u64, u64), Window> = BTreeMap::new();
        let mut windows: Vec<Window> = counts
            .iter()
            .enumerate()
            .map(|(index, &count)| {
                let length_s = (duration_s - index as u64 * WINDOW_S).min(WINDOW_S);
                if count == 0 {
                    return Window::new(0, length_s);
                }
                let window = stable.entry((count, length_s)).or_insert_with(|| {
                    let pods = (erlangs(count, length_s) / f64::from(pod)).floor() as u32 + 1;
                    Window::new(count, length_s).with_slots(pods.saturating_mul(pod), sim)
                });
                window.clone()
            })
            .collect();
        let candidate = |index: usize, window: &Window| {
            (window.slots < MAX_SLOTS).then(|| {
                let next = window.with_slots(window.slots + pod, sim);
                Candidate { saving: (window.late - next.late) / window.length_s as f64, index, next }
            })
        };
        let mut late: f64 = windows.iter().map(|w| w.late).sum();
        let allowed = TOLERANCE * counts.iter().sum::<u64>() as f64;
        let mut heap: BinaryHeap<Candidate> =
            windows.iter().enumerate().filter(|(_, w)| w.count > 0).filter_map(|(i, w)| candidate(i, w)).collect();
        while late > allowed {
            let Some(best) = heap.pop() else { break };
            late -= windows[best.index].late - best.next.late;
            windows[best.index] = best.next;
            heap.extend(candidate(best.index, &windows[best.index]));
        }
        Bound { pods: windows.iter().map(|w| w.slots.div_ceil(pod)).collect(), duration_s }
    }

    /// Pod-seconds the bound needs from `from_s` to `to_s`.
    pub(crate) fn pod_seconds(&self, from_s: u64, to_s: u64) -> u64 {
        let to_s = to_s.min(self.duration_s);
        let mut total = 0;
        let mut t = from_s;
        while t < to_s {
            let window = t / WINDOW_S;
            let end = ((window + 1) * WINDOW_S).min(to_s);
            total += u64::from(self.pods[window as usize]) * (end - t);
            t = end;
        }
        total
    }

    /// Pod-hours over the whole run.
    pub(crate) fn pod_hours(&self) -> f64 {
        self.pod_seconds(0, self.duration_s) as f64 / 3600.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Erlang C by its textbook formula, with factorials: a different computation from the recursion above.
    fn erlang_c_by_sums(c: u32, a: f64) -> f64 {
        let term = |k: u32| (1..=k).fold(1.0, |acc, i| acc * a / f64::from(i));
        let last = term(c) * f64::from(c) / (f64::from(c) - a);
        last / ((0..c).map(term).sum::<f64>() + last)
    }

    #[test]
    fn erlang_c_matches_known_values() {
        // M/M/1: a job waits with probability ρ.
        assert!((erlang_c(1, 0.7) - 0.7).abs() < 1e-12);
        // Two servers offered one erlang: (1/2 · 2) / (1 + 1 + 1) = 1/3 exactly.
        assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-12);
        // Three servers offered two erlangs: terms 1, 2, 2 and (8/6) · 3/(3 - 2) = 4, so 4 / 9 exactly.
        assert!((erlang_c(3, 2.0) - 4.0 / 9.0).abs() < 1e-12);
        // Ten erlangs on eleven servers: 0.6821 to four places, worked out apart from this code.
        assert!((erlang_c(11, 10.0) - 0.6821).abs() < 1e-4);
        for (c, a) in [(3, 2.5), (10, 7.0), (26, 24.0), (50, 45.5), (120, 100.0)] {
            let (fast, textbook) = (erlang_c(c, a), erlang_c_by_sums(c, a));
            assert!((fast - textbook).abs() < 1e-9 * textbook.max(1e-9), "C({c}, {a}) = {fast}, textbook {textbook}");
        }
        assert_eq!(erlang_c(4, 4.0), 1.0, "an overloaded queue always waits");
    }

    fn physics(service_s: f64, concurrency: u32, objective_s: f64) -> SimulationSpec {
        serde_yaml_ng::from_str(&format!(
            "{{serviceSeconds: {service_s}, startupSeconds: 0, concurrency: {concurrency}, waitSloSeconds: {objective_s}}}"
        ))
        .unwrap()
    }

    /// Jobs expected late in a window of `count` jobs over `length_s` with `pods`, by the textbook formula.
    fn late(sim: &SimulationSpec, count: u64, length_s: u64, pods: u32) -> f64 {
        let (lambda, mu) = (count as f64 / length_s as f64, 1.0 / sim.service_seconds);
        let c = pods * sim.concurrency;
        if count == 0 {
            return 0.0;
        }
        if f64::from(c) <= lambda / mu {
            return count as f64;
        }
        count as f64 * erlang_c_by_sums(c, lambda / mu) * (-(f64::from(c) * mu - lambda) * sim.wait_slo_seconds).exp()
    }

    #[test]
    fn the_bound_meets_the_objective_and_no_pod_of_it_can_go() {
        for sim in [physics(0.3, 1, 0.75), physics(8.0, 1, 3.5), physics(4.0, 3, 2.5)] {
            // A day's shape in an hour: a quiet start, a rise, a burst, and one empty minute.
            let per_second = |t: u64| match t / 60 {
                0..10 => 1 + t % 3,
                10..40 => 4 + (t / 60) % 5,
                40..45 => 25,
                45 => 0,
                _ => 3,
            };
            let arrivals: Vec<u64> =
                (0..3600).map(|t| per_second(t) * (1 + (sim.service_seconds < 1.0) as u64)).collect();
            let bound = Bound::new(arrivals.iter().copied(), &sim);
            let counts: Vec<u64> = arrivals.chunks(60).map(|c| c.iter().sum()).collect();
            let total_late = |pods: &[u32]| counts.iter().zip(pods).map(|(&n, &p)| late(&sim, n, 60, p)).sum::<f64>();
            let allowed = TOLERANCE * counts.iter().sum::<u64>() as f64;
            assert!(total_late(&bound.pods) <= allowed, "{:?}", bound.pods);
            assert_eq!(bound.pods[45], 0, "an empty minute needs no pod");
            for window in (0..bound.pods.len()).filter(|&w| bound.pods[w] > 0) {
                let mut fewer = bound.pods.clone();
                fewer[window] -= 1;
                assert!(total_late(&fewer) > allowed, "a pod of minute {window} could go: {:?}", bound.pods);
            }
        }
    }

    #[test]
    fn pods_are_counted_per_minute_from_the_arrivals() {
        let sim = physics(4.0, 2, 2.0);
        // A quiet minute, a minute of 1 job/s, and half a minute of nothing.
        let arrivals = (0..150).map(|t| u64::from((60..120).contains(&t)));
        let bound = Bound::new(arrivals, &sim);
        let pods = (1..).find(|&p| late(&sim, 60, 60, p) <= TOLERANCE * 60.0).unwrap();
        assert_eq!(bound.pods, [0, pods, 0]);
        assert_eq!(bound.pod_seconds(0, 150), u64::from(pods) * 60);
        assert_eq!(bound.pod_seconds(90, 100), u64::from(pods) * 10);
        assert!((bound.pod_hours() - f64::from(pods) / 60.0).abs() < 1e-12);
    }
}
