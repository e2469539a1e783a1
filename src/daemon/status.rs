//! What the daemon shows of itself: live calls, the running rules, usage per number,
//! the gauges a scrape renders.

use super::*;

impl<S: Store> Daemon<S> {
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
            "hash": rules.hash_text(),
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
}
