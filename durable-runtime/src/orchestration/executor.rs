//! The replay executor: runs one orchestration episode on an SDK-owned, single-threaded
//! executor and turns history into actions.
//!
//! History is applied one event at a time and the orchestrator is polled after each event, so
//! combinators observe completions in exactly the order of the original run. Every action the
//! orchestrator takes gets a sequence id; history confirms it with an event carrying that id,
//! and any disagreement in kind or name is reported as nondeterminism.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use futures::future::LocalBoxFuture;

use super::context::{ActionKind, BufferedEvent, OrchestrationContext, State};
use super::entities::{answered_call, granted_lock, operation_target};
use crate::convert::to_datetime;
use crate::error::{FailureDetails, Result, TaskError};
use crate::proto::history_event::EventType;
use crate::proto::orchestrator_action::OrchestratorActionType;
use crate::proto::{self, HistoryEvent, OrchestrationStatus};
use crate::registry::{OrchestratorFn, Registry};

/// The error type recorded when replay finds the orchestrator disagreeing with history.
pub const NONDETERMINISM_ERROR_TYPE: &str = "durable::NonDeterminismError";

/// How many times in a row an orchestrator may wake itself before it counts as a busy loop.
const MAX_SELF_WAKES: u32 = 10_000;

thread_local! {
    /// Set while this thread runs the executor: a wake from anywhere else is from outside.
    static IN_EXECUTOR: Cell<bool> = const { Cell::new(false) };
    /// Counts SDK futures that returned `Pending` during the current poll.
    static SDK_PENDING: Cell<u64> = const { Cell::new(0) };
}

/// Called by every SDK future that returns `Pending`: the orchestrator waits on history.
pub(crate) fn note_sdk_pending() {
    SDK_PENDING.with(|c| c.set(c.get() + 1));
}

/// Indexes of helper futures that were woken, in wake order. Shared with their wakers, so the
/// executor polls only what was woken: the cost per event does not grow with the number of
/// helpers (a fan-out of N retried calls stays linear).
type ReadyQueue = Arc<Mutex<Vec<usize>>>;

/// The waker of one future the executor drives.
struct Wakeup {
    woken: AtomicBool,
    from_outside: AtomicBool,
    /// For helpers: their index and the queue to join when woken.
    ready: Option<(usize, ReadyQueue)>,
}

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !IN_EXECUTOR.with(Cell::get) {
            self.from_outside.store(true, Ordering::SeqCst);
        }
        if !self.woken.swap(true, Ordering::SeqCst) {
            if let Some((index, queue)) = &self.ready {
                queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(*index);
            }
        }
    }
}

/// A future driven by the executor: the orchestrator itself or an SDK helper (retry loop).
struct Driven<T> {
    future: LocalBoxFuture<'static, T>,
    wakeup: Arc<Wakeup>,
    waker: Waker,
}

impl<T> Driven<T> {
    /// A future that starts woken; a helper (`ready` set) is queued for its first poll.
    fn new(future: LocalBoxFuture<'static, T>, ready: Option<(usize, ReadyQueue)>) -> Self {
        if let Some((index, queue)) = &ready {
            queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(*index);
        }
        let wakeup = Arc::new(Wakeup {
            woken: AtomicBool::new(true),
            from_outside: AtomicBool::new(false),
            ready,
        });
        let waker = Waker::from(wakeup.clone());
        Self {
            future,
            wakeup,
            waker,
        }
    }

    fn is_woken(&self) -> bool {
        self.wakeup.woken.load(Ordering::SeqCst)
    }
}

/// Why an episode stopped early.
enum Halt {
    /// History and code disagree.
    Nondeterminism(String),
    /// Code panicked or the SDK found an unrecoverable problem.
    Failure(FailureDetails),
}

/// How the orchestration ended in this episode.
#[derive(Debug)]
enum Completion {
    Completed(Option<String>),
    Failed(FailureDetails),
    Terminated(Option<String>),
    ContinuedAsNew {
        input: String,
        version: Option<String>,
        carryover: Vec<HistoryEvent>,
        save_events: bool,
    },
}

/// Where an episode finds its orchestrator.
#[derive(Clone, Copy)]
enum Lookup<'a> {
    Registry(&'a Registry),
    Single(&'a OrchestratorFn),
}

struct Episode {
    ctx: OrchestrationContext,
    main: Option<Driven<Result<Option<String>>>>,
    helpers: Vec<Option<Driven<()>>>,
    ready: ReadyQueue,
    completion: Option<Completion>,
    /// Whether history after the completion must still match the code: true when the
    /// orchestrator itself finished (a removed call shows up as an unmatched confirmation),
    /// false after termination or a halt.
    verify_after_completion: bool,
    suspended: bool,
    /// Deliveries held back while the instance is suspended.
    suspended_events: VecDeque<HistoryEvent>,
    /// Whether a response carried the completion: nothing may continue the episode.
    ended: bool,
}

/// An execution's replay state after an episode, kept by a worker that will get the next
/// episode of the same execution with only the events after the `applied` ones it has seen.
/// The orchestrator's future stays suspended where it was: the next episode costs what its
/// new events cost, not a replay of the whole history.
pub(crate) struct Resumable {
    episode: Episode,
    /// The execution it belongs to.
    pub(crate) execution_id: String,
    /// How many history events it has applied.
    pub(crate) applied: usize,
}

/// Runs one episode: replays `pastEvents`, applies `newEvents`, and returns the actions the
/// orchestration took, with its completion if it finished. The orchestrator is looked up in
/// `registry` by the name in the `ExecutionStarted` event.
///
/// ```
/// # use durable::proto;
/// let registry = durable::Registry::new();
/// let request = proto::OrchestratorRequest { instance_id: "i".into(), ..Default::default() };
/// let response = durable::orchestration::execute(&registry, &request);
/// assert_eq!(response.instance_id, "i");
/// ```
pub fn execute(
    registry: &Registry,
    request: &proto::OrchestratorRequest,
) -> proto::OrchestratorResponse {
    Episode::new(request).run(Lookup::Registry(registry), request)
}

/// Runs an episode like [`execute`], continuing `held` (the state after the previous episode
/// of the same execution) when given: `request.past_events` then holds only the events after
/// the `held.applied` ones. Returns the response and, unless the orchestration ended, the
/// state to continue with next time.
pub(crate) fn execute_resumable(
    registry: &Registry,
    request: &proto::OrchestratorRequest,
    held: Option<Resumable>,
) -> (proto::OrchestratorResponse, Option<Resumable>) {
    let events = request.past_events.len() + request.new_events.len();
    let rewind = is_rewind(request);
    let (mut episode, applied) = match held {
        Some(held) if rewind => {
            // Rewinding rewrites the whole history: it needs all of it.
            drop(held);
            return (history_required(request), None);
        }
        Some(held) => (held.episode, held.applied + events),
        None => (Episode::new(request), events),
    };
    let response = episode.run(Lookup::Registry(registry), request);
    let execution_id = episode.ctx.state.borrow().execution_id.clone();
    let resumable = (!episode.ended && !rewind).then(|| Resumable {
        episode,
        execution_id,
        applied,
    });
    (response, resumable)
}

/// The answer to an episode that continues state this worker no longer holds: the sidecar
/// sends the episode again, with the whole history.
pub(crate) fn history_required(
    request: &proto::OrchestratorRequest,
) -> proto::OrchestratorResponse {
    proto::OrchestratorResponse {
        instance_id: request.instance_id.clone(),
        requires_history: true,
        ..Default::default()
    }
}

fn is_rewind(request: &proto::OrchestratorRequest) -> bool {
    request
        .new_events
        .iter()
        .any(|e| matches!(e.event_type, Some(EventType::ExecutionRewound(_))))
}

/// Like [`execute`], with the orchestrator given directly instead of looked up by name.
pub fn execute_orchestrator(
    orchestrator: &OrchestratorFn,
    request: &proto::OrchestratorRequest,
) -> proto::OrchestratorResponse {
    Episode::new(request).run(Lookup::Single(orchestrator), request)
}

struct ExecutorGuard(bool);

impl ExecutorGuard {
    fn enter() -> Self {
        Self(IN_EXECUTOR.with(|c| c.replace(true)))
    }
}

impl Drop for ExecutorGuard {
    fn drop(&mut self) {
        let previous = self.0;
        IN_EXECUTOR.with(|c| c.set(previous));
    }
}

impl Episode {
    fn new(request: &proto::OrchestratorRequest) -> Self {
        let mut state = State::new(request.instance_id.clone());
        state.execution_id = request.execution_id.clone().unwrap_or_default();
        // Every action id is confirmed by one event and most are answered by another: half the
        // history is a good first size for the action table, and growing it later (copying
        // it, mid-episode) costs more than reserving address space now.
        state
            .actions
            .reserve((request.past_events.len() + request.new_events.len()) / 2);
        Self {
            ctx: OrchestrationContext::new(Rc::new(RefCell::new(state))),
            main: None,
            helpers: Vec::new(),
            ready: Arc::new(Mutex::new(Vec::new())),
            completion: None,
            verify_after_completion: false,
            suspended: false,
            suspended_events: VecDeque::new(),
            ended: false,
        }
    }

    fn run(
        &mut self,
        lookup: Lookup<'_>,
        request: &proto::OrchestratorRequest,
    ) -> proto::OrchestratorResponse {
        let _guard = ExecutorGuard::enter();
        if is_rewind(request) {
            return rewind_response(request);
        }
        let past = request.past_events.iter().map(|e| (e, true));
        let new = request.new_events.iter().map(|e| (e, false));
        let mut unprocessed: Vec<&HistoryEvent> = Vec::new();
        for (event, replaying) in past.chain(new) {
            if self.completion.is_some() {
                if self.verify_after_completion {
                    if let Err(halt) = self.confirm_event(event) {
                        self.halt(halt);
                    }
                }
                unprocessed.push(event);
                continue;
            }
            self.ctx.state.borrow_mut().is_replaying = replaying;
            if let Err(halt) = self.process(lookup, event) {
                self.halt(halt);
            }
        }
        self.finish_continue_as_new(&unprocessed);
        self.respond(request)
    }

    fn halt(&mut self, halt: Halt) {
        let details = match halt {
            Halt::Nondeterminism(message) => {
                FailureDetails::new(NONDETERMINISM_ERROR_TYPE, message).non_retriable()
            }
            Halt::Failure(details) => details,
        };
        self.completion = Some(Completion::Failed(details));
        self.verify_after_completion = false;
    }

    fn process(&mut self, lookup: Lookup<'_>, event: &HistoryEvent) -> Result<(), Halt> {
        // Only deliveries wait for a resume; confirmations of actions taken before the
        // suspension, episode starts, resume and terminate go through.
        if self.suspended && is_delivery(event) {
            self.suspended_events.push_back(event.clone());
            return Ok(());
        }
        self.apply(lookup, event)?;
        self.run_ready()?;
        if self.suspended {
            return Ok(());
        }
        while self.completion.is_none() {
            let Some(buffered) = self.suspended_events.pop_front() else {
                break;
            };
            self.apply(lookup, &buffered)?;
            self.run_ready()?;
        }
        Ok(())
    }

    /// Checks a confirming event (TaskScheduled, TimerCreated, ...) against the actions the
    /// code took; other events pass.
    fn confirm_event(&mut self, event: &HistoryEvent) -> Result<(), Halt> {
        let id = event.event_id;
        match &event.event_type {
            Some(EventType::TaskScheduled(e)) => self.confirm(id, ActionKind::Activity, &e.name),
            Some(EventType::SubOrchestrationInstanceCreated(e)) => {
                self.confirm(id, ActionKind::SubOrchestration, &e.name)
            }
            Some(EventType::TimerCreated(_)) => self.confirm(id, ActionKind::Timer, "timer"),
            Some(EventType::EventSent(e)) => self.confirm(
                id,
                ActionKind::SendEvent,
                &format!("{}/{}", e.instance_id, e.name),
            ),
            Some(EventType::EntityOperationSignaled(e)) => self.confirm(
                id,
                ActionKind::EntitySignal,
                &operation_target(e.target_instance_id.as_deref(), &e.operation),
            ),
            Some(EventType::EntityOperationCalled(e)) => self.confirm(
                id,
                ActionKind::EntityCall,
                &operation_target(e.target_instance_id.as_deref(), &e.operation),
            ),
            Some(EventType::EntityLockRequested(e)) => {
                self.confirm(id, ActionKind::EntityLock, &e.lock_set.join(","))
            }
            Some(EventType::EntityUnlockSent(e)) => self.confirm(
                id,
                ActionKind::EntityUnlock,
                e.target_instance_id.as_deref().unwrap_or_default(),
            ),
            _ => Ok(()),
        }
    }

    /// Applies one history event to the state, completing tasks it answers.
    fn apply(&mut self, lookup: Lookup<'_>, event: &HistoryEvent) -> Result<(), Halt> {
        let Some(kind) = &event.event_type else {
            return Ok(());
        };
        match kind {
            EventType::OrchestratorStarted(_) => {
                self.ctx.state.borrow_mut().current_time = to_datetime(event.timestamp.as_ref());
            }
            EventType::ExecutionStarted(started) => self.start(lookup, started)?,
            EventType::TaskScheduled(_)
            | EventType::SubOrchestrationInstanceCreated(_)
            | EventType::TimerCreated(_)
            | EventType::EventSent(_)
            | EventType::EntityOperationSignaled(_)
            | EventType::EntityOperationCalled(_)
            | EventType::EntityLockRequested(_)
            | EventType::EntityUnlockSent(_) => self.confirm_event(event)?,
            EventType::TaskCompleted(e) => self.resolve(e.task_scheduled_id, &e.result),
            EventType::TaskFailed(e) => {
                self.resolve_failure(e.task_scheduled_id, e.failure_details.as_ref());
            }
            EventType::SubOrchestrationInstanceCompleted(e) => {
                self.resolve(e.task_scheduled_id, &e.result)
            }
            EventType::SubOrchestrationInstanceFailed(e) => {
                self.resolve_failure(e.task_scheduled_id, e.failure_details.as_ref());
            }
            EventType::TimerFired(e) => self.resolve(e.timer_id, &None),
            EventType::EventRaised(e) => self.raise(&e.name, e.input.clone()),
            EventType::ExecutionSuspended(_) => self.suspended = true,
            EventType::ExecutionResumed(_) => self.suspended = false,
            EventType::ExecutionTerminated(e) => {
                self.completion = Some(Completion::Terminated(e.input.clone()));
                self.verify_after_completion = false;
            }
            EventType::ExecutionCompleted(_)
            | EventType::OrchestratorCompleted(_)
            | EventType::GenericEvent(_)
            | EventType::HistoryState(_)
            | EventType::ContinueAsNew(_)
            | EventType::ExecutionRewound(_) => {}
            EventType::EntityOperationCompleted(e) => {
                if let Some(id) = answered_call(&self.ctx, &e.request_id) {
                    self.resolve(id, &e.output);
                }
            }
            EventType::EntityOperationFailed(e) => {
                if let Some(id) = answered_call(&self.ctx, &e.request_id) {
                    self.resolve_failure(id, e.failure_details.as_ref());
                }
            }
            EventType::EntityLockGranted(e) => {
                if let Some(id) = granted_lock(&self.ctx, &e.critical_section_id) {
                    self.resolve(id, &None);
                }
            }
        }
        Ok(())
    }

    fn start(
        &mut self,
        lookup: Lookup<'_>,
        started: &proto::ExecutionStartedEvent,
    ) -> Result<(), Halt> {
        let run = lookup_orchestrator(lookup, &started.name).map_err(Halt::Failure)?;
        {
            let mut state = self.ctx.state.borrow_mut();
            state.name = started.name.clone();
            state.version = started.version.clone().filter(|v| !v.is_empty());
            if let Some(instance) = &started.orchestration_instance {
                if let Some(execution_id) = &instance.execution_id {
                    state.execution_id = execution_id.clone();
                }
            }
            state.parent_instance_id = started
                .parent_instance
                .as_ref()
                .and_then(|p| p.orchestration_instance.as_ref())
                .map(|i| i.instance_id.clone());
        }
        self.main = Some(Driven::new(
            run(self.ctx.clone(), started.input.clone()),
            None,
        ));
        Ok(())
    }

    /// Matches a history event that confirms an action against what the code scheduled.
    fn confirm(&mut self, id: i32, kind: ActionKind, name: &str) -> Result<(), Halt> {
        let mut state = self.ctx.state.borrow_mut();
        match state.take_pending(id) {
            Some(pending) if pending.matches(kind, name) => Ok(()),
            // Sent by an earlier episode of this resumed execution: history records it.
            None if state.confirm_sent(id) => Ok(()),
            Some(pending) => Err(Halt::Nondeterminism(format!(
                "expected {} \"{name}\" at id {id}, but the orchestrator scheduled {} \"{}\" \
                 there: the orchestrator code changed while instances were running; use \
                 versioning (ctx.version()) to change running code",
                kind.describe(),
                pending.kind().describe(),
                pending.name()
            ))),
            None => Err(Halt::Nondeterminism(format!(
                "expected {} \"{name}\" at id {id}, but the orchestrator scheduled nothing \
                 with that id (a call was removed or reordered, or depends on something other \
                 than history); use versioning (ctx.version()) to change running code",
                kind.describe()
            ))),
        }
    }

    /// Completes the task waiting for result `id` (unknown ids are ignored, like the other
    /// SDKs do: a duplicate or stray completion must not fail the orchestration).
    fn resolve(&mut self, id: i32, result: &Option<String>) {
        let mut state = self.ctx.state.borrow_mut();
        if let Some(slot) = state.take_open_task(id) {
            let seq = state.next_completion_seq();
            drop(state);
            slot.complete(Ok(result.clone()), seq);
        }
    }

    fn resolve_failure(&mut self, id: i32, details: Option<&proto::TaskFailureDetails>) {
        let mut state = self.ctx.state.borrow_mut();
        let Some(slot) = state.take_open_task(id) else {
            return;
        };
        let seq = state.next_completion_seq();
        drop(state);
        let details = details.map(FailureDetails::from).unwrap_or_else(|| {
            FailureDetails::new("durable::UnknownFailure", "no failure details")
        });
        let name = slot.name().to_owned();
        slot.complete(Err(TaskError::Failed { name, details }), seq);
    }

    fn raise(&mut self, name: &str, payload: Option<String>) {
        let key = name.to_lowercase();
        let mut state = self.ctx.state.borrow_mut();
        let seq = state.next_completion_seq();
        let waiter = state
            .event_waiters
            .get_mut(&key)
            .and_then(VecDeque::pop_front);
        match waiter {
            Some(slot) => {
                drop(state);
                slot.complete(Ok(payload), seq);
            }
            None => state
                .event_buffer
                .entry(key)
                .or_default()
                .push_back(BufferedEvent {
                    name: name.to_owned(),
                    payload,
                    seq,
                }),
        }
    }

    /// Polls every woken future until none is woken: the orchestrator first, then helpers in
    /// the order they were created.
    fn run_ready(&mut self) -> Result<(), Halt> {
        let mut ready = Vec::new();
        loop {
            if self.completion.is_some() {
                return Ok(());
            }
            if let Some(main) = self.main.as_mut() {
                if let Some(result) = poll_driven(main, "the orchestrator")? {
                    self.main = None;
                    self.verify_after_completion = true;
                    let fatal = self.ctx.state.borrow_mut().fatal.take();
                    if let Some(details) = fatal {
                        self.completion = Some(Completion::Failed(details));
                        return Ok(());
                    }
                    self.completion = Some(if self.ctx.state.borrow().continue_as_new.is_some() {
                        self.continue_as_new()
                    } else {
                        match result {
                            Ok(output) => Completion::Completed(output),
                            Err(error) => Completion::Failed(error.details()),
                        }
                    });
                    // The orchestration is over: retry loops must not schedule anything more.
                    return Ok(());
                }
            }
            self.adopt_spawned();
            // Most orchestrations have no helpers: skip the queue's lock for them.
            if !self.helpers.is_empty() {
                std::mem::swap(
                    &mut ready,
                    &mut *self.ready.lock().unwrap_or_else(PoisonError::into_inner),
                );
            }
            for index in ready.drain(..) {
                if let Some(helper) = self.helpers[index].as_mut() {
                    if poll_driven(helper, "a retry loop")?.is_some() {
                        self.helpers[index] = None;
                    }
                }
                self.adopt_spawned();
            }
            let fatal = self.ctx.state.borrow_mut().fatal.take();
            if let Some(details) = fatal {
                self.completion = Some(Completion::Failed(details));
                return Ok(());
            }
            if self.ctx.state.borrow().continue_as_new.is_some() {
                self.verify_after_completion = true;
                self.completion = Some(self.continue_as_new());
                return Ok(());
            }
            let main_woken = self.main.as_ref().is_some_and(Driven::is_woken);
            let helpers_woken = !self.helpers.is_empty()
                && !self
                    .ready
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_empty();
            if !main_woken && !helpers_woken {
                return Ok(());
            }
        }
    }

    fn adopt_spawned(&mut self) {
        let spawned = std::mem::take(&mut self.ctx.state.borrow_mut().spawned);
        for future in spawned {
            let index = self.helpers.len();
            let driven = Driven::new(future, Some((index, self.ready.clone())));
            self.helpers.push(Some(driven));
        }
    }

    fn continue_as_new(&mut self) -> Completion {
        let request = self
            .ctx
            .state
            .borrow_mut()
            .continue_as_new
            .take()
            .expect("checked by the caller");
        match request.input {
            Ok(input) => {
                let carryover = if request.save_events {
                    self.buffered_events()
                } else {
                    Vec::new()
                };
                Completion::ContinuedAsNew {
                    input,
                    version: request.version,
                    carryover,
                    save_events: request.save_events,
                }
            }
            Err(message) => Completion::Failed(FailureDetails::new(
                "durable::InvalidInput",
                format!("the continue-as-new input does not serialize to JSON: {message}"),
            )),
        }
    }

    /// Unconsumed external events, in arrival order, as EventRaised events: those buffered
    /// for a later wait, then those held back by a suspension.
    fn buffered_events(&self) -> Vec<HistoryEvent> {
        let mut state = self.ctx.state.borrow_mut();
        let mut events: Vec<BufferedEvent> = state
            .event_buffer
            .drain()
            .flat_map(|(_, queue)| queue)
            .collect();
        events.sort_by_key(|e| e.seq);
        let mut carried: Vec<HistoryEvent> = events
            .into_iter()
            .map(|e| event_raised(e.name, e.payload))
            .collect();
        carried.extend(
            self.suspended_events
                .iter()
                .filter(|e| matches!(e.event_type, Some(EventType::EventRaised(_))))
                .cloned(),
        );
        carried
    }

    /// Events after a continue-as-new in the same batch still belong to the next execution
    /// when the orchestrator asked to keep its events.
    fn finish_continue_as_new(&mut self, unprocessed: &[&HistoryEvent]) {
        if let Some(Completion::ContinuedAsNew {
            carryover,
            save_events: true,
            ..
        }) = self.completion.as_mut()
        {
            carryover.extend(
                unprocessed
                    .iter()
                    .filter(|e| matches!(e.event_type, Some(EventType::EventRaised(_))))
                    .map(|e| (*e).clone()),
            );
        }
    }

    /// The episode's response: the actions no earlier episode sent, and the completion.
    /// The completion stays recorded (the episode is over).
    fn respond(&mut self, request: &proto::OrchestratorRequest) -> proto::OrchestratorResponse {
        let mut state = self.ctx.state.borrow_mut();
        let mut actions: Vec<proto::OrchestratorAction> = Vec::new();
        self.ended |= self.completion.is_some();
        let completion = self.completion.take().map(|completion| {
            let status;
            let mut action = proto::CompleteOrchestrationAction::default();
            match completion {
                Completion::Completed(output) => {
                    status = OrchestrationStatus::Completed;
                    action.result = output;
                }
                Completion::Failed(details) => {
                    status = OrchestrationStatus::Failed;
                    action.failure_details = Some((&details).into());
                }
                Completion::Terminated(output) => {
                    status = OrchestrationStatus::Terminated;
                    action.result = output;
                }
                Completion::ContinuedAsNew {
                    input,
                    version,
                    carryover,
                    ..
                } => {
                    status = OrchestrationStatus::ContinuedAsNew;
                    action.result = Some(input);
                    action.new_version = version;
                    action.carryover_events = carryover;
                }
            }
            action.set_orchestration_status(status);
            (status, action)
        });
        let keep_pending = !matches!(
            completion,
            Some((
                OrchestrationStatus::Failed | OrchestrationStatus::Terminated,
                _
            ))
        );
        if keep_pending {
            actions = state.take_unsent();
        }
        if let Some((_, action)) = completion {
            let id = state.next_id();
            actions.push(proto::OrchestratorAction {
                id,
                orchestrator_action_type: Some(OrchestratorActionType::CompleteOrchestration(
                    action,
                )),
            });
        }
        proto::OrchestratorResponse {
            instance_id: request.instance_id.clone(),
            actions,
            custom_status: state.custom_status.clone(),
            ..Default::default()
        }
    }
}

/// The orchestrator named `name`, or why there is none.
fn lookup_orchestrator(lookup: Lookup<'_>, name: &str) -> Result<OrchestratorFn, FailureDetails> {
    let registry = match lookup {
        Lookup::Single(run) => return Ok(run.clone()),
        Lookup::Registry(registry) => registry,
    };
    registry.orchestrator(name).cloned().ok_or_else(|| {
        let known: Vec<&str> = registry.orchestrator_names().collect();
        FailureDetails::new(
            "OrchestratorTaskNotFound",
            format!(
                "no orchestrator named `{name}` is registered with this worker \
                 (registered: {}); define it with #[durable::orchestrator] or register \
                 it by hand",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        )
        .non_retriable()
    })
}

/// Events that deliver something to the orchestrator (and so wait while it is suspended).
fn is_delivery(event: &HistoryEvent) -> bool {
    matches!(
        event.event_type,
        Some(
            EventType::TaskCompleted(_)
                | EventType::TaskFailed(_)
                | EventType::SubOrchestrationInstanceCompleted(_)
                | EventType::SubOrchestrationInstanceFailed(_)
                | EventType::TimerFired(_)
                | EventType::EventRaised(_)
                | EventType::EntityOperationCompleted(_)
                | EventType::EntityOperationFailed(_)
                | EventType::EntityLockGranted(_)
        )
    )
}

fn event_raised(name: String, payload: Option<String>) -> HistoryEvent {
    HistoryEvent {
        event_id: -1,
        timestamp: None,
        event_type: Some(EventType::EventRaised(proto::EventRaisedEvent {
            name,
            input: payload,
        })),
    }
}

/// Polls a woken future once (and again while it wakes itself), catching panics.
fn poll_driven<T>(driven: &mut Driven<T>, what: &str) -> Result<Option<T>, Halt> {
    let mut self_wakes = 0;
    loop {
        if !driven.wakeup.woken.swap(false, Ordering::SeqCst) {
            return Ok(None);
        }
        SDK_PENDING.with(|c| c.set(0));
        let mut cx = Context::from_waker(&driven.waker);
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| {
            Pin::new(&mut driven.future).poll(&mut cx)
        }));
        match polled {
            Err(panic) => {
                return Err(Halt::Failure(crate::panic::panic_details(
                    what,
                    panic.as_ref(),
                )));
            }
            Ok(Poll::Ready(value)) => return Ok(Some(value)),
            Ok(Poll::Pending) => {}
        }
        if driven.wakeup.from_outside.swap(false, Ordering::SeqCst) {
            return Err(Halt::Nondeterminism(format!(
                "{what} was woken from outside the durable SDK (a tokio timer, channel or \
                 other runtime future): orchestrators may only await durable tasks; use \
                 ctx.create_timer(..) for delays and activities for I/O"
            )));
        }
        if driven.wakeup.woken.load(Ordering::SeqCst) {
            self_wakes += 1;
            if self_wakes > MAX_SELF_WAKES {
                return Err(Halt::Nondeterminism(format!(
                    "{what} keeps waking itself without waiting on a durable task (a busy \
                     loop or `yield_now`); await durable tasks instead"
                )));
            }
            continue;
        }
        if SDK_PENDING.with(Cell::get) == 0 {
            return Err(Halt::Nondeterminism(format!(
                "{what} is waiting on a future that is not a durable task (a tokio timer, \
                 channel or other runtime future): orchestrators may only await durable \
                 tasks; use ctx.create_timer(..) for delays and activities for I/O"
            )));
        }
        return Ok(None);
    }
}

/// Answers a rewind request: history from which the failed work and everything the code
/// scheduled after it are removed, so that work runs again.
///
/// Action ids follow the code's order, so the history keeps exactly the actions numbered
/// below the first failed task (and their results, whenever they arrived); the code then
/// re-schedules the rest with the same ids. Retries, compensation and anything else that ran
/// after a failure are therefore redone rather than left in history to contradict the replay.
/// Work that had succeeded after the first failure runs again (activities are at-least-once).
fn rewind_response(request: &proto::OrchestratorRequest) -> proto::OrchestratorResponse {
    let all = || request.past_events.iter().chain(request.new_events.iter());
    let first_failed = all()
        .filter_map(|e| match &e.event_type {
            Some(EventType::TaskFailed(f)) => Some(f.task_scheduled_id),
            Some(EventType::SubOrchestrationInstanceFailed(f)) => Some(f.task_scheduled_id),
            _ => None,
        })
        .min();
    let kept = |id: i32| first_failed.is_none_or(|first| id < first);
    let new_execution_id = uuid::Uuid::new_v4().simple().to_string();
    let rewound_parent_execution = all().find_map(|e| match &e.event_type {
        Some(EventType::ExecutionRewound(r)) => {
            r.parent_execution_id.clone().filter(|s| !s.is_empty())
        }
        _ => None,
    });
    let new_history = all()
        .filter(|e| match &e.event_type {
            Some(EventType::TaskFailed(_))
            | Some(EventType::SubOrchestrationInstanceFailed(_))
            | Some(EventType::ExecutionCompleted(_)) => false,
            Some(
                EventType::TaskScheduled(_)
                | EventType::TimerCreated(_)
                | EventType::SubOrchestrationInstanceCreated(_)
                | EventType::EventSent(_),
            ) => kept(e.event_id),
            Some(EventType::TaskCompleted(c)) => kept(c.task_scheduled_id),
            Some(EventType::SubOrchestrationInstanceCompleted(c)) => kept(c.task_scheduled_id),
            Some(EventType::TimerFired(t)) => kept(t.timer_id),
            _ => true,
        })
        .map(|e| {
            let mut event = e.clone();
            if let Some(EventType::ExecutionStarted(started)) = event.event_type.as_mut() {
                let instance = started
                    .orchestration_instance
                    .get_or_insert_with(Default::default);
                instance.execution_id = Some(new_execution_id.clone());
                if let (Some(parent_execution), Some(parent)) =
                    (&rewound_parent_execution, started.parent_instance.as_mut())
                {
                    parent
                        .orchestration_instance
                        .get_or_insert_with(Default::default)
                        .execution_id = Some(parent_execution.clone());
                }
            }
            event
        })
        .collect();
    proto::OrchestratorResponse {
        instance_id: request.instance_id.clone(),
        actions: vec![proto::OrchestratorAction {
            id: -1,
            orchestrator_action_type: Some(OrchestratorActionType::RewindOrchestration(
                proto::RewindOrchestrationAction { new_history },
            )),
        }],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::orchestration::{Task, when_all};

    fn registry() -> Registry {
        let mut registry = Registry::new();
        registry
            .add_orchestrator_fn("flow", |ctx, _input| {
                Box::pin(async move {
                    let first: u64 = ctx.call_activity_by_name("double", 1).await?;
                    let tasks: Vec<Task<u64>> = (0..3)
                        .map(|i| ctx.call_activity_by_name("double", first + i))
                        .collect();
                    let sum: u64 = when_all(tasks).await?.into_iter().sum();
                    ctx.set_custom_status(&sum);
                    let bonus: u64 = ctx.wait_for_external_event("bonus").await?;
                    ctx.create_timer(Duration::from_secs(5)).await?;
                    Ok(Some((sum + bonus).to_string()))
                })
            })
            .unwrap();
        registry
    }

    fn event(event_id: i32, seconds: i64, event_type: EventType) -> HistoryEvent {
        HistoryEvent {
            event_id,
            timestamp: Some(prost_types::Timestamp { seconds, nanos: 0 }),
            event_type: Some(event_type),
        }
    }

    /// Plays a sidecar: one answer per episode, each episode run twice, replaying the whole
    /// history and continuing the state kept from the previous episode; both must agree.
    #[test]
    fn a_continued_episode_answers_exactly_as_a_full_replay() {
        let registry = registry();
        let started = proto::ExecutionStartedEvent {
            name: "flow".into(),
            ..Default::default()
        };
        let mut inbox = vec![event(-1, 0, EventType::ExecutionStarted(started))];
        let mut history: Vec<HistoryEvent> = Vec::new();
        let mut held: Option<Resumable> = None;
        let mut continued = 0;
        for second in 1..40 {
            if inbox.is_empty() {
                let bonus = proto::EventRaisedEvent {
                    name: "bonus".into(),
                    input: Some("100".into()),
                };
                inbox.push(event(-1, second, EventType::EventRaised(bonus)));
            }
            let started = EventType::OrchestratorStarted(proto::OrchestratorStartedEvent {});
            let new_events = vec![event(-1, second, started), inbox.remove(0)];
            let full = proto::OrchestratorRequest {
                instance_id: "i".into(),
                past_events: history.clone(),
                new_events: new_events.clone(),
                ..Default::default()
            };
            let expected = execute(&registry, &full);
            let mut request = full.clone();
            if let Some(held) = &held {
                request.past_events = history[held.applied..].to_vec();
                request.set_held_events(held.applied);
                continued += 1;
            }
            let (response, next) = execute_resumable(&registry, &request, held.take());
            assert_eq!(response, expected, "episode {second}");
            held = next;
            history.extend(new_events);
            for action in response.actions {
                let id = action.id;
                match action.orchestrator_action_type.unwrap() {
                    OrchestratorActionType::ScheduleTask(task) => {
                        let input: u64 = task.input.as_deref().unwrap().parse().unwrap();
                        let scheduled = proto::TaskScheduledEvent {
                            name: task.name,
                            input: task.input,
                            ..Default::default()
                        };
                        history.push(event(id, second, EventType::TaskScheduled(scheduled)));
                        let completed = proto::TaskCompletedEvent {
                            task_scheduled_id: id,
                            result: Some((2 * input).to_string()),
                        };
                        inbox.push(event(-1, second, EventType::TaskCompleted(completed)));
                    }
                    OrchestratorActionType::CreateTimer(timer) => {
                        let created = proto::TimerCreatedEvent {
                            fire_at: timer.fire_at,
                        };
                        history.push(event(id, second, EventType::TimerCreated(created)));
                        let fired = proto::TimerFiredEvent {
                            fire_at: timer.fire_at,
                            timer_id: id,
                        };
                        inbox.push(event(-1, second, EventType::TimerFired(fired)));
                    }
                    OrchestratorActionType::CompleteOrchestration(done) => {
                        // 2, then 4 + 6 + 8, then the bonus.
                        assert_eq!(done.result.as_deref(), Some("118"));
                        assert!(held.is_none(), "an ended execution keeps no state");
                        assert!(continued >= 6, "most episodes continued: {continued}");
                        return;
                    }
                    other => panic!("unexpected action {other:?}"),
                }
            }
        }
        panic!("the orchestration did not complete");
    }
}
