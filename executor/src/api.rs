//! The HTTP API the edge calls: `POST /v1/jobs` (signed) and `GET /v1/health`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ouro_core::dispatch::{
    verify_request, AssignmentReply, ExecutorHealth, JobAssignment, EXECUTOR_HEALTH_PATH, EXECUTOR_JOBS_PATH,
    HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use ouro_core::submit::{MAX_CPUS, MAX_SCRIPT_CHARS, MAX_TIME_LIMIT_MIN, MIN_CPUS, MIN_TIME_LIMIT_MIN};
use serde_json::json;

use crate::report::unix_now;
use crate::slots::{Refusal, Slots};
use crate::worker::Worker;

/// What a busy executor tells the edge to wait before asking again.
pub const BUSY_RETRY_AFTER_S: u32 = 5;
/// A full workspace (10 MiB of files is 13.3 MiB in base64) plus a 64 Ki-character script in JSON (at most 6
/// bytes a character, escapes included) and the rest of the assignment, with room to spare.
pub const MAX_ASSIGNMENT_BYTES: usize = 17 * 1024 * 1024;
const MAX_JOB_ID_LEN: usize = 128;

/// Builds each job's deadline from its time limit; tests shorten it.
pub type DeadlineFn = Arc<dyn Fn(&JobAssignment) -> Duration + Send + Sync>;

/// The wall-clock deadline the public API promises: `time_limit_min` minutes.
pub fn time_limit_deadline() -> DeadlineFn {
    Arc::new(|job: &JobAssignment| Duration::from_secs(u64::from(job.time_limit_min) * 60))
}

#[derive(Clone)]
pub struct AppState {
    pub secret: Arc<Vec<u8>>,
    pub slots: Arc<Slots>,
    pub worker: Arc<Worker>,
    pub deadline: DeadlineFn,
    /// Set at shutdown: refuse new work while the running jobs finish.
    pub draining: Arc<AtomicBool>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(EXECUTOR_JOBS_PATH, post(assign))
        .route(EXECUTOR_HEALTH_PATH, get(health))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/jobs/{id}", get(presence))
        .layer(DefaultBodyLimit::max(MAX_ASSIGNMENT_BYTES))
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> Json<ExecutorHealth> {
    let status = if state.draining.load(Ordering::SeqCst) { "draining" } else { "ok" };
    Json(ExecutorHealth { status: status.into(), slots_total: state.slots.total(), slots_free: state.slots.free() })
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn busy() -> Response {
    let mut response =
        (StatusCode::SERVICE_UNAVAILABLE, Json(AssignmentReply::Busy { retry_after_s: BUSY_RETRY_AFTER_S }))
            .into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(BUSY_RETRY_AFTER_S));
    response
}

async fn assign(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(e) = verify_request(
        &state.secret,
        unix_now(),
        header_str(HEADER_TIMESTAMP),
        header_str(HEADER_SIGNATURE),
        "POST",
        EXECUTOR_JOBS_PATH,
        &body,
    ) {
        tracing::warn!(error = %e, "refused an unauthenticated assignment");
        return error(StatusCode::UNAUTHORIZED, format!("unauthenticated: {e}"));
    }

    let job: JobAssignment = match serde_json::from_slice(&body) {
        Ok(job) => job,
        Err(e) if e.is_data() => return error(StatusCode::UNPROCESSABLE_ENTITY, format!("invalid assignment: {e}")),
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")),
    };
    if let Err(problem) = check(&job) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, problem);
    }
    if let Some(problem) = state.worker.runner.refuses(&job) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, problem);
    }
    if state.draining.load(Ordering::SeqCst) {
        return busy();
    }

    let slot = match state.slots.try_acquire(&job.job_id) {
        Ok(slot) => slot,
        Err(Refusal::AlreadyAssigned) => {
            return (StatusCode::CONFLICT, Json(AssignmentReply::AlreadyAssigned)).into_response()
        }
        Err(Refusal::Busy) => return busy(),
    };
    let deadline = (state.deadline)(&job);
    tracing::info!(job_id = %job.job_id, image = %job.image, cpus = job.cpus, deadline_s = deadline.as_secs(), "accepted");
    tokio::spawn(Arc::clone(&state.worker).execute(job, slot, deadline));
    (StatusCode::ACCEPTED, Json(AssignmentReply::Accepted)).into_response()
}

/// `GET /v1/jobs/{id}` (signed, empty body): whether this executor runs or ran the job. The edge's sweep asks
/// before it declares a job lost; an executor that restarted has forgotten its jobs and answers `unknown`.
async fn presence(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let path = ouro_core::dispatch::executor_job_path(&id);
    if let Err(e) =
        verify_request(&state.secret, unix_now(), header_str(HEADER_TIMESTAMP), header_str(HEADER_SIGNATURE), "GET", &path, b"")
    {
        return error(StatusCode::UNAUTHORIZED, format!("unauthenticated: {e}"));
    }
    Json(state.slots.presence(&id)).into_response()
}

/// `POST /v1/jobs/{id}/cancel` (signed, empty body): the payer cancelled the job; kill it now. 202 when it runs
/// here (its result, `failed`/`cancelled`, follows as usual), 404 when it does not (its result is on the way).
async fn cancel(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let path = ouro_core::dispatch::executor_cancel_path(&id);
    if let Err(e) =
        verify_request(&state.secret, unix_now(), header_str(HEADER_TIMESTAMP), header_str(HEADER_SIGNATURE), "POST", &path, b"")
    {
        return error(StatusCode::UNAUTHORIZED, format!("unauthenticated: {e}"));
    }
    if state.worker.cancels.cancel(&id) {
        tracing::info!(job_id = %id, "cancelled by its payer: stopping it");
        (StatusCode::ACCEPTED, Json(json!({ "result": "cancelling" }))).into_response()
    } else {
        (StatusCode::NOT_FOUND, Json(json!({ "result": "not_running" }))).into_response()
    }
}

/// The edge validated the job already; these checks keep a buggy or compromised edge from asking for an
/// unlimited container (cpus 0 means "no limit" to Docker) or a path-escaping job id.
fn check(job: &JobAssignment) -> Result<(), String> {
    if job.job_id.is_empty()
        || job.job_id.len() > MAX_JOB_ID_LEN
        || !job.job_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!("job_id must be 1-{MAX_JOB_ID_LEN} characters of [A-Za-z0-9_-]"));
    }
    if !(MIN_CPUS..=MAX_CPUS).contains(&job.cpus) {
        return Err(format!("cpus must be {MIN_CPUS}-{MAX_CPUS}"));
    }
    if !(MIN_TIME_LIMIT_MIN..=MAX_TIME_LIMIT_MIN).contains(&job.time_limit_min) {
        return Err(format!("time_limit_min must be {MIN_TIME_LIMIT_MIN}-{MAX_TIME_LIMIT_MIN}"));
    }
    if job.script.chars().count() > MAX_SCRIPT_CHARS {
        return Err(format!("script is longer than {MAX_SCRIPT_CHARS} characters"));
    }
    if let Some(entrypoint) = &job.entrypoint {
        if entrypoint.trim().is_empty() || entrypoint.contains('\0') {
            return Err("entrypoint must be a non-empty command line without NUL characters".into());
        }
        if entrypoint.chars().count() > MAX_SCRIPT_CHARS {
            return Err(format!("entrypoint is longer than {MAX_SCRIPT_CHARS} characters"));
        }
    }
    ouro_core::workspace::check_files(&job.files, !job.script.is_empty()).map_err(|e| format!("{}: {e}", e.field()))?;
    let builds = crate::build::dockerfile_of(&job.files).is_some();
    if !builds && job.script.is_empty() && job.entrypoint.is_none() {
        return Err("nothing to run: the job has no script, no entrypoint and no Dockerfile".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ouro_core::workspace::{WorkspaceFile, MAX_WORKSPACE_BYTES};

    fn job() -> JobAssignment {
        JobAssignment {
            job_id: "0b7c1e2a-1111-4222-8333-944455556666".into(),
            image: "ouro-ubuntu".into(),
            script: "echo hi".into(),
            files: vec![],
            entrypoint: None,
            cpus: 1,
            time_limit_min: 1,
            output_cap_bytes: 10_000,
            mount_storage: false,
            output_limits: Default::default(),
        }
    }

    #[test]
    fn accepts_a_normal_job() {
        assert_eq!(check(&job()), Ok(()));
    }

    #[test]
    fn refuses_unsafe_values() {
        for bad_id in ["", "../x", "a/b", "a b", &"x".repeat(129)] {
            let j = JobAssignment { job_id: bad_id.to_string(), ..job() };
            assert!(check(&j).is_err(), "{bad_id:?}");
        }
        assert!(check(&JobAssignment { cpus: 0, ..job() }).is_err());
        assert!(check(&JobAssignment { cpus: MAX_CPUS + 1, ..job() }).is_err());
        assert!(check(&JobAssignment { time_limit_min: 0, ..job() }).is_err());
        assert!(check(&JobAssignment { script: "x".repeat(MAX_SCRIPT_CHARS + 1), ..job() }).is_err());
    }

    fn file(path: &str, content: &str) -> WorkspaceFile {
        WorkspaceFile { path: path.into(), content: content.as_bytes().to_vec() }
    }

    #[test]
    fn workspaces_are_checked() {
        let ws = |files: Vec<WorkspaceFile>, script: &str, entrypoint: Option<&str>| JobAssignment {
            files,
            script: script.into(),
            entrypoint: entrypoint.map(str::to_string),
            ..job()
        };
        assert_eq!(check(&ws(vec![file("main.py", "")], "", Some("python3 main.py"))), Ok(()));
        assert_eq!(check(&ws(vec![file("main.py", "")], "python3 main.py", None)), Ok(()));
        assert_eq!(check(&ws(vec![file("Dockerfile", "FROM ouro-python\n")], "", None)), Ok(()));
        assert!(check(&ws(vec![file("main.py", "")], "", None)).is_err(), "nothing to run");
        assert!(check(&ws(vec![file("../x", "")], "", Some("true"))).is_err());
        assert!(check(&ws(vec![file("/etc/x", "")], "", Some("true"))).is_err());
        assert!(check(&ws(vec![file("job", "")], "echo", None)).is_err(), "the script's own path");
        assert!(check(&ws(vec![], "", Some("  "))).is_err());
        let many = (0..=ouro_core::workspace::MAX_FILES).map(|i| file(&format!("f{i}"), "")).collect();
        assert!(check(&ws(many, "", Some("true"))).is_err());
    }

    #[test]
    fn the_body_limit_fits_a_full_workspace() {
        let files = vec![WorkspaceFile { path: "blob".into(), content: vec![0xAB; MAX_WORKSPACE_BYTES] }];
        let j = JobAssignment { files, script: "é".repeat(MAX_SCRIPT_CHARS), ..job() };
        let body = serde_json::to_vec(&j).map(|b| b.len()).unwrap_or(usize::MAX);
        assert!(body < MAX_ASSIGNMENT_BYTES, "{body} bytes");
    }

    #[test]
    fn deadline_is_the_time_limit() {
        let d = time_limit_deadline();
        assert_eq!(d(&JobAssignment { time_limit_min: 3, ..job() }), Duration::from_secs(180));
    }
}
