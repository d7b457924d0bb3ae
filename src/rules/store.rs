//! The live rule set and its reloading.
//!
//! Sessions read the current [`RuleSet`] lock-free through an `ArcSwap`;
//! a statement keeps the `Arc` it evaluated against, so a reload never
//! changes a decision half-way. Reloads come from the lead's SIGHUP
//! handler ([`RuleStore::reload`]) and from a polling watcher
//! ([`RuleStore::spawn_watcher`]). An invalid new version never replaces
//! a working one: the old rules keep running and every problem is logged.
//!
//! The watcher compares content hashes (the policy version), not mtimes:
//! mtimes have coarse granularity on some filesystems, and editors that
//! save by rename or `git checkout` can leave them unchanged or even move
//! them backwards. Reading a few small files once a second costs nothing.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::load::{build, read_sources, version_of};
use super::{Error, RuleSet, format_errors};

/// What a successful [`RuleStore::reload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Files are byte-identical to the running version.
    Unchanged { version: String },
    /// A new version is now live.
    Reloaded { previous: String, version: String },
}

/// Holds the live rule set; share it as `Arc<RuleStore>`.
pub struct RuleStore {
    paths: Vec<PathBuf>,
    current: ArcSwap<RuleSet>,
    /// Address of `current`'s set, for [`RuleStore::is_current`]: one
    /// atomic load, where a guarded `ArcSwap` load was about 80
    /// instructions, and a session asks on every protocol frame.
    current_addr: AtomicUsize,
    /// Serialises reloads (watcher and SIGHUP may race: an older read must
    /// not be stored over a newer one) and remembers the last failure
    /// report, so the watcher logs a broken file once, not every second.
    last_failure: Mutex<Option<String>>,
}

impl std::fmt::Debug for RuleStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleStore")
            .field("paths", &self.paths)
            .field("version", &self.current().version())
            .finish()
    }
}

impl RuleStore {
    /// Load the initial rule set. At startup there is nothing to fall back
    /// to, so errors are returned, not logged.
    pub fn load(paths: Vec<PathBuf>) -> Result<RuleStore, Vec<Error>> {
        let set = RuleSet::load(&paths)?;
        Ok(RuleStore::new(paths, set))
    }

    /// A store around an already loaded set; `paths` are what reloads read.
    pub fn new(paths: Vec<PathBuf>, initial: RuleSet) -> RuleStore {
        let initial = Arc::new(initial);
        RuleStore {
            paths,
            current_addr: AtomicUsize::new(Arc::as_ptr(&initial) as usize),
            current: ArcSwap::from(initial),
            last_failure: Mutex::new(None),
        }
    }

    /// The live rule set.
    pub fn current(&self) -> Arc<RuleSet> {
        self.current.load_full()
    }

    /// Whether `rules` is the live rule set. Unlike [`RuleStore::current`]
    /// this writes nothing shared (no reference count), so a session can
    /// ask on every statement.
    pub fn is_current(&self, rules: &Arc<RuleSet>) -> bool {
        // An address cannot be reused while `rules` (the caller's) holds
        // that allocation: equal addresses are the same set.
        self.current_addr.load(Ordering::Acquire) == Arc::as_ptr(rules) as usize
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Re-read the rule files now and swap in the new version if it is
    /// valid. Does blocking file I/O (small files); call it from a
    /// blocking-tolerant context.
    ///
    /// # Errors
    ///
    /// Every problem of the new version; the old rules stay live, and the
    /// errors are also logged with `tracing::warn`.
    pub fn reload(&self) -> Result<ReloadOutcome, Vec<Error>> {
        self.reload_inner(false)
    }

    /// One watcher tick: like `reload`, but a failure report identical to
    /// the previous one is not logged again.
    fn poll(&self) -> Result<ReloadOutcome, Vec<Error>> {
        self.reload_inner(true)
    }

    fn reload_inner(&self, quiet_repeats: bool) -> Result<ReloadOutcome, Vec<Error>> {
        let mut last_failure = self.last_failure.lock().unwrap_or_else(|p| p.into_inner());
        let previous = self.current().version().to_string();
        let result = read_sources(&self.paths).and_then(|sources| {
            let version = version_of(&sources);
            if version == previous {
                return Ok(ReloadOutcome::Unchanged { version });
            }
            let set = build(&sources)?;
            let set = Arc::new(set);
            // Address after the set: whoever sees the new address finds
            // the new set behind `current`.
            let addr = Arc::as_ptr(&set) as usize;
            self.current.store(set);
            self.current_addr.store(addr, Ordering::Release);
            Ok(ReloadOutcome::Reloaded {
                previous: previous.clone(),
                version,
            })
        });
        match result {
            Ok(outcome) => {
                *last_failure = None;
                if let ReloadOutcome::Reloaded { previous, version } = &outcome {
                    tracing::info!(%previous, %version, "rules reloaded");
                }
                Ok(outcome)
            }
            Err(errors) => {
                let report = format_errors(&errors);
                if !(quiet_repeats && last_failure.as_deref() == Some(report.as_str())) {
                    tracing::warn!(
                        running_version = %previous,
                        errors = %report,
                        "rule files are invalid; keeping the running rules"
                    );
                }
                *last_failure = Some(report);
                Err(errors)
            }
        }
    }

    /// Poll the rule files every `interval` until `cancel` fires, reloading
    /// when their contents change.
    pub fn spawn_watcher(
        self: Arc<Self>,
        interval: Duration,
        cancel: CancellationToken,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = crate::timers::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick fires at once; the files were just loaded.
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let store = Arc::clone(&self);
                // Errors are logged inside; a panic in the blocking task
                // must not kill the watcher either.
                if let Err(e) = tokio::task::spawn_blocking(move || store.poll()).await {
                    tracing::error!(cause = %e, "rule watcher tick failed");
                }
            }
        })
    }
}
