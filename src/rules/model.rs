//! The compiled, immutable rule set the engine runs on. Built only by `compile.rs`, after
//! every check passed; nothing here can be invalid.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, NaiveTime, Weekday};
use chrono_tz::Tz;
use serde::Serialize;

use crate::geo::NumberRegion;
use crate::phone::E164;

/// Index of a number in `RuleSet::numbers`.
pub type NumberId = u32;

#[derive(Debug, Clone)]
pub struct RuleSet {
    pub(crate) numbers: Vec<NumberInfo>,
    pub(crate) number_ids: HashMap<E164, NumberId>,
    pub(crate) agents: BTreeMap<String, Agent>,
    pub(crate) campaigns: BTreeMap<String, Campaign>,
    pub(crate) calling_hours: Layered<HoursRule>,
    pub(crate) lead_attempts: Layered<AttemptRule>,
    /// Per agent `model_id`, the numbers its campaigns' routes may dial.
    pub(crate) agent_numbers: HashMap<String, Vec<E164>>,
    /// Each number's health policy, by `NumberId`.
    pub(crate) health: Vec<crate::health::Policy>,
    pub(crate) default_health: crate::health::Policy,
    /// Suppression lists, opt-outs, state laws, holidays and closures.
    pub compliance: crate::compliance::Compliance,
    /// xxh3 of the files' names and contents: equal hashes mean identical rules.
    pub content_hash: u64,
}

/// How a rules hash is shown everywhere (logs, status, metrics, `check`, systemd): 16 hex
/// digits.
pub fn hash_text(hash: u64) -> String {
    format!("{hash:016x}")
}

impl RuleSet {
    /// This rule set's content hash as shown to people.
    pub fn hash_text(&self) -> String {
        hash_text(self.content_hash)
    }

    pub fn numbers(&self) -> impl Iterator<Item = &NumberInfo> {
        self.numbers.iter()
    }

    pub fn number(&self, number: E164) -> Option<&NumberInfo> {
        self.number_ids
            .get(&number)
            .map(|&id| &self.numbers[id as usize])
    }

    pub fn number_id(&self, number: E164) -> Option<NumberId> {
        self.number_ids.get(&number).copied()
    }

    /// Every number some route of a campaign of `model_id`'s agent may dial, in number order
    /// (worked out once, when the rules are built: health asks at every call's end).
    pub fn numbers_for_agent(&self, model_id: &str) -> &[E164] {
        self.agent_numbers.get(model_id).map_or(&[], Vec::as_slice)
    }

    /// Fills `agent_numbers` from the campaigns' routes.
    pub(crate) fn index_agent_numbers(&mut self) {
        let mut by_agent: HashMap<String, Vec<NumberId>> = HashMap::new();
        for campaign in self.campaigns.values() {
            by_agent
                .entry(campaign.model_id.clone())
                .or_default()
                .extend(
                    campaign
                        .routes
                        .iter()
                        .flat_map(|r| r.selection.members.iter().copied()),
                );
        }
        self.agent_numbers = by_agent
            .into_iter()
            .map(|(model_id, mut ids)| {
                ids.sort_unstable();
                ids.dedup();
                let numbers = ids
                    .into_iter()
                    .map(|id| self.numbers[id as usize].number)
                    .collect();
                (model_id, numbers)
            })
            .collect();
    }

    pub fn agents(&self) -> impl Iterator<Item = &Agent> {
        self.agents.values()
    }

    pub fn campaign(&self, name: &str) -> Option<&Campaign> {
        self.campaigns.get(name)
    }

    pub fn campaigns(&self) -> impl Iterator<Item = &Campaign> {
        self.campaigns.values()
    }

    /// Every cadence of the rules: campaigns' and routes' own.
    pub fn cadences(&self) -> impl Iterator<Item = &crate::cadence::Cadence> {
        self.campaigns.values().flat_map(|c| {
            c.cadence
                .iter()
                .chain(c.routes.iter().filter_map(|r| r.cadence.as_ref()))
        })
    }

    pub fn agent(&self, name: &str) -> Option<&Agent> {
        self.agents.get(name)
    }

    /// The health policy of `number` (the default for a number the rules do not have).
    pub fn health_policy(&self, number: E164) -> &crate::health::Policy {
        self.number_id(number)
            .and_then(|id| self.health.get(id as usize))
            .unwrap_or(&self.default_health)
    }

    /// This rule set with more numbers, each `(new, like)` a copy of `like` (brand, labels,
    /// weight, limits) at the new number's region, in every route that has `like`. For
    /// what-if runs (`simulate`'s capacity advice); the content hash is kept.
    pub fn with_numbers_like(&self, additions: &[(E164, E164)]) -> RuleSet {
        let mut rules = self.clone();
        let mut copies: HashMap<NumberId, Vec<NumberId>> = HashMap::new();
        for &(new, like) in additions {
            let Some(model) = self.number(like) else {
                continue;
            };
            if rules.number_ids.contains_key(&new) {
                continue;
            }
            let region = new.region();
            let id = rules.numbers.len() as NumberId;
            rules.numbers.push(NumberInfo {
                number: new,
                day_zone: region.zones.first().copied().unwrap_or(model.day_zone),
                region,
                ..model.clone()
            });
            rules.number_ids.insert(new, id);
            let policy = self.health_policy(like).clone();
            rules.health.push(policy);
            copies.entry(self.number_ids[&like]).or_default().push(id);
        }
        for route in rules.campaigns.values_mut().flat_map(|c| &mut c.routes) {
            let added: Vec<NumberId> = route
                .selection
                .members
                .iter()
                .flat_map(|id| copies.get(id).into_iter().flatten().copied())
                .collect();
            if !added.is_empty() {
                let mut members = route.selection.members.clone();
                members.extend(added);
                route.selection = Arc::new(Selection::new(members, &rules.numbers));
            }
        }
        rules.index_agent_numbers();
        rules
    }
}

#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    pub model_id: String,
    /// `callroute pool apply` keeps its attached pool as the rules say.
    pub manage_pool: bool,
    /// The Synthflow account (of the daemon's configuration) the agent lives in; `None`:
    /// the first.
    pub account: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NumberInfo {
    pub number: E164,
    pub brand: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub weight: u32,
    pub region: NumberRegion,
    /// Zone in which `per_day` counts calendar days.
    pub day_zone: Tz,
    /// The default profile, or the number's `limit_profile`, with its own `limits` on top.
    pub limits: Limits,
    /// Only the windows the number sets itself (a route may not loosen these).
    pub own_limits: Limits,
    /// The day it joined the pool, if the rules say; else its first use counts.
    pub since: Option<NaiveDate>,
}

/// Per-number usage windows. `None` means no limit on that window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub per_minute: Option<u32>,
    pub per_hour: Option<u32>,
    pub per_24h: Option<u32>,
    pub per_day: Option<u32>,
    #[serde(with = "humantime_serde_opt")]
    pub min_gap: Option<Duration>,
    /// A daily cap while the number is new.
    pub warmup: Option<crate::health::Warmup>,
}

impl Limits {
    /// `self` with every window `over` sets replaced.
    pub fn overlay(self, over: Limits) -> Limits {
        Limits {
            per_minute: over.per_minute.or(self.per_minute),
            per_hour: over.per_hour.or(self.per_hour),
            per_24h: over.per_24h.or(self.per_24h),
            per_day: over.per_day.or(self.per_day),
            min_gap: over.min_gap.or(self.min_gap),
            warmup: over.warmup.or(self.warmup),
        }
    }

    /// How far back uses of a number count against these limits (a local day lasts up to
    /// 25 h); `None` when nothing limits it.
    pub fn longest_window(&self) -> Option<chrono::Duration> {
        let day = chrono::Duration::hours(25);
        [
            self.per_minute.map(|_| chrono::Duration::minutes(1)),
            self.per_hour.map(|_| chrono::Duration::hours(1)),
            self.per_24h.map(|_| chrono::Duration::hours(24)),
            self.per_day.map(|_| day),
            self.warmup.map(|_| day),
            self.min_gap
                .and_then(|gap| chrono::Duration::from_std(gap).ok()),
        ]
        .into_iter()
        .flatten()
        .max()
    }

    /// The stricter value of every window set in either.
    pub fn strictest(self, other: Limits) -> Limits {
        fn lower(a: Option<u32>, b: Option<u32>) -> Option<u32> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        Limits {
            per_minute: lower(self.per_minute, other.per_minute),
            per_hour: lower(self.per_hour, other.per_hour),
            per_24h: lower(self.per_24h, other.per_24h),
            per_day: lower(self.per_day, other.per_day),
            min_gap: match (self.min_gap, other.min_gap) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            // The slower ramp: the lower start, the lower end, the longer.
            warmup: match (self.warmup, other.warmup) {
                (Some(a), Some(b)) => Some(crate::health::Warmup {
                    from: a.from.min(b.from),
                    to: a.to.min(b.to),
                    days: a.days.max(b.days),
                }),
                (a, b) => a.or(b),
            },
        }
    }

    /// `window`'s value as written in the rules (`"40"`, `"20s"`), if it is set.
    pub fn value(&self, window: &str) -> Option<String> {
        match window {
            "per_minute" => self.per_minute.map(|n| n.to_string()),
            "per_hour" => self.per_hour.map(|n| n.to_string()),
            "per_24h" => self.per_24h.map(|n| n.to_string()),
            "per_day" => self.per_day.map(|n| n.to_string()),
            "min_gap" => self
                .min_gap
                .map(|gap| humantime::format_duration(gap).to_string()),
            _ => None,
        }
    }

    /// Every window that is set, with its value as written: `[("per_hour", "40"), ...]`.
    pub fn written(&self) -> Vec<(&'static str, String)> {
        ["per_minute", "per_hour", "per_24h", "per_day", "min_gap"]
            .into_iter()
            .filter_map(|window| self.value(window).map(|value| (window, value)))
            .collect()
    }

    pub fn is_unlimited(&self) -> bool {
        *self == Limits::default()
    }
}

mod humantime_serde_opt {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(
        value: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.collect_str(&humantime::format_duration(*d)),
            None => s.serialize_none(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Campaign {
    pub name: String,
    pub agent: String,
    pub model_id: String,
    /// Brand of leads that do not name one.
    pub brand: Option<String>,
    pub prompt: Option<String>,
    pub greeting: Option<String>,
    pub routes: Vec<Route>,
    /// Leads of this campaign need consent (all, or those bound by some states).
    pub consent: Option<crate::compliance::ConsentRule>,
    /// Telemarketing calls are held to the federal window; informational ones are not.
    pub purpose: crate::compliance::Purpose,
    /// Redials by outcome (`None`: each lead is called once).
    pub cadence: Option<crate::cadence::Cadence>,
}

impl Campaign {
    /// The cadence a lead called through `route` follows: the route's own, else the
    /// campaign's.
    pub fn cadence_for<'a>(
        &'a self,
        route: Option<&'a Route>,
    ) -> Option<&'a crate::cadence::Cadence> {
        route
            .and_then(|r| r.cadence.as_ref())
            .or(self.cadence.as_ref())
    }

    /// A lead's brand: its own, else the campaign's (routes match it, lists are scoped by it).
    pub fn brand_of<'a>(&'a self, lead: &'a crate::lead::Lead) -> Option<&'a str> {
        lead.brand.as_deref().or(self.brand.as_deref())
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Shared with every trace that mentions the route, so tracing costs no copies.
    pub name: Arc<str>,
    /// `file:line` of the route, for traces and warnings.
    pub defined_at: Arc<str>,
    pub when: Condition,
    pub selection: Arc<Selection>,
    pub tiers: Vec<Tier>,
    pub strategy: Strategy,
    pub strategy_explicit: bool,
    pub sticky: Option<Duration>,
    pub limits: Limits,
    /// The route's own cadence: replaces the campaign's for leads this route calls.
    pub cadence: Option<crate::cadence::Cadence>,
}

impl Route {
    /// The limits a call from `number` on this route is held to: per window, the stricter
    /// of the number's (its profile and its own) and the route's. A route can only tighten.
    pub fn limits_for(&self, number: &NumberInfo) -> Limits {
        number.limits.strictest(self.limits)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    RoundRobin,
    LeastRecentlyUsed,
    Weighted,
    Random,
    /// Sticky routes without an explicit strategy: weighted rendezvous hashing on the lead.
    Rendezvous,
}

impl Strategy {
    pub const NAMES: &'static [&'static str] =
        &["round_robin", "least_recently_used", "weighted", "random"];

    pub fn parse(name: &str) -> Option<Strategy> {
        Some(match name {
            "round_robin" => Strategy::RoundRobin,
            "least_recently_used" => Strategy::LeastRecentlyUsed,
            "weighted" => Strategy::Weighted,
            "random" => Strategy::Random,
            _ => return None,
        })
    }
}

/// Local-presence tiers, tried in the order a route lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    AreaCode,
    State,
    Timezone,
    Country,
    Any,
}

impl Tier {
    pub const NAMES: &'static [&'static str] =
        &["area_code", "state", "timezone", "country", "any"];

    pub fn parse(name: &str) -> Option<Tier> {
        Some(match name {
            "area_code" => Tier::AreaCode,
            "state" => Tier::State,
            "timezone" => Tier::Timezone,
            "country" => Tier::Country,
            "any" => Tier::Any,
            _ => return None,
        })
    }
}

/// A conjunction of set-membership tests. Empty means "always".
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash)]
pub struct Condition {
    pub brand: Option<Vec<String>>,
    pub country: Option<Vec<String>>,
    pub state: Option<Vec<String>>,
    pub area_code: Option<Vec<u16>>,
    pub timezone: Option<Vec<Tz>>,
    pub labels: Vec<(String, Vec<String>)>,
}

impl Condition {
    pub fn is_always(&self) -> bool {
        *self == Condition::default()
    }

    /// True when every lead that satisfies `other` satisfies `self` too: a route with
    /// `self` above one with `other` leaves it nothing to match.
    pub fn covers(&self, other: &Condition) -> bool {
        fn within<T: PartialEq>(broad: &Option<Vec<T>>, narrow: &Option<Vec<T>>) -> bool {
            match (broad, narrow) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(broad), Some(narrow)) => narrow.iter().all(|v| broad.contains(v)),
            }
        }
        within(&self.brand, &other.brand)
            && within(&self.country, &other.country)
            && within(&self.state, &other.state)
            && within(&self.area_code, &other.area_code)
            && within(&self.timezone, &other.timezone)
            && self.labels.iter().all(|(key, values)| {
                other
                    .labels
                    .iter()
                    .any(|(k, narrow)| k == key && narrow.iter().all(|v| values.contains(v)))
            })
    }
}

/// Facts a condition is tested against (a lead's or a number's).
pub struct Facts<'a> {
    pub brand: Option<&'a str>,
    pub country: Option<&'a str>,
    pub states: &'a [String],
    pub area_code: Option<u16>,
    pub zones: &'a [Tz],
    pub labels: &'a BTreeMap<String, String>,
}

impl Condition {
    /// `None` when it matches, or the first key that does not.
    pub fn first_mismatch(&self, facts: &Facts) -> Option<&'static str> {
        fn has(set: &Option<Vec<String>>, value: Option<&str>) -> bool {
            set.as_ref()
                .is_none_or(|set| value.is_some_and(|v| set.iter().any(|s| s == v)))
        }
        if !has(&self.brand, facts.brand) {
            return Some("brand");
        }
        if !has(&self.country, facts.country) {
            return Some("country");
        }
        if let Some(states) = &self.state
            && !facts.states.iter().any(|s| states.contains(s))
        {
            return Some("state");
        }
        if let Some(codes) = &self.area_code
            && !facts.area_code.is_some_and(|c| codes.contains(&c))
        {
            return Some("area_code");
        }
        if let Some(zones) = &self.timezone
            && !facts.zones.iter().any(|z| zones.contains(z))
        {
            return Some("timezone");
        }
        for (key, values) in &self.labels {
            if !facts.labels.get(key).is_some_and(|v| values.contains(v)) {
                return Some("labels");
            }
        }
        None
    }
}

/// The numbers a route may use, indexed for each local-presence tier so that finding the
/// local candidates costs the size of the tier, not of the pool.
#[derive(Debug, Default)]
pub struct Selection {
    pub members: Vec<NumberId>,
    pub member_set: HashSet<NumberId>,
    pub by_area_code: HashMap<u16, Vec<NumberId>>,
    pub by_state: HashMap<String, Vec<NumberId>>,
    pub by_zone: HashMap<Tz, Vec<NumberId>>,
    pub by_country: HashMap<String, Vec<NumberId>>,
}

impl Selection {
    pub fn new(members: Vec<NumberId>, numbers: &[NumberInfo]) -> Selection {
        let mut selection = Selection {
            member_set: members.iter().copied().collect(),
            ..Selection::default()
        };
        for &id in &members {
            let info = &numbers[id as usize];
            if let Some(code) = info.region.area_code {
                selection.by_area_code.entry(code).or_default().push(id);
            }
            for state in &info.region.states {
                selection
                    .by_state
                    .entry(state.clone())
                    .or_default()
                    .push(id);
            }
            for zone in zone_list(info) {
                selection.by_zone.entry(zone).or_default().push(id);
            }
            if let Some(country) = &info.region.country {
                selection
                    .by_country
                    .entry(country.clone())
                    .or_default()
                    .push(id);
            }
        }
        selection.members = members;
        selection
    }
}

/// The zones a number is in: its region's, or the zone it was given in the rules.
pub fn zone_list(info: &NumberInfo) -> Vec<Tz> {
    if info.region.zones.is_empty() {
        vec![info.day_zone]
    } else {
        info.region.zones.clone()
    }
}

/// A default with per-country and per-state overrides; the most specific set field wins.
#[derive(Debug, Clone, Default)]
pub struct Layered<T> {
    pub default: T,
    pub countries: HashMap<String, T>,
    pub states: HashMap<String, T>,
}

/// Calling hours as written in one layer; unset fields fall through to the layer below.
#[derive(Debug, Clone, Default)]
pub struct HoursRule {
    pub days: Option<Vec<Weekday>>,
    pub start: Option<NaiveTime>,
    pub end: Option<NaiveTime>,
    pub by_day: BTreeMap<u8, (NaiveTime, NaiveTime)>,
    pub blackout_dates: Vec<NaiveDate>,
}

impl HoursRule {
    /// Open from `start` to `end` on each of `days`.
    pub fn daily(days: &[Weekday], start: NaiveTime, end: NaiveTime) -> HoursRule {
        HoursRule {
            days: Some(days.to_vec()),
            start: Some(start),
            end: Some(end),
            ..HoursRule::default()
        }
    }
}

/// Per-lead attempt limits as written in one layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttemptRule {
    pub per_24h: Option<u32>,
    pub max_total: Option<u32>,
    pub min_gap: Option<Duration>,
}
