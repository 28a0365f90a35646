//! The built-in IMS simulator: a faithful stand-in for IMS over real HTTP (axum on hyper),
//! used by the demo, the end-to-end tests and the benchmarks.
//!
//! [`Simulator::start`] binds a port and serves in a tokio task; the returned [`SimHandle`]
//! seeds images, forces statuses, reads [`SimStats`] and shuts the server down. Module map:
//! [`config`] (YAML settings), [`state`] (images, jobs, lifecycle computed from the clock),
//! [`auth`] (AK/SK and token checks), [`limits`] (rate limits), [`stats`] (counters),
//! `routes` (the APIs and their paths), `create` (the `POST /v2/images` body rules), `api`
//! (request handling) and `server` (connections, dropped responses, shutdown).
//!
//! The same listener serves OBS, path-style: [`obs`] (requests), [`obs_store`] (buckets and
//! virtual objects, and what IMS learns from them), [`obs_config`] (the `obs:` block),
//! `obs_content` (the bytes of real image heads) and [`obs_manifest`] (objects made up for a
//! manifest's entries, for `--simulate`).

mod api;
pub mod auth;
pub mod config;
mod create;
mod hash;
pub mod limits;
pub mod obs;
pub mod obs_config;
mod obs_content;
pub mod obs_manifest;
pub mod obs_store;
mod routes;
mod server;
pub mod state;
pub mod stats;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{Credentials, DurationDist, Faults, GarbledBody, RateLimit, SimConfig};
pub use obs_config::ObsConfig;
pub use routes::Api;
pub use stats::SimStats;

use crate::ims::ImageStatus;

/// Entry point: starts a simulator server.
pub struct Simulator;

impl Simulator {
    /// Binds `listen` (e.g. `127.0.0.1:0` for a free port) and serves in a tokio task.
    ///
    /// Must be called inside a tokio runtime. Fails if the configuration is invalid or the
    /// address cannot be bound.
    pub fn start(config: SimConfig, listen: SocketAddr) -> std::io::Result<SimHandle> {
        config
            .check()
            .map_err(|m| std::io::Error::new(std::io::ErrorKind::InvalidInput, m))?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(std::io::Error::other(
                "the simulator must be started inside a tokio runtime",
            ));
        }
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(api::Shared::new(config));
        let (shutdown, task) = server::spawn(listener, api::router(shared.clone()));
        Ok(SimHandle {
            addr,
            shared,
            shutdown,
            task,
        })
    }
}

/// A running simulator. Keep it alive while the server is needed: dropping it stops the
/// server too (without waiting); [`SimHandle::shutdown`] stops it and waits.
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<api::Shared>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

impl SimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT`, the endpoint to point a client at.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The configuration in force (credentials included, for building a client).
    pub fn config(&self) -> &SimConfig {
        self.shared.config()
    }

    /// Makes image IDs known as `queued` (already known ones are left alone).
    pub fn add_images(&self, ids: impl IntoIterator<Item = String>) {
        self.shared.add_images(ids);
    }

    /// Gives every entry an OBS bucket and object (made up as for `--simulate`, see
    /// [`obs_manifest`]); buckets and objects already known are left alone.
    pub fn add_objects_for(&self, entries: &[crate::manifest::ImageEntry]) {
        self.shared.add_objects_for(entries);
    }

    /// Forces an image's status (creating it if unknown), e.g. `active` or `killed`, and
    /// detaches any job from it.
    pub fn set_image_status(&self, id: &str, status: ImageStatus) {
        self.shared.set_image_status(id, status);
    }

    /// The image's status now, as IMS would report it.
    pub fn image_status(&self, id: &str) -> Option<ImageStatus> {
        self.shared.image_status(id)
    }

    /// `(id, status)` of every image named `name`, in ID order: exactly one per created
    /// manifest entry is the promise of issue 14.
    pub fn images_named(&self, name: &str) -> Vec<(String, ImageStatus)> {
        self.shared.images_named(name)
    }

    /// `(id, status)` of every image carrying the tag `key=value`, in ID order.
    pub fn images_tagged(&self, key: &str, value: &str) -> Vec<(String, ImageStatus)> {
        self.shared.images_tagged(key, value)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        self.shared.stats()
    }

    /// Stops accepting, lets in-flight requests finish (up to a few seconds), then returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}
