//! Images built from a job's Dockerfile, with the engine's legacy builder (BuildKit is not used).
//!
//! The Dockerfile's FROM names an image alias; it is rewritten to this executor's engine image for that alias,
//! and the workspace (its files, plus the script file if any) is sent as the build context. Builds run with no
//! network by default, no pulls, the job's CPU and memory limits, and the job's clock: the build's time comes
//! out of the job's time limit. A built image is tagged `ouro-build:<first 24 hex digits of the build key>` (the
//! key hashes the Dockerfile and the files it copies) and reused by later jobs with the same key, as long as
//! the base image it was built on is still the one configured. At most `cache_images` of them are kept.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::body::Bytes;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, BuilderVersion, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use bollard::{body_full, Docker};
use futures_util::{Stream, StreamExt};
use ouro_core::dispatch::JobAssignment;
use ouro_core::dockerfile;
use ouro_core::workspace::{check_path, with_script, WorkspaceFile, DOCKERFILE};
use tokio::sync::watch;

use crate::capture::{Captured, TailBuffer};
use crate::config::BuildSettings;
use crate::engine::{self, EngineError};
use crate::report::unix_now;
use crate::sandbox::{Launch, Limits, SCRIPT_NAME};
use crate::workspace::file_mode;

/// Repository of every image built here.
pub const BUILD_REPO: &str = "ouro-build";
/// Labels on built images: the full build key (marks the image as ours) and the id of the base image it was
/// built on (a rebuilt base image invalidates the cache).
pub const LABEL_BUILD_KEY: &str = "ouro.build.key";
pub const LABEL_BUILD_BASE: &str = "ouro.build.base";
/// How much of the build log's end a failed build reports (never more than the job's output cap).
pub const BUILD_LOG_TAIL_BYTES: usize = 64 * 1024;
const TAG_HEX_DIGITS: usize = 24;
const CPU_PERIOD_US: i32 = 100_000;

/// Build-time defaults (`ARG`s, so they never reach the built image's environment, and a Dockerfile `ENV` of
/// the same name overrides them) for builds without a network: package managers give up at once instead of
/// retrying a network that is not there.
pub const OFFLINE_BUILD_ARGS: &[(&str, &str)] = &[
    ("PIP_RETRIES", "0"),
    ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
    ("PIP_NO_INPUT", "1"),
    ("NPM_CONFIG_FETCH_RETRIES", "0"),
    ("NPM_CONFIG_UPDATE_NOTIFIER", "false"),
    ("NPM_CONFIG_AUDIT", "false"),
    ("NPM_CONFIG_FUND", "false"),
];

/// What the build stage of a job did.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildInfo {
    /// The image the job ran (`ouro-build:...`).
    pub tag: String,
    /// Whether the image was already there.
    pub cache_hit: bool,
    /// Time spent in the build stage (cache lookup, waiting for an identical build, building).
    pub seconds: f64,
}

/// Why the build stage did not produce an image.
#[derive(Debug)]
pub enum BuildError {
    /// The user's build failed: a bad Dockerfile, a failing RUN, a COPY of a file that is not there.
    Failed { message: String, log: Captured, seconds: f64 },
    /// The job's time limit ran out during the build.
    TimedOut { log: Captured, seconds: f64 },
    /// The executor is shutting down.
    Aborted { seconds: f64 },
    /// Ours: the engine failed, a base image is missing.
    Internal(String),
}

/// The workspace's Dockerfile, if it has one (which makes the job an image build).
pub fn dockerfile_of(files: &[WorkspaceFile]) -> Option<&WorkspaceFile> {
    files.iter().find(|f| f.path == DOCKERFILE)
}

/// The alias a Dockerfile job builds on, or why its Dockerfile is unusable; `None` for other jobs.
pub fn from_alias(job: &JobAssignment) -> Result<Option<String>, String> {
    let Some(file) = dockerfile_of(&job.files) else { return Ok(None) };
    let text = std::str::from_utf8(&file.content).map_err(|_| "the Dockerfile is not UTF-8 text".to_string())?;
    let parsed = dockerfile::parse(text).map_err(|e| format!("the Dockerfile is refused: {e}"))?;
    Ok(Some(parsed.from_alias))
}

/// Builds and caches images; one per executor, shared by its jobs.
#[derive(Debug)]
pub struct Builder {
    docker: Docker,
    api_timeout: std::time::Duration,
    settings: BuildSettings,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Tag → unix time it was last used by a job here (the LRU order; images not used since we started fall
    /// back to their creation time).
    last_used: HashMap<String, u64>,
    /// Tag → jobs between "this image is theirs" and the end of their run: never garbage-collected.
    pinned: HashMap<String, usize>,
    /// Tag → lock held while that image is looked up or built, so identical jobs build it once.
    building: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

/// A job's hold on a built image; released (and the use recorded) when dropped.
#[derive(Debug)]
pub struct Pin {
    builder: Arc<Builder>,
    tag: String,
}

impl Pin {
    pub fn tag(&self) -> &str {
        &self.tag
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut state = self.builder.lock_state();
        if let Some(n) = state.pinned.get_mut(&self.tag) {
            *n -= 1;
            if *n == 0 {
                state.pinned.remove(&self.tag);
            }
        }
        state.last_used.insert(self.tag.clone(), unix_now());
    }
}

/// What a build needs, worked out before anything is built.
struct Plan<'a> {
    dockerfile: &'a str,
    key: String,
    tag: String,
    engine_image: String,
    base_id: String,
}

enum Interrupted {
    TimedOut,
    Aborted,
}

/// How the engine's build stream ended, when not with a built image.
enum StreamFailure {
    /// The build reported an error (a failing step): the user's.
    Build(String),
    Engine(String),
}

impl Builder {
    pub fn new(docker: Docker, api_timeout: std::time::Duration, settings: BuildSettings) -> Self {
        Builder { docker, api_timeout, settings, state: Mutex::new(State::default()) }
    }

    pub fn settings(&self) -> &BuildSettings {
        &self.settings
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic (plain map updates), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pin(self: &Arc<Self>, tag: &str) -> Pin {
        let mut state = self.lock_state();
        *state.pinned.entry(tag.to_string()).or_insert(0) += 1;
        state.last_used.insert(tag.to_string(), unix_now());
        Pin { builder: Arc::clone(self), tag: tag.to_string() }
    }

    /// The image for `job` (which has a Dockerfile): from the cache, or built now. Reports "build cache hit",
    /// "building image" and "built image" through `progress`; gives up at `until` or when `abort` turns true.
    pub async fn image_for(
        self: &Arc<Self>,
        job: &JobAssignment,
        images: &HashMap<String, String>,
        until: tokio::time::Instant,
        mut abort: watch::Receiver<bool>,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> Result<(Pin, BuildInfo), BuildError> {
        let started = Instant::now();
        let cap = usize::try_from(job.output_cap_bytes).unwrap_or(usize::MAX).min(BUILD_LOG_TAIL_BYTES);
        let plan = self.plan(job, images, cap, started).await?;

        // One lookup-or-build per tag at a time: an identical job waiting here then finds the image built.
        let lock = {
            let mut state = self.lock_state();
            Arc::clone(state.building.entry(plan.tag.clone()).or_default())
        };
        let held = bounded(until, &mut abort, lock.lock()).await;
        let result = match held {
            Ok(_guard) => self.lookup_or_build(job, &plan, cap, until, &mut abort, progress, started).await,
            Err(i) => Err(interrupted(i, TailBuffer::new(cap).finish(), started)),
        };
        {
            let mut state = self.lock_state();
            // Two references: the map's and ours. Nobody else waits for this tag, so forget its lock.
            if Arc::strong_count(&lock) == 2 {
                state.building.remove(&plan.tag);
            }
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn lookup_or_build(
        self: &Arc<Self>,
        job: &JobAssignment,
        plan: &Plan<'_>,
        cap: usize,
        until: tokio::time::Instant,
        abort: &mut watch::Receiver<bool>,
        progress: &mut (dyn FnMut(String) + Send),
        started: Instant,
    ) -> Result<(Pin, BuildInfo), BuildError> {
        if self.cached(plan).await? {
            let pin = self.pin(&plan.tag);
            progress(format!("build cache hit {}", plan.tag));
            let info = BuildInfo { tag: plan.tag.clone(), cache_hit: true, seconds: started.elapsed().as_secs_f64() };
            return Ok((pin, info));
        }

        progress(format!("building image {}", plan.tag));
        let build_started = Instant::now();
        let mut log = TailBuffer::new(cap);
        let mut last_layer = None;
        let outcome = {
            let built = self.build(job, plan, &mut log, &mut last_layer)?;
            bounded(until, abort, built).await
        };
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(StreamFailure::Build(error))) => Some(BuildError::Failed {
                message: format!(
                    "The image build failed: {}. The end of the build log is in error_output.",
                    error.trim().trim_end_matches('.')
                ),
                log: log.finish(),
                seconds: started.elapsed().as_secs_f64(),
            }),
            Ok(Err(StreamFailure::Engine(error))) => {
                Some(BuildError::Internal(format!("the engine failed while building the image: {error}")))
            }
            Err(i) => Some(interrupted(i, log.finish(), started)),
        };
        if let Some(failure) = failure {
            self.remove_partial_build(last_layer.as_deref(), &plan.base_id).await;
            return Err(failure);
        }

        // The stream ended without an error; the tag must now name our image.
        match self.cached(plan).await {
            Ok(true) => {}
            Ok(false) => return Err(BuildError::Internal(format!("the build ended but {} is not there", plan.tag))),
            Err(e) => return Err(e),
        }
        let pin = self.pin(&plan.tag);
        let build_s = build_started.elapsed().as_secs_f64();
        progress(format!("built image {} in {build_s:.0} s", plan.tag));
        tracing::info!(job_id = %job.job_id, tag = %plan.tag, build_s, "image built");
        match self.collect_garbage().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                removed = n,
                keep = self.settings.cache_images,
                "removed least recently used built images"
            ),
            Err(e) => tracing::warn!(error = %e, "could not garbage-collect built images"),
        }
        let info = BuildInfo { tag: plan.tag.clone(), cache_hit: false, seconds: started.elapsed().as_secs_f64() };
        Ok((pin, info))
    }

    async fn plan<'a>(
        &self,
        job: &'a JobAssignment,
        images: &HashMap<String, String>,
        cap: usize,
        started: Instant,
    ) -> Result<Plan<'a>, BuildError> {
        let refused = |message: String| BuildError::Failed {
            message,
            log: TailBuffer::new(cap).finish(),
            seconds: started.elapsed().as_secs_f64(),
        };
        let file = dockerfile_of(&job.files).ok_or_else(|| BuildError::Internal("the job has no Dockerfile".into()))?;
        let text =
            std::str::from_utf8(&file.content).map_err(|_| refused("The Dockerfile is not UTF-8 text.".into()))?;
        let parsed = dockerfile::parse(text).map_err(|e| refused(format!("The Dockerfile was refused: {e}.")))?;
        let engine_image = images.get(&parsed.from_alias).ok_or_else(|| {
            BuildError::Internal(format!(
                "image alias {:?} (the Dockerfile's FROM) is not configured",
                parsed.from_alias
            ))
        })?;
        let base_id =
            match engine::call("inspect image", self.api_timeout, self.docker.inspect_image(engine_image)).await {
                Ok(image) => image.id.unwrap_or_default(),
                Err(e) if e.is_not_found() => {
                    return Err(BuildError::Internal(format!(
                        "engine image {engine_image:?} (for {}) is not present on this executor; it is never pulled",
                        parsed.from_alias
                    )))
                }
                Err(e) => return Err(BuildError::Internal(e.to_string())),
            };
        // The key covers the whole context, the script file included (a Dockerfile may COPY it).
        let key = dockerfile::build_key(&with_script(&job.files, &job.script))
            .map_err(|e| refused(format!("The Dockerfile was refused: {e}.")))?;
        if key.len() < TAG_HEX_DIGITS || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BuildError::Internal(format!("build key {key:?} is not a hex digest")));
        }
        let tag = format!("{BUILD_REPO}:{}", key[..TAG_HEX_DIGITS].to_ascii_lowercase());
        Ok(Plan { dockerfile: text, key, tag, engine_image: engine_image.clone(), base_id })
    }

    /// Whether the plan's tag names an image of ours built on the current base image.
    async fn cached(&self, plan: &Plan<'_>) -> Result<bool, BuildError> {
        match engine::call("inspect image", self.api_timeout, self.docker.inspect_image(&plan.tag)).await {
            Ok(image) => {
                let labels = image.config.and_then(|c| c.labels).unwrap_or_default();
                let fresh = labels.get(LABEL_BUILD_BASE) == Some(&plan.base_id)
                    && labels.get(LABEL_BUILD_KEY) == Some(&plan.key);
                if !fresh {
                    tracing::info!(tag = %plan.tag, "cached image was built on another base image; rebuilding");
                }
                Ok(fresh)
            }
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(BuildError::Internal(e.to_string())),
        }
    }

    /// Starts the build; the returned future reads its log into `log` until it ends.
    fn build<'a>(
        &'a self,
        job: &'a JobAssignment,
        plan: &'a Plan<'_>,
        log: &'a mut TailBuffer,
        last_layer: &'a mut Option<String>,
    ) -> Result<impl Future<Output = Result<(), StreamFailure>> + 'a, BuildError> {
        let rewritten = dockerfile::with_base_image(plan.dockerfile, &plan.engine_image)
            .map_err(|e| BuildError::Internal(format!("could not rewrite the Dockerfile's FROM: {e}")))?;
        let rewritten =
            if self.settings.network == "none" { with_build_args(&rewritten, OFFLINE_BUILD_ARGS) } else { rewritten };
        let script = Some(job.script.as_str()).filter(|s| !s.is_empty());
        let context = context_tar(&job.files, script, &rewritten)
            .map_err(|e| BuildError::Internal(format!("could not pack the build context: {e}")))?;

        let limits = Limits::for_cpus(job.cpus);
        // The build API takes 32-bit limits: more than 2 GiB cannot be asked for (1 CPU's 1.6 GB fits).
        let memory = i32::try_from(limits.memory_bytes).unwrap_or(i32::MAX);
        let quota = i32::try_from(i64::from(job.cpus) * i64::from(CPU_PERIOD_US)).unwrap_or(i32::MAX);
        let labels = HashMap::from([(LABEL_BUILD_KEY, plan.key.as_str()), (LABEL_BUILD_BASE, plan.base_id.as_str())]);
        let options = BuildImageOptionsBuilder::new()
            .dockerfile(DOCKERFILE)
            .t(&plan.tag)
            .pull("false")
            .rm(true)
            .forcerm(true)
            .networkmode(&self.settings.network)
            .memory(memory)
            .memswap(memory)
            .cpuperiod(CPU_PERIOD_US)
            .cpuquota(quota)
            .labels(&labels)
            .version(BuilderVersion::BuilderV1)
            .build();
        let stream = self.docker.build_image(options, None, Some(body_full(Bytes::from(context))));
        Ok(read_build_log(stream, log, last_layer))
    }

    /// A failed or stopped build leaves the layers of its finished steps behind as untagged images; removes the
    /// last one (and with it the chain up to anything still used). The engine refuses to remove an image with
    /// children or a container, and we never remove a tagged one, so only this build's leftovers can go.
    async fn remove_partial_build(&self, last_layer: Option<&str>, base_id: &str) {
        let Some(layer) = last_layer else { return };
        let t = self.api_timeout;
        let Ok(image) = engine::call("inspect image", t, self.docker.inspect_image(layer)).await else { return };
        let id = image.id.unwrap_or_default();
        let tagged = image.repo_tags.unwrap_or_default().iter().any(|t| t != "<none>:<none>");
        if tagged || id.is_empty() || id == base_id {
            return;
        }
        let options = RemoveImageOptionsBuilder::new().force(false).noprune(false).build();
        if let Err(e) = engine::call("remove image", t, self.docker.remove_image(&id, Some(options), None)).await {
            tracing::debug!(image = %id, error = %e, "partial build layers kept");
        }
    }

    /// Removes built images beyond `cache_images`, least recently used first; never one a container uses or a
    /// job here holds. Returns how many were removed.
    pub async fn collect_garbage(&self) -> Result<usize, EngineError> {
        let t = self.api_timeout;
        let filters = HashMap::from([("label", vec![LABEL_BUILD_KEY])]);
        let options = ListImagesOptionsBuilder::new().filters(&filters).build();
        let images = engine::call("list images", t, self.docker.list_images(Some(options))).await?;
        if images.len() <= self.settings.cache_images {
            return Ok(0);
        }
        let containers = engine::call(
            "list containers",
            t,
            self.docker.list_containers(Some(ListContainersOptionsBuilder::new().all(true).build())),
        )
        .await?;
        let in_use: HashSet<String> = containers.into_iter().filter_map(|c| c.image_id).collect();
        let (pinned, last_used) = {
            let state = self.lock_state();
            (state.pinned.keys().cloned().collect::<HashSet<_>>(), state.last_used.clone())
        };

        let excess = images.len() - self.settings.cache_images;
        let mut candidates: Vec<(u64, String, Option<String>)> = images
            .into_iter()
            .filter(|image| !in_use.contains(&image.id))
            .filter_map(|image| {
                let tag = image.repo_tags.iter().find(|t| t.starts_with(&format!("{BUILD_REPO}:"))).cloned();
                if tag.as_ref().is_some_and(|t| pinned.contains(t)) {
                    return None;
                }
                // An untagged image (its tag moved to a rebuild) is of no use to anyone: first to go.
                let used = match &tag {
                    Some(t) => last_used.get(t).copied().unwrap_or(0).max(u64::try_from(image.created).unwrap_or(0)),
                    None => 0,
                };
                Some((used, image.id, tag))
            })
            .collect();
        candidates.sort();

        let mut removed = 0;
        for (_, id, tag) in candidates.into_iter().take(excess) {
            let options = RemoveImageOptionsBuilder::new().force(false).noprune(false).build();
            let name = tag.as_deref().unwrap_or(&id);
            match engine::call("remove image", t, self.docker.remove_image(name, Some(options), None)).await {
                Ok(_) => {
                    removed += 1;
                    if let Some(tag) = &tag {
                        self.lock_state().last_used.remove(tag);
                    }
                }
                // 409: a container started using it since we looked; 404: someone else removed it.
                Err(e) => tracing::debug!(image = %name, error = %e, "built image kept"),
            }
        }
        Ok(removed)
    }
}

fn interrupted(i: Interrupted, log: Captured, started: Instant) -> BuildError {
    let seconds = started.elapsed().as_secs_f64();
    match i {
        Interrupted::TimedOut => BuildError::TimedOut { log, seconds },
        Interrupted::Aborted => BuildError::Aborted { seconds },
    }
}

/// Runs `fut` until it finishes, `until` passes, or `abort` turns true; dropping `fut` cancels what it does
/// (for a build: closing the connection makes the engine stop it and remove its container).
async fn bounded<F: Future>(
    until: tokio::time::Instant,
    abort: &mut watch::Receiver<bool>,
    fut: F,
) -> Result<F::Output, Interrupted> {
    let aborted = async move {
        if abort.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        out = fut => Ok(out),
        _ = tokio::time::sleep_until(until) => Err(Interrupted::TimedOut),
        _ = aborted => Err(Interrupted::Aborted),
    }
}

/// Reads the engine's build stream into `log` (bounded), noting the last layer this build committed itself
/// (not one it took from the engine's cache: other builds may be standing on those).
async fn read_build_log(
    stream: impl Stream<Item = Result<bollard::models::BuildInfo, bollard::errors::Error>>,
    log: &mut TailBuffer,
    last_layer: &mut Option<String>,
) -> Result<(), StreamFailure> {
    let mut stream = std::pin::pin!(stream);
    let mut from_cache = false;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(text) = info.stream.as_deref() {
                    log.push(uncoloured(text).as_bytes());
                    for line in text.lines() {
                        if line.trim() == "---> Using cache" {
                            from_cache = true;
                        } else if let Some(id) = layer_id(line) {
                            if !std::mem::take(&mut from_cache) {
                                *last_layer = Some(id.to_string());
                            }
                        }
                    }
                }
                if let Some(status) = info.status.as_deref() {
                    log.push(status.as_bytes());
                    log.push(b"\n");
                }
            }
            // The build's own error (bollard turns `errorDetail` into this).
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                log.push(error.as_bytes());
                log.push(b"\n");
                return Err(StreamFailure::Build(error));
            }
            // The engine refusing the build before it starts (e.g. a Dockerfile it cannot parse).
            Err(bollard::errors::Error::DockerResponseServerError { status_code, message })
                if (400..500).contains(&status_code) =>
            {
                log.push(message.as_bytes());
                log.push(b"\n");
                return Err(StreamFailure::Build(message));
            }
            Err(e) => return Err(StreamFailure::Engine(e.to_string())),
        }
    }
    Ok(())
}

/// The legacy builder wraps what a step prints on stderr in red (`ESC[91m` … `ESC[0m`); a log read as text
/// is better without.
fn uncoloured(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\u{1b}') {
        text.replace("\u{1b}[91m", "").replace("\u{1b}[0m", "").into()
    } else {
        text.into()
    }
}

/// The image id in a legacy builder's ` ---> 0123456789ab` line (the layer a step committed).
fn layer_id(line: &str) -> Option<&str> {
    let id = line.strip_prefix(" ---> ")?.trim();
    (id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// The build context: the workspace's files (the Dockerfile replaced by `dockerfile`, its rewrite) and the
/// script as [`SCRIPT_NAME`], as an uncompressed tar.
pub fn context_tar(files: &[WorkspaceFile], script: Option<&str>, dockerfile: &str) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    // A real time, not 0: tools inside builds refuse pre-1980 files (zip). The engine's cache ignores it.
    let mtime = unix_now();
    let mut add = |path: &str, data: &[u8], mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        tar.append_data(&mut header, path, data)
    };
    add(DOCKERFILE, dockerfile.as_bytes(), 0o644)?;
    for f in files.iter().filter(|f| f.path != DOCKERFILE) {
        check_path(&f.path).map_err(|e| std::io::Error::other(format!("{:?} {e}", f.path)))?;
        add(&f.path, &f.content, file_mode(&f.content))?;
    }
    if let Some(script) = script {
        add(SCRIPT_NAME, script.as_bytes(), Launch::for_script(script).file_mode())?;
    }
    tar.into_inner()
}

/// `dockerfile` with one `ARG name=value ...` line after each FROM instruction (build-args in scope for that
/// stage's RUN steps, not in the image; one line so the build log gains a single step). Parser directives,
/// comments and line continuations (with the file's escape character) are respected.
pub fn with_build_args(dockerfile: &str, args: &[(&str, &str)]) -> String {
    if args.is_empty() {
        return dockerfile.to_string();
    }
    let escape = escape_char(dockerfile);
    let pairs: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let arg_lines = format!("ARG {}\n", pairs.join(" "));
    let mut out = String::with_capacity(dockerfile.len() + arg_lines.len() * 2);
    let mut continuing = false;
    let mut in_from = false;
    for line in dockerfile.lines() {
        out.push_str(line);
        out.push('\n');
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            // Blank and comment lines neither start an instruction nor end one being continued.
            continue;
        }
        if !continuing {
            in_from = t.split_whitespace().next().is_some_and(|w| w.eq_ignore_ascii_case("FROM"));
        }
        continuing = t.ends_with(escape);
        if !continuing && in_from {
            out.push_str(&arg_lines);
            in_from = false;
        }
    }
    out
}

/// The escape character set by a `# escape=` parser directive (only valid before anything else), else `\`.
fn escape_char(dockerfile: &str) -> char {
    for line in dockerfile.lines() {
        let Some(directive) = line.trim().strip_prefix('#') else { break };
        let Some((key, value)) = directive.split_once('=') else { break };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            break;
        }
        if key.eq_ignore_ascii_case("escape") {
            if let Some(c) = value.trim().chars().next() {
                return c;
            }
        }
    }
    '\\'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_args_follow_every_from() {
        let args = [("A", "1"), ("B", "2")];
        let df =
            "# syntax=docker/dockerfile:1\nARG V=1\nFROM img:1 AS base\nRUN echo\nfrom \\\n  other\n# c\nCOPY a b\n";
        let out = with_build_args(df, &args);
        assert_eq!(
            out,
            "# syntax=docker/dockerfile:1\nARG V=1\nFROM img:1 AS base\nARG A=1 B=2\nRUN echo\nfrom \\\n  \
             other\nARG A=1 B=2\n# c\nCOPY a b\n"
        );
        // A comment inside a continued FROM does not end it.
        let out = with_build_args("FROM \\\n# note\n  img\nRUN x\n", &[("A", "1")]);
        assert_eq!(out, "FROM \\\n# note\n  img\nARG A=1\nRUN x\n");
        // Another escape character.
        let out = with_build_args("# escape=`\nFROM `\n img\nRUN a \\\n", &[("A", "1")]);
        assert_eq!(out, "# escape=`\nFROM `\n img\nARG A=1\nRUN a \\\n");
        assert_eq!(with_build_args("RUN x\n", &args), "RUN x\n");
        assert_eq!(with_build_args("FROM x\n", &[]), "FROM x\n");
    }

    #[test]
    fn stderr_colouring_is_dropped() {
        assert_eq!(uncoloured("\u{1b}[91mERROR: x\n\u{1b}[0m"), "ERROR: x\n");
        assert_eq!(uncoloured("plain"), "plain");
    }

    #[test]
    fn layer_ids_are_read_from_the_log() {
        assert_eq!(layer_id(" ---> 0123456789ab"), Some("0123456789ab"));
        assert_eq!(layer_id(" ---> Running in 0123456789ab"), None);
        assert_eq!(layer_id(" ---> Using cache"), None);
        assert_eq!(layer_id("Step 1/2 : FROM x"), None);
    }

    #[test]
    fn context_holds_the_workspace_and_the_rewritten_dockerfile() {
        let files = vec![
            WorkspaceFile { path: DOCKERFILE.into(), content: b"FROM ouro-python\n".to_vec() },
            WorkspaceFile { path: "app/main.py".into(), content: b"print(1)\n".to_vec() },
            WorkspaceFile { path: "run.sh".into(), content: b"#!/bin/sh\n".to_vec() },
        ];
        let bytes = context_tar(&files, Some("echo hi"), "FROM ouro-python:latest\n").expect("tar");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            let mode = entry.header().mode().expect("mode");
            let mut content = String::new();
            std::io::Read::read_to_string(&mut entry, &mut content).expect("read");
            seen.push((path, mode, content));
        }
        assert_eq!(
            seen,
            vec![
                ("Dockerfile".to_string(), 0o644, "FROM ouro-python:latest\n".to_string()),
                ("app/main.py".to_string(), 0o644, "print(1)\n".to_string()),
                ("run.sh".to_string(), 0o755, "#!/bin/sh\n".to_string()),
                ("job".to_string(), 0o644, "echo hi".to_string()),
            ]
        );
        let bad = vec![WorkspaceFile { path: "../x".into(), content: vec![] }];
        assert!(context_tar(&bad, None, "FROM x\n").is_err());
    }
}
