//! Latency probes (SPEC.md §13.7), both sides: which probes a worker answers, and a
//! validator timing one probe of a worker on its own clock.
//!
//! Owns the worker's admission rule for probes (signed by a validator its coordinator lists,
//! sent from that validator's own node, naming this worker and a latency class it runs) and
//! what one probe comes to for a validator (`Timing`). Must never turn timings into a score
//! (`cairn_spec::probe::latency_score` does) nor run an executor itself: callers run inputs.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use cairn_p2p::{Network, Peer};
use cairn_spec::{
    ComparisonRule, ErrorReason, Hash32, Object, Objective, Probe, ProbeAnswer, PubKey, RequestBody,
    ResponseBody, Signed, TaskClass, Timing,
};

/// How often a worker asks a coordinator again for its validators when an unknown key
/// probes: a stranger's probes cannot make it ask more often than this.
pub const ASK_VALIDATORS_EVERY: Duration = Duration::from_secs(10);
/// How long a coordinator's list of validators is trusted before it is asked again on the
/// next probe: a validator dropped since (its bond spent) stops being answered within this.
pub const VALIDATORS_TTL: Duration = Duration::from_secs(60);

/// Why a worker does not run a probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not signed by its validator, or not sent from that validator's own node: a request
    /// no peer the worker works with would send (`bad_signature`, at a stranger's cost).
    Stranger(String),
    /// From a listed validator, but not something this worker runs (another worker, class,
    /// coordinator or network, or an input over the class's bound): `malformed`.
    NotHere(String),
}

/// The validators each coordinator lists, as this worker last asked, and the probes each
/// validator has in flight here.
#[derive(Default)]
pub struct Admitted {
    by_coordinator: HashMap<PubKey, (HashSet<PubKey>, Instant)>,
    in_flight: HashSet<PubKey>,
}

impl Admitted {
    /// Whether `coordinator` listed `validator` when last asked.
    pub fn lists(&self, coordinator: &PubKey, validator: &PubKey) -> bool {
        self.by_coordinator.get(coordinator).is_some_and(|(keys, _)| keys.contains(validator))
    }

    /// Whether the list of `coordinator` should be asked for again at `now` before a probe
    /// of `validator` is answered: the validator is not on it, or the list is older than
    /// `VALIDATORS_TTL`; and never more often than `ASK_VALIDATORS_EVERY`.
    pub fn should_ask(&self, coordinator: &PubKey, validator: &PubKey, now: Instant) -> bool {
        match self.by_coordinator.get(coordinator) {
            None => true,
            Some((keys, at)) => {
                let age = now.saturating_duration_since(*at);
                age >= ASK_VALIDATORS_EVERY && (!keys.contains(validator) || age >= VALIDATORS_TTL)
            }
        }
    }

    /// Records `coordinator`'s answer at `now`.
    pub fn set(&mut self, coordinator: PubKey, keys: Vec<PubKey>, now: Instant) {
        self.by_coordinator.insert(coordinator, (keys.into_iter().collect(), now));
    }

    /// Records that `coordinator` was asked at `now` and did not answer: its old list stays,
    /// and it is not asked again before `ASK_VALIDATORS_EVERY`.
    pub fn asked(&mut self, coordinator: PubKey, now: Instant) {
        self.by_coordinator.entry(coordinator).or_insert_with(|| (HashSet::new(), now)).1 = now;
    }

    /// Takes `validator`'s one probe in flight: false when it has one already (a validator
    /// probing faster than answers come only makes its own probes `busy`, never another's).
    pub fn start(&mut self, validator: PubKey) -> bool {
        self.in_flight.insert(validator)
    }

    /// Ends `validator`'s probe in flight.
    pub fn end(&mut self, validator: &PubKey) {
        self.in_flight.remove(validator);
    }
}

/// The first check of a probe, before any other work: signed by its validator and sent from
/// that validator's own node (`sender`, the connection's key).
pub fn check_sender(probe: &Signed<Probe>, sender: Option<PubKey>) -> Result<(), Refusal> {
    if sender != Some(probe.body.validator) {
        return Err(Refusal::Stranger("a probe comes from its validator's own node".into()));
    }
    if !probe.verify() {
        return Err(Refusal::Stranger("the probe's signature does not verify".into()));
    }
    Ok(())
}

/// What a worker checks of a listed validator's probe: for this worker (`me`) on its
/// network, naming one of its coordinators and a latency class it runs there (`classes`,
/// what this worker runs for each coordinator), with an input within the class's bound.
/// Returns the class probed.
pub fn check_target<'a>(
    probe: &Signed<Probe>,
    me: &PubKey,
    network: cairn_spec::Network,
    classes: &'a HashMap<PubKey, Vec<&'a TaskClass>>,
) -> Result<&'a TaskClass, Refusal> {
    let p = &probe.body;
    if p.worker != *me || p.network != network {
        return Err(Refusal::NotHere("the probe names another worker or network".into()));
    }
    let class = classes
        .get(&p.coordinator)
        .and_then(|cs| cs.iter().find(|c| c.id() == p.class))
        .ok_or_else(|| Refusal::NotHere("no class of that id runs here for that coordinator".into()))?;
    if !matches!(class.objective, Objective::Latency(_)) {
        return Err(Refusal::NotHere("only a latency class is probed".into()));
    }
    if p.input.len() > class.max_input_bytes as usize {
        return Err(Refusal::NotHere("the input is over the class's bound".into()));
    }
    Ok(class)
}

/// A worker's signed answer to `probe`.
pub fn answer(probe: &Signed<Probe>, key: &cairn_spec::SigningKey, output: Vec<u8>) -> Signed<ProbeAnswer> {
    Signed::sign(ProbeAnswer { probe: probe.id(), worker: probe.body.worker, output }, key, &aux())
}

/// Fresh BIP340 auxiliary bytes: any value is safe, fresh ones also harden against faults.
fn aux() -> [u8; 32] {
    let mut aux = [0u8; 32];
    let _ = getrandom::fill(&mut aux);
    aux
}

/// Sends `probe` to `peer` and times the answer on this node's clock, waiting at most
/// `slow_ms`: *answered* when the worker named in the probe signed an answer to it whose
/// output is well formed and agrees with `own` (the validator's own result for the input)
/// under `rule`; *wrong* when such a signed answer disagrees; *missing* when none came in
/// time, or any other answer. `None` when the worker said `busy` or `rate_limited`: that
/// tells nothing of its speed, and the validator probes again later. The clock runs from
/// the request, so a validator connects to the worker first or the dial is timed too.
pub async fn time(
    net: &Network,
    peer: &Peer,
    probe: Signed<Probe>,
    own: &[u8],
    rule: &ComparisonRule,
    slow_ms: u32,
) -> Option<Timing> {
    let (id, worker) = (probe.id(), probe.body.worker);
    let started = Instant::now();
    let wait = Duration::from_millis(u64::from(slow_ms));
    let answer = net.request(peer, RequestBody::Probe(Box::new(probe)), wait).await;
    let ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
    Some(match answer {
        Ok(ResponseBody::ProbeAnswer(a)) if a.body.probe == id && a.body.worker == worker && a.verify() => {
            let out = &a.body.output;
            if cairn_spec::compare::well_formed(rule, out) && cairn_spec::compare::agree(rule, out, own) {
                Timing::Answered(ms)
            } else {
                Timing::Wrong
            }
        }
        Ok(ResponseBody::Error { reason: ErrorReason::Busy | ErrorReason::RateLimited, .. }) => return None,
        _ => Timing::Missing,
    })
}

/// A fresh probe of `worker` for `class` of `coordinator`, signed by `validator`: a random
/// nonce, and the input given.
pub fn probe(
    validator: &cairn_spec::SigningKey,
    network: cairn_spec::Network,
    coordinator: PubKey,
    class: Hash32,
    worker: PubKey,
    input: Vec<u8>,
) -> Signed<Probe> {
    let mut nonce = [0u8; 32];
    let _ = getrandom::fill(&mut nonce);
    let p = Probe { network, coordinator, class, validator: validator.public(), worker, nonce, input };
    Signed::sign(p, validator, &aux())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cairn_spec::consensus::ConsensusParams;
    use cairn_spec::{ExecutorKind, LatencyTerms, SigningKey};

    fn key(n: u8) -> SigningKey {
        SigningKey::from_secret_bytes([n; 32]).unwrap()
    }

    fn class(objective: Objective) -> TaskClass {
        TaskClass {
            name: "rev".into(),
            executor: ExecutorKind::Command,
            model_hash: Hash32::ZERO,
            rule: ComparisonRule::ExactHash,
            replication: 2,
            reward_per_unit: 1,
            max_input_bytes: 16,
            lease_secs: 10,
            reveal_secs: 10,
            objective,
        }
    }

    fn latency() -> Objective {
        Objective::Latency(LatencyTerms {
            consensus: ConsensusParams {
                worker_budget_sats: 10,
                validator_budget_sats: 1,
                baseline: 0,
                tolerance: 1,
            },
            fast_ms: 10,
            slow_ms: 1000,
        })
    }

    #[test]
    fn a_worker_runs_only_its_validators_probes_of_its_latency_classes() {
        let (coord, v, me) = (key(1).public(), key(2), key(3).public());
        let fast = class(latency());
        let verified = TaskClass { name: "plain".into(), ..class(Objective::Verified) };
        let classes = HashMap::from([(coord, vec![&fast, &verified])]);
        let net = cairn_spec::Network::Regtest;
        let p = |class: Hash32, worker: PubKey, input: &[u8]| {
            probe(&v, net, coord, class, worker, input.to_vec())
        };
        let ok = p(fast.id(), me, b"abc");
        assert!(check_sender(&ok, Some(v.public())).is_ok());
        assert_eq!(check_target(&ok, &me, net, &classes).unwrap().id(), fast.id());
        // Relayed by another node, or changed after signing: a stranger's.
        assert!(matches!(check_sender(&ok, Some(key(9).public())), Err(Refusal::Stranger(_))));
        let mut forged = ok.clone();
        forged.body.input = b"abd".to_vec();
        assert!(matches!(check_sender(&forged, Some(v.public())), Err(Refusal::Stranger(_))));
        // Not this worker's to run.
        let other = p(fast.id(), key(4).public(), b"abc");
        assert!(matches!(check_target(&other, &me, net, &classes), Err(Refusal::NotHere(_))));
        let plain = p(verified.id(), me, b"abc");
        assert!(matches!(check_target(&plain, &me, net, &classes), Err(Refusal::NotHere(_))));
        let long = p(fast.id(), me, &[7; 17]);
        assert!(matches!(check_target(&long, &me, net, &classes), Err(Refusal::NotHere(_))));
        assert!(matches!(
            check_target(&ok, &me, cairn_spec::Network::Signet, &classes),
            Err(Refusal::NotHere(_))
        ));
    }

    #[test]
    fn an_unknown_key_cannot_make_the_worker_ask_its_coordinator_often() {
        let (coord, v, stranger) = (key(1).public(), key(2).public(), key(5).public());
        let mut a = Admitted::default();
        let t0 = Instant::now();
        assert!(a.should_ask(&coord, &v, t0) && !a.lists(&coord, &v));
        a.set(coord, vec![v], t0);
        assert!(a.lists(&coord, &v) && !a.should_ask(&coord, &v, t0));
        // A stranger makes it ask at most every ASK_VALIDATORS_EVERY.
        assert!(!a.should_ask(&coord, &stranger, t0 + Duration::from_secs(9)));
        assert!(a.should_ask(&coord, &stranger, t0 + ASK_VALIDATORS_EVERY));
        a.asked(coord, t0 + ASK_VALIDATORS_EVERY);
        assert!(a.lists(&coord, &v), "a failed ask keeps the old list");
        assert!(!a.should_ask(&coord, &stranger, t0 + ASK_VALIDATORS_EVERY + Duration::from_secs(1)));
        // A listed validator is asked about again once the list is old: a dropped one stops
        // being answered.
        a.set(coord, vec![v], t0);
        assert!(!a.should_ask(&coord, &v, t0 + Duration::from_secs(59)));
        assert!(a.should_ask(&coord, &v, t0 + VALIDATORS_TTL));
        a.set(coord, vec![], t0 + VALIDATORS_TTL);
        assert!(!a.lists(&coord, &v));
    }

    #[test]
    fn a_validator_has_one_probe_in_flight() {
        let (v, w) = (key(2).public(), key(3).public());
        let mut a = Admitted::default();
        assert!(a.start(v) && !a.start(v), "a second probe of the same validator waits its turn");
        assert!(a.start(w), "another validator is not held up");
        a.end(&v);
        assert!(a.start(v));
    }
}
