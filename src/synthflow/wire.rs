//! JSON shapes of the endpoints callroute uses. Responses are parsed defensively: envelopes
//! and field names differ between pages of the documentation, so both forms are accepted.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Body of `POST /v2/calls`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CallRequest {
    pub model_id: String,
    pub phone: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_phone_number: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_variables: Vec<KeyValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lead_email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lead_timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub greeting: Option<String>,
}

/// `custom_variables` item: the `[{"key","value"}]` form the current API reference uses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// One number of an agent's outbound pool.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttachedNumber {
    pub number: String,
    #[serde(default)]
    pub sid: Option<String>,
    #[serde(default)]
    pub slug: Option<String>,
}

/// A call as `GET /v2/calls/{id}` or `GET /v2/calls` describe it, fields unified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    pub call_id: String,
    pub model_id: Option<String>,
    /// `status` (get) or `call_status` (list).
    pub status: String,
    /// `phone_number_from` or `agent_phone_number`.
    pub from_phone_number: Option<String>,
    /// `phone_number_to` or `lead_phone_number`.
    pub to_phone_number: Option<String>,
    /// Epoch milliseconds (sent as a string).
    pub start_time_ms: Option<i64>,
    pub end_call_reason: Option<String>,
    pub error_message: Option<String>,
    pub duration_s: Option<i64>,
    /// What the agent collected during the call (`{ <agent_id>: { <var>: { value, collected } } }`).
    pub collected_variables: Option<Value>,
}

impl CallRecord {
    /// Statuses after which nothing more happens to the call.
    pub fn is_terminal(&self) -> bool {
        is_terminal_status(&self.status)
    }

    /// How long the call lasted, when the record says.
    pub fn duration(&self) -> Option<std::time::Duration> {
        self.duration_s
            .map(|s| std::time::Duration::from_secs(s.max(0) as u64))
    }

    pub fn from_json(item: &Value) -> Option<CallRecord> {
        let text = |keys: &[&str]| {
            keys.iter().find_map(|k| match item.get(*k) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            })
        };
        Some(CallRecord {
            call_id: text(&["call_id"])?,
            model_id: text(&["model_id"]),
            status: text(&["status", "call_status"]).unwrap_or_else(|| "unknown".into()),
            from_phone_number: text(&["phone_number_from", "agent_phone_number"]),
            to_phone_number: text(&["phone_number_to", "lead_phone_number"]),
            start_time_ms: text(&["start_time"]).and_then(|t| t.parse().ok()),
            end_call_reason: text(&["end_call_reason"]),
            error_message: text(&["error_message"]),
            duration_s: item.get("duration").and_then(Value::as_i64),
            collected_variables: item
                .get("collected_variables")
                .filter(|v| !v.is_null())
                .cloned(),
        })
    }

    pub fn to_get_json(&self) -> Value {
        serde_json::json!({
            "call_id": self.call_id,
            "model_id": self.model_id,
            "status": self.status,
            "phone_number_from": self.from_phone_number,
            "phone_number_to": self.to_phone_number,
            "start_time": self.start_time_ms.map(|t| t.to_string()),
            "end_call_reason": self.end_call_reason,
            "error_message": self.error_message.clone().unwrap_or_default(),
            "duration": self.duration_s.unwrap_or(0),
            "type_of_call": "outbound",
            "collected_variables": self.collected_variables,
        })
    }

    pub fn to_list_json(&self) -> Value {
        serde_json::json!({
            "call_id": self.call_id,
            "model_id": self.model_id,
            "call_status": self.status,
            "agent_phone_number": self.from_phone_number,
            "lead_phone_number": self.to_phone_number,
            "start_time": self.start_time_ms.map(|t| t.to_string()),
            "end_call_reason": self.end_call_reason,
            "error_message": self.error_message,
            "duration": self.duration_s.unwrap_or(0),
            "type_of_call": "outbound",
        })
    }
}

pub fn is_terminal_status(status: &str) -> bool {
    matches!(
        status,
        "completed"
            | "no-answer"
            | "busy"
            | "failed"
            | "canceled"
            | "user-canceled"
            | "hangup_on_voicemail"
            | "left_voicemail"
            | "spam"
    )
}

/// `response.<key>` of the `{status, response}` envelope, or the body itself when unwrapped.
pub fn envelope<'a>(body: &'a Value, key: &str) -> Option<&'a Value> {
    body.get("response")
        .and_then(|r| r.get(key))
        .or_else(|| body.get(key))
}

/// An item list that may be sent as a list or (older captures) as a single object.
pub fn one_or_many(value: Option<&Value>) -> Vec<&Value> {
    match value {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(item @ Value::Object(_)) => vec![item],
        _ => Vec::new(),
    }
}

/// The human-readable reason in an error body: `detail.description`, `detail` text,
/// `message` or `error`, else the raw body.
pub fn error_reason(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let found = parsed.as_ref().and_then(|v| {
        v.pointer("/detail/description")
            .or_else(|| v.get("detail").filter(|d| d.is_string()))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("error"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let text = found.unwrap_or_else(|| match &parsed {
        // An undocumented JSON shape: its values as `key: value` text, not raw JSON.
        Some(value) => {
            let mut pairs = Vec::new();
            flatten(value, "", &mut pairs);
            if pairs.is_empty() {
                "(no reason given)".to_string()
            } else {
                pairs.join(", ")
            }
        }
        None if body.trim().is_empty() => "(empty body)".to_string(),
        None => body.trim().to_string(),
    });
    crate::bounded(&text, 300)
}

fn flatten(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                flatten(value, &path, out);
            }
        }
        Value::Array(items) => {
            for (index, value) in items.iter().enumerate() {
                flatten(value, &format!("{path}[{index}]"), out);
            }
        }
        Value::Null => {}
        Value::String(text) => out.push(format!("{path}: {text}")),
        other => out.push(format!("{path}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn call_records_from_get_and_list_shapes_agree() {
        let get = json!({"call_id":"c1","status":"completed","phone_number_from":"+1415","phone_number_to":"+1212","start_time":"1761150177868"});
        let list = json!({"call_id":"c1","call_status":"completed","agent_phone_number":"+1415","lead_phone_number":"+1212","start_time":"1761150177868"});
        assert_eq!(CallRecord::from_json(&get), CallRecord::from_json(&list));
        let record = CallRecord::from_json(&get).unwrap();
        assert_eq!(record.start_time_ms, Some(1_761_150_177_868));
        assert!(record.is_terminal());
    }

    #[test]
    fn envelopes_and_single_objects_are_accepted() {
        let new = json!({"status":"ok","response":{"assistants":[{"model_id":"a"}]}});
        let old = json!({"status":"success","response":{"assistants":{"model_id":"a"}}});
        assert_eq!(one_or_many(envelope(&new, "assistants")).len(), 1);
        assert_eq!(one_or_many(envelope(&old, "assistants")).len(), 1);
    }

    #[test]
    fn error_reasons_from_every_documented_shape() {
        assert_eq!(
            error_reason(
                r#"{"detail":{"status":"x","description":"Invalid phone","request_id":"r","category":"c"}}"#
            ),
            "Invalid phone"
        );
        assert_eq!(
            error_reason(r#"{"error":"nope","message":"Not allowed"}"#),
            "Not allowed"
        );
        assert_eq!(error_reason(""), "(empty body)");
        // An undocumented shape (a 429's body is not documented) reads as text, not JSON.
        assert_eq!(
            error_reason(r#"{"status":"error","detail":{"code":429,"hint":"slow down"}}"#),
            "status: error, detail.code: 429, detail.hint: slow down"
        );
        let long = "x".repeat(10_000);
        assert!(error_reason(&long).ends_with("… (10000 characters in all)"));
    }
}

/// The name Synthflow's zone list has for `zone`, or None when it has none (UTC, `Etc/*`,
/// POSIX-style zones): then `lead_timezone` is left out rather than refused with a 400 that
/// would fail the lead. Old names (the tz database's `backward` links) are sent as the
/// zone they link to; the list takes the six `US/*` aliases as they are.
pub fn synthflow_zone(zone: &str) -> Option<&str> {
    const LINKS: &[(&str, &str)] = &[
        ("America/Buenos_Aires", "America/Argentina/Buenos_Aires"),
        ("America/Catamarca", "America/Argentina/Catamarca"),
        ("America/Cordoba", "America/Argentina/Cordoba"),
        ("America/Fort_Wayne", "America/Indiana/Indianapolis"),
        ("America/Indianapolis", "America/Indiana/Indianapolis"),
        ("America/Jujuy", "America/Argentina/Jujuy"),
        ("America/Knox_IN", "America/Indiana/Knox"),
        ("America/Louisville", "America/Kentucky/Louisville"),
        ("America/Mendoza", "America/Argentina/Mendoza"),
        ("America/Montreal", "America/Toronto"),
        ("America/Shiprock", "America/Denver"),
        ("Asia/Calcutta", "Asia/Kolkata"),
        ("Asia/Katmandu", "Asia/Kathmandu"),
        ("Asia/Rangoon", "Asia/Yangon"),
        ("Asia/Saigon", "Asia/Ho_Chi_Minh"),
        ("Asia/Chongqing", "Asia/Shanghai"),
        ("Asia/Chungking", "Asia/Shanghai"),
        ("Asia/Harbin", "Asia/Shanghai"),
        ("Asia/Istanbul", "Europe/Istanbul"),
        ("Asia/Tel_Aviv", "Asia/Jerusalem"),
        ("Asia/Thimbu", "Asia/Thimphu"),
        ("Asia/Ulan_Bator", "Asia/Ulaanbaatar"),
        ("Asia/Dacca", "Asia/Dhaka"),
        ("Asia/Macao", "Asia/Macau"),
        ("Europe/Kiev", "Europe/Kyiv"),
        ("Europe/Belfast", "Europe/London"),
        ("Europe/Nicosia", "Asia/Nicosia"),
        ("Pacific/Samoa", "Pacific/Pago_Pago"),
        ("Pacific/Truk", "Pacific/Chuuk"),
        ("Pacific/Ponape", "Pacific/Pohnpei"),
        ("Pacific/Enderbury", "Pacific/Kanton"),
        ("Atlantic/Faeroe", "Atlantic/Faroe"),
        ("Australia/ACT", "Australia/Sydney"),
        ("Australia/NSW", "Australia/Sydney"),
        ("Australia/Canberra", "Australia/Sydney"),
        ("Australia/North", "Australia/Darwin"),
        ("Australia/Queensland", "Australia/Brisbane"),
        ("Australia/South", "Australia/Adelaide"),
        ("Australia/Tasmania", "Australia/Hobart"),
        ("Australia/Victoria", "Australia/Melbourne"),
        ("Australia/West", "Australia/Perth"),
        ("US/Arizona", "America/Phoenix"),
        ("US/Aleutian", "America/Adak"),
        ("US/East-Indiana", "America/Indiana/Indianapolis"),
        ("US/Indiana-Starke", "America/Indiana/Knox"),
        ("US/Michigan", "America/Detroit"),
        ("US/Samoa", "Pacific/Pago_Pago"),
        ("Canada/Atlantic", "America/Halifax"),
        ("Canada/Central", "America/Winnipeg"),
        ("Canada/Eastern", "America/Toronto"),
        ("Canada/Mountain", "America/Edmonton"),
        ("Canada/Newfoundland", "America/St_Johns"),
        ("Canada/Pacific", "America/Vancouver"),
        ("Canada/Saskatchewan", "America/Regina"),
        ("Canada/Yukon", "America/Whitehorse"),
        ("Mexico/General", "America/Mexico_City"),
        ("Mexico/BajaNorte", "America/Tijuana"),
        ("Mexico/BajaSur", "America/Mazatlan"),
        ("Brazil/East", "America/Sao_Paulo"),
        ("Brazil/West", "America/Manaus"),
        ("Chile/Continental", "America/Santiago"),
        ("Cuba", "America/Havana"),
        ("Egypt", "Africa/Cairo"),
        ("Eire", "Europe/Dublin"),
        ("GB", "Europe/London"),
        ("GB-Eire", "Europe/London"),
        ("Hongkong", "Asia/Hong_Kong"),
        ("Iceland", "Atlantic/Reykjavik"),
        ("Iran", "Asia/Tehran"),
        ("Israel", "Asia/Jerusalem"),
        ("Jamaica", "America/Jamaica"),
        ("Japan", "Asia/Tokyo"),
        ("ROK", "Asia/Seoul"),
        ("PRC", "Asia/Shanghai"),
        ("ROC", "Asia/Taipei"),
        ("Singapore", "Asia/Singapore"),
        ("Turkey", "Europe/Istanbul"),
        ("NZ", "Pacific/Auckland"),
        ("Poland", "Europe/Warsaw"),
        ("Portugal", "Europe/Lisbon"),
        ("EST5EDT", "America/New_York"),
        ("CST6CDT", "America/Chicago"),
        ("MST7MDT", "America/Denver"),
        ("PST8PDT", "America/Los_Angeles"),
        ("EST", "America/Panama"),
        ("MST", "America/Phoenix"),
        ("HST", "Pacific/Honolulu"),
        ("Navajo", "America/Denver"),
    ];
    const LISTED_US: &[&str] = &[
        "US/Alaska",
        "US/Central",
        "US/Eastern",
        "US/Hawaii",
        "US/Mountain",
        "US/Pacific",
    ];
    const LISTED_AREAS: &[&str] = &[
        "Africa/",
        "America/",
        "Antarctica/",
        "Asia/",
        "Atlantic/",
        "Australia/",
        "Europe/",
        "Indian/",
        "Pacific/",
    ];
    if let Some((_, canonical)) = LINKS.iter().find(|(alias, _)| *alias == zone) {
        return Some(canonical);
    }
    let listed = LISTED_US.contains(&zone)
        || zone == "Arctic/Longyearbyen"
        || LISTED_AREAS.iter().any(|area| zone.starts_with(area));
    listed.then_some(zone)
}

#[cfg(test)]
mod zone_tests {
    use super::synthflow_zone;

    #[test]
    fn zones_are_sent_as_synthflow_lists_them_or_not_at_all() {
        for (given, sent) in [
            ("America/New_York", Some("America/New_York")),
            ("US/Eastern", Some("US/Eastern")),
            ("Asia/Calcutta", Some("Asia/Kolkata")),
            (
                "America/Buenos_Aires",
                Some("America/Argentina/Buenos_Aires"),
            ),
            ("US/Arizona", Some("America/Phoenix")),
            ("Canada/Eastern", Some("America/Toronto")),
            ("EST5EDT", Some("America/New_York")),
            ("GMT", None),
            ("Zulu", None),
            ("UCT", None),
            ("Universal", None),
            ("UTC", None),
            ("Etc/GMT+5", None),
        ] {
            assert_eq!(synthflow_zone(given), sent, "{given}");
        }
    }
}
