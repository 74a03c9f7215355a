//! The Ouro edge Worker. Entry points only: the router for HTTP, the Queue consumer for dispatch.
//! See ARCHITECTURE.md for the life of a job.

mod access;
mod capacity;
mod config;
mod credits;
mod db;
mod dispatch;
mod facilitator;
mod http;
mod ledger;
mod limits;
mod logs;
mod market;
mod outbound;
mod payment;
mod routes;
mod rpc;
mod storage;
mod sweep;
mod webhooks;
mod workspaces;

use serde_json::json;
use worker::{event, Context, Env, MessageBatch, Method, Request, Response, Result, Router, ScheduleContext, ScheduledEvent};

fn router() -> Router<'static, ()> {
    Router::new()
        .get("/health", |_, _| http::json(200, &json!({ "status": "ok" })))
        .get_async("/health/ready", routes::health::ready)
        .get_async("/api/stats", routes::stats::get)
        .get_async("/api/ledger", routes::ledger::get)
        .get_async("/api/wallet", routes::wallet::get)
        .get_async("/api/attribution", routes::attribution::list)
        .get_async("/api/attribution/decode", routes::attribution::decode_tx)
        .get_async("/api/capabilities", routes::discovery::capabilities)
        .get_async("/.well-known/agent-card.json", routes::discovery::agent_card)
        .get_async("/.well-known/x402", routes::discovery::x402_manifest)
        .get_async("/openapi.json", routes::discovery::openapi)
        .get_async("/api/price", routes::price::handle)
        .post_async("/api/compute/submit", routes::submit::handle)
        .get_async("/api/credits", routes::credits::get)
        .get_async("/api/jobs", routes::jobs::list)
        .get_async("/api/jobs/:id", routes::jobs::get)
        .get_async("/api/jobs/:id/events", routes::events::stream)
        .post_async("/api/jobs/:id/cancel", routes::jobs::cancel)
        .get_async("/api/jobs/:id/logs", routes::jobs::logs)
        .post_async("/internal/jobs/:id/status", routes::internal::status)
        .post_async("/internal/jobs/:id/result", routes::internal::result)
        .post_async("/internal/jobs/:id/output", routes::internal::output)
        .post_async("/internal/jobs/:id/logs/:stream", routes::internal::log)
        .get_async("/api/storage", routes::storage::list)
        .get_async("/api/storage/files", routes::storage::download)
        .delete_async("/api/storage/files", routes::storage::delete)
        .get_async("/api/jobs/:id/files/*path", routes::storage::job_file)
        .post_async("/internal/storage/quota", routes::storage::set_quota)
        .post_async("/internal/storage/housekeeping", routes::storage::housekeeping_at)
        .post_async("/internal/storage/:id/manifest", routes::storage::manifest)
        .get_async("/internal/storage/:id/files", routes::storage::internal_file)
        .put_async("/internal/storage/:id/uploads", routes::storage::upload)
        .post_async("/internal/storage/:id/commit", routes::storage::commit)
        .put_async("/internal/jobs/:id/outputs", routes::storage::output_upload)
        .or_else_any_method("/*path", |req, _| {
            http::error(404, "not_found", format!("no route for {} {}", req.method(), req.path()))
        })
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let mut resp = if req.method() == Method::Options {
        http::preflight()?
    } else {
        match router().run(req, env).await {
            Ok(resp) => resp,
            Err(e) => {
                worker::console_error!("unhandled error: {e}");
                http::error(500, "internal_error", "internal error; nothing was charged unless a job id was returned")?
            }
        }
    };
    if resp.status_code() == 405 {
        // The router's own 405 is plain text; every answer of this API is JSON.
        resp = http::error(405, "method_not_allowed", "this path does not take that method")?;
    }
    http::add_cors(resp.headers_mut())?;
    Ok(resp)
}

/// The cron (`[triggers] crons` in wrangler.toml): a snapshot of the service wallet, and the ledger's settlement
/// gas completed (missing rows recorded, estimates replaced by receipts where the RPC now has them).
#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let now = routes::now_ms();
    // Stuck jobs first: a lost job's payer should not wait on the slower chain reads below.
    match sweep::run(&env, now).await {
        Ok(swept) => worker::console_log!("scheduled ({}): sweep {swept:?}", event.cron()),
        Err(e) => worker::console_error!("scheduled ({}): sweep of stuck jobs failed: {e}", event.cron()),
    }
    // Payments whose settlement outcome was left open: the chain decides (never moves money itself).
    match payment::reconcile_scheduled(&env, now).await {
        Ok(done) => worker::console_log!("scheduled ({}): payments reconciled {done:?}", event.cron()),
        Err(e) => worker::console_error!("scheduled ({}): payment reconciliation failed: {e}", event.cron()),
    }
    if let Err(e) = routes::wallet::snapshot(&env, now).await {
        worker::console_error!("scheduled ({}): wallet snapshot failed: {e}", event.cron());
    }
    let reconciled = match (config::Config::from_env(&env), env.d1("DB")) {
        (Ok(config), Ok(db)) => ledger::reconcile_gas(&db, &config.ops, 50, now).await.map_err(|e| e.to_string()),
        (Err(e), _) => Err(e.to_string()),
        (_, Err(e)) => Err(e.to_string()),
    };
    if let Err(e) = reconciled {
        worker::console_error!("scheduled ({}): gas reconciliation failed: {e}", event.cron());
    }
    let forgotten = match env.d1("DB") {
        Ok(db) => limits::forget_old_windows(&db, now).await,
        Err(e) => Err(e),
    };
    if let Err(e) = forgotten {
        worker::console_error!("scheduled ({}): rate-limit housekeeping failed: {e}", event.cron());
    }
    // Storage: files not accessed for the TTL expire; trashed and abandoned objects leave R2.
    let housekept = match (config::Config::from_env(&env), env.d1("DB"), env.bucket(storage::BINDING)) {
        (Ok(config), Ok(db), Ok(bucket)) => {
            storage::housekeeping(&db, &bucket, config.storage.ttl_days, now, None).await.map_err(|e| e.to_string())
        }
        (Err(e), _, _) => Err(e.to_string()),
        (_, Err(e), _) | (_, _, Err(e)) => Err(e.to_string()),
    };
    if let Err(e) = housekept {
        worker::console_error!("scheduled ({}): storage housekeeping failed: {e}", event.cron());
    }
}

#[event(queue)]
async fn queue(batch: MessageBatch<dispatch::DispatchMessage>, env: Env, _ctx: Context) -> Result<()> {
    // Both queues carry `{job_id}` messages: job dispatch (and its dead letters), and webhook deliveries.
    if batch.queue() == webhooks::QUEUE {
        return webhooks::consume(batch, env).await;
    }
    dispatch::consume(batch, env).await
}
