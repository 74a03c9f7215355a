//! Signed calls from the executor to the edge: status changes and results.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ouro_core::dispatch::{
    edge_result_path, edge_status_path, sign_request, JobOutcome, StatusReport, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use reqwest::StatusCode;
use serde::Serialize;

/// One HTTP attempt; the edge answers these in milliseconds when it is up.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("could not encode the {what} for job {job_id}: {source}")]
    Encode { what: &'static str, job_id: String, source: serde_json::Error },
    #[error("POST {url} failed: {detail}")]
    Transport { url: String, detail: String },
    #[error("POST {url} answered {status}: {body}")]
    Refused { url: String, status: StatusCode, body: String },
    #[error("gave up on POST {url} after {attempts} attempts over {elapsed_s:.0} s; last error: {last}")]
    GaveUp { url: String, attempts: u32, elapsed_s: f64, last: Box<ReportError> },
}

impl ReportError {
    /// Whether trying again later can help: the edge is down, slow, or failing on its side.
    fn is_transient(&self) -> bool {
        match self {
            ReportError::Transport { .. } => true,
            ReportError::Refused { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
                    // A clock skewed past the signature window heals with a fresh timestamp on the next attempt.
                    || *status == StatusCode::UNAUTHORIZED
            }
            ReportError::Encode { .. } | ReportError::GaveUp { .. } => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct EdgeClient {
    http: reqwest::Client,
    base_url: String,
    secret: Vec<u8>,
}

impl EdgeClient {
    pub fn new(base_url: &str, secret: Vec<u8>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            // The edge is on loopback; a proxy from the environment must never see our traffic.
            .no_proxy()
            .build()?;
        Ok(EdgeClient { http, base_url: base_url.trim_end_matches('/').to_string(), secret })
    }

    /// Reports a status change once: it is informative, the result that follows is what counts.
    pub async fn report_status(&self, job_id: &str, report: &StatusReport) -> Result<(), ReportError> {
        let body = encode("status report", job_id, report)?;
        self.post_signed(&edge_status_path(job_id), body).await
    }

    /// Delivers a job's outcome, retrying with backoff for up to `retry_for` while the edge is unreachable or
    /// failing: a lost result is a paid job lost.
    pub async fn report_result(
        &self,
        job_id: &str,
        outcome: &JobOutcome,
        retry_for: Duration,
    ) -> Result<(), ReportError> {
        let body = encode("result", job_id, outcome)?;
        let path = edge_result_path(job_id);
        let started = tokio::time::Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let err = match self.post_signed(&path, body.clone()).await {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
            let elapsed = started.elapsed();
            if !err.is_transient() || elapsed + backoff > retry_for {
                return Err(ReportError::GaveUp {
                    url: self.url(&path),
                    attempts,
                    elapsed_s: elapsed.as_secs_f64(),
                    last: Box::new(err),
                });
            }
            tracing::warn!(job_id, attempts, error = %err, retry_in_ms = backoff.as_millis() as u64, "result not delivered yet");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    async fn post_signed(&self, path: &str, body: Vec<u8>) -> Result<(), ReportError> {
        let url = self.url(path);
        // A fresh timestamp per attempt, so a retry minutes later is still inside the edge's window.
        let ts = unix_now();
        let signature = sign_request(&self.secret, ts, "POST", path, &body);
        let response = self
            .http
            .post(&url)
            .header(HEADER_TIMESTAMP, ts.to_string())
            .header(HEADER_SIGNATURE, signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| ReportError::Transport { url: url.clone(), detail: error_chain(&e) })?;
        let status = response.status();
        // 409: the edge already has this (an earlier attempt landed but its answer was lost) — delivered.
        if status.is_success() || status == StatusCode::CONFLICT {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(ReportError::Refused { url, status, body: body.chars().take(500).collect() })
    }
}

/// reqwest's own message ("error sending request") hides the cause (connection refused, timeout) in its sources.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn encode<T: Serialize>(what: &'static str, job_id: &str, value: &T) -> Result<Vec<u8>, ReportError> {
    serde_json::to_vec(value).map_err(|source| ReportError::Encode { what, job_id: job_id.to_string(), source })
}

/// Seconds since the epoch; a clock before 1970 signs as 0 and is refused by the edge, which is what it deserves.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
