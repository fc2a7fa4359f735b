//! Load traces: arrivals per second per service, from a CSV file (`time_s,service,arrivals`) or a built-in shape
//! scaled by each service's `baseRate` with seeded Poisson noise.

use std::collections::BTreeMap;
use std::path::Path;

use super::config::ServiceSetup;
use super::rng::SplitMix64;
use super::{MAX_ARRIVALS_PER_SECOND, MAX_DURATION_S, MAX_RUN_ARRIVALS, SimError};

/// The built-in trace shapes, with what each models.
pub const BUILTIN_TRACES: &[(&str, &str)] = &[
    ("day", "a diurnal day (quiet night, afternoon peak) with four flash bursts"),
    ("burst", "steady 30% load with a 10-minute flash burst to 250% every 3 hours"),
    ("step", "30% load, stepping to 100% after a third of the run"),
    ("ramp", "load rising linearly from 0 to 150% over the run"),
    ("sawtooth", "load ramping from 10% to 120% and dropping back, every hour"),
    ("steady", "constant 60% load"),
];

/// Where arrivals come from.
#[derive(Debug, Clone)]
pub enum Trace {
    Builtin(String),
    /// Arrivals per service name (or `namespace/name`) per second.
    Csv {
        what: String,
        arrivals: BTreeMap<String, BTreeMap<u64, u64>>,
        length_s: u64,
    },
}

impl Trace {
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

    /// Parses `time_s,service,arrivals` rows (a header line is optional; `#` starts a comment line). Times are
    /// seconds from the trace's start, below [`MAX_DURATION_S`]; one service's arrivals in one second (its rows for
    /// that second summed) are at most [`MAX_ARRIVALS_PER_SECOND`].
    pub fn parse_csv(what: &str, text: &str) -> Result<Self, SimError> {
        let mut arrivals: BTreeMap<String, BTreeMap<u64, u64>> = BTreeMap::new();
        let mut length_s = 0;
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || (index == 0 && line.starts_with("time_s")) {
                continue;
            }
            let bad = |why: &str| {
                SimError::Invalid(format!(
                    "{what}: line {}: {why}; rows are `time_s,service,arrivals` (e.g. `30,marian-mt,12`)",
                    index + 1
                ))
            };
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [time, service, count] = fields[..] else { return Err(bad("expected three fields")) };
            let time: u64 = time.parse().map_err(|_| bad(&format!("time_s `{time}` is not whole seconds")))?;
            let count: u64 = count.parse().map_err(|_| {
                bad(&format!("arrivals `{count}` is not a whole number from 0 to {MAX_ARRIVALS_PER_SECOND}"))
            })?;
            if service.is_empty() {
                return Err(bad("the service is empty"));
            }
            if time >= MAX_DURATION_S {
                return Err(bad(&format!(
                    "time_s {time} is past the 31 days ({MAX_DURATION_S} s) a run may last; times are seconds from \
                     the trace's start, not Unix timestamps (subtract the first row's time)"
                )));
            }
            let second = arrivals.entry(service.into()).or_default().entry(time).or_default();
            *second = second.saturating_add(count);
            if *second > MAX_ARRIVALS_PER_SECOND {
                return Err(bad(&format!(
                    "{second} arrivals for `{service}` in second {time}; at most {MAX_ARRIVALS_PER_SECOND} per second \
                     per service"
                )));
            }
            length_s = length_s.max(time + 1);
        }
        Ok(Trace::Csv { what: what.into(), arrivals, length_s })
    }

    /// The trace's natural length: a day for built-ins, the last row for CSV.
    pub fn length_s(&self) -> u64 {
        match self {
            Trace::Builtin(_) => 86_400,
            Trace::Csv { length_s, .. } => *length_s,
        }
    }

    /// Checks that every service the trace names is simulated.
    pub fn check_services(&self, services: &[ServiceSetup]) -> Result<(), SimError> {
        if let Trace::Csv { what, arrivals, .. } = self {
            for name in arrivals.keys() {
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
    /// CSV rows within the run, or the built-in shape's expected count (its Poisson noise is a few hundredths of
    /// that).
    pub fn check_load(&self, services: &[ServiceSetup], duration_s: u64) -> Result<(), SimError> {
        let (what, jobs, over) = match self {
            Trace::Csv { what, arrivals, .. } => {
                let simulated =
                    |name: &String| services.iter().any(|s| &s.key.name == name || &s.key.to_string() == name);
                let jobs = arrivals
                    .iter()
                    .filter(|(name, _)| simulated(name))
                    .flat_map(|(_, seconds)| seconds.range(..duration_s).map(|(_, count)| *count))
                    .fold(0u64, u64::saturating_add);
                (what.clone(), jobs.to_string(), jobs > MAX_RUN_ARRIVALS)
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
        let source = match self {
            Trace::Csv { arrivals, .. } => {
                Source::Csv(arrivals.get(&service.key.to_string()).or_else(|| arrivals.get(&service.key.name)))
            }
            Trace::Builtin(name) => Source::Builtin {
                shape: name,
                rng: SplitMix64::stream(seed, &service.key.name, "arrivals"),
                base_rate: service.sim.base_rate,
            },
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
    Csv(Option<&'a BTreeMap<u64, u64>>),
    Builtin { shape: &'a str, rng: SplitMix64, base_rate: f64 },
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
            Source::Csv(rows) => rows.and_then(|rows| rows.get(&t)).copied().unwrap_or(0),
            Source::Builtin { shape, rng, base_rate } => rng.poisson(*base_rate * level(shape, t, self.duration_s)),
        })
    }
}

/// The built-in shapes: load level (1.0 = the service's `baseRate`) at second `t` of a run of `duration_s`.
pub fn level(name: &str, t: u64, duration_s: u64) -> f64 {
    let hours = t as f64 / 3600.0;
    let frac = t as f64 / duration_s.max(1) as f64;
    match name {
        "day" => {
            // Trough at 04:00, peak at 16:00; 10% of the peak at night.
            let diurnal = 0.5 - 0.5 * (std::f64::consts::TAU * (hours - 4.0) / 24.0).cos();
            let base = 0.1 + 0.9 * diurnal;
            // Flash bursts: (start hour, minutes, multiplier).
            let bursts = [(9.5, 10.0, 2.0), (12.75, 5.0, 2.5), (17.25, 15.0, 1.6), (21.0, 8.0, 3.0)];
            let factor = bursts
                .iter()
                .find(|(start, minutes, _)| hours >= *start && hours < start + minutes / 60.0)
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

    #[test]
    fn day_has_a_quiet_night_and_bursts() {
        assert!(level("day", 4 * 3600, 86_400) < 0.11);
        assert!(level("day", 16 * 3600, 86_400) > 0.99);
        assert!(level("day", 21 * 3600 + 60, 86_400) > 2.0 * level("day", 20 * 3600 + 3000, 86_400));
    }
}
