//! Pool state: which numbers each agent has attached, and the recent use of every number and
//! lead. The engine reads it; `record` is the only way it changes, so the daemon, `explain`
//! and tests all account for a call the same way.

use std::collections::VecDeque;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::hours::first_instant_at_or_after;
use crate::lead::Lead;
use crate::phone::E164;
use crate::rules::{AttemptRule, Limits, NumberInfo, RuleSet};

/// How long individual uses are kept: the longest window that counts them (a local calendar
/// day lasts up to 25 hours).
pub const RETENTION: Duration = Duration::hours(26);

#[derive(Debug, Clone, Default)]
pub struct PoolState {
    seed: u64,
    attached: HashMap<String, HashSet<E164>>,
    numbers: HashMap<E164, NumberUsage>,
    leads: HashMap<String, LeadHistory>,
    /// Numbers resting (by health policy or by hand), with why and until when.
    rests: std::collections::BTreeMap<E164, crate::health::Rest>,
    /// The first use of each number ever (from the ledger), for warm-up.
    first_use: HashMap<E164, DateTime<Utc>>,
    /// Entries of the suppression lists kept in the store (`callroute suppress`, opt-outs).
    suppressed: HashMap<E164, Vec<crate::compliance::StoredEntry>>,
    /// Recent calls to each person's number, whatever lead id they were made under: the
    /// laws' caps (FL, OK, MD: 3 in 24 h) count calls to the person, not to a row.
    called: HashMap<E164, VecDeque<DateTime<Utc>>>,
    /// Uses taken back (not placed), by lead key and epoch millisecond: a ledger read made
    /// before the take-back (a claim's history, a refused commit) can deliver the use after
    /// it, and must not count it again.
    undone: HashSet<(String, i64)>,
}

/// Recent uses of one caller ID, oldest first.
#[derive(Debug, Clone, Default)]
pub struct NumberUsage {
    uses: VecDeque<DateTime<Utc>>,
    last_used: Option<DateTime<Utc>>,
}

/// Recent attempts to one lead, and the caller ID it last saw.
#[derive(Debug, Clone, Default)]
pub struct LeadHistory {
    attempts: VecDeque<DateTime<Utc>>,
    total: u32,
    /// Every caller ID the lead's attempts showed, with when (kept as long as the lead is:
    /// a cadence's redial avoids them however long ago they were); the last one is the
    /// sticky assignment.
    shown: Vec<(E164, DateTime<Utc>)>,
}

/// A usage window of a caller ID or a lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitWindow {
    PerMinute,
    PerHour,
    Per24h,
    PerDay,
    MinGap,
    MaxTotal,
    /// The daily cap of a number new to the pool.
    Warmup,
}

impl LimitWindow {
    pub fn name(self) -> &'static str {
        match self {
            LimitWindow::PerMinute => "per_minute",
            LimitWindow::PerHour => "per_hour",
            LimitWindow::Per24h => "per_24h",
            LimitWindow::PerDay => "per_day",
            LimitWindow::MinGap => "min_gap",
            LimitWindow::MaxTotal => "max_total",
            LimitWindow::Warmup => "warmup",
        }
    }
}

/// One window that is full, and when it frees up (`None`: never, e.g. a lifetime cap).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitHit {
    pub window: LimitWindow,
    pub limit: String,
    pub used: u32,
    pub frees_at: Option<DateTime<Utc>>,
}

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.window {
            LimitWindow::MinGap => write!(f, "min_gap {} not yet passed", self.limit)?,
            _ => write!(f, "{} {}/{}", self.window.name(), self.used, self.limit)?,
        }
        match self.frees_at {
            Some(t) => write!(f, " (frees {})", crate::format_instant(t)),
            None => write!(f, " (never frees)"),
        }
    }
}

/// The instant every hit has freed up; `None` if one never does.
pub fn all_free_at(hits: &[LimitHit]) -> Option<DateTime<Utc>> {
    hits.iter()
        .try_fold(DateTime::<Utc>::MIN_UTC, |latest, hit| {
            hit.frees_at.map(|t| t.max(latest))
        })
}

impl PoolState {
    /// `seed` drives the `random` strategy; the same seed gives the same choices.
    pub fn new(seed: u64) -> PoolState {
        PoolState {
            seed,
            ..PoolState::default()
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Replaces the numbers attached to the agent with this `model_id`. Returns whether
    /// that changed anything.
    pub fn set_attached(
        &mut self,
        model_id: &str,
        numbers: impl IntoIterator<Item = E164>,
    ) -> bool {
        let numbers: HashSet<E164> = numbers.into_iter().collect();
        self.attached.insert(model_id.to_string(), numbers.clone()) != Some(numbers)
    }

    /// Treats every number named in the rules as attached to every agent (what `explain`
    /// assumes unless told otherwise).
    pub fn attach_all(&mut self, rules: &RuleSet) {
        let all: HashSet<E164> = rules.numbers().map(|n| n.number).collect();
        for agent in rules.agents() {
            self.attached.insert(agent.model_id.clone(), all.clone());
        }
    }

    /// True once the pool of the agent with this `model_id` has been read.
    pub fn knows_agent(&self, model_id: &str) -> bool {
        self.attached.contains_key(model_id)
    }

    pub fn is_attached(&self, model_id: &str, number: E164) -> bool {
        self.attached
            .get(model_id)
            .is_some_and(|set| set.contains(&number))
    }

    pub fn attached(&self, model_id: &str) -> impl Iterator<Item = E164> + '_ {
        self.attached.get(model_id).into_iter().flatten().copied()
    }

    /// Replaces the rests (expired ones may stay: they are ignored after `until`).
    pub fn set_rests(&mut self, rests: impl IntoIterator<Item = crate::health::Rest>) {
        self.rests = rests.into_iter().map(|r| (r.number, r)).collect();
    }

    /// Replaces the store-kept suppression entries.
    pub fn set_suppressed(
        &mut self,
        entries: impl IntoIterator<Item = crate::compliance::StoredEntry>,
    ) {
        self.suppressed.clear();
        for entry in entries {
            self.add_suppressed(entry);
        }
    }

    /// Adds (or replaces, same list) a store-kept suppression entry.
    pub fn add_suppressed(&mut self, entry: crate::compliance::StoredEntry) {
        let entries = self.suppressed.entry(entry.number).or_default();
        entries.retain(|e| e.list != entry.list);
        entries.push(entry);
    }

    /// Removes `number` from the store-kept list `list`.
    pub fn remove_suppressed(&mut self, number: E164, list: &str) {
        if let Some(entries) = self.suppressed.get_mut(&number) {
            entries.retain(|e| e.list != list);
            if entries.is_empty() {
                self.suppressed.remove(&number);
            }
        }
    }

    /// The store-kept suppression entries of `number`.
    pub fn suppressed(&self, number: E164) -> &[crate::compliance::StoredEntry] {
        self.suppressed.get(&number).map_or(&[], Vec::as_slice)
    }

    /// Every store-kept suppression entry.
    pub fn suppressed_entries(&self) -> impl Iterator<Item = &crate::compliance::StoredEntry> {
        self.suppressed.values().flatten()
    }

    /// How many numbers the store-kept lists hold.
    pub fn suppressed_count(&self) -> usize {
        self.suppressed.len()
    }

    /// Why `number` rests at `now`, if it does.
    pub fn rest_of(&self, number: E164, now: DateTime<Utc>) -> Option<&crate::health::Rest> {
        self.rests
            .get(&number)
            .filter(|rest| rest.since <= now && now < rest.until)
    }

    pub fn rests(&self) -> &std::collections::BTreeMap<E164, crate::health::Rest> {
        &self.rests
    }

    /// The earliest use of `number` known, e.g. from the ledger at start.
    pub fn note_first_use(&mut self, number: E164, at: DateTime<Utc>) {
        let first = self.first_use.entry(number).or_insert(at);
        *first = (*first).min(at);
    }

    pub fn first_use(&self, number: E164) -> Option<DateTime<Utc>> {
        self.first_use.get(&number).copied()
    }

    /// The day `info` began warming up, in its zone: `since:` in the rules, else its first
    /// use.
    pub fn first_day(&self, info: &NumberInfo) -> Option<chrono::NaiveDate> {
        info.since.or_else(|| {
            self.first_use(info.number)
                .map(|t| t.with_timezone(&info.day_zone).date_naive())
        })
    }

    /// Every window of `limits` that is full for `info` at `now`, warm-up included: what
    /// the engine checks and the status shows.
    pub fn hits(&self, info: &NumberInfo, limits: &Limits, now: DateTime<Utc>) -> Vec<LimitHit> {
        let Some(usage) = self.number_usage(info.number) else {
            return Vec::new();
        };
        let mut hits = usage.hits(limits, info.day_zone, now);
        if let Some(warmup) = &limits.warmup
            && let Some(hit) = self
                .first_day(info)
                .and_then(|day| usage.warmup_hit(warmup, day, info.day_zone, now))
        {
            hits.push(hit);
        }
        hits
    }

    /// Accounts for a call to `lead` from `number` placed at `at`.
    pub fn record(&mut self, number: E164, lead: &Lead, at: DateTime<Utc>) {
        self.record_for_key(number, &lead.key, Some(lead.phone), at);
    }

    /// `record` for a lead known only by its key and, when the ledger has it, the number
    /// called (rebuilding usage from the ledger).
    pub fn record_for_key(
        &mut self,
        number: E164,
        lead_key: &str,
        called: Option<E164>,
        at: DateTime<Utc>,
    ) {
        self.note_first_use(number, at);
        if let Some(called) = called {
            let calls = self.called.entry(called).or_default();
            insert_sorted(calls, at);
            prune(calls, at);
        }
        let usage = self.numbers.entry(number).or_default();
        insert_sorted(&mut usage.uses, at);
        usage.last_used = usage.last_used.max(Some(at));
        prune(&mut usage.uses, at);

        let history = self.leads.entry(lead_key.to_string()).or_default();
        insert_sorted(&mut history.attempts, at);
        prune(&mut history.attempts, at);
        history.total += 1;
        history.shown.push((number, at));
    }

    /// Records a use another daemon made, unless it is known (the same lead at the same
    /// millisecond: the ledger keeps milliseconds). Returns whether it was new.
    pub fn learn(
        &mut self,
        number: E164,
        lead_key: &str,
        called: Option<E164>,
        at: DateTime<Utc>,
    ) -> bool {
        let ms = at.timestamp_millis();
        if self.undone.contains(&(lead_key.to_string(), ms)) {
            return false;
        }
        if self
            .leads
            .get(lead_key)
            .is_some_and(|h| h.attempts.iter().any(|t| t.timestamp_millis() == ms))
        {
            // Known as the lead's use, but perhaps not as a call to its person (learnt
            // before the number called was known): a commit that found it unknown must
            // not find it unknown again.
            if let Some(called) = called {
                let calls = self.called.entry(called).or_default();
                if !calls.iter().any(|t| t.timestamp_millis() == ms) {
                    insert_sorted(calls, at);
                    prune(calls, at);
                }
            }
            return false;
        }
        self.record_for_key(number, lead_key, called, at);
        true
    }

    /// The number's uses at or after `since`, in epoch milliseconds (what a commit-time
    /// check compares with the ledger).
    pub fn uses_ms_since(&self, number: E164, since: DateTime<Utc>) -> Vec<i64> {
        self.numbers
            .get(&number)
            .map_or_else(Vec::new, |usage| ms_since(&usage.uses, since))
    }

    /// Takes back a call recorded at `at` that turned out not to be placed (a 429, a refused
    /// connection, or a lookup that proved it absent), so it does not count against limits.
    pub fn forget(
        &mut self,
        number: E164,
        lead_key: &str,
        called: Option<E164>,
        at: DateTime<Utc>,
    ) {
        self.undone
            .insert((lead_key.to_string(), at.timestamp_millis()));
        if let Some(calls) = called.and_then(|c| self.called.get_mut(&c))
            && let Some(index) = calls.iter().position(|&t| t == at)
        {
            calls.remove(index);
        }
        if let Some(usage) = self.numbers.get_mut(&number) {
            if let Some(index) = usage.uses.iter().position(|&t| t == at) {
                usage.uses.remove(index);
            }
            if usage.last_used == Some(at) {
                usage.last_used = usage.uses.back().copied();
            }
        }
        if let Some(history) = self.leads.get_mut(lead_key) {
            if let Some(index) = history.attempts.iter().position(|&t| t == at) {
                history.attempts.remove(index);
                history.total = history.total.saturating_sub(1);
            }
            if let Some(index) = history.shown.iter().position(|&s| s == (number, at)) {
                history.shown.remove(index);
            }
        }
    }

    pub fn number_usage(&self, number: E164) -> Option<&NumberUsage> {
        self.numbers.get(&number)
    }

    /// Makes the lead's lifetime attempt count at least `total` (the store keeps the true
    /// count; the histories here cover only recent attempts).
    pub fn note_total_attempts(&mut self, lead_key: &str, total: u32) {
        if total > 0 {
            let history = self.leads.entry(lead_key.to_string()).or_default();
            history.total = history.total.max(total);
        }
    }

    /// Forgets leads not called since `cutoff`: their windows are empty and their sticky
    /// assignments expired, and their lifetime count comes back from the store
    /// (`note_total_attempts`) if they are ever decided again. Keeps memory bounded.
    pub fn forget_leads_idle_since(&mut self, cutoff: DateTime<Utc>) {
        let cutoff_ms = cutoff.timestamp_millis();
        self.undone.retain(|(_, at)| *at >= cutoff_ms);
        self.called
            .retain(|_, calls| calls.back().is_some_and(|&at| at >= cutoff));
        self.leads.retain(|_, history| {
            history.last().is_some_and(|(_, at)| at >= cutoff)
                || history.attempts.back().is_some_and(|&at| at >= cutoff)
        });
    }

    pub fn lead_history(&self, lead_key: &str) -> Option<&LeadHistory> {
        self.leads.get(lead_key)
    }

    /// Calls to the person's number `called` at or after `since`, in epoch milliseconds
    /// (what a commit-time check compares with the ledger).
    pub fn calls_to_ms_since(&self, called: E164, since: DateTime<Utc>) -> Vec<i64> {
        self.called
            .get(&called)
            .map_or_else(Vec::new, |calls| ms_since(calls, since))
    }

    /// Calls to the person's number `called` at or after `since`, under any lead id.
    pub fn calls_to_since(&self, called: E164, since: DateTime<Utc>) -> u32 {
        self.called.get(&called).map_or(0, |calls| {
            (calls.len() - calls.partition_point(|&t| t < since)) as u32
        })
    }

    /// The rolling 24 h cap `limit` on calls to the person's number `called`, if reached.
    pub fn person_24h_hit(
        &self,
        called: E164,
        limit: Option<u32>,
        now: DateTime<Utc>,
    ) -> Option<LimitHit> {
        let calls = self.called.get(&called)?;
        rolling(calls, LimitWindow::Per24h, Duration::hours(24), limit, now).map(|mut hit| {
            hit.limit = format!("{} (calls to {called}, any lead)", hit.limit);
            hit
        })
    }
}

/// `times` (sorted) at or after `since`, in epoch milliseconds.
fn ms_since(times: &VecDeque<DateTime<Utc>>, since: DateTime<Utc>) -> Vec<i64> {
    let first = times.partition_point(|&t| t < since);
    times
        .iter()
        .skip(first)
        .map(|t| t.timestamp_millis())
        .collect()
}

fn insert_sorted(times: &mut VecDeque<DateTime<Utc>>, at: DateTime<Utc>) {
    let index = times.partition_point(|&t| t <= at);
    times.insert(index, at);
}

fn prune(times: &mut VecDeque<DateTime<Utc>>, newest: DateTime<Utc>) {
    let newest = times.back().copied().unwrap_or(newest).max(newest);
    while times.front().is_some_and(|&t| t <= newest - RETENTION) {
        times.pop_front();
    }
}

/// Added to every window and gap: the far side counts from when a request arrives, which
/// varies by milliseconds, so a call exactly on the boundary could be one too many there.
/// 1 % of the width, at least 1 ms and at most 250 ms: a 200 ms gap is not made a second.
pub fn safety_margin(width: Duration) -> Duration {
    (width / 100).clamp(Duration::milliseconds(1), Duration::milliseconds(250))
}

/// Uses in the rolling window `(now - width - margin, now]` against `limit`.
fn rolling(
    times: &VecDeque<DateTime<Utc>>,
    window: LimitWindow,
    width: Duration,
    limit: Option<u32>,
    now: DateTime<Utc>,
) -> Option<LimitHit> {
    let limit = limit?;
    let width = width + safety_margin(width);
    let first = times.partition_point(|&t| t <= now - width);
    let end = times.partition_point(|&t| t <= now);
    let used = (end - first) as u32;
    (used >= limit).then(|| LimitHit {
        window,
        limit: limit.to_string(),
        used,
        // Once the oldest use that keeps the count at the limit leaves the window.
        frees_at: Some(times[end - limit as usize] + width),
    })
}

fn gap(
    last: Option<DateTime<Utc>>,
    min_gap: Option<std::time::Duration>,
    now: DateTime<Utc>,
) -> Option<LimitHit> {
    let (last, configured) = (last?, min_gap?);
    let min_gap = Duration::from_std(configured).ok()?;
    let frees_at = last + min_gap + safety_margin(min_gap);
    (frees_at > now).then(|| LimitHit {
        window: LimitWindow::MinGap,
        limit: humantime::format_duration(configured).to_string(),
        used: 1,
        frees_at: Some(frees_at),
    })
}

impl NumberUsage {
    pub fn last_used(&self) -> Option<DateTime<Utc>> {
        self.last_used
    }

    /// Uses from `since` on.
    pub fn uses_since(&self, since: DateTime<Utc>) -> u32 {
        (self.uses.len() - self.uses.partition_point(|&t| t < since)) as u32
    }

    /// Uses since the start of `now`'s day in `day_zone`.
    pub fn uses_today(&self, day_zone: Tz, now: DateTime<Utc>) -> u32 {
        let today = now.with_timezone(&day_zone).date_naive();
        first_instant_at_or_after(day_zone, today.and_time(chrono::NaiveTime::MIN))
            .map_or(0, |day_start| self.uses_since(day_start))
    }

    /// The warm-up cap's hit, if `number` (first used on `first_day`, in `day_zone`) is
    /// still warming up and has used today's cap.
    pub fn warmup_hit(
        &self,
        warmup: &crate::health::Warmup,
        first_day: chrono::NaiveDate,
        day_zone: Tz,
        now: DateTime<Utc>,
    ) -> Option<LimitHit> {
        let today = now.with_timezone(&day_zone).date_naive();
        let day = (today - first_day).num_days();
        let cap = warmup.cap(day)?;
        let used = self.uses_today(day_zone, now);
        (used >= cap).then(|| LimitHit {
            window: LimitWindow::Warmup,
            limit: format!(
                "{cap} (day {} of {}, {}→{})",
                day + 1,
                warmup.days,
                warmup.from,
                warmup.to
            ),
            used,
            frees_at: today.succ_opt().and_then(|d| {
                first_instant_at_or_after(day_zone, d.and_time(chrono::NaiveTime::MIN))
            }),
        })
    }

    /// Uses in the 24 hours up to `now`.
    pub fn uses_24h(&self, now: DateTime<Utc>) -> u32 {
        let first = self
            .uses
            .partition_point(|&t| t <= now - Duration::hours(24));
        let end = self.uses.partition_point(|&t| t <= now);
        (end - first) as u32
    }

    /// Every window of `limits` that is full at `now`; empty when the number may be used.
    pub fn hits(&self, limits: &Limits, day_zone: Tz, now: DateTime<Utc>) -> Vec<LimitHit> {
        let mut hits: Vec<LimitHit> = [
            rolling(
                &self.uses,
                LimitWindow::PerMinute,
                Duration::minutes(1),
                limits.per_minute,
                now,
            ),
            rolling(
                &self.uses,
                LimitWindow::PerHour,
                Duration::hours(1),
                limits.per_hour,
                now,
            ),
            rolling(
                &self.uses,
                LimitWindow::Per24h,
                Duration::hours(24),
                limits.per_24h,
                now,
            ),
            gap(self.last_used, limits.min_gap, now),
        ]
        .into_iter()
        .flatten()
        .collect();
        // A local day lasts at most 25 h: with fewer uses than that in 25 h, today cannot be
        // full, and the time-zone arithmetic below can be skipped.
        let per_day = limits.per_day.filter(|&limit| {
            self.uses.len() >= limit as usize
                && rolling(
                    &self.uses,
                    LimitWindow::PerDay,
                    Duration::hours(25),
                    Some(limit),
                    now,
                )
                .is_some()
        });
        if let Some(limit) = per_day {
            let today = now.with_timezone(&day_zone).date_naive();
            let day_start =
                first_instant_at_or_after(day_zone, today.and_time(chrono::NaiveTime::MIN));
            let next_day_start = today.succ_opt().and_then(|d| {
                first_instant_at_or_after(day_zone, d.and_time(chrono::NaiveTime::MIN))
            });
            if let Some(day_start) = day_start {
                let first = self.uses.partition_point(|&t| t < day_start);
                let end = self.uses.partition_point(|&t| t <= now);
                let used = end.saturating_sub(first) as u32;
                if used >= limit {
                    hits.push(LimitHit {
                        window: LimitWindow::PerDay,
                        limit: format!("{limit} ({})", day_zone.name()),
                        used,
                        frees_at: next_day_start,
                    });
                }
            }
        }
        hits
    }
}

impl LeadHistory {
    pub fn total(&self) -> u32 {
        self.total
    }

    /// The latest call and its caller ID (of calls at the same instant, the one recorded
    /// last).
    pub fn last(&self) -> Option<(E164, DateTime<Utc>)> {
        self.shown.iter().max_by_key(|&&(_, at)| at).copied()
    }

    /// The caller IDs the lead's attempts showed, oldest first, each once.
    pub fn shown(&self) -> Vec<E164> {
        let mut numbers: Vec<E164> = Vec::new();
        for &(number, _) in &self.shown {
            if !numbers.contains(&number) {
                numbers.push(number);
            }
        }
        numbers
    }

    /// Attempts at or after `since` (within what memory keeps: `RETENTION`).
    pub fn count_since(&self, since: DateTime<Utc>) -> u32 {
        self.attempts.iter().filter(|&&at| at >= since).count() as u32
    }

    /// Every attempt limit the lead has reached at `now`.
    pub fn hits(&self, rule: &AttemptRule, now: DateTime<Utc>) -> Vec<LimitHit> {
        let mut hits: Vec<LimitHit> = [
            rolling(
                &self.attempts,
                LimitWindow::Per24h,
                Duration::hours(24),
                rule.per_24h,
                now,
            ),
            gap(self.last().map(|(_, t)| t), rule.min_gap, now),
        ]
        .into_iter()
        .flatten()
        .collect();
        if let Some(max) = rule.max_total
            && self.total >= max
        {
            hits.push(LimitHit {
                window: LimitWindow::MaxTotal,
                limit: max.to_string(),
                used: self.total,
                frees_at: None,
            });
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead() -> Lead {
        Lead::from_json(r#"{"phone":"+14155550123","name":"A","campaign":"c"}"#).unwrap()
    }

    fn t(minute: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-04T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + Duration::minutes(minute)
    }

    /// A use learnt without the number it called (an old feed line), then found by a
    /// commit's person check: learning it again must count the call to the person, or the
    /// commit would find it unknown for ever.
    #[test]
    fn a_known_use_learnt_again_with_its_person_counts_the_call() {
        let mut pool = PoolState::default();
        let number = E164::parse("+14155550100").unwrap();
        let person = E164::parse("+13055550123").unwrap();
        assert!(pool.learn(number, "row-1", None, t(0)));
        assert!(pool.calls_to_ms_since(person, t(-1)).is_empty());
        assert!(
            !pool.learn(number, "row-1", Some(person), t(0)),
            "not a new use"
        );
        assert_eq!(
            pool.calls_to_ms_since(person, t(-1)),
            [t(0).timestamp_millis()]
        );
        assert_eq!(
            pool.uses_ms_since(number, t(-1)).len(),
            1,
            "nor counted twice"
        );
        pool.learn(number, "row-1", Some(person), t(0));
        assert_eq!(pool.calls_to_since(person, t(-1)), 1);
    }

    /// A use taken back (not placed) and then delivered by a ledger read made before the
    /// take-back is not counted: a phantom call would keep a person under a cap for a day.
    #[test]
    fn a_use_taken_back_is_not_learnt_again_from_an_older_read() {
        let mut pool = PoolState::default();
        let number = E164::parse("+14155550100").unwrap();
        let person = E164::parse("+13055550123").unwrap();
        assert!(pool.learn(number, "row-1", Some(person), t(0)));
        pool.forget(number, "row-1", Some(person), t(0));
        assert!(!pool.learn(number, "row-1", Some(person), t(0)));
        assert_eq!(pool.calls_to_since(person, t(-1)), 0);
        assert!(pool.uses_ms_since(number, t(-1)).is_empty());
        assert!(
            pool.learn(number, "row-1", Some(person), t(1)),
            "a later attempt counts"
        );
        pool.forget_leads_idle_since(t(2));
        assert!(
            pool.undone.is_empty(),
            "take-backs are forgotten with the leads"
        );
    }

    #[test]
    fn rolling_windows_report_when_they_free() {
        let number = E164::parse("+14155550100").unwrap();
        let mut pool = PoolState::new(1);
        let limits = Limits {
            per_hour: Some(3),
            ..Limits::default()
        };
        for minute in [0, 10, 20] {
            pool.record(number, &lead(), t(minute));
        }
        let usage = pool.number_usage(number).unwrap();
        let hits = usage.hits(&limits, Tz::UTC, t(30));
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].window, LimitWindow::PerHour);
        // An hour after the first use, plus the safety margin.
        let margin = Duration::milliseconds(250);
        assert_eq!(hits[0].frees_at, Some(t(60) + margin));
        assert!(
            !usage.hits(&limits, Tz::UTC, t(60)).is_empty(),
            "exactly an hour later, the far side may still count the 12:00 call"
        );
        assert!(
            usage.hits(&limits, Tz::UTC, t(60) + margin).is_empty(),
            "the 12:00 use left the window at 13:00:00.250"
        );
    }

    #[test]
    fn min_gap_and_calendar_day() {
        let number = E164::parse("+14155550100").unwrap();
        let mut pool = PoolState::new(1);
        pool.record(number, &lead(), t(0));
        let limits = Limits {
            min_gap: Some(std::time::Duration::from_secs(20)),
            per_day: Some(1),
            ..Limits::default()
        };
        let hits =
            pool.number_usage(number)
                .unwrap()
                .hits(&limits, chrono_tz::America::Los_Angeles, t(0));
        let windows: Vec<_> = hits.iter().map(|h| h.window).collect();
        assert_eq!(windows, [LimitWindow::MinGap, LimitWindow::PerDay]);
        // 12:00 UTC is 04:00 in Los Angeles (PST): the local day ends at 08:00 UTC next day.
        assert_eq!(hits[1].frees_at, Some(t(20 * 60)));
    }

    #[test]
    fn forgetting_an_unplaced_call_frees_its_windows() {
        let number = E164::parse("+14155550100").unwrap();
        let mut pool = PoolState::new(1);
        let lead = lead();
        pool.record(number, &lead, t(0));
        pool.record(number, &lead, t(1));
        pool.forget(number, &lead.key, Some(lead.phone), t(1));
        let usage = pool.number_usage(number).unwrap();
        assert_eq!(usage.uses_24h(t(2)), 1);
        assert_eq!(usage.last_used(), Some(t(0)));
        assert_eq!(pool.lead_history(&lead.key).unwrap().total(), 1);
    }

    #[test]
    fn lifetime_counts_survive_forgetting_idle_leads() {
        let number = E164::parse("+14155550100").unwrap();
        let mut pool = PoolState::new(1);
        let lead = lead();
        pool.record(number, &lead, t(0));
        pool.forget_leads_idle_since(t(60));
        assert!(
            pool.lead_history(&lead.key).is_none(),
            "idle for longer than the cutoff"
        );
        pool.note_total_attempts(&lead.key, 7);
        let rule = AttemptRule {
            max_total: Some(7),
            ..AttemptRule::default()
        };
        assert_eq!(
            pool.lead_history(&lead.key).unwrap().hits(&rule, t(120))[0].window,
            LimitWindow::MaxTotal
        );
        pool.record(number, &lead, t(130));
        pool.forget_leads_idle_since(t(60));
        assert_eq!(
            pool.lead_history(&lead.key).unwrap().total(),
            8,
            "recently called: kept"
        );
    }

    #[test]
    fn lead_lifetime_cap_never_frees() {
        let number = E164::parse("+14155550100").unwrap();
        let mut pool = PoolState::new(1);
        let lead = lead();
        pool.record(number, &lead, t(0));
        pool.record(number, &lead, t(300));
        let rule = AttemptRule {
            max_total: Some(2),
            ..AttemptRule::default()
        };
        let hits = pool.lead_history(&lead.key).unwrap().hits(&rule, t(5000));
        assert_eq!(hits[0].window, LimitWindow::MaxTotal);
        assert_eq!(all_free_at(&hits), None);
    }
}
