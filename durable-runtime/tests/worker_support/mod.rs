//! Helpers for the worker and client integration tests: the Python SDK's in-memory sidecar as
//! a child process, and the orchestrators/activities of the seed examples written by hand.

#![allow(dead_code, unreachable_pub, missing_docs)] // each test file uses a different subset

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures::future::{BoxFuture, LocalBoxFuture};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use durable::client::{ConnectOptions, DurableClient};
use durable::worker::{Worker, WorkerHandle, WorkerOptions};
use durable::{Activity, ActivityContext, OrchestrationContext, Orchestrator, Registry};

pub const WAIT: Duration = Duration::from_secs(30);

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("durable-runtime lives in the workspace")
        .to_path_buf()
}

/// The Python interpreter with `durabletask` installed: `$DURABLE_TEST_PYTHON`, else the
/// workspace's `.venv/bin/python`.
pub fn python() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("DURABLE_TEST_PYTHON") {
        return Some(PathBuf::from(path));
    }
    let venv = workspace_root().join(".venv/bin/python");
    venv.exists().then_some(venv)
}

pub fn script(name: &str) -> PathBuf {
    workspace_root().join("tests/python").join(name)
}

/// A Python child process that prints a ready line; killed on drop.
pub struct PyProcess {
    child: Child,
    pub ready_line: String,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl PyProcess {
    pub async fn spawn(script_name: &str, args: &[String]) -> Option<Self> {
        let Some(python) = python() else {
            eprintln!(
                "SKIPPED: no Python for the interop tests (set DURABLE_TEST_PYTHON or create \
                 .venv with `pip install -r tests/python/requirements.txt`)"
            );
            return None;
        };
        let mut child = Command::new(&python)
            .arg(script(script_name))
            .args(args)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} failed: {e}", python.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{script_name} printed no ready line within {WAIT:?}"))
            .expect("reading the ready line")
            .unwrap_or_else(|| panic!("{script_name} exited before it was ready"));
        assert!(line.starts_with("READY"), "{script_name}: {line}");
        // Keep draining stdout (so the child never blocks on a full pipe) into a channel the
        // test can read.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
        Some(Self {
            child,
            ready_line: line,
            lines: rx,
        })
    }

    /// Waits for the next stdout line starting with `prefix` (skipping others), at most
    /// [`WAIT`].
    pub async fn expect_line(&mut self, prefix: &str) -> String {
        let found = tokio::time::timeout(WAIT, async {
            while let Some(line) = self.lines.recv().await {
                if line.starts_with(prefix) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            Ok(None) => panic!("the process exited before printing `{prefix}...`"),
            Err(_) => panic!("no `{prefix}...` line within {WAIT:?}"),
        }
    }

    /// Stops the process and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The Python SDK's in-memory sidecar on a free 127.0.0.1 port.
pub struct PySidecar {
    process: PyProcess,
    pub port: u16,
}

impl PySidecar {
    /// Starts a sidecar, or returns `None` (printing why) when Python is not installed.
    pub async fn start() -> Option<Self> {
        Self::start_on(0).await
    }

    pub async fn start_on(port: u16) -> Option<Self> {
        let process = PyProcess::spawn("in_memory_sidecar.py", &[port.to_string()]).await?;
        let port = process
            .ready_line
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("READY <port>");
        Some(Self { process, port })
    }

    /// Waits for the sidecar to print a line starting with `prefix` (see
    /// `tests/python/in_memory_sidecar.py`).
    pub async fn expect_line(&mut self, prefix: &str) -> String {
        self.process.expect_line(prefix).await
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn options(&self) -> ConnectOptions {
        ConnectOptions::new(self.endpoint())
    }

    pub async fn client(&self) -> DurableClient {
        DurableClient::connect(self.endpoint())
            .await
            .expect("the sidecar accepts connections")
    }

    pub async fn stop(self) {
        self.process.stop().await;
    }
}

/// Starts a worker for `registry` and waits for its first connection.
pub async fn start_worker(sidecar: &PySidecar, registry: Registry) -> WorkerHandle {
    start_worker_with(sidecar, registry, WorkerOptions::new()).await
}

pub async fn start_worker_with(
    sidecar: &PySidecar,
    registry: Registry,
    options: WorkerOptions,
) -> WorkerHandle {
    let worker = Worker::new(registry, sidecar.options())
        .with_options(options)
        .start();
    assert!(
        worker.wait_connected(1, WAIT).await,
        "the worker did not connect"
    );
    worker
}

// ---- The seed examples, written by hand (without the macros, to test the traits directly) ----

/// `hello(name) -> "Hello {name}!"`
#[derive(Clone, Copy)]
pub struct Hello;

impl Activity for Hello {
    type Input = String;
    type Output = String;
    const NAME: &'static str = "hello";
    fn run(_ctx: ActivityContext, name: String) -> BoxFuture<'static, durable::Result<String>> {
        Box::pin(async move { Ok(format!("Hello {name}!")) })
    }
}

/// Function chaining: Tokyo, Seattle, London.
#[derive(Clone, Copy)]
pub struct Sequence;

impl Orchestrator for Sequence {
    type Input = ();
    type Output = Vec<String>;
    const NAME: &'static str = "sequence";
    fn run(
        ctx: OrchestrationContext,
        _input: (),
    ) -> LocalBoxFuture<'static, durable::Result<Vec<String>>> {
        Box::pin(async move {
            let mut results = Vec::new();
            for city in ["Tokyo", "Seattle", "London"] {
                results.push(ctx.call_activity(Hello, city).await?);
            }
            Ok(results)
        })
    }
}

#[derive(Clone, Copy)]
pub struct GetWorkItems;

impl Activity for GetWorkItems {
    type Input = u32;
    type Output = Vec<String>;
    const NAME: &'static str = "get_work_items";
    fn run(_ctx: ActivityContext, n: u32) -> BoxFuture<'static, durable::Result<Vec<String>>> {
        Box::pin(async move { Ok((0..n).map(|i| format!("item-{i}")).collect()) })
    }
}

#[derive(Clone, Copy)]
pub struct ProcessWorkItem;

impl Activity for ProcessWorkItem {
    type Input = String;
    type Output = u64;
    const NAME: &'static str = "process_work_item";
    fn run(_ctx: ActivityContext, item: String) -> BoxFuture<'static, durable::Result<u64>> {
        Box::pin(async move {
            let n: u64 = item.trim_start_matches("item-").parse()?;
            Ok(n * 10)
        })
    }
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FanOutSummary {
    pub work_items: Vec<String>,
    pub results: Vec<u64>,
    pub total: u64,
}

/// Fan-out/fan-in over a dynamic number of work items.
#[derive(Clone, Copy)]
pub struct FanOutFanIn;

impl Orchestrator for FanOutFanIn {
    type Input = u32;
    type Output = FanOutSummary;
    const NAME: &'static str = "fanout_fanin";
    fn run(
        ctx: OrchestrationContext,
        n: u32,
    ) -> LocalBoxFuture<'static, durable::Result<FanOutSummary>> {
        Box::pin(async move {
            let work_items = ctx.call_activity(GetWorkItems, n).await?;
            let tasks = work_items
                .iter()
                .map(|item| ctx.call_activity(ProcessWorkItem, item.clone()));
            let results = durable::when_all(tasks).await?;
            let total = results.iter().sum();
            Ok(FanOutSummary {
                work_items,
                results,
                total,
            })
        })
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Order {
    pub cost: f64,
    pub product: String,
    /// How long to wait for the approval, in seconds.
    pub approval_timeout_secs: u64,
}

#[derive(Clone, Copy)]
pub struct SendApprovalRequest;

impl Activity for SendApprovalRequest {
    type Input = Order;
    type Output = ();
    const NAME: &'static str = "send_approval_request";
    fn run(_ctx: ActivityContext, _order: Order) -> BoxFuture<'static, durable::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

#[derive(Clone, Copy)]
pub struct PlaceOrder;

impl Activity for PlaceOrder {
    type Input = Order;
    type Output = String;
    const NAME: &'static str = "place_order";
    fn run(_ctx: ActivityContext, order: Order) -> BoxFuture<'static, durable::Result<String>> {
        Box::pin(async move { Ok(format!("placed {}", order.product)) })
    }
}

/// Human interaction: an approval event races a durable timer.
#[derive(Clone, Copy)]
pub struct PurchaseOrder;

impl Orchestrator for PurchaseOrder {
    type Input = Order;
    type Output = String;
    const NAME: &'static str = "purchase_order_workflow";
    fn run(
        ctx: OrchestrationContext,
        order: Order,
    ) -> LocalBoxFuture<'static, durable::Result<String>> {
        Box::pin(async move {
            if order.cost < 1000.0 {
                return Ok("Auto-approved".to_owned());
            }
            ctx.call_activity(SendApprovalRequest, order.clone())
                .await?;
            let approval = ctx.wait_for_external_event::<String>("approval_received");
            let timeout = ctx.create_timer(Duration::from_secs(order.approval_timeout_secs));
            if durable::when_any([approval.handle(), timeout.handle()]).await == 1 {
                return Ok("Canceled".to_owned());
            }
            let approver = approval.await?;
            let placed = ctx.call_activity(PlaceOrder, order).await?;
            Ok(format!("Approved by {approver}; {placed}"))
        })
    }
}

/// Registry with every example above.
pub fn examples_registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .add_activity::<Hello>()
        .and_then(|r| r.add_activity::<GetWorkItems>())
        .and_then(|r| r.add_activity::<ProcessWorkItem>())
        .and_then(|r| r.add_activity::<SendApprovalRequest>())
        .and_then(|r| r.add_activity::<PlaceOrder>())
        .and_then(|r| r.add_orchestrator::<Sequence>())
        .and_then(|r| r.add_orchestrator::<FanOutFanIn>())
        .and_then(|r| r.add_orchestrator::<PurchaseOrder>())
        .expect("distinct names");
    registry
}
