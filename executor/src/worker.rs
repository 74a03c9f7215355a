//! One accepted job end to end: run it, tell the edge how it goes (build progress, running), deliver its result,
//! free the slot.

use std::sync::Arc;
use std::time::Duration;

use ouro_core::dispatch::{JobAssignment, StatusReport};
use ouro_core::job::JobStatus;
use tokio::sync::{mpsc, watch};

use crate::report::EdgeClient;
use crate::run::{internal_error, Runner};
use crate::slots::SlotGuard;

/// How long the result waits for the status reports to finish, so the edge sees them in order.
const STATUS_BEFORE_RESULT: Duration = Duration::from_secs(5);

/// What every job task shares.
#[derive(Debug)]
pub struct Worker {
    pub runner: Runner,
    pub edge: EdgeClient,
    pub result_retry: Duration,
    /// Turns true at shutdown, after the drain period: running jobs are killed.
    pub abort: watch::Receiver<bool>,
}

impl Worker {
    /// Runs `job` holding `slot` until its result is delivered (or given up): while the edge cannot take
    /// results it cannot use new capacity either, and the held slot keeps shutdown waiting for the delivery.
    pub async fn execute(self: Arc<Self>, job: JobAssignment, slot: SlotGuard, deadline: Duration) {
        let job_id = job.job_id.clone();
        // Status reports go out one at a time, in the order they happened: build progress ("processing"), then
        // "running" once the container started. The channel closes when the run is over.
        let (events, mut events_rx) = mpsc::unbounded_channel::<StatusReport>();
        let edge = self.edge.clone();
        let status_job_id = job_id.clone();
        let status_task = tokio::spawn(async move {
            while let Some(report) = events_rx.recv().await {
                if let Err(e) = edge.report_status(&status_job_id, &report).await {
                    tracing::warn!(job_id = %status_job_id, status = report.status.as_str(), error = %e, "could not report a status");
                }
            }
        });
        let (progress_events, progress_job_id) = (events.clone(), job_id.clone());
        let progress = move |message: String| {
            tracing::info!(job_id = %progress_job_id, %message, "progress");
            let _ = progress_events.send(StatusReport { status: JobStatus::Processing, message });
        };

        // In its own task so a panic in the run becomes a failed job instead of a silently lost one (the
        // container guard removes the container during the unwind).
        let this = Arc::clone(&self);
        let run_job = job.clone();
        let run = tokio::spawn(async move {
            this.runner
                .run_with_progress(&run_job, deadline, this.abort.clone(), progress, move || {
                    let _ =
                        events.send(StatusReport { status: JobStatus::Running, message: "container started".into() });
                })
                .await
        });
        let outcome = match run.await {
            Ok(report) => {
                tracing::info!(
                    job_id = %job_id,
                    exit_code = ?report.outcome.exit_code,
                    failure = ?report.outcome.failure.as_ref().map(|f| f.reason),
                    duration_s = report.outcome.compute_duration_s,
                    stdout_bytes = report.stdout_bytes_seen,
                    stderr_bytes = report.stderr_bytes_seen,
                    setup_ms = (report.setup_s * 1000.0) as u64,
                    build = ?report.build,
                    teardown_ms = (report.teardown_s * 1000.0) as u64,
                    "job finished"
                );
                report.outcome
            }
            Err(e) => {
                tracing::error!(job_id = %job_id, error = %e, "job task failed");
                internal_error("the job's supervisor crashed", None)
            }
        };

        if tokio::time::timeout(STATUS_BEFORE_RESULT, status_task).await.is_err() {
            tracing::warn!(job_id = %job_id, "status reports still pending; sending the result anyway");
        }
        match self.edge.report_result(&job_id, &outcome, self.result_retry).await {
            Ok(()) => tracing::info!(job_id = %job_id, status = outcome.status().as_str(), "result delivered"),
            Err(e) => tracing::error!(job_id = %job_id, error = %e, "RESULT LOST: the edge never accepted it"),
        }
        drop(slot);
    }
}
