//! Who may read or act on a job. The job id is an unguessable capability, so a bare id reads the job unless
//! the operator requires signatures (`REQUIRE_SIGNED_READS`). A signed request must prove its wallet
//! (`ouro_core::wallet_auth`: 401 otherwise) and that wallet must be the job's payer (403 otherwise).

use ouro_core::wallet_auth::{self, Action, SignedParams};
use worker::{Request, Response, Result};

use crate::config::Config;
use crate::db::JobRow;
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
