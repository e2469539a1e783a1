//! A Synthflow stand-in for tests, benchmarks and demos, held to
//! shared/reference/synthflow-api.md: the endpoints callroute uses with their documented
//! shapes, Bearer auth, the account's call attempts per second and concurrency enforced with
//! 429, calls that ring, talk and end, and injectable faults. It logs every call it accepted
//! so tests can check what really went out.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::wire::{CallRecord, CallRequest};
use crate::phone::E164;

/// How the simulated account behaves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    pub api_key: String,
    #[serde(default = "one")]
    pub attempts_per_second: u32,
    #[serde(default = "five")]
    pub concurrency: u32,
    pub agents: Vec<SimAgent>,
    #[serde(default)]
    pub calls: CallBehaviour,
    #[serde(default)]
    pub faults: Faults,
    #[serde(default)]
    pub seed: u64,
    /// Where to post the post-call webhook, signed with `secret`.
    #[serde(default)]
    pub webhook: Option<SimWebhook>,
    /// How `PUT …/phone_numbers` reads its body, which the API leaves undocumented: `false`
    /// adds the numbers to the pool, `true` makes the pool exactly those numbers.
    #[serde(default)]
    pub put_replaces: bool,
    /// The numbers the workspace owns besides the attached ones: a PUT naming any other
    /// number is refused whole (404, as the reference documents). Absent: the workspace
    /// owns whatever number is asked for.
    #[serde(default)]
    pub workspace_numbers: Option<Vec<String>>,
    /// Zones missing from the simulated Timezones list besides those the reference says it
    /// lacks (UTC, `Etc/*`, old aliases): a `lead_timezone` naming one gets a 400, as a zone
    /// newer than Synthflow's list would.
    #[serde(default)]
    pub unlisted_zones: Vec<String>,
}

/// Whether the simulated Timezones list has `zone` (section 7 of the reference): a zone the
/// tz database knows that `synthflow_zone` would send unchanged (listed areas, the six
/// `US/*` aliases, no old names), and not one of `unlisted_zones`.
fn zone_is_listed(config: &SimConfig, zone: &str) -> bool {
    zone.parse::<chrono_tz::Tz>().is_ok()
        && crate::synthflow::wire::synthflow_zone(zone) == Some(zone)
        && !config.unlisted_zones.iter().any(|z| z == zone)
}

/// The slug the simulated workspace gives `number`: opaque (not the digits), as the API
/// reference advises treating slugs, so a client that derives slugs from numbers fails.
pub fn slug_of(number: &str) -> String {
    format!(
        "{:010}",
        xxhash_rust::xxh3::xxh3_64(number.as_bytes()) % 10_000_000_000
    )
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimWebhook {
    pub url: String,
    pub secret: String,
}

fn one() -> u32 {
    1
}
fn five() -> u32 {
    5
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimAgent {
    pub model_id: String,
    #[serde(default = "outbound")]
    pub r#type: String,
    #[serde(default)]
    pub attached: Vec<String>,
}

fn outbound() -> String {
    "outbound".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallBehaviour {
    pub ring_ms: u64,
    pub talk_ms: u64,
    /// Share of calls answered; the rest end `no-answer`, `busy` or `failed`.
    pub answer_rate: f64,
    /// Per caller ID overrides of `answer_rate`.
    pub answer_rates: HashMap<String, f64>,
    /// Leads' numbers that say "stop calling me" when they answer: their calls end with
    /// the collected variable `do_not_call: true` (in `GET /v2/calls/{id}` and the webhook).
    pub opt_outs: Vec<String>,
}

impl Default for CallBehaviour {
    fn default() -> Self {
        CallBehaviour {
            ring_ms: 2_000,
            talk_ms: 20_000,
            answer_rate: 0.6,
            answer_rates: HashMap::new(),
            opt_outs: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Share of `POST /v2/calls` answered 500 without placing the call.
    pub server_error_rate: f64,
    /// Share answered 500 AFTER placing the call (the ambiguous case).
    pub accept_then_error_rate: f64,
    /// Share that place the call and then answer only after `hang_ms` (client times out).
    pub accept_then_timeout_rate: f64,
    pub hang_ms: u64,
    /// Extra latency on every request.
    pub latency_ms: u64,
    /// Share of `POST /v2/calls` answered 429 whatever the load (another dialer on the
    /// account, say).
    pub rate_limit_rate: f64,
    /// A hung API: every request is taken and never answered nor acted on.
    pub hung: bool,
    /// Share of `POST /v2/calls` the API acts on only `late_accept_ms` after they arrive (a
    /// queue behind its gateway), whether or not the client still waits: a client that
    /// timed out and looked at once finds no call, which exists a moment later.
    pub late_accept_rate: f64,
    pub late_accept_ms: u64,
}

/// A call the simulator accepted.
#[derive(Debug, Clone, Serialize)]
pub struct SimCall {
    pub call_id: String,
    pub request: CallRequest,
    pub accepted_at: DateTime<Utc>,
    pub answered: bool,
    pub outcome: String,
    pub ring_ms: u64,
    pub talk_ms: u64,
    /// The lead asked not to be called again (see `CallBehaviour::opt_outs`).
    pub opted_out: bool,
}

impl SimCall {
    fn ends_at(&self) -> DateTime<Utc> {
        let talk = if self.answered { self.talk_ms } else { 0 };
        self.accepted_at + chrono::Duration::milliseconds((self.ring_ms + talk) as i64)
    }

    fn status_at(&self, now: DateTime<Utc>) -> &str {
        let ringing_until = self.accepted_at + chrono::Duration::milliseconds(self.ring_ms as i64);
        if now < ringing_until {
            "ringing"
        } else if now < self.ends_at() {
            "in-progress"
        } else {
            &self.outcome
        }
    }

    fn record(&self, now: DateTime<Utc>) -> CallRecord {
        let status = self.status_at(now).to_string();
        let terminal = super::wire::is_terminal_status(&status);
        CallRecord {
            call_id: self.call_id.clone(),
            model_id: Some(self.request.model_id.clone()),
            from_phone_number: self.request.from_phone_number.clone(),
            to_phone_number: Some(self.request.phone.clone()),
            start_time_ms: Some(self.accepted_at.timestamp_millis()),
            end_call_reason: terminal.then(|| {
                if self.answered {
                    "agent_goodbye".into()
                } else {
                    "error".into()
                }
            }),
            error_message: (status == "failed").then(|| "Telephony - 404 - Not Found".to_string()),
            duration_s: Some(if terminal && self.answered {
                // Whole seconds, rounded up: an answered call lasted at least one.
                self.talk_ms.div_ceil(1000) as i64
            } else {
                0
            }),
            collected_variables: (terminal && self.answered && self.opted_out).then(|| {
                json!({ self.request.model_id.clone(): { "do_not_call": { "value": true, "collected": true } } })
            }),
            status,
        }
    }
}

struct SimState {
    config: SimConfig,
    attached: HashMap<String, BTreeSet<String>>,
    /// Numbers the workspace owns: every number ever attached (slugs resolve among them).
    owned: BTreeSet<String>,
    calls: Vec<SimCall>,
    by_id: HashMap<String, usize>,
    recent_attempts: VecDeque<DateTime<Utc>>,
    draws: u64,
    rate_limited: u64,
    /// When each 429 was answered.
    rate_limited_at: Vec<DateTime<Utc>>,
    /// How often each call's record was read (`GET /v2/calls/{id}`).
    record_reads: HashMap<String, u64>,
}

impl SimState {
    /// A deterministic draw in [0, 1) from the seed.
    fn draw(&mut self) -> f64 {
        self.draws += 1;
        let hash =
            xxhash_rust::xxh3::xxh3_64_with_seed(&self.draws.to_le_bytes(), self.config.seed);
        (hash >> 11) as f64 / (1u64 << 53) as f64
    }

    fn live_calls(&self, now: DateTime<Utc>) -> usize {
        // Calls are appended in time order; only recent ones can still be live.
        self.calls
            .iter()
            .rev()
            .take_while(|c| now - c.accepted_at < chrono::Duration::hours(2))
            .filter(|c| c.ends_at() > now)
            .count()
    }
}

/// The simulator's shared state; cheap to clone.
#[derive(Clone)]
pub struct Simulator {
    state: Arc<Mutex<SimState>>,
}

fn detail(status: StatusCode, description: &str) -> Response {
    let body = json!({"detail": {"status": status.as_u16().to_string(), "description": description, "request_id": "sim", "category": "simulator"}});
    (status, Json(body)).into_response()
}

impl Simulator {
    pub fn new(config: SimConfig) -> Simulator {
        let attached = config
            .agents
            .iter()
            .map(|a| (a.model_id.clone(), a.attached.iter().cloned().collect()))
            .collect();
        let owned = config
            .agents
            .iter()
            .flat_map(|a| a.attached.iter().cloned())
            .chain(config.workspace_numbers.iter().flatten().cloned())
            .collect();
        Simulator {
            state: Arc::new(Mutex::new(SimState {
                config,
                attached,
                owned,
                calls: Vec::new(),
                by_id: HashMap::new(),
                recent_attempts: VecDeque::new(),
                draws: 0,
                rate_limited: 0,
                rate_limited_at: Vec::new(),
                record_reads: HashMap::new(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every call accepted so far, in order.
    pub fn log(&self) -> Vec<SimCall> {
        self.lock().calls.clone()
    }

    /// How many `POST /v2/calls` were refused with 429.
    pub fn rate_limited(&self) -> u64 {
        self.lock().rate_limited
    }

    /// How often the record of `call_id` has been read: tests wait on a read, not a sleep.
    pub fn record_reads(&self, call_id: &str) -> u64 {
        self.lock().record_reads.get(call_id).copied().unwrap_or(0)
    }

    /// When each 429 was answered.
    pub fn rate_limited_at(&self) -> Vec<DateTime<Utc>> {
        self.lock().rate_limited_at.clone()
    }

    /// Changes the key the simulator accepts (a revoked or rotated key).
    pub fn set_api_key(&self, key: &str) {
        self.lock().config.api_key = key.to_string();
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().config.faults = faults;
    }

    pub fn detach(&self, model_id: &str, number: &str) {
        if let Some(pool) = self.lock().attached.get_mut(model_id) {
            pool.remove(number);
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/v2/calls", get(list_calls).post(create_call))
            .route("/v2/calls/{call_id}", get(get_call))
            .route("/v2/assistants/{model_id}", get(get_assistant))
            .route("/v2/assistants/{model_id}/phone_numbers", put(attach))
            .route(
                "/v2/assistants/{model_id}/phone_numbers/{slug}",
                delete(detach),
            )
            .route("/sim/log", get(sim_log))
            .with_state(self.clone())
    }

    /// Serves on a free loopback port until the runtime ends; returns the API's base URL
    /// (`http://127.0.0.1:PORT/v2`). For tests, benchmarks and the demo.
    pub async fn start_local(&self) -> std::io::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}/v2", listener.local_addr()?);
        tokio::spawn(self.clone().serve(listener, std::future::pending()));
        Ok(base_url)
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        // The number tables are built on first use (slow in a debug build): built now, the
        // first calls are not held back and then stamped as one burst.
        let _ = E164::parse("+14155550100");
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    fn authorised(&self, headers: &HeaderMap) -> bool {
        let expected = format!("Bearer {}", self.lock().config.api_key);
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
    }

    async fn latency(&self) {
        if self.lock().config.faults.hung {
            std::future::pending::<()>().await;
        }
        let ms = self.lock().config.faults.latency_ms;
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

fn unauthorised() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"detail": "Invalid API key"})),
    )
        .into_response()
}

enum Accepted {
    Ok(String),
    ThenError,
    ThenHang(String, u64),
}

async fn create_call(State(sim): State<Simulator>, headers: HeaderMap, body: String) -> Response {
    sim.latency().await;
    let late = {
        let mut state = sim.lock();
        let faults = &state.config.faults;
        let (rate, ms) = (faults.late_accept_rate, faults.late_accept_ms);
        (rate > 0.0 && state.draw() < rate).then_some(ms)
    };
    if let Some(ms) = late {
        // Acted on in a task of its own: a client hanging up does not stop it.
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            accept_call(sim, headers, body).await
        });
        return task.await.unwrap_or_else(|_| {
            detail(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
        });
    }
    accept_call(sim, headers, body).await
}

async fn accept_call(sim: Simulator, headers: HeaderMap, body: String) -> Response {
    // Arrival is when the request reaches the API, before any work on it.
    let now = Utc::now();
    if !sim.authorised(&headers) {
        return unauthorised();
    }
    let request: CallRequest = match serde_json::from_str::<CallRequest>(&body) {
        Ok(r) => r,
        Err(e) => return detail(StatusCode::BAD_REQUEST, &format!("invalid body: {e}")),
    };
    if request.model_id.is_empty() || request.name.trim().is_empty() || request.phone.is_empty() {
        return detail(
            StatusCode::BAD_REQUEST,
            "model_id, phone and name are required",
        );
    }
    if E164::parse(&request.phone).is_err() {
        return detail(
            StatusCode::BAD_REQUEST,
            "Telephony - 400 - Invalid phone number",
        );
    }
    if let Some(zone) = &request.lead_timezone
        && !zone_is_listed(&sim.lock().config, zone)
    {
        return detail(
            StatusCode::BAD_REQUEST,
            &format!("Invalid lead_timezone: {zone}"),
        );
    }
    let accepted = {
        let mut state = sim.lock();
        let Some(pool) = state.attached.get(&request.model_id) else {
            return detail(StatusCode::NOT_FOUND, "Assistant not found");
        };
        if let Some(from) = &request.from_phone_number
            && !pool.contains(from)
        {
            return detail(
                StatusCode::BAD_REQUEST,
                "from_phone_number is not attached to this agent",
            );
        }
        let faults = state.config.faults.clone();
        if state.draw() < faults.server_error_rate {
            return detail(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
        }
        while state
            .recent_attempts
            .front()
            .is_some_and(|&t| now - t >= chrono::Duration::seconds(1))
        {
            state.recent_attempts.pop_front();
        }
        let caps = state.config.attempts_per_second as usize;
        let concurrency = state.config.concurrency as usize;
        if state.recent_attempts.len() >= caps
            || state.live_calls(now) >= concurrency
            || state.draw() < faults.rate_limit_rate
        {
            state.rate_limited += 1;
            state.rate_limited_at.push(now);
            return detail(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded");
        }
        state.recent_attempts.push_back(now);
        let rate = request
            .from_phone_number
            .as_ref()
            .and_then(|n| state.config.calls.answer_rates.get(n))
            .copied()
            .unwrap_or(state.config.calls.answer_rate);
        let answered = state.draw() < rate;
        let outcome = if answered {
            "completed"
        } else {
            ["no-answer", "no-answer", "busy", "failed"][(state.draw() * 4.0) as usize % 4]
        };
        let call_id = format!(
            "sim-{:08}-{:016x}",
            state.calls.len() + 1,
            xxhash_rust::xxh3::xxh3_64(request.phone.as_bytes())
        );
        let opted_out = state.config.calls.opt_outs.contains(&request.phone);
        let call = SimCall {
            call_id: call_id.clone(),
            opted_out,
            request,
            accepted_at: now,
            answered,
            outcome: outcome.into(),
            ring_ms: state.config.calls.ring_ms,
            talk_ms: state.config.calls.talk_ms,
        };
        let index = state.calls.len();
        state.by_id.insert(call_id.clone(), index);
        state.calls.push(call);
        if let Some(webhook) = state.config.webhook.clone() {
            tokio::spawn(post_webhook(webhook, state.calls[index].clone()));
        }
        let draw = state.draw();
        if draw < faults.accept_then_error_rate {
            Accepted::ThenError
        } else if draw < faults.accept_then_error_rate + faults.accept_then_timeout_rate {
            Accepted::ThenHang(call_id, faults.hang_ms.max(1))
        } else {
            Accepted::Ok(call_id)
        }
    };
    let call_id = match accepted {
        Accepted::Ok(id) => id,
        Accepted::ThenError => return detail(StatusCode::BAD_GATEWAY, "Upstream error"),
        Accepted::ThenHang(id, ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            id
        }
    };
    (StatusCode::OK, Json(json!({"status": "success", "response": {"answer": "ok", "call_id": call_id}, "eta": 1}))).into_response()
}

async fn get_call(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(call_id): Path<String>,
) -> Response {
    sim.latency().await;
    if !sim.authorised(&headers) {
        return unauthorised();
    }
    let now = Utc::now();
    let mut state = sim.lock();
    match state.by_id.get(&call_id).copied() {
        Some(i) => {
            *state.record_reads.entry(call_id).or_default() += 1;
            let record = state.calls[i].record(now).to_get_json();
            Json(json!({"status": "ok", "response": {"pagination": {"total_records": 1, "limit": 20, "offset": 0}, "calls": [record]}})).into_response()
        }
        None => detail(StatusCode::NOT_FOUND, "Call not found"),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    model_id: Option<String>,
    lead_phone_number: Option<String>,
    from_date: Option<i64>,
    limit: Option<usize>,
    offset: Option<usize>,
}

async fn list_calls(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    sim.latency().await;
    if !sim.authorised(&headers) {
        return unauthorised();
    }
    let Some(model_id) = query.model_id else {
        return detail(StatusCode::BAD_REQUEST, "model_id is required");
    };
    let now = Utc::now();
    let state = sim.lock();
    let matching: Vec<Value> = state
        .calls
        .iter()
        .filter(|c| c.request.model_id == model_id)
        .filter(|c| {
            query
                .lead_phone_number
                .as_ref()
                .is_none_or(|p| *p == c.request.phone)
        })
        .filter(|c| {
            query
                .from_date
                .is_none_or(|from| c.accepted_at.timestamp_millis() >= from)
        })
        .map(|c| c.record(now).to_list_json())
        .collect();
    let (limit, offset) = (query.limit.unwrap_or(20), query.offset.unwrap_or(0));
    let page: Vec<Value> = matching.iter().skip(offset).take(limit).cloned().collect();
    Json(json!({"status": "ok", "response": {"pagination": {"total_records": matching.len(), "limit": limit, "offset": offset}, "calls": page}})).into_response()
}

async fn get_assistant(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(model_id): Path<String>,
) -> Response {
    sim.latency().await;
    if !sim.authorised(&headers) {
        return unauthorised();
    }
    let state = sim.lock();
    let Some(agent) = state.config.agents.iter().find(|a| a.model_id == model_id) else {
        return detail(StatusCode::BAD_REQUEST, "Assistant not found");
    };
    let attached: Vec<Value> = state.attached[&model_id]
        .iter()
        .map(|n| json!({"number": n, "sid": null, "slug": slug_of(n)}))
        .collect();
    Json(json!({"status": "ok", "response": {"pagination": {"total_records": 1, "limit": 20, "offset": 0}, "assistants": [
        {"model_id": model_id, "type": agent.r#type, "name": "simulated agent", "attached_phone_numbers": attached, "actions": [], "input_variables": []}
    ]}}))
    .into_response()
}

async fn attach(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path(model_id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    if !sim.authorised(&headers) {
        return unauthorised();
    }
    let numbers: Vec<String> = match (body.get("phone_numbers"), body.get("phone_number_slugs")) {
        (Some(_), Some(_)) => {
            return detail(
                StatusCode::BAD_REQUEST,
                "send phone_numbers or phone_number_slugs, not both",
            );
        }
        (Some(list), None) => serde_json::from_value(list.clone()).unwrap_or_default(),
        (None, Some(list)) => {
            let slugs = serde_json::from_value::<Vec<String>>(list.clone()).unwrap_or_default();
            let state = sim.lock();
            let known: Vec<&String> = state.owned.iter().collect();
            let mut numbers = Vec::new();
            for slug in slugs {
                match known.iter().find(|n| slug_of(n) == slug) {
                    Some(number) => numbers.push((*number).clone()),
                    None => return detail(StatusCode::NOT_FOUND, "Phone number not found"),
                }
            }
            numbers
        }
        (None, None) => return detail(StatusCode::BAD_REQUEST, "phone_numbers is required"),
    };
    let mut state = sim.lock();
    let replaces = state.config.put_replaces;
    if state.config.workspace_numbers.is_some() {
        if numbers.iter().any(|n| !state.owned.contains(n)) {
            return detail(StatusCode::NOT_FOUND, "Phone number not found");
        }
    } else {
        state.owned.extend(numbers.iter().cloned());
    }
    match state.attached.get_mut(&model_id) {
        Some(pool) => {
            if replaces {
                pool.clear();
            }
            pool.extend(numbers);
            Json(json!({"status": "ok"})).into_response()
        }
        None => detail(StatusCode::NOT_FOUND, "Assistant not found"),
    }
}

async fn detach(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Path((model_id, slug)): Path<(String, String)>,
) -> Response {
    if !sim.authorised(&headers) {
        return unauthorised();
    }
    let mut state = sim.lock();
    let removed = state.attached.get_mut(&model_id).is_some_and(|pool| {
        let before = pool.len();
        pool.retain(|n| slug_of(n) != slug);
        pool.len() < before
    });
    if removed {
        Json(json!({"status": "ok"})).into_response()
    } else {
        detail(StatusCode::NOT_FOUND, "Phone number not attached")
    }
}

async fn sim_log(State(sim): State<Simulator>) -> Response {
    Json(json!({"calls": sim.log(), "rate_limited": sim.rate_limited()})).into_response()
}

/// Posts the documented post-call payload once the call has ended.
async fn post_webhook(webhook: SimWebhook, call: SimCall) {
    let wait = (call.ends_at() - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(5)).await;
    let record = call.record(Utc::now());
    let body = json!({
        "status": record.status,
        "error_message": record.error_message.clone().unwrap_or_default(),
        "lead": {"name": call.request.name, "phone_number": call.request.phone, "prompt_variables": {}},
        "call": {"status": record.status, "end_call_reason": record.end_call_reason, "model_id": call.request.model_id,
                 "timezone": "Europe/Berlin", "call_id": call.call_id, "duration": record.duration_s,
                 "start_time": call.accepted_at.to_rfc3339(), "transcript": ""},
        "executed_actions": {},
        "collected_variables": if call.answered && call.opted_out {
            json!({"do_not_call": {"value": true, "collected": true}})
        } else {
            json!({})
        },
    });
    let signature = super::webhook::sign(&webhook.secret, &call.call_id);
    let result = reqwest::Client::new()
        .post(&webhook.url)
        .header("Synthflow-Signature", signature)
        .json(&body)
        .send()
        .await;
    if let Err(e) = result {
        tracing::warn!(
            call_id = call.call_id,
            "simulator could not post the webhook: {e}"
        );
    }
}
