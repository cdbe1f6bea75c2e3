//! `cargo bench -p cairn-spec`: Merkle roots against raw SHA-256 of the same number of
//! 64-byte blocks (ratio printed), proof generation and verification, BIP340 signing and
//! verification, and full receipt-proof verification. Prints figures; asserts nothing about
//! time. Each figure is the best of several runs, to damp noise on a shared machine.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::indexing_slicing, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use cairn_spec::hash::{sha256, Hash32};
use cairn_spec::keys::verify;
use cairn_spec::merkle::{self, MerkleTree};
use cairn_spec::{Decode, ReceiptProof, SigningKey};
use sha2::{Digest, Sha256};

/// Best wall time of `f` over `runs` runs.
fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn per_op(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e9 / n as f64
}

fn leaves(n: usize) -> Vec<Hash32> {
    (0..n as u64).map(|i| sha256(&i.to_le_bytes())).collect()
}

fn main() {
    // `cargo test --benches` runs this binary with `--test`-like flags; stay quick then.
    let quick = std::env::args().any(|a| a == "--test" || a == "--quick");
    let sizes: &[usize] = if quick { &[1_000] } else { &[1_000, 100_000, 1_000_000] };
    let runs = if quick { 1 } else { 5 };

    println!("== Merkle root vs raw SHA-256 (same number of 64-byte blocks) ==");
    println!("{:>10} {:>14} {:>14} {:>8}", "leaves", "merkle root", "raw sha256", "ratio");
    let mut last_ratio = (0, 0.0);
    for &n in sizes {
        let ls = leaves(n);
        let blocks: Vec<[u8; 64]> = (0..n).map(|i| [(i % 251) as u8; 64]).collect();
        let merkle_t = best(runs, || merkle::root(&ls));
        let raw_t = best(runs, || {
            let mut acc = 0u8;
            for b in &blocks {
                acc ^= Sha256::digest(b)[0];
            }
            acc
        });
        println!(
            "{:>10} {:>12.2}ms {:>12.2}ms {:>7.3}x",
            n,
            merkle_t.as_secs_f64() * 1e3,
            raw_t.as_secs_f64() * 1e3,
            merkle_t.as_secs_f64() / raw_t.as_secs_f64()
        );
        last_ratio = (n, merkle_t.as_secs_f64() / raw_t.as_secs_f64());
    }

    println!("\n== Merkle proofs ==");
    println!("{:>10} {:>16} {:>16} {:>8}", "leaves", "generate/proof", "verify/proof", "depth");
    for &n in sizes {
        let ls = leaves(n);
        let tree = MerkleTree::new(ls.clone());
        let root = tree.root();
        let k = 1_000.min(n);
        let idx: Vec<u32> = (0..k).map(|i| ((i * 7919) % n) as u32).collect();
        let gen_t = best(runs, || idx.iter().map(|&i| tree.proof(i).unwrap().siblings.len()).sum::<usize>());
        let proofs: Vec<_> = idx.iter().map(|&i| tree.proof(i).unwrap()).collect();
        let ver_t = best(runs, || {
            proofs.iter().zip(&idx).filter(|(p, &i)| p.root_for(&ls[i as usize]).unwrap() == root).count()
        });
        println!(
            "{:>10} {:>14.0}ns {:>14.0}ns {:>8}",
            n,
            per_op(gen_t, k),
            per_op(ver_t, k),
            proofs[0].siblings.len()
        );
    }

    println!("\n== BIP340 Schnorr ==");
    let key = SigningKey::from_secret_bytes([7; 32]).unwrap();
    let n = if quick { 100 } else { 5_000 };
    let msgs: Vec<Hash32> = (0..n as u64).map(|i| sha256(&i.to_le_bytes())).collect();
    let sign_t =
        best(runs.min(3), || msgs.iter().map(|m| key.sign(m, &[0; 32]).0[0] as usize).sum::<usize>());
    let sigs: Vec<_> = msgs.iter().map(|m| key.sign(m, &[0; 32])).collect();
    let pk = key.public();
    let verify_t = best(runs.min(3), || msgs.iter().zip(&sigs).filter(|(m, s)| verify(&pk, m, s)).count());
    println!("sign:   {:>8.0} ns/op  ({:.0}/s)", per_op(sign_t, n), 1e9 / per_op(sign_t, n));
    println!("verify: {:>8.0} ns/op  ({:.0}/s)", per_op(verify_t, n), 1e9 / per_op(verify_t, n));

    println!("\n== Receipt proof (vector: 5-receipt epoch, 3 headers, 4-tx block) ==");
    let vectors = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/receipt_proof.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(vectors).unwrap()).unwrap();
    let bytes = hex::decode(v["valid"][0]["proof"].as_str().unwrap()).unwrap();
    let k = if quick { 10 } else { 2_000 };
    let dec_t = best(runs.min(3), || (0..k).filter(|_| ReceiptProof::from_bytes(&bytes).is_ok()).count());
    let proof = ReceiptProof::from_bytes(&bytes).unwrap();
    let ver_t = best(runs.min(3), || (0..k).filter(|_| proof.verify().is_ok()).count());
    println!("decode: {:>8.0} ns/proof", per_op(dec_t, k));
    println!(
        "verify: {:>8.0} ns/proof  (4 Schnorr verifications + hashing; {:.1} Schnorr-verify equivalents)",
        per_op(ver_t, k),
        per_op(ver_t, k) / per_op(verify_t, n)
    );

    println!();
    println!(
        "summary: Merkle root time / raw SHA-256 time at {} leaves = {:.3}x",
        last_ratio.0, last_ratio.1
    );
    println!("summary: BIP340 verifications per second (one core) = {:.0}", 1e9 / per_op(verify_t, n));
    println!("summary: receipt proof verifications per second (one core) = {:.0}", 1e9 / per_op(ver_t, k));
}
