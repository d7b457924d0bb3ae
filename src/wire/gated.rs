//! A future polled only when its own wake-up came.
//!
//! Why: a session's two relay directions are one task (they borrow the
//! session's state), joined by a `select!`. A task has one waker, so every
//! wake-up (the client's socket, or the server's) polled both directions,
//! and the one whose socket had not fired paid a readiness check and a
//! waker registration for nothing, as did the shutdown branch: three
//! polls where one was due, on every relayed message. Wrapped in a
//! [`Gated`], each branch hands the future under it a waker of its own
//! that marks the branch before waking the task, and a poll of an unmarked
//! branch returns at once.
//!
//! What it asks of the future under it: like any future, to have arranged
//! a wake-up before returning `Pending`. One that returns `Pending`
//! expecting to be polled again because a sibling branch will be is never
//! polled again; such a branch must be woken by hand ([`Gated::waker`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

/// The mark a branch's waker sets, and the task it wakes.
struct Mark {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Mark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Mark first: the task, once woken, must find the mark.
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

pub struct Gated<F> {
    fut: F,
    mark: Arc<Mark>,
    waker: Waker,
}

impl<F: Future + Unpin> Gated<F> {
    pub fn new(fut: F) -> Self {
        let mark = Arc::new(Mark {
            // The first poll always reaches the future: it has not
            // arranged any wake-up yet.
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(Arc::clone(&mark));
        Gated { fut, mark, waker }
    }

    /// Wakes this branch (and so the task) from outside the future, e.g.
    /// from a sibling branch that changed what this one waits for.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }
}

impl<F: Future + Unpin> Future for Gated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // Register before looking at the mark: a wake-up between the two
        // then leaves the mark set and the task woken, never lost.
        // (`register` clones the task's waker only when it changed.)
        this.mark.task.register(cx.waker());
        if !this.mark.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        Pin::new(&mut this.fut).poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once `ready` is set, waking through the
    /// last waker it saw.
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        slot: Arc<std::sync::Mutex<Option<Waker>>>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.ready.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *self.slot.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    fn probe() -> Probe {
        Probe {
            polls: Arc::default(),
            ready: Arc::default(),
            slot: Arc::default(),
        }
    }

    #[tokio::test]
    async fn only_the_woken_branch_is_polled_and_no_wake_up_is_lost() {
        let (a, b) = (probe(), probe());
        let (a_polls, a_ready, a_waker) = (a.polls.clone(), a.ready.clone(), a.slot.clone());
        let b_polls = b.polls.clone();
        let (mut a, mut b) = (Gated::new(a), Gated::new(b));
        let first = futures::poll!(futures::future::select(&mut a, &mut b));
        assert!(first.is_pending());
        assert_eq!(
            (
                a_polls.load(Ordering::SeqCst),
                b_polls.load(Ordering::SeqCst)
            ),
            (1, 1),
            "the first poll reaches both"
        );
        // Nothing woken: neither future is polled again.
        assert!(futures::poll!(futures::future::select(&mut a, &mut b)).is_pending());
        assert_eq!(
            (
                a_polls.load(Ordering::SeqCst),
                b_polls.load(Ordering::SeqCst)
            ),
            (1, 1)
        );
        // A wake-up from another thread reaches the task and only `a`.
        a_ready.store(true, Ordering::SeqCst);
        let w = a_waker.lock().unwrap().take().unwrap();
        std::thread::spawn(move || w.wake()).join().unwrap();
        let r = futures::future::select(&mut a, &mut b).await;
        assert!(matches!(r, futures::future::Either::Left(_)));
        assert_eq!(
            (
                a_polls.load(Ordering::SeqCst),
                b_polls.load(Ordering::SeqCst)
            ),
            (2, 1)
        );
    }

    #[tokio::test]
    async fn waking_by_hand_reaches_a_future_that_arranged_nothing() {
        let polls = Arc::new(AtomicUsize::new(0));
        let p = polls.clone();
        // Pending without registering anything: reachable only by hand.
        let mut g = Gated::new(std::future::poll_fn(move |_| {
            p.fetch_add(1, Ordering::SeqCst);
            Poll::<()>::Pending
        }));
        assert!(futures::poll!(&mut g).is_pending());
        assert!(futures::poll!(&mut g).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        g.waker().wake();
        assert!(futures::poll!(&mut g).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }
}
