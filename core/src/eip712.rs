//! EIP-3009 `TransferWithAuthorization` under EIP-712: the digest a payer signs, signing (for the client) and
//! recovery with the rules USDC enforces on-chain (low `s`, `v` ∈ {27, 28}), so that a signature accepted here
//! would also be accepted by the token.

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{sol, Eip712Domain, SolStruct};
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};

sol! {
    /// The EIP-3009 message; field names and order are the typehash.
    #[derive(Debug, PartialEq, Eq)]
    struct TransferWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }
}

/// The token's EIP-712 domain: `extra.name`/`extra.version` of the requirements, the chain, the token address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDomain {
    pub name: String,
    pub version: String,
    pub chain_id: u64,
    pub verifying_contract: Address,
}

impl TokenDomain {
    fn eip712(&self) -> Eip712Domain {
        Eip712Domain::new(
            Some(self.name.clone().into()),
            Some(self.version.clone().into()),
            Some(U256::from(self.chain_id)),
            Some(self.verifying_contract),
            None,
        )
    }

    pub fn separator(&self) -> B256 {
        self.eip712().separator()
    }
}

/// The digest (`keccak256(0x1901 ‖ domainSeparator ‖ structHash)`) a payer signs.
pub fn authorization_digest(domain: &TokenDomain, message: &TransferWithAuthorization) -> B256 {
    message.eip712_signing_hash(&domain.eip712())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature must be 65 bytes (r ‖ s ‖ v), got {0}")]
    BadLength(usize),
    #[error("signature v must be 27 or 28, got {0}")]
    BadV(u8),
    #[error("signature s is in the upper half of the curve order (high-s), which USDC refuses")]
    HighS,
    #[error("signature r or s is out of range")]
    OutOfRange,
    #[error("no public key recovers from this signature")]
    Unrecoverable,
}

/// Recovers the signer of `digest` from a 65-byte `r ‖ s ‖ v` signature, refusing what USDC would refuse.
pub fn recover_signer(digest: &B256, signature: &[u8]) -> Result<Address, SignatureError> {
    if signature.len() != 65 {
        return Err(SignatureError::BadLength(signature.len()));
    }
    let v = signature[64];
    let recovery = match v {
        27 | 28 => RecoveryId::from_byte(v - 27).ok_or(SignatureError::BadV(v))?,
        _ => return Err(SignatureError::BadV(v)),
    };
    let sig = Signature::from_slice(&signature[..64]).map_err(|_| SignatureError::OutOfRange)?;
    if sig.normalize_s().is_some() {
        return Err(SignatureError::HighS);
    }
    let key = VerifyingKey::recover_from_prehash(digest.as_slice(), &sig, recovery)
        .map_err(|_| SignatureError::Unrecoverable)?;
    Ok(Address::from_public_key(&key))
}

/// Signs `digest` with a low-s, `v` ∈ {27, 28} signature (what the client sends).
pub fn sign_digest(key: &SigningKey, digest: &B256) -> Result<[u8; 65], SignatureError> {
    let (sig, recovery) =
        key.sign_prehash_recoverable(digest.as_slice()).map_err(|_| SignatureError::Unrecoverable)?;
    // k256 already normalises s and flips the recovery id with it; normalising again is a guard, not a change.
    let (sig, recovery) = match sig.normalize_s() {
        Some(low) => (low, RecoveryId::new(!recovery.is_y_odd(), recovery.is_x_reduced())),
        None => (sig, recovery),
    };
    let mut out = [0u8; 65];
    out[..64].copy_from_slice(&sig.to_bytes());
    out[64] = 27 + recovery.to_byte();
    Ok(out)
}

/// The address of a private key.
pub fn address_of(key: &SigningKey) -> Address {
    Address::from_public_key(key.verifying_key())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Value {
        serde_json::from_str(include_str!("../tests/x402-vectors.json")).expect("vectors parse")
    }

    fn domain_of(v: &Value) -> TokenDomain {
        TokenDomain {
            name: v["name"].as_str().unwrap().into(),
            version: v["version"].as_str().unwrap().into(),
            chain_id: v["chainId"].as_u64().unwrap(),
            verifying_contract: v["verifyingContract"].as_str().unwrap().parse().unwrap(),
        }
    }

    fn message_of(m: &Value) -> TransferWithAuthorization {
        let u = |k: &str| m[k].as_str().unwrap().parse::<U256>().unwrap();
        TransferWithAuthorization {
            from: m["from"].as_str().unwrap().parse().unwrap(),
            to: m["to"].as_str().unwrap().parse().unwrap(),
            value: u("value"),
            validAfter: u("validAfter"),
            validBefore: u("validBefore"),
            nonce: m["nonce"].as_str().unwrap().parse().unwrap(),
        }
    }

    fn bytes(v: &Value) -> Vec<u8> {
        hex::decode(v.as_str().unwrap().trim_start_matches("0x")).unwrap()
    }

    #[test]
    fn typehash_matches() {
        let v = vectors();
        let expected: B256 = v["typehash"].as_str().unwrap().parse().unwrap();
        assert_eq!(TransferWithAuthorization::eip712_type_hash(&message_of(&v["vectors"][0]["message"])), expected);
    }

    #[test]
    fn vectors_digest_and_recover() {
        let v = vectors();
        for case in v["vectors"].as_array().unwrap() {
            let domain = domain_of(&case["domain"]);
            let message = message_of(&case["message"]);
            let sep: B256 = case["domainSeparator"].as_str().unwrap().parse().unwrap();
            assert_eq!(domain.separator(), sep, "{}", case["label"]);
            let struct_hash: B256 = case["structHash"].as_str().unwrap().parse().unwrap();
            assert_eq!(message.eip712_hash_struct(), struct_hash, "{}", case["label"]);
            let digest: B256 = case["digest"].as_str().unwrap().parse().unwrap();
            assert_eq!(authorization_digest(&domain, &message), digest, "{}", case["label"]);
            let recovered: Address = case["recovered"].as_str().unwrap().parse().unwrap();
            assert_eq!(recover_signer(&digest, &bytes(&case["signature"])), Ok(recovered));
        }
        let spec = &v["spec_example"];
        let digest = authorization_digest(&domain_of(&spec["domain"]), &message_of(&spec["message"]));
        assert_eq!(digest, spec["digest"].as_str().unwrap().parse::<B256>().unwrap());
        let recovered: Address = spec["recovered"].as_str().unwrap().parse().unwrap();
        assert_eq!(recover_signer(&digest, &bytes(&spec["signature"])), Ok(recovered));
    }

    #[test]
    fn signing_reproduces_vector_signatures() {
        let v = vectors();
        let key = SigningKey::from_slice(&bytes(&v["test_private_key"])).unwrap();
        assert_eq!(address_of(&key), v["test_address"].as_str().unwrap().parse::<Address>().unwrap());
        for case in v["vectors"].as_array().unwrap() {
            let digest: B256 = case["digest"].as_str().unwrap().parse().unwrap();
            // RFC 6979 signatures are deterministic, so ours must equal the vector byte for byte.
            assert_eq!(sign_digest(&key, &digest).unwrap().to_vec(), bytes(&case["signature"]));
        }
    }

    #[test]
    fn s_keeps_leading_zero_padding() {
        // r and s are fixed 32-byte fields: an s with leading zero bytes must not shift v.
        let key = SigningKey::from_slice(&[0x11; 32]).unwrap();
        for i in 0u8..=255 {
            let digest = B256::repeat_byte(i);
            let sig = sign_digest(&key, &digest).unwrap();
            assert_eq!(recover_signer(&digest, &sig), Ok(address_of(&key)));
        }
    }

    #[test]
    fn high_s_is_refused() {
        let v = vectors();
        let case = &v["vectors"][0];
        let digest: B256 = case["digest"].as_str().unwrap().parse().unwrap();
        let sig = bytes(&case["signature"]);
        // The same signature with s' = n - s and v flipped recovers the same key off-chain; USDC refuses it.
        let low = Signature::from_slice(&sig[..64]).unwrap();
        let (r, s) = low.split_scalars();
        let high = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        let mut flipped = high.to_bytes().to_vec();
        flipped.push(if sig[64] == 27 { 28 } else { 27 });
        assert_eq!(recover_signer(&digest, &flipped), Err(SignatureError::HighS));
    }

    #[test]
    fn bad_v_and_length_are_refused() {
        let v = vectors();
        let case = &v["vectors"][0];
        let digest: B256 = case["digest"].as_str().unwrap().parse().unwrap();
        let mut sig = bytes(&case["signature"]);
        for bad in [0u8, 1, 26, 29, 35] {
            sig[64] = bad;
            assert_eq!(recover_signer(&digest, &sig), Err(SignatureError::BadV(bad)));
        }
        assert_eq!(recover_signer(&digest, &sig[..64]), Err(SignatureError::BadLength(64)));
    }

    #[test]
    fn tampered_digest_recovers_someone_else() {
        let v = vectors();
        let case = &v["vectors"][0];
        let mut digest: B256 = case["digest"].as_str().unwrap().parse().unwrap();
        digest.0[0] ^= 1;
        let recovered: Address = case["recovered"].as_str().unwrap().parse().unwrap();
        assert_ne!(recover_signer(&digest, &bytes(&case["signature"])).ok(), Some(recovered));
    }
}
