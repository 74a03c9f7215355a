"""Per-wallet storage through the signed storage API, with signatures made by a standard wallet library
(`eth-account`'s EIP-191 `sign_message`), and jobs paid by the official x402 SDK.

Account 28 of accounts.json is this suite's alone (storage tests of #6 own 24-28).
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from x402 import x402Client
from x402.http.clients import x402_httpx_transport
from x402.mechanisms.evm.exact import ExactEvmScheme
from x402.mechanisms.evm.signers import EthAccountSigner

from conftest import NETWORK, TIMEOUT, account

ACCOUNT_INDEX = 28
POLL_SECONDS = 120


@pytest.fixture(scope="module")
def owner() -> dict:
    return account(ACCOUNT_INDEX)


def signed(key: str, message: str) -> str:
    return "0x" + Account.sign_message(encode_defunct(text=message), private_key=key).signature.hex().removeprefix("0x")


def params(key: str, kind: str, path: str | None = None, ts: int | None = None) -> dict:
    wallet = Account.from_key(key).address.lower()
    ts = ts or int(time.time())
    message = f"ouro-storage-{kind}:{wallet}:{ts}" if path is None else f"ouro-storage-{kind}:{wallet}:{path}:{ts}"
    out = {"wallet": wallet, "signature": signed(key, message), "timestamp": str(ts)}
    if path is not None:
        out["path"] = path
    return out


def run_job(url: str, key: str, script: str) -> dict:
    client = x402Client()
    client.register(NETWORK, ExactEvmScheme(signer=EthAccountSigner(Account.from_key(key))))

    async def submit() -> httpx.Response:
        async with httpx.AsyncClient(transport=x402_httpx_transport(client), timeout=TIMEOUT) as http:
            resp = await http.post(f"{url}/api/compute/submit", json={"script": script, "mount_storage": True})
            await resp.aread()
            return resp

    resp = asyncio.run(submit())
    assert resp.status_code == 200, resp.text
    assert resp.json()["mount_storage"] is True
    job_id = resp.json()["job_id"]
    deadline = time.monotonic() + POLL_SECONDS
    while time.monotonic() < deadline:
        job = httpx.get(f"{url}/api/jobs/{job_id}", timeout=TIMEOUT).json()
        if job["status"] in ("completed", "failed"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish")


def listing(url: str, key: str) -> httpx.Response:
    return httpx.get(f"{url}/api/storage", params=params(key, "list"), timeout=TIMEOUT)


def test_list_download_and_delete_with_eth_account_signatures(ouro_url, owner):
    key = owner["private_key"]
    content = f"stored by python {time.time_ns()}\n"
    job = run_job(ouro_url, key, f"printf '%s' '{content}' > /scratch/py.txt; mkdir -p /scratch/dir; echo 1 > /scratch/dir/one")
    assert job["status"] == "completed", job

    resp = listing(ouro_url, key)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["wallet"] == owner["address"].lower()
    assert {"tier", "quota_bytes", "used_bytes", "file_count", "max_files", "files", "last_accessed_at", "created_at"} <= set(body)
    by_path = {f["path"]: f for f in body["files"]}
    assert by_path["py.txt"]["size"] == len(content.encode())
    assert {"path", "size", "modified"} <= set(by_path["py.txt"])

    # Download one file: byte-identical.
    resp = httpx.get(f"{ouro_url}/api/storage/files", params=params(key, "get", "py.txt"), timeout=TIMEOUT)
    assert resp.status_code == 200, resp.text
    assert resp.content == content.encode()

    # A signature by another key for this wallet: 401. A stale one: 401.
    other = Account.create().key.hex()
    forged = params(key, "list")
    forged["signature"] = params(other, "list", ts=int(forged["timestamp"]))["signature"]
    resp = httpx.get(f"{ouro_url}/api/storage", params=forged, timeout=TIMEOUT)
    assert resp.status_code == 401, resp.text
    assert resp.json()["code"] == "invalid_signature"
    resp = httpx.get(f"{ouro_url}/api/storage", params=params(key, "list", ts=int(time.time()) - 1000), timeout=TIMEOUT)
    assert resp.status_code == 401

    # Another wallet naming this wallet's path sees its own (empty) storage: 404, and its list is empty.
    resp = httpx.get(f"{ouro_url}/api/storage/files", params=params(other, "get", "py.txt"), timeout=TIMEOUT)
    assert resp.status_code == 404, resp.text
    resp = httpx.delete(f"{ouro_url}/api/storage/files", params=params(other, "delete", "py.txt"), timeout=TIMEOUT)
    assert resp.status_code == 404, resp.text
    resp = listing(ouro_url, other)
    assert resp.status_code == 200 and resp.json()["files"] == [] and resp.json()["created_at"] is None

    # Delete with the owner's signature; a signature for another path does not delete this one.
    wrong_path = params(key, "delete", "dir/one")
    wrong_path["path"] = "py.txt"
    assert httpx.delete(f"{ouro_url}/api/storage/files", params=wrong_path, timeout=TIMEOUT).status_code == 401
    resp = httpx.delete(f"{ouro_url}/api/storage/files", params=params(key, "delete", "py.txt"), timeout=TIMEOUT)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"deleted": "py.txt"}
    resp = httpx.delete(f"{ouro_url}/api/storage/files", params=params(key, "delete", "py.txt"), timeout=TIMEOUT)
    assert resp.status_code == 404
    assert "py.txt" not in {f["path"] for f in listing(ouro_url, key).json()["files"]}

    # The next job no longer finds it; the other file is still there.
    job = run_job(ouro_url, key, "test -e /scratch/py.txt && echo present || echo gone; cat /scratch/dir/one")
    assert job["output"] == "gone\n1\n", job
    resp = httpx.delete(f"{ouro_url}/api/storage/files", params=params(key, "delete", "dir/one"), timeout=TIMEOUT)
    assert resp.status_code == 200
