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
    /// Create a protocol key file (mode 0600) and print its public key.
    Keygen {
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key of a key file.
    Pubkey {
        /// The key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Run a coordinator node (config: defaults < TOML file < CAIRN_* env < flags).
    Coordinator(Box<CoordinatorArgs>),
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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One clear line (with its causes), no backtrace: this is for operators.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).context("invalid --log filter")?)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Keygen { out } => {
            let key = keyfile::create(&out)?;
            tracing::info!(path = %out.display(), "created key file");
            println!("{}", key.public());
        }
        Command::Pubkey { key } => println!("{}", keyfile::load(&key)?.public()),
        Command::Coordinator(args) => {
            let cfg = resolve_config(&args)?;
            if args.print_config {
                println!("{}", serde_json::to_string_pretty(&cfg)?);
                return Ok(());
            }
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(node::run(cfg, shutdown_signal(), None))?;
        }
        Command::Decode { kind, input } => {
            let bytes = read_input(&input)?;
            let v = inspect::decode(&kind, &bytes)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}
