//! A wallet's persistent storage (`/scratch`) and a job's output files (`/outputs`): the rules both sides agree
//! on, with no I/O. The executor walks the job's folders and plans what to send; the edge checks the same plan
//! against the wallet's records before it commits. Paths follow the workspace rules
//! ([`crate::workspace::check_path`]): one notion of a safe relative path everywhere.
//!
//! Sync protocol (executor → edge, each call HMAC-signed like the other `/internal` calls; the streamed ones sign
//! the path with its query and an empty body, and the edge checks the body against the signed size and sha256):
//! 1. `POST /internal/storage/{job}/manifest` → [`Manifest`]: the wallet's files and its limits.
//! 2. `GET /internal/storage/{job}/files?path=` → one file's bytes, streamed.
//! 3. After the run, `PUT /internal/storage/{job}/uploads?path=&size=&sha256=` per new or changed file, streamed
//!    to a staging object (`{upload_key}`); nothing the wallet sees changes yet.
//! 4. `POST /internal/storage/{job}/commit` [`Commit`] → [`CommitReply`]: the edge swaps every record in one D1
//!    batch, or refuses the whole commit (quota) and drops the staged objects: never a half-written storage.
//!
//! Concurrent jobs of one wallet: last writer wins per file, and a conflict is recorded — a commit whose base
//! version of a path is not the current one still applies, and the path is named in [`CommitReply::Committed`]
//! `conflicts` (and in the job's event log), so no write is lost silently.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use crate::workspace::{check_path, PathError};

/// Free tier: 1 GiB and 10,000 files per wallet.
pub const DEFAULT_QUOTA_BYTES: u64 = 1 << 30;
pub const DEFAULT_MAX_FILES: u64 = 10_000;
/// Files not read or written by any job (nor downloaded) for this long are deleted.
pub const DEFAULT_TTL_DAYS: u64 = 90;
pub const DAY_MS: u64 = 86_400_000;
/// Where the wallet's storage appears inside the container.
pub const SCRATCH_MOUNT: &str = "/scratch";
/// Where a job leaves files to return.
pub const OUTPUTS_MOUNT: &str = "/outputs";

pub fn manifest_path(job_id: &str) -> String {
    format!("/internal/storage/{job_id}/manifest")
}
pub fn file_path(job_id: &str) -> String {
    format!("/internal/storage/{job_id}/files")
}
pub fn upload_path(job_id: &str) -> String {
    format!("/internal/storage/{job_id}/uploads")
}
pub fn commit_path(job_id: &str) -> String {
    format!("/internal/storage/{job_id}/commit")
}
/// Where the executor streams one output file of a job.
pub fn output_upload_path(job_id: &str) -> String {
    format!("/internal/jobs/{job_id}/outputs")
}

/// A wallet's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub quota_bytes: u64,
    pub max_files: u64,
}

impl Default for Quota {
    fn default() -> Self {
        Quota { quota_bytes: DEFAULT_QUOTA_BYTES, max_files: DEFAULT_MAX_FILES }
    }
}

/// Which limit a plan breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaLimit {
    Bytes,
    Files,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}", self.message())]
pub struct QuotaExceeded {
    pub limit: QuotaLimit,
    /// Bytes or files the storage would hold after the job.
    pub would_be: u64,
    pub allowed: u64,
}

impl QuotaExceeded {
    pub fn message(&self) -> String {
        match self.limit {
            QuotaLimit::Bytes => format!(
                "The job's /scratch would hold {} bytes, above the wallet's storage quota of {} bytes; nothing it \
                 changed in /scratch was saved (the stored files are as they were before the job).",
                self.would_be, self.allowed
            ),
            QuotaLimit::Files => format!(
                "The job's /scratch would hold {} files, above the wallet's limit of {} files; nothing it changed \
                 in /scratch was saved (the stored files are as they were before the job).",
                self.would_be, self.allowed
            ),
        }
    }
}

/// One stored file as the executor and the edge know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    pub path: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
}

/// `POST /internal/storage/{job}/manifest` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub wallet: String,
    pub files: Vec<StoredFile>,
    pub quota: Quota,
}

/// A staged upload, ready to be committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedPut {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub upload_key: String,
}

/// `POST /internal/storage/{job}/commit` body: what the job started from and what it changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The manifest the job was given (its base versions).
    pub base: Vec<StoredFile>,
    pub puts: Vec<StagedPut>,
    pub deletes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum CommitReply {
    Committed { conflicts: Vec<String>, used_bytes: u64, file_count: u64 },
    QuotaExceeded(QuotaExceeded),
}

/// What the job's walk of a folder found that cannot be stored, and why (symlinks, special files, bad names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// What the sync did, for the job's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSummary {
    pub downloaded: u64,
    pub uploaded: u64,
    pub deleted: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
}

/// One returned output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// Bounds on what a job may return in `/outputs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputLimits {
    pub max_files: u64,
    pub max_bytes: u64,
}

impl Default for OutputLimits {
    fn default() -> Self {
        OutputLimits { max_files: 20, max_bytes: 100 * 1024 * 1024 }
    }
}

/// Everything a job produced besides its text output, carried in the `JobOutcome`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifacts {
    #[serde(default)]
    pub output_files: Vec<OutputFile>,
    /// Files left in `/outputs` that were not returned (a symlink, over a limit, a bad name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_files_skipped: Vec<Skipped>,
    /// Present for `mount_storage` jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<SyncSummary>,
}

/// Checks a stored or returned file's path: the workspace rules.
pub fn check_file_path(path: &str) -> Result<(), PathError> {
    check_path(path)
}

/// What a job changed, given the base manifest and what its folder holds after the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// New or modified files.
    pub puts: Vec<StoredFile>,
    pub deletes: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.deletes.is_empty()
    }
}

/// The diff between `base` and `after` (by content hash).
pub fn plan(base: &[StoredFile], after: &[StoredFile]) -> Plan {
    let before: BTreeMap<&str, &StoredFile> = base.iter().map(|f| (f.path.as_str(), f)).collect();
    let now: BTreeSet<&str> = after.iter().map(|f| f.path.as_str()).collect();
    let puts = after
        .iter()
        .filter(|f| before.get(f.path.as_str()).is_none_or(|b| b.sha256 != f.sha256 || b.size != f.size))
        .cloned()
        .collect();
    let deletes = base.iter().filter(|f| !now.contains(f.path.as_str())).map(|f| f.path.clone()).collect();
    Plan { puts, deletes }
}

/// The storage `current` would be after applying `puts` and `deletes`, as (bytes, files).
pub fn usage_after(current: &[StoredFile], puts: &[StoredFile], deletes: &[String]) -> (u64, u64) {
    let mut files: BTreeMap<&str, u64> = current.iter().map(|f| (f.path.as_str(), f.size)).collect();
    for d in deletes {
        files.remove(d.as_str());
    }
    for p in puts {
        files.insert(p.path.as_str(), p.size);
    }
    (files.values().sum(), files.len() as u64)
}

/// Whether a storage of `bytes` and `files` fits `quota`.
pub fn check_quota(bytes: u64, files: u64, quota: Quota) -> Result<(), QuotaExceeded> {
    if bytes > quota.quota_bytes {
        return Err(QuotaExceeded { limit: QuotaLimit::Bytes, would_be: bytes, allowed: quota.quota_bytes });
    }
    if files > quota.max_files {
        return Err(QuotaExceeded { limit: QuotaLimit::Files, would_be: files, allowed: quota.max_files });
    }
    Ok(())
}

/// Paths the commit changes whose current version is not the one the job started from: another job of the
/// wallet wrote (or deleted) them in the meantime.
pub fn conflicts(base: &[StoredFile], current: &[StoredFile], puts: &[StoredFile], deletes: &[String]) -> Vec<String> {
    let base: BTreeMap<&str, &str> = base.iter().map(|f| (f.path.as_str(), f.sha256.as_str())).collect();
    let current: BTreeMap<&str, &str> = current.iter().map(|f| (f.path.as_str(), f.sha256.as_str())).collect();
    let touched: BTreeSet<&str> =
        puts.iter().map(|p| p.path.as_str()).chain(deletes.iter().map(String::as_str)).collect();
    touched.into_iter().filter(|p| base.get(p) != current.get(p)).map(str::to_string).collect()
}

/// Accesses before this instant (ms) are too old: the file expires.
pub fn expiry_cutoff_ms(now_ms: u64, ttl_days: u64) -> u64 {
    now_ms.saturating_sub(ttl_days.saturating_mul(DAY_MS))
}

/// Whether `s` is a lowercase hex SHA-256.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Percent-decodes a URL path (`GET /api/jobs/{id}/files/{path}`); `None` for a broken escape or non-UTF-8.
pub fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str, size: u64, sha: char) -> StoredFile {
        StoredFile { path: path.into(), size, sha256: sha.to_string().repeat(64) }
    }

    #[test]
    fn plan_finds_created_modified_and_deleted() {
        let base = [f("a", 1, 'a'), f("b", 2, 'b'), f("c", 3, 'c')];
        let after = [f("a", 1, 'a'), f("b", 2, 'e'), f("d", 4, 'd')];
        let p = plan(&base, &after);
        assert_eq!(p.puts, vec![f("b", 2, 'e'), f("d", 4, 'd')]);
        assert_eq!(p.deletes, vec!["c".to_string()]);
        assert!(plan(&base, &base).is_empty());
    }

    #[test]
    fn usage_and_quota() {
        let current = [f("a", 10, 'a'), f("b", 20, 'b')];
        let (bytes, files) = usage_after(&current, &[f("b", 5, 'c'), f("n", 7, 'd')], &["a".into()]);
        assert_eq!((bytes, files), (12, 2));
        let quota = Quota { quota_bytes: 12, max_files: 2 };
        assert_eq!(check_quota(12, 2, quota), Ok(()));
        let over = check_quota(13, 2, quota).unwrap_err();
        assert_eq!(over.limit, QuotaLimit::Bytes);
        assert!(over.message().contains("quota of 12 bytes"), "{}", over.message());
        assert_eq!(check_quota(1, 3, quota).unwrap_err().limit, QuotaLimit::Files);
        assert_eq!(Quota::default().quota_bytes, 1_073_741_824);
    }

    #[test]
    fn conflicts_are_paths_changed_underneath() {
        let base = [f("a", 1, 'a'), f("b", 1, 'b')];
        // Another job rewrote b and created c meanwhile.
        let current = [f("a", 1, 'a'), f("b", 1, 'x'), f("c", 1, 'c')];
        let got = conflicts(&base, &current, &[f("a", 1, 'z'), f("b", 1, 'y'), f("c", 1, 'q')], &[]);
        assert_eq!(got, vec!["b".to_string(), "c".to_string()]);
        assert!(conflicts(&base, &base, &[f("a", 1, 'z')], &["b".into()]).is_empty());
    }

    #[test]
    fn expiry_and_hashes() {
        assert_eq!(expiry_cutoff_ms(100 * DAY_MS, 90), 10 * DAY_MS);
        assert_eq!(expiry_cutoff_ms(5, 90), 0);
        assert!(is_sha256_hex(&"a".repeat(64)));
        assert!(!is_sha256_hex(&"A".repeat(64)));
        assert!(!is_sha256_hex("abc"));
        assert!(check_file_path("../x").is_err() && check_file_path("/etc/passwd").is_err());
        assert!(check_file_path("dir/a.txt").is_ok());
    }

    #[test]
    fn paths_in_urls_are_decoded() {
        assert_eq!(percent_decode("sub/random%20data.bin").as_deref(), Some("sub/random data.bin"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn wire_shapes() {
        let reply = CommitReply::QuotaExceeded(QuotaExceeded { limit: QuotaLimit::Files, would_be: 3, allowed: 2 });
        let json = serde_json::to_value(&reply).unwrap_or_default();
        assert_eq!(json["result"], "quota_exceeded");
        assert_eq!(json["limit"], "files");
        let art: Artifacts = serde_json::from_str("{}").unwrap_or_default();
        assert!(art.output_files.is_empty() && art.storage.is_none());
    }
}
