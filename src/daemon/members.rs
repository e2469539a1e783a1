//! The daemon as one member of the store's daemons: registration, the lease it renews,
//! taking over the work of members whose lease expired, and other members' attempts fed
//! into this daemon's view of usage.

use super::*;
use crate::store::{FedAttempt, MemberInfo, TakeOver};

/// How this daemon registered itself.
pub(super) struct Membership {
    host: String,
    pid: u32,
}

impl Membership {
    pub(super) fn new() -> Membership {
        Membership {
            host: crate::store::hostname(),
            pid: std::process::id(),
        }
    }

    pub(super) fn info(&self, rules: &RuleSet) -> MemberInfo {
        MemberInfo {
            host: self.host.clone(),
            pid: self.pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            rules_hash: rules.hash_text(),
        }
    }
}

/// A member as the status shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MemberView {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    pub rules_hash: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// `live`, `left`, `taken over by …`, or `lease expired` (not yet taken over).
    pub state: String,
    /// This daemon.
    pub this: bool,
}

impl<S: Store> Shared<S> {
    /// Reconciles the attempts in doubt and follows the live calls of `taken` (a previous
    /// run's, or a member's whose lease expired).
    pub(super) fn adopt(self: &Arc<Self>, taken: TakeOver) {
        if !taken.members.is_empty() || taken.released > 0 {
            tracing::info!(
                members = ?taken.members,
                claims_released = taken.released,
                in_doubt = taken.in_doubt.len(),
                live = taken.live.len(),
                "took over the work of daemons gone"
            );
            metrics::counter!("callroute_takeovers_total").increment(taken.members.len() as u64);
        }
        for attempt in taken.in_doubt {
            let shared = self.clone();
            self.spawn_request(async move { shared.reconcile(attempt, None).await });
        }
        for attempt in taken.live {
            if let Some(call_id) = attempt.call_id.clone() {
                let account = self.account(&attempt.account);
                let permit = account.live.clone().try_acquire_owned().ok();
                tokio::spawn(self.clone().watch_call(account, call_id, permit));
            }
        }
        if taken.released > 0 {
            self.wake.notify_one();
        }
    }

    /// Renews the lease every third of it and takes over members whose lease expired,
    /// until the daemon stops; counts the open leads for the status line on the way. A store that cannot be reached is retried; a lease found
    /// lost (this daemon stalled longer than the lease) is re-joined: another member has
    /// taken its claims and calls, and the store refuses attempts on claims it lost.
    pub(super) async fn keep_membership(self: Arc<Self>) {
        let every = (self.config.lease / 3).max(Duration::from_millis(100));
        let mut pruned_at: Option<tokio::time::Instant> = None;
        loop {
            self.count_open_leads().await;
            if pruned_at.is_none_or(|at| at.elapsed() >= OUTBOX_PRUNE_EVERY) {
                pruned_at = Some(tokio::time::Instant::now());
                self.prune_outbox().await;
            }
            self.sleep_or_stop(every).await;
            if self.stopping() {
                return;
            }
            let rules_hash = self.rules.load().hash_text();
            match self.store.heartbeat(&rules_hash, self.config.lease).await {
                Ok(beat) => {
                    if beat.lost {
                        tracing::error!(
                            member = self.store.member_id(),
                            "this daemon's lease expired and another daemon took over its work; joining again"
                        );
                        metrics::counter!("callroute_lease_lost_total").increment(1);
                        match self.store.join(&self.member.info(&self.rules.load())).await {
                            Ok(taken) => self.adopt(taken),
                            Err(e) => tracing::warn!("cannot join the store again: {e}"),
                        }
                    }
                    self.adopt(beat.taken);
                }
                Err(e) => tracing::warn!("heartbeat failed: {e}; trying again"),
            }
        }
    }

    /// Drops results older than `OUTBOX_KEPT`: delivered ones, and without `results.url`
    /// every one (nobody receives them; `results export` reads them until then).
    async fn prune_outbox(&self) {
        let before =
            self.config.clock.now() - chrono::Duration::from_std(OUTBOX_KEPT).unwrap_or_default();
        match self
            .store
            .prune_outbox(before, self.config.results.is_none())
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!("results: {n} events older than 30 days dropped from the outbox")
            }
            Err(e) => tracing::warn!("results: cannot prune the outbox: {e}"),
        }
    }

    /// Learns other members' attempts (and their undoing) as the store reports them, so
    /// decisions see them without a query each. A missed one is caught at commit time.
    pub(super) async fn follow_feed(
        self: Arc<Self>,
        mut feed: tokio::sync::broadcast::Receiver<FedAttempt>,
    ) {
        loop {
            match feed.recv().await {
                Ok(fed) => {
                    let Ok(number) = E164::parse(&fed.from_number) else {
                        continue;
                    };
                    let mut pool = lock(&self.pool);
                    if fed.undone {
                        pool.forget(number, &fed.lead_id, called_of(&fed.to_number), fed.at);
                    } else {
                        pool.learn(number, &fed.lead_id, called_of(&fed.to_number), fed.at);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "attempt feed lagged; commit-time checks cover it");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

impl<S: Store> Daemon<S> {
    /// Every daemon working this store, and whether each is alive.
    pub async fn members(&self) -> Result<Vec<MemberView>, StoreError> {
        let lease = chrono::Duration::from_std(self.shared.config.lease).unwrap_or_default();
        let now = Utc::now();
        let me = self.shared.store.member_id().to_string();
        Ok(self
            .shared
            .store
            .members()
            .await?
            .into_iter()
            .map(|m| {
                let state = match (&m.taken_over_by, m.left_at) {
                    (Some(by), _) => format!("taken over by {by}"),
                    (None, Some(_)) => "left".to_string(),
                    (None, None) if m.heartbeat_at < now - lease => "lease expired".to_string(),
                    (None, None) => "live".to_string(),
                };
                MemberView {
                    this: m.id == me,
                    id: m.id,
                    host: m.info.host,
                    pid: m.info.pid,
                    version: m.info.version,
                    rules_hash: m.info.rules_hash,
                    started_at: m.started_at,
                    heartbeat_at: m.heartbeat_at,
                    state,
                }
            })
            .collect())
    }
}
