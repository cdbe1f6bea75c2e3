//! `cargo bench --workspace --bench footprint`: what Cairn costs on Bitcoin and in memory.
//!
//! 1. A coordinator core (the lifecycle machine over the real RocksDB store, synced group
//!    commits) takes 1k, then 100k, then 1M tasks through submission, claim, commitment and
//!    reveal from 64 registered workers; an epoch is closed after each block of tasks, so
//!    the epochs hold about 1k, 100k and 1M receipts. The peak resident memory of the whole
//!    process (VmHWM, reset before the run) is printed, with the database size on disk.
//! 2. The core is dropped and opened again from the store (a restart with 1.1M receipts on
//!    disk): time and peak memory of the reopen.
//! 3. Each epoch's real signed header is committed by a real signed anchor transaction (one
//!    P2TR key-path input spending the previous anchor, the OP_RETURN, the chain output; no
//!    payouts), built by `cairn_anchor::tx::build_anchor`; bytes written to Bitcoin per
//!    receipt are its size and virtual size over the epoch's receipts.
//!
//! `CAIRN_BENCH_SCALE` divides the task counts (e.g. 100 for a quick look). Prints figures;
//! asserts nothing about time. Linux only (reads /proc/self/status).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::indexing_slicing,
    missing_docs
)]

/// The allocator the `cairn` binary runs with (ADR 0009), so memory is measured as operators run it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::sync::Arc;
use std::time::Instant;

use bitcoin::hashes::Hash as _;
use cairn_anchor::tx::{build_anchor, AnchorPlan, KeySigner, Utxo};
use cairn_coordinator::core::Core;
use cairn_coordinator::lifecycle::{Effect, LifecycleConfig, Phase, Verified};
use cairn_coordinator::store::RocksStore;
use cairn_spec::work::commitment_value;
use cairn_spec::{
    AnchorPayload, Claim, Commitment, ComparisonRule, ExecutorKind, Hash32, Network, Object, Payload,
    Registration, Reveal, Signed, SigningKey, Task, TaskClass,
};

const WORKERS: u32 = 64;
const CHUNK: usize = 4096;
const NOW: u64 = 1_700_000_000;

fn key(i: u32) -> SigningKey {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&(i + 1).to_be_bytes());
    b[31] = 5;
    SigningKey::from_secret_bytes(b).unwrap()
}

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resets the peak resident set size (Linux `clear_refs` 5).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// `f` over `items` on every core, in order.
fn par_map<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let chunk = items.len().div_ceil(n).max(1);
    std::thread::scope(|s| {
        let hs: Vec<_> =
            items.chunks(chunk).map(|c| s.spawn(|| c.iter().map(&f).collect::<Vec<_>>())).collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

fn class() -> TaskClass {
    TaskClass {
        name: "footprint".into(),
        executor: ExecutorKind::Command,
        model_hash: Hash32::ZERO,
        rule: ComparisonRule::ExactHash,
        replication: 1,
        reward_per_unit: 10,
        max_input_bytes: 1024,
        lease_secs: 3600,
        reveal_secs: 3600,
        objective: Default::default(),
    }
}

fn config() -> LifecycleConfig {
    let mut cfg = LifecycleConfig::new(Network::Regtest, vec![class()]);
    cfg.tunables.pow_difficulty = 0;
    cfg.tunables.audit_min_ppm = 0;
    cfg.tunables.max_leases_per_worker = u32::MAX;
    // Epochs are closed by this bench, not by count or time.
    cfg.tunables.epoch_max_receipts = u32::MAX;
    cfg.tunables.epoch_interval_secs = u64::MAX / 4;
    cfg
}

/// Takes tasks `from..to` through the whole lifecycle, `CHUNK` at a time.
fn run_tasks(core: &mut Core, coord: &SigningKey, workers: &[SigningKey], from: u64, to: u64) {
    let class_id = class().id();
    let mut start = from;
    while start < to {
        let end = (start + CHUNK as u64).min(to);
        let tasks: Vec<Task> = (start..end)
            .map(|n| Task {
                network: Network::Regtest,
                coordinator: coord.public(),
                class: class_id,
                requester: coord.public(),
                nonce: n,
                units: 1,
                budget_sats: 1000,
                created_at: NOW,
                input: Payload::Inline(n.to_be_bytes().to_vec()),
            })
            .collect();
        let (ids, _) = core.apply_many(tasks, |m, t| m.submit_task(t, None, NOW)).unwrap();
        let ids: Vec<Hash32> = ids.into_iter().map(Result::unwrap).collect();
        // Every worker asks for a task, so all are ready to be drawn; a tick draws the slots.
        // Then, until every task is decided: the drawn workers claim and commit, and the
        // committed ones reveal (audit replicas and escalations are drawn at the reveals).
        let asks = par_map(&workers.iter().collect::<Vec<_>>(), |w| {
            Verified::check(Signed::sign(
                Claim { task: ids[0], worker: w.public(), claimed_at: NOW },
                w,
                &[0; 32],
            ))
            .unwrap()
        });
        let _ = core.apply_many(asks, |m, c| m.claim(c, NOW)).unwrap();
        core.apply(|m| Ok(((), m.tick(NOW)))).unwrap();
        let by_key: std::collections::HashMap<_, _> = workers.iter().map(|w| (w.public(), w)).collect();
        loop {
            let m = core.machine();
            let open: Vec<&cairn_coordinator::lifecycle::TaskRecord> =
                ids.iter().filter_map(|id| m.open_task(id)).collect();
            if open.is_empty() {
                break;
            }
            let drawn: Vec<(Hash32, &SigningKey)> = open
                .iter()
                .filter(|t| t.phase == Phase::Commit)
                .flat_map(|t| {
                    // Offered, or already taken by the ask above (claiming again is idempotent).
                    t.assignments.iter().filter(|a| a.commitment.is_none()).map(|a| (t.id, by_key[&a.worker]))
                })
                .collect();
            let unrevealed: Vec<(Hash32, &SigningKey)> = open
                .iter()
                .filter(|t| matches!(t.phase, Phase::Reveal { .. }))
                .flat_map(|t| {
                    t.assignments
                        .iter()
                        .filter(|a| a.commitment.is_some() && a.revealed.is_none())
                        .map(|a| (t.id, by_key[&a.worker]))
                })
                .collect();
            assert!(!drawn.is_empty() || !unrevealed.is_empty(), "tasks stuck: {:?}", open.first());
            let claims = par_map(&drawn, |(id, w)| {
                Verified::check(Signed::sign(
                    Claim { task: *id, worker: w.public(), claimed_at: NOW },
                    w,
                    &[0; 32],
                ))
                .unwrap()
            });
            let (a, _) = core.apply_many(claims, |m, c| m.claim(c, NOW)).unwrap();
            assert!(a.iter().all(Result::is_ok));
            let commits = par_map(&drawn, |(id, w)| {
                let result = result_for(id);
                let c = Commitment {
                    task: *id,
                    worker: w.public(),
                    commitment: commitment_value(
                        id,
                        &w.public(),
                        &cairn_spec::content_hash(&result),
                        &salt(),
                    ),
                };
                Verified::check(Signed::sign(c, w, &[0; 32])).unwrap()
            });
            let (a, _) = core.apply_many(commits, |m, c| Ok(((), m.commit(c, NOW)?))).unwrap();
            assert!(a.iter().all(Result::is_ok));
            let reveals = par_map(&unrevealed, |(id, w)| {
                let r = Reveal {
                    task: *id,
                    worker: w.public(),
                    result: Payload::Inline(result_for(id)),
                    salt: salt(),
                };
                Verified::check(Signed::sign(r, w, &[0; 32])).unwrap()
            });
            let (a, _) = core.apply_many(reveals, |m, r| Ok(((), m.reveal(r, NOW)?))).unwrap();
            assert!(a.iter().all(Result::is_ok));
        }
        start = end;
    }
}

fn result_for(id: &Hash32) -> Vec<u8> {
    id.0.to_vec()
}

fn salt() -> [u8; 32] {
    [9; 32]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test" || a == "--quick");
    let scale: u64 = std::env::var("CAIRN_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1000 } else { 1 });
    let blocks: Vec<u64> = [1_000u64, 100_000, 1_000_000].iter().map(|n| (n / scale).max(1)).collect();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let coord = key(1_000_000);
    let workers: Vec<SigningKey> = (0..WORKERS).map(key).collect();
    let rss_start = status_kib("VmRSS:");

    let store = Arc::new(RocksStore::open(&db).unwrap());
    let mut core = Core::open(config(), coord.clone(), store, NOW).unwrap();
    for w in &workers {
        let reg = Registration {
            network: Network::Regtest,
            coordinator: coord.public(),
            worker: w.public(),
            payout_address: "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080".into(),
            created_at: NOW,
            pow_nonce: 0,
            bond: None,
        };
        let v = Verified::check(Signed::sign(reg, w, &[0; 32])).unwrap();
        core.apply(|m| Ok(((), m.register(v, NOW)?))).unwrap();
    }

    println!("coordinator core (lifecycle machine + RocksDB, synced group commits of {CHUNK} events), {WORKERS} workers, replication 1");
    reset_peak();
    let t0 = Instant::now();
    let mut epochs: Vec<(u32, AnchorPayload)> = Vec::new();
    let mut next = 0u64;
    for &n in &blocks {
        run_tasks(&mut core, &coord, &workers, next, next + n);
        next += n;
        let receipts = core.machine().meta().open_receipts;
        let (_, effects) = core.apply(|m| Ok(((), m.close_epoch(NOW)))).unwrap();
        let payload = effects
            .iter()
            .find_map(|e| if let Effect::Anchor(p) = e { Some(*p) } else { None })
            .expect("the epoch is handed to the anchor");
        println!("  epoch {} closed with {receipts} receipts ({n} tasks)", payload.height);
        epochs.push((receipts, payload));
    }
    let secs = t0.elapsed().as_secs_f64();
    core.machine().check_invariants().unwrap();
    let total: u64 = epochs.iter().map(|(r, _)| u64::from(*r)).sum();
    let peak = status_kib("VmHWM:");
    println!("  {next} tasks -> {total} receipts in {secs:.1} s ({:.0} tasks/s)", next as f64 / secs);
    println!(
        "  peak memory while ingesting {total} receipts: {:.1} MiB resident (process at start {:.1} MiB); RSS now {:.1} MiB; database {:.1} MiB on disk",
        mib(peak),
        mib(rss_start),
        mib(status_kib("VmRSS:")),
        dir_bytes(&db) as f64 / (1024.0 * 1024.0)
    );

    drop(core);
    reset_peak();
    let before = status_kib("VmRSS:");
    let t0 = Instant::now();
    let store = Arc::new(RocksStore::open(&db).unwrap());
    let core = Core::open(config(), coord.clone(), store, NOW).unwrap();
    let reopen = t0.elapsed().as_secs_f64();
    let reopen_peak = status_kib("VmHWM:");
    assert_eq!(core.machine().meta().next_epoch, epochs.len() as u32);
    println!(
        "  restart with {total} receipts on disk: reopened in {reopen:.2} s, peak {:.1} MiB resident (before {:.1} MiB), RSS after {:.1} MiB",
        mib(reopen_peak),
        mib(before),
        mib(status_kib("VmRSS:"))
    );
    drop(core);

    // Bytes written to Bitcoin: one anchor transaction per epoch, chained.
    println!("\nbytes written to Bitcoin per receipt (one anchor tx per epoch: 1 P2TR input, OP_RETURN 40 B, chain output; no payouts)");
    println!(
        "{:>10} {:>10} {:>8} {:>8} {:>14} {:>15} {:>12}",
        "receipts", "tx bytes", "vbytes", "weight", "bytes/receipt", "vbytes/receipt", "proof depth"
    );
    let signer = KeySigner::new(coord.clone());
    let mut chain = Utxo {
        outpoint: bitcoin::OutPoint { txid: bitcoin::Txid::from_byte_array([1; 32]), vout: 0 },
        value: bitcoin::Amount::from_sat(100_000),
    };
    let mut per_receipt = Vec::new();
    for (receipts, payload) in &epochs {
        let plan = AnchorPlan {
            chain_input: chain,
            extra_inputs: vec![],
            payload: *payload,
            payouts: vec![],
            fee_rate: bitcoin::FeeRate::from_sat_per_vb_u32(2),
        };
        let built = build_anchor(&plan, &signer, &[3; 32]).unwrap();
        let bytes = bitcoin::consensus::serialize(&built.tx).len();
        let weight = built.tx.weight().to_wu();
        let r = f64::from(*receipts);
        println!(
            "{:>10} {:>10} {:>8} {:>8} {:>14.6} {:>15.6} {:>12}",
            receipts,
            bytes,
            built.vsize,
            weight,
            bytes as f64 / r,
            built.vsize as f64 / r,
            u32::BITS - receipts.saturating_sub(1).leading_zeros()
        );
        per_receipt.push(format!("{receipts}: {:.4}", built.vsize as f64 / r));
        chain = Utxo {
            outpoint: bitcoin::OutPoint { txid: built.tx.compute_txid(), vout: 0 },
            value: built.chain_value,
        };
    }
    println!();
    println!(
        "summary: vbytes written to Bitcoin per receipt (receipts per anchor: vB) = {}",
        per_receipt.join(", ")
    );
    println!("summary: coordinator peak memory while ingesting {total} receipts = {:.1} MiB", mib(peak));
    println!(
        "summary: coordinator peak memory reopening {total} receipts from disk = {:.1} MiB",
        mib(reopen_peak)
    );
}
