//! The HTTP management API (`durable::http`) against the official Python SDK's in-memory
//! sidecar (`durabletask.testing`) with a Python worker, driven by a real HTTP client.
//!
//! Needs a Python with `durabletask` installed: `$DURABLE_TEST_PYTHON`, else
//! `<workspace>/.venv/bin/python`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(20);

fn python() -> PathBuf {
    std::env::var_os("DURABLE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(".venv")
                .join("bin")
                .join("python")
        })
}

fn script(name: &str) -> PathBuf {
    // The Python helpers are shared by the workspace's tests.
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("python")
        .join(name)
}

/// Spawns a Python script (killed on drop) and waits for its `ready` line.
async fn spawn_python(script_name: &str, arg: &str) -> Result<Child> {
    let python = python();
    ensure!(
        python.exists(),
        "no Python at {} (set DURABLE_TEST_PYTHON to a Python with `durabletask` installed)",
        python.display()
    );
    let verbose = std::env::var_os("DURABLE_TEST_VERBOSE").is_some();
    let mut child = Command::new(&python)
        .arg(script(script_name))
        .arg(arg)
        .env("PYTHONUNBUFFERED", "1")
        // The helpers stop when their stdin closes: keep it open while the child lives.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(if verbose {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {} {script_name}", python.display()))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(STARTUP_TIMEOUT, async {
        while let Some(line) = lines.next_line().await? {
            if line.to_ascii_lowercase().starts_with("ready") {
                return Ok::<_, anyhow::Error>(true);
            }
        }
        Ok(false)
    })
    .await
    .with_context(|| format!("{script_name} did not get ready in time"))??;
    ensure!(ready, "{script_name} exited before printing `ready`");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(child)
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Sidecar + worker (Python processes) + the HTTP API served by `durable::http::serve`.
/// Dropping it kills the processes and stops the HTTP servers.
struct Fixture {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT` of the open API.
    base: String,
    /// `http://127.0.0.1:PORT` of the API restricted to the orchestrator `greet`.
    allow_listed_base: String,
    /// The gRPC endpoint of the sidecar behind the API.
    sidecar_endpoint: String,
    _shutdown: Vec<oneshot::Sender<()>>,
    _worker: Option<Child>,
    _sidecar: Child,
}

impl Fixture {
    async fn start(with_worker: bool) -> Result<Self> {
        let port = free_port()?;
        let sidecar = spawn_python("in_memory_sidecar.py", &port.to_string()).await?;
        let endpoint = format!("127.0.0.1:{port}");
        let worker = if with_worker {
            Some(spawn_python("http_test_worker.py", &endpoint).await?)
        } else {
            None
        };

        let (stop_open, stopped_open) = oneshot::channel::<()>();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(durable::http::serve(listener, endpoint.clone(), async {
            let _ = stopped_open.await;
        }));

        let (stop_listed, stopped_listed) = oneshot::channel::<()>();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let allow_listed_base = format!("http://{}", listener.local_addr()?);
        let client = durable::DurableClient::connect_lazy(&durable::client::ConnectOptions::new(
            endpoint.clone(),
        ))?;
        let app = durable::http::router_with_orchestrators(client, vec!["greet".to_string()]);
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped_listed.await;
                })
                .await
        });

        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            base,
            allow_listed_base,
            sidecar_endpoint: endpoint,
            _shutdown: vec![stop_open, stop_listed],
            _worker: worker,
            _sidecar: sidecar,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /api/orchestrators/{name}`; checks the 202 contract and returns the body.
    async fn start_orchestration(
        &self,
        name: &str,
        instance_id: Option<&str>,
        input: Option<Value>,
    ) -> Result<Value> {
        let mut request = self
            .http
            .post(self.url(&format!("/api/orchestrators/{name}")));
        if let Some(id) = instance_id {
            request = request.query(&[("instanceId", id)]);
        }
        if let Some(input) = input {
            request = request.json(&input);
        }
        let response = request.send().await?;
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body: Value = response.json().await?;
        ensure!(
            status == StatusCode::ACCEPTED,
            "start answered {status}: {body}"
        );
        let id = body["id"].as_str().context("start body has an id")?;
        if let Some(expected) = instance_id {
            ensure!(id == expected, "start used id {id}, asked for {expected}");
        }
        let status_uri = self.url(&format!("/api/instances/{id}"));
        ensure!(
            location.as_deref() == Some(status_uri.as_str()),
            "Location {location:?} != {status_uri}"
        );
        ensure!(body["statusQueryGetUri"] == json!(status_uri), "{body}");
        ensure!(
            body["sendEventPostUri"] == json!(format!("{status_uri}/raiseEvent/{{eventName}}")),
            "{body}"
        );
        ensure!(body["terminatePostUri"] == json!(format!("{status_uri}/terminate")));
        ensure!(body["suspendPostUri"] == json!(format!("{status_uri}/suspend")));
        ensure!(body["resumePostUri"] == json!(format!("{status_uri}/resume")));
        ensure!(body["purgeDeleteUri"] == json!(status_uri));
        Ok(body)
    }

    /// `GET /api/instances/{id}` → (HTTP status, body).
    async fn status(&self, id: &str) -> Result<(StatusCode, Value)> {
        let response = self
            .http
            .get(self.url(&format!("/api/instances/{id}")))
            .send()
            .await?;
        Ok((response.status(), response.json().await?))
    }

    /// Polls the status URI until `done` holds for the body.
    async fn wait_for(&self, id: &str, done: impl Fn(StatusCode, &Value) -> bool) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + COMPLETION_TIMEOUT;
        loop {
            let (status, body) = self.status(id).await?;
            if done(status, &body) {
                return Ok(body);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("instance {id} never reached the expected state; last: {status} {body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls with the classic contract: 202 while running, 200 once terminal.
    async fn wait_for_completion(&self, id: &str) -> Result<Value> {
        self.wait_for(id, |status, _| status == StatusCode::OK)
            .await
    }

    async fn post(&self, path: &str, body: Option<&str>) -> Result<(StatusCode, Value)> {
        let mut request = self.http.post(self.url(path));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("non-JSON answer: {text}"))?
        };
        Ok((status, body))
    }

    async fn get(&self, path: &str) -> Result<(StatusCode, Value)> {
        let response = self.http.get(self.url(path)).send().await?;
        Ok((response.status(), response.json().await?))
    }

    async fn delete(&self, path: &str) -> Result<(StatusCode, Value)> {
        let response = self.http.delete(self.url(path)).send().await?;
        Ok((response.status(), response.json().await?))
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn start_poll_raise_event_list_and_purge() -> Result<()> {
    let api = Fixture::start(true).await?;

    // Completes immediately: start without an id (generated) and without a body (no input).
    let started = api.start_orchestration("instant", None, None).await?;
    let id = started["id"].as_str().context("id")?.to_string();
    let done = api.wait_for_completion(&id).await?;
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    assert_eq!(done["instanceId"], json!(id));
    assert_eq!(done["name"], "instant");
    assert_eq!(done["input"], Value::Null);
    assert_eq!(done["output"], json!({"echo": null}));
    assert_eq!(done["failureDetails"], Value::Null);
    for field in ["createdAt", "lastUpdatedAt"] {
        let text = done[field].as_str().context("timestamp")?;
        chrono::DateTime::parse_from_rfc3339(text).with_context(|| format!("{field}={text}"))?;
    }

    // JSON input round-trips.
    let id = unique("instant");
    api.start_orchestration("instant", Some(&id), Some(json!({"x": [1, 2]})))
        .await?;
    let done = api.wait_for_completion(&id).await?;
    assert_eq!(done["input"], json!({"x": [1, 2]}));
    assert_eq!(done["output"], json!({"echo": {"x": [1, 2]}}));

    // Waits for an event: 202 + Location while running, custom status visible.
    let greet = unique("greet");
    api.start_orchestration("greet", Some(&greet), Some(json!("Ada")))
        .await?;
    let running = api
        .wait_for(&greet, |_, body| body["customStatus"] == json!("waiting"))
        .await?;
    assert_eq!(running["runtimeStatus"], "Running", "{running}");
    let response = api
        .http
        .get(api.url(&format!("/api/instances/{greet}")))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(
        response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some(api.url(&format!("/api/instances/{greet}")).as_str())
    );

    // A running instance cannot be purged.
    let (status, body) = api.delete(&format!("/api/instances/{greet}")).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("Running")),
        "{body}"
    );

    // Listing with filters.
    let (status, body) = api
        .get(&format!(
            "/api/instances?status=Running,Pending&prefix={greet}"
        ))
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = body["instances"].as_array().context("instances")?;
    assert_eq!(listed.len(), 1, "{body}");
    assert_eq!(listed[0]["instanceId"], json!(greet));
    let (status, body) = api
        .get("/api/instances?status=Completed&pageSize=1")
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["instances"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    assert!(
        body["continuationToken"].is_string(),
        "two completed: {body}"
    );

    // Raise the event; the orchestration completes with it.
    let (status, body) = api
        .post(
            &format!("/api/instances/{greet}/raiseEvent/approve"),
            Some(r#""Grace""#),
        )
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let done = api.wait_for_completion(&greet).await?;
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    assert_eq!(done["output"], json!("Hello, Ada! (Grace)"));

    // Events to a finished instance are refused.
    let (status, body) = api
        .post(
            &format!("/api/instances/{greet}/raiseEvent/approve"),
            Some("1"),
        )
        .await?;
    assert_eq!(status, StatusCode::GONE, "{body}");

    // Purge, then it is gone.
    let (status, body) = api.delete(&format!("/api/instances/{greet}")).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"deletedInstanceCount": 1}));
    let (status, _) = api.status(&greet).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = api.delete(&format!("/api/instances/{greet}")).await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    Ok(())
}

#[tokio::test]
async fn terminate_suspend_and_resume() -> Result<()> {
    let api = Fixture::start(true).await?;

    // Terminate with a reason recorded as output.
    let id = unique("term");
    api.start_orchestration("greet", Some(&id), Some(json!("Bob")))
        .await?;
    let (status, body) = api
        .post(
            &format!("/api/instances/{id}/terminate"),
            Some(r#"{"reason":"stop"}"#),
        )
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let done = api.wait_for_completion(&id).await?;
    assert_eq!(done["runtimeStatus"], "Terminated", "{done}");
    assert_eq!(done["output"], json!({"reason": "stop"}));
    let (status, body) = api
        .post(&format!("/api/instances/{id}/terminate"), None)
        .await?;
    assert_eq!(status, StatusCode::GONE, "{body}");

    // Suspend: the event raised meanwhile is held back until resume.
    let id = unique("susp");
    api.start_orchestration("greet", Some(&id), Some(json!("Cy")))
        .await?;
    api.wait_for(&id, |_, body| body["runtimeStatus"] == "Running")
        .await?;
    let (status, body) = api
        .post(
            &format!("/api/instances/{id}/suspend?reason=maintenance"),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let suspended = api
        .wait_for(&id, |_, body| body["runtimeStatus"] == "Suspended")
        .await?;
    assert_eq!(suspended["output"], Value::Null);
    let (status, _) = api
        .post(
            &format!("/api/instances/{id}/raiseEvent/approve"),
            Some(r#""Dee""#),
        )
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, body) = api.status(&id).await?;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "suspended is not terminal: {body}"
    );
    assert_eq!(body["runtimeStatus"], "Suspended", "{body}");

    let (status, body) = api
        .post(&format!("/api/instances/{id}/resume?reason=done"), None)
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let done = api.wait_for_completion(&id).await?;
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    assert_eq!(done["output"], json!("Hello, Cy! (Dee)"));

    // Without an allow-list any name starts; an unregistered one fails in the worker.
    let id = unique("nope");
    api.start_orchestration("nope", Some(&id), None).await?;
    let failed = api.wait_for_completion(&id).await?;
    assert_eq!(failed["runtimeStatus"], "Failed", "{failed}");
    assert!(
        failed["failureDetails"]["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("nope")),
        "{failed}"
    );
    Ok(())
}

#[tokio::test]
async fn client_errors_are_json() -> Result<()> {
    // No worker needed: instances stay Pending.
    let api = Fixture::start(false).await?;

    // Unknown instance: 404 on every instance route.
    let (status, body) = api.status("does-not-exist").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("does-not-exist")),
        "{body}"
    );
    for path in [
        "/api/instances/does-not-exist/raiseEvent/approve",
        "/api/instances/does-not-exist/terminate",
        "/api/instances/does-not-exist/suspend",
        "/api/instances/does-not-exist/resume",
    ] {
        let (status, body) = api.post(path, None).await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let (status, body) = api.delete("/api/instances/does-not-exist").await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Bad JSON body: 400 naming the parse problem.
    let (status, body) = api
        .post("/api/orchestrators/greet", Some("{not json"))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let error = body["error"].as_str().context("error")?;
    assert!(
        error.contains("not valid JSON") && error.contains("line 1"),
        "{error}"
    );

    // Duplicate instance id: 409.
    let id = unique("dup");
    api.start_orchestration("greet", Some(&id), None).await?;
    let response = api
        .http
        .post(api.url(&format!("/api/orchestrators/greet?instanceId={id}")))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: Value = response.json().await?;
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains(&id)),
        "{body}"
    );

    // Bad JSON for an event is rejected before reaching the sidecar.
    let (status, body) = api
        .post(
            &format!("/api/instances/{id}/raiseEvent/approve"),
            Some("[1,"),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Invalid status filter / page size: 400.
    let (status, body) = api.get("/api/instances?status=Sleeping").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("Sleeping") && e.contains("Running")),
        "{body}"
    );
    let (status, body) = api.get("/api/instances?pageSize=many").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].is_string(), "{body}");

    // Unknown route and wrong method: JSON too.
    let (status, body) = api.get("/api/nothing-here").await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = api.delete("/api/orchestrators/greet").await?;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");

    // Allow-list: unknown orchestrator names are refused with the known ones.
    let response = api
        .http
        .post(format!("{}/api/orchestrators/nope", api.allow_listed_base))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await?;
    assert_eq!(
        body,
        json!({"error": "no orchestrator named 'nope'; known: greet"})
    );
    let response = api
        .http
        .post(format!("{}/api/orchestrators/greet", api.allow_listed_base))
        .json(&json!("Eve"))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    Ok(())
}

#[tokio::test]
async fn sidecar_down_is_503() -> Result<()> {
    let port = free_port()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(durable::http::serve(
        listener,
        format!("127.0.0.1:{port}"),
        async {
            let _ = stopped.await;
        },
    ));
    let response = reqwest::get(format!("{base}/api/instances/x")).await?;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await?;
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("unavailable")),
        "{body}"
    );
    let health = reqwest::get(format!("{base}/healthz")).await?;
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = health.json().await?;
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("unavailable")),
        "{body}"
    );

    // Graceful shutdown ends `serve` with Ok.
    let _ = stop.send(());
    server.await??;
    Ok(())
}

#[tokio::test]
async fn only_allowed_hosts_and_token_holders_are_served() -> Result<()> {
    let api = Fixture::start(false).await?;
    // A spoofed Host (DNS rebinding) is refused, and never echoed into a URL.
    let spoofed = api
        .http
        .get(api.url("/api/instances"))
        .header(reqwest::header::HOST, "evil.example")
        .send()
        .await?;
    assert_eq!(spoofed.status(), StatusCode::MISDIRECTED_REQUEST);
    let body: Value = spoofed.json().await?;
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("evil.example")),
        "{body}"
    );
    let forwarded = api
        .http
        .get(api.url("/api/instances"))
        .header("x-forwarded-host", "evil.example")
        .send()
        .await?;
    assert_eq!(forwarded.status(), StatusCode::MISDIRECTED_REQUEST);
    // Loopback names are served.
    let local = api
        .http
        .get(api.url("/api/instances"))
        .header(reqwest::header::HOST, "localhost:7071")
        .send()
        .await?;
    assert_eq!(local.status(), StatusCode::OK);

    // With a token, requests without it are 401.
    let client = durable::DurableClient::connect_lazy(&durable::client::ConnectOptions::new(
        api.sidecar_endpoint.clone(),
    ))?;
    let options = durable::http::HttpOptions::new()
        .allow_host("orders.internal")
        .bearer_token("s3cret");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        axum::serve(listener, durable::http::router_with(client, options)).await
    });
    let anonymous = api.http.get(format!("{base}/api/instances")).send().await?;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // Probes send neither the token nor an allowed host: `/healthz` answers them.
    let probe = api
        .http
        .get(format!("{base}/healthz"))
        .header(reqwest::header::HOST, "10.0.0.7:8080")
        .send()
        .await?;
    assert_eq!(probe.status(), StatusCode::OK);
    assert_eq!(probe.json::<Value>().await?, json!({ "status": "ok" }));
    let wrong = api
        .http
        .get(format!("{base}/api/instances"))
        .bearer_auth("guess")
        .send()
        .await?;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let allowed = api
        .http
        .get(format!("{base}/api/instances"))
        .header(reqwest::header::HOST, "orders.internal")
        .bearer_auth("s3cret")
        .send()
        .await?;
    assert_eq!(allowed.status(), StatusCode::OK);
    Ok(())
}
