//! The scripted driver of the lifecycle machine shared by the lifecycle and attack tests:
//! every step is persisted to an in-memory store exactly as the node does, and the machine can
//! be restored from the store at any point to prove the persisted state is complete.
#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]
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

pub const NET: Network = Network::Regtest;
pub const ADDR: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

pub fn key(i: u32) -> SigningKey {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&(i + 1).to_be_bytes());
    b[31] = 7;
    SigningKey::from_secret_bytes(b).unwrap()
}

pub fn class(name: &str, rule: ComparisonRule, replication: u8) -> TaskClass {
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
        objective: Default::default(),
    }
}

pub fn exact(replication: u8) -> TaskClass {
    class("exact", ComparisonRule::ExactHash, replication)
}

pub fn cosine(replication: u8) -> TaskClass {
    class("embed", ComparisonRule::Cosine { min_ppb: PPB / 100 * 99 }, replication)
}

pub struct Harness {
    pub m: Machine,
    pub store: MemoryStore,
    pub cfg: LifecycleConfig,
    pub coord: SigningKey,
    pub now: u64,
    pub nonce: u64,
    pub effects: Vec<Effect>,
}

impl Harness {
    pub fn new(classes: Vec<TaskClass>, tweak: impl FnOnce(&mut LifecycleConfig)) -> Self {
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

    pub fn apply(&mut self, step: Step) {
        self.store.write(&ls::batch_for(&step).unwrap()).unwrap();
        self.effects.extend(step.effects);
        self.m.check_invariants().unwrap();
    }

    /// Restores the machine from the store and checks it agrees with the live one.
    pub fn reload(&mut self) {
        let snap = ls::load(&self.store).unwrap().expect("state stored");
        let m = Machine::restore(self.cfg.clone(), self.coord.clone(), snap).unwrap();
        assert_eq!(m.meta(), self.m.meta());
        assert_eq!(m.open_tasks().collect::<Vec<_>>(), self.m.open_tasks().collect::<Vec<_>>());
        assert_eq!(m.workers().collect::<Vec<_>>(), self.m.workers().collect::<Vec<_>>());
        self.m = m;
    }

    pub fn register(&mut self, w: &SigningKey) {
        let mut reg = registration(self.coord.public(), w, self.now);
        assert!(reg.solve_pow(4, 1 << 20));
        let step =
            self.m.register(Verified::check(Signed::sign(reg, w, &[0; 32])).unwrap(), self.now).unwrap();
        self.apply(step);
    }

    pub fn submit(&mut self, class: &TaskClass, input: &[u8], canary: Option<Vec<u8>>) -> Hash32 {
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

    pub fn claim(&mut self, w: &SigningKey, task: Hash32) -> Result<u64, Refusal> {
        let c = Claim { task, worker: w.public(), claimed_at: self.now };
        let (exp, step) = self.m.claim(Verified::check(Signed::sign(c, w, &[0; 32]))?, self.now)?;
        self.apply(step);
        Ok(exp)
    }

    pub fn commit(&mut self, w: &SigningKey, task: Hash32, result: &[u8]) -> Result<[u8; 32], Refusal> {
        let salt = salt_for(w, &task);
        let v = commitment_value(&task, &w.public(), &cairn_spec::content_hash(result), &salt);
        self.commit_value(w, task, v)?;
        Ok(salt)
    }

    pub fn commit_value(&mut self, w: &SigningKey, task: Hash32, v: Hash32) -> Result<(), Refusal> {
        let c = Commitment { task, worker: w.public(), commitment: v };
        let step = self.m.commit(Verified::check(Signed::sign(c, w, &[0; 32]))?, self.now)?;
        self.apply(step);
        Ok(())
    }

    pub fn reveal(&mut self, w: &SigningKey, task: Hash32, result: &[u8]) -> Result<(), Refusal> {
        self.reveal_salted(w, task, result, salt_for(w, &task))
    }

    pub fn reveal_salted(
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

    pub fn tick(&mut self, secs: u64) {
        self.now += secs;
        let step = self.m.tick(self.now);
        self.apply(step);
    }

    /// Every worker in `ws` asks for the task (so each is ready to be drawn), the coordinator
    /// draws its free slots among the ready workers at the next tick, and the drawn ones take
    /// their offers. Returns the indices in `ws` of the workers holding a lease or a
    /// commitment on the task.
    pub fn take(&mut self, task: Hash32, ws: &[SigningKey]) -> Vec<usize> {
        self.take_asking(task, ws, &|_| true)
    }

    /// As `take`, but only the workers `asks` names ask (become ready); any worker of `ws`
    /// drawn takes its offer.
    pub fn take_asking(
        &mut self,
        task: Hash32,
        ws: &[SigningKey],
        asks: &dyn Fn(usize) -> bool,
    ) -> Vec<usize> {
        for (i, w) in ws.iter().enumerate() {
            if asks(i) {
                let _ = self.claim(w, task);
            }
        }
        self.tick(0);
        let index: std::collections::HashMap<PubKey, usize> =
            ws.iter().enumerate().map(|(i, w)| (w.public(), i)).collect();
        let offered: Vec<usize> = self
            .m
            .open_task(&task)
            .map(|t| {
                t.assignments
                    .iter()
                    .filter(|a| a.offered)
                    .filter_map(|a| index.get(&a.worker).copied())
                    .collect()
            })
            .unwrap_or_default();
        for i in offered {
            self.claim(&ws[i], task).unwrap();
        }
        let Some(t) = self.m.open_task(&task) else { return Vec::new() };
        let mut held: Vec<usize> = t
            .assignments
            .iter()
            .filter(|a| !a.offered && a.verdict.is_none())
            .filter_map(|a| index.get(&a.worker).copied())
            .collect();
        held.sort_unstable();
        held
    }

    /// Runs tasks of `class` that `workers` all answer alike until each has `locked` sats of
    /// locked credit: a network that ran honestly before the test (keys with stake are not
    /// light, SPEC.md §12.4).
    pub fn build_stake(&mut self, class: &TaskClass, workers: &[SigningKey], locked: u64) {
        let mut warm = 0u32;
        while workers.iter().any(|w| self.m.balance(&w.public()).map_or(0, |e| e.locked) < locked) {
            warm += 1;
            assert!(warm < 1000, "workers never built stake");
            let id = self.submit(class, &[b"warm-up".as_slice(), &warm.to_be_bytes()].concat(), None);
            self.run_task(id, workers, &|_| b"right".to_vec());
        }
    }

    /// Runs a task to its end with `answers` (worker index → result): every admitted worker
    /// asks for it, the drawn ones commit and reveal (audits and escalations draw further
    /// workers).
    pub fn run_task(&mut self, task: Hash32, workers: &[SigningKey], answer: &dyn Fn(usize) -> Vec<u8>) {
        self.run_task_asking(task, workers, &|_| true, answer)
    }

    /// As `run_task`, but only the workers `asks` names ask for the task; any worker of
    /// `workers` drawn for it works it.
    pub fn run_task_asking(
        &mut self,
        task: Hash32,
        workers: &[SigningKey],
        asks: &dyn Fn(usize) -> bool,
        answer: &dyn Fn(usize) -> Vec<u8>,
    ) {
        let mut committed: Vec<usize> = Vec::new();
        for _round in 0..40 {
            let Some(rec) = self.m.open_task(&task).cloned() else { return };
            match rec.phase {
                Phase::Commit => {
                    let banned: Vec<bool> = workers
                        .iter()
                        .map(|w| self.m.worker(&w.public()).is_none_or(|r| r.banned.is_some()))
                        .collect();
                    let held = self.take_asking(task, workers, &|i| asks(i) && !banned[i]);
                    if held.iter().all(|i| committed.contains(i)) {
                        // Nobody new was drawn (workers cooling down after a lapse): time passes.
                        self.tick(10);
                    }
                    for idx in held {
                        if !committed.contains(&idx) {
                            committed.push(idx);
                            self.commit(&workers[idx], task, &answer(idx)).unwrap();
                        }
                    }
                }
                Phase::Reveal { .. } => {
                    for &i in &committed {
                        let w = &workers[i];
                        let slot = rec.slot(&w.public());
                        if slot.is_some_and(|s| s.revealed.is_none() && s.verdict.is_none()) {
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

    pub fn final_task(&self, id: &Hash32) -> cairn_coordinator::lifecycle::TaskRecord {
        ls::task(&self.store, id).unwrap().unwrap()
    }
}

/// A registration of `w` at `coordinator` on regtest, without work or bond.
pub fn registration(coordinator: PubKey, w: &SigningKey, created_at: u64) -> Registration {
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

pub fn salt_for(w: &SigningKey, task: &Hash32) -> [u8; 32] {
    let mut s = task.0;
    s[0] ^= w.public().as_bytes()[0];
    s[31] = 0x5a;
    s
}

pub fn vector(seed: u32, noise: f32) -> Vec<u8> {
    (0..32u32)
        .map(|i| ((seed * 31 + i * 7) % 17) as f32 - 8.0 + noise * (((i * 13 + seed) % 5) as f32 - 2.0))
        .flat_map(|x| x.to_le_bytes())
        .collect()
}

pub fn workers(n: u32) -> Vec<SigningKey> {
    (0..n).map(key).collect()
}
