//! The one clock of the daemon: the time decisions, the ledger, deferrals and limits run on.
//! The system clock in production; a shifted, faster clock for the demo (which must show a
//! working day whatever the hour) and for tests. Waits on the network (pacing, timeouts,
//! polls) stay in real time: the far side's clock does not speed up.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    #[default]
    System,
    /// Started at `start` when the wall clock said `wall_origin`, running `speed` times faster.
    Simulated {
        start: DateTime<Utc>,
        wall_origin: DateTime<Utc>,
        instant_origin: Instant,
        speed: f64,
    },
}

impl Clock {
    /// A clock that reads `start` now and runs `speed` times faster than the wall clock.
    pub fn simulated(start: DateTime<Utc>, speed: f64) -> Clock {
        Clock::Simulated {
            start,
            wall_origin: Utc::now(),
            instant_origin: Instant::now(),
            speed: speed.max(f64::MIN_POSITIVE),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match *self {
            Clock::System => Utc::now(),
            Clock::Simulated {
                start,
                instant_origin,
                speed,
                ..
            } => start + scaled(instant_origin.elapsed(), speed),
        }
    }

    /// How long to wait, in real time, until this clock reads `at`.
    pub fn real_until(&self, at: DateTime<Utc>) -> Duration {
        let ahead = (at - self.now()).to_std().unwrap_or_default();
        match *self {
            Clock::System => ahead,
            Clock::Simulated { speed, .. } => ahead.div_f64(speed),
        }
    }

    /// The wall-clock instant at which this clock read `at`: what other systems (Synthflow's
    /// call records, say) saw at that moment.
    pub fn to_wall(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        match *self {
            Clock::System => at,
            Clock::Simulated {
                start,
                wall_origin,
                speed,
                ..
            } => {
                let since_start = (at - start).to_std().unwrap_or_default();
                wall_origin + scaled(since_start, 1.0 / speed)
            }
        }
    }

    pub fn is_simulated(&self) -> bool {
        matches!(self, Clock::Simulated { .. })
    }
}

fn scaled(real: Duration, speed: f64) -> chrono::Duration {
    chrono::Duration::from_std(real.mul_f64(speed)).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_clock_runs_faster_and_maps_back_to_the_wall() {
        let start = DateTime::parse_from_rfc3339("2026-11-30T13:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = Clock::simulated(start, 120.0);
        let now = clock.now();
        assert!(now >= start && now - start < chrono::Duration::seconds(60));
        // An hour ahead on this clock is 30 s of real time.
        let wait = clock.real_until(now + chrono::Duration::hours(1));
        assert!((29.9..=30.0).contains(&wait.as_secs_f64()), "{wait:?}");
        // The wall clock read the start about when the clock was made.
        let wall = clock.to_wall(start);
        assert!((Utc::now() - wall).num_seconds().abs() < 5);
        assert!(!Clock::System.is_simulated());
    }
}
