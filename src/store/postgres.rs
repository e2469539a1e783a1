//! The PostgreSQL store: one queue, one ledger and one set of limits for several daemons.
//!
//! * Claims are owned: `claim_due` takes rows with `FOR UPDATE SKIP LOCKED` and stamps them
//!   with this member's id; a member releases only its own claims.
//! * Leases: each member renews `members.heartbeat_at` (the server's clock); a member whose
//!   lease expired is taken over by exactly one survivor (the row update that marks it taken
//!   is the arbiter): its claims are queued again and its open attempts become the
//!   survivor's, to reconcile or follow.
//! * An attempt is committed only if the lead is still this member's claim, the number's
//!   ledger holds no use the decision did not count (an advisory lock per number serialises
//!   these checks) and the account is under its live-call limit (its `account_pace` row
//!   locked): daemons decide on local views, the commit is the guard.
//! * Pacing is a sequencer: each attempt reserves the account's next beat
//!   (`account_pace.next_us`, on the server's clock), so N daemons together keep one rate.
//! * Every attempt written or undone is announced with `NOTIFY` (and so is every enqueue
//!   and rest), so other daemons' views stay fresh without a query per decision.
//!
//! Times are epoch milliseconds in `BIGINT` columns, as in the SQLite store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::broadcast;

use super::{
    Attempt, AttemptGuard, AttemptStatus, AuditEntry, Beat, Begun, CallEnd, Campaigns,
    EnqueueCounts, FedAttempt, LeadState, Member, MemberInfo, NewAttempt, NotPlaced, Store,
    StoreError, StoredLead, TakeOver,
};
use crate::lead::RawLead;

/// The schema, one migration a step; a store records the steps it has applied.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE leads (
    id TEXT PRIMARY KEY,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    call_id TEXT,
    reason TEXT,
    reason_code TEXT,
    -- The lead's campaign (from its payload): each account's loop claims its campaigns.
    campaign TEXT,
    owner TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX leads_due ON leads (due_at) WHERE state IN ('queued', 'deferred');
-- Held and deferred leads are counted by reason; queued ones (the bulk) stay out of it.
CREATE INDEX leads_waiting ON leads (state) WHERE state IN ('held', 'deferred');
CREATE INDEX leads_by_call ON leads (call_id) WHERE call_id IS NOT NULL;
CREATE INDEX leads_claimed ON leads (owner) WHERE state = 'claimed';
CREATE TABLE attempts (
    id BIGSERIAL PRIMARY KEY,
    lead_id TEXT NOT NULL,
    model_id TEXT NOT NULL,
    from_number TEXT NOT NULL,
    route TEXT NOT NULL,
    account TEXT NOT NULL,
    owner TEXT,
    open BOOLEAN NOT NULL,
    at BIGINT NOT NULL,
    -- When the attempt was committed, on the server's clock (microseconds): the account's
    -- attempts per second are counted on it.
    committed_us BIGINT NOT NULL
);
CREATE INDEX attempts_committed ON attempts (account, committed_us);
CREATE INDEX attempts_by_at ON attempts (at);
CREATE INDEX attempts_by_number ON attempts (from_number, at);
CREATE INDEX attempts_by_lead ON attempts (lead_id, at);
CREATE INDEX attempts_open ON attempts (account) WHERE open;
CREATE INDEX attempts_open_owner ON attempts (owner) WHERE open;
CREATE TABLE attempt_results (
    attempt_id BIGINT PRIMARY KEY REFERENCES attempts (id),
    status TEXT NOT NULL,
    call_id TEXT,
    response TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX attempt_results_by_call ON attempt_results (call_id);
CREATE TABLE call_ends (
    call_id TEXT PRIMARY KEY,
    from_number TEXT NOT NULL,
    status TEXT NOT NULL,
    duration_ms BIGINT,
    at BIGINT NOT NULL
);
CREATE INDEX call_ends_by_at ON call_ends (at);
CREATE TABLE number_rests (
    id BIGSERIAL PRIMARY KEY,
    number TEXT NOT NULL,
    since BIGINT NOT NULL,
    until BIGINT NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    by TEXT NOT NULL,
    ended_at BIGINT,
    ended_by TEXT
);
CREATE INDEX number_rests_by_number ON number_rests (number, ended_at);
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE members (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    version TEXT NOT NULL,
    rules_hash TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    left_at BIGINT,
    taken_over_by TEXT
);
-- Each account's next pacing beat, on the server's clock (microseconds).
CREATE TABLE account_pace (
    account TEXT PRIMARY KEY,
    next_us BIGINT NOT NULL
);
",
    "
-- Compliance (issue 11): store-kept suppression lists, and each attempt's proof.
CREATE TABLE suppressions (
    number TEXT NOT NULL,
    list TEXT NOT NULL,
    reason TEXT NOT NULL,
    added_by TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    evidence TEXT,
    expires BIGINT,
    PRIMARY KEY (number, list)
);
CREATE TABLE suppression_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
ALTER TABLE attempts ADD COLUMN proof TEXT;
ALTER TABLE attempts ADD COLUMN to_number TEXT;
CREATE INDEX attempts_by_to_number ON attempts (to_number);
",
    "
CREATE TABLE outbox (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    at BIGINT NOT NULL,
    data TEXT NOT NULL,
    tries BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    claimed_by TEXT,
    claimed_until BIGINT,
    delivered_at BIGINT,
    last_error TEXT
);
CREATE INDEX outbox_due ON outbox (next_at) WHERE delivered_at IS NULL;
CREATE INDEX outbox_by_at ON outbox (at);
",
];

/// The server's clock in epoch ms: leases use one clock for every member.
const SERVER_NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";
/// The same in microseconds: pacing beats are finer than milliseconds (at 100/s, a beat
/// rounded up to whole milliseconds would cost 8 % of the rate).
const SERVER_NOW_US: &str = "(extract(epoch from clock_timestamp()) * 1000000)::bigint";

const ATTEMPT_SELECT: &str = "SELECT a.id, a.lead_id, a.model_id, a.from_number, a.route, a.account, a.at, r.status, r.call_id, a.to_number
     FROM attempts a LEFT JOIN attempt_results r ON r.attempt_id = a.id";

const LEAD_COLUMNS: &str = "id, payload, state, due_at, attempts, call_id, reason, reason_code";

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    member: Arc<str>,
    /// The `NOTIFY` channel of this store's schema.
    channel: Arc<str>,
    /// Notifications received: changes when any process wrote (see `data_version`).
    version: Arc<AtomicU64>,
    feed: broadcast::Sender<FedAttempt>,
}

fn db(error: sqlx::Error) -> StoreError {
    StoreError::Database(error.to_string())
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

use super::rows::{self, time};

/// Whether `url` names a PostgreSQL store.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Escapes a value for `COPY … (FORMAT text)`.
fn copy_escape(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

impl PgStore {
    /// Counts a change of the store-kept lists and audits it, in the change's transaction.
    async fn suppression_changed(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO suppression_version (id, version) VALUES (1, 1)
             ON CONFLICT (id) DO UPDATE SET version = suppression_version.version + 1",
        )
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        // Daemons listening read the lists again (their data version moves).
        self.notify(tx, "s").await?;
        insert_audit(&mut **tx, audit).await
    }

    /// Connects to `postgres://…`, applies pending migrations (under a lock: concurrent
    /// starts are safe) and starts listening for other members' writes.
    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        PgStore::open_in_schema(url, None).await
    }

    /// `open`, with every table in `schema` (created if missing): tests, or several queues
    /// in one database.
    pub async fn open_in_schema(url: &str, schema: Option<&str>) -> Result<PgStore, StoreError> {
        let pool = PgStore::connect(url, schema).await?;
        migrate(&pool).await?;
        let current: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&pool)
            .await
            .map_err(db)?;
        // Channel names are identifiers (at most 63 bytes): the schema's hash, not its name.
        let channel: Arc<str> = format!(
            "callroute_{:016x}",
            xxhash_rust::xxh3::xxh3_64(current.as_bytes())
        )
        .into();
        let (feed, _) = broadcast::channel(4096);
        let store = PgStore {
            pool,
            member: super::new_member_id().into(),
            channel,
            version: Arc::new(AtomicU64::new(0)),
            feed,
        };
        store.listen().await?;
        Ok(store)
    }

    /// Applies pending migrations and returns which were applied (`callroute migrate`).
    pub async fn migrate_only(url: &str) -> Result<Vec<i64>, StoreError> {
        let pool = PgStore::connect(url, None).await?;
        let applied = migrate(&pool).await;
        pool.close().await;
        applied
    }

    async fn connect(url: &str, schema: Option<&str>) -> Result<PgPool, StoreError> {
        let mut options: PgConnectOptions = url
            .parse()
            .map_err(|_| StoreError::BadUrl(url.to_string()))?;
        if let Some(schema) = schema {
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(db)?;
        // The schema asked for (here, or by the URL's search_path) is created if missing.
        let wanted = match schema {
            Some(schema) => Some(schema.to_string()),
            None => {
                let current: Option<String> = sqlx::query_scalar("SELECT current_schema()")
                    .fetch_one(&pool)
                    .await
                    .map_err(db)?;
                let path: String = sqlx::query_scalar("SHOW search_path")
                    .fetch_one(&pool)
                    .await
                    .map_err(db)?;
                let first = path
                    .split(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .trim_matches('"');
                (current.is_none() && !first.is_empty() && !first.starts_with('$'))
                    .then(|| first.to_string())
            }
        };
        if let Some(schema) = wanted {
            sqlx::query(AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{}\"",
                schema.replace('"', "\"\"")
            )))
            .execute(&pool)
            .await
            .map_err(db)?;
        }
        Ok(pool)
    }

    /// Listens on the store's channel: every notification moves `data_version`; attempts
    /// of other members go to the feed. A lost connection is reconnected (and counts as a
    /// change: what was missed is re-read or caught by the commit-time checks).
    async fn listen(&self) -> Result<(), StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(db)?;
        listener.listen(&self.channel).await.map_err(db)?;
        let version = self.version.clone();
        let feed = self.feed.clone();
        let member = self.member.clone();
        tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(notification)) => {
                        version.fetch_add(1, Ordering::SeqCst);
                        if let Some(fed) = parse_fed(notification.payload(), &member) {
                            let _ = feed.send(fed);
                        }
                    }
                    Ok(None) => {
                        version.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(_) => {
                        version.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(())
    }

    async fn attempts_of_member(&self, condition: &str) -> Result<Vec<Attempt>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!("{ATTEMPT_SELECT} {condition}")))
            .bind(&*self.member)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows.iter().map(rows::attempt).collect())
    }

    async fn set_state(
        &self,
        lead_id: &str,
        state: LeadState,
        due_at: Option<DateTime<Utc>>,
        code: Option<&str>,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE leads SET state = $1, owner = NULL, due_at = COALESCE($2, due_at), reason = $3, reason_code = $4, updated_at = $5 WHERE id = $6")
            .bind(state.as_str())
            .bind(due_at.map(ms))
            .bind(reason)
            .bind(code)
            .bind(ms(now))
            .bind(lead_id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn count_by(
        &self,
        column: &'static str,
        state: LeadState,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        // `column` is one of this file's constants, never input.
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT COALESCE({column}, '') AS value, COUNT(*) AS n FROM leads WHERE state = $1
             GROUP BY value ORDER BY n DESC, value"
        )))
        .bind(state.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(rows::value_count).collect())
    }

    /// `NOTIFY` inside `tx` (delivered at commit).
    async fn notify(&self, tx: &mut sqlx::PgConnection, payload: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&*self.channel)
            .bind(payload)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Takes over members chosen by `which` (SQL over `members`; `$1` = this member, `$2` =
    /// the server's now): their claims queued again, their open attempts this member's.
    async fn take_over(&self, which: &str) -> Result<TakeOver, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // The row update is the arbiter: of several survivors, one marks each member taken.
        let members: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "UPDATE members SET taken_over_by = $1, left_at = COALESCE(left_at, $2)
             WHERE id != $1 AND taken_over_by IS NULL AND {which} RETURNING id"
        )))
        .bind(&*self.member)
        .bind(server_now(&mut tx).await?)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        if members.is_empty() {
            return Ok(TakeOver::default());
        }
        let released = sqlx::query(
            "UPDATE leads SET state = 'queued', owner = NULL WHERE state = 'claimed' AND owner = ANY($1)",
        )
        .bind(&members)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        let taken: Vec<i64> = sqlx::query_scalar(
            "UPDATE attempts SET owner = $1 WHERE open AND owner = ANY($2) RETURNING id",
        )
        .bind(&*self.member)
        .bind(&members)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        self.notify(&mut tx, "q").await?;
        tx.commit().await.map_err(db)?;
        let mut take = TakeOver {
            members,
            released,
            ..TakeOver::default()
        };
        if !taken.is_empty() {
            take.in_doubt = self.in_doubt().await?;
            take.in_doubt.retain(|a| taken.contains(&a.id));
            take.live = self.live_calls().await?;
            take.live.retain(|a| taken.contains(&a.id));
        }
        Ok(take)
    }
}

async fn server_now(tx: &mut sqlx::PgConnection) -> Result<i64, StoreError> {
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT {SERVER_NOW}")))
        .fetch_one(&mut *tx)
        .await
        .map_err(db)
}

/// `a|OWNER|AT|UNDONE|FROM|TO|LEAD` (the lead id last: it may hold `|`; TO empty when
/// unknown); own attempts are skipped.
fn parse_fed(payload: &str, member: &str) -> Option<FedAttempt> {
    let mut parts = payload.splitn(7, '|');
    if parts.next()? != "a" || parts.next()? == member {
        return None;
    }
    let at = time(parts.next()?.parse().ok()?);
    let undone = parts.next()? == "1";
    Some(FedAttempt {
        from_number: parts.next()?.to_string(),
        to_number: Some(parts.next()?.to_string()).filter(|t| !t.is_empty()),
        lead_id: parts.next()?.to_string(),
        at,
        undone,
    })
}

/// Applies the migrations not yet applied, one transaction each, under an advisory lock
/// (per schema): of daemons starting together, one migrates and the others wait.
async fn migrate(pool: &PgPool) -> Result<Vec<i64>, StoreError> {
    let mut connection = pool.acquire().await.map_err(db)?;
    let key = "SELECT hashtext('callroute migrations ' || current_schema())";
    sqlx::query(AssertSqlSafe(format!("SELECT pg_advisory_lock(({key}))")))
        .execute(&mut *connection)
        .await
        .map_err(db)?;
    let result = async {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS callroute_migrations (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .execute(&mut *connection)
        .await
        .map_err(db)?;
        let done: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM callroute_migrations")
                .fetch_one(&mut *connection)
                .await
                .map_err(db)?;
        let known = MIGRATIONS.len() as i64;
        if done > known {
            return Err(StoreError::SchemaTooNew { found: done, known });
        }
        let mut applied = Vec::new();
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
            let version = index as i64 + 1;
            let mut tx = sqlx::Connection::begin(&mut *connection)
                .await
                .map_err(db)?;
            sqlx::raw_sql(AssertSqlSafe(*sql))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            sqlx::query("INSERT INTO callroute_migrations (version) VALUES ($1)")
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            applied.push(version);
        }
        Ok(applied)
    }
    .await;
    let unlocked = sqlx::query(AssertSqlSafe(format!("SELECT pg_advisory_unlock(({key}))")))
        .execute(&mut *connection)
        .await
        .map_err(db);
    let applied = result?;
    unlocked?;
    Ok(applied)
}

impl Store for PgStore {
    fn engine(&self) -> &'static str {
        "postgres"
    }

    fn shared(&self) -> bool {
        true
    }

    fn member_id(&self) -> &str {
        &self.member
    }

    async fn join(&self, info: &MemberInfo) -> Result<TakeOver, StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO members (id, host, pid, version, rules_hash, started_at, heartbeat_at)
             VALUES ($1, $2, $3, $4, $5, {SERVER_NOW}, {SERVER_NOW})
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = {SERVER_NOW}, rules_hash = $5, left_at = NULL, taken_over_by = NULL"
        )))
        .bind(&*self.member)
        .bind(&info.host)
        .bind(i64::from(info.pid))
        .bind(&info.version)
        .bind(&info.rules_hash)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        // Members that left cleanly with calls open, and earlier runs on this host that are
        // gone (killed, crashed), are taken over now; others when their lease runs out.
        let others: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT id, host, pid FROM members WHERE id != $1 AND left_at IS NULL AND taken_over_by IS NULL",
        )
        .bind(&*self.member)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let gone = super::ids_condition(&super::gone_from_this_host(others));
        self.take_over(&format!(
            "(({gone}) OR (left_at IS NOT NULL AND heartbeat_at = 0))"
        ))
        .await
    }

    async fn heartbeat(&self, rules_hash: &str, lease: Duration) -> Result<Beat, StoreError> {
        let taken_by: Option<Option<String>> = sqlx::query_scalar(AssertSqlSafe(format!(
            "UPDATE members SET heartbeat_at = {SERVER_NOW}, rules_hash = $2 WHERE id = $1 RETURNING taken_over_by"
        )))
        .bind(&*self.member)
        .bind(rules_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let lost = !matches!(taken_by, Some(None));
        let lease_ms = lease.as_millis() as i64;
        let taken = self
            .take_over(&format!(
                "((left_at IS NULL AND heartbeat_at < $2 - {lease_ms}) OR (left_at IS NOT NULL AND heartbeat_at = 0))"
            ))
            .await?;
        Ok(Beat { lost, taken })
    }

    async fn leave(&self) -> Result<(), StoreError> {
        self.release_claims(Utc::now()).await?;
        let open: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM attempts WHERE open AND owner = $1")
                .bind(&*self.member)
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
        // With calls still open, a heartbeat of 0 asks the next member to take them at once.
        let heartbeat = if open > 0 {
            "0".to_string()
        } else {
            SERVER_NOW.to_string()
        };
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE members SET left_at = {SERVER_NOW}, heartbeat_at = {heartbeat} WHERE id = $1"
        )))
        .bind(&*self.member)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn members(&self) -> Result<Vec<Member>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT id, host, pid, version, rules_hash, started_at, heartbeat_at, left_at, taken_over_by
             FROM members WHERE left_at IS NULL OR left_at > {SERVER_NOW} - 3600000 ORDER BY started_at, id"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(rows::member).collect())
    }

    async fn reserve_pace(
        &self,
        account: &str,
        interval: Duration,
    ) -> Result<Duration, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "WITH now AS (SELECT {SERVER_NOW_US} AS us)
             INSERT INTO account_pace AS p (account, next_us) SELECT $1, us + $2 FROM now
             ON CONFLICT (account) DO UPDATE SET next_us = GREATEST(p.next_us, (SELECT us FROM now)) + $2
             RETURNING p.next_us - $2 AS slot, (SELECT us FROM now) AS now"
        )))
        .bind(account)
        .bind(interval.as_micros() as i64)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        let wait = row.get::<i64, _>("slot") - row.get::<i64, _>("now");
        Ok(Duration::from_micros(wait.max(0) as u64))
    }

    async fn pause_account(&self, account: &str, pause: Duration) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO account_pace AS p (account, next_us) VALUES ($1, {SERVER_NOW_US} + $2)
             ON CONFLICT (account) DO UPDATE SET next_us = GREATEST(p.next_us, EXCLUDED.next_us)"
        )))
        .bind(account)
        .bind(pause.as_micros() as i64)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn open_calls(&self, account: &str) -> Result<u32, StoreError> {
        let live: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM attempts WHERE open AND account = $1")
                .bind(account)
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
        Ok(live as u32)
    }

    async fn lead_attempts(
        &self,
        lead_ids: &[String],
        phones: &[String],
        since: DateTime<Utc>,
    ) -> Result<Vec<Attempt>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{ATTEMPT_SELECT} WHERE (a.lead_id = ANY($1) OR a.to_number = ANY($3)) AND a.at >= $2 AND (r.status IS NULL OR r.status != 'not_placed') ORDER BY a.at"
        )))
        .bind(lead_ids)
        .bind(ms(since))
        .bind(phones)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(rows::attempt).collect())
    }

    fn attempt_feed(&self) -> Option<broadcast::Receiver<FedAttempt>> {
        Some(self.feed.subscribe())
    }

    async fn enqueue(
        &self,
        leads: &[(String, RawLead)],
        now: DateTime<Utc>,
    ) -> Result<EnqueueCounts, StoreError> {
        // Duplicates within the batch are dropped here (the first stays, as SQLite keeps it);
        // duplicates of leads already stored are found by the database.
        let mut seen = std::collections::HashSet::with_capacity(leads.len());
        let mut data = String::with_capacity(leads.len() * 150);
        let now_ms = ms(now).to_string();
        for (id, raw) in leads {
            if !seen.insert(id.as_str()) {
                continue;
            }
            let due = super::due_ms(raw, now);
            let payload = serde_json::to_string(raw).map_err(|e| StoreError::Corrupt {
                lead: id.clone(),
                reason: e.to_string(),
            })?;
            copy_escape(id, &mut data);
            data.push('\t');
            copy_escape(&payload, &mut data);
            data.push('\t');
            match raw.campaign.as_deref().map(str::trim) {
                Some(campaign) => copy_escape(campaign, &mut data),
                None => data.push_str("\\N"),
            }
            data.push('\t');
            data.push_str(&due.to_string());
            data.push_str("\tqueued\t");
            data.push_str(&now_ms);
            data.push('\t');
            data.push_str(&now_ms);
            data.push('\n');
        }
        let data = data.into_bytes();
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Most batches are new leads: `COPY` straight into the queue. A batch holding a lead
        // already stored fails on its key; then the batch goes through a staging table and
        // `ON CONFLICT DO NOTHING` instead.
        sqlx::query("SAVEPOINT direct_copy")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let accepted = match copy_direct(&mut tx, &data).await {
            Ok(copied) => {
                sqlx::query("RELEASE SAVEPOINT direct_copy")
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                copied
            }
            Err(e) if is_unique_violation(&e) => {
                sqlx::query("ROLLBACK TO SAVEPOINT direct_copy")
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                copy_skipping_duplicates(&mut tx, &data).await?
            }
            Err(e) => return Err(db(e)),
        };
        if accepted > 0 {
            self.notify(&mut tx, "q").await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(EnqueueCounts {
            accepted,
            duplicate: leads.len() as u64 - accepted,
        })
    }

    async fn claim_due_for(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        campaigns: &Campaigns,
    ) -> Result<Vec<StoredLead>, StoreError> {
        let only = campaigns.condition();
        let rows = sqlx::query(AssertSqlSafe(format!(
            "UPDATE leads SET state = 'claimed', owner = $3, updated_at = $1
             WHERE id IN (SELECT id FROM leads WHERE state IN ('queued', 'deferred') AND due_at <= $1{only}
                          ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING {LEAD_COLUMNS}"
        )))
        .bind(ms(now))
        .bind(i64::from(limit))
        .bind(&*self.member)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut leads: Vec<StoredLead> = rows.iter().map(rows::lead).collect::<Result<_, _>>()?;
        leads.sort_by_key(|l| l.due_at);
        Ok(leads)
    }

    async fn release_claims(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE leads SET state = 'queued', owner = NULL, updated_at = $1 WHERE state = 'claimed' AND owner = $2",
        )
        .bind(ms(now))
        .bind(&*self.member)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn defer(
        &self,
        lead_id: &str,
        until: DateTime<Utc>,
        code: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.set_state(
            lead_id,
            LeadState::Deferred,
            Some(until),
            Some(code),
            Some(reason),
            now,
        )
        .await
    }

    async fn hold(
        &self,
        lead_id: &str,
        code: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.set_state(
            lead_id,
            LeadState::Held,
            None,
            Some(code),
            Some(reason),
            now,
        )
        .await
    }

    async fn release_held(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE leads SET state = 'queued', due_at = $1, updated_at = $1 WHERE state = 'held'",
        )
        .bind(ms(now))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn held_reasons(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.count_by("reason", LeadState::Held).await
    }

    async fn deferred_reasons(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.count_by("reason_code", LeadState::Deferred).await
    }

    async fn reject(
        &self,
        lead_id: &str,
        code: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = sqlx::query("UPDATE leads SET state = 'rejected', reason = $1, reason_code = $2, updated_at = $3 WHERE id = $4 RETURNING payload, attempts")
            .bind(reason)
            .bind(code)
            .bind(ms(now))
            .bind(lead_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if let Some(row) = row {
            let payload: String = row.get("payload");
            let facts = super::outbox::LeadFacts {
                id: lead_id,
                payload: &payload,
                attempts: row.get::<i64, _>("attempts") as u32,
            };
            let result = if code == "suppressed" {
                "suppressed"
            } else {
                "rejected"
            };
            insert_event(
                &mut tx,
                &super::outbox::lead_ended(&facts, result, reason, now),
            )
            .await?;
        }
        tx.commit().await.map_err(db)
    }

    async fn rejected_reasons(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.count_by("reason_code", LeadState::Rejected).await
    }

    async fn begin_attempt_checked(
        &self,
        attempt: &NewAttempt<'_>,
        guard: &AttemptGuard,
    ) -> Result<Begun, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let owned = sqlx::query("UPDATE leads SET state = 'dialing', owner = NULL, attempts = attempts + 1, reason = NULL, reason_code = NULL, updated_at = $1 WHERE id = $2 AND state = 'claimed' AND owner = $3")
            .bind(ms(attempt.at))
            .bind(attempt.lead_id)
            .bind(&*self.member)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if owned.rows_affected() == 0 {
            return Ok(Begun::NotOwned);
        }
        for (column, value, uses) in super::ledger_checks(attempt, guard) {
            // One commit per number, and per called person, at a time, whoever makes it
            // (the number's lock first: the order is fixed, so two commits never wait on
            // each other).
            // (Keyed as before persons had locks: a daemon of the last version still
            // shares the numbers' locks during a rolling upgrade.)
            let kind = if column == "from_number" {
                "number"
            } else {
                "person"
            };
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('callroute ' || $1 || ' ' || $2))")
                .bind(kind)
                .bind(value)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            let rows = sqlx::query(AssertSqlSafe(format!(
                "{ATTEMPT_SELECT} WHERE a.{column} = $1 AND a.at >= $2 AND (r.status IS NULL OR r.status != 'not_placed')"
            )))
            .bind(value)
            .bind(ms(uses.since))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            let ledger = rows.iter().map(rows::attempt).collect();
            let unknown = super::unknown_uses(ledger, &uses.known_ms);
            if !unknown.is_empty() {
                return Ok(Begun::Stale(unknown));
            }
        }
        if guard.concurrency.is_some() || guard.per_second.is_some() {
            // The account's row is its lock: one count of its calls at a time.
            sqlx::query(
                "INSERT INTO account_pace (account, next_us) VALUES ($1, 0) ON CONFLICT (account) DO NOTHING",
            )
            .bind(attempt.account)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            sqlx::query("SELECT 1 FROM account_pace WHERE account = $1 FOR UPDATE")
                .bind(attempt.account)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        if let Some(limit) = guard.concurrency {
            let live: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM attempts WHERE open AND account = $1")
                    .bind(attempt.account)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
            if live >= i64::from(limit) {
                return Ok(Begun::AccountBusy { live: live as u32 });
            }
        }
        if let Some(per_second) = guard.per_second {
            let row = sqlx::query(AssertSqlSafe(format!(
                "WITH now AS (SELECT {SERVER_NOW_US} AS us)
                 SELECT COUNT(*) AS n, MIN(committed_us) AS oldest, (SELECT us FROM now) AS now
                 FROM attempts WHERE account = $1 AND committed_us > (SELECT us FROM now) - $2"
            )))
            .bind(attempt.account)
            .bind(super::PACE_WINDOW_US)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            if row.get::<i64, _>("n") >= i64::from(per_second) {
                let frees =
                    row.get::<Option<i64>, _>("oldest").unwrap_or(0) + super::PACE_WINDOW_US;
                let wait = (frees - row.get::<i64, _>("now")).max(1_000);
                return Ok(Begun::Paced {
                    wait: Duration::from_micros(wait as u64),
                });
            }
        }
        if let Some(check) = &guard.suppression {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT * FROM suppressions WHERE number = $1 AND (expires IS NULL OR expires > $2){}",
                super::lists_not_exempt(&check.exempt)
            )))
            .bind(&check.number)
            .bind(ms(check.now))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            let entries: Vec<_> = rows.iter().filter_map(rows::stored_entry).collect();
            if !entries.is_empty() {
                return Ok(Begun::Suppressed(entries));
            }
        }
        let id: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "INSERT INTO attempts (lead_id, model_id, from_number, route, account, owner, open, at, committed_us, proof, to_number)
             VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7, {SERVER_NOW_US}, $8, $9) RETURNING id"
        )))
        .bind(attempt.lead_id)
        .bind(attempt.model_id)
        .bind(attempt.from_number)
        .bind(attempt.route)
        .bind(attempt.account)
        .bind(&*self.member)
        .bind(ms(attempt.at))
        .bind(attempt.proof)
        .bind(attempt.to_number)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let payload = format!(
            "a|{}|{}|0|{}|{}|{}",
            self.member,
            ms(attempt.at),
            attempt.from_number,
            attempt.to_number.unwrap_or_default(),
            attempt.lead_id
        );
        self.notify(&mut tx, &payload).await?;
        tx.commit().await.map_err(db)?;
        Ok(Begun::Written(id))
    }

    async fn attempt_placed(
        &self,
        attempt_id: i64,
        call_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let lead_id = append_result(
            &mut tx,
            attempt_id,
            AttemptStatus::Placed,
            Some(call_id),
            None,
            now,
        )
        .await?;
        sqlx::query(
            "UPDATE leads SET state = 'placed', call_id = $1, updated_at = $2 WHERE id = $3",
        )
        .bind(call_id)
        .bind(ms(now))
        .bind(&lead_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn attempt_not_placed(
        &self,
        attempt_id: i64,
        next: &NotPlaced,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (state, due, reason) = match next {
            NotPlaced::Retry { due_at, reason } => (LeadState::Queued, Some(ms(*due_at)), reason),
            NotPlaced::Fail { reason } => (LeadState::Failed, None, reason),
        };
        let mut tx = self.pool.begin().await.map_err(db)?;
        let lead_id = append_result(
            &mut tx,
            attempt_id,
            AttemptStatus::NotPlaced,
            None,
            Some(reason),
            now,
        )
        .await?;
        let row = sqlx::query(
            "UPDATE attempts SET open = FALSE WHERE id = $1 RETURNING from_number, at, to_number",
        )
        .bind(attempt_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        // An attempt that placed no call is not an attempt on the lead.
        let lead = sqlx::query("UPDATE leads SET state = $1, owner = NULL, due_at = COALESCE($2, due_at), reason = $3, reason_code = NULL, attempts = GREATEST(attempts - 1, 0), updated_at = $4 WHERE id = $5 RETURNING payload, attempts")
            .bind(state.as_str())
            .bind(due)
            .bind(reason)
            .bind(ms(now))
            .bind(&lead_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        if state == LeadState::Failed {
            let payload: String = lead.get("payload");
            let facts = super::outbox::LeadFacts {
                id: &lead_id,
                payload: &payload,
                attempts: lead.get::<i64, _>("attempts") as u32,
            };
            insert_event(
                &mut tx,
                &super::outbox::lead_ended(&facts, "failed", reason, now),
            )
            .await?;
        }
        let payload = format!(
            "a|{}|{}|1|{}|{}|{}",
            self.member,
            row.get::<i64, _>("at"),
            row.get::<String, _>("from_number"),
            row.get::<Option<String>, _>("to_number")
                .unwrap_or_default(),
            lead_id
        );
        self.notify(&mut tx, &payload).await?;
        if state == LeadState::Queued {
            self.notify(&mut tx, "q").await?;
        }
        tx.commit().await.map_err(db)
    }

    async fn end_call(
        &self,
        call_id: &str,
        end: &super::outbox::CallEndReport<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        let (outcome, duration) = (end.status, end.duration);
        let next = super::after_the_call(outcome, end.redial);
        let mut tx = self.pool.begin().await.map_err(db)?;
        let done = sqlx::query("UPDATE leads SET state = $1, due_at = COALESCE($2, due_at), reason = $3, reason_code = $4, updated_at = $5 WHERE call_id = $6 AND state = 'placed'")
            .bind(next.state.as_str())
            .bind(next.due_at.map(ms))
            .bind(next.reason)
            .bind(next.reason_code)
            .bind(ms(now))
            .bind(call_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let from: Option<String> = sqlx::query_scalar(
            "UPDATE attempts SET open = FALSE WHERE id = (SELECT attempt_id FROM attempt_results WHERE call_id = $1 ORDER BY attempt_id DESC LIMIT 1)
             RETURNING from_number",
        )
        .bind(call_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if let Some(from) = &from {
            sqlx::query(
                "INSERT INTO call_ends (call_id, from_number, status, duration_ms, at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(call_id)
            .bind(from)
            .bind(outcome)
            .bind(duration.map(|d| d.as_millis() as i64))
            .bind(ms(now))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        if next.state == LeadState::Deferred {
            // Idle members re-read when the next lead is due.
            self.notify(&mut tx, "q").await?;
        }
        let lead = sqlx::query("SELECT id, payload, attempts FROM leads WHERE call_id = $1")
            .bind(call_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if let Some(row) = lead {
            let (id, payload): (String, String) = (row.get("id"), row.get("payload"));
            let facts = super::outbox::LeadFacts {
                id: &id,
                payload: &payload,
                attempts: row.get::<i64, _>("attempts") as u32,
            };
            let caller_id = from.as_deref().unwrap_or_default();
            for event in super::outbox::call_ended(&facts, call_id, caller_id, end, now) {
                insert_event(&mut tx, &event).await?;
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(Some(from.unwrap_or_default()))
    }

    async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<super::outbox::OutboxEvent>, StoreError> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
        let rows = sqlx::query(
            "UPDATE outbox SET claimed_by = $1, claimed_until = $2 WHERE seq IN (
                 SELECT seq FROM outbox WHERE delivered_at IS NULL AND next_at <= $3
                 AND (claimed_until IS NULL OR claimed_until <= $3) ORDER BY seq LIMIT $4
                 FOR UPDATE SKIP LOCKED)
             RETURNING seq, id, kind, at, data, tries, delivered_at, last_error",
        )
        .bind(&*self.member)
        .bind(ms(until))
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut events: Vec<_> = rows.iter().map(rows::outbox_event).collect();
        events.sort_by_key(|e| e.seq);
        Ok(events)
    }

    async fn outbox_delivered(&self, seq: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET delivered_at = $1, tries = tries + 1, claimed_by = NULL, claimed_until = NULL, last_error = NULL WHERE seq = $2")
            .bind(ms(now))
            .bind(seq)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn outbox_failed(
        &self,
        seq: i64,
        error: &str,
        next_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET tries = tries + 1, next_at = $1, last_error = $2, claimed_by = NULL, claimed_until = NULL WHERE seq = $3")
            .bind(ms(next_at))
            .bind(crate::bounded(error, 500))
            .bind(seq)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn outbox_events(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<super::outbox::OutboxEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, id, kind, at, data, tries, delivered_at, last_error FROM outbox
             WHERE at >= $1 AND at < $2 ORDER BY seq LIMIT $3",
        )
        .bind(ms(from))
        .bind(ms(to))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(rows::outbox_event).collect())
    }

    async fn prune_outbox(
        &self,
        before: DateTime<Utc>,
        undelivered: bool,
    ) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM outbox WHERE at < $1 AND (delivered_at IS NOT NULL OR $2)")
                .bind(ms(before))
                .bind(undelivered)
                .execute(&self.pool)
                .await
                .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn outbox_backlog(&self) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(at) AS oldest FROM outbox WHERE delivered_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok((
            row.get::<i64, _>("n") as u64,
            row.get::<Option<i64>, _>("oldest")
                .and_then(DateTime::from_timestamp_millis),
        ))
    }

    async fn call_ends_since(&self, since: DateTime<Utc>) -> Result<Vec<CallEnd>, StoreError> {
        let rows = sqlx::query(
            "SELECT from_number, status, duration_ms, at FROM call_ends WHERE at >= $1 ORDER BY at, call_id",
        )
        .bind(ms(since))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(rows::call_end).collect())
    }

    async fn first_uses(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let rows =
            sqlx::query("SELECT from_number, MIN(at) AS first FROM attempts GROUP BY from_number")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        Ok(rows
            .iter()
            .map(|row| (row.get("from_number"), time(row.get("first"))))
            .collect())
    }

    async fn rest_number(&self, rest: &crate::health::Rest, by: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("UPDATE number_rests SET until = LEAST(until, $1), ended_at = $1, ended_by = $2 WHERE number = $3 AND ended_at IS NULL AND until > $1")
            .bind(ms(rest.since))
            .bind(by)
            .bind(rest.number.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "INSERT INTO number_rests (number, since, until, reason, source, by) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(rest.number.to_string())
        .bind(ms(rest.since))
        .bind(ms(rest.until))
        .bind(&rest.reason)
        .bind(&rest.source)
        .bind(by)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        self.notify(&mut tx, "r").await?;
        tx.commit().await.map_err(db)
    }

    async fn resume_number(
        &self,
        number: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let done = sqlx::query(
            "UPDATE number_rests SET until = $1, ended_at = $1, ended_by = $2 WHERE number = $3 AND ended_at IS NULL AND until > $1",
        )
        .bind(ms(now))
        .bind(by)
        .bind(number)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        self.notify(&mut tx, "r").await?;
        tx.commit().await.map_err(db)?;
        Ok(done.rows_affected() > 0)
    }

    async fn rests(&self, since: DateTime<Utc>) -> Result<Vec<crate::health::Rest>, StoreError> {
        let rows = sqlx::query(
            "SELECT number, since, until, reason, source FROM number_rests WHERE until > $1 ORDER BY number, since",
        )
        .bind(ms(since))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().filter_map(rows::rest).collect())
    }

    async fn suppress(
        &self,
        entries: &[crate::compliance::StoredEntry],
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut written = 0;
        // Batches of 1,000 rows as arrays: an import of a million numbers is a thousand
        // statements, not a million.
        for chunk in entries.chunks(1000) {
            let column = |f: &dyn Fn(&crate::compliance::StoredEntry) -> Option<String>| {
                chunk.iter().map(f).collect::<Vec<Option<String>>>()
            };
            let ms_column = |f: &dyn Fn(&crate::compliance::StoredEntry) -> Option<i64>| {
                chunk.iter().map(f).collect::<Vec<Option<i64>>>()
            };
            written += sqlx::query(
                "INSERT INTO suppressions (number, list, reason, added_by, added_at, evidence, expires)
                 SELECT DISTINCT ON (number, list) * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::bigint[])
                   AS t(number, list, reason, added_by, added_at, evidence, expires)
                 ON CONFLICT (number, list) DO UPDATE SET reason = excluded.reason, added_by = excluded.added_by,
                 added_at = excluded.added_at, evidence = excluded.evidence, expires = excluded.expires",
            )
            .bind(column(&|e| Some(e.number.to_string())))
            .bind(column(&|e| Some(e.list.clone())))
            .bind(column(&|e| Some(e.reason.clone())))
            .bind(column(&|e| Some(e.added_by.clone())))
            .bind(ms_column(&|e| Some(ms(e.added_at))))
            .bind(column(&|e| e.evidence.clone()))
            .bind(ms_column(&|e| e.expires.map(ms)))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        }
        self.suppression_changed(&mut tx, audit).await?;
        tx.commit().await.map_err(db)?;
        Ok(written)
    }

    async fn unsuppress(
        &self,
        list: &str,
        numbers: &[String],
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let removed = sqlx::query("DELETE FROM suppressions WHERE list = $1 AND number = ANY($2)")
            .bind(list)
            .bind(numbers)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        self.suppression_changed(&mut tx, audit).await?;
        tx.commit().await.map_err(db)?;
        Ok(removed)
    }

    async fn suppressions(
        &self,
        number: Option<&str>,
    ) -> Result<Vec<crate::compliance::StoredEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM suppressions WHERE $1::text IS NULL OR number = $1 ORDER BY number, list",
        )
        .bind(number)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().filter_map(rows::stored_entry).collect())
    }

    async fn suppression_version(&self) -> Result<i64, StoreError> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM suppression_version WHERE id = 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        Ok(version.unwrap_or(0))
    }

    async fn audited_attempts(
        &self,
        query: &crate::store::AttemptQuery,
    ) -> Result<Vec<crate::store::AuditedAttempt>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.id, a.lead_id, a.model_id, a.from_number, a.route, a.account, a.at, r.status, r.call_id, a.to_number, a.proof
             FROM attempts a LEFT JOIN attempt_results r ON r.attempt_id = a.id
             WHERE ($1::text IS NULL OR a.lead_id = $1) AND ($2::text IS NULL OR a.from_number = $2 OR a.to_number = $2)
               AND ($3::bigint IS NULL OR a.at >= $3) AND ($4::bigint IS NULL OR a.at < $4)
             ORDER BY a.at, a.id LIMIT $5",
        )
        .bind(&query.lead)
        .bind(&query.number)
        .bind(query.from.map(ms))
        .bind(query.to.map(ms))
        .bind(i64::from(query.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(rows::audited_attempt).collect())
    }

    async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        insert_audit(&self.pool, entry).await
    }

    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, actor, action, subject, detail FROM audit ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(rows::audit).collect())
    }

    async fn in_doubt(&self) -> Result<Vec<Attempt>, StoreError> {
        self.attempts_of_member("WHERE r.attempt_id IS NULL AND a.owner = $1 ORDER BY a.id")
            .await
    }

    async fn live_calls(&self) -> Result<Vec<Attempt>, StoreError> {
        self.attempts_of_member(
            "JOIN leads l ON l.call_id = r.call_id
             WHERE r.status = 'placed' AND l.state = 'placed' AND a.owner = $1 ORDER BY a.id",
        )
        .await
    }

    async fn attempts_since(&self, since: DateTime<Utc>) -> Result<Vec<Attempt>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{ATTEMPT_SELECT} WHERE a.at >= $1 AND (r.status IS NULL OR r.status != 'not_placed') ORDER BY a.at"
        )))
        .bind(ms(since))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(rows::attempt).collect())
    }

    async fn lead(&self, lead_id: &str) -> Result<Option<StoredLead>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {LEAD_COLUMNS} FROM leads WHERE id = $1"
        )))
        .bind(lead_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(rows::lead).transpose()
    }

    async fn lead_of_call(&self, call_id: &str) -> Result<Option<StoredLead>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {LEAD_COLUMNS} FROM leads WHERE call_id = $1 LIMIT 1"
        )))
        .bind(call_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(rows::lead).transpose()
    }

    async fn next_due_for(
        &self,
        campaigns: &Campaigns,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT MIN(due_at) FROM leads WHERE state IN ('queued', 'deferred'){}",
            campaigns.condition()
        )))
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(next.map(time))
    }

    async fn counts(&self) -> Result<Vec<(LeadState, u64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM leads GROUP BY state")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows::state_counts(&rows))
    }

    async fn data_version(&self) -> Result<u64, StoreError> {
        Ok(self.version.load(Ordering::SeqCst))
    }
}

/// Appends `entry` to the audit log, on the pool or in a transaction.
async fn insert_audit<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Postgres>,
    entry: &AuditEntry,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit (at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(ms(entry.at))
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(&entry.subject)
    .bind(&entry.detail)
    .execute(executor)
    .await
    .map_err(db)?;
    Ok(())
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.code().as_deref() == Some("23505"))
}

/// The columns of an enqueue row, in `COPY` order.
const ENQUEUE_COLUMNS: &str = "id, payload, campaign, due_at, state, created_at, updated_at";

/// `COPY` of enqueue rows straight into `leads`.
async fn copy_direct(tx: &mut sqlx::PgConnection, data: &[u8]) -> Result<u64, sqlx::Error> {
    let mut copy = tx
        .copy_in_raw(&format!(
            "COPY leads ({ENQUEUE_COLUMNS}) FROM STDIN (FORMAT text)"
        ))
        .await?;
    copy.send(data).await?;
    copy.finish().await
}

/// The same rows through a staging table, skipping ids already stored.
async fn copy_skipping_duplicates(
    tx: &mut sqlx::PgConnection,
    data: &[u8],
) -> Result<u64, StoreError> {
    sqlx::query(
        "CREATE TEMP TABLE IF NOT EXISTS incoming_leads (id TEXT, payload TEXT, campaign TEXT, due_at BIGINT, state TEXT, created_at BIGINT, updated_at BIGINT) ON COMMIT DELETE ROWS",
    )
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    let mut copy = tx
        .copy_in_raw("COPY incoming_leads FROM STDIN (FORMAT text)")
        .await
        .map_err(db)?;
    copy.send(data).await.map_err(db)?;
    copy.finish().await.map_err(db)?;
    Ok(sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO leads ({ENQUEUE_COLUMNS}) SELECT {ENQUEUE_COLUMNS} FROM incoming_leads
         ON CONFLICT (id) DO NOTHING"
    )))
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected())
}

/// Appends what became of an attempt (once); returns the attempt's lead.
async fn append_result(
    tx: &mut sqlx::PgConnection,
    attempt_id: i64,
    status: AttemptStatus,
    call_id: Option<&str>,
    response: Option<&str>,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    sqlx::query("INSERT INTO attempt_results (attempt_id, status, call_id, response, at) VALUES ($1, $2, $3, $4, $5)")
        .bind(attempt_id)
        .bind(status.as_str())
        .bind(call_id)
        .bind(response)
        .bind(ms(now))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    sqlx::query_scalar("SELECT lead_id FROM attempts WHERE id = $1")
        .bind(attempt_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)
}

/// Writes `event` in the transaction that made it (once: its id is unique).
async fn insert_event(
    tx: &mut sqlx::PgConnection,
    event: &super::outbox::NewEvent,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO outbox (id, kind, at, data, next_at) VALUES ($1, $2, $3, $4, $3) ON CONFLICT (id) DO NOTHING")
        .bind(&event.id)
        .bind(event.kind)
        .bind(ms(event.at))
        .bind(event.data.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_values_are_escaped() {
        let mut out = String::new();
        copy_escape("a\\b\tc\nd\re", &mut out);
        assert_eq!(out, "a\\\\b\\tc\\nd\\re");
    }

    #[test]
    fn fed_attempts_are_parsed_and_own_ones_skipped() {
        let fed = parse_fed(
            "a|m2|1700000000000|1|+14155550100|+13055550123|lead|with|bars",
            "m1",
        )
        .unwrap();
        assert_eq!(fed.lead_id, "lead|with|bars");
        assert_eq!(fed.from_number, "+14155550100");
        assert_eq!(fed.to_number.as_deref(), Some("+13055550123"));
        let unknown = parse_fed("a|m2|1700000000000|0|+14155550100||l", "m1").unwrap();
        assert_eq!((unknown.to_number, unknown.lead_id.as_str()), (None, "l"));
        assert!(fed.undone);
        assert_eq!(fed.at.timestamp_millis(), 1_700_000_000_000);
        assert!(parse_fed("a|m1|1700000000000|0|+14155550100||x", "m1").is_none());
        assert!(parse_fed("q", "m1").is_none());
    }
}
