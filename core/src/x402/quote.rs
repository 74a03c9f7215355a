//! Bound quotes: the price a client saw in a 402 stays valid on its paid retry for `maxTimeoutSeconds`, even if
//! demand-based pricing moved in between.
//!
//! The requirements carry `extra.quote = "{expires}.{mac}"`, a MAC (keyed with the edge's secret) over what was
//! priced, the amount and the expiry. On the retry the edge rebuilds the requirements with the quoted amount when
//! the MAC is ours, unexpired and for the same pricing parameters, and with the current price otherwise, then
//! compares them with `accepted` field for field. Nothing is stored per quote.

use hmac::{Hmac, Mac};
use sha2::Sha256;

const MAC_HEX_LEN: usize = 32;

fn mac_hex(secret: &[u8], priced: &str, amount: u64, expires: u64) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("ouro-quote|{priced}|{amount}|{expires}").as_bytes());
    let mut hex = hex::encode(mac.finalize().into_bytes());
    hex.truncate(MAC_HEX_LEN);
    hex
}

/// A quote token for `amount` atomic units of the pricing parameters `priced`, valid until `expires`.
pub fn issue(secret: &[u8], priced: &str, amount: u64, expires: u64) -> String {
    format!("{expires}.{}", mac_hex(secret, priced, amount, expires))
}

/// Whether `token` is a live quote of ours for exactly `priced` at `amount`, at time `now`.
pub fn honours(secret: &[u8], token: &str, priced: &str, amount: u64, now: u64) -> bool {
    let Some((expires, given)) = token.split_once('.') else { return false };
    let Ok(expires) = expires.parse::<u64>() else { return false };
    if now > expires {
        return false;
    }
    let expected = mac_hex(secret, priced, amount, expires);
    // Constant-time enough for a MAC we compare as hex of fixed length.
    expected.len() == given.len()
        && expected.bytes().zip(given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_hold_until_expiry_for_the_same_terms_only() {
        let t = issue(b"k", "cpus=1", 10_000, 1_300);
        assert!(honours(b"k", &t, "cpus=1", 10_000, 1_000));
        assert!(honours(b"k", &t, "cpus=1", 10_000, 1_300));
        assert!(!honours(b"k", &t, "cpus=1", 10_000, 1_301));
        assert!(!honours(b"k", &t, "cpus=2", 10_000, 1_000));
        assert!(!honours(b"k", &t, "cpus=1", 9_999, 1_000));
        assert!(!honours(b"other", &t, "cpus=1", 10_000, 1_000));
        assert!(!honours(b"k", "9999999999.00", "cpus=1", 10_000, 1_000));
        assert!(!honours(b"k", "garbage", "cpus=1", 10_000, 1_000));
        let forged_expiry = t.replacen("1300", "9300", 1);
        assert!(!honours(b"k", &forged_expiry, "cpus=1", 10_000, 1_000));
    }
}
