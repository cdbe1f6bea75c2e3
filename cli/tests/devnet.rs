//! `cairn devnet` for a bounded time, on the embedded chain and on a real regtest
//! `bitcoind` (`cairn_testkit::bitcoind`: fails under `CI=true` when none is found): tasks are accepted, at least two epochs are anchored in one chain of
//! spends, a worker is paid in a confirmed Bitcoin transaction, and receipts audit ✓ online
//! (against the devnet's Bitcoin) and offline (the bundle written at shutdown).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use std::time::{Duration, Instant};

use cairn_cli::audit::{self as audit_cli, BitcoinArgs, ChainArgs, ReceiptAudit};
use cairn_cli::devnet::{ChainChoice, DevnetOptions};
use serde_json::Value;

fn get(api: &str, path: &str) -> Value {
    cairn_audit::source::ApiSource::new(api).get(path).unwrap_or(Value::Null)
}

async fn run_devnet(chain: ChainChoice, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let opts = DevnetOptions {
        data_dir: Some(dir.path().join("devnet")),
        keep: true,
        workers: 3,
        block_interval: Duration::from_millis(700),
        epoch_interval: Duration::from_secs(3),
        task_interval: Duration::from_millis(300),
        api_port: 0,
        chain,
        embeddings: false,
        ..Default::default()
    };
    let (started, stop_tx, run) = common::start_devnet(opts).await;
    assert_eq!(started.embedded, label == "embedded");
    let api = started.api.clone();
    // The node knows, and says, what its Bitcoin is.
    let want = if label == "embedded" { "embedded_regtest" } else { "bitcoin_core" };
    let a = api.clone();
    cairn_testkit::wait_for_async("the node to reach its Bitcoin", Duration::from_secs(60), || {
        get(&a, "/v1/health")["bitcoin_backend"] == want
    })
    .await;

    // Run until tasks are decided, two epochs are anchored and a payout is confirmed.
    let t0 = Instant::now();
    let (mut stats, mut anchors);
    loop {
        let (a, s, p) = (api.clone(), api.clone(), api.clone());
        let payouts;
        (stats, anchors, payouts) = tokio::task::spawn_blocking(move || {
            (get(&s, "/v1/stats"), get(&a, "/v1/anchors"), get(&p, "/v1/payouts"))
        })
        .await
        .unwrap();
        let paid_out =
            payouts["payouts"].as_array().is_some_and(|l| l.iter().any(|p| p["status"]["status"] == "paid"));
        let confirmed = anchors["anchors"]
            .as_array()
            .map(|l| l.iter().filter(|a| a["status"] == "confirmed").count())
            .unwrap_or(0);
        if stats["tasks"]["decided"].as_u64().unwrap_or(0) >= 5 && confirmed >= 2 && paid_out {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "{label}: not there in 240 s: stats {stats} anchors {anchors}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("{label}: reached in {:.0?}: {stats}", t0.elapsed());

    let bitcoin = BitcoinArgs {
        rpc_url: Some(started.rpc_url.clone()),
        rpc_cookie: Some(started.rpc_cookie.clone()),
        ..Default::default()
    };
    let (api2, btc2) = (api.clone(), bitcoin.clone());
    let embedded = label == "embedded";
    let payouts = tokio::task::spawn_blocking(move || {
        // The whole chain: every epoch re-verified, the anchors walked as one chain of spends
        // from the genesis anchor, each committing a header of that chain.
        let args = ChainArgs {
            api: Some(api2.clone()),
            scope: cairn_audit::chain::Scope { from: 0, to: None, genesis: None },
            ..Default::default()
        };
        let out = audit_cli::audit_epochs(&args, &btc2, &mut |_, _| {}).unwrap();
        assert!(out.ok, "chain audit failed:\n{}", out.output);
        // A receipt of the first anchored epoch audits ✓ against the devnet's Bitcoin.
        let page = get(&api2, "/v1/epochs/0/receipts?limit=1");
        let id = page["ids"][0].as_str().expect("epoch 0 has a receipt").to_owned();
        let audit = ReceiptAudit { target: id, api: Some(api2.clone()), min_depth: 1, ..Default::default() };
        let out = audit_cli::audit_receipt(&audit, &btc2).unwrap();
        assert!(out.ok, "receipt audit failed:\n{}", out.output);
        // The verdict says what it was checked against.
        let against = if embedded {
            "verified against the embedded regtest chain (NOT Bitcoin Core)"
        } else {
            "verified against Bitcoin Core"
        };
        assert!(out.output.contains(against), "{}", out.output);
        get(&api2, "/v1/payouts")
    })
    .await
    .unwrap();
    // A worker was paid in a confirmed Bitcoin transaction, to its own address.
    let paid: Vec<Value> = payouts["payouts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"]["status"] == "paid")
        .cloned()
        .collect();
    assert!(!paid.is_empty(), "{payouts}");
    let addresses: Vec<String> = started.workers.iter().map(|(_, a)| a.clone()).collect();
    assert!(paid.iter().all(|p| addresses.iter().any(|a| p["address"] == a.as_str())), "{payouts}");
    let first = paid[0].clone();
    tokio::task::spawn_blocking(move || {
        use cairn_anchor::ChainBackend as _;
        let rpc = cairn_anchor::BitcoinCoreRpc::new(cairn_anchor::RpcConfig::new(
            bitcoin.rpc_url.clone().unwrap(),
            cairn_anchor::RpcAuth::Cookie(bitcoin.rpc_cookie.clone().unwrap()),
        ))
        .unwrap();
        let txid: bitcoin::Txid = first["status"]["txid"].as_str().unwrap().parse().unwrap();
        let height = u32::try_from(first["status"]["height"].as_u64().unwrap()).unwrap();
        let block = rpc.block_hash(height).unwrap().unwrap();
        let tx = rpc.transaction(&txid, Some(&block)).unwrap().expect("payout tx in its block");
        let script = first["address"]
            .as_str()
            .unwrap()
            .parse::<bitcoin::Address<bitcoin::address::NetworkUnchecked>>()
            .unwrap()
            .assume_checked()
            .script_pubkey();
        let amount = first["amount"].as_u64().unwrap();
        assert!(tx.output.iter().any(|o| o.script_pubkey == script && o.value.to_sat() == amount), "{tx:?}");
    })
    .await
    .unwrap();

    stop_tx.send(()).unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(90), run).await.unwrap().unwrap().unwrap();
    let sample = summary.sample.expect("a receipt was anchored");
    assert!(summary.kept && sample.bundle.exists() && sample.stamped.exists());
    // Offline: the bundle alone (headers' proof-of-work, no node).
    let out = audit_cli::audit_receipt(
        &ReceiptAudit {
            target: sample.bundle.display().to_string(),
            network: Some(cairn_spec::Network::Regtest),
            min_depth: 1,
            offline: true,
            ..Default::default()
        },
        &BitcoinArgs::default(),
    )
    .unwrap();
    assert!(out.ok, "offline audit failed:\n{}", out.output);
    eprintln!("{label}: {}", out.output.lines().last().unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn devnet_on_the_embedded_chain() {
    run_devnet(ChainChoice::Embedded, "embedded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn devnet_on_bitcoind() {
    let Some(exe) = cairn_testkit::bitcoind() else { return };
    run_devnet(ChainChoice::Bitcoind(exe), "bitcoind").await;
}

/// The devnet's quality subnet (issue 28): MiniLM workers and two demo personas of lower
/// quality embed labelled sentences that 3 bonded validators submit as ordinary tasks; each
/// validator scores the workers on the labels it alone holds, commits, reveals; the round
/// pays by measured quality, and `cairn audit epoch` against the devnet's chain recomputes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_quality_subnet_pays_by_measured_quality() {
    if let Err(e) = cairn_worker::models::fetch_minilm(&cairn_worker::models::default_models_dir(), None) {
        return cairn_testkit::skip(&format!("all-MiniLM-L6-v2 unavailable ({e})"));
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = DevnetOptions {
        data_dir: Some(dir.path().join("devnet")),
        workers: 2,
        block_interval: Duration::from_millis(700),
        epoch_interval: Duration::from_secs(4),
        task_interval: Duration::from_millis(400),
        api_port: 0,
        chain: ChainChoice::Embedded,
        embeddings: true,
        validators: 3,
        ..Default::default()
    };
    let (started, stop_tx, run) = common::start_devnet(opts).await;
    assert_eq!(started.quality_off, None);
    assert_eq!((started.personas.len(), started.validators.len()), (2, 3));
    let api = started.api.clone();
    // Who is who, by payout address: the MiniLM workers, then the two personas.
    let address = |d: &std::path::Path| {
        let key = cairn_coordinator::keyfile::load_or_create(&d.join("payout.key")).unwrap();
        cairn_anchor::anchor_address(&key.public(), cairn_spec::Network::Regtest).to_string()
    };
    let minilm: Vec<String> = started.workers.iter().map(|(_, a)| a.clone()).collect();
    let (first_words, one_vector) = (address(&started.personas[0].0), address(&started.personas[1].0));
    // Wait for a round in which at least two validators scored all four workers.
    let t0 = Instant::now();
    let (height, round) = loop {
        assert!(t0.elapsed() < Duration::from_secs(240), "no full round in 4 minutes");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let stats = get(&api, "/v1/stats");
        let epochs = stats["epochs"].as_u64().unwrap_or(0) as u32;
        let found = (2..epochs).rev().find_map(|h| {
            let r = get(&api, &format!("/v1/epochs/{h}/rounds"));
            let round = r["rounds"].as_array()?.first()?["round"].clone();
            // Every validator has seen enough of every worker to score it.
            let full = round["sheets"]
                .as_array()?
                .iter()
                .filter(|s| s["scores"].as_array().map(Vec::len) == Some(4));
            (round["workers"].as_array()?.len() == 4 && full.count() >= 2).then_some((h, round))
        });
        if let Some(f) = found {
            break f;
        }
    };
    let workers = get(&api, "/v1/workers");
    let key_of = |addr: &str| {
        workers["workers"].as_array().unwrap().iter().find(|w| w["payout_address"] == addr).unwrap()["key"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let score_of = |addr: &str| {
        let k = key_of(addr);
        round["workers"].as_array().unwrap().iter().find(|w| w["worker"] == k.as_str()).unwrap()["score"]
            .as_u64()
            .unwrap()
    };
    let good: Vec<u64> = minilm.iter().map(|a| score_of(a)).collect();
    let (weak, lazy) = (score_of(&first_words), score_of(&one_vector));
    eprintln!(
        "round credited in epoch {height}: MiniLM {good:?}, first two words {weak}, one vector {lazy} (ppm)"
    );
    assert!(good.iter().all(|g| *g > weak) && weak > lazy, "scores follow quality: {round}");
    // At chance (the baseline) the lazy worker earns nothing.
    let share_of = |addr: &str| {
        let k = key_of(addr);
        round["workers"].as_array().unwrap().iter().find(|w| w["worker"] == k.as_str()).unwrap()["share_sats"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(share_of(&one_vector), 0, "{round}");
    // Pay is per unit: a worker the draws gave more tasks earns more in all, so quality shows
    // in the pay per unit (one run had a MiniLM worker with 1 unit and the weaker one with 5).
    let per_unit = |addr: &str| {
        let k = key_of(addr);
        let units = round["workers"].as_array().unwrap().iter().find(|w| w["worker"] == k.as_str()).unwrap()
            ["units"]
            .as_u64()
            .unwrap();
        share_of(addr) as f64 / units as f64
    };
    assert!(minilm.iter().all(|a| per_unit(a) > per_unit(&first_words)), "{round}");

    // The auditor recomputes the round from what the chain serves.
    let bitcoin = BitcoinArgs {
        rpc_url: Some(started.rpc_url.clone()),
        rpc_cookie: Some(started.rpc_cookie.clone()),
        ..Default::default()
    };
    let api2 = api.clone();
    let out = tokio::task::spawn_blocking(move || {
        let args = ChainArgs {
            api: Some(api2),
            scope: cairn_audit::chain::Scope { from: height, to: Some(height), genesis: None },
            json: true,
            ..Default::default()
        };
        audit_cli::audit_epochs(&args, &bitcoin, &mut |_, _| {}).unwrap()
    })
    .await
    .unwrap();
    assert!(out.ok, "{}", out.output);
    let v: Value = serde_json::from_str(&out.output).unwrap();
    let scores = v["audit"]["epochs"][0]["report"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "scores")
        .cloned()
        .unwrap();
    eprintln!("cairn audit epoch {height}: {}", scores["detail"]);
    assert!(scores["detail"].as_str().unwrap().contains("stakes match Bitcoin"), "{scores}");
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(60), run).await;
}
