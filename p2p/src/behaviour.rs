//! The composed libp2p behaviour: connection limits first (so a flood is refused before any
//! protocol sees it), then gossipsub with application validation and peer scoring,
//! request-response, identify, Kademlia and ping.
//!
//! Owns protocol configuration. Must never contain application logic.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use cairn_spec::wire::{request_protocol, Topic, MAX_GOSSIP_BYTES};
use cairn_spec::Network;
use libp2p::gossipsub::{
    self, IdentTopic, MessageAuthenticity, MessageId, PeerScoreParams, PeerScoreThresholds, TopicScoreParams,
    ValidationMode,
};
use libp2p::identity::Keypair;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{connection_limits, identify, kad, mdns, ping, request_response, StreamProtocol};

use crate::codec::CairnCodec;
use crate::config::NetworkConfig;

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) rpc: request_response::Behaviour<CairnCodec>,
    pub(crate) identify: identify::Behaviour,
    /// Kademlia discovery, unless configured off (`NetworkConfig::discovery`).
    pub(crate) kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    pub(crate) ping: ping::Behaviour,
    /// Local-network discovery, only when configured (a LAN devnet).
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
}

/// Gossipsub score thresholds (SPEC.md §11.5).
pub(crate) const GOSSIP_THRESHOLD: f64 = -10.0;
pub(crate) const PUBLISH_THRESHOLD: f64 = -50.0;
pub(crate) const GRAYLIST_THRESHOLD: f64 = -80.0;

pub(crate) fn topic(t: Topic, network: Network) -> IdentTopic {
    IdentTopic::new(t.name(network))
}

/// The identify protocol version: carries the wire version and the network, so peers of
/// another network or wire version are recognised and dropped at once.
pub(crate) fn identify_version(network: Network) -> String {
    format!("/cairn/{}/{}", cairn_spec::wire::WIRE_VERSION, network.name())
}

/// True when a peer's identify `protocolVersion` names Cairn with another wire version or
/// network: such a peer is disconnected. Any other string (another libp2p implementation's
/// default, say) is no reason to drop a peer (SPEC.md §11): the topics and the request
/// protocol carry the network, so what it sends is checked there.
pub(crate) fn announces_another_cairn(theirs: &str, network: Network) -> bool {
    theirs.starts_with("/cairn/") && theirs != identify_version(network)
}

fn score_params(network: Network) -> PeerScoreParams {
    let mut p = PeerScoreParams::default();
    for t in Topic::ALL {
        p.topics.insert(
            topic(t, network).hash(),
            TopicScoreParams {
                topic_weight: 1.0,
                // Time in mesh and first deliveries earn little, so they never hide abuse.
                time_in_mesh_weight: 0.01,
                time_in_mesh_quantum: Duration::from_secs(1),
                time_in_mesh_cap: 10.0,
                first_message_deliveries_weight: 0.1,
                first_message_deliveries_decay: 0.9,
                first_message_deliveries_cap: 10.0,
                // A quiet network delivers nothing; silence must not be punished.
                mesh_message_deliveries_weight: 0.0,
                mesh_failure_penalty_weight: 0.0,
                // Invalid messages: -10 × n², so three put a peer below the graylist.
                invalid_message_deliveries_weight: -10.0,
                invalid_message_deliveries_decay: 0.99,
                ..TopicScoreParams::default()
            },
        );
    }
    // Devnets run many nodes on one host; loopback must not count as a Sybil cluster.
    p.ip_colocation_factor_whitelist.insert(IpAddr::V4(Ipv4Addr::LOCALHOST));
    p.ip_colocation_factor_whitelist.insert(IpAddr::V6(Ipv6Addr::LOCALHOST));
    p
}

fn thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: GOSSIP_THRESHOLD,
        publish_threshold: PUBLISH_THRESHOLD,
        graylist_threshold: GRAYLIST_THRESHOLD,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 20.0,
    }
}

/// Content-addressed message ids: the same bytes on the same topic are the same message,
/// whoever sends them. The topic is hashed in, so a copy sent first on another topic (and
/// rejected or dropped there) never makes the genuine one a duplicate (SPEC.md §11.3).
fn message_id(m: &gossipsub::Message) -> MessageId {
    MessageId::from(cairn_spec::wire::gossip_message_id(m.topic.as_str(), &m.data).0.to_vec())
}

pub(crate) fn build(key: &Keypair, config: &NetworkConfig) -> Result<Behaviour, String> {
    let peer_id = key.public().to_peer_id();
    // Unsigned by libp2p (SPEC.md §11.3): every object carries its author's BIP340 signature,
    // checked in validation; an envelope signature would cost an ECDSA check per copy received.
    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Anonymous)
        .validate_messages()
        .message_id_fn(message_id)
        // Oversize messages (up to twice the bound) still reach validation, so their sender
        // is scored; anything larger is cut off by the transport.
        .max_transmit_size(2 * MAX_GOSSIP_BYTES)
        .heartbeat_interval(config.heartbeat)
        // To the mesh and the preferred peers, not to every subscriber (SPEC.md §11.3): a
        // crowd of idle subscribers would multiply the cost of every publication.
        .flood_publish(false)
        .build()
        .map_err(|e| e.to_string())?;
    let mut gossipsub = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossip_config)?;
    gossipsub.with_peer_score(score_params(config.network), thresholds())?;
    for t in Topic::ALL {
        gossipsub.subscribe(&topic(t, config.network)).map_err(|e| e.to_string())?;
    }
    let protocol =
        StreamProtocol::try_from_owned(request_protocol(config.network)).map_err(|e| e.to_string())?;
    let rpc = request_response::Behaviour::with_codec(
        CairnCodec,
        [(protocol, request_response::ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(config.request_timeout),
    );
    let identify = identify::Behaviour::new(
        identify::Config::new(identify_version(config.network), key.public())
            .with_agent_version(format!("cairn/{}", env!("CARGO_PKG_VERSION"))),
    );
    let kad = config.discovery.then(|| {
        let mut kad = kad::Behaviour::new(peer_id, kad::store::MemoryStore::new(peer_id));
        kad.set_mode(Some(kad::Mode::Server));
        kad
    });
    let limits = connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_established(Some(config.max_connections))
            .with_max_established_per_peer(Some(config.max_connections_per_peer))
            .with_max_pending_incoming(Some(config.max_pending))
            .with_max_pending_outgoing(Some(config.max_pending)),
    );
    let mdns = if config.mdns {
        Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id).map_err(|e| e.to_string())?)
    } else {
        None
    };
    Ok(Behaviour {
        limits,
        gossipsub,
        rpc,
        identify,
        kad: Toggle::from(kad),
        ping: ping::Behaviour::default(),
        mdns: mdns.into(),
    })
}

pub(crate) type Topics = HashMap<gossipsub::TopicHash, Topic>;

pub(crate) fn topics(network: Network) -> Topics {
    Topic::ALL.iter().map(|t| (topic(*t, network).hash(), *t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_peer_announcing_another_cairn_network_is_dropped() {
        let ours = identify_version(Network::Regtest);
        assert!(!announces_another_cairn(&ours, Network::Regtest));
        assert!(announces_another_cairn(&identify_version(Network::Signet), Network::Regtest));
        assert!(announces_another_cairn(&ours.replace("/cairn/", "/cairn/9"), Network::Regtest));
        // js-libp2p's and rust-libp2p's defaults, and nothing at all.
        assert!(!announces_another_cairn("ipfs/0.1.0", Network::Regtest));
        assert!(!announces_another_cairn("/ipfs/0.1.0", Network::Regtest));
        assert!(!announces_another_cairn("", Network::Regtest));
    }
}
