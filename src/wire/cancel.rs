//! Cancel keys. Each client gets the proxy's own (pid, secret) pair; the
//! registry maps it to the upstream backend's key, so a CancelRequest
//! reaches the right upstream query and a forged or stale key reaches
//! nothing. The session is told too: a cancel for a statement that is
//! waiting for approval withdraws the request instead (DESIGN-NOTES 2).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

pub struct Entry {
    secret: i32,
    pub upstream_pid: i32,
    pub upstream_secret: i32,
    /// Woken on every valid cancel for this session.
    pub signal: Arc<Signal>,
}

/// How a cancel reaches its session.
#[derive(Default)]
pub struct Signal {
    notify: Notify,
    /// The session is holding a statement for approval and has nothing
    /// else running upstream: a cancel is for the held statement alone.
    holding: AtomicBool,
}

impl Signal {
    /// Future that completes on the next cancel (no stored permit: a cancel
    /// that arrived while nobody listened must not withdraw a later hold).
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// Wake the session; true if the cancel concerns only a held
    /// statement, which has not reached the server.
    pub fn wake(&self) -> bool {
        let holding = self.holding.load(Ordering::Acquire);
        self.notify.notify_waiters();
        holding
    }

    /// Mark the session as holding (with nothing upstream) until the guard
    /// drops.
    pub fn holding(&self) -> HoldingGuard<'_> {
        self.holding.store(true, Ordering::Release);
        HoldingGuard(self)
    }
}

pub struct HoldingGuard<'a>(&'a Signal);

impl Drop for HoldingGuard<'_> {
    fn drop(&mut self) {
        self.0.holding.store(false, Ordering::Release);
    }
}

#[derive(Default)]
pub struct Registry {
    map: Mutex<HashMap<i32, Entry>>,
}

/// Removes the session's key when the session ends.
pub struct KeyGuard {
    registry: Arc<Registry>,
    pub pid: i32,
    pub secret: i32,
    pub signal: Arc<Signal>,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        self.registry
            .map
            .lock()
            .expect("cancel registry poisoned")
            .remove(&self.pid);
    }
}

impl Registry {
    /// Allocate a fresh random key for a session.
    pub fn register(self: &Arc<Self>, upstream_pid: i32, upstream_secret: i32) -> KeyGuard {
        let signal = Arc::new(Signal::default());
        let mut map = self.map.lock().expect("cancel registry poisoned");
        loop {
            // Positive pids look like real ones to clients that print them.
            let pid = (rand::random::<u32>() >> 1) as i32;
            if pid == 0 || map.contains_key(&pid) {
                continue;
            }
            let secret = rand::random::<i32>();
            map.insert(
                pid,
                Entry {
                    secret,
                    upstream_pid,
                    upstream_secret,
                    signal: signal.clone(),
                },
            );
            return KeyGuard {
                registry: self.clone(),
                pid,
                secret,
                signal,
            };
        }
    }

    /// Look up a cancel key; `None` unless both pid and secret match.
    pub fn resolve(&self, pid: i32, secret: i32) -> Option<(i32, i32, Arc<Signal>)> {
        let map = self.map.lock().expect("cancel registry poisoned");
        let e = map.get(&pid)?;
        // Constant-time compare: the secret is the only thing that keeps
        // one client from cancelling another's queries.
        let diff = (e.secret ^ secret) as u32;
        if diff == 0 {
            Some((e.upstream_pid, e.upstream_secret, e.signal.clone()))
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().expect("cancel registry poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_reports_holding_only_while_the_guard_lives() {
        let s = Signal::default();
        assert!(!s.wake());
        {
            let _g = s.holding();
            assert!(s.wake(), "held statement only: not forwarded");
        }
        assert!(!s.wake(), "guard dropped: forwarded again");
    }

    #[test]
    fn keys_resolve_only_with_the_right_secret_and_vanish_on_drop() {
        let r = Arc::new(Registry::default());
        let g = r.register(111, 222);
        assert_eq!(
            r.resolve(g.pid, g.secret).map(|x| (x.0, x.1)),
            Some((111, 222))
        );
        assert!(r.resolve(g.pid, g.secret.wrapping_add(1)).is_none());
        assert!(r.resolve(g.pid.wrapping_add(1), g.secret).is_none());
        let (pid, secret) = (g.pid, g.secret);
        drop(g);
        assert!(r.resolve(pid, secret).is_none());
        assert!(r.is_empty());
    }
}
