//! Applying a batch's writes inside the writer's transaction.

use prost::Message;
use rusqlite::{Connection, params};

use super::super::{ALL_TABLES, StorageError, WriteOp};

/// Applies one write.
pub(super) fn apply(c: &Connection, op: &WriteOp) -> Result<(), StorageError> {
    match op {
        WriteOp::PutInstance(rec) => {
            c.prepare_cached(
                "INSERT OR REPLACE INTO instances (id, record, status, created_ms, completed_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                rec.instance_id,
                rec.encode_to_vec(),
                rec.status,
                rec.created_ms,
                rec.completed_ms
            ])?;
        }
        WriteOp::DeleteInstance(id) => {
            for sql in [
                "DELETE FROM instances WHERE id = ?1",
                "DELETE FROM history WHERE instance_id = ?1",
                "DELETE FROM inbox WHERE instance_id = ?1",
                "DELETE FROM activities WHERE instance_id = ?1",
                "DELETE FROM timers WHERE instance_id = ?1",
            ] {
                c.prepare_cached(sql)?.execute(params![id])?;
            }
        }
        WriteOp::AppendHistory {
            instance_id,
            start_index,
            events,
        } => {
            let mut stmt = c.prepare_cached(
                "INSERT OR REPLACE INTO history (instance_id, idx, event) VALUES (?1, ?2, ?3)",
            )?;
            for (i, ev) in events.iter().enumerate() {
                let idx = i64::try_from(*start_index + i as u64).unwrap_or(i64::MAX);
                stmt.execute(params![instance_id, idx, ev])?;
            }
        }
        WriteOp::ReplaceHistory {
            instance_id,
            events,
        } => {
            c.prepare_cached("DELETE FROM history WHERE instance_id = ?1")?
                .execute(params![instance_id])?;
            let mut stmt = c.prepare_cached(
                "INSERT INTO history (instance_id, idx, event) VALUES (?1, ?2, ?3)",
            )?;
            for (i, ev) in events.iter().enumerate() {
                stmt.execute(params![instance_id, i as i64, ev])?;
            }
        }
        WriteOp::PutInbox {
            instance_id,
            seq,
            event,
        } => {
            c.prepare_cached(
                "INSERT OR REPLACE INTO inbox (instance_id, seq, event) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![instance_id, *seq as i64, event])?;
        }
        WriteOp::DeleteInbox { instance_id, up_to } => {
            c.prepare_cached("DELETE FROM inbox WHERE instance_id = ?1 AND seq <= ?2")?
                .execute(params![instance_id, *up_to as i64])?;
        }
        WriteOp::ClearInbox(id) => {
            c.prepare_cached("DELETE FROM inbox WHERE instance_id = ?1")?
                .execute(params![id])?;
        }
        WriteOp::PutActivity(rec) => {
            let instance_id = rec
                .request
                .as_ref()
                .and_then(|r| r.orchestration_instance.as_ref())
                .map(|i| i.instance_id.clone())
                .unwrap_or_default();
            c.prepare_cached(
                "INSERT OR REPLACE INTO activities (key, instance_id, record) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![rec.key as i64, instance_id, rec.encode_to_vec()])?;
        }
        WriteOp::DeleteActivity(key) => {
            c.prepare_cached("DELETE FROM activities WHERE key = ?1")?
                .execute(params![*key as i64])?;
        }
        WriteOp::PutTimer(rec) => {
            c.prepare_cached(
                "INSERT OR REPLACE INTO timers (key, instance_id, record) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![
                rec.key as i64,
                rec.instance_id,
                rec.encode_to_vec()
            ])?;
        }
        WriteOp::DeleteTimer(key) => {
            c.prepare_cached("DELETE FROM timers WHERE key = ?1")?
                .execute(params![*key as i64])?;
        }
        WriteOp::PutEntity(_)
        | WriteOp::DeleteEntity(_)
        | WriteOp::PutEntityOp { .. }
        | WriteOp::DeleteEntityOps { .. }
        | WriteOp::PutLockRequest(_)
        | WriteOp::DeleteLockRequest(_) => apply_entity(c, op)?,
        // One engine serves a SQLite file: it sends no messages between partitions.
        WriteOp::PutMessage { .. } | WriteOp::DeleteMessages(_) => {}
        WriteOp::DeleteAll => {
            for table in ALL_TABLES {
                c.execute(&format!("DELETE FROM {table}"), [])?;
            }
        }
    }
    Ok(())
}

pub(super) fn apply_entity(c: &Connection, op: &WriteOp) -> Result<(), StorageError> {
    match op {
        WriteOp::PutEntity(rec) => {
            c.prepare_cached("INSERT OR REPLACE INTO entities (id, record) VALUES (?1, ?2)")?
                .execute(params![rec.id, rec.encode_to_vec()])?;
        }
        WriteOp::DeleteEntity(id) => {
            c.prepare_cached("DELETE FROM entities WHERE id = ?1")?
                .execute(params![id])?;
            c.prepare_cached("DELETE FROM entity_ops WHERE entity_id = ?1")?
                .execute(params![id])?;
        }
        WriteOp::PutEntityOp {
            entity_id,
            seq,
            event,
        } => {
            c.prepare_cached(
                "INSERT OR REPLACE INTO entity_ops (entity_id, seq, event) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![entity_id, *seq as i64, event])?;
        }
        WriteOp::DeleteEntityOps { entity_id, seqs } => {
            let mut stmt =
                c.prepare_cached("DELETE FROM entity_ops WHERE entity_id = ?1 AND seq = ?2")?;
            for seq in seqs {
                stmt.execute(params![entity_id, *seq as i64])?;
            }
        }
        WriteOp::PutLockRequest(rec) => {
            c.prepare_cached("INSERT OR REPLACE INTO lock_requests (id, record) VALUES (?1, ?2)")?
                .execute(params![rec.critical_section_id, rec.encode_to_vec()])?;
        }
        WriteOp::DeleteLockRequest(id) => {
            c.prepare_cached("DELETE FROM lock_requests WHERE id = ?1")?
                .execute(params![id])?;
        }
        // Orchestration writes: `apply` handles them and never sends them here.
        _ => {}
    }
    Ok(())
}
