//! One job's container lifecycle on the engine: (build the image of a Dockerfile job →) check image →
//! workspace → create → attach → start → wait (or kill at the deadline) → inspect → remove. Always ends in a
//! [`JobOutcome`]; never leaves a container behind.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
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

use crate::build::{self, BuildError, BuildInfo, Builder};
use crate::capture::{BoundedBuffer, Captured, LiveOutput};
use crate::config::BuildSettings;
use crate::engine::{self, EngineError};
use crate::sandbox::{self, Command, Launch, Limits, SpecInput};
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
    #[error("the job has neither a script, an entrypoint nor a Dockerfile: nothing to run")]
    NothingToRun,
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error("could not mount the wallet's storage: {0}")]
    Storage(#[from] crate::storage::SyncError),
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
    /// For a Dockerfile job that got its image: which, and whether it was built now or found in the cache.
    pub build: Option<BuildInfo>,
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
    builder: Arc<Builder>,
    /// Where `/scratch` syncs and `/outputs` uploads go (none in engine-only tests: outputs are then dropped).
    edge_files: Option<crate::storage::EdgeFiles>,
}

/// The image a job runs.
enum Target {
    /// The engine image of the job's alias.
    Alias,
    /// An image built from the job's Dockerfile, held for the job's life.
    Built(build::Pin),
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
        let builder = Arc::new(Builder::new(docker.clone(), api_timeout, BuildSettings::default()));
        Runner { docker, images, work_dir, api_timeout, executor_id, builder, edge_files: None }
    }

    /// Sends output files and storage syncs to the edge.
    pub fn with_edge_files(mut self, edge_files: crate::storage::EdgeFiles) -> Self {
        self.edge_files = Some(edge_files);
        self
    }

    /// Replaces the default build settings (no network, 20 cached images).
    pub fn with_build_settings(mut self, settings: BuildSettings) -> Self {
        self.builder = Arc::new(Builder::new(self.docker.clone(), self.api_timeout, settings));
        self
    }

    pub fn builder(&self) -> &Arc<Builder> {
        &self.builder
    }

    pub fn has_alias(&self, alias: &str) -> bool {
        self.images.contains_key(alias)
    }

    /// Why this executor cannot take `job`, if it cannot: an alias it does not offer (the job's, or the one its
    /// Dockerfile builds on), or a Dockerfile it cannot read.
    pub fn refuses(&self, job: &JobAssignment) -> Option<String> {
        if !self.has_alias(&job.image) {
            return Some(format!("image {:?} is not offered here", job.image));
        }
        match build::from_alias(job) {
            Ok(Some(alias)) if !self.has_alias(&alias) => {
                Some(format!("the Dockerfile's FROM {alias:?} is not an image offered here"))
            }
            Ok(_) => None,
            Err(e) => Some(e),
        }
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
        self.run_with_progress(job, deadline, abort, |_| {}, on_started).await
    }

    /// [`Runner::run`], also telling `progress` what the build stage of a Dockerfile job does ("build cache hit
    /// <tag>", "building image <tag>", "built image <tag> in N s"). The build's time is part of `deadline`.
    pub async fn run_with_progress(
        &self,
        job: &JobAssignment,
        deadline: Duration,
        abort: watch::Receiver<bool>,
        progress: impl FnMut(String) + Send,
        on_started: impl FnOnce() + Send,
    ) -> RunReport {
        self.run_live(job, deadline, abort, progress, on_started, None).await
    }

    /// [`Runner::run_with_progress`], also handing each piece of output to `live` as it is read (the edge's
    /// live view; see `report::stream_output`).
    pub async fn run_live(
        &self,
        job: &JobAssignment,
        deadline: Duration,
        abort: watch::Receiver<bool>,
        mut progress: impl FnMut(String) + Send,
        on_started: impl FnOnce() + Send,
        live: Option<Arc<LiveOutput>>,
    ) -> RunReport {
        let setup_started = Instant::now();
        let until = tokio::time::Instant::now() + deadline;
        let (target, build) = if build::dockerfile_of(&job.files).is_some() {
            match self.builder.image_for(job, &self.images, until, abort.clone(), &mut progress).await {
                Ok((pin, info)) => (Target::Built(pin), Some(info)),
                Err(err) => return build_failure(job, err, setup_started),
            }
        } else {
            (Target::Alias, None)
        };
        // The run gets what the build left of the time limit.
        let remaining = until.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            let log = BoundedBuffer::new(0).finish();
            return build_failure(job, BuildError::TimedOut { log, seconds: deadline.as_secs_f64() }, setup_started);
        }

        let prepared = match self.prepare(job, &target, live).await {
            Ok(p) => p,
            Err(err) => {
                tracing::error!(job_id = %job.job_id, error = %err, "job could not start");
                return RunReport {
                    outcome: internal_error(&err.to_string(), None),
                    stdout_bytes_seen: 0,
                    stderr_bytes_seen: 0,
                    setup_s: setup_started.elapsed().as_secs_f64(),
                    teardown_s: 0.0,
                    build,
                };
            }
        };
        let setup_s = setup_started.elapsed().as_secs_f64();
        let mut report = self.supervise(job, prepared, remaining, abort, on_started).await;
        report.setup_s = setup_s;
        report.build = build;
        // Only now may the built image be garbage-collected.
        drop(target);
        report
    }

    /// Everything up to and including `start`; an error here means the job never ran.
    async fn prepare(
        &self,
        job: &JobAssignment,
        target: &Target,
        live: Option<Arc<LiveOutput>>,
    ) -> Result<Prepared, RunError> {
        let t = self.api_timeout;
        let entrypoint = job.entrypoint.as_deref().filter(|e| !e.trim().is_empty());
        let (image, command) = match target {
            Target::Built(pin) => (pin.tag(), entrypoint.map_or(Command::Image, Command::Shell)),
            Target::Alias => {
                let image =
                    self.images.get(&job.image).ok_or_else(|| RunError::UnknownAlias { alias: job.image.clone() })?;
                let command = if !job.script.is_empty() {
                    Command::Script(Launch::for_script(&job.script))
                } else {
                    Command::Shell(entrypoint.ok_or(RunError::NothingToRun)?)
                };
                (image.as_str(), command)
            }
        };
        match engine::call("inspect image", t, self.docker.inspect_image(image)).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                return Err(RunError::ImageMissing { alias: job.image.clone(), image: image.to_string() })
            }
            Err(e) => return Err(e.into()),
        }

        // A built image has the workspace inside it already; its /workspace is an empty scratch directory.
        let dir = match (target, command) {
            (Target::Built(_), _) => JobDir::create(&self.work_dir, &job.job_id, None, &[])?,
            (Target::Alias, Command::Script(launch)) => {
                JobDir::create(&self.work_dir, &job.job_id, Some((&job.script, launch)), &job.files)?
            }
            (Target::Alias, _) => JobDir::create(&self.work_dir, &job.job_id, None, &job.files)?,
        };
        let folders = crate::storage::JobFolders::prepare(self.edge_files.as_ref(), &self.work_dir, job).await?;
        let spec = sandbox::container_spec(&SpecInput {
            job_id: &job.job_id,
            engine_image: image,
            job_dir: dir.path(),
            cpus: job.cpus,
            command,
            executor_id: &self.executor_id,
            scratch_dir: folders.scratch_dir(),
            outputs_dir: Some(folders.outputs_dir()),
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
        let capture = AbortOnDrop(tokio::spawn(capture(attached.output, cap, stop_rx, live)));

        engine::call("start", t, self.docker.start_container(&container.id, None)).await?;
        Ok(Prepared { dir, folders, container, capture, stop_capture, started_at: Instant::now() })
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
        let Prepared { dir, folders, container, capture, stop_capture, started_at } = prepared;
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
                message: if !job.script.is_empty() && build::dockerfile_of(&job.files).is_none() {
                    format!("The script exited with code {code}.")
                } else {
                    format!("The job's command exited with code {code}.")
                },
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
        let mut failure = failure;
        let artifacts = folders.finish(self.edge_files.as_ref(), job, &mut failure).await;

        RunReport {
            stdout_bytes_seen: stdout.bytes_seen,
            stderr_bytes_seen: stderr.bytes_seen,
            setup_s: 0.0, // filled in by `run`
            teardown_s: teardown_started.elapsed().as_secs_f64(),
            build: None,
            outcome: JobOutcome {
                exit_code,
                output: stdout.text,
                error_output: stderr.text,
                output_truncated: stdout.truncated,
                error_output_truncated: stderr.truncated,
                compute_duration_s,
                failure,
                artifacts,
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
    folders: crate::storage::JobFolders,
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

/// Reads the attach stream into two bounded buffers until it ends or `stop` fires; what they keep also goes to
/// `live` (which never waits: the container's output is drained at the engine's pace, whatever the edge does).
async fn capture(
    mut output: OutputStream,
    cap: usize,
    mut stop: oneshot::Receiver<()>,
    live: Option<Arc<LiveOutput>>,
) -> (Captured, Captured) {
    use ouro_core::dispatch::OutputStream as Stream;
    let mut stdout = BoundedBuffer::new(cap);
    let mut stderr = BoundedBuffer::new(cap);
    let live = live.as_deref();
    let keep = |buffer: &mut BoundedBuffer, stream: Stream, bytes: &[u8]| {
        if let Some(live) = live {
            live.raw(stream, bytes);
        }
        let kept = buffer.push(bytes);
        if let Some(live) = live {
            live.push(stream, kept);
        }
    };
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            item = output.next() => match item {
                Some(Ok(LogOutput::StdOut { message })) | Some(Ok(LogOutput::Console { message })) => {
                    keep(&mut stdout, Stream::Stdout, &message)
                }
                Some(Ok(LogOutput::StdErr { message })) => keep(&mut stderr, Stream::Stderr, &message),
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "attach stream failed; keeping the output read so far");
                    break;
                }
                None => break,
            },
        }
    }
    (stdout.finish_into(Stream::Stdout, live), stderr.finish_into(Stream::Stderr, live))
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
    internal_failure_at(FailureStage::Run, detail)
}

fn internal_failure_at(stage: FailureStage, detail: &str) -> Failure {
    Failure {
        reason: FailureReason::InternalError,
        stage,
        message: format!("The executor could not run the job: {detail}."),
    }
}

/// The report of a Dockerfile job that never got its image: the job never ran.
fn build_failure(job: &JobAssignment, err: BuildError, setup_started: Instant) -> RunReport {
    let minutes = |m: u32| format!("{m} minute{}", if m == 1 { "" } else { "s" });
    let (failure, log, seconds) = match err {
        BuildError::Failed { message, log, seconds } => {
            (Failure { reason: FailureReason::BuildFailed, stage: FailureStage::Build, message }, Some(log), seconds)
        }
        BuildError::TimedOut { log, seconds } => (
            Failure {
                reason: FailureReason::TimeLimitExceeded,
                stage: FailureStage::Build,
                message: format!(
                    "The job's time limit of {} ran out while its image was building (the build counts towards \
                     it); the build was stopped and the job never ran. The end of the build log is in error_output.",
                    minutes(job.time_limit_min)
                ),
            },
            Some(log),
            seconds,
        ),
        BuildError::Aborted { seconds } => (
            internal_failure_at(FailureStage::Build, "the executor shut down while the image was building"),
            None,
            seconds,
        ),
        BuildError::Internal(detail) => {
            tracing::error!(job_id = %job.job_id, error = %detail, "image build failed on our side");
            (internal_failure_at(FailureStage::Build, &detail), None, setup_started.elapsed().as_secs_f64())
        }
    };
    tracing::info!(job_id = %job.job_id, reason = ?failure.reason, "job ended in its build stage");
    let log = log.unwrap_or_else(|| BoundedBuffer::new(0).finish());
    RunReport {
        outcome: JobOutcome {
            exit_code: None,
            output: String::new(),
            error_output: log.text,
            output_truncated: false,
            error_output_truncated: log.truncated,
            compute_duration_s: seconds,
            failure: Some(failure),
            artifacts: Default::default(),
        },
        stdout_bytes_seen: 0,
        stderr_bytes_seen: log.bytes_seen,
        setup_s: setup_started.elapsed().as_secs_f64(),
        teardown_s: 0.0,
        build: None,
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
        artifacts: Default::default(),
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
