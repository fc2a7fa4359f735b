//! Traces from history (`ballast trace`): a queue's arrivals read back from Prometheus, so that a policy can be
//! replayed on last week's load.
//!
//! Arrivals come from `ballast_queue_jobs_added_total`, BullMQ's job id counter as the host and `ballast exporter`
//! export it: the counter's increase between two samples is exactly the jobs added between them, so the trace
//! holds every job; only when each arrived within a step is unknown, so the trace's `arrivals` rows spread a step's
//! jobs evenly over its seconds (whole jobs: the trace's total is the counter's increase, exactly). Where the
//! exporters also give busy workers (`redis_queue_active`), the mean service time follows from Little's law: busy workers = throughput x service
//! time, throughput being what was added less what piled up (`redis_queue_waiting`, `redis_queue_active`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::{MAX_DURATION_S, SimError};
use crate::sources::prometheus::{PrometheusSource, RangeSeries};

/// Queues one trace may read (each is a series in every answer, so they bound the answer's size).
pub(crate) const MAX_QUEUES: usize = 100;
/// Points per series per `query_range` call: Prometheus refuses more than 11,000.
const MAX_POINTS_PER_CALL: u64 = 11_000;
/// Points of all series per call: about 40 bytes each in Prometheus's JSON, so an answer stays far below the
/// source's 16 MiB cap.
const MAX_POINTS_PER_ANSWER: u64 = 200_000;

/// One queue to read, and the service (ScalingPolicy name) its arrivals go to in the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQueue {
    pub(crate) queue: String,
    pub(crate) service: String,
}

impl HistoryQueue {
    /// `QUEUE=SERVICE`, or `QUEUE` for a service named as its queue.
    pub fn parse(arg: &str) -> Self {
        match arg.split_once('=') {
            Some((queue, service)) => HistoryQueue { queue: queue.into(), service: service.into() },
            None => HistoryQueue { queue: arg.into(), service: arg.into() },
        }
    }
}

/// What `ballast trace` asks for: Unix seconds, `from` before `to`.
#[derive(Debug, Clone)]
pub struct HistoryRequest {
    pub queues: Vec<HistoryQueue>,
    pub from: i64,
    pub to: i64,
    pub step: Duration,
}

/// A trace CSV, the Simulation document to run it with, and what the history did not tell.
#[derive(Debug, Clone)]
pub struct History {
    pub csv: String,
    pub simulation: String,
    pub notes: Vec<String>,
    /// Jobs in the trace per queue: the counter's increase over the span.
    pub jobs: BTreeMap<String, f64>,
}

impl HistoryRequest {
    fn check(&self) -> Result<(), SimError> {
        let invalid = |message: String| Err(SimError::Invalid(message));
        if self.queues.is_empty() || self.queues.len() > MAX_QUEUES {
            return invalid(format!(
                "give 1 to {MAX_QUEUES} queues (--queue QUEUE[=SERVICE]), not {}",
                self.queues.len()
            ));
        }
        let span = self.to - self.from;
        if span <= 0 || span as u64 > MAX_DURATION_S {
            return invalid(format!(
                "--from must be before --to, at most {MAX_DURATION_S} s (31 days) apart; they are {span} s apart"
            ));
        }
        let step = self.step.as_secs();
        if self.step.subsec_nanos() != 0 || !(1..=3600).contains(&step) {
            return invalid(format!("--step must be whole seconds from 1s to 1h, not {:?}", self.step));
        }
        // One queue per service: a trace with two would hide which queue a service's jobs came from.
        let mut services = std::collections::BTreeSet::new();
        for queue in &self.queues {
            if !services.insert(&queue.service) {
                return invalid(format!("service {} is given two queues; give each service one", queue.service));
            }
        }
        Ok(())
    }

    /// `metric` by queue over the span, from as many calls as Prometheus's point limit needs.
    async fn series(
        &self,
        source: &PrometheusSource,
        metric: &str,
    ) -> Result<BTreeMap<String, Vec<(f64, f64)>>, SimError> {
        let names: Vec<String> = self.queues.iter().map(|q| regex_escape(&q.queue)).collect();
        let query = format!("max by (queue_name) ({metric}{{queue_name=~\"{}\"}})", promql_escape(&names.join("|")));
        let step = self.step.as_secs();
        let points_per_call = MAX_POINTS_PER_CALL.min(MAX_POINTS_PER_ANSWER / self.queues.len() as u64).max(1);
        let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        let mut start = self.from;
        while start <= self.to {
            let end = (start + (points_per_call as i64 - 1) * step as i64).min(self.to);
            for RangeSeries { labels, points } in
                source.query_range(&query, start as f64, end as f64, self.step).await?
            {
                if let Some(queue) = labels.get("queue_name") {
                    out.entry(queue.clone()).or_default().extend(points.into_iter().filter(|(_, v)| v.is_finite()));
                }
            }
            start = end + step as i64;
        }
        Ok(out)
    }
}

/// Reads the history of the request's queues and turns it into a trace and a Simulation document.
pub async fn read(source: &PrometheusSource, request: &HistoryRequest) -> Result<History, SimError> {
    request.check()?;
    let added = request.series(source, "ballast_queue_jobs_added_total").await?;
    let active = request.series(source, "redis_queue_active").await?;
    let waiting = request.series(source, "redis_queue_waiting").await?;
    let objectives = request.series(source, "ballast_wait_objective_seconds").await?;

    let mut rows: Vec<(i64, &str, u64)> = Vec::new();
    let mut notes = Vec::new();
    let mut jobs = BTreeMap::new();
    let mut simulation = format!(
        "# Made by `ballast trace` for {} s of history from {} (Unix seconds), step {} s. Values marked `guess` are\n\
         # not in the history: set them to the service's own before trusting a simulation.\n\
         apiVersion: ballast.dev/v1alpha1\nkind: Simulation\nservices:\n",
        request.to - request.from,
        request.from,
        request.step.as_secs()
    );
    for HistoryQueue { queue, service } in &request.queues {
        let Some(counter) = added.get(queue).filter(|points| points.len() >= 2) else {
            return Err(SimError::Invalid(format!(
                "Prometheus has no history of ballast_queue_jobs_added_total{{queue_name=\"{queue}\"}} from {} to {}: \
                 check the queue name, that Prometheus scrapes the host or `ballast exporter` reading that queue, \
                 and that the span is within its retention",
                request.from, request.to
            )));
        };
        if counter[0].0 > request.from as f64 + request.step.as_secs_f64() {
            notes.push(format!(
                "{queue}: no samples before {} s into the span; the trace sends nothing before that",
                counter[0].0 - request.from as f64
            ));
        }
        let mut total = 0.0;
        for pair in counter.windows(2) {
            let ((t0, v0), (t1, v1)) = (pair[0], pair[1]);
            // A counter that went down was reset (the queue obliterated and used again): it counts from 0.
            let increase = if v1 >= v0 { v1 - v0 } else { v1 };
            total += increase;
            let start = t0 as i64 - request.from;
            for (second, arrivals) in spread(increase as u64, (t1 - t0).max(1.0) as u64).into_iter().enumerate() {
                if arrivals > 0 {
                    rows.push((start + second as i64, service, arrivals));
                }
            }
        }
        jobs.insert(queue.clone(), total);

        let span = counter[counter.len() - 1].0 - counter[0].0;
        let service_seconds = service_seconds(total, span, active.get(queue), waiting.get(queue));
        let objective = objectives.get(queue).and_then(|points| points.last()).map(|(_, v)| *v);
        let _ = writeln!(simulation, "  {service}:\n    queue: {queue}");
        match service_seconds {
            Some(seconds) => {
                let _ = writeln!(simulation, "    serviceSeconds: {seconds:.3}  # busy workers / throughput");
            }
            None => {
                notes
                    .push(format!("{queue}: no redis_queue_active history or no jobs done; serviceSeconds is a guess"));
                let _ = writeln!(simulation, "    serviceSeconds: 1  # guess: no busy-worker history");
            }
        }
        let _ = writeln!(simulation, "    startupSeconds: 60  # guess: seconds from a scale-up to a pod taking jobs");
        match objective {
            Some(seconds) => {
                let _ = writeln!(simulation, "    waitSloSeconds: {seconds}  # ballast_wait_objective_seconds");
            }
            None => {
                let _ =
                    writeln!(simulation, "    waitSloSeconds: 60  # guess: the policy states no waitObjectiveSeconds");
            }
        }
    }
    rows.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let mut csv = String::from("time_s,service,arrivals\n");
    for (time, service, arrivals) in rows {
        let _ = writeln!(csv, "{},{service},{arrivals}", time.max(0));
    }
    Ok(History { csv, simulation, notes, jobs })
}

/// `jobs` spread over `seconds` as evenly as whole jobs allow: second `k` gets the jobs whose even share ends in
/// it.
fn spread(jobs: u64, seconds: u64) -> Vec<u64> {
    let share = |k: u64| (u128::from(k) * u128::from(jobs) / u128::from(seconds)) as u64;
    (0..seconds).map(|k| share(k + 1) - share(k)).collect()
}

/// Mean service time by Little's law, when busy workers were seen and jobs were done: the mean of `active` over
/// the jobs done per second (added less the growth of waiting and active jobs).
fn service_seconds(
    added: f64,
    span: f64,
    active: Option<&Vec<(f64, f64)>>,
    waiting: Option<&Vec<(f64, f64)>>,
) -> Option<f64> {
    let active = active.filter(|points| !points.is_empty())?;
    let growth = |points: Option<&Vec<(f64, f64)>>| match points.map(Vec::as_slice) {
        Some([first, .., last]) => last.1 - first.1,
        _ => 0.0,
    };
    let done = added - growth(waiting) - growth(Some(active));
    let busy = active.iter().map(|(_, v)| v).sum::<f64>() / active.len() as f64;
    (done > 0.0 && span > 0.0 && busy > 0.0).then(|| busy / (done / span))
}

/// A queue name as a literal inside a PromQL regular expression (RE2).
fn regex_escape(text: &str) -> String {
    text.chars().fold(String::new(), |mut out, c| {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

/// Text inside a PromQL double-quoted string.
fn promql_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_literals_in_the_query() {
        assert_eq!(promql_escape(&regex_escape("a.b|c\"d")), "a\\\\.b\\\\|c\\\"d");
    }

    #[test]
    fn a_steps_jobs_are_spread_as_whole_jobs_that_add_up() {
        assert_eq!(spread(7, 3), vec![2, 2, 3]);
        assert_eq!(spread(2, 5), vec![0, 0, 1, 0, 1]);
        assert_eq!(spread(0, 4), vec![0, 0, 0, 0]);
        assert_eq!(spread(40, 1), vec![40]);
        assert_eq!(spread(1_000_003, 15).iter().sum::<u64>(), 1_000_003);
    }

    #[test]
    fn littles_law_gives_the_service_time() {
        // 2 busy workers on average, 100 jobs added over 100 s, 10 more waiting at the end: 0.9 done a second.
        let active = vec![(0.0, 2.0), (50.0, 2.0), (100.0, 2.0)];
        let waiting = vec![(0.0, 0.0), (100.0, 10.0)];
        let seconds = service_seconds(100.0, 100.0, Some(&active), Some(&waiting)).unwrap();
        assert!((seconds - 2.0 / 0.9).abs() < 1e-9, "{seconds}");
        assert_eq!(service_seconds(100.0, 100.0, None, Some(&waiting)), None);
        assert_eq!(service_seconds(0.0, 100.0, Some(&active), None), None, "no job done");
    }

    #[test]
    fn requests_past_their_bounds_are_refused() {
        let request = |from: i64, to: i64, step: Duration, queues: usize| HistoryRequest {
            queues: (0..queues).map(|i| HistoryQueue { queue: format!("q{i}"), service: format!("s{i}") }).collect(),
            from,
            to,
            step,
        };
        let month = MAX_DURATION_S as i64;
        assert!(request(0, month, Duration::from_secs(1), 1).check().is_ok());
        assert!(request(0, month + 1, Duration::from_secs(1), 1).check().unwrap_err().to_string().contains("31 days"));
        assert!(request(5, 5, Duration::from_secs(1), 1).check().is_err());
        assert!(request(0, 60, Duration::from_secs(3601), 1).check().unwrap_err().to_string().contains("--step"));
        assert!(request(0, 60, Duration::from_millis(1500), 1).check().is_err());
        assert!(request(0, 60, Duration::from_secs(1), MAX_QUEUES).check().is_ok());
        assert!(request(0, 60, Duration::from_secs(1), MAX_QUEUES + 1).check().is_err());
        assert!(request(0, 60, Duration::from_secs(1), 0).check().is_err());
    }
}
