//! The follower's decisions on scripted data: a verified chain is kept, each kind of bad
//! epoch is refused with the failed check named and nothing written, equivocation leaves both
//! headers as evidence, and the anchor tracker follows the anchor chain on the scripted
//! Bitcoin chain (not Bitcoin Core; `tests/follower.rs` runs the real network and node).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use bitcoin::Amount;
use cairn_anchor::machine::AnchorConfig;
use cairn_anchor::scripted::ScriptedBackend;
use cairn_anchor::tx::{anchor_script, KeySigner};
use cairn_anchor::AnchorDriver;
use cairn_spec::hash::sha256;
use cairn_spec::*;

use super::anchors::AnchorTracker;
use super::*;
use crate::store::MemoryStore;

fn coord() -> SigningKey {
    SigningKey::from_secret_bytes([7; 32]).unwrap()
}

/// Epochs 0..n: epoch h holds h + 1 receipts spread over two workers, each credited.
pub(crate) fn epochs(n: u32) -> Vec<FetchedEpoch> {
    let c = coord();
    let workers: Vec<PubKey> =
        (1..=2u8).map(|i| SigningKey::from_secret_bytes([i; 32]).unwrap().public()).collect();
    let mut ledger: BTreeMap<PubKey, LedgerEntry> = BTreeMap::new();
    let mut prev = Hash32::ZERO;
    let mut history = cairn_spec::merkle::Frontier::new();
    let mut out = Vec::new();
    for height in 0..n {
        let receipts: Vec<SignedReceipt> = (0..=height)
            .map(|i| {
                let w = workers[i as usize % 2];
                let body = WorkReceipt {
                    network: Network::Regtest,
                    coordinator: c.public(),
                    epoch: height,
                    task: sha256(format!("task {height}/{i}").as_bytes()),
                    class: sha256(b"class"),
                    worker: w,
                    result_hash: sha256(b"result"),
                    verdict: Verdict::Accepted,
                    units: 1,
                    reward_sats: 100,
                    draw_epoch: 0,
                };
                ledger
                    .entry(w)
                    .or_insert(LedgerEntry { worker: w, locked: 0, claimable: 0, paid: 0 })
                    .locked += 100;
                SignedReceipt::sign(body, &c, &[0; 32])
            })
            .collect();
        let entries: Vec<LedgerEntry> = ledger.values().cloned().collect();
        let header = EpochHeader {
            network: Network::Regtest,
            coordinator: c.public(),
            height,
            prev,
            receipts_root: merkle::root(&receipts.iter().map(|r| r.id()).collect::<Vec<_>>()),
            state_root: cairn_spec::ledger::state_root(&entries).unwrap(),
            receipt_count: height + 1,
            accepted_count: height + 1,
            reward_sats: 100 * u64::from(height + 1),
            time: 1_767_225_600 + u64::from(height) * 600,
            draw_seed: cairn_spec::Hash32([height as u8; 32]),
            next_seed_hash: cairn_spec::draw::seed_hash(&cairn_spec::Hash32(
                [(height as u8).wrapping_add(1); 32],
            )),
            next_roster: cairn_spec::Roster::default().root(),
            beacon: cairn_spec::Beacon::None,
            anchor: AnchorBinding::None,
            scores_root: cairn_spec::merkle::empty_root(),
            history: history.root(),
        };
        prev = header.hash();
        history.push(prev);
        out.push(FetchedEpoch {
            header: Signed::sign(header, &c, &[0; 32]),
            receipts,
            ledger: entries,
            rounds: Vec::new(),
        });
    }
    out
}

fn follower() -> Follower {
    Follower {
        coordinator: coord().public(),
        network: Network::Regtest,
        tip: None,
        history: Default::default(),
        ledger: Vec::new(),
    }
}

/// Judges and, when accepted, writes; returns the failed check of a refusal.
fn offer(f: &mut Follower, store: &MemoryStore, e: &FetchedEpoch) -> Option<String> {
    match f.judge(e, "peer", 1) {
        Judgement::Accept(b) => {
            assert!(b.is_sync(), "an accepted epoch is a synced write");
            store.write(&b).unwrap();
            f.accepted(e.header.clone(), e.ledger.clone());
            None
        }
        Judgement::Refuse(ev) => {
            assert_eq!((ev.kind.as_str(), ev.height), ("bad_epoch", e.header.body.height));
            assert_eq!(ev.headers, vec![hex::encode(e.header.to_bytes())]);
            Some(ev.check)
        }
        Judgement::NotNext => Some("not_next".into()),
    }
}

fn resign(e: &FetchedEpoch, change: impl FnOnce(&mut EpochHeader)) -> FetchedEpoch {
    let mut h = e.header.body.clone();
    change(&mut h);
    FetchedEpoch { header: Signed::sign(h, &coord(), &[0; 32]), ..e.clone() }
}

#[test]
fn a_verified_chain_is_kept_and_each_bad_epoch_refused_with_nothing_written() {
    let chain = epochs(4);
    let store = MemoryStore::new();
    let mut f = follower();
    assert_eq!(offer(&mut f, &store, &chain[0]), None);
    assert_eq!(offer(&mut f, &store, &chain[1]), None);
    let good = &chain[2];

    let mut lies: Vec<(&str, FetchedEpoch)> = Vec::new();
    let mut e = good.clone();
    e.receipts[1].body.reward_sats += 1;
    lies.push(("receipts", e));
    let mut e = good.clone();
    e.receipts.pop();
    lies.push(("receipts", e));
    let mut e = good.clone();
    e.receipts.swap(0, 2);
    lies.push(("receipts_root", e));
    let mut e = good.clone();
    e.ledger[0].locked += 1;
    lies.push(("state_root", e));
    let mut e = good.clone();
    e.header.signature.0[9] ^= 1;
    lies.push(("header_signature", e));
    lies.push(("header_link", resign(good, |h| h.prev = sha256(b"a fork"))));
    // A history root other than the one over the accepted headers (SPEC.md §5.9).
    lies.push(("header_link", resign(good, |h| h.history = sha256(b"another history"))));
    lies.push(("totals", resign(good, |h| h.reward_sats += 5)));
    // A ledger (state root signed) that moves credit from one worker to the other: each key
    // may grow by no more than the epoch credits it.
    let mut moved = good.clone();
    moved.ledger[0].locked -= 50;
    moved.ledger[1].locked += 50;
    let root = cairn_spec::ledger::state_root(&moved.ledger).unwrap();
    lies.push((
        "ledger_growth",
        FetchedEpoch { ledger: moved.ledger.clone(), ..resign(good, |h| h.state_root = root) },
    ));
    let other = SigningKey::from_secret_bytes([9; 32]).unwrap();
    let mut h = good.header.body.clone();
    h.coordinator = other.public();
    lies.push(("coordinator", FetchedEpoch { header: Signed::sign(h, &other, &[0; 32]), ..good.clone() }));
    let mut h = good.header.body.clone();
    h.network = Network::Signet;
    lies.push(("network", FetchedEpoch { header: Signed::sign(h, &coord(), &[0; 32]), ..good.clone() }));

    let before = crate::lifecycle_store::headers(&store, 0, 100).unwrap();
    for (want, lie) in &lies {
        assert_eq!(offer(&mut f, &store, lie).as_deref(), Some(*want), "lie expected to fail {want}");
        assert_eq!(f.next_height(), 2, "a refusal moves nothing");
    }
    assert_eq!(crate::lifecycle_store::headers(&store, 0, 100).unwrap(), before);
    assert!(
        crate::lifecycle_store::epoch_receipts(&store, 2).unwrap().is_empty(),
        "no receipt row of a refused epoch"
    );
    // Out of order is not judged at all; the true epoch is kept afterwards.
    assert_eq!(offer(&mut f, &store, &chain[3]).as_deref(), Some("not_next"));
    assert_eq!(offer(&mut f, &store, good), None);
    assert_eq!(offer(&mut f, &store, &chain[3]), None);
    // What is stored is what the coordinator served: the same rows an auditor reads.
    assert_eq!(crate::lifecycle_store::check_header_chain(&store), Ok(4));
    assert_eq!(load_tip(&store).unwrap().unwrap(), chain[3].header);
    assert_eq!(crate::lifecycle_store::epoch_receipts(&store, 3).unwrap(), chain[3].receipts);
    assert_eq!(crate::lifecycle_store::ledger_snapshot(&store, 3).unwrap().unwrap(), chain[3].ledger);
    let path = crate::lifecycle_store::receipt_path(&store, 3, 2).unwrap().unwrap();
    assert_eq!(path.root_for(&chain[3].receipts[2].id()).unwrap(), chain[3].header.body.receipts_root);
    // The API's cache of closed epochs' trees answers the same, built once, then kept.
    let trees = crate::trees::EpochTrees::default();
    let first = chain[3].ledger.first().expect("a ledger entry");
    for _ in 0..2 {
        assert_eq!(trees.receipt_path(&store, 3, 2).unwrap(), Some(path.clone()));
        let (e, p) = trees.ledger(&store, 3).unwrap().unwrap().entry(&first.worker).unwrap();
        assert_eq!(&e, first);
        assert_eq!(p.root_for(&e.id()).unwrap(), chain[3].header.body.state_root);
    }
    assert_eq!(trees.receipt_path(&store, 9, 0).unwrap(), None, "no such epoch closed");
}

#[test]
fn equivocation_keeps_both_headers_and_evidence_is_kept_once_across_restarts() {
    let chain = epochs(2);
    let mut f = follower();
    f.accepted(chain[0].header.clone(), chain[0].ledger.clone());
    let twin = resign(&chain[0], |h| h.time += 1).header;
    let e = f.equivocation(&chain[0].header, &twin, "gossip", 5).unwrap();
    assert_eq!((e.kind.as_str(), e.height), ("equivocation", 0));
    assert_eq!(e.headers, vec![hex::encode(chain[0].header.to_bytes()), hex::encode(twin.to_bytes())]);
    // The same header again, a header signed by someone else, or a broken signature: none is
    // equivocation.
    assert!(f.equivocation(&chain[0].header, &chain[0].header, "gossip", 5).is_none());
    let mut forged = twin.clone();
    forged.signature.0[0] ^= 1;
    assert!(f.equivocation(&chain[0].header, &forged, "gossip", 5).is_none());

    let store = MemoryStore::new();
    let mut kept = load_evidence(&store).unwrap();
    assert!(keep_evidence(&store, &mut kept, e.clone()).unwrap());
    assert!(!keep_evidence(&store, &mut kept, Evidence { seen_at: 99, ..e.clone() }).unwrap(), "seen before");
    let reloaded = load_evidence(&store).unwrap();
    assert_eq!(reloaded, vec![e]);
}

/// The scripted chain with `epochs` anchored in order, each confirmed in its own block, and
/// the binding the anchors grow from.
fn anchored(epochs: &[(u32, Hash32)]) -> (ScriptedBackend, Vec<bitcoin::Txid>, AnchorBinding) {
    anchored_after(epochs, |_| {})
}

/// As [`anchored`]; `before` runs on the chain once funded, before the first anchor.
fn anchored_after(
    epochs: &[(u32, Hash32)],
    before: impl FnOnce(&ScriptedBackend),
) -> (ScriptedBackend, Vec<bitcoin::Txid>, AnchorBinding) {
    let key = SigningKey::from_secret_bytes([42; 32]).unwrap();
    let btc = ScriptedBackend::new();
    btc.fund(&anchor_script(&key.public()), Amount::from_sat(1_000_000));
    let mut d = AnchorDriver::open(
        btc.clone(),
        cairn_anchor::store::MemoryStore::new(),
        AnchorConfig::new(Network::Regtest),
        Box::new(KeySigner::new(key.clone())),
        cairn_anchor::Start::Height(0),
    )
    .unwrap();
    let binding = cairn_testkit::anchoring::binding(&mut d, &key.public());
    before(&btc);
    let mut txids = Vec::new();
    for (e, hash) in epochs {
        let payload = AnchorPayload { height: *e, header_hash: *hash };
        txids.push(cairn_testkit::anchoring::anchor_confirmed(&mut d, &btc, payload).0);
    }
    btc.mine(2);
    (btc, txids, binding)
}

#[test]
fn the_tracker_follows_the_anchor_chain_through_a_reorg_and_names_an_equivocating_anchor() {
    let chain = epochs(4);
    let hashes: Vec<Hash32> = chain.iter().map(|e| e.header.id()).collect();
    let (btc, txids, binding) = anchored(&[(1, hashes[1]), (3, hashes[3])]);

    // The first anchor spends the genesis output the headers name; the second spends it.
    let mut t = AnchorTracker::new(0, binding, None);
    let r = t.poll(&btc).unwrap();
    assert_eq!(r.broken, None);
    assert_eq!(t.anchors.iter().map(|a| a.txid).collect::<Vec<_>>(), txids);
    assert_eq!(t.anchors.iter().map(|a| a.payload.height).collect::<Vec<_>>(), vec![1, 3]);
    let tip = btc.height();
    assert_eq!(t.next_height, tip + 1);
    assert_eq!(cairn_anchor::settle::confirmations(t.anchors[1].height, tip), 3);
    // A poll with nothing new changes nothing.
    assert_eq!(t.poll(&btc).unwrap(), super::anchors::PollReport::default());

    // Reorg: the last three blocks (the second anchor's among them) are replaced.
    btc.disconnect(3);
    btc.mine_empty(4);
    let r = t.poll(&btc).unwrap();
    assert_eq!((r.disconnected, r.dropped.len()), (3, 1));
    assert_eq!(r.dropped[0].txid, txids[1]);
    assert_eq!(t.anchors.len(), 1);
    // The dropped anchor was returned to the mempool; mined again, it is found again.
    btc.mine(1);
    let r = t.poll(&btc).unwrap();
    assert_eq!(r.found.iter().map(|a| a.txid).collect::<Vec<_>>(), vec![txids[1]]);

    // A pinned first anchor other than the chain's: nothing is taken, and the chain is
    // reported broken at its real first anchor.
    let mut g = AnchorTracker::new(0, binding, Some(txids[1]));
    let r = g.poll(&btc).unwrap();
    assert!(g.anchors.is_empty());
    assert_eq!(r.broken, Some(txids[0]));

    // The coordinator anchors another header for epoch 3: the spend is still the chain, and
    // measured against the accepted header it is equivocation, with the txid.
    let (btc, txids, binding) = anchored(&[(1, hashes[1]), (3, sha256(b"another epoch 3"))]);
    let mut t = AnchorTracker::new(0, binding, None);
    t.poll(&btc).unwrap();
    assert_eq!(t.anchors.len(), 2);
    assert!(anchor_equivocation(&t.anchors[0], &chain[1].header, 1).is_none());
    let e = anchor_equivocation(&t.anchors[1], &chain[3].header, 1).unwrap();
    assert_eq!((e.kind.as_str(), e.height, e.check.as_str()), ("anchor_equivocation", 3, "anchor_commits"));
    assert_eq!(e.txid, Some(txids[1].to_string()));
}

/// Issue 25 item 1: header hashes are gossiped before they are anchored, so anyone can copy
/// one into their own OP_RETURN and get it mined first, or commit a huge height. Such a
/// transaction does not spend the chain output, so it is nothing to the scan: no squatted
/// root, no false equivocation, no stall.
#[test]
fn a_copied_or_huge_payload_in_someone_elses_transaction_is_ignored() {
    let chain = epochs(2);
    let hashes: Vec<Hash32> = chain.iter().map(|e| e.header.id()).collect();
    let squatter = SigningKey::from_secret_bytes([77; 32]).unwrap();
    let (btc, txids, binding) = anchored_after(&[(1, hashes[1])], |btc| {
        // The squatter's copy of the payload, a bogus one spending it, and one with the
        // highest height spending that, all mined before the real anchor.
        let spk = anchor_script(&squatter.public());
        let mut from = None;
        for payload in [
            AnchorPayload { height: 1, header_hash: hashes[1] },
            AnchorPayload { height: 1, header_hash: sha256(b"bogus") },
            AnchorPayload { height: u32::MAX, header_hash: sha256(b"stall") },
        ] {
            let chain_input = from.unwrap_or_else(|| cairn_anchor::tx::Utxo {
                outpoint: btc.fund(&spk, Amount::from_sat(100_000)),
                value: Amount::from_sat(100_000),
            });
            let plan = cairn_anchor::tx::AnchorPlan {
                chain_input,
                extra_inputs: vec![],
                payload,
                payouts: vec![],
                fee_rate: bitcoin::FeeRate::from_sat_per_vb_u32(2),
            };
            let copy =
                cairn_anchor::tx::build_anchor(&plan, &KeySigner::new(squatter.clone()), &[1; 32]).unwrap();
            let txid = copy.tx.compute_txid();
            btc.mine_with(vec![copy.tx]);
            from = Some(cairn_anchor::tx::Utxo {
                outpoint: bitcoin::OutPoint { txid, vout: 0 },
                value: copy.chain_value,
            });
        }
    });
    let mut t = AnchorTracker::new(0, binding, None);
    let r = t.poll(&btc).unwrap();
    assert_eq!(r.broken, None);
    assert_eq!(t.anchors.iter().map(|a| a.txid).collect::<Vec<_>>(), txids);
    assert!(t
        .anchors
        .iter()
        .all(|a| anchor_equivocation(a, &chain[a.payload.height as usize].header, 1).is_none()));
}
