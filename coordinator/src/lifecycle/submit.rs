//! Tasks coming in: a requester's task (built from what the API received), and the canaries
//! mixed in among them, checked against their class and priced.
//!
//! Owns what makes a task acceptable, how a request becomes a task, when a canary is due, what
//! it looks like and costs, and a task's first announcement. Must never draw randomness of its
//! own: the node supplies every draw, and what workers must not predict is keyed by the
//! coordinator's secret seed.

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

/// Most canaries made due and not yet released.
const MAX_CANARIES_WAITING: u64 = 64;

/// A canary the operator configured: a task with a known answer, indistinguishable from
/// others to workers. Each is used once.
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

impl Machine {
    /// The (requester, nonce) a request is accepted under, and its task carries: the same
    /// request always maps to the same key (its idempotency key, checked against the stored
    /// submissions before the machine sees it). The nonce is keyed by the coordinator's
    /// secret: requesters' own nonces (often 0, 1, 2, …) would otherwise set their tasks apart
    /// from canaries, whose nonces are drawn.
    pub fn submission_key(&self, r: &TaskRequest) -> (PubKey, u64) {
        let requester = r.requester.unwrap_or(self.me);
        let mut pre = b"cairn/request-nonce".to_vec();
        pre.extend_from_slice(&self.seed);
        pre.extend_from_slice(requester.as_bytes());
        pre.extend_from_slice(&r.nonce.to_be_bytes());
        let d = sha256(&pre).0;
        (requester, u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]))
    }

    /// Accepts a requester's task. `draw` is randomness the node supplies: whether a canary
    /// becomes due with this request (probability `1 / canary_every`), and how long after it
    /// the canary is released (1 to `canary_spread_secs` seconds, by `release_canaries`). A due canary
    /// takes the next unused entry of the configured pool (each input is used once, so no input
    /// repeats for a worker to remember; the pool is append-only), made due only by a request
    /// of that entry's class and units, whose requester and budget it takes, and a nonce only the
    /// coordinator can derive: no field of its announcement, nor its place among the announcements, sets it
    /// apart from the tasks around it.
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
        let (requester, nonce) = self.submission_key(&r);
        let task = Task {
            network: self.cfg.network,
            coordinator: self.me,
            class,
            requester,
            nonce,
            units: r.units,
            budget_sats: r.budget_sats,
            created_at: now,
            input: r.input,
        };
        let (id, step) = self.submit(task, r.blob, r.canary, now)?;
        if step.is_empty() {
            // A retry of a request already accepted: the same task, nothing new to mix in.
            return Ok((id, step));
        }
        let every = self.cfg.canary_every;
        let waiting = self.meta.canary_due.len() as u64;
        // Only a request of the next canary's class and units makes it due: it takes that
        // request's requester and budget, which would set it apart under another class or size.
        let next = usize::try_from(self.meta.canaries_used.saturating_add(waiting))
            .ok()
            .and_then(|i| self.cfg.canaries.get(i));
        let alike = next.is_some_and(|c| {
            c.units == r.units && self.classes.get(&class).is_some_and(|k| k.name == c.class)
        });
        if every > 0 && alike && waiting < MAX_CANARIES_WAITING && draw[0] % every == 0 {
            let spread = self.cfg.tunables.canary_spread_secs.max(1);
            let at = now.saturating_add(1).saturating_add(draw[1] % spread);
            self.meta.canary_due.push((at, requester, r.budget_sats));
            // The counters changed after `submit` wrote them: write them again.
            return Ok((id, step.with_meta(&self.meta)));
        }
        Ok((id, step))
    }

    /// Releases the canaries due at `now`. The node calls it from a timer of its own, at
    /// random moments: canaries announced at the tick's fixed phase in the second would stand
    /// out among requesters' tasks, which arrive at any moment.
    pub fn release_canaries(&mut self, now: u64) -> Step {
        let mut step = Step::default();
        let due: Vec<(PubKey, u64)> =
            self.meta.canary_due.iter().filter(|(at, ..)| *at <= now).map(|(_, r, b)| (*r, *b)).collect();
        if due.is_empty() {
            return step;
        }
        self.meta.canary_due.retain(|(at, ..)| *at > now);
        for (requester, budget_sats) in due {
            self.release_canary(requester, budget_sats, now, &mut step);
        }
        step.changes.push(Change::Meta(Box::new(self.meta.clone())));
        self.finish(step)
    }

    fn release_canary(&mut self, requester: PubKey, budget_sats: u64, now: u64, step: &mut Step) {
        let Some(c) =
            usize::try_from(self.meta.canaries_used).ok().and_then(|i| self.cfg.canaries.get(i)).cloned()
        else {
            return;
        };
        self.meta.canaries_used += 1;
        let mut pre = b"cairn/canary-nonce".to_vec();
        pre.extend_from_slice(&self.seed);
        pre.extend_from_slice(&self.meta.canaries_used.to_be_bytes());
        pre.extend_from_slice(&cairn_spec::content_hash(&c.input).0);
        let d = sha256(&pre).0;
        let nonce = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        // A canary that cannot be submitted (its class is gone) is skipped.
        if let Ok((_, s)) = self.submit_canary(&c, nonce, requester, budget_sats, now) {
            step.extend(s);
        }
    }

    /// Pool entries not used yet: once none is left, no canary is mixed in (the operator adds
    /// fresh ones; an input used twice could be remembered).
    pub fn canaries_left(&self) -> u64 {
        (self.cfg.canaries.len() as u64).saturating_sub(self.meta.canaries_used)
    }

    fn submit_canary(
        &mut self,
        c: &Canary,
        nonce: u64,
        requester: PubKey,
        budget_sats: u64,
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
            requester,
            nonce,
            units: c.units,
            budget_sats: cost.max(budget_sats),
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
        if self.open.contains_key(&id) || self.finished.contains_key(&id) {
            return Ok((id, Step::default()));
        }
        // An epoch waiting for its beacon cannot close (SPEC.md §12.1); once it holds as many
        // receipts as an epoch may, new work waits for Bitcoin rather than growing it.
        if !self.armed() && self.meta.open_receipts >= self.cfg.tunables.epoch_max_receipts {
            return Err(Refusal::Unavailable(
                "the open epoch is full and waits for its Bitcoin beacon; submit again later",
            ));
        }
        // Likewise the first epoch waits for the anchor's genesis output (SPEC.md §7.1).
        if !self.bound() && self.meta.open_receipts >= self.cfg.tunables.epoch_max_receipts {
            return Err(Refusal::Unavailable(
                "the first epoch is full and waits for the anchor address to be funded; submit again later",
            ));
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
        let mut effects = vec![Effect::Announce(Box::new(ann.clone()))];
        effects.extend(offers(rec, ann));
        let step = Step { changes, effects, sync: true };
        Ok((id, self.finish(step)))
    }
}
