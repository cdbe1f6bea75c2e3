//! The dashboard in a real headless Chromium against a running devnet (embedded chain): the
//! numbers match the API, a receipt is verified step by step by clicking through, the proof
//! downloads answer, and screenshots are saved under the test's output directory. Driven by
//! `tests/browser/dashboard.cjs` (playwright-core). `.ci/run` installs Chromium and
//! playwright-core; without them this test fails under `CI=true` and
//! otherwise skips visibly (`cairn_testkit::skip`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr, missing_docs)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_cli::devnet::{ChainChoice, DevnetOptions};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_in_headless_chromium() {
    let Some((chrome, pw)) = common::browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let opts = DevnetOptions {
        data_dir: Some(dir.path().join("devnet")),
        workers: 3,
        block_interval: Duration::from_millis(700),
        epoch_interval: Duration::from_secs(3),
        task_interval: Duration::from_millis(400),
        api_port: 0,
        chain: ChainChoice::Embedded,
        embeddings: false,
        ..Default::default()
    };
    let (started, stop_tx, run) = common::start_devnet(opts).await;
    let api = started.api.clone();
    // Wait for something worth showing: receipts in an anchored epoch, and a payout.
    let t0 = Instant::now();
    loop {
        let a = api.clone();
        let stats: Value = tokio::task::spawn_blocking(move || {
            cairn_audit::source::ApiSource::new(&a).get("/v1/stats").unwrap_or(Value::Null)
        })
        .await
        .unwrap();
        if stats["anchors"]["confirmed"].as_u64().unwrap_or(0) >= 2
            && stats["ledger"]["paid"].as_u64().unwrap_or(0) > 0
        {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(240), "devnet not ready: {stats}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let (api2, out2) = (api.clone(), out.clone());
    let result = tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(|| common::run_browser_script("dashboard.cjs", &api2, &out2, &chrome, &pw))
    })
    .await
    .unwrap();
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(60), run).await;
    let stdout = result.unwrap_or_else(|e| std::panic::resume_unwind(e));
    eprintln!("{stdout}");
    for f in ["dashboard.png", "receipt.png"] {
        assert!(std::fs::metadata(out.join(f)).map(|m| m.len() > 10_000).unwrap_or(false), "{f} not written");
    }
}
