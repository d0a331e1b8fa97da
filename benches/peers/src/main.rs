//! Peers in the same run: durable and duroxide on the same end-to-end scenarios, with the ratio.
//!
//! ```text
//! cargo run --release --manifest-path benches/peers/Cargo.toml
//! ```
//!
//! Each system runs in a process of its own, one after the other: durable as this binary
//! again (`--durable`: the embedded sidecar with its defaults, in-process transport, SQLite on
//! disk with `synchronous=FULL`), duroxide as the `duroxide/` crate, which this builds with
//! `cargo build --release` first (into `target/duroxide`; its own crate because its SQLite
//! provider and ours link different `libsqlite3-sys` versions). duroxide uses its SQLite
//! provider on disk in a temp dir, tuned as `duroxide/src/main.rs` says.
//!
//! Both run, from `src/scenarios.rs`: 100 chains to warm up; chain3 (an orchestration calling
//! three activities in sequence) N times, 100 in flight, as chains/s and the process's CPU per
//! chain (`/proc/self/stat`); single-chain latency, one after another (median, p95, p99);
//! fan-out/fan-in of `n` activities, as wall time and the process's peak RSS (VmHWM, reset
//! through `/proc/self/clear_refs`). Every output and sum is checked. A progress line goes to
//! stderr before each scenario; the table, with the ratio, to stdout at the end.
//!
//! A slow system stays within a budget (`PEERS_BUDGET_SECS`, 60): it runs fewer chains, as
//! many as its warm-up rate fits, and skips a fan-out that would take longer (extrapolated
//! from the previous size) or stops one that does; the table says so. Other variables:
//! `PEERS_CHAINS=1000`, `PEERS_LATENCY=100`, `PEERS_FANOUT=1000,10000`,
//! `PEERS_SYSTEMS=durable,duroxide`, and for duroxide's tuning `DUROXIDE_ORCH_CONCURRENCY`,
//! `DUROXIDE_WORKER_CONCURRENCY`, `DUROXIDE_POLL_MS` (its logs: `RUST_LOG`, `error` unless set).

mod durable_peer;
mod scenarios;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

const SYSTEMS: [&str; 2] = ["durable", "duroxide"];

/// What one system reported for a scenario.
enum Cell {
    Figure {
        value: f64,
        unit: String,
        detail: String,
    },
    Skipped,
}

impl Cell {
    fn show(cell: Option<&Cell>) -> String {
        match cell {
            None => "-".to_owned(),
            Some(Cell::Skipped) => "skipped: too slow".to_owned(),
            Some(Cell::Figure {
                value,
                unit,
                detail,
            }) if detail.is_empty() => format!("{} {unit}", number(*value)),
            Some(Cell::Figure {
                value,
                unit,
                detail,
            }) => format!("{} {unit} ({detail})", number(*value)),
        }
    }
}

/// A scenario's row: one cell per system of [`SYSTEMS`].
struct Row {
    scenario: String,
    cells: [Option<Cell>; 2],
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Report {
    /// Takes one line of a system's stdout (see `scenarios.rs` for the format).
    fn read(&mut self, system: usize, line: &str) {
        let fields: Vec<&str> = line.split('\t').collect();
        let cell = match fields[..] {
            ["figure", scenario, value, unit, detail] => match value.parse() {
                Ok(value) => Some((
                    scenario,
                    Cell::Figure {
                        value,
                        unit: unit.to_owned(),
                        detail: detail.to_owned(),
                    },
                )),
                Err(_) => None,
            },
            ["skipped", scenario, reason] => {
                let note = format!("{} skipped: too slow: {reason}", SYSTEMS[system]);
                if !self.notes.contains(&note) {
                    self.notes.push(note);
                }
                Some((scenario, Cell::Skipped))
            }
            ["note", text] => {
                self.notes.push(text.to_owned());
                return;
            }
            _ => None,
        };
        let Some((scenario, cell)) = cell else {
            eprintln!("{line}"); // the system's own output, a log line say
            return;
        };
        let index = match self.rows.iter().position(|r| r.scenario == scenario) {
            Some(index) => index,
            None => {
                self.rows.push(Row {
                    scenario: scenario.to_owned(),
                    cells: [None, None],
                });
                self.rows.len() - 1
            }
        };
        self.rows[index].cells[system] = Some(cell);
    }

    fn print(&self) {
        let mut lines = vec![[
            "scenario".to_owned(),
            SYSTEMS[0].to_owned(),
            SYSTEMS[1].to_owned(),
            "ratio".to_owned(),
        ]];
        for row in &self.rows {
            let [ours, theirs] = &row.cells;
            lines.push([
                row.scenario.clone(),
                Cell::show(ours.as_ref()),
                Cell::show(theirs.as_ref()),
                ratio(ours.as_ref(), theirs.as_ref()),
            ]);
        }
        let widths: Vec<usize> = (0..4)
            .map(|i| {
                lines
                    .iter()
                    .map(|l| l[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        println!();
        for line in &lines {
            println!(
                "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}",
                line[0],
                line[1],
                line[2],
                line[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3]
            );
        }
        println!(
            "\nratio: how many times better durable's figure is (durable/duroxide for chains/s, \
             duroxide/durable for times, CPU and memory)"
        );
        for note in &self.notes {
            println!("- {note}");
        }
    }
}

/// The ratio of two figures, oriented so that above 1x means durable is ahead.
fn ratio(ours: Option<&Cell>, theirs: Option<&Cell>) -> String {
    let (
        Some(Cell::Figure {
            value: ours, unit, ..
        }),
        Some(Cell::Figure { value: theirs, .. }),
    ) = (ours, theirs)
    else {
        return "-".to_owned();
    };
    let ratio = if unit.ends_with("/s") {
        ours / theirs
    } else {
        theirs / ours
    };
    if ratio >= 10.0 {
        format!("{ratio:.0}x")
    } else {
        format!("{ratio:.1}x")
    }
}

/// Three significant digits or so.
fn number(value: f64) -> String {
    match value {
        v if v >= 100.0 => format!("{v:.0}"),
        v if v >= 10.0 => format!("{v:.1}"),
        v if v >= 1.0 => format!("{v:.2}"),
        v => format!("{v:.3}"),
    }
}

/// Builds the duroxide side (`duroxide/`, a crate of its own) and returns the command that runs it.
fn duroxide_command() -> anyhow::Result<Command> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = dir.join("target").join("duroxide");
    eprintln!("duroxide: cargo build --release of benches/peers/duroxide...");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--manifest-path"])
        .arg(dir.join("duroxide").join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .status()?;
    anyhow::ensure!(
        status.success(),
        "building the duroxide side failed: {status}"
    );
    let mut command = Command::new(target.join("release").join("peers-bench-duroxide"));
    // duroxide logs every retried "database is locked" at `warn`; its errors still show.
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "error");
    }
    Ok(command)
}

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--durable") {
        return tokio::runtime::Runtime::new()?.block_on(durable_peer::main());
    }
    anyhow::ensure!(
        !cfg!(debug_assertions),
        "a debug build's figures mean nothing: run with `cargo run --release`"
    );
    let wanted = std::env::var("PEERS_SYSTEMS").unwrap_or_else(|_| SYSTEMS.join(","));
    let mut report = Report::default();
    for (index, system) in SYSTEMS.into_iter().enumerate() {
        if !wanted.split(',').any(|s| s.trim() == system) {
            continue;
        }
        let mut command = if system == "durable" {
            let mut command = Command::new(std::env::current_exe()?);
            command.arg("--durable");
            command
        } else {
            duroxide_command()?
        };
        let mut child = command.stdout(Stdio::piped()).spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        for line in BufReader::new(stdout).lines() {
            report.read(index, &line?);
        }
        let status = child.wait()?;
        anyhow::ensure!(status.success(), "the {system} run failed: {status}");
    }
    report.print();
    Ok(())
}
