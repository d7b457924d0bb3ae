//! Approval configuration: the `[slack]` table and `[[api_token]]` entries.
//!
//! Two steps, like the rest of the config: [`RawApprovalConfig`] mirrors the
//! file (`deny_unknown_fields`, so typos fail), [`validate`] turns it into an
//! [`ApprovalConfig`] with secrets read from the environment, reporting every
//! problem at once with its key path. The file only names environment
//! variables; secrets never live in it.
//!
//! ```toml
//! [slack]
//! bot_token_env = "AIRLOCK_SLACK_BOT_TOKEN"
//! app_token_env = "AIRLOCK_SLACK_APP_TOKEN"          # mode = "socket"
//! signing_secret_env = "AIRLOCK_SLACK_SIGNING_SECRET" # mode = "http"
//! default_channel = "C0123456789"
//! mode = "socket"                                    # or "http": POST /slack/interactions on the admin port
//! # api_url = "https://slack.com/api"                # Slack-compatible servers, tests
//! # admin_url = "https://airlock.internal:9187"      # links to full SQL text in messages
//!
//! [[api_token]]
//! token_env = "AIRLOCK_TOKEN_ALICE"
//! identity = "api:alice"                             # or a Slack user id, to be the same person
//! ```

use serde::Deserialize;
use std::fmt;

/// Slack's own Web API base (slack-morphism appends `/<method>`).
pub const SLACK_API_URL: &str = "https://slack.com/api";

/// API tokens shorter than this are refused: they are bearer secrets.
const MIN_API_TOKEN_LEN: usize = 16;

/// Mirror of the approval part of the config file. The config module may embed
/// `slack` and `api_token` in its own root struct and build this to validate.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApprovalConfig {
    #[serde(default)]
    pub slack: Option<RawSlackConfig>,
    #[serde(default)]
    pub api_token: Vec<RawApiToken>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlackConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub bot_token_env: Option<String>,
    pub signing_secret_env: Option<String>,
    pub app_token_env: Option<String>,
    pub default_channel: Option<String>,
    pub api_url: Option<String>,
    pub mode: Option<String>,
    pub admin_url: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiToken {
    pub token_env: String,
    pub identity: String,
}

/// How Slack delivers button clicks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackMode {
    /// Outbound websocket (app-level token); no public URL needed.
    Socket,
    /// Slack POSTs to `/slack/interactions` on the admin port (signing secret).
    Http,
}

/// Validated approval configuration.
#[derive(Debug, Clone, Default)]
pub struct ApprovalConfig {
    /// `None`: approvals go through the admin API / CLI only.
    pub slack: Option<SlackConfig>,
    pub api_tokens: Vec<ApiToken>,
}

#[derive(Clone)]
pub struct SlackConfig {
    pub bot_token: String,
    /// Required in HTTP mode.
    pub signing_secret: Option<String>,
    /// Required in Socket Mode.
    pub app_token: Option<String>,
    pub default_channel: Option<String>,
    /// Without a trailing slash.
    pub api_url: String,
    pub mode: SlackMode,
    /// Base URL reviewers can open for the full request (`{admin_url}/approvals/{id}`).
    pub admin_url: Option<String>,
}

impl fmt::Debug for SlackConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets stay out of logs and panics.
        f.debug_struct("SlackConfig")
            .field("bot_token", &"<redacted>")
            .field(
                "signing_secret",
                &self.signing_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("app_token", &self.app_token.as_ref().map(|_| "<redacted>"))
            .field("default_channel", &self.default_channel)
            .field("api_url", &self.api_url)
            .field("mode", &self.mode)
            .field("admin_url", &self.admin_url)
            .finish()
    }
}

/// A bearer token for the admin API and who it speaks for.
#[derive(Clone)]
pub struct ApiToken {
    pub token: String,
    pub identity: String,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("token", &"<redacted>")
            .field("identity", &self.identity)
            .finish()
    }
}

/// Validates against the process environment.
///
/// # Errors
/// Every problem found, each starting with its key path (`slack.mode: …`).
pub fn validate(raw: RawApprovalConfig) -> Result<ApprovalConfig, Vec<String>> {
    validate_with(raw, &|name| std::env::var(name).ok())
}

/// [`validate`] with an injectable environment lookup (tests).
pub fn validate_with(
    raw: RawApprovalConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ApprovalConfig, Vec<String>> {
    let mut errs = Vec::new();
    let slack = raw
        .slack
        .filter(|s| s.enabled)
        .and_then(|s| check_slack(s, env, &mut errs));
    let api_tokens = check_tokens(raw.api_token, env, &mut errs);
    if errs.is_empty() {
        Ok(ApprovalConfig { slack, api_tokens })
    } else {
        Err(errs)
    }
}

/// Reads the secret named by `key = var` from the environment.
fn secret(
    key: &str,
    var: Option<&String>,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Vec<String>,
) -> Option<String> {
    let Some(var) = var else {
        errs.push(format!(
            "{key}: required (the name of an environment variable holding the secret)"
        ));
        return None;
    };
    if var.trim().is_empty() {
        errs.push(format!("{key}: empty environment variable name"));
        return None;
    }
    match env(var).map(|v| v.trim().to_string()) {
        Some(v) if !v.is_empty() => Some(v),
        _ => {
            errs.push(format!(
                "{key}: environment variable {var} is not set or empty"
            ));
            None
        }
    }
}

fn check_url(key: &str, url: &str, errs: &mut Vec<String>) -> Option<String> {
    let url = url.trim().trim_end_matches('/');
    let rest = if let Some(r) = url.strip_prefix("https://") {
        r
    } else if let Some(r) = url.strip_prefix("http://") {
        // Plain http would carry tokens in clear: only to this machine (tests,
        // a local Slack-compatible relay).
        let host = r.split(['/', ':']).next().unwrap_or("");
        let host = if r.starts_with('[') {
            r.split(']').next().unwrap_or("").trim_start_matches('[')
        } else {
            host
        };
        if !matches!(host, "127.0.0.1" | "localhost" | "::1") {
            errs.push(format!("{key}: plain http is allowed only for 127.0.0.1, ::1 or localhost, found {url:?}; use https"));
            return None;
        }
        r
    } else {
        errs.push(format!("{key}: expected an http(s):// URL, found {url:?}"));
        return None;
    };
    if rest.is_empty() || rest.starts_with('/') {
        errs.push(format!("{key}: URL has no host: {url:?}"));
        return None;
    }
    Some(url.to_string())
}

fn check_slack(
    raw: RawSlackConfig,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Vec<String>,
) -> Option<SlackConfig> {
    let n = errs.len();
    let mode = match raw.mode.as_deref().unwrap_or("socket") {
        "socket" => Some(SlackMode::Socket),
        "http" => Some(SlackMode::Http),
        other => {
            errs.push(format!(
                "slack.mode: expected \"socket\" or \"http\", found {other:?}"
            ));
            None
        }
    };
    let bot_token = secret("slack.bot_token_env", raw.bot_token_env.as_ref(), env, errs);
    let app_token = match (mode, &raw.app_token_env) {
        (Some(SlackMode::Socket), v) => secret("slack.app_token_env", v.as_ref(), env, errs),
        (_, Some(v)) => secret("slack.app_token_env", Some(v), env, errs),
        _ => None,
    };
    if app_token
        .as_deref()
        .is_some_and(|t| t.starts_with("xoxb-") || t.starts_with("xoxp-"))
    {
        errs.push("slack.app_token_env: holds a bot/user token; Socket Mode needs an app-level token (xapp-…)".to_string());
    }
    let signing_secret = match (mode, &raw.signing_secret_env) {
        (Some(SlackMode::Http), v) => secret("slack.signing_secret_env", v.as_ref(), env, errs),
        (_, Some(v)) => secret("slack.signing_secret_env", Some(v), env, errs),
        _ => None,
    };
    let default_channel = match raw.default_channel {
        Some(c) if c.trim().is_empty() => {
            errs.push("slack.default_channel: empty".to_string());
            None
        }
        c => c.map(|c| c.trim().to_string()),
    };
    let api_url = check_url(
        "slack.api_url",
        raw.api_url.as_deref().unwrap_or(SLACK_API_URL),
        errs,
    );
    let admin_url = raw
        .admin_url
        .as_deref()
        .and_then(|u| check_url("slack.admin_url", u, errs));
    if errs.len() > n {
        return None;
    }
    Some(SlackConfig {
        bot_token: bot_token?,
        signing_secret,
        app_token,
        default_channel,
        api_url: api_url?,
        mode: mode?,
        admin_url,
    })
}

fn check_tokens(
    raw: Vec<RawApiToken>,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Vec<String>,
) -> Vec<ApiToken> {
    let mut out: Vec<ApiToken> = Vec::new();
    for (i, t) in raw.into_iter().enumerate() {
        let key = format!("api_token[{i}]");
        let identity = t.identity.trim().to_string();
        if identity.is_empty() {
            errs.push(format!("{key}.identity: empty"));
        }
        let Some(token) = secret(&format!("{key}.token_env"), Some(&t.token_env), env, errs) else {
            continue;
        };
        if token.len() < MIN_API_TOKEN_LEN {
            errs.push(format!(
                "{key}.token_env: token in {} is shorter than {MIN_API_TOKEN_LEN} characters",
                t.token_env
            ));
            continue;
        }
        if let Some(j) = out.iter().position(|o| o.token == token) {
            errs.push(format!(
                "{key}.token_env: same token as api_token[{j}]; one token must name one identity"
            ));
            continue;
        }
        if !identity.is_empty() {
            out.push(ApiToken { token, identity });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(toml_text: &str, env: &[(&str, &str)]) -> Result<ApprovalConfig, Vec<String>> {
        let raw: RawApprovalConfig = toml::from_str(toml_text).expect("parse");
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        validate_with(raw, &|k| env.get(k).cloned())
    }

    #[test]
    fn socket_mode_config_reads_secrets_from_env() {
        let c = run(
            r#"
            [slack]
            bot_token_env = "BOT"
            app_token_env = "APP"
            default_channel = "C1"
            [[api_token]]
            token_env = "TOK"
            identity = "api:alice"
            "#,
            &[
                ("BOT", "xoxb-1"),
                ("APP", "xapp-1"),
                ("TOK", "0123456789abcdef0"),
            ],
        )
        .unwrap();
        let s = c.slack.unwrap();
        assert_eq!(s.mode, SlackMode::Socket);
        assert_eq!(s.bot_token, "xoxb-1");
        assert_eq!(s.api_url, SLACK_API_URL);
        assert_eq!(c.api_tokens[0].identity, "api:alice");
        assert!(
            !format!("{s:?}").contains("xoxb-1"),
            "Debug must redact secrets"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let errs = run(
            r#"
            [slack]
            mode = "webhook"
            api_url = "http://slack.example.com/api"
            [[api_token]]
            token_env = "SHORT"
            identity = "x"
            [[api_token]]
            token_env = "MISSING"
            identity = ""
            "#,
            &[("SHORT", "abc")],
        )
        .unwrap_err();
        let all = errs.join("\n");
        for needle in [
            "slack.mode: expected",
            "slack.bot_token_env: required",
            "slack.api_url: plain http",
            "api_token[0].token_env: token in SHORT is shorter",
            "api_token[1].identity: empty",
            "api_token[1].token_env: environment variable MISSING is not set",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }

    #[test]
    fn http_mode_needs_signing_secret_and_loopback_http_is_allowed() {
        let errs = run(
            "[slack]\nmode = \"http\"\nbot_token_env = \"B\"\n",
            &[("B", "x")],
        )
        .unwrap_err();
        assert!(
            errs[0].starts_with("slack.signing_secret_env: required"),
            "{errs:?}"
        );
        let c = run(
            "[slack]\nmode = \"http\"\nbot_token_env = \"B\"\nsigning_secret_env = \"S\"\napi_url = \"http://127.0.0.1:9/api/\"\n",
            &[("B", "x"), ("S", "s")],
        )
        .unwrap();
        assert_eq!(c.slack.unwrap().api_url, "http://127.0.0.1:9/api");
    }

    #[test]
    fn unknown_keys_and_duplicate_tokens_fail() {
        assert!(toml::from_str::<RawApprovalConfig>("[slack]\nbot_token = \"xoxb\"\n").is_err());
        let errs = run(
            "[[api_token]]\ntoken_env = \"A\"\nidentity = \"a\"\n[[api_token]]\ntoken_env = \"B\"\nidentity = \"b\"\n",
            &[("A", "0123456789abcdef"), ("B", "0123456789abcdef")],
        )
        .unwrap_err();
        assert!(errs[0].contains("same token as api_token[0]"), "{errs:?}");
    }

    #[test]
    fn disabled_slack_is_none_and_app_token_mixup_is_caught() {
        let c = run("[slack]\nenabled = false\n", &[]).unwrap();
        assert!(c.slack.is_none());
        let errs = run(
            "[slack]\nbot_token_env = \"B\"\napp_token_env = \"A\"\n",
            &[("B", "xoxb-1"), ("A", "xoxb-2")],
        )
        .unwrap_err();
        assert!(errs[0].contains("app-level token"), "{errs:?}");
    }
}
