//! The anchor payload parser and the Cairn-output recogniser on arbitrary scripts.
#![no_main]

use cairn_spec::AnchorPayload;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = AnchorPayload::from_bytes(data) {
        assert_eq!(&p.to_bytes()[..], data);
    }
    if let Some(Ok(p)) = AnchorPayload::from_script(bitcoin::Script::from_bytes(data)) {
        assert_eq!(p.to_script().as_bytes(), data);
    }
});
