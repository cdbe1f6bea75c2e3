//! The anchor binding (SPEC.md §7.1): the Bitcoin key and the output a chain's anchors grow
//! from, committed in every epoch header, so that only the holder of that key can anchor
//! the chain and its anchors form one chain of spends Bitcoin keeps from forking.
//!
//! Owns the binding's codec and the rules an anchor transaction must meet under it (input 0
//! spends the genesis output or the previous anchor's output 0; output 0 pays the key).
//! Must never look anything up: whoever checks a transaction brings it.

use bitcoin::{OutPoint, ScriptBuf, Transaction, Txid};

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::Hash32;
use crate::keys::PubKey;

/// Where a chain's anchors live in Bitcoin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AnchorBinding {
    /// A chain not anchored to Bitcoin (a node without Bitcoin).
    None,
    /// Anchored by `key`: the first anchor spends `genesis`, each later one the previous
    /// anchor's output 0, and every anchor's output 0 pays `key` (BIP86 key-path P2TR).
    Key {
        /// The anchor key (x-only).
        key: PubKey,
        /// The genesis output's transaction, in Bitcoin's internal byte order.
        genesis_txid: Hash32,
        /// The genesis output's index.
        genesis_vout: u32,
    },
}

impl AnchorBinding {
    /// The genesis outpoint, when bound.
    pub fn genesis(&self) -> Option<OutPoint> {
        match self {
            AnchorBinding::None => None,
            AnchorBinding::Key { genesis_txid, genesis_vout, .. } => {
                Some(OutPoint { txid: txid_of(genesis_txid), vout: *genesis_vout })
            }
        }
    }

    /// The script every anchor's output 0 pays, when bound.
    pub fn chain_script(&self) -> Option<ScriptBuf> {
        match self {
            AnchorBinding::None => None,
            AnchorBinding::Key { key, .. } => Some(key_script(key)),
        }
    }

    /// Why `tx` is not the anchor that spends `prev` under this binding (`prev`: the
    /// previous anchor's txid, `None` for the first anchor, which spends the genesis output).
    pub fn check_link(&self, tx: &Transaction, prev: Option<Txid>) -> Result<(), LinkError> {
        self.links().ok_or(LinkError::Unbound)?.check(tx, prev)
    }

    /// The link rule of this binding, with the key's script derived once (a Taproot tweak),
    /// for checking many links; `None` when unbound.
    pub fn links(&self) -> Option<Links> {
        Some(Links { genesis: self.genesis()?, script: self.chain_script()? })
    }
}

/// The link rule of a key binding: where the chain starts and what every output 0 pays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Links {
    genesis: OutPoint,
    script: ScriptBuf,
}

impl Links {
    /// Why `tx` is not the anchor that spends `prev` (see [`AnchorBinding::check_link`]).
    pub fn check(&self, tx: &Transaction, prev: Option<Txid>) -> Result<(), LinkError> {
        let expected = prev.map_or(self.genesis, |txid| OutPoint { txid, vout: 0 });
        match tx.input.first().map(|i| i.previous_output) {
            Some(op) if op == expected => {}
            found => return Err(LinkError::Spends { expected, found }),
        }
        if tx.output.first().map(|o| &o.script_pubkey) != Some(&self.script) {
            return Err(LinkError::ChainOutput);
        }
        Ok(())
    }
}

/// The P2TR key-path script of `key` (BIP86: no script tree), as anchors pay it.
pub fn key_script(key: &PubKey) -> ScriptBuf {
    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    ScriptBuf::new_p2tr(&secp, key.x_only(), None)
}

fn txid_of(h: &Hash32) -> Txid {
    use bitcoin::hashes::Hash as _;
    Txid::from_byte_array(h.0)
}

/// How a transaction fails to continue a bound anchor chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The chain names no binding.
    #[error("the chain names no anchor key")]
    Unbound,
    /// Input 0 spends something else.
    #[error("input 0 spends {found:?}, not the chain output {expected}")]
    Spends {
        /// What it must spend.
        expected: OutPoint,
        /// What it spends.
        found: Option<OutPoint>,
    },
    /// Output 0 does not pay the anchor key.
    #[error("output 0 does not pay the anchor key")]
    ChainOutput,
}

impl Encode for AnchorBinding {
    fn encode(&self, w: &mut Writer) {
        match self {
            AnchorBinding::None => {
                w.u8(0);
            }
            AnchorBinding::Key { key, genesis_txid, genesis_vout } => {
                w.u8(1);
                key.encode(w);
                w.raw(&genesis_txid.0).u32(*genesis_vout);
            }
        }
    }
}

impl Decode for AnchorBinding {
    const NAME: &'static str = "anchor binding";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("anchor")? {
            0 => Ok(AnchorBinding::None),
            1 => Ok(AnchorBinding::Key {
                key: PubKey::decode(r, "anchor_key")?,
                genesis_txid: Hash32(r.array("genesis_txid")?),
                genesis_vout: r.u32("genesis_vout")?,
            }),
            tag => Err(DecodeError::InvalidTag { field: "anchor", tag }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::keys::SigningKey;
    use bitcoin::hashes::Hash as _;
    use bitcoin::{absolute::LockTime, transaction::Version, Amount, TxIn, TxOut};

    fn tx(spends: OutPoint, pays: ScriptBuf) -> Transaction {
        Transaction {
            version: Version(3),
            lock_time: LockTime::ZERO,
            input: vec![TxIn { previous_output: spends, ..Default::default() }],
            output: vec![TxOut { value: Amount::from_sat(1_000), script_pubkey: pays }],
        }
    }

    #[test]
    fn links_spend_the_chain_output_and_pay_the_key() {
        let key = SigningKey::from_secret_bytes([1; 32]).unwrap().public();
        let other = SigningKey::from_secret_bytes([2; 32]).unwrap().public();
        let b = AnchorBinding::Key { key, genesis_txid: Hash32([7; 32]), genesis_vout: 3 };
        let g = b.genesis().unwrap();
        assert_eq!(g.vout, 3);
        let first = tx(g, key_script(&key));
        assert_eq!(b.check_link(&first, None), Ok(()));
        let second = tx(OutPoint { txid: first.compute_txid(), vout: 0 }, key_script(&key));
        assert_eq!(b.check_link(&second, Some(first.compute_txid())), Ok(()));
        // A copy of the payload from another output, or paying another key, is no link.
        let squat = tx(OutPoint { txid: Txid::from_byte_array([9; 32]), vout: 0 }, key_script(&key));
        assert!(matches!(b.check_link(&squat, None), Err(LinkError::Spends { .. })));
        assert_eq!(b.check_link(&tx(g, key_script(&other)), None), Err(LinkError::ChainOutput));
        assert_eq!(AnchorBinding::None.check_link(&first, None), Err(LinkError::Unbound));
        // Codec round trip; an unknown kind is refused.
        for x in [AnchorBinding::None, b] {
            let mut w = Writer::new();
            x.encode(&mut w);
            let bytes = w.into_bytes();
            assert_eq!(AnchorBinding::decode(&mut Reader::new(&bytes)).unwrap(), x);
        }
        assert!(AnchorBinding::decode(&mut Reader::new(&[2])).is_err());
    }
}
