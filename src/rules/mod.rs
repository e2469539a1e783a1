//! The rules language: raw YAML types, validation, and the compiled `RuleSet`.

mod cadence;
mod compile;
mod compliance;
pub mod diag;
mod files;
mod model;
mod raw;

pub use compile::{Loaded, compile_sources, diff};
pub use diag::{Diagnostic, Diagnostics, Severity, SourcePos};
pub use files::{content_hash, load_dir, rule_files};
pub use model::*;
