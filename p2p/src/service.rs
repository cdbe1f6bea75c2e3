//! The one event loop that owns the swarm: it runs commands from the handle, validates
//! every gossip message and request frame before the application sees it, enforces
//! per-peer request rates, matches responses to requests, and reports events upward.
//!
//! Owns all libp2p state. Must never block on the application: events go out with
//! `try_send`, and what the application cannot take is ignored (gossip) or answered "busy"
//! (requests), never queued without bound.

use crate::clock::unix_millis;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_spec::wire::{Topic, MAX_GOSSIP_BYTES};
use cairn_spec::{Decode, ErrorReason, GossipMessage, Network, Request, Response, ResponseBody};
use futures::StreamExt;
use libp2p::gossipsub::{self, MessageAcceptance};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};

use crate::behaviour::{announces_another_cairn, topic, Behaviour, BehaviourEvent, Topics};
use crate::config::NetworkConfig;
use crate::{
    Acceptance, Cost, GossipId, Metrics, NetworkEvent, P2pError, Peer, RejectReason, ReplyToken, RequestError,
};

pub(crate) enum Command {
    Publish {
        topic: Topic,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), P2pError>>,
    },
    Report {
        id: GossipId,
        acceptance: Acceptance,
    },
    Request {
        peer: PeerId,
        request: Box<Request>,
        reply: oneshot::Sender<Result<Response, RequestError>>,
    },
    Respond {
        token: ReplyToken,
        body: ResponseBody,
        cost: Cost,
        reply: oneshot::Sender<Result<(), P2pError>>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), P2pError>>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    ConnectedPeerOf {
        key: cairn_spec::PubKey,
        reply: oneshot::Sender<Option<PeerId>>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Score {
        peer: PeerId,
        reply: oneshot::Sender<Option<f64>>,
    },
    MeshPeers {
        topic: Topic,
        reply: oneshot::Sender<usize>,
    },
    Prefer {
        peer: PeerId,
    },
    Disconnect {
        peer: PeerId,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Preferred peers at most (`Network::prefer`).
pub(crate) const MAX_PREFERRED: usize = 1024;

/// Peers whose request bucket and strikes are remembered at most (beyond it, only connected
/// peers' are kept).
const MAX_TRACKED_PEERS: usize = 4096;

/// What the request limit says of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Allowance {
    /// Within the rate.
    Allowed,
    /// Over it: refused `rate_limited`.
    Refused,
    /// Over it after a whole burst of refusals ignored: refused, and a strike.
    RefusedAndStruck,
}

struct Bucket {
    tokens: f64,
    /// Refusals the peer may still get without a strike (refilled at the same rate).
    refusals: f64,
    last: Instant,
}

pub(crate) struct EventLoop {
    pub(crate) swarm: Swarm<Behaviour>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) events: mpsc::Sender<NetworkEvent>,
    pub(crate) config: NetworkConfig,
    pub(crate) topics: Topics,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) pending_out:
        HashMap<OutboundRequestId, (u64, oneshot::Sender<Result<Response, RequestError>>)>,
    pub(crate) pending_in: HashMap<u64, (u64, ResponseChannel<Response>, PeerId)>,
    pub(crate) next_token: u64,
    /// Request buckets, kept after a peer disconnects while they say something (in debt, or
    /// with strikes): reconnecting buys no fresh burst.
    buckets: HashMap<PeerId, Bucket>,
    /// Strikes and when the last one was counted; they wear off one per second.
    strikes: HashMap<PeerId, (u32, Instant)>,
    /// Peers the application works with (`Network::prefer`), while connected: each gets
    /// every gossip message this node publishes, whatever the mesh holds.
    preferred: std::collections::HashSet<PeerId>,
    pub(crate) listen_addrs: Vec<Multiaddr>,
}

/// Most inbound requests waiting for the application at once.
const MAX_PENDING_INBOUND: usize = 4096;

impl EventLoop {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetworkEvent>,
        config: NetworkConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        let topics = crate::behaviour::topics(config.network);
        EventLoop {
            swarm,
            commands,
            events,
            config,
            topics,
            metrics,
            pending_out: HashMap::new(),
            pending_in: HashMap::new(),
            next_token: 0,
            buckets: HashMap::new(),
            strikes: HashMap::new(),
            preferred: std::collections::HashSet::new(),
            listen_addrs: Vec::new(),
        }
    }

    pub(crate) async fn run(mut self) {
        let mut bootstrap = tokio::time::interval(Duration::from_secs(30));
        let mut scores = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    None => break,
                    Some(Command::Shutdown { reply }) => {
                        let _ = reply.send(());
                        break;
                    }
                    Some(c) => self.on_command(c),
                },
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                _ = bootstrap.tick() => {
                    // Fails harmlessly while no peer is known.
                    if let Some(k) = self.swarm.behaviour_mut().kad.as_mut() {
                        let _ = k.bootstrap();
                    }
                }
                _ = scores.tick() => self.drop_graylisted(),
            }
        }
        tracing::debug!(target: "cairn::p2p", "event loop stopped");
    }

    /// Disconnects the connected peers scored below the graylist threshold, and sets the
    /// gauge to how many there were. Graylisting alone only ignores a peer's gossip; it
    /// would still hold a connection slot and the swarm's attention. Its score outlives the
    /// connection (gossipsub keeps it), so coming back it is dropped again.
    fn drop_graylisted(&mut self) {
        let gs = &self.swarm.behaviour().gossipsub;
        let bad: Vec<PeerId> = self
            .swarm
            .connected_peers()
            .filter(|p| gs.peer_score(p).is_some_and(|s| s < crate::behaviour::GRAYLIST_THRESHOLD))
            .copied()
            .collect();
        self.metrics.graylisted.set(i64::try_from(bad.len()).unwrap_or(i64::MAX));
        for peer in bad {
            tracing::info!(target: "cairn::p2p", %peer, "disconnecting a graylisted peer");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn network(&self) -> Network {
        self.config.network
    }

    fn emit(&self, ev: NetworkEvent) -> bool {
        match self.events.try_send(ev) {
            Ok(()) => true,
            Err(_) => {
                self.metrics.events_dropped.inc();
                false
            }
        }
    }

    fn on_command(&mut self, c: Command) {
        match c {
            Command::Publish { topic: t, data, reply } => {
                let len = data.len() as u64;
                let ident = topic(t, self.network());
                let r = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(ident, data)
                    .map(|_| ())
                    .map_err(|e| P2pError::Publish(e.to_string()));
                if r.is_ok() {
                    self.metrics.gossip_out(t).inc();
                    self.metrics.bytes_out.inc_by(len);
                }
                let _ = reply.send(r);
            }
            Command::Report { id, acceptance } => {
                let a = match acceptance {
                    Acceptance::Accept => MessageAcceptance::Accept,
                    Acceptance::Reject => MessageAcceptance::Reject,
                    Acceptance::Ignore => MessageAcceptance::Ignore,
                };
                if matches!(acceptance, Acceptance::Reject) {
                    self.metrics.rejects.inc();
                }
                self.swarm.behaviour_mut().gossipsub.report_message_validation_result(&id.id, &id.source, a);
            }
            Command::Request { peer, request, reply } => {
                let id = request.id;
                let rid = self
                    .swarm
                    .behaviour_mut()
                    .rpc
                    .send_request(&peer, crate::codec::Inbound::Request(request));
                self.pending_out.insert(rid, (id, reply));
            }
            Command::Respond { token, body, cost, reply } => {
                let r = match self.pending_in.remove(&token.0) {
                    Some((id, channel, peer)) => {
                        match cost {
                            Cost::Charged => {}
                            Cost::Refunded => self.refund(peer),
                            Cost::Forfeit => self.forfeit(peer),
                        }
                        self.swarm
                            .behaviour_mut()
                            .rpc
                            .send_response(channel, Response { id, body })
                            .map_err(|_| P2pError::Closed("the requester is gone".into()))
                    }
                    None => Err(P2pError::Closed(
                        "no such pending request (already answered or timed out)".into(),
                    )),
                };
                let _ = reply.send(r);
            }
            Command::Dial { addr, reply } => {
                if let Some(peer) = peer_of(&addr) {
                    if let Some(k) = self.swarm.behaviour_mut().kad.as_mut() {
                        k.add_address(&peer, addr.clone());
                    }
                }
                let _ = reply.send(self.swarm.dial(addr).map_err(|e| P2pError::Transport(e.to_string())));
            }
            Command::ConnectedPeerOf { key, reply } => {
                let peer =
                    crate::identity::peers_of_key(&key).into_iter().find(|p| self.swarm.is_connected(p));
                let _ = reply.send(peer);
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.listen_addrs.clone());
            }
            Command::Score { peer, reply } => {
                let _ = reply.send(self.swarm.behaviour().gossipsub.peer_score(&peer));
            }
            Command::MeshPeers { topic: t, reply } => {
                let hash = topic(t, self.network()).hash();
                let _ = reply.send(self.swarm.behaviour().gossipsub.mesh_peers(&hash).count());
            }
            Command::Disconnect { peer } => {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Command::Prefer { peer } => {
                if self.swarm.is_connected(&peer)
                    && self.preferred.len() < MAX_PREFERRED
                    && self.preferred.insert(peer)
                {
                    self.swarm.behaviour_mut().gossipsub.add_explicit_peer(&peer);
                }
            }
            Command::Shutdown { .. } => {}
        }
    }

    fn reject(&mut self, id: &gossipsub::MessageId, source: PeerId, reason: RejectReason) {
        self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
            id,
            &source,
            MessageAcceptance::Reject,
        );
        self.metrics.rejects.inc();
        tracing::debug!(target: "cairn::p2p", peer = %source, ?reason, "gossip rejected");
        self.emit(NetworkEvent::Rejected { from: Peer(source), reason });
    }

    fn on_gossip(&mut self, source: PeerId, id: gossipsub::MessageId, message: gossipsub::Message) {
        self.metrics.bytes_in.inc_by(message.data.len() as u64);
        let Some(t) = self.topics.get(&message.topic).copied() else {
            return self.reject(&id, source, RejectReason::UnknownTopic);
        };
        if message.data.len() > MAX_GOSSIP_BYTES {
            return self.reject(&id, source, RejectReason::Oversize(message.data.len()));
        }
        let msg = match GossipMessage::from_bytes(&message.data) {
            Ok(m) => m,
            Err(e) => return self.reject(&id, source, RejectReason::Malformed(e.code())),
        };
        if msg.topic() != t {
            return self.reject(&id, source, RejectReason::WrongTopic);
        }
        if msg.network() != self.network() {
            return self.reject(&id, source, RejectReason::WrongNetwork);
        }
        if self.config.gossip_signers.as_ref().is_some_and(|signers| !signers.contains(&msg.signer())) {
            // Not a signer this node follows: nothing to judge, so neither spread nor punish.
            self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                &id,
                &source,
                MessageAcceptance::Ignore,
            );
            return;
        }
        if !msg.verify_signature() {
            return self.reject(&id, source, RejectReason::BadSignature);
        }
        self.metrics.gossip_in(t).inc();
        let gid = GossipId { id: id.clone(), source };
        if !self.emit(NetworkEvent::Gossip { from: Peer(source), message: Box::new(msg), id: gid }) {
            // The application is saturated: neither forward nor punish.
            self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                &id,
                &source,
                MessageAcceptance::Ignore,
            );
        }
    }

    /// Two token buckets, both at the node's rate and burst: one for requests served, one for
    /// requests refused. A peer asking faster than the rate is served at the rate and refused
    /// the rest; only a peer refused faster than the rate too (asking at more than twice it,
    /// or a burst of refusals on top of a burst of requests) earns strikes. An honest node's
    /// concurrent requests may be refused, never struck; a flood is struck at once.
    fn allow_request(&mut self, peer: PeerId) -> Allowance {
        let rate = f64::from(self.config.requests_per_second);
        let burst = f64::from(self.config.request_burst);
        let now = Instant::now();
        let b = self.buckets.entry(peer).or_insert(Bucket { tokens: burst, refusals: burst, last: now });
        let refill = now.duration_since(b.last).as_secs_f64() * rate;
        b.tokens = (b.tokens + refill).min(burst);
        b.refusals = (b.refusals + refill).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Allowance::Allowed;
        }
        if b.refusals >= 1.0 {
            b.refusals -= 1.0;
            Allowance::Refused
        } else {
            Allowance::RefusedAndStruck
        }
    }

    /// Gives back the token a request took: the application answered it as work that moved
    /// its state on (`Cost::Refunded`), so a peer doing useful work is never slowed by the
    /// rate meant for floods; what it asks beyond its work still spends the bucket.
    fn refund(&mut self, peer: PeerId) {
        let burst = f64::from(self.config.request_burst);
        if let Some(b) = self.buckets.get_mut(&peer) {
            b.tokens = (b.tokens + 1.0).min(burst);
        }
    }

    /// Puts `peer`'s request bucket a second of the rate in debt (never deeper: a burst of
    /// forfeits answered at once owes no more than one), so a stranger is served about once a
    /// second and the rest of what it asks is refused here, at the cost of a counter.
    fn forfeit(&mut self, peer: PeerId) {
        let rate = f64::from(self.config.requests_per_second);
        if let Some(b) = self.buckets.get_mut(&peer) {
            b.tokens = b.tokens.min(-rate);
        }
    }

    /// Counts a misbehaviour on the request protocol (strikes wear off one per second); past
    /// the limit the peer is dropped.
    fn strike(&mut self, peer: PeerId) {
        let now = Instant::now();
        let (n, last) = self.strikes.entry(peer).or_insert((0, now));
        let worn = u32::try_from(now.duration_since(*last).as_secs()).unwrap_or(u32::MAX);
        *n = n.saturating_sub(worn) + 1;
        *last = now;
        if *n >= self.config.max_strikes {
            tracing::info!(target: "cairn::p2p", %peer, strikes = *n, "disconnecting a misbehaving peer");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// After `peer` disconnected: its bucket and strikes are kept while they say something,
    /// so reconnecting resets nothing; the tables stay bounded (under a flood of identities
    /// the ones that are gone are forgotten first).
    fn forget_if_clean(&mut self, peer: PeerId) {
        let burst = f64::from(self.config.request_burst);
        let rate = f64::from(self.config.requests_per_second);
        let now = Instant::now();
        let full = self.buckets.get(&peer).is_none_or(|b| {
            let refill = now.duration_since(b.last).as_secs_f64() * rate;
            b.tokens + refill >= burst && b.refusals + refill >= burst
        });
        if full {
            self.buckets.remove(&peer);
        }
        if self
            .strikes
            .get(&peer)
            .is_some_and(|(n, last)| u64::from(*n) <= now.duration_since(*last).as_secs())
        {
            self.strikes.remove(&peer);
        }
        if self.buckets.len() > MAX_TRACKED_PEERS || self.strikes.len() > MAX_TRACKED_PEERS {
            let connected: std::collections::HashSet<PeerId> =
                self.swarm.connected_peers().copied().collect();
            self.buckets.retain(|p, _| connected.contains(p));
            self.strikes.retain(|p, _| connected.contains(p));
        }
    }

    fn answer(&mut self, channel: ResponseChannel<Response>, id: u64, reason: ErrorReason, message: &str) {
        let body = ResponseBody::error(reason, message);
        let _ = self.swarm.behaviour_mut().rpc.send_response(channel, Response { id, body });
    }

    fn on_rpc(&mut self, ev: request_response::Event<crate::codec::Inbound, Response>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.metrics.requests_in.inc();
                    let request = match request {
                        crate::codec::Inbound::Request(r) => *r,
                        crate::codec::Inbound::Malformed(why) => {
                            // A frame no conforming node sends: refused, and a strike.
                            self.metrics.rejects.inc();
                            self.emit(NetworkEvent::Rejected {
                                from: Peer(peer),
                                reason: RejectReason::MalformedRequest,
                            });
                            self.strike(peer);
                            return self.answer(channel, 0, ErrorReason::Malformed, &why);
                        }
                    };
                    match self.allow_request(peer) {
                        Allowance::Allowed => {}
                        refused => {
                            self.metrics.rate_limited.inc();
                            if refused == Allowance::RefusedAndStruck {
                                self.strike(peer);
                            }
                            return self.answer(
                                channel,
                                request.id,
                                ErrorReason::RateLimited,
                                "rate limited",
                            );
                        }
                    }
                    if request.deadline_ms < unix_millis() {
                        return self.answer(
                            channel,
                            request.id,
                            ErrorReason::DeadlinePassed,
                            "deadline passed",
                        );
                    }
                    if self.pending_in.len() >= MAX_PENDING_INBOUND {
                        return self.answer(channel, request.id, ErrorReason::Busy, "busy");
                    }
                    self.next_token += 1;
                    let token = ReplyToken(self.next_token);
                    let id = request.id;
                    self.pending_in.insert(token.0, (id, channel, peer));
                    if !self.emit(NetworkEvent::Request {
                        from: Peer(peer),
                        request: Box::new(request),
                        reply: token,
                    }) {
                        if let Some((id, channel, _)) = self.pending_in.remove(&token.0) {
                            self.answer(channel, id, ErrorReason::Busy, "busy");
                        }
                    }
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some((id, reply)) = self.pending_out.remove(&request_id) {
                        let r =
                            if response.id == id { Ok(response) } else { Err(RequestError::MismatchedId) };
                        let _ = reply.send(r);
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                if let Some((_, reply)) = self.pending_out.remove(&request_id) {
                    let e = match error {
                        request_response::OutboundFailure::Timeout => RequestError::Timeout,
                        other => RequestError::Failed(other.to_string()),
                    };
                    let _ = reply.send(Err(e));
                }
            }
            // A request that could not be read never gets here (libp2p drops it silently),
            // which is why the codec hands malformed frames up as `Inbound::Malformed`; what
            // is left (timeouts, closed streams) needs no answer.
            request_response::Event::InboundFailure { .. } => {}
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_gossip(propagation_source, message_id, message),
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(e)) => self.on_rpc(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                if announces_another_cairn(&info.protocol_version, self.network()) {
                    tracing::info!(target: "cairn::p2p", peer = %peer_id, version = %info.protocol_version, "peer of another Cairn network or wire version; disconnecting");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                // Only a peer that serves the DHT goes into the routing table: another would
                // be handed to every peer that asks, to be dialled for nothing.
                // (A peer dialled by address was put in by the dial; it is taken out here.)
                let Some(k) = self.swarm.behaviour_mut().kad.as_mut() else { return };
                if !info.protocols.iter().any(|p| k.protocol_names().contains(p)) {
                    k.remove_peer(&peer_id);
                    return;
                }
                for addr in info.listen_addrs {
                    k.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, num_established, .. }
                if num_established.get() == 1 =>
            {
                self.metrics.peers.inc();
                self.emit(NetworkEvent::PeerConnected(Peer(peer_id)));
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                self.metrics.peers.dec();
                if self.preferred.remove(&peer_id) {
                    self.swarm.behaviour_mut().gossipsub.remove_explicit_peer(&peer_id);
                }
                self.forget_if_clean(peer_id);
                self.emit(NetworkEvent::PeerDisconnected(Peer(peer_id)));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(libp2p::mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    if let Some(k) = self.swarm.behaviour_mut().kad.as_mut() {
                        k.add_address(&peer, addr.clone());
                    }
                    let _ = self.swarm.dial(addr);
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(target: "cairn::p2p", %address, "listening");
                self.listen_addrs.push(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => self.listen_addrs.retain(|a| *a != address),
            _ => {}
        }
    }
}

/// The peer id at the end of a multiaddress, if any.
pub(crate) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}
