//! Tasks coming in: a requester's task (built from what the API received), and the canaries
//! mixed in among them, checked against their class and priced.
//!
//! Owns what makes a task acceptable, how a request becomes a task, when a canary is due and
//! what it costs, and a task's first announcement. Must never draw randomness: the node
//! supplies every draw.

use super::*;

/// A requester's task as the API received it, its shape already checked: the class by name or
/// by id (hex); the coordinator itself is the requester unless another key is named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRequest {
    /// Class name or id.
    pub class: String,
    /// The requester, when not the coordinator.
    pub requester: Option<PubKey>,
    /// Idempotency nonce (the node draws one when the request named none).
    pub nonce: u64,
    /// Units of work.
    pub units: u32,
    /// Budget offered.
    pub budget_sats: u64,
    /// The input as it travels.
    pub input: Payload,
    /// The blob's bytes, when the input is a blob.
    pub blob: Option<Vec<u8>>,
    /// A canary's known answer, when the operator submits one by hand.
    pub canary: Option<Vec<u8>>,
}

/// A canary the operator configured: a task with a known answer, indistinguishable from
/// others to workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canary {
    /// Class name.
    pub class: String,
    /// Input bytes.
    pub input: Vec<u8>,
    /// The known answer (canonical result).
    pub answer: Vec<u8>,
    /// Units of work.
    pub units: u32,
}

/// What a canary copies from the request it follows, so the two look alike to workers.
struct Follows {
    requester: PubKey,
    budget_sats: u64,
}

impl Machine {
    /// Accepts a requester's task and, when one is due (after every `canary_every` requests
    /// that created a task), a canary from the configured pool in the same step. `draw` is
    /// randomness the node supplies: which canary, and its nonce. A canary takes the requester
    /// and time of the request it follows, a random nonce, and that request's budget when it
    /// covers the canary's cost, so no field of its announcement sets it apart from the tasks
    /// around it. It is still announced right after the request it follows, and its input
    /// comes from a fixed pool (issue 24 makes canaries indistinguishable).
    pub fn submit_request(
        &mut self,
        r: TaskRequest,
        draw: [u64; 2],
        now: u64,
    ) -> Result<(Hash32, Step), Refusal> {
        let class = self
            .classes
            .iter()
            .find(|(id, c)| c.name == r.class || id.to_hex() == r.class)
            .map(|(id, _)| *id)
            .ok_or(Refusal::NotFound("task class"))?;
        let task = Task {
            network: self.cfg.network,
            coordinator: self.me,
            class,
            requester: r.requester.unwrap_or(self.me),
            nonce: r.nonce,
            units: r.units,
            budget_sats: r.budget_sats,
            created_at: now,
            input: r.input,
        };
        let requester = task.requester;
        let (id, mut step) = self.submit(task, r.blob, r.canary, now)?;
        if step.is_empty() {
            // A retry of a request already accepted: the same task, nothing new to mix in.
            return Ok((id, step));
        }
        self.requests += 1;
        let every = self.cfg.canary_every;
        let pool = self.cfg.canaries.len() as u64;
        if every > 0 && pool > 0 && self.requests % every == 0 {
            let pick = usize::try_from(draw[0] % pool).ok().and_then(|i| self.cfg.canaries.get(i)).cloned();
            if let Some(c) = pick {
                // A canary that cannot be submitted (its class is gone) is skipped: the request
                // it follows stands.
                let follows = Follows { requester, budget_sats: r.budget_sats };
                if let Ok((_, s)) = self.submit_canary(&c, draw[1], follows, now) {
                    step.extend(s);
                }
            }
        }
        Ok((id, step))
    }

    fn submit_canary(
        &mut self,
        c: &Canary,
        nonce: u64,
        follows: Follows,
        now: u64,
    ) -> Result<(Hash32, Step), Refusal> {
        let (class, cost) = self
            .classes
            .iter()
            .find(|(_, k)| k.name == c.class)
            .map(|(id, k)| {
                let cost = k
                    .reward_per_unit
                    .saturating_mul(u64::from(c.units))
                    .saturating_mul(u64::from(k.replication));
                (*id, cost)
            })
            .ok_or(Refusal::NotFound("task class"))?;
        let task = Task {
            network: self.cfg.network,
            coordinator: self.me,
            class,
            requester: follows.requester,
            nonce,
            units: c.units,
            budget_sats: cost.max(follows.budget_sats),
            created_at: now,
            input: Payload::Inline(c.input.clone()),
        };
        self.submit(task, None, Some(c.answer.clone()), now)
    }

    /// Accepts a task built by the caller, with a canary's known answer when it is one (tests
    /// and benchmarks drive the machine this way; the node goes through `submit_request`).
    /// Returns the task id; submitting the same task twice is a no-op.
    pub fn submit_task(
        &mut self,
        task: Task,
        canary: Option<Vec<u8>>,
        now: u64,
    ) -> Result<(Hash32, Step), Refusal> {
        self.submit(task, None, canary, now)
    }

    /// Accepts a task whose input is a content-addressed blob, with the blob's bytes (kept in
    /// the `blobs` table in the same step, served to workers by `GetBlob`).
    pub fn submit_task_with_blob(
        &mut self,
        task: Task,
        blob: Vec<u8>,
        canary: Option<Vec<u8>>,
        now: u64,
    ) -> Result<(Hash32, Step), Refusal> {
        self.submit(task, Some(blob), canary, now)
    }

    pub(super) fn submit(
        &mut self,
        task: Task,
        blob: Option<Vec<u8>>,
        canary: Option<Vec<u8>>,
        now: u64,
    ) -> Result<(Hash32, Step), Refusal> {
        if task.network != self.cfg.network {
            return Err(invalid(format!(
                "task is for {}, this node runs {}",
                task.network, self.cfg.network
            )));
        }
        if task.coordinator != self.me {
            return Err(invalid("task names another coordinator"));
        }
        let class = self.classes.get(&task.class).ok_or(Refusal::NotFound("task class"))?;
        match (&task.input, &blob) {
            (Payload::Inline(_), None) => {}
            (Payload::Blob { hash, size }, Some(bytes)) => {
                if bytes.len() as u64 != *size || cairn_spec::content_hash(bytes) != *hash {
                    return Err(invalid("blob bytes do not match the input's content hash and size"));
                }
            }
            (Payload::Blob { .. }, None) => return Err(invalid("a blob input needs its bytes")),
            (Payload::Inline(_), Some(_)) => return Err(invalid("an inline input carries its bytes itself")),
        }
        if task.input.size() > u64::from(class.max_input_bytes) {
            return Err(invalid(format!(
                "input is {} bytes; class {} accepts at most {}",
                task.input.size(),
                class.name,
                class.max_input_bytes
            )));
        }
        let cost = class
            .reward_per_unit
            .checked_mul(u64::from(task.units))
            .and_then(|x| x.checked_mul(u64::from(class.replication)))
            .ok_or_else(|| invalid("reward overflows"))?;
        if task.budget_sats < cost {
            return Err(invalid(format!(
                "budget {} sats is below {cost} (units × reward per unit × replication)",
                task.budget_sats
            )));
        }
        if let Some(expected) = &canary {
            if !well_formed(&class.rule, expected) {
                return Err(invalid("canary answer is not a well-formed result for the class"));
            }
        }
        // (requester, nonce) is the submission's idempotency key: a retry after a lost answer
        // (with a later created_at) is the same submission, not a second task.
        if let Some(id) = self.nonces.get(&(task.requester, task.nonce)) {
            return Ok((*id, Step::default()));
        }
        let id = task.id();
        if self.open.contains_key(&id) || self.finished.contains(&id) {
            return Ok((id, Step::default()));
        }
        self.nonces.insert((task.requester, task.nonce), id);
        let rec = TaskRecord {
            id,
            task: task.clone(),
            accepted_at: now,
            canary,
            phase: Phase::Commit,
            wanted: class.replication,
            audit_drawn: false,
            escalations: 0,
            assignments: Vec::new(),
            declined: Vec::new(),
        };
        self.announced.insert(id, now);
        let ann = self.sign(TaskAnnouncement { task, announced_at: now });
        self.open.insert(id, rec);
        // Its slots are drawn among the workers ready for its class before anyone hears of it;
        // slots left when too few are ready are drawn by a later tick.
        self.fill_slots(&id, now);
        self.meta.counts.submitted += 1;
        let mut changes = Vec::with_capacity(3);
        let Some(rec) = self.open.get(&id) else { return Err(Refusal::NotFound("task")) };
        if let (Some(bytes), Payload::Blob { hash, .. }) = (blob, &rec.task.input) {
            changes.push(Change::Blob { hash: *hash, bytes });
        }
        changes.push(Change::Accepted { requester: rec.task.requester, nonce: rec.task.nonce, task: id });
        changes.push(Change::Task(Box::new(rec.clone())));
        let step = Step { changes, effects: vec![Effect::Announce(Box::new(ann))], sync: true };
        Ok((id, self.finish(step)))
    }
}
