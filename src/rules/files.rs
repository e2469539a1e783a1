//! The rules directory on disk: which entries are rules files, reading them (every odd
//! entry reported, never skipped), and the content hash the backstop compares. Everything
//! after reading is `compile`'s.

use std::path::{Path, PathBuf};

use super::compile::{Loaded, compile_sources, hash_sources};
use super::diag::{Diagnostic, Diagnostics, Severity, SourcePos};

/// The files of a rules directory that belong to the rule set, sorted by name.
pub fn rule_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        // Dotfiles cover vim swap files and emacs/`.#` lock files; `~` is a backup copy.
        let is_hidden_or_temp =
            name.starts_with('.') || name.starts_with('#') || name.ends_with('~');
        // Not only regular files: a `*.yaml` that is a directory, a FIFO or a dangling link
        // is reported by `load_dir`, never skipped in silence.
        if is_yaml && !is_hidden_or_temp {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Loads every rules file of `dir`. Fails with every error found (warnings included).
pub fn load_dir(dir: &Path) -> Result<Loaded, Diagnostics> {
    let dir_pos = SourcePos::start_of(dir);
    let fail = |message: String| {
        Diagnostics(vec![Diagnostic {
            severity: Severity::Error,
            pos: dir_pos.clone(),
            message,
        }])
    };
    let files = rule_files(dir).map_err(|e| fail(format!("cannot read rules directory: {e}")))?;
    if files.is_empty() {
        return Err(fail(
            "no rules files (*.yaml, *.yml) in this directory".into(),
        ));
    }
    let mut sources = Vec::new();
    let mut unreadable = Vec::new();
    for path in &files {
        match read_rule_file(path) {
            Ok(text) => sources.push((path.clone(), text)),
            Err(message) => unreadable.push(Diagnostic {
                severity: Severity::Error,
                pos: SourcePos::start_of(path),
                message,
            }),
        }
    }
    let source_refs: Vec<(&Path, &str)> = sources
        .iter()
        .map(|(p, t)| (p.as_path(), t.as_str()))
        .collect();
    let (rules, diagnostics) = compile_sources(&source_refs);
    let mut diagnostics = Diagnostics(diagnostics);
    diagnostics.0.extend(unreadable);
    diagnostics.sort();
    match rules {
        Some(mut rules) if !diagnostics.has_errors() => {
            let (problems, list_warnings) = read_lists(&mut rules);
            let broken = !problems.is_empty();
            diagnostics
                .0
                .extend(problems.into_iter().chain(list_warnings));
            diagnostics.sort();
            if broken {
                return Err(diagnostics);
            }
            Ok(Loaded {
                rules,
                warnings: diagnostics.0,
                files,
            })
        }
        _ => Err(diagnostics),
    }
}

/// What identifies a list file's contents without reading it: a reload that does not touch
/// a list reuses the one already read (50 million numbers take seconds to read).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ListKey {
    name: String,
    len: u64,
    modified_ns: i128,
    inode: u64,
    column: Option<String>,
    expires_column: Option<String>,
    national: crate::suppression::National,
}

/// Lists read by the last load, by path.
static LIST_CACHE: std::sync::Mutex<
    Vec<(PathBuf, ListKey, std::sync::Arc<crate::suppression::List>)>,
> = std::sync::Mutex::new(Vec::new());

fn list_key(
    name: &str,
    path: &Path,
    column: &Option<String>,
    expires_column: &Option<String>,
    national: crate::suppression::National,
) -> Option<ListKey> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some(ListKey {
        name: name.to_string(),
        len: metadata.len(),
        modified_ns: i128::from(metadata.mtime()) * 1_000_000_000
            + i128::from(metadata.mtime_nsec()),
        inode: metadata.ino(),
        column: column.clone(),
        expires_column: expires_column.clone(),
        national,
    })
}

/// Reads every suppression list file the rules name (reusing a list whose file has not
/// changed since the last load), and folds each list's version into the rules' content hash
/// (a list edited is a rules change). Every bad line is an error at the list's definition.
fn read_lists(rules: &mut super::RuleSet) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
    let mut cache = crate::lock(&LIST_CACHE);
    let mut kept = Vec::new();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut hash = rules.content_hash;
    for rule in &mut rules.compliance.lists {
        let crate::compliance::ListSource::File {
            path,
            column,
            expires_column,
            national,
            list,
        } = &mut rule.source
        else {
            continue;
        };
        let warn_invalid = |list: &crate::suppression::List, warnings: &mut Vec<Diagnostic>| {
            let (count, first) = list.invalid();
            if count == 0 {
                return;
            }
            let examples = first
                .iter()
                .take(5)
                .map(|(line, digits)| format!("{}:{line}: +{digits}", path.display()))
                .collect::<Vec<_>>()
                .join(", ");
            warnings.push(Diagnostic {
                severity: Severity::Warning,
                pos: rule.defined_at.clone(),
                message: format!(
                    "suppression list `{}`: {count} entries match no valid phone number (kept, but check the file's country and format), e.g. {examples}",
                    rule.name
                ),
            });
        };
        let mut problem = |message: String| {
            problems.push(Diagnostic {
                severity: Severity::Error,
                pos: rule.defined_at.clone(),
                message,
            })
        };
        let key = list_key(&rule.name, path, column, expires_column, *national);
        if let Some(key) = &key
            && let Some((_, _, cached)) = cache.iter().find(|(p, k, _)| p == path && k == key)
        {
            hash = xxhash_rust::xxh3::xxh3_64_with_seed(&cached.version().to_le_bytes(), hash);
            *list = cached.clone();
            warn_invalid(cached, &mut warnings);
            kept.push((path.clone(), key.clone(), cached.clone()));
            continue;
        }
        let bytes = match std::fs::read(&*path) {
            Ok(bytes) => bytes,
            Err(e) => {
                problem(format!(
                    "suppression list `{}`: cannot read {}: {e}",
                    rule.name,
                    path.display()
                ));
                continue;
            }
        };
        let parsed = match column {
            Some(column) => crate::suppression::List::parse_csv(
                &rule.name,
                path,
                &bytes,
                column,
                expires_column.as_deref(),
                *national,
            ),
            None => crate::suppression::List::parse(&rule.name, path, &bytes, *national),
        };
        match parsed {
            Ok(parsed) => {
                hash = xxhash_rust::xxh3::xxh3_64_with_seed(&parsed.version().to_le_bytes(), hash);
                warn_invalid(&parsed, &mut warnings);
                *list = std::sync::Arc::new(parsed);
                if let Some(key) = key {
                    kept.push((path.clone(), key, list.clone()));
                }
            }
            Err(e) => problem(format!(
                "suppression list `{}` has {} bad lines (nothing of it is used):\n{e}",
                rule.name, e.count
            )),
        }
    }
    rules.content_hash = hash;
    // Only the lists of this load stay cached: a list the rules dropped is freed with them.
    *cache = kept;
    (problems, warnings)
}

/// Reads one rules file; anything but a readable regular file (after following links) is
/// an error that says what the entry is. FIFOs are never opened: reading one would block.
fn read_rule_file(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::FileTypeExt;
    let metadata = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "cannot read: a symbolic link to nothing".to_string(),
        _ => format!("cannot read: {e}"),
    })?;
    let kind = metadata.file_type();
    let what = if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        Some("a device")
    };
    if let Some(what) = what {
        return Err(format!(
            "not a regular file ({what}); rules files must be files (rename it so it does not end in .yaml to keep it here)"
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))
}

/// The content hash the rules in `dir` would compile to, without compiling them: cheap
/// enough to poll as a backstop for missed file events.
pub fn content_hash(dir: &Path) -> std::io::Result<u64> {
    let files = rule_files(dir)?;
    let texts = files
        .iter()
        .map(|path| read_rule_file(path).map_err(std::io::Error::other))
        .collect::<std::io::Result<Vec<_>>>()?;
    let sources: Vec<(&Path, &str)> = files
        .iter()
        .map(PathBuf::as_path)
        .zip(texts.iter().map(String::as_str))
        .collect();
    Ok(hash_sources(&sources))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_reported(messages: &[String], expected: &str) {
        assert!(
            messages.iter().any(|m| m.contains(expected)),
            "expected a diagnostic containing {expected:?}, got:\n{}",
            messages.join("\n")
        );
    }

    const ONE_CAMPAIGN: &str = r#"
agents: { a: { model_id: m } }
numbers: { "+14155550100": {} }
campaigns: { c: { agent: a, routes: [ { numbers: all } ] } }
"#;

    #[test]
    fn editor_and_hidden_files_are_not_rules() {
        let dir = std::env::temp_dir().join(format!("callroute-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in [
            "a.yaml",
            "b.yml",
            ".hidden.yaml",
            ".a.yaml.swp",
            "a.yaml~",
            "#a.yaml#",
            "notes.txt",
        ] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        let names: Vec<String> = rule_files(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(names, ["a.yaml", "b.yml"]);
    }

    #[test]
    fn yaml_entries_that_are_not_readable_files_are_errors_not_skipped() {
        let dir = std::env::temp_dir().join(format!("callroute-odd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("dir.yaml")).unwrap();
        std::fs::write(dir.join("rules.yaml"), ONE_CAMPAIGN).unwrap();
        std::os::unix::fs::symlink("nowhere.yaml", dir.join("dangling.yaml")).unwrap();
        std::os::unix::fs::symlink("loop.yaml", dir.join("loop.yaml")).unwrap();
        let fifo = dir.join("pipe.yaml");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        let diagnostics = load_dir(&dir).expect_err("odd entries must fail the load");
        let messages: Vec<String> = diagnostics.0.iter().map(ToString::to_string).collect();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_reported(&messages, "dir.yaml:1:1: not a regular file (a directory)");
        assert_reported(
            &messages,
            "dangling.yaml:1:1: cannot read: a symbolic link to nothing",
        );
        assert_reported(&messages, "loop.yaml:1:1: cannot read:");
        if made.is_ok_and(|s| s.success()) {
            assert_reported(&messages, "pipe.yaml:1:1: not a regular file (a FIFO)");
        }
    }
}
