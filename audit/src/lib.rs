//! Auditing Cairn against Bitcoin: the library behind `cairn audit` and `cairn proof`, also
//! used by `cairn worker status` and the follower node.
//!
//! - [`source`]: where the sidechain's bytes come from (a coordinator's or a follower's HTTP
//!   API, or a database), behind one trait. Nothing a source says is believed: signatures,
//!   roots and Bitcoin decide.
//! - [`epoch`]: re-verifying one epoch from its header, its receipts and its ledger snapshot.
//! - [`chain`]: the whole chain: every epoch, the anchor transactions from the genesis
//!   anchor, and equivocation.
//! - [`receipt`]: assembling a receipt's proof from a source and Bitcoin, bundles and `.ots`.
//! - [`render`]: reports as ✓/✗ lines and tables.
//!
//! Owns the auditor's procedure. Must never hold protocol layouts (`cairn-spec`) or Bitcoin
//! rules (`cairn-anchor`'s verifier), and never trust a source where a check can be made.

pub mod chain;
pub mod epoch;
pub mod receipt;
pub mod render;
pub mod source;

pub use source::{AnchorClaim, ApiSource, Source, SourceError};
