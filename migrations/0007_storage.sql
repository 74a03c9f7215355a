-- Per-wallet persistent storage (/scratch) and job output files (/outputs). File bytes live in R2 (`FILES`);
-- D1 holds what points at them, so a job's whole write-back is one D1 batch (see edge/src/storage.rs).

ALTER TABLE jobs ADD COLUMN mount_storage INTEGER NOT NULL DEFAULT 0;
-- JSON `ouro_core::storage::Artifacts`: output files [{path, size, sha256}], skipped files, storage sync summary.
ALTER TABLE jobs ADD COLUMN artifacts_json TEXT;

-- One row per wallet that has (or had) stored files. quota_bytes / max_files NULL: the configured default.
CREATE TABLE storage_accounts (
    wallet TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    last_accessed_at INTEGER NOT NULL,
    quota_bytes INTEGER,
    max_files INTEGER
);

-- A wallet's files. object_key is the R2 object holding the current content (unique per write, so a commit
-- swaps pointers and never overwrites bytes a reader may be streaming).
CREATE TABLE storage_files (
    wallet TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    object_key TEXT NOT NULL,
    modified_at INTEGER NOT NULL,
    accessed_at INTEGER NOT NULL,
    job_id TEXT,
    PRIMARY KEY (wallet, path)
);
CREATE INDEX storage_files_accessed ON storage_files (accessed_at);

-- Staged uploads not yet committed (a crashed job leaves them; the cron removes old ones).
CREATE TABLE storage_uploads (
    object_key TEXT PRIMARY KEY,
    wallet TEXT NOT NULL,
    job_id TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- Objects no record points at any more (replaced, deleted, refused); removed from R2 by the cron after a grace
-- period, so a job still streaming an old version is not cut off.
CREATE TABLE storage_trash (
    object_key TEXT PRIMARY KEY,
    trashed_at INTEGER NOT NULL
);

-- The quota as a constraint: a commit's batch ends by inserting the wallet's usage here, and the CHECK aborts
-- (and so rolls back) the whole batch when a concurrent commit already used the room. Always empty.
CREATE TABLE storage_usage_check (
    wallet TEXT NOT NULL,
    used_bytes INTEGER NOT NULL,
    file_count INTEGER NOT NULL,
    quota_bytes INTEGER NOT NULL,
    max_files INTEGER NOT NULL,
    CHECK (used_bytes <= quota_bytes AND file_count <= max_files)
);
