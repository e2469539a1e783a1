//! The durable lead queue and the append-only attempt ledger, behind the `Store` trait so
//! that a PostgreSQL implementation can serve several daemons. Nothing SQLite-specific may
//! leak out of `sqlite.rs`: the daemon sees only this trait.
//!
//! Life of a lead: `queued` → (`claimed` → decided) → `deferred` (back to `queued` when due)
//! | `held` (until the rules or the pool change: then queued again) | `rejected` | `dialing` (ledger row written BEFORE the HTTP request) → `placed` (has a
//! `call_id`) → `completed` (outcome known) | back to `queued` (not placed: 429, connection
//! refused, or a lookup proved the call absent) | `failed` (the API refused the lead).

pub mod any;
pub mod intake;
pub mod outbox;
pub mod postgres;
mod rows;
pub mod sqlite;

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::lead::RawLead;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("bad store location `{0}`: expected sqlite://PATH or postgres://…")]
    BadUrl(String),
    #[error(
        "the store's schema is version {found}, newer than this callroute knows ({known}): upgrade callroute"
    )]
    SchemaTooNew { found: i64, known: i64 },
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

/// How late after its commit an attempt's request may still leave. The account's
/// attempts per second are counted over a window this much longer than a second, so that
/// requests leaving up to this late never arrive more than the limit in any second; a
/// request later than this is not sent (its lead goes back to the queue).
pub const SEND_JITTER: std::time::Duration = std::time::Duration::from_millis(15);

/// How much longer than the window's share a pacing beat is: the slack that keeps a beat
/// taken on time from being refused by the window for a commit a few milliseconds early.
pub const BEAT_SLACK: std::time::Duration = std::time::Duration::from_millis(10);

/// The window the attempts per second are counted over, in microseconds.
pub const PACE_WINDOW_US: i64 = 1_000_000 + SEND_JITTER.as_micros() as i64;

/// The account of a configuration that names none.
pub const DEFAULT_ACCOUNT: &str = "default";

/// A member id unique across hosts and restarts: host, pid and a random part.
pub fn new_member_id() -> String {
    let host = hostname();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let salt =
        xxhash_rust::xxh3::xxh3_64(format!("{host}{nanos}{}", std::process::id()).as_bytes());
    format!("{host}-{}-{:06x}", std::process::id(), salt & 0xff_ffff)
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
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
    /// The Synthflow account (workspace) it was paced and counted on.
    pub account: String,
    pub at: DateTime<Utc>,
    pub status: AttemptStatus,
    pub call_id: Option<String>,
    /// The number called (the person's), when the ledger has it.
    pub to_number: Option<String>,
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

/// An attempt about to be written: the lead (claimed by this member), the caller ID, the
/// account whose pace and live calls it counts against.
#[derive(Debug, Clone)]
pub struct NewAttempt<'a> {
    pub lead_id: &'a str,
    pub model_id: &'a str,
    pub from_number: &'a str,
    pub route: &'a str,
    pub account: &'a str,
    pub at: DateTime<Utc>,
    /// What made the call lawful at that instant (JSON, see `daemon::proof`): kept with the
    /// attempt for `callroute audit`.
    pub proof: Option<&'a str>,
    /// The lead's number (for `callroute audit NUMBER`).
    pub to_number: Option<&'a str>,
}

/// What must still hold when the attempt is committed (checked in its transaction,
/// serialised per number and per account), so that daemons deciding on local views never
/// together break a limit.
#[derive(Debug, Clone, Default)]
pub struct AttemptGuard {
    /// The number's uses the decision counted, since `since` (the number's longest limit
    /// window). The attempt is written only if the ledger holds no other use of the number
    /// since then. `None`: the number has no limit to keep.
    pub number_uses: Option<NumberUses>,
    /// The calls to the lead's person the decision counted, for a law's cap that counts
    /// calls to a person under any lead id: the attempt is written only if the ledger
    /// holds no other call to `to_number` since `uses.since`. `None`: no such cap applies.
    pub person_calls: Option<PersonCalls>,
    /// The account's live-call limit: the attempt is written only while fewer attempts of
    /// the account are open (in doubt or live).
    pub concurrency: Option<u32>,
    /// The account's attempts per second: the attempt is written only while fewer of the
    /// account's attempts were committed in the last second (on the store's clock). The
    /// beats `reserve_pace` hands out keep to this; the check catches a daemon that woke
    /// late and would send in a bunch.
    pub per_second: Option<u32>,
    /// The store-kept suppression lists: the attempt is written only if the number is on
    /// none of them (but the `exempt` ones, which the rules scope away from this lead).
    pub suppression: Option<SuppressionGuard>,
}

#[derive(Debug, Clone)]
pub struct SuppressionGuard {
    pub number: String,
    pub exempt: Vec<String>,
    pub now: DateTime<Utc>,
}

/// Which ledger rows `callroute audit` reads (every given filter applies).
#[derive(Debug, Clone, Default)]
pub struct AttemptQuery {
    pub lead: Option<String>,
    pub number: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: u32,
}

/// An attempt with its proof, as `callroute audit` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditedAttempt {
    #[serde(flatten)]
    pub attempt: Attempt,
    /// The lead's number.
    pub to_number: Option<String>,
    pub proof: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct NumberUses {
    pub since: DateTime<Utc>,
    /// Uses as epoch milliseconds, any order.
    pub known_ms: Vec<i64>,
}

#[derive(Debug, Clone)]
pub struct PersonCalls {
    pub to_number: String,
    pub uses: NumberUses,
}

/// What `begin_attempt_checked` did.
#[derive(Debug, Clone)]
pub enum Begun {
    /// Written, with this attempt id.
    Written(i64),
    /// Not written: the ledger has uses of the number, or calls to the person, the decision
    /// did not count (another daemon's). Learn them and decide again.
    Stale(Vec<Attempt>),
    /// Not written: the account has `live` open attempts, at its limit.
    AccountBusy { live: u32 },
    /// Not written: the account's last second is full; a slot frees after `wait`.
    Paced { wait: std::time::Duration },
    /// Not written: the lead is no longer claimed by this member (its lease expired and
    /// another member took its claims back).
    NotOwned,
    /// Not written: the number was put on a store-kept suppression list since the decision.
    Suppressed(Vec<crate::compliance::StoredEntry>),
}

/// A lead's row after its call ended: completed with the call's status, or waiting for its
/// cadence's next attempt.
struct AfterTheCall<'a> {
    state: LeadState,
    due_at: Option<DateTime<Utc>>,
    reason: &'a str,
    reason_code: Option<&'static str>,
}

fn after_the_call<'a>(
    outcome: &'a str,
    redial: Option<&'a crate::cadence::Redial>,
) -> AfterTheCall<'a> {
    match redial {
        Some(redial) => AfterTheCall {
            state: LeadState::Deferred,
            due_at: Some(redial.due_at),
            reason: &redial.reason,
            reason_code: Some("cadence"),
        },
        None => AfterTheCall {
            state: LeadState::Completed,
            due_at: None,
            reason: outcome,
            reason_code: None,
        },
    }
}

/// What a commit compares with the ledger, in lock order: the ledger column, its value,
/// and the uses the decision counted.
fn ledger_checks<'a>(
    attempt: &'a NewAttempt<'_>,
    guard: &'a AttemptGuard,
) -> impl Iterator<Item = (&'static str, &'a str, &'a NumberUses)> {
    let number = guard
        .number_uses
        .iter()
        .map(|uses| ("from_number", attempt.from_number, uses));
    let person = guard
        .person_calls
        .iter()
        .map(|person| ("to_number", person.to_number.as_str(), &person.uses));
    number.chain(person)
}

/// The ledger's uses of a number that `known_ms` does not account for (compared as
/// multisets of milliseconds): what a decision on a local view missed.
pub fn unknown_uses(ledger: Vec<Attempt>, known_ms: &[i64]) -> Vec<Attempt> {
    let mut known: std::collections::HashMap<i64, u32> = std::collections::HashMap::new();
    for &at in known_ms {
        *known.entry(at).or_default() += 1;
    }
    ledger
        .into_iter()
        .filter(
            |attempt| match known.get_mut(&attempt.at.timestamp_millis()) {
                Some(count) if *count > 0 => {
                    *count -= 1;
                    false
                }
                _ => true,
            },
        )
        .collect()
}

/// Of `members` (id, host, pid), those on this host whose process is gone: a daemon
/// restarted on the same machine takes its predecessor's work at once, without waiting out
/// the lease. (A reused pid only makes it wait for the lease.)
pub fn gone_from_this_host(members: Vec<(String, String, i64)>) -> Vec<String> {
    let here = hostname();
    members
        .into_iter()
        .filter(|(_, host, pid)| {
            *host == here && *pid > 0 && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
        .map(|(id, _, _)| id)
        .collect()
}

/// `'a', 'b'`: `values` as SQL string literals (quotes doubled), for `IN (…)`.
fn sql_list(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("'{}'", v.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// ` AND list NOT IN (…)` over the lists a suppression guard skips (nothing if none).
fn lists_not_exempt(exempt: &[String]) -> String {
    if exempt.is_empty() {
        return String::new();
    }
    format!(" AND list NOT IN ({})", sql_list(exempt))
}

/// `id IN ('a', 'b')` over `ids`, or a condition that is false when there are none.
pub fn ids_condition(ids: &[String]) -> String {
    if ids.is_empty() {
        return "1 = 0".to_string();
    }
    format!("id IN ({})", sql_list(ids))
}

/// When a lead enqueued at `now` is first due (epoch ms): its `not_before`, never earlier
/// than now.
pub fn due_ms(raw: &RawLead, now: DateTime<Utc>) -> i64 {
    let now = now.timestamp_millis();
    raw.not_before
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(now, |t| t.timestamp_millis().max(now))
}

/// Which leads a claim takes, by campaign: each account's dialing loop claims the leads of
/// its own campaigns, so one account waiting (for a slot, a beat, a refused key) never holds
/// up another's leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Campaigns {
    All,
    Only(Vec<String>),
    /// Every campaign but these (the first account's loop: campaigns not in the rules too).
    Except(Vec<String>),
}

impl Campaigns {
    /// The SQL condition on `leads.campaign` (values quoted; empty when `All`).
    pub fn condition(&self) -> String {
        match self {
            Campaigns::All => String::new(),
            Campaigns::Only(names) if names.is_empty() => " AND 1 = 0".to_string(),
            Campaigns::Only(names) => format!(" AND campaign IN ({})", sql_list(names)),
            Campaigns::Except(names) if names.is_empty() => String::new(),
            Campaigns::Except(names) => format!(
                " AND (campaign IS NULL OR campaign NOT IN ({}))",
                sql_list(names)
            ),
        }
    }
}

/// A daemon, as it registers itself with the store.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemberInfo {
    pub host: String,
    pub pid: u32,
    pub version: String,
    pub rules_hash: String,
}

/// A daemon known to the store.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub id: String,
    pub info: MemberInfo,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// Left cleanly, or taken over after its lease expired (by whom).
    pub left_at: Option<DateTime<Utc>>,
    pub taken_over_by: Option<String>,
}

/// The work a member took over from members whose lease expired (or, on the embedded
/// store, from the previous run).
#[derive(Debug, Clone, Default)]
pub struct TakeOver {
    pub members: Vec<String>,
    /// Their claimed leads, queued again.
    pub released: u64,
    /// Their attempts still in doubt: reconcile each with `GET /v2/calls`.
    pub in_doubt: Vec<Attempt>,
    /// Their placed calls still live: follow each to its end.
    pub live: Vec<Attempt>,
}

/// A heartbeat's answer.
#[derive(Debug, Clone, Default)]
pub struct Beat {
    /// This member's own lease had expired and another member took its work: it must not
    /// dial what it holds (the store refuses anyway) and joins again.
    pub lost: bool,
    pub taken: TakeOver,
}

/// An attempt another member wrote or undid, as the store's feed reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FedAttempt {
    pub from_number: String,
    /// The number called (the person's): the laws' attempt caps count calls to it.
    pub to_number: Option<String>,
    pub lead_id: String,
    pub at: DateTime<Utc>,
    /// The attempt placed no call: it no longer counts.
    pub undone: bool,
}

/// Storage of leads and attempts. All times are UTC; all methods are atomic.
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn engine(&self) -> &'static str;
    /// Whether other daemons may write attempts to this store (PostgreSQL), so that what
    /// this daemon knows of usage may be behind the ledger.
    fn shared(&self) -> bool;
    /// This process's member id: claims and attempts it writes carry it.
    fn member_id(&self) -> &str;
    /// Registers this process as a daemon working the queue. On the embedded store (one
    /// daemon per file), it takes over everything the previous run left.
    fn join(&self, info: &MemberInfo) -> impl Future<Output = Result<TakeOver, StoreError>> + Send;
    /// Renews this member's lease and takes over the work of members whose lease expired
    /// (each exactly once, by exactly one member).
    fn heartbeat(
        &self,
        rules_hash: &str,
        lease: std::time::Duration,
    ) -> impl Future<Output = Result<Beat, StoreError>> + Send;
    /// Leaves cleanly: claims released; live calls left for a member to take over at once.
    fn leave(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Every member that has not left, and those that left in the last hour.
    fn members(&self) -> impl Future<Output = Result<Vec<Member>, StoreError>> + Send;
    /// Reserves the account's next pacing beat (shared by every member): returns how long
    /// to wait before sending. Beats are `interval` apart on the store's clock.
    fn reserve_pace(
        &self,
        account: &str,
        interval: std::time::Duration,
    ) -> impl Future<Output = Result<std::time::Duration, StoreError>> + Send;
    /// No beat of the account before `pause` from now (after a 429), for every member.
    fn pause_account(
        &self,
        account: &str,
        pause: std::time::Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The account's open attempts (in doubt or live), across members.
    fn open_calls(&self, account: &str) -> impl Future<Output = Result<u32, StoreError>> + Send;
    /// Attempts on these leads, or to these numbers (other leads of the same person), since
    /// `since` that may have placed a call (another member may have called them: sticky
    /// numbers, lead windows and the laws' caps per person need them).
    fn lead_attempts(
        &self,
        lead_ids: &[String],
        phones: &[String],
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<Attempt>, StoreError>> + Send;
    /// Other members' attempts as they happen (and their undoing), when the store can tell.
    fn attempt_feed(&self) -> Option<tokio::sync::broadcast::Receiver<FedAttempt>>;

    /// Adds leads (id, lead); an id already present is a duplicate and is left alone.
    fn enqueue(
        &self,
        leads: &[(String, RawLead)],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<EnqueueCounts, StoreError>> + Send;
    /// Moves up to `limit` queued or deferred leads of `campaigns` due at `now` to
    /// `claimed` (by this member), earliest first.
    fn claim_due_for(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        campaigns: &Campaigns,
    ) -> impl Future<Output = Result<Vec<StoredLead>, StoreError>> + Send;
    /// `claim_due_for` every campaign.
    fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<StoredLead>, StoreError>> + Send {
        async move { self.claim_due_for(now, limit, &Campaigns::All).await }
    }
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
    /// The lead can never be called: `code` is the engine's reason code (`suppressed`,
    /// `invalid_lead`, ...), counted by `rejected_reasons`.
    fn reject(
        &self,
        lead_id: &str,
        code: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Rejected leads by reason code.
    fn rejected_reasons(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, u64)>, StoreError>> + Send;
    /// Writes the ledger row and moves the lead from `claimed` to `dialing`, in one
    /// transaction, before the request is sent, if `guard` still holds at commit.
    fn begin_attempt_checked(
        &self,
        attempt: &NewAttempt<'_>,
        guard: &AttemptGuard,
    ) -> impl Future<Output = Result<Begun, StoreError>> + Send;
    /// `begin_attempt_checked` with nothing to check, for the default account; returns the
    /// attempt id.
    fn begin_attempt(
        &self,
        lead_id: &str,
        model_id: &str,
        from_number: &str,
        route: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send {
        async move {
            let attempt = NewAttempt {
                proof: None,
                to_number: None,
                lead_id,
                model_id,
                from_number,
                route,
                account: DEFAULT_ACCOUNT,
                at,
            };
            match self
                .begin_attempt_checked(&attempt, &AttemptGuard::default())
                .await?
            {
                Begun::Written(id) => Ok(id),
                other => Err(StoreError::Database(format!(
                    "attempt on lead {lead_id} not written: {other:?}"
                ))),
            }
        }
    }
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
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send {
        async move {
            let end = outbox::CallEndReport {
                duration,
                ..outbox::CallEndReport::of(outcome)
            };
            self.end_call(call_id, &end, now).await
        }
    }
    /// `complete`, or with `end.redial` the lead waits for its cadence's next attempt
    /// instead (`deferred` until `redial.due_at`, reason code `cadence`), in the same
    /// transaction as the end, with the end's events for the user's systems
    /// (`attempt.ended`, and `lead.finished` unless redialed): a call's end is recorded
    /// once, so each attempt gets at most one redial and one event.
    fn end_call(
        &self,
        call_id: &str,
        end: &outbox::CallEndReport<'_>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Takes up to `limit` undelivered events due by `now` for this member to deliver, for
    /// `lease` (then another member may take them), oldest first.
    fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: std::time::Duration,
    ) -> impl Future<Output = Result<Vec<outbox::OutboxEvent>, StoreError>> + Send;
    /// Event `seq` was delivered (a 2xx) at `now`.
    fn outbox_delivered(
        &self,
        seq: i64,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A delivery of event `seq` failed with `error`; it is tried again at `next_at`.
    fn outbox_failed(
        &self,
        seq: i64,
        error: &str,
        next_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Events written in [`from`, `to`), oldest first, at most `limit` (`results export`).
    fn outbox_events(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<outbox::OutboxEvent>, StoreError>> + Send;
    /// Drops events written before `before` that were delivered, and with `undelivered`
    /// those not delivered too (nobody receives them: kept for `results export` only).
    /// Returns how many.
    fn prune_outbox(
        &self,
        before: DateTime<Utc>,
        undelivered: bool,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Undelivered events: how many, and when the oldest was written.
    fn outbox_backlog(
        &self,
    ) -> impl Future<Output = Result<(u64, Option<DateTime<Utc>>), StoreError>> + Send;
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
    /// Puts numbers on store-kept suppression lists (an entry already there is replaced),
    /// and writes `audit` in the same transaction. Returns how many entries were written.
    fn suppress(
        &self,
        entries: &[crate::compliance::StoredEntry],
        audit: &AuditEntry,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Takes numbers off the store-kept list `list`, writing `audit` in the same
    /// transaction. Returns how many were on it.
    fn unsuppress(
        &self,
        list: &str,
        numbers: &[String],
        audit: &AuditEntry,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// The store-kept suppression entries (of one number, or all).
    fn suppressions(
        &self,
        number: Option<&str>,
    ) -> impl Future<Output = Result<Vec<crate::compliance::StoredEntry>, StoreError>> + Send;
    /// A number that changes whenever a store-kept list does (polled by daemons).
    fn suppression_version(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// Ledger rows with their proofs, oldest first.
    fn audited_attempts(
        &self,
        query: &AttemptQuery,
    ) -> impl Future<Output = Result<Vec<AuditedAttempt>, StoreError>> + Send;
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
    /// The lead whose call `call_id` is (or was).
    fn lead_of_call(
        &self,
        call_id: &str,
    ) -> impl Future<Output = Result<Option<StoredLead>, StoreError>> + Send;
    /// When the next queued or deferred lead of `campaigns` is due.
    fn next_due_for(
        &self,
        campaigns: &Campaigns,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;
    /// `next_due_for` every campaign.
    fn next_due(&self) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send {
        async move { self.next_due_for(&Campaigns::All).await }
    }
    fn counts(&self) -> impl Future<Output = Result<Vec<(LeadState, u64)>, StoreError>> + Send;
    /// A number that changes when another process has written to the store (new leads
    /// enqueued by `callroute enqueue`): cheap enough to poll while idle.
    fn data_version(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}
