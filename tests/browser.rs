//! What a person sees, checked in a real browser: the live console of a running daemon, and
//! a report file from `simulate`. Needs Debian's `chromium` and `chromium-driver`; without
//! them these tests say so and pass, unless `CALLROUTE_REQUIRE_BROWSER` is set (as `.ci/run`
//! does). Screenshots land in `target/screenshots/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callroute::daemon::{Daemon, DaemonConfig};
use callroute::rules::compile_sources;
use callroute::store::sqlite::SqliteStore;
use callroute::synthflow::simulator::Simulator;
use fantoccini::{Client, ClientBuilder, Locator};

// The simulator's calls last a second: count them as answered, not as short hang-ups.
const RULES: &str = "agents: { a: { model_id: m-1 } }\nhealth: { default: { short_call: 1s } }\nlimits: { default: { per_minute: 1, per_hour: 30, per_24h: 200 } }\nnumbers:\n  \"+14155550100\": {}\n  \"+12125550107\": {}\ncalling_hours:\n  default: { days: [mon, tue, wed, thu, fri, sat, sun], start: \"00:00\", end: \"24:00\" }\nstate_laws: false\nsuppression:\n  internal: {}\ncampaigns:\n  c:\n    agent: a\n    purpose: informational\n    routes:\n      - numbers: all\n        local_presence: [area_code, any]\n";
/// The console refreshes this often.
const REFRESH: Duration = Duration::from_secs(3);

/// chromedriver on a free loopback port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    /// The browser chromedriver started goes with it, even when a test failed before
    /// closing the session (its helpers end with the browser).
    fn drop(&mut self) {
        let pid = self.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", child]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The browser, or `None` (after saying why) when this machine has none and none is required.
async fn browser() -> Option<(Driver, Client)> {
    let driver_path = std::env::var("CALLROUTE_CHROMEDRIVER")
        .unwrap_or_else(|_| "/usr/bin/chromedriver".to_string());
    if !Path::new(&driver_path).exists() {
        assert!(
            std::env::var_os("CALLROUTE_REQUIRE_BROWSER").is_none(),
            "CALLROUTE_REQUIRE_BROWSER is set but {driver_path} does not exist (apt install chromium chromium-driver)"
        );
        eprintln!("SKIPPED: no {driver_path} (apt install chromium chromium-driver)");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&driver_path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_string(),
        serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1500"]
        }),
    );
    let started = Instant::now();
    loop {
        match ClientBuilder::rustls()
            .unwrap()
            .capabilities(capabilities.clone())
            .connect(&driver.url)
            .await
        {
            Ok(client) => return Some((driver, client)),
            Err(e) if started.elapsed() > Duration::from_secs(20) => {
                panic!("chromedriver did not start: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn screenshot_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Waits until `css` matches an element whose text contains `text`; returns that text.
async fn wait_for_text(browser: &Client, css: &str, text: &str, within: Duration) -> String {
    let started = Instant::now();
    loop {
        for element in browser.find_all(Locator::Css(css)).await.unwrap() {
            let shown = element.text().await.unwrap_or_default();
            if shown.contains(text) {
                return shown;
            }
        }
        assert!(
            started.elapsed() < within,
            "no `{css}` showed `{text}` within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_running_daemon() {
    let Some((_driver, browser)) = browser().await else {
        return;
    };
    let sim = Simulator::new(common::sim_config(&["+14155550100", "+12125550107"]));
    let base = sim.start_local().await.unwrap();
    let rules = Arc::new(compile_sources(&[(Path::new("r.yaml"), RULES)]).0.unwrap());
    let hash = rules.hash_text();
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    let config = DaemonConfig {
        attempts_per_second: 5,
        poll_interval: Duration::from_millis(20),
        idle_poll: Duration::from_millis(50),
        ..DaemonConfig::default()
    };
    let daemon = Arc::new(
        Daemon::start(store, rules, common::client(&base), config)
            .await
            .unwrap(),
    );
    let admin = common::serve_admin(&daemon).await;
    let _running = daemon.spawn();

    // A token is configured: the page asks for it once.
    browser.goto(&format!("{admin}/")).await.unwrap();
    let field = browser.find(Locator::Id("token")).await.unwrap();
    field.send_keys(common::ADMIN_TOKEN).await.unwrap();
    browser
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The running daemon's own numbers: its rules hash, its caller IDs and their windows.
    wait_for_text(&browser, "#rules-hash", &hash, REFRESH * 2).await;
    wait_for_text(&browser, "#numbers tr", "+14155550100", REFRESH).await;
    wait_for_text(&browser, "#live", "of 5", REFRESH).await;

    // A call placed during the test: once the daemon has decided it, the page shows it
    // within one refresh.
    // One after another: leads enqueued together are claimed in no set order.
    for (id, phone, name) in [
        ("browser-lead-1", "+14155550123", "Pat"),
        ("browser-lead-2", "+14155550124", "Sam"),
        ("browser-lead-3", "+14155550125", "Kim"),
    ] {
        let answer = reqwest::Client::new()
            .post(format!("{admin}/v1/leads"))
            .bearer_auth(common::ADMIN_TOKEN)
            .header("content-type", "text/csv")
            .body(format!("id,phone,name,campaign\n{id},{phone},{name},c\n"))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success());
        let started = Instant::now();
        loop {
            let status = daemon.status().await.unwrap();
            if status.decisions.iter().any(|d| d.lead == id) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{id} never decided"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let summary = wait_for_text(
        &browser,
        "details[data-lead='browser-lead-1'] summary",
        "browser-lead-1",
        REFRESH + Duration::from_secs(1),
    )
    .await;
    assert!(summary.contains("dial"), "{summary}");
    assert!(summary.contains("+14155550100 by area_code"), "{summary}");
    // The number's usage moved with it: one call in the last 24 hours, its minute full
    // (with the instant it frees), so the next lead went to New York and the third waits.
    let row = browser
        .find(Locator::Css(
            "tr[data-number='+14155550100'] td:nth-child(2)",
        ))
        .await
        .unwrap();
    assert_eq!(row.text().await.unwrap(), "1");
    // The daemons working the store: this one, live, on the running rules.
    wait_for_text(&browser, "#members", "(this one)", Duration::from_secs(5)).await;
    wait_for_text(
        &browser,
        "tr[data-number='+14155550100'] .full-windows",
        "per_minute full (1/1) until 20",
        REFRESH,
    )
    .await;
    wait_for_text(&browser, "#numbers .win", "per_hour 1/30", REFRESH).await;
    wait_for_text(
        &browser,
        "details[data-lead='browser-lead-2'] summary",
        "+12125550107 by any",
        REFRESH,
    )
    .await;
    wait_for_text(&browser, "#deferred", "all_numbers_at_limit", REFRESH).await;
    wait_for_text(&browser, "#lists", "internal", REFRESH).await;
    // Each number's outcomes so far, once its call ended.
    wait_for_text(
        &browser,
        "tr[data-number='+14155550100'] .health",
        "answered 100% of last 1",
        REFRESH * 2,
    )
    .await;

    // Expanded, the decision shows the engine's trace.
    browser
        .find(Locator::Css("details[data-lead='browser-lead-1'] summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let trace = wait_for_text(
        &browser,
        "details[data-lead='browser-lead-1'] pre.trace",
        "DIAL from +14155550100",
        REFRESH,
    )
    .await;
    assert!(trace.contains("lead"), "{trace}");
    // It stays open across a refresh.
    let updated = || async {
        let stamp = browser.find(Locator::Css("#updated")).await.unwrap();
        stamp.text().await.unwrap()
    };
    let before = updated().await;
    let started = Instant::now();
    while updated().await == before {
        assert!(started.elapsed() < REFRESH * 3, "the page never refreshed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let still = browser
        .find(Locator::Css(
            "details[data-lead='browser-lead-1'] pre.trace",
        ))
        .await
        .unwrap();
    assert!(still.is_displayed().await.unwrap());

    let png = browser.screenshot().await.unwrap();
    std::fs::write(screenshot_path("console.png"), png).unwrap();

    // At a phone's width (390 px) nothing scrolls sideways: the numbers table turns into
    // one labelled card per number.
    browser.set_window_size(390, 1400).await.unwrap();
    let started = Instant::now();
    loop {
        let widths = browser
            .execute(
                "return [document.documentElement.scrollWidth, window.innerWidth];",
                vec![],
            )
            .await
            .unwrap();
        let (scroll, inner) = (widths[0].as_i64().unwrap(), widths[1].as_i64().unwrap());
        if inner <= 400 {
            assert!(
                scroll <= inner,
                "the page is {scroll} px wide in a {inner} px window"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the window never narrowed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let png = browser.screenshot().await.unwrap();
    std::fs::write(screenshot_path("console-390.png"), png).unwrap();
    browser.set_window_size(1280, 1500).await.unwrap();

    // A broken edit of the rules: the page says the files are broken, where, and that the
    // running rules stay.
    let dir = std::env::temp_dir().join(format!("callroute-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("r.yaml"),
        RULES.replace("per_hour: 30", "per_hour: -3"),
    )
    .unwrap();
    daemon.set_rules_dir(dir.clone());
    let outcome = daemon.reload("test").await;
    assert!(
        matches!(outcome, callroute::daemon::ReloadOutcome::Failed { .. }),
        "{outcome:?}"
    );
    let error = wait_for_text(
        &browser,
        ".reload-error",
        "r.yaml:3:",
        REFRESH + Duration::from_secs(1),
    )
    .await;
    assert!(error.contains("not `-3`"), "{error}");
    wait_for_text(&browser, "#banners", "BROKEN", REFRESH).await;
    wait_for_text(&browser, "#rules-hash", &hash, REFRESH).await;
    let _ = std::fs::remove_dir_all(&dir);
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulate_report_opens_from_disk_and_sorts() {
    let Some((_driver, browser)) = browser().await else {
        return;
    };
    let rules = callroute::rules::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"))
        .unwrap()
        .rules;
    let intake =
        callroute::store::intake::parse(callroute::demo::sample_csv(300).as_bytes()).unwrap();
    let leads: Vec<callroute::lead::Lead> = intake
        .leads
        .into_iter()
        .map(|(id, raw)| callroute::lead::Lead {
            key: id,
            ..callroute::lead::Lead::from_raw(raw).unwrap()
        })
        .collect();
    let options = callroute::simulate::SimulateOptions {
        start: chrono::DateTime::parse_from_rfc3339("2026-11-30T12:50:00Z")
            .unwrap()
            .to_utc(),
        days: 1,
        caps: 1,
        concurrency: 5,
        answer_rate: 0.6,
        answer_rates: Default::default(),
        call_duration: Duration::from_secs(120),
        ring_duration: Duration::from_secs(30),
        seed: 0,
        non_local_target: 0.2,
        health: true,
        reputation: None,
    };
    let tally = callroute::simulate::tally(&rules, &leads, &options);
    let mut report = callroute::simulate::Report::new(&rules, &leads, &options, &tally);
    report.advice = Some(callroute::simulate::advice::advise(
        &rules, &leads, &options, &tally, &report,
    ));
    let file = screenshot_path("report.html");
    std::fs::write(&file, callroute::simulate::html::render(&report)).unwrap();

    browser
        .goto(&format!("file://{}", file.display()))
        .await
        .unwrap();
    // The figures of the run, and every chart drawn.
    wait_for_text(
        &browser,
        "#card-called",
        &report.called.to_string(),
        Duration::from_secs(5),
    )
    .await;
    for chart in [
        "calls-per-hour",
        "queue-depth",
        "heat-map",
        "tier-mix",
        "deferrals",
    ] {
        let svg = browser
            .find(Locator::Css(&format!("svg#{chart}")))
            .await
            .unwrap();
        let drawn = svg
            .find_all(Locator::Css("rect, polyline"))
            .await
            .unwrap()
            .len();
        assert!(drawn > 0, "{chart} is empty");
        let height: f64 = svg.attr("height").await.unwrap().unwrap().parse().unwrap();
        assert!(height > 20.0, "{chart}");
    }
    // Sorting by calls: descending on the second click.
    let calls_header = browser
        .find(Locator::Css("#numbers th:nth-child(2)"))
        .await
        .unwrap();
    calls_header.click().await.unwrap();
    calls_header.click().await.unwrap();
    let mut shown = Vec::new();
    for cell in browser
        .find_all(Locator::Css("#numbers tbody td:nth-child(2)"))
        .await
        .unwrap()
    {
        shown.push(cell.text().await.unwrap().parse::<u32>().unwrap());
    }
    let mut sorted = shown.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(shown, sorted);
    assert_eq!(shown.len(), report.numbers.len());
    browser
        .execute("window.scrollTo(0, 0)", Vec::new())
        .await
        .unwrap();
    let png = browser.screenshot().await.unwrap();
    std::fs::write(screenshot_path("report.png"), png).unwrap();
    browser.close().await.unwrap();
}
