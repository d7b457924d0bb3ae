//! Gate state machine tests, with an in-memory notifier. Slack end-to-end
//! tests live in `crate::slack::tests`.

use super::*;
use std::sync::Mutex as StdMutex;

/// Records every notifier call; can be told to fail posts.
#[derive(Default)]
pub(crate) struct TestNotifier {
    pub calls: StdMutex<Vec<(&'static str, String, String)>>, // (kind, request id or user, status or text)
    pub fail_post: AtomicBool,
    pub groups: HashMap<String, Vec<String>>,
}

impl TestNotifier {
    pub fn updates(&self, id: &str) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.0 == "update" && c.1 == id)
            .map(|c| c.2.clone())
            .collect()
    }
}

impl Notifier for TestNotifier {
    fn post<'a>(&'a self, view: &'a PendingView) -> BoxFuture<'a, Result<MessageRef, String>> {
        Box::pin(async move {
            if self.fail_post.load(Ordering::SeqCst) {
                return Err("connection refused".into());
            }
            self.calls
                .lock()
                .unwrap()
                .push(("post", view.id.clone(), view.status.to_string()));
            Ok(MessageRef {
                channel: "C1".into(),
                ts: format!("ts-{}", view.id),
            })
        })
    }
    fn update<'a>(
        &'a self,
        _: &'a MessageRef,
        view: &'a PendingView,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let status = match &view.execution {
                Some(e) => format!("{}+{}", view.status, e.detail),
                None => view.status.to_string(),
            };
            self.calls
                .lock()
                .unwrap()
                .push(("update", view.id.clone(), status));
            Ok(())
        })
    }
    fn ephemeral<'a>(
        &'a self,
        _: &'a str,
        user: &'a str,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.calls
                .lock()
                .unwrap()
                .push(("ephemeral", user.to_string(), text.to_string()));
            Ok(())
        })
    }
    fn group_members<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(async move {
            self.groups
                .get(group)
                .cloned()
                .ok_or_else(|| format!("no such group {group}"))
        })
    }
}

#[derive(Default)]
pub(crate) struct TestObserver(pub StdMutex<Vec<ApprovalEvent>>);
impl ApprovalObserver for TestObserver {
    fn on_event(&self, ev: &ApprovalEvent) {
        self.0.lock().unwrap().push(ev.clone());
    }
}
impl TestObserver {
    pub fn kinds(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|e| {
                format!("{:?}", e.kind)
                    .split([' ', '{', '('])
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }
}

pub(crate) fn request(approvers: &[&str], quorum: u32) -> ApprovalRequest {
    ApprovalRequest {
        session_id: "sess-1".into(),
        prepared: vec![],
        agent: "billing-bot".into(),
        owner: Some("owner".into()),
        client_addr: "10.0.0.7:51000".parse().unwrap(),
        database: "shop".into(),
        application_name: "psql".into(),
        sql: "DELETE FROM orders WHERE id = $1".into(),
        params: vec![Some("42".into())],
        reason: Some("cleanup of test order".into()),
        categories: vec!["delete".into()],
        rules: vec!["hold-deletes".into()],
        impact: vec!["deletes ~1 row from orders".into()],
        settings: HoldSettings {
            channel: None,
            approvers: approvers.iter().map(|s| s.to_string()).collect(),
            quorum,
            timeout: Duration::from_secs(60),
        },
    }
}

fn user(id: &str) -> Decider {
    Decider {
        id: id.into(),
        name: None,
        via: "slack",
    }
}

fn gate() -> (Gate, Arc<TestNotifier>, Arc<TestObserver>) {
    let n = Arc::new(TestNotifier::default());
    let o = Arc::new(TestObserver::default());
    (Gate::new(n.clone(), o.clone()), n, o)
}

/// Lets spawned edit tasks run (paused clock or not).
async fn settle_tasks(g: &Gate) {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    let _ = crate::timers::timeout(Duration::from_secs(5), async {
        while !g.inner.tasks.is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn approval_resolves_outcome_and_is_applied_once() {
    let (g, n, o) = gate();
    let mut p = g.submit(request(&["U1"], 1)).await.unwrap();
    assert_eq!(p.id().len(), 32, "128-bit hex id");
    assert_eq!(
        p.binding(),
        binding_hash(
            "sess-1",
            "DELETE FROM orders WHERE id = $1",
            &[Some("42".into())]
        )
    );
    assert_eq!(
        g.decide(p.id(), Some(p.binding()), user("U1"), Verdict::Approve),
        Ok(DecideAck::Approved)
    );
    assert_eq!(
        p.outcome().await,
        Outcome::Approved {
            approvers: vec![user("U1")]
        }
    );
    assert_eq!(
        g.decide(p.id(), Some(p.binding()), user("U1"), Verdict::Approve),
        Err(DecideError::AlreadyDecided {
            id: p.id().into(),
            status: "approved"
        })
    );
    let id = p.id().to_string();
    p.finish(Ok("DELETE 1".into()));
    settle_tasks(&g).await;
    assert_eq!(
        n.updates(&id).last().map(String::as_str),
        Some("approved+DELETE 1")
    );
    assert_eq!(
        o.kinds(),
        ["Requested", "Voted", "Approved", "Refused", "Finished"]
    );
}

#[tokio::test]
async fn denial_carries_who_and_why() {
    let (g, _, _) = gate();
    let mut p = g.submit(request(&["U1"], 1)).await.unwrap();
    g.decide(
        p.id(),
        None,
        user("U1"),
        Verdict::Deny {
            reason: Some("  not in prod ".into()),
        },
    )
    .unwrap();
    assert_eq!(
        p.outcome().await,
        Outcome::Denied {
            by: user("U1"),
            reason: Some("not in prod".into())
        }
    );
    // Empty reasons are no reasons.
    let mut p = g.submit(request(&["U1"], 1)).await.unwrap();
    g.decide(
        p.id(),
        None,
        user("U1"),
        Verdict::Deny {
            reason: Some(" ".into()),
        },
    )
    .unwrap();
    assert_eq!(
        p.outcome().await,
        Outcome::Denied {
            by: user("U1"),
            reason: None
        }
    );
}

// Real (short) time: the crate's tokio has no `test-util`, so no paused clock.
#[tokio::test]
async fn timeout_expires_and_later_votes_are_refused() {
    let (g, n, o) = gate();
    let mut req = request(&["U1"], 1);
    req.settings.timeout = Duration::from_millis(200);
    let mut p = g.submit(req).await.unwrap();
    let t0 = Instant::now();
    assert_eq!(
        p.outcome().await,
        Outcome::TimedOut {
            after: Duration::from_millis(200)
        }
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(190) && t0.elapsed() < Duration::from_secs(2),
        "{:?}",
        t0.elapsed()
    );
    assert!(matches!(
        g.decide(p.id(), None, user("U1"), Verdict::Approve),
        Err(DecideError::AlreadyDecided {
            status: "expired",
            ..
        })
    ));
    settle_tasks(&g).await;
    assert_eq!(n.updates(p.id()), ["expired"]);
    assert!(o.kinds().contains(&"Expired".to_string()));
}

#[tokio::test]
async fn vote_after_deadline_counts_for_nothing_even_before_the_session_polls() {
    let (g, _, _) = gate();
    let mut req = request(&["U1"], 1);
    req.settings.timeout = Duration::from_millis(50);
    let mut p = g.submit(req).await.unwrap();
    std::thread::sleep(Duration::from_millis(80)); // the session is not polling
    assert!(matches!(
        g.decide(p.id(), None, user("U1"), Verdict::Approve),
        Err(DecideError::Expired { .. })
    ));
    assert_eq!(
        p.outcome().await,
        Outcome::TimedOut {
            after: Duration::from_millis(50)
        }
    );
}

#[tokio::test]
async fn quorum_needs_distinct_approvers() {
    let (g, n, _) = gate();
    let mut p = g.submit(request(&["U1", "U2", "U3"], 2)).await.unwrap();
    let b = p.binding().to_string();
    assert_eq!(
        g.decide(p.id(), Some(&b), user("U1"), Verdict::Approve),
        Ok(DecideAck::Recorded {
            votes: 1,
            quorum: 2
        })
    );
    assert!(matches!(
        g.decide(p.id(), Some(&b), user("U1"), Verdict::Approve),
        Err(DecideError::AlreadyVoted {
            votes: 1,
            quorum: 2,
            ..
        })
    ));
    assert_eq!(g.get(p.id()).unwrap().status, "pending");
    assert_eq!(
        g.decide(p.id(), Some(&b), user("U3"), Verdict::Approve),
        Ok(DecideAck::Approved)
    );
    assert_eq!(
        p.outcome().await,
        Outcome::Approved {
            approvers: vec![user("U1"), user("U3")]
        }
    );
    settle_tasks(&g).await;
    assert_eq!(
        n.updates(p.id()).last().map(String::as_str),
        Some("approved")
    );
}

#[tokio::test]
async fn who_may_decide() {
    let (g, _, o) = gate();
    let p = g.submit(request(&["U1", "owner"], 1)).await.unwrap();
    let id = p.id().to_string();
    assert!(matches!(
        g.decide(&id, None, user("owner"), Verdict::Approve),
        Err(DecideError::OwnAgent { .. })
    ));
    assert!(matches!(
        g.decide(&id, None, user("U9"), Verdict::Approve),
        Err(DecideError::NotAnApprover { .. })
    ));
    assert!(matches!(
        g.decide(&id, None, user("U9"), Verdict::Deny { reason: None }),
        Err(DecideError::NotAnApprover { .. })
    ));
    assert!(matches!(
        g.decide(&id, Some("beef"), user("U1"), Verdict::Approve),
        Err(DecideError::BindingMismatch { .. })
    ));
    assert!(matches!(
        g.decide("0000", None, user("U1"), Verdict::Approve),
        Err(DecideError::UnknownRequest { .. })
    ));
    assert_eq!(g.get(&id).unwrap().status, "pending");
    let refused: Vec<_> =
        o.0.lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e.kind, ApprovalEventKind::Refused { .. }))
            .cloned()
            .collect();
    assert_eq!(refused.len(), 5);
    // Stopping one's own agent is always allowed for a listed approver.
    assert_eq!(
        g.decide(&id, None, user("owner"), Verdict::Deny { reason: None }),
        Ok(DecideAck::Denied)
    );

    // No approvers listed: anyone but the owner.
    let p2 = g.submit(request(&[], 1)).await.unwrap();
    assert!(matches!(
        g.decide(p2.id(), None, user("owner"), Verdict::Approve),
        Err(DecideError::OwnAgent { .. })
    ));
    assert_eq!(
        g.decide(p2.id(), None, user("U42"), Verdict::Approve),
        Ok(DecideAck::Approved)
    );
}

#[tokio::test]
async fn withdrawn_request_can_never_run() {
    let (g, n, o) = gate();
    let p = g.submit(request(&["U1"], 1)).await.unwrap();
    let (id, b) = (p.id().to_string(), p.binding().to_string());
    p.withdraw("client cancelled").await;
    assert!(matches!(
        g.decide(&id, Some(&b), user("U1"), Verdict::Approve),
        Err(DecideError::AlreadyDecided {
            status: "withdrawn",
            ..
        })
    ));
    settle_tasks(&g).await;
    assert_eq!(n.updates(&id), ["withdrawn"]);
    assert!(o.kinds().contains(&"Withdrawn".to_string()));
    assert_eq!(
        g.get(&id).unwrap().decision.unwrap().reason.as_deref(),
        Some("client cancelled")
    );
}

#[tokio::test]
async fn dropping_pending_withdraws_it() {
    let (g, n, _) = gate();
    let p = g.submit(request(&["U1"], 1)).await.unwrap();
    let id = p.id().to_string();
    drop(p);
    assert_eq!(g.get(&id).unwrap().status, "withdrawn");
    assert!(g.decide(&id, None, user("U1"), Verdict::Approve).is_err());
    settle_tasks(&g).await;
    assert_eq!(n.updates(&id), ["withdrawn"]);

    // Approved but dropped before execution: recorded as not executed.
    let mut p = g.submit(request(&["U1"], 1)).await.unwrap();
    let id = p.id().to_string();
    g.decide(&id, None, user("U1"), Verdict::Approve).unwrap();
    assert!(matches!(p.outcome().await, Outcome::Approved { .. }));
    drop(p);
    let v = g.get(&id).unwrap();
    assert_eq!(v.status, "approved");
    assert!(v.execution.unwrap().detail.starts_with("not executed"));
}

#[tokio::test]
async fn channel_down_fails_closed() {
    let (g, n, o) = gate();
    n.fail_post.store(true, Ordering::SeqCst);
    let err = g.submit(request(&["U1"], 1)).await.unwrap_err();
    match err {
        Outcome::ChannelDown { error } => assert!(
            error.contains("approval channel is down: connection refused"),
            "{error}"
        ),
        o => panic!("unexpected {o:?}"),
    }
    let id = o.0.lock().unwrap()[0].request_id.clone();
    assert!(matches!(
        g.decide(&id, None, user("U1"), Verdict::Approve),
        Err(DecideError::AlreadyDecided {
            status: "failed",
            ..
        })
    ));
    assert!(g.list().is_empty());
}

#[tokio::test]
async fn user_groups_are_expanded_or_fail_closed() {
    let mut n = TestNotifier::default();
    n.groups
        .insert("S0DBA".into(), vec!["U7".into(), "U8".into()]);
    let g = Gate::new(Arc::new(n), Arc::new(NoopObserver));
    let p = g.submit(request(&["S0DBA"], 1)).await.unwrap();
    assert!(matches!(
        g.decide(p.id(), None, user("U1"), Verdict::Approve),
        Err(DecideError::NotAnApprover { .. })
    ));
    assert_eq!(
        g.decide(p.id(), None, user("U8"), Verdict::Approve),
        Ok(DecideAck::Approved)
    );
    let err = g.submit(request(&["S0NOPE"], 1)).await.unwrap_err();
    assert!(
        matches!(err, Outcome::ChannelDown { ref error } if error.contains("S0NOPE")),
        "{err:?}"
    );
}

#[tokio::test]
async fn outcome_is_cancel_safe() {
    let (g, _, _) = gate();
    let mut p = g.submit(request(&["U1"], 1)).await.unwrap();
    tokio::select! {
        _ = p.outcome() => panic!("no decision yet"),
        _ = crate::timers::sleep(Duration::from_millis(10)) => {}
    }
    g.decide(p.id(), None, user("U1"), Verdict::Approve)
        .unwrap();
    assert!(matches!(p.outcome().await, Outcome::Approved { .. }));
    assert!(
        matches!(p.outcome().await, Outcome::Approved { .. }),
        "repeatable"
    );
}

/// A quorum-completing vote racing the deadline: whatever wins, the session's
/// outcome and the recorded state agree, and there is one terminal event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vote_racing_timeout_has_one_winner() {
    let (g, _, o) = gate();
    let (mut approved, mut expired) = (0, 0);
    for i in 0..200u64 {
        let mut req = request(&["U1"], 1);
        req.settings.timeout = Duration::from_millis(3);
        let mut p = g.submit(req).await.unwrap();
        let (g2, id) = (g.clone(), p.id().to_string());
        // A blocking thread's sleep is finer than tokio's millisecond timer, so
        // the vote lands on both sides of the deadline across iterations.
        let voter = tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_micros(2_000 + (i % 40) * 75));
            let _ = g2.decide(&id, None, user("U1"), Verdict::Approve);
        });
        let out = p.outcome().await;
        voter.await.unwrap();
        let status = g.get(p.id()).unwrap().status;
        match out {
            Outcome::Approved { .. } => {
                approved += 1;
                assert_eq!(status, "approved");
            }
            Outcome::TimedOut { .. } => {
                expired += 1;
                assert_eq!(status, "expired");
            }
            o => panic!("unexpected {o:?}"),
        }
        let terminal =
            o.0.lock()
                .unwrap()
                .iter()
                .filter(|e| {
                    e.request_id == p.id()
                        && matches!(
                            e.kind,
                            ApprovalEventKind::Approved { .. } | ApprovalEventKind::Expired { .. }
                        )
                })
                .count();
        assert_eq!(terminal, 1);
    }
    assert_eq!(approved + expired, 200);
}

#[tokio::test]
async fn shutdown_denies_waiting_requests_and_refuses_new_ones() {
    let (g, n, _) = gate();
    let mut p = g.submit(request(&["U1"], 1)).await.unwrap();
    g.shutdown().await;
    assert_eq!(
        p.outcome().await,
        Outcome::Denied {
            by: Decider::system(),
            reason: Some("proxy shutting down".into())
        }
    );
    assert_eq!(n.updates(p.id()), ["denied"]);
    assert!(matches!(
        g.submit(request(&["U1"], 1)).await,
        Err(Outcome::Denied { .. })
    ));
}

#[test]
fn binding_hash_separates_fields_and_null() {
    let a = binding_hash("s", "SELECT $1", &[Some("x".into())]);
    assert_ne!(a, binding_hash("s", "SELECT $1", &[None]));
    assert_ne!(a, binding_hash("s", "SELECT $1", &[Some("y".into())]));
    assert_ne!(a, binding_hash("s2", "SELECT $1", &[Some("x".into())]));
    assert_ne!(binding_hash("ab", "c", &[]), binding_hash("a", "bc", &[]));
    assert_eq!(
        parse_button_value(&button_value("id1", "abc")),
        Some(("id1", "abc"))
    );
    assert_eq!(parse_button_value("id1"), None);
    assert!(is_user_group("S0123ABC") && !is_user_group("U0123") && !is_user_group("Sales"));
}
