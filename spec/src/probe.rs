//! Latency probes (SPEC.md §13.7): what a validator sends a worker to time it, what the
//! worker signs back, and how a validator's timings of a worker become its score.
//!
//! Owns the probe and answer layouts, a latency class's timing terms and the timing-to-score
//! map, so every honest validator turns the same timings into the same score. Must never
//! time anything or judge an output: the clock and the comparison with the validator's own
//! result are the validator's (a probe's time is an argument here).

use crate::codec::{expect_version, Decode, DecodeError, Encode, Reader, Writer};
use crate::consensus::{ConsensusParams, SCORE_SCALE};
use crate::hash::{Hash32, Tag};
use crate::keys::PubKey;
use crate::network::Network;
use crate::signed::{Object, Signer};
use crate::task::MAX_INLINE_BYTES;

/// Most bytes a probe answer's output holds (a batch of embeddings fits many times over).
pub const MAX_PROBE_OUTPUT: usize = 256 * 1024;
/// Longest a latency class may call slow, in milliseconds (ten minutes).
pub const MAX_SLOW_MS: u32 = 600_000;

/// A latency class's terms: its consensus terms, and the times its scores are measured
/// against. An answer in `fast_ms` or less scores the whole scale, one in `slow_ms` or more
/// scores 0, and between them the score falls in a straight line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LatencyTerms {
    /// How the epoch's budget is shared (SPEC.md §13.3).
    #[serde(flatten)]
    pub consensus: ConsensusParams,
    /// At or below this many milliseconds, a worker scores `SCORE_SCALE`.
    pub fast_ms: u32,
    /// At or above this many milliseconds, a worker scores 0; also how long a validator
    /// waits for an answer. More than `fast_ms`, at most `MAX_SLOW_MS`.
    pub slow_ms: u32,
}

impl LatencyTerms {
    /// Whether the times are usable: `fast_ms < slow_ms <= MAX_SLOW_MS`.
    pub fn valid(&self) -> bool {
        self.fast_ms < self.slow_ms && self.slow_ms <= MAX_SLOW_MS
    }
}

/// What one probe of a worker came to, as its validator saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "ms")]
pub enum Timing {
    /// A signed answer that agrees with the validator's own result, this many milliseconds
    /// after the probe was sent.
    Answered(u32),
    /// A signed answer that does not agree with the validator's own result.
    Wrong,
    /// No usable answer within `slow_ms` (none, a refusal, or one not signed by the worker).
    Missing,
}

/// A worker's latency score from its validator's timings of it over an epoch (SPEC.md
/// §13.7): 0 with no timing or with any wrong answer (speed counts among correct results
/// only); otherwise the median time `m` (the lower of the middle two), a missing answer
/// counting as `slow_ms`, scored `SCORE_SCALE · (slow_ms − m) / (slow_ms − fast_ms)`,
/// clamped to the scale. Terms that are not `valid` score 0.
pub fn latency_score(terms: &LatencyTerms, timings: &[Timing]) -> u32 {
    if !terms.valid() || timings.is_empty() || timings.contains(&Timing::Wrong) {
        return 0;
    }
    let mut ms: Vec<u32> = timings
        .iter()
        .map(|t| match t {
            Timing::Answered(ms) => (*ms).min(terms.slow_ms),
            Timing::Wrong | Timing::Missing => terms.slow_ms,
        })
        .collect();
    ms.sort_unstable();
    let Some(&m) = ms.get((ms.len() - 1) / 2) else { return 0 };
    if m <= terms.fast_ms {
        return SCORE_SCALE;
    }
    let span = u64::from(terms.slow_ms - terms.fast_ms);
    let left = u64::from(terms.slow_ms - m);
    u32::try_from(u64::from(SCORE_SCALE) * left / span).unwrap_or(0)
}

/// A validator's request that a worker run one input of a latency class now, so the
/// validator can time the answer on its own clock. Signed by the validator; a worker answers
/// only validators its coordinator admitted. The nonce makes each probe's id fresh; the
/// validator chooses inputs no worker can have answered before.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Probe {
    /// Network.
    pub network: Network,
    /// The coordinator whose class is probed.
    pub coordinator: PubKey,
    /// The class id.
    pub class: Hash32,
    /// The validator.
    pub validator: PubKey,
    /// The worker asked.
    pub worker: PubKey,
    /// 32 bytes the validator chose.
    #[serde(with = "crate::work::salt_hex")]
    pub nonce: [u8; 32],
    /// The input, at most `MAX_INLINE_BYTES`.
    #[serde(with = "crate::serde_hex")]
    pub input: Vec<u8>,
}

impl Probe {
    /// Object version.
    pub const VERSION: u8 = 1;
}

impl Encode for Probe {
    fn encode(&self, w: &mut Writer) {
        w.u8(Self::VERSION);
        self.network.encode(w);
        self.coordinator.encode(w);
        w.raw(&self.class.0);
        self.validator.encode(w);
        self.worker.encode(w);
        w.raw(&self.nonce).bytes_u32(&self.input);
    }
}

impl Decode for Probe {
    const NAME: &'static str = "probe";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_version(r, Self::NAME, Self::VERSION)?;
        let network = Network::decode(r)?;
        let coordinator = PubKey::decode(r, "coordinator")?;
        let class = Hash32(r.array("class")?);
        let validator = PubKey::decode(r, "validator")?;
        let worker = PubKey::decode(r, "worker")?;
        if worker == validator {
            return Err(DecodeError::InvalidValue { field: "worker", reason: "a validator probing itself" });
        }
        let nonce = r.array("nonce")?;
        let input = r.bytes_u32("input", MAX_INLINE_BYTES)?.to_vec();
        Ok(Probe { network, coordinator, class, validator, worker, nonce, input })
    }
}

impl Object for Probe {
    const TAG: Tag = Tag::Probe;
}

impl Signer for Probe {
    fn signer(&self) -> &PubKey {
        &self.validator
    }
}

/// A worker's answer to a probe: its result for the probe's input. Signed by the worker, so
/// a validator holding a wrong answer can show who gave it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProbeAnswer {
    /// The probe's id.
    pub probe: Hash32,
    /// The worker.
    pub worker: PubKey,
    /// The result, at most `MAX_PROBE_OUTPUT` bytes.
    #[serde(with = "crate::serde_hex")]
    pub output: Vec<u8>,
}

impl ProbeAnswer {
    /// Object version.
    pub const VERSION: u8 = 1;
}

impl Encode for ProbeAnswer {
    fn encode(&self, w: &mut Writer) {
        w.u8(Self::VERSION).raw(&self.probe.0);
        self.worker.encode(w);
        w.bytes_u32(&self.output);
    }
}

impl Decode for ProbeAnswer {
    const NAME: &'static str = "probe answer";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_version(r, Self::NAME, Self::VERSION)?;
        Ok(ProbeAnswer {
            probe: Hash32(r.array("probe")?),
            worker: PubKey::decode(r, "worker")?,
            output: r.bytes_u32("output", MAX_PROBE_OUTPUT)?.to_vec(),
        })
    }
}

impl Object for ProbeAnswer {
    const TAG: Tag = Tag::ProbeAnswer;
}

impl Signer for ProbeAnswer {
    fn signer(&self) -> &PubKey {
        &self.worker
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    fn terms(fast_ms: u32, slow_ms: u32) -> LatencyTerms {
        LatencyTerms {
            consensus: ConsensusParams {
                worker_budget_sats: 1,
                validator_budget_sats: 1,
                baseline: 0,
                tolerance: 1,
            },
            fast_ms,
            slow_ms,
        }
    }

    #[test]
    fn timings_map_to_scores() {
        use Timing::*;
        let t = terms(100, 1100);
        assert_eq!(latency_score(&t, &[]), 0);
        assert_eq!(latency_score(&t, &[Answered(50)]), SCORE_SCALE);
        assert_eq!(latency_score(&t, &[Answered(100)]), SCORE_SCALE);
        assert_eq!(latency_score(&t, &[Answered(600)]), 500_000);
        assert_eq!(latency_score(&t, &[Answered(1100)]), 0);
        assert_eq!(latency_score(&t, &[Answered(5000)]), 0);
        // The median, the lower of the middle two; a missing answer counts as slow.
        assert_eq!(latency_score(&t, &[Answered(900), Answered(100), Missing, Answered(600)]), 500_000);
        assert_eq!(latency_score(&t, &[Missing, Answered(101), Answered(101)]), 999_000);
        // One wrong answer and the worker scores 0, however fast.
        assert_eq!(latency_score(&t, &[Answered(1), Answered(1), Wrong]), 0);
        // Unusable terms score nothing.
        assert_eq!(latency_score(&terms(5, 5), &[Answered(1)]), 0);
        assert_eq!(latency_score(&terms(5, MAX_SLOW_MS + 1), &[Answered(1)]), 0);
    }

    #[test]
    fn probes_and_answers_round_trip_and_bad_ones_do_not_decode() {
        let v = SigningKey::from_secret_bytes([1; 32]).unwrap().public();
        let w = SigningKey::from_secret_bytes([2; 32]).unwrap().public();
        let p = Probe {
            network: Network::Regtest,
            coordinator: v,
            class: Hash32([3; 32]),
            validator: v,
            worker: w,
            nonce: [4; 32],
            input: b"hello".to_vec(),
        };
        assert_eq!(Probe::from_bytes(&p.to_bytes()).unwrap(), p);
        let a = ProbeAnswer { probe: p.id(), worker: w, output: vec![1, 2, 3] };
        assert_eq!(ProbeAnswer::from_bytes(&a.to_bytes()).unwrap(), a);
        assert!(Probe::from_bytes(&Probe { worker: v, ..p.clone() }.to_bytes()).is_err());
        assert!(Probe::from_bytes(&Probe { input: vec![0; MAX_INLINE_BYTES + 1], ..p }.to_bytes()).is_err());
        assert!(ProbeAnswer::from_bytes(
            &ProbeAnswer { output: vec![0; MAX_PROBE_OUTPUT + 1], ..a }.to_bytes()
        )
        .is_err());
    }
}
