//! The threads orchestration episodes run on, and the replay state they keep between
//! episodes.
//!
//! One thread per core: episodes are CPU work (the executor never waits), so more threads
//! would not run them sooner; few threads also keep the allocator to few arenas, which is most
//! of what a large fan-out's memory comes down to. Each instance's episodes run on the same
//! thread (chosen by its id), and that thread keeps the execution's replay state after an
//! episode ([`Resumable`]): when the sidecar in this process sends the next episode with only
//! the history the worker has not seen (see [`proto::HELD_EVENTS_PROPERTY`]), the episode
//! continues that state instead of replaying the whole history. Other sidecars always send the
//! whole history, and an episode then replays it from the start.

use std::cell::RefCell;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use lru::LruCache;

use crate::orchestration::{Resumable, history_required};
use crate::proto::history_event::EventType;
use crate::proto::{self, ExecutionStartedEvent, HistoryEvent};
use crate::registry::Registry;
use crate::telemetry::{EpisodeTrace, Origins};

/// How many executions' replay state each episode thread keeps, least recently used first
/// out. An execution whose state was dropped replays its history once, then is held again.
const HELD_PER_THREAD: usize = 1024;

type Job = Box<dyn FnOnce() + Send>;

/// The episode threads, each fed by its own queue.
pub(crate) struct EpisodeThreads {
    queues: Vec<mpsc::Sender<Job>>,
}

impl EpisodeThreads {
    /// The process's episode threads, started on first use; `None` when they cannot be
    /// started (episodes then run on tokio's blocking pool, each replaying its history).
    pub(crate) fn get() -> Option<&'static Self> {
        static THREADS: OnceLock<Option<EpisodeThreads>> = OnceLock::new();
        THREADS.get_or_init(Self::start).as_ref()
    }

    fn start() -> Option<Self> {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let mut queues = Vec::with_capacity(cores);
        for i in 0..cores {
            let (queue, jobs) = mpsc::channel::<Job>();
            let started = std::thread::Builder::new()
                .name(format!("durable-episode-{i}"))
                .spawn(move || {
                    for job in jobs {
                        job();
                    }
                });
            if let Err(e) = started {
                tracing::warn!(
                    "starting the episode threads failed ({e}); using tokio's blocking pool"
                );
                return None;
            }
            queues.push(queue);
        }
        Some(Self { queues })
    }

    /// Runs `job` on the thread of the instance `instance_id`; `false` if that thread is gone.
    pub(crate) fn run(&self, instance_id: &str, job: Job) -> bool {
        let mut hasher = DefaultHasher::new();
        instance_id.hash(&mut hasher);
        let index = (hasher.finish() % self.queues.len() as u64) as usize;
        self.queues[index].send(job).is_ok()
    }
}

/// Identifies one work-item stream of one worker: state held for an episode from one stream
/// is continued only by episodes from the same stream (the sidecar's promise is per stream).
pub(crate) fn new_stream_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// What an episode thread keeps of one execution between episodes.
struct Held {
    resumable: Resumable,
    /// The execution's start, for what each episode reports about it (name, version, trace).
    started: ExecutionStartedEvent,
    /// The scheduling events of tasks still unanswered, while traces are recorded (an
    /// answer's span starts when its task was scheduled).
    origins: Origins,
}

thread_local! {
    static HELD: RefCell<LruCache<(u64, String), Held>> = RefCell::new(LruCache::new(
        NonZeroUsize::new(HELD_PER_THREAD).expect("a positive capacity"),
    ));
}

/// Runs one episode of `request`, continuing the replay state this thread holds when the
/// request says the worker holds it. `stream`: the work-item stream it came from, when the
/// state is to be kept afterwards (on an episode thread, where the instance's next episode
/// runs too, with a sidecar in this process). Returns the response and the orchestration's
/// name.
pub(crate) fn run_episode(
    registry: &Registry,
    request: &proto::OrchestratorRequest,
    stream: Option<u64>,
) -> (proto::OrchestratorResponse, String) {
    let keep = stream.is_some();
    let key = (stream.unwrap_or_default(), request.instance_id.clone());
    let held = match request.held_events() {
        None => {
            if keep {
                HELD.with(|held| held.borrow_mut().pop(&key));
            }
            None
        }
        Some(events) => {
            let held = keep.then(|| HELD.with(|held| held.borrow_mut().pop(&key)));
            match held.flatten() {
                Some(held)
                    if held.resumable.applied == events
                        && request
                            .execution_id
                            .as_ref()
                            .is_none_or(|e| *e == held.resumable.execution_id) =>
                {
                    Some(held)
                }
                _ => return (history_required(request), String::new()),
            }
        }
    };
    let (started, mut origins, resumable) = match held {
        Some(held) => (Some(held.started), held.origins, Some(held.resumable)),
        None => (find_started(request), Origins::default(), None),
    };
    let trace = EpisodeTrace::start(request, started.as_ref());
    let (mut response, resumable) =
        crate::orchestration::execute_resumable(registry, request, resumable);
    trace.finish(request, &mut response, keep.then_some(&mut origins));
    let name = started.as_ref().map(|s| s.name.clone()).unwrap_or_default();
    if let (true, Some(resumable), Some(mut started)) = (keep, resumable, started) {
        started.input = None;
        let held = Held {
            resumable,
            started,
            origins,
        };
        HELD.with(|cache| cache.borrow_mut().put(key, held));
    }
    (response, name)
}

fn find_started(request: &proto::OrchestratorRequest) -> Option<ExecutionStartedEvent> {
    request
        .past_events
        .iter()
        .chain(&request.new_events)
        .find_map(|e: &HistoryEvent| match &e.event_type {
            Some(EventType::ExecutionStarted(started)) => Some(started.clone()),
            _ => None,
        })
}
