//! The rules language: raw YAML types, validation, and the compiled `RuleSet`.

mod compile;
pub mod diag;
mod model;
mod raw;

pub use compile::{Loaded, compile_sources, content_hash, diff, load_dir, rule_files};
pub use diag::{Diagnostic, Diagnostics, Severity, SourcePos};
pub use model::*;
