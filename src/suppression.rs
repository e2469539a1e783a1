//! Suppression lists (do-not-call, litigators, a client's own list): large sets of phone
//! numbers, each entry with the line it came from and, optionally, when it expires.
//!
//! Built for tens of millions of entries: numbers are E.164 digits (`E164::digits`), kept
//! sorted in buckets of equal high 32 bits, so each entry costs its low 32 bits (4 bytes) plus
//! its source line (4 bytes), and 2 more only in a list where some entry expires. A lookup is
//! two binary searches. Loading parses digits by hand (no per-entry validation against the
//! numbering plan: a list is matched exactly, it is not dialed).
//!
//! Pure: the caller reads the file; `List::parse` takes its bytes.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};

use crate::phone::E164;

/// Where a number was found: the list, the file and line of its entry, and the entry's expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit<'a> {
    pub list: &'a str,
    pub file: &'a Path,
    pub line: u32,
    pub expires: Option<NaiveDate>,
}

/// One list, read from one file.
#[derive(Debug, Clone, Default)]
pub struct List {
    name: String,
    file: PathBuf,
    /// The distinct high 32 bits of the numbers, ascending, each with where its bucket of
    /// `lows` starts (the next one's start ends it).
    buckets: Vec<(u32, u32)>,
    /// The low 32 bits of every number, ascending within its bucket.
    lows: Vec<u32>,
    /// The source line of each entry (same index as `lows`).
    lines: Vec<u32>,
    /// Expiry of each entry as days after `EPOCH` (0: never), when any entry has one.
    expiries: Option<Vec<u16>>,
    /// A hash of the file's bytes: the list's version, in proofs.
    version: u64,
    /// Entries that match no valid number (a typo, or a national number read as another
    /// country's): how many, and the first few with their lines (for a warning).
    invalid_count: usize,
    invalid: Vec<(u32, u64)>,
}

/// Day 0 of `expiries` (entries expire within 2000..2179).
const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(day) => day,
    None => panic!("a valid date"),
};

/// A line the list could not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: u32,
    pub reason: String,
}

/// At most this many bad lines are kept (the count says how many there were).
const BAD_LINES_KEPT: usize = 20;

/// What went wrong reading a list: the first bad lines (with their numbers) and how many.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(file, bad, *count))]
pub struct ListError {
    pub file: PathBuf,
    pub bad: Vec<BadLine>,
    pub count: usize,
}

impl ListError {
    fn new(file: &Path) -> ListError {
        ListError {
            file: file.to_path_buf(),
            bad: Vec::new(),
            count: 0,
        }
    }

    /// Counts a bad line; the first `BAD_LINES_KEPT` are kept with their reasons.
    fn note(&mut self, line: u32, reason: String) {
        self.count += 1;
        if self.bad.len() < BAD_LINES_KEPT {
            self.bad.push(BadLine { line, reason });
        }
    }

    /// `Ok` when no line was bad.
    fn into_result(self) -> Result<(), ListError> {
        if self.count == 0 { Ok(()) } else { Err(self) }
    }
}

fn describe(file: &Path, bad: &[BadLine], count: usize) -> String {
    let mut text = bad
        .iter()
        .map(|b| format!("{}:{}: {}", file.display(), b.line, b.reason))
        .collect::<Vec<_>>()
        .join("\n");
    if count > bad.len() {
        text.push_str(&format!(
            "\n{}: {} more bad lines",
            file.display(),
            count - bad.len()
        ));
    }
    text
}

/// How a list writes numbers without a `+`: as national numbers of one country (`country:`
/// in the rules, default `US`). US DNC exports write `2125550141`; read as international
/// digits that would be Morocco (+212), and the person would be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct National {
    /// The country's calling code (1 for the NANP).
    pub calling_code: u16,
}

impl National {
    /// The North American Numbering Plan: 10 digits, or `1` and 10 digits.
    pub const NANP: National = National { calling_code: 1 };

    /// The national reading of ISO region `country` (None: a region the number data lacks).
    pub fn of(country: &str) -> Option<National> {
        crate::geo::calling_code(country).map(|calling_code| National { calling_code })
    }

    /// E.164 digits of one entry: `+` and 8 to 15 digits as written; without `+`, a national
    /// number (NANP: 10 digits, or `1` and 10; elsewhere the trunk `0` dropped and the calling
    /// code put in front). Err: why the entry is not a number.
    fn digits(self, text: &[u8]) -> Result<u64, &'static str> {
        let all_digits = |d: &[u8]| !d.is_empty() && d.iter().all(u8::is_ascii_digit);
        let value = |d: &[u8]| d.iter().fold(0u64, |n, &b| n * 10 + u64::from(b - b'0'));
        if let Some(digits) = text.strip_prefix(b"+") {
            if !(8..=15).contains(&digits.len()) || !all_digits(digits) || digits[0] == b'0' {
                return Err("is not a phone number in E.164 (+ and 8 to 15 digits)");
            }
            return Ok(value(digits));
        }
        if !all_digits(text) {
            return Err("is not a phone number (E.164 with +, or a national number)");
        }
        if self.calling_code == 1 {
            return match text.len() {
                10 if text[0] >= b'2' => Ok(10_000_000_000 + value(text)),
                11 if text[0] == b'1' && text[1] >= b'2' => Ok(value(text)),
                _ => Err(
                    "is not a North American number (10 digits, or 1 and 10 digits); write other countries' numbers with + and their country code",
                ),
            };
        }
        let national = text.strip_prefix(b"0").unwrap_or(text);
        let code_digits = self.calling_code.to_string().len();
        if national.is_empty() || national[0] == b'0' || national.len() + code_digits > 15 {
            return Err("is not a national number of the list's country");
        }
        let scale = 10u64.pow(national.len() as u32);
        Ok(u64::from(self.calling_code) * scale + value(national))
    }
}

fn parse_expiry(text: &str) -> Result<u16, String> {
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        format!(
            "expiry `{}` is not a date (YYYY-MM-DD)",
            crate::bounded(text, 20)
        )
    })?;
    let days = (day - EPOCH).num_days();
    u16::try_from(days)
        .ok()
        .filter(|&d| d > 0)
        .ok_or_else(|| format!("expiry {day} is outside 2000-01-02..2179"))
}

/// When an entry that expires on `day` lapses: once that date has ended everywhere (at
/// UTC−12, "anywhere on Earth": 12:00 UTC the next day). The safe side: a person whose local
/// date is still `day` is not called.
pub fn lapses_at(day: NaiveDate) -> DateTime<Utc> {
    day.succ_opt()
        .unwrap_or(day)
        .and_hms_opt(12, 0, 0)
        .map_or(DateTime::<Utc>::MAX_UTC, |t| t.and_utc())
}

impl List {
    /// Reads a list: one number a line (`+14155550100`, or a national number read by
    /// `national`), optionally a comma and an expiry date (`+14155550100,2027-06-30`); blank
    /// lines and `#` comments are skipped, and so is a first line (after comments) that holds
    /// no digit (a CSV header). A number listed twice keeps its first line and the later of its
    /// expiries (none: never). Every bad line is reported, with its number.
    pub fn parse(
        name: &str,
        file: &Path,
        bytes: &[u8],
        national: National,
    ) -> Result<List, ListError> {
        let mut entries: Vec<(u64, u32, u16)> = Vec::with_capacity(bytes.len() / 13);
        let mut problems = ListError::new(file);
        let mut any_expiry = false;
        let mut first_entry = true;
        for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = u32::try_from(index + 1).unwrap_or(u32::MAX);
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let text = raw.trim_ascii();
            if text.is_empty() || text[0] == b'#' {
                continue;
            }
            let header_allowed = std::mem::replace(&mut first_entry, false);
            let (number, expiry) = match text.iter().position(|&b| b == b',') {
                Some(comma) => (
                    text[..comma].trim_ascii(),
                    Some(text[comma + 1..].trim_ascii()),
                ),
                None => (text, None),
            };
            let digits = match national.digits(number) {
                Ok(digits) => digits,
                // A header row comes first and holds no digit.
                Err(_) if header_allowed && !number.iter().any(u8::is_ascii_digit) => continue,
                Err(why) => {
                    problems.note(
                        line,
                        format!(
                            "`{}` {why}",
                            crate::bounded(&String::from_utf8_lossy(number), 30)
                        ),
                    );
                    continue;
                }
            };
            let expiry = match expiry.filter(|e| !e.is_empty()) {
                None => 0,
                Some(text) => match parse_expiry(&String::from_utf8_lossy(text)) {
                    Ok(days) => {
                        any_expiry = true;
                        days
                    }
                    Err(reason) => {
                        problems.note(line, reason);
                        continue;
                    }
                },
            };
            entries.push((digits, line, expiry));
        }
        problems.into_result()?;
        Ok(List::build(name, file, bytes, entries, any_expiry))
    }

    /// Reads a CSV with a header: the numbers from the column named `column`, each entry's
    /// expiry (optional) from `expires_column`. Every bad row is reported with its line.
    pub fn parse_csv(
        name: &str,
        file: &Path,
        bytes: &[u8],
        column: &str,
        expires_column: Option<&str>,
        national: National,
    ) -> Result<List, ListError> {
        let fail = |line: u32, reason: String| {
            let mut error = ListError::new(file);
            error.note(line, reason);
            error
        };
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .comment(Some(b'#'))
            .from_reader(bytes);
        let headers = reader
            .byte_headers()
            .map_err(|e| fail(1, format!("not a CSV header: {e}")))?
            .clone();
        let index_of = |wanted: &str| {
            headers
                .iter()
                .position(|h| h.trim_ascii().eq_ignore_ascii_case(wanted.as_bytes()))
        };
        let number_at = index_of(column)
            .ok_or_else(|| fail(1, format!("the header has no column `{column}`")))?;
        let expires_at = match expires_column {
            Some(wanted) => Some(
                index_of(wanted)
                    .ok_or_else(|| fail(1, format!("the header has no column `{wanted}`")))?,
            ),
            None => None,
        };
        let mut entries = Vec::with_capacity(bytes.len() / 16);
        let (mut problems, mut any_expiry) = (ListError::new(file), false);
        let mut record = csv::ByteRecord::new();
        loop {
            let problem = match reader.read_byte_record(&mut record) {
                Ok(false) => break,
                Err(e) => Some((reader.position().line(), format!("not a CSV row: {e}"))),
                Ok(true) => {
                    let line = record.position().map_or(0, |p| p.line());
                    let number = record.get(number_at).unwrap_or_default().trim_ascii();
                    let expiry = expires_at
                        .and_then(|i| record.get(i))
                        .map(<[u8]>::trim_ascii)
                        .filter(|e| !e.is_empty());
                    let line32 = u32::try_from(line).unwrap_or(u32::MAX);
                    match (national.digits(number), expiry) {
                        (Err(why), _) => Some((
                            line,
                            format!(
                                "`{}` {why}",
                                crate::bounded(&String::from_utf8_lossy(number), 30)
                            ),
                        )),
                        (Ok(digits), None) => {
                            entries.push((digits, line32, 0));
                            None
                        }
                        (Ok(digits), Some(text)) => {
                            match parse_expiry(&String::from_utf8_lossy(text)) {
                                Ok(days) => {
                                    any_expiry = true;
                                    entries.push((digits, line32, days));
                                    None
                                }
                                Err(reason) => Some((line, reason)),
                            }
                        }
                    }
                }
            };
            if let Some((line, reason)) = problem {
                problems.note(u32::try_from(line).unwrap_or(u32::MAX), reason);
            }
        }
        problems.into_result()?;
        Ok(List::build(name, file, bytes, entries, any_expiry))
    }

    fn build(
        name: &str,
        file: &Path,
        bytes: &[u8],
        mut entries: Vec<(u64, u32, u16)>,
        any_expiry: bool,
    ) -> List {
        // Sorted by number, then line: the first line of a number listed twice comes first.
        entries.sort_unstable_by_key(|&(digits, line, _)| (digits, line));
        let mut list = List {
            name: name.to_string(),
            file: file.to_path_buf(),
            version: xxhash_rust::xxh3::xxh3_64(bytes),
            ..List::default()
        };
        list.lows.reserve_exact(entries.len());
        list.lines.reserve_exact(entries.len());
        let mut expiries = Vec::new();
        if any_expiry {
            expiries.reserve_exact(entries.len());
        }
        let mut previous = None;
        let mut exchange: Option<(u64, bool)> = None;
        for (digits, line, expiry) in entries {
            if previous == Some(digits) {
                // Listed again: the entry lasts as long as its longest-lived line.
                if let Some(last) = expiries.last_mut()
                    && (*last != 0 && (expiry == 0 || expiry > *last))
                {
                    *last = expiry;
                }
                continue;
            }
            previous = Some(digits);
            // A North American number's validity is decided by `1 NPA NXX` (its line digits
            // are any four): the entries are sorted, so each exchange is checked once, and a
            // list of tens of millions loads in seconds.
            let valid = if (10_000_000_000..20_000_000_000).contains(&digits) {
                let prefix = digits / 10_000;
                match exchange {
                    Some((checked, valid)) if checked == prefix => valid,
                    _ => {
                        let valid = crate::geo::is_valid_digits(digits);
                        exchange = Some((prefix, valid));
                        valid
                    }
                }
            } else {
                crate::geo::is_valid_digits(digits)
            };
            if !valid {
                list.invalid_count += 1;
                if list.invalid.len() < BAD_LINES_KEPT {
                    list.invalid.push((line, digits));
                }
            }
            let high = (digits >> 32) as u32;
            if list.buckets.last().is_none_or(|&(h, _)| h != high) {
                list.buckets.push((high, list.lows.len() as u32));
            }
            list.lows.push(digits as u32);
            list.lines.push(line);
            if any_expiry {
                expiries.push(expiry);
            }
        }
        list.expiries = any_expiry.then_some(expiries);
        list.buckets.shrink_to_fit();
        list
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Entries in the list (a number listed twice counts once).
    pub fn len(&self) -> usize {
        self.lows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lows.is_empty()
    }

    /// Entries that match no valid phone number: how many, and the first ones as (line,
    /// E.164 digits). They are kept (a list is matched exactly) but likely mistakes.
    pub fn invalid(&self) -> (usize, &[(u32, u64)]) {
        (self.invalid_count, &self.invalid)
    }

    /// A hash of the file's bytes.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Every entry: the number's digits, its source line and its expiry.
    pub fn entries(&self) -> impl Iterator<Item = (u64, u32, Option<NaiveDate>)> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .flat_map(move |(b, &(high, start))| {
                let end = self
                    .buckets
                    .get(b + 1)
                    .map_or(self.lows.len(), |&(_, s)| s as usize);
                (start as usize..end).map(move |i| {
                    let expiry = self.expiries.as_ref().map_or(0, |e| e[i]);
                    let expiry = (expiry > 0)
                        .then(|| {
                            EPOCH.checked_add_signed(chrono::Duration::days(i64::from(expiry)))
                        })
                        .flatten();
                    (
                        (u64::from(high) << 32) | u64::from(self.lows[i]),
                        self.lines[i],
                        expiry,
                    )
                })
            })
    }

    /// Heap bytes the list holds.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<(u32, u32)>()
            + self.lows.capacity() * 4
            + self.lines.capacity() * 4
            + self.expiries.as_ref().map_or(0, |e| e.capacity() * 2)
    }

    /// The entry for `number`, if the list has one that has not expired at `now`.
    pub fn find(&self, number: E164, now: DateTime<Utc>) -> Option<Hit<'_>> {
        let digits = number.digits();
        let high = (digits >> 32) as u32;
        let bucket = self.buckets.binary_search_by_key(&high, |&(h, _)| h).ok()?;
        let start = self.buckets[bucket].1 as usize;
        let end = self
            .buckets
            .get(bucket + 1)
            .map_or(self.lows.len(), |&(_, s)| s as usize);
        let index = start + self.lows[start..end].binary_search(&(digits as u32)).ok()?;
        let expires = self
            .expiries
            .as_ref()
            .map(|e| e[index])
            .filter(|&d| d != 0)
            .and_then(|d| EPOCH.checked_add_signed(chrono::Duration::days(i64::from(d))));
        if expires.is_some_and(|day| now >= lapses_at(day)) {
            return None;
        }
        Some(Hit {
            list: &self.name,
            file: &self.file,
            line: self.lines[index],
            expires,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> E164 {
        E164::parse(text).unwrap()
    }

    fn now() -> DateTime<Utc> {
        "2026-12-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn finds_listed_numbers_with_their_line_and_only_those() {
        let text = "phone\n+14155550100\n\n# from the 2026 scrub\n+12125550107\n14155550101\n+447911123456\n";
        let list = List::parse(
            "internal",
            Path::new("dnc.txt"),
            text.as_bytes(),
            National::NANP,
        )
        .unwrap();
        assert_eq!(list.len(), 4);
        let hit = list.find(number("+12125550107"), now()).unwrap();
        assert_eq!((hit.list, hit.line, hit.expires), ("internal", 5, None));
        assert_eq!(list.find(number("+14155550101"), now()).unwrap().line, 6);
        assert_eq!(list.find(number("+447911123456"), now()).unwrap().line, 7);
        assert!(list.find(number("+14155550102"), now()).is_none());
        assert!(list.find(number("+13055550105"), now()).is_none());
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let text = "+14155550100\nnot a number\n+1415\n+14155550101,tomorrow\n+012345678\n";
        let error =
            List::parse("x", Path::new("x.txt"), text.as_bytes(), National::NANP).unwrap_err();
        let lines: Vec<u32> = error.bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, [2, 3, 4, 5]);
        assert_eq!(error.count, 4);
        assert!(
            error.to_string().contains("x.txt:4: expiry `tomorrow`"),
            "{error}"
        );
    }

    #[test]
    fn a_header_is_skipped_only_on_the_first_line() {
        assert!(
            List::parse(
                "x",
                Path::new("x"),
                b"number,expires\n+14155550100\n",
                National::NANP
            )
            .is_ok()
        );
        assert!(
            List::parse(
                "x",
                Path::new("x"),
                b"+14155550100\nnumber\n",
                National::NANP
            )
            .is_err()
        );
    }

    #[test]
    fn entries_expire_after_their_day_and_duplicates_keep_the_longest() {
        let text = "+14155550100,2026-11-30\n+14155550101,2026-12-01\n+14155550102\n+14155550103,2026-01-01\n+14155550103,2027-01-01\n+14155550102,2026-01-01\n";
        let list = List::parse("x", Path::new("x"), text.as_bytes(), National::NANP).unwrap();
        assert!(
            list.find(number("+14155550100"), now()).is_none(),
            "expired yesterday"
        );
        assert_eq!(
            list.find(number("+14155550101"), now()).unwrap().expires,
            NaiveDate::from_ymd_opt(2026, 12, 1),
            "holds through its last day"
        );
        assert!(
            list.find(number("+14155550102"), now()).is_some(),
            "one line never expires"
        );
        let twice = list.find(number("+14155550103"), now()).unwrap();
        assert_eq!(
            (twice.line, twice.expires),
            (4, NaiveDate::from_ymd_opt(2027, 1, 1))
        );
    }

    #[test]
    fn numbers_across_buckets_are_found() {
        // Digits whose high 32 bits differ: several buckets.
        let numbers = [
            "+14155550100",
            "+8613800138000",
            "+61412345678",
            "+919876543210",
            "+33612345678",
        ];
        let text = numbers.join("\n");
        let list = List::parse("x", Path::new("x"), text.as_bytes(), National::NANP).unwrap();
        assert!(list.buckets.len() > 1);
        for (i, n) in numbers.iter().enumerate() {
            assert_eq!(
                list.find(number(n), now()).unwrap().line as usize,
                i + 1,
                "{n}"
            );
        }
        assert!(list.find(number("+8613800138001"), now()).is_none());
    }

    #[test]
    fn national_numbers_are_read_by_the_lists_country() {
        // US DNC exports write ten digits: never read as +212 (Morocco).
        let text = "2125550141\n12125550142\n+447911123456\n";
        let list =
            List::parse("dnc", Path::new("dnc.txt"), text.as_bytes(), National::NANP).unwrap();
        assert_eq!(list.find(number("+12125550141"), now()).unwrap().line, 1);
        assert_eq!(list.find(number("+12125550142"), now()).unwrap().line, 2);
        assert_eq!(list.find(number("+447911123456"), now()).unwrap().line, 3);
        assert_eq!(list.invalid().0, 0);
        // Digits without + that are no North American number are refused, not guessed.
        let error = List::parse(
            "dnc",
            Path::new("dnc.txt"),
            b"447911123456\n",
            National::NANP,
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("not a North American number"),
            "{error}"
        );
        // A UK list: the trunk 0 dropped, +44 put in front; in a CSV column too.
        let gb = National::of("GB").unwrap();
        let list = List::parse("uk", Path::new("uk.txt"), b"07911123456\n", gb).unwrap();
        assert!(list.find(number("+447911123456"), now()).is_some());
        let csv = "phone,name\n2125550141,Ana\n";
        let list = List::parse_csv(
            "c",
            Path::new("c.csv"),
            csv.as_bytes(),
            "phone",
            None,
            National::NANP,
        )
        .unwrap();
        assert!(list.find(number("+12125550141"), now()).is_some());
    }

    #[test]
    fn entries_that_match_no_valid_number_are_counted_with_their_lines() {
        // +1 212 055 0141: no exchange starts with 0; +999…: no such country.
        let text = "+12125550141\n+12120550141\n+99912345678\n";
        let list = List::parse("x", Path::new("x"), text.as_bytes(), National::NANP).unwrap();
        let (count, first) = list.invalid();
        assert_eq!(count, 2);
        let mut lines: Vec<u32> = first.iter().map(|(line, _)| *line).collect();
        lines.sort();
        assert_eq!(lines, [2, 3]);
    }

    #[test]
    fn a_header_after_leading_comments_is_skipped() {
        let text = "# exported 2026-11-30\n\nphone\n+14155550100\n";
        let list = List::parse("x", Path::new("x"), text.as_bytes(), National::NANP).unwrap();
        assert_eq!(list.find(number("+14155550100"), now()).unwrap().line, 4);
        let csv = "# exported 2026-11-30\nphone,until\n+14155550100,2027-01-01\n";
        let list = List::parse_csv(
            "c",
            Path::new("c.csv"),
            csv.as_bytes(),
            "phone",
            Some("until"),
            National::NANP,
        )
        .unwrap();
        assert_eq!(list.find(number("+14155550100"), now()).unwrap().line, 3);
    }

    #[test]
    fn an_entry_lapses_once_its_date_has_ended_everywhere() {
        let list = List::parse(
            "x",
            Path::new("x"),
            b"+14155550100,2026-06-01\n",
            National::NANP,
        )
        .unwrap();
        let at = |t: &str| t.parse::<DateTime<Utc>>().unwrap();
        // Still June 1 in Hawaii (and at UTC-12) after midnight UTC.
        assert!(
            list.find(number("+14155550100"), at("2026-06-02T11:59:59Z"))
                .is_some()
        );
        assert!(
            list.find(number("+14155550100"), at("2026-06-02T12:00:00Z"))
                .is_none()
        );
    }
}
