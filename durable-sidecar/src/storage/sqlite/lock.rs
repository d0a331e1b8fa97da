//! One sidecar per database file: an exclusive OS lock on `<file>-lock`, held while the storage
//! is open and released by the OS when the process ends (also after `kill -9`). The lock file
//! names the holder (its PID and, once listening, its address) for the error a second sidecar
//! reports.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

use super::super::StorageError;

/// A held database lock.
pub(super) struct DbLock {
    file: File,
}

/// The lock file of a database file.
fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-lock");
    PathBuf::from(name)
}

impl DbLock {
    /// Takes the lock, or fails naming the sidecar that holds it.
    pub(super) fn acquire(db: &Path) -> Result<Self, StorageError> {
        let path = lock_path(db);
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(|e| {
            StorageError::File(format!("cannot open the lock file {}: {e}", path.display()))
        })?;
        match FileExt::try_lock_exclusive(&file) {
            Ok(true) => {}
            Ok(false) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(StorageError::Locked(in_use_message(holder.trim())));
            }
            Err(e) => {
                return Err(StorageError::File(format!(
                    "cannot lock {}: {e}",
                    path.display()
                )));
            }
        }
        let mut lock = Self { file };
        lock.write(&format!("pid {}", std::process::id()));
        Ok(lock)
    }

    /// Records where the holder listens, for the message a second sidecar shows.
    pub(super) fn advertise(&mut self, endpoint: &str) {
        self.write(&format!(
            "pid {}, listening on {endpoint}",
            std::process::id()
        ));
    }

    fn write(&mut self, holder: &str) {
        let _ = self.file.set_len(0);
        let _ = self.file.seek(SeekFrom::Start(0));
        let _ = self.file.write_all(holder.as_bytes());
        let _ = self.file.flush();
    }
}

fn in_use_message(holder: &str) -> String {
    let connect = holder
        .split_once("listening on ")
        .map(|(_, endpoint)| {
            format!("set DURABLE_SIDECAR={endpoint} (or `.sidecar(\"{endpoint}\")`) to use it")
        })
        .unwrap_or_else(|| "set DURABLE_SIDECAR to that sidecar's address to use it".to_string());
    let holder = if holder.is_empty() {
        "another process".to_string()
    } else {
        format!("another durable sidecar ({holder})")
    };
    format!(
        "the database is in use by {holder}; one sidecar writes a database at a time: {connect}, or give this one another file (DURABLE_DB, `.database(path)`, `--db`)"
    )
}
