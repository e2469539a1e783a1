//! What triggers a reload of the rules directory: file events (debounced, on the directory
//! so that saves by rename and symlink swaps are seen) and a periodic content-hash check as a
//! backstop. SIGHUP and `POST /v1/reload` call `Daemon::reload` directly: one code path.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::new_debouncer;

use crate::daemon::Daemon;
use crate::store::Store;

/// Watches `dir` until `shutdown` resolves, reloading the daemon's rules on changes.
pub async fn watch<S: Store>(
    daemon: Arc<Daemon<S>>,
    dir: PathBuf,
    debounce: Duration,
    backstop: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let debouncer = new_debouncer(
        debounce,
        None,
        move |result: notify_debouncer_full::DebounceEventResult| {
            if result.is_ok() {
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
    let mut watched = arm(&mut debouncer, &dir, None);
    let mut ticker = tokio::time::interval(backstop);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_broken_hash: Option<u64> = None;
    tokio::pin!(shutdown);
    loop {
        let trigger = tokio::select! {
            () = &mut shutdown => return,
            Some(()) = rx.recv() => "file change",
            _ = ticker.tick() => {
                // The directory itself may have been swapped (a symlink to a new directory):
                // watch what the path points to now.
                watched = arm(&mut debouncer, &dir, watched);
                match crate::rules::content_hash(&dir) {
                    Ok(hash) if hash != daemon.rules_hash() && Some(hash) != last_broken_hash => "content hash check",
                    _ => continue,
                }
            }
        };
        while rx.try_recv().is_ok() {}
        let outcome = daemon.reload(trigger).await;
        last_broken_hash = match outcome {
            crate::daemon::ReloadOutcome::Failed { .. } => crate::rules::content_hash(&dir).ok(),
            _ => None,
        };
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
