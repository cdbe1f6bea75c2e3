//! The HTTP API's request bodies: untrusted bytes to validated values.
//!
//! Owns parsing and bounds-checking what a client sends in a task submission (its JSON shape
//! is `cairn_spec::api::SubmitTask`). Must never read or change node state (it knows nothing
//! of classes or the store), so the fuzzer can drive it alone: `fuzz/fuzz_targets/api_body.rs`
//! includes this file by path, which is also why it depends on nothing but `cairn-spec`,
//! `serde_json` and `hex`.

use cairn_spec::api::SubmitTask;
use cairn_spec::{Payload, PubKey};

/// A submission that parsed and passed every check that needs no node state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    /// Class name or id, as given (the node resolves it).
    pub class: String,
    /// The input as it travels: inline when small, else a content-addressed blob.
    pub payload: Payload,
    /// The blob's bytes, when the input is a blob.
    pub blob: Option<Vec<u8>>,
    /// Units of work (at least 1).
    pub units: u32,
    /// Budget offered.
    pub budget_sats: u64,
    /// Idempotency nonce; the node draws one when absent.
    pub nonce: Option<u64>,
    /// Requester key, when not the coordinator itself.
    pub requester: Option<PubKey>,
    /// Known answer of a canary.
    pub canary: Option<Vec<u8>>,
}

/// Parses and checks a `POST /v1/tasks` body (its size is bounded by the HTTP layer, the
/// operator's `api.max_body_bytes`); the error is the reason given to the client.
pub fn submission(body: &[u8]) -> Result<Submission, String> {
    let b: SubmitTask = serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
    if b.class.is_empty() || b.class.len() > 128 {
        return Err("class must be a class name or id (1 to 128 characters)".into());
    }
    let input = match (b.input_hex, b.input_text) {
        (Some(h), None) => hex::decode(h).map_err(|_| "input_hex is not hex".to_string())?,
        (None, Some(t)) => t.into_bytes(),
        _ => return Err("give exactly one of input_hex and input_text".into()),
    };
    if input.len() as u64 > cairn_spec::task::MAX_BLOB_BYTES {
        return Err(format!("input above {} bytes", cairn_spec::task::MAX_BLOB_BYTES));
    }
    if b.units == 0 {
        return Err("units must be at least 1".into());
    }
    let canary = b
        .canary_answer_hex
        .map(|h| hex::decode(h).map_err(|_| "canary_answer_hex is not hex".to_string()))
        .transpose()?;
    let requester = b
        .requester
        .as_deref()
        .map(|k| {
            PubKey::from_hex(k).ok_or_else(|| "key must be a 64-hex-character x-only public key".to_string())
        })
        .transpose()?;
    // Small inputs travel in the announcement; larger ones become a content-addressed blob
    // the node keeps and workers fetch by `GetBlob`.
    let (payload, blob) = if input.len() <= cairn_spec::task::MAX_INLINE_BYTES {
        (Payload::Inline(input), None)
    } else {
        (Payload::Blob { hash: cairn_spec::content_hash(&input), size: input.len() as u64 }, Some(input))
    };
    Ok(Submission {
        class: b.class,
        payload,
        blob,
        units: b.units,
        budget_sats: b.budget_sats,
        nonce: b.nonce,
        requester,
        canary,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_good_body_parses_and_each_bad_one_says_why() {
        let s = submission(br#"{"class":"upper","input_text":"hi","units":2,"budget_sats":10}"#).unwrap();
        assert_eq!(s.payload, Payload::Inline(b"hi".to_vec()));
        assert_eq!((s.units, s.budget_sats, s.nonce, s.blob), (2, 10, None, None));
        for (body, why) in [
            (
                &br#"{"class":"upper","input_text":"hi","units":0,"budget_sats":10}"#[..],
                "units must be at least 1",
            ),
            (br#"{"class":"upper","units":1,"budget_sats":10}"#, "exactly one of"),
            (br#"{"class":"upper","input_hex":"zz","units":1,"budget_sats":10}"#, "not hex"),
            (br#"{"class":"","input_text":"a","units":1,"budget_sats":10}"#, "class must be"),
            (br#"{"class":"u","input_text":"a","units":1,"budget_sats":10,"requester":"00"}"#, "x-only"),
            (br#"{"class":"u","input_text":"a","units":1,"budget_sats":10,"extra":1}"#, "unknown field"),
            (br#"{"class":"u","input_text":"a","units":-1,"budget_sats":10}"#, "invalid JSON"),
            (b"\xff\xfe", "invalid JSON"),
        ] {
            let e = submission(body).unwrap_err();
            assert!(e.contains(why), "{e} should say {why}");
        }
        let big = format!(
            r#"{{"class":"u","input_hex":"{}","units":1,"budget_sats":1}}"#,
            "ab".repeat(cairn_spec::task::MAX_INLINE_BYTES + 1)
        );
        let s = submission(big.as_bytes()).unwrap();
        assert!(
            matches!(s.payload, Payload::Blob { size, .. } if size as usize == cairn_spec::task::MAX_INLINE_BYTES + 1)
        );
        assert!(s.blob.is_some());
    }
}
