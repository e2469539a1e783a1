//! Prometheus metrics. Counters and histograms are recorded where things happen (the
//! `metrics` macros are no-ops until `install` runs); gauges that describe state (queue,
//! live calls) are set when `/metrics` is scraped. Lead phone numbers never become labels;
//! caller IDs (a bounded set from the rules) may.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the process-wide recorder (once; later calls return the same handle).
pub fn install() -> Option<&'static PrometheusHandle> {
    if HANDLE.get().is_none() {
        let built = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| b.install_recorder());
        match built {
            Ok(handle) => {
                let _ = HANDLE.set(handle);
                describe();
            }
            Err(e) => tracing::warn!("metrics disabled: {e}"),
        }
    }
    HANDLE.get()
}

/// The Prometheus text, if the recorder is installed. `rules_hash` is rendered here rather
/// than recorded: the recorder keeps a series for every label value it has seen, and only
/// the running rules' hash may be exported.
pub fn render(rules_hash: &str) -> Option<String> {
    HANDLE.get().map(|handle| {
        let mut text = handle.render();
        text.push_str(&format!(
            "# HELP callroute_rules_info Content hash of the running rules (value 1).\n# TYPE callroute_rules_info gauge\ncallroute_rules_info{{hash=\"{rules_hash}\"}} 1\n"
        ));
        text
    })
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "callroute_build_info",
        "Version of the running callroute (value 1)."
    );
    describe_gauge!("callroute_leads", "Leads in the queue by state.");
    describe_gauge!(
        "callroute_number_answer_ratio",
        "Share of a caller ID's last calls (its health policy's last_calls) that were answered."
    );
    describe_gauge!(
        "callroute_number_resting",
        "1 while a caller ID rests (health policy or by hand), else 0."
    );
    describe_counter!(
        "callroute_number_rests_total",
        "Rests started, by source (auto: the health policy)."
    );
    describe_counter!(
        "callroute_decisions_total",
        "Routing decisions by campaign, route, outcome and reason."
    );
    describe_counter!(
        "callroute_cadence_redials_total",
        "Redials a cadence scheduled when a call ended, by the attempt they will be (9: 9 or more)."
    );
    describe_counter!(
        "callroute_results_deliveries_total",
        "Deliveries of results (the outbox) to `results.url`, by HTTP class (2xx, 4xx, 5xx) or `error`."
    );
    describe_gauge!(
        "callroute_results_undelivered",
        "Results (outbox events) not yet delivered."
    );
    describe_gauge!(
        "callroute_results_oldest_undelivered_seconds",
        "Age of the oldest result not yet delivered (0: none waiting)."
    );
    describe_gauge!(
        "callroute_cadence_waiting",
        "Leads waiting for the next attempt of their campaign's cadence."
    );
    describe_counter!(
        "callroute_calls_placed_total",
        "Calls placed, by caller ID."
    );
    describe_counter!(
        "callroute_limit_hits_total",
        "Times a caller ID was passed over because a limit window was full."
    );
    describe_histogram!(
        "callroute_api_request_duration_seconds",
        Unit::Seconds,
        "Synthflow API request latency by endpoint."
    );
    describe_counter!(
        "callroute_api_errors_total",
        "Synthflow API errors by endpoint and class."
    );
    describe_gauge!("callroute_live_calls", "Calls placed and not yet ended.");
    describe_histogram!(
        "callroute_call_slot_seconds",
        Unit::Seconds,
        "How long each placed call held a live-call slot."
    );
    describe_counter!(
        "callroute_call_ends_total",
        "Calls seen to end, by how: webhook, poll, or gave_up after 3 h."
    );
    describe_histogram!(
        "callroute_call_end_seen_late_seconds",
        Unit::Seconds,
        "For calls whose end a poll saw: time from the call's end to the poll (slot time lost)."
    );
    describe_histogram!(
        "callroute_pacing_wait_seconds",
        Unit::Seconds,
        "Time a call waited for the account's attempts-per-second pacing."
    );
    describe_gauge!(
        "callroute_pool_numbers",
        "Numbers attached to each agent, as last read from Synthflow."
    );
    describe_gauge!(
        "callroute_numbers_not_attached",
        "Numbers the rules give an agent that are not attached to it upstream (never dialed)."
    );
    describe_counter!(
        "callroute_rate_limited_total",
        "POST /v2/calls answered 429 (the call was not placed)."
    );
    describe_counter!(
        "callroute_decisions_retried_total",
        "Decisions made again because the store refused the commit (why: stale_usage, account_busy, pace, suppressed)."
    );
    describe_counter!(
        "callroute_opt_outs_total",
        "Numbers put on a suppression list because a call's outcome matched the rules' opt_out."
    );
    describe_gauge!(
        "callroute_suppression_entries",
        "Entries of the suppression lists kept in the store."
    );
    describe_counter!(
        "callroute_sends_late_total",
        "Attempts committed but not sent: the request would have left too late after its commit."
    );
    describe_counter!(
        "callroute_requests_resent_total",
        "Call requests the API refused (400) for a field callroute chose, sent again without it (label `without`: the field)."
    );
    describe_counter!(
        "callroute_takeovers_total",
        "Daemons whose work this daemon took over after their lease expired (or their process died)."
    );
    describe_counter!(
        "callroute_lease_lost_total",
        "Times this daemon found its own lease taken over (it had stalled past the lease) and joined again."
    );
    describe_counter!(
        "callroute_store_errors_total",
        "Dialing-loop turns that failed on the store (dialing pauses until it answers)."
    );
    describe_counter!(
        "callroute_admin_connections_refused_total",
        "Admin connections closed at accept because admin.max_connections were open."
    );
    describe_gauge!(
        "callroute_rules_reload_success",
        "1 if the rules files on disk loaded at the last reload, 0 if they are broken."
    );
    describe_gauge!(
        "callroute_rules_last_reload_timestamp_seconds",
        "When the last reload was attempted (Unix time)."
    );
    metrics::gauge!("callroute_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}
