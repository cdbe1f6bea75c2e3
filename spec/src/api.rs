//! The coordinator's HTTP API as types: one struct or enum per JSON body a route answers
//! with (and the task submission it takes), shared by the server (`cairn-coordinator`), the
//! devnet (`cairn`) and `cairn worker status` (`cairn-worker`), none of which may depend on
//! another for this. With the `openapi` feature each derives `utoipa::ToSchema`, and the
//! coordinator's OpenAPI document is generated from them.
//!
//! Owns the JSON shape of the API: field names, nesting, value types and `null`s. Must never
//! hold behaviour (no I/O, no decision, no view of node state): the coordinator fills these
//! in, clients deserialize them. A field renamed here changes the wire for every client.

use serde::{Deserialize, Serialize};

use crate::{
    Hash32, LedgerEntry, MerkleProof, Network, PubKey, SignedEpochHeader, SignedReceipt, TaskClass, Verdict,
};

/// The body of every 4xx/5xx answer: the reason, for people. A refused request changes
/// nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Why the request was refused.
    pub error: String,
}

/// Whether a node takes requests or is shutting down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Serving.
    Ok,
    /// Shutdown has started: writes are refused.
    Stopping,
}

/// `/v1/ready`: whether the node does what it is run for (anchors its epochs). The answer is
/// 200 when `ready`, else 503, so a load balancer or a probe reads it without parsing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Readiness {
    /// No problem below.
    pub ready: bool,
    /// What stands in the way, most basic first.
    pub problems: Vec<ReadinessProblem>,
}

/// Why a node is not ready. The text is the node's own: nothing Bitcoin Core said is repeated
/// (its errors can hold file paths).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", tag = "problem")]
pub enum ReadinessProblem {
    /// The node is stopping.
    Stopping,
    /// The last round could not reach Bitcoin Core (down, warming up, timing out).
    CoreUnreachable,
    /// Bitcoin Core is still downloading the chain; anchoring waits for it.
    CoreSyncing {
        /// Blocks it has.
        blocks: u32,
        /// Headers it knows.
        headers: u32,
        /// Its verification progress, parts per million.
        progress_ppm: u32,
    },
    /// The anchor address holds too little to pay for the next anchor.
    Unfunded {
        /// Confirmed, spendable sats at the address.
        available_sats: u64,
        /// Sats the next anchor needs.
        needed_sats: u64,
    },
    /// The fee caps stop the next anchor (or its replacement).
    FeeCapReached {
        /// Fee the anchor would need.
        wanted_sats: u64,
        /// What the caps allow now.
        allowed_sats: u64,
    },
    /// Anchor rounds fail for a reason other than reaching Core: Core refused the credentials
    /// or a request, or the anchor state could not be written (the node's log says which).
    AnchorFailing,
    /// An output of the anchor chain was spent by a transaction this node did not make: the
    /// anchor key is used elsewhere (a second node with the same key, or a stale restore).
    /// The chain cannot continue from here until the operator resolves it.
    ChainOutputSpentElsewhere {
        /// The spending transaction.
        txid: String,
    },
    /// The anchor side has not reported for longer than its rounds take: it is stuck or
    /// gone.
    AnchorStale {
        /// Seconds since its last report.
        silent_secs: u64,
    },
    /// The anchor side has not finished its first round yet.
    Starting,
    /// Epochs have waited for a confirmed anchor longer than the node allows.
    AnchorStuck {
        /// Epochs no confirmed anchor commits.
        unanchored_epochs: u32,
        /// Blocks they have waited.
        blocks_waiting: u32,
    },
}

/// Which kind of node answers: the coordinator, or a follower that checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the lifecycle and signs epochs.
    Coordinator,
    /// Syncs and checks a coordinator's epochs; serves them read-only.
    Follower,
}

/// `GET /v1/health`: what the node is and how it stands, told apart by `role`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Health {
    /// A coordinator's health.
    Coordinator(CoordinatorHealth),
    /// A follower's health.
    Follower(FollowerHealth),
}

/// A coordinator's `/v1/health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CoordinatorHealth {
    /// Serving or stopping.
    pub status: NodeStatus,
    /// The Bitcoin network of the chain.
    pub network: Network,
    /// The coordinator's protocol key.
    pub coordinator: PubKey,
    /// Height the next epoch header will have.
    pub next_epoch: u32,
    /// Tasks not yet decided or failed.
    pub open_tasks: u64,
    /// Registered workers.
    pub workers: u64,
    /// The node's p2p listen addresses, each ending in its peer id: what a worker dials.
    pub p2p: Vec<String>,
    /// Where anchoring is funded, when the node anchors.
    pub anchor_address: Option<String>,
    /// Whether epochs are anchored in Bitcoin.
    pub anchoring: bool,
    /// Best Bitcoin height seen.
    pub bitcoin_tip: Option<u32>,
    /// What the node's Bitcoin is (`null` before it was first reached, or when not anchoring).
    #[serde(default)]
    pub bitcoin_backend: Option<BitcoinBackend>,
    /// Last error talking to Bitcoin Core.
    pub bitcoin_error: Option<String>,
}

/// What the node's Bitcoin is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BitcoinBackend {
    /// Bitcoin Core (or another node speaking its RPC).
    BitcoinCore,
    /// Cairn's embedded in-process regtest chain (demos, fast tests): not Bitcoin Core, and
    /// nothing "checked against Bitcoin" here is.
    EmbeddedRegtest,
}

/// A follower's `/v1/health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FollowerHealth {
    /// Serving or stopping.
    pub status: NodeStatus,
    /// The Bitcoin network of the chain.
    pub network: Network,
    /// The coordinator followed.
    pub coordinator: PubKey,
    /// One past the newest accepted epoch (0 before the first).
    pub next_epoch: u32,
    /// Peers synced from.
    pub peers: Vec<String>,
    /// Unix seconds of the last completed sync round.
    pub last_sync: Option<u64>,
    /// Last sync error, if the last round failed.
    pub sync_error: Option<String>,
    /// Pieces of evidence kept (`/v1/evidence` lists them).
    pub evidence: u64,
    /// The node's p2p listen addresses.
    pub p2p: Vec<String>,
    /// Whether the follower watches Bitcoin for anchors.
    pub anchoring: bool,
    /// Best Bitcoin height seen.
    pub bitcoin_tip: Option<u32>,
    /// Last error talking to Bitcoin Core.
    pub bitcoin_error: Option<String>,
}

/// One task class the coordinator serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassView {
    /// Class id (tagged hash of its encoding).
    pub id: Hash32,
    /// The class (SPEC.md §4).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub class: TaskClass,
    /// Its canonical encoding, hex.
    pub encoding: String,
}

/// `GET /v1/classes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassList {
    /// Every class, by id.
    pub classes: Vec<ClassView>,
}

/// `POST /v1/tasks` body (operator token required).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SubmitTask {
    /// Class name or id (hex).
    pub class: String,
    /// Input bytes as hex (exactly one of `input_hex`, `input_text`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_hex: Option<String>,
    /// Input as UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_text: Option<String>,
    /// Units of work (at least 1).
    pub units: u32,
    /// Budget offered, satoshis.
    pub budget_sats: u64,
    /// Requester nonce (random when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<u64>,
    /// Requester x-only key, hex (the coordinator's when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    /// Operator only: makes the task a canary with this known answer, hex; never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_answer_hex: Option<String>,
}

/// `POST /v1/tasks` answer (201).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskCreated {
    /// The task id.
    pub id: Hash32,
}

/// Where a task is, as the API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskPhase {
    /// Taking claims and commitments.
    Open,
    /// Commitments closed; reveals being taken.
    Revealing,
    /// A result was accepted (`result_hash`).
    Decided,
    /// No verdict could be reached (`failure`).
    Failed,
}

/// One worker's slot on a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SlotView {
    /// The worker.
    pub worker: PubKey,
    /// Whether it committed.
    pub committed: bool,
    /// Whether it revealed.
    pub revealed: bool,
    /// Its verdict, once decided.
    pub verdict: Option<Verdict>,
    /// Its receipt id, once issued.
    pub receipt: Option<Hash32>,
}

/// `GET /v1/tasks/{id}`: the public view of a task. It never tells a canary or an audit
/// replica apart from any other task or slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskView {
    /// Task id.
    pub id: Hash32,
    /// Class id.
    pub class: Hash32,
    /// Requester key.
    pub requester: PubKey,
    /// Units of work.
    pub units: u32,
    /// Budget, satoshis.
    pub budget_sats: u64,
    /// Unix seconds when accepted.
    pub accepted_at: u64,
    /// Content hash of the input.
    pub input_hash: Hash32,
    /// Input size, bytes.
    pub input_size: u64,
    /// Lifecycle phase.
    pub phase: TaskPhase,
    /// Content hash of the accepted result, once decided.
    pub result_hash: Option<Hash32>,
    /// Why the task failed, when it did.
    pub failure: Option<String>,
    /// Slots, in claim order.
    pub assignments: Vec<SlotView>,
    /// The task's canonical encoding, hex (SPEC.md §5.3): an auditor hashes it to the id and
    /// recomputes the task's draws from it (§12.1). Only in `GET /v1/tasks/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

/// `GET /v1/tasks`: a page of tasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskList {
    /// Tasks, by id after the `after` cursor.
    pub tasks: Vec<TaskView>,
}

/// `GET /v1/tasks/{id}/result`: the accepted result of a decided task, when inline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskResult {
    /// Task id.
    pub task: Hash32,
    /// Content hash of the result.
    pub result_hash: Hash32,
    /// The result bytes, hex.
    pub result_hex: String,
}

/// Whether a worker may work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WorkerStatus {
    /// Registered and in good standing.
    Active,
    /// Banned for fraud (`ban`).
    Banned,
    /// Its bond lapsed (`bond_lost`): it must register again; nothing was forfeited.
    Lapsed,
}

/// Why and when a worker was banned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerBan {
    /// Why.
    pub reason: String,
    /// The task that proved it.
    pub task: Hash32,
    /// Locked satoshis forfeited.
    pub forfeited: u64,
    /// Unix seconds.
    pub at: u64,
}

/// Why and when a worker's bond stopped admitting it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BondLost {
    /// Why.
    pub reason: String,
    /// Unix seconds.
    pub at: u64,
}

/// Why a worker lost a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerRejection {
    /// Task id.
    pub task: Hash32,
    /// Verdict (`null` when the task failed without one for this worker).
    pub verdict: Option<Verdict>,
    /// Explanation for people.
    pub reason: String,
    /// Unix seconds.
    pub at: u64,
}

/// `GET /v1/workers/{key}`: a worker's registration and reputation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerView {
    /// The worker's key.
    pub key: PubKey,
    /// Where its payouts go.
    pub payout_address: String,
    /// Unix seconds of its first registration.
    pub registered_at: u64,
    /// Whether it may work.
    pub status: WorkerStatus,
    /// Set when banned.
    pub ban: Option<WorkerBan>,
    /// Set when its bond lapsed.
    pub bond_lost: Option<BondLost>,
    /// Consecutive accepted results.
    pub streak: u32,
    /// Accepted results.
    pub accepted: u64,
    /// Rejected results.
    pub rejected: u64,
    /// Newest rejection reasons, oldest first.
    pub rejections: Vec<WorkerRejection>,
}

/// `GET /v1/workers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerList {
    /// Every registered worker.
    pub workers: Vec<WorkerView>,
}

/// How an epoch stands in Bitcoin, told apart by `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EpochAnchor {
    /// Covered by a confirmed anchor (the earliest committing this epoch or a later one).
    Confirmed {
        /// The anchor transaction.
        txid: String,
        /// The epoch it commits (this one or later).
        anchored_epoch: u32,
        /// Its block height.
        height: Option<u32>,
        /// Its confirmations.
        confirmations: u32,
    },
    /// An anchor covering it is broadcast, not yet in a block.
    Pending {
        /// The anchor transaction.
        txid: String,
        /// The epoch it commits.
        anchored_epoch: u32,
    },
    /// Not anchored yet.
    Unanchored,
    /// The node does not anchor.
    AnchoringDisabled,
}

/// `GET /v1/epochs/{height}`: a signed epoch header and its anchor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EpochView {
    /// Epoch height.
    pub height: u32,
    /// Header hash (its id).
    pub hash: Hash32,
    /// The signed header (SPEC.md §6).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub header: SignedEpochHeader,
    /// Its canonical encoding, hex.
    pub encoding: String,
    /// How it stands in Bitcoin.
    pub anchor: EpochAnchor,
}

/// `GET /v1/epochs`: a page of epochs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EpochList {
    /// Epochs from the `from` height up.
    pub epochs: Vec<EpochView>,
}

/// `POST /v1/epochs/close` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EpochClosed {
    /// Height of the epoch closed (`null` when there was nothing to close).
    pub closed: Option<u32>,
}

/// `GET /v1/epochs/{height}/receipts`: a page of an epoch's receipts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EpochReceipts {
    /// Epoch height.
    pub height: u32,
    /// Receipts in the epoch.
    pub receipt_count: u32,
    /// Index of the first receipt in this page.
    pub from: u32,
    /// Canonical encodings, hex, in leaf order.
    pub receipts: Vec<String>,
    /// Their ids, in the same order.
    pub ids: Vec<Hash32>,
}

/// `GET /v1/epochs/{height}/ledger`: the ledger snapshot an epoch's state root commits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EpochLedger {
    /// Epoch height.
    pub height: u32,
    /// The header's state root.
    pub state_root: Hash32,
    /// Ledger entries' canonical encodings, hex, in leaf order.
    pub entries: Vec<String>,
}

/// `GET /v1/epochs/{height}/roster`: the keys epoch `height`'s draws rank (SPEC.md §12.1),
/// committed by the header before it (`next_roster`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EpochRoster {
    /// The epoch whose draws rank these keys.
    pub epoch: u32,
    /// The roster's root (equal to `next_roster` of header `epoch − 1`).
    pub root: Hash32,
    /// How many keys it holds.
    pub count: u32,
    /// The roster's canonical encoding, hex (u32 count ‖ keys ascending, 32 bytes each).
    pub encoding: String,
}

/// `GET /v1/epochs/{height}/rounds`: the scored rounds the header at `height` credits
/// (SPEC.md §13.6), whose root is its `scores_root`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EpochRounds {
    /// The crediting epoch.
    pub height: u32,
    /// Its header's scores root.
    pub scores_root: Hash32,
    /// The rounds, in ascending class id order (their ids are the scores tree's leaves).
    pub rounds: Vec<RoundView>,
}

/// One scored round as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoundView {
    /// The round's id (its leaf in the scores tree).
    pub id: Hash32,
    /// The round: the class, the scored epoch, its terms, each worker's units, score and
    /// share, each validator's sheet, stake and share (SPEC.md §13.6).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub round: crate::rounds::ScoredRound,
    /// Its canonical encoding, hex: what an auditor hashes and checks.
    pub encoding: String,
}

/// `GET /v1/epochs/{height}/history/{epoch}`: where epoch `epoch`'s header sits in the
/// history tree header `height` commits (SPEC.md §5.9), the path a receipt proof carries
/// (§8.1 `history_path`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EpochHistory {
    /// The header whose history tree this is.
    pub height: u32,
    /// The earlier epoch whose header hash is the leaf.
    pub epoch: u32,
    /// Header `height`'s `history` root.
    pub root: Hash32,
    /// The leaf's Merkle siblings, bottom up (SPEC.md §6.1).
    pub siblings: Vec<Hash32>,
}

/// Where an anchor transaction stands: a coordinator's own anchors are `pending`,
/// `replaced`, `confirmed` or `conflicted`; a follower's found anchors are `confirmed` (the
/// header it accepted at that height), `unverified` (that epoch is not accepted yet) or
/// `equivocation` (another header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AnchorEntryStatus {
    /// Broadcast, not in a best-chain block.
    Pending,
    /// Superseded by a fee-bumped replacement.
    Replaced,
    /// In a best-chain block (a follower: and it commits the header accepted at its height).
    Confirmed,
    /// A conflicting transaction confirmed instead.
    Conflicted,
    /// Found by a follower before it accepted that epoch.
    Unverified,
    /// Found by a follower, committing another header than the one accepted at its height.
    Equivocation,
}

/// One anchor transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnchorEntry {
    /// Txid.
    pub txid: String,
    /// Epoch committed.
    pub epoch: u32,
    /// Header hash committed.
    pub header_hash: Hash32,
    /// Where the anchor stands.
    pub status: AnchorEntryStatus,
    /// Block height when confirmed.
    pub height: Option<u32>,
    /// Confirmations.
    pub confirmations: u32,
    /// Fee, sats.
    pub fee_sats: u64,
    /// Payout ids carried.
    pub payouts: Vec<u64>,
}

/// `GET /v1/anchors`: the node's view of Bitcoin and its anchor transactions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Anchors {
    /// Whether epochs are anchored at all.
    pub enabled: bool,
    /// Best height seen.
    pub tip_height: Option<u32>,
    /// Newest settled epoch.
    pub settled_epoch: Option<u32>,
    /// Anchor transactions, newest first.
    pub anchors: Vec<AnchorEntry>,
    /// Last error talking to Bitcoin Core, if the last round failed.
    pub last_error: Option<String>,
}

/// `GET /v1/receipts/{id}`: a receipt and where it sits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceiptView {
    /// Receipt id.
    pub id: Hash32,
    /// Epoch holding it.
    pub epoch: u32,
    /// Its leaf index in that epoch.
    pub index: u32,
    /// The signed receipt (SPEC.md §5).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub receipt: SignedReceipt,
    /// Its canonical encoding, hex.
    pub encoding: String,
}

/// `GET /v1/receipts/{id}/proof`: a receipt with its Merkle path to a signed epoch header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceiptProofView {
    /// The signed receipt.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub receipt: SignedReceipt,
    /// Its canonical encoding, hex.
    pub receipt_encoding: String,
    /// Path from its leaf to the receipts root.
    pub merkle_proof: MerkleProof,
    /// The header's receipts root.
    pub receipts_root: Hash32,
    /// The epoch header.
    pub header: EpochView,
}

/// Outcome of one check of a receipt against Bitcoin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    /// Passed.
    Pass,
    /// Failed.
    Fail,
    /// Not run: an earlier check failed.
    Skipped,
}

/// One named check of a receipt audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditCheck {
    /// Stable name of the check.
    pub name: String,
    /// Passed, failed or skipped.
    pub outcome: CheckOutcome,
    /// What was found.
    pub detail: String,
}

/// `GET /v1/receipts/{id}/audit`: the receipt checked step by step against the node's own
/// Bitcoin Core (an auditor runs the same checks against theirs: `cairn audit receipt`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceiptAudit {
    /// Receipt id.
    pub receipt: Hash32,
    /// The Bitcoin network.
    pub network: Network,
    /// Whose Bitcoin node the checks ran against.
    pub against: String,
    /// Confirmations required.
    pub min_depth: u32,
    /// Whether every check passed.
    pub ok: bool,
    /// Name of the first failed check.
    pub failed_step: Option<String>,
    /// Every check, in order.
    pub checks: Vec<AuditCheck>,
    /// The anchor transaction.
    pub anchor_txid: Option<String>,
    /// Height of the block holding it.
    pub block_height: u32,
}

/// Anchor totals of `/v1/stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnchorCounts {
    /// Confirmed anchors.
    pub confirmed: u64,
    /// Anchors in the mempool.
    pub pending: u64,
    /// Anchors replaced by a fee bump.
    pub replaced: u64,
    /// Newest settled epoch.
    pub settled_epoch: Option<u32>,
    /// Best Bitcoin height seen.
    pub bitcoin_tip: Option<u32>,
}

/// Task totals of `/v1/stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskCounts {
    /// Tasks accepted for work, ever.
    pub submitted: u64,
    /// Open tasks taking commitments.
    pub commit: u64,
    /// Open tasks taking reveals.
    pub reveal: u64,
    /// Tasks decided with an accepted result, ever.
    pub decided: u64,
    /// Tasks that ended with no verdict, ever.
    pub failed: u64,
}

/// Ledger sums of `/v1/stats`, satoshis (`locked + claimable + paid = credited - forfeited`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerTotals {
    /// Credited, not yet past the challenge window.
    pub locked: u64,
    /// Past the challenge window, not yet paid.
    pub claimable: u64,
    /// Paid out in Bitcoin.
    pub paid: u64,
    /// Credited by receipts, ever.
    pub credited: u64,
    /// Forfeited by fraud, ever.
    pub forfeited: u64,
}

/// Worker totals of `/v1/stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerCounts {
    /// In good standing.
    pub active: u64,
    /// Banned.
    pub banned: u64,
    /// Bond lapsed.
    pub lapsed: u64,
}

/// `GET /v1/stats`: totals for dashboards, told apart by `role`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Stats {
    /// A coordinator's totals.
    Coordinator(CoordinatorStats),
    /// A follower's totals.
    Follower(FollowerStats),
}

/// A coordinator's `/v1/stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CoordinatorStats {
    /// Tasks per state.
    pub tasks: TaskCounts,
    /// Receipts issued, ever.
    pub receipts: u64,
    /// Epochs closed (the next epoch's height).
    pub epochs: u32,
    /// Receipts in the open epoch.
    pub open_epoch_receipts: u32,
    /// Whether the open epoch is armed: its beacon block is final, so its draws use its own
    /// ranking and it may close (always, without Bitcoin; SPEC.md §12.1).
    pub open_epoch_armed: bool,
    /// Whether the chain is bound to its anchor key and genesis output (SPEC.md §7.1): until
    /// the anchor address holds a confirmed output, no epoch closes (always, without Bitcoin).
    pub anchor_bound: bool,
    /// Ledger sums.
    pub ledger: LedgerTotals,
    /// Workers per standing.
    pub workers: WorkerCounts,
    /// Anchors per status.
    pub anchors: AnchorCounts,
}

/// A follower's `/v1/stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FollowerStats {
    /// Epochs accepted.
    pub epochs: u64,
    /// Anchors per status.
    pub anchors: AnchorCounts,
}

/// Where a payout is, told apart by `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PayoutState {
    /// Handed to the anchor queue; the next anchor carries it.
    Queued,
    /// Confirmed in an anchor transaction.
    Paid {
        /// The transaction.
        txid: String,
        /// Its block height.
        height: u32,
    },
}

/// One payout to one worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Payout {
    /// Payout id.
    pub id: u64,
    /// Worker paid.
    pub worker: PubKey,
    /// Destination address.
    pub address: String,
    /// Satoshis.
    pub amount: u64,
    /// Unix seconds queued.
    pub queued_at: u64,
    /// Where it is.
    pub status: PayoutState,
}

/// `GET /v1/payouts`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Payouts {
    /// Every payout, by id.
    pub payouts: Vec<Payout>,
}

/// A ledger entry proved against the newest epoch's state root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerProof {
    /// The epoch whose state root it is proved against.
    pub epoch: u32,
    /// That state root.
    pub state_root: Hash32,
    /// The entry as of that epoch.
    pub entry: LedgerEntry,
    /// Its canonical encoding, hex.
    pub entry_encoding: String,
    /// Path from its leaf to the state root.
    pub merkle_proof: MerkleProof,
}

/// `GET /v1/ledger/{worker}`: a worker's balances and payouts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerView {
    /// The worker.
    pub worker: PubKey,
    /// Credited, not yet past the challenge window, satoshis.
    pub locked: u64,
    /// Past the challenge window, not yet paid, satoshis.
    pub claimable: u64,
    /// Paid out in Bitcoin so far, satoshis.
    pub paid: u64,
    /// Its payouts.
    pub payouts: Vec<Payout>,
    /// Proof of the entry in the newest snapshot (`null` before it is in one).
    pub proof: Option<LedgerProof>,
}

/// What kind of wrong a follower saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// A fetched epoch failed a check.
    BadEpoch,
    /// Two signed headers for one height.
    Equivocation,
    /// Bitcoin commits another header than the signed one accepted at that height.
    AnchorEquivocation,
}

impl EvidenceKind {
    /// Its name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::BadEpoch => "bad_epoch",
            EvidenceKind::Equivocation => "equivocation",
            EvidenceKind::AnchorEquivocation => "anchor_equivocation",
        }
    }
}

impl std::fmt::Display for EvidenceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a follower saw that a coordinator must answer for (also the record it keeps).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Evidence {
    /// What kind of wrong.
    pub kind: EvidenceKind,
    /// Epoch height concerned.
    pub height: u32,
    /// The first check that failed (for `bad_epoch`), else the kind.
    pub check: String,
    /// What failed, for people.
    pub detail: String,
    /// Hex encodings of the signed headers involved.
    pub headers: Vec<String>,
    /// The anchor transaction, for `anchor_equivocation`.
    pub txid: Option<String>,
    /// Who served it (a peer id or "gossip").
    pub source: String,
    /// Unix seconds when seen.
    pub seen_at: u64,
}

/// `GET /v1/evidence`: refused epochs and equivocations seen (a coordinator keeps none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvidenceList {
    /// The node answering.
    pub role: Role,
    /// Evidence, oldest first.
    pub evidence: Vec<Evidence>,
}

/// Hashes and keys are lower-case hex strings in JSON; their schemas say so.
#[cfg(feature = "openapi")]
mod schemas {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::RefOr;

    fn hex64(description: &str) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[0-9a-f]{64}$"))
            .description(Some(description))
            .into()
    }

    impl utoipa::PartialSchema for crate::Hash32 {
        fn schema() -> RefOr<Schema> {
            hex64("32-byte hash, lower-case hex")
        }
    }
    impl utoipa::ToSchema for crate::Hash32 {}

    impl utoipa::PartialSchema for crate::PubKey {
        fn schema() -> RefOr<Schema> {
            hex64("x-only public key (BIP340), lower-case hex")
        }
    }
    impl utoipa::ToSchema for crate::PubKey {}
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tagged_bodies_carry_their_tag_beside_their_fields() {
        let s = Stats::Follower(FollowerStats { epochs: 3, anchors: AnchorCounts::default() });
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["role"], "follower");
        assert_eq!(v["epochs"], 3);
        assert!(v["anchors"]["settled_epoch"].is_null());
        assert_eq!(serde_json::from_value::<Stats>(v).unwrap(), s);
        let a = EpochAnchor::Pending { txid: "t".into(), anchored_epoch: 2 };
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"status": "pending", "txid": "t", "anchored_epoch": 2})
        );
        assert_eq!(
            serde_json::to_value(EpochAnchor::AnchoringDisabled).unwrap()["status"],
            "anchoring_disabled"
        );
    }

    #[test]
    fn a_submission_omits_what_it_does_not_give_and_refuses_unknown_fields() {
        let b = SubmitTask {
            class: "upper".into(),
            input_text: Some("hi".into()),
            units: 1,
            ..Default::default()
        };
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"class": "upper", "input_text": "hi", "units": 1, "budget_sats": 0})
        );
        assert!(
            serde_json::from_str::<SubmitTask>(r#"{"class":"u","units":1,"budget_sats":1,"x":1}"#).is_err()
        );
    }
}
