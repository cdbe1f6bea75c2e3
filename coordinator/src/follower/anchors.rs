//! Finding a coordinator's anchors on the follower's own Bitcoin node, trusting nothing the
//! coordinator says about them: the first anchor is the first transaction whose Cairn payload
//! commits a header the follower accepted (or the configured genesis anchor); every later one
//! is the transaction that spends the previous anchor's output 0. Reorgs are followed block by
//! block: a block that no longer is on the best chain is disconnected with its anchors.
//!
//! Owns the scan position, the recent blocks kept for reorg detection and the anchors found.
//! Must never judge an epoch (the follower does) nor write anything (the driver saves it).

use std::collections::VecDeque;

use bitcoin::{Block, BlockHash, OutPoint, Txid};
use cairn_anchor::{ChainBackend, ChainError};
use cairn_spec::{AnchorPayload, Hash32};

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
    /// Set when the scan waits for the follower to accept an epoch a candidate first
    /// anchor commits (the height it waits for).
    pub waiting_for_epoch: Option<u32>,
}

/// The scan over the best chain.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AnchorTracker {
    /// A txid the operator trusts as the first anchor (else the first that commits an
    /// accepted header).
    pub genesis: Option<Txid>,
    /// Height scanned from at the start.
    pub start_height: u32,
    /// Next block height to connect.
    pub next_height: u32,
    /// The newest connected blocks (height, hash), oldest first.
    pub recent: VecDeque<(u32, BlockHash)>,
    /// The anchors found, in chain order.
    pub anchors: Vec<FoundAnchor>,
}

/// What a block told the tracker.
enum Connect {
    /// The block was taken (with the anchors it held).
    Taken(Vec<FoundAnchor>),
    /// A candidate first anchor commits an epoch not accepted yet: try this block later.
    Wait(u32),
}

impl AnchorTracker {
    /// A tracker scanning from `start_height`.
    pub fn new(start_height: u32, genesis: Option<Txid>) -> Self {
        AnchorTracker {
            genesis,
            start_height,
            next_height: start_height,
            recent: VecDeque::new(),
            anchors: Vec::new(),
        }
    }

    /// The outpoint the next anchor must spend.
    fn chain_outpoint(&self) -> Option<OutPoint> {
        self.anchors.last().map(|a| OutPoint { txid: a.txid, vout: 0 })
    }

    /// Connects `block` at `height`. `accepted(h)` is the hash of the header the follower
    /// accepted at epoch height `h`, and `tip` the newest accepted epoch height.
    fn connect(
        &mut self,
        height: u32,
        hash: BlockHash,
        block: &Block,
        accepted: &dyn Fn(u32) -> Option<Hash32>,
        tip: Option<u32>,
    ) -> Connect {
        let mut found = Vec::new();
        let mut chain = self.chain_outpoint();
        for tx in &block.txdata {
            let payloads: Vec<AnchorPayload> = tx
                .output
                .iter()
                .filter_map(|o| AnchorPayload::from_script(&o.script_pubkey))
                .filter_map(Result::ok)
                .collect();
            let txid = tx.compute_txid();
            let is_next = match chain {
                // The chain moves by spending output 0, whatever the transaction commits: a
                // spend committing another header is still the chain (and equivocation).
                Some(op) => tx.input.first().map(|i| i.previous_output) == Some(op),
                None => match (self.genesis, payloads.as_slice()) {
                    (Some(g), _) => g == txid,
                    (None, [p]) => match accepted(p.height) {
                        Some(h) => h == p.header_hash,
                        // Not judged yet: an epoch above the tip may be this coordinator's.
                        None if tip.is_none_or(|t| p.height > t) => return Connect::Wait(p.height),
                        None => false,
                    },
                    _ => false,
                },
            };
            if !is_next {
                continue;
            }
            let Some(payload) = payloads.first().copied() else { continue };
            found.push(FoundAnchor { txid, block: hash, height, payload });
            chain = Some(OutPoint { txid, vout: 0 });
        }
        self.anchors.extend(found.iter().cloned());
        self.recent.push_back((height, hash));
        while self.recent.len() > KEEP_BLOCKS {
            self.recent.pop_front();
        }
        self.next_height = height.saturating_add(1);
        Connect::Taken(found)
    }

    /// Follows the best chain of `backend`: disconnects blocks no longer on it, then connects
    /// new ones (at most [`BLOCKS_PER_POLL`]).
    pub fn poll(
        &mut self,
        backend: &dyn ChainBackend,
        accepted: &dyn Fn(u32) -> Option<Hash32>,
        tip: Option<u32>,
    ) -> Result<PollReport, ChainError> {
        let mut report = PollReport::default();
        while let Some(&(h, hash)) = self.recent.back() {
            if backend.block_hash(h)? == Some(hash) {
                break;
            }
            self.recent.pop_back();
            let (kept, dropped): (Vec<_>, Vec<_>) = self.anchors.drain(..).partition(|a| a.height < h);
            self.anchors = kept;
            report.dropped.extend(dropped);
            report.disconnected += 1;
            self.next_height = h;
        }
        if self.recent.is_empty() && report.disconnected > 0 && self.next_height > self.start_height {
            // Deeper than the blocks remembered: start over rather than guess.
            let dropped = std::mem::take(&mut self.anchors);
            report.dropped.extend(dropped);
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
            match self.connect(h, hash, &block, accepted, tip) {
                Connect::Taken(found) => {
                    report.found.extend(found);
                    report.connected += 1;
                }
                Connect::Wait(epoch) => {
                    report.waiting_for_epoch = Some(epoch);
                    break;
                }
            }
            budget -= 1;
        }
        Ok(report)
    }
}
