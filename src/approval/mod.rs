//! Hold-and-approve: the state of every statement that waits for a human.
//!
//! Place in the flow: when the rules answer `NeedsApproval`, the session calls
//! [`Gate::submit`] with everything a reviewer needs to see, then awaits
//! [`Pending::outcome`] in a `select!` with client input (cancel, disconnect).
//! Reviewers decide through Slack (`crate::slack`, which calls [`Gate::decide`])
//! or through the admin API / CLI ([`api`], [`cli`]). The session forwards the
//! held bytes only if `outcome()` returned [`Outcome::Approved`], then reports the
//! execution result with [`Pending::finish`] so the Slack message can show it.
//!
//! Invariants this module keeps:
//! - One request, one terminal state. Each request has its own small mutex; the
//!   transition out of `Pending` happens under it, so a quorum-completing vote,
//!   the timeout, a withdrawal and shutdown race to one winner, and the loser
//!   observes the winner's result. Nothing is awaited while it is held, and the
//!   index of all requests is locked only to look up or insert an `Arc`, so
//!   hundreds of waiting requests do not slow each other or anyone else.
//! - An approval binds to one request: the id is 128 random bits, and the
//!   binding hash (session + SQL + parameter values) is part of every button
//!   value and is checked on click. A decided, expired or withdrawn request
//!   refuses every later click, so a vote cannot be replayed or applied twice.
//! - Fail closed: if the reviewer channel cannot be reached when the request is
//!   made, the outcome is [`Outcome::ChannelDown`]; a dropped [`Pending`] is
//!   withdrawn; shutdown turns every waiting request into a denial.
//!
//! Slack message edits run on background tasks: `decide` is synchronous (the
//! Slack Socket Mode listener must acknowledge quickly), and each request's edits
//! are serialised and always render the latest state, so the message never ends
//! on a stale status even if edits finish out of order.

pub mod api;
pub mod cli;
pub mod config;

pub use config::{ApprovalConfig, RawApprovalConfig, SlackConfig, SlackMode, validate};

pub use crate::audit::event::PreparedText;
use crate::rules::HoldSettings;
use futures::future::BoxFuture;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// Hold timeout used when a rule does not set one. Short on purpose: a held
/// statement inside a transaction keeps its locks while it waits.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest wait for the reviewer channel to accept the request message. Past
/// it the request fails closed with [`Outcome::ChannelDown`].
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one message edit or ephemeral reply.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for user-group resolution at submit.
const GROUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Decided requests stay visible (GET /approvals/{id}, refusals that name the
/// decision instead of "unknown request") this long.
const RETAIN_DECIDED: Duration = Duration::from_secs(3600);
/// How often `submit` sweeps the index for decided requests past retention.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How long `shutdown` waits for the last message edits.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The Slack `action_id`s of the two buttons.
pub const ACTION_APPROVE: &str = "airlock_approve";
pub const ACTION_DENY: &str = "airlock_deny";

/// Everything a reviewer sees about one held statement.
#[derive(Debug, Clone)]
pub struct ApprovalRequest {
    pub session_id: String,
    pub agent: String,
    /// The human responsible for the agent; never allowed to approve its requests.
    pub owner: Option<String>,
    pub client_addr: SocketAddr,
    pub database: String,
    pub application_name: String,
    pub sql: String,
    /// What the prepared statements `sql` EXECUTEs by name were prepared
    /// as: `EXECUTE x` alone says nothing about what runs.
    pub prepared: Vec<PreparedText>,
    /// Bound parameter values (extended protocol), text form; `None` is NULL.
    pub params: Vec<Option<String>>,
    /// The agent's stated reason (e.g. from a SQL comment or application_name).
    pub reason: Option<String>,
    pub categories: Vec<String>,
    pub rules: Vec<String>,
    /// "What it will change", computed by the session (EXPLAIN); rendered as lines.
    pub impact: Vec<String>,
    pub settings: HoldSettings,
}

/// Who decided. `id` is a Slack user id (`U…`) or an API identity from config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decider {
    pub id: String,
    pub name: Option<String>,
    /// `"slack"`, `"api"`, or `"system"` (shutdown).
    pub via: &'static str,
}

impl Decider {
    /// `slack:U123`, `api:alice`: who decided, with the channel they used.
    pub fn label(&self) -> String {
        if self.id.starts_with(&format!("{}:", self.via)) {
            self.id.clone()
        } else {
            format!("{}:{}", self.via, self.id)
        }
    }

    fn system() -> Decider {
        Decider {
            id: "pg-airlock".into(),
            name: None,
            via: "system",
        }
    }
}

/// A reviewer's verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Deny { reason: Option<String> },
}

/// What the session acts on. Exactly one is ever produced per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Forward the held statement, once.
    Approved { approvers: Vec<Decider> },
    /// SQLSTATE 42501 naming `by` and `reason`.
    Denied { by: Decider, reason: Option<String> },
    /// SQLSTATE 57014 naming the timeout.
    TimedOut { after: Duration },
    /// The reviewer channel is down: fail closed.
    ChannelDown { error: String },
}

/// Where the request message lives, so it can be edited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageRef {
    pub channel: String,
    pub ts: String,
}

/// Successful `decide`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecideAck {
    /// An approval was counted; more are needed.
    Recorded {
        votes: u32,
        quorum: u32,
    },
    Approved,
    Denied,
}

/// Why a click or API call was refused. The message is shown to the person who
/// clicked (Slack ephemeral reply, API error body), so it names the cause plainly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    #[error("approval request {id} is unknown (it may have been decided long ago)")]
    UnknownRequest { id: String },
    #[error("approval request {id}: this button or call is not bound to that statement")]
    BindingMismatch { id: String },
    #[error("approval request {id} is already {status}; nothing was changed")]
    AlreadyDecided { id: String, status: &'static str },
    #[error("approval request {id} has expired; the statement was not run")]
    Expired { id: String },
    #[error("approval request {id}: {who} owns this agent and cannot approve its requests")]
    OwnAgent { id: String, who: String },
    #[error("approval request {id}: {who} is not an approver for this rule")]
    NotAnApprover { id: String, who: String },
    #[error("approval request {id}: your approval is already counted ({votes} of {quorum})")]
    AlreadyVoted { id: String, votes: u32, quorum: u32 },
}

/// The reviewer's channel (Slack, or a log when Slack is not configured).
///
/// Futures are boxed by hand so the trait stays object-safe without the
/// `async-trait` crate.
pub trait Notifier: Send + Sync {
    /// Posts the request message; its [`MessageRef`] is used for later edits.
    fn post<'a>(&'a self, view: &'a PendingView) -> BoxFuture<'a, Result<MessageRef, String>>;
    /// Edits the request message in place to show `view`'s current state.
    fn update<'a>(
        &'a self,
        msg: &'a MessageRef,
        view: &'a PendingView,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// A reply only `user` sees (refused clicks).
    fn ephemeral<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Members of a user group (`S…`). The default refuses, which makes a rule
    /// naming a group fail closed where groups cannot be resolved.
    fn group_members<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(async move {
            Err(format!(
                "user group {group} cannot be resolved without Slack"
            ))
        })
    }
    /// Channel used when the rule names none.
    fn default_channel(&self) -> Option<String> {
        None
    }
}

/// Notifier used when Slack is not configured: requests are logged and decided
/// through the admin API or CLI.
#[derive(Debug, Default, Clone)]
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn post<'a>(&'a self, view: &'a PendingView) -> BoxFuture<'a, Result<MessageRef, String>> {
        Box::pin(async move {
            tracing::warn!(
                request_id = %view.id,
                agent = %view.agent,
                session_id = %view.session_id,
                rules = ?view.rules,
                "statement held for approval; decide with `pg-airlock approvals approve|deny {}`",
                view.id
            );
            Ok(MessageRef {
                channel: "log".into(),
                ts: view.id.clone(),
            })
        })
    }
    fn update<'a>(
        &'a self,
        _: &'a MessageRef,
        view: &'a PendingView,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            tracing::info!(request_id = %view.id, status = view.status, "approval request updated");
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
            tracing::info!(user, text, "approval refusal");
            Ok(())
        })
    }
}

/// Receives every state change, for the audit log.
///
/// Called synchronously, with no lock held, on whichever task caused the
/// change (often the Slack listener, which must acknowledge within seconds):
/// implementations must not block; queue to the audit writer instead.
pub trait ApprovalObserver: Send + Sync {
    fn on_event(&self, ev: &ApprovalEvent);
}

/// Observer that drops everything (tests, tools).
#[derive(Debug, Default, Clone)]
pub struct NoopObserver;
impl ApprovalObserver for NoopObserver {
    fn on_event(&self, _: &ApprovalEvent) {}
}

/// One audited step in a request's life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalEvent {
    pub request_id: String,
    /// Empty for refusals that name an unknown request id.
    pub session_id: String,
    pub agent: String,
    pub channel: Option<String>,
    pub binding: String,
    pub at: SystemTime,
    /// Time since the request was made.
    pub waited: Duration,
    pub kind: ApprovalEventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ApprovalEventKind {
    Requested {
        rules: Vec<String>,
        categories: Vec<String>,
        approvers: Vec<String>,
        quorum: u32,
        timeout: Duration,
    },
    /// The request could not be delivered; the session fails closed.
    ChannelDown {
        error: String,
    },
    /// One approval counted toward the quorum.
    Voted {
        by: Decider,
        votes: u32,
        quorum: u32,
    },
    /// A click or API call that changed nothing (not an approver, owner, replay…).
    Refused {
        who: Decider,
        why: String,
    },
    Approved {
        approvers: Vec<Decider>,
    },
    Denied {
        by: Decider,
        reason: Option<String>,
    },
    Expired {
        after: Duration,
    },
    Withdrawn {
        why: String,
    },
    /// The session ran the approved statement (command tag) or it failed.
    Finished {
        result: Result<String, String>,
    },
}

/// Read-only snapshot of one request: API responses and message rendering.
#[derive(Debug, Clone, Serialize)]
pub struct PendingView {
    pub id: String,
    pub binding: String,
    /// `pending`, `approved`, `denied`, `expired`, `withdrawn` or `failed`.
    pub status: &'static str,
    pub session_id: String,
    pub agent: String,
    pub owner: Option<String>,
    pub client_addr: String,
    pub database: String,
    pub application_name: String,
    pub sql: String,
    pub prepared: Vec<PreparedText>,
    pub params: Vec<Option<String>>,
    pub reason: Option<String>,
    pub categories: Vec<String>,
    pub rules: Vec<String>,
    pub impact: Vec<String>,
    pub channel: Option<String>,
    pub approvers: Vec<String>,
    pub quorum: u32,
    pub votes: Vec<Decider>,
    /// Unix seconds.
    pub requested_at: u64,
    pub expires_at: u64,
    pub timeout_secs: u64,
    pub decision: Option<DecisionView>,
    pub execution: Option<ExecutionView>,
    pub message: Option<MessageRef>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecisionView {
    pub by: Vec<Decider>,
    /// Deny reason, withdrawal cause, or channel error.
    pub reason: Option<String>,
    pub at: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExecutionView {
    pub ok: bool,
    /// Command tag or error text.
    pub detail: String,
}

/// The binding hash of a statement: hex SHA-256 over session id, SQL and
/// parameter values, each length-prefixed so no two inputs share an encoding.
/// The session may recompute it before forwarding to check it sends what was
/// approved.
pub fn binding_hash(session_id: &str, sql: &str, params: &[Option<String>]) -> String {
    let mut h = Sha256::new();
    h.update(b"pg-airlock binding v1\0");
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    field(session_id.as_bytes());
    field(sql.as_bytes());
    field(&(params.len() as u64).to_be_bytes());
    for p in params {
        match p {
            None => field(b"N"),
            Some(v) => {
                field(b"V");
                field(v.as_bytes());
            }
        }
    }
    hex::encode(h.finalize())
}

/// 128 bits from the OS CSPRNG (via `ring`), hex: unguessable request ids.
fn new_request_id() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    // ring's SystemRandom only fails if the OS RNG is unavailable; the process
    // cannot safely hand out ids then, so treat it as fatal.
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("OS random number generator failed");
    hex::encode(b)
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Button value format: `<request id>:<binding hash>`.
pub fn button_value(id: &str, binding: &str) -> String {
    format!("{id}:{binding}")
}

/// Splits a button value into (id, binding).
pub fn parse_button_value(v: &str) -> Option<(&str, &str)> {
    let (id, binding) = v.split_once(':')?;
    (!id.is_empty() && !binding.is_empty()).then_some((id, binding))
}

#[derive(Debug, Clone)]
enum Phase {
    Pending,
    Approved {
        at: SystemTime,
    },
    Denied {
        by: Decider,
        reason: Option<String>,
        at: SystemTime,
    },
    Expired {
        after: Duration,
        at: SystemTime,
    },
    Withdrawn {
        why: String,
        at: SystemTime,
    },
    Failed {
        error: String,
        at: SystemTime,
    },
}

impl Phase {
    fn status(&self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Approved { .. } => "approved",
            Phase::Denied { .. } => "denied",
            Phase::Expired { .. } => "expired",
            Phase::Withdrawn { .. } => "withdrawn",
            Phase::Failed { .. } => "failed",
        }
    }
    fn decided_at(&self) -> Option<SystemTime> {
        match self {
            Phase::Pending => None,
            Phase::Approved { at }
            | Phase::Denied { at, .. }
            | Phase::Expired { at, .. }
            | Phase::Withdrawn { at, .. }
            | Phase::Failed { at, .. } => Some(*at),
        }
    }
}

struct State {
    phase: Phase,
    votes: Vec<Decider>,
    /// Taken by whoever moves the request out of `Pending`.
    waker: Option<oneshot::Sender<Outcome>>,
    execution: Option<Result<String, String>>,
    /// `finish`, `withdraw` or the drop guard ran: the session is done with it.
    closed: bool,
    message: Option<MessageRef>,
}

impl State {
    /// The outcome the session sees for a terminal phase. A withdrawn request
    /// maps to a denial: it must never run, whoever asks.
    fn outcome(&self) -> Option<Outcome> {
        Some(match &self.phase {
            Phase::Pending => return None,
            Phase::Approved { .. } => Outcome::Approved {
                approvers: self.votes.clone(),
            },
            Phase::Denied { by, reason, .. } => Outcome::Denied {
                by: by.clone(),
                reason: reason.clone(),
            },
            Phase::Expired { after, .. } => Outcome::TimedOut { after: *after },
            Phase::Withdrawn { why, .. } => Outcome::Denied {
                by: Decider::system(),
                reason: Some(format!("withdrawn: {why}")),
            },
            Phase::Failed { error, .. } => Outcome::ChannelDown {
                error: error.clone(),
            },
        })
    }

    /// Moves to a terminal phase and wakes the session.
    fn settle(&mut self, phase: Phase) {
        debug_assert!(matches!(self.phase, Phase::Pending));
        self.phase = phase;
        if let (Some(w), Some(o)) = (self.waker.take(), self.outcome()) {
            // The receiver may be gone (session ended); the state is authoritative.
            let _ = w.send(o);
        }
    }
}

/// Who may decide, after user groups were expanded at submit.
enum Eligible {
    /// The rule lists no approvers: anyone who can reach the buttons or holds an
    /// API token, except the owner.
    Anyone,
    Listed(HashSet<String>),
}

struct Entry {
    id: String,
    binding: String,
    req: ApprovalRequest,
    channel: Option<String>,
    eligible: Eligible,
    quorum: u32,
    requested_at: SystemTime,
    started: Instant,
    deadline: Instant,
    state: Mutex<State>,
    /// Bumped on every change that should show in the message.
    version: AtomicU64,
    /// Serialises message edits; holds the version last rendered.
    edit: tokio::sync::Mutex<u64>,
}

impl Entry {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave a half-made transition
        // (each is one assignment), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn event(&self, kind: ApprovalEventKind) -> ApprovalEvent {
        ApprovalEvent {
            request_id: self.id.clone(),
            session_id: self.req.session_id.clone(),
            agent: self.req.agent.clone(),
            channel: self.channel.clone(),
            binding: self.binding.clone(),
            at: SystemTime::now(),
            waited: self.started.elapsed(),
            kind,
        }
    }

    fn view(&self) -> PendingView {
        let st = self.lock();
        let r = &self.req;
        let decision = st.phase.decided_at().map(|at| {
            let (by, reason) = match &st.phase {
                Phase::Approved { .. } => (st.votes.clone(), None),
                Phase::Denied { by, reason, .. } => (vec![by.clone()], reason.clone()),
                Phase::Expired { after, .. } => (
                    vec![],
                    Some(format!("no decision within {}s", after.as_secs())),
                ),
                Phase::Withdrawn { why, .. } => (vec![], Some(why.clone())),
                Phase::Failed { error, .. } => (vec![], Some(error.clone())),
                Phase::Pending => unreachable!("decided_at is None while pending"),
            };
            DecisionView {
                by,
                reason,
                at: unix_secs(at),
            }
        });
        PendingView {
            id: self.id.clone(),
            binding: self.binding.clone(),
            status: st.phase.status(),
            session_id: r.session_id.clone(),
            agent: r.agent.clone(),
            owner: r.owner.clone(),
            client_addr: r.client_addr.to_string(),
            database: r.database.clone(),
            application_name: r.application_name.clone(),
            sql: r.sql.clone(),
            prepared: r.prepared.clone(),
            params: r.params.clone(),
            reason: r.reason.clone(),
            categories: r.categories.clone(),
            rules: r.rules.clone(),
            impact: r.impact.clone(),
            channel: self.channel.clone(),
            approvers: r.settings.approvers.clone(),
            quorum: self.quorum,
            votes: st.votes.clone(),
            requested_at: unix_secs(self.requested_at),
            expires_at: unix_secs(self.requested_at + r.settings.timeout),
            timeout_secs: r.settings.timeout.as_secs(),
            decision,
            execution: st.execution.clone().map(|e| match e {
                Ok(tag) => ExecutionView {
                    ok: true,
                    detail: tag,
                },
                Err(err) => ExecutionView {
                    ok: false,
                    detail: err,
                },
            }),
            message: st.message.clone(),
        }
    }

    fn bump(&self) {
        self.version.fetch_add(1, Ordering::SeqCst);
    }
}

struct Inner {
    notifier: Arc<dyn Notifier>,
    observer: Arc<dyn ApprovalObserver>,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
    last_prune: Mutex<Instant>,
    tasks: TaskTracker,
    /// The runtime the gate was made on (the proxy's main one): background
    /// work started from a session (an edit after a withdrawal) runs there,
    /// not on the session's thread, which stops once its sessions end.
    runtime: Option<tokio::runtime::Handle>,
    shutting_down: AtomicBool,
}

/// Shared handle to all approval requests. Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("requests", &self.entries().len())
            .finish()
    }
}

impl Gate {
    pub fn new(notifier: Arc<dyn Notifier>, observer: Arc<dyn ApprovalObserver>) -> Gate {
        Gate {
            inner: Arc::new(Inner {
                notifier,
                observer,
                entries: Mutex::new(HashMap::new()),
                last_prune: Mutex::new(Instant::now()),
                tasks: TaskTracker::new(),
                runtime: tokio::runtime::Handle::try_current().ok(),
                shutting_down: AtomicBool::new(false),
            }),
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        // Index operations are single inserts/removes/lookups: never torn.
        self.inner.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(&self, ev: ApprovalEvent) {
        self.inner.observer.on_event(&ev);
    }

    /// Holds a statement: registers the request and posts it to reviewers.
    ///
    /// Runs on the gate's own runtime (the main one) when called from
    /// another (a session thread): the notifier's HTTP client starts
    /// connection tasks and timers of its own, which belong there, not on
    /// a session thread without a time driver (see `timers`). Dropping
    /// this future then does not stop the posting; the request is withdrawn
    /// as soon as it is made, as a dropped [`Pending`] always is.
    ///
    /// # Errors
    /// `Err(Outcome::ChannelDown)` if the message cannot be posted (or a user
    /// group cannot be resolved) and `Err(Outcome::Denied)` while shutting down:
    /// the statement must not run.
    pub async fn submit(&self, req: ApprovalRequest) -> Result<Pending, Outcome> {
        let here = tokio::runtime::Handle::try_current().ok().map(|h| h.id());
        match &self.inner.runtime {
            Some(rt) if here != Some(rt.id()) => {
                let gate = self.clone();
                let task = self
                    .inner
                    .tasks
                    .spawn_on(async move { gate.submit_here(req).await }, rt);
                task.await.unwrap_or_else(|e| {
                    Err(Outcome::ChannelDown {
                        error: format!("posting the request failed: {e}"),
                    })
                })
            }
            _ => self.submit_here(req).await,
        }
    }

    async fn submit_here(&self, req: ApprovalRequest) -> Result<Pending, Outcome> {
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return Err(Outcome::Denied {
                by: Decider::system(),
                reason: Some("proxy shutting down".into()),
            });
        }
        self.prune();
        let id = new_request_id();
        let binding = binding_hash(&req.session_id, &req.sql, &req.params);
        let channel = req
            .settings
            .channel
            .clone()
            .or_else(|| self.inner.notifier.default_channel());
        let quorum = req.settings.quorum.max(1);
        // A zero timeout would expire before anyone could look: use the default,
        // and record it in the request so views and events show the real one.
        let mut req = req;
        if req.settings.timeout.is_zero() {
            req.settings.timeout = DEFAULT_TIMEOUT;
        }
        let timeout = req.settings.timeout;
        let started = Instant::now();
        let deadline = started + timeout;

        let (eligible, group_error) = match self.expand_approvers(&req.settings.approvers).await {
            Ok(e) => (e, None),
            Err(e) => (Eligible::Listed(HashSet::new()), Some(e)),
        };
        let (tx, rx) = oneshot::channel();
        let entry = Arc::new(Entry {
            id: id.clone(),
            binding,
            channel,
            eligible,
            quorum,
            requested_at: SystemTime::now(),
            started,
            deadline,
            state: Mutex::new(State {
                phase: Phase::Pending,
                votes: vec![],
                waker: Some(tx),
                execution: None,
                closed: false,
                message: None,
            }),
            version: AtomicU64::new(0),
            edit: tokio::sync::Mutex::new(0),
            req,
        });
        if let Some(error) = group_error {
            // Never registered: no click can reach it.
            self.emit(entry.event(ApprovalEventKind::ChannelDown {
                error: error.clone(),
            }));
            return Err(Outcome::ChannelDown { error });
        }
        let listed = match &entry.eligible {
            Eligible::Listed(set) => Some(set.len()),
            Eligible::Anyone => None,
        };
        if let Some(n) = listed.filter(|n| (*n as u64) < u64::from(quorum)) {
            tracing::warn!(request_id = %id, approvers = n, quorum, "fewer approvers than the quorum: this request can only expire");
        }

        self.entries().insert(id.clone(), entry.clone());
        self.emit(entry.event(ApprovalEventKind::Requested {
            rules: entry.req.rules.clone(),
            categories: entry.req.categories.clone(),
            approvers: entry.req.settings.approvers.clone(),
            quorum,
            timeout,
        }));

        let view = entry.view();
        let posted = match crate::timers::timeout(
            POST_TIMEOUT.min(timeout),
            self.inner.notifier.post(&view),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(format!(
                "no answer from the approval channel within {}s",
                POST_TIMEOUT.min(timeout).as_secs()
            )),
        };
        let pending = Pending {
            gate: self.clone(),
            entry: entry.clone(),
            rx,
            settled: None,
        };
        match posted {
            Ok(msg) => {
                entry.lock().message = Some(msg);
                // Someone may have decided through the API while the post was in
                // flight; the edit task renders whatever is current.
                if entry.version.load(Ordering::SeqCst) > 0 {
                    self.schedule_edit(&entry);
                }
                Ok(pending)
            }
            Err(error) => {
                let error = format!("approval channel is down: {error}");
                let mut st = entry.lock();
                if matches!(st.phase, Phase::Pending) {
                    st.settle(Phase::Failed {
                        error: error.clone(),
                        at: SystemTime::now(),
                    });
                    st.closed = true;
                    drop(st);
                    tracing::error!(request_id = %id, %error, "could not post approval request; failing closed");
                    self.emit(entry.event(ApprovalEventKind::ChannelDown {
                        error: error.clone(),
                    }));
                    Err(Outcome::ChannelDown { error })
                } else {
                    // Decided through the API during the post: honour that decision.
                    drop(st);
                    Ok(pending)
                }
            }
        }
    }

    async fn expand_approvers(&self, approvers: &[String]) -> Result<Eligible, String> {
        if approvers.is_empty() {
            return Ok(Eligible::Anyone);
        }
        let mut set = HashSet::new();
        for a in approvers {
            if is_user_group(a) {
                let members =
                    crate::timers::timeout(GROUP_TIMEOUT, self.inner.notifier.group_members(a))
                        .await
                        .map_err(|_| format!("resolving user group {a} timed out"))?
                        .map_err(|e| format!("cannot resolve user group {a}: {e}"))?;
                set.extend(members);
            } else {
                set.insert(a.clone());
            }
        }
        Ok(Eligible::Listed(set))
    }

    /// Records one reviewer's verdict. Synchronous and lock-short: called from
    /// the Slack listener, which must acknowledge within seconds.
    ///
    /// `binding`, when given (always for Slack buttons), must equal the request's
    /// binding hash. Every refusal is reported to the observer.
    pub fn decide(
        &self,
        id: &str,
        binding: Option<&str>,
        decider: Decider,
        verdict: Verdict,
    ) -> Result<DecideAck, DecideError> {
        let entry = self.entries().get(id).cloned();
        let Some(entry) = entry else {
            let err = DecideError::UnknownRequest { id: id.to_string() };
            self.emit(ApprovalEvent {
                request_id: id.to_string(),
                session_id: String::new(),
                agent: String::new(),
                channel: None,
                binding: binding.unwrap_or_default().to_string(),
                at: SystemTime::now(),
                waited: Duration::ZERO,
                kind: ApprovalEventKind::Refused {
                    who: decider,
                    why: err.to_string(),
                },
            });
            return Err(err);
        };
        let mut events = Vec::new();
        let result = self.decide_locked(&entry, binding, &decider, verdict, &mut events);
        if let Err(e) = &result {
            events.push(entry.event(ApprovalEventKind::Refused {
                who: decider,
                why: e.to_string(),
            }));
        }
        for ev in events {
            self.emit(ev);
        }
        if matches!(result, Ok(_) | Err(DecideError::Expired { .. })) {
            self.schedule_edit(&entry);
        }
        result
    }

    fn decide_locked(
        &self,
        entry: &Entry,
        binding: Option<&str>,
        decider: &Decider,
        verdict: Verdict,
        events: &mut Vec<ApprovalEvent>,
    ) -> Result<DecideAck, DecideError> {
        let id = entry.id.clone();
        if binding.is_some_and(|b| !constant_time_eq(b.as_bytes(), entry.binding.as_bytes())) {
            return Err(DecideError::BindingMismatch { id });
        }
        let mut st = entry.lock();
        if !matches!(st.phase, Phase::Pending) {
            return Err(DecideError::AlreadyDecided {
                id,
                status: st.phase.status(),
            });
        }
        // The session's timer may not have fired yet (it only runs while the
        // session polls); a vote after the deadline must not count.
        if Instant::now() >= entry.deadline {
            let after = entry.req.settings.timeout;
            st.settle(Phase::Expired {
                after,
                at: SystemTime::now(),
            });
            entry.bump();
            events.push(entry.event(ApprovalEventKind::Expired { after }));
            return Err(DecideError::Expired { id });
        }
        let is_owner = entry.req.owner.as_deref() == Some(decider.id.as_str());
        if is_owner && verdict == Verdict::Approve {
            return Err(DecideError::OwnAgent {
                id,
                who: decider.id.clone(),
            });
        }
        let eligible = match &entry.eligible {
            Eligible::Anyone => true,
            Eligible::Listed(set) => set.contains(&decider.id),
        };
        if !eligible {
            return Err(DecideError::NotAnApprover {
                id,
                who: decider.id.clone(),
            });
        }
        match verdict {
            Verdict::Deny { reason } => {
                let reason = reason
                    .map(|r| r.trim().to_string())
                    .filter(|r| !r.is_empty());
                st.settle(Phase::Denied {
                    by: decider.clone(),
                    reason: reason.clone(),
                    at: SystemTime::now(),
                });
                entry.bump();
                events.push(entry.event(ApprovalEventKind::Denied {
                    by: decider.clone(),
                    reason,
                }));
                Ok(DecideAck::Denied)
            }
            Verdict::Approve => {
                if st.votes.iter().any(|v| v.id == decider.id) {
                    return Err(DecideError::AlreadyVoted {
                        id,
                        votes: st.votes.len() as u32,
                        quorum: entry.quorum,
                    });
                }
                st.votes.push(decider.clone());
                let votes = st.votes.len() as u32;
                entry.bump();
                events.push(entry.event(ApprovalEventKind::Voted {
                    by: decider.clone(),
                    votes,
                    quorum: entry.quorum,
                }));
                if votes >= entry.quorum {
                    st.settle(Phase::Approved {
                        at: SystemTime::now(),
                    });
                    events.push(entry.event(ApprovalEventKind::Approved {
                        approvers: st.votes.clone(),
                    }));
                    Ok(DecideAck::Approved)
                } else {
                    Ok(DecideAck::Recorded {
                        votes,
                        quorum: entry.quorum,
                    })
                }
            }
        }
    }

    /// Requests still waiting for a decision, oldest first.
    pub fn list(&self) -> Vec<PendingView> {
        let all: Vec<Arc<Entry>> = self.entries().values().cloned().collect();
        let mut v: Vec<(Instant, PendingView)> = all
            .iter()
            .filter(|e| matches!(e.lock().phase, Phase::Pending))
            .map(|e| (e.started, e.view()))
            .collect();
        v.sort_by_key(|(t, _)| *t);
        v.into_iter().map(|(_, v)| v).collect()
    }

    /// One request, pending or recently decided.
    pub fn get(&self, id: &str) -> Option<PendingView> {
        let e = self.entries().get(id).cloned();
        e.map(|e| e.view())
    }

    /// Sends a reply only `user` sees, on a background task.
    pub fn notify_ephemeral(&self, channel: String, user: String, text: String) {
        let notifier = self.inner.notifier.clone();
        self.spawn(async move {
            match crate::timers::timeout(UPDATE_TIMEOUT, notifier.ephemeral(&channel, &user, &text))
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, %user, "ephemeral reply failed"),
                Err(_) => tracing::warn!(%user, "ephemeral reply timed out"),
            }
        });
    }

    /// Denies every waiting request ("proxy shutting down"), refuses new ones,
    /// and waits briefly for the message edits.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        let all: Vec<Arc<Entry>> = self.entries().values().cloned().collect();
        for entry in all {
            let mut st = entry.lock();
            if !matches!(st.phase, Phase::Pending) {
                continue;
            }
            let by = Decider::system();
            let reason = Some("proxy shutting down".to_string());
            st.settle(Phase::Denied {
                by: by.clone(),
                reason: reason.clone(),
                at: SystemTime::now(),
            });
            entry.bump();
            drop(st);
            self.emit(entry.event(ApprovalEventKind::Denied { by, reason }));
            self.schedule_edit(&entry);
        }
        self.inner.tasks.close();
        if crate::timers::timeout(SHUTDOWN_GRACE, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("approval message edits still running at shutdown");
        }
    }

    /// Edits the request's message to its latest state, on a background task.
    fn schedule_edit(&self, entry: &Arc<Entry>) {
        let entry = entry.clone();
        let notifier = self.inner.notifier.clone();
        let fut = async move {
            let mut rendered = entry.edit.lock().await;
            let version = entry.version.load(Ordering::SeqCst);
            if *rendered >= version {
                return; // a later task already showed this state
            }
            let Some(msg) = entry.lock().message.clone() else {
                return; // not posted yet; submit edits once the post lands
            };
            let view = entry.view();
            match crate::timers::timeout(UPDATE_TIMEOUT, notifier.update(&msg, &view)).await {
                Ok(Ok(())) => *rendered = version,
                Ok(Err(e)) => {
                    tracing::warn!(request_id = %entry.id, error = %e, "could not edit approval message")
                }
                Err(_) => {
                    tracing::warn!(request_id = %entry.id, "editing approval message timed out")
                }
            }
        };
        // Drop guards may run outside a runtime (process teardown): then the
        // state change stands and only the cosmetic edit is skipped.
        if tokio::runtime::Handle::try_current().is_ok() {
            self.spawn(fut);
        }
    }

    fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        match &self.inner.runtime {
            Some(rt) => drop(self.inner.tasks.spawn_on(fut, rt)),
            None => drop(self.inner.tasks.spawn(fut)),
        }
    }

    /// Removes decided requests past retention; at most once per minute.
    fn prune(&self) {
        {
            let mut last = self
                .inner
                .last_prune
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.elapsed() < PRUNE_EVERY {
                return;
            }
            *last = Instant::now();
        }
        let now = SystemTime::now();
        self.entries().retain(|_, e| {
            let st = e.lock();
            match st.phase.decided_at() {
                None => true,
                Some(at) => {
                    let old = now.duration_since(at).unwrap_or_default() > RETAIN_DECIDED;
                    // An approved request whose execution was not reported yet
                    // stays, so `finish` can still edit its message.
                    !old || (matches!(st.phase, Phase::Approved { .. }) && !st.closed)
                }
            }
        });
    }

    fn withdraw_entry(&self, entry: &Arc<Entry>, why: &str) {
        let mut st = entry.lock();
        if st.closed {
            return;
        }
        st.closed = true;
        let kind = match st.phase {
            Phase::Pending => {
                st.settle(Phase::Withdrawn {
                    why: why.to_string(),
                    at: SystemTime::now(),
                });
                Some(ApprovalEventKind::Withdrawn {
                    why: why.to_string(),
                })
            }
            // Approved but the session never ran it: record that it will not run.
            Phase::Approved { .. } if st.execution.is_none() => {
                st.execution = Some(Err(format!("not executed: {why}")));
                Some(ApprovalEventKind::Withdrawn {
                    why: format!("after approval, before execution: {why}"),
                })
            }
            _ => None,
        };
        entry.bump();
        drop(st);
        if let Some(kind) = kind {
            self.emit(entry.event(kind));
        }
        self.schedule_edit(entry);
    }
}

fn is_user_group(id: &str) -> bool {
    id.len() > 1
        && id.starts_with('S')
        && id[1..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() && !c.is_ascii_lowercase())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A statement waiting for its decision. Owned by one session.
///
/// Dropping it without `finish` or `withdraw` withdraws the request (if still
/// waiting) so it can never run.
pub struct Pending {
    gate: Gate,
    entry: Arc<Entry>,
    rx: oneshot::Receiver<Outcome>,
    settled: Option<Outcome>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("id", &self.entry.id)
            .field("settled", &self.settled)
            .finish()
    }
}

impl Pending {
    /// The request id (shown to the client in a NoticeResponse).
    pub fn id(&self) -> &str {
        &self.entry.id
    }

    /// The binding hash this request was made for.
    pub fn binding(&self) -> &str {
        &self.entry.binding
    }

    pub fn settings(&self) -> &HoldSettings {
        &self.entry.req.settings
    }

    /// Waits for the decision or the timeout, whichever comes first.
    ///
    /// # Cancel safety
    /// Cancel-safe: the deadline was fixed at submit and a decision that arrives
    /// while this future is dropped is kept. Once it returns, later calls return
    /// the same outcome.
    pub async fn outcome(&mut self) -> Outcome {
        if let Some(o) = &self.settled {
            return o.clone();
        }
        let out = tokio::select! {
            r = &mut self.rx => match r {
                Ok(o) => o,
                // Sender dropped without a send only if the state was settled
                // another way; the state is authoritative.
                Err(_) => self.entry.lock().outcome().unwrap_or(Outcome::ChannelDown { error: "approval state lost".into() }),
            },
            _ = crate::timers::sleep_until(self.entry.deadline) => self.expire(),
        };
        self.settled = Some(out.clone());
        out
    }

    /// Deadline reached: expire unless a decision won the race.
    fn expire(&self) -> Outcome {
        let entry = &self.entry;
        let mut st = entry.lock();
        if matches!(st.phase, Phase::Pending) {
            let after = entry.req.settings.timeout;
            st.settle(Phase::Expired {
                after,
                at: SystemTime::now(),
            });
            entry.bump();
            drop(st);
            self.gate
                .emit(entry.event(ApprovalEventKind::Expired { after }));
            self.gate.schedule_edit(entry);
            return Outcome::TimedOut { after };
        }
        st.outcome().expect("phase is terminal")
    }

    /// The client cancelled or disconnected: the request can never run, and the
    /// message says so. Idempotent with the drop guard.
    pub async fn withdraw(self, why: &str) {
        self.gate.withdraw_entry(&self.entry, why);
    }

    /// Reports what happened when the approved statement ran (command tag or
    /// error), for the message and the audit log. Never waits: the record is
    /// queued and the message edit runs on the gate's own runtime, so the
    /// relay calls this in place when the server answers.
    pub fn finish(self, result: Result<String, String>) {
        let entry = &self.entry;
        let mut st = entry.lock();
        if st.closed {
            return;
        }
        st.closed = true;
        if !matches!(st.phase, Phase::Approved { .. }) {
            tracing::error!(request_id = %entry.id, status = st.phase.status(), "finish called on a request that was not approved");
            return;
        }
        st.execution = Some(result.clone());
        entry.bump();
        drop(st);
        self.gate
            .emit(entry.event(ApprovalEventKind::Finished { result }));
        self.gate.schedule_edit(entry);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.entry.lock().closed {
            self.gate
                .withdraw_entry(&self.entry, "session ended before the statement ran");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
