//! `callroute demo`: the whole service in one process on the example rules: a simulator on
//! a free loopback port, a temporary SQLite queue, a few hundred sample leads across states
//! and time zones, the daemon at 20 attempts/s, then a report per lead and per number.
//!
//! The daemon runs on a simulated clock (see `crate::clock`) that starts on a weekday
//! morning, before the first US calling window opens, and runs 240 times faster than the
//! wall clock: whatever the day and hour, the demo shows calling hours opening zone by zone,
//! limits filling and freeing, local presence falling back, and deferrals with their reasons,
//! in under a minute. The report says so, and every time in it is on that clock.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Datelike, Utc, Weekday};

use crate::clock::Clock;
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
    /// Wall-clock time to run for.
    pub run_for: Duration,
    /// How much faster than the wall clock the demo's clock runs.
    pub speed: f64,
    /// Where the demo's clock starts (default: `default_start`).
    pub start: Option<DateTime<Utc>>,
}

/// 12:50 UTC on the next weekday after `today` that is not a holiday of the example rules:
/// ten minutes before calling hours open in New York (08:00 EST is 13:00 UTC; in summer the
/// first window is already open), then Chicago an hour later, Denver and Phoenix, then Los
/// Angeles.
pub fn default_start(today: chrono::NaiveDate) -> DateTime<Utc> {
    let mut day = today;
    loop {
        day = day.succ_opt().unwrap_or(day);
        let holiday = (day.month(), day.day()) == (12, 25) || (day.month(), day.day()) == (1, 1);
        if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) && !holiday {
            break;
        }
    }
    day.and_hms_opt(12, 50, 0)
        .map_or_else(Utc::now, |t| t.and_utc())
}

/// Sample leads as CSV, with a few deliberately bad rows to show intake errors.
pub fn sample_csv(count: usize) -> String {
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
        // 555-1000 on, then (large lists, for `simulate`) from 200-0000 on.
        let subscriber = if i < 9000 {
            5_551_000 + i
        } else {
            2_000_000 + i
        };
        let _ = writeln!(
            csv,
            "lead-{i:03},+1{area}{subscriber:07},Lead {i},{campaign},,{segment}"
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
    let start = options
        .start
        .unwrap_or_else(|| default_start(Utc::now().date_naive()));
    let clock = Clock::simulated(start, options.speed);
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
            ring_ms: 100,
            talk_ms: 400,
            answer_rate: 0.6,
            ..CallBehaviour::default()
        },
        faults: Faults::default(),
        seed: 7,
        webhook: None,
        put_replaces: false,
        workspace_numbers: None,
        unlisted_zones: Vec::new(),
    });
    let base_url = simulator.start_local().await?;

    let dir = std::env::temp_dir().join(format!("callroute-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = SqliteStore::open(&format!("sqlite://{}", dir.join("queue.db").display())).await?;
    let mut report = String::new();
    let wall_span = options.run_for;
    let _ = writeln!(
        report,
        "SIMULATED CLOCK: the demo's day starts {} and runs {}x faster than the wall clock \
         ({} of wall time cover {} of its day); every time below is on that clock.",
        start.format("%a %Y-%m-%d %H:%M UTC"),
        options.speed,
        humantime::format_duration(Duration::from_secs(wall_span.as_secs())),
        humantime::format_duration(Duration::from_secs(
            wall_span.mul_f64(options.speed).as_secs()
        )),
    );
    let intake = intake::parse(sample_csv(options.leads).as_bytes())?;
    let counts = store.enqueue(&intake.leads, clock.now()).await?;
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
        poll_interval: Duration::from_millis(100),
        retry_base: Duration::from_millis(200),
        reconcile_delay: Duration::from_millis(200),
        idle_poll: Duration::from_millis(200),
        clock,
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
                    LeadState::Queued | LeadState::Claimed | LeadState::Dialing | LeadState::Placed
                )
        });
        let next_due = daemon.store().next_due().await?;
        let left = options.run_for.saturating_sub(started.elapsed());
        let nothing_due_in_time = next_due.is_none_or(|t| clock.real_until(t) > left);
        if (!busy && nothing_due_in_time) || left.is_zero() {
            break;
        }
    }
    running.stop().await?;
    let ended = clock.now();

    // Per lead: where it ended and why.
    let events = daemon.events();
    let mut last_from: HashMap<&str, &str> = HashMap::new();
    let mut placed_at: HashMap<&str, DateTime<Utc>> = HashMap::new();
    // Each lead's calls, in order: a cadence's redials show from other caller IDs.
    let mut placed_from: HashMap<&str, Vec<&str>> = HashMap::new();
    for event in &events {
        if let Some(from) = &event.from_phone_number {
            last_from.insert(&event.lead_id, from);
        }
        if event.outcome == "placed" {
            placed_at.entry(&event.lead_id).or_insert(event.at);
            if let Some(from) = &event.from_phone_number {
                placed_from.entry(&event.lead_id).or_default().push(from);
            }
        }
    }
    let _ = writeln!(
        report,
        "\n{:<9} {:<13} {:<10} {:<13} {:>5}  reason",
        "lead", "phone", "state", "from", "calls"
    );
    let mut ids: Vec<&String> = intake.leads.iter().map(|(id, _)| id).collect();
    ids.sort();
    // Per lead zone: when its first call went out, and how its leads ended.
    let mut zones: BTreeMap<String, ZoneRow> = BTreeMap::new();
    let mut waiting_for_cadence = 0;
    for id in ids {
        let Some(lead) = daemon.store().lead(id).await? else {
            continue;
        };
        let zone = crate::lead::Lead::from_raw(lead.raw.clone())
            .ok()
            .map(|l| {
                l.zones
                    .iter()
                    .map(|z| z.name().to_string())
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .unwrap_or_default();
        let row = zones.entry(zone).or_default();
        row.leads += 1;
        if let Some(at) = placed_at.get(id.as_str()) {
            row.called += 1;
            row.first = Some(row.first.map_or(*at, |f: DateTime<Utc>| f.min(*at)));
        }
        if lead.state == LeadState::Deferred {
            row.deferred += 1;
            if lead.reason_code.as_deref() == Some("cadence") {
                waiting_for_cadence += 1;
            }
        }
        let reason = match lead.state {
            LeadState::Completed => format!(
                "call {} ended: {}",
                lead.call_id.unwrap_or_default(),
                lead.reason.unwrap_or_default()
            ),
            LeadState::Deferred => format!(
                "until {}: {}",
                lead.due_at.format("%a %H:%M:%S UTC"),
                lead.reason.unwrap_or_default()
            ),
            _ => lead.reason.unwrap_or_default(),
        };
        let calls = placed_from.get(id.as_str()).map_or(&[][..], Vec::as_slice);
        let earlier = match calls {
            [earlier @ .., _] if !earlier.is_empty() => {
                format!(" (earlier calls from {})", earlier.join(", "))
            }
            _ => String::new(),
        };
        let _ = writeln!(
            report,
            "{:<9} {:<13} {:<10} {:<13} {:>5}  {reason}{earlier}",
            lead.id,
            lead.raw.phone.unwrap_or_default(),
            lead.state.as_str(),
            last_from.get(id.as_str()).copied().unwrap_or("-"),
            calls.len(),
        );
    }

    let _ = writeln!(
        report,
        "\n{:<36} {:>5} {:>7} {:>9}  first call (calling hours open zone by zone)",
        "lead time zone", "leads", "called", "deferred"
    );
    let mut by_opening: Vec<(&String, &ZoneRow)> = zones.iter().collect();
    by_opening.sort_by_key(|(zone, row)| (row.first.is_none(), row.first, (*zone).clone()));
    for (zone, row) in by_opening {
        let _ = writeln!(
            report,
            "{:<36} {:>5} {:>7} {:>9}  {}",
            zone,
            row.leads,
            row.called,
            row.deferred,
            row.first
                .map_or("not yet: outside its calling hours".to_string(), |t| t
                    .format("%H:%M:%S UTC")
                    .to_string())
        );
    }

    // Per number: the calls placed from it (on the demo's clock) against its limits.
    let mut by_number: BTreeMap<String, Vec<DateTime<Utc>>> = BTreeMap::new();
    for event in events.iter().filter(|e| e.outcome == "placed") {
        if let Some(from) = &event.from_phone_number {
            by_number.entry(from.clone()).or_default().push(event.at);
        }
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
    let limit_waits = events
        .iter()
        .filter(|e| e.outcome == "defer" && e.detail.contains("at a limit"))
        .count();
    let _ = writeln!(
        report,
        "\n{} calls placed from {} to {} on the demo's clock ({:.1} s of wall time; {} refused with 429; {} waits for a number at its limit); leads: {}",
        simulator.log().len(),
        start.format("%H:%M UTC"),
        ended.format("%H:%M UTC"),
        started.elapsed().as_secs_f64(),
        simulator.rate_limited(),
        limit_waits,
        summary.join(", ")
    );
    let redialed: Vec<&Vec<&str>> = placed_from.values().filter(|c| c.len() > 1).collect();
    let fresh = redialed
        .iter()
        .filter(|calls| {
            calls
                .iter()
                .enumerate()
                .all(|(i, from)| !calls[..i].contains(from))
        })
        .count();
    let _ = writeln!(
        report,
        "cadence: {} leads redialed after an unanswered call ({} calls in all), {} of them each time from a caller ID they had not seen; {} waiting for their next attempt",
        redialed.len(),
        redialed.iter().map(|c| c.len()).sum::<usize>(),
        fresh,
        waiting_for_cadence
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report)
}

#[derive(Default)]
struct ZoneRow {
    leads: usize,
    called: usize,
    deferred: usize,
    first: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_day_is_the_next_weekday_that_is_no_holiday() {
        let day = |text: &str| chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap();
        // Sunday 2026-11-29 → Monday 2026-11-30.
        assert_eq!(
            default_start(day("2026-11-29")).to_rfc3339(),
            "2026-11-30T12:50:00+00:00"
        );
        // Friday → Monday; Christmas Eve 2026 (Thursday) → Saturday? no: Monday 2026-12-28.
        assert_eq!(
            default_start(day("2026-12-04")).date_naive(),
            day("2026-12-07")
        );
        assert_eq!(
            default_start(day("2026-12-24")).date_naive(),
            day("2026-12-28")
        );
    }
}
