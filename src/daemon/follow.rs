//! Following a placed call to its end, by polling or by the post-call webhook, and giving
//! its live-call slot back as soon as it ends.

use super::*;

impl<S: Store> Daemon<S> {
    /// A post-call webhook says `call_id` ended. It is a hint, never the authority:
    /// Synthflow signs only the call id, so a body can be replayed with other fields (a
    /// forged `completed` would free a live call's slot, a forged `do_not_call` would list a
    /// number). Only the call's own record, `GET /v2/calls/{id}`, is acted on: its watcher
    /// reads it at once, or, for a call not followed here, it is read now.
    pub async fn call_ended(
        &self,
        call_id: &str,
        status: &str,
    ) -> Result<WebhookOutcome, StoreError> {
        if !crate::synthflow::wire::is_terminal_status(status) {
            return Ok(WebhookOutcome::NotEnded);
        }
        if let Some(waiter) = lock(&self.shared.call_waiters).get(call_id) {
            waiter.notify_one();
            return Ok(WebhookOutcome::Confirming);
        }
        // Followed by another member, or not ours: confirm it with the record.
        for account in &self.shared.accounts {
            match account.client.get_call(call_id).await {
                Ok(record) if record.is_terminal() => {
                    let recorded = self
                        .shared
                        .record_end(
                            call_id,
                            &record.status,
                            record.duration(),
                            &record.to_get_json(),
                        )
                        .await?;
                    if recorded {
                        self.shared
                            .check_opt_out(call_id, &record.to_get_json())
                            .await;
                        return Ok(WebhookOutcome::Recorded);
                    }
                    return Ok(WebhookOutcome::NotOurs);
                }
                Ok(_) => return Ok(WebhookOutcome::NotEnded),
                Err(_) => continue,
            }
        }
        Ok(WebhookOutcome::NotOurs)
    }
}

/// What a webhook led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookOutcome {
    /// The call's watcher is reading its record now.
    Confirming,
    /// Confirmed by the record and recorded here.
    Recorded,
    /// The record says the call has not ended (or the webhook's status is not an end).
    NotEnded,
    /// Not a live call of this daemon's, nor one Synthflow knows as ended.
    NotOurs,
}

impl<S: Store> Shared<S> {
    /// Records how `call_id` ended (its record: `fields`) and counts it for its caller ID's
    /// health. Returns false when it was not a live call of ours.
    pub(super) async fn record_end(
        &self,
        call_id: &str,
        status: &str,
        duration: Option<std::time::Duration>,
        fields: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let now = self.config.clock.now();
        let record = crate::compliance::outcome_fields(fields);
        let (redial, finished) = self.redial_after(call_id, status, &record, now).await?;
        let end = crate::store::outbox::CallEndReport {
            status,
            duration,
            record: Some(&record),
            redial: redial.as_ref(),
            finished,
        };
        let from = self.store.end_call(call_id, &end, now).await?;
        self.results_wake.notify_one();
        match from {
            Some(from) => {
                let next = redial
                    .as_ref()
                    .map_or(String::new(), |r| format!("; {}", r.reason));
                tracing::info!(
                    call_id,
                    from = %from,
                    status,
                    duration_s = duration.map(|d| d.as_secs()),
                    "call ended: {status}{next}"
                );
                if let Some(redial) = &redial {
                    metrics::counter!("callroute_cadence_redials_total", "attempt" => redial.attempt.min(9).to_string()).increment(1);
                }
                self.note_call_end(&from, status, duration).await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The redial the cadence of `call_id`'s campaign gives its lead after `status`, with the
    /// rules running now (none when no campaign has a cadence: no read), or why the lead is
    /// finished when its cadence says so. A call whose record (`fields`, flattened) says
    /// "stop calling me" (the rules' `opt_out`) or meets the cadence's `stop_when` ends the
    /// lead at once.
    async fn redial_after(
        &self,
        call_id: &str,
        status: &str,
        fields: &serde_json::Value,
        ended_at: DateTime<Utc>,
    ) -> Result<(Option<crate::cadence::Redial>, Option<&'static str>), StoreError> {
        let rules = self.rules.load_full();
        if rules.cadences().next().is_none() {
            return Ok((None, None));
        }
        let Some(lead) = self.store.lead_of_call(call_id).await? else {
            return Ok((None, None));
        };
        if lead.state != LeadState::Placed {
            return Ok((None, None));
        }
        let campaign = lead
            .raw
            .campaign
            .as_deref()
            .map(str::trim)
            .unwrap_or_default();
        let Some(campaign) = rules.campaign(campaign) else {
            return Ok((None, None));
        };
        // The route that takes the lead now, with the rules now running (a route's own
        // cadence replaces the campaign's).
        let route = crate::lead::Lead::from_raw(lead.raw.clone())
            .ok()
            .and_then(|parsed| crate::engine::route_of(campaign, &parsed));
        let Some(cadence) = campaign.cadence_for(route) else {
            return Ok((None, None));
        };
        if let Some(opted_out) = rules
            .compliance
            .opt_out
            .as_ref()
            .and_then(|o| o.matches(fields))
        {
            tracing::info!(lead = %lead.id, call_id, "cadence ended: the person opted out ({opted_out})");
            return Ok((None, Some("stopped")));
        }
        if let Some(stop) = cadence.stopped_by(fields) {
            tracing::info!(lead = %lead.id, call_id, "cadence ended: stop_when {stop}");
            return Ok((None, Some("stopped")));
        }
        let redial = cadence.next(lead.attempts, status, fields, ended_at);
        let spent = redial.is_none() && cadence.redial_on.iter().any(|s| s == status);
        Ok((redial, spent.then_some("cadence_spent")))
    }

    /// Polls a live call until it ends, then records the outcome and frees its slot.
    pub(super) async fn watch_call(
        self: Arc<Self>,
        account: Arc<Account>,
        call_id: String,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let waiter = Arc::new(Notify::new());
        lock(&self.call_waiters).insert(call_id.clone(), waiter.clone());
        let held = tokio::time::Instant::now();
        let seen_by = self.follow_call(&account, &call_id, &waiter).await;
        lock(&self.call_waiters).remove(&call_id);
        drop(permit);
        // Slot utilisation: how long each slot was held, and how the end was seen.
        if seen_by != "shutdown" {
            metrics::histogram!("callroute_call_slot_seconds").record(held.elapsed().as_secs_f64());
            metrics::counter!("callroute_call_ends_total", "seen_by" => seen_by).increment(1);
        }
    }

    /// Follows the call until it ends; says how the end was seen (`webhook`, `poll`,
    /// `gave_up` after 3 h, or `shutdown`).
    pub(super) async fn follow_call(
        &self,
        account: &Account,
        call_id: &str,
        webhook: &Notify,
    ) -> &'static str {
        let mut delay = self.config.poll_interval;
        let started = tokio::time::Instant::now();
        loop {
            if started.elapsed() > MAX_CALL_FOLLOW {
                // No call lasts this long: stop holding a slot for it, and say so.
                let outcome = "unknown: no final status within 3 h";
                tracing::warn!(call_id, "{outcome}");
                let now = self.config.clock.now();
                let recorded = self
                    .until_recorded("a call given up on", || async {
                        self.store
                            .complete(call_id, outcome, None, now)
                            .await
                            .map(|_| ())
                    })
                    .await;
                if let Err(e) = recorded {
                    tracing::error!(call_id, "cannot record the outcome: {e}");
                }
                return "gave_up";
            }
            // A webhook is a hint: the record is read now instead of at the next poll.
            let poked = tokio::select! {
                () = self.sleep_or_stop(delay) => false,
                () = webhook.notified() => true,
            };
            if self.stopping() {
                return "shutdown"; // resumed at the next start from the store's live calls
            }
            match account.client.get_call(call_id).await {
                Ok(record) if record.is_terminal() => {
                    // The slot time a poll loses: from the call's end to now.
                    if let (Some(start), Some(duration)) = (record.start_time_ms, record.duration_s)
                    {
                        let ended_ms = start + duration * 1000;
                        let late = (Utc::now().timestamp_millis() - ended_ms).max(0);
                        metrics::histogram!("callroute_call_end_seen_late_seconds")
                            .record(late as f64 / 1000.0);
                    }
                    let duration = record.duration();
                    // Recorded whatever it takes (a store restarting, connections cut): a call
                    // whose end is lost would keep its lead `placed` and its slot counted.
                    let status = record.status.clone();
                    let fields = record.to_get_json();
                    let recorded = self
                        .until_recorded("a call's end", || async {
                            self.record_end(call_id, &status, duration, &fields)
                                .await
                                .map(|_| ())
                        })
                        .await;
                    self.check_opt_out(call_id, &record.to_get_json()).await;
                    if let Err(e) = recorded {
                        tracing::error!(
                            call_id,
                            "cannot record the outcome: {e}; the next start follows the call again"
                        );
                        return "shutdown";
                    }
                    return if poked { "webhook" } else { "poll" };
                }
                // A webhook said it ended and the record does not (yet): look again soon, in
                // case the record lags; a forged webhook changes nothing.
                Ok(_) if poked => delay = delay.min(Duration::from_secs(1)),
                Ok(_) => delay = (delay * 2).min(MAX_POLL_INTERVAL),
                Err(e) => {
                    tracing::warn!(call_id, "status poll failed: {e}");
                    delay = (delay * 2).min(MAX_POLL_INTERVAL);
                }
            }
        }
    }
}
