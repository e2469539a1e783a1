//! Results for the user's systems: events written in the same transaction as the state
//! change they report (a call's end, a lead finished), kept until delivered. What each event
//! says is built here, once for both stores; each store only inserts and reads rows.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::lead::RawLead;
use crate::phone::E164;

/// An attempt's call ended (every attempt that placed a call has one).
pub const ATTEMPT_ENDED: &str = "attempt.ended";
/// A lead will not be called again: reached, its cadence spent or stopped, rejected, failed.
pub const LEAD_FINISHED: &str = "lead.finished";

/// One event, as delivered (Standard Webhooks: `type`, `timestamp`, `data`) and exported.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxEvent {
    /// Order of writing in this store.
    pub seq: i64,
    /// The same on every delivery of the event: receivers drop repeats by it.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub timestamp: DateTime<Utc>,
    pub data: Value,
    /// Deliveries tried.
    pub tries: u32,
    pub delivered_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

impl OutboxEvent {
    /// The body a delivery posts (Standard Webhooks: `type`, `timestamp`, `data`).
    pub fn webhook_body(&self) -> String {
        json!({
            "type": self.kind,
            "timestamp": instant(self.timestamp),
            "data": self.data,
        })
        .to_string()
    }
}

/// An event to write.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub kind: &'static str,
    pub at: DateTime<Utc>,
    pub data: Value,
}

/// How a call ended, as the daemon read it: what the store writes with the call's end.
#[derive(Debug, Clone, Copy)]
pub struct CallEndReport<'a> {
    /// The Synthflow call status.
    pub status: &'a str,
    pub duration: Option<std::time::Duration>,
    /// The call's record, flattened (`compliance::outcome_fields`): collected variables,
    /// end reason and the rest go out with the event.
    pub record: Option<&'a Value>,
    /// The cadence's next attempt, if the lead gets one.
    pub redial: Option<&'a crate::cadence::Redial>,
    /// Why the lead is finished when it gets no redial (`reached`, `cadence_spent`,
    /// `stopped`, `ended`); `None`: `reached` for a completed call, else `ended`.
    pub finished: Option<&'a str>,
}

impl CallEndReport<'_> {
    pub fn of(status: &str) -> CallEndReport<'_> {
        CallEndReport {
            status,
            duration: None,
            record: None,
            redial: None,
            finished: None,
        }
    }

    fn result(&self) -> &str {
        self.finished.unwrap_or(if self.status == "completed" {
            "reached"
        } else {
            "ended"
        })
    }
}

/// A lead's id, number and attempts, as its row holds them.
pub struct LeadFacts<'a> {
    pub id: &'a str,
    pub payload: &'a str,
    pub attempts: u32,
}

impl LeadFacts<'_> {
    /// The lead's number in E.164 (stores written before leads were normalised may hold
    /// another form: given as it is).
    fn phone(&self) -> String {
        let raw: RawLead = serde_json::from_str(self.payload).unwrap_or_default();
        let text = raw.phone.unwrap_or_default();
        E164::parse(text.trim()).map_or(text, |n| n.to_string())
    }
}

fn event_id(parts: &[&str]) -> String {
    let joined = parts.join("\u{1f}");
    format!(
        "evt_{:032x}",
        xxhash_rust::xxh3::xxh3_128(joined.as_bytes())
    )
}

fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The events of a call's end: `attempt.ended`, and `lead.finished` unless it is redialed.
pub fn call_ended(
    lead: &LeadFacts<'_>,
    call_id: &str,
    caller_id: &str,
    end: &CallEndReport<'_>,
    at: DateTime<Utc>,
) -> Vec<NewEvent> {
    let phone = lead.phone();
    let next = end.redial.map(
        |r| json!({ "attempt": r.attempt, "of": r.max_attempts, "due_at": instant(r.due_at) }),
    );
    let mut events = vec![NewEvent {
        id: event_id(&[ATTEMPT_ENDED, lead.id, call_id]),
        kind: ATTEMPT_ENDED,
        at,
        data: json!({
            "lead_id": lead.id,
            "phone": phone,
            "attempt": lead.attempts,
            "caller_id": caller_id,
            "call_id": call_id,
            "status": end.status,
            "end_call_reason": end.record.and_then(|r| r.get("end_call_reason")).cloned(),
            "duration_s": end.duration.map(|d| d.as_secs()),
            "ended_at": instant(at),
            "collected_variables": end.record.and_then(|r| r.get("collected_variables")).cloned(),
            "record": end.record.cloned(),
            "next_attempt": next,
        }),
    }];
    if end.redial.is_none() {
        events.push(finished(lead, &phone, end.result(), end.status, at));
    }
    events
}

/// `lead.finished` for a lead rejected or failed without (another) call.
pub fn lead_ended(lead: &LeadFacts<'_>, result: &str, reason: &str, at: DateTime<Utc>) -> NewEvent {
    finished(lead, &lead.phone(), result, reason, at)
}

fn finished(
    lead: &LeadFacts<'_>,
    phone: &str,
    result: &str,
    reason: &str,
    at: DateTime<Utc>,
) -> NewEvent {
    let attempts = lead.attempts.to_string();
    NewEvent {
        id: event_id(&[LEAD_FINISHED, lead.id, &attempts, result]),
        kind: LEAD_FINISHED,
        at,
        data: json!({
            "lead_id": lead.id,
            "phone": phone,
            "result": result,
            "reason": reason,
            "attempts": lead.attempts,
            "finished_at": instant(at),
        }),
    }
}

/// The wait before delivery try `tries` + 1 after `tries` failed: 5 s, doubling, at most
/// an hour (jitter is the deliverer's).
pub fn retry_after(tries: u32) -> std::time::Duration {
    let secs = 5u64.saturating_mul(1 << tries.min(10));
    std::time::Duration::from_secs(secs.min(3600))
}
