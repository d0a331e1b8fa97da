//! Messages between partitions: a delivery ([`Outbound`]) whose target lives in another
//! partition is written to storage in the sender's batch (so it is durable exactly when the
//! change that produced it is) and applied by the target's engine, which deletes it in the
//! batch that applies it. Each message is applied once: the engine remembers the messages it
//! applied until their deletion is durable.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use prost::Message;
use tonic::Status;

use super::Engine;
use super::lifecycle::NewInstance;
use super::routing::Outbound;
use crate::partitions::{ENTITY_PARTITION, partition_of};
use crate::proto::{HistoryEvent, ParentInstanceInfo, TraceContext};
use crate::storage::{LockRequestRecord, WriteOp};

/// A delivery as stored in the `messages` table.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RoutedMessage {
    #[prost(oneof = "Routed", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9")]
    routed: Option<Routed>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Routed {
    #[prost(message, tag = "1")]
    Event(RoutedEvent),
    #[prost(message, tag = "2")]
    Terminate(RoutedTerminate),
    #[prost(message, tag = "3")]
    CreateChild(RoutedStart),
    #[prost(message, tag = "4")]
    EntityOp(RoutedEntityOp),
    #[prost(message, tag = "5")]
    LockRequest(LockRequestRecord),
    #[prost(message, tag = "6")]
    Unlock(RoutedUnlock),
    #[prost(string, tag = "7")]
    ReleaseLocks(String),
    #[prost(message, tag = "8")]
    StartForEntity(RoutedStart),
    #[prost(message, tag = "9")]
    AddChild(RoutedUnlock),
}

#[derive(Clone, PartialEq, prost::Message)]
struct RoutedEvent {
    #[prost(string, tag = "1")]
    target: String,
    #[prost(message, optional, tag = "2")]
    event: Option<HistoryEvent>,
    /// Deliver only to this execution of the target.
    #[prost(string, optional, tag = "3")]
    execution_id: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RoutedTerminate {
    #[prost(string, tag = "1")]
    target: String,
    #[prost(string, optional, tag = "2")]
    output: Option<String>,
    #[prost(bool, tag = "3")]
    recurse: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RoutedStart {
    #[prost(string, tag = "1")]
    instance_id: String,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(string, optional, tag = "3")]
    version: Option<String>,
    #[prost(string, optional, tag = "4")]
    input: Option<String>,
    #[prost(string, optional, tag = "5")]
    execution_id: Option<String>,
    #[prost(int64, optional, tag = "6")]
    scheduled_start_ms: Option<i64>,
    #[prost(map = "string, string", tag = "7")]
    tags: HashMap<String, String>,
    #[prost(message, optional, tag = "8")]
    parent: Option<ParentInstanceInfo>,
    #[prost(message, optional, tag = "9")]
    parent_trace_context: Option<TraceContext>,
    /// The parent orchestration's instance id (sub-orchestrations).
    #[prost(string, tag = "10")]
    parent_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RoutedEntityOp {
    #[prost(string, tag = "1")]
    target: String,
    #[prost(message, optional, tag = "2")]
    event: Option<HistoryEvent>,
    #[prost(int64, optional, tag = "3")]
    at_ms: Option<i64>,
}

/// A pair of ids: (entity, critical section) for an unlock, (parent, child) for a new child.
#[derive(Clone, PartialEq, prost::Message)]
struct RoutedUnlock {
    #[prost(string, tag = "1")]
    target: String,
    #[prost(string, tag = "2")]
    other: String,
}

/// The partition a delivery goes to; `None` for one that is always applied where it arose.
pub(super) fn target_partition(o: &Outbound, count: u32) -> Option<u32> {
    match o {
        Outbound::Event(target, _)
        | Outbound::CallResult { target, .. }
        | Outbound::Terminate { target, .. }
        | Outbound::AddChild { parent: target, .. } => Some(partition_of(target, count)),
        Outbound::CreateChild(ni, _) | Outbound::StartForEntity(ni) => {
            Some(partition_of(&ni.instance_id, count))
        }
        Outbound::EntityOp { .. }
        | Outbound::LockRequest(_)
        | Outbound::Unlock { .. }
        | Outbound::ReleaseLocks(_) => Some(ENTITY_PARTITION),
        Outbound::NotifyParent(_) => None,
    }
}

fn start_of(ni: NewInstance, parent_id: String) -> RoutedStart {
    RoutedStart {
        instance_id: ni.instance_id,
        name: ni.name,
        version: ni.version,
        input: ni.input,
        execution_id: ni.execution_id,
        scheduled_start_ms: ni.scheduled_start_ms,
        tags: ni.tags,
        parent: ni.parent,
        parent_trace_context: ni.parent_trace_context,
        parent_id,
    }
}

fn new_instance(s: RoutedStart) -> (NewInstance, String) {
    let ni = NewInstance {
        instance_id: s.instance_id,
        name: s.name,
        version: s.version,
        input: s.input,
        execution_id: s.execution_id,
        scheduled_start_ms: s.scheduled_start_ms,
        tags: s.tags,
        parent: s.parent,
        parent_trace_context: s.parent_trace_context,
    };
    (ni, s.parent_id)
}

/// The stored form of a delivery (`None` for one applied where it arose).
pub(super) fn encode(o: Outbound) -> Option<Vec<u8>> {
    let routed = match o {
        Outbound::Event(target, event) => Routed::Event(RoutedEvent {
            target,
            event: Some(*event),
            execution_id: None,
        }),
        Outbound::CallResult {
            target,
            execution_id,
            event,
        } => Routed::Event(RoutedEvent {
            target,
            event: Some(*event),
            execution_id,
        }),
        Outbound::Terminate {
            target,
            output,
            recurse,
        } => Routed::Terminate(RoutedTerminate {
            target,
            output,
            recurse,
        }),
        Outbound::CreateChild(ni, parent_id) => Routed::CreateChild(start_of(*ni, parent_id)),
        Outbound::StartForEntity(ni) => Routed::StartForEntity(start_of(*ni, String::new())),
        Outbound::AddChild { parent, child } => Routed::AddChild(RoutedUnlock {
            target: parent,
            other: child,
        }),
        Outbound::EntityOp {
            target,
            event,
            at_ms,
        } => Routed::EntityOp(RoutedEntityOp {
            target,
            event: Some(*event),
            at_ms,
        }),
        Outbound::LockRequest(request) => Routed::LockRequest(*request),
        Outbound::Unlock { target, section } => Routed::Unlock(RoutedUnlock {
            target,
            other: section,
        }),
        Outbound::ReleaseLocks(holder) => Routed::ReleaseLocks(holder),
        Outbound::NotifyParent(_) => return None,
    };
    Some(
        RoutedMessage {
            routed: Some(routed),
        }
        .encode_to_vec(),
    )
}

/// A stored delivery back as the engine applies it.
fn decode(bytes: &[u8]) -> Result<Outbound, String> {
    let message = RoutedMessage::decode(bytes).map_err(|e| e.to_string())?;
    let missing = || "a message without its event".to_string();
    Ok(match message.routed.ok_or("an empty message")? {
        Routed::Event(e) => match e.execution_id {
            None => Outbound::Event(e.target, Box::new(e.event.ok_or_else(missing)?)),
            Some(execution_id) => Outbound::CallResult {
                target: e.target,
                execution_id: Some(execution_id),
                event: Box::new(e.event.ok_or_else(missing)?),
            },
        },
        Routed::Terminate(t) => Outbound::Terminate {
            target: t.target,
            output: t.output,
            recurse: t.recurse,
        },
        Routed::CreateChild(s) => {
            let (ni, parent_id) = new_instance(s);
            Outbound::CreateChild(Box::new(ni), parent_id)
        }
        Routed::StartForEntity(s) => Outbound::StartForEntity(Box::new(new_instance(s).0)),
        Routed::AddChild(pair) => Outbound::AddChild {
            parent: pair.target,
            child: pair.other,
        },
        Routed::EntityOp(op) => Outbound::EntityOp {
            target: op.target,
            event: Box::new(op.event.ok_or_else(missing)?),
            at_ms: op.at_ms,
        },
        Routed::LockRequest(request) => Outbound::LockRequest(Box::new(request)),
        Routed::Unlock(pair) => Outbound::Unlock {
            target: pair.target,
            section: pair.other,
        },
        Routed::ReleaseLocks(holder) => Outbound::ReleaseLocks(holder),
    })
}

impl Engine {
    /// Reads the messages waiting for this engine's partition and applies them; the number
    /// read (0 when unpartitioned).
    pub(crate) async fn receive_messages(&self) -> Result<usize, Status> {
        let Some(part) = self.lock().partition.map(|p| p.index) else {
            return Ok(0);
        };
        let durable_before = self.signal.durable_seq.load(Ordering::SeqCst);
        let rows = self.read(move |s| s.read_messages(part)).await?;
        let read = rows.len();
        if read > 0 {
            self.apply_messages(rows, durable_before);
        }
        Ok(read)
    }

    /// Before a lookup that found no instance answers "not found": applies what other
    /// partitions sent, and says whether to look once more (when this engine serves a
    /// partition). The instance may be one another partition just created (a
    /// sub-orchestration), applied by this call or, a moment before, by the partition's own
    /// message pump, so the second look is needed even when this call read nothing.
    pub(crate) async fn catch_up(&self) -> Result<bool, Status> {
        let partitioned = self.lock().partition.is_some();
        if partitioned {
            self.receive_messages().await?;
        }
        Ok(partitioned)
    }

    /// Applies messages read from storage for this engine's partition, in order, in one batch
    /// that also deletes them. `durable_before` is the durable batch sequence read before the
    /// messages were: deletions durable by then cannot have been read, so those messages are
    /// forgotten.
    fn apply_messages(&self, rows: Vec<(i64, Vec<u8>)>, durable_before: u64) {
        let mut st = self.lock();
        st.applied_messages.retain(|_, seq| *seq > durable_before);
        if self.refuse(&st).is_err() {
            return;
        }
        let rows: Vec<(i64, Vec<u8>)> = rows
            .into_iter()
            .filter(|(id, _)| !st.applied_messages.contains_key(id))
            .collect();
        if rows.is_empty() {
            return;
        }
        let mut b = self.begin(&mut st);
        let mut out = Vec::with_capacity(rows.len());
        let mut ids = Vec::with_capacity(rows.len());
        for (id, bytes) in rows {
            match decode(&bytes) {
                Ok(o) => out.push(o),
                Err(e) => {
                    tracing::error!(message = id, error = %e, "dropping an undecodable message between partitions")
                }
            }
            st.applied_messages.insert(id, b.seq);
            ids.push(id);
        }
        self.run_outbound(&mut st, &mut b, out);
        b.ops.push(WriteOp::DeleteMessages(ids));
        self.submit_quietly(b);
    }
}
