//! Building and signing anchor transactions: the chain input (previous anchor's chain
//! output, or the funding UTXO), top-ups, the chain output back to the anchor key, the
//! OP_RETURN payload, and payout outputs; fees from a rate, dust and relay rules checked.
//!
//! Owns the transaction layout (SPEC.md §7: input 0 is the chain input, output 0 the chain
//! output, output 1 the payload, payouts after) and the signer seam. Must never decide *when*
//! to anchor or at what rate: that is the state machine's job.

use std::sync::LazyLock;

use bitcoin::absolute::LockTime;
use bitcoin::key::{TapTweak, UntweakedKeypair};
use bitcoin::secp256k1::{All, Message, Secp256k1};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::transaction::Version;
use bitcoin::{Amount, FeeRate, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Weight, Witness};
use cairn_spec::{AnchorPayload, PubKey, SigningKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;

static SECP: LazyLock<Secp256k1<All>> = LazyLock::new(Secp256k1::new);

/// Value below which the chain output is not kept (P2TR dust is 330 sats; a margin keeps
/// the next anchor payable).
pub const MIN_CHAIN_VALUE: Amount = Amount::from_sat(1_000);

/// Largest anchor, in virtual bytes: the BIP431 (TRUC) limit for a version-3 transaction.
pub const MAX_ANCHOR_VSIZE: u64 = 10_000;

/// The anchor key's output script: a BIP86-style key-path P2TR (no script tree).
pub fn anchor_script(key: &PubKey) -> ScriptBuf {
    ScriptBuf::new_p2tr(&SECP, key.x_only(), None)
}

/// The anchor key's address on `network`.
pub fn anchor_address(key: &PubKey, network: cairn_spec::Network) -> bitcoin::Address {
    bitcoin::Address::p2tr(&SECP, key.x_only(), None, network.to_bitcoin())
}

/// An output paying the anchor key that a transaction may spend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utxo {
    /// Where it is.
    pub outpoint: OutPoint,
    /// Its value.
    pub value: Amount,
}

/// One payout output requested by the coordinator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    /// Coordinator's id for the payout (echoed back when it confirms).
    pub id: u64,
    /// Destination script.
    pub script_pubkey: ScriptBuf,
    /// Amount.
    pub amount: Amount,
}

/// What one anchor transaction should contain.
#[derive(Clone, Debug)]
pub struct AnchorPlan {
    /// The chain input: previous anchor's output 0, or the funding UTXO for the genesis anchor.
    pub chain_input: Utxo,
    /// Top-ups at the anchor address spent alongside.
    pub extra_inputs: Vec<Utxo>,
    /// The epoch header committed.
    pub payload: AnchorPayload,
    /// Payouts carried by this anchor.
    pub payouts: Vec<Payout>,
    /// Fee rate to pay.
    pub fee_rate: FeeRate,
}

/// A built, signed anchor transaction.
#[derive(Clone, Debug)]
pub struct BuiltAnchor {
    /// The signed transaction.
    pub tx: Transaction,
    /// Fee paid.
    pub fee: Amount,
    /// Virtual size.
    pub vsize: u64,
    /// Value of the chain output (output 0).
    pub chain_value: Amount,
}

/// Why an anchor transaction could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The inputs cannot pay the fee, the payouts and a chain output above its minimum.
    #[error("insufficient funds: inputs {available}, need {needed} (fee, payouts and a {MIN_CHAIN_VALUE} chain output)")]
    InsufficientFunds {
        /// Sum of inputs.
        available: Amount,
        /// What was needed.
        needed: Amount,
    },
    /// A payout is below the dust limit of its script.
    #[error("payout {id} of {amount} is below the dust limit {dust} of its script")]
    DustPayout {
        /// Payout id.
        id: u64,
        /// Its amount.
        amount: Amount,
        /// The script's dust limit.
        dust: Amount,
    },
    /// Signing failed (the signer refused or the transaction is malformed).
    #[error("signing failed: {0}")]
    Signing(String),
    /// More than a TRUC transaction may weigh.
    #[error("anchor of {vsize} vB exceeds the {MAX_ANCHOR_VSIZE} vB TRUC limit")]
    TooLarge {
        /// Its virtual size.
        vsize: u64,
    },
}

/// Signs the inputs of an anchor transaction. The seam a threshold (federated) signer will
/// replace: it sees the unsigned transaction and its prevouts, and returns the witnesses.
pub trait AnchorSigner {
    /// The key whose P2TR output the chain lives on.
    fn public_key(&self) -> PubKey;
    /// One witness per input, in order.
    fn sign(
        &self,
        tx: &Transaction,
        prevouts: &[TxOut],
        aux_rand: &[u8; 32],
    ) -> Result<Vec<Witness>, BuildError>;
}

/// A single local key signing key-path P2TR spends (BIP341 with the BIP86 tweak).
pub struct KeySigner {
    key: SigningKey,
}

impl KeySigner {
    /// Wraps a key.
    pub fn new(key: SigningKey) -> Self {
        KeySigner { key }
    }
}

impl std::fmt::Debug for KeySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeySigner({})", self.key.public())
    }
}

impl AnchorSigner for KeySigner {
    fn public_key(&self) -> PubKey {
        self.key.public()
    }

    fn sign(
        &self,
        tx: &Transaction,
        prevouts: &[TxOut],
        aux_rand: &[u8; 32],
    ) -> Result<Vec<Witness>, BuildError> {
        let keypair = UntweakedKeypair::from_secret_key(&SECP, &self.key.keypair().secret_key());
        let tweaked = keypair.tap_tweak(&SECP, None);
        let mut cache = SighashCache::new(tx);
        (0..tx.input.len())
            .map(|i| {
                let sighash = cache
                    .taproot_key_spend_signature_hash(i, &Prevouts::All(prevouts), TapSighashType::Default)
                    .map_err(|e| BuildError::Signing(e.to_string()))?;
                let msg = Message::from(sighash);
                let sig = SECP.sign_schnorr_with_aux_rand(&msg, &tweaked.to_keypair(), aux_rand);
                let mut w = Witness::new();
                w.push(sig.as_ref());
                Ok(w)
            })
            .collect()
    }
}

/// Weight of one key-path P2TR witness: item count, length byte, 64-byte signature.
const KEYSPEND_WITNESS_WEIGHT: u64 = 1 + 1 + 64;

/// The fee a transaction of `weight` pays at `rate`, rounded up to the satoshi.
pub fn fee_for(rate: FeeRate, weight: Weight) -> Amount {
    let vsize = weight.to_wu().div_ceil(4);
    Amount::from_sat(rate.to_sat_per_kwu().saturating_mul(4).saturating_mul(vsize).div_ceil(1000))
}

/// Builds and signs the anchor transaction of `plan`.
pub fn build_anchor(
    plan: &AnchorPlan,
    signer: &dyn AnchorSigner,
    aux_rand: &[u8; 32],
) -> Result<BuiltAnchor, BuildError> {
    let script = anchor_script(&signer.public_key());
    for p in &plan.payouts {
        let dust = p.script_pubkey.minimal_non_dust();
        if p.amount < dust {
            return Err(BuildError::DustPayout { id: p.id, amount: p.amount, dust });
        }
    }
    let inputs: Vec<Utxo> =
        std::iter::once(plan.chain_input).chain(plan.extra_inputs.iter().copied()).collect();
    let available = inputs.iter().map(|u| u.value).fold(Amount::ZERO, |a, b| a + b);
    let payouts_total = plan.payouts.iter().map(|p| p.amount).fold(Amount::ZERO, |a, b| a + b);

    let mut output = vec![
        TxOut { value: Amount::ZERO, script_pubkey: script.clone() },
        TxOut { value: Amount::ZERO, script_pubkey: plan.payload.to_script() },
    ];
    output.extend(
        plan.payouts.iter().map(|p| TxOut { value: p.amount, script_pubkey: p.script_pubkey.clone() }),
    );
    let mut tx = Transaction {
        // TRUC (BIP431): whoever spends an unconfirmed payout output may add one child of
        // at most 1,000 vB, so a payee cannot pin the anchor against replacement.
        version: Version(3),
        lock_time: LockTime::ZERO,
        input: inputs
            .iter()
            .map(|u| TxIn {
                previous_output: u.outpoint,
                script_sig: ScriptBuf::new(),
                // Signals replaceability (BIP125) so a stuck anchor can be fee-bumped.
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            })
            .collect(),
        output,
    };
    // Key-path signatures are always 64 bytes, so the final weight is known before signing.
    let weight = tx.weight() + Weight::from_wu(KEYSPEND_WITNESS_WEIGHT * inputs.len() as u64 + 2);
    if weight.to_vbytes_ceil() > MAX_ANCHOR_VSIZE {
        return Err(BuildError::TooLarge { vsize: weight.to_vbytes_ceil() });
    }
    let fee = fee_for(plan.fee_rate, weight);
    let needed = fee + payouts_total + MIN_CHAIN_VALUE;
    if available < needed {
        return Err(BuildError::InsufficientFunds { available, needed });
    }
    let chain_value = available - fee - payouts_total;
    if let Some(o) = tx.output.first_mut() {
        o.value = chain_value;
    }
    let prevouts: Vec<TxOut> =
        inputs.iter().map(|u| TxOut { value: u.value, script_pubkey: script.clone() }).collect();
    let witnesses = signer.sign(&tx, &prevouts, aux_rand)?;
    for (input, w) in tx.input.iter_mut().zip(witnesses) {
        input.witness = w;
    }
    let vsize = tx.vsize() as u64;
    Ok(BuiltAnchor { tx, fee, vsize, chain_value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash as _;

    fn key() -> SigningKey {
        SigningKey::from_secret_bytes([3; 32]).unwrap()
    }

    fn plan(value: u64, rate: u64) -> AnchorPlan {
        AnchorPlan {
            chain_input: Utxo {
                outpoint: OutPoint { txid: bitcoin::Txid::from_byte_array([1; 32]), vout: 0 },
                value: Amount::from_sat(value),
            },
            extra_inputs: vec![],
            payload: AnchorPayload { height: 3, header_hash: cairn_spec::hash::sha256(b"h") },
            payouts: vec![],
            fee_rate: FeeRate::from_sat_per_vb(rate).unwrap(),
        }
    }

    #[test]
    fn layout_fee_and_signature() {
        let signer = KeySigner::new(key());
        let built = build_anchor(&plan(100_000, 2), &signer, &[0; 32]).unwrap();
        assert_eq!(built.tx.output[0].script_pubkey, anchor_script(&key().public()));
        assert_eq!(built.tx.output[1].script_pubkey.len(), 42);
        // The estimate matches the signed size exactly, so the fee rate is what was asked.
        assert_eq!(built.fee, Amount::from_sat(2 * built.vsize));
        assert_eq!(built.chain_value + built.fee, Amount::from_sat(100_000));
        // The signature verifies under the tweaked output key.
        let prevout =
            TxOut { value: Amount::from_sat(100_000), script_pubkey: anchor_script(&key().public()) };
        let sighash = SighashCache::new(&built.tx)
            .taproot_key_spend_signature_hash(0, &Prevouts::All(&[prevout]), TapSighashType::Default)
            .unwrap();
        let (tweaked, _) = key().public().x_only().tap_tweak(&SECP, None);
        let sig = bitcoin::secp256k1::schnorr::Signature::from_slice(&built.tx.input[0].witness[0]).unwrap();
        assert!(SECP.verify_schnorr(&sig, &Message::from(sighash), &tweaked.to_x_only_public_key()).is_ok());
    }

    #[test]
    fn refuses_dust_and_underfunded() {
        let signer = KeySigner::new(key());
        assert!(matches!(
            build_anchor(&plan(1_100, 5), &signer, &[0; 32]),
            Err(BuildError::InsufficientFunds { .. })
        ));
        let mut p = plan(100_000, 1);
        p.payouts.push(Payout {
            id: 1,
            script_pubkey: anchor_script(&key().public()),
            amount: Amount::from_sat(100),
        });
        assert!(matches!(build_anchor(&p, &signer, &[0; 32]), Err(BuildError::DustPayout { id: 1, .. })));
    }
}
