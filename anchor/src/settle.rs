//! When anchored work counts as final: how confirmations are counted, and which epoch has
//! settled (its locked rewards may become claimable).
//!
//! Owns the one settlement rule every node applies, the coordinator to its own anchors and a
//! follower to the anchors it finds. Must never look at the sidechain's ledger: it names an
//! epoch height, and the lifecycle moves the money.

/// Confirmations of a transaction in the block at `height` when the best block is at `tip`:
/// 1 in the tip itself, 0 for a height above the tip (a reorg the caller has not seen yet).
pub fn confirmations(height: u32, tip: u32) -> u32 {
    tip.saturating_add(1).saturating_sub(height)
}

/// The newest epoch committed by an anchor buried at least `depth` blocks deep (and at least
/// one: an unconfirmed anchor never settles), given each confirmed anchor as `(committed
/// epoch, block height)` at best block `tip`. Headers are hash-chained, so an anchor
/// settles every epoch at or below the one it commits.
pub fn settled_epoch(confirmed: impl IntoIterator<Item = (u32, u32)>, tip: u32, depth: u32) -> Option<u32> {
    confirmed
        .into_iter()
        .filter(|&(_, height)| confirmations(height, tip) >= depth.max(1))
        .map(|(epoch, _)| epoch)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tip_has_one_confirmation_and_a_block_above_it_none() {
        assert_eq!(confirmations(100, 100), 1);
        assert_eq!(confirmations(95, 100), 6);
        assert_eq!(confirmations(101, 100), 0);
        assert_eq!(confirmations(0, u32::MAX), u32::MAX);
    }

    #[test]
    fn only_anchors_deep_enough_settle_and_the_newest_epoch_wins() {
        let anchors = [(3, 90), (5, 96), (7, 100)];
        assert_eq!(settled_epoch(anchors, 100, 6), Some(3));
        assert_eq!(settled_epoch(anchors, 101, 6), Some(5));
        assert_eq!(settled_epoch(anchors, 105, 6), Some(7));
        assert_eq!(settled_epoch(anchors, 94, 6), None);
    }

    #[test]
    fn a_depth_of_zero_still_needs_a_confirmation() {
        assert_eq!(settled_epoch([(4, 101)], 100, 0), None);
        assert_eq!(settled_epoch([(4, 100)], 100, 0), Some(4));
    }
}
