//! Durable tasks: futures that resolve only from history, and their combinators.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use serde::de::DeserializeOwned;

use super::executor::note_sdk_pending;
use crate::error::TaskError;

/// What a finished task produced: a JSON payload (absent = null) or a failure.
pub(crate) type Outcome = Result<Option<String>, TaskError>;

/// The shared completion cell of one task. Tasks, their clones and combinators point to it.
///
/// A fan-out replay holds one slot per task, so the slot is kept small: the rare failure is
/// boxed, and the watchers share one cell.
pub(crate) struct Slot {
    /// What the task is (activity name, `timer`, event name) for error messages.
    name: Rc<str>,
    outcome: RefCell<Option<Result<Option<String>, Box<TaskError>>>>,
    /// Position of the completion in history order (for `when_any`).
    completed_seq: Cell<u64>,
    watchers: RefCell<Watchers>,
}

/// Who waits on a slot: futures polling it and combinators it belongs to. A task is almost
/// always in at most one combinator, so the first needs no allocation of its own.
#[derive(Default)]
struct Watchers {
    wakers: Vec<Waker>,
    first_group: Option<(Weak<Group>, usize)>,
    more_groups: Vec<(Weak<Group>, usize)>,
}

impl Slot {
    pub(crate) fn new(name: &str) -> Rc<Self> {
        Self::named(Rc::from(name))
    }

    /// A slot with a shared name (a fan-out of one activity shares one name allocation).
    pub(crate) fn named(name: Rc<str>) -> Rc<Self> {
        Rc::new(Self {
            name,
            outcome: RefCell::new(None),
            completed_seq: Cell::new(0),
            watchers: RefCell::new(Watchers::default()),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn is_done(&self) -> bool {
        self.outcome.borrow().is_some()
    }

    fn is_failed(&self) -> bool {
        matches!(&*self.outcome.borrow(), Some(Err(_)))
    }

    /// Completes the slot (first completion wins), waking whoever waits on it: futures first,
    /// then combinators.
    pub(crate) fn complete(&self, outcome: Outcome, seq: u64) {
        if self.is_done() {
            return;
        }
        let failed = outcome.is_err();
        *self.outcome.borrow_mut() = Some(outcome.map_err(Box::new));
        self.completed_seq.set(seq);
        let watchers = std::mem::take(&mut *self.watchers.borrow_mut());
        for waker in watchers.wakers {
            waker.wake();
        }
        for (group, index) in watchers.first_group.into_iter().chain(watchers.more_groups) {
            if let Some(group) = group.upgrade() {
                group.member_done(index, failed);
            }
        }
    }

    fn register(&self, waker: &Waker) {
        let wakers = &mut self.watchers.borrow_mut().wakers;
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
    }

    fn join(&self, group: Weak<Group>, index: usize) {
        let mut watchers = self.watchers.borrow_mut();
        if watchers.first_group.is_none() {
            watchers.first_group = Some((group, index));
        } else {
            watchers.more_groups.push((group, index));
        }
    }

    fn decode<T: DeserializeOwned>(&self) -> Option<Result<T, TaskError>> {
        let outcome = self.outcome.borrow();
        let outcome = outcome.as_ref()?;
        Some(match outcome {
            Ok(payload) => serde_json::from_str(crate::convert::json_or_null(payload.as_deref()))
                .map_err(|e| TaskError::Deserialize {
                    name: self.name.to_string(),
                    message: format!("expected `{}`: {e}", std::any::type_name::<T>()),
                }),
            Err(error) => Err((**error).clone()),
        })
    }

    pub(crate) fn raw_outcome(&self) -> Option<Outcome> {
        self.outcome
            .borrow()
            .as_ref()
            .map(|outcome| outcome.clone().map_err(|error| *error))
    }
}

/// A durable task: an activity call, a sub-orchestration, a timer or an external event.
///
/// Await it for its typed result. A `Task` is a cheap handle: clones share one result, so a
/// task that lost a [`when_any`] race can still be awaited or inspected later
/// ([`is_completed`](Self::is_completed)).
#[must_use = "a task does nothing useful unless awaited or passed to when_all/when_any"]
pub struct Task<T> {
    slot: Rc<Slot>,
    _output: PhantomData<fn() -> T>,
}

impl<T> Clone for Task<T> {
    fn clone(&self) -> Self {
        Self {
            slot: self.slot.clone(),
            _output: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("name", &self.slot.name)
            .field("completed", &self.slot.is_done())
            .finish()
    }
}

impl<T> Task<T> {
    pub(crate) fn from_slot(slot: Rc<Slot>) -> Self {
        Self {
            slot,
            _output: PhantomData,
        }
    }

    /// `true` once history holds this task's result (success or failure).
    pub fn is_completed(&self) -> bool {
        self.slot.is_done()
    }

    /// `true` once the task has failed.
    pub fn is_failed(&self) -> bool {
        self.slot.is_failed()
    }

    /// A type-erased handle to this task, for [`when_any`] over tasks of different types.
    pub fn handle(&self) -> TaskRef {
        TaskRef {
            slot: self.slot.clone(),
        }
    }
}

impl<T: DeserializeOwned> Task<T> {
    /// The result if the task has completed, without waiting.
    pub fn result(&self) -> Option<Result<T, TaskError>> {
        self.slot.decode()
    }
}

impl<T: DeserializeOwned> Future for Task<T> {
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.slot.decode() {
            Some(result) => Poll::Ready(result),
            None => {
                self.slot.register(cx.waker());
                note_sdk_pending();
                Poll::Pending
            }
        }
    }
}

/// A type-erased handle to a [`Task`], made with [`Task::handle`].
#[derive(Clone)]
pub struct TaskRef {
    slot: Rc<Slot>,
}

impl std::fmt::Debug for TaskRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskRef")
            .field("name", &self.slot.name)
            .finish()
    }
}

impl TaskRef {
    /// `true` once history holds this task's result.
    pub fn is_completed(&self) -> bool {
        self.slot.is_done()
    }
}

impl<T> From<&Task<T>> for TaskRef {
    fn from(task: &Task<T>) -> Self {
        task.handle()
    }
}

impl<T> From<Task<T>> for TaskRef {
    fn from(task: Task<T>) -> Self {
        task.handle()
    }
}

/// Bookkeeping shared by a combinator and its member slots, so each completion costs O(1).
struct Group {
    members: Vec<Rc<Slot>>,
    remaining: Cell<usize>,
    first_failed: Cell<Option<usize>>,
    first_done: Cell<Option<usize>>,
    waker: RefCell<Option<Waker>>,
}

impl Group {
    fn new(members: Vec<Rc<Slot>>) -> Rc<Self> {
        let group = Rc::new(Self {
            remaining: Cell::new(members.len()),
            first_failed: Cell::new(None),
            first_done: Cell::new(None),
            waker: RefCell::new(None),
            members,
        });
        // Tasks that finished before the combinator was built count in history order.
        let mut done: Vec<(u64, usize)> = Vec::new();
        for (index, slot) in group.members.iter().enumerate() {
            if slot.is_done() {
                done.push((slot.completed_seq.get(), index));
            } else {
                slot.join(Rc::downgrade(&group), index);
            }
        }
        done.sort_unstable();
        for (_, index) in done {
            let failed = group.members[index].is_failed();
            group.record(index, failed);
        }
        group
    }

    fn member_done(&self, index: usize, failed: bool) {
        self.record(index, failed);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    fn record(&self, index: usize, failed: bool) {
        self.remaining.set(self.remaining.get().saturating_sub(1));
        if self.first_done.get().is_none() {
            self.first_done.set(Some(index));
        }
        if failed && self.first_failed.get().is_none() {
            self.first_failed.set(Some(index));
        }
    }

    fn park(&self, cx: &Context<'_>) {
        *self.waker.borrow_mut() = Some(cx.waker().clone());
    }
}

/// Waits for every task; resolves to their results in the order given, or to the first
/// failure in history order (fail fast), like `task.when_all` in the other SDKs.
///
/// Each completion costs O(1), so a fan-out of N tasks replays in O(N).
///
/// ```no_run
/// # use durable::prelude::*;
/// # async fn body(ctx: OrchestrationContext, items: Vec<String>) -> durable::Result<usize> {
/// let tasks: Vec<Task<usize>> = items
///     .iter()
///     .map(|item| ctx.call_activity_by_name("process_item", item))
///     .collect();
/// let results = durable::when_all(tasks).await?;
/// # Ok(results.iter().sum())
/// # }
/// ```
pub fn when_all<T: DeserializeOwned>(tasks: impl IntoIterator<Item = Task<T>>) -> WhenAll<T> {
    let slots: Vec<Rc<Slot>> = tasks.into_iter().map(|t| t.slot).collect();
    WhenAll {
        group: Group::new(slots),
        _output: PhantomData,
    }
}

/// The future returned by [`when_all`].
#[must_use = "futures do nothing unless awaited"]
pub struct WhenAll<T> {
    group: Rc<Group>,
    _output: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Future for WhenAll<T> {
    type Output = Result<Vec<T>, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let group = &self.group;
        if let Some(index) = group.first_failed.get() {
            let failure = group.members[index]
                .decode::<serde::de::IgnoredAny>()
                .and_then(Result::err)
                .expect("a recorded failure has an error outcome");
            return Poll::Ready(Err(failure));
        }
        if group.remaining.get() > 0 {
            group.park(cx);
            note_sdk_pending();
            return Poll::Pending;
        }
        let results = group
            .members
            .iter()
            .map(|slot| slot.decode::<T>().expect("every member is done"))
            .collect();
        Poll::Ready(results)
    }
}

/// Waits for the first of several tasks to complete (successfully or not) and resolves to its
/// index. When several completed before this was awaited, the one that completed first in
/// history wins, exactly as in the original run. The other tasks keep running and can still be
/// awaited later. An empty list never resolves, so pass at least one task.
///
/// ```no_run
/// # use durable::prelude::*;
/// # use std::time::Duration;
/// # async fn body(ctx: OrchestrationContext) -> durable::Result<String> {
/// let approval: Task<String> = ctx.wait_for_external_event("approval_received");
/// let timeout = ctx.create_timer(Duration::from_secs(24 * 3600));
/// if durable::when_any([approval.handle(), timeout.handle()]).await == 1 {
///     return Ok("Canceled".into());
/// }
/// Ok(format!("Approved by '{}'", approval.await?))
/// # }
/// ```
pub fn when_any<R: Into<TaskRef>>(tasks: impl IntoIterator<Item = R>) -> WhenAny {
    let slots: Vec<Rc<Slot>> = tasks.into_iter().map(|t| t.into().slot).collect();
    WhenAny {
        group: Group::new(slots),
    }
}

/// The future returned by [`when_any`]; resolves to the winning task's index.
#[must_use = "futures do nothing unless awaited"]
pub struct WhenAny {
    group: Rc<Group>,
}

impl Future for WhenAny {
    type Output = usize;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        match self.group.first_done.get() {
            Some(index) => Poll::Ready(index),
            None => {
                self.group.park(cx);
                note_sdk_pending();
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;
    use crate::error::FailureDetails;

    fn done(name: &str, outcome: Outcome, seq: u64) -> Task<u32> {
        let slot = Slot::new(name);
        slot.complete(outcome, seq);
        Task::from_slot(slot)
    }

    #[test]
    fn when_any_over_completed_tasks_picks_the_lowest_sequence() {
        let a = done("a", Ok(Some("1".into())), 7);
        let b = done("b", Ok(Some("2".into())), 3);
        let c = Task::<u32>::from_slot(Slot::new("c"));
        assert_eq!(when_any([&a, &b, &c]).now_or_never(), Some(1));
    }

    #[test]
    fn when_any_waits_then_takes_the_first_completion() {
        let a = Task::<u32>::from_slot(Slot::new("a"));
        let b = Task::<u32>::from_slot(Slot::new("b"));
        let mut race = when_any([&a, &b]);
        assert_eq!((&mut race).now_or_never(), None);
        b.slot.complete(Ok(Some("2".into())), 1);
        a.slot.complete(Ok(Some("1".into())), 2);
        assert_eq!(race.now_or_never(), Some(1));
        assert_eq!(a.result().unwrap().unwrap(), 1);
    }

    #[test]
    fn first_completion_wins_and_later_ones_are_ignored() {
        let slot = Slot::new("x");
        slot.complete(Ok(Some("1".into())), 1);
        slot.complete(Ok(Some("2".into())), 2);
        assert_eq!(Task::<u32>::from_slot(slot).result().unwrap().unwrap(), 1);
    }

    #[test]
    fn when_all_fails_with_the_earliest_failure() {
        let failed = |name: &str, seq| {
            done(
                name,
                Err(TaskError::Failed {
                    name: name.into(),
                    details: FailureDetails::new("E", name),
                }),
                seq,
            )
        };
        let tasks = vec![
            done("ok", Ok(Some("1".into())), 1),
            failed("late", 9),
            failed("early", 4),
        ];
        let error = when_all(tasks).now_or_never().unwrap().unwrap_err();
        assert_eq!(error.details().message, "early");
    }

    #[test]
    fn when_all_collects_in_argument_order() {
        let a = Task::<u32>::from_slot(Slot::new("a"));
        let b = Task::<u32>::from_slot(Slot::new("b"));
        let mut all = when_all([a.clone(), b.clone()]);
        assert!((&mut all).now_or_never().is_none());
        b.slot.complete(Ok(Some("2".into())), 1);
        assert!((&mut all).now_or_never().is_none());
        a.slot.complete(Ok(Some("1".into())), 2);
        assert_eq!(all.now_or_never().unwrap().unwrap(), vec![1, 2]);
    }
}
