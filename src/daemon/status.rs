//! What the daemon shows of itself: live calls, the running rules, usage per number,
//! the gauges a scrape renders.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::*;

/// Everything `GET /v1/status` answers and `callroute status` shows: one type on both ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    /// Leads by state.
    pub queue: BTreeMap<String, u64>,
    /// Held leads by reason, most first.
    pub held: Vec<HeldView>,
    /// Deferred leads by the code of their reason, most first.
    pub deferred: Vec<HeldView>,
    /// Rejected leads by the code of their reason (`suppressed`, `consent_missing`, ...).
    #[serde(default)]
    pub rejected: Vec<HeldView>,
    /// The suppression lists the rules check, and the store's.
    #[serde(default)]
    pub suppression: Vec<ListView>,
    pub auth_failed: bool,
    /// Why dialing is paused because Synthflow cannot be read, if it is.
    pub api_problem: Option<String>,
    /// Per agent, numbers the rules give it that are not attached upstream.
    pub not_attached: BTreeMap<String, Vec<String>>,
    pub live_calls: usize,
    /// The first account (the only one, in most configurations).
    pub account: AccountView,
    /// Every account, each paced and limited on its own.
    pub accounts: Vec<AccountView>,
    /// `sqlite` or `postgres`.
    pub store: String,
    /// Why dialing is paused because the store does not answer, if it is.
    pub store_problem: Option<String>,
    /// Every daemon working the store (one, on SQLite).
    pub members: Vec<super::MemberView>,
    /// Decisions this daemon made again because a commit refused them, and sends dropped.
    pub retries: super::RetryCounts,
    pub rules: RulesView,
    pub numbers: Vec<NumberView>,
    /// The last decisions acted on, newest first, each with its trace.
    pub decisions: Vec<DecisionView>,
}

/// A suppression list: where it comes from, how many entries, its version, whom it binds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListView {
    pub name: String,
    /// The file, or `store`.
    pub source: String,
    pub entries: usize,
    pub version: String,
    /// `every campaign`, or the campaigns and brands it is scoped to.
    pub applies_to: String,
}

/// The account's limits and how much of them is in use.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountView {
    pub name: String,
    pub attempts_per_second: u32,
    pub concurrency: u32,
    /// Calls placed in the last minute, over every number.
    pub calls_last_minute: u32,
    /// Calls this daemon has live on the account.
    pub live_calls: usize,
    /// Call requests sent and not answered yet (a slow or hung API shows here).
    #[serde(default)]
    pub awaiting_answer: usize,
    /// Synthflow refused the account's key: its leads wait, other accounts dial on.
    pub auth_failed: bool,
}

/// One decision acted on: what it was and the engine's trace (as `callroute explain` prints
/// it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecisionView {
    pub at: DateTime<Utc>,
    pub lead: String,
    pub campaign: String,
    pub outcome: String,
    /// The caller ID and how it was found, or the reason.
    pub summary: String,
    pub trace: String,
}

/// How many decisions the status keeps.
pub const RECENT_DECISIONS: usize = 100;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldView {
    pub reason: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RulesView {
    pub hash: String,
    pub loaded_at: DateTime<Utc>,
    pub campaigns: usize,
    pub numbers: usize,
    pub files_on_disk_broken: bool,
    pub last_reload: Option<ReloadRecord>,
    /// How the daemon notices edits of the rules directory (absent: it does not watch).
    #[serde(default)]
    pub watching: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NumberView {
    pub number: String,
    pub calls_24h: u32,
    pub last_used: Option<DateTime<Utc>>,
    /// Each window that is set, as `(name, value)`, e.g. `("per_minute", "2")`.
    pub limits: Vec<(String, String)>,
    /// Every counted window that is set: uses in it now against its limit.
    pub windows: Vec<WindowUseView>,
    /// Its recent call outcomes, if it has any.
    pub health: Option<super::health::HealthView>,
    /// Why and until when it rests, if it does.
    pub resting: Option<crate::health::Rest>,
    pub at_limit: Vec<FullWindowView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowUseView {
    pub window: String,
    pub used: u32,
    pub limit: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FullWindowView {
    pub window: String,
    pub used: u32,
    pub limit: String,
    pub frees_at: Option<DateTime<Utc>>,
}

impl fmt::Display for StatusView {
    /// The terminal view.
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rules = &self.rules;
        writeln!(
            out,
            "rules     {} loaded {}{}",
            rules.hash,
            crate::format_instant(rules.loaded_at),
            if rules.files_on_disk_broken {
                "  !! files on disk are BROKEN; running the last good rules"
            } else {
                ""
            }
        )?;
        if let Some(watching) = &rules.watching {
            writeln!(out, "watch     {watching}")?;
        }
        if let Some(last) = &rules.last_reload {
            writeln!(
                out,
                "reload    {} by {} at {}",
                last.outcome.result(),
                last.trigger,
                crate::format_instant(last.at)
            )?;
            if let ReloadOutcome::Failed { errors } | ReloadOutcome::Waiting { errors } =
                &last.outcome
            {
                for error in errors {
                    writeln!(out, "          {error}")?;
                }
            }
        }
        writeln!(
            out,
            "account   {} calls in the last minute over every number",
            self.account.calls_last_minute,
        )?;
        for account in &self.accounts {
            writeln!(
                out,
                "account   `{}`: limit {}/s; {} of {} live calls{}{}",
                account.name,
                account.attempts_per_second,
                account.live_calls,
                account.concurrency,
                match account.awaiting_answer {
                    0 => String::new(),
                    n => format!(", {n} requests awaiting Synthflow's answer"),
                },
                if account.auth_failed {
                    "; PAUSED: Synthflow refused its API key"
                } else {
                    ""
                }
            )?;
        }
        if let Some(problem) = &self.store_problem {
            writeln!(
                out,
                "dialing   PAUSED: the store does not answer: {problem}"
            )?;
        }
        let live_members: Vec<&super::MemberView> =
            self.members.iter().filter(|m| m.state == "live").collect();
        writeln!(
            out,
            "store     {}; {} daemon{} live",
            self.store,
            live_members.len(),
            if live_members.len() == 1 { "" } else { "s" }
        )?;
        for member in &self.members {
            writeln!(
                out,
                "member    {}{} on {} pid {} v{}, rules {}: {} (heartbeat {})",
                member.id,
                if member.this { " (this one)" } else { "" },
                member.host,
                member.pid,
                member.version,
                member.rules_hash,
                member.state,
                crate::format_instant(member.heartbeat_at)
            )?;
        }
        let r = &self.retries;
        if r.stale + r.account_busy + r.paced + r.sent_late > 0 {
            writeln!(
                out,
                "retries   decided again: {} on another daemon's use of the number, {} at the account's live-call limit, {} at its pace; {} not sent (late)",
                r.stale, r.account_busy, r.paced, r.sent_late
            )?;
        }
        let hashes: std::collections::BTreeSet<&str> =
            live_members.iter().map(|m| m.rules_hash.as_str()).collect();
        if hashes.len() > 1 {
            writeln!(
                out,
                "WARNING   daemons run different rules ({}): reload every one of them",
                hashes.into_iter().collect::<Vec<_>>().join(", ")
            )?;
        }
        if let Some(problem) = &self.api_problem {
            writeln!(out, "dialing   PAUSED: {problem}")?;
        }
        for (agent, numbers) in &self.not_attached {
            writeln!(
                out,
                "pool      agent `{agent}`: {} in the rules but NOT attached upstream (never dialed): {}",
                numbers.len(),
                numbers.join(", ")
            )?;
        }
        let queue: Vec<String> = self
            .queue
            .iter()
            .map(|(state, n)| format!("{state} {n}"))
            .collect();
        writeln!(out, "queue     {}", queue.join(", "))?;
        for held in &self.held {
            writeln!(out, "held      {:>6}  {}", held.count, held.reason)?;
        }
        for deferred in &self.deferred {
            if deferred.reason == "cadence" {
                writeln!(
                    out,
                    "waiting   {:>6}  cadence: the next attempt of their campaign's cadence (`explain --history` says when and why)",
                    deferred.count
                )?;
            } else {
                writeln!(out, "deferred  {:>6}  {}", deferred.count, deferred.reason)?;
            }
        }
        for rejected in &self.rejected {
            writeln!(out, "rejected  {:>6}  {}", rejected.count, rejected.reason)?;
        }
        for list in &self.suppression {
            writeln!(
                out,
                "list      {:<16} {:>9} entries  {} (version {}); applies to {}",
                list.name, list.entries, list.source, list.version, list.applies_to
            )?;
        }
        writeln!(
            out,
            "\n{:<14} {:>9}  {:<20} limits",
            "number", "calls 24h", "last used"
        )?;
        for number in &self.numbers {
            let windows: Vec<String> = number
                .limits
                .iter()
                .map(|(window, value)| format!("{window} {value}"))
                .collect();
            let full: Vec<String> = number
                .at_limit
                .iter()
                .map(|hit| {
                    format!(
                        "{} FULL until {}",
                        hit.window,
                        hit.frees_at
                            .map_or("never".to_string(), crate::format_instant)
                    )
                })
                .collect();
            let health = number
                .health
                .as_ref()
                .and_then(|h| {
                    h.last_calls.answer_rate().map(|rate| {
                        format!(
                            "  answered {:.0}% of its last {} ({} short)",
                            rate * 100.0,
                            h.last_calls.placed,
                            h.last_calls.short
                        )
                    })
                })
                .unwrap_or_default();
            let resting = number
                .resting
                .as_ref()
                .map(|r| {
                    format!(
                        "  RESTING until {} ({}): {}",
                        crate::format_instant(r.until),
                        r.source,
                        r.reason
                    )
                })
                .unwrap_or_default();
            writeln!(
                out,
                "{:<14} {:>9}  {:<20} {}{}{health}{resting}",
                number.number,
                number.calls_24h,
                number
                    .last_used
                    .map_or("-".to_string(), crate::format_instant),
                windows.join(", "),
                if full.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", full.join("; "))
                }
            )?;
        }
        const SHOWN: usize = 10;
        if !self.decisions.is_empty() {
            writeln!(
                out,
                "\nlast decisions (newest first; {} kept, with traces, in /v1/status):",
                self.decisions.len()
            )?;
        }
        for decision in self.decisions.iter().take(SHOWN) {
            writeln!(
                out,
                "  {} {:<7} {} ({}): {}",
                crate::format_instant(decision.at),
                decision.outcome,
                decision.lead,
                decision.campaign,
                decision.summary
            )?;
        }
        Ok(())
    }
}

/// Today's warm-up cap of a number still warming up (from `since`, else its first use).
fn warmup_cap(
    info: &crate::rules::NumberInfo,
    pool: &PoolState,
    now: DateTime<Utc>,
) -> Option<u32> {
    let warmup = info.limits.warmup?;
    let first_day = pool.first_day(info)?;
    let today = now.with_timezone(&info.day_zone).date_naive();
    warmup.cap((today - first_day).num_days())
}

impl<S: Store> Shared<S> {
    /// Keeps `decision` among the recent ones the status shows.
    pub(super) fn note_decision(
        &self,
        lead: &Lead,
        at: DateTime<Utc>,
        decision: &Decision,
        trace: &crate::engine::Trace,
    ) {
        let summary = match decision {
            Decision::Dial {
                from_phone_number,
                tier,
                route,
                ..
            } => format!(
                "{from_phone_number} by {} on route {route}",
                crate::engine::variant_name(tier)
            ),
            Decision::Defer { until, reason } => format!(
                "until {}: {}",
                crate::format_instant(*until),
                reason.message
            ),
            Decision::Hold { reason } | Decision::Reject { reason } => reason.message.clone(),
        };
        let view = DecisionView {
            at,
            lead: lead.key.clone(),
            campaign: lead.campaign.clone(),
            outcome: decision.outcome().to_string(),
            summary,
            trace: crate::explain::to_text(decision, trace),
        };
        let mut decisions = lock(&self.decisions);
        if decisions.len() == RECENT_DECISIONS {
            decisions.pop_front();
        }
        decisions.push_back(view);
    }
}

impl<S: Store> Daemon<S> {
    /// Calls placed and not yet ended.
    pub fn live_calls(&self) -> usize {
        self.shared.accounts.iter().map(|a| a.live_calls()).sum()
    }

    /// Sets the gauges that describe state, just before a scrape renders them.
    pub async fn update_gauges(&self) {
        metrics::gauge!("callroute_live_calls").set(self.live_calls() as f64);
        if let Ok(counts) = self.shared.store.counts().await {
            for (state, n) in counts {
                metrics::gauge!("callroute_leads", "state" => state.as_str()).set(n as f64);
            }
        }
        if let Ok(deferred) = self.shared.store.deferred_reasons().await {
            let waiting = deferred
                .iter()
                .find(|(code, _)| code == "cadence")
                .map_or(0, |(_, n)| *n);
            metrics::gauge!("callroute_cadence_waiting").set(waiting as f64);
        }
        if let Ok((backlog, oldest)) = self.shared.store.outbox_backlog().await {
            metrics::gauge!("callroute_results_undelivered").set(backlog as f64);
            let age = oldest.map_or(0.0, |t| {
                (self.now() - t).num_milliseconds().max(0) as f64 / 1000.0
            });
            metrics::gauge!("callroute_results_oldest_undelivered_seconds").set(age);
        }
    }

    /// Everything the status shows, as of now.
    pub async fn status(&self) -> Result<StatusView, StoreError> {
        let queue = self
            .shared
            .store
            .counts()
            .await?
            .into_iter()
            .map(|(state, n)| (state.as_str().to_string(), n))
            .collect();
        let by_reason = |counts: Vec<(String, u64)>| {
            counts
                .into_iter()
                .map(|(reason, count)| HeldView { reason, count })
                .collect()
        };
        let held = by_reason(self.shared.store.held_reasons().await?);
        let deferred = by_reason(self.shared.store.deferred_reasons().await?);
        let rejected = by_reason(self.shared.store.rejected_reasons().await?);
        let suppression = self.suppression_lists();
        let members = self.members().await.unwrap_or_default();
        let rules = self.shared.rules.load();
        let reload = lock(&self.shared.reload_status).clone();
        let minute_ago = self.now() - chrono::Duration::minutes(1);
        let accounts: Vec<AccountView> = self
            .shared
            .accounts
            .iter()
            .map(|a| AccountView {
                name: a.name.clone(),
                attempts_per_second: a.attempts_per_second,
                concurrency: a.concurrency,
                calls_last_minute: self.calls_since(minute_ago, Some(&a.name)),
                live_calls: a.live_calls(),
                awaiting_answer: a.awaiting(),
                auth_failed: a.auth_failed.load(Ordering::SeqCst),
            })
            .collect();
        Ok(StatusView {
            queue,
            held,
            deferred,
            rejected,
            suppression,
            auth_failed: self.auth_failed(),
            api_problem: self.api_problem(),
            not_attached: self
                .unattached()
                .into_iter()
                .map(|(agent, numbers)| (agent, numbers.iter().map(ToString::to_string).collect()))
                .collect(),
            live_calls: self.live_calls(),
            account: AccountView {
                calls_last_minute: self.calls_since(minute_ago, None),
                ..accounts[0].clone()
            },
            accounts,
            store: self.shared.store.engine().to_string(),
            store_problem: lock(&self.shared.store_problem).clone(),
            members,
            retries: self.retries(),
            rules: RulesView {
                hash: rules.hash_text(),
                loaded_at: reload.loaded_at,
                campaigns: rules.campaigns().count(),
                numbers: rules.numbers().count(),
                files_on_disk_broken: reload.disk_broken,
                last_reload: reload.last,
                watching: reload.watching,
            },
            numbers: self.usage(self.now()),
            decisions: lock(&self.shared.decisions).iter().rev().cloned().collect(),
        })
    }

    /// Calls placed since `since` from the numbers of the running rules: all of them, or
    /// those of the agents on `account`.
    fn calls_since(&self, since: DateTime<Utc>, account: Option<&str>) -> u32 {
        let rules = self.shared.rules.load();
        let numbers: Vec<E164> = match account {
            None => rules.numbers().map(|info| info.number).collect(),
            Some(name) => {
                let mut numbers: Vec<E164> = rules
                    .agents()
                    .filter(|agent| {
                        self.shared.account_of_model(&rules, &agent.model_id).name == name
                    })
                    .flat_map(|agent| rules.numbers_for_agent(&agent.model_id).iter().copied())
                    .collect();
                numbers.sort_unstable();
                numbers.dedup();
                numbers
            }
        };
        let pool = lock(&self.shared.pool);
        numbers
            .iter()
            .filter_map(|&number| pool.number_usage(number))
            .map(|usage| usage.uses_since(since))
            .sum()
    }

    /// What the engine would decide for `lead` at `now` with the live rules and pool.
    pub fn explain(&self, lead: &Lead, now: DateTime<Utc>) -> (Decision, crate::engine::Trace) {
        let pool = lock(&self.shared.pool);
        decide(&self.shared.rules.load(), lead, &pool, now)
    }

    /// Per caller ID: calls in the last 24 h, last use, and every limit window full at `now`.
    pub fn usage(&self, now: DateTime<Utc>) -> Vec<NumberView> {
        let rules = self.shared.rules.load();
        // Before the pool's lock: a call's end takes the outcomes' lock, then the pool's.
        let mut health = self.shared.health_views(now);
        let pool = lock(&self.shared.pool);
        rules
            .numbers()
            .map(|info| {
                let usage = pool.number_usage(info.number);
                let limits = info.limits;
                NumberView {
                    health: health.remove(&info.number),
                    resting: pool.rest_of(info.number, now).cloned(),
                    number: info.number.to_string(),
                    calls_24h: usage.map_or(0, |u| u.uses_24h(now)),
                    last_used: usage.and_then(|u| u.last_used()),
                    limits: limits
                        .written()
                        .into_iter()
                        .map(|(window, value)| (window.to_string(), value))
                        .collect(),
                    windows: [
                        (
                            "per_minute",
                            limits.per_minute,
                            chrono::Duration::minutes(1),
                        ),
                        ("per_hour", limits.per_hour, chrono::Duration::hours(1)),
                        ("per_24h", limits.per_24h, chrono::Duration::hours(24)),
                    ]
                    .into_iter()
                    .filter_map(|(window, limit, width)| {
                        Some(WindowUseView {
                            window: window.to_string(),
                            used: usage.map_or(0, |u| u.uses_since(now - width)),
                            limit: limit?,
                        })
                    })
                    .chain(limits.per_day.map(|limit| WindowUseView {
                        window: "per_day".to_string(),
                        used: usage.map_or(0, |u| u.uses_today(info.day_zone, now)),
                        limit,
                    }))
                    .chain(warmup_cap(info, &pool, now).map(|limit| WindowUseView {
                        window: "warmup".to_string(),
                        used: usage.map_or(0, |u| u.uses_today(info.day_zone, now)),
                        limit,
                    }))
                    .collect(),
                    at_limit: pool
                        .hits(info, &limits, now)
                        .into_iter()
                        .map(|hit| FullWindowView {
                            window: hit.window.name().to_string(),
                            used: hit.used,
                            limit: hit.limit,
                            frees_at: hit.frees_at,
                        })
                        .collect(),
                }
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
        lock(&self.shared.api_problem).clone().or_else(|| {
            let silent: Vec<String> = self
                .shared
                .accounts
                .iter()
                .filter_map(|a| a.silence_text())
                .collect();
            (!silent.is_empty()).then(|| silent.join("; "))
        })
    }

    /// True once Synthflow refused a key: that account's dialing is paused, the queue intact.
    pub fn auth_failed(&self) -> bool {
        self.shared
            .accounts
            .iter()
            .any(|a| a.auth_failed.load(Ordering::SeqCst))
    }
}
