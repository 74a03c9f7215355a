//! The recovery sweep, run by the cron: nothing paid may stay stuck.
//!
//! - A `pending` job the dispatch queue has not delivered for [`PENDING_SILENCE_MS`] has no message left (its
//!   Queue send failed after payment; a queued message is redelivered every few seconds): it is queued again.
//! - A `processing`/`running` job is checked with the executor that took it (`GET /v1/jobs/{id}`, signed). An
//!   executor that answers `unknown` restarted since and lost it (a SIGKILL, a crash: a graceful stop reports
//!   its jobs itself); a job still without a result [`GRACE_AFTER_LIMIT_MS`] after its time limit is lost
//!   whatever the executor says. Both fail as `executor_lost`, a `platform_error`: the payer gets the full
//!   price back as credit.
//! - Ended jobs whose credit was not recorded (the write failed) are credited.

use ouro_core::dispatch::{sign_request, Failure, JobOutcome, JobPresence, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use ouro_core::job::{FailureReason, FailureStage};
use worker::{D1Database, Env, Result};

use crate::config::Config;
use crate::db::{self, sweep as stuck};
use crate::dispatch::DispatchMessage;
use crate::outbound;

/// Silence after which a pending job is taken to have no queue message left.
pub const PENDING_SILENCE_MS: u64 = 3 * 60_000;
/// A job handed over less than this long ago is not asked about (its executor may not have reported yet).
pub const MIN_HANDED_OVER_MS: u64 = 60_000;
/// How long after its time limit a job without a result is declared lost.
pub const GRACE_AFTER_LIMIT_MS: u64 = 10 * 60_000;
/// How far back ended jobs are checked for a missing credit.
pub const CREDIT_CATCH_UP_MS: u64 = 2 * 3_600_000;
const ASK_TIMEOUT_MS: u64 = 5_000;
const BATCH: u32 = 50;

/// What one sweep did.
#[derive(Debug, Default)]
pub struct Swept {
    pub requeued: usize,
    pub lost: usize,
    pub credited: usize,
}

/// Stamps a queue delivery of a pending job; never fails the delivery (a missing stamp only makes the sweep
/// queue a harmless duplicate message).
pub async fn note_delivery(db: &D1Database, job_id: &str, now_ms: u64) {
    if let Err(e) = stuck::note_delivery(db, job_id, now_ms).await {
        worker::console_error!("job {job_id}: could not stamp its delivery: {e}");
    }
}

pub async fn run(env: &Env, now_ms: u64) -> Result<Swept> {
    let config = Config::from_env(env).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let db = env.d1("DB")?;
    let mut swept = Swept::default();

    let queue = env.queue("JOBS")?;
    for job in stuck::undelivered(&db, now_ms.saturating_sub(PENDING_SILENCE_MS), BATCH).await? {
        match queue.send(DispatchMessage { job_id: job.id.clone() }).await {
            Ok(()) => {
                // Stamped now, so the next sweep waits for this message's deliveries before sending another.
                stuck::note_delivery(&db, &job.id, now_ms).await?;
                worker::console_log!("sweep: job {} had no queue delivery; queued again", job.id);
                swept.requeued += 1;
            }
            Err(e) => worker::console_error!("sweep: could not queue job {} again: {e}", job.id),
        }
    }

    for job in stuck::handed_over(&db, now_ms.saturating_sub(MIN_HANDED_OVER_MS), BATCH).await? {
        let deadline = job.since_ms + u64::from(job.time_limit_min) * 60_000 + GRACE_AFTER_LIMIT_MS;
        let presence = match &job.executor_url {
            Some(url) => ask(&config, url, &job.id).await,
            None => Err("no executor recorded for it".to_string()),
        };
        let why = match presence {
            Ok(JobPresence::Unknown) => Some(format!(
                "the executor that had the job ({}) no longer knows it: it stopped or restarted while the job was {}",
                job.executor_url.as_deref().unwrap_or("?"),
                job.status
            )),
            _ if now_ms > deadline => Some(format!(
                "no result {} minutes after the job's time limit ran out",
                GRACE_AFTER_LIMIT_MS / 60_000
            )),
            Ok(_) => None,
            Err(e) => {
                worker::console_log!("sweep: job {} ({}): executor not reachable yet: {e}", job.id, job.status);
                None
            }
        };
        if let Some(why) = why {
            let failure = Failure {
                reason: FailureReason::ExecutorLost,
                stage: FailureStage::Run,
                message: format!("The job was lost on our side ({why}); its full price is credited to the payer."),
            };
            if db::record_outcome(&db, &job.id, &JobOutcome::failed_without_result(failure), now_ms).await? {
                worker::console_error!("sweep: job {} failed as executor_lost: {why}", job.id);
                swept.lost += 1;
            }
            crate::credits::on_job_end_logged(&db, &job.id, now_ms).await;
            crate::webhooks::on_job_end(env, &db, &job.id).await;
        }
    }

    for job in stuck::ended_without_credit(&db, now_ms.saturating_sub(CREDIT_CATCH_UP_MS), 100).await? {
        if crate::credits::on_job_end(&db, &job.id, now_ms).await?.is_some() {
            swept.credited += 1;
        }
    }
    Ok(swept)
}

/// Asks the executor at `url` whether it has `job_id`.
async fn ask(config: &Config, url: &str, job_id: &str) -> std::result::Result<JobPresence, String> {
    let path = ouro_core::dispatch::executor_job_path(job_id);
    let ts = crate::routes::now_ms() / 1000;
    let signature = sign_request(&config.executor_secret, ts, "GET", &path, b"");
    let ts = ts.to_string();
    let headers = [(HEADER_TIMESTAMP, ts.as_str()), (HEADER_SIGNATURE, signature.as_str())];
    match outbound::get_with(&format!("{url}{path}"), &headers, ASK_TIMEOUT_MS).await {
        Ok((200, body)) => serde_json::from_str(&body).map_err(|e| format!("unreadable answer {body:?}: {e}")),
        Ok((status, body)) => Err(format!("HTTP {status}: {body}")),
        Err(e) => Err(e.to_string()),
    }
}
