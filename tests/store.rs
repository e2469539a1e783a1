//! The store suite, run against both stores (SQLite, and PostgreSQL when one answers): the
//! lead life cycle, the ledger, owned claims and leases, the commit-time guards, shared
//! pacing; and durability across reopening.

mod common;

use std::future::Future;

use chrono::{DateTime, Duration, Utc};

use callroute::cadence::Redial;
use callroute::compliance::StoredEntry;
use callroute::lead::RawLead;
use callroute::store::outbox::CallEndReport;
use callroute::store::postgres::PgStore;
use callroute::store::sqlite::SqliteStore;
use callroute::store::{
    AttemptGuard, AttemptQuery, AttemptStatus, AuditEntry, Begun, LeadState, MemberInfo,
    NewAttempt, NotPlaced, NumberUses, PersonCalls, Store, SuppressionGuard,
};

/// Handles on one store, as several processes would open it.
trait Db {
    type S: Store;
    fn handle(&self) -> impl Future<Output = Self::S>;
}

struct SqliteDb(std::path::PathBuf);

impl SqliteDb {
    fn new(test: &str) -> SqliteDb {
        let dir =
            std::env::temp_dir().join(format!("callroute-store-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        SqliteDb(dir.join("q.db"))
    }
}

impl Drop for SqliteDb {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Db for SqliteDb {
    type S = SqliteStore;
    async fn handle(&self) -> SqliteStore {
        SqliteStore::open(&format!("sqlite://{}", self.0.display()))
            .await
            .unwrap()
    }
}

struct PgDb(String);

impl Db for PgDb {
    type S = PgStore;
    async fn handle(&self) -> PgStore {
        PgStore::open_in_schema(&common::pg_url(), Some(&self.0))
            .await
            .unwrap()
    }
}

/// Each test once per store: `sqlite::NAME` and `postgres::NAME`.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = super::SqliteDb::new(stringify!($name));
                    super::$name(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(schema) = super::common::pg_schema(stringify!($name)).await else {
                        return;
                    };
                    super::$name(&super::PgDb(schema)).await;
                }
            )*
        }
    };
}

suite!(
    enqueue_is_idempotent_by_id,
    a_lead_goes_from_queued_through_dialing_to_completed,
    a_call_end_with_a_redial_waits_once_for_the_next_attempt,
    results_are_kept_until_delivered_and_taken_by_one_member,
    not_placed_attempts_retry_or_fail_and_do_not_count_as_usage,
    deferred_leads_wait_and_claims_are_released,
    held_leads_are_counted_by_reason_and_queued_again_at_once,
    claims_are_owned_by_one_member,
    a_member_whose_lease_expired_is_taken_over_once,
    a_commit_refuses_a_number_used_since_the_decision,
    a_commit_refuses_a_person_called_since_the_decision,
    a_commit_refuses_an_account_at_its_live_call_limit,
    pacing_beats_are_shared_and_paused_together,
    a_commit_refuses_a_second_already_full,
    lead_ids_and_payloads_survive_copy_escaping,
    store_kept_lists_are_audited_and_checked_at_commit,
    earlier_calls_to_a_person_are_found_under_any_lead_id,
    a_member_that_left_shows_its_last_sign_of_life,
);

fn info(host: &str) -> MemberInfo {
    MemberInfo {
        host: host.into(),
        pid: 1,
        version: "test".into(),
        rules_hash: "h".into(),
    }
}

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

async fn enqueue_is_idempotent_by_id(db: &impl Db) {
    let store = db.handle().await;
    let leads = vec![
        ("a".to_string(), raw("+14155550123")),
        ("b".to_string(), raw("+14155550124")),
    ];
    let first = store.enqueue(&leads, t0()).await.unwrap();
    assert_eq!((first.accepted, first.duplicate), (2, 0));
    let again = store.enqueue(&leads, t0()).await.unwrap();
    assert_eq!((again.accepted, again.duplicate), (0, 2));
    // A batch mixing stored and new leads keeps the new ones.
    let mixed = vec![
        ("b".to_string(), raw("+14155550124")),
        ("c".to_string(), raw("+14155550125")),
    ];
    let counts = store.enqueue(&mixed, t0()).await.unwrap();
    assert_eq!((counts.accepted, counts.duplicate), (1, 1));
    assert_eq!(count(&store.counts().await.unwrap(), LeadState::Queued), 3);
}

async fn a_lead_goes_from_queued_through_dialing_to_completed(db: &impl Db) {
    let store = db.handle().await;
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

/// A cadence's redial is written with the call's end: the lead waits (deferred, code
/// `cadence`) until the redial is due, then is claimed for attempt 2. The end of a call is
/// recorded once, so a second report of it (the webhook after the poll) adds no redial.
async fn a_call_end_with_a_redial_waits_once_for_the_next_attempt(db: &impl Db) {
    let store = db.handle().await;
    store
        .enqueue(&[("a".to_string(), raw("+14155550123"))], t0())
        .await
        .unwrap();
    store.claim_due(t0(), 10).await.unwrap();
    let attempt = store
        .begin_attempt("a", "m", "+14155550100", "west", t0())
        .await
        .unwrap();
    store.attempt_placed(attempt, "call-1", t0()).await.unwrap();
    let ended = t0() + Duration::minutes(1);
    let redial = Redial {
        attempt: 2,
        max_attempts: 3,
        due_at: ended + Duration::minutes(30),
        reason: "cadence: attempt 2 of 3 after no-answer".into(),
    };
    let end = CallEndReport {
        redial: Some(&redial),
        ..CallEndReport::of("no-answer")
    };
    let from = store.end_call("call-1", &end, ended).await.unwrap();
    assert_eq!(from.as_deref(), Some("+14155550100"));
    let lead = store.lead("a").await.unwrap().unwrap();
    assert_eq!(lead.state, LeadState::Deferred);
    assert_eq!(lead.due_at, redial.due_at);
    assert_eq!(lead.reason_code.as_deref(), Some("cadence"));
    assert_eq!(lead.attempts, 1);
    assert!(
        store.live_calls().await.unwrap().is_empty(),
        "the call's slot is free"
    );
    let again = store.end_call("call-1", &end, ended).await.unwrap();
    assert!(again.is_none(), "a call ends once");
    assert_eq!(store.call_ends_since(t0()).await.unwrap().len(), 1);
    assert!(
        store
            .claim_due(redial.due_at - Duration::seconds(1), 10)
            .await
            .unwrap()
            .is_empty(),
        "not before it is due"
    );
    let claimed = store.claim_due(redial.due_at, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempts, 1);
    let second = store
        .begin_attempt("a", "m", "+14155550101", "west", redial.due_at)
        .await
        .unwrap();
    store
        .attempt_placed(second, "call-2", redial.due_at)
        .await
        .unwrap();
    store
        .complete("call-2", "completed", None, redial.due_at)
        .await
        .unwrap();
    let lead = store.lead("a").await.unwrap().unwrap();
    assert_eq!((lead.state, lead.attempts), (LeadState::Completed, 2));
    assert_eq!(lead.reason.as_deref(), Some("completed"));
    // The results, written with the state changes: each call's end, then the lead finished.
    let events = store
        .outbox_events(t0(), t0() + Duration::days(1), 100)
        .await
        .unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["attempt.ended", "attempt.ended", "lead.finished"]);
    assert_eq!(events[0].data["attempt"], 1);
    assert_eq!(events[0].data["phone"], "+14155550123");
    assert_eq!(events[0].data["caller_id"], "+14155550100");
    assert_eq!(events[0].data["status"], "no-answer");
    assert_eq!(events[0].data["next_attempt"]["attempt"], 2);
    assert_eq!(events[1].data["attempt"], 2);
    assert!(events[1].data["next_attempt"].is_null());
    assert_eq!(events[2].data["result"], "reached");
    assert_eq!(events[2].data["lead_id"], "a");
}

/// Events wait in the outbox until delivered: a member takes the due ones for a lease (no
/// other member takes them meanwhile), a failed delivery comes back when its retry is due,
/// a delivered one never again.
async fn results_are_kept_until_delivered_and_taken_by_one_member(db: &impl Db) {
    let (a, b) = (db.handle().await, db.handle().await);
    a.join(&info("a")).await.unwrap();
    b.join(&info("b")).await.unwrap();
    let leads: Vec<_> = (0..3)
        .map(|i| (format!("r{i}"), raw(&format!("+1415555013{i}"))))
        .collect();
    a.enqueue(&leads, t0()).await.unwrap();
    for i in 0..3 {
        a.reject(&format!("r{i}"), "suppressed", "on list dnc", t0())
            .await
            .unwrap();
    }
    let lease = std::time::Duration::from_secs(30);
    let taken = a.claim_outbox(t0(), 2, lease).await.unwrap();
    assert_eq!(taken.len(), 2);
    assert_eq!(taken[0].kind, "lead.finished");
    assert_eq!(taken[0].data["result"], "suppressed");
    let rest = b.claim_outbox(t0(), 10, lease).await.unwrap();
    assert_eq!(
        rest.len(),
        1,
        "the other member gets only what is not taken"
    );
    assert_ne!(rest[0].seq, taken[0].seq);
    a.outbox_delivered(taken[0].seq, t0()).await.unwrap();
    let retry_at = t0() + Duration::seconds(5);
    a.outbox_failed(taken[1].seq, "HTTP 503", retry_at)
        .await
        .unwrap();
    assert_eq!(a.outbox_backlog().await.unwrap(), (2, Some(t0())));
    assert!(
        a.claim_outbox(t0() + Duration::seconds(1), 10, lease)
            .await
            .unwrap()
            .is_empty()
    );
    let again = a.claim_outbox(retry_at, 10, lease).await.unwrap();
    assert_eq!(again.len(), 1, "the failed one, due again");
    assert_eq!(
        (again[0].id.as_str(), again[0].tries),
        (taken[1].id.as_str(), 1)
    );
    assert_eq!(again[0].last_error.as_deref(), Some("HTTP 503"));
    // A lease that runs out (its member died) gives the event to another member.
    let after_lease = t0() + Duration::seconds(31);
    let orphan = a.claim_outbox(after_lease, 10, lease).await.unwrap();
    assert_eq!(orphan.len(), 1);
    assert_eq!(orphan[0].seq, rest[0].seq);
    // Old delivered events are dropped; undelivered ones only where nobody receives them.
    let later = t0() + Duration::days(31);
    assert_eq!(a.prune_outbox(t0(), false).await.unwrap(), 0, "none older");
    assert_eq!(a.prune_outbox(later, false).await.unwrap(), 1);
    assert_eq!(a.outbox_backlog().await.unwrap().0, 2);
    assert_eq!(a.prune_outbox(later, true).await.unwrap(), 2);
    assert_eq!(a.outbox_backlog().await.unwrap(), (0, None));
}

async fn not_placed_attempts_retry_or_fail_and_do_not_count_as_usage(db: &impl Db) {
    let store = db.handle().await;
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

async fn deferred_leads_wait_and_claims_are_released(db: &impl Db) {
    let store = db.handle().await;
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

async fn held_leads_are_counted_by_reason_and_queued_again_at_once(db: &impl Db) {
    let store = db.handle().await;
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
    let db = SqliteDb::new("reopen");
    {
        let store = db.handle().await;
        // As a process of this host that has since been killed.
        let killed = MemberInfo {
            host: callroute::store::hostname(),
            pid: 999_999_999,
            ..info("")
        };
        store.join(&killed).await.unwrap();
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
    // The next run takes over what the last one left: the last one's process is gone.
    let store = db.handle().await;
    let taken = store.join(&info("next run")).await.unwrap();
    assert_eq!(taken.in_doubt.len(), 1);
    assert_eq!(store.in_doubt().await.unwrap().len(), 1);
    assert_eq!(
        store.lead("a").await.unwrap().unwrap().state,
        LeadState::Dialing
    );
}

fn attempt<'a>(lead: &'a str, from: &'a str, at: DateTime<Utc>) -> NewAttempt<'a> {
    NewAttempt {
        lead_id: lead,
        model_id: "m",
        from_number: from,
        route: "r",
        account: "default",
        at,
        proof: None,
        to_number: None,
    }
}

async fn claims_are_owned_by_one_member(db: &impl Db) {
    let (a, b) = (db.handle().await, db.handle().await);
    a.join(&info("a")).await.unwrap();
    b.join(&info("b")).await.unwrap();
    let leads: Vec<_> = (0..4)
        .map(|i| (format!("l{i}"), raw(&format!("+1415555012{i}"))))
        .collect();
    a.enqueue(&leads, t0()).await.unwrap();
    let mine = a.claim_due(t0(), 2).await.unwrap();
    let theirs = b.claim_due(t0(), 10).await.unwrap();
    assert_eq!((mine.len(), theirs.len()), (2, 2), "no lead claimed twice");
    assert!(mine.iter().all(|l| theirs.iter().all(|t| t.id != l.id)));
    assert_eq!(
        b.release_claims(t0()).await.unwrap(),
        2,
        "b releases only its own"
    );
    let begun = b
        .begin_attempt_checked(
            &attempt(&mine[0].id, "+14155550100", t0()),
            &AttemptGuard::default(),
        )
        .await
        .unwrap();
    assert!(
        matches!(begun, Begun::NotOwned),
        "b cannot dial a's claim: {begun:?}"
    );
    let begun = a
        .begin_attempt_checked(
            &attempt(&mine[0].id, "+14155550100", t0()),
            &AttemptGuard::default(),
        )
        .await
        .unwrap();
    assert!(matches!(begun, Begun::Written(_)));
    let members = a.members().await.unwrap();
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| m.left_at.is_none()));
}

/// After a restart, the daemon that left is listed with the time it left, never 1970.
async fn a_member_that_left_shows_its_last_sign_of_life(db: &impl Db) {
    let before = Utc::now() - Duration::seconds(5);
    let old = db.handle().await;
    old.join(&info("old")).await.unwrap();
    old.leave().await.unwrap();
    let new = db.handle().await;
    new.join(&info("new")).await.unwrap();
    let members = new.members().await.unwrap();
    assert_eq!(members.len(), 2, "{members:?}");
    for member in &members {
        assert!(
            member.heartbeat_at > before,
            "{}: heartbeat {}",
            member.info.host,
            member.heartbeat_at
        );
    }
    let left = members.iter().find(|m| m.info.host == "old").unwrap();
    assert!(left.left_at.is_some());
}

async fn a_member_whose_lease_expired_is_taken_over_once(db: &impl Db) {
    let (dead, b, c) = (db.handle().await, db.handle().await, db.handle().await);
    dead.join(&info("dead")).await.unwrap();
    let leads: Vec<_> = (0..3)
        .map(|i| (format!("l{i}"), raw(&format!("+1415555012{i}"))))
        .collect();
    dead.enqueue(&leads, t0()).await.unwrap();
    let claimed = dead.claim_due(t0(), 3).await.unwrap();
    // One call in doubt, one placed and live, one lead claimed and never decided.
    let in_doubt = dead
        .begin_attempt(&claimed[0].id, "m", "+14155550100", "r", t0())
        .await
        .unwrap();
    let live = dead
        .begin_attempt(&claimed[1].id, "m", "+14155550101", "r", t0())
        .await
        .unwrap();
    dead.attempt_placed(live, "call-live", t0()).await.unwrap();
    b.join(&info("b")).await.unwrap();
    c.join(&info("c")).await.unwrap();
    let lease = std::time::Duration::from_millis(300);
    let early = b.heartbeat("h", lease).await.unwrap();
    assert!(
        early.taken.members.is_empty(),
        "not before the lease runs out"
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (by_b, by_c) = tokio::join!(b.heartbeat("h", lease), c.heartbeat("h", lease));
    let (by_b, by_c) = (by_b.unwrap(), by_c.unwrap());
    // b and c beat too late as well; each takes the other or the dead one, never one twice.
    let dead_id = dead.member_id().to_string();
    let takers: Vec<_> = [&by_b, &by_c]
        .into_iter()
        .filter(|beat| beat.taken.members.contains(&dead_id))
        .collect();
    assert_eq!(
        takers.len(),
        1,
        "exactly one survivor takes the dead member"
    );
    let taken = &takers[0].taken;
    assert_eq!(taken.released, 1);
    assert_eq!(
        taken.in_doubt.iter().map(|a| a.id).collect::<Vec<_>>(),
        [in_doubt]
    );
    assert_eq!(taken.live.iter().map(|a| a.id).collect::<Vec<_>>(), [live]);
    assert_eq!(
        b.lead(&claimed[2].id).await.unwrap().unwrap().state,
        LeadState::Queued
    );
    let revived = dead.heartbeat("h", lease).await.unwrap();
    assert!(revived.lost, "the stalled member learns it lost its work");
    let begun = dead
        .begin_attempt_checked(
            &attempt(&claimed[2].id, "+14155550102", t0()),
            &AttemptGuard::default(),
        )
        .await
        .unwrap();
    assert!(
        matches!(begun, Begun::NotOwned),
        "and cannot dial what it held: {begun:?}"
    );
}

async fn a_commit_refuses_a_number_used_since_the_decision(db: &impl Db) {
    let (a, b) = (db.handle().await, db.handle().await);
    a.join(&info("a")).await.unwrap();
    b.join(&info("b")).await.unwrap();
    a.enqueue(
        &[
            ("x".to_string(), raw("+14155550120")),
            ("y".to_string(), raw("+14155550121")),
        ],
        t0(),
    )
    .await
    .unwrap();
    let x = a.claim_due(t0(), 1).await.unwrap();
    let y = b.claim_due(t0(), 1).await.unwrap();
    let number = "+14155550100";
    let since = t0() - Duration::minutes(1);
    let guard = |known: Vec<i64>| AttemptGuard {
        number_uses: Some(NumberUses {
            since,
            known_ms: known,
        }),
        ..AttemptGuard::default()
    };
    let first = a
        .begin_attempt_checked(&attempt(&x[0].id, number, t0()), &guard(vec![]))
        .await
        .unwrap();
    assert!(matches!(first, Begun::Written(_)));
    let at = t0() + Duration::milliseconds(300);
    let stale = b
        .begin_attempt_checked(&attempt(&y[0].id, number, at), &guard(vec![]))
        .await
        .unwrap();
    let Begun::Stale(unknown) = stale else {
        panic!("b decided without a's use of the number: {stale:?}");
    };
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].lead_id, x[0].id);
    assert_eq!(
        b.lead(&y[0].id).await.unwrap().unwrap().state,
        LeadState::Claimed,
        "a refused commit changes nothing"
    );
    let known = vec![unknown[0].at.timestamp_millis()];
    let again = b
        .begin_attempt_checked(&attempt(&y[0].id, number, at), &guard(known))
        .await
        .unwrap();
    assert!(
        matches!(again, Begun::Written(_)),
        "with every use counted: {again:?}"
    );
}

/// The laws' 24 h caps count calls to the person: a daemon that decided lead `row-4`
/// without the calls another daemon made to the same number under `row-1`..`row-3` (from
/// other caller IDs, so no number's check sees them) must not commit.
async fn a_commit_refuses_a_person_called_since_the_decision(db: &impl Db) {
    let (a, b) = (db.handle().await, db.handle().await);
    a.join(&info("a")).await.unwrap();
    b.join(&info("b")).await.unwrap();
    let person = "+13055550123";
    let earlier: Vec<_> = (1..=3).map(|i| (format!("row-{i}"), raw(person))).collect();
    a.enqueue(&earlier, t0()).await.unwrap();
    assert_eq!(a.claim_due(t0(), 10).await.unwrap().len(), 3);
    b.enqueue(&[("row-4".to_string(), raw(person))], t0())
        .await
        .unwrap();
    assert_eq!(b.claim_due(t0(), 10).await.unwrap().len(), 1);
    let guard = |known: Vec<i64>| AttemptGuard {
        person_calls: Some(PersonCalls {
            to_number: person.to_string(),
            uses: NumberUses {
                since: t0() - Duration::hours(24),
                known_ms: known,
            },
        }),
        ..AttemptGuard::default()
    };
    for i in 1..=3 {
        let lead = format!("row-{i}");
        let from = format!("+1305555010{i}");
        let new = NewAttempt {
            to_number: Some(person),
            ..attempt(&lead, &from, t0() + Duration::minutes(i))
        };
        let known = (1..i)
            .map(|k| (t0() + Duration::minutes(k)).timestamp_millis())
            .collect();
        let begun = a.begin_attempt_checked(&new, &guard(known)).await.unwrap();
        assert!(matches!(begun, Begun::Written(_)), "{lead}: {begun:?}");
    }
    let at = t0() + Duration::minutes(10);
    let fourth = NewAttempt {
        to_number: Some(person),
        ..attempt("row-4", "+13055550109", at)
    };
    let stale = b
        .begin_attempt_checked(&fourth, &guard(vec![]))
        .await
        .unwrap();
    let Begun::Stale(unknown) = stale else {
        panic!("b decided without a's three calls to the person: {stale:?}");
    };
    let ids: Vec<&str> = unknown.iter().map(|a| a.lead_id.as_str()).collect();
    assert_eq!(ids, ["row-1", "row-2", "row-3"]);
    assert_eq!(
        b.lead("row-4").await.unwrap().unwrap().state,
        LeadState::Claimed,
        "a refused commit changes nothing"
    );
    let known = unknown.iter().map(|a| a.at.timestamp_millis()).collect();
    let again = b
        .begin_attempt_checked(&fourth, &guard(known))
        .await
        .unwrap();
    assert!(
        matches!(again, Begun::Written(_)),
        "with every call counted: {again:?}"
    );
}

async fn a_commit_refuses_an_account_at_its_live_call_limit(db: &impl Db) {
    let store = db.handle().await;
    store.join(&info("a")).await.unwrap();
    let leads: Vec<_> = (0..3)
        .map(|i| (format!("l{i}"), raw(&format!("+1415555012{i}"))))
        .collect();
    store.enqueue(&leads, t0()).await.unwrap();
    store.claim_due(t0(), 3).await.unwrap();
    let limit_one = AttemptGuard {
        concurrency: Some(1),
        ..AttemptGuard::default()
    };
    let first = store
        .begin_attempt_checked(&attempt("l0", "+14155550100", t0()), &limit_one)
        .await
        .unwrap();
    let Begun::Written(first) = first else {
        panic!("{first:?}")
    };
    let busy = store
        .begin_attempt_checked(&attempt("l1", "+14155550101", t0()), &limit_one)
        .await
        .unwrap();
    assert!(matches!(busy, Begun::AccountBusy { live: 1 }), "{busy:?}");
    let other_account = NewAttempt {
        account: "other",
        ..attempt("l2", "+14155550102", t0())
    };
    assert!(
        matches!(
            store
                .begin_attempt_checked(&other_account, &limit_one)
                .await
                .unwrap(),
            Begun::Written(_)
        ),
        "another account has its own limit"
    );
    assert_eq!(store.open_calls("default").await.unwrap(), 1);
    store.attempt_placed(first, "c0", t0()).await.unwrap();
    assert_eq!(
        store.open_calls("default").await.unwrap(),
        1,
        "a live call is open"
    );
    store.complete("c0", "completed", None, t0()).await.unwrap();
    assert_eq!(store.open_calls("default").await.unwrap(), 0);
    assert!(matches!(
        store
            .begin_attempt_checked(&attempt("l1", "+14155550101", t0()), &limit_one)
            .await
            .unwrap(),
        Begun::Written(_)
    ));
}

async fn pacing_beats_are_shared_and_paused_together(db: &impl Db) {
    let (a, b) = (db.handle().await, db.handle().await);
    let beat = std::time::Duration::from_millis(200);
    let mut waits = Vec::new();
    for store in [&a, &b, &a, &b] {
        waits.push(store.reserve_pace("acct", beat).await.unwrap());
    }
    // Reserved at almost the same instant: 0, 200, 400, 600 ms from now (less the time the
    // reservations themselves took).
    for (i, wait) in waits.iter().enumerate() {
        let expected = beat * i as u32;
        assert!(
            *wait <= expected && expected - *wait < std::time::Duration::from_millis(150),
            "beat {i}: waits {wait:?}, expected about {expected:?}"
        );
    }
    assert!(
        a.reserve_pace("another", beat).await.unwrap() < std::time::Duration::from_millis(50),
        "each account has its own beat"
    );
    b.pause_account("acct", std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let after_pause = a.reserve_pace("acct", beat).await.unwrap();
    assert!(
        after_pause > std::time::Duration::from_millis(4_800),
        "{after_pause:?}"
    );
}

async fn lead_ids_and_payloads_survive_copy_escaping(db: &impl Db) {
    let store = db.handle().await;
    let mut lead = raw("+14155550123");
    lead.name = Some("Tab\there \\N new\nline \\\\ back".into());
    let id = "id\\with\ttab".to_string();
    let counts = store
        .enqueue(
            &[(id.clone(), lead.clone()), (id.clone(), lead.clone())],
            t0(),
        )
        .await
        .unwrap();
    assert_eq!((counts.accepted, counts.duplicate), (1, 1));
    let stored = store.lead(&id).await.unwrap().unwrap();
    assert_eq!(stored.raw.name, lead.name);
}

async fn a_commit_refuses_a_second_already_full(db: &impl Db) {
    let store = db.handle().await;
    store.join(&info("a")).await.unwrap();
    let leads: Vec<_> = (0..3)
        .map(|i| (format!("l{i}"), raw(&format!("+1415555012{i}"))))
        .collect();
    store.enqueue(&leads, t0()).await.unwrap();
    store.claim_due(t0(), 3).await.unwrap();
    let two_a_second = AttemptGuard {
        per_second: Some(2),
        ..AttemptGuard::default()
    };
    for lead in ["l0", "l1"] {
        let begun = store
            .begin_attempt_checked(&attempt(lead, "+14155550100", t0()), &two_a_second)
            .await
            .unwrap();
        assert!(matches!(begun, Begun::Written(_)), "{begun:?}");
    }
    let third = store
        .begin_attempt_checked(&attempt("l2", "+14155550101", t0()), &two_a_second)
        .await
        .unwrap();
    let Begun::Paced { wait } = third else {
        panic!("a third attempt within the second: {third:?}");
    };
    assert!(
        wait <= std::time::Duration::from_micros(callroute::store::PACE_WINDOW_US as u64),
        "{wait:?}"
    );
    tokio::time::sleep(wait).await;
    let later = store
        .begin_attempt_checked(&attempt("l2", "+14155550101", t0()), &two_a_second)
        .await
        .unwrap();
    assert!(
        matches!(later, Begun::Written(_)),
        "once the second has room: {later:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_on_an_empty_postgres_schema_migrate_it_once() {
    let Some(schema) = common::pg_schema("concurrent_migrations").await else {
        return;
    };
    let url = common::pg_url();
    let opened = futures_util::future::join_all(
        (0..4).map(|_| PgStore::open_in_schema(&url, Some(&schema))),
    )
    .await;
    for store in &opened {
        assert!(store.is_ok(), "{:?}", store.as_ref().err());
    }
    let mut connection =
        <sqlx::PgConnection as sqlx::Connection>::connect(&common::pg_store_url(&schema))
            .await
            .unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM callroute_migrations ORDER BY version")
            .fetch_all(&mut connection)
            .await
            .unwrap();
    assert_eq!(versions, [1, 2, 3], "each migration applied once");
    let again = PgStore::migrate_only(&common::pg_store_url(&schema))
        .await
        .unwrap();
    assert!(again.is_empty(), "nothing left to apply: {again:?}");
}

async fn store_kept_lists_are_audited_and_checked_at_commit(db: &impl Db) {
    let store = db.handle().await;
    let other = db.handle().await;
    store.join(&info("a")).await.unwrap();
    let leads: Vec<_> = (0..3)
        .map(|i| (format!("l{i}"), raw(&format!("+1212555010{i}"))))
        .collect();
    store.enqueue(&leads, t0()).await.unwrap();
    store.claim_due(t0(), 3).await.unwrap();
    let before = store.suppression_version().await.unwrap();
    let entry = |number: &str, list: &str, expires: Option<DateTime<Utc>>| StoredEntry {
        number: number.parse().unwrap(),
        list: list.into(),
        reason: "said stop".into(),
        added_by: "ops".into(),
        added_at: t0(),
        evidence: Some("call c-1".into()),
        expires,
    };
    let audit = |action: &str| AuditEntry {
        at: t0(),
        actor: "ops".into(),
        action: action.into(),
        subject: "numbers".into(),
        detail: "why".into(),
    };
    // Another process puts two numbers on lists; one entry has already expired.
    let written = other
        .suppress(
            &[
                entry("+12125550100", "internal", None),
                entry("+12125550101", "client", None),
                entry("+12125550102", "internal", Some(t0() - Duration::days(1))),
            ],
            &audit("suppress"),
        )
        .await
        .unwrap();
    assert_eq!(written, 3);
    assert_ne!(store.suppression_version().await.unwrap(), before);
    let listed = store.suppressions(Some("+12125550100")).await.unwrap();
    assert_eq!(listed, [entry("+12125550100", "internal", None)]);
    assert_eq!(store.suppressions(None).await.unwrap().len(), 3);

    let guard = |number: &str, exempt: &[&str]| AttemptGuard {
        suppression: Some(SuppressionGuard {
            number: number.into(),
            exempt: exempt.iter().map(|s| s.to_string()).collect(),
            now: t0(),
        }),
        ..AttemptGuard::default()
    };
    let to = |lead: &'static str, number: &'static str| NewAttempt {
        to_number: Some(number),
        proof: Some(r#"{"rules_hash":"00000000000000ab"}"#),
        ..attempt(lead, "+14155550100", t0())
    };
    let refused = store
        .begin_attempt_checked(&to("l0", "+12125550100"), &guard("+12125550100", &[]))
        .await
        .unwrap();
    assert!(
        matches!(&refused, Begun::Suppressed(entries) if entries[0].evidence.as_deref() == Some("call c-1")),
        "{refused:?}"
    );
    // A list the rules scope away from this lead does not stop it; an expired entry neither.
    for (lead, number) in [("l1", "+12125550101"), ("l2", "+12125550102")] {
        let begun = store
            .begin_attempt_checked(&to(lead, number), &guard(number, &["client"]))
            .await
            .unwrap();
        assert!(matches!(begun, Begun::Written(_)), "{lead}: {begun:?}");
    }
    // Off the list again: the refused lead goes.
    let removed = other
        .unsuppress("internal", &["+12125550100".into()], &audit("unsuppress"))
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let begun = store
        .begin_attempt_checked(&to("l0", "+12125550100"), &guard("+12125550100", &[]))
        .await
        .unwrap();
    assert!(matches!(begun, Begun::Written(_)), "{begun:?}");
    let log = store.audit_log(10).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["unsuppress", "suppress"]);

    // The ledger keeps each attempt's proof and the lead's number.
    let by_number = store
        .audited_attempts(&AttemptQuery {
            number: Some("+12125550101".into()),
            limit: 10,
            ..AttemptQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(by_number.len(), 1);
    assert_eq!(by_number[0].attempt.lead_id, "l1");
    assert_eq!(
        by_number[0].proof.as_ref().unwrap()["rules_hash"],
        "00000000000000ab"
    );
    let by_caller_id = store
        .audited_attempts(&AttemptQuery {
            number: Some("+14155550100".into()),
            from: Some(t0()),
            to: Some(t0() + Duration::seconds(1)),
            limit: 10,
            ..AttemptQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(by_caller_id.len(), 3);
    let by_lead = store
        .audited_attempts(&AttemptQuery {
            lead: Some("l0".into()),
            limit: 10,
            ..AttemptQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(by_lead.len(), 1);
}

/// The laws' caps count calls to the person: a daemon deciding lead `row-4` must learn the
/// calls another member made to the same number under `row-1`..`row-3`.
async fn earlier_calls_to_a_person_are_found_under_any_lead_id(db: &impl Db) {
    let store = db.handle().await;
    store.join(&info("a")).await.unwrap();
    let person = "+13055550123";
    let rows: Vec<(String, RawLead)> = (1..=4)
        .map(|i| (format!("row-{i}"), raw(person)))
        .chain([("other".to_string(), raw("+13055550124"))])
        .collect();
    store.enqueue(&rows, t0()).await.unwrap();
    assert_eq!(store.claim_due(t0(), 10).await.unwrap().len(), 5);
    for (i, id) in ["row-1", "row-2", "row-3", "other"].iter().enumerate() {
        let to = if *id == "other" {
            "+13055550124"
        } else {
            person
        };
        let new = NewAttempt {
            to_number: Some(to),
            ..attempt(id, "+13055550100", t0() + Duration::minutes(i as i64))
        };
        let begun = store
            .begin_attempt_checked(&new, &AttemptGuard::default())
            .await
            .unwrap();
        assert!(matches!(begun, Begun::Written(_)), "{id}: {begun:?}");
    }
    let found = store
        .lead_attempts(
            &["row-4".to_string()],
            &[person.to_string()],
            t0() - Duration::hours(1),
        )
        .await
        .unwrap();
    let ids: Vec<&str> = found.iter().map(|a| a.lead_id.as_str()).collect();
    assert_eq!(ids, ["row-1", "row-2", "row-3"]);
    assert!(found.iter().all(|a| a.to_number.as_deref() == Some(person)));
    // The ledger read at start carries the person's number too.
    let since = store
        .attempts_since(t0() - Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(since.len(), 4);
    assert_eq!(since[3].to_number.as_deref(), Some("+13055550124"));
}

/// A new SQLite store holds leads' numbers and names: readable by its owner only, the WAL
/// and shared-memory files too, whatever the umask.
#[tokio::test]
async fn a_new_sqlite_store_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("callroute-private-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("q.db");
    let store = SqliteStore::open(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    store
        .enqueue(&[("a".to_string(), raw("+14155550123"))], t0())
        .await
        .unwrap();
    for name in ["q.db", "q.db-wal", "q.db-shm"] {
        let mode = std::fs::metadata(dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name}: {mode:o}");
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
