//! What the daemon benchmarks share: the simulated account's numbers, a client, lead files,
//! and a bare HTTP loop to hold the daemon's throughput against.
// Each benchmark uses a different part of this module.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use callroute::synthflow::simulator::{CallBehaviour, SimAgent, SimConfig};
use callroute::synthflow::{CallRequest, Client, ClientConfig};

pub const MODEL: &str = "m-1";

pub fn numbers() -> Vec<String> {
    (0..50).map(|i| format!("+1415555{:04}", 100 + i)).collect()
}

/// An account with `numbers()` attached to `MODEL`, calls that end at once.
pub fn sim_config(attempts_per_second: u32, concurrency: u32) -> SimConfig {
    SimConfig {
        api_key: "k".into(),
        attempts_per_second,
        concurrency,
        agents: vec![SimAgent {
            model_id: MODEL.into(),
            r#type: "outbound".into(),
            attached: numbers(),
        }],
        calls: CallBehaviour {
            ring_ms: 0,
            talk_ms: 0,
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

pub fn client(base: &str) -> Client {
    Client::new(&ClientConfig {
        base_url: base.into(),
        api_key: "k".into(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
    })
    .unwrap()
}

/// `count` leads of campaign `c` as CSV, distinct phones from `offset` on.
pub fn csv(count: usize, offset: usize) -> String {
    let mut text = String::with_capacity(count * 40);
    text.push_str("phone,name,campaign\n");
    for i in 0..count {
        let n = offset + i;
        let _ = writeln!(
            text,
            "+1{}{:07},Lead,c",
            [212, 305, 312, 415, 512, 617, 702, 206][n % 8],
            2_000_000 + n / 8
        );
    }
    text
}

/// Seconds a bare reqwest loop, `in_flight` requests at a time, takes to POST `calls` calls.
pub async fn bare_loop(base: &str, calls: usize, in_flight: usize) -> f64 {
    let client = client(base);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per_task = calls / in_flight;
    for t in 0..in_flight {
        let client = client.clone();
        tasks.spawn(async move {
            for i in 0..per_task {
                let request = CallRequest {
                    model_id: MODEL.into(),
                    phone: format!("+1646{:07}", 2_000_000 + t * per_task + i),
                    name: "Bare".into(),
                    from_phone_number: Some(numbers()[i % 50].clone()),
                    ..CallRequest::default()
                };
                client.create_call(&request).await.unwrap();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    started.elapsed().as_secs_f64()
}
