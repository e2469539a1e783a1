//! Compliance in the daemon: the store-kept suppression lists in the engine's view (read at
//! start, again whenever another process changes them), the commit-time check that catches
//! a number listed after its lead was decided, opt-outs from call outcomes, and the proof
//! kept with every attempt.

use serde_json::{Value, json};

use super::*;
use crate::compliance::{ListSource, StoredEntry};
use crate::store::{AuditEntry, SuppressionGuard};

impl<S: Store> Shared<S> {
    /// Reads every store-kept suppression entry into the engine's view.
    pub(super) async fn reload_suppressions(&self) -> Result<(), StoreError> {
        let version = self.store.suppression_version().await?;
        let entries = self.store.suppressions(None).await?;
        let count = entries.len();
        lock(&self.pool).set_suppressed(entries);
        self.suppression_read.store(version, Ordering::SeqCst);
        metrics::gauge!("callroute_suppression_entries", "list" => "store").set(count as f64);
        Ok(())
    }

    /// Reads the store-kept lists again if another process (`callroute suppress`, another
    /// daemon's opt-out) changed them since they were last read.
    pub(super) async fn refresh_suppressions(&self) {
        match self.store.suppression_version().await {
            Ok(version) if version != self.suppression_read.load(Ordering::SeqCst) => {
                if let Err(e) = self.reload_suppressions().await {
                    tracing::error!("cannot read the store's suppression lists: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!("cannot read the store's suppression lists: {e}"),
        }
    }

    /// What the commit checks about the lead's number: that no store-kept list that binds
    /// this lead holds it (lists the rules scope away from the lead's campaign and brand
    /// are exempt).
    pub(super) fn suppression_guard(
        rules: &RuleSet,
        lead: &Lead,
        now: DateTime<Utc>,
    ) -> SuppressionGuard {
        let brand = rules
            .campaign(&lead.campaign)
            .map_or(lead.brand.as_deref(), |c| c.brand_of(lead));
        SuppressionGuard {
            number: lead.phone.to_string(),
            exempt: rules
                .compliance
                .lists
                .iter()
                .filter(|l| !l.applies(&lead.campaign, brand))
                .map(|l| l.name.clone())
                .collect(),
            now,
        }
    }

    /// A call ended with `fields` (the webhook's body or the call record): if the rules'
    /// `opt_out` matches them, the lead's number goes on the opt-out list at once, with the
    /// call id as evidence. Written until the store takes it, or until the daemon stops
    /// (logged as an error; a webhook sent again writes it then).
    pub(super) async fn check_opt_out(&self, call_id: &str, fields: &Value) {
        let rules = self.rules.load_full();
        let Some(opt_out) = &rules.compliance.opt_out else {
            return;
        };
        let Some(matched) = opt_out.matches(&crate::compliance::outcome_fields(fields)) else {
            return;
        };
        let lead = match self.store.lead_of_call(call_id).await {
            Ok(Some(lead)) => lead,
            Ok(None) => {
                tracing::warn!(call_id, %matched, "an opt-out for a call that is not ours");
                return;
            }
            Err(e) => {
                tracing::error!(call_id, "cannot find the lead of an opt-out: {e}");
                return;
            }
        };
        let Some(number) = lead.raw.phone.as_deref().and_then(|p| E164::parse(p).ok()) else {
            return;
        };
        let evidence = format!("call {call_id} (lead {})", lead.id);
        let known = lock(&self.pool)
            .suppressed(number)
            .iter()
            .any(|e| e.list == opt_out.list && e.evidence.as_deref() == Some(evidence.as_str()));
        if known {
            return; // the webhook and a poll both saw it
        }
        let now = self.config.clock.now();
        let entry = StoredEntry {
            number,
            list: opt_out.list.clone(),
            reason: format!("opt-out during the call: {matched}"),
            added_by: "opt-out".into(),
            added_at: now,
            evidence: Some(evidence),
            expires: None,
        };
        let audit = AuditEntry {
            at: now,
            actor: "daemon".into(),
            action: "suppress".into(),
            subject: number.to_string(),
            detail: format!(
                "list `{}`: {}; evidence {}",
                entry.list,
                entry.reason,
                entry.evidence.as_deref().unwrap_or_default()
            ),
        };
        // Into the engine's view once the store has it: a webhook sent again (after a
        // request cut while the store was away) then writes it again, rather than being
        // taken for one already recorded.
        let written = self
            .until_recorded("an opt-out", || async {
                self.store
                    .suppress(std::slice::from_ref(&entry), &audit)
                    .await
                    .map(|_| ())
            })
            .await;
        match written {
            Ok(()) => {
                lock(&self.pool).add_suppressed(entry.clone());
                metrics::counter!("callroute_opt_outs_total", "list" => entry.list.clone())
                    .increment(1);
                tracing::warn!(
                    lead = %lead.id,
                    call_id,
                    list = %entry.list,
                    %matched,
                    "opt-out: the number is suppressed from now on"
                );
            }
            Err(e) => tracing::error!(call_id, "cannot record an opt-out: {e}"),
        }
    }
}

impl<S: Store> Daemon<S> {
    /// The suppression lists the running rules check, and the store's (for the status).
    pub(super) fn suppression_lists(&self) -> Vec<status::ListView> {
        let rules = self.shared.rules.load();
        let pool = lock(&self.shared.pool);
        let mut store_counts: std::collections::BTreeMap<String, usize> = Default::default();
        for entry in pool.suppressed_entries() {
            *store_counts.entry(entry.list.clone()).or_default() += 1;
        }
        let mut views = Vec::new();
        for rule in &rules.compliance.lists {
            let applies_to = match (&rule.campaigns, &rule.brands) {
                (None, None) => "every campaign".to_string(),
                (campaigns, brands) => [
                    campaigns
                        .as_ref()
                        .map(|c| format!("campaigns {}", c.join(", "))),
                    brands.as_ref().map(|b| format!("brands {}", b.join(", "))),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; "),
            };
            let (source, entries) = match &rule.source {
                ListSource::File { path, list, .. } => (path.display().to_string(), list.len()),
                ListSource::Store => (
                    "store".to_string(),
                    store_counts.remove(&rule.name).unwrap_or(0),
                ),
            };
            views.push(status::ListView {
                name: rule.name.clone(),
                source,
                entries,
                version: rule.version(),
                applies_to,
            });
        }
        for (name, entries) in store_counts {
            views.push(status::ListView {
                name,
                source: "store".into(),
                entries,
                version: "store".into(),
                applies_to: "every campaign (not named in the rules)".into(),
            });
        }
        views
    }
}

/// What made a call lawful at the instant it was decided: kept with its ledger row.
pub(super) fn proof(
    rules: &RuleSet,
    lead: &Lead,
    trace: &crate::engine::Trace,
    decision: &Decision,
) -> String {
    let (number, tier, route) = match decision {
        Decision::Dial {
            from_phone_number,
            tier,
            route,
            ..
        } => (
            Some(from_phone_number.to_string()),
            Some(crate::engine::variant_name(tier)),
            Some(route.clone()),
        ),
        _ => (None, None, None),
    };
    json!({
        "rules_hash": rules.hash_text(),
        "decided_at": trace.now.map(crate::format_instant),
        "lead": {
            "id": lead.key,
            "phone": lead.phone.to_string(),
            "campaign": lead.campaign,
            "consent_at": lead.consent_at.map(crate::format_instant),
            "consent_source": lead.consent_source,
        },
        "caller_id": {"number": number, "picked_by": tier, "route": route},
        "purpose": rules.campaign(&lead.campaign).map(|c| c.purpose),
        "states": trace.states,
        "calling_window": trace.calling_hours,
        "consent": trace.consent,
        "attempts": trace.attempt_counts,
        "lists": trace.suppression,
        "tables": rules.compliance.tables,
    })
    .to_string()
}
