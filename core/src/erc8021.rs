//! ERC-8021 transaction attribution: the suffix that builder codes ride on at the end of calldata.
//!
//! The suffix is read from the END of the calldata backwards, because what comes before it (the call itself) has
//! no length field we could trust:
//!
//! ```text
//! calldata = original data ‖ schemaData ‖ schemaId (1) ‖ MARKER (16)
//! schema 0: schemaData = codes ‖ codesLength (1)
//! schema 1: schemaData = registry (20) ‖ chainId (big-endian, 1–8) ‖ chainIdLength (1) ‖ codes ‖ codesLength (1)
//! schema 2: schemaData = cbor ‖ cborLength (2, big-endian)
//! ```
//!
//! `decode` runs on calldata anyone can write, so it is strict where the reference implementation (ox) is lax:
//! every length must fit inside the data, codes must be non-empty 7-bit ASCII without commas, a chain id has 1–8
//! bytes, and the CBOR of schema 2 must be well formed, definite-length and fill its declared length exactly.
//! Anything else is "no attribution" (`None`), never an error and never a panic: a transaction without a usable
//! suffix is simply unattributed.

use alloy_primitives::Address;

/// The 16 bytes that end every ERC-8021 suffix: `0x8021` eight times.
pub const MARKER: [u8; 16] =
    [0x80, 0x21, 0x80, 0x21, 0x80, 0x21, 0x80, 0x21, 0x80, 0x21, 0x80, 0x21, 0x80, 0x21, 0x80, 0x21];

/// The shortest data that can hold a suffix: marker, schema id and one length byte.
const MIN_LEN: usize = MARKER.len() + 2;

/// Schema ids as they appear on the wire.
const SCHEMA_CANONICAL: u8 = 0;
const SCHEMA_CUSTOM_REGISTRY: u8 = 1;
const SCHEMA_CBOR: u8 = 2;

/// A chain id is a `u64` here, so a longer big-endian field could not be represented faithfully.
const MAX_CHAIN_ID_LEN: usize = 8;

const ADDRESS_LEN: usize = 20;

/// How deeply nested CBOR we are willing to skip (inside unknown keys). Bounds recursion on hostile input; real
/// attributions nest two or three levels (`r` → `a` → `{c, a}`).
const MAX_CBOR_DEPTH: u32 = 16;

/// An attribution found in (or to be appended to) calldata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribution {
    /// Codes from the chain's canonical code registry.
    Schema0 { codes: Vec<String> },
    /// Codes from a custom registry contract at `registry` on chain `chain_id`.
    Schema1 { codes: Vec<String>, registry: Address, chain_id: u64 },
    /// The CBOR form: an app code, a wallet code and service codes (builders, relayers, solvers…). Registries and
    /// metadata (`r`, `m`) are skipped when decoding and never written.
    Schema2 { app: Option<String>, wallet: Option<String>, services: Vec<String> },
}

impl Attribution {
    /// The schema id the suffix carries (0, 1 or 2).
    pub fn schema_id(&self) -> u8 {
        match self {
            Attribution::Schema0 { .. } => SCHEMA_CANONICAL,
            Attribution::Schema1 { .. } => SCHEMA_CUSTOM_REGISTRY,
            Attribution::Schema2 { .. } => SCHEMA_CBOR,
        }
    }

    /// Every code in order; for schema 2 the app code, then the wallet code, then the service codes.
    pub fn codes(&self) -> Vec<&str> {
        match self {
            Attribution::Schema0 { codes } | Attribution::Schema1 { codes, .. } => {
                codes.iter().map(String::as_str).collect()
            }
            Attribution::Schema2 { app, wallet, services } => {
                app.iter().chain(wallet.iter()).chain(services.iter()).map(String::as_str).collect()
            }
        }
    }

    /// The custom registry (address, chain id) for schema 1; `None` otherwise.
    pub fn registry(&self) -> Option<(Address, u64)> {
        match self {
            Attribution::Schema1 { registry, chain_id, .. } => Some((*registry, *chain_id)),
            _ => None,
        }
    }
}

/// Why an attribution cannot be written as a suffix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("attribution code #{index} is empty")]
    EmptyCode { index: usize },
    #[error("attribution code {code:?} contains a comma, which separates codes")]
    Comma { code: String },
    #[error("attribution code {code:?} is not 7-bit ASCII")]
    NotAscii { code: String },
    #[error("the codes take {len} bytes joined with commas; the length byte holds at most 255")]
    CodesTooLong { len: usize },
    #[error("the CBOR map takes {len} bytes; the length field holds at most 65535")]
    CborTooLong { len: usize },
}

/// Whether a code may appear in a suffix. The same rule for every schema, so a code decoded from any schema can
/// be re-encoded in any other (and stored comma-joined) without change.
fn is_code(code: &str) -> bool {
    !code.is_empty() && code.is_ascii() && !code.contains(',')
}

fn check_code(index: usize, code: &str) -> Result<(), EncodeError> {
    if code.is_empty() {
        Err(EncodeError::EmptyCode { index })
    } else if !code.is_ascii() {
        Err(EncodeError::NotAscii { code: code.to_owned() })
    } else if code.contains(',') {
        Err(EncodeError::Comma { code: code.to_owned() })
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------------------------

/// Reads the ERC-8021 attribution at the end of `calldata`, or `None` when there is none (or it is malformed).
pub fn decode(calldata: &[u8]) -> Option<Attribution> {
    if calldata.len() < MIN_LEN {
        return None;
    }
    let rest = calldata.strip_suffix(&MARKER[..])?;
    let (&schema, rest) = rest.split_last()?;
    match schema {
        SCHEMA_CANONICAL => {
            let (_, codes) = codes_tail(rest)?;
            Some(Attribution::Schema0 { codes })
        }
        SCHEMA_CUSTOM_REGISTRY => {
            let (rest, codes) = codes_tail(rest)?;
            let (&chain_id_len, rest) = rest.split_last()?;
            let chain_id_len = usize::from(chain_id_len);
            // An empty chain id names no chain; more than 8 bytes does not fit a u64.
            if chain_id_len == 0 || chain_id_len > MAX_CHAIN_ID_LEN {
                return None;
            }
            let (rest, chain_id) = split_back(rest, chain_id_len)?;
            let (_, registry) = split_back(rest, ADDRESS_LEN)?;
            let registry = Address::from(<[u8; 20]>::try_from(registry).ok()?);
            let chain_id = chain_id.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            Some(Attribution::Schema1 { codes, registry, chain_id })
        }
        SCHEMA_CBOR => {
            let (rest, len) = split_back(rest, 2)?;
            let [hi, lo] = <[u8; 2]>::try_from(len).ok()?;
            let (_, cbor) = split_back(rest, usize::from(u16::from_be_bytes([hi, lo])))?;
            decode_schema2(cbor)
        }
        _ => None,
    }
}

/// Splits the last `n` bytes off `data`: `(before, last_n)`, or `None` when `data` is shorter than `n` (the
/// "length runs past the start" case).
fn split_back(data: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    data.split_at_checked(data.len().checked_sub(n)?)
}

/// Reads `codes ‖ codesLength` off the end of `data`: `(what precedes the codes, the codes)`.
fn codes_tail(data: &[u8]) -> Option<(&[u8], Vec<String>)> {
    let (&len, rest) = data.split_last()?;
    let (rest, raw) = split_back(rest, usize::from(len))?;
    Some((rest, split_codes(raw)?))
}

/// Splits comma-joined codes; empty input is no codes, an empty code between commas is malformed.
fn split_codes(raw: &[u8]) -> Option<Vec<String>> {
    if raw.is_empty() {
        return Some(Vec::new());
    }
    if !raw.is_ascii() {
        return None;
    }
    let text = std::str::from_utf8(raw).ok()?;
    text.split(',').map(|code| is_code(code).then(|| code.to_owned())).collect()
}

/// Schema 2: a CBOR map with text keys. `a` (text), `w` (text) and `s` (array of text) are read; anything else is
/// skipped but must still be well formed. A known key twice, or with a value of the wrong type, is malformed
/// rather than guessed at.
fn decode_schema2(cbor: &[u8]) -> Option<Attribution> {
    let mut reader = Cbor { rest: cbor };
    let entries = reader.head_of(MAJOR_MAP)?;
    let (mut app, mut wallet, mut services) = (None, None, None);
    for _ in 0..entries {
        match reader.key()? {
            Some("a") if app.is_none() => app = Some(reader.code()?),
            Some("w") if wallet.is_none() => wallet = Some(reader.code()?),
            Some("s") if services.is_none() => {
                let count = reader.head_of(MAJOR_ARRAY)?;
                // No capacity from `count`: it is attacker-chosen. Each element consumes input, so the loop ends
                // as soon as the data does.
                let mut codes = Vec::new();
                for _ in 0..count {
                    codes.push(reader.code()?);
                }
                services = Some(codes);
            }
            Some("a" | "w" | "s") => return None,
            _ => reader.skip(0)?,
        }
    }
    // The declared length must be exactly one map: trailing bytes would be data we silently dropped.
    if !reader.rest.is_empty() {
        return None;
    }
    Some(Attribution::Schema2 { app, wallet, services: services.unwrap_or_default() })
}

const MAJOR_UNSIGNED: u8 = 0;
const MAJOR_NEGATIVE: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const MAJOR_TAG: u8 = 6;
const MAJOR_SIMPLE: u8 = 7;

/// Just enough of a CBOR (RFC 8949) reader for schema 2: definite-length items only. Indefinite lengths are
/// refused because ox never writes them and they are one more way to hide bytes.
struct Cbor<'a> {
    rest: &'a [u8],
}

impl<'a> Cbor<'a> {
    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let (taken, rest) = self.rest.split_at_checked(usize::try_from(n).ok()?)?;
        self.rest = rest;
        Some(taken)
    }

    /// An item's head: (major type, argument). For floats the argument is the raw bits, which only `skip` sees.
    fn head(&mut self) -> Option<(u8, u64)> {
        let (&initial, rest) = self.rest.split_first()?;
        self.rest = rest;
        let major = initial >> 5;
        let info = initial & 0x1f;
        let arg = match info {
            0..=23 => u64::from(info),
            24 => u64::from(*self.take(1)?.first()?),
            25 => u64::from(u16::from_be_bytes(self.take(2)?.try_into().ok()?)),
            26 => u64::from(u32::from_be_bytes(self.take(4)?.try_into().ok()?)),
            27 => u64::from_be_bytes(self.take(8)?.try_into().ok()?),
            // 28–30 are reserved, 31 is an indefinite length.
            _ => return None,
        };
        // A one-byte simple value below 32 is not well formed (RFC 8949 §3.3).
        if major == MAJOR_SIMPLE && info == 24 && arg < 32 {
            return None;
        }
        Some((major, arg))
    }

    fn head_of(&mut self, major: u8) -> Option<u64> {
        let (found, arg) = self.head()?;
        (found == major).then_some(arg)
    }

    fn text(&mut self) -> Option<&'a str> {
        let len = self.head_of(MAJOR_TEXT)?;
        std::str::from_utf8(self.take(len)?).ok()
    }

    fn code(&mut self) -> Option<String> {
        let text = self.text()?;
        is_code(text).then(|| text.to_owned())
    }

    /// A map key: `Some(text)` for a text key, `None` for any other (well-formed) key, which is skipped.
    fn key(&mut self) -> Option<Option<&'a str>> {
        if self.rest.first().map(|b| b >> 5) == Some(MAJOR_TEXT) {
            Some(Some(self.text()?))
        } else {
            self.skip(0)?;
            Some(None)
        }
    }

    /// Skips one well-formed item. Every item consumes at least its head byte, so even an attacker-chosen count
    /// of 2^64 stops at the end of the data; `depth` bounds the recursion.
    fn skip(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_CBOR_DEPTH {
            return None;
        }
        let (major, arg) = self.head()?;
        match major {
            MAJOR_UNSIGNED | MAJOR_NEGATIVE | MAJOR_SIMPLE => {}
            MAJOR_BYTES => {
                self.take(arg)?;
            }
            MAJOR_TEXT => {
                std::str::from_utf8(self.take(arg)?).ok()?;
            }
            MAJOR_ARRAY => {
                for _ in 0..arg {
                    self.skip(depth + 1)?;
                }
            }
            MAJOR_MAP => {
                for _ in 0..arg {
                    self.skip(depth + 1)?;
                    self.skip(depth + 1)?;
                }
            }
            MAJOR_TAG => self.skip(depth + 1)?,
            _ => return None,
        }
        Some(())
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------------------------

/// The suffix to append to calldata so that `decode(calldata ‖ suffix)` gives back `attribution`.
pub fn encode(attribution: &Attribution) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    match attribution {
        Attribution::Schema0 { codes } => {
            push_codes(&mut out, codes)?;
        }
        Attribution::Schema1 { codes, registry, chain_id } => {
            out.extend_from_slice(registry.as_slice());
            // Minimal big-endian, but at least one byte: a zero-length chain id does not decode.
            let bytes = chain_id.to_be_bytes();
            let zeros = (chain_id.leading_zeros() / 8).min(7) as usize;
            let chain = bytes.get(zeros..).unwrap_or(&bytes);
            out.extend_from_slice(chain);
            // At most 8 bytes, so the cast cannot truncate.
            out.push(chain.len() as u8);
            push_codes(&mut out, codes)?;
        }
        Attribution::Schema2 { app, wallet, services } => {
            let cbor = schema2_cbor(app.as_deref(), wallet.as_deref(), services)?;
            let len = u16::try_from(cbor.len()).map_err(|_| EncodeError::CborTooLong { len: cbor.len() })?;
            out.extend_from_slice(&cbor);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    out.push(attribution.schema_id());
    out.extend_from_slice(&MARKER);
    Ok(out)
}

/// Appends `codes ‖ codesLength`.
fn push_codes(out: &mut Vec<u8>, codes: &[String]) -> Result<(), EncodeError> {
    for (index, code) in codes.iter().enumerate() {
        check_code(index, code)?;
    }
    let joined = codes.join(",");
    let len = u8::try_from(joined.len()).map_err(|_| EncodeError::CodesTooLong { len: joined.len() })?;
    out.extend_from_slice(joined.as_bytes());
    out.push(len);
    Ok(())
}

/// The schema 2 map, keys in the order ox writes them (`a`, `w`, `s`); absent fields and an empty service list
/// are left out, as ox does, so the encoding of an attribution is unique.
fn schema2_cbor(app: Option<&str>, wallet: Option<&str>, services: &[String]) -> Result<Vec<u8>, EncodeError> {
    for (index, code) in app.into_iter().chain(wallet).chain(services.iter().map(String::as_str)).enumerate() {
        check_code(index, code)?;
    }
    let entries = u64::from(app.is_some()) + u64::from(wallet.is_some()) + u64::from(!services.is_empty());
    let mut out = Vec::new();
    put_head(&mut out, MAJOR_MAP, entries);
    if let Some(app) = app {
        put_text(&mut out, "a");
        put_text(&mut out, app);
    }
    if let Some(wallet) = wallet {
        put_text(&mut out, "w");
        put_text(&mut out, wallet);
    }
    if !services.is_empty() {
        put_text(&mut out, "s");
        put_head(&mut out, MAJOR_ARRAY, services.len() as u64);
        for service in services {
            put_text(&mut out, service);
        }
    }
    Ok(out)
}

/// A head in its shortest form, as deterministic CBOR (and ox) writes it.
fn put_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let major = major << 5;
    if let Ok(small) = u8::try_from(arg) {
        if small < 24 {
            out.push(major | small);
        } else {
            out.extend_from_slice(&[major | 24, small]);
        }
    } else if let Ok(arg) = u16::try_from(arg) {
        out.push(major | 25);
        out.extend_from_slice(&arg.to_be_bytes());
    } else if let Ok(arg) = u32::try_from(arg) {
        out.push(major | 26);
        out.extend_from_slice(&arg.to_be_bytes());
    } else {
        out.push(major | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put_head(out, MAJOR_TEXT, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(hex_str: &str) -> Vec<u8> {
        hex::decode(hex_str.trim_start_matches("0x")).expect("test vector is hex")
    }

    fn s(codes: &[&str]) -> Vec<String> {
        codes.iter().map(|c| c.to_string()).collect()
    }

    fn schema0(codes: &[&str]) -> Attribution {
        Attribution::Schema0 { codes: s(codes) }
    }

    /// `payload ‖ schemaId ‖ MARKER`, for hand-built malformed suffixes.
    fn with_marker(payload: &[u8], schema: u8) -> Vec<u8> {
        let mut v = payload.to_vec();
        v.push(schema);
        v.extend_from_slice(&MARKER);
        v
    }

    /// `cbor ‖ cborLength ‖ 2 ‖ MARKER` with the true length.
    fn schema2_suffix(cbor: &[u8]) -> Vec<u8> {
        let mut v = cbor.to_vec();
        v.extend_from_slice(&(cbor.len() as u16).to_be_bytes());
        with_marker(&v, 2)
    }

    /// Every vector of erc8021.md that decodes, with the length of the leading original data (not suffix).
    fn vectors() -> Vec<(&'static str, usize, Attribution)> {
        vec![
            ("0xdddddddd62617365617070070080218021802180218021802180218021", 4, schema0(&["baseapp"])),
            ("0x626173656170702c6d6f7270686f0e0080218021802180218021802180218021", 0, schema0(&["baseapp", "morpho"])),
            ("0x74657374040080218021802180218021802180218021", 0, schema0(&["test"])),
            (
                "0x626173652c756e69737761702c636f7773776170140080218021802180218021802180218021",
                0,
                schema0(&["base", "uniswap", "cowswap"]),
            ),
            ("0x61010080218021802180218021802180218021", 0, schema0(&["a"])),
            (
                "0x6170702d6e616d652c746573745f636f6465120080218021802180218021802180218021",
                0,
                schema0(&["app-name", "test_code"]),
            ),
            (
                "0x426173654170702c4d6f7270686f50726f746f636f6c160080218021802180218021802180218021",
                0,
                schema0(&["BaseApp", "MorphoProtocol"]),
            ),
            ("0x000080218021802180218021802180218021", 0, schema0(&[])),
            ("0x62635f62386e6f733561380b0080218021802180218021802180218021", 0, schema0(&["bc_b8nos5a8"])),
            (
                "0xddddddddcccccccccccccccccccccccccccccccccccccccc210502626173656170702C6D6F7270686F0E0180218021802180218021802180218021",
                4,
                Attribution::Schema1 {
                    codes: s(&["baseapp", "morpho"]),
                    registry: Address::from([0xcc; 20]),
                    chain_id: 8453,
                },
            ),
            (
                "0xdddddddda161616762617365617070000b0280218021802180218021802180218021",
                4,
                Attribution::Schema2 { app: Some("baseapp".into()), wallet: None, services: vec![] },
            ),
        ]
    }

    #[test]
    fn marker_is_8021_eight_times() {
        assert_eq!(MARKER.to_vec(), bytes("0x80218021802180218021802180218021"));
    }

    #[test]
    fn decodes_every_vector() {
        for (hex_str, _, expected) in vectors() {
            assert_eq!(decode(&bytes(hex_str)), Some(expected), "{hex_str}");
        }
    }

    #[test]
    fn encodes_every_vector_to_its_suffix() {
        for (hex_str, prefix, attribution) in vectors() {
            let input = bytes(hex_str);
            let (original, suffix) = input.split_at(prefix);
            assert!(original.iter().all(|&b| b == 0xdd), "{hex_str}: prefix is the original data");
            assert_eq!(encode(&attribution).as_deref(), Ok(suffix), "{hex_str}");
        }
    }

    #[test]
    fn documented_encoding_of_baseapp() {
        assert_eq!(encode(&schema0(&["baseapp"])), Ok(bytes("0x62617365617070070080218021802180218021802180218021")));
    }

    #[test]
    fn vectors_without_attribution() {
        for hex_str in [
            "0xddddddddff80218021802180218021802180218021", // unknown schema
            "0xdddddddd62617365617070070000000000000000000000000000000000000000", // no marker
            "0xdddddddd",                                   // too short
        ] {
            assert_eq!(decode(&bytes(hex_str)), None, "{hex_str}");
        }
    }

    #[test]
    fn schema_ids_codes_and_registry() {
        let v = vectors();
        let ids: Vec<u8> = v.iter().map(|(_, _, a)| a.schema_id()).collect();
        assert_eq!(ids, [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(v[1].2.codes(), ["baseapp", "morpho"]);
        assert_eq!(v[9].2.registry(), Some((Address::from([0xcc; 20]), 8453)));
        assert_eq!(v[0].2.registry(), None);
        let all =
            Attribution::Schema2 { app: Some("app".into()), wallet: Some("wal".into()), services: s(&["s1", "s2"]) };
        assert_eq!(all.codes(), ["app", "wal", "s1", "s2"]);
        let wallet_only = Attribution::Schema2 { app: None, wallet: Some("w".into()), services: s(&["x"]) };
        assert_eq!(wallet_only.codes(), ["w", "x"]);
    }

    #[test]
    fn too_short_or_no_marker() {
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&MARKER), None);
        // 17 bytes: schema id and marker but no length byte.
        assert_eq!(decode(&with_marker(&[], 0)), None);
        // One marker byte off.
        let mut v = bytes("0x61010080218021802180218021802180218021");
        if let Some(last) = v.last_mut() {
            *last = 0x20;
        }
        assert_eq!(decode(&v), None);
        let mut v = bytes("0x61010080218021802180218021802180218021");
        v[3] = 0x81; // first marker byte
        assert_eq!(decode(&v), None);
    }

    #[test]
    fn unknown_schemas() {
        for schema in 3..=255u8 {
            assert_eq!(decode(&with_marker(&[0x61, 0x01], schema)), None, "schema {schema}");
        }
    }

    #[test]
    fn codes_length_past_the_start() {
        assert_eq!(decode(&with_marker(&[0x01], 0)), None);
        assert_eq!(decode(&with_marker(&[0x61, 0x61, 0x03], 0)), None);
        assert_eq!(decode(&with_marker(&[0xff], 0)), None);
        // Exactly enough is fine.
        assert_eq!(decode(&with_marker(&[0x61, 0x61, 0x02], 0)), Some(schema0(&["aa"])));
        // Huge length byte with some data.
        let mut payload = vec![0x61; 254];
        payload.push(0xff);
        assert_eq!(decode(&with_marker(&payload, 0)), None);
        payload.insert(0, 0x61);
        assert_eq!(decode(&with_marker(&payload, 0)), Some(Attribution::Schema0 { codes: vec!["a".repeat(255)] }));
    }

    #[test]
    fn codes_that_are_not_ascii_or_empty() {
        // "é" in UTF-8 (0xc3 0xa9), and a lone high byte.
        assert_eq!(decode(&with_marker(&[0xc3, 0xa9, 0x02], 0)), None);
        assert_eq!(decode(&with_marker(&[0x61, 0x80, 0x02], 0)), None);
        for codes in [",a", "a,", "a,,b", ","] {
            let mut payload = codes.as_bytes().to_vec();
            payload.push(codes.len() as u8);
            assert_eq!(decode(&with_marker(&payload, 0)), None, "{codes:?}");
            assert_eq!(decode(&with_marker(&[&[0xcc; 20][..], &[0x01, 0x01], &payload].concat(), 1)), None);
        }
    }

    #[test]
    fn schema1_malformed_registry() {
        let codes = [0x61, 0x01];
        // Nothing before the codes: no chain id length.
        assert_eq!(decode(&with_marker(&codes, 1)), None);
        // Chain id length 0.
        assert_eq!(decode(&with_marker(&[&[0xcc; 20][..], &[0x00], &codes].concat(), 1)), None);
        // Chain id longer than 8 bytes (even with room for it).
        assert_eq!(decode(&with_marker(&[&[0xcc; 20][..], &[0x01; 9], &[0x09], &codes].concat(), 1)), None);
        // Chain id length past the start.
        assert_eq!(decode(&with_marker(&[&[0x21, 0x05], &[0x05][..], &codes].concat(), 1)), None);
        // Address short by one byte.
        assert_eq!(decode(&with_marker(&[&[0xcc; 19][..], &[0x21, 0x05, 0x02], &codes].concat(), 1)), None);
        // 8-byte chain id, the largest we accept.
        assert_eq!(
            decode(&with_marker(&[&[0xcc; 20][..], &[0xff; 8], &[0x08], &codes].concat(), 1)),
            Some(Attribution::Schema1 { codes: s(&["a"]), registry: Address::from([0xcc; 20]), chain_id: u64::MAX })
        );
        // Leading zeros are read, not refused (ox writes minimal ids, but the value is unambiguous).
        assert_eq!(
            decode(&with_marker(&[&[0xcc; 20][..], &[0x00, 0x21, 0x05, 0x03], &codes].concat(), 1))
                .and_then(|a| a.registry()),
            Some((Address::from([0xcc; 20]), 8453))
        );
    }

    #[test]
    fn schema2_map_with_every_field() {
        // {"a": "x", "w": "y", "s": ["z"]}, written by hand.
        let cbor = bytes("a3616161786177617961738161 7a".replace(' ', "").as_str());
        let attribution = Attribution::Schema2 { app: Some("x".into()), wallet: Some("y".into()), services: s(&["z"]) };
        assert_eq!(decode(&schema2_suffix(&cbor)), Some(attribution.clone()));
        assert_eq!(encode(&attribution), Ok(schema2_suffix(&cbor)));
        // Nothing at all is an empty map.
        let empty = Attribution::Schema2 { app: None, wallet: None, services: vec![] };
        assert_eq!(encode(&empty), Ok(schema2_suffix(&[0xa0])));
        assert_eq!(decode(&schema2_suffix(&[0xa0])), Some(empty.clone()));
        // An empty service array reads as no services.
        assert_eq!(decode(&schema2_suffix(&bytes("a1617380"))), Some(empty));
    }

    #[test]
    fn schema2_ignores_unknown_keys() {
        // {"m": {"source": "webapp"}, "a": "baseapp", "r": {"a": {"c": "0x2105", "a": h'cc'}}, 1: -1, "zz": 1.5}
        let mut cbor = vec![0xa5];
        cbor.extend(bytes("616d"));
        cbor.extend(bytes("a1"));
        cbor.extend(bytes("66736f75726365"));
        cbor.extend(bytes("66776562617070"));
        cbor.extend(bytes("6161"));
        cbor.extend(bytes("6762617365617070"));
        cbor.extend(bytes("6172a16161a2616366307832313035616141cc"));
        cbor.extend(bytes("0120"));
        cbor.extend(bytes("627a7afb3ff8000000000000"));
        assert_eq!(
            decode(&schema2_suffix(&cbor)),
            Some(Attribution::Schema2 { app: Some("baseapp".into()), wallet: None, services: vec![] })
        );
        // Tags, booleans, null and nested arrays are skipped too.
        let cbor = bytes("a3617ac11a5f000000617982f5f6617780");
        // {"z": 1(1593835520), "y": [true, null], "w": []} — "w" must be text, so this is malformed…
        assert_eq!(decode(&schema2_suffix(&cbor)), None);
        // …and with "w" renamed to "v" it is an attribution with no codes.
        let cbor = bytes("a3617ac11a5f000000617982f5f6617680");
        assert_eq!(
            decode(&schema2_suffix(&cbor)),
            Some(Attribution::Schema2 { app: None, wallet: None, services: vec![] })
        );
    }

    #[test]
    fn schema2_malformed() {
        let good = bytes("a161616762617365617070");
        assert!(decode(&schema2_suffix(&good)).is_some());
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated map", good[..good.len() - 1].to_vec()),
            ("map claims two entries", [&[0xa2][..], &good[1..]].concat()),
            ("trailing byte", [&good[..], &[0x00]].concat()),
            ("not a map", bytes("816161")),
            ("empty", vec![]),
            ("app not text", bytes("a1616101")),
            ("app empty", bytes("a1616160")),
            ("app not ascii", bytes("a1616162c3a9")),
            ("app invalid utf-8", bytes("a1616161ff")),
            ("app with comma", bytes("a16161632c612c")),
            ("services not array", bytes("a161736161")),
            ("service not text", bytes("a161738101")),
            ("service empty", bytes("a16173826161 60".replace(' ', "").as_str())),
            ("duplicate key", bytes("a2616161786161617a")),
            ("indefinite map", bytes("bf61616178ff")),
            ("indefinite text in unknown key", bytes("a1616d7f6161ff")),
            ("reserved additional info", bytes("a1616d1c")),
            ("bad simple value", bytes("a1616df800")),
            ("huge text length", bytes("a161617bffffffffffffffff61")),
            ("huge array count", bytes("a161739bffffffffffffffff6161")),
            ("huge map count", bytes("bbffffffffffffffff61616178")),
            ("huge unknown bytes", bytes("a1616d5bffffffffffffffff")),
            ("key without value", bytes("a16161")),
            ("text key truncated", bytes("a162")),
        ];
        for (what, cbor) in cases {
            assert_eq!(decode(&schema2_suffix(&cbor)), None, "{what}");
        }
        // Declared length past the start, and no room for the two length bytes.
        assert_eq!(decode(&with_marker(&[&good[..], &[0x00, 0x0c]].concat(), 2)), None);
        assert_eq!(decode(&with_marker(&[&good[..], &[0xff, 0xff]].concat(), 2)), None);
        assert_eq!(decode(&with_marker(&[0x00], 2)), None);
        // Deep nesting inside an unknown key stops at the depth limit instead of overflowing the stack.
        let deep = [&bytes("a1616d")[..], &vec![0x81; 100_000], &[0x00]].concat();
        assert_eq!(decode(&schema2_suffix(&deep[..deep.len().min(65_535)])), None);
        let shallow = [&bytes("a1616d")[..], &[0x81; 10], &[0x00]].concat();
        assert!(decode(&schema2_suffix(&shallow)).is_some());
    }

    #[test]
    fn encode_refuses_bad_codes() {
        assert_eq!(encode(&schema0(&["a", ""])), Err(EncodeError::EmptyCode { index: 1 }));
        assert_eq!(encode(&schema0(&["a,b"])), Err(EncodeError::Comma { code: "a,b".into() }));
        assert_eq!(encode(&schema0(&["é"])), Err(EncodeError::NotAscii { code: "é".into() }));
        let registry = Address::from([0xcc; 20]);
        assert_eq!(
            encode(&Attribution::Schema1 { codes: s(&[""]), registry, chain_id: 1 }),
            Err(EncodeError::EmptyCode { index: 0 })
        );
        assert_eq!(
            encode(&Attribution::Schema2 { app: Some("a".into()), wallet: None, services: s(&["ok", "b,c"]) }),
            Err(EncodeError::Comma { code: "b,c".into() })
        );
        assert_eq!(
            encode(&Attribution::Schema2 { app: None, wallet: Some(String::new()), services: vec![] }),
            Err(EncodeError::EmptyCode { index: 0 })
        );
    }

    #[test]
    fn encode_refuses_too_long() {
        // 255 bytes joined is the most the length byte holds.
        let max = Attribution::Schema0 { codes: vec!["a".repeat(127), "b".repeat(127)] };
        let suffix = encode(&max).expect("255 bytes fit");
        assert_eq!(decode(&suffix), Some(max));
        let over = Attribution::Schema0 { codes: vec!["a".repeat(128), "b".repeat(127)] };
        assert_eq!(encode(&over), Err(EncodeError::CodesTooLong { len: 256 }));
        let over1 = Attribution::Schema1 { codes: vec!["a".repeat(256)], registry: Address::ZERO, chain_id: 1 };
        assert_eq!(encode(&over1), Err(EncodeError::CodesTooLong { len: 256 }));
        let big = Attribution::Schema2 { app: None, wallet: None, services: vec!["x".repeat(1000); 66] };
        assert!(matches!(encode(&big), Err(EncodeError::CborTooLong { .. })));
        // Long CBOR strings use the longer heads and still round-trip.
        let long = Attribution::Schema2 { app: Some("a".repeat(300)), wallet: Some("w".repeat(30)), services: vec![] };
        assert_eq!(encode(&long).ok().and_then(|v| decode(&v)), Some(long));
    }

    #[test]
    fn schema1_chain_ids_round_trip() {
        for chain_id in [0, 1, 255, 256, 8453, 84532, u32::MAX as u64, u64::MAX] {
            let a = Attribution::Schema1 { codes: s(&["x"]), registry: Address::from([7; 20]), chain_id };
            let suffix = encode(&a).expect("encodes");
            assert_eq!(decode(&suffix), Some(a), "{chain_id}");
        }
        // Chain id 0 is one zero byte, not zero bytes.
        let a = Attribution::Schema1 { codes: vec![], registry: Address::ZERO, chain_id: 0 };
        assert_eq!(encode(&a), Ok(with_marker(&[&[0u8; 20][..], &[0x00, 0x01, 0x00]].concat(), 1)));
    }

    /// splitmix64: a tiny deterministic generator so the property tests need no dependency and fail reproducibly.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
        fn bytes(&mut self, max_len: u64) -> Vec<u8> {
            (0..self.below(max_len + 1)).map(|_| self.next() as u8).collect()
        }
        fn code(&mut self) -> String {
            (0..1 + self.below(12))
                .map(|_| char::from(b'!' + self.below(94) as u8))
                .filter(|&c| c != ',')
                .collect::<String>()
        }
        fn codes(&mut self, max: u64) -> Vec<String> {
            (0..self.below(max + 1)).map(|_| self.code()).filter(|c| !c.is_empty()).collect()
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(0x8021);
        for _ in 0..20_000 {
            let noise = rng.bytes(64);
            let _ = decode(&noise);
            // Behind a real marker and a plausible schema, so the length and CBOR paths see the noise.
            let schema = rng.below(4) as u8;
            let _ = decode(&with_marker(&noise, schema));
        }
    }

    #[test]
    fn truncations_and_mutations_of_vectors_never_panic() {
        let mut rng = Rng(42);
        for (hex_str, prefix, expected) in vectors() {
            let input = bytes(hex_str);
            for cut in 0..=input.len() {
                // Dropping original data keeps the attribution; cutting into the suffix loses it entirely.
                let want = (cut <= prefix).then(|| expected.clone());
                assert_eq!(decode(&input[cut..]), want, "{hex_str} from {cut}");
                assert_eq!(decode(&input[..input.len() - cut]), (cut == 0).then(|| expected.clone()));
            }
            for _ in 0..2_000 {
                let mut mutated = input.clone();
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(mutated.len() as u64) as usize;
                    if let Some(b) = mutated.get_mut(at) {
                        *b = rng.next() as u8;
                    }
                }
                let _ = decode(&mutated);
            }
        }
    }

    #[test]
    fn random_attributions_round_trip() {
        let mut rng = Rng(7);
        for _ in 0..5_000 {
            let attribution = match rng.below(3) {
                0 => Attribution::Schema0 { codes: rng.codes(8) },
                1 => {
                    let mut registry = [0u8; 20];
                    registry.iter_mut().for_each(|b| *b = rng.next() as u8);
                    let chain_id = rng.next() >> rng.below(64);
                    Attribution::Schema1 { codes: rng.codes(8), registry: Address::from(registry), chain_id }
                }
                _ => Attribution::Schema2 {
                    app: (rng.below(2) == 0).then(|| rng.code()).filter(|c| !c.is_empty()),
                    wallet: (rng.below(2) == 0).then(|| rng.code()).filter(|c| !c.is_empty()),
                    services: rng.codes(5),
                },
            };
            let suffix = encode(&attribution).expect("generated codes are valid");
            let calldata = [rng.bytes(40), suffix].concat();
            assert_eq!(decode(&calldata), Some(attribution));
        }
    }
}
