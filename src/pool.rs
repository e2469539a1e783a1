//! `callroute pool`: the agents' attached pools side by side with the rules, and keeping the
//! pools of agents marked `manage_pool: true` as the rules say.
//!
//! Whether `PUT …/phone_numbers` adds to the pool or replaces it is undocumented, so `apply`
//! does what is right under both readings: it PUTs the whole pool wanted (adding what is
//! missing; under "replace", also dropping the rest), reads the pool again, DELETEs by slug
//! whatever is still attached and unwanted, then reads once more and reports any difference
//! from the plan, and which reading the API showed. A number the API refuses is named, and
//! while one is refused nothing leaves the pool.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::phone::E164;
use crate::rules::{Agent, RuleSet};
use crate::synthflow::wire::AttachedNumber;
use crate::synthflow::{ApiError, Client};
use crate::usage::PoolState;

/// One number of an agent, as the pool and the rules see it.
#[derive(Debug, Clone, Serialize)]
pub struct PoolRow {
    pub number: String,
    pub slug: Option<String>,
    pub sid: Option<String>,
    /// `attached, in the rules`, `attached, in no rule`, `in the rules, NOT attached`.
    pub state: &'static str,
    /// Why and until when it rests, if it does.
    pub resting: Option<String>,
}

/// An agent's pool next to the numbers its campaigns' routes name.
pub fn rows(
    rules: &RuleSet,
    agent: &Agent,
    attached: &[AttachedNumber],
    pool: &PoolState,
    now: DateTime<Utc>,
) -> Vec<PoolRow> {
    let in_rules: BTreeSet<E164> = rules
        .numbers_for_agent(&agent.model_id)
        .iter()
        .copied()
        .collect();
    let mut rows: Vec<PoolRow> = attached
        .iter()
        .map(|a| {
            let number = E164::parse(&a.number).ok();
            PoolRow {
                number: a.number.clone(),
                slug: a.slug.clone(),
                sid: a.sid.clone(),
                state: if number.is_some_and(|n| in_rules.contains(&n)) {
                    "attached, in the rules"
                } else {
                    "attached, in no rule (Synthflow's own selection may still use it)"
                },
                resting: number.and_then(|n| rest_text(pool, n, now)),
            }
        })
        .collect();
    let attached_numbers: BTreeSet<E164> = attached
        .iter()
        .filter_map(|a| E164::parse(&a.number).ok())
        .collect();
    for number in in_rules.difference(&attached_numbers) {
        rows.push(PoolRow {
            number: number.to_string(),
            slug: None,
            sid: None,
            state: "in the rules, NOT attached (never dialed)",
            resting: rest_text(pool, *number, now),
        });
    }
    rows
}

fn rest_text(pool: &PoolState, number: E164, now: DateTime<Utc>) -> Option<String> {
    pool.rest_of(number, now).map(|rest| {
        format!(
            "resting until {} ({}): {}",
            crate::format_instant(rest.until),
            rest.source,
            rest.reason
        )
    })
}

/// What `apply` would change for one managed agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub agent: String,
    pub model_id: String,
    /// The pool wanted: the rules' numbers, less those resting under `detach_while_resting`.
    pub wanted: Vec<String>,
    pub attach: Vec<String>,
    /// Numbers to detach, with the slug `GET` gave them.
    pub detach: Vec<(String, String)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.attach.is_empty() && self.detach.is_empty()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(
                out,
                "agent `{}`: in sync ({} numbers)",
                self.agent,
                self.wanted.len()
            );
        }
        writeln!(out, "agent `{}` ({}):", self.agent, self.model_id)?;
        for number in &self.attach {
            writeln!(out, "  + attach {number}")?;
        }
        for (number, slug) in &self.detach {
            writeln!(out, "  - detach {number} (slug {slug})")?;
        }
        Ok(())
    }
}

/// The change that makes `attached` what the rules want for `agent`.
pub fn plan(
    rules: &RuleSet,
    agent: &Agent,
    attached: &[AttachedNumber],
    pool: &PoolState,
    now: DateTime<Utc>,
) -> Plan {
    let wanted: BTreeSet<E164> = rules
        .numbers_for_agent(&agent.model_id)
        .iter()
        .copied()
        .filter(|n| {
            !(rules.health_policy(*n).detach_while_resting && pool.rest_of(*n, now).is_some())
        })
        .collect();
    let have: BTreeSet<E164> = attached
        .iter()
        .filter_map(|a| E164::parse(&a.number).ok())
        .collect();
    Plan {
        agent: agent.name.clone(),
        model_id: agent.model_id.clone(),
        wanted: wanted.iter().map(ToString::to_string).collect(),
        attach: wanted.difference(&have).map(ToString::to_string).collect(),
        detach: attached
            .iter()
            .filter(|a| E164::parse(&a.number).is_ok_and(|n| !wanted.contains(&n)))
            .map(|a| {
                (
                    a.number.clone(),
                    a.slug.clone().unwrap_or_else(|| a.number.clone()),
                )
            })
            .collect(),
    }
}

/// What `apply` did, and what the pool is now.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub agent: String,
    /// How the API read the PUT, when it could be told: `added` or `replaced`.
    pub put_reading: Option<&'static str>,
    pub detached: Vec<String>,
    /// Numbers the API refused to attach (the workspace may not own them), with its answer.
    pub refused: Vec<(String, String)>,
    /// Detaches not made because a number meant to join the pool was refused: the pool
    /// never loses a number to a replacement that did not arrive.
    pub detaches_skipped: Vec<String>,
    /// The pool read after the changes.
    pub now_attached: Vec<String>,
    /// Where it still differs from the plan, refused numbers and skipped detaches aside.
    pub differences: Vec<String>,
}

impl Applied {
    /// True when the pool is what the plan wanted.
    pub fn is_complete(&self) -> bool {
        self.refused.is_empty() && self.detaches_skipped.is_empty() && self.differences.is_empty()
    }
}

/// Carries out `plan` (see the module's comment for why in this order).
///
/// The API refuses a PUT whole when one number is not the workspace's, without naming it.
/// Then each number to attach is tried alone, PUT together with the pool as it stands (right
/// under both readings: nothing is dropped), to name the refused ones; the others are
/// attached, and nothing is detached.
pub async fn apply(client: &Client, plan: &Plan) -> Result<Applied, ApiError> {
    let mut applied = Applied {
        agent: plan.agent.clone(),
        put_reading: None,
        detached: Vec::new(),
        refused: Vec::new(),
        detaches_skipped: Vec::new(),
        now_attached: Vec::new(),
        differences: Vec::new(),
    };
    let mut whole_put = false;
    if !plan.attach.is_empty() {
        match client.attach_numbers(&plan.model_id, &plan.wanted).await {
            Ok(()) => whole_put = true,
            Err(refused @ ApiError::Rejected { .. }) => {
                applied.refused = attach_one_by_one(client, plan).await?;
                tracing::debug!("the whole pool was refused ({refused}); tried one by one");
            }
            Err(e) => return Err(e),
        }
    }
    let refused: BTreeSet<&String> = applied.refused.iter().map(|(n, _)| n).collect();
    let wanted: BTreeSet<&String> = plan
        .wanted
        .iter()
        .filter(|n| !refused.contains(n))
        .collect();
    let after_put = client.attached_numbers(&plan.model_id).await?;
    if whole_put && !plan.detach.is_empty() {
        let extras_left = plan
            .detach
            .iter()
            .any(|(n, _)| after_put.iter().any(|a| &a.number == n));
        applied.put_reading = Some(if extras_left { "added" } else { "replaced" });
    }
    for unwanted in after_put
        .iter()
        .filter(|a| E164::parse(&a.number).is_ok() && !wanted.contains(&a.number))
    {
        if !refused.is_empty() {
            applied.detaches_skipped.push(unwanted.number.clone());
            continue;
        }
        let slug = unwanted
            .slug
            .clone()
            .unwrap_or_else(|| unwanted.number.clone());
        client.detach_number(&plan.model_id, &slug).await?;
        applied.detached.push(unwanted.number.clone());
    }
    let now = client.attached_numbers(&plan.model_id).await?;
    applied.now_attached = now.iter().map(|a| a.number.clone()).collect();
    let have: BTreeSet<&String> = applied.now_attached.iter().collect();
    for missing in wanted.difference(&have) {
        applied
            .differences
            .push(format!("{missing} is still not attached"));
    }
    for extra in have
        .difference(&wanted)
        .filter(|n| !applied.detaches_skipped.contains(n))
    {
        applied
            .differences
            .push(format!("{extra} is still attached"));
    }
    Ok(applied)
}

/// Attaches each number of `plan.attach` alone; returns those refused, with the API's answer.
async fn attach_one_by_one(
    client: &Client,
    plan: &Plan,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut refused = Vec::new();
    for number in &plan.attach {
        let mut trial: Vec<String> = client
            .attached_numbers(&plan.model_id)
            .await?
            .into_iter()
            .map(|a| a.number)
            .collect();
        trial.push(number.clone());
        match client.attach_numbers(&plan.model_id, &trial).await {
            Ok(()) => {}
            Err(ApiError::Rejected { status, reason }) => {
                refused.push((number.clone(), format!("HTTP {status}: {reason}")));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(refused)
}
