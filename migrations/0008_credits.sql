-- The credits ledger (edge/src/credits.rs, core/src/credits.rs): credits instead of on-chain refunds.
-- One row per credit an ended job earned ('earn') and per credit spent on a job ('spend'); a wallet's balance
-- is the sum of its live rows. Amounts are atomic USDC units, times unix milliseconds, wallets lowercase 0x.
CREATE TABLE credits (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- 'earn:{job_id}' (at most one credit per job: this key makes recording it idempotent),
    -- 'spend:{payer}:{nonce}' (the x402 authorization the credit was held for).
    key             TEXT NOT NULL UNIQUE,
    wallet          TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('earn', 'spend')),
    amount_atomic   INTEGER NOT NULL CHECK (amount_atomic > 0),
    -- earn: the job that earned it. spend: the job it paid for; NULL while its payment is being settled.
    job_id          TEXT,
    -- spend: the nonce of the authorization. A spend with no job yet counts only while the payment reservation
    -- (payments (payer, nonce)) exists, so a payment that bought nothing gives its credit back by itself.
    nonce           TEXT,
    -- earn: the rule (unused_time | platform_error); spend: 'applied'.
    rule            TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX credits_by_wallet ON credits (wallet, kind);
CREATE INDEX credits_by_job ON credits (job_id);
CREATE INDEX credits_by_time ON credits (created_at);

-- Written when a job is bought: the credit it spent and the time part of its price (the share a pro-rata
-- credit for unused time is taken from), so a later pricing change cannot change what its end is worth.
ALTER TABLE jobs ADD COLUMN credit_applied_atomic INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN time_part_atomic INTEGER;
-- When the dispatch queue last delivered the job (stamped by the consumer while the job is pending): a pending
-- job without a delivery for minutes has no message left (its send failed after payment); the sweep re-queues it.
ALTER TABLE jobs ADD COLUMN last_delivery_at INTEGER;
