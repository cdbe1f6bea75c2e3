//! Crash safety with real RocksDB: the `cairn coordinator` process is killed with SIGKILL at
//! random moments while workers push hundreds of tasks through it over libp2p, restarted,
//! and killed again. At the end no acknowledged work is lost, no receipt is duplicated, the
//! ledger adds up, and every epoch header chains to the previous one.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_coordinator::lifecycle::{LifecycleConfig, Machine, Phase};
use cairn_coordinator::lifecycle_store as ls;
use cairn_coordinator::store::RocksStore;
use cairn_spec::{Hash32, PubKey, ResponseBody, Verdict};
use common::{http, try_http, Worker};

const TASKS: u64 = 240;

fn spawn(config: &std::path::Path, dir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["coordinator", "--config"])
        .arg(config)
        .env("CAIRN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new().create(true).append(true).open(dir.join("node.log")).unwrap(),
        ))
        .spawn()
        .unwrap()
}

/// A tiny deterministic generator for kill timing (reproducible with CAIRN_CRASH_SEED).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut cfg = common::test_config(&data);
    common::fixed_ports(&mut cfg);
    cfg.lifecycle.epoch_max_receipts = 25;
    let cfg_path = dir.path().join("cairn.toml");
    std::fs::write(&cfg_path, common::to_toml(&cfg)).unwrap();
    let api: SocketAddr = cfg.api.listen.parse().unwrap();

    let child = Arc::new(Mutex::new(spawn(&cfg_path, dir.path())));
    let wait_up = || {
        for _ in 0..300 {
            if http_ok(api) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "node did not come up; log:\n{}",
            std::fs::read_to_string(dir.path().join("node.log")).unwrap_or_default()
        );
    };
    wait_up();
    let token = std::fs::read_to_string(data.join("operator.token")).unwrap().trim().to_string();
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("node.json")).unwrap()).unwrap();
    let coordinator = PubKey::from_hex(info["coordinator"].as_str().unwrap()).unwrap();
    let peer = info["p2p"][0].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let coord_addr = format!("{}/p2p/{peer}", cfg.p2p.listen[0]);

    // The killer: SIGKILL after a random pause, restart at once, until told to stop.
    let seed = std::env::var("CAIRN_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7u64);
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU32::new(0));
    let killer = {
        let (child, stop, kills, cfg_path, dir) =
            (child.clone(), stop.clone(), kills.clone(), cfg_path.clone(), dir.path().to_owned());
        std::thread::spawn(move || {
            let mut rng = Lcg(seed);
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(300 + rng.next(1200)));
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let mut c = child.lock().unwrap();
                c.kill().unwrap(); // SIGKILL
                c.wait().unwrap();
                kills.fetch_add(1, Ordering::SeqCst);
                *c = spawn(&cfg_path, &dir);
            }
        })
    };

    let workers: Vec<Worker> = {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(Worker::start(common::key(10 + i), &coord_addr).await);
        }
        v
    };
    let mut submitted: BTreeMap<u64, Hash32> = BTreeMap::new();
    let mut decided: BTreeSet<Hash32> = BTreeSet::new();
    let mut revealed: BTreeSet<(Hash32, PubKey)> = BTreeSet::new();
    let mut registered = BTreeSet::new();
    let mut next = 0u64;
    let mut rounds = 0u64;
    // Until every task is decided: submit, register, claim, commit, reveal; every step is
    // retried across crashes (each is idempotent on the node).
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        assert!(std::time::Instant::now() < deadline, "no progress after 10 minutes");
        if !http_ok(api) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        rounds += 1;
        while next < TASKS && submitted.len() - decided.len() < 16 {
            let body = format!(
                r#"{{"class":"echo","input_text":"task {next}","units":1,"budget_sats":1000,"nonce":{next}}}"#
            );
            match try_http(api, "POST", "/v1/tasks", Some(&token), Some(&body)) {
                Some((201, v)) => {
                    submitted.insert(next, Hash32::from_hex(v["id"].as_str().unwrap()).unwrap());
                    next += 1;
                }
                _ => break,
            }
        }
        for w in &workers {
            if !registered.contains(&w.public()) {
                if let Some(ResponseBody::Ack) = w.try_req(w.register_body(coordinator, 4)).await {
                    registered.insert(w.public());
                }
            }
        }
        let mut all_done = next == TASKS;
        if registered.len() < workers.len() {
            all_done = false;
        }
        for (i, id) in &submitted {
            if decided.contains(id) {
                continue;
            }
            let Some((200, t)) = try_http(api, "GET", &format!("/v1/tasks/{id}"), None, None) else {
                all_done = false;
                break;
            };
            let answer = format!("answer {i}");
            match t["phase"].as_str() {
                Some("decided") | Some("failed") => {
                    decided.insert(*id);
                }
                Some("open") => {
                    all_done = false;
                    for w in &workers {
                        let mine = t["assignments"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .find(|a| a["worker"] == w.public().to_hex());
                        if mine.is_some_and(|a| a["committed"] == true) {
                            continue;
                        }
                        if matches!(w.try_req(w.claim_body(*id)).await, Some(ResponseBody::Lease { .. })) {
                            let _ = w.try_req(w.commit_body(*id, answer.as_bytes())).await;
                            break;
                        }
                    }
                }
                Some("revealing") => {
                    all_done = false;
                    for w in &workers {
                        let mine = t["assignments"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .find(|a| a["worker"] == w.public().to_hex());
                        if mine.is_some_and(|a| a["committed"] == true && a["revealed"] == false) {
                            if let Some(ResponseBody::Ack) =
                                w.try_req(w.reveal_body(*id, answer.as_bytes())).await
                            {
                                revealed.insert((*id, w.public()));
                            }
                        }
                    }
                }
                other => panic!("phase {other:?}"),
            }
        }
        if all_done {
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    killer.join().unwrap();
    let kills = kills.load(Ordering::SeqCst);
    assert!(kills >= 3, "only {kills} kills happened");
    // Close the last epoch, then stop gracefully (SIGTERM) and inspect the database.
    wait_up();
    let (s, _) = http(api, "POST", "/v1/epochs/close", Some(&token), None);
    assert_eq!(s, 200);
    {
        let mut c = child.lock().unwrap();
        // SIGTERM: graceful shutdown closes the database.
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        let status = c.wait().unwrap();
        assert!(status.success(), "graceful shutdown failed: {status}");
    }
    for w in &workers {
        w.net.shutdown().await;
    }

    let store = RocksStore::open(&data.join("db")).unwrap();
    // Every submitted task is there and final; every acknowledged reveal is in its task.
    let mut receipts_by_task: BTreeMap<Hash32, usize> = BTreeMap::new();
    for id in submitted.values() {
        let rec = ls::task(&store, id).unwrap().expect("accepted task lost");
        assert!(rec.phase.is_final(), "{:?}", rec.phase);
        assert!(matches!(rec.phase, Phase::Decided { .. }));
        receipts_by_task.insert(*id, rec.assignments.iter().filter(|a| a.receipt.is_some()).count());
        for a in &rec.assignments {
            if revealed.contains(&(*id, a.worker)) {
                assert_eq!(a.verdict, Some(Verdict::Accepted), "acknowledged reveal lost");
            }
        }
    }
    // No task was created twice by a retried submission.
    assert_eq!(ls::tasks(&store, None, 10_000).unwrap().len(), TASKS as usize);
    // Receipts: all epochs chain; each (task, worker) has exactly one receipt; totals match.
    let epochs = ls::check_header_chain(&store).unwrap();
    assert!(epochs >= (TASKS as u32) / 25, "only {epochs} epochs");
    let mut seen = BTreeSet::new();
    let mut total = 0u64;
    let mut count = 0usize;
    for e in 0..epochs {
        let rs = ls::epoch_receipts(&store, e).unwrap();
        let h = ls::header(&store, e).unwrap().unwrap();
        assert_eq!(h.body.receipt_count as usize, rs.len());
        let leaves: Vec<Hash32> = rs.iter().map(|r| cairn_spec::Object::id(&r.body)).collect();
        assert_eq!(cairn_spec::merkle::root(&leaves), h.body.receipts_root);
        for r in rs {
            assert!(r.verify());
            assert!(seen.insert((r.body.task, r.body.worker)), "duplicate receipt");
            total += r.body.reward_sats;
            count += 1;
        }
    }
    assert_eq!(count, receipts_by_task.values().sum::<usize>());
    let snap = ls::load(&store).unwrap().unwrap();
    assert_eq!(snap.meta.credited, total);
    let ledger: u64 = snap.ledger.iter().map(|e| e.locked + e.claimable + e.paid).sum();
    assert_eq!(ledger + snap.meta.forfeited, total);
    // And the node's own consistency check passes on the state as stored.
    let lc: LifecycleConfig = cfg.lifecycle().unwrap();
    let key = cairn_coordinator::keyfile::load(&data.join("node.key")).unwrap();
    Machine::restore(lc, key, snap).unwrap();
    println!(
        "crash test: {TASKS} tasks, {count} receipts, {epochs} epochs, {kills} SIGKILLs, {rounds} rounds"
    );
}

fn http_ok(api: SocketAddr) -> bool {
    matches!(try_http(api, "GET", "/v1/health", None, None), Some((200, _)))
}
