//! The network over real TCP sockets on 127.0.0.1, every wait bounded: propagation along a
//! line of six nodes, request-response, a misbehaving peer, partition and catch-up through
//! the sync protocol, network separation, and request rate limits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_p2p::{Acceptance, Cost, Network, NetworkConfig, NetworkEvent, Peer, RejectReason};
use cairn_spec::hash::sha256;
use cairn_spec::wire::Topic;
use cairn_spec::{
    Encode, EpochHeader, ErrorReason, GossipMessage, Hash32, RequestBody, ResponseBody, Signed,
    SignedEpochHeader, SigningKey,
};
use tokio::sync::mpsc;

#[derive(Default, Clone)]
struct AppState {
    headers: BTreeMap<u32, SignedEpochHeader>,
    gossip: usize,
    rejected: Vec<(Peer, RejectReason)>,
    disconnected: Vec<Peer>,
}

struct Node {
    net: Network,
    state: Arc<Mutex<AppState>>,
    addr: String,
}

/// A minimal application: accepts every gossip message that reaches it, keeps epoch
/// headers, serves them to `GetEpochs`, acknowledges other requests.
fn spawn_app(net: Network, mut events: mpsc::Receiver<NetworkEvent>, state: Arc<Mutex<AppState>>) {
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            match ev {
                NetworkEvent::Gossip { message, id, .. } => {
                    {
                        let mut s = state.lock().unwrap();
                        if let GossipMessage::Epoch(h) = message.as_ref() {
                            s.headers.insert(h.body.height, (**h).clone());
                        }
                        s.gossip += 1;
                    }
                    let _ = net.report(id, Acceptance::Accept).await;
                }
                NetworkEvent::Request { request, reply, .. } => {
                    let body = match request.body {
                        RequestBody::GetEpochs { from, count } => {
                            let s = state.lock().unwrap();
                            ResponseBody::Epochs(
                                s.headers
                                    .range(from..)
                                    .take(count as usize)
                                    .map(|(_, h)| h.clone())
                                    .collect(),
                            )
                        }
                        // Stands for work the node wanted done: its token is given back.
                        RequestBody::GetTerms => {
                            let _ = net.respond_at(reply, ResponseBody::Ack, Cost::Refunded).await;
                            continue;
                        }
                        // Stands for a stranger's request: it owes a second of the rate.
                        RequestBody::GetLedger { .. } => {
                            let _ = net.respond_at(reply, ResponseBody::Ack, Cost::Forfeit).await;
                            continue;
                        }
                        _ => ResponseBody::Ack,
                    };
                    let _ = net.respond(reply, body).await;
                }
                NetworkEvent::Rejected { from, reason } => {
                    state.lock().unwrap().rejected.push((from, reason))
                }
                NetworkEvent::PeerDisconnected(p) => state.lock().unwrap().disconnected.push(p),
                _ => {}
            }
        }
    });
}

fn config(network: cairn_spec::Network) -> NetworkConfig {
    let mut c = NetworkConfig::new(network);
    c.heartbeat = Duration::from_millis(200);
    c
}

async fn start_with(seed: u8, cfg: NetworkConfig) -> Node {
    let key = SigningKey::from_secret_bytes([seed; 32]).unwrap();
    let (net, events) = Network::start(cfg, &key).await.unwrap();
    let state = Arc::new(Mutex::new(AppState::default()));
    spawn_app(net.clone(), events, state.clone());
    let addr = net.wait_listening(Duration::from_secs(5)).await.unwrap()[0].clone();
    Node { net, state, addr }
}

async fn start(seed: u8) -> Node {
    start_with(seed, config(cairn_spec::Network::Regtest)).await
}

/// A chain of `n` signed headers on `network`.
fn headers(n: u32, network: cairn_spec::Network) -> Vec<SignedEpochHeader> {
    let coord = SigningKey::from_secret_bytes([77; 32]).unwrap();
    let mut prev = Hash32::ZERO;
    let mut history = cairn_spec::merkle::Frontier::new();
    (0..n)
        .map(|height| {
            let h = EpochHeader {
                network,
                coordinator: coord.public(),
                height,
                prev,
                receipts_root: sha256(&height.to_be_bytes()),
                state_root: sha256(b"s"),
                receipt_count: 1,
                accepted_count: 1,
                reward_sats: 10,
                time: 1_767_225_600 + u64::from(height),
                draw_seed: cairn_spec::Hash32([height as u8; 32]),
                next_seed_hash: cairn_spec::draw::seed_hash(&cairn_spec::Hash32(
                    [(height as u8).wrapping_add(1); 32],
                )),
                next_roster: cairn_spec::Roster::default().root(),
                beacon: cairn_spec::Beacon::None,
                anchor: cairn_spec::AnchorBinding::None,
                scores_root: cairn_spec::merkle::empty_root(),
                history: history.root(),
            };
            prev = h.hash();
            history.push(prev);
            Signed::sign(h, &coord, &[0; 32])
        })
        .collect()
}

async fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn until_mesh(nodes: &[&Node], topic: Topic) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for n in nodes {
        while n.net.mesh_peers(topic).await.unwrap() == 0 {
            assert!(tokio::time::Instant::now() < deadline, "mesh did not form");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_nodes_in_a_line_gossip_and_request() {
    let mut nodes = Vec::new();
    for i in 0..6u8 {
        let n = start(10 + i).await;
        if let Some(prev) = nodes.last() {
            let prev: &Node = prev;
            n.net.dial(&prev.addr).await.unwrap();
        }
        nodes.push(n);
    }
    until_mesh(&nodes.iter().collect::<Vec<_>>(), Topic::Epochs).await;
    let h = headers(1, cairn_spec::Network::Regtest).remove(0);
    nodes[0].net.publish(&GossipMessage::Epoch(Box::new(h.clone()))).await.unwrap();
    let started = std::time::Instant::now();
    until("the header to reach all six nodes", Duration::from_secs(20), || {
        nodes[1..].iter().all(|n| n.state.lock().unwrap().headers.contains_key(&0))
    })
    .await;
    eprintln!("propagated over 5 hops in {:?}", started.elapsed());
    // Request-response across a direct connection.
    let peer = nodes[4].net.local_peer();
    assert_eq!(peer.protocol_key(), Some(SigningKey::from_secret_bytes([14; 32]).unwrap().public()));
    let r = nodes[5]
        .net
        .request(&peer, RequestBody::GetEpochs { from: 0, count: 10 }, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r, ResponseBody::Epochs(vec![h]));
    let m = nodes[0].net.metrics();
    assert_eq!(m.gossip_out[Topic::Epochs as usize], 1);
    assert!(nodes[5].net.metrics().gossip_in[Topic::Epochs as usize] >= 1);
    let mut registry = prometheus_client::registry::Registry::default();
    nodes[0].net.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains("cairn_p2p_gossip_out_total{topic=\"epochs\"} 1"), "{text}");
    for n in &nodes {
        n.net.shutdown().await;
    }
}

/// Kademlia discovery finds peers for a node that takes part in it, and a node configured
/// out of it (`discovery = false`: a flooder, say, or a node that needs its bootstrap peers
/// alone) is neither handed out to others nor dials anyone it was not told to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_finds_peers_and_a_node_without_it_is_neither_found_nor_finding() {
    let hub = start(90).await;
    let b = start(91).await;
    let mut off = config(cairn_spec::Network::Regtest);
    off.discovery = false;
    let quiet = start_with(92, off).await;
    b.net.dial(&hub.addr).await.unwrap();
    quiet.net.dial(&hub.addr).await.unwrap();
    until("the hub to see both", Duration::from_secs(10), || futures_lite_block(hub.net.peers()).len() == 2)
        .await;
    let d = start(93).await;
    d.net.dial(&hub.addr).await.unwrap();
    let b_peer = b.net.local_peer();
    let quiet_peer = quiet.net.local_peer();
    let hub_peer = hub.net.local_peer();
    // d asks the hub for peers and dials what it hears of: b, never the quiet node.
    until("discovery to connect d to b", Duration::from_secs(20), || {
        futures_lite_block(d.net.peers()).contains(&b_peer)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!futures_lite_block(d.net.peers()).contains(&quiet_peer), "the quiet node was handed out");
    assert!(!futures_lite_block(b.net.peers()).contains(&quiet_peer), "the quiet node was handed out");
    assert_eq!(futures_lite_block(quiet.net.peers()), vec![hub_peer], "the quiet node dialled on its own");
    for n in [&hub, &b, &quiet, &d] {
        n.net.shutdown().await;
    }
}

/// Runs a network call to completion from a synchronous check (the handle's calls are quick
/// channel round trips to the event loop).
fn futures_lite_block<T>(f: impl std::future::Future<Output = Result<T, cairn_p2p::P2pError>>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f)).unwrap()
}

/// A message id covers its topic (SPEC §11.3): an attacker that sends a genuine header first
/// on the wrong topic (rejected there) neither censors the genuine message on its own topic
/// nor gets the honest peer that sends it penalised as a sender of an invalid message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_on_the_wrong_topic_neither_censors_nor_frames_the_genuine_message() {
    let target = start(94).await;
    let attacker = start(95).await;
    let honest = start(96).await;
    attacker.net.dial(&target.addr).await.unwrap();
    honest.net.dial(&target.addr).await.unwrap();
    until_mesh(&[&target, &honest], Topic::Epochs).await;
    until_mesh(&[&attacker], Topic::Receipts).await;
    let h = headers(1, cairn_spec::Network::Regtest).remove(0);
    let bytes = GossipMessage::Epoch(Box::new(h.clone())).to_bytes();
    let attacker_peer = attacker.net.local_peer();
    attacker.net.publish_unchecked(Topic::Receipts, bytes).await.unwrap();
    until("the wrong-topic copy to be rejected", Duration::from_secs(10), || {
        target
            .state
            .lock()
            .unwrap()
            .rejected
            .iter()
            .any(|(p, r)| *p == attacker_peer && *r == RejectReason::WrongTopic)
    })
    .await;
    honest.net.publish(&GossipMessage::Epoch(Box::new(h))).await.unwrap();
    until("the genuine header to arrive", Duration::from_secs(10), || {
        target.state.lock().unwrap().headers.contains_key(&0)
    })
    .await;
    let score = target.net.peer_score(&honest.net.local_peer()).await.unwrap().unwrap_or(0.0);
    assert!(score >= 0.0, "the honest sender was penalised: {score}");
    for n in [&target, &attacker, &honest] {
        n.net.shutdown().await;
    }
}

/// A node's preferred peers (`Network::prefer`) get every message it publishes, whatever
/// their place in its mesh and their score: of two peers scored below the publish threshold
/// (four invalid messages each: about −60, above the graylist's −80), the preferred one gets
/// the node's messages and the other nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preferred_peer_gets_every_publication_whatever_its_score() {
    let hub = start(97).await;
    // Each talks to the hub alone: neither can hear the other's forwards.
    let alone = || {
        let mut c = config(cairn_spec::Network::Regtest);
        c.discovery = false;
        c
    };
    let preferred = start_with(98, alone()).await;
    let other = start_with(99, alone()).await;
    preferred.net.dial(&hub.addr).await.unwrap();
    other.net.dial(&hub.addr).await.unwrap();
    until_mesh(&[&preferred, &other], Topic::Tasks).await;
    // −10 × n² per topic: two on one topic and one on each of two others, about −60.
    for n in [&preferred, &other] {
        for (i, t) in [Topic::Tasks, Topic::Tasks, Topic::Receipts, Topic::Epochs].into_iter().enumerate() {
            n.net.publish_unchecked(t, vec![0xde, 0xad, i as u8]).await.unwrap();
        }
    }
    for n in [&preferred, &other] {
        let p = n.net.local_peer();
        let hub_net = hub.net.clone();
        until("the hub to score the peer below the publish threshold", Duration::from_secs(10), || {
            let s = futures_lite_block(hub_net.peer_score(&p)).unwrap_or(0.0);
            s < PUBLISH_THRESHOLD && s > GRAYLIST_THRESHOLD
        })
        .await;
    }
    hub.net.prefer(&preferred.net.local_peer()).await.unwrap();
    let all = headers(3, cairn_spec::Network::Regtest);
    for h in &all {
        hub.net.publish(&GossipMessage::Epoch(Box::new(h.clone()))).await.unwrap();
    }
    until("the preferred peer to get every header", Duration::from_secs(5), || {
        preferred.state.lock().unwrap().headers.len() == 3
    })
    .await;
    // Several heartbeats (200 ms each): the other peer is sent nothing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(other.state.lock().unwrap().headers.is_empty(), "published to a peer below the threshold");
    for n in [&hub, &preferred, &other] {
        n.net.shutdown().await;
    }
}

/// Publishing checks an object signed by another key (a relay) and refuses one whose
/// signature fails, before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_object_with_a_bad_signature_is_never_published() {
    let n = start(100).await;
    let mut h = headers(1, cairn_spec::Network::Regtest).remove(0);
    h.body.height = 9;
    let r = n.net.publish(&GossipMessage::Epoch(Box::new(h))).await;
    assert!(matches!(r, Err(cairn_p2p::P2pError::Publish(ref m)) if m.contains("signature")), "{r:?}");
    n.net.shutdown().await;
}

/// The hub's score thresholds (SPEC §11.5).
const PUBLISH_THRESHOLD: f64 = -50.0;
const GRAYLIST_THRESHOLD: f64 = -80.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_peers_are_rejected_scored_down_and_graylisted() {
    let honest = start(30).await;
    let relay = start(31).await;
    let bad1 = start(32).await;
    let bad2 = start(33).await;
    relay.net.dial(&honest.addr).await.unwrap();
    bad1.net.dial(&relay.addr).await.unwrap();
    bad2.net.dial(&relay.addr).await.unwrap();
    until_mesh(&[&honest, &relay, &bad1, &bad2], Topic::Epochs).await;
    let (p1, p2) = (bad1.net.local_peer(), bad2.net.local_peer());

    let chain = headers(3, cairn_spec::Network::Regtest);
    // bad1: garbage and an oversize message; bad2: a forged signature and a header on the
    // receipts topic.
    bad1.net.publish_unchecked(Topic::Epochs, vec![0xde, 0xad, 0xbe, 0xef]).await.unwrap();
    bad1.net.publish_unchecked(Topic::Epochs, vec![7u8; 200 * 1024]).await.unwrap();
    let mut forged = chain[1].clone();
    forged.signature.0[5] ^= 1;
    bad2.net
        .publish_unchecked(Topic::Epochs, GossipMessage::Epoch(Box::new(forged)).to_bytes())
        .await
        .unwrap();
    bad2.net
        .publish_unchecked(Topic::Receipts, GossipMessage::Epoch(Box::new(chain[2].clone())).to_bytes())
        .await
        .unwrap();
    until("four rejections at the relay", Duration::from_secs(10), || {
        relay.state.lock().unwrap().rejected.len() >= 4
    })
    .await;
    let rejected = relay.state.lock().unwrap().rejected.clone();
    let of = |p: Peer| rejected.iter().filter(|(f, _)| *f == p).map(|(_, r)| r.clone()).collect::<Vec<_>>();
    let r1 = of(p1);
    let r2 = of(p2);
    assert!(r1.iter().any(|r| matches!(r, RejectReason::Malformed(_))), "{r1:?}");
    assert!(r1.iter().any(|r| matches!(r, RejectReason::Oversize(_))), "{r1:?}");
    assert!(r2.contains(&RejectReason::BadSignature), "{r2:?}");
    assert!(r2.contains(&RejectReason::WrongTopic), "{r2:?}");
    // None of it reached the application, nothing invalid was forwarded, and the senders'
    // scores fell.
    assert_eq!(relay.state.lock().unwrap().gossip, 0);
    // (The bad peers may also find the honest node through Kademlia and send it the same
    // junk directly; what matters is that none of it came through the relay.)
    let relay_peer = relay.net.local_peer();
    let at_honest = honest.state.lock().unwrap().rejected.clone();
    assert!(at_honest.iter().all(|(from, _)| *from != relay_peer), "the relay forwarded: {at_honest:?}");
    let s1 = relay.net.peer_score(&p1).await.unwrap().unwrap();
    assert!(s1 < -10.0, "score {s1}");
    // One more invalid message and bad1 is graylisted.
    bad1.net.publish_unchecked(Topic::Epochs, vec![1, 2, 3]).await.unwrap();
    until("a fifth rejection", Duration::from_secs(10), || relay.state.lock().unwrap().rejected.len() >= 5)
        .await;
    let s1 = relay.net.peer_score(&p1).await.unwrap().unwrap();
    assert!(s1 < Network::GRAYLIST_THRESHOLD, "score {s1}");
    // Graylisted, it loses its connection too (not only its gossip).
    until("the relay to drop the graylisted peer", Duration::from_secs(10), || {
        relay.state.lock().unwrap().disconnected.contains(&p1)
    })
    .await;
    // The honest network keeps working.
    honest.net.publish(&GossipMessage::Epoch(Box::new(chain[0].clone()))).await.unwrap();
    until("the honest header at the relay", Duration::from_secs(10), || {
        relay.state.lock().unwrap().headers.contains_key(&0)
    })
    .await;
    assert!(relay.net.metrics().rejects >= 5);
    for n in [&honest, &relay, &bad1, &bad2] {
        n.net.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_node_catches_up_through_sync() {
    let a = start(40).await;
    let b = start(41).await;
    let c = start(42).await;
    b.net.dial(&a.addr).await.unwrap();
    c.net.dial(&b.addr).await.unwrap();
    until_mesh(&[&a, &b, &c], Topic::Epochs).await;
    let chain = headers(5, cairn_spec::Network::Regtest);
    a.net.publish(&GossipMessage::Epoch(Box::new(chain[0].clone()))).await.unwrap();
    until("epoch 0 at c", Duration::from_secs(10), || c.state.lock().unwrap().headers.contains_key(&0)).await;
    // Cut c off, publish the rest while it is away.
    c.net.shutdown().await;
    until_mesh(&[&a, &b], Topic::Epochs).await;
    for h in &chain[1..] {
        a.net.publish(&GossipMessage::Epoch(Box::new(h.clone()))).await.unwrap();
    }
    until("epochs 1-4 at b", Duration::from_secs(10), || b.state.lock().unwrap().headers.len() == 5).await;
    // c comes back with the same identity and asks b for what it missed.
    let c2 = start(42).await;
    c2.net.dial(&b.addr).await.unwrap();
    let b_peer = b.net.local_peer();
    let from = 1;
    let resp = loop {
        match c2
            .net
            .request(&b_peer, RequestBody::GetEpochs { from, count: 256 }, Duration::from_secs(5))
            .await
        {
            Ok(r) => break r,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let ResponseBody::Epochs(got) = resp else { panic!("{resp:?}") };
    assert_eq!(got.len(), 4);
    let mut prev = chain[0].body.clone();
    for h in &got {
        assert!(h.verify() && h.body.follows(&prev));
        prev = h.body.clone();
    }
    for n in [&a, &b, &c2] {
        n.net.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regtest_and_signet_never_exchange_gossip() {
    let r = start_with(50, config(cairn_spec::Network::Regtest)).await;
    let s = start_with(51, config(cairn_spec::Network::Signet)).await;
    let r2 = start_with(52, config(cairn_spec::Network::Regtest)).await;
    s.net.dial(&r.addr).await.unwrap();
    r2.net.dial(&r.addr).await.unwrap();
    until_mesh(&[&r, &r2], Topic::Epochs).await;
    r.net
        .publish(&GossipMessage::Epoch(Box::new(headers(1, cairn_spec::Network::Regtest).remove(0))))
        .await
        .unwrap();
    until("the regtest peer to get it", Duration::from_secs(10), || r2.state.lock().unwrap().gossip == 1)
        .await;
    // Identify tells them apart and they part ways; the signet node saw nothing.
    until("the signet node to be dropped", Duration::from_secs(10), || {
        !s.state.lock().unwrap().disconnected.is_empty()
    })
    .await;
    assert_eq!(s.state.lock().unwrap().gossip, 0);
    assert_eq!(s.net.mesh_peers(Topic::Epochs).await.unwrap(), 0);
    // A signet object cannot even be published by a regtest node.
    assert!(r
        .net
        .publish(&GossipMessage::Epoch(Box::new(headers(1, cairn_spec::Network::Signet).remove(0))))
        .await
        .is_err());
    for n in [&r, &s, &r2] {
        n.net.shutdown().await;
    }
}

/// Requests answered as work done give their token back (SPEC.md §11.5): a peer doing work
/// is served far past the rate, and nothing carries over to what it asks beyond its work,
/// which is limited as before. The node also finds a connected peer by its x-only key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_done_is_refunded_and_only_what_is_asked_beyond_it_is_limited() {
    let mut cfg = config(cairn_spec::Network::Regtest);
    cfg.requests_per_second = 1;
    cfg.request_burst = 3;
    let server = start_with(70, cfg).await;
    let client = start(71).await;
    client.net.dial(&server.addr).await.unwrap();
    let peer = server.net.local_peer();
    let ask = |body: RequestBody| {
        let (net, peer) = (client.net.clone(), peer);
        async move { net.request(&peer, body, Duration::from_secs(5)).await.unwrap() }
    };
    // Forty pieces of work in a row at a rate of one a second with a burst of three.
    for i in 0..40 {
        assert_eq!(ask(RequestBody::GetTerms).await, ResponseBody::Ack, "work {i}");
    }
    assert_eq!(server.net.metrics().rate_limited, 0);
    // What it asks beyond its work: the burst, then refusals.
    let mut reads = Vec::new();
    let began = std::time::Instant::now();
    for _ in 0..10 {
        reads.push(ask(RequestBody::GetReceipt { id: Hash32::ZERO }).await);
    }
    let refilled = began.elapsed().as_secs() as usize + 1;
    let served = reads.iter().filter(|a| **a == ResponseBody::Ack).count();
    assert!(served <= 3 + refilled, "the burst and what refilled meanwhile: {reads:?}");
    assert!(server.net.metrics().rate_limited >= 2);

    // The server reaches the client by its protocol key alone (x-only: either parity).
    let client_key = SigningKey::from_secret_bytes([71; 32]).unwrap().public();
    let found = server.net.connected_peer_of(&client_key).await.unwrap();
    assert_eq!(found, Some(client.net.local_peer()));
    let stranger = SigningKey::from_secret_bytes([72; 32]).unwrap().public();
    assert_eq!(server.net.connected_peer_of(&stranger).await.unwrap(), None);
    client.net.shutdown().await;
    server.net.shutdown().await;
}

/// A stranger's request (one the application answers `Cost::Forfeit`) puts its sender a
/// second of the rate in debt: what it asks next, however much burst it had left, is refused
/// by the network layer without reaching the application, until the second has passed; a
/// burst of forfeits owes no more than one second; other peers are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_request_costs_it_a_second_of_the_rate() {
    let mut cfg = config(cairn_spec::Network::Regtest);
    cfg.requests_per_second = 5;
    cfg.request_burst = 50;
    let server = start_with(73, cfg).await;
    let stranger = start(74).await;
    let honest = start(75).await;
    stranger.net.dial(&server.addr).await.unwrap();
    honest.net.dial(&server.addr).await.unwrap();
    let peer = server.net.local_peer();
    let ask = |net: &Network, body: RequestBody| {
        let net = net.clone();
        async move { net.request(&peer, body, Duration::from_secs(5)).await.unwrap() }
    };
    let ledger = || RequestBody::GetLedger { height: 0, from: 0, count: 1 };
    let read = || RequestBody::GetReceipt { id: Hash32::ZERO };
    // Ten at once: those the burst admitted before the first forfeit was answered are served
    // (and forfeit), the rest refused; together they owe one second, not ten.
    let all = futures::future::join_all((0..10).map(|_| ask(&stranger.net, ledger()))).await;
    assert!(all.contains(&ResponseBody::Ack), "{all:?}");
    assert!(
        all.iter().all(|a| *a == ResponseBody::Ack
            || matches!(a, ResponseBody::Error { reason: ErrorReason::RateLimited, .. })),
        "{all:?}"
    );
    let began = std::time::Instant::now();
    let limited = server.net.metrics().rate_limited;
    // The burst it still had left buys nothing now.
    let next = ask(&stranger.net, read()).await;
    assert!(
        matches!(&next, ResponseBody::Error { reason: ErrorReason::RateLimited, .. }),
        "in debt, refused by the network layer: {next:?}"
    );
    assert_eq!(server.net.metrics().rate_limited, limited + 1);
    // Another peer is served as before.
    assert_eq!(ask(&honest.net, read()).await, ResponseBody::Ack);
    // After the second (and the refill of the one token), it is served again.
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(began.elapsed())).await;
    assert_eq!(ask(&stranger.net, read()).await, ResponseBody::Ack, "the debt is one second");
    stranger.net.shutdown().await;
    honest.net.shutdown().await;
    server.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_rate_are_refused() {
    let mut cfg = config(cairn_spec::Network::Regtest);
    cfg.requests_per_second = 1;
    cfg.request_burst = 3;
    let server = start_with(60, cfg).await;
    let client = start(61).await;
    client.net.dial(&server.addr).await.unwrap();
    let peer = server.net.local_peer();
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(
            client
                .net
                .request(&peer, RequestBody::GetReceipt { id: Hash32::ZERO }, Duration::from_secs(5))
                .await
                .unwrap(),
        );
    }
    assert_eq!(answers.iter().filter(|a| **a == ResponseBody::Ack).count(), 3, "{answers:?}");
    assert!(answers
        .iter()
        .any(|a| matches!(a, ResponseBody::Error { reason: ErrorReason::RateLimited, .. })));
    assert!(server.net.metrics().rate_limited >= 2);
    client.net.shutdown().await;
    server.net.shutdown().await;

    // A peer that keeps hammering past its strikes is disconnected.
    let mut cfg = config(cairn_spec::Network::Regtest);
    cfg.requests_per_second = 1;
    cfg.request_burst = 1;
    cfg.max_strikes = 3;
    let server = start_with(62, cfg).await;
    let client = start(63).await;
    client.net.dial(&server.addr).await.unwrap();
    let peer = server.net.local_peer();
    for _ in 0..5 {
        let _ = client
            .net
            .request(&peer, RequestBody::GetReceipt { id: Hash32::ZERO }, Duration::from_secs(2))
            .await;
    }
    until("the hammering client to be dropped", Duration::from_secs(10), || {
        server.state.lock().unwrap().disconnected.contains(&client.net.local_peer())
    })
    .await;
    client.net.shutdown().await;
    server.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_honest_peer_is_refused_but_never_dropped_and_reconnecting_buys_no_burst() {
    let mut cfg = config(cairn_spec::Network::Regtest);
    cfg.requests_per_second = 1;
    cfg.request_burst = 4;
    cfg.max_strikes = 2;
    let server = start_with(64, cfg).await;
    let client = start(65).await;
    client.net.dial(&server.addr).await.unwrap();
    let peer = server.net.local_peer();
    let ask = |timeout| {
        client.net.request(&peer, RequestBody::GetReceipt { id: Hash32::ZERO }, Duration::from_secs(timeout))
    };
    let limited = |a: &Result<ResponseBody, _>| {
        matches!(a, Ok(ResponseBody::Error { reason: ErrorReason::RateLimited, .. }))
    };
    // Bursts of concurrent requests above the rate, as a worker with many jobs in flight
    // sends them, each followed by the back-off a refusal asks for: refused, never struck.
    let mut refused = 0;
    for _ in 0..2 {
        let answers = futures::future::join_all((0..6).map(|_| ask(5))).await;
        refused += answers.iter().filter(|a| limited(a)).count();
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    assert!(refused >= 2, "the bursts were over the rate: {refused} refused");
    assert!(
        !server.state.lock().unwrap().disconnected.contains(&client.net.local_peer()),
        "an honest peer that backs off was dropped"
    );
    assert_eq!(ask(5).await.unwrap(), ResponseBody::Ack, "still served");

    // Spend the bucket, disconnect and come back at once: no fresh burst. A fresh bucket
    // would serve all four of a burst; the one kept has refilled a token or two by then.
    let _ = futures::future::join_all((0..6).map(|_| ask(5))).await;
    let _ = client.net.disconnect(&peer).await;
    until("the client to be gone", Duration::from_secs(10), || {
        server.state.lock().unwrap().disconnected.contains(&client.net.local_peer())
    })
    .await;
    client.net.dial(&server.addr).await.unwrap();
    // The new connection may take a moment: requests that found none are sent again until a
    // whole burst's worth (four) was answered. A fresh bucket would serve all four; the one
    // kept, with a token or two refilled, refuses some.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut answered = Vec::new();
    while answered.len() < 4 {
        assert!(std::time::Instant::now() < deadline, "the client never got back: {answered:?}");
        let answers = futures::future::join_all((0..4 - answered.len()).map(|_| ask(5))).await;
        answered.extend(answers.into_iter().filter(Result::is_ok));
        if answered.len() < 4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(answered.iter().any(limited), "a reconnect refilled the bucket: {answered:?}");
    client.net.shutdown().await;
    server.net.shutdown().await;
}

/// A client that writes raw bytes on Cairn's request protocol: what a broken or hostile
/// implementation sends, which Cairn's own handle cannot.
mod raw {
    use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use libp2p::request_response::Codec;
    use libp2p::StreamProtocol;
    use std::io;

    #[derive(Clone, Default)]
    pub struct RawCodec;

    impl Codec for RawCodec {
        type Protocol = StreamProtocol;
        type Request = Vec<u8>;
        type Response = Vec<u8>;

        async fn read_request<T: AsyncRead + Unpin + Send>(
            &mut self,
            _: &StreamProtocol,
            _: &mut T,
        ) -> io::Result<Vec<u8>> {
            Err(io::Error::other("the raw client serves nothing"))
        }

        async fn read_response<T: AsyncRead + Unpin + Send>(
            &mut self,
            _: &StreamProtocol,
            io: &mut T,
        ) -> io::Result<Vec<u8>> {
            let mut out = Vec::new();
            io.take(1 << 20).read_to_end(&mut out).await?;
            Ok(out)
        }

        async fn write_request<T: AsyncWrite + Unpin + Send>(
            &mut self,
            _: &StreamProtocol,
            io: &mut T,
            req: Vec<u8>,
        ) -> io::Result<()> {
            io.write_all(&req).await?;
            io.close().await
        }

        async fn write_response<T: AsyncWrite + Unpin + Send>(
            &mut self,
            _: &StreamProtocol,
            _: &mut T,
            _: Vec<u8>,
        ) -> io::Result<()> {
            Err(io::Error::other("the raw client serves nothing"))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_frames_are_strikes_and_cost_the_connection() {
    use futures::StreamExt;
    use libp2p::request_response::{self, ProtocolSupport};
    use libp2p::swarm::SwarmEvent;
    use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol};

    let mut cfg = config(cairn_spec::Network::Regtest);
    cfg.max_strikes = 3;
    let server = start_with(66, cfg).await;
    let server_id: PeerId = server.addr.rsplit('/').next().unwrap().parse().unwrap();
    let protocol =
        StreamProtocol::try_from_owned(cairn_spec::wire::request_protocol(cairn_spec::Network::Regtest))
            .unwrap();
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::<raw::RawCodec>::new(
                [(protocol, ProtocolSupport::Outbound)],
                request_response::Config::default(),
            )
        })
        .unwrap()
        // The client keeps its connection up on its own: only the server may end it.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let me = swarm.local_peer_id().to_string();
    swarm.dial(server.addr.parse::<Multiaddr>().unwrap()).unwrap();
    // A well-formed length, then bytes that are no request; sent until the server hangs up.
    let garbage = [0u8, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef].to_vec();
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        let mut sent = 0;
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } if sent == 0 => {
                    for _ in 0..3 {
                        swarm.behaviour_mut().send_request(&server_id, garbage.clone());
                        sent += 1;
                    }
                }
                SwarmEvent::ConnectionClosed { peer_id, .. } if peer_id == server_id => return sent,
                _ => {}
            }
        }
    })
    .await
    .expect("the server kept a peer sending malformed frames");
    assert_eq!(closed, 3);
    until("the server to record the drop", Duration::from_secs(5), || {
        server.state.lock().unwrap().disconnected.iter().any(|p| p.to_string() == me)
    })
    .await;
    server.net.shutdown().await;
}
