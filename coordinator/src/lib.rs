//! The Cairn node: today the key files and object inspection behind the `cairn` binary;
//! the coordinator issue adds storage, the task lifecycle, epochs and the HTTP API here.
//!
//! Owns everything the node does between the network, Bitcoin and disk. Must never hold
//! protocol layouts (those are `cairn-spec`'s) nor libp2p types (those stay in `cairn-p2p`).

pub mod inspect;
pub mod keyfile;
