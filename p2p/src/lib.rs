//! The Cairn network layer on libp2p: TCP + noise + yamux, gossipsub with application
//! validation and peer scoring, one request-response protocol, identify, Kademlia, ping,
//! and connection limits (SPEC.md §11).
//!
//! Shape: [`Network`] is a cheap cloneable handle with typed async methods; one event-loop
//! task owns the swarm; the application receives [`NetworkEvent`]s on a bounded channel.
//! This crate owns the network and must never let a libp2p type out of it: peers are
//! [`Peer`]s, addresses are strings, messages are `cairn-spec` types. It also owns the node's
//! identity on disk ([`keyfile`]): the protocol key that is the libp2p identity.

mod behaviour;
pub mod clock;
mod codec;
mod config;
mod identity;
pub mod keyfile;
mod service;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_spec::wire::Topic;
use cairn_spec::{Encode, GossipMessage, PubKey, Request, RequestBody, ResponseBody, SigningKey};
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

pub use config::NetworkConfig;

use service::{Command, EventLoop};

/// A remote node. Its protocol key is known when it uses a secp256k1 identity (every Cairn
/// node does); other libp2p implementations may join as readers.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer(PeerId);

impl Peer {
    /// The peer id a node with protocol key `key` has (what follows `/p2p/` in its address).
    pub fn for_key(key: &SigningKey) -> Option<Peer> {
        identity::keypair(key).map(|k| Peer(k.public().to_peer_id()))
    }

    /// The Cairn protocol key this peer proved in its handshake.
    pub fn protocol_key(&self) -> Option<PubKey> {
        identity::protocol_key(&self.0)
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Peer({})", self.0)
    }
}

impl std::str::FromStr for Peer {
    type Err = P2pError;

    fn from_str(s: &str) -> Result<Self, P2pError> {
        s.parse::<PeerId>().map(Peer).map_err(|e| P2pError::InvalidAddress(format!("{s}: {e}")))
    }
}

/// Identifies a received gossip message for the validation report.
#[derive(Clone, PartialEq, Eq)]
pub struct GossipId {
    id: libp2p::gossipsub::MessageId,
    source: PeerId,
}

impl fmt::Debug for GossipId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GossipId({} from {})", self.id, self.source)
    }
}

/// The application's judgement of a gossip message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acceptance {
    /// Valid: forward it.
    Accept,
    /// Invalid: drop it and lower the sender's score.
    Reject,
    /// Not useful now (e.g. a duplicate): drop it without penalty.
    Ignore,
}

/// Handle for answering one inbound request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyToken(u64);

/// What an answered request costs its sender's request bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cost {
    /// The token it took stays spent (reads, refusals, repeats).
    Charged,
    /// The token is given back: the request moved the node's state on.
    Refunded,
    /// A request no peer the node works with would send (from a key it does not know or has
    /// banned, or whose signature fails): its sender's bucket owes a second of the rate, so
    /// what it asks next is refused by the network layer, before any signature is checked
    /// or the application sees it, until the debt is refilled.
    Forfeit,
}

/// Why the network layer dropped a message before the application saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// Gossip on a topic we do not know.
    UnknownTopic,
    /// Gossip above 128 KiB.
    Oversize(usize),
    /// Does not decode (the decoder's error code).
    Malformed(&'static str),
    /// A message kind sent on another kind's topic.
    WrongTopic,
    /// An object of another network.
    WrongNetwork,
    /// The inner object's signature is invalid.
    BadSignature,
    /// A request frame that did not decode or was above its bound.
    MalformedRequest,
}

/// What the network tells the application.
#[derive(Debug)]
#[non_exhaustive]
pub enum NetworkEvent {
    /// A structurally valid, correctly signed gossip message. Report a verdict with
    /// [`Network::report`]; until then it is not forwarded.
    Gossip {
        /// The peer that forwarded it.
        from: Peer,
        /// The message (boxed: a header with its beacon and binding is large).
        message: Box<GossipMessage>,
        /// Its id, for the report.
        id: GossipId,
    },
    /// A request to answer with [`Network::respond`].
    Request {
        /// The requester.
        from: Peer,
        /// The request (its deadline has not passed; boxed, as requests can be large).
        request: Box<Request>,
        /// Token for the answer.
        reply: ReplyToken,
    },
    /// A first connection to a peer.
    PeerConnected(Peer),
    /// The last connection to a peer closed.
    PeerDisconnected(Peer),
    /// Something a peer sent was dropped before the application (logged once, scored).
    Rejected {
        /// The sender.
        from: Peer,
        /// Why.
        reason: RejectReason,
    },
}

/// Network-layer failures.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum P2pError {
    /// An address or peer id that does not parse.
    #[error("invalid address: {0}")]
    InvalidAddress(String),
    /// Listening or dialling failed.
    #[error("transport: {0}")]
    Transport(String),
    /// Gossipsub refused to publish (no peers, duplicate, too large).
    #[error("publish: {0}")]
    Publish(String),
    /// The configuration is unusable.
    #[error("invalid network configuration: {0}")]
    Config(String),
    /// The event loop is gone, or the other side of a request is.
    #[error("network closed: {0}")]
    Closed(String),
    /// A message above its bound.
    #[error("message of {len} bytes above the {max}-byte bound")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The bound.
        max: usize,
    },
}

/// Why an outbound request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No answer before the timeout.
    #[error("request timed out")]
    Timeout,
    /// The connection or stream failed.
    #[error("request failed: {0}")]
    Failed(String),
    /// The answer did not echo the request's id.
    #[error("response id does not match the request")]
    MismatchedId,
    /// The network layer is shut down.
    #[error("network closed")]
    Closed,
}

/// Counters of the network layer, as Prometheus metrics (the node serves them at `/metrics`).
#[derive(Debug, Default)]
pub struct Metrics {
    peers: Gauge,
    gossip_in: Family<Vec<(String, String)>, Counter>,
    gossip_out: Family<Vec<(String, String)>, Counter>,
    rejects: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
    requests_in: Counter,
    requests_out: Counter,
    rate_limited: Counter,
    events_dropped: Counter,
    graylisted: Gauge,
}

fn topic_label(t: Topic) -> Vec<(String, String)> {
    let name = match t {
        Topic::Tasks => "tasks",
        Topic::Receipts => "receipts",
        Topic::Epochs => "epochs",
    };
    vec![("topic".to_owned(), name.to_owned())]
}

impl Metrics {
    pub(crate) fn gossip_in(&self, t: Topic) -> Counter {
        self.gossip_in.get_or_create(&topic_label(t)).clone()
    }

    pub(crate) fn gossip_out(&self, t: Topic) -> Counter {
        self.gossip_out.get_or_create(&topic_label(t)).clone()
    }

    fn register(&self, r: &mut Registry) {
        r.register("cairn_p2p_peers", "Connected peers", self.peers.clone());
        r.register(
            "cairn_p2p_gossip_in",
            "Gossip messages received and passed to validation",
            self.gossip_in.clone(),
        );
        r.register("cairn_p2p_gossip_out", "Gossip messages published", self.gossip_out.clone());
        r.register("cairn_p2p_rejects", "Messages rejected before the application", self.rejects.clone());
        r.register("cairn_p2p_gossip_bytes_in", "Gossip bytes received", self.bytes_in.clone());
        r.register("cairn_p2p_gossip_bytes_out", "Gossip bytes published", self.bytes_out.clone());
        r.register("cairn_p2p_requests_in", "Inbound requests", self.requests_in.clone());
        r.register("cairn_p2p_requests_out", "Outbound requests", self.requests_out.clone());
        r.register(
            "cairn_p2p_rate_limited",
            "Inbound requests refused by the rate limit",
            self.rate_limited.clone(),
        );
        r.register(
            "cairn_p2p_events_dropped",
            "Events the application could not take in time",
            self.events_dropped.clone(),
        );
        r.register(
            "cairn_p2p_graylisted_peers",
            "Connected peers whose gossip score is below the graylist threshold (their gossip is ignored)",
            self.graylisted.clone(),
        );
    }
}

/// A copy of the counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Connected peers.
    pub peers: i64,
    /// Gossip messages accepted for validation, per topic (tasks, receipts, epochs).
    pub gossip_in: [u64; 3],
    /// Gossip messages published, per topic.
    pub gossip_out: [u64; 3],
    /// Messages rejected (gossip and request frames).
    pub rejects: u64,
    /// Gossip bytes received.
    pub bytes_in: u64,
    /// Gossip bytes published.
    pub bytes_out: u64,
    /// Inbound requests.
    pub requests_in: u64,
    /// Outbound requests.
    pub requests_out: u64,
    /// Inbound requests refused by the rate limit.
    pub rate_limited: u64,
    /// Events the application could not take in time.
    pub events_dropped: u64,
    /// Connected peers below the graylist threshold (refreshed every second).
    pub graylisted: i64,
}

impl Metrics {
    fn snapshot(&self) -> MetricsSnapshot {
        let per_topic = |f: &dyn Fn(Topic) -> Counter| Topic::ALL.map(|t| f(t).get());
        MetricsSnapshot {
            peers: self.peers.get(),
            gossip_in: per_topic(&|t| self.gossip_in(t)),
            gossip_out: per_topic(&|t| self.gossip_out(t)),
            rejects: self.rejects.get(),
            bytes_in: self.bytes_in.get(),
            bytes_out: self.bytes_out.get(),
            requests_in: self.requests_in.get(),
            requests_out: self.requests_out.get(),
            rate_limited: self.rate_limited.get(),
            events_dropped: self.events_dropped.get(),
            graylisted: self.graylisted.get(),
        }
    }
}

/// The handle to a running network node.
#[derive(Clone)]
pub struct Network {
    commands: mpsc::Sender<Command>,
    local: Peer,
    /// This node's protocol key.
    key: PubKey,
    network: cairn_spec::Network,
    next_id: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

fn parse_addr(s: &str) -> Result<Multiaddr, P2pError> {
    s.parse::<Multiaddr>().map_err(|e| P2pError::InvalidAddress(format!("{s}: {e}")))
}

impl Network {
    /// Starts a node whose identity is `key`: listens, dials the bootstrap peers, and spawns
    /// the event loop on the current tokio runtime.
    pub async fn start(
        config: NetworkConfig,
        key: &SigningKey,
    ) -> Result<(Network, mpsc::Receiver<NetworkEvent>), P2pError> {
        let kp = identity::keypair(key).ok_or_else(|| P2pError::Config("unusable node key".into()))?;
        let local = Peer(kp.public().to_peer_id());
        let cfg = config.clone();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(kp)
            .with_tokio()
            .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
            .map_err(|e| P2pError::Transport(e.to_string()))?
            .with_behaviour(|k| {
                behaviour::build(k, &cfg)
                    .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })
            })
            .map_err(|e| P2pError::Config(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(cfg.idle_timeout))
            .build();
        for l in &config.listen {
            swarm.listen_on(parse_addr(l)?).map_err(|e| P2pError::Transport(e.to_string()))?;
        }
        for e in &config.external {
            swarm.add_external_address(parse_addr(e)?);
        }
        for b in &config.bootstrap {
            let addr = parse_addr(b)?;
            if let Some(peer) = service::peer_of(&addr) {
                if let Some(k) = swarm.behaviour_mut().kad.as_mut() {
                    k.add_address(&peer, addr.clone());
                }
            }
            if let Err(e) = swarm.dial(addr) {
                tracing::warn!(target: "cairn::p2p", bootstrap = %b, error = %e, "cannot dial bootstrap peer");
            }
        }
        let (cmd_tx, cmd_rx) = mpsc::channel(config.channel_capacity);
        let (ev_tx, ev_rx) = mpsc::channel(config.channel_capacity);
        let metrics = Arc::new(Metrics::default());
        let network = config.network;
        let event_loop = EventLoop::new(swarm, cmd_rx, ev_tx, config, metrics.clone());
        tokio::spawn(event_loop.run());
        Ok((
            Network {
                commands: cmd_tx,
                local,
                key: key.public(),
                network,
                next_id: Arc::new(AtomicU64::new(1)),
                metrics,
            },
            ev_rx,
        ))
    }

    /// This node.
    pub fn local_peer(&self) -> Peer {
        self.local
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, P2pError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| P2pError::Closed("event loop stopped".into()))?;
        rx.await.map_err(|_| P2pError::Closed("event loop stopped".into()))
    }

    /// Addresses this node listens on, each ending in `/p2p/<peer id>` so others can dial it.
    pub async fn listen_addrs(&self) -> Result<Vec<String>, P2pError> {
        let addrs = self.ask(|reply| Command::ListenAddrs { reply }).await?;
        Ok(addrs.into_iter().map(|a| format!("{a}/p2p/{}", self.local)).collect())
    }

    /// Waits up to `timeout` for the node to listen somewhere; returns its addresses.
    pub async fn wait_listening(&self, timeout: Duration) -> Result<Vec<String>, P2pError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let a = self.listen_addrs().await?;
            if !a.is_empty() {
                return Ok(a);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(P2pError::Transport("not listening".into()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Dials a multiaddress.
    pub async fn dial(&self, addr: &str) -> Result<(), P2pError> {
        let addr = parse_addr(addr)?;
        self.ask(|reply| Command::Dial { addr, reply }).await?
    }

    /// Publishes a protocol object on its topic. Checked locally first: right network, valid
    /// signature, within the size bound. An object signed with this node's own key was
    /// signed in this process and is not checked again (in release builds): that check was a
    /// BIP340 verification per publication, on the coordinator's hot path.
    pub async fn publish(&self, message: &GossipMessage) -> Result<(), P2pError> {
        if message.network() != self.network {
            return Err(P2pError::Publish(format!(
                "object for {}, node on {}",
                message.network(),
                self.network
            )));
        }
        let own = message.signer() == self.key;
        debug_assert!(!own || message.verify_signature(), "this node signed an object that does not verify");
        if !own && !message.verify_signature() {
            return Err(P2pError::Publish("invalid signature".into()));
        }
        let data = message.to_bytes();
        if data.len() > cairn_spec::wire::MAX_GOSSIP_BYTES {
            return Err(P2pError::TooLarge { len: data.len(), max: cairn_spec::wire::MAX_GOSSIP_BYTES });
        }
        let topic = message.topic();
        self.ask(|reply| Command::Publish { topic, data, reply }).await?
    }

    /// Publishes raw bytes on a topic with no local checks. Honest nodes never need this; it
    /// exists so adversarial tests can send what a misbehaving peer would.
    pub async fn publish_unchecked(&self, topic: Topic, data: Vec<u8>) -> Result<(), P2pError> {
        self.ask(|reply| Command::Publish { topic, data, reply }).await?
    }

    /// Reports the application's verdict on a gossip message.
    pub async fn report(&self, id: GossipId, acceptance: Acceptance) -> Result<(), P2pError> {
        self.commands
            .send(Command::Report { id, acceptance })
            .await
            .map_err(|_| P2pError::Closed("event loop stopped".into()))
    }

    /// Sends a request and waits for its response (at most `timeout`, and never longer than
    /// the node's request timeout). The request carries a fresh id and a deadline.
    pub async fn request(
        &self,
        peer: &Peer,
        body: RequestBody,
        timeout: Duration,
    ) -> Result<ResponseBody, RequestError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let deadline_ms =
            clock::unix_millis().saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        let request = Request { id, deadline_ms, body };
        self.metrics.requests_out.inc();
        let peer = peer.0;
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Request { peer, request: Box::new(request), reply: tx })
            .await
            .map_err(|_| RequestError::Closed)?;
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(RequestError::Timeout),
            Ok(Err(_)) => Err(RequestError::Closed),
            Ok(Ok(r)) => r.map(|resp| resp.body),
        }
    }

    /// Answers an inbound request; its token stays spent.
    pub async fn respond(&self, reply: ReplyToken, body: ResponseBody) -> Result<(), P2pError> {
        self.respond_at(reply, body, Cost::Charged).await
    }

    /// Answers an inbound request at `cost`: `Cost::Refunded` gives the requester back the
    /// token of its request bucket the request took (SPEC.md §11.5), for requests that did
    /// work the node wanted done.
    pub async fn respond_at(
        &self,
        reply: ReplyToken,
        body: ResponseBody,
        cost: Cost,
    ) -> Result<(), P2pError> {
        self.ask(|r| Command::Respond { token: reply, body, cost, reply: r }).await?
    }

    /// The connected peer whose protocol key is `key`, if one is connected (a request to a
    /// worker goes over the connection it made; its address is not known otherwise).
    pub async fn connected_peer_of(&self, key: &PubKey) -> Result<Option<Peer>, P2pError> {
        Ok(self.ask(|reply| Command::ConnectedPeerOf { key: *key, reply }).await?.map(Peer))
    }

    /// Connected peers.
    pub async fn peers(&self) -> Result<Vec<Peer>, P2pError> {
        Ok(self.ask(|reply| Command::Peers { reply }).await?.into_iter().map(Peer).collect())
    }

    /// A peer's gossipsub score, as this node sees it.
    pub async fn peer_score(&self, peer: &Peer) -> Result<Option<f64>, P2pError> {
        let peer = peer.0;
        self.ask(|reply| Command::Score { peer, reply }).await
    }

    /// How many peers are in this node's mesh for `topic`.
    pub async fn mesh_peers(&self, topic: Topic) -> Result<usize, P2pError> {
        self.ask(|reply| Command::MeshPeers { topic, reply }).await
    }

    /// Sends `peer` every gossip message this node publishes while it stays connected, in
    /// or out of the mesh (gossipsub's explicit peering; SPEC.md §11.3): a node publishes to
    /// its mesh alone, so the peers it works with are named, and a crowd of subscribers costs
    /// a publication nothing. At most 1024 at once; ignored for a peer not connected.
    pub async fn prefer(&self, peer: &Peer) -> Result<(), P2pError> {
        self.commands
            .send(Command::Prefer { peer: peer.0 })
            .await
            .map_err(|_| P2pError::Closed("event loop stopped".into()))
    }

    /// Closes every connection to a peer.
    pub async fn disconnect(&self, peer: &Peer) -> Result<(), P2pError> {
        self.commands
            .send(Command::Disconnect { peer: peer.0 })
            .await
            .map_err(|_| P2pError::Closed("event loop stopped".into()))
    }

    /// Counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Registers this node's counters in a Prometheus registry (the node's `/metrics`).
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }

    /// Stops the event loop (connections close with it).
    pub async fn shutdown(&self) {
        let _ = self.ask(|reply| Command::Shutdown { reply }).await;
    }

    /// The score below which a peer is graylisted (its messages ignored).
    pub const GRAYLIST_THRESHOLD: f64 = behaviour::GRAYLIST_THRESHOLD;
}
