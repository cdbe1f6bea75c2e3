//! Receipt proofs: decode, verify and OpenTimestamps export on arbitrary bytes never
//! panic; a proof that verifies exports operations that reach the block Merkle root.
#![no_main]

use cairn_spec::proof::apply_ots;
use cairn_spec::{Decode, Encode, ReceiptProof};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = ReceiptProof::from_bytes(data) else { return };
    assert_eq!(p.to_bytes(), data);
    if let Ok(v) = p.verify() {
        let ops = p.ots_ops().expect("a verified proof exports");
        assert_eq!(apply_ots(&v.receipt_leaf.0, &ops), v.block_merkle_root.0.to_vec());
    }
});
