-- The ledger behind /api/stats and the pricing phase, builder-code attribution, and the service wallet's history.
-- Times are unix milliseconds; wei amounts are decimal TEXT (they do not fit a 64-bit integer exactly).

-- The gas of each settlement transaction: from its receipt (gasUsed × effectiveGasPrice) when the RPC gave it,
-- else the configured estimate (GAS_ESTIMATE_WEI), replaced by the receipt's figures by the scheduled handler.
CREATE TABLE settlement_gas (
    tx_hash                 TEXT PRIMARY KEY,
    job_id                  TEXT NOT NULL REFERENCES jobs (id),
    gas_used                INTEGER,
    effective_gas_price_wei TEXT,
    gas_cost_wei            TEXT NOT NULL,
    source                  TEXT NOT NULL CHECK (source IN ('receipt', 'estimate')),
    recorded_at             INTEGER NOT NULL
);
CREATE INDEX settlement_gas_by_job ON settlement_gas (job_id);
CREATE INDEX settlement_gas_estimates ON settlement_gas (source, recorded_at);

-- The builder codes a paid job was submitted with (X-BUILDER-CODE), in header order; written in the same batch as
-- the job row.
CREATE TABLE job_builder_codes (
    job_id      TEXT NOT NULL REFERENCES jobs (id),
    code        TEXT NOT NULL,
    position    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (job_id, code)
);
CREATE INDEX job_builder_codes_by_code ON job_builder_codes (code, created_at);
CREATE INDEX job_builder_codes_by_time ON job_builder_codes (created_at);

-- The service wallet's balances, recorded by the scheduled handler.
CREATE TABLE wallet_snapshots (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    address             TEXT NOT NULL,
    eth_balance_wei     TEXT NOT NULL,
    usdc_balance_atomic TEXT NOT NULL,
    eth_price_usd       REAL NOT NULL,
    recorded_at         INTEGER NOT NULL
);
CREATE INDEX wallet_snapshots_by_time ON wallet_snapshots (recorded_at);

-- The ledger's aggregates read jobs by status and payments by state.
CREATE INDEX jobs_by_status ON jobs (status);
CREATE INDEX payments_by_state ON payments (state);
