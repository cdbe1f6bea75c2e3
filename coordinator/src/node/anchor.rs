//! The anchor thread: the anchor machine's driver on its own thread (epochs and payouts in,
//! Bitcoin rounds on a timer), and what its reports do to the lifecycle (chain tips, settled
//! epochs, confirmed payouts).
//!
//! Owns the thread and the API's anchor view. Must never decide when an epoch settles (the
//! anchor machine does, `cairn_anchor::settle`) nor move money (the lifecycle does).

use super::*;
use cairn_anchor::AnchorStore as _;
use cairn_anchor::Notice;
use cairn_spec::api::{BitcoinBackend, ReadinessProblem};
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
    data: &cairn_config::DataDir,
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
    rpc.check_network(network).map_err(|e| NodeError::Bitcoin(e.to_string()))?;
    // Anchors were made with the anchor key: its outputs hold the chain and the node's funds.
    let anchored =
        KvAnchorStore::new(store.clone()).load().map_err(|e| NodeError::Open(e.to_string()))?.is_some();
    let anchor_key: SigningKey = shell::load_key(data, "anchor.key", anchored)?;
    let address = cairn_anchor::anchor_address(&anchor_key.public(), network).to_string();
    let anchor_pub = anchor_key.public();
    let mut acfg = AnchorConfig::new(network);
    let fees = b.fees(network);
    acfg.fallback_fee_rate = bitcoin::FeeRate::from_sat_per_vb_u32(fees.fallback_sat_vb.max(1));
    acfg.max_fee_per_anchor = bitcoin::Amount::from_sat(fees.max_per_anchor_sats);
    acfg.max_fee_per_day = bitcoin::Amount::from_sat(fees.max_per_day_sats);
    // The headers commit the genesis output for ever: it must be final first.
    acfg.genesis_depth = b.finality_depth.max(1);
    metrics.anchor_fee_cap_day_sats.set(i64::try_from(fees.max_per_day_sats).unwrap_or(i64::MAX));
    let start = match b.start_height {
        Some(h) => cairn_anchor::Start::Height(h),
        None => cairn_anchor::Start::Tip,
    };
    let need = b.unlock_depth();
    let beacon_depth = b.finality_depth.max(1);
    let payout_depth = b.finality_depth.max(1);
    let poll = Duration::from_secs(b.poll_secs.max(1));
    let stuck_after = b.unready_after_blocks.max(1);
    // A round makes a few calls, each retried within Core's timeouts: ten rounds' worth of
    // silence, and at least five minutes, means the thread is stuck or gone.
    let report_within = (10 * poll.as_secs()).max(300);
    let (tx, rx) = std::sync::mpsc::channel::<AnchorCmd>();
    if let Ok(mut v) = view.write() {
        v.enabled = true;
        v.unready_after_blocks = stuck_after;
        v.report_within_secs = report_within;
    }
    let set_blocked = {
        let view = view.clone();
        move |p: Option<ReadinessProblem>| {
            if let Ok(mut v) = view.write() {
                v.blocked = p;
            }
        }
    };
    let mut signer = Some(anchor_key);
    let own_cfg = cfg.clone();
    let handle = std::thread::Builder::new()
        .name("cairn-anchor".into())
        .spawn(move || {
            // Commands that arrive before the driver is open wait here, in order.
            let mut early: Vec<AnchorCmd> = Vec::new();
            let mut rpc = Some(rpc);
            let mut logged = Instant::now() - Duration::from_secs(3600);
            let mut driver = loop {
                let backend = match rpc.take().map(Ok).unwrap_or_else(|| shell::rpc_client(&own_cfg)) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(target: "cairn::anchor", error = %e, "no Bitcoin Core client; anchoring stopped");
                        return;
                    }
                };
                let ready = match backend.chain_info() {
                    // Anchoring waits for Core to finish its download: the UTXO set and the
                    // fee estimates are not the network's before that.
                    Ok(i) if i.initial_block_download => {
                        if logged.elapsed() >= Duration::from_secs(30) {
                            logged = Instant::now();
                            tracing::info!(target: "cairn::anchor", blocks = i.tip_height, headers = i.headers,
                                progress = format!("{:.2}%", f64::from(i.progress_ppm) / 1e4),
                                "Bitcoin Core is still syncing; anchoring starts when it is done");
                        }
                        set_blocked(Some(ReadinessProblem::CoreSyncing {
                            blocks: i.tip_height,
                            headers: i.headers,
                            progress_ppm: i.progress_ppm,
                        }));
                        false
                    }
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(target: "cairn::anchor", error = %e, "cannot reach Bitcoin Core");
                        set_blocked(Some(ReadinessProblem::CoreUnreachable));
                        false
                    }
                };
                if ready {
                    let Some(key) = signer.take() else { return };
                    let again = key.clone();
                    match AnchorDriver::open(
                        backend,
                        KvAnchorStore::new(store.clone()),
                        acfg.clone(),
                        Box::new(KeySigner::new(key)),
                        start,
                    ) {
                        Ok(d) => break d,
                        Err(e) => {
                            metrics.anchor_errors.inc();
                            tracing::warn!(target: "cairn::anchor", error = %e, "anchor state not opened; retrying");
                            if let Ok(mut v) = view.write() {
                                v.last_error = Some(e.to_string());
                            }
                            set_blocked(Some(if e.is_transient() {
                                ReadinessProblem::CoreUnreachable
                            } else {
                                ReadinessProblem::AnchorFailing
                            }));
                            signer = Some(again);
                        }
                    }
                }
                match rx.recv_timeout(poll) {
                    Ok(cmd) => early.push(cmd),
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                }
            };
            set_blocked(None);
            // The lifecycle and the anchor persist in separate batches: a crash between the
            // two can leave payouts the lifecycle queued that the anchor never saw. Hand
            // those over again (payout ids make this idempotent: one the anchor already
            // carries is not re-queued).
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
                if let Err(e) = driver.queue_payouts(to_anchor_payouts(&missing)) {
                    tracing::warn!(target: "cairn::anchor", error = %e, "payouts not queued");
                }
            }
            let mut waiting_since: Option<u32> = None;
            let mut spent_elsewhere: Option<String> = None;
            let mut last = Instant::now() - poll;
            let mut early = early.into_iter();
            loop {
                let wait = poll.saturating_sub(last.elapsed());
                let cmd = match early.next() {
                    Some(c) => Ok(c),
                    None => rx.recv_timeout(wait),
                };
                match cmd {
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
                            v.last_report = Some(unix_secs());
                            v.blocked = Some(if e.is_transient() {
                                ReadinessProblem::CoreUnreachable
                            } else {
                                ReadinessProblem::AnchorFailing
                            });
                        }
                        continue;
                    }
                };
                let mut blocked = None;
                for n in notices {
                    tracing::info!(target: "cairn::anchor", notice = ?n, "anchor");
                    match n {
                        Notice::InsufficientFunds { available, needed } => {
                            blocked = Some(ReadinessProblem::Unfunded {
                                available_sats: available.to_sat(),
                                needed_sats: needed.to_sat(),
                            })
                        }
                        Notice::ForeignSpend { txid, .. } => {
                            tracing::error!(target: "cairn::anchor", %txid, "an anchor chain output was spent by a transaction this node did not make: is the anchor key used by another node (or was a stale backup restored)?");
                            spent_elsewhere = Some(txid.to_string());
                        }
                        Notice::FeeCapReached { wanted, allowed } => {
                            blocked = Some(ReadinessProblem::FeeCapReached {
                                wanted_sats: wanted.to_sat(),
                                allowed_sats: allowed.to_sat(),
                            })
                        }
                        _ => {}
                    }
                }
                let tip = driver.backend().chain_info().ok();
                let tip_height = tip.as_ref().map(|t| t.tip_height);
                let standing = tip_height.map(|t| driver.machine().standing(t));
                // Before its genesis output the chain cannot start: the first epoch waits for
                // it, so no round would say "insufficient funds" by itself.
                if let (None, None, Some(st)) = (&blocked, driver.machine().genesis(), &standing) {
                    if st.spendable < cairn_anchor::tx::MIN_CHAIN_VALUE {
                        blocked = Some(ReadinessProblem::Unfunded {
                            available_sats: st.spendable.to_sat(),
                            needed_sats: cairn_anchor::tx::MIN_CHAIN_VALUE.to_sat(),
                        });
                    }
                }
                let mut blocks_waiting = 0;
                if let (Some(t), Some(st)) = (tip_height, &standing) {
                    // Epochs wait from the first round that saw them unanchored, or from the
                    // newest confirmed anchor if that is later.
                    if st.unanchored_epochs() == 0 {
                        waiting_since = None;
                    } else {
                        let since = *waiting_since.get_or_insert(t);
                        blocks_waiting = t.saturating_sub(since.max(st.last_anchor_height.unwrap_or(0)));
                    }
                    let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                    metrics.anchor_balance_sats.set(gauge(st.spendable.to_sat()));
                    metrics.unanchored_epochs.set(i64::from(st.unanchored_epochs()));
                    metrics.anchor_blocks_waiting.set(i64::from(blocks_waiting));
                    metrics.anchor_fee_spent_today_sats.set(gauge(st.fee_spent_today.to_sat()));
                    if let Some(h) = st.last_anchor_height {
                        metrics.blocks_since_anchor.set(i64::from(t.saturating_sub(h)));
                    }
                }
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
                    // What the node's Bitcoin is does not change when a read fails.
                    let backend = tip
                        .as_ref()
                        .map(|t| {
                            if t.embedded {
                                BitcoinBackend::EmbeddedRegtest
                            } else {
                                BitcoinBackend::BitcoinCore
                            }
                        })
                        .or(v.backend);
                    *v = AnchorView {
                        enabled: true,
                        tip_height,
                        backend,
                        settled_epoch: settled,
                        anchors,
                        last_error: None,
                        standing,
                        blocked,
                        blocks_waiting,
                        unready_after_blocks: stuck_after,
                        spent_elsewhere: spent_elsewhere.clone(),
                        last_report: Some(unix_secs()),
                        report_within_secs: report_within,
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
