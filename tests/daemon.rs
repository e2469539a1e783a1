//! The daemon against the simulator on loopback: every lead ends somewhere with a reason,
//! the simulator's log never shows a broken rule, and faults never cause a second call.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use callroute::daemon::{Daemon, DaemonConfig};
use callroute::rules::load_dir;
use callroute::store::intake;
use callroute::store::sqlite::SqliteStore;
use callroute::store::{LeadState, Store};
use callroute::synthflow::simulator::{
    CallBehaviour, Faults, SimAgent, SimCall, SimConfig, Simulator,
};
use callroute::synthflow::{Client, ClientConfig};

const NUMBERS: &[&str] = &[
    "+14155550100",
    "+14155550101",
    "+12125550107",
    "+13055550105",
    "+15125550108",
    "+13125550114",
];
const DETACHED: &str = "+13125550114";
const PER_MINUTE: usize = 12;
/// Of 40 leads spread over six area codes, the ones in Miami (305): leads 2, 8, 14, ...
const FLORIDA_LEADS: usize = 7;

fn rules_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callroute-daemon-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let numbers: String = NUMBERS
        .iter()
        .map(|n| format!("  \"{n}\": {{}}\n"))
        .collect();
    // Florida calls nobody today (a holiday blackout around today, in any zone): its leads
    // must be deferred, never dialed.
    let today = Utc::now().date_naive();
    let blackout = [-1, 0, 1]
        .map(|d| format!("\"{}\"", today + chrono::Duration::days(d)))
        .join(", ");
    std::fs::write(
        dir.join("rules.yaml"),
        format!(
            "agents: {{ a: {{ model_id: m-1 }} }}\nlimits:\n  default: {{ per_minute: {PER_MINUTE}, min_gap: 200ms }}\nnumbers:\n{numbers}\
calling_hours:\n  default: {{ days: [mon, tue, wed, thu, fri, sat, sun], start: \"00:00\", end: \"24:00\" }}\n  states: {{ FL: {{ blackout_dates: [{blackout}] }} }}\nstate_laws: false\n\
campaigns:\n  c:\n    agent: a\n    purpose: informational\n    routes:\n      - numbers: all\n        local_presence: [area_code, state, any]\n"
        ),
    )
    .unwrap();
    dir
}

fn simulator(attempts_per_second: u32, faults: Faults) -> Simulator {
    Simulator::new(sim_config(attempts_per_second, faults))
}

fn sim_config(attempts_per_second: u32, faults: Faults) -> SimConfig {
    SimConfig {
        api_key: "k".into(),
        attempts_per_second,
        concurrency: 50,
        agents: vec![SimAgent {
            model_id: "m-1".into(),
            r#type: "outbound".into(),
            attached: NUMBERS
                .iter()
                .filter(|n| **n != DETACHED)
                .map(|n| n.to_string())
                .collect(),
        }],
        calls: CallBehaviour {
            ring_ms: 20,
            talk_ms: 40,
            answer_rate: 0.7,
            ..CallBehaviour::default()
        },
        faults,
        seed: 11,
        webhook: None,
        put_replaces: false,
        workspace_numbers: None,
        unlisted_zones: Vec::new(),
    }
}

fn leads_csv(count: usize) -> String {
    let areas = ["415", "212", "305", "512", "312", "617"];
    let mut csv = String::from("id,phone,name,campaign\n");
    for i in 0..count {
        csv += &format!(
            "L{i},+1{}555{:04},Lead {i},c\n",
            areas[i % areas.len()],
            1000 + i
        );
    }
    csv
}

struct Run {
    log: Vec<SimCall>,
    counts: Vec<(LeadState, u64)>,
    rate_limited: u64,
}

async fn run(name: &str, sim: Simulator, leads: usize, request_timeout_ms: u64) -> Run {
    let base = sim.start_local().await.unwrap();

    let dir = rules_dir(name);
    let rules = Arc::new(load_dir(&dir).unwrap().rules);
    let store = SqliteStore::open(&format!("sqlite://{}", dir.join("queue.db").display()))
        .await
        .unwrap();
    let intake = intake::parse(leads_csv(leads).as_bytes()).unwrap();
    assert!(intake.rejected.is_empty());
    store.enqueue(&intake.leads, Utc::now()).await.unwrap();

    let client = Client::new(&ClientConfig {
        base_url: base,
        api_key: "k".into(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(request_timeout_ms),
    })
    .unwrap();
    let config = DaemonConfig {
        attempts_per_second: 20,
        concurrency: 10,
        poll_interval: Duration::from_millis(20),
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(500),
        reconcile_delay: Duration::from_millis(50),
        // Counted from the request's timeout: absent 0.5 s after it, if two lookups agree.
        absent_after: Duration::from_millis(500),
        idle_poll: Duration::from_millis(100),
        ..DaemonConfig::default()
    };
    let daemon = Arc::new(Daemon::start(store, rules, client, config).await.unwrap());
    let running = daemon.spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let counts = loop {
        let counts = daemon.store().counts().await.unwrap();
        let open: u64 = counts
            .iter()
            .filter(|(s, _)| {
                matches!(
                    s,
                    LeadState::Queued | LeadState::Claimed | LeadState::Dialing | LeadState::Placed
                )
            })
            .map(|(_, n)| n)
            .sum();
        if open == 0 || tokio::time::Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    running.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        log: sim.log(),
        counts,
        rate_limited: sim.rate_limited(),
    }
}

/// A daemon on `dir`'s rules and `store`, talking to the simulator at `base`.
async fn start_daemon(
    store: SqliteStore,
    dir: &std::path::Path,
    base: String,
    config: DaemonConfig,
) -> Arc<Daemon<SqliteStore>> {
    let client = Client::new(&ClientConfig {
        base_url: base,
        api_key: "k".into(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
    })
    .unwrap();
    let rules = Arc::new(load_dir(dir).unwrap().rules);
    Arc::new(Daemon::start(store, rules, client, config).await.unwrap())
}

fn count(counts: &[(LeadState, u64)], state: LeadState) -> u64 {
    counts
        .iter()
        .find(|(s, _)| *s == state)
        .map_or(0, |(_, n)| *n)
}

/// What the simulator saw must never break a rule.
fn assert_log_respects_rules(log: &[SimCall], attempts_per_second: usize) {
    let mut by_lead: HashMap<&str, usize> = HashMap::new();
    let mut by_number: HashMap<&str, Vec<DateTime<Utc>>> = HashMap::new();
    for call in log {
        *by_lead.entry(&call.request.phone).or_default() += 1;
        assert!(
            !call.request.phone.starts_with("+1305"),
            "a Florida lead was called on a blackout day"
        );
        let from = call
            .request
            .from_phone_number
            .as_deref()
            .expect("every call names its caller ID");
        assert_ne!(from, DETACHED, "a detached number was used");
        by_number.entry(from).or_default().push(call.accepted_at);
    }
    let twice: Vec<_> = by_lead.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "leads dialed more than once: {twice:?}");
    for (number, times) in &by_number {
        for (i, t) in times.iter().enumerate() {
            let in_minute = times[..=i]
                .iter()
                .filter(|u| *t - **u < chrono::Duration::minutes(1))
                .count();
            assert!(
                in_minute <= PER_MINUTE,
                "{number} used {in_minute} times within a minute"
            );
            if i > 0 {
                // The ledger time and the simulator's clock differ by the request's latency.
                assert!(
                    *t - times[i - 1] >= chrono::Duration::milliseconds(150),
                    "{number}: min_gap broken"
                );
            }
        }
    }
    let mut all: Vec<DateTime<Utc>> = log.iter().map(|c| c.accepted_at).collect();
    all.sort();
    for (i, t) in all.iter().enumerate() {
        let in_second = all[..=i]
            .iter()
            .filter(|u| *t - **u < chrono::Duration::seconds(1))
            .count();
        assert!(
            in_second <= attempts_per_second,
            "{in_second} calls within one second"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lead_is_placed_once_within_every_limit() {
    let result = run("happy", simulator(100, Faults::default()), 40, 2_000).await;
    assert_eq!(
        result.log.len(),
        40 - FLORIDA_LEADS,
        "every lead called but Florida's"
    );
    assert_log_respects_rules(&result.log, 20);
    assert_eq!(
        count(&result.counts, LeadState::Deferred),
        FLORIDA_LEADS as u64,
        "{:?}",
        result.counts
    );
    assert_eq!(
        result.rate_limited, 0,
        "paced below the account's limit: no 429"
    );
    assert_eq!(
        count(&result.counts, LeadState::Completed),
        40 - FLORIDA_LEADS as u64,
        "{:?}",
        result.counts
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_never_cause_a_second_call() {
    let faults = Faults {
        server_error_rate: 0.1,
        accept_then_error_rate: 0.1,
        accept_then_timeout_rate: 0.1,
        hang_ms: 1_000,
        ..Faults::default()
    };
    // The account allows 8 attempts/s while the daemon is set to 20: 429s happen too.
    let result = run("faults", simulator(8, faults), 40, 300).await;
    assert!(result.rate_limited > 0, "the account's limit was hit");
    assert_log_respects_rules(&result.log, 20);
    assert_eq!(
        result.log.len(),
        40 - FLORIDA_LEADS,
        "every lead called exactly once: {:?}",
        result.counts
    );
    assert_eq!(
        count(&result.counts, LeadState::Completed),
        40 - FLORIDA_LEADS as u64,
        "{:?}",
        result.counts
    );
}

/// No idempotency key: a request that timed out may still become a call a moment later.
/// A lookup made at once finds nothing; only lookups after `absent_after` (and two of them)
/// may send the lead again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_api_creates_after_the_client_gave_up_is_not_made_twice() {
    let faults = Faults {
        // Acted on 0.6 s after arrival; the client gives up at 0.3 s and first looks at
        // 0.35 s, the lead may go again only after 0.3 + 0.5 s.
        late_accept_rate: 0.3,
        late_accept_ms: 600,
        ..Faults::default()
    };
    let result = run("late-accept", simulator(20, faults), 40, 300).await;
    // (Numbers' gaps are not checked here: the simulator stamps a late call when it acts.)
    let mut by_lead: std::collections::HashMap<&str, usize> = Default::default();
    for call in &result.log {
        *by_lead.entry(call.request.phone.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = by_lead.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "leads called twice: {twice:?}");
    assert_eq!(
        count(&result.counts, LeadState::Completed),
        40 - FLORIDA_LEADS as u64,
        "{:?}",
        result.counts
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_429_costs_one_pacing_beat_not_seconds() {
    // One request in ten is refused with 429 whatever the load; the back-off keeps its
    // documented default (2 s, doubling) for 429s in a row.
    let sim = simulator(
        100,
        Faults {
            rate_limit_rate: 0.1,
            ..Faults::default()
        },
    );
    let base = sim.start_local().await.unwrap();
    let dir = rules_dir("lone429");
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    let intake = intake::parse(leads_csv(40).as_bytes()).unwrap();
    store.enqueue(&intake.leads, Utc::now()).await.unwrap();
    let config = DaemonConfig {
        attempts_per_second: 20,
        concurrency: 10,
        poll_interval: Duration::from_millis(20),
        ..DaemonConfig::default()
    };
    let daemon = start_daemon(store, &dir, base, config).await;
    let running = daemon.spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sim.log().len() < 40 - FLORIDA_LEADS && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let log = sim.log();
    let counts = daemon.store().counts().await.unwrap();
    let events: Vec<String> = daemon
        .events()
        .iter()
        .filter(|e| e.outcome != "placed")
        .map(|e| format!("{} {} {}", e.lead_id, e.outcome, e.detail))
        .collect();
    assert_eq!(
        log.len(),
        40 - FLORIDA_LEADS,
        "every lead placed once in the end: {counts:?} {events:#?}"
    );
    let refusals = sim.rate_limited_at();
    assert!(!refusals.is_empty(), "the fault was injected");
    // After a 429, the next call goes out within a few beats (50 ms each at 20/s), not after
    // the 2 s back-off meant for 429s in a row.
    let mut longest = chrono::Duration::zero();
    for refused in &refusals {
        if let Some(next) = log
            .iter()
            .map(|c| c.accepted_at)
            .filter(|t| t > refused)
            .min()
        {
            longest = longest.max(next - *refused);
        }
    }
    assert!(
        longest < chrono::Duration::milliseconds(1500),
        "dialing stood still for {longest} after a 429"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pace_carries_over_a_restart() {
    // The account allows 5 attempts a second, and the daemon paces at 5.
    let sim = simulator(5, Faults::default());
    let base = sim.start_local().await.unwrap();
    let dir = rules_dir("restart-pace");
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    let intake = intake::parse(leads_csv(6).as_bytes()).unwrap();
    store.enqueue(&intake.leads, Utc::now()).await.unwrap();
    // The previous run's last attempt went out just now (its ledger says so).
    let claimed = store.claim_due(Utc::now(), 1).await.unwrap();
    let previous = Utc::now();
    let attempt = store
        .begin_attempt(&claimed[0].id, "m-1", "+14155550100", "r", previous)
        .await
        .unwrap();
    store
        .attempt_placed(attempt, "earlier-call", previous)
        .await
        .unwrap();
    store
        .complete("earlier-call", "completed", None, previous)
        .await
        .unwrap();

    let config = DaemonConfig {
        attempts_per_second: 5,
        poll_interval: Duration::from_millis(20),
        ..DaemonConfig::default()
    };
    let daemon = start_daemon(store, &dir, base, config).await;
    let running = daemon.spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while sim.log().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    running.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let first = sim.log()[0].accepted_at;
    assert!(
        first - previous >= chrono::Duration::milliseconds(195),
        "the first attempt came {} ms after the last run's, closer than the account's 200 ms",
        (first - previous).num_milliseconds()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leads_enqueued_by_another_process_are_dialed_without_waiting_for_the_idle_poll() {
    let sim = simulator(100, Faults::default());
    let base = sim.start_local().await.unwrap();
    let dir = rules_dir("other-process");
    let url = format!("sqlite://{}", dir.join("queue.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    let config = DaemonConfig {
        attempts_per_second: 20,
        idle_poll: Duration::from_secs(60),
        ..DaemonConfig::default()
    };
    let daemon = start_daemon(store, &dir, base, config).await;
    let running = daemon.spawn();
    tokio::time::sleep(Duration::from_millis(300)).await; // idle now, for a minute

    // `callroute enqueue` is another process: another handle on the same file.
    let other = SqliteStore::open(&url).await.unwrap();
    let intake = intake::parse(leads_csv(1).as_bytes()).unwrap();
    other.enqueue(&intake.leads, Utc::now()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while sim.log().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(sim.log().len(), 1, "the new lead waited for the idle poll");
}

/// A lead time zone Synthflow's list lacks (one newer than its list): the 400 is for a field
/// callroute chose, so the same attempt goes again without `lead_timezone`; the lead is
/// called once and never failed for it. A 400 for the lead's own data still fails it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_for_the_zone_callroute_chose_does_not_fail_the_lead() {
    let mut config = sim_config(100, Faults::default());
    config.unlisted_zones = vec!["America/Ciudad_Juarez".into()];
    let sim = Simulator::new(config);
    let base = sim.start_local().await.unwrap();
    let dir = rules_dir("zone-400");
    let store = SqliteStore::open(&format!("sqlite://{}", dir.join("queue.db").display()))
        .await
        .unwrap();
    let intake = intake::parse(
        "id,phone,name,campaign,timezone\nJ,+14155550123,Juarez,c,America/Ciudad_Juarez\nK,+14155550124,Kolkata,c,Asia/Calcutta\n"
            .as_bytes(),
    )
    .unwrap();
    assert!(intake.rejected.is_empty(), "{:?}", intake.rejected);
    store.enqueue(&intake.leads, Utc::now()).await.unwrap();
    let daemon = start_daemon(store, &dir, base, DaemonConfig::default()).await;
    let running = daemon.spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sim.log().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = sim.log();
    let zone_of = |name: &str| {
        log.iter()
            .find(|c| c.request.name == name)
            .unwrap_or_else(|| panic!("{name} was never called: {log:?}"))
            .request
            .lead_timezone
            .clone()
    };
    assert_eq!(zone_of("Juarez"), None, "sent again without the zone");
    assert_eq!(zone_of("Kolkata").as_deref(), Some("Asia/Kolkata"));
    assert_eq!(log.len(), 2, "each lead called once");
    let juarez = daemon.store().lead("J").await.unwrap().unwrap();
    assert_ne!(juarez.state, LeadState::Failed, "{juarez:?}");
    running.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A hung API (requests taken, never answered) is reported within a few request timeouts:
/// the status and `/readyz` say so, systemd's STATUS too, requests awaiting an answer are
/// not shown as live calls, no new calls go out meanwhile, and dialing resumes by itself
/// once the API answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_api_is_reported_and_dialing_resumes_when_it_answers() {
    let sim = simulator(100, Faults::default());
    let base = sim.start_local().await.unwrap();
    let dir = rules_dir("hung");
    let store = SqliteStore::open(&format!("sqlite://{}", dir.join("queue.db").display()))
        .await
        .unwrap();
    let client = Client::new(&ClientConfig {
        base_url: base,
        api_key: "k".into(),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_millis(300),
    })
    .unwrap();
    let config = DaemonConfig {
        attempts_per_second: 20,
        concurrency: 5,
        poll_interval: Duration::from_millis(50),
        reconcile_delay: Duration::from_millis(50),
        // The requests the hung API took are looked up, and sent again 1 s after they
        // timed out once lookups agree they are absent.
        absent_after: Duration::from_secs(1),
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(300),
        idle_poll: Duration::from_millis(100),
        ..DaemonConfig::default()
    };
    let rules = Arc::new(load_dir(&dir).unwrap().rules);
    let daemon = Arc::new(Daemon::start(store, rules, client, config).await.unwrap());
    let running = daemon.spawn();
    sim.set_faults(Faults {
        hung: true,
        ..Faults::default()
    });
    let intake = intake::parse(leads_csv(12).as_bytes()).unwrap();
    daemon
        .store()
        .enqueue(&intake.leads, Utc::now())
        .await
        .unwrap();
    daemon.wake();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let problem = loop {
        if let Some(problem) = daemon.api_problem() {
            break problem;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a hung API was never reported"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(problem.contains("has not answered"), "{problem}");
    // The requests out time out; nothing new is sent meanwhile (no slot is taken).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        let status = daemon.status().await.unwrap();
        if status.live_calls == 0 && status.accounts[0].awaiting_answer == 0 {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "requests still out or slots held while the API is silent: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        status
            .to_string()
            .contains("dialing   PAUSED: Synthflow has not answered"),
        "{status}"
    );
    assert!(sim.log().is_empty());

    sim.set_faults(Faults::default());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let counts = daemon.store().counts().await.unwrap();
        let done = count(&counts, LeadState::Completed) + count(&counts, LeadState::Failed);
        if daemon.api_problem().is_none() && done + count(&counts, LeadState::Deferred) == 12 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dialing never resumed: {counts:?}, {:?}",
            daemon.api_problem()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await.unwrap();
    let log = sim.log();
    let mut leads: Vec<&str> = log.iter().map(|c| c.request.name.as_str()).collect();
    leads.sort();
    leads.dedup();
    assert_eq!(leads.len(), log.len(), "a lead called twice");
    let _ = std::fs::remove_dir_all(&dir);
}

/// While the loop waits for a call slot (one slot, long calls), the status line systemd
/// shows still counts the leads that arrive: it is counted beside the loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_line_counts_leads_that_arrive_while_the_loop_waits() {
    let mut config = sim_config(100, Faults::default());
    config.concurrency = 1;
    config.calls.talk_ms = 20_000;
    config.calls.answer_rate = 1.0;
    let sim = Simulator::new(config);
    let base = sim.start_local().await.unwrap();
    let dir = rules_dir("status-line");
    let store = SqliteStore::open(&format!("sqlite://{}", dir.join("queue.db").display()))
        .await
        .unwrap();
    let daemon = start_daemon(
        store,
        &dir,
        base,
        DaemonConfig {
            concurrency: 1,
            lease: Duration::from_millis(600),
            ..DaemonConfig::default()
        },
    )
    .await;
    let running = daemon.spawn();
    let first = intake::parse(leads_csv(2).as_bytes()).unwrap();
    daemon
        .store()
        .enqueue(&first.leads, Utc::now())
        .await
        .unwrap();
    daemon.wake();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while sim.log().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "nothing placed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The second lead now waits for the only slot; 30 more arrive (32 open: the live call
    // too).
    let csv: String = std::iter::once("id,phone,name,campaign\n".to_string())
        .chain((0..30).map(|i| format!("M{i},+1415555{:04},M {i},c\n", 2000 + i)))
        .collect();
    let more = intake::parse(csv.as_bytes()).unwrap();
    daemon
        .store()
        .enqueue(&more.leads, Utc::now())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !daemon.status_line().contains("queue 32 open") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stale: {}",
            daemon.status_line()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        daemon.status_line().contains("; 1 calls live"),
        "{}",
        daemon.status_line()
    );
    running.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the daemon logs, captured for the tests that read it (one global subscriber for
/// this test binary; other tests' lines land here too).
fn captured_log() -> Arc<std::sync::Mutex<Vec<u8>>> {
    static LOG: std::sync::OnceLock<Arc<std::sync::Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || Capture(writer.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        log
    })
    .clone()
}

struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every lead state change is logged at info, a call's end included (with its call id,
/// caller ID, status and duration).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_end_is_logged_at_info() {
    let log = captured_log();
    let sim = simulator(100, Faults::default());
    let base = sim.start_local().await.unwrap();
    let dir = rules_dir("end-logged");
    let store = SqliteStore::open(&format!("sqlite://{}", dir.join("queue.db").display()))
        .await
        .unwrap();
    let intake = intake::parse(leads_csv(1).as_bytes()).unwrap();
    store.enqueue(&intake.leads, Utc::now()).await.unwrap();
    let config = DaemonConfig {
        poll_interval: Duration::from_millis(20),
        ..DaemonConfig::default()
    };
    let daemon = start_daemon(store, &dir, base, config).await;
    let running = daemon.spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lead = daemon.store().lead("L0").await.unwrap().unwrap();
        if matches!(lead.state, LeadState::Completed) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{lead:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await.unwrap();
    let call_id = sim.log()[0].call_id.clone();
    let text = String::from_utf8_lossy(&log.lock().unwrap()).to_string();
    let line = text
        .lines()
        .find(|l| l.contains("call ended") && l.contains(&call_id))
        .unwrap_or_else(|| panic!("no end logged for {call_id}"));
    assert!(line.contains("INFO"), "{line}");
    assert!(
        line.contains("from=+1") && line.contains("status="),
        "{line}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
