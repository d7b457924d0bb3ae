//! Timers, for code that may run on a session thread.
//!
//! The session threads' runtimes (`workers`) have no time driver. Its share
//! of every park (a clock read, the wheel's lock taken twice, a wheel poll)
//! was about 380 instructions per wake-up, one or two wake-ups per relayed
//! statement, for timers a relaying session never sets. The timers a
//! session does need (login and connect timeouts, the shutdown drain, a
//! hold's deadline, the last writes to a closing socket) are registered
//! with the main runtime's driver instead. A tokio timer belongs to the
//! runtime it was created in: that runtime's driver fires it, and it wakes
//! whichever task polls it, on whatever thread. `workers` tells each
//! session thread which runtime that is ([`set_home`]); on any other
//! thread (the main runtime, tests) these are tokio's own functions.
//!
//! Every timer in this crate is made here: tokio panics when a timer is
//! created on a runtime without a time driver, so one made directly on a
//! session thread would end that session (a test,
//! `timers_are_made_only_here`, keeps it so). Work of a hold that reaches
//! into other crates' timers and tasks (the Slack client) runs on the main
//! runtime (`approval::Gate::submit`).

use std::cell::OnceCell;
use std::future::IntoFuture;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::{Instant, Interval, Sleep, Timeout};

thread_local! {
    static HOME: OnceCell<Handle> = const { OnceCell::new() };
}

/// From now on, timers made on this thread belong to `home`'s driver.
/// Called once, first thing, on each session thread.
pub(crate) fn set_home(home: Handle) {
    HOME.with(|h| {
        let _ = h.set(home);
    });
}

/// Run `make` where a timer it creates gets a time driver.
fn at_home<R>(make: impl FnOnce() -> R) -> R {
    let home = HOME.try_with(|h| h.get().cloned()).ok().flatten();
    match home {
        Some(home) => {
            let _entered = home.enter();
            make()
        }
        None => make(),
    }
}

/// `tokio::time::sleep`.
pub fn sleep(d: Duration) -> Sleep {
    at_home(|| tokio::time::sleep(d))
}

/// `tokio::time::sleep_until`.
pub fn sleep_until(t: Instant) -> Sleep {
    at_home(|| tokio::time::sleep_until(t))
}

/// `tokio::time::timeout`.
pub fn timeout<F: IntoFuture>(d: Duration, f: F) -> Timeout<F::IntoFuture> {
    at_home(|| tokio::time::timeout(d, f))
}

/// `tokio::time::interval`.
pub fn interval(period: Duration) -> Interval {
    at_home(|| tokio::time::interval(period))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread whose runtime has no time driver still gets working
    /// timers, fired by its home runtime's driver.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn timers_on_a_runtime_without_a_driver_fire_from_home() {
        let home = Handle::current();
        let t = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .unwrap();
            // Without a home, tokio itself refuses.
            let bare = std::panic::catch_unwind(|| {
                rt.block_on(async { tokio::time::sleep(Duration::from_millis(1)).await })
            });
            assert!(bare.is_err(), "no time driver on this runtime");
            set_home(home);
            rt.block_on(async {
                let started = std::time::Instant::now();
                sleep(Duration::from_millis(30)).await;
                assert!(started.elapsed() >= Duration::from_millis(30));
                sleep_until(Instant::now() + Duration::from_millis(5)).await;
                let slow = timeout(Duration::from_millis(20), std::future::pending::<()>()).await;
                assert!(slow.is_err(), "the timeout fired");
                let quick = timeout(Duration::from_secs(5), async { 7 }).await;
                assert_eq!(quick.unwrap(), 7);
                let mut tick = interval(Duration::from_millis(10));
                tick.tick().await;
                tick.tick().await;
            });
        });
        tokio::task::spawn_blocking(move || t.join())
            .await
            .unwrap()
            .unwrap();
    }

    /// Every timer constructor call in `src/` goes through this module:
    /// one made directly would panic on a session thread.
    #[test]
    fn timers_are_made_only_here() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![root];
        let mut found = Vec::new();
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let path = e.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|x| x != "rs") || path.ends_with("src/timers.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for (n, line) in text.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or("");
                    let direct = [
                        "sleep",
                        "sleep_until",
                        "timeout",
                        "timeout_at",
                        "interval",
                        "interval_at",
                    ]
                    .iter()
                    .any(|f| code.contains(&format!("tokio::time::{f}(")));
                    let imported = code.contains("use tokio::time::")
                        && ["sleep", "timeout", "interval"]
                            .iter()
                            .any(|f| code.contains(f));
                    if direct || imported {
                        found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
        assert!(
            found.is_empty(),
            "make timers with crate::timers:\n{}",
            found.join("\n")
        );
    }
}
