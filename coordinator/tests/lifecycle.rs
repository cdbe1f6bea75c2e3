//! The lifecycle state machine driven by scripted events: every step is persisted to the
//! in-memory store exactly as the node does, and the machine is restored from the store at
//! intervals to prove the persisted state is complete.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]
mod harness;

use cairn_coordinator::lifecycle::{
    Effect, LifecycleConfig, Machine, PayoutStatus, Phase, Refusal, Verified,
};
use cairn_coordinator::lifecycle_store as ls;
use cairn_coordinator::store::{KvStore, MemoryStore, StoreError, Table};
use cairn_spec::work::commitment_value;
use cairn_spec::{
    Claim, Commitment, Encode, ErrorReason, Hash32, Network, Object, Payload, PubKey, Registration, Reveal,
    Signed, SigningKey, Task, TaskClass, Verdict,
};
use harness::*;

#[test]
fn happy_path_receipts_epoch_settlement_payout() {
    let class = exact(2);
    let mut h = Harness::new(vec![class.clone()], |c| {
        c.tunables.audit_min_ppm = 0;
        c.tunables.epoch_interval_secs = 300;
        c.tunables.payout_threshold_sats = 400;
    });
    let ws = workers(4);
    for w in &ws {
        h.register(w);
    }
    let mut ids = Vec::new();
    for i in 0..5u8 {
        let id = h.submit(&class, &[i; 8], None);
        ids.push(id);
        h.run_task(id, &ws, &|_| vec![i, 42]);
    }
    // Every task was announced (again when an audit replica's slot opened), and nothing else.
    let announced: std::collections::BTreeSet<Hash32> = h
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Announce(a) => Some(a.body.task.id()),
            _ => None,
        })
        .collect();
    assert_eq!(announced, ids.iter().copied().collect());
    for id in &ids {
        let rec = h.final_task(id);
        assert!(matches!(rec.phase, Phase::Decided { .. }), "{:?}", rec.phase);
        assert!(rec
            .assignments
            .iter()
            .filter(|a| a.verdict.is_some())
            .all(|a| a.verdict == Some(Verdict::Accepted)));
    }
    // 5 tasks × (2 replicas + any audit) receipts, each accepted one worth 2 units × 100 sats.
    let receipts: Vec<_> = h
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Receipt(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert!(receipts.len() >= 10);
    assert!(receipts.iter().all(|r| r.verify() && r.body.reward_sats == 200 && r.body.epoch == 0));
    let credited: u64 = receipts.iter().map(|r| r.body.reward_sats).sum();
    assert_eq!(h.m.meta().credited, credited);
    // Epoch closes on the cadence, with receipts and state roots, handed to the anchor.
    h.reload();
    h.tick(300);
    let header = h.m.meta().last_header.clone().expect("epoch closed");
    assert_eq!(header.body.height, 0);
    assert_eq!(header.body.receipt_count as usize, receipts.len());
    assert_eq!(header.body.reward_sats, credited);
    assert!(header.verify());
    let leaves: Vec<Hash32> = receipts.iter().map(|r| r.id()).collect();
    assert_eq!(header.body.receipts_root, cairn_spec::merkle::root(&leaves));
    let snapshot = ls::ledger_snapshot(&h.store, 0).unwrap().unwrap();
    assert_eq!(cairn_spec::ledger::state_root(&snapshot), Some(header.body.state_root));
    assert!(h
        .effects
        .iter()
        .any(|e| matches!(e, Effect::Anchor(p) if p.height == 0 && p.header_hash == header.id())));
    // Locked until settled, then claimable, then paid out over the threshold.
    // The worker drawn most often (slots are drawn at random among the ready workers).
    let w0 = ws.iter().map(|w| w.public()).max_by_key(|k| h.m.balance(k).map_or(0, |e| e.locked)).unwrap();
    let locked = h.m.balance(&w0).unwrap().locked;
    assert!(locked > 0);
    let step = h.m.settle(0, h.now);
    h.apply(step);
    let e = h.m.balance(&w0).unwrap().clone();
    assert_eq!(e.locked, 0);
    assert_eq!(e.claimable + e.paid, locked);
    let payouts: Vec<_> = h
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Payouts(p) => Some(p.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(payouts.iter().any(|p| p.worker == w0 && p.amount == locked && p.address == ADDR));
    // Payouts ride on the next epoch's anchor: with no new work, the cadence still closes an
    // (empty) epoch, whose state root commits the ledger that records them as paid.
    h.reload();
    h.tick(299);
    assert_eq!(h.m.meta().next_epoch, 1, "not before the cadence");
    h.tick(1);
    let empty = h.m.meta().last_header.clone().expect("an epoch for the payouts");
    assert_eq!((empty.body.height, empty.body.receipt_count, empty.body.reward_sats), (1, 0, 0));
    assert_eq!(empty.body.prev, header.id());
    let snapshot = ls::ledger_snapshot(&h.store, 1).unwrap().unwrap();
    assert_eq!(cairn_spec::ledger::state_root(&snapshot), Some(empty.body.state_root));
    assert!(snapshot.iter().any(|e| e.worker == w0 && e.paid == locked));
    assert!(h
        .effects
        .iter()
        .any(|e| matches!(e, Effect::Anchor(p) if p.height == 1 && p.header_hash == empty.id())));
    // Once they ride on an anchor, an idle coordinator closes nothing more.
    h.tick(600);
    assert_eq!(h.m.meta().next_epoch, 2);
    let txid: bitcoin::Txid =
        "0101010101010101010101010101010101010101010101010101010101010101".parse().unwrap();
    let step = h.m.payouts_confirmed(&payouts.iter().map(|p| p.id).collect::<Vec<_>>(), txid, 120);
    h.apply(step);
    assert!(ls::payouts(&h.store)
        .unwrap()
        .iter()
        .all(|p| p.status == PayoutStatus::Paid { txid, height: 120 }));
    assert_eq!(ls::check_header_chain(&h.store), Ok(2));
    h.reload();
    // The history frontier the next header commits must be the one over the stored headers
    // (SPEC.md §5.9): a damaged record is refused at load, never signed from.
    let raw = h.store.get(Table::Meta, b"lifecycle").unwrap().unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["history"]["count"], 2, "{}", v["history"]);
    v["history"]["peaks"][0] = serde_json::to_value(cairn_spec::Hash32([7; 32])).unwrap();
    let mut b = cairn_coordinator::store::Batch::new();
    b.put(Table::Meta, b"lifecycle".to_vec(), serde_json::to_vec(&v).unwrap());
    h.store.write(&b).unwrap();
    assert!(matches!(ls::load(&h.store), Err(ls::LoadError::Corrupt { .. })));
}

#[test]
fn a_copied_result_is_caught_by_the_commitment() {
    let class = exact(2);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 0);
    let ws = workers(3);
    for w in &ws {
        h.register(w);
    }
    let task = h.submit(&class, b"copy me", None);
    // Only workers 0 and 1 ask for it, so both are drawn.
    assert_eq!(h.take(task, &ws[..2]), vec![0, 1]);
    let salt0 = h.commit(&ws[0], task, b"honest answer").unwrap();
    // The copier commits before seeing anything: it can only copy the commitment value.
    let c0 = commitment_value(&task, &ws[0].public(), &cairn_spec::content_hash(b"honest answer"), &salt0);
    h.commit_value(&ws[1], task, c0).unwrap();
    assert!(matches!(h.m.open_task(&task).unwrap().phase, Phase::Reveal { .. }));
    h.reveal(&ws[0], task, b"honest answer").unwrap();
    // Even with the leaked result and salt, the copier's reveal does not open its commitment.
    let err = h.reveal_salted(&ws[1], task, b"honest answer", salt0).unwrap_err();
    assert!(matches!(err, Refusal::Invalid(ref m) if m.contains("does not open")), "{err}");
    h.tick(61);
    // New workers are audited (p = 1/streak), once the reveal window is over: the third
    // worker is drawn and answers honestly.
    if h.m.open_task(&task).is_some_and(|r| r.phase == Phase::Commit) {
        assert_eq!(h.take(task, &ws[2..]), vec![0]);
        h.commit(&ws[2], task, b"honest answer").unwrap();
        // The copier's window closed when the audit was drawn: too late to reveal anything.
        let late = h.reveal_salted(&ws[1], task, b"honest answer", salt0).unwrap_err();
        assert!(matches!(late, Refusal::Conflict(ref m) if m.contains("window")), "{late}");
        h.reveal(&ws[2], task, b"honest answer").unwrap();
    }
    let rec = h.final_task(&task);
    assert_eq!(rec.slot(&ws[1].public()).unwrap().verdict, Some(Verdict::NoReveal));
    assert_eq!(h.m.balance(&ws[1].public()).map(|e| e.locked).unwrap_or(0), 0);
    let copier = h.m.worker(&ws[1].public()).unwrap();
    assert!(copier.rejections.iter().any(|r| r.verdict == Some(Verdict::NoReveal)));
    assert_eq!((copier.misses, copier.streak), (1, 0), "a commitment never revealed is a miss");
}

#[test]
fn a_lazy_worker_is_caught_by_audits_within_a_bounded_number_of_tasks() {
    let class = exact(1);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 100_000);
    let ws = workers(4);
    for w in &ws {
        h.register(w);
    }
    let lazy = ws[0].public();
    // Worker 0 first works honestly and earns a long streak, so audits of its tasks fall to
    // the floor p_min = 10%; then it turns lazy.
    for t in 0..80u32 {
        let id = h.submit(&class, &(1000 + t).to_be_bytes(), None);
        h.run_task(id, &ws, &|_| b"right".to_vec());
    }
    assert!(h.m.worker(&lazy).unwrap().streak >= 10, "{}", h.m.worker(&lazy).unwrap().streak);
    let receipts = |h: &Harness| h.effects.iter().filter(|e| matches!(e, Effect::Receipt(_))).count();
    let honest_receipts = receipts(&h);
    println!("honest phase: 80 tasks, {honest_receipts} receipts (audits and escalations add replicas)");
    let locked_before = h.m.balance(&lazy).unwrap().locked;
    assert!(locked_before > 0);
    let lazy_tasks = std::cell::Cell::new(0u32);
    let mut tasks = 0u32;
    while h.m.worker(&lazy).unwrap().banned.is_none() {
        tasks += 1;
        // At p_min = 0.1 per task it is drawn for, 100 unaudited lazy tasks in a row happen with
        // probability 3e-5.
        assert!(lazy_tasks.get() <= 100, "lazy worker not caught within 100 of its tasks");
        let id = h.submit(&class, &(5000 + tasks).to_be_bytes(), None);
        let t = tasks;
        h.run_task(id, &ws, &|i| {
            if i == 0 {
                lazy_tasks.set(lazy_tasks.get() + 1);
                format!("random {t}").into_bytes()
            } else {
                b"right".to_vec()
            }
        });
    }
    println!("lazy worker with a streak banned after {} lazy tasks ({tasks} in all)", lazy_tasks.get());
    assert!(h.m.meta().forfeited >= locked_before);
    let w = h.m.worker(&lazy).unwrap();
    let ban = w.banned.clone().unwrap();
    assert!(w.rejections.iter().any(|r| r.verdict == Some(Verdict::Mismatch)));
    assert_eq!(h.m.balance(&lazy).map(|e| e.locked).unwrap_or(0), 0);
    // What it forfeited: its lock at the ban, and the fines of check slots it lied on (an
    // audit or escalation that loses a clear vote pays what the slot would have paid).
    assert!(h.m.meta().forfeited >= ban.forfeited);
    // A banned worker is refused from then on.
    let id = h.submit(&class, b"after ban", None);
    assert!(matches!(h.claim(&ws[0], id), Err(Refusal::Banned(_))));
    // Honest workers were never penalised.
    for w in &ws[1..] {
        let r = h.m.worker(&w.public()).unwrap();
        assert_eq!((r.rejected, r.misses), (0, 0), "honest worker rejected: {:?}", r.rejections);
    }
    h.reload();
}

#[test]
fn a_lazy_worker_fails_a_canary() {
    let class = exact(1);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 0);
    let ws = workers(2);
    for w in &ws {
        h.register(w);
    }
    let canary = h.submit(&class, b"what is 2+2", Some(b"4".to_vec()));
    // To the worker a canary looks like any task: the announcement carries no answer.
    let ann = h
        .effects
        .iter()
        .rev()
        .find_map(|e| match e {
            Effect::Announce(a) => Some(a.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(ann.body.task.id(), canary);
    // New workers are audited (p = 1), canaries like any task: both workers answer it.
    h.run_task(canary, &ws, &|i| if i == 0 { b"5".to_vec() } else { b"4".to_vec() });
    let rec = h.final_task(&canary);
    assert_eq!(rec.slot(&ws[0].public()).unwrap().verdict, Some(Verdict::CanaryFailed));
    assert_eq!(rec.slot(&ws[1].public()).unwrap().verdict, Some(Verdict::Accepted));
    assert!(h.m.worker(&ws[0].public()).unwrap().banned.is_some());
    // The honest worker passes its next canary alone.
    let c2 = h.submit(&class, b"what is 3+3", Some(b"6".to_vec()));
    h.run_task(c2, &ws, &|_| b"6".to_vec());
    assert_eq!(h.final_task(&c2).slot(&ws[1].public()).unwrap().verdict, Some(Verdict::Accepted));
}

#[test]
fn a_banned_workers_other_slots_reopen_at_once() {
    let class = exact(1);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 0);
    let ws = workers(3);
    for w in &ws {
        h.register(w);
    }
    let (cheat, honest) = (&ws[0], &ws[1..]);
    // The cheater holds a commitment it has not revealed on one task and an uncommitted lease
    // on another when it fails a canary (only it asks for them, so it is drawn).
    let committed = h.submit(&class, b"task one", None);
    assert_eq!(h.take(committed, std::slice::from_ref(cheat)), vec![0]);
    h.commit(cheat, committed, b"ONE").unwrap();
    assert!(matches!(h.m.open_task(&committed).unwrap().phase, Phase::Reveal { .. }));
    let leased = h.submit(&class, b"task two", None);
    assert_eq!(h.take(leased, std::slice::from_ref(cheat)), vec![0]);
    let canary = h.submit(&class, b"what is 2+2", Some(b"4".to_vec()));
    assert_eq!(h.take(canary, std::slice::from_ref(cheat)), vec![0]);
    h.commit(cheat, canary, b"5").unwrap();
    h.reveal(cheat, canary, b"5").unwrap();
    // Its audit replica is drawn among the honest workers.
    let auditor = h.take(canary, honest);
    assert_eq!(auditor.len(), 1);
    h.commit(&honest[auditor[0]], canary, b"4").unwrap();
    h.reveal(&honest[auditor[0]], canary, b"4").unwrap();
    assert!(h.m.worker(&cheat.public()).unwrap().banned.is_some());
    // Both slots are free again at once, with no tick: no lease or reveal window to wait out.
    for id in [committed, leased] {
        let rec = h.m.open_task(&id).unwrap();
        assert!(rec.slot(&cheat.public()).is_none(), "{:?}", rec.assignments);
    }
    h.reload();
    let t = h.now;
    h.run_task(committed, honest, &|_| b"ONE".to_vec());
    h.run_task(leased, honest, &|_| b"TWO".to_vec());
    assert_eq!(h.now, t, "decided without waiting");
    for id in [committed, leased] {
        let rec = h.final_task(&id);
        assert!(matches!(rec.phase, Phase::Decided { .. }), "{:?}", rec.phase);
        assert!(rec.assignments.iter().all(|a| a.worker != cheat.public()));
    }
}

#[test]
fn honest_float_noise_inside_the_tolerance_is_never_penalised() {
    let class = cosine(2);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 200_000);
    let ws = workers(5);
    for w in &ws {
        h.register(w);
    }
    for t in 0..40u32 {
        let id = h.submit(&class, &t.to_be_bytes(), None);
        h.run_task(id, &ws, &|i| vector(t, 1e-4 * (i as f32 + 1.0)));
        assert!(matches!(h.final_task(&id).phase, Phase::Decided { .. }));
    }
    for w in &ws {
        let r = h.m.worker(&w.public()).unwrap();
        assert!(r.banned.is_none());
        assert_eq!(r.rejected, 0, "{:?}", r.rejections);
    }
}

#[test]
fn disagreement_escalates_to_a_majority() {
    let class = exact(2);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 0);
    let ws = workers(4);
    for w in &ws {
        h.register(w);
    }
    let id = h.submit(&class, b"x", None);
    // Workers 0 and 1 are drawn (the only ones asking); worker 1 disagrees.
    assert_eq!(h.take(id, &ws[..2]), vec![0, 1]);
    h.commit(&ws[0], id, b"A").unwrap();
    h.commit(&ws[1], id, b"B").unwrap();
    h.reveal(&ws[0], id, b"A").unwrap();
    h.reveal(&ws[1], id, b"B").unwrap();
    // The audit (new workers: p = 1) and the escalation draw the others.
    h.run_task(id, &ws, &|i| if i == 1 { b"B".to_vec() } else { b"A".to_vec() });
    let rec = h.final_task(&id);
    assert!(matches!(rec.phase, Phase::Decided { result, .. } if result == cairn_spec::content_hash(b"A")));
    assert_eq!(rec.slot(&ws[1].public()).unwrap().verdict, Some(Verdict::Mismatch));
    assert!(rec.assignments.len() >= 3);
}

#[test]
fn expired_leases_return_the_task() {
    let class = exact(1);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 0);
    let ws = workers(2);
    for w in &ws {
        h.register(w);
    }
    let id = h.submit(&class, b"slow", None);
    assert_eq!(h.take(id, &ws[..1]), vec![0]);
    let exp = h.claim(&ws[0], id).unwrap();
    // Worker 1 was not drawn: asking is not taking.
    assert!(matches!(h.claim(&ws[1], id), Err(Refusal::Conflict(_))));
    h.tick(exp - h.now);
    // The lease ran out: a miss for worker 0, which is not drawn for the task again; the
    // slot goes to the other ready worker.
    let rec = h.m.open_task(&id).unwrap().clone();
    assert!(rec.slot(&ws[0].public()).is_none() && rec.declined == vec![ws[0].public()]);
    let w0 = h.m.worker(&ws[0].public()).unwrap();
    assert_eq!((w0.misses, w0.streak), (1, 0));
    assert!(w0.rejections.iter().any(|r| r.reason.contains("lease expired")));
    // The late worker's commitment is refused; the other worker asks and takes the task.
    assert!(h.commit(&ws[0], id, b"late").is_err());
    assert_eq!(h.take(id, &ws[1..]), vec![0]);
    h.reload();
    h.commit(&ws[1], id, b"done").unwrap();
}

#[test]
fn refusals_a_worker_must_react_to_carry_their_own_reason() {
    let class = exact(1);
    let pair = TaskClass { name: "pair".into(), replication: 2, ..exact(1) };
    let mut h = Harness::new(vec![class.clone(), pair.clone()], |c| c.tunables.audit_min_ppm = 0);
    let ws = workers(3);
    for w in &ws {
        h.register(w);
    }
    let id = h.submit(&class, b"typed", None);
    // A reveal with no commitment recorded: without a lease, then with a lease only.
    let err = h.reveal(&ws[0], id, b"r").unwrap_err();
    assert_eq!((err.clone(), err.reason()), (Refusal::NoCommitment, ErrorReason::NoCommitment));
    assert_eq!(h.take(id, &ws[..1]), vec![0]);
    let exp = h.claim(&ws[0], id).unwrap();
    assert_eq!(h.reveal(&ws[0], id, b"r").unwrap_err(), Refusal::NoCommitment);
    // A commitment that arrives once the lease has run out (before a tick reopens the slot).
    h.now = exp;
    let err = h.commit(&ws[0], id, b"late").unwrap_err();
    assert_eq!((err.clone(), err.reason()), (Refusal::LeaseExpired, ErrorReason::LeaseExpired));
    h.tick(0);
    // Too early: the other replica has not committed yet.
    let two = h.submit(&pair, b"typed", None);
    assert_eq!(h.take(two, &ws[1..]), vec![0, 1]);
    h.commit(&ws[1], two, b"r").unwrap();
    assert_eq!(h.reveal(&ws[1], two, b"r").unwrap_err().reason(), ErrorReason::TooEarly);
    h.commit(&ws[2], two, b"r").unwrap();
    h.reveal(&ws[1], two, b"r").unwrap();
    h.reveal(&ws[2], two, b"r").unwrap();
    // New workers are audited: worker 0 is drawn for the audit replica, then it is decided,
    // and a later message about the task is refused as decided.
    h.run_task(two, &ws, &|_| b"r".to_vec());
    let err = h.claim(&ws[1], two).unwrap_err();
    assert_eq!((err.clone(), err.reason()), (Refusal::AlreadyDecided, ErrorReason::AlreadyDecided));
    // The code is the reason's, and the wire answer carries the reason with the text.
    for r in [Refusal::LeaseExpired, Refusal::NoCommitment, Refusal::AlreadyDecided] {
        assert_eq!(r.code(), 409);
        assert_eq!(r.to_response(), cairn_spec::ResponseBody::error(r.reason(), r.to_string()));
    }
    assert_eq!(Refusal::Limit("leases".into()).reason(), ErrorReason::WorkerLimit);
    assert_eq!(Refusal::Unavailable("node unavailable").code(), 500);
}

#[test]
fn duplicates_and_replays_are_idempotent() {
    let class = exact(1);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 0);
    let ws = workers(2);
    let w = &ws[0];
    h.register(w);
    let mut reg = registration(h.coord.public(), w, h.now);
    reg.solve_pow(4, 1 << 20);
    let signed = Signed::sign(reg, w, &[0; 32]);
    // Same registration again: nothing changes.
    assert!(h.m.register(Verified::check(signed.clone()).unwrap(), h.now).unwrap().is_empty());
    h.register(&ws[1]);
    let id = h.submit(&class, b"once", None);
    let before = h.m.meta().clone();
    let task = h.m.open_task(&id).unwrap().task.clone();
    let (id2, step) = h.m.submit_task(task.clone(), None, h.now).unwrap();
    assert_eq!((id2, step.is_empty()), (id, true));
    // A retry with a later created_at is the same submission (requester and nonce are the
    // idempotency key); after a restart the machine has forgotten it, and the stored row the
    // core consults first (`Core::submit_task`) names the task.
    let later = Task { created_at: task.created_at + 5, ..task.clone() };
    let (id3, step) = h.m.submit_task(later, None, h.now).unwrap();
    assert_eq!((id3, step.is_empty()), (id, true));
    h.reload();
    assert_eq!(ls::accepted(&h.store, &task.requester, task.nonce).unwrap(), Some(id));
    assert_eq!(h.take(id, std::slice::from_ref(w)), vec![0]);
    let e1 = h.claim(w, id).unwrap();
    let claim = Signed::sign(Claim { task: id, worker: w.public(), claimed_at: h.now }, w, &[0; 32]);
    let (e2, step) = h.m.claim(Verified::check(claim).unwrap(), h.now).unwrap();
    assert_eq!((e1, step.is_empty()), (e2, true));
    h.commit(w, id, b"r").unwrap();
    let salt = salt_for(w, &id);
    let v = commitment_value(&id, &w.public(), &cairn_spec::content_hash(b"r"), &salt);
    let c = Signed::sign(Commitment { task: id, worker: w.public(), commitment: v }, w, &[0; 32]);
    assert!(h.m.commit(Verified::check(c).unwrap(), h.now).unwrap().is_empty());
    // The reveal is taken at once, like every reveal; a new worker's task then draws an audit
    // replica (p = 1/streak = 1), and the same reveal again changes nothing.
    h.reveal(w, id, b"r").unwrap();
    assert_eq!(h.m.open_task(&id).unwrap().phase, Phase::Commit);
    h.reveal(w, id, b"r").unwrap();
    assert_eq!(h.take(id, &ws[1..]), vec![0]);
    h.commit(&ws[1], id, b"r").unwrap();
    h.reveal(&ws[1], id, b"r").unwrap();
    let receipts = h.m.meta().open_receipts;
    // The replayed reveal after the decision changes nothing and is refused clearly.
    let err = h.reveal(w, id, b"r").unwrap_err();
    assert!(matches!(err, Refusal::AlreadyDecided));
    assert_eq!(h.m.meta().open_receipts, receipts);
    assert_eq!(h.m.meta().credited, before.credited + 400);
    // A forged signature is refused before the machine sees it.
    let mut forged = signed;
    forged.signature.0[0] ^= 1;
    assert_eq!(Verified::check(forged).err(), Some(Refusal::BadSignature));
}

#[test]
fn bad_input_is_refused_without_changing_state() {
    let class = exact(1);
    let mut h = Harness::new(vec![class.clone()], |_| {});
    let w = key(0);
    // Not enough proof-of-work (difficulty 4, nonce searched for 0 bits).
    let reg = registration(h.coord.public(), &w, h.now);
    let mut weak = reg.clone();
    while weak.work_bits() >= 4 {
        weak.pow_nonce += 1;
    }
    let meta = h.m.meta().clone();
    let err = h.m.register(Verified::check(Signed::sign(weak, &w, &[0; 32])).unwrap(), h.now).unwrap_err();
    assert!(err.to_string().contains("proof-of-work"), "{err}");
    // Another coordinator's registration.
    let mut other = reg.clone();
    other.coordinator = key(5).public();
    other.solve_pow(4, 1 << 20);
    assert!(h.m.register(Verified::check(Signed::sign(other, &w, &[0; 32])).unwrap(), h.now).is_err());
    // A payout address no anchor could pay: garbage, or another network's (issue 25 item 7).
    for address in ["not-an-address", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"] {
        let mut bad = reg.clone();
        bad.payout_address = address.into();
        bad.solve_pow(4, 1 << 20);
        let err = h.m.register(Verified::check(Signed::sign(bad, &w, &[0; 32])).unwrap(), h.now).unwrap_err();
        assert!(err.to_string().contains("payout address"), "{err}");
    }
    // Unregistered workers cannot claim.
    let id = h.submit(&class, b"t", None);
    assert_eq!(h.claim(&w, id), Err(Refusal::NotRegistered));
    // Unknown class, oversized input, short budget, wrong network.
    let mut t = h.m.open_task(&id).unwrap().task.clone();
    t.class = Hash32([1; 32]);
    assert_eq!(h.m.submit_task(t.clone(), None, h.now).unwrap_err().code(), 404);
    t.class = class.id();
    t.input = Payload::Inline(vec![0; 5000]);
    assert_eq!(h.m.submit_task(t.clone(), None, h.now).unwrap_err().code(), 400);
    t.input = Payload::Inline(vec![1]);
    t.budget_sats = 1;
    assert!(h.m.submit_task(t.clone(), None, h.now).unwrap_err().to_string().contains("budget"));
    t.budget_sats = 10_000;
    t.network = Network::Signet;
    assert_eq!(h.m.submit_task(t, None, h.now).unwrap_err().code(), 400);
    let _ = PubKey::from_bytes([2; 32]);
    assert_eq!(h.m.meta().credited, meta.credited);
    assert_eq!(h.m.open_tasks().count(), 1);
}

#[test]
fn group_commit_signs_every_receipt_and_writes_once() {
    use std::sync::Arc;
    let class = exact(2);
    let mut cfg = LifecycleConfig::new(NET, vec![class.clone()]);
    cfg.tunables.pow_difficulty = 0;
    cfg.tunables.audit_min_ppm = 0;
    let coord = key(1000);
    let now = 1_700_000_000;
    let store = Arc::new(MemoryStore::new());
    let mut core =
        cairn_coordinator::core::Core::open(cfg.clone(), coord.clone(), store.clone(), now).unwrap();
    let ws = workers(40);
    let mut ids = Vec::new();
    for w in &ws {
        let reg = registration(coord.public(), w, now);
        let v = Verified::check(Signed::sign(reg, w, &[0; 32])).unwrap();
        core.apply(|m| Ok(((), m.register(v, now)?))).unwrap();
    }
    for i in 0..ws.len() {
        let task = Task {
            network: NET,
            coordinator: coord.public(),
            class: class.id(),
            requester: coord.public(),
            nonce: i as u64,
            units: 1,
            budget_sats: 1000,
            created_at: now,
            input: Payload::Inline(vec![i as u8]),
        };
        let (id, _) = core.apply(|m| m.submit_task(task, None, now)).unwrap();
        ids.push(id);
    }
    // Every worker asks for the first task, so all are ready to be drawn; the next tick draws
    // two replicas for each task.
    for w in &ws {
        let c = Verified::check(Signed::sign(
            Claim { task: ids[0], worker: w.public(), claimed_at: now },
            w,
            &[0; 32],
        ))
        .unwrap();
        let _ = core.apply(|m| m.claim(c, now));
    }
    core.apply(|m| Ok(((), m.tick(now)))).unwrap();
    // The drawn workers take their slots and commit; their reveals are collected. Called
    // again for the audit replicas drawn once a task's reveals are in.
    let commit_drawn = |core: &mut cairn_coordinator::core::Core| -> Vec<Verified<Reveal>> {
        let mut out = Vec::new();
        let slots: Vec<(Hash32, PubKey)> = core
            .machine()
            .open_tasks()
            .flat_map(|t| t.assignments.iter().filter(|a| a.offered).map(move |a| (t.id, a.worker)))
            .collect();
        for (id, wk) in slots {
            let w = ws.iter().find(|w| w.public() == wk).unwrap();
            let c =
                Verified::check(Signed::sign(Claim { task: id, worker: wk, claimed_at: now }, w, &[0; 32]))
                    .unwrap();
            core.apply(|m| m.claim(c, now)).unwrap();
            let salt = salt_for(w, &id);
            let v = commitment_value(&id, &wk, &cairn_spec::content_hash(b"r"), &salt);
            let c = Verified::check(Signed::sign(
                Commitment { task: id, worker: wk, commitment: v },
                w,
                &[0; 32],
            ))
            .unwrap();
            core.apply(|m| Ok(((), m.commit(c, now)?))).unwrap();
            let r = Reveal { task: id, worker: wk, result: Payload::Inline(b"r".to_vec()), salt };
            out.push(Verified::check(Signed::sign(r, w, &[0; 32])).unwrap());
        }
        out
    };
    let reveals = commit_drawn(&mut core);
    assert_eq!(reveals.len(), 80, "two replicas drawn per task");
    // New workers are audited (p = 1/streak = 1): the first reveals draw an audit replica per
    // task and decide nothing; the audit replicas' reveals then decide all 40 tasks in one group.
    let (answers, effects) = core.apply_many(reveals, |m, v| Ok(((), m.reveal(v, now)?))).unwrap();
    assert!(answers.iter().all(Result::is_ok));
    assert!(!effects.iter().any(|e| matches!(e, Effect::Receipt(_))));
    let reveals = commit_drawn(&mut core);
    assert_eq!(reveals.len(), 40, "one audit replica per task");
    let (answers, effects) = core.apply_many(reveals, |m, v| Ok(((), m.reveal(v, now)?))).unwrap();
    assert!(answers.iter().all(Result::is_ok));
    let gossiped: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Receipt(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(gossiped.len(), 120);
    assert!(gossiped.iter().all(|r| r.verify()));
    let stored = ls::epoch_receipts(store.as_ref(), 0).unwrap();
    assert_eq!(stored.len(), 120);
    assert!(stored.iter().all(|r| r.verify()));
    // One batch, one signature (SPEC.md §5.7), the one the machine itself would make
    // (deterministic signatures), and what was gossiped is what was stored.
    assert!(stored.iter().all(|r| r.batch.count == 120 && r.signature == stored[0].signature));
    let batch = stored[0].batch_id().unwrap();
    assert!(stored.iter().all(|r| r.batch_id() == Some(batch)));
    assert_eq!(core.machine().sign_receipt_batch(&batch), stored[0].signature);
    for r in &stored {
        assert!(gossiped.iter().any(|g| ***g == *r), "receipt {} gossiped as stored", r.id());
    }
    core.machine().check_invariants().unwrap();
    // The worker, ledger and lock rows a group writes once, at its end, are complete: a
    // machine restored from the store agrees with the live one.
    let live = core.machine();
    let restored = Machine::restore(cfg, coord, ls::load(store.as_ref()).unwrap().unwrap()).unwrap();
    assert_eq!(restored.meta(), live.meta());
    assert_eq!(restored.workers().collect::<Vec<_>>(), live.workers().collect::<Vec<_>>());
    let locked: u64 = live.balances().map(|e| e.locked).sum();
    assert_eq!(locked, 120 * 100, "every receipt accepted and locked");
    for w in &ws {
        assert_eq!(restored.balance(&w.public()), live.balance(&w.public()));
    }
}

#[test]
fn a_bond_admits_a_worker_without_proof_of_work() {
    let class = exact(1);
    let mut h = Harness::new(vec![class.clone()], |c| {
        c.tunables.pow_difficulty = 30;
        c.tunables.bond_min_sats = 5_000;
    });
    let bond_key = key(77);
    let txid = Hash32([5; 32]);
    let reg_for = |w: &SigningKey, coord: &SigningKey, vout: u32, signer: &SigningKey| Registration {
        bond: Some(Box::new(cairn_spec::Bond {
            txid,
            vout,
            key: bond_key.public(),
            signature: signer
                .sign(&cairn_spec::work::bond_message(&coord.public(), &w.public(), &txid, vout), &[0; 32]),
        })),
        ..registration(coord.public(), w, 1_700_000_000)
    };
    let (w0, w1) = (key(0), key(1));
    let coord = h.coord.clone();
    let reg = |r: Registration, w: &SigningKey| Verified::check(Signed::sign(r, w, &[0; 32])).unwrap();
    // Not enough work and no bond checked by the driver: refused, nothing stored.
    let err = h.m.register_bonded(reg(reg_for(&w0, &coord, 0, &bond_key), &w0), None, h.now).unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    // Too small, or signed by another key: refused.
    let err =
        h.m.register_bonded(reg(reg_for(&w0, &coord, 0, &bond_key), &w0), Some(4_999), h.now).unwrap_err();
    assert!(err.to_string().contains("5000"), "{err}");
    let err = h.m.register_bonded(reg(reg_for(&w0, &coord, 0, &w0), &w0), Some(10_000), h.now).unwrap_err();
    assert!(err.to_string().contains("bond signature"), "{err}");
    assert!(h.m.worker(&w0.public()).is_none());
    // A sufficient, correctly signed bond admits the worker.
    let step =
        h.m.register_bonded(reg(reg_for(&w0, &coord, 0, &bond_key), &w0), Some(10_000), h.now).unwrap();
    h.apply(step);
    assert!(h.m.worker(&w0.public()).is_some());
    // Its admission rests on the bond: the node re-checks it. Once Bitcoin no longer shows it
    // unspent, claims are refused (not a ban: nothing forfeited) and its open lease reopens.
    let bonded = h.m.bonded_workers();
    assert_eq!(bonded.iter().map(|(w, b)| (*w, b.vout)).collect::<Vec<_>>(), vec![(w0.public(), 0)]);
    let task = h.submit(&class, b"x", None);
    assert_eq!(h.take(task, std::slice::from_ref(&w0)), vec![0]);
    let step = h.m.bond_lost(&w0.public(), "bond output is spent".into(), h.now);
    h.apply(step);
    assert!(h.m.open_task(&task).unwrap().slot(&w0.public()).is_none(), "its lease reopened");
    let err = h.claim(&w0, task).unwrap_err();
    assert_eq!(err.code(), 403);
    assert!(
        err.to_string().contains("bond output is spent") && err.to_string().contains("register again"),
        "{err}"
    );
    assert!(h.m.bonded_workers().is_empty() && h.m.worker(&w0.public()).unwrap().banned.is_none());
    h.reload();
    assert!(h.m.worker(&w0.public()).unwrap().bond_lost.is_some(), "kept across a restart");
    // The same bond confirmed unspent again re-admits the worker.
    let step =
        h.m.register_bonded(reg(reg_for(&w0, &coord, 0, &bond_key), &w0), Some(10_000), h.now).unwrap();
    h.apply(step);
    assert_eq!(h.take(task, std::slice::from_ref(&w0)), vec![0]);
    // The same output cannot back a second worker.
    let err =
        h.m.register_bonded(reg(reg_for(&w1, &coord, 0, &bond_key), &w1), Some(10_000), h.now).unwrap_err();
    assert_eq!(err.code(), 409);
    // A node that takes no bonds refuses them.
    let mut h2 = Harness::new(vec![exact(1)], |c| c.tunables.pow_difficulty = 30);
    let coord2 = h2.coord.clone();
    let err =
        h2.m.register_bonded(reg(reg_for(&w1, &coord2, 0, &bond_key), &w1), Some(10_000), h2.now)
            .unwrap_err();
    assert!(err.to_string().contains("no bonds"), "{err}");
    h.reload();
}

#[test]
fn a_blob_input_is_kept_with_its_task_and_must_match_its_hash() {
    let mut big = exact(1);
    big.max_input_bytes = 3_000_000;
    let mut h = Harness::new(vec![big.clone()], |_| {});
    let bytes: Vec<u8> = (0..2_500_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let task = |input: Payload| Task {
        network: NET,
        coordinator: h.coord.public(),
        class: big.id(),
        requester: key(2000).public(),
        nonce: 1,
        units: 1,
        budget_sats: 10_000,
        created_at: h.now,
        input,
    };
    let blob = Payload::Blob { hash: cairn_spec::content_hash(&bytes), size: bytes.len() as u64 };
    // Without its bytes, with other bytes, or as a blob larger than the class takes: refused.
    let now = h.now;
    assert!(h.m.submit_task(task(blob.clone()), None, now).is_err());
    let mut other = bytes.clone();
    other[5] ^= 1;
    let err = h.m.submit_task_with_blob(task(blob.clone()), other, None, now).unwrap_err();
    assert!(err.to_string().contains("do not match"), "{err}");
    let huge = vec![1u8; 3_000_001];
    let too_big = Payload::Blob { hash: cairn_spec::content_hash(&huge), size: huge.len() as u64 };
    let err = h.m.submit_task_with_blob(task(too_big), huge, None, now).unwrap_err();
    assert!(err.to_string().contains("accepts at most"), "{err}");
    assert!(ls::blob_range(&h.store, &cairn_spec::content_hash(&bytes), 0, 10).unwrap().is_none());
    // Accepted: the bytes are stored in chunks with the task, and read back from any offset.
    let (id, step) = h.m.submit_task_with_blob(task(blob.clone()), bytes.clone(), None, now).unwrap();
    h.apply(step);
    let hash = cairn_spec::content_hash(&bytes);
    let at = 1_048_000u64;
    let (total, got) = ls::blob_range(&h.store, &hash, at, 200_000).unwrap().unwrap();
    assert_eq!((total, got.as_slice()), (2_500_000, &bytes[at as usize..at as usize + 200_000]));
    let (_, tail) = ls::blob_range(&h.store, &hash, 2_499_990, 100).unwrap().unwrap();
    assert_eq!(tail.as_slice(), &bytes[2_499_990..]);
    assert!(ls::blob_range(&h.store, &hash, 3_000_000, 10).unwrap().unwrap().1.is_empty());
    assert_eq!(h.m.open_task(&id).unwrap().task.input, blob);
    h.reload();
}

#[test]
fn a_task_accepted_and_claimed_in_one_step_keeps_its_idempotency_row() {
    let class = exact(1);
    let mut h = Harness::new(vec![class.clone()], |_| {});
    let w = key(3);
    h.register(&w);
    // The worker asked for an earlier task: it is ready, so the new task's slot is drawn for it
    // as the task is accepted.
    let earlier = h.submit(&class, b"earlier", None);
    let _ = h.claim(&w, earlier);
    let task = Task {
        network: NET,
        coordinator: h.coord.public(),
        class: class.id(),
        requester: key(2000).public(),
        nonce: 77,
        units: 1,
        budget_sats: 10_000,
        created_at: h.now,
        input: Payload::Inline(b"one step".to_vec()),
    };
    let (id, mut step) = h.m.submit_task(task.clone(), None, h.now).unwrap();
    let c = Claim { task: id, worker: w.public(), claimed_at: h.now };
    let (_, claimed) = h.m.claim(Verified::check(Signed::sign(c, &w, &[0; 32])).unwrap(), h.now).unwrap();
    step.extend(claimed);
    h.apply(step);
    // Restored from disk, a retried submission is still the same task: its row is stored.
    h.reload();
    assert_eq!(ls::accepted(&h.store, &task.requester, task.nonce).unwrap(), Some(id));
}

/// Found by the chaos test: a commitment acknowledged while other replicas were still
/// missing was written to the commitments table but not to the task's row, so a restart
/// rebuilt the task without it and the worker's reveal was refused ("no commitment from this
/// worker"). Now the task row carries it and the restored machine equals the live one.
#[test]
fn a_commitment_survives_a_restart_before_the_other_replicas_commit() {
    let class = exact(2);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 0);
    let ws = workers(3);
    for w in &ws {
        h.register(w);
    }
    let id = h.submit(&class, b"two replicas", None);
    assert_eq!(h.take(id, &ws[..1]), vec![0]);
    h.commit(&ws[0], id, b"answer").unwrap();
    // Restart here: the restored task still holds worker 0's commitment (reload compares the
    // restored open tasks with the live ones).
    h.reload();
    let slot = |h: &Harness, w: &SigningKey| h.m.open_task(&id).and_then(|t| t.slot(&w.public()).cloned());
    assert!(slot(&h, &ws[0]).is_some_and(|a| a.commitment.is_some()));
    // The others are drawn as they ask (a new worker's streak draws an audit replica once the
    // reveals are in), with a restart after each commitment; every committed worker reveals
    // and the task is decided.
    for _ in 0..6 {
        match h.m.open_task(&id).map(|t| t.phase.clone()) {
            Some(Phase::Commit) => {
                for w in &ws {
                    if slot(&h, w).is_none() && h.take(id, std::slice::from_ref(w)) == vec![0] {
                        h.commit(w, id, b"answer").unwrap();
                        h.reload();
                        break;
                    }
                }
            }
            Some(Phase::Reveal { .. }) => {
                for w in &ws {
                    if slot(&h, w).is_some_and(|a| a.commitment.is_some() && a.revealed.is_none()) {
                        h.reveal(w, id, b"answer").unwrap();
                    }
                }
            }
            _ => break,
        }
    }
    assert!(matches!(h.final_task(&id).phase, Phase::Decided { .. }), "{:?}", h.final_task(&id).phase);
}

/// Found by the long chaos run: with every admitted worker already on a task, an escalation
/// for want of a majority opened a slot nobody could fill and the task waited for ever. Now
/// the task fails with the reason instead; with a free worker it still escalates.
#[test]
fn no_escalation_when_no_other_worker_can_take_the_slot() {
    let class = exact(2);
    for extra in [false, true] {
        let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 0);
        let ws = workers(if extra { 3 } else { 2 });
        for w in &ws {
            h.register(w);
        }
        let id = h.submit(&class, b"who answers", None);
        let joined = h.take(id, &ws);
        assert_eq!(joined.len(), 2);
        for &i in &joined {
            h.commit(&ws[i], id, b"answer").unwrap();
        }
        assert!(matches!(h.m.open_task(&id).unwrap().phase, Phase::Reveal { .. }));
        // Only one reveal arrives before the window closes: no majority.
        h.reveal(&ws[joined[0]], id, b"answer").unwrap();
        h.tick(u64::from(class.reveal_secs) + 1);
        if extra {
            // A worker not on the task exists: the task asks it (an audit or an escalation).
            assert_eq!(h.m.open_task(&id).map(|t| t.phase.clone()), Some(Phase::Commit));
        } else {
            match h.final_task(&id).phase {
                Phase::Failed { reason, .. } => assert!(reason.contains("no other worker"), "{reason}"),
                other => panic!("expected a failed task, got {other:?}"),
            }
        }
    }
}

/// Announcements of `id` among the effects since the last call; each must be a new gossip
/// message (gossip drops a message whose bytes it has seen).
fn announced(h: &mut Harness, id: Hash32, seen: &mut std::collections::HashSet<Vec<u8>>) -> usize {
    let mut n = 0;
    for e in h.effects.drain(..) {
        if let Effect::Announce(a) = e {
            if a.body.task.id() == id {
                assert!(seen.insert(a.to_bytes()), "an announcement repeated byte for byte");
                n += 1;
            }
        }
    }
    n
}

#[test]
fn a_slot_that_opens_is_announced_at_once() {
    // A worker drawn for a slot hears of it from gossip at once, instead of waiting for the
    // node's periodic re-announcement (found by the end-to-end bench: audit replicas waited up
    // to 10 s).
    let class = exact(1);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 0);
    let ws = workers(4);
    for w in &ws {
        h.register(w);
    }
    // All in one second, as on a fast network.
    let mut seen = std::collections::HashSet::new();
    let id = h.submit(&class, b"audited", None);
    assert_eq!(announced(&mut h, id, &mut seen), 1, "a new task is announced");
    // Nobody was ready: asking draws nothing by itself and is refused...
    assert!(matches!(h.claim(&ws[0], id), Err(Refusal::Conflict(_))));
    assert!(matches!(h.claim(&ws[1], id), Err(Refusal::Conflict(_))));
    assert_eq!(announced(&mut h, id, &mut seen), 0);
    // ...the next tick draws among the ready workers and tells them.
    h.tick(0);
    assert_eq!(announced(&mut h, id, &mut seen), 1, "the drawn worker hears of it");
    let first = h.take(id, &ws[..2]);
    assert_eq!(first.len(), 1);
    let (a, b) = (first[0], 1 - first[0]);
    h.commit(&ws[a], id, b"A").unwrap();
    assert_eq!(announced(&mut h, id, &mut seen), 0, "every slot is held; no audit before the reveal");
    // Once the reveal is in, a new worker's streak draws an audit replica (p = 1), drawn
    // among the ready workers at once: announced.
    h.reveal(&ws[a], id, b"A").unwrap();
    assert_eq!(h.m.open_task(&id).unwrap().wanted, 2);
    assert_eq!(announced(&mut h, id, &mut seen), 1, "the audit replica's slot");
    assert_eq!(h.take(id, &ws[b..=b]), vec![0]);
    h.commit(&ws[b], id, b"B").unwrap();
    // Disagreement escalates: nobody else is ready, so the slot is announced unheld.
    h.reveal(&ws[b], id, b"B").unwrap();
    assert_eq!(h.m.open_task(&id).unwrap().phase, Phase::Commit);
    assert_eq!(announced(&mut h, id, &mut seen), 1, "the escalation's slot");
    let _ = h.claim(&ws[2], id);
    h.tick(0);
    assert_eq!(announced(&mut h, id, &mut seen), 1, "worker 2 drawn");
    let exp = h.claim(&ws[2], id).unwrap();
    // An expired lease gives its slot back: announced when the tick finds it.
    h.tick(exp - h.now);
    assert_eq!(announced(&mut h, id, &mut seen), 1, "the expired lease's slot");
    let _ = h.claim(&ws[3], id);
    h.tick(0);
    assert_eq!(announced(&mut h, id, &mut seen), 1, "worker 3 drawn");
    h.claim(&ws[3], id).unwrap();
    h.commit(&ws[3], id, b"A").unwrap();
    h.reveal(&ws[3], id, b"A").unwrap();
    // Two against one is not clear yet: one more replica is drawn (worker 2 again: cooling
    // down after the lease it let expire, but the only one left) and announced.
    assert_eq!(announced(&mut h, id, &mut seen), 1, "the second escalation's slot");
    let _ = h.claim(&ws[2], id);
    h.tick(0);
    let exp = h.claim(&ws[2], id).unwrap();
    assert!(exp > h.now);
    h.commit(&ws[2], id, b"A").unwrap();
    h.reveal(&ws[2], id, b"A").unwrap();
    assert!(matches!(h.final_task(&id).phase, Phase::Decided { .. }));
    assert_eq!(announced(&mut h, id, &mut seen), 1, "worker 2 drawn");
    assert_eq!(announced(&mut h, id, &mut seen), 0, "a decided task is not announced");
}

#[test]
fn no_audit_replica_when_no_other_worker_can_take_it() {
    // A network of one worker: an audit slot could never be filled and the task would wait
    // in the commit phase for ever. With a second worker the same draw adds the slot, after
    // the reveal.
    let class = exact(1);
    for n in [1, 2] {
        let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 1_000_000);
        let ws = workers(n);
        for w in &ws {
            h.register(w);
        }
        let id = h.submit(&class, b"alone", None);
        assert_eq!(h.take(id, &ws[..1]), vec![0]);
        h.commit(&ws[0], id, b"ALONE").unwrap();
        let rec = h.m.open_task(&id).unwrap();
        assert!(matches!(rec.phase, Phase::Reveal { .. }), "{:?}", rec.phase);
        assert_eq!(rec.wanted, 1);
        h.reveal(&ws[0], id, b"ALONE").unwrap();
        if n == 1 {
            assert!(matches!(h.final_task(&id).phase, Phase::Decided { .. }));
        } else {
            let rec = h.m.open_task(&id).unwrap();
            assert_eq!((rec.phase.clone(), rec.wanted), (Phase::Commit, 2), "audited");
        }
    }
}

/// A core over a [`GatedStore`] with one exact class and free registration: the core, its
/// store, the coordinator key and the time.
fn gated_core() -> (cairn_coordinator::core::Core, std::sync::Arc<GatedStore>, SigningKey, u64) {
    let mut cfg = LifecycleConfig::new(NET, vec![exact(1)]);
    cfg.tunables.pow_difficulty = 0;
    let coord = key(1000);
    let now = 1_700_000_000;
    let store = std::sync::Arc::new(GatedStore {
        inner: MemoryStore::new(),
        gate: std::sync::Mutex::new(()),
        fail: false.into(),
        writes: 0.into(),
    });
    let core = cairn_coordinator::core::Core::open(cfg, coord.clone(), store.clone(), now).unwrap();
    (core, store, coord, now)
}

/// A store whose writes can be held back (while `gate` is locked) and made to fail.
struct GatedStore {
    inner: MemoryStore,
    gate: std::sync::Mutex<()>,
    fail: std::sync::atomic::AtomicBool,
    writes: std::sync::atomic::AtomicUsize,
}

impl KvStore for GatedStore {
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(t, key)
    }
    fn write(&self, batch: &cairn_coordinator::store::Batch) -> Result<(), StoreError> {
        let _held = self.gate.lock().unwrap();
        self.writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Engine("disk full (test)".into()));
        }
        self.inner.write(batch)
    }
    fn scan(
        &self,
        t: Table,
        prefix: &[u8],
        start: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<cairn_coordinator::store::Entry>, StoreError> {
        self.inner.scan(t, prefix, start, limit)
    }
}

#[test]
fn a_group_is_answered_only_once_written_and_a_failed_write_refuses_every_later_group() {
    use cairn_coordinator::core::CoreError;
    let (mut core, store, coord, now) = gated_core();
    let ws = workers(4);
    let reg = |w: &SigningKey| {
        Verified::check(Signed::sign(registration(coord.public(), w, now), w, &[0; 32])).unwrap()
    };
    let stored = |w: &SigningKey| store.inner.get(Table::Workers, w.public().as_bytes()).unwrap().is_some();

    // Writes held back: the machine decides two groups, neither is answered nor on disk.
    let gate = store.gate.lock().unwrap();
    let first = core.submit_many([reg(&ws[0])], |m, v| Ok(((), m.register(v, now)?))).unwrap();
    let second = core.submit_many([reg(&ws[1])], |m, v| Ok(((), m.register(v, now)?))).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        for p in [first, second] {
            tx.send(p.wait().map(|(answers, _)| answers.len()).map_err(|e| e.to_string())).unwrap();
        }
    });
    assert!(rx.recv_timeout(std::time::Duration::from_millis(300)).is_err(), "answered before written");
    assert!(!stored(&ws[0]) && !stored(&ws[1]));
    drop(gate);
    assert_eq!(rx.recv().unwrap(), Ok(1));
    assert_eq!(rx.recv().unwrap(), Ok(1));
    waiter.join().unwrap();
    assert!(stored(&ws[0]) && stored(&ws[1]));
    // Reads through the core see only what is on disk: it waits for the writer.
    assert_eq!(core.machine().workers().count(), 2);

    // A write fails with a later group already decided behind it: the failing group gets the
    // storage error, the one behind it and every later event are refused, nothing is written.
    let gate = store.gate.lock().unwrap();
    store.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let failing = core.submit_many([reg(&ws[2])], |m, v| Ok(((), m.register(v, now)?))).unwrap();
    let behind = core.submit_many([reg(&ws[3])], |m, v| Ok(((), m.register(v, now)?))).unwrap();
    drop(gate);
    assert!(matches!(failing.wait(), Err(CoreError::Store(_))));
    store.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(behind.wait(), Err(CoreError::Poisoned)));
    assert!(matches!(core.apply(|m| Ok(((), m.tick(now)))), Err(CoreError::Poisoned)));
    assert!(matches!(
        core.submit_many([reg(&ws[3])], |m, v| Ok(((), m.register(v, now)?))),
        Err(CoreError::Poisoned)
    ));
    assert!(!stored(&ws[2]) && !stored(&ws[3]));
}

/// Groups that queue while a write syncs are written together: one write (one fsync) for
/// the burst, each group still answered with its own answers, in order, once on disk.
#[test]
fn groups_queued_behind_a_slow_write_share_one_write() {
    use std::sync::atomic::Ordering;
    let (mut core, store, coord, now) = gated_core();
    let before = store.writes.load(Ordering::SeqCst);
    let ws = workers(12);
    let gate = store.gate.lock().unwrap();
    let pending: Vec<_> = ws
        .iter()
        .map(|w| {
            let v = Verified::check(Signed::sign(registration(coord.public(), w, now), w, &[0; 32])).unwrap();
            core.submit_many([v], |m, v| Ok((v.get().body.worker, m.register(v, now)?))).unwrap()
        })
        .collect();
    drop(gate);
    for (p, w) in pending.into_iter().zip(&ws) {
        let (answers, _) = p.wait().unwrap();
        assert_eq!(answers, vec![Ok(w.public())]);
        assert!(store.inner.get(Table::Workers, w.public().as_bytes()).unwrap().is_some());
    }
    // One write held at the gate; behind it the writer's queue holds 8 sealed groups (its
    // capacity, written as one); the signer may hand over the last 3 one by one, as fast or
    // slow as the machine is: at most 5 writes, whatever the timing (12 without coalescing).
    let writes = store.writes.load(Ordering::SeqCst) - before;
    assert!(writes <= 5, "12 groups queued behind one write took {writes} writes");
}

#[test]
fn the_time_the_node_was_down_is_not_charged_to_workers() {
    let class = exact(1);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 0);
    let ws = workers(2);
    for w in &ws {
        h.register(w);
    }
    // One worker holds a lease; one committed and is about to reveal.
    let leased = h.submit(&class, b"leased", None);
    let x = h.take(leased, &ws)[0];
    let committed = h.submit(&class, b"committed", None);
    let y = h.take(committed, &ws)[0];
    h.commit(&ws[y], committed, b"C").unwrap();
    // The node is down for five minutes, past the lease and the reveal window.
    h.reload();
    h.now += 300;
    let step = h.m.resume(h.now);
    h.apply(step);
    h.reload();
    h.tick(1);
    // Nothing was swept: the lease still holds and the reveal is taken.
    assert!(h.m.open_task(&leased).unwrap().slot(&ws[x].public()).is_some());
    h.commit(&ws[x], leased, b"L").unwrap();
    h.reveal(&ws[y], committed, b"C").unwrap();
    for w in &ws {
        let r = h.m.worker(&w.public()).unwrap();
        assert_eq!((r.misses, r.rejected), (0, 0), "{:?}", r.rejections);
    }
}

/// Found by the chaos test: a claim is written unsynced, so a coordinator killed right after
/// granting it comes back with the slot still only offered; the worker's commitment must then
/// tell it to claim again (not refuse it for good, which left the task waiting on its offer).
#[test]
fn a_commitment_on_an_offer_whose_claim_was_lost_asks_the_worker_to_claim_again() {
    let class = exact(1);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 0);
    let ws = workers(1);
    h.register(&ws[0]);
    let id = h.submit(&class, b"lost claim", None);
    let _ = h.claim(&ws[0], id);
    h.tick(0);
    assert!(h.m.open_task(&id).unwrap().slot(&ws[0].public()).is_some_and(|a| a.offered));
    let err = h.commit(&ws[0], id, b"R").unwrap_err();
    assert_eq!((err.clone(), err.reason()), (Refusal::LeaseExpired, ErrorReason::LeaseExpired));
    h.claim(&ws[0], id).unwrap();
    h.commit(&ws[0], id, b"R").unwrap();
}
