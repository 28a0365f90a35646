//! The run's metrics exporters (`--metrics-file`, `--metrics-listen`), from the job's start to
//! its end: the registry seeded with the previous file's last success, a first write of the
//! file and the listener bound before anything is sent (so a bad path or a taken port stops
//! the job as a [`JobError`]), the rewrites every 10 s, and the final write after the report,
//! when the metrics are the report's counts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::{self, Metrics};
use crate::report::Report;

use super::options::{JobObserver, MetricsOptions};
use super::prepare::JobError;

/// How long the end of the run waits for an open scrape to finish.
const SERVER_GRACE: Duration = Duration::from_secs(2);

/// The exporters of one run, while it lasts.
pub struct Exporter {
    pub metrics: Arc<Metrics>,
    file: Option<PathBuf>,
    stop: CancellationToken,
    rewrites: Option<JoinHandle<()>>,
    server: Option<JoinHandle<()>>,
}

impl Exporter {
    /// Starts what `options` ask for (nothing: `None`), for a run of `manifest` in `region`
    /// that started at `started_at`.
    pub async fn start(
        options: &MetricsOptions,
        manifest: &Path,
        region: Option<&str>,
        started_at: DateTime<Utc>,
        observer: &dyn JobObserver,
    ) -> Result<Option<Exporter>, JobError> {
        if options.file.is_none() && options.listen.is_none() {
            return Ok(None);
        }
        let manifest_name = manifest
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| manifest.display().to_string());
        let metrics = Arc::new(Metrics::new(region, &manifest_name));
        metrics.run_started(started_at);
        let stop = CancellationToken::new();
        let mut exporter = Exporter {
            metrics,
            file: options.file.clone(),
            stop,
            rewrites: None,
            server: None,
        };
        if let Some(path) = &options.file {
            if path.extension().is_none_or(|ext| ext != "prom") {
                tracing::warn!(
                    "--metrics-file {}: node_exporter's textfile collector reads only files named *.prom",
                    path.display()
                );
            }
            for (manifest, at) in metrics::read_last_successes(path) {
                exporter.metrics.remember_last_success(&manifest, at);
            }
            if let Err(message) = exporter.write().await {
                return Err(JobError::Metrics {
                    flag: "--metrics-file",
                    target: path.display().to_string(),
                    message,
                });
            }
        }
        if let Some(address) = options.listen {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .and_then(|listener| Ok((listener.local_addr()?, listener)));
            let (bound, listener) = match listener {
                Ok(bound) => bound,
                Err(err) => {
                    exporter.stop.cancel();
                    return Err(JobError::Metrics {
                        flag: "--metrics-listen",
                        target: address.to_string(),
                        message: format!("cannot listen there: {err}"),
                    });
                }
            };
            exporter.server = Some(metrics::serve(
                listener,
                exporter.metrics.clone(),
                exporter.stop.clone(),
            ));
            tracing::info!("serving metrics at http://{bound}/metrics");
            observer.metrics_listening(bound);
        }
        if let Some(path) = &options.file {
            let registry = exporter.metrics.clone();
            exporter.rewrites = Some(metrics::spawn_rewrites(
                path.clone(),
                metrics::REWRITE_INTERVAL,
                Arc::new(move || registry.render()),
                exporter.stop.clone(),
            ));
        }
        Ok(Some(exporter))
    }

    /// Ends the exporters: with `report` (and whether the run succeeded), the metrics become
    /// the report's counts first; the file is written a last time. Answers why that final
    /// write failed, if it did.
    pub async fn finish(mut self, report: Option<(&Report, bool)>) -> Option<String> {
        if let Some((report, succeeded)) = report {
            self.metrics.finished(report, succeeded);
        }
        self.stop.cancel();
        if let Some(rewrites) = self.rewrites.take() {
            let _ = rewrites.await;
        }
        let error = self.write().await.err();
        if let Some(err) = &error {
            tracing::error!("cannot write the metrics file: {err}");
        }
        if let Some(server) = self.server.take() {
            let abort = server.abort_handle();
            if tokio::time::timeout(SERVER_GRACE, server).await.is_err() {
                abort.abort();
            }
        }
        error
    }

    /// Writes the file (if one was asked for) with the metrics as they are now.
    async fn write(&self) -> Result<(), String> {
        let Some(path) = self.file.clone() else {
            return Ok(());
        };
        let text = self.metrics.render();
        match tokio::task::spawn_blocking(move || metrics::write_atomically(&path, &text)).await {
            Ok(written) => written.map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        }
    }
}

impl Drop for Exporter {
    /// A job that ends early (an error after the start) stops the rewrites and the server.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
