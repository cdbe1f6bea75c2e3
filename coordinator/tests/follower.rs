//! A follower over real libp2p and RocksDB: it replicates a coordinator's epochs, receipts and
//! ledger snapshots, serves the same read API (what it serves audits ✓), keeps up with new
//! epochs, and — when a peer with the coordinator's key serves a bad epoch or another header
//! for a held height — keeps its verified history, names the failed check and keeps the
//! evidence across a restart. No Bitcoin here (`audit_bitcoind.rs` has the follower on a real
//! node).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use cairn_testkit::node as common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_p2p::{Network, NetworkConfig, NetworkEvent};
use cairn_spec::hash::sha256;
use cairn_spec::{
    Decode, EpochHeader, Hash32, LedgerEntry, PubKey, RequestBody, ResponseBody, Signed, SignedEpochHeader,
    SignedReceipt, WorkReceipt,
};
use common::{http, Worker};
use serde_json::Value;

/// Submits `n` tasks, has the workers run them, and closes the epoch.
async fn epoch_of_tasks(api: SocketAddr, token: &str, ws: &[&Worker], n: u32, tag: &str) {
    for i in 0..n {
        let body = format!(r#"{{"class":"echo","input_text":"{tag}-{i}","units":1,"budget_sats":1000}}"#);
        let (s, v) = http(api, "POST", "/v1/tasks", Some(token), Some(&body));
        assert_eq!(s, 201, "{v}");
        let task = Hash32::from_hex(v["id"].as_str().unwrap()).unwrap();
        let t = common::run_task(api, ws, task, &|_| b"OUT".to_vec()).await;
        assert_eq!(t["phase"], "decided", "{t}");
    }
    let (s, v) = http(api, "POST", "/v1/epochs/close", Some(token), None);
    assert_eq!(s, 200, "{v}");
}

fn get(api: SocketAddr, path: &str) -> Value {
    let (s, v) = http(api, "GET", path, None, None);
    assert_eq!(s, 200, "{path}: {v}");
    v
}

async fn wait_for(what: &str, ok: impl FnMut() -> bool) {
    cairn_testkit::wait_for_async(what, Duration::from_secs(30), ok).await;
}

fn next_epoch(api: SocketAddr) -> u64 {
    get(api, "/v1/health")["next_epoch"].as_u64().unwrap()
}

fn decode<T: Decode>(v: &Value) -> T {
    T::from_bytes(&hex::decode(v.as_str().unwrap()).unwrap()).unwrap()
}

/// What a coordinator's API serves of its chain: headers, receipts and ledgers by height.
struct Copy {
    headers: Vec<SignedEpochHeader>,
    receipts: BTreeMap<u32, Vec<SignedReceipt>>,
    ledgers: BTreeMap<u32, Vec<LedgerEntry>>,
}

fn copy_chain(api: SocketAddr) -> Copy {
    let headers: Vec<SignedEpochHeader> =
        get(api, "/v1/epochs")["epochs"].as_array().unwrap().iter().map(|e| decode(&e["encoding"])).collect();
    let mut c = Copy { headers, receipts: BTreeMap::new(), ledgers: BTreeMap::new() };
    for h in &c.headers {
        let n = h.body.height;
        let r = get(api, &format!("/v1/epochs/{n}/receipts"));
        c.receipts.insert(n, r["receipts"].as_array().unwrap().iter().map(decode).collect());
        let l = get(api, &format!("/v1/epochs/{n}/ledger"));
        c.ledgers.insert(n, l["entries"].as_array().unwrap().iter().map(decode).collect());
    }
    c
}

/// A peer holding the coordinator's key that serves `chain` over the sync protocol, with a
/// forged next epoch (validly signed and linked, its receipts root wrong) or, once `twin` is
/// set, another validly signed header for the newest height.
async fn impostor(
    key: cairn_spec::SigningKey,
    listen: String,
    chain: Copy,
    twin: Arc<AtomicBool>,
    rounds: Arc<AtomicUsize>,
) -> Network {
    let last = chain.headers.last().unwrap().clone();
    let mut forged = EpochHeader {
        height: last.body.height + 1,
        prev: last.body.hash(),
        time: last.body.time + 1,
        receipt_count: 1,
        accepted_count: 1,
        reward_sats: 100,
        // The key's holder knows the seed the next header must reveal, and the history of
        // the headers before it.
        draw_seed: cairn_coordinator::lifecycle::draw_seed_of(&key, last.body.height + 1),
        history: cairn_spec::merkle::Frontier::of(chain.headers.iter().map(|h| h.id())).root(),
        ..last.body.clone()
    };
    let receipt = SignedReceipt::sign(
        WorkReceipt {
            epoch: forged.height,
            task: sha256(b"a task never run"),
            ..chain.receipts[&0][0].body.clone()
        },
        &key,
        &[3; 32],
    );
    forged.receipts_root = sha256(b"not the root of the receipt served");
    let forged = Signed::sign(forged, &key, &[3; 32]);
    let mut other = last.body.clone();
    other.time += 7;
    let other = Signed::sign(other, &key, &[3; 32]);
    let mut cfg = NetworkConfig::new(cairn_spec::Network::Regtest);
    cfg.listen = vec![listen];
    let (net, mut events) = Network::start(cfg, &key).await.unwrap();
    let n2 = net.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            let NetworkEvent::Request { request, reply, .. } = ev else { continue };
            let twin = twin.load(Ordering::SeqCst);
            let mut headers = chain.headers.clone();
            if twin {
                *headers.last_mut().unwrap() = other.clone();
            } else {
                headers.push(forged.clone());
            }
            let body = match request.body {
                RequestBody::GetEpochs { from, count } => {
                    // A sync round starts with the headers: counting them tells the test a
                    // whole round ran after another one.
                    rounds.fetch_add(1, Ordering::SeqCst);
                    ResponseBody::Epochs(
                        headers.into_iter().filter(|h| h.body.height >= from).take(count as usize).collect(),
                    )
                }
                RequestBody::GetEpochReceipts { height, from, .. } => {
                    let rs = if height == forged.body.height {
                        vec![receipt.clone()]
                    } else {
                        chain.receipts.get(&height).cloned().unwrap_or_default()
                    };
                    ResponseBody::Receipts(rs.into_iter().skip(from as usize).collect())
                }
                RequestBody::GetLedger { height, from, .. } => {
                    let l = chain.ledgers.get(&height.min(last.body.height)).cloned().unwrap_or_default();
                    ResponseBody::Ledger {
                        total: l.len() as u32,
                        entries: l.into_iter().skip(from as usize).collect(),
                    }
                }
                _ => ResponseBody::error(cairn_spec::ErrorReason::Malformed, "no"),
            };
            let _ = n2.respond(reply, body).await;
        }
    });
    net
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_replicates_reverifies_and_keeps_evidence_of_a_bad_epoch() {
    let cdir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut cfg = common::test_config(cdir.path());
    cfg.p2p.listen = vec![format!("/ip4/127.0.0.1/tcp/{port}")];
    let (info, stop, handle) = common::start_node(&cfg).await;
    let api = info.api;
    let token = std::fs::read_to_string(cdir.path().join("operator.token")).unwrap().trim().to_string();
    let coordinator = PubKey::from_hex(&info.coordinator).unwrap();
    let coord_addr = info.p2p[0].clone();
    let w0 = Worker::start(common::key(1), &coord_addr).await;
    let w1 = Worker::start(common::key(2), &coord_addr).await;
    assert_eq!(w0.register(coordinator, 4).await, ResponseBody::Ack);
    assert_eq!(w1.register(coordinator, 4).await, ResponseBody::Ack);
    for e in 0..3 {
        epoch_of_tasks(api, &token, &[&w0, &w1], 3, &format!("e{e}")).await;
    }

    // A follower that knows only the coordinator's address (its peer id is the key).
    let fdir = tempfile::tempdir().unwrap();
    let ftoml = common::follower_config(fdir.path(), &coord_addr, common::no_bitcoin());
    let (finfo, fstop, fhandle) = common::start_follower(&ftoml).await;
    let fapi = finfo.api;
    assert_eq!(finfo.coordinator, coordinator.to_hex());
    wait_for("the follower to hold 3 epochs", || next_epoch(fapi) == 3).await;
    let h = get(fapi, "/v1/health");
    assert_eq!((h["role"].as_str(), h["evidence"].as_u64()), (Some("follower"), Some(0)), "{h}");

    // It serves what the coordinator serves, byte for byte.
    let epochs = |a| {
        get(a, "/v1/epochs")["epochs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["encoding"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(epochs(fapi), epochs(api));
    for n in 0..3 {
        for route in ["receipts", "ledger"] {
            let p = format!("/v1/epochs/{n}/{route}");
            assert_eq!(get(fapi, &p), get(api, &p), "{p}");
        }
    }
    // Both serve the path from epoch 0's header to header 2's history root (SPEC.md §5.9),
    // and it reaches the root the signed header commits.
    let hp = get(api, "/v1/epochs/2/history/0");
    assert_eq!(get(fapi, "/v1/epochs/2/history/0"), hp);
    let h0: SignedEpochHeader = decode(&get(api, "/v1/epochs/0")["encoding"]);
    let h2: SignedEpochHeader = decode(&get(api, "/v1/epochs/2")["encoding"]);
    let siblings: Vec<Hash32> = serde_json::from_value(hp["siblings"].clone()).unwrap();
    let path = cairn_spec::merkle::MerkleProof { index: 0, count: 2, siblings };
    assert_eq!(path.root_for(&h0.id()).unwrap(), h2.body.history);
    assert_eq!(http(api, "GET", "/v1/epochs/2/history/2", None, None).0, 400);
    assert_eq!(http(api, "GET", "/v1/epochs/9/history/0", None, None).0, 404);
    let rid = get(api, "/v1/epochs/1/receipts")["receipts"][0].clone();
    let rid = decode::<SignedReceipt>(&rid).id();
    let proof = get(fapi, &format!("/v1/receipts/{rid}/proof"));
    assert_eq!(proof["merkle_proof"], get(api, &format!("/v1/receipts/{rid}/proof"))["merkle_proof"]);
    // Balances as of the newest verified epoch, with a proof against its state root.
    let bal = get(fapi, &format!("/v1/ledger/{}", w0.public()));
    assert_eq!(
        (bal["proof"]["epoch"].as_u64(), bal["locked"].as_u64().unwrap() > 0),
        (Some(2), true),
        "{bal}"
    );
    // What only the coordinator knows is not served, and writes are not taken.
    assert_eq!(http(fapi, "GET", "/v1/workers", None, None).0, 404);
    assert_eq!(http(fapi, "POST", "/v1/epochs/close", Some(&token), None).0, 404);
    // Not with the coordinator's token, nor with an empty one (a follower has no token).
    let task = r#"{"class":"echo","input_text":"x","units":1,"budget_sats":1000}"#;
    assert_eq!(http(fapi, "POST", "/v1/tasks", Some(&token), Some(task)).0, 404);
    assert_eq!(http(fapi, "POST", "/v1/tasks", Some(""), Some(task)).0, 404);
    // The auditor's chain audit passes against the follower's API.
    let source = cairn_audit::ApiSource::new(&format!("http://{fapi}"));
    let audit =
        cairn_audit::chain::audit_chain(&source, &[], None, &Default::default(), &mut |_, _| {}).unwrap();
    assert!(audit.ok() && audit.epochs.len() == 3, "{audit:#?}");

    // New epochs reach it (gossip starts a sync; the timer would too).
    epoch_of_tasks(api, &token, &[&w0, &w1], 2, "e3").await;
    wait_for("the follower to hold epoch 3", || next_epoch(fapi) == 4).await;
    assert_eq!(epochs(fapi), epochs(api));

    // The coordinator goes away; a peer with its key and address serves a bad epoch 4.
    let chain = copy_chain(api);
    let key = cairn_coordinator::keyfile::load(&cdir.path().join("node.key")).unwrap();
    let _ = stop.send(());
    handle.await.unwrap();
    let twin = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let fake = impostor(key, format!("/ip4/127.0.0.1/tcp/{port}"), chain, twin.clone(), rounds.clone()).await;
    let evidence = |a| get(a, "/v1/evidence")["evidence"].as_array().unwrap().clone();
    wait_for("evidence of the bad epoch", || !evidence(fapi).is_empty()).await;
    let ev = evidence(fapi);
    assert_eq!(
        (ev[0]["kind"].as_str(), ev[0]["height"].as_u64(), ev[0]["check"].as_str()),
        (Some("bad_epoch"), Some(4), Some("receipts_root")),
        "{ev:?}"
    );
    let refused: SignedEpochHeader = decode(&ev[0]["headers"][0]);
    assert_eq!(refused.body.height, 4);
    // Two more rounds start after the refusal, so at least one whole round ran after it.
    let seen = rounds.load(Ordering::SeqCst);
    wait_for("two more sync rounds", || rounds.load(Ordering::SeqCst) >= seen + 2).await;
    assert_eq!(next_epoch(fapi), 4, "the refused epoch is not kept");
    assert_eq!(evidence(fapi).len(), 1, "the same refusal is kept once");

    // It now serves another signed header for epoch 3: equivocation, both headers kept.
    twin.store(true, Ordering::SeqCst);
    wait_for("evidence of equivocation", || evidence(fapi).len() == 2).await;
    let ev = evidence(fapi);
    assert_eq!((ev[1]["kind"].as_str(), ev[1]["height"].as_u64()), (Some("equivocation"), Some(3)));
    let pair: Vec<SignedEpochHeader> = ev[1]["headers"].as_array().unwrap().iter().map(decode).collect();
    assert_eq!(pair.len(), 2);
    assert!(pair[0].verify() && pair[1].verify() && pair[0].body.hash() != pair[1].body.hash());
    assert_eq!(epochs(fapi).len(), 4, "the verified history is kept");

    // A restart finds the verified chain and the evidence where they were.
    fake.shutdown().await;
    let _ = fstop.send(());
    fhandle.await.unwrap();
    let (finfo, fstop, fhandle) = common::start_follower(&ftoml).await;
    assert_eq!(next_epoch(finfo.api), 4);
    assert_eq!(evidence(finfo.api).len(), 2);
    let _ = fstop.send(());
    fhandle.await.unwrap();
}
