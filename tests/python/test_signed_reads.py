"""Reads signed by the wallet, with signatures made by a standard wallet library (eth-account), not by Ouro's
code: the job view, its events stream and the wallet's job list. Account 22 pays (its own jobs only)."""

from __future__ import annotations

import asyncio
import json
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

ACCOUNT_INDEX = 22


@pytest.fixture(scope="module")
def owner() -> dict:
    return account(ACCOUNT_INDEX)


def sign(key: str, message: str) -> str:
    signed = Account.sign_message(encode_defunct(text=message), private_key=key)
    return "0x" + signed.signature.hex().removeprefix("0x")


def signed(key: str, message_of, skew: int = 0) -> dict:
    """Query params for `message_of(wallet_lowercase, ts)` signed by `key`."""
    wallet = Account.from_key(key).address.lower()
    ts = int(time.time()) + skew
    return {"wallet": wallet, "signature": sign(key, message_of(wallet, ts)), "timestamp": str(ts)}


async def _paid_submit(url: str, key: str, spec: dict) -> str:
    client = x402Client()
    client.register(NETWORK, ExactEvmScheme(signer=EthAccountSigner(Account.from_key(key))))
    async with httpx.AsyncClient(transport=x402_httpx_transport(client), timeout=TIMEOUT) as http:
        resp = await http.post(f"{url}/api/compute/submit", json=spec)
        await resp.aread()
    assert resp.status_code == 200, resp.text
    return resp.json()["job_id"]


def wait_for_job(url: str, job_id: str) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = httpx.get(f"{url}/api/jobs/{job_id}", timeout=TIMEOUT).json()
        if job["status"] in ("completed", "failed"):
            return job
        time.sleep(1)
    raise AssertionError(f"job {job_id} did not finish")


@pytest.fixture(scope="module")
def jobs(ouro_url, owner) -> list[str]:
    """Two finished jobs of the owner, oldest first."""
    ids = []
    for n in range(2):
        job_id = asyncio.run(_paid_submit(ouro_url, owner["private_key"], {"script": f"echo signed {n}"}))
        assert wait_for_job(ouro_url, job_id)["status"] == "completed"
        ids.append(job_id)
    return ids


def view(job_id):
    return lambda wallet, ts: f"ouro-job-view:{job_id}:{wallet}:{ts}"


def test_job_view_right_wallet_200_wrong_wallet_403_stale_401(ouro_url, owner, jobs):
    job_id = jobs[0]
    url = f"{ouro_url}/api/jobs/{job_id}"
    ok = httpx.get(url, params=signed(owner["private_key"], view(job_id)), timeout=TIMEOUT)
    assert ok.status_code == 200, ok.text
    assert ok.json()["output"] == "signed 0\n"

    stranger = Account.create().key.hex()
    wrong = httpx.get(url, params=signed(stranger, view(job_id)), timeout=TIMEOUT)
    assert wrong.status_code == 403, wrong.text
    assert wrong.json()["code"] == "not_job_owner"

    stale = httpx.get(url, params=signed(owner["private_key"], view(job_id), skew=-400), timeout=TIMEOUT)
    assert stale.status_code == 401, stale.text
    assert stale.json()["code"] == "stale_signature"

    # A signature over another job, or by another key for this wallet: proves nothing.
    other_job = signed(owner["private_key"], view(jobs[1]))
    assert httpx.get(url, params=other_job, timeout=TIMEOUT).status_code == 401
    forged = signed(stranger, view(job_id)) | {"wallet": owner["address"].lower()}
    forged_resp = httpx.get(url, params=forged, timeout=TIMEOUT)
    assert forged_resp.status_code == 401 and forged_resp.json()["code"] == "invalid_signature"

    # The checksummed address in the query is the same wallet.
    checksummed = signed(owner["private_key"], view(job_id)) | {"wallet": owner["address"]}
    assert httpx.get(url, params=checksummed, timeout=TIMEOUT).status_code == 200


def test_events_stream_is_signed_over_its_own_message(ouro_url, owner, jobs):
    job_id = jobs[0]
    url = f"{ouro_url}/api/jobs/{job_id}/events"
    events_msg = lambda wallet, ts: f"ouro-job-events:{job_id}:{wallet}:{ts}"
    with httpx.stream("GET", url, params=signed(owner["private_key"], events_msg), timeout=TIMEOUT) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        body = "".join(resp.iter_text())
    data = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    assert "".join(d.get("data", "") for d in data if d["type"] == "output") == "signed 0\n"
    assert data[-1]["terminal"] is True and data[-1]["status"] == "completed"
    # The view's signature does not open the stream.
    assert httpx.get(url, params=signed(owner["private_key"], view(job_id)), timeout=TIMEOUT).status_code == 401


def test_my_jobs_newest_first_paginated(ouro_url, owner, jobs):
    listing = lambda wallet, ts: f"ouro-job-list:{wallet}:{ts}"
    url = f"{ouro_url}/api/jobs"
    first = httpx.get(url, params=signed(owner["private_key"], listing) | {"limit": "1"}, timeout=TIMEOUT)
    assert first.status_code == 200, first.text
    page = first.json()
    assert page["wallet"] == owner["address"].lower()
    assert [j["job_id"] for j in page["jobs"]] == [jobs[1]], "newest first"
    assert page["next_cursor"]
    second = httpx.get(
        url,
        params=signed(owner["private_key"], listing) | {"limit": "1", "cursor": page["next_cursor"]},
        timeout=TIMEOUT,
    )
    assert second.status_code == 200, second.text
    assert [j["job_id"] for j in second.json()["jobs"]] == [jobs[0]]
    assert "output" not in second.json()["jobs"][0], "a list shows no output"

    # Unsigned, or signed by another key: no list.
    assert httpx.get(url, params={"wallet": owner["address"]}, timeout=TIMEOUT).status_code == 401
    stranger = Account.create().key.hex()
    forged = signed(stranger, listing) | {"wallet": owner["address"].lower()}
    assert httpx.get(url, params=forged, timeout=TIMEOUT).status_code == 401
    bad_limit = httpx.get(url, params=signed(owner["private_key"], listing) | {"limit": "1000"}, timeout=TIMEOUT)
    assert bad_limit.status_code == 422 and bad_limit.json()["field"] == "limit"
