//! Object ids and the signed envelope (SPEC.md §4.2): every protocol object's id is the
//! tagged hash of its canonical encoding, and a signed object is its body followed by a
//! BIP340 signature over that id by the key the body names.
//!
//! Owns `Object`, `Signer` and `Signed<T>`. Must never let an id depend on a signature
//! (ids are over the unsigned body, so a re-signed object keeps its id).

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::{tagged_hash, Hash32, Tag};
use crate::keys::{verify, PubKey, Signature, SigningKey};

/// A protocol object with an id in its own hash domain.
pub trait Object: Encode + Decode {
    /// The domain of its id.
    const TAG: Tag;

    /// `tagged_hash(TAG, canonical encoding)`.
    fn id(&self) -> Hash32 {
        crate::codec::with_encoding(self, |b| tagged_hash(Self::TAG, b))
    }
}

/// An object whose body names the key that must sign it.
pub trait Signer {
    /// The key whose signature the object needs.
    fn signer(&self) -> &PubKey;
}

/// A body and the signature of its signer over the body's id.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Signed<T> {
    /// The signed object.
    #[serde(flatten)]
    pub body: T,
    /// BIP340 signature by `body.signer()` over `body.id()`.
    pub signature: Signature,
}

impl<T: Object + Signer> Signed<T> {
    /// Signs `body` with `key`. The key must be the body's signer; otherwise the result will
    /// not verify (checked by `verify`).
    pub fn sign(body: T, key: &SigningKey, aux_rand: &[u8; 32]) -> Self {
        let signature = key.sign(&body.id(), aux_rand);
        Signed { body, signature }
    }

    /// The body's id (the signature does not enter it).
    pub fn id(&self) -> Hash32 {
        self.body.id()
    }

    /// True when the signature is valid for the body's signer.
    pub fn verify(&self) -> bool {
        verify(self.body.signer(), &self.body.id(), &self.signature)
    }
}

impl<T: Encode> Encode for Signed<T> {
    fn encode(&self, w: &mut Writer) {
        self.body.encode(w);
        w.raw(&self.signature.0);
    }
}

impl<T: Decode> Decode for Signed<T> {
    const NAME: &'static str = T::NAME;

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let body = T::decode(r)?;
        let signature = Signature::decode(r)?;
        Ok(Signed { body, signature })
    }
}
