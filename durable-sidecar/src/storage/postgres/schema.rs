//! The PostgreSQL schema: the same tables as SQLite (protobuf records in `bytea`, with the
//! columns queries filter on), created or migrated on start under the writer lock.

use tokio_postgres::Client;

use super::super::StorageError;

/// The schema version this build writes.
const VERSION: i64 = 1;

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

/// Creates the tables, or refuses a database written by a newer version.
pub(super) async fn create_or_migrate(client: &mut Client) -> Result<(), StorageError> {
    let txn = client.transaction().await?;
    txn.batch_execute(TABLES).await?;
    let found: Option<i64> = txn
        .query_opt("SELECT max(version) FROM durable_schema", &[])
        .await?
        .and_then(|row| row.get(0));
    match found {
        None => {
            txn.execute(
                "INSERT INTO durable_schema (version) VALUES ($1)",
                &[&VERSION],
            )
            .await?;
        }
        Some(v) if v > VERSION => {
            return Err(StorageError::Schema(format!(
                "the database has schema version {v}, newer than this sidecar's {VERSION}; upgrade the sidecar"
            )));
        }
        Some(_) => {}
    }
    txn.commit().await?;
    Ok(())
}
