//! The majority verdict over replicas, by the class's rule (`cairn_spec::compare` says what
//! "agree" means).
//!
//! Owns when a set of results has a winner. Must never touch workers,
//! rewards or storage: it answers questions about bytes only.

pub use cairn_spec::compare::{agree, well_formed};
use cairn_spec::ComparisonRule;

/// The outcome of comparing the valid results of one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// The results at these indices agree and form the verdict; the others are outvoted.
    /// `clear` is true when at least three votes agree (three staked keys' where any result is
    /// staked) and they are a majority: a dissent is then fraud rather than bad luck, and two
    /// keys of one owner holding two slots of a task can never make an honest result look like
    /// fraud.
    Decided {
        /// Indices of the agreeing results.
        winners: Vec<usize>,
        /// Whether the majority is clear enough to punish dissent as fraud.
        clear: bool,
    },
    /// No group is large enough: more replicas are needed.
    Undecided,
}

/// Judges `results` (all well formed); `light[i]` says whether result `i` comes from a key
/// that was light when drawn (SPEC.md §12.4). `quorum` is how many votes must agree at least
/// (1 when a single unaudited replica is the whole verdict, else 2); the winners must also
/// hold a strict majority of the votes. Where any result comes from a staked key, all the
/// light keys' results together are one vote, which goes to the group holding more than half
/// of them, and a win is clear only with three staked votes: keys that cost nothing cannot
/// outvote a staked key into a ban. Where every result is light (a new network), each counts.
/// Agreement under a tolerance is not transitive, so the group is the largest set of results
/// agreeing with one of them (the first such result on ties, for determinism).
pub fn judge(rule: &ComparisonRule, results: &[&[u8]], light: &[bool], quorum: usize) -> Judgement {
    let is_light = |i: usize| light.get(i).copied().unwrap_or(false);
    let weighed = (0..results.len()).any(|i| !is_light(i));
    let lights_total = (0..results.len()).filter(|i| is_light(*i)).count();
    let staked = |members: &[usize]| members.iter().filter(|i| !is_light(**i)).count();
    let votes = |members: &[usize]| -> usize {
        let lights = members.len() - staked(members);
        if weighed {
            staked(members) + usize::from(lights * 2 > lights_total)
        } else {
            members.len()
        }
    };
    let n = if weighed {
        staked(&(0..results.len()).collect::<Vec<_>>()) + usize::from(lights_total > 0)
    } else {
        results.len()
    };
    let mut best: Vec<usize> = Vec::new();
    for (i, a) in results.iter().enumerate() {
        let group: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(j, b)| *j == i || agree(rule, a, b))
            .map(|(j, _)| j)
            .collect();
        if votes(&group) > votes(&best) {
            best = group;
        }
    }
    let size = votes(&best);
    if n == 0 || size < quorum.max(1) || size * 2 <= n {
        return Judgement::Undecided;
    }
    let clear = if weighed { staked(&best) >= 3 } else { size >= 3 };
    Judgement::Decided { winners: best, clear }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vec_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    const COS: ComparisonRule = ComparisonRule::Cosine { min_ppb: 990_000_000 };

    #[test]
    fn exact_and_cosine_agreement() {
        assert!(agree(&ComparisonRule::ExactHash, b"a", b"a"));
        assert!(!agree(&ComparisonRule::ExactHash, b"a", b"b"));
        let a = vec_bytes(&[1.0, 2.0, 3.0]);
        let noisy = vec_bytes(&[1.0001, 1.9999, 3.0002]);
        let other = vec_bytes(&[3.0, -2.0, 1.0]);
        assert!(agree(&COS, &a, &noisy));
        assert!(!agree(&COS, &a, &other));
        assert!(!agree(&COS, &a, &vec_bytes(&[1.0, 2.0])));
    }

    #[test]
    fn one_wrong_item_in_a_batch_is_a_disagreement_item_by_item() {
        // 256 items of 384 floats; the cheat replaces one item with an unrelated vector.
        let item = |seed: usize| -> Vec<f32> {
            (0..384).map(|i| (((seed * 7919 + i * 104_729) % 1000) as f32 / 500.0) - 1.0).collect()
        };
        let truth: Vec<f32> = (0..256).flat_map(item).collect();
        let mut cheat = truth.clone();
        cheat.splice(0..384, item(9_999));
        let noisy: Vec<f32> =
            truth.iter().enumerate().map(|(i, x)| x + 1e-6 * ((i % 7) as f32 - 3.0)).collect();
        let (t, c, n) = (vec_bytes(&truth), vec_bytes(&cheat), vec_bytes(&noisy));
        let whole = ComparisonRule::Cosine { min_ppb: 990_000_000 };
        let each = ComparisonRule::CosineEach { min_ppb: 990_000_000, dim: 384 };
        assert!(agree(&whole, &t, &c), "one cosine over the batch lets the wrong item pass");
        assert!(!agree(&each, &t, &c), "item by item it is caught");
        assert!(agree(&each, &t, &n), "honest noise passes item by item");
        assert!(well_formed(&each, &t) && !well_formed(&each, &t[..t.len() - 4]));
        let mut zero_item = truth.clone();
        zero_item[384..768].iter_mut().for_each(|x| *x = 0.0);
        assert!(!well_formed(&each, &vec_bytes(&zero_item)), "an all-zero item is not a result");
    }

    #[test]
    fn malformed_results() {
        assert!(!well_formed(&COS, &[1, 2, 3]));
        assert!(!well_formed(&COS, &vec_bytes(&[f32::NAN, 1.0])));
        assert!(!well_formed(&COS, &vec_bytes(&[0.0, 0.0])));
        assert!(!well_formed(&ComparisonRule::ExactHash, b""));
        assert!(well_formed(&COS, &vec_bytes(&[0.5])));
    }

    #[test]
    fn majorities() {
        let r = ComparisonRule::ExactHash;
        let judge = |r: &ComparisonRule, res: &[&[u8]], q: usize| super::judge(r, res, &[], q);
        assert_eq!(judge(&r, &[b"x"], 1), Judgement::Decided { winners: vec![0], clear: false });
        assert_eq!(judge(&r, &[b"x"], 2), Judgement::Undecided);
        assert_eq!(judge(&r, &[b"x", b"y"], 2), Judgement::Undecided);
        // Two against one is a majority but not a clear one: two keys of one owner could be
        // the two.
        assert_eq!(
            judge(&r, &[b"x", b"y", b"x"], 2),
            Judgement::Decided { winners: vec![0, 2], clear: false }
        );
        // Three agreeing results against two: the dissent is fraud.
        let five: [&[u8]; 5] = [b"x", b"y", b"x", b"y", b"x"];
        assert_eq!(judge(&r, &five, 2), Judgement::Decided { winners: vec![0, 2, 4], clear: true });
        assert_eq!(judge(&r, &[b"x", b"y", b"x", b"y"], 2), Judgement::Undecided);
        assert_eq!(judge(&r, &[], 1), Judgement::Undecided);
    }

    #[test]
    fn light_keys_count_as_one_vote_beside_others() {
        let r = ComparisonRule::ExactHash;
        // Two replicas against three light checks: the light keys are one vote.
        let five: [&[u8]; 5] = [b"x", b"x", b"y", b"y", b"y"];
        let light = [false, false, true, true, true];
        assert_eq!(
            super::judge(&r, &five, &light, 2),
            Judgement::Decided { winners: vec![0, 1], clear: false }
        );
        // Two staked keys and one light agreeing against two staked: a win, not a clear one (a
        // clear win needs three staked votes).
        let light = [false, false, true, false, false];
        let five: [&[u8]; 5] = [b"x", b"x", b"x", b"y", b"y"];
        assert_eq!(
            super::judge(&r, &five, &light, 2),
            Judgement::Decided { winners: vec![0, 1, 2], clear: false }
        );
        // Three staked against two: clear.
        let light = [false, false, false, true, false];
        assert_eq!(
            super::judge(&r, &five, &light, 2),
            Judgement::Decided { winners: vec![0, 1, 2], clear: true }
        );
        // The light vote goes only to the group holding most light results: a staked liar
        // with one light ally against three light honest results is no majority.
        let lie: [&[u8]; 5] = [b"lie", b"lie", b"x", b"x", b"x"];
        let light = [false, true, true, true, true];
        assert_eq!(super::judge(&r, &lie, &light, 2), Judgement::Undecided);
        // Only light keys (a new network): every result counts.
        let three: [&[u8]; 3] = [b"x", b"y", b"x"];
        assert_eq!(
            super::judge(&r, &three, &[true, true, true], 2),
            Judgement::Decided { winners: vec![0, 2], clear: false }
        );
    }
}
