//! Executors: what turns a task's input bytes into a canonical result.
//!
//! Owns the executor interface, each executor's declared comparison rule, the canonical form of
//! results, and the limits every executor enforces. Must never touch the network protocol:
//! claims, commitments and reveals are the agent's; an executor sees only bytes in and out.

pub mod chat;
pub mod command;
pub mod embedding;

use cairn_spec::{ComparisonRule, ExecutorKind, Hash32, TaskClass};
use thiserror::Error;

/// Why an executor produced no result.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The input is not what this executor accepts (not retried: the same input fails again).
    #[error("bad input: {0}")]
    BadInput(String),
    /// The run took longer than its limit.
    #[error("time limit of {0} ms exceeded")]
    Timeout(u64),
    /// The result is larger than the limit.
    #[error("result larger than {0} bytes")]
    TooLarge(usize),
    /// The program, model or endpoint failed; may succeed on a retry.
    #[error("executor failed: {0}")]
    Failed(String),
}

/// Something that runs tasks of one executor kind. `run` blocks (the agent calls it on a
/// blocking thread) and returns the canonical result bytes.
pub trait Executor: Send + Sync {
    /// The executor kind this runs.
    fn kind(&self) -> ExecutorKind;
    /// The comparison rule results of this executor are judged by; a class with another
    /// rule is not taken (its verdicts would not match what the executor can promise).
    fn rule(&self) -> ComparisonRule;
    /// SHA-256 of the weights this executor runs (zero when it has none, or when the class
    /// does not pin one).
    fn model_hash(&self) -> Hash32 {
        Hash32::ZERO
    }
    /// Runs one input to its canonical result.
    fn run(&self, input: &[u8]) -> Result<Vec<u8>, ExecError>;
}

/// Whether `exec` can run tasks of `class`: same kind; for a pinned model, the same weights;
/// a tolerance rule no looser than the executor's own needs (exact results satisfy any rule).
pub fn can_run(exec: &dyn Executor, class: &TaskClass) -> Result<(), String> {
    if exec.kind() != class.executor {
        return Err(format!("class {} needs executor {:?}", class.name, class.executor));
    }
    if class.model_hash != Hash32::ZERO && class.model_hash != exec.model_hash() {
        return Err(format!(
            "class {} pins model {} but this worker has {}",
            class.name,
            class.model_hash,
            exec.model_hash()
        ));
    }
    let threshold = |need: u32, have: u32| {
        if have > need {
            Err(format!("class {} asks cosine >= {have} ppb; this executor promises {need} ppb", class.name))
        } else {
            Ok(())
        }
    };
    match (exec.rule(), class.rule) {
        (ComparisonRule::ExactHash, _) => Ok(()),
        (_, ComparisonRule::ExactHash) => Err(format!(
            "class {} compares exact bytes; this executor's results are only equal within a tolerance",
            class.name
        )),
        (ComparisonRule::Cosine { min_ppb: need }, ComparisonRule::Cosine { min_ppb: have }) => {
            threshold(need, have)
        }
        // Items of equal norms (normalised embeddings) each within the tolerance put the whole
        // within it too.
        (ComparisonRule::CosineEach { min_ppb: need, .. }, ComparisonRule::Cosine { min_ppb: have }) => {
            threshold(need, have)
        }
        (
            ComparisonRule::CosineEach { min_ppb: need, dim: mine },
            ComparisonRule::CosineEach { min_ppb: have, dim },
        ) => {
            if dim != mine {
                return Err(format!(
                    "class {} compares items of {dim} floats; this executor's are {mine}",
                    class.name
                ));
            }
            threshold(need, have)
        }
        (ComparisonRule::Cosine { .. }, ComparisonRule::CosineEach { .. }) => Err(format!(
            "class {} compares item by item; this executor promises only the whole result",
            class.name
        )),
    }
}

/// Canonical bytes of an f32 vector result: little-endian, negative zero written as zero.
/// Refuses NaN and infinities, which no honest model emits and no rule can compare.
pub fn canonical_f32(values: &[f32]) -> Result<Vec<u8>, ExecError> {
    let mut out = Vec::with_capacity(values.len() * 4);
    for &v in values {
        if !v.is_finite() {
            return Err(ExecError::Failed("model produced a non-finite value".into()));
        }
        let v = if v == 0.0 { 0.0f32 } else { v };
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// Canonical bytes of a text result: UTF-8 with `\r\n` and `\r` as `\n`, trailing whitespace
/// removed, so two honest runs that differ only in line endings hash the same.
pub fn canonical_text(text: &str) -> Vec<u8> {
    let t = text.replace("\r\n", "\n").replace('\r', "\n");
    t.trim_end().as_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical_f32(&[-0.0, 1.0]).unwrap(), [0, 0, 0, 0, 0, 0, 0x80, 0x3f]);
        assert!(canonical_f32(&[f32::NAN]).is_err());
        assert!(canonical_f32(&[f32::INFINITY]).is_err());
        assert_eq!(canonical_text("a\r\nb\rc \n\n"), b"a\nb\nc");
    }
}
