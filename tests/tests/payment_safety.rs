//! Nobody pays for nothing, and no payment buys twice: refused payments move no money and create no job; the
//! same payment sent again answers with the job it already bought.

use alloy_primitives::U256;
use ouro_client::sign_payment;
use ouro_core::pricing::parse_usd;
use ouro_core::x402::header;
use ouro_e2e::{authorization_used, client, finished, usdc_balance, wallet, Account};
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

#[tokio::test]
async fn the_same_payment_twice_buys_one_job() {
    let client = client().await;
    let payer = wallet(Account::Replay);
    let body = json!({"script": "echo once"});
    let before = usdc_balance(payer.address).await;
    let required = client.submit_unpaid(&body).await.unwrap().into_payment_required().unwrap();
    let payment = sign_payment(&payer.key, &required, |_| {}).unwrap();
    let first = client.submit_paid(&body, &payment).await.unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    let second = client.submit_paid(&body, &payment).await.unwrap();
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(first.body["job_id"], second.body["job_id"], "the replay answers with the job it bought");
    assert_eq!(
        first.payment_response.as_ref().map(|s| &s.transaction),
        second.payment_response.as_ref().map(|s| &s.transaction)
    );
    // The same authorization with another body is a conflict, not a second job.
    let other = client.submit_with_header(&json!({"script": "echo twice"}), &header::encode(&payment)).await.unwrap();
    assert_eq!(other.status, 409, "{}", other.body);

    let job_id = first.body["job_id"].as_str().unwrap();
    let job = finished(&client, job_id, std::time::Duration::from_secs(180)).await;
    assert_eq!(job["output"], "once\n");
    let price = U256::from(parse_usd(first.body["price"].as_str().unwrap()).unwrap());
    assert_eq!(before - usdc_balance(payer.address).await, price, "charged once");
    assert!(authorization_used(payer.address, &payment.payload.authorization.nonce).await);
}
