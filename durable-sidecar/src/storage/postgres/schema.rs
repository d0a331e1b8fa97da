//! The PostgreSQL schema: the same tables as SQLite (protobuf records in `bytea`, with the
//! columns queries filter on) plus what replicas share: the partition of every row, messages
//! between partitions, the live replicas, who serves which partition and each partition's last
//! commit. Created or migrated
//! on start, one replica at a time (a transaction-scoped advisory lock).

use postgres::Client;

use super::super::StorageError;
use crate::partitions::{PARTITIONS, partition_of};

/// The schema version this build writes. 1: one sidecar per database. 2: partitions.
/// 3: commit marks.
const VERSION: i64 = 3;

/// Serializes schema changes between replicas starting at once ("durable0").
const SCHEMA_LOCK: i64 = 0x6475_7261_626c_6530;

const TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS durable_schema (version BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
    id TEXT COLLATE "C" PRIMARY KEY, record BYTEA NOT NULL,
    status BIGINT NOT NULL, created_ms BIGINT NOT NULL, completed_ms BIGINT);
CREATE INDEX IF NOT EXISTS instances_by_status ON instances (status);
CREATE INDEX IF NOT EXISTS instances_by_created ON instances (created_ms, id);
CREATE INDEX IF NOT EXISTS instances_by_completed ON instances (completed_ms, id)
    WHERE completed_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT COLLATE "C" NOT NULL, idx BIGINT NOT NULL, event BYTEA NOT NULL,
    PRIMARY KEY (instance_id, idx));
CREATE TABLE IF NOT EXISTS inbox (
    instance_id TEXT COLLATE "C" NOT NULL, seq BIGINT NOT NULL, event BYTEA NOT NULL,
    PRIMARY KEY (instance_id, seq));
CREATE TABLE IF NOT EXISTS activities (
    key BIGINT PRIMARY KEY, instance_id TEXT COLLATE "C" NOT NULL, record BYTEA NOT NULL);
CREATE INDEX IF NOT EXISTS activities_by_instance ON activities (instance_id);
CREATE TABLE IF NOT EXISTS timers (
    key BIGINT PRIMARY KEY, instance_id TEXT COLLATE "C" NOT NULL, record BYTEA NOT NULL);
CREATE INDEX IF NOT EXISTS timers_by_instance ON timers (instance_id);
CREATE TABLE IF NOT EXISTS entities (id TEXT COLLATE "C" PRIMARY KEY, record BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS entity_ops (
    entity_id TEXT COLLATE "C" NOT NULL, seq BIGINT NOT NULL, event BYTEA NOT NULL,
    PRIMARY KEY (entity_id, seq));
CREATE TABLE IF NOT EXISTS lock_requests (id TEXT COLLATE "C" PRIMARY KEY, record BYTEA NOT NULL);
"#;

/// Version 2: rows know their partition; replicas share messages, liveness and ownership.
const PARTITIONED: &str = r#"
ALTER TABLE instances ADD COLUMN IF NOT EXISTS part INT;
ALTER TABLE activities ADD COLUMN IF NOT EXISTS part INT;
ALTER TABLE timers ADD COLUMN IF NOT EXISTS part INT;
CREATE INDEX IF NOT EXISTS instances_by_part ON instances (part, status);
CREATE INDEX IF NOT EXISTS activities_by_part ON activities (part);
CREATE INDEX IF NOT EXISTS timers_by_part ON timers (part);
CREATE TABLE IF NOT EXISTS messages (
    id BIGSERIAL PRIMARY KEY, part INT NOT NULL, payload BYTEA NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_part ON messages (part, id);
CREATE TABLE IF NOT EXISTS replicas (
    id TEXT PRIMARY KEY, address TEXT NOT NULL, seen TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS partitions (
    part INT PRIMARY KEY, replica TEXT NOT NULL, address TEXT NOT NULL,
    since TIMESTAMPTZ NOT NULL DEFAULT now());
"#;

/// Version 3: each partition's last commit (the writer that made it and its batch), so a
/// writer that lost its connection during a commit learns whether the commit landed.
const COMMIT_MARKS: &str = r#"
CREATE TABLE IF NOT EXISTS commit_marks (
    part INT PRIMARY KEY, writer BIGINT NOT NULL, seq BIGINT NOT NULL);
"#;

/// Sets the `part` of rows written before partitions existed, from their instance id.
fn assign_partitions(txn: &mut postgres::Transaction<'_>) -> Result<(), StorageError> {
    for (table, column) in [
        ("instances", "id"),
        ("activities", "instance_id"),
        ("timers", "instance_id"),
    ] {
        let ids: Vec<String> = txn
            .query(
                &format!("SELECT DISTINCT {column} FROM {table} WHERE part IS NULL"),
                &[],
            )?
            .into_iter()
            .map(|row| row.get(0))
            .collect();
        for chunk in ids.chunks(10_000) {
            let parts: Vec<i32> = chunk
                .iter()
                .map(|id| i32::try_from(partition_of(id, PARTITIONS)).unwrap_or(0))
                .collect();
            txn.execute(
                &format!(
                    "UPDATE {table} SET part = t.p FROM UNNEST($1::text[], $2::int[]) AS t(i, p)
                     WHERE {table}.{column} = t.i AND {table}.part IS NULL"
                ),
                &[&chunk, &parts],
            )?;
        }
    }
    Ok(())
}

/// Creates the tables or migrates older ones, or refuses a database written by a newer
/// version. Blocks.
pub(super) fn create_or_migrate(client: &mut Client) -> Result<(), StorageError> {
    let mut txn = client.transaction()?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
    let exists: bool = txn
        .query_one("SELECT to_regclass('durable_schema') IS NOT NULL", &[])?
        .get(0);
    let found: Option<i64> = if exists {
        txn.query_one("SELECT max(version) FROM durable_schema", &[])?
            .get(0)
    } else {
        None
    };
    match found {
        Some(v) if v > VERSION => {
            return Err(StorageError::Schema(format!(
                "the database has schema version {v}, newer than this sidecar's {VERSION}; upgrade the sidecar"
            )));
        }
        Some(v) if v == VERSION => return Ok(()),
        _ => {}
    }
    txn.batch_execute(TABLES)?;
    txn.batch_execute(PARTITIONED)?;
    txn.batch_execute(COMMIT_MARKS)?;
    assign_partitions(&mut txn)?;
    txn.execute("DELETE FROM durable_schema", &[])?;
    txn.execute(
        "INSERT INTO durable_schema (version) VALUES ($1)",
        &[&VERSION],
    )?;
    txn.commit()?;
    Ok(())
}
