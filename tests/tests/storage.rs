//! Per-wallet storage at `/scratch` (issue #6): persistence between jobs of one wallet, isolation between
//! wallets, the quota (all or nothing), symlink escapes, expiry through the scheduled handler's housekeeping,
//! the signed storage API and its rate limit. Signatures here are made with the core's EIP-191 signer; the
//! Python suite (`tests/python/test_storage_api.py`) signs with `eth-account`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ouro_core::wallet_auth::Action;
use ouro_e2e::{client, edge_url, finished, wallet, Account, Wallet};
use serde_json::{json, Value};

const JOB: Duration = Duration::from_secs(180);

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

async fn run(account: Account, body: Value) -> Value {
    let client = client().await;
    let payer = wallet(account);
    let paid = client.pay_and_submit(&payer.key, &body).await.unwrap_or_else(|e| panic!("paying for {body}: {e}"));
    finished(&client, &paid.job_id, JOB).await
}

async fn scratch_job(account: Account, script: &str) -> Value {
    run(account, json!({ "script": script, "mount_storage": true })).await
}

/// `wallet=…&signature=…&timestamp=…` for `action`, signed by `w` (EIP-191).
fn signed_query(w: &Wallet, action: Action<'_>) -> String {
    let wallet = format!("{:#x}", w.address);
    let ts = now_s();
    let digest = alloy_primitives::eip191_hash_message(action.message(&wallet, ts).as_bytes());
    let signature = ouro_core::eip712::sign_digest(&w.key, &digest).expect("signed");
    format!("wallet={wallet}&signature=0x{}&timestamp={ts}", hex::encode(signature))
}

fn fresh_wallet() -> Wallet {
    let seed = alloy_primitives::keccak256(format!("storage-rate-{:?}", SystemTime::now()).as_bytes());
    let key = k256::ecdsa::SigningKey::from_slice(seed.as_slice()).expect("a valid key");
    let address = ouro_core::eip712::address_of(&key);
    Wallet { key, address }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().expect("a client")
}

async fn list(w: &Wallet) -> Value {
    let url = format!("{}/api/storage?{}", edge_url(), signed_query(w, Action::StorageList));
    let resp = http().get(url).send().await.expect("the edge answers");
    assert_eq!(resp.status().as_u16(), 200, "GET /api/storage");
    resp.json().await.expect("JSON")
}

fn paths(listing: &Value) -> Vec<String> {
    listing["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["path"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The executor secret of the local stack (`.dev.vars`), for the operator/test hooks.
fn executor_secret() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../.dev.vars");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    text.lines()
        .find_map(|l| l.trim().strip_prefix("EXECUTOR_SECRET="))
        .map(|t| t.trim().as_bytes().to_vec())
        .unwrap_or_else(|| panic!("{path} has no EXECUTOR_SECRET"))
}

/// An HMAC-signed internal POST (operator and test hooks).
async fn internal_post(path: &str, body: &Value) -> Value {
    let bytes = serde_json::to_vec(body).expect("JSON");
    let ts = now_s();
    let sig = ouro_core::dispatch::sign_request(&executor_secret(), ts, "POST", path, &bytes);
    let resp = http()
        .post(format!("{}{path}", edge_url()))
        .header(ouro_core::dispatch::HEADER_TIMESTAMP, ts.to_string())
        .header(ouro_core::dispatch::HEADER_SIGNATURE, sig)
        .header("content-type", "application/json")
        .body(bytes)
        .send()
        .await
        .expect("the edge answers");
    let status = resp.status().as_u16();
    let answer: Value = resp.json().await.expect("JSON");
    assert_eq!(status, 200, "POST {path}: {answer}");
    answer
}

/// Deletes every stored file of `w` (tests start from an empty storage).
async fn clear(w: &Wallet) {
    for path in paths(&list(w).await) {
        let url = format!(
            "{}/api/storage/files?path={}&{}",
            edge_url(),
            urlencode(&path),
            signed_query(w, Action::StorageDelete { path: &path })
        );
        let resp = http().delete(url).send().await.expect("the edge answers");
        assert_eq!(resp.status().as_u16(), 200, "DELETE {path}");
    }
}

fn urlencode(s: &str) -> String {
    s.replace('%', "%25").replace(' ', "%20").replace('/', "%2F")
}

#[tokio::test]
async fn a_file_written_to_scratch_is_there_for_the_next_job_of_the_same_wallet_only() {
    let owner = wallet(Account::StorageOwner);
    clear(&owner).await;
    let nonce = now_s().to_string();
    let first = scratch_job(
        Account::StorageOwner,
        &format!(
            "mkdir -p /scratch/d && echo {nonce} > /scratch/a.txt && echo x > /scratch/d/b.txt && : > /scratch/empty"
        ),
    )
    .await;
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(first["mount_storage"], true);
    assert_eq!(first["storage_sync"]["uploaded"], 3, "{first}");

    let second = scratch_job(
        Account::StorageOwner,
        "cat /scratch/a.txt; rm /scratch/d/b.txt /scratch/empty && echo removed; echo more >> /scratch/a.txt; stat -c %u /scratch/a.txt",
    )
    .await;
    assert_eq!(second["status"], "completed", "{second}");
    assert_eq!(second["output"], format!("{nonce}\nremoved\n65534\n"));
    assert_eq!(second["storage_sync"]["downloaded"], 3, "{second}");
    assert_eq!(second["storage_sync"]["deleted"], 2, "{second}");

    let listing = list(&owner).await;
    assert_eq!(paths(&listing), ["a.txt"], "{listing}");
    assert_eq!(listing["files"][0]["size"], nonce.len() + 1 + 5);
    assert_eq!(listing["used_bytes"], nonce.len() + 1 + 5);
    assert_eq!(listing["file_count"], 1);
    assert_eq!(listing["quota_bytes"], 1u64 << 30);
    assert_eq!(listing["max_files"], 10_000);

    // Another wallet's job sees an empty /scratch.
    let other = scratch_job(Account::StorageOther, "ls -A /scratch | wc -l; cat /scratch/a.txt 2>&1 || true").await;
    assert_eq!(other["status"], "completed", "{other}");
    assert!(other["output"].as_str().unwrap_or_default().starts_with("0\n"), "{other}");
    assert!(!other["output"].as_str().unwrap_or_default().contains(&nonce), "{other}");

    // A job without mount_storage has no /scratch at all.
    let unmounted =
        run(Account::StorageOwner, json!({ "script": "test -e /scratch && echo present || echo absent" })).await;
    assert_eq!(unmounted["output"], "absent\n", "{unmounted}");
    assert_eq!(unmounted["mount_storage"], false);
}

#[tokio::test]
async fn symlinks_planted_in_scratch_store_nothing_from_outside() {
    // The outputs account: output_files.rs is another test binary, never run at the same time as this one.
    let w = wallet(Account::Outputs);
    clear(&w).await;
    let script = "ln -s /etc/passwd /scratch/passwd; ln -s /etc /scratch/etc; ln -s /workspace/job /scratch/job; \
                  echo ok > /scratch/plain.txt";
    let job = scratch_job(Account::Outputs, script).await;
    assert_eq!(job["status"], "completed", "{job}");
    let skipped: Vec<&str> = job["storage_sync"]["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| s["path"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(skipped, ["etc", "job", "passwd"], "{job}");
    let listing = list(&w).await;
    let stored = paths(&listing);
    assert!(stored.contains(&"plain.txt".to_string()), "{listing}");
    assert!(!stored.iter().any(|p| p.contains("passwd") || p.starts_with("etc") || p == "job"), "{listing}");
    // The next job gets no link and no host file back.
    let next = scratch_job(Account::Outputs, "ls -A /scratch; cat /scratch/passwd 2>/dev/null | head -1").await;
    assert!(!next["output"].as_str().unwrap_or_default().contains("root:"), "{next}");
    clear(&w).await;
}

#[tokio::test]
async fn over_quota_the_job_fails_and_the_stored_files_stay_as_they_were_then_they_expire() {
    let w = wallet(Account::StorageQuota);
    let address = format!("{:#x}", w.address);
    internal_post("/internal/storage/quota", &json!({ "wallet": address, "quota_bytes": 1000, "max_files": 3 })).await;
    clear(&w).await;

    let first = scratch_job(Account::StorageQuota, "echo keep > /scratch/keep.txt").await;
    assert_eq!(first["status"], "completed", "{first}");

    // Bytes: 2000 bytes do not fit 1000; the rewrite of keep.txt is refused with it.
    let big = scratch_job(
        Account::StorageQuota,
        "head -c 2000 /dev/zero > /scratch/big.bin; echo changed > /scratch/keep.txt",
    )
    .await;
    assert_eq!(big["status"], "failed", "{big}");
    assert_eq!(big["failure_reason"], "storage_quota_exceeded", "{big}");
    assert_eq!(big["fault"], "user_error");
    assert!(big["failure_message"].as_str().unwrap_or_default().contains("quota of 1000 bytes"), "{big}");

    // Files: 4 files do not fit 3.
    let many = scratch_job(Account::StorageQuota, "for i in 1 2 3; do echo $i > /scratch/f$i; done").await;
    assert_eq!(many["failure_reason"], "storage_quota_exceeded", "{many}");
    assert!(many["failure_message"].as_str().unwrap_or_default().contains("limit of 3 files"), "{many}");

    let listing = list(&w).await;
    assert_eq!(paths(&listing), ["keep.txt"], "{listing}");
    assert_eq!(listing["files"][0]["size"], 5, "keep.txt is the version before the refused jobs");
    assert_eq!(listing["quota_bytes"], 1000);
    assert_eq!(listing["tier"], "custom");
    let read = scratch_job(Account::StorageQuota, "cat /scratch/keep.txt").await;
    assert_eq!(read["output"], "keep\n", "{read}");

    // Expiry: 91 days from now nothing of this wallet was accessed for 90 days.
    let later = (now_s() + 91 * 86_400) * 1000;
    let swept = internal_post("/internal/storage/housekeeping", &json!({ "now_ms": later, "wallet": address })).await;
    assert!(swept["expired_files"].as_u64() >= Some(1), "{swept}");
    assert!(paths(&list(&w).await).is_empty());
    let after = scratch_job(Account::StorageQuota, "ls -A /scratch | wc -l").await;
    assert_eq!(after["output"], "0\n", "{after}");
    // The real cron runs the same housekeeping (nothing of this wallet left to expire, and it must not fail).
    ouro_e2e::run_cron().await;

    // Concurrent jobs of one wallet. Each fits the quota alone, not both: the first commit wins, the other job
    // fails on the edge's own check (both pulled an empty storage, so neither executor could see it coming).
    let both = |a: &'static str, b: &'static str| async move {
        tokio::join!(scratch_job(Account::StorageQuota, a), scratch_job(Account::StorageQuota, b))
    };
    let (a, b) =
        both("sleep 3; head -c 600 /dev/zero > /scratch/one.bin", "sleep 3; head -c 600 /dev/zero > /scratch/two.bin")
            .await;
    let reasons = [&a["failure_reason"], &b["failure_reason"]];
    assert!(reasons.contains(&&Value::Null) && reasons.contains(&&json!("storage_quota_exceeded")), "{a}\n{b}");
    assert_eq!(list(&w).await["file_count"], 1);
    clear(&w).await;

    // Last writer wins per file, and the overwritten write is recorded as a conflict.
    let (a, b) = both("sleep 3; echo from-a > /scratch/same.txt", "sleep 3; echo from-b > /scratch/same.txt").await;
    assert_eq!((a["status"].as_str(), b["status"].as_str()), (Some("completed"), Some("completed")), "{a}\n{b}");
    let conflicts: Vec<&Value> =
        [&a, &b].into_iter().filter_map(|j| j["storage_sync"]["conflicts"].as_array()).flatten().collect();
    assert_eq!(conflicts, [&json!("same.txt")], "exactly the later commit saw the conflict: {a}\n{b}");
    clear(&w).await;
}

#[tokio::test]
async fn the_storage_api_refuses_bad_signatures_and_rate_limits_at_30_per_minute() {
    // A fresh wallet: signatures need no funds, and its rate-limit counter is this test's alone.
    let w = fresh_wallet();
    let good = signed_query(&w, Action::StorageList);
    // Signed for another action: 401.
    let wrong = signed_query(&w, Action::StorageDelete { path: "x" });
    let resp = http().get(format!("{}/api/storage?{wrong}", edge_url())).send().await.expect("answer");
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["code"], "invalid_signature", "{body}");
    let resp = http().get(format!("{}/api/storage", edge_url())).send().await.expect("answer");
    assert_eq!(resp.status().as_u16(), 401);
    // A bad path is a 422 naming the field.
    let q = signed_query(&w, Action::StorageGet { path: "../etc/passwd" });
    let resp = http()
        .get(format!("{}/api/storage/files?path=..%2Fetc%2Fpasswd&{q}", edge_url()))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status().as_u16(), 422);

    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..40 {
        let resp = http().get(format!("{}/api/storage?{good}", edge_url())).send().await.expect("answer");
        statuses.push(resp.status().as_u16());
        if resp.status().as_u16() == 429 {
            retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(statuses.len() <= 31, "at most 30 pass per minute: {statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("60"));
}
