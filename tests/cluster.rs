//! Several `callroute run` processes on one PostgreSQL store, against the simulator: one
//! queue, one set of limits, one account's pace; `kill -9` of members and connections cut
//! mid-run. What the simulator logged is checked against every promise: each lead called
//! exactly once, no per-number window exceeded, no 429. Skipped (saying so) without
//! PostgreSQL, unless `CALLROUTE_REQUIRE_PG=1`.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::Connection;

use callroute::synthflow::simulator::{CallBehaviour, SimAgent, SimCall, SimConfig, Simulator};

const BIN: &str = env!("CARGO_BIN_EXE_callroute");
/// The account's attempts per second, shared by every daemon.
const PACE: u32 = 50;
const NUMBERS: usize = 40;
/// Per number: 40 numbers × 50 a minute is exactly the 2,000 leads of the big test, so a
/// single use too many anywhere shows; the gap makes the numbers, not the account's pace,
/// the limit that binds (40 numbers / 0.9 s = 44 calls a second, under 50).
const PER_MINUTE: usize = 50;
const MIN_GAP_MS: i64 = 900;

struct Cluster {
    dir: PathBuf,
    config: PathBuf,
    schema: String,
    daemons: Vec<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for daemon in &mut self.daemons {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn numbers() -> Vec<String> {
    (0..NUMBERS)
        .map(|i| format!("+1415555{:04}", 100 + i))
        .collect()
}

/// Serves `sim` on a runtime and thread of its own: the test's own runtime blocks now and
/// then (spawning processes), and a simulator stalled with it would see requests that left
/// on time arrive in a bunch.
fn serve(sim: &Simulator) -> String {
    let sim = sim.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            tx.send(sim.start_local().await.unwrap()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

fn simulator() -> Simulator {
    Simulator::new(SimConfig {
        api_key: "k".into(),
        attempts_per_second: PACE,
        concurrency: 60,
        agents: vec![SimAgent {
            model_id: "m-1".into(),
            r#type: "outbound".into(),
            attached: numbers(),
        }],
        calls: CallBehaviour {
            ring_ms: 20,
            talk_ms: 60,
            answer_rate: 0.8,
            ..CallBehaviour::default()
        },
        faults: Default::default(),
        seed: 7,
        webhook: None,
        put_replaces: false,
        workspace_numbers: None,
        unlisted_zones: Vec::new(),
    })
}

/// Rules, configuration and `leads` leads (each its own person) in a scratch directory;
/// the store is `schema`.
fn set_up(name: &str, schema: &str, base: &str, leads: usize, lease: &str) -> Cluster {
    let mut csv = String::from("id,phone,name,campaign\n");
    for i in 0..leads {
        csv += &format!(
            "L{i},+1{}555{:04},N{i},c\n",
            ["415", "212", "617", "312"][i % 4],
            2000 + i / 4
        );
    }
    set_up_with(name, schema, base, lease, "", &csv, leads)
}

/// `set_up` with `extra_rules` appended to the rules file and the lead file `csv`
/// (`leads` rows).
fn set_up_with(
    name: &str,
    schema: &str,
    base: &str,
    lease: &str,
    extra_rules: &str,
    csv: &str,
    leads: usize,
) -> Cluster {
    let dir = std::env::temp_dir().join(format!("callroute-cluster-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    let listed: String = numbers()
        .iter()
        .map(|n| format!("  \"{n}\": {{}}\n"))
        .collect();
    std::fs::write(
        dir.join("rules/rules.yaml"),
        format!(
            "agents: {{ a: {{ model_id: m-1 }} }}\nlimits: {{ default: {{ per_minute: {PER_MINUTE}, min_gap: {MIN_GAP_MS}ms }} }}\nnumbers:\n{listed}\
calling_hours:\n  default: {{ days: [mon, tue, wed, thu, fri, sat, sun], start: \"00:00\", end: \"24:00\" }}\nstate_laws: false\n\
campaigns:\n  c:\n    agent: a\n    purpose: informational\n    routes:\n      - numbers: all\n{extra_rules}"
        ),
    )
    .unwrap();
    // The store URL names the schema and tags the connections, so that a test can cut
    // exactly its own.
    let store = format!("{}&application_name={schema}", common::pg_store_url(schema));
    let config = dir.join("callroute.yaml");
    std::fs::write(
        &config,
        format!(
            "synthflow: {{ base_url: \"{base}\", attempts_per_second: {PACE}, concurrency: 40, request_timeout: 2s }}\nrules: {}\nstore: \"{store}\"\nadmin_listen: 127.0.0.1:0\ndialing: {{ poll_interval: 40ms, retry_base: 50ms, retry_max: 500ms, reconcile_delay: 50ms, absent_after: 1s, idle_poll: 200ms, drain_timeout: 3s, lease: {lease} }}\n",
            dir.join("rules").display(),
        ),
    )
    .unwrap();
    std::fs::write(dir.join("leads.csv"), csv).unwrap();
    let cluster = Cluster {
        dir,
        config,
        schema: schema.to_string(),
        daemons: Vec::new(),
    };
    // Migrated once, then enqueued (by `COPY`).
    cluster.callroute(&["migrate"]);
    let enqueued = cluster.callroute(&["enqueue", cluster.dir.join("leads.csv").to_str().unwrap()]);
    assert!(
        enqueued.contains(&format!("accepted {leads}")),
        "{enqueued}"
    );
    cluster
}

impl Cluster {
    fn callroute(&self, args: &[&str]) -> String {
        let output = Command::new(BIN)
            .args(&args[..1])
            .args(["--config", self.config.to_str().unwrap()])
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "callroute {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn start_daemon(&mut self) {
        let log =
            std::fs::File::create(self.dir.join(format!("daemon-{}.log", self.daemons.len())))
                .unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config", self.config.to_str().unwrap()])
            .env("SYNTHFLOW_API_KEY", "k")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemons.push(child);
    }

    async fn db(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&common::pg_store_url(&self.schema))
            .await
            .unwrap()
    }

    /// Leads not yet finished (anything but completed / failed / rejected).
    async fn open_leads(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM leads WHERE state NOT IN ('completed', 'failed', 'rejected')",
        )
        .fetch_one(&mut self.db().await)
        .await
        .unwrap()
    }

    /// Waits until every lead is finished in the store and called; returns how many leads
    /// are still open (0 when done).
    async fn wait_until_done(&self, sim: &Simulator, leads: usize, within: Duration) -> i64 {
        let deadline = Instant::now() + within;
        while (self.open_leads().await > 0 || sim.log().len() < leads) && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Anything extra would show now.
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.open_leads().await
    }

    fn stop_all(&mut self) {
        for daemon in &self.daemons {
            let _ = Command::new("kill")
                .args(["-TERM", &daemon.id().to_string()])
                .status();
        }
        for daemon in &mut self.daemons {
            let status = daemon.wait().unwrap();
            assert!(status.success() || status.code().is_none(), "{status:?}");
        }
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for i in 0..self.daemons.len() {
            let text = std::fs::read_to_string(self.dir.join(format!("daemon-{i}.log")))
                .unwrap_or_default();
            all += &format!("--- daemon {i} ---\n{}\n", tail(&text, 30));
        }
        all
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Every promise, checked on what the simulator saw.
fn assert_promises_kept(log: &[SimCall], leads: usize, rate_limited: u64, logs: &str) {
    let mut by_lead: HashMap<&str, usize> = HashMap::new();
    let mut by_number: HashMap<&str, Vec<DateTime<Utc>>> = HashMap::new();
    for call in log {
        *by_lead.entry(&call.request.phone).or_default() += 1;
        let from = call
            .request
            .from_phone_number
            .as_deref()
            .expect("a caller ID");
        by_number.entry(from).or_default().push(call.accepted_at);
    }
    let twice: Vec<_> = by_lead.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "leads called more than once: {twice:?}\n{logs}"
    );
    assert_eq!(by_lead.len(), leads, "every lead called\n{logs}");
    assert_eq!(
        rate_limited, 0,
        "the account's pace was exceeded (429s)\n{logs}"
    );
    for (number, times) in &mut by_number {
        times.sort();
        for (i, t) in times.iter().enumerate() {
            let in_minute = times[..=i]
                .iter()
                .filter(|u| *t - **u < chrono::Duration::minutes(1))
                .count();
            assert!(
                in_minute <= PER_MINUTE,
                "{number} used {in_minute} times in a minute"
            );
            if i > 0 {
                // Ledger times and the simulator's differ by the requests' latencies.
                let gap = (*t - times[i - 1]).num_milliseconds();
                assert!(
                    gap >= MIN_GAP_MS - 60,
                    "{number}: min_gap broken ({gap} ms)"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_call_each_lead_once_within_every_limit() {
    let Some(schema) = common::pg_schema("cluster_three").await else {
        return;
    };
    const LEADS: usize = 2_000;
    let sim = simulator();
    let base = serve(&sim);
    let mut cluster = set_up("three", &schema, &base, LEADS, "5s");
    for _ in 0..3 {
        cluster.start_daemon();
    }
    let open = cluster
        .wait_until_done(&sim, LEADS, Duration::from_secs(150))
        .await;
    let members: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM members WHERE left_at IS NULL")
        .fetch_one(&mut cluster.db().await)
        .await
        .unwrap();
    cluster.stop_all();
    let logs = cluster.logs();
    assert_eq!(members, 3, "three members live\n{logs}");
    assert_promises_kept(&sim.log(), LEADS, sim.rate_limited(), &logs);
    assert_eq!(
        open, 0,
        "every lead finished in the store (none left placed or dialing)\n{logs}"
    );
    // All three worked: one queue, shared.
    let attempts_by_member: Vec<i64> = sqlx::query_scalar(
        "SELECT COUNT(*) FROM attempts a JOIN members m ON m.id = a.owner OR m.taken_over_by = a.owner GROUP BY m.id",
    )
    .fetch_all(&mut cluster.db().await)
    .await
    .unwrap_or_default();
    eprintln!("attempts by member: {attempts_by_member:?}");
}

/// A 24 h cap counts calls to the person under any lead id, across daemons: each person
/// is five rows of the list, spread over the daemons' claims, and is called three times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_keep_a_persons_cap_across_lead_ids() {
    let Some(schema) = common::pg_schema("cluster_person").await else {
        return;
    };
    const PERSONS: usize = 40;
    const ROWS: usize = 5;
    const CAP: usize = 3;
    let mut csv = String::from("id,phone,name,campaign\n");
    // Row-major, so each daemon's claim holds rows of every person.
    for row in 0..ROWS {
        for person in 0..PERSONS {
            csv += &format!("R{row}-P{person:02},+1305555{:04},N,c\n", 2000 + person);
        }
    }
    let sim = simulator();
    let base = serve(&sim);
    let extra = format!("lead_attempts:\n  default: {{ per_24h: {CAP} }}\n");
    let mut cluster = set_up_with("person", &schema, &base, "5s", &extra, &csv, PERSONS * ROWS);
    for _ in 0..3 {
        cluster.start_daemon();
    }
    let calls = PERSONS * CAP;
    let deadline = Instant::now() + Duration::from_secs(60);
    let unsettled = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM leads WHERE state NOT IN ('completed', 'failed', 'rejected', 'deferred')",
        )
        .fetch_one(&mut cluster.db().await)
        .await
        .unwrap()
    };
    while (unsettled().await > 0 || sim.log().len() < calls) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Anything extra would show now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deferred: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT id, reason, due_at FROM leads WHERE state = 'deferred' ORDER BY id")
            .fetch_all(&mut cluster.db().await)
            .await
            .unwrap();
    let unsettled: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT id, state, reason FROM leads WHERE state NOT IN ('completed', 'deferred')",
    )
    .fetch_all(&mut cluster.db().await)
    .await
    .unwrap();
    cluster.stop_all();
    let logs = cluster.logs();
    let mut by_person: HashMap<String, usize> = HashMap::new();
    for call in sim.log() {
        *by_person.entry(call.request.phone.clone()).or_default() += 1;
    }
    let over: Vec<_> = by_person.iter().filter(|(_, n)| **n > CAP).collect();
    assert!(
        over.is_empty(),
        "persons called over the cap: {over:?}\n{logs}"
    );
    assert_eq!(by_person.len(), PERSONS, "every person called\n{logs}");
    let under: Vec<_> = by_person.iter().filter(|(_, n)| **n < CAP).collect();
    assert!(
        under.is_empty(),
        "persons called under the cap: {under:?}\nnot done: {unsettled:?}\ndeferred: {deferred:?}\n{logs}"
    );
    assert_eq!(
        deferred.len(),
        PERSONS * (ROWS - CAP),
        "{deferred:?}\n{logs}"
    );
    assert!(
        deferred
            .iter()
            .all(|(_, reason, _)| reason.contains("any lead")),
        "the rest wait for the person's cap: {deferred:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_member_is_taken_over_within_the_lease() {
    let Some(schema) = common::pg_schema("cluster_kill").await else {
        return;
    };
    const LEADS: usize = 600;
    let lease = Duration::from_secs(3);
    let sim = simulator();
    let base = serve(&sim);
    let mut cluster = set_up("kill", &schema, &base, LEADS, "3s");
    for _ in 0..3 {
        cluster.start_daemon();
    }
    let mut takeovers = Vec::new();
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        // The oldest live daemon dies mid-run; survivors carry on.
        let victim = round % cluster.daemons.len();
        let pid = cluster.daemons[victim].id();
        // A member, not a process still starting (a loaded machine may take seconds to
        // start one): only a member that joined has a lease to take over.
        let mut db = cluster.db().await;
        let started = Instant::now();
        loop {
            let joined: Option<i64> = sqlx::query_scalar("SELECT pid FROM members WHERE pid = $1")
                .bind(i64::from(pid))
                .fetch_optional(&mut db)
                .await
                .unwrap();
            if joined.is_some() {
                if started.elapsed() > Duration::from_millis(100) {
                    eprintln!(
                        "round {round}: waited {:?} for pid {pid} to join",
                        started.elapsed()
                    );
                }
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "daemon {pid} never joined"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cluster.daemons[victim].kill().unwrap(); // SIGKILL
        cluster.daemons[victim].wait().unwrap();
        let killed_at = Instant::now();
        let taken_over = loop {
            let taken: Option<String> = sqlx::query_scalar(
                "SELECT taken_over_by FROM members WHERE pid = $1 AND taken_over_by IS NOT NULL",
            )
            .bind(i64::from(pid))
            .fetch_optional(&mut db)
            .await
            .unwrap()
            .flatten();
            if taken.is_some() || killed_at.elapsed() > lease * 4 {
                break killed_at.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        eprintln!("round {round}: pid {pid} taken over after {taken_over:?}");
        takeovers.push(taken_over);
        // A replacement joins (as systemd would restart it).
        let log = std::fs::File::create(cluster.dir.join(format!("daemon-r{round}.log"))).unwrap();
        cluster.daemons[victim] = Command::new(BIN)
            .args(["run", "--config", cluster.config.to_str().unwrap()])
            .env("SYNTHFLOW_API_KEY", "k")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
    }
    let open = cluster
        .wait_until_done(&sim, LEADS, Duration::from_secs(120))
        .await;
    cluster.stop_all();
    let logs = cluster.logs();
    for taken in &takeovers {
        // The lease, plus the survivors' heartbeat interval (a third of it), plus slack.
        assert!(
            *taken < lease + lease / 3 + Duration::from_millis(1_500),
            "taken over only after {taken:?}\n{logs}"
        );
    }
    assert_promises_kept(&sim.log(), LEADS, sim.rate_limited(), &logs);
    assert_eq!(
        open, 0,
        "every lead finished in the store (none left placed or dialing)\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_mid_run_pause_the_daemons_and_lose_nothing() {
    let Some(schema) = common::pg_schema("cluster_cut").await else {
        return;
    };
    const LEADS: usize = 600;
    let sim = simulator();
    let base = serve(&sim);
    let mut cluster = set_up("cut", &schema, &base, LEADS, "5s");
    for _ in 0..2 {
        cluster.start_daemon();
    }
    let mut admin = sqlx::PgConnection::connect(&common::pg_url())
        .await
        .unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        // A daemon between connections (starting, or waiting a second after the last cut)
        // has none to cut: wait until it has reconnected.
        let deadline = Instant::now() + Duration::from_secs(10);
        let cut = loop {
            let cut: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            )
            .bind(&schema)
            .fetch_all(&mut admin)
            .await
            .unwrap();
            if !cut.is_empty() || Instant::now() > deadline {
                break cut;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        eprintln!("cut {} connections", cut.len());
        assert!(!cut.is_empty(), "the daemons' connections were found");
    }
    let open = cluster
        .wait_until_done(&sim, LEADS, Duration::from_secs(120))
        .await;
    cluster.stop_all();
    let logs = cluster.logs();
    assert_promises_kept(&sim.log(), LEADS, sim.rate_limited(), &logs);
    assert_eq!(
        open, 0,
        "every lead finished in the store (none left placed or dialing)\n{logs}"
    );
}
