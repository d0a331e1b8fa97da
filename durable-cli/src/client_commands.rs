//! `durable list`, `show`, `start`, `raise`, `terminate`, `suspend`, `resume`, `purge`,
//! `rewind`, `restart`, `wait`: a command-line client of any Durable Task sidecar.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use durable::client::{ClientError, ConnectOptions, OrchestrationQuery, ScheduleOptions};
use durable::{DurableClient, OrchestrationState, RuntimeStatus};
use serde_json::{Value, json};

use crate::timeline;

/// Where the client commands connect, and how they print.
#[derive(Args)]
pub(crate) struct ClientArgs {
    /// The sidecar's address. Default: `DURABLE_SIDECAR`, else `http://127.0.0.1:4001` (what
    /// `durable sidecar` listens on).
    #[arg(long, global = true, value_name = "URL")]
    sidecar: Option<String>,
    /// Print JSON (one document) instead of text, for scripts.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
pub(crate) enum ClientCommand {
    /// List instances, newest first.
    List {
        /// Only instances in this status (repeatable).
        #[arg(long, value_enum)]
        status: Vec<Status>,
        /// Only orchestrations whose name starts with this.
        #[arg(long, value_name = "PREFIX")]
        name: Option<String>,
        /// Only instances whose id starts with this.
        #[arg(long, value_name = "PREFIX")]
        id_prefix: Option<String>,
        /// Only instances created since this: an RFC 3339 time or an age like `30m`, `2h`, `7d`.
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// At most this many rows.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show an instance: state, input, output, custom status, failure and its history.
    Show {
        /// The instance id.
        id: String,
    },
    /// Start an orchestration.
    Start {
        /// The orchestrator's registered name.
        name: String,
        /// The input, as JSON.
        #[arg(long, value_name = "JSON")]
        input: Option<String>,
        /// The instance id (default: a new random one).
        #[arg(long)]
        id: Option<String>,
        /// The orchestration version.
        #[arg(long)]
        version: Option<String>,
    },
    /// Raise an event to an instance.
    Raise {
        /// The instance id.
        id: String,
        /// The event name.
        event: String,
        /// The event data, as JSON.
        #[arg(long, value_name = "JSON")]
        data: Option<String>,
    },
    /// Terminate an instance.
    Terminate {
        /// The instance id.
        id: String,
        /// The output to record, as JSON.
        #[arg(long, value_name = "JSON")]
        output: Option<String>,
        /// Terminate its sub-orchestrations too.
        #[arg(long)]
        recursive: bool,
    },
    /// Suspend an instance.
    Suspend {
        /// The instance id.
        id: String,
        /// Why (recorded in the history).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a suspended instance.
    Resume {
        /// The instance id.
        id: String,
        /// Why (recorded in the history).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Delete a finished instance and its history.
    Purge {
        /// The instance id.
        id: String,
        /// Purge its sub-orchestrations too.
        #[arg(long)]
        recursive: bool,
    },
    /// Rewind a failed instance: its failed tasks run again.
    Rewind {
        /// The instance id.
        id: String,
        /// Why (recorded in the history).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Start a finished instance again with its original input.
    Restart {
        /// The instance id.
        id: String,
        /// Run the copy under a new instance id (the original may still be running).
        #[arg(long)]
        new_id: bool,
    },
    /// Wait until an instance finishes and print its state.
    Wait {
        /// The instance id.
        id: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300.0)]
        timeout: f64,
    },
}

/// A runtime status as written on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Status {
    Pending,
    Running,
    Completed,
    Failed,
    Terminated,
    Suspended,
    Canceled,
    ContinuedAsNew,
}

impl From<Status> for RuntimeStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Pending => RuntimeStatus::Pending,
            Status::Running => RuntimeStatus::Running,
            Status::Completed => RuntimeStatus::Completed,
            Status::Failed => RuntimeStatus::Failed,
            Status::Terminated => RuntimeStatus::Terminated,
            Status::Suspended => RuntimeStatus::Suspended,
            Status::Canceled => RuntimeStatus::Canceled,
            Status::ContinuedAsNew => RuntimeStatus::ContinuedAsNew,
        }
    }
}

/// Runs a client command; the error is the message to print.
pub(crate) async fn run(args: ClientArgs, command: ClientCommand) -> Result<(), String> {
    let endpoint = args
        .sidecar
        .or_else(|| {
            std::env::var("DURABLE_SIDECAR")
                .ok()
                .filter(|s| !s.trim().is_empty())
        })
        .unwrap_or_else(|| "http://127.0.0.1:4001".to_owned());
    let mut options = ConnectOptions::new(endpoint.clone()).connect_timeout(Duration::from_secs(5));
    if let Ok(token) = std::env::var("DURABLE_TOKEN") {
        options = options.header("authorization", format!("Bearer {}", token.trim()));
    }
    let unreachable = |e: ClientError| {
        format!(
            "cannot reach the sidecar at {endpoint}: {e}\n(start one with `durable sidecar`, or point --sidecar / DURABLE_SIDECAR at a running one)"
        )
    };
    let client = DurableClient::connect_with(&options)
        .await
        .map_err(unreachable)?;
    client.hello().await.map_err(unreachable)?;
    let out = Output { json: args.json };
    let failed = |e: ClientError| e.to_string();
    match command {
        ClientCommand::List {
            status,
            name,
            id_prefix,
            since,
            limit,
        } => {
            let mut query = OrchestrationQuery::new().page_size(100);
            for s in status {
                query = query.status(s.into());
            }
            if let Some(prefix) = id_prefix {
                query = query.instance_id_prefix(prefix);
            }
            if let Some(since) = since {
                query = query.created_between(parse_since(&since)?, Utc::now());
            }
            let mut rows = Vec::new();
            loop {
                let page = client.query_orchestrations(&query).await.map_err(failed)?;
                rows.extend(
                    page.items
                        .into_iter()
                        .filter(|s| name.as_ref().is_none_or(|p| s.name.starts_with(p.as_str()))),
                );
                match page.continuation_token {
                    Some(token) if rows.len() < limit => {
                        query = query.continuation_token(token);
                    }
                    _ => break,
                }
            }
            rows.sort_by_key(|r| std::cmp::Reverse(r.created_at));
            rows.truncate(limit);
            out.list(&rows);
        }
        ClientCommand::Show { id } => {
            let state = client
                .get_orchestration_state(&id)
                .await
                .map_err(failed)?
                .ok_or_else(|| format!("no instance `{id}` on the sidecar at {endpoint}"))?;
            let history = client.get_history(&id).await.map_err(failed)?;
            out.show(&state, &history);
        }
        ClientCommand::Start {
            name,
            input,
            id,
            version,
        } => {
            let input = parse_json("--input", input.as_deref())?;
            let mut options = ScheduleOptions::new();
            if let Some(id) = id {
                options = options.instance_id(id);
            }
            if let Some(version) = version {
                options = options.version(version);
            }
            let id = client
                .schedule_new_orchestration_by_name(&name, &input, options)
                .await
                .map_err(failed)?;
            out.done(
                &format!("started {name} as {id}"),
                json!({ "instance_id": id }),
            );
        }
        ClientCommand::Raise { id, event, data } => {
            let data = parse_json("--data", data.as_deref())?;
            client
                .raise_orchestration_event(&id, &event, &data)
                .await
                .map_err(failed)?;
            out.done(
                &format!("raised {event} to {id}"),
                json!({ "instance_id": id }),
            );
        }
        ClientCommand::Terminate {
            id,
            output,
            recursive,
        } => {
            let output = parse_json("--output", output.as_deref())?;
            client
                .terminate_orchestration_with_output(&id, &output, recursive)
                .await
                .map_err(failed)?;
            out.done(&format!("terminating {id}"), json!({ "instance_id": id }));
        }
        ClientCommand::Suspend { id, reason } => {
            client
                .suspend_orchestration(&id, reason.as_deref())
                .await
                .map_err(failed)?;
            out.done(&format!("suspended {id}"), json!({ "instance_id": id }));
        }
        ClientCommand::Resume { id, reason } => {
            client
                .resume_orchestration(&id, reason.as_deref())
                .await
                .map_err(failed)?;
            out.done(&format!("resumed {id}"), json!({ "instance_id": id }));
        }
        ClientCommand::Purge { id, recursive } => {
            let purged = client
                .purge_orchestration(&id, recursive)
                .await
                .map_err(failed)?;
            let deleted = purged.deleted_instance_count;
            out.done(
                &format!("purged {deleted} instance(s)"),
                json!({ "deleted_instance_count": deleted }),
            );
        }
        ClientCommand::Rewind { id, reason } => {
            client
                .rewind_orchestration(&id, reason.as_deref())
                .await
                .map_err(failed)?;
            out.done(&format!("rewinding {id}"), json!({ "instance_id": id }));
        }
        ClientCommand::Restart { id, new_id } => {
            let restarted = client
                .restart_orchestration(&id, new_id)
                .await
                .map_err(failed)?;
            out.done(
                &format!("restarted {id} as {restarted}"),
                json!({ "instance_id": restarted }),
            );
        }
        ClientCommand::Wait { id, timeout } => {
            let timeout = Duration::try_from_secs_f64(timeout)
                .map_err(|_| "--timeout takes a positive number of seconds".to_owned())?;
            let state = wait(&client, &id, timeout, !args.json)
                .await
                .map_err(failed)?;
            out.show(&state, &[]);
        }
    }
    Ok(())
}

/// Waits for completion in slices, printing progress on stderr while it waits.
async fn wait(
    client: &DurableClient,
    id: &str,
    timeout: Duration,
    progress: bool,
) -> Result<OrchestrationState, ClientError> {
    let started = Instant::now();
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        let slice = left.min(Duration::from_secs(5));
        match client.wait_for_orchestration_completion(id, slice).await {
            Err(ClientError::Timeout(_)) if !left.is_zero() && slice < left => {
                if progress {
                    let status = client
                        .get_orchestration_state(id)
                        .await?
                        .map_or("gone".to_owned(), |s| {
                            status_text(s.runtime_status).to_owned()
                        });
                    eprintln!(
                        "waiting for {id}: {status} after {}s",
                        started.elapsed().as_secs()
                    );
                }
            }
            other => return other,
        }
    }
}

/// Appends a line to the text being built.
macro_rules! out {
    ($o:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($o, $($arg)*);
    }};
}

/// Writes `text` to stdout; a closed pipe (`durable list | head`) is not an error.
fn emit(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// How results are printed: text tables, or JSON.
struct Output {
    json: bool,
}

impl Output {
    fn list(&self, rows: &[OrchestrationState]) {
        let o = &mut String::new();
        if self.json {
            let rows: Vec<Value> = rows.iter().map(state_json).collect();
            out!(o, "{}", Value::Array(rows));
            return emit(o);
        }
        if rows.is_empty() {
            out!(o, "no instances");
            return emit(o);
        }
        let id_width = rows
            .iter()
            .map(|r| r.instance_id.len())
            .max()
            .unwrap_or(2)
            .max(2);
        let name_width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
        out!(
            o,
            "{:<id_width$}  {:<name_width$}  {:<15}  {:<20}  {:<20}",
            "ID",
            "NAME",
            "STATUS",
            "CREATED",
            "UPDATED"
        );
        for r in rows {
            out!(
                o,
                "{:<id_width$}  {:<name_width$}  {:<15}  {:<20}  {:<20}",
                r.instance_id,
                r.name,
                status_text(r.runtime_status),
                r.created_at.format("%Y-%m-%d %H:%M:%S"),
                r.last_updated_at.format("%Y-%m-%d %H:%M:%S"),
            );
        }
        emit(o);
    }

    fn show(&self, state: &OrchestrationState, history: &[durable::proto::HistoryEvent]) {
        let o = &mut String::new();
        if self.json {
            let mut doc = state_json(state);
            if !history.is_empty() {
                doc["history"] = Value::Array(
                    timeline::lines(history)
                        .into_iter()
                        .map(Value::String)
                        .collect(),
                );
            }
            out!(o, "{doc}");
            return emit(o);
        }
        out!(o, "instance   {}", state.instance_id);
        out!(
            o,
            "name       {}{}",
            state.name,
            state
                .version
                .as_deref()
                .map(|v| format!(" (version {v})"))
                .unwrap_or_default()
        );
        out!(o, "status     {}", status_text(state.runtime_status));
        out!(o, "created    {}", state.created_at.to_rfc3339());
        out!(o, "updated    {}", state.last_updated_at.to_rfc3339());
        if let Some(parent) = &state.parent_instance_id {
            out!(o, "parent     {parent}");
        }
        out!(
            o,
            "input      {}",
            timeline::payload(state.serialized_input.as_deref())
        );
        out!(
            o,
            "output     {}",
            timeline::payload(state.serialized_output.as_deref())
        );
        if let Some(status) = &state.serialized_custom_status {
            out!(o, "custom     {}", timeline::payload(Some(status)));
        }
        if let Some(failure) = &state.failure_details {
            out!(o, "failure    {}: {}", failure.error_type, failure.message);
        }
        if !history.is_empty() {
            out!(o, "history");
            for line in timeline::lines(history) {
                out!(o, "  {line}");
            }
        }
        emit(o);
    }

    fn done(&self, text: &str, doc: Value) {
        let o = &mut String::new();
        if self.json {
            out!(o, "{doc}");
        } else {
            out!(o, "{text}");
        }
        emit(o);
    }
}

fn state_json(s: &OrchestrationState) -> Value {
    let payload = |raw: &Option<String>| {
        raw.as_deref()
            .map(|p| serde_json::from_str(p).unwrap_or_else(|_| Value::String(p.to_owned())))
            .unwrap_or(Value::Null)
    };
    json!({
        "instance_id": s.instance_id,
        "name": s.name,
        "version": s.version,
        "status": status_text(s.runtime_status),
        "created_at": s.created_at.to_rfc3339(),
        "last_updated_at": s.last_updated_at.to_rfc3339(),
        "completed_at": s.completed_at.map(|t| t.to_rfc3339()),
        "parent_instance_id": s.parent_instance_id,
        "input": payload(&s.serialized_input),
        "output": payload(&s.serialized_output),
        "custom_status": payload(&s.serialized_custom_status),
        "failure": s.failure_details.as_ref().map(|f| json!({
            "error_type": f.error_type,
            "message": f.message,
        })),
        "tags": s.tags,
    })
}

fn status_text(status: RuntimeStatus) -> &'static str {
    match status {
        RuntimeStatus::Pending => "PENDING",
        RuntimeStatus::Running => "RUNNING",
        RuntimeStatus::Completed => "COMPLETED",
        RuntimeStatus::ContinuedAsNew => "CONTINUED_AS_NEW",
        RuntimeStatus::Failed => "FAILED",
        RuntimeStatus::Canceled => "CANCELED",
        RuntimeStatus::Terminated => "TERMINATED",
        RuntimeStatus::Suspended => "SUSPENDED",
    }
}

/// A JSON argument (`null` when absent), or a message naming the flag.
fn parse_json(flag: &str, text: Option<&str>) -> Result<Value, String> {
    match text {
        None => Ok(Value::Null),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            format!("{flag} must be JSON ({e}); a string needs quotes: {flag} '\"Tokyo\"'")
        }),
    }
}

/// `--since`: an RFC 3339 time, or an age (`90s`, `30m`, `2h`, `7d`) before now.
fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let bad = || format!("--since takes an RFC 3339 time or an age like 30m, 2h, 7d; got `{text}`");
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number.parse().map_err(|_| bad())?;
    let age = match unit {
        "s" => chrono::Duration::seconds(n),
        "m" => chrono::Duration::minutes(n),
        "h" => chrono::Duration::hours(n),
        "d" => chrono::Duration::days(n),
        _ => return Err(bad()),
    };
    Ok(Utc::now() - age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_ages_and_times() {
        let hour_ago = parse_since("1h").unwrap();
        let age = Utc::now() - hour_ago;
        assert!((age.num_seconds() - 3600).abs() < 5);
        assert_eq!(
            parse_since("2026-01-02T03:04:05Z").unwrap().to_rfc3339(),
            "2026-01-02T03:04:05+00:00"
        );
        assert!(parse_since("soon").unwrap_err().contains("30m"));
    }

    #[test]
    fn json_arguments_say_how_to_quote() {
        assert_eq!(parse_json("--input", None).unwrap(), Value::Null);
        assert_eq!(parse_json("--input", Some("[1,2]")).unwrap(), json!([1, 2]));
        assert!(
            parse_json("--input", Some("Tokyo"))
                .unwrap_err()
                .contains("'\"Tokyo\"'")
        );
    }
}
