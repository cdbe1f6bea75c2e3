//! `cargo bench --workspace --bench e2e`: end-to-end tasks per second and latency on
//! loopback. A real coordinator node (libp2p, RocksDB with synced writes, the HTTP API) and
//! three real worker agents (`cairn_worker::agent`, each with its own libp2p node and
//! journal) in this process; the executor is trivial (upper-cases its input, in process), so
//! what is measured is the protocol: announcement gossip, claim, commitment, reveal,
//! comparison, receipt.
//!
//! Tasks go in through `POST /v1/tasks` with a fixed number in flight (closed loop: that many
//! threads, each submitting a task and waiting for it); a task's latency runs from its
//! submission's answer to the answer of a long poll, `GET /v1/tasks/{id}?wait_ms=`, that
//! shows it decided (the node answers it as soon as the decision is on disk).
//! One warm-up task is decided first (untimed), so the workers are in the gossip mesh.
//! Prints tasks/s, p50, p99 and max, then where a task's time goes on the coordinator, stage
//! by stage (`cairn_task_stage_seconds` from `/metrics`: mean and the p50 bucket), and the
//! rest (the requester's polling); asserts nothing about time.
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

/// Count, mean (s) and the upper bound of the bucket holding the median (s) of one stage's
/// histogram in the OpenMetrics text.
fn stage_figures(text: &str, stage: &str) -> Option<(u64, f64, f64)> {
    let label = format!("stage=\"{stage}\"");
    let value = |name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains(&label))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    let count = value("cairn_task_stage_seconds_count")?;
    let sum = value("cairn_task_stage_seconds_sum")?;
    if count < 1.0 {
        return None;
    }
    let mut p50 = f64::INFINITY;
    for l in text.lines().filter(|l| l.starts_with("cairn_task_stage_seconds_bucket") && l.contains(&label)) {
        let le =
            l.split("le=\"").nth(1).and_then(|r| r.split('"').next()).and_then(|v| v.parse::<f64>().ok());
        let n = l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let (Some(le), Some(n)) = (le, n) {
            if n >= count / 2.0 {
                p50 = p50.min(le);
            }
        }
    }
    Some((count as u64, sum / count, p50))
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

    // The closed loop: `window` threads, each submitting a task and waiting for it to be
    // decided with a long poll (`GET /v1/tasks/{id}?wait_ms=`), then the next.
    let token2 = token.clone();
    let (latencies, secs) = tokio::task::spawn_blocking(move || {
        let submit = Arc::new(move |n: usize| -> Hash32 {
            let body = serde_json::json!({
                "class": "upper", "input_text": format!("task number {n} of the end-to-end run"),
                "units": 1, "budget_sats": 1000, "nonce": n as u64,
            });
            let (s, v) = common::http(api, "POST", "/v1/tasks", Some(&token2), Some(&body.to_string()));
            assert!(s == 201 || s == 200, "{s} {v}");
            Hash32::from_hex(v["id"].as_str().unwrap()).unwrap()
        });
        let decided = move |id: Hash32| {
            let until = Instant::now() + Duration::from_secs(120);
            loop {
                let (_, v) = common::http(api, "GET", &format!("/v1/tasks/{id}?wait_ms=30000"), None, None);
                match v["phase"].as_str() {
                    Some("decided") => return,
                    Some("failed") => panic!("task {id} failed: {v}"),
                    _ => assert!(Instant::now() < until, "task {id} not decided in 120 s: {v}"),
                }
            }
        };
        // Warm-up (untimed): one task decided shows every worker is in the gossip mesh; an
        // announcement made before that reaches them only when the coordinator announces
        // open tasks again (every 10 s).
        decided(submit(total + 1_000_000));
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let t0 = Instant::now();
        let threads: Vec<_> = (0..window)
            .map(|_| {
                let (next, submit) = (next.clone(), submit.clone());
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if n >= total {
                            return mine;
                        }
                        let id = submit(n);
                        let at = Instant::now();
                        decided(id);
                        mine.push(at.elapsed());
                    }
                })
            })
            .collect();
        let latencies: Vec<Duration> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        (latencies, t0.elapsed().as_secs_f64())
    })
    .await
    .unwrap();

    let (_, stats) = common::http(api, "GET", "/v1/stats", None, None);
    let (_, metrics) = common::http(api, "GET", "/metrics", None, None);
    let metrics = metrics.as_str().unwrap_or_default().to_string();
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
        "  latency submit answered -> decided seen (a long poll): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&sorted, 0.50).as_secs_f64() * 1e3,
        percentile(&sorted, 0.99).as_secs_f64() * 1e3,
        sorted.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    println!("  where a task's time goes on the coordinator (each stage from the one before it; p50 is the histogram bucket holding it):");
    for stage in cairn_coordinator::metrics::Stage::ALL {
        if let Some((count, mean, p50)) = stage_figures(&metrics, stage.label()) {
            println!(
                "    {:<20} mean {:>8.2} ms   p50 <= {:>8.2} ms   ({count} tasks)",
                stage.label(),
                mean * 1e3,
                p50 * 1e3
            );
        }
    }
    if let Some((_, mean_total, _)) = stage_figures(&metrics, "total") {
        let mean = latencies.iter().map(Duration::as_secs_f64).sum::<f64>() / latencies.len().max(1) as f64;
        println!(
            "    {:<20} mean {:>8.2} ms   (the long poll's answer, less the submission's answer)",
            "seen_by_requester",
            (mean - mean_total).max(0.0) * 1e3
        );
    }
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
