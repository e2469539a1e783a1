//! Checks rules files' contents, all of them, and compiles them into a `RuleSet`.
//!
//! Unknown and duplicate keys are all reported (see `parse_file`); other parse errors (bad
//! YAML, wrong types) stop the file they are in;
//! every other check runs over all files and reports every problem it finds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{NaiveDate, NaiveTime, Timelike, Weekday};
use chrono_tz::Tz;
use serde_saphyr::{Location, Spanned};

use super::diag::{self, Diagnostic, Reporter, Severity, SourcePos};
use super::model::*;
use super::raw::*;
use crate::compliance::Purpose;
use crate::geo;
use crate::phone::E164;

/// A successfully compiled rule set and the warnings found on the way.
#[derive(Debug)]
pub struct Loaded {
    pub rules: RuleSet,
    pub warnings: Vec<Diagnostic>,
    pub files: Vec<PathBuf>,
}

/// Compiles rules from in-memory `(path, text)` pairs (the path is only used in messages).
pub fn compile_sources(sources: &[(&Path, &str)]) -> (Option<RuleSet>, Vec<Diagnostic>) {
    let mut out = Vec::new();
    let mut parsed = Vec::new();
    let mut parse_failed = false;
    for (path, text) in sources {
        match parse_file(path, text) {
            Ok((file, key_errors)) => {
                out.extend(key_errors);
                parsed.push((path.to_path_buf(), file));
            }
            Err(errors) => {
                parse_failed = true;
                out.extend(errors);
            }
        }
    }
    let parse_errors = out.len();
    let mut compiler = Compiler { out };
    let rules = compiler.compile(&parsed, hash_sources(sources));
    if parse_errors > 0 && !parse_failed {
        // Unknown or duplicate keys only: every definition was read, every check is true.
        return (None, compiler.out);
    }
    if parse_failed {
        // What a file that does not parse defines is unknown: references to it from the
        // other files would be reported as errors that are not. Keep the other checks.
        let mut out = compiler.out;
        let checked = out.split_off(parse_errors);
        let dropped = checked.iter().filter(|d| is_reference_error(d)).count();
        out.extend(checked.into_iter().filter(|d| !is_reference_error(d)));
        if dropped > 0 {
            out.push(Diagnostic {
                severity: Severity::Warning,
                pos: out[0].pos.clone(),
                message: format!(
                    "{dropped} references to agents, numbers, brands, labels, limit profiles or campaigns were not checked while this file does not parse"
                ),
            });
        }
        return (None, out);
    }
    (rules, compiler.out)
}

/// Errors that only say a name defined elsewhere was not found.
fn is_reference_error(diagnostic: &Diagnostic) -> bool {
    let m = diagnostic.message.as_str();
    m.starts_with("unknown agent")
        || m.starts_with("unknown brand")
        || m.starts_with("unknown label")
        || m.starts_with("unknown limit profile")
        || (m.starts_with("number ") && m.contains("is not defined under"))
        || m.starts_with("the rules define no campaign")
}

/// At most this many unknown or duplicate keys are reported per file.
const MAX_KEY_ERRORS: usize = 50;

/// Parses one file. serde stops at the first error; an unknown or duplicate key written in
/// block style is cut out (its lines blanked, so later positions stay true) and the file
/// parsed again, so that every such key is reported at once, with the rest of the file
/// (`Ok` with those errors). Any other error ends the file (`Err`).
fn parse_file(path: &Path, text: &str) -> Result<(RawFile, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut text = text.to_string();
    for _ in 0..MAX_KEY_ERRORS {
        let error = match serde_saphyr::from_str::<Option<RawFile>>(&text) {
            Ok(file) => return Ok((file.unwrap_or_default(), errors)),
            Err(e) => e,
        };
        let diagnostic = diag::explain_yaml_error(diag::from_yaml_error(path, &error), &text);
        let is_key_error = diagnostic.message.starts_with("unknown field")
            || diagnostic.message.starts_with("duplicate key");
        let rest = if is_key_error {
            without_entry(&text, diagnostic.pos.line, diagnostic.pos.column)
        } else {
            None
        };
        errors.push(diagnostic);
        match rest {
            Some(rest) => text = rest,
            None => break,
        }
    }
    Err(errors)
}

/// `text` with the block-style entry whose key starts at `line`:`column` blanked out: the
/// key's line and the more-indented lines under it. `None` if the key is not the first thing
/// on its line (a flow map such as `{ a: 1, b: 2 }`), where cutting lines would cut too much.
fn without_entry(text: &str, line: u64, column: u64) -> Option<String> {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let index = usize::try_from(line).ok()?.checked_sub(1)?;
    let indent_of = |l: &str| l.len() - l.trim_start().len();
    let indent = indent_of(lines.get(index)?);
    if usize::try_from(column).ok()? != indent + 1 {
        return None;
    }
    lines[index].clear();
    for next in lines.iter_mut().skip(index + 1) {
        let trimmed = next.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if indent_of(next) <= indent {
            break;
        }
        next.clear();
    }
    Some(lines.join("\n"))
}

/// xxh3 over the files' names and contents, in order: equal hashes mean identical rules.
pub(super) fn hash_sources(sources: &[(&Path, &str)]) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for (path, text) in sources {
        hasher.update(
            path.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        hasher.update(&[0]);
        hasher.update(text.as_bytes());
        hasher.update(&[0]);
    }
    hasher.digest()
}

/// What changed between two rule sets, one line per campaign, route or number.
pub fn diff(old: &RuleSet, new: &RuleSet) -> Vec<String> {
    let mut changes = Vec::new();
    for campaign in new.campaigns() {
        match old.campaign(&campaign.name) {
            None => changes.push(format!(
                "campaign `{}` added ({} routes)",
                campaign.name,
                campaign.routes.len()
            )),
            Some(before) => {
                let names = |c: &Campaign| {
                    c.routes
                        .iter()
                        .map(|r| {
                            format!(
                                "{} {:?} {:?} {:?} {:?}",
                                r.name, r.when, r.tiers, r.strategy, r.selection.members
                            )
                        })
                        .collect::<Vec<_>>()
                };
                if names(before) != names(campaign) || before.agent != campaign.agent {
                    changes.push(format!(
                        "campaign `{}` changed (routes: {} → {})",
                        campaign.name,
                        before.routes.len(),
                        campaign.routes.len()
                    ));
                }
            }
        }
    }
    for campaign in old.campaigns() {
        if new.campaign(&campaign.name).is_none() {
            changes.push(format!("campaign `{}` removed", campaign.name));
        }
    }
    for number in new.numbers() {
        match old.number(number.number) {
            None => changes.push(format!("number {} added", number.number)),
            Some(before) => {
                if before.limits != number.limits
                    || before.brand != number.brand
                    || before.labels != number.labels
                    || before.weight != number.weight
                {
                    changes.push(format!("number {} changed", number.number));
                }
            }
        }
    }
    for number in old.numbers() {
        if new.number(number.number).is_none() {
            changes.push(format!("number {} removed", number.number));
        }
    }
    changes
}

#[derive(Default)]
struct Compiler {
    out: Vec<Diagnostic>,
}

/// Remembers the first definition of each name to report duplicates across files.
#[derive(Default)]
struct Names(HashMap<String, SourcePos>);

impl Names {
    fn claim(&mut self, r: &mut Reporter, key: &Spanned<String>, what: &str) -> bool {
        let pos = r.pos(key.referenced);
        if let Some(first) = self.0.get(&key.value) {
            r.error(
                key,
                format!("{what} `{}` is already defined at {first}", key.value),
            );
            return false;
        }
        self.0.insert(key.value.clone(), pos);
        true
    }
}

fn reporter<'a>(file: &'a Path, out: &'a mut Vec<Diagnostic>) -> Reporter<'a> {
    Reporter { file, out }
}

fn positive(r: &mut Reporter, value: &Option<Spanned<u32>>, key: &str) -> Option<u32> {
    let value = value.as_ref()?;
    if value.value == 0 {
        r.error(
            value,
            format!("`{key}: 0` would never allow a call; leave the number out instead"),
        );
        return None;
    }
    Some(value.value)
}

fn compile_limits(r: &mut Reporter, raw: &RawLimits) -> Limits {
    Limits {
        per_minute: positive(r, &raw.per_minute, "per_minute"),
        per_hour: positive(r, &raw.per_hour, "per_hour"),
        per_24h: positive(r, &raw.per_24h, "per_24h"),
        per_day: positive(r, &raw.per_day, "per_day"),
        min_gap: raw.min_gap.as_ref().and_then(|g| r.duration(g)),
        warmup: raw.warmup.as_ref().and_then(|w| {
            let (from, to, days) = (w.value.from.value, w.value.to.value, w.value.days.value);
            let mut valid = true;
            if from == 0 {
                r.error(
                    &w.value.from,
                    "`from: 0` would never allow a call on the first day",
                );
                valid = false;
            }
            if to < from {
                r.error(
                    &w.value.to,
                    format!("`to: {to}` is below `from: {from}`: a warm-up ramps up"),
                );
                valid = false;
            }
            if days == 0 || days > 366 {
                r.error(&w.value.days, "`days` must be 1 to 366");
                valid = false;
            }
            if !valid {
                return None;
            }
            Some(crate::health::Warmup { from, to, days })
        }),
    }
}

/// `30%` or `0.3` as a share in [0, 1].
fn share(r: &mut Reporter, value: &Spanned<RawShare>, key: &str) -> Option<f64> {
    let parsed = match &value.value {
        RawShare::Number(n) => Some(*n),
        RawShare::Text(text) => text
            .trim()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<f64>().ok())
            .map(|n| n / 100.0),
    };
    match parsed {
        Some(share) if (0.0..=1.0).contains(&share) => Some(share),
        _ => {
            r.error(
                value,
                format!("`{key}` is a share between 0 and 1, written `0.3` or `30%`"),
            );
            None
        }
    }
}

/// `raw` over `base`, field by field.
fn compile_health(
    r: &mut Reporter,
    raw: &RawHealth,
    base: &crate::health::Policy,
) -> crate::health::Policy {
    let mut policy = base.clone();
    if let Some(when) = &raw.rest_when {
        if let Some(below) = &when.value.answer_rate_below
            && let Some(share) = share(r, below, "answer_rate_below")
        {
            policy.answer_rate_below = share;
        }
        if let Some(min) = positive(r, &when.value.min_calls, "min_calls") {
            policy.min_calls = min;
        }
        if let Some(last) = positive(r, &when.value.last_calls, "last_calls") {
            policy.last_calls = last.min(crate::health::KEPT_CALLS as u32);
        }
        if policy.last_calls < policy.min_calls {
            r.error(
                when,
                format!(
                    "`last_calls: {}` counts fewer calls than `min_calls: {}` needs: no number could ever rest",
                    policy.last_calls, policy.min_calls
                ),
            );
        }
    }
    if let Some(duration) = raw.rest_for.as_ref().and_then(|d| r.duration(d)) {
        policy.rest_for = duration;
    }
    if let Some(duration) = raw.short_call.as_ref().and_then(|d| r.duration(d)) {
        policy.short_call = duration;
    }
    if let Some(max) = &raw.max_resting
        && let Some(share) = share(r, max, "max_resting")
    {
        policy.max_resting = share;
    }
    if let Some(detach) = &raw.detach_while_resting {
        policy.detach_while_resting = detach.value;
    }
    policy
}

fn parse_zone(r: &mut Reporter, text: &str, at: Location) -> Option<Tz> {
    match text.parse::<Tz>() {
        Ok(zone) => Some(zone),
        Err(_) => {
            r.error_at(
                at,
                format!("unknown IANA time zone `{text}` (e.g. America/New_York)"),
            );
            None
        }
    }
}

fn is_region_code(text: &str) -> bool {
    text.len() == 2 && text.bytes().all(|b| b.is_ascii_uppercase())
}

fn check_code(r: &mut Reporter, key: &Spanned<String>, what: &str) -> bool {
    if is_region_code(&key.value) {
        let known = if what == "country" {
            geo::is_known_country(&key.value)
        } else {
            geo::is_known_state(&key.value)
        };
        if !known {
            r.warn(
                key,
                format!(
                    "{what} `{}` is not a {} the number data knows: this override can never apply",
                    key.value,
                    if what == "country" {
                        "country"
                    } else {
                        "US state or Canadian province"
                    }
                ),
            );
        }
        return true;
    }
    r.error(
        key,
        format!(
            "{what} `{}` must be a two-letter upper-case code (e.g. {})",
            key.value,
            if what == "country" {
                "US, CA"
            } else {
                "CA, FL, ON"
            }
        ),
    );
    false
}

fn parse_time(r: &mut Reporter, text: &Spanned<String>) -> Option<NaiveTime> {
    if text.value.trim() == "24:00" {
        // The end of the day: the last instant a wall clock can show.
        return NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_999);
    }
    match NaiveTime::parse_from_str(text.value.trim(), "%H:%M") {
        Ok(t) => Some(t),
        Err(_) => {
            r.error(
                text,
                format!(
                    "bad time `{}`: expected HH:MM, 24-hour (e.g. 08:00, 20:30)",
                    text.value
                ),
            );
            None
        }
    }
}

fn parse_weekday(r: &mut Reporter, text: &Spanned<String>) -> Option<Weekday> {
    let day = match text.value.to_ascii_lowercase().as_str() {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => {
            r.error(
                text,
                format!(
                    "unknown weekday `{}`: use mon, tue, wed, thu, fri, sat, sun",
                    text.value
                ),
            );
            return None;
        }
    };
    Some(day)
}

fn compile_hours(r: &mut Reporter, raw: &RawHours) -> HoursRule {
    let mut rule = HoursRule {
        days: raw.days.as_ref().map(|days| {
            if days.value.is_empty() {
                r.warn(
                    days,
                    "`days: []` opens no day: leads under these hours are held, never called (list the days to call on; holidays go in `blackout_dates`)",
                );
            }
            days.value
                .iter()
                .filter_map(|d| parse_weekday(r, d))
                .collect()
        }),
        start: raw.start.as_ref().and_then(|t| parse_time(r, t)),
        end: raw.end.as_ref().and_then(|t| parse_time(r, t)),
        ..HoursRule::default()
    };
    if let (Some(start), Some(end), Some(end_text)) = (rule.start, rule.end, &raw.end)
        && end <= start
    {
        r.error(end_text, format!("calling hours end ({end}) must be after start ({start}); windows cannot cross midnight"));
    }
    for (day, hours) in raw.by_day.iter().flat_map(|m| &m.0) {
        let weekday = parse_weekday(r, day);
        let (start, end) = (parse_time(r, &hours.start), parse_time(r, &hours.end));
        if let (Some(start), Some(end)) = (start, end)
            && end <= start
        {
            r.error(
                &hours.end,
                format!("calling hours end ({end}) must be after start ({start})"),
            );
            continue;
        }
        if let (Some(day), Some(start), Some(end)) = (weekday, start, end) {
            rule.by_day
                .insert(day.num_days_from_monday() as u8, (start, end));
        }
    }
    for date in raw.blackout_dates.iter().flatten() {
        match NaiveDate::parse_from_str(date.value.trim(), "%Y-%m-%d") {
            Ok(d) => rule.blackout_dates.push(d),
            Err(_) => r.error(
                date,
                format!("bad date `{}`: expected YYYY-MM-DD", date.value),
            ),
        }
    }
    rule
}

fn compile_attempts(r: &mut Reporter, raw: &RawAttempts) -> AttemptRule {
    AttemptRule {
        per_24h: positive(r, &raw.per_24h, "per_24h"),
        max_total: positive(r, &raw.max_total, "max_total"),
        min_gap: raw.min_gap.as_ref().and_then(|g| r.duration(g)),
    }
}

/// Merges the `default`/`countries`/`states` sections of every file into one `Layered`.
fn compile_layered<R, T: Default>(
    compiler_out: &mut Vec<Diagnostic>,
    files: &[(PathBuf, RawFile)],
    section: &str,
    pick: impl Fn(&RawFile) -> Option<&RawOverrides<R>>,
    compile: impl Fn(&mut Reporter, &R) -> T,
) -> (Layered<T>, bool) {
    let mut layered = Layered::default();
    let mut default_at: Option<SourcePos> = None;
    let mut countries = Names::default();
    let mut states = Names::default();
    for (path, file) in files {
        let Some(raw) = pick(file) else { continue };
        let mut r = reporter(path, compiler_out);
        if let Some(default) = &raw.default {
            if let Some(first) = &default_at {
                r.error(
                    default,
                    format!("`{section}.default` is already defined at {first}"),
                );
            } else {
                default_at = Some(r.pos(default.referenced));
                layered.default = compile(&mut r, &default.value);
            }
        }
        for (key, value) in raw.countries.iter().flat_map(|m| &m.0) {
            if check_code(&mut r, key, "country")
                && countries.claim(&mut r, key, &format!("{section} for country"))
            {
                let compiled = compile(&mut r, value);
                layered.countries.insert(key.value.clone(), compiled);
            }
        }
        for (key, value) in raw.states.iter().flat_map(|m| &m.0) {
            if check_code(&mut r, key, "state")
                && states.claim(&mut r, key, &format!("{section} for state"))
            {
                let compiled = compile(&mut r, value);
                layered.states.insert(key.value.clone(), compiled);
            }
        }
    }
    (layered, default_at.is_some())
}

impl Compiler {
    fn compile(&mut self, files: &[(PathBuf, RawFile)], content_hash: u64) -> Option<RuleSet> {
        let agents = self.agents(files);
        let profiles = self.profiles(files);
        let (numbers, number_ids) = self.numbers(files, &profiles);
        let (default_health, health) = self.health(files, &profiles, &numbers, &number_ids);
        let (mut calling_hours, hours_given) = compile_layered(
            &mut self.out,
            files,
            "calling_hours",
            |f| f.calling_hours.as_ref(),
            compile_hours,
        );
        if !hours_given {
            // The federal TCPA window, every day, when the rules say nothing.
            let (start, end) = crate::compliance::federal_hours();
            calling_hours.default = HoursRule::daily(
                &[
                    Weekday::Mon,
                    Weekday::Tue,
                    Weekday::Wed,
                    Weekday::Thu,
                    Weekday::Fri,
                    Weekday::Sat,
                    Weekday::Sun,
                ],
                start,
                end,
            );
        }
        self.check_hours_layers(files, &calling_hours);
        let (mut lead_attempts, _) = compile_layered(
            &mut self.out,
            files,
            "lead_attempts",
            |f| f.lead_attempts.as_ref(),
            compile_attempts,
        );
        let campaigns = self.campaigns(
            files,
            &agents,
            &numbers,
            &number_ids,
            lead_attempts.default.min_gap,
        );
        let declared = files
            .iter()
            .any(|(_, f)| f.campaigns.as_ref().is_some_and(|m| !m.0.is_empty()));
        if !declared && let Some((first, _)) = files.first() {
            // Valid YAML that says nothing (an empty file, only comments, an emptied
            // `campaigns:`) would hold every lead: refuse it like any other broken rule set.
            self.out.push(Diagnostic {
                severity: Severity::Error,
                pos: SourcePos::start_of(first),
                message: "the rules define no campaign: every lead would be held; add a `campaigns:` entry (see rules/README.md)".into(),
            });
        }
        self.warn_unused_numbers(files, &number_ids, &campaigns);
        self.warn_wider_than_federal(files, &calling_hours, &campaigns);
        let compliance =
            super::compliance::compile_compliance(&mut self.out, files, &campaigns, &numbers);
        super::compliance::apply_attempt_laws(&compliance, &mut lead_attempts);
        if self.out.iter().any(|d| d.severity == Severity::Error) {
            return None;
        }
        let mut rules = RuleSet {
            numbers,
            number_ids,
            agents,
            campaigns,
            calling_hours,
            lead_attempts,
            agent_numbers: HashMap::new(),
            health,
            default_health,
            compliance,
            content_hash,
        };
        rules.index_agent_numbers();
        Some(rules)
    }

    /// Each number's health policy: the default, its limit profile's, its own, field by field.
    fn health(
        &mut self,
        files: &[(PathBuf, RawFile)],
        profiles: &HashMap<String, Limits>,
        numbers: &[NumberInfo],
        number_ids: &HashMap<E164, NumberId>,
    ) -> (crate::health::Policy, Vec<crate::health::Policy>) {
        let builtin = crate::health::Policy::default();
        let mut default = None;
        let mut default_at: Option<SourcePos> = None;
        for (path, file) in files {
            let mut r = reporter(path, &mut self.out);
            if let Some(raw) = file.health.as_ref().and_then(|h| h.default.as_ref()) {
                if let Some(first) = &default_at {
                    r.error(
                        raw,
                        format!("`health.default` is already defined at {first}"),
                    );
                    continue;
                }
                default_at = Some(r.pos(raw.referenced));
                default = Some(compile_health(&mut r, &raw.value, &builtin));
            }
        }
        let default = default.unwrap_or(builtin);
        let mut by_profile: HashMap<String, crate::health::Policy> = HashMap::new();
        let mut by_number: HashMap<E164, &RawHealth> = HashMap::new();
        let mut profile_names = Names::default();
        let mut number_names = Names::default();
        for (path, file) in files {
            let mut r = reporter(path, &mut self.out);
            let Some(health) = &file.health else { continue };
            for (name, raw) in health.profiles.iter().flat_map(|m| &m.0) {
                if !profiles.contains_key(&name.value) {
                    r.error(
                        name,
                        unknown_name("limit profile", &name.value, profiles.keys()),
                    );
                } else if profile_names.claim(&mut r, name, "health profile") {
                    by_profile.insert(name.value.clone(), compile_health(&mut r, raw, &default));
                }
            }
            for (key, raw) in health.numbers.iter().flat_map(|m| &m.0) {
                match E164::parse(key.value.trim()) {
                    Ok(number) if number_ids.contains_key(&number) => {
                        if number_names.claim(&mut r, key, "health of number") {
                            // Checked here, where its errors can be located; compiled
                            // over its profile's policy below.
                            compile_health(&mut r, raw, &default);
                            by_number.insert(number, raw);
                        }
                    }
                    Ok(number) => r.error(key, format!("number {number} is not in `numbers:`")),
                    Err(e) => r.error(key, e.to_string()),
                }
            }
        }
        // Which profile each number uses, as its entry says.
        let mut profile_of: HashMap<E164, &str> = HashMap::new();
        for (_, file) in files {
            for (key, raw) in file.numbers.iter().flat_map(|m| &m.0) {
                if let (Ok(number), Some(profile)) =
                    (E164::parse(key.value.trim()), &raw.limit_profile)
                {
                    profile_of.insert(number, profile.value.as_str());
                }
            }
        }
        let policies = numbers
            .iter()
            .map(|info| {
                let base = profile_of
                    .get(&info.number)
                    .and_then(|p| by_profile.get(*p))
                    .unwrap_or(&default);
                match by_number.get(&info.number) {
                    Some(raw) => compile_health(
                        &mut Reporter {
                            file: Path::new(""),
                            out: &mut Vec::new(),
                        },
                        raw,
                        base,
                    ),
                    None => base.clone(),
                }
            })
            .collect();
        (default, policies)
    }

    fn agents(&mut self, files: &[(PathBuf, RawFile)]) -> BTreeMap<String, Agent> {
        let mut names = Names::default();
        let mut agents = BTreeMap::new();
        for (path, file) in files {
            let mut r = reporter(path, &mut self.out);
            for (name, raw) in file.agents.iter().flat_map(|m| &m.0) {
                if !names.claim(&mut r, name, "agent") {
                    continue;
                }
                if raw.model_id.value.trim().is_empty() {
                    r.error(
                        &raw.model_id,
                        format!("agent `{}` has an empty model_id", name.value),
                    );
                }
                if let Some(account) = &raw.account
                    && account.value.trim().is_empty()
                {
                    r.error(
                        account,
                        format!("agent `{}` names an empty account", name.value),
                    );
                }
                agents.insert(
                    name.value.clone(),
                    Agent {
                        name: name.value.clone(),
                        model_id: raw.model_id.value.trim().to_string(),
                        manage_pool: raw.manage_pool.as_ref().is_some_and(|m| m.value),
                        account: raw.account.as_ref().map(|a| a.value.trim().to_string()),
                    },
                );
            }
        }
        agents
    }

    fn profiles(&mut self, files: &[(PathBuf, RawFile)]) -> HashMap<String, Limits> {
        let mut names = Names::default();
        let mut profiles = HashMap::new();
        for (path, file) in files {
            let mut r = reporter(path, &mut self.out);
            for (name, raw) in file.limits.iter().flat_map(|m| &m.0) {
                if names.claim(&mut r, name, "limit profile") {
                    let limits = compile_limits(&mut r, raw);
                    profiles.insert(name.value.clone(), limits);
                }
            }
        }
        profiles
    }

    fn numbers(
        &mut self,
        files: &[(PathBuf, RawFile)],
        profiles: &HashMap<String, Limits>,
    ) -> (Vec<NumberInfo>, HashMap<E164, NumberId>) {
        let default_limits = profiles.get("default").copied().unwrap_or_default();
        let mut numbers = Vec::new();
        let mut ids = HashMap::new();
        let mut first_seen: HashMap<E164, SourcePos> = HashMap::new();
        for (path, file) in files {
            let mut r = reporter(path, &mut self.out);
            for (key, raw) in file.numbers.iter().flat_map(|m| &m.0) {
                let number = match E164::parse(key.value.trim()) {
                    Ok(n) => n,
                    Err(e) => {
                        r.error(key, e.to_string());
                        continue;
                    }
                };
                if let Some(first) = first_seen.get(&number) {
                    r.error(
                        key,
                        format!("number {number} is already defined at {first}"),
                    );
                    continue;
                }
                first_seen.insert(number, r.pos(key.referenced));
                let base = match &raw.limit_profile {
                    Some(name) => match profiles.get(&name.value) {
                        Some(limits) => default_limits.overlay(*limits),
                        None => {
                            r.error(
                                name,
                                unknown_name("limit profile", &name.value, profiles.keys()),
                            );
                            default_limits
                        }
                    },
                    None => default_limits,
                };
                let own_limits = raw
                    .limits
                    .as_ref()
                    .map(|l| compile_limits(&mut r, l))
                    .unwrap_or_default();
                let weight = match &raw.weight {
                    Some(w) if w.value == 0 => {
                        r.error(w, "weight must be at least 1");
                        1
                    }
                    Some(w) => w.value,
                    None => 1,
                };
                let region = number.region();
                let explicit_zone = raw
                    .timezone
                    .as_ref()
                    .and_then(|z| parse_zone(&mut r, &z.value, z.referenced));
                let day_zone = explicit_zone
                    .or_else(|| region.zones.first().copied())
                    .unwrap_or(Tz::UTC);
                let mut labels = BTreeMap::new();
                for (label, value) in raw.labels.iter().flat_map(|m| &m.0) {
                    if label.value == "brand" {
                        r.error(label, "`brand` is its own key on a number, not a label");
                    }
                    labels.insert(label.value.clone(), value.value.clone());
                }
                ids.insert(number, numbers.len() as NumberId);
                let since = raw.since.as_ref().and_then(|since| {
                    match chrono::NaiveDate::parse_from_str(since.value.trim(), "%Y-%m-%d") {
                        Ok(date) => Some(date),
                        Err(_) => {
                            r.error(
                                since,
                                format!("`since: {}` is not a date (YYYY-MM-DD)", since.value),
                            );
                            None
                        }
                    }
                });
                numbers.push(NumberInfo {
                    number,
                    since,
                    brand: raw.brand.as_ref().map(|b| b.value.clone()),
                    labels,
                    weight,
                    region,
                    day_zone,
                    limits: base.strictest(own_limits),
                    own_limits,
                });
            }
        }
        (numbers, ids)
    }

    /// A state or country override may set only `end`, so the window's order can only be
    /// checked once it is merged with the default.
    fn check_hours_layers(&mut self, files: &[(PathBuf, RawFile)], hours: &Layered<HoursRule>) {
        for (path, file) in files {
            let Some(raw) = &file.calling_hours else {
                continue;
            };
            let mut r = reporter(path, &mut self.out);
            let layers = raw
                .countries
                .iter()
                .flat_map(|m| &m.0)
                .map(|(k, v)| (k, v, hours.countries.get(&k.value)))
                .chain(
                    raw.states
                        .iter()
                        .flat_map(|m| &m.0)
                        .map(|(k, v)| (k, v, hours.states.get(&k.value))),
                );
            for (key, raw_layer, compiled) in layers {
                let Some(compiled) = compiled else { continue };
                if raw_layer.start.is_some() && raw_layer.end.is_some() {
                    continue; // already checked within the layer
                }
                let start = compiled.start.or(hours.default.start);
                let end = compiled.end.or(hours.default.end);
                if let (Some(start), Some(end)) = (start, end)
                    && end <= start
                {
                    r.error(key, format!("calling hours for `{}` end ({end}) before they start ({start}) once merged with the default", key.value));
                }
            }
        }
    }

    /// Hours wider than the federal telemarketing window are narrowed to it for telemarketing
    /// campaigns: say so where the hours are written, so nobody believes the rules' hours.
    fn warn_wider_than_federal(
        &mut self,
        files: &[(PathBuf, RawFile)],
        hours: &Layered<HoursRule>,
        campaigns: &BTreeMap<String, Campaign>,
    ) {
        let telemarketing: Vec<&str> = campaigns
            .values()
            .filter(|c| c.purpose == Purpose::Telemarketing)
            .map(|c| c.name.as_str())
            .collect();
        if telemarketing.is_empty() {
            return;
        }
        let floor = crate::compliance::federal_hours();
        let wider = |window: crate::hours::Window| {
            window.days.iter().flatten().find_map(|&(start, end)| {
                (start < floor.0 || end > floor.1).then(|| {
                    let end = if end.hour() == 23 && end.minute() == 59 {
                        "24:00".to_string()
                    } else {
                        end.format("%H:%M").to_string()
                    };
                    format!("{}-{end}", start.format("%H:%M"))
                })
            })
        };
        let campaigns_named = if telemarketing.len() > 3 {
            format!("{} campaigns", telemarketing.len())
        } else {
            format!("campaign(s) {}", telemarketing.join(", "))
        };
        let message = |what: &str, open: &str| {
            format!(
                "calling hours {what}open {open}, wider than the federal telemarketing window 08:00-21:00 local time (TSR 16 CFR 310.4(c), TCPA 47 CFR 64.1200(c)(1)): calls of {campaigns_named} (purpose: telemarketing) are held to it; set `purpose: informational` on a campaign that does not sell or solicit"
            )
        };
        for (path, file) in files {
            let Some(raw) = &file.calling_hours else {
                continue;
            };
            let mut r = reporter(path, &mut self.out);
            if let Some(default) = &raw.default
                && let Some(open) = wider(hours.resolve(Some("US"), None))
            {
                r.warn(default, message("", &open));
            }
            for (key, _) in raw.states.iter().flat_map(|m| &m.0) {
                if let Some(open) = wider(hours.resolve(Some("US"), Some(&key.value))) {
                    r.warn(key, message(&format!("for `{}` ", key.value), &open));
                }
            }
            for (key, _) in raw.countries.iter().flat_map(|m| &m.0) {
                if key.value == "US"
                    && let Some(open) = wider(hours.resolve(Some("US"), None))
                {
                    r.warn(key, message("for `US` ", &open));
                }
            }
        }
    }

    fn campaigns(
        &mut self,
        files: &[(PathBuf, RawFile)],
        agents: &BTreeMap<String, Agent>,
        numbers: &[NumberInfo],
        number_ids: &HashMap<E164, NumberId>,
        lead_min_gap: Option<std::time::Duration>,
    ) -> BTreeMap<String, Campaign> {
        let mut names = Names::default();
        let mut campaigns = BTreeMap::new();
        let mut selections = SelectionCache::default();
        let vocabulary = Vocabulary::of(numbers);
        for (path, file) in files {
            let mut r = reporter(path, &mut self.out);
            for (name, raw) in file.campaigns.iter().flat_map(|m| &m.0) {
                if !names.claim(&mut r, name, "campaign") {
                    continue;
                }
                let agent = agents.get(&raw.agent.value);
                if agent.is_none() {
                    r.error(
                        &raw.agent,
                        unknown_name("agent", &raw.agent.value, agents.keys()),
                    );
                }
                if raw.routes.value.is_empty() {
                    r.error(
                        &raw.routes,
                        format!(
                            "campaign `{}` has no routes: every lead would be held",
                            name.value
                        ),
                    );
                }
                let mut route_names = Names::default();
                let mut routes: Vec<Route> = Vec::new();
                for (index, raw_route) in raw.routes.value.iter().enumerate() {
                    let route_name = match &raw_route.value.name {
                        Some(n) => {
                            route_names.claim(&mut r, n, "route");
                            n.value.clone()
                        }
                        None => format!("#{}", index + 1),
                    };
                    let defined_at = r.pos(raw_route.referenced);
                    let route = compile_route(
                        &mut r,
                        &raw_route.value,
                        route_name,
                        format!("{}:{}", defined_at.file.display(), defined_at.line),
                        numbers,
                        number_ids,
                        &vocabulary,
                        &mut selections,
                    );
                    if let Some(mut route) = route {
                        route.cadence =
                            raw_route.value.cadence.as_ref().and_then(|c| {
                                super::cadence::compile_cadence(&mut r, &name.value, c)
                            });
                        if let Some(shadow) = routes
                            .iter()
                            .find(|earlier| earlier.when.covers(&route.when))
                        {
                            r.out.push(Diagnostic {
                                severity: Severity::Warning,
                                pos: defined_at.clone(),
                                message: format!(
                                    "route `{}` of campaign `{}` can never match: route `{}` ({}) above it matches every lead it would",
                                    route.name, name.value, shadow.name, shadow.defined_at
                                ),
                            });
                        }
                        routes.push(route);
                    }
                }
                let consent = raw
                    .consent
                    .as_ref()
                    .and_then(|c| super::compliance::compile_consent(&mut r, c));
                let purpose = raw.purpose.as_ref().map(|text| {
                    let parsed = Purpose::parse(text.value.trim());
                    match parsed {
                        Some(Purpose::Informational) => r.warn(text, format!(
                            "campaign `{}` is `purpose: informational`: the federal telemarketing window (08:00-21:00 local) does not bind its calls; only the rules' hours and state laws do. Calls that sell or solicit are telemarketing",
                            name.value
                        )),
                        Some(Purpose::Telemarketing) => {}
                        None => r.error(text, format!(
                            "unknown `purpose: {}` (use telemarketing or informational)",
                            crate::bounded(&text.value, 30)
                        )),
                    }
                    parsed.unwrap_or_default()
                });
                let cadence = raw
                    .cadence
                    .as_ref()
                    .and_then(|c| super::cadence::compile_cadence(&mut r, &name.value, c));
                if let (Some(cadence), Some(raw_cadence), Some(gap)) =
                    (&cadence, &raw.cadence, lead_min_gap)
                    && cadence.delays.iter().any(|delay| *delay < gap)
                {
                    r.warn(raw_cadence, format!(
                        "a delay of this cadence is shorter than `lead_attempts`' min_gap ({}): those redials wait for the min_gap",
                        humantime::format_duration(gap)
                    ));
                }
                if let (Some(cadence), Some(raw_cadence)) = (&cadence, &raw.cadence)
                    && cadence.caller_id == crate::cadence::CallerIdPolicy::Different
                {
                    for route in routes.iter().filter(|route| route.sticky.is_some()) {
                        r.warn(raw_cadence, format!(
                            "route `{}` keeps a lead's caller ID (`sticky`), but this cadence says `caller_id: different`: redials show another number (the cadence wins for redials)",
                            route.name
                        ));
                    }
                }
                if let Some(agent) = agent {
                    campaigns.insert(
                        name.value.clone(),
                        Campaign {
                            name: name.value.clone(),
                            agent: agent.name.clone(),
                            model_id: agent.model_id.clone(),
                            brand: raw.brand.as_ref().map(|b| b.value.clone()),
                            prompt: raw.prompt.clone(),
                            greeting: raw.greeting.clone(),
                            routes,
                            consent,
                            purpose: purpose.unwrap_or_default(),
                            cadence,
                        },
                    );
                }
            }
        }
        campaigns
    }

    fn warn_unused_numbers(
        &mut self,
        files: &[(PathBuf, RawFile)],
        number_ids: &HashMap<E164, NumberId>,
        campaigns: &BTreeMap<String, Campaign>,
    ) {
        let mut distinct: HashSet<*const Selection> = HashSet::new();
        let used: HashSet<NumberId> = campaigns
            .values()
            .flat_map(|c| &c.routes)
            .filter(|route| distinct.insert(Arc::as_ptr(&route.selection)))
            .flat_map(|route| route.selection.members.iter().copied())
            .collect();
        for (path, file) in files {
            for (key, _) in file.numbers.iter().flat_map(|m| &m.0) {
                let Ok(number) = E164::parse(key.value.trim()) else {
                    continue;
                };
                let Some(id) = number_ids.get(&number) else {
                    continue;
                };
                if !used.contains(id) {
                    self.out.push(Diagnostic {
                        severity: Severity::Warning,
                        pos: SourcePos::new(path, key.referenced),
                        message: format!(
                            "number {number} is selected by no route and will never be used"
                        ),
                    });
                }
            }
        }
    }
}

/// Routes often select the same numbers: evaluate each matcher once and share each
/// distinct set (with its indexes) between the routes that select it.
#[derive(Default)]
struct SelectionCache {
    by_condition: HashMap<Condition, Vec<NumberId>>,
    by_members: HashMap<Vec<NumberId>, Arc<Selection>>,
}

/// The brands and labels the pool actually has, to catch typos in matchers.
struct Vocabulary {
    brands: HashSet<String>,
    labels: HashMap<String, HashSet<String>>,
}

impl Vocabulary {
    fn of(numbers: &[NumberInfo]) -> Vocabulary {
        let mut labels: HashMap<String, HashSet<String>> = HashMap::new();
        for n in numbers {
            for (k, v) in &n.labels {
                labels.entry(k.clone()).or_default().insert(v.clone());
            }
        }
        Vocabulary {
            brands: numbers.iter().filter_map(|n| n.brand.clone()).collect(),
            labels,
        }
    }
}

fn unknown_name<'a>(what: &str, name: &str, known: impl Iterator<Item = &'a String>) -> String {
    let mut known: Vec<&String> = known.collect();
    known.sort();
    if known.is_empty() {
        format!("unknown {what} `{name}` (none is defined)")
    } else {
        let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
        format!("unknown {what} `{name}` (defined: {})", list.join(", "))
    }
}

/// Compiles a matcher; `for_numbers` also checks brands and labels against the pool.
fn compile_condition(
    r: &mut Reporter,
    raw: &RawMatcher,
    vocabulary: Option<&Vocabulary>,
) -> Condition {
    let list = |v: &Option<Spanned<OneOrMany>>| v.as_ref().map(|s| s.value.0.clone());
    let mut condition = Condition {
        brand: list(&raw.brand),
        country: list(&raw.country),
        state: list(&raw.state),
        ..Condition::default()
    };
    for (key, values) in [("country", &raw.country), ("state", &raw.state)] {
        if let Some(values) = values {
            for v in &values.value.0 {
                if !is_region_code(v) {
                    r.error(
                        values,
                        format!("{key} `{v}` must be a two-letter upper-case code"),
                    );
                }
            }
        }
    }
    if let Some(codes) = &raw.area_code {
        let mut parsed = Vec::new();
        for code in &codes.value.0 {
            match code.parse::<u16>() {
                Ok(c) if (200..=999).contains(&c) => parsed.push(c),
                _ => r.error(
                    codes,
                    format!("area code `{code}` must be three digits, 200 to 999"),
                ),
            }
        }
        condition.area_code = Some(parsed);
    }
    if let Some(zones) = &raw.timezone {
        condition.timezone = Some(
            zones
                .value
                .0
                .iter()
                .filter_map(|z| parse_zone(r, z, zones.referenced))
                .collect(),
        );
    }
    for (key, values) in raw.labels.iter().flat_map(|m| &m.0) {
        if let Some(vocabulary) = vocabulary {
            match vocabulary.labels.get(&key.value) {
                None => r.error(
                    key,
                    unknown_name("label", &key.value, vocabulary.labels.keys()),
                ),
                Some(known) => {
                    for v in &values.value.0 {
                        if !known.contains(v) {
                            r.error(values, format!("no number has label {}={v}", key.value));
                        }
                    }
                }
            }
        }
        condition
            .labels
            .push((key.value.clone(), values.value.0.clone()));
    }
    if let (Some(vocabulary), Some(brands)) = (vocabulary, &raw.brand) {
        for brand in &brands.value.0 {
            if !vocabulary.brands.contains(brand) {
                r.error(
                    brands,
                    unknown_name("brand", brand, vocabulary.brands.iter()),
                );
            }
        }
    }
    condition
}

#[allow(clippy::too_many_arguments)]
fn compile_route(
    r: &mut Reporter,
    raw: &RawRoute,
    name: String,
    defined_at: String,
    numbers: &[NumberInfo],
    number_ids: &HashMap<E164, NumberId>,
    vocabulary: &Vocabulary,
    selections: &mut SelectionCache,
) -> Option<Route> {
    let errors_before = r.out.len();
    let when = compile_condition(r, &raw.when, None);
    let members: Vec<NumberId> = match &raw.numbers.value {
        RawSelector::Keyword(word) if word == "all" => (0..numbers.len() as NumberId).collect(),
        RawSelector::Keyword(word) => {
            r.error(
                &raw.numbers,
                format!("`numbers: {word}`: expected `all`, a list of numbers, or a matcher"),
            );
            Vec::new()
        }
        RawSelector::List(list) => {
            let mut ids = Vec::new();
            for text in list {
                match E164::parse(text.value.trim()) {
                    Ok(n) => match number_ids.get(&n) {
                        Some(&id) => ids.push(id),
                        None => {
                            r.error(text, format!("number {n} is not defined under `numbers:`"))
                        }
                    },
                    Err(e) => r.error(text, e.to_string()),
                }
            }
            ids.sort_unstable();
            ids.dedup();
            ids
        }
        RawSelector::Matcher(matcher) => {
            let condition = compile_condition(r, matcher, Some(vocabulary));
            selections
                .by_condition
                .entry(condition)
                .or_insert_with_key(|condition| {
                    numbers
                        .iter()
                        .enumerate()
                        .filter(|(_, n)| condition.first_mismatch(&number_facts(n)).is_none())
                        .map(|(i, _)| i as NumberId)
                        .collect()
                })
                .clone()
        }
    };
    if members.is_empty() && r.out.len() == errors_before {
        r.error(&raw.numbers, format!("route `{name}` selects no numbers"));
    }
    let mut tiers = Vec::new();
    for tier in raw.local_presence.iter().flatten() {
        match Tier::parse(&tier.value) {
            Some(t) if tiers.contains(&t) => {
                r.error(tier, format!("tier `{}` is listed twice", tier.value))
            }
            Some(_) if tiers.contains(&Tier::Any) => r.error(
                tier,
                "`any` must be the last tier: nothing after it is ever reached",
            ),
            Some(t) => tiers.push(t),
            None => r.error(
                tier,
                format!(
                    "unknown local_presence tier `{}` (expected one of {})",
                    tier.value,
                    Tier::NAMES.join(", ")
                ),
            ),
        }
    }
    if raw.local_presence.is_none() {
        tiers.push(Tier::Any);
    }
    let sticky = raw.sticky.as_ref().and_then(|s| r.duration(s));
    let strategy = match &raw.strategy {
        Some(s) => Strategy::parse(&s.value).unwrap_or_else(|| {
            r.error(
                s,
                format!(
                    "unknown strategy `{}` (expected one of {})",
                    s.value,
                    Strategy::NAMES.join(", ")
                ),
            );
            Strategy::LeastRecentlyUsed
        }),
        None if raw.sticky.is_some() => Strategy::Rendezvous,
        None => Strategy::LeastRecentlyUsed,
    };
    let limits = raw
        .limits
        .as_ref()
        .map(|l| compile_limits(r, l))
        .unwrap_or_default();
    if r.out[errors_before..]
        .iter()
        .any(|d| d.severity == Severity::Error)
    {
        return None;
    }
    let selection = selections
        .by_members
        .entry(members)
        .or_insert_with_key(|members| Arc::new(Selection::new(members.clone(), numbers)))
        .clone();
    Some(Route {
        name: name.into(),
        defined_at: defined_at.into(),
        when,
        selection,
        tiers,
        strategy,
        strategy_explicit: raw.strategy.is_some(),
        sticky,
        limits,
        cadence: None,
    })
}

/// What a number matcher is tested against.
pub(crate) fn number_facts(n: &NumberInfo) -> Facts<'_> {
    Facts {
        brand: n.brand.as_deref(),
        country: n.region.country.as_deref(),
        states: &n.region.states,
        area_code: n.region.area_code,
        zones: &n.region.zones,
        labels: &n.labels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: &str = r#"
agents:
  sales: { model_id: m-1 }
numbers:
  "+14155550100": { brand: acme, labels: { line: premium } }
  "+13055550105": { brand: acme }
limits:
  default: { per_minute: 2, min_gap: 20s }
"#;

    fn compile(files: &[(&str, &str)]) -> (Option<RuleSet>, Vec<String>) {
        let sources: Vec<(&Path, &str)> = files.iter().map(|(p, t)| (Path::new(*p), *t)).collect();
        let (rules, diagnostics) = compile_sources(&sources);
        (rules, diagnostics.iter().map(ToString::to_string).collect())
    }

    const ONE_CAMPAIGN: &str = r#"
agents: { a: { model_id: m } }
numbers: { "+14155550100": {} }
campaigns: { c: { agent: a, routes: [ { numbers: all } ] } }
"#;

    fn assert_reported(messages: &[String], expected: &str) {
        assert!(
            messages.iter().any(|m| m.contains(expected)),
            "expected a diagnostic containing {expected:?}, got:\n{}",
            messages.join("\n")
        );
    }

    #[test]
    fn health_policies_layer_default_profile_and_number() {
        let text = r#"
agents: { a: { model_id: m, manage_pool: true } }
limits:
  default: { per_hour: 40 }
  fresh: { warmup: { from: 20, to: 150, days: 14 } }
numbers:
  "+14155550100": { limit_profile: fresh, since: "2026-11-20" }
  "+13055550105": {}
  "+12125550107": {}
health:
  default: { rest_when: { min_calls: 30 }, rest_for: 48h, max_resting: 20% }
  profiles: { fresh: { short_call: 15s } }
  numbers: { "+12125550107": { detach_while_resting: true, rest_when: { answer_rate_below: 0.4 } } }
campaigns: { c: { agent: a, routes: [ { numbers: all } ] } }
"#;
        let (rules, messages) = compile(&[("r.yaml", text)]);
        assert!(messages.is_empty(), "{messages:?}");
        let rules = rules.unwrap();
        assert!(rules.agent("a").unwrap().manage_pool);
        let policy = |n: &str| rules.health_policy(n.parse().unwrap()).clone();
        let miami = policy("+13055550105");
        assert_eq!((miami.min_calls, miami.max_resting), (30, 0.2));
        assert_eq!(miami.rest_for, std::time::Duration::from_secs(48 * 3600));
        let fresh = policy("+14155550100");
        assert_eq!(fresh.short_call, std::time::Duration::from_secs(15));
        assert_eq!(
            fresh.min_calls, 30,
            "the profile's policy starts from the default"
        );
        let ny = policy("+12125550107");
        assert!(ny.detach_while_resting);
        assert_eq!((ny.answer_rate_below, ny.min_calls), (0.4, 30));
        let sf = rules.number("+14155550100".parse().unwrap()).unwrap();
        assert_eq!(sf.since, NaiveDate::from_ymd_opt(2026, 11, 20));
        assert_eq!(
            sf.limits.warmup.map(|w| (w.from, w.to, w.days)),
            Some((20, 150, 14))
        );
        assert_eq!(sf.limits.per_hour, Some(40));
    }

    #[test]
    fn every_health_mistake_is_reported_where_it_is() {
        let text = r#"
agents: { a: { model_id: m } }
limits:
  default: { warmup: { from: 50, to: 20, days: 0 } }
numbers:
  "+14155550100": { since: "last week" }
health:
  default: { rest_when: { answer_rate_below: 1.5, min_calls: 60, last_calls: 50 }, max_resting: "130%", rest_for: 0s }
  profiles: { nosuch: {} }
  numbers: { "+12125550107": {} }
campaigns: { c: { agent: a, routes: [ { numbers: all } ] } }
"#;
        let (rules, messages) = compile(&[("r.yaml", text)]);
        assert!(rules.is_none());
        for expected in [
            "r.yaml:4:",
            "`to: 20` is below `from: 50`",
            "`days` must be 1 to 366",
            "r.yaml:6:",
            "`since: last week` is not a date",
            "`answer_rate_below` is a share between 0 and 1",
            "`last_calls: 50` counts fewer calls than `min_calls: 60` needs",
            "`max_resting` is a share between 0 and 1",
            "duration `0s` must be longer than zero",
            "unknown limit profile `nosuch`",
            "number +12125550107 is not in `numbers:`",
        ] {
            assert_reported(&messages, expected);
        }
    }

    #[test]
    fn valid_rules_compile_without_diagnostics() {
        let campaigns = "campaigns:\n  c:\n    agent: sales\n    routes:\n      - numbers: all\n";
        let (rules, messages) = compile(&[("pool.yaml", POOL), ("c.yaml", campaigns)]);
        assert!(messages.is_empty(), "{messages:?}");
        let rules = rules.unwrap();
        assert_eq!(
            rules.campaign("c").unwrap().routes[0]
                .selection
                .members
                .len(),
            2
        );
    }

    #[test]
    fn every_semantic_error_is_reported_with_its_position() {
        let broken = r#"
campaigns:
  c:
    agent: salez
    routes:
      - numbers: { brand: acme, labels: { colour: red } }
        strategy: fastest
        sticky: 7 fortnights
        local_presence: [any, state]
      - numbers: ["4155550100", "+12125550107"]
        when: { timezone: Mars/Olympus, area_code: 99 }
        limits: { per_hour: 0 }
numbers:
  "+1415555": { brand: acme }
  "+13055550106": { limit_profile: gentle }
calling_hours:
  default: { start: "21:00", end: "08:00", days: [mon, funday] }
  states: { fl: { end: "20:00" } }
"#;
        let (rules, messages) = compile(&[("pool.yaml", POOL), ("broken.yaml", broken)]);
        assert!(rules.is_none());
        for expected in [
            "broken.yaml:4:12: unknown agent `salez` (defined: `sales`)",
            "broken.yaml:6:43: unknown label `colour` (defined: `line`)",
            "broken.yaml:7:19: unknown strategy `fastest`",
            "broken.yaml:8:17: bad duration `7 fortnights`",
            "broken.yaml:9:31: `any` must be the last tier",
            "broken.yaml:10:19: `4155550100` is not in E.164 form",
            "broken.yaml:10:33: number +12125550107 is not defined under `numbers:`",
            "broken.yaml:11:27: unknown IANA time zone `Mars/Olympus`",
            "broken.yaml:11:52: area code `99` must be three digits",
            "broken.yaml:12:29: `per_hour: 0` would never allow a call",
            "broken.yaml:14:3: `+1415555` is not",
            "broken.yaml:15:36: unknown limit profile `gentle` (defined: `default`)",
            "broken.yaml:17:35: calling hours end (08:00:00) must be after start (21:00:00)",
            "broken.yaml:17:56: unknown weekday `funday`",
            "broken.yaml:18:13: state `fl` must be a two-letter upper-case code",
        ] {
            assert_reported(&messages, expected);
        }
    }

    #[test]
    fn parse_errors_stop_only_their_own_file() {
        // Block style: the unknown key is cut out and the rest of the file still counts.
        let unknown_key = "agents:\n  other:\n    model_id: m-2\n    modle: x\n";
        let duplicate_key = "numbers:\n  \"+12125550107\": {}\n  \"+12125550107\": {}\n";
        let semantic = "campaigns:\n  c:\n    agent: nobody\n    routes: []\n";
        let (rules, messages) = compile(&[
            ("pool.yaml", POOL),
            ("a.yaml", unknown_key),
            ("b.yaml", duplicate_key),
            ("c.yaml", semantic),
        ]);
        assert!(rules.is_none());
        assert_reported(&messages, "a.yaml:4:5: unknown field `modle`");
        assert_reported(&messages, "b.yaml:3:3: duplicate key `+12125550107`");
        assert_reported(&messages, "c.yaml:3:12: unknown agent `nobody`");
        assert_reported(&messages, "c.yaml:4:13: campaign `c` has no routes");
    }

    #[test]
    fn every_unknown_and_duplicate_key_of_a_file_is_reported() {
        let text = "agents:\n  a:\n    model_id: m\n    modle: x\nnumbers:\n  \"+14155550100\": {}\n  \"+14155550100\":\n    brand: b\ncampaigns:\n  c:\n    agent: a\n    routs: []\n    routes:\n      - numbers: all\n        stratgy: random\n";
        let (rules, messages) = compile(&[("r.yaml", text)]);
        assert!(rules.is_none());
        assert_reported(&messages, "r.yaml:4:5: unknown field `modle`");
        assert_reported(&messages, "r.yaml:7:3: duplicate key `+14155550100`");
        assert_reported(&messages, "r.yaml:12:5: unknown field `routs`");
        assert_reported(&messages, "r.yaml:15:9: unknown field `stratgy`");
        assert_eq!(messages.len(), 4, "nothing spurious: {messages:?}");
    }

    #[test]
    fn a_key_error_inside_a_flow_map_still_stops_the_file_cleanly() {
        let (_, messages) = compile(&[("r.yaml", "agents:\n  a: { model_id: m, modle: x }\n")]);
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert_reported(&messages, "r.yaml:2:21: unknown field `modle`");
    }

    #[test]
    fn names_are_unique_across_files() {
        let again = "agents:\n  sales: { model_id: m-9 }\nnumbers:\n  \"+14155550100\": {}\n";
        let (_, messages) = compile(&[("pool.yaml", POOL), ("again.yaml", again)]);
        assert_reported(
            &messages,
            "again.yaml:2:3: agent `sales` is already defined at pool.yaml:3:3",
        );
        assert_reported(
            &messages,
            "again.yaml:4:3: number +14155550100 is already defined at pool.yaml:5:3",
        );
    }

    #[test]
    fn warns_about_dead_routes_and_unused_numbers() {
        let campaigns = r#"
campaigns:
  c:
    agent: sales
    routes:
      - numbers: ["+14155550100"]
      - when: { state: FL }
        numbers: all
"#;
        let (rules, messages) = compile(&[("pool.yaml", POOL), ("c.yaml", campaigns)]);
        assert!(
            rules.is_some(),
            "warnings must not block loading: {messages:?}"
        );
        assert_reported(
            &messages,
            "c.yaml:7:9: warning: route `#2` of campaign `c` can never match: route `#1`",
        );
        let (_, messages) = compile(&[
            ("pool.yaml", POOL),
            (
                "c.yaml",
                &campaigns.replace("      - when: { state: FL }\n        numbers: all\n", ""),
            ),
        ]);
        assert_reported(
            &messages,
            "pool.yaml:6:3: warning: number +13055550105 is selected by no route",
        );
    }

    #[test]
    fn state_override_is_checked_against_the_default_it_merges_with() {
        let hours = "calling_hours:\n  default: { days: [mon], start: \"08:00\", end: \"21:00\" }\n  states:\n    FL: { end: \"07:00\" }\n";
        let (_, messages) = compile(&[("pool.yaml", POOL), ("h.yaml", hours)]);
        assert_reported(
            &messages,
            "h.yaml:4:5: calling hours for `FL` end (07:00:00) before they start (08:00:00)",
        );
    }

    #[test]
    fn limits_from_profile_number_and_route_combine() {
        let text = r#"
agents: { a: { model_id: m } }
limits:
  default: { per_hour: 40, per_24h: 150 }
  warmup: { per_24h: 30 }
numbers:
  "+14155550100": { limit_profile: warmup, limits: { per_hour: 10 } }
campaigns:
  c:
    agent: a
    routes:
      - numbers: all
        limits: { per_hour: 20, per_minute: 1 }
"#;
        let (rules, messages) = compile(&[("r.yaml", text)]);
        assert!(messages.is_empty(), "{messages:?}");
        let rules = rules.unwrap();
        let number = rules.numbers().next().unwrap();
        let route = &rules.campaign("c").unwrap().routes[0];
        let limits = route.limits_for(number);
        assert_eq!(limits.per_24h, Some(30), "profile overrides the default");
        assert_eq!(
            limits.per_hour,
            Some(10),
            "stricter of number (10) and route (20)"
        );
        assert_eq!(limits.per_minute, Some(1), "route adds a window");
    }

    #[test]
    fn a_route_can_tighten_a_number_s_limits_but_never_loosen_them() {
        let text = r#"
agents: { a: { model_id: m } }
limits:
  default: { per_hour: 40 }
  careful: { per_hour: 2, min_gap: 10m }
numbers:
  "+14155550100": { limit_profile: careful }
campaigns:
  c:
    agent: a
    routes:
      - numbers: all
        limits: { per_hour: 20, min_gap: 1m, per_24h: 50 }
"#;
        let (rules, messages) = compile(&[("r.yaml", text)]);
        assert!(messages.is_empty(), "{messages:?}");
        let rules = rules.unwrap();
        let number = rules.numbers().next().unwrap();
        let limits = rules.campaign("c").unwrap().routes[0].limits_for(number);
        assert_eq!(
            limits.per_hour,
            Some(2),
            "the profile's 2, not the route's 20"
        );
        assert_eq!(limits.min_gap, Some(std::time::Duration::from_secs(600)));
        assert_eq!(limits.per_24h, Some(50), "the route adds a window");
    }

    #[test]
    fn durations_longer_than_a_year_are_refused() {
        for (gap, expected) in [
            (
                "100000000d",
                "r.yaml:3:31: duration `100000000d` is longer than a year",
            ),
            (
                "18446744073709551615s",
                "r.yaml:3:31: duration `18446744073709551615s` is longer than a year",
            ),
        ] {
            let text = format!(
                "agents: {{ a: {{ model_id: m }} }}\nnumbers: {{ \"+14155550100\": {{}} }}\nlimits: {{ default: {{ min_gap: {gap} }} }}\ncampaigns: {{ c: {{ agent: a, routes: [ {{ numbers: all }} ] }} }}\n"
            );
            let (rules, messages) = compile(&[("r.yaml", &text)]);
            assert!(rules.is_none());
            assert_reported(&messages, expected);
        }
    }

    #[test]
    fn rules_without_a_campaign_are_refused() {
        for text in [
            "",
            "# only a comment\n",
            "agents: { a: { model_id: m } }\ncampaigns: {}\n",
        ] {
            let (rules, messages) = compile(&[("r.yaml", text)]);
            assert!(rules.is_none(), "{text:?} must not compile");
            assert_reported(&messages, "r.yaml:1:1: the rules define no campaign");
        }
        let (rules, _) = compile(&[("r.yaml", ONE_CAMPAIGN), ("empty.yaml", "")]);
        assert!(rules.is_some(), "an empty file beside real rules is fine");
    }

    #[test]
    fn a_route_under_a_broader_one_and_overrides_that_never_apply_are_warned_about() {
        let text = r#"
agents: { a: { model_id: m } }
numbers: { "+14155550100": { brand: x } }
calling_hours:
  default: { days: [mon, tue], start: "08:00", end: "20:00" }
  states:
    XX: { end: "19:00" }
    TX: { days: [] }
  countries:
    ZZ: { end: "19:00" }
campaigns:
  c:
    agent: a
    routes:
      - when: { brand: x }
        numbers: all
      - when: { brand: x, state: CA }
        numbers: all
      - when: { state: [CA, NV] }
        numbers: all
      - when: { state: CA }
        numbers: all
"#;
        let (rules, messages) = compile(&[("r.yaml", text)]);
        assert!(rules.is_some(), "{messages:?}");
        for expected in [
            "r.yaml:17:9: warning: route `#2` of campaign `c` can never match: route `#1`",
            "r.yaml:21:9: warning: route `#4` of campaign `c` can never match: route `#3`",
            "r.yaml:7:5: warning: state `XX` is not a US state or Canadian province the number data knows",
            "r.yaml:8:17: warning: `days: []` opens no day",
            "r.yaml:10:5: warning: country `ZZ` is not a country the number data knows",
        ] {
            assert_reported(&messages, expected);
        }
        assert_eq!(messages.len(), 5, "{messages:#?}");
    }

    #[test]
    fn a_file_that_does_not_parse_does_not_make_the_others_look_broken() {
        let pool = "agents: { a: { model_id: m } }\nnumbers: { \"+14155550100\": {} }\nlimits: { default: { per_minute: -2 } }\n";
        let campaigns =
            "campaigns: { c: { agent: a, routes: [ { numbers: [\"+14155550100\"] } ] } }\n";
        let (rules, messages) = compile(&[("pool.yaml", pool), ("campaigns.yaml", campaigns)]);
        assert!(rules.is_none());
        assert_reported(
            &messages,
            "pool.yaml:3:34: expected a whole number here (e.g. 2), not `-2`",
        );
        assert!(
            !messages
                .iter()
                .any(|m| m.contains("unknown agent") || m.contains("no campaign")),
            "{messages:#?}"
        );
    }
}
