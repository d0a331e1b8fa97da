//! Accepting connections: at most a fixed number open at once (a connection beyond it is
//! closed at once, and the sidecar logs why), no busy loop when the process runs out of file
//! descriptors (it logs that, pauses accepting, and keeps serving the clients it has), and
//! idle connections closed: a connection with no long-lived call open (work-item stream, wait,
//! history stream) and no call started for the idle timeout is closed by the sidecar.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Sleep;
use tonic::transport::server::Connected;

use crate::time::now_ms;

/// How long accepting pauses after the process ran out of file descriptors.
const FD_EXHAUSTED_PAUSE: Duration = Duration::from_millis(100);
/// At most one log line per this interval for each kind of refusal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The default cap on open connections: three quarters of the process's open-file limit
/// (the rest is left for the database and the accept loop), between 64 and 10,000.
pub(crate) fn default_max_connections() -> usize {
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    let three_quarters = usize::try_from(soft / 4 * 3).unwrap_or(usize::MAX);
    three_quarters.clamp(64, 10_000)
}

/// What the calls on one connection are doing, shared by the connection (which closes itself
/// once idle) and its requests (tonic hands every request its connection's [`ConnectionInfo`]).
#[derive(Debug)]
pub(crate) struct Activity {
    /// Long-lived calls in progress.
    open: AtomicUsize,
    /// When the last call started or a long-lived one ended (ms since the epoch).
    last_ms: AtomicI64,
}

impl Activity {
    fn new() -> Self {
        Self {
            open: AtomicUsize::new(0),
            last_ms: AtomicI64::new(now_ms()),
        }
    }

    /// A call started.
    pub(crate) fn touch(&self) {
        self.last_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// A long-lived call started: the connection is not idle until the guard drops.
    pub(crate) fn hold(self: &Arc<Self>) -> Held {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.touch();
        Held(Arc::clone(self))
    }

    /// How long nothing has happened; `None` while a long-lived call is open.
    fn idle_for(&self) -> Option<Duration> {
        if self.open.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let idle_ms = now_ms() - self.last_ms.load(Ordering::Relaxed);
        Some(Duration::from_millis(u64::try_from(idle_ms).unwrap_or(0)))
    }
}

/// Keeps a connection busy while a long-lived call runs.
pub(crate) struct Held(Arc<Activity>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.touch();
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What tonic attaches to every request of a connection.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionInfo {
    pub(crate) activity: Arc<Activity>,
}

/// The activity of the connection `req` came on (none for requests made in-process).
pub(crate) fn activity_of<T>(req: &tonic::Request<T>) -> Option<&Arc<Activity>> {
    req.extensions()
        .get::<ConnectionInfo>()
        .map(|info| &info.activity)
}

/// An accepted connection holding one of the open-connection slots until it closes.
pub(crate) struct Accepted {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    activity: Arc<Activity>,
    idle_timeout: Duration,
    idle_timer: Pin<Box<Sleep>>,
}

/// Accepts connections from `listener` in a task of its own; the server reads them from the
/// returned channel. The task ends when the server drops the channel.
pub(crate) fn accept(
    listener: TcpListener,
    max: usize,
    idle_timeout: Duration,
) -> mpsc::Receiver<io::Result<Accepted>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(max));
        let mut refused = Throttled::default();
        let mut exhausted = Throttled::default();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => break,
            };
            match accepted {
                Ok((stream, peer)) => match Arc::clone(&slots).try_acquire_owned() {
                    Ok(slot) => {
                        let _ = stream.set_nodelay(true);
                        let accepted = Accepted {
                            stream,
                            _slot: slot,
                            activity: Arc::new(Activity::new()),
                            idle_timeout,
                            idle_timer: Box::pin(tokio::time::sleep(idle_timeout)),
                        };
                        if tx.send(Ok(accepted)).await.is_err() {
                            break;
                        }
                    }
                    Err(_) => refused.log(|n| {
                        tracing::warn!(
                            %peer,
                            refused = n,
                            "refusing connections: {max} are open, the limit (raise it with --max-connections or SidecarBuilder::max_connections)"
                        );
                    }),
                },
                Err(e) if out_of_descriptors(&e) => {
                    exhausted.log(|n| {
                        tracing::error!(
                            error = %e,
                            times = n,
                            "out of file descriptors: not accepting connections for a moment; connected clients are still served (raise the open-file limit, ulimit -n, or lower --max-connections)"
                        );
                    });
                    tokio::time::sleep(FD_EXHAUSTED_PAUSE).await;
                }
                // Errors of one connection (reset before it was accepted and the like).
                Err(e) => tracing::debug!(error = %e, "accept failed"),
            }
        }
    });
    rx
}

fn out_of_descriptors(e: &io::Error) -> bool {
    // EMFILE (24): the process's limit; ENFILE (23): the system's.
    matches!(e.raw_os_error(), Some(23 | 24))
}

/// Logs at most once per [`LOG_EVERY`], with the number of occurrences since the last line.
#[derive(Default)]
struct Throttled {
    last: Option<Instant>,
    count: u64,
}

impl Throttled {
    fn log(&mut self, log: impl FnOnce(u64)) {
        self.count += 1;
        if self.last.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            log(self.count);
            self.last = Some(Instant::now());
            self.count = 0;
        }
    }
}

impl Connected for Accepted {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnectionInfo {
            activity: Arc::clone(&self.activity),
        }
    }
}

impl AsyncRead for Accepted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let ready @ Poll::Ready(_) = Pin::new(&mut this.stream).poll_read(cx, buf) {
            return ready;
        }
        // Nothing to read. The idle timer is re-armed only when it fires (not on every read):
        // then the connection ends, as if the peer had closed it, if it has been idle long
        // enough (the HTTP/2 server then closes its side), or the timer waits out the rest.
        while this.idle_timer.as_mut().poll(cx).is_ready() {
            let wait = match this.activity.idle_for() {
                None => this.idle_timeout,
                Some(idle) if idle >= this.idle_timeout => {
                    tracing::debug!("closing a connection idle for {idle:?}");
                    return Poll::Ready(Ok(()));
                }
                Some(idle) => this.idle_timeout - idle,
            };
            let deadline = tokio::time::Instant::now() + wait;
            this.idle_timer.as_mut().reset(deadline);
        }
        Poll::Pending
    }
}

impl AsyncWrite for Accepted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
