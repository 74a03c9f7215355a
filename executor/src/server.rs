//! Wiring: engine connection, startup sweep, HTTP server, and the drain at shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::api::{self, AppState, DeadlineFn};
use crate::config::Config;
use crate::engine::{self, EngineError};
use crate::report::EdgeClient;
use crate::run::{RunError, Runner};
use crate::slots::Slots;
use crate::worker::Worker;

/// After aborting the jobs still running at the end of the drain: time for their kill, cleanup and result.
const ABORT_GRACE_EXTRA: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot reach the Docker engine at {socket}: {source}")]
    Engine { socket: String, source: EngineError },
    #[error("startup cleanup failed: {0}")]
    Sweep(#[from] RunError),
    #[error("cannot build the HTTP client for the edge: {0}")]
    EdgeClient(#[from] reqwest::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// A started executor: serving, until [`Executor::shutdown`].
pub struct Executor {
    local_addr: SocketAddr,
    state: AppState,
    abort: watch::Sender<bool>,
    stop_http: oneshot::Sender<()>,
    serving: JoinHandle<std::io::Result<()>>,
    drain: Duration,
    docker_timeout: Duration,
}

pub async fn start(config: &Config, deadline: DeadlineFn) -> Result<Executor, StartError> {
    let docker = engine::connect(&config.docker_socket, config.docker_timeout)
        .await
        .map_err(|source| StartError::Engine { socket: config.docker_socket.clone(), source })?;
    let runner = Runner::new(docker, config.images.clone(), config.work_dir.clone(), config.docker_timeout)
        .with_build_settings(config.build.clone())
        .with_edge_files(crate::storage::EdgeFiles::new(&config.edge_url, config.secret.clone())?);
    let swept = runner.sweep_leftovers().await?;
    // Raw logs of jobs an earlier run did not finish: their jobs are lost with it.
    let _ = std::fs::remove_dir_all(config.work_dir.join("logs"));
    if swept > 0 {
        tracing::warn!(containers = swept, "removed job containers left over by an earlier run");
    }
    for (alias, image) in &config.images {
        // Not fatal: an alias whose image is missing fails its jobs with a clear message; the others still work.
        if !runner.image_present(image).await {
            tracing::warn!(alias = %alias, image = %image, "engine image missing: its jobs will fail (build it with stack/images/build.sh)");
        }
    }

    let (abort, abort_rx) = watch::channel(false);
    let worker = Arc::new(Worker {
        runner,
        edge: EdgeClient::new(&config.edge_url, config.secret.clone())?,
        result_retry: config.result_retry,
        abort: abort_rx,
        cancels: Default::default(),
        log_dir: config.work_dir.join("logs"),
        log_cap: config.log_cap_bytes,
    });
    let state = AppState {
        secret: Arc::new(config.secret.clone()),
        slots: Slots::new(config.slots),
        worker,
        deadline,
        draining: Arc::new(AtomicBool::new(false)),
    };

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen { addr: config.listen, source })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Listen { addr: config.listen, source })?;
    let (stop_http, stop_rx) = oneshot::channel::<()>();
    let app = api::router(state.clone());
    let serving = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    tracing::info!(
        listen = %local_addr,
        slots = config.slots,
        edge = %config.edge_url,
        build_network = %config.build.network,
        build_cache_images = config.build.cache_images,
        "ouro-executor ready"
    );
    Ok(Executor {
        local_addr,
        state,
        abort,
        stop_http,
        serving,
        drain: config.drain,
        docker_timeout: config.docker_timeout,
    })
}

impl Executor {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops taking jobs, lets running ones finish for the drain period, kills what is left (those report an
    /// internal error, so the user is credited), waits for their results, then stops serving.
    pub async fn shutdown(self) {
        self.state.draining.store(true, Ordering::SeqCst);
        let slots = &self.state.slots;
        tracing::info!(running = slots.running(), drain_s = self.drain.as_secs(), "shutting down: draining");
        if !wait_idle(slots, self.drain).await {
            tracing::warn!(running = slots.running(), "drain period over: killing the remaining jobs");
            let _ = self.abort.send(true);
            if !wait_idle(slots, self.docker_timeout * 2 + ABORT_GRACE_EXTRA).await {
                tracing::error!(running = slots.running(), "jobs still not finished; exiting anyway");
            }
        }
        let _ = self.stop_http.send(());
        match self.serving.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server failed"),
            Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
        }
        tracing::info!("ouro-executor stopped");
    }
}

/// Polls until no job holds a slot (true) or `limit` passes (false).
async fn wait_idle(slots: &Slots, limit: Duration) -> bool {
    let until = tokio::time::Instant::now() + limit;
    while slots.running() > 0 {
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}
