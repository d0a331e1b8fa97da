//! Reads: the active work at start, and finished instances on demand.

use prost::Message;
use rusqlite::types::Value;
use rusqlite::{Connection, params};

use super::super::sql::{self, Param};
use super::super::{
    ActivityRecord, CompletedQuery, EntityRecord, InstanceQuery, InstanceRecord, LoadedState,
    LockRequestRecord, StorageError, TimerRecord,
};
use super::ACTIVE_SQL;
use crate::proto::HistoryEvent;

/// Everything but finished instances.
pub(super) fn load_active(conn: &Connection) -> Result<LoadedState, StorageError> {
    let mut state = LoadedState::default();
    let active = format!("status IN {ACTIVE_SQL}");
    {
        let mut stmt = conn.prepare(&format!("SELECT record FROM instances WHERE {active}"))?;
        for row in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))? {
            state
                .instances
                .push(InstanceRecord::decode(row?.as_slice())?);
        }
    }
    {
        let mut stmt = conn.prepare(&format!(
            "SELECT h.instance_id, h.event FROM instances i JOIN history h ON h.instance_id = i.id
             WHERE i.{active} ORDER BY h.instance_id, h.idx"
        ))?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        for row in rows {
            let (id, ev) = row?;
            state.history.entry(id).or_default().push(ev);
        }
    }
    {
        let mut stmt = conn.prepare(&format!(
            "SELECT b.instance_id, b.seq, b.event FROM instances i JOIN inbox b ON b.instance_id = i.id
             WHERE i.{active} ORDER BY b.instance_id, b.seq"
        ))?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        for row in rows {
            let (id, seq, ev) = row?;
            state
                .inbox
                .entry(id)
                .or_default()
                .push((u64::try_from(seq).unwrap_or(0), ev));
        }
    }
    {
        let mut stmt = conn.prepare("SELECT record FROM activities ORDER BY key")?;
        for row in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))? {
            state
                .activities
                .push(ActivityRecord::decode(row?.as_slice())?);
        }
    }
    {
        let mut stmt = conn.prepare("SELECT record FROM timers ORDER BY key")?;
        for row in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))? {
            state.timers.push(TimerRecord::decode(row?.as_slice())?);
        }
    }
    load_entities(conn, &mut state)?;
    Ok(state)
}

fn load_entities(conn: &Connection, state: &mut LoadedState) -> Result<(), StorageError> {
    let mut stmt = conn.prepare("SELECT record FROM entities")?;
    for row in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))? {
        state.entities.push(EntityRecord::decode(row?.as_slice())?);
    }
    let mut stmt =
        conn.prepare("SELECT entity_id, seq, event FROM entity_ops ORDER BY entity_id, seq")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    for row in rows {
        let (id, seq, event) = row?;
        state
            .entity_ops
            .entry(id)
            .or_default()
            .push((u64::try_from(seq).unwrap_or(0), event));
    }
    let mut stmt = conn.prepare("SELECT record FROM lock_requests")?;
    for row in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))? {
        state
            .lock_requests
            .push(LockRequestRecord::decode(row?.as_slice())?);
    }
    state.lock_requests.sort_by_key(|r| r.order);
    Ok(())
}

pub(super) fn instance(
    conn: &Connection,
    id: &str,
) -> Result<Option<InstanceRecord>, StorageError> {
    let mut stmt = conn.prepare_cached("SELECT record FROM instances WHERE id = ?1")?;
    let mut rows = stmt.query(params![id])?;
    match rows.next()? {
        Some(row) => Ok(Some(InstanceRecord::decode(
            row.get::<_, Vec<u8>>(0)?.as_slice(),
        )?)),
        None => Ok(None),
    }
}

pub(super) fn history(conn: &Connection, id: &str) -> Result<Vec<HistoryEvent>, StorageError> {
    let mut stmt =
        conn.prepare_cached("SELECT event FROM history WHERE instance_id = ?1 ORDER BY idx")?;
    let rows = stmt.query_map(params![id], |r| r.get::<_, Vec<u8>>(0))?;
    let mut events = Vec::new();
    for row in rows {
        events.push(HistoryEvent::decode(row?.as_slice())?);
    }
    Ok(events)
}

/// SQLite's spelling of the n-th placeholder.
fn placeholder(n: usize) -> String {
    format!("?{n}")
}

fn values(params: Vec<Param>) -> Vec<Value> {
    params
        .into_iter()
        .map(|p| match p {
            Param::Int(i) => Value::Integer(i),
            Param::Text(t) => Value::Text(t),
        })
        .collect()
}

pub(super) fn query(
    conn: &Connection,
    q: &InstanceQuery,
) -> Result<Vec<InstanceRecord>, StorageError> {
    let (sql, params) = sql::instance_query(q, placeholder);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(values(params)), |r| {
        r.get::<_, Vec<u8>>(0)
    })?;
    let mut out = Vec::new();
    for row in rows {
        out.push(InstanceRecord::decode(row?.as_slice())?);
    }
    Ok(out)
}

pub(super) fn completed(
    conn: &Connection,
    q: &CompletedQuery,
) -> Result<Vec<(i64, String)>, StorageError> {
    let (sql, params) = sql::completed_query(q, placeholder);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(values(params)), |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
