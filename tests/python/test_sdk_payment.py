"""The official Python x402 SDK (PyPI `x402[evm]` 2.25) paying the running stack end to end.

The SDK does all the x402 work: it parses the 402's PAYMENT-REQUIRED header, signs an EIP-3009
authorization with the `exact` EVM scheme over an eth_account key, retries with PAYMENT-SIGNATURE and
hands back the paid response. Nothing here signs or encodes a payment by hand.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import httpx
from eth_account import Account
from x402 import PaymentRequired, x402Client
from x402.http import (
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    PAYMENT_SIGNATURE_HEADER,
    decode_payment_required_header,
    decode_payment_response_header,
    decode_payment_signature_header,
    x402HTTPClient,
)
from x402.http.clients import x402_httpx_transport
from x402.mechanisms.evm.exact import ExactEvmScheme
from x402.mechanisms.evm.signers import EthAccountSigner

from conftest import NETWORK, TIMEOUT, USDC

SPEC = {"script": "echo hello"}
POLL_SECONDS = 90


class RecordingTransport(httpx.AsyncBaseTransport):
    """The real network transport, remembering every exchange so the test can inspect what the SDK did."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.exchanges: list[tuple[httpx.Request, httpx.Response]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        self.exchanges.append((request, response))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def sdk_client(private_key: str) -> x402Client:
    """An x402 v2 client with the exact EVM scheme registered for our chain, signing with eth_account."""
    client = x402Client()
    client.register(NETWORK, ExactEvmScheme(signer=EthAccountSigner(Account.from_key(private_key))))
    return client


async def paid_submit(url: str, private_key: str, spec: dict) -> tuple[httpx.Response, RecordingTransport]:
    recorder = RecordingTransport()
    transport = x402_httpx_transport(sdk_client(private_key), transport=recorder)
    async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as http:
        response = await http.post(f"{url}/api/compute/submit", json=spec)
        await response.aread()
    return response, recorder


def wait_for_job(url: str, job_id: str) -> dict:
    deadline = time.monotonic() + POLL_SECONDS
    job: dict = {}
    while time.monotonic() < deadline:
        resp = httpx.get(f"{url}/api/jobs/{job_id}", timeout=TIMEOUT)
        assert resp.status_code == 200, resp.text
        job = resp.json()
        if job["status"] in ("completed", "failed"):
            return job
        time.sleep(1)
    raise AssertionError(f"job {job_id} not finished after {POLL_SECONDS}s: {job.get('status')}")


def test_402_is_a_valid_v2_payment_required(submit_unpaid):
    resp = submit_unpaid(SPEC)
    assert resp.status_code == 402, resp.text
    header = resp.headers.get(PAYMENT_REQUIRED_HEADER)
    assert header, "402 without a PAYMENT-REQUIRED header"

    # The SDK's own parsers: the standalone header decoder and the HTTP client's 402 handling.
    required = decode_payment_required_header(header)
    assert isinstance(required, PaymentRequired)
    via_client = x402HTTPClient(x402Client()).get_payment_required_response(resp.headers.get, resp.json())
    assert via_client == required

    assert required.x402_version == 2
    assert required.resource is not None and required.resource.url.endswith("/api/compute/submit")
    assert len(required.accepts) >= 1
    req = required.accepts[0]
    assert req.scheme == "exact"
    assert req.network == NETWORK
    assert req.asset.lower() == USDC.lower()
    assert req.extra.get("name") == "USDC"
    assert req.extra.get("version") == "2"
    assert req.amount.isdigit() and int(req.amount) > 0
    assert req.pay_to.startswith("0x") and len(req.pay_to) == 42
    assert req.max_timeout_seconds > 0


def test_sdk_pays_and_job_runs(ouro_url, payer, rpc, usdc_balance, submit_unpaid):
    # The price the server asks for, from an unpaid request first.
    probe = submit_unpaid(SPEC)
    assert probe.status_code == 402, probe.text
    quoted = decode_payment_required_header(probe.headers[PAYMENT_REQUIRED_HEADER]).accepts[0]

    before = usdc_balance(payer["address"])
    assert before >= int(quoted.amount), "account 9 has too little test USDC"

    response, recorder = asyncio.run(paid_submit(ouro_url, payer["private_key"], SPEC))
    assert response.status_code == 200, f"{response.status_code}: {response.text}"

    # What the SDK did on the wire: one 402, then one paid retry.
    assert len(recorder.exchanges) == 2, [r.status_code for _, r in recorder.exchanges]
    (first_req, first_resp), (paid_req, _) = recorder.exchanges
    assert PAYMENT_SIGNATURE_HEADER not in first_req.headers
    assert first_resp.status_code == 402
    # The 402 the SDK paid. Its amount normally equals the probe's; it may differ only if concurrent jobs moved
    # the demand multiplier in between, so the charge is checked against this one.
    seen = decode_payment_required_header(first_resp.headers[PAYMENT_REQUIRED_HEADER]).accepts[0]
    assert (seen.scheme, seen.network, seen.asset, seen.pay_to) == (
        quoted.scheme, quoted.network, quoted.asset, quoted.pay_to
    )
    payload = decode_payment_signature_header(paid_req.headers[PAYMENT_SIGNATURE_HEADER])
    assert payload.x402_version == 2
    assert payload.accepted == seen
    assert payload.payload["authorization"]["from"].lower() == payer["address"].lower()

    body = response.json()
    job_id = body["job_id"]
    assert job_id

    # PAYMENT-RESPONSE: standard base64 of the SettlementResponse JSON.
    raw = response.headers.get(PAYMENT_RESPONSE_HEADER)
    assert raw, "200 without a PAYMENT-RESPONSE header"
    settlement = json.loads(base64.b64decode(raw))
    assert settlement["success"] is True, settlement
    tx = settlement["transaction"]
    assert tx.startswith("0x") and len(tx) == 66, tx
    assert decode_payment_response_header(raw).transaction == tx  # and the SDK reads it the same way
    assert body.get("transaction") == tx

    receipt = rpc("eth_getTransactionReceipt", [tx])
    assert receipt is not None and int(receipt["status"], 16) == 1, receipt

    job = wait_for_job(ouro_url, job_id)
    assert job["status"] == "completed", job
    assert job["output"] == "hello\n", job

    after = usdc_balance(payer["address"])
    assert before - after == int(seen.amount), (before, after, seen.amount)
