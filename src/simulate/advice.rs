//! Capacity advice, measured rather than guessed: the list is simulated again with
//! synthetic numbers added (copies of a number already in the rules, in the area code that
//! needs them) until the goal is met or more numbers stop making sense.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::report::{Advice, FEWEST_CALLS, Report, Verdict, percent};
use super::{SimulateOptions, Tally, tally};
use crate::lead::Lead;
use crate::phone::E164;
use crate::rules::RuleSet;

/// How many states get local-presence advice, and the most numbers tried for one.
const STATES_ADVISED: usize = 3;
const MOST_LOCAL_NUMBERS: usize = 16;

/// Advice for `report` (the run of `rules` over `leads`), by running again.
pub fn advise(
    rules: &RuleSet,
    leads: &[Lead],
    options: &SimulateOptions,
    base: &Tally,
    report: &Report,
) -> Vec<Advice> {
    let (mut advice, drain) = std::thread::scope(|scope| {
        let drain = scope.spawn(|| drain_sooner(rules, leads, options, report));
        let local = local_presence(rules, leads, options, base);
        (local, drain.join().ok().flatten())
    });
    advice.extend(drain);
    advice
}

fn local_presence(
    rules: &RuleSet,
    leads: &[Lead],
    options: &SimulateOptions,
    base: &Tally,
) -> Vec<Advice> {
    let target = options.non_local_target;
    let mut states: Vec<(&String, &super::StateTally)> = base
        .states
        .iter()
        .filter(|(name, state)| {
            name.as_str() != "-"
                && state.calls() >= FEWEST_CALLS
                && state.non_local as f64 > target * state.calls() as f64
        })
        .collect();
    states.sort_by_key(|(name, state)| (std::cmp::Reverse(state.non_local), *name));
    states.truncate(STATES_ADVISED);
    // Each state's runs are independent of the others': one thread each.
    std::thread::scope(|scope| {
        let runs: Vec<_> = states
            .into_iter()
            .map(|(name, state)| {
                scope.spawn(move || advise_state(rules, leads, options, name, state))
            })
            .collect();
        runs.into_iter()
            .filter_map(|run| run.join().ok().flatten())
            .collect()
    })
}

/// More numbers in the state's area code with the most non-local calls, from an estimate
/// (the calls a local number carries now) doubled until the state's share is met.
fn advise_state(
    rules: &RuleSet,
    leads: &[Lead],
    options: &SimulateOptions,
    name: &str,
    state: &super::StateTally,
) -> Option<Advice> {
    let target = options.non_local_target;
    let (&area_code, _) = state
        .non_local_by_area_code
        .iter()
        .max_by_key(|(code, n)| (**n, std::cmp::Reverse(**code)))?;
    let like = model_number(rules, area_code, name, state)?;
    let local_numbers = state
        .calls_by_number
        .keys()
        .filter(|n| {
            rules.number(**n).is_some_and(|n| {
                n.region.area_code == Some(area_code) || n.region.states.iter().any(|s| s == name)
            })
        })
        .count();
    let per_number = match local_numbers {
        0 => state.calls() / state.calls_by_number.len().max(1),
        n => (state.calls() - state.non_local) / n,
    };
    let excess = state.non_local - (target * state.calls() as f64) as usize;
    let mut count = excess
        .div_ceil(per_number.max(1))
        .clamp(1, MOST_LOCAL_NUMBERS);
    let (after, reached) = loop {
        let added = synthetic_numbers(rules, area_code, count);
        let additions: Vec<(E164, E164)> = added.iter().map(|n| (*n, like)).collect();
        let again = tally(&rules.with_numbers_like(&additions), leads, options);
        let (non_local, calls) = again
            .states
            .get(name)
            .map_or((0, 1), |s| (s.non_local, s.calls()));
        let reached = non_local as f64 <= target * calls as f64;
        if reached || count >= MOST_LOCAL_NUMBERS {
            break (percent(non_local, calls), reached);
        }
        count = (count * 2).min(MOST_LOCAL_NUMBERS);
    };
    Some(Advice {
        goal: format!(
            "{name} under {} of calls from non-local numbers",
            percent((target * 100.0).round() as usize, 100)
        ),
        change: format!(
            "{count} more number{} in area code {area_code} (like {like})",
            if count == 1 { "" } else { "s" }
        ),
        before: percent(state.non_local, state.calls()),
        after,
        verdict: if reached {
            Verdict::Reached
        } else {
            Verdict::NotReached
        },
    })
}

/// The number a synthetic one in `area_code` copies: of the numbers that called the
/// state's leads (so in the routes that serve them), one in that area code, else one in the
/// state, else the busiest.
fn model_number(
    rules: &RuleSet,
    area_code: u16,
    state: &str,
    tally: &super::StateTally,
) -> Option<E164> {
    tally
        .calls_by_number
        .iter()
        .max_by_key(|(number, calls)| {
            let region = rules.number(**number).map(|n| &n.region);
            (
                region.is_some_and(|r| r.area_code == Some(area_code)),
                region.is_some_and(|r| r.states.iter().any(|s| s == state)),
                **calls,
                std::cmp::Reverse(**number),
            )
        })
        .map(|(number, _)| *number)
}

/// `count` valid numbers in `area_code` that the rules do not have, from the fictional
/// 555-01XX range on.
fn synthetic_numbers(rules: &RuleSet, area_code: u16, count: usize) -> Vec<E164> {
    (5_550_100u32..=5_559_999)
        .filter_map(|line| E164::parse(&format!("+1{area_code}{line}")).ok())
        .filter(|n| rules.number(*n).is_none())
        .take(count)
        .collect()
}

/// More numbers like the ones found full most often, until the queue drains a day sooner.
fn drain_sooner(
    rules: &RuleSet,
    leads: &[Lead],
    options: &SimulateOptions,
    report: &Report,
) -> Option<Advice> {
    let goal_by = |report: &Report| -> Option<DateTime<Utc>> {
        report.drained_at.map(|t| {
            t.date_naive()
                .and_hms_opt(0, 0, 0)
                .unwrap_or_default()
                .and_utc()
        })
    };
    let before = describe_drain(report);
    // Sooner than the day it drained; if it did not, within the simulated days.
    let deadline = goal_by(report).unwrap_or(report.end);
    if report.drained_at.is_some() && deadline <= report.start {
        return None;
    }
    let goal = match report.drained_at {
        Some(_) => "drain the list a day sooner".to_string(),
        None => format!("drain the list within {} days", options.days),
    };
    let mut busiest: Vec<(&str, usize)> = report
        .numbers
        .iter()
        .map(|n| (n.number.as_str(), n.full_windows.values().sum()))
        .filter(|(_, full)| *full > 0)
        .collect();
    busiest.sort_by_key(|(number, full)| (std::cmp::Reverse(*full), *number));
    let busiest: Vec<E164> = busiest
        .into_iter()
        .filter_map(|(n, _)| n.parse().ok())
        .collect();
    if busiest.is_empty() {
        let why = report
            .waiting
            .iter()
            .max_by_key(|(_, n)| **n)
            .map_or("nothing", |(reason, _)| reason.as_str());
        return Some(Advice {
            goal,
            change: format!(
                "more numbers would not help: no number was ever full; leads wait for {why}"
            ),
            before: before.clone(),
            after: before,
            verdict: Verdict::NotTried,
        });
    }
    let pool = rules.numbers().count().max(1);
    let mut last = None;
    for share in [4, 2, 1] {
        let count = pool.div_ceil(share);
        let likes: Vec<E164> = (0..count).map(|i| busiest[i % busiest.len()]).collect();
        // The synthetic numbers of each area code, made once, handed out in turn.
        let mut needed: BTreeMap<u16, usize> = BTreeMap::new();
        for code in likes.iter().filter_map(|like| like.nanp_area_code()) {
            *needed.entry(code).or_default() += 1;
        }
        let mut fresh: BTreeMap<u16, std::vec::IntoIter<E164>> = needed
            .into_iter()
            .map(|(code, n)| (code, synthetic_numbers(rules, code, n).into_iter()))
            .collect();
        let additions: Vec<(E164, E164)> = likes
            .into_iter()
            .filter_map(|like| Some((fresh.get_mut(&like.nanp_area_code()?)?.next()?, like)))
            .collect();
        let again_rules = rules.with_numbers_like(&additions);
        let again_tally = tally(&again_rules, leads, options);
        let again = Report::new(&again_rules, leads, options, &again_tally);
        let reached = again.drained_at.is_some_and(|t| t < deadline);
        last = Some(Advice {
            goal: goal.clone(),
            change: format!(
                "{} more numbers ({} more than the {pool} in the rules), like the ones found full most often ({})",
                additions.len(),
                percent(additions.len(), pool),
                busiest
                    .iter()
                    .take(3)
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            before: before.clone(),
            after: describe_drain(&again),
            verdict: if reached {
                Verdict::Reached
            } else {
                Verdict::NotReached
            },
        });
        if reached {
            break;
        }
    }
    last
}

fn describe_drain(report: &Report) -> String {
    match report.drained_at {
        Some(t) => format!("drained {}", t.format("%Y-%m-%d %H:%M UTC")),
        None => format!(
            "{} still waiting",
            percent(report.waiting_total(), report.leads)
        ),
    }
}
