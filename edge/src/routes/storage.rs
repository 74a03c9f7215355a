//! Storage endpoints. Public, signed by the wallet (EIP-191, `ouro_core::wallet_auth`) and rate limited:
//! `GET /api/storage` (list), `GET /api/storage/files?path=` (download), `DELETE /api/storage/files?path=`.
//! Public, with the job's own read rule (`access::authorize_job`): `GET /api/jobs/{id}/files/{path}` (an output
//! file). Internal, HMAC-signed by an executor (protocol in `ouro_core::storage`): the storage sync of a job and
//! its output uploads; and two operator hooks: a wallet's quota, and housekeeping with a given clock (a test hook
//! for expiry).
//!
//! A wallet only ever names paths inside its own storage, so another wallet's file is simply not found (404).

use ouro_core::dispatch::{verify_request, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use ouro_core::job::JobStatus;
use ouro_core::storage::{check_file_path, is_sha256_hex, Artifacts, Commit, Manifest, Quota};
use ouro_core::time::rfc3339_from_millis;
use ouro_core::wallet_auth::Action;
use serde::Deserialize;
use serde_json::json;
use worker::{Request, Response, Result, RouteContext};

use super::now_ms;
use crate::config::Config;
use crate::db::{self, storage as records, JobRow};
use crate::limits::{self, Limit};
use crate::{access, http, storage};

type Answer<T> = std::result::Result<T, Response>;

fn config(ctx: &RouteContext<()>) -> Result<Answer<Config>> {
    match Config::from_env(&ctx.env) {
        Ok(c) => Ok(Ok(c)),
        Err(e) => Ok(Err(http::error(500, "misconfigured", e)?)),
    }
}

fn query(req: &Request, name: &str) -> Result<Option<String>> {
    Ok(req.url()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()))
}

/// The `path` query parameter, checked against the path rules.
fn path_param(req: &Request) -> Result<Answer<String>> {
    let Some(path) = query(req, "path")? else {
        return Ok(Err(http::field_error("path", "is required")?));
    };
    match check_file_path(&path) {
        Ok(()) => Ok(Ok(path)),
        Err(e) => Ok(Err(http::field_error("path", &format!("{} {e}", ouro_core::workspace::shown(&path)))?)),
    }
}

/// Verifies the wallet's signature for `action`, then counts the request against the storage limits.
async fn signed_wallet(
    req: &Request,
    ctx: &RouteContext<()>,
    config: &Config,
    action: Action<'_>,
) -> Result<Answer<String>> {
    let params = access::signed_params(req)?;
    let wallet = match access::verify_signed(&params, action)? {
        Ok(w) => w.to_ascii_lowercase(),
        Err(resp) => return Ok(Err(resp)),
    };
    let db = ctx.env.d1("DB")?;
    let checks = [
        Limit::new(format!("storage:wallet:{wallet}"), config.storage.rate_per_wallet),
        Limit::new("storage:all", config.storage.rate_global),
    ];
    if let Err(exceeded) = limits::charge(&db, &checks, now_ms()).await? {
        // The public contract promises `Retry-After: 60`: never less than the window's remainder.
        let exceeded = limits::Exceeded { retry_after_s: 60, ..exceeded };
        return Ok(Err(limits::too_many(&exceeded, "storage requests")?));
    }
    Ok(Ok(wallet))
}

macro_rules! or_answer {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(resp) => return Ok(resp),
        }
    };
}

fn time(ms: Option<u64>) -> serde_json::Value {
    ms.map(|t| json!(rfc3339_from_millis(t))).unwrap_or(serde_json::Value::Null)
}

/// `GET /api/storage`: quota, usage and the file list. Never creates a storage record.
pub async fn list(req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = or_answer!(config(&ctx)?);
    let wallet = or_answer!(signed_wallet(&req, &ctx, &config, Action::StorageList).await?);
    let db = ctx.env.d1("DB")?;
    let account = records::account(&db, &wallet).await?;
    let quota = records::quota_of(account.as_ref(), config.storage.quota);
    let files = records::files(&db, &wallet).await?;
    let custom = account.as_ref().is_some_and(|a| a.quota_bytes.is_some() || a.max_files.is_some());
    http::json(
        200,
        &json!({
            "wallet": wallet,
            "tier": if custom { "custom" } else { "free" },
            "quota_bytes": quota.quota_bytes,
            "used_bytes": files.iter().map(|f| f.size).sum::<u64>(),
            "file_count": files.len(),
            "max_files": quota.max_files,
            "files": files.iter().map(|f| json!({
                "path": f.path,
                "size": f.size,
                "modified": rfc3339_from_millis(f.modified_at),
                "accessed": rfc3339_from_millis(f.accessed_at),
                "sha256": f.sha256,
            })).collect::<Vec<_>>(),
            "last_accessed_at": time(account.as_ref().map(|a| a.last_accessed_at)),
            "created_at": time(account.as_ref().map(|a| a.created_at)),
            "ttl_days": config.storage.ttl_days,
        }),
    )
}

/// `GET /api/storage/files?path=`: one stored file's bytes (counts as an access).
pub async fn download(req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = or_answer!(config(&ctx)?);
    let path = or_answer!(path_param(&req)?);
    let wallet = or_answer!(signed_wallet(&req, &ctx, &config, Action::StorageGet { path: &path }).await?);
    let db = ctx.env.d1("DB")?;
    let Some(file) = records::file(&db, &wallet, &path).await? else {
        return http::error(404, "file_not_found", format!("no stored file {path:?} for {wallet}"));
    };
    records::touch_file(&db, &wallet, &path, now_ms()).await?;
    stream_object(&ctx, &file.object_key, file.size, &file.sha256).await
}

/// `DELETE /api/storage/files?path=` → `{deleted: path}`.
pub async fn delete(req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = or_answer!(config(&ctx)?);
    let path = or_answer!(path_param(&req)?);
    let wallet = or_answer!(signed_wallet(&req, &ctx, &config, Action::StorageDelete { path: &path }).await?);
    let db = ctx.env.d1("DB")?;
    if !records::delete_file(&db, &wallet, &path, now_ms()).await? {
        return http::error(404, "file_not_found", format!("no stored file {path:?} for {wallet}"));
    }
    http::json(200, &json!({ "deleted": path }))
}

/// Streams an R2 object as the response body.
async fn stream_object(ctx: &RouteContext<()>, key: &str, size: u64, sha256: &str) -> Result<Response> {
    let bucket = ctx.env.bucket(storage::BINDING)?;
    let Some(object) = bucket.get(key).execute().await? else {
        return http::error(500, "file_missing", "the file's content is missing from storage");
    };
    let Some(body) = object.body() else {
        return http::error(500, "file_missing", "the file's content is missing from storage");
    };
    let resp = Response::from_stream(body.stream()?)?;
    let headers = resp.headers();
    headers.set("content-type", "application/octet-stream")?;
    headers.set("content-length", &size.to_string())?;
    headers.set("x-ouro-sha256", sha256)?;
    Ok(resp)
}

/// The artifacts recorded with a job's end.
pub fn artifacts_of(job: &JobRow) -> Artifacts {
    job.artifacts_json.as_deref().and_then(|j| serde_json::from_str(j).ok()).unwrap_or_default()
}

/// `GET /api/jobs/{id}/files/{path}`: one output file of a job, under the job's read rule.
pub async fn job_file(req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let raw = ctx.param("path").cloned().unwrap_or_default();
    let path = ouro_core::storage::percent_decode(raw.trim_start_matches('/')).unwrap_or_default();
    let job = or_answer!(access::job_for(&req, &ctx, |job_id| Action::JobView { job_id }).await?).job;
    let id = job.id.clone();
    let artifacts = artifacts_of(&job);
    let Some(file) = artifacts.output_files.iter().find(|f| f.path == path) else {
        return http::error(404, "file_not_found", format!("job {id} returned no file {path:?}"));
    };
    stream_object(&ctx, &storage::output_key(&id, &file.path), file.size, &file.sha256).await
}

// ---------------------------------------------------------------------------------------------------------------
// Executor and operator side (HMAC of `ouro_core::dispatch`)
// ---------------------------------------------------------------------------------------------------------------

/// Checks the executor HMAC over the method, the path with its query, and `body` (empty for streamed calls,
/// whose query carries the signed size and sha256 of the body).
fn verify_internal(req: &Request, config: &Config, method: &str, body: &[u8]) -> Result<Answer<()>> {
    let url = req.url()?;
    let signed = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let ts = req.headers().get(HEADER_TIMESTAMP)?;
    let sig = req.headers().get(HEADER_SIGNATURE)?;
    match verify_request(&config.executor_secret, now_ms() / 1000, ts.as_deref(), sig.as_deref(), method, &signed, body)
    {
        Ok(()) => Ok(Ok(())),
        Err(e) => Ok(Err(http::error(401, "unauthenticated", e)?)),
    }
}

/// The job of an internal storage call: it must exist, mount storage and not have ended.
async fn storage_job(ctx: &RouteContext<()>) -> Result<Answer<(JobRow, String)>> {
    let id = ctx.param("id").cloned().unwrap_or_default();
    let db = ctx.env.d1("DB")?;
    let Some(job) = db::get_job(&db, &id).await? else {
        return Ok(Err(http::error(404, "job_not_found", format!("no job {id}"))?));
    };
    if job.mount_storage == 0 {
        return Ok(Err(http::error(409, "storage_not_mounted", format!("job {id} does not mount storage"))?));
    }
    if JobStatus::parse(&job.status).is_some_and(JobStatus::is_terminal) {
        return Ok(Err(http::error(409, "job_ended", format!("job {id} has ended"))?));
    }
    let wallet = job.payer.to_ascii_lowercase();
    Ok(Ok((job, wallet)))
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<Answer<T>> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(Ok(v)),
        Err(e) => Ok(Err(http::error(422, "invalid_body", format!("body: {e}"))?)),
    }
}

/// `POST /internal/storage/{id}/manifest` → `Manifest` (and every file of the wallet counts as accessed).
pub async fn manifest(mut req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = or_answer!(config(&ctx)?);
    let body = req.bytes().await?;
    or_answer!(verify_internal(&req, &config, "POST", &body)?);
    let (_, wallet) = or_answer!(storage_job(&ctx).await?);
    let db = ctx.env.d1("DB")?;
    records::touch_all(&db, &wallet, now_ms()).await?;
    let account = records::account(&db, &wallet).await?;
    let files = storage::stored(&records::files(&db, &wallet).await?);
    let quota = records::quota_of(account.as_ref(), config.storage.quota);
    http::json(200, &Manifest { wallet, files, quota })
}

/// `GET /internal/storage/{id}/files?path=`: one file of the job's wallet, streamed.
pub async fn internal_file(req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = or_answer!(config(&ctx)?);
    or_answer!(verify_internal(&req, &config, "GET", b"")?);
    let (_, wallet) = or_answer!(storage_job(&ctx).await?);
    let path = or_answer!(path_param(&req)?);
    let db = ctx.env.d1("DB")?;
    let Some(file) = records::file(&db, &wallet, &path).await? else {
        return http::error(404, "file_not_found", format!("no stored file {path:?}"));
    };
    stream_object(&ctx, &file.object_key, file.size, &file.sha256).await
}

/// The signed `size` and `sha256` of a streamed upload.
fn announced(req: &Request, max_size: u64) -> Result<Answer<(u64, String)>> {
    let size = query(req, "size")?.and_then(|s| s.parse::<u64>().ok());
    let sha = query(req, "sha256")?.filter(|s| is_sha256_hex(s));
    match (size, sha) {
        (Some(size), _) if size > max_size => {
            Ok(Err(http::error(413, "too_large", format!("{size} bytes is above the limit of {max_size}"))?))
        }
        (Some(size), Some(sha)) => Ok(Ok((size, sha))),
        _ => Ok(Err(http::error(422, "invalid_upload", "size (bytes) and sha256 (lowercase hex) are required")?)),
    }
}

/// `PUT /internal/storage/{id}/uploads?path=&size=&sha256=` → `{upload_key}`: stages one file.
pub async fn upload(mut req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = or_answer!(config(&ctx)?);
    or_answer!(verify_internal(&req, &config, "PUT", b"")?);
    let (job, wallet) = or_answer!(storage_job(&ctx).await?);
    let _path = or_answer!(path_param(&req)?);
    let db = ctx.env.d1("DB")?;
    let quota = records::quota_of(records::account(&db, &wallet).await?.as_ref(), config.storage.quota);
    let (size, sha) = or_answer!(announced(&req, quota.quota_bytes)?);
    let key = storage::new_object_key(&wallet);
    // Recorded first, so an upload cut short is still known and cleaned up by the cron.
    records::record_upload(&db, &key, &wallet, &job.id, now_ms()).await?;
    let body = if size > 0 { Some(req.stream()?) } else { None };
    let bucket = ctx.env.bucket(storage::BINDING)?;
    if let Err(why) = storage::put_verified(&bucket, &key, body, size, &sha).await? {
        return http::error(422, "invalid_upload", why);
    }
    http::json(200, &json!({ "upload_key": key }))
}

/// `POST /internal/storage/{id}/commit` (`Commit`) → `CommitReply`.
pub async fn commit(mut req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = or_answer!(config(&ctx)?);
    let body = req.bytes().await?;
    or_answer!(verify_internal(&req, &config, "POST", &body)?);
    let (job, wallet) = or_answer!(storage_job(&ctx).await?);
    let c: Commit = or_answer!(parse_json(&body)?);
    let db = ctx.env.d1("DB")?;
    match storage::commit(&db, &config.storage, &wallet, &job.id, &c, now_ms()).await? {
        Ok(reply) => http::json(200, &reply),
        Err(why) => http::error(422, "invalid_commit", why),
    }
}

/// `PUT /internal/jobs/{id}/outputs?path=&size=&sha256=`: one output file of a running job.
pub async fn output_upload(mut req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = or_answer!(config(&ctx)?);
    or_answer!(verify_internal(&req, &config, "PUT", b"")?);
    let id = ctx.param("id").cloned().unwrap_or_default();
    let db = ctx.env.d1("DB")?;
    let Some(job) = db::get_job(&db, &id).await? else {
        return http::error(404, "job_not_found", format!("no job {id}"));
    };
    if JobStatus::parse(&job.status).is_some_and(JobStatus::is_terminal) {
        return http::error(409, "job_ended", format!("job {id} has ended"));
    }
    let path = or_answer!(path_param(&req)?);
    let (size, sha) = or_answer!(announced(&req, config.storage.output_limits.max_bytes)?);
    let body = if size > 0 { Some(req.stream()?) } else { None };
    let bucket = ctx.env.bucket(storage::BINDING)?;
    if let Err(why) = storage::put_verified(&bucket, &storage::output_key(&id, &path), body, size, &sha).await? {
        return http::error(422, "invalid_upload", why);
    }
    http::json(200, &json!({ "stored": path }))
}

#[derive(Deserialize)]
struct QuotaBody {
    wallet: String,
    quota_bytes: u64,
    max_files: u64,
}

/// `POST /internal/storage/quota` `{wallet, quota_bytes, max_files}`: an operator sets one wallet's quota.
pub async fn set_quota(mut req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = or_answer!(config(&ctx)?);
    let body = req.bytes().await?;
    or_answer!(verify_internal(&req, &config, "POST", &body)?);
    let q: QuotaBody = or_answer!(parse_json(&body)?);
    let Some(wallet) = ouro_core::x402::parse_address(q.wallet.trim()) else {
        return http::field_error("wallet", "must be 0x followed by 40 hex digits");
    };
    let wallet = format!("{wallet:#x}");
    let quota = Quota { quota_bytes: q.quota_bytes, max_files: q.max_files };
    records::set_quota(&ctx.env.d1("DB")?, &wallet, quota, now_ms()).await?;
    http::json(200, &json!({ "wallet": wallet, "quota_bytes": quota.quota_bytes, "max_files": quota.max_files }))
}

#[derive(Deserialize)]
struct HousekeepingBody {
    now_ms: u64,
    wallet: Option<String>,
}

/// `POST /internal/storage/housekeeping` `{now_ms, wallet?}`: **test hook** — the scheduled handler's storage
/// housekeeping (expiry, trash) run as if the clock read `now_ms`, for one wallet when given (so a test cannot
/// expire another suite's files).
pub async fn housekeeping_at(mut req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let config = or_answer!(config(&ctx)?);
    let body = req.bytes().await?;
    or_answer!(verify_internal(&req, &config, "POST", &body)?);
    let h: HousekeepingBody = or_answer!(parse_json(&body)?);
    let wallet = h.wallet.map(|w| w.trim().to_ascii_lowercase());
    let db = ctx.env.d1("DB")?;
    let bucket = ctx.env.bucket(storage::BINDING)?;
    let done = storage::housekeeping(&db, &bucket, config.storage.ttl_days, h.now_ms, wallet.as_deref()).await?;
    http::json(200, &done)
}
