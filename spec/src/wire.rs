//! What travels on the network (SPEC.md §11): gossip messages (task announcements,
//! receipts, epoch headers) and the request/response frames of the Cairn request protocol,
//! with their size bounds and topic names.
//!
//! Owns these layouts and bounds. Must never know about libp2p: the `p2p` crate carries the
//! bytes; this module says what they mean.

use crate::codec::{expect_version, Decode, DecodeError, Encode, Reader, Writer};
use crate::epoch::SignedEpochHeader;
use crate::hash::{Hash32, Tag};
use crate::keys::PubKey;
use crate::ledger::LedgerEntry;
use crate::network::Network;
use crate::probe::{Probe, ProbeAnswer};
use crate::receipt::SignedReceipt;
use crate::rounds::ScoredRound;
use crate::scores::{ScoreCommit, ScoreReveal, ValidatorRegistration};
use crate::signed::{Object, Signed, Signer};
use crate::task::{Task, TaskClass};
use crate::work::{Commitment, Registration, Reveal};

/// Largest gossip message.
pub const MAX_GOSSIP_BYTES: usize = 128 * 1024;
/// Largest request frame.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;
/// Largest response frame.
pub const MAX_RESPONSE_BYTES: usize = 2 * 1024 * 1024;
/// Most epoch headers per `GetEpochs` request or response.
pub const MAX_EPOCHS_PER_REQUEST: usize = 256;
/// Largest blob chunk a `GetBlob` may ask for.
pub const MAX_BLOB_CHUNK: usize = 1024 * 1024;
/// Most blob bytes one `Blob` answer carries: the whole frame must stay within the 1 MiB
/// object bound (§3), so an answer to a 1 MiB ask is shorter; the asker goes on from there.
pub const MAX_BLOB_ANSWER: usize = crate::codec::MAX_OBJECT_BYTES - 64;
/// Longest error message in a response.
pub const MAX_ERROR_MESSAGE: usize = 256;
/// Most task classes in one `Terms` answer.
pub const MAX_CLASSES_PER_TERMS: usize = 64;
/// Most receipts per `GetEpochReceipts` request or `Receipts` response: 2048 of the longest
/// signed receipt (505 bytes) stay under the 1 MiB object bound (§3).
pub const MAX_RECEIPTS_PER_REQUEST: usize = 2048;
/// Most ledger entries per `GetLedger` request or `Ledger` response (≈ 467 KiB).
pub const MAX_LEDGER_PER_REQUEST: usize = 8192;
/// Most validator keys a `Validators` answer lists (what a coordinator admits at once).
pub const MAX_VALIDATORS_LISTED: usize = 1024;

/// The wire protocol version carried in topic names, protocol ids and every frame. Version 3
/// sends gossip unsigned by libp2p (each message carries its own BIP340 signature); version 2
/// carried a typed [`ErrorReason`] in a refusal where version 1 carried a number.
pub const WIRE_VERSION: u8 = 3;

/// A gossip message's id (SPEC.md §11.3): `SHA256(len u16 ‖ topic ‖ data)`, the topic's
/// full name, so the same bytes sent on two topics are two messages and a copy on the wrong
/// topic never makes the genuine one a duplicate.
pub fn gossip_message_id(topic: &str, data: &[u8]) -> crate::Hash32 {
    let name = topic.as_bytes();
    let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
    let mut b = Vec::with_capacity(2 + name.len() + data.len());
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(name.get(..usize::from(len)).unwrap_or(name));
    b.extend_from_slice(data);
    crate::hash::sha256(&b)
}

/// A gossip topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Task announcements.
    Tasks,
    /// Work receipts.
    Receipts,
    /// Epoch headers.
    Epochs,
}

impl Topic {
    /// All topics.
    pub const ALL: [Topic; 3] = [Topic::Tasks, Topic::Receipts, Topic::Epochs];

    /// The topic string on `network`: `cairn/<WIRE_VERSION>/<network>/<topic>`.
    pub fn name(self, network: Network) -> String {
        let t = match self {
            Topic::Tasks => "tasks",
            Topic::Receipts => "receipts",
            Topic::Epochs => "epochs",
        };
        format!("cairn/{WIRE_VERSION}/{}/{t}", network.name())
    }
}

/// The request-response protocol id on `network`.
pub fn request_protocol(network: Network) -> String {
    format!("/cairn/{WIRE_VERSION}/{}/req", network.name())
}

/// A coordinator's announcement of a task open for claims.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskAnnouncement {
    /// The task (its coordinator signs the announcement).
    pub task: Task,
    /// Unix seconds of the announcement.
    pub announced_at: u64,
}

impl Encode for TaskAnnouncement {
    fn encode(&self, w: &mut Writer) {
        w.u8(1);
        self.task.encode(w);
        w.u64(self.announced_at);
    }
}

impl Decode for TaskAnnouncement {
    const NAME: &'static str = "task announcement";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_version(r, Self::NAME, 1)?;
        Ok(TaskAnnouncement { task: Task::decode(r)?, announced_at: r.u64("announced_at")? })
    }
}

impl Object for TaskAnnouncement {
    const TAG: Tag = Tag::TaskAnnouncement;
}

impl Signer for TaskAnnouncement {
    fn signer(&self) -> &PubKey {
        &self.task.coordinator
    }
}

/// A worker's claim on a task.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claim {
    /// Task id.
    pub task: Hash32,
    /// Worker's key.
    pub worker: PubKey,
    /// Unix seconds when signed.
    pub claimed_at: u64,
}

impl Encode for Claim {
    fn encode(&self, w: &mut Writer) {
        w.u8(1).raw(&self.task.0);
        self.worker.encode(w);
        w.u64(self.claimed_at);
    }
}

impl Decode for Claim {
    const NAME: &'static str = "claim";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_version(r, Self::NAME, 1)?;
        Ok(Claim {
            task: Hash32(r.array("task")?),
            worker: PubKey::decode(r, "worker")?,
            claimed_at: r.u64("claimed_at")?,
        })
    }
}

impl Object for Claim {
    const TAG: Tag = Tag::Claim;
}

impl Signer for Claim {
    fn signer(&self) -> &PubKey {
        &self.worker
    }
}

/// A gossip message: one signed protocol object, tagged by kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GossipMessage {
    /// Kind 1, topic `tasks`.
    Task(Signed<TaskAnnouncement>),
    /// Kind 2, topic `receipts`.
    Receipt(SignedReceipt),
    /// Kind 3, topic `epochs` (boxed: a header is several times the other kinds' size).
    Epoch(Box<SignedEpochHeader>),
}

impl GossipMessage {
    /// The topic this message belongs on.
    pub fn topic(&self) -> Topic {
        match self {
            GossipMessage::Task(_) => Topic::Tasks,
            GossipMessage::Receipt(_) => Topic::Receipts,
            GossipMessage::Epoch(_) => Topic::Epochs,
        }
    }

    /// The network the signed object is for.
    pub fn network(&self) -> Network {
        match self {
            GossipMessage::Task(t) => t.body.task.network,
            GossipMessage::Receipt(r) => r.body.network,
            GossipMessage::Epoch(h) => h.body.network,
        }
    }

    /// The key that signed the object (always a coordinator).
    pub fn signer(&self) -> PubKey {
        match self {
            GossipMessage::Task(t) => *t.body.signer(),
            GossipMessage::Receipt(r) => *r.body.signer(),
            GossipMessage::Epoch(h) => *h.body.signer(),
        }
    }

    /// Whether the object's signature is valid.
    pub fn verify_signature(&self) -> bool {
        match self {
            GossipMessage::Task(t) => t.verify(),
            GossipMessage::Receipt(r) => r.verify(),
            GossipMessage::Epoch(h) => h.verify(),
        }
    }
}

impl Encode for GossipMessage {
    fn encode(&self, w: &mut Writer) {
        w.u8(WIRE_VERSION);
        match self {
            GossipMessage::Task(t) => {
                w.u8(1);
                t.encode(w);
            }
            GossipMessage::Receipt(r) => {
                w.u8(2);
                r.encode(w);
            }
            GossipMessage::Epoch(h) => {
                w.u8(3);
                h.encode(w);
            }
        }
    }
}

impl Decode for GossipMessage {
    const NAME: &'static str = "gossip message";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_version(r, Self::NAME, WIRE_VERSION)?;
        match r.u8("kind")? {
            1 => Ok(GossipMessage::Task(Signed::decode(r)?)),
            2 => Ok(GossipMessage::Receipt(SignedReceipt::decode(r)?)),
            3 => Ok(GossipMessage::Epoch(Box::new(Signed::decode(r)?))),
            tag => Err(DecodeError::InvalidTag { field: "kind", tag }),
        }
    }
}

/// What a request asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestBody {
    /// 1: register as a worker.
    Register(Signed<Registration>),
    /// 2: claim a task (a lease).
    Claim(Signed<Claim>),
    /// 3: commit to a result.
    Commit(Signed<Commitment>),
    /// 4: reveal a result.
    Reveal(Signed<Reveal>),
    /// 5: a chunk of a content-addressed blob.
    GetBlob {
        /// Content hash.
        hash: Hash32,
        /// First byte.
        offset: u64,
        /// At most `MAX_BLOB_CHUNK`.
        len: u32,
    },
    /// 6: a receipt by id.
    GetReceipt {
        /// Receipt id.
        id: Hash32,
    },
    /// 7: signed epoch headers from a height (sync).
    GetEpochs {
        /// First height.
        from: u32,
        /// At most `MAX_EPOCHS_PER_REQUEST`.
        count: u16,
    },
    /// The coordinator's terms: registration cost and task classes (tag 8, empty body).
    GetTerms,
    /// 9: receipts of a closed epoch, by index (follower sync).
    GetEpochReceipts {
        /// Epoch height.
        height: u32,
        /// First receipt index.
        from: u32,
        /// At most `MAX_RECEIPTS_PER_REQUEST`.
        count: u16,
    },
    /// 10: the ledger entries a closed epoch's state root commits to, by index (follower sync).
    GetLedger {
        /// Epoch height.
        height: u32,
        /// First entry index (entries are in worker-key order).
        from: u32,
        /// At most `MAX_LEDGER_PER_REQUEST`.
        count: u16,
    },
    /// 11: a coordinator tells a worker it drew for a slot (SPEC.md §12.1): the task's signed
    /// announcement, sent to that worker alone; the worker claims as it would from gossip.
    Offer(Box<Signed<TaskAnnouncement>>),
    /// 12: register as a validator of the coordinator's scored classes (SPEC.md §13.5).
    RegisterValidator(Box<Signed<ValidatorRegistration>>),
    /// 13: commit to a score sheet (SPEC.md §13.4).
    ScoreCommit(Box<Signed<ScoreCommit>>),
    /// 14: reveal a committed score sheet (SPEC.md §13.4).
    ScoreReveal(Box<Signed<ScoreReveal>>),
    /// 15: the scored rounds a closed epoch's header commits (SPEC.md §13.6), for followers.
    GetRounds {
        /// Epoch height.
        height: u32,
    },
    /// The validators a coordinator admits (tag 16, empty body): a worker asks its own
    /// coordinator, to know whose probes to answer (SPEC.md §13.7).
    GetValidators,
    /// 17: a validator asks a worker to run one input now, to time it (SPEC.md §13.7).
    Probe(Box<Signed<Probe>>),
}

fn bounded_count(field: &'static str, count: u16, max: usize) -> Result<u16, DecodeError> {
    if count as usize > max {
        return Err(DecodeError::TooLong { field, len: count as usize, max });
    }
    Ok(count)
}

/// A request frame: an id the response echoes, a deadline after which it is not answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Requester-chosen id, echoed by the response.
    pub id: u64,
    /// Unix milliseconds after which the responder drops the request.
    pub deadline_ms: u64,
    /// The request.
    pub body: RequestBody,
}

impl Encode for Request {
    fn encode(&self, w: &mut Writer) {
        w.u8(WIRE_VERSION).u64(self.id).u64(self.deadline_ms);
        match &self.body {
            RequestBody::Register(x) => {
                w.u8(1);
                x.encode(w);
            }
            RequestBody::Claim(x) => {
                w.u8(2);
                x.encode(w);
            }
            RequestBody::Commit(x) => {
                w.u8(3);
                x.encode(w);
            }
            RequestBody::Reveal(x) => {
                w.u8(4);
                x.encode(w);
            }
            RequestBody::GetBlob { hash, offset, len } => {
                w.u8(5).raw(&hash.0).u64(*offset).u32(*len);
            }
            RequestBody::GetReceipt { id } => {
                w.u8(6).raw(&id.0);
            }
            RequestBody::GetEpochs { from, count } => {
                w.u8(7).u32(*from).u16(*count);
            }
            RequestBody::GetTerms => {
                w.u8(8);
            }
            RequestBody::GetEpochReceipts { height, from, count } => {
                w.u8(9).u32(*height).u32(*from).u16(*count);
            }
            RequestBody::GetLedger { height, from, count } => {
                w.u8(10).u32(*height).u32(*from).u16(*count);
            }
            RequestBody::Offer(x) => {
                w.u8(11);
                x.encode(w);
            }
            RequestBody::RegisterValidator(x) => {
                w.u8(12);
                x.encode(w);
            }
            RequestBody::ScoreCommit(x) => {
                w.u8(13);
                x.encode(w);
            }
            RequestBody::ScoreReveal(x) => {
                w.u8(14);
                x.encode(w);
            }
            RequestBody::GetRounds { height } => {
                w.u8(15).u32(*height);
            }
            RequestBody::GetValidators => {
                w.u8(16);
            }
            RequestBody::Probe(x) => {
                w.u8(17);
                x.encode(w);
            }
        }
    }
}

impl Decode for Request {
    const NAME: &'static str = "request";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_version(r, Self::NAME, WIRE_VERSION)?;
        let id = r.u64("id")?;
        let deadline_ms = r.u64("deadline_ms")?;
        let body = match r.u8("request")? {
            1 => RequestBody::Register(Signed::decode(r)?),
            2 => RequestBody::Claim(Signed::decode(r)?),
            3 => RequestBody::Commit(Signed::decode(r)?),
            4 => RequestBody::Reveal(Signed::decode(r)?),
            5 => {
                let hash = Hash32(r.array("hash")?);
                let offset = r.u64("offset")?;
                let len = r.u32("len")?;
                if len as usize > MAX_BLOB_CHUNK {
                    return Err(DecodeError::TooLong {
                        field: "len",
                        len: len as usize,
                        max: MAX_BLOB_CHUNK,
                    });
                }
                RequestBody::GetBlob { hash, offset, len }
            }
            6 => RequestBody::GetReceipt { id: Hash32(r.array("id")?) },
            7 => {
                let from = r.u32("from")?;
                let count = r.u16("count")?;
                if count as usize > MAX_EPOCHS_PER_REQUEST {
                    return Err(DecodeError::TooLong {
                        field: "count",
                        len: count as usize,
                        max: MAX_EPOCHS_PER_REQUEST,
                    });
                }
                RequestBody::GetEpochs { from, count }
            }
            8 => RequestBody::GetTerms,
            9 => RequestBody::GetEpochReceipts {
                height: r.u32("height")?,
                from: r.u32("from")?,
                count: bounded_count("count", r.u16("count")?, MAX_RECEIPTS_PER_REQUEST)?,
            },
            10 => RequestBody::GetLedger {
                height: r.u32("height")?,
                from: r.u32("from")?,
                count: bounded_count("count", r.u16("count")?, MAX_LEDGER_PER_REQUEST)?,
            },
            11 => RequestBody::Offer(Box::new(Signed::decode(r)?)),
            12 => RequestBody::RegisterValidator(Box::new(Signed::decode(r)?)),
            13 => RequestBody::ScoreCommit(Box::new(Signed::decode(r)?)),
            14 => RequestBody::ScoreReveal(Box::new(Signed::decode(r)?)),
            15 => RequestBody::GetRounds { height: r.u32("height")? },
            16 => RequestBody::GetValidators,
            17 => RequestBody::Probe(Box::new(Signed::decode(r)?)),
            tag => return Err(DecodeError::InvalidTag { field: "request", tag }),
        };
        Ok(Request { id, deadline_ms, body })
    }
}

/// Why a request was refused (response tag 0), one byte on the wire. A requester reacts to
/// the reason, never to the message text; the HTTP-like [`code`](ErrorReason::code) is derived
/// from it, so the two cannot disagree. Closed: a byte with no reason here is refused with
/// `InvalidTag`, and a new reason needs a new wire version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorReason {
    /// 1: malformed or out of bounds (400).
    Malformed = 1,
    /// 2: a signature does not verify (400).
    BadSignature = 2,
    /// 3: the worker has not registered (403).
    NotRegistered = 3,
    /// 4: the worker is banned (403).
    Banned = 4,
    /// 5: the worker's admission ended (its bond is gone): it must register again (403).
    Lapsed = 5,
    /// 6: unknown object (404).
    NotFound = 6,
    /// 7: the request's deadline passed before it was handled (408).
    DeadlinePassed = 7,
    /// 8: conflicts with the recorded state (409).
    Conflict = 8,
    /// 9: the task is already decided (409).
    AlreadyDecided = 9,
    /// 10: the worker's lease on the task ran out: claim it again (409).
    LeaseExpired = 10,
    /// 11: no commitment from this worker is recorded for the task (409).
    NoCommitment = 11,
    /// 12: valid, but not yet: retry later (425).
    TooEarly = 12,
    /// 13: a per-worker limit is reached (429).
    WorkerLimit = 13,
    /// 14: the peer's request rate is exceeded (429).
    RateLimited = 14,
    /// 15: the node is overloaded (503).
    Busy = 15,
    /// 16: the node failed internally (500).
    Internal = 16,
}

impl ErrorReason {
    /// Every reason, in byte order.
    pub const ALL: [ErrorReason; 16] = [
        ErrorReason::Malformed,
        ErrorReason::BadSignature,
        ErrorReason::NotRegistered,
        ErrorReason::Banned,
        ErrorReason::Lapsed,
        ErrorReason::NotFound,
        ErrorReason::DeadlinePassed,
        ErrorReason::Conflict,
        ErrorReason::AlreadyDecided,
        ErrorReason::LeaseExpired,
        ErrorReason::NoCommitment,
        ErrorReason::TooEarly,
        ErrorReason::WorkerLimit,
        ErrorReason::RateLimited,
        ErrorReason::Busy,
        ErrorReason::Internal,
    ];

    /// The byte on the wire.
    pub const fn byte(self) -> u8 {
        self as u8
    }

    /// The reason a byte stands for, if any.
    pub const fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => ErrorReason::Malformed,
            2 => ErrorReason::BadSignature,
            3 => ErrorReason::NotRegistered,
            4 => ErrorReason::Banned,
            5 => ErrorReason::Lapsed,
            6 => ErrorReason::NotFound,
            7 => ErrorReason::DeadlinePassed,
            8 => ErrorReason::Conflict,
            9 => ErrorReason::AlreadyDecided,
            10 => ErrorReason::LeaseExpired,
            11 => ErrorReason::NoCommitment,
            12 => ErrorReason::TooEarly,
            13 => ErrorReason::WorkerLimit,
            14 => ErrorReason::RateLimited,
            15 => ErrorReason::Busy,
            16 => ErrorReason::Internal,
            _ => return None,
        })
    }

    /// The HTTP-like status code (the HTTP API answers with it).
    pub const fn code(self) -> u16 {
        match self {
            ErrorReason::Malformed | ErrorReason::BadSignature => 400,
            ErrorReason::NotRegistered | ErrorReason::Banned | ErrorReason::Lapsed => 403,
            ErrorReason::NotFound => 404,
            ErrorReason::DeadlinePassed => 408,
            ErrorReason::Conflict
            | ErrorReason::AlreadyDecided
            | ErrorReason::LeaseExpired
            | ErrorReason::NoCommitment => 409,
            ErrorReason::TooEarly => 425,
            ErrorReason::WorkerLimit | ErrorReason::RateLimited => 429,
            ErrorReason::Internal => 500,
            ErrorReason::Busy => 503,
        }
    }

    /// Stable snake-case name, as written in SPEC.md §11.4 and `spec/vectors/`.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorReason::Malformed => "malformed",
            ErrorReason::BadSignature => "bad_signature",
            ErrorReason::NotRegistered => "not_registered",
            ErrorReason::Banned => "banned",
            ErrorReason::Lapsed => "lapsed",
            ErrorReason::NotFound => "not_found",
            ErrorReason::DeadlinePassed => "deadline_passed",
            ErrorReason::Conflict => "conflict",
            ErrorReason::AlreadyDecided => "already_decided",
            ErrorReason::LeaseExpired => "lease_expired",
            ErrorReason::NoCommitment => "no_commitment",
            ErrorReason::TooEarly => "too_early",
            ErrorReason::WorkerLimit => "worker_limit",
            ErrorReason::RateLimited => "rate_limited",
            ErrorReason::Busy => "busy",
            ErrorReason::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a response says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseBody {
    /// 0: refused, with a typed reason and a message for people.
    Error {
        /// What the requester reacts to.
        reason: ErrorReason,
        /// For people only, at most 256 bytes of UTF-8 (longer is cut when encoded).
        message: String,
    },
    /// 1: accepted.
    Ack,
    /// 2: a lease on a task until `expires_at` (unix seconds).
    Lease {
        /// Task id.
        task: Hash32,
        /// Lease end.
        expires_at: u64,
    },
    /// 3: a blob chunk.
    Blob {
        /// Blob length.
        total: u64,
        /// Offset of the chunk.
        offset: u64,
        /// The bytes (at most `MAX_BLOB_CHUNK`).
        bytes: Vec<u8>,
    },
    /// 4: a receipt, if known.
    Receipt(Option<Box<SignedReceipt>>),
    /// 5: consecutive epoch headers (possibly fewer than asked).
    Epochs(Vec<SignedEpochHeader>),
    /// Answer to `GetTerms` (tag 6): what registration costs and which classes run here.
    Terms(Box<Terms>),
    /// 7: consecutive receipts of an epoch from the index asked (possibly fewer than asked;
    /// none past the end).
    Receipts(Vec<SignedReceipt>),
    /// 8: consecutive entries of an epoch's ledger snapshot from the index asked.
    Ledger {
        /// How many entries the snapshot holds in all.
        total: u32,
        /// The entries (at most `MAX_LEDGER_PER_REQUEST`).
        entries: Vec<LedgerEntry>,
    },
    /// 9: the scored rounds an epoch's header commits, in ascending class id order (at most
    /// `MAX_CLASSES_PER_TERMS`).
    Rounds(Vec<ScoredRound>),
    /// 10: the keys of the validators a coordinator admits and whose bonds still count, in
    /// ascending order (at most `MAX_VALIDATORS_LISTED`).
    Validators(Vec<PubKey>),
    /// 11: a worker's signed answer to a probe.
    ProbeAnswer(Box<Signed<ProbeAnswer>>),
}

impl ResponseBody {
    /// A refusal for `reason`, with a message for people.
    pub fn error(reason: ErrorReason, message: impl Into<String>) -> Self {
        ResponseBody::Error { reason, message: message.into() }
    }
}

/// A coordinator's terms for workers (response tag 6).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Terms {
    /// Leading zero bits a registration's proof-of-work must reach (when it carries no bond).
    pub pow_difficulty: u32,
    /// Smallest bond accepted instead of proof-of-work, in satoshis (0: bonds not accepted).
    pub bond_min_sats: u64,
    /// The task classes this coordinator runs (at most 64).
    pub classes: Vec<TaskClass>,
}

/// A response frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The id of the request answered.
    pub id: u64,
    /// The answer.
    pub body: ResponseBody,
}

impl Encode for Response {
    fn encode(&self, w: &mut Writer) {
        w.u8(WIRE_VERSION).u64(self.id);
        match &self.body {
            ResponseBody::Error { reason, message } => {
                // Cut to the bound at a character boundary so the result stays UTF-8.
                let mut end = message.len().min(MAX_ERROR_MESSAGE);
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                w.u8(0).u8(reason.byte()).bytes_u32(message.get(..end).unwrap_or_default().as_bytes());
            }
            ResponseBody::Ack => {
                w.u8(1);
            }
            ResponseBody::Lease { task, expires_at } => {
                w.u8(2).raw(&task.0).u64(*expires_at);
            }
            ResponseBody::Blob { total, offset, bytes } => {
                w.u8(3).u64(*total).u64(*offset).bytes_u32(bytes);
            }
            ResponseBody::Receipt(r) => {
                w.u8(4);
                match r {
                    Some(r) => {
                        w.u8(1);
                        r.encode(w);
                    }
                    None => {
                        w.u8(0);
                    }
                }
            }
            ResponseBody::Epochs(hs) => {
                w.u8(5).u16(hs.len() as u16);
                for h in hs {
                    h.encode(w);
                }
            }
            ResponseBody::Terms(t) => {
                w.u8(6).u32(t.pow_difficulty).u64(t.bond_min_sats).u8(t.classes.len() as u8);
                for c in &t.classes {
                    c.encode(w);
                }
            }
            ResponseBody::Receipts(rs) => {
                w.u8(7).u16(rs.len() as u16);
                for r in rs {
                    r.encode(w);
                }
            }
            ResponseBody::Ledger { total, entries } => {
                w.u8(8).u32(*total).u16(entries.len() as u16);
                for e in entries {
                    e.encode(w);
                }
            }
            ResponseBody::Rounds(rs) => {
                w.u8(9).u8(rs.len() as u8);
                for r in rs {
                    r.encode(w);
                }
            }
            ResponseBody::Validators(ks) => {
                let n = ks.len().min(MAX_VALIDATORS_LISTED);
                w.u8(10).u16(n as u16);
                for k in ks.iter().take(n) {
                    k.encode(w);
                }
            }
            ResponseBody::ProbeAnswer(a) => {
                w.u8(11);
                a.encode(w);
            }
        }
    }
}

impl Decode for Response {
    const NAME: &'static str = "response";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_version(r, Self::NAME, WIRE_VERSION)?;
        let id = r.u64("id")?;
        let body = match r.u8("response")? {
            0 => {
                let b = r.u8("reason")?;
                let reason =
                    ErrorReason::from_byte(b).ok_or(DecodeError::InvalidTag { field: "reason", tag: b })?;
                let m = r.bytes_u32("message", MAX_ERROR_MESSAGE)?;
                let message = std::str::from_utf8(m)
                    .map_err(|_| DecodeError::InvalidValue { field: "message", reason: "not UTF-8" })?
                    .to_owned();
                ResponseBody::Error { reason, message }
            }
            1 => ResponseBody::Ack,
            2 => ResponseBody::Lease { task: Hash32(r.array("task")?), expires_at: r.u64("expires_at")? },
            3 => {
                let total = r.u64("total")?;
                let offset = r.u64("offset")?;
                let bytes = r.bytes_u32("bytes", MAX_BLOB_CHUNK)?.to_vec();
                ResponseBody::Blob { total, offset, bytes }
            }
            4 => match r.u8("receipt")? {
                0 => ResponseBody::Receipt(None),
                1 => ResponseBody::Receipt(Some(Box::new(SignedReceipt::decode(r)?))),
                tag => return Err(DecodeError::InvalidTag { field: "receipt", tag }),
            },
            5 => {
                let len = r.u16("epochs")? as usize;
                let n = r.count(
                    "epochs",
                    len,
                    MAX_EPOCHS_PER_REQUEST,
                    crate::epoch::EpochHeader::MIN_ENCODED_LEN + 64,
                )?;
                ResponseBody::Epochs((0..n).map(|_| Signed::decode(r)).collect::<Result<_, _>>()?)
            }
            6 => {
                let pow_difficulty = r.u32("pow_difficulty")?;
                let bond_min_sats = r.u64("bond_min_sats")?;
                let len = r.u8("classes")? as usize;
                // A class encodes to at least 58 bytes; the count is checked against that.
                let n = r.count("classes", len, MAX_CLASSES_PER_TERMS, 58)?;
                let classes = (0..n).map(|_| TaskClass::decode(r)).collect::<Result<_, _>>()?;
                ResponseBody::Terms(Box::new(Terms { pow_difficulty, bond_min_sats, classes }))
            }
            7 => {
                let len = r.u16("receipts")? as usize;
                let n = r.count("receipts", len, MAX_RECEIPTS_PER_REQUEST, SignedReceipt::MIN_LEN)?;
                ResponseBody::Receipts((0..n).map(|_| SignedReceipt::decode(r)).collect::<Result<_, _>>()?)
            }
            8 => {
                let total = r.u32("total")?;
                let len = r.u16("entries")? as usize;
                let n = r.count("entries", len, MAX_LEDGER_PER_REQUEST, LedgerEntry::ENCODED_LEN)?;
                let entries = (0..n).map(|_| LedgerEntry::decode(r)).collect::<Result<_, _>>()?;
                ResponseBody::Ledger { total, entries }
            }
            9 => {
                let len = usize::from(r.u8("rounds")?);
                // A round is at least its fixed fields and two counts.
                let n =
                    r.count("rounds", len, MAX_CLASSES_PER_TERMS, 1 + 1 + 32 + 32 + 4 + 24 + 2 + 2 + 8)?;
                ResponseBody::Rounds((0..n).map(|_| ScoredRound::decode(r)).collect::<Result<_, _>>()?)
            }
            10 => {
                let len = usize::from(r.u16("validators")?);
                let n = r.count("validators", len, MAX_VALIDATORS_LISTED, 32)?;
                let mut keys: Vec<PubKey> = Vec::with_capacity(n);
                for _ in 0..n {
                    let k = PubKey::decode(r, "validators")?;
                    if keys.last().is_some_and(|l| l.as_bytes() >= k.as_bytes()) {
                        return Err(DecodeError::InvalidValue {
                            field: "validators",
                            reason: "keys not in strictly ascending order",
                        });
                    }
                    keys.push(k);
                }
                ResponseBody::Validators(keys)
            }
            11 => ResponseBody::ProbeAnswer(Box::new(Signed::decode(r)?)),
            tag => return Err(DecodeError::InvalidTag { field: "response", tag }),
        };
        Ok(Response { id, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_frame(reason_byte: u8) -> Vec<u8> {
        let mut b = vec![WIRE_VERSION];
        b.extend_from_slice(&7u64.to_be_bytes());
        b.extend_from_slice(&[0, reason_byte, 0, 0, 0, 2, b'h', b'i']);
        b
    }

    #[test]
    fn every_error_reason_round_trips_as_its_byte() {
        for (i, reason) in ErrorReason::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(reason.byte()), i + 1, "{reason:?} is out of byte order");
            assert_eq!(ErrorReason::from_byte(reason.byte()), Some(reason));
            let r = Response { id: 7, body: ResponseBody::error(reason, "hi") };
            let bytes = r.to_bytes();
            assert_eq!(bytes, error_frame(reason.byte()));
            assert_eq!(Response::from_bytes(&bytes), Ok(r));
        }
    }

    #[test]
    fn an_unassigned_error_reason_byte_is_refused() {
        for b in (0..=u8::MAX).filter(|b| ErrorReason::from_byte(*b).is_none()) {
            assert_eq!(
                Response::from_bytes(&error_frame(b)),
                Err(DecodeError::InvalidTag { field: "reason", tag: b }),
                "reason byte {b}"
            );
        }
        assert_eq!(ErrorReason::from_byte(0), None);
        assert_eq!(ErrorReason::from_byte(17), None);
    }

    #[test]
    fn each_reason_has_the_code_of_its_kind() {
        let codes: Vec<(&str, u16)> = ErrorReason::ALL.iter().map(|r| (r.name(), r.code())).collect();
        assert_eq!(
            codes,
            [
                ("malformed", 400),
                ("bad_signature", 400),
                ("not_registered", 403),
                ("banned", 403),
                ("lapsed", 403),
                ("not_found", 404),
                ("deadline_passed", 408),
                ("conflict", 409),
                ("already_decided", 409),
                ("lease_expired", 409),
                ("no_commitment", 409),
                ("too_early", 425),
                ("worker_limit", 429),
                ("rate_limited", 429),
                ("busy", 503),
                ("internal", 500),
            ]
        );
    }

    #[test]
    fn a_long_error_message_is_cut_at_a_character_boundary() {
        let r = Response { id: 1, body: ResponseBody::error(ErrorReason::Internal, "é".repeat(200)) };
        match Response::from_bytes(&r.to_bytes()) {
            Ok(Response { body: ResponseBody::Error { reason, message }, .. }) => {
                assert_eq!(reason, ErrorReason::Internal);
                assert_eq!(message, "é".repeat(MAX_ERROR_MESSAGE / 2));
            }
            other => panic!("{other:?}"),
        }
    }
}
