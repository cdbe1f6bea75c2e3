//! Node configuration: defaults, a TOML file, `CAIRN_*` environment variables and command
//! line flags, in that order of increasing precedence (flags win). clap reads flags and their
//! environment variables; this module merges them over the file.
//!
//! Owns the meaning and validation of every setting. Must never read secrets into the config
//! (key files and the operator token are paths, read by the node).

use std::path::PathBuf;

use cairn_spec::task::PPB;
use cairn_spec::{ComparisonRule, ExecutorKind, Hash32, Network, TaskClass};
use serde::{Deserialize, Serialize};

use crate::lifecycle::{Canary, LifecycleConfig, Tunables};

/// Smallest payout any standard output type may carry without being dust (P2PKH at the
/// default dust relay fee is 546 sats; the others are lower).
pub const DUST_SAFE_SATS: u64 = 546;

pub use cairn_config::{ConfigError, Layered, MAX_CONFIG_BYTES};

/// HTTP API settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Listen address, e.g. `127.0.0.1:8686`.
    pub listen: String,
    /// File holding the operator token (created with 0600 on first start when missing).
    /// Relative paths are under the data directory.
    pub token_file: PathBuf,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// A listener of its own for `/metrics` and `/v1/ready` (e.g. `127.0.0.1:9686`).
    pub metrics_listen: Option<String>,
    /// Expensive reads (proofs, audits, bundles, `.ots`, timestamps, payouts) each client
    /// address (the TCP peer's: behind a reverse proxy, limit at the proxy) may make per
    /// second; past it, 429 with `Retry-After`.
    pub heavy_reads_per_second: u32,
    /// How many of them a client may make at once after a quiet spell.
    pub heavy_read_burst: u32,
    /// How many run at once, all clients together, each on a blocking thread to its end
    /// (the node's decisions use those threads too); one that waits a second for its turn is
    /// answered 503.
    pub heavy_reads_at_once: usize,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: "127.0.0.1:8686".into(),
            token_file: "operator.token".into(),
            max_body_bytes: 256 * 1024,
            metrics_listen: None,
            heavy_reads_per_second: 20,
            heavy_read_burst: 40,
            heavy_reads_at_once: 2,
        }
    }
}

/// Peer-to-peer settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct P2pSection {
    /// Multiaddresses to listen on (default: an OS-chosen port on 127.0.0.1).
    pub listen: Vec<String>,
    /// Peers dialled at start.
    pub bootstrap: Vec<String>,
    /// LAN discovery.
    pub mdns: bool,
    /// Requests each peer may make per second beyond the work it does (SPEC.md §11.5;
    /// default 50). Work done is refunded, so this bounds reads, repeats and refusals only.
    pub requests_per_second: Option<u32>,
    /// Burst of such requests (default 100).
    pub request_burst: Option<u32>,
}

/// How the node reaches Bitcoin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BitcoinMode {
    /// Bitcoin Core over JSON-RPC: epochs are anchored.
    Rpc,
    /// No Bitcoin: epochs are closed and signed but NOT anchored (tests and demos only; the
    /// node says so loudly at start).
    None,
}

/// Bitcoin and anchoring settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BitcoinSection {
    /// `rpc` or `none`.
    pub mode: BitcoinMode,
    /// Bitcoin Core RPC URL.
    pub rpc_url: String,
    /// Cookie file (preferred over user/password).
    pub cookie_file: Option<PathBuf>,
    /// RPC user.
    pub rpc_user: Option<String>,
    /// RPC password.
    pub rpc_password: Option<String>,
    /// Confirmations before an epoch counts as anchored.
    pub finality_depth: u32,
    /// Blocks after finality during which rewards stay locked (challenge window).
    pub challenge_window_blocks: u32,
    /// Seconds between anchor rounds.
    pub poll_secs: u64,
    /// Height to start scanning at on first start. Unset: the node reads its funds from
    /// Bitcoin Core's UTXO set at the tip (`scantxoutset`) and scans only the newest blocks.
    pub start_height: Option<u32>,
    /// Fee rate when the node has no estimate, sat/vB (default per network, see
    /// [`FeeDefaults`]).
    pub fallback_fee_sat_vb: Option<u32>,
    /// Most fee per anchor, sats (default per network).
    pub max_fee_per_anchor_sats: Option<u64>,
    /// Most fee per day, sats (default per network).
    pub max_fee_per_day_sats: Option<u64>,
    /// Mainnet spends real money: the node refuses it unless this is set.
    pub allow_mainnet: bool,
    /// Blocks epochs may wait for a confirmed anchor before `/v1/ready` fails (the anchor
    /// machine's own replacement of a stuck anchor, by fee, comes sooner).
    pub unready_after_blocks: u32,
    /// Seconds between re-checks of the bonds that admitted workers (a spent bond ends the
    /// worker's admission).
    pub bond_check_secs: u64,
}

impl BitcoinSection {
    /// Confirmations after which anchored rewards unlock: the anchor is final
    /// (`finality_depth`), then the challenge window runs its course (SPEC.md §5.8).
    pub fn unlock_depth(&self) -> u32 {
        self.finality_depth.saturating_add(self.challenge_window_blocks)
    }
}

/// Fee settings a network gets when the config leaves them out: test networks' coins are
/// free, so their caps only stop runaway loops; mainnet's cost money, so its caps are what a
/// few anchors a day at a busy mempool's rates need, and raising them is the operator's call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeeDefaults {
    /// Rate without an estimate, sat/vB.
    pub fallback_sat_vb: u32,
    /// Cap per anchor, replacements included, sats.
    pub max_per_anchor_sats: u64,
    /// Cap per UTC day, sats.
    pub max_per_day_sats: u64,
}

impl FeeDefaults {
    /// The defaults of `network`.
    pub fn of(network: Network) -> Self {
        match network {
            Network::Mainnet => {
                FeeDefaults { fallback_sat_vb: 10, max_per_anchor_sats: 20_000, max_per_day_sats: 200_000 }
            }
            Network::Testnet4 => {
                FeeDefaults { fallback_sat_vb: 10, max_per_anchor_sats: 50_000, max_per_day_sats: 1_000_000 }
            }
            Network::Signet | Network::Regtest => {
                FeeDefaults { fallback_sat_vb: 2, max_per_anchor_sats: 50_000, max_per_day_sats: 1_000_000 }
            }
        }
    }
}

impl BitcoinSection {
    /// The fee settings in force on `network`: the config's, else the network's defaults.
    pub fn fees(&self, network: Network) -> FeeDefaults {
        let d = FeeDefaults::of(network);
        FeeDefaults {
            fallback_sat_vb: self.fallback_fee_sat_vb.unwrap_or(d.fallback_sat_vb),
            max_per_anchor_sats: self.max_fee_per_anchor_sats.unwrap_or(d.max_per_anchor_sats),
            max_per_day_sats: self.max_fee_per_day_sats.unwrap_or(d.max_per_day_sats),
        }
    }
}

impl Default for BitcoinSection {
    fn default() -> Self {
        BitcoinSection {
            mode: BitcoinMode::Rpc,
            rpc_url: "http://127.0.0.1:18443".into(),
            cookie_file: None,
            rpc_user: None,
            rpc_password: None,
            finality_depth: 6,
            challenge_window_blocks: 6,
            poll_secs: 10,
            start_height: None,
            fallback_fee_sat_vb: None,
            max_fee_per_anchor_sats: None,
            max_fee_per_day_sats: None,
            allow_mainnet: false,
            unready_after_blocks: 6,
            bond_check_secs: 60,
        }
    }
}

/// A comparison rule as written in the config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleConfig {
    /// Identical bytes.
    Exact,
    /// Cosine similarity at least this (0–1), over the whole result.
    Cosine(f64),
    /// Cosine similarity at least `threshold` (0–1) for every item of `dim` floats (batches
    /// of embeddings).
    CosineEach {
        /// The threshold, 0–1.
        threshold: f64,
        /// Floats per item.
        dim: u16,
    },
}

/// A task class as written in the config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassConfig {
    /// Name.
    pub name: String,
    /// `embedding`, `command` or `chat_completion`.
    pub executor: ExecutorKind,
    /// SHA-256 of the model file, hex (64 zeros when none).
    #[serde(default = "zero_hash")]
    pub model_hash: String,
    /// Agreement rule.
    pub rule: RuleConfig,
    /// For a `chat_completion` class: the generation settings it pins (its `model_hash` is
    /// their hash, SPEC.md §5.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<ChatSettings>,
    /// Replicas.
    pub replication: u8,
    /// Sats per unit.
    pub reward_per_unit: u64,
    /// Largest input.
    pub max_input_bytes: u32,
    /// Lease seconds.
    pub lease_secs: u32,
    /// Reveal seconds.
    pub reveal_secs: u32,
    /// A scored objective (SPEC.md §13); absent: the class is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<ObjectiveConfig>,
}

/// A scored class's objective and the terms its validators' consensus shares by (SPEC.md
/// §5.2, §13), the `[class.objective]` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveConfig {
    /// `quality` (outputs scored against ground truth the validators hold) or `latency`
    /// (correct answers, faster earns more).
    pub kind: ObjectiveKind,
    /// Sats the workers share each epoch.
    pub worker_budget_sats: u64,
    /// Sats the validators share each epoch.
    pub validator_budget_sats: u64,
    /// Scores at or below this (parts per million; chance accuracy, say) earn nothing.
    pub baseline_ppm: u32,
    /// A validator this far from the consensus on average (ppm) earns nothing.
    pub tolerance_ppm: u32,
    /// Latency only: an answer this fast (ms) or faster scores the whole scale (SPEC.md §13.7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_ms: Option<u32>,
    /// Latency only: an answer this slow (ms) or slower, or none, scores 0; also how long a
    /// validator waits for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_ms: Option<u32>,
}

/// The scored objectives a class may state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectiveKind {
    /// Scored against ground truth.
    Quality,
    /// Scored by speed among correct results.
    Latency,
}

/// What a chat-completion class pins: the model its workers' endpoints run, the seed and the
/// token limit (decoding is greedy: temperature 0, top_p 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSettings {
    /// Model name as the endpoint knows it.
    pub model: String,
    /// Sampling seed.
    pub seed: u64,
    /// Most tokens generated.
    pub max_tokens: u32,
}

fn zero_hash() -> String {
    "00".repeat(32)
}

impl ClassConfig {
    /// The protocol class, validated as the decoder would.
    pub fn to_class(&self) -> Result<TaskClass, ConfigError> {
        let mut model_hash = Hash32::from_hex(&self.model_hash)
            .map_err(|e| ConfigError::Invalid(format!("class {}: model_hash: {e}", self.name)))?;
        match (&self.chat, self.executor) {
            (Some(c), ExecutorKind::ChatCompletion) => {
                let pinned = cairn_spec::task::chat_settings_hash(&c.model, c.seed, c.max_tokens);
                if model_hash != Hash32::ZERO && model_hash != pinned {
                    return Err(ConfigError::Invalid(format!(
                        "class {}: model_hash is not the hash of its chat settings ({pinned})",
                        self.name
                    )));
                }
                model_hash = pinned;
            }
            (Some(_), _) => {
                return Err(ConfigError::Invalid(format!(
                    "class {}: chat settings belong to a chat_completion class",
                    self.name
                )))
            }
            (None, ExecutorKind::ChatCompletion) if model_hash == Hash32::ZERO => {
                return Err(ConfigError::Invalid(format!(
                    "class {}: a chat_completion class pins its model, seed and token limit ([class.chat]): \
                     honest workers running other settings would answer differently and be judged wrong",
                    self.name
                )))
            }
            (None, _) => {}
        }
        if self.executor == ExecutorKind::ChatCompletion && !matches!(self.rule, RuleConfig::Exact) {
            return Err(ConfigError::Invalid(format!(
                "class {}: a chat_completion class compares text exactly (rule = \"exact\")",
                self.name
            )));
        }
        let rule = match self.rule {
            RuleConfig::Exact => ComparisonRule::ExactHash,
            RuleConfig::Cosine(t) if (0.0..=1.0).contains(&t) => {
                ComparisonRule::Cosine { min_ppb: (t * f64::from(PPB)).round() as u32 }
            }
            RuleConfig::CosineEach { threshold: t, dim } if (0.0..=1.0).contains(&t) && dim > 0 => {
                ComparisonRule::CosineEach { min_ppb: (t * f64::from(PPB)).round() as u32, dim }
            }
            RuleConfig::Cosine(t) | RuleConfig::CosineEach { threshold: t, .. } => {
                return Err(ConfigError::Invalid(format!(
                    "class {}: cosine threshold {t} not in 0..=1, or an item width of zero",
                    self.name
                )))
            }
        };
        let class = TaskClass {
            name: self.name.clone(),
            executor: self.executor,
            model_hash,
            rule,
            replication: self.replication,
            reward_per_unit: self.reward_per_unit,
            max_input_bytes: self.max_input_bytes,
            lease_secs: self.lease_secs,
            reveal_secs: self.reveal_secs,
            objective: match self.objective {
                None => cairn_spec::Objective::Verified,
                Some(o) => {
                    let terms = cairn_spec::consensus::ConsensusParams {
                        worker_budget_sats: o.worker_budget_sats,
                        validator_budget_sats: o.validator_budget_sats,
                        baseline: o.baseline_ppm,
                        tolerance: o.tolerance_ppm,
                    };
                    match (o.kind, o.fast_ms, o.slow_ms) {
                        (ObjectiveKind::Latency, Some(fast_ms), Some(slow_ms)) => {
                            let t = cairn_spec::LatencyTerms { consensus: terms, fast_ms, slow_ms };
                            if !t.valid() {
                                return Err(ConfigError::Invalid(format!(
                                    "class {}: a latency class needs fast_ms < slow_ms <= {}",
                                    self.name,
                                    cairn_spec::probe::MAX_SLOW_MS
                                )));
                            }
                            cairn_spec::Objective::Latency(t)
                        }
                        (ObjectiveKind::Latency, _, _) => {
                            return Err(ConfigError::Invalid(format!(
                                "class {}: a latency class states fast_ms and slow_ms (SPEC.md §13.7)",
                                self.name
                            )))
                        }
                        (ObjectiveKind::Quality, f, s) if f.is_some() || s.is_some() => {
                            return Err(ConfigError::Invalid(format!(
                                "class {}: fast_ms and slow_ms are terms of latency classes only",
                                self.name
                            )))
                        }
                        // A quality class runs each task once and pays only through its
                        // budget (SPEC.md §5.2): replicas of workers of different quality
                        // would disagree, and a per-unit price would pay junk.
                        (ObjectiveKind::Quality, ..)
                            if self.replication != 1 || self.reward_per_unit != 0 =>
                        {
                            return Err(ConfigError::Invalid(format!(
                                "class {}: a quality class has replication = 1 and reward_per_unit = 0 \
                                 (its budget, shared by the validators' consensus, is the pay)",
                                self.name
                            )))
                        }
                        (ObjectiveKind::Quality, ..) => cairn_spec::Objective::Quality(terms),
                    }
                }
            },
        };
        // The decoder holds every range rule: a class it would refuse is refused here.
        use cairn_spec::{Decode, Encode};
        TaskClass::from_bytes(&class.to_bytes())
            .map_err(|e| ConfigError::Invalid(format!("class {}: {e}", self.name)))
    }
}

/// The whole node configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// `mainnet`, `testnet4`, `signet` or `regtest`.
    pub network: String,
    /// Data directory (database, key files, token). Unset: `~/.cairn/<network>` (or under
    /// `$XDG_DATA_HOME`), where a public network's keys are never created (see
    /// [`cairn_config::DataDir`]).
    pub data_dir: Option<PathBuf>,
    /// HTTP API.
    pub api: ApiSection,
    /// Peer-to-peer.
    pub p2p: P2pSection,
    /// Bitcoin.
    pub bitcoin: BitcoinSection,
    /// Lifecycle.
    pub lifecycle: Tunables,
    /// Task classes.
    #[serde(rename = "class")]
    pub classes: Vec<ClassConfig>,
    /// Canary pool: tasks with known answers the node mixes in among submitted tasks.
    #[serde(rename = "canary")]
    pub canaries: Vec<CanaryConfig>,
    /// Mix in one canary per this many submitted tasks on average, each from the pool and
    /// used once (0: never).
    pub canary_every: u64,
    /// Follower settings (`cairn follow`).
    pub follow: FollowSection,
}

/// What a follower (`cairn follow`) follows and how often it asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FollowSection {
    /// The coordinator's protocol key, hex (default: the key of the first bootstrap peer,
    /// whose peer id is that key).
    pub coordinator: Option<String>,
    /// A txid trusted as the first anchor (default: the first transaction whose payload
    /// commits an accepted header).
    pub genesis_anchor: Option<String>,
    /// Seconds between sync rounds (a gossiped epoch header also starts one).
    pub sync_secs: u64,
}

impl Default for FollowSection {
    fn default() -> Self {
        FollowSection { coordinator: None, genesis_anchor: None, sync_secs: 5 }
    }
}

/// A canary: a task with a known answer, indistinguishable from others to workers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    /// Class name.
    pub class: String,
    /// Input, hex.
    pub input_hex: String,
    /// The known correct result, hex.
    pub answer_hex: String,
    /// Units.
    #[serde(default = "one")]
    pub units: u32,
}

fn one() -> u32 {
    1
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            network: "regtest".into(),
            data_dir: None,
            api: ApiSection::default(),
            p2p: P2pSection::default(),
            bitcoin: BitcoinSection::default(),
            lifecycle: Tunables::default(),
            classes: Vec::new(),
            canaries: Vec::new(),
            canary_every: 0,
            follow: FollowSection::default(),
        }
    }
}

impl cairn_config::Layered for NodeConfig {
    type Overrides = Overrides;
    fn apply(&mut self, o: Overrides) {
        NodeConfig::apply(self, o);
    }
    /// Every value checked, as the lifecycle settings are built from them.
    fn validate(&self) -> Result<(), ConfigError> {
        let a = &self.api;
        if a.heavy_reads_per_second == 0 || a.heavy_read_burst == 0 || a.heavy_reads_at_once == 0 {
            return Err(ConfigError::Invalid(
                "api.heavy_reads_per_second, heavy_read_burst and heavy_reads_at_once must be at least 1"
                    .into(),
            ));
        }
        if a.heavy_reads_at_once > 256 {
            return Err(ConfigError::Invalid("api.heavy_reads_at_once above 256".into()));
        }
        self.lifecycle().map(|_| ())
    }
}

/// Values from flags or their environment variables (clap resolves flag over env); each set
/// one replaces the file's value.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--network` / `CAIRN_NETWORK`.
    pub network: Option<String>,
    /// `--data-dir` / `CAIRN_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--api-listen` / `CAIRN_API_LISTEN`.
    pub api_listen: Option<String>,
    /// `--p2p-listen` / `CAIRN_P2P_LISTEN`.
    pub p2p_listen: Option<Vec<String>>,
    /// `--bootstrap` / `CAIRN_BOOTSTRAP`.
    pub bootstrap: Option<Vec<String>>,
    /// `--bitcoin` / `CAIRN_BITCOIN` (`rpc` or `none`).
    pub bitcoin_mode: Option<BitcoinMode>,
    /// `--rpc-url` / `CAIRN_RPC_URL`.
    pub rpc_url: Option<String>,
    /// `--rpc-cookie` / `CAIRN_RPC_COOKIE`.
    pub rpc_cookie: Option<PathBuf>,
    /// `--rpc-user` / `CAIRN_RPC_USER`.
    pub rpc_user: Option<String>,
    /// `--rpc-password` / `CAIRN_RPC_PASSWORD`.
    pub rpc_password: Option<String>,
    /// `--allow-mainnet` / `CAIRN_ALLOW_MAINNET`.
    pub allow_mainnet: Option<bool>,
    /// `--metrics-listen` / `CAIRN_METRICS_LISTEN`.
    pub metrics_listen: Option<String>,
    /// `cairn follow --coordinator-key` / `CAIRN_FOLLOW_COORDINATOR`.
    pub follow_coordinator: Option<String>,
    /// `cairn follow --genesis-anchor` / `CAIRN_FOLLOW_GENESIS_ANCHOR`.
    pub follow_genesis_anchor: Option<String>,
}

impl NodeConfig {
    /// Applies flag/env overrides.
    pub fn apply(&mut self, o: Overrides) {
        if let Some(v) = o.network {
            self.network = v;
        }
        if let Some(v) = o.data_dir {
            self.data_dir = Some(v);
        }
        if let Some(v) = o.api_listen {
            self.api.listen = v;
        }
        if let Some(v) = o.p2p_listen {
            self.p2p.listen = v;
        }
        if let Some(v) = o.bootstrap {
            self.p2p.bootstrap = v;
        }
        if let Some(v) = o.bitcoin_mode {
            self.bitcoin.mode = v;
        }
        if let Some(v) = o.rpc_url {
            self.bitcoin.rpc_url = v;
        }
        if let Some(v) = o.rpc_cookie {
            self.bitcoin.cookie_file = Some(v);
        }
        if let Some(v) = o.rpc_user {
            self.bitcoin.rpc_user = Some(v);
        }
        if let Some(v) = o.rpc_password {
            self.bitcoin.rpc_password = Some(v);
        }
        if let Some(v) = o.allow_mainnet {
            self.bitcoin.allow_mainnet = v;
        }
        if let Some(v) = o.metrics_listen {
            self.api.metrics_listen = Some(v);
        }
        if let Some(v) = o.follow_coordinator {
            self.follow.coordinator = Some(v);
        }
        if let Some(v) = o.follow_genesis_anchor {
            self.follow.genesis_anchor = Some(v);
        }
    }

    /// The data directory: the one configured, else the network's default.
    pub fn data_dir(&self) -> Result<cairn_config::DataDir, ConfigError> {
        cairn_config::DataDir::from_env(self.data_dir.as_deref(), self.network()?)
    }

    /// The config with its secrets replaced by a marker, for printing.
    pub fn redacted(&self) -> NodeConfig {
        let mut c = self.clone();
        if c.bitcoin.rpc_password.is_some() {
            c.bitcoin.rpc_password = Some("<redacted>".into());
        }
        c
    }

    /// The network, validated.
    pub fn network(&self) -> Result<Network, ConfigError> {
        cairn_config::network(&self.network)
    }

    /// Checks every value and builds the lifecycle settings.
    pub fn lifecycle(&self) -> Result<LifecycleConfig, ConfigError> {
        let network = self.network()?;
        let mut classes = Vec::new();
        for c in &self.classes {
            let class = c.to_class()?;
            if classes.iter().any(|k: &TaskClass| k.name == class.name) {
                return Err(ConfigError::Invalid(format!("class {} is defined twice", class.name)));
            }
            classes.push(class);
        }
        if classes.len() > cairn_spec::wire::MAX_CLASSES_PER_TERMS {
            return Err(ConfigError::Invalid(format!(
                "{} task classes; a coordinator offers at most {} (SPEC.md §11.4)",
                classes.len(),
                cairn_spec::wire::MAX_CLASSES_PER_TERMS
            )));
        }
        if self.p2p.requests_per_second == Some(0) || self.p2p.request_burst == Some(0) {
            return Err(ConfigError::Invalid(
                "p2p.requests_per_second and p2p.request_burst must be at least 1".into(),
            ));
        }
        let l = &self.lifecycle;
        if l.pow_difficulty > 40 {
            return Err(ConfigError::Invalid("lifecycle.pow_difficulty above 40 bits".into()));
        }
        if l.audit_min_ppm > 1_000_000 {
            return Err(ConfigError::Invalid("lifecycle.audit_min_ppm above 1000000".into()));
        }
        if l.max_misses == 0
            || l.offer_secs == 0
            || l.live_secs == 0
            || l.canary_spread_secs == 0
            || l.miss_window_secs == 0
        {
            return Err(ConfigError::Invalid(
                "lifecycle.max_misses, miss_window_secs, offer_secs, live_secs and canary_spread_secs must be at least 1"
                    .into(),
            ));
        }
        if l.miss_window_secs > 86_400 {
            return Err(ConfigError::Invalid("lifecycle.miss_window_secs above a day".into()));
        }
        if l.epoch_max_receipts == 0 || l.epoch_interval_secs == 0 {
            return Err(ConfigError::Invalid("epoch cadence must be positive".into()));
        }
        if l.payout_threshold_sats < DUST_SAFE_SATS {
            return Err(ConfigError::Invalid(format!(
                "lifecycle.payout_threshold_sats must be at least {DUST_SAFE_SATS} (smaller outputs are dust and Bitcoin Core would not relay the anchor)"
            )));
        }
        if network == Network::Mainnet && !self.bitcoin.allow_mainnet && self.bitcoin.mode == BitcoinMode::Rpc
        {
            return Err(ConfigError::Invalid(
                "network = mainnet anchors with real bitcoin: set bitcoin.allow_mainnet = true (or --allow-mainnet) to confirm".into(),
            ));
        }
        let b = &self.bitcoin;
        if b.cookie_file.is_some() && (b.rpc_user.is_some() || b.rpc_password.is_some()) {
            // Otherwise one silently wins: a password set in the environment would be ignored
            // for a cookie path left in the file (and the other way round).
            return Err(ConfigError::Invalid(
                "bitcoin: set cookie_file, or rpc_user and rpc_password, not both".into(),
            ));
        }
        if b.rpc_user.is_some() != b.rpc_password.is_some() {
            return Err(ConfigError::Invalid("bitcoin: rpc_user and rpc_password go together".into()));
        }
        let fees = self.bitcoin.fees(network);
        if fees.fallback_sat_vb == 0
            || fees.max_per_anchor_sats == 0
            || fees.max_per_anchor_sats > fees.max_per_day_sats
        {
            return Err(ConfigError::Invalid(
                "bitcoin fees: the fallback rate and the per-anchor cap must be positive, and the per-anchor cap at most the daily one".into(),
            ));
        }
        if self.bitcoin.finality_depth == 0 {
            return Err(ConfigError::Invalid("bitcoin.finality_depth must be at least 1".into()));
        }
        let mut inputs = std::collections::BTreeSet::new();
        for c in &self.canaries {
            let Some(class) = classes.iter().find(|k| k.name == c.class) else {
                return Err(ConfigError::Invalid(format!("canary names unknown class {}", c.class)));
            };
            // A quality class compares no answer (its validators judge results): a canary
            // there would accept anything and be a free unit.
            if !class.objective.compares_results() {
                return Err(ConfigError::Invalid(format!(
                    "canary of class {}: a quality class takes no canaries",
                    c.class
                )));
            }
            let (Ok(input), Ok(answer)) = (hex::decode(&c.input_hex), hex::decode(&c.answer_hex)) else {
                return Err(ConfigError::Invalid(format!("canary of class {}: bad hex", c.class)));
            };
            // A canary travels inline (a task record with a larger inline input could not be
            // read back), within its class's limit, with an answer the class's rule accepts.
            let max = (class.max_input_bytes as usize).min(cairn_spec::task::MAX_INLINE_BYTES);
            if c.units == 0 || input.is_empty() || input.len() > max {
                return Err(ConfigError::Invalid(format!(
                    "canary of class {}: zero units, or an input of {} bytes (1 to {max})",
                    c.class,
                    input.len()
                )));
            }
            if !crate::lifecycle::judge::well_formed(&class.rule, &answer) {
                return Err(ConfigError::Invalid(format!(
                    "canary of class {}: the answer is not a result the class's rule accepts",
                    c.class
                )));
            }
            // Each is used once: an input twice would be a repeat workers could remember.
            if !inputs.insert(input) {
                return Err(ConfigError::Invalid(format!(
                    "canary of class {}: an input given twice",
                    c.class
                )));
            }
        }
        if self.canary_every > 0 && self.canaries.is_empty() {
            return Err(ConfigError::Invalid("canary_every is set but no [[canary]] is defined".into()));
        }
        let mut cfg = LifecycleConfig::new(network, classes);
        cfg.tunables = self.lifecycle.clone();
        cfg.canaries = self
            .canaries
            .iter()
            .map(|c| Canary {
                class: c.class.clone(),
                input: hex::decode(&c.input_hex).unwrap_or_default(),
                answer: hex::decode(&c.answer_hex).unwrap_or_default(),
                units: c.units,
            })
            .collect();
        cfg.canary_every = self.canary_every;
        cfg.beacons = self.bitcoin.mode == BitcoinMode::Rpc;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn fees_default_per_network_and_the_config_wins() {
        let b = BitcoinSection::default();
        let main = b.fees(Network::Mainnet);
        assert_eq!(
            (main.fallback_sat_vb, main.max_per_anchor_sats, main.max_per_day_sats),
            (10, 20_000, 200_000)
        );
        assert_eq!(b.fees(Network::Regtest).fallback_sat_vb, 2);
        let set = BitcoinSection { max_fee_per_anchor_sats: Some(7_000), ..BitcoinSection::default() };
        assert_eq!(set.fees(Network::Mainnet).max_per_anchor_sats, 7_000);
        assert_eq!(set.fees(Network::Mainnet).max_per_day_sats, 200_000);
        // A per-anchor cap above the daily one is refused.
        let mut c = NodeConfig { network: "signet".into(), ..NodeConfig::default() };
        c.bitcoin.max_fee_per_anchor_sats = Some(2_000_000);
        assert!(c.lifecycle().is_err());
        c.bitcoin.max_fee_per_anchor_sats = None;
        assert!(c.lifecycle().is_ok());
        // Mainnet only when asked for.
        c.network = "mainnet".into();
        assert!(c.lifecycle().unwrap_err().to_string().contains("allow_mainnet"));
        c.bitcoin.allow_mainnet = true;
        assert!(c.lifecycle().is_ok());
        // One way to authenticate to Core, whole: a cookie, or a user with a password.
        c.bitcoin.cookie_file = Some("/c".into());
        c.bitcoin.rpc_password = Some("p".into());
        assert!(c.lifecycle().unwrap_err().to_string().contains("not both"));
        c.bitcoin.cookie_file = None;
        assert!(c.lifecycle().unwrap_err().to_string().contains("go together"));
        c.bitcoin.rpc_user = Some("u".into());
        assert!(c.lifecycle().is_ok());
    }
    use super::*;

    const FILE: &str = r#"
network = "signet"
data_dir = "/from/file"
[api]
listen = "127.0.0.1:1111"
[bitcoin]
mode = "none"
[[class]]
name = "embed"
executor = "embedding"
rule = { cosine = 0.99 }
replication = 2
reward_per_unit = 10
max_input_bytes = 4096
lease_secs = 60
reveal_secs = 60
"#;

    #[test]
    fn defaults_then_file_then_overrides() {
        let d = NodeConfig::default();
        assert_eq!(d.api.listen, "127.0.0.1:8686");
        let mut c = NodeConfig::from_toml(FILE).unwrap();
        assert_eq!((c.network.as_str(), c.api.listen.as_str()), ("signet", "127.0.0.1:1111"));
        // A value the file leaves out keeps its default.
        assert_eq!(c.bitcoin.finality_depth, 6);
        c.apply(Overrides { api_listen: Some("127.0.0.1:2222".into()), ..Overrides::default() });
        assert_eq!(c.api.listen, "127.0.0.1:2222");
        assert_eq!(c.data_dir, Some(PathBuf::from("/from/file")));
        let l = c.lifecycle().unwrap();
        assert_eq!(l.classes[0].rule, ComparisonRule::Cosine { min_ppb: 990_000_000 });
    }

    #[test]
    fn bad_configs_are_refused_clearly() {
        assert!(NodeConfig::from_toml("nonsense = 1").unwrap_err().to_string().contains("nonsense"));
        let c = NodeConfig { network: "moon".into(), ..NodeConfig::default() };
        assert!(c.lifecycle().unwrap_err().to_string().contains("moon"));
        let mut bad = NodeConfig::from_toml(FILE).unwrap();
        bad.classes[0].replication = 0;
        let e = bad.lifecycle().unwrap_err();
        assert!(e.to_string().contains("replication"), "{e}");
        let bad = format!(
            "canary_every = 2\n{FILE}[[canary]]\nclass = \"nope\"\ninput_hex = \"00\"\nanswer_hex = \"00\"\n"
        );
        assert!(NodeConfig::from_toml(&bad).unwrap().lifecycle().unwrap_err().to_string().contains("nope"));
        let mut bad = NodeConfig::from_toml(FILE).unwrap();
        let cosine = bad.classes.iter_mut().find(|c| matches!(c.rule, RuleConfig::Cosine(_))).unwrap();
        cosine.rule = RuleConfig::Cosine(1.5);
        assert!(bad.lifecycle().unwrap_err().to_string().contains("1.5"));
    }
    #[test]
    fn canaries_must_be_inline_well_formed_and_each_input_given_once() {
        let with = |entries: &str| {
            NodeConfig::from_toml(&format!("canary_every = 2\n{FILE}{entries}")).unwrap().lifecycle()
        };
        let entry = |input: &str, answer: &str| {
            format!("[[canary]]\nclass = \"embed\"\ninput_hex = \"{input}\"\nanswer_hex = \"{answer}\"\n")
        };
        // An embedding answer: one f32 of 1.0.
        let one = "0000803f";
        assert!(with(&entry("6869", one)).is_ok());
        let twice = format!("{}{}", entry("6869", one), entry("6869", one));
        assert!(with(&twice).unwrap_err().to_string().contains("twice"));
        let big = "00".repeat(4097);
        assert!(with(&entry(&big, one)).unwrap_err().to_string().contains("4097 bytes"));
        assert!(with(&entry("6869", "00")).unwrap_err().to_string().contains("rule accepts"));
    }

    #[test]
    fn a_chat_class_pins_its_generation_settings() {
        let base = |chat: Option<ChatSettings>, model_hash: String| ClassConfig {
            name: "chat".into(),
            executor: ExecutorKind::ChatCompletion,
            model_hash,
            rule: RuleConfig::Exact,
            chat,
            replication: 2,
            reward_per_unit: 10,
            max_input_bytes: 4096,
            lease_secs: 60,
            reveal_secs: 60,
            objective: None,
        };
        let settings = ChatSettings { model: "tiny-llm".into(), seed: 42, max_tokens: 16 };
        let class = base(Some(settings.clone()), "00".repeat(32)).to_class().unwrap();
        assert_eq!(class.model_hash, cairn_spec::task::chat_settings_hash("tiny-llm", 42, 16));
        // Without settings, or with a hash that is not theirs: refused with the reason.
        let e = base(None, "00".repeat(32)).to_class().unwrap_err();
        assert!(e.to_string().contains("pins its model"), "{e}");
        let e = base(Some(settings.clone()), "11".repeat(32)).to_class().unwrap_err();
        assert!(e.to_string().contains("not the hash"), "{e}");
        // Text is compared exactly.
        let e = ClassConfig { rule: RuleConfig::Cosine(0.9), ..base(Some(settings), "00".repeat(32)) }
            .to_class()
            .unwrap_err();
        assert!(e.to_string().contains("exactly"), "{e}");
    }
}

#[cfg(test)]
mod example {
    #[test]
    fn the_example_config_is_valid() {
        let c =
            <super::NodeConfig as super::Layered>::from_toml(include_str!("../cairn.example.toml")).unwrap();
        assert_eq!(c.lifecycle().unwrap().classes.len(), 2);
    }
}

#[cfg(test)]
mod objectives {
    use super::*;

    fn quality() -> ClassConfig {
        ClassConfig {
            name: "q".into(),
            executor: ExecutorKind::Command,
            model_hash: zero_hash(),
            rule: RuleConfig::Exact,
            chat: None,
            replication: 1,
            reward_per_unit: 0,
            max_input_bytes: 64,
            lease_secs: 10,
            reveal_secs: 10,
            objective: Some(ObjectiveConfig {
                kind: ObjectiveKind::Quality,
                worker_budget_sats: 1000,
                validator_budget_sats: 100,
                baseline_ppm: 500_000,
                tolerance_ppm: 100_000,
                fast_ms: None,
                slow_ms: None,
            }),
        }
    }

    #[test]
    fn a_quality_class_states_its_terms_and_pays_only_through_them() {
        let terms = cairn_spec::consensus::ConsensusParams {
            worker_budget_sats: 1000,
            validator_budget_sats: 100,
            baseline: 500_000,
            tolerance: 100_000,
        };
        assert_eq!(quality().to_class().unwrap().objective, cairn_spec::Objective::Quality(terms));
        // A per-unit price would pay junk, and replicas of unequal workers would disagree.
        let paid = ClassConfig { reward_per_unit: 5, ..quality() }.to_class().unwrap_err();
        assert!(paid.to_string().contains("reward_per_unit = 0"), "{paid}");
        let twice = ClassConfig { replication: 2, ..quality() }.to_class().unwrap_err();
        assert!(twice.to_string().contains("replication = 1"), "{twice}");
        // A canary would accept anything there.
        let cfg = NodeConfig {
            network: "regtest".into(),
            classes: vec![quality()],
            canaries: vec![CanaryConfig {
                class: "q".into(),
                input_hex: "61".into(),
                answer_hex: "62".into(),
                units: 1,
            }],
            ..NodeConfig::default()
        };
        let e = cfg.lifecycle().unwrap_err();
        assert!(e.to_string().contains("no canaries"), "{e}");
    }

    #[test]
    fn a_latency_class_states_its_times() {
        let latency = |fast_ms, slow_ms| ClassConfig {
            replication: 2,
            reward_per_unit: 3,
            objective: Some(ObjectiveConfig {
                kind: ObjectiveKind::Latency,
                fast_ms,
                slow_ms,
                ..quality().objective.unwrap()
            }),
            ..quality()
        };
        let class = latency(Some(20), Some(2000)).to_class().unwrap();
        let cairn_spec::Objective::Latency(t) = class.objective else { panic!("{class:?}") };
        assert_eq!((t.fast_ms, t.slow_ms, t.consensus.worker_budget_sats), (20, 2000, 1000));
        for (f, s) in [(None, Some(2000)), (Some(20), None), (Some(20), Some(20)), (Some(1), Some(600_001))] {
            assert!(latency(f, s).to_class().is_err(), "{f:?} {s:?}");
        }
        let mut q = quality();
        q.objective.as_mut().unwrap().slow_ms = Some(100);
        assert!(q.to_class().unwrap_err().to_string().contains("latency classes only"));
    }
}
