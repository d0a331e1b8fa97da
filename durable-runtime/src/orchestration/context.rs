//! [`OrchestrationContext`]: everything an orchestrator may do, replay-safe.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::LocalBoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::retry::{RetryContext, RetryPolicy};
use super::task::{Outcome, Slot, Task};
use crate::activity::Activity;
use crate::convert::to_timestamp;
use crate::error::{FailureDetails, TaskError};
use crate::input::IntoInput;
use crate::orchestration::Orchestrator;
use crate::proto;
use crate::proto::orchestrator_action::OrchestratorActionType;

/// The namespace of deterministic GUIDs (the one the .NET SDK uses), so that ids are stable
/// across replays.
const GUID_NAMESPACE: uuid::Uuid = uuid::uuid!("9e952958-5e33-4daf-827f-2fa12937b875");

/// What kind of action an id was used for; compared against history during replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ActionKind {
    Activity,
    SubOrchestration,
    Timer,
    SendEvent,
    EntitySignal,
    EntityCall,
    EntityLock,
    EntityUnlock,
}

impl ActionKind {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            ActionKind::Activity => "activity",
            ActionKind::SubOrchestration => "sub-orchestration",
            ActionKind::Timer => "timer",
            ActionKind::SendEvent => "event sent to",
            ActionKind::EntitySignal => "entity signal",
            ActionKind::EntityCall => "entity call",
            ActionKind::EntityLock => "entity lock of",
            ActionKind::EntityUnlock => "entity unlock of",
        }
    }
}

/// An action scheduled in this run and not yet confirmed by history, kept compact: most
/// actions are confirmed by history and dropped, so the proto action is built only for those
/// that go into the response ([`into_action`](Self::into_action)).
pub(crate) enum PendingAction {
    /// An activity call; the name is shared with its task (and with other calls of it).
    Activity {
        name: Rc<str>,
        input: Option<String>,
        /// Version and tags given with [`ActivityOptions`]; most calls have none.
        options: Option<Box<ActivityCallOptions>>,
    },
    SubOrchestration(Box<proto::CreateSubOrchestrationAction>),
    Timer(prost_types::Timestamp),
    SendEvent(Box<proto::SendEventAction>),
    /// A signal, call, lock request or unlock for entities.
    Entity(Box<proto::SendEntityMessageAction>),
}

impl PendingAction {
    pub(crate) fn kind(&self) -> ActionKind {
        match self {
            PendingAction::Activity { .. } => ActionKind::Activity,
            PendingAction::SubOrchestration(_) => ActionKind::SubOrchestration,
            PendingAction::Timer(_) => ActionKind::Timer,
            PendingAction::SendEvent(_) => ActionKind::SendEvent,
            PendingAction::Entity(message) => super::entities::message_kind(message),
        }
    }

    /// What the action calls (activity or orchestrator name, `timer`, `instance/event`), for
    /// comparison with history and for error messages.
    pub(crate) fn name(&self) -> std::borrow::Cow<'_, str> {
        match self {
            PendingAction::Activity { name, .. } => (**name).into(),
            PendingAction::SubOrchestration(a) => a.name.as_str().into(),
            PendingAction::SendEvent(a) => format!(
                "{}/{}",
                a.instance
                    .as_ref()
                    .map_or("", |instance| instance.instance_id.as_str()),
                a.name
            )
            .into(),
            PendingAction::Timer(_) => "timer".into(),
            PendingAction::Entity(message) => super::entities::message_name(message).into(),
        }
    }

    /// Whether history's confirmation (kind and name) matches this action.
    pub(crate) fn matches(&self, kind: ActionKind, name: &str) -> bool {
        match self {
            PendingAction::Activity { name: own, .. } => {
                kind == ActionKind::Activity && **own == *name
            }
            PendingAction::SubOrchestration(a) => {
                kind == ActionKind::SubOrchestration && a.name == name
            }
            PendingAction::Timer(_) => kind == ActionKind::Timer && name == "timer",
            PendingAction::SendEvent(_) => kind == ActionKind::SendEvent && self.name() == name,
            PendingAction::Entity(_) => kind == self.kind() && self.name() == name,
        }
    }

    /// The wire action with this id. An activity or sub-orchestration without a version of
    /// its own gets the orchestration's (as the official SDKs do for activities), so version
    /// filters and versioned workers see it.
    pub(crate) fn into_action(
        self,
        id: i32,
        orchestration_version: Option<&str>,
    ) -> proto::OrchestratorAction {
        let action = match self {
            PendingAction::Activity {
                name,
                input,
                options,
            } => {
                let ActivityCallOptions { version, tags } = options.map(|o| *o).unwrap_or_default();
                let inherited = orchestration_version.filter(|v| !v.is_empty());
                OrchestratorActionType::ScheduleTask(proto::ScheduleTaskAction {
                    name: name.to_string(),
                    version: version.or_else(|| inherited.map(str::to_owned)),
                    input,
                    tags,
                    parent_trace_context: None,
                })
            }
            PendingAction::SubOrchestration(mut a) => {
                if a.version.is_none() {
                    a.version = orchestration_version
                        .filter(|v| !v.is_empty())
                        .map(str::to_owned);
                }
                OrchestratorActionType::CreateSubOrchestration(*a)
            }
            PendingAction::Timer(fire_at) => {
                OrchestratorActionType::CreateTimer(proto::CreateTimerAction {
                    fire_at: Some(fire_at),
                })
            }
            PendingAction::SendEvent(a) => OrchestratorActionType::SendEvent(*a),
            PendingAction::Entity(m) => OrchestratorActionType::SendEntityMessage(*m),
        };
        proto::OrchestratorAction {
            id,
            orchestrator_action_type: Some(action),
        }
    }
}

/// One action id: the action until history confirms it, and the task waiting for its result
/// until history delivers it. One table for both keeps an action's bookkeeping together.
#[derive(Default)]
pub(crate) struct ActionEntry {
    pending: Option<PendingAction>,
    /// Sent to the sidecar by an earlier episode of a resumed execution, not confirmed yet.
    sent: bool,
    task: Option<Rc<Slot>>,
}

/// An external event that arrived before anyone waited for it.
pub(crate) struct BufferedEvent {
    pub(crate) name: String,
    pub(crate) payload: Option<String>,
    /// Its place in history order (a completion sequence number), so `when_any` and
    /// continue-as-new see events in arrival order.
    pub(crate) seq: u64,
}

/// A continue-as-new request recorded by the orchestrator.
pub(crate) struct ContinueAsNew {
    pub(crate) input: Result<String, String>,
    pub(crate) save_events: bool,
    pub(crate) version: Option<String>,
}

/// The mutable state of one orchestration episode, shared by the context and the executor.
pub(crate) struct State {
    pub(crate) instance_id: String,
    pub(crate) execution_id: String,
    pub(crate) name: String,
    pub(crate) version: Option<String>,
    pub(crate) parent_instance_id: Option<String>,
    pub(crate) current_time: DateTime<Utc>,
    pub(crate) is_replaying: bool,
    next_id: i32,
    guid_counter: u64,
    /// Actions scheduled in this run that history has not confirmed yet and tasks waiting
    /// for a result event, indexed by action id (ids are dense from 0, so a vector gives O(1)
    /// lookups without hashing).
    pub(crate) actions: Vec<ActionEntry>,
    /// Entries below this id were sent or confirmed (an episode's response takes the
    /// actions from here on).
    sent_up_to: usize,
    /// Waiters for external events, by lower-cased name, oldest first.
    pub(crate) event_waiters: HashMap<String, VecDeque<Rc<Slot>>>,
    /// Events nobody waited for yet, by lower-cased name, oldest first.
    pub(crate) event_buffer: HashMap<String, VecDeque<BufferedEvent>>,
    /// Counts completions, so combinators know history order.
    pub(crate) completion_seq: u64,
    pub(crate) custom_status: Option<String>,
    pub(crate) continue_as_new: Option<ContinueAsNew>,
    /// A misuse found by a context call that cannot return an error (a payload that does not
    /// serialize); the executor fails the orchestration with it.
    pub(crate) fatal: Option<FailureDetails>,
    /// The name of the latest scheduled task, shared by the next task with the same name.
    last_name: Option<Rc<str>>,
    /// Futures the SDK runs beside the orchestrator (retry loops), drained by the executor.
    pub(crate) spawned: Vec<LocalBoxFuture<'static, ()>>,
    /// Entity calls waiting for their result, by request id: the action id and the target.
    pub(crate) entity_calls: HashMap<String, (i32, crate::entity::EntityId)>,
    /// Lock requests waiting for their grant, by critical section id: the action id.
    pub(crate) lock_requests: HashMap<String, i32>,
    /// The critical section this orchestration is in (or is acquiring).
    pub(crate) critical_section: Option<super::entities::CriticalSection>,
}

impl State {
    pub(crate) fn new(instance_id: String) -> Self {
        Self {
            instance_id,
            execution_id: String::new(),
            name: String::new(),
            version: None,
            parent_instance_id: None,
            current_time: DateTime::<Utc>::UNIX_EPOCH,
            is_replaying: false,
            next_id: 0,
            guid_counter: 0,
            actions: Vec::new(),
            sent_up_to: 0,
            event_waiters: HashMap::new(),
            event_buffer: HashMap::new(),
            completion_seq: 0,
            custom_status: None,
            continue_as_new: None,
            fatal: None,
            last_name: None,
            spawned: Vec::new(),
            entity_calls: HashMap::new(),
            lock_requests: HashMap::new(),
            critical_section: None,
        }
    }

    pub(crate) fn next_id(&mut self) -> i32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub(crate) fn next_completion_seq(&mut self) -> u64 {
        self.completion_seq += 1;
        self.completion_seq
    }

    /// Takes the next id for `action`; `waits` registers a task for its result. `name` is
    /// the task's name for error messages.
    pub(crate) fn schedule(
        &mut self,
        name: &str,
        action: PendingAction,
        waits: bool,
    ) -> (i32, Rc<Slot>) {
        let shared = match &action {
            PendingAction::Activity { name, .. } => name.clone(),
            _ => self.shared_name(name),
        };
        self.schedule_named(shared, action, waits)
    }

    /// The name of the latest scheduled task when it is `name`, else a fresh one.
    fn shared_name(&mut self, name: &str) -> Rc<str> {
        match &self.last_name {
            Some(last) if **last == *name => last.clone(),
            _ => {
                let fresh: Rc<str> = Rc::from(name);
                self.last_name = Some(fresh.clone());
                fresh
            }
        }
    }

    fn schedule_named(
        &mut self,
        name: Rc<str>,
        action: PendingAction,
        waits: bool,
    ) -> (i32, Rc<Slot>) {
        let id = self.next_id();
        let slot = Slot::named(name);
        let index = usize::try_from(id).expect("action ids start at 0 and only grow");
        if self.actions.len() <= index {
            self.actions.resize_with(index + 1, ActionEntry::default);
        }
        let entry = &mut self.actions[index];
        entry.pending = Some(action);
        if waits {
            entry.task = Some(slot.clone());
        }
        (id, slot)
    }

    /// Removes the unconfirmed action with this id.
    pub(crate) fn take_pending(&mut self, id: i32) -> Option<PendingAction> {
        let index = usize::try_from(id).ok()?;
        self.actions.get_mut(index)?.pending.take()
    }

    /// Removes the task waiting for the result with this id.
    pub(crate) fn take_open_task(&mut self, id: i32) -> Option<Rc<Slot>> {
        let index = usize::try_from(id).ok()?;
        self.actions.get_mut(index)?.task.take()
    }

    /// Whether the action with this id was sent by an earlier episode and not confirmed yet;
    /// it counts as confirmed from now on.
    pub(crate) fn confirm_sent(&mut self, id: i32) -> bool {
        let Ok(index) = usize::try_from(id) else {
            return false;
        };
        self.actions
            .get_mut(index)
            .is_some_and(|entry| std::mem::take(&mut entry.sent))
    }

    /// The actions history has not confirmed and no earlier episode sent, in id order, as
    /// wire actions; they count as sent from now on.
    pub(crate) fn take_unsent(&mut self) -> Vec<proto::OrchestratorAction> {
        let version = self.version.as_deref();
        let from = self.sent_up_to.min(self.actions.len());
        self.sent_up_to = self.actions.len();
        let mut actions = Vec::new();
        for (entry, index) in self.actions[from..].iter_mut().zip(from..) {
            if let Some(pending) = entry.pending.take() {
                entry.sent = true;
                let id = i32::try_from(index).expect("action ids are i32");
                actions.push(pending.into_action(id, version));
            }
        }
        actions
    }
}

/// Options for a sub-orchestration call.
///
/// ```
/// use std::time::Duration;
/// use durable::{RetryPolicy, SubOrchestratorOptions};
/// let options = SubOrchestratorOptions::new()
///     .instance_id("order-42-shipping")
///     .version("2.0.0")
///     .retry(RetryPolicy::new(3, Duration::from_secs(5)));
/// # let _ = options;
/// ```
#[derive(Clone, Debug, Default)]
pub struct SubOrchestratorOptions {
    instance_id: Option<String>,
    version: Option<String>,
    retry: Option<RetryPolicy>,
    tags: HashMap<String, String>,
}

impl SubOrchestratorOptions {
    /// Default options: a generated, deterministic instance id, the parent's version, no
    /// retries, no tags.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs the child under this instance id.
    pub fn instance_id(mut self, instance_id: impl Into<String>) -> Self {
        self.instance_id = Some(instance_id.into());
        self
    }

    /// Starts the child with this version instead of the parent's.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Retries the child (under a fresh instance id per attempt) when it fails.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Adds a tag stored with the child instance (visible in its state and to backends).
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }
}

/// Options for an activity call: a version, tags, retries.
///
/// ```
/// use std::time::Duration;
/// use durable::{ActivityOptions, RetryPolicy};
///
/// let options = ActivityOptions::new()
///     .version("2")
///     .tag("tenant", "contoso")
///     .retry(RetryPolicy::new(3, Duration::from_secs(1)));
/// # let _ = options;
/// ```
#[derive(Clone, Debug, Default)]
pub struct ActivityOptions {
    call: ActivityCallOptions,
    retry: Option<RetryPolicy>,
}

/// What an activity call carries beside its name and input.
#[derive(Clone, Debug, Default)]
pub(crate) struct ActivityCallOptions {
    version: Option<String>,
    tags: HashMap<String, String>,
}

impl ActivityOptions {
    /// Default options: the orchestration's version, no tags, no retries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedules the activity at this version instead of the orchestration's (what a worker's
    /// version filter for the activity matches).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.call.version = Some(version.into());
        self
    }

    /// Adds a tag sent with the activity's work item.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.call.tags.insert(key.into(), value.into());
        self
    }

    /// Retries the activity as the policy says.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }
}

/// The orchestrator's handle to the durable world. Every method is replay-safe: it records an
/// action or reads history, never the wall clock or the outside world.
///
/// Cloning is cheap; clones share one orchestration.
#[derive(Clone)]
pub struct OrchestrationContext {
    pub(crate) state: Rc<RefCell<State>>,
}

impl std::fmt::Debug for OrchestrationContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.borrow();
        f.debug_struct("OrchestrationContext")
            .field("instance_id", &state.instance_id)
            .field("name", &state.name)
            .field("is_replaying", &state.is_replaying)
            .finish()
    }
}

pub(crate) fn failed_slot(name: &str, error: TaskError) -> Rc<Slot> {
    let slot = Slot::new(name);
    slot.complete(Err(error), 0);
    slot
}

/// `value` as JSON in a string of its exact size. `serde_json::to_string` starts with 128
/// bytes, which a fan-out of small inputs would keep allocated once per task.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    /// Writes small outputs to the stack and spills larger ones to the heap.
    struct Buffer {
        inline: [u8; 64],
        len: usize,
        spilled: Vec<u8>,
    }
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let end = self.len + bytes.len();
            if self.spilled.is_empty() && end <= self.inline.len() {
                self.inline[self.len..end].copy_from_slice(bytes);
                self.len = end;
            } else {
                if self.spilled.is_empty() {
                    self.spilled.reserve(end.max(128));
                    self.spilled.extend_from_slice(&self.inline[..self.len]);
                }
                self.spilled.extend_from_slice(bytes);
            }
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut buffer = Buffer {
        inline: [0; 64],
        len: 0,
        spilled: Vec::new(),
    };
    serde_json::to_writer(&mut buffer, value)?;
    let bytes = if buffer.spilled.is_empty() {
        buffer.inline[..buffer.len].to_vec()
    } else {
        buffer.spilled
    };
    String::from_utf8(bytes).map_err(<serde_json::Error as serde::ser::Error>::custom)
}

fn serialization_error(name: &str, error: serde_json::Error) -> TaskError {
    TaskError::Failed {
        name: name.to_owned(),
        details: FailureDetails::new(
            "durable::InvalidInput",
            format!("the input of `{name}` does not serialize to JSON: {error}"),
        )
        .non_retriable(),
    }
}

impl OrchestrationContext {
    pub(crate) fn new(state: Rc<RefCell<State>>) -> Self {
        Self { state }
    }

    /// This orchestration's instance id.
    pub fn instance_id(&self) -> String {
        self.state.borrow().instance_id.clone()
    }

    /// The id of this execution (a new one after each continue-as-new).
    pub fn execution_id(&self) -> String {
        self.state.borrow().execution_id.clone()
    }

    /// The orchestrator's registered name.
    pub fn name(&self) -> String {
        self.state.borrow().name.clone()
    }

    /// The version this instance was scheduled with (empty when none was given). Compare with
    /// [`crate::compare_versions`].
    pub fn version(&self) -> String {
        self.state.borrow().version.clone().unwrap_or_default()
    }

    /// The parent's instance id, when this runs as a sub-orchestration.
    pub fn parent_instance_id(&self) -> Option<String> {
        self.state.borrow().parent_instance_id.clone()
    }

    /// The orchestration's current time: the timestamp of the latest episode start in
    /// history. Use it instead of `SystemTime::now()`: it is the same on every replay.
    pub fn current_utc_datetime(&self) -> DateTime<Utc> {
        self.state.borrow().current_time
    }

    /// `true` while the orchestrator re-executes code whose effects are already in history.
    /// Log only when this is `false` (the `durable::info!` family does that for you).
    pub fn is_replaying(&self) -> bool {
        self.state.borrow().is_replaying
    }

    /// A deterministic UUID (v5 of the instance id, the current time and a counter): the same
    /// on every replay, different for each call.
    pub fn new_guid(&self) -> uuid::Uuid {
        let mut state = self.state.borrow_mut();
        // .NET's round-trip format ("o"): seven fractional digits. chrono has no `%.7f`, so
        // the fraction is written by hand.
        let name = format!(
            "{}_{}.{:07}Z_{}",
            state.instance_id,
            state.current_time.format("%Y-%m-%dT%H:%M:%S"),
            state.current_time.timestamp_subsec_nanos() / 100,
            state.guid_counter
        );
        state.guid_counter += 1;
        uuid::Uuid::new_v5(&GUID_NAMESPACE, name.as_bytes())
    }

    /// Sets the custom status that clients see (any JSON-serializable value).
    ///
    /// A value that does not serialize to JSON fails the orchestration with
    /// `durable::InvalidInput`.
    pub fn set_custom_status<S: Serialize>(&self, status: &S) {
        match serde_json::to_string(status) {
            Ok(json) => self.state.borrow_mut().custom_status = Some(json),
            Err(e) => self.fail_with(format!("the custom status does not serialize to JSON: {e}")),
        }
    }

    /// Records a misuse that fails the orchestration once the current poll returns.
    pub(crate) fn fail_with(&self, message: String) {
        let mut state = self.state.borrow_mut();
        if state.fatal.is_none() {
            state.fatal =
                Some(FailureDetails::new("durable::InvalidInput", message).non_retriable());
        }
    }

    /// Clears the custom status.
    pub fn clear_custom_status(&self) {
        self.state.borrow_mut().custom_status = None;
    }

    /// Calls an activity with a typed input; the task resolves to its typed output.
    pub fn call_activity<A: Activity>(
        &self,
        _activity: A,
        input: impl IntoInput<A::Input>,
    ) -> Task<A::Output> {
        self.call_activity_by_name(A::NAME, input.into_input())
    }

    /// Calls an activity by name (for activities defined in another SDK or crate).
    pub fn call_activity_by_name<I: Serialize, O: DeserializeOwned>(
        &self,
        name: &str,
        input: I,
    ) -> Task<O> {
        match to_json(&input) {
            Ok(json) => Task::from_slot(self.schedule_activity(name, Some(json), None)),
            Err(e) => Task::from_slot(failed_slot(name, serialization_error(name, e))),
        }
    }

    /// Calls an activity with options (version, tags, retries).
    pub fn call_activity_with<A: Activity>(
        &self,
        _activity: A,
        input: impl IntoInput<A::Input>,
        options: ActivityOptions,
    ) -> Task<A::Output> {
        self.call_activity_by_name_with(A::NAME, input.into_input(), options)
    }

    /// Calls an activity by name with options.
    pub fn call_activity_by_name_with<I: Serialize, O: DeserializeOwned>(
        &self,
        name: &str,
        input: I,
        options: ActivityOptions,
    ) -> Task<O> {
        let input = match to_json(&input) {
            Ok(json) => Some(json),
            Err(e) => return Task::from_slot(failed_slot(name, serialization_error(name, e))),
        };
        let ActivityOptions { call, retry } = options;
        // Most calls give no version or tags: they carry nothing extra.
        let call = (call.version.is_some() || !call.tags.is_empty()).then(|| Box::new(call));
        match retry {
            None => Task::from_slot(self.schedule_activity(name, input, call)),
            Some(policy) => {
                let ctx = self.clone();
                let owned = name.to_owned();
                self.retrying(name, policy, move |_| {
                    ctx.schedule_activity(&owned, input.clone(), call.clone())
                })
            }
        }
    }

    /// Calls an activity, retrying failures as the policy says (waiting on durable timers).
    pub fn call_activity_with_retry<A: Activity>(
        &self,
        _activity: A,
        input: impl IntoInput<A::Input>,
        policy: RetryPolicy,
    ) -> Task<A::Output> {
        self.call_activity_by_name_with_retry(A::NAME, input.into_input(), policy)
    }

    /// Calls an activity by name with a retry policy.
    pub fn call_activity_by_name_with_retry<I: Serialize, O: DeserializeOwned>(
        &self,
        name: &str,
        input: I,
        policy: RetryPolicy,
    ) -> Task<O> {
        self.call_activity_by_name_with(name, input, ActivityOptions::new().retry(policy))
    }

    /// Starts a sub-orchestration and waits for its output.
    pub fn call_sub_orchestrator<O: Orchestrator>(
        &self,
        _orchestrator: O,
        input: impl IntoInput<O::Input>,
    ) -> Task<O::Output> {
        self.call_sub_orchestrator_by_name(
            O::NAME,
            input.into_input(),
            SubOrchestratorOptions::new(),
        )
    }

    /// Starts a sub-orchestration with options (instance id, version, retries).
    pub fn call_sub_orchestrator_with<O: Orchestrator>(
        &self,
        _orchestrator: O,
        input: impl IntoInput<O::Input>,
        options: SubOrchestratorOptions,
    ) -> Task<O::Output> {
        self.call_sub_orchestrator_by_name(O::NAME, input.into_input(), options)
    }

    /// Starts a sub-orchestration by name.
    pub fn call_sub_orchestrator_by_name<I: Serialize, O: DeserializeOwned>(
        &self,
        name: &str,
        input: I,
        options: SubOrchestratorOptions,
    ) -> Task<O> {
        let input = match to_json(&input) {
            Ok(json) => Some(json),
            Err(e) => return Task::from_slot(failed_slot(name, serialization_error(name, e))),
        };
        if let Err(error) = super::entities::check_sub_orchestration(self, name) {
            return Task::from_slot(failed_slot(name, error));
        }
        let SubOrchestratorOptions {
            instance_id,
            version,
            retry,
            tags,
        } = options;
        match retry {
            None => Task::from_slot(self.schedule_sub_orchestration(
                name,
                instance_id,
                version,
                input,
                tags,
            )),
            Some(policy) => {
                let ctx = self.clone();
                let owned = name.to_owned();
                self.retrying(name, policy, move |attempt| {
                    // Each attempt needs its own child instance.
                    let id = instance_id.as_ref().map(|id| {
                        if attempt == 1 {
                            id.clone()
                        } else {
                            format!("{id}:retry{attempt}")
                        }
                    });
                    ctx.schedule_sub_orchestration(
                        &owned,
                        id,
                        version.clone(),
                        input.clone(),
                        tags.clone(),
                    )
                })
            }
        }
    }

    /// A durable timer that fires after `delay` of orchestration time.
    pub fn create_timer(&self, delay: Duration) -> Task<()> {
        self.create_timer_at(add_saturating(self.current_utc_datetime(), delay))
    }

    /// A durable timer that fires at an absolute UTC time (at once if it is in the past).
    pub fn create_timer_at(&self, fire_at: DateTime<Utc>) -> Task<()> {
        let action = PendingAction::Timer(to_timestamp(fire_at));
        let (_, slot) = self.state.borrow_mut().schedule("timer", action, true);
        Task::from_slot(slot)
    }

    /// Waits for an external event (raised by a client or sent by another orchestration).
    /// Names match case-insensitively; events that arrived earlier are delivered in order.
    pub fn wait_for_external_event<T: DeserializeOwned>(&self, name: &str) -> Task<T> {
        let key = name.to_lowercase();
        let mut state = self.state.borrow_mut();
        let slot = Slot::new(name);
        let buffered = state
            .event_buffer
            .get_mut(&key)
            .and_then(VecDeque::pop_front);
        match buffered {
            // It completed when it arrived: that is its place in history order.
            Some(event) => slot.complete(Ok(event.payload), event.seq),
            None => state
                .event_waiters
                .entry(key)
                .or_default()
                .push_back(slot.clone()),
        }
        Task::from_slot(slot)
    }

    /// Sends an event to another orchestration instance (fire and forget).
    ///
    /// Data that does not serialize to JSON fails the orchestration with `durable::InvalidInput`.
    pub fn send_event<T: Serialize>(&self, instance_id: &str, name: &str, data: &T) {
        let data = match to_json(data) {
            Ok(json) => Some(json),
            Err(e) => {
                self.fail_with(format!(
                    "the data of event `{name}` for instance `{instance_id}` does not serialize \
                     to JSON: {e}"
                ));
                return;
            }
        };
        let action = PendingAction::SendEvent(Box::new(proto::SendEventAction {
            instance: Some(proto::OrchestrationInstance {
                instance_id: instance_id.to_owned(),
                execution_id: None,
            }),
            name: name.to_owned(),
            data,
        }));
        let target = format!("{instance_id}/{name}");
        self.state.borrow_mut().schedule(&target, action, false);
    }

    /// Ends this execution and starts the orchestration again with a new input and a fresh
    /// history. With `save_events`, external events that arrived but were not consumed yet are
    /// carried into the new execution. Return from the orchestrator right after calling this:
    /// whatever it returns is ignored.
    pub fn continue_as_new<T: Serialize>(&self, input: &T, save_events: bool) {
        let input = serde_json::to_string(input).map_err(|e| e.to_string());
        self.state.borrow_mut().continue_as_new = Some(ContinueAsNew {
            input,
            save_events,
            version: None,
        });
    }

    /// Like [`continue_as_new`](Self::continue_as_new), moving the new execution to another
    /// version.
    pub fn continue_as_new_versioned<T: Serialize>(
        &self,
        input: &T,
        save_events: bool,
        version: &str,
    ) {
        self.continue_as_new(input, save_events);
        if let Some(can) = self.state.borrow_mut().continue_as_new.as_mut() {
            can.version = Some(version.to_owned());
        }
    }

    fn schedule_activity(
        &self,
        name: &str,
        input: Option<String>,
        options: Option<Box<ActivityCallOptions>>,
    ) -> Rc<Slot> {
        let mut state = self.state.borrow_mut();
        let name = state.shared_name(name);
        let action = PendingAction::Activity {
            name: name.clone(),
            input,
            options,
        };
        state.schedule_named(name, action, true).1
    }

    fn schedule_sub_orchestration(
        &self,
        name: &str,
        instance_id: Option<String>,
        version: Option<String>,
        input: Option<String>,
        tags: HashMap<String, String>,
    ) -> Rc<Slot> {
        let instance_id = match instance_id {
            Some(id) => id,
            None => format!("{}:{}", self.instance_id(), self.new_guid().simple()),
        };
        let action =
            PendingAction::SubOrchestration(Box::new(proto::CreateSubOrchestrationAction {
                instance_id,
                name: name.to_owned(),
                version,
                input,
                parent_trace_context: None,
                tags,
            }));
        let (_, slot) = self.state.borrow_mut().schedule(name, action, true);
        slot
    }

    /// Runs `attempt(n)` until it succeeds or the policy gives up, on a future the executor
    /// drives beside the orchestrator; the returned task resolves with the final outcome.
    fn retrying<O: DeserializeOwned>(
        &self,
        name: &str,
        policy: RetryPolicy,
        attempt: impl Fn(u32) -> Rc<Slot> + 'static,
    ) -> Task<O> {
        let result = Slot::new(name);
        if let Err(problem) = policy.validate() {
            result.complete(
                Err(TaskError::Failed {
                    name: name.to_owned(),
                    details: FailureDetails::new(
                        "durable::InvalidRetryPolicy",
                        format!("the retry policy for `{name}` is invalid: {problem}"),
                    )
                    .non_retriable(),
                }),
                0,
            );
            return Task::from_slot(result);
        }
        let ctx = self.clone();
        let name = name.to_owned();
        let output = result.clone();
        // The first attempt is scheduled now, so it takes its id in call order.
        let first = attempt(1);
        let driver = async move {
            let started = ctx.current_utc_datetime();
            let mut number = 1;
            let mut next = Some(first);
            let outcome: Outcome = loop {
                let slot = match next.take() {
                    Some(slot) => slot,
                    None => attempt(number),
                };
                let outcome = Task::<serde::de::IgnoredAny>::from_slot(slot.clone());
                let _ = outcome.await;
                let raw = slot.raw_outcome().expect("awaited slot is done");
                let details = match &raw {
                    Ok(_) => break raw,
                    Err(error) => error.details(),
                };
                let delay = policy.delay_before_attempt(number + 1);
                // Out-of-range sums mean "later than anything": no overflow panics.
                let next_start = add_saturating(ctx.current_utc_datetime(), delay);
                let timed_out = policy
                    .timeout()
                    .is_some_and(|timeout| next_start > add_saturating(started, timeout));
                let elapsed = (ctx.current_utc_datetime() - started)
                    .to_std()
                    .unwrap_or_default();
                let declined = !policy.should_retry(&RetryContext::new(number, &details, elapsed));
                if details.non_retriable || number >= policy.max_attempts() || timed_out || declined
                {
                    break Err(TaskError::RetriesExhausted {
                        name: name.clone(),
                        attempts: number,
                        details,
                    });
                }
                let _ = ctx.create_timer(delay).await;
                number += 1;
            };
            let seq = ctx.state.borrow_mut().next_completion_seq();
            output.complete(outcome, seq);
        };
        self.state.borrow_mut().spawned.push(Box::pin(driver));
        Task::from_slot(result)
    }
}

/// `time + duration`, clamped to the latest representable time instead of overflowing.
fn add_saturating(time: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|d| time.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn ctx_at(time: DateTime<Utc>) -> OrchestrationContext {
        let mut state = State::new("inst".into());
        state.current_time = time;
        OrchestrationContext::new(Rc::new(RefCell::new(state)))
    }

    #[test]
    fn guids_are_v5_of_instance_time_and_counter() {
        let time = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
            + chrono::Duration::nanoseconds(123_456_789);
        let ctx = ctx_at(time);
        let first = ctx.new_guid();
        let second = ctx.new_guid();
        assert_ne!(first, second);
        let expected = uuid::Uuid::new_v5(&GUID_NAMESPACE, b"inst_2024-05-01T12:00:00.1234567Z_0");
        assert_eq!(first, expected);
        assert_eq!(
            ctx_at(time).new_guid(),
            first,
            "a replay yields the same ids"
        );
    }

    #[test]
    fn action_ids_are_dense_and_tables_are_indexed_by_them() {
        let ctx = ctx_at(DateTime::<Utc>::UNIX_EPOCH);
        let _a: Task<u8> = ctx.call_activity_by_name("a", ());
        ctx.send_event("other", "e", &1);
        let _t = ctx.create_timer(Duration::from_secs(1));
        let mut state = ctx.state.borrow_mut();
        assert_eq!(state.actions.len(), 3);
        assert_eq!(state.take_pending(1).unwrap().name(), "other/e");
        assert!(state.take_pending(1).is_none());
        assert!(state.take_pending(-1).is_none());
        assert!(
            state.take_open_task(1).is_none(),
            "send_event has no result"
        );
        assert_eq!(state.take_open_task(2).unwrap().name(), "timer");
    }

    #[test]
    fn json_inputs_are_exact_and_match_serde_json() {
        let long = "x".repeat(200);
        for value in [
            serde_json::json!(7),
            serde_json::json!("a \"quoted\" é"),
            serde_json::json!({"k": [1, 2, 3]}),
            serde_json::json!(long),
            serde_json::json!({"a": "y".repeat(60), "b": 1}),
        ] {
            let json = to_json(&value).unwrap();
            assert_eq!(json, serde_json::to_string(&value).unwrap());
            assert!(json.len() <= 64 || json.capacity() >= json.len());
        }
        assert_eq!(to_json(&7u64).unwrap().capacity(), 1);
    }

    #[test]
    fn early_events_complete_waiters_with_their_arrival_order() {
        let ctx = ctx_at(DateTime::<Utc>::UNIX_EPOCH);
        ctx.state.borrow_mut().event_buffer.insert(
            "go".into(),
            VecDeque::from([BufferedEvent {
                name: "Go".into(),
                payload: Some("1".into()),
                seq: 4,
            }]),
        );
        let task: Task<u8> = ctx.wait_for_external_event("GO");
        assert_eq!(task.result().unwrap().unwrap(), 1);
    }
}
