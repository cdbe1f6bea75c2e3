//! Re-checking who was drawn (SPEC.md §12.1): each receipt names the epoch its slot was
//! drawn in; that epoch's header reveals the seed the header before committed to and names
//! the beacon (the Bitcoin block mixed in), and the header before also committed to the
//! roster the draw ranked. From them an auditor recomputes every task's ranking and sees, for
//! every slot, which roster keys ranked before its worker and hold no slot of the task: the
//! keys the coordinator passed over.
//!
//! The receipts are checked against header E (signatures, count, root) and every header
//! against the receipts' coordinator and network; that those headers are the ones anchored in
//! Bitcoin, and each beacon the block after the anchor before, is `cairn audit chain`'s
//! check, not this one's.
//!
//! Owns the draw checks and their tallies. The checks themselves ([`check_draws`]) never
//! fetch; [`audit_draws`] gathers their parts from a [`Source`]. Must never call a passed-over
//! key proof of cheating: a key passes over when it was not asking for work, which only that
//! key's operator can tell.

use std::collections::{BTreeMap, BTreeSet};

use cairn_spec::receipt::ReceiptVerifier;
use cairn_spec::{merkle, Hash32, Object, PubKey, Roster, SignedEpochHeader, SignedReceipt, Task};
use serde::Serialize;

use crate::source::{Source, SourceError};
use crate::verify::Report;

/// The checks of a draw audit, in order.
pub const DRAW_CHECKS: [&str; 6] = ["receipts", "linked", "draw_seeds", "rosters", "tasks", "draw_times"];

/// What re-checking the draws of one epoch needs: its header (which reveals the seed), the
/// header before (which committed to the seed and the roster), and the roster.
#[derive(Clone, Debug)]
pub struct DrawEpoch {
    /// Header of the draw epoch.
    pub header: SignedEpochHeader,
    /// The header before it.
    pub prev: SignedEpochHeader,
    /// The roster its draws ranked.
    pub roster: Roster,
}

/// One slot's draw, recomputed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SlotDraw {
    /// The task.
    pub task: Hash32,
    /// The worker that held the slot.
    pub worker: PubKey,
    /// The epoch its slot was drawn in.
    pub draw_epoch: u32,
    /// Whether the draw could be recomputed (not for slots drawn before the first header,
    /// whose seed and roster nothing committed to in advance).
    pub checkable: bool,
    /// The worker's place in the task's ranking (0 first); `None` when it is not on the
    /// roster (drawn because no roster key was ready) or the draw is not checkable.
    pub rank: Option<u32>,
    /// Roster keys ranked before the worker that hold no slot of the task (none for a worker
    /// off the roster: which roster keys were ready then, only their operators know).
    pub passed_over: Vec<PubKey>,
}

/// The draws of one epoch's receipts, recomputed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DrawAudit {
    /// The epoch whose receipts were checked.
    pub epoch: u32,
    /// The checks (seeds revealed as committed, rosters as committed, tasks as named).
    pub report: Report,
    /// Every slot, in receipt order.
    pub slots: Vec<SlotDraw>,
}

impl DrawAudit {
    /// Slots whose draw was recomputed.
    pub fn checkable(&self) -> usize {
        self.slots.iter().filter(|s| s.checkable).count()
    }

    /// Checkable slots whose worker ranked first among the keys not on the task.
    pub fn first_ranked(&self) -> usize {
        self.slots.iter().filter(|s| s.rank.is_some() && s.passed_over.is_empty()).count()
    }

    /// Checkable slots held by a worker off the roster.
    pub fn off_roster(&self) -> usize {
        self.slots.iter().filter(|s| s.checkable && s.rank.is_none()).count()
    }

    /// How many slots passed over each key, most first.
    pub fn passed_over(&self) -> Vec<(PubKey, u32)> {
        let mut n: BTreeMap<PubKey, u32> = BTreeMap::new();
        for k in self.slots.iter().flat_map(|s| &s.passed_over) {
            *n.entry(*k).or_default() += 1;
        }
        let mut v: Vec<(PubKey, u32)> = n.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.as_bytes().cmp(b.0.as_bytes())));
        v
    }
}

/// Recomputes the draws of `receipts`, epoch `header`'s, from the `tasks` they name, the
/// `draws` of their draw epochs (every draw epoch from 1 on that a receipt names) and the
/// headers between them and `header` (`after`, by height: every header from the lowest draw
/// epoch up to the one before `header`). Every header given must chain to `header`, so a
/// source cannot serve one re-signed header for a single height.
pub fn check_draws(
    header: &SignedEpochHeader,
    receipts: &[SignedReceipt],
    tasks: &BTreeMap<Hash32, Task>,
    draws: &BTreeMap<u32, DrawEpoch>,
    after: &BTreeMap<u32, SignedEpochHeader>,
) -> DrawAudit {
    let h = &header.body;
    let epoch = h.height;
    let mut audit = DrawAudit { epoch, ..DrawAudit::default() };
    let mut signatures = ReceiptVerifier::default();
    let bad = receipts.iter().find_map(|r| {
        let b = &r.body;
        if !signatures.verify(r) {
            Some(format!("receipt {} signature invalid", r.id()))
        } else if b.coordinator != h.coordinator || b.network != h.network || b.epoch != epoch {
            Some(format!("receipt {} is not epoch {epoch}'s of this coordinator", r.id()))
        } else {
            None
        }
    });
    let leaves: Vec<Hash32> = receipts.iter().map(|r| r.id()).collect();
    let whole = receipts.len() == h.receipt_count as usize && merkle::root(&leaves) == h.receipts_root;
    let signed = header.verify();
    audit.report.push(
        "receipts",
        signed && bad.is_none() && whole,
        match (signed, bad, whole) {
            (false, _, _) => format!("header {epoch} not signed by its coordinator"),
            (_, Some(why), _) => why,
            (_, None, false) => {
                format!("the receipts served are not the {} header {epoch} commits to", h.receipt_count)
            }
            _ => format!("{} receipts, signed, the ones header {epoch} commits to", receipts.len()),
        },
    );
    // Every header given, by height, must be the one that chains to header E.
    let mut by_height: BTreeMap<u32, &SignedEpochHeader> = BTreeMap::new();
    let mut clash = None;
    let given = draws.values().flat_map(|d| [&d.header, &d.prev]).chain(after.values());
    for g in given.chain(std::iter::once(header)) {
        if by_height.insert(g.body.height, g).is_some_and(|o| o.id() != g.id()) {
            clash = Some(g.body.height);
        }
    }
    let unlinked = by_height
        .iter()
        .filter(|(at, _)| **at < epoch)
        .find(|(at, g)| !by_height.get(&(**at + 1)).is_some_and(|n| n.body.follows(&g.body)))
        .map(|(at, _)| *at);
    let lowest = by_height.keys().next().copied().unwrap_or(epoch);
    audit.report.push(
        "linked",
        clash.is_none() && unlinked.is_none(),
        match (clash, unlinked) {
            (Some(at), _) => format!("two different headers were served for epoch {at}"),
            (None, Some(at)) => format!("header {at} does not chain to header {epoch}"),
            (None, None) => format!("headers {lowest} to {epoch} chain to header {epoch}"),
        },
    );
    let named: BTreeSet<u32> = receipts.iter().map(|r| r.body.draw_epoch).filter(|e| *e > 0).collect();
    let bad_seed = named.iter().find_map(|e| {
        let Some(d) = draws.get(e) else { return Some(format!("epoch {e}: its headers were not found")) };
        let (dh, p) = (&d.header.body, &d.prev.body);
        if dh.height != *e || !d.header.verify() || !d.prev.verify() {
            Some(format!("epoch {e}: header missing, misplaced or not signed"))
        } else if dh.coordinator != h.coordinator || dh.network != h.network {
            Some(format!("epoch {e}: header of another coordinator or network"))
        } else if !dh.follows(p) {
            Some(format!(
                "epoch {e}: does not follow epoch {} or reveals another seed than it committed to",
                p.height
            ))
        } else {
            None
        }
    });
    let seeds = named.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ");
    audit.report.push(
        "draw_seeds",
        bad_seed.is_none(),
        bad_seed.unwrap_or_else(|| {
            format!("draw epochs [{seeds}]: each header reveals the seed the one before committed to")
        }),
    );
    let bad_roster = named.iter().find_map(|e| {
        let d = draws.get(e)?;
        (d.roster.root() != d.prev.body.next_roster).then(|| {
            format!("epoch {e}: the roster served is not the one epoch {} committed to", d.prev.body.height)
        })
    });
    audit.report.push(
        "rosters",
        bad_roster.is_none(),
        bad_roster.unwrap_or_else(|| format!("draw epochs [{seeds}]: each roster is the one committed to")),
    );
    let bad_task = receipts.iter().find_map(|r| match tasks.get(&r.body.task) {
        None => Some(format!("task {} not found", r.body.task)),
        Some(t) if t.id() != r.body.task => Some(format!("task {} does not hash to its id", r.body.task)),
        Some(t) if t.class != r.body.class => {
            Some(format!("task {} is of another class than its receipt says", r.body.task))
        }
        Some(_) => None,
    });
    let n_tasks = receipts.iter().map(|r| r.body.task).collect::<BTreeSet<_>>().len();
    audit.report.push(
        "tasks",
        bad_task.is_none(),
        bad_task.unwrap_or_else(|| format!("{n_tasks} tasks hash to the ids their receipts name")),
    );
    // A draw epoch is the one open when its task was created or later, or the one before
    // (whose draws go on while the open epoch waits for its beacon): the epoch after it must
    // not have closed before the task existed. Otherwise the coordinator could name, for a
    // slot it hands to a key of its own, whichever older seed (or epoch 0's, not checkable)
    // ranks that key first.
    let bad_time = receipts.iter().find_map(|r| {
        let b = &r.body;
        let task = tasks.get(&b.task)?;
        if b.draw_epoch > epoch {
            return Some(format!("receipt {} names draw epoch {}, after its own epoch", r.id(), b.draw_epoch));
        }
        let next = b.draw_epoch.checked_add(1).filter(|n| *n <= epoch)?;
        let closer = if next == epoch { Some(header) } else { after.get(&next) };
        let closed = match closer {
            Some(c) if c.body.height == next && c.body.coordinator == h.coordinator && c.verify() => c.body.time,
            _ => return Some(format!("receipt {} names draw epoch {}: header {next} was not found", r.id(), b.draw_epoch)),
        };
        (closed < task.created_at).then(|| {
            format!(
                "receipt {} names draw epoch {}, more than one epoch before the one its task was created in (header {next} closed at {closed}, the task was created at {})",
                r.id(),
                b.draw_epoch,
                task.created_at
            )
        })
    });
    audit.report.push(
        "draw_times",
        bad_time.is_none(),
        bad_time.unwrap_or_else(|| {
            "every draw epoch is the one its task was created in, a later one, or the one before".into()
        }),
    );
    if !audit.report.ok() {
        return audit;
    }
    let mut holders: BTreeMap<Hash32, BTreeSet<PubKey>> = BTreeMap::new();
    for r in receipts {
        holders.entry(r.body.task).or_default().insert(r.body.worker);
    }
    // One ranking at a time (a roster may hold 500,000 keys): receipts are visited grouped by
    // task and draw epoch, in receipt order within a group, and the slots put back in receipt
    // order.
    let mut order: Vec<usize> = (0..receipts.len()).collect();
    order.sort_by_key(|i| receipts.get(*i).map(|r| (r.body.task, r.body.draw_epoch)));
    let mut ranking: (Option<(Hash32, u32)>, Vec<PubKey>) = (None, Vec::new());
    let mut slots: Vec<(usize, SlotDraw)> = Vec::with_capacity(receipts.len());
    for i in order {
        let Some(r) = receipts.get(i) else { continue };
        let b = &r.body;
        let (Some(task), Some(d)) = (tasks.get(&b.task), draws.get(&b.draw_epoch)) else {
            slots.push((
                i,
                SlotDraw {
                    task: b.task,
                    worker: b.worker,
                    draw_epoch: b.draw_epoch,
                    checkable: false,
                    rank: None,
                    passed_over: Vec::new(),
                },
            ));
            continue;
        };
        if ranking.0 != Some((b.task, b.draw_epoch)) {
            let dh = &d.header.body;
            let keys =
                d.roster.ranking(&dh.draw_seed, &dh.beacon, task).into_iter().map(|(_, k)| k).collect();
            ranking = (Some((b.task, b.draw_epoch)), keys);
        }
        let on_task = holders.get(&b.task);
        let held = |k: &PubKey| on_task.is_some_and(|h| h.contains(k));
        let rank = ranking.1.iter().position(|k| *k == b.worker);
        // A worker off the roster was drawn after every ready roster key: which of them were
        // ready only their operators know, so no key is listed (the slot is counted apart).
        let before = rank.map_or(&[][..], |i| ranking.1.get(..i).unwrap_or_default());
        slots.push((
            i,
            SlotDraw {
                task: b.task,
                worker: b.worker,
                draw_epoch: b.draw_epoch,
                checkable: true,
                rank: rank.map(|i| i as u32),
                passed_over: before.iter().filter(|k| !held(k)).copied().collect(),
            },
        ));
    }
    slots.sort_by_key(|(i, _)| *i);
    audit.slots = slots.into_iter().map(|(_, s)| s).collect();
    audit
}

/// Gathers what re-checking the draws of epoch `epoch` needs from `source` and checks them.
pub fn audit_draws(source: &dyn Source, epoch: u32) -> Result<DrawAudit, SourceError> {
    let header = source
        .header_range(epoch, epoch)?
        .pop()
        .ok_or_else(|| SourceError::NotFound(format!("header {epoch}")))?;
    let receipts = source.epoch_receipts(epoch)?;
    let mut tasks = BTreeMap::new();
    for id in receipts.iter().map(|r| r.body.task).collect::<BTreeSet<_>>() {
        tasks.insert(id, source.task(&id)?);
    }
    // One range, from the header before the lowest draw epoch up to E's predecessor: the
    // check ties each to header E.
    let named: BTreeSet<u32> = receipts.iter().map(|r| r.body.draw_epoch).collect();
    let lowest = named.first().map_or(epoch, |d| d.saturating_sub(1));
    let after: BTreeMap<u32, SignedEpochHeader> = match epoch.checked_sub(1) {
        Some(last) if lowest <= last => {
            source.header_range(lowest, last)?.into_iter().map(|h| (h.body.height, h)).collect()
        }
        _ => BTreeMap::new(),
    };
    let mut draws = BTreeMap::new();
    for e in named.into_iter().filter(|e| *e > 0) {
        let at = |h: u32| if h == epoch { Some(&header) } else { after.get(&h) };
        let (Some(prev), Some(this)) = (at(e - 1), at(e)) else {
            return Err(SourceError::NotFound(format!("headers {} and {e}", e - 1)));
        };
        draws.insert(e, DrawEpoch { header: this.clone(), prev: prev.clone(), roster: source.roster(e)? });
    }
    Ok(check_draws(&header, &receipts, &tasks, &draws, &after))
}
