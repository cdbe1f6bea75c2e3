//! `cairn`: the one binary. Parses the command line, sets up logging, calls the libraries.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use cairn_coordinator::{inspect, keyfile};
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
    /// Decode a protocol object and print it as JSON (validates it as the node would).
    Decode {
        /// Object kind: task-class, task, registration, commitment, reveal, receipt,
        /// ledger-entry, epoch-header, receipt-proof.
        kind: String,
        /// Hex of the object, `@FILE` for a binary file, or `-` for hex on stdin.
        input: String,
    },
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
        Command::Decode { kind, input } => {
            let bytes = read_input(&input)?;
            let v = inspect::decode(&kind, &bytes)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}
