//! Comparison of results under a class's rule (SPEC.md §5.2): what "well formed" and
//! "agree" mean for exact bytes and for cosine similarity of f32 vectors at or above the
//! class threshold, over the whole result or item by item.
//!
//! Written once for the coordinator judging replicas and a validator judging a probe's
//! answer against its own result. Must never decide anything beyond a question about bytes.

use crate::task::PPB;
use crate::ComparisonRule;

/// Whether `result` is well formed under `rule`: exact results are any non-empty bytes;
/// cosine results are a non-empty vector of finite little-endian f32 with a non-zero norm.
pub fn well_formed(rule: &ComparisonRule, result: &[u8]) -> bool {
    match rule {
        ComparisonRule::ExactHash => !result.is_empty(),
        ComparisonRule::Cosine { .. } => vector_ok(result),
        ComparisonRule::CosineEach { dim, .. } => {
            let width = 4 * usize::from(*dim);
            !result.is_empty() && result.len() % width == 0 && result.chunks(width).all(vector_ok)
        }
    }
}

/// A non-empty vector of finite little-endian f32 with a non-zero norm.
fn vector_ok(v: &[u8]) -> bool {
    v.len() % 4 == 0 && !v.is_empty() && floats(v).all(f32::is_finite) && floats(v).any(|x| x != 0.0)
}

fn floats(b: &[u8]) -> impl Iterator<Item = f32> + '_ {
    b.chunks_exact(4).map(|c| <[u8; 4]>::try_from(c).map_or(f32::NAN, f32::from_le_bytes))
}

/// Whether two well-formed results agree under `rule`. Honest numeric noise (different
/// hardware, kernels, thread counts) moves a cosine by far less than any sane threshold, so
/// it is agreement; a different answer is not.
pub fn agree(rule: &ComparisonRule, a: &[u8], b: &[u8]) -> bool {
    match rule {
        ComparisonRule::ExactHash => a == b,
        ComparisonRule::Cosine { min_ppb } => a.len() == b.len() && cosine_at_least(a, b, *min_ppb),
        ComparisonRule::CosineEach { min_ppb, dim } => {
            let width = 4 * usize::from(*dim);
            a.len() == b.len()
                && a.len() % width == 0
                && a.chunks(width).zip(b.chunks(width)).all(|(x, y)| cosine_at_least(x, y, *min_ppb))
        }
    }
}

/// Whether two equally long f32 vectors have a cosine similarity of at least `min_ppb / 1e9`.
fn cosine_at_least(a: &[u8], b: &[u8], min_ppb: u32) -> bool {
    // f64 accumulation so the comparison itself adds no noise worth speaking of.
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in floats(a).zip(floats(b)) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return false;
    }
    dot / (na.sqrt() * nb.sqrt()) >= f64::from(min_ppb) / f64::from(PPB)
}
