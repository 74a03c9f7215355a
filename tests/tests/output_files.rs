//! Job output files (issue #6): what a job leaves in `/outputs` is listed in the job detail as
//! `output_files: [{path, size, sha256}]` and downloadable byte for byte at `GET /api/jobs/{id}/files/{path}`,
//! under the job's read rule; links are never followed; the count is bounded.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ouro_core::wallet_auth::Action;
use ouro_e2e::{client, edge_url, finished, str_of, wallet, Account};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const JOB: Duration = Duration::from_secs(300);

async fn run(body: Value) -> Value {
    let client = client().await;
    let payer = wallet(Account::Outputs);
    let paid = client.pay_and_submit(&payer.key, &body).await.unwrap_or_else(|e| panic!("paying for {body}: {e}"));
    finished(&client, &paid.job_id, JOB).await
}

async fn download(job_id: &str, path: &str, query: &str) -> (u16, Vec<u8>) {
    let url = format!("{}/api/jobs/{job_id}/files/{}{query}", edge_url(), path.replace(' ', "%20"));
    let resp = reqwest::Client::new().get(url).timeout(Duration::from_secs(60)).send().await.expect("answer");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.expect("body").to_vec())
}

fn listed(job: &Value) -> Vec<(String, u64, String)> {
    job["output_files"]
        .as_array()
        .unwrap_or_else(|| panic!("output_files in {job}"))
        .iter()
        .map(|f| (str_of(f, "path").to_string(), f["size"].as_u64().unwrap_or(0), str_of(f, "sha256").to_string()))
        .collect()
}

#[tokio::test]
async fn three_output_files_are_listed_with_sizes_and_hashes_and_download_byte_identical() {
    let script = "mkdir -p /outputs/sub && printf 'hello\\n' > /outputs/a.txt \
                  && head -c 300000 /dev/urandom > '/outputs/sub/random data.bin' && : > /outputs/empty \
                  && cp '/outputs/sub/random data.bin' /tmp/copy && od -An -tx1 /tmp/copy | head -c 0";
    let job = run(json!({ "script": script })).await;
    assert_eq!(job["status"], "completed", "{job}");
    let files = listed(&job);
    let paths: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(paths, ["a.txt", "empty", "sub/random data.bin"], "{job}");
    let id = str_of(&job, "id");
    for (path, size, sha) in &files {
        let (status, bytes) = download(id, path, "").await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(bytes.len() as u64, *size, "{path}");
        assert_eq!(&hex::encode(Sha256::digest(&bytes)), sha, "{path}");
    }
    assert_eq!(files[0].1, 6);
    assert_eq!(files[0].2, hex::encode(Sha256::digest(b"hello\n")));
    assert_eq!(files[2].1, 300_000);

    // A path the job did not return, and a traversal attempt, are 404.
    assert_eq!(download(id, "nope.txt", "").await.0, 404);
    assert_eq!(download(id, "..%2F..%2Fetc%2Fpasswd", "").await.0, 404);

    // The job's read rule: signed by a wallet that did not pay → 403; by the payer → 200.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let sign = |w: &ouro_e2e::Wallet| {
        let address = format!("{:#x}", w.address);
        let digest =
            alloy_primitives::eip191_hash_message(Action::JobView { job_id: id }.message(&address, now).as_bytes());
        let sig = ouro_core::eip712::sign_digest(&w.key, &digest).expect("signed");
        format!("?wallet={address}&signature=0x{}&timestamp={now}", hex::encode(sig))
    };
    assert_eq!(download(id, "a.txt", &sign(&wallet(Account::StorageOther))).await.0, 403);
    let (status, bytes) = download(id, "a.txt", &sign(&wallet(Account::Outputs))).await;
    assert_eq!((status, bytes.as_slice()), (200, b"hello\n".as_slice()));
}

#[tokio::test]
async fn links_in_outputs_are_skipped_and_nothing_outside_is_stored() {
    let script = "ln -s /etc/passwd /outputs/passwd; ln -s /etc /outputs/etc; mkdir /outputs/d; \
                  ln -s ../../workspace/job /outputs/d/job; echo real > /outputs/real.txt";
    let job = run(json!({ "script": script })).await;
    assert_eq!(job["status"], "completed", "{job}");
    let paths: Vec<String> = listed(&job).into_iter().map(|f| f.0).collect();
    assert_eq!(paths, ["real.txt"], "{job}");
    let skipped: Vec<&str> =
        job["output_files_skipped"].as_array().expect("skipped").iter().map(|s| str_of(s, "path")).collect();
    assert_eq!(skipped, ["d/job", "etc", "passwd"], "{job}");
    let id = str_of(&job, "id");
    assert_eq!(download(id, "passwd", "").await.0, 404);
    assert_eq!(download(id, "etc/passwd", "").await.0, 404);
}

#[tokio::test]
async fn output_files_beyond_the_count_limit_are_skipped_by_name() {
    let job = run(json!({ "script": "for i in $(seq 10 34); do echo $i > /outputs/f$i; done" })).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(listed(&job).len(), 20, "the default limit is 20 files");
    let skipped = job["output_files_skipped"].as_array().expect("skipped");
    assert_eq!(skipped.len(), 5, "{job}");
    assert!(str_of(&skipped[0], "reason").contains("limit of 20 output files"), "{job}");
}

#[tokio::test]
async fn a_dockerfile_job_gets_outputs_too() {
    let dockerfile = "FROM ouro-ubuntu\nCMD [\"/bin/sh\", \"-c\", \"echo built > /outputs/result.txt\"]\n";
    let job = run(json!({ "files": [{ "path": "Dockerfile", "content": dockerfile }] })).await;
    assert_eq!(job["status"], "completed", "{job}");
    let files = listed(&job);
    assert_eq!(files.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), ["result.txt"], "{job}");
    assert_eq!(download(str_of(&job, "id"), "result.txt", "").await.1, b"built\n");
}

/// An HMAC-signed streamed upload as an executor sends it (`PUT /internal/jobs/{id}/outputs?path=&size=&sha256=`).
async fn executor_put(job_id: &str, path: &str, size: usize, sha256: &str, body: Vec<u8>, secret: &[u8]) -> u16 {
    let base = format!("{}/internal/jobs/{job_id}/outputs", edge_url());
    let size = size.to_string();
    let url = reqwest::Url::parse_with_params(&base, [("path", path), ("size", size.as_str()), ("sha256", sha256)])
        .expect("url");
    let signed = format!("{}?{}", url.path(), url.query().unwrap_or_default());
    let ts = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let sig = ouro_core::dispatch::sign_request(secret, ts, "PUT", &signed, b"");
    let resp = reqwest::Client::new()
        .put(url)
        .header(ouro_core::dispatch::HEADER_TIMESTAMP, ts.to_string())
        .header(ouro_core::dispatch::HEADER_SIGNATURE, sig)
        .body(body)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("answer");
    resp.status().as_u16()
}

fn executor_secret() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../.dev.vars");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    text.lines()
        .find_map(|l| l.trim().strip_prefix("EXECUTOR_SECRET="))
        .map(|t| t.trim().as_bytes().to_vec())
        .expect("EXECUTOR_SECRET")
}

#[tokio::test]
async fn the_edge_checks_every_uploaded_body_against_its_signed_size_and_hash() {
    let client = client().await;
    let payer = wallet(Account::Outputs);
    let paid = client.pay_and_submit(&payer.key, &json!({ "script": "sleep 8" })).await.expect("paid");
    let id = paid.job_id.as_str();
    let body: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    let sha = hex::encode(Sha256::digest(&body));
    let secret = executor_secret();
    // Wrong hash, short body, long body, bad secret: all refused.
    assert_eq!(executor_put(id, "x.bin", body.len(), &"0".repeat(64), body.clone(), &secret).await, 422);
    assert_eq!(executor_put(id, "x.bin", body.len() + 1, &sha, body.clone(), &secret).await, 422);
    assert_eq!(executor_put(id, "x.bin", body.len() - 1, &sha, body.clone(), &secret).await, 422);
    assert_eq!(executor_put(id, "x.bin", body.len(), &sha, body.clone(), b"wrong-secret-wrong-secret").await, 401);
    assert_eq!(executor_put(id, "../x.bin", body.len(), &sha, body.clone(), &secret).await, 422);
    // The real thing streams through (5 MB).
    assert_eq!(executor_put(id, "x.bin", body.len(), &sha, body, &secret).await, 200);
    let job = finished(&client, id, JOB).await;
    assert_eq!(job["status"], "completed", "{job}");
}
