//! Filling a database with finished instances, for benchmarks of how the sidecar behaves with
//! a large history of completed work (memory, restart time, query cost). Not a stable API.

use std::path::Path;
use std::sync::Arc;

use prost::Message;

use crate::SidecarError;
use crate::proto::{self, HistoryEvent, OrchestrationInstance, history_event::EventType};
use crate::storage::sqlite::SqliteStorage;
use crate::storage::{CommitSignal, InstanceRecord, Storage, WriteOp};
use crate::time::{from_ms, now_ms};

/// Instances per committed batch while seeding.
const SEED_BATCH: usize = 2000;

/// Writes `n` completed three-activity chains (`{prefix}-{i}`), each with the record and the
/// 12-event history a real chain leaves, through the sidecar's own write path. Calls
/// `progress` with the number written so far after every batch.
#[doc(hidden)]
pub fn seed_finished_chains(
    path: &Path,
    prefix: &str,
    n: usize,
    mut progress: impl FnMut(usize),
) -> Result<(), SidecarError> {
    let failed = |e: &dyn std::fmt::Display| SidecarError::Storage {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let signal = Arc::new(CommitSignal::default());
    let storage = SqliteStorage::open(path.to_path_buf(), signal, crate::Synchronous::Normal)
        .map_err(|e| failed(&e))?;
    let mut written = 0;
    let mut seq = 1;
    while written < n {
        let count = SEED_BATCH.min(n - written);
        let mut ops = Vec::with_capacity(count * 2);
        for i in written..written + count {
            let (rec, history) = finished_chain(&format!("{prefix}-{i}"));
            ops.push(WriteOp::PutInstance(Box::new(rec.clone())));
            ops.push(WriteOp::ReplaceHistory {
                instance_id: rec.instance_id,
                events: history.iter().map(Message::encode_to_vec).collect(),
            });
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        storage.submit(seq, ops, Some(tx));
        seq += 1;
        rx.blocking_recv()
            .map_err(|e| failed(&e))?
            .map_err(|e| failed(&e))?;
        written += count;
        progress(written);
    }
    storage.close();
    Ok(())
}

fn finished_chain(id: &str) -> (InstanceRecord, Vec<HistoryEvent>) {
    let now = now_ms();
    let at = |event_id: i32, ty: EventType| HistoryEvent {
        event_id,
        timestamp: Some(from_ms(now)),
        event_type: Some(ty),
    };
    let execution_id = uuid::Uuid::new_v4().simple().to_string();
    let mut history = vec![
        at(
            -1,
            EventType::OrchestratorStarted(proto::OrchestratorStartedEvent::default()),
        ),
        at(
            -1,
            EventType::ExecutionStarted(proto::ExecutionStartedEvent {
                name: "sequence".into(),
                input: Some("null".into()),
                orchestration_instance: Some(OrchestrationInstance {
                    instance_id: id.into(),
                    execution_id: Some(execution_id.clone()),
                }),
                ..Default::default()
            }),
        ),
    ];
    for (task, city) in ["Tokyo", "Seattle", "London"].into_iter().enumerate() {
        let task = i32::try_from(task).unwrap_or(0);
        history.push(at(
            task,
            EventType::TaskScheduled(proto::TaskScheduledEvent {
                name: "hello".into(),
                input: Some(format!("\"{city}\"")),
                ..Default::default()
            }),
        ));
        history.push(at(
            -1,
            EventType::OrchestratorStarted(proto::OrchestratorStartedEvent::default()),
        ));
        history.push(at(
            -1,
            EventType::TaskCompleted(proto::TaskCompletedEvent {
                task_scheduled_id: task,
                result: Some(format!("\"Hello {city}!\"")),
            }),
        ));
    }
    let output = "[\"Hello Tokyo!\",\"Hello Seattle!\",\"Hello London!\"]".to_string();
    history.push(at(
        3,
        EventType::ExecutionCompleted(proto::ExecutionCompletedEvent {
            orchestration_status: proto::OrchestrationStatus::Completed as i32,
            result: Some(output.clone()),
            failure_details: None,
        }),
    ));
    let rec = InstanceRecord {
        instance_id: id.into(),
        name: "sequence".into(),
        input: Some("null".into()),
        output: Some(output),
        status: proto::OrchestrationStatus::Completed as i32,
        execution_id,
        created_ms: now,
        updated_ms: now,
        completed_ms: Some(now),
        ..Default::default()
    };
    (rec, history)
}
