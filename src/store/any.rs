//! The store a configuration names: `sqlite://PATH` (embedded, one daemon) or
//! `postgres://…` (several daemons). Every method goes to the one it holds.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::postgres::{PgStore, is_postgres_url};
use super::sqlite::SqliteStore;
use super::*;

#[derive(Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl AnyStore {
    /// Opens the store `url` names (creating and migrating it as needed).
    pub async fn open(url: &str) -> Result<AnyStore, StoreError> {
        if is_postgres_url(url) {
            Ok(AnyStore::Postgres(PgStore::open(url).await?))
        } else {
            Ok(AnyStore::Sqlite(SqliteStore::open(url).await?))
        }
    }
}

impl Store for AnyStore {
    fn engine(&self) -> &'static str {
        match self {
            AnyStore::Sqlite(s) => s.engine(),
            AnyStore::Postgres(s) => s.engine(),
        }
    }

    fn shared(&self) -> bool {
        match self {
            AnyStore::Sqlite(s) => s.shared(),
            AnyStore::Postgres(s) => s.shared(),
        }
    }

    fn member_id(&self) -> &str {
        match self {
            AnyStore::Sqlite(s) => s.member_id(),
            AnyStore::Postgres(s) => s.member_id(),
        }
    }

    async fn join(&self, info: &MemberInfo) -> Result<TakeOver, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.join(info).await,
            AnyStore::Postgres(s) => s.join(info).await,
        }
    }

    async fn heartbeat(&self, rules_hash: &str, lease: Duration) -> Result<Beat, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.heartbeat(rules_hash, lease).await,
            AnyStore::Postgres(s) => s.heartbeat(rules_hash, lease).await,
        }
    }

    async fn leave(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.leave().await,
            AnyStore::Postgres(s) => s.leave().await,
        }
    }

    async fn members(&self) -> Result<Vec<Member>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.members().await,
            AnyStore::Postgres(s) => s.members().await,
        }
    }

    async fn reserve_pace(
        &self,
        account: &str,
        interval: Duration,
    ) -> Result<Duration, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.reserve_pace(account, interval).await,
            AnyStore::Postgres(s) => s.reserve_pace(account, interval).await,
        }
    }

    async fn pause_account(&self, account: &str, pause: Duration) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.pause_account(account, pause).await,
            AnyStore::Postgres(s) => s.pause_account(account, pause).await,
        }
    }

    async fn open_calls(&self, account: &str) -> Result<u32, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.open_calls(account).await,
            AnyStore::Postgres(s) => s.open_calls(account).await,
        }
    }

    async fn lead_attempts(
        &self,
        lead_ids: &[String],
        phones: &[String],
        since: DateTime<Utc>,
    ) -> Result<Vec<Attempt>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.lead_attempts(lead_ids, phones, since).await,
            AnyStore::Postgres(s) => s.lead_attempts(lead_ids, phones, since).await,
        }
    }

    fn attempt_feed(&self) -> Option<tokio::sync::broadcast::Receiver<FedAttempt>> {
        match self {
            AnyStore::Sqlite(s) => s.attempt_feed(),
            AnyStore::Postgres(s) => s.attempt_feed(),
        }
    }

    async fn enqueue(
        &self,
        leads: &[(String, RawLead)],
        now: DateTime<Utc>,
    ) -> Result<EnqueueCounts, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.enqueue(leads, now).await,
            AnyStore::Postgres(s) => s.enqueue(leads, now).await,
        }
    }

    async fn claim_due_for(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        campaigns: &Campaigns,
    ) -> Result<Vec<StoredLead>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.claim_due_for(now, limit, campaigns).await,
            AnyStore::Postgres(s) => s.claim_due_for(now, limit, campaigns).await,
        }
    }

    async fn release_claims(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.release_claims(now).await,
            AnyStore::Postgres(s) => s.release_claims(now).await,
        }
    }

    async fn defer(
        &self,
        lead_id: &str,
        until: DateTime<Utc>,
        code: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.defer(lead_id, until, code, reason, now).await,
            AnyStore::Postgres(s) => s.defer(lead_id, until, code, reason, now).await,
        }
    }

    async fn hold(
        &self,
        lead_id: &str,
        code: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.hold(lead_id, code, reason, now).await,
            AnyStore::Postgres(s) => s.hold(lead_id, code, reason, now).await,
        }
    }

    async fn release_held(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.release_held(now).await,
            AnyStore::Postgres(s) => s.release_held(now).await,
        }
    }

    async fn held_reasons(&self) -> Result<Vec<(String, u64)>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.held_reasons().await,
            AnyStore::Postgres(s) => s.held_reasons().await,
        }
    }

    async fn deferred_reasons(&self) -> Result<Vec<(String, u64)>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.deferred_reasons().await,
            AnyStore::Postgres(s) => s.deferred_reasons().await,
        }
    }

    async fn reject(
        &self,
        lead_id: &str,
        code: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.reject(lead_id, code, reason, now).await,
            AnyStore::Postgres(s) => s.reject(lead_id, code, reason, now).await,
        }
    }

    async fn rejected_reasons(&self) -> Result<Vec<(String, u64)>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.rejected_reasons().await,
            AnyStore::Postgres(s) => s.rejected_reasons().await,
        }
    }

    async fn begin_attempt_checked(
        &self,
        attempt: &NewAttempt<'_>,
        guard: &AttemptGuard,
    ) -> Result<Begun, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.begin_attempt_checked(attempt, guard).await,
            AnyStore::Postgres(s) => s.begin_attempt_checked(attempt, guard).await,
        }
    }

    async fn attempt_placed(
        &self,
        attempt_id: i64,
        call_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.attempt_placed(attempt_id, call_id, now).await,
            AnyStore::Postgres(s) => s.attempt_placed(attempt_id, call_id, now).await,
        }
    }

    async fn attempt_not_placed(
        &self,
        attempt_id: i64,
        next: &NotPlaced,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.attempt_not_placed(attempt_id, next, now).await,
            AnyStore::Postgres(s) => s.attempt_not_placed(attempt_id, next, now).await,
        }
    }

    async fn end_call(
        &self,
        call_id: &str,
        end: &super::outbox::CallEndReport<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.end_call(call_id, end, now).await,
            AnyStore::Postgres(s) => s.end_call(call_id, end, now).await,
        }
    }

    async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<super::outbox::OutboxEvent>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.claim_outbox(now, limit, lease).await,
            AnyStore::Postgres(s) => s.claim_outbox(now, limit, lease).await,
        }
    }

    async fn outbox_delivered(&self, seq: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.outbox_delivered(seq, now).await,
            AnyStore::Postgres(s) => s.outbox_delivered(seq, now).await,
        }
    }

    async fn outbox_failed(
        &self,
        seq: i64,
        error: &str,
        next_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.outbox_failed(seq, error, next_at).await,
            AnyStore::Postgres(s) => s.outbox_failed(seq, error, next_at).await,
        }
    }

    async fn outbox_events(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<super::outbox::OutboxEvent>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.outbox_events(from, to, limit).await,
            AnyStore::Postgres(s) => s.outbox_events(from, to, limit).await,
        }
    }

    async fn prune_outbox(
        &self,
        before: DateTime<Utc>,
        undelivered: bool,
    ) -> Result<u64, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.prune_outbox(before, undelivered).await,
            AnyStore::Postgres(s) => s.prune_outbox(before, undelivered).await,
        }
    }

    async fn outbox_backlog(&self) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.outbox_backlog().await,
            AnyStore::Postgres(s) => s.outbox_backlog().await,
        }
    }

    async fn call_ends_since(&self, since: DateTime<Utc>) -> Result<Vec<CallEnd>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.call_ends_since(since).await,
            AnyStore::Postgres(s) => s.call_ends_since(since).await,
        }
    }

    async fn first_uses(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.first_uses().await,
            AnyStore::Postgres(s) => s.first_uses().await,
        }
    }

    async fn rest_number(&self, rest: &crate::health::Rest, by: &str) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.rest_number(rest, by).await,
            AnyStore::Postgres(s) => s.rest_number(rest, by).await,
        }
    }

    async fn resume_number(
        &self,
        number: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.resume_number(number, by, now).await,
            AnyStore::Postgres(s) => s.resume_number(number, by, now).await,
        }
    }

    async fn rests(&self, since: DateTime<Utc>) -> Result<Vec<crate::health::Rest>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.rests(since).await,
            AnyStore::Postgres(s) => s.rests(since).await,
        }
    }

    async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.audit(entry).await,
            AnyStore::Postgres(s) => s.audit(entry).await,
        }
    }

    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.audit_log(limit).await,
            AnyStore::Postgres(s) => s.audit_log(limit).await,
        }
    }

    async fn suppress(
        &self,
        entries: &[crate::compliance::StoredEntry],
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.suppress(entries, audit).await,
            AnyStore::Postgres(s) => s.suppress(entries, audit).await,
        }
    }

    async fn unsuppress(
        &self,
        list: &str,
        numbers: &[String],
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.unsuppress(list, numbers, audit).await,
            AnyStore::Postgres(s) => s.unsuppress(list, numbers, audit).await,
        }
    }

    async fn suppressions(
        &self,
        number: Option<&str>,
    ) -> Result<Vec<crate::compliance::StoredEntry>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.suppressions(number).await,
            AnyStore::Postgres(s) => s.suppressions(number).await,
        }
    }

    async fn suppression_version(&self) -> Result<i64, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.suppression_version().await,
            AnyStore::Postgres(s) => s.suppression_version().await,
        }
    }

    async fn audited_attempts(
        &self,
        query: &super::AttemptQuery,
    ) -> Result<Vec<super::AuditedAttempt>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.audited_attempts(query).await,
            AnyStore::Postgres(s) => s.audited_attempts(query).await,
        }
    }

    async fn in_doubt(&self) -> Result<Vec<Attempt>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.in_doubt().await,
            AnyStore::Postgres(s) => s.in_doubt().await,
        }
    }

    async fn live_calls(&self) -> Result<Vec<Attempt>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.live_calls().await,
            AnyStore::Postgres(s) => s.live_calls().await,
        }
    }

    async fn attempts_since(&self, since: DateTime<Utc>) -> Result<Vec<Attempt>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.attempts_since(since).await,
            AnyStore::Postgres(s) => s.attempts_since(since).await,
        }
    }

    async fn lead(&self, lead_id: &str) -> Result<Option<StoredLead>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.lead(lead_id).await,
            AnyStore::Postgres(s) => s.lead(lead_id).await,
        }
    }

    async fn lead_of_call(&self, call_id: &str) -> Result<Option<StoredLead>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.lead_of_call(call_id).await,
            AnyStore::Postgres(s) => s.lead_of_call(call_id).await,
        }
    }

    async fn next_due_for(
        &self,
        campaigns: &Campaigns,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.next_due_for(campaigns).await,
            AnyStore::Postgres(s) => s.next_due_for(campaigns).await,
        }
    }

    async fn counts(&self) -> Result<Vec<(LeadState, u64)>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.counts().await,
            AnyStore::Postgres(s) => s.counts().await,
        }
    }

    async fn data_version(&self) -> Result<u64, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.data_version().await,
            AnyStore::Postgres(s) => s.data_version().await,
        }
    }
}
