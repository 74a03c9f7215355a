//! Private keys as people paste them: 64 hex digits, with or without `0x`. Error messages never echo the key.

use k256::ecdsa::SigningKey;

use crate::error::{ClientError, Result};

pub fn key_from_hex(text: &str) -> Result<SigningKey> {
    let text = text.trim();
    let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text);
    if digits.len() != 64 {
        return Err(ClientError::BadKey(format!("expected 64 hex digits, got {} characters", digits.len())));
    }
    let bytes = hex::decode(digits).map_err(|_| ClientError::BadKey("not hexadecimal".into()))?;
    SigningKey::from_slice(&bytes).map_err(|_| ClientError::BadKey("not a valid secp256k1 private key".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ouro_core::eip712::address_of;

    const ANVIL_0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

    #[test]
    fn accepts_with_and_without_prefix() {
        let a = key_from_hex(ANVIL_0).unwrap();
        let b = key_from_hex(&ANVIL_0[2..]).unwrap();
        let c = key_from_hex(&format!("  {}\n", ANVIL_0.to_uppercase().replace("0XAC", "0Xac"))).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert_eq!(a.to_bytes(), c.to_bytes());
        assert_eq!(address_of(&a).to_checksum(None), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    }

    #[test]
    fn refuses_garbage_without_echoing_it() {
        for bad in ["", "0x", "0x1234", &"zz".repeat(32), &"00".repeat(32)] {
            let err = key_from_hex(bad).unwrap_err();
            assert!(matches!(err, ClientError::BadKey(_)), "{bad:?}");
            if bad.len() > 8 {
                assert!(!err.to_string().contains(bad), "{err}");
            }
        }
    }
}
