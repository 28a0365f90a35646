//! `imsreg simulate`: serve the built-in IMS simulator until SIGINT/SIGTERM.
//!
//! The first stdout line is `listening on http://HOST:PORT` (flushed at once) so scripts can
//! start the server on port 0 and read where it is. Credentials come from the same environment
//! variables the client reads, else the config file, else the documented defaults.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use imsreg::sim::{SimConfig, Simulator};

use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Simulator settings (YAML): durations, limits, faults, credentials. See docs/simulator.md.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A manifest whose image IDs the simulator knows from the start, as `queued`, with an
    /// OBS object for each entry (unless the config lists its bucket).
    #[arg(long, value_name = "MANIFEST")]
    pub images: Option<PathBuf>,
}

/// Environment variables whose values replace the configured credentials when set.
const ENV_AK: &str = "HUAWEICLOUD_SDK_AK";
const ENV_SK: &str = "HUAWEICLOUD_SDK_SK";
const ENV_PROJECT_ID: &str = "HUAWEICLOUD_SDK_PROJECT_ID";
const ENV_TOKEN: &str = "OS_AUTH_TOKEN";

pub fn main(args: Args) -> u8 {
    let config = match load_config(&args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("imsreg simulate: {message}");
            return exit::USAGE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("imsreg simulate: cannot start the async runtime: {err}");
            return exit::USAGE;
        }
    };
    runtime.block_on(serve(config, args.listen))
}

/// Config file, then environment credentials, then the manifest's image IDs.
fn load_config(args: &Args) -> Result<SimConfig, String> {
    let mut config = match &args.config {
        Some(path) => SimConfig::from_file(path).map_err(|e| e.to_string())?,
        None => SimConfig::default(),
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let credentials = &mut config.credentials;
    for (name, slot) in [
        (ENV_AK, &mut credentials.ak),
        (ENV_SK, &mut credentials.sk),
        (ENV_PROJECT_ID, &mut credentials.project_id),
        (ENV_TOKEN, &mut credentials.token),
    ] {
        if let Some(value) = env(name) {
            *slot = value.trim().to_string();
        }
    }
    if let Some(manifest) = &args.images {
        let entries = manifest_entries(manifest)?;
        config
            .images
            .extend(entries.iter().map(|entry| entry.image_id.to_string()));
        let seed = config.seed;
        imsreg::sim::obs_manifest::add_entries(&mut config.obs, &entries, seed);
    }
    Ok(config)
}

/// A manifest's valid entries (invalid entries are reported and skipped).
fn manifest_entries(path: &Path) -> Result<Vec<imsreg::manifest::ImageEntry>, String> {
    let manifest = imsreg::manifest::load(path).map_err(|e| e.to_string())?;
    if manifest.error_count() > 0 {
        eprintln!(
            "imsreg simulate: {} has {} error(s); serving its {} valid image(s) only \
             (run `imsreg validate {}` for details)",
            path.display(),
            manifest.error_count(),
            manifest.images.len(),
            path.display()
        );
    }
    Ok(manifest.images)
}

async fn serve(config: SimConfig, listen: SocketAddr) -> u8 {
    let image_count = config.images.len();
    let bucket_count = config.obs.buckets.len();
    let obs_region = config.obs.region.clone();
    let ak = config.credentials.ak.clone();
    let project_id = config.credentials.project_id.clone();
    let handle = match Simulator::start(config, listen) {
        Ok(handle) => handle,
        Err(err) => {
            eprintln!("imsreg simulate: cannot listen on {listen}: {err}");
            return exit::USAGE;
        }
    };
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on {}", handle.url());
    let _ = stdout.flush();
    eprintln!(
        "imsreg simulate: {image_count} queued image(s); AK {ak}, project {project_id}; \
         OBS path-style at {}/BUCKET/KEY ({bucket_count} bucket(s), region {obs_region}); \
         stats at {}/_sim/stats; stop with Ctrl-C",
        handle.url(),
        handle.url()
    );

    wait_for_signal().await;
    eprintln!("imsreg simulate: stopping");
    handle.shutdown().await;
    exit::OK
}

/// Resolves on SIGINT or (on Unix) SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
