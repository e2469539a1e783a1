//! Compliance in the decision: suppression lists (files and the store's), consent, state
//! calling-hour laws, holidays, closures and which state binds a lead. Rules are read from a
//! real directory with `load_dir`, as the daemon and the CLI read them.

use std::path::PathBuf;

use callroute::compliance::StoredEntry;
use callroute::engine::{Decision, ReasonCode, Trace, decide};
use callroute::lead::Lead;
use callroute::rules::{RuleSet, load_dir};
use callroute::usage::PoolState;
use chrono::{DateTime, Utc};

const BASE: &str = r#"
agents: { a: { model_id: m-1 } }
numbers:
  "+14155550100": { brand: acme }
  "+12125550107": { brand: acme }
calling_hours:
  default: { days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00" }
campaigns:
  sales: { agent: a, brand: acme, routes: [ { numbers: all } ] }
  service: { agent: a, brand: acme, routes: [ { numbers: all } ] }
"#;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str, files: &[(&str, &str)]) -> Dir {
        let dir = std::env::temp_dir().join(format!(
            "callroute-compliance-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in files {
            std::fs::write(dir.join(file), text).unwrap();
        }
        Dir(dir)
    }

    fn rules(&self) -> RuleSet {
        match load_dir(&self.0) {
            Ok(loaded) => loaded.rules,
            Err(e) => panic!("{e}"),
        }
    }

    fn errors(&self) -> String {
        load_dir(&self.0)
            .map(|_| ())
            .expect_err("the rules must be refused")
            .to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn lead(json: &str) -> Lead {
    Lead::from_json(json).unwrap()
}

fn phone_lead(phone: &str, campaign: &str) -> Lead {
    lead(&format!(
        r#"{{"phone":"{phone}","name":"N","campaign":"{campaign}"}}"#
    ))
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

fn run(rules: &RuleSet, pool: &PoolState, lead: &Lead, now: &str) -> (Decision, Trace) {
    decide(rules, lead, pool, at(now))
}

fn pool(rules: &RuleSet) -> PoolState {
    let mut pool = PoolState::new(1);
    pool.attach_all(rules);
    pool
}

fn code(decision: &Decision) -> Option<ReasonCode> {
    match decision {
        Decision::Dial { .. } => None,
        Decision::Defer { reason, .. }
        | Decision::Hold { reason }
        | Decision::Reject { reason } => Some(reason.code),
    }
}

fn message(decision: &Decision) -> String {
    match decision {
        Decision::Dial { .. } => "dial".into(),
        Decision::Defer { reason, .. }
        | Decision::Hold { reason }
        | Decision::Reject { reason } => reason.message.clone(),
    }
}

const WEDNESDAY_NOON_ET: &str = "2026-03-04T12:00:00-05:00";

#[test]
fn a_listed_number_is_rejected_with_the_list_and_its_line_only_where_the_list_applies() {
    let dir = Dir::new(
        "lists",
        &[
            ("rules.yaml", BASE),
            (
                "lists.yaml",
                "suppression:\n  litigators: { file: litigators.txt }\n  client-sales: { file: sales-dnc.csv, column: Phone, expires_column: Until, campaigns: sales }\n",
            ),
            (
                "litigators.txt",
                "# known litigators\n+13125550111\n+13125550112\n",
            ),
            (
                "sales-dnc.csv",
                "Name,Phone,Until\nAna,+13125550120,\nBo,+13125550121,2026-03-01\n",
            ),
        ],
    );
    let rules = dir.rules();
    let pool = pool(&rules);

    let (decision, trace) = run(
        &rules,
        &pool,
        &phone_lead("+13125550112", "service"),
        WEDNESDAY_NOON_ET,
    );
    assert_eq!(code(&decision), Some(ReasonCode::Suppressed));
    let text = message(&decision);
    assert!(text.contains("`litigators`"), "{text}");
    assert!(text.contains("litigators.txt:3"), "{text}");
    assert!(matches!(decision, Decision::Reject { .. }));
    let checked: Vec<&str> = trace.suppression.iter().map(|c| c.list.as_str()).collect();
    assert_eq!(
        checked,
        ["litigators"],
        "the client's list is for `sales` only"
    );
    assert_eq!(trace.suppression[0].version.len(), 16);

    // The client's list, a CSV column: it applies to `sales`, not `service`.
    let listed = phone_lead("+13125550120", "sales");
    let (decision, _) = run(&rules, &pool, &listed, WEDNESDAY_NOON_ET);
    assert!(
        message(&decision).contains("sales-dnc.csv:2"),
        "{decision:?}"
    );
    let (decision, _) = run(
        &rules,
        &pool,
        &phone_lead("+13125550120", "service"),
        WEDNESDAY_NOON_ET,
    );
    assert!(matches!(decision, Decision::Dial { .. }), "{decision:?}");

    // An entry that expired on 1 March no longer suppresses.
    let (decision, trace) = run(
        &rules,
        &pool,
        &phone_lead("+13125550121", "sales"),
        WEDNESDAY_NOON_ET,
    );
    assert!(matches!(decision, Decision::Dial { .. }), "{decision:?}");
    assert_eq!(trace.suppression.len(), 2);
    assert!(trace.suppression.iter().all(|c| c.hit.is_none()));
}

#[test]
fn a_broken_or_missing_list_fails_the_load_naming_every_bad_line() {
    let dir = Dir::new(
        "broken-list",
        &[
            ("rules.yaml", BASE),
            (
                "lists.yaml",
                "suppression:\n  dnc: { file: dnc.txt }\n  gone: { file: missing.txt }\n",
            ),
            (
                "dnc.txt",
                "+13125550111\n555-0100\n+13125550112,2026-13-01\n",
            ),
        ],
    );
    let errors = dir.errors();
    assert!(
        errors.contains("lists.yaml:2:3: suppression list `dnc`"),
        "{errors}"
    );
    assert!(errors.contains("dnc.txt:2: `555-0100`"), "{errors}");
    assert!(
        errors.contains("dnc.txt:3: expiry `2026-13-01`"),
        "{errors}"
    );
    assert!(
        errors.contains("lists.yaml:3:3") && errors.contains("missing.txt"),
        "{errors}"
    );

    let scoped = Dir::new(
        "scoped-list",
        &[
            ("rules.yaml", BASE),
            (
                "lists.yaml",
                "suppression:\n  scoped: { campaigns: nope, column: phone }\n",
            ),
        ],
    );
    let errors = scoped.errors();
    assert!(
        errors.contains("lists.yaml:2:") && errors.contains("unknown campaign `nope`"),
        "{errors}"
    );
    assert!(errors.contains("has no columns"), "{errors}");
}

#[test]
fn an_edited_list_changes_the_rules_hash() {
    let dir = Dir::new(
        "hash",
        &[
            ("rules.yaml", BASE),
            ("lists.yaml", "suppression:\n  dnc: { file: dnc.txt }\n"),
            ("dnc.txt", "+13125550111\n"),
        ],
    );
    let before = dir.rules().content_hash;
    std::fs::write(dir.0.join("dnc.txt"), "+13125550111\n+13125550112\n").unwrap();
    assert_ne!(dir.rules().content_hash, before);
}

#[test]
fn a_store_kept_entry_rejects_with_its_evidence_and_its_scope() {
    let dir = Dir::new(
        "store-list",
        &[
            ("rules.yaml", BASE),
            (
                "lists.yaml",
                "suppression:\n  internal: {}\n  sales-only: { campaigns: sales }\n",
            ),
        ],
    );
    let rules = dir.rules();
    let mut pool = pool(&rules);
    let entry = |list: &str, number: &str| StoredEntry {
        number: number.parse().unwrap(),
        list: list.into(),
        reason: "said stop".into(),
        added_by: "opt-out".into(),
        added_at: at("2026-03-01T10:00:00Z"),
        evidence: Some("call c-42".into()),
        expires: None,
    };
    pool.add_suppressed(entry("internal", "+13125550130"));
    pool.add_suppressed(entry("sales-only", "+13125550131"));
    let (decision, trace) = run(
        &rules,
        &pool,
        &phone_lead("+13125550130", "service"),
        WEDNESDAY_NOON_ET,
    );
    assert_eq!(code(&decision), Some(ReasonCode::Suppressed));
    assert!(message(&decision).contains("call c-42"), "{decision:?}");
    assert_eq!(trace.suppression[0].version, "store");
    let (decision, _) = run(
        &rules,
        &pool,
        &phone_lead("+13125550131", "service"),
        WEDNESDAY_NOON_ET,
    );
    assert!(
        matches!(decision, Decision::Dial { .. }),
        "`sales-only` is scoped to sales"
    );
    pool.remove_suppressed("+13125550130".parse().unwrap(), "internal");
    let (decision, _) = run(
        &rules,
        &pool,
        &phone_lead("+13125550130", "service"),
        WEDNESDAY_NOON_ET,
    );
    assert!(matches!(decision, Decision::Dial { .. }));
}

#[test]
fn consent_rules_reject_leads_without_consent_or_with_consent_too_old() {
    let consent = BASE.replace(
        "sales: { agent: a, brand: acme, routes: [ { numbers: all } ] }",
        "sales: { agent: a, brand: acme, routes: [ { numbers: all } ], consent: { required: [FL, OK], max_age: 365d } }",
    );
    let dir = Dir::new("consent", &[("rules.yaml", &consent)]);
    let rules = dir.rules();
    let pool = pool(&rules);
    let now = WEDNESDAY_NOON_ET;

    let florida = phone_lead("+13055550123", "sales");
    let (decision, _) = run(&rules, &pool, &florida, now);
    assert_eq!(code(&decision), Some(ReasonCode::ConsentMissing));
    assert!(message(&decision).contains("rules.yaml:"), "{decision:?}");
    assert!(message(&decision).contains("FL"), "{decision:?}");

    let old = lead(
        r#"{"phone":"+13055550123","name":"N","campaign":"sales","consent_at":"2024-01-10","consent_source":"web form 17"}"#,
    );
    let (decision, _) = run(&rules, &pool, &old, now);
    assert_eq!(code(&decision), Some(ReasonCode::ConsentExpired));
    assert!(message(&decision).contains("web form 17"), "{decision:?}");

    let fresh = lead(
        r#"{"phone":"+14055550123","name":"N","campaign":"sales","consent_at":"2026-02-01T09:30:00Z"}"#,
    );
    let (decision, trace) = run(&rules, &pool, &fresh, now);
    assert!(matches!(decision, Decision::Dial { .. }), "{decision:?}");
    assert!(trace.consent.unwrap().contains("OK"));

    // Not required outside FL and OK, nor in the other campaign.
    for (phone, campaign) in [("+14155550123", "sales"), ("+13055550123", "service")] {
        let (decision, _) = run(&rules, &pool, &phone_lead(phone, campaign), now);
        assert!(matches!(decision, Decision::Dial { .. }), "{decision:?}");
    }
    assert!(
        Lead::from_json(
            r#"{"phone":"+13055550123","name":"N","campaign":"sales","consent_at":"last week"}"#
        )
        .unwrap_err()
        .to_string()
        .contains("`consent_at`")
    );
    // Consent dated after the decision is not consent.
    let future = lead(
        r#"{"phone":"+13055550123","name":"N","campaign":"sales","consent_at":"2026-03-05T00:00:00Z"}"#,
    );
    let (decision, _) = run(&rules, &pool, &future, now);
    assert_eq!(
        code(&decision),
        Some(ReasonCode::ConsentInvalid),
        "{decision:?}"
    );
    assert!(message(&decision).contains("in the future"), "{decision:?}");
    // A state code no number has binds nobody: refused, in the lead and in the rules.
    let error =
        Lead::from_json(r#"{"phone":"+13055550123","name":"N","campaign":"sales","state":"ZZ"}"#)
            .unwrap_err()
            .to_string();
    assert!(error.contains("`state`: `ZZ`"), "{error}");
    let unknown = BASE.replace(
        "sales: { agent: a, brand: acme, routes: [ { numbers: all } ] }",
        "sales: { agent: a, brand: acme, routes: [ { numbers: all } ], consent: { required: [FL, ZZ] } }",
    );
    let errors = Dir::new("consent-zz", &[("rules.yaml", &unknown)]).errors();
    assert!(errors.contains("state `ZZ` is not a US state"), "{errors}");
}

#[test]
fn state_laws_narrow_the_rules_hours_and_are_named_in_the_decision() {
    let dir = Dir::new("laws", &[("rules.yaml", BASE)]);
    let rules = dir.rules();
    let pool = pool(&rules);
    // 20:30 in Miami: the rules allow all day, Florida's law stops at 20:00.
    let evening = "2026-03-04T20:30:00-05:00";
    let (decision, trace) = run(&rules, &pool, &phone_lead("+13055550123", "sales"), evening);
    assert_eq!(code(&decision), Some(ReasonCode::OutsideCallingHours));
    assert!(
        message(&decision).contains("Florida Telephone Solicitation Act"),
        "{decision:?}"
    );
    let Decision::Defer { until, .. } = decision else {
        panic!("a deferral")
    };
    assert_eq!(until, at("2026-03-05T08:00:00-05:00"));
    let hours = trace.calling_hours.unwrap();
    assert!(hours.closed_by[0].starts_with("FL: "), "{hours:?}");
    // New York has no such law in the table: open.
    let (decision, _) = run(&rules, &pool, &phone_lead("+12125550123", "sales"), evening);
    assert!(matches!(decision, Decision::Dial { .. }));
    // Sunday in Alabama (secondary source, said so).
    let sunday = "2026-03-08T12:00:00-05:00";
    let (decision, _) = run(&rules, &pool, &phone_lead("+12055550123", "sales"), sunday);
    let text = message(&decision);
    assert!(
        text.contains("no calls on Sun") && text.contains("not confirmed"),
        "{text}"
    );

    // The rules may turn the table off.
    let off = Dir::new(
        "laws-off",
        &[("rules.yaml", &format!("{BASE}state_laws: false\n"))],
    );
    let (decision, _) = run(
        &off.rules(),
        &pool,
        &phone_lead("+13055550123", "sales"),
        evening,
    );
    assert!(matches!(decision, Decision::Dial { .. }));
}

#[test]
fn a_holiday_closes_the_right_states_only() {
    let dir = Dir::new(
        "holidays",
        &[(
            "rules.yaml",
            &format!("{BASE}holidays: [state-restrictions]\n"),
        )],
    );
    let rules = dir.rules();
    let pool = pool(&rules);
    // Christmas Day 2026, a Friday, at 13:00 Eastern.
    let christmas = "2026-12-25T13:00:00-05:00";
    for (phone, state) in [
        ("+12055550123", "AL"),
        ("+15045550123", "LA"),
        ("+12155550123", "PA"),
        ("+18015550123", "UT"),
    ] {
        let (decision, trace) = run(&rules, &pool, &phone_lead(phone, "sales"), christmas);
        assert_eq!(
            code(&decision),
            Some(ReasonCode::OutsideCallingHours),
            "{state}"
        );
        let text = message(&decision);
        assert!(text.contains("Christmas Day"), "{state}: {text}");
        assert!(
            trace.calling_hours.unwrap().closed_by[0].starts_with(state),
            "{state}"
        );
    }
    for phone in ["+14155550123", "+12125550123", "+13125550123"] {
        let (decision, _) = run(&rules, &pool, &phone_lead(phone, "sales"), christmas);
        assert!(matches!(decision, Decision::Dial { .. }), "{phone}");
    }
    // Thanksgiving closes AL but not PA (PA restricts Christmas only).
    let thanksgiving = "2026-11-26T13:00:00-05:00";
    let (decision, _) = run(
        &rules,
        &pool,
        &phone_lead("+12055550123", "sales"),
        thanksgiving,
    );
    assert!(message(&decision).contains("Thanksgiving"), "{decision:?}");
    let (decision, _) = run(
        &rules,
        &pool,
        &phone_lead("+12155550123", "sales"),
        thanksgiving,
    );
    assert!(matches!(decision, Decision::Dial { .. }), "{decision:?}");
}

#[test]
fn a_closure_closes_its_states_for_its_days_with_its_reason() {
    let dir = Dir::new(
        "closures",
        &[(
            "rules.yaml",
            &format!(
                "{BASE}closures:\n  - {{ states: [LA], from: 2026-08-28, to: 2026-08-31, reason: \"state of emergency (hurricane)\" }}\n"
            ),
        )],
    );
    let rules = dir.rules();
    let pool = pool(&rules);
    let during = "2026-08-28T12:00:00-05:00";
    let (decision, _) = run(&rules, &pool, &phone_lead("+15045550123", "sales"), during);
    assert!(
        message(&decision).contains("state of emergency (hurricane)"),
        "{decision:?}"
    );
    let Decision::Defer { until, .. } = decision else {
        panic!("a deferral")
    };
    // The day after the closure, when Louisiana's law (and the federal window) opens.
    assert_eq!(until, at("2026-09-01T08:00:00-05:00"));
    let (decision, _) = run(&rules, &pool, &phone_lead("+17135550123", "sales"), during);
    assert!(matches!(decision, Decision::Dial { .. }), "Texas is open");

    let bad = Dir::new(
        "closures-bad",
        &[(
            "rules.yaml",
            &format!(
                "{BASE}closures:\n  - {{ states: [Louisiana], from: 2026-08-31, to: 2026-08-28, reason: \"\" }}\nholidays: [easter]\n"
            ),
        )],
    );
    let errors = bad.errors();
    for expected in [
        "`Louisiana` is not a US state or Canadian province code",
        "ends (2026-08-28) before it starts",
        "needs a `reason`",
        "unknown holiday calendar `easter`",
    ] {
        assert!(errors.contains(expected), "{expected}: {errors}");
    }
}

#[test]
fn the_rules_choose_which_state_binds_a_lead_and_the_trace_says_which() {
    // A Massachusetts number whose lead lives in California, at 20:30 Eastern.
    let moved = r#"{"phone":"+16175550123","name":"N","campaign":"sales","state":"CA"}"#;
    let evening = "2026-03-04T20:30:00-05:00";
    let both = Dir::new("state-both", &[("rules.yaml", BASE)]);
    let rules = both.rules();
    let pool = pool(&rules);
    let (decision, trace) = run(&rules, &pool, &lead(moved), evening);
    assert_eq!(code(&decision), Some(ReasonCode::OutsideCallingHours));
    assert!(
        trace.states.unwrap().how.contains("lead_and_number"),
        "by default both bind"
    );

    let own = Dir::new(
        "state-lead",
        &[("rules.yaml", &format!("{BASE}lead_state: lead\n"))],
    );
    let rules = own.rules();
    let (decision, trace) = run(&rules, &pool, &lead(moved), evening);
    assert!(matches!(decision, Decision::Dial { .. }), "{decision:?}");
    assert_eq!(trace.states.unwrap().states, ["CA"]);

    // A Florida number is Florida whatever the address says.
    let florida = r#"{"phone":"+13055550123","name":"N","campaign":"sales","state":"CA"}"#;
    let (decision, trace) = run(&rules, &pool, &lead(florida), evening);
    assert_eq!(code(&decision), Some(ReasonCode::OutsideCallingHours));
    let states = trace.states.unwrap();
    assert_eq!(states.states, ["CA", "FL"]);
    assert!(states.how.contains("presumed"), "{}", states.how);
}

#[test]
fn the_law_caps_calls_to_a_florida_lead_at_three_a_day() {
    let dir = Dir::new("law-caps", &[("rules.yaml", BASE)]);
    let rules = dir.rules();
    let mut pool = pool(&rules);
    let caller_id = "+14155550100".parse().unwrap();
    let florida = phone_lead("+13055550123", "sales");
    let new_york = phone_lead("+12125550123", "sales");
    for hour in 0..3 {
        let at = at("2026-03-04T09:00:00-05:00") + chrono::Duration::hours(hour);
        pool.record(caller_id, &florida, at);
        pool.record(caller_id, &new_york, at);
    }
    let (decision, trace) = run(&rules, &pool, &florida, WEDNESDAY_NOON_ET);
    assert_eq!(code(&decision), Some(ReasonCode::LeadAttemptLimit));
    let Decision::Defer { until, .. } = decision else {
        panic!("a deferral")
    };
    // The first of the three leaves the rolling 24 h (plus the limits' safety margin).
    let frees = at("2026-03-05T09:00:00-05:00");
    assert!(
        until >= frees && until <= frees + chrono::Duration::milliseconds(250),
        "{until}"
    );
    let count = &trace.attempt_counts[0];
    assert_eq!((count.window, count.used, count.limit), ("per_24h", 3, 3));
    let (decision, _) = run(&rules, &pool, &new_york, WEDNESDAY_NOON_ET);
    assert!(
        matches!(decision, Decision::Dial { .. }),
        "no cap in New York"
    );
}

#[test]
fn a_list_for_a_brand_nobody_has_is_warned_about() {
    let dir = Dir::new(
        "brand-typo",
        &[
            ("rules.yaml", BASE),
            (
                "lists.yaml",
                "suppression:\n  client: { brands: [acmee] }\n  ours: { brands: [acme] }\n",
            ),
        ],
    );
    let loaded = load_dir(&dir.0).unwrap();
    let warnings: Vec<String> = loaded
        .warnings
        .iter()
        .map(ToString::to_string)
        .filter(|w| w.contains("suppression list"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("lists.yaml:2:") && warnings[0].contains("brand `acmee`"),
        "{warnings:?}"
    );
}

/// The cases the statutes decide, each a call that used to be dialed (or closed) wrongly.
#[test]
fn state_laws_and_legal_holidays_follow_the_statutes() {
    let dir = Dir::new(
        "statutes",
        &[(
            "rules.yaml",
            &format!("{BASE}holidays: [state-restrictions]\n"),
        )],
    );
    let rules = dir.rules();
    let pool = pool(&rules);
    let closed = |phone: &str, now: &str, why: &str| {
        let (decision, _) = run(&rules, &pool, &phone_lead(phone, "sales"), now);
        assert_eq!(
            code(&decision),
            Some(ReasonCode::OutsideCallingHours),
            "{phone} at {now}: {decision:?}"
        );
        let text = message(&decision);
        assert!(text.contains(why), "{phone} at {now}: {text}");
    };
    let open = |phone: &str, now: &str| {
        let (decision, _) = run(&rules, &pool, &phone_lead(phone, "sales"), now);
        assert!(
            matches!(decision, Decision::Dial { .. }),
            "{phone} at {now}: {decision:?}"
        );
    };
    // A state's own legal holidays (generated from python-holidays), at local noon.
    closed("+18015550123", "2026-07-24T18:00:00Z", "Pioneer Day");
    closed("+14015550123", "2026-08-10T16:00:00Z", "Victory Day");
    closed(
        "+12055550123",
        "2026-04-27T17:00:00Z",
        "Confederate Memorial Day",
    );
    closed("+12055550123", "2026-06-01T17:00:00Z", "Jefferson Davis");
    closed("+12055550123", "2026-02-17T18:00:00Z", "Mardi Gras");
    closed("+15045550123", "2026-02-17T18:00:00Z", "Mardi Gras");
    closed("+15045550123", "2026-04-03T17:00:00Z", "Good Friday");
    // Not every federal holiday is a state's: Louisiana does not keep Columbus Day, and
    // Mississippi's holiday ban is repealed (its Sunday ban stands).
    open("+15045550123", "2026-10-12T17:00:00Z");
    open("+16015550123", "2026-10-12T17:00:00Z");
    open("+16015550123", "2026-04-27T17:00:00Z");
    closed("+16015550123", "2026-03-15T17:00:00Z", "no calls on Sun");
    // Utah: no Sunday calls (Utah Code § 13-25a-103).
    closed("+18015550123", "2026-03-15T18:00:00Z", "13-25a-103");
    // Texas: Sunday from noon (§ 301.051).
    closed("+15125550123", "2026-03-15T16:00:00Z", "301.051");
    open("+15125550123", "2026-03-15T17:30:00Z");
    // Washington: until 20:00 (RCW 19.158.040).
    closed("+12065550123", "2026-03-05T04:30:00Z", "19.158.040");
    open("+12065550123", "2026-03-05T03:30:00Z");
    // Rhode Island: Saturday 10:00-17:00 (§ 5-61-2).
    closed("+14015550123", "2026-03-07T22:30:00Z", "5-61");
    open("+14015550123", "2026-03-07T21:30:00Z");
}
