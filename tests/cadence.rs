//! Redials by outcome, end to end: a daemon on a fast clock against the simulator, where
//! nobody answers. Each lead gets exactly its cadence's attempts, each from a caller ID it
//! has not seen while another is eligible, and then ends with its last outcome.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use callroute::clock::Clock;
use callroute::daemon::{Daemon, DaemonConfig};
use callroute::rules::load_dir;
use callroute::store::intake;
use callroute::store::postgres::PgStore;
use callroute::store::sqlite::SqliteStore;
use callroute::store::{LeadState, Store};
use callroute::synthflow::simulator::Simulator;

/// Two San Francisco numbers and one New York number; leads in San Francisco.
const NUMBERS: [&str; 3] = ["+14155550100", "+14155550101", "+12125550107"];
const ATTEMPTS: usize = 3;

fn rules_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("callroute-cadence-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let numbers: String = NUMBERS
        .iter()
        .map(|n| format!("  \"{n}\": {{}}\n"))
        .collect();
    std::fs::write(
        dir.join("rules.yaml"),
        format!(
            r#"agents: {{ a: {{ model_id: m-1 }} }}
numbers:
{numbers}calling_hours:
  default: {{ days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00" }}
state_laws: false
campaigns:
  c:
    agent: a
    purpose: informational
    cadence:
      redial_on: [no-answer, busy, failed]
      delays: [2m, 5m]
      max_attempts: {ATTEMPTS}
      caller_id: different
    routes:
      - numbers: all
        local_presence: [area_code, any]
"#
        ),
    )
    .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_leads_are_redialed_from_another_caller_id_then_end() {
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    redialed_from_another_caller_id_then_end(store).await;
}

/// The same on PostgreSQL (the store several daemons share). Skipped without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_unanswered_leads_are_redialed_then_end() {
    let Some(schema) = common::pg_schema("cadence_redial").await else {
        return;
    };
    let store = PgStore::open_in_schema(&common::pg_url(), Some(&schema))
        .await
        .unwrap();
    redialed_from_another_caller_id_then_end(store).await;
}

async fn redialed_from_another_caller_id_then_end<S: Store>(store: S) {
    let sim = Simulator::new(common::sim_config_answering(&NUMBERS, 0.0, 3));
    let base = sim.start_local().await.unwrap();
    let dir = rules_dir(store.engine());
    let leads = "id,phone,name,campaign\nA,+14155550123,Ann,c\nB,+14155550124,Bo,c\n";
    let intake = intake::parse(leads.as_bytes()).unwrap();
    // A minute of the daemon's clock passes in half a second.
    let clock = Clock::simulated("2026-03-04T18:00:00Z".parse().unwrap(), 120.0);
    store.enqueue(&intake.leads, clock.now()).await.unwrap();
    let client = common::client(&base);
    let config = DaemonConfig {
        clock,
        ..common::brisk_daemon_config()
    };
    let rules = Arc::new(load_dir(&dir).unwrap().rules);
    let daemon = Arc::new(Daemon::start(store, rules, client, config).await.unwrap());
    let running = daemon.spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let counts = daemon.store().counts().await.unwrap();
        let done = counts
            .iter()
            .find(|(s, _)| *s == LeadState::Completed)
            .map_or(0, |(_, n)| *n);
        if done == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cadence never ended: {counts:?}, {} calls",
            sim.log().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Anything extra would show now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await.unwrap();
    let log = sim.log();
    let mut by_lead: HashMap<&str, Vec<&str>> = HashMap::new();
    for call in &log {
        by_lead
            .entry(call.request.phone.as_str())
            .or_default()
            .push(call.request.from_phone_number.as_deref().unwrap());
    }
    assert_eq!(by_lead.len(), 2, "{log:?}");
    for (lead, froms) in &by_lead {
        assert_eq!(froms.len(), ATTEMPTS, "{lead}: attempts {froms:?}");
        let mut distinct = froms.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            ATTEMPTS,
            "{lead}: each attempt from a caller ID it had not seen: {froms:?}"
        );
        assert!(
            froms[0].starts_with("+1415"),
            "the first from its area code"
        );
    }
    // The redials waited their delays after the calls ended, on the daemon's clock.
    let ledger = daemon
        .store()
        .attempts_since("2026-03-04T00:00:00Z".parse().unwrap())
        .await
        .unwrap();
    for lead in ["A", "B"] {
        let stored = daemon.store().lead(lead).await.unwrap().unwrap();
        assert_eq!(stored.attempts as usize, ATTEMPTS);
        assert_eq!(stored.state, LeadState::Completed);
        let times: Vec<DateTime<Utc>> = ledger
            .iter()
            .filter(|a| a.lead_id == lead)
            .map(|a| a.at)
            .collect();
        assert_eq!(times.len(), ATTEMPTS, "{lead}: {ledger:?}");
        assert!(
            times[1] - times[0] >= chrono::Duration::minutes(2),
            "{times:?}"
        );
        assert!(
            times[2] - times[1] >= chrono::Duration::minutes(5),
            "{times:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
