//! The anchor payload (SPEC.md §7): the 40 bytes of OP_RETURN data that commit an epoch
//! header to Bitcoin — magic `CRN`, version, epoch height, header hash.
//!
//! Owns the payload codec and the rule that recognises a Cairn OP_RETURN output. Must never
//! grow past 40 bytes: the whole output script is then 42 bytes, which relays under every
//! common policy (Bitcoin Core's old 83-byte and Knots' 42-byte data-carrier limits).

use bitcoin::script::{Script, ScriptBuf};
use thiserror::Error;

use crate::hash::Hash32;

/// Magic tag that starts every payload.
pub const MAGIC: [u8; 3] = *b"CRN";
/// Payload version.
pub const VERSION: u8 = 1;
/// Payload length in bytes.
pub const PAYLOAD_LEN: usize = 40;
/// Offset of the header hash inside the payload.
pub const HASH_OFFSET: usize = 8;
/// Offset of the header hash inside the output script (`OP_RETURN`, `OP_PUSHBYTES_40`).
pub const SCRIPT_HASH_OFFSET: usize = 2 + HASH_OFFSET;

const OP_RETURN: u8 = 0x6a;
const OP_PUSHBYTES_MAX: u8 = 0x4b;

/// What an anchor commits to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AnchorPayload {
    /// Height of the committed epoch header.
    pub height: u32,
    /// Hash of the committed epoch header.
    pub header_hash: Hash32,
}

/// Why OP_RETURN data that starts with the magic is not a valid payload.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Not exactly 40 bytes.
    #[error("anchor payload is {0} bytes, expected 40")]
    WrongLength(usize),
    /// Does not start with `CRN`.
    #[error("anchor payload does not start with the CRN magic")]
    BadMagic,
    /// A version this implementation does not speak.
    #[error("unknown anchor payload version {0}")]
    UnknownVersion(u8),
}

impl PayloadError {
    /// Stable name used in test vectors.
    pub fn code(&self) -> &'static str {
        match self {
            PayloadError::WrongLength(_) => "wrong_length",
            PayloadError::BadMagic => "bad_magic",
            PayloadError::UnknownVersion(_) => "unknown_version",
        }
    }
}

impl AnchorPayload {
    /// The 40 payload bytes.
    pub fn to_bytes(&self) -> [u8; PAYLOAD_LEN] {
        let mut b = [0u8; PAYLOAD_LEN];
        b[..3].copy_from_slice(&MAGIC);
        b[3] = VERSION;
        b[4..8].copy_from_slice(&self.height.to_be_bytes());
        b[HASH_OFFSET..].copy_from_slice(&self.header_hash.0);
        b
    }

    /// Parses exactly 40 bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, PayloadError> {
        if b.get(..3) != Some(&MAGIC[..]) {
            return Err(PayloadError::BadMagic);
        }
        if b.len() != PAYLOAD_LEN {
            return Err(PayloadError::WrongLength(b.len()));
        }
        let version = b.get(3).copied().unwrap_or_default();
        if version != VERSION {
            return Err(PayloadError::UnknownVersion(version));
        }
        let mut h = [0u8; 4];
        h.copy_from_slice(b.get(4..8).ok_or(PayloadError::WrongLength(b.len()))?);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(b.get(HASH_OFFSET..).ok_or(PayloadError::WrongLength(b.len()))?);
        Ok(AnchorPayload { height: u32::from_be_bytes(h), header_hash: Hash32(hash) })
    }

    /// The output script: `OP_RETURN OP_PUSHBYTES_40 <payload>` (42 bytes).
    pub fn to_script(&self) -> ScriptBuf {
        let mut s = Vec::with_capacity(PAYLOAD_LEN + 2);
        s.push(OP_RETURN);
        s.push(PAYLOAD_LEN as u8);
        s.extend_from_slice(&self.to_bytes());
        ScriptBuf::from_bytes(s)
    }

    /// Recognises a Cairn output: `None` when the script is not `OP_RETURN` followed by a
    /// single direct push whose data starts with the magic; otherwise the parsed payload or
    /// why it is invalid.
    pub fn from_script(script: &Script) -> Option<Result<Self, PayloadError>> {
        let b = script.as_bytes();
        let (op, push, data) = match b {
            [op, push, data @ ..] => (*op, *push, data),
            _ => return None,
        };
        if op != OP_RETURN || push == 0 || push > OP_PUSHBYTES_MAX || usize::from(push) != data.len() {
            return None;
        }
        if data.get(..3) != Some(&MAGIC[..]) {
            return None;
        }
        Some(Self::from_bytes(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_size() {
        let p = AnchorPayload { height: 0x01020304, header_hash: crate::hash::sha256(b"h") };
        let s = p.to_script();
        assert_eq!(s.len(), 42);
        assert_eq!(AnchorPayload::from_script(&s), Some(Ok(p)));
        assert_eq!(AnchorPayload::from_bytes(&p.to_bytes()), Ok(p));
        assert_eq!(&s.as_bytes()[SCRIPT_HASH_OFFSET..], &p.header_hash.0);
    }

    #[test]
    fn foreign_op_returns_are_ignored() {
        assert_eq!(AnchorPayload::from_script(Script::from_bytes(&[0x6a, 0x02, b'h', b'i'])), None);
        assert_eq!(AnchorPayload::from_script(Script::from_bytes(&[0x51])), None);
        let mut b = vec![0x6a, 0x03];
        b.extend_from_slice(b"CRN");
        assert_eq!(
            AnchorPayload::from_script(Script::from_bytes(&b)),
            Some(Err(PayloadError::WrongLength(3)))
        );
    }
}
