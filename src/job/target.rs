//! Which IMS the run talks to, and as whom: the real cloud (endpoint from flags/manifest,
//! credentials from the environment) or, with `--simulate`, the built-in simulator started in
//! this process with its own credentials.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::ims::auth::{self, Credentials, Secret};
use crate::ims::client::{self, Client, ClientConfig};
use crate::manifest::ImageEntry;
use crate::sim::{DurationDist, SimConfig, SimHandle, Simulator};

/// Why the run cannot start; each is exit code 2 (nothing attempted).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{0}")]
    Credentials(#[from] auth::AuthError),
    #[error("{0}")]
    Endpoint(crate::ims::ImsError),
    #[error(
        "no project ID: set --project-id, `project_id:` in the manifest settings, or {}",
        auth::ENV_PROJECT_ID
    )]
    NoProject,
    /// IMS project IDs are per region: the top-level one belongs to the default region.
    #[error(
        "no project ID for region {region}: set `project_id:` under `settings.regions.{region}` in the manifest, or on its entries (IMS project IDs are per region; the top-level project_id and {} are the default region's)",
        auth::ENV_PROJECT_ID
    )]
    NoRegionProject { region: String },
    #[error("cannot start the simulator: {0}")]
    Simulator(std::io::Error),
}

/// Endpoint, region and project as requested by flags over manifest settings.
#[derive(Debug, Clone, Default)]
pub struct Location {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub project_id: Option<String>,
}

/// A ready client, plus what the report says about it.
pub struct Target {
    pub client: Client,
    pub endpoint: String,
    pub region: Option<String>,
    pub project_id: Option<String>,
    /// The credentials in use, for the preflight's OBS requests (never logged).
    pub credentials: Credentials,
    /// The in-process simulator (`--simulate`); dropped after the run.
    pub simulator: Option<SimHandle>,
}

/// Where credentials are looked up: the process environment, or (tests, benchmarks, embedders)
/// a given set of variables read the same way.
#[derive(Clone, Default)]
pub enum Environment {
    #[default]
    Process,
    Vars(HashMap<String, String>),
}

impl Environment {
    pub fn discover(&self) -> Result<auth::Discovered, auth::AuthError> {
        match self {
            Environment::Process => auth::discover_from_process_env(),
            Environment::Vars(vars) => auth::discover(|name| vars.get(name).cloned()),
        }
    }
}

/// Names only: the values are secrets.
impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Environment::Process => f.write_str("Process"),
            Environment::Vars(vars) => {
                let mut names: Vec<&String> = vars.keys().collect();
                names.sort();
                f.debug_tuple("Vars").field(&names).finish()
            }
        }
    }
}

/// The real cloud: credentials from the environment (or the credentials file), checked before
/// any request is sent.
pub fn real(
    location: Location,
    environment: &Environment,
    request_timeout: Option<Duration>,
) -> Result<Target, TargetError> {
    let endpoint =
        client::resolve_endpoint(location.region.as_deref(), location.endpoint.as_deref())
            .map_err(TargetError::Endpoint)?;
    let found = environment.discover()?;
    // The flag or manifest setting wins over the variable, as for every other setting.
    let project_id = location.project_id.or(found.project_id);
    if project_id.is_none() {
        return Err(TargetError::NoProject);
    }
    tracing::info!(
        credentials = %found.credentials.describe(),
        source = %found.source,
        endpoint = %endpoint,
        "using IMS"
    );
    let credentials = found.credentials;
    let mut config = ClientConfig::new(endpoint.clone(), credentials.clone());
    config.project_id = project_id.clone();
    if let Some(timeout) = request_timeout {
        config.request_timeout = timeout;
    }
    let client = Client::new(config).map_err(TargetError::Endpoint)?;
    Ok(Target {
        client,
        endpoint: endpoint.to_string(),
        region: location.region,
        project_id,
        credentials,
        simulator: None,
    })
}

/// Simulated job durations: long enough to watch, short enough for a demo in seconds.
pub const SIM_JOB_DURATION: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3));

/// Added to a simulated job per GiB of its object (made-up objects are 2-40 GiB).
pub const SIM_JOB_PER_GIB: Duration = Duration::from_millis(25);

/// `--simulate`: starts the simulator on a free loopback port, knowing the entries' image IDs
/// as queued and an OBS object for each (see [`crate::sim::obs_manifest`]), in `region` (the
/// run's, else the simulator's default), and a client pointed at it with the simulator's own
/// credentials.
///
/// `to_create` are the entries imsreg creates (their image IDs are placeholders): the simulator
/// holds their objects, not their images.
pub fn simulated(
    entries: &[ImageEntry],
    to_create: &[ImageEntry],
    region: Option<String>,
    request_timeout: Option<Duration>,
) -> Result<Target, TargetError> {
    let region = region.unwrap_or_else(|| crate::sim::obs_config::DEFAULT_REGION.to_string());
    let objects: Vec<ImageEntry> = entries.iter().chain(to_create).cloned().collect();
    let config = SimConfig {
        job_duration: DurationDist::Uniform {
            min: SIM_JOB_DURATION.0,
            max: SIM_JOB_DURATION.1,
        },
        job_duration_per_gib: SIM_JOB_PER_GIB,
        images: entries.iter().map(|e| e.image_id.to_string()).collect(),
        obs: crate::sim::obs_manifest::for_entries(&objects, &region, SimConfig::default().seed),
        ..SimConfig::default()
    };
    tracing::info!(
        "--simulate: running against the built-in IMS simulator; credentials in the environment are ignored"
    );
    let creds = config.credentials.clone();
    let handle = Simulator::start(config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .map_err(TargetError::Simulator)?;
    let url = handle.url();
    let endpoint = url::Url::parse(&url)
        .map_err(|e| TargetError::Simulator(std::io::Error::other(e.to_string())))?;
    tracing::info!(endpoint = %endpoint, "simulator listening");
    let credentials = Credentials::AkSk {
        ak: creds.ak,
        sk: Secret::new(creds.sk),
        security_token: None,
    };
    let mut client_config = ClientConfig::new(endpoint.clone(), credentials.clone());
    client_config.project_id = Some(creds.project_id.clone());
    if let Some(timeout) = request_timeout {
        client_config.request_timeout = timeout;
    }
    let client = Client::new(client_config).map_err(TargetError::Endpoint)?;
    Ok(Target {
        client,
        endpoint: endpoint.to_string(),
        region: Some(region),
        project_id: Some(creds.project_id),
        credentials,
        simulator: Some(handle),
    })
}
