//! Auditing Cairn against Bitcoin: the library behind `cairn audit` and `cairn proof`, also
//! used by `cairn worker status` and the follower node.
//!
//! - [`source`]: where the sidechain's bytes come from (a coordinator's or a follower's HTTP
//!   API, or a database), behind one trait. Nothing a source says is believed: signatures,
//!   roots and Bitcoin decide.
//! - [`epoch`]: re-verifying one epoch from its header, its receipts and its ledger snapshot.
//! - [`scores`]: re-computing the scored rounds an epoch credits (SPEC.md §13.6).
//! - [`headers`]: Bitcoin's header rules offline (checkpoints, exact retargeting, BIP34),
//!   for proof bundles.
//! - [`chain`]: the whole chain: every epoch, the anchor transactions from the genesis
//!   anchor, and equivocation.
//! - [`draws`]: who was drawn for each slot, recomputed from the seeds and rosters the
//!   headers commit to, and which keys each draw passed over.
//! - [`receipt`]: assembling a receipt's proof from a source and Bitcoin, bundles and `.ots`.
//! - [`render`]: reports as ✓/✗ lines and tables.
//! - [`verify`]: a receipt proof checked step by step against Bitcoin (the pure steps are
//!   `cairn_spec::proof`'s), offline bundles, anchor-chain continuity, header equivocation.
//! - [`web`]: the HTTP(S) client for APIs and downloads (the machine's trust store).
//!
//! Owns the auditor's procedure: every check that turns a claim into a verdict lives here.
//! Must never hold protocol layouts (`cairn-spec`) or talk to Bitcoin other than through
//! `cairn-anchor`'s backend, and never trust a source where a check can be made.

pub mod chain;
pub mod draws;
pub mod epoch;
pub mod headers;
pub mod receipt;
pub mod render;
pub mod scores;
pub mod source;
pub mod verify;
pub mod web;

pub use source::{AnchorClaim, ApiSource, Source, SourceError};
