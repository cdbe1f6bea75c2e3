//! An adversarial network on loopback: a coordinator node and three honest worker agents
//! process a stream of tasks while attackers
//! - flood every gossip topic with malformed, oversize, wrongly signed, wrong-topic and
//!   replayed messages (one libp2p peer);
//! - flood the request protocol with forged and malformed requests past its rate (another);
//! - open many connections: a crowd of extra libp2p identities and raw TCP sockets that
//!   send junk or nothing.
//!
//! Every honest task is decided, the honest workers are never penalised, nothing the
//! attackers sent changed the coordinator's state (no task, worker or receipt of theirs),
//! the junk is counted as rejected, and the gossip flooder is graylisted (its score below
//! the threshold, read from `/metrics`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use cairn_testkit::node as common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_p2p::{Acceptance, Network, NetworkConfig, NetworkEvent, Peer};
use cairn_spec::{
    Claim, Encode, ErrorReason, GossipMessage, Hash32, Payload, RequestBody, ResponseBody, Signed, Task,
    TaskAnnouncement, Topic,
};
use common::{http, key, start_agent, start_node};
use serde_json::Value;

/// A metric's value from the Prometheus text at `/metrics`.
fn metric(api: std::net::SocketAddr, name: &str) -> f64 {
    let (s, v) = http(api, "GET", "/metrics", None, None);
    assert_eq!(s, 200);
    let text = v.as_str().unwrap_or_default().to_string();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|x| x.parse().ok())
        .unwrap_or(0.0)
}

async fn peer(seed: u32, coord_addr: &str) -> (Network, Arc<Mutex<Vec<Signed<TaskAnnouncement>>>>) {
    let mut cfg = NetworkConfig::new(cairn_spec::Network::Regtest);
    cfg.heartbeat = Duration::from_millis(200);
    let (net, mut events) = Network::start(cfg, &key(seed)).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (n2, s2) = (net.clone(), seen.clone());
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if let NetworkEvent::Gossip { message, id, .. } = ev {
                if let GossipMessage::Task(t) = *message {
                    s2.lock().unwrap().push(t);
                }
                let _ = n2.report(id, Acceptance::Accept).await;
            }
        }
    });
    net.dial(coord_addr).await.unwrap();
    (net, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_honest_network_keeps_working_under_attack_and_the_flooder_is_graylisted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        common::node_config(&dir.path().join("coord"), 4, vec![common::exact_class("upper", 2, 10, 30)]);
    let (info, stop, handle) = start_node(&cfg).await;
    let api = info.api;
    let coord_addr = info.p2p[0].clone();
    let coord_peer: Peer = coord_addr.rsplit('/').next().unwrap().parse().unwrap();
    let coord_key = cairn_spec::PubKey::from_hex(&info.coordinator).unwrap();
    let token = std::fs::read_to_string(dir.path().join("coord/operator.token")).unwrap().trim().to_string();
    let mut agents = Vec::new();
    let mut honest = Vec::new();
    for i in 0..3 {
        let (w, a) =
            start_agent(&dir.path().join(format!("w{i}")), &coord_addr, Arc::new(common::Upper)).await;
        honest.push(w.key);
        agents.push(a);
    }

    // The attackers.
    let (flooder, seen) = peer(900, &coord_addr).await;
    let (requester, _) = peer(901, &coord_addr).await;
    let mut crowd = Vec::new();
    for i in 0..12 {
        crowd.push(peer(910 + i, &coord_addr).await.0);
    }
    let port: u16 = coord_addr.split('/').nth(4).unwrap().parse().unwrap();
    let sockets: Vec<std::net::TcpStream> = (0..100)
        .filter_map(|i| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            if i % 2 == 0 {
                let _ = s.write_all(&[0xff; 512]);
            }
            Some(s)
        })
        .collect();
    let rejects_before = metric(api, "cairn_p2p_rejects_total");

    // Honest tasks go in while the flood runs.
    let flood_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let (flooder, seen, stop) = (flooder.clone(), seen.clone(), flood_stop.clone());
        tokio::spawn(async move {
            let mut sent = 0u64;
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                // Malformed and oversize on every topic.
                for t in [Topic::Tasks, Topic::Receipts, Topic::Epochs] {
                    let _ = flooder.publish_unchecked(t, vec![0xde, 0xad, n as u8]).await;
                    sent += 1;
                }
                let _ = flooder.publish_unchecked(Topic::Tasks, vec![n as u8; 300 * 1024]).await;
                // An announcement in the coordinator's name, signed by the attacker.
                let task = Task {
                    network: cairn_spec::Network::Regtest,
                    coordinator: coord_key,
                    class: Hash32([1; 32]),
                    requester: coord_key,
                    nonce: 1_000_000 + n,
                    units: 1,
                    budget_sats: 1000,
                    created_at: common::now(),
                    input: Payload::Inline(b"evil".to_vec()),
                };
                // (The signer is the body's coordinator; the attacker's key cannot sign for it.)
                let forged =
                    Signed::sign(TaskAnnouncement { task, announced_at: common::now() }, &key(900), &[0; 32]);
                let bytes = GossipMessage::Task(forged.clone()).to_bytes();
                let _ = flooder.publish_unchecked(Topic::Tasks, bytes.clone()).await;
                // The same on the wrong topic.
                let _ = flooder.publish_unchecked(Topic::Epochs, bytes).await;
                // A genuine announcement replayed.
                let replay = seen.lock().unwrap().first().cloned();
                if let Some(a) = replay {
                    let _ = flooder.publish_unchecked(Topic::Tasks, GossipMessage::Task(a).to_bytes()).await;
                }
                sent += 4;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sent
        })
    };
    let req_flood = {
        let (requester, stop, victim, addr) =
            (requester.clone(), flood_stop.clone(), honest[0], coord_addr.clone());
        tokio::spawn(async move {
            let (mut refused, mut limited) = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                // Claims in an honest worker's name, signed by the attacker, 40 at once (past
                // the per-peer request rate).
                let mut burst = tokio::task::JoinSet::new();
                for i in 0..40u8 {
                    let c = Signed::sign(
                        Claim { task: Hash32([i; 32]), worker: victim, claimed_at: common::now() },
                        &key(901),
                        &[0; 32],
                    );
                    let (r, p) = (requester.clone(), coord_peer);
                    burst.spawn(
                        async move { r.request(&p, RequestBody::Claim(c), Duration::from_secs(2)).await },
                    );
                }
                let mut dropped = false;
                while let Some(answer) = burst.join_next().await {
                    match answer.unwrap() {
                        Ok(ResponseBody::Error {
                            reason: ErrorReason::RateLimited | ErrorReason::WorkerLimit,
                            ..
                        }) => limited += 1,
                        Ok(ResponseBody::Error { .. }) => refused += 1,
                        Ok(other) => panic!("a forged claim was answered with {other:?}"),
                        Err(_) => dropped = true,
                    }
                }
                if dropped {
                    // Dropped for misbehaving: come back, as an attacker would.
                    let _ = requester.dial(&addr).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            (refused, limited)
        })
    };

    let mut ids = Vec::new();
    for n in 0..20u64 {
        let body = serde_json::json!({
            "class": "upper", "input_text": format!("honest task {n}"), "units": 1, "budget_sats": 1000, "nonce": n,
        });
        let (s, v) = http(api, "POST", "/v1/tasks", Some(&token), Some(&body.to_string()));
        assert!(s == 201 || s == 200, "{s} {v}");
        ids.push(v["id"].as_str().unwrap().to_string());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let views: Vec<Value> =
            ids.iter().map(|id| http(api, "GET", &format!("/v1/tasks/{id}"), None, None).1).collect();
        let open: Vec<&Value> = views.iter().filter(|v| v["phase"] != "decided").collect();
        assert!(views.iter().all(|v| v["phase"] != "failed"), "{views:?}");
        if open.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} honest tasks still open under attack: {:?}",
            open.len(),
            open[0]
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The flooder is graylisted while the flood runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(api, "cairn_p2p_graylisted_peers") < 1.0 {
        assert!(Instant::now() < deadline, "the gossip flooder was never graylisted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    flood_stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = flood.await.unwrap();
    let (refused, limited) = req_flood.await.unwrap();
    let rejected = metric(api, "cairn_p2p_rejects_total") - rejects_before;
    eprintln!(
        "adversary: {sent} junk gossip messages, {refused} forged requests refused, {limited} rate-limited, {} raw sockets, {} sybil peers; {rejected} rejected at the coordinator",
        sockets.len(),
        crowd.len()
    );
    // Junk is rejected until the flooder's score crosses the graylist threshold (five or so
    // invalid messages); after that gossipsub drops its messages unread.
    assert!(rejected >= 3.0, "junk was not counted as rejected: {rejected}");
    assert!(refused + limited > 0, "no forged request got an answer");

    // Nothing the attackers sent changed state: no task, worker or receipt of theirs, and
    // the honest workers are clean.
    let (_, tasks) = http(api, "GET", "/v1/tasks?limit=500", None, None);
    let tasks = tasks["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 20, "only the honest tasks exist");
    let (_, workers) = http(api, "GET", "/v1/workers", None, None);
    let workers = workers["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 3, "{workers:?}");
    for w in workers {
        assert_eq!(w["status"], "active", "{w}");
        assert_eq!(w["rejected"], 0, "an honest worker was penalised: {w}");
        assert!(honest.iter().any(|k| k.to_hex() == w["key"].as_str().unwrap()));
    }
    let (_, stats) = http(api, "GET", "/v1/stats", None, None);
    eprintln!("stats: {stats}");

    drop(sockets);
    for n in crowd.iter().chain([&flooder, &requester]) {
        n.shutdown().await;
    }
    for (s, h) in agents {
        let _ = s.send(());
        let _ = h.await;
    }
    let _ = stop.send(());
    let _ = handle.await;
}
