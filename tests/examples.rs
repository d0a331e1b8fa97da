//! Runs every example program and checks that it prints what `examples/README.md` promises
//! (the automated check the seed examples ask for).

#[path = "../durable-sidecar/tests/sidecar_common/postgres.rs"]
mod postgres;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

/// The example's binary, built on demand when `cargo test` did not build it.
fn example_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let binary = target.join("debug").join("examples").join(name);
    if !binary.exists() {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "durable-examples",
                "--example",
                name,
            ])
            .current_dir(workspace_root())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building example {name} failed");
    }
    binary
}

/// Runs an example with its own embedded database, feeding `stdin` after `stdin_delay`,
/// and returns what it printed.
fn run_example(name: &str, args: &[&str], stdin: Option<(Duration, &str)>) -> String {
    run_example_with(name, args, stdin, &[]).0
}

/// [`run_example`] with extra environment variables; returns stdout and stderr.
fn run_example_with(
    name: &str,
    args: &[&str],
    stdin: Option<(Duration, &str)>,
    env: &[(&str, &str)],
) -> (String, String) {
    // One directory per run: tests running the same example at once must not share a file.
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "durable-example-{name}-{}-{run}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut child = Command::new(example_binary(name))
        .args(args)
        .env("DURABLE_DB", dir.join("durable.db"))
        .env_remove("DURABLE_SIDECAR")
        .env_remove("DURABLE_POSTGRES")
        .envs(env.iter().copied())
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("example starts");
    let mut input = child.stdin.take().expect("piped stdin");
    let feeder = stdin.map(|(delay, text)| {
        let text = text.to_owned();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            let _ = input.write_all(text.as_bytes());
        })
    });
    // Drained while it runs, so a chatty example never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout_reader = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr_reader = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let started = Instant::now();
    let deadline = Duration::from_secs(120);
    loop {
        if child.try_wait().expect("wait works").is_some() {
            break;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            panic!("example {name} did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    let status = child.wait().expect("exit status");
    let stdout = stdout_reader.join().expect("stdout reader");
    let stderr = stderr_reader.join().expect("stderr reader");
    assert!(
        status.success(),
        "example {name} failed with {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    (stdout, stderr)
}

fn assert_prints(stdout: &str, expected: &[&str]) {
    for line in expected {
        assert!(
            stdout.contains(line),
            "expected {line:?} in the output:\n{stdout}"
        );
    }
}

#[test]
fn activity_sequence() {
    let (out, logs) = run_example_with("activity_sequence", &[], None, &[("RUST_LOG", "info")]);
    assert_prints(
        &out,
        &[r#""Hello Tokyo!", "Hello Seattle!", "Hello London!""#],
    );
    // The default log output: one line per start and completion, however often it replayed.
    assert_eq!(
        logs.matches("orchestration `sequence` started").count(),
        1,
        "{logs}"
    );
    assert_eq!(
        logs.matches("orchestration `sequence` completed").count(),
        1,
        "{logs}"
    );
}

#[test]
fn activity_sequence_on_postgres() {
    let Some(pg) = postgres::TempPostgres::start() else {
        return;
    };
    let url = pg.database("example");
    for _ in 0..2 {
        // Twice on one database: the second run finds the first run's state in place.
        let out = run_example_with(
            "activity_sequence",
            &[],
            None,
            &[("DURABLE_POSTGRES", &url)],
        )
        .0;
        assert_prints(
            &out,
            &[r#""Hello Tokyo!", "Hello Seattle!", "Hello London!""#],
        );
    }
}

#[test]
fn fanout_fanin() {
    let out = run_example("fanout_fanin", &[], None);
    assert_prints(&out, &["Orchestration completed! Result", "total"]);
}

#[test]
fn human_interaction_approved() {
    let out = run_example(
        "human_interaction",
        &["--timeout", "20", "--approver", "RUST-CI"],
        Some((Duration::from_secs(2), "\n")),
    );
    assert_prints(&out, &["Approved by 'RUST-CI'"]);
}

#[test]
fn human_interaction_times_out() {
    let out = run_example("human_interaction", &["--timeout", "2"], None);
    assert_prints(&out, &["Canceled"]);
}

#[test]
fn sub_orchestrations() {
    let out = run_example("sub_orchestrations", &[], None);
    assert_prints(&out, &[r#"["<ALPHA>", "<BETA>", "<GAMMA>"]"#]);
}

#[test]
fn eternal() {
    let out = run_example("eternal", &[], None);
    assert_prints(
        &out,
        &[
            "iteration 1: history holds",
            "iteration 4: history holds",
            "finished after 4 iterations; note carried over: raised during iteration 1",
        ],
    );
}

#[test]
fn monitoring() {
    let out = run_example("monitoring", &[], None);
    assert_prints(&out, &[r#"Verdict { status: "success", attempts: 3 }"#]);
}

#[test]
fn delayed() {
    let out = run_example("delayed", &[], None);
    assert_prints(&out, &["Done after a durable wait of"]);
}

#[test]
fn scheduled() {
    let out = run_example("scheduled", &[], None);
    assert_prints(
        &out,
        &[
            "timer-scheduled work ran at",
            "start-scheduled work ran at",
            "(not before the scheduled time: true)",
        ],
    );
    assert!(
        !out.contains("(not before the scheduled time: false)"),
        "{out}"
    );
}

#[test]
fn batched_fanout() {
    let out = run_example("batched_fanout", &[], None);
    assert_prints(&out, &["batch 3 of 5 items done", r#"{"total": 5525}"#]);
}

#[test]
fn versioning() {
    let out = run_example("versioning", &[], None);
    assert_prints(
        &out,
        &[
            r#"version 1.0.0: ["Hello, Rust!"]"#,
            r#"version 2.0.0: ["Hello, Rust!", "Goodbye, Rust!"]"#,
        ],
    );
}

#[test]
fn retries() {
    let out = run_example("retries", &[], None);
    assert_prints(
        &out,
        &[
            "succeeded on attempt 3",
            "handled after 2 attempts: the service is down",
        ],
    );
}

#[test]
fn external_events() {
    let out = run_example("external_events", &[], None);
    assert_prints(
        &out,
        &[
            "first: one",
            "second: two",
            "third: timed out",
            "ping: hello from",
        ],
    );
}

#[test]
fn async_http() {
    let out = run_example("async_http", &[], None);
    assert_prints(
        &out,
        &[
            "-> 202 Accepted",
            "runtimeStatus=\"Completed\"",
            r#"Orchestration completed! Result: ["report on durable execution (summary)","report on durable execution (details)"]"#,
        ],
    );
}

#[test]
fn entity_counter() {
    let out = run_example("entity_counter", &[], None);
    assert_prints(
        &out,
        &[
            "Orchestration completed! Result: Counter value: 3, tally value: 5",
            "from the client: value 13",
        ],
    );
}

#[test]
fn aggregator() {
    let out = run_example("aggregator", &[], None);
    assert_prints(
        &out,
        &[
            "Aggregated 200 readings: sum 2649.0",
            r#"Per sensor: {"north": 1225.0, "south": 1225.0, "thermometer": 199.0}"#,
        ],
    );
}

#[test]
fn entity_locking() {
    let out = run_example("entity_locking", &[], None);
    assert_prints(
        &out,
        &["20 of 20 transfers moved money; total is still 1000"],
    );
}

/// Kill the example while it waits for approval, rerun it with the same instance id: the
/// orchestration continues from its durable state.
#[test]
fn human_interaction_survives_a_kill() {
    use std::io::{BufRead, BufReader};

    let dir = std::env::temp_dir().join(format!("durable-example-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let binary = example_binary("human_interaction");
    let args = ["--timeout", "120", "--instance-id", "order-restart-test"];

    let mut first = Command::new(&binary)
        .args(args)
        .env("DURABLE_DB", dir.join("durable.db"))
        .env_remove("DURABLE_SIDECAR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("example starts");
    let stdout = first.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("Sending approval request"))
    {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no approval request was sent; output so far: {seen:?}"));
        seen.push(line);
    }
    // Give the sidecar a moment to commit the activity's result, then kill without warning.
    std::thread::sleep(Duration::from_millis(500));
    first.kill().expect("kill");
    let _ = first.wait();

    let mut second = Command::new(&binary)
        .args(args)
        .env("DURABLE_DB", dir.join("durable.db"))
        .env_remove("DURABLE_SIDECAR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("example restarts");
    let mut input = second.stdin.take().expect("piped stdin");
    std::thread::sleep(Duration::from_secs(1));
    input.write_all(b"\n").expect("approve");
    let output = second.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_prints(
        &stdout,
        &[
            "Orchestration order-restart-test is already running; continuing from its durable state",
            "Approved by 'Me'",
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
}
