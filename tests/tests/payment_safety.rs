//! Nobody pays for nothing: refused payments move no money and create no job.

use ouro_client::sign_payment;
use ouro_e2e::{authorization_used, client, usdc_balance, wallet, Account};
use serde_json::json;

#[tokio::test]
async fn bad_payments_are_402_with_no_job_and_no_charge() {
    let client = client().await;
    let payer = wallet(Account::BadPayments);
    let before = usdc_balance(payer.address).await;
    let body = json!({"script": "echo should never run"});
    let required = client.submit_unpaid(&body).await.unwrap().into_payment_required().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();

    let wrong_amount = sign_payment(&payer.key, &required, |a| {
        a.value = (a.value.parse::<u64>().unwrap() - 1).to_string();
    })
    .unwrap();
    let wrong_pay_to =
        sign_payment(&payer.key, &required, |a| a.to = "0x000000000000000000000000000000000000dEaD".into()).unwrap();
    let expired = sign_payment(&payer.key, &required, |a| a.valid_before = (now - 30).to_string()).unwrap();
    let mut tampered = sign_payment(&payer.key, &required, |_| {}).unwrap();
    // Flip one bit of r: still a well-formed 65-byte signature, but of nobody's authorization.
    let mut sig = hex::decode(tampered.payload.signature.trim_start_matches("0x")).unwrap();
    sig[5] ^= 0x01;
    tampered.payload.signature = format!("0x{}", hex::encode(sig));
    let mut lowered = sign_payment(&payer.key, &required, |a| a.value = "1".into()).unwrap();
    lowered.accepted.amount = "1".into();

    for (what, payment) in
        [("wrong amount", &wrong_amount), ("wrong payTo", &wrong_pay_to), ("expired", &expired), ("tampered", &tampered), ("lowered quote", &lowered)]
    {
        let answer = client.submit_paid(&body, payment).await.unwrap();
        assert_eq!(answer.status, 402, "{what}: {}", answer.body);
        assert!(answer.body.get("job_id").is_none(), "{what}: no job");
        assert!(answer.body["reason"].is_string(), "{what}: the reason is given: {}", answer.body);
        assert!(answer.payment_required.is_some(), "{what}: fresh requirements come with the refusal");
        let nonce = &payment.payload.authorization.nonce;
        assert!(!authorization_used(payer.address, nonce).await, "{what}: never settled on chain");
    }
    let garbage = client.submit_with_header(&body, "this is not base64 json").await.unwrap();
    assert_eq!(garbage.status, 400);
    assert_eq!(usdc_balance(payer.address).await, before, "no money moved");
}

// The same payment sent again (sequentially and concurrently), with another body, or with a payment identifier:
// tests/tests/money.rs.
