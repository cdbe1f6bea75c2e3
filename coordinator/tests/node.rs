//! The coordinator node over real sockets: the HTTP API on 127.0.0.1 (every endpoint,
//! unauthorised and malformed requests, the OpenAPI document against the routes) and workers
//! over real libp2p running a task to its receipt; then a clean shutdown and a restart that
//! finds everything where it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use cairn_testkit::node as common;

use std::collections::BTreeSet;

use cairn_coordinator::api::ROUTES;
use cairn_coordinator::config::CanaryConfig;
use cairn_coordinator::node::NodeInfo;
use cairn_spec::{
    Decode, ErrorReason, Hash32, LedgerEntry, MerkleProof, Object, PubKey, ResponseBody, SignedReceipt,
};
use common::{http, Worker};
use serde_json::Value;
use std::time::Duration;

async fn start(
    dir: &std::path::Path,
) -> (NodeInfo, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    // A pool of 8 canaries, each used once: every submission makes one due (until the pool is
    // used up), released within 2 seconds.
    let mut cfg = common::test_config(dir);
    cfg.canary_every = 1;
    cfg.lifecycle.canary_spread_secs = 2;
    cfg.canaries = (0..8)
        .map(|i| CanaryConfig {
            class: "echo".into(),
            input_hex: hex::encode(format!("hi{i}")),
            answer_hex: hex::encode(format!("HI{i}")),
            units: 1,
        })
        .collect();
    common::start_node(&cfg).await
}

fn h(v: &Value) -> Hash32 {
    Hash32::from_hex(v.as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_workers_over_real_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let (info, stop, handle) = start(dir.path()).await;
    let api = info.api;
    let token = std::fs::read_to_string(dir.path().join("operator.token")).unwrap().trim().to_string();
    let coordinator = PubKey::from_hex(&info.coordinator).unwrap();
    let get = |p: &str| http(api, "GET", p, None, None);

    let (s, v) = get("/v1/health");
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
    assert_eq!(v["anchoring"], Value::Bool(false));

    // Writes need the token; bad bodies get 4xx with a reason and change nothing.
    let body = r#"{"class":"echo","input_text":"hello","units":2,"budget_sats":1000,"nonce":1}"#;
    assert_eq!(http(api, "POST", "/v1/tasks", None, Some(body)).0, 401);
    assert_eq!(http(api, "POST", "/v1/tasks", Some("wrong"), Some(body)).0, 401);
    let (s, v) = http(api, "POST", "/v1/tasks", Some(&token), Some("{not json"));
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("invalid JSON"));
    let (s, v) = http(
        api,
        "POST",
        "/v1/tasks",
        Some(&token),
        Some(r#"{"class":"echo","units":1,"budget_sats":1,"input_text":"x","bogus":1}"#),
    );
    assert_eq!(s, 400, "{v}");
    let (s, _) = http(
        api,
        "POST",
        "/v1/tasks",
        Some(&token),
        Some(r#"{"class":"nope","input_text":"x","units":1,"budget_sats":1000}"#),
    );
    assert_eq!(s, 404);
    let (s, v) = http(
        api,
        "POST",
        "/v1/tasks",
        Some(&token),
        Some(r#"{"class":"echo","input_text":"x","units":1,"budget_sats":1}"#),
    );
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("budget"));
    let big =
        format!(r#"{{"class":"echo","input_hex":"{}","units":1,"budget_sats":1000}}"#, "00".repeat(300_000));
    assert_eq!(http(api, "POST", "/v1/tasks", Some(&token), Some(&big)).0, 413);
    assert_eq!(get("/v1/tasks").1["tasks"].as_array().unwrap().len(), 0);

    let (s, v) = http(api, "POST", "/v1/tasks", Some(&token), Some(body));
    assert_eq!(s, 201, "{v}");
    let task = h(&v["id"]);
    // Submitting the same task again is idempotent.
    assert_eq!(h(&http(api, "POST", "/v1/tasks", Some(&token), Some(body)).1["id"]), task);

    // Two workers over libp2p.
    let coord_addr = info.p2p[0].clone();
    let w0 = Worker::start(common::key(1), &coord_addr).await;
    let w1 = Worker::start(common::key(2), &coord_addr).await;
    // Unregistered workers are refused.
    assert!(matches!(w0.claim(task).await, ResponseBody::Error { reason: ErrorReason::NotRegistered, .. }));
    // ...and a stranger's request costs it a second of its rate (SPEC §11.5): what it asks
    // next is refused by the network layer (`req` below waits the second out).
    assert!(
        matches!(
            w0.try_req(cairn_spec::RequestBody::GetTerms).await,
            Some(ResponseBody::Error { reason: ErrorReason::RateLimited, .. })
        ),
        "in debt after a stranger's claim"
    );
    assert_eq!(w0.register(coordinator, 4).await, ResponseBody::Ack);
    assert_eq!(w1.register(coordinator, 4).await, ResponseBody::Ack);
    // A message signed by one worker but sent from another worker's node is refused.
    let c = cairn_spec::Claim { task, worker: w0.public(), claimed_at: common::now() };
    let forged = cairn_spec::RequestBody::Claim(cairn_spec::Signed::sign(c, &w0.key, &[0; 32]));
    assert!(matches!(w1.req(forged).await, ResponseBody::Error { reason: ErrorReason::Malformed, .. }));

    // Slots are drawn by the coordinator among the workers that asked: worker 0 alone asks.
    let wait = Duration::from_secs(10);
    assert!(matches!(w0.take(task, wait).await, ResponseBody::Lease { task: t, .. } if t == task));
    assert_eq!(w0.commit(task, b"HELLO").await, ResponseBody::Ack);
    // Its reveal is taken like any other; then, new workers being always audited
    // (p = 1/streak), an audit replica is drawn: worker 1.
    assert_eq!(w0.reveal(task, b"HELLO").await, ResponseBody::Ack);
    assert!(matches!(w1.take(task, wait).await, ResponseBody::Lease { .. }));
    assert_eq!(w1.commit(task, b"HELLO").await, ResponseBody::Ack);
    assert_eq!(w1.reveal(task, b"HELLO").await, ResponseBody::Ack);

    let (s, t) = get(&format!("/v1/tasks/{task}"));
    assert_eq!(s, 200);
    assert_eq!(t["phase"], "decided", "{t}");
    assert!(t.get("canary").is_none() && t["assignments"][0].get("audit").is_none());
    // The result is its requester's (the operator token): served to anyone, it would hand
    // workers the answers of decided canaries to remember.
    assert_eq!(get(&format!("/v1/tasks/{task}/result")).0, 401);
    assert_eq!(http(api, "GET", &format!("/v1/tasks/{task}/result"), Some("not-the-token"), None).0, 401);
    let (_, r) = http(api, "GET", &format!("/v1/tasks/{task}/result"), Some(&token), None);
    assert_eq!(r["result_hex"], hex::encode(b"HELLO"));
    let receipt_id = h(&t["assignments"][0]["receipt"]);
    let (s, w) = get(&format!("/v1/workers/{}", w0.public()));
    assert_eq!((s, w["status"].as_str(), w["accepted"].as_u64()), (200, Some("active"), Some(1)));
    assert_eq!(get("/v1/workers").1["workers"].as_array().unwrap().len(), 2);
    let (s, rv) = get(&format!("/v1/receipts/{receipt_id}"));
    assert_eq!(s, 200);
    let receipt = SignedReceipt::from_bytes(&hex::decode(rv["encoding"].as_str().unwrap()).unwrap()).unwrap();
    assert!(receipt.verify() && receipt.id() == receipt_id && receipt.body.reward_sats == 200);
    // The receipt is also served over p2p.
    assert!(
        matches!(w0.req(cairn_spec::RequestBody::GetReceipt { id: receipt_id }).await, ResponseBody::Receipt(Some(r)) if r.id() == receipt_id)
    );

    // Proof before the epoch closes: a clear conflict.
    assert_eq!(get(&format!("/v1/receipts/{receipt_id}/proof")).0, 409);
    assert_eq!(http(api, "POST", "/v1/epochs/close", None, None).0, 401);
    let (s, v) = http(api, "POST", "/v1/epochs/close", Some(&token), None);
    assert_eq!((s, v["closed"].as_u64()), (200, Some(0)));
    let (_, e) = get("/v1/epochs/0");
    assert_eq!(e["anchor"]["status"], "anchoring_disabled");
    assert_eq!(get("/v1/epochs?from=0&limit=10").1["epochs"].as_array().unwrap().len(), 1);
    let (s, p) = get(&format!("/v1/receipts/{receipt_id}/proof"));
    assert_eq!(s, 200);
    let proof: MerkleProof = serde_json::from_value(p["merkle_proof"].clone()).unwrap();
    assert_eq!(proof.root_for(&receipt_id).unwrap(), h(&p["receipts_root"]));
    // Balances with a proof against the epoch's state root.
    let (s, l) = get(&format!("/v1/ledger/{}", w0.public()));
    assert_eq!((s, l["locked"].as_u64()), (200, Some(200)));
    let entry =
        LedgerEntry::from_bytes(&hex::decode(l["proof"]["entry_encoding"].as_str().unwrap()).unwrap())
            .unwrap();
    let lp: MerkleProof = serde_json::from_value(l["proof"]["merkle_proof"].clone()).unwrap();
    assert_eq!(lp.root_for(&entry.id()).unwrap(), h(&l["proof"]["state_root"]));
    assert_eq!(e["header"]["state_root"], l["proof"]["state_root"]);
    // The epoch's receipts and ledger snapshot, as auditors recompute its roots from them.
    let (s, r) = get("/v1/epochs/0/receipts?from=0&limit=10");
    assert_eq!((s, r["receipt_count"].as_u64()), (200, Some(2)));
    let got: Vec<Hash32> = r["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            cairn_spec::SignedReceipt::from_bytes(&hex::decode(x.as_str().unwrap()).unwrap()).unwrap().id()
        })
        .collect();
    assert_eq!(cairn_spec::merkle::root(&got), h(&e["header"]["receipts_root"]));
    assert_eq!(get("/v1/epochs/0/receipts?from=1").1["receipts"].as_array().unwrap().len(), 1);
    let (s, l0) = get("/v1/epochs/0/ledger");
    assert_eq!(s, 200);
    let entries: Vec<LedgerEntry> = l0["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| LedgerEntry::from_bytes(&hex::decode(x.as_str().unwrap()).unwrap()).unwrap())
        .collect();
    assert_eq!(Some(h(&e["header"]["state_root"])), cairn_spec::ledger::state_root(&entries));
    assert_eq!(get("/v1/epochs/0/receipts?limit=0").0, 400);
    assert_eq!(get("/v1/epochs/0/receipts?limit=5001").0, 400);
    assert_eq!(get("/v1/epochs/x/ledger").0, 400);
    assert_eq!(get("/v1/epochs/9/ledger").0, 404);
    assert_eq!(get("/v1/epochs/9/receipts").0, 404);
    // No Bitcoin here, so no OpenTimestamps answer; a malformed commitment is a 400.
    assert_eq!(get(&format!("/timestamp/{receipt_id}")).0, 404);
    assert_eq!(get("/timestamp/xyz").0, 400);
    assert_eq!(get("/v1/anchors").1["enabled"], Value::Bool(false));
    // The dashboard's routes: receipt checks need Bitcoin (404 here), bad queries are 400s.
    assert_eq!(get(&format!("/v1/receipts/{receipt_id}/audit")).0, 404);
    assert_eq!(get(&format!("/v1/receipts/{receipt_id}/bundle")).0, 404);
    assert_eq!(get(&format!("/v1/receipts/{receipt_id}/audit?depth=0")).0, 400);
    assert_eq!(get(&format!("/v1/receipts/{receipt_id}/bundle?depth=5000")).0, 400);
    assert_eq!(get(&format!("/v1/receipts/{receipt_id}/ots?file=exe")).0, 400);
    assert_eq!(get(&format!("/v1/receipts/{receipt_id}/audit?nope=1")).0, 400);
    assert_eq!(get("/v1/receipts/zz/audit").0, 400);
    let (s, st) = get("/v1/stats");
    assert_eq!(s, 200);
    assert_eq!(st["receipts"], 2, "{st}");
    assert_eq!(st["tasks"]["decided"], 1, "{st}");
    // The task, and the canary its submission made due once released: counted alike.
    assert!((1..=2).contains(&st["tasks"]["submitted"].as_u64().unwrap()), "{st}");
    assert_eq!(st["epochs"], 1, "{st}");
    assert_eq!(
        st["ledger"]["locked"].as_u64().unwrap()
            + st["ledger"]["claimable"].as_u64().unwrap()
            + st["ledger"]["paid"].as_u64().unwrap(),
        st["ledger"]["credited"].as_u64().unwrap(),
        "{st}"
    );
    let (_, page) = get("/dashboard.js");
    assert!(page.as_str().is_some_and(|js| js.contains("/v1/stats")), "the dashboard script is served");
    assert!(get("/v1/health").1["p2p"][0].as_str().unwrap().contains("/p2p/"));
    assert_eq!(get("/v1/payouts").0, 200);
    assert_eq!(get("/v1/classes").1["classes"].as_array().unwrap().len(), 1);
    let (_, m) = get("/metrics");
    let m = m.as_str().unwrap().to_string();
    assert!(m.contains("cairn_receipts_total 2"), "{m}");
    // Tasks accepted count canaries as /v1/stats does: the two never differ by the canaries
    // (a difference would tell workers when one was mixed in).
    // (Read again if a canary was released between the two reads.)
    let same = (0..3).any(|_| {
        let submitted = get("/v1/stats").1["tasks"]["submitted"].as_u64().unwrap();
        let m = get("/metrics").1.as_str().unwrap().to_string();
        m.contains(&format!("cairn_tasks_submitted_total {submitted}\n"))
    });
    assert!(same, "{m}");
    assert!(m.contains("cairn_p2p_peers"));

    // Malformed paths and queries.
    assert_eq!(get("/v1/tasks/zz").0, 400);
    assert_eq!(get(&format!("/v1/tasks/{}", Hash32([7; 32]))).0, 404);
    assert_eq!(get("/v1/workers/00").0, 400);
    assert_eq!(get("/v1/epochs/x").0, 400);
    assert_eq!(get("/v1/epochs/99").0, 404);
    assert_eq!(get("/v1/tasks?limit=100000").0, 400);
    assert_eq!(get(&format!("/v1/ledger/{}", common::key(50).public())).0, 404);
    let (s, v) = get("/v1/nothing-here");
    assert_eq!((s, v["error"].as_str()), (404, Some("no such route")));

    // The OpenAPI document the node serves lists exactly the routes, and every route is served.
    let (_, doc) = get("/openapi.json");
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| ops.as_object().unwrap().keys().map(move |m| (m.clone(), p.clone())))
        .collect();
    let routed: BTreeSet<(String, String)> =
        ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, routed);
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{id}", &receipt_id.to_hex())
            .replace("{key}", &w0.public().to_hex())
            .replace("{worker}", &w0.public().to_hex())
            .replace("{height}", "0")
            .replace("{epoch}", "0");
        let (_, v) = http(api, &method.to_uppercase(), &concrete, None, Some("{}"));
        assert_ne!(v["error"].as_str(), Some("no such route"), "{method} {path} not routed");
    }

    // What the clients (the devnet, `cairn worker status`) deserialize, each route's body
    // reads back as its `cairn_spec::api` type.
    fn typed<T: serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"))
    }
    use cairn_spec::api as body;
    assert!(matches!(typed::<body::Health>(get("/v1/health").1), body::Health::Coordinator(_)));
    assert!(matches!(typed::<body::Stats>(get("/v1/stats").1), body::Stats::Coordinator(_)));
    typed::<body::Anchors>(get("/v1/anchors").1);
    typed::<body::EpochReceipts>(get("/v1/epochs/0/receipts").1);
    typed::<body::ReceiptProofView>(get(&format!("/v1/receipts/{receipt_id}/proof")).1);
    typed::<body::WorkerView>(get(&format!("/v1/workers/{}", w0.public())).1);
    typed::<body::LedgerView>(get(&format!("/v1/ledger/{}", w0.public())).1);
    typed::<body::TaskList>(get("/v1/tasks").1);
    typed::<body::Payouts>(get("/v1/payouts").1);
    typed::<body::EvidenceList>(get("/v1/evidence").1);

    // Many requests in flight at once are persisted in group commits and each answered.
    let w2 = std::sync::Arc::new(Worker::start(common::key(3), &coord_addr).await);
    assert_eq!(w2.register(coordinator, 4).await, ResponseBody::Ack);
    let mut ids = Vec::new();
    for n in 0..12 {
        let body = format!(
            r#"{{"class":"echo","input_text":"g{n}","units":1,"budget_sats":1000,"nonce":{}}}"#,
            100 + n
        );
        ids.push(h(&http(api, "POST", "/v1/tasks", Some(&token), Some(&body)).1["id"]));
    }
    // Every worker asks for every task at once; the drawn ones commit.
    let (w0, w1) = (std::sync::Arc::new(w0), std::sync::Arc::new(w1));
    let mut set = tokio::task::JoinSet::new();
    for id in ids.clone() {
        for w in [w0.clone(), w1.clone(), w2.clone()] {
            set.spawn(async move {
                match w.take(id, Duration::from_secs(4)).await {
                    ResponseBody::Lease { .. } => Some(w.commit(id, b"G").await),
                    _ => None,
                }
            });
        }
    }
    while let Some(r) = set.join_next().await {
        if let Some(r) = r.unwrap() {
            assert_eq!(r, ResponseBody::Ack);
        }
    }
    for id in &ids {
        let (_, t) = get(&format!("/v1/tasks/{id}"));
        assert_eq!(t["assignments"][0]["committed"], true, "{t}");
    }
    w2.net.shutdown().await;
    // Canaries were mixed in (the pool of 8, each once), and no view tells them apart.
    let mut all = Vec::new();
    for _ in 0..100 {
        all = get("/v1/tasks?limit=500").1["tasks"].as_array().unwrap().clone();
        if all.len() >= 13 + 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(all.len(), 13 + 8, "{}", all.len());
    for i in 0..8 {
        let hash = cairn_spec::Payload::Inline(format!("hi{i}").into_bytes()).content_hash().to_hex();
        let uses = all.iter().filter(|t| t["input_hash"] == hash.as_str()).count();
        assert_eq!(uses, 1, "canary input {i} used {uses} times: each is used once");
    }
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert!(all.iter().all(|t| keys(t) == keys(&all[0])));
    // No value carries the canary's answer (hex 4849). Ids, hashes and keys (64 hex digits)
    // are digests that cannot carry it, and a random one holds "4849" about once in 40 runs
    // of this test, so they are left out of the substring check.
    fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(o) => o.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }
    let (views, mut values) = (Value::Array(all.clone()), Vec::new());
    strings(&views, &mut values);
    let digest = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    assert!(values.iter().all(|s| !s.contains("4849") || digest(s)), "{values:?}");
    // Nor their budgets: a canary carries the budget of the submission it follows, not its
    // exact cost (100 sats here), so every task shows one of the budgets requesters sent.
    assert!(all.iter().all(|t| t["budget_sats"] == 1000), "{all:?}");

    // Graceful shutdown, then a restart finds the same state.
    w0.net.shutdown().await;
    w1.net.shutdown().await;
    stop.send(()).unwrap();
    handle.await.unwrap();
    let (info, stop, handle) = start(dir.path()).await;
    let (_, t2) = http(info.api, "GET", &format!("/v1/tasks/{task}"), None, None);
    assert_eq!(t2["phase"], "decided");
    assert_eq!(http(info.api, "GET", "/v1/health", None, None).1["next_epoch"], 1);
    stop.send(()).unwrap();
    handle.await.unwrap();
}

/// A node never silently replaces a key it has used: with its database (or a worker with its
/// journal) still there and the key file gone, it refuses to start and says why, and
/// nothing is created; the key put back, it starts as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_beside_its_state_is_refused_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::test_config(&dir.path().join("coord"));
    let (info, stop, handle) = common::start_node(&cfg).await;
    let _ = stop.send(());
    handle.await.unwrap();
    let key_path = dir.path().join("coord/node.key");
    let saved = std::fs::read(&key_path).unwrap();
    std::fs::remove_file(&key_path).unwrap();
    let err = cairn_coordinator::node::run(cfg.clone(), async {}, None).await.unwrap_err();
    assert!(err.to_string().contains("node.key is missing"), "{err}");
    assert!(!key_path.exists(), "no new key was made");
    std::fs::write(&key_path, &saved).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let (again, stop, handle) = common::start_node(&cfg).await;
    assert_eq!(again.coordinator, info.coordinator, "the same identity");

    // A worker with registrations in its journal and no key.
    let wdir = dir.path().join("w");
    let (_, (stop_w, h)) =
        common::start_agent(&wdir, &again.p2p[0], std::sync::Arc::new(common::Upper)).await;
    let _ = stop_w.send(());
    h.await.unwrap();
    std::fs::remove_file(wdir.join("worker.key")).unwrap();
    let cfg_w = common::agent_config(&wdir, &again.p2p[0]);
    let err = cairn_worker::agent::run(
        cfg_w,
        vec![std::sync::Arc::new(common::Upper)],
        async {},
        Default::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("worker.key is missing"), "{err}");
    assert!(!wdir.join("worker.key").exists());
    let _ = stop.send(());
    let _ = handle.await;
}

/// One GET from a client at `from` (a loopback address of its own), as (status, Retry-After).
async fn get_from(from: std::net::IpAddr, api: std::net::SocketAddr, path: &str) -> (u16, Option<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::new(from, 0)).unwrap();
    let mut s = socket.connect(api).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let retry = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("retry-after:"))
        .map(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()).unwrap_or_default());
    (status, retry)
}

/// The expensive reads are limited per client (`api.heavy_read_burst`, then
/// `heavy_reads_per_second`): a client that hammers one is answered 429 with `Retry-After`,
/// while another client, the cheap reads and the node's own work go on as before; its
/// turn comes back with time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hammering_the_expensive_reads_is_limited_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config(&dir.path().join("coord"));
    cfg.api.heavy_reads_per_second = 1;
    cfg.api.heavy_read_burst = 3;
    let (info, stop, handle) = common::start_node(&cfg).await;
    let api = info.api;
    let (a, b) = (std::net::IpAddr::from([127, 0, 0, 1]), std::net::IpAddr::from([127, 0, 0, 2]));
    let proof = format!("/v1/receipts/{}/proof", Hash32::ZERO);
    for route in cairn_coordinator::api::HEAVY_ROUTES {
        assert!(ROUTES.iter().any(|(_, r)| r == route), "{route} is a route");
    }
    // The burst: each read is answered (no such receipt).
    for _ in 0..3 {
        assert_eq!(get_from(a, api, &proof).await.0, 404);
    }
    // Then refused, every expensive route alike, with when to come back.
    let (status, retry) = get_from(a, api, &proof).await;
    assert_eq!(status, 429);
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(get_from(a, api, "/v1/payouts").await.0, 429);
    // A cheap read from the same client, and the same read from another client, are served.
    assert_eq!(get_from(a, api, "/v1/health").await.0, 200);
    assert_eq!(get_from(a, api, "/v1/tasks").await.0, 200);
    assert_eq!(get_from(b, api, &proof).await.0, 404);
    assert_eq!(get_from(b, api, "/v1/payouts").await.0, 200);
    // At one a second, its turn comes back.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(get_from(a, api, &proof).await.0, 404);
    let _ = stop.send(());
    handle.await.unwrap();
}
