#!/usr/bin/env node
// End-to-end check of the local payment chain: anvil + chain/setup.mjs + facilitator/server.mjs must be running.
// Pays a v2 `exact` PaymentRequirements with the official client (@x402/core x402Client + @x402/evm exact client
// scheme), calls /verify and /settle on our facilitator, checks the balances moved by exactly the amount, that a
// replay is refused, and records the facilitator's reason strings for the usual failures.
//
// Env: RPC_URL (default http://127.0.0.1:8545), FACILITATOR_URL (default http://127.0.0.1:4022).
// Output: one line per check, then "N passed, N failed"; a JSON line with the observed reason strings; exit 1 on failure.
import { x402Client } from "@x402/core/client";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import {
  createPublicClient,
  createWalletClient,
  defineChain,
  http,
  parseAbi,
  parseSignature,
  serializeSignature,
} from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { ANVIL_KEYS, CHAIN_ID, MULTICALL3_ADDRESS, NETWORK, TOKEN_ADDRESS } from "./common.mjs";

const RPC_URL = process.env.RPC_URL || "http://127.0.0.1:8545";
const FACILITATOR_URL = (process.env.FACILITATOR_URL || "http://127.0.0.1:4022").replace(/\/+$/, "");
const PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const AMOUNT = "10000";
// Vector "base-sepolia" in shared/reference/x402-vectors.json.
const EXPECTED_DOMAIN_SEPARATOR = "0x71f17a3b2ff373b803d70a5a07c046c1a2bc8e89c09ef722fcb047abe94c9818";
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

const requirements = {
  scheme: "exact",
  network: NETWORK,
  asset: TOKEN_ADDRESS,
  amount: AMOUNT,
  payTo: PAY_TO,
  maxTimeoutSeconds: 300,
  extra: { name: "USDC", version: "2" },
};

const erc20 = parseAbi([
  "function balanceOf(address) view returns (uint256)",
  "function authorizationState(address,bytes32) view returns (bool)",
  "function DOMAIN_SEPARATOR() view returns (bytes32)",
  "function name() view returns (string)",
  "function version() view returns (string)",
  "function decimals() view returns (uint8)",
  "function transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)",
  "function transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)",
  "function receiveWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)",
]);
const multicallAbi = parseAbi([
  "struct Call3 { address target; bool allowFailure; bytes callData; }",
  "struct Result { bool success; bytes returnData; }",
  "function aggregate3(Call3[] calls) payable returns (Result[])",
  "function getBlockNumber() view returns (uint256)",
  "function getCurrentBlockTimestamp() view returns (uint256)",
  "function getEthBalance(address) view returns (uint256)",
]);

const chain = defineChain({
  id: CHAIN_ID,
  name: "anvil (Base Sepolia id)",
  nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
  rpcUrls: { default: { http: [RPC_URL] } },
  contracts: { multicall3: { address: MULTICALL3_ADDRESS } },
});
const pub = createPublicClient({ chain, transport: http(RPC_URL, { retryCount: 0 }) });
const balanceOf = (a) => pub.readContract({ address: TOKEN_ADDRESS, abi: erc20, functionName: "balanceOf", args: [a] });

let passed = 0;
let failed = 0;
const reasons = {};
function check(label, cond, detail = "") {
  if (cond) passed++;
  else failed++;
  process.stdout.write(`${cond ? "ok  " : "FAIL"} ${label}${detail ? ` — ${detail}` : ""}\n`);
  return cond;
}

async function post(path, paymentPayload, paymentRequirements) {
  const t0 = performance.now();
  const res = await fetch(`${FACILITATOR_URL}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ x402Version: paymentPayload.x402Version, paymentPayload, paymentRequirements }),
  });
  const body = await res.json();
  return { status: res.status, body, ms: Math.round(performance.now() - t0) };
}

function payer(key) {
  const account = privateKeyToAccount(key);
  const client = new x402Client();
  client.register(NETWORK, new ExactEvmScheme(account));
  return { account, client };
}

async function pay(key, reqs = requirements) {
  const { client } = payer(key);
  return client.createPaymentPayload({
    x402Version: 2,
    resource: { url: "http://127.0.0.1/selftest", description: "selftest", mimeType: "application/json" },
    accepts: [reqs],
  });
}

async function main() {
  // --- chain + facilitator preconditions
  const chainId = await pub.getChainId().catch((e) => {
    throw new Error(`anvil not reachable at ${RPC_URL}: ${e.shortMessage ?? e.message}`);
  });
  check("chain id is 84532", chainId === CHAIN_ID, String(chainId));
  const health = await fetch(`${FACILITATOR_URL}/health`).then((r) => r.json()).catch((e) => {
    throw new Error(`facilitator not reachable at ${FACILITATOR_URL}: ${e.message}`);
  });
  check("facilitator /health ok", health.ok === true, JSON.stringify(health));
  const supported = await fetch(`${FACILITATOR_URL}/supported`).then((r) => r.json());
  check(
    "/supported lists v2 exact eip155:84532",
    supported.kinds?.some((k) => k.x402Version === 2 && k.scheme === "exact" && k.network === NETWORK),
    JSON.stringify(supported.kinds),
  );

  // --- token sanity
  const rd = (functionName, args = []) => pub.readContract({ address: TOKEN_ADDRESS, abi: erc20, functionName, args });
  check("token name/version/decimals = USDC/2/6", (await rd("name")) === "USDC" && (await rd("version")) === "2" && (await rd("decimals")) === 6);
  check("DOMAIN_SEPARATOR matches the base-sepolia vector", (await rd("DOMAIN_SEPARATOR")) === EXPECTED_DOMAIN_SEPARATOR);
  const [mcBlock, mcTs] = await Promise.all([
    pub.readContract({ address: MULTICALL3_ADDRESS, abi: multicallAbi, functionName: "getBlockNumber" }),
    pub.readContract({ address: MULTICALL3_ADDRESS, abi: multicallAbi, functionName: "getCurrentBlockTimestamp" }),
  ]);
  check("Multicall3 getBlockNumber/getCurrentBlockTimestamp answer", mcBlock >= 0n && mcTs > 0n);
  const viaMulticall = await pub.multicall({
    contracts: [
      { address: TOKEN_ADDRESS, abi: erc20, functionName: "name" },
      { address: TOKEN_ADDRESS, abi: erc20, functionName: "decimals" },
    ],
  });
  check("viem multicall (aggregate3) works", viaMulticall[0].result === "USDC" && viaMulticall[1].result === 6);

  // --- the happy path with the official client
  const key = ANVIL_KEYS[1];
  const from = privateKeyToAccount(key).address;
  const payload = await pay(key);
  check("client built a v2 exact payload", payload.x402Version === 2 && payload.payload?.authorization?.from === from && payload.payload.authorization.value === AMOUNT);

  const before = { from: await balanceOf(from), to: await balanceOf(PAY_TO) };
  const v = await post("/verify", payload, requirements);
  check("/verify isValid", v.status === 200 && v.body.isValid === true && v.body.payer === from, `${JSON.stringify(v.body)} ${v.ms}ms`);
  const s = await post("/settle", payload, requirements);
  check("/settle success", s.status === 200 && s.body.success === true && /^0x[0-9a-f]{64}$/.test(s.body.transaction ?? ""), `${JSON.stringify(s.body)} ${s.ms}ms`);
  if (s.body.transaction) {
    const receipt = await pub.getTransactionReceipt({ hash: s.body.transaction });
    check("settle tx mined successfully", receipt.status === "success", `block ${receipt.blockNumber}`);
  }
  const after = { from: await balanceOf(from), to: await balanceOf(PAY_TO) };
  check("payer balance dropped by exactly the amount", before.from - after.from === BigInt(AMOUNT), `${before.from} -> ${after.from}`);
  check("payTo balance rose by exactly the amount", after.to - before.to === BigInt(AMOUNT), `${before.to} -> ${after.to}`);
  check("authorizationState(from, nonce) is now true", await rd("authorizationState", [from, payload.payload.authorization.nonce]));

  // --- replay
  const replaySettle = await post("/settle", payload, requirements);
  reasons.replaySettle = replaySettle.body.errorReason;
  check("replayed /settle fails", replaySettle.body.success === false, JSON.stringify(replaySettle.body));
  const replayVerify = await post("/verify", payload, requirements);
  reasons.replayVerify = replayVerify.body.invalidReason;
  check("replayed /verify is invalid", replayVerify.body.isValid === false, JSON.stringify(replayVerify.body));
  const afterReplay = { from: await balanceOf(from), to: await balanceOf(PAY_TO) };
  check("replay moved no money", afterReplay.from === after.from && afterReplay.to === after.to);

  // --- usual failures: record the reason strings (verify, and settle where it matters)
  // bad signature: signed by account 2 but claims account 1's address
  {
    const p = await pay(ANVIL_KEYS[2]);
    p.payload.authorization.from = from;
    const r = await post("/verify", p, requirements);
    reasons.badSignatureVerify = r.body.invalidReason;
    check("bad signature: /verify invalid", r.body.isValid === false, JSON.stringify(r.body));
    const r2 = await post("/settle", p, requirements);
    reasons.badSignatureSettle = r2.body.errorReason;
    check("bad signature: /settle fails", r2.body.success === false, JSON.stringify(r2.body));
  }
  // wrong amount: payload signs 10000, requirements ask 20000
  {
    const p = await pay(key);
    const r = await post("/verify", p, { ...requirements, amount: "20000" });
    reasons.wrongAmountVerify = r.body.invalidReason;
    check("wrong amount: /verify invalid", r.body.isValid === false, JSON.stringify(r.body));
  }
  // wrong recipient
  {
    const p = await pay(key);
    const r = await post("/verify", p, { ...requirements, payTo: privateKeyToAccount(ANVIL_KEYS[3]).address });
    reasons.wrongPayToVerify = r.body.invalidReason;
    check("wrong payTo: /verify invalid", r.body.isValid === false, JSON.stringify(r.body));
  }
  // expired: maxTimeoutSeconds 1 makes validBefore < now + 6
  {
    const p = await pay(key, { ...requirements, maxTimeoutSeconds: 1 });
    const r = await post("/verify", p, requirements);
    reasons.expiredVerify = r.body.invalidReason;
    check("expired authorization: /verify invalid", r.body.isValid === false, JSON.stringify(r.body));
  }
  // insufficient balance: a fresh key with no USDC
  {
    const p = await pay(generatePrivateKey());
    const r = await post("/verify", p, requirements);
    reasons.insufficientBalanceVerify = r.body.invalidReason;
    check("insufficient balance: /verify invalid", r.body.isValid === false, JSON.stringify(r.body));
    const r2 = await post("/settle", p, requirements);
    reasons.insufficientBalanceSettle = r2.body.errorReason;
    check("insufficient balance: /settle fails", r2.body.success === false, JSON.stringify(r2.body));
  }
  // high-s twin of a valid signature (recovers off-chain, must fail on-chain)
  {
    const p = await pay(key);
    const sig = parseSignature(p.payload.signature);
    const highS = `0x${(SECP256K1_N - BigInt(sig.s)).toString(16).padStart(64, "0")}`;
    p.payload.signature = serializeSignature({ r: sig.r, s: highS, yParity: sig.yParity === 0 ? 1 : 0 });
    const r = await post("/verify", p, requirements);
    reasons.highSVerify = r.body.invalidReason;
    check("high-s signature: /verify invalid", r.body.isValid === false, JSON.stringify(r.body));
    const r2 = await post("/settle", p, requirements);
    reasons.highSSettle = r2.body.errorReason;
    check("high-s signature: /settle fails", r2.body.success === false, JSON.stringify(r2.body));
  }
  // malformed body
  {
    const res = await fetch(`${FACILITATOR_URL}/verify`, { method: "POST", body: "{nope" });
    check("malformed /verify body -> 400", res.status === 400);
  }

  // --- the token directly: bytes-signature overload and receiveWithAuthorization (facilitator uses v,r,s)
  {
    const signerAcct = privateKeyToAccount(ANVIL_KEYS[2]);
    const submitter = createWalletClient({ account: privateKeyToAccount(ANVIL_KEYS[3]), chain, transport: http(RPC_URL) });
    const p = await pay(ANVIL_KEYS[2]);
    const a = p.payload.authorization;
    const b0 = await balanceOf(PAY_TO);
    const hash = await submitter.writeContract({
      address: TOKEN_ADDRESS,
      abi: erc20,
      functionName: "transferWithAuthorization",
      args: [a.from, a.to, BigInt(a.value), BigInt(a.validAfter), BigInt(a.validBefore), a.nonce, p.payload.signature],
    });
    const rc = await pub.waitForTransactionReceipt({ hash });
    check("transferWithAuthorization(bytes) overload works", rc.status === "success" && (await balanceOf(PAY_TO)) - b0 === BigInt(AMOUNT));
    let msg = "";
    try {
      await pub.simulateContract({
        account: submitter.account,
        address: TOKEN_ADDRESS,
        abi: erc20,
        functionName: "transferWithAuthorization",
        args: [a.from, a.to, BigInt(a.value), BigInt(a.validAfter), BigInt(a.validBefore), a.nonce, p.payload.signature],
      });
    } catch (e) {
      msg = e.shortMessage ?? e.message;
    }
    check("direct replay reverts 'authorization is used or canceled'", /FiatTokenV2: authorization is used or canceled/.test(msg), oneLine(msg));
    const now = BigInt(Math.floor(Date.now() / 1000));
    const nonce = `0x${"ab".repeat(32)}`;
    const recvTo = submitter.account.address;
    const message = { from: signerAcct.address, to: recvTo, value: 1n, validAfter: 0n, validBefore: now + 600n, nonce };
    const recvSig = await signerAcct.signTypedData({
      domain: { name: "USDC", version: "2", chainId: CHAIN_ID, verifyingContract: TOKEN_ADDRESS },
      types: {
        ReceiveWithAuthorization: [
          { name: "from", type: "address" },
          { name: "to", type: "address" },
          { name: "value", type: "uint256" },
          { name: "validAfter", type: "uint256" },
          { name: "validBefore", type: "uint256" },
          { name: "nonce", type: "bytes32" },
        ],
      },
      primaryType: "ReceiveWithAuthorization",
      message,
    });
    const alreadyUsed = await rd("authorizationState", [signerAcct.address, nonce]);
    if (!alreadyUsed) {
      const h2 = await submitter.writeContract({
        address: TOKEN_ADDRESS,
        abi: erc20,
        functionName: "receiveWithAuthorization",
        args: [message.from, message.to, message.value, message.validAfter, message.validBefore, nonce, recvSig],
      });
      check("receiveWithAuthorization works", (await pub.waitForTransactionReceipt({ hash: h2 })).status === "success");
    } else {
      check("receiveWithAuthorization (nonce already used by an earlier run)", true);
    }
  }

  process.stdout.write(`${JSON.stringify({ reasons })}\n`);
}

function oneLine(s) {
  return String(s).replace(/\s+/g, " ").slice(0, 200);
}

try {
  await main();
} catch (e) {
  check("selftest ran to the end", false, e?.stack ?? String(e));
}
process.stdout.write(`${passed} passed, ${failed} failed\n`);
process.exit(failed === 0 ? 0 : 1);
