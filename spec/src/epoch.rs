//! Epoch headers (SPEC.md §5.9): the hash-chained, coordinator-signed sequence that commits
//! to each epoch's receipts root and state root.
//!
//! Owns the header layout, its hash and the link rule. Must never decide when an epoch closes.

use crate::binding::AnchorBinding;
use crate::codec::{expect_version, Decode, DecodeError, Encode, Reader, Writer};
use crate::draw::Beacon;
use crate::hash::{Hash32, Tag};
use crate::keys::PubKey;
use crate::merkle::Frontier;
use crate::network::Network;
use crate::signed::{Object, Signed, Signer};

/// An epoch header (unsigned body).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EpochHeader {
    /// Network.
    pub network: Network,
    /// The coordinator that signs the chain.
    pub coordinator: PubKey,
    /// Height: 0 for genesis, then +1.
    pub height: u32,
    /// Hash of the previous header; all zeros at genesis.
    pub prev: Hash32,
    /// Merkle root of the epoch's receipt leaf hashes, in receipt order.
    pub receipts_root: Hash32,
    /// Merkle root of the ledger after the epoch.
    pub state_root: Hash32,
    /// Number of receipts in the epoch.
    pub receipt_count: u32,
    /// How many of them were accepted.
    pub accepted_count: u32,
    /// Satoshis credited by the epoch's receipts.
    pub reward_sats: u64,
    /// Closing time, unix seconds (coordinator's clock; informational).
    pub time: u64,
    /// The seed of the slot draws made while this epoch was open (SPEC.md §12.1), revealed
    /// now; the header before committed to it in `next_seed_hash`.
    pub draw_seed: Hash32,
    /// `draw::seed_hash` of the next epoch's draw seed.
    pub next_seed_hash: Hash32,
    /// Root of the roster the next epoch's draws rank (`draw::Roster::root`).
    pub next_roster: Hash32,
    /// The Bitcoin block this epoch's draws mixed in (`None` at height 0 and without Bitcoin).
    pub beacon: Beacon,
    /// The key and genesis output the chain's anchors grow from (SPEC.md §7.1): the same in
    /// every header of a chain; `None` only for a chain not anchored to Bitcoin.
    pub anchor: AnchorBinding,
    /// Root of the scored rounds this epoch credits (`rounds::scores_root`, SPEC.md §13.6):
    /// the empty root when it credits none.
    pub scores_root: Hash32,
    /// Root of the Merkle tree (§6) over the hashes of every header before this one, heights
    /// 0 to `height − 1` in order (the empty root at height 0): a receipt proof reaches an
    /// anchored header from any earlier epoch by one inclusion path (SPEC.md §8.3 step 5).
    pub history: Hash32,
}

/// A header with the coordinator's signature.
pub type SignedEpochHeader = Signed<EpochHeader>;

impl EpochHeader {
    /// Object version.
    pub const VERSION: u8 = 6;
    /// Shortest encoding of the unsigned header (no beacon block, no anchor binding).
    pub const MIN_ENCODED_LEN: usize =
        1 + 1 + 32 + 4 + 32 + 32 + 32 + 4 + 4 + 8 + 8 + 32 + 32 + 32 + 1 + 1 + 32 + 32;
    /// Offset of `prev` in the encoding.
    pub const PREV_OFFSET: usize = 1 + 1 + 32 + 4;
    /// Offset of `receipts_root` in the encoding.
    pub const RECEIPTS_ROOT_OFFSET: usize = Self::PREV_OFFSET + 32;

    /// The header hash (its id).
    pub fn hash(&self) -> Hash32 {
        self.id()
    }

    /// True when `history` is the frontier over the hashes of the headers before this one:
    /// as many as the height, with the root this header commits.
    pub fn history_is(&self, history: &Frontier) -> bool {
        history.len() == u64::from(self.height) && history.root() == self.history
    }

    /// True when `self` directly follows `prev` (same network, coordinator and anchor
    /// binding, next height, `self.prev` is `prev`'s hash) and reveals the draw seed `prev`
    /// committed to.
    pub fn follows(&self, prev: &EpochHeader) -> bool {
        self.network == prev.network
            && self.coordinator == prev.coordinator
            && self.anchor == prev.anchor
            && Some(self.height) == prev.height.checked_add(1)
            && self.prev == prev.hash()
            && crate::draw::seed_hash(&self.draw_seed) == prev.next_seed_hash
    }
}

impl Encode for EpochHeader {
    fn encode(&self, w: &mut Writer) {
        w.u8(Self::VERSION);
        self.network.encode(w);
        self.coordinator.encode(w);
        w.u32(self.height)
            .raw(&self.prev.0)
            .raw(&self.receipts_root.0)
            .raw(&self.state_root.0)
            .u32(self.receipt_count)
            .u32(self.accepted_count)
            .u64(self.reward_sats)
            .u64(self.time)
            .raw(&self.draw_seed.0)
            .raw(&self.next_seed_hash.0)
            .raw(&self.next_roster.0);
        self.beacon.encode(w);
        self.anchor.encode(w);
        w.raw(&self.scores_root.0).raw(&self.history.0);
    }
}

impl Decode for EpochHeader {
    const NAME: &'static str = "epoch header";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_version(r, Self::NAME, Self::VERSION)?;
        let network = Network::decode(r)?;
        let coordinator = PubKey::decode(r, "coordinator")?;
        let height = r.u32("height")?;
        let prev = Hash32(r.array("prev")?);
        if (height == 0) != (prev == Hash32::ZERO) {
            return Err(DecodeError::InvalidValue {
                field: "prev",
                reason: "must be all zeros exactly at height 0",
            });
        }
        let receipts_root = Hash32(r.array("receipts_root")?);
        let state_root = Hash32(r.array("state_root")?);
        let receipt_count = r.u32("receipt_count")?;
        let accepted_count = r.u32("accepted_count")?;
        if accepted_count > receipt_count {
            return Err(DecodeError::InvalidValue {
                field: "accepted_count",
                reason: "exceeds receipt_count",
            });
        }
        let reward_sats = r.u64("reward_sats")?;
        let time = r.u64("time")?;
        let draw_seed = Hash32(r.array("draw_seed")?);
        let next_seed_hash = Hash32(r.array("next_seed_hash")?);
        let next_roster = Hash32(r.array("next_roster")?);
        let beacon = Beacon::decode(r)?;
        if height == 0 && beacon != Beacon::None {
            return Err(DecodeError::InvalidValue {
                field: "beacon",
                reason: "epoch 0's draws have no beacon",
            });
        }
        let anchor = AnchorBinding::decode(r)?;
        let scores_root = Hash32(r.array("scores_root")?);
        // A round scores the epoch two before the header that credits it.
        if height < 2 && scores_root != crate::merkle::empty_root() {
            return Err(DecodeError::InvalidValue {
                field: "scores_root",
                reason: "must be the empty tree's root below height 2",
            });
        }
        let history = Hash32(r.array("history")?);
        if height == 0 && history != crate::merkle::empty_root() {
            return Err(DecodeError::InvalidValue {
                field: "history",
                reason: "must be the empty tree's root at height 0",
            });
        }
        Ok(EpochHeader {
            network,
            coordinator,
            height,
            prev,
            receipts_root,
            state_root,
            receipt_count,
            accepted_count,
            reward_sats,
            time,
            draw_seed,
            next_seed_hash,
            next_roster,
            beacon,
            anchor,
            scores_root,
            history,
        })
    }
}

impl Object for EpochHeader {
    const TAG: Tag = Tag::EpochHeader;
}

impl Signer for EpochHeader {
    fn signer(&self) -> &PubKey {
        &self.coordinator
    }
}
