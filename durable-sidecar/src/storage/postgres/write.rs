//! Applying a batch's writes inside the writer's transaction, with statements prepared once.

use postgres::{Client, Statement, Transaction};
use prost::Message;

use super::super::{ALL_TABLES, StorageError, WriteOp};

fn key(k: u64) -> i64 {
    i64::try_from(k).unwrap_or(i64::MAX)
}

/// The writer's prepared statements.
pub(super) struct Statements {
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
}

impl Statements {
    pub(super) fn prepare(c: &mut Client) -> Result<Self, StorageError> {
        let mut p = |sql: &str| c.prepare(sql);
        Ok(Self {
            put_instance: p(
                "INSERT INTO instances (id, record, status, created_ms, completed_ms)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record, status = EXCLUDED.status,
                     created_ms = EXCLUDED.created_ms, completed_ms = EXCLUDED.completed_ms",
            )?,
            delete_instance: vec![
                p("DELETE FROM instances WHERE id = $1")?,
                p("DELETE FROM history WHERE instance_id = $1")?,
                p("DELETE FROM inbox WHERE instance_id = $1")?,
                p("DELETE FROM activities WHERE instance_id = $1")?,
                p("DELETE FROM timers WHERE instance_id = $1")?,
            ],
            append_history: p(
                "INSERT INTO history (instance_id, idx, event)
                 SELECT $1, i, e FROM UNNEST($2::bigint[], $3::bytea[]) AS t(i, e)
                 ON CONFLICT (instance_id, idx) DO UPDATE SET event = EXCLUDED.event",
            )?,
            delete_history: p("DELETE FROM history WHERE instance_id = $1")?,
            put_inbox: p("INSERT INTO inbox (instance_id, seq, event) VALUES ($1, $2, $3)
                 ON CONFLICT (instance_id, seq) DO UPDATE SET event = EXCLUDED.event")?,
            delete_inbox_up_to: p("DELETE FROM inbox WHERE instance_id = $1 AND seq <= $2")?,
            clear_inbox: p("DELETE FROM inbox WHERE instance_id = $1")?,
            put_activity: p("INSERT INTO activities (key, instance_id, record) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO UPDATE SET instance_id = EXCLUDED.instance_id, record = EXCLUDED.record")?,
            delete_activity: p("DELETE FROM activities WHERE key = $1")?,
            put_timer: p("INSERT INTO timers (key, instance_id, record) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO UPDATE SET instance_id = EXCLUDED.instance_id, record = EXCLUDED.record")?,
            delete_timer: p("DELETE FROM timers WHERE key = $1")?,
            put_entity: p("INSERT INTO entities (id, record) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record")?,
            delete_entity: vec![
                p("DELETE FROM entities WHERE id = $1")?,
                p("DELETE FROM entity_ops WHERE entity_id = $1")?,
            ],
            put_entity_op: p("INSERT INTO entity_ops (entity_id, seq, event) VALUES ($1, $2, $3)
                 ON CONFLICT (entity_id, seq) DO UPDATE SET event = EXCLUDED.event")?,
            delete_entity_ops: p("DELETE FROM entity_ops WHERE entity_id = $1 AND seq = ANY($2)")?,
            put_lock_request: p("INSERT INTO lock_requests (id, record) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record")?,
            delete_lock_request: p("DELETE FROM lock_requests WHERE id = $1")?,
        })
    }

    /// Applies one write.
    pub(super) fn apply(&self, t: &mut Transaction<'_>, op: &WriteOp) -> Result<(), StorageError> {
        match op {
            WriteOp::PutInstance(rec) => {
                t.execute(
                    &self.put_instance,
                    &[
                        &rec.instance_id,
                        &rec.encode_to_vec(),
                        &i64::from(rec.status),
                        &rec.created_ms,
                        &rec.completed_ms,
                    ],
                )?;
            }
            WriteOp::DeleteInstance(id) => {
                for stmt in &self.delete_instance {
                    t.execute(stmt, &[id])?;
                }
            }
            WriteOp::AppendHistory {
                instance_id,
                start_index,
                events,
            } => self.append_history(t, instance_id, *start_index, events)?,
            WriteOp::ReplaceHistory {
                instance_id,
                events,
            } => {
                t.execute(&self.delete_history, &[instance_id])?;
                self.append_history(t, instance_id, 0, events)?;
            }
            WriteOp::PutInbox {
                instance_id,
                seq,
                event,
            } => {
                t.execute(&self.put_inbox, &[instance_id, &key(*seq), event])?;
            }
            WriteOp::DeleteInbox { instance_id, up_to } => {
                t.execute(&self.delete_inbox_up_to, &[instance_id, &key(*up_to)])?;
            }
            WriteOp::ClearInbox(id) => {
                t.execute(&self.clear_inbox, &[id])?;
            }
            WriteOp::PutActivity(rec) => {
                let instance_id = rec
                    .request
                    .as_ref()
                    .and_then(|r| r.orchestration_instance.as_ref())
                    .map(|i| i.instance_id.clone())
                    .unwrap_or_default();
                t.execute(
                    &self.put_activity,
                    &[&key(rec.key), &instance_id, &rec.encode_to_vec()],
                )?;
            }
            WriteOp::DeleteActivity(k) => {
                t.execute(&self.delete_activity, &[&key(*k)])?;
            }
            WriteOp::PutTimer(rec) => {
                t.execute(
                    &self.put_timer,
                    &[&key(rec.key), &rec.instance_id, &rec.encode_to_vec()],
                )?;
            }
            WriteOp::DeleteTimer(k) => {
                t.execute(&self.delete_timer, &[&key(*k)])?;
            }
            WriteOp::DeleteAll => {
                for table in ALL_TABLES {
                    t.batch_execute(&format!("DELETE FROM {table}"))?;
                }
            }
            _ => self.apply_entity(t, op)?,
        }
        Ok(())
    }

    fn apply_entity(&self, t: &mut Transaction<'_>, op: &WriteOp) -> Result<(), StorageError> {
        match op {
            WriteOp::PutEntity(rec) => {
                t.execute(&self.put_entity, &[&rec.id, &rec.encode_to_vec()])?;
            }
            WriteOp::DeleteEntity(id) => {
                for stmt in &self.delete_entity {
                    t.execute(stmt, &[id])?;
                }
            }
            WriteOp::PutEntityOp {
                entity_id,
                seq,
                event,
            } => {
                t.execute(&self.put_entity_op, &[entity_id, &key(*seq), event])?;
            }
            WriteOp::DeleteEntityOps { entity_id, seqs } => {
                let seqs: Vec<i64> = seqs.iter().map(|s| key(*s)).collect();
                t.execute(&self.delete_entity_ops, &[entity_id, &seqs])?;
            }
            WriteOp::PutLockRequest(rec) => {
                t.execute(
                    &self.put_lock_request,
                    &[&rec.critical_section_id, &rec.encode_to_vec()],
                )?;
            }
            WriteOp::DeleteLockRequest(id) => {
                t.execute(&self.delete_lock_request, &[id])?;
            }
            // Orchestration writes: `apply` handles them and never sends them here.
            _ => {}
        }
        Ok(())
    }

    fn append_history(
        &self,
        t: &mut Transaction<'_>,
        instance_id: &str,
        start_index: u64,
        events: &[Vec<u8>],
    ) -> Result<(), StorageError> {
        if events.is_empty() {
            return Ok(());
        }
        let first = key(start_index);
        let indexes: Vec<i64> = (0..events.len())
            .map(|i| first.saturating_add(i64::try_from(i).unwrap_or(i64::MAX)))
            .collect();
        t.execute(&self.append_history, &[&instance_id, &indexes, &events])?;
        Ok(())
    }
}
