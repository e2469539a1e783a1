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

/// What the webhook handler shares: the daemon, and the secret if one is configured.
pub struct Admin<S: Store> {
    pub daemon: Arc<Daemon<S>>,
    pub webhook_secret: Option<String>,
}

pub fn router<S: Store>(daemon: Arc<Daemon<S>>, webhook_secret: Option<String>) -> Router {
    let webhooks = Router::new()
        .route("/v1/webhooks/synthflow", post(webhook::<S>))
        .with_state(Arc::new(Admin {
            daemon: daemon.clone(),
            webhook_secret,
        }));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz::<S>))
        .route("/v1/status", get(status::<S>))
        .route("/v1/leads", post(leads::<S>))
        .route("/v1/explain", post(explain::<S>))
        .route("/v1/reload", post(reload::<S>))
        .route("/metrics", get(metrics::<S>))
        .with_state(daemon)
        .merge(webhooks)
}

/// The post-call webhook. With a secret configured, the `call_id` must carry a valid
/// signature (`Synthflow-Signature`, or the documented `HTTP_SYNTHFLOW_SIGNATURE`).
async fn webhook<S: Store>(
    State(admin): State<Arc<Admin<S>>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Response {
    let Ok(payload) = serde_json::from_str::<serde_json::Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "body is not JSON\n").into_response();
    };
    let Some((call_id, status)) = crate::synthflow::webhook::call_outcome(&payload) else {
        return (
            StatusCode::BAD_REQUEST,
            "no call.call_id and call.status in the body\n",
        )
            .into_response();
    };
    if let Some(secret) = &admin.webhook_secret {
        let signature = [
            "synthflow-signature",
            "http_synthflow_signature",
            "x-synthflow-signature",
        ]
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|v| v.to_str().ok());
        if !signature.is_some_and(|s| crate::synthflow::webhook::verify(secret, &call_id, s)) {
            tracing::warn!(call_id, "webhook with a missing or bad signature rejected");
            return (StatusCode::UNAUTHORIZED, "bad signature\n").into_response();
        }
    }
    match admin.daemon.call_ended(&call_id, &status).await {
        Ok(recorded) => Json(json!({"recorded": recorded})).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
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
            let held: Vec<serde_json::Value> = daemon
                .store()
                .held_reasons()
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|(reason, count)| json!({"reason": reason, "count": count}))
                .collect();
            Json(json!({"queue": queue, "held": held, "auth_failed": daemon.auth_failed(), "live_calls": daemon.live_calls(), "rules": daemon.rules_info(), "numbers": daemon.usage(Utc::now())})).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// CSV with a header row, JSON Lines or a JSON array of leads; bad rows are reported and do
/// not block good ones.
async fn leads<S: Store>(State(daemon): State<Arc<Daemon<S>>>, body: String) -> Response {
    let intake = match intake::parse(body.as_bytes()) {
        Ok(intake) => intake,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
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

/// `{"lead": {...}, "at": "<RFC 3339>"?}`: the decision the daemon would make now (or at
/// `at`), with its trace, in the same JSON form as `callroute explain --format json`.
async fn explain<S: Store>(
    State(daemon): State<Arc<Daemon<S>>>,
    Json(body): Json<serde_json::Value>,
) -> Response {
    let Some(raw) = body.get("lead") else {
        return (
            StatusCode::BAD_REQUEST,
            "expected {\"lead\": {...}, \"at\": \"<RFC 3339>\"}\n",
        )
            .into_response();
    };
    let lead = match crate::lead::Lead::from_json(&raw.to_string()) {
        Ok(lead) => lead,
        Err(e) => {
            return (StatusCode::UNPROCESSABLE_ENTITY, format!("bad lead: {e}\n")).into_response();
        }
    };
    let at = match body.get("at").and_then(|v| v.as_str()) {
        None => Utc::now(),
        Some(text) => match chrono::DateTime::parse_from_rfc3339(text) {
            Ok(t) => t.with_timezone(&Utc),
            Err(_) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("`at`: `{text}` is not RFC 3339\n"),
                )
                    .into_response();
            }
        },
    };
    let (decision, trace) = daemon.explain(&lead, at);
    Json(crate::explain::to_json(&decision, &trace)).into_response()
}

/// Reloads the rules and answers with the outcome once it is known (422 when the files are
/// broken: the running rules stay).
async fn reload<S: Store>(State(daemon): State<Arc<Daemon<S>>>) -> Response {
    let outcome = daemon.reload("POST /v1/reload").await;
    let status = match outcome {
        crate::daemon::ReloadOutcome::Failed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::OK,
    };
    (status, Json(outcome)).into_response()
}

/// Prometheus text exposition (404 when no recorder is installed, e.g. in tests).
async fn metrics<S: Store>(State(daemon): State<Arc<Daemon<S>>>) -> Response {
    daemon.update_gauges().await;
    match crate::metrics::render() {
        Some(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            text,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled\n").into_response(),
    }
}
