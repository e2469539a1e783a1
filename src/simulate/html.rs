//! `simulate --out report.html`: one self-contained page (inline SVG charts drawn here,
//! inline CSS, a few lines of script to sort tables; nothing fetched) that opens from disk.
//! Hand-built SVG: five simple chart shapes did not justify a plotting crate.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::report::{NumberReport, Report, percent};

const PALETTE: [&str; 12] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#1f77b4", "#8c564b",
];
const TIERS: [&str; 6] = ["sticky", "area_code", "state", "timezone", "country", "any"];
/// Numbers drawn one by one in the stacked chart; the rest are one band.
const STACKED: usize = 10;
/// Rows of the heat map (the busiest numbers).
const HEAT_ROWS: usize = 60;
const WIDTH: f64 = 960.0;
const LEFT: f64 = 120.0;

pub fn render(report: &Report) -> String {
    let mut page = String::with_capacity(64 * 1024);
    let _ = write!(
        page,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>callroute simulate: {leads} leads from {start}</title>
<style>{STYLE}</style></head><body>
<h1>callroute simulate</h1>
<p class="sub">{leads} leads, {start} to {end} (UTC), {decisions} decisions</p>
<div class="cards">"#,
        leads = report.leads,
        start = report.start.format("%Y-%m-%d %H:%M"),
        end = report.end.format("%Y-%m-%d %H:%M"),
        decisions = report.decisions,
    );
    let waiting = report.waiting_total();
    for (label, value) in [
        ("called", report.called.to_string()),
        ("answered", report.answered.to_string()),
        (
            "queue",
            match report.drained_at {
                Some(t) => format!("drained {}", t.format("%m-%d %H:%M")),
                None => format!("{waiting} waiting ({})", percent(waiting, report.leads)),
            },
        ),
        ("held", report.held.values().sum::<usize>().to_string()),
        (
            "rejected",
            report.rejected.values().sum::<usize>().to_string(),
        ),
    ] {
        let _ = write!(
            page,
            r#"<div class="card" id="card-{label}"><b>{}</b><span>{label}</span></div>"#,
            escape(&value)
        );
    }
    page.push_str("</div>");
    if let Some(advice) = report.advice.as_deref().filter(|a| !a.is_empty()) {
        page.push_str(r#"<h2>Capacity advice</h2><ul id="advice">"#);
        for advice in advice {
            let _ = write!(page, "<li>{}</li>", escape(&advice.to_string()));
        }
        page.push_str("</ul>");
    }
    section(
        &mut page,
        "Calls per hour, by caller ID",
        &calls_per_hour(report),
    );
    section(&mut page, "Queue depth", &queue_depth(report));
    section(
        &mut page,
        "Limit utilisation per number and hour (calls against its hourly capacity; ringed: a window was full)",
        &heat_map(report),
    );
    section(
        &mut page,
        "Local presence: tier mix per lead state",
        &tier_mix(report),
    );
    section(
        &mut page,
        "Deferral reasons (decisions)",
        &bars(&report.deferrals),
    );
    numbers_table(&mut page, report);
    states_table(&mut page, report);
    for (title, counts) in [
        ("Still waiting at the end", &report.waiting),
        ("Held", &report.held),
        ("Rejected", &report.rejected),
    ] {
        reasons_table(&mut page, title, counts);
    }
    let _ = writeln!(page, "<script>{SORT_SCRIPT}</script></body></html>");
    page
}

fn section(page: &mut String, title: &str, svg: &str) {
    let _ = write!(page, "<h2>{}</h2>{svg}", escape(title));
}

/// Hours drawn: all of them, or up to the hour after the queue drained.
fn hours(report: &Report) -> usize {
    let all = report.queue_depth.len().max(1);
    match report.drained_at {
        Some(t) => (((t - report.first_hour).num_hours() + 2) as usize).clamp(1, all),
        None => all,
    }
}

fn hour_label(report: &Report, hour: usize) -> DateTime<Utc> {
    report.first_hour + chrono::Duration::hours(hour as i64)
}

/// The x axis: a tick and a label at every UTC midnight (or every 6 h on short runs).
fn x_axis(svg: &mut String, report: &Report, top: f64, height: f64) {
    let hours = hours(report);
    let step = if hours > 48 { 24 } else { 6 };
    let width = (WIDTH - LEFT - 10.0) / hours as f64;
    for hour in 0..=hours {
        let at = hour_label(report, hour);
        if !(at.format("%H").to_string().parse::<usize>().unwrap_or(0)).is_multiple_of(step) {
            continue;
        }
        let x = LEFT + hour as f64 * width;
        if x > WIDTH - 40.0 {
            break;
        }
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{bottom}" stroke="#ddd"/><text x="{x:.1}" y="{label}" class="tick" text-anchor="middle">{}</text>"##,
            at.format(if step == 24 { "%m-%d" } else { "%m-%d %H:00" }),
            bottom = top + height,
            label = top + height + 14.0,
        );
    }
}

fn calls_per_hour(report: &Report) -> String {
    let hours = hours(report);
    let mut numbers: Vec<&NumberReport> = report.numbers.iter().filter(|n| n.calls > 0).collect();
    numbers.sort_by_key(|n| (std::cmp::Reverse(n.calls), n.number.clone()));
    let (shown, rest) = numbers.split_at(numbers.len().min(STACKED));
    let mut bands: Vec<(String, Vec<u32>)> = shown
        .iter()
        .map(|n| (n.number.clone(), n.calls_per_hour.clone()))
        .collect();
    if !rest.is_empty() {
        let mut others = vec![0; hours];
        for number in rest {
            for (sum, calls) in others.iter_mut().zip(&number.calls_per_hour) {
                *sum += calls;
            }
        }
        bands.push((format!("{} others", rest.len()), others));
    }
    let peak = (0..hours)
        .map(|h| {
            bands
                .iter()
                .map(|(_, c)| c.get(h).copied().unwrap_or(0))
                .sum::<u32>()
        })
        .max()
        .unwrap_or(0)
        .max(1);
    let (top, height) = (10.0, 200.0);
    let width = (WIDTH - LEFT - 10.0) / hours as f64;
    let mut svg = svg_open(
        "calls-per-hour",
        top + height + 30.0 + 18.0 * bands.len().div_ceil(4) as f64,
    );
    y_axis(&mut svg, top, height, peak, "calls");
    x_axis(&mut svg, report, top, height);
    for hour in 0..hours {
        let mut y = top + height;
        for (index, (number, calls)) in bands.iter().enumerate() {
            let calls = calls.get(hour).copied().unwrap_or(0);
            if calls == 0 {
                continue;
            }
            let h = height * f64::from(calls) / f64::from(peak);
            y -= h;
            let _ = write!(
                svg,
                r#"<rect x="{:.2}" y="{y:.2}" width="{:.2}" height="{h:.2}" fill="{}"><title>{} {}: {calls} calls</title></rect>"#,
                LEFT + hour as f64 * width,
                (width - 0.5).max(0.5),
                PALETTE[index % PALETTE.len()],
                hour_label(report, hour).format("%m-%d %H:00"),
                escape(number),
            );
        }
    }
    legend(
        &mut svg,
        bands.iter().map(|(n, _)| n.as_str()),
        top + height + 34.0,
    );
    svg.push_str("</svg>");
    svg
}

fn queue_depth(report: &Report) -> String {
    let hours = hours(report);
    let peak = report.queue_depth.iter().max().copied().unwrap_or(0).max(1);
    let (top, height) = (10.0, 160.0);
    let width = (WIDTH - LEFT - 10.0) / hours as f64;
    let mut svg = svg_open("queue-depth", top + height + 30.0);
    y_axis(&mut svg, top, height, peak as u32, "leads");
    x_axis(&mut svg, report, top, height);
    let points: Vec<String> = report
        .queue_depth
        .iter()
        .take(hours)
        .enumerate()
        .map(|(hour, depth)| {
            format!(
                "{:.1},{:.1}",
                LEFT + (hour as f64 + 0.5) * width,
                top + height - height * *depth as f64 / peak as f64
            )
        })
        .collect();
    let _ = write!(
        svg,
        r##"<polyline points="{}" fill="none" stroke="#4e79a7" stroke-width="2"/>"##,
        points.join(" ")
    );
    svg.push_str("</svg>");
    svg
}

fn heat_map(report: &Report) -> String {
    let hours = hours(report);
    let mut numbers: Vec<&NumberReport> = report.numbers.iter().collect();
    numbers.sort_by_key(|n| (std::cmp::Reverse(n.calls), n.number.clone()));
    numbers.truncate(HEAT_ROWS);
    let row = 14.0;
    let top = 10.0;
    let height = row * numbers.len() as f64;
    let width = (WIDTH - LEFT - 10.0) / hours as f64;
    let mut svg = svg_open("heat-map", top + height + 30.0);
    x_axis(&mut svg, report, top, height);
    for (index, number) in numbers.iter().enumerate() {
        let y = top + index as f64 * row;
        row_label(&mut svg, y + row - 3.0, &number.number);
        let scale = number
            .hourly_capacity
            .unwrap_or_else(|| number.calls_per_hour.iter().max().copied().unwrap_or(0))
            .max(1);
        for hour in 0..hours {
            let calls = number.calls_per_hour.get(hour).copied().unwrap_or(0);
            let at = hour_label(report, hour);
            let full: Vec<&str> = number
                .binding
                .iter()
                .filter(|s| s.from <= at && at < s.to)
                .map(|s| s.window.as_str())
                .collect();
            if calls == 0 && full.is_empty() {
                continue;
            }
            let share = (f64::from(calls) / f64::from(scale)).min(1.0);
            let full_text: Vec<String> = full
                .iter()
                .map(|w| match number.limits.value(w) {
                    Some(v) => format!("{w}: {v}"),
                    None => w.to_string(),
                })
                .collect();
            let _ = write!(
                svg,
                r##"<rect x="{:.2}" y="{y:.1}" width="{:.2}" height="{:.1}" fill="rgba(200,30,30,{:.2})"{}><title>{} {}: {calls} calls of {scale}/h{}</title></rect>"##,
                LEFT + hour as f64 * width,
                width.max(0.5),
                row - 1.0,
                0.08 + 0.92 * share,
                if full.is_empty() {
                    ""
                } else {
                    r##" stroke="#222" stroke-width="1" class="full""##
                },
                escape(&number.number),
                at.format("%m-%d %H:00"),
                if full_text.is_empty() {
                    String::new()
                } else {
                    format!("; full: {}", full_text.join(", "))
                },
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn tier_mix(report: &Report) -> String {
    let mut states: Vec<_> = report.states.iter().collect();
    states.sort_by_key(|s| (std::cmp::Reverse(s.calls), s.state.clone()));
    let row = 18.0;
    let top = 10.0;
    let height = row * states.len() as f64;
    let mut svg = svg_open("tier-mix", top + height + 40.0);
    let span = WIDTH - LEFT - 10.0;
    for (index, state) in states.iter().enumerate() {
        let y = top + index as f64 * row;
        row_label(
            &mut svg,
            y + row - 5.0,
            &format!("{} ({})", state.state, state.calls),
        );
        let mut x = LEFT;
        for (tier_index, tier) in TIERS.iter().enumerate() {
            let n = state.tiers.get(*tier).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let w = span * n as f64 / state.calls.max(1) as f64;
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="{}"><title>{}: {tier} {n} ({})</title></rect>"#,
                row - 3.0,
                PALETTE[tier_index],
                escape(&state.state),
                percent(n, state.calls),
            );
            x += w;
        }
    }
    legend(&mut svg, TIERS.iter().copied(), top + height + 14.0);
    svg.push_str("</svg>");
    svg
}

fn bars(counts: &BTreeMap<String, usize>) -> String {
    if counts.is_empty() {
        return "<p>none</p>".to_string();
    }
    let peak = counts.values().max().copied().unwrap_or(1).max(1);
    let row = 20.0;
    let label_width = 220.0;
    let mut svg = svg_open("deferrals", 10.0 + row * counts.len() as f64 + 10.0);
    for (index, (reason, n)) in counts.iter().enumerate() {
        let y = 10.0 + index as f64 * row;
        let w = (WIDTH - label_width - 80.0) * *n as f64 / peak as f64;
        let _ = write!(
            svg,
            r##"<text x="{}" y="{:.1}" class="label" text-anchor="end">{}</text><rect x="{label_width}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="#f28e2b"/><text x="{:.1}" y="{:.1}" class="label">{n}</text>"##,
            label_width - 6.0,
            y + row - 6.0,
            escape(reason),
            row - 4.0,
            label_width + w + 4.0,
            y + row - 6.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A row's name, right-aligned against the plot's left edge.
fn row_label(svg: &mut String, baseline: f64, text: &str) {
    let _ = write!(
        svg,
        r#"<text x="{}" y="{baseline:.1}" class="label" text-anchor="end">{}</text>"#,
        LEFT - 6.0,
        escape(text)
    );
}

fn svg_open(id: &str, height: f64) -> String {
    format!(
        r#"<svg id="{id}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0}" width="{WIDTH}" height="{height:.0}">"#
    )
}

fn y_axis(svg: &mut String, top: f64, height: f64, peak: u32, unit: &str) {
    for step in 0..=4 {
        let value = f64::from(peak) * f64::from(step) / 4.0;
        let y = top + height - height * f64::from(step) / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" class="tick" text-anchor="end">{value:.0}</text>"##,
            WIDTH - 10.0,
            LEFT - 6.0,
            y + 4.0,
        );
    }
    let _ = write!(
        svg,
        r#"<text x="12" y="{:.1}" class="tick" transform="rotate(-90 12 {:.1})" text-anchor="middle">{unit}</text>"#,
        top + height / 2.0,
        top + height / 2.0
    );
}

fn legend<'a>(svg: &mut String, names: impl Iterator<Item = &'a str>, y: f64) {
    for (index, name) in names.enumerate() {
        let x = LEFT + (index % 4) as f64 * 200.0;
        let y = y + (index / 4) as f64 * 18.0;
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{}" y="{y:.1}" class="label">{}</text>"#,
            y - 9.0,
            PALETTE[index % PALETTE.len()],
            x + 14.0,
            escape(name)
        );
    }
}

fn numbers_table(page: &mut String, report: &Report) {
    page.push_str(
        r#"<h2>Numbers</h2><table class="sortable" id="numbers"><thead><tr><th>number</th><th>calls</th><th>busiest hour</th><th>hourly capacity</th><th>limits</th><th>times found full</th><th>full windows</th></tr></thead><tbody>"#,
    );
    for number in &report.numbers {
        let limits: Vec<String> = number
            .limits
            .written()
            .into_iter()
            .map(|(w, v)| format!("{w}: {v}"))
            .collect();
        let full: usize = number.full_windows.values().sum();
        let windows: Vec<String> = number
            .full_windows
            .iter()
            .map(|(w, n)| format!("{w} ×{n}"))
            .collect();
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{full}</td><td>{}</td></tr>",
            escape(&number.number),
            number.calls,
            number.calls_per_hour.iter().max().copied().unwrap_or(0),
            number
                .hourly_capacity
                .map_or_else(|| "-".to_string(), |c| c.to_string()),
            escape(&limits.join(", ")),
            escape(&windows.join(", ")),
        );
    }
    page.push_str("</tbody></table>");
}

fn states_table(page: &mut String, report: &Report) {
    page.push_str(
        r#"<h2>Lead states</h2><table class="sortable" id="states"><thead><tr><th>state</th><th>calls</th><th>area code</th><th>state</th><th>non-local</th><th>non-local hours</th><th>why non-local</th></tr></thead><tbody>"#,
    );
    for state in &report.states {
        let share = |tier: &str| percent(state.tiers.get(tier).copied().unwrap_or(0), state.calls);
        let _ = write!(
            page,
            r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td data-v="{:.4}">{}</td><td>{} {}</td><td>{}</td></tr>"#,
            escape(&state.state),
            state.calls,
            share("area_code"),
            share("state"),
            state.non_local_share(),
            percent(state.non_local, state.calls),
            escape(&state.non_local_hours),
            if state.non_local_hours.is_empty() {
                String::new()
            } else {
                escape(&state.zone)
            },
            escape(state.cause.as_deref().unwrap_or("")),
        );
    }
    page.push_str("</tbody></table>");
}

fn reasons_table(page: &mut String, title: &str, counts: &BTreeMap<String, usize>) {
    if counts.is_empty() {
        return;
    }
    let _ = write!(
        page,
        r#"<h2>{}</h2><table class="sortable"><thead><tr><th>reason</th><th>leads</th></tr></thead><tbody>"#,
        escape(title)
    );
    for (reason, n) in counts {
        let _ = write!(page, "<tr><td>{}</td><td>{n}</td></tr>", escape(reason));
    }
    page.push_str("</tbody></table>");
}

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}
h1{margin:0}h2{font-size:16px;margin-top:28px}.sub{color:#666}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px}
.card b{display:block;font-size:20px}.card span{color:#666}
svg text.tick,svg text.label{font-size:11px;fill:#444}
table{border-collapse:collapse;margin-top:6px}th,td{border-bottom:1px solid #eee;padding:3px 8px;text-align:left}
th{cursor:pointer;background:#f6f6f6;user-select:none}th[data-dir=asc]::after{content:' ▲'}th[data-dir=desc]::after{content:' ▼'}";

/// Click a header to sort by its column (numbers as numbers), again to reverse.
pub const SORT_SCRIPT: &str = "document.querySelectorAll('table.sortable th').forEach(th=>th.addEventListener('click',()=>{
const table=th.closest('table'),body=table.tBodies[0],col=th.cellIndex,asc=th.dataset.dir!=='asc';
table.querySelectorAll('th').forEach(h=>delete h.dataset.dir);th.dataset.dir=asc?'asc':'desc';
const key=r=>{const c=r.cells[col],v=c.dataset.v??c.textContent,n=parseFloat(v);return isNaN(n)?v:n};
[...body.rows].sort((a,b)=>{const x=key(a),y=key(b);return(x<y?-1:x>y?1:0)*(asc?1:-1)}).forEach(r=>body.appendChild(r));}));";
