//! Suppression lists while dialing: a list file edited under a running daemon, a number put
//! on the store's list (as `callroute suppress add` does) after its lead was queued, and
//! the proof each call keeps (as `callroute audit` reads it).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use callroute::compliance::StoredEntry;
use callroute::daemon::{Daemon, DaemonConfig};
use callroute::lead::RawLead;
use callroute::store::sqlite::SqliteStore;
use callroute::store::{AttemptQuery, AuditEntry, LeadState, Store};
use callroute::synthflow::simulator::Simulator;

const CALLER_ID: &str = "+14155550100";

/// One caller ID with a 2 s gap: leads go one every 2 s, so later ones are still queued
/// when the lists change.
fn rules_text() -> String {
    format!(
        "agents: {{ a: {{ model_id: m-1 }} }}\nlimits: {{ default: {{ min_gap: 2s }} }}\nnumbers:\n  \"{CALLER_ID}\": {{}}\ncalling_hours:\n  default: {{ days: [mon, tue, wed, thu, fri, sat, sun], start: \"00:00\", end: \"24:00\" }}\nstate_laws: false\nsuppression:\n  dnc: {{ file: dnc.txt }}\n  internal: {{}}\ncampaigns:\n  c:\n    agent: a\n    purpose: informational\n    routes:\n      - numbers: all\n"
    )
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "callroute-suppression-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rules.yaml"), rules_text()).unwrap();
    std::fs::write(dir.join("dnc.txt"), "# do not call\n").unwrap();
    dir
}

fn lead(id: &str, phone: &str) -> (String, RawLead) {
    (
        id.to_string(),
        RawLead {
            id: Some(id.into()),
            phone: Some(phone.into()),
            name: Some("N".into()),
            campaign: Some("c".into()),
            ..RawLead::default()
        },
    )
}

async fn daemon(dir: &Path, store: SqliteStore) -> (Arc<Daemon<SqliteStore>>, Simulator) {
    let sim = Simulator::new(common::sim_config(&[CALLER_ID]));
    let base = sim.start_local().await.unwrap();
    let rules = Arc::new(callroute::rules::load_dir(dir).unwrap().rules);
    let config = DaemonConfig {
        idle_poll: Duration::from_millis(50),
        poll_interval: Duration::from_millis(50),
        ..DaemonConfig::default()
    };
    let daemon = Arc::new(
        Daemon::start(store, rules, common::client(&base), config)
            .await
            .unwrap(),
    );
    daemon.set_rules_dir(dir.to_path_buf());
    (daemon, sim)
}

/// Waits for the simulator's first call (the other leads then wait out the 2 s gap).
async fn first_call(sim: &Simulator) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while sim.log().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no first call");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn until_finished(daemon: &Daemon<SqliteStore>, ids: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut done = true;
        for id in ids {
            let state = daemon.store().lead(id).await.unwrap().unwrap().state;
            done &= matches!(state, LeadState::Completed | LeadState::Rejected);
        }
        if done {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "leads not finished in 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_edited_while_dialing_stops_the_numbers_added_to_it() {
    let dir = scratch("edited");
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    let numbers = ["+12125550101", "+12125550102", "+12125550103"];
    let leads: Vec<_> = numbers
        .iter()
        .enumerate()
        .map(|(i, n)| lead(&format!("L{i}"), n))
        .collect();
    store.enqueue(&leads, Utc::now()).await.unwrap();
    let (daemon, sim) = daemon(&dir, store).await;
    let running = tokio::spawn({
        let daemon = daemon.clone();
        async move {
            daemon
                .run(tokio::time::sleep(Duration::from_secs(12)))
                .await
        }
    });
    // The first lead is dialed at once; the others wait out the caller ID's 2 s gap.
    first_call(&sim).await;
    std::fs::write(dir.join("dnc.txt"), "# do not call\n+12125550103\n").unwrap();
    let outcome = daemon.reload("test").await;
    assert!(
        matches!(outcome, callroute::daemon::ReloadOutcome::Applied { .. }),
        "{outcome:?}"
    );
    until_finished(&daemon, &["L0", "L1", "L2"]).await;
    let rejected = daemon.store().lead("L2").await.unwrap().unwrap();
    assert_eq!(rejected.state, LeadState::Rejected);
    assert_eq!(rejected.reason_code.as_deref(), Some("suppressed"));
    assert!(
        rejected.reason.as_deref().unwrap().contains("dnc.txt:2"),
        "{rejected:?}"
    );
    let called: Vec<String> = sim.log().iter().map(|c| c.request.phone.clone()).collect();
    assert!(!called.contains(&"+12125550103".to_string()), "{called:?}");
    assert_eq!(called.len(), 2);

    // A broken list never replaces the working one: the rules stay, the status says so.
    std::fs::write(dir.join("dnc.txt"), "+12125550103\nnot a number\n").unwrap();
    let outcome = daemon.reload("test").await;
    let callroute::daemon::ReloadOutcome::Failed { errors } = outcome else {
        panic!("a broken list must fail the reload: {outcome:?}")
    };
    assert!(errors.iter().any(|e| e.contains("dnc.txt:2")), "{errors:?}");
    let status = daemon.status().await.unwrap();
    let dnc = status.suppression.iter().find(|l| l.name == "dnc").unwrap();
    assert_eq!(dnc.entries, 1, "the working list stays");
    assert!(
        status
            .rejected
            .iter()
            .any(|r| r.reason == "suppressed" && r.count == 1),
        "{:?}",
        status.rejected
    );

    // The proof of each call: the rules hash and the lists checked, with their versions.
    let audited = daemon
        .store()
        .audited_attempts(&AttemptQuery {
            limit: 100,
            ..AttemptQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(audited.len(), 2);
    let proof = audited[1].proof.as_ref().expect("a proof");
    assert_eq!(proof["rules_hash"].as_str().unwrap().len(), 16);
    let lists: Vec<&str> = proof["lists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["list"].as_str().unwrap())
        .collect();
    assert_eq!(lists, ["dnc", "internal"]);
    assert_eq!(audited[1].to_number.as_deref(), Some("+12125550102"));
    assert!(proof["calling_window"]["open_now"].as_bool().unwrap());
    running.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_put_on_the_store_list_after_its_lead_was_queued_is_never_called() {
    let dir = scratch("store-list");
    let file = dir.join("q.db");
    let store = SqliteStore::open(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    let leads = [
        lead("L0", "+12125550101"),
        lead("L1", "+12125550102"),
        lead("L2", "+12125550103"),
    ];
    store.enqueue(&leads, Utc::now()).await.unwrap();
    let (daemon, sim) = daemon(&dir, store).await;
    let running = tokio::spawn({
        let daemon = daemon.clone();
        async move {
            daemon
                .run(tokio::time::sleep(Duration::from_secs(10)))
                .await
        }
    });
    first_call(&sim).await;
    // Another process (as `callroute suppress add` is) writes to the same store.
    let other = SqliteStore::open(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    let now = Utc::now();
    other
        .suppress(
            &[StoredEntry {
                number: "+12125550102".parse().unwrap(),
                list: "internal".into(),
                reason: "asked by e-mail".into(),
                added_by: "ops".into(),
                added_at: now,
                evidence: Some("ticket 981".into()),
                expires: None,
            }],
            &AuditEntry {
                at: now,
                actor: "ops".into(),
                action: "suppress".into(),
                subject: "+12125550102".into(),
                detail: "list `internal`: asked by e-mail".into(),
            },
        )
        .await
        .unwrap();
    until_finished(&daemon, &["L0", "L1", "L2"]).await;
    let rejected = daemon.store().lead("L1").await.unwrap().unwrap();
    assert_eq!(rejected.reason_code.as_deref(), Some("suppressed"));
    let reason = rejected.reason.unwrap();
    assert!(
        reason.contains("asked by e-mail") && reason.contains("ticket 981"),
        "{reason}"
    );
    let called: Vec<String> = sim.log().iter().map(|c| c.request.phone.clone()).collect();
    assert_eq!(called, ["+12125550101", "+12125550103"]);
    running.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
