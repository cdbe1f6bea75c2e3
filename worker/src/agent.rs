//! The worker node: joins coordinators over p2p, registers (proof-of-work or bond), takes the
//! announced tasks it can run, and drives each through claim → execute → commit → reveal,
//! recording every step in the journal before acting on it.
//!
//! Owns the worker's I/O: the network, the executors' threads, the journal file. Must never
//! decide protocol order itself: [`crate::job::Job`] says what may happen next, and this
//! module only performs it.

use cairn_p2p::clock::unix_secs;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_p2p::{keyfile, Acceptance, Network, NetworkConfig, NetworkEvent, Peer};
use cairn_spec::work::{bond_message, commitment_value};
use cairn_spec::{
    Bond, Claim, Commitment, ErrorReason, GossipMessage, Hash32, Object, Payload, Probe, ProbeAnswer, PubKey,
    Registration, RequestBody, ResponseBody, Reveal, Signed, SigningKey, TaskAnnouncement, TaskClass, Terms,
};
use thiserror::Error;
use tokio::sync::{oneshot, Semaphore};

use crate::config::WorkerConfig;
use crate::executor::{can_run, ExecError, Executor};
use crate::job::{Action, AfterRefusal, Job};
use crate::journal::{Entry, Journal, JournalLog, RegistrationRecord};

/// Why the worker stopped.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The protocol key could not be loaded or created.
    #[error(transparent)]
    Key(#[from] keyfile::KeyFileError),
    /// The journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// The network could not start.
    #[error("p2p: {0}")]
    P2p(String),
    /// A coordinator could not be reached.
    #[error("coordinator {0} did not answer: {1}")]
    Unreachable(String, String),
    /// A coordinator refused the registration.
    #[error("coordinator {0} refused the registration: {1}")]
    Refused(String, String),
    /// No configured coordinator has a class this worker can run.
    #[error("nothing to do: {0}")]
    NothingToRun(String),
}

/// What a started worker reports.
#[derive(Clone, Debug)]
pub struct WorkerInfo {
    /// Its protocol key.
    pub key: PubKey,
    /// Its p2p addresses.
    pub p2p: Vec<String>,
    /// Classes it runs, per coordinator key.
    pub classes: Vec<(PubKey, String)>,
}

/// Called while solving proof-of-work: (tries so far, expected tries).
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Hooks for the binary and tests.
#[derive(Default)]
pub struct Hooks {
    /// Receives the worker's addresses once registered with every coordinator.
    pub started: Option<oneshot::Sender<WorkerInfo>>,
    /// Proof-of-work progress.
    pub progress: Option<Progress>,
}

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

struct Coord {
    key: PubKey,
    peer: Peer,
    addr: String,
    /// Runnable classes by id, with their executor.
    classes: HashMap<Hash32, (TaskClass, Arc<dyn Executor>)>,
    /// Its terms, as it gave them at start (what registering again costs).
    terms: Terms,
}

struct Shared {
    key: SigningKey,
    net: Network,
    coords: Vec<Coord>,
    journal: Mutex<Journal>,
    /// The journal's log, appended under the journal's lock (always taken first), so the log
    /// holds the steps in the order they were applied.
    log: Mutex<JournalLog>,
    journal_path: PathBuf,
    /// Tasks seen and not taken (see [`Skip`]).
    skip: Mutex<HashMap<Hash32, Skip>>,
    /// Tasks with a driver running.
    driving: Mutex<HashSet<Hash32>>,
    /// Tasks announced again while their driver ran (the announcement of a slot drawn for
    /// this worker can cross the answer to its claim): the driver asks once more.
    again: Mutex<HashSet<Hash32>>,
    permits: Semaphore,
    max_input: u32,
    /// When each coordinator last offered this worker a task of each class (SPEC.md §12.1):
    /// while recent, its gossiped tasks of that class are not claimed.
    offered: Mutex<HashMap<(PubKey, Hash32), u64>>,
    /// The configuration, for registering again.
    cfg: WorkerConfig,
    /// Coordinators that refused a claim as from a worker they do not know (their state was
    /// lost or restored from before this worker registered): registered with again.
    forgotten: Mutex<HashSet<PubKey>>,
    /// Coordinators being registered with again now.
    registering: Mutex<HashSet<PubKey>>,
    /// When each coordinator may next be registered with again (unix seconds), and the wait
    /// after that: doubled each time, so a coordinator that keeps forgetting this worker (or
    /// says so falsely) cannot keep it solving proofs of work.
    reregister_at: Mutex<HashMap<PubKey, (u64, u64)>>,
    /// The newest epoch height seen from each coordinator (in its receipts and headers, kept
    /// in memory): what `fresh` measures old gossip against.
    newest_epoch: Mutex<HashMap<PubKey, u32>>,
    /// The validators each coordinator lists: whose latency probes are answered (SPEC.md
    /// §13.7).
    admitted: Mutex<crate::probe::Admitted>,
    /// Probes answered at once (as many as tasks run): more are refused `busy`.
    probing: Semaphore,
}

/// How far an announcement's time may lie from this worker's clock, either way, before it is
/// neither taken nor passed on: a coordinator announces with its own time (and again every
/// few seconds while a slot is open), so older gossip is a replay or a clock off by more than
/// the coordinator itself tolerates (`clock_skew_secs`, 600 by default).
pub const MAX_ANNOUNCEMENT_AGE_SECS: u64 = 600;
/// Epochs behind the newest seen from its coordinator at which a receipt of another worker,
/// or a header, is no longer passed on: a replay of old, validly signed gossip would otherwise
/// be spread to every mesh peer again each time the peers' duplicate caches forget it (60 s).
/// Several epochs, not one, so a late delivery where epochs close every few seconds still
/// spreads.
pub const STALE_EPOCHS: u32 = 6;

/// Whether gossip of a coordinator this worker works for is recent enough to act on and
/// spread, given `now` and the newest epoch height seen from that coordinator. Pure, so the
/// rule is tested alone; the worker's own receipt of a job not yet done is always taken (its
/// journal wants it).
fn fresh(message: &GossipMessage, now: u64, newest_epoch: Option<u32>) -> bool {
    let behind = |height: u32| newest_epoch.is_some_and(|n| height.saturating_add(STALE_EPOCHS) <= n);
    match message {
        GossipMessage::Task(a) => a.body.announced_at.abs_diff(now) <= MAX_ANNOUNCEMENT_AGE_SECS,
        GossipMessage::Receipt(r) => !behind(r.body.epoch),
        GossipMessage::Epoch(h) => !behind(h.body.height),
    }
}

/// An offer as it came in: its sender, the offer, where the answer goes.
type Offered = (Peer, Box<Signed<TaskAnnouncement>>, cairn_p2p::ReplyToken);

/// How long after an offer of a class this worker relies on offers for that class and claims
/// none of the coordinator's gossiped tasks of it (SPEC.md §12.1): claims on its offers keep
/// it ready, and a claim on a task it was not drawn for would only be refused (and spend its
/// request budget). Well under the coordinator's `live_secs` [120], so a worker no longer
/// drawn claims again, and is ready again, long before its readiness lapses.
const OFFERED_SECS: u64 = 30;

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    // Without an OS random source the aux bytes fall back to zeros, which BIP340 allows; the
    // salt below is also hashed with the secret key, so it stays unpredictable to others.
    let _ = getrandom::fill(&mut b);
    b
}

impl Shared {
    fn coord(&self, key: &PubKey) -> Option<&Coord> {
        self.coords.iter().find(|c| &c.key == key)
    }

    fn sign<T: Object + cairn_spec::Signer>(&self, body: T) -> Signed<T> {
        Signed::sign(body, &self.key, &random32())
    }

    /// A salt no one else can guess: fresh randomness, bound to our key and the task.
    fn salt(&self, task: &Hash32) -> Hash32 {
        let mut h = cairn_spec::hash::TaggedHasher::new(cairn_spec::Tag::Commitment);
        h.update(&self.key.secret_bytes()).update(&task.0).update(&random32());
        h.finish()
    }

    async fn request(&self, peer: &Peer, addr: &str, body: RequestBody) -> Option<ResponseBody> {
        match self.net.request(peer, body, REQUEST_TIMEOUT).await {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::debug!(target: "cairn::worker", error = %e, "request failed; dialing again");
                let _ = self.net.dial(addr).await;
                None
            }
        }
    }

    /// Records `job`'s step on disk (one synced line in the journal's log) before it is acted
    /// on; folds the log into a new snapshot when it is long.
    fn save(&self, job: &Job) -> Result<(), AgentError> {
        let poisoned = || AgentError::P2p("journal lock poisoned".into());
        let mut j = self.journal.lock().map_err(|_| poisoned())?;
        j.update(job.clone());
        let mut log = self.log.lock().map_err(|_| poisoned())?;
        log.append(&Entry::Job(Box::new(job.clone())), true)?;
        if log.wants_compaction() {
            *log = j.save(&self.journal_path)?;
        }
        Ok(())
    }
}

/// Runs the worker until `shutdown` resolves, with `executors` as the work it can do.
pub async fn run(
    cfg: WorkerConfig,
    executors: Vec<Arc<dyn Executor>>,
    shutdown: impl std::future::Future<Output = ()> + Send,
    hooks: Hooks,
) -> Result<(), AgentError> {
    let mut cfg = cfg;
    cfg.validate()?;
    // Coordinators given by their API only: ask it for the p2p address (retried while it
    // starts, as in docker-compose).
    for entry in cfg.coordinators.iter_mut().filter(|c| c.p2p.is_empty()) {
        let api = entry.api.clone().unwrap_or_default();
        let mut delay = Duration::from_millis(500);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        entry.p2p = loop {
            let a = api.clone();
            match tokio::task::spawn_blocking(move || crate::discover::p2p_from_api(&a)).await {
                Ok(Ok(addr)) => break addr,
                Ok(Err(e)) if std::time::Instant::now() < deadline => {
                    tracing::info!(target: "cairn::worker", api = %api, error = %e, "coordinator API not answering yet");
                }
                Ok(Err(e)) => return Err(AgentError::Unreachable(api, e)),
                Err(e) => return Err(AgentError::Unreachable(api, e.to_string())),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        };
        tracing::info!(target: "cairn::worker", api = %api, p2p = %entry.p2p, "coordinator found through its API");
    }
    cfg.validate()?;
    let network = cfg.network()?;
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| AgentError::P2p(format!("data dir {}: {e}", cfg.data_dir.display())))?;
    let journal_path = cfg.data_dir.join("journal.json");
    let journal = Journal::load(&journal_path)?;
    // Registrations and jobs were made with the worker key: credit is locked to it.
    let in_use = !journal.registrations.is_empty() || !journal.jobs.is_empty();
    let key = keyfile::load_or_create_for(&cfg.data_dir.join("worker.key"), in_use)?;
    tracing::info!(target: "cairn::worker", worker = %key.public(), payout = %cfg.payout_address, "worker starting");

    let mut ncfg = NetworkConfig::new(network);
    // Only its coordinators' gossip matters to a worker: anyone else's is ignored before its
    // signature is checked.
    ncfg.gossip_signers = Some(
        cfg.coordinators
            .iter()
            .filter_map(|e| e.p2p.rsplit_once("/p2p/").and_then(|(_, p)| p.parse::<Peer>().ok()))
            .filter_map(|p| p.protocol_key())
            .collect(),
    );
    if !cfg.p2p_listen.is_empty() {
        ncfg.listen = cfg.p2p_listen.clone();
    }
    let (net, mut events) = Network::start(ncfg, &key).await.map_err(|e| AgentError::P2p(e.to_string()))?;
    let p2p =
        net.wait_listening(Duration::from_secs(10)).await.map_err(|e| AgentError::P2p(e.to_string()))?;

    // Events are drained from the start so the network never stalls while we register.
    let (gossip_tx, mut gossip_rx) = tokio::sync::mpsc::channel::<(GossipMessage, cairn_p2p::GossipId)>(1024);
    let (offer_tx, mut offer_rx) = tokio::sync::mpsc::channel::<Offered>(1024);
    let (probe_tx, mut probe_rx) = tokio::sync::mpsc::channel::<Probed>(64);
    let net2 = net.clone();
    // Only a configured coordinator's node is queued an offer: a stranger's is answered at
    // once, so strangers cannot fill the queue ahead of the coordinator's offers.
    let coordinator_peers: HashSet<Peer> = cfg
        .coordinators
        .iter()
        .filter_map(|e| e.p2p.rsplit_once("/p2p/").and_then(|(_, p)| p.parse::<Peer>().ok()))
        .collect();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            match ev {
                NetworkEvent::Gossip { message, id, .. } => {
                    if let Err(tokio::sync::mpsc::error::TrySendError::Full((_, id))) =
                        gossip_tx.try_send((*message, id))
                    {
                        let _ = net2.report(id, Acceptance::Ignore).await;
                    }
                }
                // A worker serves one request: a coordinator's offer (SPEC.md §11.4).
                NetworkEvent::Request { from, request, reply } => match request.body {
                    // A stranger's request costs it a second of its rate (SPEC.md §11.5).
                    RequestBody::Offer(_) if !coordinator_peers.contains(&from) => {
                        let body = ResponseBody::error(
                            ErrorReason::Malformed,
                            "an offer comes from its coordinator's own node",
                        );
                        let _ = net2.respond_at(reply, body, cairn_p2p::Cost::Forfeit).await;
                    }
                    RequestBody::Offer(a) => {
                        if let Err(e) = offer_tx.try_send((from, a, reply)) {
                            let reply = match e {
                                tokio::sync::mpsc::error::TrySendError::Full((_, _, r))
                                | tokio::sync::mpsc::error::TrySendError::Closed((_, _, r)) => r,
                            };
                            let _ = net2.respond(reply, ResponseBody::error(ErrorReason::Busy, "busy")).await;
                        }
                    }
                    // A validator's latency probe (SPEC.md §13.7), checked and run off this loop.
                    // A probe not sent from its signer's node is a stranger's: refused before
                    // it takes a place in the queue.
                    RequestBody::Probe(p) if from.protocol_key() != Some(p.body.validator) => {
                        let body = ResponseBody::error(
                            ErrorReason::BadSignature,
                            "a probe comes from its validator's own node",
                        );
                        let _ = net2.respond_at(reply, body, cairn_p2p::Cost::Forfeit).await;
                    }
                    RequestBody::Probe(p) => {
                        if let Err(e) = probe_tx.try_send((from, p, reply)) {
                            let reply = match e {
                                tokio::sync::mpsc::error::TrySendError::Full((_, _, r))
                                | tokio::sync::mpsc::error::TrySendError::Closed((_, _, r)) => r,
                            };
                            let _ = net2.respond(reply, ResponseBody::error(ErrorReason::Busy, "busy")).await;
                        }
                    }
                    _ => {
                        let body = ResponseBody::error(
                            ErrorReason::Malformed,
                            "a worker answers only offers and probes",
                        );
                        let cost = if coordinator_peers.contains(&from) {
                            cairn_p2p::Cost::Charged
                        } else {
                            cairn_p2p::Cost::Forfeit
                        };
                        let _ = net2.respond_at(reply, body, cost).await;
                    }
                },
                _ => {}
            }
        }
    });

    let mut coords = Vec::new();
    let mut journal = journal;
    for entry in &cfg.coordinators {
        let peer_part = entry.p2p.rsplit_once("/p2p/").map(|(_, p)| p).unwrap_or_default();
        let peer: Peer = peer_part
            .parse()
            .map_err(|_| AgentError::Unreachable(entry.p2p.clone(), "bad peer id".into()))?;
        let ckey = peer
            .protocol_key()
            .ok_or_else(|| AgentError::Unreachable(entry.p2p.clone(), "not a Cairn peer id".into()))?;
        let terms = terms(&net, &peer, &entry.p2p).await?;
        let mut classes = HashMap::new();
        for class in &terms.classes {
            if !cfg.limits.classes.is_empty() && !cfg.limits.classes.contains(&class.name) {
                continue;
            }
            let mut why = Vec::new();
            match executors.iter().find(|e| match can_run(e.as_ref(), class) {
                Ok(()) => true,
                Err(w) => {
                    why.push(w);
                    false
                }
            }) {
                Some(e) => {
                    classes.insert(class.id(), (class.clone(), e.clone()));
                }
                None => {
                    tracing::info!(target: "cairn::worker", class = %class.name, reasons = ?why, "class skipped")
                }
            }
        }
        if classes.is_empty() {
            tracing::warn!(target: "cairn::worker", coordinator = %ckey, "no class of this coordinator can run here");
        }
        register(
            &cfg,
            &key,
            &net,
            &peer,
            &entry.p2p,
            ckey,
            &terms,
            &mut journal,
            &journal_path,
            hooks.progress.clone(),
        )
        .await?;
        pin_chain(&net, &peer, &entry.p2p, ckey, &mut journal, &journal_path).await?;
        coords.push(Coord { key: ckey, peer, addr: entry.p2p.clone(), classes, terms });
    }
    if coords.iter().all(|c| c.classes.is_empty()) {
        return Err(AgentError::NothingToRun(
            "no coordinator offers a class this worker's executors can run (see the log for why each was skipped)".into(),
        ));
    }
    let info = WorkerInfo {
        key: key.public(),
        p2p,
        classes: coords
            .iter()
            .flat_map(|c| c.classes.values().map(|(k, _)| (c.key, k.name.clone())))
            .collect(),
    };
    let pending: Vec<Job> = journal.jobs.values().filter(|j| !j.is_final()).cloned().collect();
    // A fresh snapshot at start: the log this run appends to continues it.
    let log = journal.save(&journal_path)?;
    let shared = Arc::new(Shared {
        key,
        net: net.clone(),
        coords,
        journal: Mutex::new(journal),
        log: Mutex::new(log),
        journal_path,
        skip: Mutex::new(HashMap::new()),
        driving: Mutex::new(HashSet::new()),
        again: Mutex::new(HashSet::new()),
        permits: Semaphore::new(cfg.limits.concurrent_tasks),
        max_input: cfg.limits.max_input_bytes,
        offered: Mutex::new(HashMap::new()),
        cfg: cfg.clone(),
        forgotten: Mutex::new(HashSet::new()),
        registering: Mutex::new(HashSet::new()),
        reregister_at: Mutex::new(HashMap::new()),
        newest_epoch: Mutex::new(HashMap::new()),
        admitted: Mutex::new(crate::probe::Admitted::default()),
        probing: Semaphore::new(cfg.limits.concurrent_tasks),
    });
    // A restart picks up every job where the journal left it.
    for job in pending {
        tracing::info!(target: "cairn::worker", task = %job.id, stage = ?std::mem::discriminant(&job.stage), "resuming job");
        spawn_driver(&shared, job);
    }
    if let Some(tx) = hooks.started {
        let _ = tx.send(info);
    }

    tokio::pin!(shutdown);
    let mut keep = tokio::time::interval(RECONNECT_EVERY);
    keep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut lost: HashSet<Peer> = HashSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            ev = gossip_rx.recv() => {
                let Some((message, id)) = ev else { break };
                let verdict = on_gossip(&shared, message);
                let _ = net.report(id, verdict).await;
            }
            ev = offer_rx.recv() => {
                let Some((from, offer, reply)) = ev else { break };
                let (body, cost) = match on_offer(&shared, &from, *offer) {
                    Ok(true) => (ResponseBody::Ack, cairn_p2p::Cost::Refunded),
                    Ok(false) => (ResponseBody::Ack, cairn_p2p::Cost::Charged),
                    Err(why) => (ResponseBody::error(ErrorReason::Malformed, why), cairn_p2p::Cost::Charged),
                };
                let _ = net.respond_at(reply, body, cost).await;
            }
            ev = probe_rx.recv() => {
                let Some((from, p, reply)) = ev else { break };
                tokio::spawn(on_probe(shared.clone(), from, p, reply));
            }
            _ = keep.tick() => {
                reconnect(&shared, &mut lost).await;
                register_again(&shared);
            }
        }
    }
    tracing::info!(target: "cairn::worker", "worker stopping");
    net.shutdown().await;
    Ok(())
}

/// A probe waiting to be checked and run: who sent it, the probe, the reply.
type Probed = (Peer, Box<Signed<Probe>>, cairn_p2p::ReplyToken);

/// Answers a validator's latency probe (SPEC.md §13.7): runs its input as a task's, in the
/// same execution slots, and signs the output; refuses what `probe::check` refuses, a key
/// the coordinator does not list (`not_registered`, at a stranger's cost), and more probes
/// at once than tasks run (`busy`).
async fn on_probe(s: Arc<Shared>, from: Peer, p: Box<Signed<Probe>>, reply: cairn_p2p::ReplyToken) {
    let (body, cost) = match answer_probe(&s, &from, &p).await {
        Ok(a) => (ResponseBody::ProbeAnswer(Box::new(a)), cairn_p2p::Cost::Charged),
        Err(refused) => refused,
    };
    let _ = s.net.respond_at(reply, body, cost).await;
}

async fn answer_probe(
    s: &Shared,
    from: &Peer,
    p: &Signed<Probe>,
) -> Result<Signed<ProbeAnswer>, (ResponseBody, cairn_p2p::Cost)> {
    use crate::probe::Refusal;
    use cairn_p2p::Cost;
    let refuse = |r: ErrorReason, why: &str, cost| (ResponseBody::error(r, why), cost);
    // Who sent it first, then whether the coordinator lists it, then what it asks: nothing
    // unauthenticated takes a slot, and an unlisted key always pays a stranger's cost.
    if let Err(Refusal::Stranger(why) | Refusal::NotHere(why)) =
        crate::probe::check_sender(p, from.protocol_key())
    {
        return Err(refuse(ErrorReason::BadSignature, &why, Cost::Forfeit));
    }
    let validator = p.body.validator;
    let coord = s.coords.iter().find(|c| c.key == p.body.coordinator);
    if let Some(coord) = coord {
        let now = std::time::Instant::now();
        let ask = s.admitted.lock().is_ok_and(|mut a| {
            let ask = a.should_ask(&coord.key, &validator, now);
            if ask {
                a.asked(coord.key, now);
            }
            ask
        });
        if ask {
            if let Ok(ResponseBody::Validators(keys)) =
                s.net.request(&coord.peer, RequestBody::GetValidators, REQUEST_TIMEOUT).await
            {
                if let Ok(mut a) = s.admitted.lock() {
                    a.set(coord.key, keys, now);
                }
            }
        }
    }
    let listed = coord.is_some_and(|c| s.admitted.lock().is_ok_and(|a| a.lists(&c.key, &validator)));
    let Some(coord) = coord.filter(|_| listed) else {
        return Err(refuse(
            ErrorReason::NotRegistered,
            "not a validator this worker's coordinator lists",
            Cost::Forfeit,
        ));
    };
    let network =
        s.cfg.network().map_err(|e| refuse(ErrorReason::Internal, &e.to_string(), Cost::Charged))?;
    let classes: HashMap<PubKey, Vec<&TaskClass>> =
        HashMap::from([(coord.key, coord.classes.values().map(|(k, _)| k).collect())]);
    let exec = match crate::probe::check_target(p, &s.key.public(), network, &classes) {
        Ok(class) => coord.classes.get(&class.id()).map(|(_, e)| e.clone()),
        Err(Refusal::Stranger(why) | Refusal::NotHere(why)) => {
            return Err(refuse(ErrorReason::Malformed, &why, Cost::Charged))
        }
    };
    let Some(exec) = exec else { return Err(refuse(ErrorReason::Malformed, "no such class", Cost::Charged)) };
    // One probe in flight per validator, and no more at once than tasks run.
    if !s.admitted.lock().is_ok_and(|mut a| a.start(validator)) {
        return Err(refuse(
            ErrorReason::Busy,
            "this validator's previous probe is still running",
            Cost::Charged,
        ));
    }
    let answered = run_probe(s, p, exec).await;
    if let Ok(mut a) = s.admitted.lock() {
        a.end(&validator);
    }
    answered.map_err(|(r, why)| refuse(r, &why, Cost::Charged))
}

/// Runs a checked probe in one of the worker's execution slots and signs the output.
async fn run_probe(
    s: &Shared,
    p: &Signed<Probe>,
    exec: Arc<dyn Executor>,
) -> Result<Signed<ProbeAnswer>, (ErrorReason, String)> {
    let Ok(_slot) = s.probing.try_acquire() else { return Err((ErrorReason::Busy, "busy".into())) };
    let _permit = s.permits.acquire().await.map_err(|_| (ErrorReason::Internal, "stopping".to_string()))?;
    let input = p.body.input.clone();
    match tokio::task::spawn_blocking(move || exec.run(&input)).await {
        Ok(Ok(output)) if output.len() <= cairn_spec::probe::MAX_PROBE_OUTPUT => {
            Ok(crate::probe::answer(p, &s.key, output))
        }
        // The worker's limit, not the validator's fault.
        Ok(Ok(_)) => Err((ErrorReason::Internal, "the output is over the probe bound".into())),
        Ok(Err(ExecError::BadInput(why))) => Err((ErrorReason::Malformed, why)),
        Ok(Err(e)) => Err((ErrorReason::Internal, e.to_string())),
        Err(e) => Err((ErrorReason::Internal, e.to_string())),
    }
}

async fn terms(net: &Network, peer: &Peer, addr: &str) -> Result<Terms, AgentError> {
    let mut last = String::from("no answer");
    for attempt in 0..60u32 {
        let _ = net.dial(addr).await;
        match net.request(peer, RequestBody::GetTerms, REQUEST_TIMEOUT).await {
            Ok(ResponseBody::Terms(t)) => return Ok(*t),
            Ok(ResponseBody::Error { reason, message }) => last = format!("refused ({reason}): {message}"),
            Ok(other) => last = format!("unexpected answer {other:?}"),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(if attempt < 10 { 200 } else { 1000 })).await;
    }
    Err(AgentError::Unreachable(addr.to_owned(), last))
}

#[allow(clippy::too_many_arguments)]
async fn register(
    cfg: &WorkerConfig,
    key: &SigningKey,
    net: &Network,
    peer: &Peer,
    addr: &str,
    coordinator: PubKey,
    terms: &Terms,
    journal: &mut Journal,
    journal_path: &std::path::Path,
    progress: Option<Progress>,
) -> Result<(), AgentError> {
    let ck = coordinator.to_hex();
    if journal.registrations.get(&ck).is_some_and(|r| r.payout_address == cfg.payout_address) {
        return Ok(());
    }
    send_registration(cfg, key, net, peer, addr, coordinator, terms, progress).await?;
    record_registration(journal, cfg, coordinator);
    journal.save(journal_path)?;
    tracing::info!(target: "cairn::worker", coordinator = %coordinator, "registered");
    Ok(())
}

/// Notes in the journal that `coordinator` admitted this worker with `cfg`'s payout address
/// (the chain pinned for it, if any, kept).
fn record_registration(journal: &mut Journal, cfg: &WorkerConfig, coordinator: PubKey) {
    let ck = coordinator.to_hex();
    let binding = journal.registrations.get(&ck).and_then(|r| r.binding);
    journal.registrations.insert(
        ck,
        RegistrationRecord { payout_address: cfg.payout_address.clone(), at: unix_secs(), binding },
    );
}

/// Registers with `coordinator` (its proof-of-work solved or its bond proven) until it
/// acknowledges, refuses, or stays unreachable.
#[allow(clippy::too_many_arguments)]
async fn send_registration(
    cfg: &WorkerConfig,
    key: &SigningKey,
    net: &Network,
    peer: &Peer,
    addr: &str,
    coordinator: PubKey,
    terms: &Terms,
    progress: Option<Progress>,
) -> Result<(), AgentError> {
    let network = cfg.network()?;
    let mut reg = Registration {
        network,
        coordinator,
        worker: key.public(),
        payout_address: cfg.payout_address.clone(),
        created_at: unix_secs(),
        pow_nonce: 0,
        bond: None,
    };
    if let Some(b) = &cfg.bond {
        if terms.bond_min_sats == 0 {
            return Err(AgentError::Refused(
                addr.to_owned(),
                "this coordinator does not accept bonds".into(),
            ));
        }
        let bond_key = keyfile::load(&b.key_file)?;
        let bond = bond_proof(&coordinator, &key.public(), &b.txid, b.vout, &bond_key)
            .map_err(|e| AgentError::Refused(addr.to_owned(), e))?;
        reg.bond = Some(Box::new(bond));
    } else {
        if terms.pow_difficulty > cfg.limits.max_pow_bits {
            return Err(AgentError::Refused(
                addr.to_owned(),
                format!(
                    "it asks {} bits of proof-of-work; limits.max_pow_bits is {}",
                    terms.pow_difficulty, cfg.limits.max_pow_bits
                ),
            ));
        }
        let difficulty = terms.pow_difficulty;
        tracing::info!(target: "cairn::worker", bits = difficulty, "solving the registration proof-of-work");
        reg = tokio::task::spawn_blocking(move || solve(reg, difficulty, progress))
            .await
            .map_err(|e| AgentError::P2p(e.to_string()))?;
    }
    let body = RequestBody::Register(Signed::sign(reg, key, &random32()));
    let mut last = String::new();
    for _ in 0..30 {
        match net.request(peer, body.clone(), REQUEST_TIMEOUT).await {
            Ok(ResponseBody::Ack) => return Ok(()),
            Ok(ResponseBody::Error {
                reason: ErrorReason::RateLimited | ErrorReason::WorkerLimit,
                message,
            }) => last = message,
            Ok(ResponseBody::Error { reason, message }) => {
                return Err(AgentError::Refused(addr.to_owned(), format!("{message} ({reason})")));
            }
            Ok(other) => last = format!("unexpected answer {other:?}"),
            Err(e) => {
                last = e.to_string();
                let _ = net.dial(addr).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(AgentError::Unreachable(addr.to_owned(), last))
}

/// Pins the coordinator's anchor chain the first time its genesis header is seen (trust on
/// first use, kept in the journal): `cairn worker status` then requires every receipt to be
/// anchored on it. A coordinator whose genesis header names another chain than the one
/// pinned has signed two chains (equivocation at height 0) and is refused, as is one that
/// answers with a header that is not its signed header 0. Without a genesis header yet (no
/// epoch closed) the pin waits for a restart, or for `worker status`.
async fn pin_chain(
    net: &Network,
    peer: &Peer,
    addr: &str,
    coordinator: PubKey,
    journal: &mut Journal,
    journal_path: &std::path::Path,
) -> Result<(), AgentError> {
    let answer = net.request(peer, RequestBody::GetEpochs { from: 0, count: 1 }, REQUEST_TIMEOUT).await;
    let genesis = match answer {
        // No epoch closed yet: nothing to pin.
        Ok(ResponseBody::Epochs(headers)) if headers.is_empty() => return Ok(()),
        Ok(ResponseBody::Epochs(headers)) => headers.into_iter().next(),
        other => {
            // Unreachable for now: `worker status` then pins from the API's genesis header.
            tracing::warn!(target: "cairn::worker", %coordinator, answer = ?other.map(|_| ()), "genesis header not fetched; anchor chain not pinned this run");
            return Ok(());
        }
    };
    let Some(genesis) =
        genesis.filter(|h| h.body.height == 0 && h.body.coordinator == coordinator && h.verify())
    else {
        return Err(AgentError::Refused(
            addr.to_owned(),
            "it answered for its genesis header with one that is not its own signed header 0".into(),
        ));
    };
    let binding = genesis.body.anchor;
    if binding.genesis().is_none() {
        return Ok(());
    }
    let Some(record) = journal.registrations.get_mut(&coordinator.to_hex()) else { return Ok(()) };
    if record.pin(binding).map_err(|why| AgentError::Refused(addr.to_owned(), why))? {
        journal.save(journal_path)?;
        tracing::info!(target: "cairn::worker", %coordinator, genesis = ?binding.genesis(), "anchor chain pinned");
    }
    Ok(())
}

/// The bond proof for output `txid:vout` (txid as Bitcoin Core shows it): the output key
/// `bond_key` signs the bond message binding coordinator, worker and outpoint (SPEC §5.4).
pub fn bond_proof(
    coordinator: &PubKey,
    worker: &PubKey,
    txid: &str,
    vout: u32,
    bond_key: &SigningKey,
) -> Result<Bond, String> {
    use bitcoin::hashes::Hash as _;
    let txid: bitcoin::Txid = txid.parse().map_err(|e| format!("bond txid {txid:?}: {e}"))?;
    // The protocol carries txids in Bitcoin's internal byte order.
    let txid = Hash32(txid.to_byte_array());
    let signature = bond_key.sign(&bond_message(coordinator, worker, &txid, vout), &random32());
    Ok(Bond { txid, vout, key: bond_key.public(), signature })
}

/// Solves the registration's proof-of-work, reporting progress every 2^16 tries.
pub fn solve(mut reg: Registration, difficulty: u32, progress: Option<Progress>) -> Registration {
    let expected = 1u64.checked_shl(difficulty).unwrap_or(u64::MAX);
    let mut tried = 0u64;
    loop {
        if reg.solve_pow(difficulty, 1 << 16) {
            if let Some(p) = &progress {
                p(expected.max(tried), expected);
            }
            return reg;
        }
        tried += 1 << 16;
        if let Some(p) = &progress {
            p(tried, expected);
        }
    }
}

fn on_gossip(shared: &Arc<Shared>, message: GossipMessage) -> Acceptance {
    let signer = message.signer();
    let Some(coord) = shared.coord(&signer) else {
        // Not a coordinator we work for: nothing to judge, so neither spread nor punish.
        return Acceptance::Ignore;
    };
    let now = unix_secs();
    let newest = shared.newest_epoch.lock().ok().and_then(|n| n.get(&coord.key).copied());
    // This worker's receipt of a job still waiting for it is taken however late; any other
    // (another worker's, or one already recorded) is judged like all gossip, so a replay of
    // old receipts costs no journal write and is not spread.
    let awaited = match &message {
        GossipMessage::Receipt(r) if r.body.worker == shared.key.public() => shared
            .journal
            .lock()
            .ok()
            .and_then(|j| j.jobs.get(&r.body.task).map(|job| !job.is_done()))
            .unwrap_or(false),
        _ => false,
    };
    if !awaited && !fresh(&message, now, newest) {
        // Neither acted on nor spread; not punished either (a slow clock is not an attack).
        return Acceptance::Ignore;
    }
    let height = match &message {
        GossipMessage::Receipt(r) => Some(r.body.epoch),
        GossipMessage::Epoch(h) => Some(h.body.height),
        GossipMessage::Task(_) => None,
    };
    if let (Some(h), Ok(mut n)) = (height, shared.newest_epoch.lock()) {
        let e = n.entry(coord.key).or_insert(h);
        *e = (*e).max(h);
    }
    match message {
        GossipMessage::Task(a) => {
            let class = a.body.task.class;
            // Only a task's first announcement is left to offers: one made again (a slot
            // opened, an offer lapsed, the periodic re-announcement) is claimed as before, so
            // gossip stays the fallback for an offer that did not arrive.
            let first = a.body.announced_at <= a.body.task.created_at;
            let offered = first
                && shared.offered.lock().is_ok_and(|o| {
                    o.get(&(coord.key, class)).is_some_and(|at| now < at.saturating_add(OFFERED_SECS))
                });
            if !offered {
                take(shared, coord, a.body, now);
            }
            Acceptance::Accept
        }
        GossipMessage::Receipt(r) => {
            let b = &r.body;
            if awaited {
                let job = shared.journal.lock().ok().and_then(|j| j.jobs.get(&b.task).cloned());
                if let Some(mut job) = job {
                    job.on_receipt(b.verdict, b.reward_sats, r.id(), b.epoch);
                    tracing::info!(target: "cairn::worker", task = %b.task, verdict = ?b.verdict, reward = b.reward_sats, "receipt");
                    // Off the gossip loop: its fsync must not hold up the next announcement.
                    let s = shared.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = s.save(&job) {
                            tracing::error!(target: "cairn::worker", error = %e, "journal write failed");
                        }
                    });
                }
            }
            Acceptance::Accept
        }
        GossipMessage::Epoch(_) => Acceptance::Accept,
    }
}

/// Takes the task of an announcement (from gossip or an offer) of `coord`: starts a job
/// unless one is known, the task is passed over, or it cannot run here. Returns whether a
/// job was started.
fn take(shared: &Arc<Shared>, coord: &Coord, a: TaskAnnouncement, now: u64) -> bool {
    let announced_at = a.announced_at;
    let task = a.task;
    let id = task.id();
    // A job given up with nothing held by the coordinator is started afresh when the task
    // is announced again (announcements name tasks with a free slot).
    let known = shared
        .journal
        .lock()
        .map(|mut j| match j.jobs.get(&id) {
            Some(job) if job.may_retake() => {
                // Logged first (not synced: the new job's first synced step makes it
                // durable, and it matters only for that job); not retaken when it
                // cannot be logged, or a restart would drop the new job's steps.
                let logged =
                    shared.log.lock().is_ok_and(|mut log| log.append(&Entry::Retake(id), false).is_ok());
                !(logged && j.retake(&id))
            }
            Some(_) => true,
            None => false,
        })
        .unwrap_or(true)
        || shared
            .skip
            .lock()
            .map(|s| s.get(&id).is_some_and(|k| k.passes_over(announced_at, now)))
            .unwrap_or(true);
    if known {
        return false;
    }
    let why_not = match coord.classes.get(&task.class) {
        None => Some("class not run here"),
        Some(_) if task.input.size() > u64::from(shared.max_input) => {
            Some("input above limits.max_input_bytes")
        }
        Some((c, _)) if task.input.size() > u64::from(c.max_input_bytes) => {
            Some("input above the class limit")
        }
        _ => None,
    };
    if let Some(why) = why_not {
        tracing::debug!(target: "cairn::worker", task = %id, why, "task not taken");
        skip(shared, id, Skip::FOREVER, now);
        return false;
    }
    let Some((class, _)) = coord.classes.get(&task.class) else { return false };
    let job = Job::new(coord.key, task, id, class.name.clone(), u64::from(class.reveal_secs));
    spawn_driver(shared, job)
}

/// A coordinator's offer (SPEC.md §12.1): from the coordinator's own node and signed by it,
/// taken as its gossiped announcement would be, and remembered so that the coordinator's
/// gossiped tasks of the class are not claimed for a while. Returns whether a job was started
/// (the offer did work, so its request is refunded), or why the offer is refused.
fn on_offer(
    shared: &Arc<Shared>,
    from: &Peer,
    offer: Signed<TaskAnnouncement>,
) -> Result<bool, &'static str> {
    let signer = offer.body.task.coordinator;
    let Some(coord) = shared.coord(&signer) else { return Err("not a coordinator this worker works for") };
    if from.protocol_key() != Some(coord.key) {
        return Err("an offer comes from its coordinator's own node");
    }
    if !offer.verify() {
        return Err("the offer's signature does not verify");
    }
    let now = unix_secs();
    if coord.classes.contains_key(&offer.body.task.class) {
        if let Ok(mut o) = shared.offered.lock() {
            if o.len() >= 4096 {
                o.retain(|_, at| now < at.saturating_add(OFFERED_SECS));
            }
            o.insert((coord.key, offer.body.task.class), now);
        }
    }
    Ok(take(shared, coord, offer.body, now))
}

/// A task seen and not taken: announcements of it made before `since` are passed over until
/// `until`. A task this worker cannot run is passed over for good (`since` and `until` never
/// come); a task whose claim was refused (its slots drawn for others) only until it is announced again,
/// since the coordinator announces a task again when a slot opens (an audit replica, an
/// escalation, an expired lease), or for a few seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Skip {
    until: u64,
    since: u64,
}

impl Skip {
    const FOREVER: Skip = Skip { until: u64::MAX, since: u64::MAX };

    /// A refused claim at `now`.
    fn refused(now: u64) -> Skip {
        Skip { until: now.saturating_add(5), since: now }
    }

    /// Whether an announcement made at `announced_at` is passed over at `now`.
    fn passes_over(&self, announced_at: u64, now: u64) -> bool {
        now < self.until && announced_at < self.since
    }
}

/// Remembers to pass over `id` (see [`Skip`]). Bounded: when full, entries past their time
/// and the permanent ones (cheap to judge again) are dropped.
fn skip(shared: &Shared, id: Hash32, what: Skip, now: u64) {
    if let Ok(mut sk) = shared.skip.lock() {
        if sk.len() >= 100_000 {
            sk.retain(|_, s| s.until > now && *s != Skip::FOREVER);
        }
        sk.insert(id, what);
    }
}

/// Why a blob input could not be had.
enum BlobError {
    /// The coordinator refused or served bytes that are not the blob: give the task up.
    Bad(String),
    /// No answer: try again.
    Transient(String),
}

/// Fetches a blob input from the coordinator chunk by chunk (each bounded, each at the offset
/// asked) and checks the whole against the content hash the task names. The size was bounded
/// by the limits before the task was taken.
async fn fetch_blob(
    s: &Shared,
    peer: &Peer,
    addr: &str,
    hash: Hash32,
    size: u64,
) -> Result<Vec<u8>, BlobError> {
    let mut out: Vec<u8> = Vec::with_capacity(size as usize);
    while (out.len() as u64) < size {
        let offset = out.len() as u64;
        let len = (size - offset).min(cairn_spec::wire::MAX_BLOB_CHUNK as u64) as u32;
        match s.request(peer, addr, RequestBody::GetBlob { hash, offset, len }).await {
            Some(ResponseBody::Blob { total, offset: at, bytes })
                if total == size && at == offset && !bytes.is_empty() && bytes.len() <= len as usize =>
            {
                out.extend_from_slice(&bytes);
            }
            Some(ResponseBody::Blob { .. }) => {
                return Err(BlobError::Bad(
                    "the coordinator served a blob chunk that does not fit the input".into(),
                ))
            }
            Some(ResponseBody::Error {
                reason: ErrorReason::RateLimited | ErrorReason::WorkerLimit,
                message,
            }) => return Err(BlobError::Transient(message)),
            Some(ResponseBody::Error { reason, message }) => {
                return Err(BlobError::Bad(format!("blob input refused ({reason}): {message}")))
            }
            other => return Err(BlobError::Transient(format!("blob: {other:?}"))),
        }
    }
    if cairn_spec::content_hash(&out) != hash {
        return Err(BlobError::Bad("the blob served does not match the input's content hash".into()));
    }
    Ok(out)
}

/// Starts driving `job` unless a driver for it runs already (which is then told to ask
/// again); whether it started one.
fn spawn_driver(shared: &Arc<Shared>, job: Job) -> bool {
    let fresh = shared.driving.lock().map(|mut d| d.insert(job.id)).unwrap_or(false);
    if !fresh {
        if let Ok(mut a) = shared.again.lock() {
            a.insert(job.id);
        }
        return false;
    }
    let s = shared.clone();
    tokio::spawn(async move {
        let id = job.id;
        if let Err(e) = drive(&s, job).await {
            tracing::error!(target: "cairn::worker", task = %id, error = %e, "job stopped");
        }
        if let Ok(mut d) = s.driving.lock() {
            d.remove(&id);
        }
        if let Ok(mut a) = s.again.lock() {
            a.remove(&id);
        }
    });
    true
}

/// [`Shared::save`] off the async threads: a journal fsync must not stall the runtime the
/// network and the other jobs run on.
async fn persist(s: &Arc<Shared>, job: &Job) -> Result<(), AgentError> {
    let (s, job) = (s.clone(), job.clone());
    tokio::task::spawn_blocking(move || s.save(&job))
        .await
        .map_err(|e| AgentError::P2p(format!("journal thread: {e}")))?
}

/// Drives one job until it waits for its receipt or ends. The permit bounds the jobs
/// claiming and executing at once (`limits.concurrent_tasks`: the hardware's share): a worker
/// never holds more leases than it can run, so a slow executor is never left with a lease it
/// cannot finish in time (a miss). It is let go once the result is on disk: the commitment and
/// the reveal are round trips, and the reveal's wait depends on other workers.
async fn drive(s: &Arc<Shared>, mut job: Job) -> Result<(), AgentError> {
    let Some(coord) = s.coord(&job.coordinator) else {
        job.abandon("coordinator no longer configured".into());
        return persist(s, &job).await;
    };
    let Some((class, exec)) = coord.classes.get(&job.task.class).cloned() else {
        job.abandon("class no longer runnable here".into());
        return persist(s, &job).await;
    };
    let (peer, addr) = (coord.peer, coord.addr.clone());
    let me = s.key.public();
    let mut permit = None;
    let mut early_polls = 0u32;
    loop {
        let now = unix_secs();
        let action = job.next(now);
        if matches!(action, Action::Claim | Action::Execute) && permit.is_none() {
            permit = Some(s.permits.acquire().await.map_err(|e| AgentError::P2p(e.to_string()))?);
            // The wait may have been long: decide again at the time it ended (a lease may
            // have run out meanwhile).
            continue;
        }
        match action {
            Action::Claim => {
                let c = s.sign(Claim { task: job.id, worker: me, claimed_at: now });
                match s.request(&peer, &addr, RequestBody::Claim(c)).await {
                    Some(ResponseBody::Lease { expires_at, .. }) => {
                        job.on_lease(expires_at);
                        persist(s, &job).await?;
                    }
                    Some(ResponseBody::Error { reason, message }) => match job.on_refusal(reason, &message) {
                        AfterRefusal::Skip { worker_refused } => {
                            tracing::debug!(target: "cairn::worker", task = %job.id, %reason, %message, "claim refused");
                            if worker_refused {
                                tracing::error!(target: "cairn::worker", coordinator = %job.coordinator, %reason, %message, "the coordinator refuses this worker");
                            }
                            if matches!(reason, ErrorReason::NotRegistered | ErrorReason::Lapsed) {
                                if let Ok(mut f) = s.forgotten.lock() {
                                    f.insert(job.coordinator);
                                }
                            }
                            // Announced again while this claim was on its way (the coordinator
                            // draws at the tick after a claim and announces whom it drew): ask
                            // once more rather than pass over the offer.
                            let again = s.again.lock().map(|mut a| a.remove(&job.id)).unwrap_or(false);
                            if again && !worker_refused {
                                tokio::time::sleep(Duration::from_millis(200)).await;
                                continue;
                            }
                            skip(s, job.id, Skip::refused(now), now);
                            return Ok(());
                        }
                        after => after_refusal(after, early_polls).await,
                    },
                    other => {
                        job.on_transient(format!("claim: {other:?}"));
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                }
            }
            Action::Execute => {
                let input = match &job.task.input {
                    Payload::Inline(b) => b.clone(),
                    Payload::Blob { hash, size } => match fetch_blob(s, &peer, &addr, *hash, *size).await {
                        Ok(b) => b,
                        Err(BlobError::Bad(why)) => {
                            job.abandon(why);
                            continue;
                        }
                        Err(BlobError::Transient(why)) => {
                            job.on_transient(why);
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            continue;
                        }
                    },
                };
                let e = exec.clone();
                let out = tokio::task::spawn_blocking(move || e.run(&input)).await;
                match out {
                    Ok(Ok(result)) => {
                        let salt = s.salt(&job.id);
                        job.on_executed(result, salt);
                        permit = None;
                        // Kept on disk before the commitment leaves: a restart reveals this.
                        persist(s, &job).await?;
                    }
                    Ok(Err(ExecError::BadInput(why))) => job.abandon(format!("bad input: {why}")),
                    Ok(Err(e)) => {
                        tracing::warn!(target: "cairn::worker", task = %job.id, error = %e, "execution failed");
                        job.on_transient(e.to_string());
                    }
                    Err(e) => job.on_transient(format!("executor thread: {e}")),
                }
            }
            Action::Commit => {
                let crate::job::Stage::Executed { result, salt, .. } = &job.stage else { continue };
                let v = commitment_value(&job.id, &me, &cairn_spec::content_hash(result), &salt.0);
                let c = s.sign(Commitment { task: job.id, worker: me, commitment: v });
                match s.request(&peer, &addr, RequestBody::Commit(c)).await {
                    Some(ResponseBody::Ack) => {
                        job.on_commit_ack(unix_secs(), u64::from(class.lease_secs));
                        persist(s, &job).await?;
                    }
                    Some(ResponseBody::Error { reason, message }) => {
                        after_refusal(job.on_refusal(reason, &message), early_polls).await;
                    }
                    other => {
                        job.on_transient(format!("commit: {other:?}"));
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                }
            }
            Action::Reveal => {
                let crate::job::Stage::Committed { result, salt, .. } = &job.stage else { continue };
                let r = s.sign(Reveal {
                    task: job.id,
                    worker: me,
                    result: Payload::Inline(result.clone()),
                    salt: salt.0,
                });
                match s.request(&peer, &addr, RequestBody::Reveal(r)).await {
                    Some(ResponseBody::Ack) => {
                        job.on_reveal_ack();
                        persist(s, &job).await?;
                    }
                    Some(ResponseBody::Error { reason, message }) => {
                        let after = job.on_refusal(reason, &message);
                        if after == AfterRefusal::Poll {
                            early_polls += 1;
                            job.on_reveals_not_open(unix_secs());
                        }
                        after_refusal(after, early_polls).await;
                    }
                    other => {
                        job.on_transient(format!("reveal: {other:?}"));
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                }
            }
            // Out of time or attempts: retryable when no commitment of ours was acknowledged.
            Action::Abandon(reason) => job.abandon_retryable(reason, false),
            Action::Wait => return Ok(()),
        }
        if job.is_final() {
            if let crate::job::Stage::Abandoned { reason, .. } = &job.stage {
                tracing::warn!(target: "cairn::worker", task = %job.id, %reason, "job abandoned");
            }
            return persist(s, &job).await;
        }
    }
}

/// How often the worker checks that it is connected to each coordinator.
const RECONNECT_EVERY: Duration = Duration::from_secs(2);

/// Dials again every coordinator this worker is not connected to. Tasks reach a worker only
/// as gossip over that connection, so a worker idle when its coordinator restarted would
/// otherwise never hear of work again (its requests, which also dial, are what it lacks).
async fn reconnect(s: &Shared, lost: &mut HashSet<Peer>) {
    let Ok(peers) = s.net.peers().await else { return };
    for c in &s.coords {
        if peers.contains(&c.peer) {
            if lost.remove(&c.peer) {
                tracing::info!(target: "cairn::worker", coordinator = %c.key, "connected to the coordinator again");
            }
            continue;
        }
        if lost.insert(c.peer) {
            tracing::warn!(target: "cairn::worker", coordinator = %c.key, addr = %c.addr, "not connected to the coordinator; dialing it every few seconds");
        }
        let _ = s.net.dial(&c.addr).await;
    }
}

/// Registers again, each in a task of its own (a proof-of-work may take a while), with the
/// coordinators that said they do not know this worker; on their acknowledgement the journal
/// records it (a fresh snapshot: registrations are not in the log).
fn register_again(s: &Arc<Shared>) {
    let forgotten: Vec<PubKey> = s.forgotten.lock().map(|mut f| f.drain().collect()).unwrap_or_default();
    let now = unix_secs();
    for ckey in forgotten {
        let Some(c) = s.coord(&ckey) else { continue };
        // Not yet: its next refusal asks again.
        let due = s.reregister_at.lock().is_ok_and(|mut at| {
            let (when, wait) = at.get(&ckey).copied().unwrap_or((0, REREGISTER_FIRST_WAIT / 2));
            if now < when {
                return false;
            }
            let wait = wait.saturating_mul(2).min(REREGISTER_MAX_WAIT);
            at.insert(ckey, (now.saturating_add(wait), wait));
            true
        });
        if !due {
            continue;
        }
        if !s.registering.lock().is_ok_and(|mut r| r.insert(ckey)) {
            continue;
        }
        let (s, peer, addr, terms) = (s.clone(), c.peer, c.addr.clone(), c.terms.clone());
        tokio::spawn(async move {
            tracing::warn!(target: "cairn::worker", coordinator = %ckey, "the coordinator does not know this worker; registering again");
            let sent = send_registration(&s.cfg, &s.key, &s.net, &peer, &addr, ckey, &terms, None).await;
            let recorded = match sent {
                // A snapshot and its fsync: off the async threads.
                Ok(()) => {
                    let s2 = s.clone();
                    tokio::task::spawn_blocking(move || {
                        let poisoned = || AgentError::P2p("journal lock poisoned".into());
                        let mut j = s2.journal.lock().map_err(|_| poisoned())?;
                        record_registration(&mut j, &s2.cfg, ckey);
                        let mut log = s2.log.lock().map_err(|_| poisoned())?;
                        *log = j.save(&s2.journal_path)?;
                        Ok(())
                    })
                    .await
                    .unwrap_or_else(|e| Err(AgentError::P2p(format!("journal thread: {e}"))))
                }
                Err(e) => Err(e),
            };
            match recorded {
                Ok(()) => tracing::info!(target: "cairn::worker", coordinator = %ckey, "registered again"),
                Err(e) => {
                    tracing::error!(target: "cairn::worker", coordinator = %ckey, error = %e, "registering again failed")
                }
            }
            if let Ok(mut r) = s.registering.lock() {
                r.remove(&ckey);
            }
        });
    }
}

/// The wait after a first registration again (seconds), doubled after each one, up to
/// `REREGISTER_MAX_WAIT`.
const REREGISTER_FIRST_WAIT: u64 = 10;
const REREGISTER_MAX_WAIT: u64 = 3600;

/// Waits as a refusal asks; what the job does next is already in the job.
async fn after_refusal(after: AfterRefusal, early_polls: u32) {
    match after {
        AfterRefusal::Backoff => tokio::time::sleep(busy_backoff()).await,
        AfterRefusal::Poll => tokio::time::sleep(reveal_poll(early_polls)).await,
        AfterRefusal::Skip { .. } | AfterRefusal::GaveUp | AfterRefusal::Ignored => {}
    }
}

/// How long to wait after a rate or per-worker limit: half a second to a second, spread at
/// random so the jobs of a worker (and the workers of a network) that were slowed together do
/// not return together.
fn busy_backoff() -> Duration {
    let r = random32();
    Duration::from_millis(500 + u64::from(u16::from_be_bytes([r[0], r[1]])) % 500)
}

/// How long to wait before asking again whether reveals are open: briefly at first (the
/// other replicas usually commit within a second), then once a second, so many jobs waiting
/// on slow replicas do not add up to a flood of requests.
fn reveal_poll(polls: u32) -> Duration {
    Duration::from_millis(if polls <= 8 { 250 } else { 1000 })
}

/// The executors `cfg` configures: the embedding model when enabled (its weights checked
/// against the pinned hash), the command and the chat endpoint when set.
pub fn executors_from_config(cfg: &WorkerConfig) -> Result<Vec<Arc<dyn Executor>>, ExecError> {
    let mut out: Vec<Arc<dyn Executor>> = Vec::new();
    if cfg.embedding.enabled {
        let dir = crate::models::minilm_dir(&cfg.models_dir());
        let m = crate::executor::embedding::MiniLm::load(&dir, Some(crate::models::minilm_sha256()))?;
        out.push(Arc::new(m));
    }
    if let Some(c) = cfg.command_executor() {
        out.push(Arc::new(c));
    }
    if let Some(c) = cfg.chat_executor() {
        out.push(Arc::new(c));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn old_gossip_is_neither_taken_nor_spread() {
        use cairn_spec::{EpochHeader, Network, Task, TaskAnnouncement};
        let coord = SigningKey::from_secret_bytes([1; 32]).unwrap();
        let task = Task {
            network: Network::Regtest,
            coordinator: coord.public(),
            class: Hash32([2; 32]),
            requester: coord.public(),
            nonce: 1,
            units: 1,
            budget_sats: 10,
            created_at: 1_000,
            input: cairn_spec::Payload::Inline(b"x".to_vec()),
        };
        let ann = |at: u64| {
            GossipMessage::Task(Signed::sign(
                TaskAnnouncement { task: task.clone(), announced_at: at },
                &coord,
                &[0; 32],
            ))
        };
        let now = 10_000;
        assert!(fresh(&ann(now), now, None));
        assert!(fresh(&ann(now - MAX_ANNOUNCEMENT_AGE_SECS), now, None), "a slow clock");
        assert!(fresh(&ann(now + MAX_ANNOUNCEMENT_AGE_SECS), now, None), "a fast one");
        assert!(!fresh(&ann(now - MAX_ANNOUNCEMENT_AGE_SECS - 1), now, None), "a replay");
        assert!(!fresh(&ann(now + MAX_ANNOUNCEMENT_AGE_SECS + 1), now, None));
        let header = |height: u32| {
            let h = EpochHeader {
                network: Network::Regtest,
                coordinator: coord.public(),
                height,
                prev: Hash32([1; 32]),
                receipts_root: Hash32::ZERO,
                state_root: Hash32::ZERO,
                receipt_count: 0,
                accepted_count: 0,
                reward_sats: 0,
                time: now,
                draw_seed: Hash32::ZERO,
                next_seed_hash: Hash32::ZERO,
                next_roster: Hash32::ZERO,
                beacon: cairn_spec::Beacon::None,
                anchor: cairn_spec::AnchorBinding::None,
                scores_root: cairn_spec::merkle::empty_root(),
                history: Hash32::ZERO,
            };
            GossipMessage::Epoch(Box::new(Signed::sign(h, &coord, &[0; 32])))
        };
        assert!(fresh(&header(3), now, None), "nothing seen yet");
        assert!(fresh(&header(3), now, Some(3 + STALE_EPOCHS - 1)), "a late delivery still spreads");
        assert!(!fresh(&header(3), now, Some(3 + STALE_EPOCHS)), "a replay");
        assert!(fresh(&header(9), now, Some(5)));
    }

    #[test]
    fn a_refused_task_is_looked_at_again_when_announced_again() {
        let refused = Skip::refused(100);
        assert!(refused.passes_over(99, 100), "the announcement it was refused on");
        assert!(!refused.passes_over(100, 101), "announced again (a slot opened)");
        assert!(!refused.passes_over(99, 105), "or after a few seconds");
        assert!(Skip::FOREVER.passes_over(u64::MAX - 1, u64::MAX - 1), "a class not run here");
    }

    #[test]
    fn bond_proofs_verify_and_carry_the_internal_txid() {
        let (c, w, b) = (
            SigningKey::from_secret_bytes([1; 32]).unwrap(),
            SigningKey::from_secret_bytes([2; 32]).unwrap(),
            SigningKey::from_secret_bytes([3; 32]).unwrap(),
        );
        let shown = "00000000000000000000000000000000000000000000000000000000000000ff";
        let bond = bond_proof(&c.public(), &w.public(), shown, 1, &b).unwrap();
        assert!(bond.verify(&c.public(), &w.public()));
        assert!(!bond.verify(&c.public(), &c.public()), "bound to the worker");
        assert_eq!(bond.txid.0[0], 0xff, "Bitcoin shows txids byte-reversed");
        assert!(bond_proof(&c.public(), &w.public(), "xyz", 1, &b).is_err());
    }

    #[test]
    fn proof_of_work_reports_progress_and_solves() {
        let k = SigningKey::from_secret_bytes([4; 32]).unwrap();
        let reg = Registration {
            network: cairn_spec::Network::Regtest,
            coordinator: k.public(),
            worker: k.public(),
            payout_address: "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080".into(),
            created_at: 1,
            pow_nonce: 0,
            bond: None,
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let progress: Progress = Arc::new(move |t, e| s2.lock().unwrap().push((t, e)));
        let solved = solve(reg, 18, Some(progress));
        assert!(solved.work_bits() >= 18);
        let seen = seen.lock().unwrap();
        assert!(seen.iter().all(|(_, e)| *e == 1 << 18));
        assert!(seen.last().is_some_and(|(t, e)| t >= e), "the bar ends full");
    }
}
