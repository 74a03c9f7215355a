-- Live events, output, webhooks and cancellation (issue #5).

-- Output chunks streamed by the executor while the job runs are events of type 'output': `seq` is the
-- executor's chunk number (a repeated delivery of one seq is stored once), `stream` stdout|stderr, `data` the
-- text. Status events record the status they moved the job to and, at the end, the exit code.
ALTER TABLE job_events ADD COLUMN seq INTEGER;
ALTER TABLE job_events ADD COLUMN stream TEXT;
ALTER TABLE job_events ADD COLUMN data TEXT;
ALTER TABLE job_events ADD COLUMN status TEXT;
ALTER TABLE job_events ADD COLUMN exit_code INTEGER;
CREATE UNIQUE INDEX job_events_output_seq ON job_events (job_id, seq) WHERE seq IS NOT NULL;

-- The capped output of an ended job, one row per stream: 1 MiB of stdout and 1 MiB of stderr do not fit one
-- D1 row (2,000,000 bytes at most), so they do not live in `jobs` (whose `output` columns stay for old jobs).
CREATE TABLE job_outputs (
    job_id  TEXT NOT NULL REFERENCES jobs (id),
    stream  TEXT NOT NULL CHECK (stream IN ('stdout', 'stderr')),
    text    TEXT NOT NULL,
    PRIMARY KEY (job_id, stream)
);

-- Marks the batch that ended a job, so the statements after the guarded UPDATE of that batch (outputs, the
-- terminal event) apply only when this very batch made the job terminal.
ALTER TABLE jobs ADD COLUMN end_token TEXT;

-- "My jobs": a wallet's jobs, newest first.
CREATE INDEX jobs_by_payer ON jobs (payer, submitted_at, id);

-- Webhooks: where to POST the end of the job, the delivery id repeated on every attempt, and the outcome
-- (attempts made, last HTTP status or error). The HMAC key is derived from the job id, never stored.
ALTER TABLE jobs ADD COLUMN webhook_url TEXT;
ALTER TABLE jobs ADD COLUMN webhook_delivery_id TEXT;
ALTER TABLE jobs ADD COLUMN webhook_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN webhook_last_status INTEGER;
ALTER TABLE jobs ADD COLUMN webhook_last_error TEXT;
ALTER TABLE jobs ADD COLUMN webhook_state TEXT CHECK (webhook_state IS NULL OR webhook_state IN ('queued', 'delivered', 'failed'));

-- Cancellation requested by the payer (unix ms), while the executor kills the container.
ALTER TABLE jobs ADD COLUMN cancel_requested_at INTEGER;

-- Open SSE streams, as leases: a stream counts against the limits until it closes or its lease expires (a
-- client that vanished without the Worker noticing is forgotten at the maximum stream duration).
CREATE TABLE event_streams (
    id          TEXT PRIMARY KEY,
    job_id      TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX event_streams_by_job ON event_streams (job_id, expires_at);
CREATE INDEX event_streams_by_expiry ON event_streams (expires_at);
