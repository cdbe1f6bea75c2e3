//! Real Bitcoin Core tests: each starts its own regtest `bitcoind` (found via `BITCOIND_EXE`,
//! then `PATH`, then the cache `scripts/bitcoin-core.sh` builds) in a temp dir on free loopback
//! ports and stops it at the end. Without a `bitcoind` each test fails under `CI=true` and
//! otherwise skips visibly (`cairn_testkit::skip`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr,
    missing_docs
)]

use cairn_testkit::side as common;

use std::time::Duration;

use bitcoin::{OutPoint, Txid};
use cairn_anchor::machine::{AnchorConfig, AnchorStatus, EpochAnchorStatus, Notice};
use cairn_anchor::regtest::RegtestNode;
use cairn_anchor::store::MemoryStore;
use cairn_anchor::tx::{self, anchor_address, AnchorPlan, KeySigner};
use cairn_anchor::{
    AnchorDriver, BitcoinCoreRpc, BroadcastError, ChainBackend, DriverError, RpcAuth, RpcConfig,
};
use cairn_spec::{AnchorPayload, Network, SigningKey};
use serde_json::{json, Value};

// Fields drop in order: the node stops before its temp dir (and cookie) is removed.
struct Env {
    node: RegtestNode,
    rpc: BitcoinCoreRpc,
    miner: String,
    _dir: tempfile::TempDir,
}

fn start() -> Option<Env> {
    let exe = cairn_testkit::bitcoind()?;
    let dir = tempfile::tempdir().unwrap();
    let node = RegtestNode::start(&exe, &dir.path().join("bitcoind")).unwrap();
    let rpc = node.rpc().unwrap();
    let miner = anchor_address(&SigningKey::from_secret_bytes([99; 32]).unwrap().public(), Network::Regtest)
        .to_string();
    Some(Env { node, rpc, miner, _dir: dir })
}

fn key() -> SigningKey {
    SigningKey::from_secret_bytes([42; 32]).unwrap()
}

fn payload(h: u32) -> AnchorPayload {
    AnchorPayload { height: h, header_hash: cairn_spec::hash::sha256(&h.to_be_bytes()) }
}

impl Env {
    fn call(&self, m: &str, p: Value) -> Value {
        self.rpc.raw_call(m, p).unwrap()
    }

    fn mine(&self, n: u32) {
        self.call("generatetoaddress", json!([n, self.miner]));
    }

    /// Mines `n` blocks that include nothing from the mempool.
    fn mine_empty(&self, n: u32) {
        for _ in 0..n {
            self.call("generateblock", json!([self.miner, []]));
        }
    }

    fn fund_anchor(&self) {
        let addr = anchor_address(&key().public(), Network::Regtest).to_string();
        self.call("generatetoaddress", json!([1, addr]));
        self.mine(100); // coinbase maturity
    }

    fn mempool(&self) -> Vec<String> {
        self.call("getrawmempool", json!([]))
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    fn driver(&self, store: &MemoryStore) -> AnchorDriver<BitcoinCoreRpc, MemoryStore> {
        self.driver_with(store, AnchorConfig::new(Network::Regtest))
    }

    fn driver_with(
        &self,
        store: &MemoryStore,
        anchor: AnchorConfig,
    ) -> AnchorDriver<BitcoinCoreRpc, MemoryStore> {
        let mut cfg = RpcConfig::new(self.node.rpc_url(), RpcAuth::Cookie(self.node.cookie_path()));
        cfg.attempts = 2;
        cfg.backoff = Duration::from_millis(50);
        let rpc = BitcoinCoreRpc::new(cfg).unwrap();
        AnchorDriver::open(
            rpc,
            store.clone(),
            anchor,
            Box::new(KeySigner::new(key())),
            cairn_anchor::Start::Height(0),
        )
        .unwrap()
    }
}

fn step(d: &mut AnchorDriver<BitcoinCoreRpc, MemoryStore>) -> Vec<Notice> {
    d.step(1_767_225_600, [3; 32]).unwrap()
}

fn anchored(n: &[Notice]) -> Option<Txid> {
    n.iter().find_map(|x| match x {
        Notice::Anchored { txid, .. } => Some(*txid),
        _ => None,
    })
}

fn confirmed(n: &[Notice]) -> Vec<Txid> {
    n.iter()
        .filter_map(|x| match x {
            Notice::Confirmed { txid, .. } => Some(*txid),
            _ => None,
        })
        .collect()
}

#[test]
fn fund_anchor_confirm_and_chain_three_anchors() {
    let Some(env) = start() else { return };
    let version = env.rpc.version().unwrap();
    eprintln!("Bitcoin Core version {version}");
    env.fund_anchor();
    let store = MemoryStore::new();
    let mut d = env.driver(&store);
    let mut chain = Vec::new();
    for epoch in 0..3 {
        d.submit_epoch(payload(epoch)).unwrap();
        let txid = anchored(&step(&mut d)).expect("anchored");
        assert!(env.mempool().contains(&txid.to_string()), "Core accepted the anchor");
        env.mine(1);
        assert_eq!(confirmed(&step(&mut d)), vec![txid]);
        chain.push(txid);
    }
    // Read the anchors back from Core and check the chain of spends and the payloads.
    for (i, txid) in chain.iter().enumerate() {
        let rec = &d.machine().records()[txid];
        let AnchorStatus::Confirmed { block, .. } = rec.status else { panic!() };
        let tx = env.rpc.transaction(txid, Some(&block)).unwrap().unwrap();
        assert_eq!(AnchorPayload::from_script(&tx.output[1].script_pubkey), Some(Ok(payload(i as u32))));
        if i > 0 {
            assert_eq!(tx.input[0].previous_output, OutPoint { txid: chain[i - 1], vout: 0 });
        }
    }
    let tip = env.rpc.chain_info().unwrap().tip_height;
    assert!(matches!(d.machine().epoch_status(0, tip), EpochAnchorStatus::Confirmed { depth: 3, .. }));

    // Bitcoin itself refuses a second anchor for a parent already spent.
    let first = &d.machine().records()[&chain[0]];
    let plan = AnchorPlan {
        chain_input: first.inputs[0],
        extra_inputs: vec![],
        payload: payload(9),
        payouts: vec![],
        fee_rate: bitcoin::FeeRate::from_sat_per_vb_u32(50),
    };
    let double = tx::build_anchor(&plan, &KeySigner::new(key()), &[1; 32]).unwrap();
    let err = env.rpc.broadcast(&double.tx).unwrap_err();
    assert!(matches!(err, BroadcastError::InputsMissing(_)), "{err}");
    // A second anchor spending the *current* chain output while one is in the mempool
    // without paying more is refused too (only a proper RBF replacement can take its place).
    d.submit_epoch(payload(3)).unwrap();
    let pending = anchored(&step(&mut d)).unwrap();
    let rec = &d.machine().records()[&pending];
    let twin = AnchorPlan {
        chain_input: rec.inputs[0],
        extra_inputs: vec![],
        payload: payload(4),
        payouts: vec![],
        fee_rate: rec.fee_rate(),
    };
    let twin = tx::build_anchor(&twin, &KeySigner::new(key()), &[2; 32]).unwrap();
    assert!(matches!(env.rpc.broadcast(&twin.tx), Err(BroadcastError::FeeTooLow(_))));
}

#[test]
fn stuck_anchor_is_replaced_by_fee() {
    let Some(env) = start() else { return };
    env.fund_anchor();
    let store = MemoryStore::new();
    let mut d = env.driver(&store);
    d.submit_epoch(payload(0)).unwrap();
    let first = anchored(&step(&mut d)).unwrap();
    env.mine_empty(3);
    d.submit_epoch(payload(1)).unwrap();
    let n = step(&mut d);
    let new = n
        .iter()
        .find_map(|x| match x {
            Notice::Replaced { old, new, payload: p, .. } if *old == first && *p == payload(1) => Some(*new),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no replacement: {n:?}"));
    let pool = env.mempool();
    assert!(pool.contains(&new.to_string()) && !pool.contains(&first.to_string()), "{pool:?}");
    env.mine(1);
    assert_eq!(confirmed(&step(&mut d)), vec![new]);
    assert_eq!(d.machine().records()[&first].status, AnchorStatus::Conflicted);
}

#[test]
fn reorg_with_invalidateblock_is_detected_and_recovered() {
    let Some(env) = start() else { return };
    env.fund_anchor();
    let store = MemoryStore::new();
    let mut d = env.driver(&store);
    d.submit_epoch(payload(0)).unwrap();
    let a = anchored(&step(&mut d)).unwrap();
    env.mine(1);
    env.mine_empty(2);
    assert_eq!(confirmed(&step(&mut d)), vec![a]);
    let AnchorStatus::Confirmed { block, height } = d.machine().records()[&a].status.clone() else {
        panic!()
    };
    // Invalidate the anchor's block (3 deep) and build a longer branch without it.
    env.call("invalidateblock", json!([block.to_string()]));
    env.mine_empty(4);
    let n = step(&mut d);
    assert!(n.iter().any(|x| matches!(x, Notice::Unconfirmed { txid } if *txid == a)), "{n:?}");
    assert_eq!(d.machine().records()[&a].status, AnchorStatus::Pending);
    assert!(env.mempool().contains(&a.to_string()), "back in the mempool");
    env.mine(1);
    assert_eq!(confirmed(&step(&mut d)), vec![a]);
    let AnchorStatus::Confirmed { height: h2, .. } = d.machine().records()[&a].status else { panic!() };
    assert!(h2 > height);
}

#[test]
fn wrong_network_is_refused() {
    let Some(env) = start() else { return };
    let rpc = env.node.rpc().unwrap();
    let err = rpc.check_network(Network::Signet).unwrap_err();
    assert!(err.to_string().contains("regtest"), "{err}");
    let err = AnchorDriver::open(
        env.node.rpc().unwrap(),
        MemoryStore::new(),
        AnchorConfig::new(Network::Testnet4),
        Box::new(KeySigner::new(key())),
        cairn_anchor::Start::Height(0),
    )
    .err()
    .unwrap();
    assert!(matches!(err, DriverError::WrongNetwork { .. }), "{err}");
}

#[test]
fn node_down_and_back() {
    let Some(mut env) = start() else { return };
    env.fund_anchor();
    let store = MemoryStore::new();
    let mut d = env.driver(&store);
    d.submit_epoch(payload(0)).unwrap();
    let a = anchored(&step(&mut d)).unwrap();
    env.node.stop();
    let err = d.step(1_767_225_600, [0; 32]).unwrap_err();
    assert!(err.is_transient(), "{err}");
    env.node.restart().unwrap();
    env.rpc = env.node.rpc().unwrap();
    // The node kept its mempool across the restart (mempool.dat) or forgot it; either way
    // the pending anchor is re-broadcast at the next round and confirms.
    step(&mut d);
    env.mine(1);
    let n = step(&mut d);
    assert_eq!(confirmed(&n), vec![a], "{n:?}");
}

#[test]
fn audit_a_receipt_against_bitcoin_core() {
    let Some(env) = start() else { return };
    env.fund_anchor();
    let store = MemoryStore::new();
    let mut d = env.driver(&store);
    step(&mut d);
    let g = d.machine().genesis().expect("the genesis output is chosen once funds are confirmed");
    let binding = cairn_spec::AnchorBinding::Key {
        key: key().public(),
        genesis_txid: cairn_spec::Hash32(bitcoin::hashes::Hash::to_byte_array(g.txid)),
        genesis_vout: g.vout,
    };
    let side = common::Side::bound(3, 5, binding);
    d.submit_epoch(side.payload(2)).unwrap();
    let a = anchored(&step(&mut d)).unwrap();
    env.mine(6);
    assert_eq!(confirmed(&step(&mut d)), vec![a]);
    let AnchorStatus::Confirmed { block, .. } = d.machine().records()[&a].status else { panic!() };
    // A receipt of epoch 0, covered through the header chain by the anchor of epoch 2.
    let (r, i, path, headers, history) = side.parts(0, 4, 2);
    let proof = cairn_audit::verify::assemble_receipt_proof(
        Network::Regtest,
        r,
        i,
        path,
        headers,
        history,
        a,
        block,
        &[],
        &env.rpc,
    )
    .unwrap();
    let report = cairn_audit::verify::verify_receipt(&proof, &env.rpc, Network::Regtest, 6);
    assert!(report.ok(), "{report:#?}");
    let report = cairn_audit::verify::verify_receipt(&proof, &env.rpc, Network::Regtest, 7);
    assert_eq!(report.first_failure().unwrap().name, "depth");
    // The block header in the proof is the one Core has, and the OTS path reaches its root.
    let v = proof.verify().unwrap();
    let header: Value = env.call("getblockheader", json!([block.to_string()]));
    let root_display = header["merkleroot"].as_str().unwrap();
    let mut root = v.block_merkle_root.0;
    root.reverse();
    assert_eq!(hex::encode(root), root_display);
    let ops = proof.ots_ops().unwrap();
    assert_eq!(cairn_spec::proof::apply_ots(&v.receipt_leaf.0, &ops), v.block_merkle_root.0.to_vec());
}

fn payee() -> SigningKey {
    SigningKey::from_secret_bytes([7; 32]).unwrap()
}

fn payouts(ids: &[u64]) -> Vec<tx::Payout> {
    ids.iter()
        .map(|id| tx::Payout {
            id: *id,
            script_pubkey: tx::anchor_script(&payee().public()),
            amount: bitcoin::Amount::from_sat(10_000 * id),
        })
        .collect()
}

fn replaced(n: &[Notice]) -> Vec<(Txid, Txid)> {
    n.iter()
        .filter_map(|x| match x {
            Notice::Replaced { old, new, .. } => Some((*old, *new)),
            _ => None,
        })
        .collect()
}

fn block_of(d: &AnchorDriver<BitcoinCoreRpc, MemoryStore>, txid: &Txid) -> bitcoin::BlockHash {
    match d.machine().records()[txid].status {
        AnchorStatus::Confirmed { block, .. } => block,
        ref s => panic!("{txid} is {s:?}"),
    }
}

/// Issue 25 item 4: a reorg mines an older (RBF) version of anchor A on the winning branch.
/// A's child B, with payouts, can then never confirm: it must not stay pending (bumped
/// against the daily cap for ever), and its payouts go out again, once, from the version
/// that won.
#[test]
fn a_reorg_that_mines_an_older_version_of_an_anchor_requeues_its_childs_payouts_once() {
    let Some(env) = start() else { return };
    env.fund_anchor();
    let store = MemoryStore::new();
    let mut d = env.driver(&store);
    d.submit_epoch(payload(0)).unwrap();
    let a0 = anchored(&step(&mut d)).unwrap();
    let a0_raw = d.machine().records()[&a0].raw.clone();
    env.mine_empty(3);
    d.submit_epoch(payload(1)).unwrap();
    let a1 = replaced(&step(&mut d)).first().map(|r| r.1).expect("a stuck anchor is replaced");
    env.mine(1);
    assert_eq!(confirmed(&step(&mut d)), vec![a1]);
    d.queue_payouts(payouts(&[1, 2])).unwrap();
    d.submit_epoch(payload(2)).unwrap();
    let b = anchored(&step(&mut d)).unwrap();
    assert_eq!(d.machine().records()[&b].payouts.len(), 2);
    env.mine(1);
    assert_eq!(confirmed(&step(&mut d)), vec![b]);

    // The branch that wins holds a0 where a1 was.
    env.call("invalidateblock", json!([block_of(&d, &a1).to_string()]));
    env.call("generateblock", json!([env.miner, [hex::encode(&a0_raw)]]));
    env.mine_empty(2);
    let n = step(&mut d);
    let recs = d.machine().records();
    assert!(matches!(recs[&a0].status, AnchorStatus::Confirmed { .. }), "{n:?}");
    assert_eq!(recs[&a1].status, AnchorStatus::Conflicted);
    assert_eq!(recs[&b].status, AnchorStatus::Conflicted, "the child of a lost version is dead too");
    // Anchoring goes on from a0, and the next anchor carries b's payouts.
    let c = anchored(&n).expect("a new anchor on top of a0");
    assert_eq!(recs[&c].chain_input(), Some(OutPoint { txid: a0, vout: 0 }));
    assert_eq!(recs[&c].payouts.iter().map(|p| p.id).collect::<Vec<_>>(), vec![1, 2]);
    assert!(d.machine().head().payout_queue.is_empty());
    env.mine(1);
    assert_eq!(confirmed(&step(&mut d)), vec![c]);
    for _ in 0..4 {
        env.mine_empty(1);
        let n = step(&mut d);
        assert!(replaced(&n).is_empty() && anchored(&n).is_none(), "{n:?}");
    }
    assert!(d.machine().pending().is_empty());
    // Each payout sits in exactly one confirmed anchor, and on chain in exactly one output.
    for p in payouts(&[1, 2]) {
        let carriers: Vec<&Txid> = d
            .machine()
            .records()
            .values()
            .filter(|r| matches!(r.status, AnchorStatus::Confirmed { .. }))
            .filter(|r| r.payouts.iter().any(|q| q.id == p.id))
            .map(|r| &r.txid)
            .collect();
        assert_eq!(carriers, vec![&c], "payout {}", p.id);
    }
    let tx = env.rpc.transaction(&c, Some(&block_of(&d, &c))).unwrap().unwrap();
    let paid: u64 = tx.output.iter().skip(2).map(|o| o.value.to_sat()).sum();
    assert_eq!(paid, 30_000);
}

/// Issue 25 item 7: a reorg returns two chained anchors to the mempool; when they are stuck
/// the root is replaced (committing the newest epoch), and the child it evicts dies with it.
#[test]
fn two_anchors_pending_after_a_reorg_are_bumped() {
    let Some(env) = start() else { return };
    env.fund_anchor();
    let store = MemoryStore::new();
    let mut d = env.driver(&store);
    let mut chain = Vec::new();
    for epoch in 0..3 {
        d.submit_epoch(payload(epoch)).unwrap();
        chain.push(anchored(&step(&mut d)).unwrap());
        env.mine(1);
        step(&mut d);
    }
    let (a, b) = (chain[1], chain[2]);
    env.call("invalidateblock", json!([block_of(&d, &a).to_string()]));
    env.mine_empty(3);
    step(&mut d);
    assert_eq!(d.machine().pending().len(), 2, "both back in the mempool");
    env.mine_empty(3);
    d.submit_epoch(payload(3)).unwrap();
    let n = step(&mut d);
    let bumped = replaced(&n);
    assert_eq!(bumped.len(), 1, "{n:?}");
    assert_eq!(bumped[0].0, a, "the root is bumped");
    let new = bumped[0].1;
    assert_eq!(d.machine().records()[&new].payload, payload(3));
    assert!(env.mempool().contains(&new.to_string()), "Core took the replacement: {n:?}");
    env.mine(1);
    assert_eq!(confirmed(&step(&mut d)), vec![new]);
    assert_eq!(d.machine().records()[&a].status, AnchorStatus::Conflicted);
    assert_eq!(d.machine().records()[&b].status, AnchorStatus::Conflicted);
    assert!(d.machine().pending().is_empty());
}

/// Issue 25 item 5: a payee spends its unconfirmed payout with a large low-fee child to pin
/// the anchor (BIP125 rule 3 would make the replacement pay for the child). Anchors are
/// TRUC (version 3): Core refuses the large child, and the anchor is still bumped.
#[test]
fn a_payee_cannot_pin_an_anchor() {
    let Some(env) = start() else { return };
    env.fund_anchor();
    let store = MemoryStore::new();
    let mut d = env.driver(&store);
    d.submit_epoch(payload(0)).unwrap();
    anchored(&step(&mut d)).unwrap();
    env.mine(1);
    step(&mut d);
    d.queue_payouts(vec![tx::Payout {
        id: 1,
        script_pubkey: tx::anchor_script(&payee().public()),
        amount: bitcoin::Amount::from_sat(200_000),
    }])
    .unwrap();
    d.submit_epoch(payload(1)).unwrap();
    let b = anchored(&step(&mut d)).unwrap();
    let raw: bitcoin::Transaction = d.machine().records()[&b].tx().unwrap();
    assert_eq!(raw.version, bitcoin::transaction::Version(3));
    // The payee's spend of its payout: `outputs` outputs, `fee` sats of fee.
    let spend = |version: i32, outputs: usize, fee: u64| {
        let value = bitcoin::Amount::from_sat(1_000);
        let rest = bitcoin::Amount::from_sat(200_000 - fee - 1_000 * (outputs as u64 - 1));
        let mut child = bitcoin::Transaction {
            version: bitcoin::transaction::Version(version),
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![bitcoin::TxIn {
                previous_output: OutPoint { txid: b, vout: 2 },
                sequence: bitcoin::Sequence::ENABLE_RBF_NO_LOCKTIME,
                ..Default::default()
            }],
            output: (0..outputs)
                .map(|i| bitcoin::TxOut {
                    value: if i == 0 { rest } else { value },
                    script_pubkey: tx::anchor_script(&payee().public()),
                })
                .collect(),
        };
        let prev = [raw.output[2].clone()];
        let w = tx::AnchorSigner::sign(&KeySigner::new(payee()), &child, &prev, &[5; 32]).unwrap();
        child.input[0].witness = w[0].clone();
        child
    };
    // 150 outputs: about 6,500 vB at about 1 sat/vB. Refused, whatever its version.
    for version in [2, 3] {
        let err = env.rpc.broadcast(&spend(version, 150, 7_000)).unwrap_err();
        assert!(err.to_string().contains("TRUC"), "version {version}: {err}");
    }
    assert_eq!(env.mempool(), vec![b.to_string()]);
    // The most TRUC allows: one child of under 1,000 vB at about 1 sat/vB. It is taken, and
    // it costs a replacement at most a few rounds of bidding: the anchor is still bumped.
    let child = spend(3, 20, 1_000);
    assert!(child.vsize() <= 1_000, "{} vB", child.vsize());
    env.rpc.broadcast(&child).unwrap();
    env.mine_empty(3);
    d.submit_epoch(payload(2)).unwrap();
    let mut rounds = 0;
    let newest = loop {
        rounds += 1;
        let n = step(&mut d);
        let pool = env.mempool();
        if !pool.contains(&b.to_string()) {
            let live = d.machine().pending().into_iter().find(|r| pool.contains(&r.txid.to_string()));
            break live.map(|r| r.txid).unwrap_or_else(|| panic!("{pool:?} {n:?}"));
        }
        assert!(rounds < 12, "still pinned after {rounds} rounds: {n:?}");
    };
    assert!(!env.mempool().contains(&child.compute_txid().to_string()), "the child went with its parent");
    env.mine(1);
    assert_eq!(confirmed(&step(&mut d)), vec![newest]);
    eprintln!("a payee's 1,000 vB child cost {rounds} round(s) of bidding");
}

/// Issue 25 item 5: payouts never stop timestamping. Payouts the funds cannot cover, or too
/// many for the fee cap or the TRUC size limit, wait; the anchor goes out without them (or
/// with as many as fit), and Core takes it.
#[test]
fn payouts_that_do_not_fit_never_hold_up_an_anchor() {
    let Some(env) = start() else { return };
    env.fund_anchor();
    let store = MemoryStore::new();
    let mut cfg = AnchorConfig::new(Network::Regtest);
    cfg.max_fee_per_anchor = bitcoin::Amount::from_sat(2_000);
    cfg.max_payouts = 400;
    let mut d = env.driver_with(&store, cfg);
    let deferred = |n: &[Notice]| {
        n.iter().find_map(|x| match x {
            Notice::PayoutsDeferred { carried, waiting, .. } => Some((*carried, *waiting)),
            _ => None,
        })
    };
    // More than the anchor address holds.
    let big = tx::Payout {
        id: 1,
        script_pubkey: tx::anchor_script(&payee().public()),
        amount: bitcoin::Amount::from_sat(60 * 100_000_000),
    };
    d.queue_payouts(vec![big]).unwrap();
    d.submit_epoch(payload(0)).unwrap();
    let n = step(&mut d);
    let a = anchored(&n).expect("the anchor goes out without the payout");
    assert_eq!(deferred(&n), Some((0, 1)), "{n:?}");
    assert!(d.machine().records()[&a].payouts.is_empty());
    assert!(env.mempool().contains(&a.to_string()));
    env.mine(1);
    step(&mut d);
    // 300 small payouts: neither the 2,000-sat cap nor 10,000 vB allow them all.
    let many: Vec<tx::Payout> = (2..302)
        .map(|id| tx::Payout {
            id,
            script_pubkey: tx::anchor_script(&payee().public()),
            amount: bitcoin::Amount::from_sat(1_000),
        })
        .collect();
    d.queue_payouts(many).unwrap();
    d.submit_epoch(payload(1)).unwrap();
    let n = step(&mut d);
    let b = anchored(&n).expect("anchored");
    let (carried, waiting) = deferred(&n).expect("some payouts wait");
    let rec = &d.machine().records()[&b];
    assert!(carried > 0 && carried < 300 && rec.payouts.len() == carried, "{n:?}");
    assert_eq!(waiting, 301 - carried);
    assert!(rec.fee <= bitcoin::Amount::from_sat(2_000) && rec.vsize <= tx::MAX_ANCHOR_VSIZE);
    assert!(env.mempool().contains(&b.to_string()), "Core took it");
    env.mine(1);
    assert_eq!(confirmed(&step(&mut d)), vec![b]);
}

/// Issue 25 item 7: anyone can send dust to the public anchor address. It is neither
/// tracked nor swept into anchors (each input would raise the anchor's fee against the
/// caps), while a real top-up still is.
#[test]
fn dust_sent_to_the_anchor_address_is_not_swept() {
    let Some(env) = start() else { return };
    let payee_addr = anchor_address(&payee().public(), Network::Regtest).to_string();
    let hash = env.call("generatetoaddress", json!([1, payee_addr]))[0].as_str().unwrap().parse().unwrap();
    let coinbase = env.rpc.block(&hash).unwrap().txdata[0].clone();
    env.fund_anchor();
    let anchor_spk = tx::anchor_script(&key().public());
    let mut output: Vec<bitcoin::TxOut> = (0..300)
        .map(|_| bitcoin::TxOut { value: bitcoin::Amount::from_sat(600), script_pubkey: anchor_spk.clone() })
        .collect();
    output.push(bitcoin::TxOut {
        value: bitcoin::Amount::from_sat(100_000),
        script_pubkey: anchor_spk.clone(),
    });
    let fee = bitcoin::Amount::from_sat(100_000);
    let change = coinbase.output[0].value - bitcoin::Amount::from_sat(300 * 600 + 100_000) - fee;
    output.push(bitcoin::TxOut { value: change, script_pubkey: tx::anchor_script(&payee().public()) });
    let mut spam = bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: OutPoint { txid: coinbase.compute_txid(), vout: 0 },
            ..Default::default()
        }],
        output,
    };
    let w = tx::AnchorSigner::sign(&KeySigner::new(payee()), &spam, &[coinbase.output[0].clone()], &[6; 32])
        .unwrap();
    spam.input[0].witness = w[0].clone();
    env.rpc.broadcast(&spam).unwrap();
    env.mine(1);
    let store = MemoryStore::new();
    let mut d = env.driver(&store);
    d.submit_epoch(payload(0)).unwrap();
    let a = anchored(&step(&mut d)).unwrap();
    let rec = &d.machine().records()[&a];
    assert_eq!(rec.inputs.len(), 2, "the funding output and the 100,000-sat top-up only: {:?}", rec.inputs);
    assert!(rec.inputs.iter().all(|u| u.value.to_sat() >= 100_000));
    assert!(d.machine().head().utxos.len() <= 2, "dust is not tracked");
    assert!(env.mempool().contains(&a.to_string()));
}

/// A backend that counts the blocks it serves: a fresh node on a long chain must not read
/// the chain's history.
struct Counting {
    inner: BitcoinCoreRpc,
    blocks: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl ChainBackend for Counting {
    fn chain_info(&self) -> Result<cairn_anchor::ChainInfo, cairn_anchor::ChainError> {
        self.inner.chain_info()
    }
    fn block_hash(&self, height: u32) -> Result<Option<bitcoin::BlockHash>, cairn_anchor::ChainError> {
        self.inner.block_hash(height)
    }
    fn block(&self, hash: &bitcoin::BlockHash) -> Result<bitcoin::Block, cairn_anchor::ChainError> {
        self.blocks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.block(hash)
    }
    fn block_height(&self, hash: &bitcoin::BlockHash) -> Result<Option<u32>, cairn_anchor::ChainError> {
        self.inner.block_height(hash)
    }
    fn transaction(
        &self,
        txid: &Txid,
        block: Option<&bitcoin::BlockHash>,
    ) -> Result<Option<bitcoin::Transaction>, cairn_anchor::ChainError> {
        self.inner.transaction(txid, block)
    }
    fn scan_outputs(
        &self,
        script: &bitcoin::ScriptBuf,
    ) -> Result<cairn_anchor::OutputScan, cairn_anchor::ChainError> {
        self.inner.scan_outputs(script)
    }
    fn utxo(
        &self,
        o: &OutPoint,
        m: bool,
    ) -> Result<Option<cairn_anchor::UtxoInfo>, cairn_anchor::ChainError> {
        self.inner.utxo(o, m)
    }
    fn estimate_fee(&self, t: u16) -> Result<Option<bitcoin::FeeRate>, cairn_anchor::ChainError> {
        self.inner.estimate_fee(t)
    }
    fn relay_fee(&self) -> Result<bitcoin::FeeRate, cairn_anchor::ChainError> {
        self.inner.relay_fee()
    }
    fn in_mempool(&self, txid: &Txid) -> Result<bool, cairn_anchor::ChainError> {
        self.inner.in_mempool(txid)
    }
    fn test_accept(&self, tx: &bitcoin::Transaction) -> Result<(), BroadcastError> {
        self.inner.test_accept(tx)
    }
    fn broadcast(&self, tx: &bitcoin::Transaction) -> Result<Txid, BroadcastError> {
        self.inner.broadcast(tx)
    }
}

#[test]
fn a_fresh_node_on_a_long_chain_anchors_from_the_utxo_set_without_reading_history() {
    let Some(env) = start() else { return };
    // Funds paid to the anchor key long ago (a coinbase at height 1, and another deep in the
    // chain), then 2,000 and more blocks on top.
    let addr = anchor_address(&key().public(), Network::Regtest).to_string();
    env.call("generatetoaddress", json!([1, addr]));
    env.mine(1_000);
    env.call("generatetoaddress", json!([1, addr]));
    env.mine(1_100);
    let tip = env.rpc.chain_info().unwrap().tip_height;
    assert!(tip >= 2_100, "{tip}");
    let blocks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let backend = Counting { inner: env.node.rpc().unwrap(), blocks: blocks.clone() };
    let mut cfg = AnchorConfig::new(Network::Regtest);
    cfg.genesis_depth = 6;
    let store = MemoryStore::new();
    let mut d = AnchorDriver::open(
        backend,
        store.clone(),
        cfg.clone(),
        Box::new(KeySigner::new(key())),
        cairn_anchor::Start::Tip,
    )
    .unwrap();
    assert_eq!(d.machine().next_height(), tip + 1 - 6);
    assert_eq!(d.machine().head().utxos.len(), 2, "both coinbases, read from Core's UTXO set");
    // Regtest halves its subsidy every 150 blocks: 50 BTC at height 1, 50 / 2^6 at 1,002.
    assert_eq!(d.machine().spendable(tip), bitcoin::Amount::from_sat(5_000_000_000 + (5_000_000_000 >> 6)));
    d.submit_epoch(payload(0)).unwrap();
    let txid = anchored(&d.step(1_767_225_600, [3; 32]).unwrap())
        .expect("the first anchor, with no history scanned");
    env.mine(1);
    assert!(confirmed(&d.step(1_767_225_600, [3; 32]).unwrap()).contains(&txid));
    let fetched = blocks.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("blocks fetched to reach the first anchor on a chain of {tip}: {fetched}");
    assert!(fetched <= 6 + 1, "a fresh node fetched {fetched} blocks");
}
