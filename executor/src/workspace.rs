//! The per-job host directory that becomes the container's `/workspace`.

use std::io;
use std::os::unix::fs::{chown, DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::sandbox::{Launch, SANDBOX_GID, SANDBOX_UID, SCRIPT_NAME};

#[derive(Debug, thiserror::Error)]
#[error("could not {action} {}: {source}", path.display())]
pub struct WorkspaceError {
    action: &'static str,
    path: PathBuf,
    source: io::Error,
}

impl WorkspaceError {
    fn at<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WorkspaceError + 'a {
        move |source| WorkspaceError { action, path: path.to_path_buf(), source }
    }
}

/// Parent of all job directories, under the executor's work dir. Everything in it belongs to us, so the startup
/// sweep may delete it wholesale without ever touching anything else in a misconfigured work dir.
pub fn jobs_root(work_dir: &Path) -> PathBuf {
    work_dir.join("jobs")
}

/// A job's directory; removed when dropped unless [`JobDir::remove`] already did it.
#[derive(Debug)]
pub struct JobDir {
    path: PathBuf,
    armed: bool,
}

impl JobDir {
    /// Creates a fresh directory for `job_id` holding the script, all owned by the sandbox user (the job must be
    /// able to write next to its script; nothing else on the host is its to write). Needs root for the chown.
    pub fn create(work_dir: &Path, job_id: &str, script: &str, launch: Launch) -> Result<Self, WorkspaceError> {
        let root = jobs_root(work_dir);
        std::fs::create_dir_all(&root).map_err(WorkspaceError::at("create", &root))?;
        let path = root.join(job_id);
        // A leftover from a crash with the same id must not leak into this run.
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(WorkspaceError::at("clear the old", &path)(e)),
        }
        std::fs::DirBuilder::new().mode(0o700).create(&path).map_err(WorkspaceError::at("create", &path))?;
        // Armed from here: any failure below still cleans up.
        let dir = JobDir { path, armed: true };
        chown(&dir.path, Some(SANDBOX_UID), Some(SANDBOX_GID))
            .map_err(WorkspaceError::at("give uid 65534 (the executor must run as root)", &dir.path))?;

        let file = dir.path.join(SCRIPT_NAME);
        std::fs::write(&file, script).map_err(WorkspaceError::at("write", &file))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(launch.file_mode()))
            .map_err(WorkspaceError::at("set the mode of", &file))?;
        chown(&file, Some(SANDBOX_UID), Some(SANDBOX_GID)).map_err(WorkspaceError::at("chown", &file))?;
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory and whatever the job left in it (off the async threads: it can be large).
    pub async fn remove(mut self) -> Result<(), WorkspaceError> {
        self.armed = false;
        let path = self.path.clone();
        let result = tokio::task::spawn_blocking(move || remove_tree(&path)).await;
        match result {
            Ok(r) => r.map_err(WorkspaceError::at("remove", &self.path)),
            Err(join) => Err(WorkspaceError::at("remove", &self.path)(io::Error::other(join.to_string()))),
        }
    }
}

impl Drop for JobDir {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = remove_tree(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove job directory");
            }
        }
    }
}

fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Deletes every job directory (called at startup, when no job of ours can be running).
pub fn clear_jobs_root(work_dir: &Path) -> Result<(), WorkspaceError> {
    let root = jobs_root(work_dir);
    remove_tree(&root).map_err(WorkspaceError::at("clear", &root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_and_removes_the_job_dir() {
        let work = std::env::temp_dir().join(format!("ouro-ws-test-{}", std::process::id()));
        let made = JobDir::create(&work, "job-a", "echo hi\n", Launch::Bash);
        // Without root the chown fails: that is the documented requirement, and the dir must be cleaned anyway.
        match made {
            Ok(dir) => {
                let script = dir.path().join(SCRIPT_NAME);
                assert_eq!(std::fs::read_to_string(&script).ok().as_deref(), Some("echo hi\n"));
                let path = dir.path().to_path_buf();
                drop(dir);
                assert!(!path.exists());
            }
            Err(_) => assert!(!jobs_root(&work).join("job-a").exists()),
        }
        let _ = std::fs::remove_dir_all(&work);
    }
}
