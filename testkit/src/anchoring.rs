//! Anchoring on the scripted chain for tests: a driver's anchor of one payload, signed,
//! mined and confirmed, and the binding a driver's chain grows from.
//!
//! Owns nothing of the anchor machine's logic: it only drives it the way the node does.
// Test support: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use bitcoin::hashes::Hash as _;
use bitcoin::Txid;
use cairn_anchor::machine::{AnchorStatus, Notice};
use cairn_anchor::scripted::ScriptedBackend;
use cairn_anchor::store::AnchorStore;
use cairn_anchor::AnchorDriver;
use cairn_spec::{AnchorBinding, AnchorPayload, Hash32, PubKey};

/// The txid of the anchor a round's notices announce, if any.
pub fn anchored(notices: &[Notice]) -> Option<Txid> {
    notices.iter().find_map(|n| match n {
        Notice::Anchored { txid, .. } => Some(*txid),
        _ => None,
    })
}

/// Submits `payload`, anchors it, mines one block and sees it confirmed: its txid, block
/// height and block hash.
pub fn anchor_confirmed<S: AnchorStore>(
    d: &mut AnchorDriver<ScriptedBackend, S>,
    chain: &ScriptedBackend,
    payload: AnchorPayload,
) -> (Txid, u32, bitcoin::BlockHash) {
    d.submit_epoch(payload).unwrap();
    let txid = anchored(&d.step(1, [0; 32]).unwrap()).expect("anchored");
    chain.mine(1);
    d.step(1, [0; 32]).unwrap();
    match d.machine().records()[&txid].status {
        AnchorStatus::Confirmed { height, block } => (txid, height, block),
        ref s => panic!("{txid} is {s:?}"),
    }
}

/// The binding of the chain `d` anchors with `key`, once it chose its genesis output (a
/// decision round runs first).
pub fn binding<S: AnchorStore>(d: &mut AnchorDriver<ScriptedBackend, S>, key: &PubKey) -> AnchorBinding {
    d.step(1, [0; 32]).unwrap();
    let g = d.machine().genesis().expect("a genesis output: fund the anchor key first");
    AnchorBinding::Key { key: *key, genesis_txid: Hash32(g.txid.to_byte_array()), genesis_vout: g.vout }
}
