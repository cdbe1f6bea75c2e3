//! Ordered parallel map over every core, for the CPU-bound checks of a group (signature
//! verification is most of the node's work per worker message).
//!
//! Owns how a group's items are spread over threads. Must never reorder, drop or repeat an
//! item, and never panic on its own account.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Items handed to a thread at a time. Threads take chunks until none is left, so a thread
/// slowed down (its core taken by the machine or the writer meanwhile) delays the group by
/// at most one chunk; with a fixed share per thread the other cores waited for its whole
/// share (measured: 1.5–1.7 of 2 cores busy during the ingest bench). Large enough that
/// taking a chunk costs nothing next to checking it.
const CHUNK: usize = 8;

/// The chunks one thread mapped: (chunk number, results).
type Done<U> = Vec<(usize, Vec<U>)>;

/// A thread panicked inside the map: its items have no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a thread of the parallel map panicked")]
pub struct Panicked;

/// The number of cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// `items.map(f)` in order, run on every core for groups of more than one chunk. A group of
/// one chunk runs on the caller's thread, where a panic of `f` unwinds as usual.
pub fn map_ordered<T, U, F>(items: Vec<T>, f: F) -> Result<Vec<U>, Panicked>
where
    T: Send,
    U: Send,
    F: Fn(T) -> U + Sync,
{
    let threads = cores().min(items.len().div_ceil(CHUNK));
    if threads <= 1 {
        return Ok(items.into_iter().map(f).collect());
    }
    let total = items.len();
    let mut chunks: VecDeque<(usize, Vec<T>)> = VecDeque::with_capacity(total.div_ceil(CHUNK));
    let mut it = items.into_iter().peekable();
    let mut i = 0;
    while it.peek().is_some() {
        chunks.push_back((i, it.by_ref().take(CHUNK).collect()));
        i += 1;
    }
    let queue = Mutex::new(chunks);
    let (queue, f) = (&queue, &f);
    let work = move || {
        let mut done: Done<U> = Vec::new();
        loop {
            // A poisoned lock means another thread panicked; the result is refused anyway.
            let next = match queue.lock() {
                Ok(mut q) => q.pop_front(),
                Err(_) => None,
            };
            let Some((i, chunk)) = next else { return done };
            done.push((i, chunk.into_iter().map(f).collect()));
        }
    };
    let parts: Vec<Option<Done<U>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(work)).collect();
        handles.into_iter().map(|h| h.join().ok()).collect()
    });
    let mut all: Done<U> = Vec::new();
    for p in parts {
        all.extend(p.ok_or(Panicked)?);
    }
    all.sort_unstable_by_key(|(i, _)| *i);
    let out: Vec<U> = all.into_iter().flat_map(|(_, v)| v).collect();
    if out.len() == total {
        Ok(out)
    } else {
        Err(Panicked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_every_item_at_every_size() {
        for n in [0usize, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5, 1000] {
            let items: Vec<u64> = (0..n as u64).collect();
            let out = map_ordered(items, |x| x * 3 + 1).unwrap();
            assert_eq!(out, (0..n as u64).map(|x| x * 3 + 1).collect::<Vec<_>>(), "n = {n}");
        }
    }

    #[test]
    fn uneven_work_still_comes_back_in_order() {
        // Items of very different cost: threads finish their chunks out of order.
        let items: Vec<u32> = (0..200).collect();
        let out = map_ordered(items, |x| {
            let spins = if x % 37 == 0 { 200_000 } else { 10 };
            let mut acc = u64::from(x);
            for k in 0..spins {
                acc = std::hint::black_box(acc.wrapping_mul(6364136223846793005).wrapping_add(k));
            }
            (x, acc != u64::MAX)
        })
        .unwrap();
        assert_eq!(out.iter().map(|(x, _)| *x).collect::<Vec<_>>(), (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn a_panicking_item_is_reported_not_dropped() {
        if cores() < 2 {
            return cairn_testkit::skip("one core: the map runs inline and a panic would unwind");
        }
        let items: Vec<u32> = (0..500).collect();
        // Prints the panic of item 321 (expected).
        let res = map_ordered(items, |x| {
            assert!(x != 321, "item 321 panics on purpose");
            x
        });
        assert_eq!(res, Err(Panicked));
    }
}
