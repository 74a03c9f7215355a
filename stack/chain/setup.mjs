#!/usr/bin/env node
// Prepares a local anvil (chain id 84532) for x402 payments:
//   - installs TestUSDC's runtime code at the Base Sepolia USDC address and Multicall3 at its canonical address
//     (anvil_setCode; both contracts are compiled offline with solc-js, cached under chain/build/),
//   - tops up anvil accounts 1..39 to at least 1,000 USDC (one Multicall3 tx of `mint` calls from account 0).
// Idempotent: when the code and balances are already in place it changes nothing and says so.
// stdout: one JSON line {token, multicall, funded, alreadySetUp, ...}; errors go to stderr with exit code 1.
//
// Usage: node chain/setup.mjs [--rpc http://127.0.0.1:8545]      (env RPC_URL is the fallback for --rpc)
//        env FUNDER_PRIVATE_KEY: key that pays gas for the mint tx (default: anvil account 0)
import { parseArgs } from "node:util";
import {
  createPublicClient,
  createWalletClient,
  defineChain,
  encodeFunctionData,
  hashDomain,
  http,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  ANVIL_ADDRESSES,
  ANVIL_KEYS,
  CHAIN_ID,
  DEFAULT_RPC,
  FUND_AMOUNT,
  MULTICALL3_ADDRESS,
  TOKEN_ADDRESS,
  TOKEN_NAME,
  TOKEN_VERSION,
  compileContracts,
} from "./common.mjs";

function fail(msg) {
  process.stderr.write(`setup: ${msg}\n`);
  process.exit(1);
}

async function main() {
  const t0 = Date.now();
  let args;
  try {
    args = parseArgs({ options: { rpc: { type: "string" }, help: { type: "boolean", short: "h" } } }).values;
  } catch (e) {
    fail(e.message);
  }
  if (args.help) {
    process.stdout.write("usage: node chain/setup.mjs [--rpc URL]  (default $RPC_URL or http://127.0.0.1:8545)\n");
    return;
  }
  const rpc = args.rpc ?? process.env.RPC_URL ?? DEFAULT_RPC;
  const chain = defineChain({
    id: CHAIN_ID,
    name: "anvil (Base Sepolia id)",
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [rpc] } },
    contracts: { multicall3: { address: MULTICALL3_ADDRESS } },
  });
  const transport = http(rpc, { retryCount: 0, timeout: 10_000 });
  const pub = createPublicClient({ chain, transport });

  let chainId;
  try {
    chainId = await pub.getChainId();
  } catch (e) {
    fail(`cannot reach an EVM node at ${rpc} (${e.shortMessage ?? e.message}); start anvil first`);
  }
  if (chainId !== CHAIN_ID) fail(`node at ${rpc} has chain id ${chainId}, expected ${CHAIN_ID} (start anvil with --chain-id ${CHAIN_ID})`);

  const { contracts, solcVersion, cacheHit } = await compileContracts();
  const usdc = contracts.TestUSDC;
  const mc = contracts.Multicall3;

  // 1. Code.
  const codeChanged = [];
  for (const [label, address, runtime] of [
    ["TestUSDC", TOKEN_ADDRESS, usdc.runtime],
    ["Multicall3", MULTICALL3_ADDRESS, mc.runtime],
  ]) {
    const current = (await pub.getCode({ address })) ?? "0x";
    if (current.toLowerCase() !== runtime.toLowerCase()) {
      await pub.request({ method: "anvil_setCode", params: [address, runtime] });
      const after = (await pub.getCode({ address })) ?? "0x";
      if (after.toLowerCase() !== runtime.toLowerCase()) fail(`anvil_setCode for ${label} at ${address} did not take`);
      codeChanged.push(label);
    }
  }

  // 2. Sanity: the token answers like Base Sepolia USDC (EIP-712 domain USDC / 2 at this chain and address).
  const read = (functionName, fnArgs = []) =>
    pub.readContract({ address: TOKEN_ADDRESS, abi: usdc.abi, functionName, args: fnArgs });
  const [name, version, decimals, separator] = await Promise.all([
    read("name"),
    read("version"),
    read("decimals"),
    read("DOMAIN_SEPARATOR"),
  ]);
  const expectedSeparator = hashDomain({
    domain: { name: TOKEN_NAME, version: TOKEN_VERSION, chainId: CHAIN_ID, verifyingContract: TOKEN_ADDRESS },
    types: {
      EIP712Domain: [
        { name: "name", type: "string" },
        { name: "version", type: "string" },
        { name: "chainId", type: "uint256" },
        { name: "verifyingContract", type: "address" },
      ],
    },
  });
  if (name !== TOKEN_NAME || version !== TOKEN_VERSION || decimals !== 6 || separator !== expectedSeparator) {
    fail(`token at ${TOKEN_ADDRESS} answers name=${name} version=${version} decimals=${decimals} separator=${separator}; expected USDC/2/6/${expectedSeparator}`);
  }

  // 3. Balances: top accounts 1..39 up to FUND_AMOUNT with one aggregate3 tx of mint() calls.
  const recipients = ANVIL_ADDRESSES.slice(1, 40);
  const balances = await Promise.all(recipients.map((a) => read("balanceOf", [a])));
  const mints = recipients
    .map((to, i) => ({ to, amount: FUND_AMOUNT - balances[i] }))
    .filter((m) => m.amount > 0n);
  let mintTx;
  if (mints.length > 0) {
    const funderKey = process.env.FUNDER_PRIVATE_KEY ?? ANVIL_KEYS[0];
    const account = privateKeyToAccount(funderKey);
    const wallet = createWalletClient({ account, chain, transport });
    const calls = mints.map((m) => ({
      target: TOKEN_ADDRESS,
      allowFailure: false,
      callData: encodeFunctionData({ abi: usdc.abi, functionName: "mint", args: [m.to, m.amount] }),
    }));
    try {
      mintTx = await wallet.writeContract({
        address: MULTICALL3_ADDRESS,
        abi: mc.abi,
        functionName: "aggregate3",
        args: [calls],
      });
    } catch (e) {
      fail(`mint transaction failed: ${e.shortMessage ?? e.message}`);
    }
    const receipt = await pub.waitForTransactionReceipt({ hash: mintTx, timeout: 30_000 });
    if (receipt.status !== "success") fail(`mint transaction ${mintTx} reverted`);
    const after = await Promise.all(recipients.map((a) => read("balanceOf", [a])));
    const short = recipients.filter((_, i) => after[i] < FUND_AMOUNT);
    if (short.length > 0) fail(`after minting these are still below ${FUND_AMOUNT}: ${short.join(", ")}`);
  }

  const alreadySetUp = codeChanged.length === 0 && mints.length === 0;
  const summary = {
    token: TOKEN_ADDRESS,
    multicall: MULTICALL3_ADDRESS,
    funded: recipients,
    alreadySetUp,
    chainId,
    rpc,
    codeInstalled: codeChanged,
    minted: mints.map((m) => ({ to: m.to, amount: m.amount.toString() })),
    ...(mintTx ? { mintTx } : {}),
    solc: solcVersion,
    compileCached: cacheHit,
    ms: Date.now() - t0,
  };
  if (alreadySetUp) process.stderr.write("setup: already set up, nothing to do\n");
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

main().catch((e) => fail(e?.stack ?? String(e)));
