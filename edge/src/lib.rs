//! The Ouro edge Worker. Entry points only: the router for HTTP, the Queue consumer for dispatch.
//! See ARCHITECTURE.md for the life of a job.

mod config;
mod db;
mod dispatch;
mod facilitator;
mod http;
mod ledger;
mod limits;
mod market;
mod outbound;
mod payment;
mod routes;
mod rpc;
mod workspaces;

use serde_json::json;
use worker::{event, Context, Env, MessageBatch, Method, Request, Response, Result, Router, ScheduleContext, ScheduledEvent};

fn router() -> Router<'static, ()> {
    Router::new()
        .get("/health", |_, _| http::json(200, &json!({ "status": "ok" })))
        .get_async("/health/ready", routes::health::ready)
        .get_async("/api/stats", routes::stats::get)
        .get_async("/api/wallet", routes::wallet::get)
        .get_async("/api/attribution", routes::attribution::list)
        .get_async("/api/attribution/decode", routes::attribution::decode_tx)
        .get_async("/api/capabilities", routes::discovery::capabilities)
        .get_async("/.well-known/agent-card.json", routes::discovery::agent_card)
        .get_async("/.well-known/x402", routes::discovery::x402_manifest)
        .get_async("/openapi.json", routes::discovery::openapi)
        .get_async("/api/price", routes::price::handle)
        .post_async("/api/compute/submit", routes::submit::handle)
        .get_async("/api/jobs/:id", routes::jobs::get)
        .post_async("/internal/jobs/:id/status", routes::internal::status)
        .post_async("/internal/jobs/:id/result", routes::internal::result)
        .or_else_any_method("/*path", |req, _| {
            http::error(404, "not_found", format!("no route for {} {}", req.method().to_string(), req.path()))
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
}

#[event(queue)]
async fn queue(batch: MessageBatch<dispatch::DispatchMessage>, env: Env, _ctx: Context) -> Result<()> {
    dispatch::consume(batch, env).await
}
