//! The devnet's quality subnet (SPEC.md §13): a quality class of sentence embeddings scored
//! on real labelled sentences, workers of different real quality, and bonded validators.
//!
//! - Workers: the devnet's MiniLM workers, plus two demo personas run here: one embeds only
//!   each sentence's first two words with the same model (a weaker executor), one answers the
//!   same vector for every sentence (a lazy one). They exist to show the consensus at work and
//!   are named as such wherever they appear.
//! - Validators: each holds the labelled sentences (UCI Sentiment Labelled Sentences, from a
//!   registry package, `cairn_worker::datasets`), submits them as ordinary tasks of the class
//!   (a task carries no label, and a task from a validator looks like any other; the set is
//!   public, so a worker could look labels up — a real subnet holds its labels out), scores each
//!   worker by how well its embeddings separate the labels (`cairn_worker::evaluate`), commits
//!   its sheet for epoch `e` once `e` closes and reveals it once `e + 1` closes, over p2p. Each
//!   is bonded by a coinbase output the devnet mines to its bond key.
//!
//! Owns the personas and the validators' loop. Must never decide a share: the coordinator's
//! consensus does, and `cairn audit epoch` recomputes it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use cairn_p2p::{Acceptance, Network, NetworkConfig, NetworkEvent, Peer};
use cairn_spec::{
    ComparisonRule, ErrorReason, ExecutorKind, Hash32, PubKey, RequestBody, ResponseBody, ScoreCommit,
    ScoreReveal, Signed, SigningKey, ValidatorRegistration,
};
use cairn_worker::datasets::Labelled;
use cairn_worker::executor::{embedding, ExecError, Executor};
use serde_json::{json, Value};

/// The quality class's name.
pub const CLASS: &str = "sentiment";
/// Sentences per evaluation task.
const PER_TASK: usize = 8;
/// Items of each worker a validator keeps to score it (the newest).
const WINDOW: usize = 200;
/// Items of a worker a validator needs before it scores it (half of each label, balanced):
/// fewer say too little, and a worker it cannot yet judge is left off its sheet (it scores 0
/// there).
const MIN_ITEMS: usize = 40;
/// Evaluation tasks a validator waits on at once (the oldest are given up).
const MAX_PENDING: usize = 64;

/// The class's `[[class]]` table.
pub fn class_toml() -> String {
    format!(
        r#"
[[class]]
name = "{CLASS}"
executor = "embedding"
rule = {{ cosine_each = {{ threshold = 0.9999, dim = 384 }} }}
replication = 1
reward_per_unit = 0
max_input_bytes = 8192
lease_secs = 60
reveal_secs = 60
objective = {{ kind = "quality", worker_budget_sats = 20000, validator_budget_sats = 2000, baseline_ppm = 500000, tolerance_ppm = 100000 }}
"#
    )
}

/// A demo persona: the model given only each sentence's first two words.
pub struct FirstWords(pub Arc<embedding::MiniLm>);

impl Executor for FirstWords {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Embedding
    }
    fn rule(&self) -> ComparisonRule {
        embedding::RULE
    }
    fn run(&self, input: &[u8]) -> Result<Vec<u8>, ExecError> {
        let text =
            std::str::from_utf8(input).map_err(|_| ExecError::BadInput("input is not UTF-8".into()))?;
        let short: Vec<String> =
            text.split('\n').map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" ")).collect();
        self.0.run(short.join("\n").as_bytes())
    }
}

/// A demo persona: one vector for every sentence.
pub struct OneVector;

impl Executor for OneVector {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Embedding
    }
    fn rule(&self) -> ComparisonRule {
        embedding::RULE
    }
    fn run(&self, input: &[u8]) -> Result<Vec<u8>, ExecError> {
        let lines = input.split(|b| *b == b'\n').count().max(1);
        let v = 1.0f32 / (embedding::DIM as f32).sqrt();
        Ok((0..lines * embedding::DIM).flat_map(|_| v.to_le_bytes()).collect())
    }
}

/// A committed sheet: its scores and the salt that opens its commitment.
type Sheet = (Vec<(PubKey, u32)>, [u8; 32]);

/// What a validator needs from the devnet.
#[derive(Clone)]
pub struct Setup {
    /// The coordinator's key.
    pub coordinator: PubKey,
    /// Its p2p address.
    pub p2p: String,
    /// Its API (`http://…`) and operator token (validators submit their tasks there).
    pub api: String,
    /// The token.
    pub token: String,
    /// The class id.
    pub class: Hash32,
    /// The labelled sentences.
    pub data: Arc<Vec<Labelled>>,
    /// How often each validator submits an evaluation task.
    pub every: Duration,
}

async fn http(
    agent: &ureq::Agent,
    method: &str,
    url: String,
    token: &str,
    body: Option<Value>,
) -> Option<Value> {
    let (agent, auth, method) = (agent.clone(), format!("Bearer {token}"), method.to_owned());
    tokio::task::spawn_blocking(move || {
        let resp = match (method.as_str(), body) {
            ("POST", Some(b)) => agent.post(&url).header("Authorization", &auth).send_json(&b).ok()?,
            _ => agent.get(&url).header("Authorization", &auth).call().ok()?,
        };
        if !resp.status().is_success() {
            return None;
        }
        resp.into_body().read_json::<Value>().ok()
    })
    .await
    .ok()
    .flatten()
}

/// A validator: its key and its p2p handle to the coordinator.
pub struct Validator {
    key: SigningKey,
    net: Network,
    coordinator: Peer,
}

impl Validator {
    /// Starts the validator's node, connects it to the coordinator, and registers it with the
    /// bond output `txid:0` paying to `bond_key`.
    pub async fn start(
        setup: &Setup,
        key: SigningKey,
        bond_key: &SigningKey,
        txid: Hash32,
    ) -> Result<Self, String> {
        let (net, mut events) = Network::start(NetworkConfig::new(cairn_spec::Network::Regtest), &key)
            .await
            .map_err(|e| e.to_string())?;
        let peer: Peer = setup
            .p2p
            .rsplit('/')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("no peer id in {}", setup.p2p))?;
        let n2 = net.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                match ev {
                    NetworkEvent::Gossip { id, .. } => {
                        let _ = n2.report(id, Acceptance::Ignore).await;
                    }
                    NetworkEvent::Request { reply, .. } => {
                        let body =
                            ResponseBody::error(ErrorReason::Malformed, "a validator answers no requests");
                        let _ = n2.respond(reply, body).await;
                    }
                    _ => {}
                }
            }
        });
        net.dial(&setup.p2p).await.map_err(|e| e.to_string())?;
        let v = Validator { key, net, coordinator: peer };
        let validator = v.key.public();
        let msg = cairn_spec::work::bond_message(&setup.coordinator, &validator, &txid, 0);
        let reg = ValidatorRegistration {
            network: cairn_spec::Network::Regtest,
            coordinator: setup.coordinator,
            validator,
            payout_address: cairn_anchor::anchor_address(&validator, cairn_spec::Network::Regtest)
                .to_string(),
            created_at: cairn_p2p::clock::unix_millis() / 1000,
            bond: cairn_spec::Bond {
                txid,
                vout: 0,
                key: bond_key.public(),
                signature: bond_key.sign(&msg, &[0; 32]),
            },
        };
        let body = RequestBody::RegisterValidator(Box::new(Signed::sign(reg, &v.key, &[0; 32])));
        match v.ask(body).await {
            Some(ResponseBody::Ack) => Ok(v),
            other => Err(format!("registration refused: {other:?}")),
        }
    }

    /// Sends a request, retrying a few times while the connection comes up.
    async fn ask(&self, body: RequestBody) -> Option<ResponseBody> {
        for _ in 0..20 {
            match self.net.request(&self.coordinator, body.clone(), Duration::from_secs(5)).await {
                Ok(ResponseBody::Error { reason: ErrorReason::RateLimited | ErrorReason::Busy, .. })
                | Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                Ok(r) => return Some(r),
            }
        }
        None
    }

    /// Runs until `stop`. Each pass: first the windows (commit the sheet of the epoch that
    /// closed last, if not yet done; reveal every committed sheet whose window is open), then
    /// one evaluation task submitted, then the results of tasks decided since.
    pub async fn run(self, setup: Setup, index: usize, stop: tokio::sync::watch::Receiver<bool>) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut seen: BTreeMap<PubKey, VecDeque<(u8, Vec<f32>)>> = BTreeMap::new();
        let mut pending: VecDeque<(Hash32, Vec<u8>)> = VecDeque::new();
        // Committed sheets waiting for their reveal window, by scored epoch.
        let mut sheets: BTreeMap<u32, Sheet> = BTreeMap::new();
        let mut committed_through: Option<u32> = None;
        let mut n: usize = index * 7919;
        let mut tick = tokio::time::interval(setup.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !*stop.borrow() {
            tick.tick().await;
            self.windows(&agent, &setup, &seen, &mut sheets, &mut committed_through).await;
            // One evaluation task: labelled sentences, spread over the set.
            let items: Vec<&Labelled> = (0..PER_TASK)
                .filter_map(|k| setup.data.get((n + k * 997) % setup.data.len().max(1)))
                .collect();
            n += 1;
            let text = items.iter().map(|i| i.text.replace('\n', " ")).collect::<Vec<_>>().join("\n");
            let body = json!({"class": CLASS, "input_text": text, "units": 1, "budget_sats": 1000,
                "nonce": (index as u64) << 40 | n as u64});
            if let Some(v) =
                http(&agent, "POST", format!("{}/v1/tasks", setup.api), &setup.token, Some(body)).await
            {
                if let Some(id) = v["id"].as_str().and_then(|s| Hash32::from_hex(s).ok()) {
                    pending.push_back((id, items.iter().map(|i| i.label).collect()));
                }
            }
            while pending.len() > MAX_PENDING {
                pending.pop_front();
            }
            self.collect(&agent, &setup, &mut pending, &mut seen).await;
        }
        self.net.shutdown().await;
    }

    /// Reads the results of tasks decided since the last pass into `seen`.
    async fn collect(
        &self,
        agent: &ureq::Agent,
        setup: &Setup,
        pending: &mut VecDeque<(Hash32, Vec<u8>)>,
        seen: &mut BTreeMap<PubKey, VecDeque<(u8, Vec<f32>)>>,
    ) {
        let mut still = VecDeque::new();
        for (id, labels) in std::mem::take(pending) {
            let Some(t) =
                http(agent, "GET", format!("{}/v1/tasks/{id}", setup.api), &setup.token, None).await
            else {
                still.push_back((id, labels));
                continue;
            };
            match t["phase"].as_str() {
                Some("decided") => {}
                Some("failed") => continue,
                _ => {
                    still.push_back((id, labels));
                    continue;
                }
            }
            let worker = t["assignments"]
                .as_array()
                .and_then(|a| a.iter().find(|s| s["verdict"] == "accepted"))
                .and_then(|s| s["worker"].as_str())
                .and_then(PubKey::from_hex);
            let result =
                http(agent, "GET", format!("{}/v1/tasks/{id}/result", setup.api), &setup.token, None).await;
            let bytes = result.and_then(|r| r["result_hex"].as_str().and_then(|h| hex::decode(h).ok()));
            let (Some(worker), Some(bytes)) = (worker, bytes) else { continue };
            let Some(vectors) =
                cairn_worker::evaluate::split_embeddings(&bytes, labels.len(), embedding::DIM)
            else {
                continue;
            };
            let ring = seen.entry(worker).or_default();
            for (l, v) in labels.into_iter().zip(vectors) {
                ring.push_back((l, v));
                if ring.len() > WINDOW {
                    ring.pop_front();
                }
            }
        }
        *pending = still;
    }

    /// The score windows at the epoch now open: commits the sheet of the epoch that closed
    /// last unless done (scoring the workers that did work of the class in it, as far as this
    /// validator can judge them), and reveals each committed sheet whose window is open.
    async fn windows(
        &self,
        agent: &ureq::Agent,
        setup: &Setup,
        seen: &BTreeMap<PubKey, VecDeque<(u8, Vec<f32>)>>,
        sheets: &mut BTreeMap<u32, Sheet>,
        committed_through: &mut Option<u32>,
    ) {
        let me = self.key.public();
        let stats = http(agent, "GET", format!("{}/v1/stats", setup.api), &setup.token, None).await;
        let Some(now) = stats.and_then(|s| s["epochs"].as_u64()).and_then(|e| u32::try_from(e).ok()) else {
            return;
        };
        if let Some(closed) = now.checked_sub(1).filter(|c| *committed_through < Some(*c)) {
            *committed_through = Some(closed);
            let workers = self.workers_of(agent, setup, closed).await;
            let scores: Vec<(PubKey, u32)> = seen
                .iter()
                .filter(|(k, _)| **k != me && workers.contains(*k))
                .filter_map(|(k, ring)| {
                    let items: Vec<(u8, Vec<f32>)> = ring.iter().cloned().collect();
                    let items = cairn_worker::evaluate::balanced(&items, &[0, 1], MIN_ITEMS / 2)?;
                    Some((*k, cairn_worker::evaluate::knn_accuracy(&items)?))
                })
                .collect();
            let mut salt = [0u8; 32];
            // A guessable salt would let others open the commitment before the reveal.
            if getrandom::fill(&mut salt).is_ok() {
                let commitment = cairn_spec::scores::score_commitment_value(
                    cairn_spec::Network::Regtest,
                    &setup.coordinator,
                    &setup.class,
                    closed,
                    &me,
                    &scores,
                    &salt,
                );
                let c = ScoreCommit {
                    network: cairn_spec::Network::Regtest,
                    coordinator: setup.coordinator,
                    class: setup.class,
                    epoch: closed,
                    validator: me,
                    commitment,
                };
                match self.ask(RequestBody::ScoreCommit(Box::new(Signed::sign(c, &self.key, &[0; 32])))).await
                {
                    Some(ResponseBody::Ack) => {
                        sheets.insert(closed, (scores, salt));
                    }
                    answer => {
                        tracing::warn!(target: "cairn::devnet", epoch = closed, ?answer, "a validator's commit was refused")
                    }
                }
            }
        }
        let due: Vec<u32> = sheets.keys().copied().filter(|e| e.checked_add(2) == Some(now)).collect();
        for e in due {
            let Some((scores, salt)) = sheets.remove(&e) else { continue };
            let r = ScoreReveal {
                network: cairn_spec::Network::Regtest,
                coordinator: setup.coordinator,
                class: setup.class,
                epoch: e,
                validator: me,
                scores,
                salt,
            };
            let answer =
                self.ask(RequestBody::ScoreReveal(Box::new(Signed::sign(r, &self.key, &[0; 32])))).await;
            if answer != Some(ResponseBody::Ack) {
                tracing::warn!(target: "cairn::devnet", epoch = e, ?answer, "a validator's reveal was refused");
            }
        }
        // Sheets whose window passed (the devnet paused) are of no use any more.
        sheets.retain(|e, _| e.checked_add(2).is_some_and(|due| due >= now));
    }

    /// The workers with an accepted receipt of the class in closed epoch `epoch`: only they
    /// are scored (a sheet naming others is refused).
    async fn workers_of(
        &self,
        agent: &ureq::Agent,
        setup: &Setup,
        epoch: u32,
    ) -> std::collections::BTreeSet<PubKey> {
        let mut out = std::collections::BTreeSet::new();
        let mut from = 0usize;
        loop {
            let url = format!("{}/v1/epochs/{epoch}/receipts?from={from}&limit=1000", setup.api);
            let Some(page) = http(agent, "GET", url, &setup.token, None).await else { break };
            let list = page["receipts"].as_array().cloned().unwrap_or_default();
            for r in &list {
                let receipt = r
                    .as_str()
                    .and_then(|h| hex::decode(h).ok())
                    .and_then(|b| <cairn_spec::SignedReceipt as cairn_spec::Decode>::from_bytes(&b).ok());
                if let Some(r) =
                    receipt.filter(|r| r.body.class == setup.class && r.body.verdict.is_accepted())
                {
                    out.insert(r.body.worker);
                }
            }
            from += list.len();
            if list.len() < 1000 {
                break;
            }
        }
        out
    }
}
