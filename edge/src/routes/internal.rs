//! The executors' side door: status reports and results, each authenticated with the shared-secret HMAC of
//! `ouro_core::dispatch`. Reports are idempotent: a late or repeated one changes nothing and still gets 200,
//! so an executor's retry after a lost answer is harmless.

use ouro_core::dispatch::{
    verify_request, JobOutcome, OutputBatch, StatusReport, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use ouro_core::job::JobStatus;
use serde::de::DeserializeOwned;
use serde_json::json;
use worker::{Request, Response, Result, RouteContext};

use super::now_ms;
use crate::config::Config;
use crate::{db, http};

/// The body of an authenticated executor call, or the response refusing it.
async fn authenticated<T: DeserializeOwned>(
    req: &mut Request,
    ctx: &RouteContext<()>,
) -> Result<std::result::Result<(String, T), Response>> {
    let (id, body) = match signed_body(req, ctx).await? {
        Ok(ok) => ok,
        Err(resp) => return Ok(Err(resp)),
    };
    match serde_json::from_slice(&body) {
        Ok(message) => Ok(Ok((id, message))),
        Err(e) => Ok(Err(http::error(422, "invalid_report", format!("body: {e}"))?)),
    }
}

/// The raw body of an authenticated executor call and the job id of its path, or the response refusing it.
async fn signed_body(
    req: &mut Request,
    ctx: &RouteContext<()>,
) -> Result<std::result::Result<(String, Vec<u8>), Response>> {
    let config = match Config::from_env(&ctx.env) {
        Ok(c) => c,
        Err(e) => return Ok(Err(http::error(500, "misconfigured", e)?)),
    };
    let body = req.bytes().await?;
    let ts = req.headers().get(HEADER_TIMESTAMP)?;
    let sig = req.headers().get(HEADER_SIGNATURE)?;
    let path = req.path();
    if let Err(e) =
        verify_request(&config.executor_secret, now_ms() / 1000, ts.as_deref(), sig.as_deref(), "POST", &path, &body)
    {
        return Ok(Err(http::error(401, "unauthenticated", e)?));
    }
    let id = ctx.param("id").cloned().unwrap_or_default();
    Ok(Ok((id, body)))
}

pub async fn status(mut req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let (id, report): (String, StatusReport) = match authenticated(&mut req, &ctx).await? {
        Ok(ok) => ok,
        Err(resp) => return Ok(resp),
    };
    if !matches!(report.status, JobStatus::Processing | JobStatus::Running) {
        return http::error(422, "invalid_report", "status reports carry processing or running; results go to /result");
    }
    let db = ctx.env.d1("DB")?;
    let applied = db::advance_status(&db, &id, report.status, &report.message, now_ms(), None).await?;
    // A report that does not move the job (e.g. "building image" while processing) is still progress to show.
    let recorded = applied || db::add_progress_event(&db, &id, &report.message, now_ms()).await?;
    http::json(200, &json!({ "applied": applied, "recorded": recorded }))
}

pub async fn result(mut req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let (id, outcome): (String, JobOutcome) = match authenticated(&mut req, &ctx).await? {
        Ok(ok) => ok,
        Err(resp) => return Ok(resp),
    };
    let db = ctx.env.d1("DB")?;
    if db::get_job(&db, &id).await?.is_none() {
        return http::error(404, "job_not_found", format!("no job {id}"));
    }
    let applied = db::record_outcome(&db, &id, &outcome, now_ms()).await?;
    // Credits (A2): also on a repeated result, so a credit missed after the first one is recorded now.
    crate::credits::on_job_end_logged(&db, &id, now_ms()).await;
    crate::webhooks::on_job_end(&ctx.env, &db, &id).await;
    http::json(200, &json!({ "applied": applied }))
}

/// A batch of a running job's output chunks: stored as the job's events, a repeated `seq` once; chunks of a job
/// that has ended are dropped (the result holds the whole output already).
pub async fn output(mut req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let (id, batch): (String, OutputBatch) = match authenticated(&mut req, &ctx).await? {
        Ok(ok) => ok,
        Err(resp) => return Ok(resp),
    };
    let db = ctx.env.d1("DB")?;
    let added = db::events::record_output(&db, &id, &batch.chunks, now_ms()).await?;
    http::json(200, &json!({ "stored": added }))
}

/// A job's raw log of one stream (`POST /internal/jobs/{id}/logs/{stream}`): a JSON `LogHeader` line, then the
/// bytes. Stored in R2 for `GET /api/jobs/{id}/logs`.
pub async fn log(mut req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let (id, body) = match signed_body(&mut req, &ctx).await? {
        Ok(ok) => ok,
        Err(resp) => return Ok(resp),
    };
    let Some(stream) = ctx.param("stream").and_then(|s| crate::logs::parse_stream(s)) else {
        return http::error(404, "not_found", "logs are stdout or stderr");
    };
    let split = body.iter().position(|b| *b == b'\n').unwrap_or(body.len());
    let header: ouro_core::dispatch::LogHeader = match serde_json::from_slice(&body[..split]) {
        Ok(h) => h,
        Err(e) => return http::error(422, "invalid_report", format!("log header: {e}")),
    };
    let db = ctx.env.d1("DB")?;
    if db::get_job(&db, &id).await?.is_none() {
        return http::error(404, "job_not_found", format!("no job {id}"));
    }
    let bytes = body.get(split + 1..).unwrap_or_default().to_vec();
    let size = bytes.len();
    crate::logs::put(&ctx.env.bucket(crate::logs::BINDING)?, &id, stream, &header, bytes).await?;
    http::json(200, &json!({ "stored_bytes": size }))
}
