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
