//! `cadence:` of a campaign, validated into a [`Cadence`]: every problem reported at its
//! `file:line:col`.

use serde_saphyr::Spanned;

use super::diag::Reporter;
use super::raw::RawCadence;
use crate::cadence::{
    Cadence, CallerIdPolicy, LONGEST_DELAY, MOST_ATTEMPTS, REDIALABLE, SHORTEST_DELAY,
};

/// The cadence written at `raw` for campaign `campaign`, or `None` (reported) when any part
/// of it is wrong.
pub(super) fn compile_cadence(
    r: &mut Reporter<'_>,
    campaign: &str,
    raw: &Spanned<RawCadence>,
) -> Option<Cadence> {
    let mut ok = true;
    let cadence = &raw.value;
    let mut redial_on = Vec::new();
    if cadence.redial_on.value.is_empty() {
        r.error(
            &cadence.redial_on,
            format!(
                "campaign `{campaign}`: `redial_on` lists no call status: nothing would be redialed"
            ),
        );
        ok = false;
    }
    for status in &cadence.redial_on.value {
        let text = status.value.trim();
        if REDIALABLE.contains(&text) {
            if redial_on.iter().any(|s| s == text) {
                r.warn(status, format!("`{text}` is listed twice"));
            }
            redial_on.push(text.to_string());
        } else if text == "completed" {
            r.error(
                status,
                "`completed` means the call was answered and held: the person was reached; a cadence redials the unreached".to_string(),
            );
            ok = false;
        } else {
            r.error(
                status,
                format!(
                    "unknown call status `{}` (Synthflow's final statuses a cadence may redial: {})",
                    crate::bounded(text, 30),
                    REDIALABLE.join(", ")
                ),
            );
            ok = false;
        }
    }
    let mut delays = Vec::new();
    if cadence.delays.value.is_empty() {
        r.error(
            &cadence.delays,
            "`delays` is empty: give the wait after attempt 1 (the last one repeats)".to_string(),
        );
        ok = false;
    }
    for text in &cadence.delays.value {
        match r.duration(text) {
            Some(delay) if delay < SHORTEST_DELAY || delay > LONGEST_DELAY => {
                r.error(
                    text,
                    format!(
                        "a redial delay must be between {} and {} (a quicker redial reads as harassment; a longer one is a new campaign)",
                        humantime::format_duration(SHORTEST_DELAY),
                        humantime::format_duration(LONGEST_DELAY)
                    ),
                );
                ok = false;
            }
            Some(delay) => delays.push(delay),
            None => ok = false,
        }
    }
    let max_attempts = cadence.max_attempts.value;
    if !(1..=MOST_ATTEMPTS).contains(&max_attempts) {
        r.error(
            &cadence.max_attempts,
            format!("`max_attempts` must be between 1 and {MOST_ATTEMPTS} (attempts in all, the first included)"),
        );
        ok = false;
    } else if max_attempts == 1 {
        r.warn(
            &cadence.max_attempts,
            "`max_attempts: 1` gives no redial: the cadence does nothing".to_string(),
        );
    }
    let caller_id = match &cadence.caller_id {
        None => CallerIdPolicy::default(),
        Some(text) => match CallerIdPolicy::parse(text.value.trim()) {
            Some(policy) => policy,
            None => {
                r.error(
                    text,
                    format!(
                        "unknown `caller_id: {}` (use {})",
                        crate::bounded(&text.value, 30),
                        CallerIdPolicy::NAMES.join(", ")
                    ),
                );
                ok = false;
                CallerIdPolicy::default()
            }
        },
    };
    let errors_before = r
        .out
        .iter()
        .filter(|d| d.severity == super::Severity::Error)
        .count();
    let stop_when = super::compliance::compile_outcome_matches(r, &cadence.stop_when);
    ok &= r
        .out
        .iter()
        .filter(|d| d.severity == super::Severity::Error)
        .count()
        == errors_before;
    let at = r.pos(raw.referenced);
    ok.then(|| Cadence {
        redial_on,
        delays,
        max_attempts,
        caller_id,
        stop_when,
        defined_at: format!("{}:{}", at.file.display(), at.line),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::rules::{Severity, compile_sources};

    fn diagnostics(cadence: &str) -> Vec<String> {
        let text = format!(
            "agents: {{ a: {{ model_id: m-1 }} }}\nnumbers: {{ \"+14155550100\": {{}} }}\ncampaigns:\n  c:\n    agent: a\n    cadence: {cadence}\n    routes:\n      - numbers: all\n        sticky: 7d\n"
        );
        let (_, diagnostics) = compile_sources(&[(Path::new("r.yaml"), text.as_str())]);
        diagnostics
            .iter()
            .map(|d| {
                let kind = if d.severity == Severity::Error {
                    "error"
                } else {
                    "warning"
                };
                format!("{}:{}: {kind}: {}", d.pos.line, d.pos.column, d.message)
            })
            .collect()
    }

    #[test]
    fn every_mistake_in_a_cadence_is_reported_where_it_is() {
        let found = diagnostics(
            "{ redial_on: [no-answer, completed, ringing], delays: [10s, 2h, 90d, soon], max_attempts: 40, caller_id: other, stop_when: [{ field: a..b, equals: x }] }",
        );
        let expect = [
            "6:39: error: `completed` means",
            "6:50: error: unknown call status `ringing`",
            "6:69: error: a redial delay must be between 1m and 30days",
            "6:78: error: a redial delay must be between",
            "6:83: error: bad duration `soon`",
            "6:104: error: `max_attempts` must be between 1 and 20",
            "6:119: error: unknown `caller_id: other`",
            "6:147: error: `field: a..b` is not a dotted path",
        ];
        for wanted in expect {
            assert!(
                found.iter().any(|d| d.starts_with(wanted)),
                "{wanted}\nnot in {found:#?}"
            );
        }
        assert_eq!(
            found.iter().filter(|d| d.contains("error")).count(),
            expect.len(),
            "{found:#?}"
        );
    }

    #[test]
    fn a_good_cadence_compiles_and_sticky_against_different_is_warned() {
        let found = diagnostics(
            "{ redial_on: [no-answer, busy], delays: [30m, 2h, 1d], max_attempts: 4, caller_id: different, stop_when: [{ field: appointment_booked, equals: true }] }",
        );
        assert!(found.iter().all(|d| d.contains("warning")), "{found:#?}");
        assert!(
            found
                .iter()
                .any(|d| d.contains("the cadence wins for redials")),
            "{found:#?}"
        );
    }
}
