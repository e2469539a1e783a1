//! Daemon figures, printed in one run (`cargo bench --bench daemon`; `tools/bench-daemon.sh`
//! adds the memory of a real `callroute run` over a million queued leads):
//! - placed calls per second against the simulator with every limit lifted, next to a bare
//!   reqwest loop POSTing to the same simulator;
//! - achieved rate / allowed rate when pacing at 20 attempts/s, and the 429s seen;
//! - enqueue time for 1,000,000 CSV rows (parse, validate, store).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use callroute::daemon::{Daemon, DaemonConfig};
use callroute::rules::compile_sources;
use callroute::store::Store;
use callroute::store::intake;
use callroute::store::sqlite::SqliteStore;
use callroute::synthflow::simulator::Simulator;

mod common;
use common::{MODEL, bare_loop, client, csv, numbers, sim_config};

async fn simulator(attempts_per_second: u32, concurrency: u32) -> (Simulator, String) {
    let sim = Simulator::new(sim_config(attempts_per_second, concurrency));
    let base = sim.start_local().await.unwrap();
    (sim, base)
}

/// Runs the daemon over `leads` leads until the simulator has seen them all; returns the
/// seconds from the first to the last accepted call.
async fn daemon_run(
    base: &str,
    sim: &Simulator,
    leads: usize,
    attempts_per_second: u32,
    concurrency: u32,
) -> f64 {
    let numbers: String = numbers()
        .iter()
        .map(|n| format!("  \"{n}\": {{}}\n"))
        .collect();
    let rules = format!(
        "agents: {{ a: {{ model_id: {MODEL} }} }}\nnumbers:\n{numbers}calling_hours:\n  default: {{ days: [mon, tue, wed, thu, fri, sat, sun], start: \"00:00\", end: \"24:00\" }}\nstate_laws: false\ncampaigns:\n  c:\n    agent: a\n    purpose: informational\n    routes:\n      - numbers: all\n        local_presence: [area_code, state, any]\n"
    );
    let rules = Arc::new(
        compile_sources(&[(std::path::Path::new("bench.yaml"), rules.as_str())])
            .0
            .unwrap(),
    );
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    let intake = intake::parse(csv(leads, 0).as_bytes()).unwrap();
    store.enqueue(&intake.leads, Utc::now()).await.unwrap();
    let config = DaemonConfig {
        attempts_per_second,
        concurrency,
        claim_batch: 256,
        poll_interval: Duration::from_millis(5),
        idle_poll: Duration::from_millis(50),
        ..DaemonConfig::default()
    };
    let daemon = Arc::new(
        Daemon::start(store, rules, client(base), config)
            .await
            .unwrap(),
    );
    let running = daemon.spawn();
    let already = sim.log().len();
    while sim.log().len() < already + leads {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await.unwrap();
    let log = sim.log();
    let ours = &log[already..];
    (ours.last().unwrap().accepted_at - ours.first().unwrap().accepted_at)
        .num_microseconds()
        .unwrap() as f64
        / 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks; there are none to run as tests
    }
    // 1. Throughput with every limit lifted.
    let (sim, base) = simulator(1_000_000, 1_000_000).await;
    let leads = 5_000;
    let seconds = daemon_run(&base, &sim, leads, 1_000_000, 100_000).await;
    let bare_seconds = bare_loop(&base, leads, 64).await;
    println!(
        "throughput, limits lifted: daemon {:.0} placed calls/s ({leads} calls in {seconds:.2} s); bare reqwest loop, 64 in flight: {:.0} calls/s",
        leads as f64 / seconds,
        leads as f64 / bare_seconds
    );

    // 2. Pacing at 20 attempts/s against an account allowing exactly 20.
    let (sim, base) = simulator(20, 10_000).await;
    let leads = 300;
    let seconds = daemon_run(&base, &sim, leads, 20, 1_000).await;
    let achieved = (leads - 1) as f64 / seconds;
    println!(
        "pacing at 20/s: achieved {achieved:.2} attempts/s = {:.3} of allowed; 429s: {}",
        achieved / 20.0,
        sim.rate_limited()
    );

    // 3. Enqueue of 1,000,000 CSV rows.
    let text = csv(1_000_000, 0);
    let dir = std::env::temp_dir().join(format!("callroute-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(&format!("sqlite://{}", dir.join("q.db").display()))
        .await
        .unwrap();
    let started = Instant::now();
    let intake = intake::parse(text.as_bytes()).unwrap();
    let parsed = started.elapsed();
    let counts = store.enqueue(&intake.leads, Utc::now()).await.unwrap();
    let total = started.elapsed();
    println!(
        "enqueue 1,000,000 CSV rows: {:.1} s ({:.1} s parse and validate, {:.1} s store); accepted {}, rejected {}",
        total.as_secs_f64(),
        parsed.as_secs_f64(),
        (total - parsed).as_secs_f64(),
        counts.accepted,
        intake.rejected.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
