//! The embedded SQLite store (WAL). One writer at a time is SQLite's nature; batching keeps
//! enqueue of a million rows to seconds.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row};

use super::{
    Attempt, AttemptGuard, AttemptStatus, AuditEntry, Beat, Begun, CallEnd, Campaigns,
    EnqueueCounts, FedAttempt, LeadState, Member, MemberInfo, NewAttempt, NotPlaced, Store,
    StoreError, StoredLead, TakeOver,
};
use crate::lead::RawLead;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    at INTEGER NOT NULL,
    data TEXT NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    claimed_by TEXT,
    claimed_until INTEGER,
    delivered_at INTEGER,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_at) WHERE delivered_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_by_at ON outbox (at);
CREATE TABLE IF NOT EXISTS leads (
    id TEXT PRIMARY KEY,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    due_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    call_id TEXT,
    reason TEXT,
    reason_code TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS leads_by_due ON leads (state, due_at);
CREATE INDEX IF NOT EXISTS leads_by_call ON leads (call_id);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    lead_id TEXT NOT NULL,
    model_id TEXT NOT NULL,
    from_number TEXT NOT NULL,
    route TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_by_at ON attempts (at);
-- What became of an attempt, appended once it is known; an attempt without a result is in doubt.
CREATE TABLE IF NOT EXISTS attempt_results (
    attempt_id INTEGER PRIMARY KEY REFERENCES attempts (id),
    status TEXT NOT NULL,
    call_id TEXT,
    response TEXT,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attempt_results_by_call ON attempt_results (call_id);
-- How each placed call ended, with the caller ID it was placed from (number health).
CREATE TABLE IF NOT EXISTS call_ends (
    call_id TEXT PRIMARY KEY,
    from_number TEXT NOT NULL,
    status TEXT NOT NULL,
    duration_ms INTEGER,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS call_ends_by_at ON call_ends (at);
-- Numbers resting, by policy or by hand; a row is never deleted, only ended.
CREATE TABLE IF NOT EXISTS number_rests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    number TEXT NOT NULL,
    since INTEGER NOT NULL,
    until INTEGER NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    by TEXT NOT NULL,
    ended_at INTEGER,
    ended_by TEXT
);
CREATE INDEX IF NOT EXISTS number_rests_by_number ON number_rests (number, ended_at);
-- The daemons working this store (on SQLite: one at a time, each run a new member).
CREATE TABLE IF NOT EXISTS members (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    version TEXT NOT NULL,
    rules_hash TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    left_at INTEGER,
    taken_over_by TEXT
);
-- Each account's next pacing beat (real time, epoch microseconds).
CREATE TABLE IF NOT EXISTS account_pace (
    account TEXT PRIMARY KEY,
    next_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS suppressions (
    number TEXT NOT NULL,
    list TEXT NOT NULL,
    reason TEXT NOT NULL,
    added_by TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    evidence TEXT,
    expires INTEGER,
    PRIMARY KEY (number, list)
);
CREATE TABLE IF NOT EXISTS suppression_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
";

/// Rows per INSERT statement when enqueueing (6 parameters each, far below SQLite's limit).
const ENQUEUE_CHUNK: usize = 500;

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// A connection of its own for `data_version`, which counts the commits of *other*
    /// connections: processes that enqueue into the same file, typically. `None` in memory.
    watcher: Option<std::sync::Arc<tokio::sync::Mutex<sqlx::SqliteConnection>>>,
    member: std::sync::Arc<str>,
}

/// Adds `column` to `table` unless it is there; returns whether it added it.
async fn add_column(
    pool: &SqlitePool,
    table: &'static str,
    column: &'static str,
    declaration: &'static str,
) -> Result<bool, StoreError> {
    let present: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = '{column}'"
    )))
    .fetch_one(pool)
    .await
    .map_err(db)?;
    if present > 0 {
        return Ok(false);
    }
    sqlx::query(AssertSqlSafe(format!(
        "ALTER TABLE {table} ADD COLUMN {column} {declaration}"
    )))
    .execute(pool)
    .await
    .map_err(db)?;
    Ok(true)
}

/// Real time in epoch ms: leases run on it, whatever clock decisions use.
fn wall_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Real time in epoch microseconds: pacing runs on it.
fn wall_us() -> i64 {
    Utc::now().timestamp_micros()
}

fn db(error: sqlx::Error) -> StoreError {
    StoreError::Database(error.to_string())
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

use super::rows::{self, time};

/// Creates the database file `path` (mode 0600) if it does not exist; any query string
/// (`?mode=…`) is not part of the name. A failure is left to SQLite to report.
fn create_private(path: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let file = path.split('?').next().unwrap_or(path);
    if file.is_empty() || std::path::Path::new(file).exists() {
        return;
    }
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file);
}

impl SqliteStore {
    /// Leads in `state` counted by the value of `column`, most first.
    async fn count_by(
        &self,
        column: &'static str,
        state: LeadState,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        // `column` is one of this file's constants, never input.
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT COALESCE({column}, '') AS value, COUNT(*) AS n FROM leads WHERE state = ?
             GROUP BY value ORDER BY n DESC, value"
        )))
        .bind(state.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(rows::value_count).collect())
    }

    /// Opens (creating if needed) `sqlite://PATH`, or `sqlite::memory:` for tests.
    /// Opens (creating if missing) the store `url` names. A new file is made readable by
    /// its owner only: it holds leads' numbers and names (SQLite gives its WAL and
    /// shared-memory files the same mode).
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| StoreError::BadUrl(url.to_string()))?;
        let options = SqliteConnectOptions::from_str(&format!("sqlite:{path}"))
            .map_err(|_| StoreError::BadUrl(url.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode, NORMAL survives a killed process; only power loss may drop the
            // last commits.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let in_memory = path.contains(":memory:");
        if !in_memory {
            create_private(path);
        }
        let options_for_watch = options.clone();
        let pool = SqlitePoolOptions::new()
            .max_connections(if in_memory { 1 } else { 4 })
            .connect_with(options)
            .await
            .map_err(db)?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await.map_err(db)?;
        // Columns stores created by earlier versions lack.
        add_column(&pool, "leads", "reason_code", "TEXT").await?;
        add_column(&pool, "leads", "owner", "TEXT").await?;
        if add_column(&pool, "leads", "campaign", "TEXT").await? {
            sqlx::query("UPDATE leads SET campaign = trim(json_extract(payload, '$.campaign'))")
                .execute(&pool)
                .await
                .map_err(db)?;
        }
        add_column(&pool, "attempts", "owner", "TEXT").await?;
        add_column(&pool, "attempts", "proof", "TEXT").await?;
        add_column(&pool, "attempts", "to_number", "TEXT").await?;
        add_column(
            &pool,
            "attempts",
            "committed_us",
            "INTEGER NOT NULL DEFAULT 0",
        )
        .await?;
        add_column(
            &pool,
            "attempts",
            "account",
            "TEXT NOT NULL DEFAULT 'default'",
        )
        .await?;
        if add_column(&pool, "attempts", "open", "INTEGER NOT NULL DEFAULT 0").await? {
            // Attempts in doubt or live when the store was last used stay open.
            sqlx::query(
                "UPDATE attempts SET open = 1 WHERE id NOT IN (SELECT attempt_id FROM attempt_results)
                 OR id IN (SELECT r.attempt_id FROM attempt_results r JOIN leads l ON l.call_id = r.call_id
                           WHERE r.status = 'placed' AND l.state = 'placed')",
            )
            .execute(&pool)
            .await
            .map_err(db)?;
        }
        sqlx::raw_sql(
            "CREATE INDEX IF NOT EXISTS attempts_open ON attempts (account) WHERE open = 1;
             CREATE INDEX IF NOT EXISTS attempts_committed ON attempts (account, committed_us);
             CREATE INDEX IF NOT EXISTS attempts_by_lead ON attempts (lead_id, at);
             CREATE INDEX IF NOT EXISTS attempts_by_number ON attempts (from_number, at);
             CREATE INDEX IF NOT EXISTS attempts_by_to_number ON attempts (to_number);",
        )
        .execute(&pool)
        .await
        .map_err(db)?;
        let watcher = if in_memory {
            None
        } else {
            use sqlx::ConnectOptions;
            Some(std::sync::Arc::new(tokio::sync::Mutex::new(
                options_for_watch.connect().await.map_err(db)?,
            )))
        };
        Ok(SqliteStore {
            pool,
            watcher,
            member: super::new_member_id().into(),
        })
    }

    /// Attempts with their results, filtered by `condition` (SQL after the join; one `?`
    /// bound to `bind` if given).
    async fn attempts_where(
        &self,
        condition: &str,
        bind: Option<i64>,
    ) -> Result<Vec<Attempt>, StoreError> {
        let sql = format!("{ATTEMPT_SELECT} {condition}");
        let mut query = sqlx::query(AssertSqlSafe(sql));
        if let Some(value) = bind {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.pool).await.map_err(db)?;
        Ok(rows.iter().map(rows::attempt).collect())
    }

    /// `attempts_where` with this member's id bound to the condition's one `?`.
    async fn attempts_where_owned(&self, condition: &str) -> Result<Vec<Attempt>, StoreError> {
        let sql = format!("{ATTEMPT_SELECT} {condition}");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(&*self.member)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows.iter().map(rows::attempt).collect())
    }

    /// Takes over the members chosen by `which` (SQL over `members`, `?1` = now ms, `?2` =
    /// this member): their claims queued again, their open attempts now this member's.
    /// `orphans`: also claims and attempts of no member (written before members existed).
    async fn take_over(&self, which: &str, orphans: bool) -> Result<TakeOver, StoreError> {
        let now = wall_ms();
        let mut tx = self.pool.begin().await.map_err(db)?;
        let members: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "UPDATE members SET taken_over_by = ?2, left_at = ?1
             WHERE id != ?2 AND taken_over_by IS NULL AND (left_at IS NULL OR heartbeat_at = 0) AND {which} RETURNING id"
        )))
        .bind(now)
        .bind(&*self.member)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        if members.is_empty() && !orphans {
            return Ok(TakeOver::default());
        }
        // Theirs: owned by one of them (or, with `orphans`, by no member).
        let theirs = format!(
            "({}{})",
            super::ids_condition(&members).replacen("id IN", "owner IN", 1),
            if orphans {
                " OR owner IS NULL OR owner NOT IN (SELECT id FROM members)"
            } else {
                ""
            }
        );
        let released = sqlx::query(AssertSqlSafe(format!(
            "UPDATE leads SET state = 'queued', owner = NULL, updated_at = ?1 WHERE state = 'claimed' AND {theirs}"
        )))
        .bind(now)
        .bind(&*self.member)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        let taken: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "UPDATE attempts SET owner = ?2 WHERE open = 1 AND {theirs} AND ?1 = ?1 RETURNING id"
        )))
        .bind(now)
        .bind(&*self.member)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
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

    async fn set_state(
        &self,
        lead_id: &str,
        state: LeadState,
        due_at: Option<DateTime<Utc>>,
        code: Option<&str>,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE leads SET state = ?, due_at = COALESCE(?, due_at), reason = ?, reason_code = ?, updated_at = ? WHERE id = ?")
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
}

/// An attempt and its result, if any (`status` is NULL while the attempt is in doubt).
/// Appends what became of an attempt (once: a second result for one attempt is an error);
/// returns the attempt's lead.
async fn append_result(
    tx: &mut sqlx::SqliteConnection,
    attempt_id: i64,
    status: AttemptStatus,
    call_id: Option<&str>,
    response: Option<&str>,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    sqlx::query("INSERT INTO attempt_results (attempt_id, status, call_id, response, at) VALUES (?, ?, ?, ?, ?)")
        .bind(attempt_id)
        .bind(status.as_str())
        .bind(call_id)
        .bind(response)
        .bind(ms(now))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    sqlx::query_scalar("SELECT lead_id FROM attempts WHERE id = ?")
        .bind(attempt_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)
}

const ATTEMPT_SELECT: &str =
    "SELECT a.id, a.lead_id, a.model_id, a.from_number, a.route, a.account, a.at, r.status, r.call_id, a.to_number
     FROM attempts a LEFT JOIN attempt_results r ON r.attempt_id = a.id";

impl Store for SqliteStore {
    fn engine(&self) -> &'static str {
        "sqlite"
    }

    fn shared(&self) -> bool {
        false
    }

    fn member_id(&self) -> &str {
        &self.member
    }

    async fn join(&self, info: &MemberInfo) -> Result<TakeOver, StoreError> {
        let now = wall_ms();
        sqlx::query(
            "INSERT INTO members (id, host, pid, version, rules_hash, started_at, heartbeat_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = ?6, rules_hash = ?5, left_at = NULL, taken_over_by = NULL",
        )
        .bind(&*self.member)
        .bind(&info.host)
        .bind(i64::from(info.pid))
        .bind(&info.version)
        .bind(&info.rules_hash)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        // Members that left cleanly, and earlier runs on this host that are gone (killed,
        // crashed) are taken over now; others when their lease runs out.
        let others: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT id, host, pid FROM members WHERE id != ? AND left_at IS NULL AND taken_over_by IS NULL",
        )
        .bind(&*self.member)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let gone = super::ids_condition(&super::gone_from_this_host(others));
        self.take_over(
            &format!("(({gone}) OR (left_at IS NOT NULL AND heartbeat_at = 0))"),
            true,
        )
        .await
    }

    async fn heartbeat(&self, rules_hash: &str, lease: Duration) -> Result<Beat, StoreError> {
        let now = wall_ms();
        let taken_by: Option<Option<String>> = sqlx::query_scalar(
            "UPDATE members SET heartbeat_at = ?, rules_hash = ? WHERE id = ? RETURNING taken_over_by",
        )
        .bind(now)
        .bind(rules_hash)
        .bind(&*self.member)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let lost = !matches!(taken_by, Some(None));
        let cutoff = now - lease.as_millis() as i64;
        let taken = self
            .take_over(&format!("heartbeat_at < {cutoff}"), false)
            .await?;
        Ok(Beat { lost, taken })
    }

    async fn leave(&self) -> Result<(), StoreError> {
        self.release_claims(Utc::now()).await?;
        sqlx::query("UPDATE members SET left_at = ?1, heartbeat_at = 0 WHERE id = ?2")
            .bind(wall_ms())
            .bind(&*self.member)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn members(&self) -> Result<Vec<Member>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, host, pid, version, rules_hash, started_at, heartbeat_at, left_at, taken_over_by
             FROM members WHERE left_at IS NULL OR left_at > ? ORDER BY started_at, id",
        )
        .bind(wall_ms() - 3_600_000)
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
        let now = wall_us();
        let slot: i64 = sqlx::query_scalar(
            "INSERT INTO account_pace (account, next_us) VALUES (?1, ?2 + ?3)
             ON CONFLICT (account) DO UPDATE SET next_us = MAX(next_us, ?2) + ?3
             RETURNING next_us - ?3",
        )
        .bind(account)
        .bind(now)
        .bind(interval.as_micros() as i64)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(Duration::from_micros((slot - now).max(0) as u64))
    }

    async fn pause_account(&self, account: &str, pause: Duration) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO account_pace (account, next_us) VALUES (?1, ?2)
             ON CONFLICT (account) DO UPDATE SET next_us = MAX(next_us, ?2)",
        )
        .bind(account)
        .bind(wall_us() + pause.as_micros() as i64)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn open_calls(&self, account: &str) -> Result<u32, StoreError> {
        let live: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM attempts WHERE account = ? AND open = 1")
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
        let mut found = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (column, values) in [("lead_id", lead_ids), ("to_number", phones)] {
            for chunk in values.chunks(ENQUEUE_CHUNK) {
                let placeholders = vec!["?"; chunk.len()].join(", ");
                let sql = format!(
                    "{ATTEMPT_SELECT} WHERE a.{column} IN ({placeholders}) AND a.at >= ? AND (r.status IS NULL OR r.status != 'not_placed') ORDER BY a.at"
                );
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for id in chunk {
                    query = query.bind(id);
                }
                let rows = query
                    .bind(ms(since))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?;
                found.extend(
                    rows.iter()
                        .map(rows::attempt)
                        .filter(|a: &Attempt| seen.insert(a.id)),
                );
            }
        }
        found.sort_by_key(|a| a.at);
        Ok(found)
    }

    fn attempt_feed(&self) -> Option<tokio::sync::broadcast::Receiver<FedAttempt>> {
        None
    }

    async fn enqueue(
        &self,
        leads: &[(String, RawLead)],
        now: DateTime<Utc>,
    ) -> Result<EnqueueCounts, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut accepted = 0;
        for chunk in leads.chunks(ENQUEUE_CHUNK) {
            let placeholders = vec!["(?, ?, ?, 'queued', ?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "INSERT OR IGNORE INTO leads (id, payload, campaign, state, due_at, created_at, updated_at) VALUES {placeholders}"
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (id, raw) in chunk {
                let due = super::due_ms(raw, now);
                let payload = serde_json::to_string(raw).map_err(|e| StoreError::Corrupt {
                    lead: id.clone(),
                    reason: e.to_string(),
                })?;
                query = query
                    .bind(id.clone())
                    .bind(payload)
                    .bind(raw.campaign.as_deref().map(str::trim))
                    .bind(due)
                    .bind(ms(now))
                    .bind(ms(now));
            }
            accepted += query.execute(&mut *tx).await.map_err(db)?.rows_affected();
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
            "UPDATE leads SET state = 'claimed', owner = ?3, updated_at = ?1
             WHERE id IN (SELECT id FROM leads WHERE state IN ('queued', 'deferred') AND due_at <= ?1{only}
                          ORDER BY due_at LIMIT ?2)
             RETURNING id, payload, state, due_at, attempts, call_id, reason, reason_code"
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
            "UPDATE leads SET state = 'queued', owner = NULL, updated_at = ? WHERE state = 'claimed' AND owner = ?",
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
            "UPDATE leads SET state = 'queued', due_at = ?1, updated_at = ?1 WHERE state = 'held'",
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
        let row = sqlx::query("UPDATE leads SET state = 'rejected', reason = ?, reason_code = ?, updated_at = ? WHERE id = ? RETURNING payload, attempts")
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
        // A write first: it takes SQLite's write lock, so the checks below read what the
        // commit will be judged against.
        let owned = sqlx::query("UPDATE leads SET state = 'dialing', owner = NULL, attempts = attempts + 1, reason = NULL, reason_code = NULL, updated_at = ? WHERE id = ? AND state = 'claimed' AND owner = ?")
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
            let rows = sqlx::query(AssertSqlSafe(format!(
                "{ATTEMPT_SELECT} WHERE a.{column} = ? AND a.at >= ? AND (r.status IS NULL OR r.status != 'not_placed')"
            )))
            .bind(value)
            .bind(ms(uses.since))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            let ledger: Vec<Attempt> = rows.iter().map(rows::attempt).collect();
            let unknown = super::unknown_uses(ledger, &uses.known_ms);
            if !unknown.is_empty() {
                return Ok(Begun::Stale(unknown));
            }
        }
        if let Some(limit) = guard.concurrency {
            let live: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM attempts WHERE account = ? AND open = 1")
                    .bind(attempt.account)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
            if live >= i64::from(limit) {
                return Ok(Begun::AccountBusy { live: live as u32 });
            }
        }
        let now_us = wall_us();
        if let Some(per_second) = guard.per_second {
            let (count, oldest): (i64, Option<i64>) = sqlx::query_as(
                "SELECT COUNT(*), MIN(committed_us) FROM attempts WHERE account = ? AND committed_us > ?",
            )
            .bind(attempt.account)
            .bind(now_us - super::PACE_WINDOW_US)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            if count >= i64::from(per_second) {
                let wait = (oldest.unwrap_or(0) + super::PACE_WINDOW_US - now_us).max(1_000);
                return Ok(Begun::Paced {
                    wait: Duration::from_micros(wait as u64),
                });
            }
        }
        if let Some(check) = &guard.suppression {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT * FROM suppressions WHERE number = ? AND (expires IS NULL OR expires > ?){}",
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
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO attempts (lead_id, model_id, from_number, route, at, owner, account, open, committed_us, proof, to_number) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?) RETURNING id",
        )
        .bind(attempt.lead_id)
        .bind(attempt.model_id)
        .bind(attempt.from_number)
        .bind(attempt.route)
        .bind(ms(attempt.at))
        .bind(&*self.member)
        .bind(attempt.account)
        .bind(now_us)
        .bind(attempt.proof)
        .bind(attempt.to_number)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
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
        sqlx::query("UPDATE leads SET state = 'placed', call_id = ?, updated_at = ? WHERE id = ?")
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
        sqlx::query("UPDATE attempts SET open = 0 WHERE id = ?")
            .bind(attempt_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        // An attempt that placed no call is not an attempt on the lead (`attempts` counts
        // calls that may have happened, for lifetime caps).
        let row = sqlx::query("UPDATE leads SET state = ?, due_at = COALESCE(?, due_at), reason = ?, reason_code = NULL, attempts = MAX(attempts - 1, 0), updated_at = ? WHERE id = ? RETURNING payload, attempts")
            .bind(state.as_str())
            .bind(due)
            .bind(reason)
            .bind(ms(now))
            .bind(&lead_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        if state == LeadState::Failed {
            let payload: String = row.get("payload");
            let facts = super::outbox::LeadFacts {
                id: &lead_id,
                payload: &payload,
                attempts: row.get::<i64, _>("attempts") as u32,
            };
            insert_event(
                &mut tx,
                &super::outbox::lead_ended(&facts, "failed", reason, now),
            )
            .await?;
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
        let done = sqlx::query("UPDATE leads SET state = ?, due_at = COALESCE(?, due_at), reason = ?, reason_code = ?, updated_at = ? WHERE call_id = ? AND state = 'placed'")
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
            "SELECT a.from_number FROM attempt_results r JOIN attempts a ON a.id = r.attempt_id
             WHERE r.call_id = ? ORDER BY a.id DESC LIMIT 1",
        )
        .bind(call_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("UPDATE attempts SET open = 0 WHERE id IN (SELECT attempt_id FROM attempt_results WHERE call_id = ?)")
            .bind(call_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if let Some(from) = &from {
            sqlx::query(
                "INSERT OR IGNORE INTO call_ends (call_id, from_number, status, duration_ms, at) VALUES (?, ?, ?, ?, ?)",
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
        let lead = sqlx::query("SELECT id, payload, attempts FROM leads WHERE call_id = ?")
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
            "UPDATE outbox SET claimed_by = ?, claimed_until = ? WHERE seq IN (
                 SELECT seq FROM outbox WHERE delivered_at IS NULL AND next_at <= ?
                 AND (claimed_until IS NULL OR claimed_until <= ?) ORDER BY seq LIMIT ?)
             RETURNING seq, id, kind, at, data, tries, delivered_at, last_error",
        )
        .bind(&*self.member)
        .bind(ms(until))
        .bind(ms(now))
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
        sqlx::query("UPDATE outbox SET delivered_at = ?, tries = tries + 1, claimed_by = NULL, claimed_until = NULL, last_error = NULL WHERE seq = ?")
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
        sqlx::query("UPDATE outbox SET tries = tries + 1, next_at = ?, last_error = ?, claimed_by = NULL, claimed_until = NULL WHERE seq = ?")
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
             WHERE at >= ? AND at < ? ORDER BY seq LIMIT ?",
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
            sqlx::query("DELETE FROM outbox WHERE at < ? AND (delivered_at IS NOT NULL OR ?)")
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
            "SELECT from_number, status, duration_ms, at FROM call_ends WHERE at >= ? ORDER BY at, call_id",
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
        // A new rest replaces the running one (its end becomes the new one's start).
        sqlx::query("UPDATE number_rests SET until = MIN(until, ?1), ended_at = ?1, ended_by = ?2 WHERE number = ?3 AND ended_at IS NULL AND until > ?1")
            .bind(ms(rest.since))
            .bind(by)
            .bind(rest.number.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "INSERT INTO number_rests (number, since, until, reason, source, by) VALUES (?, ?, ?, ?, ?, ?)",
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
        tx.commit().await.map_err(db)
    }

    async fn resume_number(
        &self,
        number: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE number_rests SET until = ?, ended_at = ?, ended_by = ? WHERE number = ? AND ended_at IS NULL AND until > ?",
        )
        .bind(ms(now))
        .bind(ms(now))
        .bind(by)
        .bind(number)
        .bind(ms(now))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }

    async fn rests(&self, now: DateTime<Utc>) -> Result<Vec<crate::health::Rest>, StoreError> {
        let rows = sqlx::query(
            "SELECT number, since, until, reason, source FROM number_rests
             WHERE until > ? ORDER BY number, since",
        )
        .bind(ms(now))
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
        for entry in entries {
            written += sqlx::query(
                "INSERT INTO suppressions (number, list, reason, added_by, added_at, evidence, expires) VALUES (?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (number, list) DO UPDATE SET reason = excluded.reason, added_by = excluded.added_by,
                 added_at = excluded.added_at, evidence = excluded.evidence, expires = excluded.expires",
            )
            .bind(entry.number.to_string())
            .bind(&entry.list)
            .bind(&entry.reason)
            .bind(&entry.added_by)
            .bind(ms(entry.added_at))
            .bind(&entry.evidence)
            .bind(entry.expires.map(ms))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        }
        suppression_changed(&mut tx, audit).await?;
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
        let mut removed = 0;
        for number in numbers {
            removed += sqlx::query("DELETE FROM suppressions WHERE number = ? AND list = ?")
                .bind(number)
                .bind(list)
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
        }
        suppression_changed(&mut tx, audit).await?;
        tx.commit().await.map_err(db)?;
        Ok(removed)
    }

    async fn suppressions(
        &self,
        number: Option<&str>,
    ) -> Result<Vec<crate::compliance::StoredEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM suppressions WHERE ?1 IS NULL OR number = ?1 ORDER BY number, list",
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
             WHERE (?1 IS NULL OR a.lead_id = ?1) AND (?2 IS NULL OR a.from_number = ?2 OR a.to_number = ?2)
               AND (?3 IS NULL OR a.at >= ?3) AND (?4 IS NULL OR a.at < ?4)
             ORDER BY a.at, a.id LIMIT ?5",
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
            "SELECT at, actor, action, subject, detail FROM audit ORDER BY id DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(rows::audit).collect())
    }

    async fn in_doubt(&self) -> Result<Vec<Attempt>, StoreError> {
        self.attempts_where_owned("WHERE r.attempt_id IS NULL AND a.owner = ? ORDER BY a.id")
            .await
    }

    async fn live_calls(&self) -> Result<Vec<Attempt>, StoreError> {
        let condition = "JOIN leads l ON l.call_id = r.call_id
             WHERE r.status = 'placed' AND l.state = 'placed' AND a.owner = ? ORDER BY a.id";
        self.attempts_where_owned(condition).await
    }

    async fn attempts_since(&self, since: DateTime<Utc>) -> Result<Vec<Attempt>, StoreError> {
        let condition =
            "WHERE a.at >= ? AND (r.status IS NULL OR r.status != 'not_placed') ORDER BY a.at";
        self.attempts_where(condition, Some(ms(since))).await
    }

    async fn lead(&self, lead_id: &str) -> Result<Option<StoredLead>, StoreError> {
        let row = sqlx::query(
            "SELECT id, payload, state, due_at, attempts, call_id, reason, reason_code FROM leads WHERE id = ?",
        )
        .bind(lead_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(rows::lead).transpose()
    }

    async fn lead_of_call(&self, call_id: &str) -> Result<Option<StoredLead>, StoreError> {
        let row = sqlx::query(
            "SELECT id, payload, state, due_at, attempts, call_id, reason, reason_code FROM leads WHERE call_id = ? LIMIT 1",
        )
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

    async fn data_version(&self) -> Result<u64, StoreError> {
        let Some(watcher) = &self.watcher else {
            return Ok(0);
        };
        let mut connection = watcher.lock().await;
        let version: i64 = sqlx::query_scalar("PRAGMA data_version")
            .fetch_one(&mut *connection)
            .await
            .map_err(db)?;
        Ok(version as u64)
    }

    async fn counts(&self) -> Result<Vec<(LeadState, u64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM leads GROUP BY state")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows::state_counts(&rows))
    }
}

/// Counts a change of the store-kept lists and audits it, in the change's transaction.
async fn suppression_changed(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    audit: &AuditEntry,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO suppression_version (id, version) VALUES (1, 1)
         ON CONFLICT (id) DO UPDATE SET version = suppression_version.version + 1",
    )
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    insert_audit(&mut **tx, audit).await
}

/// Appends `entry` to the audit log, on the pool or in a transaction.
async fn insert_audit<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Sqlite>,
    entry: &AuditEntry,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO audit (at, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)")
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

/// Writes `event` in the transaction that made it (once: its id is unique).
async fn insert_event(
    tx: &mut sqlx::SqliteConnection,
    event: &super::outbox::NewEvent,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT OR IGNORE INTO outbox (id, kind, at, data, next_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&event.id)
    .bind(event.kind)
    .bind(ms(event.at))
    .bind(event.data.to_string())
    .bind(ms(event.at))
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    Ok(())
}
