//! The auditor's verifier on the scripted chain (not Bitcoin Core; see `bitcoind.rs` for the
//! real node): every failure is reported under the name of the step that failed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use cairn_testkit::side as common;

use bitcoin::{Amount, Txid};
use cairn_anchor::machine::AnchorConfig;
use cairn_anchor::scripted::ScriptedBackend;
use cairn_anchor::store::MemoryStore;
use cairn_anchor::tx::{anchor_script, KeySigner};
use cairn_anchor::{AnchorDriver, ChainBackend as _};
use cairn_audit::verify::{
    assemble_bundle, assemble_receipt_proof, find_equivocation, verify_anchor_chain, verify_bundle,
    verify_receipt, AnchorRef, Outcome, Report, BUNDLE_CHECKS,
};
use cairn_spec::{AnchorBinding, Decode, Encode, Network, ReceiptProof, Signed, SigningKey};
use common::Side;

struct World {
    chain: ScriptedBackend,
    side: Side,
    anchors: Vec<AnchorRef>,
    binding: AnchorBinding,
}

/// Five epochs; anchors committing epochs 1, 3 and 4, each confirmed, then 5 more blocks.
fn world() -> World {
    let key = SigningKey::from_secret_bytes([42; 32]).unwrap();
    let chain = ScriptedBackend::new();
    chain.fund(&anchor_script(&key.public()), Amount::from_sat(1_000_000));
    let mut d = AnchorDriver::open(
        chain.clone(),
        MemoryStore::new(),
        AnchorConfig::new(Network::Regtest),
        Box::new(KeySigner::new(key.clone())),
        cairn_anchor::Start::Height(0),
    )
    .unwrap();
    let binding = cairn_testkit::anchoring::binding(&mut d, &key.public());
    let side = Side::bound(5, 7, binding);
    let mut anchors = Vec::new();
    for e in [1, 3, 4] {
        let (txid, _, block) = cairn_testkit::anchoring::anchor_confirmed(&mut d, &chain, side.payload(e));
        anchors.push(AnchorRef { txid, block });
    }
    chain.mine(5);
    World { chain, side, anchors, binding }
}

fn proof(w: &World, epoch: u32, index: u32, anchor: usize, anchored_epoch: u32) -> ReceiptProof {
    let (r, i, path, headers, history) = w.side.parts(epoch, index, anchored_epoch);
    assemble_receipt_proof(
        Network::Regtest,
        r,
        i,
        path,
        headers,
        history,
        w.anchors[anchor].txid,
        w.anchors[anchor].block,
        &w.anchors[..anchor],
        &w.chain,
    )
    .unwrap()
}

fn failed(r: &Report) -> &'static str {
    let f = r.first_failure().expect("a failure");
    // Everything after the first failure is reported as not run.
    let pos = r.checks.iter().position(|c| c.outcome == Outcome::Fail).unwrap();
    assert!(r.checks[pos + 1..].iter().all(|c| c.outcome == Outcome::Skipped));
    f.name
}

#[test]
fn a_good_receipt_passes_every_named_check() {
    let w = world();
    // A receipt of epoch 0, anchored through the header chain by the anchor of epoch 1.
    let p = proof(&w, 0, 6, 0, 1);
    let r = verify_receipt(&p, &w.chain, Network::Regtest, 6);
    assert!(r.ok(), "{r:#?}");
    assert_eq!(r.checks.len(), cairn_audit::verify::RECEIPT_CHECKS.len());
    // Epoch 2 is covered by the anchor of epoch 3.
    assert!(verify_receipt(&proof(&w, 2, 3, 1, 3), &w.chain, Network::Regtest, 1).ok());
    // And the offline part of the proof exports to OpenTimestamps operations that reach the
    // block's Merkle root.
    let v = p.verify().unwrap();
    let ops = p.ots_ops().unwrap();
    assert_eq!(cairn_spec::proof::apply_ots(&v.receipt_leaf.0, &ops), v.block_merkle_root.0.to_vec());
}

#[test]
fn a_tampered_receipt_fails_its_signature() {
    let w = world();
    let mut p = proof(&w, 0, 1, 0, 1);
    p.receipt.body.reward_sats = 1_000_000;
    assert_eq!(failed(&verify_receipt(&p, &w.chain, Network::Regtest, 1)), "receipt_signature");
}

#[test]
fn a_wrong_sibling_fails_inclusion() {
    let w = world();
    let mut p = proof(&w, 0, 1, 0, 1);
    p.receipt_path[1].0[0] ^= 1;
    assert_eq!(failed(&verify_receipt(&p, &w.chain, Network::Regtest, 1)), "receipt_inclusion");
}

#[test]
fn a_header_not_in_the_op_return_fails_the_payload() {
    let w = world();
    // Headers only up to epoch 0, but the anchor commits epoch 1.
    let (r, i, path, headers, history) = w.side.parts(0, 1, 0);
    let p = assemble_receipt_proof(
        Network::Regtest,
        r,
        i,
        path,
        headers,
        history,
        w.anchors[0].txid,
        w.anchors[0].block,
        &[],
        &w.chain,
    )
    .unwrap();
    assert_eq!(failed(&verify_receipt(&p, &w.chain, Network::Regtest, 1)), "anchor_payload");
}

#[test]
fn an_anchor_at_the_wrong_height_is_not_on_the_best_chain() {
    let w = world();
    let mut p = proof(&w, 0, 1, 0, 1);
    p.block_height += 1;
    assert_eq!(failed(&verify_receipt(&p, &w.chain, Network::Regtest, 1)), "block_on_best_chain");
}

#[test]
fn not_deep_enough() {
    let w = world();
    let p = proof(&w, 4, 0, 2, 4);
    let r = verify_receipt(&p, &w.chain, Network::Regtest, 7);
    assert_eq!(failed(&r), "depth");
    assert!(r.first_failure().unwrap().detail.starts_with("6 confirmations"));
    assert!(verify_receipt(&p, &w.chain, Network::Regtest, 6).ok());
}

#[test]
fn wrong_network() {
    let w = world();
    let p = proof(&w, 0, 1, 0, 1);
    assert_eq!(failed(&verify_receipt(&p, &w.chain, Network::Signet, 1)), "node_network");
    let mut q = p.clone();
    q.network = Network::Signet;
    assert_eq!(failed(&verify_receipt(&q, &w.chain, Network::Signet, 1)), "network");
}

#[test]
fn a_reorged_out_anchor_fails() {
    let w = world();
    let p = proof(&w, 4, 0, 2, 4);
    w.chain.disconnect(6);
    for a in &w.anchors {
        w.chain.evict(&a.txid);
    }
    w.chain.mine_empty(8);
    assert_eq!(failed(&verify_receipt(&p, &w.chain, Network::Regtest, 1)), "block_on_best_chain");
}

#[test]
fn anchor_chain_continuity() {
    let w = world();
    let b = &w.binding;
    let (r, payloads) = verify_anchor_chain(b, Some(w.anchors[0].txid), &w.anchors, &w.chain);
    assert!(r.ok(), "{r:#?}");
    assert_eq!(payloads.iter().map(|p| p.height).collect::<Vec<_>>(), vec![1, 3, 4]);
    // Skipping an anchor breaks the chain of spends.
    let gap = [w.anchors[0], w.anchors[2]];
    let (r, _) = verify_anchor_chain(b, None, &gap, &w.chain);
    assert_eq!(failed(&r), "continuity");
    // Starting elsewhere than the pinned first anchor is refused.
    let zero = Txid::from_raw_hash(bitcoin::hashes::Hash::all_zeros());
    let (r, _) = verify_anchor_chain(b, Some(zero), &w.anchors, &w.chain);
    assert_eq!(failed(&r), "genesis");
    // Starting from another genesis output than the headers name is refused.
    let AnchorBinding::Key { key, genesis_txid, .. } = *b else { panic!() };
    let elsewhere = AnchorBinding::Key { key, genesis_txid, genesis_vout: 1 };
    let (r, _) = verify_anchor_chain(&elsewhere, None, &w.anchors, &w.chain);
    assert_eq!(failed(&r), "continuity");
    // Anchors paying output 0 to another key are not this chain's.
    let stranger = SigningKey::from_secret_bytes([43; 32]).unwrap().public();
    let other_key =
        AnchorBinding::Key { key: stranger, genesis_txid, genesis_vout: b.genesis().unwrap().vout };
    let (r, _) = verify_anchor_chain(&other_key, None, &w.anchors, &w.chain);
    assert_eq!(failed(&r), "continuity");
    // Leaving out the newest anchor: its chain output shows spent.
    let (r, _) = verify_anchor_chain(b, None, &w.anchors[..2], &w.chain);
    assert_eq!(failed(&r), "tip_unspent");
    // A chain that names no binding has nothing to walk.
    let (r, _) = verify_anchor_chain(&AnchorBinding::None, None, &w.anchors, &w.chain);
    assert_eq!(failed(&r), "binding");
}

#[test]
fn equivocation_is_found_with_both_headers() {
    let side = Side::new(3, 2);
    let honest = side.epochs[1].1.clone();
    let mut other = honest.body.clone();
    other.state_root.0[0] ^= 1;
    let forged = Signed::sign(other, &side.coord, &[0; 32]);
    let headers = vec![side.epochs[0].1.clone(), honest.clone(), forged.clone(), side.epochs[2].1.clone()];
    let (a, b) = find_equivocation(&headers).expect("equivocation");
    assert_eq!((a, b), (honest, forged));
    assert!(find_equivocation(&side.epochs.iter().map(|(_, h)| h.clone()).collect::<Vec<_>>()).is_none());
}

fn bundle_world() -> (World, cairn_spec::ProofBundle) {
    let w = world();
    let p = proof(&w, 0, 6, 0, 1);
    let b = assemble_bundle(p, &w.chain, 6).unwrap();
    (w, b)
}

#[test]
fn an_offline_bundle_passes_every_check_with_no_node() {
    let (_w, b) = bundle_world();
    // From regtest's genesis (its checkpoint, a period's first block) to 5 blocks above.
    assert_eq!((b.start_height(), b.above.len()), (0, 5));
    assert_eq!(b.before.len() as u32, b.proof.block_height);
    // Through its encoding, as an auditor receives it.
    let b = cairn_spec::ProofBundle::from_bytes(&b.to_bytes()).unwrap();
    let r = verify_bundle(&b, Network::Regtest, 6);
    assert!(r.ok(), "{r:#?}");
    assert_eq!(r.checks.iter().map(|c| c.name).collect::<Vec<_>>(), BUNDLE_CHECKS.to_vec());
    // Regtest proof-of-work proves little, and the report says so, with the work it saw.
    let detail = |name: &str| r.checks.iter().find(|c| c.name == name).unwrap().detail.clone();
    assert!(detail("difficulty").contains("consistency only"), "{r:#?}");
    assert!(detail("proof_of_work").contains("hashes"), "{r:#?}");
    assert!(detail("block_height").contains("BIP34"), "{r:#?}");
}

#[test]
fn an_offline_bundle_names_each_failure() {
    let (w, b) = bundle_world();
    let name = |b: &cairn_spec::ProofBundle, net, depth| failed(&verify_bundle(b, net, depth));
    // Not deep enough for the auditor.
    assert_eq!(name(&b, Network::Regtest, 7), "depth");
    // The auditor expects another network.
    assert_eq!(name(&b, Network::Signet, 1), "bundle_network");
    // Headers out of order do not build on each other.
    let mut swapped = b.clone();
    swapped.above.swap(1, 2);
    assert_eq!(name(&swapped, Network::Regtest, 1), "header_links");
    let mut swapped = b.clone();
    swapped.before.swap(0, 1);
    assert_eq!(name(&swapped, Network::Regtest, 1), "header_links");
    // The newest header with its nonce changed: on regtest about every other nonce still
    // meets the target, and the first that does not is caught.
    let mut forged = b.clone();
    let mut broke = None;
    for n in 0..64u8 {
        forged.above[4].0[76] = n;
        let r = verify_bundle(&forged, Network::Regtest, 1);
        if let Some(f) = r.first_failure().map(|c| c.name) {
            broke = Some(f);
            break;
        }
    }
    assert_eq!(broke, Some("proof_of_work"));
    // The newest header claiming an easier target than the network allows (an older one
    // would also break its successor's link).
    let mut easy = b.clone();
    easy.above[4].0[72..76].copy_from_slice(&0x2100_ffffu32.to_le_bytes());
    assert_eq!(name(&easy, Network::Regtest, 1), "proof_of_work");
    easy.above[0].0[72..76].copy_from_slice(&0x2100_ffffu32.to_le_bytes());
    assert_eq!(name(&easy, Network::Regtest, 1), "header_links");
    // A tampered receipt fails before any Bitcoin check.
    let mut tampered = b.clone();
    tampered.proof.receipt.body.units += 1;
    assert_eq!(name(&tampered, Network::Regtest, 1), "receipt_signature");
    // More confirmations than the chain has cannot be bundled.
    assert!(assemble_bundle(b.proof.clone(), &w.chain, 100).is_err());
}

/// Issue 25 item 3: heights are proven, not claimed. A bundle that says its block is one
/// higher (so period boundaries would fall elsewhere), a coinbase from another block or one
/// committing another height, and a run of headers cut short of the checkpoint all fail.
#[test]
fn a_bundle_cannot_lie_about_its_height_or_where_its_headers_start() {
    let (_w, b) = bundle_world();
    let name = |b: &cairn_spec::ProofBundle| failed(&verify_bundle(b, Network::Regtest, 1));
    // The claimed height: the coinbase commits the real one.
    let mut higher = b.clone();
    higher.proof.block_height += 1;
    assert_eq!(name(&higher), "block_height");
    // ... and with a header dropped from the front, so the count still adds up, the run
    // no longer starts at a period's first block or passes regtest's genesis.
    higher.before.remove(0);
    assert_eq!(name(&higher), "block_height");
    let mut short = b.clone();
    short.before.remove(0);
    assert_eq!(name(&short), "checkpoint");
    // A coinbase committing another height, even at the right place in the block.
    let mut cb: bitcoin::Transaction = bitcoin::consensus::encode::deserialize(&b.coinbase.0).unwrap();
    cb.input[0].script_sig = bitcoin::script::Builder::new().push_int(7).into_script();
    let mut other = b.clone();
    other.coinbase = cairn_spec::proof::RawTx(bitcoin::consensus::encode::serialize(&cb));
    assert_eq!(name(&other), "block_height");
    // A path for the coinbase that is not the block's.
    let mut path = b.clone();
    path.coinbase_path[0].0[0] ^= 1;
    assert_eq!(name(&path), "block_height");
    let mut shallow = b.clone();
    shallow.coinbase_path.pop();
    assert_eq!(name(&shallow), "block_height");
    // A regtest chain shown to a mainnet auditor's rules: it starts from another genesis.
    let rules = cairn_audit::headers::HeaderRules::of(Network::Mainnet);
    let r = cairn_audit::verify::verify_bundle_with(&b, Network::Regtest, &rules, 1, None);
    assert_eq!(failed(&r), "checkpoint");
    assert!(r.first_failure().unwrap().detail.contains("another chain"), "{r:#?}");
}

#[test]
fn the_ots_export_reaches_the_block_merkle_root_and_reads_back() {
    let (_w, b) = bundle_world();
    let t = cairn_spec::ots::receipt_timestamp(&b.proof).unwrap();
    let v = b.proof.verify().unwrap();
    let file = t.detached_file(&v.receipt_leaf.0);
    let (digest, back) = cairn_spec::ots::LinearTimestamp::from_detached_file(&file).unwrap();
    assert_eq!(digest, v.receipt_leaf.0);
    assert_eq!(back, t);
    assert_eq!(cairn_spec::proof::apply_ots(&digest, &back.ops), v.block_merkle_root.0.to_vec());
    assert_eq!(
        back.attestation,
        cairn_spec::ots::Attestation::BitcoinBlockHeader { height: b.proof.block_height }
    );
    // The stamped file hashes to the digest, so `ots verify` finds it next to the .ots.
    let stamped = cairn_spec::ots::stamped_receipt_file(&b.proof.receipt);
    assert_eq!(cairn_spec::hash::sha256(&stamped), v.receipt_leaf);
}

/// Issue 25 items 1 and 2, where receipts are judged: a receipt proof shows the anchor is on
/// the chain of spends from the genesis output its headers name. Leaving an earlier anchor
/// out, or anchoring the same header from another output of the key (a second wallet), fails
/// `anchor_chain` (a chain whose headers name no binding: `spec/vectors/receipt_proof.json`).
#[test]
fn a_receipt_proof_carries_the_spend_chain_from_the_genesis_output() {
    let w = world();
    // The third anchor (epoch 4) covers epoch 4's receipts; two anchors come before it.
    let p = proof(&w, 4, 0, 2, 4);
    assert_eq!(p.spend_chain.len(), 2);
    let r = verify_receipt(&p, &w.chain, Network::Regtest, 1);
    assert!(r.ok(), "{r:#?}");
    assert!(r.checks.iter().any(|c| c.name == "anchor_chain" && c.detail.contains("anchor 3")));
    let mut gap = p.clone();
    gap.spend_chain.remove(0);
    assert_eq!(failed(&verify_receipt(&gap, &w.chain, Network::Regtest, 1)), "anchor_chain");
    // Assembly needs the earlier anchors: without them it cannot build the chain.
    let (r0, i0, path0, headers0, history) = w.side.parts(4, 0, 4);
    assert!(assemble_receipt_proof(
        Network::Regtest,
        r0,
        i0,
        path0,
        headers0,
        history,
        w.anchors[2].txid,
        w.anchors[2].block,
        &w.anchors[..1],
        &w.chain,
    )
    .is_err());

    // A second wallet: the same key anchors epoch 4's header from another output; Bitcoin
    // confirms it, and the proof is refused, since it is not on the chain from the genesis
    // output.
    let key = SigningKey::from_secret_bytes([42; 32]).unwrap();
    w.chain.fund(&anchor_script(&key.public()), Amount::from_sat(9_000_000));
    let mut cfg = AnchorConfig::new(Network::Regtest);
    cfg.max_inputs = 1;
    let mut second = AnchorDriver::open(
        w.chain.clone(),
        MemoryStore::new(),
        cfg,
        Box::new(KeySigner::new(key)),
        cairn_anchor::Start::Height(0),
    )
    .unwrap();
    second.step(1, [0; 32]).unwrap();
    assert_ne!(second.machine().genesis(), w.binding.genesis());
    let (txid, _, block) =
        cairn_testkit::anchoring::anchor_confirmed(&mut second, &w.chain, w.side.payload(4));
    // (The honest proof with the rogue transaction and its block in place of the anchor's:
    // assembly itself refuses to walk a chain that does not reach the genesis output.)
    let blk = w.chain.block(&block).unwrap();
    let txids: Vec<Txid> = blk.txdata.iter().map(|t| t.compute_txid()).collect();
    let idx = txids.iter().position(|t| *t == txid).unwrap();
    let mut rogue = p.clone();
    rogue.anchor_tx =
        bitcoin::consensus::encode::serialize(&cairn_audit::verify::strip_witness(&blk.txdata[idx]));
    rogue.tx_index = idx as u32;
    rogue.tx_path = cairn_anchor::backend::bitcoin_merkle_path(&txids, idx).unwrap_or_default();
    rogue.block_header = bitcoin::consensus::encode::serialize(&blk.header);
    rogue.block_height = w.chain.block_height(&block).unwrap().unwrap();
    let report = verify_receipt(&rogue, &w.chain, Network::Regtest, 1);
    assert_eq!(failed(&report), "anchor_chain", "{report:#?}");
}
