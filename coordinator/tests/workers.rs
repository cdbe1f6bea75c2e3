//! End to end on loopback: a coordinator and three `cairn-worker` agents running the real
//! embedding model. 50 tasks with replication 2 are all decided and accepted, receipts issued
//! and the ledger credited; a fourth worker patched to return random vectors is caught and
//! banned; the honest workers are never penalised. Without the model: `cairn_testkit::skip` (a failure
//! under `CI=true`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing,
    missing_docs
)]

use cairn_testkit::node as common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_spec::{ComparisonRule, ExecutorKind, Hash32};
use cairn_worker::agent::{self, Hooks};
use cairn_worker::executor::embedding::MiniLm;
use cairn_worker::executor::{ExecError, Executor};
use cairn_worker::journal::Journal;
use cairn_worker::models;
use common::{http, start_node, ADDR};
use serde_json::Value;

/// A dishonest worker: the real model's declarations, random unit vectors as results.
struct RandomVectors(Arc<MiniLm>);

impl Executor for RandomVectors {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Embedding
    }
    fn rule(&self) -> ComparisonRule {
        self.0.rule()
    }
    fn model_hash(&self) -> Hash32 {
        self.0.model_hash()
    }
    fn run(&self, input: &[u8]) -> Result<Vec<u8>, ExecError> {
        let n = cairn_worker::executor::embedding::sentences(input)?.len();
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).unwrap();
        let v: Vec<f32> = (0..n * 384).map(|i| f32::from(seed[i % 32]) - 127.5 + (i as f32).sin()).collect();
        cairn_worker::executor::canonical_f32(&v)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_honest_workers_and_a_cheater() {
    let model_dir = match models::fetch_minilm(&models::default_models_dir(), None) {
        Ok(d) => d,
        Err(e) => {
            return cairn_testkit::skip(&format!(
                "model all-MiniLM-L6-v2 unavailable ({e}); run `cairn models fetch minilm`"
            ));
        }
    };
    let model = Arc::new(MiniLm::load(&model_dir, Some(models::minilm_sha256())).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::node_config(
        &dir.path().join("coord"),
        8,
        vec![common::minilm_class("minilm", 0.9999, 2, 100, 4096)],
    );
    cfg.lifecycle.epoch_max_receipts = 40;
    cfg.lifecycle.max_escalations = 2;
    let (info, stop, handle) = start_node(&cfg).await;
    let api = info.api;
    let token = std::fs::read_to_string(dir.path().join("coord/operator.token")).unwrap().trim().to_string();
    let p2p = info.p2p[0].clone();

    let mut workers = Vec::new();
    for i in 0..3 {
        let w = common::start_agent(&dir.path().join(format!("w{i}")), &p2p, model.clone()).await;
        assert_eq!(w.0.classes.len(), 1, "the embedding class is runnable");
        workers.push(w);
    }
    // Warm-up: the honest workers earn the stake that makes their votes count in full
    // (SPEC.md §12.4: lightness is fixed when a slot is drawn). Without it every slot of the
    // 50 tasks, all drawn as they are accepted, would be drawn light, no vote would be a clear
    // win, and a cheating replica would only ever be out-voted, never banned.
    let locked = |k: &cairn_spec::PubKey| {
        let (_, l) = http(api, "GET", &format!("/v1/ledger/{}", k.to_hex()), None, None);
        l["locked"].as_u64().unwrap_or(0)
    };
    for n in 100..130u64 {
        if workers.iter().all(|w| locked(&w.0.key) >= 280) {
            break;
        }
        let body = serde_json::json!({
            "class": "minilm", "input_text": common::SENTENCES[(n % 16) as usize], "units": 2,
            "budget_sats": 2000, "nonce": n,
        });
        let (s, v) = http(api, "POST", "/v1/tasks", Some(&token), Some(&body.to_string()));
        assert!(s == 201 || s == 200, "{s} {v}");
        decided(api, v["id"].as_str().unwrap(), "warm-up").await;
    }
    assert!(workers.iter().all(|w| locked(&w.0.key) >= 280), "the honest workers hold stake");
    let cheater =
        common::start_agent(&dir.path().join("cheat"), &p2p, Arc::new(RandomVectors(model.clone()))).await;

    let mut ids = Vec::new();
    for n in 0..50u64 {
        let text = format!(
            "{}\n{}",
            common::SENTENCES[(n % 16) as usize],
            common::SENTENCES[((n / 16 + n + 1) % 16) as usize]
        );
        let body = serde_json::json!({
            "class": "minilm", "input_text": text, "units": 2, "budget_sats": 2000, "nonce": n,
        });
        let (s, v) = http(api, "POST", "/v1/tasks", Some(&token), Some(&body.to_string()));
        assert!(s == 201 || s == 200, "{s} {v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }

    // Every task reaches a verdict.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut views: Vec<Value>;
    loop {
        views = ids.iter().map(|id| http(api, "GET", &format!("/v1/tasks/{id}"), None, None).1).collect();
        let open = views.iter().filter(|v| v["phase"] != "decided" && v["phase"] != "failed").count();
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} tasks still open: {:?}",
            views.iter().find(|v| v["phase"] != "decided")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let decided = views.iter().filter(|v| v["phase"] == "decided").count();
    assert_eq!(decided, 50, "all tasks accepted: {:?}", views.iter().find(|v| v["phase"] != "decided"));

    // The cheater is caught and banned; the honest are never penalised.
    let cheat_key = cheater.0.key.to_hex();
    let (_, cw) = http(api, "GET", &format!("/v1/workers/{cheat_key}"), None, None);
    eprintln!("cheater: {cw}");
    assert_eq!(cw["status"], "banned", "{cw}");
    let mut credited = 0u64;
    for (w, _) in &workers {
        let k = w.key.to_hex();
        let (_, v) = http(api, "GET", &format!("/v1/workers/{k}"), None, None);
        assert_eq!(v["status"], "active", "{v}");
        assert_eq!(v["rejected"], 0, "an honest worker was penalised: {v}");
        let (s, l) = http(api, "GET", &format!("/v1/ledger/{k}"), None, None);
        if s == 200 {
            credited += l["locked"].as_u64().unwrap() + l["claimable"].as_u64().unwrap();
        }
    }
    // 50 tasks × 2 replicas × 2 units × 100 sats, all to honest workers (the cheater's share
    // of agreeing work is forfeited).
    assert!(credited >= 50 * 2 * 200 - 400, "credited {credited}");

    // Each honest worker saw its receipts (over gossip) and journaled them.
    let journals = || (0..3).map(|i| Journal::load(&dir.path().join(format!("w{i}/journal.json"))).unwrap());
    let accepted = || journals().map(|j| j.totals.accepted).sum::<u64>();
    cairn_testkit::wait_for_async(
        "90 accepted receipts in the honest workers' journals",
        Duration::from_secs(30),
        || accepted() >= 90,
    )
    .await;
    assert!(journals().all(|j| j.totals.rejected == 0), "an honest worker journaled a rejection");

    // `cairn worker status`: every receipt checked against the coordinator's signatures and
    // its signed epoch headers, earnings read from the ledger.
    let (s, v) = http(api, "POST", "/v1/epochs/close", Some(&token), None);
    assert!(s < 300, "{s} {v}");
    let mut cfg = common::agent_config(&dir.path().join("w0"), &p2p);
    cfg.coordinators[0].api = Some(format!("http://{api}"));
    let me = workers[0].0.key;
    let report = tokio::task::spawn_blocking(move || {
        let j = Journal::load(&cfg.data_dir.join("journal.json")).unwrap();
        cairn_worker::status::report(&cfg, &me, &j, None)
    })
    .await
    .unwrap();
    use cairn_worker::status::{Asked, ReceiptState};
    eprintln!("status:\n{report}");
    let c = &report.coordinators[0];
    assert_eq!(c.receipt_failures.len(), 0, "{report}");
    let included = c.receipts_checked.get(&ReceiptState::Included).copied().unwrap_or(0);
    assert_eq!(included, report.totals.accepted.min(100), "{report}");
    assert!(matches!(&c.earnings_sats, Some(Asked::Answer(l)) if l.locked > 0), "{report}");
    assert!(
        matches!(&c.standing, Some(Asked::Answer(w)) if w.status == cairn_spec::api::WorkerStatus::Active),
        "{report}"
    );
    // The text a person reads says the same, and the JSON a program reads names the states.
    let text = report.to_string();
    assert!(text.contains(&format!("receipts  {included} included (against signatures only")), "{text}");
    assert!(text.contains("standing  active"), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["coordinators"][0]["receipts_checked"]["included"], included, "{json}");
    assert_eq!(json["coordinators"][0]["standing"]["answer"]["status"], "active", "{json}");

    for (_, (stop_w, h)) in workers.into_iter().chain([cheater]) {
        let _ = stop_w.send(());
        let _ = h.await;
    }
    let _ = stop.send(());
    let _ = handle.await;
}

/// A worker killed after its commitment was acknowledged restarts where it was: it reveals
/// exactly the committed result (kept with its salt in the journal) and records the receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_reveals_what_it_committed() {
    use cairn_worker::job::{Job, Stage};
    let dir = tempfile::tempdir().unwrap();
    let (info, stop, handle) = start_node(&common::test_config(&dir.path().join("coord"))).await;
    let api = info.api;
    let token = std::fs::read_to_string(dir.path().join("coord/operator.token")).unwrap().trim().to_string();
    let coord = cairn_spec::PubKey::from_hex(&info.coordinator).unwrap();
    let wdir = dir.path().join("w");
    let key = cairn_p2p::keyfile::create(&wdir.join("worker.key")).unwrap();

    // The worker's life before the crash: registered, claimed, executed, committed.
    let body = r#"{"class":"echo","input_text":"hello","units":1,"budget_sats":1000,"nonce":1}"#;
    let (s, v) = http(api, "POST", "/v1/tasks", Some(&token), Some(body));
    assert_eq!(s, 201, "{v}");
    let id = Hash32::from_hex(v["id"].as_str().unwrap()).unwrap();
    let before = common::Worker::start(key.clone(), &info.p2p[0]).await;
    assert!(matches!(before.register(coord, 4).await, cairn_spec::ResponseBody::Ack));
    assert!(matches!(before.take(id, Duration::from_secs(10)).await, cairn_spec::ResponseBody::Lease { .. }));
    assert!(matches!(before.commit(id, b"HELLO").await, cairn_spec::ResponseBody::Ack));
    before.net.shutdown().await;
    let task = {
        let classes = http(api, "GET", "/v1/classes", None, None).1;
        let class = Hash32::from_hex(classes["classes"][0]["id"].as_str().unwrap()).unwrap();
        cairn_spec::Task {
            network: cairn_spec::Network::Regtest,
            coordinator: coord,
            class,
            requester: coord,
            nonce: 1,
            units: 1,
            budget_sats: 1000,
            created_at: 0,
            input: cairn_spec::Payload::Inline(b"hello".to_vec()),
        }
    };
    let mut job = Job::new(coord, task, id, "echo".into(), 30);
    job.stage = Stage::Committed {
        result: b"HELLO".to_vec(),
        salt: Hash32(common::salt(&key.public(), &id)),
        reveal_by: common::now() + 60,
    };
    let mut journal = Journal { version: cairn_worker::journal::VERSION, ..Default::default() };
    journal.registrations.insert(
        coord.to_hex(),
        cairn_worker::journal::RegistrationRecord {
            payout_address: ADDR.into(),
            at: common::now(),
            binding: None,
        },
    );
    journal.update(job);
    journal.save(&wdir.join("journal.json")).unwrap();

    // Restart with an executor that would answer differently: the journal, not a re-run, is
    // what gets revealed.
    let exec = Arc::new(cairn_worker::executor::command::CommandExecutor {
        program: "tr".into(),
        args: vec!["a-z".into(), "A-Z".into()],
        timeout: Duration::from_secs(5),
        max_output_bytes: 1000,
    });
    let (_, (stop_w, h)) = common::start_agent(&wdir, &info.p2p[0], exec).await;
    // A new worker's results are audited (one extra replica, drawn once its reveal is in):
    // another worker asks and is drawn.
    let auditor = common::Worker::start(common::key(5), &info.p2p[0]).await;
    assert!(matches!(auditor.register(coord, 4).await, cairn_spec::ResponseBody::Ack));
    if matches!(auditor.take(id, Duration::from_secs(20)).await, cairn_spec::ResponseBody::Lease { .. }) {
        assert!(matches!(auditor.commit(id, b"HELLO").await, cairn_spec::ResponseBody::Ack));
        let _ = auditor.reveal(id, b"HELLO").await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let j = Journal::load(&wdir.join("journal.json")).unwrap();
        if let Stage::Done { verdict, .. } = &j.jobs[&id].stage {
            assert!(verdict.is_accepted());
            break;
        }
        assert!(Instant::now() < deadline, "no receipt: {:?}", j.jobs[&id]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, t) = http(api, "GET", &format!("/v1/tasks/{id}"), None, None);
    assert_eq!(t["phase"], "decided", "{t}");
    assert_eq!(t["result_hash"], serde_json::json!(cairn_spec::content_hash(b"HELLO")));
    auditor.net.shutdown().await;
    let _ = stop_w.send(());
    let _ = h.await;
    let _ = stop.send(());
    let _ = handle.await;
}

/// A task input above the inline limit becomes a content-addressed blob: the coordinator
/// keeps it and serves it by `GetBlob`; real worker agents fetch it chunk by chunk, check it
/// against its hash and run it (an external command, no model needed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_input_is_fetched_checked_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config(&dir.path().join("coord"));
    cfg.classes[0].max_input_bytes = 2_000_000;
    cfg.api.max_body_bytes = 5_000_000;
    let (info, stop, handle) = start_node(&cfg).await;
    let api = info.api;
    let token = std::fs::read_to_string(dir.path().join("coord/operator.token")).unwrap().trim().to_string();
    // 1.2 MB: more than one 1 MiB chunk.
    let input: Vec<u8> = (0..1_200_000u32).map(|i| (i % 251) as u8).collect();
    let body =
        format!(r#"{{"class":"echo","input_hex":"{}","units":1,"budget_sats":1000}}"#, hex::encode(&input));
    let (s, v) = http(api, "POST", "/v1/tasks", Some(&token), Some(&body));
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let (_, t) = http(api, "GET", &format!("/v1/tasks/{id}"), None, None);
    assert_eq!(t["input_size"], 1_200_000);
    assert_eq!(t["input_hash"], serde_json::json!(cairn_spec::content_hash(&input)));

    // The sync protocol serves it in bounded chunks, and nothing for an unknown hash.
    let probe = common::Worker::start(common::key(40), &info.p2p[0]).await;
    let hash = cairn_spec::content_hash(&input);
    let r = probe.req(cairn_spec::RequestBody::GetBlob { hash, offset: 1_048_000, len: 1 << 20 }).await;
    let cairn_spec::ResponseBody::Blob { total, offset, bytes } = r else { panic!("{r:?}") };
    assert_eq!((total, offset, bytes.as_slice()), (1_200_000, 1_048_000, &input[1_048_000..]));
    // A full 1 MiB ask gets an answer that fits the 1 MiB frame bound: shorter, by design.
    let r = probe.req(cairn_spec::RequestBody::GetBlob { hash, offset: 0, len: 1 << 20 }).await;
    let cairn_spec::ResponseBody::Blob { bytes, .. } = r else { panic!("{r:?}") };
    assert_eq!(bytes.as_slice(), &input[..cairn_spec::wire::MAX_BLOB_ANSWER]);
    let r = probe.req(cairn_spec::RequestBody::GetBlob { hash: Hash32([9; 32]), offset: 0, len: 10 }).await;
    assert!(
        matches!(r, cairn_spec::ResponseBody::Error { reason: cairn_spec::ErrorReason::NotFound, .. }),
        "{r:?}"
    );
    probe.net.shutdown().await;

    let mut stops = Vec::new();
    for i in 0..2 {
        let exec = Arc::new(cairn_worker::executor::command::CommandExecutor {
            program: "sha256sum".into(),
            args: vec![],
            timeout: Duration::from_secs(10),
            max_output_bytes: 1000,
        });
        let mut cfg = common::agent_config(&dir.path().join(format!("w{i}")), &info.p2p[0]);
        cfg.limits.max_input_bytes = 2_000_000;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let h = tokio::spawn(async move {
            let stop = async move {
                let _ = stop_rx.await;
            };
            agent::run(cfg, vec![exec], stop, Hooks::default()).await.unwrap();
        });
        stops.push((stop_tx, h));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let want = format!("{}  -\n", hex::encode(cairn_spec::hash::sha256(&input).0));
    loop {
        let (_, t) = http(api, "GET", &format!("/v1/tasks/{id}"), None, None);
        if t["phase"] == "decided" {
            let (_, r) = http(api, "GET", &format!("/v1/tasks/{id}/result"), Some(&token), None);
            assert_eq!(r["result_hex"], hex::encode(want.as_bytes()), "{r}");
            break;
        }
        let journals: Vec<_> =
            (0..2).map(|i| Journal::load(&dir.path().join(format!("w{i}/journal.json"))).ok()).collect();
        assert!(Instant::now() < deadline, "not decided: {t}; worker journals: {journals:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (s, h) in stops {
        let _ = s.send(());
        let _ = h.await;
    }
    let _ = stop.send(());
    let _ = handle.await;
}

/// A coordinator restarts while its workers are idle: with nothing of theirs in flight, no
/// request of theirs fails and dials it again, yet tasks reach them only over that
/// connection. Each worker notices the lost coordinator and dials it until it is back, and
/// the work submitted after the restart is done (the chaos test found a stream of tasks left
/// untaken for minutes when every worker was idle at the moment of a restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_rejoin_a_restarted_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config(&dir.path().join("coord"));
    cfg.p2p.listen = vec![format!("/ip4/127.0.0.1/tcp/{}", common::free_port())];
    cfg.api.listen = format!("127.0.0.1:{}", common::free_port());
    // Long windows: no job of theirs times out and asks the coordinator anything meanwhile.
    cfg.classes[0].lease_secs = 300;
    cfg.classes[0].reveal_secs = 300;
    let token = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join("coord/operator.token")).unwrap().trim().to_string()
    };
    let (info, stop, handle) = start_node(&cfg).await;
    let mut agents = Vec::new();
    for i in 0..2 {
        let exec = Arc::new(cairn_worker::executor::command::CommandExecutor {
            program: "tr".into(),
            args: vec!["a-z".into(), "A-Z".into()],
            timeout: Duration::from_secs(5),
            max_output_bytes: 1000,
        });
        agents.push(common::start_agent(&dir.path().join(format!("w{i}")), &info.p2p[0], exec).await.1);
    }
    let body = |n: u32| {
        format!(r#"{{"class":"echo","input_text":"task {n}","units":1,"budget_sats":1000,"nonce":{n}}}"#)
    };
    let (s, v) = http(info.api, "POST", "/v1/tasks", Some(&token(dir.path())), Some(&body(1)));
    assert_eq!(s, 201, "{v}");
    decided(info.api, v["id"].as_str().unwrap(), "before the restart").await;

    // The coordinator goes away while both workers wait for work, and comes back on the
    // same addresses with the same key.
    let _ = stop.send(());
    let _ = handle.await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (info2, stop, handle) = start_node(&cfg).await;
    assert_eq!(info2.p2p[0], info.p2p[0]);
    // Both are back within a few of the workers' checks (every 2 s), well before the p2p
    // layer's own routing-table refresh (every 30 s, and only while the entry lasts) would
    // bring them.
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let (_, m) = http(info2.api, "GET", "/metrics", None, None);
        let peers = m.as_str().and_then(|m| m.lines().find_map(|l| l.strip_prefix("cairn_p2p_peers ")));
        if peers == Some("2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the idle workers did not dial the restarted coordinator: {peers:?} peers"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, v) = http(info2.api, "POST", "/v1/tasks", Some(&token(dir.path())), Some(&body(2)));
    assert_eq!(s, 201, "{v}");
    decided(info2.api, v["id"].as_str().unwrap(), "after the restart, with the workers idle through it")
        .await;

    for (s, h) in agents {
        let _ = s.send(());
        let _ = h.await;
    }
    let _ = stop.send(());
    let _ = handle.await;
}

/// A coordinator whose state is lost (restored from before its workers registered, or
/// wiped) comes back on the same addresses with the same key, and no longer knows its
/// workers: their next claims are refused `not_registered`. Each registers again on its own
/// (no restart, no operator) and the work submitted afterwards is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_a_coordinator_forgot_register_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config(&dir.path().join("coord"));
    cfg.p2p.listen = vec![format!("/ip4/127.0.0.1/tcp/{}", common::free_port())];
    cfg.api.listen = format!("127.0.0.1:{}", common::free_port());
    let token = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join("coord/operator.token")).unwrap().trim().to_string()
    };
    let (info, stop, handle) = start_node(&cfg).await;
    let mut agents = Vec::new();
    for i in 0..2 {
        agents.push(
            common::start_agent(&dir.path().join(format!("w{i}")), &info.p2p[0], Arc::new(common::Upper))
                .await
                .1,
        );
    }
    let body = |n: u32| {
        format!(r#"{{"class":"echo","input_text":"task {n}","units":1,"budget_sats":1000,"nonce":{n}}}"#)
    };
    let (s, v) = http(info.api, "POST", "/v1/tasks", Some(&token(dir.path())), Some(&body(1)));
    assert_eq!(s, 201, "{v}");
    decided(info.api, v["id"].as_str().unwrap(), "before the loss").await;

    // Everything but the key and the operator token is lost.
    let _ = stop.send(());
    let _ = handle.await;
    for e in std::fs::read_dir(dir.path().join("coord")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        if name != "node.key" && name != "operator.token" {
            let p = e.path();
            if p.is_dir() {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                std::fs::remove_file(&p).unwrap();
            }
        }
    }
    let (info2, stop, handle) = start_node(&cfg).await;
    assert_eq!(info2.p2p[0], info.p2p[0]);
    let (_, w) = http(info2.api, "GET", "/v1/workers", None, None);
    assert_eq!(w["workers"].as_array().map(Vec::len), Some(0), "the coordinator forgot them: {w}");
    let (s, v) = http(info2.api, "POST", "/v1/tasks", Some(&token(dir.path())), Some(&body(2)));
    assert_eq!(s, 201, "{v}");
    decided(info2.api, v["id"].as_str().unwrap(), "after the loss, the workers registering again").await;
    let (_, w) = http(info2.api, "GET", "/v1/workers", None, None);
    assert!(w["workers"].as_array().is_some_and(|a| !a.is_empty()), "registered again: {w}");

    for (s, h) in agents {
        let _ = s.send(());
        let _ = h.await;
    }
    let _ = stop.send(());
    let _ = handle.await;
}

/// Waits up to a minute for task `id` to be decided.
async fn decided(api: std::net::SocketAddr, id: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, t) = http(api, "GET", &format!("/v1/tasks/{id}"), None, None);
        if t["phase"] == "decided" {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not decided in 60 s: {t}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
