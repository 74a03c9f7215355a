//! Background services: each started in its own process group with its output in `.ouro/logs/NAME.log` and
//! its pid in `.ouro/run/NAME.pid`, so `down` can stop it and everything it spawned, and nothing else.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{fail, paths, Result};

fn pid_file(name: &str) -> PathBuf {
    paths::run().join(format!("{name}.pid"))
}

pub fn log_file(name: &str) -> PathBuf {
    paths::logs().join(format!("{name}.log"))
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; its state letter tells it apart.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')).unwrap_or(false),
        Err(_) => false,
    }
}

/// The pid this tool recorded for a service, alive or not.
pub fn recorded(name: &str) -> Option<u32> {
    fs::read_to_string(pid_file(name)).ok()?.trim().parse().ok()
}

/// The pid of a service this tool started and that is still alive.
pub fn running(name: &str) -> Option<u32> {
    let pid: u32 = fs::read_to_string(pid_file(name)).ok()?.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

/// Starts `cmd` detached (own process group, stdin closed, output to the service's log).
pub fn spawn(name: &str, mut cmd: Command) -> Result<u32> {
    fs::create_dir_all(paths::logs()).map_err(|e| crate::Error(format!("creating {}: {e}", paths::logs().display())))?;
    fs::create_dir_all(paths::run()).map_err(|e| crate::Error(format!("creating {}: {e}", paths::run().display())))?;
    let log = fs::File::create(log_file(name))
        .map_err(|e| crate::Error(format!("creating the log of {name}: {e}")))?;
    let err = log.try_clone().map_err(|e| crate::Error(format!("log of {name}: {e}")))?;
    cmd.stdin(Stdio::null()).stdout(log).stderr(err).process_group(0);
    let child = cmd.spawn().map_err(|e| crate::Error(format!("starting {name}: {e}")))?;
    let pid = child.id();
    fs::write(pid_file(name), pid.to_string()).map_err(|e| crate::Error(format!("pid file of {name}: {e}")))?;
    // The child is deliberately not waited for: it outlives this process.
    std::mem::forget(child);
    Ok(pid)
}

/// Stops a service started by [`spawn`]: SIGTERM to its group, SIGKILL after a grace period.
pub fn stop(name: &str) -> Result<bool> {
    let Some(pid) = running(name) else {
        let _ = fs::remove_file(pid_file(name));
        return Ok(false);
    };
    let signal = |sig: &str| {
        let _ = Command::new("kill").args([sig, "--", &format!("-{pid}")]).stderr(Stdio::null()).status();
    };
    signal("-TERM");
    if !crate::probe::wait_until(Duration::from_secs(10), || !alive(pid)) {
        signal("-KILL");
        if !crate::probe::wait_until(Duration::from_secs(5), || !alive(pid)) {
            return fail(format!("{name} (pid {pid}) did not stop"));
        }
    }
    let _ = fs::remove_file(pid_file(name));
    Ok(true)
}

/// The last lines of a service's log, for error messages.
pub fn log_tail(name: &str, lines: usize) -> String {
    let text = fs::read_to_string(log_file(name)).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs a command to completion in the foreground, failing with its name if it fails.
pub fn run(what: &str, cmd: &mut Command) -> Result<()> {
    let status = cmd.status().map_err(|e| crate::Error(format!("{what}: could not start: {e}")))?;
    if !status.success() {
        return fail(format!("{what} failed ({status})"));
    }
    Ok(())
}

/// Runs a command and returns its stdout, failing with stderr.
pub fn output(what: &str, cmd: &mut Command) -> Result<String> {
    let out = cmd.output().map_err(|e| crate::Error(format!("{what}: could not start: {e}")))?;
    if !out.status.success() {
        return fail(format!("{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
