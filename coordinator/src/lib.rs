//! The Cairn node library: the task lifecycle, ledger and epochs (a deterministic machine), its
//! storage (RocksDB with an in-memory twin), the node and follower runtimes, and the HTTP API.
//! The `cairn` binary and its commands (devnet, audit, decode) live in the `cairn` crate (`cli/`).
//!
//! Owns everything the node does between the network, Bitcoin and disk. Must never hold
//! protocol layouts (those are `cairn-spec`'s) nor libp2p types (those stay in `cairn-p2p`).

pub mod anchor_store;
pub mod api;
pub mod audit_source;
pub mod backup;
pub mod config;
pub mod core;
pub mod dashboard;
pub mod follower;
pub use cairn_p2p::keyfile;
pub mod lifecycle;
pub mod lifecycle_store;
pub mod metrics;
pub mod node;
pub mod parallel;
pub mod published;
mod shell;
pub mod store;
pub mod sync;
pub mod trees;
