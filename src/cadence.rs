//! Redials by outcome: a campaign's cadence says which call outcomes are dialed again, after
//! how long, how many attempts a lead gets in all, and which caller ID a redial shows.
//!
//! A cadence only says when a lead may be tried again. The attempt itself is decided from
//! scratch at that moment by the engine, with the rules then running (hours, state laws,
//! holidays, caps, consent, suppression, limits, health): a cadence never makes a call the
//! rules would refuse. Pure: no I/O, no clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Which caller ID a redial shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerIdPolicy {
    /// None an earlier attempt of the lead used, while another eligible one exists.
    Different,
    /// The last one, while it is still eligible (else as the route picks).
    Same,
    /// As the route picks (its strategy and `sticky`).
    #[default]
    Any,
}

impl CallerIdPolicy {
    pub const NAMES: [&'static str; 3] = ["different", "same", "any"];

    pub fn parse(text: &str) -> Option<CallerIdPolicy> {
        match text {
            "different" => Some(CallerIdPolicy::Different),
            "same" => Some(CallerIdPolicy::Same),
            "any" => Some(CallerIdPolicy::Any),
            _ => None,
        }
    }
}

/// Call statuses a cadence may redial: Synthflow's final statuses but `completed` (the call
/// was answered and held: the person was reached).
pub const REDIALABLE: [&str; 8] = [
    "no-answer",
    "busy",
    "failed",
    "canceled",
    "user-canceled",
    "hangup_on_voicemail",
    "left_voicemail",
    "spam",
];

/// The shortest and longest delay a cadence may set.
pub const SHORTEST_DELAY: Duration = Duration::from_secs(60);
pub const LONGEST_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);
/// The most attempts a cadence may give a lead.
pub const MOST_ATTEMPTS: u32 = 20;

#[derive(Debug, Clone)]
pub struct Cadence {
    pub redial_on: Vec<String>,
    /// After attempt 1, 2, …; the last one repeats. Never empty.
    pub delays: Vec<Duration>,
    pub max_attempts: u32,
    pub caller_id: CallerIdPolicy,
    /// Call-record fields that end the cadence whatever the status (an appointment booked).
    pub stop_when: Vec<crate::compliance::OutcomeMatch>,
    /// `file:line` of the `cadence:` key, for traces.
    pub defined_at: String,
}

/// The next attempt a cadence gives a lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redial {
    /// Attempt number of the redial (2 for the first redial).
    pub attempt: u32,
    pub max_attempts: u32,
    pub due_at: DateTime<Utc>,
    /// Said in the status, `explain` and the lead's row: attempt, outcome, when.
    pub reason: String,
}

impl Cadence {
    /// The wait after attempt `attempt` (1-based): its delay, or the last one.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let index = (attempt.max(1) as usize - 1).min(self.delays.len() - 1);
        self.delays[index]
    }

    /// After attempt `attempts_made` ended with `status` at `ended_at` (its record's fields
    /// flattened by `compliance::outcome_fields`): the redial, if the cadence gives one. An
    /// outcome that is not known (the end never seen) gets none: the call may have reached
    /// the person, and a redial could be a call too many. Neither does a call whose record
    /// matches `stop_when`.
    pub fn next(
        &self,
        attempts_made: u32,
        status: &str,
        fields: &serde_json::Value,
        ended_at: DateTime<Utc>,
    ) -> Option<Redial> {
        if attempts_made >= self.max_attempts
            || !self.redial_on.iter().any(|s| s == status)
            || self.stopped_by(fields).is_some()
        {
            return None;
        }
        let delay = self.delay_after(attempts_made);
        let due_at = ended_at + chrono::Duration::from_std(delay).ok()?;
        let attempt = attempts_made + 1;
        Some(Redial {
            attempt,
            max_attempts: self.max_attempts,
            due_at,
            reason: format!(
                "cadence: attempt {attempt} of {} after {status}, due {} ({} after the call ended)",
                self.max_attempts,
                due_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                humantime::format_duration(delay)
            ),
        })
    }

    /// The `stop_when` condition a call's record meets, as `field = value`.
    pub fn stopped_by(&self, fields: &serde_json::Value) -> Option<String> {
        crate::compliance::first_match(&self.stop_when, fields)
    }

    /// Longest time from a lead's first attempt to its last: how far back its earlier
    /// attempts must be known (the caller IDs a redial avoids).
    pub fn span(&self) -> Duration {
        (1..self.max_attempts).map(|k| self.delay_after(k)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cadence() -> Cadence {
        Cadence {
            redial_on: vec!["no-answer".into(), "busy".into()],
            delays: vec![
                Duration::from_secs(30 * 60),
                Duration::from_secs(2 * 3600),
                Duration::from_secs(24 * 3600),
            ],
            max_attempts: 5,
            caller_id: CallerIdPolicy::Different,
            stop_when: vec![crate::compliance::OutcomeMatch {
                field: vec!["appointment_booked".into()],
                equals: vec!["true".into()],
            }],
            defined_at: "rules.yaml:3".into(),
        }
    }

    fn none() -> serde_json::Value {
        serde_json::json!({})
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn delays_follow_the_attempts_and_the_last_repeats() {
        let c = cadence();
        let ended = at("2026-03-04T15:00:00Z");
        let due = |k| c.next(k, "no-answer", &none(), ended).unwrap().due_at;
        assert_eq!(due(1), at("2026-03-04T15:30:00Z"));
        assert_eq!(due(2), at("2026-03-04T17:00:00Z"));
        assert_eq!(due(3), at("2026-03-05T15:00:00Z"));
        assert_eq!(due(4), at("2026-03-05T15:00:00Z"), "the last delay repeats");
        let redial = c.next(1, "busy", &none(), ended).unwrap();
        assert_eq!((redial.attempt, redial.max_attempts), (2, 5));
        assert!(
            redial.reason.contains("attempt 2 of 5 after busy"),
            "{}",
            redial.reason
        );
        assert_eq!(
            c.span(),
            Duration::from_secs(30 * 60 + 2 * 3600 + 2 * 24 * 3600)
        );
    }

    #[test]
    fn no_redial_past_the_last_attempt_or_for_other_outcomes() {
        let c = cadence();
        let ended = at("2026-03-04T15:00:00Z");
        assert!(
            c.next(5, "no-answer", &none(), ended).is_none(),
            "attempt 5 of 5 was the last"
        );
        assert!(c.next(1, "completed", &none(), ended).is_none());
        assert!(
            c.next(1, "left_voicemail", &none(), ended).is_none(),
            "not listed"
        );
        assert!(
            c.next(1, "unknown: no final status within 3 h", &none(), ended)
                .is_none()
        );
        let booked = serde_json::json!({ "appointment_booked": true });
        assert!(
            c.next(1, "no-answer", &booked, ended).is_none(),
            "stop_when"
        );
        assert_eq!(
            c.stopped_by(&booked).as_deref(),
            Some("appointment_booked = true")
        );
    }
}
