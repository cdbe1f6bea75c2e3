//! Workers who try to be paid without doing the work, against the lifecycle machine: a
//! withholder that would stay silent when audited, a squatter that holds slots it never works,
//! a coalition of keys that claims first to fill every replica and lies when it holds them all.
//! Each test plays the attack over many tasks and checks what the attacker ends with.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]
mod harness;

use std::collections::BTreeSet;

use cairn_coordinator::lifecycle::{Effect, Phase, Refusal, TaskRecord};
use cairn_spec::{Hash32, Object, PubKey, SigningKey, Verdict};
use harness::*;

/// A slot as a worker sees it: who, committed, revealed, verdict.
type SlotSeen = (PubKey, bool, bool, Option<Verdict>);

/// What a worker can see of a task: its phase, its slots (who, committed, revealed, verdict)
/// and how many replicas it wants (a stricter view than the API's, which leaves `wanted` out).
fn visible(t: &TaskRecord) -> (String, u8, Vec<SlotSeen>) {
    let phase = match t.phase {
        Phase::Commit => "open",
        Phase::Reveal { .. } => "revealing",
        Phase::Decided { .. } => "decided",
        Phase::Failed { .. } => "failed",
    };
    let slots = t
        .assignments
        .iter()
        .map(|a| (a.worker, a.commitment.is_some(), a.revealed.is_some(), a.verdict))
        .collect();
    (phase.to_string(), t.wanted, slots)
}

fn announcements(h: &Harness, id: &Hash32) -> usize {
    h.effects.iter().filter(|e| matches!(e, Effect::Announce(a) if a.body.task.id() == *id)).count()
}

#[test]
fn nothing_a_worker_sees_before_its_reveal_tells_an_audited_task() {
    let class = exact(1);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 500_000);
    let ws = workers(3);
    for w in &ws {
        h.register(w);
    }
    let (mut audited, mut plain) = (0u32, 0u32);
    let mut seen_audited = BTreeSet::new();
    let mut seen_plain = BTreeSet::new();
    for t in 0..200u32 {
        let id = h.submit(&class, &t.to_be_bytes(), None);
        let held = h.take(id, &ws);
        assert_eq!(held.len(), 1);
        let w = &ws[held[0]];
        h.commit(w, id, b"right").unwrap();
        // Everything the worker can learn between its commitment and its reveal: the task's
        // state, the announcements made since, and how its reveal is answered.
        // Time passes (a tick) before it reveals.
        let before = announcements(&h, &id);
        h.tick(1);
        let mut view = visible(h.m.open_task(&id).unwrap());
        // Keys differ per task; what matters is the shape.
        view.2.iter_mut().for_each(|s| s.0 = ws[0].public());
        let announced = announcements(&h, &id) - before;
        let answer = h.reveal(w, id, b"right");
        let seen = (view, announced, answer.is_ok());
        let was_audited = h.m.open_task(&id).is_some_and(|r| r.phase == Phase::Commit);
        if was_audited {
            audited += 1;
            seen_audited.insert(format!("{seen:?}"));
            h.run_task(id, &ws, &|_| b"right".to_vec());
        } else {
            plain += 1;
            seen_plain.insert(format!("{seen:?}"));
        }
        assert!(matches!(h.final_task(&id).phase, Phase::Decided { .. }));
    }
    println!(
        "{audited} audited and {plain} plain tasks; what the worker saw before its reveal: {seen_plain:?}"
    );
    assert!(audited >= 50 && plain >= 50, "{audited} audited, {plain} plain");
    assert_eq!(seen_audited, seen_plain, "a worker could tell an audited task before its reveal");
    assert_eq!(seen_plain.len(), 1);
}

#[test]
fn withholding_costs_the_slot_and_repeated_withholding_a_ban() {
    let class = exact(1);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 0);
    let ws = workers(3);
    for w in &ws {
        h.register(w);
    }
    let sly = ws[0].public();
    // It works honestly first, earning locked credit.
    let mut t = 0u32;
    while h.m.balance(&sly).map_or(0, |e| e.locked) < 1000 {
        t += 1;
        let id = h.submit(&class, &t.to_be_bytes(), None);
        h.run_task(id, &ws, &|_| b"right".to_vec());
    }
    let forfeited_before = h.m.meta().forfeited;
    let locked = h.m.balance(&sly).unwrap().locked;
    // Then it commits garbage on each task it is drawn for and, whatever it could see, never
    // reveals: each silence is a miss costing the slot's reward (200 sats), the third a ban.
    let mut misses = 0;
    while h.m.worker(&sly).unwrap().banned.is_none() {
        t += 1;
        assert!(t < 500, "never banned");
        let id = h.submit(&class, &t.to_be_bytes(), None);
        let held = h.take(id, &ws);
        if held != vec![0] {
            // (Other tasks go on without it: an accepted result would work off a miss. Time
            // passes: its readiness lapses with everyone's, so the next task seeks workers
            // and its claim makes it ready again.)
            h.run_task(id, &ws[1..], &|_| b"right".to_vec());
            h.tick(130);
            continue;
        }
        h.commit(&ws[0], id, b"garbage").unwrap();
        h.tick(61);
        // Its window closed; the task goes on with the others, and is decided.
        h.run_task(id, &ws[1..], &|_| b"right".to_vec());
        assert!(matches!(h.final_task(&id).phase, Phase::Decided { .. }));
        assert_eq!(h.final_task(&id).slot(&sly).unwrap().verdict, Some(Verdict::NoReveal));
        misses += 1;
        let w = h.m.worker(&sly).unwrap();
        if misses < 3 {
            assert_eq!((w.misses, w.streak), (misses, 0), "each silence is a miss in a row");
            assert_eq!(h.m.meta().forfeited - forfeited_before, 200 * u64::from(misses));
        }
        // The next silence is another outage (misses within `miss_window_secs` are one).
        h.tick(300);
    }
    let w = h.m.worker(&sly).unwrap();
    assert!(w.banned.as_ref().unwrap().reason.contains("missed 3"), "{:?}", w.banned);
    assert_eq!(h.m.balance(&sly).unwrap().locked, 0);
    assert_eq!(h.m.meta().forfeited - forfeited_before, locked, "everything it had locked");
    for w in &ws[1..] {
        let r = h.m.worker(&w.public()).unwrap();
        assert_eq!((r.rejected, r.misses, r.banned.is_none()), (0, 0, true), "{:?}", r.rejections);
    }
    h.reload();
}

#[test]
fn a_lease_squatter_is_banned_and_its_slots_go_to_others() {
    let class = exact(2);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 0);
    let ws = workers(4);
    for w in &ws {
        h.register(w);
    }
    let squat = &ws[0];
    let mut ids = Vec::new();
    let (mut round, mut bursts) = (0u32, 0u32);
    // The squatter takes every slot it is drawn for and never commits; its leases run out
    // together (one miss per burst), and it asks again as soon as its cooldown allows.
    while h.m.worker(&squat.public()).unwrap().banned.is_none() {
        round += 1;
        assert!(round <= 30, "never banned");
        let mut held = false;
        for t in 0..4u32 {
            let id = h.submit(&class, &(round * 100 + t).to_be_bytes(), None);
            ids.push(id);
            held |= h.take(id, std::slice::from_ref(squat)) == vec![0];
        }
        bursts += u32::from(held);
        h.tick(61);
        h.tick(600);
    }
    println!("squatter banned after {bursts} bursts of leases let expire ({round} rounds)");
    assert_eq!(bursts, 3, "the third miss bans");
    assert!(matches!(h.claim(squat, ids[0]), Err(Refusal::Banned(_))));
    for id in &ids {
        h.run_task(*id, &ws[1..], &|_| b"right".to_vec());
        let rec = h.final_task(id);
        assert!(matches!(rec.phase, Phase::Decided { .. }), "{:?}", rec.phase);
        assert!(rec.assignments.iter().all(|a| a.worker != squat.public()));
    }
    for w in &ws[1..] {
        let r = h.m.worker(&w.public()).unwrap();
        assert_eq!((r.rejected, r.misses), (0, 0), "{:?}", r.rejections);
    }
}

/// A coalition of keys claims every task before anyone else and, whenever it holds every
/// replica (it can see who holds the slots), reveals one invented result from all of them.
#[test]
fn a_coalition_that_claims_first_holds_only_its_share_and_its_lies_cost_more_than_they_pay() {
    let class = exact(2);
    // Audits at a floor of 20 %: a coalition caught about once in six captured tasks.
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 200_000);
    let honest = workers(8);
    let sybils: Vec<SigningKey> = (100..104).map(key).collect();
    for w in honest.iter().chain(&sybils) {
        h.register(w);
    }
    let is_sybil = |k: &PubKey| sybils.iter().any(|s| s.public() == *k);
    let (mut captured, mut sybil_slots, mut slots) = (0u32, 0u32, 0u32);
    let mut lie_credit = 0u64;
    let forfeited_before = h.m.meta().forfeited;
    let n = 400u32;
    for t in 0..n {
        let id = h.submit(&class, &t.to_be_bytes(), None);
        // The sybils ask first, then the honest workers; the coordinator draws.
        let mut all: Vec<SigningKey> =
            sybils.iter().filter(|s| h.m.worker(&s.public()).unwrap().banned.is_none()).cloned().collect();
        all.extend(honest.iter().cloned());
        let held: Vec<PubKey> = h.take(id, &all).into_iter().map(|i| all[i].public()).collect();
        assert_eq!(held.len(), 2);
        slots += 2;
        sybil_slots += held.iter().filter(|k| is_sybil(k)).count() as u32;
        let lie = held.iter().all(&is_sybil);
        if lie {
            captured += 1;
        }
        let answer = |k: &PubKey| if lie && is_sybil(k) { b"invented".to_vec() } else { b"right".to_vec() };
        let everyone: Vec<SigningKey> = all.clone();
        h.run_task(id, &everyone, &|i| answer(&everyone[i].public()));
        let rec = h.final_task(&id);
        if lie {
            lie_credit += rec
                .assignments
                .iter()
                .filter(|a| is_sybil(&a.worker) && a.verdict == Some(Verdict::Accepted))
                .map(|_| 200)
                .sum::<u64>();
        }
    }
    let banned = sybils.iter().filter(|s| h.m.worker(&s.public()).unwrap().banned.is_some()).count();
    let forfeited = h.m.meta().forfeited - forfeited_before;
    println!(
        "coalition of 4 keys among 12: {sybil_slots} of {slots} slots, {captured} of {n} tasks captured, \
         {lie_credit} sats credited for invented results, {forfeited} sats forfeited, {banned} keys banned"
    );
    // Claiming first wins nothing: the coalition holds at most about its share of the slots
    // (a third, less once keys are banned), and every replica of a task rarely (1 in 11).
    let share = f64::from(sybil_slots) / f64::from(slots);
    assert!(share < 0.4, "share {share}");
    assert!(captured * 6 < n, "{captured} of {n} tasks captured");
    // Its lies cost it more than they paid.
    assert!(forfeited >= lie_credit, "{lie_credit} credited for lies, {forfeited} forfeited");
    for w in &honest {
        let r = h.m.worker(&w.public()).unwrap();
        assert!(r.banned.is_none() && r.misses == 0, "an honest worker was penalised: {:?}", r.rejections);
    }
}

#[test]
fn only_a_task_seeking_workers_makes_its_claimant_ready() {
    let class = exact(1);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 0);
    let ws = workers(2);
    for w in &ws {
        h.register(w);
    }
    // Worker 0 takes a task and commits: the task seeks nobody now.
    let a = h.submit(&class, b"a", None);
    assert_eq!(h.take(a, &ws[..1]), vec![0]);
    h.commit(&ws[0], a, b"A").unwrap();
    // Worker 1 keeps claiming it (as a key would to stay ready in a quiet hour): refused, and
    // not made ready by it.
    for _ in 0..3 {
        assert!(matches!(h.claim(&ws[1], a), Err(Refusal::Conflict(_))));
        h.tick(1);
    }
    // A new task is drawn among the ready workers only: worker 0 (it asked for a task that
    // sought workers), never worker 1.
    let b = h.submit(&class, b"b", None);
    let rec = h.m.open_task(&b).unwrap();
    assert_eq!(rec.assignments.iter().map(|a| a.worker).collect::<Vec<_>>(), vec![ws[0].public()]);
}

#[test]
fn a_key_that_lets_offers_lapse_cools_down() {
    let class = exact(1);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 0);
    let ws = workers(2);
    for w in &ws {
        h.register(w);
    }
    let lazy = &ws[0];
    let id = h.submit(&class, b"x", None);
    // Only the lazy key asks; it is drawn and never takes the offer.
    let _ = h.claim(lazy, id);
    h.tick(0);
    assert!(h.m.open_task(&id).unwrap().slot(&lazy.public()).is_some_and(|a| a.offered));
    h.tick(10);
    assert!(h.m.open_task(&id).unwrap().assignments.is_empty(), "the offer lapsed");
    // Asking again at once, it cools down: an honest worker that asks is drawn before it...
    let _ = h.claim(lazy, id);
    let _ = h.claim(&ws[1], id);
    h.tick(1);
    assert_eq!(h.take(id, &ws[1..]), vec![0]);
    assert!(h.m.open_task(&id).unwrap().slot(&lazy.public()).is_none(), "cooling down");
    // (It is drawn only when nobody else is ready, so a task never waits on it alone: the
    // lifecycle test `a_slot_that_opens_is_announced_at_once` draws such a worker.)
    // A lapse costs no credit and is no miss.
    let r = h.m.worker(&lazy.public()).unwrap();
    assert_eq!((r.misses, r.rejected), (0, 0));
}

#[test]
fn slots_that_lapse_in_one_outage_are_one_miss_and_accepted_work_pays_misses_off() {
    let class = exact(1);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 0);
    let ws = workers(2);
    for w in &ws {
        h.register(w);
    }
    h.build_stake(&class, &ws, 1000);
    h.tick(300);
    // Worker 0's machine stalls while it holds three leases taken twenty seconds apart: they
    // run out at three moments of one outage, each costing its slot, and count as one miss.
    let forfeited = h.m.meta().forfeited;
    let ids: Vec<Hash32> = (0..3u8).map(|i| h.submit(&class, &[i], None)).collect();
    for id in &ids {
        assert_eq!(h.take(*id, &ws[..1]), vec![0]);
        h.tick(20);
    }
    h.tick(60);
    let w = h.m.worker(&ws[0].public()).unwrap();
    assert_eq!((w.misses, w.banned.is_none()), (1, true), "one outage is one miss");
    assert_eq!(w.rejections.len(), 3, "each lapse is recorded");
    assert_eq!(h.m.meta().forfeited - forfeited, 600, "each lapse costs its slot");
    // A key with nothing locked loses nothing by a miss: each of its lapses counts.
    let fresh = key(4242);
    h.register(&fresh);
    h.tick(300);
    for i in 0..3u8 {
        let id = h.submit(&class, &[b'f', i], None);
        assert_eq!(h.take(id, std::slice::from_ref(&fresh)), vec![0]);
        h.tick(70);
    }
    let f = h.m.worker(&fresh.public()).unwrap();
    assert!(f.banned.is_some(), "three lapses with nothing at stake ban: {f:?}");
    // An accepted result works it off.
    let id = h.submit(&class, b"after", None);
    h.run_task(id, &ws, &|_| b"ok".to_vec());
    let w = h.m.worker(&ws[0].public()).unwrap();
    let worked =
        h.final_task(&id).slot(&ws[0].public()).is_some_and(|a| a.verdict == Some(Verdict::Accepted));
    let before = if worked { 0 } else { 1 };
    assert_eq!(w.misses, before);
    // A stall a window later is another miss: a key that keeps lapsing is counted once per
    // window, never stretches one outage.
    h.tick(300);
    let id = h.submit(&class, b"later", None);
    assert_eq!(h.take(id, &ws[..1]), vec![0]);
    h.tick(70);
    assert_eq!(h.m.worker(&ws[0].public()).unwrap().misses, before + 1);
}

/// The stake floor of the audit probability (SPEC.md §12.2): a worker whose credit has just
/// settled has nothing locked to lose, so a lie would be free whatever its streak; its tasks
/// are audited every time until it has something at stake again.
#[test]
fn a_worker_with_nothing_locked_is_audited_whatever_its_streak() {
    let class = exact(1);
    let mut h = Harness::new(vec![class.clone()], |c| {
        c.tunables.audit_min_ppm = 0;
        c.tunables.epoch_interval_secs = 10;
    });
    let ws = workers(3);
    for w in &ws {
        h.register(w);
    }
    for t in 0..60u32 {
        let id = h.submit(&class, &t.to_be_bytes(), None);
        h.run_task(id, &ws, &|_| b"right".to_vec());
    }
    assert!(ws.iter().all(|w| h.m.worker(&w.public()).unwrap().streak >= 8), "long streaks: 1/streak ≤ 12 %");
    for round in 0..5u32 {
        // The epoch closes and settles: nothing is locked any more.
        h.tick(10);
        let height = h.m.meta().next_epoch - 1;
        let step = h.m.settle(height, h.now);
        h.apply(step);
        assert!(ws.iter().all(|w| h.m.balance(&w.public()).map_or(0, |e| e.locked) == 0));
        let id = h.submit(&class, &(1000 + round).to_be_bytes(), None);
        let held = h.take(id, &ws);
        h.commit(&ws[held[0]], id, b"right").unwrap();
        h.reveal(&ws[held[0]], id, b"right").unwrap();
        assert_eq!(
            h.m.open_task(&id).map(|t| t.phase.clone()),
            Some(Phase::Commit),
            "audited (round {round})"
        );
        h.run_task(id, &ws, &|_| b"right".to_vec());
    }
}

/// A thousand new keys (each cost a registration, nothing more) ask for every task and lie
/// whenever drawn, beside eight workers with credit locked. A task holds at most one light
/// key while others are ready (SPEC.md §12.4), so the flood never fills a task's replicas
/// nor outvotes its workers: each key it risks is banned the first time it lies on a replica.
#[test]
fn a_thousand_new_keys_hold_one_slot_of_a_task_at_most_and_never_profit() {
    let class = exact(2);
    let mut h = Harness::new(vec![class.clone()], |_| {});
    let honest = workers(8);
    for w in &honest {
        h.register(w);
    }
    // The honest workers build stake: 1.4 × the slot's reward (200 sats) locked each.
    h.build_stake(&class, &honest, 280);
    let sybils: Vec<SigningKey> = (0..1000).map(|i| key(5000 + i)).collect();
    for s in &sybils {
        h.register(s);
    }
    // The flood asks first, while the task still seeks workers (a claim on a task whose slots
    // are all taken makes nobody ready).
    let mut all = sybils.clone();
    all.extend(honest.iter().cloned());
    let first_honest = sybils.len();
    let is_sybil = |k: &PubKey| !honest.iter().any(|w| w.public() == *k);
    let forfeited_before = h.m.meta().forfeited;
    let (n, mut sybil_slots, mut most_on_a_task, mut sybil_credit) = (200u32, 0u32, 0usize, 0u64);
    for t in 0..n {
        let id = h.submit(&class, &t.to_be_bytes(), None);
        // The flood asks often enough to stay ready (every key within `live_secs`).
        let flood_asks = t % 20 == 0;
        h.run_task_asking(id, &all, &|i| i >= first_honest || flood_asks, &|i| {
            if i >= first_honest {
                b"right".to_vec()
            } else {
                b"invented".to_vec()
            }
        });
        let rec = h.final_task(&id);
        let on_task = rec.assignments.iter().filter(|a| is_sybil(&a.worker)).count();
        most_on_a_task = most_on_a_task.max(on_task);
        sybil_slots += on_task as u32;
        sybil_credit += rec
            .assignments
            .iter()
            .filter(|a| is_sybil(&a.worker) && a.verdict == Some(Verdict::Accepted))
            .map(|_| 200)
            .sum::<u64>();
        assert!(matches!(rec.phase, Phase::Decided { .. }), "{:?}", rec.phase);
    }
    let banned = sybils.iter().filter(|s| h.m.worker(&s.public()).unwrap().banned.is_some()).count();
    let forfeited = h.m.meta().forfeited - forfeited_before;
    println!(
        "1000 new keys against 8 staked workers over {n} tasks: {sybil_slots} slots held, at most \
         {most_on_a_task} on one task, {sybil_credit} sats credited, {forfeited} sats forfeited, \
         {banned} keys banned"
    );
    assert!(sybil_slots > 0, "the flood was never drawn");
    assert_eq!(most_on_a_task, 1, "two light keys on one task");
    assert_eq!(sybil_credit, 0, "a lie was paid");
    for w in &honest {
        let r = h.m.worker(&w.public()).unwrap();
        assert!(
            r.banned.is_none() && r.misses == 0 && r.rejected == 0,
            "an honest worker was penalised: {:?}",
            r.rejections
        );
    }
}

/// Only two staked workers and three new keys that lie whenever drawn: every audit and
/// escalation falls to the new keys (no other staked worker is free), yet their three agreeing
/// results count as one vote beside the staked ones (SPEC.md §12.4). They are never paid and
/// never get an honest worker banned or fined.
#[test]
fn light_keys_in_every_check_slot_cannot_outvote_staked_replicas() {
    let class = exact(2);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 1_000_000);
    let honest = workers(2);
    for w in &honest {
        h.register(w);
    }
    h.build_stake(&class, &honest, 280);
    let sybils: Vec<SigningKey> = (0..3).map(|i| key(7000 + i)).collect();
    for s in &sybils {
        h.register(s);
    }
    let mut all = sybils.clone();
    all.extend(honest.iter().cloned());
    let is_sybil = |k: &PubKey| sybils.iter().any(|s| s.public() == *k);
    let before = h.m.meta().forfeited;
    let (mut checks_held, mut sybil_credit) = (0u32, 0u64);
    for t in 0..60u32 {
        let id = h.submit(&class, &t.to_be_bytes(), None);
        h.run_task(id, &all, &|i| if i < sybils.len() { b"invented".to_vec() } else { b"right".to_vec() });
        let rec = h.final_task(&id);
        checks_held += rec.assignments.iter().filter(|a| a.audit && is_sybil(&a.worker)).count() as u32;
        sybil_credit += rec
            .assignments
            .iter()
            .filter(|a| is_sybil(&a.worker) && a.verdict == Some(Verdict::Accepted))
            .count() as u64
            * 200;
        assert!(matches!(rec.phase, Phase::Decided { .. }), "{:?}", rec.phase);
    }
    println!(
        "3 new keys lying against 2 staked workers: {checks_held} check slots held, {sybil_credit} sats credited, {} forfeited",
        h.m.meta().forfeited - before
    );
    assert!(checks_held > 0, "the new keys never held a check slot");
    assert_eq!(sybil_credit, 0, "a lie was paid");
    for w in &honest {
        let r = h.m.worker(&w.public()).unwrap();
        assert!(
            r.banned.is_none() && r.rejected == 0 && r.misses == 0,
            "an honest worker was penalised: {:?}",
            r.rejections
        );
    }
}

/// One staked key that lies, and only new (light) keys beside it, honest: the light keys'
/// results are one vote against its one (SPEC.md §12.4), so neither side wins by count. The
/// liar is never paid and never gets a light key fined or banned; the tasks it holds with
/// light keys alone fail without verdicts, and the light keys lose nothing they had.
#[test]
fn a_staked_liar_among_light_keys_is_never_paid_and_penalises_nobody() {
    let class = exact(2);
    // Five slots at most (two replicas, the audit, two escalations): the five keys asking
    // can fill them, so no slot waits for the staked workers that stopped asking.
    let mut h = Harness::new(vec![class.clone()], |c| {
        c.tunables.audit_min_ppm = 1_000_000;
        c.tunables.max_escalations = 2;
    });
    let staked = workers(3);
    for w in &staked {
        h.register(w);
    }
    h.build_stake(&class, &staked, 280);
    // The other staked workers stop asking; their readiness lapses.
    h.tick(300);
    let liar = staked[0].clone();
    let lights: Vec<SigningKey> = (0..4).map(|i| key(8000 + i)).collect();
    for l in &lights {
        h.register(l);
    }
    let mut all = vec![liar.clone()];
    all.extend(lights.iter().cloned());
    let liar_before = h.m.balance(&liar.public()).unwrap().clone();
    let before = h.m.meta().forfeited;
    let (mut held, mut failed, mut light_credit) = (0u32, 0u32, 0u64);
    for t in 0..30u32 {
        let id = h.submit(&class, &t.to_be_bytes(), None);
        h.run_task(id, &all, &|i| if i == 0 { b"invented".to_vec() } else { b"right".to_vec() });
        let rec = h.final_task(&id);
        let mine = rec.assignments.iter().find(|a| a.worker == liar.public());
        held += u32::from(mine.is_some());
        assert!(mine.is_none_or(|a| a.verdict != Some(Verdict::Accepted)), "the lie was paid");
        failed += u32::from(matches!(rec.phase, Phase::Failed { .. }));
        light_credit += rec
            .assignments
            .iter()
            .filter(|a| a.worker != liar.public() && a.verdict == Some(Verdict::Accepted))
            .count() as u64
            * 200;
    }
    let liar_after = h.m.balance(&liar.public()).unwrap().clone();
    println!(
        "a staked liar and 4 light keys over 30 tasks: the liar held {held} slots, {failed} tasks failed, \
         light keys credited {light_credit} sats"
    );
    assert!(held > 0, "the liar was never drawn");
    assert!(
        liar_after.locked + liar_after.claimable + liar_after.paid
            <= liar_before.locked + liar_before.claimable + liar_before.paid,
        "the liar gained"
    );
    for l in &lights {
        let r = h.m.worker(&l.public()).unwrap();
        assert!(r.banned.is_none() && r.misses == 0, "a light key was penalised: {:?}", r.rejections);
    }
    let lights_kept: u64 =
        lights.iter().map(|l| h.m.balance(&l.public()).map_or(0, |e| e.locked + e.claimable + e.paid)).sum();
    assert_eq!(lights_kept, light_credit, "a light key lost credit it had earned");
    // Whatever was forfeited was the liar's.
    assert!(h.m.meta().forfeited - before <= liar_before.locked);
}

/// A reveal that opens its commitment but is not well formed for the class's rule (a zero
/// vector under a cosine rule) is no answer: it costs what withholding costs, and three such
/// outages ban (SPEC.md §12.3). Otherwise a key could sit in slots revealing zeros for free.
#[test]
fn a_malformed_reveal_costs_what_withholding_costs() {
    let class = cosine(1);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 0);
    let ws = workers(3);
    for w in &ws {
        h.register(w);
    }
    let right = vector(1, 0.0);
    let mut t = 0u32;
    while h.m.balance(&ws[0].public()).map_or(0, |e| e.locked) < 1000 {
        t += 1;
        let id = h.submit(&class, &t.to_be_bytes(), None);
        h.run_task(id, &ws, &|_| right.clone());
    }
    let sly = ws[0].public();
    let forfeited_before = h.m.meta().forfeited;
    let zeros = vec![0u8; right.len()];
    let mut outages = 0u32;
    while h.m.worker(&sly).unwrap().banned.is_none() {
        t += 1;
        assert!(t < 500, "never banned");
        let id = h.submit(&class, &t.to_be_bytes(), None);
        if h.take(id, &ws) != vec![0] {
            h.run_task(id, &ws[1..], &|_| right.clone());
            h.tick(130);
            continue;
        }
        h.commit(&ws[0], id, &zeros).unwrap();
        h.reveal(&ws[0], id, &zeros).unwrap();
        h.run_task(id, &ws[1..], &|_| right.clone());
        assert_eq!(h.final_task(&id).slot(&sly).unwrap().verdict, Some(Verdict::InvalidResult));
        outages += 1;
        if outages < 3 {
            assert_eq!(h.m.worker(&sly).unwrap().misses, outages, "a malformed reveal is a miss");
            assert_eq!(h.m.meta().forfeited - forfeited_before, 200 * u64::from(outages));
        }
        h.tick(300);
    }
    assert_eq!(outages, 3);
    assert!(h.m.worker(&sly).unwrap().banned.as_ref().unwrap().reason.contains("missed 3"));
}

/// A task whose replicas disagree, unaudited, is escalated at most `max_escalations` times
/// (the audit replica is the one more slot an audited task may have), then fails.
#[test]
fn escalations_stop_at_max_escalations() {
    let class = exact(2);
    let mut h = Harness::new(vec![class.clone()], |c| {
        c.tunables.audit_min_ppm = 0;
        c.tunables.audit_stake_factor = 0;
    });
    let ws = workers(8);
    for w in &ws {
        h.register(w);
    }
    h.build_stake(&class, &ws, 2000);
    // Every worker answers differently: no majority ever forms.
    for n in 0..10u32 {
        let id = h.submit(&class, &n.to_be_bytes(), None);
        h.run_task(id, &ws, &|i| format!("answer {i}").into_bytes());
        let rec = h.final_task(&id);
        assert!(matches!(rec.phase, Phase::Failed { .. }), "{:?}", rec.phase);
        assert_eq!(rec.escalations, 3, "{rec:?}");
        // Two replicas, the audit replica when drawn, three escalations.
        assert!(rec.assignments.len() <= 6, "{rec:?}");
    }
}
