//! The Queue consumer: hands each paid job to an executor, and ends the jobs no executor would take.
//!
//! A message is acknowledged only once an executor has the job (or the job no longer needs one); a busy or
//! unreachable pool makes the message come back later. When the queue's retries run out the message lands in
//! the dead-letter queue, whose consumer fails the job as a `platform_error`: a paid job never silently vanishes.

use ouro_core::dispatch::{
    sign_request, AssignmentReply, JobAssignment, EXECUTOR_JOBS_PATH, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use ouro_core::job::{FailureReason, JobStatus};
use serde::{Deserialize, Serialize};
use worker::{Env, MessageBatch, MessageExt, QueueRetryOptionsBuilder, Result};

use crate::config::Config;
use crate::{db, workspaces};
use crate::outbound::post_json;
use crate::routes::now_ms;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DispatchMessage {
    pub job_id: String,
}

const EXECUTOR_TIMEOUT_MS: u64 = 10_000;
const RETRY_DELAY_S: u32 = 6;

enum Handoff {
    /// An executor has the job (now or from an earlier delivery).
    Taken(String),
    /// Nobody could take it now.
    NotNow(String),
}

async fn hand_off(config: &Config, assignment: &JobAssignment) -> Handoff {
    let body = serde_json::to_string(assignment).unwrap_or_default();
    let mut why = Vec::new();
    for url in &config.executor_urls {
        let ts = now_ms() / 1000;
        let sig = sign_request(&config.executor_secret, ts, "POST", EXECUTOR_JOBS_PATH, body.as_bytes());
        let ts = ts.to_string();
        let headers = [(HEADER_TIMESTAMP, ts.as_str()), (HEADER_SIGNATURE, sig.as_str())];
        match post_json(&format!("{url}{EXECUTOR_JOBS_PATH}"), &body, &headers, EXECUTOR_TIMEOUT_MS).await {
            Ok((202, _)) => return Handoff::Taken(url.clone()),
            Ok((409, _)) => return Handoff::Taken(url.clone()),
            Ok((status, text)) => {
                let reply = serde_json::from_str::<AssignmentReply>(&text).ok();
                why.push(format!("{url}: HTTP {status} {reply:?}"));
            }
            Err(e) => why.push(e.to_string()),
        }
    }
    Handoff::NotNow(why.join("; "))
}

pub async fn consume(batch: MessageBatch<DispatchMessage>, env: Env) -> Result<()> {
    let dead_letters = batch.queue().ends_with("-dlq");
    let config = Config::from_env(&env).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let db = env.d1("DB")?;
    for message in batch.messages()? {
        let job_id = message.body().job_id.clone();
        if dead_letters {
            // Only a job still waiting for an executor: the sweep may have queued a second message for it, and
            // one copy giving up must not fail a job the other copy handed over.
            let pending = db::get_job(&db, &job_id).await?.is_some_and(|j| j.status == JobStatus::Pending.as_str());
            if pending {
                let why = "no executor accepted the job before the dispatch queue gave up";
                db::fail_undispatched(&db, &job_id, FailureReason::ExecutorUnavailable, why, now_ms()).await?;
                crate::credits::on_job_end_logged(&db, &job_id, now_ms()).await;
                crate::webhooks::on_job_end(&env, &db, &job_id).await;
            }
            message.ack();
            continue;
        }
        let Some(job) = db::get_job(&db, &job_id).await? else {
            worker::console_error!("queued job {job_id} has no record; dropping the message");
            message.ack();
            continue;
        };
        if job.status != JobStatus::Pending.as_str() {
            message.ack();
            continue;
        }
        // The sweep re-queues pending jobs whose deliveries stopped (a lost Queue send).
        crate::sweep::note_delivery(&db, &job_id, now_ms()).await;
        let files = match &job.workspace_key {
            None => Vec::new(),
            Some(key) => match workspaces::get(&env.bucket(workspaces::BINDING)?, key).await? {
                Some(files) => files,
                None => {
                    let why = format!("the job's workspace {key} is missing from storage");
                    db::fail_undispatched(&db, &job_id, FailureReason::InternalError, &why, now_ms()).await?;
                    crate::credits::on_job_end_logged(&db, &job_id, now_ms()).await;
                    crate::webhooks::on_job_end(&env, &db, &job_id).await;
                    message.ack();
                    continue;
                }
            },
        };
        let assignment = JobAssignment {
            job_id: job.id.clone(),
            image: job.image.clone(),
            script: job.script.clone(),
            files,
            entrypoint: job.entrypoint.clone(),
            cpus: job.cpus,
            time_limit_min: job.time_limit_min,
            output_cap_bytes: config.output_cap_bytes,
            mount_storage: job.mount_storage != 0,
            output_limits: config.storage.output_limits,
        };
        match hand_off(&config, &assignment).await {
            Handoff::Taken(url) => {
                let note = format!("accepted by executor {url}");
                let moved = db::advance_status(&db, &job_id, JobStatus::Processing, &note, now_ms(), Some(&url)).await?;
                // Cancelled while we handed it over: the job has ended here, so stop it there too.
                if !moved && db::get_job(&db, &job_id).await?.is_some_and(|j| j.cancel_requested_at.is_some()) {
                    if let Err(why) = cancel_on(&config, &url, &job_id, 5_000).await {
                        worker::console_error!("job {job_id} was cancelled but {url} did not confirm the kill: {why}");
                    }
                }
                message.ack();
            }
            Handoff::NotNow(why) => {
                worker::console_log!("job {job_id} not dispatched yet: {why}");
                message.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(RETRY_DELAY_S).build());
            }
        }
    }
    Ok(())
}

/// Asks the executor at `url` to kill `job_id` (the payer cancelled it): `Ok(true)` when it was running there,
/// `Ok(false)` when the executor does not run it (finished, its result on the way).
pub async fn cancel_on(config: &Config, url: &str, job_id: &str, timeout_ms: u64) -> std::result::Result<bool, String> {
    let path = ouro_core::dispatch::executor_cancel_path(job_id);
    let ts = now_ms() / 1000;
    let sig = sign_request(&config.executor_secret, ts, "POST", &path, b"");
    let ts = ts.to_string();
    let headers = [(HEADER_TIMESTAMP, ts.as_str()), (HEADER_SIGNATURE, sig.as_str())];
    match post_json(&format!("{url}{path}"), "", &headers, timeout_ms).await {
        Ok((202, _)) => Ok(true),
        Ok((404, _)) => Ok(false),
        Ok((status, text)) => Err(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>())),
        Err(e) => Err(e.to_string()),
    }
}
