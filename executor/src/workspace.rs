//! The per-job host directory that becomes the container's `/workspace`.

use std::io::{self, Write};
use std::os::unix::fs::{fchown, lchown, DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ouro_core::workspace::{check_path, WorkspaceFile};

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
    /// Creates a fresh directory for `job_id` holding the workspace `files` and the script (when given), all
    /// owned by the sandbox user (the job must be able to write next to its files; nothing else on the host is its
    /// to write). Needs root for the chown. `files` must have passed [`ouro_core::workspace::check_files`].
    pub fn create(
        work_dir: &Path,
        job_id: &str,
        script: Option<(&str, Launch)>,
        files: &[WorkspaceFile],
    ) -> Result<Self, WorkspaceError> {
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
        lchown(&dir.path, Some(SANDBOX_UID), Some(SANDBOX_GID))
            .map_err(WorkspaceError::at("give uid 65534 (the executor must run as root)", &dir.path))?;

        for f in files {
            // Checked at the API already; a path that slipped through must still never leave the directory.
            check_path(&f.path)
                .map_err(|e| WorkspaceError::at("accept", Path::new(&f.path))(io::Error::other(e.to_string())))?;
            write_new(&dir.path, &f.path, &f.content, file_mode(&f.content))?;
        }
        if let Some((script, launch)) = script {
            write_new(&dir.path, SCRIPT_NAME, script.as_bytes(), launch.file_mode())?;
        }
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

/// Files that name their interpreter (`#!`) are made executable, like a script job's script.
pub fn file_mode(content: &[u8]) -> u32 {
    if content.starts_with(b"#!") {
        0o755
    } else {
        0o644
    }
}

/// Writes `relative` (a checked path) under `root`, creating its parent directories; every directory and the
/// file belong to the sandbox user. Nothing existing is followed or overwritten: directories are made one
/// component at a time and must be real directories, and the file is created exclusively (which refuses a
/// symlink in its place).
fn write_new(root: &Path, relative: &str, content: &[u8], mode: u32) -> Result<(), WorkspaceError> {
    let (mut file, path) = create_new_file(root, relative, mode)?;
    file.write_all(content).map_err(WorkspaceError::at("write", &path))?;
    Ok(())
}

/// Creates `relative` (a checked path) under `root` for writing, with the rules of [`write_new`]: parents made
/// one component at a time and never followed through a symlink, the file created exclusively, all owned by the
/// sandbox user. Answers the open file and its host path.
pub fn create_new_file(root: &Path, relative: &str, mode: u32) -> Result<(std::fs::File, PathBuf), WorkspaceError> {
    let components: Vec<&str> = relative.split('/').collect();
    let (name, parents) = components.split_last().unwrap_or((&"", &[]));
    let mut dir = root.to_path_buf();
    for part in parents {
        dir.push(part);
        match std::fs::DirBuilder::new().mode(0o755).create(&dir) {
            Ok(()) => {
                lchown(&dir, Some(SANDBOX_UID), Some(SANDBOX_GID)).map_err(WorkspaceError::at("chown", &dir))?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let meta = std::fs::symlink_metadata(&dir).map_err(WorkspaceError::at("inspect", &dir))?;
                if !meta.file_type().is_dir() {
                    return Err(WorkspaceError::at("create the directory", &dir)(io::Error::other(
                        "a file of that name is in the way",
                    )));
                }
            }
            Err(e) => return Err(WorkspaceError::at("create", &dir)(e)),
        }
    }
    let path = dir.join(name);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(WorkspaceError::at("create", &path))?;
    // The umask may have narrowed the mode given at creation.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(WorkspaceError::at("set the mode of", &path))?;
    fchown(&file, Some(SANDBOX_UID), Some(SANDBOX_GID)).map_err(WorkspaceError::at("chown", &path))?;
    Ok((file, path))
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

    fn file(path: &str, content: &str) -> WorkspaceFile {
        WorkspaceFile { path: path.into(), content: content.as_bytes().to_vec() }
    }

    #[test]
    fn creates_and_removes_the_job_dir() {
        let work = std::env::temp_dir().join(format!("ouro-ws-test-{}", std::process::id()));
        let files = [file("main.py", "print(1)\n"), file("pkg/sub/run.sh", "#!/bin/sh\necho\n"), file("pkg/a", "")];
        let made = JobDir::create(&work, "job-a", Some(("echo hi\n", Launch::Bash)), &files);
        // Without root the chown fails: that is the documented requirement, and the dir must be cleaned anyway.
        match made {
            Ok(dir) => {
                let script = dir.path().join(SCRIPT_NAME);
                assert_eq!(std::fs::read_to_string(&script).ok().as_deref(), Some("echo hi\n"));
                let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).ok();
                assert_eq!(read("main.py").as_deref(), Some("print(1)\n"));
                assert_eq!(read("pkg/a").as_deref(), Some(""));
                let mode = |p: &str| std::fs::metadata(dir.path().join(p)).map(|m| m.permissions().mode() & 0o777);
                assert_eq!(mode("pkg/sub/run.sh").ok(), Some(0o755));
                assert_eq!(mode("main.py").ok(), Some(0o644));
                let path = dir.path().to_path_buf();
                drop(dir);
                assert!(!path.exists());
            }
            Err(_) => assert!(!jobs_root(&work).join("job-a").exists()),
        }
        let _ = std::fs::remove_dir_all(&work);
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_symlink_is_never_followed() {
        let root = std::env::temp_dir().join(format!("ouro-ws-symlink-{}", std::process::id()));
        let outside = std::env::temp_dir().join(format!("ouro-ws-outside-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).ok();
        std::fs::create_dir_all(&outside).ok();
        std::os::unix::fs::symlink(&outside, root.join("d")).ok();
        std::os::unix::fs::symlink(outside.join("f"), root.join("f")).ok();
        assert!(write_new(&root, "d/x", b"x", 0o644).is_err(), "a symlinked directory is refused");
        assert!(write_new(&root, "f", b"x", 0o644).is_err(), "a symlinked file is refused");
        assert!(!outside.join("x").exists() && !outside.join("f").exists());
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_dir_all(&outside);
    }
}
