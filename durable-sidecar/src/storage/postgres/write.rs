//! A group commit's writes as calls of statements prepared once, sent pipelined: all of a
//! transaction's statements go out without waiting for each answer, and the server runs them
//! in order, so a commit costs about one round trip instead of one per statement.

use futures::future::try_join_all;
use prost::Message;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::super::{StorageError, WriteOp};
use crate::partitions::{ENTITY_PARTITION, Partition, partition_of};

/// One statement with its parameters.
pub(super) struct Call {
    stmt: Statement,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Call {
    fn new(stmt: &Statement, params: Vec<Box<dyn ToSql + Sync + Send>>) -> Self {
        Self {
            stmt: stmt.clone(),
            params,
        }
    }
}

/// Runs the calls in order as one transaction, all pipelined with its `BEGIN` and `COMMIT`: one
/// round trip per commit. If a statement fails, the server aborts the transaction and the
/// `COMMIT` already sent ends it (as a rollback); the statement's error is returned.
pub(super) async fn run_transaction(
    client: &Client,
    statements: &Statements,
    calls: &[Call],
) -> Result<(), StorageError> {
    let params: Vec<Vec<&(dyn ToSql + Sync)>> = calls
        .iter()
        .map(|c| {
            c.params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect()
        })
        .collect();
    let begin = std::iter::once(client.execute(&statements.begin, &[]));
    let body = calls
        .iter()
        .zip(&params)
        .map(|(call, params)| client.execute(&call.stmt, params));
    let commit = std::iter::once(client.execute(&statements.commit, &[]));
    try_join_all(begin.chain(body).chain(commit)).await?;
    Ok(())
}

fn key(k: u64) -> i64 {
    i64::try_from(k).unwrap_or(i64::MAX)
}

/// The channel on which a commit that sent messages wakes their partitions (payload: the
/// partition number).
pub(crate) const MESSAGES_CHANNEL: &str = "durable_messages";

/// The writer's prepared statements.
pub(super) struct Statements {
    begin: Statement,
    commit: Statement,
    put_instance: Statement,
    delete_instance: Vec<Statement>,
    append_history: Statement,
    delete_history: Statement,
    put_inbox: Statement,
    delete_inbox_up_to: Statement,
    clear_inbox: Statement,
    put_activity: Statement,
    delete_activity: Statement,
    put_timer: Statement,
    delete_timer: Statement,
    put_entity: Statement,
    delete_entity: Vec<Statement>,
    put_entity_op: Statement,
    delete_entity_ops: Statement,
    put_lock_request: Statement,
    delete_lock_request: Statement,
    put_message: Statement,
    delete_messages: Statement,
    notify: Statement,
    /// Empties this partition (with the entity tables in the entity partition).
    delete_all: Vec<Statement>,
    partition: Partition,
}

impl Statements {
    pub(super) async fn prepare(c: &Client, partition: Partition) -> Result<Self, StorageError> {
        Ok(Self {
            begin: c.prepare("BEGIN").await?,
            commit: c.prepare("COMMIT").await?,
            put_instance: c.prepare("INSERT INTO instances (id, record, status, created_ms, completed_ms, part)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record, status = EXCLUDED.status,
                     created_ms = EXCLUDED.created_ms, completed_ms = EXCLUDED.completed_ms,
                     part = EXCLUDED.part").await?,
            delete_instance: vec![
                c.prepare("DELETE FROM instances WHERE id = $1").await?,
                c.prepare("DELETE FROM history WHERE instance_id = $1").await?,
                c.prepare("DELETE FROM inbox WHERE instance_id = $1").await?,
                c.prepare("DELETE FROM activities WHERE instance_id = $1").await?,
                c.prepare("DELETE FROM timers WHERE instance_id = $1").await?,
            ],
            append_history: c.prepare("INSERT INTO history (instance_id, idx, event)
                 SELECT $1, i, e FROM UNNEST($2::bigint[], $3::bytea[]) AS t(i, e)
                 ON CONFLICT (instance_id, idx) DO UPDATE SET event = EXCLUDED.event").await?,
            delete_history: c.prepare("DELETE FROM history WHERE instance_id = $1").await?,
            put_inbox: c.prepare("INSERT INTO inbox (instance_id, seq, event) VALUES ($1, $2, $3)
                 ON CONFLICT (instance_id, seq) DO UPDATE SET event = EXCLUDED.event").await?,
            delete_inbox_up_to: c.prepare("DELETE FROM inbox WHERE instance_id = $1 AND seq <= $2").await?,
            clear_inbox: c.prepare("DELETE FROM inbox WHERE instance_id = $1").await?,
            put_activity: c.prepare("INSERT INTO activities (key, instance_id, record, part) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (key) DO UPDATE SET instance_id = EXCLUDED.instance_id, record = EXCLUDED.record,
                     part = EXCLUDED.part").await?,
            delete_activity: c.prepare("DELETE FROM activities WHERE key = $1").await?,
            put_timer: c.prepare("INSERT INTO timers (key, instance_id, record, part) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (key) DO UPDATE SET instance_id = EXCLUDED.instance_id, record = EXCLUDED.record,
                     part = EXCLUDED.part").await?,
            delete_timer: c.prepare("DELETE FROM timers WHERE key = $1").await?,
            put_entity: c.prepare("INSERT INTO entities (id, record) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record").await?,
            delete_entity: vec![
                c.prepare("DELETE FROM entities WHERE id = $1").await?,
                c.prepare("DELETE FROM entity_ops WHERE entity_id = $1").await?,
            ],
            put_entity_op: c.prepare("INSERT INTO entity_ops (entity_id, seq, event) VALUES ($1, $2, $3)
                 ON CONFLICT (entity_id, seq) DO UPDATE SET event = EXCLUDED.event").await?,
            delete_entity_ops: c.prepare("DELETE FROM entity_ops WHERE entity_id = $1 AND seq = ANY($2)").await?,
            put_lock_request: c.prepare("INSERT INTO lock_requests (id, record) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record").await?,
            delete_lock_request: c.prepare("DELETE FROM lock_requests WHERE id = $1").await?,
            put_message: c.prepare("INSERT INTO messages (part, payload) VALUES ($1, $2)").await?,
            delete_messages: c.prepare("DELETE FROM messages WHERE id = ANY($1)").await?,
            notify: c.prepare("SELECT pg_notify($1, $2)").await?,
            delete_all: {
                let mut sql = vec![
                    "DELETE FROM history WHERE instance_id IN (SELECT id FROM instances WHERE part = $1)",
                    "DELETE FROM inbox WHERE instance_id IN (SELECT id FROM instances WHERE part = $1)",
                    "DELETE FROM activities WHERE part = $1",
                    "DELETE FROM timers WHERE part = $1",
                    "DELETE FROM instances WHERE part = $1",
                    "DELETE FROM messages WHERE part = $1",
                ];
                if partition.index == ENTITY_PARTITION {
                    sql.extend(["DELETE FROM entities", "DELETE FROM entity_ops", "DELETE FROM lock_requests"]);
                }
                let mut all = Vec::new();
                for statement in sql {
                    all.push(c.prepare(statement).await?);
                }
                all
            },
            partition,
        })
    }

    /// The `part` column of a row of instance (or entity) `id`.
    fn part_of(&self, id: &str) -> i32 {
        i32::try_from(partition_of(id, self.partition.count)).unwrap_or(0)
    }

    /// The notifications that wake the partitions a commit sent messages to (one each).
    pub(super) fn notifications(&self, ops: &[&WriteOp], out: &mut Vec<Call>) {
        let mut parts: Vec<u32> = ops
            .iter()
            .filter_map(|op| match op {
                WriteOp::PutMessage { part, .. } => Some(*part),
                _ => None,
            })
            .collect();
        parts.sort_unstable();
        parts.dedup();
        for part in parts {
            out.push(Call::new(
                &self.notify,
                vec![
                    Box::new(MESSAGES_CHANNEL.to_owned()),
                    Box::new(part.to_string()),
                ],
            ));
        }
    }

    /// The calls of one write, appended to `out`.
    pub(super) fn calls(&self, op: &WriteOp, out: &mut Vec<Call>) {
        match op {
            WriteOp::PutInstance(rec) => out.push(Call::new(
                &self.put_instance,
                vec![
                    Box::new(rec.instance_id.clone()),
                    Box::new(rec.encode_to_vec()),
                    Box::new(i64::from(rec.status)),
                    Box::new(rec.created_ms),
                    Box::new(rec.completed_ms),
                    Box::new(self.part_of(&rec.instance_id)),
                ],
            )),
            WriteOp::DeleteInstance(id) => {
                for stmt in &self.delete_instance {
                    out.push(Call::new(stmt, vec![Box::new(id.clone())]));
                }
            }
            WriteOp::AppendHistory {
                instance_id,
                start_index,
                events,
            } => self.append_history(out, instance_id, *start_index, events),
            WriteOp::ReplaceHistory {
                instance_id,
                events,
            } => {
                out.push(Call::new(
                    &self.delete_history,
                    vec![Box::new(instance_id.clone())],
                ));
                self.append_history(out, instance_id, 0, events);
            }
            WriteOp::PutInbox {
                instance_id,
                seq,
                event,
            } => out.push(Call::new(
                &self.put_inbox,
                vec![
                    Box::new(instance_id.clone()),
                    Box::new(key(*seq)),
                    Box::new(event.clone()),
                ],
            )),
            WriteOp::DeleteInbox { instance_id, up_to } => out.push(Call::new(
                &self.delete_inbox_up_to,
                vec![Box::new(instance_id.clone()), Box::new(key(*up_to))],
            )),
            WriteOp::ClearInbox(id) => {
                out.push(Call::new(&self.clear_inbox, vec![Box::new(id.clone())]));
            }
            WriteOp::PutActivity(rec) => {
                let instance_id = rec
                    .request
                    .as_ref()
                    .and_then(|r| r.orchestration_instance.as_ref())
                    .map(|i| i.instance_id.clone())
                    .unwrap_or_default();
                let part = self.part_of(&instance_id);
                out.push(Call::new(
                    &self.put_activity,
                    vec![
                        Box::new(key(rec.key)),
                        Box::new(instance_id),
                        Box::new(rec.encode_to_vec()),
                        Box::new(part),
                    ],
                ));
            }
            WriteOp::DeleteActivity(k) => {
                out.push(Call::new(&self.delete_activity, vec![Box::new(key(*k))]));
            }
            WriteOp::PutTimer(rec) => out.push(Call::new(
                &self.put_timer,
                vec![
                    Box::new(key(rec.key)),
                    Box::new(rec.instance_id.clone()),
                    Box::new(rec.encode_to_vec()),
                    Box::new(self.part_of(&rec.instance_id)),
                ],
            )),
            WriteOp::DeleteTimer(k) => {
                out.push(Call::new(&self.delete_timer, vec![Box::new(key(*k))]));
            }
            WriteOp::DeleteAll => {
                let part = i32::try_from(self.partition.index).unwrap_or(0);
                for stmt in &self.delete_all {
                    let params: Vec<Box<dyn ToSql + Sync + Send>> = if stmt.params().is_empty() {
                        Vec::new()
                    } else {
                        vec![Box::new(part)]
                    };
                    out.push(Call::new(stmt, params));
                }
            }
            WriteOp::PutMessage { part, payload } => out.push(Call::new(
                &self.put_message,
                vec![
                    Box::new(i32::try_from(*part).unwrap_or(0)),
                    Box::new(payload.clone()),
                ],
            )),
            WriteOp::DeleteMessages(ids) => out.push(Call::new(
                &self.delete_messages,
                vec![Box::new(ids.clone())],
            )),
            _ => self.entity_calls(op, out),
        }
    }

    fn entity_calls(&self, op: &WriteOp, out: &mut Vec<Call>) {
        match op {
            WriteOp::PutEntity(rec) => out.push(Call::new(
                &self.put_entity,
                vec![Box::new(rec.id.clone()), Box::new(rec.encode_to_vec())],
            )),
            WriteOp::DeleteEntity(id) => {
                for stmt in &self.delete_entity {
                    out.push(Call::new(stmt, vec![Box::new(id.clone())]));
                }
            }
            WriteOp::PutEntityOp {
                entity_id,
                seq,
                event,
            } => out.push(Call::new(
                &self.put_entity_op,
                vec![
                    Box::new(entity_id.clone()),
                    Box::new(key(*seq)),
                    Box::new(event.clone()),
                ],
            )),
            WriteOp::DeleteEntityOps { entity_id, seqs } => {
                let seqs: Vec<i64> = seqs.iter().map(|s| key(*s)).collect();
                out.push(Call::new(
                    &self.delete_entity_ops,
                    vec![Box::new(entity_id.clone()), Box::new(seqs)],
                ));
            }
            WriteOp::PutLockRequest(rec) => out.push(Call::new(
                &self.put_lock_request,
                vec![
                    Box::new(rec.critical_section_id.clone()),
                    Box::new(rec.encode_to_vec()),
                ],
            )),
            WriteOp::DeleteLockRequest(id) => out.push(Call::new(
                &self.delete_lock_request,
                vec![Box::new(id.clone())],
            )),
            // Orchestration writes: `calls` handles them and never sends them here.
            _ => {}
        }
    }

    fn append_history(
        &self,
        out: &mut Vec<Call>,
        instance_id: &str,
        start_index: u64,
        events: &[Vec<u8>],
    ) {
        if events.is_empty() {
            return;
        }
        let first = key(start_index);
        let indexes: Vec<i64> = (0..events.len())
            .map(|i| first.saturating_add(i64::try_from(i).unwrap_or(i64::MAX)))
            .collect();
        out.push(Call::new(
            &self.append_history,
            vec![
                Box::new(instance_id.to_owned()),
                Box::new(indexes),
                Box::new(events.to_vec()),
            ],
        ));
    }
}
