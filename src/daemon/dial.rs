//! The dialing loop: claim due leads, wait for a call slot and a pacing token, decide with
//! the rules of that moment, write the ledger, hand the request to `dispatch`; defer, hold
//! or reject what cannot go now.

use super::*;

/// When the loop next refreshes the pools and counts the queue.
pub(super) struct Timers {
    next_refresh: tokio::time::Instant,
    next_count: tokio::time::Instant,
    /// When pools are read again while an account's key is refused.
    next_key_retry: tokio::time::Instant,
}

impl<S: Store> Shared<S> {
    /// The dialing loop's idle wait: also ends when leads are queued, by the admin listener,
    /// by this daemon's own tasks (`wake`), or by another process writing to the store since
    /// it read `version`.
    pub(super) async fn idle(&self, duration: Duration, version: Option<u64>) {
        tokio::select! {
            () = self.sleep_or_stop(duration) => {}
            () = self.wake.notified() => {}
            () = self.store_written_since(version) => {}
        }
    }

    /// Resolves once the store's data version moves past `seen` (checked twice a second).
    pub(super) async fn store_written_since(&self, seen: Option<u64>) {
        let Some(seen) = seen else {
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

    /// One loop per account, each claiming the leads of its own campaigns: an account
    /// waiting for a slot, a beat or a key holds up none of the others'.
    pub(super) async fn dial_loop(self: Arc<Self>) -> Result<(), DaemonError> {
        let loops = (0..self.accounts.len()).map(|index| self.clone().account_loop(index));
        for result in futures_util::future::join_all(loops).await {
            result?;
        }
        Ok(())
    }

    /// The campaigns whose leads the loop of account `index` claims.
    fn campaigns_of(&self, index: usize, rules: &RuleSet) -> crate::store::Campaigns {
        use crate::store::Campaigns;
        if self.accounts.len() == 1 {
            return Campaigns::All;
        }
        let on = |campaign: &crate::rules::Campaign, name: &str| {
            self.account_of_model(rules, &campaign.model_id).name == name
        };
        if index == 0 {
            // The first account also takes leads of campaigns the rules do not know (they
            // are held, with the reason).
            Campaigns::Except(
                rules
                    .campaigns()
                    .filter(|c| !on(c, &self.accounts[0].name))
                    .map(|c| c.name.clone())
                    .collect(),
            )
        } else {
            Campaigns::Only(
                rules
                    .campaigns()
                    .filter(|c| on(c, &self.accounts[index].name))
                    .map(|c| c.name.clone())
                    .collect(),
            )
        }
    }

    async fn account_loop(self: Arc<Self>, index: usize) -> Result<(), DaemonError> {
        let mut timers = Timers {
            next_refresh: tokio::time::Instant::now() + self.config.pool_refresh,
            next_count: tokio::time::Instant::now(),
            next_key_retry: tokio::time::Instant::now(),
        };
        let mut failures = 0;
        while !self.stopping() {
            match self.turn(&mut timers, index).await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!("the store answers again; dialing resumes");
                        *lock(&self.store_problem) = None;
                        failures = 0;
                    }
                }
                // The store unreachable (a database restarting, connections cut): pause,
                // keep what is in flight, and take back the leads this turn held, once it
                // answers. Nothing is lost: unfinished work is in the store.
                Err(DaemonError::Store(e)) => {
                    failures += 1;
                    tracing::error!("store error: {e}; dialing paused until it answers");
                    *lock(&self.store_problem) = Some(e.to_string());
                    metrics::counter!("callroute_store_errors_total").increment(1);
                    self.alive_while(
                        self.sleep_or_stop(self.backoff(failures).min(Duration::from_secs(10))),
                    )
                    .await;
                    if let Err(e) = self.store.release_claims(self.config.clock.now()).await {
                        tracing::debug!("claims not released yet: {e}");
                    }
                }
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    /// One turn of account `index`'s loop: housekeeping (the first account's loop does it
    /// for all), then a batch of due leads of the account's campaigns.
    async fn turn(self: &Arc<Self>, timers: &mut Timers, index: usize) -> Result<(), DaemonError> {
        let account = self.accounts[index].clone();
        if index > 0 {
            self.heartbeat();
            if lock(&self.api_problem).is_some() || self.refresh_pools_now.load(Ordering::SeqCst) {
                // The first loop is reading the pools: dial nothing on pools not read.
                self.alive_while(self.sleep_or_stop(Duration::from_millis(200)))
                    .await;
                return Ok(());
            }
        } else if tokio::time::Instant::now() >= timers.next_count {
            timers.next_count = tokio::time::Instant::now() + Duration::from_secs(30);
            let cutoff = self.config.clock.now() - usage_lookback(&self.rules.load());
            lock(&self.pool).forget_leads_idle_since(cutoff);
        }
        self.heartbeat();
        let now_instant = tokio::time::Instant::now();
        let key_refused = self
            .accounts
            .iter()
            .any(|a| a.auth_failed.load(Ordering::SeqCst));
        // The first loop reads the pools for all: when asked to, when a refused key may work
        // again (every few seconds), and every `pool_refresh`.
        let refresh = index == 0
            && (self.refresh_pools_now.swap(false, Ordering::SeqCst)
                || (key_refused && now_instant >= timers.next_key_retry)
                || now_instant >= timers.next_refresh);
        if refresh {
            timers.next_refresh = now_instant + self.config.pool_refresh;
            timers.next_key_retry = now_instant + self.config.retry_max.min(Duration::from_secs(5));
            // Pinging the watchdog meanwhile: a hung API is reported, not restarted into.
            let Some(refreshed) = self
                .alive_while(self.unless_stopped(self.refresh_pools()))
                .await
            else {
                return Ok(()); // stopping
            };
            match refreshed {
                Ok(()) => {}
                // One account's key refused, others working: only that account pauses (its
                // loop waits); the pools are read again in a few seconds.
                Err(e @ DaemonError::Unauthorized(_))
                    if self
                        .accounts
                        .iter()
                        .any(|a| !a.auth_failed.load(Ordering::SeqCst)) =>
                {
                    tracing::error!("{e}; that account's dialing paused, its leads kept");
                }
                Err(e) => {
                    tracing::error!("{e}; dialing paused, queue kept");
                    *lock(&self.api_problem) = Some(e.to_string());
                    // Try again before claiming anything: never dial on pools never read.
                    self.refresh_pools_now.store(true, Ordering::SeqCst);
                    self.alive_while(
                        self.sleep_or_stop(self.config.retry_max.min(Duration::from_secs(30))),
                    )
                    .await;
                    return Ok(());
                }
            }
            *lock(&self.api_problem) = None;
            // Rests written by `callroute numbers rest|resume`, and numbers to attach
            // again after a rest.
            self.reload_rests().await;
            self.alive_while(self.unless_stopped(self.sync_rest_attachments()))
                .await;
        }
        if account.auth_failed.load(Ordering::SeqCst) {
            // Synthflow refused this account's key: its leads stay queued (claiming them
            // only to put them back would spin), the other accounts dial on, and the first
            // loop reads the pools again until the key works.
            self.alive_while(self.sleep_or_stop(self.config.retry_max.min(Duration::from_secs(5))))
                .await;
            return Ok(());
        }
        if account.silence().is_some() {
            // Synthflow does not answer: one more call would be one more attempt in doubt.
            self.probe_silent(&account).await;
            return Ok(());
        }
        // Read before looking for work: a write after this point ends the idle wait.
        let version = self.store.data_version().await.ok();
        // Another process wrote (e.g. `callroute numbers rest`): rests apply at once.
        if version.is_some_and(|v| self.store_changed_since_rests(v)) {
            self.reload_rests().await;
            // `callroute suppress` or another daemon's opt-out: in the engine's view at
            // once (the commit checks the store's lists anyway).
            self.refresh_suppressions().await;
        }
        let now = self.config.clock.now();
        let campaigns = self.campaigns_of(index, &self.rules.load());
        let batch = self
            .store
            .claim_due_for(now, self.config.claim_batch, &campaigns)
            .await?;
        if batch.is_empty() {
            let until_due = match self.store.next_due_for(&campaigns).await? {
                Some(due) => self.config.clock.real_until(due),
                None => self.config.idle_poll,
            };
            // Wake in time for the next watchdog ping: it proves this loop is alive.
            let longest = self
                .watchdog
                .map_or(self.config.idle_poll, |w| self.config.idle_poll.min(w / 3));
            self.idle(until_due.clamp(Duration::from_millis(5), longest), version)
                .await;
            return Ok(());
        }
        // Another daemon may have called these leads before (sticky numbers, lead windows).
        // On a store no other daemon writes, every attempt is in this one's usage already.
        if self.store.shared() {
            let ids: Vec<String> = batch.iter().map(|l| l.id.clone()).collect();
            let phones: Vec<String> = batch
                .iter()
                .filter_map(|l| E164::parse(l.raw.phone.as_deref()?.trim()).ok())
                .map(|p| p.to_string())
                .collect();
            let known = self
                .store
                .lead_attempts(&ids, &phones, now - usage_lookback(&self.rules.load()))
                .await?;
            let mut pool = lock(&self.pool);
            for attempt in known {
                if let Ok(number) = E164::parse(&attempt.from_number) {
                    pool.learn(
                        number,
                        &attempt.lead_id,
                        called_of(&attempt.to_number),
                        attempt.at,
                    );
                }
            }
        }
        for lead in batch {
            if self.stopping() {
                break; // left claimed: released when the loop ends
            }
            self.clone().handle(lead, &account).await?;
        }
        Ok(())
    }

    /// Waits out a 429 pause, then for the account's next beat (reserved in the store, so
    /// every daemon on the account shares one pace).
    pub(super) async fn paced(&self, account: &Account) {
        let started = tokio::time::Instant::now();
        loop {
            let paused_until = account.paused_until_ms.load(Ordering::SeqCst);
            let wait = paused_until - Utc::now().timestamp_millis();
            if wait <= 0 {
                break;
            }
            self.sleep_or_stop(Duration::from_millis(wait as u64)).await;
            if self.stopping() {
                return;
            }
        }
        let wait = match self
            .store
            .reserve_pace(&account.name, account.pacing_interval)
            .await
        {
            Ok(wait) => wait,
            Err(e) => {
                // Without the shared beat, one beat of our own: slower, never faster.
                tracing::warn!("cannot reserve a pacing beat: {e}");
                account.pacing_interval
            }
        };
        self.sleep_or_stop(wait).await;
        metrics::histogram!("callroute_pacing_wait_seconds")
            .record(started.elapsed().as_secs_f64());
    }

    /// Puts a claimed lead back in the queue, due now and untouched, while its account's
    /// dialing is paused (`code` and `reason` say why).
    async fn paused(
        &self,
        stored: &StoredLead,
        code: &str,
        reason: &str,
    ) -> Result<(), DaemonError> {
        let now = self.config.clock.now();
        self.store.defer(&stored.id, now, code, reason, now).await?;
        Ok(())
    }

    pub(super) async fn handle(
        self: Arc<Self>,
        stored: StoredLead,
        account: &Arc<Account>,
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
                    .reject(&stored.id, "invalid_lead", &reason, self.config.clock.now())
                    .await?;
                self.event(&stored.id, "reject", None, reason);
                return Ok(());
            }
        };
        if account.auth_failed.load(Ordering::SeqCst) {
            // Back to the queue, untouched, until the key works again.
            let reason = format!(
                "dialing paused: Synthflow refused the API key of account `{}`",
                account.name
            );
            return self.paused(&stored, "api_key_refused", &reason).await;
        }
        // A live-call slot first: waiting for it costs nothing and a defer gives it back.
        let mut shutdown = self.shutdown.clone();
        let permit = self
            .alive_while(async {
                tokio::select! {
                    permit = account.live.clone().acquire_owned() => permit.ok(),
                    _ = shutdown.wait_for(|stop| *stop) => None,
                }
            })
            .await;
        let Some(permit) = permit else {
            return Ok(()); // stopping: the lead stays claimed and is released
        };
        lock(&self.pool).note_total_attempts(&lead.key, stored.attempts);
        let mut paced = false;
        loop {
            if account.silence().is_some() {
                // Synthflow stopped answering while this lead waited (its attempts in doubt
                // may hold the account's slots until it answers): back to the queue,
                // untouched; the loop asks the API until it answers.
                drop(permit);
                let reason = format!(
                    "dialing paused: Synthflow is not answering account `{}`",
                    account.name
                );
                return self.paused(&stored, "api_not_answering", &reason).await;
            }
            // Decisions use the rules of the moment they are made, after every wait: a
            // reload while this lead waited for its slot or its pacing beat applies to it.
            let first = self.decide_now(&lead);
            if matches!(first.2, Decision::Dial { .. }) && !paced {
                // Decide again once paced, so the time the limits were checked is the send time.
                self.alive_while(self.paced(account)).await;
                if self.stopping() {
                    return Ok(());
                }
                paced = true;
                continue;
            }
            // The number's uses and the person's calls as the decision counted them (read
            // under the same lock as the decision: the feed may add uses after it, which
            // the commit must then see as unknown).
            let (rules, now, decision, route, trace, counted) = first;
            if let Decision::Dial {
                from_phone_number,
                model_id,
                route: route_name,
                ..
            } = &decision
            {
                if !Arc::ptr_eq(&self.account_of_model(&rules, model_id), account) {
                    // A reload moved the campaign's agent to another account since the claim:
                    // that account's loop dials it, on its pace.
                    self.store
                        .defer(
                            &stored.id,
                            now,
                            "account_changed",
                            "its agent moved to another account",
                            now,
                        )
                        .await?;
                    return Ok(());
                }
                let guard = crate::store::AttemptGuard {
                    concurrency: Some(account.concurrency),
                    per_second: Some(account.attempts_per_second),
                    suppression: Some(Self::suppression_guard(&rules, &lead, now)),
                    ..counted
                };
                let from = from_phone_number.to_string();
                let to = lead.phone.to_string();
                let proof = super::compliance::proof(&rules, &lead, &trace, &decision);
                let attempt = crate::store::NewAttempt {
                    lead_id: &stored.id,
                    model_id,
                    from_number: &from,
                    route: route_name,
                    account: &account.name,
                    at: now,
                    proof: Some(&proof),
                    to_number: Some(&to),
                };
                let committing_since = tokio::time::Instant::now();
                match self.store.begin_attempt_checked(&attempt, &guard).await? {
                    crate::store::Begun::Written(attempt_id) => {
                        self.acted(&stored, &lead, now, &decision, &route, &trace);
                        lock(&self.pool).record(*from_phone_number, &lead, now);
                        let request =
                            Self::call_request(&rules, &lead, model_id, *from_phone_number);
                        let shared = self.clone();
                        let account = account.clone();
                        let from = *from_phone_number;
                        self.spawn_request(async move {
                            shared
                                .dispatch(
                                    &account,
                                    attempt_id,
                                    lead,
                                    request,
                                    from,
                                    now,
                                    permit,
                                    committing_since,
                                )
                                .await;
                        });
                        return Ok(());
                    }
                    crate::store::Begun::Stale(unknown) => {
                        // Another daemon used the number since this one last heard: learn
                        // its uses and decide again (the beat waited for still holds).
                        metrics::counter!("callroute_decisions_retried_total", "why" => "stale_usage").increment(1);
                        self.retries.stale.fetch_add(1, Ordering::Relaxed);
                        let mut pool = lock(&self.pool);
                        for attempt in unknown {
                            if let Ok(number) = E164::parse(&attempt.from_number) {
                                pool.learn(
                                    number,
                                    &attempt.lead_id,
                                    called_of(&attempt.to_number),
                                    attempt.at,
                                );
                            }
                        }
                        continue;
                    }
                    crate::store::Begun::AccountBusy { live } => {
                        // The account's live calls, over every daemon, are at its limit:
                        // wait for one to end, then pace and decide again.
                        metrics::counter!("callroute_decisions_retried_total", "why" => "account_busy").increment(1);
                        self.retries.account_busy.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(account = %account.name, live, "account at its live-call limit");
                        self.alive_while(self.sleep_or_stop(Duration::from_millis(250)))
                            .await;
                        if self.stopping() {
                            return Ok(());
                        }
                        paced = false;
                        continue;
                    }
                    crate::store::Begun::Paced { wait } => {
                        // This daemon woke late for its beat and the account's last second
                        // is full: wait for room, then a beat of its own again.
                        metrics::counter!("callroute_decisions_retried_total", "why" => "pace")
                            .increment(1);
                        self.retries.paced.fetch_add(1, Ordering::Relaxed);
                        self.alive_while(self.sleep_or_stop(wait)).await;
                        if self.stopping() {
                            return Ok(());
                        }
                        paced = false;
                        continue;
                    }
                    crate::store::Begun::Suppressed(entries) => {
                        // Listed since the decision (by `callroute suppress`, or another
                        // daemon's opt-out): learn the entries and decide again, which
                        // rejects the lead with the entry in its trace.
                        metrics::counter!("callroute_decisions_retried_total", "why" => "suppressed")
                            .increment(1);
                        let mut pool = lock(&self.pool);
                        for entry in entries {
                            pool.add_suppressed(entry);
                        }
                        continue;
                    }
                    crate::store::Begun::NotOwned => {
                        // This daemon's lease lapsed and another took the lead back: it is
                        // that daemon's now.
                        tracing::warn!(lead = %stored.id, "claim lost to another daemon; not dialed here");
                        return Ok(());
                    }
                }
            }
            self.acted(&stored, &lead, now, &decision, &route, &trace);
            match decision {
                Decision::Dial { .. } => unreachable!("dials return above"),
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
                    let code = crate::engine::variant_name(&reason.code);
                    self.store
                        .reject(&stored.id, &code, &reason.message, now)
                        .await?;
                    self.remember(&stored.id, "reject", None, reason.message);
                }
            }
            return Ok(());
        }
    }

    /// Counts, logs and remembers the decision acted on.
    fn acted(
        &self,
        stored: &StoredLead,
        lead: &Lead,
        now: DateTime<Utc>,
        decision: &Decision,
        route: &str,
        trace: &crate::engine::Trace,
    ) {
        // One log line per change of state: a lead deferred or held again for the reason it
        // was deferred or held for before (a herd coming due, held leads released by a
        // reload that did not help them) is logged at debug level only.
        let repeated = match decision {
            Decision::Defer { reason, .. } | Decision::Hold { reason } => {
                stored.reason_code.as_deref()
                    == Some(crate::engine::variant_name(&reason.code).as_str())
            }
            Decision::Dial { .. } | Decision::Reject { .. } => false,
        };
        self.count_decision(lead, decision, route, repeated);
        self.note_decision(lead, now, decision, trace);
    }

    /// What the commit must check about the number: its uses over its longest limit window
    /// as this daemon counted them (none to check when nothing limits it).
    fn number_guard(
        pool: &PoolState,
        rules: &RuleSet,
        lead: &Lead,
        route_name: &str,
        number: E164,
        now: DateTime<Utc>,
    ) -> Option<crate::store::NumberUses> {
        let info = rules.number(number)?;
        let route = rules
            .campaign(&lead.campaign)?
            .routes
            .iter()
            .find(|r| &*r.name == route_name)?;
        let window = route.limits_for(info).longest_window()?;
        let since = ledger_since(now, window)?;
        Some(crate::store::NumberUses {
            since,
            known_ms: pool.uses_ms_since(number, since),
        })
    }

    /// The calls to the lead's person the decision counted, when a law's 24 h cap counts
    /// them (the trace lists the caps it checked).
    fn person_guard(
        pool: &PoolState,
        trace: &crate::engine::Trace,
        lead: &Lead,
        now: DateTime<Utc>,
    ) -> Option<crate::store::PersonCalls> {
        if !trace.attempt_counts.iter().any(|c| c.window == "per_24h") {
            return None;
        }
        let since = ledger_since(now, chrono::Duration::hours(24))?;
        Some(crate::store::PersonCalls {
            to_number: lead.phone.to_string(),
            uses: crate::store::NumberUses {
                since,
                known_ms: pool.calls_to_ms_since(lead.phone, since),
            },
        })
    }

    /// Decides `lead` now with the running rules; returns the snapshot it decided on (one
    /// decision finishes on one snapshot: the call request is built from the same rules).
    pub(super) fn decide_now(
        &self,
        lead: &Lead,
    ) -> (
        Arc<RuleSet>,
        DateTime<Utc>,
        Decision,
        String,
        crate::engine::Trace,
        crate::store::AttemptGuard,
    ) {
        let rules = self.rules.load_full();
        let (decision, trace, counted) = {
            let pool = lock(&self.pool);
            let now = self.config.clock.now();
            let (decision, trace) = decide(&rules, lead, &pool, now);
            let counted = match &decision {
                Decision::Dial {
                    from_phone_number,
                    route,
                    ..
                } => crate::store::AttemptGuard {
                    number_uses: Self::number_guard(
                        &pool,
                        &rules,
                        lead,
                        route,
                        *from_phone_number,
                        now,
                    ),
                    person_calls: Self::person_guard(&pool, &trace, lead, now),
                    ..crate::store::AttemptGuard::default()
                },
                _ => crate::store::AttemptGuard::default(),
            };
            (decision, trace, counted)
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
        (rules, now, decision, route, trace, counted)
    }

    /// One counter per decision actually acted on, labelled by campaign, route, outcome and
    /// reason (bounded sets: never the lead's phone number).
    pub(super) fn count_decision(
        &self,
        lead: &Lead,
        decision: &Decision,
        route: &str,
        repeated: bool,
    ) {
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
        // Labels only for the rules' campaigns: a campaign name comes from lead data, and
        // every unknown one (typos, phone numbers in the wrong column) would be a series.
        let campaign = if self.rules.load().campaign(&lead.campaign).is_some() {
            lead.campaign.clone()
        } else {
            "unknown".to_string()
        };
        metrics::counter!(
            "callroute_decisions_total",
            "campaign" => campaign,
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
    pub(super) fn spread(&self, until: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        lock(&self.due_calendar).take(until, now)
    }

    pub(super) fn call_request(
        rules: &RuleSet,
        lead: &Lead,
        model_id: &str,
        from: E164,
    ) -> CallRequest {
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
            // As Synthflow's zone list names it (old names mapped, UTC/Etc/POSIX zones left
            // out: a 400 for a field callroute chose would fail the lead); a lead in several
            // zones has no one zone.
            lead_timezone: match lead.zones.as_slice() {
                [zone] => crate::synthflow::wire::synthflow_zone(zone.name()).map(str::to_string),
                _ => None,
            },
            prompt: campaign.and_then(|c| c.prompt.clone()),
            greeting: campaign.and_then(|c| c.greeting.clone()),
        }
    }
}

/// Where a commit's check of the ledger starts for a limit of `window` at `now`: a second
/// before the window, in whole milliseconds (as the ledger keeps them).
fn ledger_since(now: DateTime<Utc>, window: chrono::Duration) -> Option<DateTime<Utc>> {
    let since_ms = (now - window - chrono::Duration::seconds(1)).timestamp_millis();
    DateTime::<Utc>::from_timestamp_millis(since_ms)
}
