//! The anchor machine and driver on the scripted in-memory chain (not Bitcoin Core; the
//! real-node tests are in `bitcoind.rs`): genesis, chaining, top-ups, RBF, fee caps, dust,
//! reorgs, node outages, payouts, and restarts after a kill at every write.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use bitcoin::{Amount, FeeRate, OutPoint, Txid};
use cairn_anchor::machine::{AnchorConfig, AnchorStatus, EpochAnchorStatus, Notice};
use cairn_anchor::scripted::ScriptedBackend;
use cairn_anchor::store::{AnchorStore, Changeset, MemoryStore};
use cairn_anchor::tx::{self, anchor_script, AnchorPlan, KeySigner, Payout, Utxo};
use cairn_anchor::{AnchorDriver, ChainBackend, DriverError};
use cairn_spec::{AnchorPayload, Network, SigningKey};

fn key() -> SigningKey {
    SigningKey::from_secret_bytes([42; 32]).unwrap()
}

fn payload(height: u32) -> AnchorPayload {
    AnchorPayload { height, header_hash: cairn_spec::hash::sha256(&height.to_be_bytes()) }
}

fn config() -> AnchorConfig {
    AnchorConfig::new(Network::Regtest)
}

type Driver = AnchorDriver<ScriptedBackend, MemoryStore>;

fn open(chain: &ScriptedBackend, store: &MemoryStore, config: AnchorConfig) -> Driver {
    AnchorDriver::open(
        chain.clone(),
        store.clone(),
        config,
        Box::new(KeySigner::new(key())),
        cairn_anchor::Start::Height(0),
    )
    .unwrap()
}

fn funded() -> (ScriptedBackend, MemoryStore, Driver) {
    let chain = ScriptedBackend::new();
    chain.fund(&anchor_script(&key().public()), Amount::from_sat(1_000_000));
    let store = MemoryStore::new();
    let d = open(&chain, &store, config());
    (chain, store, d)
}

fn step(d: &mut Driver) -> Vec<Notice> {
    d.step(1_767_225_600, [7; 32]).unwrap()
}

fn anchored(notices: &[Notice]) -> Option<Txid> {
    notices.iter().find_map(|n| match n {
        Notice::Anchored { txid, .. } => Some(*txid),
        _ => None,
    })
}

fn confirmed(notices: &[Notice]) -> Vec<Txid> {
    notices
        .iter()
        .filter_map(|n| match n {
            Notice::Confirmed { txid, .. } => Some(*txid),
            _ => None,
        })
        .collect()
}

/// Anchors `epoch` and mines it; returns its txid.
fn anchor_and_confirm(chain: &ScriptedBackend, d: &mut Driver, epoch: u32) -> Txid {
    d.submit_epoch(payload(epoch)).unwrap();
    let txid = anchored(&step(d)).expect("anchored");
    chain.mine(1);
    assert_eq!(confirmed(&step(d)), vec![txid]);
    txid
}

#[test]
fn genesis_then_chained_anchors_each_spend_the_previous_chain_output() {
    let (chain, _store, mut d) = funded();
    let a0 = anchor_and_confirm(&chain, &mut d, 0);
    let a1 = anchor_and_confirm(&chain, &mut d, 1);
    let a2 = anchor_and_confirm(&chain, &mut d, 2);
    let c = d.machine().confirmed_chain();
    assert_eq!(c.iter().map(|r| r.txid).collect::<Vec<_>>(), vec![a0, a1, a2]);
    assert_eq!(c[1].chain_input(), Some(OutPoint { txid: a0, vout: 0 }));
    assert_eq!(c[2].chain_input(), Some(OutPoint { txid: a1, vout: 0 }));
    for r in &c {
        let tx = r.tx().unwrap();
        assert_eq!(AnchorPayload::from_script(&tx.output[1].script_pubkey), Some(Ok(r.payload)));
        assert!(chain.is_confirmed(&r.txid));
    }
    let tip = chain.height();
    match d.machine().epoch_status(1, tip) {
        EpochAnchorStatus::Confirmed { txid, anchored_epoch, depth, .. } => {
            assert_eq!((txid, anchored_epoch, depth), (a1, 1, 2));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(d.machine().epoch_status(3, tip), EpochAnchorStatus::Unanchored);
}

#[test]
fn epochs_submitted_while_pending_ride_on_the_next_anchor() {
    let (chain, _store, mut d) = funded();
    d.submit_epoch(payload(0)).unwrap();
    let a0 = anchored(&step(&mut d)).unwrap();
    // Two epochs close while the anchor waits: nothing new is signed.
    d.submit_epoch(payload(1)).unwrap();
    d.submit_epoch(payload(2)).unwrap();
    assert_eq!(anchored(&step(&mut d)), None);
    chain.mine(1);
    let n = step(&mut d);
    assert_eq!(confirmed(&n), vec![a0]);
    // The next anchor commits the newest epoch; epoch 1 is covered through the header chain.
    let a = anchored(&n).expect("next anchor in the same round");
    assert_eq!(d.machine().records()[&a].payload, payload(2));
    assert_eq!(d.machine().epoch_status(1, chain.height()), EpochAnchorStatus::Pending { txid: a });
}

#[test]
fn top_ups_at_the_anchor_address_are_spent_alongside() {
    let (chain, _store, mut d) = funded();
    let a0 = anchor_and_confirm(&chain, &mut d, 0);
    let topup = chain.fund(&anchor_script(&key().public()), Amount::from_sat(250_000));
    let a1 = anchor_and_confirm(&chain, &mut d, 1);
    let r = &d.machine().records()[&a1];
    assert_eq!(r.inputs[0].outpoint, OutPoint { txid: a0, vout: 0 });
    assert!(r.inputs.iter().any(|u| u.outpoint == topup));
    let before = d.machine().records()[&a0].tx().unwrap().output[0].value;
    assert_eq!(r.tx().unwrap().output[0].value, before + Amount::from_sat(250_000) - r.fee);
}

/// Whatever is sent to the public anchor address, the tracked set stays bounded: the chain
/// output and the largest top-ups are kept.
#[test]
fn the_tracked_outputs_stay_bounded() {
    let chain = ScriptedBackend::new();
    let spk = anchor_script(&key().public());
    chain.fund(&spk, Amount::from_sat(1_000_000));
    let store = MemoryStore::new();
    let mut cfg = config();
    cfg.max_utxos = 3;
    let mut d = open(&chain, &store, cfg);
    let a0 = anchor_and_confirm(&chain, &mut d, 0);
    let small: Vec<OutPoint> = (1..=5).map(|i| chain.fund(&spk, Amount::from_sat(20_000 + i))).collect();
    let big = chain.fund(&spk, Amount::from_sat(500_000));
    step(&mut d);
    let tracked: Vec<OutPoint> = d.machine().head().utxos.iter().map(|u| u.outpoint).collect();
    assert_eq!(tracked.len(), 3, "{tracked:?}");
    assert!(tracked.contains(&OutPoint { txid: a0, vout: 0 }), "the chain output is always kept");
    assert!(tracked.contains(&big) && tracked.contains(&small[4]), "the largest top-ups are kept");
}

/// The genesis output (SPEC.md §7.1) is chosen once, as soon as funds are confirmed, kept
/// across a restart, and the first anchor spends it and nothing else as its chain input,
/// even when a larger output arrives after.
#[test]
fn the_first_anchor_spends_the_genesis_output_chosen_before_any_header() {
    let chain = ScriptedBackend::new();
    let store = MemoryStore::new();
    let mut d = open(&chain, &store, config());
    step(&mut d);
    assert_eq!(d.machine().genesis(), None, "no funds, no genesis");
    let spk = anchor_script(&key().public());
    let g = chain.fund(&spk, Amount::from_sat(200_000));
    let n = step(&mut d);
    assert!(n.iter().any(|x| matches!(x, Notice::Genesis { outpoint, .. } if *outpoint == g)), "{n:?}");
    let big = chain.fund(&spk, Amount::from_sat(5_000_000));
    let mut d = open(&chain, &store, config());
    assert_eq!(d.machine().genesis(), Some(g), "kept across a restart");
    let a0 = anchor_and_confirm(&chain, &mut d, 0);
    let r = &d.machine().records()[&a0];
    assert_eq!(r.chain_input(), Some(g));
    assert!(r.inputs.iter().any(|u| u.outpoint == big), "the larger output is a top-up");
    assert_eq!(d.machine().genesis(), Some(g));
}

/// The headers commit the genesis output for ever, so it is chosen only once
/// `genesis_depth` deep: funding that a shallow reorg takes away is never chosen.
#[test]
fn the_genesis_output_is_chosen_only_once_final() {
    let chain = ScriptedBackend::new();
    let store = MemoryStore::new();
    let mut cfg = config();
    cfg.genesis_depth = 3;
    let mut d = open(&chain, &store, cfg);
    let spk = anchor_script(&key().public());
    chain.fund(&spk, Amount::from_sat(300_000));
    chain.mine(1);
    step(&mut d);
    assert_eq!(d.machine().genesis(), None, "two confirmations of three");
    // A reorg takes that funding away (a faucet transaction never comes back).
    chain.disconnect(2);
    assert!(chain.mempool().is_empty());
    chain.mine_empty(3);
    step(&mut d);
    assert_eq!(d.machine().genesis(), None);
    let g = chain.fund(&spk, Amount::from_sat(200_000));
    chain.mine(2);
    step(&mut d);
    assert_eq!(d.machine().genesis(), Some(g), "three confirmations");
}

#[test]
fn coinbase_funding_waits_for_maturity() {
    let chain = ScriptedBackend::new();
    chain.mine_to(&anchor_script(&key().public()), 1);
    let store = MemoryStore::new();
    let mut d = open(&chain, &store, config());
    d.submit_epoch(payload(0)).unwrap();
    assert!(step(&mut d).iter().any(|n| matches!(n, Notice::InsufficientFunds { .. })));
    chain.mine(99);
    assert!(anchored(&step(&mut d)).is_some(), "spendable after 100 confirmations");
}

#[test]
fn stuck_anchor_is_replaced_by_fee_and_commits_the_newest_epoch() {
    let (chain, _store, mut d) = funded();
    anchor_and_confirm(&chain, &mut d, 0);
    d.submit_epoch(payload(1)).unwrap();
    let first = anchored(&step(&mut d)).unwrap();
    let first_rate = d.machine().records()[&first].fee_rate();
    // Miners leave it out for three blocks; meanwhile epoch 2 closes.
    chain.mine_empty(3);
    d.submit_epoch(payload(2)).unwrap();
    let n = step(&mut d);
    let (old, new) = n
        .iter()
        .find_map(|n| match n {
            Notice::Replaced { old, new, payload: p, .. } => {
                assert_eq!(*p, payload(2));
                Some((*old, *new))
            }
            _ => None,
        })
        .expect("replaced");
    assert_eq!(old, first);
    let rec = &d.machine().records()[&new];
    assert!(rec.fee_rate() > first_rate);
    assert!(rec.fee > d.machine().records()[&first].fee);
    assert_eq!(chain.mempool().len(), 1, "the replacement evicted the original");
    chain.mine(1);
    assert_eq!(confirmed(&step(&mut d)), vec![new]);
    assert_eq!(d.machine().records()[&first].status, AnchorStatus::Conflicted);
    // And the original can never come back: Bitcoin refuses a second spend of the parent.
    let orig = d.machine().records()[&first].tx().unwrap();
    assert!(matches!(chain.broadcast(&orig), Err(cairn_anchor::BroadcastError::InputsMissing(_))));
}

#[test]
fn below_estimate_anchor_is_bumped_without_waiting() {
    let (chain, _store, mut d) = funded();
    d.submit_epoch(payload(0)).unwrap();
    let a = anchored(&step(&mut d)).unwrap();
    chain.set_fee_estimate(Some(FeeRate::from_sat_per_vb_u32(20)));
    chain.mine_empty(1);
    let n = step(&mut d);
    assert!(n.iter().any(|x| matches!(x, Notice::Replaced { old, .. } if *old == a)), "{n:?}");
}

#[test]
fn fee_caps_lower_the_rate_and_refuse_below_relay() {
    let chain = ScriptedBackend::new();
    chain.fund(&anchor_script(&key().public()), Amount::from_sat(1_000_000));
    chain.set_fee_estimate(Some(FeeRate::from_sat_per_vb_u32(100)));
    let mut cfg = config();
    cfg.max_fee_per_anchor = Amount::from_sat(1_000);
    let store = MemoryStore::new();
    let mut d = open(&chain, &store, cfg.clone());
    d.submit_epoch(payload(0)).unwrap();
    let a = anchored(&step(&mut d)).unwrap();
    assert!(d.machine().records()[&a].fee <= Amount::from_sat(1_000), "capped");

    let chain = ScriptedBackend::new();
    chain.fund(&anchor_script(&key().public()), Amount::from_sat(1_000_000));
    cfg.max_fee_per_anchor = Amount::from_sat(50);
    let mut d = open(&chain, &MemoryStore::new(), cfg.clone());
    d.submit_epoch(payload(0)).unwrap();
    let n = step(&mut d);
    assert!(n.iter().any(|x| matches!(x, Notice::FeeCapReached { .. })), "{n:?}");
    assert!(chain.mempool().is_empty());

    // The daily budget counts every anchor of the day.
    let chain = ScriptedBackend::new();
    chain.fund(&anchor_script(&key().public()), Amount::from_sat(1_000_000));
    cfg.max_fee_per_anchor = Amount::from_sat(50_000);
    cfg.max_fee_per_day = Amount::from_sat(400);
    let mut d = open(&chain, &MemoryStore::new(), cfg);
    anchor_and_confirm(&chain, &mut d, 0);
    d.submit_epoch(payload(1)).unwrap();
    let n = step(&mut d);
    assert!(n.iter().any(|x| matches!(x, Notice::FeeCapReached { .. })), "{n:?}");
    // Next day, the budget is back.
    let n = d.step(1_767_225_600 + 86_400, [1; 32]).unwrap();
    assert!(anchored(&n).is_some(), "{n:?}");
}

#[test]
fn dust_is_never_created() {
    let chain = ScriptedBackend::new();
    chain.fund(&anchor_script(&key().public()), Amount::from_sat(1_050));
    let mut d = open(&chain, &MemoryStore::new(), config());
    d.submit_epoch(payload(0)).unwrap();
    assert!(step(&mut d).iter().any(|n| matches!(n, Notice::InsufficientFunds { .. })));
    assert!(chain.mempool().is_empty());
    // A dust payout is refused by the builder.
    let plan = AnchorPlan {
        chain_input: Utxo { outpoint: OutPoint::null(), value: Amount::from_sat(100_000) },
        extra_inputs: vec![],
        payload: payload(0),
        payouts: vec![Payout {
            id: 9,
            script_pubkey: anchor_script(&key().public()),
            amount: Amount::from_sat(329),
        }],
        fee_rate: FeeRate::from_sat_per_vb_u32(1),
    };
    assert!(matches!(
        tx::build_anchor(&plan, &KeySigner::new(key()), &[0; 32]),
        Err(tx::BuildError::DustPayout { id: 9, .. })
    ));
}

#[test]
fn payouts_ride_on_an_anchor_and_are_reported_when_confirmed() {
    let (chain, _store, mut d) = funded();
    let worker = SigningKey::from_secret_bytes([5; 32]).unwrap();
    let script = anchor_script(&worker.public());
    d.queue_payouts(vec![
        Payout { id: 1, script_pubkey: script.clone(), amount: Amount::from_sat(5_000) },
        Payout { id: 2, script_pubkey: script.clone(), amount: Amount::from_sat(7_000) },
    ])
    .unwrap();
    d.submit_epoch(payload(0)).unwrap();
    let a = anchored(&step(&mut d)).unwrap();
    let tx = d.machine().records()[&a].tx().unwrap();
    assert_eq!(tx.output.len(), 4);
    assert_eq!(tx.output[2].value + tx.output[3].value, Amount::from_sat(12_000));
    chain.mine(1);
    let n = step(&mut d);
    assert!(n.iter().any(|x| matches!(x, Notice::Confirmed { payout_ids, .. } if payout_ids == &vec![1, 2])));
}

fn reorg_case(depth: u32) {
    let (chain, _store, mut d) = funded();
    anchor_and_confirm(&chain, &mut d, 0);
    d.submit_epoch(payload(1)).unwrap();
    let a1 = anchored(&step(&mut d)).unwrap();
    chain.mine(1);
    chain.mine_empty(depth - 1);
    assert_eq!(confirmed(&step(&mut d)), vec![a1]);
    let confirmed_at = match d.machine().records()[&a1].status {
        AnchorStatus::Confirmed { height, .. } => height,
        ref s => panic!("{s:?}"),
    };
    // A longer branch without the anchor (like `invalidateblock` and mining elsewhere).
    chain.disconnect(depth);
    chain.evict(&a1);
    chain.mine_empty(depth + 1);
    let n = step(&mut d);
    assert!(n.iter().any(|x| matches!(x, Notice::Unconfirmed { txid } if *txid == a1)), "{n:?}");
    assert_eq!(d.machine().records()[&a1].status, AnchorStatus::Pending);
    assert!(matches!(d.machine().epoch_status(1, chain.height()), EpochAnchorStatus::Pending { .. }));
    assert_eq!(chain.mempool().len(), 1, "re-broadcast after the reorg");
    chain.mine(1);
    assert_eq!(confirmed(&step(&mut d)), vec![a1]);
    match d.machine().records()[&a1].status {
        AnchorStatus::Confirmed { height, .. } => assert!(height > confirmed_at),
        ref s => panic!("{s:?}"),
    }
    // The anchor chain continues from it.
    let a2 = anchor_and_confirm(&chain, &mut d, 2);
    assert_eq!(d.machine().records()[&a2].chain_input(), Some(OutPoint { txid: a1, vout: 0 }));
}

#[test]
fn reorg_of_depth_1_is_recovered() {
    reorg_case(1);
}

#[test]
fn reorg_of_depth_3_is_recovered() {
    reorg_case(3);
}

#[test]
fn node_down_is_transient_and_work_resumes() {
    let (chain, _store, mut d) = funded();
    d.submit_epoch(payload(0)).unwrap();
    chain.set_down(true);
    let err = d.step(1, [0; 32]).unwrap_err();
    assert!(err.is_transient(), "{err}");
    chain.set_down(false);
    let a = anchored(&step(&mut d)).unwrap();
    chain.mine(1);
    assert_eq!(confirmed(&step(&mut d)), vec![a]);
}

#[test]
fn wrong_network_is_refused() {
    let chain = ScriptedBackend::new();
    let err = AnchorDriver::open(
        chain,
        MemoryStore::new(),
        AnchorConfig::new(Network::Signet),
        Box::new(KeySigner::new(key())),
        cairn_anchor::Start::Height(0),
    )
    .err()
    .unwrap();
    assert!(matches!(err, DriverError::WrongNetwork { .. }), "{err}");
    assert!(err.to_string().contains("regtest"));
}

#[test]
fn nothing_is_broadcast_when_the_write_before_it_fails() {
    let (chain2, store2) = (ScriptedBackend::new(), MemoryStore::new());
    chain2.fund(&anchor_script(&key().public()), Amount::from_sat(1_000_000));
    let mut d2 = open(&chain2, &store2, config());
    d2.submit_epoch(payload(0)).unwrap();
    d2.sync().unwrap();
    store2.fail_next_commit();
    assert!(matches!(d2.step(1, [0; 32]), Err(DriverError::Store(_))));
    assert!(chain2.mempool().is_empty(), "a failed write must stop the broadcast");
    // The next round, with the store healthy again, anchors normally.
    assert!(anchored(&step(&mut d2)).is_some());
}

/// A store that dies after `limit` commits: every later commit fails, as if the process
/// had been killed right after the last successful write.
#[derive(Clone)]
struct DyingStore {
    inner: MemoryStore,
    limit: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("killed")]
struct Killed;

impl AnchorStore for DyingStore {
    type Error = Killed;
    fn load(&self) -> Result<Option<(cairn_anchor::machine::Head, Vec<cairn_anchor::AnchorRecord>)>, Killed> {
        self.inner.load().map_err(|_| Killed)
    }
    fn commit(&mut self, cs: &Changeset) -> Result<(), Killed> {
        if self.inner.commits() >= self.limit {
            return Err(Killed);
        }
        self.inner.commit(cs).map_err(|_| Killed)
    }
}

/// The scenario: genesis, a chained anchor, a stuck one replaced, a reorg, payouts.
fn scenario<S: AnchorStore>(
    chain: &ScriptedBackend,
    d: &mut AnchorDriver<ScriptedBackend, S>,
    round: u32,
) -> Result<(), DriverError> {
    let t = 1_767_225_600 + u64::from(round);
    match round {
        0 => {
            d.submit_epoch(payload(0))?;
        }
        1 | 3 | 5 | 9 | 11 => {
            d.step(t, [round as u8; 32])?;
        }
        2 | 6 | 10 => {
            chain.mine(1);
        }
        4 => {
            d.submit_epoch(payload(1))?;
            d.queue_payouts(vec![Payout {
                id: 77,
                script_pubkey: anchor_script(&SigningKey::from_secret_bytes([6; 32]).unwrap().public()),
                amount: Amount::from_sat(4_000),
            }])?;
        }
        7 => {
            chain.mine_empty(3);
            d.submit_epoch(payload(2))?;
        }
        8 => {
            chain.disconnect(1);
            chain.mine(2);
        }
        _ => {}
    }
    Ok(())
}

const ROUNDS: u32 = 13;

#[test]
fn killed_after_any_write_and_restarted_it_never_loses_or_doubles_an_anchor() {
    // How many commits the full scenario makes when nothing dies.
    let total = {
        let chain = ScriptedBackend::new();
        chain.fund(&anchor_script(&key().public()), Amount::from_sat(1_000_000));
        let store = MemoryStore::new();
        let mut d = open(&chain, &store, config());
        for r in 0..ROUNDS {
            scenario(&chain, &mut d, r).unwrap();
        }
        store.commits()
    };
    assert!(total > 10, "scenario too small: {total} commits");
    for limit in 0..=total {
        let chain = ScriptedBackend::new();
        chain.fund(&anchor_script(&key().public()), Amount::from_sat(1_000_000));
        let store = MemoryStore::new();
        let dying = DyingStore { inner: store.clone(), limit };
        let mut d = AnchorDriver::open(
            chain.clone(),
            dying,
            config(),
            Box::new(KeySigner::new(key())),
            cairn_anchor::Start::Height(0),
        )
        .unwrap();
        let mut round = 0;
        while round < ROUNDS {
            if scenario(&chain, &mut d, round).is_err() {
                break;
            }
            round += 1;
        }
        // Restart from what was written, and replay the rest (an operator re-submits the
        // epoch the coordinator has not seen anchored; submitting twice is harmless).
        let mut d = open(&chain, &store.snapshot(), config());
        for r in round..ROUNDS {
            scenario(&chain, &mut d, r).unwrap();
        }
        d.submit_epoch(payload(2)).unwrap();
        for _ in 0..6 {
            d.step(1_767_300_000, [9; 32]).unwrap();
            chain.mine(1);
        }
        d.step(1_767_300_000, [9; 32]).unwrap();
        // Every record that confirmed spends a distinct chain input; the chain is one line.
        let chain_records = d.machine().confirmed_chain();
        assert!(!chain_records.is_empty(), "limit {limit}");
        assert_eq!(chain_records.last().unwrap().payload, payload(2), "limit {limit}: newest epoch anchored");
        let mut parents: Vec<OutPoint> = chain_records.iter().filter_map(|r| r.chain_input()).collect();
        parents.sort();
        parents.dedup();
        assert_eq!(parents.len(), chain_records.len(), "limit {limit}: two anchors share a parent");
        for r in &chain_records {
            assert!(chain.is_confirmed(&r.txid), "limit {limit}: {} not on chain", r.txid);
        }
        for w in chain_records.windows(2) {
            assert_eq!(w[1].chain_input(), Some(OutPoint { txid: w[0].txid, vout: 0 }), "limit {limit}");
        }
        assert!(d.machine().pending().is_empty(), "limit {limit}");
    }
}

fn open_at_tip(chain: &ScriptedBackend, store: &MemoryStore, config: AnchorConfig) -> Driver {
    AnchorDriver::open(
        chain.clone(),
        store.clone(),
        config,
        Box::new(KeySigner::new(key())),
        cairn_anchor::Start::Tip,
    )
    .unwrap()
}

#[test]
fn a_fresh_node_starts_from_the_utxo_set_and_scans_only_the_newest_blocks() {
    let chain = ScriptedBackend::new();
    let deep = chain.fund(&anchor_script(&key().public()), Amount::from_sat(1_000_000));
    chain.mine(300);
    let shallow = chain.fund(&anchor_script(&key().public()), Amount::from_sat(400_000));
    chain.mine(1);
    let tip = chain.height();
    let mut cfg = config();
    cfg.genesis_depth = 3;
    let store = MemoryStore::new();
    let mut d = open_at_tip(&chain, &store, cfg.clone());
    // The start is persisted before anything else: a restart resumes from it, not the tip.
    assert!(store.load().unwrap().is_some());
    assert_eq!(d.machine().next_height(), tip + 1 - 3);
    let held: Vec<OutPoint> = d.machine().head().utxos.iter().map(|u| u.outpoint).collect();
    assert_eq!(held, vec![deep], "the deep output comes from the set; the shallow one from the blocks");
    step(&mut d);
    let mut held: Vec<OutPoint> = d.machine().head().utxos.iter().map(|u| u.outpoint).collect();
    held.sort();
    let mut want = vec![deep, shallow];
    want.sort();
    assert_eq!(held, want);
    assert_eq!(d.machine().next_height(), tip + 1);
    // It anchors like a node that scanned everything.
    d.submit_epoch(payload(0)).unwrap();
    let txid = anchored(&step(&mut d)).expect("anchored");
    chain.mine(1);
    assert!(confirmed(&step(&mut d)).contains(&txid));
    // Restarted with the same store it resumes where it stood (the block after the anchor's),
    // not at the new tip: the UTXO set is read once, on the first start.
    chain.mine(2);
    let again = open_at_tip(&chain, &store, cfg);
    assert_eq!(again.machine().next_height(), tip + 2);
}

#[test]
fn funds_inside_the_rescan_window_follow_a_reorg() {
    let chain = ScriptedBackend::new();
    chain.mine(10);
    let op = chain.fund(&anchor_script(&key().public()), Amount::from_sat(1_000_000));
    let mut cfg = config();
    cfg.genesis_depth = 3;
    let store = MemoryStore::new();
    let mut d = open_at_tip(&chain, &store, cfg);
    step(&mut d);
    assert!(d.machine().head().utxos.iter().any(|u| u.outpoint == op));
    // The funding block leaves the best chain: the output goes with it.
    chain.disconnect(1);
    chain.mine_empty(2);
    step(&mut d);
    assert!(d.machine().head().utxos.is_empty(), "{:?}", d.machine().head().utxos);
}

#[test]
fn a_lying_utxo_scan_adds_nothing_that_is_not_the_keys_deep_output() {
    use cairn_anchor::{OutputScan, ScannedOutput};
    let mine = anchor_script(&key().public());
    let other = anchor_script(&SigningKey::from_secret_bytes([5; 32]).unwrap().public());
    let op = |n: u8| OutPoint {
        txid: Txid::from_raw_hash(bitcoin::hashes::Hash::from_byte_array([n; 32])),
        vout: 0,
    };
    let out = |n: u8, script: &bitcoin::ScriptBuf, sats: u64, height: u32| ScannedOutput {
        outpoint: op(n),
        value: Amount::from_sat(sats),
        script_pubkey: script.clone(),
        height,
        coinbase: false,
    };
    let scan = OutputScan {
        height: 1_000,
        block: bitcoin::BlockHash::from_raw_hash(bitcoin::hashes::Hash::from_byte_array([9; 32])),
        outputs: vec![
            out(1, &mine, 500_000, 10),
            // Another key's output, dust, one above the rescan window, one listed twice.
            out(2, &other, 9_000_000, 10),
            out(3, &mine, 500, 10),
            out(4, &mine, 700_000, 999),
            out(5, &mine, 600_000, 20),
            out(5, &mine, 600_000, 20),
        ],
    };
    let mut cfg = config();
    cfg.genesis_depth = 6;
    let (m, effects) = cairn_anchor::AnchorMachine::from_scan(cfg, &key().public(), &scan, None);
    let mut held: Vec<OutPoint> = m.head().utxos.iter().map(|u| u.outpoint).collect();
    held.sort();
    assert_eq!(held, vec![op(1), op(5)]);
    assert_eq!(m.next_height(), 995);
    assert!(matches!(effects.first(), Some(cairn_anchor::machine::Effect::Persist(_))));
}

#[test]
fn a_reorg_below_a_fresh_start_is_an_error_not_a_silent_switch_of_branches() {
    let chain = ScriptedBackend::new();
    let deep = chain.fund(&anchor_script(&key().public()), Amount::from_sat(1_000_000));
    chain.mine(20);
    let mut cfg = config();
    cfg.genesis_depth = 2;
    let store = MemoryStore::new();
    let mut d = open_at_tip(&chain, &store, cfg);
    step(&mut d);
    assert!(d.machine().head().utxos.iter().any(|u| u.outpoint == deep));
    // Five blocks replaced: three more than the machine holds. It must not connect the new
    // branch on top of what it read below its start as if nothing happened.
    chain.disconnect(5);
    // Blocks paying another miner: the branch differs from the one it replaces.
    chain.mine_to(&anchor_script(&SigningKey::from_secret_bytes([5; 32]).unwrap().public()), 6);
    let err = d.step(1_767_225_600, [7; 32]).unwrap_err();
    assert!(matches!(err, DriverError::Machine(cairn_anchor::machine::MachineError::TooDeep(_))), "{err}");
}

#[test]
fn a_utxo_set_read_at_a_block_off_the_best_chain_is_not_built_on() {
    use cairn_anchor::{OutputScan, ScannedOutput};
    // A backend whose scan names a block the chain does not have (a lie, or a tip that moved).
    struct Stale(ScriptedBackend);
    impl ChainBackend for Stale {
        fn chain_info(&self) -> Result<cairn_anchor::ChainInfo, cairn_anchor::ChainError> {
            self.0.chain_info()
        }
        fn block_hash(&self, h: u32) -> Result<Option<bitcoin::BlockHash>, cairn_anchor::ChainError> {
            self.0.block_hash(h)
        }
        fn block(&self, h: &bitcoin::BlockHash) -> Result<bitcoin::Block, cairn_anchor::ChainError> {
            self.0.block(h)
        }
        fn block_height(&self, h: &bitcoin::BlockHash) -> Result<Option<u32>, cairn_anchor::ChainError> {
            self.0.block_height(h)
        }
        fn transaction(
            &self,
            t: &Txid,
            b: Option<&bitcoin::BlockHash>,
        ) -> Result<Option<bitcoin::Transaction>, cairn_anchor::ChainError> {
            self.0.transaction(t, b)
        }
        fn scan_outputs(&self, s: &bitcoin::ScriptBuf) -> Result<OutputScan, cairn_anchor::ChainError> {
            let real = self.0.scan_outputs(s)?;
            let fake: Vec<ScannedOutput> = real.outputs;
            Ok(OutputScan {
                block: bitcoin::BlockHash::from_raw_hash(bitcoin::hashes::Hash::from_byte_array([1; 32])),
                outputs: fake,
                ..real
            })
        }
        fn utxo(
            &self,
            o: &OutPoint,
            m: bool,
        ) -> Result<Option<cairn_anchor::UtxoInfo>, cairn_anchor::ChainError> {
            self.0.utxo(o, m)
        }
        fn estimate_fee(&self, t: u16) -> Result<Option<FeeRate>, cairn_anchor::ChainError> {
            self.0.estimate_fee(t)
        }
        fn relay_fee(&self) -> Result<FeeRate, cairn_anchor::ChainError> {
            self.0.relay_fee()
        }
        fn in_mempool(&self, t: &Txid) -> Result<bool, cairn_anchor::ChainError> {
            self.0.in_mempool(t)
        }
        fn test_accept(&self, tx: &bitcoin::Transaction) -> Result<(), cairn_anchor::BroadcastError> {
            self.0.test_accept(tx)
        }
        fn broadcast(&self, tx: &bitcoin::Transaction) -> Result<Txid, cairn_anchor::BroadcastError> {
            self.0.broadcast(tx)
        }
    }
    let chain = ScriptedBackend::new();
    chain.fund(&anchor_script(&key().public()), Amount::from_sat(1_000_000));
    chain.mine(10);
    let store = MemoryStore::new();
    let opened = AnchorDriver::open(
        Stale(chain.clone()),
        store.clone(),
        config(),
        Box::new(KeySigner::new(key())),
        cairn_anchor::Start::Tip,
    );
    let err = opened.err().expect("refused");
    assert!(err.is_transient(), "{err}");
    assert!(store.load().unwrap().is_none(), "nothing was persisted");
}

#[test]
fn the_chain_output_spent_by_someone_else_is_reported_even_with_no_anchor_pending() {
    // A second node with the same key (or a stale restore) spends the chain output first.
    let (chain, _store, mut d) = funded();
    let txid = anchor_and_confirm(&chain, &mut d, 0);
    let thief = bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn { previous_output: OutPoint { txid, vout: 0 }, ..Default::default() }],
        output: vec![bitcoin::TxOut {
            value: Amount::from_sat(500),
            script_pubkey: anchor_script(&SigningKey::from_secret_bytes([5; 32]).unwrap().public()),
        }],
    };
    chain.mine_with(vec![thief.clone()]);
    let notices = step(&mut d);
    assert!(
        notices.iter().any(|n| matches!(n, Notice::ForeignSpend { outpoint, txid: by }
            if *outpoint == OutPoint { txid, vout: 0 } && *by == thief.compute_txid())),
        "{notices:?}"
    );
}
