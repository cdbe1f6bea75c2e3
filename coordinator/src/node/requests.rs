//! Worker requests: grouped as they arrive, checked (signatures, on every core), decided by
//! the machine as one group, written in one synced batch, then answered in order; and the
//! read requests (terms, blobs, receipts, epochs) answered from the store.
//!
//! Owns the pipeline's order (check → decide → write → answer) and the refusals a request
//! gets before the machine sees it. Must never answer a write before it is on disk.

use super::*;
use cairn_p2p::Cost;

/// A group of worker messages decided by the machine: its answers (and effects) are sent
/// once its write is on disk.
pub(super) struct Written {
    pending: crate::core::Pending<(ResponseBody, Cost)>,
    replies: Vec<(ReplyToken, Option<Retry>)>,
    /// The stage each message marks once accepted (`stages`), in the order of `replies`.
    marks: Vec<Option<(Hash32, stages::Event)>>,
}

use super::held::Retry;

/// Groups in flight between the machine and their answers, at most (each holds up to
/// `MAX_GROUP` requests); the next group waits for a place.
pub const GROUPS_IN_FLIGHT: usize = 2;

/// A group of worker messages being checked (signatures, on every core).
pub(super) struct Checking {
    checked: tokio::task::JoinHandle<Vec<(Reply, Result<WorkerMsg, Refusal>)>>,
}

/// Where a worker message's answer goes, and for a reveal what retrying it needs.
pub(super) type Reply = (ReplyToken, Option<Retry>);

/// A request as it comes in: from the network (no retry yet) or released from holding.
pub(super) type Incoming = (Peer, Request, ReplyToken, Option<Retry>);

/// Groups whose check may run while the previous group is decided: the check of group N+1
/// (most of the node's CPU per message) overlaps the machine deciding group N, as the ingest
/// bench measures.
pub const GROUPS_CHECKING: usize = 1;

/// Decides each checked group, in the order the groups arrived: refusals from the check are
/// answered at once, the rest decided by the machine as one group and handed to
/// [`answer_groups`]. A failed decision (storage) answers the group with an error and stops:
/// `fatal` tells the node's loop, which then stops the node.
pub(super) async fn decide_groups(
    ctx: Ctx,
    mut groups: mpsc::Receiver<Checking>,
    fatal: mpsc::Sender<CoreError>,
) {
    while let Some(Checking { checked }) = groups.recv().await {
        // A check cannot panic on bad input; should one panic anyway, its group gets no
        // answers rather than wrong ones (as `check_all` does for a panicking thread).
        let checked = checked.await.unwrap_or_default();
        let (mut replies, mut msgs, mut marks) = (Vec::new(), Vec::new(), Vec::new());
        for (reply, c) in checked {
            match c {
                Ok(m) => {
                    // Timed once accepted and written (`answer_groups`): a refused or forged
                    // message marks nothing.
                    marks.push(match &m {
                        WorkerMsg::Claim(c) => Some((c.get().body.task, stages::Event::Claim)),
                        WorkerMsg::Commit(c) => Some((c.get().body.task, stages::Event::Commit)),
                        WorkerMsg::Reveal(r) => Some((r.get().body.task, stages::Event::Reveal)),
                        WorkerMsg::Register(..)
                        | WorkerMsg::RegisterValidator(..)
                        | WorkerMsg::ScoreCommit(..)
                        | WorkerMsg::ScoreReveal(..) => None,
                    });
                    replies.push(reply);
                    msgs.push(m);
                }
                Err(r) => ctx.respond(reply.0, Err(r)).await,
            }
        }
        if msgs.is_empty() {
            continue;
        }
        let now = unix_secs();
        let core = ctx.core.clone();
        let decided = tokio::task::spawn_blocking(move || match core.lock() {
            Ok(mut c) => c.submit_many(msgs, |m, msg| {
                // Work that moved a task on gives its request's token back (SPEC.md §11.5):
                // an honest worker is never slowed by the rate meant for floods. Each such
                // refund is bounded by what the coordinator drew the worker for. A repeat, a
                // refusal, a read or a registration (which a key may send again and again
                // with new times) is charged.
                let task_work =
                    matches!(msg, WorkerMsg::Claim(..) | WorkerMsg::Commit(..) | WorkerMsg::Reveal(..));
                dispatch(m, msg, now).map(|(body, step)| {
                    let cost =
                        if task_work && !step.changes.is_empty() { Cost::Refunded } else { Cost::Charged };
                    ((body, cost), step)
                })
            }),
            Err(_) => Err(CoreError::Poisoned),
        })
        .await
        .unwrap_or(Err(CoreError::Poisoned));
        let failure = match decided {
            // Answered once on disk, while the next group is checked and decided.
            Ok(pending) => match ctx.written.send(Written { pending, replies, marks }).await {
                Ok(()) => continue,
                Err(_) => CoreError::Poisoned,
            },
            Err(e) => {
                ctx.unavailable(replies.into_iter().map(|r| r.0).collect()).await;
                e
            }
        };
        // The loop stops the node on the first failure it hears of; a second one is moot.
        let _ = fatal.try_send(failure);
        return;
    }
}

/// Answers each group once it is on disk, in the order the groups were decided, after
/// performing its effects. A failed write answers the group with an error and stops: `fatal`
/// tells the node's loop, which then stops the node.
pub(super) async fn answer_groups(
    ctx: Ctx,
    mut groups: mpsc::Receiver<Written>,
    fatal: mpsc::Sender<CoreError>,
) {
    while let Some(Written { pending, replies, marks }) = groups.recv().await {
        let written =
            tokio::task::spawn_blocking(move || pending.wait()).await.unwrap_or(Err(CoreError::Poisoned));
        match written {
            Ok((results, effects)) => {
                // A reveal too early for its window is held, not refused (`held`), before the
                // effects run: a window this very group opened releases it at once.
                let now_ms = cairn_p2p::clock::unix_millis();
                let mut answers = Vec::with_capacity(results.len());
                {
                    let mut held = ctx.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    for (((reply, retry), answer), mark) in replies.into_iter().zip(results).zip(marks) {
                        if let (Ok(_), Some((task, event))) = (&answer, mark) {
                            ctx.stage(task, event);
                        }
                        match (&answer, retry) {
                            (Err(Refusal::TooEarly(_)), Some(retry)) => {
                                if let Some(reply) = held.hold(retry, reply, now_ms) {
                                    answers.push((reply, answer));
                                }
                            }
                            _ => answers.push((reply, answer)),
                        }
                    }
                }
                ctx.perform(effects).await;
                for (reply, answer) in answers {
                    match answer {
                        Ok((body, cost)) => ctx.respond_at(reply, Ok(body), cost).await,
                        Err(r) => ctx.respond(reply, Err(r)).await,
                    }
                }
            }
            Err(e) => {
                ctx.unavailable(replies.into_iter().map(|r| r.0).collect()).await;
                let _ = fatal.send(e).await;
                return;
            }
        }
    }
}

/// Most requests persisted in one group commit. Under load a group shares one synced write,
/// one write of each touched ledger, lock and worker row, and a receipt batch signature per
/// 256 receipts; the ingest bench (`cargo bench -p cairn-coordinator --bench ingest`) runs
/// groups of this size. A group of 512 reveals is checked in about 25 ms on 2 cores.
pub const MAX_GROUP: usize = 512;

/// A worker message whose sender and signature were checked.
pub(super) enum WorkerMsg {
    Register(Verified<cairn_spec::Registration>, Option<u64>),
    Claim(Verified<cairn_spec::Claim>),
    Commit(Verified<cairn_spec::Commitment>),
    Reveal(Verified<cairn_spec::Reveal>),
    /// A validator's registration, with its bond's value as Bitcoin Core reported it.
    RegisterValidator(Verified<cairn_spec::ValidatorRegistration>, Option<u64>),
    ScoreCommit(Verified<cairn_spec::ScoreCommit>),
    ScoreReveal(Verified<cairn_spec::ScoreReveal>),
}

/// Worker messages must come from the worker's own node (its libp2p identity is its protocol
/// key), so a relayed or replayed message from elsewhere is refused; then the signature.
/// Checks a group's messages on every core (signature verification is most of the node's
/// work per message), keeping their order.
pub(super) fn check_all<R>(
    work: Vec<(Peer, RequestBody, R)>,
    rpc: Option<&BitcoinCoreRpc>,
) -> Vec<(R, Result<WorkerMsg, Refusal>)> {
    let (replies, checks): (Vec<R>, Vec<(Peer, RequestBody)>) =
        work.into_iter().map(|(from, body, reply)| (reply, (from, body))).unzip();
    // A checker cannot panic on bad input (every decoder and check returns a refusal);
    // should one panic anyway, the group gets no answers rather than wrong ones.
    let Ok(mut results) = crate::parallel::map_ordered(checks, |(from, body)| check(&from, body)) else {
        return Vec::new();
    };
    // Then Bitcoin Core, about bonds whose registration and bond signatures verified only
    // (a forgery costs no question and takes no turn). Each question holds up the groups
    // after this one, so a group asks about a bounded number; later ones are told to retry.
    let mut lookups = 0usize;
    for result in &mut results {
        let (bond, value) = match result {
            Ok(WorkerMsg::Register(v, value)) => {
                let r = &v.get().body;
                let Some(bond) = r.bond.as_deref().filter(|b| b.verify(&r.coordinator, &r.worker)) else {
                    continue;
                };
                (bond.clone(), value)
            }
            Ok(WorkerMsg::RegisterValidator(v, value)) => {
                let r = &v.get().body;
                if !r.bond.verify(&r.coordinator, &r.validator) {
                    continue;
                }
                (r.bond.clone(), value)
            }
            _ => continue,
        };
        lookups += 1;
        if lookups > MAX_BOND_LOOKUPS {
            *result = Err(Refusal::TooEarly("too many bonded registrations at once; retry".into()));
        } else if let Some(rpc) = rpc {
            *value = bond_value(rpc, &bond);
        }
    }
    replies.into_iter().zip(results).collect()
}

/// Most bonds one group of requests asks Bitcoin Core about.
const MAX_BOND_LOOKUPS: usize = 8;

/// Binds a worker message to its sender and checks its signature; a registration's bond is
/// not looked up here (`check_all` does, after every signature of the group verified).
pub(super) fn check(from: &Peer, body: RequestBody) -> Result<WorkerMsg, Refusal> {
    let bound = |signer: &cairn_spec::PubKey| {
        if from.protocol_key().as_ref() == Some(signer) {
            Ok(())
        } else {
            Err(Refusal::Invalid("message signer is not the sending peer's key".into()))
        }
    };
    match body {
        RequestBody::Register(s) => {
            bound(&s.body.worker)?;
            Ok(WorkerMsg::Register(Verified::check(s)?, None))
        }
        RequestBody::Claim(s) => {
            bound(&s.body.worker)?;
            Ok(WorkerMsg::Claim(Verified::check(s)?))
        }
        RequestBody::Commit(s) => {
            bound(&s.body.worker)?;
            Ok(WorkerMsg::Commit(Verified::check(s)?))
        }
        RequestBody::Reveal(s) => {
            bound(&s.body.worker)?;
            Ok(WorkerMsg::Reveal(Verified::check(s)?))
        }
        RequestBody::RegisterValidator(s) => {
            bound(&s.body.validator)?;
            Ok(WorkerMsg::RegisterValidator(Verified::check(*s)?, None))
        }
        RequestBody::ScoreCommit(s) => {
            bound(&s.body.validator)?;
            Ok(WorkerMsg::ScoreCommit(Verified::check(*s)?))
        }
        RequestBody::ScoreReveal(s) => {
            bound(&s.body.validator)?;
            Ok(WorkerMsg::ScoreReveal(Verified::check(*s)?))
        }
        _ => Err(Refusal::Invalid("not a worker message".into())),
    }
}

pub(super) fn dispatch(
    m: &mut crate::lifecycle::Machine,
    msg: WorkerMsg,
    now: u64,
) -> Result<(ResponseBody, crate::lifecycle::Step), Refusal> {
    match msg {
        WorkerMsg::Register(v, bond) => Ok((ResponseBody::Ack, m.register_bonded(v, bond, now)?)),
        WorkerMsg::Claim(v) => {
            let task = v.get().body.task;
            let (expires_at, step) = m.claim(v, now)?;
            Ok((ResponseBody::Lease { task, expires_at }, step))
        }
        WorkerMsg::Commit(v) => Ok((ResponseBody::Ack, m.commit(v, now)?)),
        WorkerMsg::Reveal(v) => Ok((ResponseBody::Ack, m.reveal(v, now)?)),
        WorkerMsg::RegisterValidator(v, bond) => Ok((ResponseBody::Ack, m.register_validator(v, bond, now)?)),
        WorkerMsg::ScoreCommit(v) => Ok((ResponseBody::Ack, m.score_commit(v)?)),
        WorkerMsg::ScoreReveal(v) => Ok((ResponseBody::Ack, m.score_reveal(v)?)),
    }
}

impl Ctx {
    /// Answers a group of requests: reads at once; worker messages are checked (sender bound
    /// to signer, signature) off the async threads and handed, in order, to `decide_groups`,
    /// which decides each group once its check is done while the next group is checked.
    /// A reveal comes with what retrying it needs (`Retry`), its own when it is one released
    /// from holding, so its hold is counted from its first arrival.
    pub(super) async fn on_requests(&self, batch: Vec<Incoming>) -> Result<(), NodeError> {
        let mut answers: Vec<(ReplyToken, Result<ResponseBody, Refusal>)> = Vec::new();
        let mut work: Vec<(Peer, RequestBody, (ReplyToken, Option<Retry>))> = Vec::new();
        let now_ms = cairn_p2p::clock::unix_millis();
        for (from, req, reply, retry) in batch {
            if matches!(req.body, RequestBody::GetTerms | RequestBody::GetValidators)
                || crate::sync::is_read(&req.body)
            {
                answers.push((reply, self.read(req.body)));
            } else {
                let retry = retry.or_else(|| Retry::of(&from, &req, now_ms));
                work.push((from, req.body, (reply, retry)));
            }
        }
        if !work.is_empty() {
            let rpc = self.bond_rpc.clone();
            let checked = tokio::task::spawn_blocking(move || check_all(work, rpc.as_deref()));
            if self.checking.send(Checking { checked }).await.is_err() {
                return Err(CoreError::Poisoned.into());
            }
        }
        for (reply, answer) in answers {
            self.respond(reply, answer).await;
        }
        Ok(())
    }

    /// Answers a group the node could not decide or write: it is stopping after a storage
    /// failure, and the workers retry elsewhere or after its restart.
    pub(super) async fn unavailable(&self, replies: Vec<ReplyToken>) {
        for reply in replies {
            let body = ResponseBody::error(ErrorReason::Internal, "node unavailable");
            let _ = self.net.respond(reply, body).await;
        }
    }

    pub(super) async fn respond(&self, reply: ReplyToken, answer: Result<ResponseBody, Refusal>) {
        self.respond_at(reply, answer, Cost::Charged).await
    }

    /// Answers a request at `cost` to its sender's request bucket.
    pub(super) async fn respond_at(
        &self,
        reply: ReplyToken,
        answer: Result<ResponseBody, Refusal>,
        cost: Cost,
    ) {
        let (body, cost) = match answer {
            Ok(b) => {
                self.metrics.accepted_messages.inc();
                (b, cost)
            }
            Err(r) => {
                self.metrics.refusals.inc();
                tracing::debug!(target: "cairn::node", reason = %r, "request refused");
                let cost = if r.from_a_stranger() { Cost::Forfeit } else { cost };
                (r.to_response(), cost)
            }
        };
        if let Err(e) = self.net.respond_at(reply, body, cost).await {
            tracing::debug!(target: "cairn::node", error = %e, "response not sent");
        }
    }

    pub(super) fn read(&self, body: RequestBody) -> Result<ResponseBody, Refusal> {
        if matches!(body, RequestBody::GetTerms) {
            return Ok(ResponseBody::Terms(Box::new((*self.terms).clone())));
        }
        if matches!(body, RequestBody::GetValidators) {
            // Whose probes a worker answers (SPEC.md §13.7): admitted, bond still counting.
            let core = self.core.lock().map_err(|_| Refusal::Unavailable("node unavailable"))?;
            let mut keys: Vec<_> =
                core.machine().validators().filter(|v| v.active()).map(|v| v.key()).collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            keys.truncate(cairn_spec::wire::MAX_VALIDATORS_LISTED);
            return Ok(ResponseBody::Validators(keys));
        }
        crate::sync::answer(self.store()?.as_ref(), &body)
    }

    pub(super) fn store(&self) -> Result<Arc<dyn KvStore>, Refusal> {
        self.core.lock().map(|c| c.store().clone()).map_err(|_| Refusal::Unavailable("node unavailable"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use cairn_anchor::{RpcAuth, RpcConfig};
    use cairn_spec::{Bond, Registration, Signed, SigningKey};
    use std::net::TcpListener;

    /// A "Bitcoin Core" that counts the connections made to it and answers none.
    fn counting_core() -> (TcpListener, BitcoinCoreRpc) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut cfg = RpcConfig::new(
            format!("http://{}", listener.local_addr().unwrap()),
            RpcAuth::UserPass { user: "u".into(), password: "p".into() },
        );
        cfg.attempts = 1;
        cfg.timeout = std::time::Duration::from_millis(200);
        (listener, BitcoinCoreRpc::new(cfg).unwrap())
    }

    fn connections(l: &TcpListener) -> usize {
        std::iter::from_fn(|| l.accept().ok()).count()
    }

    fn bonded(worker: &SigningKey, bond_signer: &SigningKey, worker_signer: &SigningKey) -> RequestBody {
        let coordinator = SigningKey::from_secret_bytes([1; 32]).unwrap().public();
        let bond_key = SigningKey::from_secret_bytes([2; 32]).unwrap();
        let txid = cairn_spec::Hash32([9; 32]);
        let reg = Registration {
            network: cairn_spec::Network::Regtest,
            coordinator,
            worker: worker.public(),
            payout_address: String::new(),
            created_at: 1,
            pow_nonce: 0,
            bond: Some(Box::new(Bond {
                txid,
                vout: 0,
                key: bond_key.public(),
                signature: bond_signer.sign(
                    &cairn_spec::work::bond_message(&coordinator, &worker.public(), &txid, 0),
                    &[3; 32],
                ),
            })),
        };
        RequestBody::Register(Signed::sign(reg, worker_signer, &[4; 32]))
    }

    /// Issue 25 item 7: a forged registration or bond costs the node no question to Bitcoin
    /// Core; a well-signed one does (so the count is not vacuous); a flood in one group asks
    /// about a bounded number.
    #[test]
    fn bonds_are_looked_up_only_after_their_signatures_verify() {
        let (listener, rpc) = counting_core();
        let worker = SigningKey::from_secret_bytes([5; 32]).unwrap();
        let bond_key = SigningKey::from_secret_bytes([2; 32]).unwrap();
        let stranger = SigningKey::from_secret_bytes([6; 32]).unwrap();
        let peer = Peer::for_key(&worker).unwrap();

        // Forgeries first in the group, of both kinds, then one well-signed bond.
        let mut group: Vec<(Peer, RequestBody, u32)> = Vec::new();
        for i in 0..10 {
            group.push((peer, bonded(&worker, &bond_key, &stranger), i));
            group.push((peer, bonded(&worker, &stranger, &worker), 100 + i));
        }
        group.push((peer, bonded(&worker, &bond_key, &worker), 999));
        let out = check_all(group, Some(&rpc));
        assert_eq!(out.len(), 21);
        for (tag, r) in &out {
            match tag {
                0..=9 => assert!(matches!(r, Err(Refusal::BadSignature))),
                // A bond its key did not sign admits nothing: no value, no question.
                100..=109 => assert!(matches!(r, Ok(WorkerMsg::Register(_, None)))),
                _ => assert!(matches!(r, Ok(WorkerMsg::Register(_, None))), "no answer, no bond value"),
            }
        }
        assert_eq!(
            connections(&listener),
            1,
            "only the well-signed bond is looked up, forgeries took no turn"
        );

        let flood = (0..20).map(|_| (peer, bonded(&worker, &bond_key, &worker), ())).collect::<Vec<_>>();
        let (listener, rpc) = counting_core();
        let out = check_all(flood, Some(&rpc));
        assert_eq!(out.len(), 20);
        let refused = out.iter().filter(|(_, r)| matches!(r, Err(Refusal::TooEarly(_)))).count();
        assert_eq!(refused, 20 - MAX_BOND_LOOKUPS);
        assert_eq!(connections(&listener), MAX_BOND_LOOKUPS);
    }
}
