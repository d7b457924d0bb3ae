//! The policy engine sessions consult: the rules in force and a
//! classifier built for them (rule files may add side-effect functions to
//! the classifier's list, so a rules reload can mean a new classifier and
//! a fresh classification cache).

use crate::classify::Classifier;
use crate::rules::{RuleSet, RuleStore};
use arc_swap::ArcSwap;
use std::sync::{Arc, Mutex};

/// Rules and the classifier that goes with them.
pub struct Snapshot {
    pub rules: Arc<RuleSet>,
    pub classifier: Arc<Classifier>,
}

pub struct Engine {
    pub store: Arc<RuleStore>,
    current: ArcSwap<Snapshot>,
    rebuild: Mutex<()>,
    max_len: usize,
    cache_bytes: u64,
}

impl Engine {
    pub fn new(store: Arc<RuleStore>, max_len: usize, cache_bytes: u64) -> Engine {
        let rules = store.current();
        let classifier = Arc::new(build_classifier(&rules, max_len, cache_bytes));
        Engine {
            store,
            current: ArcSwap::from_pointee(Snapshot { rules, classifier }),
            rebuild: Mutex::new(()),
            max_len,
            cache_bytes,
        }
    }

    /// Bring a session's copy of the snapshot up to date: a pointer
    /// compare while the rules stand (nothing shared is written, where
    /// [`Engine::snapshot`] bumps two reference counts every session thread
    /// shares), the current snapshot after a reload.
    pub fn refresh(&self, snap: &mut Arc<Snapshot>) {
        if !self.store.is_current(&snap.rules) {
            *snap = self.snapshot();
        }
    }

    /// The rules in force now. Cheap: two atomic loads and a pointer
    /// compare, unless the rules changed since the last call.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        let snap = self.current.load_full();
        let rules = self.store.current();
        if Arc::ptr_eq(&snap.rules, &rules) {
            return snap;
        }
        let _guard = self.rebuild.lock().expect("engine rebuild lock poisoned");
        let snap = self.current.load_full();
        if Arc::ptr_eq(&snap.rules, &rules) {
            return snap;
        }
        // Keep the old classifier (and its warm cache) unless the rules
        // changed the options it classifies with (its function and setting
        // lists).
        let opts = rules.classifier_options(self.max_len);
        let classifier = if opts == *snap.classifier.options() {
            snap.classifier.clone()
        } else {
            Arc::new(Classifier::new(opts, self.cache_bytes))
        };
        let next = Arc::new(Snapshot { rules, classifier });
        self.current.store(next.clone());
        next
    }
}

fn build_classifier(rules: &RuleSet, max_len: usize, cache_bytes: u64) -> Classifier {
    Classifier::new(rules.classifier_options(max_len), cache_bytes)
}
