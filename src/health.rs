//! Number health: what a caller ID's recent calls say about it, and which numbers to rest.
//! Pure (no I/O, no clock): the daemon feeds it outcomes from its ledger, `simulate` from its
//! own seeded calls, and both act on the rests it returns.
//!
//! Carriers' analytics label a number from how it calls (volume, short calls, answer rate);
//! the label shows as a falling answer rate, days before anyone notices. A number whose rate
//! falls well under its pool's median is rested (skipped by the engine, optionally detached)
//! for a while, but never so many at once that the pool cannot serve.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::phone::E164;

/// How one ended call counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Completed and lasted at least `short_call`.
    Answered,
    /// Completed, but shorter than `short_call`: a hang-up, which carriers count against
    /// the number.
    Short,
    NoAnswer,
    Busy,
    Failed,
}

impl Outcome {
    /// `status` as Synthflow reports it, and how long the call lasted.
    pub fn of(status: &str, duration: Option<Duration>, short_call: Duration) -> Outcome {
        match status {
            "completed" if duration.is_none_or(|d| d >= short_call) => Outcome::Answered,
            "completed" => Outcome::Short,
            "busy" => Outcome::Busy,
            "failed" | "spam" => Outcome::Failed,
            // no-answer, voicemail, canceled: nobody talked to the agent.
            _ => Outcome::NoAnswer,
        }
    }
}

/// Counts of ended calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub placed: u32,
    pub answered: u32,
    pub short: u32,
    pub no_answer: u32,
    pub busy: u32,
    pub failed: u32,
}

impl Counts {
    pub fn add(&mut self, outcome: Outcome) {
        self.placed += 1;
        match outcome {
            Outcome::Answered => self.answered += 1,
            Outcome::Short => self.short += 1,
            Outcome::NoAnswer => self.no_answer += 1,
            Outcome::Busy => self.busy += 1,
            Outcome::Failed => self.failed += 1,
        }
    }

    pub fn answer_rate(&self) -> Option<f64> {
        (self.placed > 0).then(|| f64::from(self.answered) / f64::from(self.placed))
    }
}

/// A number's recent calls, oldest first: enough to count its last N and its last 24 h.
#[derive(Debug, Clone, Default)]
pub struct History {
    calls: std::collections::VecDeque<(DateTime<Utc>, Outcome)>,
    /// Calls before this are not judged: the number was rested then, and a rested number is
    /// judged again only on calls placed after its rest began (so after it ended, or after a
    /// resume), never on the ones it was rested for.
    judge_from: Option<DateTime<Utc>>,
}

/// Calls kept per number: more than any `last_calls` a policy may ask for.
pub const KEPT_CALLS: usize = 1_000;

impl History {
    pub fn push(&mut self, at: DateTime<Utc>, outcome: Outcome) {
        if self.calls.len() == KEPT_CALLS {
            self.calls.pop_front();
        }
        self.calls.push_back((at, outcome));
    }

    /// Counts over the last `n` calls (what the status shows, rested or not).
    pub fn last(&self, n: usize) -> Counts {
        let mut counts = Counts::default();
        for (_, outcome) in self.calls.iter().rev().take(n) {
            counts.add(*outcome);
        }
        counts
    }

    /// Counts over the last `n` calls judged (those after `judge_from`): what the policy
    /// decides on.
    pub fn judged(&self, n: usize) -> Counts {
        let mut counts = Counts::default();
        let judged = |at: &DateTime<Utc>| self.judge_from.is_none_or(|from| *at > from);
        for (_, outcome) in self
            .calls
            .iter()
            .rev()
            .take(n)
            .take_while(|(at, _)| judged(at))
        {
            counts.add(*outcome);
        }
        counts
    }

    /// The number was rested at `since`: only calls after it count from now on (`min_calls`
    /// fresh ones before it can be judged again). Later rests move it forward.
    pub fn judge_from(&mut self, since: DateTime<Utc>) {
        self.judge_from = self.judge_from.max(Some(since));
    }

    /// Counts over the calls that ended after `since`.
    pub fn since(&self, since: DateTime<Utc>) -> Counts {
        let mut counts = Counts::default();
        for (_, outcome) in self.calls.iter().rev().take_while(|(at, _)| *at > since) {
            counts.add(*outcome);
        }
        counts
    }
}

/// When a number is rested automatically, and how.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    /// Rest when the answer rate over the last `last_calls` is below this share of the
    /// pool's median...
    pub answer_rate_below: f64,
    /// ...and at least this many calls were counted.
    pub min_calls: u32,
    pub last_calls: u32,
    pub rest_for: Duration,
    /// A completed call shorter than this counts as short, not answered.
    pub short_call: Duration,
    /// The most of an agent's pool that may rest at once (a share).
    pub max_resting: f64,
    /// Detach the number from the agent while it rests (Synthflow's own selection cannot
    /// use it either), attach it again after.
    pub detach_while_resting: bool,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            answer_rate_below: 0.5,
            min_calls: 40,
            last_calls: 50,
            rest_for: Duration::from_secs(72 * 3600),
            short_call: Duration::from_secs(10),
            max_resting: 0.3,
            detach_while_resting: false,
        }
    }
}

/// Why and until when a number rests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rest {
    pub number: E164,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub reason: String,
    /// `auto` (this policy) or `manual` (`callroute numbers rest`).
    pub source: String,
}

/// An agent's pool as health sees it.
pub struct Pool<'a> {
    pub agent: &'a str,
    pub numbers: &'a [E164],
}

/// The rests to start now: in each pool, the numbers whose answer rate over their last calls
/// is under their policy's share of the pool's median, worst first, up to the pool's
/// `max_resting` (counting the numbers already resting).
pub fn evaluate<'p>(
    pools: &[Pool<'_>],
    policy_of: impl Fn(E164) -> &'p Policy,
    histories: &HashMap<E164, History>,
    resting: &BTreeMap<E164, Rest>,
    now: DateTime<Utc>,
) -> Vec<Rest> {
    let mut rests: Vec<Rest> = Vec::new();
    for pool in pools {
        let counted = count_last(pool.numbers, &policy_of, histories);
        // The pool's median as the reason says: over the numbers in service (resting ones
        // are not the pool a number is compared with), each over its judged calls.
        let in_service: Vec<_> = counted
            .iter()
            .filter(|(n, _, _)| resting.get(n).is_none_or(|r| r.until <= now))
            .cloned()
            .collect();
        let Some(median) = pool_median(&in_service) else {
            continue;
        };
        let already = pool
            .numbers
            .iter()
            .filter(|n| {
                resting.get(n).is_some_and(|r| r.until > now)
                    || rests.iter().any(|r| r.number == **n)
            })
            .count();
        let mut candidates: Vec<(E164, Counts, &Policy, f64)> = counted
            .into_iter()
            .filter(|(n, _, _)| resting.get(n).is_none_or(|r| r.until <= now))
            .filter(|(n, _, _)| !rests.iter().any(|r| r.number == *n))
            .filter_map(|(n, counts, policy)| {
                let rate = counts.answer_rate()?;
                (counts.placed >= policy.min_calls && rate < policy.answer_rate_below * median)
                    .then_some((n, counts, policy, rate))
            })
            .collect();
        candidates.sort_by(|a, b| a.3.total_cmp(&b.3).then(a.0.cmp(&b.0)));
        for (number, counts, policy, rate) in candidates {
            let allowed = (policy.max_resting * pool.numbers.len() as f64).floor() as usize;
            if already
                + rests
                    .iter()
                    .filter(|r| pool.numbers.contains(&r.number))
                    .count()
                >= allowed
            {
                break;
            }
            rests.push(Rest {
                number,
                since: now,
                until: now
                    + chrono::Duration::from_std(policy.rest_for)
                        .unwrap_or(chrono::Duration::days(3)),
                reason: format!(
                    "answer rate {:.0}% over its last {} calls, pool median {:.0}% (agent `{}`)",
                    rate * 100.0,
                    counts.placed,
                    median * 100.0,
                    pool.agent
                ),
                source: "auto".to_string(),
            });
        }
    }
    rests
}

/// The median answer rate of the numbers with enough calls to count.
fn pool_median(counted: &[(E164, Counts, &Policy)]) -> Option<f64> {
    let mut rates: Vec<f64> = counted
        .iter()
        .filter(|(_, counts, policy)| counts.placed >= policy.min_calls)
        .filter_map(|(_, counts, _)| counts.answer_rate())
        .collect();
    median(&mut rates)
}

/// The median answer rate of `numbers` over their policies' last calls (numbers with fewer
/// than `min_calls` left out), as `evaluate` compares against.
pub fn median_of<'p>(
    numbers: &[E164],
    policy_of: impl Fn(E164) -> &'p Policy,
    histories: &HashMap<E164, History>,
) -> Option<f64> {
    pool_median(&count_last(numbers, &policy_of, histories))
}

/// Each number's counts over its policy's last calls, with that policy.
fn count_last<'p>(
    numbers: &[E164],
    policy_of: &impl Fn(E164) -> &'p Policy,
    histories: &HashMap<E164, History>,
) -> Vec<(E164, Counts, &'p Policy)> {
    numbers
        .iter()
        .map(|n| {
            let policy = policy_of(*n);
            let counts = histories
                .get(n)
                .map(|h| h.judged(policy.last_calls as usize))
                .unwrap_or_default();
            (*n, counts, policy)
        })
        .collect()
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    })
}

/// How fast a number new to the pool may ramp up: a daily cap growing from `from` to `to`
/// over `days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Warmup {
    pub from: u32,
    pub to: u32,
    pub days: u32,
}

impl Warmup {
    /// The cap on day `day` (0 = the first day of use), or `None` once warmed up.
    pub fn cap(&self, day: i64) -> Option<u32> {
        if day < 0 || day >= i64::from(self.days) {
            return None;
        }
        let span = f64::from(self.to.saturating_sub(self.from));
        let step = span * day as f64 / f64::from(self.days.max(1));
        Some(self.from + step.round() as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z")
            .unwrap()
            .to_utc()
            + chrono::Duration::hours(hours)
    }

    fn number(i: u64) -> E164 {
        format!("+1415555{:04}", 100 + i).parse().unwrap()
    }

    /// `answered` of `calls` answered, the rest no-answer.
    fn history(calls: u32, answered: u32) -> History {
        let mut history = History::default();
        for i in 0..calls {
            let outcome = if i < answered {
                Outcome::Answered
            } else {
                Outcome::NoAnswer
            };
            history.push(at(0), outcome);
        }
        history
    }

    #[test]
    fn a_short_completed_call_is_not_an_answer() {
        let short = Duration::from_secs(10);
        assert_eq!(
            Outcome::of("completed", Some(Duration::from_secs(4)), short),
            Outcome::Short
        );
        assert_eq!(
            Outcome::of("completed", Some(Duration::from_secs(40)), short),
            Outcome::Answered
        );
        assert_eq!(
            Outcome::of("left_voicemail", None, short),
            Outcome::NoAnswer
        );
        assert_eq!(Outcome::of("busy", None, short), Outcome::Busy);
    }

    #[test]
    fn the_worst_numbers_rest_but_never_more_than_the_pool_can_spare() {
        let numbers: Vec<E164> = (0..10).map(number).collect();
        // Eight numbers answer 30%, two answer 5% and 10%: both are under half the median.
        let mut histories = HashMap::new();
        for (i, n) in numbers.iter().enumerate() {
            let answered = match i {
                0 => 3,
                1 => 5,
                _ => 15,
            };
            histories.insert(*n, history(50, answered));
        }
        let policy = Policy::default();
        let pools = [Pool {
            agent: "a",
            numbers: &numbers,
        }];
        let rests = evaluate(&pools, |_| &policy, &histories, &BTreeMap::new(), at(1));
        assert_eq!(rests.len(), 2);
        assert_eq!(rests[0].number, numbers[0]);
        assert_eq!(
            rests[0].reason,
            "answer rate 6% over its last 50 calls, pool median 30% (agent `a`)"
        );
        assert_eq!(rests[0].until, at(1 + 72));
        // With 2 of 10 resting already and 30% allowed, only one more may rest.
        let mut resting = BTreeMap::new();
        for n in &numbers[2..4] {
            resting.insert(
                *n,
                Rest {
                    number: *n,
                    since: at(0),
                    until: at(10),
                    reason: "manual".into(),
                    source: "manual".into(),
                },
            );
        }
        let rests = evaluate(&pools, |_| &policy, &histories, &resting, at(1));
        assert_eq!(rests.len(), 1);
        assert_eq!(rests[0].number, numbers[0]);
    }

    #[test]
    fn a_number_back_from_rest_is_judged_only_on_calls_after_its_rest() {
        let numbers: Vec<E164> = (0..10).map(number).collect();
        let mut histories = HashMap::new();
        for (i, n) in numbers.iter().enumerate() {
            histories.insert(*n, history(50, if i == 0 { 2 } else { 15 }));
        }
        let policy = Policy::default();
        let pools = [Pool {
            agent: "a",
            numbers: &numbers,
        }];
        let rests = evaluate(&pools, |_| &policy, &histories, &BTreeMap::new(), at(1));
        assert_eq!(rests.len(), 1);
        let rest = rests[0].clone();
        histories
            .get_mut(&numbers[0])
            .unwrap()
            .judge_from(rest.since);
        // The rest is over: its 50 bad calls no longer count, and nothing new is known.
        let after = rest.until + chrono::Duration::milliseconds(5);
        assert!(evaluate(&pools, |_| &policy, &histories, &BTreeMap::new(), after).is_empty());
        // 39 fresh calls, all unanswered: still under `min_calls` (40).
        let back = histories.get_mut(&numbers[0]).unwrap();
        for _ in 0..39 {
            back.push(after, Outcome::NoAnswer);
        }
        assert_eq!(back.judged(50).placed, 39, "only the fresh calls count");
        assert_eq!(
            back.last(50).placed,
            50,
            "the status still shows the last 50"
        );
        assert!(evaluate(&pools, |_| &policy, &histories, &BTreeMap::new(), after).is_empty());
        // The 40th fresh one is judged, against the median of the numbers in service.
        histories
            .get_mut(&numbers[0])
            .unwrap()
            .push(after, Outcome::NoAnswer);
        let again = evaluate(&pools, |_| &policy, &histories, &BTreeMap::new(), after);
        assert_eq!(again.len(), 1);
        assert!(
            again[0]
                .reason
                .contains("over its last 40 calls, pool median 30%"),
            "{}",
            again[0].reason
        );
    }

    #[test]
    fn too_few_calls_say_nothing() {
        let numbers: Vec<E164> = (0..4).map(number).collect();
        let mut histories = HashMap::new();
        histories.insert(numbers[0], history(39, 0));
        for n in &numbers[1..] {
            histories.insert(*n, history(50, 20));
        }
        let policy = Policy {
            max_resting: 1.0,
            ..Policy::default()
        };
        let pools = [Pool {
            agent: "a",
            numbers: &numbers,
        }];
        assert!(evaluate(&pools, |_| &policy, &histories, &BTreeMap::new(), at(1)).is_empty());
    }

    #[test]
    fn warm_up_grows_the_daily_cap_then_ends() {
        let warmup = Warmup {
            from: 20,
            to: 150,
            days: 14,
        };
        assert_eq!(warmup.cap(0), Some(20));
        assert_eq!(warmup.cap(7), Some(85));
        assert_eq!(warmup.cap(13), Some(141));
        assert_eq!(warmup.cap(14), None);
    }
}
