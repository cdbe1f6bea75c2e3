//! Ledger entries (SPEC.md §5.8): per worker, satoshis locked, claimable and paid. The
//! Merkle root of all entries, sorted by worker key, is an epoch's state root.
//!
//! Owns the entry layout and the state-root rule. Must never move money between columns:
//! that is the coordinator's ledger logic.

use crate::codec::{expect_version, Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::{Hash32, Tag};
use crate::keys::PubKey;
use crate::merkle;
use crate::signed::Object;

/// One worker's balances.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerEntry {
    /// Worker's key.
    pub worker: PubKey,
    /// Credited, not yet past the challenge window.
    pub locked: u64,
    /// Past the challenge window, not yet paid.
    pub claimable: u64,
    /// Paid out in Bitcoin transactions so far.
    pub paid: u64,
}

impl LedgerEntry {
    /// Object version.
    pub const VERSION: u8 = 1;
    /// Encoded size: version, worker key, three amounts.
    pub const ENCODED_LEN: usize = 1 + 32 + 8 + 8 + 8;
}

impl Encode for LedgerEntry {
    fn encode(&self, w: &mut Writer) {
        w.u8(Self::VERSION);
        self.worker.encode(w);
        w.u64(self.locked).u64(self.claimable).u64(self.paid);
    }
}

impl Decode for LedgerEntry {
    const NAME: &'static str = "ledger entry";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_version(r, Self::NAME, Self::VERSION)?;
        let worker = PubKey::decode(r, "worker")?;
        Ok(LedgerEntry {
            worker,
            locked: r.u64("locked")?,
            claimable: r.u64("claimable")?,
            paid: r.u64("paid")?,
        })
    }
}

impl Object for LedgerEntry {
    const TAG: Tag = Tag::LedgerEntry;
}

/// The state root: Merkle root of the entries' leaf hashes in ascending worker-key order.
/// Returns `None` when two entries name the same worker (the order would be ambiguous).
pub fn state_root(entries: &[LedgerEntry]) -> Option<Hash32> {
    let mut sorted: Vec<&LedgerEntry> = entries.iter().collect();
    sorted.sort_by_key(|e| e.worker);
    if sorted.windows(2).any(|w| matches!(w, [a, b] if a.worker == b.worker)) {
        return None;
    }
    let leaves: Vec<Hash32> = sorted.iter().map(|e| e.id()).collect();
    Some(merkle::root(&leaves))
}
