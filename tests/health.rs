//! Number health in a running daemon against the simulator: a caller ID nobody answers is
//! rested by the policy (stored, audited, detached, skipped), and the rest survives a restart.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use callroute::daemon::{Daemon, DaemonConfig};
use callroute::rules::compile_sources;
use callroute::store::Store;
use callroute::store::sqlite::SqliteStore;
use callroute::synthflow::simulator::{CallBehaviour, SimConfig, Simulator};

const NUMBERS: [&str; 4] = [
    "+14155550100",
    "+12125550107",
    "+12135550103",
    "+13055550105",
];
const BAD: &str = "+13055550105";

fn rules() -> callroute::rules::RuleSet {
    let numbers: String = NUMBERS
        .iter()
        .map(|n| format!("  \"{n}\": {{}}\n"))
        .collect();
    let text = format!(
        "agents: {{ a: {{ model_id: m-1 }} }}\nnumbers:\n{numbers}calling_hours:\n  default: {{ days: [mon, tue, wed, thu, fri, sat, sun], start: \"00:00\", end: \"24:00\" }}\nstate_laws: false\nhealth:\n  default:\n    rest_when: {{ answer_rate_below: 0.5, min_calls: 6, last_calls: 10 }}\n    rest_for: 1h\n    short_call: 1s\n    max_resting: 25%\n    detach_while_resting: true\ncampaigns:\n  c:\n    agent: a\n    purpose: informational\n    routes:\n      - numbers: all\n        local_presence: [any]\n        strategy: round_robin\n"
    );
    compile_sources(&[(Path::new("r.yaml"), text.as_str())])
        .0
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_nobody_answers_is_rested_detached_and_stays_rested_after_a_restart() {
    let mut calls = CallBehaviour {
        ring_ms: 10,
        talk_ms: 20,
        answer_rate: 1.0,
        ..CallBehaviour::default()
    };
    calls.answer_rates.insert(BAD.to_string(), 0.0);
    let sim = Simulator::new(SimConfig {
        calls,
        ..common::sim_config(&NUMBERS)
    });
    let base = sim.start_local().await.unwrap();
    let dir = std::env::temp_dir().join(format!("callroute-health-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("q.db").display());
    let config = || DaemonConfig {
        attempts_per_second: 50,
        concurrency: 10,
        poll_interval: Duration::from_millis(20),
        idle_poll: Duration::from_millis(50),
        ..DaemonConfig::default()
    };
    let store = SqliteStore::open(&url).await.unwrap();
    let leads: Vec<_> = (0..60)
        .map(|i| {
            (
                format!("l{i}"),
                common::raw_lead(&format!("+1415555{:04}", 2000 + i), "c"),
            )
        })
        .collect();
    store.enqueue(&leads, chrono::Utc::now()).await.unwrap();
    let daemon = Arc::new(
        Daemon::start(store, Arc::new(rules()), common::client(&base), config())
            .await
            .unwrap(),
    );
    let running = daemon.spawn();
    let started = std::time::Instant::now();
    loop {
        let counts = daemon.store().counts().await.unwrap();
        let open: u64 = counts
            .iter()
            .filter(|(s, _)| !matches!(s.as_str(), "completed" | "failed" | "rejected"))
            .map(|(_, n)| n)
            .sum();
        if open == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{counts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await.unwrap();

    // Rested by the policy, with its numbers in the reason.
    let now = chrono::Utc::now();
    let rests = daemon.store().rests(now).await.unwrap();
    assert_eq!(rests.len(), 1, "{rests:?}");
    let rest = &rests[0];
    assert_eq!(rest.number.to_string(), BAD);
    assert_eq!(rest.source, "auto");
    // Judged once it had 6 ended calls (min_calls) and another number had as many: when
    // exactly depends on which calls end first.
    assert!(
        rest.reason.starts_with("answer rate 0% over its last "),
        "{}",
        rest.reason
    );
    assert!(
        rest.reason.contains("calls, pool median "),
        "{}",
        rest.reason
    );
    // Never dialed once rested, and detached upstream (by its slug).
    let log = sim.log();
    let from_bad: Vec<_> = log
        .iter()
        .filter(|c| c.request.from_phone_number.as_deref() == Some(BAD))
        .collect();
    assert!((6..=10).contains(&from_bad.len()), "{}", from_bad.len());
    assert!(from_bad.iter().all(|c| c.accepted_at <= rest.since));
    assert!(log.len() >= 60);
    let attached = common::client(&base).attached_numbers("m-1").await.unwrap();
    assert!(attached.iter().all(|a| a.number != BAD));
    let audit = daemon.store().audit_log(10).await.unwrap();
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str()))
        .collect();
    assert!(actions.contains(&("policy", "rest")), "{actions:?}");
    assert!(actions.contains(&("policy", "detach")), "{actions:?}");
    let status = daemon.status().await.unwrap();
    let bad = status.numbers.iter().find(|n| n.number == BAD).unwrap();
    assert!(bad.resting.is_some());
    let placed = from_bad.len() as u32;
    assert_eq!(bad.health.as_ref().unwrap().last_calls.placed, placed);
    assert_eq!(bad.health.as_ref().unwrap().last_calls.answered, 0);
    assert_eq!(bad.health.as_ref().unwrap().pool_median, Some(1.0));

    // A restart keeps the rest, and the counts behind it.
    let again = Daemon::start(
        SqliteStore::open(&url).await.unwrap(),
        Arc::new(rules()),
        common::client(&base),
        config(),
    )
    .await
    .unwrap();
    let status = again.status().await.unwrap();
    let bad = status.numbers.iter().find(|n| n.number == BAD).unwrap();
    assert_eq!(bad.resting.as_ref().unwrap().until, rest.until);
    assert_eq!(bad.health.as_ref().unwrap().last_calls.placed, placed);

    // Resumed by hand (`callroute numbers resume`): a daemon started after no longer skips
    // it, and attaches it again on its first turn, as `detach_while_resting` promised.
    drop(again);
    let store = SqliteStore::open(&url).await.unwrap();
    assert!(
        store
            .resume_number(BAD, "ops", chrono::Utc::now())
            .await
            .unwrap()
    );
    let third = Arc::new(
        Daemon::start(store, Arc::new(rules()), common::client(&base), config())
            .await
            .unwrap(),
    );
    let status = third.status().await.unwrap();
    assert!(
        status
            .numbers
            .iter()
            .find(|n| n.number == BAD)
            .unwrap()
            .resting
            .is_none()
    );
    let running = third.spawn();
    let started = std::time::Instant::now();
    while !common::client(&base)
        .attached_numbers("m-1")
        .await
        .unwrap()
        .iter()
        .any(|a| a.number == BAD)
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never attached again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await.unwrap();
    let audit = third.store().audit_log(1).await.unwrap();
    assert_eq!(
        (audit[0].actor.as_str(), audit[0].action.as_str()),
        ("policy", "attach")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_written_by_another_process_applies_at_once() {
    let sim = Simulator::new(common::sim_config(&NUMBERS));
    let base = sim.start_local().await.unwrap();
    let dir = std::env::temp_dir().join(format!("callroute-health-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("q.db").display());
    let config = DaemonConfig {
        idle_poll: Duration::from_millis(50),
        ..DaemonConfig::default()
    };
    let daemon = Arc::new(
        Daemon::start(
            SqliteStore::open(&url).await.unwrap(),
            Arc::new(rules()),
            common::client(&base),
            config,
        )
        .await
        .unwrap(),
    );
    let running = daemon.spawn();
    // What `callroute numbers rest` does: its own connection to the same store.
    let cli = SqliteStore::open(&url).await.unwrap();
    let now = chrono::Utc::now();
    cli.rest_number(
        &callroute::health::Rest {
            number: "+14155550100".parse().unwrap(),
            since: now,
            until: now + chrono::Duration::hours(72),
            reason: "flagged by carrier".into(),
            source: "manual".into(),
        },
        "ops",
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    loop {
        let status = daemon.status().await.unwrap();
        let sf = status
            .numbers
            .iter()
            .find(|n| n.number == "+14155550100")
            .unwrap();
        if let Some(rest) = &sf.resting {
            assert_eq!(rest.reason, "flagged by carrier");
            break;
        }
        // Well before the 5-minute pool refresh.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the rest never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
