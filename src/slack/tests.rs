//! End-to-end: Gate + SlackNotifier + interaction endpoints against the fake
//! Slack in `tests/integration/fake_slack.rs` (no Postgres needed).

use super::fake_slack::{self, Call, FakeSlack};
use super::*;
use crate::approval::tests::{TestObserver, request};
use crate::approval::{ApprovalEventKind, ApprovalRequest, Outcome, Pending, SlackMode};
use std::time::Duration;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const WAIT: Duration = Duration::from_secs(10);

struct Env {
    fake: FakeSlack,
    gate: Gate,
    observer: Arc<TestObserver>,
    /// Base URL of the interactions endpoint.
    url: String,
    cfg: SlackConfig,
}

async fn setup() -> Env {
    let fake = FakeSlack::start().await;
    let cfg = SlackConfig {
        bot_token: "xoxb-test".into(),
        signing_secret: Some(SECRET.into()),
        app_token: Some("xapp-test".into()),
        default_channel: Some("C0APPROVALS".into()),
        api_url: fake.api_url(),
        mode: SlackMode::Http,
        admin_url: Some("https://airlock.example:9187".into()),
    };
    let observer = Arc::new(TestObserver::default());
    let gate = Gate::new(
        Arc::new(SlackNotifier::new(&cfg).unwrap()),
        observer.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, interactions_router(gate.clone(), SECRET)).into_future());
    Env {
        fake,
        gate,
        observer,
        url,
        cfg,
    }
}

impl Env {
    async fn submit(&self, req: ApprovalRequest) -> (Pending, Call) {
        let p = self.gate.submit(req).await.expect("submitted");
        let id = p.id().to_string();
        let post = self
            .fake
            .wait_for(
                "chat.postMessage",
                |c| c.text().contains(&id) && c.body["thread_ts"].is_null(),
                WAIT,
            )
            .await;
        (p, post)
    }

    /// Signs and POSTs a click like Slack does; returns the HTTP status.
    async fn click(&self, user: &str, post: &Call, action: &str) -> u16 {
        let value = post.button_value(action).expect("button present");
        self.click_value(user, &value, action).await
    }

    async fn click_value(&self, user: &str, value: &str, action: &str) -> u16 {
        self.post_click(fake_slack::block_actions(
            user,
            "C0APPROVALS",
            "1700000000.000001",
            action,
            value,
        ))
        .await
    }

    /// A click with `reason` typed into the message's reason input.
    async fn click_with_reason(&self, user: &str, post: &Call, action: &str, reason: &str) -> u16 {
        let value = post.button_value(action).expect("button present");
        let payload =
            fake_slack::block_actions(user, "C0APPROVALS", "1700000000.000001", action, &value);
        self.post_click(fake_slack::with_input(
            payload,
            REASON_BLOCK,
            REASON_ACTION,
            reason,
        ))
        .await
    }

    async fn post_click(&self, payload: serde_json::Value) -> u16 {
        let body = fake_slack::form_body(&payload);
        let (ts, sig) = fake_slack::signed(SECRET, fake_slack::now_unix(), &body);
        fake_slack::post_signed(
            &format!("{}{INTERACTIONS_PATH}", self.url),
            &body,
            &ts,
            &sig,
        )
        .await
    }

    async fn ephemeral_to(&self, user: &str, needle: &str) -> Call {
        let (user, needle) = (user.to_string(), needle.to_string());
        self.fake
            .wait_for(
                "chat.postEphemeral",
                move |c| c.body["user"] == user.as_str() && c.text().contains(&needle),
                WAIT,
            )
            .await
    }

    async fn update_with(&self, id: &str, needle: &str) -> Call {
        let (id, needle) = (id.to_string(), needle.to_string());
        self.fake
            .wait_for(
                "chat.update",
                move |c| c.text().contains(&id) && c.text().contains(&needle),
                WAIT,
            )
            .await
    }
}

#[tokio::test]
async fn posted_message_shows_what_reviewers_need() {
    let env = setup().await;
    let (p, post) = env.submit(request(&["U1"], 1)).await;
    assert_eq!(post.auth.as_deref(), Some("Bearer xoxb-test"));
    assert_eq!(post.body["channel"], "C0APPROVALS");
    let text = post.text();
    for needle in [
        "billing-bot",
        "owner",
        "sess-1",
        "10.0.0.7:51000",
        "shop",
        "psql",
        "cleanup of test order",
        "hold-deletes",
        "`delete`",
        "DELETE FROM orders WHERE id = $1",
        "$1 = '42'",
        "deletes ~1 row from orders",
        "airlock_approve",
        "airlock_deny",
        "<@U1>",
    ] {
        assert!(text.contains(needle), "message lacks {needle:?}: {text}");
    }
    assert_eq!(
        post.button_value(ACTION_APPROVE).unwrap(),
        format!("{}:{}", p.id(), p.binding())
    );
    assert_eq!(
        post.button_value(ACTION_DENY).unwrap(),
        format!("{}:{}", p.id(), p.binding())
    );

    // A held `EXECUTE name` shows what the name was prepared as.
    let mut req = request(&["U1"], 1);
    req.sql = "EXECUTE purge(42)".into();
    req.prepared = vec![crate::approval::PreparedText {
        name: "purge".into(),
        sql: "PREPARE purge(int) AS DELETE FROM orders WHERE id = $1".into(),
    }];
    let (_, post) = env.submit(req).await;
    let text = post.text();
    for needle in [
        "EXECUTE purge(42)",
        "`purge` was prepared as",
        "PREPARE purge(int) AS DELETE FROM orders WHERE id = $1",
    ] {
        assert!(text.contains(needle), "message lacks {needle:?}: {text}");
    }

    // A rule's own channel wins over the default.
    let mut req = request(&["U1"], 1);
    req.settings.channel = Some("C0DBA".into());
    let (_, post) = env.submit(req).await;
    assert_eq!(post.body["channel"], "C0DBA");
}

#[tokio::test]
async fn agent_text_cannot_ping_or_break_out() {
    let env = setup().await;
    let mut req = request(&["U1"], 1);
    req.reason = Some("<!channel> please".into());
    req.agent = "<!here>".into();
    req.sql = "SELECT '```<@U1>'".into();
    let (_, post) = env.submit(req).await;
    let text = post.text();
    assert!(
        !text.contains("<!channel>") && text.contains("&lt;!channel&gt;"),
        "{text}"
    );
    assert!(
        text.contains("SELECT '``\u{200b}`&lt;@U1&gt;'```"),
        "code fence must not close early: {text}"
    );
    assert!(
        !post.body["text"].as_str().unwrap().contains('<'),
        "fallback text is escaped too"
    );
}

#[tokio::test]
async fn long_sql_is_truncated_with_full_text_in_thread() {
    let env = setup().await;
    let mut req = request(&["U1"], 1);
    req.sql = format!("INSERT INTO t VALUES {}", vec!["(1,'x')"; 1000].join(","));
    let (p, post) = env.submit(req.clone()).await;
    assert!(post.text().contains("SQL truncated"), "{}", post.text());
    assert!(post.text().contains(&format!(
        "https://airlock.example:9187/approvals/{}",
        p.id()
    )));
    let reply = env
        .fake
        .wait_for("chat.postMessage", |c| !c.body["thread_ts"].is_null(), WAIT)
        .await;
    assert!(reply.body["text"].as_str().unwrap().contains(&req.sql));
}

#[tokio::test]
async fn signed_approve_resolves_outcome_and_edits_message() {
    let env = setup().await;
    let (mut p, post) = env.submit(request(&["U1"], 1)).await;
    assert_eq!(env.click("U1", &post, ACTION_APPROVE).await, 200);
    match p.outcome().await {
        Outcome::Approved { approvers } => {
            assert_eq!(approvers.len(), 1);
            assert_eq!(
                (
                    approvers[0].id.as_str(),
                    approvers[0].via,
                    approvers[0].name.as_deref()
                ),
                ("U1", "slack", Some("u1"))
            );
        }
        o => panic!("unexpected {o:?}"),
    }
    let id = p.id().to_string();
    env.update_with(&id, "*Approved* by <@U1>").await;
    p.finish(Ok("DELETE 1".into()));
    env.update_with(&id, "*Executed:* `DELETE 1`").await;
    let upd = env.fake.calls_to("chat.update");
    assert!(upd.iter().all(|c| {
        c.body["channel"] == "C0APPROVALS"
            && c.body["ts"]
                .as_str()
                .is_some_and(|t| t.starts_with("1700000000."))
    }));
}

#[tokio::test]
async fn deny_records_the_reason_typed_into_the_message() {
    let env = setup().await;
    let (mut p, post) = env.submit(request(&["U1", "U2"], 1)).await;
    // The message offers the input, optional, capped, above the buttons.
    let blocks = post.body["blocks"].as_array().unwrap();
    let input = blocks
        .iter()
        .position(|b| b["type"] == "input")
        .expect("reason input block");
    let actions = blocks
        .iter()
        .position(|b| b["type"] == "actions")
        .expect("buttons");
    assert!(input < actions);
    assert_eq!(blocks[input]["block_id"], REASON_BLOCK);
    assert_eq!(blocks[input]["optional"], true);
    assert_eq!(blocks[input]["element"]["action_id"], REASON_ACTION);
    assert_eq!(
        blocks[input]["element"]["max_length"],
        MAX_REASON_CHARS as u64
    );

    assert_eq!(
        env.click_with_reason("U2", &post, ACTION_DENY, "  not during the billing run \n")
            .await,
        200
    );
    let Outcome::Denied { by, reason } = p.outcome().await else {
        panic!("not denied")
    };
    assert_eq!(by.id, "U2");
    assert_eq!(reason.as_deref(), Some("not during the billing run"));
    env.update_with(p.id(), "not during the billing run").await;
}

#[tokio::test]
async fn blank_or_oversized_reasons_are_normalised() {
    let env = setup().await;
    let (mut p, post) = env.submit(request(&["U1", "U2"], 1)).await;
    assert_eq!(
        env.click_with_reason("U2", &post, ACTION_DENY, "   ").await,
        200
    );
    assert!(matches!(
        p.outcome().await,
        Outcome::Denied { reason: None, .. }
    ));

    let (mut p, post) = env.submit(request(&["U1", "U2"], 1)).await;
    let long = "x".repeat(MAX_REASON_CHARS + 100);
    assert_eq!(
        env.click_with_reason("U2", &post, ACTION_DENY, &long).await,
        200
    );
    let Outcome::Denied {
        reason: Some(r), ..
    } = p.outcome().await
    else {
        panic!("no reason")
    };
    assert_eq!(r.chars().count(), MAX_REASON_CHARS);

    // A reason typed before pressing Approve is not a denial.
    let (mut p, post) = env.submit(request(&["U1", "U2"], 1)).await;
    assert_eq!(
        env.click_with_reason("U2", &post, ACTION_APPROVE, "looks fine")
            .await,
        200
    );
    assert!(matches!(p.outcome().await, Outcome::Approved { .. }));
}

#[tokio::test]
async fn deny_from_slack_and_replayed_click_is_refused() {
    let env = setup().await;
    let (mut p, post) = env.submit(request(&["U1", "U2"], 1)).await;
    assert_eq!(env.click("U2", &post, ACTION_DENY).await, 200);
    assert_eq!(
        p.outcome().await,
        Outcome::Denied {
            by: Decider {
                id: "U2".into(),
                name: Some("u2".into()),
                via: "slack"
            },
            reason: None
        }
    );
    env.update_with(p.id(), "no reason given").await;
    // The same click again, and an approve after the denial: both refused.
    assert_eq!(env.click("U2", &post, ACTION_DENY).await, 200);
    assert_eq!(env.click("U1", &post, ACTION_APPROVE).await, 200);
    env.ephemeral_to("U1", "already denied").await;
    env.ephemeral_to("U2", "already denied").await;
    assert_eq!(
        p.outcome().await,
        Outcome::Denied {
            by: Decider {
                id: "U2".into(),
                name: Some("u2".into()),
                via: "slack"
            },
            reason: None
        }
    );
}

#[tokio::test]
async fn timeout_expires_and_edits_message() {
    let env = setup().await;
    let mut req = request(&["U1"], 1);
    req.settings.timeout = Duration::from_millis(300);
    let (mut p, post) = env.submit(req).await;
    assert_eq!(
        p.outcome().await,
        Outcome::TimedOut {
            after: Duration::from_millis(300)
        }
    );
    env.update_with(p.id(), "*Expired*").await;
    assert_eq!(env.click("U1", &post, ACTION_APPROVE).await, 200);
    env.ephemeral_to("U1", "already expired").await;
}

#[tokio::test]
async fn withdrawn_request_edits_message_and_refuses_later_approval() {
    let env = setup().await;
    let (p, post) = env.submit(request(&["U1"], 1)).await;
    let id = p.id().to_string();
    p.withdraw("client disconnected").await;
    env.update_with(&id, "*Withdrawn*").await;
    assert_eq!(env.click("U1", &post, ACTION_APPROVE).await, 200);
    env.ephemeral_to("U1", "already withdrawn").await;
    assert_eq!(env.gate.get(&id).unwrap().status, "withdrawn");
}

#[tokio::test]
async fn owner_cannot_approve_own_agent() {
    let env = setup().await;
    let mut req = request(&["U1", "UOWNER"], 1);
    req.owner = Some("UOWNER".into());
    let (p, post) = env.submit(req).await;
    assert_eq!(env.click("UOWNER", &post, ACTION_APPROVE).await, 200);
    env.ephemeral_to("UOWNER", "cannot approve its requests")
        .await;
    assert_eq!(env.gate.get(p.id()).unwrap().status, "pending");
    let refused =
        env.observer.0.lock().unwrap().iter().any(
            |e| matches!(&e.kind, ApprovalEventKind::Refused { who, .. } if who.id == "UOWNER"),
        );
    assert!(refused, "refusal is recorded for the audit log");
}

#[tokio::test]
async fn quorum_of_two_distinct_approvers() {
    let env = setup().await;
    let (mut p, post) = env.submit(request(&["U1", "U2"], 2)).await;
    assert_eq!(env.click("U1", &post, ACTION_APPROVE).await, 200);
    env.ephemeral_to("U1", "recorded (1 of 2)").await;
    env.update_with(p.id(), "1 of 2").await;
    assert_eq!(env.click("U1", &post, ACTION_APPROVE).await, 200);
    env.ephemeral_to("U1", "already counted (1 of 2)").await;
    assert_eq!(env.gate.get(p.id()).unwrap().status, "pending");
    assert_eq!(env.click("U2", &post, ACTION_APPROVE).await, 200);
    match p.outcome().await {
        Outcome::Approved { approvers } => assert_eq!(
            approvers.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["U1", "U2"]
        ),
        o => panic!("unexpected {o:?}"),
    }
}

#[tokio::test]
async fn unauthorized_approver_and_forged_binding_are_refused() {
    let env = setup().await;
    let (p, post) = env.submit(request(&["U1"], 1)).await;
    assert_eq!(env.click("U666", &post, ACTION_APPROVE).await, 200);
    env.ephemeral_to("U666", "not an approver").await;
    // A value for this id with another statement's binding.
    let forged = format!(
        "{}:{}",
        p.id(),
        crate::approval::binding_hash("sess-1", "SELECT 1", &[])
    );
    assert_eq!(env.click_value("U1", &forged, ACTION_APPROVE).await, 200);
    env.ephemeral_to("U1", "not bound to that statement").await;
    assert_eq!(env.gate.get(p.id()).unwrap().status, "pending");
}

#[tokio::test]
async fn bad_or_stale_signatures_are_rejected() {
    let env = setup().await;
    let (p, post) = env.submit(request(&["U1"], 1)).await;
    let value = post.button_value(ACTION_APPROVE).unwrap();
    let body = fake_slack::form_body(&fake_slack::block_actions(
        "U1",
        "C0APPROVALS",
        "1",
        ACTION_APPROVE,
        &value,
    ));
    let url = format!("{}{INTERACTIONS_PATH}", env.url);
    let now = fake_slack::now_unix();

    let (ts, _) = fake_slack::signed(SECRET, now, &body);
    let (_, wrong) = fake_slack::signed("not-the-secret", now, &body);
    assert_eq!(
        fake_slack::post_signed(&url, &body, &ts, &wrong).await,
        401,
        "wrong secret"
    );
    let (ts, sig) = fake_slack::signed(SECRET, now, &body);
    let tampered = body.replace("U1", "U2");
    assert_eq!(
        fake_slack::post_signed(&url, &tampered, &ts, &sig).await,
        401,
        "body changed after signing"
    );
    let (ts, sig) = fake_slack::signed(SECRET, now - 600, &body);
    assert_eq!(
        fake_slack::post_signed(&url, &body, &ts, &sig).await,
        400,
        "stale timestamp"
    );
    let (ts, sig) = fake_slack::signed(SECRET, now + 600, &body);
    assert_eq!(
        fake_slack::post_signed(&url, &body, &ts, &sig).await,
        400,
        "future timestamp"
    );
    assert_eq!(
        env.gate.get(p.id()).unwrap().status,
        "pending",
        "nothing got through"
    );
    // And the genuine one works.
    let (ts, sig) = fake_slack::signed(SECRET, now, &body);
    assert_eq!(fake_slack::post_signed(&url, &body, &ts, &sig).await, 200);
    assert_eq!(env.gate.get(p.id()).unwrap().status, "approved");
}

#[tokio::test]
async fn slack_down_fails_closed() {
    let env = setup().await;
    env.fake.set_down(true);
    match env.gate.submit(request(&["U1"], 1)).await {
        Err(Outcome::ChannelDown { error }) => assert!(
            error.contains("approval channel is down") && error.contains("chat.postMessage"),
            "{error}"
        ),
        other => panic!("unexpected {other:?}"),
    }
    assert!(env.gate.list().is_empty());
    // Nothing listening at all.
    let mut cfg = env.cfg.clone();
    cfg.api_url = "http://127.0.0.1:9/api".into();
    let gate = Gate::new(
        Arc::new(SlackNotifier::new(&cfg).unwrap()),
        Arc::new(crate::approval::NoopObserver),
    );
    assert!(matches!(
        gate.submit(request(&["U1"], 1)).await,
        Err(Outcome::ChannelDown { .. })
    ));
}

#[tokio::test]
async fn user_groups_resolve_through_slack() {
    let env = setup().await;
    env.fake.set_group("S0DBA", &["U7"]);
    let (mut p, post) = env.submit(request(&["S0DBA"], 1)).await;
    assert!(post.text().contains("<!subteam^S0DBA>"));
    assert_eq!(env.click("U1", &post, ACTION_APPROVE).await, 200);
    env.ephemeral_to("U1", "not an approver").await;
    assert_eq!(env.click("U7", &post, ACTION_APPROVE).await, 200);
    assert!(matches!(p.outcome().await, Outcome::Approved { .. }));
    assert!(matches!(
        env.gate.submit(request(&["S0NONE"], 1)).await,
        Err(Outcome::ChannelDown { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests() {
    let env = Arc::new(setup().await);
    let started = std::time::Instant::now();
    let subs = (0..200).map(|i| {
        let env = env.clone();
        tokio::spawn(async move {
            let mut req = request(&["U1"], 1);
            req.session_id = format!("sess-{i}");
            env.gate.submit(req).await.expect("submitted")
        })
    });
    let pendings: Vec<Pending> = futures::future::join_all(subs)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(env.gate.list().len(), 200);
    let waits = pendings.into_iter().map(|mut p| {
        let env = env.clone();
        tokio::spawn(async move {
            let value = format!("{}:{}", p.id(), p.binding());
            assert_eq!(env.click_value("U1", &value, ACTION_APPROVE).await, 200);
            (p.outcome().await, p)
        })
    });
    for r in futures::future::join_all(waits).await {
        let (out, p) = r.unwrap();
        assert!(matches!(out, Outcome::Approved { .. }), "{out:?}");
        p.finish(Ok("UPDATE 1".into()));
    }
    assert!(env.gate.list().is_empty());
    let approved = env
        .observer
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e.kind, ApprovalEventKind::Approved { .. }))
        .count();
    assert_eq!(approved, 200, "each applied exactly once");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn socket_mode_click_approves() {
    let env = setup().await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut cfg = env.cfg.clone();
    cfg.mode = SlackMode::Socket;
    let runner = tokio::spawn({
        let (gate, cancel) = (env.gate.clone(), cancel.clone());
        async move { run_socket_mode(gate, &cfg, cancel).await }
    });
    env.fake.wait_sockets(1, WAIT).await;
    let open = env.fake.calls_to("apps.connections.open");
    assert_eq!(
        open[0].auth.as_deref(),
        Some("Bearer xapp-test"),
        "app-level token opens the socket"
    );

    let (mut p, post) = env.submit(request(&["U1"], 1)).await;
    let value = post.button_value(ACTION_APPROVE).unwrap();
    // A refused click is acknowledged too (no redelivery) and answered ephemerally.
    let env_id = env.fake.send_interactive(fake_slack::block_actions(
        "U9",
        "C0APPROVALS",
        "1",
        ACTION_APPROVE,
        &value,
    ));
    env.fake.wait_ack(&env_id, WAIT).await;
    env.ephemeral_to("U9", "not an approver").await;
    let env_id = env.fake.send_interactive(fake_slack::block_actions(
        "U1",
        "C0APPROVALS",
        "1",
        ACTION_APPROVE,
        &value,
    ));
    env.fake.wait_ack(&env_id, WAIT).await;
    assert!(matches!(p.outcome().await, Outcome::Approved { .. }));
    env.update_with(p.id(), "*Approved* by <@U1>").await;
    cancel.cancel();
    runner.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_denies_and_edits_messages() {
    let env = setup().await;
    let (mut p, _) = env.submit(request(&["U1"], 1)).await;
    env.gate.shutdown().await;
    assert!(
        matches!(p.outcome().await, Outcome::Denied { reason: Some(ref r), .. } if r == "proxy shutting down")
    );
    env.update_with(p.id(), "proxy shutting down").await;
}
