//! Units forwarded upstream and not yet answered, in order. The outbound
//! direction attributes each CommandComplete / ErrorResponse to the oldest
//! unit and completes it at its ReadyForQuery, so the audit trail and the
//! approval message can say what a statement did (rows affected or error).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the server answered to one unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitResult {
    /// Command tag of the last statement that completed (`"DELETE 3"`);
    /// empty if none did.
    pub tag: String,
    /// SQLSTATE and message of the error, if the unit failed.
    pub error: Option<(String, String)>,
    pub elapsed: Duration,
}

impl UnitResult {
    /// One line for humans: the last tag, or the error.
    pub fn summary(&self) -> Result<String, String> {
        match &self.error {
            Some((code, msg)) => Err(format!("{msg} ({code})")),
            None if self.tag.is_empty() => Ok("done".into()),
            None => Ok(self.tag.clone()),
        }
    }
}

pub type Done = Box<dyn FnOnce(UnitResult) + Send>;

struct Entry {
    /// When it was forwarded; only for units someone watches (the clock
    /// read is most of the cost of a unit nobody watches).
    started: Option<Instant>,
    result: UnitResult,
    /// Who wants the result; units nobody watches cost no allocation.
    done: Option<Done>,
}

/// Completed units whose callbacks have not run yet. Dropping it runs
/// them: a session that ends early (client gone, protocol error) still
/// records every result it saw.
#[derive(Default)]
pub struct Finished(Vec<(Done, UnitResult)>);

impl Finished {
    /// Run the callbacks, oldest first.
    pub fn run(&mut self) {
        for (done, result) in self.0.drain(..) {
            done(result);
        }
    }
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.run();
    }
}

#[derive(Default)]
pub struct InFlight {
    q: Mutex<VecDeque<Entry>>,
}

impl InFlight {
    /// A unit that will be answered with one ReadyForQuery was forwarded.
    pub fn push(&self, done: Option<Done>) {
        let e = Entry {
            started: done.as_ref().map(|_| Instant::now()),
            result: UnitResult::default(),
            done,
        };
        self.q.lock().expect("inflight poisoned").push_back(e);
    }

    pub fn is_empty(&self) -> bool {
        self.q.lock().expect("inflight poisoned").is_empty()
    }

    /// CommandComplete for the oldest unit.
    pub fn on_complete(&self, tag: &[u8]) {
        let mut q = self.q.lock().expect("inflight poisoned");
        if let Some(e) = q.front_mut()
            && e.done.is_some()
        {
            // Only the last one is reported; one buffer for all of them.
            e.result.tag.clear();
            match std::str::from_utf8(tag) {
                Ok(t) => e.result.tag.push_str(t),
                // Server tags are ASCII; anything else is shown, not trusted.
                Err(_) => e.result.tag.push_str(&String::from_utf8_lossy(tag)),
            }
        }
    }

    /// ErrorResponse for the oldest unit.
    pub fn on_error(&self, code: String, message: String) {
        let mut q = self.q.lock().expect("inflight poisoned");
        if let Some(e) = q.front_mut()
            && e.done.is_some()
        {
            e.result.error = Some((code, message));
        }
    }

    /// ReadyForQuery: the oldest unit is complete. Its callback goes to
    /// `finished`, for the caller to run once the bytes are on their way
    /// to the client (recording a result is no part of its latency).
    pub fn on_ready(&self, finished: &mut Finished) {
        let e = self.q.lock().expect("inflight poisoned").pop_front();
        if let Some(mut e) = e
            && let Some(done) = e.done.take()
        {
            e.result.elapsed = e.started.map_or(Duration::ZERO, |t| t.elapsed());
            finished.0.push((done, e.result));
        }
    }

    /// The session ended: units still waiting get a closed-connection error.
    pub fn abandon(&self, why: &str) {
        let drained: Vec<Entry> = self
            .q
            .lock()
            .expect("inflight poisoned")
            .drain(..)
            .collect();
        for mut e in drained {
            if let Some(done) = e.done.take() {
                e.result.error.get_or_insert(("08006".into(), why.into()));
                e.result.elapsed = e.started.map_or(Duration::ZERO, |t| t.elapsed());
                done(e.result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn results_are_attributed_in_order() {
        let f = InFlight::default();
        let mut done = Finished::default();
        let got = Arc::new(Mutex::new(Vec::new()));
        for _ in 0..2 {
            let g = got.clone();
            f.push(Some(Box::new(move |r| g.lock().unwrap().push(r))));
        }
        f.push(None);
        // A multi-statement unit reports its last statement's tag.
        f.on_complete(b"BEGIN");
        f.on_complete(b"INSERT 0 1");
        f.on_ready(&mut done);
        f.on_error("42501".into(), "no".into());
        f.on_ready(&mut done);
        f.on_complete(b"SELECT 1");
        f.on_ready(&mut done);
        assert!(f.is_empty());
        assert!(
            got.lock().unwrap().is_empty(),
            "callbacks wait for the caller"
        );
        done.run();
        let got = got.lock().unwrap();
        assert_eq!(got[0].summary(), Ok("INSERT 0 1".into()));
        assert_eq!(got[1].summary(), Err("no (42501)".into()));
    }
}
