//! Turning files of leads (CSV with a header row, JSON Lines, or a JSON array) into checked
//! leads. A bad row is reported with its line and reason and does not stop the others.

use std::io::Read;

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

/// Reads CSV when the first non-blank character is not `{` or `[`, JSON otherwise.
pub fn parse(mut input: impl Read) -> Result<Intake, IntakeError> {
    let mut text = String::new();
    input
        .read_to_string(&mut text)
        .map_err(|e| IntakeError(format!("cannot read: {e}")))?;
    match text.trim_start().chars().next() {
        Some('{') | Some('[') => Ok(parse_json(&text)),
        Some(_) => parse_csv(&text),
        None => Ok(Intake::default()),
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
];

pub fn parse_csv(text: &str) -> Result<Intake, IntakeError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| IntakeError(format!("line 1: bad CSV header: {e}")))?
        .clone();
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
    let mut intake = Intake::default();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                intake.rejected.push(RejectedRow {
                    line,
                    reason: format!("bad CSV row: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
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
        intake.take(line, Ok(raw));
    }
    Ok(intake)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
