//! callroute: picks the caller ID for every outbound call and explains why.
//! See ARCHITECTURE.md for the map of the code.

pub mod admin;
pub mod cadence;
pub mod clock;
pub mod compliance;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod engine;
pub mod explain;
pub mod geo;
pub mod health;
pub mod hours;
pub mod lead;
pub mod metrics;
pub mod phone;
pub mod pool;
pub mod reload;
pub mod rules;
pub mod schedule;
pub mod service;
pub mod simulate;
pub mod store;
pub mod suppression;
pub mod synthflow;
pub mod systemd;
pub mod usage;

/// Locks `mutex`, taking over the data of a holder that panicked: the state behind every
/// lock here stays consistent between statements, and one panicked task must not stop the
/// daemon, the listener or a reload.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How instants are shown to people and scripts: RFC 3339, UTC, whole seconds (milliseconds,
/// rounded up, when the instant has a fraction).
pub fn format_instant(t: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::{SecondsFormat, Timelike};
    match t.nanosecond() {
        0 => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        // Milliseconds, rounded up: an instant shown is never before the one meant (a lead
        // deferred "until" it shows a time at which it can really go).
        nanos => {
            let up = (1_000_000 - nanos % 1_000_000) % 1_000_000;
            (t + chrono::Duration::nanoseconds(i64::from(up)))
                .to_rfc3339_opts(SecondsFormat::Millis, true)
        }
    }
}

/// `text` cut to at most `max` characters, saying so when it was cut: what an error echoes
/// back of its input stays readable, however large the input.
pub fn bounded(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((end, _)) => format!(
            "{}… ({} characters in all)",
            &text[..end],
            text.chars().count()
        ),
    }
}
