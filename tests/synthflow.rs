//! The Synthflow client against the built-in simulator, on loopback port 0.

use std::time::Duration;

use callroute::synthflow::simulator::{CallBehaviour, Faults, SimAgent, SimConfig, Simulator};
use callroute::synthflow::{ApiError, CallRequest, Client, ClientConfig};

const MODEL: &str = "0ae2859d-c25c-4d56-a9f3-809387b725ce";
const FROM: &str = "+14155550100";

fn config(attempts_per_second: u32, concurrency: u32) -> SimConfig {
    SimConfig {
        api_key: "sim-key".into(),
        attempts_per_second,
        concurrency,
        agents: vec![SimAgent {
            model_id: MODEL.into(),
            r#type: "outbound".into(),
            attached: vec![FROM.into(), "+12125550107".into()],
        }],
        calls: CallBehaviour {
            ring_ms: 50,
            talk_ms: 100,
            answer_rate: 1.0,
            ..CallBehaviour::default()
        },
        faults: Faults::default(),
        seed: 3,
        webhook: None,
        put_replaces: false,
        workspace_numbers: None,
        unlisted_zones: Vec::new(),
    }
}

async fn start(sim: &Simulator) -> String {
    sim.start_local().await.unwrap()
}

fn client(base: &str, key: &str, timeout_ms: u64) -> Client {
    Client::new(&ClientConfig {
        base_url: base.into(),
        api_key: key.into(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(timeout_ms),
    })
    .unwrap()
}

fn call(phone: &str) -> CallRequest {
    CallRequest {
        model_id: MODEL.into(),
        phone: phone.into(),
        name: "Ana".into(),
        from_phone_number: Some(FROM.into()),
        ..CallRequest::default()
    }
}

#[tokio::test]
async fn a_call_is_placed_and_runs_through_its_life_cycle() {
    let sim = Simulator::new(config(10, 5));
    let base = start(&sim).await;
    let api = client(&base, "sim-key", 2000);
    let call_id = api.create_call(&call("+14155550123")).await.unwrap();
    let first = api.get_call(&call_id).await.unwrap();
    assert_eq!(first.status, "ringing");
    assert_eq!(first.from_phone_number.as_deref(), Some(FROM));
    let mut done = api.get_call(&call_id).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !done.is_terminal() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        done = api.get_call(&call_id).await.unwrap();
    }
    assert_eq!(done.status, "completed");
    assert!(done.is_terminal());
    let log = sim.log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].request.phone, "+14155550123");
    let found = api.find_calls(MODEL, "+14155550123", 0).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].call_id, call_id);
}

#[tokio::test]
async fn errors_are_typed_by_what_to_do_next() {
    let sim = Simulator::new(config(1, 5));
    let base = start(&sim).await;
    let wrong_key = client(&base, "nope", 2000)
        .create_call(&call("+14155550123"))
        .await
        .unwrap_err();
    assert!(
        matches!(wrong_key, ApiError::Unauthorized { status: 401, .. }),
        "{wrong_key:?}"
    );

    let api = client(&base, "sim-key", 2000);
    let mut detached = call("+14155550123");
    detached.from_phone_number = Some("+13055550105".into());
    let err = api.create_call(&detached).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Rejected { status: 400, reason } if reason.contains("not attached")),
        "{err:?}"
    );
    assert!(!err.call_may_exist());

    let err = api.create_call(&call("415-555-0123")).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Rejected { reason, .. } if reason.contains("Invalid phone number")),
        "{err:?}"
    );

    api.create_call(&call("+14155550123")).await.unwrap();
    let err = api.create_call(&call("+14155550124")).await.unwrap_err();
    assert!(
        matches!(err, ApiError::RateLimited(_)),
        "one attempt per second: {err:?}"
    );
    assert_eq!(sim.log().len(), 1, "a 429 places no call");
    assert_eq!(sim.rate_limited(), 1);
}

#[tokio::test]
async fn concurrency_limit_answers_429_while_calls_are_live() {
    let sim = Simulator::new(config(100, 1));
    let base = start(&sim).await;
    let api = client(&base, "sim-key", 2000);
    api.create_call(&call("+14155550123")).await.unwrap();
    assert!(matches!(
        api.create_call(&call("+14155550124")).await,
        Err(ApiError::RateLimited(_))
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.create_call(&call("+14155550124")).await.unwrap();
}

#[tokio::test]
async fn accept_then_timeout_is_ambiguous_and_the_call_can_be_found() {
    let sim = Simulator::new(config(100, 5));
    sim.set_faults(Faults {
        accept_then_timeout_rate: 1.0,
        hang_ms: 2_000,
        ..Faults::default()
    });
    let base = start(&sim).await;
    let api = client(&base, "sim-key", 200);
    let before = chrono::Utc::now().timestamp_millis();
    let err = api.create_call(&call("+14155550123")).await.unwrap_err();
    assert!(matches!(err, ApiError::Ambiguous(_)), "{err:?}");
    assert!(err.call_may_exist());
    let found = api.find_calls(MODEL, "+14155550123", before).await.unwrap();
    assert_eq!(
        found.len(),
        1,
        "the call exists although the client saw no answer"
    );
}

#[tokio::test]
async fn pool_can_be_read_attached_and_detached() {
    let sim = Simulator::new(config(1, 5));
    let base = start(&sim).await;
    let api = client(&base, "sim-key", 2000);
    let numbers: Vec<String> = api
        .attached_numbers(MODEL)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.number)
        .collect();
    assert_eq!(numbers, ["+12125550107", FROM]);
    api.attach_numbers(MODEL, &["+13055550105".into()])
        .await
        .unwrap();
    // Detached by the slug GET gave: opaque, not the digits of the number.
    let slug = api
        .attached_numbers(MODEL)
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.number == FROM)
        .and_then(|n| n.slug)
        .unwrap();
    assert_ne!(slug, FROM.trim_start_matches('+'));
    assert!(matches!(
        api.detach_number(MODEL, FROM.trim_start_matches('+')).await,
        Err(ApiError::Rejected { status: 404, .. })
    ));
    api.detach_number(MODEL, &slug).await.unwrap();
    let numbers: Vec<String> = api
        .attached_numbers(MODEL)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.number)
        .collect();
    assert_eq!(numbers, ["+12125550107", "+13055550105"]);
    assert!(matches!(
        api.detach_number(MODEL, &slug).await,
        Err(ApiError::Rejected { status: 404, .. })
    ));
    // By slug, the number comes back.
    api.attach_slugs(MODEL, &[slug]).await.unwrap();
    assert_eq!(api.attached_numbers(MODEL).await.unwrap().len(), 3);
}

#[tokio::test]
async fn connection_refused_is_certainly_not_placed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/v2", listener.local_addr().unwrap());
    drop(listener);
    let err = client(&base, "k", 1000)
        .create_call(&call("+14155550123"))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Connect(_)), "{err:?}");
    assert!(!err.call_may_exist());
}

#[tokio::test]
async fn a_base_url_without_v2_gets_a_hint_and_errors_never_repeat_themselves() {
    let sim = Simulator::new(config(10, 5));
    let base = start(&sim).await;
    let without_v2 = base.trim_end_matches("/v2");
    let error = client(without_v2, "sim-key", 2000)
        .attached_numbers(MODEL)
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("HTTP 404"), "{text}");
    assert!(text.contains("does not end in /v2"), "{text}");

    // Wrapped as the daemon reports it, and printed with its chain as `main` does.
    let wrapped = anyhow::Error::from(callroute::daemon::DaemonError::Pool {
        agent: "a".into(),
        error,
    });
    let report = format!("{wrapped:#}");
    assert_eq!(report.matches("HTTP 404").count(), 1, "{report}");
}
