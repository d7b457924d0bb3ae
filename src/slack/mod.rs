//! Slack as the reviewers' channel: posting requests, editing them after the
//! decision, and receiving button clicks.
//!
//! Place in the flow: [`SlackNotifier`] is the [`Notifier`] the app gives the
//! approval [`Gate`]; clicks come back either through the HTTP endpoint
//! ([`interactions_router`], mounted on the admin port at `/slack/interactions`,
//! signature and timestamp checked) or through Socket Mode ([`run_socket_mode`],
//! an outbound websocket, no public URL). Both end in [`handle_interaction`],
//! which calls [`Gate::decide`] and answers refusals with an ephemeral message.
//! This module knows nothing of SQL beyond rendering the text it is given.
//!
//! Deny reasons: the message carries an optional text input above the
//! buttons; Slack sends its current value with every click, so Deny records
//! what the reviewer typed (or "no reason given") in one click. No modal,
//! which keeps the Socket Mode acknowledgement path trivial. The admin API
//! and CLI take a reason too (`pg-airlock approvals deny <id> --reason ...`).
//!
//! Transport: slack-morphism's hyper client with its base URL overridable
//! (`slack.api_url`) so tests and Slack-compatible servers work; TLS through
//! rustls with the ring provider, the one provider in this build.

mod http;
mod render;
mod socket;

pub use http::{INTERACTIONS_PATH, interactions_router};
pub use render::message as render_message;
pub use socket::run_socket_mode;

use crate::approval::{
    ACTION_APPROVE, ACTION_DENY, DecideAck, Decider, Gate, MessageRef, Notifier, PendingView,
    SlackConfig, Verdict, parse_button_value,
};
use futures::future::BoxFuture;
use slack_morphism::prelude::*;
use std::sync::Arc;

/// Block and action ids of the deny-reason input in an approval message.
pub const REASON_BLOCK: &str = "airlock_reason";
pub const REASON_ACTION: &str = "airlock_reason_text";
/// Longest reason kept (Slack enforces it in the input; checked again here,
/// since anyone holding the signing secret can send any payload).
pub const MAX_REASON_CHARS: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("slack: cannot build the TLS client configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("slack: {what} is not configured (slack.{key})")]
    Missing {
        what: &'static str,
        key: &'static str,
    },
    #[error("slack socket mode: {0}")]
    SocketMode(#[source] slack_morphism::errors::SlackClientError),
}

/// The slack-morphism client type used here.
pub type Client = SlackClient<SlackClientHyperHttpsConnector>;

/// Builds the Web API client for `api_url` (no trailing slash).
///
/// The connector accepts `http://` as well as `https://`: config validation
/// only lets plain http through for loopback addresses (tests, local relays).
pub fn build_client(api_url: &str) -> Result<Arc<Client>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "skipping unreadable native root certificate");
    }
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        // Minimal containers have no CA bundle; Slack's chain is in Mozilla's set.
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let connector = SlackClientHyperConnector::with_connector(https).with_slack_api_url(api_url);
    Ok(Arc::new(SlackClient::new(connector)))
}

fn token(value: &str) -> SlackApiToken {
    SlackApiToken::new(SlackApiTokenValue(value.to_string()))
}

/// Posts and edits approval messages with the bot token.
pub struct SlackNotifier {
    client: Arc<Client>,
    bot: SlackApiToken,
    default_channel: Option<String>,
    admin_url: Option<String>,
}

impl std::fmt::Debug for SlackNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackNotifier")
            .field("default_channel", &self.default_channel)
            .finish_non_exhaustive()
    }
}

impl SlackNotifier {
    pub fn new(cfg: &SlackConfig) -> Result<SlackNotifier, Error> {
        Ok(SlackNotifier {
            client: build_client(&cfg.api_url)?,
            bot: token(&cfg.bot_token),
            default_channel: cfg.default_channel.clone(),
            admin_url: cfg.admin_url.clone(),
        })
    }

    fn content(&self, view: &PendingView) -> SlackMessageContent {
        let (text, blocks) = render::message(view, self.admin_url.as_deref());
        SlackMessageContent::new()
            .with_text(text)
            .with_blocks(blocks)
    }
}

fn api_err(method: &str, e: slack_morphism::errors::SlackClientError) -> String {
    format!("{method}: {e}")
}

impl Notifier for SlackNotifier {
    fn post<'a>(&'a self, view: &'a PendingView) -> BoxFuture<'a, Result<MessageRef, String>> {
        Box::pin(async move {
            let channel = view.channel.clone().ok_or(
                "no Slack channel: the rule names none and slack.default_channel is not set",
            )?;
            let session = self.client.open_session(&self.bot);
            let req =
                SlackApiChatPostMessageRequest::new(SlackChannelId(channel), self.content(view))
                    .with_unfurl_links(false)
                    .with_unfurl_media(false);
            let resp = session
                .chat_post_message(&req)
                .await
                .map_err(|e| api_err("chat.postMessage", e))?;
            let msg = MessageRef {
                channel: resp.channel.0,
                ts: resp.ts.0,
            };
            if render::sql_is_truncated(view) {
                // Best effort: the message itself already points to the admin API.
                let reply = SlackApiChatPostMessageRequest::new(
                    SlackChannelId(msg.channel.clone()),
                    SlackMessageContent::new()
                        .with_text(render::full_sql_reply(view, self.admin_url.as_deref())),
                )
                .with_thread_ts(SlackTs(msg.ts.clone()));
                if let Err(e) = session.chat_post_message(&reply).await {
                    tracing::warn!(request_id = %view.id, error = %e, "could not post the full SQL text as a thread reply");
                }
            }
            Ok(msg)
        })
    }

    fn update<'a>(
        &'a self,
        msg: &'a MessageRef,
        view: &'a PendingView,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let req = SlackApiChatUpdateRequest::new(
                SlackChannelId(msg.channel.clone()),
                self.content(view),
                SlackTs(msg.ts.clone()),
            );
            self.client
                .open_session(&self.bot)
                .chat_update(&req)
                .await
                .map_err(|e| api_err("chat.update", e))?;
            Ok(())
        })
    }

    fn ephemeral<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let req = SlackApiChatPostEphemeralRequest::new(
                SlackChannelId(channel.to_string()),
                SlackUserId(user.to_string()),
                SlackMessageContent::new().with_text(render::esc(text)),
            );
            self.client
                .open_session(&self.bot)
                .chat_post_ephemeral(&req)
                .await
                .map_err(|e| api_err("chat.postEphemeral", e))?;
            Ok(())
        })
    }

    fn group_members<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(async move {
            let req = SlackApiUserGroupsUsersListRequest::new(SlackUserGroupId(group.to_string()))
                .with_include_disabled(false);
            let resp = self
                .client
                .open_session(&self.bot)
                .usergroups_users_list(&req)
                .await
                .map_err(|e| api_err("usergroups.users.list", e))?;
            Ok(resp.users.into_iter().map(|u| u.0).collect())
        })
    }

    fn default_channel(&self) -> Option<String> {
        self.default_channel.clone()
    }
}

/// Applies a Slack interaction (from HTTP or Socket Mode) to the gate.
///
/// Only `block_actions` on our two buttons matter; everything else is ignored.
/// Refusals and partial quorums are answered with an ephemeral message to the
/// clicker (on a background task: the caller must acknowledge Slack at once).
pub fn handle_interaction(gate: &Gate, event: &SlackInteractionEvent) {
    let SlackInteractionEvent::BlockActions(ev) = event else {
        tracing::debug!("ignoring non-button slack interaction");
        return;
    };
    let Some(user) = &ev.user else {
        tracing::warn!("slack block_actions without a user; ignored");
        return;
    };
    let channel = ev
        .channel
        .as_ref()
        .map(|c| c.id.0.clone())
        .or_else(|| match &ev.container {
            SlackInteractionActionContainer::Message(m) => {
                m.channel_id.as_ref().map(|c| c.0.clone())
            }
            SlackInteractionActionContainer::MessageAttachment(m) => {
                m.channel_id.as_ref().map(|c| c.0.clone())
            }
            SlackInteractionActionContainer::View(_) => None,
        });
    for action in ev.actions.iter().flatten() {
        let verdict = match action.action_id.0.as_str() {
            ACTION_APPROVE => Verdict::Approve,
            ACTION_DENY => Verdict::Deny {
                reason: deny_reason(ev.state.as_ref()),
            },
            _ => continue,
        };
        let reply = |text: String| {
            if let Some(ch) = &channel {
                gate.notify_ephemeral(ch.clone(), user.id.0.clone(), text);
            }
        };
        let Some((id, binding)) = action.value.as_deref().and_then(parse_button_value) else {
            tracing::warn!(user = %user.id.0, "slack button without a valid request value");
            reply("This button does not name an approval request; nothing was changed.".into());
            continue;
        };
        let decider = Decider {
            id: user.id.0.clone(),
            name: user.name.clone().or_else(|| user.username.clone()),
            via: "slack",
        };
        match gate.decide(id, Some(binding), decider, verdict) {
            Ok(DecideAck::Recorded { votes, quorum }) => {
                reply(format!("Your approval is recorded ({votes} of {quorum})."))
            }
            Ok(DecideAck::Approved | DecideAck::Denied) => {}
            Err(e) => {
                tracing::info!(request_id = id, user = %user.id.0, reason = %e, "slack click refused");
                reply(format!("Refused: {e}"));
            }
        }
    }
}

/// What the reviewer typed into the message's reason input, trimmed and
/// capped; `None` when empty or absent.
fn deny_reason(state: Option<&SlackActionState>) -> Option<String> {
    let typed = state?
        .values
        .get(&SlackBlockId(REASON_BLOCK.into()))?
        .get(&SlackActionId(REASON_ACTION.into()))?
        .value
        .as_deref()?
        .trim();
    (!typed.is_empty()).then(|| typed.chars().take(MAX_REASON_CHARS).collect())
}

#[cfg(test)]
#[path = "../../tests/integration/fake_slack.rs"]
mod fake_slack;
#[cfg(test)]
mod tests;
