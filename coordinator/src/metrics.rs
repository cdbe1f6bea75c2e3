//! The node's Prometheus metrics: its own counters and gauges, plus the p2p layer's,
//! in one registry served at `/metrics`.
//!
//! Owns metric names. Must never label a metric with unbounded values (keys, ids).

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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
        if let Ok(mut r) = m.registry.lock() {
            *r = registry;
        }
        m
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
