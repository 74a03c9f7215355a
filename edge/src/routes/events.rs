//! `GET /api/jobs/{id}/events`: the job's events as Server-Sent Events. History first, then what happens live
//! (status changes, output chunks while the container runs), then the terminal event, then the stream closes.
//!
//! The Worker keeps reading D1 while the response streams (the body is a Rust stream polled by the runtime as
//! the client reads), so "live" is a poll every `SSE_POLL_MS`. Every event carries its D1 row id as `id:`:
//! ids only grow, so `Last-Event-ID` resumes exactly after the last event the client saw. The terminal event is
//! written in the same D1 batch as the job's end, so it is never seen before `GET /api/jobs/{id}` agrees.
//! Streams are bounded: per job, in total (leases in D1, 429/503 before the stream starts) and in duration.

use std::time::Duration;

use futures_util::stream;
use ouro_core::sse;
use ouro_core::time::rfc3339_from_millis;
use ouro_core::wallet_auth::Action;
use serde_json::{json, Value};
use worker::{D1Database, Delay, Env, Request, Response, Result, RouteContext};

use super::now_ms;
use crate::db::events::{self, StreamEventRow, StreamRefusal};
use crate::db::{self, JobRow};
use crate::{access, http};

/// Events read per D1 query (output chunks are up to 16 KiB: a page stays under 1 MiB of memory).
const PAGE: u32 = 50;
/// How long a client waits before reconnecting (the SSE `retry:` field).
const RECONNECT_MS: u64 = 2000;
/// Between two checks of the job row while no event comes (only to end streams of jobs that ended without a
/// terminal event, i.e. before migration 0006).
const STATUS_CHECK_MS: u64 = 2000;
/// A stream's lease lasts this long and is renewed while the stream lives: a client that vanished without the
/// Worker noticing stops counting against the limits within it.
const LEASE_MS: u64 = 60_000;
const LEASE_RENEW_MS: u64 = 20_000;

pub async fn stream(req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let access::JobAccess { config, db, job } =
        match access::job_for(&req, &ctx, |job_id| Action::JobEvents { job_id }).await? {
            Ok(access) => access,
            Err(resp) => return Ok(resp),
        };
    let id = job.id.clone();
    let header = req.headers().get("Last-Event-ID")?;
    let url = req.url()?;
    let query = url.query_pairs().find(|(k, _)| k == "last_event_id").map(|(_, v)| v.into_owned());
    let after = sse::resume_after(header.as_deref().or(query.as_deref()));

    let limits = &config.events;
    let now = now_ms();
    let lease = uuid::Uuid::new_v4().to_string();
    let until = now + limits.max_duration_s * 1000;
    let lease_until = now + LEASE_MS;
    // The payer's signed streams are counted apart from bare-id ones: whoever else holds the id cannot use up
    // the streams of the job's own payer (a signed stream that got here is the payer's: `job_for` checked it).
    let scope = if access::signed_params(&req)?.is_empty() { id.clone() } else { format!("{id}#payer") };
    match events::open_stream(&db, &lease, &scope, now, lease_until, limits.streams_per_job, limits.streams_total).await? {
        Ok(()) => {}
        Err(StreamRefusal::PerJob) => {
            let why = format!("this job already has {} open event streams; close one first", limits.streams_per_job);
            return http::with_retry_after(http::error(429, "too_many_streams", why)?, 5);
        }
        Err(StreamRefusal::Total) => {
            return http::with_retry_after(
                http::error(503, "streams_at_capacity", "the service has no room for another event stream now")?,
                5,
            );
        }
    }

    let state = Live {
        db,
        env: ctx.env.clone(),
        job_id: id,
        after,
        lease,
        until,
        poll: Duration::from_millis(limits.poll_ms),
        keepalive_ms: limits.keepalive_s * 1000,
        last_sent: now,
        last_status_check: 0,
        lease_renewed: now,
        opened: false,
        done: false,
    };
    let body = stream::unfold(state, |mut live| async move {
        let chunk = live.next_chunk().await;
        chunk.map(|c| (c, live))
    });
    let mut resp = Response::from_stream(body)?;
    let headers = resp.headers_mut();
    headers.set("Content-Type", "text/event-stream; charset=utf-8")?;
    headers.set("Cache-Control", "no-cache, no-transform")?;
    headers.set("X-Accel-Buffering", "no")?;
    Ok(resp)
}

/// One open stream.
struct Live {
    db: D1Database,
    /// For the lease's release when the body is dropped (a `D1Database` cannot be cloned into that task).
    env: Env,
    job_id: String,
    /// The id of the last event sent.
    after: u64,
    lease: String,
    /// When the stream closes at the latest (unix ms).
    until: u64,
    poll: Duration,
    keepalive_ms: u64,
    last_sent: u64,
    last_status_check: u64,
    lease_renewed: u64,
    opened: bool,
    done: bool,
}

impl Live {
    /// The next piece of the body; `None` ends it. A D1 error ends the stream (the client resumes).
    async fn next_chunk(&mut self) -> Option<Result<Vec<u8>>> {
        if self.done {
            return None;
        }
        if !self.opened {
            self.opened = true;
            return Some(Ok(format!("{}{}", sse::retry(RECONNECT_MS), sse::comment("ouro job events")).into_bytes()));
        }
        match self.step().await {
            Ok(text) => Some(Ok(text.into_bytes())),
            Err(e) => {
                worker::console_error!("events stream of {} failed: {e}", self.job_id);
                self.finish().await;
                Some(Ok(sse::comment("stream interrupted; reconnect with Last-Event-ID").into_bytes()))
            }
        }
    }

    async fn step(&mut self) -> Result<String> {
        loop {
            let now = now_ms();
            if now.saturating_sub(self.lease_renewed) >= LEASE_RENEW_MS {
                self.lease_renewed = now;
                events::renew_stream(&self.db, &self.lease, now + LEASE_MS).await?;
            }
            // Read the job before its events: if it was terminal already, its terminal event is among them.
            let check_status = now.saturating_sub(self.last_status_check) >= STATUS_CHECK_MS;
            let ended_job = if check_status {
                self.last_status_check = now;
                db::get_job(&self.db, &self.job_id).await?.filter(|j| {
                    ouro_core::job::JobStatus::parse(&j.status).is_some_and(ouro_core::job::JobStatus::is_terminal)
                })
            } else {
                None
            };
            let rows = events::events_after(&self.db, &self.job_id, self.after, PAGE).await?;
            if !rows.is_empty() {
                let mut out = String::new();
                for row in &rows {
                    self.after = row.id;
                    let terminal = row.is_terminal();
                    let data = if terminal { self.terminal_data(row).await? } else { data_of(&self.job_id, row) };
                    out.push_str(&sse::event(Some(row.id), &row.kind, &data.to_string()));
                    if terminal {
                        self.finish().await;
                        break;
                    }
                }
                self.last_sent = now;
                return Ok(out);
            }
            if let Some(job) = ended_job {
                // Ended without a terminal event (a job older than this stream): say so without an id, and close.
                self.finish().await;
                return Ok(sse::event(None, "status", &terminal_of_job(&job).to_string()));
            }
            if now >= self.until {
                self.finish().await;
                return Ok(sse::comment("maximum stream duration reached; reconnect with Last-Event-ID"));
            }
            if now.saturating_sub(self.last_sent) >= self.keepalive_ms {
                self.last_sent = now;
                return Ok(sse::comment("keep-alive"));
            }
            Delay::from(self.poll).await;
        }
    }

    /// The terminal event's data, completed from the (already terminal) job row.
    async fn terminal_data(&self, row: &StreamEventRow) -> Result<Value> {
        let mut data = data_of(&self.job_id, row);
        if let Some(job) = db::get_job(&self.db, &self.job_id).await? {
            data["failure_reason"] = json!(job.failure_reason);
            data["fault"] = json!(job.fault);
            data["output_truncated"] = json!(job.output_truncated != 0);
            data["error_output_truncated"] = json!(job.error_output_truncated != 0);
        }
        data["terminal"] = json!(true);
        Ok(data)
    }

    async fn finish(&mut self) {
        self.done = true;
        release(&self.db, &self.lease).await;
    }
}

/// A client that goes away drops the body: give its lease back then (best effort; the lease expires anyway).
impl Drop for Live {
    fn drop(&mut self) {
        if !self.done {
            let lease = std::mem::take(&mut self.lease);
            if let Ok(db) = self.env.d1("DB") {
                worker::wasm_bindgen_futures::spawn_local(async move { release(&db, &lease).await });
            }
        }
    }
}

async fn release(db: &D1Database, lease: &str) {
    if let Err(e) = events::close_stream(db, lease, now_ms()).await {
        worker::console_error!("could not release the events stream lease {lease}: {e}");
    }
}

/// `{"type", "message", "timestamp", "job_id"}` plus the typed fields of the event.
fn data_of(job_id: &str, row: &StreamEventRow) -> Value {
    let mut data = json!({
        "id": row.id,
        "type": row.kind,
        "message": row.message,
        "timestamp": rfc3339_from_millis(row.created_at),
        "job_id": job_id,
    });
    if let Some(stream) = &row.stream {
        data["stream"] = json!(stream);
    }
    if let Some(text) = &row.data {
        // Clients of the first version print `message`: for output it is the text itself.
        data["data"] = json!(text);
        data["message"] = json!(text);
    }
    if let Some(status) = &row.status {
        data["status"] = json!(status);
    }
    if row.exit_code.is_some() {
        data["exit_code"] = json!(row.exit_code);
    }
    data
}

fn terminal_of_job(job: &JobRow) -> Value {
    json!({
        "type": "status",
        "message": format!("{}", job.status),
        "timestamp": rfc3339_from_millis(job.completed_at.unwrap_or(job.submitted_at)),
        "job_id": job.id,
        "status": job.status,
        "exit_code": job.exit_code,
        "failure_reason": job.failure_reason,
        "fault": job.fault,
        "terminal": true,
    })
}
