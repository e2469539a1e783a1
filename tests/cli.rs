//! The built `callroute` binary on the shipped example rules and on broken copies of them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn callroute(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callroute"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run callroute")
}

fn explain_json(lead: &str, at: &str) -> Value {
    let out = callroute(&[
        "explain", "--rules", "rules", "--lead", lead, "--at", at, "--format", "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("explain prints JSON")
}

/// A scratch copy of `rules/` that is removed on drop.
struct ScratchRules(PathBuf);

impl ScratchRules {
    fn new(name: &str) -> ScratchRules {
        let dir = std::env::temp_dir().join(format!("callroute-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")).unwrap()
        {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
        ScratchRules(dir)
    }
}

impl Drop for ScratchRules {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn check_accepts_the_shipped_rules_without_warnings() {
    let out = callroute(&["check", "rules"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok:"));
    assert!(
        out.stderr.is_empty(),
        "warnings: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = callroute(&["check", "--rules", "rules"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn check_exits_78_with_every_error_located() {
    let scratch = ScratchRules::new("broken");
    std::fs::write(
        scratch.0.join("zz-broken.yaml"),
        "campaigns:\n  extra:\n    agent: nobody\n    routes:\n      - numbers: { brand: acme }\n        strategy: sideways\n",
    )
    .unwrap();
    let out = callroute(&["check", scratch.0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = scratch.0.join("zz-broken.yaml");
    assert!(
        stderr.contains(&format!("{}:3:12: unknown agent `nobody`", file.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}:6:19: unknown strategy `sideways`",
            file.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("2 errors"), "{stderr}");
}

#[test]
fn check_reports_yaml_syntax_errors_with_position() {
    let scratch = ScratchRules::new("syntax");
    std::fs::write(scratch.0.join("bad.yaml"), "agents:\n  x: { model_id: [\n").unwrap();
    let out = callroute(&["check", scratch.0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2:", scratch.0.join("bad.yaml").display())),
        "{stderr}"
    );
}

#[test]
fn california_lead_gets_a_california_number() {
    let json = explain_json(
        r#"{"phone":"+14155550123","name":"Ana","campaign":"spring-promo"}"#,
        "2026-03-04T10:00:00-08:00",
    );
    assert_eq!(json["outcome"], "dial");
    assert_eq!(json["route"], "west-coast");
    assert_eq!(json["tier"], "area_code");
    let from = json["from_phone_number"].as_str().unwrap();
    assert!(
        from.starts_with("+1415") || from.starts_with("+1628"),
        "{from}"
    );
    assert!(json["trace"]["routes"].is_array());
}

#[test]
fn california_lead_falls_back_to_another_california_number_when_local_ones_are_detached() {
    let out = callroute(&[
        "explain",
        "--rules",
        "rules",
        "--format",
        "json",
        "--at",
        "2026-03-04T10:00:00-08:00",
        "--lead",
        r#"{"phone":"+14155550123","name":"Ana","campaign":"spring-promo"}"#,
        "--attached",
        "+12135550103,+17025550104",
    ]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["from_phone_number"], "+12135550103");
    assert_eq!(json["tier"], "state");
}

#[test]
fn lead_at_22_local_is_deferred_to_the_next_window() {
    let json = explain_json(
        r#"{"phone":"+14155550123","name":"Ana","campaign":"spring-promo"}"#,
        "2026-03-04T22:00:00-08:00",
    );
    assert_eq!(json["outcome"], "defer");
    assert_eq!(json["until"], "2026-03-05T16:00:00Z"); // Thursday 08:00 in Los Angeles
    assert_eq!(json["reason_code"], "outside_calling_hours");
    assert_eq!(json["from_phone_number"], Value::Null);
}

#[test]
fn unknown_campaign_is_held_until_the_rules_change() {
    let json = explain_json(
        r#"{"phone":"+14155550123","name":"Ana","campaign":"winter"}"#,
        "2026-03-04T10:00:00-08:00",
    );
    assert_eq!(json["outcome"], "hold");
    assert_eq!(json["reason_code"], "unknown_campaign");
    assert!(json["reason"].as_str().unwrap().contains("winter"));
}

#[test]
fn text_output_explains_the_pick() {
    let out = callroute(&[
        "explain",
        "--rules",
        "rules",
        "--at",
        "2026-03-04T10:00:00-05:00",
        "--lead",
        r#"{"phone":"+13055550123","name":"Bo","campaign":"spring-promo"}"#,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("DIAL from +13055550105"), "{text}");
    assert!(text.contains("skipped: `state` does not match"), "{text}");
    assert!(text.contains("picked   +13055550105 by weighted"), "{text}");
}

#[test]
fn history_replay_shows_limits_and_stickiness() {
    let scratch = ScratchRules::new("history");
    let history = scratch.0.join("history.jsonl");
    // The Chicago number was used by another lead 10 s ago (min_gap 20s); this lead was
    // called from Phoenix yesterday, and the support route is sticky for 8 days.
    std::fs::write(
        &history,
        concat!(
            r#"{"from_phone_number":"+16025550111","at":"2026-03-03T10:00:00-05:00"}"#, "\n",
            r#"{"from_phone_number":"+13125550114","at":"2026-03-04T09:59:50-05:00","lead":{"phone":"+13125550999","name":"X","campaign":"support-callbacks"}}"#, "\n",
        ),
    )
    .unwrap();
    let out = callroute(&[
        "explain",
        "--rules",
        "rules",
        "--format",
        "json",
        "--at",
        "2026-03-04T10:00:00-05:00",
        "--lead",
        r#"{"phone":"+13125550123","name":"Bo","campaign":"support-callbacks"}"#,
        "--history",
        history.to_str().unwrap(),
    ]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["outcome"], "dial", "{json}");
    assert_eq!(json["from_phone_number"], "+16025550111");
    assert_eq!(json["tier"], "sticky");
}

/// A redial of the example cadence (`caller_id: different`): the lead was called from New
/// York yesterday, unanswered; today's attempt 2 shows another number and says why.
#[test]
fn a_redial_is_explained_with_its_attempt_and_the_caller_ids_it_avoids() {
    let scratch = ScratchRules::new("redial");
    let history = scratch.0.join("history.jsonl");
    std::fs::write(
        &history,
        r#"{"from_phone_number":"+12125550107","at":"2026-03-03T10:00:00-05:00","status":"no-answer"}"#,
    )
    .unwrap();
    let out = callroute(&[
        "explain",
        "--rules",
        "rules",
        "--at",
        "2026-03-04T10:00:00-05:00",
        "--lead",
        r#"{"phone":"+12125550123","name":"Bo","campaign":"spring-promo"}"#,
        "--history",
        history.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("DIAL from"), "{text}");
    assert!(!text.starts_with("DIAL from +12125550107"), "{text}");
    assert!(
        text.contains("cadence  attempt 2 of 4 (cadence at rules/campaigns.yaml:")
            && text.contains("different from +12125550107"),
        "{text}"
    );
    assert!(
        text.contains("  earlier  2026-03-03T15:00:00Z from +12125550107: no-answer"),
        "{text}"
    );
}

#[test]
fn bad_lead_exits_65_with_every_problem() {
    let out = callroute(&[
        "explain",
        "--rules",
        "rules",
        "--lead",
        r#"{"phone":"555-0123","campaign":"spring-promo"}"#,
    ]);
    assert_eq!(out.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`name` is required") && stderr.contains("E.164"),
        "{stderr}"
    );
}

#[test]
fn a_reader_that_goes_away_ends_explain_quietly() {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_callroute"))
        .args([
            "explain",
            "--rules",
            "rules",
            "--lead",
            r#"{"phone":"+14155550123","name":"Ana","campaign":"spring"}"#,
            "--at",
            "2026-03-04T10:00:00-08:00",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Like `| head -c 10`: read a little, then close the pipe.
    let mut first = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn endless_inputs_are_read_only_so_far() {
    let out = callroute(&["explain", "--rules", "rules", "--lead", "@/dev/zero"]);
    assert_eq!(out.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("larger than 1048576 bytes"), "{stderr}");

    let lead = r#"{"phone":"+14155550123","name":"Ana","campaign":"spring"}"#;
    let out = callroute(&[
        "explain",
        "--rules",
        "rules",
        "--lead",
        lead,
        "--history",
        "/dev/zero",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/dev/zero:1: line longer than"), "{stderr}");
    assert_eq!(out.status.code(), Some(65));
    // Missing, or a directory: cannot be read.
    for unreadable in ["@/nonexistent/lead.json", "@/"] {
        let out = callroute(&["explain", "--rules", "rules", "--lead", unreadable]);
        assert_eq!(out.status.code(), Some(65), "{unreadable}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("bad lead: cannot read"), "{stderr}");
    }
    let out = callroute(&[
        "explain",
        "--rules",
        "rules",
        "--lead",
        lead,
        "--history",
        "/nonexistent/history.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(65));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot open /nonexistent/history.jsonl")
    );

    // A huge phone number is not echoed back whole.
    let huge = format!(
        r#"{{"phone":"+1{}","name":"Ana","campaign":"spring"}}"#,
        "4".repeat(900_000)
    );
    let file = std::env::temp_dir().join(format!("callroute-huge-{}.json", std::process::id()));
    std::fs::write(&file, huge).unwrap();
    let out = callroute(&[
        "explain",
        "--rules",
        "rules",
        "--lead",
        &format!("@{}", file.display()),
    ]);
    let _ = std::fs::remove_file(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.len() < 1000, "{} bytes of error", stderr.len());
    assert!(stderr.contains("characters in all"), "{stderr}");
}

#[test]
fn the_demo_places_calls_whatever_the_day_and_hour_and_says_its_clock_is_simulated() {
    // A short run: the demo's day starts on the next weekday morning, whenever this runs.
    let out = callroute(&["demo", "--leads", "40", "--run-for", "6s"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.starts_with("SIMULATED CLOCK:"), "{report}");
    let placed: usize = report
        .lines()
        .find_map(|l| l.split(" calls placed").next()?.parse().ok())
        .expect("a summary line");
    assert!(placed > 0, "no call placed:\n{report}");
    assert!(
        report.contains("outside calling hours"),
        "deferrals show their reasons"
    );
}

#[test]
fn simulate_tells_what_the_rules_would_do_to_a_list_the_same_way_every_time() {
    let file = std::env::temp_dir().join(format!("callroute-sim-leads-{}.csv", std::process::id()));
    let mut csv = String::from("id,phone,name,campaign\n");
    for (i, area) in ["415", "212", "305", "808"]
        .iter()
        .cycle()
        .take(40)
        .enumerate()
    {
        csv.push_str(&format!("L{i},+1{area}555{:04},N,spring-promo\n", 1000 + i));
    }
    csv.push_str("bad,555-0100,N,spring-promo\n");
    std::fs::write(&file, csv).unwrap();
    let run = || {
        callroute(&[
            "simulate",
            "--leads",
            file.to_str().unwrap(),
            "--start",
            "2026-11-30T12:50:00Z",
            "--format",
            "json",
        ])
    };
    let (first, second) = (run(), run());
    let _ = std::fs::remove_file(&file);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stderr).contains(":42: `phone`"));
    assert_eq!(first.stdout, second.stdout, "deterministic");
    let report: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(report["leads"], 40);
    assert_eq!(report["called"], 40, "{report:#}");
    // Calling hours open zone by zone: New York's leads are deferred until 13:00 UTC.
    assert!(
        report["deferrals"]["outside_calling_hours"]
            .as_u64()
            .unwrap()
            >= 40
    );
    let ny = report["states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["state"] == "NY")
        .unwrap();
    assert!(ny["tiers"]["area_code"].as_u64().unwrap() > 0);
}

#[test]
fn simulate_writes_its_report_and_compares_two_rule_sets() {
    let dir = std::env::temp_dir().join(format!("callroute-sim-compare-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let looser = dir.join("looser");
    std::fs::create_dir_all(&looser).unwrap();
    for file in ["pool.yaml", "policy.yaml", "campaigns.yaml"] {
        let text = std::fs::read_to_string(Path::new("rules").join(file)).unwrap();
        // Three calls a minute, no gap: the same list, sooner and more local.
        let text = text
            .replace("per_minute: 2  ", "per_minute: 3  ")
            .replace("min_gap: 20s", "min_gap: 1s");
        std::fs::write(looser.join(file), text).unwrap();
    }
    let leads = dir.join("leads.csv");
    assert!(
        callroute(&[
            "demo",
            "--write-leads",
            leads.to_str().unwrap(),
            "--leads",
            "300"
        ])
        .status
        .success()
    );
    let report = dir.join("report.html");
    let simulate = |extra: &[&str]| {
        let mut args = vec![
            "simulate",
            "--leads",
            leads.to_str().unwrap(),
            "--start",
            "2026-11-30T12:50:00Z",
        ];
        args.extend_from_slice(extra);
        callroute(&args)
    };
    let alone = simulate(&["--out", report.to_str().unwrap()]);
    assert!(
        alone.status.success(),
        "{}",
        String::from_utf8_lossy(&alone.stderr)
    );
    let text = String::from_utf8_lossy(&alone.stdout);
    assert!(
        text.contains("capacity advice (each measured by simulating again):"),
        "{text}"
    );
    let page = std::fs::read_to_string(&report).unwrap();
    assert!(page.starts_with("<!doctype html>") && page.contains(r#"<svg id="heat-map""#));

    let compared = simulate(&["--compare", looser.to_str().unwrap()]);
    assert!(
        compared.status.success(),
        "{}",
        String::from_utf8_lossy(&compared.stderr)
    );
    let text = String::from_utf8_lossy(&compared.stdout);
    assert!(text.starts_with("rules "), "{text}");
    assert!(text.contains("leads unchanged"), "{text}");
    assert!(text.contains(" → called "), "some lead moves: {text}");

    // A broken second rule set is reported like `check` reports it, and nothing runs.
    std::fs::write(looser.join("pool.yaml"), "numbers: [\n").unwrap();
    let broken = simulate(&["--compare", looser.to_str().unwrap()]);
    assert_eq!(broken.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&broken.stderr).contains("pool.yaml:"));
    // A share outside 0..1 is refused before anything runs.
    let bad_rate = simulate(&["--answer-rate", "+14155550100=1.5"]);
    assert_eq!(bad_rate.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad_rate.stderr).contains("`1.5` is not a share between 0 and 1")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn explain_replays_a_rest_with_why_and_until_when() {
    let out = callroute(&[
        "explain",
        "--rules",
        "rules",
        "--lead",
        r#"{"phone":"+14155550123","name":"A","campaign":"spring-promo"}"#,
        "--at",
        "2026-12-01T18:00:00Z",
        "--resting",
        "+14155550100@2026-12-02T16:00:00Z",
        "--resting",
        "+14155550101@2026-12-03T00:00:00Z",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("excluded +14155550100 (area_code): resting until 2026-12-02T16:00:00Z"),
        "{text}"
    );
    assert!(
        text.starts_with("DIAL from +1213") || text.starts_with("DIAL from +1628"),
        "{text}"
    );
    let bad = callroute(&[
        "explain",
        "--rules",
        "rules",
        "--lead",
        r#"{"phone":"+14155550123","name":"A","campaign":"spring-promo"}"#,
        "--resting",
        "+14155550100",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected NUMBER@UNTIL"));
}

/// A configuration naming a scratch copy of the example rules (whose `litigators` list is
/// a file) and a SQLite store.
fn compliance_scratch(name: &str) -> (ScratchRules, PathBuf) {
    let scratch = ScratchRules::new(name);
    let config = scratch.0.join("callroute.conf"); // not *.yaml: not a rules file
    std::fs::write(
        &config,
        format!(
            "rules: {}\nstore: sqlite://{}\n",
            scratch.0.display(),
            scratch.0.join("q.db").display()
        ),
    )
    .unwrap();
    (scratch, config)
}

#[test]
fn suppress_adds_checks_removes_and_imports_with_an_audit_trail() {
    let (scratch, config) = compliance_scratch("suppress");
    let config = config.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["suppress", "--config", config];
        all.extend_from_slice(args);
        callroute(&all)
    };
    let out = run(&["add", "+12125550123", "--reason", "asked by phone"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["check", "+12125550123", "+13125550111", "+14155550100"]);
    assert_eq!(out.status.code(), Some(2), "listed numbers exit 2");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("+12125550123: store list `internal`") && text.contains("asked by phone"),
        "{text}"
    );
    assert!(
        text.contains("+13125550111: list `litigators`") && text.contains("litigators.txt:2"),
        "{text}"
    );
    assert!(text.contains("+14155550100: on no list"), "{text}");

    // A file list belongs to its file: `suppress add` refuses to write to it.
    let out = run(&[
        "add",
        "+12125550124",
        "--list",
        "litigators",
        "--reason",
        "x",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("litigators.txt"));

    let out = run(&["remove", "+12125550123", "--reason", "consent given again"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 of 1"));
    assert_eq!(run(&["check", "+12125550123"]).status.code(), Some(0));

    // An import with a bad line imports nothing and names the line.
    let file = scratch.0.join("import.csv");
    std::fs::write(&file, "phone,until\n+12125550130,\nnope,\n").unwrap();
    let import = || {
        run(&[
            "import",
            file.to_str().unwrap(),
            "--column",
            "phone",
            "--expires-column",
            "until",
            "--list",
            "client",
            "--reason",
            "client's list",
        ])
    };
    let out = import();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("import.csv:3"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        &file,
        "phone,until\n+12125550130,\n+12125550131,2030-01-01\n",
    )
    .unwrap();
    let out = import();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 numbers"));
    let out = run(&["check", "+12125550131"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("store list `client`"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Broken rules never stop a number going on the store's list.
    std::fs::write(scratch.0.join("zz-broken.yaml"), "campaigns: [\n").unwrap();
    let out = run(&[
        "add",
        "+12125550140",
        "--reason",
        "asked while the rules were broken",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not checked"));
}

#[test]
fn audit_prints_each_calls_proof_and_exports_csv() {
    use callroute::store::Store;
    let (_scratch, config) = compliance_scratch("audit");
    let db = config.parent().unwrap().join("q.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store =
            callroute::store::sqlite::SqliteStore::open(&format!("sqlite://{}", db.display()))
                .await
                .unwrap();
        let lead = callroute::lead::RawLead {
            id: Some("L1".into()),
            phone: Some("+13055550123".into()),
            name: Some("N".into()),
            campaign: Some("spring".into()),
            ..Default::default()
        };
        let now = chrono::Utc::now();
        store.enqueue(&[("L1".into(), lead)], now).await.unwrap();
        store.claim_due(now, 1).await.unwrap();
        let proof = r#"{"rules_hash":"00000000000000ab","states":{"states":["FL"],"how":"its number's state FL"},"calling_window":{"zones":["America/New_York"],"open_now":true,"laws":["FL: Florida Telephone Solicitation Act (2021)"]},"attempts":[{"state":"FL","window":"per_24h","used":0,"limit":3}],"lists":[{"list":"litigators","version":"00000000000000cd","hit":null}],"tables":["state-laws 2026.1"]}"#;
        store
            .begin_attempt_checked(
                &callroute::store::NewAttempt {
                lead_id: "L1",
                model_id: "m",
                from_number: "+13055550105",
                route: "local",
                account: "default",
                at: now,
                proof: Some(proof),
                to_number: Some("+13055550123"),
            },
                &callroute::store::AttemptGuard::default(),
            )
            .await
            .unwrap();
    });
    let config = config.to_str().unwrap();
    let out = callroute(&["audit", "L1", "--config", config]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for expected in [
        "lead L1 (+13055550123) from +13055550105",
        "00000000000000ab",
        "Florida Telephone Solicitation Act",
        "per_24h 0/3 (FL)",
        "litigators 00000000000000cd",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    let out = callroute(&[
        "audit",
        "+13055550123",
        "--config",
        config,
        "--format",
        "csv",
    ]);
    let csv = String::from_utf8_lossy(&out.stdout);
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("at,lead_id,to_number,from_number")
    );
    let row = lines.next().expect("one row");
    assert!(
        row.contains(",L1,+13055550123,+13055550105,local,sent,"),
        "{row}"
    );
    assert!(lines.next().is_none());
    let out = callroute(&["audit", "+19995550000", "--config", config]);
    assert!(!out.status.success() || String::from_utf8_lossy(&out.stdout).contains("no attempts"));

    // `| head -0`: every format ends quietly when its reader is gone.
    for format in ["text", "csv", "json"] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_callroute"));
        command.args(["audit", "--config", config, "--format", format]);
        common::assert_quiet_on_closed_pipe(format, &common::with_stdout_closed(command));
    }
}

#[test]
fn suppress_check_of_thousands_of_numbers_ends_quietly_on_a_closed_pipe() {
    let (_scratch, config) = compliance_scratch("suppress-pipe");
    let numbers: Vec<String> = (0..3_900).map(|i| format!("+1212555{i:04}")).collect();
    let mut command = Command::new(env!("CARGO_BIN_EXE_callroute"));
    command
        .args(["suppress", "--config", config.to_str().unwrap(), "check"])
        .args(&numbers);
    common::assert_quiet_on_closed_pipe("suppress check", &common::with_stdout_closed(command));
}

/// A number used at 15:00:00 with a 20 s gap frees at 15:00:20.200 (the gap's safety
/// margin): a lead decided at 15:00:20 is deferred until then, never "until" a time before
/// it can really go, in the text and in JSON.
#[test]
fn a_deferral_shows_the_instant_the_lead_can_really_go() {
    let scratch = ScratchRules::new("gap-until");
    let dir = &scratch.0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let _ = std::fs::remove_file(entry.unwrap().path());
    }
    std::fs::write(
        dir.join("rules.yaml"),
        "agents: { a: { model_id: m } }\nlimits: { default: { min_gap: 20s } }\nnumbers:\n  \"+14155550100\": {}\nstate_laws: false\ncalling_hours:\n  default: { days: [mon, tue, wed, thu, fri, sat, sun], start: \"00:00\", end: \"24:00\" }\ncampaigns:\n  c:\n    agent: a\n    purpose: informational\n    routes:\n      - numbers: all\n",
    )
    .unwrap();
    let history = dir.join("history.jsonl");
    std::fs::write(
        &history,
        "{\"from_phone_number\":\"+14155550100\",\"at\":\"2026-12-08T15:00:00Z\"}\n",
    )
    .unwrap();
    let lead = r#"{"phone":"+14155550123","name":"A","campaign":"c"}"#;
    let explain = |at: &str, format: &str| {
        let out = callroute(&[
            "explain",
            "--rules",
            dir.to_str().unwrap(),
            "--lead",
            lead,
            "--history",
            history.to_str().unwrap(),
            "--at",
            at,
            "--format",
            format,
        ]);
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let text = explain("2026-12-08T15:00:20Z", "text");
    assert!(
        text.starts_with("DEFER until 2026-12-08T15:00:20.200Z"),
        "{text}"
    );
    let json: Value = serde_json::from_str(&explain("2026-12-08T15:00:20Z", "json")).unwrap();
    assert_eq!(json["until"], "2026-12-08T15:00:20.200Z");
    assert!(explain("2026-12-08T15:00:20.200Z", "text").starts_with("DIAL"));
}
