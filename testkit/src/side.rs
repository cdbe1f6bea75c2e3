//! A small sidechain for tests of anchoring and auditing: a coordinator key, epochs of
//! signed receipts and their signed, hash-chained headers.
//!
//! Owns made-up but valid sidechain data. Must never stand in for a node's own output in a
//! test of the node.
// Test support: a failed set-up is a failed test.
#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use cairn_spec::hash::sha256;
use cairn_spec::merkle::{self, MerkleTree};
use cairn_spec::*;

pub struct Side {
    pub coord: SigningKey,
    pub epochs: Vec<(Vec<SignedReceipt>, SignedEpochHeader)>,
}

impl Side {
    pub fn new(n_epochs: u32, receipts_per_epoch: u32) -> Side {
        Side::bound(n_epochs, receipts_per_epoch, AnchorBinding::None)
    }

    /// As [`Side::new`], every header naming `anchor` as its anchor binding.
    pub fn bound(n_epochs: u32, receipts_per_epoch: u32, anchor: AnchorBinding) -> Side {
        let coord = SigningKey::from_secret_bytes([11; 32]).unwrap();
        let worker = SigningKey::from_secret_bytes([12; 32]).unwrap().public();
        let mut epochs = Vec::new();
        let mut prev = Hash32::ZERO;
        let mut history = cairn_spec::merkle::Frontier::new();
        for height in 0..n_epochs {
            // One signed batch per epoch, as a coordinator's group commit issues them.
            let bodies: Vec<WorkReceipt> = (0..receipts_per_epoch)
                .map(|i| WorkReceipt {
                    network: Network::Regtest,
                    coordinator: coord.public(),
                    epoch: height,
                    task: sha256(format!("t{height}-{i}").as_bytes()),
                    class: sha256(b"class"),
                    worker,
                    result_hash: sha256(format!("r{height}-{i}").as_bytes()),
                    verdict: Verdict::Accepted,
                    units: 1,
                    reward_sats: 10,
                    draw_epoch: 0,
                })
                .collect();
            let receipts = SignedReceipt::sign_all(bodies, |m| coord.sign(m, &[0; 32]));
            let leaves: Vec<Hash32> = receipts.iter().map(|r| r.body.leaf_hash()).collect();
            let header = EpochHeader {
                network: Network::Regtest,
                coordinator: coord.public(),
                height,
                prev,
                receipts_root: merkle::root(&leaves),
                state_root: sha256(b"state"),
                receipt_count: receipts_per_epoch,
                accepted_count: receipts_per_epoch,
                reward_sats: 10 * u64::from(receipts_per_epoch),
                time: 1_767_225_600 + u64::from(height) * 600,
                draw_seed: cairn_spec::Hash32([height as u8; 32]),
                next_seed_hash: cairn_spec::draw::seed_hash(&cairn_spec::Hash32(
                    [(height as u8).wrapping_add(1); 32],
                )),
                next_roster: cairn_spec::Roster::default().root(),
                beacon: cairn_spec::Beacon::None,
                anchor,
                scores_root: cairn_spec::merkle::empty_root(),
                history: history.root(),
            };
            prev = header.hash();
            history.push(prev);
            epochs.push((receipts, Signed::sign(header, &coord, &[0; 32])));
        }
        Side { coord, epochs }
    }

    pub fn payload(&self, epoch: u32) -> AnchorPayload {
        let h = &self.epochs[epoch as usize].1.body;
        AnchorPayload { height: h.height, header_hash: h.hash() }
    }

    /// (receipt, index, path, the headers a proof carries — its epoch's, and `anchored`'s
    /// when later — and the path of the first in the second's history).
    #[allow(clippy::type_complexity)]
    pub fn parts(
        &self,
        epoch: u32,
        index: u32,
        anchored: u32,
    ) -> (SignedReceipt, u32, Vec<Hash32>, Vec<SignedEpochHeader>, Vec<Hash32>) {
        let (receipts, _) = &self.epochs[epoch as usize];
        let tree = MerkleTree::new(receipts.iter().map(|r| r.body.leaf_hash()).collect());
        let mut headers = vec![self.epochs[epoch as usize].1.clone()];
        let mut history = Vec::new();
        if anchored > epoch {
            headers.push(self.epochs[anchored as usize].1.clone());
            let hashes = self.epochs[..anchored as usize].iter().map(|(_, h)| h.id()).collect();
            history = MerkleTree::new(hashes).proof(epoch).unwrap().siblings;
        }
        (receipts[index as usize].clone(), index, tree.proof(index).unwrap().siblings, headers, history)
    }
}
