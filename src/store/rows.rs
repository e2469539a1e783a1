//! Rows of either database turned into the store's types, once: both stores keep the same
//! columns (times as epoch milliseconds), so only reading a column differs.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use super::{
    Attempt, AttemptStatus, AuditEntry, CallEnd, LeadState, Member, MemberInfo, StoreError,
    StoredLead,
};
use crate::lead::RawLead;

/// A row's columns, by name, in the types the stores use.
pub(super) trait Columns {
    fn text(&self, column: &str) -> String;
    fn maybe_text(&self, column: &str) -> Option<String>;
    fn int(&self, column: &str) -> i64;
    fn maybe_int(&self, column: &str) -> Option<i64>;
}

macro_rules! columns_for {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, column: &str) -> String {
                self.get(column)
            }
            fn maybe_text(&self, column: &str) -> Option<String> {
                self.get(column)
            }
            fn int(&self, column: &str) -> i64 {
                self.get(column)
            }
            fn maybe_int(&self, column: &str) -> Option<i64> {
                self.get(column)
            }
        }
    };
}

columns_for!(SqliteRow);
columns_for!(PgRow);

pub(super) fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

pub(super) fn lead(row: &impl Columns) -> Result<StoredLead, StoreError> {
    let id = row.text("id");
    let payload = row.text("payload");
    let raw: RawLead = serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt {
        lead: id.clone(),
        reason: e.to_string(),
    })?;
    let state = row.text("state");
    Ok(StoredLead {
        state: LeadState::parse(&state).ok_or_else(|| StoreError::Corrupt {
            lead: id.clone(),
            reason: format!("state `{state}`"),
        })?,
        due_at: time(row.int("due_at")),
        attempts: row.int("attempts") as u32,
        call_id: row.maybe_text("call_id"),
        reason: row.maybe_text("reason"),
        reason_code: row.maybe_text("reason_code"),
        raw,
        id,
    })
}

/// An attempt with its result (`status` NULL while in doubt).
pub(super) fn attempt(row: &impl Columns) -> Attempt {
    Attempt {
        id: row.int("id"),
        lead_id: row.text("lead_id"),
        model_id: row.text("model_id"),
        from_number: row.text("from_number"),
        route: row.text("route"),
        account: row.text("account"),
        at: time(row.int("at")),
        status: row
            .maybe_text("status")
            .as_deref()
            .and_then(AttemptStatus::parse)
            .unwrap_or(AttemptStatus::Sent),
        call_id: row.maybe_text("call_id"),
        to_number: row.maybe_text("to_number"),
    }
}

pub(super) fn stored_entry(row: &impl Columns) -> Option<crate::compliance::StoredEntry> {
    Some(crate::compliance::StoredEntry {
        number: row.text("number").parse().ok()?,
        list: row.text("list"),
        reason: row.text("reason"),
        added_by: row.text("added_by"),
        added_at: time(row.int("added_at")),
        evidence: row.maybe_text("evidence"),
        expires: row.maybe_int("expires").map(time),
    })
}

/// A ledger row with its proof (columns of `attempt` plus `to_number` and `proof`).
pub(super) fn audited_attempt(row: &impl Columns) -> super::AuditedAttempt {
    super::AuditedAttempt {
        attempt: attempt(row),
        to_number: row.maybe_text("to_number"),
        proof: row
            .maybe_text("proof")
            .and_then(|p| serde_json::from_str(&p).ok()),
    }
}

pub(super) fn member(row: &impl Columns) -> Member {
    let left_at = row.maybe_int("left_at").map(time);
    // A member that left cleanly has its heartbeat zeroed (the mark that it may be taken
    // over at once); its last sign of life is when it left.
    let heartbeat_at = match row.int("heartbeat_at") {
        0 => left_at.unwrap_or_else(|| time(row.int("started_at"))),
        ms => time(ms),
    };
    Member {
        id: row.text("id"),
        info: MemberInfo {
            host: row.text("host"),
            pid: row.int("pid") as u32,
            version: row.text("version"),
            rules_hash: row.text("rules_hash"),
        },
        started_at: time(row.int("started_at")),
        heartbeat_at,
        left_at,
        taken_over_by: row.maybe_text("taken_over_by"),
    }
}

pub(super) fn call_end(row: &impl Columns) -> CallEnd {
    CallEnd {
        from_number: row.text("from_number"),
        status: row.text("status"),
        duration: row
            .maybe_int("duration_ms")
            .map(|ms| Duration::from_millis(ms.max(0) as u64)),
        at: time(row.int("at")),
    }
}

/// A rest, unless its number no longer parses (it is then no number of ours).
pub(super) fn rest(row: &impl Columns) -> Option<crate::health::Rest> {
    Some(crate::health::Rest {
        number: row.text("number").parse().ok()?,
        since: time(row.int("since")),
        until: time(row.int("until")),
        reason: row.text("reason"),
        source: row.text("source"),
    })
}

/// Every lead state with how many leads are in it (0 for states no row names), from rows
/// of `state` and `n`.
pub(super) fn state_counts(rows: &[impl Columns]) -> Vec<(LeadState, u64)> {
    let mut counts: Vec<(LeadState, u64)> = LeadState::ALL.iter().map(|s| (*s, 0)).collect();
    for row in rows {
        let state = row.text("state");
        if let Some(entry) = counts.iter_mut().find(|(s, _)| s.as_str() == state) {
            entry.1 = row.int("n") as u64;
        }
    }
    counts
}

/// A row of `value` and `n` (a count by some column).
pub(super) fn value_count(row: &impl Columns) -> (String, u64) {
    (row.text("value"), row.int("n") as u64)
}

pub(super) fn audit(row: &impl Columns) -> AuditEntry {
    AuditEntry {
        at: time(row.int("at")),
        actor: row.text("actor"),
        action: row.text("action"),
        subject: row.text("subject"),
        detail: row.text("detail"),
    }
}

/// An `outbox` row (seq, id, kind, at, data, tries, delivered_at, last_error).
pub(super) fn outbox_event(row: &impl Columns) -> super::outbox::OutboxEvent {
    super::outbox::OutboxEvent {
        seq: row.int("seq"),
        id: row.text("id"),
        kind: row.text("kind"),
        timestamp: time(row.int("at")),
        data: serde_json::from_str(&row.text("data")).unwrap_or(serde_json::Value::Null),
        tries: row.int("tries") as u32,
        delivered_at: row.maybe_int("delivered_at").map(time),
        last_error: row.maybe_text("last_error"),
    }
}
