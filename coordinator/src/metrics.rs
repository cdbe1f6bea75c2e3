//! The node's Prometheus metrics: its own counters and gauges, plus the p2p layer's,
//! in one registry served at `/metrics`.
//!
//! Owns metric names. Must never label a metric with unbounded values (keys, ids).

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A stage of a task's life on the node, from the stage before it (`node::stages`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Stage {
    /// The API's submission: checked, decided and written (synced).
    Submit,
    /// Written → the first announcement sent.
    Announce,
    /// Announced → the first claim in (gossip to the workers, their claim back).
    Claim,
    /// First claim in → the commitment that completes the replicas in (the lease back, the
    /// workers' execution and journal, their commitments).
    ExecuteAndCommit,
    /// That commitment in → the reveal window open (checked, decided, written).
    OpenWindow,
    /// Window open → the last reveal in (held reveals are released at once).
    Reveal,
    /// Last reveal in → the receipts on disk (checked, decided, signed, written).
    Decide,
    /// Submission in → receipts on disk.
    Total,
}

impl Stage {
    /// The label value `/metrics` shows.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Submit => "submit",
            Stage::Announce => "announce",
            Stage::Claim => "claim",
            Stage::ExecuteAndCommit => "execute_and_commit",
            Stage::OpenWindow => "open_window",
            Stage::Reveal => "reveal",
            Stage::Decide => "decide",
            Stage::Total => "total",
        }
    }

    /// Every stage, in a task's order.
    pub const ALL: [Stage; 8] = [
        Stage::Submit,
        Stage::Announce,
        Stage::Claim,
        Stage::ExecuteAndCommit,
        Stage::OpenWindow,
        Stage::Reveal,
        Stage::Decide,
        Stage::Total,
    ];
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: Stage,
}

impl EncodeLabelValue for Stage {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        encoder.write_str(self.label())
    }
}

fn stage_histogram() -> Histogram {
    // 0.1 ms to about 13 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
}

/// Counters and gauges of the node.
pub struct NodeMetrics {
    registry: Mutex<Registry>,
    /// Tasks accepted.
    pub tasks_submitted: Counter,
    /// Receipts issued.
    pub receipts: Counter,
    /// Epochs closed.
    pub epochs: Counter,
    /// Worker messages refused.
    pub refusals: Counter,
    /// Worker messages accepted.
    pub accepted_messages: Counter,
    /// Tasks not yet final.
    pub open_tasks: Gauge,
    /// Anchor rounds that failed.
    pub anchor_errors: Counter,
    /// Confirmed, spendable sats at the anchor address.
    pub anchor_balance_sats: Gauge,
    /// Blocks since the newest confirmed anchor.
    pub blocks_since_anchor: Gauge,
    /// Blocks epochs have waited for a confirmed anchor.
    pub anchor_blocks_waiting: Gauge,
    /// Epochs no confirmed anchor commits.
    pub unanchored_epochs: Gauge,
    /// Fees committed to anchors today (UTC), sats.
    pub anchor_fee_spent_today_sats: Gauge,
    /// The daily fee cap, sats.
    pub anchor_fee_cap_day_sats: Gauge,
    /// 1 when `/v1/ready` would answer 200.
    pub ready: Gauge,
    /// Seconds each stage of a decided task took (`node::stages`).
    stages: Family<StageLabels, Histogram, fn() -> Histogram>,
    /// Bytes the database holds in memory, by part.
    store_memory: Family<MemoryLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemoryLabels {
    part: &'static str,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self::new(Registry::default())
    }
}

impl NodeMetrics {
    /// Registers the node's metrics in `registry` (which may already hold others, e.g. p2p's).
    pub fn new(mut registry: Registry) -> Self {
        let m = NodeMetrics {
            registry: Mutex::new(Registry::default()),
            tasks_submitted: Counter::default(),
            receipts: Counter::default(),
            epochs: Counter::default(),
            refusals: Counter::default(),
            accepted_messages: Counter::default(),
            open_tasks: Gauge::default(),
            anchor_errors: Counter::default(),
            anchor_balance_sats: Gauge::default(),
            blocks_since_anchor: Gauge::default(),
            anchor_blocks_waiting: Gauge::default(),
            unanchored_epochs: Gauge::default(),
            anchor_fee_spent_today_sats: Gauge::default(),
            anchor_fee_cap_day_sats: Gauge::default(),
            ready: Gauge::default(),
            stages: Family::new_with_constructor(stage_histogram),
            store_memory: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("cairn");
        r.register(
            "tasks_submitted",
            "Tasks accepted, canaries included (as /v1/stats counts them)",
            m.tasks_submitted.clone(),
        );
        r.register("receipts", "Work receipts issued", m.receipts.clone());
        r.register("epochs_closed", "Epochs closed", m.epochs.clone());
        r.register("worker_refusals", "Worker messages refused", m.refusals.clone());
        r.register("worker_accepted", "Worker messages accepted", m.accepted_messages.clone());
        r.register("open_tasks", "Tasks not yet decided", m.open_tasks.clone());
        r.register("anchor_errors", "Anchor rounds that failed", m.anchor_errors.clone());
        r.register(
            "anchor_balance_sats",
            "Confirmed, spendable sats at the anchor address",
            m.anchor_balance_sats.clone(),
        );
        r.register(
            "blocks_since_anchor",
            "Blocks since the newest confirmed anchor",
            m.blocks_since_anchor.clone(),
        );
        r.register(
            "anchor_blocks_waiting",
            "Blocks epochs have waited for a confirmed anchor",
            m.anchor_blocks_waiting.clone(),
        );
        r.register(
            "unanchored_epochs",
            "Epochs no confirmed anchor commits yet",
            m.unanchored_epochs.clone(),
        );
        r.register(
            "anchor_fee_spent_today_sats",
            "Fees committed to anchors today (UTC)",
            m.anchor_fee_spent_today_sats.clone(),
        );
        r.register("anchor_fee_cap_day_sats", "The daily anchor fee cap", m.anchor_fee_cap_day_sats.clone());
        r.register("ready", "1 when /v1/ready answers 200", m.ready.clone());
        r.register(
            "task_stage_seconds",
            "Seconds a decided task spent in each stage on this node, from the stage before it",
            m.stages.clone(),
        );
        r.register(
            "store_memory_bytes",
            "Bytes the database holds in memory: memtables, block_cache and table_readers",
            m.store_memory.clone(),
        );
        if let Ok(mut r) = m.registry.lock() {
            *r = registry;
        }
        m
    }

    /// A decided task spent `took` in `stage`.
    pub fn observe_stage(&self, stage: Stage, took: std::time::Duration) {
        self.stages.get_or_create(&StageLabels { stage }).observe(took.as_secs_f64());
    }

    /// What the database holds in memory now.
    pub fn set_store_memory(&self, m: &crate::store::StoreMemory) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for (part, v) in
            [("memtables", m.memtables), ("block_cache", m.block_cache), ("table_readers", m.table_readers)]
        {
            self.store_memory.get_or_create(&MemoryLabels { part }).set(gauge(v));
        }
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = encode(&mut out, &r);
        }
        out
    }
}
