//! Reads: the active work at start, and finished instances on demand.

use std::collections::HashMap;

use prost::Message;
use rusqlite::types::Value;
use rusqlite::{Connection, params};

use super::super::sql::{self, Param};
use super::super::{
    CompletedQuery, InstanceQuery, InstanceRecord, LoadedState, LockRequestRecord, Sequenced,
    StorageError,
};
use super::ACTIVE_SQL;
use crate::proto::HistoryEvent;

/// Everything but finished instances.
pub(super) fn load_active(conn: &Connection) -> Result<LoadedState, StorageError> {
    let active = format!("status IN {ACTIVE_SQL}");
    let mut history: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    let mut stmt = conn.prepare(&format!(
        "SELECT h.instance_id, h.event FROM instances i JOIN history h ON h.instance_id = i.id
         WHERE i.{active} ORDER BY h.instance_id, h.idx"
    ))?;
    for row in stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
    })? {
        let (id, ev) = row?;
        history.entry(id).or_default().push(ev);
    }
    let mut lock_requests: Vec<LockRequestRecord> =
        records(conn, "SELECT record FROM lock_requests")?;
    lock_requests.sort_by_key(|r| r.order);
    Ok(LoadedState {
        instances: records(conn, &format!("SELECT record FROM instances WHERE {active}"))?,
        history,
        inbox: sequenced(
            conn,
            &format!(
                "SELECT b.instance_id, b.seq, b.event FROM instances i JOIN inbox b ON b.instance_id = i.id
                 WHERE i.{active} ORDER BY b.instance_id, b.seq"
            ),
        )?,
        activities: records(conn, "SELECT record FROM activities ORDER BY key")?,
        timers: records(conn, "SELECT record FROM timers ORDER BY key")?,
        entities: records(conn, "SELECT record FROM entities")?,
        entity_ops: sequenced(
            conn,
            "SELECT entity_id, seq, event FROM entity_ops ORDER BY entity_id, seq",
        )?,
        lock_requests,
    })
}

/// The protobuf records of a one-column query.
fn records<T: Message + Default>(conn: &Connection, sql: &str) -> Result<Vec<T>, StorageError> {
    let mut stmt = conn.prepare(sql)?;
    let mut out = Vec::new();
    for row in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))? {
        out.push(T::decode(row?.as_slice())?);
    }
    Ok(out)
}

/// (owner id, seq, event) rows grouped by owner, in query order.
fn sequenced(conn: &Connection, sql: &str) -> Result<Sequenced, StorageError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    let mut out = Sequenced::new();
    for row in rows {
        let (id, seq, event) = row?;
        out.entry(id)
            .or_default()
            .push((u64::try_from(seq).unwrap_or(0), event));
    }
    Ok(out)
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
