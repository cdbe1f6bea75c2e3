//! The lifecycle state machine driven by scripted events: every step is persisted to the
//! in-memory store exactly as the node does, and the machine is restored from the store at
//! intervals to prove the persisted state is complete.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]
use cairn_coordinator::lifecycle::{
    Effect, LifecycleConfig, Machine, PayoutStatus, Phase, Refusal, Step, Verified,
};
use cairn_coordinator::lifecycle_store as ls;
use cairn_coordinator::store::{KvStore, MemoryStore, StoreError, Table};
use cairn_spec::task::PPB;
use cairn_spec::work::commitment_value;
use cairn_spec::{
    Claim, Commitment, ComparisonRule, Encode, ErrorReason, ExecutorKind, Hash32, Network, Object, Payload,
    PubKey, Registration, Reveal, Signed, SigningKey, Task, TaskClass, Verdict,
};

const NET: Network = Network::Regtest;
const ADDR: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

fn key(i: u32) -> SigningKey {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&(i + 1).to_be_bytes());
    b[31] = 7;
    SigningKey::from_secret_bytes(b).unwrap()
}

fn class(name: &str, rule: ComparisonRule, replication: u8) -> TaskClass {
    TaskClass {
        name: name.into(),
        executor: ExecutorKind::Embedding,
        model_hash: Hash32([9; 32]),
        rule,
        replication,
        reward_per_unit: 100,
        max_input_bytes: 4096,
        lease_secs: 60,
        reveal_secs: 60,
    }
}

fn exact(replication: u8) -> TaskClass {
    class("exact", ComparisonRule::ExactHash, replication)
}

fn cosine(replication: u8) -> TaskClass {
    class("embed", ComparisonRule::Cosine { min_ppb: PPB / 100 * 99 }, replication)
}

struct Harness {
    m: Machine,
    store: MemoryStore,
    cfg: LifecycleConfig,
    coord: SigningKey,
    now: u64,
    nonce: u64,
    effects: Vec<Effect>,
}

impl Harness {
    fn new(classes: Vec<TaskClass>, tweak: impl FnOnce(&mut LifecycleConfig)) -> Self {
        let mut cfg = LifecycleConfig::new(NET, classes);
        cfg.tunables.pow_difficulty = 4;
        tweak(&mut cfg);
        let coord = key(1000);
        let now = 1_700_000_000;
        Harness {
            m: Machine::new(cfg.clone(), coord.clone(), now),
            store: MemoryStore::new(),
            cfg,
            coord,
            now,
            nonce: 0,
            effects: Vec::new(),
        }
    }

    fn apply(&mut self, step: Step) {
        self.store.write(&ls::batch_for(&step).unwrap()).unwrap();
        self.effects.extend(step.effects);
        self.m.check_invariants().unwrap();
    }

    /// Restores the machine from the store and checks it agrees with the live one.
    fn reload(&mut self) {
        let snap = ls::load(&self.store).unwrap().expect("state stored");
        let m = Machine::restore(self.cfg.clone(), self.coord.clone(), snap).unwrap();
        assert_eq!(m.meta(), self.m.meta());
        assert_eq!(m.open_tasks().collect::<Vec<_>>(), self.m.open_tasks().collect::<Vec<_>>());
        assert_eq!(m.workers().collect::<Vec<_>>(), self.m.workers().collect::<Vec<_>>());
        self.m = m;
    }

    fn register(&mut self, w: &SigningKey) {
        let mut reg = registration(self.coord.public(), w, self.now);
        assert!(reg.solve_pow(4, 1 << 20));
        let step =
            self.m.register(Verified::check(Signed::sign(reg, w, &[0; 32])).unwrap(), self.now).unwrap();
        self.apply(step);
    }

    fn submit(&mut self, class: &TaskClass, input: &[u8], canary: Option<Vec<u8>>) -> Hash32 {
        self.nonce += 1;
        let task = Task {
            network: NET,
            coordinator: self.coord.public(),
            class: class.id(),
            requester: key(2000).public(),
            nonce: self.nonce,
            units: 2,
            budget_sats: 10_000,
            created_at: self.now,
            input: Payload::Inline(input.to_vec()),
        };
        let (id, step) = self.m.submit_task(task, canary, self.now).unwrap();
        self.apply(step);
        id
    }

    fn claim(&mut self, w: &SigningKey, task: Hash32) -> Result<u64, Refusal> {
        let c = Claim { task, worker: w.public(), claimed_at: self.now };
        let (exp, step) = self.m.claim(Verified::check(Signed::sign(c, w, &[0; 32]))?, self.now)?;
        self.apply(step);
        Ok(exp)
    }

    fn commit(&mut self, w: &SigningKey, task: Hash32, result: &[u8]) -> Result<[u8; 32], Refusal> {
        let salt = salt_for(w, &task);
        let v = commitment_value(&task, &w.public(), &cairn_spec::content_hash(result), &salt);
        self.commit_value(w, task, v)?;
        Ok(salt)
    }

    fn commit_value(&mut self, w: &SigningKey, task: Hash32, v: Hash32) -> Result<(), Refusal> {
        let c = Commitment { task, worker: w.public(), commitment: v };
        let step = self.m.commit(Verified::check(Signed::sign(c, w, &[0; 32]))?, self.now)?;
        self.apply(step);
        Ok(())
    }

    fn reveal(&mut self, w: &SigningKey, task: Hash32, result: &[u8]) -> Result<(), Refusal> {
        self.reveal_salted(w, task, result, salt_for(w, &task))
    }

    fn reveal_salted(
        &mut self,
        w: &SigningKey,
        task: Hash32,
        result: &[u8],
        salt: [u8; 32],
    ) -> Result<(), Refusal> {
        let r = Reveal { task, worker: w.public(), result: Payload::Inline(result.to_vec()), salt };
        let step = self.m.reveal(Verified::check(Signed::sign(r, w, &[0; 32]))?, self.now)?;
        self.apply(step);
        Ok(())
    }

    fn tick(&mut self, secs: u64) {
        self.now += secs;
        let step = self.m.tick(self.now);
        self.apply(step);
    }

    /// Runs a task to its end with `answers` (worker index → result), workers claiming in
    /// order as slots open (audits and escalations pull in further workers).
    fn run_task(&mut self, task: Hash32, workers: &[SigningKey], answer: &dyn Fn(usize) -> Vec<u8>) {
        let mut joined: Vec<usize> = Vec::new();
        for _round in 0..20 {
            let Some(rec) = self.m.open_task(&task).cloned() else { return };
            match rec.phase {
                Phase::Commit => {
                    let idx = (0..workers.len())
                        .find(|i| {
                            !joined.contains(i)
                                && self.m.worker(&workers[*i].public()).unwrap().banned.is_none()
                        })
                        .expect("a free worker");
                    joined.push(idx);
                    self.claim(&workers[idx], task).unwrap();
                    self.commit(&workers[idx], task, &answer(idx)).unwrap();
                }
                Phase::Reveal { .. } => {
                    for &i in &joined {
                        let w = &workers[i];
                        let slot = rec.slot(&w.public());
                        if slot.is_some_and(|s| s.revealed.is_none()) {
                            match self.reveal(w, task, &answer(i)) {
                                Ok(()) | Err(Refusal::Banned(_)) => {}
                                Err(e) => panic!("reveal refused: {e}"),
                            }
                        }
                    }
                    if self.m.open_task(&task).is_some_and(|r| matches!(r.phase, Phase::Reveal { .. })) {
                        self.tick(61);
                    }
                }
                _ => return,
            }
        }
        panic!("task did not finish");
    }

    fn final_task(&self, id: &Hash32) -> cairn_coordinator::lifecycle::TaskRecord {
        ls::task(&self.store, id).unwrap().unwrap()
    }
}

/// A registration of `w` at `coordinator` on regtest, without work or bond.
fn registration(coordinator: PubKey, w: &SigningKey, created_at: u64) -> Registration {
    Registration {
        network: NET,
        coordinator,
        worker: w.public(),
        payout_address: ADDR.into(),
        created_at,
        pow_nonce: 0,
        bond: None,
    }
}

fn salt_for(w: &SigningKey, task: &Hash32) -> [u8; 32] {
    let mut s = task.0;
    s[0] ^= w.public().as_bytes()[0];
    s[31] = 0x5a;
    s
}

fn vector(seed: u32, noise: f32) -> Vec<u8> {
    (0..32u32)
        .map(|i| ((seed * 31 + i * 7) % 17) as f32 - 8.0 + noise * (((i * 13 + seed) % 5) as f32 - 2.0))
        .flat_map(|x| x.to_le_bytes())
        .collect()
}

fn workers(n: u32) -> Vec<SigningKey> {
    (0..n).map(key).collect()
}

#[test]
fn happy_path_receipts_epoch_settlement_payout() {
    let class = exact(2);
    let mut h = Harness::new(vec![class.clone()], |c| {
        c.tunables.audit_min_ppm = 0;
        c.tunables.epoch_interval_secs = 300;
        c.tunables.payout_threshold_sats = 1000;
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
    let w0 = ws[0].public();
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
}

#[test]
fn a_copied_result_is_caught_by_the_commitment() {
    let class = exact(2);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 0);
    let ws = workers(3);
    for w in &ws {
        h.register(w);
    }
    // Give both workers a streak so no audit replica joins (1/streak with p_min 0).
    let task = h.submit(&class, b"copy me", None);
    h.claim(&ws[0], task).unwrap();
    h.claim(&ws[1], task).unwrap();
    let salt0 = h.commit(&ws[0], task, b"honest answer").unwrap();
    // The copier commits before seeing anything: it can only copy the commitment value.
    let c0 = commitment_value(&task, &ws[0].public(), &cairn_spec::content_hash(b"honest answer"), &salt0);
    h.commit_value(&ws[1], task, c0).unwrap();
    let rec = h.m.open_task(&task).unwrap().clone();
    if rec.phase == Phase::Commit {
        // An audit replica was drawn: let an honest third worker fill it.
        h.claim(&ws[2], task).unwrap();
        h.commit(&ws[2], task, b"honest answer").unwrap();
    }
    h.reveal(&ws[0], task, b"honest answer").unwrap();
    // Even with the leaked result and salt, the copier's reveal does not open its commitment.
    let err = h.reveal_salted(&ws[1], task, b"honest answer", salt0).unwrap_err();
    assert!(matches!(err, Refusal::Invalid(ref m) if m.contains("does not open")), "{err}");
    if h.m.open_task(&task).is_some_and(|r| r.slot(&ws[2].public()).is_some()) {
        h.reveal(&ws[2], task, b"honest answer").unwrap();
    }
    h.tick(61);
    let rec = h.final_task(&task);
    assert_eq!(rec.slot(&ws[1].public()).unwrap().verdict, Some(Verdict::NoReveal));
    assert_eq!(h.m.balance(&ws[1].public()).map(|e| e.locked).unwrap_or(0), 0);
    let copier = h.m.worker(&ws[1].public()).unwrap();
    assert!(copier.rejections.iter().any(|r| r.verdict == Some(Verdict::NoReveal)));
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
    // the floor p_min = 10%; then it turns lazy (it always claims first).
    for t in 0..40u32 {
        let id = h.submit(&class, &(1000 + t).to_be_bytes(), None);
        h.run_task(id, &ws, &|_| b"right".to_vec());
    }
    assert!(h.m.worker(&lazy).unwrap().streak >= 10);
    let receipts = |h: &Harness| h.effects.iter().filter(|e| matches!(e, Effect::Receipt(_))).count();
    let honest_receipts = receipts(&h);
    println!("honest phase: 40 tasks, {honest_receipts} receipts (audits and escalations add replicas)");
    let locked_before = h.m.balance(&lazy).unwrap().locked;
    assert!(locked_before > 0);
    let mut tasks = 0u32;
    while h.m.worker(&lazy).unwrap().banned.is_none() {
        tasks += 1;
        // At p_min = 0.1 per task, 100 unaudited tasks in a row happen with probability 3e-5.
        assert!(tasks <= 100, "lazy worker not caught within 100 tasks");
        let id = h.submit(&class, &(5000 + tasks).to_be_bytes(), None);
        let t = tasks;
        h.run_task(id, &ws, &|i| if i == 0 { format!("random {t}").into_bytes() } else { b"right".to_vec() });
    }
    println!("lazy worker with a streak banned after {tasks} lazy tasks");
    assert!(h.m.meta().forfeited >= locked_before);
    let w = h.m.worker(&lazy).unwrap();
    let ban = w.banned.clone().unwrap();
    assert!(w.rejections.iter().any(|r| r.verdict == Some(Verdict::Mismatch)));
    assert_eq!(h.m.balance(&lazy).map(|e| e.locked).unwrap_or(0), 0);
    assert_eq!(h.m.meta().forfeited, ban.forfeited);
    // A banned worker is refused from then on.
    let id = h.submit(&class, b"after ban", None);
    assert!(matches!(h.claim(&ws[0], id), Err(Refusal::Banned(_))));
    // Honest workers were never penalised.
    for w in &ws[1..] {
        let r = h.m.worker(&w.public()).unwrap();
        assert_eq!(r.rejected, 0, "honest worker rejected: {:?}", r.rejections);
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
    h.run_task(canary, &ws, &|_| b"5".to_vec());
    let rec = h.final_task(&canary);
    assert_eq!(rec.assignments[0].verdict, Some(Verdict::CanaryFailed));
    assert!(h.m.worker(&ws[0].public()).unwrap().banned.is_some());
    // The honest worker passes its canary.
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
    // The cheater holds a commitment on one task (waiting for its audit replica) and an
    // uncommitted lease on another when it fails a canary.
    let committed = h.submit(&class, b"task one", None);
    h.claim(cheat, committed).unwrap();
    h.commit(cheat, committed, b"ONE").unwrap();
    assert!(matches!(h.m.open_task(&committed).unwrap().phase, Phase::Commit), "an audit replica is wanted");
    let leased = h.submit(&class, b"task two", None);
    h.claim(cheat, leased).unwrap();
    let canary = h.submit(&class, b"what is 2+2", Some(b"4".to_vec()));
    h.run_task(canary, std::slice::from_ref(cheat), &|_| b"5".to_vec());
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
    // Worker 1 disagrees; the audit (new workers: p = 1) and escalation bring in more.
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
    let exp = h.claim(&ws[0], id).unwrap();
    assert!(matches!(h.claim(&ws[1], id), Err(Refusal::Conflict(_))));
    h.tick(exp - h.now);
    assert!(h.m.open_task(&id).unwrap().assignments.is_empty());
    // The late worker's commitment is refused; another worker takes the task.
    assert!(h.commit(&ws[0], id, b"late").is_err());
    h.claim(&ws[1], id).unwrap();
    h.reload();
    h.commit(&ws[1], id, b"done").unwrap();
}

#[test]
fn refusals_a_worker_must_react_to_carry_their_own_reason() {
    let class = exact(1);
    let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 0);
    let ws = workers(3);
    for w in &ws {
        h.register(w);
    }
    let id = h.submit(&class, b"typed", None);
    // A reveal with no commitment recorded: without a lease, then with a lease only.
    let err = h.reveal(&ws[0], id, b"r").unwrap_err();
    assert_eq!((err.clone(), err.reason()), (Refusal::NoCommitment, ErrorReason::NoCommitment));
    let exp = h.claim(&ws[0], id).unwrap();
    assert_eq!(h.reveal(&ws[0], id, b"r").unwrap_err(), Refusal::NoCommitment);
    // A commitment that arrives once the lease has run out (before a tick reopens the slot).
    h.now = exp;
    let err = h.commit(&ws[0], id, b"late").unwrap_err();
    assert_eq!((err.clone(), err.reason()), (Refusal::LeaseExpired, ErrorReason::LeaseExpired));
    h.tick(0);
    // Too early (a new worker's task waits for its audit replica), then decided: a later
    // message about the task is refused as decided.
    h.claim(&ws[0], id).unwrap();
    h.commit(&ws[0], id, b"r").unwrap();
    assert_eq!(h.reveal(&ws[0], id, b"r").unwrap_err().reason(), ErrorReason::TooEarly);
    h.claim(&ws[2], id).unwrap();
    h.commit(&ws[2], id, b"r").unwrap();
    h.reveal(&ws[0], id, b"r").unwrap();
    h.reveal(&ws[2], id, b"r").unwrap();
    let err = h.claim(&ws[1], id).unwrap_err();
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
    // idempotency key), also after a restart.
    let later = Task { created_at: task.created_at + 5, ..task };
    h.reload();
    let (id3, step) = h.m.submit_task(later, None, h.now).unwrap();
    assert_eq!((id3, step.is_empty()), (id, true));
    let e1 = h.claim(w, id).unwrap();
    let claim = Signed::sign(Claim { task: id, worker: w.public(), claimed_at: h.now }, w, &[0; 32]);
    let (e2, step) = h.m.claim(Verified::check(claim).unwrap(), h.now).unwrap();
    assert_eq!((e1, step.is_empty()), (e2, true));
    h.commit(w, id, b"r").unwrap();
    let salt = salt_for(w, &id);
    let v = commitment_value(&id, &w.public(), &cairn_spec::content_hash(b"r"), &salt);
    let c = Signed::sign(Commitment { task: id, worker: w.public(), commitment: v }, w, &[0; 32]);
    assert!(h.m.commit(Verified::check(c).unwrap(), h.now).unwrap().is_empty());
    // A new worker's task always draws an audit replica (p = 1/streak = 1).
    assert_eq!(h.m.open_task(&id).unwrap().phase, Phase::Commit);
    assert_eq!(h.reveal(w, id, b"r").unwrap_err().code(), 425);
    h.claim(&ws[1], id).unwrap();
    h.commit(&ws[1], id, b"r").unwrap();
    h.reveal(w, id, b"r").unwrap();
    h.reveal(w, id, b"r").unwrap();
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
    let class = exact(1);
    let mut cfg = LifecycleConfig::new(NET, vec![class.clone()]);
    cfg.tunables.pow_difficulty = 0;
    cfg.tunables.audit_min_ppm = 0;
    let coord = key(1000);
    let now = 1_700_000_000;
    let store = Arc::new(MemoryStore::new());
    let mut core =
        cairn_coordinator::core::Core::open(cfg.clone(), coord.clone(), store.clone(), now).unwrap();
    let ws = workers(40);
    let mut reveals = Vec::new();
    for w in &ws {
        let reg = registration(coord.public(), w, now);
        let v = Verified::check(Signed::sign(reg, w, &[0; 32])).unwrap();
        core.apply(|m| Ok(((), m.register(v, now)?))).unwrap();
    }
    for (i, w) in ws.iter().enumerate() {
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
        // New workers are audited: two replicas per task (this worker and the next).
        for w in [w, &ws[(i + 1) % ws.len()]] {
            let c = Verified::check(Signed::sign(
                Claim { task: id, worker: w.public(), claimed_at: now },
                w,
                &[0; 32],
            ))
            .unwrap();
            core.apply(|m| m.claim(c, now)).unwrap();
            let salt = salt_for(w, &id);
            let v = commitment_value(&id, &w.public(), &cairn_spec::content_hash(b"r"), &salt);
            let c = Verified::check(Signed::sign(
                Commitment { task: id, worker: w.public(), commitment: v },
                w,
                &[0; 32],
            ))
            .unwrap();
            core.apply(|m| Ok(((), m.commit(c, now)?))).unwrap();
            let r = Reveal { task: id, worker: w.public(), result: Payload::Inline(b"r".to_vec()), salt };
            reveals.push(Verified::check(Signed::sign(r, w, &[0; 32])).unwrap());
        }
    }
    let (answers, effects) = core.apply_many(reveals, |m, v| Ok(((), m.reveal(v, now)?))).unwrap();
    assert!(answers.iter().all(Result::is_ok));
    let gossiped: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Receipt(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(gossiped.len(), 80);
    assert!(gossiped.iter().all(|r| r.verify()));
    let stored = ls::epoch_receipts(store.as_ref(), 0).unwrap();
    assert_eq!(stored.len(), 80);
    assert!(stored.iter().all(|r| r.verify()));
    // One batch, one signature (SPEC.md §5.7), the one the machine itself would make
    // (deterministic signatures), and what was gossiped is what was stored.
    assert!(stored.iter().all(|r| r.batch.count == 80 && r.signature == stored[0].signature));
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
    for w in &ws {
        assert!(live.balance(&w.public()).is_some_and(|e| e.locked == 200), "two accepted receipts each");
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
    h.claim(&w0, task).unwrap();
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
    h.claim(&w0, task).unwrap();
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
    // Restored from disk, a retried submission is still the same task.
    h.reload();
    let (again, _) = h.m.submit_task(Task { created_at: h.now + 5, ..task }, None, h.now).unwrap();
    assert_eq!(again, id);
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
    h.claim(&ws[0], id).unwrap();
    h.commit(&ws[0], id, b"answer").unwrap();
    // Restart here: the restored task still holds worker 0's commitment (reload compares the
    // restored open tasks with the live ones).
    h.reload();
    let slot = |h: &Harness, w: &SigningKey| h.m.open_task(&id).and_then(|t| t.slot(&w.public()).cloned());
    assert!(slot(&h, &ws[0]).is_some_and(|a| a.commitment.is_some()));
    // The others join (a new worker's streak may draw an audit replica), with a restart after
    // each commitment; then every committed worker reveals and the task is decided.
    for w in &ws[1..] {
        if h.m.open_task(&id).is_some_and(|t| t.phase == Phase::Commit) {
            h.claim(w, id).unwrap();
            h.commit(w, id, b"answer").unwrap();
            h.reload();
        }
    }
    for w in &ws {
        if slot(&h, w).is_some_and(|a| a.commitment.is_some()) {
            h.reveal(w, id, b"answer").unwrap();
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
        let ws = workers(if extra { 4 } else { 3 });
        for w in &ws {
            h.register(w);
        }
        let id = h.submit(&class, b"who answers", None);
        // Everyone who can join commits (a new worker's streak draws an audit replica).
        let mut joined = Vec::new();
        for w in &ws[..3] {
            if h.m.open_task(&id).is_some_and(|t| t.phase == Phase::Commit) {
                h.claim(w, id).unwrap();
                h.commit(w, id, b"answer").unwrap();
                joined.push(w.clone());
            }
        }
        assert!(matches!(h.m.open_task(&id).unwrap().phase, Phase::Reveal { .. }));
        // Only one reveal arrives before the window closes: no majority.
        h.reveal(&joined[0], id, b"answer").unwrap();
        h.tick(u64::from(class.reveal_secs) + 1);
        if joined.len() < ws.len() {
            // A worker not on the task exists: the task asks it (escalation).
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
    // A worker refused a full task hears of its next free slot from gossip at once, instead of
    // waiting for the node's periodic re-announcement (found by the end-to-end bench: audit
    // replicas waited up to 10 s).
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
    h.claim(&ws[0], id).unwrap();
    assert!(matches!(h.claim(&ws[1], id), Err(Refusal::Conflict(_))), "full");
    assert_eq!(announced(&mut h, id, &mut seen), 0);
    // A new worker's streak draws an audit replica (p = 1): its slot is announced.
    h.commit(&ws[0], id, b"A").unwrap();
    assert_eq!(h.m.open_task(&id).unwrap().wanted, 2);
    assert_eq!(announced(&mut h, id, &mut seen), 1, "the audit replica's slot");
    h.claim(&ws[1], id).unwrap();
    h.commit(&ws[1], id, b"B").unwrap();
    assert_eq!(announced(&mut h, id, &mut seen), 0, "every slot is held");
    // Disagreement escalates: the new slot is announced.
    h.reveal(&ws[0], id, b"A").unwrap();
    h.reveal(&ws[1], id, b"B").unwrap();
    assert_eq!(h.m.open_task(&id).unwrap().phase, Phase::Commit);
    assert_eq!(announced(&mut h, id, &mut seen), 1, "the escalation's slot");
    // An expired lease gives its slot back: announced when the tick finds it.
    let exp = h.claim(&ws[2], id).unwrap();
    assert_eq!(announced(&mut h, id, &mut seen), 0);
    h.tick(exp - h.now);
    assert_eq!(announced(&mut h, id, &mut seen), 1, "the expired lease's slot");
    h.claim(&ws[3], id).unwrap();
    h.commit(&ws[3], id, b"A").unwrap();
    h.reveal(&ws[3], id, b"A").unwrap();
    assert!(matches!(h.final_task(&id).phase, Phase::Decided { .. }));
    assert_eq!(announced(&mut h, id, &mut seen), 0, "a decided task is not announced");
}

#[test]
fn no_audit_replica_when_no_other_worker_can_take_it() {
    // A network of one worker: an audit slot could never be filled and the task would wait
    // in the commit phase for ever. With a second worker the same draw adds the slot.
    let class = exact(1);
    for n in [1, 2] {
        let mut h = Harness::new(vec![class.clone()], |c| c.tunables.audit_min_ppm = 1_000_000);
        let ws = workers(n);
        for w in &ws {
            h.register(w);
        }
        let id = h.submit(&class, b"alone", None);
        h.claim(&ws[0], id).unwrap();
        h.commit(&ws[0], id, b"ALONE").unwrap();
        let rec = h.m.open_task(&id).unwrap();
        if n == 1 {
            assert!(matches!(rec.phase, Phase::Reveal { .. }), "{:?}", rec.phase);
            assert_eq!(rec.wanted, 1);
            h.reveal(&ws[0], id, b"ALONE").unwrap();
            assert!(matches!(h.final_task(&id).phase, Phase::Decided { .. }));
        } else {
            assert_eq!((rec.phase.clone(), rec.wanted), (Phase::Commit, 2), "audited");
        }
    }
}

/// A store whose writes can be held back (while `gate` is locked) and made to fail.
struct GatedStore {
    inner: MemoryStore,
    gate: std::sync::Mutex<()>,
    fail: std::sync::atomic::AtomicBool,
}

impl KvStore for GatedStore {
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(t, key)
    }
    fn write(&self, batch: &cairn_coordinator::store::Batch) -> Result<(), StoreError> {
        let _held = self.gate.lock().unwrap();
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
    use cairn_coordinator::core::{Core, CoreError};
    use std::sync::Arc;
    let mut cfg = LifecycleConfig::new(NET, vec![exact(1)]);
    cfg.tunables.pow_difficulty = 0;
    let coord = key(1000);
    let now = 1_700_000_000;
    let store = Arc::new(GatedStore {
        inner: MemoryStore::new(),
        gate: std::sync::Mutex::new(()),
        fail: false.into(),
    });
    let mut core = Core::open(cfg, coord.clone(), store.clone(), now).unwrap();
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
