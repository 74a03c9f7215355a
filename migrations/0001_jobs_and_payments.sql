-- Jobs, the payments that bought them, and each job's event history.
-- Times are unix milliseconds; money is integer atomic USDC units (6 decimals).

CREATE TABLE jobs (
    id                      TEXT PRIMARY KEY,
    status                  TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'running', 'completed', 'failed')),
    payer                   TEXT NOT NULL,
    submitter_address       TEXT,
    script                  TEXT NOT NULL,
    image                   TEXT NOT NULL,
    cpus                    INTEGER NOT NULL,
    time_limit_min          INTEGER NOT NULL,
    price_atomic            INTEGER NOT NULL,
    spec_digest             TEXT NOT NULL,
    submitted_at            INTEGER NOT NULL,
    started_at              INTEGER,
    completed_at            INTEGER,
    output                  TEXT,
    error_output            TEXT,
    output_truncated        INTEGER NOT NULL DEFAULT 0,
    error_output_truncated  INTEGER NOT NULL DEFAULT 0,
    exit_code               INTEGER,
    compute_duration_s      REAL,
    failure_reason          TEXT,
    failure_stage           TEXT,
    failure_message         TEXT,
    fault                   TEXT CHECK (fault IS NULL OR fault IN ('user_error', 'platform_error')),
    executor_url            TEXT
);
CREATE INDEX jobs_by_submitted_at ON jobs (submitted_at);

-- One row per (payer, nonce): the durable replay guard. A row is 'reserved' while the facilitator is asked,
-- 'settled' once the transfer is on chain (tx_hash set, job_id set in the same batch as the job row).
CREATE TABLE payments (
    payer           TEXT NOT NULL,
    nonce           TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('reserved', 'settled')),
    amount_atomic   INTEGER NOT NULL,
    network         TEXT NOT NULL,
    asset           TEXT NOT NULL,
    pay_to          TEXT NOT NULL,
    valid_before    INTEGER NOT NULL,
    spec_digest     TEXT NOT NULL,
    job_id          TEXT REFERENCES jobs (id),
    tx_hash         TEXT,
    created_at      INTEGER NOT NULL,
    settled_at      INTEGER,
    PRIMARY KEY (payer, nonce)
);
CREATE INDEX payments_by_job ON payments (job_id);

CREATE TABLE job_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      TEXT NOT NULL REFERENCES jobs (id),
    type        TEXT NOT NULL,
    message     TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX job_events_by_job ON job_events (job_id, id);
