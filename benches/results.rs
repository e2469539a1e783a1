//! Results delivery, printed in one run (`cargo bench --bench results`): a daemon on SQLite
//! places calls against the simulator and delivers every `attempt.ended` and
//! `lead.finished` to a local receiver as Standard Webhooks.
//! - delivery latency (event written → received), p50 / p99, while calls run at 100/s;
//! - events per second when a backlog is delivered (the same events marked undelivered,
//!   then a fresh daemon started: what a receiver back after an outage sees).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use chrono::Utc;
use sqlx::Connection;

use callroute::daemon::{Daemon, DaemonConfig, ResultsTarget};
use callroute::rules::compile_sources;
use callroute::store::sqlite::SqliteStore;
use callroute::store::{Store, intake};
use callroute::synthflow::simulator::Simulator;

mod common;
use common::{client, csv, numbers, sim_config};

const LEADS: usize = 2_000;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Arrivals: (when received, the event's own timestamp).
type Arrivals = Arc<Mutex<Vec<(chrono::DateTime<Utc>, chrono::DateTime<Utc>)>>>;

async fn receiver(arrivals: Arrivals) -> String {
    let app = axum::Router::new().route(
        "/r",
        post(move |body: Bytes| {
            let arrivals = arrivals.clone();
            async move {
                let now = Utc::now();
                let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let written = event["timestamp"].as_str().unwrap().parse().unwrap();
                arrivals.lock().unwrap().push((now, written));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/r", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn config(url: &str) -> DaemonConfig {
    DaemonConfig {
        attempts_per_second: 100,
        concurrency: 50,
        poll_interval: Duration::from_millis(20),
        idle_poll: Duration::from_millis(100),
        results: Some(ResultsTarget {
            url: url.to_string(),
            secret: SECRET.into(),
        }),
        ..DaemonConfig::default()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sim = Simulator::new(sim_config(100, 50));
    let base = sim.start_local().await.unwrap();
    let listed: String = numbers()
        .iter()
        .map(|n| format!("  \"{n}\": {{}}\n"))
        .collect();
    let text = format!(
        "agents: {{ a: {{ model_id: m-1 }} }}\nnumbers:\n{listed}calling_hours:\n  default: {{ days: [mon, tue, wed, thu, fri, sat, sun], start: \"00:00\", end: \"24:00\" }}\nstate_laws: false\ncampaigns:\n  c:\n    agent: a\n    purpose: informational\n    routes:\n      - numbers: all\n"
    );
    let rules = Arc::new(
        compile_sources(&[(std::path::Path::new("r.yaml"), text.as_str())])
            .0
            .unwrap(),
    );
    let dir = std::env::temp_dir().join(format!("callroute-bench-results-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url_db = format!("sqlite://{}", dir.join("q.db").display());

    // Latency while calls run.
    let arrivals: Arrivals = Arc::default();
    let url = receiver(arrivals.clone()).await;
    let store = SqliteStore::open(&url_db).await.unwrap();
    let leads = intake::parse(csv(LEADS, 0).as_bytes()).unwrap();
    store.enqueue(&leads.leads, Utc::now()).await.unwrap();
    let daemon = Arc::new(
        Daemon::start(store, rules.clone(), client(&base), config(&url))
            .await
            .unwrap(),
    );
    let running = daemon.spawn();
    let deadline = Instant::now() + Duration::from_secs(120);
    while arrivals.lock().unwrap().len() < 2 * LEADS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await.unwrap();
    let mut latencies: Vec<f64> = arrivals
        .lock()
        .unwrap()
        .iter()
        .map(|(at, written)| (*at - *written).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "results: {} events delivered while {LEADS} calls ran at 100/s; latency written -> received p50 {:.1} ms, p99 {:.1} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );

    // A backlog: every event undelivered again, a fresh daemon.
    let mut db = sqlx::SqliteConnection::connect(&url_db).await.unwrap();
    let backlog = sqlx::query("UPDATE outbox SET delivered_at = NULL, next_at = 0, tries = 0")
        .execute(&mut db)
        .await
        .unwrap()
        .rows_affected() as usize;
    drop(db);
    let arrivals: Arrivals = Arc::default();
    let url = receiver(arrivals.clone()).await;
    let store = SqliteStore::open(&url_db).await.unwrap();
    let daemon = Arc::new(
        Daemon::start(store, rules, client(&base), config(&url))
            .await
            .unwrap(),
    );
    let started = Instant::now();
    let running = daemon.spawn();
    let deadline = Instant::now() + Duration::from_secs(120);
    while arrivals.lock().unwrap().len() < backlog && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed();
    let left = daemon.store().outbox_backlog().await.unwrap().0;
    running.stop().await.unwrap();
    println!(
        "results: a backlog of {backlog} events delivered in {:.2} s: {:.0} events/s (one daemon, one delivery at a time; {left} left)",
        took.as_secs_f64(),
        arrivals.lock().unwrap().len() as f64 / took.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
