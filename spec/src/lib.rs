//! The Cairn protocol as a library: objects and their canonical encoding, tagged hashes,
//! Merkle trees and proofs, BIP340 signatures, the anchor payload and receipt proofs.
//!
//! This crate is the shared vocabulary of every other Cairn crate. It owns byte layouts and
//! pure verification. It must never do I/O, read a clock, draw randomness or hold state:
//! time, randomness and chain data are always arguments. `spec/SPEC.md` is the normative
//! text; this crate and `spec/reference.py` are two implementations of it, checked against
//! the same vectors in `spec/vectors/`.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod anchor_payload;
pub mod api;
pub mod binding;
pub mod bundle;
pub mod codec;
pub mod compare;
pub mod consensus;
pub mod draw;
pub mod epoch;
pub mod hash;
pub mod keys;
pub mod ledger;
pub mod merkle;
pub mod network;
pub mod ots;
pub mod probe;
pub mod proof;
pub mod receipt;
pub mod rounds;
pub mod scores;
pub mod serde_hex;
pub mod signed;
pub mod task;
pub mod wire;
pub mod work;

pub use anchor_payload::{AnchorPayload, PayloadError};
pub use binding::AnchorBinding;
pub use bundle::ProofBundle;
pub use codec::{Decode, DecodeError, Encode};
pub use draw::{Beacon, Roster};
pub use epoch::{EpochHeader, SignedEpochHeader};
pub use hash::{content_hash, tagged_hash, Hash32, Tag};
pub use keys::{PubKey, Signature, SigningKey};
pub use ledger::LedgerEntry;
pub use merkle::{MerkleProof, MerkleTree};
pub use network::Network;
pub use probe::{LatencyTerms, Probe, ProbeAnswer, Timing};
pub use proof::{OtsOp, ProofError, ReceiptProof, VerifiedProof};
pub use receipt::{SignedReceipt, Verdict, WorkReceipt};
pub use rounds::{RoundSheet, RoundWorker, ScoredRound};
pub use scores::{ScoreCommit, ScoreReveal, ValidatorRegistration};
pub use signed::{Object, Signed, Signer};
pub use task::{ComparisonRule, ExecutorKind, Objective, Payload, Task, TaskClass};
pub use wire::{
    Claim, ErrorReason, GossipMessage, Request, RequestBody, Response, ResponseBody, TaskAnnouncement, Terms,
    Topic,
};
pub use work::{Bond, Commitment, Registration, Reveal};

/// The protocol version this crate implements (SPEC.md §1).
pub const PROTOCOL_VERSION: u8 = 1;
