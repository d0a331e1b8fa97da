//! Reads: the active work at start, and finished instances on demand.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, Row, Statement};
use prost::Message;

use super::super::sql::{self, Param};
use super::super::{
    CompletedQuery, InstanceQuery, InstanceRecord, LoadedState, LockRequestRecord,
    MESSAGES_PER_READ, Sequenced, StorageError,
};
use crate::partitions::ENTITY_PARTITION;
use crate::proto::HistoryEvent;

/// The statuses of active instances (RUNNING, CONTINUED_AS_NEW, PENDING, SUSPENDED).
const ACTIVE_SQL: &str = "(0, 2, 6, 7)";

/// The reader's connection with the statements it prepared: each read is then one round trip,
/// parsed and planned by the server once.
pub(super) struct ReaderConnection {
    client: Client,
    prepared: HashMap<String, Statement>,
}

/// At most this many prepared statements are kept (queries built from filters vary).
const PREPARED_KEPT: usize = 64;

impl ReaderConnection {
    pub(super) fn new(client: Client) -> Self {
        Self {
            client,
            prepared: HashMap::new(),
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        if self.prepared.len() >= PREPARED_KEPT {
            self.prepared.clear();
        }
        self.prepared.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        let rows = self.client.query(&statement, params);
        self.forget_failed(sql, rows)
    }

    /// Forgets the statement of a failed read (the schema may have changed under it).
    fn forget_failed<T>(
        &mut self,
        sql: &str,
        result: Result<T, postgres::Error>,
    ) -> Result<T, postgres::Error> {
        if result.is_err() {
            self.prepared.remove(sql);
        }
        result
    }

    fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        let row = self.client.query_opt(&statement, params);
        self.forget_failed(sql, row)
    }
}

fn seq(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Everything of partition `part` but finished instances (entities and lock requests are all
/// in the entity partition).
pub(super) fn load_active(
    c: &mut ReaderConnection,
    part: u32,
) -> Result<LoadedState, StorageError> {
    let p = i32::try_from(part).unwrap_or(i32::MAX);
    let mut history: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for row in c.query(
        &format!(
            "SELECT h.instance_id, h.event FROM instances i JOIN history h ON h.instance_id = i.id
             WHERE i.part = $1 AND i.status IN {ACTIVE_SQL} ORDER BY h.instance_id, h.idx"
        ),
        &[&p],
    )? {
        history.entry(row.get(0)).or_default().push(row.get(1));
    }
    let entities = part == ENTITY_PARTITION;
    let mut lock_requests: Vec<LockRequestRecord> = if entities {
        records(c, "SELECT record FROM lock_requests", &[])?
    } else {
        Vec::new()
    };
    lock_requests.sort_by_key(|r| r.order);
    Ok(LoadedState {
        instances: records(
            c,
            &format!("SELECT record FROM instances WHERE part = $1 AND status IN {ACTIVE_SQL}"),
            &[&p],
        )?,
        history,
        inbox: sequenced(
            c,
            &format!(
                "SELECT b.instance_id, b.seq, b.event FROM instances i JOIN inbox b ON b.instance_id = i.id
                 WHERE i.part = $1 AND i.status IN {ACTIVE_SQL} ORDER BY b.instance_id, b.seq"
            ),
            &[&p],
        )?,
        activities: records(
            c,
            "SELECT record FROM activities WHERE part = $1 ORDER BY key",
            &[&p],
        )?,
        timers: records(
            c,
            "SELECT record FROM timers WHERE part = $1 ORDER BY key",
            &[&p],
        )?,
        entities: if entities {
            records(c, "SELECT record FROM entities", &[])?
        } else {
            Vec::new()
        },
        entity_ops: if entities {
            sequenced(
                c,
                "SELECT entity_id, seq, event FROM entity_ops ORDER BY entity_id, seq",
                &[],
            )?
        } else {
            Sequenced::new()
        },
        lock_requests,
    })
}

/// The oldest messages for partition `part`, as (id, payload).
pub(super) fn messages(
    c: &mut ReaderConnection,
    part: u32,
) -> Result<Vec<(i64, Vec<u8>)>, StorageError> {
    let p = i32::try_from(part).unwrap_or(i32::MAX);
    Ok(c.query(
        "SELECT id, payload FROM messages WHERE part = $1 ORDER BY id LIMIT $2",
        &[&p, &(MESSAGES_PER_READ as i64)],
    )?
    .into_iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect())
}

/// The protobuf records of a one-column query.
fn records<T: Message + Default>(
    c: &mut ReaderConnection,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<T>, StorageError> {
    let mut out = Vec::new();
    for row in c.query(sql, params)? {
        let bytes: Vec<u8> = row.get(0);
        out.push(T::decode(bytes.as_slice())?);
    }
    Ok(out)
}

/// (owner id, seq, event) rows grouped by owner, in query order.
fn sequenced(
    c: &mut ReaderConnection,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Sequenced, StorageError> {
    let mut out = Sequenced::new();
    for row in c.query(sql, params)? {
        out.entry(row.get(0))
            .or_default()
            .push((seq(row.get(1)), row.get(2)));
    }
    Ok(out)
}

pub(super) fn instance(
    c: &mut ReaderConnection,
    id: &str,
) -> Result<Option<InstanceRecord>, StorageError> {
    match c.query_opt("SELECT record FROM instances WHERE id = $1", &[&id])? {
        Some(row) => {
            let bytes: Vec<u8> = row.get(0);
            Ok(Some(InstanceRecord::decode(bytes.as_slice())?))
        }
        None => Ok(None),
    }
}

pub(super) fn history(
    c: &mut ReaderConnection,
    id: &str,
) -> Result<Vec<HistoryEvent>, StorageError> {
    let rows = c.query(
        "SELECT event FROM history WHERE instance_id = $1 ORDER BY idx",
        &[&id],
    )?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let bytes: Vec<u8> = row.get(0);
        events.push(HistoryEvent::decode(bytes.as_slice())?);
    }
    Ok(events)
}

/// PostgreSQL's spelling of the n-th placeholder.
fn placeholder(n: usize) -> String {
    format!("${n}")
}

fn values(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| match p {
            Param::Int(i) => i as &(dyn ToSql + Sync),
            Param::Text(t) => t as &(dyn ToSql + Sync),
        })
        .collect()
}

pub(super) fn query(
    c: &mut ReaderConnection,
    q: &InstanceQuery,
) -> Result<Vec<InstanceRecord>, StorageError> {
    let (sql, params) = sql::instance_query(q, placeholder);
    let mut out = Vec::new();
    for row in c.query(&sql, &values(&params))? {
        let bytes: Vec<u8> = row.get(0);
        out.push(InstanceRecord::decode(bytes.as_slice())?);
    }
    Ok(out)
}

pub(super) fn completed(
    c: &mut ReaderConnection,
    q: &CompletedQuery,
) -> Result<Vec<(i64, String)>, StorageError> {
    let (sql, params) = sql::completed_query(q, placeholder);
    Ok(c.query(&sql, &values(&params))?
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}
