//! Connections: the accept loop and HTTP/1 on each connection (hyper), with a deadline for a
//! request's headers.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::time::Duration;
use tokio::net::TcpListener;

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
            let io = TokioIo::new(stream);
            let service = TowerToHyperService::new(app);
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
