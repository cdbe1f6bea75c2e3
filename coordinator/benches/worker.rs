//! `cargo bench -p cairn-coordinator --bench worker`: the worker's side of Cairn on this
//! machine.
//! 1. Embeddings per second with all-MiniLM-L6-v2 (candle, CPU) for batches of 1, 8 and 32
//!    sentences, and the FLOP/s that makes at batch 32 as a ratio to this machine's f32
//!    matrix-multiply FLOP/s measured in the same run (candle's own matmul on the shapes of
//!    the model's feed-forward layer).
//! 2. The protocol's overhead per task: a real coordinator node over loopback (RocksDB,
//!    synced writes) and a worker speaking libp2p run tasks one after another; the time of
//!    claim, commit and reveal round trips is set against the execution time of the same task
//!    (batches of 1 and 8 sentences), as a fraction.
//!
//! Prints figures; asserts nothing about time. Skips without the model.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::indexing_slicing,
    missing_docs,
    dead_code
)]

use cairn_testkit::node as common;

use std::time::{Duration, Instant};

use cairn_spec::{Hash32, ResponseBody};
use cairn_worker::executor::embedding::MiniLm;
use cairn_worker::executor::Executor;
use cairn_worker::models;

const WORDS: [&str; 16] = [
    "miners",
    "verify",
    "blocks",
    "while",
    "workers",
    "embed",
    "sentences",
    "about",
    "rivers",
    "markets",
    "guitars",
    "and",
    "bread",
    "under",
    "a",
    "quiet",
];

fn sentence(i: usize) -> String {
    (0..12).map(|k| WORDS[(i * 7 + k * 3 + k * k) % WORDS.len()]).collect::<Vec<_>>().join(" ")
}

fn main() {
    let dir = match models::fetch_minilm(&models::default_models_dir(), None) {
        Ok(d) => d,
        Err(e) => {
            return cairn_testkit::skip(&format!("model unavailable ({e}); run `cairn models fetch minilm`"));
        }
    };
    let m = MiniLm::load(&dir, Some(models::minilm_sha256())).unwrap();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("all-MiniLM-L6-v2 on candle (CPU, {threads} threads), 12-word sentences");
    let mut single_rate = 0.0;
    let mut rates = Vec::new();
    for batch in [1usize, 8, 32] {
        let sents: Vec<String> = (0..batch).map(sentence).collect();
        let refs: Vec<&str> = sents.iter().map(String::as_str).collect();
        m.embed(&refs).unwrap(); // warm
        let rounds = (256 / batch).max(8);
        let t = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(m.embed(&refs).unwrap());
        }
        let secs = t.elapsed().as_secs_f64();
        let rate = (rounds * batch) as f64 / secs;
        if batch == 1 {
            single_rate = rate;
        }
        rates.push(format!("{rate:.1}"));
        println!(
            "  batch {batch:>2}: {rate:8.1} embeddings/s  ({:.2} ms per batch; {:.2}x batch-1 throughput)",
            secs * 1000.0 / rounds as f64,
            rate / single_rate
        );
    }

    println!("summary: embeddings per second, batches of 1 / 8 / 32 = {}", rates.join(" / "));
    // FLOPs of one embedding: 6 layers of hidden 384 and feed-forward 1536 over L tokens:
    // Q, K, V and output projections (4 · 2·L·384²), the feed-forward (2 · 2·L·384·1536) and
    // attention (2 · 2·L²·384). A 12-word sentence of these words is about 14 tokens (each
    // word one WordPiece, plus [CLS] and [SEP]).
    let l = 14.0f64;
    let flops = 6.0 * (2.0 * l * 384.0 * (4.0 * 384.0 + 2.0 * 1536.0) + 4.0 * l * l * 384.0);
    let rate32: f64 = rates.last().and_then(|r| r.parse().ok()).unwrap_or(0.0);
    let achieved = rate32 * flops;
    let baseline = matmul_flops();
    println!(
        "  batch 32: about {:.1} GFLOP/s ({:.0} MFLOP per embedding); f32 matmul on this machine (candle, 448x384 . 384x1536): {:.1} GFLOP/s; ratio {:.2}",
        achieved / 1e9,
        flops / 1e6,
        baseline / 1e9,
        achieved / baseline
    );
    println!(
        "summary: MiniLM FLOP/s at batch 32 / f32 matmul FLOP/s (same run) = {:.2}",
        achieved / baseline
    );
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(protocol_overhead(m));
}

/// This machine's f32 matrix-multiply FLOP/s through candle (every core), on the shape of
/// a batch of 32 × 14 tokens through the model's feed-forward layer; best of several.
fn matmul_flops() -> f64 {
    use candle_core::{Device, Tensor};
    let (m, k, n) = (448usize, 384usize, 1536usize);
    let a = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu).unwrap();
    let b = Tensor::randn(0f32, 1.0, (k, n), &Device::Cpu).unwrap();
    std::hint::black_box(a.matmul(&b).unwrap());
    let mut best = f64::MAX;
    for _ in 0..5 {
        let reps = 20;
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(a.matmul(&b).unwrap());
        }
        best = best.min(t.elapsed().as_secs_f64() / f64::from(reps));
    }
    2.0 * (m * k * n) as f64 / best
}

async fn protocol_overhead(m: MiniLm) {
    let dir = tempfile::tempdir().unwrap();
    let class = common::minilm_class("minilm", 0.9999, 1, 10, 65536);
    let cfg = common::node_config(dir.path(), 4, vec![class]);
    let (info, stop, handle) = common::start_node(&cfg).await;
    let token = std::fs::read_to_string(dir.path().join("operator.token")).unwrap().trim().to_string();
    let w = common::Worker::start(common::key(7), &info.p2p[0]).await;
    // A second worker takes the audit replicas the coordinator adds (untimed).
    let auditor = common::Worker::start(common::key(8), &info.p2p[0]).await;
    let coord = cairn_spec::PubKey::from_hex(&info.coordinator).unwrap();
    assert!(matches!(w.register(coord, 4).await, ResponseBody::Ack));
    assert!(matches!(auditor.register(coord, 4).await, ResponseBody::Ack));
    println!("protocol overhead per task (coordinator node on loopback: libp2p, RocksDB synced writes; replication 1)");
    let mut nonce = 0u64;
    for batch in [1usize, 8] {
        let n = 30;
        let (mut proto, mut exec, mut audited) = (Duration::ZERO, Duration::ZERO, 0);
        for _ in 0..n {
            nonce += 1;
            let text: Vec<String> = (0..batch).map(|k| sentence(nonce as usize * 31 + k)).collect();
            let body = serde_json::json!({
                "class": "minilm", "input_text": text.join("\n"), "units": batch, "budget_sats": 100_000, "nonce": nonce,
            });
            let (s, v) = common::http(info.api, "POST", "/v1/tasks", Some(&token), Some(&body.to_string()));
            assert!(s == 201 || s == 200, "{s} {v}");
            let id = Hash32::from_hex(v["id"].as_str().unwrap()).unwrap();
            // The coordinator draws the replica among the workers that asked: whichever it is
            // takes the task, and the other one is drawn for the audit replica when there is one.
            let t = Instant::now();
            let (first, other) = loop {
                if matches!(w.claim(id).await, ResponseBody::Lease { .. }) {
                    break (&w, &auditor);
                }
                if matches!(auditor.claim(id).await, ResponseBody::Lease { .. }) {
                    break (&auditor, &w);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            proto += t.elapsed();
            let t = Instant::now();
            let result = m.run(text.join("\n").as_bytes()).unwrap();
            exec += t.elapsed();
            let t = Instant::now();
            assert!(matches!(first.commit(id, &result).await, ResponseBody::Ack));
            let answer = first.reveal(id, &result).await;
            proto += t.elapsed();
            let (_, view) = common::http(info.api, "GET", &format!("/v1/tasks/{id}"), None, None);
            if view["phase"] == "open" {
                // Audited (drawn once the reveal is in): the other worker answers too.
                assert!(matches!(other.take(id, Duration::from_secs(10)).await, ResponseBody::Lease { .. }));
                assert!(matches!(other.commit(id, &result).await, ResponseBody::Ack));
                assert!(matches!(other.reveal(id, &result).await, ResponseBody::Ack));
                audited += 1;
            }
            assert!(matches!(answer, ResponseBody::Ack), "{answer:?}");
        }
        let (p, e) = (proto.as_secs_f64() * 1000.0 / n as f64, exec.as_secs_f64() * 1000.0 / n as f64);
        println!(
            "  batch {batch:>2}: execution {e:7.2} ms, claim+commit+reveal {p:6.2} ms per task: overhead {:.2}x the execution time ({audited} of {n} audited)",
            p / e
        );
    }
    let _ = stop.send(());
    let _ = handle.await;
}
