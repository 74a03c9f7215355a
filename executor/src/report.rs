//! Signed calls from the executor to the edge: status changes, live output and results.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use axum::body::Bytes;
use ouro_core::dispatch::{
    edge_log_path, edge_output_path, edge_result_path, edge_status_path, sign_request, JobOutcome, LogHeader,
    OutputBatch, StatusReport, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use tokio::sync::oneshot;

use crate::capture::{LiveOutput, RawLogFile, CHUNK_BYTES};
use reqwest::StatusCode;
use serde::Serialize;

/// How often a running job's new output goes to the edge, at most (sooner when a full chunk waits).
pub const OUTPUT_INTERVAL: Duration = Duration::from_millis(250);
/// Most text in one output POST.
const OUTPUT_BATCH_BYTES: usize = 4 * CHUNK_BYTES;
const OUTPUT_ATTEMPTS: u32 = 3;

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
        self.post_signed(&edge_status_path(job_id), body.into()).await
    }

    /// Delivers a job's outcome, retrying with backoff for up to `retry_for` while the edge is unreachable or
    /// failing: a lost result is a paid job lost.
    pub async fn report_result(
        &self,
        job_id: &str,
        outcome: &JobOutcome,
        retry_for: Duration,
    ) -> Result<(), ReportError> {
        let body = Bytes::from(encode("result", job_id, outcome)?);
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

    /// Sends a running job's output to the edge as it comes: a batch every [`OUTPUT_INTERVAL`], or sooner when
    /// a full chunk waits, until `done` fires and everything is sent. A batch the edge does not take after a few
    /// tries is dropped with a warning: the live view then misses it, the result still has it all.
    pub async fn stream_output(&self, job_id: &str, live: Arc<LiveOutput>, mut done: oneshot::Receiver<()>) {
        let path = edge_output_path(job_id);
        let mut finishing = false;
        loop {
            if !finishing {
                tokio::select! {
                    _ = &mut done => finishing = true,
                    _ = live.ready.notified() => {}
                    _ = tokio::time::sleep(OUTPUT_INTERVAL) => {}
                }
            }
            loop {
                let chunks = live.take(OUTPUT_BATCH_BYTES);
                if chunks.is_empty() {
                    break;
                }
                let (first, count) = (chunks[0].seq, chunks.len());
                let body = match encode("output batch", job_id, &OutputBatch { chunks }) {
                    Ok(body) => Bytes::from(body),
                    Err(e) => {
                        tracing::error!(job_id, error = %e, "output batch not encodable; dropped");
                        continue;
                    }
                };
                let mut delay = Duration::from_millis(200);
                for attempt in 1..=OUTPUT_ATTEMPTS {
                    match self.post_signed(&path, body.clone()).await {
                        Ok(()) => break,
                        Err(e) if attempt < OUTPUT_ATTEMPTS && e.is_transient() => {
                            tokio::time::sleep(delay).await;
                            delay *= 2;
                        }
                        Err(e) => {
                            let (first_seq, chunks) = (first, count);
                            tracing::warn!(job_id, first_seq, chunks, error = %e, "live output batch dropped");
                            break;
                        }
                    }
                }
            }
            if finishing {
                return;
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// Sends the raw logs of a job to the edge (a few tries each), then removes their files. A log the edge
    /// does not take is lost with a warning: the capped output is in the result regardless.
    pub async fn upload_logs(&self, job_id: &str, logs: Vec<RawLogFile>) {
        for log in logs {
            let header = LogHeader { truncated: log.truncated, bytes_seen: log.bytes_seen };
            let sent = match (encode("log header", job_id, &header), tokio::fs::read(&log.path).await) {
                (Ok(mut body), Ok(bytes)) => {
                    body.push(b'\n');
                    body.extend_from_slice(&bytes);
                    drop(bytes);
                    let (body, path) = (Bytes::from(body), edge_log_path(job_id, log.stream));
                    let mut outcome = Ok(());
                    for attempt in 1..=OUTPUT_ATTEMPTS {
                        outcome = self.post_signed(&path, body.clone()).await;
                        match &outcome {
                            Err(e) if attempt < OUTPUT_ATTEMPTS && e.is_transient() => {
                                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await
                            }
                            _ => break,
                        }
                    }
                    outcome.map_err(|e| e.to_string())
                }
                (Err(e), _) => Err(e.to_string()),
                (_, Err(e)) => Err(format!("reading {}: {e}", log.path.display())),
            };
            if let Err(e) = sent {
                tracing::warn!(job_id, stream = log.stream.as_str(), error = %e, "raw log not delivered");
            }
            if let Err(e) = tokio::fs::remove_file(&log.path).await {
                tracing::warn!(path = %log.path.display(), error = %e, "could not remove a raw log");
            }
        }
    }

    async fn post_signed(&self, path: &str, body: Bytes) -> Result<(), ReportError> {
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
