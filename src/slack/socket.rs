//! Socket Mode: clicks arrive over an outbound websocket, so pg-airlock needs
//! no public URL.
//!
//! slack-morphism's listener calls `apps.connections.open` with the app-level
//! token (through the same overridable base URL as every other call), opens the
//! websocket it is given, reconnects on its own, and acknowledges each envelope
//! after our callback returns. The callback only calls the synchronous
//! [`Gate::decide`] and schedules message edits, so acknowledgements stay well
//! inside Slack's 3-second limit. Its callbacks are plain `fn` pointers, so the
//! gate travels in the listener's user state.

use super::{Error, build_client, handle_interaction, token};
use crate::approval::{Gate, SlackConfig};
use slack_morphism::prelude::*;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What the callbacks need, stored in the listener's user state.
struct SocketState {
    gate: Gate,
}

/// Runs the Socket Mode listener until `cancel` fires.
///
/// # Errors
/// No app token configured, or the client cannot be built. Connection
/// failures are not errors: the listener logs them and retries.
pub async fn run_socket_mode(
    gate: Gate,
    cfg: &SlackConfig,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let app_token = cfg.app_token.as_deref().ok_or(Error::Missing {
        what: "app-level token",
        key: "app_token_env",
    })?;
    let client = build_client(&cfg.api_url)?;
    let env = SlackClientEventsListenerEnvironment::new(client)
        .with_error_handler(on_error)
        .with_user_state(SocketState { gate });
    let callbacks = SlackSocketModeListenerCallbacks::new().with_interaction_events(on_interaction);
    let listener = SlackClientSocketModeListener::new(
        &SlackClientSocketModeConfig::new(),
        Arc::new(env),
        callbacks,
    );
    listener
        .listen_for(&token(app_token))
        .await
        .map_err(Error::SocketMode)?;
    listener.start().await;
    tracing::info!("slack socket mode listener started");
    cancel.cancelled().await;
    listener.shutdown().await;
    Ok(())
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<SlackHyperClient>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let gate = state
        .read()
        .await
        .get_user_state::<SocketState>()
        .map(|s| s.gate.clone());
    match gate {
        Some(gate) => handle_interaction(&gate, &event),
        None => {
            tracing::error!("slack socket mode: gate missing from listener state; click ignored")
        }
    }
    // Always acknowledged: a refused click must not be redelivered.
    Ok(())
}

fn on_error(
    err: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<SlackHyperClient>,
    _state: SlackClientEventsUserState,
) -> HttpStatusCode {
    tracing::warn!(error = %err, "slack socket mode error");
    // OK = acknowledge the envelope anyway (nothing useful comes of a redelivery).
    HttpStatusCode::OK
}
