//! Tasks coming in: a requester's task or a canary, checked against its class and priced.
//!
//! Owns what makes a task acceptable and its first announcement. Must never choose canaries
//! or draw randomness: the node supplies both.

use super::*;

impl Machine {
    /// Accepts a task (from the API), or a canary with its known answer (from the node's
    /// canary scheduler). Returns the task id; submitting the same task twice is a no-op.
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
        };
        self.announced.insert(id, now);
        let ann = self.sign(TaskAnnouncement { task, announced_at: now });
        self.open.insert(id, rec.clone());
        self.meta.counts.submitted += 1;
        let mut changes = Vec::with_capacity(2);
        if let (Some(bytes), Payload::Blob { hash, .. }) = (blob, &rec.task.input) {
            changes.push(Change::Blob { hash: *hash, bytes });
        }
        changes.push(Change::Task(Box::new(rec)));
        let step = Step { changes, effects: vec![Effect::Announce(Box::new(ann))], sync: true };
        Ok((id, self.finish(step)))
    }
}
