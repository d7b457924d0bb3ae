//! The Postgres wire: accepting clients (TLS, startup, authentication),
//! logging in upstream, and relaying a session's messages through the
//! policy step.
//!
//! Message path: `client::accept` -> `session::run` { `Inbound` frames
//! client bytes -> `policy::Policy::decide` -> forward or refuse;
//! `outbound` relays server bytes, tracking ReadyForQuery }.

pub mod auth;
pub mod cancel;
pub mod client;
pub mod decided;
pub mod frame;
pub mod gated;
pub mod halves;
pub mod inflight;
pub mod io;
pub mod messages;
pub mod params;
pub mod policy;
pub mod record;
pub mod session;
pub mod sqlstate;
pub mod tls;
pub mod upstream;

use crate::config::{AgentCredential, Config};
use crate::metrics::Metrics;
use auth::{MockVerifiers, ScramVerifier};
use pgwire::api::auth::sasl::scram::ScramServerAuth;
use std::collections::HashMap;
use std::sync::Arc;

/// Everything sessions share. Built once at startup.
pub struct Proxy {
    pub config: Arc<Config>,
    pub connector: upstream::Connector,
    pub verifiers: HashMap<String, ScramVerifier>,
    pub mock: MockVerifiers,
    pub scram_plain: ScramServerAuth,
    /// With the listener certificate configured, so TLS clients can use
    /// SCRAM-SHA-256-PLUS (channel binding).
    pub scram_tls: ScramServerAuth,
    pub tls_acceptor: Option<tokio_rustls::TlsAcceptor>,
    pub cancel: Arc<cancel::Registry>,
    pub metrics: Arc<Metrics>,
    pub engine: crate::engine::Engine,
    pub audit: crate::audit::Auditor,
    pub gate: crate::approval::Gate,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tls(#[from] tls::Error),
    #[error("listener certificate {path} cannot be used for SCRAM channel binding: {message}")]
    ChannelBinding {
        path: std::path::PathBuf,
        message: String,
    },
}

impl Proxy {
    pub fn new(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        engine: crate::engine::Engine,
        audit: crate::audit::Auditor,
        gate: crate::approval::Gate,
    ) -> Result<Proxy, Error> {
        let verifiers = config
            .agents
            .values()
            .map(|a| {
                let v = match &a.credential {
                    AgentCredential::Scram(v) => v.clone(),
                    AgentCredential::Password(p) => ScramVerifier::from_password(&p.0),
                };
                (a.name.clone(), v)
            })
            .collect();
        let mut scram_tls = ScramServerAuth::new();
        let tls_acceptor = match &config.listen.tls {
            Some(t) => {
                let pem = std::fs::read(&t.cert).map_err(|source| tls::Error::Read {
                    path: t.cert.clone(),
                    source,
                })?;
                scram_tls
                    .configure_certificate(&pem)
                    .map_err(|e| Error::ChannelBinding {
                        path: t.cert.clone(),
                        message: e.to_string(),
                    })?;
                Some(tokio_rustls::TlsAcceptor::from(tls::server_config(t)?))
            }
            None => None,
        };
        let connector = upstream::Connector {
            tls: tls::client_config(config.upstream.tls, config.upstream.tls_ca.as_deref())?,
            cfg: config.upstream.clone(),
        };
        Ok(Proxy {
            config,
            connector,
            verifiers,
            mock: MockVerifiers::default(),
            scram_plain: ScramServerAuth::new(),
            scram_tls,
            tls_acceptor,
            cancel: Arc::new(cancel::Registry::default()),
            metrics,
            engine,
            audit,
            gate,
        })
    }

    /// Handle a CancelRequest: wake the session (it may be holding a
    /// statement for approval) and forward the cancel upstream, unless the
    /// held statement is all the session has going.
    pub async fn cancel_query(&self, pid: i32, secret: i32) {
        match self.cancel.resolve(pid, secret) {
            Some((upid, usecret, signal)) => {
                if signal.wake() {
                    // Only a held statement, never sent, was running: the
                    // session withdraws it and answers 57014 itself (with a
                    // server-side error, so transaction state matches). A
                    // cancel forwarded now could hit that very error
                    // statement and garble the answer.
                    return;
                }
                self.metrics.cancels_forwarded.inc();
                if let Err(e) = self.connector.cancel(upid, usecret).await {
                    tracing::warn!(error = %e, "forwarding cancel request failed");
                }
            }
            None => {
                self.metrics.cancels_rejected.inc();
                tracing::warn!(pid, "cancel request with unknown key ignored");
            }
        }
    }
}
