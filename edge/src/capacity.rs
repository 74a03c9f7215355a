//! The capacity pre-flight: before a price is quoted and again before a payment is settled, whether a job
//! bought now would find an executor. Refusing here (503 with `Retry-After`) costs the client nothing; taking
//! the money and letting the job wait out the queue's ten minutes would not.
//!
//! Two signals, read at once under short deadlines: the executors' `GET /v1/health` (status, free slots) and
//! the jobs waiting in D1 (`pending`). The service is full when no executor answers ready, or when the jobs
//! waiting beyond the free slots reach `MAX_QUEUE_DEPTH`.

use futures_util::future::join_all;
use ouro_core::dispatch::{ExecutorHealth, EXECUTOR_HEALTH_PATH};
use worker::{D1Database, Result};

use crate::config::Config;
use crate::db;
use crate::outbound;

/// Why no job can be taken now, and when to ask again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Full {
    pub code: &'static str,
    pub message: String,
    pub retry_after_s: u32,
}

/// One executor's answer to `GET /v1/health`: its slots, or why it is not usable.
pub async fn probe_executor(url: &str, timeout_ms: u64) -> std::result::Result<ExecutorHealth, String> {
    let target = format!("{url}{EXECUTOR_HEALTH_PATH}");
    match outbound::get(&target, timeout_ms).await {
        Ok((200, text)) => match serde_json::from_str::<ExecutorHealth>(&text) {
            Ok(h) if h.status == "ok" => Ok(h),
            Ok(h) => Err(format!("executor {url} reports status {:?}", h.status)),
            Err(e) => Err(format!("executor {url} answered {EXECUTOR_HEALTH_PATH} with an unreadable body: {e}")),
        },
        Ok((status, _)) => Err(format!("executor {url} answered {EXECUTOR_HEALTH_PATH} with HTTP {status}")),
        Err(e) => Err(e.to_string()),
    }
}

/// `Ok(Err(full))` when a job bought now would not find an executor.
pub async fn preflight(db: &D1Database, config: &Config) -> Result<std::result::Result<(), Full>> {
    let timeout = config.admission.capacity_timeout_ms;
    let probes = join_all(config.executor_urls.iter().map(|url| probe_executor(url, timeout)));
    let (answers, pending) = futures_util::future::join(probes, db::payments::pending_jobs(db)).await;
    let pending = pending?;
    let ready: Vec<ExecutorHealth> = answers.into_iter().filter_map(std::result::Result::ok).collect();
    Ok(judge(&ready, pending, config.admission.max_queue_depth))
}

/// The rule, apart from the reads.
fn judge(ready: &[ExecutorHealth], pending: u32, max_queue_depth: u32) -> std::result::Result<(), Full> {
    if ready.is_empty() {
        return Err(Full {
            code: "no_executor_available",
            message: "no executor is available to run a job; nothing was charged, retry later".into(),
            retry_after_s: 30,
        });
    }
    let free: u32 = ready.iter().map(|h| h.slots_free).sum();
    let waiting = pending.saturating_sub(free);
    if waiting >= max_queue_depth {
        return Err(Full {
            code: "capacity_exhausted",
            message: format!(
                "all executors are busy and {waiting} jobs are already waiting; nothing was charged, retry later"
            ),
            retry_after_s: 15,
        });
    }
    Ok(())
}
