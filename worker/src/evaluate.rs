//! A validator's judgement of embedding workers (SPEC.md §13): how well a worker's embeddings
//! of labelled sentences separate the labels, as the accuracy of a leave-one-out k-nearest-
//! neighbour vote (cosine) among that worker's own embeddings, in parts per million.
//!
//! The labels are the validator's alone: workers embed sentences and never see a label, so
//! the score measures the embeddings, not a lookup — provided the labels are the validator's
//! own: a public labelled set (as the devnet's) lets a worker look labels up, so a real
//! subnet holds out labels workers cannot find. On balanced items (`balanced`) a worker that
//! answers junk scores about chance (500,000 with two labels), and one answering one vector
//! for everything scores 0 (each item gets the majority label of all the others).
//!
//! Owns the score. Must never fetch or submit anything: the validator brings each worker's
//! embeddings with the labels of the sentences they embed.

use cairn_spec::consensus::SCORE_SCALE;

/// Neighbours that vote on each sentence's label.
pub const K: usize = 5;

/// The leave-one-out k-NN accuracy (ppm) of `items` (label, embedding), all of one worker:
/// each item's label is predicted by the majority of its `K` most cosine-similar others, every
/// other as similar as the `K`-th voting too, so the result never depends on the items' order
/// (one vector for everything makes every other a neighbour); a tied vote goes to the lower
/// label. A vector of zero norm has similarity 0 to every other. `None` with fewer than two items or embeddings
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

/// The same number of items of each of `labels` (the newest of each, as many as the rarest
/// label has), or `None` when some label has fewer than `least`: on balanced items a worker
/// that separates nothing cannot score above chance by answering the more frequent label,
/// and one that drew items of one label alone cannot be judged.
pub fn balanced(items: &[(u8, Vec<f32>)], labels: &[u8], least: usize) -> Option<Vec<(u8, Vec<f32>)>> {
    let count = |l: u8| items.iter().filter(|(x, _)| *x == l).count();
    let each = labels.iter().map(|l| count(*l)).min()?;
    if each < least.max(1) {
        return None;
    }
    let mut keep = vec![false; items.len()];
    for l in labels {
        let newest = items.iter().enumerate().rev().filter(|(_, (x, _))| x == l).take(each);
        for (i, _) in newest {
            if let Some(k) = keep.get_mut(i) {
                *k = true;
            }
        }
    }
    Some(items.iter().zip(keep).filter(|(_, k)| *k).map(|(i, _)| i.clone()).collect())
}

/// Embeddings of `count` sentences from a result's bytes (canonical little-endian f32, one
/// vector after another, each `width` wide), or `None` when the bytes are not that.
pub fn split_embeddings(result: &[u8], count: usize, width: usize) -> Option<Vec<Vec<f32>>> {
    if count == 0 || width == 0 || Some(result.len()) != count.checked_mul(width)?.checked_mul(4) {
        return None;
    }
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
        let items: Vec<(u8, Vec<f32>)> =
            (0..30).map(|i| (u8::from(i % 3 == 0), vec![1.0, i as f32])).collect();
        let b = balanced(&items, &[0, 1], 5).unwrap();
        assert_eq!(b.iter().filter(|(l, _)| *l == 1).count(), 10);
        assert_eq!(b.len(), 20);
        // The newest of the more frequent label are kept.
        assert_eq!(b.iter().filter(|(l, _)| *l == 0).map(|(_, v)| v[1]).fold(0.0, f32::max), 29.0);
        // Unbalanced, one vector for all scores the majority's share; balanced, nothing.
        let constant: Vec<(u8, Vec<f32>)> = items.iter().map(|(l, _)| (*l, vec![1.0, 1.0])).collect();
        assert!(knn_accuracy(&constant).unwrap() >= 600_000);
        assert_eq!(knn_accuracy(&balanced(&constant, &[0, 1], 5).unwrap()), Some(0));
        // One label alone, or too few of one, cannot be judged.
        let ones: Vec<(u8, Vec<f32>)> = items.iter().filter(|(l, _)| *l == 1).cloned().collect();
        assert_eq!(balanced(&ones, &[0, 1], 1), None);
        assert_eq!(balanced(&items, &[0, 1], 11), None);
    }

    #[test]
    fn results_split_into_vectors() {
        let bytes: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(split_embeddings(&bytes, 2, 2), Some(vec![vec![1.0, 2.0], vec![3.0, 4.0]]));
        assert_eq!(split_embeddings(&bytes, 1, 2), None);
        assert_eq!(split_embeddings(&bytes, 0, 2), None);
        assert_eq!(split_embeddings(&[], 2, 2), None);
        assert_eq!(split_embeddings(&bytes, 4, 0), None);
    }
}
