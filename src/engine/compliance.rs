//! The compliance steps of a decision: suppression lists, consent, and the state laws,
//! holidays and closures that narrow the calling window. Pure, like the rest of the engine.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::{Decision, ReasonCode, Trace, reason};
use crate::compliance::{ListSource, StateRestriction};
use crate::hours::Window;
use crate::lead::Lead;
use crate::rules::{Campaign, RuleSet};
use crate::usage::PoolState;

/// One suppression list checked for a lead: its version (kept in the proof) and its entry.
#[derive(Debug, Clone, Serialize)]
pub struct ListCheck {
    pub list: String,
    pub version: String,
    /// The entry that suppresses the lead: `file:line` or the store's who/when/why.
    pub hit: Option<String>,
}

/// Which states bind the lead, and how they were chosen.
#[derive(Debug, Clone, Serialize)]
pub struct StatesCheck {
    pub states: Vec<String>,
    pub how: String,
}

/// Checks every list that applies to the lead's campaign and brand; a hit is a Reject.
pub(super) fn check_suppression(
    rules: &RuleSet,
    campaign: &Campaign,
    lead: &Lead,
    pool: &PoolState,
    now: DateTime<Utc>,
    trace: &mut Trace,
) -> Option<Decision> {
    let brand = campaign.brand_of(lead);
    let lists = &rules.compliance.lists;
    for rule in lists.iter().filter(|r| r.applies(&campaign.name, brand)) {
        if let ListSource::File { list, .. } = &rule.source {
            let hit = list.find(lead.phone, now).map(|hit| {
                let expires = hit
                    .expires
                    .map(|d| format!(", until {d}"))
                    .unwrap_or_default();
                format!("{}:{}{expires}", hit.file.display(), hit.line)
            });
            trace.suppression.push(ListCheck {
                list: rule.name.clone(),
                version: rule.version(),
                hit,
            });
        }
    }
    // Store-kept lists: named in the rules (with their scope), or not (then they apply to
    // every campaign: an opt-out binds the whole business until someone scopes it).
    let mut store_checks: std::collections::BTreeMap<&str, Option<String>> = lists
        .iter()
        .filter(|r| matches!(r.source, ListSource::Store) && r.applies(&campaign.name, brand))
        .map(|r| (r.name.as_str(), None))
        .collect();
    for entry in pool.suppressed(lead.phone) {
        let scoped_away = lists
            .iter()
            .any(|r| r.name == entry.list && !r.applies(&campaign.name, brand));
        if scoped_away || entry.expires.is_some_and(|e| e <= now) {
            continue;
        }
        let evidence = entry
            .evidence
            .as_ref()
            .map(|e| format!(", evidence {e}"))
            .unwrap_or_default();
        store_checks.insert(
            &entry.list,
            Some(format!(
                "added {} by {}: {}{evidence}",
                crate::format_instant(entry.added_at),
                entry.added_by,
                entry.reason
            )),
        );
    }
    trace
        .suppression
        .extend(store_checks.into_iter().map(|(list, hit)| ListCheck {
            list: list.to_string(),
            version: "store".into(),
            hit,
        }));
    let (list, entry) = trace
        .suppression
        .iter()
        .find_map(|check| Some((&check.list, check.hit.as_ref()?)))?;
    Some(Decision::Reject {
        reason: reason(
            ReasonCode::Suppressed,
            format!("{} is on suppression list `{list}` ({entry})", lead.phone),
        ),
    })
}

/// A campaign that requires consent rejects leads bound by its states without it, or with
/// consent older than its `max_age`.
pub(super) fn check_consent(
    campaign: &Campaign,
    lead: &Lead,
    states: &[String],
    now: DateTime<Utc>,
    trace: &mut Trace,
) -> Option<Decision> {
    let rule = campaign.consent.as_ref()?;
    let required_by = match &rule.states {
        None => Some(format!("campaign `{}`", campaign.name)),
        Some(required) => states
            .iter()
            .find(|s| required.contains(s))
            .map(|s| format!("campaign `{}` for leads in {s}", campaign.name)),
    };
    let Some(required_by) = required_by else {
        trace.consent = Some("not required for this lead's states".into());
        return None;
    };
    let source = lead
        .consent_source
        .as_ref()
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    match lead.consent_at {
        None => Some(Decision::Reject {
            reason: reason(
                ReasonCode::ConsentMissing,
                format!(
                    "{required_by} requires consent (`consent_at`), which this lead lacks; rule at {}",
                    rule.defined_at
                ),
            ),
        }),
        // Consent cannot be given after the call: a date in the future is a broken record
        // (or a forged one), not consent.
        Some(at) if at > now => Some(Decision::Reject {
            reason: reason(
                ReasonCode::ConsentInvalid,
                format!(
                    "consent dated {}{source} is in the future (decided at {}): not accepted as consent; {required_by} requires it; rule at {}",
                    crate::format_instant(at),
                    crate::format_instant(now),
                    rule.defined_at
                ),
            ),
        }),
        Some(at) if rule.max_age.is_some_and(|max| now - at > max) => Some(Decision::Reject {
            reason: reason(
                ReasonCode::ConsentExpired,
                format!(
                    "consent given {}{source} is older than the {} days {required_by} accepts; rule at {}",
                    crate::format_instant(at),
                    rule.max_age.map_or(0, |m| m.num_days()),
                    rule.defined_at
                ),
            ),
        }),
        Some(at) => {
            trace.consent = Some(format!(
                "given {}{source}; required by {required_by}",
                crate::format_instant(at)
            ));
            None
        }
    }
}

/// The restrictions (state laws, holidays, closures), each as a window in every one of the
/// lead's zones.
pub(super) fn restriction_constraints(
    restrictions: &[(&str, &StateRestriction)],
    zones: &[Tz],
) -> Vec<(Window, Tz)> {
    restrictions
        .iter()
        .flat_map(|(_, r)| zones.iter().map(move |&z| (r.window.clone(), z)))
        .collect()
}

/// What of `restrictions` is closed at `at` in any of `zones`, in words.
pub(super) fn closed_by(
    restrictions: &[(&str, &StateRestriction)],
    zones: &[Tz],
    at: DateTime<Utc>,
) -> Vec<String> {
    let mut reasons = Vec::new();
    for (state, restriction) in restrictions {
        for zone in zones {
            let local = at.with_timezone(zone).naive_local();
            if let Some(why) = restriction.why_closed(local.date(), local.time()) {
                let text = format!("{state}: {why}");
                if !reasons.contains(&text) {
                    reasons.push(text);
                }
            }
        }
    }
    reasons
}
