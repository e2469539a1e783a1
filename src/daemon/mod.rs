//! The dialing loop: claim due leads, decide with the engine, write the ledger, place the
//! call, follow it to its outcome, defer what must wait. Paced to each account's call
//! attempts per second (beats reserved in the store, so daemons sharing an account share
//! its pace) and live-call limit (a semaphore whose permits live as long as the calls, and
//! the store's count of open attempts across daemons), and safe to kill at any moment:
//! every attempt is in the ledger before its request leaves, and a restart (or, with several
//! daemons, a survivor) reconciles what was in flight.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::engine::{Decision, decide};
use crate::lead::Lead;
use crate::lock;
use crate::phone::E164;
use crate::rules::RuleSet;
pub use crate::store::DEFAULT_ACCOUNT;
use crate::store::{Attempt, LeadState, NotPlaced, Store, StoreError, StoredLead};
use crate::synthflow::{ApiError, CallRequest, Client, KeyValue};
use crate::usage::PoolState;

use arc_swap::ArcSwap;
use std::path::PathBuf;

mod compliance;
mod dial;
mod dispatch;
mod follow;
mod health;
mod members;
mod pools;
mod reload;
mod results;
mod silence;
mod status;

pub use follow::WebhookOutcome;
pub use members::MemberView;
pub use reload::{ReloadOutcome, ReloadRecord, ReloadStatus};
pub use results::ResultsTarget;
pub use status::{
    AccountView, DecisionView, FullWindowView, HeldView, NumberView, RulesView, StatusView,
    WindowUseView,
};

/// The person's number of a ledger row (None for rows written before it was kept).
fn called_of(to_number: &Option<String>) -> Option<E164> {
    to_number.as_deref().and_then(|t| E164::parse(t).ok())
}

/// How far back usage matters: the longest limit window (a local day: up to 25 h), the
/// longest sticky TTL, or the longest cadence (a redial avoids the caller IDs of all the
/// lead's earlier attempts). Usage is rebuilt from this far back at start, a claimed lead's
/// earlier attempts are read from this far back, and leads idle for longer are forgotten
/// from memory.
fn usage_lookback(rules: &RuleSet) -> chrono::Duration {
    let longest_sticky = rules
        .campaigns()
        .flat_map(|c| &c.routes)
        .filter_map(|r| r.sticky)
        .max()
        .unwrap_or_default();
    let longest_cadence = rules
        .cadences()
        .map(|c| c.span() + Duration::from_secs(3600))
        .max()
        .unwrap_or_default()
        // The start-up read stays bounded: a redial avoids the caller IDs of the last 35 days.
        .min(Duration::from_secs(35 * 24 * 3600));
    crate::usage::RETENTION
        .max(chrono::Duration::from_std(longest_sticky.max(longest_cadence)).unwrap_or_default())
}

/// How long results stay in the outbox once delivered (or, without `results.url`, at all),
/// and how often old ones are dropped.
const OUTBOX_KEPT: Duration = Duration::from_secs(30 * 24 * 3600);
const OUTBOX_PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// How often an idle daemon looks whether another process wrote to the store.
const STORE_WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// How many recent events a daemon keeps in memory (the log has them all).
const RECENT_EVENTS: usize = 10_000;

/// The longest wait between two status polls of a live call: a call's slot stays taken
/// until a poll (or the webhook) sees its end, so this bounds the slot time wasted per call.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// How long a call is followed before its slot is given back with an unknown outcome.
const MAX_CALL_FOLLOW: Duration = Duration::from_secs(3 * 3600);

/// Beats are a little further apart than the store's window lets attempts be (a second and
/// the send jitter, per attempt allowed, and some slack): 2.5 % under the account's rate.
const PACING_HEADROOM: f64 =
    1.0 + crate::store::SEND_JITTER.as_secs_f64() + crate::store::BEAT_SLACK.as_secs_f64();

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The account's call attempts per second (Synthflow CAPS), when one account is given
    /// by `Daemon::start`.
    pub attempts_per_second: u32,
    /// The account's concurrent-call limit (likewise).
    pub concurrency: u32,
    /// How long a member's claims and calls stay its own without a heartbeat; after that,
    /// another daemon on the same store takes them over. Heartbeats every third of it.
    pub lease: Duration,
    /// Leads claimed per round.
    pub claim_batch: u32,
    /// First interval between polls of a live call's status (doubles up to 30 s).
    pub poll_interval: Duration,
    /// How often the agents' attached pools are fetched again.
    pub pool_refresh: Duration,
    /// First back-off after a 429 or refused connection (doubles, with jitter, up to `retry_max`).
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Wait before looking up a call whose request got no clear answer.
    pub reconcile_delay: Duration,
    /// A call looked for after an unclear answer is taken as absent (and its lead sent
    /// again) only when two lookups found nothing, the last one at least this long after
    /// the request timed out: an API still working on a request it took must not be
    /// taken for one that dropped it (there is no idempotency key).
    pub absent_after: Duration,
    /// How long shutdown waits for requests in flight.
    pub drain_timeout: Duration,
    /// Longest idle sleep (new leads from other processes are noticed at least this often).
    pub idle_poll: Duration,
    /// Where results (the outbox) are delivered; `None`: kept for `results export` only.
    pub results: Option<ResultsTarget>,
    /// The clock decisions, the ledger and deferrals run on.
    pub clock: crate::clock::Clock,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            attempts_per_second: 1,
            concurrency: 5,
            lease: Duration::from_secs(15),
            claim_batch: 64,
            poll_interval: Duration::from_secs(5),
            pool_refresh: Duration::from_secs(300),
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            reconcile_delay: Duration::from_secs(2),
            absent_after: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            idle_poll: Duration::from_secs(30),
            results: None,
            clock: crate::clock::Clock::System,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Synthflow refused the API key: {0}")]
    Unauthorized(ApiError),
    #[error(
        "agent `{agent}` names account `{account}`, which the configuration does not have (it has: {known})"
    )]
    UnknownAccount {
        agent: String,
        account: String,
        known: String,
    },
    // `error`, not `source`: thiserror would make it the error's source, and reports that
    // print the chain (`{:#}`) would say it twice.
    #[error("cannot read the pool of agent `{agent}`: {error}")]
    Pool { agent: String, error: ApiError },
}

/// What one decision led to, for logs, tests and the demo's report.
#[derive(Debug, Clone)]
pub struct Event {
    pub lead_id: String,
    pub at: DateTime<Utc>,
    pub outcome: String,
    pub from_phone_number: Option<String>,
    pub detail: String,
}

/// One Synthflow account (workspace) a daemon dials on: its key, pace and live-call limit.
#[derive(Clone)]
pub struct AccountSetup {
    pub name: String,
    pub client: Client,
    pub attempts_per_second: u32,
    pub concurrency: u32,
}

/// An account at run time: each paced and limited on its own; a refused key pauses only it.
struct Account {
    name: String,
    client: Client,
    attempts_per_second: u32,
    concurrency: u32,
    live: Arc<Semaphore>,
    /// One beat of the account's pace (with headroom).
    pacing_interval: Duration,
    /// Until when no request may go out (after a 429), as epoch ms.
    paused_until_ms: std::sync::atomic::AtomicI64,
    consecutive_429: AtomicU32,
    consecutive_connect_failures: AtomicU32,
    auth_failed: AtomicBool,
    /// Call requests in a row that got no answer (see `silence`).
    unanswered_in_a_row: AtomicU32,
    /// Set while the API does not answer this account: no new calls go out.
    silent: Mutex<Option<silence::Silence>>,
    /// Call requests sent and not answered yet.
    awaiting: std::sync::atomic::AtomicUsize,
}

impl Account {
    fn new(setup: AccountSetup) -> Account {
        let interval =
            Duration::from_secs_f64(PACING_HEADROOM / f64::from(setup.attempts_per_second.max(1)));
        Account {
            live: Arc::new(Semaphore::new(setup.concurrency.max(1) as usize)),
            name: setup.name,
            client: setup.client,
            attempts_per_second: setup.attempts_per_second,
            concurrency: setup.concurrency,
            pacing_interval: interval,
            paused_until_ms: std::sync::atomic::AtomicI64::new(0),
            consecutive_429: AtomicU32::new(0),
            consecutive_connect_failures: AtomicU32::new(0),
            auth_failed: AtomicBool::new(false),
            unanswered_in_a_row: AtomicU32::new(0),
            silent: Mutex::new(None),
            awaiting: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Calls placed and not ended. A request awaiting its answer holds a slot too, but is
    /// not a call (a hung API must not show as calls).
    fn live_calls(&self) -> usize {
        let total = self.concurrency.max(1) as usize;
        (total - self.live.available_permits().min(total)).saturating_sub(self.awaiting())
    }
}

/// Every agent of `rules` names an account the daemon has (or none: the first).
fn check_accounts(rules: &RuleSet, accounts: &[Arc<Account>]) -> Result<(), DaemonError> {
    for agent in rules.agents() {
        if let Some(name) = &agent.account
            && !accounts.iter().any(|a| &a.name == name)
        {
            return Err(DaemonError::UnknownAccount {
                agent: agent.name.clone(),
                account: name.clone(),
                known: accounts
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    Ok(())
}

/// Decisions made again because the commit refused them, and sends dropped for lateness:
/// what keeping limits across daemons costs.
#[derive(Debug, Default)]
struct Retries {
    stale: std::sync::atomic::AtomicU64,
    account_busy: std::sync::atomic::AtomicU64,
    paced: std::sync::atomic::AtomicU64,
    sent_late: std::sync::atomic::AtomicU64,
}

/// `Retries` as counted so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetryCounts {
    /// Another daemon had used the number since this one last heard of it.
    pub stale: u64,
    /// The account's live calls, over every daemon, were at its limit.
    pub account_busy: u64,
    /// The account's last second was full (this daemon woke late for its beat).
    pub paced: u64,
    /// Committed, but the request would have left too late after the commit: not sent.
    pub sent_late: u64,
}

impl Retries {
    fn counts(&self) -> RetryCounts {
        RetryCounts {
            stale: self.stale.load(Ordering::Relaxed),
            account_busy: self.account_busy.load(Ordering::Relaxed),
            paced: self.paced.load(Ordering::Relaxed),
            sent_late: self.sent_late.load(Ordering::Relaxed),
        }
    }
}

struct Shared<S: Store> {
    store: S,
    /// Other members' attempts, subscribed before the ledger was read at start (an attempt
    /// undone between the read and the subscription would otherwise be counted for a
    /// day); `run` follows it.
    feed: Mutex<Option<tokio::sync::broadcast::Receiver<crate::store::FedAttempt>>>,
    retries: Retries,
    /// The accounts, the first being the one of agents that name none.
    accounts: Vec<Arc<Account>>,
    /// Requests in flight and reconciliations: drained at shutdown.
    requests: Mutex<JoinSet<()>>,
    /// This daemon's id among the store's members, and what it registered.
    member: members::Membership,
    /// The running rules; a reload swaps them whole, and a lead being decided keeps the
    /// snapshot it started with.
    rules: ArcSwap<RuleSet>,
    /// Where the rules come from, for reloads (`None`: fixed rules, e.g. in tests).
    rules_dir: Mutex<Option<PathBuf>>,
    /// The names of the files the running rules were read from.
    rules_files: Mutex<Vec<String>>,
    reload: tokio::sync::Mutex<()>,
    reload_status: Mutex<ReloadStatus>,
    /// systemd's watchdog interval, if it wants pings.
    watchdog: Option<Duration>,
    last_beat: Mutex<tokio::time::Instant>,
    /// Leads not yet finished (queued, deferred, claimed, dialing, placed), for STATUS;
    /// counted every 30 s, not per ping, because counting a million rows is not free.
    open_leads: std::sync::atomic::AtomicU64,
    config: DaemonConfig,
    pool: Mutex<PoolState>,
    /// Set when Synthflow refused a call: the pool may have changed upstream.
    refresh_pools_now: AtomicBool,
    /// Why dialing is paused because Synthflow cannot be read, if it is.
    api_problem: Mutex<Option<String>>,
    /// Why dialing is paused because the store does not answer, if it is.
    store_problem: Mutex<Option<String>>,
    /// Per agent, the numbers its rules name that are not attached upstream.
    unattached: Mutex<Vec<(String, Vec<E164>)>>,
    /// Due instants handed out to deferred leads, one pacing interval apart.
    due_calendar: Mutex<crate::schedule::DueCalendar>,
    wake: Notify,
    /// Rung when this daemon wrote results (a call's end): the deliverer looks at once.
    results_wake: Notify,
    /// The most recent events (at most `RECENT_EVENTS`), for the demo's report and tests.
    events: Mutex<std::collections::VecDeque<Event>>,
    /// Each caller ID's recent call outcomes (number health).
    histories: Mutex<HashMap<E164, crate::health::History>>,
    /// Held while the health policy judges a call end and records its rests.
    health_judging: tokio::sync::Mutex<()>,
    /// The store's data version the rests were last read at, and when.
    rests_read: Mutex<(Option<u64>, Option<std::time::Instant>)>,
    /// The version of the store-kept suppression lists last read.
    suppression_read: std::sync::atomic::AtomicI64,
    /// Each number's slug, as the pools last read gave it (detach needs it).
    slugs: Mutex<HashMap<E164, String>>,
    /// The last `status::RECENT_DECISIONS` decisions acted on, newest last, with traces.
    decisions: Mutex<std::collections::VecDeque<status::DecisionView>>,
    /// Live calls' watchers, woken when a webhook reports the call's end.
    call_waiters: Mutex<HashMap<String, Arc<Notify>>>,
    /// The running rules' warnings as last logged: a reload logs only new ones.
    warned: Mutex<std::collections::BTreeSet<String>>,
    shutdown: watch::Receiver<bool>,
}

/// The running service. Cheap to clone; `run` drives it until shutdown.
pub struct Daemon<S: Store> {
    shared: Arc<Shared<S>>,
    stop: watch::Sender<bool>,
}

fn file_names(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .collect()
}

impl<S: Store> Daemon<S> {
    /// Rebuilds usage from the ledger and fetches every agent's pool. Fails if the key is
    /// refused or a pool cannot be read: nothing is dialed on guesses. One account, with
    /// the pace and live-call limit of `config`.
    pub async fn start(
        store: S,
        rules: Arc<RuleSet>,
        client: Client,
        config: DaemonConfig,
    ) -> Result<Daemon<S>, DaemonError> {
        let account = AccountSetup {
            name: DEFAULT_ACCOUNT.to_string(),
            client,
            attempts_per_second: config.attempts_per_second,
            concurrency: config.concurrency,
        };
        Daemon::start_with_accounts(store, rules, vec![account], config).await
    }

    /// `start` with several accounts; agents name theirs (`account:`), the first is the
    /// default.
    pub async fn start_with_accounts(
        store: S,
        rules: Arc<RuleSet>,
        accounts: Vec<AccountSetup>,
        config: DaemonConfig,
    ) -> Result<Daemon<S>, DaemonError> {
        let daemon = Daemon::open_with_accounts(store, rules, accounts, config).await?;
        daemon.read_pools_at_start().await?;
        Ok(daemon)
    }

    /// Everything `start_with_accounts` does but reading the pools: a service listens and
    /// tells systemd it is up first, then reads them (`read_pools_at_start`), so a hung API
    /// at start leaves it answering, pinging the watchdog and quick to stop.
    pub async fn open_with_accounts(
        store: S,
        rules: Arc<RuleSet>,
        accounts: Vec<AccountSetup>,
        config: DaemonConfig,
    ) -> Result<Daemon<S>, DaemonError> {
        let accounts: Vec<Arc<Account>> = accounts
            .into_iter()
            .map(|a| Arc::new(Account::new(a)))
            .collect();
        assert!(!accounts.is_empty(), "a daemon needs an account");
        check_accounts(&rules, &accounts)?;
        let now = config.clock.now();
        let mut pool = PoolState::new(now.timestamp_millis() as u64);
        let lookback = usage_lookback(&rules);
        let mut last_attempts: HashMap<String, DateTime<Utc>> = HashMap::new();
        let feed = store.attempt_feed();
        for attempt in store.attempts_since(now - lookback).await? {
            let last = last_attempts
                .entry(attempt.account.clone())
                .or_insert(attempt.at);
            *last = (*last).max(attempt.at);
            if let Ok(number) = E164::parse(&attempt.from_number) {
                pool.record_for_key(
                    number,
                    &attempt.lead_id,
                    called_of(&attempt.to_number),
                    attempt.at,
                );
            }
        }
        // The pace carries over a restart: the account still counts the attempts the last
        // run made (a ledger from before beats were kept in the store says when).
        for account in &accounts {
            if let Some(last) = last_attempts.get(&account.name) {
                let next = config.clock.to_wall(*last)
                    + chrono::Duration::from_std(account.pacing_interval).unwrap_or_default();
                if let Ok(pause) = (next - Utc::now()).to_std() {
                    store.pause_account(&account.name, pause).await?;
                }
            }
        }
        let (stop, shutdown) = watch::channel(false);
        let calendar_beat = accounts[0].pacing_interval;
        let daemon = Daemon {
            shared: Arc::new(Shared {
                member: members::Membership::new(),
                store,
                feed: Mutex::new(feed),
                retries: Retries::default(),
                rules: ArcSwap::new(rules),
                accounts,
                requests: Mutex::new(JoinSet::new()),
                config,
                pool: Mutex::new(pool),
                refresh_pools_now: AtomicBool::new(false),
                api_problem: Mutex::new(None),
                store_problem: Mutex::new(None),
                unattached: Mutex::new(Vec::new()),
                due_calendar: Mutex::new(crate::schedule::DueCalendar::new(calendar_beat)),
                wake: Notify::new(),
                results_wake: Notify::new(),
                events: Mutex::new(std::collections::VecDeque::new()),
                decisions: Mutex::new(std::collections::VecDeque::new()),
                histories: Mutex::new(HashMap::new()),
                slugs: Mutex::new(HashMap::new()),
                rests_read: Mutex::new((None, None)),
                suppression_read: std::sync::atomic::AtomicI64::new(-1),
                health_judging: tokio::sync::Mutex::new(()),
                call_waiters: Mutex::new(HashMap::new()),
                warned: Mutex::new(std::collections::BTreeSet::new()),
                rules_dir: Mutex::new(None),
                rules_files: Mutex::new(Vec::new()),
                watchdog: crate::systemd::watchdog_interval(),
                last_beat: Mutex::new(tokio::time::Instant::now()),
                open_leads: std::sync::atomic::AtomicU64::new(0),
                reload: tokio::sync::Mutex::new(()),
                reload_status: Mutex::new(ReloadStatus {
                    loaded_at: now,
                    last: None,
                    disk_broken: false,
                    watching: None,
                }),
                shutdown,
            }),
            stop,
        };
        daemon.shared.load_health().await?;
        daemon.shared.reload_suppressions().await?;
        *lock(&daemon.shared.api_problem) = Some("the agents' pools are not read yet".into());
        daemon
            .shared
            .refresh_pools_now
            .store(true, Ordering::SeqCst);
        Ok(daemon)
    }

    /// The first read of the agents' pools. Fails if the key or an agent is refused
    /// (configuration, which a restart will not fix); Synthflow unreachable or failing is
    /// not a failure: dialing waits, the loop keeps trying and the status says why.
    pub async fn read_pools_at_start(&self) -> Result<(), DaemonError> {
        let read = self
            .shared
            .alive_while(self.shared.unless_stopped(self.shared.refresh_pools()));
        let Some(read) = read.await else {
            return Ok(()); // stopping
        };
        match read {
            Ok(()) => {
                *lock(&self.shared.api_problem) = None;
                self.shared.refresh_pools_now.store(false, Ordering::SeqCst);
                Ok(())
            }
            Err(e @ DaemonError::Unauthorized(_))
            | Err(
                e @ DaemonError::Pool {
                    error: ApiError::Rejected { .. },
                    ..
                },
            ) => Err(e),
            Err(e) => {
                tracing::error!("{e}; dialing waits until the pools can be read");
                *lock(&self.shared.api_problem) = Some(e.to_string());
                Ok(())
            }
        }
    }

    /// What systemd's STATUS says now.
    pub fn status_line(&self) -> String {
        self.shared.status_line()
    }

    /// The time on the daemon's clock (the system clock, or the demo's simulated one).
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.config.clock.now()
    }

    /// Wakes the loop (new leads were enqueued).
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }

    /// The most recent events (the last 10,000; the log has them all).
    pub fn events(&self) -> Vec<Event> {
        lock(&self.shared.events).iter().cloned().collect()
    }

    pub fn store(&self) -> &S {
        &self.shared.store
    }

    /// Decisions made again and sends dropped so far (see `RetryCounts`).
    pub fn retries(&self) -> RetryCounts {
        self.shared.retries.counts()
    }

    /// Runs until `shutdown` completes, then stops claiming, lets requests in flight finish
    /// (up to the drain timeout), returns unclaimed leads to the queue, and returns.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) -> Result<(), DaemonError> {
        let shared = self.shared.clone();
        // Registers with the store and takes over what the last run (or, on a shared store,
        // members gone without leaving) left: claims queued again, calls in doubt reconciled,
        // live calls followed.
        let taken = shared
            .store
            .join(&shared.member.info(&shared.rules.load()))
            .await?;
        // The rules or the pools may have changed while the daemon was down.
        shared.release_held("daemon started").await;
        // Rests that ended while it was down: their numbers are attached again now.
        shared.unless_stopped(shared.sync_rest_attachments()).await;
        shared.adopt(taken);
        let heartbeat = tokio::spawn(shared.clone().keep_membership());
        let results = shared
            .config
            .results
            .clone()
            .map(|target| tokio::spawn(shared.clone().deliver_results(target)));
        let feed = lock(&shared.feed)
            .take()
            .map(|feed| tokio::spawn(shared.clone().follow_feed(feed)));
        let stop = self.stop.clone();
        let main = async {
            let result = shared.clone().dial_loop().await;
            // Drain: requests already sent get their answer recorded.
            let mut requests = std::mem::take(&mut *lock(&shared.requests));
            let drained = tokio::time::timeout(shared.config.drain_timeout, async {
                while requests.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                tracing::warn!(
                    "drain timeout: requests still in flight are left for the next start to reconcile"
                );
            }
            heartbeat.abort();
            if let Some(feed) = feed {
                feed.abort();
            }
            if let Some(results) = results {
                // It stops at the stop; an event it held is sent after its lease.
                let _ = tokio::time::timeout(Duration::from_secs(2), results).await;
            }
            shared.store.leave().await?;
            result
        };
        tokio::pin!(main);
        tokio::select! {
            // A shutdown that came before the start stops it before any request.
            biased;
            () = shutdown => {
                let _ = stop.send(true);
                shared.wake.notify_one();
                main.await
            }
            result = &mut main => result,
        }
    }
}

/// A daemon running on a background task (demo, benchmarks, tests).
pub struct RunningDaemon {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), DaemonError>>,
}

impl RunningDaemon {
    /// Shuts the daemon down as SIGTERM would, and waits until it has drained.
    pub async fn stop(self) -> Result<(), DaemonError> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or(Ok(()))
    }
}

impl<S: Store> Daemon<S> {
    /// Runs the daemon on a background task until `RunningDaemon::stop`.
    pub fn spawn(self: &Arc<Self>) -> RunningDaemon {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let daemon = self.clone();
        let task = tokio::spawn(async move {
            daemon
                .run(async move {
                    let _ = stopped.await;
                })
                .await
        });
        RunningDaemon { stop, task }
    }
}

impl<S: Store> Shared<S> {
    /// The account `name` (an attempt's), or the first.
    fn account(&self, name: &str) -> Arc<Account> {
        self.accounts
            .iter()
            .find(|a| a.name == name)
            .unwrap_or(&self.accounts[0])
            .clone()
    }

    /// The account of the agent with `model_id` in `rules`.
    fn account_of_model(&self, rules: &RuleSet, model_id: &str) -> Arc<Account> {
        let named = rules
            .agents()
            .find(|a| a.model_id == model_id)
            .and_then(|a| a.account.as_deref());
        self.account(named.unwrap_or(""))
    }

    /// Runs a request (or a reconciliation) beside the loop; shutdown waits for it.
    fn spawn_request(&self, work: impl Future<Output = ()> + Send + 'static) {
        let mut requests = lock(&self.requests);
        while requests.try_join_next().is_some() {}
        requests.spawn(work);
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Awaits `work` unless the daemon stops first (then `None`): a request to a hung API
    /// must not hold up a shutdown for its whole timeout.
    async fn unless_stopped<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            out = work => Some(out),
            _ = shutdown.wait_for(|stop| *stop) => None,
        }
    }

    async fn sleep_or_stop(&self, duration: Duration) {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }

    /// Logs and remembers what happened to a lead's call (placed, retry, failed).
    fn event(&self, lead_id: &str, outcome: &str, from: Option<String>, detail: String) {
        tracing::info!(
            lead = lead_id,
            outcome,
            from = from.as_deref().unwrap_or(""),
            "{detail}"
        );
        self.remember(lead_id, outcome, from, detail);
    }

    /// Remembers an event without logging it (decisions have their own log line).
    fn remember(&self, lead_id: &str, outcome: &str, from: Option<String>, detail: String) {
        let mut events = lock(&self.events);
        if events.len() == RECENT_EVENTS {
            events.pop_front();
        }
        events.push_back(Event {
            lead_id: lead_id.to_string(),
            at: self.config.clock.now(),
            outcome: outcome.to_string(),
            from_phone_number: from,
            detail,
        });
    }

    /// Once per loop turn: the watchdog ping (from this loop, so a wedged loop gets the
    /// service restarted) and, every few seconds, the one-line STATUS.
    fn heartbeat_every(&self) -> Duration {
        self.watchdog.map_or(Duration::from_secs(5), |w| {
            (w / 3).min(Duration::from_secs(5))
        })
    }

    fn heartbeat(&self) {
        let mut last = lock(&self.last_beat);
        if last.elapsed() < self.heartbeat_every() {
            return;
        }
        *last = tokio::time::Instant::now();
        if self.watchdog.is_some() {
            crate::systemd::watchdog();
        }
        crate::systemd::status(&self.status_line());
    }

    /// The one line systemd shows (`systemctl status`).
    fn status_line(&self) -> String {
        let awaiting: usize = self.accounts.iter().map(|a| a.awaiting()).sum();
        let live: usize = self.accounts.iter().map(|a| a.live_calls()).sum();
        format!(
            "rules {}; queue {} open; {live} calls live{}{}{}",
            self.rules.load().hash_text(),
            self.open_leads.load(Ordering::Relaxed),
            if awaiting > 0 {
                format!(", {awaiting} requests awaiting Synthflow")
            } else {
                String::new()
            },
            if self
                .accounts
                .iter()
                .any(|a| a.auth_failed.load(Ordering::SeqCst))
            {
                "; PAUSED: Synthflow refused an API key"
            } else if lock(&self.api_problem).is_some() {
                "; PAUSED: Synthflow's pools cannot be read"
            } else if self.accounts.iter().any(|a| a.silence().is_some()) {
                "; PAUSED: Synthflow is not answering"
            } else {
                ""
            },
            if lock(&self.reload_status).disk_broken {
                "; rules files on disk BROKEN (running the last good ones)"
            } else {
                ""
            },
        )
    }

    /// Counts the leads not finished, for the status line. Counted beside the loop (with
    /// the lease renewal), so a loop busy with one batch or waiting for a slot does not
    /// leave the line stale.
    pub(super) async fn count_open_leads(&self) {
        if let Ok(counts) = self.store.counts().await {
            let open = counts
                .iter()
                .filter(|(state, _)| {
                    !matches!(
                        state,
                        LeadState::Completed | LeadState::Failed | LeadState::Rejected
                    )
                })
                .map(|(_, n)| n)
                .sum();
            self.open_leads.store(open, Ordering::Relaxed);
        }
    }

    /// Awaits `work`, pinging the watchdog meanwhile: waiting for a call slot (calls last
    /// minutes) or for the end of a 429 pause is this loop doing its job.
    async fn alive_while<T>(&self, work: impl Future<Output = T>) -> T {
        tokio::pin!(work);
        // Checked twice per ping interval, whatever happened before: one wait after another
        // must not add up to a gap.
        let mut ticks = tokio::time::interval(self.heartbeat_every() / 2);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = ticks.tick() => self.heartbeat(),
            }
        }
    }
}
