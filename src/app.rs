//! Wires the modules together and owns the process lifecycle: bind,
//! accept, run sessions, serve the admin port, shut down in order.
//!
//! Shutdown (STYLE 5): stop accepting; sessions finish their open work up
//! to `limits.shutdown_timeout`, then get 57P01; the admin server stops last.

use crate::admin;
use crate::approval::Gate;
use crate::approval::api::ApiTokens;
use crate::audit::Auditor;
use crate::audit::event::{Event, EventKind};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::wire::{self, Proxy, client, session};
use crate::workers::Workers;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Wire(#[from] wire::Error),
    #[error("rules refused:\n{0}")]
    Rules(String),
    #[error("audit trail: {0}")]
    Audit(#[from] crate::audit::Error),
    #[error(transparent)]
    Slack(#[from] crate::slack::Error),
    #[error("cannot start the session threads: {0}")]
    Workers(std::io::Error),
}

/// A running proxy: bound addresses and a handle to stop it. Tests and
/// `main` use the same type.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    pub proxy: Arc<Proxy>,
    shutdown: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Begin graceful shutdown and wait for it to finish.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.done.await;
    }

    pub fn token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Wait until the proxy has stopped (after the token is cancelled).
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// Bind the listeners and start serving in the background.
pub async fn start(config: Config) -> Result<Running, Error> {
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::default());
    let store = Arc::new(
        crate::rules::RuleStore::load(config.rules.paths.clone())
            .map_err(|e| Error::Rules(crate::rules::format_errors(&e)))?,
    );
    let engine = crate::engine::Engine::new(
        store.clone(),
        config.limits.max_statement_bytes,
        config.limits.classify_cache_bytes,
    );
    let (auditor, audit_task) = Auditor::start(config.audit.clone()).await?;
    if !auditor.is_enabled() {
        tracing::warn!(
            "audit trail disabled (audit.enabled = false): statements, logins and approvals are not recorded"
        );
    }
    auditor.emit(policy_loaded(&store, "startup", Some(&config.source)));

    let notifier: Arc<dyn crate::approval::Notifier> = match &config.approval.slack {
        Some(slack) => Arc::new(crate::slack::SlackNotifier::new(slack)?),
        None => Arc::new(crate::approval::LogNotifier),
    };
    let gate = Gate::new(notifier, Arc::new(AuditObserver(auditor.clone())));
    let proxy = Arc::new(Proxy::new(
        config.clone(),
        metrics.clone(),
        engine,
        auditor.clone(),
        gate.clone(),
    )?);
    let listen = config.listen.address;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: listen,
        source,
    })?;
    let shutdown = CancellationToken::new();
    let workers = Workers::start(config.limits.session_threads).map_err(Error::Workers)?;

    let admin = match config.admin_address {
        Some(a) => {
            let l = TcpListener::bind(a)
                .await
                .map_err(|source| Error::Bind { addr: a, source })?;
            let admin_addr = l
                .local_addr()
                .map_err(|source| Error::Bind { addr: a, source })?;
            let registry = proxy.cancel.clone();
            let audit_enabled = if auditor.is_enabled() { 1.0 } else { 0.0 };
            let state = admin::AdminState {
                metrics: metrics.clone(),
                gauges: Arc::new(move || {
                    vec![
                        (
                            "airlock_cancel_keys",
                            "Cancel keys registered",
                            registry.len() as f64,
                        ),
                        (
                            "airlock_audit_enabled",
                            "1 if the audit trail is on, 0 if audit.enabled = false",
                            audit_enabled,
                        ),
                    ]
                }),
            };
            let mut router = admin::router(state).merge(crate::approval::api::router(
                gate.clone(),
                ApiTokens::new(&config.approval.api_tokens),
            ));
            if let Some(slack) = &config.approval.slack
                && slack.mode == crate::approval::SlackMode::Http
                && let Some(secret) = &slack.signing_secret
            {
                router = router.merge(crate::slack::interactions_router(gate.clone(), secret));
            }
            let token = shutdown.clone();
            let task = tokio::spawn(async move {
                let serve = axum::serve(l, router)
                    .with_graceful_shutdown(async move { token.cancelled().await });
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "admin server failed");
                }
            });
            Some((admin_addr, task))
        }
        None => None,
    };
    let admin_addr = admin.as_ref().map(|a| a.0);

    if let Some(slack) = config.approval.slack.clone()
        && slack.mode == crate::approval::SlackMode::Socket
    {
        let (gate, token) = (gate.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::slack::run_socket_mode(gate, &slack, token).await {
                tracing::error!(error = %e, "Slack Socket Mode listener stopped; approvals only through the admin API");
            }
        });
    }
    spawn_rules_reloader(
        store.clone(),
        metrics.clone(),
        auditor.clone(),
        config.rules.reload_interval,
        shutdown.clone(),
    );
    tracing::info!(
        %addr, admin = ?admin_addr, upstream = %proxy.connector.addr(), agents = config.agents.len(),
        rules_version = %store.current().version(), session_threads = workers.threads(), "pg-airlock listening"
    );
    let done = tokio::spawn(serve(
        listener,
        workers,
        proxy.clone(),
        shutdown.clone(),
        admin.map(|a| a.1),
        audit_task,
    ));
    Ok(Running {
        addr,
        admin_addr,
        proxy,
        shutdown,
        done,
    })
}

/// Accept loop. Returns when `shutdown` is cancelled and every session
/// has ended.
async fn serve(
    listener: TcpListener,
    workers: Workers,
    proxy: Arc<Proxy>,
    shutdown: CancellationToken,
    admin: Option<tokio::task::JoinHandle<()>>,
    audit_task: crate::audit::AuditTask,
) {
    let tracker = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(proxy.config.limits.max_sessions as usize));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::error!(error = %e, "accept failed");
                    crate::timers::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Replies are written whole, one write per server read: Nagle
        // would only delay the small ones (a lone ReadyForQuery, a notice
        // behind a held statement) waiting on the client's delayed ACK.
        let _ = tcp.set_nodelay(true);
        // The session runs on a session thread (crate::workers): the socket
        // leaves this runtime's reactor and joins that thread's.
        let tcp = match tcp.into_std() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, %peer, "cannot hand the connection to a session thread");
                continue;
            }
        };
        let (thread, seat) = workers.pick();
        let proxy = proxy.clone();
        let token = shutdown.clone();
        let limit = limit.clone();
        tracker.spawn_on(
            async move {
                let _seat = seat;
                let tcp = match TcpStream::from_std(tcp) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::error!(error = %e, %peer, "cannot register the connection on its session thread");
                        return;
                    }
                };
                // Cancel requests and logins share the listener; the permit is
                // taken only once a connection is a session candidate.
                let Ok(permit) = limit.try_acquire_owned() else {
                    proxy.metrics.connections_rejected.inc();
                    reject_busy(tcp).await;
                    return;
                };
                handle(proxy, tcp, peer, token).await;
                drop(permit);
            },
            thread,
        );
    }
    drop(listener);
    tracker.close();
    tracing::info!(
        sessions = tracker.len(),
        "no longer accepting; waiting for sessions"
    );
    // Pending approvals become audited denials; their sessions answer
    // their clients and wind down with the rest.
    proxy.gate.shutdown().await;
    tracker.wait().await;
    workers.stop().await;
    if let Some(a) = admin {
        let _ = a.await;
    }
    let grace = proxy
        .config
        .limits
        .shutdown_timeout
        .max(std::time::Duration::from_secs(5));
    match crate::timers::timeout(grace, proxy.audit.shutdown()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "audit trail did not close cleanly"),
        Err(_) => tracing::error!("audit trail did not flush within the shutdown deadline"),
    }
    if let Ok(Err(e)) = crate::timers::timeout(grace, audit_task.join()).await {
        tracing::error!(error = %e, "audit writer failed");
    }
    tracing::info!("pg-airlock stopped");
}

async fn handle(proxy: Arc<Proxy>, tcp: TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
    let est = tokio::select! {
        // Boxed: the login's state (TLS, SCRAM both ways) is larger than
        // the relay's, and unboxed it would size every session's task for
        // its whole life (an idle session's largest allocation).
        r = Box::pin(client::accept(&proxy, tcp, peer)) => r,
        _ = shutdown.cancelled() => return,
    };
    match est {
        Ok(est) => session::run(proxy, est, shutdown).await,
        Err(client::Refused::Cancel | client::Refused::Closed) => {}
        Err(e) => {
            proxy.metrics.connections_rejected.inc();
            tracing::info!(%peer, reason = %e, "connection refused before login");
        }
    }
}

async fn reject_busy(mut tcp: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let mut out = bytes::BytesMut::new();
    wire::messages::error(
        &mut out,
        wire::messages::Severity::Fatal,
        wire::sqlstate::TOO_MANY_CONNECTIONS,
        "too many sessions on pg-airlock",
        None,
        None,
    );
    let _ = crate::timers::timeout(std::time::Duration::from_secs(1), tcp.write_all(&out)).await;
}

/// Rule reloads: polled every `interval` and on SIGHUP. Each change (or
/// refused change) is audited with the version of the rules in force, so
/// every decision in the trail can name its policy.
fn spawn_rules_reloader(
    store: Arc<crate::rules::RuleStore>,
    metrics: Arc<Metrics>,
    audit: Auditor,
    interval: std::time::Duration,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = crate::timers::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error = String::new();
        loop {
            #[cfg(unix)]
            let hup_recv = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hup_recv = std::future::pending::<()>();
            let trigger = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => "file change",
                _ = hup_recv => "SIGHUP",
            };
            let s = store.clone();
            match tokio::task::spawn_blocking(move || s.reload()).await {
                Ok(Ok(crate::rules::ReloadOutcome::Reloaded { previous, version })) => {
                    metrics.rules_reloads.inc();
                    last_error.clear();
                    tracing::info!(%previous, %version, trigger, "rules reloaded");
                    audit.emit(policy_loaded(&store, trigger, None));
                }
                Ok(Ok(_unchanged)) => {}
                Ok(Err(errors)) => {
                    let error = crate::rules::format_errors(&errors);
                    if error != last_error {
                        metrics.rules_reload_failures.inc();
                        tracing::warn!(%error, trigger, "new rules refused; previous rules stay in force");
                        audit.emit(Event::now(EventKind::PolicyReloadFailed(
                            crate::audit::event::PolicyReloadFailed {
                                sources: store
                                    .paths()
                                    .iter()
                                    .map(|p| p.display().to_string())
                                    .collect(),
                                error: error.clone(),
                                ruleset_in_force: store.current().version().to_string(),
                                trigger: trigger.to_string(),
                            },
                        )));
                        last_error = error;
                    }
                }
                Err(e) => tracing::error!(error = %e, "rules reload task failed"),
            }
        }
    });
}

fn policy_loaded(
    store: &crate::rules::RuleStore,
    trigger: &str,
    config: Option<&std::path::Path>,
) -> Event {
    let rules = store.current();
    Event::now(EventKind::PolicyLoaded(crate::audit::event::PolicyLoaded {
        ruleset: rules.version().to_string(),
        config: config.map(|p| p.display().to_string()),
        sources: rules
            .files()
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        rule_count: rules.rules().len(),
        trigger: trigger.to_string(),
    }))
}

/// Records what only the approval gate sees (votes, refused clicks) in the
/// audit trail. Requests and decisions are recorded by the session, durably,
/// before it acts on them.
struct AuditObserver(Auditor);

impl crate::approval::ApprovalObserver for AuditObserver {
    fn on_event(&self, ev: &crate::approval::ApprovalEvent) {
        use crate::approval::ApprovalEventKind as K;
        let (actor, action, outcome) = match &ev.kind {
            K::Voted { by, votes, quorum } => (
                by,
                "approval vote",
                format!("counted ({votes} of {quorum})"),
            ),
            K::Refused { who, why } => (who, "approval click refused", why.clone()),
            _ => return,
        };
        self.0.emit(Event::now(EventKind::AdminAction(
            crate::audit::event::AdminAction {
                actor: actor.label(),
                remote_addr: String::new(),
                action: action.to_string(),
                target: Some(ev.request_id.clone()),
                outcome,
            },
        )));
    }
}

/// Run until `signal` resolves, then shut down gracefully.
pub async fn run(config: Config, signal: impl Future<Output = ()>) -> Result<(), Error> {
    let running = start(config).await?;
    signal.await;
    tracing::info!("shutdown requested");
    running.shutdown().await;
    Ok(())
}

/// SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
