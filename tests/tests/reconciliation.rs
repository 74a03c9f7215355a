//! The ledger agrees with the chain: the sum of settled payments in D1 equals `payTo`'s test-USDC balance (on a
//! fresh anvil `payTo` starts at zero, and `cargo xtask up` resets the edge's D1 whenever it starts a fresh
//! anvil), every settled payment has its job, and no reservation still waiting for its outcome was spent on
//! chain. Ignored by default: it reads the whole stack's ledger, so `cargo xtask test` runs it last, once every
//! other suite is done.

use alloy_primitives::U256;
use ouro_e2e::{authorization_used, ledger, usdc_balance, PAY_TO};

#[tokio::test]
#[ignore = "run last by `cargo xtask test` (cargo test -p ouro-e2e --test reconciliation -- --ignored)"]
async fn settled_payments_in_d1_equal_pay_to_s_balance_on_chain() {
    let ledger = ledger().await;
    let sums = &ledger["sums"];
    let settled = U256::from(sums["settled_atomic"].as_u64().expect("settled_atomic"));
    let on_chain = usdc_balance(PAY_TO.parse().unwrap()).await;
    assert_eq!(settled, on_chain, "D1 settled {settled} vs payTo on chain {on_chain}: {sums}");
    assert_eq!(sums["settled_without_job"], 0, "every settled payment has its job: {sums}");
    // The edge's own view says the same.
    assert_eq!(ledger["chain"]["settled_minus_balance_atomic"], "0", "{}", ledger["chain"]);
    let entries = ledger["entries"].as_array().expect("entries");
    // A reservation still waiting for its outcome moved no money yet (else the chain would be ahead of D1): the
    // payer's retry or the cron settles it with its job, or releases it once expired.
    for e in entries.iter().filter(|e| e["state"] == "reserved" && !e["settle_attempted_at"].is_null()) {
        let (wallet, nonce) = (e["wallet"].as_str().unwrap(), e["nonce"].as_str().unwrap());
        assert!(!authorization_used(wallet.parse().unwrap(), nonce).await, "spent on chain but not settled in D1: {e}");
    }
    for e in entries.iter().filter(|e| e["state"] == "settled") {
        assert!(e["job_id"].is_string(), "a settled payment without its job: {e}");
        // A job paid wholly with credit settles nothing on chain (amount 0, no transaction).
        if e["amount_atomic"].as_u64() != Some(0) {
            assert!(e["tx_hash"].is_string(), "a settled payment without its transaction: {e}");
        }
    }
}
