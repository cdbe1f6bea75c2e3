//! The auditor's chain procedure on a scripted sidechain and the scripted Bitcoin chain (not
//! Bitcoin Core; `cli/tests/audit_bitcoind.rs` runs the real node): a good chain
//! verifies; each kind of lie is found and named; equivocation comes with its evidence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use std::collections::BTreeMap;

use bitcoin::hashes::Hash as _;
use bitcoin::Amount;
use cairn_anchor::machine::AnchorConfig;
use cairn_anchor::scripted::ScriptedBackend;
use cairn_anchor::store::MemoryStore;
use cairn_anchor::tx::{anchor_script, KeySigner};
use cairn_anchor::AnchorDriver;
use cairn_anchor::ChainBackend as _;
use cairn_audit::chain::{audit_chain, ChainAudit, Scope};
use cairn_audit::source::{AnchorClaim, LocatedReceipt, Source, SourceError};
use cairn_spec::hash::sha256;
use cairn_spec::*;

#[derive(Clone)]
struct Mem {
    headers: BTreeMap<u32, SignedEpochHeader>,
    receipts: BTreeMap<u32, Vec<SignedReceipt>>,
    ledgers: BTreeMap<u32, Vec<LedgerEntry>>,
    anchors: Vec<AnchorClaim>,
}

impl Source for Mem {
    fn describe(&self) -> String {
        "memory".into()
    }
    fn headers(&self, from: u32, count: u32) -> Result<Vec<SignedEpochHeader>, SourceError> {
        Ok(self.headers.range(from..).take(count as usize).map(|(_, h)| h.clone()).collect())
    }
    fn epoch_receipts(&self, h: u32) -> Result<Vec<SignedReceipt>, SourceError> {
        self.receipts.get(&h).cloned().ok_or_else(|| SourceError::NotFound(h.to_string()))
    }
    fn ledger(&self, h: u32) -> Result<Vec<LedgerEntry>, SourceError> {
        self.ledgers.get(&h).cloned().ok_or_else(|| SourceError::NotFound(h.to_string()))
    }
    fn receipt(&self, _: &Hash32) -> Result<LocatedReceipt, SourceError> {
        Err(SourceError::NotFound("unused".into()))
    }
    fn anchors(&self) -> Result<Vec<AnchorClaim>, SourceError> {
        Ok(self.anchors.clone())
    }
}

fn coord() -> SigningKey {
    SigningKey::from_secret_bytes([11; 32]).unwrap()
}

/// Four epochs of three receipts; each worker's ledger grows by its rewards.
fn chain() -> Mem {
    chain_with(4, AnchorBinding::None, |_| Beacon::None)
}

/// `n` epochs of three receipts; each worker's ledger grows by its rewards; `beacon(prev)`
/// names each later header's beacon, given the header before.
fn chain_with(n: u32, anchor: AnchorBinding, mut beacon: impl FnMut(&SignedEpochHeader) -> Beacon) -> Mem {
    let c = coord();
    let workers: Vec<PubKey> =
        (1..=3u8).map(|i| SigningKey::from_secret_bytes([i; 32]).unwrap().public()).collect();
    let mut m = Mem {
        headers: BTreeMap::new(),
        receipts: BTreeMap::new(),
        ledgers: BTreeMap::new(),
        anchors: vec![],
    };
    let mut ledger: BTreeMap<PubKey, LedgerEntry> = BTreeMap::new();
    let mut prev = Hash32::ZERO;
    let mut history = cairn_spec::merkle::Frontier::new();
    for height in 0..n {
        // Signed as one batch per epoch, as the coordinator's group commits do (SPEC.md §5.7).
        let bodies: Vec<WorkReceipt> = workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let body = WorkReceipt {
                    network: Network::Regtest,
                    coordinator: c.public(),
                    epoch: height,
                    task: sha256(format!("t{height}-{i}").as_bytes()),
                    class: sha256(b"class"),
                    worker: *w,
                    result_hash: sha256(b"r"),
                    verdict: Verdict::Accepted,
                    units: 1,
                    reward_sats: 10 + i as u64,
                    draw_epoch: 0,
                };
                let e =
                    ledger.entry(*w).or_insert(LedgerEntry { worker: *w, locked: 0, claimable: 0, paid: 0 });
                e.locked += body.reward_sats;
                body
            })
            .collect();
        let receipts = SignedReceipt::sign_all(bodies, |m| c.sign(m, &[0; 32]));
        let entries: Vec<LedgerEntry> = ledger.values().cloned().collect();
        let header = EpochHeader {
            network: Network::Regtest,
            coordinator: c.public(),
            height,
            prev,
            receipts_root: merkle::root(&receipts.iter().map(|r| r.id()).collect::<Vec<_>>()),
            state_root: cairn_spec::ledger::state_root(&entries).unwrap(),
            receipt_count: 3,
            accepted_count: 3,
            reward_sats: 33,
            time: 1_767_225_600 + u64::from(height) * 600,
            draw_seed: cairn_spec::Hash32([height as u8; 32]),
            next_seed_hash: cairn_spec::draw::seed_hash(&cairn_spec::Hash32(
                [(height as u8).wrapping_add(1); 32],
            )),
            next_roster: cairn_spec::Roster::default().root(),
            beacon: match height.checked_sub(1).and_then(|p| m.headers.get(&p)) {
                Some(prev) => beacon(prev),
                None => Beacon::None,
            },
            anchor,
            scores_root: cairn_spec::merkle::empty_root(),
            history: history.root(),
        };
        prev = header.hash();
        history.push(prev);
        m.headers.insert(height, Signed::sign(header, &c, &[0; 32]));
        m.receipts.insert(height, receipts);
        m.ledgers.insert(height, entries);
    }
    m
}

fn audit(m: &Mem) -> ChainAudit {
    audit_chain(m, &[], None, &Scope::default(), &mut |_, _| {}).unwrap()
}

fn failing(a: &ChainAudit) -> Vec<(u32, &'static str)> {
    a.epochs.iter().filter_map(|e| e.report.first_failure().map(|c| (e.height, c.name))).collect()
}

#[test]
fn a_good_chain_verifies_and_reports_progress() {
    let m = chain();
    let mut seen = Vec::new();
    let a = audit_chain(&m, &[], None, &Scope::default(), &mut |d, t| seen.push((d, t))).unwrap();
    assert!(a.ok(), "{a:#?}");
    assert_eq!((a.epochs.len(), a.receipts()), (4, 12));
    assert_eq!(seen, vec![(1, 4), (2, 4), (3, 4), (4, 4)]);
    assert!(a.ledger.ok(), "{:?}", a.ledger);
    // A range links to the epoch before it.
    let part =
        audit_chain(&m, &[], None, &Scope { from: 2, to: Some(3), genesis: None }, &mut |_, _| {}).unwrap();
    assert!(part.ok() && part.epochs.len() == 2);
}

#[test]
fn each_lie_is_found_and_named() {
    // A receipt changed after signing.
    let mut m = chain();
    m.receipts.get_mut(&1).unwrap()[2].body.reward_sats = 1_000;
    assert_eq!(failing(&audit(&m)), vec![(1, "receipts")]);
    // A receipt dropped: the count and root no longer match.
    let mut m = chain();
    m.receipts.get_mut(&2).unwrap().pop();
    assert_eq!(failing(&audit(&m)), vec![(2, "receipts")]);
    // Receipts swapped: each is fine, but the root is another.
    let mut m = chain();
    m.receipts.get_mut(&2).unwrap().swap(0, 1);
    assert_eq!(failing(&audit(&m)), vec![(2, "receipts_root")]);
    // A ledger that does not hash to the state root.
    let mut m = chain();
    m.ledgers.get_mut(&3).unwrap()[0].paid += 1;
    assert_eq!(failing(&audit(&m)), vec![(3, "state_root")]);
    // A header with a bad signature.
    let mut m = chain();
    m.headers.get_mut(&0).unwrap().signature.0[5] ^= 1;
    assert_eq!(failing(&audit(&m)), vec![(0, "header_signature")]);
    // A re-signed header that no longer links: it and its successor fail the link.
    let mut m = chain();
    let mut h = m.headers[&2].body.clone();
    h.prev = sha256(b"fork");
    m.headers.insert(2, Signed::sign(h, &coord(), &[0; 32]));
    assert_eq!(failing(&audit(&m)), vec![(2, "header_link"), (3, "header_link")]);
    // A receipt served in two epochs.
    let mut m = chain();
    let dup = m.receipts[&0][0].clone();
    m.receipts.get_mut(&1).unwrap()[0] = dup.clone();
    let a = audit(&m);
    assert_eq!(a.duplicate_receipts, vec![dup.id()]);
    assert_eq!(failing(&a), vec![(1, "receipts")]);
}

/// Issue 25 item 6: a receipt proof reaches the anchored header through its history, so a
/// coordinator that signs a header whose history holds another header for an earlier epoch
/// (say, one committing receipts the chain never served) makes proofs for that header that
/// verify on their own. The chain audit recomputes every history and names the header, over
/// the whole chain and over a range.
#[test]
fn a_history_that_holds_another_header_is_named_by_the_chain_audit() {
    let mut m = chain();
    let mut fake = m.headers[&1].body.clone();
    fake.receipts_root = sha256(b"receipts the chain never served");
    let fake = Signed::sign(fake, &coord(), &[0; 32]);
    let leaves = vec![m.headers[&0].id(), fake.id(), m.headers[&2].id()];
    let mut h = m.headers[&3].body.clone();
    h.history = merkle::root(&leaves);
    m.headers.insert(3, Signed::sign(h, &coord(), &[0; 32]));
    // The path from the other header reaches the signed history root...
    let path = merkle::MerkleTree::new(leaves).proof(1).unwrap();
    assert_eq!(path.root_for(&fake.id()).unwrap(), m.headers[&3].body.history);
    // ...and the audit names the header that commits it, and only that one.
    assert_eq!(failing(&audit(&m)), vec![(3, "header_link")]);
    let part =
        audit_chain(&m, &[], None, &Scope { from: 2, to: None, genesis: None }, &mut |_, _| {}).unwrap();
    assert_eq!(failing(&part), vec![(3, "header_link")]);
    let detail = &part.epochs[1].report.first_failure().unwrap().detail;
    assert!(detail.contains("history"), "{detail}");
    // A range audit checks the headers before the range as a chain: a source serving
    // another header 0 (to feed the range another history) is refused.
    let mut m = chain();
    let mut h0 = m.headers[&0].body.clone();
    h0.time += 1;
    m.headers.insert(0, Signed::sign(h0, &coord(), &[0; 32]));
    let range = Scope { from: 2, to: None, genesis: None };
    let refused = audit_chain(&m, &[], None, &range, &mut |_, _| {});
    assert!(matches!(refused, Err(cairn_audit::SourceError::BadAnswer(_))), "{refused:?}");
}

#[test]
fn equivocation_between_sources_is_reported_with_both_headers() {
    let m = chain();
    let mut other = m.clone();
    let mut h = m.headers[&2].body.clone();
    h.state_root = sha256(b"another ledger");
    let forged = Signed::sign(h, &coord(), &[0; 32]);
    other.headers.insert(2, forged.clone());
    let a = audit_chain(&m, &[&other], None, &Scope::default(), &mut |_, _| {}).unwrap();
    assert!(!a.ok());
    assert_eq!(a.equivocations.len(), 1);
    let q = &a.equivocations[0];
    assert_eq!(q.height, 2);
    let pair = [q.first.clone(), q.second.clone().unwrap()];
    assert!(pair.contains(&m.headers[&2]) && pair.contains(&forged));
    let text = cairn_audit::render::chain(&a);
    assert!(text.contains("EQUIVOCATION at epoch 2") && text.contains("header B:"), "{text}");
}

/// Five epochs as a coordinator with Bitcoin makes them (SPEC.md §12.1): each header but
/// the newest anchored on the scripted Bitcoin chain, and each later header's beacon the
/// block right after the anchor of the one before.
fn anchored() -> (Mem, ScriptedBackend) {
    let key = SigningKey::from_secret_bytes([42; 32]).unwrap();
    let btc = ScriptedBackend::new();
    btc.fund(&anchor_script(&key.public()), Amount::from_sat(1_000_000));
    let mut d = AnchorDriver::open(
        btc.clone(),
        MemoryStore::new(),
        AnchorConfig::new(Network::Regtest),
        Box::new(KeySigner::new(key.clone())),
        cairn_anchor::Start::Height(0),
    )
    .unwrap();
    let binding = cairn_testkit::anchoring::binding(&mut d, &key.public());
    let mut claims = Vec::new();
    let mut m = chain_with(5, binding, |prev| {
        let e = prev.body.height;
        let payload = AnchorPayload { height: e, header_hash: prev.id() };
        let (txid, height, _) = cairn_testkit::anchoring::anchor_confirmed(&mut d, &btc, payload);
        claims.push(AnchorClaim { txid, epoch: e, height });
        btc.mine(2);
        let block = btc.block_hash(height + 1).unwrap().unwrap();
        Beacon::Block { height: height + 1, hash: Hash32(block.to_byte_array()) }
    });
    m.anchors = claims;
    (m, btc)
}

#[test]
fn anchors_are_walked_and_a_header_bitcoin_does_not_commit_is_equivocation() {
    let (m, btc) = anchored();
    let genesis = m.anchors[0].txid;
    let scope = Scope { genesis: Some(genesis), ..Scope::default() };
    let a = audit_chain(&m, &[], Some(&btc), &scope, &mut |_, _| {}).unwrap();
    assert!(a.ok(), "{:#?}", a.anchors);
    assert_eq!((a.anchor_count, a.anchored_through), (4, Some(3)));
    // Without a pinned first anchor, the genesis output the headers name is the root.
    let a = audit_chain(&m, &[], Some(&btc), &Scope::default(), &mut |_, _| {}).unwrap();
    assert!(a.ok(), "{:#?}", a.anchors);
    assert!(a.anchors.unwrap().checks.iter().any(|c| c.name == "binding"));
    // The source serves another (validly signed, linked) history from epoch 3 on: Bitcoin
    // commits the original header, so the audit reports equivocation with the txid.
    let mut lie = m.clone();
    let mut h = m.headers[&3].body.clone();
    h.time += 1;
    lie.headers.insert(3, Signed::sign(h, &coord(), &[0; 32]));
    let a = audit_chain(&lie, &[], Some(&btc), &scope, &mut |_, _| {}).unwrap();
    assert!(!a.ok());
    assert_eq!(a.equivocations.len(), 1);
    assert_eq!(a.equivocations[0].committed.unwrap(), (m.anchors[3].txid, m.headers[&3].id()));
    assert_eq!(a.anchors.as_ref().unwrap().first_failure().unwrap().name, "anchor_commits");
    // A genesis anchor other than the one the auditor trusts breaks the walk.
    let wrong = Scope { genesis: Some(m.anchors[1].txid), ..Scope::default() };
    let a = audit_chain(&m, &[], Some(&btc), &wrong, &mut |_, _| {}).unwrap();
    assert_eq!(a.anchors.unwrap().first_failure().unwrap().name, "genesis");
    // An anchor claimed at a height Bitcoin does not have.
    let mut far = m.clone();
    far.anchors[1].height = 10_000;
    let a = audit_chain(&far, &[], Some(&btc), &scope, &mut |_, _| {}).unwrap();
    assert_eq!(a.anchors.unwrap().first_failure().unwrap().name, "anchor_block");
}

/// Each header's beacon must be the block right after the anchor of the header before, as
/// the auditor's own node has it: a coordinator that names another block (one that ranks its
/// own keys first), a made-up hash, or no beacon at all once it anchors, is caught.
#[test]
fn a_beacon_other_than_the_block_after_the_anchor_before_is_caught() {
    let (m, btc) = anchored();
    let scope = Scope { genesis: Some(m.anchors[0].txid), ..Scope::default() };
    let Beacon::Block { height, .. } = m.headers[&4].body.beacon else { panic!("header 4 has a beacon") };
    assert_eq!(height, m.anchors[3].height + 1);
    let later = Hash32(btc.block_hash(height + 1).unwrap().unwrap().to_byte_array());
    for (lie, what) in [
        (Beacon::Block { height: height + 1, hash: later }, "a later block"),
        (Beacon::Block { height, hash: Hash32([7; 32]) }, "another hash"),
        (Beacon::None, "none"),
    ] {
        let mut m = m.clone();
        let mut h = m.headers[&4].body.clone();
        assert_ne!(h.beacon, lie);
        h.beacon = lie;
        m.headers.insert(4, Signed::sign(h, &coord(), &[0; 32]));
        let a = audit_chain(&m, &[], Some(&btc), &scope, &mut |_, _| {}).unwrap();
        assert!(!a.ok(), "{what}");
        let failed = a.anchors.as_ref().unwrap().first_failure().unwrap();
        assert_eq!(failed.name, "beacons", "{what}: {:#?}", a.anchors);
    }
    // A source that leaves out the newest anchor (so header 4's beacon has no anchor before
    // it), or every anchor, cannot pass a beacon off either; and Bitcoin shows the chain
    // output it names as its tip was spent.
    for keep in [3, 0] {
        let mut cut = m.clone();
        cut.anchors.truncate(keep);
        let a = audit_chain(&cut, &[], Some(&btc), &Scope::default(), &mut |_, _| {}).unwrap();
        assert!(!a.ok(), "{keep} anchors kept");
        let r = a.anchors.as_ref().unwrap();
        assert_eq!(r.first_failure().unwrap().name, "tip_unspent", "{keep} anchors kept: {r:#?}");
        let beacons = r.checks.iter().find(|c| c.name == "beacons").unwrap();
        assert!(beacons.detail.contains("no anchor"), "{keep} anchors kept: {r:#?}");
    }
}

/// Issue 25 items 1 and 2: the coordinator anchors the same headers a second time from
/// another output of its key (a second "wallet"), and serves those anchors. The headers bind
/// the chain to the genesis output the first chain spends, so the walk refuses the second
/// chain at its first anchor; and a source naming only the first anchors of the true chain
/// is caught by the spent tip.
#[test]
fn anchors_grown_from_another_output_of_the_key_are_refused() {
    let (m, btc) = anchored();
    let key = SigningKey::from_secret_bytes([42; 32]).unwrap();
    btc.fund(&anchor_script(&key.public()), Amount::from_sat(5_000_000));
    // (Its anchors take no top-ups: they would spend the true chain's output.)
    let mut cfg = AnchorConfig::new(Network::Regtest);
    cfg.max_inputs = 1;
    let mut second = AnchorDriver::open(
        btc.clone(),
        MemoryStore::new(),
        cfg,
        Box::new(KeySigner::new(key)),
        cairn_anchor::Start::Height(0),
    )
    .unwrap();
    second.step(1, [0; 32]).unwrap();
    let mut claims = Vec::new();
    for c in &m.anchors {
        let payload = AnchorPayload { height: c.epoch, header_hash: m.headers[&c.epoch].id() };
        let (txid, height, _) = cairn_testkit::anchoring::anchor_confirmed(&mut second, &btc, payload);
        claims.push(AnchorClaim { txid, epoch: c.epoch, height });
    }
    assert_ne!(second.machine().genesis(), m.headers[&0].body.anchor.genesis());
    let mut lie = m.clone();
    lie.anchors = claims;
    let a = audit_chain(&lie, &[], Some(&btc), &Scope::default(), &mut |_, _| {}).unwrap();
    assert!(!a.ok());
    let failed = a.anchors.as_ref().unwrap().first_failure().unwrap();
    assert_eq!(failed.name, "continuity", "{:#?}", a.anchors);
    assert!(failed.detail.contains("not the chain output"), "{}", failed.detail);
    // The true chain still audits.
    assert!(audit_chain(&m, &[], Some(&btc), &Scope::default(), &mut |_, _| {}).unwrap().ok());
}

/// A source one anchor behind Bitcoin (its list was read just before an anchor confirmed):
/// the spent tip is asked about again on a fresh list before it counts, so an honest chain
/// that is still growing audits ✓.
struct Behind {
    inner: Mem,
    calls: std::cell::Cell<u32>,
}

impl Source for Behind {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn headers(&self, from: u32, count: u32) -> Result<Vec<SignedEpochHeader>, SourceError> {
        self.inner.headers(from, count)
    }
    fn epoch_receipts(&self, h: u32) -> Result<Vec<SignedReceipt>, SourceError> {
        self.inner.epoch_receipts(h)
    }
    fn ledger(&self, h: u32) -> Result<Vec<LedgerEntry>, SourceError> {
        self.inner.ledger(h)
    }
    fn receipt(&self, id: &Hash32) -> Result<LocatedReceipt, SourceError> {
        self.inner.receipt(id)
    }
    fn anchors(&self) -> Result<Vec<AnchorClaim>, SourceError> {
        self.calls.set(self.calls.get() + 1);
        let mut all = self.inner.anchors()?;
        if self.calls.get() == 1 {
            all.pop();
        }
        Ok(all)
    }
}

#[test]
fn a_source_one_anchor_behind_is_asked_again_before_the_tip_counts_as_spent() {
    let (m, btc) = anchored();
    let behind = Behind { inner: m, calls: std::cell::Cell::new(0) };
    let a = audit_chain(&behind, &[], Some(&btc), &Scope::default(), &mut |_, _| {}).unwrap();
    assert!(a.ok(), "{:#?}", a.anchors);
    assert_eq!(behind.calls.get(), 2);
}
