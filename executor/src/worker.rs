//! One accepted job end to end: run it, tell the edge how it goes (build progress, running, its output as it
//! comes), deliver its result, free the slot. A job can be cancelled while it runs ([`Cancels`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ouro_core::dispatch::{Failure, JobAssignment, StatusReport};
use ouro_core::job::{FailureReason, JobStatus};
use tokio::sync::{mpsc, oneshot, watch};

use crate::capture::{LiveOutput, RawLogs};
use crate::report::EdgeClient;
use crate::run::{internal_error, Runner};
use crate::slots::SlotGuard;

/// How long the result waits for the status reports to finish, so the edge sees them in order.
const STATUS_BEFORE_RESULT: Duration = Duration::from_secs(5);
/// How long the result waits for the last live output to reach the edge (its events come before the end).
const OUTPUT_BEFORE_RESULT: Duration = Duration::from_secs(15);

/// The running jobs that can be cancelled: each one's stop switch, and whether a cancel threw it.
#[derive(Debug, Default)]
pub struct Cancels {
    running: Mutex<HashMap<String, Arc<CancelSwitch>>>,
}

#[derive(Debug)]
struct CancelSwitch {
    stop: watch::Sender<bool>,
    cancelled: AtomicBool,
}

impl Cancels {
    /// Stops `job_id` if it runs here; `false` when it does not (never came, or its run is over).
    pub fn cancel(&self, job_id: &str) -> bool {
        let switch = self.running.lock().ok().and_then(|m| m.get(job_id).cloned());
        match switch {
            Some(s) => {
                s.cancelled.store(true, Ordering::SeqCst);
                let _ = s.stop.send(true);
                true
            }
            None => false,
        }
    }

    fn register(&self, job_id: &str) -> (Arc<CancelSwitch>, watch::Receiver<bool>) {
        let (stop, rx) = watch::channel(false);
        let switch = Arc::new(CancelSwitch { stop, cancelled: AtomicBool::new(false) });
        if let Ok(mut m) = self.running.lock() {
            m.insert(job_id.to_string(), Arc::clone(&switch));
        }
        (switch, rx)
    }

    fn forget(&self, job_id: &str) {
        if let Ok(mut m) = self.running.lock() {
            m.remove(job_id);
        }
    }
}

/// What every job task shares.
#[derive(Debug)]
pub struct Worker {
    pub runner: Runner,
    pub edge: EdgeClient,
    pub result_retry: Duration,
    /// Turns true at shutdown, after the drain period: running jobs are killed.
    pub abort: watch::Receiver<bool>,
    pub cancels: Cancels,
    /// Where the raw logs of running jobs are written, and how much of each stream (0: no logs).
    pub log_dir: PathBuf,
    pub log_cap: u64,
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

        // The job's own stop switch: thrown by a cancel, or by the shutdown's abort.
        let (switch, stop) = self.cancels.register(&job_id);
        let mut shutdown = self.abort.clone();
        let forward = Arc::clone(&switch);
        let shutdown_task = tokio::spawn(async move {
            if shutdown.wait_for(|stop| *stop).await.is_ok() {
                let _ = forward.stop.send(true);
            }
        });

        let live = Arc::new(match self.log_cap {
            0 => LiveOutput::default(),
            cap => match RawLogs::create(&self.log_dir, &job_id, cap) {
                Ok(logs) => LiveOutput::with_raw_logs(logs),
                Err(e) => {
                    tracing::warn!(job_id = %job_id, error = %e, "cannot write the raw log; the job runs without");
                    LiveOutput::default()
                }
            },
        });
        let (output_done, output_done_rx) = oneshot::channel();
        let (edge, output_job_id, output_live) = (self.edge.clone(), job_id.clone(), Arc::clone(&live));
        let output_task =
            tokio::spawn(async move { edge.stream_output(&output_job_id, output_live, output_done_rx).await });

        // In its own task so a panic in the run becomes a failed job instead of a silently lost one (the
        // container guard removes the container during the unwind).
        let this = Arc::clone(&self);
        let (run_job, run_live) = (job.clone(), Arc::clone(&live));
        let run = tokio::spawn(async move {
            let started = move || {
                let _ = events.send(StatusReport { status: JobStatus::Running, message: "container started".into() });
            };
            this.runner.run_live(&run_job, deadline, stop, progress, started, Some(run_live)).await
        });
        let run = run.await;
        shutdown_task.abort();
        self.cancels.forget(&job_id);
        let cancelled = switch.cancelled.load(Ordering::SeqCst);
        let outcome = match run {
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

        let outcome = if cancelled { as_cancelled(outcome) } else { outcome };

        let _ = output_done.send(());
        if tokio::time::timeout(OUTPUT_BEFORE_RESULT, output_task).await.is_err() {
            tracing::warn!(job_id = %job_id, "live output still pending; sending the result anyway");
        }
        // The full log is at the edge before the job ends there.
        self.edge.upload_logs(&job_id, live.finish_raw_logs()).await;
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

/// A run stopped by the payer's cancel reads as such (the stop looks like a shutdown to the runner). A job that
/// ended on its own before the kill keeps its own outcome: exactly one end, the one that happened.
fn as_cancelled(mut outcome: ouro_core::dispatch::JobOutcome) -> ouro_core::dispatch::JobOutcome {
    if let Some(f) = &outcome.failure {
        if f.reason == FailureReason::InternalError {
            outcome.failure = Some(Failure {
                reason: FailureReason::Cancelled,
                stage: f.stage,
                message: "The job was cancelled by its payer and its container was stopped; the output printed until \
                          then is kept."
                    .into(),
            });
            outcome.exit_code = None;
        }
    }
    outcome
}
