//! Shared by the integration tests: a real engine (or a clear skip), unique job ids, job builders.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bollard::Docker;
use ouro_core::dispatch::JobAssignment;
use ouro_core::workspace::WorkspaceFile;
use ouro_executor::engine;
use ouro_executor::run::{RunReport, Runner};
use tokio::sync::watch;

pub const SOCKET: &str = "unix:///var/run/docker.sock";
pub const API_TIMEOUT: Duration = Duration::from_secs(30);

/// The engine, or `None` (after saying so) when none answers: these tests need a real one.
pub async fn engine_or_skip(test: &str) -> Option<Docker> {
    match engine::connect(SOCKET, Duration::from_secs(5)).await {
        Ok(docker) => Some(docker),
        Err(e) => {
            eprintln!("SKIPPED {test}: no Docker engine answers on {SOCKET} ({e}); start dockerd to run it");
            None
        }
    }
}

pub fn default_images() -> HashMap<String, String> {
    ["ouro-python", "ouro-ubuntu", "ouro-nodejs"].iter().map(|a| (a.to_string(), format!("{a}:latest"))).collect()
}

/// A work dir per kind of test; job directories inside are per job id, so concurrent runs never collide.
pub fn work_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ouro-executor-test-{tag}"))
}

pub fn runner(docker: Docker, api_timeout: Duration) -> Runner {
    Runner::new(docker, default_images(), work_dir("run"), api_timeout)
}

/// A job id no other test (or earlier run) uses.
pub fn job_id(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("t-{name}-{}-{}-{nanos}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

pub fn job(name: &str, image: &str, script: &str) -> JobAssignment {
    JobAssignment {
        job_id: job_id(name),
        image: image.into(),
        script: script.into(),
        files: vec![],
        entrypoint: None,
        cpus: 1,
        time_limit_min: 1,
        output_cap_bytes: 10_000,
        mount_storage: false,
        output_limits: Default::default(),
    }
}

pub fn file(path: &str, content: impl AsRef<[u8]>) -> WorkspaceFile {
    WorkspaceFile { path: path.into(), content: content.as_ref().to_vec() }
}

/// A workspace job: `files` (a Dockerfile among them makes it a build), no script, an optional entrypoint.
pub fn workspace_job(name: &str, image: &str, files: Vec<WorkspaceFile>, entrypoint: Option<&str>) -> JobAssignment {
    JobAssignment { files, entrypoint: entrypoint.map(str::to_string), ..job(name, image, "") }
}

/// Removes a built image a test made (best effort: the build cache would also collect it eventually).
pub async fn remove_image(docker: &Docker, tag: &str) {
    let options = bollard::query_parameters::RemoveImageOptionsBuilder::new().build();
    let _ = docker.remove_image(tag, Some(options), None).await;
}

/// The engine of this test, or a return from it (after saying so) when none answers. `#[macro_use] mod common;`.
#[allow(unused_macros)] // binaries that check the engine themselves
macro_rules! engine {
    ($name:expr) => {
        match common::engine_or_skip($name).await {
            Some(docker) => docker,
            None => return,
        }
    };
}

/// Runs `job` to its end (or `deadline`); the abort sender lives until the run returns, so it never fires.
pub async fn run_with(runner: &Runner, job: &JobAssignment, deadline: Duration) -> RunReport {
    let (_abort_tx, abort_rx) = watch::channel(false);
    runner.run(job, deadline, abort_rx, || {}).await
}
