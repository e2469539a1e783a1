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
use callroute::reload::WatchConfig;
use callroute::rules::load_dir;
use callroute::store::sqlite::SqliteStore;
use callroute::synthflow::simulator::Simulator;

const SF: &str = "+14155550100";
const NY: &str = "+12125550107";

fn rules(number: &str, comment: &str) -> String {
    format!(
        "# {comment}\nagents: {{ a: {{ model_id: m-1 }} }}\nlimits: {{ default: {{ per_minute: 1 }} }}\nnumbers:\n  \"{SF}\": {{}}\n  \"{NY}\": {{}}\ncalling_hours:\n  default: {{ days: [mon, tue, wed, thu, fri, sat, sun], start: \"00:00\", end: \"24:00\" }}\nstate_laws: false\ncampaigns:\n  c:\n    agent: a\n    purpose: informational\n    routes:\n      - numbers: [\"{number}\"]\n"
    )
}

async fn daemon(dir: &Path) -> Arc<Daemon<SqliteStore>> {
    daemon_with(dir, WATCH, DaemonConfig::default()).await
}

/// Short waits, and a backstop so slow that only file events can explain a reload.
const WATCH: WatchConfig = WatchConfig {
    debounce: Duration::from_millis(150),
    backstop: Duration::from_secs(600),
    quiet: Duration::from_millis(300),
    settle: Duration::from_secs(1),
};

async fn daemon_with(
    dir: &Path,
    watch: WatchConfig,
    config: DaemonConfig,
) -> Arc<Daemon<SqliteStore>> {
    daemon_on(dir, watch, config, common::sim_config(&[SF, NY])).await
}

async fn daemon_on(
    dir: &Path,
    watch: WatchConfig,
    config: DaemonConfig,
    sim: callroute::synthflow::simulator::SimConfig,
) -> Arc<Daemon<SqliteStore>> {
    daemon_and_simulator(dir, watch, config, sim).await.0
}

/// `daemon_on`, and the simulator it talks to (to break it mid-test).
async fn daemon_and_simulator(
    dir: &Path,
    watch: WatchConfig,
    config: DaemonConfig,
    sim: callroute::synthflow::simulator::SimConfig,
) -> (Arc<Daemon<SqliteStore>>, Simulator) {
    let sim = Simulator::new(sim);
    let base = sim.start_local().await.unwrap();
    let client = common::client(&base);
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    let rules = Arc::new(load_dir(dir).unwrap().rules);
    let daemon = Arc::new(Daemon::start(store, rules, client, config).await.unwrap());
    daemon.set_rules_dir(dir.to_path_buf());
    tokio::spawn(callroute::reload::watch(
        daemon.clone(),
        dir.to_path_buf(),
        watch,
        std::future::pending(),
    ));
    common::eventually(Duration::from_secs(5), "the watcher is armed", || {
        std::future::ready(daemon.reload_status().watching.is_some())
    })
    .await;
    (daemon, sim)
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
    common::eventually(
        Duration::from_secs(5),
        "the watcher saw the broken files",
        || std::future::ready(daemon.reload_status().disk_broken),
    )
    .await;
    assert_eq!(
        picked(&daemon),
        SF,
        "broken files never replace working rules"
    );
    let status = daemon.reload_status();
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
    let lead = common::raw_lead("+13055550100", "c");
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

fn decision_for(daemon: &Daemon<SqliteStore>, campaign: &str) -> Decision {
    let lead = Lead::from_json(&format!(
        r#"{{"phone":"+13055550123","name":"N","campaign":"{campaign}"}}"#
    ))
    .unwrap();
    daemon.explain(&lead, chrono::Utc::now()).0
}

fn campaign_file(name: &str, number: &str) -> String {
    format!(
        "campaigns:\n  {name}:\n    agent: a\n    purpose: informational\n    routes:\n      - numbers: [\"{number}\"]\n"
    )
}

fn from_number(decision: Decision) -> String {
    match decision {
        Decision::Dial {
            from_phone_number, ..
        } => from_phone_number.to_string(),
        other => panic!("expected a dial: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_writing_three_files_one_after_another_is_read_whole() {
    let dir = scratch("deploy");
    std::fs::write(dir.join("base.yaml"), rules(SF, "v1")).unwrap();
    std::fs::write(dir.join("d1.yaml"), campaign_file("d1", SF)).unwrap();
    std::fs::write(dir.join("d2.yaml"), campaign_file("d2", SF)).unwrap();
    let daemon = daemon(&dir).await;
    let picks = |daemon: &Daemon<SqliteStore>| -> Vec<String> {
        ["c", "d1", "d2"]
            .iter()
            .map(|c| from_number(decision_for(daemon, c)))
            .collect()
    };
    assert_eq!(picks(&daemon), [SF, SF, SF]);

    // The deploy: one file every 100 ms, each written in place.
    let writer = std::thread::spawn({
        let dir = dir.clone();
        move || {
            std::fs::write(dir.join("base.yaml"), rules(NY, "v2")).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            std::fs::write(dir.join("d1.yaml"), campaign_file("d1", NY)).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            std::fs::write(dir.join("d2.yaml"), campaign_file("d2", NY)).unwrap();
        }
    });
    let started = Instant::now();
    loop {
        let now = picks(&daemon);
        assert!(
            now.iter().all(|n| n == &now[0]),
            "old and new rules ran mixed: {now:?}"
        );
        if now[0] == NY {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "never reloaded");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    writer.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_daemon_does_not_reload_not_even_after_reading_its_own_files() {
    let dir = scratch("idle");
    std::fs::write(dir.join("rules.yaml"), rules(SF, "v1")).unwrap();
    let daemon = daemon(&dir).await;
    // The daemon reads every file (open and access events) but changes none.
    assert!(matches!(
        daemon.reload("by hand").await,
        ReloadOutcome::Unchanged { .. }
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let last = daemon.reload_status().last.expect("the reload by hand");
    assert_eq!(
        last.trigger, "by hand",
        "only a change may trigger a reload"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

const CAMPAIGN_D: &str = "campaigns:\n  d:\n    agent: a\n    purpose: informational\n    routes:\n      - numbers: [\"+12125550107\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_moved_away_and_back_during_a_deploy_changes_nothing() {
    let dir = scratch("moved");
    std::fs::write(dir.join("base.yaml"), rules(SF, "v1")).unwrap();
    std::fs::write(dir.join("d.yaml"), CAMPAIGN_D).unwrap();
    let away = dir.with_extension("away");
    let _ = std::fs::remove_file(&away);
    let daemon = daemon(&dir).await;
    assert!(matches!(decision_for(&daemon, "d"), Decision::Dial { .. }));

    std::fs::rename(dir.join("d.yaml"), &away).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    std::fs::rename(&away, dir.join("d.yaml")).unwrap();
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        let decision = decision_for(&daemon, "d");
        assert!(
            matches!(decision, Decision::Dial { .. }),
            "campaign d must never be gone: {decision:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Removed for good: once the directory has been quiet for the settle time, it is gone.
    std::fs::remove_file(dir.join("d.yaml")).unwrap();
    let removed = Instant::now();
    while matches!(decision_for(&daemon, "d"), Decision::Dial { .. }) {
        assert!(
            removed.elapsed() < Duration::from_secs(5),
            "removal never applied"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        removed.elapsed() >= WATCH.settle,
        "a removal applied before the quiet period"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_swap_of_the_rules_directory_itself_is_seen_at_once() {
    let root = scratch("dirswap");
    for (version, number) in [("v1", SF), ("v2", NY)] {
        std::fs::create_dir_all(root.join(version)).unwrap();
        std::fs::write(
            root.join(version).join("rules.yaml"),
            rules(number, version),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink("v1", root.join("current")).unwrap();
    let daemon = daemon(&root.join("current")).await;
    assert_eq!(picked(&daemon), SF);
    // `ln -sfn v2 current`, atomically: a new link renamed over the old one.
    std::os::unix::fs::symlink("v2", root.join("current.tmp")).unwrap();
    std::fs::rename(root.join("current.tmp"), root.join("current")).unwrap();
    let latency = until_decides(&daemon, NY).await;
    eprintln!("directory symlink swap: {latency} ms");
    // And the new target is watched: an edit there is seen too.
    std::fs::write(root.join("v2/rules.yaml"), rules(SF, "v2, edited")).unwrap();
    until_decides(&daemon, SF).await;
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_waiting_for_a_call_slot_is_decided_with_the_rules_of_the_moment() {
    let dir = scratch("slot");
    let file = dir.join("rules.yaml");
    std::fs::write(&file, rules(SF, "v1")).unwrap();
    let mut sim = common::sim_config(&[SF, NY]);
    sim.calls.talk_ms = 1500;
    let config = DaemonConfig {
        concurrency: 1,
        attempts_per_second: 50,
        poll_interval: Duration::from_millis(100),
        ..DaemonConfig::default()
    };
    let daemon = daemon_on(&dir, WATCH, config, sim).await;
    let run = daemon.spawn();
    let leads: Vec<_> = ["+13055550100", "+13055550101"]
        .iter()
        .enumerate()
        .map(|(i, phone)| (format!("lead-{i}"), common::raw_lead(phone, "c")))
        .collect();
    callroute::store::Store::enqueue(daemon.store(), &leads, chrono::Utc::now())
        .await
        .unwrap();
    daemon.wake();
    let placed = |daemon: &Daemon<SqliteStore>| -> Vec<String> {
        daemon
            .events()
            .iter()
            .filter(|e| e.outcome == "placed")
            .filter_map(|e| e.from_phone_number.clone())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while placed(&daemon).is_empty() {
        assert!(Instant::now() < deadline, "the first call was not placed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The second lead now waits for the only slot. The SF number leaves the rules.
    common::eventually(
        Duration::from_secs(5),
        "lead-1 claimed, waiting",
        || async {
            let lead = callroute::store::Store::lead(daemon.store(), "lead-1").await;
            lead.unwrap().unwrap().state == callroute::store::LeadState::Claimed
        },
    )
    .await;
    std::fs::write(&file, rules(NY, "v2")).unwrap();
    assert!(matches!(
        daemon.reload("test").await,
        ReloadOutcome::Applied { .. }
    ));
    while placed(&daemon).len() < 2 {
        assert!(Instant::now() < deadline, "the second call was not placed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        placed(&daemon),
        [SF, NY],
        "a number removed from the rules is never dialed again"
    );
    run.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_agents_pools_are_read_before_the_new_rules_run() {
    let dir = scratch("agents");
    let file = dir.join("rules.yaml");
    std::fs::write(&file, rules(SF, "v1")).unwrap();
    let mut sim = common::sim_config(&[SF]);
    sim.agents.push(callroute::synthflow::simulator::SimAgent {
        model_id: "m-2".into(),
        r#type: "outbound".into(),
        attached: vec![NY.into()],
    });
    let daemon = daemon_on(&dir, WATCH, DaemonConfig::default(), sim).await;
    let with_agent = |model_id: &str| {
        rules(SF, "v2").replace(
            "agents: { a: { model_id: m-1 } }",
            &format!("agents: {{ a: {{ model_id: m-1 }}, b: {{ model_id: {model_id} }} }}"),
        ) + "  d:\n    agent: b\n    purpose: informational\n    routes:\n      - numbers: [\"+12125550107\"]\n"
    };

    // An agent whose pool cannot be read: the running rules stay, and the reason is given.
    std::fs::write(&file, with_agent("m-unknown")).unwrap();
    match daemon.reload("test").await {
        ReloadOutcome::Waiting { errors } => {
            assert!(errors[0].contains("agent `b`"), "{errors:?}");
            assert!(errors[0].contains("running rules stay"), "{errors:?}");
        }
        other => panic!("expected the reload to fail: {other:?}"),
    }
    assert_eq!(picked(&daemon), SF);
    assert!(
        !daemon.reload_status().disk_broken,
        "the files are fine: it is the pool that cannot be read"
    );

    // A readable one: the first decision under the new rules already sees its pool.
    std::fs::write(&file, with_agent("m-2")).unwrap();
    assert!(matches!(
        daemon.reload("test").await,
        ReloadOutcome::Applied { .. }
    ));
    match decision_for(&daemon, "d") {
        Decision::Dial {
            from_phone_number, ..
        } => assert_eq!(from_phone_number.to_string(), NY),
        other => panic!("expected a dial from the new agent's pool: {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_the_rules_cannot_serve_is_held_and_dialed_once_a_reload_can() {
    let dir = scratch("held");
    std::fs::write(dir.join("base.yaml"), rules(SF, "v1")).unwrap();
    let config = DaemonConfig {
        poll_interval: Duration::from_millis(100),
        ..DaemonConfig::default()
    };
    let daemon = daemon_with(&dir, WATCH, config).await;
    let run = daemon.spawn();
    let lead = common::raw_lead("+13055550100", "d");
    callroute::store::Store::enqueue(daemon.store(), &[("x".into(), lead)], chrono::Utc::now())
        .await
        .unwrap();
    daemon.wake();
    let state = |daemon: Arc<Daemon<SqliteStore>>| async move {
        callroute::store::Store::lead(daemon.store(), "x")
            .await
            .unwrap()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while state(daemon.clone()).await.state != callroute::store::LeadState::Held {
        assert!(Instant::now() < deadline, "the lead was not held");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let held = callroute::store::Store::held_reasons(daemon.store())
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    assert!(held[0].0.contains("campaign `d`"), "{held:?}");
    assert_eq!(held[0].1, 1);

    // The campaign arrives: the held lead is decided again at once and dialed.
    std::fs::write(dir.join("d.yaml"), CAMPAIGN_D).unwrap();
    while daemon
        .events()
        .iter()
        .all(|e| !(e.lead_id == "x" && e.outcome == "placed"))
    {
        assert!(
            Instant::now() < deadline,
            "the held lead was not dialed: {:?} {:?}",
            daemon.events(),
            daemon.reload_status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    run.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_can_change_while_synthflow_is_down_if_no_agent_is_new() {
    let dir = scratch("api-down");
    let file = dir.join("rules.yaml");
    std::fs::write(&file, rules(SF, "v1")).unwrap();
    let (daemon, sim) = daemon_and_simulator(
        &dir,
        WATCH,
        DaemonConfig::default(),
        common::sim_config(&[SF, NY]),
    )
    .await;
    sim.set_api_key("revoked"); // every request refused from now on
    std::fs::write(&file, rules(NY, "v2")).unwrap();
    assert!(
        matches!(daemon.reload("test").await, ReloadOutcome::Applied { .. }),
        "the agent's pool was read already: the new rules need nothing from Synthflow"
    );
    assert_eq!(picked(&daemon), NY);
    let _ = std::fs::remove_dir_all(&dir);
}
