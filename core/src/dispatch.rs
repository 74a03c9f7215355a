//! The edge ⇄ executor protocol: the messages and their authentication.
//!
//! The edge's queue consumer hands a paid job to an executor with `POST /v1/jobs` ([`JobAssignment`]); the
//! executor answers at once (accepted, busy, or already has it) and runs the job in the background, then reports
//! to the edge with `POST /internal/jobs/{id}/status` ([`StatusReport`]) and `POST /internal/jobs/{id}/result`
//! ([`JobOutcome`]). Every request in both directions carries an HMAC over the timestamp, the method, the path
//! and the body ([`sign_request`] / [`verify_request`]), so a request cannot be forged, moved to another
//! endpoint, or replayed after the window.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::job::{FailureReason, FailureStage, Fault, JobStatus};

/// Path on the executor that takes assignments.
pub const EXECUTOR_JOBS_PATH: &str = "/v1/jobs";
/// Path on the executor that answers liveness and free capacity (unauthenticated: it reveals nothing).
pub const EXECUTOR_HEALTH_PATH: &str = "/v1/health";

/// Path on the edge where an executor reports a status change of a job.
pub fn edge_status_path(job_id: &str) -> String {
    format!("/internal/jobs/{job_id}/status")
}

/// Path on the edge where an executor writes a job's result.
pub fn edge_result_path(job_id: &str) -> String {
    format!("/internal/jobs/{job_id}/result")
}

/// Path on the edge where an executor delivers batches of a running job's output ([`OutputBatch`]).
pub fn edge_output_path(job_id: &str) -> String {
    format!("/internal/jobs/{job_id}/output")
}

/// Path on the edge where an executor delivers a job's raw log of `stream` (`stdout`/`stderr`): a first line of
/// JSON [`LogHeader`], then the bytes as the job wrote them.
pub fn edge_log_path(job_id: &str, stream: OutputStream) -> String {
    format!("/internal/jobs/{job_id}/logs/{}", stream.as_str())
}

/// The first line of a raw log delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogHeader {
    /// The stream wrote more than the executor's log cap.
    pub truncated: bool,
    /// Every byte the stream wrote, kept or not.
    pub bytes_seen: u64,
}

/// Path on the executor that kills a job it runs (the payer cancelled it); an empty signed POST.
pub fn executor_cancel_path(job_id: &str) -> String {
    format!("/v1/jobs/{job_id}/cancel")
}

/// Path on the executor that says whether it has a job ([`JobPresence`]); a signed GET with an empty body. The
/// edge's sweep asks it about jobs that seem stuck.
pub fn executor_job_path(job_id: &str) -> String {
    format!("/v1/jobs/{job_id}")
}

/// `GET /v1/jobs/{id}` answer: whether this executor runs the job now, ran it (within its memory of finished
/// ids), or has never heard of it (it restarted since, or never had it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobPresence {
    Running,
    Finished,
    Unknown,
}

pub const HEADER_TIMESTAMP: &str = "x-ouro-timestamp";
pub const HEADER_SIGNATURE: &str = "x-ouro-signature";
/// How far a request's timestamp may be from the receiver's clock.
pub const MAX_CLOCK_SKEW_S: u64 = 60;

/// A paid job handed to an executor: everything it needs to run it, nothing it must look up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobAssignment {
    pub job_id: String,
    /// An image alias (`ouro-python`, ...); the executor maps it to an engine image.
    pub image: String,
    /// The script of a script job (empty when the job is a workspace with an `entrypoint` or a Dockerfile).
    pub script: String,
    /// The workspace's files (a `Dockerfile` among them makes it an image build); empty for a script job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<crate::workspace::WorkspaceFile>,
    /// A shell command line to run instead of the script or the image's ENTRYPOINT/CMD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    pub cpus: u32,
    pub time_limit_min: u32,
    /// Most bytes of stdout and of stderr (each) the executor keeps; beyond it the stream is drained and dropped.
    pub output_cap_bytes: u64,
    /// Mount the payer's storage at `/scratch` (synced through the edge before and after the run).
    #[serde(default)]
    pub mount_storage: bool,
    /// Bounds on the files returned from `/outputs`.
    #[serde(default)]
    pub output_limits: crate::storage::OutputLimits,
}

/// `POST /v1/jobs` answers: 202 [`AssignmentReply::Accepted`], 409 `AlreadyAssigned` (the same job id is
/// running or ran here: a redelivered message), 503 `Busy` (no free slot: retry later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum AssignmentReply {
    Accepted,
    AlreadyAssigned,
    Busy { retry_after_s: u32 },
}

/// `GET /v1/health` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorHealth {
    pub status: String,
    pub slots_total: u32,
    pub slots_free: u32,
}

/// A status change the executor reports while it works (only `processing` and `running` are meaningful).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub status: JobStatus,
    pub message: String,
}

/// Which stream of the container a piece of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

/// A piece of a running job's output. `seq` counts from 0 over both streams of one job, in the order the
/// executor read them, so the edge can store a repeated delivery once and the events keep the order. The text
/// is exactly the next part of the stream's final `output`/`error_output` (same decoding, same cap): the live
/// view and the result never disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputChunk {
    pub seq: u64,
    pub stream: OutputStream,
    pub data: String,
}

/// `POST /internal/jobs/{id}/output`: chunks in `seq` order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputBatch {
    pub chunks: Vec<OutputChunk>,
}

/// How a job ended, as the executor saw it. `failure` is `None` exactly when the job completed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobOutcome {
    /// The process's exit code; `None` when it never ran or was killed before exiting by itself.
    pub exit_code: Option<i64>,
    pub output: String,
    pub error_output: String,
    pub output_truncated: bool,
    pub error_output_truncated: bool,
    /// Wall-clock seconds from container start to exit (or kill).
    pub compute_duration_s: f64,
    pub failure: Option<Failure>,
    /// Output files returned and the storage sync's summary.
    #[serde(default)]
    pub artifacts: crate::storage::Artifacts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub reason: FailureReason,
    pub stage: FailureStage,
    /// A sentence for the user: what happened and, where it helps, what to change.
    pub message: String,
}

impl Failure {
    pub fn fault(&self) -> Fault {
        self.reason.fault()
    }
}

impl JobOutcome {
    /// The outcome of a job that ended without a result from its run (e.g. declared lost by the edge's sweep):
    /// no exit code, no output, no compute time.
    pub fn failed_without_result(failure: Failure) -> JobOutcome {
        JobOutcome {
            exit_code: None,
            output: String::new(),
            error_output: String::new(),
            output_truncated: false,
            error_output_truncated: false,
            compute_duration_s: 0.0,
            failure: Some(failure),
            artifacts: Default::default(),
        }
    }

    pub fn status(&self) -> JobStatus {
        if self.failure.is_some() {
            JobStatus::Failed
        } else {
            JobStatus::Completed
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("timestamp is not a unix time in seconds")]
    BadTimestamp,
    #[error("timestamp is {skew_s} s away from now (at most {MAX_CLOCK_SKEW_S} s allowed)")]
    Stale { skew_s: u64 },
    #[error("signature does not match")]
    BadSignature,
}

fn mac(secret: &[u8], timestamp: u64, method: &str, path: &str, body: &[u8]) -> Hmac<Sha256> {
    // Hmac accepts keys of any length, so new_from_slice cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(method.to_ascii_uppercase().as_bytes());
    mac.update(b" ");
    mac.update(path.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The hex signature to send in [`HEADER_SIGNATURE`] with [`HEADER_TIMESTAMP`] = `timestamp`.
pub fn sign_request(secret: &[u8], timestamp: u64, method: &str, path: &str, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp, method, path, body).finalize().into_bytes())
}

/// Checks a request's headers against its method, path and body at time `now` (unix seconds).
pub fn verify_request(
    secret: &[u8],
    now: u64,
    timestamp: Option<&str>,
    signature: Option<&str>,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(), AuthError> {
    let timestamp = timestamp.ok_or(AuthError::MissingHeader(HEADER_TIMESTAMP))?;
    let signature = signature.ok_or(AuthError::MissingHeader(HEADER_SIGNATURE))?;
    let ts: u64 = timestamp.trim().parse().map_err(|_| AuthError::BadTimestamp)?;
    let skew_s = now.abs_diff(ts);
    if skew_s > MAX_CLOCK_SKEW_S {
        return Err(AuthError::Stale { skew_s });
    }
    let given = hex::decode(signature.trim()).map_err(|_| AuthError::BadSignature)?;
    // verify_slice compares in constant time.
    mac(secret, ts, method, path, body)
        .verify_slice(&given)
        .map_err(|_| AuthError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret";

    #[test]
    fn signed_request_verifies() {
        let sig = sign_request(SECRET, 1000, "POST", "/v1/jobs", b"{}");
        assert_eq!(verify_request(SECRET, 1010, Some("1000"), Some(&sig), "post", "/v1/jobs", b"{}"), Ok(()));
    }

    #[test]
    fn tampering_is_refused() {
        let sig = sign_request(SECRET, 1000, "POST", "/v1/jobs", b"{}");
        let check = |ts: &str, path: &str, body: &[u8], secret: &[u8]| {
            verify_request(secret, 1000, Some(ts), Some(&sig), "POST", path, body)
        };
        assert_eq!(check("1000", "/v1/jobs", b"{ }", SECRET), Err(AuthError::BadSignature));
        assert_eq!(check("1000", "/v1/other", b"{}", SECRET), Err(AuthError::BadSignature));
        assert_eq!(check("1001", "/v1/jobs", b"{}", SECRET), Err(AuthError::BadSignature));
        assert_eq!(check("1000", "/v1/jobs", b"{}", b"other"), Err(AuthError::BadSignature));
    }

    #[test]
    fn stale_and_missing_are_refused() {
        let sig = sign_request(SECRET, 1000, "POST", "/p", b"");
        assert_eq!(
            verify_request(SECRET, 1061, Some("1000"), Some(&sig), "POST", "/p", b""),
            Err(AuthError::Stale { skew_s: 61 })
        );
        assert_eq!(
            verify_request(SECRET, 1000, None, Some(&sig), "POST", "/p", b""),
            Err(AuthError::MissingHeader(HEADER_TIMESTAMP))
        );
        assert_eq!(
            verify_request(SECRET, 1000, Some("soon"), Some(&sig), "POST", "/p", b""),
            Err(AuthError::BadTimestamp)
        );
        assert_eq!(
            verify_request(SECRET, 1000, Some("1000"), Some("zz"), "POST", "/p", b""),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn outcome_status_follows_failure() {
        let mut outcome = JobOutcome {
            exit_code: Some(0),
            output: "hello\n".into(),
            error_output: String::new(),
            output_truncated: false,
            error_output_truncated: false,
            compute_duration_s: 0.2,
            failure: None,
            artifacts: Default::default(),
        };
        assert_eq!(outcome.status(), JobStatus::Completed);
        outcome.failure = Some(Failure {
            reason: FailureReason::NonZeroExit,
            stage: FailureStage::Run,
            message: "exit code 3".into(),
        });
        assert_eq!(outcome.status(), JobStatus::Failed);
        assert_eq!(outcome.failure.as_ref().map(Failure::fault), Some(Fault::UserError));
    }
}
