//! `callroute results export`: the results (the outbox) for people who pull instead of
//! receiving webhooks: every call's end and every finished lead in a time range.

use std::io::Write;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::ValueEnum;

use callroute::config::Config;
use callroute::store::Store;
use callroute::store::outbox::OutboxEvent;

use super::pool::open_store;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object a line: `type`, `timestamp`, `data` (as delivered) and the delivery.
    Jsonl,
    /// One row an event; `data` as JSON in its own column.
    Csv,
}

/// Events written in [`from`, `to`), oldest first, at most `limit`.
pub async fn export(
    config: &Config,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: u32,
    format: ExportFormat,
) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    let events = store.outbox_events(from, to, limit).await?;
    let mut out = std::io::BufWriter::new(super::Stdout);
    match format {
        ExportFormat::Jsonl => {
            for event in &events {
                serde_json::to_writer(&mut out, event)?;
                writeln!(out)?;
            }
        }
        ExportFormat::Csv => write_csv(&mut out, &events)?,
    }
    out.flush()?;
    if events.len() as u32 == limit {
        eprintln!("{limit} events shown, the --limit: there may be more (narrow --from/--to)");
    }
    Ok(ExitCode::SUCCESS)
}

fn write_csv(out: &mut impl Write, events: &[OutboxEvent]) -> anyhow::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record([
        "seq",
        "id",
        "type",
        "timestamp",
        "lead_id",
        "phone",
        "attempt",
        "caller_id",
        "status",
        "result",
        "delivered_at",
        "tries",
        "data",
    ])?;
    let field = |event: &OutboxEvent, key: &str| match &event.data[key] {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for event in events {
        writer.write_record([
            event.seq.to_string(),
            event.id.clone(),
            event.kind.clone(),
            callroute::format_instant(event.timestamp),
            field(event, "lead_id"),
            field(event, "phone"),
            field(event, "attempt"),
            field(event, "caller_id"),
            field(event, "status"),
            field(event, "result"),
            event
                .delivered_at
                .map(callroute::format_instant)
                .unwrap_or_default(),
            event.tries.to_string(),
            event.data.to_string(),
        ])?;
    }
    writer.flush()?;
    Ok(())
}
