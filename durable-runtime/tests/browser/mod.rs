//! A headless Chromium driven over the Chrome DevTools Protocol, for the dashboard test: load
//! pages, read the DOM, click with real mouse events, type, take screenshots.
//!
//! The protocol is JSON commands and replies over a WebSocket (`tokio-tungstenite`); the few
//! commands the test needs are written out here, so it needs no browser-automation crate.
//!
//! No Chromium: the test is skipped (saying why), unless `DURABLE_REQUIRE_CHROMIUM` is set
//! (`.ci/run` sets it), which makes it fail.

#![allow(dead_code, unreachable_pub, missing_docs)] // test helpers

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The page's DevTools connection (plain `ws://` on loopback).
type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a page may take to reach a state the test waits for.
pub const WAIT: Duration = Duration::from_secs(20);

/// The Chromium binary: `$DURABLE_CHROMIUM`, else the first of the usual names on `PATH`.
/// `None` means: skip (it panics instead when `DURABLE_REQUIRE_CHROMIUM` is set).
pub fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("DURABLE_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path).find_map(|dir| {
                [
                    "chromium",
                    "chromium-browser",
                    "google-chrome",
                    "google-chrome-stable",
                ]
                .iter()
                .map(|name| dir.join(name))
                .find(|candidate| candidate.is_file())
            })
        });
    if found.is_none() {
        assert!(
            std::env::var_os("DURABLE_REQUIRE_CHROMIUM").is_none(),
            "Chromium is required (DURABLE_REQUIRE_CHROMIUM) but not installed: apt-get install chromium"
        );
        eprintln!(
            "SKIPPED: no Chromium for the dashboard test (apt-get install chromium, or set DURABLE_CHROMIUM)"
        );
    }
    found
}

/// Where the test's screenshots go: `<target>/dashboard-artifacts/`.
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("dashboard-artifacts");
    std::fs::create_dir_all(&dir).expect("the artifacts directory can be created");
    dir
}

/// One headless Chromium with one page; killed on drop.
pub struct Browser {
    child: Child,
    socket: Socket,
    next_id: u64,
    profile: PathBuf,
}

impl Browser {
    /// Starts `binary` headless with a fresh profile and a `width`×`height` viewport.
    pub async fn launch(binary: &Path, width: u32, height: u32) -> anyhow::Result<Self> {
        let profile = std::env::temp_dir().join(format!(
            "durable-chromium-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&profile)?;
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--disable-gpu",
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--mute-audio",
                "--force-color-profile=srgb",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        // Chromium prints `DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID`.
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let browser_url = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    return Ok(url.trim().to_owned());
                }
                seen.push(line);
            }
            Err(anyhow!(
                "Chromium exited before it listened:\n{}",
                seen.join("\n")
            ))
        })
        .await
        .context("Chromium did not start its DevTools server in time")??;
        // Keep draining its log so Chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let authority = browser_url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .ok_or_else(|| anyhow!("unexpected DevTools URL {browser_url}"))?
            .to_owned();
        let targets: Value = reqwest::get(format!("http://{authority}/json/list"))
            .await?
            .json()
            .await?;
        let page_url = targets
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .ok_or_else(|| anyhow!("Chromium has no page target: {targets}"))?
            .to_owned();
        let (socket, _) = tokio_tungstenite::connect_async(page_url.as_str())
            .await
            .with_context(|| format!("connecting to the DevTools page at {page_url}"))?;
        let mut browser = Self {
            child,
            socket,
            next_id: 0,
            profile,
        };
        browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
            )
            .await?;
        Ok(browser)
    }

    /// Sends one DevTools command and returns its result (events in between are skipped).
    pub async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({ "id": id, "method": method, "params": params });
        self.socket.send(Message::text(message.to_string())).await?;
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(left, self.socket.next())
                .await
                .with_context(|| format!("no answer to {method} within {WAIT:?}"))?;
            let text = match next.transpose()? {
                Some(Message::Text(text)) => text,
                Some(Message::Close(_)) | None => {
                    bail!("the DevTools server closed the WebSocket")
                }
                // tungstenite answers pings itself; DevTools sends nothing else we need.
                Some(_) => continue,
            };
            let reply: Value = serde_json::from_str(&text)?;
            if reply["id"] != id {
                continue;
            }
            if let Some(error) = reply.get("error") {
                bail!("{method} failed: {error}");
            }
            return Ok(reply["result"].clone());
        }
    }

    /// Loads `url` (the DOM is then checked with [`Browser::wait_for`]).
    pub async fn navigate(&mut self, url: &str) -> anyhow::Result<()> {
        let result = self.call("Page.navigate", json!({ "url": url })).await?;
        if let Some(error) = result.get("errorText") {
            bail!("navigating to {url} failed: {error}");
        }
        Ok(())
    }

    /// Evaluates `expression` in the page (promises awaited) and returns its JSON value.
    pub async fn eval(&mut self, expression: &str) -> anyhow::Result<Value> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(details) = result.get("exceptionDetails") {
            bail!("`{expression}` threw: {details}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Polls `expression` until it is truthy and returns that value; fails after [`WAIT`]
    /// with `what` and the page's text. While a page loads the expression may throw (its
    /// elements are not there yet): that counts as not yet.
    pub async fn wait_for(&mut self, what: &str, expression: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + WAIT;
        let mut error = None;
        loop {
            let value = match self.eval(expression).await {
                Ok(value) => value,
                Err(e) => {
                    error = Some(e);
                    Value::Null
                }
            };
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return Ok(value);
            }
            if Instant::now() > deadline {
                let text = self.eval("document.body?.innerText").await?;
                let error = error
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default();
                bail!(
                    "timed out waiting for {what} (`{expression}`){error}; the page shows:\n{}",
                    text.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element `selector` matches, as a user would: the mouse moves to its centre,
    /// presses and releases. Waits until the element is there, enabled and not covered.
    pub async fn click(&mut self, selector: &str) -> anyhow::Result<()> {
        let selector_json = serde_json::to_string(selector)?;
        let probe = format!(
            "(() => {{
                const el = document.querySelector({selector_json});
                if (!el || el.disabled) return null;
                el.scrollIntoView({{ block: 'center', inline: 'center' }});
                const r = el.getBoundingClientRect();
                if (r.width === 0 || r.height === 0) return null;
                const x = r.left + r.width / 2, y = r.top + r.height / 2;
                const top = document.elementFromPoint(x, y);
                return top && (top === el || el.contains(top)) ? {{ x, y }} : null;
            }})()"
        );
        let point = self
            .wait_for(&format!("a clickable {selector}"), &probe)
            .await?;
        let (x, y) = (point["x"].clone(), point["y"].clone());
        self.call(
            "Input.dispatchMouseEvent",
            json!({ "type": "mouseMoved", "x": x, "y": y }),
        )
        .await?;
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": 1 }),
            )
            .await?;
        }
        Ok(())
    }

    /// Types `text` into the focused element.
    pub async fn type_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.call("Input.insertText", json!({ "text": text }))
            .await?;
        Ok(())
    }

    /// Saves a PNG of the viewport to `path`.
    pub async fn screenshot(&mut self, path: &Path) -> anyhow::Result<()> {
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await?;
        let data = shot["data"]
            .as_str()
            .ok_or_else(|| anyhow!("no screenshot data"))?;
        let png = BASE64.decode(data).context("decoding the screenshot")?;
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Closes the browser and removes its profile.
    pub async fn close(mut self) {
        let _ = self
            .socket
            .send(Message::text(r#"{"id":0,"method":"Browser.close"}"#))
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
