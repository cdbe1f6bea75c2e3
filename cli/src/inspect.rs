//! Decoding any protocol object from its bytes into its JSON form, for operators and
//! auditors who want to look at what is on the wire or on disk.
//!
//! Owns the mapping from an object kind's name to its decoder. Must never accept an object
//! the spec decoder refuses: it only renders what `cairn-spec` validated.

use cairn_spec::{
    Commitment, Decode, DecodeError, LedgerEntry, Object, ReceiptProof, Registration, Reveal, Signed,
    SignedEpochHeader, SignedReceipt, Task, TaskClass,
};
use serde_json::{json, Value};
use thiserror::Error;

/// Object kinds `decode` knows, by name.
pub const KINDS: [&str; 9] = [
    "task-class",
    "task",
    "registration",
    "commitment",
    "reveal",
    "receipt",
    "ledger-entry",
    "epoch-header",
    "receipt-proof",
];

/// Why bytes could not be rendered.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum InspectError {
    /// Not a kind in `KINDS`.
    #[error("unknown object kind {0:?}; known kinds: {kinds}", kinds = KINDS.join(", "))]
    UnknownKind(String),
    /// The spec decoder refused the bytes.
    #[error("not a valid {kind} ({code})", code = source.code())]
    Decode {
        /// Kind.
        kind: String,
        /// Decoder's error.
        source: DecodeError,
    },
}

fn render<T: serde::Serialize>(v: &T, id: Option<String>) -> Value {
    let mut out = json!({ "object": v });
    if let Some(id) = id {
        out["id"] = Value::String(id);
    }
    out
}

/// Decodes `bytes` as an object of `kind` and returns its JSON form with its id, and for
/// signed objects whether the signature verifies.
pub fn decode(kind: &str, bytes: &[u8]) -> Result<Value, InspectError> {
    let err = |source| InspectError::Decode { kind: kind.to_owned(), source };
    fn signed<T>(v: Signed<T>) -> Value
    where
        T: Object + cairn_spec::Signer + serde::Serialize,
    {
        let mut out = render(&v, Some(v.id().to_hex()));
        out["signature_valid"] = Value::Bool(v.verify());
        out
    }
    Ok(match kind {
        "task-class" => {
            let v = TaskClass::from_bytes(bytes).map_err(err)?;
            render(&v, Some(v.id().to_hex()))
        }
        "task" => {
            let v = Task::from_bytes(bytes).map_err(err)?;
            render(&v, Some(v.id().to_hex()))
        }
        "registration" => {
            let v = Signed::<Registration>::from_bytes(bytes).map_err(err)?;
            let bits = v.body.work_bits();
            let mut out = signed(v);
            out["work_bits"] = json!(bits);
            out
        }
        "commitment" => signed(Signed::<Commitment>::from_bytes(bytes).map_err(err)?),
        "reveal" => signed(Signed::<Reveal>::from_bytes(bytes).map_err(err)?),
        "receipt" => {
            let v = SignedReceipt::from_bytes(bytes).map_err(err)?;
            let mut out = render(&v, Some(v.id().to_hex()));
            out["batch_id"] = json!(v.batch_id().map(|b| b.to_hex()));
            out["signature_valid"] = Value::Bool(v.verify());
            out
        }
        "ledger-entry" => {
            let v = LedgerEntry::from_bytes(bytes).map_err(err)?;
            render(&v, Some(v.id().to_hex()))
        }
        "epoch-header" => signed(SignedEpochHeader::from_bytes(bytes).map_err(err)?),
        "receipt-proof" => {
            let v = ReceiptProof::from_bytes(bytes).map_err(err)?;
            let mut out = render(&v, None);
            out["verification"] = match v.verify() {
                Ok(ok) => json!({ "ok": true, "result": ok }),
                Err(e) => json!({ "ok": false, "step": e.code(), "error": e.to_string() }),
            };
            out
        }
        other => return Err(InspectError::UnknownKind(other.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use cairn_spec::{Encode, Hash32, Network, SigningKey, Verdict, WorkReceipt};

    use super::*;

    #[test]
    fn a_batch_signed_receipt_shows_its_batch_and_whether_it_verifies() {
        let k = SigningKey::from_secret_bytes([4; 32]).expect("valid key");
        let body = |i: u8| WorkReceipt {
            network: Network::Regtest,
            coordinator: k.public(),
            epoch: 1,
            task: Hash32([i; 32]),
            class: Hash32([9; 32]),
            worker: k.public(),
            result_hash: Hash32::ZERO,
            verdict: Verdict::Accepted,
            units: 1,
            reward_sats: 5,
            draw_epoch: 0,
        };
        let rs = SignedReceipt::sign_all(vec![body(1), body(2), body(3)], |m| k.sign(m, &[0; 32]));
        let v = decode("receipt", &rs[1].to_bytes()).expect("decodes");
        assert_eq!(v["signature_valid"], Value::Bool(true));
        assert_eq!(v["object"]["batch"]["count"], json!(3));
        assert_eq!(v["batch_id"], json!(rs[1].batch_id().map(|b| b.to_hex())));
        let mut bytes = rs[1].to_bytes();
        bytes[WorkReceipt::ENCODED_LEN + 5] ^= 1; // a sibling of its path
        let v = decode("receipt", &bytes).expect("still decodes");
        assert_eq!(v["signature_valid"], Value::Bool(false));
        assert!(decode("receipt", &bytes[..WorkReceipt::ENCODED_LEN + 64]).is_err());
    }
}
