//! What workers sign (SPEC.md §5.4–5.6): registration, commitment, reveal.
//!
//! Owns their layouts, the commitment value and the registration proof-of-work rule. Must
//! never judge a result: comparison under a class's rule belongs to the coordinator.

use std::str::FromStr;

use crate::codec::{expect_version, Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::{Hash32, Tag, TaggedHasher};
use crate::keys::PubKey;
use crate::network::Network;
use crate::signed::{Object, Signer};
use crate::task::Payload;

/// Longest payout address string (a bech32m address on mainnet is 62 characters).
pub const MAX_ADDRESS_LEN: usize = 90;

/// A worker's request to work for a coordinator, with its payout address and the nonce of
/// its registration proof-of-work. Signed by the worker.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Registration {
    /// Network; the payout address must belong to it.
    pub network: Network,
    /// The coordinator registered with (the work cannot be reused elsewhere).
    pub coordinator: PubKey,
    /// The worker's protocol key.
    pub worker: PubKey,
    /// Bitcoin address paid for this worker's rewards.
    pub payout_address: String,
    /// Unix seconds when signed.
    pub created_at: u64,
    /// Nonce searched so that the registration id has enough leading zero bits.
    pub pow_nonce: u64,
    /// A bond instead of (or besides) the proof-of-work: a UTXO the worker controls.
    pub bond: Option<Box<Bond>>,
}

/// Proof that the worker controls an unspent Taproot output: a BIP340 signature by the
/// output key over `bond_message`. The coordinator checks with Bitcoin Core that the output
/// exists, is unspent, pays to `key` (P2TR) and holds enough.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bond {
    /// Txid of the output (internal byte order, as in a serialized outpoint).
    pub txid: Hash32,
    /// Output index.
    pub vout: u32,
    /// The P2TR output key (x-only).
    pub key: PubKey,
    /// Signature by `key` over `bond_message(coordinator, worker, txid, vout)`.
    pub signature: crate::keys::Signature,
}

/// What a bond key signs: `tagged_hash(Bond, coordinator ‖ worker ‖ txid ‖ vout u32)`.
/// Binding both keys means a bond proof works for one worker at one coordinator only.
pub fn bond_message(coordinator: &PubKey, worker: &PubKey, txid: &Hash32, vout: u32) -> Hash32 {
    let mut h = TaggedHasher::new(Tag::Bond);
    h.update(coordinator.as_bytes()).update(worker.as_bytes()).update(&txid.0).update(&vout.to_be_bytes());
    h.finish()
}

impl Bond {
    /// True when the signature is valid for this coordinator and worker.
    pub fn verify(&self, coordinator: &PubKey, worker: &PubKey) -> bool {
        crate::keys::verify(
            &self.key,
            &bond_message(coordinator, worker, &self.txid, self.vout),
            &self.signature,
        )
    }
}

impl Registration {
    /// Object version.
    pub const VERSION: u8 = 1;

    /// Leading zero bits of the id: the work this registration carries.
    pub fn work_bits(&self) -> u32 {
        self.id().leading_zero_bits()
    }

    /// Searches `pow_nonce` from its current value for `difficulty` leading zero bits, at
    /// most `max_tries` times; returns whether it succeeded.
    pub fn solve_pow(&mut self, difficulty: u32, max_tries: u64) -> bool {
        for _ in 0..max_tries {
            if self.work_bits() >= difficulty {
                return true;
            }
            self.pow_nonce = self.pow_nonce.wrapping_add(1);
        }
        self.work_bits() >= difficulty
    }
}

impl Encode for Registration {
    fn encode(&self, w: &mut Writer) {
        w.u8(Self::VERSION);
        self.network.encode(w);
        self.coordinator.encode(w);
        self.worker.encode(w);
        w.bytes_u8(self.payout_address.as_bytes()).u64(self.created_at).u64(self.pow_nonce);
        match &self.bond {
            None => {
                w.u8(0);
            }
            Some(b) => {
                w.u8(1).raw(&b.txid.0).u32(b.vout);
                b.key.encode(w);
                w.raw(&b.signature.0);
            }
        }
    }
}

impl Decode for Registration {
    const NAME: &'static str = "registration";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_version(r, Self::NAME, Self::VERSION)?;
        let network = Network::decode(r)?;
        let coordinator = PubKey::decode(r, "coordinator")?;
        let worker = PubKey::decode(r, "worker")?;
        let addr = r.bytes_u8("payout_address", MAX_ADDRESS_LEN)?;
        let payout_address = payout_address(addr, network)?;
        let created_at = r.u64("created_at")?;
        let pow_nonce = r.u64("pow_nonce")?;
        let bond = match r.u8("bond")? {
            0 => None,
            1 => Some(Box::new(Bond {
                txid: Hash32(r.array("bond")?),
                vout: r.u32("bond")?,
                key: PubKey::decode(r, "bond")?,
                signature: crate::keys::Signature(r.array("bond")?),
            })),
            tag => return Err(DecodeError::InvalidTag { field: "bond", tag }),
        };
        Ok(Registration { network, coordinator, worker, payout_address, created_at, pow_nonce, bond })
    }
}

/// A payout address as decoded: ASCII naming a Bitcoin address of `network`.
pub(crate) fn payout_address(bytes: &[u8], network: Network) -> Result<String, DecodeError> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|s| bitcoin::Address::from_str(s).is_ok_and(|a| a.is_valid_for_network(network.to_bitcoin())))
        .map(str::to_owned)
        .ok_or(DecodeError::InvalidValue {
            field: "payout_address",
            reason: "not a Bitcoin address of this network",
        })
}

impl Object for Registration {
    const TAG: Tag = Tag::Registration;
}

impl Signer for Registration {
    fn signer(&self) -> &PubKey {
        &self.worker
    }
}

/// The commitment value: `tagged_hash(Commitment, task ‖ worker ‖ result_hash ‖ salt)`.
/// Binding the worker's key means a copied commitment cannot be opened by the copier.
pub fn commitment_value(task: &Hash32, worker: &PubKey, result_hash: &Hash32, salt: &[u8; 32]) -> Hash32 {
    let mut h = TaggedHasher::new(Tag::Commitment);
    h.update(&task.0).update(worker.as_bytes()).update(&result_hash.0).update(salt);
    h.finish()
}

/// A worker's commitment to a result before any result is revealed. Signed by the worker.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Commitment {
    /// Task id.
    pub task: Hash32,
    /// Worker's key.
    pub worker: PubKey,
    /// `commitment_value(task, worker, result_hash, salt)`.
    pub commitment: Hash32,
}

impl Commitment {
    /// Object version.
    pub const VERSION: u8 = 1;
}

impl Encode for Commitment {
    fn encode(&self, w: &mut Writer) {
        w.u8(Self::VERSION).raw(&self.task.0);
        self.worker.encode(w);
        w.raw(&self.commitment.0);
    }
}

impl Decode for Commitment {
    const NAME: &'static str = "commitment";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_version(r, Self::NAME, Self::VERSION)?;
        let task = Hash32(r.array("task")?);
        let worker = PubKey::decode(r, "worker")?;
        let commitment = Hash32(r.array("commitment")?);
        Ok(Commitment { task, worker, commitment })
    }
}

impl Object for Commitment {
    const TAG: Tag = Tag::CommitMessage;
}

impl Signer for Commitment {
    fn signer(&self) -> &PubKey {
        &self.worker
    }
}

/// A worker's result and the salt that opens its commitment. Signed by the worker.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reveal {
    /// Task id.
    pub task: Hash32,
    /// Worker's key.
    pub worker: PubKey,
    /// The canonical result bytes, inline or as a blob.
    pub result: Payload,
    /// The salt of the commitment.
    #[serde(with = "salt_hex")]
    pub salt: [u8; 32],
}

impl Reveal {
    /// Object version.
    pub const VERSION: u8 = 1;

    /// True when this reveal opens `c` (same task, same worker, matching value).
    pub fn opens(&self, c: &Commitment) -> bool {
        self.task == c.task
            && self.worker == c.worker
            && commitment_value(&self.task, &self.worker, &self.result.content_hash(), &self.salt)
                == c.commitment
    }
}

impl Encode for Reveal {
    fn encode(&self, w: &mut Writer) {
        w.u8(Self::VERSION).raw(&self.task.0);
        self.worker.encode(w);
        self.result.encode(w);
        w.raw(&self.salt);
    }
}

impl Decode for Reveal {
    const NAME: &'static str = "reveal";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_version(r, Self::NAME, Self::VERSION)?;
        let task = Hash32(r.array("task")?);
        let worker = PubKey::decode(r, "worker")?;
        let result = Payload::decode(r, "result")?;
        let salt = r.array("salt")?;
        Ok(Reveal { task, worker, result, salt })
    }
}

impl Object for Reveal {
    const TAG: Tag = Tag::Reveal;
}

impl Signer for Reveal {
    fn signer(&self) -> &PubKey {
        &self.worker
    }
}

pub(crate) mod salt_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&*s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}
