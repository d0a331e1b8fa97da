//! What the sidecar counts, in the Prometheus text format (`prometheus-client`): work items
//! dispatched, completed and abandoned, episode and storage-commit latencies, and, read at
//! scrape time, live instances by status, queue depths and connected workers.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::work_queue::WorkKind;

/// A work item's kind, as a label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values read `orchestration`, not `Orchestration`
pub(crate) enum Kind {
    orchestration,
    activity,
    entity,
}

impl From<WorkKind> for Kind {
    fn from(kind: WorkKind) -> Self {
        match kind {
            WorkKind::Orchestration => Kind::orchestration,
            WorkKind::Activity => Kind::activity,
            WorkKind::Entity => Kind::entity,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: Kind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

/// The sidecar's metrics. Counting is a few atomic operations; the gauges are set only when
/// scraped.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    // Per kind (orchestration, activity, entity): handles into the registered families, so
    // counting is one atomic add.
    dispatched: [Counter; 3],
    completed: [Counter; 3],
    abandoned: [Counter; 3],
    episode_seconds: Histogram,
    commit_seconds: Histogram,
    instances: Family<StatusLabel, Gauge>,
    queued: Family<KindLabel, Gauge>,
    workers: Gauge,
}

/// What the engine reports at scrape time.
pub(crate) struct Snapshot {
    /// Live instances (the ones in memory) per status (`ORCHESTRATION_STATUS_RUNNING`, ...).
    pub(crate) instances: Vec<(&'static str, i64)>,
    /// Work waiting for a worker, per kind.
    pub(crate) queued: [(WorkKind, i64); 3],
    /// Connected `GetWorkItems` streams.
    pub(crate) workers: i64,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("durable");
        let dispatched = Family::<KindLabel, Counter>::default();
        let completed = Family::<KindLabel, Counter>::default();
        let abandoned = Family::<KindLabel, Counter>::default();
        // 0.5 ms .. 16 s.
        let episode_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let commit_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let instances = Family::<StatusLabel, Gauge>::default();
        let queued = Family::<KindLabel, Gauge>::default();
        let workers = Gauge::default();
        registry.register(
            "work_items_dispatched",
            "Work items sent to workers",
            dispatched.clone(),
        );
        registry.register(
            "work_items_completed",
            "Work items whose completion was accepted",
            completed.clone(),
        );
        registry.register(
            "work_items_abandoned",
            "Work items taken back (abandoned, or their worker's stream closed)",
            abandoned.clone(),
        );
        registry.register(
            "episode_seconds",
            "Time from dispatching an orchestration work item to its completion",
            episode_seconds.clone(),
        );
        registry.register(
            "storage_commit_seconds",
            "Time one storage transaction (a group of batches) took to commit",
            commit_seconds.clone(),
        );
        registry.register(
            "instances",
            "Live (not finished) orchestration instances by status",
            instances.clone(),
        );
        registry.register(
            "queued_work_items",
            "Work waiting for a worker",
            queued.clone(),
        );
        registry.register(
            "connected_workers",
            "Open GetWorkItems streams",
            workers.clone(),
        );
        // Every kind shows from the start, at 0.
        let handles = |family: &Family<KindLabel, Counter>| {
            [
                WorkKind::Orchestration,
                WorkKind::Activity,
                WorkKind::Entity,
            ]
            .map(|kind| family.get_or_create(&label(kind)).clone())
        };
        Self {
            registry,
            dispatched: handles(&dispatched),
            completed: handles(&completed),
            abandoned: handles(&abandoned),
            episode_seconds,
            commit_seconds,
            instances,
            queued,
            workers,
        }
    }
}

impl Metrics {
    pub(crate) fn dispatched(&self, kind: WorkKind) {
        self.dispatched[index(kind)].inc();
    }

    pub(crate) fn completed(&self, kind: WorkKind) {
        self.completed[index(kind)].inc();
    }

    pub(crate) fn abandoned(&self, kind: WorkKind) {
        self.abandoned[index(kind)].inc();
    }

    pub(crate) fn episode(&self, took: Duration) {
        self.episode_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn commit(&self, took: Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
    }

    /// The metrics as Prometheus text, with the gauges set from `snapshot`.
    pub(crate) fn render(&self, snapshot: Snapshot) -> String {
        self.instances.clear();
        for (status, count) in snapshot.instances {
            self.instances
                .get_or_create(&StatusLabel {
                    status: status
                        .trim_start_matches("ORCHESTRATION_STATUS_")
                        .to_ascii_lowercase(),
                })
                .set(count);
        }
        for (kind, count) in snapshot.queued {
            self.queued.get_or_create(&label(kind)).set(count);
        }
        self.workers.set(snapshot.workers);
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

fn index(kind: WorkKind) -> usize {
    match kind {
        WorkKind::Orchestration => 0,
        WorkKind::Activity => 1,
        WorkKind::Entity => 2,
    }
}

fn label(kind: WorkKind) -> KindLabel {
    KindLabel { kind: kind.into() }
}
