//! The running follower (`cairn follow`): opens its own database and p2p identity, syncs
//! epochs from its peers (the coordinator, or other followers) over the request protocol,
//! has each judged by [`Follower::judge`] before one synced write keeps it, scans its own
//! Bitcoin Core for the anchors, and serves the read API and the sync protocol to others.
//!
//! Owns the follower's I/O and its shutdown order. Must never accept an epoch the follower
//! refused, nor take worker messages (a follower runs no lifecycle).

use cairn_p2p::clock::unix_secs;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use cairn_anchor::ChainBackend;
use cairn_p2p::{Acceptance, Network, NetworkEvent, Peer};
use cairn_spec::wire::{MAX_LEDGER_PER_REQUEST, MAX_RECEIPTS_PER_REQUEST};
use cairn_spec::{AnchorBinding, GossipMessage, PubKey, RequestBody, ResponseBody, SignedEpochHeader};

use super::anchors::{AnchorTracker, FoundAnchor};
use super::{Evidence, FetchedEpoch, Follower, Judgement, MAX_EPOCH_LEDGER, MAX_EPOCH_RECEIPTS};
use crate::api::{self, AnchorEntry, AnchorEntryStatus, AnchorView, ApiState, FollowView};
use crate::config::{BitcoinMode, NodeConfig};
use crate::lifecycle_store as ls;
use crate::node::{NodeError, NodeInfo};
use crate::shell::{self, Background, Shell};
use crate::store::KvStore;

/// Headers asked per `GetEpochs` while syncing.
const HEADERS_PER_ROUND: u16 = 64;
/// How long one sync request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A peer to sync from.
#[derive(Clone)]
struct Source {
    peer: Peer,
    addr: String,
}

/// The state the sync loop, the anchor thread and the API share.
struct Shared {
    store: Arc<dyn KvStore>,
    view: Arc<RwLock<FollowView>>,
    evidence: Mutex<Vec<Evidence>>,
}

impl Shared {
    /// Keeps evidence (once) and shows it.
    fn evidence(&self, e: Evidence) {
        let Ok(mut kept) = self.evidence.lock() else { return };
        tracing::warn!(target: "cairn::follow", kind = %e.kind, height = e.height, check = %e.check, detail = %e.detail, source = %e.source, "evidence kept");
        match super::keep_evidence(self.store.as_ref(), &mut kept, e) {
            Ok(_) => {
                if let Ok(mut v) = self.view.write() {
                    v.evidence = kept.clone();
                }
            }
            Err(err) => tracing::error!(target: "cairn::follow", error = %err, "evidence not written"),
        }
    }

    /// The anchor binding the accepted genesis header names, when it binds the chain.
    fn binding(&self) -> Option<AnchorBinding> {
        ls::header(self.store.as_ref(), 0)
            .ok()
            .flatten()
            .map(|h| h.body.anchor)
            .filter(|b| *b != AnchorBinding::None)
    }

    fn accepted_hash(&self, height: u32) -> Option<cairn_spec::Hash32> {
        ls::header(self.store.as_ref(), height).ok().flatten().map(|h| h.id())
    }
}

/// The coordinator followed: from `follow.coordinator`, else the first bootstrap peer's key.
fn coordinator_key(cfg: &NodeConfig) -> Result<PubKey, NodeError> {
    if let Some(hex) = &cfg.follow.coordinator {
        return PubKey::from_hex(hex).ok_or_else(|| {
            NodeError::Open(format!("follow.coordinator {hex:?} is not an x-only public key"))
        });
    }
    cfg.p2p
        .bootstrap
        .iter()
        .find_map(|a| a.rsplit('/').next()?.parse::<Peer>().ok()?.protocol_key())
        .ok_or_else(|| {
            NodeError::Open(
                "a follower needs the coordinator: set follow.coordinator or a bootstrap peer ending in /p2p/<peer id>"
                    .into(),
            )
        })
}

fn sources(cfg: &NodeConfig) -> Result<Vec<Source>, NodeError> {
    let out: Vec<Source> = cfg
        .p2p
        .bootstrap
        .iter()
        .filter_map(|a| Some(Source { peer: a.rsplit('/').next()?.parse().ok()?, addr: a.clone() }))
        .collect();
    if out.is_empty() {
        return Err(NodeError::Open(
            "a follower needs at least one bootstrap peer ending in /p2p/<peer id>".into(),
        ));
    }
    Ok(out)
}

/// Runs a follower until `shutdown` resolves. `started` receives its addresses once it serves.
pub async fn run(
    cfg: NodeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
    started: Option<tokio::sync::oneshot::Sender<NodeInfo>>,
) -> Result<(), NodeError> {
    let network = cfg.network()?;
    let coordinator = coordinator_key(&cfg)?;
    let peers = sources(&cfg)?;
    let genesis = cfg
        .follow
        .genesis_anchor
        .as_deref()
        .map(|t| {
            t.parse::<bitcoin::Txid>()
                .map_err(|_| NodeError::Open(format!("follow.genesis_anchor {t:?} is not a txid")))
        })
        .transpose()?;
    let mut shell = Shell::open(&cfg, "follower")?;
    let store = shell.store.clone();
    // What is on disk was verified before it was written; check the chain again at open so a
    // damaged database is found here rather than served.
    let history =
        ls::checked_history(store.as_ref()).map_err(|e| NodeError::Open(format!("stored chain: {e}")))?;
    let held = history.len();
    let tip = super::load_tip(store.as_ref()).map_err(|e| NodeError::Open(e.to_string()))?;
    if let Some(t) = &tip {
        if t.body.coordinator != coordinator || t.body.network != network {
            return Err(NodeError::Open(format!(
                "this data directory follows {} on {}, not {coordinator} on {network}",
                t.body.coordinator, t.body.network
            )));
        }
    }
    let ledger = match &tip {
        Some(t) => ls::ledger_snapshot(store.as_ref(), t.body.height)
            .map_err(|e| NodeError::Open(e.to_string()))?
            .ok_or_else(|| {
                NodeError::Open(format!("no ledger snapshot of the newest epoch {}", t.body.height))
            })?,
        None => Vec::new(),
    };
    let mut follower = Follower { coordinator, network, tip, history, ledger };
    let evidence = super::load_evidence(store.as_ref()).map_err(|e| NodeError::Open(e.to_string()))?;
    tracing::info!(target: "cairn::follow", %coordinator, %network, epochs = held, evidence = evidence.len(), "follower state opened");
    let view = Arc::new(RwLock::new(FollowView {
        tip_height: follower.tip.as_ref().map(|t| t.body.height),
        peers: peers.iter().map(|p| p.peer.to_string()).collect(),
        evidence: evidence.clone(),
        ..FollowView::default()
    }));
    let shared =
        Arc::new(Shared { store: store.clone(), view: view.clone(), evidence: Mutex::new(evidence) });

    // It follows one coordinator: anyone else's gossip is ignored before its signature check.
    let (net, mut events, p2p_addrs, metrics) = shell.start_p2p(&cfg, Some(vec![coordinator])).await?;

    // Bitcoin: the follower's own node, scanned for the anchors.
    let anchor_view = shell.anchor_view.clone();
    let (anchor_stop, anchor_thread, chain) = match cfg.bitcoin.mode {
        BitcoinMode::None => {
            tracing::warn!(target: "cairn::follow", "bitcoin.mode = none: epochs are verified but anchors are NOT CHECKED against Bitcoin");
            (None, None, None)
        }
        BitcoinMode::Rpc => {
            let rpc = Arc::new(shell::rpc_client(&cfg)?);
            rpc.wait_ready(Duration::from_secs(60)).map_err(|e| NodeError::Bitcoin(e.to_string()))?;
            let info = rpc.chain_info().map_err(|e| NodeError::Bitcoin(e.to_string()))?;
            if info.chain != network.core_chain_name() {
                return Err(NodeError::Bitcoin(format!(
                    "Bitcoin Core is on {:?}, the follower on {network}",
                    info.chain
                )));
            }
            // The scan needs the binding the chain's headers name: a tracker saved for another
            // binding, pin or start is started over once it is known.
            let saved = super::load_tracker(store.as_ref()).map_err(|e| NodeError::Open(e.to_string()))?;
            // A follower finds anchors by scanning blocks: from the configured height, else
            // from the first block (the leader's first anchor is not known before that).
            let start = cfg.bitcoin.start_height.unwrap_or(0);
            let make = move |binding: AnchorBinding| {
                saved
                    .clone()
                    .filter(|t| t.binding == binding && t.pin == genesis && t.start_height == start)
                    .unwrap_or_else(|| AnchorTracker::new(start, binding, genesis))
            };
            let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
            let need = cfg.bitcoin.unlock_depth();
            let poll = Duration::from_secs(cfg.bitcoin.poll_secs.max(1));
            let handle = spawn_tracker(
                Box::new(make),
                rpc.clone(),
                shared.clone(),
                anchor_view.clone(),
                stop_rx,
                poll,
                need,
            )?;
            (Some(stop_tx), Some(handle), Some(rpc as Arc<dyn ChainBackend + Send + Sync>))
        }
    };

    // HTTP API: the read routes over this database; writes are refused (no core).
    let state = ApiState {
        role: api::Role::Follower { view: view.clone() },
        store: store.clone(),
        network,
        coordinator,
        anchor: anchor_view.clone(),
        metrics: metrics.clone(),
        stopping: shell.stopping.clone(),
        chain,
        p2p: Arc::new(p2p_addrs.clone()),
        anchor_address: None,
        calendar_depth: cfg.bitcoin.finality_depth.max(1),
        trees: Default::default(),
    };
    let api_addr = shell.serve_api(&cfg, state).await?;
    let info = NodeInfo {
        api: api_addr,
        p2p: p2p_addrs,
        coordinator: coordinator.to_hex(),
        anchor_address: None,
        metrics: shell.metrics_addr,
    };
    tracing::info!(target: "cairn::follow", api = %api_addr, p2p = ?info.p2p, "following");
    shell.announce(info, started);

    let mut tick = tokio::time::interval(Duration::from_secs(cfg.follow.sync_secs.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sync_now = false;
    tokio::pin!(shutdown);
    let result = loop {
        if sync_now {
            sync_now = false;
            sync_round(&net, &peers, &mut follower, &shared).await;
        }
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            _ = tick.tick() => sync_now = true,
            ev = events.recv() => match ev {
                Some(NetworkEvent::Gossip { from, message, id }) => {
                    let verdict = match message.as_ref() {
                        GossipMessage::Epoch(h) => on_gossip_header(h, &from, &follower, &shared, &mut sync_now),
                        _ => Acceptance::Ignore,
                    };
                    let _ = net.report(id, verdict).await;
                }
                Some(NetworkEvent::Request { request, reply, .. }) => {
                    let body = if crate::sync::is_read(&request.body) {
                        let store = store.clone();
                        let b = request.body;
                        tokio::task::spawn_blocking(move || crate::sync::answer(store.as_ref(), &b))
                            .await
                            .unwrap_or(Err(crate::lifecycle::Refusal::Unavailable("node unavailable")))
                    } else {
                        Err(crate::lifecycle::Refusal::Invalid("a follower takes no worker messages".into()))
                    };
                    let body = body.unwrap_or_else(|r| r.to_response());
                    let _ = net.respond(reply, body).await;
                }
                Some(_) => {}
                None => break Err(NodeError::P2p("network stopped".into())),
            },
        }
    };

    let anchor =
        anchor_stop.zip(anchor_thread).map(|(stop, handle)| Background { stop: Box::new(stop), handle });
    drop(shared);
    drop(store);
    shell.close(net, anchor).await;
    result
}

/// A gossiped header of the followed coordinator: a new height starts a sync; one for an
/// accepted height that differs is equivocation (kept as evidence, the message rejected).
fn on_gossip_header(
    h: &SignedEpochHeader,
    from: &Peer,
    follower: &Follower,
    shared: &Shared,
    sync_now: &mut bool,
) -> Acceptance {
    if h.body.coordinator != follower.coordinator {
        return Acceptance::Ignore;
    }
    if h.body.height >= follower.next_height() {
        *sync_now = true;
        return Acceptance::Accept;
    }
    let accepted = ls::header(shared.store.as_ref(), h.body.height).ok().flatten();
    match accepted.and_then(|a| follower.equivocation(&a, h, &format!("gossip from {from}"), unix_secs())) {
        Some(e) => {
            shared.evidence(e);
            Acceptance::Reject
        }
        None => Acceptance::Ignore,
    }
}

/// Why a sync from one peer stopped early.
enum Stop {
    /// The peer could not be asked (kept as the last error).
    Unreachable(String),
    /// The peer served something refused (kept as evidence).
    Refused,
}

async fn ask(net: &Network, src: &Source, body: RequestBody) -> Result<ResponseBody, Stop> {
    let mut last = String::new();
    for attempt in 0..2 {
        match net.request(&src.peer, body.clone(), REQUEST_TIMEOUT).await {
            Ok(ResponseBody::Error { reason, message }) => {
                return Err(Stop::Unreachable(format!("{reason}: {message}")))
            }
            Ok(r) => return Ok(r),
            Err(e) => {
                last = e.to_string();
                if attempt == 0 {
                    let _ = net.dial(&src.addr).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    Err(Stop::Unreachable(format!("{}: {last}", src.peer)))
}

/// One round: from each peer in turn, every epoch past the tip.
async fn sync_round(net: &Network, peers: &[Source], follower: &mut Follower, shared: &Arc<Shared>) {
    let mut error = None;
    for src in peers {
        match sync_from(net, src, follower, shared).await {
            Ok(()) => {}
            Err(Stop::Unreachable(e)) => {
                tracing::debug!(target: "cairn::follow", peer = %src.peer, error = %e, "sync stopped");
                error = Some(e);
            }
            Err(Stop::Refused) => {}
        }
    }
    if let Ok(mut v) = shared.view.write() {
        v.tip_height = follower.tip.as_ref().map(|t| t.body.height);
        v.last_sync = Some(unix_secs());
        v.last_error = error;
    }
}

async fn sync_from(
    net: &Network,
    src: &Source,
    follower: &mut Follower,
    shared: &Arc<Shared>,
) -> Result<(), Stop> {
    let source = src.peer.to_string();
    loop {
        // Ask from the tip itself, so a peer serving another header there is caught.
        let from = follower.tip.as_ref().map_or(0, |t| t.body.height);
        let ResponseBody::Epochs(headers) =
            ask(net, src, RequestBody::GetEpochs { from, count: HEADERS_PER_ROUND }).await?
        else {
            return Err(Stop::Unreachable("GetEpochs answered with another kind".into()));
        };
        let mut progressed = false;
        for h in headers {
            if let Some(t) = &follower.tip {
                if h.body.height <= t.body.height {
                    if h.body.height == t.body.height {
                        if let Some(e) = follower.equivocation(t, &h, &source, unix_secs()) {
                            shared.evidence(e);
                            return Err(Stop::Refused);
                        }
                    }
                    continue;
                }
            }
            let fetched = fetch_epoch(net, src, h).await?;
            let (f, name) = (follower.clone(), source.clone());
            let (judged, fetched) = tokio::task::spawn_blocking(move || {
                let j = f.judge(&fetched, &name, unix_secs());
                (j, fetched)
            })
            .await
            .map_err(|e| Stop::Unreachable(e.to_string()))?;
            match judged {
                Judgement::Accept(batch) => {
                    let store = shared.store.clone();
                    tokio::task::spawn_blocking(move || store.write(&batch))
                        .await
                        .map_err(|e| Stop::Unreachable(e.to_string()))?
                        .map_err(|e| Stop::Unreachable(format!("storage write failed: {e}")))?;
                    tracing::info!(target: "cairn::follow", height = fetched.header.body.height, receipts = fetched.receipts.len(), hash = %fetched.header.id(), "epoch verified and kept");
                    follower.accepted(fetched.header, fetched.ledger);
                    if let Ok(mut v) = shared.view.write() {
                        v.tip_height = follower.tip.as_ref().map(|t| t.body.height);
                    }
                    progressed = true;
                }
                Judgement::NotNext => {
                    return Err(Stop::Unreachable(format!(
                        "{source} served epoch {} while {} was next",
                        fetched.header.body.height,
                        follower.next_height()
                    )))
                }
                Judgement::Refuse(e) => {
                    shared.evidence(e);
                    return Err(Stop::Refused);
                }
            }
        }
        if !progressed {
            return Ok(());
        }
    }
}

/// Fetches an epoch's receipts and ledger snapshot, page by page, within the bounds.
async fn fetch_epoch(net: &Network, src: &Source, header: SignedEpochHeader) -> Result<FetchedEpoch, Stop> {
    let height = header.body.height;
    // A header claiming more than the bound is fetched only up to it; the count check then
    // refuses the epoch with the evidence.
    let want = header.body.receipt_count.min(MAX_EPOCH_RECEIPTS);
    let mut receipts = Vec::new();
    while (receipts.len() as u32) < want {
        let count = (want - receipts.len() as u32).min(MAX_RECEIPTS_PER_REQUEST as u32) as u16;
        let from = receipts.len() as u32;
        let ResponseBody::Receipts(page) =
            ask(net, src, RequestBody::GetEpochReceipts { height, from, count }).await?
        else {
            return Err(Stop::Unreachable("GetEpochReceipts answered with another kind".into()));
        };
        let n = page.len();
        receipts.extend(page.into_iter().take(usize::from(count)));
        if n < usize::from(count) {
            break;
        }
    }
    let mut ledger = Vec::new();
    loop {
        let from = ledger.len() as u32;
        let ResponseBody::Ledger { total, entries } =
            ask(net, src, RequestBody::GetLedger { height, from, count: MAX_LEDGER_PER_REQUEST as u16 })
                .await?
        else {
            return Err(Stop::Unreachable("GetLedger answered with another kind".into()));
        };
        let total = total.min(MAX_EPOCH_LEDGER);
        let n = entries.len();
        ledger.extend(entries.into_iter().take((total as usize).saturating_sub(ledger.len())));
        if n == 0 || ledger.len() as u32 >= total {
            break;
        }
    }
    // The scored rounds, when the header commits any.
    let rounds = if header.body.scores_root == cairn_spec::merkle::empty_root() {
        Vec::new()
    } else {
        let ResponseBody::Rounds(rounds) = ask(net, src, RequestBody::GetRounds { height }).await? else {
            return Err(Stop::Unreachable("GetRounds answered with another kind".into()));
        };
        rounds
    };
    Ok(FetchedEpoch { header, receipts, ledger, rounds })
}

/// The anchor thread: polls the follower's Bitcoin Core, follows the anchor chain, keeps
/// evidence when Bitcoin commits another header than the one accepted, and refreshes the
/// API's anchor view.
fn spawn_tracker(
    make: Box<dyn Fn(AnchorBinding) -> AnchorTracker + Send>,
    rpc: Arc<cairn_anchor::BitcoinCoreRpc>,
    shared: Arc<Shared>,
    view: Arc<RwLock<AnchorView>>,
    stop: std::sync::mpsc::Receiver<()>,
    poll: Duration,
    need: u32,
) -> Result<std::thread::JoinHandle<()>, NodeError> {
    if let Ok(mut v) = view.write() {
        v.enabled = true;
    }
    std::thread::Builder::new()
        .name("cairn-follow-anchors".into())
        .spawn(move || {
            let mut tracker: Option<AnchorTracker> = None;
            loop {
            // The anchors are found from the binding the accepted genesis header names.
            if tracker.is_none() {
                tracker = shared.binding().map(&make);
                if tracker.is_none() {
                    if let Ok(mut v) = view.write() {
                        v.last_error = Some("no anchor binding yet: the genesis header is not accepted, or it names none (a chain not anchored to Bitcoin)".into());
                    }
                }
            }
            let Some(tracker) = tracker.as_mut() else {
                match stop.recv_timeout(poll) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => return,
                }
            };
            match tracker.poll(rpc.as_ref()) {
                Ok(report) => {
                    if let Some(txid) = report.broken {
                        tracing::warn!(target: "cairn::follow", %txid, "the chain output was spent by a transaction that is no anchor of this chain (output 0 not to the anchor key, no payload, or not the pinned genesis anchor): the anchor chain ends there");
                    }
                    for a in &report.found {
                        tracing::info!(target: "cairn::follow", txid = %a.txid, epoch = a.payload.height, block = a.height, "anchor found");
                    }
                    for a in &report.dropped {
                        tracing::warn!(target: "cairn::follow", txid = %a.txid, epoch = a.payload.height, "anchor dropped by a reorg");
                    }
                    if report.connected + report.disconnected > 0 {
                        if let Err(e) = super::save_tracker(shared.store.as_ref(), tracker) {
                            tracing::warn!(target: "cairn::follow", error = %e, "anchor scan not saved");
                        }
                    }
                    let best = rpc.chain_info().ok().map(|c| c.tip_height);
                    let entries = anchor_entries(&tracker.anchors, &shared, best);
                    for a in &tracker.anchors {
                        if let Some(e) = anchor_equivocation(a, &shared) {
                            shared.evidence(e);
                        }
                    }
                    // Only anchors of accepted headers settle anything.
                    let settled = best.and_then(|tip| {
                        let accepted = entries
                            .iter()
                            .filter(|a| a.status == AnchorEntryStatus::Confirmed)
                            .filter_map(|a| a.height.map(|h| (a.epoch, h)));
                        cairn_anchor::settle::settled_epoch(accepted, tip, need)
                    });
                    if let Ok(mut v) = view.write() {
                        *v = AnchorView {
                            enabled: true,
                            tip_height: best,
                            settled_epoch: settled,
                            anchors: entries,
                            ..AnchorView::default()
                        };
                    }
                }
                Err(e) => {
                    tracing::warn!(target: "cairn::follow", error = %e, "anchor scan failed");
                    if let Ok(mut v) = view.write() {
                        v.last_error = Some(e.to_string());
                        v.blocked = Some(if e.is_transient() {
                            cairn_spec::api::ReadinessProblem::CoreUnreachable
                        } else {
                            cairn_spec::api::ReadinessProblem::AnchorFailing
                        });
                    }
                }
            }
            match stop.recv_timeout(poll) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            }
        })
        .map_err(|e| NodeError::Io(e.to_string()))
}

/// The API's view of the anchors found: `confirmed` when the committed header is the one
/// accepted at its height, `unverified` while that epoch is not accepted yet, and
/// `equivocation` when Bitcoin commits another header.
fn anchor_entries(found: &[FoundAnchor], shared: &Shared, best: Option<u32>) -> Vec<AnchorEntry> {
    let mut out: Vec<AnchorEntry> = found
        .iter()
        .map(|a| {
            let status = match shared.accepted_hash(a.payload.height) {
                Some(h) if h == a.payload.header_hash => AnchorEntryStatus::Confirmed,
                Some(_) => AnchorEntryStatus::Equivocation,
                None => AnchorEntryStatus::Unverified,
            };
            AnchorEntry {
                txid: a.txid.to_string(),
                epoch: a.payload.height,
                header_hash: a.payload.header_hash,
                status,
                height: Some(a.height),
                confirmations: best.map_or(0, |b| cairn_anchor::settle::confirmations(a.height, b)),
                fee_sats: 0,
                payouts: Vec::new(),
            }
        })
        .collect();
    out.sort_by_key(|a| std::cmp::Reverse(a.epoch));
    out
}

fn anchor_equivocation(a: &FoundAnchor, shared: &Shared) -> Option<Evidence> {
    let accepted = ls::header(shared.store.as_ref(), a.payload.height).ok().flatten()?;
    super::anchor_equivocation(a, &accepted, unix_secs())
}
