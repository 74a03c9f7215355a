//! What a job leaves in `/outputs` is returned: walked without following links, bounded by the assignment's
//! [`OutputLimits`], hashed and streamed to the edge (`PUT /internal/jobs/{id}/outputs`). The walk is shared
//! with the storage write-back (`storage.rs`).
//!
//! The walk runs after the container is gone, so nothing changes underneath it; still, every entry is read with
//! `lstat` and every file opened with `O_NOFOLLOW`: a symlink planted by the job (to `/etc/passwd`, or to a
//! directory outside) is recorded as skipped, never read.

use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ouro_core::storage::{check_file_path, OutputFile, OutputLimits, Skipped, StoredFile};
use sha2::{Digest, Sha256};

use crate::storage::{EdgeFiles, SyncError};

/// Most directory entries one walk looks at: a job that makes millions of files does not make us walk them all.
const MAX_WALK_ENTRIES: usize = 100_000;
/// How many files beyond the output limit are still named one by one in `output_files_skipped`.
const NAMED_OVER_LIMIT: u64 = 1000;

/// A regular file found by a walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Relative path (`/`-separated), valid by the workspace path rules.
    pub path: String,
    pub host_path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

impl Found {
    pub fn stored(&self) -> StoredFile {
        StoredFile { path: self.path.clone(), size: self.size, sha256: self.sha256.clone() }
    }
}

/// What a walk found.
#[derive(Debug, Default)]
pub struct Walk {
    /// Regular files, sorted by path.
    pub found: Vec<Found>,
    /// Links, special files, bad names, sorted by path.
    pub skipped: Vec<Skipped>,
    /// The walk stopped early (more than `max_files` files, or [`MAX_WALK_ENTRIES`] entries): what it did not
    /// look at is not in `found` — so a write-back must not read their absence as deletions.
    pub truncated: bool,
}

/// Every regular file under `root` (up to `max_files` + 1 of them), and what was skipped.
pub fn walk(root: &Path, max_files: u64) -> io::Result<Walk> {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    let mut pending = vec![(root.to_path_buf(), String::new())];
    let mut seen = 0usize;
    while let Some((dir, prefix)) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            seen += 1;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            if seen > MAX_WALK_ENTRIES || found.len() as u64 > max_files {
                skipped.push(Skipped {
                    path: rel,
                    reason: "too many entries; this one and the rest were not looked at".into(),
                });
                return Ok(finish(found, skipped, true));
            }
            let meta = std::fs::symlink_metadata(entry.path())?;
            let kind = meta.file_type();
            if kind.is_symlink() {
                skipped.push(Skipped { path: rel, reason: "a symbolic link; links are not followed".into() });
            } else if kind.is_dir() {
                pending.push((entry.path(), rel));
            } else if !kind.is_file() {
                skipped.push(Skipped { path: rel, reason: "not a regular file".into() });
            } else if let Err(e) = check_file_path(&rel) {
                skipped.push(Skipped { path: rel, reason: format!("path {e}") });
            } else {
                match hash_file(&entry.path()) {
                    Ok((size, sha256)) => found.push(Found { path: rel, host_path: entry.path(), size, sha256 }),
                    Err(e) => skipped.push(Skipped { path: rel, reason: format!("could not be read: {e}") }),
                }
            }
        }
    }
    Ok(finish(found, skipped, false))
}

fn finish(mut found: Vec<Found>, mut skipped: Vec<Skipped>, truncated: bool) -> Walk {
    found.sort_by(|a, b| a.path.cmp(&b.path));
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Walk { found, skipped, truncated }
}

/// Opens a file the job left, refusing a symlink in its place.
pub fn open_no_follow(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// Size and lowercase hex SHA-256 of a file, read in chunks.
pub fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut file = open_no_follow(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// Which of `found` fit `limits` (in path order) and which are over them.
pub fn within_limits(found: Vec<Found>, limits: OutputLimits) -> (Vec<Found>, Vec<Skipped>) {
    let mut kept = Vec::new();
    let mut over = Vec::new();
    let mut bytes = 0u64;
    for f in found {
        if kept.len() as u64 >= limits.max_files {
            over.push(Skipped { path: f.path, reason: format!("over the limit of {} output files", limits.max_files) });
        } else if bytes + f.size > limits.max_bytes {
            over.push(Skipped {
                path: f.path,
                reason: format!("over the limit of {} bytes of output files in total", limits.max_bytes),
            });
        } else {
            bytes += f.size;
            kept.push(f);
        }
    }
    (kept, over)
}

/// Walks `dir` and streams what fits to the edge. Answers the returned files and the skipped ones.
pub async fn collect(
    edge: &EdgeFiles,
    job_id: &str,
    dir: &Path,
    limits: OutputLimits,
) -> Result<(Vec<OutputFile>, Vec<Skipped>), SyncError> {
    let root = dir.to_path_buf();
    let Walk { found, mut skipped, .. } =
        tokio::task::spawn_blocking(move || walk(&root, limits.max_files + NAMED_OVER_LIMIT))
            .await
            .map_err(|e| SyncError::Local(io::Error::other(e.to_string())))?
            .map_err(SyncError::Local)?;
    let (kept, over) = within_limits(found, limits);
    skipped.extend(over);
    let mut files = Vec::with_capacity(kept.len());
    for f in kept {
        edge.upload(&ouro_core::storage::output_upload_path(job_id), &f).await?;
        files.push(OutputFile { path: f.path, size: f.size, sha256: f.sha256 });
    }
    Ok((files, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ouro-outputs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok();
        dir
    }

    #[test]
    fn walk_skips_links_and_bad_names_and_hashes_files() {
        let root = temp("walk");
        let outside = temp("walk-outside");
        std::fs::write(outside.join("secret"), "host secret").ok();
        std::fs::create_dir_all(root.join("sub")).ok();
        std::fs::write(root.join("a.txt"), "abc").ok();
        std::fs::write(root.join("sub/b.txt"), "").ok();
        std::fs::write(root.join("bad$name"), "x").ok();
        std::os::unix::fs::symlink("/etc/passwd", root.join("passwd")).ok();
        std::os::unix::fs::symlink(&outside, root.join("dirlink")).ok();
        let Walk { found, skipped, truncated } = walk(&root, 100).expect("walk");
        assert!(!truncated);
        let paths: Vec<_> = found.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.txt", "sub/b.txt"]);
        assert_eq!(found[0].size, 3);
        assert_eq!(found[0].sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let skipped: Vec<_> = skipped.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(skipped, ["bad$name", "dirlink", "passwd"]);
        assert!(open_no_follow(&root.join("passwd")).is_err(), "a symlink is never opened");
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_dir_all(&outside);
    }

    #[test]
    fn a_walk_stops_after_max_files_and_says_so() {
        let root = temp("many");
        for i in 0..5 {
            std::fs::write(root.join(format!("f{i}")), "x").ok();
        }
        let w = walk(&root, 2).expect("walk");
        assert!(w.truncated && w.found.len() == 3, "{w:?}");
        assert!(!walk(&root, 5).expect("walk").truncated);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn limits_keep_files_in_path_order() {
        let f = |p: &str, size| Found { path: p.into(), host_path: PathBuf::new(), size, sha256: String::new() };
        let (kept, over) = within_limits(
            vec![f("a", 5), f("b", 6), f("c", 1), f("d", 1)],
            OutputLimits { max_files: 2, max_bytes: 8 },
        );
        assert_eq!(kept.iter().map(|k| k.path.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(over.iter().map(|k| k.path.as_str()).collect::<Vec<_>>(), ["b", "d"]);
    }
}
