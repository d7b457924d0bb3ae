//! A fake Slack for tests: Web API methods on loopback HTTP, a Socket Mode
//! websocket, and helpers to sign and build button clicks exactly as Slack does.
//!
//! Serves `POST|GET /api/<method>` for `chat.postMessage`, `chat.update`,
//! `chat.postEphemeral`, `usergroups.users.list` and `apps.connections.open`
//! (which hands out a `ws://` URL on a second loopback listener). Every call is
//! recorded as JSON for assertions; `wait_for` polls to a deadline instead of
//! sleeping. `set_down(true)` makes every method answer 503, like an outage.
//!
//! Self-contained: uses axum, tokio, serde_json, hmac, sha2, hex, futures and
//! tokio-tungstenite (dev-dependency) only.
#![allow(dead_code)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;

/// One recorded Web API call.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// The `Authorization` header as sent (`Bearer xoxb-…`).
    pub auth: Option<String>,
    /// JSON body, or query/form fields as a JSON object.
    pub body: Value,
}

impl Call {
    /// All text in the call (message text and every block), for `contains` checks.
    pub fn text(&self) -> String {
        self.body.to_string()
    }

    /// The `value` of the button with `action_id` in this call's blocks.
    pub fn button_value(&self, action_id: &str) -> Option<String> {
        self.body["blocks"].as_array()?.iter().find_map(|b| {
            b["elements"]
                .as_array()?
                .iter()
                .find(|e| e["action_id"] == action_id)
                .and_then(|e| e["value"].as_str())
                .map(str::to_string)
        })
    }
}

#[derive(Default)]
struct Shared {
    calls: Mutex<Vec<Call>>,
    changed: Notify,
    next_ts: AtomicU64,
    down: AtomicBool,
    groups: Mutex<HashMap<String, Vec<String>>>,
    sockets: Mutex<Vec<mpsc::UnboundedSender<String>>>,
    acks: Mutex<Vec<String>>,
    ws_addr: Mutex<Option<SocketAddr>>,
    next_envelope: AtomicU64,
}

/// A running fake Slack; stops when dropped.
pub struct FakeSlack {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl FakeSlack {
    pub async fn start() -> FakeSlack {
        let shared = Arc::new(Shared {
            next_ts: AtomicU64::new(1),
            ..Default::default()
        });
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake slack");
        let addr = http.local_addr().unwrap();
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake slack ws");
        *shared.ws_addr.lock().unwrap() = Some(ws.local_addr().unwrap());
        let app = Router::new()
            .route("/api/{method}", any(api))
            .with_state(shared.clone());
        let t1 = tokio::spawn(async move {
            let _ = axum::serve(http, app).await;
        });
        let t2 = tokio::spawn(serve_websockets(ws, shared.clone()));
        FakeSlack {
            addr,
            shared,
            tasks: vec![t1, t2],
        }
    }

    /// Value for `slack.api_url`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }

    pub fn calls_to(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    /// Simulates an outage: every method answers HTTP 503.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Members returned by `usergroups.users.list` for `group`.
    pub fn set_group(&self, group: &str, members: &[&str]) {
        self.shared.groups.lock().unwrap().insert(
            group.into(),
            members.iter().map(|s| s.to_string()).collect(),
        );
    }

    /// Waits until a call to `method` satisfies `pred`; panics at the deadline
    /// listing what was seen.
    pub async fn wait_for(
        &self,
        method: &str,
        pred: impl Fn(&Call) -> bool,
        within: Duration,
    ) -> Call {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.shared.changed.notified();
            if let Some(c) = self.calls_to(method).into_iter().find(|c| pred(c)) {
                return c;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!(
                    "fake slack: no matching {method} call within {within:?}; calls: {:#?}",
                    self.calls()
                );
            }
        }
    }

    /// Waits until `n` Socket Mode clients are connected (hello sent).
    pub async fn wait_sockets(&self, n: usize, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.shared.changed.notified();
            if self
                .shared
                .sockets
                .lock()
                .unwrap()
                .iter()
                .filter(|s| !s.is_closed())
                .count()
                >= n
            {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("fake slack: fewer than {n} socket mode clients within {within:?}");
            }
        }
    }

    /// Sends an `interactive` envelope to a connected Socket Mode client;
    /// returns its envelope id.
    pub fn send_interactive(&self, payload: Value) -> String {
        let id = format!(
            "env-{}",
            self.shared.next_envelope.fetch_add(1, Ordering::SeqCst)
        );
        let frame = json!({"type": "interactive", "envelope_id": id, "accepts_response_payload": false, "payload": payload}).to_string();
        let sockets = self.shared.sockets.lock().unwrap();
        let sent = sockets.iter().rev().any(|s| s.send(frame.clone()).is_ok());
        assert!(sent, "fake slack: no socket mode client connected");
        id
    }

    /// Waits for the client's acknowledgement of `envelope_id`.
    pub async fn wait_ack(&self, envelope_id: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.shared.changed.notified();
            if self
                .shared
                .acks
                .lock()
                .unwrap()
                .iter()
                .any(|a| a == envelope_id)
            {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("fake slack: envelope {envelope_id} not acknowledged within {within:?}");
            }
        }
    }
}

fn record(shared: &Shared, call: Call) {
    shared.calls.lock().unwrap().push(call);
    shared.changed.notify_waiters();
}

fn form_to_json(s: &str) -> Value {
    let mut m = serde_json::Map::new();
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        m.insert(percent_decode(k), Value::String(percent_decode(v)));
    }
    Value::Object(m)
}

async fn api(
    State(shared): State<Arc<Shared>>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body);
    let body = if headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"))
    {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    } else if !text.is_empty() {
        form_to_json(&text)
    } else {
        form_to_json(query.as_deref().unwrap_or(""))
    };
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    record(
        &shared,
        Call {
            method: method.clone(),
            auth: auth.clone(),
            body: body.clone(),
        },
    );
    if shared.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "slack is down").into_response();
    }
    if auth.is_none() {
        return axum::Json(json!({"ok": false, "error": "not_authed"})).into_response();
    }
    let reply = match method.as_str() {
        "chat.postMessage" => {
            let ts = format!(
                "1700000000.{:06}",
                shared.next_ts.fetch_add(1, Ordering::SeqCst)
            );
            json!({"ok": true, "channel": body["channel"], "ts": ts, "message": {"ts": ts, "text": body["text"]}})
        }
        "chat.update" => {
            json!({"ok": true, "channel": body["channel"], "ts": body["ts"], "message": {"text": body["text"]}})
        }
        "chat.postEphemeral" => json!({"ok": true, "message_ts": "1700000000.999999"}),
        "usergroups.users.list" => {
            let group = body["usergroup"].as_str().unwrap_or_default().to_string();
            match shared.groups.lock().unwrap().get(&group) {
                Some(users) => json!({"ok": true, "users": users}),
                None => json!({"ok": false, "error": "no_such_subteam"}),
            }
        }
        "apps.connections.open" => {
            let ws = shared.ws_addr.lock().unwrap().expect("ws listener");
            json!({"ok": true, "url": format!("ws://{ws}/link/?ticket={}", shared.next_ts.fetch_add(1, Ordering::SeqCst))})
        }
        _ => json!({"ok": false, "error": "unknown_method"}),
    };
    axum::Json(reply).into_response()
}

async fn serve_websockets(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    while let Ok((stream, _)) = listener.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            let (mut sink, mut stream) = ws.split();
            let (tx, mut rx) = mpsc::unbounded_channel::<String>();
            let hello = json!({"type": "hello", "num_connections": 1, "debug_info": {"host": "fake-slack"}, "connection_info": {"app_id": "A0FAKE"}});
            if sink
                .send(Message::Text(hello.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
            shared.sockets.lock().unwrap().push(tx);
            shared.changed.notify_waiters();
            let writer = tokio::spawn(async move {
                while let Some(frame) = rx.recv().await {
                    if sink.send(Message::Text(frame.into())).await.is_err() {
                        break;
                    }
                }
            });
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(t) = msg else { continue };
                if let Some(id) = serde_json::from_str::<Value>(t.as_str())
                    .ok()
                    .and_then(|v| v["envelope_id"].as_str().map(str::to_string))
                {
                    shared.acks.lock().unwrap().push(id);
                    shared.changed.notify_waiters();
                }
            }
            writer.abort();
        });
    }
}

/// `v0=` + hex HMAC-SHA256 over `v0:{timestamp}:{body}`, as Slack signs requests.
pub fn sign(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac takes any key length");
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A `block_actions` payload: `user` clicked the button `action_id` carrying
/// `value` on the message `message_ts` in `channel`.
pub fn block_actions(
    user: &str,
    channel: &str,
    message_ts: &str,
    action_id: &str,
    value: &str,
) -> Value {
    json!({
        "type": "block_actions",
        "team": {"id": "T0FAKE", "domain": "fake"},
        "user": {"id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": "T0FAKE"},
        "api_app_id": "A0FAKE",
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": false},
        "trigger_id": "1.2.3",
        "channel": {"id": channel, "name": "approvals"},
        "response_url": "https://hooks.slack.invalid/actions/T0FAKE/1/abc",
        "actions": [{
            "type": "button",
            "action_id": action_id,
            "block_id": "b1",
            "text": {"type": "plain_text", "text": "Approve"},
            "value": value,
            "action_ts": "1700000001.000001"
        }]
    })
}

/// `payload` as Slack sends it when the message's plain-text input `block` /
/// `action` holds `text` at the time of the click (`state.values`).
pub fn with_input(mut payload: Value, block: &str, action: &str, text: &str) -> Value {
    payload["state"] =
        json!({"values": {block: {action: {"type": "plain_text_input", "value": text}}}});
    payload
}

/// The form body Slack POSTs to an interactivity URL: `payload=<url-encoded JSON>`.
pub fn form_body(payload: &Value) -> String {
    format!("payload={}", percent_encode(&payload.to_string()))
}

/// Headers for a signed interaction: (timestamp, signature).
pub fn signed(secret: &str, timestamp: u64, body: &str) -> (String, String) {
    let ts = timestamp.to_string();
    let sig = sign(secret, &ts, body);
    (ts, sig)
}

/// POSTs `body` to `url` with Slack's signature headers; returns the status.
/// Raw HTTP/1.1 over TcpStream so the fake needs no client crate.
pub async fn post_signed(url: &str, body: &str, timestamp: &str, signature: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = tokio::net::TcpStream::connect(host).await.expect("connect");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Slack-Request-Timestamp: {timestamp}\r\nX-Slack-Signature: {signature}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.expect("read");
    let head = String::from_utf8_lossy(&resp);
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code")
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if s
                .get(i + 1..i + 3)
                .is_some_and(|h| u8::from_str_radix(h, 16).is_ok()) =>
            {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("checked above"));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
