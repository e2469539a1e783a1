//! Several daemons on one PostgreSQL store, printed in one run (`cargo bench --bench
//! cluster`, or `tools/bench-cluster.sh`; needs PostgreSQL at `CALLROUTE_TEST_PG`, default
//! postgres://postgres@127.0.0.1:5432/test, and `psql`):
//! - placed calls per second with every limit lifted: 1 daemon on SQLite, 1 and 3 daemons on
//!   PostgreSQL, the same simulator, beside a bare HTTP loop;
//! - pacing of 3 daemons sharing 20 attempts/s: placed / allowed, and 429s;
//! - tight per-number limits over 3 daemons: decisions retried per 1,000 calls;
//! - attempt commit latency (p50 / p99) on PostgreSQL, one writer and three at once;
//! - enqueue of 1,000,000 CSV rows (`COPY`) beside `psql \copy` of the same file.
//!
//! The daemons here are `Daemon`s in one process, each with its own store connection pool
//! and member id: to the store they are as separate as processes (the tests run processes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::Connection;

use callroute::daemon::{Daemon, DaemonConfig, RetryCounts};
use callroute::rules::compile_sources;
use callroute::store::intake;
use callroute::store::postgres::PgStore;
use callroute::store::sqlite::SqliteStore;
use callroute::store::{AttemptGuard, NewAttempt, NumberUses, Store, SuppressionGuard};

/// A proof as large as the daemon writes with each attempt (lists, laws, attempt counts).
const PROOF: &str = r##"{"rules_hash":"9c1f0e5a7b3d2c11","decided_at":"2026-03-04T17:00:00.000Z","lead":{"id":"c1","phone":"+12122000001","campaign":"c","consent_at":null,"consent_source":null},"caller_id":{"number":"+12125550100","picked_by":"area_code","route":"#1"},"states":{"states":["NY"],"how":"its number's state NY"},"calling_window":{"zones":["America/New_York"],"states":["NY"],"open_now":true,"next_open":"2026-03-04T17:00:00.000Z","laws":[],"closed_by":[]},"consent":null,"attempts":[{"state":"NY","window":"per_24h","used":0,"limit":3}],"lists":[{"list":"dnc","version":"4f2a9b0c1d2e3f40","hit":null},{"list":"internal","version":"store","hit":null}],"tables":["state-laws 2026.1"]}"##;
use callroute::synthflow::simulator::Simulator;

mod common;
use common::{MODEL, bare_loop, client, csv, numbers, sim_config};

fn pg_url() -> String {
    std::env::var("CALLROUTE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// Serves a simulator on a runtime of its own (its arrival stamps do not wait for ours).
fn simulator(attempts_per_second: u32, concurrency: u32) -> (Simulator, String) {
    let sim = Simulator::new(sim_config(attempts_per_second, concurrency));
    let served = sim.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                tx.send(served.start_local().await.unwrap()).unwrap();
                std::future::pending::<()>().await;
            });
    });
    (sim, rx.recv().unwrap())
}

fn rules(limits: &str) -> Arc<callroute::rules::RuleSet> {
    let numbers: String = numbers()
        .iter()
        .map(|n| format!("  \"{n}\": {{}}\n"))
        .collect();
    let text = format!(
        "agents: {{ a: {{ model_id: {MODEL} }} }}\n{limits}numbers:\n{numbers}calling_hours:\n  default: {{ days: [mon, tue, wed, thu, fri, sat, sun], start: \"00:00\", end: \"24:00\" }}\nstate_laws: false\ncampaigns:\n  c:\n    agent: a\n    purpose: informational\n    routes:\n      - numbers: all\n"
    );
    Arc::new(
        compile_sources(&[(std::path::Path::new("bench.yaml"), text.as_str())])
            .0
            .unwrap(),
    )
}

/// A fresh schema; its name.
async fn schema(name: &str) -> String {
    let mut connection = sqlx::PgConnection::connect(&pg_url()).await.unwrap();
    for statement in [
        format!("DROP SCHEMA IF EXISTS {name} CASCADE"),
        format!("CREATE SCHEMA {name}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut connection)
            .await
            .unwrap();
    }
    name.to_string()
}

struct Run {
    /// First to last accepted call.
    seconds: f64,
    calls: usize,
    rate_limited: u64,
    retries: RetryCounts,
}

/// `daemons` daemons (on `stores`) over `leads` queued leads until the simulator has seen
/// them all.
async fn run<S: Store + Clone>(
    stores: Vec<S>,
    sim: &Simulator,
    base: &str,
    leads: usize,
    limits: &str,
    attempts_per_second: u32,
) -> Run {
    let intake = intake::parse(csv(leads, 0).as_bytes()).unwrap();
    stores[0].enqueue(&intake.leads, Utc::now()).await.unwrap();
    let already = sim.log().len();
    let limited_before = sim.rate_limited();
    let mut daemons = Vec::new();
    for store in stores {
        let config = DaemonConfig {
            attempts_per_second,
            concurrency: 100_000,
            claim_batch: 256,
            poll_interval: Duration::from_millis(5),
            idle_poll: Duration::from_millis(50),
            ..DaemonConfig::default()
        };
        let daemon = Arc::new(
            Daemon::start(store, rules(limits), client(base), config)
                .await
                .unwrap(),
        );
        let running = daemon.spawn();
        daemons.push((daemon, running));
    }
    while sim.log().len() < already + leads {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut retries = RetryCounts::default();
    for (daemon, running) in daemons {
        let r = daemon.retries();
        retries.stale += r.stale;
        retries.account_busy += r.account_busy;
        retries.paced += r.paced;
        retries.sent_late += r.sent_late;
        running.stop().await.unwrap();
    }
    let log = sim.log();
    let ours = &log[already..];
    let first = ours.iter().map(|c| c.accepted_at).min().unwrap();
    let last = ours.iter().map(|c| c.accepted_at).max().unwrap();
    Run {
        seconds: (last - first).num_microseconds().unwrap() as f64 / 1e6,
        calls: ours.len(),
        rate_limited: sim.rate_limited() - limited_before,
        retries,
    }
}

async fn pg_stores(schema: &str, n: usize) -> Vec<PgStore> {
    let mut stores = Vec::new();
    for _ in 0..n {
        stores.push(
            PgStore::open_in_schema(&pg_url(), Some(schema))
                .await
                .unwrap(),
        );
    }
    stores
}

/// Commit latencies (µs, sorted) of `count` attempts by each of `writers` members at once,
/// with the guards the daemon uses (a number with limits, the live-call limit, the pace).
async fn commit_latencies(schema: &str, writers: usize, count: usize) -> Vec<u128> {
    let stores = pg_stores(schema, writers).await;
    let leads: Vec<_> = (0..writers * count)
        .map(|i| {
            let n = 2_000_000 + i;
            (
                format!("c{i}"),
                callroute::lead::RawLead {
                    phone: Some(format!("+1212{n:07}")),
                    name: Some("N".into()),
                    campaign: Some("c".into()),
                    ..Default::default()
                },
            )
        })
        .collect();
    stores[0].enqueue(&leads, Utc::now()).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for store in stores {
        tasks.spawn(async move {
            let claimed = store.claim_due(Utc::now(), count as u32).await.unwrap();
            let mut latencies = Vec::new();
            for (i, lead) in claimed.iter().enumerate() {
                let number = &numbers()[i % 50];
                let now = Utc::now();
                let attempt = NewAttempt {
                    lead_id: &lead.id,
                    model_id: MODEL,
                    from_number: number,
                    route: "r",
                    account: "default",
                    at: now,
                    proof: Some(PROOF),
                    to_number: lead.raw.phone.as_deref(),
                };
                let guard = AttemptGuard {
                    number_uses: Some(NumberUses {
                        since: now - chrono::Duration::minutes(1),
                        known_ms: Vec::new(),
                    }),
                    concurrency: Some(1_000_000),
                    per_second: Some(1_000_000),
                    suppression: Some(SuppressionGuard {
                        number: lead.raw.phone.clone().unwrap_or_default(),
                        exempt: Vec::new(),
                        now,
                    }),
                    person_calls: None,
                };
                let started = Instant::now();
                let _ = store.begin_attempt_checked(&attempt, &guard).await.unwrap();
                latencies.push(started.elapsed().as_micros());
            }
            latencies
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.unwrap());
    }
    all.sort_unstable();
    all
}

fn percentile(sorted: &[u128], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize] as f64 / 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks; there are none to run as tests
    }
    if sqlx::PgConnection::connect(&pg_url()).await.is_err() {
        println!("no PostgreSQL at {}: nothing measured", pg_url());
        return;
    }
    let only_enqueue = std::env::var("CALLROUTE_BENCH_ONLY").is_ok_and(|v| v == "enqueue");
    if !only_enqueue {
        measure_daemons().await;
    }
    measure_enqueue().await;
}

async fn measure_daemons() {
    // 1. Throughput with every limit lifted.
    let (sim, base) = simulator(1_000_000, 1_000_000);
    let leads = 3_000;
    let bare = bare_loop(&base, leads, 64).await;
    println!(
        "throughput, limits lifted ({leads} calls each): bare HTTP loop, 64 in flight: {:.0} calls/s",
        leads as f64 / bare
    );
    let sqlite = run(
        vec![SqliteStore::open("sqlite::memory:").await.unwrap()],
        &sim,
        &base,
        leads,
        "",
        100_000,
    )
    .await;
    println!(
        "  1 daemon, SQLite:      {:.0} placed calls/s",
        sqlite.calls as f64 / sqlite.seconds
    );
    for n in [1, 3] {
        let schema = schema(&format!("bench_throughput_{n}")).await;
        let r = run(pg_stores(&schema, n).await, &sim, &base, leads, "", 100_000).await;
        println!(
            "  {n} daemon{} PostgreSQL:  {:.0} placed calls/s",
            if n == 1 { ", " } else { "s," },
            r.calls as f64 / r.seconds
        );
    }

    // 2. Pacing: 3 daemons sharing an account of 20 attempts/s.
    let (paced_sim, paced_base) = simulator(20, 1_000);
    let schema_paced = schema("bench_pacing").await;
    let paced = run(
        pg_stores(&schema_paced, 3).await,
        &paced_sim,
        &paced_base,
        400,
        "",
        20,
    )
    .await;
    let achieved = (paced.calls - 1) as f64 / paced.seconds;
    println!(
        "pacing, 3 daemons sharing 20 attempts/s: {achieved:.2}/s, placed/allowed {:.3}, {} x 429",
        achieved / 20.0,
        paced.rate_limited
    );

    // 3. Tight per-number limits over 3 daemons: what the commit-time check costs.
    let schema_tight = schema("bench_tight").await;
    let tight = run(
        pg_stores(&schema_tight, 3).await,
        &sim,
        &base,
        1_500,
        "limits: { default: { per_minute: 30, min_gap: 1s } }\n",
        100,
    )
    .await;
    let per_thousand = |n: u64| n as f64 * 1000.0 / tight.calls as f64;
    println!(
        "tight limits (50 numbers, min_gap 1s, 30/min), 3 daemons, 100/s: {} calls in {:.1} s; decisions retried per 1,000 calls: {:.1} stale, {:.1} account busy, {:.1} paced; sends dropped late {:.1}",
        tight.calls,
        tight.seconds,
        per_thousand(tight.retries.stale),
        per_thousand(tight.retries.account_busy),
        per_thousand(tight.retries.paced),
        per_thousand(tight.retries.sent_late)
    );

    // 4. Commit latency.
    for writers in [1, 3] {
        let schema = schema(&format!("bench_commit_{writers}")).await;
        let latencies = commit_latencies(&schema, writers, 1_000).await;
        println!(
            "attempt commit on PostgreSQL, {writers} writer{}: p50 {:.2} ms, p99 {:.2} ms",
            if writers == 1 { "" } else { "s" },
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        );
    }
}

fn psql(command: &str) -> f64 {
    let started = Instant::now();
    let status = std::process::Command::new("psql")
        .args([pg_url().as_str(), "-q", "-c", command])
        .status()
        .expect("psql");
    assert!(status.success(), "psql -c {command}");
    started.elapsed().as_secs_f64()
}

/// Enqueue of 1,000,000 rows by the built binary (`callroute enqueue`), beside `psql \copy`
/// of the same file into a bare table and of the same rows into the queue table (the same
/// work on the database's side, without reading or checking).
async fn measure_enqueue() {
    let dir = std::env::temp_dir().join(format!("callroute-bench-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("million.csv");
    std::fs::write(&file, csv(1_000_000, 0)).unwrap();
    let schema = schema("bench_enqueue").await;
    let config = dir.join("callroute.yaml");
    std::fs::write(
        &config,
        format!("store: \"{}?options=-csearch_path%3D{schema}\"\n", pg_url()),
    )
    .unwrap();
    let enqueue = |file: &std::path::Path| {
        let started = Instant::now();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_callroute"))
            .args([
                "enqueue",
                "--config",
                config.to_str().unwrap(),
                file.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        (
            started.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    callroute_migrate(&config);
    let (ours, said) = enqueue(&file);
    assert!(said.contains("accepted 1000000"), "{said}");
    let (again, said_again) = enqueue(&file);
    assert!(said_again.contains("duplicate 1000000"), "{said_again}");
    // Reading and checking the rows alone (what the database does not do in psql's copy).
    let started = Instant::now();
    let reader = std::io::BufReader::new(std::fs::File::open(&file).unwrap());
    let checked: usize = intake::batches(reader, 50_000)
        .unwrap()
        .map(|b| b.leads.len())
        .sum();
    let checking = started.elapsed().as_secs_f64();
    assert_eq!(checked, 1_000_000);
    psql(&format!(
        "CREATE TABLE {schema}.bare (phone TEXT, name TEXT, campaign TEXT)"
    ));
    let bare = psql(&format!(
        "\\copy {schema}.bare FROM '{}' WITH (FORMAT csv, HEADER true)",
        file.display()
    ));
    let rows = dir.join("leads.tsv");
    let columns = "id, payload, campaign, due_at, state, created_at, updated_at";
    psql(&format!(
        "\\copy {schema}.leads ({columns}) TO '{}'",
        rows.display()
    ));
    psql(&format!("TRUNCATE {schema}.leads"));
    let into_queue = psql(&format!(
        "\\copy {schema}.leads ({columns}) FROM '{}'",
        rows.display()
    ));
    println!(
        "enqueue of 1,000,000 CSV rows on PostgreSQL (callroute enqueue): {ours:.2} s, {:.0} rows/s (reading and checking alone {checking:.2} s); the same file again, all duplicates: {again:.2} s",
        1e6 / ours
    );
    println!(
        "  psql \\copy of the file into a bare table: {bare:.2} s (callroute at {:.2} of its speed); psql \\copy of the same rows into the queue table: {into_queue:.2} s (callroute at {:.2} of its speed)",
        bare / ours,
        into_queue / ours
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn callroute_migrate(config: &std::path::Path) {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_callroute"))
        .args(["migrate", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}
