//! The admin listener of a running daemon, and a caller ID detached upstream mid-run.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use callroute::daemon::{Daemon, DaemonConfig};
use callroute::rules::compile_sources;
use callroute::store::sqlite::SqliteStore;
use callroute::store::{LeadState, Store};
use callroute::synthflow::simulator::Simulator;

const RULES: &str = "agents: { a: { model_id: m-1 } }\nnumbers:\n  \"+14155550100\": {}\n  \"+12125550107\": {}\ncalling_hours:\n  default: { days: [mon, tue, wed, thu, fri, sat, sun], start: \"00:00\", end: \"24:00\" }\nstate_laws: false\ncampaigns:\n  c:\n    agent: a\n    purpose: informational\n    routes:\n      - numbers: all\n        local_presence: [area_code, any]\n";

/// `GET /v1/status` with the admin token.
async fn get_status(admin: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{admin}/v1/status"))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `POST /v1/leads` with the admin token; the JSON answer.
async fn post_leads(admin: &str, content_type: &str, body: String) -> serde_json::Value {
    reqwest::Client::new()
        .post(format!("{admin}/v1/leads"))
        .bearer_auth(common::ADMIN_TOKEN)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_and_an_upstream_detach() {
    let sim = Simulator::new(common::sim_config(&["+14155550100", "+12125550107"]));
    let base = sim.start_local().await.unwrap();

    let rules = Arc::new(compile_sources(&[(Path::new("r.yaml"), RULES)]).0.unwrap());
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    let client = common::client(&base);
    let config = DaemonConfig {
        attempts_per_second: 50,
        poll_interval: Duration::from_millis(20),
        idle_poll: Duration::from_millis(50),
        ..DaemonConfig::default()
    };
    let daemon = Arc::new(Daemon::start(store, rules, client, config).await.unwrap());
    // The daemon read both numbers at start; San Francisco's is then detached upstream.
    sim.detach("m-1", "+14155550100");

    let admin = common::serve_admin(&daemon).await;
    let running = daemon.spawn();
    let http = reqwest::Client::new();

    assert_eq!(
        http.get(format!("{admin}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{admin}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let leads = (0..6)
        .map(|i| {
            format!(
                "{{\"id\":\"L{i}\",\"phone\":\"+1415555{:04}\",\"name\":\"N\",\"campaign\":\"c\"}}",
                2000 + i
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let body = format!("{leads}\n{{\"phone\":\"nope\",\"name\":\"N\",\"campaign\":\"c\"}}\n");
    let answer = post_leads(&admin, "application/x-ndjson", body).await;
    assert_eq!(answer["accepted"], 6);
    assert_eq!(answer["rejected"], 1);
    assert_eq!(answer["errors"][0]["line"], 7);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let counts = daemon.store().counts().await.unwrap();
        let completed = counts
            .iter()
            .find(|(s, _)| *s == LeadState::Completed)
            .unwrap()
            .1;
        if completed == 6 || tokio::time::Instant::now() > deadline {
            assert_eq!(
                completed, 6,
                "every lead completed despite the detach: {counts:?}"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = sim.log();
    assert_eq!(log.len(), 6);
    assert!(
        log.iter()
            .all(|c| c.request.from_phone_number.as_deref() == Some("+12125550107")),
        "the detached number was never used successfully"
    );

    let status = get_status(&admin).await;
    assert_eq!(status["queue"]["completed"], 6);
    assert_eq!(status["rules"]["numbers"], 2);
    assert_eq!(status["rules"]["hash"].as_str().unwrap().len(), 16);
    let new_york = status["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["number"] == "+12125550107")
        .unwrap();
    assert_eq!(new_york["calls_24h"], 6);

    let explained: serde_json::Value = http
        .post(format!("{admin}/v1/explain"))
        .bearer_auth(common::ADMIN_TOKEN)
        .json(&serde_json::json!({"lead": {"phone": "+14155559999", "name": "E", "campaign": "c"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(explained["outcome"], "dial");
    assert_eq!(
        explained["from_phone_number"], "+12125550107",
        "the refreshed pool no longer has the local number"
    );
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_pauses_dialing_keeps_the_queue_and_recovers() {
    let sim = Simulator::new(common::sim_config(&["+14155550100", "+12125550107"]));
    let base = sim.start_local().await.unwrap();
    let rules = Arc::new(compile_sources(&[(Path::new("r.yaml"), RULES)]).0.unwrap());
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    let leads: Vec<(String, callroute::lead::RawLead)> = (0..4)
        .map(|i| {
            let raw = common::raw_lead(&format!("+1212555{:04}", 3000 + i), "c");
            (format!("K{i}"), raw)
        })
        .collect();
    store.enqueue(&leads, chrono::Utc::now()).await.unwrap();
    let client = common::client(&base);
    let config = DaemonConfig {
        poll_interval: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        idle_poll: Duration::from_millis(50),
        attempts_per_second: 50,
        ..DaemonConfig::default()
    };
    let daemon = Arc::new(Daemon::start(store, rules, client, config).await.unwrap());
    sim.set_api_key("rotated"); // the key is revoked after start
    let admin = common::serve_admin(&daemon).await;
    let running = daemon.spawn();
    common::eventually(Duration::from_secs(5), "the revoked key is noticed", || {
        std::future::ready(daemon.auth_failed())
    })
    .await;
    assert_eq!(
        reqwest::get(format!("{admin}/readyz"))
            .await
            .unwrap()
            .status(),
        503
    );
    assert!(sim.log().is_empty(), "nothing is dialed with a refused key");
    let counts = daemon.store().counts().await.unwrap();
    assert_eq!(
        counts
            .iter()
            .filter(|(s, _)| matches!(s, LeadState::Failed | LeadState::Rejected))
            .map(|(_, n)| n)
            .sum::<u64>(),
        0,
        "{counts:?}"
    );

    sim.set_api_key("k"); // fixed upstream: dialing resumes by itself
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while sim.log().len() < 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sim.log().len(), 4);
    assert!(!daemon.auth_failed());
    running.stop().await.unwrap();
}

async fn idle_daemon() -> Arc<Daemon<SqliteStore>> {
    let sim = Simulator::new(common::sim_config(&["+14155550100", "+12125550107"]));
    let base = sim.start_local().await.unwrap();
    let rules = Arc::new(compile_sources(&[(Path::new("r.yaml"), RULES)]).0.unwrap());
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    Arc::new(
        Daemon::start(store, rules, common::client(&base), DaemonConfig::default())
            .await
            .unwrap(),
    )
}

/// Milliseconds until the server closes `stream` (reads return 0 or fail), up to 5 s.
async fn closed_after(stream: &mut tokio::net::TcpStream) -> u128 {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed().as_millis(),
            Ok(Ok(_)) => continue, // a response (e.g. 408); the close follows
            Err(_) => panic!("the connection was still open after 5 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_surplus_connections_are_shed() {
    use tokio::io::AsyncWriteExt;
    let daemon = idle_daemon().await;
    let limits = callroute::admin::ServeLimits {
        max_connections: 4,
        header_timeout: Duration::from_millis(400),
        request_timeout: Duration::from_secs(2),
        health_reserve: 2,
        per_peer: 64,
    };
    let access = callroute::admin::Access {
        token: Some(common::ADMIN_TOKEN.into()),
        open_reads: false,
    };
    let admin = common::serve_admin_with(&daemon, access, limits).await;
    let address = admin.trim_start_matches("http://").to_string();

    // Half-sent headers are cut off at the header timeout.
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let waited = closed_after(&mut slow).await;
    assert!((300..2000).contains(&waited), "closed after {waited} ms");

    // Four idle connections fill the cap; the health checks still answer, from the
    // reserve, and nothing else does there.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    for path in ["/healthz", "/readyz"] {
        let health = fresh().get(format!("{admin}{path}")).send().await.unwrap();
        assert_eq!(health.status(), 200, "{path} at the cap");
    }
    let busy = fresh()
        .get(format!("{admin}/v1/status"))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), 503);
    // The reserve (two here) takes idle connections only briefly; beyond it, a connection
    // is closed at once.
    let mut reserved = Vec::new();
    for _ in 0..2 {
        reserved.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut surplus = tokio::net::TcpStream::connect(&address).await.unwrap();
    let waited = closed_after(&mut surplus).await;
    assert!(waited < 300, "the surplus connection waited {waited} ms");
    for mut connection in reserved {
        let waited = closed_after(&mut connection).await;
        assert!(waited < 1000, "a reserve connection idled {waited} ms");
    }
    // Once the idle ones time out, the listener answers everything again.
    common::eventually(
        Duration::from_secs(3),
        "the listener answers again",
        || async {
            fresh()
                .get(format!("{admin}/v1/status"))
                .bearer_auth(common::ADMIN_TOKEN)
                .send()
                .await
                .is_ok_and(|status| status.status() == 200)
        },
    )
    .await;
    for mut connection in idle {
        closed_after(&mut connection).await;
    }

    // A body larger than the limit is refused, not read.
    let big = "x".repeat(callroute::admin::MAX_BODY + 1);
    let answer = reqwest::Client::new()
        .post(format!("{admin}/v1/explain"))
        .bearer_auth(common::ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_writes_are_refused_and_reads_are_open() {
    let daemon = idle_daemon().await;
    let admin = common::serve_admin_with(
        &daemon,
        callroute::admin::Access::default(),
        callroute::admin::ServeLimits::default(),
    )
    .await;
    let http = reqwest::Client::new();
    let leads = http
        .post(format!("{admin}/v1/leads"))
        .header("content-type", "text/csv")
        .body("phone,name,campaign\n+14155550123,A,c\n")
        .send()
        .await
        .unwrap();
    assert_eq!(leads.status(), 403);
    assert!(leads.text().await.unwrap().contains("no admin token"));
    let reload = http
        .post(format!("{admin}/v1/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 403);
    let status = http.get(format!("{admin}/v1/status")).send().await.unwrap();
    assert_eq!(status.status(), 200);
    assert_eq!(
        daemon
            .store()
            .counts()
            .await
            .unwrap()
            .iter()
            .map(|c| c.1)
            .sum::<u64>(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_in_the_rules_but_not_attached_upstream_are_flagged() {
    // The rules name two numbers; Synthflow has only New York's attached to the agent.
    let sim = Simulator::new(common::sim_config(&["+12125550107"]));
    let base = sim.start_local().await.unwrap();
    let rules = Arc::new(compile_sources(&[(Path::new("r.yaml"), RULES)]).0.unwrap());
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    let daemon = Arc::new(
        Daemon::start(store, rules, common::client(&base), DaemonConfig::default())
            .await
            .unwrap(),
    );
    let missing: Vec<(String, Vec<String>)> = daemon
        .unattached()
        .into_iter()
        .map(|(agent, numbers)| (agent, numbers.iter().map(ToString::to_string).collect()))
        .collect();
    assert_eq!(
        missing,
        [("a".to_string(), vec!["+14155550100".to_string()])]
    );
    let admin = common::serve_admin(&daemon).await;
    let status = get_status(&admin).await;
    assert_eq!(status["not_attached"]["a"][0], "+14155550100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_is_streamed_and_every_bad_row_counted() {
    let daemon = idle_daemon().await;
    let admin = common::serve_admin(&daemon).await;
    // 60,000 rows (about 2.3 MB, past the old 2 MB limit), every 1,000th bad.
    let mut csv = String::from("id,phone,name,campaign\n");
    for i in 0..60_000 {
        if i % 1000 == 999 {
            csv.push_str(&format!("L{i},555-{i},N,c\n"));
        } else {
            csv.push_str(&format!(
                "L{i},+1{}{:07},N,c\n",
                212 + (i % 3) * 100,
                2_000_000 + i
            ));
        }
    }
    let answer = post_leads(&admin, "text/csv", csv).await;
    assert_eq!(answer["accepted"], 59_940, "{answer}");
    assert_eq!(answer["rejected"], 60);
    assert_eq!(
        answer["errors"][0]["line"], 1001,
        "line numbers run across batches"
    );
    assert_eq!(answer["errors"][59]["line"], 60_001);
    let queued = daemon
        .store()
        .counts()
        .await
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum::<u64>();
    assert_eq!(queued, 59_940);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_asks_for_the_token_once_and_its_session_only_reads() {
    let daemon = idle_daemon().await;
    let admin = common::serve_admin(&daemon).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // A sign-in form posted with `token` and the extra headers a browser would send.
    let login = |token: &str, headers: &[(&str, &str)]| {
        let mut request = http
            .post(format!("{admin}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    // Without the token: the sign-in page, not the console, and no status.
    let page = http.get(format!("{admin}/")).send().await.unwrap();
    assert_eq!(page.status(), 401);
    let headers = page.headers().clone();
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let body = page.text().await.unwrap();
    assert!(body.contains(r#"<form method="post" action="/login">"#));
    assert!(!body.contains("/v1/status"));
    let wrong = login("guess", &[]).await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());

    // The token, once: a session cookie that is not the token itself.
    let signed_in = login(common::ADMIN_TOKEN, &[]).await.unwrap();
    assert_eq!(signed_in.status(), 303);
    assert_eq!(signed_in.headers()["location"], "/");
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(!cookie.contains(common::ADMIN_TOKEN));
    let session = cookie.split(';').next().unwrap().to_string();

    let console = http
        .get(format!("{admin}/"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(console.status(), 200);
    assert!(console.text().await.unwrap().contains("callroute console"));
    let status = http
        .get(format!("{admin}/v1/status"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    let view: serde_json::Value = status.json().await.unwrap();
    assert_eq!(view["account"]["concurrency"], 5);
    // The session never writes: a page elsewhere could make the browser send it.
    let upload = http
        .post(format!("{admin}/v1/leads"))
        .header("cookie", &session)
        .header("content-type", "text/csv")
        .body("phone,name,campaign\n+14155550123,A,c\n")
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 401);
    let reload = http
        .post(format!("{admin}/v1/reload"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 401);
    // A forged session is refused like no session.
    let forged = http
        .get(format!("{admin}/v1/status"))
        .header("cookie", "callroute_session=AAAA")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // A session lasts 12 hours: the cookie says so, and a session past its end (signed
    // right, expired) is refused.
    assert!(cookie.contains("Max-Age=43200"), "{cookie}");
    let past = 1_000_000_000u64;
    let expired = format!(
        "callroute_session={past}.{}",
        callroute::synthflow::webhook::sign(
            common::ADMIN_TOKEN,
            &format!("callroute console session {past}")
        )
    );
    let old = http
        .get(format!("{admin}/v1/status"))
        .header("cookie", &expired)
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401);

    // A form on another site cannot sign anyone in, right token or not.
    let cross = login(common::ADMIN_TOKEN, &[("origin", "https://evil.example")])
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    assert!(cross.headers().get("set-cookie").is_none());
    let cross = login(
        common::ADMIN_TOKEN,
        &[("sec-fetch-site", "cross-site"), ("origin", "null")],
    )
    .await
    .unwrap();
    assert_eq!(cross.status(), 403);

    // Guessing is throttled: after 10 wrong tokens in a minute (one was tried above), even
    // the right one waits.
    for _ in 0..9 {
        let wrong = login("guess", &[]).await.unwrap();
        assert_eq!(wrong.status(), 401);
    }
    let throttled = login(common::ADMIN_TOKEN, &[]).await.unwrap();
    assert_eq!(throttled.status(), 429);
    assert!(throttled.headers().get("retry-after").is_some());
    assert!(throttled.headers().get("set-cookie").is_none());
}

/// One peer may hold only its share of the connections: beyond it, it gets the health
/// checks alone, and the rest stays for others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_holds_only_its_share_of_the_connections() {
    let daemon = idle_daemon().await;
    let limits = callroute::admin::ServeLimits {
        max_connections: 8,
        header_timeout: Duration::from_millis(1500),
        request_timeout: Duration::from_secs(2),
        health_reserve: 2,
        per_peer: 2,
    };
    let access = callroute::admin::Access {
        token: Some(common::ADMIN_TOKEN.into()),
        open_reads: false,
    };
    let admin = common::serve_admin_with(&daemon, access, limits).await;
    let address = admin.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let status = client
        .get(format!("{admin}/v1/status"))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        status.status(),
        503,
        "past its share, the peer gets health only"
    );
    let health = client.get(format!("{admin}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    drop(idle);
    common::eventually(
        Duration::from_secs(3),
        "the share is free again",
        || async {
            client
                .get(format!("{admin}/v1/status"))
                .bearer_auth(common::ADMIN_TOKEN)
                .send()
                .await
                .is_ok_and(|s| s.status() == 200)
        },
    )
    .await;
}
