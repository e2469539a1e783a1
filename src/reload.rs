//! What triggers a reload of the rules directory: file events (debounced, on the directory
//! so that saves by rename are seen, and on its parent so that a swap of the directory's own
//! symlink is seen) and a periodic check of the files' metadata as a backstop. SIGHUP and
//! `POST /v1/reload` call `Daemon::reload` directly: one code path.
//!
//! Three rules keep a reload from hurting:
//! * only changes trigger: creations, writes, renames and removals. Opening and reading (the
//!   daemon's own reads of the rules included) never do, or a reload would trigger the next.
//! * a change is read once the directory has been quiet for `quiet`: a deploy that writes
//!   several files one after another is read whole, not as a mix of old and new files
//!   (atomic ways need no wait: a symlink swap of the directory or of `..data`).
//! * a file that vanished is not taken as intent until the directory has been quiet for
//!   `settle`: a deploy that moves files out and back, or an editor that deletes before it
//!   writes, must not remove a campaign for the moment in between.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, event::ModifyKind};
use notify_debouncer_full::new_debouncer;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::daemon::{Daemon, ReloadOutcome};
use crate::store::Store;

/// How the watcher waits.
#[derive(Debug, Clone, Copy)]
pub struct WatchConfig {
    /// Events closer together than this are one change.
    pub debounce: Duration,
    /// How often the files' metadata is compared, for changes the events missed.
    pub backstop: Duration,
    /// How long the directory must stay quiet after a change before it is read (a
    /// multi-file write finishes first); a directory that never goes quiet is read after
    /// `QUIET_AT_MOST`.
    pub quiet: Duration,
    /// How long the directory must stay quiet before a vanished file counts as removed.
    pub settle: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            debounce: Duration::from_millis(150),
            backstop: Duration::from_secs(30),
            quiet: Duration::from_secs(1),
            settle: Duration::from_secs(5),
        }
    }
}

/// A directory written to without pause is read after this long all the same.
pub const QUIET_AT_MOST: Duration = Duration::from_secs(10);

/// True for the events that can change what the rules directory holds.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(modify) => !matches!(modify, ModifyKind::Metadata(_)),
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// Watches `dir` until `shutdown` resolves, reloading the daemon's rules on changes.
pub async fn watch<S: Store>(
    daemon: Arc<Daemon<S>>,
    dir: PathBuf,
    config: WatchConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    // The directory's own name in its parent: a symlink swapped there replaces the directory.
    let dir_name = dir.file_name().map(ToOwned::to_owned);
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let parent_for_filter = std::fs::canonicalize(&parent).unwrap_or(parent.clone());
    let debouncer = new_debouncer(
        config.debounce,
        None,
        move |result: notify_debouncer_full::DebounceEventResult| {
            let Ok(events) = result else { return };
            let relevant = events.iter().any(|event| {
                is_change(&event.kind)
                    && event.paths.iter().any(|path| {
                        // In the parent, only the directory's own entry matters.
                        path.parent() != Some(parent_for_filter.as_path())
                            || path.file_name() == dir_name.as_deref()
                    })
            });
            if relevant {
                let _ = tx.send(());
            }
        },
    );
    let mut debouncer = match debouncer {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(
                "cannot watch {}: {e}; relying on the periodic check",
                dir.display()
            );
            None
        }
    };
    if let Some(debouncer) = debouncer.as_mut()
        && let Err(e) = debouncer.watch(&parent, RecursiveMode::NonRecursive)
    {
        tracing::warn!(
            "cannot watch {}: {e}; a swap of the rules directory itself is seen by the periodic check only",
            parent.display()
        );
    }
    let mut watched = arm(&mut debouncer, &dir, None);
    daemon.set_watching(match &watched {
        Some(_) => format!(
            "file events (read after {:?} of quiet), and the files' metadata every {:?}",
            config.quiet, config.backstop
        ),
        None => format!(
            "the files' metadata every {:?} only: file events are unavailable (see the log)",
            config.backstop
        ),
    });
    let mut ticker = tokio::time::interval(config.backstop);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate
    let mut last_seen = Fingerprint::of(&dir, &daemon.list_files());
    tokio::pin!(shutdown);
    loop {
        let trigger = tokio::select! {
            () = &mut shutdown => return,
            Some(()) = rx.recv() => "file change",
            _ = ticker.tick() => {
                if Fingerprint::of(&dir, &daemon.list_files()) == last_seen {
                    continue;
                }
                "metadata check"
            }
        };
        // The directory itself may have been swapped (a symlink to a new directory): watch
        // what the path points to now.
        watched = arm(&mut debouncer, &dir, watched);
        tokio::select! {
            () = &mut shutdown => return,
            () = quiet_down(config.quiet, &mut rx) => {}
        }
        let settled = tokio::select! {
            () = &mut shutdown => return,
            settled = settle(&daemon, &dir, config.settle, &mut rx) => settled,
        };
        if !settled {
            continue;
        }
        watched = arm(&mut debouncer, &dir, watched);
        last_seen = Fingerprint::of(&dir, &daemon.list_files());
        match daemon.reload(trigger).await {
            ReloadOutcome::Failed { .. } => {
                tracing::debug!("waiting for the next change of the rules files");
            }
            // Valid files that cannot run yet: the backstop tries them again.
            ReloadOutcome::Waiting { .. } => last_seen = Fingerprint::default(),
            ReloadOutcome::Applied { .. } | ReloadOutcome::Unchanged { .. } => {}
        }
    }
}

/// Waits until no change has been seen for `quiet`, or `QUIET_AT_MOST` at most.
async fn quiet_down(quiet: Duration, events: &mut UnboundedReceiver<()>) {
    let give_up = tokio::time::Instant::now() + QUIET_AT_MOST;
    while let Ok(Some(())) = tokio::time::timeout(quiet, events.recv()).await {
        if tokio::time::Instant::now() >= give_up {
            tracing::info!(
                "the rules directory has changed for {QUIET_AT_MOST:?} without a pause; reading it now"
            );
            return;
        }
    }
}

/// Waits until a reload may proceed: at once if every file of the running rules is still
/// there, else once the directory has been quiet for `quiet` (events restart the wait).
/// Returns false when the files came back during the wait and nothing else changed.
async fn settle<S: Store>(
    daemon: &Daemon<S>,
    dir: &Path,
    quiet: Duration,
    events: &mut UnboundedReceiver<()>,
) -> bool {
    let missing = |daemon: &Daemon<S>| {
        let present: Vec<String> = crate::rules::rule_files(dir)
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        daemon
            .rules_file_names()
            .into_iter()
            .filter(|name| !present.contains(name))
            .collect::<Vec<_>>()
    };
    let gone = missing(daemon);
    if gone.is_empty() {
        return true;
    }
    tracing::info!(
        "{} vanished from {}; waiting {:?} of quiet before treating that as intended",
        gone.join(", "),
        dir.display(),
        quiet
    );
    loop {
        match tokio::time::timeout(quiet, events.recv()).await {
            Ok(Some(())) => {
                if missing(daemon).is_empty() {
                    // Back again: reload only if something else changed meanwhile.
                    return crate::rules::content_hash(dir).ok() != Some(daemon.rules_hash());
                }
            }
            Ok(None) | Err(_) => return true,
        }
    }
}

/// What the backstop compares: the directory's target and, per rule file and per list file
/// the running rules read, its name, size, modification time and inode. Cheap (no contents
/// read), and any save changes it. (List files outside the directory are seen only here.)
#[derive(Debug, Default, PartialEq, Eq)]
struct Fingerprint(Option<PathBuf>, Vec<(PathBuf, u64, i64, i64, u64)>);

impl Fingerprint {
    fn of(dir: &Path, lists: &[PathBuf]) -> Fingerprint {
        use std::os::unix::fs::MetadataExt;
        let files = crate::rules::rule_files(dir)
            .unwrap_or_default()
            .into_iter()
            .chain(lists.iter().cloned())
            .map(|path| match std::fs::metadata(&path) {
                Ok(m) => (path, m.len(), m.mtime(), m.mtime_nsec(), m.ino()),
                Err(_) => (path, 0, 0, 0, 0),
            })
            .collect();
        Fingerprint(std::fs::canonicalize(dir).ok(), files)
    }
}

/// (Re-)watches the directory `dir` resolves to, if that changed. Returns what is watched.
fn arm<W: notify::Watcher, C: notify_debouncer_full::FileIdCache>(
    debouncer: &mut Option<notify_debouncer_full::Debouncer<W, C>>,
    dir: &Path,
    watched: Option<PathBuf>,
) -> Option<PathBuf> {
    let debouncer = debouncer.as_mut()?;
    let target = std::fs::canonicalize(dir).ok()?;
    if watched.as_ref() == Some(&target) {
        return watched;
    }
    if let Some(old) = &watched {
        let _ = debouncer.unwatch(old);
    }
    match debouncer.watch(&target, RecursiveMode::NonRecursive) {
        Ok(()) => Some(target),
        Err(e) => {
            tracing::warn!("cannot watch {}: {e}", target.display());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backstop_sees_writes_and_renames_but_not_reads() {
        let dir =
            std::env::temp_dir().join(format!("callroute-fingerprint-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rules.yaml");
        std::fs::write(&file, "a: 1\n").unwrap();
        let first = Fingerprint::of(&dir, &[]);
        let _ = std::fs::read_to_string(&file).unwrap();
        assert_eq!(Fingerprint::of(&dir, &[]), first, "a read is not a change");
        // Same size, same name: a save still moves the modification time.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, "a: 2\n").unwrap();
        let written = Fingerprint::of(&dir, &[]);
        assert_ne!(written, first);
        // Saved by rename: a new inode.
        std::fs::write(dir.join(".rules.yaml.tmp"), "a: 2\n").unwrap();
        std::fs::rename(dir.join(".rules.yaml.tmp"), &file).unwrap();
        assert_ne!(Fingerprint::of(&dir, &[]), written);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_backstop_sees_a_list_file_outside_the_rules_directory() {
        let dir = std::env::temp_dir().join(format!("callroute-fp-lists-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rules")).unwrap();
        std::fs::write(dir.join("rules/rules.yaml"), "a: 1\n").unwrap();
        let list = dir.join("dnc.txt");
        std::fs::write(&list, "+12125550100\n").unwrap();
        let lists = [list.clone()];
        let first = Fingerprint::of(&dir.join("rules"), &lists);
        std::fs::write(&list, "+12125550100\n+12125550101\n").unwrap();
        assert_ne!(Fingerprint::of(&dir.join("rules"), &lists), first);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
