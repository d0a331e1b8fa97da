//! Worker versioning: which orchestration versions a worker runs, and what it does with the
//! others (the official SDKs' `VersioningOptions`).

use std::cmp::Ordering;

use crate::compare_versions;
use crate::proto;
use crate::proto::history_event::EventType;

/// Which instance versions a worker runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VersionMatch {
    /// Every version (the default).
    #[default]
    None,
    /// Only instances of exactly the worker's version.
    Strict,
    /// Instances of the worker's version or older (by [`compare_versions`]).
    CurrentOrOlder,
}

/// What a worker does with an instance whose version it does not run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VersionFailure {
    /// Hands the work item back (after a pause of a second), for a worker that runs that
    /// version (the default).
    #[default]
    Reject,
    /// Fails the orchestration with a `VersionMismatch` error.
    Fail,
}

/// The version of a worker and how it treats instances of other versions.
///
/// ```
/// use durable::worker::{VersionFailure, VersionMatch, Versioning, WorkerOptions};
///
/// let options = WorkerOptions::new().versioning(
///     Versioning::new("2.0.0")
///         .match_strategy(VersionMatch::CurrentOrOlder)
///         .failure_strategy(VersionFailure::Fail),
/// );
/// # let _ = options;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioning {
    version: String,
    match_strategy: VersionMatch,
    failure_strategy: VersionFailure,
}

/// The error type of an orchestration failed for its version.
pub const VERSION_MISMATCH_ERROR_TYPE: &str = "VersionMismatch";

impl Versioning {
    /// A worker of `version` that runs every version ([`VersionMatch::None`]) until a match
    /// strategy says otherwise.
    pub fn new(version: impl Into<String>) -> Self {
        Self {
            version: version.into(),
            match_strategy: VersionMatch::None,
            failure_strategy: VersionFailure::Reject,
        }
    }

    /// Which instance versions this worker runs.
    pub fn match_strategy(mut self, strategy: VersionMatch) -> Self {
        self.match_strategy = strategy;
        self
    }

    /// What it does with the others.
    pub fn failure_strategy(mut self, strategy: VersionFailure) -> Self {
        self.failure_strategy = strategy;
        self
    }

    /// The worker's version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The configured failure strategy.
    pub fn failure_strategy_value(&self) -> VersionFailure {
        self.failure_strategy
    }

    /// The versions a work-item filter can ask the sidecar for: only a strict match can be
    /// said as a list; otherwise every version is asked for and checked here.
    pub(crate) fn filter_versions(&self) -> Vec<String> {
        match self.match_strategy {
            VersionMatch::Strict => vec![self.version.clone()],
            VersionMatch::None | VersionMatch::CurrentOrOlder => Vec::new(),
        }
    }

    /// Why this worker does not run an instance of `instance_version`; `None` when it does.
    pub fn mismatch(&self, instance_version: &str) -> Option<String> {
        let ordering = compare_versions(instance_version, &self.version);
        let runs = match self.match_strategy {
            VersionMatch::None => true,
            VersionMatch::Strict => ordering == Ordering::Equal,
            VersionMatch::CurrentOrOlder => ordering != Ordering::Greater,
        };
        let shown = |v: &str| {
            if v.is_empty() {
                "no version".to_owned()
            } else {
                format!("version `{v}`")
            }
        };
        (!runs).then(|| {
            format!(
                "the orchestration has {}, and this worker ({}) runs {}",
                shown(instance_version),
                shown(&self.version),
                match self.match_strategy {
                    VersionMatch::Strict => "only its own version",
                    _ => "only its own version and older ones",
                }
            )
        })
    }
}

/// The version of the instance a work item is for (from its `ExecutionStarted` event).
pub(crate) fn instance_version(request: &proto::OrchestratorRequest) -> String {
    request
        .past_events
        .iter()
        .chain(&request.new_events)
        .find_map(|e| match &e.event_type {
            Some(EventType::ExecutionStarted(started)) => {
                Some(started.version.clone().unwrap_or_default())
            }
            _ => None,
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_decide_which_versions_run() {
        let any = Versioning::new("2.0");
        assert_eq!(any.mismatch("3.0"), None);
        let strict = Versioning::new("2.0").match_strategy(VersionMatch::Strict);
        assert_eq!(strict.mismatch("2.0.0"), None);
        let older = strict.mismatch("1.0").unwrap();
        assert!(
            older.contains("`1.0`") && older.contains("`2.0`"),
            "{older}"
        );
        assert!(strict.mismatch("").unwrap().contains("no version"));
        assert_eq!(strict.filter_versions(), ["2.0"]);
        let current = Versioning::new("2.0").match_strategy(VersionMatch::CurrentOrOlder);
        assert_eq!(current.mismatch("1.9"), None);
        assert_eq!(current.mismatch(""), None);
        assert!(current.mismatch("2.1").is_some());
        assert!(current.filter_versions().is_empty());
    }
}
