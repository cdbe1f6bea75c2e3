//! The Cairn libp2p network (issue: p2p). Owns the swarm, its event loop and the wire
//! protocols; no libp2p type may leave this crate. Not yet built: this crate only reserves
//! its place in the workspace.
