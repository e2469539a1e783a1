//! Decision time for pools of 10, 1,000 and 10,000 numbers behind a campaign of 1,000 routes.
//! Run: `cargo bench --bench decide`. The lead matches the LAST route (worst case for route
//! matching) and routes use local presence, so the cost of finding candidates is what the
//! indexes make it, not a scan of the pool.

use std::fmt::Write;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

use callroute::engine::{Decision, decide};
use callroute::geo;
use callroute::lead::Lead;
use callroute::phone::E164;
use callroute::rules::{RuleSet, compile_sources};
use callroute::usage::PoolState;

const ROUTES: usize = 1_000;

/// `size` numbers spread over US area codes, 100 per area code (555-0100..0199).
fn rules_text(size: usize) -> String {
    // Area codes where libphonenumber accepts 555-01xx (new overlays may not be assigned yet).
    let area_codes: Vec<u16> = geo::nanp_area_codes()
        .filter(|(code, country, _)| {
            *country == "US" && E164::parse(&format!("+1{code}5550100")).is_ok()
        })
        .map(|(code, _, _)| code)
        .collect();
    let mut text = String::from(
        "agents: { a: { model_id: m } }\nlimits:\n  default: { per_minute: 2, per_hour: 40, per_24h: 150, per_day: 120, min_gap: 20s }\nnumbers:\n",
    );
    for i in 0..size {
        let area = area_codes[(i / 100) % area_codes.len()];
        let _ = writeln!(
            text,
            "  \"+1{area}555{:04}\": {{ brand: b{} }}",
            100 + i % 100,
            i % 2
        );
    }
    text.push_str("campaigns:\n  c:\n    agent: a\n    routes:\n");
    for r in 0..ROUTES - 1 {
        let _ = writeln!(
            text,
            "      - when: {{ labels: {{ segment: s{r} }} }}\n        numbers: {{ brand: b{} }}\n        strategy: round_robin",
            r % 2
        );
    }
    text.push_str("      - numbers: all\n        local_presence: [area_code, state, timezone, any]\n        strategy: least_recently_used\n");
    text
}

fn bench_decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide_1000_routes");
    let now: DateTime<Utc> = "2026-03-04T18:00:00Z".parse().unwrap();
    for size in [10usize, 1_000, 10_000] {
        let text = rules_text(size);
        let (rules, diagnostics) = compile_sources(&[(Path::new("bench.yaml"), text.as_str())]);
        let rules: RuleSet = rules.unwrap_or_else(|| {
            panic!(
                "{:?}",
                diagnostics
                    .iter()
                    .find(|d| d.severity == callroute::rules::Severity::Error)
            )
        });
        let mut pool = PoolState::new(1);
        pool.attach_all(&rules);
        // Realistic usage: every number called a few times over the last hours.
        let numbers: Vec<_> = rules.numbers().map(|n| n.number).collect();
        let filler =
            Lead::from_json(r#"{"phone":"+12065550100","name":"F","campaign":"c"}"#).unwrap();
        for (i, number) in numbers.iter().enumerate() {
            for k in 0..3 {
                pool.record(
                    *number,
                    &filler,
                    now - Duration::minutes(((i * 7 + k * 53) % 600) as i64 + 1),
                );
            }
        }
        // A lead in the first area code of the pool: the area-code tier has up to 100 numbers.
        let first = numbers[0].to_string();
        let lead = Lead::from_json(&format!(
            r#"{{"phone":"{}9999","name":"L","campaign":"c"}}"#,
            &first[..first.len() - 4]
        ))
        .unwrap();
        assert!(matches!(
            decide(&rules, &lead, &pool, now).0,
            Decision::Dial { .. }
        ));
        group.bench_with_input(BenchmarkId::new("pool", size), &size, |b, _| {
            b.iter(|| decide(&rules, &lead, &pool, now));
        });
    }
    group.finish();
}

/// Compiling the largest rule set: what a reload of it costs.
fn bench_compile(c: &mut Criterion) {
    let text = rules_text(10_000);
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.bench_function("10000_numbers_1000_routes", |b| {
        b.iter(|| {
            compile_sources(&[(Path::new("bench.yaml"), text.as_str())])
                .0
                .unwrap()
        });
    });
    group.finish();
}

/// The same decision with every compliance step at work: the law table, both holiday
/// calendars, a closure, and three suppression lists (1,000,000 numbers in a file, a CSV
/// column, the store's), for a lead in Alabama (a law, holidays, a list to check).
fn bench_compliance(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("callroute-bench-decide-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rules.yaml"), rules_text(1_000)).unwrap();
    std::fs::write(
        dir.join("compliance.yaml"),
        "suppression:\n  internal: {}\n  dnc: { file: dnc.txt }\n  client: { file: client.csv, column: phone, brands: [b0] }\nholidays: [us-federal, state-restrictions]\nclosures:\n  - { states: [LA], from: 2026-08-29, to: 2026-09-01, reason: storm }\n",
    )
    .unwrap();
    let mut list = String::with_capacity(14_000_000);
    for i in 0..1_000_000u64 {
        let _ = writeln!(list, "+1312{:07}", i * 7 % 10_000_000);
    }
    std::fs::write(dir.join("dnc.txt"), list).unwrap();
    std::fs::write(dir.join("client.csv"), "phone\n+12025550100\n").unwrap();
    let rules = callroute::rules::load_dir(&dir).unwrap().rules;
    let mut pool = PoolState::new(1);
    pool.attach_all(&rules);
    let now: DateTime<Utc> = "2026-03-04T18:00:00Z".parse().unwrap();
    let lead =
        Lead::from_json(r#"{"phone":"+12055550123","name":"L","campaign":"c","brand":"b0"}"#)
            .unwrap();
    let (decision, trace) = decide(&rules, &lead, &pool, now);
    assert!(matches!(decision, Decision::Dial { .. }), "{decision:?}");
    assert_eq!(trace.suppression.len(), 3);
    c.bench_function("decide_compliance/pool/1000", |b| {
        b.iter(|| decide(&rules, &lead, &pool, now));
    });
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench_decide, bench_compliance, bench_compile);
criterion_main!(benches);
