//! Checkable draws (SPEC.md §12.1), played against the lifecycle machine and checked by the
//! auditor's own code (`cairn_audit::draws`): an honest coordinator's every slot goes to the
//! best-ranked ready key and the auditor recomputes it; a coordinator that hands slots to its
//! own keys is seen passing the others over; and a header revealing another seed than it
//! committed to, a roster other than the committed one, or a task swapped for another are
//! each refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]
mod harness;

use std::collections::{BTreeMap, BTreeSet};

use cairn_audit::draws::{check_draws, DrawAudit, DrawEpoch};
use cairn_coordinator::lifecycle_store as ls;
use cairn_spec::{AnchorBinding, Beacon, Hash32, Object, PubKey, Roster, Signed, SigningKey, Task};
use harness::*;

/// Closes the open epoch (it holds receipts) and returns its height.
fn close(h: &mut Harness) -> u32 {
    let height = h.m.meta().next_epoch;
    h.tick(1);
    let step = h.m.close_epoch(h.now);
    h.apply(step);
    assert_eq!(h.m.meta().next_epoch, height + 1, "epoch {height} closed");
    height
}

/// A binding as the anchor side reports it once it chose the genesis output.
fn binding(vout: u32) -> AnchorBinding {
    AnchorBinding::Key { key: key(900).public(), genesis_txid: Hash32([9; 32]), genesis_vout: vout }
}

fn bind(h: &mut Harness) {
    let step = h.m.bind(binding(0));
    h.apply(step);
}

/// What the auditor needs for epoch `epoch`'s receipts, read from the coordinator's store.
struct Parts {
    header: cairn_spec::SignedEpochHeader,
    receipts: Vec<cairn_spec::SignedReceipt>,
    tasks: BTreeMap<Hash32, Task>,
    draws: BTreeMap<u32, DrawEpoch>,
    after: BTreeMap<u32, cairn_spec::SignedEpochHeader>,
}

fn parts(h: &Harness, epoch: u32) -> Parts {
    let receipts = ls::epoch_receipts(&h.store, epoch).unwrap();
    let mut tasks = BTreeMap::new();
    for r in &receipts {
        tasks.insert(r.body.task, ls::task(&h.store, &r.body.task).unwrap().unwrap().task);
    }
    let mut draws = BTreeMap::new();
    for e in receipts.iter().map(|r| r.body.draw_epoch).filter(|e| *e > 0).collect::<BTreeSet<_>>() {
        draws.insert(
            e,
            DrawEpoch {
                header: ls::header(&h.store, e).unwrap().unwrap(),
                prev: ls::header(&h.store, e - 1).unwrap().unwrap(),
                roster: ls::roster(&h.store, e).unwrap().unwrap(),
            },
        );
    }
    let after = (1..epoch).map(|e| (e, ls::header(&h.store, e).unwrap().unwrap())).collect();
    Parts { header: ls::header(&h.store, epoch).unwrap().unwrap(), receipts, tasks, draws, after }
}

fn audit(epoch: u32, p: &Parts) -> DrawAudit {
    assert_eq!(p.header.body.height, epoch);
    check_draws(&p.header, &p.receipts, &p.tasks, &p.draws, &p.after)
}

/// Registers `n` workers, runs tasks in epoch 0 until every worker has enough locked credit
/// not to be light (SPEC.md §12.4: a task holds at most one light key, so light keys are
/// passed over beside another) and closes it: the header commits to the seed and roster of
/// epoch 1's draws.
fn network(n: u32, replication: u8) -> (Harness, Vec<SigningKey>, cairn_spec::TaskClass) {
    let class = exact(replication);
    let mut h = Harness::new(vec![class.clone()], |_| {});
    let ws: Vec<SigningKey> = (0..n).map(|i| key(10 + i)).collect();
    for w in &ws {
        h.register(w);
    }
    h.build_stake(&class, &ws, 280);
    assert_eq!(close(&mut h), 0);
    (h, ws, class)
}

#[test]
fn every_slot_goes_to_the_best_ranked_ready_key_and_an_auditor_recomputes_it() {
    let (mut h, ws, class) = network(10, 2);
    let roster = ls::roster(&h.store, 1).unwrap().unwrap();
    assert_eq!(roster.keys().len(), 10);
    assert_eq!(roster.root(), ls::header(&h.store, 0).unwrap().unwrap().body.next_roster);
    for t in 0..40u32 {
        let id = h.submit(&class, &t.to_be_bytes(), None);
        h.run_task(id, &ws, &|_| b"right".to_vec());
    }
    let e = close(&mut h);
    let p = parts(&h, e);
    let a = audit(e, &p);
    assert!(a.report.ok(), "{:?}", a.report);
    // Every worker was asking all along: every slot went to the best-ranked key not on the
    // task, and nobody was passed over.
    assert_eq!(a.slots.len(), p.receipts.len());
    assert_eq!(a.checkable(), a.slots.len());
    assert_eq!(a.first_ranked(), a.slots.len(), "{:?}", a.passed_over());
    // Epoch 0's slots were drawn before any header committed to a seed: not checkable.
    let p0 = parts(&h, 0);
    let a0 = audit(0, &p0);
    assert!(a0.report.ok());
    assert_eq!((a0.checkable(), a0.slots.len()), (0, p0.receipts.len()));
    // The seed is revealed only by the epoch's own header, as committed.
    let (h0, h1) = (ls::header(&h.store, 0).unwrap().unwrap(), ls::header(&h.store, 1).unwrap().unwrap());
    assert_eq!(cairn_spec::draw::seed_hash(&h1.body.draw_seed), h0.body.next_seed_hash);
    assert_ne!(h0.body.draw_seed, h1.body.draw_seed);
}

#[test]
fn a_coordinator_that_hands_slots_to_its_own_keys_is_seen_passing_the_others_over() {
    let (mut h, ws, class) = network(10, 2);
    // The coordinator "sees" only its own three keys as ready: it ignores the honest workers'
    // requests. A worker cannot prove it was ignored, but the draws it can recompute show it
    // passed over, slot after slot.
    let own = &ws[..3];
    let honest: Vec<PubKey> = ws[3..].iter().map(|w| w.public()).collect();
    for t in 0..40u32 {
        let id = h.submit(&class, &t.to_be_bytes(), None);
        h.run_task(id, own, &|_| b"right".to_vec());
    }
    let e = close(&mut h);
    let a = audit(e, &parts(&h, e));
    assert!(a.report.ok(), "{:?}", a.report);
    let over: BTreeMap<PubKey, u32> = a.passed_over().into_iter().collect();
    println!(
        "coordinator favouring 3 of 10 keys: {} slots, {} first-ranked, honest keys passed over {} times",
        a.slots.len(),
        a.first_ranked(),
        over.values().sum::<u32>()
    );
    // Its keys were first-ranked only when they happened to rank first (about 1 slot in 4);
    // every honest key was passed over, most of them many times.
    assert!(a.first_ranked() * 3 < a.slots.len(), "{} of {}", a.first_ranked(), a.slots.len());
    for k in &honest {
        assert!(over.get(k).copied().unwrap_or(0) > 0, "{k} never passed over");
    }
    // And an honest worker can list the slots that passed it over.
    let mine = a.slots.iter().filter(|s| s.passed_over.contains(&honest[0])).count();
    assert!(mine > 0);
}

#[test]
fn a_seed_other_than_committed_a_swapped_roster_or_task_is_refused() {
    let (mut h, ws, class) = network(6, 2);
    // Epoch 1 holds one task; the tasks audited come after header 1 closed.
    let id = h.submit(&class, b"epoch 1", None);
    h.run_task(id, &ws, &|_| b"right".to_vec());
    close(&mut h);
    h.tick(5);
    for t in 0..5u32 {
        let id = h.submit(&class, &t.to_be_bytes(), None);
        h.run_task(id, &ws, &|_| b"right".to_vec());
    }
    let e = close(&mut h);
    let honest = parts(&h, e);
    assert!(audit(e, &honest).report.ok());

    // A source that leaves out a receipt (one whose draw would look bad) is caught: the
    // receipts no longer add up to the header's root.
    let mut p = parts(&h, e);
    p.receipts.pop();
    assert_eq!(audit(e, &p).report.first_failure().map(|c| c.name), Some("receipts"));

    // A header re-signed to reveal another seed (one the coordinator could grind after
    // seeing the tasks) does not open the commitment of the header before: it does not
    // follow it.
    let mut p = parts(&h, e);
    let mut body = p.header.body.clone();
    body.draw_seed = Hash32([7; 32]);
    p.header = Signed::sign(body, &h.coord, &[0; 32]);
    p.draws.get_mut(&e).unwrap().header = p.header.clone();
    let a = audit(e, &p);
    assert_eq!(a.report.first_failure().map(|c| c.name), Some("linked"), "{:?}", a.report);
    assert!(a.slots.is_empty());
    // Served only where the draw epoch's header is asked for, it is another header for the
    // same height than the one the receipts' header is.
    let mut p = parts(&h, e);
    let d = p.draws.get_mut(&e).unwrap();
    let mut body = d.header.body.clone();
    body.draw_seed = Hash32([7; 32]);
    d.header = Signed::sign(body, &h.coord, &[0; 32]);
    assert_eq!(audit(e, &p).report.first_failure().map(|c| c.name), Some("linked"));

    // A roster with one more key (one of the coordinator's, to rank first) is not the one
    // committed to.
    let mut p = parts(&h, e);
    let d = p.draws.get_mut(&e).unwrap();
    let mut keys = d.roster.keys().to_vec();
    keys.push(key(999).public());
    d.roster = Roster::new(keys);
    assert_eq!(audit(e, &p).report.first_failure().map(|c| c.name), Some("rosters"));

    // A task served in place of the one a receipt names (another requester ranks other keys).
    let mut p = parts(&h, e);
    let (id, t) = p.tasks.iter().next().map(|(i, t)| (*i, t.clone())).unwrap();
    p.tasks.insert(id, Task { requester: key(998).public(), ..t });
    assert_eq!(audit(e, &p).report.first_failure().map(|c| c.name), Some("tasks"));
    // A task missing altogether.
    let mut p = parts(&h, e);
    p.tasks.remove(&id);
    assert_eq!(audit(e, &p).report.first_failure().map(|c| c.name), Some("tasks"));

    // A coordinator may name the epoch before the one a task was created in (its draws go
    // on while the open epoch waits for its beacon), but no earlier: naming draw epoch 0
    // (drawn before the first header, so not checkable) for slots of tasks created in epoch
    // 2, re-signing the receipts and the header, is caught: epoch 1 closed before those
    // tasks existed.
    let renamed = |d: u32| {
        let mut p = parts(&h, e);
        for r in &mut p.receipts {
            let mut b = r.body.clone();
            b.draw_epoch = d;
            *r = cairn_spec::SignedReceipt::sign(b, &h.coord, &[0; 32]);
        }
        let mut body = p.header.body.clone();
        body.receipts_root = cairn_spec::merkle::root(&p.receipts.iter().map(|r| r.id()).collect::<Vec<_>>());
        p.header = Signed::sign(body, &h.coord, &[0; 32]);
        p.draws.retain(|k, _| *k == d);
        if d > 0 {
            p.draws.insert(
                d,
                DrawEpoch {
                    header: ls::header(&h.store, d).unwrap().unwrap(),
                    prev: ls::header(&h.store, d - 1).unwrap().unwrap(),
                    roster: ls::roster(&h.store, d).unwrap().unwrap(),
                },
            );
        }
        p
    };
    let a = audit(e, &renamed(0));
    assert_eq!(a.report.first_failure().map(|c| c.name), Some("draw_times"), "{:?}", a.report);
    let a = audit(e, &renamed(1));
    assert!(a.report.ok(), "the epoch before the task's may be named: {:?}", a.report);
}

#[test]
fn a_draw_does_not_depend_on_what_the_coordinator_picks_when_it_accepts_a_task() {
    let (h, _, _) = network(4, 2);
    let first = ls::epoch_receipts(&h.store, 0).unwrap()[0].body.task;
    let t = ls::task(&h.store, &first).unwrap().unwrap().task;
    let roster = ls::roster(&h.store, 1).unwrap().unwrap();
    let seed = Hash32([5; 32]);
    // Another nonce or acceptance time gives another task id, but the same ranking: the
    // coordinator cannot try ids until its own keys rank first.
    let other = Task { nonce: t.nonce ^ 1, created_at: t.created_at + 7, ..t.clone() };
    assert_ne!(other.id(), t.id());
    let none = Beacon::None;
    assert_eq!(roster.ranking(&seed, &none, &t), roster.ranking(&seed, &none, &other));
    // Another seed, or another beacon block, ranks differently.
    assert_ne!(roster.ranking(&seed, &none, &t), roster.ranking(&Hash32([6; 32]), &none, &t));
    let block = Beacon::Block { height: 7, hash: Hash32([8; 32]) };
    assert_ne!(roster.ranking(&seed, &none, &t), roster.ranking(&seed, &block, &t));
}

/// With Bitcoin (SPEC.md §12.1): epoch 1 waits for its beacon, the block after header 0's
/// anchor. Meanwhile its tasks are drawn with epoch 0's ranking and it does not close; once
/// armed, its draws use its own seed, roster and beacon, and its header carries the beacon.
/// Epoch 2's draws go on with epoch 1's ranking until its own beacon, and the auditor
/// recomputes every one of them; a restart keeps the arming.
#[test]
fn an_epoch_waits_for_its_beacon_while_draws_go_on_with_the_epoch_before() {
    let class = exact(2);
    let mut h = Harness::new(vec![class.clone()], |c| c.beacons = true);
    bind(&mut h);
    let ws: Vec<SigningKey> = (0..8).map(|i| key(10 + i)).collect();
    for w in &ws {
        h.register(w);
    }
    h.build_stake(&class, &ws, 280);
    assert_eq!(close(&mut h), 0, "epoch 0 needs no beacon");
    let h0 = ls::header(&h.store, 0).unwrap().unwrap();
    assert_eq!(h0.body.beacon, Beacon::None);
    let drawn_in = |h: &Harness, id: &Hash32| -> BTreeSet<u32> {
        h.final_task(id).assignments.iter().map(|a| a.drawn_in).collect()
    };

    // Epoch 1 is not armed: its tasks are drawn with epoch 0's ranking, and it does not close.
    assert!(!h.m.armed());
    let early = h.submit(&class, b"before the beacon", None);
    h.run_task(early, &ws, &|_| b"right".to_vec());
    assert_eq!(drawn_in(&h, &early), BTreeSet::from([0]));
    let step = h.m.close_epoch(h.now);
    h.apply(step);
    assert_eq!(h.m.meta().next_epoch, 1, "an unarmed epoch does not close");

    // A beacon after another header, or for another epoch, arms nothing.
    let block = Beacon::Block { height: 102, hash: Hash32([0xbe; 32]) };
    for (epoch, after) in [(1, Hash32([1; 32])), (2, h0.id())] {
        let step = h.m.arm(epoch, after, block);
        h.apply(step);
        assert!(!h.m.armed());
    }
    let step = h.m.arm(1, h0.id(), block);
    h.apply(step);
    assert!(h.m.armed());
    h.reload();
    assert!(h.m.armed(), "a restart keeps the beacon");
    // A reorg deeper than the finality depth moved the anchor: the new block replaces the
    // old while the epoch is open, so the header names what Bitcoin has.
    let moved = Beacon::Block { height: 103, hash: Hash32([0xbd; 32]) };
    let step = h.m.arm(1, h0.id(), moved);
    h.apply(step);
    assert_eq!(h.m.meta().beacon, Some(moved));
    let step = h.m.arm(1, h0.id(), block);
    h.apply(step);
    assert_eq!(h.m.meta().beacon, Some(block));

    for t in 0..10u32 {
        let id = h.submit(&class, &t.to_be_bytes(), None);
        h.run_task(id, &ws, &|_| b"right".to_vec());
        assert_eq!(drawn_in(&h, &id), BTreeSet::from([1]));
    }
    assert_eq!(close(&mut h), 1);
    let h1 = ls::header(&h.store, 1).unwrap().unwrap();
    assert_eq!(h1.body.beacon, block);
    let p1 = parts(&h, 1);
    let a = audit(1, &p1);
    assert!(a.report.ok(), "{:?}", a.report);
    // Every slot drawn with epoch 1's ranking went to its best-ranked key; those drawn
    // before the beacon, with epoch 0's, are not checkable.
    let of_1 = a.slots.iter().filter(|s| s.draw_epoch == 1).count();
    assert!(of_1 >= 20 && a.slots.len() > of_1, "{} slots, {of_1} of epoch 1", a.slots.len());
    assert_eq!((a.checkable(), a.first_ranked()), (of_1, of_1), "{:?}", a.passed_over());

    // Epoch 2 waits for its own beacon, even when due; meanwhile draws use epoch 1's seed,
    // roster and beacon.
    assert!(!h.m.armed());
    for t in 10..16u32 {
        let id = h.submit(&class, &t.to_be_bytes(), None);
        h.run_task(id, &ws, &|_| b"right".to_vec());
        assert_eq!(drawn_in(&h, &id), BTreeSet::from([1]));
    }
    h.tick(3600);
    assert_eq!(h.m.meta().next_epoch, 2, "a due epoch waits for its beacon");
    h.reload();
    let step = h.m.arm(2, h1.id(), Beacon::Block { height: 105, hash: Hash32([0xbf; 32]) });
    h.apply(step);
    assert_eq!(close(&mut h), 2);
    let a = audit(2, &parts(&h, 2));
    assert!(a.report.ok(), "{:?}", a.report);
    assert!(a.slots.len() >= 12);
    assert_eq!((a.checkable(), a.first_ranked()), (a.slots.len(), a.slots.len()), "{:?}", a.passed_over());

    // A store whose epoch-before roster is not the one committed to is refused at start: the
    // draws made while the open epoch waits rank it.
    {
        use cairn_coordinator::store::{Batch, KvStore, Table};
        use cairn_spec::Encode as _;
        let key = [b"r".as_slice(), &2u32.to_be_bytes()].concat();
        let good = ls::roster(&h.store, 2).unwrap().unwrap();
        let mut keys = good.keys().to_vec();
        keys.pop();
        let mut b = Batch::new();
        b.put(Table::Epochs, key.clone(), Roster::new(keys).to_bytes());
        h.store.write(&b).unwrap();
        assert!(ls::load(&h.store).is_err(), "a swapped roster of the epoch before is refused");
        let mut b = Batch::new();
        b.put(Table::Epochs, key, good.to_bytes());
        h.store.write(&b).unwrap();
        assert!(ls::load(&h.store).is_ok());
    }

    // Header 1 re-signed with another beacon (one that ranks the coordinator's keys first)
    // and served where epoch 2's draws are checked does not chain to header 2; that the
    // beacon is the block after header 0's anchor is the chain audit's check against Bitcoin.
    let mut p = parts(&h, 2);
    let d = p.draws.get_mut(&1).unwrap();
    let mut body = d.header.body.clone();
    body.beacon = Beacon::Block { height: 102, hash: Hash32([0xcc; 32]) };
    d.header = Signed::sign(body, &h.coord, &[0; 32]);
    p.after.insert(1, d.header.clone());
    let a = audit(2, &p);
    assert_eq!(a.report.first_failure().map(|c| c.name), Some("linked"), "{:?}", a.report);
    // With it, the same slots would rank differently: the beacon decides the ranking.
    let roster = ls::roster(&h.store, 1).unwrap().unwrap();
    let t = p.tasks.values().next().unwrap();
    let h1 = ls::header(&h.store, 1).unwrap().unwrap().body;
    assert_ne!(
        roster.ranking(&h1.draw_seed, &h1.beacon, t),
        roster.ranking(&h1.draw_seed, &p.draws[&1].header.body.beacon, t)
    );
}

/// An epoch waiting for its beacon cannot close; once it holds `epoch_max_receipts` it takes
/// no new task (a clear refusal, nothing stored) until Bitcoin arms it, so a long outage
/// cannot grow one epoch without bound.
#[test]
fn a_full_epoch_waiting_for_its_beacon_takes_no_new_work() {
    let class = exact(2);
    let mut h = Harness::new(vec![class.clone()], |c| {
        c.beacons = true;
        c.tunables.epoch_max_receipts = 4;
    });
    bind(&mut h);
    let ws: Vec<SigningKey> = (0..4).map(|i| key(10 + i)).collect();
    for w in &ws {
        h.register(w);
    }
    for t in 0..4u32 {
        let id = h.submit(&class, &t.to_be_bytes(), None);
        h.run_task(id, &ws, &|_| b"right".to_vec());
    }
    let meta = h.m.meta().clone();
    assert!(meta.next_epoch >= 1 && !h.m.armed(), "epoch 0 closed on its count; epoch 1 waits");
    assert!(meta.open_receipts >= 4, "{} receipts", meta.open_receipts);
    let (coord, now) = (h.coord.public(), h.now);
    let task = |n: u64| cairn_spec::Task {
        network: cairn_spec::Network::Regtest,
        coordinator: coord,
        class: class.id(),
        requester: key(2000).public(),
        nonce: 1000 + n,
        units: 2,
        budget_sats: 10_000,
        created_at: now,
        input: cairn_spec::Payload::Inline(b"late".to_vec()),
    };
    let refused = h.m.submit_task(task(1), None, h.now);
    assert!(matches!(refused, Err(cairn_coordinator::lifecycle::Refusal::Unavailable(_))), "{refused:?}");
    assert_eq!(h.m.meta(), &meta, "a refusal changes nothing");
    let after = h.m.meta().last_header.as_ref().unwrap().id();
    let step = h.m.arm(meta.next_epoch, after, Beacon::Block { height: 120, hash: Hash32([3; 32]) });
    h.apply(step);
    h.tick(1);
    assert_eq!(h.m.meta().next_epoch, meta.next_epoch + 1, "armed, the full epoch closes");
    assert!(h.m.submit_task(task(2), None, h.now).is_ok());
}

/// Issue 25 item 1: with Bitcoin, every header names the anchor key and genesis output. No
/// header is signed before the anchor side chose them (the first epoch takes work until it
/// is full, then refuses with the reason); once bound, the binding never changes, and the
/// headers carry it through a restart.
#[test]
fn the_first_epoch_waits_for_the_anchor_binding_and_it_never_changes() {
    let class = exact(2);
    let mut h = Harness::new(vec![class.clone()], |c| {
        c.beacons = true;
        c.tunables.epoch_max_receipts = 2;
    });
    let ws: Vec<SigningKey> = (0..4).map(|i| key(10 + i)).collect();
    for w in &ws {
        h.register(w);
    }
    // One task, replicated twice: two receipts fill the epoch.
    let id = h.submit(&class, b"first", None);
    h.run_task(id, &ws, &|_| b"right".to_vec());
    assert!(h.m.meta().open_receipts >= 2);
    h.tick(3_600);
    let step = h.m.close_epoch(h.now);
    h.apply(step);
    assert_eq!(h.m.meta().next_epoch, 0, "no header before the binding");
    assert!(!h.m.bound());
    let meta = h.m.meta().clone();
    let late_task = cairn_spec::Task {
        network: cairn_spec::Network::Regtest,
        coordinator: h.coord.public(),
        class: class.id(),
        requester: key(2000).public(),
        nonce: 7_777,
        units: 2,
        budget_sats: 10_000,
        created_at: h.now,
        input: cairn_spec::Payload::Inline(b"late".to_vec()),
    };
    let late = h.m.submit_task(late_task, None, h.now);
    assert!(matches!(late, Err(cairn_coordinator::lifecycle::Refusal::Unavailable(_))), "{late:?}");
    assert_eq!(h.m.meta(), &meta, "a refusal changes nothing");
    // Unbound values are ignored; the first binding holds.
    assert!(h.m.bind(AnchorBinding::None).is_empty());
    bind(&mut h);
    assert!(h.m.bind(binding(1)).is_empty(), "a second binding is ignored");
    assert_eq!(close(&mut h), 0);
    let h0 = ls::header(&h.store, 0).unwrap().unwrap();
    assert_eq!(h0.body.anchor, binding(0));
    h.reload();
    assert_eq!(h.m.meta().anchor, Some(binding(0)));
}
