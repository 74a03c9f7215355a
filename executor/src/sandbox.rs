//! The container a job runs in: every isolation and resource setting in one pure function, so it can be read
//! and tested without an engine.

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType};

/// Where the job's files live inside the container (bind-mounted, writable, the working directory).
pub const WORKSPACE: &str = "/workspace";
/// File name of the script inside the workspace.
pub const SCRIPT_NAME: &str = "job";
/// `nobody:nogroup` in Debian images: no home, no privileges, owns nothing outside the workspace.
pub const SANDBOX_UID: u32 = 65534;
pub const SANDBOX_GID: u32 = 65534;
/// Enough for a build or a pool of workers, too few for a fork bomb to hurt the host.
pub const PIDS_LIMIT: i64 = 256;
/// The public API promises 1.6 GB of memory per CPU (decimal GB, as advertised).
pub const MEMORY_PER_CPU_BYTES: i64 = 1_600_000_000;
pub const NANO_CPUS_PER_CPU: i64 = 1_000_000_000;
/// `/tmp` is the only writable place besides the workspace; `exec` because scripts commonly build and run
/// helpers there (the root filesystem already stops persistence).
pub const TMPFS_OPTIONS: &str = "size=100m,mode=1777,exec";
/// Labels on every job container: which job, and which executor owns it (for the startup sweep of leftovers).
pub const LABEL_JOB_ID: &str = "ouro.job_id";
pub const LABEL_EXECUTOR: &str = "ouro.executor";

/// How the script is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// It names its own interpreter (`#!`): made executable and exec'd.
    Shebang,
    /// Plain shell text: run with bash.
    Bash,
}

impl Launch {
    pub fn for_script(script: &str) -> Self {
        if script.starts_with("#!") {
            Launch::Shebang
        } else {
            Launch::Bash
        }
    }

    /// File mode of the script on the host.
    pub fn file_mode(self) -> u32 {
        match self {
            Launch::Shebang => 0o755,
            Launch::Bash => 0o644,
        }
    }

    /// The container's command.
    pub fn command(self) -> Vec<String> {
        let script = format!("{WORKSPACE}/{SCRIPT_NAME}");
        match self {
            // Exec'd through sh rather than as the container's own entry: when the interpreter the shebang names
            // does not exist, the engine would fail `start` with an opaque runtime error that looks like our
            // fault; sh reports it on stderr and exits 127, which is the user's error it is. `exec` replaces sh,
            // so the script is still the process that runs.
            Launch::Shebang => vec!["/bin/sh".into(), "-c".into(), "exec \"$0\"".into(), script],
            Launch::Bash => vec!["/bin/bash".into(), script],
        }
    }
}

/// What the container runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// The job's script, in the workspace.
    Script(Launch),
    /// A command line given by the job (`entrypoint`), run with `/bin/sh -c` in the workspace.
    Shell(&'a str),
    /// The image's own ENTRYPOINT/CMD in its own WORKDIR (an image built from the job's Dockerfile).
    Image,
}

impl Command<'_> {
    /// The container's `(entrypoint, cmd)`: ours replace the image's entirely, except for [`Command::Image`].
    fn entrypoint_and_cmd(self) -> (Option<Vec<String>>, Option<Vec<String>>) {
        match self {
            Command::Script(launch) => (Some(vec![]), Some(launch.command())),
            Command::Shell(line) => (Some(vec![]), Some(vec!["/bin/sh".into(), "-c".into(), line.into()])),
            Command::Image => (None, None),
        }
    }

    fn working_dir(self) -> Option<String> {
        match self {
            Command::Script(_) | Command::Shell(_) => Some(WORKSPACE.into()),
            Command::Image => None,
        }
    }
}

/// CPU and memory limits for a job with `cpus` CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub nano_cpus: i64,
    pub memory_bytes: i64,
}

impl Limits {
    pub fn for_cpus(cpus: u32) -> Self {
        let cpus = i64::from(cpus);
        Limits { nano_cpus: cpus * NANO_CPUS_PER_CPU, memory_bytes: cpus * MEMORY_PER_CPU_BYTES }
    }
}

/// What varies between job containers.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    pub job_id: &'a str,
    pub engine_image: &'a str,
    /// Host directory bind-mounted at [`WORKSPACE`].
    pub job_dir: &'a Path,
    pub cpus: u32,
    pub command: Command<'a>,
    /// Value of [`LABEL_EXECUTOR`].
    pub executor_id: &'a str,
    /// Host directory of the wallet's storage, bind-mounted read-write at `/scratch` (`mount_storage` jobs).
    pub scratch_dir: Option<&'a Path>,
    /// Host directory bind-mounted read-write at `/outputs`: what the job leaves there is returned.
    pub outputs_dir: Option<&'a Path>,
}

fn bind(source: &Path, target: &str) -> Mount {
    Mount {
        typ: Some(MountType::BIND),
        source: Some(source.to_string_lossy().into_owned()),
        target: Some(target.into()),
        read_only: Some(false),
        ..Default::default()
    }
}

/// Engine-side container name of a job (job ids are validated to `[A-Za-z0-9_-]` on the way in).
pub fn container_name(job_id: &str) -> String {
    format!("ouro-job-{job_id}")
}

pub fn container_spec(input: &SpecInput<'_>) -> ContainerCreateBody {
    let limits = Limits::for_cpus(input.cpus);
    let host_config = HostConfig {
        nano_cpus: Some(limits.nano_cpus),
        memory: Some(limits.memory_bytes),
        // Equal to `memory`: no swap, so hitting the limit is an OOM kill, not a crawl.
        memory_swap: Some(limits.memory_bytes),
        pids_limit: Some(PIDS_LIMIT),
        network_mode: Some("none".into()),
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([("/tmp".to_string(), TMPFS_OPTIONS.to_string())])),
        mounts: Some(
            std::iter::once(bind(input.job_dir, WORKSPACE))
                .chain(input.scratch_dir.map(|d| bind(d, ouro_core::storage::SCRATCH_MOUNT)))
                .chain(input.outputs_dir.map(|d| bind(d, ouro_core::storage::OUTPUTS_MOUNT)))
                .collect(),
        ),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        // Output is read through attach; a log driver would store a second copy (and is 4x slower on floods).
        log_config: Some(HostConfigLogConfig { typ: Some("none".into()), config: None }),
        // We read the exit state (OOMKilled) after exit and remove the container ourselves.
        auto_remove: Some(false),
        // A tiny init as PID 1 reaps orphaned children, which otherwise pile up against the pids limit.
        init: Some(true),
        ..Default::default()
    };
    // For our commands, any entrypoint the image carries is cleared: the command is the whole story. A built
    // image keeps its ENTRYPOINT/CMD and WORKDIR, and still runs as nobody (its USER is not honoured).
    let (entrypoint, cmd) = input.command.entrypoint_and_cmd();
    ContainerCreateBody {
        image: Some(input.engine_image.into()),
        cmd,
        entrypoint,
        user: Some(format!("{SANDBOX_UID}:{SANDBOX_GID}")),
        working_dir: input.command.working_dir(),
        hostname: Some("sandbox".into()),
        // With networking disabled the engine skips its network sandbox entirely and the runtime gives the
        // container a fresh namespace with only loopback (up): the same isolation as mode "none", ~140 ms
        // faster per start here. Mode "none" stays set as well, so neither setting alone decides.
        network_disabled: Some(true),
        // nobody's passwd home does not exist; tools that write caches (pip, npm) need a writable HOME.
        env: Some(vec![format!("HOME={WORKSPACE}")]),
        attach_stdin: Some(false),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(false),
        tty: Some(false),
        labels: Some(HashMap::from([
            (LABEL_JOB_ID.to_string(), input.job_id.to_string()),
            (LABEL_EXECUTOR.to_string(), input.executor_id.to_string()),
        ])),
        host_config: Some(host_config),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_for(cpus: u32, command: Command<'_>) -> ContainerCreateBody {
        container_spec(&SpecInput {
            job_id: "job-1",
            engine_image: "ouro-python:latest",
            job_dir: Path::new("/tmp/ouro-executor/job-1"),
            cpus,
            command,
            executor_id: "/tmp/ouro-executor",
            scratch_dir: None,
            outputs_dir: None,
        })
    }

    fn spec(cpus: u32, script: &str) -> ContainerCreateBody {
        spec_for(cpus, Command::Script(Launch::for_script(script)))
    }

    #[test]
    fn commands_and_working_dirs() {
        let s = spec(1, "echo hi");
        assert_eq!(s.entrypoint, Some(vec![]));
        assert_eq!(s.cmd, Some(vec!["/bin/bash".to_string(), "/workspace/job".to_string()]));
        let s = spec_for(1, Command::Shell("python3 main.py"));
        assert_eq!(s.entrypoint, Some(vec![]));
        assert_eq!(s.cmd, Some(vec!["/bin/sh".into(), "-c".into(), "python3 main.py".into()]));
        assert_eq!(s.working_dir.as_deref(), Some(WORKSPACE));
        let s = spec_for(1, Command::Image);
        assert_eq!((s.entrypoint, s.cmd, s.working_dir), (None, None, None), "the image's own");
        assert_eq!(s.user.as_deref(), Some("65534:65534"), "built images still run as nobody");
        let hc = s.host_config.unwrap_or_default();
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
    }

    #[test]
    fn launch_follows_the_shebang() {
        assert_eq!(Launch::for_script("#!/usr/bin/env python3\nprint(1)"), Launch::Shebang);
        assert_eq!(Launch::for_script("echo hi"), Launch::Bash);
        assert_eq!(Launch::for_script(" #!/bin/sh"), Launch::Bash);
        assert_eq!(Launch::Bash.command(), ["/bin/bash", "/workspace/job"]);
        assert_eq!(Launch::Shebang.command().last().map(String::as_str), Some("/workspace/job"));
        assert_eq!(Launch::Shebang.file_mode() & 0o111, 0o111);
        assert_eq!(Launch::Bash.file_mode() & 0o111, 0);
    }

    #[test]
    fn limits_scale_with_cpus() {
        let l = Limits::for_cpus(2);
        assert_eq!(l.nano_cpus, 2_000_000_000);
        assert_eq!(l.memory_bytes, 3_200_000_000);
        let hc = spec(2, "true").host_config.unwrap_or_default();
        assert_eq!(hc.nano_cpus, Some(2_000_000_000));
        assert_eq!(hc.memory, Some(3_200_000_000));
        assert_eq!(hc.memory_swap, hc.memory, "no swap");
        assert_eq!(hc.pids_limit, Some(PIDS_LIMIT));
    }

    #[test]
    fn sandbox_is_locked_down() {
        let body = spec(1, "echo hi");
        assert_eq!(body.user.as_deref(), Some("65534:65534"));
        assert_eq!(body.working_dir.as_deref(), Some(WORKSPACE));
        assert_eq!(body.tty, Some(false));
        let hc = body.host_config.clone().unwrap_or_default();
        assert_eq!(body.network_disabled, Some(true));
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(hc.cap_add, None);
        assert_eq!(hc.privileged, None);
        assert_eq!(hc.security_opt, Some(vec!["no-new-privileges".to_string()]));
        assert_eq!(hc.auto_remove, Some(false));
        assert_eq!(hc.log_config.and_then(|l| l.typ).as_deref(), Some("none"));
        assert_eq!(hc.tmpfs.and_then(|t| t.get("/tmp").cloned()).as_deref(), Some(TMPFS_OPTIONS));
        assert_eq!(hc.port_bindings, None);
        assert_eq!(hc.binds, None);
    }

    #[test]
    fn workspace_is_the_only_mount() {
        let hc = spec(1, "true").host_config.unwrap_or_default();
        let mounts = hc.mounts.unwrap_or_default();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].typ, Some(MountType::BIND));
        assert_eq!(mounts[0].source.as_deref(), Some("/tmp/ouro-executor/job-1"));
        assert_eq!(mounts[0].target.as_deref(), Some(WORKSPACE));
        assert_eq!(mounts[0].read_only, Some(false));
    }

    #[test]
    fn scratch_and_outputs_are_bind_mounts_when_given() {
        let input = SpecInput {
            job_id: "job-1",
            engine_image: "img",
            job_dir: Path::new("/w/job-1"),
            cpus: 1,
            command: Command::Image,
            executor_id: "/w",
            scratch_dir: Some(Path::new("/w/job-1.scratch")),
            outputs_dir: Some(Path::new("/w/job-1.outputs")),
        };
        let mounts = container_spec(&input).host_config.and_then(|h| h.mounts).unwrap_or_default();
        let targets: Vec<_> = mounts.iter().map(|m| (m.source.as_deref(), m.target.as_deref(), m.read_only)).collect();
        assert_eq!(
            targets,
            [
                (Some("/w/job-1"), Some(WORKSPACE), Some(false)),
                (Some("/w/job-1.scratch"), Some("/scratch"), Some(false)),
                (Some("/w/job-1.outputs"), Some("/outputs"), Some(false)),
            ]
        );
    }

    #[test]
    fn labels_name_job_and_executor() {
        let labels = spec(1, "true").labels.unwrap_or_default();
        assert_eq!(labels.get(LABEL_JOB_ID).map(String::as_str), Some("job-1"));
        assert_eq!(labels.get(LABEL_EXECUTOR).map(String::as_str), Some("/tmp/ouro-executor"));
        assert_eq!(container_name("abc"), "ouro-job-abc");
    }
}
