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
        let mut cfg = RpcConfig::new(self.node.rpc_url(), RpcAuth::Cookie(self.node.cookie_path()));
        cfg.attempts = 2;
        cfg.backoff = Duration::from_millis(50);
        let rpc = BitcoinCoreRpc::new(cfg).unwrap();
        AnchorDriver::open(
            rpc,
            store.clone(),
            AnchorConfig::new(Network::Regtest),
            Box::new(KeySigner::new(key())),
            0,
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
        0,
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
    let side = common::Side::new(3, 5);
    let store = MemoryStore::new();
    let mut d = env.driver(&store);
    d.submit_epoch(side.payload(2)).unwrap();
    let a = anchored(&step(&mut d)).unwrap();
    env.mine(6);
    assert_eq!(confirmed(&step(&mut d)), vec![a]);
    let AnchorStatus::Confirmed { block, .. } = d.machine().records()[&a].status else { panic!() };
    // A receipt of epoch 0, covered through the header chain by the anchor of epoch 2.
    let (r, i, path, headers) = side.parts(0, 4, 2);
    let proof = cairn_audit::verify::assemble_receipt_proof(
        Network::Regtest,
        r,
        i,
        path,
        headers,
        a,
        block,
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
