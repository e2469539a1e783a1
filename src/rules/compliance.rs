//! Compiling the compliance sections of the rules: `suppression:`, `opt_out:`, `holidays:`,
//! `closures:`, `state_laws:`, `lead_state:` and a campaign's `consent:`. Every mistake is
//! reported where it is written; list files are read later, by `load_dir`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use serde_saphyr::Spanned;

use super::diag::{Diagnostic, Reporter, SourcePos};
use super::model::Campaign;
use super::raw::{RawConsent, RawFile, RawRequired};
use crate::compliance::{
    Compliance, ConsentRule, HolidaysOrFederal, INTERNAL_LIST, LeadState, ListRule, ListSource,
    OptOut, OutcomeMatch, StateRestriction, StatesOrAll, holiday_table, is_list_name,
    parse_weekday, state_holidays, state_laws,
};
use crate::suppression::National;

fn reporter<'a>(file: &'a Path, out: &'a mut Vec<Diagnostic>) -> Reporter<'a> {
    Reporter { file, out }
}

/// A US state or Canadian province code the number data knows (`ZZ` would bind nobody).
fn is_state_code(text: &str) -> bool {
    text.len() == 2
        && text.bytes().all(|b| b.is_ascii_uppercase())
        && crate::geo::is_known_state(text)
}

fn parse_date(r: &mut Reporter, text: &Spanned<String>, key: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.value.trim(), "%Y-%m-%d")
        .map_err(|_| {
            r.error(
                text,
                format!(
                    "`{key}: {}` is not a date (YYYY-MM-DD)",
                    crate::bounded(&text.value, 30)
                ),
            )
        })
        .ok()
}

/// One value of a section that may be written in one file only.
struct Once(Option<SourcePos>);

impl Once {
    fn claim<T>(&mut self, r: &mut Reporter, value: &Spanned<T>, key: &str) -> bool {
        if let Some(first) = &self.0 {
            r.error(value, format!("`{key}` is already defined at {first}"));
            return false;
        }
        self.0 = Some(r.pos(value.referenced));
        true
    }
}

pub(super) fn compile_compliance(
    out: &mut Vec<Diagnostic>,
    files: &[(PathBuf, RawFile)],
    campaigns: &BTreeMap<String, Campaign>,
    numbers: &[super::model::NumberInfo],
) -> Compliance {
    // Brands the rules know of (leads may name others): a list scoped to a brand no number
    // or campaign has is most likely a typo, and would bind no lead of the rules' brands.
    let known_brands: HashSet<&str> = numbers
        .iter()
        .filter_map(|n| n.brand.as_deref())
        .chain(campaigns.values().filter_map(|c| c.brand.as_deref()))
        .collect();
    let mut compliance = Compliance::default();
    let mut list_names: BTreeMap<String, SourcePos> = BTreeMap::new();
    let (mut opt_out_once, mut holidays_once, mut laws_once, mut lead_state_once) =
        (Once(None), Once(None), Once(None), Once(None));
    let mut opt_out_at = None;
    let mut state_laws_on = true;
    let mut calendars: Vec<String> = Vec::new();
    let mut closures: Vec<(Vec<String>, NaiveDate, NaiveDate, String)> = Vec::new();
    for (path, file) in files {
        let mut r = reporter(path, out);
        let base = path.parent().unwrap_or(Path::new("."));
        for (name, raw) in file.suppression.iter().flat_map(|m| &m.0) {
            let list_name = name.value.trim();
            if !is_list_name(list_name) {
                r.error(
                    name,
                    format!(
                        "suppression list name `{}`: use letters, digits, `-` and `_`",
                        crate::bounded(list_name, 40)
                    ),
                );
                continue;
            }
            if let Some(first) = list_names.get(list_name) {
                r.error(
                    name,
                    format!("suppression list `{list_name}` is already defined at {first}"),
                );
                continue;
            }
            list_names.insert(list_name.to_string(), r.pos(name.referenced));
            let source = match &raw.file {
                Some(file) if file.value.trim().is_empty() => {
                    r.error(file, "`file:` is empty; name the list's file, or leave `file:` out for a list kept in the store");
                    continue;
                }
                Some(file) => ListSource::File {
                    national: raw.country.as_ref().map_or(National::NANP, |country| {
                        National::of(country.value.trim()).unwrap_or_else(|| {
                            r.error(
                                country,
                                format!(
                                    "`country: {}` is not a country the number data knows (an ISO code such as US, CA, GB)",
                                    crate::bounded(&country.value, 20)
                                ),
                            );
                            National::NANP
                        })
                    }),
                    path: base.join(file.value.trim()),
                    column: raw.column.as_ref().map(|c| c.value.trim().to_string()),
                    expires_column: raw
                        .expires_column
                        .as_ref()
                        .map(|c| c.value.trim().to_string()),
                    list: Arc::new(crate::suppression::List::default()),
                },
                None => {
                    for key in [&raw.column, &raw.expires_column, &raw.country]
                        .into_iter()
                        .flatten()
                    {
                        r.error(key, "a list kept in the store has no columns; add `file:` or remove this key");
                    }
                    ListSource::Store
                }
            };
            if raw.file.is_some()
                && raw.column.is_none()
                && let Some(expires) = &raw.expires_column
            {
                r.error(
                    expires,
                    "`expires_column` needs `column` (a CSV with a header)",
                );
            }
            if let Some(brands) = &raw.brands {
                for brand in &brands.value.0 {
                    if !known_brands.contains(brand.as_str()) {
                        r.warn(
                            brands,
                            format!(
                                "suppression list `{list_name}` is for brand `{brand}`, which no number or campaign has: only leads that name it are checked against this list"
                            ),
                        );
                    }
                }
            }
            let campaign_names = raw.campaigns.as_ref().map(|c| {
                for name in &c.value.0 {
                    if !campaigns.contains_key(name) {
                        r.error(
                            c,
                            format!(
                                "suppression list `{list_name}` names unknown campaign `{name}`"
                            ),
                        );
                    }
                }
                c.value.0.clone()
            });
            compliance.lists.push(ListRule {
                name: list_name.to_string(),
                defined_at: r.pos(name.referenced),
                source,
                campaigns: campaign_names,
                brands: raw.brands.as_ref().map(|b| b.value.0.clone()),
            });
        }
        if let Some(raw) = &file.opt_out
            && opt_out_once.claim(&mut r, raw, "opt_out")
        {
            let list = raw
                .value
                .list
                .as_ref()
                .map_or(INTERNAL_LIST.to_string(), |l| l.value.trim().to_string());
            opt_out_at = raw
                .value
                .list
                .as_ref()
                .map(|l| (path.clone(), l.referenced));
            if raw.value.when.is_empty() {
                r.error(raw, "`opt_out.when` is empty: list the call-record fields that mean \"stop calling me\"");
            }
            let when = compile_outcome_matches(&mut r, &raw.value.when);
            compliance.opt_out = Some(OptOut {
                list,
                defined_at: r.pos(raw.referenced).to_string(),
                when,
            });
        }
        if let Some(raw) = &file.holidays
            && holidays_once.claim(&mut r, raw, "holidays")
        {
            let table = holiday_table();
            for name in &raw.value {
                if table.calendars.contains_key(name.value.trim()) {
                    calendars.push(name.value.trim().to_string());
                } else {
                    r.error(
                        name,
                        format!(
                            "unknown holiday calendar `{}` (shipped: {})",
                            crate::bounded(&name.value, 40),
                            table
                                .calendars
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
            }
        }
        for closure in file.closures.iter().flatten() {
            let c = &closure.value;
            let states = c.states.value.0.clone();
            for state in &states {
                if state != "all" && !is_state_code(state) {
                    r.error(
                        &c.states,
                        format!(
                            "closure state `{}` is not a US state or Canadian province code (or `all`)",
                            crate::bounded(state, 20)
                        ),
                    );
                }
            }
            let (from, to) = (
                parse_date(&mut r, &c.from, "from"),
                parse_date(&mut r, &c.to, "to"),
            );
            if c.reason.value.trim().is_empty() {
                r.error(
                    &c.reason,
                    "a closure needs a `reason` (it is shown in every decision it closes)",
                );
            }
            if let (Some(from), Some(to)) = (from, to) {
                if to < from {
                    r.error(
                        &c.to,
                        format!("closure ends ({to}) before it starts ({from})"),
                    );
                } else if (to - from).num_days() > 366 {
                    r.error(&c.to, "a closure longer than a year would close its states for good; write a state override in `calling_hours` instead");
                } else {
                    closures.push((states, from, to, c.reason.value.trim().to_string()));
                }
            }
        }
        if let Some(raw) = &file.state_laws
            && laws_once.claim(&mut r, raw, "state_laws")
        {
            state_laws_on = raw.value;
        }
        if let Some(raw) = &file.lead_state
            && lead_state_once.claim(&mut r, raw, "lead_state")
        {
            match LeadState::parse(raw.value.trim()) {
                Some(mode) => compliance.lead_state = mode,
                None => r.error(
                    raw,
                    format!(
                        "unknown `lead_state: {}` (use lead_and_number or lead)",
                        crate::bounded(&raw.value, 30)
                    ),
                ),
            }
        }
    }
    if let Some(opt_out) = &compliance.opt_out
        && compliance
            .lists
            .iter()
            .any(|l| l.name == opt_out.list && matches!(l.source, ListSource::File { .. }))
        && let Some((path, at)) = opt_out_at
    {
        reporter(&path, out).error_at(
            at,
            format!(
                "opt-outs are kept in the store, but list `{}` is a file; name a list without `file:`",
                opt_out.list
            ),
        );
    }

    compliance.state_laws = state_laws_on;
    if state_laws_on {
        let laws = state_laws();
        compliance
            .tables
            .push(format!("state-laws {}", laws.version));
        for (state, law) in &laws.states {
            let mut restriction = StateRestriction::open_all_day();
            if let Some(days) = &law.days {
                let listed: HashSet<u32> = days
                    .iter()
                    .filter_map(|d| parse_weekday(d))
                    .map(|d| d.num_days_from_monday())
                    .collect();
                for (index, day) in restriction.window.days.iter_mut().enumerate() {
                    if !listed.contains(&(index as u32)) {
                        *day = None;
                    }
                }
            }
            let time = |t: Option<&str>| {
                t.and_then(|t| chrono::NaiveTime::parse_from_str(t, "%H:%M").ok())
            };
            for (start, end) in restriction.window.days.iter_mut().flatten() {
                *start = time(law.start.as_deref()).unwrap_or(*start);
                *end = time(law.end.as_deref()).unwrap_or(*end);
            }
            for (day, hours) in &law.by_day {
                let (Some(day), Some(start), Some(end)) = (
                    parse_weekday(day),
                    time(Some(&hours.start)),
                    time(Some(&hours.end)),
                ) else {
                    continue;
                };
                restriction.window.days[day.num_days_from_monday() as usize] = Some((start, end));
            }
            // The citation (the statute's text up to its first `:`) names the law in reasons.
            let cite = law
                .statute
                .split_once(':')
                .map_or(&*law.statute, |(c, _)| c);
            restriction.law = Some(format!("{}, {cite}", law.law));
            restriction.secondary = !law.confirmed;
            compliance.states.insert(state.clone(), restriction);
        }
    }
    let table = holiday_table();
    if !calendars.is_empty() {
        compliance
            .tables
            .push(format!("holidays {}", table.version));
        compliance
            .tables
            .push(format!("state-holidays {}", state_holidays().version));
    }
    let close = |compliance: &mut Compliance, state: &str, date: NaiveDate, why: &str| {
        let restriction = if state == "all" {
            compliance
                .everywhere
                .get_or_insert_with(StateRestriction::open_all_day)
        } else {
            compliance
                .states
                .entry(state.to_string())
                .or_insert_with(StateRestriction::open_all_day)
        };
        restriction.close(date, why);
    };
    for calendar in &calendars {
        for entry in &table.calendars[calendar] {
            let states: Vec<String> = match &entry.states {
                StatesOrAll::States(states) => states.clone(),
                StatesOrAll::Keyword(_) => vec!["all".into()],
            };
            let keys: Vec<&String> = match &entry.holidays {
                HolidaysOrFederal::Keys(keys) => keys.iter().collect(),
                HolidaysOrFederal::Keyword(word) if word == "state" => {
                    // Each state's own legal holidays, with its statute.
                    let generated = state_holidays();
                    for state in &states {
                        let Some(own) = generated.states.get(state) else {
                            continue;
                        };
                        let confirmed = if own.confirmed {
                            ""
                        } else {
                            ", not confirmed in the statute's text"
                        };
                        for (date, name) in &own.dates {
                            let why = format!(
                                "{name} ({}{confirmed}; holidays: {calendar}, {})",
                                own.statute, generated.version
                            );
                            close(&mut compliance, state, *date, &why);
                        }
                    }
                    Vec::new()
                }
                HolidaysOrFederal::Keyword(_) => table.holidays.keys().collect(),
            };
            for key in keys {
                let Some(holiday) = table.holidays.get(key) else {
                    continue;
                };
                let why = format!(
                    "{} ({}{}; holidays: {calendar})",
                    holiday.name,
                    entry.law,
                    if entry.secondary {
                        ", secondary source"
                    } else {
                        ""
                    }
                );
                for year in crate::compliance::HOLIDAY_YEARS {
                    for date in holiday.dates(year) {
                        for state in &states {
                            close(&mut compliance, state, date, &why);
                        }
                    }
                }
            }
        }
    }
    for (states, from, to, reason) in closures {
        let why = format!("closure: {reason}");
        for date in from.iter_days().take_while(|d| *d <= to) {
            for state in &states {
                close(&mut compliance, state, date, &why);
            }
        }
    }
    compliance
}

/// A campaign's `consent:`.
/// The law table's attempt caps (FL, OK, MD: 3 calls in 24 h) as `lead_attempts` state
/// layers: the stricter of the law and what the rules would give that state wins.
pub(super) fn apply_attempt_laws(
    compliance: &Compliance,
    attempts: &mut super::model::Layered<super::model::AttemptRule>,
) {
    if !compliance.state_laws {
        return;
    }
    for (state, law) in &state_laws().states {
        let Some(cap) = law.per_24h else { continue };
        let inherited = attempts
            .countries
            .get("US")
            .and_then(|c| c.per_24h)
            .or(attempts.default.per_24h);
        let layer = attempts.states.entry(state.clone()).or_default();
        let current = layer.per_24h.or(inherited);
        layer.per_24h = Some(current.map_or(cap, |c| c.min(cap)));
    }
}

pub(super) fn compile_consent(r: &mut Reporter, raw: &Spanned<RawConsent>) -> Option<ConsentRule> {
    let states = match &raw.value.required.value {
        RawRequired::Always(false) => return None,
        RawRequired::Always(true) => None,
        RawRequired::States(states) => {
            for state in states {
                if !is_state_code(state) {
                    r.error(
                        &raw.value.required,
                        format!(
                            "`required:` state `{}` is not a US state or Canadian province code",
                            crate::bounded(state, 20)
                        ),
                    );
                }
            }
            Some(states.clone())
        }
    };
    let max_age = raw.value.max_age.as_ref().and_then(|text| {
        match humantime::parse_duration(text.value.trim()) {
            Ok(d) if !d.is_zero() && d.as_secs() <= 20 * 366 * 86_400 => {
                chrono::Duration::from_std(d).ok()
            }
            _ => {
                r.error(
                    text,
                    format!(
                        "`max_age: {}` must be a duration from 1s to 20 years, e.g. 180d",
                        crate::bounded(&text.value, 30)
                    ),
                );
                None
            }
        }
    });
    Some(ConsentRule {
        defined_at: r.pos(raw.referenced).to_string(),
        states,
        max_age,
    })
}

/// Call-record fields and the values that match (`opt_out.when`, a cadence's `stop_when`),
/// each path checked.
pub(super) fn compile_outcome_matches(
    r: &mut Reporter<'_>,
    raw: &[Spanned<super::raw::RawOutcomeMatch>],
) -> Vec<OutcomeMatch> {
    let mut when = Vec::new();
    for m in raw {
        let field: Vec<String> = m
            .value
            .field
            .value
            .split('.')
            .map(|p| p.trim().to_string())
            .collect();
        if field.iter().any(String::is_empty) {
            r.error(
                &m.value.field,
                format!(
                    "`field: {}` is not a dotted path like `collected_variables.do_not_call`",
                    crate::bounded(&m.value.field.value, 60)
                ),
            );
            continue;
        }
        when.push(OutcomeMatch {
            field,
            equals: m.value.equals.value.0.clone(),
        });
    }
    when
}
