//! Admin HTTP API for approvals, mounted by the app on the admin port.
//!
//! - `GET  /approvals`              waiting requests, oldest first
//! - `GET  /approvals/{id}`         one request, also recently decided ones
//! - `POST /approvals/{id}/approve` body optional: `{"binding": "<hash>"}`
//! - `POST /approvals/{id}/deny`    body optional: `{"reason": "...", "binding": "<hash>"}`
//!
//! Every route needs `Authorization: Bearer <token>`; the token names the
//! caller's identity (`[[api_token]]`), and [`Gate::decide`] applies the same
//! who-may-decide rules as Slack. This is also the way to deny with a reason:
//! the Slack Deny button denies without one. Errors are JSON `{"error": ...}`.

use super::{DecideAck, DecideError, Decider, Gate, Verdict};
use crate::approval::config::ApiToken;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Bearer tokens, stored as SHA-256 digests so the comparison's timing says
/// nothing about the token itself.
#[derive(Clone, Default)]
pub struct ApiTokens(Arc<Vec<([u8; 32], String)>>);

impl ApiTokens {
    pub fn new(tokens: &[ApiToken]) -> ApiTokens {
        ApiTokens(Arc::new(
            tokens
                .iter()
                .map(|t| (digest(&t.token), t.identity.clone()))
                .collect(),
        ))
    }

    /// The identity a presented token speaks for.
    fn identity(&self, presented: &str) -> Option<&str> {
        let d = digest(presented);
        // No early exit: every configured token is compared.
        self.0.iter().fold(None, |found, (stored, id)| {
            if *stored == d {
                Some(id.as_str())
            } else {
                found
            }
        })
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

#[derive(Clone)]
struct ApiState {
    gate: Gate,
    tokens: ApiTokens,
}

/// The approvals router; merge it into the admin router.
pub fn router(gate: Gate, tokens: ApiTokens) -> Router {
    Router::new()
        .route("/approvals", get(list))
        .route("/approvals/{id}", get(show))
        .route("/approvals/{id}/approve", post(approve))
        .route("/approvals/{id}/deny", post(deny))
        .with_state(ApiState { gate, tokens })
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": msg.into() }))).into_response()
}

// Handlers answer errors with a ready `Response`; boxing it buys nothing here.
#[allow(clippy::result_large_err)]
fn authenticate(st: &ApiState, headers: &HeaderMap) -> Result<Decider, Response> {
    let unauthorized = || {
        let mut r = error(StatusCode::UNAUTHORIZED, "missing or unknown bearer token");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        r
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(unauthorized)?;
    let id = st.tokens.identity(token).ok_or_else(unauthorized)?;
    Ok(Decider {
        id: id.to_string(),
        name: None,
        via: "api",
    })
}

async fn list(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(r) = authenticate(&st, &headers) {
        return r;
    }
    axum::Json(json!({ "pending": st.gate.list() })).into_response()
}

async fn show(State(st): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authenticate(&st, &headers) {
        return r;
    }
    match st.gate.get(&id) {
        Some(v) => axum::Json(v).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("approval request {id} is unknown"),
        ),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    reason: Option<String>,
    binding: Option<String>,
}

#[allow(clippy::result_large_err)]
fn body(bytes: &Bytes) -> Result<DecideBody, Response> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(DecideBody::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("request body: {e}")))
}

fn decide_response(r: Result<DecideAck, DecideError>) -> Response {
    match r {
        Ok(DecideAck::Approved) => axum::Json(json!({ "result": "approved" })).into_response(),
        Ok(DecideAck::Denied) => axum::Json(json!({ "result": "denied" })).into_response(),
        Ok(DecideAck::Recorded { votes, quorum }) => {
            axum::Json(json!({ "result": "recorded", "votes": votes, "quorum": quorum }))
                .into_response()
        }
        Err(e) => {
            let status = match e {
                DecideError::UnknownRequest { .. } => StatusCode::NOT_FOUND,
                DecideError::OwnAgent { .. } | DecideError::NotAnApprover { .. } => {
                    StatusCode::FORBIDDEN
                }
                DecideError::BindingMismatch { .. }
                | DecideError::AlreadyDecided { .. }
                | DecideError::Expired { .. }
                | DecideError::AlreadyVoted { .. } => StatusCode::CONFLICT,
            };
            error(status, e.to_string())
        }
    }
}

async fn approve(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    let who = match authenticate(&st, &headers) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let b = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if b.reason.is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "request body: \"reason\" applies to deny only",
        );
    }
    decide_response(
        st.gate
            .decide(&id, b.binding.as_deref(), who, Verdict::Approve),
    )
}

async fn deny(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    let who = match authenticate(&st, &headers) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let b = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    decide_response(st.gate.decide(
        &id,
        b.binding.as_deref(),
        who,
        Verdict::Deny { reason: b.reason },
    ))
}

#[cfg(test)]
mod tests {
    //! Driven through a real socket and the CLI client, so both are covered.
    use super::*;
    use crate::approval::cli::{self, request};
    use crate::approval::tests::{TestNotifier, request as approval_request};
    use crate::approval::{NoopObserver, Outcome};

    const ALICE: &str = "alice-token-0123456789";
    const OWNER: &str = "owner-token-0123456789";
    const MALLORY: &str = "mallory-token-01234567";

    async fn app() -> (Gate, String) {
        let gate = Gate::new(Arc::new(TestNotifier::default()), Arc::new(NoopObserver));
        let tokens = ApiTokens::new(&[
            ApiToken {
                token: ALICE.into(),
                identity: "api:alice".into(),
            },
            ApiToken {
                token: OWNER.into(),
                identity: "owner".into(),
            },
            ApiToken {
                token: MALLORY.into(),
                identity: "api:mallory".into(),
            },
        ]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(axum::serve(listener, router(gate.clone(), tokens)).into_future());
        (gate, url)
    }

    async fn call(
        url: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let (s, b) = request(url, method, path, token, Some(body.to_string()))
            .await
            .unwrap();
        (
            s,
            serde_json::from_str(&b).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test]
    async fn api_requires_a_known_bearer_token() {
        let (_, url) = app().await;
        assert_eq!(call(&url, "GET", "/approvals", None, "").await.0, 401);
        assert_eq!(
            call(&url, "GET", "/approvals", Some("nope"), "").await.0,
            401
        );
        let (s, v) = call(&url, "GET", "/approvals", Some(ALICE), "").await;
        assert_eq!(s, 200);
        assert_eq!(v["pending"], json!([]));
        let err = cli::cli_list(&url, "wrong").await.unwrap_err();
        assert!(matches!(err, cli::Error::Api { status: 401, .. }), "{err}");
    }

    #[tokio::test]
    async fn api_lists_shows_and_denies_with_reason() {
        let (gate, url) = app().await;
        let mut p = gate
            .submit(approval_request(&["api:alice"], 1))
            .await
            .unwrap();
        let id = p.id().to_string();
        let listed = cli::cli_list(&url, ALICE).await.unwrap();
        assert!(listed.contains(&id), "{listed}");
        let shown: serde_json::Value =
            serde_json::from_str(&cli::cli_show(&url, ALICE, &id).await.unwrap()).unwrap();
        assert_eq!(shown["sql"], json!("DELETE FROM orders WHERE id = $1"));
        assert_eq!(shown["status"], json!("pending"));

        let err = cli::cli_deny(&url, MALLORY, &id, None).await.unwrap_err();
        assert!(matches!(err, cli::Error::Api { status: 403, .. }), "{err}");
        cli::cli_deny(&url, ALICE, &id, Some("wrong table"))
            .await
            .unwrap();
        match p.outcome().await {
            Outcome::Denied { by, reason } => {
                assert_eq!(by.id, "api:alice");
                assert_eq!(by.via, "api");
                assert_eq!(reason.as_deref(), Some("wrong table"));
            }
            o => panic!("unexpected {o:?}"),
        }
        let err = cli::cli_approve(&url, ALICE, &id).await.unwrap_err();
        assert!(
            matches!(err, cli::Error::Api { status: 409, .. }),
            "a decided request refuses later calls: {err}"
        );
        let err = cli::cli_show(&url, ALICE, "ffff").await.unwrap_err();
        assert!(matches!(err, cli::Error::Api { status: 404, .. }), "{err}");
        let shown = cli::cli_show(&url, ALICE, &id).await.unwrap();
        assert!(
            shown.contains("\"denied\""),
            "decided requests stay visible: {shown}"
        );
    }

    #[tokio::test]
    async fn api_owner_cannot_approve_and_binding_is_checked() {
        let (gate, url) = app().await;
        let mut p = gate.submit(approval_request(&[], 1)).await.unwrap();
        let id = p.id().to_string();
        let err = cli::cli_approve(&url, OWNER, &id).await.unwrap_err();
        assert!(err.to_string().contains("owns this agent"), "{err}");
        let path = format!("/approvals/{id}/approve");
        assert_eq!(
            call(&url, "POST", &path, Some(ALICE), r#"{"binding":"00"}"#)
                .await
                .0,
            409
        );
        assert_eq!(
            call(&url, "POST", &path, Some(ALICE), "{not json").await.0,
            400
        );
        assert_eq!(
            call(&url, "POST", &path, Some(ALICE), r#"{"reason":"x"}"#)
                .await
                .0,
            400
        );
        let body = format!(r#"{{"binding":"{}"}}"#, p.binding());
        let (s, v) = call(&url, "POST", &path, Some(ALICE), &body).await;
        assert_eq!((s, v["result"].as_str()), (200, Some("approved")));
        assert!(matches!(p.outcome().await, Outcome::Approved { .. }));
    }
}
