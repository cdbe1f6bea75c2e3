//! Reveals held until their task's reveal window opens: a reveal that arrives while another
//! replica has not committed yet is kept unanswered, then decided the moment the last
//! commitment is on disk (the machine's `RevealsOpen` effect), instead of being refused
//! `too_early` and polled for again. A held reveal whose hold ends first (at most
//! [`HOLD_MS`], never past its request's deadline) is refused `too_early`, as before.
//!
//! A held reveal is never missed by its release because a window opens only on a commit,
//! and a commit goes through the same ordered pipeline as the reveal: the answerer holds a
//! group's too-early reveals before it performs that group's effects. Anything else that
//! could open a window (a tick, a report) would have to release after holding, too.
//!
//! Owns the holding and its bounds. Must never decide a reveal itself: a released reveal
//! goes through the same check → decide → write → answer pipeline as any request, and a
//! held one is not accepted (a crash loses it; the worker asks again).

use std::collections::HashMap;

use cairn_p2p::Peer;
use cairn_spec::{Hash32, PubKey, Request, RequestBody};

/// Longest a reveal is held, in milliseconds: well inside a worker's request timeout (10 s).
pub const HOLD_MS: u64 = 5_000;

/// A held reveal is released or refused this long before its request's deadline.
pub const DEADLINE_MARGIN_MS: u64 = 1_500;

/// Most reveals held at once; beyond it a too-early reveal is refused at once. Well below
/// the p2p layer's bound on unanswered requests, so holding never makes the node busy.
pub const MAX_HELD: usize = 1024;

/// Most reveals held for one worker: one worker cannot take the pool from others, nor hold
/// many of its own connection's streams (libp2p allows 100 at once).
pub const MAX_HELD_PER_WORKER: usize = 16;

/// What a reveal needs to be tried again: its task, sender and request, and when its hold
/// ends (set once, at its first arrival).
#[derive(Clone, Debug)]
pub(super) struct Retry {
    pub(super) task: Hash32,
    pub(super) worker: PubKey,
    pub(super) from: Peer,
    pub(super) request: Request,
    pub(super) until_ms: u64,
}

impl Retry {
    /// For a reveal request arriving at `now_ms`; `None` for anything else.
    pub(super) fn of(from: &Peer, request: &Request, now_ms: u64) -> Option<Retry> {
        let RequestBody::Reveal(r) = &request.body else { return None };
        let until_ms =
            now_ms.saturating_add(HOLD_MS).min(request.deadline_ms.saturating_sub(DEADLINE_MARGIN_MS));
        Some(Retry {
            task: r.body.task,
            worker: r.body.worker,
            from: *from,
            request: request.clone(),
            until_ms,
        })
    }
}

/// Reveals waiting for their tasks' windows, each with what answers it (`R`: the p2p
/// layer's reply token).
pub(super) struct Held<R> {
    by_task: HashMap<Hash32, Vec<(Retry, R)>>,
    per_worker: HashMap<PubKey, usize>,
    count: usize,
}

impl<R> Default for Held<R> {
    fn default() -> Self {
        Held { by_task: HashMap::new(), per_worker: HashMap::new(), count: 0 }
    }
}

impl<R> Held<R> {
    /// Holds a too-early reveal. Hands back a reply to be answered now (`too_early`): this
    /// one when it may not be held (its hold is over, or [`MAX_HELD`] are held, or
    /// [`MAX_HELD_PER_WORKER`] of its worker's), or the one it replaces (the same worker's
    /// earlier reveal for the same task: one is held per task and worker).
    pub(super) fn hold(&mut self, retry: Retry, reply: R, now_ms: u64) -> Option<R> {
        if now_ms >= retry.until_ms {
            return Some(reply);
        }
        let slot = self.by_task.entry(retry.task).or_default();
        if let Some(same) = slot.iter_mut().find(|(r, _)| r.worker == retry.worker) {
            let (_, old) = std::mem::replace(same, (retry, reply));
            return Some(old);
        }
        let mine = self.per_worker.get(&retry.worker).copied().unwrap_or(0);
        if self.count >= MAX_HELD || mine >= MAX_HELD_PER_WORKER {
            if slot.is_empty() {
                self.by_task.remove(&retry.task);
            }
            return Some(reply);
        }
        *self.per_worker.entry(retry.worker).or_default() += 1;
        self.count += 1;
        slot.push((retry, reply));
        None
    }

    fn forget(&mut self, gone: &[(Retry, R)]) {
        for (r, _) in gone {
            if let Some(n) = self.per_worker.get_mut(&r.worker) {
                *n -= 1;
                if *n == 0 {
                    self.per_worker.remove(&r.worker);
                }
            }
        }
        self.count -= gone.len();
    }

    /// Everything held, to be answered now (the node is stopping).
    pub(super) fn drain(&mut self) -> Vec<(Retry, R)> {
        let out: Vec<_> = self.by_task.drain().flat_map(|(_, v)| v).collect();
        self.forget(&out);
        out
    }

    /// The reveals held for `task`, to be tried again now that its reveals are open.
    pub(super) fn release(&mut self, task: &Hash32) -> Vec<(Retry, R)> {
        let out = self.by_task.remove(task).unwrap_or_default();
        self.forget(&out);
        out
    }

    /// The reveals whose hold is over at `now_ms`, to be refused `too_early`.
    pub(super) fn expired(&mut self, now_ms: u64) -> Vec<(Retry, R)> {
        let mut out = Vec::new();
        self.by_task.retain(|_, v| {
            let (gone, kept): (Vec<_>, Vec<_>) = v.drain(..).partition(|(r, _)| now_ms >= r.until_ms);
            out.extend(gone);
            *v = kept;
            !v.is_empty()
        });
        self.forget(&out);
        out
    }

    /// How many are held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cairn_spec::{Reveal, Signed, SigningKey};

    fn reveal(key: &SigningKey, task: u8, deadline_ms: u64) -> (Peer, Request) {
        let body = Reveal {
            worker: key.public(),
            task: Hash32([task; 32]),
            result: cairn_spec::Payload::Inline(b"r".to_vec()),
            salt: [0; 32],
        };
        let req =
            Request { id: 1, deadline_ms, body: RequestBody::Reveal(Signed::sign(body, key, &[0; 32])) };
        (Peer::for_key(key).unwrap(), req)
    }

    #[test]
    fn a_reveal_is_held_until_its_window_opens_or_its_hold_ends() {
        let k = SigningKey::from_secret_bytes([7; 32]).unwrap();
        let now = 1_000_000;
        let (from, req) = reveal(&k, 1, now + 10_000);
        let r = Retry::of(&from, &req, now).unwrap();
        assert_eq!(r.until_ms, now + HOLD_MS, "held at most HOLD_MS");
        let mut held = Held::default();
        assert!(held.hold(r, 1u32, now).is_none());
        let (from2, req2) = reveal(&k, 2, now + 10_000);
        assert!(held.hold(Retry::of(&from2, &req2, now).unwrap(), 2, now).is_none());
        assert_eq!(held.len(), 2);
        // Task 1's window opens: only its reveal comes back.
        let out = held.release(&Hash32([1; 32]));
        assert_eq!(out.iter().map(|(_, r)| *r).collect::<Vec<_>>(), vec![1]);
        assert!(held.release(&Hash32([1; 32])).is_empty());
        // Task 2's hold ends: refused, not kept.
        assert!(held.expired(now + HOLD_MS - 1).is_empty());
        assert_eq!(held.expired(now + HOLD_MS).len(), 1);
        assert_eq!(held.len(), 0);
    }

    #[test]
    fn holds_are_bounded_by_count_and_by_the_request_deadline() {
        let k = SigningKey::from_secret_bytes([9; 32]).unwrap();
        let now = 5_000_000;
        // A deadline 2 s away: held until 1.5 s before it, not for HOLD_MS.
        let (from, req) = reveal(&k, 3, now + 2_000);
        assert_eq!(Retry::of(&from, &req, now).unwrap().until_ms, now + 2_000 - DEADLINE_MARGIN_MS);
        // A deadline already too near: not held at all.
        let (from, req) = reveal(&k, 3, now + 1_000);
        let r = Retry::of(&from, &req, now).unwrap();
        let mut held = Held::default();
        assert_eq!(held.hold(r, 0u32, now), Some(0));
        // One per task and worker: a second reveal replaces the first, which is answered.
        let (from, req) = reveal(&k, 4, now + 60_000);
        assert!(held.hold(Retry::of(&from, &req, now).unwrap(), 1, now).is_none());
        assert_eq!(held.hold(Retry::of(&from, &req, now).unwrap(), 2, now), Some(1));
        assert_eq!(held.len(), 1);
        // At most MAX_HELD_PER_WORKER of one worker's.
        for t in 5..(4 + MAX_HELD_PER_WORKER as u8) {
            let (from, req) = reveal(&k, t, now + 60_000);
            assert!(held.hold(Retry::of(&from, &req, now).unwrap(), u32::from(t), now).is_none());
        }
        let (from, req) = reveal(&k, 200, now + 60_000);
        assert_eq!(
            held.hold(Retry::of(&from, &req, now).unwrap(), 200, now),
            Some(200),
            "one worker's flood is not held"
        );
        assert_eq!(held.len(), MAX_HELD_PER_WORKER);
        // At most MAX_HELD over all workers.
        let mut n = 0u32;
        'fill: for w in 1..=255u8 {
            let key = SigningKey::from_secret_bytes([w; 32]).unwrap();
            if key.public() == k.public() {
                continue;
            }
            for t in 0..MAX_HELD_PER_WORKER as u8 {
                if held.len() == MAX_HELD {
                    break 'fill;
                }
                let (from, req) = reveal(&key, t, now + 60_000);
                assert!(held.hold(Retry::of(&from, &req, now).unwrap(), n, now).is_none());
                n += 1;
            }
        }
        assert_eq!(held.len(), MAX_HELD);
        let key = SigningKey::from_secret_bytes([0xee; 32]).unwrap();
        let (from, req) = reveal(&key, 1, now + 60_000);
        assert_eq!(
            held.hold(Retry::of(&from, &req, now).unwrap(), 9, now),
            Some(9),
            "a full pool holds no more"
        );
        // Stopping: everything comes back to be answered.
        assert_eq!(held.drain().len(), MAX_HELD);
        assert_eq!(held.len(), 0);
        // Anything but a reveal is never held.
        let other = Request { id: 2, deadline_ms: now + 60_000, body: RequestBody::GetTerms };
        assert!(Retry::of(&from, &other, now).is_none());
    }
}
