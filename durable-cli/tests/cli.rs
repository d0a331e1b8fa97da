//! The `durable` client commands against a real sidecar (`durable sidecar` in its own
//! process) with a Rust worker: start, wait, show, list, raise, suspend, resume, terminate,
//! purge, and the error for an unreachable sidecar.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use durable::prelude::*;

#[durable::activity]
async fn greet(name: String) -> String {
    format!("Hello {name}!")
}

#[durable::orchestrator]
async fn greeting(ctx: OrchestrationContext, name: String) -> durable::Result<String> {
    Ok(ctx.call_activity(greet, name).await?)
}

#[durable::orchestrator]
async fn approval(ctx: OrchestrationContext, _: ()) -> durable::Result<bool> {
    Ok(ctx.wait_for_external_event::<bool>("approved").await?)
}

struct Sidecar(Child, String);

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sidecar() -> Sidecar {
    let mut child = Command::new(env!("CARGO_BIN_EXE_durable"))
        .args(["sidecar", "--port", "0", "--in-memory"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Sidecar(child, format!("http://{addr}"))
}

fn durable(sidecar: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_durable"))
        .arg("--sidecar")
        .arg(sidecar)
        .args(args)
        .env_remove("DURABLE_TOKEN")
        .output()
        .unwrap()
}

/// Runs a command that must succeed; returns its stdout.
fn ok(sidecar: &str, args: &[&str]) -> String {
    let out = durable(sidecar, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "durable {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_instances_on_a_sidecar() {
    let sidecar = sidecar();
    let url = sidecar.1.clone();
    let runtime = durable::Runtime::builder()
        .ignore_environment()
        .sidecar(url.clone())
        .start()
        .await
        .unwrap();
    let url2 = url.clone();
    tokio::task::spawn_blocking(move || {
        let url = url2.as_str();
        assert_eq!(
            ok(
                url,
                &["start", "greeting", "--input", "\"Tokyo\"", "--id", "g-1"]
            ),
            "started greeting as g-1\n"
        );
        let waited = ok(url, &["--json", "wait", "g-1", "--timeout", "30"]);
        let state: serde_json::Value = serde_json::from_str(&waited).unwrap();
        assert_eq!(state["status"], "COMPLETED");
        assert_eq!(state["output"], "Hello Tokyo!");

        let shown = ok(url, &["show", "g-1"]);
        assert!(shown.contains("status     COMPLETED"), "{shown}");
        assert!(
            shown.contains("TaskScheduled       #0 greet input \"Tokyo\""),
            "{shown}"
        );
        assert!(
            shown.contains("TaskCompleted       #0 greet → \"Hello Tokyo!\""),
            "{shown}"
        );

        ok(url, &["start", "approval", "--id", "a-1"]);
        ok(url, &["start", "approval", "--id", "a-2"]);
        std::thread::sleep(Duration::from_millis(500));
        ok(url, &["suspend", "a-1", "--reason", "review"]);
        let listed = ok(url, &["list", "--status", "suspended"]);
        assert!(
            listed.contains("a-1") && listed.contains("SUSPENDED"),
            "{listed}"
        );
        assert!(!listed.contains("a-2"), "{listed}");
        ok(url, &["resume", "a-1"]);
        ok(url, &["raise", "a-1", "approved", "--data", "true"]);
        let waited = ok(url, &["--json", "wait", "a-1", "--timeout", "30"]);
        assert!(waited.contains("\"output\":true"), "{waited}");

        ok(
            url,
            &["terminate", "a-2", "--output", "\"no longer needed\""],
        );
        let waited = ok(url, &["wait", "a-2", "--timeout", "30"]);
        assert!(waited.contains("TERMINATED"), "{waited}");

        let listed = ok(url, &["--json", "list", "--name", "appr", "--since", "10m"]);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
        let mut ids: Vec<&str> = rows
            .iter()
            .map(|r| r["instance_id"].as_str().unwrap())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, ["a-1", "a-2"]);

        assert_eq!(ok(url, &["purge", "a-2"]), "purged 1 instance(s)\n");
        let missing = durable(url, &["show", "a-2"]);
        assert!(!missing.status.success());
        assert!(String::from_utf8_lossy(&missing.stderr).contains("no instance `a-2`"));

        let bad = durable(url, &["start", "greeting", "--input", "Tokyo"]);
        assert!(String::from_utf8_lossy(&bad.stderr).contains("'\"Tokyo\"'"));
    })
    .await
    .unwrap();
    runtime.shutdown().await;
}

#[test]
fn an_unreachable_sidecar_is_named() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = durable(&url, &["list"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot reach the sidecar at {url}")),
        "{stderr}"
    );
    assert!(stderr.contains("durable sidecar"), "{stderr}");
}
