-- Multi-file jobs: the workspace itself lives in R2 (content-addressed by the job spec's digest, written before
-- settlement so that a settled job always finds its files); D1 keeps what the API shows about it.
ALTER TABLE jobs ADD COLUMN entrypoint TEXT;
ALTER TABLE jobs ADD COLUMN file_count INTEGER NOT NULL DEFAULT 0;
-- JSON array of {path, size}, in path order.
ALTER TABLE jobs ADD COLUMN files_json TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN workspace_key TEXT;
