//! One call request and what its answer means: placed, not placed (429, refused
//! connection, refused lead) or unclear (reconciled with `GET /v2/calls`, never resent on
//! a guess).

use super::*;

/// A use of a caller ID recorded in the pool, to take back when its attempt placed no call.
struct TakenBack<'a> {
    from: Option<E164>,
    lead_key: &'a str,
    called: Option<E164>,
    at: DateTime<Utc>,
}

impl<S: Store> Shared<S> {
    /// The back-off after the `n`th failure in a row, jittered from the clock's low bits.
    pub(super) fn backoff(&self, n: u32) -> Duration {
        let jitter = (Utc::now().timestamp_subsec_nanos() % 1000) as f64 / 1000.0;
        crate::schedule::backoff(n, self.config.retry_base, self.config.retry_max, jitter)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn dispatch(
        self: Arc<Self>,
        account: &Arc<Account>,
        attempt_id: i64,
        lead: Lead,
        request: CallRequest,
        from: E164,
        at: DateTime<Utc>,
        permit: OwnedSemaphorePermit,
        committing_since: tokio::time::Instant,
    ) {
        let late = committing_since.elapsed();
        if late > crate::store::SEND_JITTER {
            // Stalled between the commit and the send (a busy machine, a slow store): sent
            // now, it could arrive bunched with later beats and be the account's 429. The
            // attempt did not happen; the lead goes again on a beat of its own.
            metrics::counter!("callroute_sends_late_total").increment(1);
            self.retries.sent_late.fetch_add(1, Ordering::Relaxed);
            let now = self.config.clock.now();
            let next = NotPlaced::Retry {
                due_at: now,
                reason: format!(
                    "not sent: the request would have left {} ms after its commit",
                    late.as_millis()
                ),
            };
            let use_ = TakenBack {
                from: Some(from),
                lead_key: &lead.key,
                called: Some(lead.phone),
                at,
            };
            let recorded = self
                .not_placed("an attempt not sent", attempt_id, &next, now, use_)
                .await;
            if let Err(e) = recorded {
                tracing::error!(lead = %lead.key, attempt_id, "cannot record an attempt not sent: {e}; it will be reconciled at the next start");
            }
            drop(permit);
            self.wake.notify_one();
            return;
        }
        let mut request = request;
        let mut result = self.send_call(account, &request).await;
        if let Err(ApiError::Rejected {
            status: 400,
            reason,
        }) = &result
            && let Some(zone) = request.lead_timezone.take()
        {
            // The zone is callroute's choice (derived from the lead's number or mapped from
            // its data), not the lead's fault: a 400 must not fail the lead for it. The call
            // was certainly not placed; the same attempt is sent again, on a beat of its
            // own, without the field.
            tracing::warn!(
                lead = %lead.key,
                "Synthflow refused the call request (HTTP 400: {reason}); sending it again without lead_timezone `{zone}`"
            );
            metrics::counter!("callroute_requests_resent_total", "without" => "lead_timezone")
                .increment(1);
            match self
                .store
                .reserve_pace(&account.name, account.pacing_interval)
                .await
            {
                Ok(wait) => self.sleep_or_stop(wait).await,
                Err(e) => {
                    tracing::warn!("cannot reserve a pacing beat: {e}; waiting one interval");
                    self.sleep_or_stop(account.pacing_interval).await;
                }
            }
            result = self.send_call(account, &request).await;
        }
        let outcome = match result {
            Ok(call_id) => {
                account.consecutive_429.store(0, Ordering::SeqCst);
                account
                    .consecutive_connect_failures
                    .store(0, Ordering::SeqCst);
                self.placed(
                    account,
                    attempt_id,
                    &lead.key,
                    &call_id,
                    Some(from),
                    Some(permit),
                )
                .await
            }
            Err(error) => {
                self.not_placed_or_unknown(
                    account,
                    attempt_id,
                    &lead,
                    &request,
                    from,
                    at,
                    error,
                    Some(permit),
                )
                .await
            }
        };
        if let Err(e) = outcome {
            tracing::error!(lead = %lead.key, attempt_id, "cannot record the attempt's result: {e}; it will be reconciled at the next start");
        }
    }

    /// Records that attempt `attempt_id` placed no call (until the store takes it, see
    /// `until_recorded`), then takes its use back from the pool. The use stays counted
    /// until the ledger says it was not placed: forgotten before, it would be a use the
    /// ledger holds and this daemon does not know (a commit's `Stale`).
    async fn not_placed(
        &self,
        what: &str,
        attempt_id: i64,
        next: &NotPlaced,
        now: DateTime<Utc>,
        use_: TakenBack<'_>,
    ) -> Result<(), StoreError> {
        let recorded = self
            .until_recorded(what, || {
                self.store.attempt_not_placed(attempt_id, next, now)
            })
            .await;
        if let Some(from) = use_.from {
            lock(&self.pool).forget(from, use_.lead_key, use_.called, use_.at);
        }
        recorded
    }

    /// Retries a write of what became of an attempt until the store takes it: a store away
    /// (restarting, connections cut) is waited for, so the lead does not stay `dialing`
    /// until the next start. Gives up only when the daemon stops (the next start, or a
    /// member taking over, reconciles the attempt).
    pub(super) async fn until_recorded<F, Fut>(
        &self,
        what: &str,
        mut write: F,
    ) -> Result<(), StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), StoreError>>,
    {
        let mut failures = 0;
        loop {
            match write().await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    failures += 1;
                    if self.stopping() {
                        return Err(e);
                    }
                    tracing::warn!("cannot record {what}: {e}; trying again");
                    self.sleep_or_stop(self.backoff(failures).min(Duration::from_secs(5)))
                        .await;
                }
            }
        }
    }

    pub(super) async fn placed(
        self: &Arc<Self>,
        account: &Arc<Account>,
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
        let now = self.config.clock.now();
        self.until_recorded("a placed call", || {
            self.store.attempt_placed(attempt_id, call_id, now)
        })
        .await?;
        self.event(
            lead_id,
            "placed",
            from.map(|f| f.to_string()),
            format!("call {call_id}"),
        );
        tokio::spawn(
            self.clone()
                .watch_call(account.clone(), call_id.to_string(), permit),
        );
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn not_placed_or_unknown(
        self: &Arc<Self>,
        account: &Arc<Account>,
        attempt_id: i64,
        lead: &Lead,
        request: &CallRequest,
        from: E164,
        at: DateTime<Utc>,
        error: ApiError,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<(), StoreError> {
        let now = self.config.clock.now();
        let next = match &error {
            ApiError::RateLimited(_) => {
                // A lone 429 (a call placed elsewhere on the account, a request that arrived
                // early) costs one pacing beat; only 429s in a row pause the account for
                // `retry_base`, doubling. The lead is not at fault: it goes when the pause ends.
                let in_a_row = account.consecutive_429.fetch_add(1, Ordering::SeqCst) + 1;
                let pause = if in_a_row == 1 {
                    account.pacing_interval
                } else {
                    self.backoff(in_a_row - 1)
                };
                let wait = chrono::Duration::from_std(pause).unwrap_or_default();
                // The pause is real time: it is the account's clock that counts.
                account
                    .paused_until_ms
                    .fetch_max((Utc::now() + wait).timestamp_millis(), Ordering::SeqCst);
                // Every daemon on the account pauses with this one.
                if let Err(e) = self.store.pause_account(&account.name, pause).await {
                    tracing::warn!("cannot share the pause: {e}");
                }
                let until = now + wait;
                metrics::counter!("callroute_rate_limited_total").increment(1);
                NotPlaced::Retry {
                    due_at: until,
                    reason: error.to_string(),
                }
            }
            ApiError::Connect(_) => {
                let in_a_row = account
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
                account.auth_failed.store(true, Ordering::SeqCst);
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
            // Server errors, timeouts, unreadable answers: the call may exist.
            unclear => {
                debug_assert!(unclear.call_may_exist());
                drop(permit);
                let attempt = Attempt {
                    id: attempt_id,
                    lead_id: lead.key.clone(),
                    model_id: request.model_id.clone(),
                    from_number: from.to_string(),
                    route: String::new(),
                    account: account.name.clone(),
                    at,
                    status: crate::store::AttemptStatus::Sent,
                    call_id: None,
                    to_number: Some(lead.phone.to_string()),
                };
                self.clone()
                    .reconcile(attempt, Some(request.phone.clone()))
                    .await;
                return Ok(());
            }
        };
        let use_ = TakenBack {
            from: Some(from),
            lead_key: &lead.key,
            called: Some(lead.phone),
            at,
        };
        self.not_placed("an attempt not placed", attempt_id, &next, now, use_)
            .await?;
        // Back in the queue: the loop may be idle with nothing else due.
        self.wake.notify_one();
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

    /// Whether a call Synthflow lists for the attempt's lead is the attempt's (a record
    /// that names no caller ID is taken as ours: the safe reading).
    fn is_ours(call: &crate::synthflow::CallRecord, attempt: &Attempt) -> bool {
        call.from_phone_number
            .as_deref()
            .is_none_or(|f| f == attempt.from_number)
    }

    /// Finds out whether an attempt without a clear answer placed a call: found → placed;
    /// certainly absent (two empty lookups, the last `absent_after` past the request's
    /// timeout) → back to the queue; lookup failing → left in doubt and retried.
    pub(super) async fn reconcile(self: Arc<Self>, attempt: Attempt, phone: Option<String>) {
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
        let account = self.account(&attempt.account);
        // Synthflow's records carry wall-clock times.
        let sent_at = self.config.clock.to_wall(attempt.at);
        // Before this, "no such call" may only mean "not yet": the API may still be acting on
        // the request it took. Absent is only believed from two empty lookups, the last one
        // started after it.
        let settled_at = sent_at
            + chrono::Duration::from_std(
                account.client.request_timeout() + self.config.absent_after,
            )
            .unwrap_or(chrono::TimeDelta::MAX);
        let mut empty_lookups = 0u32;
        let mut delay = self.config.reconcile_delay;
        // Never resend on a guess: keep asking until the lookup answers (or we stop; the next
        // start asks again).
        loop {
            self.sleep_or_stop(delay).await;
            if self.stopping() {
                return;
            }
            let since = sent_at - chrono::Duration::seconds(5);
            let asked_at = Utc::now();
            match account
                .client
                .find_calls(&attempt.model_id, &phone, since.timestamp_millis())
                .await
            {
                Ok(calls)
                    if !calls.iter().any(|c| Self::is_ours(c, &attempt))
                        && (asked_at < settled_at || empty_lookups == 0) =>
                {
                    empty_lookups += 1;
                    let settle = (settled_at - Utc::now()).to_std().unwrap_or_default();
                    delay = (delay * 2)
                        .min(self.config.retry_max)
                        .min(settle.max(self.config.reconcile_delay));
                    tracing::debug!(
                        attempt = attempt.id,
                        "no call found yet after an unclear answer; looking again in {delay:?}"
                    );
                }
                Ok(calls) => {
                    let ours = calls.iter().find(|c| Self::is_ours(c, &attempt));
                    let now = self.config.clock.now();
                    let result = match ours {
                        Some(call) => {
                            // The call is live whether or not a slot is free: follow it
                            // either way, so its end is recorded.
                            let permit = account.live.clone().try_acquire_owned().ok();
                            self.placed(
                                &account,
                                attempt.id,
                                &attempt.lead_id,
                                &call.call_id,
                                E164::parse(&attempt.from_number).ok(),
                                permit,
                            )
                            .await
                        }
                        None => {
                            let next = NotPlaced::Retry { due_at: now, reason: "no answer to the request, and no such call exists: sending again".into() };
                            self.event(
                                &attempt.lead_id,
                                "retry",
                                Some(attempt.from_number.clone()),
                                "call certainly absent after an unclear answer".into(),
                            );
                            let use_ = TakenBack {
                                from: E164::parse(&attempt.from_number).ok(),
                                lead_key: &attempt.lead_id,
                                called: called_of(&attempt.to_number),
                                at: attempt.at,
                            };
                            let result = self
                                .not_placed(
                                    "an attempt proved absent",
                                    attempt.id,
                                    &next,
                                    now,
                                    use_,
                                )
                                .await;
                            self.wake.notify_one();
                            result
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
}
