//! Scored rounds (SPEC.md §13.6): what a coordinator commits, in an epoch header's scores
//! root, about one class's consensus over one epoch's work — the inputs (the workers' verified
//! units and every validator's signed sheet with its stake) and the outcome it credited.
//!
//! Owns the round's layout, its leaf hash and the check that an outcome is the consensus of
//! its inputs. Must never decide which sheets count or what a stake is: the coordinator
//! records those, and an auditor checks them against the signatures and Bitcoin.

use crate::codec::{expect_version, Decode, DecodeError, Encode, Reader, Writer};
use crate::consensus::{self, ConsensusError, ConsensusParams, Sheet, MAX_VALIDATORS, MAX_WORKERS};
use crate::hash::{Hash32, Tag};
use crate::keys::{PubKey, Signature};
use crate::network::Network;
use crate::scores::ScoreReveal;
use crate::signed::{Object, Signed};
use crate::work::Bond;

/// One validator's sheet as a round holds it: the reveal's scores and salt with the
/// validator's signature (so anyone can rebuild and check the signed reveal), the stake it
/// counted with, and the bond that stake was read from with the bond key's signature (so
/// anyone can check the validator controls that output, and Bitcoin what it holds).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoundSheet {
    /// The validator.
    pub validator: PubKey,
    /// Its stake: the value of its bond output.
    pub stake: u64,
    /// The bond output (txid in internal byte order).
    pub bond_txid: Hash32,
    /// The bond output's index.
    pub bond_vout: u32,
    /// The bond output's key (P2TR output key).
    pub bond_key: PubKey,
    /// The bond key's signature over `bond_message(coordinator, validator, txid, vout)`.
    pub bond_signature: Signature,
    /// Its scores, as revealed.
    pub scores: Vec<(PubKey, u32)>,
    /// The reveal's salt.
    #[serde(with = "crate::work::salt_hex")]
    pub salt: [u8; 32],
    /// The validator's signature over the reveal.
    pub signature: Signature,
    /// What the round credited it.
    pub share_sats: u64,
}

/// A scored worker as a round holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoundWorker {
    /// The worker.
    pub worker: PubKey,
    /// Its verified units of the class in the scored epoch.
    pub units: u64,
    /// Its consensus score.
    pub score: u32,
    /// What the round credited it.
    pub share_sats: u64,
}

/// One class's consensus over one epoch, as committed by the header of the epoch that
/// credited it (SPEC.md §13.6).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScoredRound {
    /// Network.
    pub network: Network,
    /// The coordinator.
    pub coordinator: PubKey,
    /// The scored class.
    pub class: Hash32,
    /// The epoch whose work was scored.
    pub epoch: u32,
    /// The class's consensus terms.
    pub params: ConsensusParams,
    /// The scored workers, by ascending key.
    pub workers: Vec<RoundWorker>,
    /// The sheets that counted, by ascending validator key.
    pub sheets: Vec<RoundSheet>,
    /// The budgets' satoshis nobody earned.
    pub unallocated_sats: u64,
}

/// Why a round is not what it claims.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoundError {
    /// A sheet's signature does not verify as the validator's reveal.
    #[error("the sheet of validator {0} is not signed by it")]
    BadSignature(PubKey),
    /// A sheet's bond is not signed by its bond key for this coordinator and validator.
    #[error("the bond of validator {0} is not signed by its bond key")]
    BadBond(PubKey),
    /// Two sheets name the same bond output: the same coins weighed twice.
    #[error("validator {0} weighs with a bond output another sheet names")]
    SharedBond(PubKey),
    /// The inputs are not a consensus's inputs.
    #[error("the round's inputs are refused: {0}")]
    Inputs(#[from] ConsensusError),
    /// The outcome differs from the consensus of the inputs.
    #[error("the round credits {what} {claimed} where the consensus gives {computed}")]
    Differs {
        /// What differs (a worker's score or share, a validator's share, the unallocated).
        what: String,
        /// What the round says.
        claimed: u64,
        /// What the consensus computes.
        computed: u64,
    },
}

impl ScoredRound {
    /// Object version.
    pub const VERSION: u8 = 1;

    /// The signed reveal a sheet stands for.
    pub fn reveal(&self, s: &RoundSheet) -> Signed<ScoreReveal> {
        Signed {
            body: ScoreReveal {
                network: self.network,
                coordinator: self.coordinator,
                class: self.class,
                epoch: self.epoch,
                validator: s.validator,
                scores: s.scores.clone(),
                salt: s.salt,
            },
            signature: s.signature,
        }
    }

    /// The consensus of the round's inputs.
    pub fn recompute(&self) -> Result<consensus::Outcome, ConsensusError> {
        let workers: Vec<(PubKey, u64)> = self.workers.iter().map(|w| (w.worker, w.units)).collect();
        let sheets: Vec<Sheet> = self
            .sheets
            .iter()
            .map(|s| Sheet { validator: s.validator, stake: s.stake, scores: s.scores.clone() })
            .collect();
        consensus::consensus(&self.params, &workers, &sheets)
    }

    /// The bond a sheet weighs with.
    pub fn bond(s: &RoundSheet) -> Bond {
        Bond { txid: s.bond_txid, vout: s.bond_vout, key: s.bond_key, signature: s.bond_signature }
    }

    /// Checks every sheet's reveal and bond signatures, that no two sheets share a bond
    /// output, and that the outcome is the consensus of the inputs, score by score and
    /// satoshi by satoshi; the first difference is the error. What a bond output holds is
    /// Bitcoin's to say (the auditor asks its node).
    pub fn check(&self) -> Result<consensus::Outcome, RoundError> {
        let mut outputs = std::collections::BTreeSet::new();
        for s in &self.sheets {
            if !self.reveal(s).verify() {
                return Err(RoundError::BadSignature(s.validator));
            }
            if !Self::bond(s).verify(&self.coordinator, &s.validator) {
                return Err(RoundError::BadBond(s.validator));
            }
            if !outputs.insert((s.bond_txid, s.bond_vout)) {
                return Err(RoundError::SharedBond(s.validator));
            }
        }
        let out = self.recompute()?;
        let differs = |what: String, claimed: u64, computed: u64| {
            (claimed != computed).then_some(RoundError::Differs { what, claimed, computed })
        };
        for (w, o) in self.workers.iter().zip(&out.workers) {
            if let Some(e) =
                differs(format!("worker {} a score of", w.worker), w.score.into(), o.score.into())
                    .or_else(|| differs(format!("worker {}", w.worker), w.share_sats, o.share_sats))
            {
                return Err(e);
            }
        }
        for (s, o) in self.sheets.iter().zip(&out.validators) {
            if let Some(e) = differs(format!("validator {}", s.validator), s.share_sats, o.share_sats) {
                return Err(e);
            }
        }
        if let Some(e) = differs("as unallocated".into(), self.unallocated_sats, out.unallocated_sats) {
            return Err(e);
        }
        Ok(out)
    }

    /// Sats the round credits, workers and validators together.
    pub fn credited_sats(&self) -> u64 {
        let w = self.workers.iter().map(|w| w.share_sats);
        let v = self.sheets.iter().map(|s| s.share_sats);
        w.chain(v).fold(0u64, u64::saturating_add)
    }
}

/// The scores root of an epoch header: the Merkle root (§6) of the ids of the rounds it
/// credits, in ascending class id order (the empty root when it credits none).
pub fn scores_root(rounds: &[ScoredRound]) -> Hash32 {
    let leaves: Vec<Hash32> = rounds.iter().map(Object::id).collect();
    crate::merkle::root(&leaves)
}

impl Encode for ScoredRound {
    fn encode(&self, w: &mut Writer) {
        w.u8(Self::VERSION);
        self.network.encode(w);
        self.coordinator.encode(w);
        w.raw(&self.class.0).u32(self.epoch);
        let p = &self.params;
        w.u64(p.worker_budget_sats).u64(p.validator_budget_sats).u32(p.baseline).u32(p.tolerance);
        let n = u16::try_from(self.workers.len()).unwrap_or(u16::MAX);
        w.u16(n);
        for x in self.workers.iter().take(usize::from(n)) {
            x.worker.encode(w);
            w.u64(x.units).u32(x.score).u64(x.share_sats);
        }
        let n = u16::try_from(self.sheets.len()).unwrap_or(u16::MAX);
        w.u16(n);
        for s in self.sheets.iter().take(usize::from(n)) {
            s.validator.encode(w);
            w.u64(s.stake).raw(&s.bond_txid.0).u32(s.bond_vout);
            s.bond_key.encode(w);
            w.raw(&s.bond_signature.0);
            crate::scores::encode_scores(w, &s.scores);
            w.raw(&s.salt).raw(&s.signature.0).u64(s.share_sats);
        }
        w.u64(self.unallocated_sats);
    }
}

/// Bytes of a worker entry, and of a sheet without its scores.
const WORKER_LEN: usize = 32 + 8 + 4 + 8;
const SHEET_MIN_LEN: usize = 32 + 8 + 32 + 4 + 32 + 64 + 2 + 32 + 64 + 8;

impl Decode for ScoredRound {
    const NAME: &'static str = "scored round";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_version(r, Self::NAME, Self::VERSION)?;
        let network = Network::decode(r)?;
        let coordinator = PubKey::decode(r, "coordinator")?;
        let class = Hash32(r.array("class")?);
        let epoch = r.u32("epoch")?;
        let params = ConsensusParams {
            worker_budget_sats: r.u64("params")?,
            validator_budget_sats: r.u64("params")?,
            baseline: r.u32("params")?,
            tolerance: r.u32("params")?,
        };
        let n = usize::from(r.u16("workers")?);
        let n = r.count("workers", n, MAX_WORKERS, WORKER_LEN)?;
        let mut workers = Vec::with_capacity(n);
        for _ in 0..n {
            workers.push(RoundWorker {
                worker: PubKey::decode(r, "workers")?,
                units: r.u64("workers")?,
                score: r.u32("workers")?,
                share_sats: r.u64("workers")?,
            });
        }
        let n = usize::from(r.u16("sheets")?);
        let n = r.count("sheets", n, MAX_VALIDATORS, SHEET_MIN_LEN)?;
        let mut sheets = Vec::with_capacity(n);
        for _ in 0..n {
            let validator = PubKey::decode(r, "sheets")?;
            let stake = r.u64("sheets")?;
            let bond_txid = Hash32(r.array("sheets")?);
            let bond_vout = r.u32("sheets")?;
            let bond_key = PubKey::decode(r, "sheets")?;
            let bond_signature = Signature(r.array("sheets")?);
            let k = usize::from(r.u16("sheets")?);
            let k = r.count("sheets", k, MAX_WORKERS, 36)?;
            let mut scores = Vec::with_capacity(k);
            for _ in 0..k {
                scores.push((PubKey::decode(r, "sheets")?, r.u32("sheets")?));
            }
            let salt = r.array("sheets")?;
            let signature = Signature(r.array("sheets")?);
            let share_sats = r.u64("sheets")?;
            sheets.push(RoundSheet {
                validator,
                stake,
                bond_txid,
                bond_vout,
                bond_key,
                bond_signature,
                scores,
                salt,
                signature,
                share_sats,
            });
        }
        let unallocated_sats = r.u64("unallocated")?;
        Ok(ScoredRound { network, coordinator, class, epoch, params, workers, sheets, unallocated_sats })
    }
}

impl Object for ScoredRound {
    const TAG: Tag = Tag::ScoredRound;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    fn sk(n: u8) -> SigningKey {
        SigningKey::from_secret_bytes([n; 32]).unwrap()
    }

    /// A round of two workers and two validators, each sheet signed, the outcome computed.
    fn round() -> ScoredRound {
        let mut workers: Vec<PubKey> = vec![sk(2).public(), sk(3).public()];
        workers.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut vals = [sk(7), sk(8)];
        vals.sort_by(|a, b| a.public().as_bytes().cmp(b.public().as_bytes()));
        let mut r = ScoredRound {
            network: Network::Regtest,
            coordinator: sk(1).public(),
            class: Hash32([9; 32]),
            epoch: 4,
            params: ConsensusParams {
                worker_budget_sats: 10_000,
                validator_budget_sats: 1_000,
                baseline: 100_000,
                tolerance: 200_000,
            },
            workers: workers
                .iter()
                .map(|&w| RoundWorker { worker: w, units: 5, score: 0, share_sats: 0 })
                .collect(),
            sheets: Vec::new(),
            unallocated_sats: 0,
        };
        for (i, v) in vals.iter().enumerate() {
            let scores = vec![(workers[0], 900_000 - i as u32 * 10_000), (workers[1], 400_000)];
            let body = ScoreReveal {
                network: r.network,
                coordinator: r.coordinator,
                class: r.class,
                epoch: r.epoch,
                validator: v.public(),
                scores: scores.clone(),
                salt: [i as u8; 32],
            };
            let signed = Signed::sign(body, v, &[0; 32]);
            let txid = Hash32([i as u8; 32]);
            let bond_msg = crate::work::bond_message(&r.coordinator, &v.public(), &txid, 1);
            r.sheets.push(RoundSheet {
                validator: v.public(),
                stake: 1_000 + i as u64,
                bond_txid: txid,
                bond_vout: 1,
                bond_key: sk(20).public(),
                bond_signature: sk(20).sign(&bond_msg, &[0; 32]),
                scores,
                salt: [i as u8; 32],
                signature: signed.signature,
                share_sats: 0,
            });
        }
        let out = r.recompute().unwrap();
        for (w, o) in r.workers.iter_mut().zip(&out.workers) {
            w.score = o.score;
            w.share_sats = o.share_sats;
        }
        for (s, o) in r.sheets.iter_mut().zip(&out.validators) {
            s.share_sats = o.share_sats;
        }
        r.unallocated_sats = out.unallocated_sats;
        r
    }

    #[test]
    fn a_round_round_trips_and_checks() {
        let r = round();
        assert_eq!(ScoredRound::from_bytes(&r.to_bytes()).unwrap(), r);
        r.check().unwrap();
        assert_eq!(r.credited_sats() + r.unallocated_sats, 11_000);
    }

    #[test]
    fn a_round_that_credits_otherwise_or_forges_a_sheet_fails_its_check() {
        let mut r = round();
        r.workers[0].share_sats += 1;
        assert!(matches!(r.check(), Err(RoundError::Differs { .. })));
        let mut r = round();
        r.sheets[1].share_sats = r.sheets[1].share_sats.saturating_sub(1);
        assert!(matches!(r.check(), Err(RoundError::Differs { .. })));
        let mut r = round();
        r.unallocated_sats += 1;
        assert!(matches!(r.check(), Err(RoundError::Differs { .. })));
        // A coordinator that changes a validator's scores cannot keep its signature valid.
        let mut r = round();
        r.sheets[0].scores[1].1 += 1;
        assert_eq!(r.check(), Err(RoundError::BadSignature(r.sheets[0].validator)));
        // Nor claim a bond its validator does not control, or weigh one output twice.
        let mut r = round();
        r.sheets[0].bond_vout = 2;
        assert_eq!(r.check(), Err(RoundError::BadBond(r.sheets[0].validator)));
        let mut r = round();
        let first = r.sheets[0].clone();
        let msg = crate::work::bond_message(&r.coordinator, &r.sheets[1].validator, &first.bond_txid, 1);
        r.sheets[1].bond_txid = first.bond_txid;
        r.sheets[1].bond_signature = sk(20).sign(&msg, &[0; 32]);
        assert_eq!(r.check(), Err(RoundError::SharedBond(r.sheets[1].validator)));
    }
}
