//! Worker streams: capacity hints and work-item filters (protocol.md §3.2).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use tokio::sync::mpsc;
use tonic::Status;

use crate::proto::{GetWorkItemsRequest, WorkItem};

/// name → accepted versions (empty = any version).
type FilterMap = HashMap<String, Vec<String>>;

/// What a worker said it accepts. `None` = everything.
#[derive(Debug, Default, Clone)]
pub(crate) struct Filters {
    orchestrations: Option<FilterMap>,
    activities: Option<FilterMap>,
    /// Lower-cased entity names.
    entities: Option<HashSet<String>>,
}

impl Filters {
    pub(crate) fn from_request(req: &GetWorkItemsRequest) -> Self {
        let Some(f) = &req.work_item_filters else {
            return Self::default();
        };
        let orchestrations = f
            .orchestrations
            .iter()
            .map(|o| (o.name.clone(), o.versions.clone()))
            .collect();
        let activities = f
            .activities
            .iter()
            .map(|a| (a.name.clone(), a.versions.clone()))
            .collect();
        let entities = f.entities.iter().map(|e| e.name.to_lowercase()).collect();
        Self {
            orchestrations: Some(orchestrations),
            activities: Some(activities),
            entities: Some(entities),
        }
    }

    /// Whether the worker takes work of entity `name` (lower-case).
    pub(crate) fn accepts_entity(&self, name: &str) -> bool {
        self.entities
            .as_ref()
            .is_none_or(|names| names.contains(name))
    }

    pub(crate) fn accepts(&self, orchestration: bool, name: &str, version: Option<&str>) -> bool {
        let map = if orchestration {
            &self.orchestrations
        } else {
            &self.activities
        };
        let Some(map) = map else { return true };
        match map.get(name) {
            None => false,
            Some(versions) => {
                versions.is_empty() || versions.iter().any(|v| v == version.unwrap_or(""))
            }
        }
    }
}

/// The kinds of work a stream carries, each with its own capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WorkKind {
    Orchestration,
    Activity,
    Entity,
}

impl WorkKind {
    /// The kind as users read it in messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Orchestration => "orchestration",
            Self::Activity => "activity",
            Self::Entity => "entity",
        }
    }
}

/// One connected `GetWorkItems` stream.
pub(crate) struct WorkStream {
    pub(crate) tx: mpsc::UnboundedSender<Result<WorkItem, Status>>,
    pub(crate) filters: Filters,
    pub(crate) max_orch: usize,
    pub(crate) max_act: usize,
    pub(crate) max_entity: usize,
    /// Items in flight by kind. Shared when one worker stream is served by several engines
    /// (the partitions of a replica), so the worker's limits hold across all of them.
    pub(crate) in_flight: Arc<InFlightCounts>,
    /// When the last item was sent (ms since epoch), for health pings on idle streams.
    pub(crate) last_send: Arc<AtomicI64>,
    /// The worker advertised `WORKER_CAPABILITY_HISTORY_STREAMING`: it can fetch a large
    /// history with `StreamInstanceHistory` instead of receiving it inline.
    pub(crate) history_streaming: bool,
    /// The worker is durable's own, in the sidecar's process: it may get an orchestration's
    /// episode before the step that made it ready is durable (see `Engine::pump`), and it
    /// keeps an execution's replay state between episodes, so its next episode carries only
    /// the history after what it applied (see `Instance::held`).
    pub(crate) in_process: bool,
}

impl WorkStream {
    /// Marks the stream as served to durable's own worker in this process.
    pub(crate) fn in_process(mut self, in_process: bool) -> Self {
        self.in_process = in_process;
        self
    }

    /// Whether the stream can take one more item of `kind`.
    pub(crate) fn has_room(&self, kind: WorkKind) -> bool {
        let max = match kind {
            WorkKind::Orchestration => self.max_orch,
            WorkKind::Activity => self.max_act,
            WorkKind::Entity => self.max_entity,
        };
        self.in_flight.of(kind).load(Ordering::Relaxed) < max
    }

    /// Whether the worker takes work of `kind` named `name` (entities: the lower-case name).
    pub(crate) fn accepts(&self, kind: WorkKind, name: &str, version: Option<&str>) -> bool {
        match kind {
            WorkKind::Orchestration => self.filters.accepts(true, name, version),
            WorkKind::Activity => self.filters.accepts(false, name, version),
            WorkKind::Entity => self.filters.accepts_entity(name),
        }
    }

    /// Counts one more item of `kind` in flight.
    pub(crate) fn take_slot(&mut self, kind: WorkKind) {
        self.in_flight.of(kind).fetch_add(1, Ordering::Relaxed);
    }

    /// An item of `kind` left: frees its slot.
    pub(crate) fn free_slot(&mut self, kind: WorkKind) {
        let _ = self
            .in_flight
            .of(kind)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// A stream with nothing in flight. Limits come from the worker's hints ([`cap`]).
    pub(crate) fn new(
        tx: mpsc::UnboundedSender<Result<WorkItem, Status>>,
        filters: Filters,
        req: &GetWorkItemsRequest,
        last_send: Arc<AtomicI64>,
        in_flight: Arc<InFlightCounts>,
    ) -> Self {
        Self {
            tx,
            filters,
            max_orch: cap(req.max_concurrent_orchestration_work_items),
            max_act: cap(req.max_concurrent_activity_work_items),
            max_entity: cap(req.max_concurrent_entity_work_items),
            in_flight,
            last_send,
            history_streaming: req
                .capabilities
                .contains(&(durable_proto::WorkerCapability::HistoryStreaming as i32)),
            in_process: false,
        }
    }
}

/// How many items of each kind a worker stream has in flight.
#[derive(Debug, Default)]
pub(crate) struct InFlightCounts {
    orchestrations: AtomicUsize,
    activities: AtomicUsize,
    entities: AtomicUsize,
}

impl InFlightCounts {
    fn of(&self, kind: WorkKind) -> &AtomicUsize {
        match kind {
            WorkKind::Orchestration => &self.orchestrations,
            WorkKind::Activity => &self.activities,
            WorkKind::Entity => &self.entities,
        }
    }
}

/// A concurrency hint: 0 or negative = no limit.
fn cap(hint: i32) -> usize {
    usize::try_from(hint)
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ActivityFilter, WorkItemFilters};

    #[test]
    fn absent_filters_accept_everything() {
        let f = Filters::from_request(&GetWorkItemsRequest::default());
        assert!(f.accepts(true, "x", None));
        assert!(f.accepts(false, "y", Some("1")));
    }

    #[test]
    fn present_filters_match_names_and_versions() {
        let req = GetWorkItemsRequest {
            work_item_filters: Some(WorkItemFilters {
                activities: vec![ActivityFilter {
                    name: "a".into(),
                    versions: vec!["2".into()],
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let f = Filters::from_request(&req);
        assert!(f.accepts(false, "a", Some("2")));
        assert!(!f.accepts(false, "a", Some("1")));
        assert!(!f.accepts(false, "b", None));
        assert!(
            !f.accepts(true, "o", None),
            "empty category matches nothing"
        );
        assert!(!f.accepts_entity("counter"));
        assert!(Filters::default().accepts_entity("counter"));
    }
}
