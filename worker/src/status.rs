//! `cairn worker status`: what the worker did (from its journal), what it earned (from each
//! coordinator's API: locked, claimable, paid with payout txids), and whether each receipt
//! holds: signed by the coordinator, about this worker and task, included in a signed epoch
//! header, and — given a Bitcoin Core — committed in Bitcoin, checked by `cairn-anchor`'s
//! verifier against the chain itself.
//!
//! Owns the report. Must never trust the coordinator's word where a signature or Bitcoin can
//! speak: the API is only where the bytes come from.

use cairn_anchor::ChainBackend;
use cairn_audit::receipt::{assemble, ProofSourceError};
use cairn_audit::verify::verify_receipt_pinned;
use cairn_audit::{ApiSource, Source, SourceError};
use std::collections::BTreeMap;
use std::fmt;

use cairn_spec::api::{LedgerView, WorkerView};
use cairn_spec::{Hash32, Network, PubKey, Verdict};
use serde::Serialize;

use crate::job::Stage;
use crate::journal::Journal;

/// Receipts verified per coordinator per run (the newest first).
pub const MAX_VERIFIED: usize = 100;

/// Where one receipt stands, as far as the worker could check it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptState {
    /// Its epoch is not closed yet.
    Pending,
    /// In a signed epoch header; not (yet) checked against Bitcoin.
    Included,
    /// Its epoch is committed in Bitcoin, checked against Bitcoin itself.
    Anchored,
    /// A check failed: the coordinator's word does not hold.
    Failed,
}

/// Where a job stands in the worker's journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Leased or executing.
    Running,
    /// Committed or revealed; no verdict yet.
    AwaitingVerdict,
    /// Accepted.
    Accepted,
    /// Rejected.
    Rejected,
    /// Given up.
    Abandoned,
}

/// A job that did not end accepted.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// The task.
    pub task: Hash32,
    /// Its class.
    pub class: String,
    /// The verdict, when it was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Why it was given up, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abandoned: Option<String>,
}

/// A receipt whose check failed.
#[derive(Clone, Debug, Serialize)]
pub struct ReceiptFailure {
    /// The receipt.
    pub receipt: Hash32,
    /// Its task.
    pub task: Hash32,
    /// The failed check.
    pub why: String,
}

/// An answer of the coordinator's API, or why there was none.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Asked<T> {
    /// What it said.
    Answer(T),
    /// Why it could not be asked.
    Error(String),
}

impl<T> From<Result<T, String>> for Asked<T> {
    fn from(r: Result<T, String>) -> Self {
        r.map_or_else(Asked::Error, Asked::Answer)
    }
}

/// One coordinator, as the worker sees it.
#[derive(Clone, Debug, Serialize)]
pub struct CoordinatorStatus {
    /// Its key (`None` when it could not be learned: see `problem`).
    pub coordinator: Option<PubKey>,
    /// Its API, when configured (without one, earnings and proofs are unavailable).
    pub api: Option<String>,
    /// Why it could not be asked at all.
    pub problem: Option<String>,
    /// Its word on this worker's standing.
    pub standing: Option<Asked<WorkerView>>,
    /// Its word on this worker's earnings, satoshis.
    pub earnings_sats: Option<Asked<LedgerView>>,
    /// Receipts checked (the newest [`MAX_VERIFIED`]) by the state they were found in.
    pub receipts_checked: BTreeMap<ReceiptState, u64>,
    /// The ones whose check failed.
    pub receipt_failures: Vec<ReceiptFailure>,
}

/// `cairn worker status`: what the worker did and what each coordinator owes it.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    /// The worker's key.
    pub worker: PubKey,
    /// Where its rewards go.
    pub payout_address: String,
    /// What receipts were checked against: `None` for signatures only (no Core given), else
    /// what the node given says it is (Bitcoin Core, or the devnet's embedded chain).
    pub checked_against: Option<cairn_spec::api::BitcoinBackend>,
    /// Totals from the journal (pruned jobs included).
    pub totals: crate::journal::Totals,
    /// Jobs in the journal by state.
    pub jobs: BTreeMap<JobState, u64>,
    /// Jobs in the journal that did not end accepted (at most 64, by task id).
    pub problems: Vec<Problem>,
    /// Each configured coordinator.
    pub coordinators: Vec<CoordinatorStatus>,
}

/// A route's answer read as its body type (`cairn_spec::api`), or why it could not be.
fn get<T: serde::de::DeserializeOwned>(api: &str, path: &str) -> Result<T, String> {
    let v = ApiSource::new(api).get(path).map_err(|e| e.to_string())?;
    serde_json::from_value(v).map_err(|e| format!("{api}{path}: unexpected answer: {e}"))
}

/// Checks one receipt: off-chain always, on-chain when `chain` is given and the coordinator
/// reports the epoch anchored, on the anchor chain grown from `pin` when given (the one
/// pinned at registration). Returns (state, detail).
#[allow(clippy::too_many_arguments)]
pub fn verify_one(
    api: &str,
    me: &PubKey,
    coordinator: &PubKey,
    task: &Hash32,
    receipt_id: &Hash32,
    network: Network,
    chain: Option<(&dyn ChainBackend, u32)>,
    pin: Option<bitcoin::OutPoint>,
) -> (ReceiptState, String) {
    match verify_inner(api, me, coordinator, task, receipt_id, network, chain, pin) {
        Ok(r) => r,
        Err(e) => (ReceiptState::Failed, e),
    }
}

#[allow(clippy::too_many_arguments)]
fn verify_inner(
    api: &str,
    me: &PubKey,
    coordinator: &PubKey,
    task: &Hash32,
    receipt_id: &Hash32,
    network: Network,
    chain: Option<(&dyn ChainBackend, u32)>,
    pin: Option<bitcoin::OutPoint>,
) -> Result<(ReceiptState, String), String> {
    let src = ApiSource::new(api);
    let located = match src.receipt(receipt_id) {
        Ok(l) => l,
        Err(SourceError::NotFound(_)) => {
            return Ok((ReceiptState::Pending, "its epoch is not closed yet".into()))
        }
        Err(e) => return Err(e.to_string()),
    };
    let b = &located.receipt.body;
    if !located.receipt.verify() || &b.coordinator != coordinator {
        return Err("receipt is not signed by the coordinator".into());
    }
    if &b.worker != me || &b.task != task || b.network != network {
        return Err("receipt names another worker, task or network".into());
    }
    let header = src.headers(b.epoch, 1).map_err(|e| e.to_string())?.into_iter().next();
    let Some(header) =
        header.filter(|h| h.verify() && &h.body.coordinator == coordinator && h.body.height == b.epoch)
    else {
        return Err("epoch header is not the coordinator's signed header of the receipt's epoch".into());
    };
    let root = located.path.root_for(&b.leaf_hash()).map_err(|e| format!("merkle proof: {e}"))?;
    if root != header.body.receipts_root {
        return Err(format!("receipt is not in epoch {}'s receipts root", b.epoch));
    }
    let Some((backend, min_depth)) = chain else {
        let anchored = src.anchors().map_err(|e| e.to_string())?.iter().any(|a| a.epoch >= b.epoch);
        let note = if anchored {
            "coordinator reports it anchored (give --rpc-url to check Bitcoin)"
        } else {
            "not anchored yet"
        };
        return Ok((ReceiptState::Included, format!("in signed epoch {}; {note}", b.epoch)));
    };
    // Bitcoin's word, through the auditors' own assembly and verifier.
    let proof = match assemble(&src, receipt_id, backend, network) {
        Ok(p) => p,
        Err(ProofSourceError::NotAnchored(m)) => {
            return Ok((ReceiptState::Included, format!("in signed epoch {}; {m}", b.epoch)))
        }
        Err(e) => return Err(e.to_string()),
    };
    let report = verify_receipt_pinned(&proof, backend, network, min_depth, pin);
    match report.first_failure() {
        None => Ok((
            ReceiptState::Anchored,
            format!(
                "epoch {} committed in Bitcoin at height {}{}",
                b.epoch,
                proof.block_height,
                if pin.is_none() {
                    " (on an anchor chain not pinned: the coordinator served no genesis header)"
                } else {
                    ""
                }
            ),
        )),
        Some(c) => Err(format!("{}: {}", c.name, c.detail)),
    }
}

/// The anchor binding coordinator `ckey`'s signed genesis header names, from its API.
fn genesis_binding(api: &str, ckey: &PubKey) -> Option<cairn_spec::AnchorBinding> {
    let h = ApiSource::new(api).headers(0, 1).ok()?.into_iter().next()?;
    (h.body.height == 0 && &h.body.coordinator == ckey && h.verify()).then_some(h.body.anchor)
}

/// The status report.
pub fn report(
    cfg: &crate::config::WorkerConfig,
    me: &PubKey,
    journal: &Journal,
    chain: Option<(&dyn ChainBackend, u32)>,
) -> StatusReport {
    let network = cfg.network().unwrap_or(Network::Regtest);
    let mut jobs = BTreeMap::<JobState, u64>::new();
    let mut problems = Vec::new();
    for j in journal.jobs.values() {
        let problem =
            |verdict, abandoned| Problem { task: j.id, class: j.class_name.clone(), verdict, abandoned };
        let s = match &j.stage {
            Stage::New | Stage::Leased { .. } | Stage::Executed { .. } => JobState::Running,
            Stage::Committed { .. } | Stage::Revealed { .. } => JobState::AwaitingVerdict,
            Stage::Done { verdict, .. } if verdict.is_accepted() => JobState::Accepted,
            Stage::Done { verdict, .. } => {
                problems.push(problem(Some(*verdict), None));
                JobState::Rejected
            }
            Stage::Abandoned { reason, .. } => {
                problems.push(problem(None, Some(reason.clone())));
                JobState::Abandoned
            }
        };
        *jobs.entry(s).or_default() += 1;
    }
    let mut coordinators = Vec::new();
    for c in &cfg.coordinators {
        let unasked = |coordinator, problem| CoordinatorStatus {
            coordinator,
            api: c.api.clone(),
            problem,
            standing: None,
            earnings_sats: None,
            receipts_checked: BTreeMap::new(),
            receipt_failures: Vec::new(),
        };
        // Only an API configured: its p2p address (and so its key) is asked of it, as the
        // worker does at start.
        let p2p = match (&c.api, c.p2p.is_empty()) {
            (Some(api), true) => crate::discover::p2p_from_api(api),
            _ => Ok(c.p2p.clone()),
        };
        let ckey = p2p.and_then(|p2p| {
            p2p.rsplit_once("/p2p/")
                .and_then(|(_, p)| p.parse::<cairn_p2p::Peer>().ok())
                .and_then(|p| p.protocol_key())
                .ok_or_else(|| format!("{p2p:?} does not end in a Cairn peer id"))
        });
        let ckey = match ckey {
            Ok(k) => k,
            Err(e) => {
                coordinators.push(unasked(None, Some(e)));
                continue;
            }
        };
        let Some(api) = &c.api else {
            coordinators.push(unasked(Some(ckey), None));
            continue;
        };
        // What the coordinator says, shown as it says it (or why it could not be asked).
        let standing = get::<WorkerView>(api, &format!("/v1/workers/{me}")).into();
        let earnings = get::<LedgerView>(api, &format!("/v1/ledger/{me}")).into();
        let mut done: Vec<_> = journal
            .jobs
            .values()
            .filter(|j| j.coordinator == ckey)
            .filter_map(|j| match &j.stage {
                Stage::Done { receipt, epoch, .. } => Some((*epoch, j.id, *receipt)),
                _ => None,
            })
            .collect();
        done.sort_by_key(|d| std::cmp::Reverse(d.0));
        let mut counts = BTreeMap::<ReceiptState, u64>::new();
        let mut failures = Vec::new();
        // The chain pinned when this worker first saw the coordinator's genesis header, else
        // the one its signed genesis header names now (so no receipt is checked unpinned).
        let pin = journal
            .registrations
            .get(&ckey.to_hex())
            .and_then(|r| r.binding)
            .or_else(|| genesis_binding(api, &ckey))
            .and_then(|b| b.genesis());
        for (_, task, rid) in done.into_iter().take(MAX_VERIFIED) {
            let (state, detail) = verify_one(api, me, &ckey, &task, &rid, network, chain, pin);
            *counts.entry(state).or_default() += 1;
            if state == ReceiptState::Failed {
                failures.push(ReceiptFailure { receipt: rid, task, why: detail });
            }
        }
        coordinators.push(CoordinatorStatus {
            coordinator: Some(ckey),
            api: Some(api.clone()),
            problem: None,
            standing: Some(standing),
            earnings_sats: Some(earnings),
            receipts_checked: counts,
            receipt_failures: failures,
        });
    }
    StatusReport {
        worker: *me,
        payout_address: cfg.payout_address.clone(),
        checked_against: chain.map(|(b, _)| match b.chain_info() {
            Ok(i) if i.embedded => cairn_spec::api::BitcoinBackend::EmbeddedRegtest,
            _ => cairn_spec::api::BitcoinBackend::BitcoinCore,
        }),
        totals: journal.totals.clone(),
        jobs,
        problems: problems.into_iter().take(64).collect(),
        coordinators,
    }
}

impl fmt::Display for ReceiptState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReceiptState::Pending => "pending",
            ReceiptState::Included => "included",
            ReceiptState::Anchored => "anchored",
            ReceiptState::Failed => "FAILED",
        })
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobState::Running => "running",
            JobState::AwaitingVerdict => "awaiting verdict",
            JobState::Accepted => "accepted",
            JobState::Rejected => "rejected",
            JobState::Abandoned => "abandoned",
        })
    }
}

fn btc(sats: u64) -> String {
    format!("{}.{:08} BTC", sats / 100_000_000, sats % 100_000_000)
}

/// Text from outside (a coordinator's API, its error bodies, a verdict's reason) as it may be
/// printed on a terminal: control characters (newlines, escape sequences) escaped, so a
/// coordinator cannot forge or hide lines of the report.
fn clean(s: &str) -> String {
    s.chars()
        .flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] })
        .collect()
}

impl StatusReport {
    /// Receipts whose check failed, over every coordinator.
    pub fn failures(&self) -> usize {
        self.coordinators.iter().map(|c| c.receipt_failures.len()).sum()
    }
}

/// The report for a person: one screen, the figures first, every failure spelled out.
impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.totals;
        writeln!(f, "worker    {}", self.worker)?;
        writeln!(f, "payout    {}", clean(&self.payout_address))?;
        writeln!(
            f,
            "results   {} accepted, {} rejected, {} abandoned; credited {}",
            t.accepted,
            t.rejected,
            t.abandoned,
            btc(t.credited_sats)
        )?;
        let jobs: Vec<String> = self.jobs.iter().map(|(s, n)| format!("{n} {s}")).collect();
        writeln!(f, "journal   {}", if jobs.is_empty() { "no jobs".into() } else { jobs.join(", ") })?;
        for c in &self.coordinators {
            writeln!(f)?;
            match &c.coordinator {
                Some(k) => writeln!(f, "coordinator {k}")?,
                None => writeln!(f, "coordinator (key unknown)")?,
            }
            if let Some(p) = &c.problem {
                writeln!(f, "  api       {}", clean(c.api.as_deref().unwrap_or("none")))?;
                writeln!(f, "  NOT ASKED {}", clean(p))?;
                continue;
            }
            let Some(api) = &c.api else {
                writeln!(f, "  no API URL configured: earnings and receipt proofs unavailable")?;
                continue;
            };
            writeln!(f, "  api       {}", clean(api))?;
            match &c.standing {
                Some(Asked::Answer(w)) => {
                    let status = serde_json::to_value(w.status).ok();
                    let status = status.as_ref().and_then(|v| v.as_str()).unwrap_or("?");
                    writeln!(f, "  standing  {status}: {} accepted, {} rejected", w.accepted, w.rejected)?;
                    for r in w.rejections.iter().rev().take(3) {
                        writeln!(
                            f,
                            "            rejected: {}",
                            clean(&serde_json::to_string(r).unwrap_or_default())
                        )?;
                    }
                }
                Some(Asked::Error(e)) => writeln!(f, "  standing  unavailable: {}", clean(e))?,
                None => {}
            }
            match &c.earnings_sats {
                Some(Asked::Answer(l)) => {
                    writeln!(
                        f,
                        "  earnings  {} locked, {} claimable, {} paid ({} payouts)",
                        btc(l.locked),
                        btc(l.claimable),
                        btc(l.paid),
                        l.payouts.len()
                    )?;
                }
                Some(Asked::Error(e)) => writeln!(f, "  earnings  unavailable: {}", clean(e))?,
                None => {}
            }
            let checked: Vec<String> = c.receipts_checked.iter().map(|(s, n)| format!("{n} {s}")).collect();
            let against = match self.checked_against {
                Some(cairn_spec::api::BitcoinBackend::BitcoinCore) => "against Bitcoin",
                Some(cairn_spec::api::BitcoinBackend::EmbeddedRegtest) => {
                    "against the embedded regtest chain, NOT Bitcoin Core"
                }
                None => "against signatures only; give --rpc-url to check Bitcoin",
            };
            if checked.is_empty() {
                writeln!(f, "  receipts  none yet")?;
            } else {
                writeln!(f, "  receipts  {} ({against})", checked.join(", "))?;
            }
            for x in &c.receipt_failures {
                writeln!(f, "  FAILED    receipt {} (task {}): {}", x.receipt, x.task, clean(&x.why))?;
            }
        }
        if !self.problems.is_empty() {
            writeln!(f)?;
            writeln!(f, "jobs not accepted")?;
            for p in self.problems.iter().take(10) {
                let why = match (&p.verdict, &p.abandoned) {
                    (Some(v), _) => format!("rejected: {}", serde_json::to_string(v).unwrap_or_default()),
                    (None, Some(r)) => format!("abandoned: {r}"),
                    (None, None) => String::new(),
                };
                writeln!(f, "  task {} ({}) {}", p.task, clean(&p.class), clean(&why))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_a_coordinator_cannot_forge_report_lines() {
        let forged = "boom\n  receipts  100 anchored (against Bitcoin)\x1b[2K\r";
        let c = clean(forged);
        assert!(!c.contains('\n') && !c.contains('\x1b') && !c.contains('\r'), "{c}");
        assert!(c.contains("\\n") && c.contains("\\u{1b}"), "{c}");
        assert_eq!(clean("plain ünïcode text"), "plain ünïcode text");
    }
}
