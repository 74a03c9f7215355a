"""A legacy x402 v1 client paying the running stack: the official Python SDK's own v1 scheme client
(`x402.mechanisms.evm.exact.v1.ExactEvmSchemeV1`, registered with `register_v1` for `base-sepolia`).

A v1 client reads the requirements from the 402 *body* (`x402Version: 1`, `accepts`, `maxAmountRequired`,
network `base-sepolia`), pays with `X-PAYMENT` and reads the settlement from `X-PAYMENT-RESPONSE`. The SDK
creates and encodes the payment; nothing here signs by hand. Pays from anvil account 14 (money safety's).
"""

from __future__ import annotations

import time

import httpx
from eth_account import Account
from x402 import x402ClientSync
from x402.http import X_PAYMENT_HEADER, X_PAYMENT_RESPONSE_HEADER, decode_payment_response_header, x402HTTPClientSync
from x402.mechanisms.evm.exact.v1.client import ExactEvmSchemeV1
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas.v1 import PaymentRequiredV1

from conftest import TIMEOUT, account

ACCOUNT_INDEX = 14
SPEC = {"script": "echo hello from v1"}


def _account() -> dict:
    return account(ACCOUNT_INDEX)


def test_a_v1_client_pays_with_x_payment(ouro_url, usdc_balance, submit_unpaid):
    account = _account()
    client = x402ClientSync()
    client.register_v1("base-sepolia", ExactEvmSchemeV1(signer=EthAccountSigner(Account.from_key(account["private_key"]))))

    unpaid = submit_unpaid(SPEC)
    assert unpaid.status_code == 402, unpaid.text
    body = unpaid.json()
    required = PaymentRequiredV1.model_validate({k: body[k] for k in ("x402Version", "error", "accepts")})
    assert required.x402_version == 1
    offered = required.accepts[0]
    assert (offered.scheme, offered.network) == ("exact", "base-sepolia")
    assert offered.resource.endswith("/api/compute/submit")

    payload = client.create_payment_payload(required)
    assert payload.x402_version == 1
    headers = x402HTTPClientSync(client).encode_payment_signature_header(payload)
    assert list(headers) == [X_PAYMENT_HEADER]

    before = usdc_balance(account["address"])
    paid = httpx.post(f"{ouro_url}/api/compute/submit", json=SPEC, headers=headers, timeout=TIMEOUT)
    assert paid.status_code == 200, paid.text
    assert "payment-response" not in paid.headers, "a v1 client is answered in its own header"
    settlement = decode_payment_response_header(paid.headers[X_PAYMENT_RESPONSE_HEADER])
    assert settlement.success is True
    assert settlement.network == "base-sepolia"
    assert settlement.transaction == paid.json()["transaction"]

    job_id = paid.json()["job_id"]
    deadline = time.monotonic() + 120
    while True:
        job = httpx.get(f"{ouro_url}/api/jobs/{job_id}", timeout=TIMEOUT).json()
        if job["status"] in ("completed", "failed"):
            break
        assert time.monotonic() < deadline, job
        time.sleep(1)
    assert job["status"] == "completed", job
    assert job["output"] == "hello from v1\n"
    assert before - usdc_balance(account["address"]) == int(offered.max_amount_required)

    # The same X-PAYMENT again is the same job, not a second charge.
    again = httpx.post(f"{ouro_url}/api/compute/submit", json=SPEC, headers=headers, timeout=TIMEOUT)
    assert again.status_code == 200 and again.json()["job_id"] == job_id, again.text
