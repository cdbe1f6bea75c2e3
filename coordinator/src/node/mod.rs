//! The running coordinator: in the node shell (`shell`: disk, key, network, API, stop
//! order) it opens the core, starts the anchor worker thread, and drives the core with
//! worker requests (in group commits), the HTTP API's writes (`api::Command`, with the
//! randomness they need drawn here), ticks, bond checks and Bitcoin reports until a shutdown
//! signal.
//!
//! Owns the coordinator's loop and what it drains before stopping (in-flight writes, then
//! their answers); worker requests are `requests`', the anchor thread `anchor`'s, bond checks
//! `bonds`'. Must never decide anything the lifecycle or anchor machines decide, and
//! never log a secret.

use cairn_p2p::clock::unix_secs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash as _;
use cairn_anchor::{
    AnchorConfig, AnchorDriver, AnchorStatus, BitcoinCoreRpc, ChainBackend, KeySigner, Payout,
};
use cairn_p2p::{Network, NetworkEvent, Peer, ReplyToken};
use cairn_spec::{ErrorReason, GossipMessage, Hash32, Request, RequestBody, ResponseBody, SigningKey};
use thiserror::Error;
use tokio::sync::mpsc;

use crate::anchor_store::KvAnchorStore;
use crate::api::{self, AnchorEntry, AnchorEntryStatus, AnchorView, ApiState};
use crate::config::{BitcoinMode, ConfigError, NodeConfig};
use crate::core::{Core, CoreError};
use crate::keyfile;
use crate::lifecycle::{Effect, PayoutRecord, Refusal, TaskRequest, Verified};
use crate::metrics::NodeMetrics;
use crate::shell::{self, Background, Shell};
use crate::store::KvStore;

mod anchor;
mod bonds;
mod held;
mod requests;
mod stages;

use anchor::{start_anchor, to_anchor_payouts, AnchorCmd, AnchorReport};
use bonds::bond_value;
use requests::{answer_groups, decide_groups, Checking, Written};
pub use requests::{GROUPS_CHECKING, GROUPS_IN_FLIGHT, MAX_GROUP};

/// Why the node could not start or had to stop.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A key file.
    #[error(transparent)]
    Key(#[from] keyfile::KeyFileError),
    /// Opening the database or the state in it.
    #[error("opening state: {0}")]
    Open(String),
    /// Bitcoin Core.
    #[error("bitcoin: {0}")]
    Bitcoin(String),
    /// Network.
    #[error("p2p: {0}")]
    P2p(String),
    /// I/O (data directory, API socket).
    #[error("{0}")]
    Io(String),
    /// A storage write failed while running.
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// Where a started node can be reached (also written to `<data-dir>/node.json`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct NodeInfo {
    /// HTTP API address.
    pub api: SocketAddr,
    /// p2p listen addresses (with `/p2p/<peer id>`).
    pub p2p: Vec<String>,
    /// The coordinator's protocol key.
    pub coordinator: String,
    /// The anchor address to fund, when anchoring.
    pub anchor_address: Option<String>,
    /// The metrics listener (`/metrics`, `/v1/ready`), when `api.metrics_listen` is set.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
}

fn resolve(data_dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        data_dir.join(p)
    }
}

/// Runs the node until `shutdown` resolves. `started` receives the node's addresses once
/// it serves.
pub async fn run(
    cfg: NodeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
    started: Option<tokio::sync::oneshot::Sender<NodeInfo>>,
) -> Result<(), NodeError> {
    let network = cfg.network()?;
    let lifecycle = cfg.lifecycle()?;
    let terms = Arc::new(cairn_spec::Terms {
        pow_difficulty: lifecycle.tunables.pow_difficulty,
        bond_min_sats: lifecycle.tunables.bond_min_sats,
        classes: lifecycle.classes.clone(),
    });
    if lifecycle.classes.is_empty() {
        tracing::warn!(target: "cairn::node", "no task classes configured: tasks cannot be submitted");
    }
    let mut shell = Shell::open(&cfg, "coordinator")?;
    let (dir, key, store) = (shell.dir.clone(), shell.key.clone(), shell.store.clone());
    let token = hex::encode(keyfile::load_or_create(&resolve(&dir, &cfg.api.token_file))?.secret_bytes());
    let core = Core::open(lifecycle, key.clone(), store.clone(), unix_secs())
        .map_err(|e| NodeError::Open(e.to_string()))?;
    tracing::info!(target: "cairn::node", coordinator = %key.public(), network = %network, "state opened");
    let board = core.board();
    let core = Arc::new(Mutex::new(core));

    // A coordinator takes in no one's gossip (it relays no other coordinator's objects yet,
    // federation, and its own come back only as replays): all of it is ignored before any
    // signature check.
    let (net, mut events, p2p_addrs, metrics) = shell.start_p2p(&cfg, Some(Vec::new())).await?;

    // Anchor thread.
    let view = shell.anchor_view.clone();
    let (report_tx, mut reports) = mpsc::channel::<AnchorReport>(64);
    let (anchor_tx, anchor_thread, anchor_address) = match cfg.bitcoin.mode {
        BitcoinMode::None => {
            tracing::warn!(target: "cairn::node", "bitcoin.mode = none: epochs are closed and signed but NOT ANCHORED TO BITCOIN; rewards never settle. For tests and demos only.");
            (None, None, None)
        }
        BitcoinMode::Rpc => {
            let queued: Vec<PayoutRecord> = match core.lock() {
                Ok(c) => c.machine().queued_payouts().cloned().collect(),
                Err(_) => Vec::new(),
            };
            let (tx, handle, addr) = start_anchor(
                &cfg,
                &shell.data,
                store.clone(),
                view.clone(),
                report_tx,
                metrics.clone(),
                queued,
            )?;
            (Some(tx), Some(handle), Some(addr))
        }
    };

    let bond_rpc = match cfg.bitcoin.mode {
        BitcoinMode::Rpc => Some(Arc::new(shell::rpc_client(&cfg)?)),
        BitcoinMode::None => None,
    };

    // HTTP API.
    let (commands_tx, mut commands) = mpsc::channel::<api::Command>(1024);
    let state = ApiState {
        role: api::Role::Coordinator { board: board.clone(), commands: commands_tx, token: Arc::new(token) },
        store: store.clone(),
        network,
        coordinator: key.public(),
        anchor: view.clone(),
        metrics: metrics.clone(),
        stopping: shell.stopping.clone(),
        chain: bond_rpc.clone().map(|r| r as Arc<dyn ChainBackend + Send + Sync>),
        p2p: Arc::new(p2p_addrs.clone()),
        anchor_address: anchor_address.clone(),
        calendar_depth: cfg.bitcoin.finality_depth.max(1),
        trees: Default::default(),
    };
    let api_addr = shell.serve_api(&cfg, state).await?;
    let info = NodeInfo {
        api: api_addr,
        p2p: p2p_addrs,
        coordinator: key.public().to_hex(),
        anchor_address: anchor_address.clone(),
        metrics: shell.metrics_addr,
    };
    tracing::info!(target: "cairn::node", api = %api_addr, p2p = ?info.p2p, anchor_address = ?anchor_address, "serving");
    shell.announce(info, started);

    let (written_tx, written_rx) = mpsc::channel::<Written>(GROUPS_IN_FLIGHT);
    let (checking_tx, checking_rx) = mpsc::channel::<Checking>(GROUPS_CHECKING);
    // The decider and the answerer each report a failed write; the loop stops on the first.
    let (fatal_tx, mut fatal_rx) = mpsc::channel::<CoreError>(2);
    let (released_tx, mut released_rx) = mpsc::unbounded_channel();
    let ctx = Ctx {
        terms,
        core: core.clone(),
        bond_rpc,
        net: net.clone(),
        anchor: anchor_tx.clone(),
        metrics: metrics.clone(),
        written: mpsc::channel(1).0,
        checking: checking_tx,
        held: Arc::new(Mutex::new(held::Held::default())),
        released: released_tx,
        stages: Arc::new(Mutex::new(stages::Stages::default())),
    };
    // Each stage holds only the sender of the stage after it (the others are closed
    // channels), so when the node's loop drops its context the checked groups drain through
    // the decider, then the decided ones through the answerer, and both stop.
    let decider = tokio::spawn(decide_groups(
        Ctx { written: written_tx, checking: mpsc::channel(1).0, ..ctx.clone() },
        checking_rx,
        fatal_tx.clone(),
    ));
    let answerer = tokio::spawn(answer_groups(
        Ctx { written: mpsc::channel(1).0, checking: mpsc::channel(1).0, ..ctx.clone() },
        written_rx,
        fatal_tx,
    ));
    // Effects lost to a crash between a write and its effects are redone at start: open tasks
    // are announced again and the newest epoch handed to the anchor again (both idempotent).
    ctx.recover().await;

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ticks: u64 = 0;
    // The store never changes while the node runs: taken once, not under the core's lock each tick.
    let store = ctx
        .core
        .lock()
        .map(|c| c.store().clone())
        .map_err(|_| NodeError::Open("the core's lock is poisoned".into()))?;
    let mut announce = tokio::time::interval(Duration::from_secs(10));
    let mut bonds = tokio::time::interval(Duration::from_secs(cfg.bitcoin.bond_check_secs.max(1)));
    bonds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Canaries are released on a timer of their own, at a random point of each wait: released
    // by the tick they would appear at the tick's fixed phase in the second, where no
    // requester's task does.
    let canary_wait = || Duration::from_millis(200 + draw().map_or(0, |d| d[0] % 1600));
    let canary_timer = tokio::time::sleep(canary_wait());
    tokio::pin!(canary_timer);
    let mut pool_empty_told = false;
    let mut writes = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    let result: Result<(), NodeError> = loop {
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            Some(e) = fatal_rx.recv() => break Err(e.into()),
            ev = events.recv() => match ev {
                Some(NetworkEvent::Request { from, request, reply }) => {
                    // Group commit: take every request already waiting (up to a bound) and
                    // persist their changes in one synced batch.
                    let mut batch = vec![(from, *request, reply, None)];
                    let mut other = None;
                    while batch.len() < MAX_GROUP {
                        match events.try_recv() {
                            Ok(NetworkEvent::Request { from, request, reply }) => batch.push((from, *request, reply, None)),
                            Ok(ev) => {
                                other = Some(ev);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = ctx.on_requests(batch).await {
                        break Err(e);
                    }
                    if let Some(NetworkEvent::Gossip { id, .. }) = other {
                        let _ = net.report(id, cairn_p2p::Acceptance::Ignore).await;
                    }
                }
                Some(NetworkEvent::Gossip { id, .. }) => {
                    // Coordinators do not relay other coordinators' objects yet (federation).
                    let _ = net.report(id, cairn_p2p::Acceptance::Ignore).await;
                }
                Some(_) => {}
                None => break Err(NodeError::P2p("network stopped".into())),
            },
            // A write waits for its synced batch off the loop, so worker requests keep
            // flowing; the core's lock keeps writes in order.
            Some(c) = commands.recv() => {
                let ctx = ctx.clone();
                writes.spawn(async move { ctx.on_command(c).await });
            }
            Some(_) = writes.join_next(), if !writes.is_empty() => {}
            // Reveals held for a window that has opened: decided like any request now.
            Some(batch) = released_rx.recv() => {
                if let Err(e) = ctx.on_requests(batch).await {
                    break Err(e);
                }
            }
            Some(r) = reports.recv() => {
                if let Err(e) = ctx.on_report(r).await { break Err(e) }
            }
            _ = announce.tick() => ctx.reannounce().await,
            _ = bonds.tick() => {
                if let Err(e) = ctx.recheck_bonds().await {
                    break Err(e);
                }
            }
            _ = &mut canary_timer => {
                canary_timer.as_mut().reset(tokio::time::Instant::now() + canary_wait());
                let now = unix_secs();
                match ctx.apply(move |m| Ok(((), m.release_canaries(now)))).await {
                    Ok(((), effects)) => ctx.perform(effects).await,
                    Err(e @ (CoreError::Store(_) | CoreError::Poisoned)) => break Err(e.into()),
                    Err(_) => {}
                }
                // The operator's to know, in its logs only (a public figure would tell workers
                // that no canary can come).
                if !pool_empty_told {
                    let empty = ctx.core.lock().is_ok_and(|c| {
                        let m = c.machine();
                        m.config().canary_every > 0 && m.canaries_left() == 0
                    });
                    if empty {
                        tracing::warn!(target: "cairn::node", "every configured canary has been used: add fresh [[canary]] entries (each is used once)");
                        pool_empty_told = true;
                    }
                }
            }
            _ = tick.tick() => {
                // First, before the tick waits for the core: held reveals whose hold is over
                // get the answer they would have had at once.
                let expired = ctx
                    .held
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .expired(cairn_p2p::clock::unix_millis());
                for (_, reply) in expired {
                    ctx.respond(reply, Err(Refusal::TooEarly("reveals are not open yet: retry".into()))).await;
                }
                let now = unix_secs();
                match ctx.apply(move |m| Ok(((), m.tick(now)))).await {
                    Ok(((), effects)) => ctx.perform(effects).await,
                    Err(e @ (CoreError::Store(_) | CoreError::Poisoned)) => break Err(e.into()),
                    Err(_) => {}
                }

                metrics.open_tasks.set(ctx.core.lock().map(|c| c.machine().open_tasks().count() as i64).unwrap_or(0));
                // RocksDB's memory every tenth tick: its properties take the engine's own locks.
                ticks += 1;
                if ticks % 10 == 1 {
                    if let Some(m) = store.memory() {
                        metrics.set_store_memory(&m);
                    }
                }
            }
        }
    };

    // Shutdown: refuse new work and let the API finish in-flight requests; perform what they
    // left, drain the groups in flight; then the shell stops the network and the anchor
    // thread and closes the database (dropping the last handle).
    // A write the API handed over before this point is decided and answered; one it tries to
    // hand over after is refused as the node stopping.
    commands.close();
    while let Ok(c) = commands.try_recv() {
        let ctx = ctx.clone();
        writes.spawn(async move { ctx.on_command(c).await });
    }
    while writes.join_next().await.is_some() {}
    shell.stop_api().await;
    // Groups already checked are decided, and decided ones written and answered, before the
    // network stops.
    let held = ctx.held.clone();
    drop(ctx);
    let _ = decider.await;
    let _ = answerer.await;
    // Reveals still held, or released and not yet decided: answered, not left to time out.
    let mut waiting: Vec<ReplyToken> = held
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .drain()
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    while let Ok(batch) = released_rx.try_recv() {
        waiting.extend(batch.into_iter().map(|(_, _, reply, _)| reply));
    }
    for reply in waiting {
        let _ = net.respond(reply, ResponseBody::error(ErrorReason::TooEarly, "node stopping: retry")).await;
    }
    let anchor = anchor_tx.zip(anchor_thread).map(|(tx, handle)| Background { stop: Box::new(tx), handle });
    drop(core);
    drop(store);
    shell.close(net, anchor).await;
    result
}

#[derive(Clone)]
struct Ctx {
    /// What `GetTerms` answers: fixed for the life of the process (config is read at start).
    terms: Arc<cairn_spec::Terms>,
    core: Arc<Mutex<Core>>,
    /// Bitcoin Core client for bond checks (`None` without Bitcoin).
    bond_rpc: Option<Arc<BitcoinCoreRpc>>,
    net: Network,
    anchor: Option<std::sync::mpsc::Sender<AnchorCmd>>,
    metrics: Arc<NodeMetrics>,
    /// Groups decided and on their way to disk, answered in order by [`answer_groups`]
    /// (live only in the copy `decide_groups` holds).
    written: mpsc::Sender<Written>,
    /// Groups being checked, decided in order by [`decide_groups`] (live only in the node
    /// loop's copy).
    checking: mpsc::Sender<Checking>,
    /// Reveals that came before their task's window, held until it opens.
    held: Arc<Mutex<held::Held<ReplyToken>>>,
    /// Held reveals released by their window opening, back to the node's loop (unbounded:
    /// the loop feeds the pipeline that releases them, and at most `MAX_HELD` are held).
    released: mpsc::UnboundedSender<Vec<requests::Incoming>>,
    /// When each task reached each stage, for `cairn_task_stage_seconds`.
    stages: Arc<Mutex<stages::Stages>>,
}

impl Ctx {
    async fn apply<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut crate::lifecycle::Machine) -> Result<(T, crate::lifecycle::Step), Refusal>
            + Send
            + 'static,
    ) -> Result<(T, Vec<Effect>), CoreError> {
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || match core.lock() {
            Ok(mut c) => c.apply(f),
            Err(_) => Err(CoreError::Poisoned),
        })
        .await
        .unwrap_or(Err(CoreError::Poisoned))
    }

    async fn recover(&self) {
        let last = match self.core.lock() {
            Ok(c) => c.machine().meta().last_header.clone(),
            Err(_) => return,
        };
        self.reannounce().await;
        if let (Some(h), Some(a)) = (last, &self.anchor) {
            let _ = a.send(AnchorCmd::Epoch(cairn_spec::AnchorPayload {
                height: h.body.height,
                header_hash: h.id(),
            }));
        }
    }

    /// Announces again the tasks that still have open slots (workers that joined after the
    /// first announcement, escalations, expired leases). Fresh `announced_at`, so gossip does
    /// not drop them as duplicates.
    async fn reannounce(&self) {
        let anns = match self.core.lock() {
            Ok(c) => c.machine().open_announcements(unix_secs(), 256),
            Err(_) => return,
        };
        for a in anns {
            self.publish(GossipMessage::Task(a)).await;
        }
    }

    /// A write from the HTTP API: decided by the lifecycle, persisted, answered, then its
    /// effects performed. The randomness it needs (a missing nonce; whether a canary
    /// becomes due, and when it is released) is drawn here, at the edge.
    async fn on_command(&self, c: api::Command) {
        match c {
            api::Command::SubmitTask { submission: s, reply } => {
                let came = Instant::now();
                let Some([nonce, canary_due, canary_delay]) = draw() else {
                    let _ = reply.send(Err(Refusal::Unavailable("no randomness from the OS").into()));
                    return;
                };
                let s = *s;
                let request = TaskRequest {
                    class: s.class,
                    requester: s.requester,
                    nonce: s.nonce.unwrap_or(nonce),
                    units: s.units,
                    budget_sats: s.budget_sats,
                    input: s.payload,
                    blob: s.blob,
                    canary: s.canary,
                };
                let now = unix_secs();
                // The core is held only to decide; its write is waited for without it, so
                // worker messages and other submissions share the group commits meanwhile.
                let core = self.core.clone();
                let decided = tokio::task::spawn_blocking(move || {
                    let pending = match core.lock() {
                        Ok(mut c) => c.submit_task(request, [canary_due, canary_delay], now)?,
                        Err(_) => return Err(CoreError::Poisoned),
                    };
                    pending.wait()
                })
                .await
                .unwrap_or(Err(CoreError::Poisoned));
                match decided {
                    Ok((mut answers, effects)) => match answers.pop() {
                        Some(Ok(id)) => {
                            // Timed from its first acceptance only (a retry is the same task).
                            if !effects.is_empty() {
                                self.stage(id, stages::Event::Accepted(came));
                            }
                            let _ = reply.send(Ok(id));
                            self.perform(effects).await;
                        }
                        Some(Err(r)) => {
                            let _ = reply.send(Err(r.into()));
                        }
                        None => {
                            let _ = reply.send(Err(CoreError::Poisoned));
                        }
                    },
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            api::Command::CloseEpoch { reply } => {
                let now = unix_secs();
                match self.apply(move |m| Ok(((), m.close_epoch(now)))).await {
                    Ok(((), effects)) => {
                        let closed = effects.iter().find_map(|e| match e {
                            Effect::Epoch(h) => Some(h.body.height),
                            _ => None,
                        });
                        let _ = reply.send(Ok(closed));
                        self.perform(effects).await;
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
        }
    }

    async fn perform(&self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Announce(a) => {
                    let task = cairn_spec::Object::id(&a.body.task);
                    self.publish(GossipMessage::Task(*a)).await;
                    self.stage(task, stages::Event::Announced);
                }
                Effect::Offer { announcement, to } => {
                    // Off the loop: a worker slow to answer holds up nothing; one not
                    // connected hears of its offer by gossip.
                    for worker in to {
                        let (net, body) = (self.net.clone(), RequestBody::Offer(announcement.clone()));
                        tokio::spawn(async move {
                            if let Ok(Some(peer)) = net.connected_peer_of(&worker).await {
                                // A worker it offers work to gets its gossip directly, however
                                // crowded its mesh (SPEC.md §11.3).
                                let _ = net.prefer(&peer).await;
                                let _ = net.request(&peer, body, OFFER_TIMEOUT).await;
                            }
                        });
                    }
                }
                Effect::Receipt(r) => {
                    self.metrics.receipts.inc();
                    self.stage(r.body.task, stages::Event::Decided);
                    self.publish(GossipMessage::Receipt(*r)).await
                }
                // The core seals every receipt before a step is written; one left unsealed
                // is not gossiped.
                Effect::UnsealedReceipt(r) => {
                    tracing::error!(target: "cairn::node", receipt = %cairn_spec::Object::id(r.as_ref()), "unsealed receipt not gossiped")
                }
                Effect::Epoch(h) => {
                    self.metrics.epochs.inc();
                    tracing::info!(target: "cairn::node", height = h.body.height, hash = %h.id(), receipts = h.body.receipt_count, "epoch closed");
                    self.publish(GossipMessage::Epoch(h)).await
                }
                Effect::Anchor(p) => {
                    if let Some(a) = &self.anchor {
                        let _ = a.send(AnchorCmd::Epoch(p));
                    }
                }
                Effect::RevealsOpen(task) => {
                    self.stage(task, stages::Event::WindowOpen);
                    let out =
                        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).release(&task);
                    if !out.is_empty() {
                        let batch = out
                            .into_iter()
                            .map(|(r, reply)| (r.from, r.request.clone(), reply, Some(r)))
                            .collect();
                        let _ = self.released.send(batch);
                    }
                }
                Effect::Payouts(ps) => {
                    if let Some(a) = &self.anchor {
                        let _ = a.send(AnchorCmd::Payouts(to_anchor_payouts(&ps)));
                    }
                }
            }
        }
    }

    /// Marks `event` of `task` now (`stages`).
    fn stage(&self, task: Hash32, event: stages::Event) {
        let mut s = self.stages.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        s.on(task, event, Instant::now(), &self.metrics);
    }

    async fn publish(&self, m: GossipMessage) {
        if let Err(e) = self.net.publish(&m).await {
            // No peers yet is normal on a fresh network; receivers can also pull by request.
            tracing::debug!(target: "cairn::node", error = %e, topic = ?m.topic(), "gossip not sent");
        }
    }
}

/// How long an offer's answer is waited for: the offer lasts `offer_secs`, and gossip carries
/// it too.
const OFFER_TIMEOUT: Duration = Duration::from_secs(5);

/// Three random words from the OS.
fn draw() -> Option<[u64; 3]> {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).ok()?;
    let word =
        |i: usize| b.get(i * 8..i * 8 + 8).and_then(|s| <[u8; 8]>::try_from(s).ok()).map(u64::from_le_bytes);
    Some([word(0)?, word(1)?, word(2)?])
}
