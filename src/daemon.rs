//! The dialing loop: claim due leads, decide with the engine, write the ledger, place the
//! call, follow it to its outcome, defer what must wait. Paced to the account's call
//! attempts per second (governor) and live-call limit (a semaphore whose permits live as long
//! as the calls), and safe to kill at any moment: every attempt is in the ledger before its
//! request leaves, and a restart reconciles what was in flight.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::engine::{Decision, decide};
use crate::lead::Lead;
use crate::phone::E164;
use crate::rules::RuleSet;
use crate::store::{Attempt, LeadState, NotPlaced, Store, StoreError, StoredLead};
use crate::synthflow::{ApiError, CallRequest, Client, KeyValue};
use crate::usage::PoolState;

use arc_swap::ArcSwap;
use std::path::PathBuf;

/// The outcome of the last reload, and whether the files on disk are broken.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadStatus {
    pub loaded_at: DateTime<Utc>,
    pub last: Option<ReloadRecord>,
    pub disk_broken: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadRecord {
    pub at: DateTime<Utc>,
    pub trigger: String,
    #[serde(flatten)]
    pub outcome: ReloadOutcome,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ReloadOutcome {
    /// The files hash the same as the running rules: nothing to do.
    Unchanged { hash: String },
    /// New rules are running.
    Applied {
        hash: String,
        changes: Vec<String>,
        warnings: Vec<String>,
    },
    /// The files are broken; the running rules stay.
    Failed { errors: Vec<String> },
}

/// How far back usage matters: the longest limit window (a local day: up to 25 h), or the
/// longest sticky TTL. Usage is rebuilt from this far back at start, and leads idle for
/// longer are forgotten from memory.
fn usage_lookback(rules: &RuleSet) -> chrono::Duration {
    let longest_sticky = rules
        .campaigns()
        .flat_map(|c| &c.routes)
        .filter_map(|r| r.sticky)
        .max()
        .unwrap_or_default();
    chrono::Duration::hours(26).max(chrono::Duration::from_std(longest_sticky).unwrap_or_default())
}

/// How often an idle daemon looks whether another process wrote to the store.
const STORE_WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// How many recent events a daemon keeps in memory (the log has them all).
const RECENT_EVENTS: usize = 10_000;

/// The longest wait between two status polls of a live call: a call's slot stays taken
/// until a poll (or the webhook) sees its end, so this bounds the slot time wasted per call.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// How long a call is followed before its slot is given back with an unknown outcome.
const MAX_CALL_FOLLOW: Duration = Duration::from_secs(3 * 3600);

/// Pace at 1/1.015 of the account's attempts per second.
const PACING_HEADROOM: f64 = 1.015;

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The account's call attempts per second (Synthflow CAPS).
    pub attempts_per_second: u32,
    /// The account's concurrent-call limit.
    pub concurrency: u32,
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
    /// How long shutdown waits for requests in flight.
    pub drain_timeout: Duration,
    /// Longest idle sleep (new leads from other processes are noticed at least this often).
    pub idle_poll: Duration,
    /// The clock decisions, the ledger and deferrals run on.
    pub clock: crate::clock::Clock,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            attempts_per_second: 1,
            concurrency: 5,
            claim_batch: 64,
            poll_interval: Duration::from_secs(5),
            pool_refresh: Duration::from_secs(300),
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            reconcile_delay: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(30),
            idle_poll: Duration::from_secs(30),
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

struct Shared<S: Store> {
    store: S,
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
    client: Client,
    config: DaemonConfig,
    pool: Mutex<PoolState>,
    live: Arc<Semaphore>,
    limiter: DefaultDirectRateLimiter,
    /// Until when no request may go out (after a 429), as epoch ms.
    paused_until_ms: std::sync::atomic::AtomicI64,
    consecutive_429: AtomicU32,
    consecutive_connect_failures: AtomicU32,
    /// One beat of the account's pace (with headroom).
    pacing_interval: Duration,
    auth_failed: AtomicBool,
    /// Set when Synthflow refused a call: the pool may have changed upstream.
    refresh_pools_now: AtomicBool,
    /// Why dialing is paused because Synthflow cannot be read, if it is.
    api_problem: Mutex<Option<String>>,
    /// Per agent, the numbers its rules name that are not attached upstream.
    unattached: Mutex<Vec<(String, Vec<E164>)>>,
    /// Due instants handed out to deferred leads, one pacing interval apart.
    due_calendar: Mutex<crate::schedule::DueCalendar>,
    wake: Notify,
    /// The most recent events (at most `RECENT_EVENTS`), for the demo's report and tests.
    events: Mutex<std::collections::VecDeque<Event>>,
    /// Live calls' watchers, woken when a webhook reports the call's end.
    call_waiters: Mutex<HashMap<String, Arc<Notify>>>,
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<S: Store> Daemon<S> {
    /// Rebuilds usage from the ledger and fetches every agent's pool. Fails if the key is
    /// refused or a pool cannot be read: nothing is dialed on guesses.
    pub async fn start(
        store: S,
        rules: Arc<RuleSet>,
        client: Client,
        config: DaemonConfig,
    ) -> Result<Daemon<S>, DaemonError> {
        let now = config.clock.now();
        let mut pool = PoolState::new(now.timestamp_millis() as u64);
        let lookback = usage_lookback(&rules);
        let mut last_attempt = None;
        for attempt in store.attempts_since(now - lookback).await? {
            last_attempt = last_attempt.max(Some(attempt.at));
            if let Ok(number) = E164::parse(&attempt.from_number) {
                pool.record_for_key(number, &attempt.lead_id, attempt.at);
            }
        }
        let (stop, shutdown) = watch::channel(false);
        // 1.5 % under the account's rate: requests leave on the beat but arrive with network
        // jitter, and one arriving early would be the account's 429.
        let interval =
            Duration::from_secs_f64(PACING_HEADROOM / f64::from(config.attempts_per_second.max(1)));
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::MIN);
        let daemon = Daemon {
            shared: Arc::new(Shared {
                store,
                rules: ArcSwap::new(rules),
                client,
                live: Arc::new(Semaphore::new(config.concurrency.max(1) as usize)),
                limiter: RateLimiter::direct(quota),
                config,
                pool: Mutex::new(pool),
                paused_until_ms: std::sync::atomic::AtomicI64::new(0),
                consecutive_429: AtomicU32::new(0),
                consecutive_connect_failures: AtomicU32::new(0),
                pacing_interval: interval,
                auth_failed: AtomicBool::new(false),
                refresh_pools_now: AtomicBool::new(false),
                api_problem: Mutex::new(None),
                unattached: Mutex::new(Vec::new()),
                due_calendar: Mutex::new(crate::schedule::DueCalendar::new(interval)),
                wake: Notify::new(),
                events: Mutex::new(std::collections::VecDeque::new()),
                call_waiters: Mutex::new(HashMap::new()),
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
                }),
                shutdown,
            }),
            stop,
        };
        // The pace carries over a restart: the account still counts the attempts the last
        // run made, so the first one of this run waits its beat after them.
        if let Some(last) = last_attempt {
            let next = daemon.shared.config.clock.to_wall(last)
                + chrono::Duration::from_std(interval).unwrap_or_default();
            daemon
                .shared
                .paused_until_ms
                .store(next.timestamp_millis(), Ordering::SeqCst);
        }
        match daemon.shared.refresh_pools().await {
            Ok(()) => {}
            // The key or an agent is wrong: configuration, which a restart will not fix.
            Err(e @ DaemonError::Unauthorized(_))
            | Err(
                e @ DaemonError::Pool {
                    error: ApiError::Rejected { .. },
                    ..
                },
            ) => return Err(e),
            Err(e) => {
                // Synthflow unreachable or failing: start anyway, dial nothing until the
                // pools are read (the loop keeps trying and says why in the status).
                tracing::error!("{e}; dialing waits until the pools can be read");
                *lock(&daemon.shared.api_problem) = Some(e.to_string());
                daemon
                    .shared
                    .refresh_pools_now
                    .store(true, Ordering::SeqCst);
            }
        }
        Ok(daemon)
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

    /// A post-call webhook says `call_id` ended with `status`: record it and free the call's
    /// slot. Returns false for a call that is not a live call of ours (or not terminal).
    pub async fn call_ended(&self, call_id: &str, status: &str) -> Result<bool, StoreError> {
        if !crate::synthflow::wire::is_terminal_status(status) {
            return Ok(false);
        }
        let recorded = self
            .shared
            .store
            .complete(call_id, status, self.shared.config.clock.now())
            .await?;
        if let Some(waiter) = lock(&self.shared.call_waiters).get(call_id) {
            waiter.notify_one();
        }
        Ok(recorded)
    }

    /// Reloads read this directory (which the running rules were read from).
    pub fn set_rules_dir(&self, dir: PathBuf) {
        *lock(&self.shared.rules_files) =
            file_names(&crate::rules::rule_files(&dir).unwrap_or_default());
        *lock(&self.shared.rules_dir) = Some(dir);
    }

    /// The names of the files the running rules were read from.
    pub fn rules_file_names(&self) -> Vec<String> {
        lock(&self.shared.rules_files).clone()
    }

    /// The content hash of the running rules.
    pub fn rules_hash(&self) -> u64 {
        self.shared.rules.load().content_hash
    }

    pub fn reload_status(&self) -> ReloadStatus {
        lock(&self.shared.reload_status).clone()
    }

    /// Reads the whole rules directory and, only if every file is valid, swaps the running
    /// rules for the new ones. Usage, limits and sticky assignments carry over (they are kept
    /// by phone number and lead, not by rule). Leads being decided finish on their snapshot.
    /// Concurrent reloads queue up; an unchanged content hash is a no-op.
    pub async fn reload(&self, trigger: &str) -> ReloadOutcome {
        let _one_at_a_time = self.shared.reload.lock().await;
        crate::systemd::reloading();
        let running = self.shared.rules.load_full();
        let dir = lock(&self.shared.rules_dir).clone();
        let outcome = match dir {
            None => ReloadOutcome::Failed {
                errors: vec!["no rules directory to reload from".into()],
            },
            Some(dir) => {
                let loaded =
                    tokio::task::spawn_blocking(move || crate::rules::load_dir(&dir)).await;
                match loaded {
                    Err(e) => ReloadOutcome::Failed {
                        errors: vec![format!("reload task failed: {e}")],
                    },
                    Ok(Err(diagnostics)) => ReloadOutcome::Failed {
                        errors: diagnostics.errors().map(ToString::to_string).collect(),
                    },
                    Ok(Ok(loaded)) if loaded.rules.content_hash == running.content_hash => {
                        ReloadOutcome::Unchanged {
                            hash: format!("{:016x}", running.content_hash),
                        }
                    }
                    Ok(Ok(loaded)) => {
                        // Everything the new rules need, their agents' pools included, is
                        // read before they run: a lead is never decided against a pool that
                        // is not there yet.
                        match self.shared.fetch_pools(&loaded.rules).await {
                            Err(e) => ReloadOutcome::Failed {
                                errors: vec![format!("{e}; the running rules stay")],
                            },
                            Ok(pools) => {
                                let changes = crate::rules::diff(&running, &loaded.rules);
                                let hash = format!("{:016x}", loaded.rules.content_hash);
                                {
                                    let mut pool = lock(&self.shared.pool);
                                    for (model_id, numbers) in pools {
                                        pool.set_attached(&model_id, numbers);
                                    }
                                    self.shared.rules.store(Arc::new(loaded.rules));
                                }
                                *lock(&self.shared.rules_files) = file_names(&loaded.files);
                                self.shared
                                    .report_unattached(&self.shared.rules.load_full());
                                ReloadOutcome::Applied {
                                    hash,
                                    changes,
                                    warnings: loaded
                                        .warnings
                                        .iter()
                                        .map(ToString::to_string)
                                        .collect(),
                                }
                            }
                        }
                    }
                }
            }
        };
        match &outcome {
            ReloadOutcome::Unchanged { hash } => tracing::info!(trigger, hash, "rules unchanged"),
            ReloadOutcome::Applied {
                hash,
                changes,
                warnings,
            } => {
                tracing::info!(
                    trigger,
                    hash,
                    changes = changes.len(),
                    "rules reloaded: {}",
                    if changes.is_empty() {
                        "no effective change".to_string()
                    } else {
                        changes.join("; ")
                    }
                );
                for warning in warnings {
                    tracing::warn!("{warning}");
                }
            }
            ReloadOutcome::Failed { errors } => {
                tracing::error!(
                    trigger,
                    errors = errors.len(),
                    "rules on disk are broken; the running rules stay"
                );
                for error in errors {
                    tracing::error!("{error}");
                }
            }
        }
        self.record_reload(trigger, &outcome);
        if matches!(outcome, ReloadOutcome::Applied { .. }) {
            self.shared.release_held("rules reloaded").await;
        }
        crate::systemd::reloaded(&format!(
            "rules {:016x}",
            self.shared.rules.load().content_hash
        ));
        outcome
    }

    fn record_reload(&self, trigger: &str, outcome: &ReloadOutcome) {
        let now_s = Utc::now().timestamp() as f64;
        metrics::gauge!("callroute_rules_last_reload_timestamp_seconds").set(now_s);
        match outcome {
            ReloadOutcome::Failed { .. } => {
                metrics::gauge!("callroute_rules_reload_success").set(0.0)
            }
            ReloadOutcome::Applied { .. } => {
                metrics::gauge!("callroute_rules_reload_success").set(1.0);
            }
            ReloadOutcome::Unchanged { .. } => {
                metrics::gauge!("callroute_rules_reload_success").set(1.0)
            }
        }
        let mut status = lock(&self.shared.reload_status);
        let now = self.shared.config.clock.now();
        match outcome {
            ReloadOutcome::Failed { .. } => status.disk_broken = true,
            ReloadOutcome::Applied { .. } => {
                status.disk_broken = false;
                status.loaded_at = now;
            }
            ReloadOutcome::Unchanged { .. } => status.disk_broken = false,
        }
        status.last = Some(ReloadRecord {
            at: now,
            trigger: trigger.to_string(),
            outcome: outcome.clone(),
        });
    }

    /// Calls placed and not yet ended.
    pub fn live_calls(&self) -> usize {
        let total = self.shared.config.concurrency.max(1) as usize;
        total - self.shared.live.available_permits().min(total)
    }

    /// Sets the gauges that describe state, just before a scrape renders them.
    pub async fn update_gauges(&self) {
        metrics::gauge!("callroute_live_calls").set(self.live_calls() as f64);
        if let Ok(counts) = self.shared.store.counts().await {
            for (state, n) in counts {
                metrics::gauge!("callroute_leads", "state" => state.as_str()).set(n as f64);
            }
        }
    }

    /// The running rules: content hash and when they were loaded.
    pub fn rules_info(&self) -> serde_json::Value {
        let rules = self.shared.rules.load();
        let status = lock(&self.shared.reload_status).clone();
        serde_json::json!({
            "hash": format!("{:016x}", rules.content_hash),
            "loaded_at": status.loaded_at,
            "campaigns": rules.campaigns().count(),
            "numbers": rules.numbers().count(),
            "files_on_disk_broken": status.disk_broken,
            "last_reload": status.last,
        })
    }

    /// What the engine would decide for `lead` at `now` with the live rules and pool.
    pub fn explain(&self, lead: &Lead, now: DateTime<Utc>) -> (Decision, crate::engine::Trace) {
        let pool = lock(&self.shared.pool);
        decide(&self.shared.rules.load(), lead, &pool, now)
    }

    /// Per caller ID: calls in the last 24 h, last use, and every limit window full at `now`.
    pub fn usage(&self, now: DateTime<Utc>) -> Vec<serde_json::Value> {
        let rules = self.shared.rules.load();
        let pool = lock(&self.shared.pool);
        rules
            .numbers()
            .map(|info| {
                let usage = pool.number_usage(info.number);
                let hits = usage
                    .map(|u| u.hits(&info.limits, info.day_zone, now))
                    .unwrap_or_default();
                serde_json::json!({
                    "number": info.number,
                    "calls_24h": usage.map_or(0, |u| u.uses_24h(now)),
                    "last_used": usage.and_then(|u| u.last_used()),
                    "limits": info.limits,
                    "at_limit": hits,
                })
            })
            .collect()
    }

    /// Per agent, the numbers the rules give it that are not attached upstream (as of the
    /// last pool read).
    pub fn unattached(&self) -> Vec<(String, Vec<E164>)> {
        lock(&self.shared.unattached).clone()
    }

    /// Why dialing is paused because Synthflow's pools cannot be read, if it is.
    pub fn api_problem(&self) -> Option<String> {
        lock(&self.shared.api_problem).clone()
    }

    /// True once Synthflow refused the key; dialing is paused, the queue intact.
    pub fn auth_failed(&self) -> bool {
        self.shared.auth_failed.load(Ordering::SeqCst)
    }

    /// Runs until `shutdown` completes, then stops claiming, lets requests in flight finish
    /// (up to the drain timeout), returns unclaimed leads to the queue, and returns.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) -> Result<(), DaemonError> {
        let shared = self.shared.clone();
        let now = shared.config.clock.now();
        shared.store.release_claims(now).await?;
        // The rules or the pools may have changed while the daemon was down.
        shared.release_held("daemon started").await;
        let mut requests: JoinSet<()> = JoinSet::new();
        for attempt in shared.store.in_doubt().await? {
            let shared = shared.clone();
            requests.spawn(async move { shared.reconcile(attempt, None).await });
        }
        for attempt in shared.store.live_calls().await? {
            if let Some(call_id) = attempt.call_id.clone() {
                let permit = shared.live.clone().try_acquire_owned().ok();
                tokio::spawn(shared.clone().watch_call(call_id, permit));
            }
        }
        let stop = self.stop.clone();
        let main = async {
            let result = shared.clone().dial_loop(&mut requests).await;
            // Drain: requests already sent get their answer recorded.
            let drained = tokio::time::timeout(shared.config.drain_timeout, async {
                while requests.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                tracing::warn!(
                    "drain timeout: requests still in flight are left for the next start to reconcile"
                );
            }
            shared
                .store
                .release_claims(shared.config.clock.now())
                .await?;
            result
        };
        tokio::pin!(main);
        tokio::select! {
            result = &mut main => result,
            () = shutdown => {
                let _ = stop.send(true);
                shared.wake.notify_one();
                main.await
            }
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
    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    async fn sleep_or_stop(&self, duration: Duration) {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }

    /// The dialing loop's idle wait: also ends when new leads arrive, through the admin
    /// listener (`Daemon::wake`) or written into the store by another process.
    async fn idle(&self, duration: Duration) {
        tokio::select! {
            () = self.sleep_or_stop(duration) => {}
            () = self.wake.notified() => {}
            () = self.store_written_by_others() => {}
        }
    }

    /// Resolves once the store's data version moves (checked twice a second).
    async fn store_written_by_others(&self) {
        let Ok(seen) = self.store.data_version().await else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(STORE_WATCH_INTERVAL).await;
            match self.store.data_version().await {
                Ok(now) if now != seen => return,
                Ok(_) => {}
                Err(_) => return std::future::pending().await,
            }
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
        let live = self.config.concurrency as usize
            - self
                .live
                .available_permits()
                .min(self.config.concurrency as usize);
        crate::systemd::status(&format!(
            "rules {:016x}; queue {} open; {live} calls live{}{}",
            self.rules.load().content_hash,
            self.open_leads.load(Ordering::Relaxed),
            if self.auth_failed.load(Ordering::SeqCst) {
                "; PAUSED: Synthflow refused the API key"
            } else if lock(&self.api_problem).is_some() {
                "; PAUSED: Synthflow's pools cannot be read"
            } else {
                ""
            },
            if lock(&self.reload_status).disk_broken {
                "; rules files on disk BROKEN (running the last good ones)"
            } else {
                ""
            },
        ));
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

    /// Reads every agent's pool again; held leads are decided again if a pool changed.
    async fn refresh_pools(&self) -> Result<(), DaemonError> {
        let rules = self.rules.load_full();
        let pools = self.fetch_pools(&rules).await?;
        let mut changed = false;
        {
            let mut pool = lock(&self.pool);
            for (model_id, numbers) in pools {
                changed |= pool.set_attached(&model_id, numbers);
            }
        }
        if changed {
            self.release_held("an agent's pool changed").await;
        }
        self.report_unattached(&rules);
        Ok(())
    }

    /// Numbers the rules give an agent that Synthflow does not have attached to it: never
    /// dialed, and worth saying so (at start, after each pool read, in status and metrics).
    fn report_unattached(&self, rules: &RuleSet) {
        let pool = lock(&self.pool);
        let mut report = Vec::new();
        for agent in rules.agents() {
            let missing: Vec<E164> = rules
                .numbers_for_agent(&agent.model_id)
                .into_iter()
                .filter(|n| !pool.is_attached(&agent.model_id, *n))
                .collect();
            metrics::gauge!("callroute_numbers_not_attached", "agent" => agent.name.clone())
                .set(missing.len() as f64);
            if !missing.is_empty() {
                report.push((agent.name.clone(), missing));
            }
        }
        drop(pool);
        let mut known = lock(&self.unattached);
        if *known != report {
            for (agent, missing) in &report {
                let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
                tracing::warn!(
                    agent,
                    count = missing.len(),
                    "numbers in the rules but not attached to agent `{agent}` upstream are never dialed: {}",
                    list.join(", ")
                );
            }
            *known = report;
        }
    }

    /// Queues every held lead again: what held them may have changed.
    async fn release_held(&self, why: &str) {
        match self.store.release_held(self.config.clock.now()).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(leads = n, "{why}: held leads are decided again");
                self.wake.notify_one();
            }
            Err(e) => tracing::error!("{why}, but the held leads could not be queued again: {e}"),
        }
    }

    /// Reads the attached pool of every agent of `rules`: all of them, or an error.
    async fn fetch_pools(&self, rules: &RuleSet) -> Result<Vec<(String, Vec<E164>)>, DaemonError> {
        let mut pools = Vec::new();
        for agent in rules.agents() {
            match self.client.attached_numbers(&agent.model_id).await {
                Ok(numbers) => {
                    let numbers: Vec<E164> = numbers
                        .iter()
                        .filter_map(|n| E164::parse(&n.number).ok())
                        .collect();
                    metrics::gauge!("callroute_pool_numbers", "agent" => agent.name.clone())
                        .set(numbers.len() as f64);
                    pools.push((agent.model_id.clone(), numbers));
                }
                Err(e @ ApiError::Unauthorized { .. }) => {
                    self.auth_failed.store(true, Ordering::SeqCst);
                    return Err(DaemonError::Unauthorized(e));
                }
                Err(error) => {
                    return Err(DaemonError::Pool {
                        agent: agent.name.clone(),
                        error,
                    });
                }
            }
        }
        self.auth_failed.store(false, Ordering::SeqCst);
        Ok(pools)
    }

    async fn dial_loop(self: Arc<Self>, requests: &mut JoinSet<()>) -> Result<(), DaemonError> {
        let mut next_refresh = tokio::time::Instant::now() + self.config.pool_refresh;
        let mut next_count = tokio::time::Instant::now();
        while !self.stopping() {
            if tokio::time::Instant::now() >= next_count {
                next_count = tokio::time::Instant::now() + Duration::from_secs(30);
                let cutoff = self.config.clock.now() - usage_lookback(&self.rules.load());
                lock(&self.pool).forget_leads_idle_since(cutoff);
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
            self.heartbeat();
            while requests.try_join_next().is_some() {}
            let refresh_now = self.refresh_pools_now.swap(false, Ordering::SeqCst);
            if refresh_now
                || self.auth_failed.load(Ordering::SeqCst)
                || tokio::time::Instant::now() >= next_refresh
            {
                next_refresh = tokio::time::Instant::now() + self.config.pool_refresh;
                // Pinging the watchdog meanwhile: a hung API is reported, not restarted into.
                if let Err(e) = self.alive_while(self.refresh_pools()).await {
                    tracing::error!("{e}; dialing paused, queue kept");
                    *lock(&self.api_problem) = Some(e.to_string());
                    // Try again before claiming anything: never dial on pools never read.
                    self.refresh_pools_now.store(true, Ordering::SeqCst);
                    self.alive_while(
                        self.sleep_or_stop(self.config.retry_max.min(Duration::from_secs(30))),
                    )
                    .await;
                    continue;
                }
                *lock(&self.api_problem) = None;
            }
            let now = self.config.clock.now();
            let batch = self.store.claim_due(now, self.config.claim_batch).await?;
            if batch.is_empty() {
                let until_due = match self.store.next_due().await? {
                    Some(due) => self.config.clock.real_until(due),
                    None => self.config.idle_poll,
                };
                // Wake in time for the next watchdog ping: it proves this loop is alive.
                let longest = self
                    .watchdog
                    .map_or(self.config.idle_poll, |w| self.config.idle_poll.min(w / 3));
                self.idle(until_due.clamp(Duration::from_millis(5), longest))
                    .await;
                continue;
            }
            for lead in batch {
                if self.stopping() {
                    continue; // left claimed: released when the loop ends
                }
                if self.auth_failed.load(Ordering::SeqCst) {
                    // Back to the queue, untouched, until the key works again.
                    let reason = "dialing paused: Synthflow refused the API key";
                    self.store
                        .defer(&lead.id, now, "api_key_refused", reason, now)
                        .await?;
                    continue;
                }
                self.clone().handle(lead, requests).await?;
            }
        }
        Ok(())
    }

    /// Waits out a 429 pause, then for a pacing token.
    async fn paced(&self) {
        let started = tokio::time::Instant::now();
        loop {
            let paused_until = self.paused_until_ms.load(Ordering::SeqCst);
            let wait = paused_until - Utc::now().timestamp_millis();
            if wait <= 0 {
                break;
            }
            self.sleep_or_stop(Duration::from_millis(wait as u64)).await;
            if self.stopping() {
                return;
            }
        }
        self.limiter.until_ready().await;
        metrics::histogram!("callroute_pacing_wait_seconds")
            .record(started.elapsed().as_secs_f64());
    }

    async fn handle(
        self: Arc<Self>,
        stored: StoredLead,
        requests: &mut JoinSet<()>,
    ) -> Result<(), DaemonError> {
        let lead = match Lead::from_raw(stored.raw.clone()) {
            // One identity for the lead everywhere: its id in the store (the ledger, usage
            // rebuilt from it, events and logs all use it).
            Ok(lead) => Lead {
                key: stored.id.clone(),
                ..lead
            },
            Err(e) => {
                let reason = format!("invalid lead: {e}");
                self.store
                    .reject(&stored.id, &reason, self.config.clock.now())
                    .await?;
                self.event(&stored.id, "reject", None, reason);
                return Ok(());
            }
        };
        // A live-call slot first: waiting for it costs nothing and a defer gives it back.
        let mut shutdown = self.shutdown.clone();
        let permit = self
            .alive_while(async {
                tokio::select! {
                    permit = self.live.clone().acquire_owned() => permit.ok(),
                    _ = shutdown.wait_for(|stop| *stop) => None,
                }
            })
            .await;
        let Some(permit) = permit else {
            return Ok(()); // stopping: the lead stays claimed and is released
        };
        lock(&self.pool).note_total_attempts(&lead.key, stored.attempts);
        // Decisions use the rules of the moment they are made, after every wait: a reload
        // while this lead waited for its slot or its pacing token applies to it.
        let first = self.decide_now(&lead);
        if let Decision::Dial { .. } = first.2 {
            // Decide again once paced, so the time the limits were checked is the send time.
            self.alive_while(self.paced()).await;
            if self.stopping() {
                return Ok(());
            }
        }
        let (rules, now, decision, route) = if matches!(first.2, Decision::Dial { .. }) {
            self.decide_now(&lead)
        } else {
            first
        };
        // One log line per change of state: a lead deferred again for the reason it was
        // deferred for before is logged at debug level only.
        let repeated = matches!(&decision, Decision::Defer { reason, .. }
            if stored.reason_code.as_deref() == Some(crate::engine::variant_name(&reason.code).as_str()));
        self.count_decision(&lead, &decision, &route, repeated);
        match decision {
            Decision::Dial {
                from_phone_number,
                model_id,
                route,
                ..
            } => {
                lock(&self.pool).record(from_phone_number, &lead, now);
                let attempt_id = self
                    .store
                    .begin_attempt(
                        &stored.id,
                        &model_id,
                        &from_phone_number.to_string(),
                        &route,
                        now,
                    )
                    .await?;
                let request = Self::call_request(&rules, &lead, &model_id, from_phone_number);
                let shared = self.clone();
                requests.spawn(async move {
                    shared
                        .dispatch(attempt_id, lead, request, from_phone_number, now, permit)
                        .await;
                });
            }
            Decision::Defer { until, reason } => {
                let until = self.spread(until, now);
                let code = crate::engine::variant_name(&reason.code);
                self.store
                    .defer(&stored.id, until, &code, &reason.message, now)
                    .await?;
                self.remember(
                    &stored.id,
                    "defer",
                    None,
                    format!("until {}: {}", until.to_rfc3339(), reason.message),
                );
            }
            Decision::Hold { reason } => {
                let code = crate::engine::variant_name(&reason.code);
                self.store
                    .hold(&stored.id, &code, &reason.message, now)
                    .await?;
                self.remember(&stored.id, "hold", None, reason.message);
            }
            Decision::Reject { reason } => {
                self.store.reject(&stored.id, &reason.message, now).await?;
                self.remember(&stored.id, "reject", None, reason.message);
            }
        }
        Ok(())
    }

    /// Decides `lead` now with the running rules; returns the snapshot it decided on (one
    /// decision finishes on one snapshot: the call request is built from the same rules).
    fn decide_now(&self, lead: &Lead) -> (Arc<RuleSet>, DateTime<Utc>, Decision, String) {
        let rules = self.rules.load_full();
        let (decision, trace) = {
            let pool = lock(&self.pool);
            decide(&rules, lead, &pool, self.config.clock.now())
        };
        let now = trace.now.unwrap_or_else(Utc::now);
        for excluded in &trace.excluded {
            for window in &excluded.windows {
                metrics::counter!("callroute_limit_hits_total", "number" => excluded.number.to_string(), "window" => window.name()).increment(1);
            }
        }
        let route = trace
            .routes
            .iter()
            .find(|r| r.matched)
            .map(|r| r.route.to_string())
            .unwrap_or_default();
        (rules, now, decision, route)
    }

    /// One counter per decision actually acted on, labelled by campaign, route, outcome and
    /// reason (bounded sets: never the lead's phone number).
    fn count_decision(&self, lead: &Lead, decision: &Decision, route: &str, repeated: bool) {
        let (tier, number, reason, until) = match decision {
            Decision::Dial {
                tier,
                from_phone_number,
                ..
            } => (
                crate::engine::variant_name(tier),
                from_phone_number.to_string(),
                String::new(),
                String::new(),
            ),
            Decision::Defer { until, reason } => (
                String::new(),
                String::new(),
                crate::engine::variant_name(&reason.code),
                until.to_rfc3339(),
            ),
            Decision::Hold { reason } | Decision::Reject { reason } => (
                String::new(),
                String::new(),
                crate::engine::variant_name(&reason.code),
                String::new(),
            ),
        };
        let reason_label = if reason.is_empty() {
            tier.clone()
        } else {
            reason.clone()
        };
        metrics::counter!(
            "callroute_decisions_total",
            "campaign" => lead.campaign.clone(),
            "route" => route.to_string(),
            "outcome" => decision.outcome(),
            "reason" => reason_label
        )
        .increment(1);
        let detail = match decision {
            Decision::Dial { .. } => "",
            Decision::Defer { reason, .. }
            | Decision::Hold { reason }
            | Decision::Reject { reason } => reason.message.as_str(),
        };
        macro_rules! decision_line {
            ($level:ident) => {
                tracing::$level!(
                    lead = %lead.key,
                    campaign = %lead.campaign,
                    route,
                    tier,
                    number,
                    outcome = decision.outcome(),
                    reason,
                    until,
                    detail,
                    "decision"
                )
            };
        }
        if repeated {
            decision_line!(debug);
        } else {
            decision_line!(info);
        }
    }

    /// Gives a deferred lead its own due instant, at or after `until` (see `schedule`).
    fn spread(&self, until: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        lock(&self.due_calendar).take(until, now)
    }

    fn call_request(rules: &RuleSet, lead: &Lead, model_id: &str, from: E164) -> CallRequest {
        let campaign = rules.campaign(&lead.campaign);
        CallRequest {
            model_id: model_id.to_string(),
            phone: lead.phone.to_string(),
            name: lead.name.clone(),
            from_phone_number: Some(from.to_string()),
            custom_variables: lead
                .variables
                .iter()
                .map(|(key, value)| KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            lead_email: lead.email.clone(),
            // Synthflow's zone list has no UTC/Etc zones; a lead in several zones has no one zone.
            lead_timezone: match lead.zones.as_slice() {
                [zone] if !zone.name().starts_with("Etc/") && zone.name() != "UTC" => {
                    Some(zone.name().to_string())
                }
                _ => None,
            },
            prompt: campaign.and_then(|c| c.prompt.clone()),
            greeting: campaign.and_then(|c| c.greeting.clone()),
        }
    }

    /// The back-off after the `n`th failure in a row, jittered from the clock's low bits.
    fn backoff(&self, n: u32) -> Duration {
        let jitter = (Utc::now().timestamp_subsec_nanos() % 1000) as f64 / 1000.0;
        crate::schedule::backoff(n, self.config.retry_base, self.config.retry_max, jitter)
    }

    async fn dispatch(
        self: Arc<Self>,
        attempt_id: i64,
        lead: Lead,
        request: CallRequest,
        from: E164,
        at: DateTime<Utc>,
        permit: OwnedSemaphorePermit,
    ) {
        let result = self.client.create_call(&request).await;
        let outcome = match result {
            Ok(call_id) => {
                self.consecutive_429.store(0, Ordering::SeqCst);
                self.consecutive_connect_failures.store(0, Ordering::SeqCst);
                self.placed(attempt_id, &lead.key, &call_id, Some(from), Some(permit))
                    .await
            }
            Err(error) => {
                self.not_placed_or_unknown(attempt_id, &lead, &request, from, at, error, permit)
                    .await
            }
        };
        if let Err(e) = outcome {
            tracing::error!(lead = %lead.key, attempt_id, "cannot record the attempt's result: {e}; it will be reconciled at the next start");
        }
    }

    async fn placed(
        self: &Arc<Self>,
        attempt_id: i64,
        lead_id: &str,
        call_id: &str,
        from: Option<E164>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<(), StoreError> {
        if let Some(from) = from {
            metrics::counter!("callroute_calls_placed_total", "from_number" => from.to_string())
                .increment(1);
        }
        self.store
            .attempt_placed(attempt_id, call_id, self.config.clock.now())
            .await?;
        self.event(
            lead_id,
            "placed",
            from.map(|f| f.to_string()),
            format!("call {call_id}"),
        );
        tokio::spawn(self.clone().watch_call(call_id.to_string(), permit));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn not_placed_or_unknown(
        self: &Arc<Self>,
        attempt_id: i64,
        lead: &Lead,
        request: &CallRequest,
        from: E164,
        at: DateTime<Utc>,
        error: ApiError,
        permit: OwnedSemaphorePermit,
    ) -> Result<(), StoreError> {
        let now = self.config.clock.now();
        let next = match &error {
            ApiError::RateLimited(_) => {
                // A lone 429 (a call placed elsewhere on the account, a request that arrived
                // early) costs one pacing beat; only 429s in a row pause the account for
                // `retry_base`, doubling. The lead is not at fault: it goes when the pause ends.
                let in_a_row = self.consecutive_429.fetch_add(1, Ordering::SeqCst) + 1;
                let wait = if in_a_row == 1 {
                    self.pacing_interval
                } else {
                    self.backoff(in_a_row - 1)
                };
                let wait = chrono::Duration::from_std(wait).unwrap_or_default();
                // The pause is real time: it is the account's clock that counts.
                self.paused_until_ms
                    .fetch_max((Utc::now() + wait).timestamp_millis(), Ordering::SeqCst);
                let until = now + wait;
                metrics::counter!("callroute_rate_limited_total").increment(1);
                NotPlaced::Retry {
                    due_at: until,
                    reason: error.to_string(),
                }
            }
            ApiError::Connect(_) => {
                let in_a_row = self
                    .consecutive_connect_failures
                    .fetch_add(1, Ordering::SeqCst)
                    + 1;
                NotPlaced::Retry {
                    due_at: now
                        + chrono::Duration::from_std(self.backoff(in_a_row)).unwrap_or_default(),
                    reason: error.to_string(),
                }
            }
            ApiError::Unauthorized { .. } => {
                tracing::error!(
                    "Synthflow refused the API key ({error}); dialing stopped, queue kept"
                );
                self.auth_failed.store(true, Ordering::SeqCst);
                NotPlaced::Retry {
                    due_at: now,
                    reason: error.to_string(),
                }
            }
            ApiError::Rejected { .. } => {
                // The pool may have changed upstream (a caller ID detached): read it again
                // now. If our number is gone, the lead is not at fault: route it again.
                let refreshed = self.refresh_pools().await;
                let detached =
                    refreshed.is_ok() && !lock(&self.pool).is_attached(&request.model_id, from);
                if refreshed.is_err() {
                    self.refresh_pools_now.store(true, Ordering::SeqCst);
                }
                if detached {
                    NotPlaced::Retry {
                        due_at: now,
                        reason: format!(
                            "caller ID {from} was detached upstream ({error}); routing again"
                        ),
                    }
                } else {
                    NotPlaced::Fail {
                        reason: error.to_string(),
                    }
                }
            }
            ApiError::Server { .. } | ApiError::Ambiguous(_) | ApiError::Decode(_) => {
                drop(permit);
                let attempt = Attempt {
                    id: attempt_id,
                    lead_id: lead.key.clone(),
                    model_id: request.model_id.clone(),
                    from_number: from.to_string(),
                    route: String::new(),
                    at,
                    status: crate::store::AttemptStatus::Sent,
                    call_id: None,
                };
                self.clone()
                    .reconcile(attempt, Some(request.phone.clone()))
                    .await;
                return Ok(());
            }
        };
        lock(&self.pool).forget(from, &lead.key, at);
        self.store
            .attempt_not_placed(attempt_id, &next, now)
            .await?;
        let outcome = if matches!(next, NotPlaced::Fail { .. }) {
            "failed"
        } else {
            "retry"
        };
        self.event(
            &lead.key,
            outcome,
            Some(from.to_string()),
            error.to_string(),
        );
        drop(permit);
        Ok(())
    }

    /// Finds out whether an attempt without a clear answer placed a call: found → placed;
    /// certainly absent → back to the queue; lookup failing → left in doubt and retried.
    async fn reconcile(self: Arc<Self>, attempt: Attempt, phone: Option<String>) {
        let phone = match phone {
            Some(phone) => phone,
            // The number exactly as the request sent it (E.164), whatever the store holds
            // (stores written before leads were kept normalised hold the raw text).
            None => match self.store.lead(&attempt.lead_id).await {
                Ok(Some(lead)) => {
                    let phone = lead.raw.phone.unwrap_or_default();
                    E164::parse(phone.trim()).map_or(phone, |number| number.to_string())
                }
                _ => return,
            },
        };
        let mut delay = self.config.reconcile_delay;
        // Never resend on a guess: keep asking until the lookup answers (or we stop; the next
        // start asks again).
        loop {
            self.sleep_or_stop(delay).await;
            if self.stopping() {
                return;
            }
            // Synthflow's records carry wall-clock times.
            let since = self.config.clock.to_wall(attempt.at) - chrono::Duration::seconds(5);
            match self
                .client
                .find_calls(&attempt.model_id, &phone, since.timestamp_millis())
                .await
            {
                Ok(calls) => {
                    let ours = calls.iter().find(|c| {
                        c.from_phone_number
                            .as_deref()
                            .is_none_or(|f| f == attempt.from_number)
                    });
                    let now = self.config.clock.now();
                    let result = match ours {
                        Some(call) => {
                            // The call is live whether or not a slot is free: follow it
                            // either way, so its end is recorded.
                            let permit = self.live.clone().try_acquire_owned().ok();
                            self.placed(
                                attempt.id,
                                &attempt.lead_id,
                                &call.call_id,
                                E164::parse(&attempt.from_number).ok(),
                                permit,
                            )
                            .await
                        }
                        None => {
                            if let Ok(number) = E164::parse(&attempt.from_number) {
                                lock(&self.pool).forget(number, &attempt.lead_id, attempt.at);
                            }
                            let next = NotPlaced::Retry { due_at: now, reason: "no answer to the request, and no such call exists: sending again".into() };
                            self.event(
                                &attempt.lead_id,
                                "retry",
                                Some(attempt.from_number.clone()),
                                "call certainly absent after an unclear answer".into(),
                            );
                            self.store.attempt_not_placed(attempt.id, &next, now).await
                        }
                    };
                    if let Err(e) = result {
                        tracing::error!(attempt = attempt.id, "cannot record reconciliation: {e}");
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(
                        attempt = attempt.id,
                        "lookup of an unclear call failed ({e}); trying again"
                    );
                    delay = (delay * 2).min(self.config.retry_max);
                }
            }
        }
    }

    /// Polls a live call until it ends, then records the outcome and frees its slot.
    async fn watch_call(self: Arc<Self>, call_id: String, permit: Option<OwnedSemaphorePermit>) {
        let waiter = Arc::new(Notify::new());
        lock(&self.call_waiters).insert(call_id.clone(), waiter.clone());
        self.follow_call(&call_id, &waiter).await;
        lock(&self.call_waiters).remove(&call_id);
        drop(permit);
    }

    async fn follow_call(&self, call_id: &str, webhook: &Notify) {
        let mut delay = self.config.poll_interval;
        let started = tokio::time::Instant::now();
        loop {
            if started.elapsed() > MAX_CALL_FOLLOW {
                // No call lasts this long: stop holding a slot for it, and say so.
                let outcome = "unknown: no final status within 3 h";
                tracing::warn!(call_id, "{outcome}");
                if let Err(e) = self
                    .store
                    .complete(call_id, outcome, self.config.clock.now())
                    .await
                {
                    tracing::error!(call_id, "cannot record the outcome: {e}");
                }
                return;
            }
            tokio::select! {
                () = self.sleep_or_stop(delay) => {}
                // The webhook recorded the end: the slot is free now, not at the next poll.
                () = webhook.notified() => return,
            }
            if self.stopping() {
                return; // resumed at the next start from the store's live calls
            }
            match self.client.get_call(call_id).await {
                Ok(record) if record.is_terminal() => {
                    if let Err(e) = self
                        .store
                        .complete(call_id, &record.status, self.config.clock.now())
                        .await
                    {
                        tracing::error!(call_id, "cannot record the outcome: {e}");
                    }
                    return;
                }
                Ok(_) => delay = (delay * 2).min(MAX_POLL_INTERVAL),
                Err(e) => {
                    tracing::warn!(call_id, "status poll failed: {e}");
                    delay = (delay * 2).min(MAX_POLL_INTERVAL);
                }
            }
        }
    }
}
