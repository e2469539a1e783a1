//! `callroute pool status|plan|apply|attach|detach` and `callroute numbers rest|resume`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};
use chrono::Utc;
use clap::Subcommand;

use callroute::config::Config;
use callroute::phone::E164;
use callroute::pool;
use callroute::rules::{Agent, RuleSet};
use callroute::store::any::AnyStore;
use callroute::store::{AuditEntry, Store};
use callroute::synthflow::{Client, ClientConfig};
use callroute::usage::PoolState;

#[derive(Subcommand)]
pub enum PoolCommand {
    /// Per agent: the attached numbers (number, slug, sid) next to the numbers the rules give
    /// it, and which rest.
    Status,
    /// What `apply` would change for agents with `manage_pool: true`: exit 0 in sync, 2 when
    /// changes are pending (for CI).
    Plan,
    /// Make the pools of agents with `manage_pool: true` match the rules.
    Apply {
        /// Apply without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Attach numbers to one agent (audited).
    Attach {
        #[arg(required = true)]
        numbers: Vec<String>,
        #[arg(long)]
        agent: String,
    },
    /// Detach numbers from one agent, by the slug Synthflow gives them (audited).
    Detach {
        #[arg(required = true)]
        numbers: Vec<String>,
        #[arg(long)]
        agent: String,
    },
}

#[derive(Subcommand)]
pub enum NumbersCommand {
    /// Rest caller IDs: the engine skips them until the rest ends (kept in the store, audited).
    Rest {
        #[arg(required = true)]
        numbers: Vec<String>,
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        rest_for: Duration,
        #[arg(long)]
        reason: String,
    },
    /// End the rest of caller IDs now.
    Resume {
        #[arg(required = true)]
        numbers: Vec<String>,
    },
}

/// The user the audit log names.
pub(crate) fn actor() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "cli".to_string())
}

pub(crate) fn parse_numbers(numbers: &[String]) -> anyhow::Result<Vec<E164>> {
    numbers
        .iter()
        .map(|n| E164::parse(n.trim()).map_err(|e| anyhow!("`{n}`: {e}")))
        .collect()
}

pub(crate) async fn open_store(config: &Config) -> anyhow::Result<AnyStore> {
    AnyStore::open(&config.store).await.with_context(|| {
        format!(
            "opening the store {}",
            callroute::service::redacted(&config.store)
        )
    })
}

/// A client on the account `agent` lives in (the first when it names none).
fn client_for(config: &Config, agent: &Agent) -> anyhow::Result<Client> {
    let accounts = config.account_configs();
    let account = match &agent.account {
        None => &accounts[0],
        Some(name) => accounts.iter().find(|a| &a.name == name).ok_or_else(|| {
            anyhow!(
                "agent `{}` names account `{name}`, which the configuration does not have",
                agent.name
            )
        })?,
    };
    Ok(Client::new(&ClientConfig {
        base_url: account.base_url.clone(),
        api_key: config.account_key(account)?,
        connect_timeout: config.connect_timeout,
        request_timeout: config.request_timeout,
    })?)
}

/// The rests as the store has them, in the engine's view.
async fn rests(store: &AnyStore) -> anyhow::Result<PoolState> {
    let mut pool = PoolState::new(0);
    pool.set_rests(store.rests(Utc::now()).await?);
    Ok(pool)
}

fn agent<'a>(rules: &'a RuleSet, name: &str) -> anyhow::Result<&'a Agent> {
    rules.agent(name).ok_or_else(|| {
        let known: Vec<&str> = rules.agents().map(|a| a.name.as_str()).collect();
        anyhow!(
            "no agent `{name}` in the rules (agents: {})",
            known.join(", ")
        )
    })
}

pub async fn numbers(config: &Config, command: NumbersCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    let now = Utc::now();
    let by = actor();
    match command {
        NumbersCommand::Rest {
            numbers,
            rest_for,
            reason,
        } => {
            let until = now + chrono::Duration::from_std(rest_for)?;
            let numbers = parse_numbers(&numbers)?;
            // A rest of a number no rule has would change nothing: most likely a typo.
            match callroute::rules::load_dir(Path::new(&config.rules)) {
                Ok(loaded) => {
                    let unknown: Vec<String> = numbers
                        .iter()
                        .filter(|n| loaded.rules.number(**n).is_none())
                        .map(ToString::to_string)
                        .collect();
                    if !unknown.is_empty() {
                        eprintln!(
                            "not in the rules ({}): {}; nothing rested (a rest of a number no rule has changes nothing)",
                            config.rules.display(),
                            unknown.join(", ")
                        );
                        return Ok(ExitCode::from(1));
                    }
                }
                Err(_) => eprintln!(
                    "warning: the rules in {} cannot be read, so the numbers are not checked against them",
                    config.rules.display()
                ),
            }
            for number in numbers {
                let rest = callroute::health::Rest {
                    number,
                    since: now,
                    until,
                    reason: reason.clone(),
                    source: "manual".into(),
                };
                store.rest_number(&rest, &by).await?;
                store
                    .audit(&AuditEntry {
                        at: now,
                        actor: by.clone(),
                        action: "rest".into(),
                        subject: number.to_string(),
                        detail: format!("until {}: {reason}", callroute::format_instant(until)),
                    })
                    .await?;
                println!(
                    "{number} rests until {} ({reason}); a running daemon applies it at once",
                    callroute::format_instant(until)
                );
            }
        }
        NumbersCommand::Resume { numbers } => {
            for number in parse_numbers(&numbers)? {
                let was = store.resume_number(&number.to_string(), &by, now).await?;
                store
                    .audit(&AuditEntry {
                        at: now,
                        actor: by.clone(),
                        action: "resume".into(),
                        subject: number.to_string(),
                        detail: if was { "rest ended" } else { "was not resting" }.into(),
                    })
                    .await?;
                println!(
                    "{number}: {}",
                    if was { "rest ended" } else { "was not resting" }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The audit action that records a number the API refused to attach.
const REFUSED_ACTION: &str = "pool refused";

/// Numbers the API refused at the last `pool apply` that tried them, with when and why.
async fn refused_numbers(
    store: &AnyStore,
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    let mut refused = std::collections::HashMap::new();
    // Newest first: the first entry of a number is its latest refusal.
    for entry in store.audit_log(1_000).await? {
        if entry.action == REFUSED_ACTION {
            refused.entry(entry.subject).or_insert_with(|| {
                format!(
                    "REFUSED by the API at {} ({})",
                    callroute::format_instant(entry.at),
                    entry.detail
                )
            });
        }
    }
    Ok(refused)
}

pub async fn pool(
    config: &Config,
    rules: &RuleSet,
    command: PoolCommand,
) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    let engine_view = rests(&store).await?;
    let now = Utc::now();
    let by = actor();
    let refused = refused_numbers(&store).await?;
    match command {
        PoolCommand::Status => {
            for agent in rules.agents() {
                let attached = client_for(config, agent)?
                    .attached_numbers(&agent.model_id)
                    .await?;
                println!(
                    "agent `{}` ({}){}:",
                    agent.name,
                    agent.model_id,
                    if agent.manage_pool {
                        ", managed by `pool apply`"
                    } else {
                        ""
                    }
                );
                for row in pool::rows(rules, agent, &attached, &engine_view, now) {
                    let flag = (row.slug.is_none())
                        .then(|| refused.get(&row.number))
                        .flatten()
                        .map(|why| format!("; {why}"))
                        .unwrap_or_default();
                    println!(
                        "  {:<14} slug {:<12} sid {:<36} {}{}{flag}",
                        row.number,
                        row.slug.as_deref().unwrap_or("-"),
                        row.sid.as_deref().unwrap_or("-"),
                        row.state,
                        row.resting.map(|r| format!("; {r}")).unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PoolCommand::Plan | PoolCommand::Apply { .. } => {
            let mut plans = Vec::new();
            for agent in rules.agents().filter(|a| a.manage_pool) {
                let attached = client_for(config, agent)?
                    .attached_numbers(&agent.model_id)
                    .await?;
                let plan = pool::plan(rules, agent, &attached, &engine_view, now);
                print!("{plan}");
                for number in &plan.attach {
                    if let Some(why) = refused.get(number) {
                        println!("    {number}: {why}");
                    }
                }
                plans.push(plan);
            }
            if plans.is_empty() {
                println!("no agent has `manage_pool: true`: nothing to manage");
            }
            let pending = plans.iter().any(|p| !p.is_empty());
            let PoolCommand::Apply { yes } = command else {
                return Ok(ExitCode::from(if pending { 2 } else { 0 }));
            };
            if !pending {
                return Ok(ExitCode::SUCCESS);
            }
            if !yes && !confirm()? {
                println!("nothing changed");
                return Ok(ExitCode::from(1));
            }
            let mut clean = true;
            for plan in plans.iter().filter(|p| !p.is_empty()) {
                let agent = rules
                    .agent(&plan.agent)
                    .ok_or_else(|| anyhow!("agent `{}` is not in the rules", plan.agent))?;
                let applied = pool::apply(&client_for(config, agent)?, plan).await;
                let detail = match &applied {
                    Ok(applied) => {
                        if let Some(reading) = applied.put_reading {
                            println!(
                                "agent `{}`: the API's PUT {reading} the pool (undocumented; both are handled)",
                                plan.agent
                            );
                        }
                        for (number, why) in &applied.refused {
                            println!(
                                "agent `{}`: REFUSED {number} ({why}): the workspace may not own it; buy or import it in Synthflow, or take it out of the rules",
                                plan.agent
                            );
                            store
                                .audit(&AuditEntry {
                                    at: now,
                                    actor: by.clone(),
                                    action: REFUSED_ACTION.into(),
                                    subject: number.clone(),
                                    detail: format!("agent `{}`: {why}", plan.agent),
                                })
                                .await?;
                        }
                        if !applied.detaches_skipped.is_empty() {
                            println!(
                                "agent `{}`: kept {} attached: while a number meant to join is refused, none leaves the pool",
                                plan.agent,
                                applied.detaches_skipped.join(", ")
                            );
                        }
                        for difference in &applied.differences {
                            println!(
                                "agent `{}`: DIFFERS from the plan: {difference}",
                                plan.agent
                            );
                        }
                        clean &= applied.is_complete();
                        format!(
                            "attach {:?}, detach {:?}; refused {:?}; kept {:?}; now {:?}; differences {:?}",
                            plan.attach,
                            applied.detached,
                            applied.refused,
                            applied.detaches_skipped,
                            applied.now_attached,
                            applied.differences
                        )
                    }
                    Err(e) => {
                        clean = false;
                        eprintln!("agent `{}`: {e}", plan.agent);
                        format!("failed: {e}")
                    }
                };
                store
                    .audit(&AuditEntry {
                        at: now,
                        actor: by.clone(),
                        action: "pool apply".into(),
                        subject: format!("agent `{}`", plan.agent),
                        detail,
                    })
                    .await?;
            }
            println!(
                "{}",
                if clean {
                    "applied"
                } else {
                    "NOT applied as planned: see above; `pool plan` shows what is left"
                }
            );
            Ok(ExitCode::from(if clean { 0 } else { 1 }))
        }
        PoolCommand::Attach {
            numbers,
            agent: name,
        } => {
            let agent = agent(rules, &name)?;
            let client = client_for(config, agent)?;
            let numbers: Vec<String> = parse_numbers(&numbers)?
                .iter()
                .map(ToString::to_string)
                .collect();
            // The pool as it is plus these: right whether PUT adds or replaces.
            let mut wanted: Vec<String> = client
                .attached_numbers(&agent.model_id)
                .await?
                .into_iter()
                .map(|a| a.number)
                .collect();
            wanted.extend(numbers.iter().cloned());
            wanted.sort();
            wanted.dedup();
            let result = client.attach_numbers(&agent.model_id, &wanted).await;
            audit_one(&store, &by, "attach", agent, &numbers, &result).await?;
            result?;
            println!("attached to `{}`: {}", agent.name, numbers.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        PoolCommand::Detach {
            numbers,
            agent: name,
        } => {
            let agent = agent(rules, &name)?;
            let client = client_for(config, agent)?;
            let attached = client.attached_numbers(&agent.model_id).await?;
            let mut missing = Vec::new();
            for number in parse_numbers(&numbers)? {
                let text = number.to_string();
                let Some(slug) = attached
                    .iter()
                    .find(|a| a.number == text)
                    .and_then(|a| a.slug.clone())
                else {
                    missing.push(text);
                    continue;
                };
                let result = client.detach_number(&agent.model_id, &slug).await;
                audit_one(
                    &store,
                    &by,
                    "detach",
                    agent,
                    std::slice::from_ref(&text),
                    &result,
                )
                .await?;
                result?;
                println!("detached from `{}`: {text}", agent.name);
            }
            if missing.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "not attached to `{}` (nothing to detach): {}",
                    agent.name,
                    missing.join(", ")
                );
                Ok(ExitCode::from(1))
            }
        }
    }
}

async fn audit_one(
    store: &AnyStore,
    by: &str,
    action: &str,
    agent: &Agent,
    numbers: &[String],
    result: &Result<(), callroute::synthflow::ApiError>,
) -> anyhow::Result<()> {
    store
        .audit(&AuditEntry {
            at: Utc::now(),
            actor: by.to_string(),
            action: action.to_string(),
            subject: format!("{} on agent `{}`", numbers.join(", "), agent.name),
            detail: match result {
                Ok(()) => "ok".into(),
                Err(e) => format!("failed: {e}"),
            },
        })
        .await?;
    Ok(())
}

/// Asks on the terminal; anything but `y`/`yes` is no (and no terminal is no).
fn confirm() -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        eprintln!("not a terminal: pass --yes to apply");
        return Ok(false);
    }
    print!("apply these changes? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

pub fn rules_of(config: &Config) -> Result<RuleSet, ExitCode> {
    super::super::load_rules(Path::new(&config.rules)).map(|l| l.rules)
}
