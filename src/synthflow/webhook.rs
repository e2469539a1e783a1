//! The post-call webhook: Synthflow signs only the `call_id`, as
//! base64(HMAC-SHA256(workspace secret, call_id)). So nothing else of the body is trusted:
//! the daemon reads the call's record (`GET /v2/calls/{id}`) before acting.

use base64::Engine;
use hmac::{KeyInit, Mac};
use serde_json::Value;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The signature Synthflow sends for `call_id`.
pub fn sign(secret: &str, call_id: &str) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(call_id.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks `signature` in constant time.
pub fn verify(secret: &str, call_id: &str, signature: &str) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(call_id.as_bytes());
    mac.verify_slice(&given).is_ok()
}

/// `call.call_id` and `call.status` (else the top-level `status`) of a webhook body.
pub fn call_outcome(body: &Value) -> Option<(String, String)> {
    let call = body.get("call")?;
    let call_id = call.get("call_id")?.as_str()?.to_string();
    let status = call
        .get("status")
        .or_else(|| body.get("status"))
        .and_then(Value::as_str)?
        .to_string();
    Some((call_id, status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_the_same_secret_and_call() {
        let signature = sign("s3cret", "call-1");
        assert!(verify("s3cret", "call-1", &signature));
        assert!(!verify("s3cret", "call-2", &signature));
        assert!(!verify("other", "call-1", &signature));
        assert!(!verify("s3cret", "call-1", "not base64!"));
    }

    #[test]
    fn outcome_from_the_documented_payload() {
        let body = serde_json::json!({"status": "completed", "call": {"call_id": "c1", "status": "no-answer"}, "lead": {}});
        assert_eq!(call_outcome(&body), Some(("c1".into(), "no-answer".into())));
    }
}
