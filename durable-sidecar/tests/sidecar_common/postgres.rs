//! A throwaway PostgreSQL server for tests: `initdb` in a temp dir, `pg_ctl start` on a free
//! loopback port, stopped and deleted on drop. Uses the Debian `postgresql` package's binaries
//! (`/usr/lib/postgresql/*/bin`, or `DURABLE_PG_BIN`). PostgreSQL refuses to run as root, so
//! under root the server runs as the `postgres` user (or `nobody`) through `runuser`.
//!
//! When PostgreSQL is not installed, [`TempPostgres::start`] returns `None` and the test says it
//! did not run, unless `DURABLE_REQUIRE_POSTGRES=1` (set by `.ci/run`), which makes it fail.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A running PostgreSQL server owned by one test.
pub struct TempPostgres {
    dir: PathBuf,
    bin: PathBuf,
    run_as: Option<String>,
    port: u16,
    /// The server options it was started with (port, socket directory, settings).
    options: String,
}

fn bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("DURABLE_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn user_exists(name: &str) -> bool {
    Command::new("id")
        .arg(name)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl TempPostgres {
    /// Starts a server tuned for tests (`fsync=off`), or `None` when PostgreSQL is not
    /// installed (and not required).
    pub fn start() -> Option<Self> {
        Self::start_with("-c fsync=off -c full_page_writes=off")
    }

    /// Starts a server with PostgreSQL's durable defaults (`fsync=on`), for benchmarks.
    pub fn start_durable() -> Option<Self> {
        Self::start_with("")
    }

    fn start_with(settings: &str) -> Option<Self> {
        let Some(bin) = bin_dir() else {
            assert!(
                std::env::var("DURABLE_REQUIRE_POSTGRES").is_err(),
                "PostgreSQL is required (DURABLE_REQUIRE_POSTGRES) but not installed: apt-get install postgresql"
            );
            eprintln!(
                "SKIPPED: PostgreSQL is not installed (apt-get install postgresql); this test did not run"
            );
            return None;
        };
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "durable-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir for PostgreSQL");
        let run_as = is_root().then(|| {
            if user_exists("postgres") {
                "postgres".to_string()
            } else {
                "nobody".to_string()
            }
        });
        if let Some(user) = &run_as {
            let ok = Command::new("chown")
                .args(["-R", user])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown {} to {user}", dir.display());
        }
        let mut pg = Self {
            dir,
            bin,
            run_as,
            port: free_port(),
            options: String::new(),
        };
        let data = pg.dir.join("data");
        pg.run(
            "initdb",
            &[
                "-D",
                path(&data),
                "-U",
                "durable",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        // The free port can be taken by another test between choosing it and binding it:
        // then the server is started again on another one.
        for attempt in 1.. {
            let options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 {settings}",
                pg.port,
                path(&pg.dir)
            );
            let log = pg.dir.join("server.log");
            match pg.pg_ctl_start(&options) {
                Ok(()) => {
                    pg.options = options;
                    break;
                }
                Err(problem) => {
                    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
                    assert!(
                        attempt < 5 && log_text.contains("Address already in use"),
                        "{problem}"
                    );
                    let _ = std::fs::remove_file(&log);
                    pg.port = free_port();
                }
            }
        }
        Some(pg)
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        if let Err(problem) = self.try_run(program, args) {
            panic!("{problem}");
        }
    }

    /// Runs a PostgreSQL program; the error says what it printed and what the server logged.
    fn try_run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let out = self
            .command(program)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .map_err(|e| format!("run {program}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{program} {args:?} failed: {}\n{}\nserver log: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        ))
    }

    /// Restarts the server (every connection drops), keeping its data and port.
    pub fn restart(&self) {
        let data = self.dir.join("data");
        self.run(
            "pg_ctl",
            &[
                "restart",
                "-w",
                "-m",
                "fast",
                "-D",
                path(&data),
                "-l",
                path(&self.dir.join("server.log")),
            ],
        );
    }

    /// Stops the server (every connection drops) until [`start_again`](Self::start_again).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "stop",
                "-w",
                "-m",
                "fast",
                "-D",
                path(&self.dir.join("data")),
            ],
        );
    }

    /// Starts the server stopped by [`stop`](Self::stop) again, with its data and port.
    pub fn start_again(&self) {
        if let Err(problem) = self.pg_ctl_start(&self.options) {
            panic!("{problem}");
        }
    }

    /// `pg_ctl start` on this server's data directory with server `options`, waiting until it
    /// accepts connections.
    fn pg_ctl_start(&self, options: &str) -> Result<(), String> {
        self.try_run(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                path(&self.dir.join("data")),
                "-l",
                path(&self.dir.join("server.log")),
                "-o",
                options,
            ],
        )
    }

    /// Creates a database and returns its URL.
    pub fn database(&self, name: &str) -> String {
        self.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "durable",
                name,
            ],
        );
        self.url(name)
    }

    /// The URL of a database on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://durable@127.0.0.1:{}/{name}", self.port)
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-m", "immediate", "-D", path(&data)])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
