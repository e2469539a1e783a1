//! The durable lead queue and the append-only attempt ledger, behind the `Store` trait so
//! that a PostgreSQL implementation can serve several daemons. Nothing SQLite-specific may
//! leak out of `sqlite.rs`: the daemon sees only this trait.
//!
//! Life of a lead: `queued` → (`claimed` → decided) → `deferred` (back to `queued` when due)
//! | `held` (until the rules or the pool change: then queued again) | `rejected` | `dialing` (ledger row written BEFORE the HTTP request) → `placed` (has a
//! `call_id`) → `completed` (outcome known) | back to `queued` (not placed: 429, connection
//! refused, or a lookup proved the call absent) | `failed` (the API refused the lead).

pub mod intake;
pub mod sqlite;

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::lead::RawLead;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("bad store location `{0}`: expected sqlite://PATH")]
    BadUrl(String),
    #[error("corrupt row for lead {lead}: {reason}")]
    Corrupt { lead: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadState {
    Queued,
    Deferred,
    Held,
    Claimed,
    Dialing,
    Placed,
    Completed,
    Failed,
    Rejected,
}

impl LeadState {
    pub const ALL: [LeadState; 9] = [
        LeadState::Queued,
        LeadState::Deferred,
        LeadState::Held,
        LeadState::Claimed,
        LeadState::Dialing,
        LeadState::Placed,
        LeadState::Completed,
        LeadState::Failed,
        LeadState::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LeadState::Queued => "queued",
            LeadState::Deferred => "deferred",
            LeadState::Held => "held",
            LeadState::Claimed => "claimed",
            LeadState::Dialing => "dialing",
            LeadState::Placed => "placed",
            LeadState::Completed => "completed",
            LeadState::Failed => "failed",
            LeadState::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<LeadState> {
        LeadState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A lead as stored: its identity, the lead exactly as it was enqueued, and where it is.
#[derive(Debug, Clone, Serialize)]
pub struct StoredLead {
    pub id: String,
    pub raw: RawLead,
    pub state: LeadState,
    pub due_at: DateTime<Utc>,
    pub attempts: u32,
    pub call_id: Option<String>,
    pub reason: Option<String>,
    /// The machine-readable code of `reason`, for a deferred or held lead.
    pub reason_code: Option<String>,
}

/// One row of the ledger: an attempt to call a lead from a number.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub id: i64,
    pub lead_id: String,
    pub model_id: String,
    pub from_number: String,
    pub route: String,
    pub at: DateTime<Utc>,
    pub status: AttemptStatus,
    pub call_id: Option<String>,
}

/// A call that ended, as number health counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEnd {
    pub from_number: String,
    pub status: String,
    pub duration: Option<std::time::Duration>,
    pub at: DateTime<Utc>,
}

/// One change made by hand or by policy to the pool or a number's rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// Who: the user running the CLI, or `policy` / `daemon`.
    pub actor: String,
    /// `attach`, `detach`, `rest`, `resume`, `pool apply`, ...
    pub action: String,
    /// The agent or number concerned.
    pub subject: String,
    pub detail: String,
}

/// What is known about an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    /// Written before the request; if it stays so, the call may or may not exist.
    Sent,
    Placed,
    NotPlaced,
}

impl AttemptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Sent => "sent",
            AttemptStatus::Placed => "placed",
            AttemptStatus::NotPlaced => "not_placed",
        }
    }

    pub fn parse(text: &str) -> Option<AttemptStatus> {
        [
            AttemptStatus::Sent,
            AttemptStatus::Placed,
            AttemptStatus::NotPlaced,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EnqueueCounts {
    pub accepted: u64,
    pub duplicate: u64,
}

/// After an attempt that did not place a call: try again at `due_at`, or give up.
#[derive(Debug, Clone)]
pub enum NotPlaced {
    Retry {
        due_at: DateTime<Utc>,
        reason: String,
    },
    Fail {
        reason: String,
    },
}

/// Storage of leads and attempts. All times are UTC; all methods are atomic.
pub trait Store: Send + Sync + 'static {
    /// Adds leads (id, lead); an id already present is a duplicate and is left alone.
    fn enqueue(
        &self,
        leads: &[(String, RawLead)],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<EnqueueCounts, StoreError>> + Send;
    /// Moves up to `limit` queued or deferred leads due at `now` to `claimed`, earliest first.
    fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<StoredLead>, StoreError>> + Send;
    /// Returns `claimed` leads to the queue (at start-up, or when shutting down).
    fn release_claims(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    fn defer(
        &self,
        lead_id: &str,
        until: DateTime<Utc>,
        code: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Keeps a lead until the rules or the pool change (`release_held`).
    fn hold(
        &self,
        lead_id: &str,
        code: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Queues every held lead again, due at `now` (the rules or the pool changed). Returns
    /// how many.
    fn release_held(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Held leads counted by reason, most first.
    fn held_reasons(&self) -> impl Future<Output = Result<Vec<(String, u64)>, StoreError>> + Send;
    /// Deferred leads counted by the code of their reason (`outside_calling_hours`, ...),
    /// most first.
    fn deferred_reasons(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, u64)>, StoreError>> + Send;
    fn reject(
        &self,
        lead_id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Writes the ledger row and moves the lead to `dialing`, in one transaction, before the
    /// request is sent. Returns the attempt id.
    fn begin_attempt(
        &self,
        lead_id: &str,
        model_id: &str,
        from_number: &str,
        route: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;
    fn attempt_placed(
        &self,
        attempt_id: i64,
        call_id: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn attempt_not_placed(
        &self,
        attempt_id: i64,
        next: &NotPlaced,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The call of a placed lead ended with `outcome` (a Synthflow call status) after
    /// `duration` (if known). Returns the caller ID the call was placed from, or `None` when
    /// it is not a live call of this store (already ended, or unknown).
    fn complete(
        &self,
        call_id: &str,
        outcome: &str,
        duration: Option<std::time::Duration>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Calls that ended since `since`, oldest first (for number health).
    fn call_ends_since(
        &self,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<CallEnd>, StoreError>> + Send;
    /// The first attempt from each caller ID ever (for warm-up).
    fn first_uses(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, DateTime<Utc>)>, StoreError>> + Send;
    /// Rests a number; a rest it was in ends where this one starts.
    fn rest_number(
        &self,
        rest: &crate::health::Rest,
        by: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Ends the rest of `number` now (its `until` becomes `now`). Returns whether it was
    /// resting.
    fn resume_number(
        &self,
        number: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Rests whose `until` is after `since`: with `since` = now, the running ones; earlier,
    /// also the ones that ended since (by time, by hand, or replaced by a later one).
    fn rests(
        &self,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<crate::health::Rest>, StoreError>> + Send;
    /// Appends to the audit log: who did what to which numbers or agents, and the result.
    fn audit(&self, entry: &AuditEntry) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The newest `limit` audit entries, newest first.
    fn audit_log(
        &self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;
    /// Attempts still `sent`: the call may exist; reconcile before anything else.
    fn in_doubt(&self) -> impl Future<Output = Result<Vec<Attempt>, StoreError>> + Send;
    /// Placed calls whose outcome is not known yet.
    fn live_calls(&self) -> impl Future<Output = Result<Vec<Attempt>, StoreError>> + Send;
    /// Attempts since `since` that may have placed a call (for rebuilding usage and limits).
    fn attempts_since(
        &self,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<Attempt>, StoreError>> + Send;
    fn lead(
        &self,
        lead_id: &str,
    ) -> impl Future<Output = Result<Option<StoredLead>, StoreError>> + Send;
    /// When the next queued or deferred lead is due.
    fn next_due(&self) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;
    fn counts(&self) -> impl Future<Output = Result<Vec<(LeadState, u64)>, StoreError>> + Send;
    /// A number that changes when another process has written to the store (new leads
    /// enqueued by `callroute enqueue`): cheap enough to poll while idle.
    fn data_version(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}
