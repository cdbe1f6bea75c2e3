//! What validators sign (SPEC.md §13.4, §13.5): their bonded registration, the commitment to
//! an epoch's score sheet, and the sheet revealed with the salt that opens it.
//!
//! Owns their layouts and the commitment value. Must never weigh a sheet: stakes, which
//! sheets count and the consensus over them belong to the coordinator and `consensus`.

use crate::codec::{expect_version, Decode, DecodeError, Encode, Reader, Writer};
use crate::consensus::{MAX_WORKERS, SCORE_SCALE};
use crate::hash::{Hash32, Tag, TaggedHasher};
use crate::keys::PubKey;
use crate::network::Network;
use crate::signed::{Object, Signer};
use crate::work::{Bond, MAX_ADDRESS_LEN};

/// A validator's request to score a coordinator's scored classes, backed by a bond: a
/// confirmed unspent Taproot output whose value is the validator's stake (SPEC.md §13.5).
/// Signed by the validator. Its own object (not a worker's registration with a flag), so a
/// worker's signed registration can never be replayed to make its key a validator.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ValidatorRegistration {
    /// Network; the payout address must belong to it.
    pub network: Network,
    /// The coordinator registered with.
    pub coordinator: PubKey,
    /// The validator's protocol key.
    pub validator: PubKey,
    /// Bitcoin address paid for this validator's rewards.
    pub payout_address: String,
    /// Unix seconds when signed.
    pub created_at: u64,
    /// The bond: its output's value is the stake. Its key signs `bond_message(coordinator,
    /// validator, txid, vout)`.
    pub bond: Bond,
}

impl ValidatorRegistration {
    /// Object version.
    pub const VERSION: u8 = 1;
}

impl Encode for ValidatorRegistration {
    fn encode(&self, w: &mut Writer) {
        w.u8(Self::VERSION);
        self.network.encode(w);
        self.coordinator.encode(w);
        self.validator.encode(w);
        w.bytes_u8(self.payout_address.as_bytes()).u64(self.created_at);
        w.raw(&self.bond.txid.0).u32(self.bond.vout);
        self.bond.key.encode(w);
        w.raw(&self.bond.signature.0);
    }
}

impl Decode for ValidatorRegistration {
    const NAME: &'static str = "validator registration";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_version(r, Self::NAME, Self::VERSION)?;
        let network = Network::decode(r)?;
        let coordinator = PubKey::decode(r, "coordinator")?;
        let validator = PubKey::decode(r, "validator")?;
        let addr = r.bytes_u8("payout_address", MAX_ADDRESS_LEN)?;
        let payout_address = crate::work::payout_address(addr, network)?;
        let created_at = r.u64("created_at")?;
        let bond = Bond {
            txid: Hash32(r.array("bond")?),
            vout: r.u32("bond")?,
            key: PubKey::decode(r, "bond")?,
            signature: crate::keys::Signature(r.array("bond")?),
        };
        Ok(ValidatorRegistration { network, coordinator, validator, payout_address, created_at, bond })
    }
}

impl Object for ValidatorRegistration {
    const TAG: Tag = Tag::ValidatorRegistration;
}

impl Signer for ValidatorRegistration {
    fn signer(&self) -> &PubKey {
        &self.validator
    }
}

/// The commitment value of a sheet: `tagged_hash("cairn/score-commitment", network ‖
/// coordinator ‖ class ‖ epoch ‖ validator ‖ scores ‖ salt)`, the scores encoded as in the
/// reveal (at most `MAX_WORKERS` of them, as a reveal that decodes holds). Binding the
/// validator's key means a copied commitment cannot be opened by the copier, and the epoch
/// means last epoch's reveal opens nothing now.
pub fn score_commitment_value(
    network: Network,
    coordinator: &PubKey,
    class: &Hash32,
    epoch: u32,
    validator: &PubKey,
    scores: &[(PubKey, u32)],
    salt: &[u8; 32],
) -> Hash32 {
    let mut w = Writer::new();
    encode_scores(&mut w, scores);
    let mut h = TaggedHasher::new(Tag::ScoreCommitment);
    h.update(&[network.code()])
        .update(coordinator.as_bytes())
        .update(&class.0)
        .update(&epoch.to_be_bytes())
        .update(validator.as_bytes())
        .update(&w.into_bytes())
        .update(salt);
    h.finish()
}

/// Writes a sheet's scores: `u16` count, then (key, `u32` score) each.
pub(crate) fn encode_scores(w: &mut Writer, scores: &[(PubKey, u32)]) {
    // A reveal holds at most MAX_WORKERS; the count and the entries written always agree.
    let n = u16::try_from(scores.len()).unwrap_or(u16::MAX);
    w.u16(n);
    for (k, s) in scores.iter().take(usize::from(n)) {
        k.encode(w);
        w.u32(*s);
    }
}

/// A validator's commitment to its scores of a class's workers for an epoch, made while the
/// epoch is open and before any sheet of it is revealed. Signed by the validator.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScoreCommit {
    /// Network.
    pub network: Network,
    /// The coordinator whose class is scored.
    pub coordinator: PubKey,
    /// The class id.
    pub class: Hash32,
    /// The epoch whose work is scored.
    pub epoch: u32,
    /// The validator.
    pub validator: PubKey,
    /// `score_commitment_value(network, coordinator, class, epoch, validator, scores, salt)`.
    pub commitment: Hash32,
}

impl ScoreCommit {
    /// Object version.
    pub const VERSION: u8 = 1;
}

impl Encode for ScoreCommit {
    fn encode(&self, w: &mut Writer) {
        w.u8(Self::VERSION);
        self.network.encode(w);
        self.coordinator.encode(w);
        w.raw(&self.class.0).u32(self.epoch);
        self.validator.encode(w);
        w.raw(&self.commitment.0);
    }
}

impl Decode for ScoreCommit {
    const NAME: &'static str = "score commit";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_version(r, Self::NAME, Self::VERSION)?;
        Ok(ScoreCommit {
            network: Network::decode(r)?,
            coordinator: PubKey::decode(r, "coordinator")?,
            class: Hash32(r.array("class")?),
            epoch: r.u32("epoch")?,
            validator: PubKey::decode(r, "validator")?,
            commitment: Hash32(r.array("commitment")?),
        })
    }
}

impl Object for ScoreCommit {
    const TAG: Tag = Tag::ScoreCommit;
}

impl Signer for ScoreCommit {
    fn signer(&self) -> &PubKey {
        &self.validator
    }
}

/// A validator's scores of a class's workers for an epoch, with the salt that opens its
/// commitment. Signed by the validator.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScoreReveal {
    /// Network.
    pub network: Network,
    /// The coordinator whose class is scored.
    pub coordinator: PubKey,
    /// The class id.
    pub class: Hash32,
    /// The epoch whose work is scored.
    pub epoch: u32,
    /// The validator.
    pub validator: PubKey,
    /// Its score of each worker (parts per million), by strictly ascending worker key, at
    /// most `MAX_WORKERS`, never of itself.
    pub scores: Vec<(PubKey, u32)>,
    /// The salt of the commitment.
    #[serde(with = "crate::work::salt_hex")]
    pub salt: [u8; 32],
}

impl ScoreReveal {
    /// Object version.
    pub const VERSION: u8 = 1;

    /// True when this reveal opens `c`: same network, coordinator, class, epoch and
    /// validator, and the committed value.
    pub fn opens(&self, c: &ScoreCommit) -> bool {
        self.network == c.network
            && self.coordinator == c.coordinator
            && self.class == c.class
            && self.epoch == c.epoch
            && self.validator == c.validator
            && score_commitment_value(
                self.network,
                &self.coordinator,
                &self.class,
                self.epoch,
                &self.validator,
                &self.scores,
                &self.salt,
            ) == c.commitment
    }
}

impl Encode for ScoreReveal {
    fn encode(&self, w: &mut Writer) {
        w.u8(Self::VERSION);
        self.network.encode(w);
        self.coordinator.encode(w);
        w.raw(&self.class.0).u32(self.epoch);
        self.validator.encode(w);
        encode_scores(w, &self.scores);
        w.raw(&self.salt);
    }
}

impl Decode for ScoreReveal {
    const NAME: &'static str = "score reveal";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_version(r, Self::NAME, Self::VERSION)?;
        let network = Network::decode(r)?;
        let coordinator = PubKey::decode(r, "coordinator")?;
        let class = Hash32(r.array("class")?);
        let epoch = r.u32("epoch")?;
        let validator = PubKey::decode(r, "validator")?;
        let n = usize::from(r.u16("scores")?);
        let count = r.count("scores", n, MAX_WORKERS, 36)?;
        let mut scores: Vec<(PubKey, u32)> = Vec::with_capacity(count);
        for _ in 0..count {
            let worker = PubKey::decode(r, "scores")?;
            let score = r.u32("scores")?;
            if score > SCORE_SCALE {
                return Err(DecodeError::InvalidValue { field: "scores", reason: "a score above 1000000" });
            }
            if scores.last().is_some_and(|(k, _)| k.as_bytes() >= worker.as_bytes()) {
                return Err(DecodeError::InvalidValue {
                    field: "scores",
                    reason: "workers not in strictly ascending order",
                });
            }
            if worker == validator {
                return Err(DecodeError::InvalidValue {
                    field: "scores",
                    reason: "a validator scoring itself",
                });
            }
            scores.push((worker, score));
        }
        let salt = r.array("salt")?;
        Ok(ScoreReveal { network, coordinator, class, epoch, validator, scores, salt })
    }
}

impl Object for ScoreReveal {
    const TAG: Tag = Tag::ScoreReveal;
}

impl Signer for ScoreReveal {
    fn signer(&self) -> &PubKey {
        &self.validator
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    fn key(n: u8) -> PubKey {
        SigningKey::from_secret_bytes([n; 32]).unwrap().public()
    }

    fn reveal() -> ScoreReveal {
        let mut scores = vec![(key(2), 10), (key(3), 1_000_000), (key(4), 0)];
        scores.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        ScoreReveal {
            network: Network::Regtest,
            coordinator: key(1),
            class: Hash32([7; 32]),
            epoch: 5,
            validator: key(9),
            scores,
            salt: [3; 32],
        }
    }

    fn commit_of(r: &ScoreReveal) -> ScoreCommit {
        ScoreCommit {
            network: r.network,
            coordinator: r.coordinator,
            class: r.class,
            epoch: r.epoch,
            validator: r.validator,
            commitment: score_commitment_value(
                r.network,
                &r.coordinator,
                &r.class,
                r.epoch,
                &r.validator,
                &r.scores,
                &r.salt,
            ),
        }
    }

    #[test]
    fn a_reveal_opens_its_commitment_alone() {
        let r = reveal();
        let c = commit_of(&r);
        assert!(r.opens(&c));
        assert_eq!(ScoreReveal::from_bytes(&r.to_bytes()).unwrap(), r);
        assert_eq!(ScoreCommit::from_bytes(&c.to_bytes()).unwrap(), c);
        // Another validator copying the commitment cannot open it with the same scores.
        let copier = ScoreReveal { validator: key(10), ..r.clone() };
        assert!(!copier.opens(&ScoreCommit { validator: key(10), ..c.clone() }));
        // Changed scores, another epoch or salt: no.
        let mut changed = r.clone();
        changed.scores[0].1 += 1;
        assert!(!changed.opens(&c));
        assert!(!ScoreReveal { epoch: 6, ..r.clone() }.opens(&ScoreCommit { epoch: 6, ..c.clone() }));
        assert!(!ScoreReveal { salt: [4; 32], ..r }.opens(&c));
    }

    #[test]
    fn bad_sheets_do_not_decode() {
        let mut r = reveal();
        r.scores.swap(0, 1);
        assert!(ScoreReveal::from_bytes(&r.to_bytes()).is_err());
        let mut r = reveal();
        r.scores[0].1 = SCORE_SCALE + 1;
        assert!(ScoreReveal::from_bytes(&r.to_bytes()).is_err());
        let mut r = reveal();
        r.validator = r.scores[1].0;
        assert!(ScoreReveal::from_bytes(&r.to_bytes()).is_err());
    }
}
