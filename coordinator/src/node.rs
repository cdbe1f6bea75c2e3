//! The running coordinator: in the node shell (`shell`: disk, key, network, API, stop
//! order) it opens the core, starts the anchor worker thread, and drives the core with
//! worker requests (in group commits), the HTTP API's writes (`api::Command`, with the
//! randomness they need drawn here), ticks, bond checks and Bitcoin reports until a shutdown
//! signal.
//!
//! Owns the coordinator's loop and what it drains before stopping (in-flight writes, then
//! their answers). Must never decide anything the lifecycle or anchor machines decide, and
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
}

fn resolve(data_dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        data_dir.join(p)
    }
}

/// Commands to the anchor thread.
enum AnchorCmd {
    Epoch(cairn_spec::AnchorPayload),
    Payouts(Vec<Payout>),
}

/// What the anchor thread reports after each round.
struct AnchorReport {
    tip: Option<(u32, Hash32)>,
    settled: Option<u32>,
    confirmed: Vec<(Vec<u64>, bitcoin::Txid, u32)>,
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
    let core = Arc::new(Mutex::new(core));

    let (net, mut events, p2p_addrs, metrics) = shell.start_p2p(&cfg).await?;

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
            let (tx, handle, addr) =
                start_anchor(&cfg, &dir, store.clone(), view.clone(), report_tx, metrics.clone(), queued)?;
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
        role: api::Role::Coordinator { core: core.clone(), commands: commands_tx, token: Arc::new(token) },
        store: store.clone(),
        network,
        coordinator: key.public(),
        anchor: view.clone(),
        metrics: metrics.clone(),
        stopping: shell.stopping.clone(),
        chain: bond_rpc.clone().map(|r| r as Arc<dyn ChainBackend + Send + Sync>),
        p2p: Arc::new(p2p_addrs.clone()),
        anchor_address: anchor_address.clone(),
    };
    let api_addr = shell.serve_api(&cfg, state).await?;
    let info = NodeInfo {
        api: api_addr,
        p2p: p2p_addrs,
        coordinator: key.public().to_hex(),
        anchor_address: anchor_address.clone(),
    };
    tracing::info!(target: "cairn::node", api = %api_addr, p2p = ?info.p2p, anchor_address = ?anchor_address, "serving");
    shell.announce(info, started);

    let (written_tx, written_rx) = mpsc::channel::<Written>(GROUPS_IN_FLIGHT);
    let (checking_tx, checking_rx) = mpsc::channel::<Checking>(GROUPS_CHECKING);
    // The decider and the answerer each report a failed write; the loop stops on the first.
    let (fatal_tx, mut fatal_rx) = mpsc::channel::<CoreError>(2);
    let ctx = Ctx {
        terms,
        core: core.clone(),
        bond_rpc,
        net: net.clone(),
        anchor: anchor_tx.clone(),
        metrics: metrics.clone(),
        written: mpsc::channel(1).0,
        checking: checking_tx,
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
    let mut announce = tokio::time::interval(Duration::from_secs(10));
    let mut bonds = tokio::time::interval(Duration::from_secs(cfg.bitcoin.bond_check_secs.max(1)));
    bonds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                    let mut batch = vec![(from, request, reply)];
                    let mut other = None;
                    while batch.len() < MAX_GROUP {
                        match events.try_recv() {
                            Ok(NetworkEvent::Request { from, request, reply }) => batch.push((from, request, reply)),
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
            Some(r) = reports.recv() => {
                if let Err(e) = ctx.on_report(r).await { break Err(e) }
            }
            _ = announce.tick() => ctx.reannounce().await,
            _ = bonds.tick() => {
                if let Err(e) = ctx.recheck_bonds().await {
                    break Err(e);
                }
            }
            _ = tick.tick() => {
                let now = unix_secs();
                match ctx.apply(move |m| Ok(((), m.tick(now)))).await {
                    Ok(((), effects)) => ctx.perform(effects).await,
                    Err(e @ (CoreError::Store(_) | CoreError::Poisoned)) => break Err(e.into()),
                    Err(_) => {}
                }
                metrics.open_tasks.set(ctx.core.lock().map(|c| c.machine().open_tasks().count() as i64).unwrap_or(0));
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
    drop(ctx);
    let _ = decider.await;
    let _ = answerer.await;
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
}

/// A group of worker messages decided by the machine: its answers (and effects) are sent
/// once its write is on disk.
struct Written {
    pending: crate::core::Pending<ResponseBody>,
    replies: Vec<ReplyToken>,
}

/// Groups in flight between the machine and their answers, at most (each holds up to
/// `MAX_GROUP` requests); the next group waits for a place.
pub const GROUPS_IN_FLIGHT: usize = 2;

/// A group of worker messages being checked (signatures, on every core).
struct Checking {
    checked: tokio::task::JoinHandle<Vec<(ReplyToken, Result<WorkerMsg, Refusal>)>>,
}

/// Groups whose check may run while the previous group is decided: the check of group N+1
/// (most of the node's CPU per message) overlaps the machine deciding group N, as the ingest
/// bench measures.
pub const GROUPS_CHECKING: usize = 1;

/// Decides each checked group, in the order the groups arrived: refusals from the check are
/// answered at once, the rest decided by the machine as one group and handed to
/// [`answer_groups`]. A failed decision (storage) answers the group with an error and stops:
/// `fatal` tells the node's loop, which then stops the node.
async fn decide_groups(ctx: Ctx, mut groups: mpsc::Receiver<Checking>, fatal: mpsc::Sender<CoreError>) {
    while let Some(Checking { checked }) = groups.recv().await {
        // A check cannot panic on bad input; should one panic anyway, its group gets no
        // answers rather than wrong ones (as `check_all` does for a panicking thread).
        let checked = checked.await.unwrap_or_default();
        let (mut replies, mut msgs) = (Vec::new(), Vec::new());
        for (reply, c) in checked {
            match c {
                Ok(m) => {
                    replies.push(reply);
                    msgs.push(m);
                }
                Err(r) => ctx.respond(reply, Err(r)).await,
            }
        }
        if msgs.is_empty() {
            continue;
        }
        let now = unix_secs();
        let core = ctx.core.clone();
        let decided = tokio::task::spawn_blocking(move || match core.lock() {
            Ok(mut c) => c.submit_many(msgs, |m, msg| dispatch(m, msg, now)),
            Err(_) => Err(CoreError::Poisoned),
        })
        .await
        .unwrap_or(Err(CoreError::Poisoned));
        let failure = match decided {
            // Answered once on disk, while the next group is checked and decided.
            Ok(pending) => match ctx.written.send(Written { pending, replies }).await {
                Ok(()) => continue,
                Err(_) => CoreError::Poisoned,
            },
            Err(e) => {
                ctx.unavailable(replies).await;
                e
            }
        };
        // The loop stops the node on the first failure it hears of; a second one is moot.
        let _ = fatal.try_send(failure);
        return;
    }
}

/// Answers each group once it is on disk, in the order the groups were decided, after
/// performing its effects. A failed write answers the group with an error and stops: `fatal`
/// tells the node's loop, which then stops the node.
async fn answer_groups(ctx: Ctx, mut groups: mpsc::Receiver<Written>, fatal: mpsc::Sender<CoreError>) {
    while let Some(Written { pending, replies }) = groups.recv().await {
        let written =
            tokio::task::spawn_blocking(move || pending.wait()).await.unwrap_or(Err(CoreError::Poisoned));
        match written {
            Ok((results, effects)) => {
                ctx.perform(effects).await;
                for (reply, answer) in replies.into_iter().zip(results) {
                    ctx.respond(reply, answer).await;
                }
            }
            Err(e) => {
                ctx.unavailable(replies).await;
                let _ = fatal.send(e).await;
                return;
            }
        }
    }
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

    /// Asks Bitcoin Core about every bond that admitted a worker: one that is spent, no longer
    /// confirmed, or now below the minimum ends that worker's admission. When Core cannot be
    /// reached nothing is decided (a node outage is not a spent bond).
    async fn recheck_bonds(&self) -> Result<(), NodeError> {
        let Some(rpc) = self.bond_rpc.clone() else { return Ok(()) };
        let (bonds, min) = match self.core.lock() {
            Ok(c) => (c.machine().bonded_workers(), c.machine().config().tunables.bond_min_sats),
            Err(_) => return Ok(()),
        };
        if bonds.is_empty() {
            return Ok(());
        }
        let lost = tokio::task::spawn_blocking(move || {
            bonds
                .into_iter()
                .filter_map(|(w, b)| match bond_status(&rpc, &b) {
                    Ok(Some(v)) if v >= min => None,
                    Ok(Some(v)) => Some((
                        w,
                        format!(
                            "bond output {}:{} holds {v} sats, below {min}",
                            bitcoin::Txid::from_byte_array(b.txid.0),
                            b.vout
                        ),
                    )),
                    Ok(None) => Some((
                        w,
                        format!(
                            "bond output {}:{} is spent or no longer confirmed",
                            bitcoin::Txid::from_byte_array(b.txid.0),
                            b.vout
                        ),
                    )),
                    Err(e) => {
                        tracing::debug!(target: "cairn::node", error = %e, "bond re-check postponed");
                        None
                    }
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (w, why) in lost {
            tracing::warn!(target: "cairn::node", worker = %w, reason = %why, "worker's bond lost: admission ended");
            let now = unix_secs();
            match self.apply(move |m| Ok(((), m.bond_lost(&w, why, now)))).await {
                Ok(((), effects)) => self.perform(effects).await,
                Err(e @ (CoreError::Store(_) | CoreError::Poisoned)) => return Err(e.into()),
                Err(_) => {}
            }
        }
        Ok(())
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
    /// effects performed. The randomness it needs (a missing nonce; which canary, and its
    /// nonce) is drawn here, at the edge.
    async fn on_command(&self, c: api::Command) {
        match c {
            api::Command::SubmitTask { submission: s, reply } => {
                let Some([nonce, pick, canary_nonce]) = draw() else {
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
                match self.apply(move |m| m.submit_request(request, [pick, canary_nonce], now)).await {
                    Ok((id, effects)) => {
                        self.metrics.tasks_submitted.inc();
                        let _ = reply.send(Ok(id));
                        self.perform(effects).await;
                    }
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
                Effect::Announce(a) => self.publish(GossipMessage::Task(*a)).await,
                Effect::Receipt(r) => {
                    self.metrics.receipts.inc();
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
                    self.publish(GossipMessage::Epoch(*h)).await
                }
                Effect::Anchor(p) => {
                    if let Some(a) = &self.anchor {
                        let _ = a.send(AnchorCmd::Epoch(p));
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

    async fn publish(&self, m: GossipMessage) {
        if let Err(e) = self.net.publish(&m).await {
            // No peers yet is normal on a fresh network; receivers can also pull by request.
            tracing::debug!(target: "cairn::node", error = %e, topic = ?m.topic(), "gossip not sent");
        }
    }

    async fn on_report(&self, r: AnchorReport) -> Result<(), NodeError> {
        let now = unix_secs();
        let mut effects = Vec::new();
        let res = self
            .apply(move |m| {
                let mut step = crate::lifecycle::Step::default();
                if let Some((h, hash)) = r.tip {
                    step.extend(m.on_chain_tip(h, hash));
                }
                if let Some(e) = r.settled {
                    step.extend(m.settle(e, now));
                }
                for (ids, txid, height) in &r.confirmed {
                    step.extend(m.payouts_confirmed(ids, *txid, *height));
                }
                Ok(((), step))
            })
            .await;
        match res {
            Ok(((), e)) => effects.extend(e),
            Err(e @ (CoreError::Store(_) | CoreError::Poisoned)) => return Err(e.into()),
            Err(_) => {}
        }
        self.perform(effects).await;
        Ok(())
    }

    /// Answers a group of requests: reads at once; worker messages are checked (sender bound
    /// to signer, signature) off the async threads and handed, in order, to `decide_groups`,
    /// which decides each group once its check is done while the next group is checked.
    async fn on_requests(&self, batch: Vec<(Peer, Request, ReplyToken)>) -> Result<(), NodeError> {
        let mut answers: Vec<(ReplyToken, Result<ResponseBody, Refusal>)> = Vec::new();
        let mut work: Vec<(Peer, RequestBody, ReplyToken)> = Vec::new();
        for (from, req, reply) in batch {
            if matches!(req.body, RequestBody::GetTerms) || crate::sync::is_read(&req.body) {
                answers.push((reply, self.read(req.body)));
            } else {
                work.push((from, req.body, reply));
            }
        }
        if !work.is_empty() {
            let rpc = self.bond_rpc.clone();
            let checked = tokio::task::spawn_blocking(move || check_all(work, rpc.as_deref()));
            if self.checking.send(Checking { checked }).await.is_err() {
                return Err(CoreError::Poisoned.into());
            }
        }
        for (reply, answer) in answers {
            self.respond(reply, answer).await;
        }
        Ok(())
    }

    /// Answers a group the node could not decide or write: it is stopping after a storage
    /// failure, and the workers retry elsewhere or after its restart.
    async fn unavailable(&self, replies: Vec<ReplyToken>) {
        for reply in replies {
            let body = ResponseBody::error(ErrorReason::Internal, "node unavailable");
            let _ = self.net.respond(reply, body).await;
        }
    }

    async fn respond(&self, reply: ReplyToken, answer: Result<ResponseBody, Refusal>) {
        let body = match answer {
            Ok(b) => {
                self.metrics.accepted_messages.inc();
                b
            }
            Err(r) => {
                self.metrics.refusals.inc();
                tracing::debug!(target: "cairn::node", reason = %r, "request refused");
                r.to_response()
            }
        };
        if let Err(e) = self.net.respond(reply, body).await {
            tracing::debug!(target: "cairn::node", error = %e, "response not sent");
        }
    }

    fn read(&self, body: RequestBody) -> Result<ResponseBody, Refusal> {
        if matches!(body, RequestBody::GetTerms) {
            return Ok(ResponseBody::Terms(Box::new((*self.terms).clone())));
        }
        crate::sync::answer(self.store()?.as_ref(), &body)
    }

    fn store(&self) -> Result<Arc<dyn KvStore>, Refusal> {
        self.core.lock().map(|c| c.store().clone()).map_err(|_| Refusal::Unavailable("node unavailable"))
    }
}

/// Most requests persisted in one group commit. Under load a group shares one synced write,
/// one write of each touched ledger, lock and worker row, and a receipt batch signature per
/// 256 receipts; the ingest bench (`cargo bench -p cairn-coordinator --bench ingest`) runs
/// groups of this size. A group of 512 reveals is checked in about 25 ms on 2 cores.
pub const MAX_GROUP: usize = 512;

/// A worker message whose sender and signature were checked.
enum WorkerMsg {
    Register(Verified<cairn_spec::Registration>, Option<u64>),
    Claim(Verified<cairn_spec::Claim>),
    Commit(Verified<cairn_spec::Commitment>),
    Reveal(Verified<cairn_spec::Reveal>),
}

/// Worker messages must come from the worker's own node (its libp2p identity is its protocol
/// key), so a relayed or replayed message from elsewhere is refused; then the signature.
/// Checks a group's messages on every core (signature verification is most of the node's
/// work per message), keeping their order.
fn check_all(
    work: Vec<(Peer, RequestBody, ReplyToken)>,
    rpc: Option<&BitcoinCoreRpc>,
) -> Vec<(ReplyToken, Result<WorkerMsg, Refusal>)> {
    let (replies, checks): (Vec<ReplyToken>, Vec<(Peer, RequestBody)>) =
        work.into_iter().map(|(from, body, reply)| (reply, (from, body))).unzip();
    // A checker cannot panic on bad input (every decoder and check returns a refusal);
    // should one panic anyway, the group gets no answers rather than wrong ones.
    match crate::parallel::map_ordered(checks, |(from, body)| check(&from, body, rpc)) {
        Ok(results) => replies.into_iter().zip(results).collect(),
        Err(_) => Vec::new(),
    }
}

fn check(from: &Peer, body: RequestBody, rpc: Option<&BitcoinCoreRpc>) -> Result<WorkerMsg, Refusal> {
    let bound = |signer: &cairn_spec::PubKey| {
        if from.protocol_key().as_ref() == Some(signer) {
            Ok(())
        } else {
            Err(Refusal::Invalid("message signer is not the sending peer's key".into()))
        }
    };
    match body {
        RequestBody::Register(s) => {
            bound(&s.body.worker)?;
            let bond = match (&s.body.bond, rpc) {
                (Some(b), Some(rpc)) => bond_value(rpc, b),
                _ => None,
            };
            Ok(WorkerMsg::Register(Verified::check(s)?, bond))
        }
        RequestBody::Claim(s) => {
            bound(&s.body.worker)?;
            Ok(WorkerMsg::Claim(Verified::check(s)?))
        }
        RequestBody::Commit(s) => {
            bound(&s.body.worker)?;
            Ok(WorkerMsg::Commit(Verified::check(s)?))
        }
        RequestBody::Reveal(s) => {
            bound(&s.body.worker)?;
            Ok(WorkerMsg::Reveal(Verified::check(s)?))
        }
        _ => Err(Refusal::Invalid("not a worker message".into())),
    }
}

fn dispatch(
    m: &mut crate::lifecycle::Machine,
    msg: WorkerMsg,
    now: u64,
) -> Result<(ResponseBody, crate::lifecycle::Step), Refusal> {
    match msg {
        WorkerMsg::Register(v, bond) => Ok((ResponseBody::Ack, m.register_bonded(v, bond, now)?)),
        WorkerMsg::Claim(v) => {
            let task = v.get().body.task;
            let (expires_at, step) = m.claim(v, now)?;
            Ok((ResponseBody::Lease { task, expires_at }, step))
        }
        WorkerMsg::Commit(v) => Ok((ResponseBody::Ack, m.commit(v, now)?)),
        WorkerMsg::Reveal(v) => Ok((ResponseBody::Ack, m.reveal(v, now)?)),
    }
}

/// Three random words from the OS.
fn draw() -> Option<[u64; 3]> {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).ok()?;
    let word =
        |i: usize| b.get(i * 8..i * 8 + 8).and_then(|s| <[u8; 8]>::try_from(s).ok()).map(u64::from_le_bytes);
    Some([word(0)?, word(1)?, word(2)?])
}

fn to_anchor_payouts(ps: &[PayoutRecord]) -> Vec<Payout> {
    ps.iter()
        .filter_map(|p| {
            let addr = p.address.parse::<bitcoin::Address<bitcoin::address::NetworkUnchecked>>().ok()?;
            Some(Payout {
                id: p.id,
                script_pubkey: addr.assume_checked().script_pubkey(),
                amount: bitcoin::Amount::from_sat(p.amount),
            })
        })
        .collect()
}

/// The value of a bond's output when Bitcoin Core reports it confirmed, unspent and paying to
/// the bond key (P2TR, output key = bond key); `None` otherwise or when Core is unreachable.
fn bond_value(rpc: &BitcoinCoreRpc, bond: &cairn_spec::Bond) -> Option<u64> {
    bond_status(rpc, bond).ok().flatten()
}

/// As [`bond_value`], telling "Core says no" (`Ok(None)`) from "Core did not answer" (`Err`).
fn bond_status(
    rpc: &BitcoinCoreRpc,
    bond: &cairn_spec::Bond,
) -> Result<Option<u64>, cairn_anchor::ChainError> {
    use bitcoin::key::TweakedPublicKey;
    let txid = bitcoin::Txid::from_byte_array(bond.txid.0);
    let Some(info) = rpc.utxo(&bitcoin::OutPoint { txid, vout: bond.vout }, false)? else { return Ok(None) };
    let script =
        bitcoin::ScriptBuf::new_p2tr_tweaked(TweakedPublicKey::dangerous_assume_tweaked(bond.key.x_only()));
    Ok((info.confirmations >= 1 && info.script_pubkey == script).then(|| info.value.to_sat()))
}

type AnchorStart = (std::sync::mpsc::Sender<AnchorCmd>, std::thread::JoinHandle<()>, String);

fn start_anchor(
    cfg: &NodeConfig,
    dir: &Path,
    store: Arc<dyn KvStore>,
    view: Arc<RwLock<AnchorView>>,
    reports: mpsc::Sender<AnchorReport>,
    metrics: Arc<NodeMetrics>,
    queued: Vec<PayoutRecord>,
) -> Result<AnchorStart, NodeError> {
    let network = cfg.network()?;
    let b = &cfg.bitcoin;
    let rpc = shell::rpc_client(cfg)?;
    rpc.wait_ready(Duration::from_secs(60)).map_err(|e| NodeError::Bitcoin(e.to_string()))?;
    let anchor_key: SigningKey = keyfile::load_or_create(&dir.join("anchor.key"))?;
    let address = cairn_anchor::anchor_address(&anchor_key.public(), network).to_string();
    let mut acfg = AnchorConfig::new(network);
    acfg.fallback_fee_rate = bitcoin::FeeRate::from_sat_per_vb_u32(b.fallback_fee_sat_vb.max(1));
    acfg.max_fee_per_anchor = bitcoin::Amount::from_sat(b.max_fee_per_anchor_sats);
    acfg.max_fee_per_day = bitcoin::Amount::from_sat(b.max_fee_per_day_sats);
    let mut driver = AnchorDriver::open(
        rpc,
        KvAnchorStore::new(store),
        acfg,
        Box::new(KeySigner::new(anchor_key)),
        b.start_height,
    )
    .map_err(|e| NodeError::Bitcoin(e.to_string()))?;
    // The lifecycle and the anchor persist in separate batches: a crash between the two can
    // leave payouts the lifecycle queued that the anchor never saw. Hand those over again
    // (payout ids make this idempotent: one the anchor already carries is not re-queued).
    let known: std::collections::HashSet<u64> = driver
        .machine()
        .head()
        .payout_queue
        .iter()
        .map(|p| p.id)
        .chain(driver.machine().records().values().flat_map(|r| r.payouts.iter().map(|p| p.id)))
        .collect();
    let missing: Vec<PayoutRecord> = queued.into_iter().filter(|p| !known.contains(&p.id)).collect();
    if !missing.is_empty() {
        tracing::warn!(target: "cairn::anchor", count = missing.len(), "re-queueing payouts the anchor had not recorded");
        driver.queue_payouts(to_anchor_payouts(&missing)).map_err(|e| NodeError::Bitcoin(e.to_string()))?;
    }
    let need = b.finality_depth.max(b.challenge_window_blocks);
    let poll = Duration::from_secs(b.poll_secs.max(1));
    let (tx, rx) = std::sync::mpsc::channel::<AnchorCmd>();
    if let Ok(mut v) = view.write() {
        v.enabled = true;
    }
    let handle = std::thread::Builder::new()
        .name("cairn-anchor".into())
        .spawn(move || {
            let mut last = Instant::now() - poll;
            loop {
                let wait = poll.saturating_sub(last.elapsed());
                match rx.recv_timeout(wait) {
                    Ok(AnchorCmd::Epoch(p)) => {
                        if let Err(e) = driver.submit_epoch(p) {
                            tracing::warn!(target: "cairn::anchor", error = %e, "epoch not recorded");
                        }
                        continue;
                    }
                    Ok(AnchorCmd::Payouts(ps)) => {
                        if let Err(e) = driver.queue_payouts(ps) {
                            tracing::warn!(target: "cairn::anchor", error = %e, "payouts not queued");
                        }
                        continue;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                }
                last = Instant::now();
                let mut aux = [0u8; 32];
                let _ = getrandom::fill(&mut aux);
                let notices = match driver.step(unix_secs(), aux) {
                    Ok(n) => n,
                    Err(e) => {
                        metrics.anchor_errors.inc();
                        tracing::warn!(target: "cairn::anchor", error = %e, "anchor round failed");
                        if let Ok(mut v) = view.write() {
                            v.last_error = Some(e.to_string());
                        }
                        continue;
                    }
                };
                for n in notices {
                    tracing::info!(target: "cairn::anchor", notice = ?n, "anchor");
                }
                // Every confirmed anchor's payouts, not only this round's: the lifecycle ignores
                // ids already paid, and a confirmation a crash made it miss is recorded now.
                let confirmed: Vec<(Vec<u64>, bitcoin::Txid, u32)> = driver
                    .machine()
                    .records()
                    .values()
                    .filter_map(|r| match r.status {
                        AnchorStatus::Confirmed { height, .. } if !r.payouts.is_empty() => {
                            Some((r.payouts.iter().map(|p| p.id).collect(), r.txid, height))
                        }
                        _ => None,
                    })
                    .collect();
                let tip = driver.backend().chain_info().ok();
                let tip_height = tip.as_ref().map(|t| t.tip_height);
                let mut anchors: Vec<AnchorEntry> = driver
                    .machine()
                    .records()
                    .values()
                    .map(|r| {
                        let (status, height) = match &r.status {
                            AnchorStatus::Pending => (AnchorEntryStatus::Pending, None),
                            AnchorStatus::Replaced { .. } => (AnchorEntryStatus::Replaced, None),
                            AnchorStatus::Confirmed { height, .. } => {
                                (AnchorEntryStatus::Confirmed, Some(*height))
                            }
                            AnchorStatus::Conflicted => (AnchorEntryStatus::Conflicted, None),
                        };
                        let confirmations = match (height, tip_height) {
                            (Some(h), Some(t)) => cairn_anchor::settle::confirmations(h, t),
                            _ => 0,
                        };
                        AnchorEntry {
                            txid: r.txid.to_string(),
                            epoch: r.payload.height,
                            header_hash: r.payload.header_hash,
                            status,
                            height,
                            confirmations,
                            fee_sats: r.fee.to_sat(),
                            payouts: r.payouts.iter().map(|p| p.id).collect(),
                        }
                    })
                    .collect();
                anchors.sort_by_key(|a| std::cmp::Reverse(a.epoch));
                let settled = tip_height.and_then(|t| driver.machine().settled_epoch(t, need));
                if let Ok(mut v) = view.write() {
                    *v = AnchorView {
                        enabled: true,
                        tip_height,
                        settled_epoch: settled,
                        anchors,
                        last_error: None,
                    };
                }
                let report = AnchorReport {
                    tip: tip.map(|t| (t.tip_height, Hash32(t.tip_hash.to_byte_array()))),
                    settled,
                    confirmed,
                };
                if reports.blocking_send(report).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| NodeError::Io(e.to_string()))?;
    Ok((tx, handle, address))
}
