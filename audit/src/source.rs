//! Where an auditor's sidechain data comes from: a [`Source`] answers for epoch headers, an
//! epoch's receipts and ledger snapshot, one receipt with its Merkle path, and the anchors the
//! coordinator claims. [`ApiSource`] reads a coordinator's or follower's HTTP API; the node
//! implements the trait over its database.
//!
//! Owns fetching and decoding, with bounds on every answer. Must never judge what it
//! fetched: a source can lie, and the checks elsewhere say so.

use std::time::Duration;

use cairn_spec::{
    Decode, Hash32, LedgerEntry, MerkleProof, Object, Roster, ScoredRound, SignedEpochHeader, SignedReceipt,
    Task, TaskClass,
};
use serde_json::Value;
use thiserror::Error;

/// Largest JSON answer read from an API.
pub const MAX_ANSWER_BYTES: u64 = 64 << 20;
/// Headers asked per request.
pub const HEADER_PAGE: u32 = 500;
/// Receipts asked per request.
pub const RECEIPT_PAGE: u32 = 5000;

/// Why a source could not answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SourceError {
    /// Reaching it failed.
    #[error("{0}")]
    Unreachable(String),
    /// It answered something that does not decode or breaks a bound.
    #[error("bad answer: {0}")]
    BadAnswer(String),
    /// It does not have it (yet).
    #[error("not found: {0}")]
    NotFound(String),
}

/// An anchor transaction a coordinator says is confirmed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AnchorClaim {
    /// Txid.
    pub txid: bitcoin::Txid,
    /// The epoch it commits.
    pub epoch: u32,
    /// The block height it is said to be in.
    pub height: u32,
}

/// A receipt where the source keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocatedReceipt {
    /// The signed receipt.
    pub receipt: SignedReceipt,
    /// Its epoch.
    pub epoch: u32,
    /// Its Merkle path to the epoch's receipts root.
    pub path: MerkleProof,
}

/// Sidechain data, from wherever.
pub trait Source {
    /// What it is, for reports.
    fn describe(&self) -> String;
    /// Up to `count` headers from height `from`, ascending.
    fn headers(&self, from: u32, count: u32) -> Result<Vec<SignedEpochHeader>, SourceError>;
    /// Every receipt of epoch `height`, in index order.
    fn epoch_receipts(&self, height: u32) -> Result<Vec<SignedReceipt>, SourceError>;
    /// The ledger entries epoch `height`'s state root commits to.
    fn ledger(&self, height: u32) -> Result<Vec<LedgerEntry>, SourceError>;
    /// One receipt, its epoch and its Merkle path.
    fn receipt(&self, id: &Hash32) -> Result<LocatedReceipt, SourceError>;
    /// The anchors said to be confirmed, in chain order.
    fn anchors(&self) -> Result<Vec<AnchorClaim>, SourceError>;
    /// The task classes the source knows, by id (each checked to hash to its id); none by
    /// default.
    fn classes(&self) -> Result<std::collections::BTreeMap<Hash32, TaskClass>, SourceError> {
        Ok(Default::default())
    }
    /// The scored rounds the header at `height` credits (SPEC.md §13.6). A source that serves
    /// none answers none, and a header committing rounds then fails its `scores` check.
    fn rounds(&self, height: u32) -> Result<Vec<ScoredRound>, SourceError> {
        let _ = height;
        Ok(Vec::new())
    }
    /// The roster epoch `epoch`'s draws rank (SPEC.md §12.1).
    fn roster(&self, epoch: u32) -> Result<Roster, SourceError> {
        Err(SourceError::NotFound(format!("roster of epoch {epoch}: {} serves no rosters", self.describe())))
    }
    /// The task with id `id` (checked to hash to it).
    fn task(&self, id: &Hash32) -> Result<Task, SourceError> {
        Err(SourceError::NotFound(format!("task {id}: {} serves no tasks", self.describe())))
    }

    /// The Merkle siblings of epoch `epoch`'s header hash in the history tree epoch
    /// `anchored`'s header commits (the hashes of headers 0 to `anchored − 1`; SPEC.md §5.9).
    /// By default computed from those headers; a source that can answer directly does.
    fn history_path(&self, epoch: u32, anchored: u32) -> Result<Vec<Hash32>, SourceError> {
        let before = anchored
            .checked_sub(1)
            .filter(|b| epoch <= *b)
            .ok_or_else(|| SourceError::BadAnswer(format!("epoch {epoch} is not before epoch {anchored}")))?;
        let hashes: Vec<Hash32> = self.header_range(0, before)?.iter().map(|h| h.id()).collect();
        if hashes.len() != anchored as usize {
            return Err(SourceError::BadAnswer(format!("headers 0..{anchored} incomplete")));
        }
        let proof = cairn_spec::merkle::MerkleTree::new(hashes).proof(epoch);
        proof.map(|p| p.siblings).ok_or_else(|| SourceError::BadAnswer(format!("no epoch {epoch}")))
    }

    /// Every header from `from` to `to` inclusive (fewer when the chain is shorter).
    fn header_range(&self, from: u32, to: u32) -> Result<Vec<SignedEpochHeader>, SourceError> {
        let mut out = Vec::new();
        let mut next = from;
        while next <= to {
            let want = (to - next).saturating_add(1).min(HEADER_PAGE);
            let page = self.headers(next, want)?;
            let Some(last) = page.last().map(|h| h.body.height) else { break };
            if page.len() > want as usize || page.first().map(|h| h.body.height) != Some(next) {
                return Err(SourceError::BadAnswer(format!("asked headers from {next}, got another range")));
            }
            out.extend(page);
            match last.checked_add(1) {
                Some(n) => next = n,
                None => break,
            }
        }
        Ok(out)
    }
}

/// A coordinator's or follower's HTTP API (`/v1/...`).
pub struct ApiSource {
    base: String,
    agent: ureq::Agent,
}

impl ApiSource {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Self {
        let agent = crate::web::agent(Duration::from_secs(30));
        ApiSource { base: base.trim_end_matches('/').to_owned(), agent }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GETs a JSON document.
    pub fn get(&self, path: &str) -> Result<Value, SourceError> {
        let url = format!("{}{path}", self.base);
        let mut tries = 0;
        let mut r = loop {
            let r =
                self.agent.get(&url).call().map_err(|e| SourceError::Unreachable(format!("{url}: {e}")))?;
            // A node limits each client's expensive reads: wait as it asks (a few times, a
            // few seconds at most), then report what it said.
            if !matches!(r.status().as_u16(), 429 | 503) || tries >= MAX_RETRIES_AFTER_429 {
                break r;
            }
            tries += 1;
            let secs = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1)
                .clamp(1, 5);
            std::thread::sleep(std::time::Duration::from_secs(secs));
        };
        let status = r.status().as_u16();
        let body: Value = r
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_json()
            .map_err(|e| SourceError::BadAnswer(format!("{url}: {e}")))?;
        let why = || format!("{url}: {status} {}", body["error"].as_str().unwrap_or_default());
        match status {
            200 => Ok(body),
            404 | 409 => Err(SourceError::NotFound(why())),
            _ => Err(SourceError::Unreachable(why())),
        }
    }
}

/// Times a read refused 429 (too many expensive reads) or 503 (busy) is asked again.
const MAX_RETRIES_AFTER_429: u32 = 3;

/// Decodes a hex field into a protocol object.
pub fn decode_hex<T: Decode>(v: &Value, what: &str) -> Result<T, SourceError> {
    let hex = v.as_str().ok_or_else(|| SourceError::BadAnswer(format!("{what}: missing")))?;
    let bytes = hex::decode(hex).map_err(|_| SourceError::BadAnswer(format!("{what}: not hex")))?;
    T::from_bytes(&bytes).map_err(|e| SourceError::BadAnswer(format!("{what}: {e}")))
}

fn list<'a>(v: &'a Value, key: &str) -> Result<&'a Vec<Value>, SourceError> {
    v[key].as_array().ok_or_else(|| SourceError::BadAnswer(format!("{key}: missing")))
}

impl Source for ApiSource {
    fn describe(&self) -> String {
        format!("API {}", self.base)
    }

    fn headers(&self, from: u32, count: u32) -> Result<Vec<SignedEpochHeader>, SourceError> {
        let v = self.get(&format!("/v1/epochs?from={from}&limit={}", count.clamp(1, HEADER_PAGE)))?;
        list(&v, "epochs")?.iter().map(|e| decode_hex(&e["encoding"], "epoch header")).collect()
    }

    fn epoch_receipts(&self, height: u32) -> Result<Vec<SignedReceipt>, SourceError> {
        let mut out = Vec::new();
        loop {
            let v =
                self.get(&format!("/v1/epochs/{height}/receipts?from={}&limit={RECEIPT_PAGE}", out.len()))?;
            let page = list(&v, "receipts")?;
            if page.len() > RECEIPT_PAGE as usize {
                return Err(SourceError::BadAnswer("receipt page over its limit".into()));
            }
            for r in page {
                out.push(decode_hex(r, "receipt")?);
            }
            if page.len() < RECEIPT_PAGE as usize {
                return Ok(out);
            }
        }
    }

    fn classes(&self) -> Result<std::collections::BTreeMap<Hash32, TaskClass>, SourceError> {
        // A follower serves no classes: then none are known.
        let v = match self.get("/v1/classes") {
            Err(SourceError::NotFound(_)) => return Ok(Default::default()),
            other => other?,
        };
        list(&v, "classes")?
            .iter()
            .map(|c| {
                let class: TaskClass = decode_hex(&c["encoding"], "task class")?;
                Ok((class.id(), class))
            })
            .collect()
    }

    fn rounds(&self, height: u32) -> Result<Vec<ScoredRound>, SourceError> {
        let v = self.get(&format!("/v1/epochs/{height}/rounds"))?;
        list(&v, "rounds")?.iter().map(|r| decode_hex(&r["encoding"], "scored round")).collect()
    }

    fn ledger(&self, height: u32) -> Result<Vec<LedgerEntry>, SourceError> {
        let v = self.get(&format!("/v1/epochs/{height}/ledger"))?;
        list(&v, "entries")?.iter().map(|e| decode_hex(e, "ledger entry")).collect()
    }

    fn receipt(&self, id: &Hash32) -> Result<LocatedReceipt, SourceError> {
        let v = self.get(&format!("/v1/receipts/{id}/proof"))?;
        let receipt: SignedReceipt = decode_hex(&v["receipt_encoding"], "receipt")?;
        let path: MerkleProof = serde_json::from_value(v["merkle_proof"].clone())
            .map_err(|e| SourceError::BadAnswer(format!("merkle proof: {e}")))?;
        Ok(LocatedReceipt { epoch: receipt.body.epoch, receipt, path })
    }

    fn roster(&self, epoch: u32) -> Result<Roster, SourceError> {
        decode_hex(&self.get(&format!("/v1/epochs/{epoch}/roster"))?["encoding"], "roster")
    }

    fn task(&self, id: &Hash32) -> Result<Task, SourceError> {
        let task: Task = decode_hex(&self.get(&format!("/v1/tasks/{id}"))?["encoding"], "task")?;
        if task.id() != *id {
            return Err(SourceError::BadAnswer(format!(
                "task {id}: the encoding served hashes to {}",
                task.id()
            )));
        }
        Ok(task)
    }

    fn history_path(&self, epoch: u32, anchored: u32) -> Result<Vec<Hash32>, SourceError> {
        let v = self.get(&format!("/v1/epochs/{anchored}/history/{epoch}"))?;
        let a: cairn_spec::api::EpochHistory =
            serde_json::from_value(v).map_err(|e| SourceError::BadAnswer(format!("history path: {e}")))?;
        if a.siblings.len() > cairn_spec::merkle::MAX_DEPTH {
            return Err(SourceError::BadAnswer("history path longer than any tree".into()));
        }
        Ok(a.siblings)
    }

    fn anchors(&self) -> Result<Vec<AnchorClaim>, SourceError> {
        let v = self.get("/v1/anchors")?;
        let mut out = Vec::new();
        for a in list(&v, "anchors")? {
            if a["status"] != "confirmed" {
                continue;
            }
            let bad = |f: &str| SourceError::BadAnswer(format!("anchor {f}"));
            out.push(AnchorClaim {
                txid: a["txid"].as_str().and_then(|t| t.parse().ok()).ok_or_else(|| bad("txid"))?,
                epoch: a["epoch"].as_u64().and_then(|e| u32::try_from(e).ok()).ok_or_else(|| bad("epoch"))?,
                height: a["height"]
                    .as_u64()
                    .and_then(|e| u32::try_from(e).ok())
                    .ok_or_else(|| bad("height"))?,
            });
        }
        out.sort_by_key(|a| (a.height, a.epoch));
        Ok(out)
    }
}
