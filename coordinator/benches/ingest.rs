//! `cargo bench -p cairn-coordinator --bench ingest`: signed reveals of N registered workers
//! for tasks whose commitments are all in, pushed through signature verification (on every
//! core), the lifecycle machine (opening the commitment, comparison, verdict, receipt
//! creation and signing, ledger credit) and RocksDB persistence (group commits, synced).
//! Prints receipts/s and, measured in the same run, the raw BIP340 verifications/s of this
//! machine on one core and on all cores: the physical limit of the verification step.
//! Verification of the next batch, the machine on the current one and the signing and
//! writing of the previous one overlap, as in the node.
//! Asserts nothing about time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::indexing_slicing,
    missing_docs
)]

use std::sync::Arc;
use std::time::Instant;

use cairn_coordinator::core::{Core, Pending};
use cairn_coordinator::lifecycle::{Effect, LifecycleConfig, Phase, Verified};
use cairn_coordinator::store::RocksStore;
use cairn_spec::work::commitment_value;
use cairn_spec::{
    Claim, Commitment, ComparisonRule, ExecutorKind, Hash32, Network, Object, Payload, Registration, Reveal,
    Signed, SigningKey, Task, TaskClass,
};

const WORKERS: u32 = 64;
const TASKS: u32 = 20_000;
const BATCH: usize = 512;

fn key(i: u32) -> SigningKey {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&(i + 1).to_be_bytes());
    b[31] = 3;
    SigningKey::from_secret_bytes(b).unwrap()
}

fn threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Verifies in parallel on every core, keeping order (as the node checks a group).
fn verify_all(reveals: Vec<Signed<Reveal>>) -> Vec<Verified<Reveal>> {
    let per = reveals.len().div_ceil(threads()).max(1);
    let mut parts = Vec::new();
    let mut it = reveals.into_iter().peekable();
    while it.peek().is_some() {
        parts.push(it.by_ref().take(per).collect::<Vec<_>>());
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|c| s.spawn(move || c.into_iter().map(|r| Verified::check(r).unwrap()).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

/// Raw BIP340 verifications per second of `sample` on one core and on all cores, the best of
/// three runs each.
fn baseline(sample: &[Signed<Reveal>]) -> (f64, f64) {
    let (mut one, mut all) = (0f64, 0f64);
    for _ in 0..3 {
        let t0 = Instant::now();
        for r in sample {
            assert!(r.verify());
        }
        one = one.max(sample.len() as f64 / t0.elapsed().as_secs_f64());
        let copy = sample.to_vec();
        let t0 = Instant::now();
        let _ = verify_all(copy);
        all = all.max(sample.len() as f64 / t0.elapsed().as_secs_f64());
    }
    (one, all)
}

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`; 0 elsewhere).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and
    // 13th, in clock ticks of 1/100 s.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let class = TaskClass {
        name: "bench".into(),
        executor: ExecutorKind::Embedding,
        model_hash: Hash32::ZERO,
        rule: ComparisonRule::Cosine { min_ppb: 990_000_000 },
        replication: 1,
        reward_per_unit: 10,
        max_input_bytes: 1024,
        lease_secs: 3600,
        reveal_secs: 3600,
    };
    let mut cfg = LifecycleConfig::new(Network::Regtest, vec![class.clone()]);
    cfg.tunables.pow_difficulty = 0;
    cfg.tunables.audit_min_ppm = 0;
    cfg.tunables.max_leases_per_worker = u32::MAX;
    cfg.tunables.epoch_max_receipts = 10_000;
    let coord = key(100_000);
    let now = 1_700_000_000;
    let store = Arc::new(RocksStore::open(&dir.path().join("db")).unwrap());
    let mut core = Core::open(cfg, coord.clone(), store, now).unwrap();
    let workers: Vec<SigningKey> = (0..WORKERS).map(key).collect();
    for w in &workers {
        let reg = Registration {
            network: Network::Regtest,
            coordinator: coord.public(),
            worker: w.public(),
            payout_address: "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080".into(),
            created_at: now,
            pow_nonce: 0,
            bond: None,
        };
        let v = Verified::check(Signed::sign(reg, w, &[0; 32])).unwrap();
        core.apply(|m| Ok(((), m.register(v, now)?))).unwrap();
    }
    // An embedding-sized result: 384 little-endian f32.
    let result: Vec<u8> = (0..384u32).flat_map(|i| ((i % 17) as f32 - 8.0).to_le_bytes()).collect();
    let result_hash = cairn_spec::content_hash(&result);
    let salt = [7u8; 32];

    // Set-up (not timed): tasks submitted, claimed and committed until reveals are open.
    print!("setting up {TASKS} tasks ... ");
    let mut reveals = Vec::new();
    for t in 0..TASKS {
        let task = Task {
            network: Network::Regtest,
            coordinator: coord.public(),
            class: class.id(),
            requester: coord.public(),
            nonce: u64::from(t),
            units: 1,
            budget_sats: 1000,
            created_at: now,
            input: Payload::Inline(t.to_be_bytes().to_vec()),
        };
        let (id, _) = core.apply(|m| m.submit_task(task, None, now)).unwrap();
        let mut k = t as usize;
        loop {
            let w = &workers[k % workers.len()];
            k += 1;
            let claim = Verified::check(Signed::sign(
                Claim { task: id, worker: w.public(), claimed_at: now },
                w,
                &[0; 32],
            ))
            .unwrap();
            core.apply(|m| m.claim(claim, now)).unwrap();
            let c = Commitment {
                task: id,
                worker: w.public(),
                commitment: commitment_value(&id, &w.public(), &result_hash, &salt),
            };
            let c = Verified::check(Signed::sign(c, w, &[0; 32])).unwrap();
            core.apply(|m| Ok(((), m.commit(c, now)?))).unwrap();
            let r = Reveal { task: id, worker: w.public(), result: Payload::Inline(result.clone()), salt };
            reveals.push(Signed::sign(r, w, &[0; 32]));
            if matches!(core.machine().open_task(&id).unwrap().phase, Phase::Reveal { .. }) {
                break;
            }
        }
    }
    println!("{} reveals", reveals.len());

    // Baselines in the same run: raw BIP340 verification on one core and on all, before and
    // after the ingest (this VM's speed drifts within seconds); the best of each is the limit.
    let sample: Vec<Signed<Reveal>> = reveals.iter().take(4000).cloned().collect();
    let before = baseline(&sample);
    // The coordinator's BIP340 signature, in verifications; receipts are signed in batches
    // (SPEC §5.7), so a receipt costs a fraction of one.
    let ids: Vec<Hash32> = sample.iter().map(|r| r.id()).collect();
    let mut sign_rate = 0f64;
    for _ in 0..3 {
        let t0 = Instant::now();
        let n = ids.iter().map(|id| coord.sign(id, &[0; 32]).0[0] as usize).fold(0usize, usize::wrapping_add);
        sign_rate = sign_rate.max(ids.len() as f64 / t0.elapsed().as_secs_f64());
        std::hint::black_box(n);
    }

    // Timed: verification (all cores), machine, receipt signing, synced RocksDB batches.
    let receipts_before = core.machine().meta().open_receipts;
    let epochs_before = core.machine().meta().next_epoch;
    let n = reveals.len();
    // Pipelined: one thread verifies the next batch (itself on every core) while this one
    // applies and persists the current batch.
    let t0 = Instant::now();
    let cpu0 = cpu_secs();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Verified<Reveal>>>(2);
    let verifier = std::thread::spawn(move || {
        let mut it = reveals.into_iter();
        loop {
            let batch: Vec<Signed<Reveal>> = it.by_ref().take(BATCH).collect();
            if batch.is_empty() || tx.send(verify_all(batch)).is_err() {
                return;
            }
        }
    });
    // As the node does: each group's answers are awaited off the thread running the machine,
    // in order, while the machine decides the next group and the core's writer signs and
    // writes the previous one.
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<Pending<()>>(2);
    let answerer = std::thread::spawn(move || {
        let (mut issued, mut signatures, mut last) = (0usize, std::collections::HashSet::new(), Vec::new());
        for pending in done_rx {
            let (answers, effects) = pending.wait().unwrap();
            assert!(answers.iter().all(Result::is_ok));
            for e in effects {
                if let Effect::Receipt(r) = e {
                    issued += 1;
                    if signatures.insert(r.signature) {
                        last.push(r); // one receipt per batch, checked after the clock stops
                    }
                }
            }
        }
        (issued, signatures.len(), last)
    });
    let mut t_apply = 0f64;
    for verified in rx {
        let t1 = Instant::now();
        let pending = core.submit_many(verified, |m, v| Ok(((), m.reveal(v, now)?))).unwrap();
        t_apply += t1.elapsed().as_secs_f64();
        done_tx.send(pending).unwrap();
    }
    drop(done_tx);
    verifier.join().unwrap();
    // Every group answered, so every receipt is written.
    let (issued, signatures, one_per_batch) = answerer.join().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    assert!(one_per_batch.iter().all(|r| r.verify()), "every batch signature verifies");
    println!("  CPU used: {cpu:.2} s in {secs:.2} s = {:.2} of {} cores busy", cpu / secs, threads());
    println!(
        "  the machine busy {t_apply:.2} s of it (verification, receipt signing and RocksDB writes overlap)"
    );
    let m = core.machine().meta();
    let receipts = u64::from(m.next_epoch - epochs_before) * 10_000 + u64::from(m.open_receipts)
        - u64::from(receipts_before);
    core.machine().check_invariants().unwrap();
    let rate = receipts as f64 / secs;
    println!(
        "ingest: {n} reveals -> {receipts} receipts in {secs:.2} s = {rate:.0} receipts/s ({} threads)",
        threads()
    );
    let after = baseline(&sample);
    let (one_core, all_cores) = (before.0.max(after.0), before.1.max(after.1));
    println!(
        "raw BIP340 verify (best of 3, before / after the ingest): {:.0} / {:.0} per s on one core, {:.0} / {:.0} per s on {} cores",
        before.0,
        after.0,
        before.1,
        after.1,
        threads()
    );
    println!(
        "raw BIP340 verify limit (the best): {one_core:.0}/s on one core, {all_cores:.0}/s on {} cores",
        threads()
    );
    println!(
        "ingest / raw verify: {:.2}x of one core, {:.2}x of all cores (goal >= 0.50)",
        rate / one_core,
        rate / all_cores
    );
    let sign_cost = one_core / sign_rate;
    let per_signature = issued as f64 / signatures.max(1) as f64;
    println!(
        "raw BIP340 sign: {sign_rate:.0}/s on one core = {sign_cost:.2} verifications; {issued} receipts under {signatures} batch signatures ({per_signature:.0} per signature), so signing costs {:.3} verifications a receipt",
        sign_cost / per_signature
    );
    println!();
    println!("summary: receipts ingested per second = {rate:.0}");
    println!(
        "summary: ingest / BIP340 verification limit of all {} cores = {:.2}x (goal >= 0.50)",
        threads(),
        rate / all_cores
    );
}
