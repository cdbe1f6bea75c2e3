//! Where a task's time goes on this node: the instant each task reached each stage of its
//! life (submitted, written, announced, first claim in, last commitment in, reveal window
//! open, last reveal in, decided and on disk), turned into one histogram per stage
//! (`cairn_task_stage_seconds{stage=…}`) when the task is decided, so an operator (and the
//! end-to-end bench) sees which stage is slowest.
//!
//! Owns the soft, bounded map of those instants. Must never decide or persist anything:
//! it only watches, and forgets a task it has no room for (the oldest first).

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use cairn_spec::Hash32;

use crate::metrics::{NodeMetrics, Stage};

/// Tasks timed at once, at most; a task not decided while this many newer ones came is
/// forgotten (its stages are then not counted).
const MAX_TIMED: usize = 16_384;

/// The instants one task reached its stages (`None`: not yet, or not seen by this process).
#[derive(Clone, Copy, Debug, Default)]
struct Marks {
    submitted: Option<Instant>,
    accepted: Option<Instant>,
    announced: Option<Instant>,
    claimed: Option<Instant>,
    committed: Option<Instant>,
    window: Option<Instant>,
    revealed: Option<Instant>,
}

/// What happened to a task, as the node's loop sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Event {
    /// Its submission came in through the API (at the instant given) and was written now.
    Accepted(Instant),
    /// Its first announcement was sent.
    Announced,
    /// A claim came in.
    Claim,
    /// A commitment came in.
    Commit,
    /// Its reveal window opened (every commitment wanted is in).
    WindowOpen,
    /// A reveal came in (or was released from holding) after the window opened.
    Reveal,
    /// Its receipts are on disk: the task's stages are counted and it is forgotten.
    Decided,
}

/// The timed tasks.
#[derive(Debug, Default)]
pub(super) struct Stages {
    marks: HashMap<Hash32, Marks>,
    order: VecDeque<Hash32>,
}

impl Stages {
    /// Records `event` for `task` at `now`; on [`Event::Decided`], observes each stage the
    /// task went through in `metrics`.
    pub(super) fn on(&mut self, task: Hash32, event: Event, now: Instant, metrics: &NodeMetrics) {
        if let Event::Accepted(at) = event {
            if self.marks.contains_key(&task) {
                return;
            }
            if self.marks.len() >= MAX_TIMED {
                while let Some(old) = self.order.pop_front() {
                    if self.marks.remove(&old).is_some() {
                        break;
                    }
                }
            }
            // Decided tasks leave their ids behind: swept when they are half the queue.
            if self.order.len() >= 2 * MAX_TIMED {
                let marks = &self.marks;
                self.order.retain(|id| marks.contains_key(id));
            }
            self.order.push_back(task);
            self.marks.insert(task, Marks { submitted: Some(at), accepted: Some(now), ..Marks::default() });
            return;
        }
        // Tasks submitted before this process started (or forgotten) are not timed.
        let Some(m) = self.marks.get_mut(&task) else { return };
        match event {
            Event::Accepted(_) => {}
            Event::Announced => {
                m.announced.get_or_insert(now);
            }
            Event::Claim => {
                m.claimed.get_or_insert(now);
            }
            // The last commitment before the window opens is the one that opened it.
            Event::Commit if m.window.is_none() => m.committed = Some(now),
            Event::Commit => {}
            Event::WindowOpen => {
                m.window.get_or_insert(now);
            }
            Event::Reveal if m.window.is_some() => m.revealed = Some(now),
            Event::Reveal => {}
            Event::Decided => {
                if let Some(m) = self.marks.remove(&task) {
                    observe(&m, now, metrics);
                }
            }
        }
    }

    /// Tasks being timed, and ids queued for forgetting.
    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        (self.marks.len(), self.order.len())
    }
}

/// Observes the stages of a decided task: each from the mark before it to its own.
fn observe(m: &Marks, decided: Instant, metrics: &NodeMetrics) {
    let points = [
        (Stage::Submit, m.submitted, m.accepted),
        (Stage::Announce, m.accepted, m.announced),
        (Stage::Claim, m.announced, m.claimed),
        (Stage::ExecuteAndCommit, m.claimed, m.committed),
        (Stage::OpenWindow, m.committed, m.window),
        (Stage::Reveal, m.window, m.revealed),
        (Stage::Decide, m.revealed, Some(decided)),
        (Stage::Total, m.submitted, Some(decided)),
    ];
    for (stage, from, to) in points {
        if let (Some(from), Some(to)) = (from, to) {
            metrics.observe_stage(stage, to.saturating_duration_since(from));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    fn count(text: &str, stage: &str) -> u64 {
        let key = format!("cairn_task_stage_seconds_count{{stage=\"{stage}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&key)).map_or(0, |v| v.trim().parse().unwrap())
    }

    fn sum(text: &str, stage: &str) -> f64 {
        let key = format!("cairn_task_stage_seconds_sum{{stage=\"{stage}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&key)).map_or(0.0, |v| v.trim().parse().unwrap())
    }

    #[test]
    fn a_decided_task_counts_each_stage_once_from_the_mark_before_it() {
        let metrics = NodeMetrics::default();
        let mut s = Stages::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let task = Hash32([1; 32]);
        s.on(task, Event::Accepted(at(0)), at(2), &metrics);
        s.on(task, Event::Announced, at(3), &metrics);
        s.on(task, Event::Announced, at(500), &metrics); // a re-announcement is not the first
        s.on(task, Event::Claim, at(10), &metrics);
        s.on(task, Event::Claim, at(11), &metrics);
        s.on(task, Event::Commit, at(20), &metrics);
        s.on(task, Event::Commit, at(30), &metrics);
        s.on(task, Event::WindowOpen, at(35), &metrics);
        s.on(task, Event::Commit, at(900), &metrics); // after the window: not the opener
        s.on(task, Event::Reveal, at(36), &metrics);
        s.on(task, Event::Reveal, at(40), &metrics);
        s.on(task, Event::Decided, at(50), &metrics);
        s.on(task, Event::Decided, at(60), &metrics); // forgotten: counted once
        let text = metrics.encode();
        for (stage, ms) in [
            ("submit", 2.0),
            ("announce", 1.0),
            ("claim", 7.0),
            ("execute_and_commit", 20.0),
            ("open_window", 5.0),
            ("reveal", 5.0),
            ("decide", 10.0),
            ("total", 50.0),
        ] {
            assert_eq!(count(&text, stage), 1, "{stage}: {text}");
            assert!((sum(&text, stage) - ms / 1e3).abs() < 1e-6, "{stage}: {}", sum(&text, stage));
        }
        assert_eq!(s.len(), (0, 1));
    }

    /// Decided tasks leave no lasting trace: a long run keeps the queue bounded.
    #[test]
    fn a_long_run_of_decided_tasks_keeps_the_queue_bounded() {
        let metrics = NodeMetrics::default();
        let mut s = Stages::default();
        let now = Instant::now();
        for i in 0..(5 * MAX_TIMED as u32) {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            s.on(Hash32(id), Event::Accepted(now), now, &metrics);
            s.on(Hash32(id), Event::Decided, now, &metrics);
        }
        let (timed, queued) = s.len();
        assert_eq!(timed, 0);
        assert!(queued <= 2 * MAX_TIMED, "{queued}");
    }

    /// A flood of tasks never decided cannot grow the map past its bound; the oldest go first.
    #[test]
    fn undecided_tasks_are_forgotten_oldest_first_at_the_bound() {
        let metrics = NodeMetrics::default();
        let mut s = Stages::default();
        let now = Instant::now();
        for i in 0..(MAX_TIMED as u32 + 10) {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            s.on(Hash32(id), Event::Accepted(now), now, &metrics);
        }
        assert_eq!(s.len().0, MAX_TIMED);
        s.on(Hash32([0; 32]), Event::Decided, now, &metrics);
        assert_eq!(count(&metrics.encode(), "total"), 0, "the oldest was forgotten");
        let mut newest = [0u8; 32];
        newest[..4].copy_from_slice(&(MAX_TIMED as u32 + 9).to_be_bytes());
        s.on(Hash32(newest), Event::Decided, now, &metrics);
        assert_eq!(count(&metrics.encode(), "total"), 1);
    }
}
