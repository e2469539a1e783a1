//! Errors and warnings about rules files, each pointing at `file:line:col`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_saphyr::{Location, Spanned};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// Where something is written: file, 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourcePos {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
}

impl SourcePos {
    pub fn new(file: &Path, location: Location) -> SourcePos {
        SourcePos {
            file: file.to_path_buf(),
            line: location.line().max(1),
            column: location.column().max(1),
        }
    }

    pub fn start_of(file: &Path) -> SourcePos {
        SourcePos {
            file: file.to_path_buf(),
            line: 1,
            column: 1,
        }
    }
}

impl fmt::Display for SourcePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub pos: SourcePos,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// `path:line:col: message` for errors, `path:line:col: warning: message` for warnings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.severity {
            Severity::Error => write!(f, "{}: {}", self.pos, self.message),
            Severity::Warning => write!(f, "{}: warning: {}", self.pos, self.message),
        }
    }
}

/// Every problem found while loading a rules directory; loading fails if any is an error.
#[derive(Debug, Default, Clone, thiserror::Error)]
#[error("{}", render(.0))]
pub struct Diagnostics(pub Vec<Diagnostic>);

fn render(items: &[Diagnostic]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl Diagnostics {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Warning)
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    pub fn sort(&mut self) {
        self.0
            .sort_by(|a, b| (&a.pos, a.severity).cmp(&(&b.pos, b.severity)));
    }
}

/// Collects diagnostics for one file at a time.
pub struct Reporter<'a> {
    pub file: &'a Path,
    pub out: &'a mut Vec<Diagnostic>,
}

impl Reporter<'_> {
    pub fn pos(&self, location: Location) -> SourcePos {
        SourcePos::new(self.file, location)
    }

    pub fn error_at(&mut self, location: Location, message: impl Into<String>) {
        let pos = self.pos(location);
        self.out.push(Diagnostic {
            severity: Severity::Error,
            pos,
            message: message.into(),
        });
    }

    pub fn error<T>(&mut self, spanned: &Spanned<T>, message: impl Into<String>) {
        self.error_at(spanned.referenced, message);
    }

    /// A duration written at `text`: longer than zero and at most a year (longer ones mean
    /// "never" and would overflow date arithmetic). Reports what is wrong and gives `None`.
    pub fn duration(&mut self, text: &Spanned<String>) -> Option<std::time::Duration> {
        const MAX: std::time::Duration = std::time::Duration::from_secs(366 * 24 * 3600);
        let value = text.value.trim();
        let problem = match humantime::parse_duration(value) {
            Ok(d) if d > MAX => {
                format!("duration `{value}` is longer than a year (366d), the longest accepted")
            }
            Ok(d) if d.is_zero() => format!("duration `{value}` must be longer than zero"),
            Ok(d) => return Some(d),
            Err(_) => format!(
                "bad duration `{}`: expected a number and a unit, e.g. 500ms, 20s, 15m, 2h, 7d",
                crate::bounded(value, 40)
            ),
        };
        self.error(text, problem);
        None
    }

    pub fn warn<T>(&mut self, spanned: &Spanned<T>, message: impl Into<String>) {
        let pos = self.pos(spanned.referenced);
        self.out.push(Diagnostic {
            severity: Severity::Warning,
            pos,
            message: message.into(),
        });
    }
}

/// A serde-saphyr parse error as `file:line:col: message`, without its terminal snippet.
pub fn from_yaml_error(file: &Path, error: &serde_saphyr::Error) -> Diagnostic {
    let pos = error
        .location()
        .map(|l| SourcePos::new(file, l))
        .unwrap_or_else(|| SourcePos::start_of(file));
    let rendered = error.to_string();
    let first_line = rendered.lines().next().unwrap_or_default();
    // Rendered as "error: line L column C: <message>"; keep only the message.
    let message = first_line
        .split_once(": ")
        .map(|(_, rest)| rest)
        .and_then(|rest| match rest.strip_prefix("line ") {
            Some(after) => after.split_once(": ").map(|(_, m)| m),
            None => Some(rest),
        })
        .unwrap_or(first_line);
    let message = match message.strip_prefix("duplicate mapping key: ") {
        Some(key) => format!(
            "duplicate key `{}`",
            key.split(", set DuplicateKeyPolicy").next().unwrap_or(key)
        ),
        None => message.to_string(),
    };
    Diagnostic {
        severity: Severity::Error,
        pos,
        message,
    }
}

/// A YAML error rewritten to say what to do, with the offending text, where serde's words
/// ("invalid u32", "expected sequence start") would leave a person guessing. `text` is the
/// file's content.
pub fn explain_yaml_error(mut diagnostic: Diagnostic, text: &str) -> Diagnostic {
    let token = token_at(text, diagnostic.pos.line, diagnostic.pos.column);
    let message = diagnostic.message.as_str();
    let better = if message.starts_with("invalid u") || message.starts_with("invalid i") {
        Some(format!(
            "expected a whole number here (e.g. 2), not `{token}`"
        ))
    } else if message == "expected string scalar" {
        Some("expected a single value here, not a list or a mapping".to_string())
    } else if message == "expected sequence start" {
        Some(format!(
            "expected a list here (`[a, b]`, or one `- item` per line), not `{token}`"
        ))
    } else if message == "expected mapping start" {
        Some(format!(
            "expected a mapping here (`key: value` lines, or `{{ key: value }}`), not `{token}`"
        ))
    } else if message.starts_with("multiple YAML documents") {
        Some(
            "a rules file holds one YAML document: remove the `---` line, or put each document in a file of its own"
                .to_string(),
        )
    } else if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        misplaced_key(text, field, diagnostic.pos.line, diagnostic.pos.column)
            .map(|hint| format!("{message}: {hint}"))
    } else {
        None
    };
    if let Some(better) = better {
        diagnostic.message = better;
    }
    diagnostic
}

/// The scalar written at `line`:`column` (1-based), cut at the first delimiter, for messages.
fn token_at(text: &str, line: u64, column: u64) -> String {
    let Some(line) = text.lines().nth((line as usize).saturating_sub(1)) else {
        return String::new();
    };
    let rest: String = line
        .chars()
        .skip((column as usize).saturating_sub(1))
        .collect();
    let rest = rest.trim();
    let token = if rest.starts_with('[') || rest.starts_with('{') {
        rest
    } else {
        rest.split([',', '}', ']', '#'])
            .next()
            .unwrap_or(rest)
            .trim()
    };
    crate::bounded(token, 40)
}

/// For a block mapping starting at `line`:`column` that lacks `field`: a `field:` written
/// elsewhere at another indentation is probably meant to be in it. Says where, and how far
/// to indent it.
fn misplaced_key(text: &str, field: &str, line: u64, column: u64) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.get((line as usize).checked_sub(1)?)?;
    let indent = start.len() - start.trim_start().len();
    if indent + 1 != column as usize {
        return None; // a flow mapping: indentation says nothing
    }
    let key = format!("{field}:");
    let (found, written) = lines.iter().enumerate().find_map(|(index, candidate)| {
        let trimmed = candidate.trim_start();
        let written = candidate.len() - trimmed.len();
        (index + 1 != line as usize
            && written != indent
            && (trimmed.starts_with(&key)
                || trimmed
                    .strip_prefix("- ")
                    .is_some_and(|t| t.starts_with(&key))))
        .then_some((index + 1, written))
    })?;
    Some(format!(
        "the `{field}:` on line {found} is indented {written} spaces; to belong to the mapping that starts on line {line}, indent it {indent}"
    ))
}

#[cfg(test)]
mod explain_tests {
    use super::*;

    fn at(line: u64, column: u64, message: &str) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            pos: SourcePos {
                file: "r.yaml".into(),
                line,
                column,
            },
            message: message.into(),
        }
    }

    #[test]
    fn serde_words_become_instructions() {
        let text = "limits:\n  default:\n    per_minute: -2  # two a minute\n";
        let d = explain_yaml_error(at(3, 17, "invalid u32"), text);
        assert_eq!(d.message, "expected a whole number here (e.g. 2), not `-2`");
        let text = "calling_hours:\n  default: { days: mon, start: '08:00' }\n";
        let d = explain_yaml_error(at(2, 20, "expected sequence start"), text);
        assert!(
            d.message.starts_with("expected a list here"),
            "{}",
            d.message
        );
        assert!(d.message.ends_with("not `mon`"), "{}", d.message);
        let d = explain_yaml_error(
            at(
                3,
                1,
                "multiple YAML documents detected; use from_str_multiple",
            ),
            "a: 1\n---\nb: 2\n",
        );
        assert!(!d.message.contains("from_str_multiple"), "{}", d.message);
    }

    #[test]
    fn a_missing_field_points_at_the_misindented_key() {
        let text = "campaigns:\n  winter:\n    agent: acme\n  routes:\n      - numbers: all\n";
        let d = explain_yaml_error(at(3, 5, "missing field `routes`"), text);
        assert_eq!(
            d.message,
            "missing field `routes`: the `routes:` on line 4 is indented 2 spaces; to belong to the mapping that starts on line 3, indent it 4"
        );
    }
}
