//! Serde helpers that write byte strings as lower-case hex in JSON.
//!
//! Owns only the JSON form of raw bytes; the canonical binary encoding lives in `codec`.

use serde::{Deserialize, Deserializer, Serializer};

/// The lower-case hex digit of a nibble (`n` < 16).
fn digit(n: u8) -> u8 {
    if n < 10 {
        b'0' + n
    } else {
        b'a' + (n - 10)
    }
}

/// Writes the lower-case hex of `v` into `out` (twice as long as `v`) and returns it. A
/// byte loop rather than `hex::encode`'s char-by-char `String`: the coordinator writes
/// several hashes and keys into every record it stores, on the ingest path.
pub(crate) fn encode_into<'a>(v: &[u8], out: &'a mut [u8]) -> &'a str {
    for (pair, b) in out.chunks_exact_mut(2).zip(v) {
        if let [hi, lo] = pair {
            *hi = digit(b >> 4);
            *lo = digit(b & 0x0f);
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(out).unwrap_or_default()
}

/// Lower-case hex of `v`.
pub(crate) fn to_hex(v: &[u8]) -> String {
    let mut out = vec![0u8; v.len() * 2];
    encode_into(v, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Serializes a value of at most 64 bytes (a hash, key or signature) as hex from a stack
/// buffer, without allocating.
pub(crate) fn serialize_short<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 128];
    match buf.get_mut(..v.len() * 2) {
        Some(out) => s.serialize_str(encode_into(v, out)),
        None => s.serialize_str(&to_hex(v)),
    }
}

/// Serializes bytes as hex.
pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    serialize_short(v, s)
}

/// Deserializes hex into bytes.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    hex::decode(&*s).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_matches_the_hex_crate() {
        for len in [0usize, 1, 31, 32, 64, 65, 300] {
            let v: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(super::to_hex(&v), hex::encode(&v));
            let json = serde_json::to_string(&crate::hash::Hash32([0xa5; 32])).unwrap();
            assert_eq!(json, format!("\"{}\"", "a5".repeat(32)));
        }
        assert_eq!(super::to_hex(&[0x00, 0x0f, 0xf0, 0xff]), "000ff0ff");
    }
}
