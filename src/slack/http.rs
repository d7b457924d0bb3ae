//! `POST /slack/interactions`: Slack's HTTP interactivity endpoint.
//!
//! Slack signs each request: `X-Slack-Signature: v0=HMAC-SHA256(secret,
//! "v0:{timestamp}:{raw body}")` with `X-Slack-Request-Timestamp`. The check
//! runs on the raw bytes before anything is parsed (slack-morphism's
//! `SlackEventSignatureVerifier`, constant-time, 5-minute window). A missing or
//! wrong signature is 401; a malformed or stale timestamp with a valid
//! signature is 400 (a replay of a once-valid request); a body that is not a
//! form with a JSON `payload` is 400. Accepted clicks answer 200 at once; the
//! message edit and any ephemeral reply run on background tasks.

use super::handle_interaction;
use crate::approval::Gate;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::{
    SlackEventSignatureVerifier, SlackEventSignatureVerifierError,
};
use std::sync::Arc;

/// Where the router listens; configure this path in the Slack app.
pub const INTERACTIONS_PATH: &str = "/slack/interactions";

#[derive(Clone)]
struct HttpState {
    gate: Gate,
    verifier: Arc<SlackEventSignatureVerifier>,
}

/// The interactivity endpoint; the app merges it into the admin router.
pub fn interactions_router(gate: Gate, signing_secret: &str) -> Router {
    let verifier = Arc::new(SlackEventSignatureVerifier::new(&SlackSigningSecret(
        signing_secret.to_string(),
    )));
    Router::new()
        .route(INTERACTIONS_PATH, post(interaction))
        .with_state(HttpState { gate, verifier })
}

async fn interaction(
    State(st): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(signature) = header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER) else {
        return (StatusCode::UNAUTHORIZED, "missing signature");
    };
    let Some(timestamp) = header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP) else {
        return (StatusCode::BAD_REQUEST, "missing timestamp");
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return (StatusCode::BAD_REQUEST, "body is not UTF-8");
    };
    if let Err(e) = st.verifier.verify(signature, text, timestamp) {
        tracing::warn!(error = %e, "rejected slack interaction");
        return match e {
            SlackEventSignatureVerifierError::IncorrectOrExpiredTimestampError(_) => {
                (StatusCode::BAD_REQUEST, "stale or malformed timestamp")
            }
            SlackEventSignatureVerifierError::CryptoInitError(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "signature check unavailable",
            ),
            _ => (StatusCode::UNAUTHORIZED, "bad signature"),
        };
    }
    let Some(payload) = form_field(text, "payload") else {
        return (StatusCode::BAD_REQUEST, "no payload field");
    };
    let event: SlackInteractionEvent = match serde_json::from_str(&payload) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable slack interaction payload");
            return (StatusCode::BAD_REQUEST, "unreadable payload");
        }
    };
    handle_interaction(&st.gate, &event);
    (StatusCode::OK, "")
}

/// The value of `name` in an `application/x-www-form-urlencoded` body.
pub(crate) fn form_field(body: &str, name: &str) -> Option<String> {
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (percent_decode(k)? == name)
            .then(|| percent_decode(v))
            .flatten()
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        assert_eq!(
            form_field("a=1&payload=%7B%22x%22%3A+1%7D", "payload").as_deref(),
            Some("{\"x\": 1}")
        );
        assert_eq!(
            form_field("payload=%E2%9C%85", "payload").as_deref(),
            Some("✅")
        );
        assert_eq!(form_field("payload=%zz", "payload"), None);
        assert_eq!(form_field("payload=%4", "payload"), None);
        assert_eq!(form_field("other=1", "payload"), None);
    }
}
