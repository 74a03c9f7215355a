//! Outbound HTTP from the Worker with a deadline: every call to a facilitator, an executor or the chain's JSON-RPC
//! node goes through here, so none can hang a request, a queue batch or a scheduled run.

use std::time::Duration;

use futures_util::future::{select, Either};
use worker::wasm_bindgen::JsValue;
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit};

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("no answer from {url} within {ms} ms")]
    Timeout { url: String, ms: u64 },
    #[error("{url} unreachable: {why}")]
    Unreachable { url: String, why: String },
}

/// POSTs `body` as JSON with extra `headers`; answers the status and the body text.
pub async fn post_json(
    url: &str,
    body: &str,
    headers: &[(&str, &str)],
    timeout_ms: u64,
) -> Result<(u16, String), OutboundError> {
    send(Method::Post, url, Some(body), headers, timeout_ms).await
}

/// GETs `url`; answers the status and the body text.
pub async fn get(url: &str, timeout_ms: u64) -> Result<(u16, String), OutboundError> {
    send(Method::Get, url, None, &[], timeout_ms).await
}

/// GETs `url` with extra `headers` (e.g. a request signature); answers the status and the body text.
pub async fn get_with(url: &str, headers: &[(&str, &str)], timeout_ms: u64) -> Result<(u16, String), OutboundError> {
    send(Method::Get, url, None, headers, timeout_ms).await
}

async fn send(
    method: Method,
    url: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
    timeout_ms: u64,
) -> Result<(u16, String), OutboundError> {
    let unreachable = |e: worker::Error| OutboundError::Unreachable { url: url.to_string(), why: e.to_string() };
    let h = Headers::new();
    if body.is_some() {
        h.set("content-type", "application/json").map_err(unreachable)?;
    }
    for (name, value) in headers {
        h.set(name, value).map_err(unreachable)?;
    }
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(h).with_body(body.map(JsValue::from_str));
    let request = Request::new_with_init(url, &init).map_err(unreachable)?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let sent = Box::pin(async {
        let mut response = fetch.send_with_signal(&signal).await?;
        let status = response.status_code();
        Ok::<_, worker::Error>((status, response.text().await?))
    });
    let deadline = Delay::from(Duration::from_millis(timeout_ms));
    let outcome = match select(sent, deadline).await {
        Either::Left((result, _)) => result.map_err(unreachable),
        Either::Right(_) => {
            controller.abort();
            Err(OutboundError::Timeout { url: url.to_string(), ms: timeout_ms })
        }
    };
    outcome
}
