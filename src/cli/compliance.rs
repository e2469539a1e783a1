//! `callroute suppress` (the store-kept suppression lists, audited) and `callroute audit`
//! (each call's proof, as text, JSON or CSV for a compliance review).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Subcommand, ValueEnum};

use callroute::compliance::{ListSource, StoredEntry};
use callroute::config::Config;
use callroute::phone::E164;
use callroute::rules::RuleSet;
use callroute::store::{AttemptQuery, AuditEntry, AuditedAttempt, Store};

use super::pool::{actor, open_store, parse_numbers};

#[derive(Subcommand)]
pub enum SuppressCommand {
    /// Put numbers on a list kept in the store: the daemon refuses them from its next
    /// decision (audited: who, when, why).
    Add {
        #[arg(required = true)]
        numbers: Vec<String>,
        #[arg(long, default_value = callroute::compliance::INTERNAL_LIST)]
        list: String,
        #[arg(long)]
        reason: String,
        /// The entry lapses at the start of this day (YYYY-MM-DD, UTC).
        #[arg(long)]
        expires: Option<NaiveDate>,
    },
    /// Take numbers off a list kept in the store (audited).
    Remove {
        #[arg(required = true)]
        numbers: Vec<String>,
        #[arg(long, default_value = callroute::compliance::INTERNAL_LIST)]
        list: String,
        #[arg(long)]
        reason: String,
    },
    /// Which lists hold these numbers: the store's and the rules' files. Exit 2 when any is
    /// listed.
    Check {
        #[arg(required = true)]
        numbers: Vec<String>,
    },
    /// Put every number of a file on a list kept in the store (one number a line with an
    /// optional `,YYYY-MM-DD` expiry, or a CSV column with `--column`).
    Import {
        file: PathBuf,
        #[arg(long, default_value = callroute::compliance::INTERNAL_LIST)]
        list: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        column: Option<String>,
        #[arg(long)]
        expires_column: Option<String>,
        /// The country whose national numbers the file writes without `+` (US: 10 digits,
        /// or 1 and 10 digits).
        #[arg(long, default_value = "US")]
        country: String,
    },
}

fn check_list_name(rules: Option<&RuleSet>, list: &str) -> anyhow::Result<()> {
    if !callroute::compliance::is_list_name(list) {
        return Err(anyhow!(
            "list name `{list}`: use letters, digits, `-` and `_`"
        ));
    }
    if let Some(rule) = rules
        .into_iter()
        .flat_map(|r| &r.compliance.lists)
        .find(|l| l.name == list)
        && let ListSource::File { path, .. } = &rule.source
    {
        return Err(anyhow!(
            "list `{list}` is a file in the rules ({}); edit that file, or name a list kept in the store",
            path.display()
        ));
    }
    Ok(())
}

pub async fn suppress(
    config: &Config,
    rules: Option<&RuleSet>,
    command: SuppressCommand,
) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    let now = Utc::now();
    let by = actor();
    match command {
        SuppressCommand::Add {
            numbers,
            list,
            reason,
            expires,
        } => {
            check_list_name(rules, &list)?;
            let entries: Vec<StoredEntry> = parse_numbers(&numbers)?
                .into_iter()
                .map(|number| StoredEntry {
                    number,
                    list: list.clone(),
                    reason: reason.clone(),
                    added_by: by.clone(),
                    added_at: now,
                    evidence: None,
                    expires: expires.map(callroute::suppression::lapses_at),
                })
                .collect();
            let audit = AuditEntry {
                at: now,
                actor: by.clone(),
                action: "suppress".into(),
                subject: numbers.join(", "),
                detail: format!("list `{list}`: {reason}"),
            };
            store.suppress(&entries, &audit).await?;
            for entry in &entries {
                println!(
                    "{} is on list `{list}` ({reason}); a running daemon refuses it from its next decision",
                    entry.number
                );
            }
        }
        SuppressCommand::Remove {
            numbers,
            list,
            reason,
        } => {
            let numbers: Vec<String> = parse_numbers(&numbers)?
                .iter()
                .map(ToString::to_string)
                .collect();
            let audit = AuditEntry {
                at: now,
                actor: by.clone(),
                action: "unsuppress".into(),
                subject: numbers.join(", "),
                detail: format!("list `{list}`: {reason}"),
            };
            let removed = store.unsuppress(&list, &numbers, &audit).await?;
            println!(
                "{removed} of {} numbers taken off list `{list}` (leads already rejected stay rejected: enqueue them again)",
                numbers.len()
            );
        }
        SuppressCommand::Check { numbers } => {
            let mut listed = false;
            for number in parse_numbers(&numbers)? {
                let mut hits = Vec::new();
                for entry in store.suppressions(Some(&number.to_string())).await? {
                    let expired = entry.expires.is_some_and(|e| e <= now);
                    hits.push(format!(
                        "store list `{}`: added {} by {}: {}{}{}",
                        entry.list,
                        callroute::format_instant(entry.added_at),
                        entry.added_by,
                        entry.reason,
                        entry
                            .evidence
                            .map(|e| format!("; evidence {e}"))
                            .unwrap_or_default(),
                        if expired { " (expired)" } else { "" }
                    ));
                    listed |= !expired;
                }
                for rule in rules.into_iter().flat_map(|r| &r.compliance.lists) {
                    if let ListSource::File { list, .. } = &rule.source
                        && let Some(hit) = list.find(number, now)
                    {
                        listed = true;
                        hits.push(format!(
                            "list `{}`: {}:{}",
                            rule.name,
                            hit.file.display(),
                            hit.line
                        ));
                    }
                }
                if hits.is_empty() {
                    println!("{number}: on no list");
                }
                for hit in hits {
                    println!("{number}: {hit}");
                }
            }
            if listed {
                return Ok(ExitCode::from(2));
            }
        }
        SuppressCommand::Import {
            file,
            list,
            reason,
            column,
            expires_column,
            country,
        } => {
            check_list_name(rules, &list)?;
            let national = callroute::suppression::National::of(&country)
                .ok_or_else(|| anyhow!("--country {country}: not a country the number data knows (an ISO code such as US, CA, GB)"))?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let parsed = match &column {
                Some(column) => callroute::suppression::List::parse_csv(
                    &list,
                    &file,
                    &bytes,
                    column,
                    expires_column.as_deref(),
                    national,
                ),
                None => callroute::suppression::List::parse(&list, &file, &bytes, national),
            };
            let parsed = match parsed {
                Ok(parsed) => parsed,
                Err(e) => {
                    eprintln!("{e}");
                    eprintln!("nothing imported: fix the lines above and import again");
                    return Ok(ExitCode::from(1));
                }
            };
            let mut entries = Vec::with_capacity(parsed.len());
            let mut invalid = Vec::new();
            for (digits, line, expires) in parsed.entries() {
                match E164::parse(&format!("+{digits}")) {
                    Ok(number) => entries.push(StoredEntry {
                        number,
                        list: list.clone(),
                        reason: reason.clone(),
                        added_by: by.clone(),
                        added_at: now,
                        evidence: Some(format!("{}:{line}", file.display())),
                        expires: expires.map(callroute::suppression::lapses_at),
                    }),
                    Err(e) => invalid.push(format!("{}:{line}: +{digits}: {e}", file.display())),
                }
            }
            if !invalid.is_empty() {
                for problem in invalid.iter().take(20) {
                    eprintln!("{problem}");
                }
                eprintln!(
                    "{} numbers are not valid phone numbers; nothing imported",
                    invalid.len()
                );
                return Ok(ExitCode::from(1));
            }
            let audit = AuditEntry {
                at: now,
                actor: by,
                action: "suppress import".into(),
                subject: file.display().to_string(),
                detail: format!("{} numbers to list `{list}`: {reason}", entries.len()),
            };
            store.suppress(&entries, &audit).await?;
            println!(
                "{} numbers from {} are on list `{list}`",
                entries.len(),
                file.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AuditFormat {
    Text,
    Json,
    Csv,
}

/// `callroute audit`: the ledger's rows with what made each call lawful.
pub async fn audit(
    config: &Config,
    subject: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    limit: u32,
    format: AuditFormat,
) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    let (lead, number) = match subject {
        None => (None, None),
        Some(text) if text.trim_start().starts_with('+') => {
            let number = E164::parse(text.trim()).map_err(|e| anyhow!("`{text}`: {e}"))?;
            (None, Some(number.to_string()))
        }
        Some(text) => (Some(text), None),
    };
    let rows = store
        .audited_attempts(&AttemptQuery {
            lead,
            number,
            from,
            to,
            limit,
        })
        .await?;
    let mut out = std::io::BufWriter::new(super::Stdout);
    match format {
        AuditFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &rows)?;
            writeln!(out)?;
        }
        AuditFormat::Csv => write_csv(&mut out, &rows)?,
        AuditFormat::Text => {
            if rows.is_empty() {
                writeln!(out, "no attempts match")?;
            }
            for row in &rows {
                writeln!(out, "{}", text_of(row))?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// One proof field as text.
fn proof_text(proof: Option<&serde_json::Value>, path: &[&str]) -> String {
    let Some(value) = proof.and_then(|p| path.iter().try_fold(p, |v, k| v.get(*k))) else {
        return String::new();
    };
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

fn attempts_text(proof: Option<&serde_json::Value>) -> String {
    proof
        .and_then(|p| p.get("attempts"))
        .and_then(|a| a.as_array())
        .map(|counts| {
            counts
                .iter()
                .map(|c| {
                    let state = c
                        .get("state")
                        .and_then(|s| s.as_str())
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default();
                    format!(
                        "{} {}/{}{state}",
                        c.get("window").and_then(|w| w.as_str()).unwrap_or("?"),
                        c.get("used").unwrap_or(&serde_json::Value::Null),
                        c.get("limit").unwrap_or(&serde_json::Value::Null)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn lists_text(proof: Option<&serde_json::Value>) -> String {
    proof
        .and_then(|p| p.get("lists"))
        .and_then(|l| l.as_array())
        .map(|lists| {
            lists
                .iter()
                .map(|l| {
                    format!(
                        "{} {}",
                        l.get("list").and_then(|v| v.as_str()).unwrap_or("?"),
                        l.get("version").and_then(|v| v.as_str()).unwrap_or("?")
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn text_of(row: &AuditedAttempt) -> String {
    let a = &row.attempt;
    let proof = row.proof.as_ref();
    let mut text = format!(
        "{}  lead {} ({}) from {} via route {}: {}{}",
        callroute::format_instant(a.at),
        a.lead_id,
        row.to_number.as_deref().unwrap_or("?"),
        a.from_number,
        a.route,
        a.status.as_str(),
        a.call_id
            .as_ref()
            .map(|c| format!(", call {c}"))
            .unwrap_or_default()
    );
    if proof.is_none() {
        text.push_str("\n    no proof kept (an attempt from before callroute kept proofs)");
        return text;
    }
    let lines = [
        ("rules", proof_text(proof, &["rules_hash"])),
        (
            "states",
            format!(
                "{} ({})",
                proof_text(proof, &["states", "states"]),
                proof_text(proof, &["states", "how"])
            ),
        ),
        (
            "window",
            format!(
                "open {} in {}",
                proof_text(proof, &["calling_window", "open_now"]),
                proof_text(proof, &["calling_window", "zones"])
            ),
        ),
        ("laws", proof_text(proof, &["calling_window", "laws"])),
        ("attempts", attempts_text(proof)),
        ("consent", proof_text(proof, &["consent"])),
        ("lists", lists_text(proof)),
        ("tables", proof_text(proof, &["tables"])),
    ];
    for (label, value) in lines.iter().filter(|(_, v)| !v.is_empty()) {
        text.push_str(&format!("\n    {label:<10} {value}"));
    }
    text
}

fn write_csv(out: &mut impl std::io::Write, rows: &[AuditedAttempt]) -> anyhow::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record([
        "at",
        "lead_id",
        "to_number",
        "from_number",
        "route",
        "status",
        "call_id",
        "rules_hash",
        "states",
        "states_chosen_by",
        "zones",
        "window_open",
        "laws",
        "attempts",
        "consent",
        "lists",
        "tables",
    ])?;
    for row in rows {
        let a = &row.attempt;
        let proof = row.proof.as_ref();
        writer.write_record([
            callroute::format_instant(a.at),
            a.lead_id.clone(),
            row.to_number.clone().unwrap_or_default(),
            a.from_number.clone(),
            a.route.clone(),
            a.status.as_str().to_string(),
            a.call_id.clone().unwrap_or_default(),
            proof_text(proof, &["rules_hash"]),
            proof_text(proof, &["states", "states"]),
            proof_text(proof, &["states", "how"]),
            proof_text(proof, &["calling_window", "zones"]),
            proof_text(proof, &["calling_window", "open_now"]),
            proof_text(proof, &["calling_window", "laws"]),
            attempts_text(proof),
            proof_text(proof, &["consent"]),
            lists_text(proof),
            proof_text(proof, &["tables"]),
        ])?;
    }
    writer.flush()?;
    Ok(())
}
