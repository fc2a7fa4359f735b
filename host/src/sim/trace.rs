//! Load traces: arrivals per second per service, from a CSV file (`time_s,service,arrivals`) or a built-in shape
//! scaled by each service's `baseRate` with seeded Poisson noise.

use std::collections::BTreeMap;
use std::path::Path;

use super::SimError;
use super::config::ServiceSetup;
use super::rng::SplitMix64;

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

    /// Parses `time_s,service,arrivals` rows (a header line is optional; `#` starts a comment line).
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
            let count: u64 = count.parse().map_err(|_| bad(&format!("arrivals `{count}` is not a whole number")))?;
            if service.is_empty() {
                return Err(bad("the service is empty"));
            }
            *arrivals.entry(service.into()).or_default().entry(time).or_default() += count;
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

    /// Arrivals in each second `0..duration_s` for one service. The same seed gives the same arrivals whatever the
    /// policy, so policies are compared on identical load.
    pub fn arrivals(&self, service: &ServiceSetup, duration_s: u64, seed: u64) -> Vec<u64> {
        match self {
            Trace::Csv { arrivals, .. } => {
                let rows = arrivals.get(&service.key.to_string()).or_else(|| arrivals.get(&service.key.name));
                let mut out = vec![0; duration_s as usize];
                for (time, count) in rows.into_iter().flatten() {
                    if let Some(slot) = out.get_mut(*time as usize) {
                        *slot += count;
                    }
                }
                out
            }
            Trace::Builtin(name) => {
                let mut rng = SplitMix64::stream(seed, &service.key.to_string(), "arrivals");
                (0..duration_s).map(|t| rng.poisson(service.sim.base_rate * level(name, t, duration_s))).collect()
            }
        }
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
