//! Set-up shared by the tests that run the daemon against the simulator on loopback.
// Each test crate uses a different part of this module.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use callroute::daemon::Daemon;
use callroute::store::Store;
use callroute::synthflow::simulator::{CallBehaviour, SimAgent, SimConfig};
use callroute::synthflow::{Client, ClientConfig};

pub const API_KEY: &str = "k";
pub const MODEL_ID: &str = "m-1";

/// A roomy simulated account (50 attempts/s, 50 live calls) with one outbound agent
/// `m-1` that has `attached` in its pool, and short calls that are always answered.
pub fn sim_config(attached: &[&str]) -> SimConfig {
    SimConfig {
        api_key: API_KEY.into(),
        attempts_per_second: 50,
        concurrency: 50,
        agents: vec![SimAgent {
            model_id: MODEL_ID.into(),
            r#type: "outbound".into(),
            attached: attached.iter().map(|n| n.to_string()).collect(),
        }],
        calls: CallBehaviour {
            ring_ms: 10,
            talk_ms: 20,
            answer_rate: 1.0,
            ..CallBehaviour::default()
        },
        faults: Default::default(),
        seed: 1,
        webhook: None,
        put_replaces: false,
        workspace_numbers: None,
        unlisted_zones: Vec::new(),
    }
}

/// `sim_config` at 20 attempts/s and 20 live calls, calls that ring and talk 20 ms each,
/// answered at `answer_rate`, drawn from `seed`.
pub fn sim_config_answering(attached: &[&str], answer_rate: f64, seed: u64) -> SimConfig {
    SimConfig {
        attempts_per_second: 20,
        concurrency: 20,
        calls: CallBehaviour {
            ring_ms: 20,
            talk_ms: 20,
            answer_rate,
            ..CallBehaviour::default()
        },
        seed,
        ..sim_config(attached)
    }
}

/// A daemon for `sim_config_answering`'s account: 10 attempts/s, 5 live calls, polls every
/// 20 ms, idle at most 50 ms.
pub fn brisk_daemon_config() -> callroute::daemon::DaemonConfig {
    callroute::daemon::DaemonConfig {
        attempts_per_second: 10,
        concurrency: 5,
        poll_interval: Duration::from_millis(20),
        idle_poll: Duration::from_millis(50),
        ..callroute::daemon::DaemonConfig::default()
    }
}

/// A lead to enqueue: `phone` in `campaign`, named `N`.
pub fn raw_lead(phone: &str, campaign: &str) -> callroute::lead::RawLead {
    callroute::lead::RawLead {
        phone: Some(phone.to_string()),
        name: Some("N".into()),
        campaign: Some(campaign.to_string()),
        ..Default::default()
    }
}

/// A client for the simulator at `base_url`, with the simulator's key.
pub fn client(base_url: &str) -> Client {
    Client::new(&ClientConfig {
        base_url: base_url.into(),
        api_key: API_KEY.into(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
    })
    .unwrap()
}

/// The admin token the tests' admin listeners want.
pub const ADMIN_TOKEN: &str = "admin-secret-for-tests";

/// Serves the daemon's admin listener (token `ADMIN_TOKEN`, no webhook secret) on a free
/// loopback port; returns its base URL.
pub async fn serve_admin<S: Store>(daemon: &Arc<Daemon<S>>) -> String {
    serve_admin_with(
        daemon,
        callroute::admin::Access {
            token: Some(ADMIN_TOKEN.into()),
            open_reads: false,
        },
        callroute::admin::ServeLimits::default(),
    )
    .await
}

pub async fn serve_admin_with<S: Store>(
    daemon: &Arc<Daemon<S>>,
    access: callroute::admin::Access,
    limits: callroute::admin::ServeLimits,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let router =
        callroute::admin::router(daemon.clone(), callroute::admin::Webhooks::Refused, access);
    serve_on(listener, router, limits)
}

/// Serves `router` on `listener` as `callroute run` serves its admin listener, until the
/// test ends; returns its URL.
pub fn serve_on(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: callroute::admin::ServeLimits,
) -> String {
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(callroute::admin::serve(
        listener,
        router,
        limits,
        std::future::pending(),
    ));
    url
}

/// The PostgreSQL server the tests use (`CALLROUTE_TEST_PG`, else the local one).
pub fn pg_url() -> String {
    std::env::var("CALLROUTE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A schema of its own for the test `name` (the same name again drops it first), or
/// `None` when no PostgreSQL answers: the test says so and skips, unless
/// `CALLROUTE_REQUIRE_PG=1` (CI) makes that a failure.
pub async fn pg_schema(name: &str) -> Option<String> {
    use sqlx::Connection;
    let url = pg_url();
    let schema = format!("cr_{}_{}", name, std::process::id())
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(60)
        .collect::<String>();
    let connected =
        tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&url)).await;
    let mut connection = match connected {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => return no_postgres(&url, &e.to_string()),
        Err(_) => return no_postgres(&url, "timed out"),
    };
    for statement in [
        format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        format!("CREATE SCHEMA {schema}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut connection)
            .await
            .unwrap();
    }
    Some(schema)
}

fn no_postgres(url: &str, why: &str) -> Option<String> {
    if std::env::var("CALLROUTE_REQUIRE_PG").is_ok_and(|v| v == "1") {
        panic!("PostgreSQL is required (CALLROUTE_REQUIRE_PG=1) but {url} does not answer: {why}");
    }
    eprintln!("SKIPPED: no PostgreSQL at {url} ({why}); set CALLROUTE_TEST_PG to run this test");
    None
}

/// The store URL of `schema` on the test server (every connection's search path set to it).
pub fn pg_store_url(schema: &str) -> String {
    let url = pg_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-csearch_path%3D{schema}")
}

/// Waits until `holds` is true, checking every 10 ms; panics naming `what` after `within`.
/// Tests wait on the condition they then assert, never on a fixed sleep.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut holds: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !holds().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `command` with its reader gone before it writes anything (like `| head -0`):
/// whatever it prints meets a closed pipe.
pub fn with_stdout_closed(mut command: std::process::Command) -> std::process::Output {
    use std::process::Stdio;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

/// Asserts that a command ended quietly on a closed pipe: exit 0, no panic, no error.
pub fn assert_quiet_on_closed_pipe(what: &str, out: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("error"),
        "{what}: {stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "{what}: {stderr}");
}
