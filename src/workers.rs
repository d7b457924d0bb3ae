//! Session threads: every session runs on one of a few single-threaded
//! tokio runtimes, one per thread, and stays there for its whole life.
//!
//! Why not the work-stealing runtime: a relayed statement is a few tiny
//! reads and writes, and the multi-threaded scheduler wakes an idle worker
//! (futex, eventfd) to steal work a few times per statement, only for it
//! to find nothing and park again. Measured on the relay benchmark (2
//! cores, 8 clients): 0.22 futex + 0.07 eventfd writes and 0.17 extra
//! context switches per transaction, about 12% of the proxy's CPU per
//! statement. A session pinned to a thread with its own epoll wakes only
//! when its own sockets are ready, as pgbouncer's event loop does, while
//! several threads still use several cores.
//!
//! The accept loop, admin API, Slack and rule reloads stay on the main
//! runtime; they touch sessions only through channels and tokens, which
//! work across runtimes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

pub struct Workers {
    workers: Vec<Worker>,
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: CancellationToken,
}

struct Worker {
    handle: Handle,
    sessions: Arc<AtomicUsize>,
}

/// One session's place on a worker; dropping it frees the place.
pub struct Seat(Arc<AtomicUsize>);

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Start `n` session threads (`n` >= 1). Call on the main runtime,
    /// which then serves their timers and must outlive them.
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let stop = CancellationToken::new();
        let mut workers = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        // Timers made on a session thread belong to this (the main)
        // runtime: see `timers`.
        let home = Handle::current();
        for i in 0..n.max(1) {
            // I/O only: no time driver (its part of every park, one or more
            // per relayed statement, was for timers sessions rarely set;
            // `timers` registers those with `home`).
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()?;
            workers.push(Worker {
                handle: rt.handle().clone(),
                sessions: Arc::new(AtomicUsize::new(0)),
            });
            let token = stop.clone();
            // The runtime runs its tasks only while a thread is inside
            // `block_on`; it is dropped on its own thread once stopped.
            let t = std::thread::Builder::new()
                .name(format!("airlock-session-{i}"))
                .spawn({
                    let home = home.clone();
                    move || {
                        crate::timers::set_home(home);
                        rt.block_on(token.cancelled())
                    }
                });
            match t {
                Ok(t) => threads.push(t),
                Err(e) => {
                    stop.cancel();
                    return Err(e);
                }
            }
        }
        Ok(Workers {
            workers,
            threads,
            stop,
        })
    }

    /// How many session threads run.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// The worker with the fewest sessions, and a seat on it.
    pub fn pick(&self) -> (&Handle, Seat) {
        let w = self
            .workers
            .iter()
            .min_by_key(|w| w.sessions.load(Ordering::Relaxed))
            .expect("at least one worker");
        w.sessions.fetch_add(1, Ordering::Relaxed);
        (&w.handle, Seat(w.sessions.clone()))
    }

    /// Stop the threads once their sessions have ended (anything still
    /// running on them is dropped).
    pub async fn stop(mut self) {
        self.stop.cancel();
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sessions_go_to_the_least_loaded_worker_and_run_there() {
        let w = Workers::start(2).unwrap();
        let (h1, s1) = w.pick();
        let (h2, s2) = w.pick();
        assert_ne!(h1.id(), h2.id(), "second session goes to the idle worker");
        drop(s1);
        let (h3, _s3) = w.pick();
        assert_eq!(h3.id(), h1.id(), "a freed seat is reused");
        drop(s2);
        // A task spawned on a worker runs on that worker's thread.
        let name = h3
            .spawn(async { std::thread::current().name().map(str::to_string) })
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("airlock-session-"));
        w.stop().await;
    }
}
