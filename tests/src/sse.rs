//! A small Server-Sent Events reader for the events tests: reads `GET /api/jobs/{id}/events` as it streams and
//! hands back each event with the moment it arrived.

use std::time::{Duration, Instant};

use serde_json::Value;

/// One event as received.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Option<u64>,
    pub kind: String,
    pub data: Value,
    pub at: Instant,
}

impl Event {
    pub fn is_terminal(&self) -> bool {
        self.data["terminal"] == true
    }
}

/// An open stream.
pub struct Stream {
    resp: reqwest::Response,
    buf: Vec<u8>,
    pub comments: Vec<String>,
}

/// Opens the events stream of `job_id` (after `last_event_id`, if given) with extra query `params`.
pub async fn open(job_id: &str, last_event_id: Option<u64>, params: &[(&str, String)]) -> reqwest::Response {
    let http = reqwest::Client::builder().no_proxy().build().expect("a client");
    let mut req = http.get(format!("{}/api/jobs/{job_id}/events", crate::edge_url())).query(params);
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    req.send().await.expect("the edge answers")
}

impl Stream {
    pub fn new(resp: reqwest::Response) -> Self {
        assert_eq!(resp.status(), 200, "events stream refused");
        let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
        Stream { resp, buf: Vec::new(), comments: Vec::new() }
    }

    /// The next event, `None` when the stream ends; panics after `limit` without one.
    pub async fn next(&mut self, limit: Duration) -> Option<Event> {
        let until = Instant::now() + limit;
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..pos + 2).collect();
                let text = String::from_utf8(block).expect("the stream is UTF-8");
                let (mut id, mut kind, mut data) = (None, String::from("message"), None);
                for line in text.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        self.comments.push(c.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse().expect("numeric ids"));
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        kind = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).unwrap_or_else(|e| panic!("data is not JSON ({e}): {v}")));
                    }
                }
                if let Some(data) = data {
                    return Some(Event { id, kind, data, at: Instant::now() });
                }
                continue;
            }
            let left = until.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no event within {limit:?}");
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buf.extend_from_slice(&bytes),
                Ok(Ok(None)) => return None,
                Ok(Err(e)) => panic!("stream failed: {e}"),
                Err(_) => panic!("no event within {limit:?}"),
            }
        }
    }

    /// Reads until a comment containing `needle` arrives (true) or `limit` passes (false); the events read
    /// meanwhile are dropped.
    pub async fn comment_within(&mut self, needle: &str, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        loop {
            if self.comments.iter().any(|c| c.contains(needle)) {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            // A comment-only block makes `next` read on; give it the time that is left.
            let attempt = tokio::time::timeout(left, self.next(left + Duration::from_secs(1))).await;
            if matches!(attempt, Ok(None)) {
                return self.comments.iter().any(|c| c.contains(needle));
            }
        }
    }

    /// Every event until the stream closes.
    pub async fn all(&mut self, limit: Duration) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(e) = self.next(limit).await {
            out.push(e);
        }
        out
    }
}

/// The text of the `output` events of `stream` ("stdout"/"stderr"), in order.
pub fn text_of(events: &[Event], stream: &str) -> String {
    events
        .iter()
        .filter(|e| e.kind == "output" && e.data["stream"] == stream)
        .map(|e| e.data["data"].as_str().expect("output data is text"))
        .collect()
}
