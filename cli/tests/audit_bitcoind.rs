//! Auditing against a real regtest Bitcoin Core (found via `BITCOIND_EXE`, `PATH`, then the
//! cache of `scripts/bitcoin-core.sh`; `cairn_testkit`'s skip policy when absent), through the `cairn` binary as an auditor runs it: a
//! coordinator anchors two epochs; a receipt is audited online, offline from a bundle, and
//! through the `.ots` export, read by the PyPI `opentimestamps` library and
//! verified by the stock `ots` client against the same node; the coordinator's `/timestamp/`
//! answer matches; the whole chain audits ✓; tampering and shallow depth are named; a
//! follower on the same node finds the anchors itself and what it serves audits ✓.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cairn_anchor::regtest::RegtestNode;
use cairn_spec::{Decode, Encode, PubKey, ResponseBody};
use common::{http, Worker};
use serde_json::{json, Value};

fn cairn(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn")).args(args).env("CAIRN_LOG", "warn").output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_audits_online_offline_and_through_opentimestamps() {
    let Some(exe) = cairn_testkit::bitcoind() else { return };
    let dir = tempfile::tempdir().unwrap();
    let btc = RegtestNode::start(&exe, &dir.path().join("bitcoind")).unwrap();
    let rpc = btc.rpc().unwrap();
    let call = |m: &str, p: Value| rpc.raw_call(m, p).unwrap();
    let miner = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
    let data = dir.path().join("data");
    let cfg = common::rpc_config(&data, &btc.rpc_url(), &btc.cookie_path());
    let (info, stop_tx, handle) = common::start_node(&cfg).await;
    let api = info.api;
    let url = format!("http://{api}");
    let token = std::fs::read_to_string(data.join("operator.token")).unwrap().trim().to_string();
    let coordinator = PubKey::from_hex(&info.coordinator).unwrap();
    call("generatetoaddress", json!([1, info.anchor_address.clone().unwrap()]));
    call("generatetoaddress", json!([100, miner]));
    let w0 = Worker::start(common::key(1), &info.p2p[0]).await;
    let w1 = Worker::start(common::key(2), &info.p2p[0]).await;
    assert_eq!(w0.register(coordinator, 4).await, ResponseBody::Ack);
    assert_eq!(w1.register(coordinator, 4).await, ResponseBody::Ack);

    let wait_for =
        |what: &str, f: &dyn Fn() -> bool| cairn_testkit::wait_for(what, Duration::from_secs(30), f);
    let mut receipts = Vec::new();
    for epoch in 0..2u32 {
        for n in 0..3u32 {
            let body = format!(
                r#"{{"class":"echo","input_text":"e{epoch}t{n}","units":10,"budget_sats":1000,"nonce":{}}}"#,
                epoch * 10 + n
            );
            let (s, v) = http(api, "POST", "/v1/tasks", Some(&token), Some(&body));
            assert_eq!(s, 201, "{v}");
            let id = cairn_spec::Hash32::from_hex(v["id"].as_str().unwrap()).unwrap();
            let t = common::run_task(api, &[&w0, &w1], id, &|_| b"ok".to_vec()).await;
            for a in t["assignments"].as_array().unwrap() {
                if let Some(r) = a["receipt"].as_str() {
                    receipts.push((epoch, r.to_owned()));
                }
            }
        }
        assert_eq!(http(api, "POST", "/v1/epochs/close", Some(&token), None).1["closed"], epoch);
        let path = format!("/v1/epochs/{epoch}");
        wait_for("anchor broadcast", &|| {
            http(api, "GET", &path, None, None).1["anchor"]["status"] == "pending"
        });
        // Before its anchor confirms, the calendar has nothing for the receipt yet.
        if epoch == 0 {
            let (s, _) =
                common::try_http(api, "GET", &format!("/timestamp/{}", receipts[0].1), None, None).unwrap();
            assert_eq!(s, 404);
        }
        call("generatetoaddress", json!([1, miner]));
        wait_for("confirmation", &|| {
            http(api, "GET", &path, None, None).1["anchor"]["status"] == "confirmed"
        });
        // Nor at one confirmation: OpenTimestamps clients keep an answer for ever, so the
        // calendar waits until the anchor is final (finality_depth 2).
        if epoch == 0 {
            let (s, v) =
                common::try_http(api, "GET", &format!("/timestamp/{}", receipts[0].1), None, None).unwrap();
            assert_eq!(s, 404, "{v}");
        }
        // The next epoch closes once armed: the block after this anchor's, finality-deep
        // (SPEC.md §12.1), is its beacon.
        call("generatetoaddress", json!([2, miner]));
        wait_for("the next epoch armed", &|| {
            http(api, "GET", "/v1/stats", None, None).1["open_epoch_armed"] == true
        });
    }
    call("generatetoaddress", json!([5, miner]));
    let rpc_args = |v: &mut Vec<String>| {
        v.extend([
            "--rpc-url".into(),
            btc.rpc_url(),
            "--rpc-cookie".into(),
            btc.cookie_path().display().to_string(),
        ]);
    };
    let receipt = receipts.iter().find(|(e, _)| *e == 0).unwrap().1.clone();

    // Online: every step ✓ against Bitcoin Core.
    let mut a = vec![
        "audit".into(),
        "receipt".into(),
        receipt.clone(),
        "--api".into(),
        url.clone(),
        "--network".into(),
        "regtest".into(),
        "--min-depth".into(),
        "6".into(),
    ];
    rpc_args(&mut a);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, out) = cairn(&a);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("VERIFIED") && !out.contains('✗'), "{out}");
    for step in cairn_audit::verify::RECEIPT_CHECKS {
        assert!(out.contains(&format!("✓ {step}")), "{step} missing: {out}");
    }
    // Too shallow for a demanding auditor, or the wrong network: non-zero, step named.
    let mut deep = a.clone();
    deep[8] = "100";
    let (code, out) = cairn(&deep);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("step `depth` failed"), "{out}");
    let mut wrong = a.clone();
    wrong[6] = "signet";
    let (code, out) = cairn(&wrong);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("step `network` failed") || out.contains("step `node_network` failed"), "{out}");

    // Offline: a bundle with 6 confirmations, checked with no node at all.
    let bundle = dir.path().join("receipt.bundle");
    let mut b = vec![
        "proof".into(),
        "bundle".into(),
        receipt.clone(),
        "--api".into(),
        url.clone(),
        "--depth".into(),
        "6".into(),
        "--out".into(),
        bundle.display().to_string(),
    ];
    rpc_args(&mut b);
    let (code, out) = cairn(&b.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}");
    let bpath = bundle.display().to_string();
    let (code, out) = cairn(&[
        "audit",
        "receipt",
        "--offline",
        &bpath,
        "--network",
        "regtest",
        "--min-depth",
        "6",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["checks"].as_array().unwrap().len(), cairn_audit::verify::BUNDLE_CHECKS.len());
    // Pinned to the chain its headers name it holds, online and offline; pinned to another
    // genesis output (another chain of the same coordinator) it fails `anchor_chain`.
    let parsed = cairn_spec::ProofBundle::from_bytes(&std::fs::read(&bundle).unwrap()).unwrap();
    let genesis = parsed.proof.headers.last().unwrap().body.anchor.genesis().unwrap();
    let other = bitcoin::OutPoint { vout: genesis.vout + 1, ..genesis }.to_string();
    let genesis = genesis.to_string();
    for (pin, want) in [(genesis.as_str(), 0), (other.as_str(), 3)] {
        let mut online = a.clone();
        online.extend(["--genesis-output", pin]);
        let (code, out) = cairn(&online);
        assert_eq!(code, want, "{out}");
        let (code, out) =
            cairn(&["audit", "receipt", "--offline", &bpath, "--min-depth", "6", "--genesis-output", pin]);
        assert_eq!(code, want, "{out}");
        if want != 0 {
            assert!(out.contains("step `anchor_chain` failed") && out.contains("expects"), "{out}");
        }
    }
    // A tampered receipt inside the bundle is named.
    let mut parsed = cairn_spec::ProofBundle::from_bytes(&std::fs::read(&bundle).unwrap()).unwrap();
    parsed.proof.receipt.body.reward_sats += 1;
    let forged = dir.path().join("forged.bundle");
    std::fs::write(&forged, parsed.to_bytes()).unwrap();
    let (code, out) = cairn(&["audit", "receipt", "--offline", forged.to_str().unwrap(), "--min-depth", "1"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("step `receipt_signature` failed"), "{out}");

    // OpenTimestamps: the export, read by the reference library, reaches the block's root.
    let stamped = dir.path().join(format!("receipt-{receipt}"));
    let mut o = vec![
        "proof".into(),
        "ots".into(),
        receipt.clone(),
        "--api".into(),
        url.clone(),
        "--out".into(),
        stamped.display().to_string(),
    ];
    rpc_args(&mut o);
    let (code, out) = cairn(&o.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}");
    let ots = format!("{}.ots", stamped.display());
    let (_, t) = cairn_spec::ots::LinearTimestamp::from_detached_file(&std::fs::read(&ots).unwrap()).unwrap();
    let cairn_spec::ots::Attestation::BitcoinBlockHeader { height } = t.attestation else { panic!() };
    let block = call("getblockhash", json!([height]));
    let root = call("getblockheader", json!([block]))["merkleroot"].as_str().unwrap().to_owned();
    // The coordinator's calendar answer is the same timestamp.
    let answer = reqwest_bytes(api, &format!("/timestamp/{receipt}"));
    assert_eq!(cairn_spec::ots::LinearTimestamp::deserialize(&answer).unwrap(), t);
    let answer_path = dir.path().join("calendar-answer");
    std::fs::write(&answer_path, &answer).unwrap();
    if cairn_testkit::python_has("opentimestamps") {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/ots_check.py");
        let out = Command::new("python3")
            .arg(&script)
            .args([
                &ots,
                stamped.to_str().unwrap(),
                &height.to_string(),
                &root,
                answer_path.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        cairn_testkit::skip(
            "the PyPI package opentimestamps is missing for its library check; .ci/run installs it",
        );
    }
    // The stock client verifies it against the same node.
    if cairn_testkit::runs("ots") {
        let cookie = std::fs::read_to_string(btc.cookie_path()).unwrap();
        let node = btc.rpc_url().replacen("http://", &format!("http://{}@", cookie.trim()), 1);
        let out = Command::new("ots")
            .args(["--no-cache", "--btc-regtest", "--bitcoin-node", &node, "verify", &ots])
            .output()
            .unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("Success!"), "ots verify: {text}");
    } else {
        cairn_testkit::skip(
            "the stock OpenTimestamps client (`ots`) is missing; .ci/run installs opentimestamps-client",
        );
    }

    // The whole chain: every epoch recomputed, both anchors walked from the genesis anchor.
    let genesis = http(api, "GET", "/v1/anchors", None, None).1["anchors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"] == "confirmed")
        .min_by_key(|a| a["height"].as_u64())
        .unwrap()["txid"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut c = vec![
        "audit".into(),
        "chain".into(),
        "--api".into(),
        url.clone(),
        "--genesis-anchor".into(),
        genesis.clone(),
    ];
    rpc_args(&mut c);
    let (code, out) = cairn(&c.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("│ anchors walked       │ 2") && out.contains("│ epochs checked       │ 2"),
        "{out}"
    );
    assert!(out.contains("│ equivocations        │ 0") && out.contains("VERIFIED"), "{out}");
    // The same from the node's own database, opened read-only while the node runs.
    let mut c = vec![
        "audit".into(),
        "chain".into(),
        "--data-dir".into(),
        data.display().to_string(),
        "--genesis-anchor".into(),
        genesis.clone(),
    ];
    rpc_args(&mut c);
    let (code, out) = cairn(&c.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("│ anchors walked       │ 2") && out.contains("source: database"), "{out}");
    let mut e =
        vec!["audit".into(), "epoch".into(), "1".into(), "--api".into(), url.clone(), "--json".into()];
    rpc_args(&mut e);
    let (code, out) = cairn(&e.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["audit"]["epochs"].as_array().unwrap().len(), 1);
    assert_eq!(v["audit"]["anchored_through"], 1);

    // A follower on the same Bitcoin node: it replicates the chain over p2p, finds both
    // anchors on its own (nothing the coordinator says about them is used), and what it
    // serves audits ✓ the same way.
    let fdir = dir.path().join("follower");
    let bitcoin = common::core_bitcoin(&btc.rpc_url(), &btc.cookie_path());
    let (finfo, fstop, fhandle) =
        common::start_follower(&common::follower_config(&fdir, &info.p2p[0], bitcoin)).await;
    let furl = format!("http://{}", finfo.api);
    let confirmed = |api| -> Vec<String> {
        let v = http(api, "GET", "/v1/anchors", None, None).1;
        let mut t: Vec<String> = v["anchors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["status"] == "confirmed")
            .map(|a| a["txid"].as_str().unwrap().to_owned())
            .collect();
        t.sort();
        t
    };
    wait_for("the follower to find both anchors", &|| confirmed(finfo.api).len() == 2);
    assert_eq!(confirmed(finfo.api), confirmed(api));
    let health = http(finfo.api, "GET", "/v1/health", None, None).1;
    assert_eq!((health["next_epoch"].as_u64(), health["evidence"].as_u64()), (Some(2), Some(0)), "{health}");
    let mut c = vec![
        "audit".into(),
        "chain".into(),
        "--api".into(),
        furl.clone(),
        "--genesis-anchor".into(),
        genesis,
    ];
    rpc_args(&mut c);
    let (code, out) = cairn(&c.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("│ anchors walked       │ 2") && out.contains("VERIFIED"), "{out}");
    let mut r = a.clone();
    r[4] = &furl;
    let (code, out) = cairn(&r);
    assert_eq!(code, 0, "{out}");
    let _ = fstop.send(());
    fhandle.await.unwrap();

    w0.net.shutdown().await;
    w1.net.shutdown().await;
    stop_tx.send(()).unwrap();
    handle.await.unwrap();
    drop(btc);
}

/// A raw GET returning the body bytes (the calendar answer is not JSON).
fn reqwest_bytes(api: std::net::SocketAddr, path: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let at = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..at]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("application/octet-stream"), "{head}");
    let body = buf[at + 4..].to_vec();
    // axum answers a known-length body without chunking.
    assert!(!head.to_ascii_lowercase().contains("chunked"));
    body
}

/// Closes the open epoch `e` through the API, mines its anchor past broadcast, and waits until
/// the next epoch is armed (its beacon final).
fn close_and_arm(
    api: std::net::SocketAddr,
    token: &str,
    call: &dyn Fn(&str, Value) -> Value,
    miner: &str,
    e: u32,
) {
    let wait_for =
        |what: &str, f: &dyn Fn() -> bool| cairn_testkit::wait_for(what, Duration::from_secs(30), f);
    assert_eq!(http(api, "POST", "/v1/epochs/close", Some(token), None).1["closed"], e);
    let path = format!("/v1/epochs/{e}");
    wait_for("anchor broadcast", &|| http(api, "GET", &path, None, None).1["anchor"]["status"] == "pending");
    call("generatetoaddress", json!([3, miner]));
    wait_for("the next epoch armed", &|| {
        http(api, "GET", "/v1/stats", None, None).1["open_epoch_armed"] == true
    });
}

/// Mines one coinbase to each bond key's P2TR output (the key untweaked, as a bond proves it)
/// and returns their txids: each a validator's bond, its value the validator's stake. The
/// caller matures them.
fn bond_coinbases(
    call: &dyn Fn(&str, Value) -> Value,
    keys: Vec<cairn_spec::SigningKey>,
) -> Vec<(cairn_spec::SigningKey, cairn_spec::Hash32)> {
    use bitcoin::hashes::Hash as _;
    keys.into_iter()
        .map(|bond_key| {
            let addr = bitcoin::Address::p2tr_tweaked(
                bitcoin::key::TweakedPublicKey::dangerous_assume_tweaked(bond_key.public().x_only()),
                bitcoin::Network::Regtest,
            );
            let block = call("generatetoaddress", json!([1, addr.to_string()]));
            let coinbase = call("getblock", json!([block[0]]))["tx"][0].as_str().unwrap().to_string();
            let txid: bitcoin::Txid = coinbase.parse().unwrap();
            (bond_key, cairn_spec::Hash32(txid.to_byte_array()))
        })
        .collect()
}

/// `v`'s signed registration as a validator of `coordinator`, bonded by `txid:0` paying to
/// `bond_key`.
fn validator_registration(
    coordinator: PubKey,
    v: &Worker,
    bond_key: &cairn_spec::SigningKey,
    txid: cairn_spec::Hash32,
) -> cairn_spec::RequestBody {
    let reg = cairn_spec::ValidatorRegistration {
        network: cairn_spec::Network::Regtest,
        coordinator,
        validator: v.public(),
        payout_address: common::ADDR.into(),
        created_at: common::now(),
        bond: cairn_spec::Bond {
            txid,
            vout: 0,
            key: bond_key.public(),
            signature: bond_key
                .sign(&cairn_spec::work::bond_message(&coordinator, &v.public(), &txid, 0), &[3; 32]),
        },
    };
    cairn_spec::RequestBody::RegisterValidator(Box::new(cairn_spec::Signed::sign(reg, &v.key, &[1; 32])))
}

/// Issue 28's test: a quality class scored over the network by 3 bonded validators, one
/// colluding with the poorest of 4 workers; each validator evaluates the workers from the
/// results they revealed, commits, then reveals; the round is anchored, and `cairn audit
/// epoch` recomputes every share, checks each worker's units against its receipts and each
/// stake against Bitcoin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validators_score_a_quality_class_and_the_audit_reproduces_every_share() {
    use cairn_spec::consensus::{self, ConsensusParams, Sheet};
    use cairn_spec::{content_hash, Hash32, Object, RequestBody, ScoredRound, Signed};
    let Some(exe) = cairn_testkit::bitcoind() else { return };
    let dir = tempfile::tempdir().unwrap();
    let btc = RegtestNode::start(&exe, &dir.path().join("bitcoind")).unwrap();
    let rpc = btc.rpc().unwrap();
    let call = |m: &str, p: Value| rpc.raw_call(m, p).unwrap();
    let miner = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
    let data = dir.path().join("data");
    let mut cfg = common::rpc_config(&data, &btc.rpc_url(), &btc.cookie_path());
    let params = ConsensusParams {
        worker_budget_sats: 1_000_000,
        validator_budget_sats: 100_000,
        baseline: 100_000,
        tolerance: 100_000,
    };
    cfg.classes = vec![cairn_coordinator::config::ClassConfig {
        objective: Some(cairn_coordinator::config::ObjectiveConfig {
            kind: cairn_coordinator::config::ObjectiveKind::Quality,
            worker_budget_sats: params.worker_budget_sats,
            validator_budget_sats: params.validator_budget_sats,
            baseline_ppm: params.baseline,
            tolerance_ppm: params.tolerance,
            fast_ms: None,
            slow_ms: None,
        }),
        ..common::exact_class("labels", 1, 0, 30)
    }];
    let (info, stop_tx, handle) = common::start_node(&cfg).await;
    let api = info.api;
    let url = format!("http://{api}");
    let token = std::fs::read_to_string(data.join("operator.token")).unwrap().trim().to_string();
    let coordinator = PubKey::from_hex(&info.coordinator).unwrap();
    call("generatetoaddress", json!([1, info.anchor_address.clone().unwrap()]));
    let bonds = bond_coinbases(&call, (0..3).map(|i| common::key(40 + i)).collect());
    call("generatetoaddress", json!([100, miner]));

    let mut workers: Vec<Worker> = Vec::new();
    for i in 1..=4 {
        workers.push(Worker::start(common::key(i), &info.p2p[0]).await);
    }
    for w in &workers {
        assert_eq!(w.register(coordinator, 4).await, ResponseBody::Ack);
    }
    let mut validators = Vec::new();
    for (i, (bond_key, txid)) in bonds.iter().enumerate() {
        let v = Worker::start(common::key(30 + i as u32), &info.p2p[0]).await;
        let reg = validator_registration(coordinator, &v, bond_key, *txid);
        assert_eq!(v.req(reg).await, ResponseBody::Ack);
        validators.push(v);
    }
    // A worker's key cannot also validate, nor a validator's bond back a second key.
    let w0 = &workers[0];
    let refused = w0.req(validator_registration(coordinator, w0, &bonds[0].0, bonds[0].1)).await;
    assert!(
        matches!(refused, ResponseBody::Error { reason: cairn_spec::ErrorReason::Conflict, .. }),
        "{refused:?}"
    );

    // Epoch 0: labelled items; worker i answers right on a share of them that falls with i
    // (worker 3 is the poor one). The truth is what the validators hold.
    let right = |item: u32| format!("label-{}", item % 3).into_bytes();
    let good = [9u32, 7, 5, 2]; // out of 10
                                // Worker i gets its k-th task right when ⌊(k+1)·g/10⌋ > ⌊k·g/10⌋: g in every 10, evenly,
                                // so the validators' estimates are near the truth whichever tasks each worker drew.
    let done: std::sync::Mutex<std::collections::HashMap<(usize, u32), bool>> = Default::default();
    let count = std::sync::Mutex::new([0u32; 4]);
    let answer = |i: usize, item: u32| {
        let correct = *done.lock().unwrap().entry((i, item)).or_insert_with(|| {
            let mut c = count.lock().unwrap();
            let k = c[i];
            c[i] += 1;
            (k + 1) * good[i] / 10 > k * good[i] / 10
        });
        if correct {
            right(item)
        } else {
            b"wrong".to_vec()
        }
    };
    let mut tasks: Vec<(u32, Hash32)> = Vec::new();
    for item in 0..80u32 {
        let body = format!(
            r#"{{"class":"labels","input_text":"item {item}","units":1,"budget_sats":1000,"nonce":{item}}}"#
        );
        let (s, v) = http(api, "POST", "/v1/tasks", Some(&token), Some(&body));
        assert_eq!(s, 201, "{v}");
        let id = Hash32::from_hex(v["id"].as_str().unwrap()).unwrap();
        let ws: Vec<&Worker> = workers.iter().collect();
        let t = common::run_task(api, &ws, id, &|i| answer(i, item)).await;
        assert_eq!(t["phase"], "decided", "{t}");
        tasks.push((item, id));
    }
    let wait_for =
        |what: &str, f: &dyn Fn() -> bool| cairn_testkit::wait_for(what, Duration::from_secs(30), f);
    let close = |e: u32| close_and_arm(api, &token, &call, miner, e);
    close(0);

    // Each validator evaluates what the workers revealed against the truth it holds: the
    // first on every item, the second on all but the first four (two honest estimates that
    // differ by a task or so per worker).
    let mut seen: Vec<(u32, PubKey, Hash32)> = Vec::new();
    for (item, id) in &tasks {
        // One replica per task in a quality class: the accepted result is its worker's.
        let t = http(api, "GET", &format!("/v1/tasks/{id}"), None, None).1;
        let result = Hash32::from_hex(t["result_hash"].as_str().unwrap()).unwrap();
        for a in t["assignments"].as_array().unwrap().iter().filter(|a| a["verdict"] == "accepted") {
            seen.push((*item, PubKey::from_hex(a["worker"].as_str().unwrap()).unwrap(), result));
        }
    }
    let accuracy = |w: &PubKey, which: &dyn Fn(u32) -> bool| -> u32 {
        let mine: Vec<_> = seen.iter().filter(|(item, k, _)| k == w && which(*item)).collect();
        let ok = mine.iter().filter(|(item, _, h)| *h == content_hash(&right(*item))).count();
        (ok as u64 * 1_000_000 / mine.len().max(1) as u64) as u32
    };
    let mut keys: Vec<PubKey> = workers.iter().map(|w| w.public()).collect();
    keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let poor = workers[3].public();
    let sheets: Vec<Vec<(PubKey, u32)>> = vec![
        keys.iter().map(|k| (*k, accuracy(k, &|_| true))).collect(),
        keys.iter().map(|k| (*k, accuracy(k, &|i| i >= 4))).collect(),
        // The colluder: its partner at the top, the rest pushed down.
        keys.iter().map(|k| (*k, if *k == poor { 1_000_000 } else { accuracy(k, &|_| true) / 2 })).collect(),
    ];
    let class = cfg.classes[0].to_class().unwrap().id();
    let reveal_of = |v: &Worker, scores: &[(PubKey, u32)]| cairn_spec::ScoreReveal {
        network: cairn_spec::Network::Regtest,
        coordinator,
        class,
        epoch: 0,
        validator: v.public(),
        scores: scores.to_vec(),
        salt: content_hash(v.public().as_bytes()).0,
    };
    for (v, s) in validators.iter().zip(&sheets) {
        let r = reveal_of(v, s);
        let commit = cairn_spec::ScoreCommit {
            network: r.network,
            coordinator,
            class,
            epoch: 0,
            validator: v.public(),
            commitment: cairn_spec::scores::score_commitment_value(
                r.network,
                &coordinator,
                &class,
                0,
                &r.validator,
                &r.scores,
                &r.salt,
            ),
        };
        let c = RequestBody::ScoreCommit(Box::new(Signed::sign(commit, &v.key, &[2; 32])));
        assert_eq!(v.req(c).await, ResponseBody::Ack);
        // Revealing now is refused: commits are still open.
        let early = v.req(RequestBody::ScoreReveal(Box::new(Signed::sign(r, &v.key, &[2; 32])))).await;
        assert!(
            matches!(early, ResponseBody::Error { reason: cairn_spec::ErrorReason::TooEarly, .. }),
            "{early:?}"
        );
    }
    close(1);
    for (v, s) in validators.iter().zip(&sheets) {
        let r = RequestBody::ScoreReveal(Box::new(Signed::sign(reveal_of(v, s), &v.key, &[2; 32])));
        assert_eq!(v.req(r).await, ResponseBody::Ack);
    }
    assert_eq!(http(api, "POST", "/v1/epochs/close", Some(&token), None).1["closed"], 2);
    wait_for("anchor broadcast", &|| {
        http(api, "GET", "/v1/epochs/2", None, None).1["anchor"]["status"] == "pending"
    });
    call("generatetoaddress", json!([3, miner]));
    wait_for("confirmation", &|| {
        http(api, "GET", "/v1/epochs/2", None, None).1["anchor"]["status"] == "confirmed"
    });

    // The round the header at 2 commits.
    let v = http(api, "GET", "/v1/epochs/2/rounds", None, None).1;
    let rounds: Vec<ScoredRound> = v["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| ScoredRound::from_bytes(&hex::decode(r["encoding"].as_str().unwrap()).unwrap()).unwrap())
        .collect();
    assert_eq!(rounds.len(), 1, "{v}");
    let round = &rounds[0];
    let outcome = round.check().unwrap();
    let per_unit = |k: &PubKey| {
        let w = round.workers.iter().find(|w| w.worker == *k).unwrap();
        w.share_sats as f64 / w.units as f64
    };
    let pay: Vec<f64> = workers.iter().map(|w| per_unit(&w.public())).collect();
    let vshare = |v: &Worker| round.sheets.iter().find(|s| s.validator == v.public()).unwrap().share_sats;
    assert!(
        vshare(&validators[2]) < vshare(&validators[0]) && vshare(&validators[2]) < vshare(&validators[1])
    );
    // What the colluder moved, against the same round without it, and the bound: the honest
    // validators' spread on each worker.
    let mut honest: Vec<Sheet> = round.sheets[..]
        .iter()
        .filter(|s| s.validator != validators[2].public())
        .map(|s| Sheet { validator: s.validator, stake: s.stake, scores: s.scores.clone() })
        .collect();
    honest.sort_by(|a, b| a.validator.as_bytes().cmp(b.validator.as_bytes()));
    let units: Vec<(PubKey, u64)> = round.workers.iter().map(|w| (w.worker, w.units)).collect();
    let without = consensus::consensus(&params, &units, &honest).unwrap();
    for (o, b) in outcome.workers.iter().zip(&without.workers) {
        let (a0, a1) = (
            sheets[0].iter().find(|s| s.0 == o.worker).unwrap().1,
            sheets[1].iter().find(|s| s.0 == o.worker).unwrap().1,
        );
        assert!(
            (a0.min(a1)..=a0.max(a1)).contains(&o.score),
            "score of {} outside the honest range",
            o.worker
        );
        eprintln!(
            "worker {}: score {} (without the colluder {}, honest spread {}), share {} sats ({:+})",
            o.worker,
            o.score,
            b.score,
            a0.abs_diff(a1),
            o.share_sats,
            o.share_sats as i64 - b.share_sats as i64
        );
    }
    assert!(
        pay.windows(2).all(|p| p[0] > p[1]),
        "pay per unit follows true quality: {pay:?}, sheets {sheets:?}"
    );
    eprintln!(
        "validators' shares: honest {} and {}, colluder {}",
        vshare(&validators[0]),
        vshare(&validators[1]),
        vshare(&validators[2])
    );

    // `cairn audit epoch 2`, against Bitcoin Core: every share recomputed, units against the
    // receipts, stakes against the bond outputs.
    let mut e =
        vec!["audit".into(), "epoch".into(), "2".into(), "--api".into(), url.clone(), "--json".into()];
    e.extend([
        "--rpc-url".into(),
        btc.rpc_url(),
        "--rpc-cookie".into(),
        btc.cookie_path().display().to_string(),
    ]);
    let (code, out) = cairn(&e.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let checks = v["audit"]["epochs"][0]["report"]["checks"].as_array().unwrap().clone();
    let scores = checks.iter().find(|c| c["name"] == "scores").unwrap();
    assert_eq!(scores["outcome"], "pass", "{scores}");
    let detail = scores["detail"].as_str().unwrap();
    assert!(detail.contains("units match") && detail.contains("stakes match Bitcoin"), "{detail}");
    eprintln!("cairn audit epoch 2: {detail}");
    // The validators' credit is in the ledger.
    let l = http(api, "GET", &format!("/v1/ledger/{}", validators[0].public()), None, None).1;
    assert_eq!(l["locked"].as_u64(), Some(vshare(&validators[0])), "{l}");
    // A follower mirrors the round over p2p (each round checked against the header's scores
    // root and its own signed sheets), and what it serves audits the same.
    let fdir = dir.path().join("follower");
    let bitcoin = common::core_bitcoin(&btc.rpc_url(), &btc.cookie_path());
    let (finfo, fstop, fhandle) =
        common::start_follower(&common::follower_config(&fdir, &info.p2p[0], bitcoin)).await;
    wait_for("the follower to mirror epoch 2", &|| {
        http(finfo.api, "GET", "/v1/epochs/2/rounds", None, None).0 == 200
    });
    assert_eq!(
        http(finfo.api, "GET", "/v1/epochs/2/rounds", None, None).1,
        http(api, "GET", "/v1/epochs/2/rounds", None, None).1
    );
    let mut f =
        vec!["audit".into(), "epoch".into(), "2".into(), "--api".into(), format!("http://{}", finfo.api)];
    f.extend([
        "--rpc-url".into(),
        btc.rpc_url(),
        "--rpc-cookie".into(),
        btc.cookie_path().display().to_string(),
    ]);
    let (code, out) = cairn(&f.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}");
    fstop.send(()).unwrap();
    fhandle.await.unwrap();
    // The dashboard shows the round as the API serves it, and plots each worker's score.
    if let Some((chrome, pw)) = common::browser() {
        let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("scores");
        let url2 = url.clone();
        let shown = tokio::task::spawn_blocking(move || {
            common::run_browser_script("scores.cjs", &url2, &out, &chrome, &pw)
        })
        .await
        .unwrap();
        eprintln!("{shown}");
    }

    for w in workers.iter().chain(&validators) {
        w.net.shutdown().await;
    }
    stop_tx.send(()).unwrap();
    handle.await.unwrap();
    drop(btc);
}

/// A demo executor: `Upper`, a fixed time later.
struct SlowUpper(Duration);

impl cairn_worker::executor::Executor for SlowUpper {
    fn kind(&self) -> cairn_spec::ExecutorKind {
        cairn_spec::ExecutorKind::Command
    }
    fn rule(&self) -> cairn_spec::ComparisonRule {
        cairn_spec::ComparisonRule::ExactHash
    }
    fn run(&self, input: &[u8]) -> Result<Vec<u8>, cairn_worker::executor::ExecError> {
        std::thread::sleep(self.0);
        Ok(input.to_ascii_uppercase())
    }
}

/// A fast cheat: answers at once, wrongly (the input as it came).
struct Echo;

impl cairn_worker::executor::Executor for Echo {
    fn kind(&self) -> cairn_spec::ExecutorKind {
        cairn_spec::ExecutorKind::Command
    }
    fn rule(&self) -> cairn_spec::ComparisonRule {
        cairn_spec::ComparisonRule::ExactHash
    }
    fn run(&self, input: &[u8]) -> Result<Vec<u8>, cairn_worker::executor::ExecError> {
        Ok(input.to_vec())
    }
}

/// Issue 28, the latency objective, over real sockets against Bitcoin Core: four real worker
/// agents run a latency class (two fast, one 300 ms slower, one fast and wrong); three bonded
/// validators time each worker that did work with their own probes over p2p (SPEC.md §13.7),
/// one of them colluding with the slow worker; the round pays the fast workers more than the
/// slow one, the wrong one nothing, the colluder least; a stranger's probe and a relayed one
/// are refused; and `cairn audit epoch` recomputes every share against the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn validators_time_a_latency_class_by_probes_and_the_audit_reproduces_every_share() {
    use cairn_spec::probe::latency_score;
    use cairn_spec::{Object, RequestBody, ScoredRound, Signed, Timing};
    let Some(exe) = cairn_testkit::bitcoind() else { return };
    let dir = tempfile::tempdir().unwrap();
    let btc = RegtestNode::start(&exe, &dir.path().join("bitcoind")).unwrap();
    let rpc = btc.rpc().unwrap();
    let call = |m: &str, p: Value| rpc.raw_call(m, p).unwrap();
    let miner = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
    let data = dir.path().join("data");
    let mut cfg = common::rpc_config(&data, &btc.rpc_url(), &btc.cookie_path());
    let (fast_ms, slow_ms) = (150, 1_500);
    cfg.classes = vec![cairn_coordinator::config::ClassConfig {
        objective: Some(cairn_coordinator::config::ObjectiveConfig {
            kind: cairn_coordinator::config::ObjectiveKind::Latency,
            worker_budget_sats: 1_000_000,
            validator_budget_sats: 100_000,
            baseline_ppm: 0,
            tolerance_ppm: 150_000,
            fast_ms: Some(fast_ms),
            slow_ms: Some(slow_ms),
        }),
        ..common::exact_class("upper", 2, 10, 30)
    }];
    let class = cfg.classes[0].to_class().unwrap();
    let cairn_spec::Objective::Latency(terms) = class.objective else { panic!() };
    let (info, stop_tx, handle) = common::start_node(&cfg).await;
    let api = info.api;
    let url = format!("http://{api}");
    let token = std::fs::read_to_string(data.join("operator.token")).unwrap().trim().to_string();
    let coordinator = PubKey::from_hex(&info.coordinator).unwrap();
    call("generatetoaddress", json!([1, info.anchor_address.clone().unwrap()]));
    let bonds = bond_coinbases(&call, (0..3).map(|i| common::key(60 + i)).collect());
    call("generatetoaddress", json!([100, miner]));

    // The workers: real agents. Two fast, one slow, one fast and wrong.
    let slow_by = Duration::from_millis(300);
    let execs: Vec<std::sync::Arc<dyn cairn_worker::executor::Executor>> = vec![
        std::sync::Arc::new(common::Upper),
        std::sync::Arc::new(common::Upper),
        std::sync::Arc::new(SlowUpper(slow_by)),
        std::sync::Arc::new(Echo),
    ];
    let mut agents = Vec::new();
    let mut infos = Vec::new();
    for (i, e) in execs.into_iter().enumerate() {
        let (wi, agent) = common::start_agent(&dir.path().join(format!("w{i}")), &info.p2p[0], e).await;
        infos.push(wi);
        agents.push(agent);
    }
    let mut validators = Vec::new();
    for (i, (bond_key, txid)) in bonds.iter().enumerate() {
        let v = Worker::start(common::key(50 + i as u32), &info.p2p[0]).await;
        let reg = validator_registration(coordinator, &v, bond_key, *txid);
        assert_eq!(v.req(reg).await, ResponseBody::Ack);
        validators.push(v);
    }

    // Epoch 0: tasks, run by whichever agents claim them.
    let mut ids = Vec::new();
    for n in 0..24u32 {
        let body = format!(
            r#"{{"class":"upper","input_text":"task number {n}","units":1,"budget_sats":1000,"nonce":{n}}}"#
        );
        let (s, v) = http(api, "POST", "/v1/tasks", Some(&token), Some(&body));
        assert_eq!(s, 201, "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let wait_long =
        |what: &str, f: &dyn Fn() -> bool| cairn_testkit::wait_for(what, Duration::from_secs(120), f);
    wait_long("every task settled", &|| {
        ids.iter().all(|id| {
            let t = http(api, "GET", &format!("/v1/tasks/{id}"), None, None).1;
            t["phase"] == "decided" || t["phase"] == "failed"
        })
    });
    let wait_for =
        |what: &str, f: &dyn Fn() -> bool| cairn_testkit::wait_for(what, Duration::from_secs(30), f);
    let close = |e: u32| close_and_arm(api, &token, &call, miner, e);
    close(0);

    // Who did accepted work of the class in epoch 0: only they are scored.
    let receipts = http(api, "GET", "/v1/epochs/0/receipts?from=0&limit=1000", None, None).1;
    let mut scored: Vec<PubKey> = receipts["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| cairn_spec::SignedReceipt::from_bytes(&hex::decode(r.as_str().unwrap()).unwrap()).unwrap())
        .filter(|r| r.body.class == class.id() && r.body.verdict.is_accepted())
        .map(|r| r.body.worker)
        .collect();
    scored.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    scored.dedup();
    let (fast0, fast1, slow, wrong) = (infos[0].key, infos[1].key, infos[2].key, infos[3].key);
    assert!(!scored.contains(&wrong), "a wrong worker has no accepted unit");
    assert!([fast0, fast1, slow].iter().all(|k| scored.contains(k)), "every honest worker did work");

    // Each validator probes each worker from its own node: fresh inputs, its own result
    // (the class's executor, run here) as the reference, its own clock.
    let peer_of = |k: &PubKey| {
        let wi = infos.iter().find(|w| w.key == *k).unwrap();
        let addr = wi.p2p.iter().find(|a| a.contains("127.0.0.1")).unwrap().clone();
        let peer: cairn_p2p::Peer = addr.rsplit('/').next().unwrap().parse().unwrap();
        (addr, peer)
    };
    let mut timings: Vec<std::collections::BTreeMap<PubKey, Vec<Timing>>> = Vec::new();
    for v in &validators {
        let mut mine = std::collections::BTreeMap::new();
        for k in [fast0, fast1, slow, wrong] {
            let (addr, peer) = peer_of(&k);
            v.net.dial(&addr).await.unwrap();
            let mut ts = Vec::new();
            while ts.len() < 5 {
                let mut nonce = [0u8; 8];
                getrandom::fill(&mut nonce).unwrap();
                let input = format!("probe {}", hex::encode(nonce)).into_bytes();
                let own = input.to_ascii_uppercase();
                let p = cairn_worker::probe::probe(
                    &v.key,
                    cairn_spec::Network::Regtest,
                    coordinator,
                    class.id(),
                    k,
                    input,
                );
                // `busy` says nothing of speed: probed again.
                match cairn_worker::probe::time(&v.net, &peer, p, &own, &class.rule, slow_ms).await {
                    Some(t) => ts.push(t),
                    None => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            mine.insert(k, ts);
        }
        timings.push(mine);
    }
    for (i, t) in timings.iter().enumerate() {
        eprintln!(
            "validator {i}: fast {:?} {:?}, slow {:?}, wrong {:?}",
            t[&fast0], t[&fast1], t[&slow], t[&wrong]
        );
        // Wrong when it answers; a worker the coordinator banned for its wrong results may
        // also be unable to learn the validators, and refuse them (missing). Never answered.
        assert!(t[&wrong].iter().all(|x| matches!(x, Timing::Wrong | Timing::Missing)), "{:?}", t[&wrong]);
        assert_eq!(latency_score(&terms, &t[&wrong]), 0, "however fast, a wrong worker scores 0");
        assert!(t[&slow].iter().all(|x| matches!(x, Timing::Answered(ms) if *ms >= 300)), "{:?}", t[&slow]);
    }
    // A stranger's probe is refused, as is a validator's probe relayed by another node (each
    // from its own stranger: a refused stranger's next request is refused by its rate).
    let (addr, peer) = peer_of(&fast0);
    for (n, want) in
        [(70, cairn_spec::ErrorReason::NotRegistered), (71, cairn_spec::ErrorReason::BadSignature)]
    {
        let stranger = Worker::start(common::key(n), &info.p2p[0]).await;
        stranger.net.dial(&addr).await.unwrap();
        let signer =
            if want == cairn_spec::ErrorReason::NotRegistered { &stranger.key } else { &validators[0].key };
        let p = cairn_worker::probe::probe(
            signer,
            cairn_spec::Network::Regtest,
            coordinator,
            class.id(),
            fast0,
            b"x".to_vec(),
        );
        let mut r = None;
        for _ in 0..50 {
            match stranger
                .net
                .request(&peer, RequestBody::Probe(Box::new(p.clone())), Duration::from_secs(5))
                .await
            {
                Ok(a) => {
                    r = Some(a);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let r = r.expect("the worker answers");
        assert!(matches!(&r, ResponseBody::Error { reason, .. } if *reason == want), "{r:?}");
        stranger.net.shutdown().await;
    }

    // A validator flooding the slow worker with probes holds one probe there at a time: the
    // rest are refused `busy`, and another validator's probes are still answered in time.
    let (_, slow_peer) = peer_of(&slow);
    let flood: Vec<_> = (0..16)
        .map(|i| {
            let (net, key) = (validators[2].net.clone(), validators[2].key.clone());
            let input = format!("flood {i}").into_bytes();
            let p = cairn_worker::probe::probe(
                &key,
                cairn_spec::Network::Regtest,
                coordinator,
                class.id(),
                slow,
                input,
            );
            tokio::spawn(async move {
                net.request(&slow_peer, RequestBody::Probe(Box::new(p)), Duration::from_secs(10)).await
            })
        })
        .collect();
    // The flood lands first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (mut during, mut refused) = (Vec::new(), 0);
    while during.len() < 3 {
        let input = format!("during the flood {}", during.len()).into_bytes();
        let own = input.to_ascii_uppercase();
        let p = cairn_worker::probe::probe(
            &validators[0].key,
            cairn_spec::Network::Regtest,
            coordinator,
            class.id(),
            slow,
            input,
        );
        match cairn_worker::probe::time(&validators[0].net, &slow_peer, p, &own, &class.rule, slow_ms).await {
            Some(t) => during.push(t),
            None => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(20)).await
            }
        }
    }
    let mut busy = 0;
    for f in flood {
        if let Ok(ResponseBody::Error { reason: cairn_spec::ErrorReason::Busy, .. }) = f.await.unwrap() {
            busy += 1;
        }
    }
    eprintln!("during a flood of 16 probes ({busy} refused busy), another validator timed {during:?}");
    assert!(busy >= 8, "a flooding validator holds one probe at a time: {busy} of 16 refused");
    // Two slots: the flood holds one, the other validator always finds the other free.
    assert_eq!(refused, 0, "the other validator was refused busy {refused} times");
    assert!(during.iter().all(|t| matches!(t, Timing::Answered(ms) if *ms < slow_ms)), "{during:?}");

    // Sheets: each honest validator scores by its timings (SPEC.md §13.7); the colluder puts
    // the slow worker at the top and halves the others.
    let sheets: Vec<Vec<(PubKey, u32)>> = timings
        .iter()
        .enumerate()
        .map(|(i, t)| {
            scored
                .iter()
                .map(|k| {
                    let s = latency_score(&terms, &t[k]);
                    (
                        *k,
                        if i == 2 {
                            if *k == slow {
                                1_000_000
                            } else {
                                s / 2
                            }
                        } else {
                            s
                        },
                    )
                })
                .collect()
        })
        .collect();
    let reveal_of = |v: &Worker, scores: &[(PubKey, u32)]| cairn_spec::ScoreReveal {
        network: cairn_spec::Network::Regtest,
        coordinator,
        class: class.id(),
        epoch: 0,
        validator: v.public(),
        scores: scores.to_vec(),
        salt: cairn_spec::content_hash(v.public().as_bytes()).0,
    };
    for (v, s) in validators.iter().zip(&sheets) {
        let r = reveal_of(v, s);
        let commit = cairn_spec::ScoreCommit {
            network: r.network,
            coordinator,
            class: class.id(),
            epoch: 0,
            validator: v.public(),
            commitment: cairn_spec::scores::score_commitment_value(
                r.network,
                &coordinator,
                &r.class,
                0,
                &r.validator,
                &r.scores,
                &r.salt,
            ),
        };
        assert_eq!(
            v.req(RequestBody::ScoreCommit(Box::new(Signed::sign(commit, &v.key, &[2; 32])))).await,
            ResponseBody::Ack
        );
    }
    close(1);
    for (v, s) in validators.iter().zip(&sheets) {
        let r = RequestBody::ScoreReveal(Box::new(Signed::sign(reveal_of(v, s), &v.key, &[2; 32])));
        assert_eq!(v.req(r).await, ResponseBody::Ack);
    }
    assert_eq!(http(api, "POST", "/v1/epochs/close", Some(&token), None).1["closed"], 2);
    wait_for("anchor broadcast", &|| {
        http(api, "GET", "/v1/epochs/2", None, None).1["anchor"]["status"] == "pending"
    });
    call("generatetoaddress", json!([3, miner]));
    wait_for("confirmation", &|| {
        http(api, "GET", "/v1/epochs/2", None, None).1["anchor"]["status"] == "confirmed"
    });
    let v = http(api, "GET", "/v1/epochs/2/rounds", None, None).1;
    let round =
        ScoredRound::from_bytes(&hex::decode(v["rounds"][0]["encoding"].as_str().unwrap()).unwrap()).unwrap();
    round.check().unwrap();
    let w = |k: &PubKey| round.workers.iter().find(|w| w.worker == *k).unwrap();
    let per_unit = |k: &PubKey| w(k).share_sats as f64 / w(k).units as f64;
    eprintln!(
        "scores: fast {} and {}, slow {}; pay per unit: fast {:.0} and {:.0}, slow {:.0}",
        w(&fast0).score,
        w(&fast1).score,
        w(&slow).score,
        per_unit(&fast0),
        per_unit(&fast1),
        per_unit(&slow)
    );
    assert!(round.workers.iter().all(|x| x.worker != wrong), "the wrong worker is not in the round");
    assert!(w(&slow).score < w(&fast0).score && w(&slow).score < w(&fast1).score, "{round:?}");
    assert!(per_unit(&slow) < per_unit(&fast0) && per_unit(&slow) < per_unit(&fast1));
    // The colluder's inflation is clipped to the honest range, and it earns least.
    let honest = |k: &PubKey| {
        (sheets[0].iter().find(|s| s.0 == *k).unwrap().1, sheets[1].iter().find(|s| s.0 == *k).unwrap().1)
    };
    let (a, b) = honest(&slow);
    assert!((a.min(b)..=a.max(b)).contains(&w(&slow).score), "clipped: {} not in {a}..{b}", w(&slow).score);
    let vshare = |v: &Worker| round.sheets.iter().find(|s| s.validator == v.public()).unwrap().share_sats;
    assert!(vshare(&validators[2]) < vshare(&validators[0]).min(vshare(&validators[1])));
    eprintln!(
        "validators' shares: honest {} and {}, colluder {}",
        vshare(&validators[0]),
        vshare(&validators[1]),
        vshare(&validators[2])
    );

    // `cairn audit epoch 2` against Bitcoin Core recomputes the round.
    let e: Vec<String> = vec![
        "audit".into(),
        "epoch".into(),
        "2".into(),
        "--api".into(),
        url.clone(),
        "--json".into(),
        "--rpc-url".into(),
        btc.rpc_url(),
        "--rpc-cookie".into(),
        btc.cookie_path().display().to_string(),
    ];
    let (code, out) = cairn(&e.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let checks = v["audit"]["epochs"][0]["report"]["checks"].as_array().unwrap().clone();
    let scores = checks.iter().find(|c| c["name"] == "scores").unwrap();
    assert_eq!(scores["outcome"], "pass", "{scores}");
    eprintln!("cairn audit epoch 2: {}", scores["detail"]);

    for v in &validators {
        v.net.shutdown().await;
    }
    for (stop, h) in agents {
        let _ = stop.send(());
        let _ = h.await;
    }
    stop_tx.send(()).unwrap();
    handle.await.unwrap();
    drop(btc);
}
