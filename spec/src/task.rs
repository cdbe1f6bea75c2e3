//! Task classes and tasks (SPEC.md §5.1–5.3), and the inline-or-blob payload they carry.
//!
//! Owns the byte layouts and the validity rules of these objects. Must never decide how a
//! task is scheduled or verified: that is the coordinator's state machine.

use crate::codec::{expect_version, Decode, DecodeError, Encode, Reader, Writer};
use crate::consensus::{ConsensusParams, MAX_MONEY_SATS, SCORE_SCALE};
use crate::hash::{content_hash, Hash32, Tag};
use crate::keys::PubKey;
use crate::network::Network;
use crate::signed::Object;

/// Largest payload carried inline in a message; larger ones are content-addressed blobs.
pub const MAX_INLINE_BYTES: usize = 64 * 1024;
/// Largest blob a task may name.
pub const MAX_BLOB_BYTES: u64 = 256 * 1024 * 1024;
/// Longest task-class name.
pub const MAX_CLASS_NAME: usize = 32;
/// Most replicas a class may ask for.
pub const MAX_REPLICATION: u8 = 16;
/// One, in parts per billion (the scale of tolerance thresholds).
pub const PPB: u32 = 1_000_000_000;

/// Task input or result: inline bytes, or a reference to a content-addressed blob.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    /// Bytes carried in the message (at most `MAX_INLINE_BYTES`).
    Inline(#[serde(with = "crate::serde_hex")] Vec<u8>),
    /// A blob fetched on demand; `hash` is its content hash.
    Blob {
        /// `content_hash` of the blob's bytes.
        hash: Hash32,
        /// The blob's length in bytes.
        size: u64,
    },
}

impl Payload {
    /// The content hash of the bytes this payload stands for.
    pub fn content_hash(&self) -> Hash32 {
        match self {
            Payload::Inline(b) => content_hash(b),
            Payload::Blob { hash, .. } => *hash,
        }
    }

    /// Length of the bytes this payload stands for.
    pub fn size(&self) -> u64 {
        match self {
            Payload::Inline(b) => b.len() as u64,
            Payload::Blob { size, .. } => *size,
        }
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        match self {
            Payload::Inline(b) => {
                w.u8(0).bytes_u32(b);
            }
            Payload::Blob { hash, size } => {
                w.u8(1).raw(&hash.0).u64(*size);
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>, field: &'static str) -> Result<Self, DecodeError> {
        match r.u8(field)? {
            0 => Ok(Payload::Inline(r.bytes_u32(field, MAX_INLINE_BYTES)?.to_vec())),
            1 => {
                let hash = Hash32(r.array(field)?);
                let size = r.u64(field)?;
                if size > MAX_BLOB_BYTES {
                    return Err(DecodeError::TooLong {
                        field,
                        len: usize::try_from(size).unwrap_or(usize::MAX),
                        max: MAX_BLOB_BYTES as usize,
                    });
                }
                Ok(Payload::Blob { hash, size })
            }
            tag => Err(DecodeError::InvalidTag { field, tag }),
        }
    }
}

/// What runs a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    /// Sentence embeddings (code 1).
    Embedding,
    /// An external command: input on stdin, result on stdout (code 2).
    Command,
    /// An OpenAI-compatible chat completion, greedy with a seed (code 3).
    ChatCompletion,
}

impl ExecutorKind {
    const fn code(self) -> u8 {
        match self {
            ExecutorKind::Embedding => 1,
            ExecutorKind::Command => 2,
            ExecutorKind::ChatCompletion => 3,
        }
    }
}

/// How two results of the same task are judged to agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ComparisonRule {
    /// Identical canonical result bytes (code 1).
    ExactHash,
    /// Vectors of little-endian f32 whose cosine similarity is at least `min_ppb / 1e9`
    /// (code 2). A fixed-point threshold keeps floats out of the canonical encoding.
    Cosine {
        /// Threshold in parts per billion, at most 1e9.
        min_ppb: u32,
    },
    /// Sequences of `dim`-wide vectors of little-endian f32 (one per item of the input, as a
    /// batch of sentence embeddings), agreeing when they hold as many items and every pair of
    /// items has a cosine similarity of at least `min_ppb / 1e9` (code 3). One wrong item in a
    /// batch is a disagreement, however long the batch.
    CosineEach {
        /// Threshold in parts per billion, at most 1e9.
        min_ppb: u32,
        /// Floats per item, at least 1.
        dim: u16,
    },
}

/// The `model_hash` a chat-completion class pins (SPEC.md §5.2): the SHA-256 of its generation
/// settings, so that a worker whose endpoint would run another model, seed or token limit
/// (and so answer differently, honestly) does not take the class.
pub fn chat_settings_hash(model: &str, seed: u64, max_tokens: u32) -> Hash32 {
    let text = format!(
        "cairn/chat-settings/1\nmodel={model}\ntemperature=0\ntop_p=1\nseed={seed}\nmax_tokens={max_tokens}\n"
    );
    crate::hash::sha256(text.as_bytes())
}

/// What a class pays for (SPEC.md §5.2, §13).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Objective {
    /// Replicas agree and each verified unit earns `reward_per_unit` (a version 1 class).
    #[default]
    Verified,
    /// Verified as above, and each epoch's budget shared by the validators' consensus of how
    /// fast each worker answers correctly, timed by their probes (objective code 2, SPEC.md
    /// §13.7).
    Latency(crate::probe::LatencyTerms),
    /// Each epoch's budget shared by the validators' consensus of how good each worker's
    /// outputs are against ground truth only validators hold (code 3). Workers of different
    /// quality answer differently, so replicas are not compared: every well-formed result is
    /// a verified unit, no audit replica is drawn, and no unit earns `reward_per_unit` (the
    /// budget is the pay, SPEC.md §13).
    Quality(ConsensusParams),
}

impl Objective {
    /// The consensus terms of a scored objective; `None` for `Verified`.
    pub fn terms(&self) -> Option<&ConsensusParams> {
        match self {
            Objective::Verified => None,
            Objective::Latency(t) => Some(&t.consensus),
            Objective::Quality(t) => Some(t),
        }
    }

    /// Whether replicas' results are compared for agreement (all but quality classes).
    pub fn compares_results(&self) -> bool {
        !matches!(self, Objective::Quality(_))
    }
}

/// A class of tasks with its executor, model and verification rule.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskClass {
    /// Operator's name for the class: 1–32 bytes of `[a-z0-9._-]`.
    pub name: String,
    /// Executor kind.
    pub executor: ExecutorKind,
    /// Plain SHA-256 of the model weights file (all zeros when the executor has none).
    pub model_hash: Hash32,
    /// Agreement rule.
    pub rule: ComparisonRule,
    /// Replicas per task (1–16), before any audit replica.
    pub replication: u8,
    /// Reward per unit of work, in satoshis.
    pub reward_per_unit: u64,
    /// Largest input accepted, in bytes.
    pub max_input_bytes: u32,
    /// Seconds a claim lease lasts.
    pub lease_secs: u32,
    /// Seconds allowed for reveals once commitments are closed.
    pub reveal_secs: u32,
    /// What the class pays for: verified units alone, or also a scored objective.
    #[serde(default)]
    pub objective: Objective,
}

impl TaskClass {
    /// Object version of a class whose objective is `Verified`.
    pub const VERSION: u8 = 1;
    /// Object version of a class with a scored objective (its terms follow `reveal_secs`).
    pub const VERSION_SCORED: u8 = 2;
}

fn valid_class_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CLASS_NAME
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

impl Encode for TaskClass {
    fn encode(&self, w: &mut Writer) {
        let version = if self.objective.terms().is_some() { Self::VERSION_SCORED } else { Self::VERSION };
        w.u8(version).bytes_u8(self.name.as_bytes()).u8(self.executor.code());
        w.raw(&self.model_hash.0);
        match self.rule {
            ComparisonRule::ExactHash => {
                w.u8(1);
            }
            ComparisonRule::Cosine { min_ppb } => {
                w.u8(2).u32(min_ppb);
            }
            ComparisonRule::CosineEach { min_ppb, dim } => {
                w.u8(3).u32(min_ppb).u16(dim);
            }
        }
        w.u8(self.replication)
            .u64(self.reward_per_unit)
            .u32(self.max_input_bytes)
            .u32(self.lease_secs)
            .u32(self.reveal_secs);
        let (code, terms) = match &self.objective {
            Objective::Verified => return,
            Objective::Latency(t) => (2, &t.consensus),
            Objective::Quality(t) => (3, t),
        };
        w.u8(code)
            .u64(terms.worker_budget_sats)
            .u64(terms.validator_budget_sats)
            .u32(terms.baseline)
            .u32(terms.tolerance);
        if let Objective::Latency(t) = &self.objective {
            w.u32(t.fast_ms).u32(t.slow_ms);
        }
    }
}

impl Decode for TaskClass {
    const NAME: &'static str = "task class";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8("version")?;
        if version != Self::VERSION && version != Self::VERSION_SCORED {
            return Err(DecodeError::UnknownVersion { object: Self::NAME, version });
        }
        let name = std::str::from_utf8(r.bytes_u8("name", MAX_CLASS_NAME)?)
            .ok()
            .filter(|s| valid_class_name(s))
            .ok_or(DecodeError::InvalidValue { field: "name", reason: "must be 1-32 bytes of [a-z0-9._-]" })?
            .to_owned();
        let executor = match r.u8("executor")? {
            1 => ExecutorKind::Embedding,
            2 => ExecutorKind::Command,
            3 => ExecutorKind::ChatCompletion,
            tag => return Err(DecodeError::InvalidTag { field: "executor", tag }),
        };
        let model_hash = Hash32(r.array("model_hash")?);
        let rule = match r.u8("rule")? {
            1 => ComparisonRule::ExactHash,
            2 => {
                let min_ppb = r.u32("rule")?;
                if min_ppb > PPB {
                    return Err(DecodeError::InvalidValue {
                        field: "rule",
                        reason: "cosine threshold above 1",
                    });
                }
                ComparisonRule::Cosine { min_ppb }
            }
            3 => {
                let min_ppb = r.u32("rule")?;
                if min_ppb > PPB {
                    return Err(DecodeError::InvalidValue {
                        field: "rule",
                        reason: "cosine threshold above 1",
                    });
                }
                let dim = r.u16("rule")?;
                if dim == 0 {
                    return Err(DecodeError::InvalidValue { field: "rule", reason: "item width zero" });
                }
                ComparisonRule::CosineEach { min_ppb, dim }
            }
            tag => return Err(DecodeError::InvalidTag { field: "rule", tag }),
        };
        let replication = r.u8("replication")?;
        if replication == 0 || replication > MAX_REPLICATION {
            return Err(DecodeError::InvalidValue { field: "replication", reason: "must be 1-16" });
        }
        let reward_per_unit = r.u64("reward_per_unit")?;
        let max_input_bytes = r.u32("max_input_bytes")?;
        if u64::from(max_input_bytes) > MAX_BLOB_BYTES {
            return Err(DecodeError::InvalidValue {
                field: "max_input_bytes",
                reason: "above the blob limit",
            });
        }
        let lease_secs = r.u32("lease_secs")?;
        let reveal_secs = r.u32("reveal_secs")?;
        if lease_secs == 0 || reveal_secs == 0 {
            return Err(DecodeError::InvalidValue {
                field: "deadlines",
                reason: "must be at least one second",
            });
        }
        let objective = if version == Self::VERSION {
            Objective::Verified
        } else {
            let code = r.u8("objective")?;
            let terms = ConsensusParams {
                worker_budget_sats: r.u64("objective")?,
                validator_budget_sats: r.u64("objective")?,
                baseline: r.u32("objective")?,
                tolerance: r.u32("objective")?,
            };
            let objective = match code {
                2 => {
                    let t = crate::probe::LatencyTerms {
                        consensus: terms,
                        fast_ms: r.u32("objective")?,
                        slow_ms: r.u32("objective")?,
                    };
                    if !t.valid() {
                        return Err(DecodeError::InvalidValue {
                            field: "objective",
                            reason: "latency times must have fast_ms < slow_ms <= 600000",
                        });
                    }
                    Objective::Latency(t)
                }
                3 => Objective::Quality(terms),
                tag => return Err(DecodeError::InvalidTag { field: "objective", tag }),
            };
            if terms.worker_budget_sats > MAX_MONEY_SATS
                || terms.validator_budget_sats > MAX_MONEY_SATS
                || terms.baseline > SCORE_SCALE
                || terms.tolerance > SCORE_SCALE
            {
                return Err(DecodeError::InvalidValue {
                    field: "objective",
                    reason: "a budget above all the money, or a score above the scale",
                });
            }
            objective
        };
        Ok(TaskClass {
            name,
            executor,
            model_hash,
            rule,
            replication,
            reward_per_unit,
            max_input_bytes,
            lease_secs,
            reveal_secs,
            objective,
        })
    }
}

impl Object for TaskClass {
    const TAG: Tag = Tag::TaskClass;
}

/// A unit of AI work submitted to a coordinator. Its id is the tagged hash of its encoding.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Task {
    /// Network of the coordinator's chain.
    pub network: Network,
    /// The coordinator the task is submitted to (no replay across coordinators).
    pub coordinator: PubKey,
    /// Id of the task class.
    pub class: Hash32,
    /// Requester's key.
    pub requester: PubKey,
    /// Requester-chosen number so the same input can be submitted twice.
    pub nonce: u64,
    /// Billable units of work (at least 1), checked against the input by the coordinator.
    pub units: u32,
    /// Most the requester pays, in satoshis.
    pub budget_sats: u64,
    /// Submission time, unix seconds (informational; deadlines run from acceptance).
    pub created_at: u64,
    /// The input.
    pub input: Payload,
}

impl Task {
    /// Object version.
    pub const VERSION: u8 = 1;
}

impl Encode for Task {
    fn encode(&self, w: &mut Writer) {
        w.u8(Self::VERSION);
        self.network.encode(w);
        self.coordinator.encode(w);
        w.raw(&self.class.0);
        self.requester.encode(w);
        w.u64(self.nonce).u32(self.units).u64(self.budget_sats).u64(self.created_at);
        self.input.encode(w);
    }
}

impl Decode for Task {
    const NAME: &'static str = "task";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_version(r, Self::NAME, Self::VERSION)?;
        let network = Network::decode(r)?;
        let coordinator = PubKey::decode(r, "coordinator")?;
        let class = Hash32(r.array("class")?);
        let requester = PubKey::decode(r, "requester")?;
        let nonce = r.u64("nonce")?;
        let units = r.u32("units")?;
        if units == 0 {
            return Err(DecodeError::InvalidValue { field: "units", reason: "must be at least 1" });
        }
        let budget_sats = r.u64("budget_sats")?;
        let created_at = r.u64("created_at")?;
        let input = Payload::decode(r, "input")?;
        Ok(Task { network, coordinator, class, requester, nonce, units, budget_sats, created_at, input })
    }
}

impl Object for Task {
    const TAG: Tag = Tag::Task;
}
