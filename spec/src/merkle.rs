//! Merkle trees and inclusion proofs (SPEC.md §6): leaves are tagged hashes of objects,
//! inner nodes are `tagged_hash(MerkleNode, left ‖ right)`, an odd node at the end of a
//! level is promoted unchanged (never duplicated), an empty tree has a tagged constant root.
//!
//! Owns tree construction, proof extraction and the one walk that verifies a proof and maps
//! it to OpenTimestamps steps. Must never duplicate a node: duplication is how Bitcoin's
//! tree lets two leaf lists share a root (CVE-2012-2459).

use thiserror::Error;

use crate::hash::{merkle_node, tagged_hash, Hash32, Tag};

/// Longest path any tree of at most 2^32 leaves can need.
pub const MAX_DEPTH: usize = 32;

/// Root of the empty tree.
pub fn empty_root() -> Hash32 {
    tagged_hash(Tag::MerkleEmpty, &[])
}

/// Root over leaf hashes in order.
pub fn root(leaves: &[Hash32]) -> Hash32 {
    if leaves.is_empty() {
        return empty_root();
    }
    let mut level = leaves.to_vec();
    reduce_in_place(&mut level);
    level.first().copied().unwrap_or_else(empty_root)
}

/// Reduces a non-empty level to its root, reusing the buffer (no allocation per level).
fn reduce_in_place(v: &mut Vec<Hash32>) {
    while v.len() > 1 {
        let n = v.len();
        let half = n / 2;
        for i in 0..half {
            let (l, r) = match (v.get(2 * i), v.get(2 * i + 1)) {
                (Some(l), Some(r)) => (*l, *r),
                _ => break,
            };
            if let Some(slot) = v.get_mut(i) {
                *slot = merkle_node(&l, &r);
            }
        }
        if n % 2 == 1 {
            // The odd last node is promoted to the next level unchanged.
            if let Some(last) = v.last().copied() {
                if let Some(slot) = v.get_mut(half) {
                    *slot = last;
                }
            }
            v.truncate(half + 1);
        } else {
            v.truncate(half);
        }
    }
}

/// Proof that a leaf sits at `index` in a tree of `count` leaves.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MerkleProof {
    /// Position of the leaf.
    pub index: u32,
    /// Number of leaves in the tree.
    pub count: u32,
    /// Sibling hashes from the leaf's level upward; promoted levels contribute none.
    pub siblings: Vec<Hash32>,
}

/// Why a proof does not fit its tree.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MerkleError {
    /// The index is not below the leaf count.
    #[error("leaf index {index} is not below the leaf count {count}")]
    IndexOutOfRange {
        /// Index.
        index: u32,
        /// Count.
        count: u32,
    },
    /// Fewer siblings than the tree shape needs.
    #[error("path too short for leaf {index} of {count}")]
    PathTooShort {
        /// Index.
        index: u32,
        /// Count.
        count: u32,
    },
    /// More siblings than the tree shape needs.
    #[error("path too long for leaf {index} of {count}")]
    PathTooLong {
        /// Index.
        index: u32,
        /// Count.
        count: u32,
    },
}

impl MerkleError {
    /// Stable name used in test vectors.
    pub fn code(&self) -> &'static str {
        match self {
            MerkleError::IndexOutOfRange { .. } => "index_out_of_range",
            MerkleError::PathTooShort { .. } => "path_too_short",
            MerkleError::PathTooLong { .. } => "path_too_long",
        }
    }
}

/// Which side of the running hash a sibling goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The sibling is the left child: `node(sibling, running)`.
    Left,
    /// The sibling is the right child: `node(running, sibling)`.
    Right,
}

/// The one walk over a proof's shape: checks the sibling count against (index, count) and
/// calls `step` for each level that has a sibling, bottom-up.
fn walk(
    index: u32,
    count: u32,
    siblings: &[Hash32],
    mut step: impl FnMut(Side, &Hash32),
) -> Result<(), MerkleError> {
    if index >= count {
        return Err(MerkleError::IndexOutOfRange { index, count });
    }
    let mut it = siblings.iter();
    let (mut i, mut n) = (index, count);
    while n > 1 {
        if i % 2 == 1 {
            step(Side::Left, it.next().ok_or(MerkleError::PathTooShort { index, count })?);
        } else if i + 1 < n {
            step(Side::Right, it.next().ok_or(MerkleError::PathTooShort { index, count })?);
        }
        i /= 2;
        n = n / 2 + n % 2;
    }
    match it.next() {
        Some(_) => Err(MerkleError::PathTooLong { index, count }),
        None => Ok(()),
    }
}

impl MerkleProof {
    /// The root this proof yields for `leaf`, or why the proof does not fit its shape.
    pub fn root_for(&self, leaf: &Hash32) -> Result<Hash32, MerkleError> {
        let mut h = *leaf;
        walk(self.index, self.count, &self.siblings, |side, s| {
            h = match side {
                Side::Left => merkle_node(s, &h),
                Side::Right => merkle_node(&h, s),
            }
        })?;
        Ok(h)
    }

    /// The steps from leaf to root, for OpenTimestamps export.
    pub fn steps(&self) -> Result<Vec<(Side, Hash32)>, MerkleError> {
        let mut out = Vec::with_capacity(self.siblings.len());
        walk(self.index, self.count, &self.siblings, |side, s| out.push((side, *s)))?;
        Ok(out)
    }
}

/// A tree with every level kept, for extracting many proofs.
#[derive(Clone, Debug)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash32>>,
}

impl MerkleTree {
    /// Builds all levels over `leaves`. At most `u32::MAX` leaves are supported; longer
    /// inputs are truncated by the caller's own bounds long before that.
    pub fn new(leaves: Vec<Hash32>) -> Self {
        let mut levels = vec![leaves];
        while let Some(last) = levels.last() {
            if last.len() <= 1 {
                break;
            }
            let next: Vec<Hash32> = last
                .chunks(2)
                .map(|c| match c {
                    [l, r] => merkle_node(l, r),
                    [odd] => *odd,
                    _ => Hash32::ZERO,
                })
                .collect();
            levels.push(next);
        }
        MerkleTree { levels }
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    /// True for the empty tree.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The root.
    pub fn root(&self) -> Hash32 {
        match self.levels.last().and_then(|l| l.first()) {
            Some(r) => *r,
            None => empty_root(),
        }
    }

    /// Proof for the leaf at `index`, or `None` when out of range.
    pub fn proof(&self, index: u32) -> Option<MerkleProof> {
        let count = u32::try_from(self.len()).ok()?;
        if index >= count {
            return None;
        }
        let mut siblings = Vec::new();
        let mut i = index as usize;
        for level in &self.levels {
            if level.len() <= 1 {
                break;
            }
            let sib = i ^ 1;
            if let Some(s) = level.get(sib) {
                siblings.push(*s);
            }
            i /= 2;
        }
        Some(MerkleProof { index, count, siblings })
    }
}

/// A tree grown one leaf at a time, kept as the roots of its perfect subtrees (its "peaks",
/// largest first, sizes the bits of the leaf count): the root after each append is the same
/// as [`root`] over all leaves so far, in O(log n) memory. Epoch headers commit their
/// predecessors this way (SPEC.md §5.9 `history`), a Merkle mountain range whose bagging is
/// the tree of §6.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Frontier {
    count: u64,
    peaks: Vec<Hash32>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The frontier over `leaves`.
    pub fn of(leaves: impl IntoIterator<Item = Hash32>) -> Self {
        let mut f = Self::new();
        leaves.into_iter().for_each(|l| f.push(l));
        f
    }

    /// Leaves so far.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True when no leaf was appended.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash32) {
        let mut h = leaf;
        let mut c = self.count;
        // Each trailing one bit of the count is a perfect subtree the new one completes.
        while c & 1 == 1 {
            match self.peaks.pop() {
                Some(left) => h = merkle_node(&left, &h),
                None => break,
            }
            c >>= 1;
        }
        self.peaks.push(h);
        self.count += 1;
    }

    /// The root over every leaf appended ([`root`] of them).
    pub fn root(&self) -> Hash32 {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else { return empty_root() };
        // A level's odd node is promoted, so the smaller peaks join first, right to left.
        peaks.fold(*last, |acc, p| merkle_node(p, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::sha256;

    fn leaves(n: u32) -> Vec<Hash32> {
        (0..n).map(|i| sha256(&i.to_be_bytes())).collect()
    }

    #[test]
    fn every_proof_of_every_small_tree_verifies() {
        for n in 1..=40u32 {
            let ls = leaves(n);
            let tree = MerkleTree::new(ls.clone());
            assert_eq!(tree.root(), root(&ls), "n={n}");
            for i in 0..n {
                let p = tree.proof(i).unwrap();
                assert_eq!(p.root_for(&ls[i as usize]).unwrap(), tree.root(), "n={n} i={i}");
            }
        }
    }

    /// The frontier's root is the tree's root at every size (the shapes of §6 and of a
    /// Merkle mountain range bagged right to left coincide).
    #[test]
    fn a_frontier_grows_the_same_root() {
        let ls = leaves(300);
        let mut f = Frontier::new();
        assert_eq!(f.root(), empty_root());
        for n in 1..=300usize {
            f.push(ls[n - 1]);
            assert_eq!(f.root(), root(&ls[..n]), "n={n}");
            assert_eq!(f.peaks.len() as u32, (n as u32).count_ones());
        }
        assert_eq!(Frontier::of(ls[..77].iter().copied()).root(), root(&ls[..77]));
    }

    #[test]
    fn shapes_are_checked() {
        let ls = leaves(5);
        let tree = MerkleTree::new(ls.clone());
        let mut p = tree.proof(4).unwrap();
        assert_eq!(p.siblings.len(), 1, "leaf 4 of 5 is promoted twice");
        p.siblings.push(Hash32::ZERO);
        assert_eq!(p.root_for(&ls[4]).unwrap_err().code(), "path_too_long");
        let mut p = tree.proof(1).unwrap();
        p.siblings.pop();
        assert_eq!(p.root_for(&ls[1]).unwrap_err().code(), "path_too_short");
        let p = MerkleProof { index: 5, count: 5, siblings: vec![] };
        assert_eq!(p.root_for(&ls[0]).unwrap_err().code(), "index_out_of_range");
    }

    #[test]
    fn no_duplication_ambiguity() {
        // Bitcoin's rule gives [a,b,c] and [a,b,c,c] the same root; ours must not.
        let ls = leaves(3);
        let mut dup = ls.clone();
        dup.push(ls[2]);
        assert_ne!(root(&ls), root(&dup));
        assert_ne!(root(&[]), root(&[Hash32::ZERO]));
        assert_eq!(root(&ls[..1]), ls[0]);
    }
}
