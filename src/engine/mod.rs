//! The decision engine: given the compiled rules, a lead, the pool's state and `now`, pick a
//! caller ID (or say when to retry, or why never) and record why. Pure: no I/O, no clock,
//! no randomness beyond the pool's seed, so the daemon, `explain` and tests agree.

use rustc_hash::FxHashSet as HashSet;
use std::sync::Arc;

use chrono::{DateTime, Offset, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::cadence::CallerIdPolicy;
use crate::compliance::Purpose;
use crate::hours::{Window, next_open_all};
use crate::lead::Lead;
use crate::phone::E164;
use crate::rules::{
    AttemptRule, Campaign, Facts, Layered, NumberId, NumberInfo, Route, RuleSet, Strategy, Tier,
};
use crate::usage::{LimitHit, PoolState, all_free_at};

/// What to do with a lead now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Decision {
    Dial {
        from_phone_number: E164,
        agent: String,
        model_id: String,
        route: String,
        tier: PickedBy,
    },
    /// Nothing can change before `until`; try again then.
    Defer {
        until: DateTime<Utc>,
        reason: Reason,
    },
    /// Not callable under the running rules and pool, but a change of either could make it
    /// so: kept, and decided again after every successful reload or pool change.
    Hold { reason: Reason },
    /// This lead can never be called, whatever the rules say (its own data is at fault, or
    /// it used up its lifetime attempts).
    Reject { reason: Reason },
}

/// How the caller ID was found: a local-presence tier, or the lead's sticky assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PickedBy {
    Sticky,
    AreaCode,
    State,
    Timezone,
    Country,
    Any,
}

impl From<Tier> for PickedBy {
    fn from(tier: Tier) -> PickedBy {
        match tier {
            Tier::AreaCode => PickedBy::AreaCode,
            Tier::State => PickedBy::State,
            Tier::Timezone => PickedBy::Timezone,
            Tier::Country => PickedBy::Country,
            Tier::Any => PickedBy::Any,
        }
    }
}

/// A machine-readable code (bounded: fit for metric labels) and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub code: ReasonCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    UnknownCampaign,
    NoRouteMatched,
    NoTimezone,
    CallingHoursNeverOpen,
    NotBefore,
    OutsideCallingHours,
    LeadAttemptLimit,
    LeadAttemptCapReached,
    AllNumbersAtLimit,
    /// Every usable number rests (health): it ends by itself.
    NumbersResting,
    NoLocalNumber,
    NoAttachedNumber,
    /// The number is on a suppression list that applies to the campaign.
    Suppressed,
    /// The campaign requires consent for this lead, and it has none.
    ConsentMissing,
    /// The lead's consent is older than the campaign accepts.
    ConsentExpired,
    /// The lead's consent is dated after the decision: not consent.
    ConsentInvalid,
}

/// The name a unit variant has in JSON (`area_code`, `outside_calling_hours`, ...), for
/// logs, metric labels and text output.
pub fn variant_name(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl Decision {
    pub fn outcome(&self) -> &'static str {
        match self {
            Decision::Dial { .. } => "dial",
            Decision::Defer { .. } => "defer",
            Decision::Hold { .. } => "hold",
            Decision::Reject { .. } => "reject",
        }
    }
}

/// Why the engine decided what it did, step by step.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Trace {
    pub lead: String,
    pub now: Option<DateTime<Utc>>,
    pub campaign: Option<String>,
    /// Suppression lists checked, with their versions and any entry found.
    pub suppression: Vec<ListCheck>,
    pub routes: Vec<RouteCheck>,
    /// The states whose laws bind the lead, and how they were chosen.
    pub states: Option<StatesCheck>,
    /// The lead's consent, when its campaign requires it.
    pub consent: Option<String>,
    pub calling_hours: Option<HoursCheck>,
    pub lead_attempts: Vec<LimitHit>,
    /// The lead's attempts in each capped window, as the caps were checked (for the proof).
    pub attempt_counts: Vec<AttemptCount>,
    pub sticky: Option<String>,
    /// A redial of the campaign's cadence: which attempt, and the caller ID it asks for.
    pub cadence: Option<String>,
    pub tiers: Vec<TierCheck>,
    pub excluded: Vec<Exclusion>,
    pub picked: Option<Pick>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteCheck {
    pub route: Arc<str>,
    pub defined_at: Arc<str>,
    pub matched: bool,
    /// The first `when` key the lead did not satisfy.
    pub mismatch: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HoursCheck {
    pub zones: Vec<String>,
    pub states: Vec<String>,
    pub open_now: bool,
    pub next_open: Option<DateTime<Utc>>,
    /// The laws, holidays and closures checked besides the rules' hours.
    pub laws: Vec<String>,
    /// What of those is closed now, and why (the law, the holiday, the closure).
    pub closed_by: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptCount {
    /// The state whose cap it is (None: the default or the country's).
    pub state: Option<String>,
    pub window: &'static str,
    pub used: u32,
    pub limit: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct TierCheck {
    pub tier: Tier,
    pub candidates: usize,
    pub eligible: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Exclusion {
    pub number: E164,
    pub tier: Tier,
    pub reason: String,
    /// The limit windows that are full (empty when excluded for another reason).
    pub windows: Vec<crate::usage::LimitWindow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pick {
    pub number: E164,
    pub by: PickedBy,
    pub strategy: Option<Strategy>,
    pub why: String,
}

fn reason(code: ReasonCode, message: impl Into<String>) -> Reason {
    Reason {
        code,
        message: message.into(),
    }
}

use crate::format_instant as rfc3339;

/// Decides what to do with `lead` at `now`.
pub fn decide(
    rules: &RuleSet,
    lead: &Lead,
    pool: &PoolState,
    now: DateTime<Utc>,
) -> (Decision, Trace) {
    let mut trace = Trace {
        lead: lead.key.clone(),
        now: Some(now),
        ..Trace::default()
    };
    let decision = decide_traced(rules, lead, pool, now, &mut trace);
    (decision, trace)
}

fn decide_traced(
    rules: &RuleSet,
    lead: &Lead,
    pool: &PoolState,
    now: DateTime<Utc>,
    trace: &mut Trace,
) -> Decision {
    let Some(campaign) = rules.campaign(&lead.campaign) else {
        return Decision::Hold {
            reason: reason(
                ReasonCode::UnknownCampaign,
                format!("campaign `{}` is not in the rules", lead.campaign),
            ),
        };
    };
    trace.campaign = Some(campaign.name.clone());
    if let Some(rejected) = check_suppression(rules, campaign, lead, pool, now, trace) {
        return rejected;
    }
    let Some(route) = match_route(campaign, lead, trace) else {
        return Decision::Hold {
            reason: reason(
                ReasonCode::NoRouteMatched,
                format!("no route of campaign `{}` matches this lead", campaign.name),
            ),
        };
    };

    // When may this lead be called at all?
    if lead.zones.is_empty() {
        return Decision::Reject {
            reason: reason(
                ReasonCode::NoTimezone,
                format!(
                    "no time zone is known for {}; give the lead a `timezone`",
                    lead.phone
                ),
            ),
        };
    }
    let (states, how) = rules.compliance.binding_states(lead);
    trace.states = Some(StatesCheck {
        states: states.clone(),
        how,
    });
    if let Some(rejected) = check_consent(campaign, lead, &states, now, trace) {
        return rejected;
    }
    let mut laws: Vec<_> = rules
        .compliance
        .restrictions(lead.country.as_deref(), &states)
        .collect();
    // The federal telemarketing window binds calls to the US (and to numbers whose country
    // is unknown: the safe side) like a state law, narrowing the rules' hours.
    let federal_binds = lead.country.as_deref().is_none_or(|c| c == "US");
    let federal_lifted = federal_binds && campaign.purpose == Purpose::Informational;
    if federal_binds && campaign.purpose == Purpose::Telemarketing {
        laws.insert(0, ("federal", &rules.compliance.federal));
    }
    let mut constraints = hours_constraints(&rules.calling_hours, lead, &states);
    constraints.extend(restriction_constraints(&laws, &lead.zones));
    let earliest = lead.not_before.map_or(now, |t| t.max(now));
    let opens = next_open_all(&constraints, earliest);
    let closed = if opens == Some(now) {
        Vec::new()
    } else {
        closed_by(&laws, &lead.zones, earliest)
    };
    trace.calling_hours = Some(HoursCheck {
        zones: lead.zones.iter().map(|z| z.name().to_string()).collect(),
        states: states.clone(),
        open_now: opens == Some(now),
        next_open: opens,
        laws: laws
            .iter()
            .map(|(state, r)| format!("{state}: {}", r.law.as_deref().unwrap_or("closed days")))
            .chain(federal_lifted.then(|| {
                format!(
                    "federal: telemarketing hours 08:00-21:00 not applied (campaign `{}` is purpose: informational)",
                    campaign.name
                )
            }))
            .collect(),
        closed_by: closed.clone(),
    });
    let Some(opens) = opens else {
        return never_open();
    };
    if opens > now {
        let (code, message) = if earliest > now && opens == earliest {
            (
                ReasonCode::NotBefore,
                format!(
                    "the lead asks not to be called before {}",
                    rfc3339(earliest)
                ),
            )
        } else {
            let because = if closed.is_empty() {
                String::new()
            } else {
                format!(" ({})", closed.join("; "))
            };
            (
                ReasonCode::OutsideCallingHours,
                format!(
                    "outside calling hours in {}{because}; next window opens {}",
                    zone_list(&lead.zones),
                    rfc3339(opens)
                ),
            )
        };
        return Decision::Defer {
            until: opens,
            reason: reason(code, message),
        };
    }

    let history = pool.lead_history(&lead.key);
    for (index, rule) in attempt_rules(&rules.lead_attempts, lead, &states)
        .iter()
        .enumerate()
    {
        let state = states.get(index).cloned();
        if let Some(limit) = rule.per_24h {
            trace.attempt_counts.push(AttemptCount {
                state: state.clone(),
                window: "per_24h",
                // Calls to the person under any lead id (they include this lead's).
                used: history
                    .map_or(0, |h| h.count_since(now - chrono::Duration::hours(24)))
                    .max(pool.calls_to_since(lead.phone, now - chrono::Duration::hours(24))),
                limit,
            });
        }
        if let Some(limit) = rule.max_total {
            trace.attempt_counts.push(AttemptCount {
                state,
                window: "max_total",
                used: history.map_or(0, |h| h.total()),
                limit,
            });
        }
    }
    {
        let mut hits: Vec<LimitHit> = Vec::new();
        for rule in attempt_rules(&rules.lead_attempts, lead, &states) {
            let mut rule_hits = history.map(|h| h.hits(&rule, now)).unwrap_or_default();
            // A 24 h cap counts calls to the person, whatever lead id they were made under
            // (the law counts calls to a person: rows of one list, or two lists, are one
            // person); the later-freeing of the two counts binds.
            if let Some(person) = pool.person_24h_hit(lead.phone, rule.per_24h, now) {
                match rule_hits
                    .iter_mut()
                    .find(|h| h.window == crate::usage::LimitWindow::Per24h)
                {
                    Some(own) if own.frees_at >= person.frees_at => {}
                    Some(own) => *own = person,
                    None => rule_hits.push(person),
                }
            }
            hits.extend(rule_hits);
        }
        if !hits.is_empty() {
            trace.lead_attempts = hits.clone();
            let summary = hits
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            return match all_free_at(&hits).map(|free| next_open_all(&constraints, free)) {
                Some(Some(until)) => Decision::Defer {
                    until,
                    reason: reason(
                        ReasonCode::LeadAttemptLimit,
                        format!("lead attempt limit: {summary}"),
                    ),
                },
                Some(None) => never_open(),
                None => Decision::Reject {
                    reason: reason(
                        ReasonCode::LeadAttemptCapReached,
                        format!("lead attempt cap reached: {summary}"),
                    ),
                },
            };
        }
    }

    pick_number(rules, campaign, route, lead, pool, now, &constraints, trace)
}

fn never_open() -> Decision {
    Decision::Hold {
        reason: reason(
            ReasonCode::CallingHoursNeverOpen,
            "the lead's calling hours do not open within a year (no allowed day, every day blacked out, or its zones' windows never overlap)",
        ),
    }
}

/// The route of `campaign` that takes `lead` now (the first whose `when` it meets).
pub fn route_of<'r>(campaign: &'r Campaign, lead: &Lead) -> Option<&'r Route> {
    match_route(campaign, lead, &mut Trace::default())
}

fn match_route<'r>(campaign: &'r Campaign, lead: &Lead, trace: &mut Trace) -> Option<&'r Route> {
    let facts = Facts {
        brand: campaign.brand_of(lead),
        country: lead.country.as_deref(),
        states: &lead.states,
        area_code: lead.area_code,
        zones: &lead.zones,
        labels: &lead.labels,
    };
    trace.routes.reserve(campaign.routes.len());
    for route in &campaign.routes {
        let mismatch = route.when.first_mismatch(&facts);
        trace.routes.push(RouteCheck {
            route: route.name.clone(),
            defined_at: route.defined_at.clone(),
            matched: mismatch.is_none(),
            mismatch,
        });
        if mismatch.is_none() {
            return Some(route);
        }
    }
    None
}

/// One (window, zone) pair per compliance state and zone: all must be open.
fn hours_constraints(
    hours: &Layered<crate::rules::HoursRule>,
    lead: &Lead,
    states: &[String],
) -> Vec<(Window, Tz)> {
    let country = lead.country.as_deref();
    let windows: Vec<Window> = if states.is_empty() {
        vec![hours.resolve(country, None)]
    } else {
        states
            .iter()
            .map(|s| hours.resolve(country, Some(s)))
            .collect()
    };
    windows
        .iter()
        .flat_map(|w| lead.zones.iter().map(move |&z| (w.clone(), z)))
        .collect()
}

fn attempt_rules(
    layered: &Layered<AttemptRule>,
    lead: &Lead,
    states: &[String],
) -> Vec<AttemptRule> {
    let resolve = |state: Option<&String>| {
        let mut rule = layered.default;
        let layers = [
            lead.country.as_ref().and_then(|c| layered.countries.get(c)),
            state.and_then(|s| layered.states.get(s)),
        ];
        for layer in layers.into_iter().flatten() {
            rule.per_24h = layer.per_24h.or(rule.per_24h);
            rule.max_total = layer.max_total.or(rule.max_total);
            rule.min_gap = layer.min_gap.or(rule.min_gap);
        }
        rule
    };
    if states.is_empty() {
        vec![resolve(None)]
    } else {
        states.iter().map(|s| resolve(Some(s))).collect()
    }
}

fn zone_list(zones: &[Tz]) -> String {
    zones
        .iter()
        .map(|z| z.name())
        .collect::<Vec<_>>()
        .join(" and ")
}

mod compliance;
mod pick;
mod strategy;

pub use compliance::{ListCheck, StatesCheck};
use compliance::{check_consent, check_suppression, closed_by, restriction_constraints};

use pick::pick_number;
use strategy::choose;
pub use strategy::rendezvous_score;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::rules::compile_sources;

    const RULES: &str = r#"
agents: { sales: { model_id: m-1 } }
limits:
  default: { per_hour: 2, min_gap: 60s }
numbers:
  "+14155550100": { brand: acme }
  "+14155550101": { brand: acme, weight: 3 }
  "+12135550103": { brand: acme }
  "+13055550105": { brand: acme }
  "+12125550107": { brand: acme }
calling_hours:
  default: { days: [mon, tue, wed, thu, fri, sat, sun], start: "08:00", end: "21:00" }
  states: { FL: { end: "20:00" } }
lead_attempts:
  default: { per_24h: 5 }
  states: { FL: { per_24h: 3 } }
campaigns:
  local:
    agent: sales
    routes:
      - name: local
        numbers: all
        local_presence: [area_code, state, timezone, any]
  rotate:
    agent: sales
    routes:
      - numbers: ["+14155550100", "+14155550101", "+12135550103"]
        strategy: round_robin
  weighted:
    agent: sales
    routes:
      - numbers: ["+14155550100", "+14155550101"]
        strategy: weighted
  sticky:
    agent: sales
    routes:
      - numbers: all
        sticky: 7d
  strictly-local:
    agent: sales
    routes:
      - numbers: all
        local_presence: [area_code]
  redial-different:
    agent: sales
    cadence: { redial_on: [no-answer], delays: [30m], max_attempts: 4, caller_id: different }
    routes:
      - numbers: ["+14155550100", "+14155550101", "+12135550103"]
        local_presence: [area_code, any]
  redial-same:
    agent: sales
    cadence: { redial_on: [no-answer], delays: [30m], max_attempts: 4, caller_id: same }
    routes:
      - numbers: ["+14155550100", "+14155550101", "+12135550103"]
        local_presence: [area_code, any]
"#;

    fn rules() -> RuleSet {
        let (rules, diagnostics) = compile_sources(&[(Path::new("t.yaml"), RULES)]);
        assert!(
            diagnostics
                .iter()
                .all(|d| d.severity == crate::rules::Severity::Warning),
            "{diagnostics:?}"
        );
        rules.unwrap()
    }

    fn lead(phone: &str, campaign: &str) -> Lead {
        Lead::from_json(&format!(
            r#"{{"phone":"{phone}","name":"N","campaign":"{campaign}"}}"#
        ))
        .unwrap()
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn pool(rules: &RuleSet) -> PoolState {
        let mut pool = PoolState::new(7);
        pool.attach_all(rules);
        pool
    }

    fn dialed(decision: &Decision) -> (String, PickedBy) {
        match decision {
            Decision::Dial {
                from_phone_number,
                tier,
                ..
            } => (from_phone_number.to_string(), *tier),
            other => panic!("expected a dial, got {other:?}"),
        }
    }

    const NOON_PACIFIC: &str = "2026-03-04T12:00:00-08:00";

    #[test]
    fn local_presence_prefers_the_same_area_code_then_state() {
        let rules = rules();
        let mut pool = pool(&rules);
        let sf = lead("+14155550123", "local");
        let (decision, trace) = decide(&rules, &sf, &pool, at(NOON_PACIFIC));
        let (number, tier) = dialed(&decision);
        assert!(number.starts_with("+1415"), "{number}");
        assert_eq!(tier, PickedBy::AreaCode);
        assert_eq!(trace.tiers[0].candidates, 2);

        // Both 415 numbers busy (min_gap): the same-state 213 number is next.
        let now = at(NOON_PACIFIC);
        for n in ["+14155550100", "+14155550101"] {
            pool.record(E164::parse(n).unwrap(), &lead("+14155550999", "local"), now);
        }
        let (decision, trace) = decide(&rules, &sf, &pool, now);
        assert_eq!(dialed(&decision), ("+12135550103".into(), PickedBy::State));
        assert_eq!(trace.excluded.len(), 2);
        assert!(
            trace.excluded[0].reason.contains("min_gap"),
            "{:?}",
            trace.excluded
        );
    }

    fn rest(number: &str, until: &str, reason: &str) -> crate::health::Rest {
        crate::health::Rest {
            number: E164::parse(number).unwrap(),
            since: at("2026-03-01T00:00:00Z"),
            until: at(until),
            reason: reason.into(),
            source: "auto".into(),
        }
    }

    #[test]
    fn a_resting_number_is_skipped_with_why_and_until_when() {
        let rules = rules();
        let mut pool = pool(&rules);
        pool.set_rests([rest(
            "+14155550100",
            "2026-03-06T16:00:00Z",
            "answer rate 6% over its last 52 calls, pool median 24%",
        )]);
        let sf = lead("+14155550123", "local");
        let (decision, trace) = decide(&rules, &sf, &pool, at(NOON_PACIFIC));
        assert_eq!(
            dialed(&decision),
            ("+14155550101".into(), PickedBy::AreaCode)
        );
        assert_eq!(
            trace.excluded[0].reason,
            "resting until 2026-03-06T16:00:00Z: answer rate 6% over its last 52 calls, pool median 24%"
        );
        assert!(crate::explain::to_text(&decision, &trace).contains("+14155550100"));
        // The rest over, it is a candidate again.
        let (decision, trace) = decide(&rules, &sf, &pool, at("2026-03-06T16:00:00Z"));
        assert!(matches!(decision, Decision::Dial { .. }));
        assert!(trace.excluded.is_empty());
    }

    #[test]
    fn when_every_number_rests_the_lead_waits_for_the_first_rest_to_end() {
        let rules = rules();
        let mut pool = pool(&rules);
        pool.set_rests([
            rest("+14155550100", "2026-03-06T16:00:00Z", "flagged"),
            rest("+14155550101", "2026-03-05T16:00:00Z", "flagged"),
        ]);
        let sf = lead("+14155550123", "strictly-local");
        let (decision, _) = decide(&rules, &sf, &pool, at(NOON_PACIFIC));
        match decision {
            Decision::Defer { until, reason } => {
                assert_eq!(reason.code, ReasonCode::NumbersResting);
                assert_eq!(until, at("2026-03-05T16:00:00Z"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_new_number_warms_up_under_a_growing_daily_cap() {
        let text = RULES
            .replace(
                "default: { per_hour: 2, min_gap: 60s }",
                "default: { per_hour: 100, warmup: { from: 2, to: 10, days: 4 } }",
            )
            .replace(
                r#""+14155550100": { brand: acme }"#,
                r#""+14155550100": { brand: acme, since: "2026-03-04" }"#,
            );
        let rules = compile_sources(&[(Path::new("t.yaml"), text.as_str())])
            .0
            .unwrap();
        let mut pool = pool(&rules);
        let sf = E164::parse("+14155550100").unwrap();
        let now = at(NOON_PACIFIC);
        for minute in 0..2 {
            pool.record(
                sf,
                &lead("+14155550999", "local"),
                now - chrono::Duration::minutes(minute + 1),
            );
        }
        let (decision, trace) = decide(&rules, &lead("+14155550123", "rotate"), &pool, now);
        assert_ne!(dialed(&decision).0, "+14155550100");
        let excluded = &trace.excluded[0];
        assert_eq!(excluded.windows, [crate::usage::LimitWindow::Warmup]);
        assert!(
            excluded.reason.starts_with("warmup 2/2 (day 1 of 4, 2→10)"),
            "{}",
            excluded.reason
        );
        // Two days later its cap is 6: two calls today leave it usable.
        let later = now + chrono::Duration::days(2);
        pool.record(
            sf,
            &lead("+14155550998", "local"),
            later - chrono::Duration::minutes(5),
        );
        let (decision, _) = decide(&rules, &lead("+14155550123", "weighted"), &pool, later);
        assert!(matches!(decision, Decision::Dial { .. }));
    }

    #[test]
    fn same_clock_counts_as_same_time_zone() {
        let rules = rules();
        // Detroit (313) has no number of its own; New York (212) shares its clock.
        let detroit = lead("+13135550123", "local");
        let (decision, _) = decide(
            &rules,
            &detroit,
            &pool(&rules),
            at("2026-03-04T12:00:00-05:00"),
        );
        assert_eq!(dialed(&decision).1, PickedBy::Timezone);
    }

    #[test]
    fn outside_hours_defers_until_the_window_opens() {
        let rules = rules();
        let (decision, _) = decide(
            &rules,
            &lead("+14155550123", "local"),
            &pool(&rules),
            at("2026-03-04T22:00:00-08:00"),
        );
        assert_eq!(
            decision,
            Decision::Defer {
                until: at("2026-03-05T08:00:00-08:00"),
                reason: reason(
                    ReasonCode::OutsideCallingHours,
                    "outside calling hours in America/Los_Angeles (federal: TSR 16 CFR 310.4(c) / TCPA 47 CFR 64.1200(c)(1) telemarketing hours: calls 08:00-21:00 on Wed); next window opens 2026-03-05T16:00:00Z"
                ),
            }
        );
        // Florida closes at 20:00.
        let (decision, _) = decide(
            &rules,
            &lead("+13055550123", "local"),
            &pool(&rules),
            at("2026-03-04T20:30:00-05:00"),
        );
        assert!(
            matches!(decision, Decision::Defer { until, .. } if until == at("2026-03-05T08:00:00-05:00"))
        );
    }

    #[test]
    fn what_the_rules_or_the_pool_could_fix_is_held_not_rejected() {
        let rules = rules();
        let (decision, _) = decide(
            &rules,
            &lead("+14155550123", "nope"),
            &pool(&rules),
            at(NOON_PACIFIC),
        );
        assert!(
            matches!(decision, Decision::Hold { reason } if reason.code == ReasonCode::UnknownCampaign)
        );

        let mut empty = PoolState::new(1);
        empty.set_attached("m-1", []);
        let (decision, trace) = decide(
            &rules,
            &lead("+14155550123", "local"),
            &empty,
            at(NOON_PACIFIC),
        );
        assert!(
            matches!(decision, Decision::Hold { reason } if reason.code == ReasonCode::NoAttachedNumber)
        );
        assert!(
            trace
                .excluded
                .iter()
                .all(|e| e.reason.contains("not attached"))
        );

        let (decision, _) = decide(
            &rules,
            &lead("+15125550123", "strictly-local"),
            &pool(&rules),
            at(NOON_PACIFIC),
        );
        assert!(
            matches!(decision, Decision::Hold { reason } if reason.code == ReasonCode::NoLocalNumber)
        );
    }

    #[test]
    fn all_numbers_at_limit_defers_until_the_first_frees() {
        let rules = rules();
        let mut pool = pool(&rules);
        let t0 = at(NOON_PACIFIC);
        let filler = lead("+15125550999", "local");
        // Every number used twice (per_hour: 2): the earliest frees an hour after its first use.
        for (i, n) in rules
            .numbers()
            .map(|n| n.number)
            .collect::<Vec<_>>()
            .into_iter()
            .enumerate()
        {
            pool.record(n, &filler, t0 + chrono::Duration::minutes(i as i64));
            pool.record(n, &filler, t0 + chrono::Duration::minutes(10));
        }
        let now = t0 + chrono::Duration::minutes(20);
        let (decision, trace) = decide(&rules, &lead("+14155550123", "local"), &pool, now);
        assert_eq!(
            decision,
            Decision::Defer {
                until: t0 + chrono::Duration::minutes(60) + chrono::Duration::milliseconds(250),
                reason: reason(
                    ReasonCode::AllNumbersAtLimit,
                    "every eligible number of route `local` is at a limit; the first frees 2026-03-04T21:00:00.250Z"
                ),
            }
        );
        assert_eq!(trace.excluded.len(), 5);
    }

    #[test]
    fn florida_leads_get_three_attempts_a_day() {
        let rules = rules();
        let mut pool = pool(&rules);
        let fl = lead("+13055550123", "local");
        let mut now = at("2026-03-04T09:00:00-05:00");
        for _ in 0..3 {
            let (decision, _) = decide(&rules, &fl, &pool, now);
            let (number, _) = dialed(&decision);
            pool.record(E164::parse(&number).unwrap(), &fl, now);
            now += chrono::Duration::hours(1);
        }
        let (decision, trace) = decide(&rules, &fl, &pool, now);
        assert!(
            matches!(&decision, Decision::Defer { until, reason }
            if reason.code == ReasonCode::LeadAttemptLimit && *until == at("2026-03-05T09:00:00.250-05:00")),
            "{decision:?}"
        );
        assert_eq!(trace.lead_attempts.len(), 1);
    }

    #[test]
    fn a_24h_cap_counts_calls_to_the_person_under_any_lead_id() {
        let rules = rules();
        let mut pool = pool(&rules);
        let mut now = at("2026-03-04T09:00:00-05:00");
        // Three rows of one list, one Florida person.
        for row in 1..=3 {
            let mut fl = lead("+13055550123", "local");
            fl.key = format!("row-{row}");
            let (decision, _) = decide(&rules, &fl, &pool, now);
            let (number, _) = dialed(&decision);
            pool.record(E164::parse(&number).unwrap(), &fl, now);
            now += chrono::Duration::hours(1);
        }
        let mut fourth = lead("+13055550123", "local");
        fourth.key = "row-4".into();
        let (decision, trace) = decide(&rules, &fourth, &pool, now);
        assert!(
            matches!(&decision, Decision::Defer { until, reason }
            if reason.code == ReasonCode::LeadAttemptLimit && *until == at("2026-03-05T09:00:00.250-05:00")),
            "{decision:?}"
        );
        assert!(
            trace
                .attempt_counts
                .iter()
                .any(|c| c.window == "per_24h" && c.used == 3),
            "{:?}",
            trace.attempt_counts
        );
        // Another person is not held back by it.
        let other = lead("+13055550124", "local");
        assert!(matches!(
            decide(&rules, &other, &pool, now).0,
            Decision::Dial { .. }
        ));
    }

    #[test]
    fn the_federal_window_narrows_wider_rules_unless_the_campaign_is_informational() {
        let wide = RULES.replace(
            r#"start: "08:00", end: "21:00""#,
            r#"start: "06:00", end: "23:00""#,
        );
        let informational = wide.replace(
            "    agent: sales\n",
            "    agent: sales\n    purpose: informational\n",
        );
        let compile = |text: &str| {
            let (rules, diagnostics) =
                crate::rules::compile_sources(&[(std::path::Path::new("r.yaml"), text)]);
            (rules.expect("valid rules"), diagnostics)
        };
        let (rules, warnings) = compile(&wide);
        assert!(
            warnings.iter().any(|d| d
                .message
                .contains("wider than the federal telemarketing window")),
            "{warnings:?}"
        );
        // 06:30 in Los Angeles.
        let california = lead("+14155550123", "local");
        let early = at("2026-12-08T14:30:00Z");
        let (decision, trace) = decide(&rules, &california, &pool(&rules), early);
        assert!(
            matches!(&decision, Decision::Defer { until, reason }
                if *until == at("2026-12-08T16:00:00Z") && reason.message.contains("47 CFR 64.1200")),
            "{decision:?}"
        );
        assert!(trace.calling_hours.unwrap().laws[0].starts_with("federal: TSR"));
        let (rules, warnings) = compile(&informational);
        assert!(
            warnings
                .iter()
                .any(|d| d.message.contains("purpose: informational")),
            "{warnings:?}"
        );
        let (decision, trace) = decide(&rules, &california, &pool(&rules), early);
        assert!(matches!(decision, Decision::Dial { .. }), "{decision:?}");
        assert!(
            trace
                .calling_hours
                .unwrap()
                .laws
                .iter()
                .any(|l| l.contains("not applied")),
            "the trace says the floor is lifted"
        );
    }

    #[test]
    fn round_robin_cycles_in_number_order() {
        let rules = rules();
        let mut pool = pool(&rules);
        let mut now = at(NOON_PACIFIC);
        let mut order = Vec::new();
        for i in 0..6 {
            let lead = lead(&format!("+1512555{:04}", 100 + i), "rotate");
            let (decision, _) = decide(&rules, &lead, &pool, now);
            let (number, _) = dialed(&decision);
            pool.record(E164::parse(&number).unwrap(), &lead, now);
            order.push(number);
            now += chrono::Duration::minutes(2);
        }
        assert_eq!(
            order,
            [
                "+12135550103",
                "+14155550100",
                "+14155550101",
                "+12135550103",
                "+14155550100",
                "+14155550101"
            ]
        );
    }

    #[test]
    fn weighted_shares_follow_weights() {
        let rules = rules();
        let mut pool = pool(&rules);
        let mut now = at(NOON_PACIFIC);
        let mut heavy = 0;
        for i in 0..8 {
            let lead = lead(&format!("+1512555{:04}", 100 + i), "weighted");
            let (decision, _) = decide(&rules, &lead, &pool, now);
            let (number, _) = dialed(&decision);
            heavy += usize::from(number == "+14155550101");
            pool.record(E164::parse(&number).unwrap(), &lead, now);
            now += chrono::Duration::seconds(61);
            if i % 2 == 1 {
                now += chrono::Duration::hours(1); // keep per_hour out of the way
            }
        }
        assert_eq!(heavy, 6, "weight 3 vs 1 gives 6 of 8 calls");
    }

    #[test]
    fn sticky_lead_keeps_its_number_while_it_is_usable() {
        let rules = rules();
        let mut pool = pool(&rules);
        let lead = lead("+15125550123", "sticky");
        let t0 = at(NOON_PACIFIC);
        let (first, _) = decide(&rules, &lead, &pool, t0);
        let (number, _) = dialed(&first);
        let number = E164::parse(&number).unwrap();
        pool.record(number, &lead, t0);
        let later = t0 + chrono::Duration::hours(3);
        let (again, trace) = decide(&rules, &lead, &pool, later);
        assert_eq!(dialed(&again), (number.to_string(), PickedBy::Sticky));
        assert!(trace.picked.unwrap().why.contains("kept"));

        // Detached upstream: the lead moves, and says why.
        let others: Vec<E164> = rules
            .numbers()
            .map(|n| n.number)
            .filter(|&n| n != number)
            .collect();
        pool.set_attached("m-1", others);
        let (moved, trace) = decide(&rules, &lead, &pool, later);
        assert_ne!(dialed(&moved).0, number.to_string());
        assert!(trace.sticky.unwrap().contains("not attached"));

        // Past the TTL, the assignment expires.
        pool.attach_all(&rules);
        let (expired, trace) = decide(&rules, &lead, &pool, t0 + chrono::Duration::days(8));
        assert_ne!(dialed(&expired).1, PickedBy::Sticky);
        assert!(trace.sticky.unwrap().contains("expired"));
    }

    /// `caller_id: different`: a redial never shows a caller ID an earlier attempt showed
    /// while another is eligible, even one outside the lead's area code; when every
    /// eligible one was shown, it reuses one and says so.
    #[test]
    fn a_redial_shows_a_caller_id_the_lead_has_not_seen() {
        let rules = rules();
        let mut pool = pool(&rules);
        let lead = lead("+14155550123", "redial-different");
        let mut t = at(NOON_PACIFIC);
        let mut shown: Vec<String> = Vec::new();
        for attempt in 1..=3 {
            let (decision, trace) = decide(&rules, &lead, &pool, t);
            let (number, _) = dialed(&decision);
            assert!(
                !shown.contains(&number),
                "attempt {attempt}: {number} again"
            );
            if attempt > 1 {
                let cadence = trace.cadence.unwrap();
                assert!(
                    cadence.contains(&format!("attempt {attempt} of 4")),
                    "{cadence}"
                );
                assert!(cadence.contains("different from"), "{cadence}");
            }
            shown.push(number.clone());
            pool.record(E164::parse(&number).unwrap(), &lead, t);
            t += chrono::Duration::hours(2);
        }
        assert!(shown[0].starts_with("+1415") && shown[1].starts_with("+1415"));
        assert_eq!(
            shown[2], "+12135550103",
            "another area before a number seen"
        );
        let (fourth, trace) = decide(&rules, &lead, &pool, t);
        let (number, _) = dialed(&fourth);
        assert!(shown.contains(&number));
        assert!(
            trace
                .picked
                .unwrap()
                .why
                .contains("shown to this lead before"),
            "a reuse is said"
        );
    }

    /// `caller_id: same`: the last caller ID while it is usable, else as the route picks.
    #[test]
    fn a_redial_keeps_the_last_caller_id_while_it_is_usable() {
        let rules = rules();
        let mut pool = pool(&rules);
        let lead = lead("+14155550123", "redial-same");
        let t0 = at(NOON_PACIFIC);
        let (first, trace) = decide(&rules, &lead, &pool, t0);
        assert!(trace.cadence.is_none(), "a first attempt is no redial");
        let number = E164::parse(&dialed(&first).0).unwrap();
        pool.record(number, &lead, t0);
        let later = t0 + chrono::Duration::hours(2);
        let (again, trace) = decide(&rules, &lead, &pool, later);
        assert_eq!(dialed(&again).0, number.to_string());
        assert!(trace.picked.unwrap().why.contains("caller_id: same"));
        let others: Vec<E164> = rules
            .numbers()
            .map(|n| n.number)
            .filter(|&n| n != number)
            .collect();
        pool.set_attached("m-1", others);
        let (moved, trace) = decide(&rules, &lead, &pool, later);
        assert_ne!(dialed(&moved).0, number.to_string());
        assert!(trace.cadence.unwrap().contains("unavailable"));
    }

    #[test]
    fn random_is_deterministic_for_a_seed() {
        let text = RULES.replace("strategy: weighted", "strategy: random");
        let (rules, _) = compile_sources(&[(Path::new("t.yaml"), text.as_str())]);
        let rules = rules.unwrap();
        let picks = |seed: u64| -> Vec<String> {
            let mut pool = PoolState::new(seed);
            pool.attach_all(&rules);
            (0..20)
                .map(|i| {
                    dialed(
                        &decide(
                            &rules,
                            &lead(&format!("+1512555{:04}", 100 + i), "weighted"),
                            &pool,
                            at(NOON_PACIFIC),
                        )
                        .0,
                    )
                    .0
                })
                .collect()
        };
        assert_eq!(picks(1), picks(1));
        assert_ne!(picks(1), picks(2));
    }

    #[test]
    fn not_before_defers_to_that_moment() {
        let rules = rules();
        let lead = Lead::from_json(r#"{"phone":"+14155550123","name":"N","campaign":"local","not_before":"2026-03-04T14:00:00-08:00"}"#).unwrap();
        let (decision, _) = decide(&rules, &lead, &pool(&rules), at(NOON_PACIFIC));
        assert!(
            matches!(decision, Decision::Defer { until, reason } if reason.code == ReasonCode::NotBefore && until == at("2026-03-04T14:00:00-08:00"))
        );
    }

    #[test]
    fn lead_without_a_known_zone_is_rejected() {
        let rules = rules();
        let (decision, _) = decide(
            &rules,
            &lead("+18005550123", "local"),
            &pool(&rules),
            at(NOON_PACIFIC),
        );
        assert!(
            matches!(decision, Decision::Reject { reason } if reason.code == ReasonCode::NoTimezone)
        );
    }
}
