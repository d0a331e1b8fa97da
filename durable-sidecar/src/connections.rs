//! Accepting connections: at most a fixed number open at once (a connection beyond it is
//! closed at once, and the sidecar logs why), and no busy loop when the process runs out of
//! file descriptors (it logs that, pauses accepting, and keeps serving the clients it has).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tonic::transport::server::{Connected, TcpConnectInfo};

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

/// An accepted connection holding one of the open-connection slots until it closes.
pub(crate) struct Accepted {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

/// Accepts connections from `listener` in a task of its own; the server reads them from the
/// returned channel. The task ends when the server drops the channel.
pub(crate) fn accept(listener: TcpListener, max: usize) -> mpsc::Receiver<io::Result<Accepted>> {
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
                        if tx.send(Ok(Accepted { stream, _slot: slot })).await.is_err() {
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
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Accepted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
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
