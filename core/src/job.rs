//! The vocabulary of a job's life, shared by the D1 columns, the API fields, the executor and the logs.

use serde::{Deserialize, Serialize};

/// `pending` → `processing` → `running` → `completed` | `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Paid and queued; no executor has it yet.
    Pending,
    /// An executor accepted it and is preparing the container.
    Processing,
    /// The container is running.
    Running,
    Completed,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Processing => "processing",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => JobStatus::Pending,
            "processing" => JobStatus::Processing,
            "running" => JobStatus::Running,
            "completed" => JobStatus::Completed,
            "failed" => JobStatus::Failed,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Failed)
    }

    /// Whether a job may move from `self` to `next`. Status reports can arrive late or twice (HTTP retries,
    /// queue redelivery): the edge applies only forward moves, so a stale report never rewinds a job.
    pub fn can_become(self, next: JobStatus) -> bool {
        !self.is_terminal() && next.rank() > self.rank()
    }

    fn rank(self) -> u8 {
        match self {
            JobStatus::Pending => 0,
            JobStatus::Processing => 1,
            JobStatus::Running => 2,
            JobStatus::Completed | JobStatus::Failed => 3,
        }
    }
}

/// Whose fault a failure is: it decides who pays for it (credits are issue-level policy, the fault is a fact).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The job's own doing: non-zero exit, time limit, out of memory.
    UserError,
    /// Ours: executor unreachable, engine error, lost job.
    PlatformError,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::UserError => "user_error",
            Fault::PlatformError => "platform_error",
        }
    }
}

/// Machine-readable reason a job failed (`failure_reason`). The human sentence goes in `failure_message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The process exited with a non-zero code.
    NonZeroExit,
    /// The wall-clock limit (`time_limit_min`) ran out and the container was killed.
    TimeLimitExceeded,
    /// The kernel OOM killer ended the process at the memory limit.
    OutOfMemory,
    /// The image could not be built (user's Dockerfile) — `failure_stage: build`.
    BuildFailed,
    /// No executor took the job before the queue gave up on it.
    ExecutorUnavailable,
    /// Something on our side broke while running the job.
    InternalError,
    /// The executor that had the job no longer has it (it died or restarted), or the job is far past its time
    /// limit without a result: found by the edge's sweep.
    ExecutorLost,
    /// The payer cancelled it (`POST /api/jobs/{id}/cancel`): a pending job never started, a running one was
    /// killed.
    Cancelled,
    /// What the job left in `/scratch` would exceed the wallet's storage quota (bytes or files); nothing of it
    /// was saved.
    StorageQuotaExceeded,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::NonZeroExit => "non_zero_exit",
            FailureReason::TimeLimitExceeded => "time_limit_exceeded",
            FailureReason::OutOfMemory => "out_of_memory",
            FailureReason::BuildFailed => "build_failed",
            FailureReason::ExecutorUnavailable => "executor_unavailable",
            FailureReason::InternalError => "internal_error",
            FailureReason::ExecutorLost => "executor_lost",
            FailureReason::StorageQuotaExceeded => "storage_quota_exceeded",
            FailureReason::Cancelled => "cancelled",
        }
    }

    /// The fault each reason implies; one table so the executor and the edge cannot disagree.
    pub fn fault(self) -> Fault {
        match self {
            FailureReason::NonZeroExit
            | FailureReason::TimeLimitExceeded
            | FailureReason::OutOfMemory
            | FailureReason::BuildFailed
            | FailureReason::Cancelled
            | FailureReason::StorageQuotaExceeded => Fault::UserError,
            FailureReason::ExecutorUnavailable | FailureReason::InternalError | FailureReason::ExecutorLost => {
                Fault::PlatformError
            }
        }
    }
}

/// Where in the job's life it failed (`failure_stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureStage {
    Dispatch,
    Build,
    Run,
}

impl FailureStage {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureStage::Dispatch => "dispatch",
            FailureStage::Build => "build",
            FailureStage::Run => "run",
        }
    }
}

/// The prebuilt image aliases a job may name. Operators map each alias to a concrete engine image.
pub const IMAGE_ALIASES: [&str; 3] = ["ouro-ubuntu", "ouro-python", "ouro-nodejs"];
pub const DEFAULT_IMAGE: &str = "ouro-ubuntu";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_only_move_forward() {
        use JobStatus::*;
        assert!(Pending.can_become(Processing));
        assert!(Pending.can_become(Failed));
        assert!(Processing.can_become(Running));
        assert!(Running.can_become(Completed));
        assert!(!Running.can_become(Processing));
        assert!(!Completed.can_become(Failed));
        assert!(!Failed.can_become(Completed));
        assert!(!Running.can_become(Running));
    }

    #[test]
    fn status_strings_round_trip() {
        for s in ["pending", "processing", "running", "completed", "failed"] {
            assert_eq!(JobStatus::parse(s).map(JobStatus::as_str), Some(s));
        }
        assert_eq!(JobStatus::parse("done"), None);
    }
}
