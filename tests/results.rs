//! Results back to the user's systems: every call's end and every finished lead reach a
//! receiver as Standard Webhooks (checked with the specification's own Rust library), are
//! tried again while the receiver is down, keep their id on every try, and are not lost.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::Utc;
use serde_json::Value;

use callroute::daemon::{Daemon, DaemonConfig, ResultsTarget};
use callroute::rules::load_dir;
use callroute::store::sqlite::SqliteStore;
use callroute::store::{LeadState, Store, intake};
use callroute::synthflow::simulator::Simulator;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Default)]
struct Receiver {
    /// Deliveries seen: (webhook-id, status answered, body).
    seen: Vec<(String, u16, Value)>,
    /// While true, every delivery gets 503.
    down: bool,
    /// Deliveries whose signature did not verify.
    forged: usize,
}

async fn receiver(state: Arc<Mutex<Receiver>>) -> String {
    let verifier = Arc::new(standardwebhooks::Webhook::new(SECRET).unwrap());
    let app = axum::Router::new().route(
        "/results",
        post(move |headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            let verifier = verifier.clone();
            async move {
                let mut state = state.lock().unwrap();
                if verifier.verify(&body, &headers).is_err() {
                    state.forged += 1;
                    return StatusCode::UNAUTHORIZED;
                }
                let id = headers["webhook-id"].to_str().unwrap().to_string();
                let status = if state.down {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::NO_CONTENT
                };
                let body: Value = serde_json::from_slice(&body).unwrap();
                state.seen.push((id, status.as_u16(), body));
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/results", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_end_and_finished_lead_reaches_the_receiver_signed_even_after_it_was_down() {
    let numbers = ["+14155550100", "+14155550101"];
    let sim = Simulator::new(common::sim_config_answering(&numbers, 0.5, 5));
    let base = sim.start_local().await.unwrap();
    let state = Arc::new(Mutex::new(Receiver {
        down: true,
        ..Receiver::default()
    }));
    let url = receiver(state.clone()).await;

    let dir = std::env::temp_dir().join(format!("callroute-results-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("rules.yaml"),
        format!(
            r#"agents: {{ a: {{ model_id: m-1 }} }}
numbers: {{ "{}": {{}}, "{}": {{}} }}
calling_hours:
  default: {{ days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00" }}
state_laws: false
suppression: {{ dnc: {{ file: dnc.txt }} }}
campaigns:
  c:
    agent: a
    purpose: informational
    routes:
      - numbers: all
"#,
            numbers[0], numbers[1]
        ),
    )
    .unwrap();
    // One lead is on the do-not-call list: it finishes `suppressed` without a call.
    std::fs::write(dir.join("dnc.txt"), "+14155550129\n").unwrap();
    let db = dir.join("queue.db");
    let store = SqliteStore::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let mut csv = String::from("id,phone,name,campaign\n");
    for i in 0..6 {
        csv += &format!("L{i},+1415555012{},N{i},c\n", i + 4);
    }
    let intake = intake::parse(csv.as_bytes()).unwrap();
    store.enqueue(&intake.leads, Utc::now()).await.unwrap();
    let client = common::client(&base);
    let config = DaemonConfig {
        results: Some(ResultsTarget {
            url,
            secret: SECRET.into(),
        }),
        ..common::brisk_daemon_config()
    };
    let rules = Arc::new(load_dir(&dir).unwrap().rules);
    let daemon = Arc::new(Daemon::start(store, rules, client, config).await.unwrap());
    let running = daemon.spawn();

    // While the receiver is down, events are offered and refused; none is lost.
    let finished = |state: &Receiver| {
        state
            .seen
            .iter()
            .filter(|(_, status, body)| *status == 204 && body["type"] == "lead.finished")
            .count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while state.lock().unwrap().seen.len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "nothing offered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(finished(&state.lock().unwrap()), 0);
    state.lock().unwrap().down = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while finished(&state.lock().unwrap()) < 6 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every lead reported finished: {:?}",
            state.lock().unwrap().seen
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every event refused while the receiver was down comes again (after its back-off).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let backlog = daemon.store().outbox_backlog().await.unwrap();
        if backlog == (0, None) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still undelivered: {backlog:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing more arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await.unwrap();

    let state = std::mem::take(&mut *state.lock().unwrap());
    assert_eq!(state.forged, 0, "every delivery verified");
    let delivered: Vec<&(String, u16, Value)> =
        state.seen.iter().filter(|(_, s, _)| *s == 204).collect();
    let mut ids: Vec<&str> = delivered.iter().map(|(id, _, _)| id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), delivered.len(), "each event delivered once");
    // The refused ones came again with the same id.
    for (id, status, _) in state.seen.iter().filter(|(_, s, _)| *s == 503) {
        assert_eq!(*status, 503);
        assert!(
            ids.contains(&id.as_str()),
            "{id} refused and never delivered"
        );
    }
    let ended: Vec<&Value> = delivered
        .iter()
        .map(|(_, _, body)| body)
        .filter(|body| body["type"] == "attempt.ended")
        .collect();
    assert_eq!(ended.len(), 5, "one per call (the listed lead has none)");
    for body in &ended {
        let data = &body["data"];
        assert!(data["phone"].as_str().unwrap().starts_with("+1415555012"));
        assert!(numbers.contains(&data["caller_id"].as_str().unwrap()));
        assert_eq!(data["attempt"], 1);
        assert!(data["call_id"].as_str().unwrap().starts_with("sim-"));
        assert!(data["status"].is_string() && data["ended_at"].is_string());
    }
    let results: Vec<(&str, &str)> = delivered
        .iter()
        .map(|(_, _, body)| body)
        .filter(|body| body["type"] == "lead.finished")
        .map(|body| {
            (
                body["data"]["lead_id"].as_str().unwrap(),
                body["data"]["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(results.contains(&("L5", "suppressed")), "{results:?}");
    let leads = daemon.store().counts().await.unwrap();
    assert!(
        leads
            .iter()
            .all(|(s, n)| *n == 0 || matches!(s, LeadState::Completed | LeadState::Rejected)),
        "{leads:?}"
    );

    // The same results, pulled: `results export` (JSON Lines, then CSV).
    let config = dir.join("callroute.yaml");
    std::fs::write(
        &config,
        format!(
            "store: sqlite://{}\nrules: {}\n",
            db.display(),
            dir.display()
        ),
    )
    .unwrap();
    let export = |format: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_callroute"))
            .args(["results", "export", "--format", format, "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let lines: Vec<Value> = export("jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), delivered.len(), "{lines:?}");
    assert!(lines.iter().all(|e| e["delivered_at"].is_string()));
    assert!(
        lines
            .iter()
            .all(|e| ids.contains(&e["id"].as_str().unwrap()))
    );
    let csv = export("csv");
    assert!(csv.starts_with("seq,id,type,timestamp,lead_id,phone,attempt,caller_id,status,result,delivered_at,tries,data\n"), "{csv}");
    assert_eq!(csv.lines().count(), delivered.len() + 1);
    let _ = std::fs::remove_dir_all(&dir);
}
