//! What a run means to people: the summary printed (text or JSON) and drawn (`html`).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Outcome, SimulateOptions, Tally, WINDOWS, window_bit};
use crate::lead::Lead;
use crate::rules::{Limits, RuleSet};

/// What the rules did to the list.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub leads: usize,
    /// Leads called at least once.
    pub called: usize,
    pub answered: usize,
    pub decisions: usize,
    /// When the last lead was called, if every lead that could be called was.
    pub drained_at: Option<DateTime<Utc>>,
    /// Leads still waiting at the end, by the reason of their last deferral.
    pub waiting: BTreeMap<String, usize>,
    pub held: BTreeMap<String, usize>,
    pub rejected: BTreeMap<String, usize>,
    /// Deferral decisions made, by reason.
    pub deferrals: BTreeMap<String, usize>,
    pub numbers: Vec<NumberReport>,
    pub states: Vec<StateReport>,
    /// The clock hour the hourly series start at (`start`, to the hour).
    pub first_hour: DateTime<Utc>,
    /// Leads still queued at the start of each hour from `first_hour`.
    pub queue_depth: Vec<usize>,
    /// Answered calls that were short (hang-ups).
    pub short: usize,
    /// Numbers labelled under the reputation model (a number labelled twice counts twice).
    pub labelled: usize,
    pub labelled_numbers: usize,
    /// Rests the health policy started.
    pub rests: Vec<crate::health::Rest>,
    /// Calls found over a limit window of their number when checked after the run
    /// (per_minute, per_hour, per_24h, min_gap; without the safety margin): 0 is the promise.
    pub limit_violations: usize,
    /// What more numbers would change, each measured by running again with them (`None`:
    /// not asked for).
    pub advice: Option<Vec<Advice>>,
    /// Per attempt of a lead (1: first calls, 2: first redials …): calls made, leads
    /// reached (answered) on it, and those per 1,000 leads: what each extra attempt of a
    /// cadence adds.
    pub by_attempt: Vec<AttemptReport>,
    /// Redials the campaigns' cadences scheduled.
    pub redials: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptReport {
    pub attempt: usize,
    pub calls: usize,
    pub reached: usize,
    pub reached_per_1000_leads: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NumberReport {
    pub number: String,
    pub calls: u32,
    /// Calls per UTC day (`YYYY-MM-DD`).
    pub calls_per_day: BTreeMap<String, u32>,
    /// Calls in each hour from `Report::first_hour`.
    pub calls_per_hour: Vec<u32>,
    pub limits: Limits,
    /// The most calls its windows allow in an hour (per_hour, per_minute, min_gap), if any
    /// limits it: the scale of the utilisation heat map.
    pub hourly_capacity: Option<u32>,
    /// How often each window was full when the number was passed over.
    pub full_windows: BTreeMap<String, usize>,
    /// When each window bound: runs of hours in which it was found full.
    pub binding: Vec<Span>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Span {
    pub window: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StateReport {
    /// The lead's state (`-` when none is known).
    pub state: String,
    pub calls: usize,
    /// Calls by how the number was found (area_code, state, timezone, country, any, sticky).
    pub tiers: BTreeMap<String, usize>,
    pub non_local: usize,
    /// Hours of the day (in `zone`) in which non-local calls were made, e.g. `10:00–16:00`.
    pub non_local_hours: String,
    pub zone: String,
    /// Why calls went to non-local numbers.
    pub cause: Option<String>,
}

impl StateReport {
    pub fn non_local_share(&self) -> f64 {
        self.non_local as f64 / self.calls.max(1) as f64
    }
}

impl Report {
    pub fn new(
        rules: &RuleSet,
        leads: &[Lead],
        options: &SimulateOptions,
        tally: &Tally,
    ) -> Report {
        let mut report = Report {
            start: options.start,
            end: options.start + chrono::Duration::days(i64::from(options.days)),
            leads: leads.len(),
            called: 0,
            answered: tally.answered,
            decisions: tally.decisions,
            drained_at: None,
            waiting: BTreeMap::new(),
            held: BTreeMap::new(),
            rejected: BTreeMap::new(),
            deferrals: tally.deferrals.clone(),
            numbers: Vec::new(),
            states: Vec::new(),
            short: tally.short,
            labelled: tally.labelled.len(),
            labelled_numbers: tally
                .labelled
                .iter()
                .map(|(n, _)| *n)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            rests: tally.rests.clone(),
            limit_violations: limit_violations(rules, tally),
            first_hour: options.first_hour(),
            queue_depth: tally.queue_depth.clone(),
            advice: None,
            by_attempt: tally
                .calls_by_attempt
                .iter()
                .zip(&tally.reached_by_attempt)
                .enumerate()
                .map(|(index, (&calls, &reached))| AttemptReport {
                    attempt: index + 1,
                    calls,
                    reached,
                    reached_per_1000_leads: 1000.0 * reached as f64 / leads.len().max(1) as f64,
                })
                .collect(),
            redials: tally.redials,
        };
        // Leads called at least once (a lead waiting for a cadence's redial was called).
        report.called = tally.calls_by_attempt.first().copied().unwrap_or(0);
        let mut last_call = None;
        for outcome in &tally.outcomes {
            match outcome {
                Outcome::Called { at, .. } => {
                    last_call = last_call.max(Some(*at));
                }
                Outcome::Waiting(reason) => *report.waiting.entry(reason.clone()).or_default() += 1,
                Outcome::Held(reason) => *report.held.entry(reason.clone()).or_default() += 1,
                Outcome::Rejected(reason) => {
                    *report.rejected.entry(reason.clone()).or_default() += 1
                }
            }
        }
        if report.waiting.is_empty() {
            report.drained_at = last_call;
        }
        for (number, counted) in &tally.numbers {
            let limits = rules.number(*number).map(|n| n.limits).unwrap_or_default();
            let mut calls_per_day = BTreeMap::new();
            for (hour, calls) in counted.calls_per_hour.iter().enumerate() {
                if *calls > 0 {
                    let day = options.first_hour() + chrono::Duration::hours(hour as i64);
                    *calls_per_day
                        .entry(day.format("%Y-%m-%d").to_string())
                        .or_default() += calls;
                }
            }
            report.numbers.push(NumberReport {
                number: number.to_string(),
                calls: counted.calls_per_hour.iter().sum(),
                calls_per_day,
                calls_per_hour: counted.calls_per_hour.clone(),
                limits,
                hourly_capacity: hourly_capacity(&limits),
                full_windows: counted
                    .full_windows
                    .iter()
                    .map(|(w, n)| (w.to_string(), *n))
                    .collect(),
                binding: spans(options.first_hour(), &counted.full_per_hour),
            });
        }
        for (name, state) in &tally.states {
            let zone = state.zone.map_or("UTC", |z| z.name());
            report.states.push(StateReport {
                state: name.clone(),
                calls: state.calls(),
                tiers: state.tiers.clone(),
                non_local: state.non_local,
                non_local_hours: hour_ranges(&state.non_local_by_hour_of_day),
                zone: zone.to_string(),
                cause: (state.non_local > 0).then(|| non_local_cause(rules, name, state)),
            });
        }
        report
    }

    pub fn waiting_total(&self) -> usize {
        self.waiting.values().sum()
    }
}

/// A state with fewer calls says too little about its mix to advise on.
pub const FEWEST_CALLS: usize = 20;

/// One piece of capacity advice (see `advice`): a goal, the change that met it (or the
/// largest tried), and the measure before and after.
#[derive(Debug, Clone, Serialize)]
pub struct Advice {
    pub goal: String,
    /// What was added in the run that met the goal (or the largest one tried); when nothing
    /// was tried, why not.
    pub change: String,
    pub before: String,
    pub after: String,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Reached,
    NotReached,
    /// More numbers cannot help (e.g. no number was ever full): nothing was run.
    NotTried,
}

impl fmt::Display for Advice {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (goal, change, before, after) = (&self.goal, &self.change, &self.before, &self.after);
        match self.verdict {
            Verdict::Reached => write!(out, "{goal}: {change} ({before} → {after})"),
            Verdict::NotReached => write!(
                out,
                "{goal}: not reached even with {change} ({before} → {after})"
            ),
            Verdict::NotTried => write!(out, "{goal}: {change}"),
        }
    }
}

/// Calls over a window of their number's limits, checked from the call instants alone.
fn limit_violations(rules: &RuleSet, tally: &Tally) -> usize {
    let mut violations = 0;
    for (number, calls) in &tally.calls_at {
        let Some(info) = rules.number(*number) else {
            continue;
        };
        let limits = info.limits;
        for (window, limit) in [
            (chrono::Duration::minutes(1), limits.per_minute),
            (chrono::Duration::hours(1), limits.per_hour),
            (chrono::Duration::hours(24), limits.per_24h),
        ] {
            let Some(limit) = limit else { continue };
            let mut first = 0;
            for (last, at) in calls.iter().enumerate() {
                while calls[first] <= *at - window {
                    first += 1;
                }
                if last + 1 - first > limit as usize {
                    violations += 1;
                }
            }
        }
        if let Some(gap) = limits
            .min_gap
            .and_then(|g| chrono::Duration::from_std(g).ok())
        {
            violations += calls.windows(2).filter(|w| w[1] - w[0] < gap).count();
        }
    }
    violations
}

/// The most calls `limits` allow in any hour, when they limit it at all.
pub fn hourly_capacity(limits: &Limits) -> Option<u32> {
    [
        limits.per_hour,
        limits.per_minute.map(|n| n.saturating_mul(60)),
        limits
            .min_gap
            .filter(|gap| !gap.is_zero())
            .map(|gap| (3600.0 / gap.as_secs_f64()).ceil() as u32),
    ]
    .into_iter()
    .flatten()
    .min()
}

/// Runs of consecutive hours in which each window was full.
fn spans(start: DateTime<Utc>, full_per_hour: &[u8]) -> Vec<Span> {
    let at = |hour: usize| start + chrono::Duration::hours(hour as i64);
    let mut spans = Vec::new();
    for window in WINDOWS {
        let bit = window_bit(window);
        let mut run_start = None;
        for (hour, bits) in full_per_hour.iter().chain([&0]).enumerate() {
            match (bits & bit != 0, run_start) {
                (true, None) => run_start = Some(hour),
                (false, Some(first)) => {
                    spans.push(Span {
                        window: window.name().to_string(),
                        from: at(first),
                        to: at(hour),
                    });
                    run_start = None;
                }
                _ => {}
            }
        }
    }
    spans.sort_by(|a, b| (a.from, &a.window).cmp(&(b.from, &b.window)));
    spans
}

/// `10:00–16:00, 18:00–19:00` for the hours of the day with a non-zero count.
fn hour_ranges(counts: &[u32; 24]) -> String {
    let mut ranges = Vec::new();
    let mut hour = 0;
    while hour < 24 {
        if counts[hour] == 0 {
            hour += 1;
            continue;
        }
        let first = hour;
        while hour < 24 && counts[hour] > 0 {
            hour += 1;
        }
        ranges.push(format!("{first:02}:00–{hour:02}:00"));
    }
    ranges.join(", ")
}

/// Why a state's calls went to non-local numbers: its local numbers and the window that
/// was full when they were passed over, or that it has no local number that could be used.
fn non_local_cause(rules: &RuleSet, state: &str, tally: &super::StateTally) -> String {
    let mut by_window: BTreeMap<&str, (usize, Vec<String>)> = BTreeMap::new();
    for ((number, window), n) in &tally.full_local {
        let entry = by_window.entry(window).or_default();
        entry.0 += n;
        entry.1.push(number.to_string());
    }
    let Some((window, (_, numbers))) = by_window.into_iter().max_by_key(|(_, (n, _))| *n) else {
        let local = rules
            .numbers()
            .filter(|n| n.region.states.iter().any(|s| s == state))
            .count();
        return if local == 0 {
            format!("no number in the rules is in {state}")
        } else {
            format!(
                "none of the {local} numbers in {state} was eligible (not in the route, not attached, or hours)"
            )
        };
    };
    let limit = numbers
        .first()
        .and_then(|n| n.parse().ok())
        .and_then(|n| rules.number(n))
        .and_then(|n| n.limits.value(window))
        .map(|value| format!("`{window}: {value}`"))
        .unwrap_or_else(|| format!("`{window}`"));
    let shown: Vec<&str> = numbers.iter().take(3).map(String::as_str).collect();
    let more = numbers.len().saturating_sub(shown.len());
    format!(
        "the {} local number{} ({}{}) hit {limit}",
        numbers.len(),
        if numbers.len() == 1 { "" } else { "s" },
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

pub(super) fn percent(part: usize, whole: usize) -> String {
    format!("{:.0}%", 100.0 * part as f64 / whole.max(1) as f64)
}

fn short(t: DateTime<Utc>) -> String {
    t.format("%m-%d %H:%M").to_string()
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
        writeln!(
            out,
            "{:.2} dials per answered call; {} short calls; limit windows exceeded: {}",
            self.called as f64 / self.answered.max(1) as f64,
            self.short,
            self.limit_violations
        )?;
        if self.redials > 0 {
            let marginal: Vec<String> = self
                .by_attempt
                .iter()
                .map(|a| {
                    let sign = if a.attempt == 1 { "" } else { "+" };
                    format!("{}: {sign}{:.0}", a.attempt, a.reached_per_1000_leads)
                })
                .collect();
            let reached: f64 = self
                .by_attempt
                .iter()
                .map(|a| a.reached_per_1000_leads)
                .sum();
            writeln!(
                out,
                "cadence: {} redials; leads reached per 1,000: {reached:.0} (by attempt {})",
                self.redials,
                marginal.join(", ")
            )?;
        }
        if self.labelled > 0 || !self.rests.is_empty() {
            writeln!(
                out,
                "reputation model: {} labels on {} numbers; health policy: {} rests",
                self.labelled,
                self.labelled_numbers,
                self.rests.len()
            )?;
        }
        match self.drained_at {
            Some(t) => writeln!(out, "queue drained: last call {}", time(t))?,
            None => {
                let waiting = self.waiting_total();
                writeln!(
                    out,
                    "queue not drained: {waiting} leads ({}) still waiting at the end",
                    percent(waiting, self.leads)
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
        writeln!(out, "\nlocal presence, calls by lead state and tier:")?;
        for state in &self.states {
            let mix: Vec<String> = state
                .tiers
                .iter()
                .map(|(tier, n)| format!("{tier} {}", percent(*n, state.calls)))
                .collect();
            writeln!(
                out,
                "  {:<3} {:>7} calls: {}",
                state.state,
                state.calls,
                mix.join(", ")
            )?;
            if let Some(cause) = &state.cause {
                writeln!(
                    out,
                    "      {}: {} from non-local numbers {} ({}) because {cause}",
                    state.state,
                    percent(state.non_local, state.calls),
                    state.non_local_hours,
                    state.zone
                )?;
            }
        }
        writeln!(
            out,
            "\nper number: calls, busiest hour against its hourly capacity, calls per UTC day; when a window bound (UTC):"
        )?;
        for number in &self.numbers {
            let peak = number.calls_per_hour.iter().max().copied().unwrap_or(0);
            let days: Vec<String> = number
                .calls_per_day
                .iter()
                .map(|(day, n)| format!("{} {n}", &day[5..]))
                .collect();
            writeln!(
                out,
                "  {:<13} {:>6} calls, peak {peak}/h{}; {}",
                number.number,
                number.calls,
                number
                    .hourly_capacity
                    .map(|c| format!(" of {c}"))
                    .unwrap_or_default(),
                if days.is_empty() {
                    "no calls".to_string()
                } else {
                    days.join(", ")
                },
            )?;
            const SHOWN: usize = 4;
            for span in number.binding.iter().take(SHOWN) {
                let limit = number
                    .limits
                    .value(&span.window)
                    .map(|v| format!(": {v}"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "      {}{limit} full {} to {}",
                    span.window,
                    short(span.from),
                    short(span.to)
                )?;
            }
            if number.binding.len() > SHOWN {
                writeln!(
                    out,
                    "      and {} more runs of full hours",
                    number.binding.len() - SHOWN
                )?;
            }
        }
        match self.advice.as_deref() {
            Some([]) => writeln!(
                out,
                "\ncapacity advice: none; no state with {} calls or more has too many from non-local numbers, and the list drained on its first day",
                FEWEST_CALLS
            )?,
            Some(advice) => {
                writeln!(
                    out,
                    "\ncapacity advice (each measured by simulating again):"
                )?;
                for advice in advice {
                    writeln!(out, "  {advice}")?;
                }
            }
            None => {}
        }
        Ok(())
    }
}
