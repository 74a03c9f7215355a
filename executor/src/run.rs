//! One job's container lifecycle on the engine: check image → workspace → create → attach → start → wait (or
//! kill at the deadline) → inspect → remove. Always ends in a [`JobOutcome`]; never leaves a container behind.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::{Stream, StreamExt};
use ouro_core::dispatch::{Failure, JobAssignment, JobOutcome};
use ouro_core::job::{FailureReason, FailureStage};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::capture::{BoundedBuffer, Captured};
use crate::engine::{self, EngineError};
use crate::sandbox::{self, Launch, Limits, SpecInput};
use crate::workspace::{self, JobDir, WorkspaceError};

/// Whatever the edge asks, we never hold more than this of one stream in memory.
pub const MAX_OUTPUT_CAP_BYTES: u64 = 16 * 1024 * 1024;
/// After the process exits, how long the attach stream may take to deliver its last bytes.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

type OutputStream = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("image alias {alias:?} is not configured on this executor")]
    UnknownAlias { alias: String },
    #[error("engine image {image:?} (for {alias}) is not present on this executor; it is never pulled")]
    ImageMissing { alias: String, image: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
}

/// A job's outcome plus what only the executor cares about.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub outcome: JobOutcome,
    pub stdout_bytes_seen: u64,
    pub stderr_bytes_seen: u64,
    /// Our overhead around the job: image check to started container, and exit to everything removed.
    pub setup_s: f64,
    pub teardown_s: f64,
}

/// Runs jobs on one engine. Cheap to share (`Docker` is a handle).
#[derive(Debug, Clone)]
pub struct Runner {
    docker: Docker,
    /// Alias → engine image.
    images: HashMap<String, String>,
    work_dir: PathBuf,
    /// Deadline of each individual engine call.
    api_timeout: Duration,
    /// Label value marking containers as ours (the work dir: two executors on one engine never share it).
    executor_id: String,
}

/// How a started container stopped.
enum Ending {
    Exited(i64),
    TimedOut,
    Aborted,
}

impl Runner {
    pub fn new(docker: Docker, images: HashMap<String, String>, work_dir: PathBuf, api_timeout: Duration) -> Self {
        let executor_id = work_dir.to_string_lossy().into_owned();
        Runner { docker, images, work_dir, api_timeout, executor_id }
    }

    pub fn has_alias(&self, alias: &str) -> bool {
        self.images.contains_key(alias)
    }

    /// Whether `image` is in the engine's local store (we never pull: jobs get no network, neither do we).
    pub async fn image_present(&self, image: &str) -> bool {
        engine::call("inspect image", self.api_timeout, self.docker.inspect_image(image)).await.is_ok()
    }

    /// Removes containers and job directories a previous run of this executor left behind (a crash or SIGKILL
    /// skips every guard). Returns how many containers were removed.
    pub async fn sweep_leftovers(&self) -> Result<usize, RunError> {
        let filter = format!("{}={}", sandbox::LABEL_EXECUTOR, self.executor_id);
        let filters = HashMap::from([("label", vec![filter.as_str()])]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let leftovers =
            engine::call("list containers", self.api_timeout, self.docker.list_containers(Some(options))).await?;
        let mut removed = 0;
        for c in leftovers {
            if let Some(id) = c.id {
                remove_container(&self.docker, &id, self.api_timeout).await?;
                removed += 1;
            }
        }
        workspace::clear_jobs_root(&self.work_dir)?;
        Ok(removed)
    }

    /// Runs `job`, killing it after `deadline` (the job's time limit in production; shorter in tests) or when
    /// `abort` turns true (shutdown). `on_started` is called once the container is running.
    pub async fn run(
        &self,
        job: &JobAssignment,
        deadline: Duration,
        abort: watch::Receiver<bool>,
        on_started: impl FnOnce() + Send,
    ) -> RunReport {
        let setup_started = Instant::now();
        let prepared = match self.prepare(job).await {
            Ok(p) => p,
            Err(err) => {
                tracing::error!(job_id = %job.job_id, error = %err, "job could not start");
                return RunReport {
                    outcome: internal_error(&err.to_string(), None),
                    stdout_bytes_seen: 0,
                    stderr_bytes_seen: 0,
                    setup_s: setup_started.elapsed().as_secs_f64(),
                    teardown_s: 0.0,
                };
            }
        };
        let setup_s = setup_started.elapsed().as_secs_f64();
        let mut report = self.supervise(job, prepared, deadline, abort, on_started).await;
        report.setup_s = setup_s;
        report
    }

    /// Everything up to and including `start`; an error here means the job never ran.
    async fn prepare(&self, job: &JobAssignment) -> Result<Prepared, RunError> {
        let t = self.api_timeout;
        let image = self.images.get(&job.image).ok_or_else(|| RunError::UnknownAlias { alias: job.image.clone() })?;
        match engine::call("inspect image", t, self.docker.inspect_image(image)).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                return Err(RunError::ImageMissing { alias: job.image.clone(), image: image.clone() })
            }
            Err(e) => return Err(e.into()),
        }

        let launch = Launch::for_script(&job.script);
        let dir = JobDir::create(&self.work_dir, &job.job_id, &job.script, launch)?;
        let spec = sandbox::container_spec(&SpecInput {
            job_id: &job.job_id,
            engine_image: image,
            job_dir: dir.path(),
            cpus: job.cpus,
            launch,
            executor_id: &self.executor_id,
        });
        let name = sandbox::container_name(&job.job_id);
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let created =
            match engine::call("create", t, self.docker.create_container(Some(options.clone()), spec.clone())).await {
                // 409: a container of that name survived an earlier crash of ours; it is stale by construction.
                Err(EngineError::Call {
                    source: bollard::errors::Error::DockerResponseServerError { status_code: 409, .. },
                    ..
                }) => {
                    remove_container(&self.docker, &name, t).await?;
                    engine::call("create", t, self.docker.create_container(Some(options), spec)).await?
                }
                other => other?,
            };
        let container = ContainerGuard { docker: self.docker.clone(), id: created.id, timeout: t, armed: true };

        // Attach before start, without replaying logs: with logs=true the engine duplicated output now and then,
        // and attaching after start would lose what the job prints first.
        let attach_options = AttachContainerOptionsBuilder::new().stream(true).stdout(true).stderr(true).build();
        let attached =
            engine::call("attach", t, self.docker.attach_container(&container.id, Some(attach_options))).await?;
        let cap = usize::try_from(job.output_cap_bytes.min(MAX_OUTPUT_CAP_BYTES)).unwrap_or(usize::MAX);
        let (stop_capture, stop_rx) = oneshot::channel();
        let capture = AbortOnDrop(tokio::spawn(capture(attached.output, cap, stop_rx)));

        engine::call("start", t, self.docker.start_container(&container.id, None)).await?;
        Ok(Prepared { dir, container, capture, stop_capture, started_at: Instant::now() })
    }

    /// From a running container to the outcome; cleans up whatever happens.
    async fn supervise(
        &self,
        job: &JobAssignment,
        prepared: Prepared,
        deadline: Duration,
        abort: watch::Receiver<bool>,
        on_started: impl FnOnce() + Send,
    ) -> RunReport {
        let Prepared { dir, container, capture, stop_capture, started_at } = prepared;
        on_started();

        let ending = self.wait_or_kill(&container.id, deadline, abort).await;
        let compute_duration_s = started_at.elapsed().as_secs_f64();
        let teardown_started = Instant::now();
        let (stdout, stderr) = finish_capture(capture, stop_capture).await;

        let oom_killed = match &ending {
            Ok(Ending::Exited(_)) => self.oom_killed(&container.id).await,
            _ => Ok(false),
        };

        let failure = match (&ending, oom_killed) {
            (Err(e), _) => Some(internal_failure(&format!("{e} (while the job was running)"))),
            (Ok(_), Err(e)) => Some(internal_failure(&format!("{e} (after the job exited)"))),
            (Ok(Ending::Exited(_)), Ok(true)) => {
                let limits = Limits::for_cpus(job.cpus);
                Some(Failure {
                    reason: FailureReason::OutOfMemory,
                    stage: FailureStage::Run,
                    message: format!(
                        "The job ran out of memory (limit {:.1} GB for {} CPU{}) and was killed; more CPUs come \
                         with more memory.",
                        limits.memory_bytes as f64 / 1e9,
                        job.cpus,
                        if job.cpus == 1 { "" } else { "s" }
                    ),
                })
            }
            (Ok(Ending::Exited(0)), Ok(false)) => None,
            (Ok(Ending::Exited(code)), Ok(false)) => Some(Failure {
                reason: FailureReason::NonZeroExit,
                stage: FailureStage::Run,
                message: format!("The script exited with code {code}."),
            }),
            (Ok(Ending::TimedOut), _) => Some(Failure {
                reason: FailureReason::TimeLimitExceeded,
                stage: FailureStage::Run,
                message: format!(
                    "The job was still running at its time limit of {} minute{} and was stopped; the output \
                     printed until then is kept.",
                    job.time_limit_min,
                    if job.time_limit_min == 1 { "" } else { "s" }
                ),
            }),
            (Ok(Ending::Aborted), _) => Some(internal_failure("the executor shut down while the job was running")),
        };
        let exit_code = match ending {
            Ok(Ending::Exited(code)) => Some(code),
            _ => None,
        };

        if let Err(e) = container.remove().await {
            tracing::error!(job_id = %job.job_id, error = %e, "could not remove the job's container");
        }
        if let Err(e) = dir.remove().await {
            tracing::error!(job_id = %job.job_id, error = %e, "could not remove the job's directory");
        }

        RunReport {
            stdout_bytes_seen: stdout.bytes_seen,
            stderr_bytes_seen: stderr.bytes_seen,
            setup_s: 0.0, // filled in by `run`
            teardown_s: teardown_started.elapsed().as_secs_f64(),
            outcome: JobOutcome {
                exit_code,
                output: stdout.text,
                error_output: stderr.text,
                output_truncated: stdout.truncated,
                error_output_truncated: stderr.truncated,
                compute_duration_s,
                failure,
            },
        }
    }

    async fn wait_or_kill(
        &self,
        id: &str,
        deadline: Duration,
        mut abort: watch::Receiver<bool>,
    ) -> Result<Ending, EngineError> {
        // The engine answers the wait request's headers at once and the body at exit, so bollard's own request
        // timeout does not cut long jobs short; our deadline is the only clock on it.
        let mut wait = self.docker.wait_container(id, None);
        let aborted = async move {
            if abort.wait_for(|stop| *stop).await.is_err() {
                // The sender is gone: nobody can ask us to stop any more.
                std::future::pending::<()>().await;
            }
        };
        let ending = tokio::select! {
            item = wait.next() => return exit_code(item).map(Ending::Exited),
            _ = tokio::time::sleep(deadline) => Ending::TimedOut,
            _ = aborted => Ending::Aborted,
        };
        let kill = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
        match engine::call("kill", self.api_timeout, self.docker.kill_container(id, Some(kill))).await {
            Ok(()) => {}
            // 409: it exited on its own in the meantime; the kill is moot.
            Err(EngineError::Call {
                source: bollard::errors::Error::DockerResponseServerError { status_code: 409, .. },
                ..
            }) => {}
            Err(e) => return Err(e),
        }
        // Make sure it is really gone before we read its output as final.
        match tokio::time::timeout(self.api_timeout, wait.next()).await {
            Ok(item) => {
                exit_code(item)?;
            }
            Err(_) => {
                return Err(EngineError::Timeout { call: "wait after kill", timeout_s: self.api_timeout.as_secs() })
            }
        }
        Ok(ending)
    }

    async fn oom_killed(&self, id: &str) -> Result<bool, EngineError> {
        let info = engine::call("inspect", self.api_timeout, self.docker.inspect_container(id, None)).await?;
        Ok(info.state.and_then(|s| s.oom_killed).unwrap_or(false))
    }
}

/// The state between a successful start and the end of the job.
struct Prepared {
    dir: JobDir,
    container: ContainerGuard,
    capture: AbortOnDrop<(Captured, Captured)>,
    stop_capture: oneshot::Sender<()>,
    started_at: Instant,
}

/// Reads the wait stream's answer. bollard turns a non-zero exit into an error carrying the code.
fn exit_code(
    item: Option<Result<bollard::models::ContainerWaitResponse, bollard::errors::Error>>,
) -> Result<i64, EngineError> {
    match item {
        Some(Ok(response)) => Ok(response.status_code),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(source)) => Err(EngineError::Call { call: "wait", source }),
        None => Err(EngineError::Call {
            call: "wait",
            source: bollard::errors::Error::DockerStreamError { error: "wait ended without an exit status".into() },
        }),
    }
}

/// Reads the attach stream into two bounded buffers until it ends or `stop` fires.
async fn capture(mut output: OutputStream, cap: usize, mut stop: oneshot::Receiver<()>) -> (Captured, Captured) {
    let mut stdout = BoundedBuffer::new(cap);
    let mut stderr = BoundedBuffer::new(cap);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            item = output.next() => match item {
                Some(Ok(LogOutput::StdOut { message })) | Some(Ok(LogOutput::Console { message })) => {
                    stdout.push(&message)
                }
                Some(Ok(LogOutput::StdErr { message })) => stderr.push(&message),
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "attach stream failed; keeping the output read so far");
                    break;
                }
                None => break,
            },
        }
    }
    (stdout.finish(), stderr.finish())
}

/// Waits for the capture to reach the end of the stream, or stops it after a grace period.
async fn finish_capture(
    mut capture: AbortOnDrop<(Captured, Captured)>,
    stop: oneshot::Sender<()>,
) -> (Captured, Captured) {
    let empty = || Captured { text: String::new(), truncated: false, bytes_seen: 0 };
    let joined = match tokio::time::timeout(DRAIN_GRACE, &mut capture.0).await {
        Ok(joined) => joined,
        Err(_) => {
            tracing::warn!("attach stream still open {} s after exit; cutting it", DRAIN_GRACE.as_secs());
            let _ = stop.send(());
            (&mut capture.0).await
        }
    };
    joined.unwrap_or_else(|e| {
        tracing::error!(error = %e, "output capture task failed");
        (empty(), empty())
    })
}

fn internal_failure(detail: &str) -> Failure {
    Failure {
        reason: FailureReason::InternalError,
        stage: FailureStage::Run,
        message: format!("The executor could not run the job: {detail}."),
    }
}

/// An outcome for a job that never ran.
pub fn internal_error(detail: &str, exit_code: Option<i64>) -> JobOutcome {
    JobOutcome {
        exit_code,
        output: String::new(),
        error_output: String::new(),
        output_truncated: false,
        error_output_truncated: false,
        compute_duration_s: 0.0,
        failure: Some(internal_failure(detail)),
    }
}

async fn remove_container(docker: &Docker, id: &str, timeout: Duration) -> Result<(), EngineError> {
    // force: kills it if still running; v: drops anonymous volumes with it.
    let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
    match engine::call("remove", timeout, docker.remove_container(id, Some(options))).await {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// Removes the container when dropped (early return, error, panic) unless [`ContainerGuard::remove`] ran.
struct ContainerGuard {
    docker: Docker,
    id: String,
    timeout: Duration,
    armed: bool,
}

impl ContainerGuard {
    async fn remove(mut self) -> Result<(), EngineError> {
        self.armed = false;
        remove_container(&self.docker, &self.id, self.timeout).await
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (docker, id, timeout) = (self.docker.clone(), std::mem::take(&mut self.id), self.timeout);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(e) = remove_container(&docker, &id, timeout).await {
                        tracing::error!(container = %id, error = %e, "could not remove a job container");
                    }
                });
            }
            Err(_) => tracing::error!(container = %id, "no runtime left to remove a job container"),
        }
    }
}

/// A task that is cancelled when its handle is dropped (so an early return does not leave a reader running).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
