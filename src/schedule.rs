//! When deferred leads come due. The account places at most one call per pacing interval, so
//! leads deferred to the same instant (a calling window that opens, a number that frees) can
//! only be dialed one interval apart anyway: giving each its own slot makes them come due
//! one by one instead of as a herd that is decided, and deferred, again all at once.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// Slots one pacing interval wide; each handed out once. Taken slots are kept as runs of
/// consecutive slots (start → end, exclusive): a herd of 50,000 leads deferred to one
/// instant is one run, so memory follows the number of distinct crowds, not of leads.
/// Pure: the caller passes the times.
#[derive(Debug)]
pub struct DueCalendar {
    width_ms: i64,
    runs: BTreeMap<i64, i64>,
}

impl DueCalendar {
    pub fn new(width: std::time::Duration) -> DueCalendar {
        DueCalendar {
            width_ms: (width.as_millis() as i64).max(1),
            runs: BTreeMap::new(),
        }
    }

    /// The earliest free instant at or after `wanted`, taken. `now` lets past slots go.
    pub fn take(&mut self, wanted: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        self.forget_before(now);
        let wanted_ms = wanted.timestamp_millis();
        let slot = wanted_ms.div_euclid(self.width_ms);
        // Inside a run: the first slot after it. Either way the slot joins its neighbours.
        let free = match self.runs.range(..=slot).next_back() {
            Some((_, &end)) if end > slot => end,
            _ => slot,
        };
        let start = match self.runs.range(..=free).next_back() {
            Some((&start, &end)) if end == free => start,
            _ => free,
        };
        let mut end = free + 1;
        if let Some(next_end) = self.runs.remove(&end) {
            end = next_end;
        }
        self.runs.insert(start, end);
        // Each instant lies inside its own slot, so no two leads get the same one.
        let at = (free * self.width_ms).max(wanted_ms);
        DateTime::from_timestamp_millis(at).unwrap_or(wanted)
    }

    /// Drops the runs that ended before `now`.
    fn forget_before(&mut self, now: DateTime<Utc>) {
        let current = now.timestamp_millis().div_euclid(self.width_ms);
        while let Some((&start, &end)) = self.runs.first_key_value() {
            if end > current {
                break;
            }
            self.runs.remove(&start);
        }
    }

    /// Runs of taken slots held (for tests and status).
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

/// The back-off after the `n`th failure in a row (n >= 1): `base`, doubling each time, at
/// most `max`, less up to a quarter for jitter (`jitter` in [0, 1)), so that the first
/// back-off is `base` as documented, never twice it.
pub fn backoff(
    n: u32,
    base: std::time::Duration,
    max: std::time::Duration,
    jitter: f64,
) -> std::time::Duration {
    let doubled = base
        .saturating_mul(1u32 << n.saturating_sub(1).min(20))
        .min(max);
    doubled.mul_f64(1.0 - 0.25 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    #[test]
    fn equal_instants_get_consecutive_slots_and_close_ones_never_collide() {
        let mut calendar = DueCalendar::new(Duration::from_millis(20));
        let now = t(0);
        let first: Vec<_> = (0..5).map(|_| calendar.take(t(1000), now)).collect();
        assert_eq!(first, [t(1000), t(1020), t(1040), t(1060), t(1080)]);
        // Wanted 30 ms later: the next free slot, not one already given.
        assert_eq!(calendar.take(t(1030), now), t(1100));
        // Far from the crowd: exactly as wanted.
        assert_eq!(calendar.take(t(5003), now), t(5003));
        // Never earlier than wanted, even inside a slot.
        assert_eq!(calendar.take(t(5001), now), t(5020));
    }

    #[test]
    fn fifty_thousand_leads_at_one_instant_spread_at_the_pace() {
        let mut calendar = DueCalendar::new(Duration::from_millis(200));
        let mut due: Vec<_> = (0..50_000).map(|_| calendar.take(t(0), t(0))).collect();
        assert_eq!(due[49_999], t(49_999 * 200));
        due.dedup();
        assert_eq!(due.len(), 50_000);
    }

    #[test]
    fn past_slots_are_forgotten_and_a_herd_is_one_run() {
        let mut calendar = DueCalendar::new(Duration::from_millis(1));
        for i in 0..2000 {
            calendar.take(t(i * 3), t(0)); // 2,000 runs of one slot each
        }
        assert_eq!(calendar.len(), 2000);
        calendar.take(t(10_000), t(9_000));
        assert_eq!(calendar.len(), 1, "only the run still ahead is kept");
        for _ in 0..50_000 {
            calendar.take(t(20_000), t(9_000));
        }
        assert_eq!(calendar.len(), 2, "a herd at one instant is one run");
    }

    #[test]
    fn runs_merge_with_their_neighbours() {
        let mut calendar = DueCalendar::new(Duration::from_millis(10));
        let now = t(0);
        assert_eq!(calendar.take(t(100), now), t(100));
        assert_eq!(calendar.take(t(120), now), t(120));
        assert_eq!(calendar.len(), 2);
        // The gap between them fills, and the two runs become one.
        assert_eq!(calendar.take(t(110), now), t(110));
        assert_eq!(calendar.len(), 1);
        assert_eq!(calendar.take(t(100), now), t(130));
    }

    #[test]
    fn the_first_backoff_is_the_base_then_it_doubles_up_to_the_max() {
        let (base, max) = (Duration::from_secs(2), Duration::from_secs(300));
        assert_eq!(backoff(1, base, max, 0.0), base);
        assert_eq!(backoff(1, base, max, 1.0), Duration::from_millis(1500));
        assert_eq!(backoff(2, base, max, 0.0), Duration::from_secs(4));
        assert_eq!(backoff(3, base, max, 0.0), Duration::from_secs(8));
        assert_eq!(backoff(40, base, max, 0.0), max);
    }
}
