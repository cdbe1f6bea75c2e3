//! The follower: the sidechain's full node. It replicates one coordinator's epoch chain,
//! receipts and ledger snapshots over the p2p sync protocol (SPEC.md §11.6) into its own
//! database, re-verifies every epoch exactly as an auditor does before keeping it, finds the
//! anchors on its own Bitcoin Core, and serves the same read API.
//!
//! This module owns the follower's decisions: whether a fetched epoch extends the accepted
//! chain, what evidence a refused epoch or an equivocation leaves, and the rows an accepted
//! epoch becomes. It must never fetch anything (the driver in [`run`] does the I/O) and never
//! keep an epoch that failed a check: the accepted history only grows by verified epochs.

pub mod anchors;
pub mod run;

use cairn_spec::{Encode, Hash32, LedgerEntry, PubKey, SignedEpochHeader, SignedReceipt};

use crate::lifecycle::Change;
use crate::lifecycle_store as ls;
use crate::store::{Batch, KvStore, Table};

/// Most receipts one epoch may hold for a follower to fetch it (≈ 250 MiB in memory).
pub const MAX_EPOCH_RECEIPTS: u32 = 1 << 20;
/// Most ledger entries one epoch's snapshot may hold for a follower to fetch it.
pub const MAX_EPOCH_LEDGER: u32 = 1 << 20;
/// Most evidence records kept (the oldest are dropped first).
pub const MAX_EVIDENCE: usize = 1024;

const EVIDENCE_PREFIX: &[u8] = b"follow/evidence/";
const ANCHORS_KEY: &[u8] = b"follow/anchors";

pub use cairn_spec::api::{Evidence, EvidenceKind};

/// Identifies the same evidence seen again (same kind, height and headers).
fn evidence_key(e: &Evidence) -> Hash32 {
    let mut bytes = e.kind.as_str().as_bytes().to_vec();
    bytes.extend_from_slice(&e.height.to_be_bytes());
    for h in &e.headers {
        bytes.extend_from_slice(h.as_bytes());
    }
    if let Some(t) = &e.txid {
        bytes.extend_from_slice(t.as_bytes());
    }
    cairn_spec::hash::sha256(&bytes)
}

/// A fetched epoch: its header and the parts its roots commit to.
#[derive(Clone, Debug)]
pub struct FetchedEpoch {
    /// The signed header.
    pub header: SignedEpochHeader,
    /// Its receipts in index order.
    pub receipts: Vec<SignedReceipt>,
    /// The ledger entries its state root commits to.
    pub ledger: Vec<LedgerEntry>,
    /// The scored rounds its scores root commits (SPEC.md §13.6).
    pub rounds: Vec<cairn_spec::ScoredRound>,
}

/// The follower's judgement of a fetched epoch.
#[derive(Debug)]
pub enum Judgement {
    /// It extends the accepted chain: persist this batch (synced).
    Accept(Batch),
    /// It is not the next height (already held and identical, or a gap): nothing to do.
    NotNext,
    /// It failed a check: keep this evidence and nothing else.
    Refuse(Evidence),
}

/// The follower's accepted chain: which coordinator and network it follows, and the newest
/// epoch it holds. Everything it accepts passes the auditor's epoch checks first.
#[derive(Clone, Debug)]
pub struct Follower {
    /// The coordinator followed.
    pub coordinator: PubKey,
    /// The network.
    pub network: cairn_spec::Network,
    /// The newest accepted header.
    pub tip: Option<SignedEpochHeader>,
    /// The Merkle frontier over the accepted headers' hashes: the next header must commit
    /// its root (SPEC.md §5.9).
    pub history: cairn_spec::merkle::Frontier,
    /// The ledger the newest accepted header commits (empty before the first): the next
    /// epoch's may grow, key by key, by no more than that epoch credits the key.
    pub ledger: Vec<LedgerEntry>,
}

impl Follower {
    /// Height of the next epoch to accept.
    pub fn next_height(&self) -> u32 {
        self.tip.as_ref().map_or(0, |t| t.body.height.saturating_add(1))
    }

    /// Judges an epoch fetched from `source` at time `now`.
    pub fn judge(&self, e: &FetchedEpoch, source: &str, now: u64) -> Judgement {
        let h = &e.header.body;
        if h.height != self.next_height() {
            return Judgement::NotNext;
        }
        let refuse = |check: &str, detail: String| {
            Judgement::Refuse(Evidence {
                kind: EvidenceKind::BadEpoch,
                height: h.height,
                check: check.into(),
                detail,
                headers: vec![hex::encode(e.header.to_bytes())],
                txid: None,
                source: source.into(),
                seen_at: now,
            })
        };
        if h.coordinator != self.coordinator {
            return refuse(
                "coordinator",
                format!("signed by {}, following {}", h.coordinator, self.coordinator),
            );
        }
        if h.network != self.network {
            return refuse("network", format!("epoch for {}, following {}", h.network, self.network));
        }
        let report = cairn_audit::epoch::check_epoch(
            &e.header,
            self.tip.as_ref().map(|t| &t.body),
            &self.history,
            &e.receipts,
            &e.ledger,
        );
        if let Some(f) = report.first_failure() {
            return refuse(f.name, f.detail.clone());
        }
        if let Err(why) =
            cairn_audit::scores::check_ledger_growth(&self.ledger, &e.ledger, &e.receipts, &e.rounds)
        {
            return refuse("ledger_growth", why);
        }
        // The rounds: the ones the header commits, each the consensus of its signed sheets.
        if let Err(why) =
            cairn_audit::scores::check_rounds(&e.header.body, &e.rounds, None, None, &Default::default())
        {
            return refuse("scores", why);
        }
        let mut b = Batch::new();
        for (i, r) in e.receipts.iter().enumerate() {
            if let Err(e) = ls::add(
                &mut b,
                &Change::Receipt { index: i as u32, id: r.id(), receipt: Box::new(r.clone()) },
            ) {
                return refuse("receipts", e.to_string());
            }
        }
        if let Err(e) = ls::add(
            &mut b,
            &Change::Epoch { header: Box::new(e.header.clone()), ledger: e.ledger.clone(), roster: None },
        ) {
            return refuse("epoch", e.to_string());
        }
        for r in &e.rounds {
            if let Err(why) =
                ls::add(&mut b, &Change::Round { height: e.header.body.height, round: Box::new(r.clone()) })
            {
                return refuse("scores", why.to_string());
            }
        }
        b.sync();
        Judgement::Accept(b)
    }

    /// Records that the accepted batch of `header`, with the ledger it commits, was written.
    pub fn accepted(&mut self, header: SignedEpochHeader, ledger: Vec<LedgerEntry>) {
        self.history.push(header.id());
        self.tip = Some(header);
        self.ledger = ledger;
    }

    /// A header seen for a height already accepted: equivocation when it is validly signed by
    /// the followed coordinator and differs from the accepted one.
    pub fn equivocation(
        &self,
        accepted: &SignedEpochHeader,
        seen: &SignedEpochHeader,
        source: &str,
        now: u64,
    ) -> Option<Evidence> {
        let (a, s) = (&accepted.body, &seen.body);
        (a.height == s.height
            && s.coordinator == self.coordinator
            && s.network == self.network
            && a.hash() != s.hash()
            && seen.verify())
        .then(|| Evidence {
            kind: EvidenceKind::Equivocation,
            height: s.height,
            check: "equivocation".into(),
            detail: format!(
                "two signed headers for epoch {}: {} (accepted) and {}",
                s.height,
                accepted.id(),
                seen.id()
            ),
            headers: vec![hex::encode(accepted.to_bytes()), hex::encode(seen.to_bytes())],
            txid: None,
            source: source.into(),
            seen_at: now,
        })
    }
}

/// Bitcoin commits another header than the signed one accepted at that height: evidence
/// against the coordinator, with the txid (the anchor chain moved by spending output 0, so the
/// transaction is the coordinator's).
pub fn anchor_equivocation(
    a: &anchors::FoundAnchor,
    accepted: &SignedEpochHeader,
    now: u64,
) -> Option<Evidence> {
    (accepted.body.height == a.payload.height && accepted.id() != a.payload.header_hash).then(|| Evidence {
        kind: EvidenceKind::AnchorEquivocation,
        height: a.payload.height,
        check: "anchor_commits".into(),
        detail: format!(
            "anchor {} in block {} commits header {} for epoch {}; the signed header accepted is {}",
            a.txid,
            a.height,
            a.payload.header_hash,
            a.payload.height,
            accepted.id()
        ),
        headers: vec![hex::encode(accepted.to_bytes())],
        txid: Some(a.txid.to_string()),
        source: "bitcoin".into(),
        seen_at: now,
    })
}

/// The follower's chain as stored: the newest header (the chain is checked at open).
pub fn load_tip(store: &dyn KvStore) -> Result<Option<SignedEpochHeader>, ls::LoadError> {
    let mut tip = None;
    let mut from = 0u32;
    loop {
        let page = ls::headers(store, from, 1024)?;
        let Some(last) = page.last() else { return Ok(tip) };
        from = last.body.height.saturating_add(1);
        let full = page.len() == 1024;
        tip = page.into_iter().last();
        if !full || from == 0 {
            return Ok(tip);
        }
    }
}

/// The evidence kept, oldest first.
pub fn load_evidence(store: &dyn KvStore) -> Result<Vec<Evidence>, ls::LoadError> {
    let rows = store.scan(Table::Meta, EVIDENCE_PREFIX, None, MAX_EVIDENCE)?;
    rows.iter()
        .map(|(k, v)| {
            serde_json::from_slice(v).map_err(|e| ls::LoadError::Corrupt {
                table: Table::Meta.name(),
                key: hex::encode(k),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Adds `e` to the kept evidence unless the same was kept before; returns whether it is new.
/// Keys sort by the time seen, so the oldest record goes first when the bound is reached.
pub fn keep_evidence(
    store: &dyn KvStore,
    kept: &mut Vec<Evidence>,
    e: Evidence,
) -> Result<bool, ls::LoadError> {
    let id = evidence_key(&e);
    if kept.iter().any(|k| evidence_key(k) == id) {
        return Ok(false);
    }
    let mut b = Batch::new();
    let seq = kept.len() as u64;
    let key = [EVIDENCE_PREFIX, &e.seen_at.to_be_bytes(), &seq.to_be_bytes(), &id.0[..8]].concat();
    b.put(Table::Meta, key, serde_json::to_vec(&e).unwrap_or_default());
    if kept.len() >= MAX_EVIDENCE {
        if let Some((old, _)) = store.scan(Table::Meta, EVIDENCE_PREFIX, None, 1)?.into_iter().next() {
            b.delete(Table::Meta, old);
        }
        kept.remove(0);
    }
    b.sync();
    store.write(&b)?;
    kept.push(e);
    Ok(true)
}

/// The anchor tracker's saved state (re-derivable from Bitcoin; saved so a restart does not
/// rescan from the start height).
pub fn load_tracker(store: &dyn KvStore) -> Result<Option<anchors::AnchorTracker>, ls::LoadError> {
    let Some(v) = store.get(Table::Meta, ANCHORS_KEY)? else { return Ok(None) };
    serde_json::from_slice(&v).map(Some).map_err(|e| ls::LoadError::Corrupt {
        table: Table::Meta.name(),
        key: hex::encode(ANCHORS_KEY),
        reason: e.to_string(),
    })
}

/// Saves the anchor tracker's state.
pub fn save_tracker(store: &dyn KvStore, t: &anchors::AnchorTracker) -> Result<(), ls::LoadError> {
    let mut b = Batch::new();
    b.put(Table::Meta, ANCHORS_KEY.to_vec(), serde_json::to_vec(t).unwrap_or_default());
    store.write(&b)?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
