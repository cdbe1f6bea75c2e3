//! `cairn devnet`: a whole Cairn network on this machine in one command. A regtest Bitcoin
//! (a private `bitcoind` when one is found, else the embedded in-process chain, said loudly),
//! a coordinator and N workers on loopback over the real p2p stack, each with its own data
//! directory and RocksDB; a stream of demo tasks, a block every few seconds, epochs closed,
//! anchored and settled, workers paid in Bitcoin transactions.
//!
//! Owns the orchestration only: what it starts, in what order, and what it reports. It must
//! never reach into a node's state (it uses the HTTP API and Bitcoin RPC, as an operator
//! would), never present the embedded chain as Bitcoin Core, and never touch a directory it
//! did not create or was not given.

pub mod chain_rpc;
pub mod quality;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_anchor::regtest::RegtestNode;
use cairn_anchor::scripted::ScriptedBackend;
use cairn_anchor::{BitcoinCoreRpc, RpcAuth, RpcConfig};
use cairn_spec::api::{
    AnchorEntryStatus, Anchors, CoordinatorHealth, CoordinatorStats, EpochReceipts, Health, Stats, SubmitTask,
};
use serde_json::{json, Value};
use thiserror::Error;

use cairn_coordinator::config::{Layered as _, NodeConfig};
use cairn_coordinator::node::NodeInfo;

/// Why the devnet could not run.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DevnetError {
    /// A file or directory.
    #[error("{0}")]
    Io(String),
    /// Bitcoin (the node or the embedded chain).
    #[error("bitcoin: {0}")]
    Bitcoin(String),
    /// The coordinator.
    #[error("coordinator: {0}")]
    Node(String),
    /// A worker.
    #[error("worker: {0}")]
    Worker(String),
}

/// Which Bitcoin the devnet runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainChoice {
    /// `bitcoind` from `BITCOIND_EXE`, `PATH` or the cache of `scripts/bitcoin-core.sh` when
    /// found, else the embedded chain.
    Auto,
    /// The embedded in-process regtest chain (not Bitcoin Core).
    Embedded,
    /// This `bitcoind`.
    Bitcoind(PathBuf),
}

/// Options of `cairn devnet`.
#[derive(Clone, Debug)]
pub struct DevnetOptions {
    /// Where everything lives (default: a new directory under the system temp dir).
    pub data_dir: Option<PathBuf>,
    /// Keep the data directory when the devnet stops.
    pub keep: bool,
    /// Workers started.
    pub workers: usize,
    /// A block is mined this often.
    pub block_interval: Duration,
    /// An epoch is closed this often (when it has receipts or payouts are waiting).
    pub epoch_interval: Duration,
    /// A demo task is submitted this often.
    pub task_interval: Duration,
    /// The coordinator's API port on 127.0.0.1 (0: any free port).
    pub api_port: u16,
    /// Which Bitcoin.
    pub chain: ChainChoice,
    /// Where the embedding model is (fetched there when missing).
    pub models_dir: PathBuf,
    /// Run the embedding class (all-MiniLM-L6-v2) when the model can be had.
    pub embeddings: bool,
    /// Run the quality subnet (`quality`) with the embedding class: a scored class, two
    /// demo workers of lower quality and this many validators (0: none).
    pub validators: usize,
}

impl Default for DevnetOptions {
    fn default() -> Self {
        DevnetOptions {
            data_dir: None,
            keep: false,
            workers: 3,
            block_interval: Duration::from_secs(5),
            epoch_interval: Duration::from_secs(20),
            task_interval: Duration::from_secs(1),
            api_port: 8686,
            chain: ChainChoice::Auto,
            models_dir: cairn_worker::models::default_models_dir(),
            embeddings: true,
            validators: 3,
        }
    }
}

/// What the devnet is running on, once started.
#[derive(Clone, Debug)]
pub struct Started {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The coordinator's API (`http://127.0.0.1:port`): the dashboard is at `/`.
    pub api: String,
    /// The coordinator's data directory (its `operator.token` is there).
    pub coordinator_dir: PathBuf,
    /// Bitcoin RPC URL and cookie file (Bitcoin Core's, or the embedded chain's endpoint).
    pub rpc_url: String,
    /// Cookie file.
    pub rpc_cookie: PathBuf,
    /// True on the embedded chain.
    pub embedded: bool,
    /// `bitcoind`'s path, when on a real node.
    pub bitcoind: Option<PathBuf>,
    /// Task classes the demo submits.
    pub classes: Vec<String>,
    /// Why the embedding class is off, when it is.
    pub embeddings_off: Option<String>,
    /// Why the quality subnet is off, when it is.
    pub quality_off: Option<String>,
    /// The quality subnet's demo workers of lower quality: (data dir, what it does).
    pub personas: Vec<(PathBuf, String)>,
    /// Its validators' keys.
    pub validators: Vec<String>,
    /// The workers: (data dir, payout address).
    pub workers: Vec<(PathBuf, String)>,
}

/// One look at the running network (from the API and Bitcoin).
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// `/v1/stats` (all zeros when the coordinator did not answer).
    pub stats: CoordinatorStats,
    /// Anchors (from `/v1/anchors`): confirmed ones, newest first: (epoch, confirmations).
    pub confirmed: Vec<(u32, u32)>,
    /// Anchors waiting in the mempool.
    pub pending: usize,
    /// Bitcoin height.
    pub tip: Option<u32>,
    /// Demo tasks the devnet submitted / the API refused.
    pub submitted: u64,
    /// Refused submissions.
    pub refused: u64,
    /// Seconds since start.
    pub uptime: u64,
}

/// What is left when the devnet stops.
#[derive(Clone, Debug)]
pub struct Summary {
    /// How it ran.
    pub started: Started,
    /// The last status.
    pub last: Status,
    /// A receipt whose epoch is anchored, and the bundle and `.ots` written for it (in the
    /// data directory), for the audit instructions.
    pub sample: Option<Sample>,
    /// Whether the data directory was kept.
    pub kept: bool,
}

/// A receipt picked for the audit instructions.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Receipt id.
    pub receipt: String,
    /// Its proof bundle.
    pub bundle: PathBuf,
    /// The stamped receipt; `<stamped>.ots` beside it.
    pub stamped: PathBuf,
}

/// Demo inputs.
const SENTENCES: [&str; 12] = [
    "A miner points spare hashrate at useful work.",
    "The cat sleeps on the warm windowsill.",
    "Interest rates rose again this quarter.",
    "Bitcoin blocks are found about every ten minutes.",
    "She planted tomatoes in the spring.",
    "The train to the city was delayed.",
    "Proof of work makes rewriting history expensive.",
    "Children were playing football in the park.",
    "A recipe for bread needs flour, water and yeast.",
    "The committee approved the new budget.",
    "Receipts are committed to Bitcoin in one output.",
    "An auditor trusts nothing but the chain.",
];

fn io(what: impl std::fmt::Display) -> impl Fn(std::io::Error) -> DevnetError {
    move |e| DevnetError::Io(format!("{what}: {e}"))
}

fn new_data_dir() -> Result<PathBuf, DevnetError> {
    let mut r = [0u8; 4];
    getrandom::fill(&mut r).map_err(|e| DevnetError::Io(e.to_string()))?;
    let dir = std::env::temp_dir().join(format!("cairn-devnet-{}", hex::encode(r)));
    std::fs::create_dir_all(&dir).map_err(io(dir.display()))?;
    Ok(dir)
}

/// A regtest P2TR address for a key kept in `path` (created 0600): where a worker is paid, or
/// where the devnet's blocks pay.
fn address_for(path: &Path) -> Result<String, DevnetError> {
    let key = cairn_coordinator::keyfile::load_or_create(path).map_err(|e| DevnetError::Io(e.to_string()))?;
    Ok(cairn_anchor::anchor_address(&key.public(), cairn_spec::Network::Regtest).to_string())
}

enum Chain {
    Core(RegtestNode),
    Embedded(chain_rpc::EmbeddedRpc),
}

/// Canaries in the devnet's pool (one on average per ten tasks, each used once).
const CANARIES: usize = 200;

fn coordinator_toml(
    dir: &Path,
    opts: &DevnetOptions,
    rpc_url: &str,
    cookie: &Path,
    minilm: Option<&str>,
    quality: bool,
) -> String {
    let mut t = format!(
        r#"
network = "regtest"
data_dir = "{dir}"
canary_every = 10

[api]
listen = "127.0.0.1:{port}"

[p2p]
listen = ["/ip4/127.0.0.1/tcp/0"]

[bitcoin]
mode = "rpc"
rpc_url = "{rpc_url}"
cookie_file = "{cookie}"
poll_secs = 1
finality_depth = 2
challenge_window_blocks = 3
fallback_fee_sat_vb = 2
bond_check_secs = 60

[lifecycle]
pow_difficulty = 8
audit_min_ppm = 100000
epoch_interval_secs = {epoch}
epoch_max_receipts = 10000
payout_threshold_sats = 1000

[[class]]
name = "upper"
executor = "command"
rule = "exact"
replication = 2
reward_per_unit = 50
max_input_bytes = 4096
lease_secs = 30
reveal_secs = 30
"#,
        dir = dir.display(),
        port = opts.api_port,
        cookie = cookie.display(),
        epoch = opts.epoch_interval.as_secs().max(1),
    );
    // A pool of canaries shaped like the devnet's own tasks, each used once (SPEC.md §12).
    for i in 0..CANARIES {
        let n = 100_000 + 7 * i;
        let input = format!("task {n}: {}", SENTENCES[n % SENTENCES.len()]);
        t.push_str(&format!(
            "\n[[canary]]\nclass = \"upper\"\ninput_hex = \"{}\"\nanswer_hex = \"{}\"\n",
            hex::encode(&input),
            hex::encode(input.to_uppercase())
        ));
    }
    if let Some(hash) = minilm {
        t.push_str(&format!(
            r#"
[[class]]
name = "minilm"
executor = "embedding"
model_hash = "{hash}"
rule = {{ cosine_each = {{ threshold = 0.9999, dim = 384 }} }}
replication = 2
reward_per_unit = 20
max_input_bytes = 8192
lease_secs = 60
reveal_secs = 60
"#
        ));
    }
    if quality {
        t.push_str(&quality::class_toml());
    }
    t
}

fn worker_config(
    dir: &Path,
    payout: &str,
    coordinator_p2p: &str,
    api: &str,
    models: &Path,
    embeddings: bool,
) -> cairn_worker::config::WorkerConfig {
    let mut cfg = cairn_worker::config::WorkerConfig {
        network: "regtest".into(),
        data_dir: dir.to_owned(),
        payout_address: payout.into(),
        coordinators: vec![cairn_worker::config::CoordinatorEntry {
            p2p: coordinator_p2p.into(),
            api: Some(api.into()),
        }],
        p2p_listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        command: Some(cairn_worker::config::CommandSection {
            program: PathBuf::from("tr"),
            args: vec!["a-z".into(), "A-Z".into()],
            timeout_secs: 10,
            max_output_bytes: 4096,
        }),
        ..Default::default()
    };
    cfg.embedding.enabled = embeddings;
    cfg.embedding.models_dir = Some(models.to_owned());
    cfg
}

/// A running worker agent: its stop switch and its task.
type Agent =
    (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<Result<(), cairn_worker::agent::AgentError>>);

/// Starts a worker agent and waits until it has registered; why not, when it stopped first.
async fn start_agent(
    wcfg: cairn_worker::config::WorkerConfig,
    executors: Vec<Arc<dyn cairn_worker::executor::Executor>>,
) -> Result<Agent, String> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let hooks = cairn_worker::agent::Hooks { started: Some(started_tx), progress: None };
    let h = tokio::spawn(async move {
        cairn_worker::agent::run(
            wcfg,
            executors,
            async move {
                let _ = stop_rx.await;
            },
            hooks,
        )
        .await
    });
    if started_rx.await.is_err() {
        return Err(match h.await {
            Ok(Err(e)) => e.to_string(),
            _ => "stopped before registering".into(),
        });
    }
    Ok((stop_tx, h))
}

/// A blocking RPC call off the async threads.
async fn rpc_call(
    rpc: &Arc<BitcoinCoreRpc>,
    method: &'static str,
    params: Value,
) -> Result<Value, DevnetError> {
    let rpc = rpc.clone();
    tokio::task::spawn_blocking(move || rpc.raw_call(method, params))
        .await
        .map_err(|e| DevnetError::Bitcoin(e.to_string()))?
        .map_err(|e| DevnetError::Bitcoin(e.to_string()))
}

/// A blocking API GET off the async threads: the JSON body, `None` when there is no answer.
async fn api_get(api: &str, path: String) -> Option<Value> {
    let src = cairn_audit::source::ApiSource::new(api);
    tokio::task::spawn_blocking(move || src.get(&path).ok()).await.ok().flatten()
}

/// [`api_get`] read as the route's body type (`cairn_spec::api`); `None` when there is no
/// answer or it is not that type.
async fn api_get_as<T: serde::de::DeserializeOwned>(api: &str, path: String) -> Option<T> {
    serde_json::from_value(api_get(api, path).await?).ok()
}

/// Runs the devnet until `shutdown` resolves. `on_start` is told where everything is once the
/// network runs; `on_status` gets a look every two seconds.
pub async fn run(
    opts: DevnetOptions,
    shutdown: impl std::future::Future<Output = ()> + Send,
    on_start: impl FnOnce(&Started) + Send,
    mut on_status: impl FnMut(&Status) + Send,
) -> Result<Summary, DevnetError> {
    let t0 = Instant::now();
    let dir = match &opts.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(io(d.display()))?;
            d.clone()
        }
        None => new_data_dir()?,
    };
    let dir = std::fs::canonicalize(&dir).map_err(io(dir.display()))?;

    // Bitcoin.
    let exe = match &opts.chain {
        ChainChoice::Auto => cairn_anchor::regtest::find_bitcoind(),
        ChainChoice::Embedded => None,
        ChainChoice::Bitcoind(p) => Some(p.clone()),
    };
    let chain = match &exe {
        Some(exe) => {
            let (exe, datadir) = (exe.clone(), dir.join("bitcoind"));
            let node = tokio::task::spawn_blocking(move || RegtestNode::start(&exe, &datadir))
                .await
                .map_err(|e| DevnetError::Bitcoin(e.to_string()))?
                .map_err(|e| DevnetError::Bitcoin(format!("starting bitcoind: {e}")))?;
            Chain::Core(node)
        }
        None => Chain::Embedded(
            chain_rpc::EmbeddedRpc::start(ScriptedBackend::new(), &dir.join("embedded-chain"))
                .await
                .map_err(io("embedded chain"))?,
        ),
    };
    let (rpc_url, cookie) = match &chain {
        Chain::Core(n) => (n.rpc_url(), n.cookie_path()),
        Chain::Embedded(e) => (e.url.clone(), e.cookie.clone()),
    };
    let rpc = Arc::new(
        BitcoinCoreRpc::new(RpcConfig::new(rpc_url.clone(), RpcAuth::Cookie(cookie.clone())))
            .map_err(|e| DevnetError::Bitcoin(e.to_string()))?,
    );
    let miner = address_for(&dir.join("miner.key"))?;

    // The model (fetched when missing; the demo goes on without embeddings when it cannot be).
    let (minilm_hash, embeddings_off) = if opts.embeddings {
        let models = opts.models_dir.clone();
        match tokio::task::spawn_blocking(move || cairn_worker::models::fetch_minilm(&models, None)).await {
            Ok(Ok(_)) => (Some(cairn_worker::models::minilm_sha256().to_string()), None),
            Ok(Err(e)) => (None, Some(format!("the embedding model could not be fetched ({e})"))),
            Err(e) => (None, Some(e.to_string())),
        }
    } else {
        (None, Some("embeddings turned off".into()))
    };

    // The quality subnet's labelled sentences (the subnet is off without them).
    let (data, quality_off) = match (&minilm_hash, opts.validators) {
        (None, _) => (None, Some("needs the embedding model".to_owned())),
        (Some(_), 0) => (None, Some("no validators asked for".to_owned())),
        (Some(_), _) => {
            let fetched = tokio::task::spawn_blocking(|| {
                cairn_worker::datasets::sentiment(
                    &cairn_worker::datasets::default_datasets_dir(),
                    cairn_worker::datasets::DEFAULT_REGISTRY,
                )
            })
            .await;
            match fetched {
                Ok(Ok(d)) => (Some(Arc::new(d)), None),
                Ok(Err(e)) => (None, Some(format!("the labelled sentences could not be fetched ({e})"))),
                Err(e) => (None, Some(e.to_string())),
            }
        }
    };

    // The coordinator.
    let coord_dir = dir.join("coordinator");
    let toml = coordinator_toml(&coord_dir, &opts, &rpc_url, &cookie, minilm_hash.as_deref(), data.is_some());
    let cfg = NodeConfig::from_toml(&toml).map_err(|e| DevnetError::Node(e.to_string()))?;
    let (node_stop, node_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (info_tx, info_rx) = tokio::sync::oneshot::channel::<NodeInfo>();
    let mut node_task = tokio::spawn(async move {
        cairn_coordinator::node::run(
            cfg,
            async move {
                let _ = node_stop_rx.await;
            },
            Some(info_tx),
        )
        .await
    });
    let info = tokio::select! {
        i = info_rx => i.ok(),
        r = &mut node_task => {
            let why = match r {
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(())) => "stopped".into(),
                Err(e) => e.to_string(),
            };
            return Err(DevnetError::Node(why));
        }
    };
    let info = info.ok_or_else(|| DevnetError::Node("did not start".into()))?;
    let api = format!("http://{}", info.api);
    let token = std::fs::read_to_string(coord_dir.join("operator.token"))
        .map_err(io("operator token"))?
        .trim()
        .to_owned();

    // Fund the anchor key: one coinbase to it, matured by 100 more blocks.
    let anchor_address =
        info.anchor_address.clone().ok_or_else(|| DevnetError::Node("no anchor address".into()))?;
    rpc_call(&rpc, "generatetoaddress", json!([1, anchor_address])).await?;
    rpc_call(&rpc, "generatetoaddress", json!([100, miner])).await?;

    // Workers.
    let coord_p2p = info.p2p.first().cloned().ok_or_else(|| DevnetError::Node("no p2p address".into()))?;
    let mut workers = Vec::new();
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..opts.workers {
        let wdir = dir.join(format!("worker-{i}"));
        std::fs::create_dir_all(&wdir).map_err(io(wdir.display()))?;
        let payout = address_for(&wdir.join("payout.key"))?;
        let wcfg = worker_config(&wdir, &payout, &coord_p2p, &api, &opts.models_dir, minilm_hash.is_some());
        let executors = cairn_worker::agent::executors_from_config(&wcfg)
            .map_err(|e| DevnetError::Worker(e.to_string()))?;
        let (stop_tx, h) = start_agent(wcfg, executors)
            .await
            .map_err(|why| DevnetError::Worker(format!("worker {i}: {why}")))?;
        workers.push((wdir, payout));
        stops.push(stop_tx);
        tasks.push(h);
    }

    // The quality subnet: two demo workers of lower quality, and the validators.
    let mut personas = Vec::new();
    let mut validator_keys = Vec::new();
    let (validators_stop, validators_stop_rx) = tokio::sync::watch::channel(false);
    let mut validator_tasks = Vec::new();
    if let Some(data) = &data {
        let model = {
            let dir = cairn_worker::models::minilm_dir(&opts.models_dir);
            tokio::task::spawn_blocking(move || {
                cairn_worker::executor::embedding::MiniLm::load(
                    &dir,
                    Some(cairn_worker::models::minilm_sha256()),
                )
            })
            .await
            .map_err(|e| DevnetError::Worker(e.to_string()))?
            .map_err(|e| DevnetError::Worker(e.to_string()))?
        };
        let model = Arc::new(model);
        let kinds: [(&str, Arc<dyn cairn_worker::executor::Executor>); 2] = [
            (
                "demo persona: embeds only each sentence's first two words",
                Arc::new(quality::FirstWords(model)),
            ),
            ("demo persona: one vector for every sentence", Arc::new(quality::OneVector)),
        ];
        for (i, (what, persona)) in kinds.into_iter().enumerate() {
            let wdir = dir.join(format!("persona-{i}"));
            std::fs::create_dir_all(&wdir).map_err(io(wdir.display()))?;
            let payout = address_for(&wdir.join("payout.key"))?;
            let wcfg = worker_config(&wdir, &payout, &coord_p2p, &api, &opts.models_dir, false);
            let mut executors = cairn_worker::agent::executors_from_config(&wcfg)
                .map_err(|e| DevnetError::Worker(e.to_string()))?;
            executors.push(persona);
            let (stop_tx, h) = start_agent(wcfg, executors)
                .await
                .map_err(|why| DevnetError::Worker(format!("{what}: {why}")))?;
            personas.push((wdir, what.to_owned()));
            stops.push(stop_tx);
            tasks.push(h);
        }
        let class = NodeConfig::from_toml(&toml)
            .ok()
            .and_then(|c| c.classes.iter().find(|c| c.name == quality::CLASS).and_then(|c| c.to_class().ok()))
            .map(|c| cairn_spec::Object::id(&c))
            .ok_or_else(|| DevnetError::Node("the quality class is not in the config".into()))?;
        let setup = quality::Setup {
            coordinator: cairn_spec::PubKey::from_hex(&info.coordinator)
                .ok_or_else(|| DevnetError::Node("the coordinator's key does not parse".into()))?,
            p2p: coord_p2p.clone(),
            api: api.clone(),
            token: token.clone(),
            class,
            data: data.clone(),
            every: opts.task_interval.max(Duration::from_millis(200)) * 2,
        };
        for i in 0..opts.validators {
            let vdir = dir.join(format!("validator-{i}"));
            std::fs::create_dir_all(&vdir).map_err(io(vdir.display()))?;
            let key = cairn_coordinator::keyfile::load_or_create(&vdir.join("validator.key"))
                .map_err(|e| DevnetError::Io(e.to_string()))?;
            let bond_key = cairn_coordinator::keyfile::load_or_create(&vdir.join("bond.key"))
                .map_err(|e| DevnetError::Io(e.to_string()))?;
            // The bond: a coinbase paying to the bond key as the P2TR output key (SPEC.md
            // §5.4), its value the stake.
            let bond_addr = bitcoin::Address::p2tr_tweaked(
                bitcoin::key::TweakedPublicKey::dangerous_assume_tweaked(bond_key.public().x_only()),
                bitcoin::Network::Regtest,
            );
            let block = rpc_call(&rpc, "generatetoaddress", json!([1, bond_addr.to_string()])).await?;
            let hash = block.get(0).cloned().unwrap_or(Value::Null);
            let got = rpc_call(&rpc, "getblock", json!([hash])).await?;
            let txid = got["tx"][0]
                .as_str()
                .and_then(|t| t.parse::<bitcoin::Txid>().ok())
                .map(|t| cairn_spec::Hash32(bitcoin::hashes::Hash::to_byte_array(t)))
                .ok_or_else(|| DevnetError::Bitcoin("no coinbase in the bond's block".into()))?;
            let v = quality::Validator::start(&setup, key.clone(), &bond_key, txid)
                .await
                .map_err(|e| DevnetError::Node(format!("validator {i}: {e}")))?;
            validator_keys.push(key.public().to_hex());
            let (setup, stop) = (setup.clone(), validators_stop_rx.clone());
            validator_tasks.push(tokio::spawn(v.run(setup, i, stop)));
        }
    }

    let mut classes = vec!["upper".to_owned()];
    if minilm_hash.is_some() {
        classes.push("minilm".into());
    }
    let started = Started {
        data_dir: dir.clone(),
        api: api.clone(),
        coordinator_dir: coord_dir,
        rpc_url,
        rpc_cookie: cookie,
        embedded: matches!(chain, Chain::Embedded(_)),
        bitcoind: exe,
        classes: classes.clone(),
        embeddings_off,
        quality_off,
        personas,
        validators: validator_keys,
        workers,
    };
    on_start(&started);

    // The demo: tasks, blocks, status.
    let mut task_tick = tokio::time::interval(opts.task_interval.max(Duration::from_millis(50)));
    let mut block_tick = tokio::time::interval(opts.block_interval.max(Duration::from_millis(200)));
    let mut status_tick = tokio::time::interval(Duration::from_secs(2));
    for t in [&mut task_tick, &mut block_tick, &mut status_tick] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    block_tick.reset();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let (mut n, mut refused) = (0u64, 0u64);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            r = &mut node_task => {
                let why = match r { Ok(Err(e)) => e.to_string(), Ok(Ok(())) => "stopped".into(), Err(e) => e.to_string() };
                return Err(DevnetError::Node(why));
            }
            _ = task_tick.tick() => {
                let class = classes.get((n as usize) % classes.len()).cloned().unwrap_or_default();
                let text = match class.as_str() {
                    "minilm" => format!("{}\n{}", SENTENCES[(n as usize) % SENTENCES.len()], SENTENCES[(n as usize + 5) % SENTENCES.len()]),
                    _ => format!("task {n}: {}", SENTENCES[(n as usize) % SENTENCES.len()]),
                };
                let body = SubmitTask { class, input_text: Some(text), units: 1, budget_sats: 1000, nonce: Some(n), ..SubmitTask::default() };
                let (agent, url, auth) = (agent.clone(), format!("{api}/v1/tasks"), format!("Bearer {token}"));
                let ok = tokio::task::spawn_blocking(move || {
                    agent.post(&url).header("Authorization", &auth).send_json(&body).map(|r| r.status().as_u16() == 201).unwrap_or(false)
                }).await.unwrap_or(false);
                n += 1;
                if !ok { refused += 1; }
            }
            _ = block_tick.tick() => {
                if let Err(e) = rpc_call(&rpc, "generatetoaddress", json!([1, miner])).await {
                    tracing::warn!(target: "cairn::devnet", error = %e, "mining a block failed");
                }
            }
            _ = status_tick.tick() => {
                on_status(&look(&api, n, refused, t0).await);
            }
        }
    }

    // Before stopping: a receipt to audit, with its bundle and .ots beside the data.
    let last = look(&api, n, refused, t0).await;
    let sample = write_sample(&api, &dir).await;

    // Stop validators and workers, then the coordinator, then Bitcoin.
    let _ = validators_stop.send(true);
    for mut t in validator_tasks {
        if tokio::time::timeout(Duration::from_secs(15), &mut t).await.is_err() {
            t.abort();
        }
    }
    for s in stops {
        let _ = s.send(());
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }
    let _ = node_stop.send(());
    match tokio::time::timeout(Duration::from_secs(30), node_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(DevnetError::Node(e.to_string())),
        _ => return Err(DevnetError::Node("did not stop in 30 s".into())),
    }
    match chain {
        Chain::Core(mut node) => tokio::task::spawn_blocking(move || node.stop()).await.unwrap_or(()),
        Chain::Embedded(e) => drop(e),
    }
    if !opts.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(Summary { started, last, sample, kept: opts.keep })
}

async fn look(api: &str, submitted: u64, refused: u64, t0: Instant) -> Status {
    let stats = match api_get_as::<Stats>(api, "/v1/stats".into()).await {
        Some(Stats::Coordinator(s)) => s,
        _ => CoordinatorStats::default(),
    };
    let anchors = api_get_as::<Anchors>(api, "/v1/anchors".into()).await.unwrap_or_default();
    let confirmed = anchors
        .anchors
        .iter()
        .filter(|a| a.status == AnchorEntryStatus::Confirmed)
        .map(|a| (a.epoch, a.confirmations))
        .collect();
    Status {
        stats,
        confirmed,
        pending: anchors.anchors.iter().filter(|a| a.status == AnchorEntryStatus::Pending).count(),
        tip: anchors.tip_height,
        submitted,
        refused,
        uptime: t0.elapsed().as_secs(),
    }
}

/// Picks a receipt of an anchored epoch and writes its proof bundle and OpenTimestamps files
/// into the data directory.
async fn write_sample(api: &str, dir: &Path) -> Option<Sample> {
    let anchors = api_get_as::<Anchors>(api, "/v1/anchors".into()).await?;
    let settled =
        anchors.anchors.iter().filter(|a| a.status == AnchorEntryStatus::Confirmed).map(|a| a.epoch).max()?;
    for h in (0..=settled).rev() {
        let page = api_get_as::<EpochReceipts>(api, format!("/v1/epochs/{h}/receipts?limit=1")).await?;
        let Some(id) = page.ids.first() else {
            continue;
        };
        let id = id.to_hex();
        let bundle = dir.join("sample-receipt.bundle");
        let stamped = dir.join("sample-receipt");
        let fetch = |path: String, out: PathBuf| {
            let url = format!("{api}{path}");
            async move {
                tokio::task::spawn_blocking(move || -> Option<()> {
                    let mut r = ureq::get(&url).call().ok()?;
                    let bytes = r.body_mut().with_config().limit(8 << 20).read_to_vec().ok()?;
                    std::fs::write(&out, bytes).ok()
                })
                .await
                .ok()
                .flatten()
            }
        };
        fetch(format!("/v1/receipts/{id}/bundle?depth=1"), bundle.clone()).await?;
        fetch(format!("/v1/receipts/{id}/ots?file=stamped"), stamped.clone()).await?;
        fetch(format!("/v1/receipts/{id}/ots"), PathBuf::from(format!("{}.ots", stamped.display()))).await?;
        return Some(Sample { receipt: id, bundle, stamped });
    }
    None
}

/// `cairn mine`, regtest only: mines a block every `every` paying the coordinator's anchor
/// address (asked of its API), after enough blocks for the first coinbase to mature. What
/// funds anchoring and moves the chain on a private regtest network such as docker-compose's.
pub async fn mine(
    api: &str,
    rpc: BitcoinCoreRpc,
    every: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), DevnetError> {
    let rpc = Arc::new(rpc);
    let address = loop {
        match api_get(api, "/v1/health".into()).await.map(serde_json::from_value::<Health>) {
            Some(Ok(Health::Coordinator(CoordinatorHealth { anchor_address: Some(address), .. }))) => {
                break address
            }
            Some(_) => {
                return Err(DevnetError::Node(format!("{api} names no anchor address (is it anchoring?)")))
            }
            None => {
                tracing::info!(target: "cairn::mine", api, "coordinator API not answering yet");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let info = rpc_call(&rpc, "getblockchaininfo", json!([])).await?;
    if info["chain"] != "regtest" {
        return Err(DevnetError::Bitcoin(format!("cairn mine runs on regtest only, not {}", info["chain"])));
    }
    let height = info["blocks"].as_u64().unwrap_or(0);
    if height < 101 {
        rpc_call(&rpc, "generatetoaddress", json!([101 - height, address])).await?;
    }
    tracing::info!(target: "cairn::mine", %address, every = ?every, "mining to the anchor address");
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(200)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tick.tick() => {
                if let Err(e) = rpc_call(&rpc, "generatetoaddress", json!([1, address])).await {
                    tracing::warn!(target: "cairn::mine", error = %e, "mining failed");
                }
            }
        }
    }
}
