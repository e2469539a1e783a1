//! Reloading the rules: read and check the whole directory, read the pools of the new
//! rules' agents, and only then swap; held leads are decided again.

use super::*;

/// The outcome of the last reload, and whether the files on disk are broken.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadStatus {
    pub loaded_at: DateTime<Utc>,
    pub last: Option<ReloadRecord>,
    pub disk_broken: bool,
    /// How changes of the rules directory are noticed; `None` until a watcher runs.
    pub watching: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReloadRecord {
    pub at: DateTime<Utc>,
    pub trigger: String,
    #[serde(flatten)]
    pub outcome: ReloadOutcome,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// The files are valid, but what they need could not be read (the pool of a new
    /// agent); the running rules stay, and the reload is tried again.
    Waiting { errors: Vec<String> },
}

impl ReloadOutcome {
    /// `applied`, `unchanged`, `failed` or `waiting`.
    pub fn result(&self) -> &'static str {
        match self {
            ReloadOutcome::Unchanged { .. } => "unchanged",
            ReloadOutcome::Applied { .. } => "applied",
            ReloadOutcome::Failed { .. } => "failed",
            ReloadOutcome::Waiting { .. } => "waiting",
        }
    }
}

impl<S: Store> Daemon<S> {
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

    /// The suppression list files the running rules read.
    pub fn list_files(&self) -> Vec<PathBuf> {
        self.shared
            .rules
            .load()
            .compliance
            .lists
            .iter()
            .filter_map(|l| match &l.source {
                crate::compliance::ListSource::File { path, .. } => Some(path.clone()),
                crate::compliance::ListSource::Store => None,
            })
            .collect()
    }

    /// The content hash of the running rules.
    pub fn rules_hash(&self) -> u64 {
        self.shared.rules.load().content_hash
    }

    /// The rules' warnings already logged (at start): reloads log only new ones.
    pub fn set_warned(&self, warnings: Vec<String>) {
        *lock(&self.shared.warned) = warnings.iter().map(|w| warning_key(w)).collect();
    }

    /// The rules watcher says how it notices changes (file events, or the periodic check
    /// only when events are unavailable).
    pub fn set_watching(&self, how: String) {
        lock(&self.shared.reload_status).watching = Some(how);
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
                let account_problem = match &loaded {
                    Ok(Ok(loaded)) => check_accounts(&loaded.rules, &self.shared.accounts)
                        .err()
                        .map(|e| e.to_string()),
                    _ => None,
                };
                match loaded {
                    Err(e) => ReloadOutcome::Failed {
                        errors: vec![format!("reload task failed: {e}")],
                    },
                    Ok(Err(diagnostics)) => ReloadOutcome::Failed {
                        errors: diagnostics.errors().map(ToString::to_string).collect(),
                    },
                    Ok(Ok(loaded)) if loaded.rules.content_hash == running.content_hash => {
                        ReloadOutcome::Unchanged {
                            hash: running.hash_text(),
                        }
                    }
                    // An agent on an account this daemon does not have: configuration the
                    // rules cannot fix alone; the running rules stay.
                    Ok(Ok(_)) if account_problem.is_some() => ReloadOutcome::Failed {
                        errors: account_problem.into_iter().collect(),
                    },
                    Ok(Ok(loaded)) => {
                        // Everything the new rules need is read before they run: the pools
                        // of agents this daemon has not read yet (a lead is never decided
                        // against a pool that is not there). Known agents keep the pools
                        // already read, so that rules can change while Synthflow is down.
                        let unread: Vec<&crate::rules::Agent> = {
                            let pool = lock(&self.shared.pool);
                            loaded
                                .rules
                                .agents()
                                .filter(|a| !pool.knows_agent(&a.model_id))
                                .collect()
                        };
                        match self.shared.fetch_pools_of(unread.into_iter()).await {
                            Err(e) => ReloadOutcome::Waiting {
                                errors: vec![format!(
                                    "{e}; the running rules stay until it can be read"
                                )],
                            },
                            Ok(pools) => {
                                let changes = crate::rules::diff(&running, &loaded.rules);
                                let hash = loaded.rules.hash_text();
                                {
                                    // Whoever sees the new rules must not see the files
                                    // still called broken: the status goes first.
                                    lock(&self.shared.reload_status).disk_broken = false;
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
                // Only what is new: every reload repeating every warning buries the news.
                let mut warned = lock(&self.shared.warned);
                let mut repeated = 0;
                for warning in warnings {
                    if warned.contains(&warning_key(warning)) {
                        repeated += 1;
                    } else {
                        tracing::warn!("{warning}");
                    }
                }
                if repeated > 0 {
                    tracing::info!(
                        "{repeated} warning(s) as before (`callroute check` lists them all)"
                    );
                }
                *warned = warnings.iter().map(|w| warning_key(w)).collect();
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
            ReloadOutcome::Waiting { errors } => {
                for error in errors {
                    tracing::error!(trigger, "the new rules cannot run yet: {error}");
                }
            }
        }
        self.record_reload(trigger, &outcome);
        if matches!(outcome, ReloadOutcome::Applied { .. }) {
            self.shared.release_held("rules reloaded").await;
        }
        crate::systemd::reloaded(&format!("rules {}", self.shared.rules.load().hash_text()));
        outcome
    }

    pub(super) fn record_reload(&self, trigger: &str, outcome: &ReloadOutcome) {
        let now_s = Utc::now().timestamp() as f64;
        metrics::gauge!("callroute_rules_last_reload_timestamp_seconds").set(now_s);
        match outcome {
            ReloadOutcome::Failed { .. } | ReloadOutcome::Waiting { .. } => {
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
            ReloadOutcome::Waiting { .. } => status.disk_broken = false,
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
}

/// A warning without its line and column (`rules.yaml:4:3: warning: …` → `rules.yaml:
/// warning: …`): a line added above it does not make it news.
fn warning_key(warning: &str) -> String {
    let Some(at) = warning.find(": warning: ") else {
        return warning.to_string();
    };
    let mut place = &warning[..at];
    for _ in 0..2 {
        if let Some((before, number)) = place.rsplit_once(':')
            && number.chars().all(|c| c.is_ascii_digit())
        {
            place = before;
        }
    }
    format!("{place}{}", &warning[at..])
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_warning_is_the_same_news_wherever_its_line_moved() {
        let key = super::warning_key;
        assert_eq!(
            key("r/rules.yaml:4:3: warning: number +1 is selected by no route"),
            key("r/rules.yaml:5:3: warning: number +1 is selected by no route")
        );
        assert_ne!(
            key("r/a.yaml:4:3: warning: x"),
            key("r/b.yaml:4:3: warning: x")
        );
        assert_eq!(key("no location"), "no location");
    }
}
