//! A group commit's writes as calls of statements prepared once, sent pipelined: all of a
//! transaction's statements go out without waiting for each answer, and the server runs them
//! in order, so a commit costs about one round trip instead of one per statement. The writes
//! of many steps to one table become one statement over arrays where they can (see
//! [`Statements::transaction`]), so the server runs a handful of statements per commit.

use std::collections::{BTreeMap, HashSet};

use futures::future::try_join_all;
use prost::Message;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::super::{StorageError, WriteOp};
use crate::partitions::{ENTITY_PARTITION, PARTITIONS, partition_of};

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

    /// The parameters as the client takes them.
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
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
    let params: Vec<Vec<&(dyn ToSql + Sync)>> = calls.iter().map(Call::params).collect();
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
    put_instances: Statement,
    delete_instance: Vec<Statement>,
    append_history: Statement,
    delete_history: Statement,
    put_inbox: Statement,
    delete_inboxes_up_to: Statement,
    clear_inbox: Statement,
    put_activities: Statement,
    delete_activities: Statement,
    put_timers: Statement,
    delete_timers: Statement,
    put_entity: Statement,
    delete_entity: Vec<Statement>,
    put_entity_op: Statement,
    delete_entity_ops: Statement,
    put_lock_request: Statement,
    delete_lock_request: Statement,
    put_messages: Statement,
    delete_messages: Statement,
    notify: Statement,
    mark_commits: Statement,
    /// Empties a partition.
    delete_all: Vec<Statement>,
    /// Empties the entity tables (with the entity partition).
    delete_entities: Vec<Statement>,
}

/// One write of a group commit with the partition whose engine made it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Tagged<'a> {
    pub(super) part: u32,
    pub(super) op: &'a WriteOp,
}

impl Statements {
    pub(super) async fn prepare(c: &Client) -> Result<Self, StorageError> {
        Ok(Self {
            begin: c.prepare("BEGIN").await?,
            commit: c.prepare("COMMIT").await?,
            put_instances: c.prepare("INSERT INTO instances (id, record, status, created_ms, completed_ms, part)
                 SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::bigint[], $4::bigint[], $5::bigint[], $6::int[])
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
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bytea[])
                 ON CONFLICT (instance_id, idx) DO UPDATE SET event = EXCLUDED.event").await?,
            delete_history: c.prepare("DELETE FROM history WHERE instance_id = $1").await?,
            put_inbox: c.prepare("INSERT INTO inbox (instance_id, seq, event)
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bytea[])
                 ON CONFLICT (instance_id, seq) DO UPDATE SET event = EXCLUDED.event").await?,
            // Each instance's rows found through the primary key: `OFFSET 0` keeps the
            // planner from turning the lookups into a join that scans the whole inbox (dead
            // rows included, which a busy inbox has many of between vacuums).
            delete_inboxes_up_to: c.prepare("DELETE FROM inbox WHERE ctid = ANY(ARRAY(
                 SELECT b.ctid FROM UNNEST($1::text[], $2::bigint[]) AS d(id, up_to),
                     LATERAL (SELECT ctid FROM inbox WHERE instance_id = d.id AND seq <= d.up_to OFFSET 0) AS b))").await?,
            clear_inbox: c.prepare("DELETE FROM inbox WHERE instance_id = $1").await?,
            put_activities: c.prepare("INSERT INTO activities (key, instance_id, record, part)
                 SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bytea[], $4::int[])
                 ON CONFLICT (key) DO UPDATE SET instance_id = EXCLUDED.instance_id, record = EXCLUDED.record,
                     part = EXCLUDED.part").await?,
            delete_activities: c.prepare("DELETE FROM activities WHERE key = ANY($1::bigint[])").await?,
            put_timers: c.prepare("INSERT INTO timers (key, instance_id, record, part)
                 SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bytea[], $4::int[])
                 ON CONFLICT (key) DO UPDATE SET instance_id = EXCLUDED.instance_id, record = EXCLUDED.record,
                     part = EXCLUDED.part").await?,
            delete_timers: c.prepare("DELETE FROM timers WHERE key = ANY($1::bigint[])").await?,
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
            put_messages: c.prepare("INSERT INTO messages (part, payload)
                 SELECT p, b FROM UNNEST($1::int[], $2::bytea[]) WITH ORDINALITY AS t(p, b, n) ORDER BY n").await?,
            delete_messages: c.prepare("DELETE FROM messages WHERE id = ANY($1)").await?,
            notify: c.prepare("SELECT pg_notify($1, $2)").await?,
            mark_commits: c.prepare("INSERT INTO commit_marks (part, writer, seq)
                 SELECT * FROM UNNEST($1::int[], $2::bigint[], $3::bigint[])
                 ON CONFLICT (part) DO UPDATE SET writer = EXCLUDED.writer, seq = EXCLUDED.seq").await?,
            delete_all: {
                let mut all = Vec::new();
                for statement in [
                    "DELETE FROM history WHERE instance_id IN (SELECT id FROM instances WHERE part = $1)",
                    "DELETE FROM inbox WHERE instance_id IN (SELECT id FROM instances WHERE part = $1)",
                    "DELETE FROM activities WHERE part = $1",
                    "DELETE FROM timers WHERE part = $1",
                    "DELETE FROM instances WHERE part = $1",
                    "DELETE FROM messages WHERE part = $1",
                ] {
                    all.push(c.prepare(statement).await?);
                }
                all
            },
            delete_entities: vec![
                c.prepare("DELETE FROM entities").await?,
                c.prepare("DELETE FROM entity_ops").await?,
                c.prepare("DELETE FROM lock_requests").await?,
            ],
        })
    }

    /// The call that records a commit's marks: per partition, (partition, writer, last batch).
    pub(super) fn marks(&self, marks: &[(u32, i64, u64)]) -> Call {
        let parts: Vec<i32> = marks
            .iter()
            .map(|m| i32::try_from(m.0).unwrap_or(i32::MAX))
            .collect();
        let writers: Vec<i64> = marks.iter().map(|m| m.1).collect();
        let seqs: Vec<i64> = marks.iter().map(|m| key(m.2)).collect();
        Call::new(
            &self.mark_commits,
            vec![Box::new(parts), Box::new(writers), Box::new(seqs)],
        )
    }

    /// Marks partition `part` as written by `writer` from now on (no batch of it yet).
    pub(super) async fn mark_open(
        &self,
        client: &Client,
        part: u32,
        writer: i64,
    ) -> Result<(), StorageError> {
        let call = self.marks(&[(part, writer, 0)]);
        client.execute(&call.stmt, &call.params()).await?;
        Ok(())
    }

    /// The commit marks of partitions: partition -> (writer, last batch).
    pub(super) async fn read_marks(
        &self,
        client: &Client,
        parts: &[u32],
    ) -> Result<BTreeMap<u32, (i64, u64)>, StorageError> {
        let parts: Vec<i32> = parts
            .iter()
            .map(|p| i32::try_from(*p).unwrap_or(i32::MAX))
            .collect();
        let rows = client
            .query(
                "SELECT part, writer, seq FROM commit_marks WHERE part = ANY($1)",
                &[&parts],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let part: i32 = row.get(0);
                let seq: i64 = row.get(2);
                (
                    u32::try_from(part).unwrap_or(u32::MAX),
                    (row.get(1), u64::try_from(seq).unwrap_or(0)),
                )
            })
            .collect())
    }

    /// The `part` column of a row of instance (or entity) `id`.
    fn part_of(&self, id: &str) -> i32 {
        i32::try_from(partition_of(id, PARTITIONS)).unwrap_or(0)
    }

    /// The notifications that wake the partitions a commit sent messages to (one each).
    fn notifications(&self, ops: &[Tagged<'_>], out: &mut Vec<Call>) {
        let mut parts: Vec<u32> = ops
            .iter()
            .filter_map(|t| match t.op {
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

    /// The calls of a group commit's writes, in one transaction's order, then the
    /// notifications. Writes to different tables commute (no constraint or trigger links
    /// them), so each table's writes are gathered, in their order, between the writes that
    /// change several tables; a run of the same kind of write then becomes one statement over
    /// arrays, unless it would change a row twice. A commit of many steps so costs a handful of
    /// statements instead of several per step.
    pub(super) fn transaction(&self, ops: &[Tagged<'_>]) -> Vec<Call> {
        let mut out = Vec::new();
        for step in plan(ops) {
            match step {
                Step::One(t) => self.calls(t, &mut out),
                Step::Run(kind, ops) => {
                    let mut run = Run::new(kind);
                    for op in ops {
                        run.add(op, self);
                    }
                    out.push(run.call(self));
                }
            }
        }
        self.notifications(ops, &mut out);
        out
    }

    /// The calls of one write on its own, appended to `out`.
    fn calls(&self, Tagged { part, op }: Tagged<'_>, out: &mut Vec<Call>) {
        if let Some(kind) = RunKind::of(op) {
            let mut run = Run::new(kind);
            run.add(op, self);
            out.push(run.call(self));
            return;
        }
        match op {
            WriteOp::DeleteInstance(id) => {
                for stmt in &self.delete_instance {
                    out.push(Call::new(stmt, vec![Box::new(id.clone())]));
                }
            }
            WriteOp::ReplaceHistory {
                instance_id,
                events,
            } => {
                out.push(Call::new(
                    &self.delete_history,
                    vec![Box::new(instance_id.clone())],
                ));
                let mut run = Run::new(RunKind::History);
                run.add_history(instance_id, 0, events);
                out.push(run.call(self));
            }
            WriteOp::ClearInbox(id) => {
                out.push(Call::new(&self.clear_inbox, vec![Box::new(id.clone())]));
            }
            WriteOp::DeleteAll => {
                let index = i32::try_from(part).unwrap_or(0);
                for stmt in &self.delete_all {
                    out.push(Call::new(stmt, vec![Box::new(index)]));
                }
                if part == ENTITY_PARTITION {
                    for stmt in &self.delete_entities {
                        out.push(Call::new(stmt, Vec::new()));
                    }
                }
            }
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
}

/// One statement (or, for a write that changes several tables, a few) of a transaction.
#[derive(Debug)]
enum Step<'a> {
    One(Tagged<'a>),
    /// Writes of one kind, none changing a row another changes: one statement over arrays.
    Run(RunKind, Vec<&'a WriteOp>),
}

/// The statements of a group commit's writes (see [`Statements::transaction`]).
fn plan<'a>(ops: &[Tagged<'a>]) -> Vec<Step<'a>> {
    let mut steps = Vec::new();
    let mut by_table: BTreeMap<Table, Vec<Tagged<'a>>> = BTreeMap::new();
    for t in ops {
        match Table::of(t.op) {
            Some(table) => by_table.entry(table).or_default().push(*t),
            None => {
                runs(std::mem::take(&mut by_table), &mut steps);
                steps.push(Step::One(*t));
            }
        }
    }
    runs(by_table, &mut steps);
    steps
}

/// Each table's writes in order, consecutive ones of a kind joined while no row repeats.
fn runs<'a>(by_table: BTreeMap<Table, Vec<Tagged<'a>>>, steps: &mut Vec<Step<'a>>) {
    for ops in by_table.into_values() {
        let mut rows: HashSet<(&str, i64)> = HashSet::new();
        for t in ops {
            let op = t.op;
            let Some(kind) = RunKind::of(op) else {
                steps.push(Step::One(t));
                continue;
            };
            let keys = row_keys(op);
            match steps.last_mut() {
                Some(Step::Run(last, run))
                    if *last == kind && keys.iter().all(|k| !rows.contains(k)) =>
                {
                    run.push(op);
                }
                _ => {
                    rows.clear();
                    steps.push(Step::Run(kind, vec![op]));
                }
            }
            rows.extend(keys);
        }
    }
}

/// The tables written, in the order their writes are sent.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Table {
    Instances,
    History,
    Inbox,
    Activities,
    Timers,
    Messages,
    Entities,
    EntityOps,
    LockRequests,
}

impl Table {
    /// The one table `op` writes; `None` when it writes several.
    fn of(op: &WriteOp) -> Option<Self> {
        Some(match op {
            WriteOp::PutInstance(_) => Self::Instances,
            WriteOp::AppendHistory { .. } | WriteOp::ReplaceHistory { .. } => Self::History,
            WriteOp::PutInbox { .. } | WriteOp::DeleteInbox { .. } | WriteOp::ClearInbox(_) => {
                Self::Inbox
            }
            WriteOp::PutActivity(_) | WriteOp::DeleteActivity(_) => Self::Activities,
            WriteOp::PutTimer(_) | WriteOp::DeleteTimer(_) => Self::Timers,
            WriteOp::PutMessage { .. } | WriteOp::DeleteMessages(_) => Self::Messages,
            WriteOp::PutEntity(_) => Self::Entities,
            WriteOp::PutEntityOp { .. } | WriteOp::DeleteEntityOps { .. } => Self::EntityOps,
            WriteOp::PutLockRequest(_) | WriteOp::DeleteLockRequest(_) => Self::LockRequests,
            _ => return None,
        })
    }
}

/// The kinds of write a run of which is one statement over arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunKind {
    Instances,
    History,
    Inbox,
    DeleteInbox,
    Activities,
    DeleteActivities,
    Timers,
    DeleteTimers,
    Messages,
}

impl RunKind {
    fn of(op: &WriteOp) -> Option<Self> {
        Some(match op {
            WriteOp::PutInstance(_) => Self::Instances,
            WriteOp::AppendHistory { .. } => Self::History,
            WriteOp::PutInbox { .. } => Self::Inbox,
            WriteOp::DeleteInbox { .. } => Self::DeleteInbox,
            WriteOp::PutActivity(_) => Self::Activities,
            WriteOp::DeleteActivity(_) => Self::DeleteActivities,
            WriteOp::PutTimer(_) => Self::Timers,
            WriteOp::DeleteTimer(_) => Self::DeleteTimers,
            WriteOp::PutMessage { .. } => Self::Messages,
            _ => return None,
        })
    }
}

/// The rows an upsert changes (one statement may not change a row twice); none for inserts
/// of new rows and deletes.
fn row_keys(op: &WriteOp) -> Vec<(&str, i64)> {
    match op {
        WriteOp::PutInstance(rec) => vec![(rec.instance_id.as_str(), 0)],
        WriteOp::AppendHistory {
            instance_id,
            start_index,
            events,
        } => (0..events.len())
            .map(|i| (instance_id.as_str(), history_index(*start_index, i)))
            .collect(),
        WriteOp::PutInbox {
            instance_id, seq, ..
        } => vec![(instance_id.as_str(), key(*seq))],
        WriteOp::PutActivity(rec) => vec![("", key(rec.key))],
        WriteOp::PutTimer(rec) => vec![("", key(rec.key))],
        _ => Vec::new(),
    }
}

fn history_index(start: u64, offset: usize) -> i64 {
    key(start).saturating_add(i64::try_from(offset).unwrap_or(i64::MAX))
}

/// The id of the instance an activity belongs to.
fn activity_instance(rec: &crate::storage::ActivityRecord) -> String {
    rec.request
        .as_ref()
        .and_then(|r| r.orchestration_instance.as_ref())
        .map(|i| i.instance_id.clone())
        .unwrap_or_default()
}

/// A run of writes of one kind, gathered as the columns of one statement.
struct Run {
    kind: RunKind,
    ids: Vec<String>,
    keys: Vec<i64>,
    blobs: Vec<Vec<u8>>,
    statuses: Vec<i64>,
    created: Vec<i64>,
    completed: Vec<Option<i64>>,
    parts: Vec<i32>,
}

impl Run {
    fn new(kind: RunKind) -> Self {
        Self {
            kind,
            ids: Vec::new(),
            keys: Vec::new(),
            blobs: Vec::new(),
            statuses: Vec::new(),
            created: Vec::new(),
            completed: Vec::new(),
            parts: Vec::new(),
        }
    }

    fn add(&mut self, op: &WriteOp, st: &Statements) {
        match op {
            WriteOp::PutInstance(rec) => {
                self.ids.push(rec.instance_id.clone());
                self.blobs.push(rec.encode_to_vec());
                self.statuses.push(i64::from(rec.status));
                self.created.push(rec.created_ms);
                self.completed.push(rec.completed_ms);
                self.parts.push(st.part_of(&rec.instance_id));
            }
            WriteOp::AppendHistory {
                instance_id,
                start_index,
                events,
            } => self.add_history(instance_id, *start_index, events),
            WriteOp::PutInbox {
                instance_id,
                seq,
                event,
            } => {
                self.ids.push(instance_id.clone());
                self.keys.push(key(*seq));
                self.blobs.push(event.clone());
            }
            WriteOp::PutActivity(rec) => {
                let instance_id = activity_instance(rec);
                self.parts.push(st.part_of(&instance_id));
                self.ids.push(instance_id);
                self.keys.push(key(rec.key));
                self.blobs.push(rec.encode_to_vec());
            }
            WriteOp::PutTimer(rec) => {
                self.parts.push(st.part_of(&rec.instance_id));
                self.ids.push(rec.instance_id.clone());
                self.keys.push(key(rec.key));
                self.blobs.push(rec.encode_to_vec());
            }
            WriteOp::DeleteInbox { instance_id, up_to } => {
                self.ids.push(instance_id.clone());
                self.keys.push(key(*up_to));
            }
            WriteOp::DeleteActivity(k) | WriteOp::DeleteTimer(k) => self.keys.push(key(*k)),
            WriteOp::PutMessage { part, payload } => {
                self.parts.push(i32::try_from(*part).unwrap_or(0));
                self.blobs.push(payload.clone());
            }
            _ => {}
        }
    }

    fn add_history(&mut self, instance_id: &str, start_index: u64, events: &[Vec<u8>]) {
        for (i, event) in events.iter().enumerate() {
            self.ids.push(instance_id.to_owned());
            self.keys.push(history_index(start_index, i));
            self.blobs.push(event.clone());
        }
    }

    /// The one statement that makes the run's writes.
    fn call(self, st: &Statements) -> Call {
        let Self {
            kind,
            ids,
            keys,
            blobs,
            statuses,
            created,
            completed,
            parts,
        } = self;
        match kind {
            RunKind::Instances => Call::new(
                &st.put_instances,
                vec![
                    Box::new(ids),
                    Box::new(blobs),
                    Box::new(statuses),
                    Box::new(created),
                    Box::new(completed),
                    Box::new(parts),
                ],
            ),
            RunKind::History => Call::new(
                &st.append_history,
                vec![Box::new(ids), Box::new(keys), Box::new(blobs)],
            ),
            RunKind::Inbox => Call::new(
                &st.put_inbox,
                vec![Box::new(ids), Box::new(keys), Box::new(blobs)],
            ),
            RunKind::DeleteInbox => Call::new(
                &st.delete_inboxes_up_to,
                vec![Box::new(ids), Box::new(keys)],
            ),
            RunKind::Activities => Call::new(
                &st.put_activities,
                vec![
                    Box::new(keys),
                    Box::new(ids),
                    Box::new(blobs),
                    Box::new(parts),
                ],
            ),
            RunKind::Timers => Call::new(
                &st.put_timers,
                vec![
                    Box::new(keys),
                    Box::new(ids),
                    Box::new(blobs),
                    Box::new(parts),
                ],
            ),
            RunKind::DeleteActivities => Call::new(&st.delete_activities, vec![Box::new(keys)]),
            RunKind::DeleteTimers => Call::new(&st.delete_timers, vec![Box::new(keys)]),
            RunKind::Messages => {
                Call::new(&st.put_messages, vec![Box::new(parts), Box::new(blobs)])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{ActivityRecord, InstanceRecord};

    fn instance(id: &str) -> WriteOp {
        WriteOp::PutInstance(Box::new(InstanceRecord {
            instance_id: id.into(),
            ..Default::default()
        }))
    }

    fn inbox(id: &str, seq: u64) -> WriteOp {
        WriteOp::PutInbox {
            instance_id: id.into(),
            seq,
            event: Vec::new(),
        }
    }

    fn history(id: &str, start_index: u64) -> WriteOp {
        WriteOp::AppendHistory {
            instance_id: id.into(),
            start_index,
            events: vec![Vec::new(), Vec::new()],
        }
    }

    fn activity(key: u64) -> WriteOp {
        WriteOp::PutActivity(Box::new(ActivityRecord { key, request: None }))
    }

    /// The plan as (kind or write, how many writes) in order.
    fn shape(ops: &[WriteOp]) -> Vec<String> {
        let tagged: Vec<Tagged<'_>> = ops.iter().map(|op| Tagged { part: 0, op }).collect();
        plan(&tagged)
            .iter()
            .map(|step| match step {
                Step::One(t) => format!("{:?}", t.op)
                    .chars()
                    .take_while(|c| c.is_alphanumeric())
                    .collect(),
                Step::Run(kind, ops) => format!("{kind:?}x{}", ops.len()),
            })
            .collect()
    }

    #[test]
    fn the_steps_of_a_commit_become_one_statement_per_table_and_kind() {
        let ops = [
            inbox("a", 1),
            history("a", 0),
            instance("a"),
            activity(1),
            history("b", 4),
            instance("b"),
            activity(2),
            WriteOp::DeleteActivity(7),
            WriteOp::DeleteActivity(8),
            WriteOp::DeleteInbox {
                instance_id: "b".into(),
                up_to: 3,
            },
            WriteOp::DeleteInbox {
                instance_id: "c".into(),
                up_to: 2,
            },
        ];
        assert_eq!(
            shape(&ops),
            [
                "Instancesx2",
                "Historyx2",
                "Inboxx1",
                "DeleteInboxx2",
                "Activitiesx2",
                "DeleteActivitiesx2"
            ]
        );
    }

    #[test]
    fn a_row_changed_twice_splits_the_run() {
        let ops = [
            inbox("a", 1),
            inbox("b", 1),
            inbox("a", 1),
            history("a", 0),
            history("a", 1),
        ];
        assert_eq!(
            shape(&ops),
            ["Historyx1", "Historyx1", "Inboxx2", "Inboxx1"]
        );
    }

    #[test]
    fn writes_to_one_table_and_writes_to_several_keep_their_order() {
        let ops = [
            activity(1),
            WriteOp::DeleteActivity(1),
            activity(1),
            instance("a"),
            WriteOp::DeleteInstance("a".into()),
            instance("a"),
            inbox("a", 1),
            WriteOp::DeleteInbox {
                instance_id: "a".into(),
                up_to: 1,
            },
            inbox("a", 2),
        ];
        assert_eq!(
            shape(&ops),
            [
                "Instancesx1",
                "Activitiesx1",
                "DeleteActivitiesx1",
                "Activitiesx1",
                "DeleteInstance",
                "Instancesx1",
                "Inboxx1",
                "DeleteInboxx1",
                "Inboxx1",
            ]
        );
    }
}
