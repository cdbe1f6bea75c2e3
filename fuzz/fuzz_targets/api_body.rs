//! The coordinator's API body parser (`coordinator/src/api/body.rs`, included by path so the
//! fuzz build needs no RocksDB) on arbitrary bytes: never a panic, and whatever it accepts
//! holds its bounds.
#![no_main]

#[path = "../../coordinator/src/api/body.rs"]
#[allow(dead_code)]
mod api_body;

use cairn_spec::Payload;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = api_body::submission(data) {
        assert!(s.units >= 1);
        assert!(!s.class.is_empty() && s.class.len() <= 128);
        match (&s.payload, &s.blob) {
            (Payload::Inline(b), None) => assert!(b.len() <= cairn_spec::task::MAX_INLINE_BYTES),
            (Payload::Blob { hash, size }, Some(b)) => {
                assert_eq!(*size as usize, b.len());
                assert_eq!(*hash, cairn_spec::content_hash(b));
                assert!(b.len() > cairn_spec::task::MAX_INLINE_BYTES);
            }
            other => panic!("payload and blob disagree: {other:?}"),
        }
    }
});
