//! The anchor thread: the anchor machine's driver on its own thread (epochs and payouts in,
//! Bitcoin rounds on a timer), and what its reports do to the lifecycle (chain tips, settled
//! epochs, confirmed payouts).
//!
//! Owns the thread and the API's anchor view. Must never decide when an epoch settles (the
//! anchor machine does, `cairn_anchor::settle`) nor move money (the lifecycle does).

use super::*;
use cairn_anchor::AnchorStore as _;
use cairn_spec::{AnchorBinding, Beacon};

/// The anchor thread once started: its command channel, its handle, the anchor address.
type AnchorStart = (std::sync::mpsc::Sender<AnchorCmd>, std::thread::JoinHandle<()>, String);

/// Commands to the anchor thread.
pub(super) enum AnchorCmd {
    Epoch(cairn_spec::AnchorPayload),
    Payouts(Vec<Payout>),
}

/// What the anchor thread reports after each round.
pub(super) struct AnchorReport {
    tip: Option<(u32, Hash32)>,
    settled: Option<u32>,
    confirmed: Vec<(Vec<u64>, bitcoin::Txid, u32)>,
    /// The newest anchored header whose beacon block is final: its height and id, and the
    /// beacon of the epoch after it.
    beacon: Option<(u32, Hash32, Beacon)>,
    /// The anchor key and genesis output, once the anchor machine chose the output.
    binding: Option<AnchorBinding>,
}

pub(super) fn to_anchor_payouts(ps: &[PayoutRecord]) -> Vec<Payout> {
    ps.iter()
        .filter_map(|p| {
            // Registration refuses such addresses; one stored before that rule stays queued.
            let Ok(addr) = p.address.parse::<bitcoin::Address<bitcoin::address::NetworkUnchecked>>() else {
                tracing::error!(target: "cairn::anchor", payout = p.id, address = %p.address, "payout address does not parse; the payout stays queued");
                return None;
            };
            Some(Payout {
                id: p.id,
                script_pubkey: addr.assume_checked().script_pubkey(),
                amount: bitcoin::Amount::from_sat(p.amount),
            })
        })
        .collect()
}

pub(super) fn start_anchor(
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
    // Anchors were made with the anchor key: its outputs hold the chain and the node's funds.
    let anchored =
        KvAnchorStore::new(store.clone()).load().map_err(|e| NodeError::Open(e.to_string()))?.is_some();
    let anchor_key: SigningKey = keyfile::load_or_create_for(&dir.join("anchor.key"), anchored)?;
    let address = cairn_anchor::anchor_address(&anchor_key.public(), network).to_string();
    let anchor_pub = anchor_key.public();
    let mut acfg = AnchorConfig::new(network);
    acfg.fallback_fee_rate = bitcoin::FeeRate::from_sat_per_vb_u32(b.fallback_fee_sat_vb.max(1));
    acfg.max_fee_per_anchor = bitcoin::Amount::from_sat(b.max_fee_per_anchor_sats);
    acfg.max_fee_per_day = bitcoin::Amount::from_sat(b.max_fee_per_day_sats);
    // The headers commit the genesis output for ever: it must be final first.
    acfg.genesis_depth = b.finality_depth.max(1);
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
    let need = b.unlock_depth();
    let beacon_depth = b.finality_depth.max(1);
    let payout_depth = b.finality_depth.max(1);
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
                let tip = driver.backend().chain_info().ok();
                let tip_height = tip.as_ref().map(|t| t.tip_height);
                // Every final anchor's payouts, not only this round's: the lifecycle ignores
                // ids already paid, and a confirmation a crash made it miss is recorded now.
                // Paid means finality-deep: a shallower reorg may move a payout to another
                // anchor (the anchor machine re-queues it), and the ledger names the one that
                // stays.
                let confirmed: Vec<(Vec<u64>, bitcoin::Txid, u32)> = driver
                    .machine()
                    .records()
                    .values()
                    .filter_map(|r| match r.status {
                        AnchorStatus::Confirmed { height, .. }
                            if !r.payouts.is_empty()
                                && tip_height.is_some_and(|t| {
                                    cairn_anchor::settle::confirmations(height, t) >= payout_depth
                                }) =>
                        {
                            Some((r.payouts.iter().map(|p| p.id).collect(), r.txid, height))
                        }
                        _ => None,
                    })
                    .collect();
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
                let beacon = tip_height.and_then(|t| beacon_after(&driver, t, beacon_depth));
                if let Ok(mut v) = view.write() {
                    *v = AnchorView {
                        enabled: true,
                        tip_height,
                        settled_epoch: settled,
                        anchors,
                        last_error: None,
                    };
                }
                let binding = driver.machine().genesis().map(|g| AnchorBinding::Key {
                    key: anchor_pub,
                    genesis_txid: Hash32(g.txid.to_byte_array()),
                    genesis_vout: g.vout,
                });
                let report = AnchorReport {
                    tip: tip.map(|t| (t.tip_height, Hash32(t.tip_hash.to_byte_array()))),
                    settled,
                    confirmed,
                    beacon,
                    binding,
                };
                if reports.blocking_send(report).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| NodeError::Io(e.to_string()))?;
    Ok((tx, handle, address))
}

/// The beacon of the epoch after the newest header whose anchor is confirmed at `A`: the
/// block at `A + 1` (a child of the anchor's block), once it has `depth` confirmations at tip
/// `tip` (SPEC.md §12.1).
fn beacon_after(
    driver: &AnchorDriver<BitcoinCoreRpc, KvAnchorStore<dyn KvStore>>,
    tip: u32,
    depth: u32,
) -> Option<(u32, Hash32, Beacon)> {
    let (payload, at, anchor_block) = driver
        .machine()
        .records()
        .values()
        .filter_map(|r| match r.status {
            AnchorStatus::Confirmed { height, block } => Some((r.payload, height, block)),
            _ => None,
        })
        .max_by_key(|(p, _, _)| p.height)?;
    let height = at.checked_add(1)?;
    if cairn_anchor::settle::confirmations(height, tip) < depth {
        return None;
    }
    let backend = driver.backend();
    let hash = backend.block_hash(height).ok()??;
    // A reorg between the anchor round and this read would give a block of another branch.
    if backend.block_header(&hash).ok()?.prev_blockhash != anchor_block {
        return None;
    }
    Some((payload.height, payload.header_hash, Beacon::Block { height, hash: Hash32(hash.to_byte_array()) }))
}

impl Ctx {
    pub(super) async fn on_report(&self, r: AnchorReport) -> Result<(), NodeError> {
        let now = unix_secs();
        let mut effects = Vec::new();
        let res = self
            .apply(move |m| {
                let mut step = crate::lifecycle::Step::default();
                if let Some(b) = r.binding {
                    if m.meta().anchor.is_some_and(|bound| bound != b) {
                        tracing::error!(target: "cairn::anchor", ?b, bound = ?m.meta().anchor, "the anchor side reports another genesis output than the chain's headers name: anchors will not continue this chain");
                    }
                    step.extend(m.bind(b));
                }
                if let Some((h, hash)) = r.tip {
                    step.extend(m.on_chain_tip(h, hash));
                }
                if let Some(e) = r.settled {
                    step.extend(m.settle(e, now));
                }
                for (ids, txid, height) in &r.confirmed {
                    step.extend(m.payouts_confirmed(ids, *txid, *height));
                }
                if let Some((header, id, beacon)) = r.beacon {
                    step.extend(m.arm(header.saturating_add(1), id, beacon));
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
}
