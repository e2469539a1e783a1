//! The SQLite store: the lead life cycle, the ledger, and durability across reopening.

use chrono::{DateTime, Duration, Utc};

use callroute::lead::RawLead;
use callroute::store::sqlite::SqliteStore;
use callroute::store::{AttemptStatus, LeadState, NotPlaced, Store};

fn raw(phone: &str) -> RawLead {
    RawLead {
        phone: Some(phone.into()),
        name: Some("N".into()),
        campaign: Some("c".into()),
        ..RawLead::default()
    }
}

fn t0() -> DateTime<Utc> {
    "2026-03-04T18:00:00Z".parse().unwrap()
}

fn count(counts: &[(LeadState, u64)], state: LeadState) -> u64 {
    counts
        .iter()
        .find(|(s, _)| *s == state)
        .map_or(0, |(_, n)| *n)
}

#[tokio::test]
async fn enqueue_is_idempotent_by_id() {
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    let leads = vec![
        ("a".to_string(), raw("+14155550123")),
        ("b".to_string(), raw("+14155550124")),
    ];
    let first = store.enqueue(&leads, t0()).await.unwrap();
    assert_eq!((first.accepted, first.duplicate), (2, 0));
    let again = store.enqueue(&leads, t0()).await.unwrap();
    assert_eq!((again.accepted, again.duplicate), (0, 2));
    assert_eq!(count(&store.counts().await.unwrap(), LeadState::Queued), 2);
}

#[tokio::test]
async fn a_lead_goes_from_queued_through_dialing_to_completed() {
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    store
        .enqueue(&[("a".to_string(), raw("+14155550123"))], t0())
        .await
        .unwrap();
    let claimed = store.claim_due(t0(), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(
        store.claim_due(t0(), 10).await.unwrap().is_empty(),
        "a claimed lead is not claimed twice"
    );

    let attempt = store
        .begin_attempt("a", "m", "+14155550100", "west", t0())
        .await
        .unwrap();
    assert_eq!(
        store.lead("a").await.unwrap().unwrap().state,
        LeadState::Dialing
    );
    let doubtful = store.in_doubt().await.unwrap();
    assert_eq!(
        doubtful.len(),
        1,
        "between ledger row and response the attempt is in doubt"
    );
    assert_eq!(doubtful[0].status, AttemptStatus::Sent);

    store.attempt_placed(attempt, "call-1", t0()).await.unwrap();
    assert!(store.in_doubt().await.unwrap().is_empty());
    let rewrite = NotPlaced::Fail {
        reason: "late".into(),
    };
    assert!(
        store
            .attempt_not_placed(attempt, &rewrite, t0())
            .await
            .is_err(),
        "the ledger is append-only: one result per attempt"
    );
    assert_eq!(
        store.lead("a").await.unwrap().unwrap().state,
        LeadState::Placed,
        "and the refused write changed nothing"
    );
    assert_eq!(store.live_calls().await.unwrap().len(), 1);
    assert!(
        store
            .complete("call-1", "completed", None, t0())
            .await
            .unwrap()
            .is_some()
    );
    let lead = store.lead("a").await.unwrap().unwrap();
    assert_eq!(lead.state, LeadState::Completed);
    assert_eq!(lead.call_id.as_deref(), Some("call-1"));
    assert!(store.live_calls().await.unwrap().is_empty());
    assert_eq!(
        store
            .attempts_since(t0() - Duration::hours(1))
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn not_placed_attempts_retry_or_fail_and_do_not_count_as_usage() {
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    store
        .enqueue(
            &[
                ("a".to_string(), raw("+14155550123")),
                ("b".to_string(), raw("+14155550124")),
            ],
            t0(),
        )
        .await
        .unwrap();
    store.claim_due(t0(), 10).await.unwrap();
    let a = store
        .begin_attempt("a", "m", "+14155550100", "r", t0())
        .await
        .unwrap();
    let retry_at = t0() + Duration::seconds(30);
    store
        .attempt_not_placed(
            a,
            &NotPlaced::Retry {
                due_at: retry_at,
                reason: "429".into(),
            },
            t0(),
        )
        .await
        .unwrap();
    let b = store
        .begin_attempt("b", "m", "+14155550100", "r", t0())
        .await
        .unwrap();
    store
        .attempt_not_placed(
            b,
            &NotPlaced::Fail {
                reason: "invalid number".into(),
            },
            t0(),
        )
        .await
        .unwrap();

    assert_eq!(
        store.lead("a").await.unwrap().unwrap().attempts,
        0,
        "a 429 is not an attempt on the lead"
    );
    assert!(
        store.claim_due(t0(), 10).await.unwrap().is_empty(),
        "not due before the back-off ends"
    );
    assert_eq!(store.next_due().await.unwrap(), Some(retry_at));
    assert_eq!(store.claim_due(retry_at, 10).await.unwrap()[0].id, "a");
    assert_eq!(
        store.lead("b").await.unwrap().unwrap().state,
        LeadState::Failed
    );
    assert!(
        store
            .attempts_since(t0() - Duration::hours(1))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn deferred_leads_wait_and_claims_are_released() {
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    store
        .enqueue(
            &[
                ("a".to_string(), raw("+14155550123")),
                ("b".to_string(), raw("+14155550124")),
            ],
            t0(),
        )
        .await
        .unwrap();
    let claimed = store.claim_due(t0(), 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    store
        .defer(
            "a",
            t0() + Duration::hours(14),
            "outside_calling_hours",
            "outside calling hours",
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(
        store.release_claims(t0()).await.unwrap(),
        1,
        "b was claimed and never decided"
    );
    assert_eq!(store.claim_due(t0(), 10).await.unwrap()[0].id, "b");
    let a = store.lead("a").await.unwrap().unwrap();
    assert_eq!(a.reason.as_deref(), Some("outside calling hours"));
    assert_eq!(a.reason_code.as_deref(), Some("outside_calling_hours"));
}

#[tokio::test]
async fn held_leads_are_counted_by_reason_and_queued_again_at_once() {
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    let leads: Vec<_> = ["+14155550123", "+14155550124", "+14155550125"]
        .iter()
        .enumerate()
        .map(|(i, phone)| (format!("l{i}"), raw(phone)))
        .collect();
    store.enqueue(&leads, t0()).await.unwrap();
    store.claim_due(t0(), 10).await.unwrap();
    for (id, reason) in [
        ("l0", "campaign `x` is not in the rules"),
        ("l1", "campaign `x` is not in the rules"),
        ("l2", "no route matches"),
    ] {
        store
            .hold(id, "unknown_campaign", reason, t0())
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .claim_due(t0() + Duration::days(30), 10)
            .await
            .unwrap()
            .len(),
        0,
        "held leads never come due by themselves"
    );
    assert_eq!(
        store.held_reasons().await.unwrap(),
        [
            ("campaign `x` is not in the rules".to_string(), 2),
            ("no route matches".to_string(), 1)
        ]
    );
    let later = t0() + Duration::hours(1);
    assert_eq!(store.release_held(later).await.unwrap(), 3);
    assert_eq!(store.claim_due(later, 10).await.unwrap().len(), 3);
    assert!(store.held_reasons().await.unwrap().is_empty());

    // Deferred leads are counted by the code of their reason: its text names instants.
    for (id, code, reason) in [
        ("l0", "outside_calling_hours", "opens 2026-12-01T14:00:00Z"),
        ("l1", "outside_calling_hours", "opens 2026-12-01T15:00:00Z"),
        (
            "l2",
            "all_numbers_at_limit",
            "the first frees 2026-12-01T14:01:00Z",
        ),
    ] {
        store
            .defer(id, later + Duration::hours(1), code, reason, later)
            .await
            .unwrap();
    }
    assert_eq!(
        store.deferred_reasons().await.unwrap(),
        [
            ("outside_calling_hours".to_string(), 2),
            ("all_numbers_at_limit".to_string(), 1)
        ]
    );
}

#[tokio::test]
async fn everything_survives_reopening_the_file() {
    let dir = std::env::temp_dir().join(format!("callroute-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("q.db").display());
    {
        let store = SqliteStore::open(&url).await.unwrap();
        store
            .enqueue(&[("a".to_string(), raw("+14155550123"))], t0())
            .await
            .unwrap();
        store.claim_due(t0(), 1).await.unwrap();
        store
            .begin_attempt("a", "m", "+14155550100", "r", t0())
            .await
            .unwrap();
    }
    let store = SqliteStore::open(&url).await.unwrap();
    assert_eq!(store.in_doubt().await.unwrap().len(), 1);
    assert_eq!(
        store.lead("a").await.unwrap().unwrap().state,
        LeadState::Dialing
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
