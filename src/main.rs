//! The `callroute` command line.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use callroute::engine::decide;
use callroute::explain;
use callroute::lead::Lead;
use callroute::phone::E164;
use callroute::rules::{self, Loaded};
use callroute::usage::PoolState;

/// sysexits.h: the input data was incorrect (a bad lead).
const EX_DATAERR: u8 = 65;
/// sysexits.h: configuration error (bad rules).
const EX_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "callroute",
    version,
    about = "Picks the caller ID for every outbound call, and explains why"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a rules directory: exit 0 when valid, 78 with every error when not.
    Check {
        /// Rules directory (also accepted as `--rules`).
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
        #[arg(long = "rules", value_name = "DIR", conflicts_with = "dir")]
        rules: Option<PathBuf>,
    },
    /// Decide one lead and print the decision with its trace.
    Explain {
        #[arg(long, value_name = "DIR", default_value = "rules")]
        rules: PathBuf,
        /// The lead as a JSON object, or `@FILE` to read it from a file.
        #[arg(long)]
        lead: String,
        /// The moment to decide at (RFC 3339); default: now.
        #[arg(long)]
        at: Option<String>,
        /// Numbers attached to the agents (comma-separated); default: every number in the rules.
        #[arg(long, value_delimiter = ',')]
        attached: Option<Vec<String>>,
        /// Earlier calls to replay first, JSON Lines of
        /// `{"from_phone_number": "+1...", "at": "<RFC 3339>", "lead": {...}}` (`lead`
        /// defaults to the lead being explained).
        #[arg(long, value_name = "FILE")]
        history: Option<PathBuf>,
        /// Seed for the `random` strategy.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { dir, rules } => {
            check(&dir.or(rules).unwrap_or_else(|| PathBuf::from("rules")))
        }
        Command::Explain {
            rules,
            lead,
            at,
            attached,
            history,
            seed,
            format,
        } => explain_lead(
            &rules,
            &lead,
            at.as_deref(),
            attached,
            history.as_deref(),
            seed,
            format,
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_rules(dir: &Path) -> Result<Loaded, ExitCode> {
    match rules::load_dir(dir) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("{warning}");
            }
            Ok(loaded)
        }
        Err(diagnostics) => {
            for diagnostic in &diagnostics.0 {
                eprintln!("{diagnostic}");
            }
            let count = diagnostics.errors().count();
            eprintln!(
                "{}: {count} error{} in the rules; nothing was loaded",
                dir.display(),
                if count == 1 { "" } else { "s" }
            );
            Err(ExitCode::from(EX_CONFIG))
        }
    }
}

fn check(dir: &Path) -> anyhow::Result<ExitCode> {
    let loaded = match load_rules(dir) {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let rules = &loaded.rules;
    let routes: usize = rules.campaigns().map(|c| c.routes.len()).sum();
    println!(
        "{}: ok: {} files, {} campaigns, {} routes, {} numbers, {} agents, {} warnings (rules hash {:016x})",
        dir.display(),
        loaded.files.len(),
        rules.campaigns().count(),
        routes,
        rules.numbers().count(),
        rules.agents().count(),
        loaded.warnings.len(),
        rules.content_hash,
    );
    Ok(ExitCode::SUCCESS)
}

fn parse_time(text: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| {
            format!("`{text}` is not an RFC 3339 time (e.g. 2026-03-04T15:00:00-08:00)")
        })
}

fn read_arg(value: &str) -> anyhow::Result<String> {
    match value.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read {path}")),
        None => Ok(value.to_string()),
    }
}

fn explain_lead(
    rules_dir: &Path,
    lead_arg: &str,
    at: Option<&str>,
    attached: Option<Vec<String>>,
    history: Option<&Path>,
    seed: u64,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let loaded = match load_rules(rules_dir) {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let rules = &loaded.rules;
    let lead = match Lead::from_json(&read_arg(lead_arg)?) {
        Ok(lead) => lead,
        Err(e) => {
            eprintln!("error: bad lead: {e}");
            return Ok(ExitCode::from(EX_DATAERR));
        }
    };
    let now = at.map(parse_time).transpose()?.unwrap_or_else(Utc::now);
    let mut pool = PoolState::new(seed);
    match attached {
        None => pool.attach_all(rules),
        Some(list) => {
            let numbers = list
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| E164::parse(s.trim()).map_err(|e| anyhow!("--attached: {e}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            for agent in rules.agents() {
                pool.set_attached(&agent.model_id, numbers.iter().copied());
            }
        }
    }
    if let Some(path) = history {
        replay_history(&mut pool, &lead, path)?;
    }
    let (decision, trace) = decide(rules, &lead, &pool, now);
    match format {
        Format::Text => print!("{}", explain::to_text(&decision, &trace)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&explain::to_json(&decision, &trace))?
        ),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PastCall {
    from_phone_number: String,
    at: String,
    lead: Option<serde_json::Value>,
}

fn replay_history(pool: &mut PoolState, lead: &Lead, path: &Path) -> anyhow::Result<()> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let place = || format!("{}:{}", path.display(), index + 1);
        let call: PastCall =
            serde_json::from_str(&line).with_context(|| format!("{}: not a past call", place()))?;
        let number = E164::parse(&call.from_phone_number).with_context(place)?;
        let at = parse_time(&call.at).with_context(place)?;
        let called = match call.lead {
            Some(value) => Lead::from_json(&value.to_string())
                .map_err(|e| anyhow!("{}: bad lead: {e}", place()))?,
            None => lead.clone(),
        };
        pool.record(number, &called, at);
    }
    Ok(())
}
