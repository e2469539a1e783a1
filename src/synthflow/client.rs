//! HTTP client for the Synthflow API: one connection pool, timeouts, and errors typed by what
//! the caller must do next (retry later, give up on the lead, stop dialing, or find out
//! whether the call exists before sending again).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::wire::{AttachedNumber, CallRecord, CallRequest, envelope, error_reason, one_or_many};

#[derive(Clone)]
pub struct ClientConfig {
    /// E.g. `https://api.synthflow.ai/v2` (no trailing slash needed).
    pub base_url: String,
    pub api_key: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    request_timeout: Duration,
}

// Hand-written so that the API key can never reach a log through `{:?}`.
impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .finish()
    }
}

/// What went wrong, sorted by what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 429: the call was not placed; back off and retry the same lead.
    #[error("rate limited (HTTP 429): {0}")]
    RateLimited(String),
    /// 401/403: the key is wrong for this cluster or revoked; stop dialing.
    #[error("not authorised (HTTP {status}): {reason}")]
    Unauthorized { status: u16, reason: String },
    /// Any other 4xx: the request itself is wrong; retrying will not help.
    #[error("rejected (HTTP {status}): {reason}")]
    Rejected { status: u16, reason: String },
    /// 5xx: the server failed, possibly after acting on the request.
    #[error("server error (HTTP {status}): {reason}")]
    Server { status: u16, reason: String },
    /// No connection was made: the request was certainly not received.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// Timed out or broke after the request may have been received.
    #[error("no answer (request may have been received): {0}")]
    Ambiguous(String),
    /// The server answered 2xx with a body we cannot use.
    #[error("unexpected response: {0}")]
    Decode(String),
}

impl ApiError {
    /// True when a `POST /v2/calls` that failed this way may still have placed the call.
    pub fn call_may_exist(&self) -> bool {
        matches!(
            self,
            ApiError::Server { .. } | ApiError::Ambiguous(_) | ApiError::Decode(_)
        )
    }

    /// A short, bounded label for metrics and logs.
    pub fn class(&self) -> &'static str {
        match self {
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::Rejected { .. } => "rejected",
            ApiError::Server { .. } => "server",
            ApiError::Connect(_) => "connect",
            ApiError::Ambiguous(_) => "ambiguous",
            ApiError::Decode(_) => "decode",
        }
    }
}

impl Client {
    pub fn new(config: &ClientConfig) -> Result<Client, ApiError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| ApiError::Connect(e.to_string()))?;
        Ok(Client {
            http,
            base_url: config.base_url.trim_end_matches('/').to_string(),
            api_key: config.api_key.clone(),
            request_timeout: config.request_timeout,
        })
    }

    /// How long a request may take before the client gives up on it.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn send(
        &self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, ApiError> {
        let started = std::time::Instant::now();
        let result = self.send_timed(request).await;
        metrics::histogram!("callroute_api_request_duration_seconds", "endpoint" => endpoint)
            .record(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            metrics::counter!("callroute_api_errors_total", "endpoint" => endpoint, "class" => e.class()).increment(1);
        }
        result
    }

    async fn send_timed(&self, request: reqwest::RequestBuilder) -> Result<Value, ApiError> {
        let response = request
            .bearer_auth(&self.api_key)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let body = response.text().await.map_err(transport_error)?;
        if status.is_success() {
            if body.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&body)
                .map_err(|e| ApiError::Decode(format!("{e}: {}", error_reason(&body))));
        }
        let reason = error_reason(&body);
        Err(match status {
            StatusCode::TOO_MANY_REQUESTS => ApiError::RateLimited(reason),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ApiError::Unauthorized {
                status: status.as_u16(),
                reason,
            },
            s if s.is_server_error() => ApiError::Server {
                status: s.as_u16(),
                reason,
            },
            StatusCode::NOT_FOUND if !self.base_url.ends_with("/v2") => ApiError::Rejected {
                status: 404,
                reason: format!(
                    "{reason} (base_url `{}` does not end in /v2, where Synthflow's API lives: e.g. https://api.synthflow.ai/v2)",
                    self.base_url
                ),
            },
            s => ApiError::Rejected {
                status: s.as_u16(),
                reason,
            },
        })
    }

    /// `POST /v2/calls`; returns the new call's id.
    pub async fn create_call(&self, call: &CallRequest) -> Result<String, ApiError> {
        let body = self
            .send("POST /calls", self.http.post(self.url("/calls")).json(call))
            .await?;
        envelope(&body, "call_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ApiError::Decode(format!("no response.call_id in {body}")))
    }

    /// `GET /v2/calls/{call_id}` (the call comes wrapped in a one-item list).
    pub async fn get_call(&self, call_id: &str) -> Result<CallRecord, ApiError> {
        let body = self
            .send(
                "GET /calls/{call_id}",
                self.http.get(self.url(&format!("/calls/{call_id}"))),
            )
            .await?;
        one_or_many(envelope(&body, "calls"))
            .into_iter()
            .find_map(CallRecord::from_json)
            .ok_or_else(|| ApiError::Decode(format!("no call in {body}")))
    }

    /// `GET /v2/calls?model_id=..&lead_phone_number=..&from_date=..`: the agent's calls to a
    /// number since `from_ms` (epoch milliseconds).
    pub async fn find_calls(
        &self,
        model_id: &str,
        lead_phone: &str,
        from_ms: i64,
    ) -> Result<Vec<CallRecord>, ApiError> {
        let mut found = Vec::new();
        let limit = 50;
        for page in 0..20 {
            let query = [
                ("model_id", model_id.to_string()),
                ("lead_phone_number", lead_phone.to_string()),
                ("from_date", from_ms.to_string()),
                ("limit", limit.to_string()),
                ("offset", (page * limit).to_string()),
            ];
            let body = self
                .send(
                    "GET /calls",
                    self.http.get(self.url("/calls")).query(&query),
                )
                .await?;
            let items = one_or_many(envelope(&body, "calls"));
            let count = items.len();
            found.extend(items.into_iter().filter_map(CallRecord::from_json));
            if count < limit {
                break;
            }
        }
        Ok(found)
    }

    /// `GET /v2/assistants/{model_id}`: the agent's attached pool.
    pub async fn attached_numbers(&self, model_id: &str) -> Result<Vec<AttachedNumber>, ApiError> {
        let body = self
            .send(
                "GET /assistants/{model_id}",
                self.http.get(self.url(&format!("/assistants/{model_id}"))),
            )
            .await?;
        let assistant = one_or_many(envelope(&body, "assistants"))
            .into_iter()
            .find(|a| {
                a.get("model_id")
                    .and_then(Value::as_str)
                    .is_none_or(|id| id == model_id)
            })
            .ok_or_else(|| ApiError::Decode(format!("no assistant {model_id} in response")))?;
        let numbers = assistant
            .get("attached_phone_numbers")
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        serde_json::from_value(numbers)
            .map_err(|e| ApiError::Decode(format!("attached_phone_numbers: {e}")))
    }

    /// `PUT /v2/assistants/{model_id}/phone_numbers` with E.164 numbers. Whether this adds
    /// to the pool or replaces it is undocumented: send the whole pool wanted, then read it.
    pub async fn attach_numbers(&self, model_id: &str, numbers: &[String]) -> Result<(), ApiError> {
        self.put_pool(model_id, serde_json::json!({ "phone_numbers": numbers }))
            .await
    }

    /// `PUT /v2/assistants/{model_id}/phone_numbers` with slugs as `GET` returned them.
    pub async fn attach_slugs(&self, model_id: &str, slugs: &[String]) -> Result<(), ApiError> {
        self.put_pool(model_id, serde_json::json!({ "phone_number_slugs": slugs }))
            .await
    }

    /// One of the two bodies, never both keys (the API refuses that).
    async fn put_pool(&self, model_id: &str, body: Value) -> Result<(), ApiError> {
        self.send(
            "PUT /assistants/{model_id}/phone_numbers",
            self.http
                .put(self.url(&format!("/assistants/{model_id}/phone_numbers")))
                .json(&body),
        )
        .await?;
        Ok(())
    }

    /// `DELETE /v2/assistants/{model_id}/phone_numbers/{slug}`, with the slug `GET` returned
    /// for the number (slugs are opaque: never derived from the number).
    pub async fn detach_number(&self, model_id: &str, slug: &str) -> Result<(), ApiError> {
        self.send(
            "DELETE /assistants/{model_id}/phone_numbers/{slug}",
            self.http
                .delete(self.url(&format!("/assistants/{model_id}/phone_numbers/{slug}"))),
        )
        .await?;
        Ok(())
    }
}

fn transport_error(error: reqwest::Error) -> ApiError {
    if error.is_connect() {
        ApiError::Connect(error.to_string())
    } else {
        ApiError::Ambiguous(error.to_string())
    }
}
