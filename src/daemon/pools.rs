//! The agents' attached pools as Synthflow reports them, what the rules name but is not
//! attached, and the held leads a pool change may free.

use super::*;

impl<S: Store> Shared<S> {
    /// Reads every agent's pool again; held leads are decided again if a pool changed.
    pub(super) async fn refresh_pools(&self) -> Result<(), DaemonError> {
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
    pub(super) fn report_unattached(&self, rules: &RuleSet) {
        let pool = lock(&self.pool);
        let mut report = Vec::new();
        for agent in rules.agents() {
            let missing: Vec<E164> = rules
                .numbers_for_agent(&agent.model_id)
                .iter()
                .copied()
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
    pub(super) async fn release_held(&self, why: &str) {
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
    pub(super) async fn fetch_pools(
        &self,
        rules: &RuleSet,
    ) -> Result<Vec<(String, Vec<E164>)>, DaemonError> {
        self.fetch_pools_of(rules.agents()).await
    }

    /// Reads the attached pool of each of `agents`: all of them, or an error.
    pub(super) async fn fetch_pools_of(
        &self,
        agents: impl Iterator<Item = &crate::rules::Agent>,
    ) -> Result<Vec<(String, Vec<E164>)>, DaemonError> {
        let mut pools = Vec::new();
        for agent in agents {
            let account = self.account(agent.account.as_deref().unwrap_or_default());
            match account.client.attached_numbers(&agent.model_id).await {
                Ok(numbers) => {
                    {
                        let mut slugs = lock(&self.slugs);
                        for attached in &numbers {
                            if let (Ok(number), Some(slug)) =
                                (E164::parse(&attached.number), &attached.slug)
                            {
                                slugs.insert(number, slug.clone());
                            }
                        }
                    }
                    let numbers: Vec<E164> = numbers
                        .iter()
                        .filter_map(|n| E164::parse(&n.number).ok())
                        .collect();
                    metrics::gauge!("callroute_pool_numbers", "agent" => agent.name.clone())
                        .set(numbers.len() as f64);
                    pools.push((agent.model_id.clone(), numbers));
                }
                Err(e @ ApiError::Unauthorized { .. }) => {
                    account.auth_failed.store(true, Ordering::SeqCst);
                    return Err(DaemonError::Unauthorized(e));
                }
                Err(error) => {
                    return Err(DaemonError::Pool {
                        agent: agent.name.clone(),
                        error,
                    });
                }
            }
            account.auth_failed.store(false, Ordering::SeqCst);
        }
        Ok(pools)
    }
}
