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
        "receipt" => signed(SignedReceipt::from_bytes(bytes).map_err(err)?),
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
