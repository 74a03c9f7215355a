//! The few chain reads the edge makes over JSON-RPC (`RPC_URL`): balances for the service wallet, the receipt of
//! a settlement for its gas, and a transaction's input for ERC-8021 decoding. Calls go through `outbound` (every
//! one under a deadline) and the ABI of `balanceOf` is encoded by hand: one selector and one padded word.
//!
//! Quantities are parsed into `u128`: ample for any real balance or gas figure, and a node answering something
//! larger is reported as a bad answer rather than wrapped.

use serde_json::{json, Value};

use crate::outbound::{post_json, OutboundError};

/// `keccak256("balanceOf(address)")[..4]`.
const BALANCE_OF_SELECTOR: &str = "70a08231";
/// `keccak256("authorizationState(address,bytes32)")[..4]` (EIP-3009).
const AUTHORIZATION_STATE_SELECTOR: &str = "e94a0102";
/// `keccak256("AuthorizationUsed(address,bytes32)")`, the EIP-3009 event of a spent authorization.
const AUTHORIZATION_USED_TOPIC: &str = "0x98de503528ee59b575ef0c0a2576a82497bfc029a5685b209e9ec333479b10a5";
/// How far back a spent authorization's transaction is looked for (blocks; ~5 h on Base).
const AUTHORIZATION_LOG_WINDOW: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("no RPC_URL is configured")]
    NotConfigured,
    #[error("{0}")]
    Transport(#[from] OutboundError),
    #[error("the RPC node answered HTTP {status}: {body}")]
    BadStatus { status: u16, body: String },
    #[error("the RPC node refused {method}: {message} (code {code})")]
    Node { method: &'static str, code: i64, message: String },
    #[error("the RPC node's answer to {method} is not understood: {why}")]
    BadAnswer { method: &'static str, why: String },
}

/// A settlement transaction's gas, from its receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub gas_used: u64,
    pub effective_gas_price_wei: u128,
}

impl Receipt {
    /// What the transaction cost in wei: `gasUsed × effectiveGasPrice`.
    pub fn cost_wei(&self) -> u128 {
        u128::from(self.gas_used).saturating_mul(self.effective_gas_price_wei)
    }
}

pub struct Rpc<'a> {
    pub url: &'a str,
    pub timeout_ms: u64,
}

impl Rpc<'_> {
    /// One JSON-RPC call; the `result` (which may be `null`).
    async fn call(&self, method: &'static str, params: Value) -> Result<Value, RpcError> {
        if self.url.is_empty() {
            return Err(RpcError::NotConfigured);
        }
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }).to_string();
        let (status, text) = post_json(self.url, &body, &[], self.timeout_ms).await?;
        let answer: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) if status != 200 => {
                return Err(RpcError::BadStatus { status, body: text.chars().take(200).collect() });
            }
            Err(e) => return Err(RpcError::BadAnswer { method, why: e.to_string() }),
        };
        if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
            return Err(RpcError::Node {
                method,
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error.get("message").and_then(Value::as_str).unwrap_or("").chars().take(200).collect(),
            });
        }
        if status != 200 {
            return Err(RpcError::BadStatus { status, body: text.chars().take(200).collect() });
        }
        answer.get("result").cloned().ok_or(RpcError::BadAnswer { method, why: "no result".into() })
    }

    /// The ETH balance of `address` (lowercase `0x` hex) in wei, at the latest block.
    pub async fn eth_balance(&self, address: &str) -> Result<u128, RpcError> {
        let method = "eth_getBalance";
        let result = self.call(method, json!([address, "latest"])).await?;
        quantity(method, &result)
    }

    /// `token.balanceOf(owner)` in the token's atomic units, at the latest block.
    pub async fn erc20_balance(&self, token: &str, owner: &str) -> Result<u128, RpcError> {
        let method = "eth_call";
        let data = balance_of_calldata(owner).ok_or(RpcError::BadAnswer { method, why: format!("{owner} is not an address") })?;
        let result = self.call(method, json!([{ "to": token, "data": data }, "latest"])).await?;
        let word = result.as_str().ok_or(RpcError::BadAnswer { method, why: "the result is not hex".into() })?;
        uint_word(word).ok_or_else(|| RpcError::BadAnswer { method, why: format!("{word:?} is not one uint256 below 2^128") })
    }

    /// EIP-3009 `token.authorizationState(authorizer, nonce)`: whether the authorization was spent on chain (the
    /// one source of truth when a settlement's outcome is unknown).
    pub async fn authorization_used(&self, token: &str, authorizer: &str, nonce: &str) -> Result<bool, RpcError> {
        let method = "eth_call";
        let (Some(who), Some(nonce_word)) = (word_of_address(authorizer), word_of_bytes32(nonce)) else {
            return Err(RpcError::BadAnswer { method, why: format!("{authorizer}/{nonce} is not an address and a nonce") });
        };
        let data = format!("0x{AUTHORIZATION_STATE_SELECTOR}{who}{nonce_word}");
        let result = self.call(method, json!([{ "to": token, "data": data }, "latest"])).await?;
        let word = result.as_str().ok_or(RpcError::BadAnswer { method, why: "the result is not hex".into() })?;
        uint_word(word).map(|v| v != 0).ok_or_else(|| RpcError::BadAnswer { method, why: format!("{word:?} is not a bool") })
    }

    /// The transaction that spent the authorization `(authorizer, nonce)`, from the token's `AuthorizationUsed`
    /// event in the recent blocks; `None` when not found there.
    pub async fn authorization_tx(&self, token: &str, authorizer: &str, nonce: &str) -> Result<Option<String>, RpcError> {
        let method = "eth_getLogs";
        let (Some(who), Some(nonce_word)) = (word_of_address(authorizer), word_of_bytes32(nonce)) else {
            return Ok(None);
        };
        let head = quantity("eth_blockNumber", &self.call("eth_blockNumber", json!([])).await?)?;
        let from = (head as u64).saturating_sub(AUTHORIZATION_LOG_WINDOW);
        let filter = json!([{
            "address": token,
            "fromBlock": format!("{from:#x}"),
            "toBlock": "latest",
            "topics": [AUTHORIZATION_USED_TOPIC, format!("0x{who}"), format!("0x{nonce_word}")],
        }]);
        let logs = self.call(method, filter).await?;
        Ok(logs
            .as_array()
            .and_then(|l| l.first())
            .and_then(|log| log.get("transactionHash"))
            .and_then(Value::as_str)
            .filter(|h| is_tx_hash(h))
            .map(str::to_string))
    }

    /// The receipt of `tx_hash`: `None` while it is unknown or not mined.
    pub async fn receipt(&self, tx_hash: &str) -> Result<Option<Receipt>, RpcError> {
        let method = "eth_getTransactionReceipt";
        let result = self.call(method, json!([tx_hash])).await?;
        if result.is_null() {
            return Ok(None);
        }
        let gas_used = quantity(method, &result["gasUsed"])?;
        let gas_used = u64::try_from(gas_used).map_err(|_| RpcError::BadAnswer { method, why: "gasUsed overflows".into() })?;
        // Pre-London nodes have no effectiveGasPrice; the transaction's gasPrice is then what was paid.
        let price = if result["effectiveGasPrice"].is_null() { &result["gasPrice"] } else { &result["effectiveGasPrice"] };
        Ok(Some(Receipt { gas_used, effective_gas_price_wei: quantity(method, price)? }))
    }

    /// The calldata (`input`) of `tx_hash`: `None` when the node does not know the transaction.
    pub async fn transaction_input(&self, tx_hash: &str) -> Result<Option<Vec<u8>>, RpcError> {
        let method = "eth_getTransactionByHash";
        let result = self.call(method, json!([tx_hash])).await?;
        if result.is_null() {
            return Ok(None);
        }
        let input = result.get("input").or_else(|| result.get("data")).and_then(Value::as_str).unwrap_or("0x");
        hex::decode(input.trim_start_matches("0x"))
            .map(Some)
            .map_err(|e| RpcError::BadAnswer { method, why: format!("input is not hex: {e}") })
    }
}

/// A JSON-RPC quantity (`"0x1a"`) as a number.
fn quantity(method: &'static str, v: &Value) -> Result<u128, RpcError> {
    let bad = || RpcError::BadAnswer { method, why: format!("{v} is not a quantity") };
    let text = v.as_str().ok_or_else(bad)?;
    let digits = text.strip_prefix("0x").ok_or_else(bad)?;
    if digits.is_empty() {
        return Err(bad());
    }
    u128::from_str_radix(digits, 16).map_err(|_| bad())
}

/// `balanceOf(owner)` calldata: the selector, then the address left-padded to 32 bytes.
fn balance_of_calldata(owner: &str) -> Option<String> {
    let hex_addr = owner.strip_prefix("0x")?;
    if hex_addr.len() != 40 || !hex_addr.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(format!("0x{BALANCE_OF_SELECTOR}{:0>64}", hex_addr.to_ascii_lowercase()))
}

/// An address as one ABI word (64 hex digits, lowercase).
fn word_of_address(address: &str) -> Option<String> {
    let h = address.strip_prefix("0x")?;
    (h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("{:0>64}", h.to_ascii_lowercase()))
}

/// A `bytes32` as one ABI word.
fn word_of_bytes32(value: &str) -> Option<String> {
    let h = value.strip_prefix("0x")?;
    (h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())).then(|| h.to_ascii_lowercase())
}

/// One ABI `uint256` word (`0x` + 64 hex digits) as a `u128`; `None` if malformed or too large.
fn uint_word(word: &str) -> Option<u128> {
    let digits = word.strip_prefix("0x")?;
    if digits.len() != 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (high, low) = digits.split_at(32);
    if high.bytes().any(|b| b != b'0') {
        return None;
    }
    u128::from_str_radix(low, 16).ok()
}

/// Whether `s` is a transaction hash: `0x` and 64 hex digits.
pub fn is_tx_hash(s: &str) -> bool {
    s.strip_prefix("0x").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Formats atomic units with `decimals` decimals (`1500000`, 6 → `"1.500000"`), exactly.
pub fn decimal(atomic: u128, decimals: u32) -> String {
    let unit = 10u128.pow(decimals);
    format!("{}.{:0width$}", atomic / unit, atomic % unit, width = decimals as usize)
}
