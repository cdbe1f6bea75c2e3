//! The anchor state machine persisted in RocksDB: a scenario on the scripted chain (not
//! Bitcoin Core) where the database is closed and reopened from disk between every step,
//! as a restarted node would, ends exactly where an uninterrupted run does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use std::path::Path;
use std::sync::Arc;

use bitcoin::Amount;
use cairn_anchor::machine::{AnchorConfig, Notice};
use cairn_anchor::scripted::ScriptedBackend;
use cairn_anchor::tx::{anchor_script, KeySigner};
use cairn_anchor::{AnchorDriver, AnchorStore};
use cairn_coordinator::anchor_store::KvAnchorStore;
use cairn_coordinator::store::{MemoryStore, RocksStore};
use cairn_spec::{AnchorPayload, Network, SigningKey};

fn key() -> SigningKey {
    SigningKey::from_secret_bytes([42; 32]).unwrap()
}

fn payload(h: u32) -> AnchorPayload {
    AnchorPayload { height: h, header_hash: cairn_spec::hash::sha256(&h.to_be_bytes()) }
}

fn driver<S: AnchorStore>(chain: &ScriptedBackend, store: S) -> AnchorDriver<ScriptedBackend, S> {
    AnchorDriver::open(
        chain.clone(),
        store,
        AnchorConfig::new(Network::Regtest),
        Box::new(KeySigner::new(key())),
        cairn_anchor::Start::Height(0),
    )
    .unwrap()
}

/// Step `i` of the scenario: anchors, confirmations, a stuck anchor replaced, a reorg.
fn scenario_step<S: AnchorStore>(
    chain: &ScriptedBackend,
    d: &mut AnchorDriver<ScriptedBackend, S>,
    i: u32,
) -> Vec<Notice> {
    match i {
        0 => d.submit_epoch(payload(0)).unwrap(),
        2 | 5 | 9 => {
            chain.mine(1);
            Vec::new()
        }
        4 => d.submit_epoch(payload(1)).unwrap(),
        6 => {
            chain.mine_empty(3);
            d.submit_epoch(payload(2)).unwrap()
        }
        8 => {
            chain.disconnect(1);
            chain.mine(2);
            Vec::new()
        }
        _ => d.step(1_767_225_600, [i as u8; 32]).unwrap(),
    }
}

const STEPS: u32 = 12;

fn reopen(path: &Path) -> KvAnchorStore<RocksStore> {
    KvAnchorStore::new(Arc::new(RocksStore::open(path).unwrap()))
}

#[test]
fn reopening_the_database_between_every_step_changes_nothing() {
    // Reference run, in memory.
    let chain_a = ScriptedBackend::new();
    chain_a.fund(&anchor_script(&key().public()), Amount::from_sat(1_000_000));
    let mut a = driver(&chain_a, KvAnchorStore::new(Arc::new(MemoryStore::new())));
    for i in 0..STEPS {
        scenario_step(&chain_a, &mut a, i);
    }

    // The same run on RocksDB, closing and reopening the database around every step.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let chain_b = ScriptedBackend::new();
    chain_b.fund(&anchor_script(&key().public()), Amount::from_sat(1_000_000));
    for i in 0..STEPS {
        let mut b = driver(&chain_b, reopen(&path));
        scenario_step(&chain_b, &mut b, i);
    }
    let b = driver(&chain_b, reopen(&path));
    assert_eq!(b.machine().head(), a.machine().head());
    assert_eq!(b.machine().records(), a.machine().records());
    let chain = b.machine().confirmed_chain();
    assert_eq!(chain.last().unwrap().payload, payload(2));
    assert!(chain.iter().all(|r| chain_b.is_confirmed(&r.txid)));
}
