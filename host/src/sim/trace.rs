//! Load traces: arrivals per second per service, from a CSV file (`time_s,service,arrivals` counts, or
//! `time_s,service,rate` steps of seeded Poisson arrivals) or a built-in shape scaled by each service's `baseRate`
//! with seeded Poisson noise.

use std::collections::{BTreeMap, btree_map};
use std::iter::Peekable;
use std::path::Path;

use super::config::ServiceSetup;
use super::rng::SplitMix64;
use super::{MAX_ARRIVALS_PER_SECOND, MAX_DURATION_S, MAX_RUN_ARRIVALS, SimError};

/// The built-in trace shapes, with what each models.
pub(crate) const BUILTIN_TRACES: &[(&str, &str)] = &[
    ("day", "a diurnal day (quiet night, afternoon peak) with four flash bursts; repeats every 24 h"),
    ("burst", "steady 30% load with a 10-minute flash burst to 250% every 3 hours"),
    ("step", "30% load, stepping to 100% after a third of the run"),
    ("ramp", "load rising linearly from 0 to 150% over the run"),
    ("sawtooth", "load ramping from 10% to 120% and dropping back, every hour"),
    ("steady", "constant 60% load"),
    ("wave", "load swinging slowly between 20% and 100% and back, every 6 hours"),
    ("spikes", "steady 40% load with a flash spike (1-3 minutes at 2.5-4x) at a different minute of every hour"),
    ("batches", "15% load with an upload every 40 minutes: 5 minutes at 150%"),
];

/// Where arrivals come from.
#[derive(Debug, Clone)]
pub enum Trace {
    Builtin(String),
    /// A CSV file: its rows per service name (or `namespace/name`).
    Csv {
        what: String,
        rows: CsvRows,
        length_s: u64,
    },
}

/// The rows of a CSV trace, by the header's third column.
#[derive(Debug, Clone)]
pub enum CsvRows {
    /// `time_s,service,arrivals` (or no header): jobs arriving in each second.
    Arrivals(BTreeMap<String, BTreeMap<u64, u64>>),
    /// `time_s,service,rate`: jobs per second from each row's time until the service's next row (or the run's end),
    /// arriving as seeded Poisson counts.
    Rates(BTreeMap<String, BTreeMap<u64, f64>>),
}

impl CsvRows {
    fn services(&self) -> Vec<&String> {
        match self {
            CsvRows::Arrivals(rows) => rows.keys().collect(),
            CsvRows::Rates(rows) => rows.keys().collect(),
        }
    }
}

/// Looks a service's rows up by `namespace/name`, then by name.
fn rows_of<'a, T>(rows: &'a BTreeMap<String, T>, service: &ServiceSetup) -> Option<&'a T> {
    rows.get(&service.key.to_string()).or_else(|| rows.get(&service.key.name))
}

impl Trace {
    /// How the trace was given: `builtin:NAME`, or the CSV file.
    pub fn name(&self) -> String {
        match self {
            Trace::Builtin(name) => format!("builtin:{name}"),
            Trace::Csv { what, .. } => what.clone(),
        }
    }

    /// `builtin:NAME` or a CSV file path.
    pub fn from_arg(arg: &str) -> Result<Self, SimError> {
        if let Some(name) = arg.strip_prefix("builtin:") {
            if BUILTIN_TRACES.iter().any(|(n, _)| *n == name) {
                return Ok(Trace::Builtin(name.into()));
            }
            let known: Vec<_> = BUILTIN_TRACES.iter().map(|(n, _)| format!("builtin:{n}")).collect();
            return Err(SimError::Invalid(format!("unknown trace `{arg}`; built-in traces are {}", known.join(", "))));
        }
        let path = Path::new(arg);
        let text = std::fs::read_to_string(path).map_err(|e| SimError::Io { path: path.into(), source: e })?;
        Self::parse_csv(arg, &text)
    }

    /// Parses `time_s,service,arrivals` rows (a header line is optional) or, under a `time_s,service,rate` header,
    /// rate steps; `#` starts a comment line. Times are seconds from the trace's start, below [`MAX_DURATION_S`];
    /// one service's arrivals in one second (its rows for that second summed), and a rate, are at most
    /// [`MAX_ARRIVALS_PER_SECOND`].
    pub fn parse_csv(what: &str, text: &str) -> Result<Self, SimError> {
        let mut arrivals: BTreeMap<String, BTreeMap<u64, u64>> = BTreeMap::new();
        let mut rates: BTreeMap<String, BTreeMap<u64, f64>> = BTreeMap::new();
        let mut by_rate = false;
        let mut seen_row = false;
        let mut length_s = 0;
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let example = if by_rate {
                "`time_s,service,rate` (e.g. `30,marian-mt,2.5`)"
            } else {
                "`time_s,service,arrivals` (e.g. `30,marian-mt,12`)"
            };
            let bad = |why: &str| SimError::Invalid(format!("{what}: line {}: {why}; rows are {example}", index + 1));
            if !seen_row && fields.first() == Some(&"time_s") {
                by_rate = match fields[..] {
                    [_, "service", "arrivals"] => false,
                    [_, "service", "rate"] => true,
                    _ => {
                        return Err(SimError::Invalid(format!(
                            "{what}: line {}: the header `{line}` is neither `time_s,service,arrivals` (jobs arriving \
                             in each second) nor `time_s,service,rate` (jobs per second until the service's next row)",
                            index + 1
                        )));
                    }
                };
                seen_row = true;
                continue;
            }
            seen_row = true;
            let [time, service, value] = fields[..] else { return Err(bad("expected three fields")) };
            let time: u64 = time.parse().map_err(|_| bad(&format!("time_s `{time}` is not whole seconds")))?;
            if service.is_empty() {
                return Err(bad("the service is empty"));
            }
            if time >= MAX_DURATION_S {
                return Err(bad(&format!(
                    "time_s {time} is past the 31 days ({MAX_DURATION_S} s) a run may last; times are seconds from \
                     the trace's start, not Unix timestamps (subtract the first row's time)"
                )));
            }
            if by_rate {
                let rate: f64 = value.parse().map_err(|_| {
                    bad(&format!(
                        "rate `{value}` is not a number of jobs per second from 0 to {MAX_ARRIVALS_PER_SECOND}"
                    ))
                })?;
                // Written so that NaN fails it.
                if !(0.0..=MAX_ARRIVALS_PER_SECOND as f64).contains(&rate) {
                    return Err(bad(&format!(
                        "rate {rate} jobs/s for `{service}` at time_s {time} is out of range: use 0 to \
                         {MAX_ARRIVALS_PER_SECOND} jobs per second per service (split a larger load over services)"
                    )));
                }
                if rates.entry(service.into()).or_default().insert(time, rate).is_some() {
                    return Err(bad(&format!(
                        "a second rate for `{service}` at time_s {time}: give one rate per service and time"
                    )));
                }
                // A rate row starts a step: the trace lasts until its last step starts (or --duration).
                length_s = length_s.max(time);
            } else {
                let count: u64 = value.parse().map_err(|_| {
                    bad(&format!("arrivals `{value}` is not a whole number from 0 to {MAX_ARRIVALS_PER_SECOND}"))
                })?;
                let second = arrivals.entry(service.into()).or_default().entry(time).or_default();
                *second = second.saturating_add(count);
                if *second > MAX_ARRIVALS_PER_SECOND {
                    return Err(bad(&format!(
                        "{second} arrivals for `{service}` in second {time}; at most {MAX_ARRIVALS_PER_SECOND} per \
                         second per service"
                    )));
                }
                length_s = length_s.max(time + 1);
            }
        }
        let rows = if by_rate { CsvRows::Rates(rates) } else { CsvRows::Arrivals(arrivals) };
        Ok(Trace::Csv { what: what.into(), rows, length_s })
    }

    /// The trace's natural length: a day for built-ins; for a CSV trace, to the end of its last second of arrivals,
    /// or to the time of its last rate row (which holds on only as far as --duration runs).
    pub fn length_s(&self) -> u64 {
        match self {
            Trace::Builtin(_) => 86_400,
            Trace::Csv { length_s, .. } => *length_s,
        }
    }

    /// Checks that every service the trace names is simulated.
    pub fn check_services(&self, services: &[ServiceSetup]) -> Result<(), SimError> {
        if let Trace::Csv { what, rows, .. } = self {
            for name in rows.services() {
                if !services.iter().any(|s| &s.key.name == name || &s.key.to_string() == name) {
                    return Err(SimError::Invalid(format!(
                        "{what}: the trace names service `{name}`, which no policy document describes"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Refuses a run of `duration_s` that would bring the `services` more than [`MAX_RUN_ARRIVALS`] jobs: the
    /// CSV arrivals within the run, or the expected count of rate rows or a built-in shape (their Poisson noise is
    /// a few hundredths of that).
    pub fn check_load(&self, services: &[ServiceSetup], duration_s: u64) -> Result<(), SimError> {
        let simulated = |name: &String| services.iter().any(|s| &s.key.name == name || &s.key.to_string() == name);
        let (what, jobs, over) = match self {
            Trace::Csv { what, rows: CsvRows::Arrivals(arrivals), .. } => {
                let jobs = arrivals
                    .iter()
                    .filter(|(name, _)| simulated(name))
                    .flat_map(|(_, seconds)| seconds.range(..duration_s).map(|(_, count)| *count))
                    .fold(0u64, u64::saturating_add);
                (what.clone(), jobs.to_string(), jobs > MAX_RUN_ARRIVALS)
            }
            Trace::Csv { what, rows: CsvRows::Rates(rates), .. } => {
                let jobs: f64 = rates
                    .iter()
                    .filter(|(name, _)| simulated(name))
                    .map(|(_, steps)| {
                        let starts = steps.range(..duration_s);
                        let ends = steps.keys().skip(1).map(|t| (*t).min(duration_s)).chain([duration_s]);
                        starts.zip(ends).map(|((start, rate), end)| rate * (end - start) as f64).sum::<f64>()
                    })
                    .sum();
                (what.clone(), format!("about {jobs:.0}"), jobs > MAX_RUN_ARRIVALS as f64)
            }
            Trace::Builtin(name) => {
                let rate: f64 = services.iter().map(|s| s.sim.base_rate).sum();
                let jobs = rate * (0..duration_s).map(|t| level(name, t, duration_s)).sum::<f64>();
                (format!("builtin:{name}"), format!("about {jobs:.0}"), jobs > MAX_RUN_ARRIVALS as f64)
            }
        };
        if !over {
            return Ok(());
        }
        Err(SimError::Invalid(format!(
            "{what} brings {jobs} jobs over {duration_s} s; a run may bring at most {MAX_RUN_ARRIVALS} (the simulator \
             keeps every job): shorten --duration or lower the load"
        )))
    }

    /// One service's arrivals in each second `0..duration_s`, made as the run advances (a month of seconds for
    /// every service would not fit in memory up front). The same seed gives the same arrivals whatever the
    /// policy, so policies are compared on identical load.
    pub fn arrivals<'a>(&'a self, service: &ServiceSetup, duration_s: u64, seed: u64) -> Arrivals<'a> {
        let rng = || SplitMix64::stream(seed, &service.key.name, "arrivals");
        let source = match self {
            Trace::Csv { rows: CsvRows::Arrivals(arrivals), .. } => Source::Counts(rows_of(arrivals, service)),
            Trace::Csv { rows: CsvRows::Rates(rates), .. } => Source::Rates {
                steps: rows_of(rates, service).map(|steps| steps.iter().peekable()),
                rate: 0.0,
                rng: rng(),
            },
            Trace::Builtin(name) => Source::Builtin { shape: name, rng: rng(), base_rate: service.sim.base_rate },
        };
        Arrivals { source, second: 0, duration_s }
    }
}

/// One service's arrivals per second ([`Trace::arrivals`]).
pub struct Arrivals<'a> {
    source: Source<'a>,
    second: u64,
    duration_s: u64,
}

enum Source<'a> {
    Counts(Option<&'a BTreeMap<u64, u64>>),
    /// The rate in force and the steps still to come.
    Rates {
        steps: Option<Peekable<btree_map::Iter<'a, u64, f64>>>,
        rate: f64,
        rng: SplitMix64,
    },
    Builtin {
        shape: &'a str,
        rng: SplitMix64,
        base_rate: f64,
    },
}

impl Iterator for Arrivals<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let t = self.second;
        if t >= self.duration_s {
            return None;
        }
        self.second += 1;
        Some(match &mut self.source {
            Source::Counts(rows) => rows.and_then(|rows| rows.get(&t)).copied().unwrap_or(0),
            Source::Rates { steps, rate, rng } => {
                if let Some(steps) = steps {
                    while let Some((_, next)) = steps.next_if(|(start, _)| **start <= t) {
                        *rate = *next;
                    }
                }
                rng.poisson(*rate)
            }
            Source::Builtin { shape, rng, base_rate } => rng.poisson(*base_rate * level(shape, t, self.duration_s)),
        })
    }
}

/// The built-in shapes: load level (1.0 = the service's `baseRate`) at second `t` of a run of `duration_s`.
pub(crate) fn level(name: &str, t: u64, duration_s: u64) -> f64 {
    let hours = t as f64 / 3600.0;
    let frac = t as f64 / duration_s.max(1) as f64;
    match name {
        "day" => {
            // Trough at 04:00, peak at 16:00; 10% of the peak at night.
            let diurnal = 0.5 - 0.5 * (std::f64::consts::TAU * (hours - 4.0) / 24.0).cos();
            let base = 0.1 + 0.9 * diurnal;
            // Flash bursts: (start hour, minutes, multiplier), at the same hours every day of a longer run.
            let bursts = [(9.5, 10.0, 2.0), (12.75, 5.0, 2.5), (17.25, 15.0, 1.6), (21.0, 8.0, 3.0)];
            let hour_of_day = (t % 86_400) as f64 / 3600.0;
            let factor = bursts
                .iter()
                .find(|(start, minutes, _)| hour_of_day >= *start && hour_of_day < start + minutes / 60.0)
                .map_or(1.0, |(_, _, m)| *m);
            base * factor
        }
        "burst" => {
            if hours % 3.0 >= 1.5 && hours % 3.0 < 1.5 + 10.0 / 60.0 {
                2.5
            } else {
                0.3
            }
        }
        "step" => {
            if frac < 1.0 / 3.0 {
                0.3
            } else {
                1.0
            }
        }
        "ramp" => 1.5 * frac,
        "sawtooth" => 0.1 + 1.1 * (hours % 1.0),
        "wave" => 0.6 - 0.4 * (std::f64::consts::TAU * hours / 6.0).cos(),
        "spikes" => {
            // Each hour's spike from a hash of the hour: no two hours alike, every run alike.
            let hour = t / 3600;
            let draw = SplitMix64::new(hour ^ 0x005e_ed5b_1ce5).next_u64();
            let start_s = 300 + draw % 3000;
            let length_s = 60 + (draw >> 16) % 121;
            let multiplier = 2.5 + ((draw >> 32) % 16) as f64 / 10.0;
            let within = (start_s..start_s + length_s).contains(&(t % 3600));
            0.4 * if within { multiplier } else { 1.0 }
        }
        "batches" => {
            if t % 2400 < 300 {
                1.5
            } else {
                0.15
            }
        }
        _ => 0.6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_sum_and_errors_name_the_line() {
        let trace = Trace::parse_csv("t.csv", "time_s,service,arrivals\n0,a,2\n0,a,3\n5,b,1\n").unwrap();
        assert_eq!(trace.length_s(), 6);
        let err = Trace::parse_csv("t.csv", "0,a,2\n1,a,x\n").unwrap_err().to_string();
        assert!(err.contains("t.csv: line 2") && err.contains("arrivals `x`"), "{err}");
    }

    fn service(name: &str) -> ServiceSetup {
        let text = format!(
            "apiVersion: ballast.dev/v1alpha1\nkind: ScalingPolicy\nmetadata: {{name: {name}, namespace: ns}}\nspec:\n  \
             target: {{name: {name}}}\n  maxReplicas: 2\n  plugin: {{builtin: hpa}}\nsimulation: {{serviceSeconds: 1, \
             startupSeconds: 1}}\n"
        );
        crate::sim::PolicySet::parse("t", "t.yaml", &text, None).unwrap().services.remove(0)
    }

    #[test]
    fn rate_rows_hold_until_the_services_next_row_as_seeded_poisson_arrivals() {
        let text = "# steps\ntime_s,service,rate\n0,a,2\n600,a,0\n900,a,10\n300,ns/b,0.5\n";
        let trace = Trace::parse_csv("t.csv", text).unwrap();
        assert_eq!(trace.length_s(), 900, "a rate trace lasts until its last row starts");
        let arrivals = |name: &str, seed| trace.arrivals(&service(name), 1500, seed).collect::<Vec<u64>>();
        let a = arrivals("a", 1);
        assert_eq!(a.len(), 1500, "the last rate holds to the end of the run");
        let sum = |range: std::ops::Range<usize>| a[range].iter().sum::<u64>() as f64;
        // Each sum is a Poisson count: within five standard deviations of its mean.
        let near = |count: f64, mean: f64| (count - mean).abs() < 5.0 * mean.sqrt();
        assert!(near(sum(0..600), 1200.0), "{}", sum(0..600));
        assert_eq!(sum(600..900), 0.0);
        assert!(near(sum(900..1500), 6000.0), "{}", sum(900..1500));
        assert!(a[..600].iter().collect::<std::collections::BTreeSet<_>>().len() > 3, "counts vary second to second");
        assert_eq!(a, arrivals("a", 1), "the same seed gives the same arrivals");
        assert_ne!(a, arrivals("a", 2));
        let b = arrivals("b", 1);
        assert!(b[..300].iter().all(|&n| n == 0), "nothing before a service's first row");
        assert!(near(b[300..].iter().sum::<u64>() as f64, 600.0), "`ns/b` names the service by namespace/name");
        trace.check_load(&[service("a")], 1500).unwrap();
    }

    #[test]
    fn rates_are_bounded_like_arrivals_with_the_line_and_the_fix() {
        let parse = |rows: &str| Trace::parse_csv("t.csv", &format!("time_s,service,rate\n{rows}"));
        let at_bound = parse(&format!("0,a,{MAX_ARRIVALS_PER_SECOND}\n")).unwrap();
        at_bound.check_load(&[service("a")], 60).unwrap();
        let err = parse(&format!("0,a,1\n5,a,{}.001\n", MAX_ARRIVALS_PER_SECOND)).unwrap_err().to_string();
        assert!(
            err.contains("t.csv: line 3: rate 10000.001 jobs/s for `a` at time_s 5 is out of range")
                && err.contains("use 0 to 10000 jobs per second per service"),
            "{err}"
        );
        for (value, why) in [("NaN", "out of range"), ("-1", "out of range"), ("lots", "not a number of jobs")] {
            let err = parse(&format!("0,a,{value}\n")).unwrap_err().to_string();
            assert!(err.contains("line 2") && err.contains(why) && err.contains("`time_s,service,rate`"), "{err}");
        }
        let err = parse("0,a,1\n0,a,2\n").unwrap_err().to_string();
        assert!(err.contains("line 3: a second rate for `a` at time_s 0"), "{err}");
        let err = Trace::parse_csv("t.csv", "time_s,service,jobs\n0,a,1\n").unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("`time_s,service,rate`"), "{err}");
        // A month at 12 jobs/s is over the run's bound, as the same arrivals row by row would be.
        let err = parse("0,a,12\n").unwrap().check_load(&[service("a")], MAX_DURATION_S).unwrap_err().to_string();
        assert!(err.contains("brings about 32140800 jobs") && err.contains("shorten --duration"), "{err}");
    }

    #[test]
    fn day_has_a_quiet_night_and_bursts() {
        assert!(level("day", 4 * 3600, 86_400) < 0.11);
        assert!(level("day", 16 * 3600, 86_400) > 0.99);
        assert!(level("day", 21 * 3600 + 60, 86_400) > 2.0 * level("day", 20 * 3600 + 3000, 86_400));
    }

    #[test]
    fn day_like_shapes_repeat_in_a_multi_day_run() {
        let week = 7 * 86_400;
        for (shape, period_s) in [("day", 86_400), ("wave", 6 * 3600), ("batches", 2400)] {
            for t in (0..86_400).step_by(30) {
                let (first, later) = (level(shape, t, week), level(shape, t + 3 * period_s, week));
                assert!((first - later).abs() < 1e-9, "{shape} at {t} s: {first} then {later}");
            }
        }
    }

    #[test]
    fn spikes_are_short_and_at_a_different_minute_every_hour() {
        let mut starts = Vec::new();
        for hour in 0..24 {
            let spiking: Vec<u64> =
                (hour * 3600..(hour + 1) * 3600).filter(|&t| level("spikes", t, 86_400) > 0.4).collect();
            assert!((60..=180).contains(&spiking.len()), "hour {hour}: {} s of spike", spiking.len());
            assert_eq!(spiking.last().unwrap() - spiking[0] + 1, spiking.len() as u64, "one spike in hour {hour}");
            starts.push(spiking[0] % 3600);
        }
        starts.sort_unstable();
        starts.dedup();
        assert!(starts.len() > 20, "{starts:?}");
    }
}
