//! Delivering the outbox to the user's systems, as the Standard Webhooks specification says:
//! a JSON body with `type`, `timestamp` and `data`; headers `webhook-id` (the event's, the
//! same on every try), `webhook-timestamp` and `webhook-signature` (`v1,` and the base64
//! HMAC-SHA256 of `id.timestamp.body` under the `whsec_` secret). Tried again with back-off
//! until a 2xx, across restarts (the outbox is in the store); with several daemons each due
//! event is taken by one of them for a lease.

use super::*;
use crate::store::outbox::{OutboxEvent, retry_after};

/// Where results go, and the key they are signed with.
#[derive(Clone)]
pub struct ResultsTarget {
    pub url: String,
    /// A Standard Webhooks secret (`whsec_` and base64).
    pub secret: String,
}

// Hand-written so that the secret never reaches a log through `{:?}`.
impl std::fmt::Debug for ResultsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultsTarget")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Events taken per round, and how long a member holds them.
const BATCH: u32 = 32;
const LEASE: Duration = Duration::from_secs(60);
/// How long one delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle deliverer looks for due events (a daemon's own events wake it at once).
const IDLE_LOOK: Duration = Duration::from_secs(1);

impl<S: Store> Shared<S> {
    /// Delivers due events until the daemon stops.
    pub(super) async fn deliver_results(self: Arc<Self>, target: ResultsTarget) {
        let webhook = match standardwebhooks::Webhook::new(&target.secret) {
            Ok(webhook) => webhook,
            Err(e) => {
                // The configuration is checked at load; this is a second line.
                tracing::error!(
                    "results: the secret is not a Standard Webhooks secret ({e}); nothing is delivered"
                );
                return;
            }
        };
        let http = match reqwest::Client::builder().timeout(DELIVERY_TIMEOUT).build() {
            Ok(http) => http,
            Err(e) => {
                tracing::error!("results: cannot build an HTTP client: {e}");
                return;
            }
        };
        while !self.stopping() {
            let now = self.config.clock.now();
            // A read first: an idle deliverer takes no write lock.
            let backlog = self.store.outbox_backlog().await;
            if matches!(backlog, Ok((0, _))) {
                tokio::select! {
                    () = self.sleep_or_stop(IDLE_LOOK) => {}
                    () = self.results_wake.notified() => {}
                }
                continue;
            }
            let batch = match self.store.claim_outbox(now, BATCH, LEASE).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!("results: cannot read the outbox: {e}");
                    self.sleep_or_stop(IDLE_LOOK).await;
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    () = self.sleep_or_stop(IDLE_LOOK) => {}
                    () = self.results_wake.notified() => {}
                }
                continue;
            }
            let taken_at = tokio::time::Instant::now();
            for event in batch {
                if self.stopping() {
                    return; // its lease runs out; the next start (or another member) sends it
                }
                if taken_at.elapsed() > LEASE / 2 {
                    // A slow receiver: the rest of the batch is taken again when its lease
                    // ends, rather than sent near its end while another member may take it.
                    break;
                }
                let outcome = deliver(&http, &webhook, &target.url, &event).await;
                let class = match &outcome {
                    Ok(status) => format!("{}xx", status / 100),
                    Err(_) => "error".to_string(),
                };
                metrics::counter!("callroute_results_deliveries_total", "class" => class)
                    .increment(1);
                let now = self.config.clock.now();
                let recorded = match outcome {
                    Ok(status) if (200..300).contains(&status) => {
                        self.store.outbox_delivered(event.seq, now).await
                    }
                    failed => {
                        let error = match failed {
                            Ok(status) => format!("HTTP {status}"),
                            Err(e) => e,
                        };
                        let wait = jittered(retry_after(event.tries), event.seq);
                        let next_at = now + chrono::Duration::from_std(wait).unwrap_or_default();
                        tracing::warn!(
                            event = %event.id,
                            tries = event.tries + 1,
                            "results: delivery to {} failed ({error}); trying again in {wait:?}",
                            target.url
                        );
                        self.store.outbox_failed(event.seq, &error, next_at).await
                    }
                };
                if let Err(e) = recorded {
                    // Delivered again after its lease: receivers drop repeats by the id.
                    tracing::warn!(event = %event.id, "results: cannot record a delivery: {e}");
                }
            }
        }
    }
}

/// One try: the HTTP status, or why there was none.
async fn deliver(
    http: &reqwest::Client,
    webhook: &standardwebhooks::Webhook,
    url: &str,
    event: &OutboxEvent,
) -> Result<u16, String> {
    let body = event.webhook_body();
    let signed_at = Utc::now().timestamp();
    let signature = webhook
        .sign(&event.id, signed_at, body.as_bytes())
        .map_err(|e| e.to_string())?;
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &event.id)
        .header("webhook-timestamp", signed_at.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| crate::bounded(&e.to_string(), 200).to_string())?;
    Ok(response.status().as_u16())
}

/// `wait` less up to a quarter, the same for an event every time (so that receivers that
/// come back are not hit by every event at once).
fn jittered(wait: Duration, seq: i64) -> Duration {
    let fraction = (xxhash_rust::xxh3::xxh3_64(&seq.to_le_bytes()) % 1000) as f64 / 4000.0;
    wait.mul_f64(1.0 - fraction)
}
