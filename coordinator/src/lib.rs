//! The Cairn node: storage (RocksDB with an in-memory twin), the anchor state's persistence,
//! key files and object inspection behind the `cairn` binary. The coordinator issue adds the
//! task lifecycle, epochs and the HTTP API here.
//!
//! Owns everything the node does between the network, Bitcoin and disk. Must never hold
//! protocol layouts (those are `cairn-spec`'s) nor libp2p types (those stay in `cairn-p2p`).

pub mod anchor_store;
pub mod api;
pub mod api_body;
pub mod audit_cli;
pub mod audit_source;
pub mod config;
pub mod core;
pub mod dashboard;
pub mod devnet;
pub mod follower;
pub mod inspect;
pub use cairn_p2p::keyfile;
pub mod lifecycle;
pub mod lifecycle_store;
pub mod metrics;
pub mod node;
pub mod parallel;
pub mod store;
pub mod sync;
