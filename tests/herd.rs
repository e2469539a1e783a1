//! A queue far larger than the pool can serve: leads deferred because every number is at a
//! limit come due one account-pace apart, not all at the instant a number frees, and a lead
//! deferred again for the same reason costs no log line at the default level.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callroute::daemon::{Daemon, DaemonConfig};
use callroute::rules::compile_sources;
use callroute::store::sqlite::SqliteStore;
use callroute::store::{LeadState, Store};
use callroute::synthflow::simulator::Simulator;

/// Two numbers, each usable every 300 ms: about 6 calls a second for 400 leads.
const RULES: &str = "agents: { a: { model_id: m-1 } }\nlimits: { default: { min_gap: 300ms } }\nnumbers:\n  \"+14155550100\": {}\n  \"+12125550107\": {}\ncalling_hours:\n  default: { days: [mon, tue, wed, thu, fri, sat, sun], start: \"00:00\", end: \"24:00\" }\nstate_laws: false\ncampaigns:\n  c:\n    agent: a\n    purpose: informational\n    routes:\n      - numbers: all\n";
const LEADS: usize = 400;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_of_deferred_leads_comes_due_at_the_account_pace() {
    let log = Captured::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_env_filter("callroute=info")
        .with_writer(move || writer.clone())
        .init();

    let sim = Simulator::new(common::sim_config(&["+14155550100", "+12125550107"]));
    let base = sim.start_local().await.unwrap();
    let rules = Arc::new(compile_sources(&[(Path::new("r.yaml"), RULES)]).0.unwrap());
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    let leads: Vec<_> = (0..LEADS)
        .map(|i| {
            (
                format!("L{i}"),
                common::raw_lead(&format!("+1305555{:04}", 1000 + i), "c"),
            )
        })
        .collect();
    store.enqueue(&leads, chrono::Utc::now()).await.unwrap();
    let config = DaemonConfig {
        attempts_per_second: 50,
        concurrency: 50,
        poll_interval: Duration::from_millis(50),
        ..DaemonConfig::default()
    };
    let daemon = Arc::new(
        Daemon::start(store, rules, common::client(&base), config)
            .await
            .unwrap(),
    );
    let running = daemon.spawn();
    tokio::time::sleep(Duration::from_secs(3)).await;
    running.stop().await.unwrap();

    let events = daemon.events();
    let decisions = events
        .iter()
        .filter(|e| matches!(e.outcome.as_str(), "defer" | "placed"))
        .count();
    let placed = sim.log().len();
    // Every lead is decided once, then about once more when it comes due; a herd would
    // decide every waiting lead again each time a number frees (10 times a second here).
    assert!(
        decisions < 3 * LEADS,
        "{decisions} decisions for {LEADS} leads and {placed} calls in 3 s"
    );
    assert!(placed >= 12, "only {placed} calls placed");

    // The deferred leads are due at distinct instants.
    let mut due = Vec::new();
    for i in 0..LEADS {
        let lead = daemon
            .store()
            .lead(&format!("L{i}"))
            .await
            .unwrap()
            .unwrap();
        if lead.state == LeadState::Deferred {
            due.push(lead.due_at);
        }
    }
    let deferred = due.len();
    due.sort();
    due.dedup();
    assert_eq!(due.len(), deferred, "equal due times: a herd in waiting");

    // At the default level, one line per change of state: not one per re-decision.
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let lines = text.lines().count();
    assert!(
        lines <= LEADS + 2 * placed + 20,
        "{lines} log lines for {LEADS} leads and {placed} calls"
    );
}
