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
use cairn_spec::{Hash32, Object, PubKey, Roster, Signed, SigningKey, Task};
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

/// What the auditor needs for epoch `epoch`'s receipts, read from the coordinator's store.
struct Parts {
    header: cairn_spec::SignedEpochHeader,
    receipts: Vec<cairn_spec::SignedReceipt>,
    tasks: BTreeMap<Hash32, Task>,
    draws: BTreeMap<u32, DrawEpoch>,
    first: Option<cairn_spec::SignedEpochHeader>,
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
    Parts {
        header: ls::header(&h.store, epoch).unwrap().unwrap(),
        receipts,
        tasks,
        draws,
        first: ls::header(&h.store, 0).unwrap(),
    }
}

fn audit(epoch: u32, p: &Parts) -> DrawAudit {
    assert_eq!(p.header.body.height, epoch);
    check_draws(&p.header, &p.receipts, &p.tasks, &p.draws, p.first.as_ref())
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
    // The tasks come after header 0 closed.
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
    // seeing the tasks) does not open the commitment of the header before.
    let mut p = parts(&h, e);
    let d = p.draws.get_mut(&e).unwrap();
    let mut body = d.header.body.clone();
    body.draw_seed = Hash32([7; 32]);
    d.header = Signed::sign(body, &h.coord, &[0; 32]);
    let a = audit(e, &p);
    assert_eq!(a.report.first_failure().map(|c| c.name), Some("draw_seeds"), "{:?}", a.report);
    assert!(a.slots.is_empty());

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

    // A coordinator that names draw epoch 0 (drawn before the first header, so not checkable)
    // for slots drawn later, re-signing the receipts and the header, is caught: epoch 0
    // closed before those tasks existed.
    let mut p = parts(&h, e);
    for r in &mut p.receipts {
        let mut b = r.body.clone();
        b.draw_epoch = 0;
        *r = cairn_spec::SignedReceipt::sign(b, &h.coord, &[0; 32]);
    }
    let mut body = p.header.body.clone();
    body.receipts_root = cairn_spec::merkle::root(&p.receipts.iter().map(|r| r.id()).collect::<Vec<_>>());
    p.header = Signed::sign(body, &h.coord, &[0; 32]);
    p.draws.clear();
    let a = audit(e, &p);
    assert_eq!(a.report.first_failure().map(|c| c.name), Some("draw_times"), "{:?}", a.report);
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
    assert_eq!(roster.ranking(&seed, &t), roster.ranking(&seed, &other));
    // Another seed ranks differently.
    assert_ne!(roster.ranking(&seed, &t), roster.ranking(&Hash32([6; 32]), &t));
}
