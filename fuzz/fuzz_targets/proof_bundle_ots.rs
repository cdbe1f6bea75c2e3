//! Proof bundles and OpenTimestamps files on arbitrary bytes: decoding never panics, what
//! decodes re-encodes to the same bytes, and a parsed timestamp serializes back unchanged.
#![no_main]

use cairn_spec::ots::LinearTimestamp;
use cairn_spec::{Decode, Encode, ProofBundle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = ProofBundle::from_bytes(data) {
        assert_eq!(&b.to_bytes()[..], data);
    }
    if let Ok((digest, t)) = LinearTimestamp::from_detached_file(data) {
        assert_eq!(&t.detached_file(&digest)[..], data);
    }
    if let Ok(t) = LinearTimestamp::deserialize(data) {
        assert_eq!(&t.serialize()[..], data);
    }
});
