//! The admin listener: health, readiness, status, and lead intake over HTTP.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::json;

use crate::daemon::Daemon;
use crate::store::{Store, intake};

pub fn router<S: Store>(daemon: Arc<Daemon<S>>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz::<S>))
        .route("/v1/status", get(status::<S>))
        .route("/v1/leads", post(leads::<S>))
        .with_state(daemon)
}

async fn readyz<S: Store>(State(daemon): State<Arc<Daemon<S>>>) -> Response {
    if daemon.auth_failed() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: Synthflow refused the API key\n",
        )
            .into_response()
    } else {
        "ready\n".into_response()
    }
}

async fn status<S: Store>(State(daemon): State<Arc<Daemon<S>>>) -> Response {
    match daemon.store().counts().await {
        Ok(counts) => {
            let queue: serde_json::Map<String, serde_json::Value> = counts
                .iter()
                .map(|(state, n)| (state.as_str().to_string(), json!(n)))
                .collect();
            Json(json!({"queue": queue, "auth_failed": daemon.auth_failed()})).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// A JSON array or JSON Lines of leads; bad rows are reported and do not block good ones.
async fn leads<S: Store>(State(daemon): State<Arc<Daemon<S>>>, body: String) -> Response {
    let intake = intake::parse_json(&body);
    let rejected: Vec<serde_json::Value> = intake
        .rejected
        .iter()
        .map(|r| json!({"line": r.line, "reason": r.reason}))
        .collect();
    match daemon.store().enqueue(&intake.leads, Utc::now()).await {
        Ok(counts) => {
            daemon.wake();
            Json(json!({"accepted": counts.accepted, "duplicate": counts.duplicate, "rejected": rejected.len(), "errors": rejected})).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
