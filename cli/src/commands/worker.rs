//! `cairn worker` and `cairn worker status`: the worker's layered config, the registration
//! progress bar, and the status report printed as JSON.
//!
//! Owns the wiring to `cairn_worker`. Must never judge a receipt itself: `cairn_worker::status`
//! does.

use anyhow::{bail, Context, Result};
use cairn_p2p::keyfile;

use super::shutdown_signal;
use crate::args::{WorkerArgs, WorkerCommand};

fn resolve_worker_config(a: &WorkerArgs) -> Result<cairn_worker::config::WorkerConfig> {
    let overrides = cairn_worker::config::Overrides {
        network: a.network.clone(),
        data_dir: a.data_dir.clone(),
        payout_address: a.payout_address.clone(),
        coordinators: a.coordinators.clone(),
        coordinator_api: a.coordinator_api.clone(),
        models_dir: a.models_dir.clone(),
        concurrent_tasks: a.concurrent_tasks,
    };
    Ok(cairn_config::resolve(a.config.as_deref(), overrides)?)
}

/// Progress of the registration proof-of-work on stderr: a bar redrawn in place on a terminal;
/// elsewhere (files, Docker logs) one plain line per quarter, so logs hold no frames.
fn pow_progress() -> cairn_worker::agent::Progress {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let last_quarter = std::sync::atomic::AtomicU64::new(0);
    std::sync::Arc::new(move |tried: u64, expected: u64| {
        let pct = (tried as f64 / expected.max(1) as f64 * 100.0).min(100.0);
        if !tty {
            let quarter = (pct / 25.0) as u64;
            if quarter > last_quarter.swap(quarter, std::sync::atomic::Ordering::Relaxed) {
                eprintln!("registration proof-of-work: {pct:.0}% of expected ({tried} hashes)");
            }
            return;
        }
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

/// Runs `cairn worker` or one of its subcommands; `Ok(false)` when a check failed.
pub(super) fn run_worker(args: &WorkerArgs) -> Result<bool> {
    let cfg = resolve_worker_config(args)?;
    if args.print_config {
        println!("{}", serde_json::to_string_pretty(&cfg)?);
        return Ok(true);
    }
    match &args.command {
        None => {
            let executors = cairn_worker::agent::executors_from_config(&cfg)
                .context("starting executors (for the embedding model: `cairn models fetch minilm`)")?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let hooks = cairn_worker::agent::Hooks { started: None, progress: Some(pow_progress()) };
            rt.block_on(cairn_worker::agent::run(cfg, executors, shutdown_signal(), hooks))?;
        }
        Some(WorkerCommand::Status { rpc, min_depth, json }) => {
            let key = keyfile::load(&cfg.data_dir.join("worker.key"))
                .context("no worker key in the data directory: has this worker ever started?")?;
            let journal = cairn_worker::journal::Journal::load(&cfg.data_dir.join("journal.json"))?;
            let backend = match &rpc.rpc_url {
                Some(url) => {
                    let Some(auth) = cairn_anchor::RpcAuth::from_parts(
                        rpc.rpc_cookie.as_deref(),
                        rpc.rpc_user.as_deref(),
                        rpc.rpc_password.as_deref(),
                    ) else {
                        bail!("--rpc-url needs --rpc-cookie, or --rpc-user and --rpc-password");
                    };
                    Some(cairn_anchor::BitcoinCoreRpc::new(cairn_anchor::RpcConfig::new(url.clone(), auth))?)
                }
                None => None,
            };
            let chain = backend.as_ref().map(|b| (b as &dyn cairn_anchor::ChainBackend, *min_depth));
            let report = cairn_worker::status::report(&cfg, &key.public(), &journal, chain);
            let text = if *json { serde_json::to_string_pretty(&report)? + "\n" } else { report.to_string() };
            // A closed pipe (`| head`) ends the output, not the process with a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
            // As `cairn audit`: a receipt whose check failed is exit code 3, not success.
            return Ok(report.failures() == 0);
        }
    }
    Ok(true)
}
