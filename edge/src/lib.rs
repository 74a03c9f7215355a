//! The Ouro edge Worker. Entry points only: the router for HTTP, the Queue consumer for dispatch.
//! See ARCHITECTURE.md for the life of a job.

mod config;
mod db;
mod dispatch;
mod facilitator;
mod http;
mod market;
mod outbound;
mod payment;
mod routes;
mod workspaces;

use serde_json::json;
use worker::{event, Context, Env, MessageBatch, Method, Request, Response, Result, Router};

fn router() -> Router<'static, ()> {
    Router::new()
        .get("/health", |_, _| http::json(200, &json!({ "status": "ok" })))
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

#[event(queue)]
async fn queue(batch: MessageBatch<dispatch::DispatchMessage>, env: Env, _ctx: Context) -> Result<()> {
    dispatch::consume(batch, env).await
}
