//! Network settings: addresses, bootstrap peers, limits and timings.
//!
//! Owns the defaults an operator of a public network would expect. Must never hold secrets.

use std::time::Duration;

use cairn_spec::Network;

/// Settings of one node's network layer.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Bitcoin network of the chain; nodes of different networks never exchange messages.
    pub network: Network,
    /// Multiaddresses to listen on (e.g. `/ip4/0.0.0.0/tcp/7070`).
    pub listen: Vec<String>,
    /// Addresses to advertise to peers (identify and Kademlia), when behind NAT.
    pub external: Vec<String>,
    /// Peers dialled at start (`/ip4/…/tcp/…/p2p/<peer id>` or without `/p2p`).
    pub bootstrap: Vec<String>,
    /// Most established connections in total.
    pub max_connections: u32,
    /// Most established connections per peer.
    pub max_connections_per_peer: u32,
    /// Most pending (handshaking) connections each way.
    pub max_pending: u32,
    /// How long an outbound request may take.
    pub request_timeout: Duration,
    /// Inbound requests each peer may make per second (token bucket refill).
    pub requests_per_second: u32,
    /// Burst of inbound requests a peer may make.
    pub request_burst: u32,
    /// Gossipsub heartbeat.
    pub heartbeat: Duration,
    /// Bound of the command and event channels.
    pub channel_capacity: usize,
    /// Connections idle this long are closed.
    pub idle_timeout: Duration,
    /// Discover peers on the local network with mDNS (LAN devnets; off by default).
    pub mdns: bool,
    /// The signers whose gossip this node takes in (`None`: anyone's). Gossip signed by
    /// anyone else is ignored (neither delivered nor forwarded, and not penalised) before its
    /// BIP340 signature is checked: a flood of self-signed objects costs a node that names
    /// the coordinators it follows a decode and a lookup each, and no slot in the event
    /// channel its requests share (SPEC.md §11.3).
    pub gossip_signers: Option<Vec<cairn_spec::PubKey>>,
    /// Strikes after which a peer is disconnected: a malformed request frame is one, and so is
    /// each request refused beyond a second bucket of refusals (a peer asking at more than
    /// twice the rate). Strikes wear off one per second.
    pub max_strikes: u32,
    /// Whether the node takes part in Kademlia discovery (answers and asks `FIND_NODE`, and
    /// dials the peers it learns of). Off, it talks only to the peers it dials or that dial
    /// it: a node that needs no one but its bootstrap peers spends nothing on the DHT.
    pub discovery: bool,
}

impl NetworkConfig {
    /// Defaults for `network`, listening on an OS-chosen port of 127.0.0.1.
    pub fn new(network: Network) -> Self {
        NetworkConfig {
            network,
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            external: Vec::new(),
            bootstrap: Vec::new(),
            max_connections: 128,
            max_connections_per_peer: 2,
            max_pending: 32,
            request_timeout: Duration::from_secs(10),
            requests_per_second: 50,
            request_burst: 100,
            heartbeat: Duration::from_millis(700),
            channel_capacity: 1024,
            idle_timeout: Duration::from_secs(120),
            mdns: false,
            gossip_signers: None,
            max_strikes: 20,
            discovery: true,
        }
    }
}
