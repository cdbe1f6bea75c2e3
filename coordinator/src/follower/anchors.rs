//! Finding a coordinator's anchors on the follower's own Bitcoin node, trusting nothing the
//! coordinator says about them: the chain's headers name the anchor key and the genesis
//! output (SPEC.md §7.1); the first anchor is the transaction that spends that output, every
//! later one the transaction that spends the previous anchor's output 0, and each must pay
//! output 0 to the anchor key. A payload copied into someone else's transaction is nothing
//! to the scan. Reorgs are followed block by block: a block that no longer is on the best
//! chain is disconnected with its anchors.
//!
//! Owns the scan position, the recent blocks kept for reorg detection and the anchors found.
//! Must never judge an epoch (the follower does) nor write anything (the driver saves it).

use std::collections::VecDeque;

use bitcoin::{Block, BlockHash, OutPoint, Txid};
use cairn_anchor::{ChainBackend, ChainError};
use cairn_spec::{AnchorBinding, AnchorPayload};

/// Blocks remembered for reorg detection; a deeper reorg restarts the scan.
pub const KEEP_BLOCKS: usize = 288;
/// Most blocks scanned in one poll (the rest next time).
pub const BLOCKS_PER_POLL: u32 = 500;

/// An anchor transaction found on the best chain.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FoundAnchor {
    /// Txid.
    pub txid: Txid,
    /// Block holding it.
    pub block: BlockHash,
    /// That block's height.
    pub height: u32,
    /// What it commits.
    pub payload: AnchorPayload,
}

/// What one poll changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Anchors found, in chain order.
    pub found: Vec<FoundAnchor>,
    /// Anchors dropped by a reorg.
    pub dropped: Vec<FoundAnchor>,
    /// Blocks disconnected.
    pub disconnected: u32,
    /// Blocks connected.
    pub connected: u32,
    /// A transaction that spent the chain output without paying output 0 to the anchor key
    /// (or without a Cairn payload): the chain ends there.
    pub broken: Option<Txid>,
}

/// The scan over the best chain.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AnchorTracker {
    /// The anchor key and genesis output the chain's headers name.
    pub binding: AnchorBinding,
    /// A txid the operator trusts as the first anchor: a first anchor with another txid is
    /// refused.
    pub pin: Option<Txid>,
    /// Height scanned from at the start.
    pub start_height: u32,
    /// Next block height to connect.
    pub next_height: u32,
    /// The newest connected blocks (height, hash), oldest first.
    pub recent: VecDeque<(u32, BlockHash)>,
    /// The anchors found, in chain order.
    pub anchors: Vec<FoundAnchor>,
    /// The transaction that spent the chain output but is no anchor of this chain.
    #[serde(default)]
    pub broken: Option<(Txid, BlockHash, u32)>,
}

impl AnchorTracker {
    /// A tracker of the chain bound by `binding`, scanning from `start_height`.
    pub fn new(start_height: u32, binding: AnchorBinding, pin: Option<Txid>) -> Self {
        AnchorTracker {
            binding,
            pin,
            start_height,
            next_height: start_height,
            recent: VecDeque::new(),
            anchors: Vec::new(),
            broken: None,
        }
    }

    /// The outpoint the next anchor must spend.
    fn chain_outpoint(&self) -> Option<OutPoint> {
        match self.anchors.last() {
            Some(a) => Some(OutPoint { txid: a.txid, vout: 0 }),
            None => self.binding.genesis(),
        }
    }

    /// Connects `block` at `height`; returns the anchors it held.
    fn connect(&mut self, height: u32, hash: BlockHash, block: &Block) -> Vec<FoundAnchor> {
        let mut found = Vec::new();
        for tx in &block.txdata {
            let Some(chain) = self.chain_outpoint() else { break };
            if self.broken.is_some() || !tx.input.iter().any(|i| i.previous_output == chain) {
                continue;
            }
            let txid = tx.compute_txid();
            let prev = self.anchors.last().map(|a| a.txid);
            let payloads: Vec<AnchorPayload> = tx
                .output
                .iter()
                .filter_map(|o| AnchorPayload::from_script(&o.script_pubkey))
                .filter_map(Result::ok)
                .collect();
            let pinned = prev.is_some() || self.pin.is_none_or(|p| p == txid);
            match (self.binding.check_link(tx, prev), payloads.as_slice(), pinned) {
                // A spend committing another header is still the chain (and equivocation,
                // which the follower judges).
                (Ok(()), [payload], true) => {
                    let a = FoundAnchor { txid, block: hash, height, payload: *payload };
                    self.anchors.push(a.clone());
                    found.push(a);
                }
                _ => self.broken = Some((txid, hash, height)),
            }
        }
        self.recent.push_back((height, hash));
        while self.recent.len() > KEEP_BLOCKS {
            self.recent.pop_front();
        }
        self.next_height = height.saturating_add(1);
        found
    }

    /// Follows the best chain of `backend`: disconnects blocks no longer on it, then connects
    /// new ones (at most [`BLOCKS_PER_POLL`]).
    pub fn poll(&mut self, backend: &dyn ChainBackend) -> Result<PollReport, ChainError> {
        let mut report = PollReport::default();
        while let Some(&(h, hash)) = self.recent.back() {
            if backend.block_hash(h)? == Some(hash) {
                break;
            }
            self.recent.pop_back();
            let (kept, dropped): (Vec<_>, Vec<_>) = self.anchors.drain(..).partition(|a| a.height < h);
            self.anchors = kept;
            report.dropped.extend(dropped);
            if self.broken.is_some_and(|(_, _, at)| at >= h) {
                self.broken = None;
            }
            report.disconnected += 1;
            self.next_height = h;
        }
        if self.recent.is_empty() && report.disconnected > 0 && self.next_height > self.start_height {
            // Deeper than the blocks remembered: start over rather than guess.
            let dropped = std::mem::take(&mut self.anchors);
            report.dropped.extend(dropped);
            self.broken = None;
            self.next_height = self.start_height;
        }
        let best = backend.chain_info()?.tip_height;
        let mut budget = BLOCKS_PER_POLL;
        while self.next_height <= best && budget > 0 {
            let h = self.next_height;
            let Some(hash) = backend.block_hash(h)? else { break };
            // A block whose parent is not the one remembered means the chain moved under us
            // between calls: stop and let the next poll disconnect.
            let block = backend.block(&hash)?;
            if let Some(&(_, prev)) = self.recent.back() {
                if block.header.prev_blockhash != prev {
                    break;
                }
            }
            report.found.extend(self.connect(h, hash, &block));
            report.connected += 1;
            budget -= 1;
        }
        report.broken = self.broken.map(|b| b.0);
        Ok(report)
    }
}
