//! Worker streams: capacity hints and work-item filters (protocol.md §3.2).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

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
        Self {
            orchestrations: Some(orchestrations),
            activities: Some(activities),
        }
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

/// One connected `GetWorkItems` stream.
pub(crate) struct WorkStream {
    pub(crate) tx: mpsc::UnboundedSender<Result<WorkItem, Status>>,
    pub(crate) filters: Filters,
    pub(crate) max_orch: usize,
    pub(crate) max_act: usize,
    pub(crate) orch_in_flight: usize,
    pub(crate) act_in_flight: usize,
    /// When the last item was sent (ms since epoch), for health pings on idle streams.
    pub(crate) last_send: Arc<AtomicI64>,
    /// The worker advertised `WORKER_CAPABILITY_HISTORY_STREAMING`: it can fetch a large
    /// history with `StreamInstanceHistory` instead of receiving it inline.
    pub(crate) history_streaming: bool,
}

/// A concurrency hint: 0 or negative = no limit.
pub(crate) fn cap(hint: i32) -> usize {
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
    }
}
