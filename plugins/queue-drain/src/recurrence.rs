//! Recurring load, learned in the state blob: arrivals per minute over the last eight hours, and per five minutes
//! over today and yesterday. From them, the most arrivals to expect in the next minutes, so pods can be started
//! `startupSeconds` before load that comes back on a schedule (an upload every N minutes, a burst every few hours,
//! the same hour every day) instead of after it arrives, as cloud predictive scaling does.
//!
//! A forecast must be confirmed twice: load that came one period ago AND two periods ago (or yesterday and, for
//! the daily profile, that yesterday's profile has matched today so far). A one-off spike is then never forecast
//! again, and a period is used only while it explains the recent past better than a flat level does.
//!
//! The history is read and written where it lies in the state blob ([`Recurrence`] borrows it): a call changes a
//! few bytes, so it costs no more than the 65 bytes of estimates did before it was there.

/// Minutes of per-minute history: two periods of up to [`MAX_PERIOD`] minutes behind the [`WINDOW`] they are
/// checked on.
const RING: usize = 480;
/// The longest period looked for, in minutes.
const MAX_PERIOD: usize = 180;
/// Minutes a period is checked on.
const WINDOW: usize = RING - 2 * MAX_PERIOD;
/// The period is searched for anew every this many minutes, and the one in use checked every [`CHECK_EVERY`]: load
/// that recurs changes its period rarely, and the search is the costliest step (about 20,000 comparisons).
const SEARCH_EVERY: u64 = 30;
const CHECK_EVERY: u64 = 5;
/// Five-minute bins in a day.
const DAY_BINS: usize = 288;
/// Bins of today a daily profile is checked on (two hours).
const DAY_WINDOW: usize = 24;
/// A period is used when its forecasts' error over the window is at most this fraction of a flat level's.
const CONFIRMED: f64 = 0.5;

// The blob: minute (u64), arrivals counted in it (f32), period (u16), daily profile confirmed (u8), then the ring
// and the two daily profiles, one byte per count ([`encode`]), all little-endian.
const MINUTE: usize = 0;
const COUNTING: usize = 8;
const PERIOD: usize = 12;
const DAILY: usize = 14;
const RING_AT: usize = 15;
const TODAY_AT: usize = RING_AT + RING;
const YESTERDAY_AT: usize = TODAY_AT + DAY_BINS;
/// Serialized size.
pub const LEN: usize = YESTERDAY_AT + DAY_BINS;

/// The largest count a byte holds.
const MAX_COUNT: f64 = 1e6;
/// Codes per unit of `ln(1 + count)`: 255 is [`MAX_COUNT`].
const SCALE: f64 = 255.0 / 13.815_511_557_963_774; // ln(1 + 1e6)

/// A count as one byte on a log scale: exact up to 17, within 3% above. The state crosses the host boundary
/// on every call, so its size is paid every second; the forecast does not need more precision than Poisson noise
/// leaves.
fn encode(count: f64) -> u8 {
    (count.clamp(0.0, MAX_COUNT).ln_1p() * SCALE).round() as u8
}

fn decode(code: u8) -> f64 {
    (f64::from(code) / SCALE).exp_m1().round()
}

/// The recurrence history inside a state blob of [`LEN`] bytes.
pub struct Recurrence<'a> {
    bytes: &'a mut [u8],
}

impl<'a> Recurrence<'a> {
    /// The history in `bytes`, if it is [`LEN`] long.
    pub fn in_place(bytes: &'a mut [u8]) -> Option<Self> {
        (bytes.len() == LEN).then_some(Recurrence { bytes })
    }

    /// Forgets everything and counts from `now_ms`.
    pub fn reset(&mut self, now_ms: u64) {
        self.bytes.fill(0);
        self.set_minute(now_ms / 60_000);
    }

    fn minute(&self) -> u64 {
        u64::from_le_bytes(self.bytes[MINUTE..MINUTE + 8].try_into().expect("8 bytes"))
    }

    fn set_minute(&mut self, minute: u64) {
        self.bytes[MINUTE..MINUTE + 8].copy_from_slice(&minute.to_le_bytes());
    }

    fn counting(&self) -> f32 {
        f32::from_le_bytes(self.bytes[COUNTING..COUNTING + 4].try_into().expect("4 bytes"))
    }

    fn set_counting(&mut self, count: f32) {
        self.bytes[COUNTING..COUNTING + 4].copy_from_slice(&count.to_le_bytes());
    }

    /// The period (minutes) chosen at the last search, 0 for none.
    fn period(&self) -> usize {
        usize::from(self.word(PERIOD))
    }

    fn word(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.bytes[at], self.bytes[at + 1]])
    }

    fn set_word(&mut self, at: usize, value: u16) {
        self.bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
    }

    fn today(&self, bin: usize) -> f64 {
        decode(self.bytes[TODAY_AT + bin])
    }

    fn yesterday(&self, bin: usize) -> f64 {
        decode(self.bytes[YESTERDAY_AT + bin])
    }

    /// Counts `arrived` jobs at `now_ms`; at each minute's end stores it, and chooses the period again every
    /// [`SEARCH_EVERY`] minutes (checks it every [`CHECK_EVERY`]).
    pub fn record(&mut self, now_ms: u64, arrived: f64) {
        let minute = now_ms / 60_000;
        let current = self.minute();
        if minute != current {
            self.close_minute(current, self.counting());
            // Minutes without a call (a paused queue, a restart) arrived nothing that was seen.
            for skipped in (current + 1..minute).take(RING) {
                self.close_minute(skipped, 0.0);
            }
            self.set_minute(minute);
            self.set_counting(0.0);
            let period = self.period();
            if minute / SEARCH_EVERY != current / SEARCH_EVERY {
                self.set_word(PERIOD, self.best_period(2..=MAX_PERIOD));
            } else if period != 0 && minute / CHECK_EVERY != current / CHECK_EVERY {
                // A period the last minutes no longer confirm is dropped until the next search.
                self.set_word(PERIOD, self.best_period(period..=period));
            }
            self.bytes[DAILY] = u8::from(self.daily_confirmed());
        }
        self.set_counting(self.counting() + arrived as f32);
    }

    fn close_minute(&mut self, minute: u64, counted: f32) {
        let count = f64::from(counted).round();
        self.bytes[RING_AT + minute as usize % RING] = encode(count);
        if minute.is_multiple_of(1440) {
            // A new day: today becomes yesterday.
            self.bytes.copy_within(TODAY_AT..YESTERDAY_AT, YESTERDAY_AT);
            self.bytes[TODAY_AT..YESTERDAY_AT].fill(0);
        }
        let bin = (minute % 1440) as usize / 5;
        self.bytes[TODAY_AT + bin] = encode(self.today(bin) + count);
    }

    /// Arrivals of the completed minute `back` minutes before the current one (1 = the last).
    fn past(&self, back: usize) -> f64 {
        let index = (self.minute() as usize + RING * 2 - back) % RING;
        decode(self.bytes[RING_AT + index])
    }

    /// The period of `periods` whose twice-confirmed forecasts (the least of one and two periods ago) explain the
    /// last [`WINDOW`] minutes best, if they do clearly better than their mean does; 0 otherwise.
    fn best_period(&self, periods: std::ops::RangeInclusive<usize>) -> u16 {
        let depth = WINDOW + 2 * periods.end();
        let history: Vec<f64> = (0..=depth).map(|back| if back == 0 { 0.0 } else { self.past(back) }).collect();
        let seen = &history[1..=WINDOW];
        let mean = seen.iter().sum::<f64>() / WINDOW as f64;
        let flat: f64 = seen.iter().map(|x| (x - mean).abs()).sum();
        let mut best = (0, CONFIRMED * flat);
        for period in periods {
            let mut error = 0.0;
            for k in 1..=WINDOW {
                error += (history[k] - history[k + period].min(history[k + 2 * period])).abs();
                if error >= best.1 {
                    break;
                }
            }
            if error < best.1 {
                best = (period, error);
            }
        }
        best.0 as u16
    }

    /// Whether yesterday's profile has matched today's over the last [`DAY_WINDOW`] complete bins, clearly better
    /// than a flat level.
    fn daily_confirmed(&self) -> bool {
        let bin = (self.minute() % 1440) as usize / 5;
        if bin < DAY_WINDOW || self.bytes[YESTERDAY_AT..].iter().all(|&code| code == 0) {
            return false;
        }
        let bins = (bin - DAY_WINDOW..bin).map(|b| (self.today(b), self.yesterday(b)));
        let mean = bins.clone().map(|(t, _)| t).sum::<f64>() / DAY_WINDOW as f64;
        let flat: f64 = bins.clone().map(|(t, _)| (t - mean).abs()).sum();
        let error: f64 = bins.map(|(t, y)| (t - y).abs()).sum();
        error <= CONFIRMED * flat
    }

    /// The highest arrival rate (jobs/s) recurring load brings from now (`now_ms`) until `horizon_s` seconds
    /// later, if a period or the daily profile is confirmed: a minute (or five-minute bin) counts when it starts
    /// within the horizon, so pods are started no earlier than the horizon before the load.
    pub fn forecast(&self, now_ms: u64, horizon_s: f64) -> Option<f64> {
        // No further than a day: the profiles hold no more.
        let horizon_ms = (horizon_s.clamp(0.0, 86_400.0) * 1000.0) as u64;
        let mut rate: Option<f64> = None;
        let period = self.period();
        // Minute `j` ahead (0 = the current one) was `period - j` minutes ago.
        let minutes = ((now_ms % 60_000 + horizon_ms) / 60_000) as usize;
        if period > minutes {
            let ahead = (0..=minutes).map(|j| self.past(period - j).min(self.past(2 * period - j)) / 60.0);
            rate = ahead.reduce(f64::max);
        }
        if self.bytes[DAILY] == 1 {
            let bin = (self.minute() % 1440) as usize / 5;
            let bins = (((now_ms % 300_000 + horizon_ms) / 300_000) as usize).min(DAY_BINS);
            let ahead = (0..=bins).map(|j| self.yesterday((bin + j) % DAY_BINS) / 300.0);
            rate = rate.into_iter().chain(ahead).reduce(f64::max);
        }
        rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stable hash of `m` (SplitMix64's finalizer): noise without a period.
    fn hash(m: u64) -> u64 {
        let z = (m ^ (m >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A history fed `per_minute(minute)` arrivals, one second at a time, for `minutes` minutes from 0.
    fn fed(minutes: u64, per_minute: impl Fn(u64) -> f64) -> Vec<u8> {
        let mut bytes = vec![0xff; LEN];
        let mut r = Recurrence::in_place(&mut bytes).unwrap();
        r.reset(0);
        for m in 0..minutes {
            for s in 0..60 {
                r.record((m * 60 + s) * 1000, per_minute(m) / 60.0);
            }
        }
        bytes
    }

    #[test]
    fn a_count_byte_is_exact_up_to_17_and_within_3_percent_up_to_a_million() {
        for count in 0..=17 {
            assert_eq!(decode(encode(f64::from(count))), f64::from(count));
        }
        for count in [18.0, 50.0, 799.0, 12_345.0, 1e6] {
            let back = decode(encode(count));
            assert!((back - count).abs() <= 0.03 * count, "{count} -> {back}");
        }
        assert_eq!((encode(1e6), encode(1e9), encode(-1.0)), (255, 255, 0));
    }

    #[test]
    fn only_a_blob_of_its_length_is_read() {
        let mut bytes = fed(90, |m| (m % 7) as f64);
        assert_eq!(bytes.len(), LEN);
        assert!(Recurrence::in_place(&mut bytes[1..]).is_none());
        let r = Recurrence::in_place(&mut bytes).expect("its own blob");
        // Minute 89 is still being counted; the last closed one is 88.
        assert_eq!((r.minute(), r.past(1), r.past(7)), (89, 88.0 % 7.0, 82.0 % 7.0));
    }

    #[test]
    fn an_upload_every_40_minutes_is_forecast_before_it_arrives() {
        // 5 jobs a minute, and 50 a minute for 5 minutes every 40 minutes.
        let mut bytes = fed(6 * 60 + 38, |m| if m % 40 < 5 { 50.0 } else { 5.0 });
        let r = Recurrence::in_place(&mut bytes).unwrap();
        assert_eq!(r.period(), 40);
        // At the start of minute 397, three minutes before the next upload: a horizon of three minutes reaches it;
        // two minutes and 59 seconds sees only the base.
        let now_ms = 397 * 60_000;
        let upload = r.forecast(now_ms, 180.0).unwrap() * 60.0;
        assert!((upload - 50.0).abs() <= 1.5, "{upload} jobs a minute");
        assert!(r.forecast(now_ms, 179.0).unwrap() < 0.1);
    }

    #[test]
    fn flat_load_and_one_off_spikes_forecast_nothing() {
        // Noisy flat load with a spike at a different minute every hour: no period explains it.
        let mut bytes = fed(8 * 60, |m| {
            let noise = (hash(m) % 8) as f64;
            let spike_minute = hash(m / 60 + 1_000_000) % 60;
            if m % 60 == spike_minute { 80.0 } else { 20.0 + noise }
        });
        let r = Recurrence::in_place(&mut bytes).unwrap();
        assert_eq!(r.period(), 0);
        assert_eq!(r.forecast(8 * 3_600_000 - 60_000, 180.0), None);
    }

    #[test]
    fn yesterdays_burst_is_forecast_once_today_has_matched_yesterday() {
        // A slow daily swing with a burst at 09:30 every day.
        let load = |m: u64| {
            let minute_of_day = m % 1440;
            let swing = 10.0 + 30.0 * (minute_of_day as f64 / 1440.0 * std::f64::consts::PI).sin();
            if (570..580).contains(&minute_of_day) { 4.0 * swing } else { swing }
        };
        // At 09:28, two minutes before it.
        let mut bytes = fed(1440 + 569, load);
        let now_ms = (1440 + 568) * 60_000;
        let recurrence = Recurrence::in_place(&mut bytes).unwrap();
        let rate = recurrence.forecast(now_ms, 180.0).expect("the daily profile is confirmed");
        assert!(rate * 60.0 > 3.0 * load(1440 + 568), "{rate}");
        // A horizon past a day reads no further than a day.
        assert_eq!(recurrence.forecast(now_ms, 1e300), recurrence.forecast(now_ms, 86_400.0));
        // At 09:26, the burst is more than the horizon away.
        let mut early = fed(1440 + 567, load);
        let early = Recurrence::in_place(&mut early).unwrap().forecast((1440 + 566) * 60_000, 180.0).unwrap();
        assert!(early * 60.0 < 1.5 * load(1440 + 566), "{early}");
        // The first day, nothing to go on.
        let mut first = fed(569, load);
        let first = Recurrence::in_place(&mut first).unwrap().forecast(568 * 60_000, 180.0);
        assert!(first.is_none_or(|rate| rate * 60.0 < 1.5 * load(568)), "{first:?}");
    }
}
