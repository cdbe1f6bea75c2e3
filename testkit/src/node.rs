//! A node under test (feature `node`): typed config builders, starting a coordinator or a
//! follower in this process, a tiny HTTP/1.1 client over std sockets, a protocol-speaking
//! worker over real libp2p, and real worker agents.
//!
//! Owns the ways tests build and reach a node. Must never decide for a test what it asserts.
// Test support: a failed set-up is a failed test, so panicking on it is the point.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_coordinator::config::{
    BitcoinMode, BitcoinSection, ClassConfig, Layered as _, NodeConfig, RuleConfig,
};
use cairn_p2p::{Acceptance, Network, NetworkConfig, NetworkEvent, Peer};
use cairn_spec::work::commitment_value;
use cairn_spec::ExecutorKind;
use cairn_spec::{
    Claim, Commitment, ErrorReason, GossipMessage, Hash32, Payload, PubKey, Registration, RequestBody,
    ResponseBody, Reveal, Signed, SigningKey,
};
use serde_json::Value;

pub const ADDR: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

/// One HTTP request; returns (status, JSON body or the text as a JSON string).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    try_http(addr, method, path, token, body).expect("HTTP request failed")
}

/// As `http`, but `None` when the node cannot be reached or the connection breaks.
pub fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Option<(u16, Value)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let body = body.unwrap_or("");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let status: u16 = head.split(' ').nth(1).and_then(|c| c.parse().ok())?;
    let v = serde_json::from_str(rest).unwrap_or(Value::String(rest.to_string()));
    Some((status, v))
}

pub fn key(i: u32) -> SigningKey {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&(i + 1).to_be_bytes());
    b[31] = 0x42;
    SigningKey::from_secret_bytes(b).unwrap()
}

pub fn now() -> u64 {
    cairn_p2p::clock::unix_secs()
}

/// Sentences the embedding tests and the attack suite make their inputs of.
pub const SENTENCES: [&str; 16] = [
    "A man is playing a guitar.",
    "The cat sleeps on the warm windowsill.",
    "Interest rates rose again this quarter.",
    "Bitcoin blocks are found about every ten minutes.",
    "She planted tomatoes in the spring.",
    "The train to the city was delayed.",
    "Proof of work makes rewriting history expensive.",
    "Children were playing football in the park.",
    "A recipe for bread needs flour, water and yeast.",
    "The committee approved the new budget.",
    "Rain is expected over the mountains tonight.",
    "He fixed the bicycle with a borrowed wrench.",
    "The museum opens a new exhibition on Monday.",
    "Solar panels covered the roof of the barn.",
    "Two students argued about the meaning of the poem.",
    "The harbour was full of small fishing boats.",
];

/// A worker node: its own libp2p identity (its protocol key), connected to the coordinator.
pub struct Worker {
    pub key: SigningKey,
    pub net: Network,
    pub coord: Peer,
    pub coord_addr: String,
    pub announced: Arc<Mutex<Vec<Hash32>>>,
    /// The newest task announcement heard by gossip, as signed.
    pub last_announcement: Arc<Mutex<Option<Signed<cairn_spec::TaskAnnouncement>>>>,
    /// Tasks offered to this worker directly (SPEC §12.1), in order; each offer is answered `Ack`.
    pub offers: Arc<Mutex<Vec<Hash32>>>,
}

pub fn salt(w: &PubKey, task: &Hash32) -> [u8; 32] {
    let mut s = task.0;
    s[1] ^= w.as_bytes()[1];
    s[30] = 0xa5;
    s
}

impl Worker {
    pub async fn start(key: SigningKey, coord_addr: &str) -> Worker {
        let mut cfg = NetworkConfig::new(cairn_spec::Network::Regtest);
        cfg.heartbeat = Duration::from_millis(200);
        let (net, mut events) = Network::start(cfg, &key).await.unwrap();
        let coord: Peer = coord_addr.rsplit('/').next().unwrap().parse().unwrap();
        let announced = Arc::new(Mutex::new(Vec::new()));
        let last_announcement = Arc::new(Mutex::new(None));
        let offers = Arc::new(Mutex::new(Vec::new()));
        let (n2, a2, l2, o2) = (net.clone(), announced.clone(), last_announcement.clone(), offers.clone());
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                match ev {
                    NetworkEvent::Gossip { message, id, .. } => {
                        if let GossipMessage::Task(t) = message.as_ref() {
                            a2.lock().unwrap().push(cairn_spec::Object::id(&t.body.task));
                            *l2.lock().unwrap() = Some(t.clone());
                        }
                        let _ = n2.report(id, Acceptance::Accept).await;
                    }
                    NetworkEvent::Request { request, reply, .. } => {
                        let body = match request.body {
                            RequestBody::Offer(a) => {
                                o2.lock().unwrap().push(cairn_spec::Object::id(&a.body.task));
                                ResponseBody::Ack
                            }
                            _ => ResponseBody::error(ErrorReason::Malformed, "a worker answers only offers"),
                        };
                        let _ = n2.respond(reply, body).await;
                    }
                    _ => {}
                }
            }
        });
        net.dial(coord_addr).await.unwrap();
        let w = Worker {
            key,
            net,
            coord,
            coord_addr: coord_addr.to_string(),
            announced,
            last_announcement,
            offers,
        };
        // Connected once a request round-trips.
        for _ in 0..100 {
            if w.try_req(RequestBody::GetEpochs { from: 0, count: 1 }).await.is_some() {
                return w;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("worker could not reach the coordinator");
    }

    pub fn public(&self) -> PubKey {
        self.key.public()
    }

    /// One attempt; on a broken connection, dials again (the node may have restarted).
    pub async fn try_req(&self, body: RequestBody) -> Option<ResponseBody> {
        match self.net.request(&self.coord, body, Duration::from_secs(5)).await {
            Ok(r) => Some(r),
            Err(_) => {
                let _ = self.net.dial(&self.coord_addr).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                None
            }
        }
    }

    pub async fn req(&self, body: RequestBody) -> ResponseBody {
        for _ in 0..50 {
            match self.try_req(body.clone()).await {
                Some(ResponseBody::Error {
                    reason: ErrorReason::RateLimited | ErrorReason::WorkerLimit,
                    ..
                })
                | None => tokio::time::sleep(Duration::from_millis(100)).await,
                Some(r) => return r,
            }
        }
        panic!("request kept failing")
    }

    pub fn register_body(&self, coordinator: PubKey, difficulty: u32) -> RequestBody {
        let mut reg = Registration {
            network: cairn_spec::Network::Regtest,
            coordinator,
            worker: self.public(),
            payout_address: ADDR.into(),
            created_at: now(),
            pow_nonce: 0,
            bond: None,
        };
        assert!(reg.solve_pow(difficulty, 1 << 24));
        RequestBody::Register(Signed::sign(reg, &self.key, &[1; 32]))
    }

    pub fn claim_body(&self, task: Hash32) -> RequestBody {
        let c = Claim { task, worker: self.public(), claimed_at: now() };
        RequestBody::Claim(Signed::sign(c, &self.key, &[1; 32]))
    }

    pub fn commit_body(&self, task: Hash32, result: &[u8]) -> RequestBody {
        let v = commitment_value(
            &task,
            &self.public(),
            &cairn_spec::content_hash(result),
            &salt(&self.public(), &task),
        );
        let c = Commitment { task, worker: self.public(), commitment: v };
        RequestBody::Commit(Signed::sign(c, &self.key, &[1; 32]))
    }

    pub fn reveal_body(&self, task: Hash32, result: &[u8]) -> RequestBody {
        let r = Reveal {
            task,
            worker: self.public(),
            result: Payload::Inline(result.to_vec()),
            salt: salt(&self.public(), &task),
        };
        RequestBody::Reveal(Signed::sign(r, &self.key, &[1; 32]))
    }

    pub async fn register(&self, coordinator: PubKey, difficulty: u32) -> ResponseBody {
        self.req(self.register_body(coordinator, difficulty)).await
    }

    pub async fn claim(&self, task: Hash32) -> ResponseBody {
        self.req(self.claim_body(task)).await
    }

    pub async fn commit(&self, task: Hash32, result: &[u8]) -> ResponseBody {
        self.req(self.commit_body(task, result)).await
    }

    pub async fn reveal(&self, task: Hash32, result: &[u8]) -> ResponseBody {
        self.req(self.reveal_body(task, result)).await
    }

    /// Asks for `task` until the coordinator draws this worker for one of its slots (its tick
    /// draws once a second among the workers that asked) and the claim returns a lease; gives
    /// up after `within`. The last answer.
    pub async fn take(&self, task: Hash32, within: Duration) -> ResponseBody {
        let end = std::time::Instant::now() + within;
        loop {
            let r = self.claim(task).await;
            if matches!(r, ResponseBody::Lease { .. }) || std::time::Instant::now() >= end {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}

/// Runs `task` to its end with scripted workers over p2p: they keep asking for it, each one
/// drawn commits `result(i)` and reveals it (audit replicas and escalations are drawn after
/// the reveals). Returns the decided or failed task's public view.
pub async fn run_task(
    api: SocketAddr,
    ws: &[&Worker],
    task: Hash32,
    result: &dyn Fn(usize) -> Vec<u8>,
) -> Value {
    let mut on: Vec<usize> = Vec::new();
    let mut revealed: Vec<usize> = Vec::new();
    let end = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = http(api, "GET", &format!("/v1/tasks/{task}"), None, None);
        if v["phase"] == "decided" || v["phase"] == "failed" {
            return v;
        }
        assert!(std::time::Instant::now() < end, "task {task} not decided: {v}");
        for (i, w) in ws.iter().enumerate() {
            if !on.contains(&i) && matches!(w.claim(task).await, ResponseBody::Lease { .. }) {
                assert_eq!(w.commit(task, &result(i)).await, ResponseBody::Ack);
                on.push(i);
            }
        }
        for &i in &on {
            if !revealed.contains(&i) && ws[i].reveal(task, &result(i)).await == ResponseBody::Ack {
                revealed.push(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

type Started =
    (cairn_coordinator::node::NodeInfo, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>);

/// Starts a coordinator in this process; returns where it listens, its stop switch and its task.
pub async fn start_node(cfg: &NodeConfig) -> Started {
    start_role(cfg.clone(), false).await
}

/// Starts a follower (`cairn follow`) in this process.
pub async fn start_follower(cfg: &NodeConfig) -> Started {
    start_role(cfg.clone(), true).await
}

async fn start_role(cfg: NodeConfig, follower: bool) -> Started {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (info_tx, info_rx) = tokio::sync::oneshot::channel();
    let handle = tokio::spawn(async move {
        let stop = async move {
            let _ = stop_rx.await;
        };
        if follower {
            cairn_coordinator::follower::run::run(cfg, stop, Some(info_tx)).await.unwrap();
        } else {
            cairn_coordinator::node::run(cfg, stop, Some(info_tx)).await.unwrap();
        }
    });
    (info_rx.await.unwrap(), stop_tx, handle)
}

/// A config as the node reads it from a file: what tests hand to a `cairn` process.
pub fn to_toml(cfg: &NodeConfig) -> String {
    let text = toml::to_string(cfg).unwrap();
    assert_eq!(&NodeConfig::from_toml(&text).unwrap(), cfg, "the config survives its file");
    text
}

/// A follower config for tests: regtest, following the coordinator at `coordinator` (a p2p
/// address ending in its peer id), syncing every second, with `bitcoin` as its Bitcoin.
pub fn follower_config(dir: &std::path::Path, coordinator: &str, bitcoin: BitcoinSection) -> NodeConfig {
    let mut cfg = NodeConfig {
        network: "regtest".into(),
        data_dir: Some(dir.to_owned()),
        bitcoin,
        ..Default::default()
    };
    cfg.api.listen = "127.0.0.1:0".into();
    cfg.p2p.bootstrap = vec![coordinator.to_string()];
    cfg.follow.sync_secs = 1;
    cfg
}

/// No Bitcoin at all (tests and demos).
pub fn no_bitcoin() -> BitcoinSection {
    BitcoinSection { mode: BitcoinMode::None, ..Default::default() }
}

/// A coordinator config for nodes started in-process by tests and benches: regtest, the API
/// on any free port, no Bitcoin, registration by `pow` bits of work, no adaptive audits,
/// hour-long epochs, these classes.
pub fn node_config(data_dir: &std::path::Path, pow: u32, classes: Vec<ClassConfig>) -> NodeConfig {
    let mut cfg = NodeConfig {
        network: "regtest".into(),
        data_dir: Some(data_dir.to_owned()),
        bitcoin: no_bitcoin(),
        classes,
        ..Default::default()
    };
    cfg.api.listen = "127.0.0.1:0".into();
    cfg.lifecycle.pow_difficulty = pow;
    cfg.lifecycle.audit_min_ppm = 0;
    cfg.lifecycle.epoch_interval_secs = 3600;
    cfg
}

/// One task class with no model; leases and reveal windows last `window_secs`.
pub fn class(
    name: &str,
    executor: ExecutorKind,
    rule: RuleConfig,
    replication: u8,
    reward_per_unit: u64,
    max_input_bytes: u32,
    window_secs: u32,
) -> ClassConfig {
    ClassConfig {
        name: name.into(),
        executor,
        model_hash: "00".repeat(32),
        chat: None,
        rule,
        replication,
        reward_per_unit,
        max_input_bytes,
        lease_secs: window_secs,
        reveal_secs: window_secs,
        objective: None,
    }
}

/// An all-MiniLM-L6-v2 class, pinned to the model's hash, agreeing at cosine `theta` sentence
/// by sentence.
pub fn minilm_class(
    name: &str,
    theta: f64,
    replication: u8,
    reward_per_unit: u64,
    max_input_bytes: u32,
) -> ClassConfig {
    let rule = RuleConfig::CosineEach { threshold: theta, dim: 384 };
    ClassConfig {
        model_hash: cairn_worker::models::MINILM_SHA256.into(),
        ..class(name, ExecutorKind::Embedding, rule, replication, reward_per_unit, max_input_bytes, 60)
    }
}

/// An exact-match `command` class (the trivial executors of tests and benches), inputs up to
/// 4096 bytes.
pub fn exact_class(name: &str, replication: u8, reward_per_unit: u64, window_secs: u32) -> ClassConfig {
    class(name, ExecutorKind::Command, RuleConfig::Exact, replication, reward_per_unit, 4096, window_secs)
}

/// A node config for tests: regtest, no Bitcoin, one exact class, cheap registration.
pub fn test_config(dir: &std::path::Path) -> NodeConfig {
    node_config(dir, 4, vec![exact_class("echo", 1, 100, 30)])
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A regtest Bitcoin Core at `rpc_url` (cookie auth), polled every second, finality and
/// challenge window of 2 blocks, bonds re-checked every second.
pub fn core_bitcoin(rpc_url: &str, cookie: &std::path::Path) -> BitcoinSection {
    BitcoinSection {
        mode: BitcoinMode::Rpc,
        rpc_url: rpc_url.into(),
        cookie_file: Some(cookie.to_owned()),
        poll_secs: 1,
        bond_check_secs: 1,
        finality_depth: 2,
        challenge_window_blocks: 2,
        ..Default::default()
    }
}

/// `test_config` anchoring through the regtest node at `rpc_url`, on fixed free ports so a
/// restart listens where it did.
pub fn rpc_config(dir: &std::path::Path, rpc_url: &str, cookie: &std::path::Path) -> NodeConfig {
    let mut cfg = test_config(dir);
    cfg.bitcoin = core_bitcoin(rpc_url, cookie);
    fixed_ports(&mut cfg);
    cfg
}

/// The API and p2p on free ports chosen now, so a restart listens where it did.
pub fn fixed_ports(cfg: &mut NodeConfig) {
    cfg.api.listen = format!("127.0.0.1:{}", free_port());
    cfg.p2p.listen = vec![format!("/ip4/127.0.0.1/tcp/{}", free_port())];
}

/// The trivial executor of the end-to-end bench and the adversary test: the input,
/// upper-cased, in process (a `command` class with the exact rule).
pub struct Upper;

impl cairn_worker::executor::Executor for Upper {
    fn kind(&self) -> cairn_spec::ExecutorKind {
        cairn_spec::ExecutorKind::Command
    }
    fn rule(&self) -> cairn_spec::ComparisonRule {
        cairn_spec::ComparisonRule::ExactHash
    }
    fn run(&self, input: &[u8]) -> Result<Vec<u8>, cairn_worker::executor::ExecError> {
        Ok(input.to_ascii_uppercase())
    }
}

/// A running in-process worker agent: its stop switch and task.
pub type Agent = (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>);

/// Starts a real worker agent (`cairn_worker::agent`) with its own data dir, libp2p node and
/// journal, registered with the coordinator at `coord_p2p` once this returns.
/// A worker agent's config: regtest, data in `dir`, one coordinator at `coord_p2p`, p2p on a
/// free loopback port.
pub fn agent_config(dir: &std::path::Path, coord_p2p: &str) -> cairn_worker::config::WorkerConfig {
    cairn_worker::config::WorkerConfig {
        network: "regtest".into(),
        data_dir: dir.to_owned(),
        payout_address: ADDR.into(),
        coordinators: vec![cairn_worker::config::CoordinatorEntry { p2p: coord_p2p.into(), api: None }],
        p2p_listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        ..Default::default()
    }
}

pub async fn start_agent(
    dir: &std::path::Path,
    coord_p2p: &str,
    exec: std::sync::Arc<dyn cairn_worker::executor::Executor>,
) -> (cairn_worker::agent::WorkerInfo, Agent) {
    start_agent_with(agent_config(dir, coord_p2p), exec).await
}

/// As `start_agent`, with the worker config given.
pub async fn start_agent_with(
    cfg: cairn_worker::config::WorkerConfig,
    exec: std::sync::Arc<dyn cairn_worker::executor::Executor>,
) -> (cairn_worker::agent::WorkerInfo, Agent) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (info_tx, info_rx) = tokio::sync::oneshot::channel();
    let h = tokio::spawn(async move {
        let stop = async move {
            let _ = stop_rx.await;
        };
        let hooks = cairn_worker::agent::Hooks { started: Some(info_tx), progress: None };
        cairn_worker::agent::run(cfg, vec![exec], stop, hooks).await.unwrap();
    });
    (info_rx.await.expect("worker started"), (stop_tx, h))
}
