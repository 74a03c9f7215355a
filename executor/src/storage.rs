//! A wallet's storage at `/scratch`: brought down from the edge before the run, written back after it
//! (protocol: `ouro_core::storage`). Bodies are streamed between the network and files on disk, never held
//! whole in memory. Also the signed file transfers `outputs.rs` uses.

use std::io;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use ouro_core::dispatch::{sign_request, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use ouro_core::storage::{
    self as rules, check_quota, plan, usage_after, Commit, CommitReply, Manifest, QuotaExceeded, StagedPut, SyncSummary,
};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::outputs::{self, Found};
use crate::report::unix_now;
use crate::workspace::{create_new_file, WorkspaceError};

/// Every transfer gets this long plus [`PER_MIB`] per MiB of its file.
const BASE_TIMEOUT: Duration = Duration::from_secs(30);
const PER_MIB: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{method} {url} failed: {detail}")]
    Transport { method: Method, url: String, detail: String },
    #[error("{method} {url} answered {status}: {body}")]
    Refused { method: Method, url: String, status: StatusCode, body: String },
    #[error("storage on this executor: {0}")]
    Local(io::Error),
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error("bad request {0}")]
    Url(String),
}

/// Signed file transfers with the edge.
#[derive(Debug, Clone)]
pub struct EdgeFiles {
    http: reqwest::Client,
    base_url: String,
    secret: Vec<u8>,
}

fn timeout_for(size: u64) -> Duration {
    BASE_TIMEOUT + PER_MIB * u32::try_from(size / (1 << 20)).unwrap_or(u32::MAX)
}

impl EdgeFiles {
    pub fn new(base_url: &str, secret: Vec<u8>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(3)).no_proxy().build()?;
        Ok(EdgeFiles { http, base_url: base_url.trim_end_matches('/').to_string(), secret })
    }

    /// A request to `path?query`, signed over the path with its query and `signed_body`.
    fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        signed_body: &[u8],
    ) -> Result<reqwest::RequestBuilder, SyncError> {
        let base = format!("{}{path}", self.base_url);
        let url = if query.is_empty() { Url::parse(&base) } else { Url::parse_with_params(&base, query) }
            .map_err(|e| SyncError::Url(format!("{base}: {e}")))?;
        let signed = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let ts = unix_now();
        let signature = sign_request(&self.secret, ts, method.as_str(), &signed, signed_body);
        Ok(self.http.request(method, url).header(HEADER_TIMESTAMP, ts.to_string()).header(HEADER_SIGNATURE, signature))
    }

    async fn send(
        &self,
        method: Method,
        builder: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, SyncError> {
        let url = what.to_string();
        let response = builder.send().await.map_err(|e| SyncError::Transport {
            method: method.clone(),
            url: url.clone(),
            detail: e.to_string(),
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body: String = response.text().await.unwrap_or_default().chars().take(500).collect();
        Err(SyncError::Refused { method, url, status, body })
    }

    pub async fn post_json<T: Serialize, R: DeserializeOwned>(&self, path: &str, body: &T) -> Result<R, SyncError> {
        let bytes = serde_json::to_vec(body).map_err(|e| SyncError::Url(e.to_string()))?;
        let builder = self
            .request(Method::POST, path, &[], &bytes)?
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(BASE_TIMEOUT)
            .body(bytes);
        let response = self.send(Method::POST, builder, path).await?;
        response.json().await.map_err(|e| SyncError::Transport {
            method: Method::POST,
            url: path.into(),
            detail: e.to_string(),
        })
    }

    /// Streams one file to `path?path=&size=&sha256=`; answers the edge's JSON.
    pub async fn upload(&self, path: &str, file: &Found) -> Result<serde_json::Value, SyncError> {
        let size = file.size.to_string();
        let query = [("path", file.path.as_str()), ("size", size.as_str()), ("sha256", file.sha256.as_str())];
        let opened = outputs::open_no_follow(&file.host_path).map_err(SyncError::Local)?;
        let reader = tokio::fs::File::from_std(opened);
        let chunks = futures_util::stream::unfold(reader, |mut reader| async move {
            let mut buf = vec![0u8; 64 * 1024];
            match tokio::io::AsyncReadExt::read(&mut reader, &mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, io::Error>(buf), reader))
                }
                Err(e) => Some((Err(e), reader)),
            }
        });
        let builder = self
            .request(Method::PUT, path, &query, b"")?
            .header(reqwest::header::CONTENT_LENGTH, size.as_str())
            .timeout(timeout_for(file.size))
            .body(reqwest::Body::wrap_stream(chunks));
        let response = self.send(Method::PUT, builder, path).await?;
        response.json().await.map_err(|e| SyncError::Transport {
            method: Method::PUT,
            url: path.into(),
            detail: e.to_string(),
        })
    }

    /// Streams `GET path?path=` into a new file `relative` under `root` (owned by the sandbox user).
    async fn download(&self, path: &str, relative: &str, size: u64, root: &Path) -> Result<(), SyncError> {
        let builder = self.request(Method::GET, path, &[("path", relative)], b"")?.timeout(timeout_for(size));
        let response = self.send(Method::GET, builder, path).await?;
        let (file, host_path) = create_new_file(root, relative, 0o644)?;
        let mut file = tokio::fs::File::from_std(file);
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| SyncError::Transport {
                method: Method::GET,
                url: path.into(),
                detail: e.to_string(),
            })?;
            file.write_all(&chunk).await.map_err(SyncError::Local)?;
        }
        file.flush().await.map_err(SyncError::Local)?;
        let written = tokio::fs::metadata(&host_path).await.map_err(SyncError::Local)?.len();
        if written != size {
            return Err(SyncError::Local(io::Error::other(format!(
                "{relative}: got {written} bytes, expected {size}"
            ))));
        }
        Ok(())
    }
}

/// The wallet's files, brought down into `scratch` before the run.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub manifest: Manifest,
}

/// Fetches the manifest of `job_id`'s wallet and downloads every file into `scratch`.
pub async fn pull(edge: &EdgeFiles, job_id: &str, scratch: &Path) -> Result<Pulled, SyncError> {
    let manifest: Manifest = edge.post_json(&rules::manifest_path(job_id), &serde_json::json!({})).await?;
    for f in &manifest.files {
        edge.download(&rules::file_path(job_id), &f.path, f.size, scratch).await?;
    }
    Ok(Pulled { manifest })
}

/// How the write-back ended.
#[derive(Debug)]
pub enum Pushed {
    Done(SyncSummary),
    /// Nothing was written: the job's `/scratch` does not fit the quota.
    OverQuota(SyncSummary, QuotaExceeded),
}

/// Writes back what the job changed in `scratch` (created, modified, deleted), all or nothing.
pub async fn push(edge: &EdgeFiles, job_id: &str, scratch: &Path, pulled: &Pulled) -> Result<Pushed, SyncError> {
    let root = scratch.to_path_buf();
    let quota = pulled.manifest.quota;
    let outputs::Walk { found, skipped, truncated } =
        tokio::task::spawn_blocking(move || outputs::walk(&root, quota.max_files))
            .await
            .map_err(|e| SyncError::Local(io::Error::other(e.to_string())))?
            .map_err(SyncError::Local)?;
    let base = &pulled.manifest.files;
    let after: Vec<_> = found.iter().map(Found::stored).collect();
    let changes = plan(base, &after);
    let mut summary = SyncSummary { downloaded: base.len() as u64, skipped, ..SyncSummary::default() };
    if truncated {
        // Files the walk did not reach would read as deleted: the only safe answer is to write nothing.
        let would_be = (found.len() as u64).max(quota.max_files + 1);
        return Ok(Pushed::OverQuota(
            summary,
            QuotaExceeded { limit: rules::QuotaLimit::Files, would_be, allowed: quota.max_files },
        ));
    }
    let (bytes, files) = usage_after(base, &changes.puts, &changes.deletes);
    // Checked here first so an oversized /scratch is refused before a byte is sent; the edge checks again.
    if let Err(exceeded) = check_quota(bytes, files, pulled.manifest.quota) {
        return Ok(Pushed::OverQuota(summary, exceeded));
    }
    if changes.is_empty() {
        return Ok(Pushed::Done(summary));
    }
    let mut puts = Vec::with_capacity(changes.puts.len());
    for change in &changes.puts {
        let Some(local) = found.iter().find(|f| f.path == change.path) else { continue };
        let answer = edge.upload(&rules::upload_path(job_id), local).await?;
        let upload_key = answer["upload_key"].as_str().unwrap_or_default().to_string();
        puts.push(StagedPut {
            path: change.path.clone(),
            size: change.size,
            sha256: change.sha256.clone(),
            upload_key,
        });
    }
    let commit = Commit { base: base.clone(), puts, deletes: changes.deletes.clone() };
    match edge.post_json::<_, CommitReply>(&rules::commit_path(job_id), &commit).await? {
        CommitReply::Committed { conflicts, .. } => {
            summary.uploaded = commit.puts.len() as u64;
            summary.deleted = commit.deletes.len() as u64;
            summary.conflicts = conflicts;
            Ok(Pushed::Done(summary))
        }
        CommitReply::QuotaExceeded(exceeded) => Ok(Pushed::OverQuota(summary, exceeded)),
    }
}

/// A job's `/outputs` folder and, for `mount_storage` jobs, its `/scratch` with the manifest it was filled from.
/// Both live next to the job's workspace under the jobs root (so the startup sweep clears them too) and are
/// removed when the job ends, whatever happens (`JobDir` removes itself when dropped).
#[derive(Debug)]
pub struct JobFolders {
    outputs: crate::workspace::JobDir,
    scratch: Option<(crate::workspace::JobDir, Pulled)>,
}

impl JobFolders {
    /// Makes the folders (owned by the sandbox user) and brings the wallet's files down into `/scratch`.
    pub async fn prepare(
        edge: Option<&EdgeFiles>,
        work_dir: &Path,
        job: &ouro_core::dispatch::JobAssignment,
    ) -> Result<Self, SyncError> {
        use crate::workspace::JobDir;
        let outputs = JobDir::create(work_dir, &format!("{}.outputs", job.job_id), None, &[])?;
        let scratch = if job.mount_storage {
            let edge = edge.ok_or_else(|| SyncError::Url("this executor has no edge to fetch storage from".into()))?;
            let dir = JobDir::create(work_dir, &format!("{}.scratch", job.job_id), None, &[])?;
            let pulled = pull(edge, &job.job_id, dir.path()).await?;
            tracing::info!(job_id = %job.job_id, files = pulled.manifest.files.len(), "storage mounted");
            Some((dir, pulled))
        } else {
            None
        };
        Ok(JobFolders { outputs, scratch })
    }

    pub fn outputs_dir(&self) -> &Path {
        self.outputs.path()
    }

    pub fn scratch_dir(&self) -> Option<&Path> {
        self.scratch.as_ref().map(|(dir, _)| dir.path())
    }

    /// After the container is gone: returns the output files, writes `/scratch` back (unless the job broke on
    /// our side: then its storage stays as it was), removes the folders. A write-back refused for the quota
    /// fails a job that had otherwise completed (`storage_quota_exceeded`); a transfer that fails is ours
    /// (`internal_error`).
    pub async fn finish(
        self,
        edge: Option<&EdgeFiles>,
        job: &ouro_core::dispatch::JobAssignment,
        failure: &mut Option<ouro_core::dispatch::Failure>,
    ) -> rules::Artifacts {
        use ouro_core::job::{FailureReason, FailureStage};
        let mut artifacts = rules::Artifacts::default();
        let ours = failure.as_ref().is_some_and(|f| f.reason == FailureReason::InternalError);
        let fail = |failure: &mut Option<ouro_core::dispatch::Failure>, reason, message: String| match failure {
            None => *failure = Some(ouro_core::dispatch::Failure { reason, stage: FailureStage::Run, message }),
            Some(f) => f.message = format!("{} Also: {message}", f.message),
        };
        if let Some(edge) = edge.filter(|_| !ours) {
            match outputs::collect(edge, &job.job_id, self.outputs.path(), job.output_limits).await {
                Ok((files, skipped)) => {
                    artifacts.output_files = files;
                    artifacts.output_files_skipped = skipped;
                }
                Err(e) => {
                    tracing::error!(job_id = %job.job_id, error = %e, "could not return the output files");
                    fail(
                        failure,
                        FailureReason::InternalError,
                        format!("The executor could not return the files in /outputs: {e}."),
                    );
                }
            }
            if let Some((dir, pulled)) = &self.scratch {
                match push(edge, &job.job_id, dir.path(), pulled).await {
                    Ok(Pushed::Done(summary)) => artifacts.storage = Some(summary),
                    Ok(Pushed::OverQuota(summary, exceeded)) => {
                        artifacts.storage = Some(summary);
                        fail(failure, FailureReason::StorageQuotaExceeded, exceeded.message());
                    }
                    Err(e) => {
                        tracing::error!(job_id = %job.job_id, error = %e, "could not write back /scratch");
                        fail(failure, FailureReason::InternalError, format!("The executor could not save /scratch: {e}; the stored files are as they were before the job."));
                    }
                }
            }
        }
        let JobFolders { outputs, scratch } = self;
        if let Err(e) = outputs.remove().await {
            tracing::error!(job_id = %job.job_id, error = %e, "could not remove the job's outputs folder");
        }
        if let Some((dir, _)) = scratch {
            if let Err(e) = dir.remove().await {
                tracing::error!(job_id = %job.job_id, error = %e, "could not remove the job's scratch folder");
            }
        }
        artifacts
    }
}
