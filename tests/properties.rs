//! Properties of the engine over random rule sets, pools, lead streams and clocks, checked
//! against independent oracles (counting calls per window by hand, reading wall clocks).

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

use callroute::engine::{Decision, decide};
use callroute::lead::Lead;
use callroute::phone::E164;
use callroute::rules::{RuleSet, compile_sources};
use callroute::usage::PoolState;

/// Area codes across zones, including Alaska (two zones) and Arizona (no DST).
const AREA_CODES: &[u16] = &[415, 213, 305, 212, 312, 907, 602, 702, 512, 617];
const LEAD_ZONES: &[Option<&str>] = &[
    None,
    Some("America/New_York"),
    Some("Europe/Berlin"),
    Some("Australia/Lord_Howe"),
];
const DAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const STRATEGIES: &[&str] = &["round_robin", "least_recently_used", "weighted", "random"];
/// Days just before DST changes: US spring/fall, EU spring/fall, Lord Howe fall/spring.
const CLOCK_STARTS: &[&str] = &[
    "2026-03-07T00:00:00Z",
    "2026-10-31T00:00:00Z",
    "2026-03-28T00:00:00Z",
    "2026-10-24T00:00:00Z",
    "2026-04-04T00:00:00Z",
    "2026-10-03T00:00:00Z",
];

#[derive(Debug, Clone)]
struct Scenario {
    numbers: Vec<(u16, u16, bool)>, // area code, line, brand a?
    per_minute: u32,
    per_hour: u32,
    per_24h: u32,
    per_day: u32,
    min_gap_s: u32,
    lead_per_24h: u32,
    start_minutes: u32,
    length_minutes: u32,
    days: Vec<bool>,
    routes: Vec<(u8, u8, Vec<u8>, u8, bool)>, // when, selector, tiers, strategy, sticky
    leads: Vec<(usize, u16, usize, u32)>,     // area code idx, line, zone idx, step seconds
    clock: usize,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec(
            (prop::sample::select(AREA_CODES), 100u16..200, any::<bool>()),
            2..12,
        ),
        (1u32..4, 2u32..12, 3u32..40, 3u32..40, 0u32..300, 1u32..6),
        (
            0u32..12 * 60,
            60u32..14 * 60,
            prop::collection::vec(any::<bool>(), 7),
        ),
        prop::collection::vec(
            (
                0u8..3,
                0u8..3,
                prop::collection::vec(0u8..5, 0..4),
                0u8..4,
                any::<bool>(),
            ),
            1..4,
        ),
        prop::collection::vec(
            (
                0..AREA_CODES.len(),
                1000u16..1100,
                0..LEAD_ZONES.len(),
                0u32..1800,
            ),
            20..120,
        ),
        0..CLOCK_STARTS.len(),
    )
        .prop_map(
            |(mut numbers, limits, hours, routes, leads, clock)| Scenario {
                numbers: {
                    numbers.sort();
                    numbers.dedup_by_key(|(area, line, _)| (*area, *line));
                    numbers
                },
                per_minute: limits.0,
                per_hour: limits.1,
                per_24h: limits.2,
                per_day: limits.3,
                min_gap_s: limits.4,
                lead_per_24h: limits.5,
                start_minutes: hours.0,
                length_minutes: hours.1,
                days: hours.2,
                routes,
                leads,
                clock,
            },
        )
}

fn number_text(area: u16, line: u16) -> String {
    format!("+1{area}555{line:04}")
}

impl Scenario {
    fn end_minutes(&self) -> u32 {
        (self.start_minutes + self.length_minutes).min(23 * 60 + 59)
    }

    fn yaml(&self) -> String {
        let mut y = String::from("agents: { a: { model_id: m } }\nlimits:\n  default: ");
        y += &format!(
            "{{ per_minute: {}, per_hour: {}, per_24h: {}, per_day: {}{} }}\nnumbers:\n",
            self.per_minute,
            self.per_hour,
            self.per_24h,
            self.per_day,
            if self.min_gap_s > 0 {
                format!(", min_gap: {}s", self.min_gap_s)
            } else {
                String::new()
            }
        );
        for (area, line, brand_a) in &self.numbers {
            y += &format!(
                "  \"{}\": {{ brand: {} }}\n",
                number_text(*area, *line),
                if *brand_a { "a" } else { "b" }
            );
        }
        let days: Vec<&str> = DAYS
            .iter()
            .zip(&self.days)
            .filter(|(_, on)| **on)
            .map(|(d, _)| *d)
            .collect();
        let hm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
        y += &format!(
            "calling_hours:\n  default: {{ days: [{}], start: \"{}\", end: \"{}\" }}\n",
            days.join(", "),
            hm(self.start_minutes),
            hm(self.end_minutes())
        );
        y += &format!(
            "lead_attempts:\n  default: {{ per_24h: {} }}\n",
            self.lead_per_24h
        );
        y += "campaigns:\n  c:\n    agent: a\n    routes:\n";
        let numbers: Vec<String> = self
            .numbers
            .iter()
            .map(|(a, l, _)| format!("\"{}\"", number_text(*a, *l)))
            .collect();
        for (when, selector, tiers, strategy, sticky) in &self.routes {
            let when = ["{}", "{ brand: a }", "{ state: [CA, FL, NY] }"][*when as usize];
            let selector = match selector {
                0 => "all".to_string(),
                1 => format!("[{}]", numbers[..numbers.len().div_ceil(2)].join(", ")),
                _ => format!("[{}]", numbers[numbers.len() / 2..].join(", ")),
            };
            let mut tier_names: Vec<&str> = Vec::new();
            for t in tiers {
                let name = ["area_code", "state", "timezone", "country", "any"][*t as usize];
                if !tier_names.contains(&name) && !tier_names.contains(&"any") {
                    tier_names.push(name);
                }
            }
            y += &format!(
                "      - when: {when}\n        numbers: {selector}\n        strategy: {}\n",
                STRATEGIES[*strategy as usize]
            );
            if !tier_names.is_empty() {
                y += &format!("        local_presence: [{}]\n", tier_names.join(", "));
            }
            if *sticky {
                y += "        sticky: 2d\n";
            }
        }
        y
    }

    fn lead(&self, index: usize) -> Lead {
        let (area, line, zone, _) = self.leads[index];
        let zone = LEAD_ZONES[zone]
            .map(|z| format!(r#","timezone":"{z}""#))
            .unwrap_or_default();
        let brand = if index.is_multiple_of(3) {
            r#","brand":"a""#
        } else {
            ""
        };
        Lead::from_json(&format!(
            r#"{{"id":"L{}","phone":"+1{}555{line:04}","name":"N","campaign":"c"{zone}{brand}}}"#,
            line % 40, // repeats ids, so the same lead is redialed
            AREA_CODES[area]
        ))
        .unwrap()
    }
}

fn compile(yaml: &str) -> RuleSet {
    let (rules, diagnostics) = compile_sources(&[(Path::new("gen.yaml"), yaml)]);
    rules.unwrap_or_else(|| panic!("generated rules do not compile: {diagnostics:?}\n{yaml}"))
}

/// The independent calling-hours check: read the wall clock in each of the lead's zones.
fn window_open(s: &Scenario, zone: Tz, at: DateTime<Utc>) -> bool {
    let local = at.with_timezone(&zone);
    let minute = local.hour() * 60 + local.minute();
    s.days[local.weekday().num_days_from_monday() as usize]
        && minute >= s.start_minutes
        && minute < s.end_minutes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A stream of decisions, each dial recorded, never exceeds a window, never calls outside
    /// the lead's hours, never leaves the matched route's set, and never defers to "now".
    #[test]
    fn decisions_respect_every_limit_hours_and_route(s in scenario()) {
        let yaml = s.yaml();
        let rules = compile(&yaml);
        let mut pool = PoolState::new(42);
        pool.attach_all(&rules);
        let mut now: DateTime<Utc> = CLOCK_STARTS[s.clock].parse().unwrap();
        let mut calls_by_number: HashMap<E164, Vec<DateTime<Utc>>> = HashMap::new();
        let mut calls_by_lead: HashMap<String, Vec<DateTime<Utc>>> = HashMap::new();
        for index in 0..s.leads.len() {
            now += Duration::seconds(i64::from(s.leads[index].3));
            let lead = s.lead(index);
            let (decision, trace) = decide(&rules, &lead, &pool, now);
            match decision {
                Decision::Dial { from_phone_number: number, route, .. } => {
                    for zone in &lead.zones {
                        prop_assert!(window_open(&s, *zone, now), "dialed {} at {now} outside hours in {zone}", lead.key);
                    }
                    let campaign = rules.campaign("c").unwrap();
                    let route = campaign.routes.iter().find(|r| *r.name == *route).unwrap();
                    let id = rules.number_id(number).unwrap();
                    prop_assert!(route.selection.member_set.contains(&id), "{number} not in route {}", route.name);
                    pool.record(number, &lead, now);
                    let uses = calls_by_number.entry(number).or_default();
                    uses.push(now);
                    let within = |width: Duration| uses.iter().filter(|&&t| t > now - width).count() as u32;
                    prop_assert!(within(Duration::minutes(1)) <= s.per_minute, "per_minute exceeded by {number}");
                    prop_assert!(within(Duration::hours(1)) <= s.per_hour, "per_hour exceeded by {number}");
                    prop_assert!(within(Duration::hours(24)) <= s.per_24h, "per_24h exceeded by {number}");
                    let day_zone = rules.number(number).unwrap().day_zone;
                    let today = now.with_timezone(&day_zone).date_naive();
                    let same_day = uses.iter().filter(|t| t.with_timezone(&day_zone).date_naive() == today).count() as u32;
                    prop_assert!(same_day <= s.per_day, "per_day exceeded by {number}");
                    if uses.len() >= 2 {
                        let gap = now - uses[uses.len() - 2];
                        prop_assert!(gap >= Duration::seconds(i64::from(s.min_gap_s)), "min_gap broken by {number}");
                    }
                    let attempts = calls_by_lead.entry(lead.key.clone()).or_default();
                    attempts.push(now);
                    let recent = attempts.iter().filter(|&&t| t > now - Duration::hours(24)).count() as u32;
                    prop_assert!(recent <= s.lead_per_24h, "lead {} attempted {recent} times in 24 h", lead.key);
                }
                Decision::Defer { until, reason } => {
                    prop_assert!(until > now, "defer to {until} is not in the future ({reason:?})");
                    // Nothing may change before `until`: halfway there, still no dial.
                    let halfway = now + (until - now) / 2;
                    let (again, _) = decide(&rules, &lead, &pool, halfway);
                    prop_assert!(!matches!(again, Decision::Dial { .. }), "deferred to {until} but dials at {halfway}: {trace:?}");
                }
                Decision::Hold { .. } | Decision::Reject { .. } => {}
            }
        }
    }

    /// Rendezvous stickiness: attaching one more number only moves leads to that number;
    /// detaching one only moves the leads that had it.
    #[test]
    fn sticky_choice_moves_only_the_leads_that_must(
        areas in prop::collection::vec((prop::sample::select(AREA_CODES), 100u16..400), 3..20),
        leads in prop::collection::vec((0..AREA_CODES.len(), 1000u16..2000), 1..60),
        tiered in any::<bool>(),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut numbers: Vec<String> = areas.iter().map(|(a, l)| number_text(*a, *l)).collect();
        numbers.sort();
        numbers.dedup();
        prop_assume!(numbers.len() >= 3);
        let tiers = if tiered { "\n        local_presence: [area_code, state, any]" } else { "" };
        let yaml = format!(
            "agents: {{ a: {{ model_id: m }} }}\nstate_laws: false\nnumbers:\n{}campaigns:\n  c:\n    agent: a\n    routes:\n      - numbers: all\n        sticky: 30d{tiers}\n",
            numbers.iter().map(|n| format!("  \"{n}\": {{}}\n")).collect::<String>()
        );
        let rules = compile(&yaml);
        let all: Vec<E164> = numbers.iter().map(|n| E164::parse(n).unwrap()).collect();
        let changed = pick.index(all.len());
        let now: DateTime<Utc> = "2026-03-04T20:00:00Z".parse().unwrap();
        let choices = |attached: &[E164]| -> Vec<E164> {
            let mut pool = PoolState::new(1);
            pool.set_attached("m", attached.iter().copied());
            leads.iter().map(|(area, line)| {
                let lead = Lead::from_json(&format!(r#"{{"phone":"+1{}555{line:04}","name":"N","campaign":"c","timezone":"UTC"}}"#, AREA_CODES[*area])).unwrap();
                match decide(&rules, &lead, &pool, now).0 {
                    Decision::Dial { from_phone_number, .. } => from_phone_number,
                    other => panic!("expected a dial: {other:?}"),
                }
            }).collect()
        };
        let without: Vec<E164> = all.iter().copied().filter(|&n| n != all[changed]).collect();
        let before = choices(&without);
        let after = choices(&all);
        for (b, a) in before.iter().zip(&after) {
            prop_assert!(a == b || *a == all[changed], "adding {} moved a lead from {b} to {a}", all[changed]);
        }
    }
}

/// A lead's sticky number survives unrelated pool changes on redial.
#[test]
fn redial_keeps_the_recorded_number_when_others_come_and_go() {
    let yaml = "agents: { a: { model_id: m } }\nnumbers:\n  \"+14155550100\": {}\n  \"+14155550101\": {}\n  \"+12125550107\": {}\ncampaigns:\n  c:\n    agent: a\n    routes:\n      - numbers: all\n        strategy: least_recently_used\n        sticky: 7d\n";
    let rules = compile(yaml);
    let lead = Lead::from_json(r#"{"phone":"+14155550123","name":"N","campaign":"c"}"#).unwrap();
    let mut pool = PoolState::new(1);
    pool.attach_all(&rules);
    let t0: DateTime<Utc> = "2026-03-04T20:00:00Z".parse().unwrap();
    let Decision::Dial {
        from_phone_number: first,
        ..
    } = decide(&rules, &lead, &pool, t0).0
    else {
        panic!()
    };
    pool.record(first, &lead, t0);
    let others: Vec<E164> = rules
        .numbers()
        .map(|n| n.number)
        .filter(|&n| n != first)
        .collect();
    for attached in [
        vec![first],
        vec![first, others[0]],
        vec![first, others[1]],
        [vec![first], others.clone()].concat(),
    ] {
        pool.set_attached("m", attached);
        let Decision::Dial {
            from_phone_number, ..
        } = decide(&rules, &lead, &pool, t0 + Duration::hours(5)).0
        else {
            panic!()
        };
        assert_eq!(from_phone_number, first);
    }
}
