//! Turning files of leads (CSV with a header row, JSON Lines, or a JSON array) into checked
//! leads. A bad row is reported with its line and reason and does not stop the others.

use std::io::{BufRead, Read};

use serde_json::Value;

use crate::lead::{Lead, RawLead};

/// The good leads (with their ids) and the bad rows of one input.
#[derive(Debug, Default)]
pub struct Intake {
    pub leads: Vec<(String, RawLead)>,
    pub rejected: Vec<RejectedRow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    pub line: usize,
    pub reason: String,
}

impl Intake {
    fn take(&mut self, line: usize, raw: Result<RawLead, String>) {
        match raw.and_then(|raw| {
            Lead::from_raw(raw.clone())
                .map(|lead| (lead.key, raw.normalised()))
                .map_err(|e| e.to_string())
        }) {
            Ok(lead) => self.leads.push(lead),
            Err(reason) => self.rejected.push(RejectedRow { line, reason }),
        }
    }
}

/// A problem with the input as a whole (unreadable, or a CSV header we cannot map).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct IntakeError(pub String);

/// Reads CSV when the first non-blank character is not `{` or `[`, JSON otherwise: the whole
/// input at once.
pub fn parse(input: impl Read) -> Result<Intake, IntakeError> {
    let mut all = Intake::default();
    for batch in batches(std::io::BufReader::new(input), usize::MAX)? {
        all.leads.extend(batch.leads);
        all.rejected.extend(batch.rejected);
    }
    Ok(all)
}

/// The input in batches of at most `rows` rows (good and bad), read as they are needed:
/// memory follows the batch, not the file. CSV and JSON Lines stream; a JSON array is read
/// whole (it is one document).
pub fn batches<R: BufRead>(mut input: R, rows: usize) -> Result<Batches<R>, IntakeError> {
    let cannot_read = |e: std::io::Error| IntakeError(format!("cannot read: {e}"));
    // The first non-blank byte says what the input is.
    let first = loop {
        let buffer = input.fill_buf().map_err(cannot_read)?;
        if buffer.is_empty() {
            break None;
        }
        match buffer.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(at) => break Some(buffer[at]),
            None => {
                let len = buffer.len();
                input.consume(len);
            }
        }
    };
    let source = match first {
        None => Source::Done,
        Some(b'[') => {
            let mut text = String::new();
            input.read_to_string(&mut text).map_err(cannot_read)?;
            Source::Whole(Some(parse_json(&text)))
        }
        Some(b'{') => Source::Lines {
            input: LineBounded::new(input),
            line: 0,
        },
        Some(_) => {
            let mut reader = csv::ReaderBuilder::new()
                .flexible(false)
                .from_reader(LineBounded::new(input));
            let headers = reader
                .headers()
                .map_err(|e| IntakeError(format!("line 1: bad CSV header: {e}")))?
                .clone();
            let columns = columns_of(&headers)?;
            Source::Csv {
                records: reader.into_records(),
                columns,
            }
        }
    };
    Ok(Batches {
        source,
        rows: rows.max(1),
    })
}

pub struct Batches<R: BufRead> {
    source: Source<R>,
    rows: usize,
}

enum Source<R: BufRead> {
    Csv {
        records: csv::StringRecordsIntoIter<LineBounded<R>>,
        columns: Vec<Column>,
    },
    Lines {
        input: LineBounded<R>,
        line: usize,
    },
    Whole(Option<Intake>),
    Done,
}

impl<R: BufRead> Iterator for Batches<R> {
    type Item = Intake;

    fn next(&mut self) -> Option<Intake> {
        let mut batch = Intake::default();
        let full = |batch: &Intake| batch.leads.len() + batch.rejected.len() >= self.rows;
        // The input failed (or a line had no end): nothing after it is read.
        let mut unreadable = false;
        match &mut self.source {
            Source::Done => return None,
            Source::Whole(whole) => return whole.take(),
            Source::Lines { input, line } => {
                let mut text = String::new();
                while !full(&batch) {
                    text.clear();
                    match input.read_line(&mut text) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => {
                            batch.rejected.push(RejectedRow {
                                line: *line + 1,
                                reason: format!("cannot read: {e}"),
                            });
                            unreadable = true;
                            break;
                        }
                    }
                    *line += 1;
                    if text.trim().is_empty() {
                        continue;
                    }
                    batch.take(
                        *line,
                        serde_json::from_str::<RawLead>(&text).map_err(|e| e.to_string()),
                    );
                }
            }
            Source::Csv { records, columns } => {
                while !full(&batch) {
                    match records.next() {
                        None => break,
                        Some(Err(e)) if e.is_io_error() => {
                            batch.rejected.push(RejectedRow {
                                line: records.reader().get_ref().line(),
                                reason: format!("cannot read: {e}"),
                            });
                            unreadable = true;
                            break;
                        }
                        Some(Err(e)) => {
                            let line = e.position().map_or(0, |p| p.line() as usize);
                            batch.rejected.push(RejectedRow {
                                line,
                                reason: format!("bad CSV row: {e}"),
                            });
                        }
                        Some(Ok(record)) => {
                            let line = record.position().map_or(0, |p| p.line() as usize);
                            batch.take(line, Ok(raw_from_record(columns, &record)));
                        }
                    }
                }
            }
        }
        if batch.leads.is_empty() && batch.rejected.is_empty() {
            self.source = Source::Done;
            return None;
        }
        if unreadable {
            self.source = Source::Done;
        }
        Some(batch)
    }
}

/// The longest line a CSV or JSON Lines input may have: a lead is a few hundred bytes, and
/// a line without an end must not be read into memory whole.
pub const MAX_LINE: usize = 1 << 20;

/// A reader that fails once a line grows past `MAX_LINE` bytes.
pub struct LineBounded<R> {
    inner: R,
    line: usize,
    since_newline: usize,
}

impl<R: BufRead> LineBounded<R> {
    fn new(inner: R) -> LineBounded<R> {
        LineBounded {
            inner,
            line: 1,
            since_newline: 0,
        }
    }

    /// The line being read (1-based).
    fn line(&self) -> usize {
        self.line
    }
}

impl<R: BufRead> BufRead for LineBounded<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.since_newline > MAX_LINE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "line {} is longer than {MAX_LINE} bytes; nothing after it is read",
                    self.line
                ),
            ));
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        if let Ok(buffer) = self.inner.fill_buf() {
            for &byte in &buffer[..amount.min(buffer.len())] {
                if byte == b'\n' {
                    self.line += 1;
                    self.since_newline = 0;
                } else {
                    self.since_newline += 1;
                }
            }
        }
        self.inner.consume(amount);
    }
}

impl<R: BufRead> Read for LineBounded<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// JSON Lines (one object a line) or one JSON array of objects.
pub fn parse_json(text: &str) -> Intake {
    let mut intake = Intake::default();
    if text.trim_start().starts_with('[') {
        match serde_json::from_str::<Vec<Value>>(text) {
            Ok(items) => {
                for (index, item) in items.into_iter().enumerate() {
                    intake.take(
                        index + 1,
                        serde_json::from_value(item).map_err(|e| e.to_string()),
                    );
                }
            }
            Err(e) => intake.rejected.push(RejectedRow {
                line: e.line(),
                reason: format!("not a JSON array of leads: {e}"),
            }),
        }
        return intake;
    }
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        intake.take(
            index + 1,
            serde_json::from_str::<RawLead>(line).map_err(|e| e.to_string()),
        );
    }
    intake
}

/// A CSV column and the lead field it fills.
enum Column {
    Field(&'static str),
    Variable(String),
    Label(String),
}

const FIELDS: &[&str] = &[
    "id",
    "phone",
    "name",
    "campaign",
    "brand",
    "state",
    "country",
    "timezone",
    "email",
    "not_before",
    "consent_at",
    "consent_source",
];

fn columns_of(headers: &csv::StringRecord) -> Result<Vec<Column>, IntakeError> {
    let mut columns = Vec::new();
    for header in headers.iter() {
        let header = header.trim();
        let column = if let Some(name) = header
            .strip_prefix("var.")
            .or_else(|| header.strip_prefix("variables."))
        {
            Column::Variable(name.to_string())
        } else if let Some(name) = header
            .strip_prefix("label.")
            .or_else(|| header.strip_prefix("labels."))
        {
            Column::Label(name.to_string())
        } else if let Some(field) = FIELDS.iter().find(|f| **f == header) {
            Column::Field(field)
        } else {
            return Err(IntakeError(format!(
                "line 1: unknown column `{header}` (expected {}, var.NAME or label.NAME)",
                FIELDS.join(", ")
            )));
        };
        columns.push(column);
    }
    Ok(columns)
}

fn raw_from_record(columns: &[Column], record: &csv::StringRecord) -> RawLead {
    let mut raw = RawLead::default();
    for (column, value) in columns.iter().zip(record.iter()) {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let slot = match column {
            Column::Field("id") => &mut raw.id,
            Column::Field("phone") => &mut raw.phone,
            Column::Field("name") => &mut raw.name,
            Column::Field("campaign") => &mut raw.campaign,
            Column::Field("brand") => &mut raw.brand,
            Column::Field("state") => &mut raw.state,
            Column::Field("country") => &mut raw.country,
            Column::Field("timezone") => &mut raw.timezone,
            Column::Field("email") => &mut raw.email,
            Column::Field("consent_at") => &mut raw.consent_at,
            Column::Field("consent_source") => &mut raw.consent_source,
            Column::Field(_) => &mut raw.not_before,
            Column::Variable(name) => {
                raw.variables.insert(name.clone(), value.to_string());
                continue;
            }
            Column::Label(name) => {
                raw.labels.insert(name.clone(), value.to_string());
                continue;
            }
        };
        *slot = Some(value.to_string());
    }
    raw
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line that never ends (a 300 MB CSV line, say) is refused once it passes
    /// `MAX_LINE`, with its line number; the rows before it are kept, nothing after it is
    /// read. The input here is endless: without the bound the test would never end.
    #[test]
    fn a_line_without_an_end_is_refused_not_read_whole() {
        for start in [
            "id,phone,name,campaign\nL1,+14155550123,Ana,spring\n",
            "{\"id\":\"L1\",\"phone\":\"+14155550123\",\"name\":\"Ana\",\"campaign\":\"spring\"}\n",
        ] {
            let endless = std::io::BufReader::new(start.as_bytes().chain(std::io::repeat(b'x')));
            let mut leads = 0;
            let mut rejected = Vec::new();
            for batch in batches(endless, 100).unwrap() {
                leads += batch.leads.len();
                rejected.extend(batch.rejected);
            }
            assert_eq!(leads, 1, "{start}");
            assert_eq!(rejected.len(), 1, "{rejected:?}");
            assert!(
                rejected[0].reason.contains("longer than 1048576 bytes"),
                "{rejected:?}"
            );
            let line = if start.starts_with('{') { 2 } else { 3 };
            assert_eq!(rejected[0].line, line, "{rejected:?}");
        }
    }

    #[test]
    fn csv_rows_with_variables_and_labels_and_bad_rows_reported_by_line() {
        let csv = "phone,name,campaign,var.Company,label.segment\n+14155550123,Ana,spring,Acme,vip\n555-0100,Bo,spring,,\n+12125550123,,spring,,\n";
        let intake = parse(csv.as_bytes()).unwrap();
        assert_eq!(intake.leads.len(), 1);
        let (id, raw) = &intake.leads[0];
        assert_eq!(id, "spring:+14155550123");
        assert_eq!(raw.phone.as_deref(), Some("+14155550123"));
        assert_eq!(raw.variables["Company"], "Acme");
        assert_eq!(raw.labels["segment"], "vip");
        assert_eq!(intake.rejected.len(), 2);
        assert_eq!(intake.rejected[0].line, 3);
        assert!(intake.rejected[0].reason.contains("E.164"));
        assert_eq!(intake.rejected[1].line, 4);
        assert!(intake.rejected[1].reason.contains("`name` is required"));
    }

    #[test]
    fn unknown_csv_column_is_a_header_error() {
        let err = parse("phone,name,campagin\n".as_bytes()).unwrap_err();
        assert!(err.to_string().contains("unknown column `campagin`"));
    }

    #[test]
    fn json_lines_and_arrays() {
        let lines = "{\"phone\":\"+14155550123\",\"name\":\"A\",\"campaign\":\"c\"}\n\n{\"phone\":\"+1\",\"name\":\"B\",\"campaign\":\"c\"}\nnot json\n";
        let intake = parse(lines.as_bytes()).unwrap();
        assert_eq!(intake.leads.len(), 1);
        assert_eq!(
            intake.rejected.iter().map(|r| r.line).collect::<Vec<_>>(),
            [3, 4]
        );
        let array = "[{\"phone\":\"+14155550123\",\"name\":\"A\",\"campaign\":\"c\",\"id\":\"x\"}]";
        assert_eq!(parse(array.as_bytes()).unwrap().leads[0].0, "x");
    }

    #[test]
    fn what_is_stored_is_the_lead_as_understood() {
        let line =
            r#"{"phone":" +14155550123 ","name":" Ana ","campaign":"c ","state":"ca","email":""}"#;
        let intake = parse(line.as_bytes()).unwrap();
        let (id, raw) = &intake.leads[0];
        assert_eq!(id, "c:+14155550123");
        assert_eq!(
            raw.phone.as_deref(),
            Some("+14155550123"),
            "the number the call and the lookup use"
        );
        assert_eq!(raw.name.as_deref(), Some("Ana"));
        assert_eq!(raw.campaign.as_deref(), Some("c"));
        assert_eq!(raw.state.as_deref(), Some("CA"));
        assert_eq!(raw.email, None);
    }

    #[test]
    fn batches_stream_with_true_line_numbers_in_every_format() {
        let mut csv = String::from("phone,name,campaign\n");
        for i in 0..7 {
            if i == 4 {
                csv.push_str("bad,Bo,c\n"); // line 6
            } else {
                csv.push_str(&format!("+1415555{:04},A,c\n", 100 + i));
            }
        }
        let got: Vec<Intake> = batches(csv.as_bytes(), 3).unwrap().collect();
        assert_eq!(
            got.iter()
                .map(|b| b.leads.len() + b.rejected.len())
                .collect::<Vec<_>>(),
            [3, 3, 1]
        );
        assert_eq!(got[1].rejected[0].line, 6);

        let lines = "\n  {\"phone\":\"+14155550100\",\"name\":\"A\",\"campaign\":\"c\"}\n\n{\"phone\":\"x\"}\n{\"phone\":\"+14155550101\",\"name\":\"B\",\"campaign\":\"c\"}\n";
        let got: Vec<Intake> = batches(lines.as_bytes(), 2).unwrap().collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].rejected[0].line, 4);
        assert_eq!(got[1].leads.len(), 1);

        let array = " [{\"phone\":\"+14155550100\",\"name\":\"A\",\"campaign\":\"c\"}]";
        let got: Vec<Intake> = batches(array.as_bytes(), 2).unwrap().collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].leads.len(), 1);

        assert_eq!(batches("   \n".as_bytes(), 2).unwrap().count(), 0);
    }
}
