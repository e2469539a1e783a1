//! `callroute simulate`: what these rules would do to this list. The engine's own decision
//! and usage path (`engine::decide`, `PoolState::record`) on a virtual clock, with the
//! account's pace and live-call limit, and calls that take simulated time with seeded
//! outcomes. Pure and deterministic: same rules, leads, options and seed, same report.
//!
//! Like the daemon, a lead is done once a call was placed for it (whatever the outcome);
//! deferred leads come back when their `until` is reached, held and rejected ones are
//! counted with their reasons.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::engine::{Decision, decide, variant_name};
use crate::lead::Lead;
use crate::rules::RuleSet;
use crate::usage::PoolState;

/// How the simulated account and calls behave.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    pub start: DateTime<Utc>,
    pub days: u32,
    /// The account's call attempts per second.
    pub caps: u32,
    /// The account's live-call limit.
    pub concurrency: u32,
    /// Share of calls answered.
    pub answer_rate: f64,
    /// How long an answered call lasts.
    pub call_duration: Duration,
    /// How long an unanswered call rings.
    pub ring_duration: Duration,
    pub seed: u64,
}

/// What the rules did to the list.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub leads: usize,
    pub called: usize,
    pub answered: usize,
    /// When the last lead was called, if every lead that could be called was.
    pub drained_at: Option<DateTime<Utc>>,
    /// Leads still waiting at the end, by the reason of their last deferral.
    pub waiting: BTreeMap<String, usize>,
    pub held: BTreeMap<String, usize>,
    pub rejected: BTreeMap<String, usize>,
    /// Deferral decisions made, by reason.
    pub deferrals: BTreeMap<String, usize>,
    /// Per caller ID: calls per day (`YYYY-MM-DD` UTC) and how often each limit window was
    /// full when the number was passed over.
    pub numbers: BTreeMap<String, NumberReport>,
    /// Per lead state (or `-`): calls by how the number was found (area_code, state, ...).
    pub tiers: BTreeMap<String, BTreeMap<String, usize>>,
    pub decisions: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct NumberReport {
    pub calls_per_day: BTreeMap<String, usize>,
    pub full_windows: BTreeMap<String, usize>,
}

/// Runs the list through the rules from `options.start` for `options.days`.
pub fn run(rules: &RuleSet, leads: &[Lead], options: &SimulateOptions) -> Report {
    let end = options.start + chrono::Duration::days(i64::from(options.days));
    let mut pool = PoolState::new(options.seed);
    pool.attach_all(rules);
    let beat = chrono::Duration::from_std(Duration::from_secs_f64(
        1.0 / f64::from(options.caps.max(1)),
    ))
    .unwrap_or_default();
    let mut report = Report {
        start: options.start,
        end,
        leads: leads.len(),
        ..Report::default()
    };
    // Leads by the instant they are due, then by their order in the list.
    let mut due: BinaryHeap<Reverse<(DateTime<Utc>, usize)>> = leads
        .iter()
        .enumerate()
        .map(|(index, lead)| {
            Reverse((
                lead.not_before.unwrap_or(options.start).max(options.start),
                index,
            ))
        })
        .collect();
    let mut live: BinaryHeap<Reverse<DateTime<Utc>>> = BinaryHeap::new();
    let mut last_reason: BTreeMap<usize, String> = BTreeMap::new();
    let mut next_send = options.start;
    // Deferred leads get their own due instants, as in the daemon.
    let mut calendar =
        crate::schedule::DueCalendar::new(beat.to_std().unwrap_or(Duration::from_secs(1)));
    let mut last_call = None;
    while let Some(Reverse((at, index))) = due.pop() {
        if at >= end {
            due.push(Reverse((at, index)));
            break;
        }
        // A live-call slot, and the account's pace: the lead waits for both.
        while live.peek().is_some_and(|Reverse(ends)| *ends <= at) {
            live.pop();
        }
        if live.len() >= options.concurrency.max(1) as usize {
            let Reverse(frees) = live.pop().unwrap_or(Reverse(at));
            due.push(Reverse((frees.max(at), index)));
            continue;
        }
        if at < next_send {
            due.push(Reverse((next_send, index)));
            continue;
        }
        let lead = &leads[index];
        let (decision, trace) = decide(rules, lead, &pool, at);
        report.decisions += 1;
        for excluded in &trace.excluded {
            let number = report
                .numbers
                .entry(excluded.number.to_string())
                .or_default();
            for window in &excluded.windows {
                *number
                    .full_windows
                    .entry(window.name().to_string())
                    .or_default() += 1;
            }
        }
        match decision {
            Decision::Dial {
                from_phone_number,
                tier,
                ..
            } => {
                pool.record(from_phone_number, lead, at);
                next_send = at + beat;
                let answered = draw(options.seed, index) < options.answer_rate;
                let duration = if answered {
                    options.call_duration
                } else {
                    options.ring_duration
                };
                live.push(Reverse(
                    at + chrono::Duration::from_std(duration).unwrap_or_default(),
                ));
                report.called += 1;
                report.answered += usize::from(answered);
                last_call = Some(at);
                last_reason.remove(&index);
                *report
                    .numbers
                    .entry(from_phone_number.to_string())
                    .or_default()
                    .calls_per_day
                    .entry(at.format("%Y-%m-%d").to_string())
                    .or_default() += 1;
                let state = lead.states.first().map_or("-", String::as_str).to_string();
                *report
                    .tiers
                    .entry(state)
                    .or_default()
                    .entry(variant_name(&tier))
                    .or_default() += 1;
            }
            Decision::Defer { until, reason } => {
                let code = variant_name(&reason.code);
                *report.deferrals.entry(code.clone()).or_default() += 1;
                last_reason.insert(index, code);
                let until = calendar.take(until.max(at + chrono::Duration::milliseconds(1)), at);
                due.push(Reverse((until, index)));
            }
            Decision::Hold { reason } => {
                last_reason.remove(&index);
                *report.held.entry(reason.message).or_default() += 1;
            }
            Decision::Reject { reason } => {
                last_reason.remove(&index);
                *report.rejected.entry(reason.message).or_default() += 1;
            }
        }
    }
    for Reverse((_, index)) in due {
        let reason = last_reason
            .get(&index)
            .cloned()
            .unwrap_or_else(|| "not yet decided".to_string());
        *report.waiting.entry(reason).or_default() += 1;
    }
    if report.waiting.is_empty() {
        report.drained_at = last_call;
    }
    report
}

/// A draw in [0, 1) from the seed and the lead: the same lead answers the same way in every
/// run (and under every rule set compared).
fn draw(seed: u64, index: usize) -> f64 {
    let hash = xxhash_rust::xxh3::xxh3_64_with_seed(&(index as u64).to_le_bytes(), seed);
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

impl fmt::Display for Report {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = |t: DateTime<Utc>| crate::format_instant(t);
        writeln!(
            out,
            "simulated {} to {}: {} leads, {} called ({} answered), {} decisions",
            time(self.start),
            time(self.end),
            self.leads,
            self.called,
            self.answered,
            self.decisions
        )?;
        match self.drained_at {
            Some(t) => writeln!(out, "queue drained: last call {}", time(t))?,
            None => {
                let waiting: usize = self.waiting.values().sum();
                writeln!(
                    out,
                    "queue not drained: {waiting} leads ({:.0}%) still waiting at the end",
                    100.0 * waiting as f64 / self.leads.max(1) as f64
                )?;
                for (reason, n) in &self.waiting {
                    writeln!(out, "  {n:>7}  {reason}")?;
                }
            }
        }
        for (title, counts) in [
            ("held", &self.held),
            ("rejected", &self.rejected),
            ("deferrals (decisions)", &self.deferrals),
        ] {
            if !counts.is_empty() {
                writeln!(out, "{title}:")?;
                for (reason, n) in counts {
                    writeln!(out, "  {n:>7}  {reason}")?;
                }
            }
        }
        writeln!(out, "\nlocal presence, calls by state and tier:")?;
        for (state, tiers) in &self.tiers {
            let total: usize = tiers.values().sum();
            let mix: Vec<String> = tiers
                .iter()
                .map(|(tier, n)| format!("{tier} {:.0}%", 100.0 * *n as f64 / total as f64))
                .collect();
            writeln!(out, "  {state:<3} {total:>7} calls: {}", mix.join(", "))?;
        }
        writeln!(
            out,
            "\nper number: calls per day; windows found full when passed over:"
        )?;
        for (number, usage) in &self.numbers {
            let days: Vec<String> = usage
                .calls_per_day
                .iter()
                .map(|(day, n)| format!("{day} {n}"))
                .collect();
            let full: Vec<String> = usage
                .full_windows
                .iter()
                .map(|(window, n)| format!("{window} x{n}"))
                .collect();
            writeln!(
                out,
                "  {number:<13} {}{}",
                if days.is_empty() {
                    "no calls".to_string()
                } else {
                    days.join(", ")
                },
                if full.is_empty() {
                    String::new()
                } else {
                    format!("; full: {}", full.join(", "))
                }
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const RULES: &str = r#"
agents: { a: { model_id: m } }
limits: { default: { per_hour: 2 } }
numbers:
  "+14155550100": {}
  "+12125550107": {}
calling_hours:
  default: { days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:00" }
campaigns:
  c:
    agent: a
    routes:
      - numbers: all
        local_presence: [area_code, any]
"#;

    fn rules() -> RuleSet {
        crate::rules::compile_sources(&[(Path::new("r.yaml"), RULES)])
            .0
            .unwrap()
    }

    fn leads(n: usize) -> Vec<Lead> {
        (0..n)
            .map(|i| {
                Lead::from_json(&format!(
                    r#"{{"phone":"+1415555{:04}","name":"N","campaign":"c"}}"#,
                    2000 + i
                ))
                .unwrap()
            })
            .collect()
    }

    fn options(days: u32) -> SimulateOptions {
        SimulateOptions {
            // Monday 2026-11-30 08:00 in San Francisco.
            start: DateTime::parse_from_rfc3339("2026-11-30T16:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            days,
            caps: 1,
            concurrency: 5,
            answer_rate: 0.5,
            call_duration: Duration::from_secs(120),
            ring_duration: Duration::from_secs(30),
            seed: 7,
        }
    }

    #[test]
    fn the_limits_decide_how_fast_the_list_drains() {
        // Two numbers at 2 calls an hour, 8 calling hours a weekday: 32 calls a day.
        let report = run(&rules(), &leads(40), &options(1));
        assert_eq!(report.called, 32, "{report}");
        assert_eq!(report.waiting.values().sum::<usize>(), 8);
        // The last of them were passed over at the end of Monday's window.
        assert!(
            report.waiting.contains_key("all_numbers_at_limit"),
            "{report}"
        );
        assert!(report.numbers["+14155550100"].full_windows["per_hour"] > 0);
        // Local first: the San Francisco number, then the fallback.
        assert_eq!(report.tiers["CA"]["area_code"], 16);
        assert_eq!(report.tiers["CA"]["any"], 16);
        let two_days = run(&rules(), &leads(40), &options(2));
        assert_eq!(two_days.called, 40);
        assert!(two_days.drained_at.is_some());
    }

    #[test]
    fn the_same_inputs_give_the_same_report() {
        let a = run(&rules(), &leads(30), &options(2)).to_string();
        let b = run(&rules(), &leads(30), &options(2)).to_string();
        assert_eq!(a, b);
    }
}
