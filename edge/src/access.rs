//! Who may read or act on a job. The job id is an unguessable capability, so a bare id reads the job unless
//! the operator requires signatures (`REQUIRE_SIGNED_READS`). A signed request must prove its wallet
//! (`ouro_core::wallet_auth`: 401 otherwise) and that wallet must be the job's payer (403 otherwise).

use ouro_core::wallet_auth::{self, Action, SignedParams};
use worker::{D1Database, Request, Response, Result, RouteContext};

use crate::config::Config;
use crate::db::{self, JobRow};
use crate::http;

/// The wallet-signature query parameters of `req`.
pub fn signed_params(req: &Request) -> Result<SignedParams> {
    let url = req.url()?;
    let pairs: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    Ok(SignedParams::from_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
}

/// Unix seconds now.
fn now_s() -> u64 {
    worker::Date::now().as_millis() / 1000
}

/// Checks a signed request for `action`; answers the proven wallet (lowercase `0x` hex) or the 401 to send.
pub fn verify_signed(params: &SignedParams, action: Action<'_>) -> Result<std::result::Result<String, Response>> {
    match wallet_auth::verify(action, params, now_s()) {
        Ok(wallet) => Ok(Ok(format!("{wallet:#x}"))),
        Err(e) => Ok(Err(http::error(e.status(), e.code(), &e)?)),
    }
}

/// The read/act rule of one job (`ouro_core::wallet_auth::authorize_job`). `Ok(Ok(()))` lets the request
/// through; `Ok(Err(resp))` is the answer to send (401 or 403).
pub async fn authorize_job(
    req: &Request,
    config: &Config,
    job: &JobRow,
    action: Action<'_>,
) -> Result<std::result::Result<(), Response>> {
    let params = signed_params(req)?;
    match wallet_auth::authorize_job(action, &params, now_s(), &job.payer, config.require_signed_reads) {
        Ok(()) => Ok(Ok(())),
        Err(denied) => Ok(Err(http::error(denied.status(), denied.code(), &denied)?)),
    }
}

/// What a job route has once its request may act on the job: the configuration, the database and the row.
pub struct JobAccess {
    pub config: Config,
    pub db: D1Database,
    pub job: JobRow,
}

/// The job the route's `:id` names, if `action` on it is allowed: every public job route starts here, so a
/// job is found (404 otherwise) and its read/act rule applied (401/403) in one place.
pub async fn job_for(
    req: &Request,
    ctx: &RouteContext<()>,
    action: fn(&str) -> Action<'_>,
) -> Result<std::result::Result<JobAccess, Response>> {
    let id = ctx.param("id").cloned().unwrap_or_default();
    if uuid::Uuid::parse_str(&id).is_err() {
        return Ok(Err(http::error(404, "job_not_found", format!("no job {id:?}"))?));
    }
    let config = match Config::from_env(&ctx.env) {
        Ok(c) => c,
        Err(e) => return Ok(Err(http::error(500, "misconfigured", e)?)),
    };
    let db = ctx.env.d1("DB")?;
    let Some(job) = db::get_job(&db, &id).await? else {
        return Ok(Err(http::error(404, "job_not_found", format!("no job {id}"))?));
    };
    if let Err(resp) = authorize_job(req, &config, &job, action(&id)).await? {
        return Ok(Err(resp));
    }
    Ok(Ok(JobAccess { config, db, job }))
}
