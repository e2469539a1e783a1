//! The rules files exactly as written: serde types with a source location on every value a
//! later check may need to point at. Nothing here is validated beyond YAML shape; see
//! `compile.rs` for the meaning.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// One rules file. Every section is optional; the files of a directory are merged.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub agents: Option<SpannedMap<RawAgent>>,
    pub numbers: Option<SpannedMap<RawNumber>>,
    pub limits: Option<SpannedMap<RawLimits>>,
    pub calling_hours: Option<RawOverrides<RawHours>>,
    pub lead_attempts: Option<RawOverrides<RawAttempts>>,
    pub campaigns: Option<SpannedMap<RawCampaign>>,
    pub health: Option<RawHealthRules>,
    /// Named lists of numbers never to call.
    pub suppression: Option<SpannedMap<RawSuppression>>,
    /// Post-call outcomes that put the lead's number on a suppression list.
    pub opt_out: Option<Spanned<RawOptOut>>,
    /// Shipped holiday calendars to apply (`us-federal`, `state-restrictions`).
    pub holidays: Option<Spanned<Vec<Spanned<String>>>>,
    /// One-off closures of states (a state of emergency).
    pub closures: Option<Vec<Spanned<RawClosure>>>,
    /// Whether the shipped table of state calling-hour laws applies (default: true).
    pub state_laws: Option<Spanned<bool>>,
    /// Which states' laws bind a lead: `lead_and_number` (default), or `lead` (its
    /// address's state, plus the states that presume residence from the area code).
    pub lead_state: Option<Spanned<String>>,
}

/// A suppression list: a file of numbers, or (no `file`) a list kept in the store.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSuppression {
    /// Relative to the rules directory.
    pub file: Option<Spanned<String>>,
    /// A CSV's column holding the numbers (by its header name); else one number a line.
    pub column: Option<Spanned<String>>,
    /// A CSV's column holding each entry's expiry date.
    pub expires_column: Option<Spanned<String>>,
    /// The country whose national numbers the file writes without `+` (default `US`: 10
    /// digits, or `1` and 10 digits).
    pub country: Option<Spanned<String>>,
    pub campaigns: Option<Spanned<OneOrMany>>,
    pub brands: Option<Spanned<OneOrMany>>,
}

/// `opt_out:` which fields of a finished call mean "stop calling me", and the list it goes to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOptOut {
    pub list: Option<Spanned<String>>,
    pub when: Vec<Spanned<RawOutcomeMatch>>,
}

/// One field of the call record (a dotted path) and the values that match.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutcomeMatch {
    pub field: Spanned<String>,
    pub equals: Spanned<OneOrMany>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClosure {
    pub states: Spanned<OneOrMany>,
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    pub reason: Spanned<String>,
}

/// A campaign's consent requirement.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsent {
    /// `true` (every lead) or the states whose leads need it.
    pub required: Spanned<RawRequired>,
    pub max_age: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawRequired {
    Always(bool),
    States(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub model_id: Spanned<String>,
    /// `callroute pool apply` makes this agent's attached pool match the rules.
    pub manage_pool: Option<Spanned<bool>>,
    /// The account (in the daemon's `accounts:`) the agent lives in.
    pub account: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNumber {
    pub brand: Option<Spanned<String>>,
    pub weight: Option<Spanned<u32>>,
    pub labels: Option<SpannedMap<Spanned<String>>>,
    pub limit_profile: Option<Spanned<String>>,
    pub limits: Option<RawLimits>,
    /// Zone for `per_day` counting and the time-zone tier, when the number's own is unknown.
    pub timezone: Option<Spanned<String>>,
    /// The day the number joined the pool (`YYYY-MM-DD`), for warm-up; else its first use.
    pub since: Option<Spanned<String>>,
}

/// Per-number usage windows; every window set is enforced at once.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub per_minute: Option<Spanned<u32>>,
    pub per_hour: Option<Spanned<u32>>,
    pub per_24h: Option<Spanned<u32>>,
    pub per_day: Option<Spanned<u32>>,
    pub min_gap: Option<Spanned<String>>,
    pub warmup: Option<Spanned<RawWarmup>>,
}

/// A daily cap for numbers new to the pool, growing from `from` to `to` over `days`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWarmup {
    pub from: Spanned<u32>,
    pub to: Spanned<u32>,
    pub days: Spanned<u32>,
}

/// `health:`: when numbers rest; a default, per limit profile and per number (field by
/// field, the most specific wins).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthRules {
    pub default: Option<Spanned<RawHealth>>,
    pub profiles: Option<SpannedMap<RawHealth>>,
    pub numbers: Option<SpannedMap<RawHealth>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub rest_when: Option<Spanned<RawRestWhen>>,
    pub rest_for: Option<Spanned<String>>,
    pub short_call: Option<Spanned<String>>,
    /// A share of the agent's pool: `30%` or `0.3`.
    pub max_resting: Option<Spanned<RawShare>>,
    pub detach_while_resting: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRestWhen {
    /// A share of the pool's median answer rate.
    pub answer_rate_below: Option<Spanned<RawShare>>,
    pub min_calls: Option<Spanned<u32>>,
    pub last_calls: Option<Spanned<u32>>,
}

/// `30%` or `0.3`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawShare {
    Number(f64),
    Text(String),
}

/// A policy with a default and per-country / per-state overrides (field by field).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOverrides<T> {
    pub default: Option<Spanned<T>>,
    pub countries: Option<SpannedMap<T>>,
    pub states: Option<SpannedMap<T>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHours {
    pub days: Option<Spanned<Vec<Spanned<String>>>>,
    pub start: Option<Spanned<String>>,
    pub end: Option<Spanned<String>>,
    pub by_day: Option<SpannedMap<RawDayHours>>,
    pub blackout_dates: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDayHours {
    pub start: Spanned<String>,
    pub end: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAttempts {
    pub per_24h: Option<Spanned<u32>>,
    pub max_total: Option<Spanned<u32>>,
    pub min_gap: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCampaign {
    pub agent: Spanned<String>,
    /// Brand of leads that do not name one.
    pub brand: Option<Spanned<String>>,
    pub prompt: Option<String>,
    pub greeting: Option<String>,
    pub routes: Spanned<Vec<Spanned<RawRoute>>>,
    pub consent: Option<Spanned<RawConsent>>,
    /// `telemarketing` (default: the federal 08:00-21:00 window binds) or `informational`.
    pub purpose: Option<Spanned<String>>,
    /// Redials by the call's outcome.
    pub cadence: Option<Spanned<RawCadence>>,
}

/// `cadence:` of a campaign: which outcomes are dialed again, after how long, how many
/// attempts in all, and which caller ID a redial shows.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCadence {
    pub redial_on: Spanned<Vec<Spanned<String>>>,
    pub delays: Spanned<Vec<Spanned<String>>>,
    pub max_attempts: Spanned<u32>,
    pub caller_id: Option<Spanned<String>>,
    /// Call-record fields that end the cadence (e.g. an appointment booked).
    #[serde(default)]
    pub stop_when: Vec<Spanned<RawOutcomeMatch>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub when: RawMatcher,
    pub numbers: Spanned<RawSelector>,
    pub local_presence: Option<Vec<Spanned<String>>>,
    pub strategy: Option<Spanned<String>>,
    pub sticky: Option<Spanned<String>>,
    pub limits: Option<RawLimits>,
    /// The route's own cadence (replaces the campaign's).
    pub cadence: Option<Spanned<RawCadence>>,
}

/// Conditions on region and labels, used both for a route's `when` (against the lead) and for
/// a route's `numbers` (against the pool). Every key given must match.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatcher {
    pub brand: Option<Spanned<OneOrMany>>,
    pub country: Option<Spanned<OneOrMany>>,
    pub state: Option<Spanned<OneOrMany>>,
    pub area_code: Option<Spanned<OneOrMany>>,
    pub timezone: Option<Spanned<OneOrMany>>,
    pub labels: Option<SpannedMap<Spanned<OneOrMany>>>,
}

/// `numbers:` of a route: `all`, an explicit list, or a matcher over the numbers' metadata.
#[derive(Debug)]
pub enum RawSelector {
    Keyword(String),
    List(Vec<Spanned<String>>),
    Matcher(Box<RawMatcher>),
}

impl<'de> Deserialize<'de> for RawSelector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SelectorVisitor;
        impl<'de> Visitor<'de> for SelectorVisitor {
            type Value = RawSelector;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`all`, a list of E.164 numbers, or a matcher like `{ brand: acme }`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSelector, E> {
                Ok(RawSelector::Keyword(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawSelector, A::Error> {
                Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(RawSelector::List)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawSelector, A::Error> {
                Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|m| RawSelector::Matcher(Box::new(m)))
            }
        }
        deserializer.deserialize_any(SelectorVisitor)
    }
}

/// A scalar or a list of scalars (`state: CA` or `state: [CA, NV]`); numbers become strings
/// so that `area_code: 415` works unquoted.
#[derive(Debug, Default)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarOrSeq;
        impl<'de> Visitor<'de> for ScalarOrSeq {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut values = Vec::new();
                while let Some(value) = seq.next_element::<Scalar>()? {
                    values.push(value.0);
                }
                Ok(OneOrMany(values))
            }
        }
        deserializer.deserialize_any(ScalarOrSeq)
    }
}

/// One scalar, as text.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a single value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// A YAML mapping kept in file order, with the location of every key (for "duplicate name"
/// and "unknown reference" errors that must point at the key).
#[derive(Debug)]
pub struct SpannedMap<V>(pub Vec<(Spanned<String>, V)>);

impl<V> Default for SpannedMap<V> {
    fn default() -> Self {
        SpannedMap(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for SpannedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = SpannedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SpannedMap<V>, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(SpannedMap(entries))
            }
        }
        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}
