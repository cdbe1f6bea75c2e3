//! The anchor key as an output descriptor (BIP380/BIP386), the form Bitcoin Core's
//! `importdescriptors`, `scantxoutset` and `deriveaddresses` take: `tr(KEY)#checksum`, the
//! BIP86 key-path output every anchor pays its chain output to.
//!
//! Owns the descriptor text and its checksum. Must never write a descriptor anywhere itself
//! (the private one holds the key: the caller decides where it goes).

use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
use bitcoin::{NetworkKind, PrivateKey};
use cairn_spec::{Network, PubKey, SigningKey};

const INPUT_CHARSET: &str =
    "0123456789()[],'/*abcdefgh@:$%{}IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~ijklmnopqrstuvwxyzABCDEFGH`#\"\\ ";
const CHECKSUM_CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const GENERATOR: [u64; 5] = [0xf5dee51989, 0xa9fdca3312, 0x1bab10e32d, 0x3706b1677a, 0x644d626ffd];

fn polymod(symbols: impl Iterator<Item = u64>) -> u64 {
    let mut chk: u64 = 1;
    for value in symbols {
        let top = chk >> 35;
        chk = ((chk & 0x7_ffff_ffff) << 5) ^ value;
        for (i, g) in GENERATOR.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

/// The descriptor checksum of BIP380, or `None` for a character descriptors do not use.
pub fn checksum(desc: &str) -> Option<String> {
    let mut symbols = Vec::with_capacity(desc.len() * 2 + 8);
    let mut groups = Vec::with_capacity(3);
    for c in desc.chars() {
        let v = INPUT_CHARSET.find(c)? as u64;
        symbols.push(v & 31);
        groups.push(v >> 5);
        if groups.len() == 3 {
            symbols.push(groups[0] * 9 + groups[1] * 3 + groups[2]);
            groups.clear();
        }
    }
    match groups.as_slice() {
        [a] => symbols.push(*a),
        [a, b] => symbols.push(a * 3 + b),
        _ => {}
    }
    symbols.extend([0; 8]);
    let c = polymod(symbols.into_iter()) ^ 1;
    Some((0..8).map(|i| char::from(CHECKSUM_CHARSET[((c >> (5 * (7 - i))) & 31) as usize])).collect())
}

fn with_checksum(desc: String) -> String {
    // Every character used below is in the charset.
    let sum = checksum(&desc).unwrap_or_default();
    format!("{desc}#{sum}")
}

/// The watch-only descriptor of the anchor key's outputs: `tr(<x-only key>)#checksum`.
pub fn public_descriptor(key: &PubKey) -> String {
    with_checksum(format!("tr({})", key.to_hex()))
}

/// The descriptor with the private key, in WIF for `network`: Bitcoin Core can then sign for
/// the anchor outputs (and so spend them) once imported.
pub fn private_descriptor(key: &SigningKey, network: Network) -> String {
    let kind = match network {
        Network::Mainnet => NetworkKind::Main,
        Network::Testnet4 | Network::Signet | Network::Regtest => NetworkKind::Test,
    };
    let secret = SecretKey::from_slice(&key.secret_bytes());
    let wif = match secret {
        Ok(sk) => PrivateKey { compressed: true, network: kind, inner: sk }.to_wif(),
        // A SigningKey always holds a valid secret.
        Err(_) => String::new(),
    };
    // Sanity: the key behind the WIF is the one whose x-only form the anchors pay to.
    debug_assert!(secret.is_ok_and(|sk| Keypair::from_secret_key(&Secp256k1::new(), &sk)
        .x_only_public_key()
        .0
        .serialize()
        == *key.public().as_bytes()));
    with_checksum(format!("tr({wif})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_bip380() {
        // BIP380's test vector, and two from Bitcoin Core's descriptor_tests.cpp.
        assert_eq!(checksum("raw(deadbeef)").as_deref(), Some("89f8spxm"));
        assert_eq!(
            checksum("sh(multi(2,[00000000/111'/222]xprvA1RpRA33e1JQ7ifknakTFpgNXPmW2YvmhqLQYMmrj4xJXXWYpDPS3xz7iAxn8L39njGVyuoseXzU6rcxFLJ8HFsTjSyQbLYnMpCqE2VbFWc,xprv9uPDJpEQgRQfDcW7BkF7eTya6RPxXeJCqCJGHuCJ4GiRVLzkTXBAJMu2qaMWPrS7AANYqdq6vcBcBUdJCVVFceUvJFjaPdGZ2y9WACViL4L/0))").as_deref(),
            Some("ggrsrxfy")
        );
        assert_eq!(checksum("raw(deadbeef)\u{e9}"), None);
    }

    #[test]
    fn the_descriptor_names_the_anchor_key() {
        let key = SigningKey::from_secret_bytes([7u8; 32]).unwrap();
        let public = public_descriptor(&key.public());
        assert!(public.starts_with(&format!("tr({})#", key.public().to_hex())), "{public}");
        let private = private_descriptor(&key, Network::Signet);
        assert!(private.starts_with("tr(c") && private.len() == "tr()#".len() + 52 + 8, "{private}");
        assert!(
            private_descriptor(&key, Network::Mainnet).starts_with("tr(K")
                || private_descriptor(&key, Network::Mainnet).starts_with("tr(L")
        );
    }
}
