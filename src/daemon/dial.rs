//! The dialing loop: claim due leads, wait for a call slot and a pacing token, decide with
//! the rules of that moment, write the ledger, hand the request to `dispatch`; defer, hold
//! or reject what cannot go now.

use super::*;

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

    pub(super) async fn dial_loop(
        self: Arc<Self>,
        requests: &mut JoinSet<()>,
    ) -> Result<(), DaemonError> {
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
                // Rests written by `callroute numbers rest|resume`, and numbers to attach
                // again after a rest.
                self.reload_rests().await;
                self.alive_while(self.sync_rest_attachments()).await;
            }
            // Read before looking for work: a write after this point ends the idle wait.
            let version = self.store.data_version().await.ok();
            // Another process wrote (e.g. `callroute numbers rest`): rests apply at once.
            if version.is_some_and(|v| self.store_changed_since_rests(v)) {
                self.reload_rests().await;
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
                self.idle(until_due.clamp(Duration::from_millis(5), longest), version)
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
    pub(super) async fn paced(&self) {
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

    pub(super) async fn handle(
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
        let (rules, now, decision, route, trace) = if matches!(first.2, Decision::Dial { .. }) {
            self.decide_now(&lead)
        } else {
            first
        };
        // One log line per change of state: a lead deferred or held again for the reason it
        // was deferred or held for before (a herd coming due, held leads released by a
        // reload that did not help them) is logged at debug level only.
        let repeated = match &decision {
            Decision::Defer { reason, .. } | Decision::Hold { reason } => {
                stored.reason_code.as_deref()
                    == Some(crate::engine::variant_name(&reason.code).as_str())
            }
            Decision::Dial { .. } | Decision::Reject { .. } => false,
        };
        self.count_decision(&lead, &decision, &route, repeated);
        self.note_decision(&lead, now, &decision, &trace);
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
    pub(super) fn decide_now(
        &self,
        lead: &Lead,
    ) -> (
        Arc<RuleSet>,
        DateTime<Utc>,
        Decision,
        String,
        crate::engine::Trace,
    ) {
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
        (rules, now, decision, route, trace)
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
}
