//! The Bitcoin network a Cairn chain lives on (SPEC.md §3.2).
//!
//! Owns the one-byte network code and its mapping to the `bitcoin` crate's networks. Must
//! never accept an unknown code: regtest and mainnet objects must not be confusable.

use crate::codec::{DecodeError, Reader, Writer};

/// A Bitcoin network. The code is the canonical one-byte encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Bitcoin mainnet (code 0).
    Mainnet,
    /// testnet4 (code 1).
    Testnet4,
    /// The default signet (code 2).
    Signet,
    /// regtest (code 3).
    Regtest,
}

impl Network {
    /// All networks in code order.
    pub const ALL: [Network; 4] = [Network::Mainnet, Network::Testnet4, Network::Signet, Network::Regtest];

    /// The one-byte code.
    pub const fn code(self) -> u8 {
        match self {
            Network::Mainnet => 0,
            Network::Testnet4 => 1,
            Network::Signet => 2,
            Network::Regtest => 3,
        }
    }

    /// From the one-byte code.
    pub const fn from_code(c: u8) -> Option<Self> {
        match c {
            0 => Some(Network::Mainnet),
            1 => Some(Network::Testnet4),
            2 => Some(Network::Signet),
            3 => Some(Network::Regtest),
            _ => None,
        }
    }

    /// Lower-case name, as used in gossip topics and configuration.
    pub const fn name(self) -> &'static str {
        match self {
            Network::Mainnet => "mainnet",
            Network::Testnet4 => "testnet4",
            Network::Signet => "signet",
            Network::Regtest => "regtest",
        }
    }

    /// Parses a lower-case name (`bitcoin` is accepted for mainnet, as Bitcoin Core names it).
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "mainnet" | "main" | "bitcoin" => Some(Network::Mainnet),
            "testnet4" => Some(Network::Testnet4),
            "signet" => Some(Network::Signet),
            "regtest" => Some(Network::Regtest),
            _ => None,
        }
    }

    /// The `bitcoin` crate's network.
    pub const fn to_bitcoin(self) -> bitcoin::Network {
        match self {
            Network::Mainnet => bitcoin::Network::Bitcoin,
            Network::Testnet4 => bitcoin::Network::Testnet4,
            Network::Signet => bitcoin::Network::Signet,
            Network::Regtest => bitcoin::Network::Regtest,
        }
    }

    /// The `chain` value Bitcoin Core reports in `getblockchaininfo`.
    pub const fn core_chain_name(self) -> &'static str {
        match self {
            Network::Mainnet => "main",
            Network::Testnet4 => "testnet4",
            Network::Signet => "signet",
            Network::Regtest => "regtest",
        }
    }

    pub(crate) fn encode(self, w: &mut Writer) {
        w.u8(self.code());
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let c = r.u8("network")?;
        Network::from_code(c).ok_or(DecodeError::InvalidTag { field: "network", tag: c })
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
