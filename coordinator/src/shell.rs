//! The node shell both roles run in, the coordinator (`node`) and the follower
//! (`follower::run`): the data directory, the node key and the database; the p2p network with
//! the node's metrics; the Bitcoin Core client; the HTTP API server and the `node.json`
//! announcement; the anchor side's view; and the stop in order (refuse new work, let the API
//! finish, stop the network and the anchor thread, close the database).
//!
//! Owns start-up and shutdown order and what both roles share. Must never decide anything a
//! role or a machine decides: each role brings its own loop, its own anchor thread and its
//! own answer to a request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cairn_anchor::{BitcoinCoreRpc, RpcAuth, RpcConfig};
use cairn_p2p::{Network, NetworkConfig, NetworkEvent};
use cairn_spec::SigningKey;
use tokio::sync::{mpsc, oneshot};

use crate::api::{self, AnchorView, ApiState};
use crate::config::NodeConfig;
use crate::keyfile;
use crate::metrics::NodeMetrics;
use crate::node::{NodeError, NodeInfo};
use crate::store::{KvStore, RocksStore};

/// How long a stopping node waits for in-flight HTTP requests.
const API_DRAIN: Duration = Duration::from_secs(10);

/// A background thread that ends once `stop` (its command or stop channel's sender) is dropped.
pub(crate) struct Background {
    /// Dropped to stop the thread.
    pub(crate) stop: Box<dyn std::any::Any + Send>,
    /// Joined once stopped.
    pub(crate) handle: std::thread::JoinHandle<()>,
}

/// A node's disk, identity, network and API while it runs.
pub(crate) struct Shell {
    /// The data directory.
    pub(crate) dir: PathBuf,
    /// The node's protocol key (also its p2p identity).
    pub(crate) key: SigningKey,
    /// The database.
    pub(crate) store: Arc<dyn KvStore>,
    /// What the anchor side reports to the API.
    pub(crate) anchor_view: Arc<RwLock<AnchorView>>,
    /// Set once the node stops taking work (`/v1/health` says so).
    pub(crate) stopping: Arc<AtomicBool>,
    /// The log target of the role running in this shell.
    target: &'static str,
    api: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
    metrics_api: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
    /// Released by [`Shell::announce`]: the listeners accept from their bind, but nothing is
    /// served before `node.json` says where the node is (a client that sees the API up finds
    /// the file).
    serve_after: Vec<oneshot::Sender<()>>,
    /// The data directory as chosen (whether keys may be created in it).
    pub(crate) data: cairn_config::DataDir,
    /// Where the metrics listener listens, once started.
    pub(crate) metrics_addr: Option<SocketAddr>,
}

/// The key in `name` under the data directory; a missing one is created only where the
/// directory allows it ([`cairn_config::DataDir::may_create_keys`]), and never when state made
/// with it exists (`in_use`).
pub(crate) fn load_key(
    data: &cairn_config::DataDir,
    name: &str,
    in_use: bool,
) -> Result<SigningKey, NodeError> {
    let path = data.path.join(name);
    if !path.exists() && !data.may_create_keys() {
        return Err(data.refuse_new_key(&path).into());
    }
    Ok(keyfile::load_or_create_for(&path, in_use)?)
}

impl Shell {
    /// Creates the data directory if needed, loads (or, on a new node, creates) the node key
    /// and opens the database.
    pub(crate) fn open(cfg: &NodeConfig, target: &'static str) -> Result<Self, NodeError> {
        let data = cfg.data_dir()?;
        // Refused before anything is written: no directory appears where no node may start.
        let node_key = data.path.join("node.key");
        if !node_key.exists() && !data.may_create_keys() {
            return Err(data.refuse_new_key(&node_key).into());
        }
        data.claim()?;
        let dir = data.path.clone();
        // A database was made with the node key: its headers and receipts are signed with it.
        let key = load_key(&data, "node.key", dir.join("db").exists())?;
        let store: Arc<dyn KvStore> =
            Arc::new(RocksStore::open(&dir.join("db")).map_err(|e| NodeError::Open(e.to_string()))?);
        Ok(Shell {
            data,
            dir,
            key,
            store,
            anchor_view: Arc::new(RwLock::new(AnchorView::default())),
            stopping: Arc::new(AtomicBool::new(false)),
            target,
            api: None,
            metrics_api: None,
            serve_after: Vec::new(),
            metrics_addr: None,
        })
    }

    /// Starts the p2p network from the config's `[p2p]` section with the node key as its
    /// identity, and the node's metrics registry (the network's counters in it).
    pub(crate) async fn start_p2p(
        &self,
        cfg: &NodeConfig,
        gossip_signers: Option<Vec<cairn_spec::PubKey>>,
    ) -> Result<(Network, mpsc::Receiver<NetworkEvent>, Vec<String>, Arc<NodeMetrics>), NodeError> {
        let mut ncfg = NetworkConfig::new(cfg.network()?);
        if !cfg.p2p.listen.is_empty() {
            ncfg.listen = cfg.p2p.listen.clone();
        }
        ncfg.bootstrap = cfg.p2p.bootstrap.clone();
        ncfg.mdns = cfg.p2p.mdns;
        ncfg.gossip_signers = gossip_signers;
        if let Some(rate) = cfg.p2p.requests_per_second {
            ncfg.requests_per_second = rate;
        }
        if let Some(burst) = cfg.p2p.request_burst {
            ncfg.request_burst = burst;
        }
        let (net, events) =
            Network::start(ncfg, &self.key).await.map_err(|e| NodeError::P2p(e.to_string()))?;
        let addrs =
            net.wait_listening(Duration::from_secs(10)).await.map_err(|e| NodeError::P2p(e.to_string()))?;
        let mut registry = prometheus_client::registry::Registry::default();
        net.register_metrics(&mut registry);
        Ok((net, events, addrs, Arc::new(NodeMetrics::new(registry))))
    }

    /// Serves the HTTP API on `[api] listen` with `state` until [`Shell::stop_api`].
    pub(crate) async fn serve_api(
        &mut self,
        cfg: &NodeConfig,
        state: ApiState,
    ) -> Result<SocketAddr, NodeError> {
        let listener = tokio::net::TcpListener::bind(&cfg.api.listen)
            .await
            .map_err(|e| NodeError::Io(format!("API listen {}: {e}", cfg.api.listen)))?;
        let addr = listener.local_addr().map_err(|e| NodeError::Io(e.to_string()))?;
        if let Some(m) = &cfg.api.metrics_listen {
            // Scrapers and probes on a port of their own, which can stay private when the
            // API is public.
            let listener = tokio::net::TcpListener::bind(m)
                .await
                .map_err(|e| NodeError::Io(format!("metrics listen {m}: {e}")))?;
            self.metrics_addr = Some(listener.local_addr().map_err(|e| NodeError::Io(e.to_string()))?);
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let app = api::metrics_router(state.clone());
            let (go_tx, go_rx) = oneshot::channel::<()>();
            self.serve_after.push(go_tx);
            let task = tokio::spawn(async move {
                if go_rx.await.is_err() {
                    return;
                }
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
            self.metrics_api = Some((stop_tx, task));
        }
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let heavy = api::heavy::Limits {
            per_second: cfg.api.heavy_reads_per_second,
            burst: cfg.api.heavy_read_burst,
            at_once: cfg.api.heavy_reads_at_once,
        };
        // Served with each client's address: the expensive reads are limited per client.
        let app = api::router(state, cfg.api.max_body_bytes, heavy)
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let (go_tx, go_rx) = oneshot::channel::<()>();
        self.serve_after.push(go_tx);
        let task = tokio::spawn(async move {
            if go_rx.await.is_err() {
                return;
            }
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await;
        });
        self.api = Some((stop_tx, task));
        Ok(addr)
    }

    /// Writes where the node can be reached to `<data-dir>/node.json`, and tells `started`.
    /// Then the API serves.
    pub(crate) fn announce(&mut self, info: NodeInfo, started: Option<oneshot::Sender<NodeInfo>>) {
        // Whole or not at all: a reader never sees half a file.
        let tmp = self.dir.join("node.json.tmp");
        let written = std::fs::write(&tmp, serde_json::to_vec_pretty(&info).unwrap_or_default())
            .and_then(|()| std::fs::rename(&tmp, self.dir.join("node.json")));
        if let Err(e) = written {
            tracing::warn!(target: "cairn::node", error = %e, "node.json not written");
        }
        for go in self.serve_after.drain(..) {
            let _ = go.send(());
        }
        if let Some(s) = started {
            let _ = s.send(info);
        }
    }

    /// The first step of stopping: refuse new work and let the API finish the requests in
    /// flight (for a while).
    pub(crate) async fn stop_api(&mut self) {
        tracing::info!(target: "cairn::node", role = self.target, "shutting down");
        self.stopping.store(true, Ordering::SeqCst);
        for (stop, task) in [self.api.take(), self.metrics_api.take()].into_iter().flatten() {
            let _ = stop.send(());
            let _ = tokio::time::timeout(API_DRAIN, task).await;
        }
    }

    /// The last step of stopping, once the role has drained its own work: stop the network
    /// and the anchor thread, then close the database (this drops the shell's handle).
    pub(crate) async fn close(mut self, net: Network, anchor: Option<Background>) {
        self.stop_api().await;
        net.shutdown().await;
        if let Some(Background { stop, handle }) = anchor {
            drop(stop);
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        tracing::info!(target: "cairn::node", role = self.target, "stopped cleanly");
    }
}

/// A Bitcoin Core client from the config's `[bitcoin]` section (a cookie file, or a user
/// and password).
pub(crate) fn rpc_client(cfg: &NodeConfig) -> Result<BitcoinCoreRpc, NodeError> {
    let b = &cfg.bitcoin;
    let auth =
        RpcAuth::from_parts(b.cookie_file.as_deref(), b.rpc_user.as_deref(), b.rpc_password.as_deref())
            .ok_or_else(|| {
                NodeError::Bitcoin("set bitcoin.cookie_file, or rpc_user and rpc_password".into())
            })?;
    BitcoinCoreRpc::new(RpcConfig::new(b.rpc_url.clone(), auth))
        .map_err(|e| NodeError::Bitcoin(e.to_string()))
}
