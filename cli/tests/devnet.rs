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
