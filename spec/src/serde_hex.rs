//! Serde helpers that write byte strings as lower-case hex in JSON.
//!
//! Owns only the JSON form of raw bytes; the canonical binary encoding lives in `codec`.

use serde::{Deserialize, Deserializer, Serializer};

/// Serializes bytes as hex.
pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

/// Deserializes hex into bytes.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    hex::decode(&*s).map_err(serde::de::Error::custom)
}
