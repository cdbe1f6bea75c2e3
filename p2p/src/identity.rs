//! Node identity on the network: the libp2p key pair is made from the protocol key's secret
//! (SPEC.md §4), so a peer's id carries its protocol key and noise proves it.
//!
//! Owns the conversions between `SigningKey`/`PubKey` and libp2p identities. Must never
//! accept a protocol key for a peer that did not prove it.

use cairn_spec::{PubKey, SigningKey};
use libp2p::identity::{self, Keypair};
use libp2p::PeerId;

/// The libp2p key pair of a node whose protocol key is `key`.
pub(crate) fn keypair(key: &SigningKey) -> Option<Keypair> {
    let mut secret = key.secret_bytes();
    let sk = identity::secp256k1::SecretKey::try_from_bytes(&mut secret).ok()?;
    Some(Keypair::from(identity::secp256k1::Keypair::from(sk)))
}

/// The protocol key a peer id stands for, when the peer uses a secp256k1 identity (the
/// public key is inlined in such peer ids, and noise authenticated it).
pub(crate) fn protocol_key(peer: &PeerId) -> Option<PubKey> {
    let bytes = peer.to_bytes();
    // Identity multihash: code 0x00, length, then the protobuf-encoded public key.
    let (code, rest) = bytes.split_first()?;
    if *code != 0 {
        return None;
    }
    let (_, encoded) = rest.split_first()?;
    let public = identity::PublicKey::try_decode_protobuf(encoded).ok()?;
    let compressed = public.try_into_secp256k1().ok()?.to_bytes();
    let mut x = [0u8; 32];
    x.copy_from_slice(compressed.get(1..33)?);
    PubKey::from_bytes(x)
}

/// The two peer ids a node with x-only protocol key `key` may have: the libp2p key is the
/// full point, whose parity the x-only key does not carry.
pub(crate) fn peers_of_key(key: &PubKey) -> Vec<PeerId> {
    [0x02u8, 0x03]
        .into_iter()
        .filter_map(|parity| {
            let mut compressed = [0u8; 33];
            compressed[0] = parity;
            compressed[1..].copy_from_slice(key.as_bytes());
            let pk = identity::secp256k1::PublicKey::try_from_bytes(&compressed).ok()?;
            Some(identity::PublicKey::from(pk).to_peer_id())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_carries_the_protocol_key() {
        let key = SigningKey::from_secret_bytes([9; 32]).unwrap();
        let kp = keypair(&key).unwrap();
        assert_eq!(protocol_key(&kp.public().to_peer_id()), Some(key.public()));
        let other = Keypair::generate_ed25519();
        assert_eq!(protocol_key(&other.public().to_peer_id()), None);
    }

    /// Whatever the parity of a key's point, one of the two candidate ids is the peer's.
    #[test]
    fn one_of_the_two_candidate_ids_of_a_key_is_its_peer_id() {
        for i in 1..=16u8 {
            let key = SigningKey::from_secret_bytes([i; 32]).unwrap();
            let id = keypair(&key).unwrap().public().to_peer_id();
            let candidates = peers_of_key(&key.public());
            assert_eq!(candidates.len(), 2);
            assert!(candidates.contains(&id), "key {i}");
            assert!(candidates.iter().all(|p| protocol_key(p) == Some(key.public())));
        }
    }
}
