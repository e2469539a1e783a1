//! `callroute demo`: the whole service in one process on the example rules: a simulator on
//! a free loopback port, a temporary SQLite queue, a few hundred sample leads across states
//! and time zones, the daemon at 20 attempts/s, then a report per lead and per number.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;

use crate::daemon::{Daemon, DaemonConfig};
use crate::rules::load_dir;
use crate::store::sqlite::SqliteStore;
use crate::store::{LeadState, Store, intake};
use crate::synthflow::simulator::{CallBehaviour, Faults, SimAgent, SimConfig, Simulator};
use crate::synthflow::{Client, ClientConfig};

/// Area codes of the sample leads: both coasts, Texas, Florida, Canada, Alaska, Hawaii,
/// Arizona, the Midwest.
const AREA_CODES: &[&str] = &[
    "415", "628", "213", "702", "305", "212", "512", "416", "907", "808", "602", "312", "617",
    "206", "404",
];

pub struct DemoOptions {
    pub leads: usize,
    pub run_for: Duration,
}

/// Sample leads as CSV, with a few deliberately bad rows to show intake errors.
fn sample_csv(count: usize) -> String {
    let mut csv = String::from("id,phone,name,campaign,state,label.segment\n");
    for i in 0..count {
        let area = AREA_CODES[i % AREA_CODES.len()];
        let campaign = if i % 10 == 9 {
            "support-callbacks"
        } else {
            "spring-promo"
        };
        let segment = match i % 7 {
            0 => "vip",
            3 => "gold",
            _ => "",
        };
        let _ = writeln!(
            csv,
            "lead-{i:03},+1{area}555{:04},Lead {i},{campaign},,{segment}",
            1000 + i
        );
    }
    csv.push_str("bad-1,555-0100,No Plus,spring-promo,,\n");
    csv.push_str("bad-2,+14155550999,,spring-promo,,\n");
    csv.push_str("bad-3,+14155550998,Wrong State,spring-promo,California,\n");
    csv
}

pub async fn run(rules_dir: &Path, options: DemoOptions) -> anyhow::Result<String> {
    let rules = Arc::new(
        load_dir(rules_dir)
            .map_err(|d| anyhow::anyhow!("{d}"))?
            .rules,
    );
    let all_numbers: Vec<String> = rules.numbers().map(|n| n.number.to_string()).collect();
    let simulator = Simulator::new(SimConfig {
        api_key: "demo-key".into(),
        attempts_per_second: 20,
        concurrency: 10,
        agents: rules
            .agents()
            .map(|a| SimAgent {
                model_id: a.model_id.clone(),
                r#type: "outbound".into(),
                attached: all_numbers.clone(),
            })
            .collect(),
        calls: CallBehaviour {
            ring_ms: 300,
            talk_ms: 1_500,
            answer_rate: 0.6,
            ..CallBehaviour::default()
        },
        faults: Faults::default(),
        seed: 7,
        webhook: None,
    });
    let base_url = simulator.start_local().await?;

    let dir = std::env::temp_dir().join(format!("callroute-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = SqliteStore::open(&format!("sqlite://{}", dir.join("queue.db").display())).await?;
    let mut report = String::new();
    let intake = intake::parse(sample_csv(options.leads).as_bytes())?;
    let counts = store.enqueue(&intake.leads, Utc::now()).await?;
    let _ = writeln!(
        report,
        "enqueue: {} accepted, {} duplicate, {} rejected",
        counts.accepted,
        counts.duplicate,
        intake.rejected.len()
    );
    for bad in &intake.rejected {
        let _ = writeln!(report, "  leads.csv:{}: {}", bad.line, bad.reason);
    }

    let client = Client::new(&ClientConfig {
        base_url,
        api_key: "demo-key".into(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
    })?;
    let config = DaemonConfig {
        attempts_per_second: 20,
        concurrency: 10,
        poll_interval: Duration::from_millis(250),
        retry_base: Duration::from_millis(200),
        reconcile_delay: Duration::from_millis(200),
        idle_poll: Duration::from_millis(200),
        ..DaemonConfig::default()
    };
    let daemon = Arc::new(
        Daemon::start(store, rules.clone(), client, config)
            .await
            .context("starting the daemon")?,
    );
    let running = daemon.spawn();
    let started = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let counts = daemon.store().counts().await?;
        let busy = counts.iter().any(|(s, n)| {
            *n > 0
                && matches!(
                    s,
                    LeadState::Claimed | LeadState::Dialing | LeadState::Placed
                )
        });
        let next_due = daemon.store().next_due().await?;
        let left = options.run_for.saturating_sub(started.elapsed());
        let nothing_due_in_time = next_due
            .is_none_or(|t| t > Utc::now() + chrono::Duration::from_std(left).unwrap_or_default());
        if (!busy && nothing_due_in_time) || left.is_zero() {
            break;
        }
    }
    running.stop().await?;

    // Per lead: where it ended and why.
    let events = daemon.events();
    let mut last_from: HashMap<&str, &str> = HashMap::new();
    for event in &events {
        if let Some(from) = &event.from_phone_number {
            last_from.insert(&event.lead_id, from);
        }
    }
    let _ = writeln!(
        report,
        "\n{:<9} {:<13} {:<10} {:<13} reason",
        "lead", "phone", "state", "from"
    );
    let mut ids: Vec<&String> = intake.leads.iter().map(|(id, _)| id).collect();
    ids.sort();
    for id in ids {
        let Some(lead) = daemon.store().lead(id).await? else {
            continue;
        };
        let reason = match lead.state {
            LeadState::Completed => format!(
                "call {} ended: {}",
                lead.call_id.unwrap_or_default(),
                lead.reason.unwrap_or_default()
            ),
            LeadState::Deferred => format!(
                "until {}: {}",
                lead.due_at.format("%H:%M:%S UTC"),
                lead.reason.unwrap_or_default()
            ),
            _ => lead.reason.unwrap_or_default(),
        };
        let _ = writeln!(
            report,
            "{:<9} {:<13} {:<10} {:<13} {reason}",
            lead.id,
            lead.raw.phone.unwrap_or_default(),
            lead.state.as_str(),
            last_from.get(id.as_str()).copied().unwrap_or("-"),
        );
    }

    // Per number: calls the simulator saw against the number's limits.
    let log = simulator.log();
    let mut by_number: BTreeMap<String, Vec<chrono::DateTime<Utc>>> = BTreeMap::new();
    for call in &log {
        by_number
            .entry(call.request.from_phone_number.clone().unwrap_or_default())
            .or_default()
            .push(call.accepted_at);
    }
    let _ = writeln!(
        report,
        "\n{:<13} {:>5} {:>14} {:>8} {:>8} {:>8}  min_gap",
        "number", "calls", "max/minute", "per_hour", "per_24h", "per_day"
    );
    for info in rules.numbers() {
        let times = by_number
            .get(&info.number.to_string())
            .cloned()
            .unwrap_or_default();
        let max_minute = times
            .iter()
            .map(|t| {
                times
                    .iter()
                    .filter(|u| **u <= *t && *t - **u < chrono::Duration::minutes(1))
                    .count()
            })
            .max()
            .unwrap_or(0);
        let limit = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
        let limits = info.limits;
        let _ = writeln!(
            report,
            "{:<13} {:>5} {:>14} {:>8} {:>8} {:>8}  {}",
            info.number,
            times.len(),
            format!("{max_minute} of {}", limit(limits.per_minute)),
            limit(limits.per_hour),
            limit(limits.per_24h),
            limit(limits.per_day),
            limits
                .min_gap
                .map_or("-".to_string(), |g| humantime::format_duration(g)
                    .to_string()),
        );
    }
    let counts = daemon.store().counts().await?;
    let summary: Vec<String> = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{} {n}", s.as_str()))
        .collect();
    let _ = writeln!(
        report,
        "\n{} calls placed in {:.1} s ({} refused with 429); leads: {}",
        log.len(),
        started.elapsed().as_secs_f64(),
        simulator.rate_limited(),
        summary.join(", ")
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report)
}
