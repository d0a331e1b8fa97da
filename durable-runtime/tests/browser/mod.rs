//! A headless Chromium driven over the Chrome DevTools Protocol, for the dashboard test: load
//! pages, read the DOM, click with real mouse events, type, take screenshots.
//!
//! The protocol runs over a WebSocket; the few framing rules a client needs (masked text
//! frames out, unmasked frames in, pings answered) are written out here, so the test needs no
//! browser-automation crate.
//!
//! No Chromium: the test is skipped (saying why), unless `DURABLE_REQUIRE_CHROMIUM` is set
//! (`.ci/run` sets it), which makes it fail.

#![allow(dead_code, unreachable_pub, missing_docs)] // test helpers

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

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
    socket: WebSocket,
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
        let socket = WebSocket::connect(&page_url).await?;
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
        self.socket.send(&message.to_string()).await?;
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let text = tokio::time::timeout(left, self.socket.receive())
                .await
                .with_context(|| format!("no answer to {method} within {WAIT:?}"))??;
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
        std::fs::write(path, base64_decode(data)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Closes the browser and removes its profile.
    pub async fn close(mut self) {
        let _ = self
            .socket
            .send(r#"{"id":0,"method":"Browser.close"}"#)
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The client side of a WebSocket (RFC 6455), text messages only.
struct WebSocket {
    stream: BufReader<TcpStream>,
}

impl WebSocket {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| anyhow!("not a ws:// URL: {url}"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut stream = BufReader::new(TcpStream::connect(authority).await?);
        let request = format!(
            "GET /{path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: ZHVyYWJsZS1kYXNoYm9hcmQ=\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.get_mut().write_all(request.as_bytes()).await?;
        let mut status = String::new();
        stream.read_line(&mut status).await?;
        if !status.contains(" 101 ") {
            bail!(
                "the DevTools server refused the WebSocket: {}",
                status.trim()
            );
        }
        loop {
            let mut header = String::new();
            if stream.read_line(&mut header).await? == 0 || header == "\r\n" {
                break;
            }
        }
        Ok(Self { stream })
    }

    async fn send(&mut self, text: &str) -> anyhow::Result<()> {
        self.send_frame(0x1, text.as_bytes()).await
    }

    /// One final frame with `opcode`; client frames are masked.
    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> anyhow::Result<()> {
        let mut frame = vec![0x80 | opcode];
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | u8::try_from(len)?);
        } else if let Ok(len) = u16::try_from(len) {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&len.to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&u64::try_from(len)?.to_be_bytes());
        }
        let mask: [u8; 4] = rand::random();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.get_mut().write_all(&frame).await?;
        Ok(())
    }

    /// The next text message (fragments joined; pings answered).
    async fn receive(&mut self) -> anyhow::Result<String> {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head).await?;
            let fin = head[0] & 0x80 != 0;
            let opcode = head[0] & 0x0f;
            let len = match head[1] & 0x7f {
                126 => u64::from(self.stream.read_u16().await?),
                127 => self.stream.read_u64().await?,
                n => u64::from(n),
            };
            let mask = if head[1] & 0x80 != 0 {
                let mut mask = [0u8; 4];
                self.stream.read_exact(&mut mask).await?;
                Some(mask)
            } else {
                None
            };
            let mut payload = vec![0u8; usize::try_from(len)?];
            self.stream.read_exact(&mut payload).await?;
            if let Some(mask) = mask {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            match opcode {
                0x0 | 0x1 => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return Ok(String::from_utf8(message)?);
                    }
                }
                0x8 => bail!("the DevTools server closed the WebSocket"),
                0x9 => self.send_frame(0xA, &payload).await?,
                _ => {}
            }
        }
    }
}

/// Standard base64 (with padding), as screenshots arrive.
fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    let value = |c: u8| -> anyhow::Result<u32> {
        Ok(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => bail!("invalid base64 byte {c}"),
        })
    };
    let bytes: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let [_, a, b, c] = n.to_be_bytes();
        out.push(a);
        if chunk.len() > 2 {
            out.push(b);
        }
        if chunk.len() > 3 {
            out.push(c);
        }
    }
    Ok(out)
}

#[test]
fn base64_decodes_padding() {
    assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
    assert_eq!(base64_decode("aGkh").unwrap(), b"hi!");
    assert_eq!(base64_decode("aA==").unwrap(), b"h");
}
