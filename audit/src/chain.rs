//! Auditing a run of epochs, or the whole chain: each epoch re-verified from its parts, no
//! receipt in two places, the ledger never holding more than the receipts paid, the anchor
//! transactions walked from the genesis anchor through Bitcoin (each spending its
//! predecessor's chain output and committing a header of this chain), and equivocation —
//! two signed headers for one height, from any of the sources, or a header Bitcoin commits
//! that differs from the one served — reported with both as evidence.
//!
//! Owns the procedure and its summary. Must never stop at the first bad epoch: an auditor
//! wants every finding.

use std::collections::{BTreeMap, HashMap};

use crate::verify::{find_equivocation, verify_anchor_chain, AnchorRef, Report};
use bitcoin::hashes::Hash as _;
use bitcoin::Txid;
use cairn_anchor::ChainBackend;
use cairn_spec::{Beacon, EpochHeader, Hash32, Network, SignedEpochHeader};
use serde::Serialize;

use crate::epoch::{check_epoch, ledger_total};

/// How often a spent chain tip is asked about, on a fresh list of anchors, before it counts.
const TIP_ATTEMPTS: u32 = 4;
use crate::source::{Source, SourceError};

/// One epoch's findings.
#[derive(Clone, Debug, Serialize)]
pub struct EpochResult {
    /// Height.
    pub height: u32,
    /// Header hash.
    pub hash: Hash32,
    /// Receipts checked.
    pub receipts: u32,
    /// Sats in them.
    pub reward_sats: u64,
    /// The checks.
    pub report: Report,
}

/// Two conflicting commitments for one height.
#[derive(Clone, Debug, Serialize)]
pub struct Equivocation {
    /// Height.
    pub height: u32,
    /// A signed header (hex encoding and fields).
    pub first: SignedEpochHeader,
    /// Another signed header for the same height, when one was found.
    pub second: Option<SignedEpochHeader>,
    /// Or the header hash an anchor transaction commits for that height.
    pub committed: Option<(Txid, Hash32)>,
    /// Where each came from.
    pub detail: String,
}

/// What an audit found.
#[derive(Clone, Debug, Serialize)]
pub struct ChainAudit {
    /// The source audited.
    pub source: String,
    /// Per epoch.
    pub epochs: Vec<EpochResult>,
    /// Receipt ids found in more than one place.
    pub duplicate_receipts: Vec<Hash32>,
    /// Ledger versus receipts (whole-chain audits only).
    pub ledger: Report,
    /// The anchor chain, when a Bitcoin node was given.
    pub anchors: Option<Report>,
    /// Anchor transactions walked.
    pub anchor_count: usize,
    /// Newest epoch committed in Bitcoin.
    pub anchored_through: Option<u32>,
    /// Equivocations, with evidence.
    pub equivocations: Vec<Equivocation>,
}

impl ChainAudit {
    /// True when nothing failed.
    pub fn ok(&self) -> bool {
        self.epochs.iter().all(|e| e.report.ok())
            && self.duplicate_receipts.is_empty()
            && self.ledger.first_failure().is_none()
            && self.anchors.as_ref().is_none_or(|a| a.ok())
            && self.equivocations.is_empty()
    }

    /// Receipts checked in all.
    pub fn receipts(&self) -> u64 {
        self.epochs.iter().map(|e| u64::from(e.receipts)).sum()
    }
}

/// What to audit.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// First epoch.
    pub from: u32,
    /// Last epoch (`None`: the newest).
    pub to: Option<u32>,
    /// The first anchor the auditor expects (`None`: whichever spends the genesis output
    /// the headers name, SPEC.md §7.1).
    pub genesis: Option<Txid>,
}

/// Audits `scope` of the chain `source` serves; `others` are more sources of headers (other
/// coordinators' mirrors, followers) compared for equivocation; `backend` is the auditor's
/// own Bitcoin node. `progress(done, total)` is called after each epoch.
pub fn audit_chain(
    source: &dyn Source,
    others: &[&dyn Source],
    backend: Option<&dyn ChainBackend>,
    scope: &Scope,
    progress: &mut dyn FnMut(u32, u32),
) -> Result<ChainAudit, SourceError> {
    let to = scope.to.unwrap_or(u32::MAX);
    let base = scope.from.checked_sub(1);
    let mut headers = source.header_range(base.unwrap_or(scope.from), to)?;
    let mut prev: Option<EpochHeader> = None;
    if base.is_some() {
        match headers.first() {
            Some(h) if Some(h.body.height) == base => prev = Some(headers.remove(0).body),
            _ => return Err(SourceError::NotFound(format!("epoch {}", scope.from.saturating_sub(1)))),
        }
    }
    let prev_of_first = prev.clone();
    // The history every header commits is over all headers before it (SPEC.md §5.9): for a
    // range, the headers before it are checked as a chain (signatures, links, histories)
    // ending at the range's predecessor, so a source cannot feed another history.
    let mut history = cairn_spec::merkle::Frontier::new();
    if let Some(b) = base {
        let early = source.header_range(0, b)?;
        let mut before: Option<&EpochHeader> = None;
        for h in &early {
            let linked = match before {
                None => h.body.height == 0,
                Some(p) => h.body.follows(p),
            };
            if !(linked && h.verify() && h.body.history_is(&history)) {
                return Err(SourceError::BadAnswer(format!(
                    "header {} before the range is not the chain's",
                    h.body.height
                )));
            }
            history.push(h.id());
            before = Some(&h.body);
        }
        if early.len() as u64 != u64::from(b) + 1 || before != prev.as_ref() {
            return Err(SourceError::BadAnswer(format!("the headers 0 to {b} do not end at epoch {b}")));
        }
    }
    if headers.is_empty() {
        return Err(SourceError::NotFound(format!("epoch {}", scope.from)));
    }
    let total = headers.len() as u32;
    let mut epochs = Vec::with_capacity(headers.len());
    let mut seen: HashMap<Hash32, u32> = HashMap::new();
    let mut duplicates = Vec::new();
    let mut rewards: u64 = 0;
    let mut last_ledger = None;
    // The ledger the epoch before the range committed: each epoch's ledger may grow, key by
    // key, by no more than that epoch credits the key.
    let mut prev_ledger: Vec<cairn_spec::LedgerEntry> = match scope.from.checked_sub(1) {
        None => Vec::new(),
        Some(b) => source.ledger(b)?,
    };
    let classes = source.classes()?;
    // The receipts of the last two epochs: a header's rounds score the epoch two before it.
    let mut recent: std::collections::VecDeque<(u32, Vec<cairn_spec::SignedReceipt>)> = Default::default();
    for (i, h) in headers.iter().enumerate() {
        let receipts = source.epoch_receipts(h.body.height)?;
        let ledger = source.ledger(h.body.height)?;
        let mut report = check_epoch(h, prev.as_ref(), &history, &receipts, &ledger);
        let rounds = source.rounds(h.body.height)?;
        let scored_epoch = h.body.height.checked_sub(2).filter(|_| !rounds.is_empty());
        let scored = match scored_epoch {
            None => None,
            Some(e) => match recent.iter().find(|(height, _)| *height == e) {
                Some((_, r)) => Some(r.clone()),
                None => Some(source.epoch_receipts(e)?),
            },
        };
        let bonds = backend.filter(|_| !rounds.is_empty()).map(|b| bond_values(b, &rounds));
        match crate::scores::check_rounds(&h.body, &rounds, scored.as_deref(), bonds.as_ref(), &classes) {
            Ok(detail) => report.push("scores", true, detail),
            Err(detail) => report.push("scores", false, detail),
        };
        match crate::scores::check_ledger_growth(&prev_ledger, &ledger, &receipts, &rounds) {
            Ok(detail) => report.push("ledger_growth", true, detail),
            Err(detail) => report.push("ledger_growth", false, detail),
        };
        history.push(h.id());
        for r in &receipts {
            if seen.insert(r.id(), h.body.height).is_some() {
                duplicates.push(r.id());
            }
        }
        let reward = receipts.iter().fold(0u64, |a, r| a.saturating_add(r.body.reward_sats));
        let count = receipts.len() as u32;
        recent.push_back((h.body.height, receipts));
        if recent.len() > 2 {
            recent.pop_front();
        }
        // The ledger holds what receipts paid and what scored rounds credited (SPEC.md §13.6).
        let scored_sats = rounds.iter().fold(0u64, |a, r| a.saturating_add(r.credited_sats()));
        rewards = rewards.saturating_add(reward).saturating_add(scored_sats);
        last_ledger = Some(ledger_total(&ledger));
        prev_ledger = ledger;
        epochs.push(EpochResult {
            height: h.body.height,
            hash: h.id(),
            receipts: count,
            reward_sats: reward,
            report,
        });
        prev = Some(h.body.clone());
        progress(i as u32 + 1, total);
    }
    let mut ledger = Report::default();
    if scope.from == 0 {
        if let Some(total) = last_ledger {
            ledger.push(
                "ledger_total",
                total.is_some_and(|t| t <= rewards),
                match total {
                    Some(t) => format!(
                        "ledger holds {t} sats of {rewards} paid in receipts and scored rounds ({} forfeited)",
                        rewards.saturating_sub(t)
                    ),
                    None => "ledger total overflows".to_owned(),
                },
            );
        }
    }

    // Equivocation between sources.
    let mut equivocations = Vec::new();
    let mut all: Vec<SignedEpochHeader> = headers.clone();
    for o in others {
        let theirs = o.header_range(scope.from, to)?;
        all.extend(theirs);
    }
    let by_height: BTreeMap<u32, &SignedEpochHeader> = headers.iter().map(|h| (h.body.height, h)).collect();
    let mut rest = all;
    while let Some((a, b)) = find_equivocation(&rest) {
        let height = a.body.height;
        equivocations.push(Equivocation {
            height,
            detail: format!("two headers signed by {} for epoch {height}", a.body.coordinator),
            first: a,
            second: Some(b),
            committed: None,
        });
        rest.retain(|h| h.body.height != height);
    }

    // The anchor chain, through the auditor's own node.
    let mut anchors = None;
    let mut anchor_count = 0;
    let mut anchored_through = None;
    if let Some(backend) = backend {
        let mut r = Report::default();
        let network = headers.first().map(|h| h.body.network).unwrap_or(Network::Regtest);
        let chain = backend.chain_info();
        let same = matches!(&chain, Ok(c) if c.chain == network.core_chain_name());
        r.push(
            "node_network",
            same,
            match &chain {
                Ok(c) => format!("node on {:?}, chain on {network}", c.chain),
                Err(e) => e.to_string(),
            },
        );
        // The binding every header of the chain names (they all agree: each header follows
        // the one before, which includes the binding).
        let binding = prev_of_first.as_ref().or(headers.first().map(|h| &h.body)).map(|h| h.anchor);
        let bound = binding.is_some_and(|b| b != cairn_spec::AnchorBinding::None);
        // An anchor can confirm between the source's list and the node's answer about the
        // tip: a spent tip is asked about again, on a fresh list, before it counts.
        let mut attempt = 0;
        let (claims, refs, walk) = loop {
            attempt += 1;
            let claims = source.anchors()?;
            let mut refs = Vec::with_capacity(claims.len());
            let mut located = Report::default();
            for c in &claims {
                match backend.block_hash(c.height) {
                    Ok(Some(block)) => refs.push(AnchorRef { txid: c.txid, block }),
                    Ok(None) => {
                        located.push(
                            "anchor_block",
                            false,
                            format!("{} claimed at height {} above the tip", c.txid, c.height),
                        );
                    }
                    Err(e) => {
                        located.push("anchor_block", false, format!("bitcoin: {e}"));
                    }
                }
            }
            let walk = match binding {
                Some(b) if r.ok() && located.first_failure().is_none() && (bound || !claims.is_empty()) => {
                    Some(verify_anchor_chain(&b, scope.genesis, &refs, backend))
                }
                _ => None,
            };
            let racy = walk
                .as_ref()
                .is_some_and(|(w, _)| w.first_failure().is_some_and(|c| c.name == "tip_unspent"));
            if racy && attempt < TIP_ATTEMPTS {
                std::thread::sleep(std::time::Duration::from_secs(1));
                continue;
            }
            r.checks.extend(located.checks);
            break (claims, refs, walk);
        };
        if let Some((walk, payloads)) = walk {
            anchor_count = payloads.len();
            r.checks.extend(walk.checks);
            let mut commits_ok = true;
            for (p, a) in payloads.iter().zip(&refs) {
                let served = match by_height.get(&p.height) {
                    Some(h) => Some((*h).clone()),
                    None if p.height < scope.from || p.height > to => continue,
                    None => None,
                };
                match served {
                    Some(h) if h.id() == p.header_hash => {}
                    Some(h) => {
                        commits_ok = false;
                        equivocations.push(Equivocation {
                            height: p.height,
                            detail: format!(
                                "anchor {} commits header {} for epoch {}, the source serves {}",
                                a.txid,
                                p.header_hash,
                                p.height,
                                h.id()
                            ),
                            first: h,
                            second: None,
                            committed: Some((a.txid, p.header_hash)),
                        });
                    }
                    None => {
                        commits_ok = false;
                    }
                }
            }
            anchored_through = payloads.iter().map(|p| p.height).max();
            r.push(
                "anchor_commits",
                commits_ok,
                format!(
                    "{} anchors commit headers of this chain; anchored through epoch {}",
                    payloads.len(),
                    anchored_through.map_or("none".into(), |h| h.to_string())
                ),
            );
            // Each header's beacon is the block right after the one holding the anchor of
            // the header before (SPEC.md §12.1), and a header whose predecessor is anchored
            // must carry it.
            let anchored_at: BTreeMap<(u32, Hash32), u32> =
                payloads.iter().zip(&claims).map(|(p, c)| ((p.height, p.header_hash), c.height)).collect();
            let bad_beacon = headers.iter().filter(|h| h.body.height > 0).find_map(|h| {
                let e = h.body.height;
                let before = match (by_height.get(&(e - 1)), &prev_of_first) {
                    (Some(b), _) => b.id(),
                    (None, Some(b)) if b.height == e - 1 => b.hash(),
                    _ => return None,
                };
                // An anchored chain closes every epoch after the first armed (SPEC.md §12.1):
                // each header names its beacon, and the anchor of the one before exists.
                let at = anchored_at.get(&(e - 1, before));
                match (h.body.beacon, at) {
                    (Beacon::None, _) => Some(format!(
                        "epoch {e} names no beacon, yet this chain is anchored in Bitcoin"
                    )),
                    (Beacon::Block { height, .. }, None) => Some(format!(
                        "epoch {e} names beacon block {height}, but no anchor of header {} was found",
                        e - 1
                    )),
                    (Beacon::Block { height, hash }, Some(a)) => {
                        let found = match backend.block_hash(height) {
                            Ok(b) => b.map(|b| Hash32(b.to_byte_array())),
                            Err(e) => return Some(format!("bitcoin: {e}")),
                        };
                        if Some(height) != a.checked_add(1) {
                            Some(format!(
                                "epoch {e} names beacon block {height}, not {} (header {} is anchored at {a})",
                                a.saturating_add(1),
                                e - 1
                            ))
                        } else if found != Some(hash) {
                            Some(format!("epoch {e}'s beacon is not the block at height {height} in the node's chain"))
                        } else {
                            None
                        }
                    }
                }
            });
            r.push(
                "beacons",
                bad_beacon.is_none(),
                bad_beacon.unwrap_or_else(|| {
                    "each epoch's beacon is the block after its predecessor's anchor".to_owned()
                }),
            );
        } else if claims.is_empty() {
            r.push(
                "anchors",
                true,
                if bound {
                    "no confirmed anchors yet"
                } else {
                    "the headers name no anchor binding: this chain is not anchored to Bitcoin"
                },
            );
            // A beacon names a block after an anchor: with none, no beacon can be right.
            if let Some(h) = headers.iter().find(|h| h.body.beacon != Beacon::None) {
                r.push(
                    "beacons",
                    false,
                    format!("epoch {} names a beacon block, but no anchor was found", h.body.height),
                );
            }
        }
        anchors = Some(r);
    }
    Ok(ChainAudit {
        source: source.describe(),
        epochs,
        duplicate_receipts: duplicates,
        ledger,
        anchors,
        anchor_count,
        anchored_through,
        equivocations,
    })
}

/// What the auditor's node says each bond output of `rounds` is: the unspent output, else
/// the output of the transaction if the node can find it (spent outputs of transactions
/// outside its wallet need `-txindex`), as its value and whether it pays to the sheet's bond
/// key (P2TR, the key as output key).
fn bond_values(backend: &dyn ChainBackend, rounds: &[cairn_spec::ScoredRound]) -> crate::scores::BondValues {
    let mut out = crate::scores::BondValues::new();
    for sh in rounds.iter().flat_map(|r| &r.sheets) {
        out.entry((sh.bond_txid, sh.bond_vout)).or_insert_with(|| {
            let txid = Txid::from_byte_array(sh.bond_txid.0);
            let op = bitcoin::OutPoint { txid, vout: sh.bond_vout };
            let (value, script) = match backend.utxo(&op, false) {
                Ok(Some(u)) => (u.value, u.script_pubkey),
                _ => {
                    let tx = backend.transaction(&txid, None).ok().flatten()?;
                    let o = tx.output.get(sh.bond_vout as usize)?;
                    (o.value, o.script_pubkey.clone())
                }
            };
            let to_key = bitcoin::ScriptBuf::new_p2tr_tweaked(
                bitcoin::key::TweakedPublicKey::dangerous_assume_tweaked(sh.bond_key.x_only()),
            );
            Some((value.to_sat(), script == to_key))
        });
    }
    out
}
