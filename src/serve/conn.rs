//! Connections: the accept loop and HTTP/1 on each connection (hyper), with a deadline for a
//! request's headers and what the end of a client's input means.
//!
//! A client whose request is its last on the connection (HTTP/1.0 without keep-alive, or
//! `Connection: close`) has nothing more to send and may shut down its sending side (a
//! half-close) before reading the answer: it gets the answer. On a keep-alive connection the
//! end of input while a request is in flight means the client went away: hyper drops the
//! request, and the batcher frees its place.

use axum::Router;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION};
use hyper::{Request, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Serves `app` on `listener` until `stop` completes; then stops accepting, lets every
/// connection finish the request it is answering, and returns once all are closed. A
/// connection whose request headers have not all arrived within `header_timeout` (an idle
/// keep-alive connection included) is closed.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    stop: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // Connections hold a receiver each; the sender sees them all gone when they are closed.
    let (closed_tx, closed_rx) = tokio::sync::watch::channel(());
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(());
    let mut stop = std::pin::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let app = app.clone();
        let http = http.clone();
        let mut stopping = stopping_rx.clone();
        let closed = closed_rx.clone();
        tokio::spawn(async move {
            let last_request = Arc::new(AtomicBool::new(false));
            let io = TokioIo::new(HalfClose {
                stream,
                last_request: Arc::clone(&last_request),
            });
            let service = NoteLastRequest {
                inner: TowerToHyperService::new(app),
                last_request,
            };
            let mut connection = std::pin::pin!(http.serve_connection(io, service));
            tokio::select! {
                _ = connection.as_mut() => {}
                // The one change is to stopping (or the sender gone: stopping too).
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(closed);
        });
    }
    drop(listener);
    let _ = stopping_tx.send(());
    drop(closed_rx);
    closed_tx.closed().await;
}

/// An error of `accept`: one connection's (the client gave up) is passed over; others (out of
/// file descriptors) are said and waited out a little, as hyper and axum do.
async fn accept_failed(error: io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    eprintln!("accepting a connection failed: {error}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Whether a request says it is the client's last on its connection: HTTP/1.0 without
/// `Connection: keep-alive`, or `Connection: close` (as hyper decides keep-alive).
fn is_last_request(request: &Request<Incoming>) -> bool {
    let says = |token: &str| {
        request
            .headers()
            .get_all(CONNECTION)
            .iter()
            .filter_map(|value: &HeaderValue| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    match request.version() {
        Version::HTTP_10 | Version::HTTP_09 => !says("keep-alive"),
        _ => says("close"),
    }
}

/// The service of one connection: notes, before the request is handled, whether it is the
/// client's last, for [`HalfClose`].
#[derive(Clone)]
struct NoteLastRequest<S> {
    inner: S,
    last_request: Arc<AtomicBool>,
}

impl<S> hyper::service::Service<Request<Incoming>> for NoteLastRequest<S>
where
    S: hyper::service::Service<Request<Incoming>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        // Stored as hyper reads the headers, before it looks for the end of input.
        self.last_request
            .store(is_last_request(&request), Ordering::Relaxed);
        self.inner.call(request)
    }
}

/// A connection's socket that hides the end of the client's input once the client has sent its
/// last request, so that hyper answers a half-closed client instead of dropping its request.
/// (Nothing is read after a last request's body but that end: hyper closes the connection once
/// it has answered.)
struct HalfClose {
    stream: TcpStream,
    last_request: Arc<AtomicBool>,
}

impl AsyncRead for HalfClose {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(()))
                if room
                    && buf.filled().len() == before
                    && this.last_request.load(Ordering::Relaxed) =>
            {
                Poll::Pending
            }
            other => other,
        }
    }
}

impl AsyncWrite for HalfClose {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
