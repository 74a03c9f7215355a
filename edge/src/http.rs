//! Response helpers: one shape for every error (`{"error", "code"?, "field"?}`), CORS on everything.

use serde::Serialize;
use serde_json::json;
use worker::{Headers, Response, Result};

/// Headers a browser client must be able to send (x402, builder codes) and read (x402).
const CORS_ALLOW_HEADERS: &str = "content-type, payment-signature, x-payment, x-builder-code";
const CORS_EXPOSE_HEADERS: &str =
    "PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE, Retry-After, X-Ouro-Log-Truncated, X-Ouro-Bytes-Seen";

pub fn json<T: Serialize>(status: u16, body: &T) -> Result<Response> {
    Ok(Response::from_json(body)?.with_status(status))
}

pub fn error(status: u16, code: &str, message: impl std::fmt::Display) -> Result<Response> {
    json(status, &json!({ "error": message.to_string(), "code": code }))
}

pub fn field_error(field: &str, message: &str) -> Result<Response> {
    json(422, &json!({ "error": format!("{field}: {message}"), "code": "invalid_request", "field": field }))
}

pub fn with_retry_after(mut resp: Response, seconds: u32) -> Result<Response> {
    resp.headers_mut().set("Retry-After", &seconds.to_string())?;
    Ok(resp)
}

pub fn add_cors(headers: &Headers) -> Result<()> {
    headers.set("Access-Control-Allow-Origin", "*")?;
    headers.set("Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS)?;
    Ok(())
}

pub fn preflight() -> Result<Response> {
    let resp = Response::empty()?.with_status(204);
    let h = resp.headers();
    h.set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")?;
    h.set("Access-Control-Allow-Headers", CORS_ALLOW_HEADERS)?;
    h.set("Access-Control-Max-Age", "86400")?;
    Ok(resp)
}
