//! The `callroute` command line.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

#[macro_use]
mod cli;

use callroute::config::Config;
use callroute::engine::decide;
use callroute::explain;
use callroute::lead::Lead;
use callroute::phone::E164;
use callroute::rules::{self, Loaded};
use callroute::store::Store;
use callroute::store::any::AnyStore;
use callroute::store::intake;
use callroute::synthflow::simulator::{SimConfig, Simulator};
use callroute::usage::PoolState;

/// The largest lead `--lead @FILE` reads.
const MAX_LEAD_BYTES: u64 = 1 << 20;
/// The longest line `--history` reads.
const MAX_HISTORY_LINE: u64 = 64 << 10;
/// The most `--history` reads in all.
const MAX_HISTORY_BYTES: u64 = 256 << 20;

/// Rows `callroute enqueue` reads and stores at a time.
const ENQUEUE_BATCH: usize = 50_000;

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
    /// Log lines for people (`text`; plain when not on a terminal, as under journald) or one
    /// JSON object per line (`json`). Filter with CALLROUTE_LOG (default `warn`, `info` shows
    /// every decision).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CALLROUTE_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process on the example rules against the built-in simulator,
    /// then report per lead and per number.
    Demo {
        #[arg(long, value_name = "DIR", default_value = "rules")]
        rules: PathBuf,
        /// How many sample leads to enqueue.
        #[arg(long, default_value_t = 300)]
        leads: usize,
        /// Stop after this long (wall time) even if leads are still due.
        #[arg(long, default_value = "50s", value_parser = humantime::parse_duration)]
        run_for: std::time::Duration,
        /// How many times faster than the wall clock the demo's clock runs.
        #[arg(long, default_value_t = 240.0)]
        speed: f64,
        /// Where the demo's clock starts (RFC 3339); default: 12:50 UTC on the next weekday.
        #[arg(long)]
        start: Option<String>,
        /// Only write the demo's sample leads (CSV) to FILE, e.g. for `simulate`, and exit.
        #[arg(long, value_name = "FILE")]
        write_leads: Option<PathBuf>,
    },
    /// Run the daemon: dial the queue until SIGTERM/SIGINT.
    Run {
        /// Configuration file (default: $CALLROUTE_CONFIG, else built-in defaults).
        #[arg(long, env = "CALLROUTE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Add leads to the queue from CSV (header row) or JSON Lines files; `-` reads stdin.
    Enqueue {
        #[arg(long, env = "CALLROUTE_CONFIG")]
        config: Option<PathBuf>,
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
    },
    /// Ask the running daemon to reload its rules; waits for the result (exit 1 if the files
    /// are broken and the old rules stay).
    Reload {
        #[arg(long, env = "CALLROUTE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// The agents' attached pools next to the rules; keep managed pools as the rules say.
    Pool {
        #[arg(long, env = "CALLROUTE_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: cli::pool::PoolCommand,
    },
    /// Rest or resume caller IDs by hand.
    Numbers {
        #[arg(long, env = "CALLROUTE_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: cli::pool::NumbersCommand,
    },
    /// Suppression lists kept in the store: add, remove, check, import (audited).
    Suppress {
        #[arg(long, env = "CALLROUTE_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: cli::compliance::SuppressCommand,
    },
    /// The proof of each call (rules hash, calling window and laws, attempt counts, lists
    /// checked and their versions), by lead, by number or by time; CSV for a review.
    Audit {
        /// A lead id, or a number (`+…`: the caller ID or the lead's number).
        subject: Option<String>,
        #[arg(long, env = "CALLROUTE_CONFIG")]
        config: Option<PathBuf>,
        /// From this instant (RFC 3339) on.
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// Before this instant (RFC 3339).
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, default_value_t = 10_000)]
        limit: u32,
        #[arg(long, value_enum, default_value = "text")]
        format: cli::compliance::AuditFormat,
    },
    /// Results kept in the store (every call's end, every finished lead): what `results.url`
    /// receives, for those who pull instead.
    Results {
        #[command(subcommand)]
        command: ResultsCommand,
    },
    /// Apply the store's pending schema migrations and exit (daemons also apply them at
    /// start, under a lock). A SQLite store is created or upgraded in place.
    Migrate {
        #[arg(long, env = "CALLROUTE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Show the running daemon's queue, per-number usage against limits, live calls and last
    /// reload (from its admin listener).
    Status {
        #[arg(long, env = "CALLROUTE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Serve the Synthflow simulator.
    Simulator {
        #[arg(long, default_value = "127.0.0.1:8089")]
        listen: String,
        /// Simulator settings (YAML: api_key, attempts_per_second, concurrency, agents, calls, faults, seed).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// What these rules would do to a list of leads: the engine on a virtual clock, with the
    /// account's pace and live-call limit and calls of simulated length; no network.
    Simulate {
        #[arg(long, value_name = "DIR", default_value = "rules")]
        rules: PathBuf,
        /// Lead files (CSV with a header row, JSON Lines or a JSON array).
        #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
        leads: Vec<PathBuf>,
        /// Where the virtual clock starts (RFC 3339); default: 12:50 UTC on the next weekday.
        #[arg(long)]
        start: Option<String>,
        #[arg(long, default_value_t = 1)]
        days: u32,
        /// The account's call attempts per second.
        #[arg(long, default_value_t = 1)]
        caps: u32,
        /// The account's live-call limit.
        #[arg(long, default_value_t = 5)]
        concurrency: u32,
        /// Share of calls answered: `0.6` for all numbers, `+14155550100=0.2` for one;
        /// repeat for several.
        #[arg(long, value_name = "R|NUMBER=R", default_value = "0.6", value_parser = parse_answer_rate)]
        answer_rate: Vec<(Option<E164>, f64)>,
        /// How long an answered call lasts (an unanswered one rings 30 s).
        #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
        call_duration: std::time::Duration,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Capacity advice: more local numbers for states with a larger share of calls from
        /// non-local numbers than this.
        #[arg(long, default_value_t = 0.2)]
        non_local_target: f64,
        /// Skip the capacity advice (it simulates again with synthetic numbers).
        #[arg(long)]
        no_advice: bool,
        /// Do not apply the rules' health policy (the daemon always does): to measure it.
        #[arg(long)]
        no_health: bool,
        /// Model carriers' labelling of caller IDs (volume and short calls get numbers
        /// labelled, labelled numbers are answered less, rest lifts the label).
        #[arg(long)]
        reputation: bool,
        /// A second rules directory: simulate both and print the leads whose fate differs.
        #[arg(long, value_name = "DIR")]
        compare: Option<PathBuf>,
        /// Also write the report as one self-contained HTML page.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
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
        /// A number resting until an instant, as health would rest it: `+14155550100@2026-12-02T16:00:00Z`
        /// (repeat for several).
        #[arg(long, value_name = "NUMBER@UNTIL")]
        resting: Vec<String>,
        /// Seed for the `random` strategy.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Subcommand)]
enum ResultsCommand {
    /// Every event written in a time range, oldest first, delivered or not.
    Export {
        #[arg(long, env = "CALLROUTE_CONFIG")]
        config: Option<PathBuf>,
        /// From this instant (RFC 3339) on.
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// Before this instant (RFC 3339).
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, default_value_t = 100_000)]
        limit: u32,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: cli::results::ExportFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("CALLROUTE_LOG")
        .unwrap_or_else(|_| "warn".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().flatten_event(true).init(),
        // journald adds its own timestamps; colours only on a terminal.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let result = match cli.command {
        Command::Demo {
            leads,
            write_leads: Some(path),
            ..
        } => std::fs::write(&path, callroute::demo::sample_csv(leads))
            .with_context(|| format!("cannot write {}", path.display()))
            .map(|()| ExitCode::SUCCESS),
        Command::Demo {
            rules,
            leads,
            run_for,
            speed,
            start,
            write_leads: None,
        } => runtime().and_then(|rt| {
            let start = start.as_deref().map(parse_time).transpose()?;
            rt.block_on(demo(
                &rules,
                callroute::demo::DemoOptions {
                    leads,
                    run_for,
                    speed,
                    start,
                },
            ))
        }),
        Command::Run { config } => {
            runtime().and_then(|rt| rt.block_on(run_daemon(config.as_deref())))
        }
        Command::Enqueue { config, files } => {
            runtime().and_then(|rt| rt.block_on(enqueue(config.as_deref(), &files)))
        }
        Command::Pool { config, command } => match load_config(config.as_deref()) {
            Err(code) => Ok(code),
            Ok(config) => match cli::pool::rules_of(&config) {
                Err(code) => Ok(code),
                Ok(rules) => {
                    runtime().and_then(|rt| rt.block_on(cli::pool::pool(&config, &rules, command)))
                }
            },
        },
        Command::Numbers { config, command } => match load_config(config.as_deref()) {
            Err(code) => Ok(code),
            Ok(config) => {
                runtime().and_then(|rt| rt.block_on(cli::pool::numbers(&config, command)))
            }
        },
        Command::Suppress { config, command } => match load_config(config.as_deref()) {
            Err(code) => Ok(code),
            Ok(config) => {
                // A number must go on the store's list even while the rules are broken.
                let rules = cli::pool::rules_of(&config).ok();
                if rules.is_none() {
                    eprintln!(
                        "the rules do not load (above): the lists in their files are not checked"
                    );
                }
                runtime().and_then(|rt| {
                    rt.block_on(cli::compliance::suppress(&config, rules.as_ref(), command))
                })
            }
        },
        Command::Audit {
            subject,
            config,
            from,
            to,
            limit,
            format,
        } => match load_config(config.as_deref()) {
            Err(code) => Ok(code),
            Ok(config) => runtime().and_then(|rt| {
                rt.block_on(cli::compliance::audit(
                    &config, subject, from, to, limit, format,
                ))
            }),
        },
        Command::Results {
            command:
                ResultsCommand::Export {
                    config,
                    from,
                    to,
                    limit,
                    format,
                },
        } => match load_config(config.as_deref()) {
            Err(code) => Ok(code),
            Ok(config) => runtime().and_then(|rt| {
                rt.block_on(cli::results::export(
                    &config,
                    from.unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC),
                    to.unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC),
                    limit,
                    format,
                ))
            }),
        },
        Command::Status { config } => {
            runtime().and_then(|rt| rt.block_on(status(config.as_deref())))
        }
        Command::Migrate { config } => {
            runtime().and_then(|rt| rt.block_on(migrate(config.as_deref())))
        }
        Command::Reload { config } => {
            runtime().and_then(|rt| rt.block_on(reload(config.as_deref())))
        }
        Command::Simulator { listen, config } => {
            runtime().and_then(|rt| rt.block_on(simulator(&listen, &config)))
        }
        Command::Simulate {
            rules,
            leads,
            start,
            days,
            caps,
            concurrency,
            answer_rate,
            call_duration,
            seed,
            non_local_target,
            no_advice,
            no_health,
            reputation,
            compare,
            out,
            format,
        } => start
            .as_deref()
            .map(parse_time)
            .transpose()
            .and_then(|start| {
                let mut options = callroute::simulate::SimulateOptions {
                    start: start
                        .unwrap_or_else(|| callroute::demo::default_start(Utc::now().date_naive())),
                    days,
                    caps,
                    concurrency,
                    answer_rate: 0.6,
                    answer_rates: Default::default(),
                    call_duration,
                    ring_duration: std::time::Duration::from_secs(30),
                    seed,
                    non_local_target,
                    health: !no_health,
                    reputation: reputation.then(callroute::simulate::reputation::Model::default),
                };
                for (number, rate) in answer_rate {
                    match number {
                        Some(number) => {
                            options.answer_rates.insert(number, rate);
                        }
                        None => options.answer_rate = rate,
                    }
                }
                simulate(
                    &rules,
                    &leads,
                    SimulateRun {
                        options,
                        advice: !no_advice,
                        compare,
                        out,
                        format,
                    },
                )
            }),
        Command::Check { dir, rules } => {
            check(&dir.or(rules).unwrap_or_else(|| PathBuf::from("rules")))
        }
        Command::Explain {
            rules,
            lead,
            at,
            attached,
            history,
            resting,
            seed,
            format,
        } => explain_lead(
            &rules,
            &lead,
            at.as_deref(),
            ExplainPool {
                attached,
                history,
                resting,
                seed,
            },
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

/// `load_rules` for the daemon: diagnostics go to the log (JSON lines when asked for).
fn load_rules_logged(dir: &Path) -> Result<Loaded, ExitCode> {
    match rules::load_dir(dir) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                tracing::warn!("{warning}");
            }
            Ok(loaded)
        }
        Err(diagnostics) => {
            for diagnostic in diagnostics.errors() {
                tracing::error!("{diagnostic}");
            }
            tracing::error!("{}: the rules are broken; refusing to start", dir.display());
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
        "{}: ok: {} files, {} campaigns, {} routes, {} numbers, {} agents, {} warnings (rules hash {})",
        dir.display(),
        loaded.files.len(),
        rules.campaigns().count(),
        routes,
        rules.numbers().count(),
        rules.agents().count(),
        loaded.warnings.len(),
        rules.hash_text(),
    );
    Ok(ExitCode::SUCCESS)
}

struct SimulateRun {
    options: callroute::simulate::SimulateOptions,
    advice: bool,
    compare: Option<PathBuf>,
    out: Option<PathBuf>,
    format: Format,
}

fn simulate(rules_dir: &Path, files: &[PathBuf], run: SimulateRun) -> anyhow::Result<ExitCode> {
    use callroute::simulate;
    let loaded = match load_rules(rules_dir) {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let other = match run.compare.as_deref().map(load_rules).transpose() {
        Ok(other) => other,
        Err(code) => return Ok(code),
    };
    let mut leads = Vec::new();
    let mut bad = 0;
    for file in files {
        let input =
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        let intake = intake::parse(input).map_err(|e| anyhow!("{}:{e}", file.display()))?;
        for row in &intake.rejected {
            eprintln!("{}:{}: {}", file.display(), row.line, row.reason);
        }
        bad += intake.rejected.len();
        for (id, raw) in intake.leads {
            let lead = Lead::from_raw(raw).map_err(|e| anyhow!("{id}: {e}"))?;
            leads.push(Lead { key: id, ..lead });
        }
    }
    if bad > 0 {
        eprintln!(
            "{bad} rows left out (above); simulating the {} others",
            leads.len()
        );
    }
    let options = &run.options;
    if let Some(other) = other {
        let comparison = simulate::compare::compare(&loaded.rules, &other.rules, &leads, options);
        match run.format {
            Format::Text => print!("{comparison}"),
            Format::Json => println!("{}", serde_json::to_string_pretty(&comparison)?),
        }
        if let Some(out) = &run.out {
            write_report(out, &comparison.after)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let tally = simulate::tally(&loaded.rules, &leads, options);
    let mut report = simulate::Report::new(&loaded.rules, &leads, options, &tally);
    if run.advice {
        eprintln!(
            "working out capacity advice: simulating again with synthetic numbers (--no-advice skips this)"
        );
        report.advice = Some(simulate::advice::advise(
            &loaded.rules,
            &leads,
            options,
            &tally,
            &report,
        ));
    }
    match run.format {
        Format::Text => print!("{report}"),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    if let Some(out) = &run.out {
        write_report(out, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write_report(path: &Path, report: &callroute::simulate::Report) -> anyhow::Result<()> {
    std::fs::write(path, callroute::simulate::html::render(report))
        .with_context(|| format!("cannot write the report to {}", path.display()))
}

fn parse_answer_rate(text: &str) -> Result<(Option<E164>, f64), String> {
    let (number, rate) = match text.split_once('=') {
        Some((number, rate)) => (
            Some(
                number
                    .trim()
                    .parse::<E164>()
                    .map_err(|e| format!("`{number}`: {e}"))?,
            ),
            rate,
        ),
        None => (None, text),
    };
    match rate.trim().parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok((number, rate)),
        _ => Err(format!("`{rate}` is not a share between 0 and 1")),
    }
}

fn parse_time(text: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| {
            format!("`{text}` is not an RFC 3339 time (e.g. 2026-03-04T15:00:00-08:00)")
        })
}

fn read_arg(value: &str) -> anyhow::Result<String> {
    use std::io::Read;
    let Some(path) = value.strip_prefix('@') else {
        return Ok(value.to_string());
    };
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {path}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_LEAD_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {path}"))?;
    if bytes.len() as u64 > MAX_LEAD_BYTES {
        anyhow::bail!("{path}: larger than {MAX_LEAD_BYTES} bytes; a lead is a small JSON object");
    }
    String::from_utf8(bytes).with_context(|| format!("{path}: not UTF-8 text"))
}

/// What `explain` assumes of the pool: attached numbers, past calls, rests, the seed.
struct ExplainPool {
    attached: Option<Vec<String>>,
    history: Option<PathBuf>,
    resting: Vec<String>,
    seed: u64,
}

fn explain_lead(
    rules_dir: &Path,
    lead_arg: &str,
    at: Option<&str>,
    given: ExplainPool,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let ExplainPool {
        attached,
        history,
        resting,
        seed,
    } = given;
    let loaded = match load_rules(rules_dir) {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let rules = &loaded.rules;
    // A lead that cannot be read is bad data like a lead that does not parse: exit 65.
    let lead = match read_arg(lead_arg).map(|text| Lead::from_json(&text)) {
        Ok(Ok(lead)) => lead,
        Ok(Err(e)) => {
            eprintln!("error: bad lead: {e}");
            return Ok(ExitCode::from(EX_DATAERR));
        }
        Err(e) => {
            eprintln!("error: bad lead: {e:#}");
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
    let earlier = match &history {
        None => Vec::new(),
        Some(path) => match replay_history(&mut pool, &lead, path) {
            Ok(earlier) => earlier,
            Err(e) => {
                eprintln!("error: bad history: {e:#}");
                return Ok(ExitCode::from(EX_DATAERR));
            }
        },
    };
    let rests = resting
        .iter()
        .map(|given| {
            let (number, until) = given
                .split_once('@')
                .ok_or_else(|| anyhow!("--resting `{given}`: expected NUMBER@UNTIL"))?;
            Ok(callroute::health::Rest {
                number: E164::parse(number.trim()).map_err(|e| anyhow!("--resting: {e}"))?,
                since: DateTime::<Utc>::MIN_UTC,
                until: parse_time(until.trim())?,
                reason: "given with --resting".into(),
                source: "manual".into(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    pool.set_rests(rests);
    let (decision, trace) = decide(rules, &lead, &pool, now);
    match format {
        Format::Text => {
            print!("{}", explain::to_text(&decision, &trace));
            for call in &earlier {
                println!("  earlier  {call}");
            }
        }
        Format::Json => {
            let mut json = explain::to_json(&decision, &trace);
            json["earlier"] = serde_json::json!(earlier);
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One of the explained lead's own earlier calls, as `--history` gave it.
#[derive(serde::Serialize)]
struct EarlierCall {
    at: DateTime<Utc>,
    from_phone_number: String,
    status: Option<String>,
}

impl std::fmt::Display for EarlierCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} from {}: {}",
            callroute::format_instant(self.at),
            self.from_phone_number,
            self.status.as_deref().unwrap_or("outcome not given")
        )
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PastCall {
    from_phone_number: String,
    at: String,
    lead: Option<serde_json::Value>,
    /// How the call ended (a Synthflow status), shown for the explained lead's own calls.
    status: Option<String>,
}

/// Replays `path`'s calls into `pool`; returns the explained lead's own, oldest first.
fn replay_history(
    pool: &mut PoolState,
    lead: &Lead,
    path: &Path,
) -> anyhow::Result<Vec<EarlierCall>> {
    let mut earlier = Vec::new();
    use std::io::Read;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = std::io::BufReader::new(file.take(MAX_HISTORY_BYTES));
    let mut buffer = Vec::new();
    for index in 0.. {
        let place = || format!("{}:{}", path.display(), index + 1);
        buffer.clear();
        let read = (&mut reader)
            .take(MAX_HISTORY_LINE + 1)
            .read_until(b'\n', &mut buffer)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if read == 0 {
            break;
        }
        if read as u64 > MAX_HISTORY_LINE {
            anyhow::bail!("{}: line longer than {MAX_HISTORY_LINE} bytes", place());
        }
        let line =
            std::str::from_utf8(&buffer).with_context(|| format!("{}: not UTF-8", place()))?;
        if line.trim().is_empty() {
            continue;
        }
        let call: PastCall =
            serde_json::from_str(line).with_context(|| format!("{}: not a past call", place()))?;
        let number = E164::parse(&call.from_phone_number).with_context(place)?;
        let at = parse_time(&call.at).with_context(place)?;
        let called = match call.lead {
            Some(value) => Lead::from_json(&value.to_string())
                .map_err(|e| anyhow!("{}: bad lead: {e}", place()))?,
            None => lead.clone(),
        };
        pool.record(number, &called, at);
        if called.key == lead.key {
            earlier.push(EarlierCall {
                at,
                from_phone_number: number.to_string(),
                status: call.status,
            });
        }
    }
    earlier.sort_by_key(|call| call.at);
    if reader.get_ref().limit() == 0 {
        anyhow::bail!(
            "{}: larger than {MAX_HISTORY_BYTES} bytes; give the recent calls only",
            path.display()
        );
    }
    Ok(earlier)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn demo(rules: &Path, options: callroute::demo::DemoOptions) -> anyhow::Result<ExitCode> {
    if !(options.speed > 0.0 && options.speed.is_finite()) {
        anyhow::bail!("--speed must be a positive number");
    }
    let report = callroute::demo::run(rules, options).await?;
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}

fn load_config(path: Option<&Path>) -> Result<Config, ExitCode> {
    match path {
        None => Ok(Config::default()),
        Some(path) => Config::load(path).map_err(|diagnostics| {
            eprintln!("{diagnostics}");
            ExitCode::from(EX_CONFIG)
        }),
    }
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn termination() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(_) => return std::future::pending().await,
    };
    let signal = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    };
    tracing::info!(
        "{signal}: stopping; requests in flight get their answer recorded, live calls are followed again at the next start"
    );
}

async fn run_daemon(config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = match load_config(config_path) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let loaded = match load_rules_logged(&config.rules) {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let shutdown = async {
        termination().await;
        callroute::systemd::stopping();
    };
    let warned = loaded.warnings.iter().map(ToString::to_string).collect();
    match callroute::service::run(config, loaded.rules, warned, shutdown).await {
        Ok(()) => {
            tracing::info!("stopped");
            Ok(ExitCode::SUCCESS)
        }
        // Configuration found wrong at start: systemd must not restart into it.
        Err(e @ callroute::service::ServiceError::Config(_)) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(EX_CONFIG))
        }
        Err(e) => Err(e.into()),
    }
}

async fn migrate(config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = match load_config(config_path) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let shown = callroute::service::redacted(&config.store);
    if callroute::store::postgres::is_postgres_url(&config.store) {
        let applied = callroute::store::postgres::PgStore::migrate_only(&config.store)
            .await
            .with_context(|| format!("migrating the store {shown}"))?;
        if applied.is_empty() {
            println!("{shown}: schema up to date");
        } else {
            let versions: Vec<String> = applied.iter().map(ToString::to_string).collect();
            println!("{shown}: applied migration {}", versions.join(", "));
        }
    } else {
        AnyStore::open(&config.store)
            .await
            .with_context(|| format!("opening the store {shown}"))?;
        println!("{shown}: schema up to date");
    }
    Ok(ExitCode::SUCCESS)
}

async fn enqueue(config_path: Option<&Path>, files: &[String]) -> anyhow::Result<ExitCode> {
    let config = match load_config(config_path) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let store = AnyStore::open(&config.store).await.with_context(|| {
        format!(
            "opening the store {}",
            callroute::service::redacted(&config.store)
        )
    })?;
    let (mut accepted, mut duplicate, mut rejected) = (0, 0, 0);
    for file in files {
        // Read and stored a batch at a time: memory follows the batch, not the file. Each
        // batch is one transaction; enqueue is idempotent by lead id, so a file cut short by
        // a crash is completed by enqueueing it again.
        let input: Box<dyn std::io::BufRead + Send> = if file == "-" {
            Box::new(std::io::BufReader::new(std::io::stdin()))
        } else {
            Box::new(std::io::BufReader::new(
                std::fs::File::open(file).with_context(|| format!("cannot open {file}"))?,
            ))
        };
        // Reading and checking the next batch (one thread) overlaps storing this one.
        let (batches, mut received) = tokio::sync::mpsc::channel(2);
        let reader = tokio::task::spawn_blocking(move || {
            match intake::batches(input, ENQUEUE_BATCH) {
                Ok(all) => {
                    for batch in all {
                        if batches.blocking_send(Ok(batch)).is_err() {
                            return; // the store failed: stop reading
                        }
                    }
                }
                Err(e) => {
                    let _ = batches.blocking_send(Err(e));
                }
            }
        });
        while let Some(batch) = received.recv().await {
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    eprintln!("{file}:{e}");
                    rejected += 1;
                    continue;
                }
            };
            for bad in &batch.rejected {
                eprintln!("{file}:{}: {}", bad.line, bad.reason);
            }
            rejected += batch.rejected.len() as u64;
            let counts = store.enqueue(&batch.leads, Utc::now()).await?;
            accepted += counts.accepted;
            duplicate += counts.duplicate;
        }
        reader.await?;
    }
    println!("accepted {accepted}, duplicate {duplicate}, rejected {rejected}");
    Ok(if rejected > 0 {
        ExitCode::from(EX_DATAERR)
    } else {
        ExitCode::SUCCESS
    })
}

async fn simulator(listen: &str, config: &Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let sim_config: SimConfig = match serde_saphyr::from_str(&text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", callroute::rules::diag::from_yaml_error(config, &e));
            return Ok(ExitCode::from(EX_CONFIG));
        }
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    println!(
        "simulator listening on http://{}/v2",
        listener.local_addr()?
    );
    Simulator::new(sim_config)
        .serve(listener, termination())
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// The admin address to connect to: a wildcard listen address means this host.
fn admin_address(config: &Config) -> std::net::SocketAddr {
    let mut address = config.admin_listen;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    address
}

async fn reload(config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = match load_config(config_path) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let url = format!("http://{}/v1/reload", admin_address(&config));
    let response = with_token(&config, reqwest::Client::new().post(&url))?
        .send()
        .await
        .with_context(|| {
            format!("cannot reach the daemon at {url}; is `callroute run` running?")
        })?;
    let response = refused_as_error(response).await?;
    use callroute::daemon::ReloadOutcome;
    let outcome: ReloadOutcome = response
        .json()
        .await
        .context("unexpected answer from the daemon")?;
    match outcome {
        ReloadOutcome::Applied {
            hash,
            changes,
            warnings,
        } => {
            println!("reloaded: rules {hash}");
            for change in changes {
                println!("  {change}");
            }
            for warning in warnings {
                eprintln!("{warning}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ReloadOutcome::Unchanged { hash } => {
            println!("unchanged: rules {hash}");
            Ok(ExitCode::SUCCESS)
        }
        ReloadOutcome::Failed { errors } => {
            for error in errors {
                eprintln!("{error}");
            }
            eprintln!("reload failed: the running rules stay");
            Ok(ExitCode::FAILURE)
        }
        ReloadOutcome::Waiting { errors } => {
            for error in errors {
                eprintln!("{error}");
            }
            eprintln!(
                "reload waiting: the files are valid, the running rules stay until the above can be read (tried again by itself)"
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn status(config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = match load_config(config_path) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let url = format!("http://{}/v1/status", admin_address(&config));
    let response = with_token(&config, reqwest::Client::new().get(&url))?
        .send()
        .await
        .with_context(|| {
            format!("cannot reach the daemon at {url}; is `callroute run` running?")
        })?;
    let status: callroute::daemon::StatusView = refused_as_error(response)
        .await?
        .json()
        .await
        .context("unexpected answer from the daemon")?;
    print!("{status}");
    Ok(ExitCode::SUCCESS)
}

/// Adds the admin token (from the same sources the daemon reads) to a request.
fn with_token(
    config: &Config,
    request: reqwest::RequestBuilder,
) -> anyhow::Result<reqwest::RequestBuilder> {
    Ok(match config.admin_token()? {
        Some(token) => request.bearer_auth(token),
        None => request,
    })
}

/// The daemon's own words when it refuses the request (401, 403, ...).
async fn refused_as_error(response: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    let status = response.status();
    if status.is_client_error() && status != reqwest::StatusCode::UNPROCESSABLE_ENTITY {
        let text = response.text().await.unwrap_or_default();
        anyhow::bail!(
            "the daemon refused (HTTP {}): {}",
            status.as_u16(),
            text.trim()
        );
    }
    Ok(response)
}
