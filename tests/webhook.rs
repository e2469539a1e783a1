//! The post-call webhook: the simulator posts it, signed; the daemon's admin listener
//! verifies the signature and records the call's end without waiting for its next poll.

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
    tokio::spawn(callroute::admin::serve(
        admin_listener,
        callroute::admin::router(
            daemon.clone(),
            Some("whsec".into()),
            callroute::admin::Access::default(),
        ),
        callroute::admin::ServeLimits::default(),
        std::future::pending(),
    ));
    (daemon, sim, admin_url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhook_completes_the_call_and_bad_signatures_are_refused() {
    let lead = RawLead {
        id: Some("L1".into()),
        phone: Some("+12125550123".into()),
        name: Some("A".into()),
        campaign: Some("c".into()),
        ..RawLead::default()
    };
    let calls = CallBehaviour {
        ring_ms: 50,
        talk_ms: 100,
        answer_rate: 1.0,
        ..CallBehaviour::default()
    };
    let (daemon, _sim, admin_url) = daemon_with_webhook(calls, RULES, &[("L1".into(), lead)]).await;
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
                id: Some(id.into()),
                phone: Some(OPTING_OUT.into()),
                name: Some("A".into()),
                campaign: Some("c".into()),
                not_before,
                ..RawLead::default()
            },
        )
    };
    // L2 is the same person, queued already, due once L1's call has ended.
    let later = (Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let calls = CallBehaviour {
        ring_ms: 50,
        talk_ms: 100,
        answer_rate: 1.0,
        opt_outs: vec![OPTING_OUT.into()],
        ..CallBehaviour::default()
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
