//! Admin HTTP endpoint: `/healthz` and `/metrics` (Prometheus text).
//! Other modules add their routes (approvals API, Slack interactions)
//! by merging routers in `app`.

use crate::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    /// Extra gauges computed at scrape time (name, help, value).
    pub gauges: Arc<dyn Fn() -> Vec<(&'static str, &'static str, f64)> + Send + Sync>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    let extra = (s.gauges)();
    let extra: Vec<(&str, &str, f64)> = extra.iter().map(|(a, b, c)| (*a, *b, *c)).collect();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(&extra),
    )
}
