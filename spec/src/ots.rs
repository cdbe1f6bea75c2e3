//! The OpenTimestamps file format (SPEC.md §9.1), for the linear proofs Cairn exports: a
//! detached timestamp file (`.ots`) and the calendar's `/timestamp/<commitment>` answer,
//! both a chain of operations ending in one attestation.
//!
//! Owns the byte layout, written to match the reference implementation
//! (`python-opentimestamps`, `opentimestamps/core/{timestamp,op,notary}.py`) and read back
//! with its bounds. Must never accept what that implementation would refuse: an operation
//! argument or result over 4096 bytes, more than 255 operations (its recursion limit), an
//! empty argument, or a branching timestamp (Cairn never writes one, so it never reads one).

use thiserror::Error;

use crate::codec::Encode;
use crate::hash::Tag;
use crate::proof::{apply_ots, OtsOp, ProofError, ReceiptProof};
use crate::receipt::SignedReceipt;

/// The magic bytes that open a detached timestamp file.
pub const HEADER_MAGIC: &[u8; 31] = b"\x00OpenTimestamps\x00\x00Proof\x00\xbf\x89\xe2\xe8\x84\xe8\x92\x94";
/// The file format's major version.
pub const MAJOR_VERSION: u64 = 1;
/// Longest operation argument, message or result the reference implementation accepts.
pub const MAX_MSG: usize = 4096;
/// Most operations in one path (the reference implementation's recursion limit is 256).
pub const MAX_OPS: usize = 255;
/// Longest calendar URI in a pending attestation.
pub const MAX_URI: usize = 1000;

/// The characters python-opentimestamps allows in a calendar URI (`PendingAttestation`).
pub const URI_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._/:";

fn valid_uri(uri: &str) -> bool {
    uri.len() <= MAX_URI && uri.bytes().all(|c| URI_CHARS.contains(&c))
}

const OP_SHA256: u8 = 0x08;
const OP_APPEND: u8 = 0xf0;
const OP_PREPEND: u8 = 0xf1;
const TAG_BITCOIN: [u8; 8] = [0x05, 0x88, 0x96, 0x0d, 0x73, 0xd7, 0x19, 0x01];
const TAG_PENDING: [u8; 8] = [0x83, 0xdf, 0xe3, 0x0d, 0x2e, 0xf9, 0x0c, 0x8e];

/// What the path ends in.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attestation {
    /// The message is the Merkle root of the Bitcoin block at this height.
    BitcoinBlockHeader {
        /// Block height.
        height: u32,
    },
    /// Not yet in Bitcoin: ask this calendar (`<uri>/timestamp/<message hex>`) later.
    Pending {
        /// Calendar URI.
        uri: String,
    },
}

/// A linear timestamp: operations from a start message to one attestation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LinearTimestamp {
    /// Operations in order.
    pub ops: Vec<OtsOp>,
    /// Where they end.
    pub attestation: Attestation,
}

/// Why bytes are not a timestamp Cairn can read, or a timestamp cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OtsError {
    /// The input ended early.
    #[error("OpenTimestamps data ends early")]
    UnexpectedEnd,
    /// Not a detached timestamp file.
    #[error("not an OpenTimestamps proof file (bad magic)")]
    BadMagic,
    /// A major version other than 1.
    #[error("unsupported OpenTimestamps version {0}")]
    Version(u64),
    /// A file hash other than SHA-256.
    #[error("file hash operation {0:#04x} is not SHA-256")]
    FileHash(u8),
    /// An operation Cairn never writes.
    #[error("unsupported operation tag {0:#04x}")]
    Op(u8),
    /// A fork in the timestamp tree.
    #[error("branching timestamps are not supported")]
    Branch,
    /// An attestation kind Cairn never writes.
    #[error("unsupported attestation tag {0}")]
    AttestationTag(String),
    /// A bound of the format.
    #[error("{0}")]
    Bound(&'static str),
    /// Bytes after the end.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// A variable-length integer that does not fit.
    #[error("integer overflow")]
    Overflow,
    /// The receipt proof does not verify, so there is nothing to export.
    #[error("receipt proof: {0}")]
    Proof(ProofError),
}

/// The timestamp of a receipt proof: the operations of SPEC.md §9 from the receipt's leaf
/// hash to the block's Merkle root, attested by the block at the proof's height. Verifies the
/// proof and the format's bounds first.
pub fn receipt_timestamp(proof: &ReceiptProof) -> Result<LinearTimestamp, OtsError> {
    let v = proof.verify().map_err(OtsError::Proof)?;
    let t = LinearTimestamp {
        ops: proof.ots_ops().map_err(OtsError::Proof)?,
        attestation: Attestation::BitcoinBlockHeader { height: proof.block_height },
    };
    t.check(&v.receipt_leaf.0)?;
    Ok(t)
}

/// The "stamped file" of a receipt: `prefix(cairn/receipt) ‖ receipt body`, the bytes whose
/// SHA-256 is the receipt's id, so the stock client can run `ots verify <file>.ots` next to it.
pub fn stamped_receipt_file(receipt: &SignedReceipt) -> Vec<u8> {
    [&Tag::Receipt.prefix()[..], &receipt.body.to_bytes()[..]].concat()
}

fn varuint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn varbytes(out: &mut Vec<u8>, b: &[u8]) {
    varuint(out, b.len() as u64);
    out.extend_from_slice(b);
}

impl LinearTimestamp {
    /// Checks the reference implementation's bounds for a path starting at `start`.
    pub fn check(&self, start: &[u8]) -> Result<(), OtsError> {
        if self.ops.len() > MAX_OPS {
            return Err(OtsError::Bound("more than 255 operations"));
        }
        let mut msg = start.to_vec();
        for op in &self.ops {
            if let OtsOp::Prepend(b) | OtsOp::Append(b) = op {
                if b.is_empty() || b.len() > MAX_MSG {
                    return Err(OtsError::Bound("an operation argument is empty or over 4096 bytes"));
                }
            }
            if msg.len() > MAX_MSG {
                return Err(OtsError::Bound("a message is over 4096 bytes"));
            }
            msg = apply_ots(&msg, std::slice::from_ref(op));
            if msg.len() > MAX_MSG {
                return Err(OtsError::Bound("an operation result is over 4096 bytes"));
            }
        }
        if let Attestation::Pending { uri } = &self.attestation {
            if !valid_uri(uri) {
                return Err(OtsError::Bound(
                    "calendar URI has a character outside A-Z a-z 0-9 - . _ / : or is over 1000 bytes",
                ));
            }
        }
        Ok(())
    }

    /// The timestamp's serialization (the body of a calendar's `/timestamp/` answer).
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for op in &self.ops {
            match op {
                OtsOp::Sha256 => out.push(OP_SHA256),
                OtsOp::Append(b) => {
                    out.push(OP_APPEND);
                    varbytes(&mut out, b);
                }
                OtsOp::Prepend(b) => {
                    out.push(OP_PREPEND);
                    varbytes(&mut out, b);
                }
            }
        }
        out.push(0x00);
        let mut payload = Vec::new();
        match &self.attestation {
            Attestation::BitcoinBlockHeader { height } => {
                out.extend_from_slice(&TAG_BITCOIN);
                varuint(&mut payload, u64::from(*height));
            }
            Attestation::Pending { uri } => {
                out.extend_from_slice(&TAG_PENDING);
                varbytes(&mut payload, uri.as_bytes());
            }
        }
        varbytes(&mut out, &payload);
        out
    }

    /// A detached timestamp file for a file whose SHA-256 is `digest`.
    pub fn detached_file(&self, digest: &[u8; 32]) -> Vec<u8> {
        let mut out = HEADER_MAGIC.to_vec();
        varuint(&mut out, MAJOR_VERSION);
        out.push(OP_SHA256);
        out.extend_from_slice(digest);
        out.extend_from_slice(&self.serialize());
        out
    }

    /// Reads a timestamp serialization (all of `bytes`).
    pub fn deserialize(bytes: &[u8]) -> Result<Self, OtsError> {
        let mut r = OtsReader { buf: bytes, pos: 0 };
        let t = r.timestamp()?;
        r.end()?;
        Ok(t)
    }

    /// Reads a detached timestamp file: the digest and the timestamp.
    pub fn from_detached_file(bytes: &[u8]) -> Result<([u8; 32], Self), OtsError> {
        let mut r = OtsReader { buf: bytes, pos: 0 };
        if r.take(HEADER_MAGIC.len())? != HEADER_MAGIC {
            return Err(OtsError::BadMagic);
        }
        let v = r.varuint()?;
        if v != MAJOR_VERSION {
            return Err(OtsError::Version(v));
        }
        let op = r.byte()?;
        if op != OP_SHA256 {
            return Err(OtsError::FileHash(op));
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(r.take(32)?);
        let t = r.timestamp()?;
        r.end()?;
        Ok((digest, t))
    }
}

struct OtsReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> OtsReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], OtsError> {
        let end = self.pos.checked_add(n).ok_or(OtsError::UnexpectedEnd)?;
        let s = self.buf.get(self.pos..end).ok_or(OtsError::UnexpectedEnd)?;
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, OtsError> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }

    fn varuint(&mut self) -> Result<u64, OtsError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b & 0x7e != 0 {
                return Err(OtsError::Overflow);
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                // One encoding per value: a trailing zero group is refused, so what parses
                // re-serializes to the same bytes.
                if shift > 0 && b == 0 {
                    return Err(OtsError::Bound("non-minimal varuint"));
                }
                return Ok(v);
            }
        }
        Err(OtsError::Overflow)
    }

    fn varbytes(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], OtsError> {
        let n = self.varuint()?;
        if n > max as u64 {
            return Err(OtsError::Bound(what));
        }
        self.take(n as usize)
    }

    fn timestamp(&mut self) -> Result<LinearTimestamp, OtsError> {
        let mut ops = Vec::new();
        loop {
            let tag = self.byte()?;
            match tag {
                0x00 => break,
                0xff => return Err(OtsError::Branch),
                OP_SHA256 => ops.push(OtsOp::Sha256),
                OP_APPEND | OP_PREPEND => {
                    let arg = self.varbytes(MAX_MSG, "operation argument over 4096 bytes")?;
                    if arg.is_empty() {
                        return Err(OtsError::Bound("empty operation argument"));
                    }
                    ops.push(if tag == OP_APPEND {
                        OtsOp::Append(arg.to_vec())
                    } else {
                        OtsOp::Prepend(arg.to_vec())
                    });
                }
                other => return Err(OtsError::Op(other)),
            }
            if ops.len() > MAX_OPS {
                return Err(OtsError::Bound("more than 255 operations"));
            }
        }
        let mut tag = [0u8; 8];
        tag.copy_from_slice(self.take(8)?);
        let payload = self.varbytes(8192, "attestation payload over 8192 bytes")?;
        let mut p = OtsReader { buf: payload, pos: 0 };
        let attestation = if tag == TAG_BITCOIN {
            let h = p.varuint()?;
            Attestation::BitcoinBlockHeader { height: u32::try_from(h).map_err(|_| OtsError::Overflow)? }
        } else if tag == TAG_PENDING {
            let uri = p.varbytes(MAX_URI, "calendar URI over 1000 bytes")?;
            let uri = std::str::from_utf8(uri).map_err(|_| OtsError::Bound("calendar URI is not UTF-8"))?;
            if !valid_uri(uri) {
                return Err(OtsError::Bound("calendar URI has a character python-opentimestamps refuses"));
            }
            Attestation::Pending { uri: uri.to_owned() }
        } else {
            return Err(OtsError::AttestationTag(hex::encode(tag)));
        };
        p.end()?;
        Ok(LinearTimestamp { ops, attestation })
    }

    fn end(&self) -> Result<(), OtsError> {
        match self.buf.len().saturating_sub(self.pos) {
            0 => Ok(()),
            n => Err(OtsError::Trailing(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> LinearTimestamp {
        LinearTimestamp {
            ops: vec![OtsOp::Prepend(vec![1, 2]), OtsOp::Sha256, OtsOp::Append(vec![7; 200]), OtsOp::Sha256],
            attestation: Attestation::BitcoinBlockHeader { height: 300_000 },
        }
    }

    #[test]
    fn round_trips_and_matches_the_reference_layout() {
        let t = sample();
        let digest = [9u8; 32];
        let file = t.detached_file(&digest);
        assert_eq!(&file[..31], HEADER_MAGIC);
        // version 1, sha256, digest, then: prepend varbytes(2), sha256, append varbytes(200)
        // (200 = 0xc8 0x01 as a varuint), sha256, attestation.
        assert_eq!(file[31], 1);
        assert_eq!(file[32], 0x08);
        assert_eq!(&file[65..69], &[0xf1, 2, 1, 2]);
        assert_eq!(&file[69..73], &[0x08, 0xf0, 0xc8, 0x01]);
        // 300000 = 0xe0 0xa7 0x12; payload length 3.
        assert_eq!(
            &file[file.len() - 14..],
            &[0x08, 0x00, 5, 0x88, 0x96, 0x0d, 0x73, 0xd7, 0x19, 0x01, 3, 0xe0, 0xa7, 0x12][..]
        );
        assert_eq!(LinearTimestamp::from_detached_file(&file).unwrap(), (digest, t.clone()));
        assert_eq!(LinearTimestamp::deserialize(&t.serialize()).unwrap(), t);
        let pending = LinearTimestamp {
            ops: vec![],
            attestation: Attestation::Pending { uri: "http://127.0.0.1:8080".into() },
        };
        assert_eq!(LinearTimestamp::deserialize(&pending.serialize()).unwrap(), pending);
    }

    #[test]
    fn refuses_what_the_reference_refuses() {
        let t = sample();
        let mut file = t.detached_file(&[0; 32]);
        assert_eq!(
            LinearTimestamp::from_detached_file(&file[..file.len() - 1]),
            Err(OtsError::UnexpectedEnd)
        );
        file.push(0);
        assert_eq!(LinearTimestamp::from_detached_file(&file), Err(OtsError::Trailing(1)));
        assert_eq!(
            LinearTimestamp::from_detached_file(b"not a timestamp at all, no magic"),
            Err(OtsError::BadMagic)
        );
        assert_eq!(LinearTimestamp::deserialize(&[0xff, 0x08]), Err(OtsError::Branch));
        assert_eq!(LinearTimestamp::deserialize(&[0x02]), Err(OtsError::Op(0x02)));
        assert!(LinearTimestamp::deserialize(&[0xf0, 0x00, 0x00]).is_err());
        let long = LinearTimestamp {
            ops: vec![OtsOp::Append(vec![0; 4097])],
            attestation: Attestation::BitcoinBlockHeader { height: 1 },
        };
        assert!(long.check(&[0; 32]).is_err());
        assert!(LinearTimestamp::deserialize(&long.serialize()).is_err());
        let many = LinearTimestamp {
            ops: vec![OtsOp::Sha256; 256],
            attestation: Attestation::BitcoinBlockHeader { height: 1 },
        };
        assert!(many.check(&[0; 32]).is_err());
        assert!(LinearTimestamp::deserialize(&many.serialize()).is_err());
        assert!(sample().check(&[0; 32]).is_ok());
        // python-opentimestamps takes only A-Z a-z 0-9 - . _ / : in a calendar URI.
        for uri in ["https://cal.example/x?a=1", "http://host/é", "http://a b"] {
            let t = LinearTimestamp { ops: vec![], attestation: Attestation::Pending { uri: uri.into() } };
            assert!(t.check(&[0; 32]).is_err(), "{uri}");
            assert!(LinearTimestamp::deserialize(&t.serialize()).is_err(), "{uri}");
        }
        let ok = LinearTimestamp {
            ops: vec![],
            attestation: Attestation::Pending { uri: "https://a.pool.opentimestamps.org:443/x_y-z".into() },
        };
        assert!(ok.check(&[0; 32]).is_ok());
        // A non-minimal varuint (zero written in two bytes) as an argument length.
        assert_eq!(
            LinearTimestamp::deserialize(&[0xf0, 0x81, 0x00, 0x07, 0x00]),
            Err(OtsError::Bound("non-minimal varuint"))
        );
        // A varuint longer than 64 bits.
        assert_eq!(
            LinearTimestamp::deserialize(&[
                0xf0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]),
            Err(OtsError::Overflow)
        );
    }
}
