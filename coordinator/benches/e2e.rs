//! `cargo bench --workspace --bench e2e`: end-to-end tasks per second and latency on
//! loopback. A real coordinator node (libp2p, RocksDB with synced writes, the HTTP API) and
//! three real worker agents (`cairn_worker::agent`, each with its own libp2p node and
//! journal) in this process; the executor is trivial (upper-cases its input, in process), so
//! what is measured is the protocol: announcement gossip, claim, commitment, reveal,
//! comparison, receipt.
//!
//! Tasks go in through `POST /v1/tasks` with a fixed number in flight (closed loop); a task's
//! latency runs from its submission's answer to the first poll of `GET /v1/tasks/{id}` that
//! shows it decided, so it includes up to one polling round (printed as the resolution).
//! One warm-up task is decided first (untimed), so the workers are in the gossip mesh.
//! Prints tasks/s, p50, p99 and max; asserts nothing about time.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::indexing_slicing,
    missing_docs,
    dead_code
)]

use cairn_testkit::node as common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_spec::Hash32;

const WORKERS: usize = 3;
const REPLICATION: u8 = 2;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test" || a == "--quick");
    let total: usize = std::env::var("CAIRN_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 20 } else { 600 });
    let window: usize = std::env::var("CAIRN_BENCH_WINDOW").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(total, window));
}

async fn run(total: usize, window: usize) {
    let dir = tempfile::tempdir().unwrap();
    let class = common::exact_class("upper", REPLICATION, 10, 60);
    let mut cfg = common::node_config(&dir.path().join("coord"), 4, vec![class]);
    cfg.lifecycle.max_leases_per_worker = 1000;
    let (info, stop, handle) = common::start_node(&cfg).await;
    let api = info.api;
    let token = std::fs::read_to_string(dir.path().join("coord/operator.token")).unwrap().trim().to_string();
    let mut workers = Vec::new();
    for i in 0..WORKERS {
        let (_, agent) =
            common::start_agent(&dir.path().join(format!("w{i}")), &info.p2p[0], Arc::new(common::Upper))
                .await;
        workers.push(agent);
    }

    // The closed loop runs on a blocking thread (the HTTP client of the tests is blocking).
    let token2 = token.clone();
    let (latencies, secs, rounds, poll_time) = tokio::task::spawn_blocking(move || {
        let submit = |n: usize| -> Hash32 {
            let body = serde_json::json!({
                "class": "upper", "input_text": format!("task number {n} of the end-to-end run"),
                "units": 1, "budget_sats": 1000, "nonce": n as u64,
            });
            let (s, v) = common::http(api, "POST", "/v1/tasks", Some(&token2), Some(&body.to_string()));
            assert!(s == 201 || s == 200, "{s} {v}");
            Hash32::from_hex(v["id"].as_str().unwrap()).unwrap()
        };
        // Warm-up (untimed): one task decided shows every worker is in the gossip mesh; an
        // announcement made before that reaches them only when the coordinator announces
        // open tasks again (every 10 s).
        let warm = submit(total + 1_000_000);
        let until = Instant::now() + Duration::from_secs(60);
        while common::http(api, "GET", &format!("/v1/tasks/{warm}"), None, None).1["phase"] != "decided" {
            assert!(Instant::now() < until, "the warm-up task was not decided in 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut inflight: Vec<(Hash32, Instant)> = Vec::new();
        let mut latencies = Vec::with_capacity(total);
        let (mut next, mut rounds, mut poll_time) = (0usize, 0u64, Duration::ZERO);
        let deadline = Instant::now() + Duration::from_secs(600);
        let t0 = Instant::now();
        while latencies.len() < total {
            while inflight.len() < window && next < total {
                let id = submit(next);
                inflight.push((id, Instant::now()));
                next += 1;
            }
            let round = Instant::now();
            let mut i = 0;
            while i < inflight.len() {
                let (id, at) = inflight[i];
                let (_, v) = common::http(api, "GET", &format!("/v1/tasks/{id}"), None, None);
                match v["phase"].as_str() {
                    Some("decided") => {
                        latencies.push(at.elapsed());
                        inflight.swap_remove(i);
                    }
                    Some("failed") => panic!("task {id} failed: {v}"),
                    _ => i += 1,
                }
            }
            poll_time += round.elapsed();
            rounds += 1;
            assert!(Instant::now() < deadline, "{} tasks still open after 600 s", inflight.len());
            std::thread::sleep(Duration::from_millis(1));
        }
        (latencies, t0.elapsed().as_secs_f64(), rounds, poll_time)
    })
    .await
    .unwrap();

    let (_, stats) = common::http(api, "GET", "/v1/stats", None, None);
    let mut sorted = latencies.clone();
    sorted.sort();
    println!(
        "end to end on loopback: coordinator node + {WORKERS} worker agents (libp2p, RocksDB synced), trivial executor, replication {REPLICATION}, {window} tasks in flight"
    );
    println!(
        "  {} tasks decided in {secs:.2} s = {:.1} tasks/s",
        latencies.len(),
        latencies.len() as f64 / secs
    );
    println!(
        "  latency submit -> decided: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (polling resolution ~{:.1} ms)",
        percentile(&sorted, 0.50).as_secs_f64() * 1e3,
        percentile(&sorted, 0.99).as_secs_f64() * 1e3,
        sorted.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        poll_time.as_secs_f64() * 1e3 / rounds.max(1) as f64 + 1.0
    );
    println!("  coordinator stats: {stats}");
    println!();
    println!(
        "summary: end-to-end tasks per second (3 workers, trivial executor) = {:.1}",
        latencies.len() as f64 / secs
    );
    println!(
        "summary: end-to-end latency p50 / p99 = {:.1} ms / {:.1} ms",
        percentile(&sorted, 0.50).as_secs_f64() * 1e3,
        percentile(&sorted, 0.99).as_secs_f64() * 1e3
    );
    for (s, h) in workers {
        let _ = s.send(());
        let _ = h.await;
    }
    let _ = stop.send(());
    let _ = handle.await;
}
