//! Pool management against the simulator: plan and apply under both readings of PUT, detach
//! by the slug GET gave, numbers resting under `detach_while_resting`.

mod common;

use std::path::Path;

use callroute::pool;
use callroute::rules::compile_sources;
use callroute::synthflow::simulator::{SimConfig, Simulator};
use callroute::usage::PoolState;
use chrono::Utc;

const SF: &str = "+14155550100";
const NY: &str = "+12125550107";
const LA: &str = "+12135550103";

fn rules(extra: &str) -> callroute::rules::RuleSet {
    let text = format!(
        "agents: {{ a: {{ model_id: m-1, manage_pool: true }} }}\nnumbers:\n  \"{SF}\": {{}}\n  \"{NY}\": {{}}\n{extra}campaigns:\n  c:\n    agent: a\n    routes:\n      - numbers: all\n"
    );
    compile_sources(&[(Path::new("r.yaml"), text.as_str())])
        .0
        .unwrap()
}

async fn simulator(put_replaces: bool) -> (Simulator, callroute::synthflow::Client) {
    // SF is in the rules and attached, LA attached but in no rule, NY not attached.
    let sim = Simulator::new(SimConfig {
        put_replaces,
        ..common::sim_config(&[SF, LA])
    });
    let base = sim.start_local().await.unwrap();
    let client = common::client(&base);
    (sim, client)
}

#[tokio::test]
async fn apply_makes_the_pool_the_rules_under_both_readings_of_put() {
    for (put_replaces, reading) in [(false, "added"), (true, "replaced")] {
        let (_sim, client) = simulator(put_replaces).await;
        let rules = rules("");
        let agent = rules.agent("a").unwrap();
        let attached = client.attached_numbers("m-1").await.unwrap();
        let view = PoolState::new(0);
        let rows = pool::rows(&rules, agent, &attached, &view, Utc::now());
        let state = |n: &str| rows.iter().find(|r| r.number == n).unwrap().state;
        assert_eq!(state(SF), "attached, in the rules");
        assert!(state(LA).starts_with("attached, in no rule"));
        assert!(state(NY).starts_with("in the rules, NOT attached"));
        assert!(rows.iter().find(|r| r.number == LA).unwrap().slug.is_some());

        let plan = pool::plan(&rules, agent, &attached, &view, Utc::now());
        assert_eq!(plan.attach, [NY]);
        let la_slug = attached
            .iter()
            .find(|a| a.number == LA)
            .unwrap()
            .slug
            .clone()
            .unwrap();
        assert_eq!(plan.detach, [(LA.to_string(), la_slug)]);

        let applied = pool::apply(&client, &plan).await.unwrap();
        assert_eq!(
            applied.put_reading,
            Some(reading),
            "put_replaces {put_replaces}"
        );
        assert!(applied.differences.is_empty(), "{applied:?}");
        assert_eq!(applied.now_attached, [NY, SF]);
        // In sync now: nothing to plan.
        let again = client.attached_numbers("m-1").await.unwrap();
        assert!(pool::plan(&rules, agent, &again, &view, Utc::now()).is_empty());
    }
}

#[tokio::test]
async fn a_resting_number_under_detach_while_resting_is_planned_out() {
    let (_sim, client) = simulator(false).await;
    let rules = rules(&format!(
        "health:\n  numbers:\n    \"{SF}\": {{ detach_while_resting: true }}\n"
    ));
    let agent = rules.agent("a").unwrap();
    let mut view = PoolState::new(0);
    let now = Utc::now();
    view.set_rests([callroute::health::Rest {
        number: SF.parse().unwrap(),
        since: now,
        until: now + chrono::Duration::hours(72),
        reason: "flagged by carrier".into(),
        source: "manual".into(),
    }]);
    let attached = client.attached_numbers("m-1").await.unwrap();
    let plan = pool::plan(&rules, agent, &attached, &view, now);
    assert_eq!(plan.wanted, [NY]);
    assert_eq!(plan.attach, [NY]);
    let detached: Vec<&str> = plan.detach.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(detached, [LA, SF]);
    let applied = pool::apply(&client, &plan).await.unwrap();
    assert_eq!(applied.now_attached, [NY]);
    let rows = pool::rows(
        &rules,
        agent,
        &client.attached_numbers("m-1").await.unwrap(),
        &view,
        now,
    );
    let sf = rows.iter().find(|r| r.number == SF).unwrap();
    assert!(sf.state.starts_with("in the rules, NOT attached"));
    assert!(
        sf.resting
            .as_deref()
            .unwrap()
            .contains("flagged by carrier")
    );
}

/// The API refuses a PUT whole when one number is not the workspace's, without naming it:
/// apply names it, attaches the others, and detaches nothing while it is refused.
#[tokio::test]
async fn a_refused_number_is_named_and_nothing_leaves_the_pool() {
    const MIAMI: &str = "+13055550105";
    for put_replaces in [false, true] {
        let sim = Simulator::new(SimConfig {
            put_replaces,
            // The workspace owns the attached numbers and Miami; not New York.
            workspace_numbers: Some(vec![MIAMI.to_string()]),
            ..common::sim_config(&[SF, LA])
        });
        let client = common::client(&sim.start_local().await.unwrap());
        let text = format!(
            "agents: {{ a: {{ model_id: m-1, manage_pool: true }} }}\nnumbers:\n  \"{SF}\": {{}}\n  \"{NY}\": {{}}\n  \"{MIAMI}\": {{}}\ncampaigns:\n  c:\n    agent: a\n    routes:\n      - numbers: all\n"
        );
        let rules = compile_sources(&[(Path::new("r.yaml"), text.as_str())])
            .0
            .unwrap();
        let agent = rules.agent("a").unwrap();
        let view = PoolState::new(0);
        let attached = client.attached_numbers("m-1").await.unwrap();
        let plan = pool::plan(&rules, agent, &attached, &view, Utc::now());
        assert_eq!(plan.attach, [NY, MIAMI]);

        let applied = pool::apply(&client, &plan).await.unwrap();
        assert!(!applied.is_complete());
        assert_eq!(applied.refused.len(), 1, "{applied:?}");
        assert_eq!(applied.refused[0].0, NY);
        assert!(applied.refused[0].1.contains("404"), "{applied:?}");
        assert_eq!(
            applied.detaches_skipped,
            [LA],
            "put_replaces {put_replaces}"
        );
        assert!(applied.detached.is_empty());
        assert!(applied.differences.is_empty(), "{applied:?}");
        assert_eq!(applied.now_attached, [LA, MIAMI, SF]);
    }
}
