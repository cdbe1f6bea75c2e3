//! Merkle proofs with arbitrary index, count and siblings: never panic, and a proof taken
//! from a real tree always verifies.
#![no_main]

use cairn_spec::hash::{sha256, Hash32};
use cairn_spec::merkle::{MerkleProof, MerkleTree};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let index = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let count = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    let siblings: Vec<Hash32> = data[8..]
        .chunks_exact(32)
        .take(40)
        .map(|c| Hash32(c.try_into().unwrap_or([0; 32])))
        .collect();
    let leaf = sha256(&data[..8]);
    let _ = MerkleProof { index, count, siblings }.root_for(&leaf);

    let n = (count % 512) + 1;
    let leaves: Vec<Hash32> = (0..n).map(|i| sha256(&i.to_le_bytes())).collect();
    let tree = MerkleTree::new(leaves.clone());
    let i = index % n;
    let p = tree.proof(i).expect("in range");
    assert_eq!(p.root_for(&leaves[i as usize]).expect("fits"), tree.root());
});
