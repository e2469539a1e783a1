//! Hot reload of a running daemon's rules: edits in place, by write-then-rename and by a
//! ConfigMap-style symlink swap take effect; the time from the edit to the first decision
//! under the new rules is measured; a broken edit keeps the old rules and says so.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callroute::daemon::{Daemon, DaemonConfig, ReloadOutcome};
use callroute::engine::Decision;
use callroute::lead::Lead;
use callroute::rules::load_dir;
use callroute::store::sqlite::SqliteStore;
use callroute::synthflow::simulator::Simulator;

const SF: &str = "+14155550100";
const NY: &str = "+12125550107";

fn rules(number: &str, comment: &str) -> String {
    format!(
        "# {comment}\nagents: {{ a: {{ model_id: m-1 }} }}\nlimits: {{ default: {{ per_minute: 1 }} }}\nnumbers:\n  \"{SF}\": {{}}\n  \"{NY}\": {{}}\ncalling_hours:\n  default: {{ days: [mon, tue, wed, thu, fri, sat, sun], start: \"00:00\", end: \"24:00\" }}\ncampaigns:\n  c:\n    agent: a\n    routes:\n      - numbers: [\"{number}\"]\n"
    )
}

async fn daemon(dir: &Path) -> Arc<Daemon<SqliteStore>> {
    let sim = Simulator::new(common::sim_config(&[SF, NY]));
    let base = sim.start_local().await.unwrap();
    let client = common::client(&base);
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    let rules = Arc::new(load_dir(dir).unwrap().rules);
    let daemon = Arc::new(
        Daemon::start(store, rules, client, DaemonConfig::default())
            .await
            .unwrap(),
    );
    daemon.set_rules_dir(dir.to_path_buf());
    tokio::spawn(callroute::reload::watch(
        daemon.clone(),
        dir.to_path_buf(),
        Duration::from_millis(150),
        Duration::from_secs(2),
        std::future::pending(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await; // the watcher is armed
    daemon
}

fn picked(daemon: &Daemon<SqliteStore>) -> String {
    let lead = Lead::from_json(r#"{"phone":"+13055550123","name":"N","campaign":"c"}"#).unwrap();
    match daemon.explain(&lead, chrono::Utc::now()).0 {
        Decision::Dial {
            from_phone_number, ..
        } => from_phone_number.to_string(),
        other => panic!("expected a dial: {other:?}"),
    }
}

/// Milliseconds from now until the daemon decides with `expected`.
async fn until_decides(daemon: &Daemon<SqliteStore>, expected: &str) -> u128 {
    let started = Instant::now();
    while picked(daemon) != expected {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "rules not reloaded in 5 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    started.elapsed().as_millis()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callroute-reload-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_take_effect_and_broken_ones_do_not() {
    let dir = scratch("edits");
    let file = dir.join("rules.yaml");
    std::fs::write(&file, rules(SF, "v1")).unwrap();
    let daemon = daemon(&dir).await;
    assert_eq!(picked(&daemon), SF);
    let mut latencies = Vec::new();

    // 1. Written in place.
    std::fs::write(&file, rules(NY, "v2")).unwrap();
    latencies.push(until_decides(&daemon, NY).await);

    // 2. Written to a temporary file, then renamed over (how most editors save).
    std::fs::write(dir.join(".rules.yaml.tmp"), rules(SF, "v3")).unwrap();
    std::fs::rename(dir.join(".rules.yaml.tmp"), &file).unwrap();
    latencies.push(until_decides(&daemon, SF).await);

    // 3. A broken edit: the running rules stay, and the status says the files are broken.
    std::fs::write(&file, rules(NY, "v4").replace("numbers: [", "numbers: {")).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        picked(&daemon),
        SF,
        "broken files never replace working rules"
    );
    let status = daemon.reload_status();
    assert!(status.disk_broken);
    assert!(
        matches!(status.last.unwrap().outcome, ReloadOutcome::Failed { errors } if errors[0].contains("rules.yaml:"))
    );

    // 4. Fixed: recovers.
    std::fs::write(&file, rules(NY, "v5")).unwrap();
    latencies.push(until_decides(&daemon, NY).await);
    assert!(!daemon.reload_status().disk_broken);

    // 5. A comment-only edit reloads but changes nothing that matters.
    std::fs::write(&file, rules(NY, "v5, with a new comment")).unwrap();
    let outcome = daemon.reload("test").await;
    assert!(
        matches!(&outcome, ReloadOutcome::Applied { changes, .. } if changes.is_empty())
            || matches!(outcome, ReloadOutcome::Unchanged { .. }),
        "{outcome:?}"
    );
    assert!(
        matches!(daemon.reload("test").await, ReloadOutcome::Unchanged { .. }),
        "same content hash: a no-op"
    );

    latencies.sort();
    eprintln!(
        "reload latency, edit to first decision under the new rules (ms): {latencies:?}; median {}",
        latencies[latencies.len() / 2]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_style_symlink_swap_is_seen() {
    let dir = scratch("configmap");
    std::fs::create_dir_all(dir.join("v1")).unwrap();
    std::fs::write(dir.join("v1/rules.yaml"), rules(SF, "v1")).unwrap();
    std::os::unix::fs::symlink("v1", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/rules.yaml", dir.join("rules.yaml")).unwrap();
    let daemon = daemon(&dir).await;
    assert_eq!(picked(&daemon), SF);

    std::fs::create_dir_all(dir.join("v2")).unwrap();
    std::fs::write(dir.join("v2/rules.yaml"), rules(NY, "v2")).unwrap();
    std::os::unix::fs::symlink("v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    let latency = until_decides(&daemon, NY).await;
    eprintln!("symlink swap: {latency} ms");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_usage_so_a_number_at_its_limit_stays_there() {
    let dir = scratch("limits");
    let file = dir.join("rules.yaml");
    std::fs::write(&file, rules(SF, "v1")).unwrap();
    let daemon = daemon(&dir).await;
    let running = tokio::spawn({
        let daemon = daemon.clone();
        async move { daemon.run(tokio::time::sleep(Duration::from_secs(3))).await }
    });
    // One call from the San Francisco number: its per_minute limit (1) is now full.
    let lead = callroute::lead::RawLead {
        phone: Some("+13055550100".into()),
        name: Some("A".into()),
        campaign: Some("c".into()),
        ..Default::default()
    };
    callroute::store::Store::enqueue(
        daemon.store(),
        &[("first".into(), lead)],
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    daemon.wake();
    let deadline = Instant::now() + Duration::from_secs(2);
    while daemon.events().iter().all(|e| e.outcome != "placed") {
        assert!(Instant::now() < deadline, "the first call was not placed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A reload (new comment, same route) must not reset the number's window.
    std::fs::write(&file, rules(SF, "v2: only a comment changed")).unwrap();
    assert!(matches!(
        daemon.reload("test").await,
        ReloadOutcome::Applied { .. }
    ));
    let next = Lead::from_json(r#"{"phone":"+13055550101","name":"B","campaign":"c"}"#).unwrap();
    let (decision, trace) = daemon.explain(&next, chrono::Utc::now());
    assert!(matches!(decision, Decision::Defer { .. }), "{decision:?}");
    assert!(
        trace
            .excluded
            .iter()
            .any(|e| e.number.to_string() == SF && e.reason.contains("per_minute 1/1")),
        "{:?}",
        trace.excluded
    );
    running.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
