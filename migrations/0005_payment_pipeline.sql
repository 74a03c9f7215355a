-- The payment pipeline's bookkeeping (edge/src/payment.rs): what a reservation needs so that a payment whose
-- settlement outcome is unknown can be reconciled against the chain later (by the payer's retry or by the
-- scheduled handler), the x402 payment-identifier extension, and the operators' ledger view.

-- When /settle was first sent for this reservation. NULL: no money can have moved, the row may be released.
-- Set: the transfer may have happened; the row is released only once the chain says the authorization is unused
-- and can no longer be used (validBefore passed), and is settled with its job once the chain says it was used.
ALTER TABLE payments ADD COLUMN settle_attempted_at INTEGER;
-- The request working on this reservation holds it until this time (unix ms); others wait or answer 409.
ALTER TABLE payments ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
-- The x402 version the client paid with (1: X-PAYMENT, 2: PAYMENT-SIGNATURE): the answer uses the same.
ALTER TABLE payments ADD COLUMN x402_version INTEGER NOT NULL DEFAULT 2;
-- The client's payment-identifier (x402 extension) and the fingerprint of the signed payment it named.
ALTER TABLE payments ADD COLUMN payment_identifier TEXT;
ALTER TABLE payments ADD COLUMN payload_fingerprint TEXT;
-- The job this payment is for, so that reconciliation can record it without the client: the spec as JSON
-- without file contents (those are in R2 under workspace_key) and the builder codes as a JSON array.
ALTER TABLE payments ADD COLUMN spec_json TEXT;
ALTER TABLE payments ADD COLUMN workspace_key TEXT;
ALTER TABLE payments ADD COLUMN builder_codes_json TEXT NOT NULL DEFAULT '[]';
-- The last settlement trouble seen for a reservation (timeout, pending, refusal), for operators.
ALTER TABLE payments ADD COLUMN settle_note TEXT;

CREATE UNIQUE INDEX payments_by_identifier ON payments (payment_identifier) WHERE payment_identifier IS NOT NULL;
-- The scheduled reconciliation reads the unsettled reservations.
CREATE INDEX payments_unsettled ON payments (state, settle_attempted_at);
-- Active jobs per wallet (the 20-active-jobs limit) and pending jobs (the queue-depth pre-flight).
CREATE INDEX jobs_by_payer_status ON jobs (payer, status);

-- The operators' ledger: every payment with its state and settlement transaction. `settled` rows are the money
-- that reached payTo: their sum equals payTo's token balance change on chain (GET /api/ledger checks it).
CREATE VIEW ledger_payments AS
SELECT payer AS wallet, nonce, state, amount_atomic, network, pay_to, tx_hash, job_id, x402_version,
       created_at, settle_attempted_at, settled_at, settle_note
FROM payments;
