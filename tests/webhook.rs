//! The post-call webhook: the simulator posts it, signed; the daemon's admin listener
//! verifies the signature and has the call's record read at once, instead of at its next
//! poll. A webhook is never the authority: forged or replayed ones change nothing.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use callroute::daemon::{Daemon, DaemonConfig};
use callroute::lead::RawLead;
use callroute::rules::compile_sources;
use callroute::store::sqlite::SqliteStore;
use callroute::store::{LeadState, Store};
use callroute::synthflow::simulator::{CallBehaviour, SimConfig, SimWebhook, Simulator};
use callroute::synthflow::webhook::sign;

const RULES: &str = "agents: { a: { model_id: m-1 } }\nnumbers:\n  \"+14155550100\": {}\ncalling_hours:\n  default: { days: [mon, tue, wed, thu, fri, sat, sun], start: \"00:00\", end: \"24:00\" }\nstate_laws: false\ncampaigns:\n  c:\n    agent: a\n    purpose: informational\n    routes:\n      - numbers: all\n";

/// Lead `id` calling `phone` in campaign `c`.
fn lead_with_id(id: &str, phone: &str) -> RawLead {
    RawLead {
        id: Some(id.into()),
        ..common::raw_lead(phone, "c")
    }
}

/// Every call answered after a short ring, talking for `talk_ms`.
fn answered_calls(talk_ms: u64) -> CallBehaviour {
    CallBehaviour {
        ring_ms: 50,
        talk_ms,
        answer_rate: 1.0,
        ..CallBehaviour::default()
    }
}

/// The simulator (posting its webhook, signed with `whsec`, to the daemon's admin listener)
/// and a daemon on `rules` with `leads` queued, whose status polls are an hour apart: only
/// the webhook can end its calls in time. Returns the daemon, the simulator and the admin URL.
async fn daemon_with_webhook(
    calls: CallBehaviour,
    rules: &str,
    leads: &[(String, RawLead)],
) -> (Arc<Daemon<SqliteStore>>, Simulator, String) {
    let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_url = format!("http://{}", admin_listener.local_addr().unwrap());
    let sim = Simulator::new(SimConfig {
        calls,
        webhook: Some(SimWebhook {
            url: format!("{admin_url}/v1/webhooks/synthflow"),
            secret: "whsec".into(),
        }),
        ..common::sim_config(&["+14155550100"])
    });
    let base = sim.start_local().await.unwrap();
    let rules = Arc::new(compile_sources(&[(Path::new("r.yaml"), rules)]).0.unwrap());
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    store.enqueue(leads, Utc::now()).await.unwrap();
    let config = DaemonConfig {
        poll_interval: Duration::from_secs(3600),
        idle_poll: Duration::from_millis(100),
        ..DaemonConfig::default()
    };
    let daemon = Arc::new(
        Daemon::start(store, rules, common::client(&base), config)
            .await
            .unwrap(),
    );
    let router = callroute::admin::router(
        daemon.clone(),
        callroute::admin::Webhooks::Signed("whsec".into()),
        callroute::admin::Access::default(),
    );
    common::serve_on(
        admin_listener,
        router,
        callroute::admin::ServeLimits::default(),
    );
    (daemon, sim, admin_url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhook_completes_the_call_and_bad_signatures_are_refused() {
    let lead = lead_with_id("L1", "+12125550123");
    let (daemon, _sim, admin_url) =
        daemon_with_webhook(answered_calls(100), RULES, &[("L1".into(), lead)]).await;
    let running = tokio::spawn({
        let daemon = daemon.clone();
        async move { daemon.run(tokio::time::sleep(Duration::from_secs(3))).await }
    });

    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let state = loop {
        let state = daemon.store().lead("L1").await.unwrap().unwrap().state;
        if state == LeadState::Completed || tokio::time::Instant::now() > deadline {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(state, LeadState::Completed, "the webhook recorded the end");

    let http = reqwest::Client::new();
    let url = format!("{admin_url}/v1/webhooks/synthflow");
    let body = serde_json::json!({"status": "completed", "call": {"call_id": "forged", "status": "completed"}});
    let unsigned = http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    let wrong = http
        .post(&url)
        .header("Synthflow-Signature", sign("other", "forged"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let signed = http
        .post(&url)
        .header("Synthflow-Signature", sign("whsec", "forged"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
    assert_eq!(
        signed.json::<serde_json::Value>().await.unwrap()["recorded"],
        false,
        "not a call of ours"
    );
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_out_in_the_webhook_stops_the_next_redial() {
    const OPTING_OUT: &str = "+12125550123";
    let rules = format!(
        "{RULES}opt_out:\n  when:\n    - {{ field: collected_variables.do_not_call, equals: [true, yes] }}\n"
    );
    let lead = |id: &str, not_before: Option<String>| {
        (
            id.to_string(),
            RawLead {
                not_before,
                ..lead_with_id(id, OPTING_OUT)
            },
        )
    };
    // L2 is the same person, queued already, due once L1's call has ended.
    let later = (Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let calls = CallBehaviour {
        opt_outs: vec![OPTING_OUT.into()],
        ..answered_calls(100)
    };
    let (daemon, sim, _) =
        daemon_with_webhook(calls, &rules, &[lead("L1", None), lead("L2", Some(later))]).await;
    let running = tokio::spawn({
        let daemon = daemon.clone();
        async move { daemon.run(tokio::time::sleep(Duration::from_secs(4))).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    let l2 = loop {
        let l2 = daemon.store().lead("L2").await.unwrap().unwrap();
        if l2.state == LeadState::Rejected || tokio::time::Instant::now() > deadline {
            break l2;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let l1 = daemon.store().lead("L1").await.unwrap().unwrap();
    let call_id = l1.call_id.clone().expect("L1 was called");
    assert_eq!(l2.state, LeadState::Rejected, "{l2:?}");
    assert_eq!(l2.reason_code.as_deref(), Some("suppressed"));
    let reason = l2.reason.unwrap();
    assert!(
        reason.contains("`internal`") && reason.contains(&call_id),
        "{reason}"
    );
    let entries = daemon.store().suppressions(Some(OPTING_OUT)).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].added_by, "opt-out");
    assert!(entries[0].evidence.as_deref().unwrap().contains(&call_id));
    let calls = sim
        .log()
        .iter()
        .filter(|c| c.request.phone == OPTING_OUT)
        .count();
    assert_eq!(calls, 1, "called once, never again after the opt-out");
    let audit = daemon.store().audit_log(10).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "suppress" && e.subject == OPTING_OUT)
    );
    running.await.unwrap().unwrap();
}

/// A signed webhook replayed with other fields (Synthflow signs only the call id) neither
/// ends a live call's slot nor lists its number: the call's own record says it is live and
/// holds no opt-out. Replays beyond Synthflow's retries are refused; only JSON is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_replayed_webhook_changes_nothing() {
    const PERSON: &str = "+12125550123";
    let rules = format!(
        "{RULES}opt_out:\n  when:\n    - {{ field: collected_variables.do_not_call, equals: [true, yes] }}\n    - {{ field: do_not_call, equals: [true] }}\n"
    );
    let lead = lead_with_id("L1", PERSON);
    let (daemon, sim, admin_url) =
        daemon_with_webhook(answered_calls(2_500), &rules, &[("L1".into(), lead)]).await;
    let running = tokio::spawn({
        let daemon = daemon.clone();
        async move { daemon.run(tokio::time::sleep(Duration::from_secs(5))).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let call_id = loop {
        let l1 = daemon.store().lead("L1").await.unwrap().unwrap();
        if l1.state == LeadState::Placed
            && let Some(call_id) = l1.call_id
        {
            break call_id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "L1 was never placed: {l1:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let http = reqwest::Client::new();
    let url = format!("{admin_url}/v1/webhooks/synthflow");
    let forged = serde_json::json!({
        "status": "completed",
        "do_not_call": true,
        "call": {"call_id": call_id, "status": "completed", "duration": 1},
        "collected_variables": {"do_not_call": {"value": true, "collected": true}},
    });
    let post = |body: &serde_json::Value| {
        http.post(&url)
            .header("Synthflow-Signature", sign("whsec", &call_id))
            .json(body)
            .send()
    };
    let reads = sim.record_reads(&call_id);
    let answer = post(&forged).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.json::<serde_json::Value>().await.unwrap()["recorded"],
        false
    );
    // The watcher read the record at once: still live, nothing listed.
    common::eventually(
        Duration::from_secs(1),
        "the record read after the hint",
        || std::future::ready(sim.record_reads(&call_id) > reads),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await; // what it read is acted on
    let l1 = daemon.store().lead("L1").await.unwrap().unwrap();
    assert_eq!(l1.state, LeadState::Placed, "a forged end frees no slot");
    assert!(
        daemon
            .store()
            .suppressions(Some(PERSON))
            .await
            .unwrap()
            .is_empty()
    );
    // A web page's form post is refused before anything is read.
    let form = http
        .post(&url)
        .header("content-type", "text/plain")
        .header("Synthflow-Signature", sign("whsec", &call_id))
        .body(forged.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
    // Replays beyond Synthflow's own retries are refused.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(post(&forged).await.unwrap().status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 409],
        "five deliveries of one call, then refused"
    );
    // The real end comes through the record (the simulator's own webhook, refused as a
    // replay now, or the poll): completed, and still no opt-out.
    running.await.unwrap().unwrap();
    assert!(
        daemon
            .store()
            .suppressions(Some(PERSON))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Without a secret, webhooks are refused unless the configuration allows unsigned ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_webhooks_are_refused_unless_allowed() {
    let sim = Simulator::new(common::sim_config(&["+14155550100"]));
    let base = sim.start_local().await.unwrap();
    let rules = Arc::new(compile_sources(&[(Path::new("r.yaml"), RULES)]).0.unwrap());
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    let daemon = Arc::new(
        Daemon::start(store, rules, common::client(&base), DaemonConfig::default())
            .await
            .unwrap(),
    );
    let body = serde_json::json!({"call": {"call_id": "c-1", "status": "completed"}});
    for (webhooks, expected) in [
        (callroute::admin::Webhooks::Refused, 401),
        (callroute::admin::Webhooks::Unsigned, 200),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let router = callroute::admin::router(
            daemon.clone(),
            webhooks,
            callroute::admin::Access::default(),
        );
        let url = format!(
            "{}/v1/webhooks/synthflow",
            common::serve_on(listener, router, callroute::admin::ServeLimits::default())
        );
        let answer = reqwest::Client::new()
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), expected);
    }
}
