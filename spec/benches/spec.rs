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
use cairn_spec::{Decode, Encode, ReceiptProof, SigningKey};
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

    println!("\n== Receipt proof (vector: 5-receipt epoch, 2 headers, 4-tx block) ==");
    let vectors = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/receipt_proof.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(vectors).unwrap()).unwrap();
    let bytes = hex::decode(v["valid"][0]["proof"].as_str().unwrap()).unwrap();
    let k = if quick { 10 } else { 2_000 };
    let dec_t = best(runs.min(3), || (0..k).filter(|_| ReceiptProof::from_bytes(&bytes).is_ok()).count());
    let proof = ReceiptProof::from_bytes(&bytes).unwrap();
    let ver_t = best(runs.min(3), || (0..k).filter(|_| proof.verify().is_ok()).count());
    println!("decode: {:>8.0} ns/proof", per_op(dec_t, k));
    println!(
        "verify: {:>8.0} ns/proof  (3 Schnorr verifications + hashing; {:.1} Schnorr-verify equivalents)",
        per_op(ver_t, k),
        per_op(ver_t, k) / per_op(verify_t, n)
    );

    println!("\n== Receipt proof size by epochs per anchor (receipt in the first epoch) ==");
    println!(
        "{:>8} {:>12} {:>8} {:>10} {:>16} {:>10}",
        "epochs", "proof bytes", "ots ops", "history", "all headers (v2)", "v2 ops"
    );
    let mut sizes = Vec::new();
    for n in [1u32, 100, 10_000] {
        let p = proof_over(&proof, n);
        let v = p.verify().unwrap();
        assert_eq!(v.anchored_height, n);
        let ops = p.ots_ops().unwrap();
        let bytes = p.to_bytes().len();
        // The v2 layout carried every header from the receipt's epoch to the anchored one
        // and three OpenTimestamps operations for each: the same proof with n + 1 headers of
        // the first one's encoded size and no history path.
        let header_len = p.headers[0].to_bytes().len();
        let v2_bytes = bytes - 1 - 32 * p.history_path.len() + (n as usize - 1) * header_len;
        let v2_ops = ops.len() - 3 * p.history_path.len() - 2 + 3 * (n as usize - 1) + 3;
        println!(
            "{n:>8} {bytes:>12} {:>8} {:>10} {v2_bytes:>16} {v2_ops:>10}",
            ops.len(),
            format!("{} hashes", p.history_path.len())
        );
        sizes.push(format!("{n}: {bytes} B / {} ops (v2: {v2_bytes} B / {v2_ops} ops)", ops.len()));
    }
    println!("(OpenTimestamps clients refuse more than 255 operations.)");

    println!();
    println!("summary: receipt proof size by epochs per anchor = {}", sizes.join(", "));
    println!(
        "summary: Merkle root time / raw SHA-256 time at {} leaves = {:.3}x",
        last_ratio.0, last_ratio.1
    );
    println!("summary: BIP340 verifications per second (one core) = {:.0}", 1e9 / per_op(verify_t, n));
    println!("summary: receipt proof verifications per second (one core) = {:.0}", 1e9 / per_op(ver_t, k));
}

/// A valid receipt proof for a receipt of epoch 0 whose epoch `n` is the first one anchored:
/// the receipt of `base` re-signed by a fresh coordinator, its epoch's header, the anchored
/// header at height `n` committing the history of headers 0 to `n − 1` (only the first is
/// built; the others are stand-in hashes, as the proof never shows them), the chain's first
/// anchor transaction spending the genesis output, alone in its block.
fn proof_over(base: &ReceiptProof, n: u32) -> ReceiptProof {
    use bitcoin::hashes::Hash as _;
    use cairn_spec::{AnchorBinding, AnchorPayload, SignedEpochHeader, SignedReceipt};
    let key = SigningKey::from_secret_bytes([7; 32]).unwrap();
    let mut body = base.receipt.body.clone();
    body.coordinator = key.public();
    body.epoch = 0;
    let receipt = SignedReceipt::sign(body, &key, &[0; 32]);
    let genesis_txid = sha256(b"genesis output");
    let binding = AnchorBinding::Key { key: key.public(), genesis_txid, genesis_vout: 0 };
    let mut first = base.headers[0].body.clone();
    first.coordinator = key.public();
    first.height = 0;
    first.prev = Hash32::ZERO;
    first.receipts_root = receipt.body.leaf_hash();
    first.receipt_count = 1;
    first.accepted_count = 1;
    first.beacon = cairn_spec::Beacon::None;
    first.anchor = binding;
    first.history = merkle::empty_root();
    let first = SignedEpochHeader::sign(first, &key, &[0; 32]);
    let mut leaves = vec![first.id()];
    leaves.extend((1..n).map(|i| sha256(&i.to_le_bytes())));
    let mut last = first.body.clone();
    last.height = n;
    last.prev = *leaves.last().unwrap();
    last.history = merkle::root(&leaves);
    let last = SignedEpochHeader::sign(last, &key, &[0; 32]);
    let payload = AnchorPayload { height: n, header_hash: last.id() };
    let tx = bitcoin::Transaction {
        version: bitcoin::transaction::Version(3),
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: bitcoin::OutPoint {
                txid: bitcoin::Txid::from_byte_array(genesis_txid.0),
                vout: 0,
            },
            script_sig: bitcoin::ScriptBuf::new(),
            sequence: bitcoin::Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: bitcoin::Witness::new(),
        }],
        output: vec![
            bitcoin::TxOut {
                value: bitcoin::Amount::from_sat(50_000),
                script_pubkey: cairn_spec::binding::key_script(&key.public()),
            },
            bitcoin::TxOut { value: bitcoin::Amount::ZERO, script_pubkey: payload.to_script() },
        ],
    };
    let anchor_tx = bitcoin::consensus::encode::serialize(&tx);
    let mut block_header = base.block_header.clone();
    block_header[36..68].copy_from_slice(&cairn_spec::hash::sha256d(&anchor_tx).0);
    let history_path = MerkleTree::new(leaves).proof(0).unwrap().siblings;
    let headers = vec![first, last];
    ReceiptProof {
        network: base.network,
        receipt,
        receipt_index: 0,
        receipt_path: Vec::new(),
        headers,
        history_path,
        anchor_kind: base.anchor_kind,
        anchor_tx,
        tx_index: 0,
        tx_path: Vec::new(),
        block_header,
        block_height: base.block_height,
        spend_chain: Vec::new(),
    }
}
