//! Chaos and recovery: a `cairn coordinator` process and three `cairn worker` processes run a
//! continuous stream of tasks while the harness SIGKILLs the coordinator at random moments
//! (and restarts it), SIGKILLs a worker mid-stream, takes Bitcoin away and brings it back,
//! reorgs the block holding an anchor out of the chain, and keeps an anchor out of blocks so
//! it must be replaced. Then: every accepted task is there, decided with one receipt per
//! accepted worker, or still pending; the epoch headers chain; the anchors form one chain of
//! spends committing that chain (the auditor's whole-chain audit); ledger credits equal
//! receipt rewards; every anchored receipt audits ✓ against Bitcoin.
//!
//! Runs on the embedded chain (always: served in this process behind the same JSON-RPC a
//! `bitcoind` speaks) and on a real regtest `bitcoind` (`cairn_testkit::bitcoind`: a failure under `CI=true`
//! when none is found). The short form runs
//! in CI; `CAIRN_CHAOS_KILLS=40` (and `CAIRN_CHAOS_SEED`) runs a longer one.
#![cfg(unix)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_anchor::regtest::RegtestNode;
use cairn_anchor::scripted::ScriptedBackend;
use cairn_anchor::{BitcoinCoreRpc, ChainBackend, RpcAuth, RpcConfig};
use cairn_cli::devnet::chain_rpc::EmbeddedRpc;
use cairn_coordinator::lifecycle_store as ls;
use cairn_coordinator::store::RocksStore;
use cairn_spec::{Hash32, Verdict};
use common::try_http;
use serde_json::{json, Value};

/// A tiny deterministic generator for chaos timing (reproducible with CAIRN_CHAOS_SEED).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

enum Btc {
    Embedded(EmbeddedRpc),
    Core(RegtestNode),
}

impl Btc {
    fn url_cookie(&self) -> (String, PathBuf) {
        match self {
            Btc::Embedded(e) => (e.url.clone(), e.cookie.clone()),
            Btc::Core(n) => (n.rpc_url(), n.cookie_path()),
        }
    }
    fn rpc(&self) -> BitcoinCoreRpc {
        let (url, cookie) = self.url_cookie();
        BitcoinCoreRpc::new(RpcConfig::new(url, RpcAuth::Cookie(cookie))).unwrap()
    }
}

fn log_file(dir: &Path, name: &str) -> Stdio {
    Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name)).unwrap())
}

/// Every process a test spawned, killed when the test ends (a panic included): a failed run
/// must not leave nodes behind to slow the tests after it.
#[derive(Default)]
struct Reaper(std::sync::Mutex<Vec<u32>>);

impl Reaper {
    fn track(&self, c: Child) -> Child {
        if let Ok(mut v) = self.0.lock() {
            v.push(c.id());
        }
        c
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let pids = self.0.lock().map(|v| v.clone()).unwrap_or_default();
        for pid in pids {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).stderr(Stdio::null()).status();
        }
    }
}

fn spawn_coordinator(cfg: &Path, dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["coordinator", "--config"])
        .arg(cfg)
        .env("CAIRN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log_file(dir, "coordinator.log"))
        .spawn()
        .unwrap()
}

fn spawn_worker(cfg: &Path, dir: &Path, i: usize) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["worker", "--config"])
        .arg(cfg)
        .env("CAIRN_LOG", std::env::var("CAIRN_CHAOS_WORKER_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::null())
        .stderr(log_file(dir, &format!("worker-{i}.log")))
        .spawn()
        .unwrap()
}

fn sigkill(c: &mut Child) {
    c.kill().unwrap();
    c.wait().unwrap();
}

fn up(api: SocketAddr) -> bool {
    matches!(try_http(api, "GET", "/v1/health", None, None), Some((200, _)))
}

fn wait_up(api: SocketAddr, dir: &Path) {
    for _ in 0..600 {
        if up(api) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "coordinator did not come up; log:\n{}",
        std::fs::read_to_string(dir.join("coordinator.log")).unwrap_or_default()
    );
}

fn get(api: SocketAddr, path: &str) -> Option<Value> {
    match try_http(api, "GET", path, None, None) {
        Some((200, v)) => Some(v),
        _ => None,
    }
}

fn anchors(api: SocketAddr) -> Vec<Value> {
    get(api, "/v1/anchors").and_then(|v| v["anchors"].as_array().cloned()).unwrap_or_default()
}

/// The last lines each worker logged.
fn worker_logs(dir: &Path) -> String {
    (0..3)
        .map(|i| {
            let l = std::fs::read_to_string(dir.join(format!("worker-{i}.log"))).unwrap_or_default();
            let tail: Vec<&str> = l.lines().rev().take(12).collect();
            format!("worker {i}:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits (up to `secs`) for `f`; on timeout, panics with what the node says and its log's tail.
fn wait_for(what: &str, secs: u64, api: SocketAddr, dir: &Path, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        if Instant::now() >= deadline {
            let log = std::fs::read_to_string(dir.join("coordinator.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "chaos: timed out after {secs} s waiting for {what}\nstats: {}\nworkers: {}\nanchors: {:?}\ncoordinator log (tail):\n{}\n{}",
                get(api, "/v1/stats").unwrap_or_default(),
                get(api, "/v1/workers").unwrap_or_default(),
                anchors(api),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                worker_logs(dir)
            );
        }
        std::thread::sleep(cairn_testkit::POLL);
    }
}

/// Anchors superseded by a replacement: `replaced` while the replacement waits, `conflicted`
/// once it confirmed (it spends the same output).
fn superseded(api: SocketAddr) -> usize {
    anchors(api).iter().filter(|a| a["status"] == "replaced" || a["status"] == "conflicted").count()
}

fn regtest_address(seed: u8) -> String {
    let key = cairn_spec::SigningKey::from_secret_bytes([seed; 32]).unwrap();
    cairn_anchor::anchor_address(&key.public(), cairn_spec::Network::Regtest).to_string()
}

#[derive(Default, Debug)]
struct Figures {
    accepted: usize,
    decided: usize,
    pending: usize,
    coordinator_kills: u32,
    worker_kills: u32,
    outages: u32,
    reorgs: u32,
    replacements: usize,
    epochs: u32,
    anchors_confirmed: usize,
    receipts: usize,
    receipts_verified: usize,
    payouts: usize,
}

fn chaos(mut btc: Btc, label: &str) {
    let kills_wanted: u32 =
        std::env::var("CAIRN_CHAOS_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let seed: u64 = std::env::var("CAIRN_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(11);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("coordinator");
    let (url, cookie) = btc.url_cookie();
    let rpc = Arc::new(btc.rpc());
    let mut cfg = common::rpc_config(&data, &url, &cookie);
    cfg.lifecycle.epoch_interval_secs = 2;
    cfg.lifecycle.epoch_max_receipts = 40;
    cfg.lifecycle.payout_threshold_sats = 1000;
    cfg.classes[0].replication = 2;
    let cfg_path = dir.path().join("coordinator.toml");
    std::fs::write(&cfg_path, common::to_toml(&cfg)).unwrap();
    let api: SocketAddr = cfg.api.listen.parse().unwrap();
    let p2p_port: u16 = cfg.p2p.listen[0].rsplit('/').next().unwrap().parse().unwrap();

    let reaper = Reaper::default();
    let mut coordinator = reaper.track(spawn_coordinator(&cfg_path, dir.path()));
    wait_up(api, dir.path());
    let token = std::fs::read_to_string(data.join("operator.token")).unwrap().trim().to_owned();
    let info: Value = serde_json::from_slice(&std::fs::read(data.join("node.json")).unwrap()).unwrap();
    let peer = info["p2p"][0].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let anchor_address = info["anchor_address"].as_str().unwrap().to_owned();
    let miner = regtest_address(200);
    rpc.raw_call("generatetoaddress", json!([1, anchor_address])).unwrap();
    rpc.raw_call("generatetoaddress", json!([100, miner])).unwrap();

    // Three worker processes running the command executor.
    let worker_cfgs: Vec<PathBuf> = (0..3)
        .map(|i| {
            let path = dir.path().join(format!("worker-{i}.toml"));
            std::fs::write(
                &path,
                format!(
                    "network = \"regtest\"\ndata_dir = \"{}\"\npayout_address = \"{}\"\np2p_listen = [\"/ip4/127.0.0.1/tcp/0\"]\n\
                     [[coordinator]]\np2p = \"/ip4/127.0.0.1/tcp/{p2p_port}/p2p/{peer}\"\n\
                     [embedding]\nenabled = false\n[command]\nprogram = \"tr\"\nargs = [\"a-z\", \"A-Z\"]\n",
                    dir.path().join(format!("worker-{i}")).display(),
                    regtest_address(10 + i as u8),
                ),
            )
            .unwrap();
            path
        })
        .collect();
    let mut workers: Vec<Child> =
        worker_cfgs.iter().enumerate().map(|(i, c)| reaper.track(spawn_worker(c, dir.path(), i))).collect();

    // Blocks keep coming, except while the harness holds them back.
    let mining = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let miner_thread = {
        let (rpc, mining, stop, miner) = (rpc.clone(), mining.clone(), stop.clone(), miner.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(700));
                if mining.load(Ordering::SeqCst) {
                    let _ = rpc.raw_call("generatetoaddress", json!([1, miner]));
                }
            }
        })
    };
    // The stream of tasks; a submission the node did not answer is retried with its nonce.
    let accepted = Arc::new(std::sync::Mutex::new(BTreeMap::<u64, Hash32>::new()));
    let load = {
        let (accepted, stop, token) = (accepted.clone(), stop.clone(), token.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let body = format!(
                    r#"{{"class":"echo","input_text":"chaos task {n}","units":1,"budget_sats":1000,"nonce":{n}}}"#
                );
                if let Some((201, v)) = try_http(api, "POST", "/v1/tasks", Some(&token), Some(&body)) {
                    accepted.lock().unwrap().insert(n, Hash32::from_hex(v["id"].as_str().unwrap()).unwrap());
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };

    let mut fig = Figures::default();
    let mut rng = Lcg(seed);
    let t0 = Instant::now();
    while fig.coordinator_kills < kills_wanted {
        std::thread::sleep(Duration::from_millis(1500 + rng.next(3000)));
        sigkill(&mut coordinator);
        fig.coordinator_kills += 1;
        coordinator = reaper.track(spawn_coordinator(&cfg_path, dir.path()));
        wait_up(api, dir.path());
        match fig.coordinator_kills {
            // A worker killed mid-stream (it has leases and commitments open), back a moment later.
            3 => {
                sigkill(&mut workers[1]);
                fig.worker_kills += 1;
                std::thread::sleep(Duration::from_millis(800));
                workers[1] = reaper.track(spawn_worker(&worker_cfgs[1], dir.path(), 1));
            }
            // Bitcoin goes away for a while and comes back.
            5 => {
                mining.store(false, Ordering::SeqCst);
                match &mut btc {
                    Btc::Embedded(e) => e.chain.set_down(true),
                    Btc::Core(n) => n.stop(),
                }
                std::thread::sleep(Duration::from_secs(4));
                match &mut btc {
                    Btc::Embedded(e) => e.chain.set_down(false),
                    Btc::Core(n) => n.restart().unwrap(),
                }
                mining.store(true, Ordering::SeqCst);
                fig.outages += 1;
            }
            // The block holding the newest anchor is reorged out while shallow: an epoch
            // closes with blocks held back, its anchor is mined in one block, and that block
            // is invalidated; a longer branch follows. The anchor is mined again (or
            // replaced); nothing conflicting appears. (Shallower than `finality_depth`: the
            // beacon after that anchor was not final, so no draw used it. A deeper reorg
            // would move a beacon already used, which the chain audit reports, SPEC.md §12.1.)
            7 => {
                wait_for("the open epoch to be armed", 120, api, dir.path(), || {
                    get(api, "/v1/stats").is_some_and(|s| s["open_epoch_armed"] == true)
                });
                mining.store(false, Ordering::SeqCst);
                let _ = try_http(api, "POST", "/v1/epochs/close", Some(&token), None);
                wait_for("an anchor to reorg", 120, api, dir.path(), || {
                    anchors(api).iter().any(|a| a["status"] == "pending")
                });
                let mined = rpc.raw_call("generatetoaddress", json!([1, miner])).unwrap();
                let block = mined[0].as_str().unwrap().to_owned();
                let height = rpc.chain_info().unwrap().tip_height;
                wait_for("the anchor confirmed", 60, api, dir.path(), || {
                    anchors(api).iter().any(|a| a["status"] == "confirmed" && a["height"] == height)
                });
                rpc.raw_call("invalidateblock", json!([block])).unwrap();
                // Another address than the invalidated block's coinbase: otherwise the first
                // new block can be that very block again (same parent, transactions, second).
                rpc.raw_call("generatetoaddress", json!([3, regtest_address(201)])).unwrap();
                mining.store(true, Ordering::SeqCst);
                fig.reorgs += 1;
            }
            // An anchor kept out of blocks (as if its fee were too low) must be replaced.
            9 => {
                let replaced_before = superseded(api);
                // The open epoch closes only once armed (its beacon block final, SPEC.md
                // §12.1), which needs blocks: wait for that before holding them back.
                wait_for("the open epoch to be armed", 120, api, dir.path(), || {
                    get(api, "/v1/stats").is_some_and(|s| s["open_epoch_armed"] == true)
                });
                mining.store(false, Ordering::SeqCst);
                let _ = try_http(api, "POST", "/v1/epochs/close", Some(&token), None);
                let mut pending = None;
                wait_for("a pending anchor", 120, api, dir.path(), || {
                    pending = anchors(api).into_iter().find(|a| a["status"] == "pending");
                    pending.is_some()
                });
                let txid = pending.unwrap()["txid"].as_str().unwrap().to_owned();
                for _ in 0..40 {
                    match &btc {
                        Btc::Embedded(e) => e.chain.mine_empty(1),
                        Btc::Core(_) => {
                            // Core mines by fee: a large negative delta keeps it out of blocks.
                            let _ = rpc.raw_call("prioritisetransaction", json!([txid, 0, -100_000_000]));
                            rpc.raw_call("generatetoaddress", json!([1, miner])).unwrap();
                        }
                    }
                    std::thread::sleep(Duration::from_millis(400));
                    if superseded(api) > replaced_before {
                        break;
                    }
                }
                mining.store(true, Ordering::SeqCst);
                wait_for("the stuck anchor to be replaced", 60, api, dir.path(), || {
                    superseded(api) > replaced_before
                });
            }
            _ => {}
        }
    }
    let chaos_secs = t0.elapsed().as_secs();
    stop.store(true, Ordering::SeqCst);
    load.join().unwrap();

    // Settle: blocks keep coming until the open tasks are decided and the newest epoch is
    // anchored and two deep.
    let miner_rpc = btc.rpc();
    let mine = |n: u32| {
        let _ = miner_rpc.raw_call("generatetoaddress", json!([n, miner]));
    };
    wait_up(api, dir.path());
    let t_settle = Instant::now();
    while !get(api, "/v1/stats").is_some_and(|s| s["tasks"]["commit"] == 0 && s["tasks"]["reveal"] == 0) {
        if t_settle.elapsed() > Duration::from_secs(180) {
            let tasks = get(api, "/v1/tasks?limit=500").unwrap_or_default();
            let open: Vec<&Value> = tasks["tasks"]
                .as_array()
                .map(|t| t.iter().filter(|t| t["phase"] != "decided").take(3).collect())
                .unwrap_or_default();
            panic!(
                "{label}: open tasks not decided in 180 s: {}\nworkers: {}\nopen: {open:?}\n{}",
                get(api, "/v1/stats").unwrap_or_default(),
                get(api, "/v1/workers").unwrap_or_default(),
                worker_logs(dir.path())
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // The open epoch closes once armed (SPEC.md §12.1): asked again as blocks come, until no
    // receipt is left in it.
    wait_for("the newest epoch to be anchored two deep", 180, api, dir.path(), || {
        mine(1);
        let _ = try_http(api, "POST", "/v1/epochs/close", Some(&token), None);
        let Some(s) = get(api, "/v1/stats") else { return false };
        let next = s["epochs"].as_u64().unwrap_or(0);
        s["open_epoch_receipts"] == 0
            && next > 0
            && get(api, &format!("/v1/epochs/{}", next - 1)).is_some_and(|e| {
                e["anchor"]["status"] == "confirmed"
                    && e["anchor"]["confirmations"].as_u64().unwrap_or(0) >= 2
            })
    });
    // Every payout settlement queued is paid, finality-deep, and nothing new is on its way:
    // blocks come only while some payout waits, and the answer counts once the node has seen
    // the newest block twice in a row.
    let mut stable = 0;
    wait_for("every payout paid", 180, api, dir.path(), || {
        let _ = try_http(api, "POST", "/v1/epochs/close", Some(&token), None);
        let all_paid = get(api, "/v1/payouts").is_some_and(|p| {
            p["payouts"].as_array().is_some_and(|l| l.iter().all(|p| p["status"]["status"] == "paid"))
        });
        let tip = miner_rpc.chain_info().ok().map(|c| u64::from(c.tip_height));
        let seen = get(api, "/v1/anchors").and_then(|a| a["tip_height"].as_u64());
        if !all_paid {
            stable = 0;
            mine(1);
            return false;
        }
        stable = if tip.is_some() && tip == seen { stable + 1 } else { 0 };
        stable >= 2
    });
    let confirmed_anchors: Vec<Value> =
        anchors(api).into_iter().filter(|a| a["status"] == "confirmed").collect();
    miner_thread.join().unwrap();

    // The auditor's whole-chain audit: every epoch re-verified, the anchors walked as one
    // chain of spends from the genesis anchor, each committing a header of that chain.
    let bitcoin = cairn_cli::audit::BitcoinArgs {
        rpc_url: Some(btc.url_cookie().0),
        rpc_cookie: Some(btc.url_cookie().1),
        ..Default::default()
    };
    let args = cairn_cli::audit::ChainArgs {
        api: Some(format!("http://{api}")),
        scope: cairn_audit::chain::Scope { from: 0, to: None, genesis: None },
        ..Default::default()
    };
    let out = cairn_cli::audit::audit_epochs(&args, &bitcoin, &mut |_, _| {}).unwrap();
    assert!(out.ok, "{label}: chain audit failed:\n{}", out.output);
    let all_anchors = anchors(api);
    // A replaced anchor ends `replaced`, or `conflicted` once its replacement confirmed (it
    // spent the same output). Either way a confirmed anchor of the one chain covers its epoch;
    // that no two anchors of the chain conflict is what the audit above walked.
    let newest_confirmed = all_anchors
        .iter()
        .filter(|a| a["status"] == "confirmed")
        .filter_map(|a| a["epoch"].as_u64())
        .max()
        .unwrap();
    let superseded: Vec<&Value> =
        all_anchors.iter().filter(|a| a["status"] == "replaced" || a["status"] == "conflicted").collect();
    for a in &superseded {
        assert!(
            a["epoch"].as_u64().unwrap() <= newest_confirmed,
            "{label}: superseded anchor not covered: {a}"
        );
    }
    // (An anchor may still be pending: settlement queues payouts, and an idle epoch closes to
    // carry them; its receipts, if any, are checked below like every other.)
    fig.replacements = superseded.len();
    fig.anchors_confirmed = all_anchors.iter().filter(|a| a["status"] == "confirmed").count();
    assert!(fig.replacements >= 1, "{label}: no anchor was replaced");

    // Every receipt of every anchored epoch audits ✓ against Bitcoin.
    let source = cairn_audit::source::ApiSource::new(&format!("http://{api}"));
    let stats = get(api, "/v1/stats").unwrap();
    let epochs = u32::try_from(stats["epochs"].as_u64().unwrap()).unwrap();
    for h in 0..epochs {
        use cairn_audit::source::Source as _;
        for r in source.epoch_receipts(h).unwrap() {
            let proof = cairn_audit::receipt::assemble(&source, &r.id(), &*rpc, cairn_spec::Network::Regtest)
                .unwrap();
            let report = cairn_audit::verify::verify_receipt(&proof, &*rpc, cairn_spec::Network::Regtest, 1);
            assert!(report.ok(), "{label}: receipt {} of epoch {h}: {:?}", r.id(), report.first_failure());
            fig.receipts_verified += 1;
        }
    }

    // Stop (SIGTERM: a clean shutdown) and read the database itself.
    let _ = Command::new("kill").arg("-TERM").arg(coordinator.id().to_string()).status();
    assert!(coordinator.wait().unwrap().success(), "{label}: graceful shutdown failed");
    for w in &mut workers {
        let _ = Command::new("kill").arg("-TERM").arg(w.id().to_string()).status();
        let _ = w.wait();
    }
    let store = RocksStore::open(&data.join("db")).unwrap();
    let accepted = accepted.lock().unwrap().clone();
    fig.accepted = accepted.len();
    let mut receipts_expected = 0usize;
    for id in accepted.values() {
        let rec = ls::task(&store, id).unwrap().expect("an accepted task was lost");
        if rec.phase.is_final() {
            fig.decided += 1;
        } else {
            fig.pending += 1;
        }
        receipts_expected += rec.assignments.iter().filter(|a| a.verdict == Some(Verdict::Accepted)).count();
    }
    fig.epochs = ls::check_header_chain(&store).unwrap();
    // An idle epoch carrying payouts may close after the count above; it has no receipts.
    assert!(fig.epochs >= epochs);
    let mut seen = BTreeSet::new();
    let mut rewards = 0u64;
    for e in 0..fig.epochs {
        for r in ls::epoch_receipts(&store, e).unwrap() {
            assert!(seen.insert((r.body.task, r.body.worker)), "{label}: duplicate receipt");
            rewards += r.body.reward_sats;
            fig.receipts += 1;
        }
    }
    // Canaries (the node's own tasks) may add receipts beyond the submitted stream.
    assert!(
        fig.receipts >= receipts_expected,
        "{label}: {} receipts for {receipts_expected} accepted results",
        fig.receipts
    );
    assert_eq!(fig.receipts, fig.receipts_verified);
    let snap = ls::load(&store).unwrap().unwrap();
    assert_eq!(snap.meta.credited, rewards, "{label}: credits differ from receipt rewards");
    let ledger: u64 = snap.ledger.iter().map(|e| e.locked + e.claimable + e.paid).sum();
    assert_eq!(ledger + snap.meta.forfeited, rewards, "{label}: the ledger does not add up");
    assert!(fig.decided > 0 && fig.accepted > 20, "{label}: too little work: {fig:?}");

    // Every sat the ledger calls paid is in exactly one confirmed output on chain: each paid
    // payout in an output of its own (its address, its amount) of a best-chain transaction,
    // no payout in two confirmed anchors, and no confirmed anchor paying what no payout says.
    let payouts = ls::payouts(&store).unwrap();
    let paid_total: u64 = snap.ledger.iter().map(|e| e.paid).sum();
    assert_eq!(payouts.iter().map(|p| p.amount).sum::<u64>(), paid_total, "{label}: payouts ≠ ledger paid");
    let mut outputs_used = BTreeSet::new();
    for p in &payouts {
        let cairn_coordinator::lifecycle::PayoutStatus::Paid { txid, height } = p.status else {
            panic!("{label}: payout {} still queued: {p:?}", p.id)
        };
        let block = rpc.block_hash(height).unwrap().expect("the payout's block");
        let tx = rpc.transaction(&txid, Some(&block)).unwrap().unwrap_or_else(|| {
            panic!("{label}: payout {} names {txid} at {height}, not in the best chain", p.id)
        });
        let script = p
            .address
            .parse::<bitcoin::Address<bitcoin::address::NetworkUnchecked>>()
            .unwrap()
            .assume_checked()
            .script_pubkey();
        let vout = (0..tx.output.len())
            .find(|v| {
                let o = &tx.output[*v];
                o.script_pubkey == script
                    && o.value.to_sat() == p.amount
                    && !outputs_used.contains(&(txid, *v))
            })
            .unwrap_or_else(|| panic!("{label}: payout {p:?} has no output of its own in {txid}"));
        outputs_used.insert((txid, vout));
    }
    let mut carried = BTreeSet::new();
    let mut on_chain = 0u64;
    for a in &confirmed_anchors {
        let txid: bitcoin::Txid = a["txid"].as_str().unwrap().parse().unwrap();
        let block = rpc.block_hash(u32::try_from(a["height"].as_u64().unwrap()).unwrap()).unwrap().unwrap();
        let tx = rpc.transaction(&txid, Some(&block)).unwrap().expect("a confirmed anchor on chain");
        on_chain += tx.output.iter().skip(2).map(|o| o.value.to_sat()).sum::<u64>();
        for id in a["payouts"].as_array().unwrap() {
            assert!(carried.insert(id.as_u64().unwrap()), "{label}: payout {id} in two confirmed anchors");
        }
    }
    assert_eq!(
        on_chain, paid_total,
        "{label}: confirmed anchors pay {on_chain} sats, the ledger says {paid_total}"
    );
    fig.payouts = payouts.len();
    assert!(fig.payouts > 0, "{label}: no payout was made");
    println!(
        "chaos ({label}, seed {seed}, {chaos_secs} s of chaos): {} tasks accepted ({} final, decided or failed; {} pending; none lost or duplicated); \
         {} coordinator SIGKILLs and {} worker SIGKILL survived; {} Bitcoin outage; {} reorg; {} anchor replacement(s); \
         {} epochs chained, {} anchors confirmed in one chain of spends; {} receipts, {} verified against Bitcoin; credits = rewards = {rewards} sats; {} payouts, each in one confirmed output",
        fig.accepted,
        fig.decided,
        fig.pending,
        fig.coordinator_kills,
        fig.worker_kills,
        fig.outages,
        fig.reorgs,
        fig.replacements,
        fig.epochs,
        fig.anchors_confirmed,
        fig.receipts,
        fig.receipts_verified,
        fig.payouts,
    );
}

#[test]
fn chaos_on_the_embedded_chain() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rpc = rt.block_on(EmbeddedRpc::start(ScriptedBackend::new(), dir.path())).unwrap();
    chaos(Btc::Embedded(rpc), "embedded chain");
    drop(rt);
}

#[test]
fn chaos_on_bitcoind() {
    let Some(exe) = cairn_testkit::bitcoind() else { return };
    let dir = tempfile::tempdir().unwrap();
    let node = RegtestNode::start(&exe, &dir.path().join("bitcoind")).unwrap();
    chaos(Btc::Core(node), "bitcoind");
}
