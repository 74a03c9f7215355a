//! The sweep's reads and writes (edge/src/sweep.rs): jobs that look stuck, and the delivery stamp it reads.

use serde::Deserialize;
use worker::{D1Database, Result};

use super::{n, s, stmt};

/// Stamps a delivery of a pending job by the dispatch queue.
pub async fn note_delivery(db: &D1Database, job_id: &str, now_ms: u64) -> Result<()> {
    stmt(
        db,
        "UPDATE jobs SET last_delivery_at = ?2 WHERE id = ?1 AND status = 'pending'",
        &[s(job_id), n(now_ms as f64)],
    )?
    .run()
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Deserialize)]
pub struct JobId {
    pub id: String,
}

/// Pending jobs that no queue delivery has seen since `before_ms` (or ever, if submitted before it).
pub async fn undelivered(db: &D1Database, before_ms: u64, limit: u32) -> Result<Vec<JobId>> {
    stmt(
        db,
        "SELECT id FROM jobs WHERE status = 'pending' AND COALESCE(last_delivery_at, submitted_at) < ?1 \
         ORDER BY submitted_at LIMIT ?2",
        &[n(before_ms as f64), n(f64::from(limit))],
    )?
    .all()
    .await?
    .results()
}

#[derive(Debug, Clone, Deserialize)]
pub struct ActiveJob {
    pub id: String,
    pub status: String,
    pub executor_url: Option<String>,
    pub time_limit_min: u32,
    /// When its time limit started counting at the latest: the container start, else the delivery that handed
    /// it over, else its submission.
    pub since_ms: u64,
}

/// Jobs an executor should have (`processing`/`running`) that have been there since before `before_ms`.
pub async fn handed_over(db: &D1Database, before_ms: u64, limit: u32) -> Result<Vec<ActiveJob>> {
    stmt(
        db,
        "SELECT id, status, executor_url, time_limit_min, \
         COALESCE(started_at, last_delivery_at, submitted_at) AS since_ms FROM jobs \
         WHERE status IN ('processing', 'running') AND COALESCE(started_at, last_delivery_at, submitted_at) < ?1 \
         ORDER BY submitted_at LIMIT ?2",
        &[n(before_ms as f64), n(f64::from(limit))],
    )?
    .all()
    .await?
    .results()
}

/// Ended jobs since `since_ms` that have no earned credit recorded (none was due, or recording it failed).
pub async fn ended_without_credit(db: &D1Database, since_ms: u64, limit: u32) -> Result<Vec<JobId>> {
    stmt(
        db,
        "SELECT j.id FROM jobs j WHERE j.status IN ('completed', 'failed') AND j.completed_at >= ?1 \
         AND NOT EXISTS (SELECT 1 FROM credits c WHERE c.key = 'earn:' || j.id) \
         ORDER BY j.completed_at DESC LIMIT ?2",
        &[n(since_ms as f64), n(f64::from(limit))],
    )?
    .all()
    .await?
    .results()
}
