//! Bitcoin for Cairn: the chain-backend trait and its Bitcoin Core implementation, the
//! anchor transaction builder and signer, the anchor state machine with its persistence
//! seam and driver, payouts, and when anchored work settles. The auditor's verifier, which
//! asks a backend here for every Bitcoin fact, is `cairn-audit`'s.
//!
//! Owns everything that touches Bitcoin. Must never hold sidechain logic (tasks, receipts,
//! the ledger): it is told which epoch header to commit and reports what Bitcoin did.

pub mod backend;
pub mod descriptor;
pub mod driver;
pub mod machine;
pub mod regtest;
pub mod rpc;
pub mod scripted;
pub mod settle;
pub mod store;
pub mod tx;

pub use backend::{
    BroadcastError, ChainBackend, ChainError, ChainInfo, OutputScan, ScannedOutput, UtxoInfo,
    EMBEDDED_CHAIN_WARNING,
};
pub use driver::{AnchorDriver, DriverError, Start};
pub use machine::{
    AnchorConfig, AnchorMachine, AnchorRecord, AnchorStatus, EpochAnchorStatus, Notice, Standing,
};
pub use rpc::{BitcoinCoreRpc, RpcAuth, RpcConfig};
pub use store::{AnchorStore, Changeset, MemoryStore};
pub use tx::{anchor_address, anchor_script, AnchorSigner, KeySigner, Payout};
