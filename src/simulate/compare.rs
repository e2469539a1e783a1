//! `simulate --compare`: two rule sets over the same leads, options and seed, and the leads
//! whose fate differs: what a reload would do, before the reload.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::report::Report;
use super::{Outcome, SimulateOptions, tally};
use crate::engine::variant_name;
use crate::lead::Lead;
use crate::rules::RuleSet;

/// A call moved by less than this is the same call: pacing shifts every later call a little.
const SAME_TIME: chrono::Duration = chrono::Duration::seconds(60);
/// Changes listed one by one in the text; JSON has them all.
const LISTED: usize = 50;

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub before_rules: String,
    pub after_rules: String,
    pub before: Report,
    pub after: Report,
    pub unchanged: usize,
    /// Leads changed, by what changed (`outcome`, `number`, `tier`, `time`).
    pub changed: BTreeMap<&'static str, usize>,
    pub changes: Vec<LeadChange>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LeadChange {
    pub lead: String,
    pub phone: String,
    pub what: Vec<&'static str>,
    pub before: String,
    pub after: String,
}

pub fn compare(
    before_rules: &RuleSet,
    after_rules: &RuleSet,
    leads: &[Lead],
    options: &SimulateOptions,
) -> Comparison {
    let before_tally = tally(before_rules, leads, options);
    let after_tally = tally(after_rules, leads, options);
    let mut comparison = Comparison {
        before_rules: before_rules.hash_text(),
        after_rules: after_rules.hash_text(),
        before: Report::new(before_rules, leads, options, &before_tally),
        after: Report::new(after_rules, leads, options, &after_tally),
        unchanged: 0,
        changed: BTreeMap::new(),
        changes: Vec::new(),
    };
    for ((lead, before), after) in leads
        .iter()
        .zip(&before_tally.outcomes)
        .zip(&after_tally.outcomes)
    {
        let what = differences(before, after);
        if what.is_empty() {
            comparison.unchanged += 1;
            continue;
        }
        for kind in &what {
            *comparison.changed.entry(kind).or_default() += 1;
        }
        comparison.changes.push(LeadChange {
            lead: lead.key.clone(),
            phone: lead.phone.to_string(),
            what,
            before: describe(before),
            after: describe(after),
        });
    }
    comparison
}

fn differences(before: &Outcome, after: &Outcome) -> Vec<&'static str> {
    match (before, after) {
        (
            Outcome::Called {
                at: at_before,
                number: number_before,
                tier: tier_before,
            },
            Outcome::Called { at, number, tier },
        ) => {
            let mut what = Vec::new();
            if number != number_before {
                what.push("number");
            }
            if tier != tier_before {
                what.push("tier");
            }
            if (*at - *at_before).abs() >= SAME_TIME {
                what.push("time");
            }
            what
        }
        (before, after) if std::mem::discriminant(before) != std::mem::discriminant(after) => {
            vec!["outcome"]
        }
        (before, after) if before != after => vec!["reason"],
        _ => Vec::new(),
    }
}

pub fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Called { at, number, tier } => format!(
            "called {} from {number} ({})",
            at.format("%m-%d %H:%M:%S"),
            variant_name(tier)
        ),
        Outcome::Waiting(reason) => format!("waiting ({reason})"),
        Outcome::Held(reason) => format!("held: {reason}"),
        Outcome::Rejected(reason) => format!("rejected: {reason}"),
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let drained = |r: &Report| {
            r.drained_at.map_or_else(
                || format!("{} waiting at the end", r.waiting_total()),
                |t| format!("drained {}", crate::format_instant(t)),
            )
        };
        writeln!(
            out,
            "rules {} → {} over {} leads:",
            self.before_rules, self.after_rules, self.before.leads
        )?;
        writeln!(
            out,
            "  called {} → {}; held {} → {}; rejected {} → {}; {} → {}",
            self.before.called,
            self.after.called,
            self.before.held.values().sum::<usize>(),
            self.after.held.values().sum::<usize>(),
            self.before.rejected.values().sum::<usize>(),
            self.after.rejected.values().sum::<usize>(),
            drained(&self.before),
            drained(&self.after),
        )?;
        let reached = |r: &Report| r.by_attempt.iter().map(|a| a.reached).sum::<usize>();
        let dials = |r: &Report| r.by_attempt.iter().map(|a| a.calls).sum::<usize>();
        writeln!(
            out,
            "  leads reached {} → {} ({:.0} → {:.0} per 1,000) with {} → {} dials ({} → {} redials)",
            reached(&self.before),
            reached(&self.after),
            1000.0 * reached(&self.before) as f64 / self.before.leads.max(1) as f64,
            1000.0 * reached(&self.after) as f64 / self.after.leads.max(1) as f64,
            dials(&self.before),
            dials(&self.after),
            self.before.redials,
            self.after.redials,
        )?;
        let non_local = |r: &Report| r.states.iter().map(|s| s.non_local).sum::<usize>();
        writeln!(
            out,
            "  calls from non-local numbers {} → {}",
            non_local(&self.before),
            non_local(&self.after)
        )?;
        writeln!(
            out,
            "{} leads unchanged, {} changed",
            self.unchanged,
            self.changes.len()
        )?;
        for (kind, n) in &self.changed {
            writeln!(out, "  {n:>7}  {kind}")?;
        }
        for change in self.changes.iter().take(LISTED) {
            writeln!(
                out,
                "  {} {} [{}]: {} → {}",
                change.lead,
                change.phone,
                change.what.join(", "),
                change.before,
                change.after
            )?;
        }
        if self.changes.len() > LISTED {
            writeln!(
                out,
                "  ... and {} more (all of them with --format json)",
                self.changes.len() - LISTED
            )?;
        }
        Ok(())
    }
}
