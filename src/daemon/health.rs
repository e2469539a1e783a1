//! Number health in the running daemon: each ended call is counted for its caller ID, the
//! policy (`health::evaluate`) decides which numbers rest, rests are kept in the store (they
//! survive restarts and `callroute numbers rest` writes them too; the loop re-reads them when
//! another process changed the store), and numbers whose policy
//! says so are detached from their agents while they rest and attached again after.

use std::collections::HashMap;

use super::*;
use crate::health::{History, Outcome, Pool};

/// Rests that ended this recently still get their numbers attached again.
const RECENT_REST_ENDS: chrono::Duration = chrono::Duration::days(30);

/// How far back call outcomes are read at start.
const HISTORY_LOOKBACK: chrono::Duration = chrono::Duration::days(7);

impl<S: Store> Shared<S> {
    /// At start: recent call outcomes, each number's first use (warm-up) and the rests.
    pub(super) async fn load_health(&self) -> Result<(), StoreError> {
        let now = self.config.clock.now();
        let rules = self.rules.load();
        let mut histories: HashMap<E164, History> = HashMap::new();
        for end in self.store.call_ends_since(now - HISTORY_LOOKBACK).await? {
            if let Ok(number) = E164::parse(&end.from_number) {
                let short = rules.health_policy(number).short_call;
                histories
                    .entry(number)
                    .or_default()
                    .push(end.at, Outcome::of(&end.status, end.duration, short));
            }
        }
        *lock(&self.histories) = histories;
        let first_uses = self.store.first_uses().await?;
        {
            let mut pool = lock(&self.pool);
            for (number, at) in first_uses {
                if let Ok(number) = E164::parse(&number) {
                    pool.note_first_use(number, at);
                }
            }
        }
        self.reload_rests().await;
        Ok(())
    }

    /// True when the store changed since the rests were last read for `version`, at most
    /// once a second (the daemon's own writes change it too).
    pub(super) fn store_changed_since_rests(&self, version: u64) -> bool {
        let mut checked = lock(&self.rests_read);
        let due = checked
            .1
            .is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(1));
        if checked.0 != Some(version) && due {
            *checked = (Some(version), Some(std::time::Instant::now()));
            return true;
        }
        false
    }

    /// Reads the rests from the store (the CLI writes them there) into the engine's view.
    pub(super) async fn reload_rests(&self) {
        let now = self.config.clock.now();
        // Rests that ended lately too: a number back from rest is judged only on the calls
        // placed since its rest began.
        match self.store.rests(now - RECENT_REST_ENDS).await {
            Ok(recent) => {
                {
                    let mut histories = lock(&self.histories);
                    for rest in &recent {
                        histories
                            .entry(rest.number)
                            .or_default()
                            .judge_from(rest.since);
                    }
                }
                let rests: Vec<_> = recent.into_iter().filter(|r| r.until > now).collect();
                let changed = {
                    let mut pool = lock(&self.pool);
                    let before: Vec<_> = pool.rests().values().cloned().collect();
                    pool.set_rests(rests.clone());
                    before != rests
                };
                self.gauge_rests(&rests);
                if changed {
                    // A number back from rest may be what a held lead waits for.
                    self.wake.notify_one();
                }
            }
            Err(e) => tracing::error!("cannot read the numbers' rests: {e}"),
        }
    }

    fn gauge_rests(&self, rests: &[crate::health::Rest]) {
        let rules = self.rules.load();
        for info in rules.numbers() {
            let resting = rests.iter().any(|r| r.number == info.number);
            metrics::gauge!("callroute_number_resting", "number" => info.number.to_string())
                .set(if resting { 1.0 } else { 0.0 });
        }
    }

    /// A call from `from` ended: count it, and rest the numbers the policy now says to.
    pub(super) async fn note_call_end(
        &self,
        from: &str,
        status: &str,
        duration: Option<std::time::Duration>,
    ) {
        let Ok(number) = E164::parse(from) else {
            return;
        };
        let now = self.config.clock.now();
        let rules = self.rules.load_full();
        let policy = rules.health_policy(number);
        let answer_ratio = {
            let mut histories = lock(&self.histories);
            let history = histories.entry(number).or_default();
            history.push(now, Outcome::of(status, duration, policy.short_call));
            history.last(policy.last_calls as usize).answer_rate()
        };
        if let Some(ratio) = answer_ratio {
            metrics::gauge!("callroute_number_answer_ratio", "number" => number.to_string())
                .set(ratio);
        }
        // One evaluation at a time: two call ends judged at once could each rest a number
        // and together pass `max_resting`.
        let _judging = self.health_judging.lock().await;
        let new_rests = {
            let histories = lock(&self.histories);
            let pool = lock(&self.pool);
            let pools: Vec<Pool> = rules
                .agents()
                .map(|a| Pool {
                    agent: &a.name,
                    numbers: rules.numbers_for_agent(&a.model_id),
                })
                .collect();
            crate::health::evaluate(
                &pools,
                |n| rules.health_policy(n),
                &histories,
                pool.rests(),
                now,
            )
        };
        let rested = !new_rests.is_empty();
        for rest in new_rests {
            tracing::warn!(
                number = %rest.number,
                until = %crate::format_instant(rest.until),
                "caller ID rested: {}",
                rest.reason
            );
            metrics::counter!("callroute_number_rests_total", "source" => "auto").increment(1);
            let stored = self.store.rest_number(&rest, "policy").await;
            let audited = self
                .store
                .audit(&crate::store::AuditEntry {
                    at: now,
                    actor: "policy".into(),
                    action: "rest".into(),
                    subject: rest.number.to_string(),
                    detail: format!(
                        "until {}: {}",
                        crate::format_instant(rest.until),
                        rest.reason
                    ),
                })
                .await;
            if let Err(e) = stored.and(audited) {
                tracing::error!(number = %rest.number, "cannot record the rest: {e}");
            }
        }
        if rested {
            // Before the next evaluation: it counts the rests now running.
            self.reload_rests().await;
            // Detaching calls Synthflow: the dialing loop does it at its next turn, not this
            // call's end (a webhook's answer or a freed slot must not wait on the API).
            self.refresh_pools_now.store(true, Ordering::SeqCst);
            self.wake.notify_one();
        }
    }

    /// Numbers whose policy says `detach_while_resting`: detached from every agent of the
    /// rules while they rest, attached again once the rest is over (within
    /// `RECENT_REST_ENDS`). From the rules, the store's rests and the pools as last read:
    /// nothing to lose in a restart.
    pub(super) async fn sync_rest_attachments(&self) {
        let rules = self.rules.load_full();
        let now = self.config.clock.now();
        let mut changes: Vec<(String, String, E164, bool)> = Vec::new();
        {
            let pool = lock(&self.pool);
            for agent in rules.agents() {
                for &number in rules.numbers_for_agent(&agent.model_id) {
                    if !rules.health_policy(number).detach_while_resting {
                        continue;
                    }
                    let resting = pool.rest_of(number, now).is_some();
                    let attached = pool.is_attached(&agent.model_id, number);
                    if resting && attached {
                        changes.push((agent.name.clone(), agent.model_id.clone(), number, false));
                    }
                }
            }
        }
        // Attach again the numbers whose rest (by policy or by hand) ended lately.
        let ended = match self.store.rests(now - RECENT_REST_ENDS).await {
            Ok(rests) => rests,
            Err(e) => {
                tracing::error!("cannot read the numbers' rests: {e}");
                Vec::new()
            }
        };
        {
            let pool = lock(&self.pool);
            for rest in ended.iter().filter(|r| r.until <= now) {
                if !rules.health_policy(rest.number).detach_while_resting
                    || pool.rest_of(rest.number, now).is_some()
                {
                    continue;
                }
                for agent in rules.agents() {
                    if !pool.is_attached(&agent.model_id, rest.number)
                        && rules
                            .numbers_for_agent(&agent.model_id)
                            .contains(&rest.number)
                    {
                        changes.push((
                            agent.name.clone(),
                            agent.model_id.clone(),
                            rest.number,
                            true,
                        ));
                    }
                }
            }
        }
        let changed = !changes.is_empty();
        let rules = self.rules.load();
        for (agent, model_id, number, attach) in changes {
            let client = &self.account_of_model(&rules, &model_id).client;
            let result = if attach {
                client
                    .attach_numbers(&model_id, &[number.to_string()])
                    .await
            } else {
                let slug = lock(&self.slugs)
                    .get(&number)
                    .cloned()
                    .unwrap_or_else(|| number.to_string().trim_start_matches('+').to_string());
                client.detach_number(&model_id, &slug).await
            };
            let action = if attach { "attach" } else { "detach" };
            match &result {
                Ok(()) => tracing::info!(
                    agent,
                    number = %number,
                    "{action}ed: rest {}",
                    if attach { "over" } else { "begins" }
                ),
                Err(e) => {
                    tracing::warn!(agent, number = %number, "cannot {action} for the rest: {e}")
                }
            }
            let _ = self
                .store
                .audit(&crate::store::AuditEntry {
                    at: now,
                    actor: "policy".into(),
                    action: action.into(),
                    subject: format!("{number} on agent `{agent}`"),
                    detail: match &result {
                        Ok(()) => "detach_while_resting".into(),
                        Err(e) => format!("failed: {e}"),
                    },
                })
                .await;
        }
        if changed && let Err(e) = self.refresh_pools().await {
            tracing::warn!("cannot read the pools after a rest change: {e}");
        }
    }

    /// Per number with outcomes: counts over its last calls and the last 24 h, and its
    /// pool's median (the first agent whose rules name it, as the policy compares). Each
    /// agent's median is worked out once.
    pub(super) fn health_views(&self, now: DateTime<Utc>) -> HashMap<E164, HealthView> {
        let rules = self.rules.load();
        let histories = lock(&self.histories);
        let mut pool_median: HashMap<E164, Option<f64>> = HashMap::new();
        for agent in rules.agents() {
            let numbers = rules.numbers_for_agent(&agent.model_id);
            let median = crate::health::median_of(numbers, |n| rules.health_policy(n), &histories);
            for &number in numbers {
                pool_median.entry(number).or_insert(median);
            }
        }
        histories
            .iter()
            .map(|(number, history)| {
                let policy = rules.health_policy(*number);
                let view = HealthView {
                    last_calls: history.last(policy.last_calls as usize),
                    last_24h: history.since(now - chrono::Duration::hours(24)),
                    pool_median: pool_median.get(number).copied().flatten(),
                };
                (*number, view)
            })
            .collect()
    }
}

/// A number's recent outcomes, as the status shows them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HealthView {
    pub last_calls: crate::health::Counts,
    pub last_24h: crate::health::Counts,
    /// The answer rate of its agent's pool (median of the numbers with enough calls).
    pub pool_median: Option<f64>,
}
