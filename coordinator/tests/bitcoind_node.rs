//! The coordinator against a real regtest Bitcoin Core (found via `BITCOIND_EXE`,
//! `PATH`, then the cache of `scripts/bitcoin-core.sh`; `cairn_testkit`'s skip policy when absent): workers finish a task over libp2p, the epoch
//! is anchored in an OP_RETURN transaction, confirmations settle it, the worker's reward
//! becomes claimable and is paid in the next anchor transaction, recorded with its txid.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr,
    missing_docs
)]

use cairn_testkit::node as common;

use std::time::Duration;

use cairn_anchor::regtest::RegtestNode;
use cairn_anchor::{AnchorStore, Changeset};
use cairn_coordinator::anchor_store::KvAnchorStore;
use cairn_coordinator::store::RocksStore;
use cairn_spec::{ErrorReason, PubKey, ResponseBody};
use common::{http, Worker};

use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epochs_are_anchored_settled_and_paid_out() {
    let Some(exe) = cairn_testkit::bitcoind() else { return };
    let dir = tempfile::tempdir().unwrap();
    let btc = RegtestNode::start(&exe, &dir.path().join("bitcoind")).unwrap();
    let rpc = btc.rpc().unwrap();
    let call = |m: &str, p: Value| rpc.raw_call(m, p).unwrap();
    let miner = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
    let data = dir.path().join("data");
    let mut cfg = common::rpc_config(&data, &btc.rpc_url(), &btc.cookie_path());
    cfg.lifecycle.payout_threshold_sats = 1000;
    cfg.lifecycle.bond_min_sats = 100_000;
    let (info, stop_tx, handle) = common::start_node(&cfg).await;
    let api = info.api;
    let token = std::fs::read_to_string(data.join("operator.token")).unwrap().trim().to_string();
    let coordinator = PubKey::from_hex(&info.coordinator).unwrap();
    // Fund the anchor address with a coinbase, then let it mature.
    call("generatetoaddress", json!([1, info.anchor_address.clone().unwrap()]));
    call("generatetoaddress", json!([100, miner]));

    let w0 = Worker::start(common::key(1), &info.p2p[0]).await;
    let w1 = Worker::start(common::key(2), &info.p2p[0]).await;
    assert_eq!(w0.register(coordinator, 4).await, ResponseBody::Ack);
    assert_eq!(w1.register(coordinator, 4).await, ResponseBody::Ack);
    // A third worker joins by a bond instead of proof-of-work: a confirmed P2TR output whose
    // output key signs the bond message.
    let bond_key = common::key(9);
    let bond_addr = bitcoin::Address::p2tr_tweaked(
        bitcoin::key::TweakedPublicKey::dangerous_assume_tweaked(bond_key.public().x_only()),
        bitcoin::Network::Regtest,
    );
    let block = call("generatetoaddress", json!([1, bond_addr.to_string()]));
    let coinbase = call("getblock", json!([block[0]]))["tx"][0].as_str().unwrap().to_string();
    let txid: bitcoin::Txid = coinbase.parse().unwrap();
    let w2 = Worker::start(common::key(3), &info.p2p[0]).await;
    let bonded = |vout: u32, signer: &cairn_spec::SigningKey| {
        use bitcoin::hashes::Hash as _;
        let txid = cairn_spec::Hash32(txid.to_byte_array());
        let mut reg = cairn_spec::Registration {
            network: cairn_spec::Network::Regtest,
            coordinator,
            worker: w2.public(),
            payout_address: common::ADDR.into(),
            created_at: common::now(),
            pow_nonce: 0,
            bond: Some(Box::new(cairn_spec::Bond {
                txid,
                vout,
                key: bond_key.public(),
                signature: signer
                    .sign(&cairn_spec::work::bond_message(&coordinator, &w2.public(), &txid, vout), &[3; 32]),
            })),
        };
        // Make sure the work alone would not admit it (the node asks for 4 bits).
        while reg.work_bits() >= 4 {
            reg.pow_nonce += 1;
        }
        cairn_spec::RequestBody::Register(cairn_spec::Signed::sign(reg, &w2.key, &[1; 32]))
    };
    // An output that does not exist, or a signature by another key: refused.
    assert!(matches!(
        w2.req(bonded(7, &bond_key)).await,
        ResponseBody::Error { reason: ErrorReason::Malformed, .. }
    ));
    assert!(matches!(
        w2.req(bonded(0, &w2.key)).await,
        ResponseBody::Error { reason: ErrorReason::Malformed, .. }
    ));
    assert_eq!(w2.req(bonded(0, &bond_key)).await, ResponseBody::Ack);
    assert_eq!(http(api, "GET", &format!("/v1/workers/{}", w2.public()), None, None).1["status"], "active");
    // A bond counts only while Bitcoin shows it unspent: with the block holding it invalidated
    // (a reorg), the next re-check ends the worker's admission (not a ban) and says why.
    call("invalidateblock", json!([block[0]]));
    call("generatetoaddress", json!([1, miner]));
    let mut seen = Value::Null;
    for _ in 0..100 {
        seen = http(api, "GET", &format!("/v1/workers/{}", w2.public()), None, None).1;
        if seen["status"] == "lapsed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen["status"], "lapsed", "{seen}");
    assert!(seen["bond_lost"]["reason"].as_str().unwrap().contains("no longer confirmed"), "{seen}");
    assert!(seen["ban"].is_null());
    assert!(matches!(
        w2.claim(cairn_spec::Hash32([1; 32])).await,
        ResponseBody::Error { reason: ErrorReason::Lapsed, .. }
    ));
    w2.net.shutdown().await;

    let run_task = |n: u32| {
        let (w0, w1, token) = (&w0, &w1, token.clone());
        async move {
            let body = format!(
                r#"{{"class":"echo","input_text":"t{n}","units":10,"budget_sats":1000,"nonce":{n}}}"#
            );
            let (s, v) = http(api, "POST", "/v1/tasks", Some(&token), Some(&body));
            assert_eq!(s, 201);
            let id = cairn_spec::Hash32::from_hex(v["id"].as_str().unwrap()).unwrap();
            let t = common::run_task(api, &[w0, w1], id, &|_| b"ok".to_vec()).await;
            assert_eq!(t["phase"], "decided", "{t}");
            id
        }
    };
    let task1 = run_task(1).await;
    assert_eq!(http(api, "POST", "/v1/epochs/close", Some(&token), None).1["closed"], 0);

    let wait_for =
        |what: &str, f: &dyn Fn() -> bool| cairn_testkit::wait_for(what, Duration::from_secs(20), f);
    wait_for("anchor broadcast", &|| {
        http(api, "GET", "/v1/epochs/0", None, None).1["anchor"]["status"] == "pending"
    });
    let txid =
        http(api, "GET", "/v1/anchors", None, None).1["anchors"][0]["txid"].as_str().unwrap().to_string();
    assert!(call("getrawmempool", json!([])).as_array().unwrap().iter().any(|t| t == &json!(txid)));
    call("generatetoaddress", json!([1, miner]));
    wait_for("confirmation", &|| {
        http(api, "GET", "/v1/epochs/0", None, None).1["anchor"]["status"] == "confirmed"
    });
    // The worker checks its own receipt: the coordinator's signatures, inclusion in the signed
    // epoch, and the anchor in Bitcoin itself, with the auditors' verifier.
    let (_, t) = http(api, "GET", &format!("/v1/tasks/{task1}"), None, None);
    let slot = t["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["worker"] == json!(w0.public()))
        .unwrap()
        .clone();
    let receipt = cairn_spec::Hash32::from_hex(slot["receipt"].as_str().unwrap()).unwrap();
    let url = format!("http://{api}");
    let me = w0.public();
    // The worker's check of one receipt: as `who`, `depth` confirmations, pinned or not.
    let verify = |who: &cairn_spec::PubKey, depth: u32, pin: Option<bitcoin::OutPoint>| {
        cairn_worker::status::verify_one(
            &url,
            who,
            &coordinator,
            &task1,
            &receipt,
            cairn_spec::Network::Regtest,
            Some((&rpc, depth)),
            pin,
        )
    };
    let (state, detail) = verify(&me, 1, None);
    assert_eq!(state, cairn_worker::status::ReceiptState::Anchored, "{detail}");
    // A worker that pinned this coordinator's chain (its genesis header's genesis output)
    // finds the receipt on it; one that pinned another chain of the same coordinator (a
    // second wallet's) refuses it.
    let enc = http(api, "GET", "/v1/epochs/0", None, None).1["encoding"].as_str().unwrap().to_owned();
    let h0 = <cairn_spec::SignedEpochHeader as cairn_spec::Decode>::from_bytes(&hex::decode(enc).unwrap())
        .unwrap();
    let genesis = h0.body.anchor.genesis().expect("a bound chain");
    assert_eq!(verify(&me, 1, Some(genesis)).0, cairn_worker::status::ReceiptState::Anchored);
    let (state, detail) = verify(&me, 1, Some(bitcoin::OutPoint { vout: genesis.vout + 1, ..genesis }));
    assert_eq!(state, cairn_worker::status::ReceiptState::Failed, "{detail}");
    assert!(detail.starts_with("anchor_chain") && detail.contains("expects"), "{detail}");
    // Too few confirmations, or someone else's receipt: refused with the reason.
    let (state, detail) = verify(&me, 6, None);
    assert_eq!(state, cairn_worker::status::ReceiptState::Failed, "{detail}");
    assert!(detail.contains("depth"), "{detail}");
    let other = w1.public();
    let (state, _) = verify(&other, 1, None);
    assert_eq!(state, cairn_worker::status::ReceiptState::Failed);
    // Rewards unlock once the anchor is final (k = 2) and the challenge window (w = 2) has
    // run after that: at k + w = 4 confirmations, not at 3.
    let worker = w0.public().to_hex();
    call("generatetoaddress", json!([2, miner]));
    let tip = call("getblockcount", json!([])).as_u64().unwrap();
    wait_for("the node sees 3 confirmations", &|| {
        http(api, "GET", "/v1/anchors", None, None).1["tip_height"].as_u64() == Some(tip)
    });
    std::thread::sleep(Duration::from_secs(2));
    let l = http(api, "GET", &format!("/v1/ledger/{worker}"), None, None).1;
    assert!(l["locked"].as_u64().unwrap() > 0 && l["paid"] == 0, "unlocked at 3 confirmations: {l}");
    call("generatetoaddress", json!([1, miner]));
    wait_for("settlement", &|| {
        let l = http(api, "GET", &format!("/v1/ledger/{worker}"), None, None).1;
        l["locked"] == 0 && l["paid"].as_u64().unwrap_or(0) > 0
    });
    // The lifecycle queued the payouts and the anchor recorded them in its own batch. Simulate
    // a crash between the two batches: stop, drop the payouts from the anchor's queue, restart.
    // The node must hand them over again at start.
    stop_tx.send(()).unwrap();
    handle.await.unwrap();
    {
        let store = std::sync::Arc::new(RocksStore::open(&data.join("db")).unwrap());
        let mut anchors = KvAnchorStore::new(store);
        let (mut head, _) = anchors.load().unwrap().unwrap();
        assert!(!head.payout_queue.is_empty());
        head.payout_queue.clear();
        anchors.commit(&Changeset { head, records: Vec::new() }).unwrap();
    }
    let (info2, stop_tx, handle) = common::start_node(&cfg).await;
    assert_eq!(info2.api, api);
    // Payouts ride in the next anchor: a new epoch (the workers reconnect by themselves).
    run_task(2).await;
    assert_eq!(http(api, "POST", "/v1/epochs/close", Some(&token), None).1["closed"], 1);
    wait_for("second anchor", &|| {
        http(api, "GET", "/v1/epochs/1", None, None).1["anchor"]["status"] == "pending"
    });
    // Paid means final: not at one confirmation, at finality_depth (2).
    call("generatetoaddress", json!([1, miner]));
    wait_for("the payouts' anchor confirmed", &|| {
        http(api, "GET", "/v1/epochs/1", None, None).1["anchor"]["status"] == "confirmed"
    });
    std::thread::sleep(Duration::from_secs(2));
    let p = http(api, "GET", "/v1/payouts", None, None).1;
    assert!(p["payouts"].as_array().unwrap().iter().all(|p| p["status"]["status"] == "queued"), "{p}");
    call("generatetoaddress", json!([1, miner]));
    wait_for("payout confirmation", &|| {
        let p = http(api, "GET", "/v1/payouts", None, None).1;
        let list = p["payouts"].as_array().unwrap().clone();
        !list.is_empty() && list.iter().all(|p| p["status"]["status"] == "paid")
    });
    let p = http(api, "GET", "/v1/payouts", None, None).1;
    let paid = &p["payouts"][0];
    let block = call("getblockhash", json!([paid["status"]["height"]]));
    let tx = call("getrawtransaction", json!([paid["status"]["txid"], true, block]));
    let to_worker = tx["vout"].as_array().unwrap().iter().any(|o| {
        o["scriptPubKey"]["address"] == json!(common::ADDR)
            && (o["value"].as_f64().unwrap() * 1e8).round() as u64 == paid["amount"].as_u64().unwrap()
    });
    assert!(to_worker, "payout output not found in {tx}");
    assert!(tx["vout"].as_array().unwrap().iter().any(|o| o["scriptPubKey"]["type"] == "nulldata"));

    w0.net.shutdown().await;
    w1.net.shutdown().await;
    stop_tx.send(()).unwrap();
    handle.await.unwrap();
    drop(btc);
}

/// The `cairn_<name>` sample of a metrics text.
fn gauge(text: &str, name: &str) -> Option<i64> {
    text.lines().find_map(|l| l.strip_prefix(&format!("cairn_{name} ")).and_then(|v| v.trim().parse().ok()))
}

/// An operator's first start on a chain with history, and what they watch and keep: the node
/// reads its funds from Core's UTXO set (no scan of 2,000 blocks), `/v1/ready` and the
/// metrics listener say why it does not anchor (unfunded, then stuck) until it does, the
/// exported descriptor is the anchor key's as Core reads descriptors, and a backup restored
/// into a new directory continues the same anchor chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_a_long_chain_reports_its_readiness_and_survives_a_backup_and_restore() {
    let Some(exe) = cairn_testkit::bitcoind() else { return };
    let dir = tempfile::tempdir().unwrap();
    let btc = RegtestNode::start(&exe, &dir.path().join("bitcoind")).unwrap();
    let rpc = btc.rpc().unwrap();
    let call = |m: &str, p: Value| rpc.raw_call(m, p).unwrap();
    let miner = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
    call("generatetoaddress", json!([2_000, miner]));
    let data = dir.path().join("data");
    let mut cfg = common::rpc_config(&data, &btc.rpc_url(), &btc.cookie_path());
    cfg.api.metrics_listen = Some("127.0.0.1:0".into());
    cfg.bitcoin.unready_after_blocks = 3;
    let (info, stop_tx, handle) = common::start_node(&cfg).await;
    let (api, metrics) = (info.api, info.metrics.expect("a metrics listener"));
    let token = std::fs::read_to_string(data.join("operator.token")).unwrap().trim().to_string();
    let coordinator = PubKey::from_hex(&info.coordinator).unwrap();
    let w0 = Worker::start(common::key(1), &info.p2p[0]).await;
    let w1 = Worker::start(common::key(2), &info.p2p[0]).await;
    assert_eq!(w0.register(coordinator, 4).await, ResponseBody::Ack);
    assert_eq!(w1.register(coordinator, 4).await, ResponseBody::Ack);
    // Epochs close only with receipts in them: one task before each close.
    let run_task = |api: std::net::SocketAddr, n: u32| {
        let (w0, w1, token) = (&w0, &w1, token.clone());
        async move {
            let body = format!(
                r#"{{"class":"echo","input_text":"t{n}","units":10,"budget_sats":1000,"nonce":{n}}}"#
            );
            let (s, v) = http(api, "POST", "/v1/tasks", Some(&token), Some(&body));
            assert_eq!(s, 201, "{v}");
            let id = cairn_spec::Hash32::from_hex(v["id"].as_str().unwrap()).unwrap();
            let t = common::run_task(api, &[w0, w1], id, &|_| b"ok".to_vec()).await;
            assert_eq!(t["phase"], "decided", "{t}");
        }
    };
    let ready = || http(metrics, "GET", "/v1/ready", None, None);
    let wait_for =
        |what: &str, f: &dyn Fn() -> bool| cairn_testkit::wait_for(what, Duration::from_secs(30), f);
    let problems = || ready().1["problems"].as_array().cloned().unwrap_or_default();
    // Nothing at the anchor address: the chain cannot start, and the node says why.
    wait_for("unfunded", &|| problems().iter().any(|p| p["problem"] == "unfunded"));
    assert_eq!(ready().0, 503);
    let scrape = || http(metrics, "GET", "/metrics", None, None).1.as_str().unwrap().to_owned();
    let m = scrape();
    assert_eq!(gauge(&m, "ready"), Some(0), "{m}");
    assert_eq!(gauge(&m, "anchor_balance_sats"), Some(0), "{m}");
    // The start was read from the tip: the anchor state's next block is near it, not block 0.
    let tip = call("getblockcount", json!([])).as_u64().unwrap() as u32;
    let head = KvAnchorStore::new(std::sync::Arc::new(RocksStore::open_read_only(&data.join("db")).unwrap()))
        .load()
        .unwrap()
        .unwrap()
        .0;
    assert!(head.next_height + 10 > tip, "the node scans from {} on a chain of {tip}", head.next_height);

    // Funded (a coinbase, matured): epoch 0 closes once the genesis output is final, is
    // anchored and confirmed, and the node is ready.
    call("generatetoaddress", json!([1, info.anchor_address.clone().unwrap()]));
    call("generatetoaddress", json!([100, miner]));
    // An epoch closes once its header can be signed (the genesis output final, the previous
    // anchor's beacon block deep enough): ask until it is there.
    let close = |api: std::net::SocketAddr, n: u32| {
        let token = token.clone();
        move || {
            http(api, "POST", "/v1/epochs/close", Some(&token), None);
            http(api, "GET", &format!("/v1/epochs/{n}"), None, None).0 == 200
        }
    };
    run_task(api, 0).await;
    wait_for("epoch 0", &close(api, 0));
    wait_for("anchor broadcast", &|| {
        http(api, "GET", "/v1/epochs/0", None, None).1["anchor"]["status"] == "pending"
    });
    call("generatetoaddress", json!([1, miner]));
    wait_for("the anchor confirmed", &|| gauge(&scrape(), "unanchored_epochs") == Some(0));
    assert_eq!(ready().0, 200);
    let m = scrape();
    assert_eq!(gauge(&m, "ready"), Some(1), "{m}");
    assert!(gauge(&m, "anchor_balance_sats").unwrap() > 0, "{m}");
    assert!(gauge(&m, "anchor_fee_spent_today_sats").unwrap() > 0, "{m}");
    assert!(gauge(&m, "anchor_fee_cap_day_sats").unwrap() > 0, "{m}");

    // Epoch 1's anchor waits while blocks come without it: stuck, then anchored again.
    call("generatetoaddress", json!([2, miner]));
    run_task(api, 1).await;
    wait_for("epoch 1", &close(api, 1));
    wait_for("anchor broadcast", &|| {
        http(api, "GET", "/v1/epochs/1", None, None).1["anchor"]["status"] == "pending"
    });
    for _ in 0..3 {
        call("generateblock", json!([miner, []]));
    }
    wait_for("stuck", &|| problems().iter().any(|p| p["problem"] == "anchor_stuck"));
    let m = scrape();
    assert_eq!(gauge(&m, "unanchored_epochs"), Some(1), "{m}");
    assert!(gauge(&m, "anchor_blocks_waiting").unwrap() >= 3, "{m}");
    // The API's own listener answers the same.
    assert_eq!(http(api, "GET", "/v1/ready", None, None).0, 503);
    call("generatetoaddress", json!([1, miner]));
    wait_for("the anchor confirmed", &|| gauge(&scrape(), "unanchored_epochs") == Some(0));
    assert_eq!(ready().0, 200);
    call("generatetoaddress", json!([2, miner]));
    let first = http(api, "GET", "/v1/anchors", None, None).1["anchors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["status"] == "confirmed" && a["epoch"] == 1)
        .expect("epoch 1 anchored")["txid"]
        .as_str()
        .unwrap()
        .to_owned();

    // The exported descriptor is the anchor key's: Core reads it (checksum, private key),
    // derives the anchor address from it and finds the anchor chain's output with it.
    let anchor_key = cairn_coordinator::keyfile::load(&data.join("anchor.key")).unwrap();
    let private = cairn_anchor::descriptor::private_descriptor(&anchor_key, cairn_spec::Network::Regtest);
    let public = cairn_anchor::descriptor::public_descriptor(&anchor_key.public());
    let info_ = call("getdescriptorinfo", json!([private]));
    assert_eq!(info_["hasprivatekeys"], true, "{info_}");
    assert_eq!(info_["checksum"].as_str(), private.split('#').nth(1), "{info_}");
    assert_eq!(call("getdescriptorinfo", json!([public]))["descriptor"].as_str(), Some(public.as_str()));
    assert_eq!(call("deriveaddresses", json!([private]))[0].as_str(), info.anchor_address.as_deref());
    let scan = call("scantxoutset", json!(["start", [public]]));
    assert!(
        scan["unspents"].as_array().unwrap().iter().any(|u| u["txid"] == json!(first) && u["vout"] == 0),
        "{scan}"
    );

    // Stopped, backed up, restored into a new directory, started there: the next anchor
    // spends the chain output of the one before.
    stop_tx.send(()).unwrap();
    handle.await.unwrap();
    let saved = dir.path().join("backup");
    let manifest = cairn_coordinator::backup::backup(&data, &saved, 1).unwrap();
    assert_eq!(manifest.network, "regtest");
    assert!(manifest.files.iter().any(|f| f == "anchor.key"), "{manifest:?}");
    // A restore never writes into a directory it did not create.
    assert!(matches!(
        cairn_coordinator::backup::restore(&saved, &data),
        Err(cairn_coordinator::backup::BackupError::TargetExists(_))
    ));
    // A backup's marker and manifest must agree.
    let forged = dir.path().join("forged");
    std::fs::create_dir(&forged).unwrap();
    for f in ["cairn-backup.json", "network"] {
        std::fs::copy(saved.join(f), forged.join(f)).unwrap();
    }
    std::fs::write(forged.join("network"), "signet\n").unwrap();
    assert!(matches!(
        cairn_coordinator::backup::restore(&forged, &dir.path().join("never")),
        Err(cairn_coordinator::backup::BackupError::Source { .. })
    ));
    assert!(!dir.path().join("never").exists());
    let restored = dir.path().join("restored");
    cairn_coordinator::backup::restore(&saved, &restored).unwrap();
    // Where the old one listened, so the workers find it again by themselves.
    let cfg2 = cairn_coordinator::config::NodeConfig { data_dir: Some(restored.clone()), ..cfg.clone() };
    let (info2, stop_tx, handle) = common::start_node(&cfg2).await;
    assert_eq!(info2.coordinator, info.coordinator);
    assert_eq!(info2.anchor_address, info.anchor_address);
    let api = info2.api;
    run_task(api, 2).await;
    wait_for("epoch 2", &close(api, 2));
    wait_for("the restored node's anchor", &|| {
        http(api, "GET", "/v1/epochs/2", None, None).1["anchor"]["status"] == "pending"
    });
    let second =
        http(api, "GET", "/v1/anchors", None, None).1["anchors"][0]["txid"].as_str().unwrap().to_owned();
    let tx = call("getrawtransaction", json!([second, true]));
    assert!(
        tx["vin"].as_array().unwrap().iter().any(|i| i["txid"] == json!(first) && i["vout"] == 0),
        "the restored node's anchor spends the chain output: {tx}"
    );
    w0.net.shutdown().await;
    w1.net.shutdown().await;
    stop_tx.send(()).unwrap();
    handle.await.unwrap();
}

/// A node started while Core is still in initial block download (a fresh regtest node is,
/// until its first block) waits and says so, with Core's progress, then starts anchoring.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_waits_for_core_to_finish_syncing_and_says_so() {
    let Some(exe) = cairn_testkit::bitcoind() else { return };
    let dir = tempfile::tempdir().unwrap();
    let btc = RegtestNode::start(&exe, &dir.path().join("bitcoind")).unwrap();
    let rpc = btc.rpc().unwrap();
    assert_eq!(rpc.raw_call("getblockchaininfo", json!([])).unwrap()["initialblockdownload"], true);
    let data = dir.path().join("data");
    let cfg = common::rpc_config(&data, &btc.rpc_url(), &btc.cookie_path());
    let (info, stop_tx, handle) = common::start_node(&cfg).await;
    let problems = || http(info.api, "GET", "/v1/ready", None, None).1["problems"].clone();
    cairn_testkit::wait_for("core_syncing", Duration::from_secs(20), || {
        problems()[0]["problem"] == "core_syncing"
    });
    let p = problems();
    assert_eq!((p[0]["blocks"].as_u64(), p[0]["headers"].as_u64()), (Some(0), Some(0)), "{p}");
    assert_eq!(http(info.api, "GET", "/v1/ready", None, None).0, 503);
    // Nothing was read from the chain yet: no anchor state exists.
    let db = std::sync::Arc::new(RocksStore::open_read_only(&data.join("db")).unwrap());
    assert!(KvAnchorStore::new(db).load().unwrap().is_none());
    rpc.raw_call("generatetoaddress", json!([1, "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"])).unwrap();
    cairn_testkit::wait_for("the sync to end", Duration::from_secs(20), || {
        problems()[0]["problem"] == "unfunded"
    });
    stop_tx.send(()).unwrap();
    handle.await.unwrap();
}
