//! Outbound leads: parsing, validation (every problem at once), and the region facts the
//! engine routes on, derived from the phone number unless the lead states them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::geo::NumberRegion;
use crate::phone::E164;

/// A lead as it arrives (JSON, a CSV row, ...): strings, not yet checked.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLead {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// When the lead gave consent to be called (RFC 3339, or a date `YYYY-MM-DD`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent_at: Option<String>,
    /// Where the consent was given (a form, a recording): kept in the proof of each call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent_source: Option<String>,
}

impl RawLead {
    /// The same lead written as it is understood: every field trimmed, empty ones left out,
    /// the phone number in E.164. The store keeps this form, so that one identity runs from
    /// intake to the call request to the lookup after a crash.
    pub fn normalised(self) -> RawLead {
        let clean = |value: Option<String>| {
            value
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let phone = clean(self.phone).map(|phone| match E164::parse(&phone) {
            Ok(number) => number.to_string(),
            Err(_) => phone,
        });
        RawLead {
            id: clean(self.id),
            phone,
            name: clean(self.name),
            campaign: clean(self.campaign),
            brand: clean(self.brand),
            state: clean(self.state).map(|s| s.to_ascii_uppercase()),
            country: clean(self.country).map(|c| c.to_ascii_uppercase()),
            timezone: clean(self.timezone),
            email: clean(self.email),
            variables: self.variables,
            not_before: clean(self.not_before),
            labels: self.labels,
            consent_at: clean(self.consent_at),
            consent_source: clean(self.consent_source),
        }
    }
}

/// Everything wrong with one lead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct LeadError {
    pub problems: Vec<String>,
}

/// A checked lead with its effective region facts.
#[derive(Debug, Clone, Serialize)]
pub struct Lead {
    /// Stable identity: the given `id`, or `<campaign>:<phone>`.
    pub key: String,
    pub phone: E164,
    pub name: String,
    pub campaign: String,
    pub brand: Option<String>,
    pub country: Option<String>,
    pub area_code: Option<u16>,
    /// States used for routing: the lead's own `state`, else the ones its number gives.
    pub states: Vec<String>,
    /// States whose calling rules apply: the lead's `state` and its number's state(s), since a
    /// number's area code is presumed to mean a resident (FL, OK) even after a move.
    pub compliance_states: Vec<String>,
    /// The lead's own `state` field, as given.
    pub given_state: Option<String>,
    /// The states its number's area code gives.
    pub number_states: Vec<String>,
    pub consent_at: Option<DateTime<Utc>>,
    pub consent_source: Option<String>,
    /// Zones the lead may be in; a call needs the window open in all of them.
    #[serde(serialize_with = "zone_names")]
    pub zones: Vec<Tz>,
    pub timezone_explicit: bool,
    pub email: Option<String>,
    pub variables: BTreeMap<String, String>,
    pub not_before: Option<DateTime<Utc>>,
    pub labels: BTreeMap<String, String>,
}

fn zone_names<S: serde::Serializer>(zones: &[Tz], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(zones.iter().map(|z| z.name()))
}

impl Lead {
    /// Parses a JSON object into a lead.
    pub fn from_json(text: &str) -> Result<Lead, LeadError> {
        let raw: RawLead = serde_json::from_str(text).map_err(|e| LeadError {
            problems: vec![format!("not a valid lead object: {e}")],
        })?;
        Lead::from_raw(raw)
    }

    /// Checks every field and reports all problems, not just the first.
    pub fn from_raw(raw: RawLead) -> Result<Lead, LeadError> {
        let mut problems = Vec::new();
        let mut required = |field: &str, value: &Option<String>| -> String {
            match value.as_deref().map(str::trim) {
                Some(v) if !v.is_empty() => v.to_string(),
                _ => {
                    problems.push(format!("`{field}` is required"));
                    String::new()
                }
            }
        };
        let phone_text = required("phone", &raw.phone);
        let name = required("name", &raw.name);
        let campaign = required("campaign", &raw.campaign);
        let phone = if phone_text.is_empty() {
            None
        } else {
            E164::parse(&phone_text)
                .map_err(|e| problems.push(format!("`phone`: {e}")))
                .ok()
        };
        let upper_code = |field: &str, value: &Option<String>, problems: &mut Vec<String>| {
            let value = value.as_deref().map(str::trim).filter(|v| !v.is_empty())?;
            let code = value.to_ascii_uppercase();
            if code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()) {
                Some(code)
            } else {
                problems.push(format!(
                    "`{field}`: `{}` is not a two-letter code",
                    crate::bounded(value, 40)
                ));
                None
            }
        };
        let state = upper_code("state", &raw.state, &mut problems);
        // For a North American number, a state no number belongs to would bind no law and
        // match no route: a typo (other countries' subdivisions are not checked).
        let nanp = phone.is_some_and(|p| p.is_nanp());
        let state = state.filter(|code| {
            let known = !nanp || crate::geo::is_known_state(code);
            if !known {
                problems.push(format!(
                    "`state`: `{code}` is not a US state or Canadian province (two-letter postal code)"
                ));
            }
            known
        });
        let country = upper_code("country", &raw.country, &mut problems);
        let country = country.filter(|code| {
            let known = crate::geo::is_known_country(code);
            if !known {
                problems.push(format!("`country`: `{code}` is not an ISO country code"));
            }
            known
        });
        let timezone = raw
            .timezone
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .and_then(|t| {
                t.parse::<Tz>()
                    .map_err(|_| {
                        problems.push(format!(
                            "`timezone`: unknown IANA time zone `{}`",
                            crate::bounded(t, 60)
                        ))
                    })
                    .ok()
            });
        let email = raw
            .email
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty());
        if let Some(email) = email
            && !email
                .split_once('@')
                .is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
        {
            problems.push(format!(
                "`email`: `{}` is not an e-mail address",
                crate::bounded(email, 80)
            ));
        }
        let not_before = raw
            .not_before
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .and_then(|t| {
                DateTime::parse_from_rfc3339(t)
                    .map(|d| d.with_timezone(&Utc))
                    .map_err(|_| {
                        problems.push(format!(
                            "`not_before`: `{}` is not an RFC 3339 time",
                            crate::bounded(t, 60)
                        ))
                    })
                    .ok()
            });
        let consent_at = raw
            .consent_at
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .and_then(|t| {
                parse_instant_or_date(t)
                    .map_err(|()| {
                        problems.push(format!(
                            "`consent_at`: `{}` is neither an RFC 3339 time nor a date (YYYY-MM-DD)",
                            crate::bounded(t, 60)
                        ))
                    })
                    .ok()
            });
        let Some(phone) = phone.filter(|_| problems.is_empty()) else {
            return Err(LeadError { problems });
        };
        let region = phone.region();
        let key = match raw.id.as_deref().map(str::trim).filter(|i| !i.is_empty()) {
            Some(id) => id.to_string(),
            None => format!("{campaign}:{phone}"),
        };
        Ok(Lead::with_region(
            LeadFields {
                key,
                phone,
                name,
                campaign,
                brand: raw
                    .brand
                    .map(|b| b.trim().to_string())
                    .filter(|b| !b.is_empty()),
                state,
                country,
                timezone,
                email: email.map(str::to_string),
                variables: raw.variables,
                not_before,
                labels: raw.labels,
                consent_at,
                consent_source: raw
                    .consent_source
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty()),
            },
            region,
        ))
    }

    fn with_region(fields: LeadFields, region: NumberRegion) -> Lead {
        let states = match &fields.state {
            Some(state) => vec![state.clone()],
            None => region.states.clone(),
        };
        let mut compliance_states = states.clone();
        for derived in &region.states {
            if !compliance_states.contains(derived) {
                compliance_states.push(derived.clone());
            }
        }
        let (zones, timezone_explicit) = match fields.timezone {
            Some(zone) => (vec![zone], true),
            None => (region.zones.clone(), false),
        };
        Lead {
            given_state: fields.state.clone(),
            number_states: region.states.clone(),
            consent_at: fields.consent_at,
            consent_source: fields.consent_source,
            key: fields.key,
            phone: fields.phone,
            name: fields.name,
            campaign: fields.campaign,
            brand: fields.brand,
            country: fields.country.or(region.country),
            area_code: region.area_code,
            states,
            compliance_states,
            zones,
            timezone_explicit,
            email: fields.email,
            variables: fields.variables,
            not_before: fields.not_before,
            labels: fields.labels,
        }
    }
}

struct LeadFields {
    key: String,
    phone: E164,
    name: String,
    campaign: String,
    brand: Option<String>,
    state: Option<String>,
    country: Option<String>,
    timezone: Option<Tz>,
    email: Option<String>,
    variables: BTreeMap<String, String>,
    not_before: Option<DateTime<Utc>>,
    labels: BTreeMap<String, String>,
    consent_at: Option<DateTime<Utc>>,
    consent_source: Option<String>,
}

/// An RFC 3339 instant, or a date (its start in UTC).
fn parse_instant_or_date(text: &str) -> Result<DateTime<Utc>, ()> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(instant.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|day| day.and_time(chrono::NaiveTime::MIN).and_utc())
        .map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_region_from_the_number() {
        let lead = Lead::from_json(r#"{"phone":"+14155550123","name":"Ana","campaign":"spring"}"#)
            .unwrap();
        assert_eq!(lead.key, "spring:+14155550123");
        assert_eq!(lead.country.as_deref(), Some("US"));
        assert_eq!(lead.area_code, Some(415));
        assert_eq!(lead.states, ["CA"]);
        assert_eq!(lead.zones, [chrono_tz::America::Los_Angeles]);
        assert!(!lead.timezone_explicit);
    }

    #[test]
    fn explicit_fields_win_but_the_numbers_state_still_binds_compliance() {
        let lead = Lead::from_json(
            r#"{"id":"L1","phone":"+13055550123","name":"Bo","campaign":"c","state":"ca","timezone":"America/Los_Angeles"}"#,
        )
        .unwrap();
        assert_eq!(lead.key, "L1");
        assert_eq!(lead.states, ["CA"]);
        assert_eq!(lead.compliance_states, ["CA", "FL"]);
        assert_eq!(lead.zones, [chrono_tz::America::Los_Angeles]);
        assert!(lead.timezone_explicit);
    }

    #[test]
    fn reports_every_problem_at_once() {
        let err = Lead::from_json(
            r#"{"phone":"415-555-0123","campaign":"","state":"California","timezone":"Mars/Base","email":"nope","not_before":"tomorrow"}"#,
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "`name` is required",
            "`campaign` is required",
            "`phone`",
            "E.164",
            "`state`",
            "Mars/Base",
            "`email`",
            "`not_before`",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in {text}");
        }
    }

    #[test]
    fn rejects_unknown_fields_instead_of_guessing() {
        let err = Lead::from_json(
            r#"{"phone":"+14155550123","name":"A","campaign":"c","timezon":"UTC"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("timezon"), "{err}");
    }
}
