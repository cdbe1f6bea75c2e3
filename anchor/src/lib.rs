//! Bitcoin for Cairn (issue: anchor): the chain-backend trait, the Bitcoin Core RPC backend,
//! the anchor state machine and the verifier. Not yet built: this crate only reserves its
//! place in the workspace.
