//! A validator's judgement of embedding workers (SPEC.md §13): how well a worker's embeddings
//! of labelled sentences separate the labels, as the accuracy of a leave-one-out k-nearest-
//! neighbour vote (cosine) among that worker's own embeddings, in parts per million.
//!
//! The labels are the validator's alone: workers embed sentences and never see a label, so
//! the score measures the embeddings, not a guess. A worker that answers junk scores about
//! chance (500,000 with two balanced labels); one that answers one vector for everything,
//! near 0 (each item gets the majority label of all the others).
//!
//! Owns the score. Must never fetch or submit anything: the validator brings each worker's
//! embeddings with the labels of the sentences they embed.

use cairn_spec::consensus::SCORE_SCALE;

/// Neighbours that vote on each sentence's label.
pub const K: usize = 5;

/// The leave-one-out k-NN accuracy (ppm) of `items` (label, embedding), all of one worker:
/// each item's label is predicted by the majority of its `K` most cosine-similar others, every
/// other as similar as the `K`-th voting too (so the result never depends on the items' order;
/// a worker answering one vector for everything gets the majority of all the others, which is
/// wrong about as often as the labels are balanced); a tied vote goes to the lower label. A
/// vector of zero norm is similar to nothing. `None` with fewer than two items or embeddings
/// of different widths.
pub fn knn_accuracy(items: &[(u8, Vec<f32>)]) -> Option<u32> {
    if items.len() < 2 {
        return None;
    }
    let width = items.first()?.1.len();
    if width == 0 || items.iter().any(|(_, v)| v.len() != width) {
        return None;
    }
    let unit: Vec<Vec<f64>> = items
        .iter()
        .map(|(_, v)| {
            let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            let finite = norm.is_finite() && norm > 0.0;
            v.iter().map(|x| if finite { f64::from(*x) / norm } else { 0.0 }).collect()
        })
        .collect();
    let mut right = 0u64;
    for (i, (label, _)) in items.iter().enumerate() {
        let mut near: Vec<(f64, u8)> = items
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, (l, _))| {
                let dot: f64 = unit[i].iter().zip(&unit[j]).map(|(a, b)| a * b).sum();
                (if dot.is_finite() { dot } else { f64::MIN }, *l)
            })
            .collect();
        near.sort_by(|a, b| b.0.total_cmp(&a.0));
        let kth = near.get(K.min(near.len()).saturating_sub(1)).map_or(f64::MIN, |n| n.0);
        let mut votes = [0u32; 256];
        for (_, l) in near.iter().take_while(|(sim, _)| *sim >= kth) {
            if let Some(v) = votes.get_mut(usize::from(*l)) {
                *v += 1;
            }
        }
        let best = votes.iter().enumerate().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0))).map(|(l, _)| l);
        if best == Some(usize::from(*label)) {
            right += 1;
        }
    }
    Some((right * u64::from(SCORE_SCALE) / items.len() as u64) as u32)
}

/// The same number of items of each label (the first ones of each, as many as the rarest
/// label has): on balanced items a worker that separates nothing cannot score above chance by
/// answering the more frequent label.
pub fn balanced(items: &[(u8, Vec<f32>)]) -> Vec<(u8, Vec<f32>)> {
    let mut counts = std::collections::BTreeMap::<u8, usize>::new();
    for (l, _) in items {
        *counts.entry(*l).or_default() += 1;
    }
    let each = counts.values().copied().min().unwrap_or(0);
    let mut taken = std::collections::BTreeMap::<u8, usize>::new();
    items
        .iter()
        .filter(|(l, _)| {
            let t = taken.entry(*l).or_default();
            *t += 1;
            *t <= each
        })
        .cloned()
        .collect()
}

/// Embeddings of `count` sentences from a result's bytes (canonical little-endian f32, one
/// vector after another), or `None` when the bytes are not that many vectors of one width.
pub fn split_embeddings(result: &[u8], count: usize) -> Option<Vec<Vec<f32>>> {
    if count == 0 || result.len() % (4 * count) != 0 {
        return None;
    }
    let width = result.len() / 4 / count;
    let floats: Vec<f32> =
        result.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Some(floats.chunks(width).map(<[f32]>::to_vec).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn separated_labels_score_high_and_a_constant_scores_chance() {
        // Two clusters, one per label.
        let items: Vec<(u8, Vec<f32>)> = (0..20)
            .map(|i| {
                let l = (i % 2) as u8;
                let v = if l == 0 { vec![1.0, 0.1 * i as f32] } else { vec![-1.0, 0.1 * i as f32] };
                (l, v)
            })
            .collect();
        assert_eq!(knn_accuracy(&items), Some(1_000_000));
        let constant: Vec<(u8, Vec<f32>)> = items.iter().map(|(l, _)| (*l, vec![1.0, 1.0])).collect();
        let s = knn_accuracy(&constant).unwrap();
        assert!(s <= 600_000, "a constant answer scores about chance, not {s}");
        let zeros: Vec<(u8, Vec<f32>)> = items.iter().map(|(l, _)| (*l, vec![0.0, 0.0])).collect();
        assert!(knn_accuracy(&zeros).unwrap() <= 600_000);
        assert_eq!(knn_accuracy(&items[..1]), None);
        assert_eq!(knn_accuracy(&[(0, vec![1.0]), (1, vec![1.0, 2.0])]), None);
    }

    #[test]
    fn balanced_items_leave_a_constant_answer_nothing() {
        let items: Vec<(u8, Vec<f32>)> = (0..30).map(|i| (u8::from(i % 3 == 0), vec![1.0, 1.0])).collect();
        let b = balanced(&items);
        assert_eq!(b.iter().filter(|(l, _)| *l == 1).count(), 10);
        assert_eq!(b.len(), 20);
        // Unbalanced, one vector for all scores the majority's share; balanced, nothing.
        assert!(knn_accuracy(&items).unwrap() >= 600_000);
        assert_eq!(knn_accuracy(&b), Some(0));
    }

    #[test]
    fn results_split_into_vectors() {
        let bytes: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(split_embeddings(&bytes, 2), Some(vec![vec![1.0, 2.0], vec![3.0, 4.0]]));
        assert_eq!(split_embeddings(&bytes, 3), None);
        assert_eq!(split_embeddings(&bytes, 0), None);
    }
}
