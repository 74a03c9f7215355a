//! Webhooks: where a job's end may be POSTed, how the POST is signed, what it carries and when a failed
//! delivery is tried again.
//!
//! Each job with a `webhook_url` has its own HMAC key, derived by the edge from its job id and a service secret
//! and returned once, as `webhook_secret`, in the submit answer (a repeated payment answers the same). The
//! receiver checks `X-Ouro-Signature-256: sha256=<hex HMAC-SHA256(key, "{X-Ouro-Timestamp}.{body}")>`.

use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

pub const USER_AGENT: &str = "Ouro-Webhook/1.0";
pub const HEADER_DELIVERY: &str = "X-Ouro-Delivery";
pub const HEADER_TIMESTAMP: &str = "X-Ouro-Timestamp";
pub const HEADER_SIGNATURE: &str = "X-Ouro-Signature-256";
/// Deliveries of one job's webhook, the first included.
pub const MAX_ATTEMPTS: u32 = 3;
pub const MAX_URL_CHARS: usize = 2048;

/// Checks a submitted `webhook_url`: `https://` anywhere, `http://` only to this machine (`localhost`,
/// `127.0.0.1`), no credentials in it, no whitespace.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL_CHARS {
        return Err(format!("must be at most {MAX_URL_CHARS} characters"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".into());
    }
    let lower = url.to_ascii_lowercase();
    let (https, rest) = if let Some(rest) = lower.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = lower.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err("must be an https:// URL (http:// only to localhost or 127.0.0.1)".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err("must not carry credentials".into());
    }
    let host = match authority.rsplit_once(':') {
        // `[v6]` without a port has colons of its own.
        Some((host, port)) if !authority.ends_with(']') => {
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().is_err() {
                return Err("has an invalid port".into());
            }
            host
        }
        _ => authority,
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    if !https && host != "localhost" && host != "127.0.0.1" {
        return Err("may use http:// only to localhost or 127.0.0.1; use https://".into());
    }
    Ok(())
}

/// The `X-Ouro-Signature-256` value for `body` sent at `timestamp` (unix seconds).
pub fn signature(key: &[u8], timestamp: u64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A job's webhook key: HMAC of its id under the service's secret, so it is never stored and a repeated submit
/// answer can show it again.
pub fn job_key(service_secret: &[u8], job_id: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(service_secret).expect("HMAC takes any key length");
    mac.update(b"ouro-webhook-key:");
    mac.update(job_id.as_bytes());
    format!("whsec_{}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether a delivery that got `status` (`None`: no answer — network error or timeout) is tried again.
pub fn retryable(status: Option<u16>) -> bool {
    match status {
        None => true,
        Some(s) => s >= 500 || s == 408 || s == 429,
    }
}

/// Seconds to wait before attempt `next` (2, 3, ...): `base_s`, then doubling.
pub fn backoff_s(next: u32, base_s: u32) -> u32 {
    base_s.saturating_mul(1 << next.saturating_sub(2).min(10))
}

/// The webhook's body, built from the job's `GET /api/jobs/{id}` view so the fields are the same values.
pub fn payload(detail: &Value) -> Value {
    let status = detail["status"].as_str().unwrap_or_default();
    let event = if status == "completed" { "job.completed" } else { "job.failed" };
    let mut out = Map::new();
    out.insert("webhook_event".into(), json!(event));
    let mut fields = vec![
        "job_id",
        "status",
        "submitter_address",
        "payer",
        "price_usdc",
        "price",
        "submitted_at",
        "started_at",
        "completed_at",
        "compute_duration_s",
        "image",
        "cpus",
        "exit_code",
        "output",
        "error_output",
        "output_truncated",
        "error_output_truncated",
    ];
    if event == "job.failed" {
        fields.extend(["failure_reason", "failure_stage", "failure_message", "fault", "credit_applied"]);
    }
    for f in fields {
        out.insert(f.into(), detail.get(f).cloned().unwrap_or(Value::Null));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for ok in [
            "https://example.com/hook",
            "HTTPS://example.com",
            "https://example.com:8443/a?b=c",
            "http://localhost:9000/hook",
            "http://127.0.0.1/x",
            "http://localhost",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://example.com/hook",
            "http://10.0.0.1/",
            "http://localhost.evil.com/",
            "http://localhost@evil.com/",
            "http://127.0.0.1:99999/",
            "ftp://example.com",
            "example.com",
            "https://",
            "https://exa mple.com",
            "http://127.0.0.1:/",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert!(check_url(&format!("https://a.com/{}", "x".repeat(MAX_URL_CHARS))).is_err());
    }

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_dot_body() {
        // RFC 4231-style check against an independent computation: HMAC-SHA256("key", "1.{}").
        let sig = signature(b"key", 1, "{}");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"key").unwrap();
        mac.update(b"1.{}");
        assert_eq!(sig, format!("sha256={}", hex::encode(mac.finalize().into_bytes())));
        assert_ne!(signature(b"key", 2, "{}"), sig);
        assert_ne!(signature(b"other", 1, "{}"), sig);
    }

    #[test]
    fn keys_differ_per_job_and_secret() {
        assert_eq!(job_key(b"s", "a"), job_key(b"s", "a"));
        assert_ne!(job_key(b"s", "a"), job_key(b"s", "b"));
        assert_ne!(job_key(b"s", "a"), job_key(b"t", "a"));
        assert!(job_key(b"s", "a").starts_with("whsec_"));
    }

    #[test]
    fn retries_only_what_can_heal() {
        for s in [None, Some(500), Some(502), Some(503), Some(408), Some(429)] {
            assert!(retryable(s), "{s:?}");
        }
        for s in [Some(200), Some(204), Some(301), Some(400), Some(401), Some(404), Some(410), Some(422)] {
            assert!(!retryable(s), "{s:?}");
        }
        assert_eq!((backoff_s(2, 2), backoff_s(3, 2), backoff_s(4, 2)), (2, 4, 8));
    }

    #[test]
    fn payload_copies_the_job_view() {
        let detail = json!({"job_id": "j", "status": "failed", "output": "あ\u{FFFD}\n", "cpus": 1,
            "failure_reason": "cancelled", "fault": "user_error", "credit_applied": 0.5, "script": "secret"});
        let p = payload(&detail);
        assert_eq!(p["webhook_event"], "job.failed");
        assert_eq!(p["output"], detail["output"]);
        assert_eq!(p["failure_reason"], "cancelled");
        assert!(p.get("script").is_none());
        let done = payload(&json!({"status": "completed"}));
        assert_eq!(done["webhook_event"], "job.completed");
        assert!(done.get("failure_reason").is_none());
    }
}
