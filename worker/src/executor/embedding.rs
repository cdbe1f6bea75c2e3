//! Sentence embeddings with all-MiniLM-L6-v2, run by candle (BERT from `candle-transformers`)
//! and tokenised by Hugging Face `tokenizers`: mean pooling over the real tokens and L2
//! normalisation, as sentence-transformers does.
//!
//! Owns loading the model from a directory (weights checked by SHA-256) and the embedding
//! task format. Must never download anything (that is `models`) nor do matrix math by hand.
//!
//! Task format: the input is UTF-8 text; its sentences are its lines (split on `\n`, so an
//! input of n newlines holds n + 1 sentences), at most [`MAX_SENTENCES`]. The result is, per
//! sentence in order, 384 little-endian f32 (canonical per [`super::canonical_f32`]).

use std::path::{Path, PathBuf};

use cairn_spec::{ComparisonRule, ExecutorKind, Hash32};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use sha2::{Digest, Sha256};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::{canonical_f32, ExecError, Executor};

/// Most sentences in one task: as many embeddings as fit an inline result (42), since results
/// travel inline and a result that cannot be revealed would be a miss.
pub const MAX_SENTENCES: usize = cairn_spec::task::MAX_INLINE_BYTES / (4 * DIM);
/// Tokens per sentence the model reads (sentence-transformers' `max_seq_length`); longer
/// sentences are truncated, as the reference implementation does.
pub const MAX_TOKENS: usize = 256;
/// Width of one embedding.
pub const DIM: usize = 384;
/// The agreement rule embedding results are judged by: cosine ≥ 0.9999, sentence by
/// sentence. Honest runs on different CPUs, thread counts or batch paddings differ by ~1e-7;
/// a different model or a made-up vector lands far below, even for one sentence of a batch.
pub const RULE: ComparisonRule = ComparisonRule::CosineEach { min_ppb: 999_900_000, dim: DIM as u16 };

/// The files a model directory must hold.
pub const FILES: [&str; 3] = ["model.safetensors", "tokenizer.json", "config.json"];

/// A loaded sentence-embedding model.
pub struct MiniLm {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    weights_sha256: Hash32,
}

fn failed(what: &str) -> impl FnOnce(String) -> ExecError + '_ {
    move |e| ExecError::Failed(format!("{what}: {e}"))
}

/// SHA-256 of a file's bytes (plain, not tagged: it names a file, as a class's model hash does).
pub fn file_sha256(bytes: &[u8]) -> Hash32 {
    Hash32(Sha256::digest(bytes).into())
}

impl MiniLm {
    /// Loads the model in `dir`. When `expected` is given, refuses weights with another SHA-256.
    pub fn load(dir: &Path, expected: Option<Hash32>) -> Result<Self, ExecError> {
        let read = |name: &str| -> Result<Vec<u8>, ExecError> {
            let p: PathBuf = dir.join(name);
            std::fs::read(&p).map_err(|e| {
                ExecError::Failed(format!(
                    "{}: {e} (fetch the model with `cairn models fetch minilm`)",
                    p.display()
                ))
            })
        };
        let weights = read("model.safetensors")?;
        let weights_sha256 = file_sha256(&weights);
        if let Some(want) = expected {
            if want != weights_sha256 {
                return Err(ExecError::Failed(format!(
                    "{}/model.safetensors has SHA-256 {weights_sha256}, expected {want}",
                    dir.display()
                )));
            }
        }
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| ExecError::Failed(format!("config.json: {e}")))?;
        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| failed("tokenizer.json")(e.to_string()))?;
        // The file ships fixed 128-token padding and truncation; sentence-transformers pads to
        // the batch's longest and truncates at its own max_seq_length instead.
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..Default::default() }))
            .map_err(|e| failed("tokenizer")(e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| failed("model.safetensors")(e.to_string()))?;
        let model = BertModel::load(vb, &config).map_err(|e| failed("model")(e.to_string()))?;
        Ok(MiniLm { model, tokenizer, device, weights_sha256 })
    }

    /// SHA-256 of the loaded weights file.
    pub fn weights_sha256(&self) -> Hash32 {
        self.weights_sha256
    }

    /// Unit-length embeddings of `sentences`, in order.
    pub fn embed(&self, sentences: &[&str]) -> Result<Vec<Vec<f32>>, ExecError> {
        if sentences.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self
            .tokenizer
            .encode_batch(sentences.to_vec(), true)
            .map_err(|e| failed("tokenize")(e.to_string()))?;
        let (n, len) = (enc.len(), enc.first().map_or(0, |e| e.get_ids().len()));
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for e in &enc {
            ids.extend_from_slice(e.get_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let t = |e: candle_core::Error| ExecError::Failed(format!("inference: {e}"));
        let ids = Tensor::from_vec(ids, (n, len), &self.device).map_err(t)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device).map_err(t)?;
        let types = ids.zeros_like().map_err(t)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask)).map_err(t)?;
        // Mean over the real tokens only: padding must not move a sentence's vector.
        let m = mask.to_dtype(DType::F32).map_err(t)?.unsqueeze(2).map_err(t)?;
        let summed = hidden.broadcast_mul(&m).map_err(t)?.sum(1).map_err(t)?;
        let counts = m.sum(1).map_err(t)?;
        let mean = summed.broadcast_div(&counts).map_err(t)?;
        let norm = mean.sqr().map_err(t)?.sum_keepdim(1).map_err(t)?.sqrt().map_err(t)?;
        let norm = norm.clamp(1e-12f32, f32::MAX).map_err(t)?;
        let unit = mean.broadcast_div(&norm).map_err(t)?;
        unit.to_vec2::<f32>().map_err(t)
    }
}

/// Splits an embedding task's input into its sentences.
pub fn sentences(input: &[u8]) -> Result<Vec<&str>, ExecError> {
    let text = std::str::from_utf8(input).map_err(|_| ExecError::BadInput("input is not UTF-8".into()))?;
    let s: Vec<&str> = text.split('\n').collect();
    if s.len() > MAX_SENTENCES {
        return Err(ExecError::BadInput(format!("{} sentences; at most {MAX_SENTENCES}", s.len())));
    }
    Ok(s)
}

impl Executor for MiniLm {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Embedding
    }

    fn rule(&self) -> ComparisonRule {
        RULE
    }

    fn model_hash(&self) -> Hash32 {
        self.weights_sha256
    }

    fn run(&self, input: &[u8]) -> Result<Vec<u8>, ExecError> {
        let v = self.embed(&sentences(input)?)?;
        canonical_f32(&v.concat())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sentence_splitting() {
        assert_eq!(sentences(b"a\nb").unwrap(), ["a", "b"]);
        assert_eq!(sentences(b"").unwrap(), [""]);
        assert!(sentences(&[0xff]).is_err());
        assert!(sentences("x\n".repeat(MAX_SENTENCES).as_bytes()).is_err());
    }
}
