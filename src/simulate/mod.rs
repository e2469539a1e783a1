//! `callroute simulate`: what these rules would do to this list. The engine's own decision
//! and usage path (`engine::decide`, `PoolState::record`) on a virtual clock, with the
//! account's pace and live-call limit, and calls that take simulated time with seeded
//! outcomes. Pure and deterministic: same rules, leads, options and seed, same report.
//!
//! Like the daemon, a lead is done once a call was placed for it (whatever the outcome);
//! deferred leads come back when their `until` is reached, held and rejected ones are
//! counted with their reasons. A lead listed twice is two attempts at one person: the
//! second meets the lead's attempt caps, as a redial does in the daemon.
//!
//! `run` collects tallies per hour; `report` turns them into what people read (text, JSON,
//! `html`); `advice` re-runs with synthetic numbers; `compare` runs two rule sets.

pub mod advice;
pub mod compare;
pub mod html;
pub mod report;
pub mod reputation;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;

use crate::engine::{Decision, PickedBy, decide, variant_name};
use crate::lead::Lead;
use crate::phone::E164;
use crate::rules::{RuleSet, Tier};
use crate::usage::{LimitWindow, PoolState};

pub use report::Report;

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
    /// Share of calls answered, for the caller IDs that answer differently.
    pub answer_rates: BTreeMap<E164, f64>,
    /// How long an answered call lasts.
    pub call_duration: Duration,
    /// How long an unanswered call rings.
    pub ring_duration: Duration,
    pub seed: u64,
    /// The share of a state's calls that may come from non-local numbers before capacity
    /// advice suggests more local ones.
    pub non_local_target: f64,
    /// Apply the rules' health policy (rest numbers whose answer rate falls), as the daemon
    /// does.
    pub health: bool,
    /// Carriers' labelling, modelled (`reputation`); `None`: answer rates never change.
    pub reputation: Option<reputation::Model>,
}

/// How long a short (hung-up) answered call lasts.
const SHORT_CALL: Duration = Duration::from_secs(4);

impl SimulateOptions {
    /// Where the hourly tallies start: the UTC hour the run starts in, so that an hour of
    /// the report is an hour of the clock.
    pub fn first_hour(&self) -> DateTime<Utc> {
        self.start
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(self.start)
    }

    /// Hours tallied: every clock hour the run touches.
    fn hours(&self) -> usize {
        self.days as usize * 24 + usize::from(self.first_hour() != self.start)
    }

    fn hour_of(&self, at: DateTime<Utc>) -> usize {
        let hour = (at - self.first_hour()).num_seconds().max(0) / 3600;
        (hour as usize).min(self.hours().saturating_sub(1))
    }
}

/// What became of one lead of the list.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Called {
        at: DateTime<Utc>,
        number: E164,
        tier: PickedBy,
    },
    /// Still waiting at the end, with the reason of its last deferral.
    Waiting(String),
    Held(String),
    Rejected(String),
}

/// Everything one run counted, by hour from the start; `report::Report::new` reads it.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub outcomes: Vec<Outcome>,
    pub answered: usize,
    pub decisions: usize,
    pub deferrals: BTreeMap<String, usize>,
    pub numbers: BTreeMap<E164, NumberTally>,
    pub states: BTreeMap<String, StateTally>,
    /// Leads still queued (not called, held nor rejected) at the start of each hour.
    pub queue_depth: Vec<usize>,
    /// Answered calls that were short (hang-ups).
    pub short: usize,
    /// Numbers labelled under the reputation model, and when.
    pub labelled: Vec<(E164, DateTime<Utc>)>,
    /// Rests the health policy started.
    pub rests: Vec<crate::health::Rest>,
    /// Each number's call instants, in order (to check every limit held).
    pub calls_at: BTreeMap<E164, Vec<DateTime<Utc>>>,
    /// Calls by the attempt they were of their lead (index 0: first attempts), and of those
    /// the answered ones: what each extra attempt of a cadence adds.
    pub calls_by_attempt: Vec<usize>,
    pub reached_by_attempt: Vec<usize>,
    /// Redials the campaigns' cadences scheduled.
    pub redials: usize,
}

#[derive(Debug, Clone, Default)]
pub struct NumberTally {
    pub calls_per_hour: Vec<u32>,
    /// Per hour, the windows (bits of `window_bit`) found full when the number was passed
    /// over.
    pub full_per_hour: Vec<u8>,
    pub full_windows: BTreeMap<&'static str, usize>,
}

#[derive(Debug, Clone, Default)]
pub struct StateTally {
    /// The zone hours of the day are shown in: the first lead's.
    pub zone: Option<Tz>,
    pub tiers: BTreeMap<String, usize>,
    pub calls_by_number: BTreeMap<E164, usize>,
    /// Calls from farther than the state, by the hour of day in `zone`.
    pub non_local_by_hour_of_day: [u32; 24],
    pub non_local: usize,
    pub non_local_by_area_code: BTreeMap<u16, usize>,
    /// When a call went to a non-local number: the local numbers passed over, and why.
    pub full_local: BTreeMap<(E164, &'static str), usize>,
}

impl StateTally {
    pub fn calls(&self) -> usize {
        self.tiers.values().sum()
    }
}

/// Calls found by a tier past the state are non-local. (A sticky number is whatever it was
/// when first picked; it is not counted again.)
pub fn is_non_local(tier: PickedBy) -> bool {
    matches!(tier, PickedBy::Timezone | PickedBy::Country | PickedBy::Any)
}

/// Why a lead that was due is still waiting at the end, when the account's attempts per
/// second or live calls kept it from being decided.
pub const ACCOUNT_AT_CAPACITY: &str = "account_at_capacity";

pub const WINDOWS: [LimitWindow; 6] = [
    LimitWindow::PerMinute,
    LimitWindow::PerHour,
    LimitWindow::Per24h,
    LimitWindow::PerDay,
    LimitWindow::MinGap,
    LimitWindow::MaxTotal,
];

pub fn window_bit(window: LimitWindow) -> u8 {
    1 << WINDOWS.iter().position(|w| *w == window).unwrap_or(0)
}

/// The seed of a lead's `attempt`-th call's answer: the run's own for first calls.
fn attempt_seed(seed: u64, attempt: u32) -> u64 {
    seed ^ u64::from(attempt - 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Runs the list through the rules and reports.
pub fn run(rules: &RuleSet, leads: &[Lead], options: &SimulateOptions) -> Report {
    Report::new(rules, leads, options, &tally(rules, leads, options))
}

/// Runs the list through the rules from `options.start` for `options.days`.
pub fn tally(rules: &RuleSet, leads: &[Lead], options: &SimulateOptions) -> Tally {
    let end = options.start + chrono::Duration::days(i64::from(options.days));
    let hours = options.hours();
    let mut pool = PoolState::new(options.seed);
    pool.attach_all(rules);
    let beat = Duration::from_secs_f64(1.0 / f64::from(options.caps.max(1)));
    let beat_chrono = chrono::Duration::from_std(beat).unwrap_or_default();
    let mut tally = Tally {
        outcomes: vec![Outcome::Waiting("not yet decided".to_string()); leads.len()],
        ..Tally::default()
    };
    let mut finished_per_hour = vec![0usize; hours + 1];
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
    let mut next_send = options.start;
    // Deferred leads get their own due instants, as in the daemon.
    let mut calendar = crate::schedule::DueCalendar::new(beat);
    let mut numbers: HashMap<E164, NumberTally> = HashMap::new();
    let mut reputations = reputation::Reputations::default();
    let mut histories: HashMap<E164, crate::health::History> = HashMap::new();
    let new_number = || NumberTally {
        calls_per_hour: vec![0; hours],
        full_per_hour: vec![0; hours],
        ..NumberTally::default()
    };
    while let Some(Reverse((due_at, index))) = due.pop() {
        // The lead waits for the account's pace and a live-call slot; leads behind it wait
        // behind it, so the instant it is decided never goes back.
        let mut at = due_at.max(next_send);
        while live.peek().is_some_and(|Reverse(ends)| *ends <= at) {
            live.pop();
        }
        if live.len() >= options.concurrency.max(1) as usize
            && let Some(Reverse(frees)) = live.pop()
        {
            at = at.max(frees);
        }
        if at >= end {
            if due_at < end {
                tally.outcomes[index] = Outcome::Waiting(ACCOUNT_AT_CAPACITY.to_string());
                for Reverse((due_at, index)) in due {
                    if due_at < end {
                        tally.outcomes[index] = Outcome::Waiting(ACCOUNT_AT_CAPACITY.to_string());
                    }
                }
            }
            break;
        }
        let lead = &leads[index];
        let hour = options.hour_of(at);
        let (decision, trace) = decide(rules, lead, &pool, at);
        tally.decisions += 1;
        for excluded in &trace.excluded {
            if excluded.windows.is_empty() {
                continue;
            }
            let number = numbers.entry(excluded.number).or_insert_with(new_number);
            for window in &excluded.windows {
                number.full_per_hour[hour] |= window_bit(*window);
                *number.full_windows.entry(window.name()).or_default() += 1;
            }
        }
        let outcome = match decision {
            Decision::Dial {
                from_phone_number,
                tier,
                ..
            } => {
                pool.record(from_phone_number, lead, at);
                let attempt = pool.lead_history(&lead.key).map_or(1, |h| h.total()).max(1);
                next_send = at + beat_chrono;
                let answer_rate = options
                    .answer_rates
                    .get(&from_phone_number)
                    .copied()
                    .unwrap_or(options.answer_rate);
                let (answered, short) = match &options.reputation {
                    Some(model) => {
                        let zone = rules
                            .number(from_phone_number)
                            .map_or(chrono_tz::UTC, |n| n.day_zone);
                        let call = reputations.call(
                            model,
                            options.seed,
                            from_phone_number,
                            at,
                            zone,
                            answer_rate,
                        );
                        (call.answered, call.short)
                    }
                    // Each attempt of a lead answers or not on its own draw (the first on
                    // the draw of runs without cadences).
                    None => (
                        draw(attempt_seed(options.seed, attempt), index) < answer_rate,
                        false,
                    ),
                };
                let duration = match (answered, short) {
                    (true, false) => options.call_duration,
                    (true, true) => SHORT_CALL,
                    (false, _) => options.ring_duration,
                };
                tally.short += usize::from(short);
                tally
                    .calls_at
                    .entry(from_phone_number)
                    .or_default()
                    .push(at);
                if options.health {
                    let outcome = match (answered, short) {
                        (true, false) => crate::health::Outcome::Answered,
                        (true, true) => crate::health::Outcome::Short,
                        (false, _) => crate::health::Outcome::NoAnswer,
                    };
                    // Known at once here (drawn when dialled); the daemon learns it when
                    // the call ends, a few minutes later.
                    histories
                        .entry(from_phone_number)
                        .or_default()
                        .push(at, outcome);
                    rest_numbers(rules, &mut histories, &mut pool, &mut tally, at);
                }
                let ends = at + chrono::Duration::from_std(duration).unwrap_or_default();
                live.push(Reverse(ends));
                tally.answered += usize::from(answered);
                let slot = attempt as usize - 1;
                if tally.calls_by_attempt.len() <= slot {
                    tally.calls_by_attempt.resize(slot + 1, 0);
                    tally.reached_by_attempt.resize(slot + 1, 0);
                }
                tally.calls_by_attempt[slot] += 1;
                tally.reached_by_attempt[slot] += usize::from(answered);
                numbers
                    .entry(from_phone_number)
                    .or_insert_with(new_number)
                    .calls_per_hour[hour] += 1;
                count_presence(&mut tally, lead, from_phone_number, tier, &trace, at);
                // An unanswered call is redialed as its campaign's cadence says (the model
                // does not tell busy from no answer: both are `no-answer` here).
                let redial = rules
                    .campaign(&lead.campaign)
                    .and_then(|c| c.cadence_for(crate::engine::route_of(c, lead)))
                    .filter(|_| !answered)
                    .and_then(|c| c.next(attempt, "no-answer", &serde_json::Value::Null, ends));
                if let Some(redial) = redial {
                    tally.redials += 1;
                    tally.outcomes[index] = Outcome::Waiting("cadence".to_string());
                    due.push(Reverse((calendar.take(redial.due_at, at), index)));
                    continue;
                }
                Outcome::Called {
                    at,
                    number: from_phone_number,
                    tier,
                }
            }
            Decision::Defer { until, reason } => {
                let code = variant_name(&reason.code);
                *tally.deferrals.entry(code.clone()).or_default() += 1;
                tally.outcomes[index] = Outcome::Waiting(code);
                let until = calendar.take(until.max(at + chrono::Duration::milliseconds(1)), at);
                due.push(Reverse((until, index)));
                continue;
            }
            Decision::Hold { reason } => Outcome::Held(reason.message),
            Decision::Reject { reason } => Outcome::Rejected(reason.message),
        };
        tally.outcomes[index] = outcome;
        finished_per_hour[hour + 1] += 1;
    }
    let mut queued = leads.len();
    tally.queue_depth = (0..hours)
        .map(|hour| {
            queued -= finished_per_hour[hour];
            queued
        })
        .collect();
    tally.numbers = numbers.into_iter().collect();
    tally.labelled = reputations.labelled;
    tally
}

/// The health policy's rests, started the moment an outcome calls for one.
fn rest_numbers(
    rules: &RuleSet,
    histories: &mut HashMap<E164, crate::health::History>,
    pool: &mut PoolState,
    tally: &mut Tally,
    at: DateTime<Utc>,
) {
    let pools: Vec<crate::health::Pool> = rules
        .agents()
        .map(|a| crate::health::Pool {
            agent: &a.name,
            numbers: rules.numbers_for_agent(&a.model_id),
        })
        .collect();
    let new = crate::health::evaluate(
        &pools,
        |n| rules.health_policy(n),
        histories,
        pool.rests(),
        at,
    );
    if new.is_empty() {
        return;
    }
    let mut rests: Vec<crate::health::Rest> = pool
        .rests()
        .values()
        .filter(|r| r.until > at)
        .cloned()
        .collect();
    rests.extend(new.iter().cloned());
    for rest in &new {
        histories
            .entry(rest.number)
            .or_default()
            .judge_from(rest.since);
    }
    pool.set_rests(rests);
    tally.rests.extend(new);
}

fn count_presence(
    tally: &mut Tally,
    lead: &Lead,
    number: E164,
    tier: PickedBy,
    trace: &crate::engine::Trace,
    at: DateTime<Utc>,
) {
    let state_name = lead.states.first().map_or("-", String::as_str);
    let state = match tally.states.get_mut(state_name) {
        Some(state) => state,
        None => tally
            .states
            .entry(state_name.to_string())
            .or_insert_with(|| StateTally {
                zone: lead.zones.first().copied(),
                ..StateTally::default()
            }),
    };
    *state.tiers.entry(variant_name(&tier)).or_default() += 1;
    *state.calls_by_number.entry(number).or_default() += 1;
    if !is_non_local(tier) {
        return;
    }
    let hour = match state.zone {
        Some(zone) => at.with_timezone(&zone).hour(),
        None => at.hour(),
    };
    state.non_local_by_hour_of_day[hour as usize] += 1;
    state.non_local += 1;
    if let Some(code) = lead.area_code {
        *state.non_local_by_area_code.entry(code).or_default() += 1;
    }
    for excluded in &trace.excluded {
        if matches!(excluded.tier, Tier::AreaCode | Tier::State) {
            for window in &excluded.windows {
                *state
                    .full_local
                    .entry((excluded.number, window.name()))
                    .or_default() += 1;
            }
        }
    }
}

/// A draw in [0, 1) from the seed and the lead: the same lead answers the same way in every
/// run (and under every rule set compared).
fn draw(seed: u64, index: usize) -> f64 {
    let hash = xxhash_rust::xxh3::xxh3_64_with_seed(&(index as u64).to_le_bytes(), seed);
    (hash >> 11) as f64 / (1u64 << 53) as f64
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

    pub(super) fn rules_from(text: &str) -> RuleSet {
        crate::rules::compile_sources(&[(Path::new("r.yaml"), text)])
            .0
            .unwrap()
    }

    fn rules() -> RuleSet {
        rules_from(RULES)
    }

    pub(super) fn leads(n: usize) -> Vec<Lead> {
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

    pub(super) fn options(days: u32) -> SimulateOptions {
        SimulateOptions {
            // Monday 2026-11-30 08:00 in San Francisco.
            start: DateTime::parse_from_rfc3339("2026-11-30T16:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            days,
            caps: 1,
            concurrency: 5,
            answer_rate: 0.5,
            answer_rates: BTreeMap::new(),
            call_duration: Duration::from_secs(120),
            ring_duration: Duration::from_secs(30),
            seed: 7,
            non_local_target: 0.2,
            health: false,
            reputation: None,
        }
    }

    #[test]
    fn the_limits_decide_how_fast_the_list_drains() {
        // Two numbers at 2 calls an hour, 8 calling hours a weekday: 32 calls a day.
        let report = run(&rules(), &leads(40), &options(1));
        assert_eq!(report.called, 32, "{report}");
        assert_eq!(report.waiting_total(), 8);
        // The last of them were passed over at the end of Monday's window.
        assert!(
            report.waiting.contains_key("all_numbers_at_limit"),
            "{report}"
        );
        let sf = &report.numbers[1];
        assert_eq!(sf.number, "+14155550100");
        assert!(sf.full_windows["per_hour"] > 0);
        assert_eq!(sf.calls_per_hour.iter().max(), Some(&2));
        assert_eq!(sf.hourly_capacity, Some(2));
        // The queue shrinks over the day and stops at the 8 left.
        assert_eq!(report.queue_depth[0], 40);
        assert_eq!(report.queue_depth[23], 8);
        // Local first: the San Francisco number, then the fallback.
        let ca = &report.states[0];
        assert_eq!((ca.tiers["area_code"], ca.tiers["any"]), (16, 16));
        let two_days = run(&rules(), &leads(40), &options(2));
        assert_eq!(two_days.called, 40);
        assert!(two_days.drained_at.is_some());
    }

    /// A cadence reaches more of the list: each extra attempt adds reached leads, fewer
    /// than the one before, and every redial is a call the rules allowed.
    #[test]
    fn a_cadence_reaches_more_leads_and_says_what_each_attempt_adds() {
        let with_cadence = RULES.replace(
            "    agent: a\n",
            "    agent: a\n    cadence: { redial_on: [no-answer], delays: [2h], max_attempts: 3 }\n",
        );
        let leads = leads(40);
        let mut options = options(3);
        options.answer_rate = 0.4;
        let once = run(&rules(), &leads, &options);
        let redialed = run(&rules_from(&with_cadence), &leads, &options);
        assert_eq!(once.redials, 0);
        assert_eq!(once.by_attempt.len(), 1);
        assert!(redialed.redials > 0, "{redialed}");
        assert_eq!(redialed.by_attempt.len(), 3, "{redialed}");
        let reached = |r: &Report| r.by_attempt.iter().map(|a| a.reached).sum::<usize>();
        assert_eq!(reached(&once), once.answered);
        assert!(
            reached(&redialed) > reached(&once),
            "{} vs {}",
            reached(&redialed),
            reached(&once)
        );
        let [first, second, third] = [0, 1, 2].map(|i| redialed.by_attempt[i].reached);
        assert!(
            first > second && second >= third,
            "{:?}",
            redialed.by_attempt
        );
        assert_eq!(redialed.limit_violations, 0);
        assert!(redialed.to_string().contains("cadence: "), "{redialed}");
        // A route's own cadence replaces the campaign's: here the route allows 2 attempts.
        let route_own = with_cadence.replace(
            "      - numbers: all\n",
            "      - numbers: all\n        cadence: { redial_on: [no-answer], delays: [2h], max_attempts: 2 }\n",
        );
        let by_route = run(&rules_from(&route_own), &leads, &options);
        assert_eq!(by_route.by_attempt.len(), 2, "{by_route}");
    }

    #[test]
    fn a_binding_window_is_reported_with_its_hours_and_its_cause() {
        let report = run(&rules(), &leads(40), &options(1));
        let sf = &report.numbers[1];
        // Full from the window's opening (09:00 in San Francisco, 17:00Z) to its close
        // (01:00Z): each hour both calls are made early, then it is passed over.
        let first = &sf.binding[0];
        assert_eq!(first.window, "per_hour");
        assert_eq!(
            first.from,
            DateTime::parse_from_rfc3339("2026-11-30T17:00:00Z").unwrap()
        );
        assert_eq!(
            first.to,
            DateTime::parse_from_rfc3339("2026-12-01T01:00:00Z").unwrap()
        );
        let ca = &report.states[0];
        assert_eq!(ca.non_local, 16);
        assert_eq!(ca.non_local_hours, "09:00–17:00");
        assert_eq!(ca.zone, "America/Los_Angeles");
        assert_eq!(
            ca.cause.as_deref(),
            Some("the 1 local number (+14155550100) hit `per_hour: 2`")
        );
        let text = report.to_string();
        assert!(
            text.contains("CA: 50% from non-local numbers 09:00–17:00 (America/Los_Angeles) because the 1 local number (+14155550100) hit `per_hour: 2`"),
            "{text}"
        );
        assert!(
            text.contains("per_hour: 2 full 11-30 17:00 to 12-01 01:00"),
            "{text}"
        );
    }

    #[test]
    fn advice_is_measured_by_running_again_with_more_local_numbers() {
        let leads = leads(40);
        let options = options(1);
        let base = tally(&rules(), &leads, &options);
        let report = Report::new(&rules(), &leads, &options, &base);
        let advice = advice::advise(&rules(), &leads, &options, &base, &report);
        // Half of CA's calls are non-local. While leads are due, the fallback takes its 2
        // calls every hour, so under 20% takes 5 local numbers: 10 local calls an hour to
        // its 2. One and two more were tried and measured short of it.
        let local = &advice[0];
        assert_eq!(local.goal, "CA under 20% of calls from non-local numbers");
        assert_eq!(
            local.change,
            "4 more numbers in area code 415 (like +14155550100)"
        );
        assert_eq!(
            (local.before.as_str(), local.after.as_str()),
            ("50%", "15%")
        );
        assert_eq!(local.verdict, report::Verdict::Reached);
        // The queue did not drain in the day: more numbers like the full ones drain it.
        let drain = &advice[1];
        assert_eq!(drain.goal, "drain the list within 1 days");
        assert_eq!(drain.verdict, report::Verdict::Reached, "{drain}");
        assert!(drain.after.starts_with("drained 2026-11-30"), "{drain}");
    }

    #[test]
    fn advice_says_when_numbers_are_not_what_holds_the_list_back() {
        // Unlimited numbers: the account's pace and the calling hours decide.
        let open = RULES.replace("per_hour: 2", "per_24h: 1000");
        let mut options = options(1);
        options.caps = 1;
        options.concurrency = 1;
        options.call_duration = Duration::from_secs(3600);
        options.answer_rate = 1.0;
        let leads = leads(20);
        let base = tally(&rules_from(&open), &leads, &options);
        let report = Report::new(&rules_from(&open), &leads, &options, &base);
        let advice = advice::advise(&rules_from(&open), &leads, &options, &base, &report);
        let drain = advice.last().unwrap();
        assert_eq!(drain.verdict, report::Verdict::NotTried);
        assert!(
            drain.change.starts_with("more numbers would not help"),
            "{drain}"
        );
    }

    #[test]
    fn the_same_inputs_give_the_same_report() {
        let a = run(&rules(), &leads(30), &options(2));
        let b = run(&rules(), &leads(30), &options(2));
        assert_eq!(a.to_string(), b.to_string());
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        assert_eq!(html::render(&a), html::render(&b));
    }

    #[test]
    fn a_number_can_answer_worse_than_the_rest() {
        let mut options = options(2);
        options.answer_rate = 1.0;
        options
            .answer_rates
            .insert("+12125550107".parse().unwrap(), 0.0);
        let tally = tally(&rules(), &leads(40), &options);
        let from_ny = tally
            .outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Called { number, .. } if number.to_string() == "+12125550107"))
            .count();
        assert_eq!(from_ny, 20);
        assert_eq!(tally.answered, 20);
    }

    #[test]
    fn compare_lists_the_leads_a_rule_change_moves() {
        let leads = leads(40);
        let same = compare::compare(&rules(), &rules(), &leads, &options(1));
        assert_eq!(same.unchanged, 40);
        assert!(same.changes.is_empty());
        // Twice the hourly limit: every lead called on Monday, the 8 waiting ones included.
        let looser = rules_from(&RULES.replace("per_hour: 2", "per_hour: 4"));
        let diff = compare::compare(&rules(), &looser, &leads, &options(1));
        assert_eq!(diff.changed["outcome"], 8);
        let moved = diff.changes.iter().find(|c| c.what == ["outcome"]).unwrap();
        assert!(moved.before.starts_with("waiting (all_numbers_at_limit)"));
        assert!(moved.after.starts_with("called 11-30"));
        let text = diff.to_string();
        assert!(text.contains("called 32 → 40"), "{text}");
    }

    #[test]
    fn the_page_stands_alone_and_escapes_what_it_shows() {
        let mut report = run(&rules(), &leads(40), &options(1));
        report
            .held
            .insert("route `<script>` has no number".to_string(), 1);
        let page = html::render(&report);
        for id in [
            "calls-per-hour",
            "queue-depth",
            "heat-map",
            "tier-mix",
            "deferrals",
        ] {
            assert!(page.contains(&format!(r#"<svg id="{id}""#)), "{id}");
        }
        // Nothing fetched: no links, sources or stylesheets beyond the SVG namespace.
        let outside = page.replace(r#"xmlns="http://www.w3.org/2000/svg""#, "");
        for fetch in ["http://", "https://", "src=", "href=", "@import", "url("] {
            assert!(!outside.contains(fetch), "{fetch}");
        }
        assert!(page.contains("route `&lt;script&gt;` has no number"));
        assert!(!page.contains("<script>` has"));
        // Full hours are ringed with their window and limit.
        assert!(page.contains(r#"class="full"><title>+14155550100 11-30 17:00: 2 calls of 2/h; full: per_hour: 2</title>"#));
    }
}
