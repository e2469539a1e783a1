//! Renders a decision and its trace for people (`text`) and programs (`json`).

use std::fmt::Write;

use serde_json::{Value, json};

use crate::engine::{Decision, Trace, variant_name};
use crate::rules::Tier;

fn tier_name(tier: Tier) -> &'static str {
    Tier::NAMES[tier as usize]
}

/// The JSON form: flat top-level fields for scripts, the whole trace underneath.
pub fn to_json(decision: &Decision, trace: &Trace) -> Value {
    let (from, until, reason, code, route, tier, agent, model_id) = match decision {
        Decision::Dial {
            from_phone_number,
            agent,
            model_id,
            route,
            tier,
        } => (
            Some(from_phone_number.to_string()),
            None,
            None,
            None,
            Some(route.clone()),
            Some(serde_json::to_value(tier).unwrap_or(Value::Null)),
            Some(agent.clone()),
            Some(model_id.clone()),
        ),
        Decision::Defer { until, reason } => (
            None,
            Some(*until),
            Some(reason.message.clone()),
            Some(reason.code),
            None,
            None,
            None,
            None,
        ),
        Decision::Hold { reason } | Decision::Reject { reason } => (
            None,
            None,
            Some(reason.message.clone()),
            Some(reason.code),
            None,
            None,
            None,
            None,
        ),
    };
    let matched_route = trace
        .routes
        .iter()
        .find(|r| r.matched)
        .map(|r| r.route.to_string());
    json!({
        "outcome": decision.outcome(),
        "from_phone_number": from,
        "until": until.map(crate::format_instant),
        "reason": reason,
        "reason_code": code,
        "route": route.or(matched_route),
        "tier": tier,
        "agent": agent,
        "model_id": model_id,
        "trace": trace,
    })
}

/// The text form, one fact per line.
pub fn to_text(decision: &Decision, trace: &Trace) -> String {
    let mut out = String::new();
    let time = crate::format_instant;
    let _ = match decision {
        Decision::Dial {
            from_phone_number,
            agent,
            model_id,
            route,
            tier,
        } => writeln!(
            out,
            "DIAL from {from_phone_number} (route `{route}`, {}) with agent `{agent}` ({model_id})",
            variant_name(tier)
        ),
        Decision::Defer { until, reason } => {
            writeln!(out, "DEFER until {}: {}", time(*until), reason.message)
        }
        Decision::Hold { reason } => writeln!(
            out,
            "HOLD until the rules or the pool change: {}",
            reason.message
        ),
        Decision::Reject { reason } => writeln!(out, "REJECT: {}", reason.message),
    };
    let _ = writeln!(out, "  lead     {}", trace.lead);
    if let Some(now) = trace.now {
        let _ = writeln!(out, "  at       {}", time(now));
    }
    for list in &trace.suppression {
        let verdict = match &list.hit {
            Some(hit) => format!("LISTED: {hit}"),
            None => "not listed".to_string(),
        };
        let _ = writeln!(
            out,
            "  list     `{}` (version {}): {verdict}",
            list.list, list.version
        );
    }
    for route in &trace.routes {
        let verdict = match route.mismatch {
            None => "matched".to_string(),
            Some(key) => format!("skipped: `{key}` does not match"),
        };
        let _ = writeln!(
            out,
            "  route    `{}` ({}) {verdict}",
            route.route, route.defined_at
        );
    }
    if let Some(hours) = &trace.calling_hours {
        let states = if hours.states.is_empty() {
            "no state".to_string()
        } else {
            hours.states.join(", ")
        };
        let status = match (hours.open_now, hours.next_open) {
            (true, _) => "open now".to_string(),
            (false, Some(t)) => format!("closed; opens {}", time(t)),
            (false, None) => "never opens".to_string(),
        };
        let _ = writeln!(
            out,
            "  hours    {} ({states}): {status}",
            hours.zones.join(", ")
        );
        for law in &hours.laws {
            let _ = writeln!(out, "  law      {law}");
        }
        for closed in &hours.closed_by {
            let _ = writeln!(out, "  closed   {closed}");
        }
    }
    if let Some(states) = &trace.states {
        let _ = writeln!(out, "  states   bound by {}", states.how);
    }
    if let Some(consent) = &trace.consent {
        let _ = writeln!(out, "  consent  {consent}");
    }
    for count in &trace.attempt_counts {
        let state = count
            .state
            .as_ref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  attempts {} {}/{}{state}",
            count.window, count.used, count.limit
        );
    }
    for hit in &trace.lead_attempts {
        let _ = writeln!(out, "  attempts {hit}");
    }
    if let Some(cadence) = &trace.cadence {
        let _ = writeln!(out, "  cadence  {cadence}");
    }
    if let Some(sticky) = &trace.sticky {
        let _ = writeln!(out, "  sticky   {sticky}");
    }
    for tier in &trace.tiers {
        let _ = writeln!(
            out,
            "  tier     {}: {} candidates, {} eligible",
            tier_name(tier.tier),
            tier.candidates,
            tier.eligible
        );
    }
    for excluded in &trace.excluded {
        let _ = writeln!(
            out,
            "  excluded {} ({}): {}",
            excluded.number,
            tier_name(excluded.tier),
            excluded.reason
        );
    }
    if let Some(pick) = &trace.picked {
        let by = pick.strategy.map(|s| variant_name(&s));
        let _ = writeln!(
            out,
            "  picked   {} by {}: {}",
            pick.number,
            by.unwrap_or_else(|| "sticky".into()),
            pick.why
        );
    }
    out
}
