"""The official Python x402 SDK, unmodified, paying a job with credit: the request names its wallet
(`submitter_address`), the 402 asks for 0 when the wallet's credit covers the price, the SDK signs an
authorization of 0 (proof of the wallet, never settled) and the job runs without money moving.

Uses anvil account 16 (the credits suite's "free job" wallet); credits come from a 60-minute-limit job that ends
at once, which leaves most of its price as credit for unused time.
"""

from __future__ import annotations

import asyncio
import time

import httpx
from x402.http import PAYMENT_REQUIRED_HEADER, PAYMENT_SIGNATURE_HEADER, decode_payment_required_header
from x402.http import decode_payment_signature_header

from conftest import TIMEOUT, account
from test_sdk_payment import paid_submit, wait_for_job

ACCOUNT_INDEX = 16


def _account() -> dict:
    return account(ACCOUNT_INDEX)


def _quote(url: str, spec: dict):
    resp = httpx.post(f"{url}/api/compute/submit", json=spec, timeout=TIMEOUT)
    assert resp.status_code == 402, resp.text
    return decode_payment_required_header(resp.headers[PAYMENT_REQUIRED_HEADER]).accepts[0]


def test_sdk_pays_a_credit_covered_job_with_an_authorization_of_zero(ouro_url, usdc_balance):
    account = _account()
    me = account["address"].lower()
    spec = {"script": "echo paid by credit", "submitter_address": me}

    if _quote(ouro_url, spec).amount != "0":
        earn = {"script": "true", "time_limit_min": 60, "submitter_address": me}
        response, _ = asyncio.run(paid_submit(ouro_url, account["private_key"], earn))
        assert response.status_code == 200, response.text
        assert wait_for_job(ouro_url, response.json()["job_id"])["status"] == "completed"
        deadline = time.monotonic() + 20
        while _quote(ouro_url, spec).amount != "0" and time.monotonic() < deadline:
            time.sleep(0.5)

    quoted = _quote(ouro_url, spec)
    assert quoted.amount == "0", quoted
    assert int(quoted.extra["credit"]) > 0, quoted.extra

    before = usdc_balance(account["address"])
    response, recorder = asyncio.run(paid_submit(ouro_url, account["private_key"], spec))
    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    body = response.json()
    assert body["paid_with_credit"] is True, body
    assert body["amount_paid"] == "0", body
    (_, _), (paid_req, _) = recorder.exchanges
    payload = decode_payment_signature_header(paid_req.headers[PAYMENT_SIGNATURE_HEADER])
    assert payload.payload["authorization"]["value"] == "0"

    job = wait_for_job(ouro_url, body["job_id"])
    assert job["status"] == "completed", job
    assert job["output"] == "paid by credit\n"
    assert job["credit_applied"] > 0
    assert usdc_balance(account["address"]) == before, "no money moved"
