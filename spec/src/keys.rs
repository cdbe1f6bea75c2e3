//! Identities and signatures (SPEC.md §4): BIP340 x-only secp256k1 keys and Schnorr
//! signatures over an object's id.
//!
//! Owns `PubKey`, `Signature`, `SigningKey` and the one signing/verifying function pair.
//! Must never print or serialize a secret key (its `Debug` is redacted) and never draw
//! randomness itself: the auxiliary randomness of BIP340 is an input.

use std::fmt;
use std::sync::LazyLock;

use bitcoin::secp256k1::{self, schnorr, Keypair, Message, Secp256k1, XOnlyPublicKey};

use crate::codec::{DecodeError, Reader, Writer};
use crate::hash::Hash32;

static SECP: LazyLock<Secp256k1<secp256k1::All>> = LazyLock::new(Secp256k1::new);
/// Signing goes through the newer libsecp256k1 (a faster generator multiplication); the
/// signatures are the same.
static SIGNER: LazyLock<::secp256k1::Secp256k1<::secp256k1::SignOnly>> =
    LazyLock::new(::secp256k1::Secp256k1::signing_only);

/// A BIP340 x-only public key. Equality, order and hashing follow the 32 serialized bytes,
/// which is also the canonical encoding.
#[derive(Clone, Copy)]
pub struct PubKey {
    bytes: [u8; 32],
    key: XOnlyPublicKey,
}

impl PubKey {
    /// Parses 32 bytes; fails when they are not the x coordinate of a curve point.
    pub fn from_bytes(bytes: [u8; 32]) -> Option<Self> {
        XOnlyPublicKey::from_slice(&bytes).ok().map(|key| PubKey { bytes, key })
    }

    /// The 32 serialized bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        crate::serde_hex::to_hex(&self.bytes)
    }

    /// Parses 64 hex characters naming a valid key.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b).ok()?;
        Self::from_bytes(b)
    }

    /// The secp256k1 key, for callers that build Bitcoin scripts from it.
    pub fn x_only(&self) -> XOnlyPublicKey {
        self.key
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.raw(&self.bytes);
    }

    pub(crate) fn decode(r: &mut Reader<'_>, field: &'static str) -> Result<Self, DecodeError> {
        let b = r.array::<32>(field)?;
        PubKey::from_bytes(b).ok_or(DecodeError::InvalidPublicKey { field })
    }
}

impl PartialEq for PubKey {
    fn eq(&self, o: &Self) -> bool {
        self.bytes == o.bytes
    }
}
impl Eq for PubKey {}
impl PartialOrd for PubKey {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for PubKey {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.bytes.cmp(&o.bytes)
    }
}
impl std::hash::Hash for PubKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.bytes.hash(h)
    }
}
impl fmt::Debug for PubKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PubKey({})", self.to_hex())
    }
}
impl fmt::Display for PubKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl serde::Serialize for PubKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::serde_hex::serialize_short(&self.bytes, s)
    }
}
impl<'de> serde::Deserialize<'de> for PubKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        PubKey::from_hex(&s).ok_or_else(|| serde::de::Error::custom("not a valid x-only public key"))
    }
}

/// A 64-byte BIP340 signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        crate::serde_hex::to_hex(&self.0)
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Signature(r.array::<64>("signature")?))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

impl serde::Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::serde_hex::serialize_short(&self.0, s)
    }
}
impl<'de> serde::Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut b = [0u8; 64];
        hex::decode_to_slice(&*s, &mut b).map_err(serde::de::Error::custom)?;
        Ok(Signature(b))
    }
}

/// A secret signing key. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct SigningKey {
    keypair: Keypair,
    /// The same key for the protocol signer.
    signer: ::secp256k1::Keypair,
    public: PubKey,
}

impl SigningKey {
    /// From 32 secret bytes; fails for zero or values not below the curve order.
    pub fn from_secret_bytes(secret: [u8; 32]) -> Option<Self> {
        let keypair = Keypair::from_seckey_slice(&SECP, &secret).ok()?;
        let signer = ::secp256k1::Keypair::from_seckey_byte_array(&*SIGNER, secret).ok()?;
        let (x, _parity) = keypair.x_only_public_key();
        let public = PubKey { bytes: x.serialize(), key: x };
        Some(SigningKey { keypair, signer, public })
    }

    /// The secret bytes, for writing the key file. Handle with care.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.keypair.secret_bytes()
    }

    /// The public key.
    pub fn public(&self) -> PubKey {
        self.public
    }

    /// The secp256k1 keypair, for signing Bitcoin transactions with the same key.
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// BIP340-signs a 32-byte object id. `aux_rand` is the auxiliary randomness of BIP340
    /// (fresh random bytes in production; fixed bytes in test vectors).
    pub fn sign(&self, id: &Hash32, aux_rand: &[u8; 32]) -> Signature {
        Signature(SIGNER.sign_schnorr_with_aux_rand(&id.0, &self.signer, aux_rand).to_byte_array())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public={}, secret=<redacted>)", self.public)
    }
}

/// Verifies a BIP340 signature by `key` over the 32-byte object id.
pub fn verify(key: &PubKey, id: &Hash32, sig: &Signature) -> bool {
    let Ok(sig) = schnorr::Signature::from_slice(&sig.0) else {
        return false;
    };
    let msg = Message::from_digest(id.0);
    SECP.verify_schnorr(&sig, &msg, &key.key).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_reject_other_message() {
        let k = SigningKey::from_secret_bytes([7u8; 32]).unwrap();
        let id = crate::hash::sha256(b"m");
        let sig = k.sign(&id, &[0u8; 32]);
        assert!(verify(&k.public(), &id, &sig));
        assert!(!verify(&k.public(), &crate::hash::sha256(b"n"), &sig));
        let mut bad = sig;
        bad.0[5] ^= 1;
        assert!(!verify(&k.public(), &id, &bad));
    }

    #[test]
    fn secret_never_in_debug() {
        let k = SigningKey::from_secret_bytes([7u8; 32]).unwrap();
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&hex::encode([7u8; 32])));
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn invalid_secrets_refused() {
        assert!(SigningKey::from_secret_bytes([0u8; 32]).is_none());
        assert!(SigningKey::from_secret_bytes([0xffu8; 32]).is_none());
    }
}
