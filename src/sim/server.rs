//! Connections: an accept loop over hyper's HTTP/1.1 server that can drop a connection
//! without answering (the simulator's "lost response" faults) and shuts down gracefully.
//!
//! Each connection gets a [`ConnectionKiller`] in its requests' extensions. A handler that
//! wants the client to see a dead connection calls [`ConnectionKiller::kill`]; the connection
//! task then drops the hyper connection, which closes the socket with nothing written.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

/// How long shutdown waits for in-flight requests before closing their connections.
const GRACE: Duration = Duration::from_secs(5);

/// Closes the connection a request arrived on, without an answer.
#[derive(Clone)]
pub struct ConnectionKiller(Arc<Notify>);

impl ConnectionKiller {
    pub fn kill(&self) {
        self.0.notify_one();
    }
}

/// Spawns the accept loop serving `router`; answers the shutdown switch and the loop's task.
pub fn spawn(listener: TcpListener, router: Router) -> (watch::Sender<bool>, JoinHandle<()>) {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, router, shutdown_rx));
    (shutdown_tx, task)
}

async fn accept_loop(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, router.clone(), shutdown.clone()));
                }
                Err(err) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!("simulator accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            // A shutdown request, or the handle was dropped.
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(GRACE, drain).await.is_err() {
        connections.shutdown().await;
    }
}

async fn serve_connection(stream: TcpStream, router: Router, mut shutdown: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let killer = ConnectionKiller(Arc::new(Notify::new()));
    let request_killer = killer.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(request_killer.clone());
        router.clone().oneshot(request.map(axum::body::Body::new))
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut draining = *shutdown.borrow();
    if draining {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            // Dropping the connection closes the socket with nothing written.
            _ = killer.0.notified() => return,
            // A shutdown request, or the handle was dropped.
            _ = shutdown.changed(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Closes the connection without answering (the request future is dropped with it).
pub async fn drop_connection(killer: Option<ConnectionKiller>) -> Response {
    match killer {
        Some(killer) => {
            killer.kill();
            std::future::pending().await
        }
        // Not served by our connection loop: the nearest thing is an aborted body.
        None => Response::new(Body::from_stream(futures::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::other("connection dropped"))
        }))),
    }
}
