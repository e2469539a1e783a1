//! Compliance as data: the shipped state calling-hour laws and holiday calendars, and the
//! compiled compliance rules (suppression lists, opt-out outcomes, consent, closures) the
//! engine checks in the same decision that picks a caller ID.
//!
//! Pure: the shipped tables are compiled into the binary (`data/*.yaml`); list files are read
//! by `rules::load_dir` and handed over whole.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use chrono::{Datelike, NaiveDate, NaiveTime, Weekday};
use serde::{Deserialize, Serialize};

use crate::hours::Window;
use crate::suppression::List;

/// Holidays are computed for these years (the engine looks a year ahead of `now`).
pub const HOLIDAY_YEARS: std::ops::RangeInclusive<i32> = 2020..=2045;

// ---------------------------------------------------------------------------------------
// The shipped tables.

/// `data/state-laws.yaml`: calling-hour laws per state.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LawTable {
    pub version: String,
    pub sources: Vec<String>,
    pub states: BTreeMap<String, StateLaw>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateLaw {
    pub days: Option<Vec<String>>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub law: String,
    /// At most this many calls to one lead in a rolling 24 h.
    pub per_24h: Option<u32>,
    #[serde(default)]
    pub secondary: bool,
    #[serde(default)]
    pub presumes_residence: bool,
}

/// `data/holidays.yaml`: holiday definitions and the calendars that close states on them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HolidayTable {
    pub version: String,
    pub sources: Vec<String>,
    pub holidays: BTreeMap<String, Holiday>,
    pub calendars: BTreeMap<String, Vec<CalendarEntry>>,
}

/// A fixed date (`month`, `day`) or the `nth` `weekday` of a month (`-1`: the last).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holiday {
    pub name: String,
    pub month: u32,
    pub day: Option<u32>,
    pub weekday: Option<String>,
    pub nth: Option<i32>,
    pub since: Option<i32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarEntry {
    /// `all` or a list of state codes.
    pub states: StatesOrAll,
    /// `federal` (every holiday of the table) or a list of holiday keys.
    pub holidays: HolidaysOrFederal,
    pub law: String,
    #[serde(default)]
    pub secondary: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StatesOrAll {
    Keyword(String),
    States(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum HolidaysOrFederal {
    Keyword(String),
    Keys(Vec<String>),
}

const LAWS_YAML: &str = include_str!("../data/state-laws.yaml");
const HOLIDAYS_YAML: &str = include_str!("../data/holidays.yaml");

/// The shipped state-law table (checked by a unit test: it always parses).
pub fn state_laws() -> &'static LawTable {
    static TABLE: OnceLock<LawTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        serde_saphyr::from_str(LAWS_YAML).expect("data/state-laws.yaml is checked by its test")
    })
}

/// The shipped holiday calendars (checked by a unit test: they always parse).
pub fn holiday_table() -> &'static HolidayTable {
    static TABLE: OnceLock<HolidayTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        serde_saphyr::from_str(HOLIDAYS_YAML).expect("data/holidays.yaml is checked by its test")
    })
}

pub fn parse_weekday(text: &str) -> Option<Weekday> {
    text.parse::<Weekday>().ok()
}

impl Holiday {
    /// The holiday's dates in `year`: the day itself, and the weekday it is observed on when a
    /// fixed date falls on a weekend.
    pub fn dates(&self, year: i32) -> Vec<NaiveDate> {
        if self.since.is_some_and(|since| year < since) {
            return Vec::new();
        }
        if let Some(day) = self.day {
            let Some(date) = NaiveDate::from_ymd_opt(year, self.month, day) else {
                return Vec::new();
            };
            let observed = match date.weekday() {
                Weekday::Sat => date.pred_opt(),
                Weekday::Sun => date.succ_opt(),
                _ => None,
            };
            return std::iter::once(date).chain(observed).collect();
        }
        let (Some(weekday), Some(nth)) = (
            self.weekday.as_deref().and_then(parse_weekday),
            self.nth.and_then(|n| i8::try_from(n).ok()),
        ) else {
            return Vec::new();
        };
        if nth > 0 {
            NaiveDate::from_weekday_of_month_opt(year, self.month, weekday, nth as u8)
                .into_iter()
                .collect()
        } else {
            // The last one: the first of the next month, back to the weekday.
            let next = if self.month == 12 {
                NaiveDate::from_ymd_opt(year + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(year, self.month + 1, 1)
            };
            let Some(mut day) = next.and_then(|d| d.pred_opt()) else {
                return Vec::new();
            };
            while day.weekday() != weekday {
                let Some(before) = day.pred_opt() else {
                    return Vec::new();
                };
                day = before;
            }
            vec![day]
        }
    }
}

// ---------------------------------------------------------------------------------------
// The compiled compliance rules (part of `RuleSet`).

/// Which states' laws bind a lead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadState {
    /// The lead's own `state` and every state its number gives (the intersection of their
    /// windows): the conservative default.
    #[default]
    LeadAndNumber,
    /// The lead's own `state` when it has one (its number's state otherwise), plus any state
    /// that presumes residence from the number's area code (FL, OK).
    Lead,
}

impl LeadState {
    pub fn parse(text: &str) -> Option<LeadState> {
        match text {
            "lead_and_number" => Some(LeadState::LeadAndNumber),
            "lead" => Some(LeadState::Lead),
            _ => None,
        }
    }
}

/// What closes calling for leads of one state beyond the rules' own hours: the state's law
/// window and its closed days (holidays, closures), each with what says so.
#[derive(Debug, Clone, PartialEq)]
pub struct StateRestriction {
    pub window: Window,
    /// The law behind the hours (None: only closed days).
    pub law: Option<String>,
    pub secondary: bool,
    /// Why each closed day is closed.
    pub closed: BTreeMap<NaiveDate, String>,
}

impl StateRestriction {
    pub fn open_all_day() -> StateRestriction {
        let all_day = Some((
            NaiveTime::MIN,
            NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_999).unwrap_or(NaiveTime::MIN),
        ));
        StateRestriction {
            window: Window {
                days: [all_day; 7],
                blackout_dates: Vec::new(),
            },
            law: None,
            secondary: false,
            closed: BTreeMap::new(),
        }
    }

    pub fn close(&mut self, date: NaiveDate, why: &str) {
        if let Err(at) = self.window.blackout_dates.binary_search(&date) {
            self.window.blackout_dates.insert(at, date);
        }
        self.closed
            .entry(date)
            .and_modify(|reason| {
                if !reason.contains(why) {
                    reason.push_str("; ");
                    reason.push_str(why);
                }
            })
            .or_insert_with(|| why.to_string());
    }

    /// Why this restriction is closed on `date` at local `time` (None: open).
    pub fn why_closed(&self, date: NaiveDate, time: NaiveTime) -> Option<String> {
        if let Some(reason) = self.closed.get(&date) {
            return Some(format!("{date} is closed: {reason}"));
        }
        let open = match self.window.days[date.weekday().num_days_from_monday() as usize] {
            Some((start, end)) => time >= start && time < end,
            None => false,
        };
        if open {
            return None;
        }
        let law = self.law.as_deref().unwrap_or("state law");
        let hours = match self.window.days[date.weekday().num_days_from_monday() as usize] {
            Some((start, end)) => format!(
                "calls {}-{} on {}",
                start.format("%H:%M"),
                end.format("%H:%M"),
                date.weekday()
            ),
            None => format!("no calls on {}", date.weekday()),
        };
        let secondary = if self.secondary {
            " (secondary source, to verify)"
        } else {
            ""
        };
        Some(format!("{law}: {hours}{secondary}"))
    }
}

/// Where a suppression list's entries come from.
#[derive(Debug, Clone)]
pub enum ListSource {
    /// A file beside the rules, read whole on every load.
    File {
        path: PathBuf,
        column: Option<String>,
        expires_column: Option<String>,
        /// How numbers without `+` are read.
        national: crate::suppression::National,
        list: Arc<List>,
    },
    /// Kept in the store (`callroute suppress`, opt-outs).
    Store,
}

/// A named suppression list and whom it applies to.
#[derive(Debug, Clone)]
pub struct ListRule {
    pub name: String,
    pub defined_at: crate::rules::SourcePos,
    pub source: ListSource,
    /// None: every campaign.
    pub campaigns: Option<Vec<String>>,
    /// None: every brand.
    pub brands: Option<Vec<String>>,
}

impl ListRule {
    pub fn applies(&self, campaign: &str, brand: Option<&str>) -> bool {
        self.campaigns
            .as_ref()
            .is_none_or(|c| c.iter().any(|n| n == campaign))
            && self
                .brands
                .as_ref()
                .is_none_or(|b| brand.is_some_and(|brand| b.iter().any(|n| n == brand)))
    }

    /// The list file's version (a hash of its bytes), or `store` for a list in the store.
    pub fn version(&self) -> String {
        match &self.source {
            ListSource::File { list, .. } => format!("{:016x}", list.version()),
            ListSource::Store => "store".into(),
        }
    }
}

/// An entry of a list kept in the store: who put the number there, when, why, with what
/// evidence (an opt-out's call id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEntry {
    pub number: crate::phone::E164,
    pub list: String,
    pub reason: String,
    pub added_by: String,
    pub added_at: chrono::DateTime<chrono::Utc>,
    pub evidence: Option<String>,
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
}

/// A suppression list's name: letters, digits, `-` and `_` (it is a metric label value and
/// a word in every refusal).
pub fn is_list_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The list opt-outs go to when the rules do not say.
pub const INTERNAL_LIST: &str = "internal";

/// `opt_out:`: the call-record fields that mean "stop calling me".
#[derive(Debug, Clone)]
pub struct OptOut {
    pub list: String,
    pub defined_at: String,
    pub when: Vec<OutcomeMatch>,
}

#[derive(Debug, Clone)]
pub struct OutcomeMatch {
    /// A dotted path into the call record (`collected_variables.do_not_call`).
    pub field: Vec<String>,
    /// Values that match, compared as text, case-insensitively.
    pub equals: Vec<String>,
}

impl OptOut {
    /// The first matching field and value of a call record (the webhook's or `GET
    /// /v2/calls`'s), e.g. `disposition = do_not_call`.
    pub fn matches(&self, record: &serde_json::Value) -> Option<String> {
        self.when.iter().find_map(|m| {
            let value = m.field.iter().try_fold(record, |v, key| v.get(key))?;
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => return None,
            };
            m.equals
                .iter()
                .any(|e| e.eq_ignore_ascii_case(text.trim()))
                .then(|| format!("{} = {}", m.field.join("."), text))
        })
    }
}

/// A call's outcome as one flat object the `opt_out` rule reads: the webhook's top level,
/// its `call` object over it, and `collected_variables` reduced to `name: value` (the webhook
/// nests each as `{value, collected}`, `GET /v2/calls` also under the agent's id).
pub fn outcome_fields(record: &serde_json::Value) -> serde_json::Value {
    use serde_json::{Map, Value};
    let mut fields = Map::new();
    if let Some(top) = record.as_object() {
        fields.extend(top.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    if let Some(call) = record.get("call").and_then(Value::as_object) {
        fields.extend(call.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let value_of = |v: &Value| v.get("value").cloned();
    let mut collected = Map::new();
    let sources = [
        record.get("collected_variables"),
        record
            .get("call")
            .and_then(|c| c.get("collected_variables")),
    ];
    for source in sources.into_iter().flatten().filter_map(Value::as_object) {
        for (name, value) in source {
            match value_of(value) {
                Some(v) => {
                    collected.insert(name.clone(), v);
                }
                // `{ <agent_id>: { <var>: { value } } }`
                None => {
                    for (inner, v) in value.as_object().into_iter().flatten() {
                        if let Some(v) = value_of(v) {
                            collected.insert(inner.clone(), v);
                        }
                    }
                }
            }
        }
    }
    fields.insert("collected_variables".into(), Value::Object(collected));
    Value::Object(fields)
}

/// A campaign's consent requirement.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentRule {
    pub defined_at: String,
    /// None: every lead; else leads bound by one of these states.
    pub states: Option<Vec<String>>,
    pub max_age: Option<chrono::Duration>,
}

/// Everything compliance in a rule set.
#[derive(Debug, Clone, Default)]
pub struct Compliance {
    pub lists: Vec<ListRule>,
    pub opt_out: Option<OptOut>,
    pub lead_state: LeadState,
    /// Per state, what narrows its calling hours (laws, holidays, closures).
    pub states: BTreeMap<String, StateRestriction>,
    /// Closed days for every US lead (`states: all` calendars, closures of `all`).
    pub everywhere: Option<StateRestriction>,
    /// Versions of the shipped tables in use (`state-laws 2026.1`, `holidays 2026.1`).
    pub tables: Vec<String>,
    /// Whether the shipped state-law table applies (`state_laws:`, default true).
    pub state_laws: bool,
}

impl Compliance {
    /// The states whose laws bind a lead, and how they were chosen (for the trace).
    pub fn binding_states(&self, lead: &crate::lead::Lead) -> (Vec<String>, String) {
        match (self.lead_state, &lead.given_state) {
            (LeadState::Lead, Some(given)) => {
                let mut states = vec![given.clone()];
                let mut presumed = Vec::new();
                for state in &lead.number_states {
                    // A presumption of residence is law whether or not the hours table applies.
                    let presumes = state_laws()
                        .states
                        .get(state)
                        .is_some_and(|l| l.presumes_residence);
                    if presumes && !states.contains(state) {
                        states.push(state.clone());
                        presumed.push(state.as_str());
                    }
                }
                let how = if presumed.is_empty() {
                    format!("the lead's own state {given} (lead_state: lead)")
                } else {
                    format!(
                        "the lead's own state {given}, and {} presumed from the number's area code (lead_state: lead)",
                        presumed.join(", ")
                    )
                };
                (states, how)
            }
            _ => {
                let how = match &lead.given_state {
                    Some(given) if lead.compliance_states.len() > 1 => format!(
                        "the lead's own state {given} and its number's {} (lead_state: lead_and_number)",
                        lead.number_states.join(", ")
                    ),
                    Some(given) => format!("the lead's own state {given}"),
                    None if lead.compliance_states.is_empty() => "no state known".into(),
                    None => format!("its number's state {}", lead.compliance_states.join(", ")),
                };
                (lead.compliance_states.clone(), how)
            }
        }
    }

    /// The restrictions that apply to a lead bound by `states` (in `country`).
    pub fn restrictions<'a>(
        &'a self,
        country: Option<&str>,
        states: &'a [String],
    ) -> impl Iterator<Item = (&'a str, &'a StateRestriction)> + 'a {
        let everywhere = self
            .everywhere
            .as_ref()
            .filter(|_| country == Some("US"))
            .map(|r| ("US", r));
        everywhere.into_iter().chain(
            states
                .iter()
                .filter_map(|s| self.states.get(s).map(|r| (s.as_str(), r))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_tables_parse_and_name_their_sources() {
        let laws = state_laws();
        assert!(!laws.sources.is_empty());
        assert_eq!(laws.states["FL"].end.as_deref(), Some("20:00"));
        assert!(laws.states["OK"].presumes_residence);
        for (state, law) in &laws.states {
            for day in law.days.iter().flatten() {
                assert!(parse_weekday(day).is_some(), "{state}: {day}");
            }
        }
        let holidays = holiday_table();
        assert!(!holidays.sources.is_empty());
        for entries in holidays.calendars.values() {
            for entry in entries {
                if let HolidaysOrFederal::Keys(keys) = &entry.holidays {
                    for key in keys {
                        assert!(holidays.holidays.contains_key(key), "{key}");
                    }
                }
            }
        }
    }

    #[test]
    fn holidays_fall_on_the_right_days() {
        let table = holiday_table();
        let on = |key: &str, year| table.holidays[key].dates(year);
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(on("thanksgiving", 2026), [d(2026, 11, 26)]);
        assert_eq!(on("memorial-day", 2026), [d(2026, 5, 25)]);
        assert_eq!(on("martin-luther-king", 2027), [d(2027, 1, 18)]);
        // Christmas 2027 is a Saturday: observed on Friday the 24th as well.
        assert_eq!(on("christmas", 2027), [d(2027, 12, 25), d(2027, 12, 24)]);
        // Independence Day 2027 is a Sunday: observed on Monday the 5th.
        assert_eq!(on("independence-day", 2027), [d(2027, 7, 4), d(2027, 7, 5)]);
        assert!(on("juneteenth", 2020).is_empty(), "a holiday since 2021");
    }

    #[test]
    fn an_opt_out_matches_a_field_of_the_call_record() {
        let opt_out = OptOut {
            list: INTERNAL_LIST.into(),
            defined_at: "r.yaml:1:1".into(),
            when: vec![
                OutcomeMatch {
                    field: vec!["collected_variables".into(), "do_not_call".into()],
                    equals: vec!["true".into(), "yes".into()],
                },
                OutcomeMatch {
                    field: vec!["disposition".into()],
                    equals: vec!["do_not_call".into()],
                },
            ],
        };
        let record = serde_json::json!({"collected_variables": {"do_not_call": true}});
        assert_eq!(
            opt_out.matches(&record).as_deref(),
            Some("collected_variables.do_not_call = true")
        );
        let record = serde_json::json!({"disposition": "DO_NOT_CALL"});
        assert!(opt_out.matches(&record).is_some());
        let record = serde_json::json!({"disposition": "completed", "collected_variables": {"do_not_call": "no"}});
        assert_eq!(opt_out.matches(&record), None);
    }

    #[test]
    fn outcome_fields_read_the_webhook_and_the_call_record_alike() {
        // The webhook: `call` over the top level, variables as `{ value, collected }`.
        let webhook = serde_json::json!({
            "status": "completed",
            "call": {"call_id": "c1", "end_call_reason": "do_not_call"},
            "collected_variables": {"do_not_call": {"value": "yes", "collected": true}},
        });
        let fields = outcome_fields(&webhook);
        assert_eq!(fields["end_call_reason"], "do_not_call");
        assert_eq!(fields["collected_variables"]["do_not_call"], "yes");
        // `GET /v2/calls/{id}`: variables under the agent's id.
        let record = serde_json::json!({
            "call_id": "c1",
            "collected_variables": {"agent-1": {"do_not_call": {"value": true, "collected": true}}},
        });
        assert_eq!(
            outcome_fields(&record)["collected_variables"]["do_not_call"],
            true
        );
    }
}
