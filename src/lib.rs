//! pg-airlock: a Postgres wire-protocol proxy that lets AI agents work on
//! production databases without handing them the keys.
//!
//! # Layout
//! - [`config`]: the TOML config file -> validated [`config::Config`].
//! - [`wire`]: the Postgres protocol: client login, upstream login, the
//!   two-direction relay, cancel keys, and the per-session policy step.
//! - [`app`]: wires it together; accept loop, admin port, shutdown.
//! - [`admin`]: `/healthz`, `/metrics`.
//! - [`identity`]: the session identity record every log and audit line carries.
//! - [`metrics`]: the counters `/metrics` exports.
//!
//! # Flow of a statement
//! `wire::session` frames a client unit (Query, or extended batch up to
//! Sync) -> `wire::policy` decides -> forward the unchanged bytes, or send
//! a refusal in their place so PostgreSQL itself answers with an error and
//! the transaction state stays in step.

pub mod admin;
pub mod app;
pub mod approval;
pub mod audit;
pub mod classify;
pub mod config;
pub mod demo;
pub mod duration;
pub mod engine;
pub mod identity;
pub mod impact;
pub mod metrics;
pub mod pgcluster;
pub mod rules;
pub mod slack;
#[cfg(test)]
pub(crate) mod testing;
pub mod timers;
pub mod wire;
pub mod workers;
