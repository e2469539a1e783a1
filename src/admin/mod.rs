//! The admin listener: health, readiness, status, lead intake, reloads and the webhook over
//! HTTP. Everything that listens is attacked, so:
//! * writes (`POST /v1/leads`, `POST /v1/reload`) need the bearer token, and are refused
//!   outright when none is configured; reads need it too when one is configured, unless
//!   `open_reads`; health and readiness are open; the webhook carries its own signature;
//! * lead uploads must say what they are (`text/csv`, `application/json`,
//!   `application/x-ndjson`): a browser form on some web page cannot send those without a
//!   CORS preflight, which this listener never answers;
//! * the console (`GET /`) is a page a browser opens: with a token configured, it asks for
//!   the token once (`POST /login`) and keeps a session cookie derived from it (HttpOnly,
//!   SameSite=Strict), which opens reads (GET) only, never writes;
//! * every connection is bounded: a cap on open connections, a time limit for the request
//!   headers (which also closes idle keep-alive connections), one for the whole request, and
//!   a size limit for every body.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::json;

use crate::daemon::Daemon;
use crate::lock;
use crate::store::{Store, intake};

/// The largest upload `POST /v1/leads` takes. It is streamed (read, checked and stored a
/// batch at a time), so this bounds the request, not memory.
pub const MAX_LEADS_BODY: usize = 1 << 30;
/// Rows of an upload checked and stored at a time.
const UPLOAD_BATCH: usize = 10_000;
/// Bad rows listed in the answer (all are counted).
const MAX_LISTED_ERRORS: usize = 1_000;
/// The largest body of every other request.
pub const MAX_BODY: usize = 1 << 20;

/// Who may do what on the admin listener.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The bearer token; without one, writes are refused and reads are open.
    pub token: Option<String>,
    /// Reads without the token even when one is configured.
    pub open_reads: bool,
}

/// Bounds on the admin listener's connections.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Time to send a request's headers, and the longest a kept-alive connection may idle.
    pub header_timeout: Duration,
    /// Time to send the body and get the answer.
    pub request_timeout: Duration,
    /// Connections kept for `/healthz` and `/readyz` once the cap is reached (or a peer has
    /// its share): one request each, headers within `HEALTH_HEADER_TIMEOUT`. A listener
    /// flooded with idle or half-sent connections still answers its health checks.
    pub health_reserve: usize,
    /// Connections one peer address may hold of `max_connections`; beyond, it gets the
    /// health reserve only.
    pub per_peer: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            health_reserve: 16,
            per_peer: 64,
        }
    }
}

/// How long a connection of the health reserve may take to send its request's headers.
pub const HEALTH_HEADER_TIMEOUT: Duration = Duration::from_millis(500);

/// On a connection of the health reserve, everything but the health checks is refused.
async fn health_only(request: Request, next: Next) -> Response {
    match request.uri().path() {
        "/healthz" | "/readyz" => next.run(request).await,
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "busy: the admin listener is at its connection limit; only /healthz and /readyz answer\n",
        )
            .into_response(),
    }
}

/// One peer's connections, counted while they are open.
struct PeerSlot {
    peers: Arc<Mutex<HashMap<std::net::IpAddr, usize>>>,
    peer: std::net::IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut peers = lock(&self.peers);
        if let Some(count) = peers.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                peers.remove(&self.peer);
            }
        }
    }
}

/// How post-call webhooks are authenticated.
#[derive(Debug, Clone)]
pub enum Webhooks {
    /// Signed with this secret (Synthflow's HMAC of the call id); unsigned ones get 401.
    Signed(String),
    /// `allow_unsigned_webhooks: true` without a secret: accepted, warned about. Harmless
    /// only because a webhook is never trusted (see `webhook`).
    Unsigned,
    /// No secret: every webhook gets 401 (calls are followed by polling).
    Refused,
}

/// What the webhook handler shares: the daemon, how webhooks are authenticated, and the
/// call ids acted on lately (replays beyond Synthflow's retries are refused).
pub struct Admin<S: Store> {
    pub daemon: Arc<Daemon<S>>,
    pub webhooks: Webhooks,
    seen: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Deliveries of one call's webhook accepted within `REPLAY_WINDOW` (Synthflow's retries of a
/// failed delivery; a longer series is a replay).
const MAX_DELIVERIES: u32 = 5;
const REPLAY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Call ids remembered at most (oldest forgotten first).
const SEEN_KEPT: usize = 50_000;

pub fn router<S: Store>(daemon: Arc<Daemon<S>>, webhooks: Webhooks, access: Access) -> Router {
    let access = Arc::new(access);
    let webhooks = Router::new()
        .route("/v1/webhooks/synthflow", post(webhook::<S>))
        .with_state(Arc::new(Admin {
            daemon: daemon.clone(),
            webhooks,
            seen: Mutex::new(HashMap::new()),
        }));
    let writes = Router::new()
        .route("/v1/leads", post(leads::<S>))
        .route("/v1/reload", post(reload::<S>))
        .route_layer(middleware::from_fn_with_state(
            access.clone(),
            require_write,
        ))
        .with_state(daemon.clone());
    let login = Router::new()
        .route("/login", post(login))
        .with_state(Arc::new(Login {
            access: access.clone(),
            wrong: Mutex::new(std::collections::VecDeque::new()),
        }));
    let reads = Router::new()
        .route("/", get(console))
        .route("/v1/status", get(status::<S>))
        .route("/v1/explain", post(explain::<S>))
        .route("/metrics", get(metrics::<S>))
        .route_layer(middleware::from_fn_with_state(access, require_read))
        .with_state(daemon.clone());
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz::<S>))
        .with_state(daemon)
        .merge(reads)
        .merge(login)
        .merge(writes)
        .merge(webhooks)
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// `/metrics` alone, open: for a second listener that Prometheus scrapes.
pub fn metrics_router<S: Store>(daemon: Arc<Daemon<S>>) -> Router {
    Router::new()
        .route("/metrics", get(metrics::<S>))
        .with_state(daemon)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Compares in time independent of where the strings differ.
fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// `None` when the request carries `token`; else the 401 to answer.
fn refused_without(token: &str, headers: &HeaderMap) -> Option<Response> {
    let message = match bearer(headers) {
        Some(given) if same_secret(given, token) => return None,
        Some(_) => "wrong admin token",
        None => "this endpoint needs `Authorization: Bearer <admin token>`",
    };
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            format!("{message}\n"),
        )
            .into_response(),
    )
}

async fn require_write(
    State(access): State<Arc<Access>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &access.token else {
        return (
            StatusCode::FORBIDDEN,
            "writes are disabled: no admin token is configured (set CALLROUTE_ADMIN_TOKEN, admin.token_file, or the credential callroute-admin-token)\n",
        )
            .into_response();
    };
    match refused_without(token, request.headers()) {
        Some(refusal) => refusal,
        None => next.run(request).await,
    }
}

async fn require_read(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    let refusal = match &access.token {
        Some(token) if !access.open_reads => refused_without(token, request.headers()),
        _ => None,
    };
    let Some(refusal) = refusal else {
        return next.run(request).await;
    };
    // The console's session opens reads a browser makes (GET), nothing it could be tricked
    // into sending (a form's POST).
    let token = access.token.as_deref().unwrap_or_default();
    if request.method() == axum::http::Method::GET && has_session(token, request.headers()) {
        return next.run(request).await;
    }
    if request.uri().path() == "/" {
        return login_page(StatusCode::UNAUTHORIZED, "");
    }
    refusal
}

const SESSION_COOKIE: &str = "callroute_session";

/// How long a console session lasts; then the token is asked again.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The console session's cookie value: `EXPIRES.SIGNATURE`, signed with the token, so it
/// ends at `EXPIRES` (unix seconds), changes when the token does and never shows it.
fn session_value(token: &str, expires: u64) -> String {
    let signature =
        crate::synthflow::webhook::sign(token, &format!("callroute console session {expires}"));
    format!("{expires}.{signature}")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn has_session(token: &str, headers: &HeaderMap) -> bool {
    let valid = |value: &str| {
        let Some((expires, _)) = value.split_once('.') else {
            return false;
        };
        let Ok(expires) = expires.parse::<u64>() else {
            return false;
        };
        expires > unix_now() && same_secret(value, &session_value(token, expires))
    };
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|cookie| cookie.trim().split_once('='))
        .any(|(name, value)| name == SESSION_COOKIE && valid(value))
}

/// Headers of every page: nothing loaded from elsewhere, no framing, nothing cached.
fn page(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

fn login_page(status: StatusCode, problem: &str) -> Response {
    page(
        status,
        format!(
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>callroute console: sign in</title>
<style>body{{font:14px system-ui,sans-serif;margin:40px}}input{{font:inherit;padding:4px}}.bad{{color:#b00020}}</style></head>
<body><h1>callroute console</h1><p>This daemon wants its admin token to show its status.</p>
<p class="bad">{problem}</p>
<form method="post" action="/login"><label>Admin token <input type="password" name="token" id="token" autofocus></label>
<button type="submit">Sign in</button></form></body></html>"#
        ),
    )
}

/// The live console: one page from the binary, reading `/v1/status`.
async fn console() -> Response {
    page(StatusCode::OK, include_str!("console.html").to_string())
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

/// The sign-in's state: the token, and the wrong tries of the last minute.
struct Login {
    access: Arc<Access>,
    wrong: Mutex<std::collections::VecDeque<Instant>>,
}

/// Wrong tokens accepted per minute (over every peer); beyond, sign-in waits.
pub const LOGIN_TRIES_PER_MINUTE: usize = 10;

/// True when the request comes from another site: a browser names the page that sent it
/// (`Origin`, or `Sec-Fetch-Site`); a form on any other site must not sign anyone in.
fn cross_site(headers: &HeaderMap) -> bool {
    // Browsers that send it say it best (the console's `Referrer-Policy: no-referrer` makes
    // them send `Origin: null` even from its own page).
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false; // not a browser's cross-site request (curl, a script)
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    origin == "null" || origin_host != host
}

async fn login(
    State(login): State<Arc<Login>>,
    headers: HeaderMap,
    form: Result<axum::Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(token) = &login.access.token else {
        return axum::response::Redirect::to("/").into_response();
    };
    if cross_site(&headers) {
        return login_page(
            StatusCode::FORBIDDEN,
            "Sign in from the console's own page.",
        );
    }
    {
        let mut wrong = lock(&login.wrong);
        while wrong
            .front()
            .is_some_and(|t| t.elapsed() > Duration::from_secs(60))
        {
            wrong.pop_front();
        }
        if wrong.len() >= LOGIN_TRIES_PER_MINUTE {
            let wait = 60 - wrong[0].elapsed().as_secs().min(59);
            let mut page = login_page(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too many wrong tokens: try again in {wait} s."),
            );
            if let Ok(value) = wait.to_string().parse() {
                page.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return page;
        }
    }
    match form {
        Ok(axum::Form(form)) if same_secret(form.token.trim(), token) => {
            let lifetime = SESSION_LIFETIME.as_secs();
            (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, "/".to_string()),
                    (
                        header::SET_COOKIE,
                        format!(
                            "{SESSION_COOKIE}={}; Path=/; Max-Age={lifetime}; HttpOnly; SameSite=Strict",
                            session_value(token, unix_now() + lifetime)
                        ),
                    ),
                ],
            )
                .into_response()
        }
        Ok(_) => {
            lock(&login.wrong).push_back(Instant::now());
            login_page(StatusCode::UNAUTHORIZED, "Wrong token.")
        }
        Err(_) => login_page(StatusCode::BAD_REQUEST, "Send the form's `token` field."),
    }
}

/// Serves `router` on `listener` until `shutdown`, within `limits`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let request_timeout = limits.request_timeout;
    let router = router.layer(middleware::from_fn(
        move |request: Request, next: Next| async move {
            match tokio::time::timeout(request_timeout, next.run(request)).await {
                Ok(response) => response,
                Err(_) => (StatusCode::REQUEST_TIMEOUT, "request took too long\n").into_response(),
            }
        },
    ));
    let health_service = hyper_util::service::TowerToHyperService::new(
        router.clone().layer(middleware::from_fn(health_only)),
    );
    let service = hyper_util::service::TowerToHyperService::new(router);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let reserve = Arc::new(tokio::sync::Semaphore::new(limits.health_reserve));
    let peers: Arc<Mutex<HashMap<std::net::IpAddr, usize>>> = Arc::default();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, address)) => (stream, address.ip()),
                Err(e) => {
                    // Out of file descriptors, typically: wait for connections to close.
                    tracing::warn!("admin listener cannot accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let peer_has_room = {
            let mut peers_now = lock(&peers);
            let count = peers_now.entry(peer).or_insert(0);
            *count += 1;
            *count <= limits.per_peer.max(1)
        };
        let peer_slot = PeerSlot {
            peers: peers.clone(),
            peer,
        };
        let general = peer_has_room
            .then(|| slots.clone().try_acquire_owned().ok())
            .flatten();
        let builder = |timeout| {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(timeout);
            builder
        };
        if let Some(slot) = general {
            let connection = builder(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service.clone());
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                let _ = connection.await;
                drop((slot, peer_slot));
            });
        } else if let Ok(slot) = reserve.clone().try_acquire_owned() {
            let connection = builder(HEALTH_HEADER_TIMEOUT.min(limits.header_timeout))
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), health_service.clone());
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                let _ = connection.await;
                drop((slot, peer_slot));
            });
        } else {
            metrics::counter!("callroute_admin_connections_refused_total").increment(1);
            drop((stream, peer_slot));
        }
    }
    // Answer what is in flight, briefly.
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}

/// The post-call webhook: JSON only (a web page cannot post it), signed (`Synthflow-Signature`,
/// or the documented `HTTP_SYNTHFLOW_SIGNATURE`, over the `call_id`) unless the configuration
/// allows unsigned ones. Even signed, its body is a hint: the daemon acts only on what
/// `GET /v2/calls/{id}` says (status, duration, the fields `opt_out` reads).
async fn webhook<S: Store>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| v == "application/json" || v.ends_with("+json"));
    if !json {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the webhook takes Content-Type: application/json\n",
        )
            .into_response();
    }
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
    if let Webhooks::Refused = admin.webhooks {
        tracing::warn!(
            call_id,
            "webhook refused: no webhook secret is configured (synthflow.webhook_secret_file)"
        );
        return (
            StatusCode::UNAUTHORIZED,
            "webhooks must be signed: configure synthflow.webhook_secret_file (or allow_unsigned_webhooks: true)\n",
        )
            .into_response();
    }
    if let Webhooks::Signed(secret) = &admin.webhooks {
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
    {
        let mut seen = lock(&admin.seen);
        let now = Instant::now();
        if seen.len() >= SEEN_KEPT {
            seen.retain(|_, (_, first)| now.duration_since(*first) < REPLAY_WINDOW);
            if seen.len() >= SEEN_KEPT
                && let Some(oldest) = seen
                    .iter()
                    .min_by_key(|(_, (_, first))| *first)
                    .map(|(id, _)| id.clone())
            {
                seen.remove(&oldest);
            }
        }
        let entry = seen.entry(call_id.clone()).or_insert((0, now));
        if now.duration_since(entry.1) >= REPLAY_WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
        if entry.0 > MAX_DELIVERIES {
            tracing::warn!(call_id, deliveries = entry.0, "webhook replay refused");
            return (
                StatusCode::CONFLICT,
                "this call's webhook was already delivered\n",
            )
                .into_response();
        }
    }
    match admin.daemon.call_ended(&call_id, &status).await {
        Ok(outcome) => Json(json!({
            "recorded": outcome == crate::daemon::WebhookOutcome::Recorded,
            "outcome": outcome,
        }))
        .into_response(),
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
    } else if let Some(problem) = daemon.api_problem() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {problem}\n"),
        )
            .into_response()
    } else {
        "ready\n".into_response()
    }
}

async fn status<S: Store>(State(daemon): State<Arc<Daemon<S>>>) -> Response {
    match daemon.status().await {
        Ok(view) => Json(view).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// CSV with a header row, JSON Lines or a JSON array of leads; bad rows are reported and do
/// not block good ones.
async fn leads<S: Store>(
    State(daemon): State<Arc<Daemon<S>>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    const ACCEPTED: [&str; 4] = [
        "text/csv",
        "application/json",
        "application/x-ndjson",
        "application/jsonl",
    ];
    if !media_type.as_deref().is_some_and(|t| ACCEPTED.contains(&t)) {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {} is not taken here: send text/csv, application/json or application/x-ndjson\n",
                media_type.as_deref().map_or("(none)".to_string(), |t| format!("`{t}`"))
            ),
        )
            .into_response();
    }
    // Streamed: read, checked and stored a batch at a time, never whole, and cut off past
    // MAX_LEADS_BODY bytes.
    use futures_util::TryStreamExt;
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stream = body
        .into_data_stream()
        .map_err(std::io::Error::other)
        .and_then(move |chunk| {
            let total = received.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed)
                + chunk.len();
            futures_util::future::ready(if total > MAX_LEADS_BODY {
                Err(std::io::Error::other(format!(
                    "the upload is larger than {MAX_LEADS_BODY} bytes; split it, or use `callroute enqueue` on the host"
                )))
            } else {
                Ok(chunk)
            })
        });
    let reader = std::io::BufReader::new(tokio_util::io::SyncIoBridge::new(
        tokio_util::io::StreamReader::new(stream),
    ));
    let runtime = tokio::runtime::Handle::current();
    let task = tokio::task::spawn_blocking(move || {
        let batches = intake::batches(reader, UPLOAD_BATCH)
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("{e}\n")))?;
        let (mut accepted, mut duplicate, mut rejected) = (0u64, 0u64, 0u64);
        let mut errors = Vec::new();
        for batch in batches {
            rejected += batch.rejected.len() as u64;
            for bad in batch.rejected {
                if errors.len() < MAX_LISTED_ERRORS {
                    errors.push(json!({"line": bad.line, "reason": bad.reason}));
                }
            }
            let counts = runtime
                .block_on(daemon.store().enqueue(&batch.leads, daemon.now()))
                .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")))?;
            accepted += counts.accepted;
            duplicate += counts.duplicate;
            daemon.wake();
        }
        Ok::<_, (StatusCode, String)>(json!({
            "accepted": accepted,
            "duplicate": duplicate,
            "rejected": rejected,
            "errors": errors,
        }))
    });
    match task.await {
        Ok(Ok(summary)) => Json(summary).into_response(),
        Ok(Err(refused)) => refused.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
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
        None => daemon.now(),
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
        crate::daemon::ReloadOutcome::Waiting { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    (status, Json(outcome)).into_response()
}

/// Prometheus text exposition (404 when no recorder is installed, e.g. in tests).
async fn metrics<S: Store>(State(daemon): State<Arc<Daemon<S>>>) -> Response {
    daemon.update_gauges().await;
    match crate::metrics::render(&crate::rules::hash_text(daemon.rules_hash())) {
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
