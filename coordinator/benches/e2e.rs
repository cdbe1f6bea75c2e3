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
//! Prints tasks/s, p50, p99 and max, then the latency with one task in flight at a time (what
//! a user waits on when the network is not busy), then where a task's time goes on the coordinator, stage
//! by stage (`cairn_task_stage_seconds` from `/metrics`: mean and the p50 bucket), and the
//! rest (the requester's polling). Then the same loop again under a flood from 64 identities
//! (each its own key and connection: signed claims the node must check and refuse, and
//! self-signed task announcements as gossip, 50 of each a second from each flooder whatever
//! the node answers),
//! run in the same process (so the flooders' own CPU is taken from the node's two cores),
//! with the ratios of the flooded p50 and p99 to the unloaded ones, the flood's rate, and
//! where a flooded task's time goes. Asserts nothing about time.
//!
//! With `--soak` (`cargo bench -p cairn-coordinator --bench e2e -- --soak`), only a soak: the
//! same network at `CAIRN_SOAK_RATE` tasks a second (50) for `CAIRN_SOAK_SECS` (3600),
//! printing the process's RSS (and RocksDB's part of it) every minute and its slope after the
//! first tenth.
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

/// The allocator the `cairn` binary runs with (ADR 0009), so memory is measured as operators run it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    // `--soak`: the same network at a steady rate for `CAIRN_SOAK_SECS` (default an hour),
    // printing the process's RSS as it goes; nothing else is measured.
    let soak = std::env::args().any(|a| a == "--soak").then(|| {
        let secs = std::env::var("CAIRN_SOAK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(3600u64);
        let rate = std::env::var("CAIRN_SOAK_RATE").ok().and_then(|v| v.parse().ok()).unwrap_or(50usize);
        (secs, rate)
    });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(total, window, soak));
}

/// This process's resident set (MiB), from `/proc/self/status`.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The soak: `rate` tasks a second (each second's tasks through the closed loop, then a wait
/// for the next second) for `secs` seconds; RSS every minute, and its least-squares slope over
/// the run after its first tenth (the caches' and RocksDB's warm-up), in MiB per hour.
async fn soak_run(api: std::net::SocketAddr, token: String, secs: u64, rate: usize, window: usize) {
    let began = Instant::now();
    let mut next_sample = Duration::ZERO;
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let mut done = 0usize;
    while began.elapsed() < Duration::from_secs(secs) {
        let second = Instant::now();
        let (l, _) =
            closed_loop(api, token.clone(), 10_000_000 + done, rate, window.min(rate).max(1), false).await;
        done += l.len();
        if began.elapsed() >= next_sample {
            let (t, rss) = (began.elapsed().as_secs_f64(), rss_mib());
            // The database's own share of it (bounded: memtables, block cache, table readers).
            let (_, m) = common::http(api, "GET", "/metrics", None, None);
            let part = |name: &str| -> f64 {
                m.as_str()
                    .unwrap_or_default()
                    .lines()
                    .find(|l| {
                        l.starts_with("cairn_store_memory_bytes") && l.contains(&format!("part=\"{name}\""))
                    })
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
                    / (1024.0 * 1024.0)
            };
            println!(
                "  soak t={:>6.0} s  tasks={done:>8}  rss={rss:.1} MiB  (RocksDB: memtables {:.1}, block cache {:.1}, table readers {:.1} MiB)",
                t,
                part("memtables"),
                part("block_cache"),
                part("table_readers")
            );
            samples.push((t, rss));
            next_sample += Duration::from_secs(60);
        }
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(second.elapsed())).await;
    }
    let total = began.elapsed().as_secs_f64();
    let tail: Vec<(f64, f64)> = samples.iter().copied().filter(|(t, _)| *t >= total / 10.0).collect();
    let n = tail.len() as f64;
    let slope = if n >= 2.0 {
        let (mt, mr) = (tail.iter().map(|s| s.0).sum::<f64>() / n, tail.iter().map(|s| s.1).sum::<f64>() / n);
        let cov: f64 = tail.iter().map(|(t, r)| (t - mt) * (r - mr)).sum();
        let var: f64 = tail.iter().map(|(t, _)| (t - mt) * (t - mt)).sum();
        if var > 0.0 {
            cov / var * 3600.0
        } else {
            0.0
        }
    } else {
        0.0
    };
    let first = tail.first().map_or(0.0, |s| s.1);
    let last = samples.last().map_or(0.0, |s| s.1);
    let peak = samples.iter().map(|s| s.1).fold(0.0, f64::max);
    println!(
        "summary: soak of {:.0} s at {:.1} tasks/s ({done} tasks), whole process RSS after warm-up {first:.1} -> {last:.1} MiB (peak {peak:.1}), slope {slope:+.1} MiB/hour",
        total,
        done as f64 / total
    );
}

async fn run(total: usize, window: usize, soak: Option<(u64, usize)>) {
    let dir = tempfile::tempdir().unwrap();
    let class = common::exact_class("upper", REPLICATION, 10, 60);
    let mut cfg = common::node_config(&dir.path().join("coord"), 4, vec![class]);
    cfg.lifecycle.max_leases_per_worker = 1000;
    let (info, stop, handle) = common::start_node(&cfg).await;
    let api = info.api;
    let token = std::fs::read_to_string(dir.path().join("coord/operator.token")).unwrap().trim().to_string();
    let mut workers = Vec::new();
    for i in 0..WORKERS {
        // The trivial executor runs in microseconds: each worker runs as many at once as are
        // in flight (a worker leases only what it can run, `limits.concurrent_tasks`).
        let mut wcfg = common::agent_config(&dir.path().join(format!("w{i}")), &info.p2p[0]);
        wcfg.limits.concurrent_tasks = window.max(1);
        let (_, agent) = common::start_agent_with(wcfg, Arc::new(common::Upper)).await;
        workers.push(agent);
    }

    if let Some((secs, rate)) = soak {
        println!(
            "soak: coordinator node + {WORKERS} worker agents in this process, {rate} tasks/s for {secs} s"
        );
        let _ = closed_loop(api, token.clone(), 0, 1, 1, true).await;
        soak_run(api, token.clone(), secs, rate, window).await;
        for (s, h) in workers {
            let _ = s.send(());
            let _ = h.await;
        }
        let _ = stop.send(());
        let _ = handle.await;
        return;
    }
    let (latencies, secs) = closed_loop(api, token.clone(), 0, total, window, true).await;
    eprintln!(
        "unloaded: {} tasks in {secs:.2} s; now under a flood from {FLOODERS} identities",
        latencies.len()
    );
    // The stage breakdown of the unloaded run (its warm-up task included).
    let (_, metrics) = common::http(api, "GET", "/metrics", None, None);
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    // A task a user waits on when the network is not busy: one in flight at a time, so the
    // figure is the protocol's own latency rather than the queue behind `window` others.
    let (alone, _) = closed_loop(api, token.clone(), 5_000_000, (total / 4).max(10), 1, false).await;
    let mut alone_sorted = alone.clone();
    alone_sorted.sort();
    // Then the same under a flood from 64 identities (below), measured in the same process.
    let flood_total = (total / 2).max(10);
    let (flood_stop, flood_sent) = start_flood(&info.p2p[0], FLOODERS).await;
    let (flood_latencies, flood_secs) =
        closed_loop(api, token.clone(), total, flood_total, window, false).await;
    let _ = flood_stop.send(true);
    let flooded = flood_sent.load(std::sync::atomic::Ordering::Relaxed);
    let (_, flood_metrics) = common::http(api, "GET", "/metrics", None, None);
    let flood_metrics = flood_metrics.as_str().unwrap_or_default().to_string();

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
        "  latency submit answered -> decided seen (a long poll): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&sorted, 0.50).as_secs_f64() * 1e3,
        percentile(&sorted, 0.99).as_secs_f64() * 1e3,
        sorted.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    println!(
        "  one task in flight at a time ({} tasks): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        alone_sorted.len(),
        percentile(&alone_sorted, 0.50).as_secs_f64() * 1e3,
        percentile(&alone_sorted, 0.99).as_secs_f64() * 1e3,
        alone_sorted.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    println!("  where a task's time goes on the coordinator, unloaded (each stage from the one before it; p50 is the histogram bucket holding it):");
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
    let mut flooded_sorted = flood_latencies.clone();
    flooded_sorted.sort();
    let (p50, p99) = (percentile(&sorted, 0.50), percentile(&sorted, 0.99));
    let (fp50, fp99) = (percentile(&flooded_sorted, 0.50), percentile(&flooded_sorted, 0.99));
    println!(
        "  under a flood from {FLOODERS} identities ({flooded} requests and gossip messages sent, {:.0}/s): {} tasks in {flood_secs:.2} s = {:.1} tasks/s",
        flooded as f64 / flood_secs.max(1e-9),
        flood_latencies.len(),
        flood_latencies.len() as f64 / flood_secs
    );
    println!(
        "  latency under the flood: p50 {:.1} ms ({:.2}x unloaded), p99 {:.1} ms ({:.2}x), max {:.1} ms",
        fp50.as_secs_f64() * 1e3,
        fp50.as_secs_f64() / p50.as_secs_f64().max(1e-9),
        fp99.as_secs_f64() * 1e3,
        fp99.as_secs_f64() / p99.as_secs_f64().max(1e-9),
        flooded_sorted.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!("  where a flooded task's time goes on the coordinator (means over the flooded tasks alone):");
    for stage in cairn_coordinator::metrics::Stage::ALL {
        let before = stage_figures(&metrics, stage.label());
        let after = stage_figures(&flood_metrics, stage.label());
        if let (Some((n0, mean0, _)), Some((n1, mean1, _))) = (before, after) {
            if n1 > n0 {
                let mean = (mean1 * n1 as f64 - mean0 * n0 as f64) / (n1 - n0) as f64;
                println!("    {:<20} mean {:>8.2} ms   ({} tasks)", stage.label(), mean * 1e3, n1 - n0);
            }
        }
    }
    println!();
    let slowest = cairn_coordinator::metrics::Stage::ALL
        .into_iter()
        .filter(|s| *s != cairn_coordinator::metrics::Stage::Total)
        .filter_map(|s| stage_figures(&metrics, s.label()).map(|(_, mean, _)| (s.label(), mean)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((stage, mean)) = slowest {
        println!(
            "summary: end-to-end slowest stage on the coordinator (mean) = {stage} ({:.2} ms)",
            mean * 1e3
        );
    }
    println!(
        "summary: end-to-end latency max = {:.1} ms",
        sorted.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "summary: end-to-end latency p50 / p99 under a flood from 64 identities = {:.1} ms / {:.1} ms ({:.2}x / {:.2}x unloaded)",
        fp50.as_secs_f64() * 1e3,
        fp99.as_secs_f64() * 1e3,
        fp50.as_secs_f64() / p50.as_secs_f64().max(1e-9),
        fp99.as_secs_f64() / p99.as_secs_f64().max(1e-9)
    );
    println!(
        "summary: end-to-end tasks per second (3 workers, trivial executor) = {:.1}",
        latencies.len() as f64 / secs
    );
    println!(
        "summary: end-to-end latency p50 / p99 = {:.1} ms / {:.1} ms",
        percentile(&sorted, 0.50).as_secs_f64() * 1e3,
        percentile(&sorted, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "summary: end-to-end latency p50 / p99, one task in flight at a time = {:.1} ms / {:.1} ms",
        percentile(&alone_sorted, 0.50).as_secs_f64() * 1e3,
        percentile(&alone_sorted, 0.99).as_secs_f64() * 1e3
    );
    for (s, h) in workers {
        let _ = s.send(());
        let _ = h.await;
    }
    let _ = stop.send(());
    let _ = handle.await;
}

/// The closed loop: `window` threads, each submitting a task (nonces from `first`) and
/// waiting for it to be decided with a long poll (`GET /v1/tasks/{id}?wait_ms=`), then the
/// next, until `total` are decided; with `warm_up`, one untimed task first. Latencies (from
/// each submission's answer) and the seconds the whole took.
async fn closed_loop(
    api: std::net::SocketAddr,
    token: String,
    first: usize,
    total: usize,
    window: usize,
    warm_up: bool,
) -> (Vec<Duration>, f64) {
    tokio::task::spawn_blocking(move || {
        let submit = Arc::new(move |n: usize| -> Hash32 {
            let body = serde_json::json!({
                "class": "upper", "input_text": format!("task number {n} of the end-to-end run"),
                "units": 1, "budget_sats": 1000, "nonce": n as u64,
            });
            let (s, v) = common::http(api, "POST", "/v1/tasks", Some(&token), Some(&body.to_string()));
            assert!(s == 201 || s == 200, "{s} {v}");
            Hash32::from_hex(v["id"].as_str().unwrap()).unwrap()
        });
        let decided = move |id: Hash32| {
            let until = Instant::now() + Duration::from_secs(120);
            loop {
                let (_, v) = common::http(api, "GET", &format!("/v1/tasks/{id}?wait_ms=20000"), None, None);
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
        if warm_up {
            decided(submit(usize::MAX / 2));
        }
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(first));
        let t0 = Instant::now();
        let threads: Vec<_> = (0..window)
            .map(|_| {
                let (next, submit) = (next.clone(), submit.clone());
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if n >= first + total {
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
    .unwrap()
}

/// Identities in the flood.
const FLOODERS: u32 = 64;

/// A flooder's node: it aims at the coordinator alone, so it takes no part in discovery (it
/// would otherwise dial, and be dialled by, every other flooder and worker: thousands of
/// connections among the 68 nodes of this one process, which on a real network would be
/// spread over the attackers' own machines) and checks no gossip it is sent.
fn flooder_config() -> cairn_p2p::NetworkConfig {
    let mut c = cairn_p2p::NetworkConfig::new(cairn_spec::Network::Regtest);
    c.discovery = false;
    c.gossip_signers = Some(Vec::new());
    c
}

/// How often each flooder sends a claim and an announcement: 50 of each a second, the node's
/// default request rate (the most a peer may ask without being refused), so the 64 offer
/// 3,200 requests and 3,200 gossip messages a second, whatever the node answers (an open
/// loop: a node that refuses faster is not sent more).
const FLOOD_EVERY: Duration = Duration::from_millis(20);
/// Requests a flooder leaves unanswered at most (its tick then sends gossip only).
const FLOOD_IN_FLIGHT: usize = 32;

/// Starts `n` flooding peers against the coordinator at `coord`, each with its own key and
/// connection, at a fixed rate (`FLOOD_EVERY`): claims it signed for tasks that do not exist
/// (refused: the peer is not registered, which costs it a second of the rate, so most of its
/// claims are refused by the network layer unchecked), and task announcements it signed as
/// coordinator of its own tasks, as gossip (valid signatures of a key nobody follows, each
/// new, so none is dropped as a duplicate). The claims are signed once, 64 of them, and sent
/// round: the node cannot tell, and signing is the attackers' CPU, which on a real network
/// is not the node's. A flooder whose requests fail dials again (at most every 100 ms).
/// Returns the switch that stops them and the count of what they sent.
async fn start_flood(
    coord: &str,
    n: u32,
) -> (tokio::sync::watch::Sender<bool>, Arc<std::sync::atomic::AtomicU64>) {
    use cairn_p2p::{Network, Peer};
    use cairn_spec::{Claim, GossipMessage, Payload, RequestBody, Signed, Task, TaskAnnouncement};
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sent = Arc::new(AtomicU64::new(0));
    let peer: Peer = coord.rsplit('/').next().unwrap().parse().unwrap();
    for i in 0..n {
        let key = common::key(50_000 + i);
        let (net, mut events) = Network::start(flooder_config(), &key).await.unwrap();
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        let now = cairn_p2p::clock::unix_secs();
        let claims: Vec<RequestBody> = (0..64u64)
            .map(|j| {
                let mut task = [0u8; 32];
                task[..4].copy_from_slice(&i.to_be_bytes());
                task[4..12].copy_from_slice(&j.to_be_bytes());
                let claim = Claim { task: Hash32(task), worker: key.public(), claimed_at: now };
                RequestBody::Claim(Signed::sign(claim, &key, &task))
            })
            .collect();
        let (addr, mut stopped, sent) = (coord.to_string(), stopped.clone(), sent.clone());
        tokio::spawn(async move {
            let in_flight = Arc::new(AtomicUsize::new(0));
            let lost = Arc::new(AtomicBool::new(true));
            let mut tick = tokio::time::interval(FLOOD_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut redial_at = tokio::time::Instant::now();
            let mut k = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                k += 1;
                if lost.load(Ordering::Relaxed) && tokio::time::Instant::now() >= redial_at {
                    lost.store(false, Ordering::Relaxed);
                    redial_at = tokio::time::Instant::now() + Duration::from_millis(100);
                    let _ = net.dial(&addr).await;
                }
                if in_flight.load(Ordering::Relaxed) < FLOOD_IN_FLIGHT {
                    in_flight.fetch_add(1, Ordering::Relaxed);
                    let body = claims[(k % 64) as usize].clone();
                    let (net, in_flight, lost) = (net.clone(), in_flight.clone(), lost.clone());
                    tokio::spawn(async move {
                        if net.request(&peer, body, Duration::from_secs(2)).await.is_err() {
                            lost.store(true, Ordering::Relaxed);
                        }
                        in_flight.fetch_sub(1, Ordering::Relaxed);
                    });
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                let now = cairn_p2p::clock::unix_secs();
                let own = Task {
                    network: cairn_spec::Network::Regtest,
                    coordinator: key.public(),
                    class: Hash32([1; 32]),
                    requester: key.public(),
                    nonce: k,
                    units: 1,
                    budget_sats: 1,
                    created_at: now,
                    input: Payload::Inline(b"flood".to_vec()),
                };
                let ann = Signed::sign(TaskAnnouncement { task: own, announced_at: now }, &key, &[0; 32]);
                let _ = net.publish(&GossipMessage::Task(ann)).await;
                sent.fetch_add(1, Ordering::Relaxed);
            }
            net.shutdown().await;
        });
    }
    (stop, sent)
}
