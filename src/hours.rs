//! Calling windows in the lead's local time: is a window open at an instant, and when does
//! it next open. Pure functions of the rules, a zone and an instant; DST-safe because the
//! test is always "what does the wall clock say at this instant".

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
};
use chrono_tz::Tz;
use serde::Serialize;

use crate::rules::{HoursRule, Layered};

/// Resolved calling hours: a `[start, end)` wall-clock window per weekday (Monday first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Window {
    pub days: [Option<(NaiveTime, NaiveTime)>; 7],
    /// Sorted (a holiday calendar adds hundreds: looked up by binary search).
    pub blackout_dates: Vec<NaiveDate>,
}

/// How far ahead `next_open` looks before concluding that a window never opens: a year and
/// a day, so that any blackout season and any yearly pattern is seen through.
const HORIZON_DAYS: i64 = 367;

impl Layered<HoursRule> {
    /// Default, then the country's, then the state's settings, field by field.
    pub fn resolve(&self, country: Option<&str>, state: Option<&str>) -> Window {
        let mut merged = self.default.clone();
        let layers = [
            country.and_then(|c| self.countries.get(c)),
            state.and_then(|s| self.states.get(s)),
        ];
        for layer in layers.into_iter().flatten() {
            merged.days = layer.days.clone().or(merged.days);
            merged.start = layer.start.or(merged.start);
            merged.end = layer.end.or(merged.end);
            merged.by_day.extend(layer.by_day.clone());
            merged
                .blackout_dates
                .extend(layer.blackout_dates.iter().copied());
        }
        let mut days = [None; 7];
        if let (Some(listed), Some(start), Some(end)) = (&merged.days, merged.start, merged.end) {
            for day in listed {
                days[day.num_days_from_monday() as usize] = Some((start, end));
            }
        }
        for (&day, &hours) in &merged.by_day {
            days[day as usize] = Some(hours);
        }
        let mut blackout_dates = merged.blackout_dates;
        blackout_dates.sort_unstable();
        blackout_dates.dedup();
        Window {
            days,
            blackout_dates,
        }
    }
}

impl Window {
    pub fn is_open(&self, zone: Tz, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&zone).naive_local();
        self.open_on_wall_clock(local)
    }

    fn open_on_wall_clock(&self, local: NaiveDateTime) -> bool {
        let date = local.date();
        if self.is_blacked_out(date) {
            return false;
        }
        match self.days[date.weekday().num_days_from_monday() as usize] {
            Some((start, end)) => local.time() >= start && local.time() < end,
            None => false,
        }
    }

    /// The earliest instant at or after `from` when the window is open in `zone`, or `None`
    /// if it does not open within the horizon (no open day, or every one blacked out).
    ///
    /// A window opens either at its start time or, on the day clocks fall back, when the
    /// wall clock jumps back into it (01:00-01:45 is open twice that night); both are tried.
    pub fn next_open(&self, zone: Tz, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.is_open(zone, from) {
            return Some(from);
        }
        let today = from.with_timezone(&zone).date_naive();
        (0..=HORIZON_DAYS)
            .filter_map(|offset| today.checked_add_signed(Duration::days(offset)))
            .filter(|&date| !self.is_blacked_out(date))
            .find_map(|date| {
                let (start, _) = self.days[date.weekday().num_days_from_monday() as usize]?;
                let mut candidates = instants_of(zone, date.and_time(start));
                candidates.extend(offset_change_on(zone, date));
                candidates
                    .into_iter()
                    .filter(|&opens| opens > from && self.is_open(zone, opens))
                    .min()
            })
    }

    fn is_blacked_out(&self, date: NaiveDate) -> bool {
        self.blackout_dates.binary_search(&date).is_ok()
    }

    /// When the window that is open at `at` closes (for traces and tests).
    pub fn closes_after(&self, zone: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&zone);
        let (_, end) = self.days[local.weekday().num_days_from_monday() as usize]?;
        first_instant_at_or_after(zone, local.date_naive().and_time(end))
    }
}

/// Every instant whose wall-clock time in `zone` is `local` (two when clocks fall back), or
/// the end of the gap when clocks spring forward over it.
fn instants_of(zone: Tz, local: NaiveDateTime) -> Vec<DateTime<Utc>> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
        LocalResult::Ambiguous(a, b) => vec![a.with_timezone(&Utc), b.with_timezone(&Utc)],
        LocalResult::None => first_instant_at_or_after(zone, local).into_iter().collect(),
    }
}

/// The instant `zone`'s UTC offset changes during the local day `date`, if it does (the
/// wall clock jumps there: a window may open at that instant rather than at its start).
fn offset_change_on(zone: Tz, date: NaiveDate) -> Option<DateTime<Utc>> {
    use chrono::Offset;
    let offset = |t: DateTime<Utc>| t.with_timezone(&zone).offset().fix();
    let mut low = first_instant_at_or_after(zone, date.and_time(NaiveTime::MIN))?.timestamp();
    let mut high =
        first_instant_at_or_after(zone, date.succ_opt()?.and_time(NaiveTime::MIN))?.timestamp();
    let at = |seconds: i64| DateTime::<Utc>::from_timestamp(seconds, 0);
    if offset(at(low)?) == offset(at(high)?) {
        return None;
    }
    // One change per day at most, on a whole second: bisect to it.
    let before = offset(at(low)?);
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if offset(at(middle)?) == before {
            low = middle;
        } else {
            high = middle;
        }
    }
    at(high)
}

/// The first instant whose wall-clock time in `zone` is `local` or later: `local` itself, the
/// earlier of two when clocks fall back, or the end of the gap when clocks spring forward.
pub(crate) fn first_instant_at_or_after(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    // DST gaps are at most a few hours (Lord Howe's is 30 minutes); probe minute by minute.
    (0..=4 * 60).find_map(|minutes| {
        match zone.from_local_datetime(&(local + Duration::minutes(minutes))) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(earliest, _) => Some(earliest.with_timezone(&Utc)),
            LocalResult::None => None,
        }
    })
}

/// The earliest instant at or after `from` when every `(window, zone)` pair is open at once,
/// or `None` when they never overlap within the horizon.
pub fn next_open_all(constraints: &[(Window, Tz)], from: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let limit = from + Duration::days(HORIZON_DAYS);
    let mut at = from;
    'search: while at <= limit {
        for (window, zone) in constraints {
            let opens = window.next_open(*zone, at)?;
            if opens > at {
                at = opens;
                continue 'search;
            }
        }
        return Some(at);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Weekday;
    use chrono_tz::{America, Australia, Europe};

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    /// Given days 08:00-21:00, with Florida closing at 20:00.
    fn layered(days: &[Weekday]) -> Layered<HoursRule> {
        let mut layered = Layered {
            default: HoursRule::daily(days, hm(8, 0), hm(21, 0)),
            ..Layered::default()
        };
        let florida = HoursRule {
            end: Some(hm(20, 0)),
            ..HoursRule::default()
        };
        layered.states.insert("FL".into(), florida);
        layered
    }

    fn weekdays_8_to_21() -> Window {
        use Weekday::*;
        layered(&[Mon, Tue, Wed, Thu, Fri, Sat]).resolve(Some("US"), None)
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn open_and_closed_in_local_time() {
        let w = weekdays_8_to_21();
        // Wednesday 2026-03-04 16:00 UTC = 08:00 in Los Angeles (PST): just open.
        assert!(w.is_open(America::Los_Angeles, utc("2026-03-04T16:00:00Z")));
        assert!(!w.is_open(America::Los_Angeles, utc("2026-03-04T15:59:59Z")));
        // 21:00 local is closed (end is exclusive).
        assert!(!w.is_open(America::New_York, utc("2026-03-05T02:00:00Z")));
    }

    #[test]
    fn next_open_skips_to_the_next_allowed_day() {
        let w = weekdays_8_to_21();
        // Saturday 22:00 in New York → Monday 08:00 (no Sunday calls in this window).
        let at = utc("2026-03-08T03:00:00Z"); // Sat 2026-03-07 22:00 EST
        assert_eq!(
            w.next_open(America::New_York, at),
            Some(utc("2026-03-09T12:00:00Z"))
        ); // Mon 08:00 EDT
    }

    #[test]
    fn state_override_merges_field_by_field() {
        let fl = layered(&[Weekday::Mon]).resolve(Some("US"), Some("FL"));
        assert_eq!(fl.days[0], Some((hm(8, 0), hm(20, 0))));
        assert_eq!(fl.days[1], None);
    }

    #[test]
    fn spring_forward_gap_opens_at_the_first_real_instant() {
        // Window starting 02:30 on the US spring-forward Sunday (02:00 → 03:00).
        let mut w = weekdays_8_to_21();
        let gap_start = NaiveTime::from_hms_opt(2, 30, 0).unwrap();
        w.days[6] = Some((gap_start, NaiveTime::from_hms_opt(21, 0, 0).unwrap()));
        let opens = w
            .next_open(America::New_York, utc("2026-03-08T05:00:00Z"))
            .unwrap(); // 00:00 EST
        assert_eq!(opens, utc("2026-03-08T07:00:00Z")); // 03:00 EDT
        assert!(w.is_open(America::New_York, opens));
    }

    #[test]
    fn lord_howe_half_hour_shift_and_berlin_fall_back() {
        let w = weekdays_8_to_21();
        for zone in [Australia::Lord_Howe, Europe::Berlin] {
            let mut at = utc("2026-03-25T00:00:00Z");
            for _ in 0..2000 {
                let opens = w.next_open(zone, at).unwrap();
                assert!(w.is_open(zone, opens), "{zone}: {opens} not open");
                assert!(opens >= at);
                at += Duration::minutes(157);
            }
        }
    }

    #[test]
    fn multi_zone_needs_every_window_open() {
        let w = weekdays_8_to_21();
        let both = [(w.clone(), America::Anchorage), (w.clone(), America::Adak)];
        // 08:00 in Anchorage is 07:00 in Adak: the pair opens when Adak does.
        let at = utc("2026-03-04T16:00:00Z"); // 07:00 AKST, 06:00 HST
        let opens = next_open_all(&both, at).unwrap();
        assert!(w.is_open(America::Adak, opens) && w.is_open(America::Anchorage, opens));
        assert_eq!(opens, utc("2026-03-04T18:00:00Z"));
    }

    #[test]
    fn windows_that_never_overlap_give_none() {
        let mut narrow = weekdays_8_to_21();
        for d in narrow.days.iter_mut().flatten() {
            *d = (
                NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
                NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
            );
        }
        let pair = [
            (narrow.clone(), America::New_York),
            (narrow, Australia::Sydney),
        ];
        assert_eq!(next_open_all(&pair, utc("2026-03-04T00:00:00Z")), None);
    }

    fn daily(start: NaiveTime, end: NaiveTime) -> Window {
        Window {
            days: [Some((start, end)); 7],
            blackout_dates: Vec::new(),
        }
    }

    #[test]
    fn the_repeated_hour_when_clocks_fall_back_opens_again() {
        // 01:00-01:45 daily. 2026-11-01 05:50Z is 01:50 EDT: closed; at 06:00Z the clock
        // falls back to 01:00 EST and the window is open again, the same night.
        let w = daily(hm(1, 0), hm(1, 45));
        assert_eq!(
            w.next_open(America::New_York, utc("2026-11-01T05:50:00Z")),
            Some(utc("2026-11-01T06:00:00Z"))
        );
        // Boise (Mountain) and Los Angeles (Pacific) together: Boise re-enters its window at
        // 08:00Z (01:00 MST) while Los Angeles is at 01:00 PDT.
        let both = [(w.clone(), America::Boise), (w, America::Los_Angeles)];
        assert_eq!(
            next_open_all(&both, utc("2026-11-01T07:45:00Z")),
            Some(utc("2026-11-01T08:00:00Z"))
        );
    }

    #[test]
    fn a_holiday_blackout_longer_than_two_weeks_is_waited_out() {
        let mut w = daily(hm(9, 0), hm(20, 0));
        let mut day = NaiveDate::from_ymd_opt(2026, 12, 21).unwrap();
        while day <= NaiveDate::from_ymd_opt(2027, 1, 6).unwrap() {
            w.blackout_dates.push(day);
            day = day.succ_opt().unwrap();
        }
        assert_eq!(
            w.next_open(America::New_York, utc("2026-12-21T01:30:00Z")),
            Some(utc("2027-01-07T14:00:00Z"))
        );
        // A window with no day at all never opens (within the year searched).
        let never = Window {
            days: [None; 7],
            blackout_dates: Vec::new(),
        };
        assert_eq!(
            never.next_open(America::New_York, utc("2026-12-20T23:00:00Z")),
            None
        );
    }
}
