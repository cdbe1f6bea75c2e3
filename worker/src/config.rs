//! The worker's configuration: a TOML file, then `CAIRN_*` environment variables and flags
//! (the binary maps those onto [`Overrides`]); later sources replace earlier ones.
//!
//! Owns parsing and validating every setting before anything starts. Must never read a key
//! file's contents or open a connection: it only says where things are.

use std::path::PathBuf;
use std::time::Duration;

use cairn_spec::Network;
use serde::{Deserialize, Serialize};

use crate::executor::chat::ChatExecutor;
use crate::executor::command::CommandExecutor;

pub use cairn_config::{ConfigError, Layered};

/// One coordinator to work for.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorEntry {
    /// Its p2p multiaddress, ending in `/p2p/<peer id>` (the peer id is its protocol key).
    pub p2p: String,
    /// Its HTTP API base URL (e.g. `http://127.0.0.1:8080`), used by `cairn worker status`
    /// for earnings and receipt proofs. Optional: work needs only p2p.
    #[serde(default)]
    pub api: Option<String>,
}

/// Limits on what the worker takes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Tasks run at once.
    pub concurrent_tasks: usize,
    /// Class names accepted; empty: every class this worker can run.
    pub classes: Vec<String>,
    /// Largest task input taken, in bytes.
    pub max_input_bytes: u32,
    /// Most proof-of-work bits the worker will solve to register (a coordinator asking more
    /// is refused rather than burning CPU for hours).
    pub max_pow_bits: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { concurrent_tasks: 2, classes: Vec::new(), max_input_bytes: 64 * 1024, max_pow_bits: 28 }
    }
}

/// The built-in embedding executor.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingSection {
    /// Run embedding tasks.
    pub enabled: bool,
    /// Where models live (`cairn models fetch minilm` puts them there); default: the cache
    /// directory of [`crate::models::default_models_dir`].
    pub models_dir: Option<PathBuf>,
}

impl Default for EmbeddingSection {
    fn default() -> Self {
        EmbeddingSection { enabled: true, models_dir: None }
    }
}

/// An external command executor.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CommandSection {
    /// Program to run (never through a shell).
    pub program: PathBuf,
    /// Its fixed arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Seconds per run.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Largest result.
    #[serde(default = "default_max_output")]
    pub max_output_bytes: usize,
}

/// An OpenAI-compatible endpoint executor.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChatSection {
    /// Base URL including `/v1`.
    pub url: String,
    /// Model name.
    pub model: String,
    /// Sampling seed.
    #[serde(default)]
    pub seed: u64,
    /// Most tokens generated.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Seconds per request.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Largest result.
    #[serde(default = "default_max_output")]
    pub max_output_bytes: usize,
}

fn default_timeout() -> u64 {
    60
}
fn default_max_output() -> usize {
    cairn_spec::task::MAX_INLINE_BYTES
}
fn default_max_tokens() -> u32 {
    256
}

/// A Bitcoin bond offered instead of proof-of-work.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BondSection {
    /// The bond output's transaction id (hex, as Bitcoin Core shows it).
    pub txid: String,
    /// The output's index.
    pub vout: u32,
    /// Key file whose public key is the P2TR output key (mode 0600).
    pub key_file: PathBuf,
}

/// The worker's configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Network: mainnet, testnet4, signet, regtest.
    pub network: String,
    /// Data directory: the protocol key and the job journal.
    pub data_dir: PathBuf,
    /// Where rewards are paid: a Bitcoin address of the configured network.
    pub payout_address: String,
    /// Coordinators to work for.
    #[serde(rename = "coordinator")]
    pub coordinators: Vec<CoordinatorEntry>,
    /// p2p listen multiaddresses (default: an ephemeral port on every interface).
    pub p2p_listen: Vec<String>,
    /// Limits.
    pub limits: Limits,
    /// Embedding executor.
    pub embedding: EmbeddingSection,
    /// Command executor, when configured.
    pub command: Option<CommandSection>,
    /// Chat-completion executor, when configured.
    pub chat: Option<ChatSection>,
    /// Bond, when registering with one.
    pub bond: Option<BondSection>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            network: "regtest".into(),
            data_dir: PathBuf::from("cairn-worker"),
            payout_address: String::new(),
            coordinators: Vec::new(),
            p2p_listen: Vec::new(),
            limits: Limits::default(),
            embedding: EmbeddingSection::default(),
            command: None,
            chat: None,
            bond: None,
        }
    }
}

impl cairn_config::Layered for WorkerConfig {
    type Overrides = Overrides;
    fn apply(&mut self, o: Overrides) {
        WorkerConfig::apply(self, o);
    }
    fn validate(&self) -> Result<(), ConfigError> {
        WorkerConfig::validate(self)
    }
}

/// Values from the environment or flags that replace the file's.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--network` / `CAIRN_NETWORK`.
    pub network: Option<String>,
    /// `--data-dir` / `CAIRN_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--payout-address` / `CAIRN_PAYOUT_ADDRESS`.
    pub payout_address: Option<String>,
    /// `--coordinator` / `CAIRN_COORDINATORS` (p2p addresses; replaces the file's list).
    pub coordinators: Option<Vec<String>>,
    /// `--coordinator-api` / `CAIRN_COORDINATOR_API` (for the first coordinator).
    pub coordinator_api: Option<String>,
    /// `--models-dir` / `CAIRN_MODELS`.
    pub models_dir: Option<PathBuf>,
    /// `--concurrent-tasks`.
    pub concurrent_tasks: Option<usize>,
}

impl WorkerConfig {
    /// Applies overrides.
    pub fn apply(&mut self, o: Overrides) {
        if let Some(v) = o.network {
            self.network = v;
        }
        if let Some(v) = o.data_dir {
            self.data_dir = v;
        }
        if let Some(v) = o.payout_address {
            self.payout_address = v;
        }
        if let Some(v) = o.coordinators {
            self.coordinators = v.into_iter().map(|p2p| CoordinatorEntry { p2p, api: None }).collect();
        }
        if let Some(api) = o.coordinator_api {
            match self.coordinators.first_mut() {
                Some(c) => c.api = Some(api),
                // Only the API: the p2p address is asked of it at start (`discover`).
                None => self.coordinators.push(CoordinatorEntry { p2p: String::new(), api: Some(api) }),
            }
        }
        if let Some(v) = o.models_dir {
            self.embedding.models_dir = Some(v);
        }
        if let Some(v) = o.concurrent_tasks {
            self.limits.concurrent_tasks = v;
        }
    }

    /// The network.
    pub fn network(&self) -> Result<Network, ConfigError> {
        cairn_config::network(&self.network)
    }

    /// The models directory in use.
    pub fn models_dir(&self) -> PathBuf {
        self.embedding.models_dir.clone().unwrap_or_else(crate::models::default_models_dir)
    }

    /// Checks every setting; the worker starts only with a config that passes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let network = self.network()?;
        check_payout_address(&self.payout_address, network)?;
        if self.coordinators.is_empty() {
            return Err(ConfigError::Invalid(
                "no coordinator to work for (set [[coordinator]] p2p = ...)".into(),
            ));
        }
        for c in &self.coordinators {
            if c.p2p.is_empty() && c.api.as_deref().is_some_and(|a| a.starts_with("http://")) {
                continue;
            }
            let peer = c.p2p.rsplit_once("/p2p/").map(|(_, p)| p).unwrap_or_default();
            let ok = peer.parse::<cairn_p2p::Peer>().ok().and_then(|p| p.protocol_key()).is_some();
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "coordinator {:?} must end in /p2p/<peer id> of a Cairn node (or give only its http:// API)",
                    c.p2p
                )));
            }
            if let Some(api) = &c.api {
                if !api.starts_with("http://") {
                    return Err(ConfigError::Invalid(format!(
                        "coordinator api {api:?} must be an http:// URL"
                    )));
                }
            }
        }
        let l = &self.limits;
        if l.concurrent_tasks == 0 || l.concurrent_tasks > 256 {
            return Err(ConfigError::Invalid("limits.concurrent_tasks must be 1-256".into()));
        }
        if l.max_pow_bits > 40 {
            return Err(ConfigError::Invalid("limits.max_pow_bits above 40".into()));
        }
        if let Some(c) = &self.command {
            if c.timeout_secs == 0
                || c.max_output_bytes == 0
                || c.max_output_bytes > cairn_spec::task::MAX_INLINE_BYTES
            {
                return Err(ConfigError::Invalid(format!(
                    "command: timeout_secs must be positive and max_output_bytes 1-{}",
                    cairn_spec::task::MAX_INLINE_BYTES
                )));
            }
        }
        if let Some(c) = &self.chat {
            if !c.url.starts_with("http://") {
                return Err(ConfigError::Invalid(format!("chat.url {:?} must be an http:// URL", c.url)));
            }
            if c.timeout_secs == 0
                || c.max_output_bytes == 0
                || c.max_output_bytes > cairn_spec::task::MAX_INLINE_BYTES
            {
                return Err(ConfigError::Invalid(
                    "chat: timeout_secs and max_output_bytes must be in range".into(),
                ));
            }
        }
        if let Some(b) = &self.bond {
            b.txid.parse::<bitcoin::Txid>().map_err(|e| ConfigError::Invalid(format!("bond.txid: {e}")))?;
        }
        Ok(())
    }

    /// The command executor, when configured.
    pub fn command_executor(&self) -> Option<CommandExecutor> {
        self.command.as_ref().map(|c| CommandExecutor {
            program: c.program.clone(),
            args: c.args.clone(),
            timeout: Duration::from_secs(c.timeout_secs),
            max_output_bytes: c.max_output_bytes,
        })
    }

    /// The chat executor, when configured.
    pub fn chat_executor(&self) -> Option<ChatExecutor> {
        self.chat.as_ref().map(|c| ChatExecutor {
            base_url: c.url.clone(),
            model: c.model.clone(),
            seed: c.seed,
            max_tokens: c.max_tokens,
            timeout: Duration::from_secs(c.timeout_secs),
            max_output_bytes: c.max_output_bytes,
        })
    }
}

/// Checks that `addr` is a Bitcoin address of `network` (a payout to another network's
/// address could never be made).
pub fn check_payout_address(addr: &str, network: Network) -> Result<(), ConfigError> {
    if addr.is_empty() {
        return Err(ConfigError::Invalid("payout_address is required: where should your sats go?".into()));
    }
    let parsed = addr
        .parse::<bitcoin::Address<bitcoin::address::NetworkUnchecked>>()
        .map_err(|e| ConfigError::Invalid(format!("payout_address {addr:?}: {e}")))?;
    let net = match network {
        Network::Mainnet => bitcoin::Network::Bitcoin,
        Network::Testnet4 => bitcoin::Network::Testnet4,
        Network::Signet => bitcoin::Network::Signet,
        Network::Regtest => bitcoin::Network::Regtest,
    };
    if !parsed.is_valid_for_network(net) {
        return Err(ConfigError::Invalid(format!("payout_address {addr} is not a {network} address")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn payout_address_must_match_the_network() {
        let reg = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
        let main = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4";
        assert!(check_payout_address(reg, Network::Regtest).is_ok());
        assert!(check_payout_address(main, Network::Regtest).is_err());
        assert!(check_payout_address(main, Network::Mainnet).is_ok());
        assert!(check_payout_address("", Network::Regtest).is_err());
        assert!(check_payout_address("nonsense", Network::Regtest).is_err());
    }

    #[test]
    fn file_then_overrides_and_validation() {
        let mut c = WorkerConfig::from_toml(
            r#"
network = "regtest"
payout_address = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
[[coordinator]]
p2p = "/ip4/127.0.0.1/tcp/1/p2p/16Uiu2HAm9DaeEPb9MJBHzW9KwDSjdqpbJEycRADMqvfX8mVerQUx"
[limits]
concurrent_tasks = 3
"#,
        )
        .unwrap();
        assert_eq!(c.limits.concurrent_tasks, 3);
        c.apply(Overrides { concurrent_tasks: Some(5), ..Default::default() });
        assert_eq!(c.limits.concurrent_tasks, 5);
        c.coordinators[0].p2p = "/ip4/127.0.0.1/tcp/1".into();
        assert!(c.validate().unwrap_err().to_string().contains("/p2p/"));
        assert!(WorkerConfig::from_toml("bogus = 1").is_err());
    }
}

#[cfg(test)]
mod example {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn the_example_config_is_valid() {
        let c =
            <super::WorkerConfig as super::Layered>::from_toml(include_str!("../cairn-worker.example.toml"))
                .unwrap();
        c.validate().unwrap();
        assert_eq!(c.coordinators.len(), 1);
    }
}
