//! The database schema and its migrations (versioned by SQLite's `user_version`).
//!
//! Version 1 gives `instances` the columns queries filter on (status, creation and completion
//! time) with indexes, so start-up reads only active instances and listings cost O(page).

use prost::Message;
use rusqlite::{Connection, params};

use super::super::{InstanceRecord, StorageError};

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY, record BLOB NOT NULL,
    status INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL DEFAULT 0, completed_ms INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL, idx INTEGER NOT NULL, event BLOB NOT NULL,
    PRIMARY KEY (instance_id, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbox (
    instance_id TEXT NOT NULL, seq INTEGER NOT NULL, event BLOB NOT NULL,
    PRIMARY KEY (instance_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS activities (key INTEGER PRIMARY KEY, instance_id TEXT NOT NULL, record BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS activities_by_instance ON activities (instance_id);
CREATE TABLE IF NOT EXISTS timers (key INTEGER PRIMARY KEY, instance_id TEXT NOT NULL, record BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS timers_by_instance ON timers (instance_id);
CREATE TABLE IF NOT EXISTS entities (id TEXT PRIMARY KEY, record BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entity_ops (
    entity_id TEXT NOT NULL, seq INTEGER NOT NULL, event BLOB NOT NULL,
    PRIMARY KEY (entity_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lock_requests (id TEXT PRIMARY KEY, record BLOB NOT NULL) WITHOUT ROWID;
";

const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS instances_by_status ON instances (status);
CREATE INDEX IF NOT EXISTS instances_by_created ON instances (created_ms, id);
CREATE INDEX IF NOT EXISTS instances_by_completed ON instances (completed_ms, id)
    WHERE completed_ms IS NOT NULL;
";

/// The schema version this build writes.
const VERSION: i64 = 1;

/// Creates the tables or migrates an older file to [`VERSION`].
pub(super) fn create_or_migrate(conn: &mut Connection) -> Result<(), StorageError> {
    conn.execute_batch(TABLES)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version < 1 {
        add_query_columns(conn)?;
    }
    conn.execute_batch(INDEXES)?;
    if version < VERSION {
        conn.pragma_update(None, "user_version", VERSION)?;
    }
    Ok(())
}

/// Version 0 kept only (id, record): add the query columns and fill them from the records.
fn add_query_columns(conn: &mut Connection) -> Result<(), StorageError> {
    let txn = conn.transaction()?;
    let has_status = txn
        .prepare("SELECT 1 FROM pragma_table_info('instances') WHERE name = 'status'")?
        .exists([])?;
    if !has_status {
        txn.execute_batch(
            "ALTER TABLE instances ADD COLUMN status INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE instances ADD COLUMN created_ms INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE instances ADD COLUMN completed_ms INTEGER;",
        )?;
        let records: Vec<Vec<u8>> = txn
            .prepare("SELECT record FROM instances")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut update = txn.prepare(
            "UPDATE instances SET status = ?2, created_ms = ?3, completed_ms = ?4 WHERE id = ?1",
        )?;
        for bytes in records {
            let rec = InstanceRecord::decode(bytes.as_slice())?;
            update.execute(params![
                rec.instance_id,
                rec.status,
                rec.created_ms,
                rec.completed_ms
            ])?;
        }
    }
    txn.commit()?;
    Ok(())
}
