//! `cargo run --release -p cairn-p2p --example p2p-bench`: five nodes on loopback in a line
//! (the worst case: four hops end to end). Measures gossip propagation latency (p50/p99 over
//! every message at every node) and request-response throughput for small messages between
//! two directly connected nodes. Prints figures; asserts nothing about time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::indexing_slicing,
    missing_docs
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_p2p::{Acceptance, Network, NetworkConfig, NetworkEvent};
use cairn_spec::hash::sha256;
use cairn_spec::wire::Topic;
use cairn_spec::{
    GossipMessage, Hash32, Network as Chain, RequestBody, ResponseBody, SignedReceipt, SigningKey, Verdict,
    WorkReceipt,
};

type Arrivals = Arc<Mutex<HashMap<Hash32, Vec<Instant>>>>;

async fn node(seed: u8, arrivals: Arrivals) -> (Network, String) {
    let mut cfg = NetworkConfig::new(Chain::Regtest);
    cfg.heartbeat = Duration::from_millis(200);
    cfg.requests_per_second = 1_000_000;
    cfg.request_burst = 1_000_000;
    let key = SigningKey::from_secret_bytes([seed; 32]).unwrap();
    let (net, mut events) = Network::start(cfg, &key).await.unwrap();
    let n = net.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            match ev {
                NetworkEvent::Gossip { message, id, .. } => {
                    if let GossipMessage::Receipt(r) = message.as_ref() {
                        arrivals.lock().unwrap().entry(r.body.task).or_default().push(Instant::now());
                    }
                    let _ = n.report(id, Acceptance::Accept).await;
                }
                NetworkEvent::Request { reply, .. } => {
                    let _ = n.respond(reply, ResponseBody::Ack).await;
                }
                _ => {}
            }
        }
    });
    let addr = net.wait_listening(Duration::from_secs(5)).await.unwrap()[0].clone();
    (net, addr)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let arrivals: Arrivals = Arc::default();
    let mut nodes: Vec<(Network, String)> = Vec::new();
    for i in 0..5u8 {
        let (net, addr) = node(100 + i, arrivals.clone()).await;
        if let Some((_, prev_addr)) = nodes.last() {
            net.dial(prev_addr).await.unwrap();
        }
        nodes.push((net, addr));
    }
    for (n, _) in &nodes {
        while n.mesh_peers(Topic::Receipts).await.unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let coord = SigningKey::from_secret_bytes([9; 32]).unwrap();
    let count = 300;
    let mut sent = HashMap::new();
    for i in 0..count {
        let body = WorkReceipt {
            network: Chain::Regtest,
            coordinator: coord.public(),
            epoch: 0,
            task: sha256(&(i as u64).to_be_bytes()),
            class: sha256(b"c"),
            worker: coord.public(),
            result_hash: sha256(b"r"),
            verdict: Verdict::Accepted,
            units: 1,
            reward_sats: 1,
            draw_epoch: 0,
        };
        let msg = GossipMessage::Receipt(SignedReceipt::sign(body.clone(), &coord, &[0; 32]));
        sent.insert(body.task, Instant::now());
        nodes[0].0.publish(&msg).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrivals.lock().unwrap().values().map(Vec::len).sum::<usize>() < count * 4
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let arr = arrivals.lock().unwrap().clone();
    let mut lat: Vec<Duration> =
        arr.iter().flat_map(|(k, v)| v.iter().map(|t| t.duration_since(sent[k]))).collect();
    let delivered = lat.len();
    println!("== gossip propagation, 5 nodes in a line (1-4 hops), {count} messages ==");
    println!("deliveries: {delivered} of {}", count * 4);
    println!("p50: {:?}  p99: {:?}  max: {:?}", pct(&mut lat, 0.5), pct(&mut lat, 0.99), pct(&mut lat, 1.0));

    println!("\n== request-response, small messages, one direct connection ==");
    let server = nodes[0].0.local_peer();
    let client = nodes[1].0.clone();
    for concurrency in [1usize, 32] {
        let total = 2_000;
        let start = Instant::now();
        let mut handles = Vec::new();
        for w in 0..concurrency {
            let c = client.clone();
            handles.push(tokio::spawn(async move {
                let mut ok = 0;
                for _ in (w..total).step_by(concurrency) {
                    let r = c
                        .request(
                            &server,
                            RequestBody::GetReceipt { id: Hash32::ZERO },
                            Duration::from_secs(10),
                        )
                        .await;
                    if matches!(r, Ok(ResponseBody::Ack)) {
                        ok += 1;
                    }
                }
                ok
            }));
        }
        let mut ok = 0;
        for h in handles {
            ok += h.await.unwrap();
        }
        let el = start.elapsed();
        println!(
            "concurrency {concurrency:>2}: {ok} requests in {el:?} = {:.0} req/s (mean round trip {:.0} µs)",
            ok as f64 / el.as_secs_f64(),
            el.as_secs_f64() * 1e6 * concurrency as f64 / ok as f64
        );
    }
    for (n, _) in &nodes {
        n.shutdown().await;
    }
}
