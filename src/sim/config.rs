//! The simulator's configuration (`--config sim.yaml`): credentials, job durations, the task
//! limit, failure and fault fractions, per-API rate limits and added latency.
//!
//! Every key is optional; [`SimConfig::default`] is a well-behaved IMS (no faults, no rate
//! limits, 1-3 s jobs). Durations are humantime strings (`"250ms"`, `"2s"`, `"1m"`).
//! `docs/simulator.md` lists the keys and defaults for users.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::routes::{Api, ObsApi};

/// Default access key the simulator accepts.
pub const DEFAULT_AK: &str = "IMSREGSIMULATORAK00";
/// Default secret key the simulator accepts.
pub const DEFAULT_SK: &str = "imsreg-simulator-secret-key";
/// Default project ID (32 hex characters, like a real one).
pub const DEFAULT_PROJECT_ID: &str = "0123456789abcdef0123456789abcdef";
/// Default IAM token accepted in `X-Auth-Token`.
pub const DEFAULT_TOKEN: &str = "imsreg-simulator-token";

/// The whole simulator configuration.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Seed of every random choice (faults, job IDs, durations, failures).
    pub seed: u64,
    pub credentials: Credentials,
    /// How long a register job takes from acceptance to SUCCESS/FAIL.
    pub job_duration: DurationDist,
    /// Register jobs that may run at once; one more answers 400 IMG.0060.
    pub task_limit: usize,
    /// Fraction (0..=1) of accepted register jobs that end in FAIL (chosen by a seeded hash of
    /// the image ID, so the same images fail on every run with the same seed).
    pub failure_fraction: f64,
    /// Server-side faults.
    pub faults: Faults,
    /// Per-API rate limits, keyed by API name (see [`Api`]); APIs not listed are
    /// not limited.
    pub rate_limits: BTreeMap<String, RateLimit>,
    /// Added to every API response (not to `/_sim/stats`).
    pub latency: DurationDist,
    /// `X-Sdk-Date` further than this from the simulator's clock is rejected (401).
    #[serde(deserialize_with = "de_duration")]
    pub max_clock_skew: Duration,
    /// Image IDs known from the start, as `queued` (in addition to `--images`).
    pub images: Vec<String>,
    /// Added to a register job's duration per GiB of its object, when the OBS side knows the
    /// object (IMS job time grows with the file's size).
    #[serde(deserialize_with = "de_duration")]
    pub job_duration_per_gib: Duration,
    /// The OBS side: buckets, objects, faults.
    pub obs: super::obs_config::ObsConfig,
    /// What `GET /v1/cloudimages/os_version` answers: platform -> its OS versions (the values
    /// `__os_version` takes).
    pub os_versions: BTreeMap<String, Vec<String>>,
    /// Private images the account may hold (`GET /v1/cloudimages/quota`); creating one more
    /// answers 400 IMG.0015.
    pub image_quota: u64,
}

/// A realistic region's OS versions, grouped by platform.
pub fn default_os_versions() -> BTreeMap<String, Vec<String>> {
    let groups: [(&str, &[&str]); 7] = [
        ("CentOS", &["CentOS 7.9 64bit", "CentOS 8.2 64bit"]),
        (
            "Ubuntu",
            &["Ubuntu 22.04 server 64bit", "Ubuntu 20.04 server 64bit"],
        ),
        (
            "Debian",
            &[
                "Debian GNU/Linux 11.0.0 64bit",
                "Debian GNU/Linux 12.0.0 64bit",
            ],
        ),
        ("EulerOS", &["EulerOS 2.5 64bit"]),
        ("Huawei Cloud EulerOS", &["Huawei Cloud EulerOS 2.0 64bit"]),
        (
            "Windows",
            &[
                "Windows Server 2019 Standard 64bit",
                "Windows Server 2022 Standard 64bit",
            ],
        ),
        ("Other", &["Other Linux(64 bit)"]),
    ];
    groups
        .into_iter()
        .map(|(platform, versions)| {
            (
                platform.to_string(),
                versions.iter().map(|v| v.to_string()).collect(),
            )
        })
        .collect()
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            credentials: Credentials::default(),
            job_duration: DurationDist::Uniform {
                min: Duration::from_secs(1),
                max: Duration::from_secs(3),
            },
            task_limit: 40,
            failure_fraction: 0.0,
            faults: Faults::default(),
            rate_limits: BTreeMap::new(),
            latency: DurationDist::Fixed(Duration::ZERO),
            max_clock_skew: Duration::from_secs(15 * 60),
            images: Vec::new(),
            job_duration_per_gib: Duration::ZERO,
            obs: super::obs_config::ObsConfig::default(),
            os_versions: default_os_versions(),
            image_quota: 1000,
        }
    }
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("seed", &self.seed)
            .field("credentials", &self.credentials)
            .field("job_duration", &self.job_duration)
            .field("task_limit", &self.task_limit)
            .field("failure_fraction", &self.failure_fraction)
            .field("faults", &self.faults)
            .field("rate_limits", &self.rate_limits)
            .field("latency", &self.latency)
            .field("max_clock_skew", &self.max_clock_skew)
            .field("images", &self.images.len())
            .field("job_duration_per_gib", &self.job_duration_per_gib)
            .field("obs_region", &self.obs.region)
            .field("obs_buckets", &self.obs.buckets.len())
            .field("obs_faults", &self.obs.faults)
            .field(
                "os_versions",
                &self.os_versions.values().map(Vec::len).sum::<usize>(),
            )
            .field("image_quota", &self.image_quota)
            .finish()
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read simulator config {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid simulator config {path}: {message}")]
    Invalid { path: String, message: String },
}

impl SimConfig {
    /// Reads a YAML file; every key is optional.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let read_error = |source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        };
        let bytes = crate::input::read("simulator config", path, crate::input::MAX_INPUT_BYTES)
            .map_err(|err| read_error(std::io::Error::other(err.detail())))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            read_error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "it is not UTF-8 text",
            ))
        })?;
        Self::from_yaml(&text).map_err(|message| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses and checks YAML text (an empty document gives the defaults).
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let config: SimConfig = if text.trim().is_empty() {
            SimConfig::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| e.to_string())?
        };
        config.check()?;
        Ok(config)
    }

    /// Checks ranges that serde cannot express.
    pub fn check(&self) -> Result<(), String> {
        let fraction = |name: &str, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(format!("{name} must be between 0 and 1, got {value}"))
            }
        };
        fraction("failure_fraction", self.failure_fraction)?;
        fraction("faults.error_500", self.faults.error_500)?;
        fraction("faults.error_502", self.faults.error_502)?;
        fraction("faults.error_503", self.faults.error_503)?;
        fraction("faults.drop_connection", self.faults.drop_connection)?;
        fraction(
            "faults.drop_register_response",
            self.faults.drop_register_response,
        )?;
        fraction(
            "faults.garble_register_response",
            self.faults.garble_register_response,
        )?;
        fraction(
            "faults.drop_create_response",
            self.faults.drop_create_response,
        )?;
        for (platform, versions) in &self.os_versions {
            if platform.trim().is_empty() || versions.iter().any(|v| v.trim().is_empty()) {
                return Err(format!(
                    "os_versions: platform names and OS versions must not be empty (platform {platform:?})"
                ));
            }
        }
        let total = self.faults.error_500
            + self.faults.error_502
            + self.faults.error_503
            + self.faults.drop_connection;
        if total > 1.0 {
            return Err(format!(
                "faults error_500 + error_502 + error_503 + drop_connection must not exceed 1, got {total}"
            ));
        }
        for (name, limit) in &self.rate_limits {
            let obs_api = ObsApi::from_name(name);
            if Api::from_name(name).is_none() && obs_api.is_none() {
                return Err(format!(
                    "rate_limits: unknown API {name:?} (known: {}, {})",
                    Api::ALL.map(|a| a.name()).join(", "),
                    ObsApi::ALL.map(|a| a.name()).join(", ")
                ));
            }
            if limit.rate.is_nan() || limit.rate <= 0.0 || limit.burst == 0 {
                return Err(format!(
                    "rate_limits.{name}: rate must be > 0 and burst >= 1"
                ));
            }
        }
        if self.task_limit == 0 {
            return Err("task_limit must be at least 1".into());
        }
        self.obs.check()
    }
}

/// The credentials the simulator accepts. Debug output hides the secret and the token.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Credentials {
    pub ak: String,
    pub sk: String,
    pub project_id: String,
    pub token: String,
}

impl Default for Credentials {
    fn default() -> Self {
        Self {
            ak: DEFAULT_AK.into(),
            sk: DEFAULT_SK.into(),
            project_id: DEFAULT_PROJECT_ID.into(),
            token: DEFAULT_TOKEN.into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("ak", &self.ak)
            .field("sk", &"<hidden>")
            .field("project_id", &self.project_id)
            .field("token", &"<hidden>")
            .finish()
    }
}

/// Server-side faults, each a fraction (0..=1) of requests, drawn from the seeded RNG.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Answer 500 with an IMS error body instead of handling the request.
    pub error_500: f64,
    /// Answer 502 with a gateway error body.
    pub error_502: f64,
    /// Answer 503 with a gateway error body.
    pub error_503: f64,
    /// Close the connection without any response, before handling the request.
    pub drop_connection: f64,
    /// Of the register calls that are accepted (job created, image saving), close the
    /// connection instead of answering: the ambiguous case.
    pub drop_register_response: f64,
    /// Of the register calls that are accepted, answer this share `200` with an unusable body
    /// ([`Faults::garbled_body`]) instead of the job ID: a proxy's page, a broken gateway.
    pub garble_register_response: f64,
    /// What those answers carry.
    pub garbled_body: GarbledBody,
    /// Of the `POST /v2/images` calls that create an image, close the connection instead of
    /// answering: the image exists, the client cannot know it.
    pub drop_create_response: f64,
}

/// The body of a garbled register answer (`faults.garbled_body`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GarbledBody {
    /// An HTML page, as a proxy or captive portal sends.
    #[default]
    Html,
    /// Nothing at all.
    Empty,
    /// `null`.
    Null,
    /// `{}`.
    EmptyObject,
    /// `{"job_id": ""}`.
    EmptyJobId,
    /// A job ID of a million characters.
    HugeJobId,
    /// A job ID of the wrong shape (`../../etc`).
    BadJobId,
    /// A JSON answer larger than the client reads.
    Oversized,
}

impl GarbledBody {
    pub const ALL: [GarbledBody; 8] = [
        GarbledBody::Html,
        GarbledBody::Empty,
        GarbledBody::Null,
        GarbledBody::EmptyObject,
        GarbledBody::EmptyJobId,
        GarbledBody::HugeJobId,
        GarbledBody::BadJobId,
        GarbledBody::Oversized,
    ];

    pub fn body(self) -> Vec<u8> {
        match self {
            GarbledBody::Html => b"<html><body><h1>Welcome</h1></body></html>".to_vec(),
            GarbledBody::Empty => Vec::new(),
            GarbledBody::Null => b"null".to_vec(),
            GarbledBody::EmptyObject => b"{}".to_vec(),
            GarbledBody::EmptyJobId => br#"{"job_id": ""}"#.to_vec(),
            GarbledBody::HugeJobId => format!(r#"{{"job_id": "{}"}}"#, "a".repeat(1 << 20)).into(),
            GarbledBody::BadJobId => br#"{"job_id": "../../etc"}"#.to_vec(),
            GarbledBody::Oversized => {
                let filler = "x".repeat(crate::ims::client::MAX_RESPONSE_BYTES);
                format!(r#"{{"job_id": "b912fb4a4c464b568ecfca1071b21b10", "x": "{filler}"}}"#)
                    .into()
            }
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            GarbledBody::Html => "text/html",
            _ => "application/json;charset=UTF-8",
        }
    }
}

/// A token bucket: `rate` requests per second on average, at most `burst` at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub rate: f64,
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Seconds sent in `Retry-After` with the 429 (none when absent).
    #[serde(default)]
    pub retry_after: Option<u64>,
}

fn default_burst() -> u32 {
    1
}

/// A duration that is either fixed or uniformly distributed.
///
/// YAML: `"2s"` (fixed) or `{min: "1s", max: "5s"}` (uniform).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationDist {
    Fixed(Duration),
    Uniform { min: Duration, max: Duration },
}

impl DurationDist {
    /// Picks a value from `unit`, a number in `[0, 1)`.
    pub fn pick(&self, unit: f64) -> Duration {
        match *self {
            DurationDist::Fixed(d) => d,
            DurationDist::Uniform { min, max } => {
                let span = max.saturating_sub(min);
                min + span.mul_f64(unit.clamp(0.0, 1.0))
            }
        }
    }

    pub fn is_zero(&self) -> bool {
        matches!(self, DurationDist::Fixed(d) if d.is_zero())
            || matches!(self, DurationDist::Uniform { max, .. } if max.is_zero())
    }
}

impl<'de> Deserialize<'de> for DurationDist {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Fixed(String),
            Uniform { min: String, max: String },
        }
        let parse = |s: &str| humantime::parse_duration(s).map_err(serde::de::Error::custom);
        match Raw::deserialize(de)? {
            Raw::Fixed(s) => Ok(DurationDist::Fixed(parse(&s)?)),
            Raw::Uniform { min, max } => {
                let (min, max) = (parse(&min)?, parse(&max)?);
                if min > max {
                    return Err(serde::de::Error::custom("min must not exceed max"));
                }
                Ok(DurationDist::Uniform { min, max })
            }
        }
    }
}

fn de_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let raw = String::deserialize(de)?;
    humantime::parse_duration(&raw).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_yaml_gives_defaults() {
        let config = SimConfig::from_yaml("").unwrap();
        assert_eq!(config.task_limit, 40);
        assert_eq!(config.credentials.ak, DEFAULT_AK);
        assert_eq!(config.max_clock_skew, Duration::from_secs(900));
    }

    #[test]
    fn full_yaml_parses() {
        let config = SimConfig::from_yaml(
            r#"
seed: 7
credentials: {ak: AK1, sk: SK1}
job_duration: {min: 100ms, max: 300ms}
task_limit: 5
failure_fraction: 0.25
faults: {error_503: 0.1, drop_register_response: 0.5, garble_register_response: 0.2, garbled_body: huge_job_id}
rate_limits:
  register: {rate: 10, burst: 2, retry_after: 1}
latency: 5ms
max_clock_skew: 5m
images: [a, b]
"#,
        )
        .unwrap();
        assert_eq!(config.seed, 7);
        assert_eq!(config.credentials.ak, "AK1");
        assert_eq!(config.credentials.project_id, DEFAULT_PROJECT_ID);
        assert_eq!(
            config.job_duration,
            DurationDist::Uniform {
                min: Duration::from_millis(100),
                max: Duration::from_millis(300)
            }
        );
        assert_eq!(config.rate_limits["register"].burst, 2);
        assert_eq!(config.rate_limits["register"].retry_after, Some(1));
        assert_eq!(
            config.latency,
            DurationDist::Fixed(Duration::from_millis(5))
        );
        assert_eq!(config.images.len(), 2);
        assert_eq!(config.faults.garbled_body, GarbledBody::HugeJobId);
        assert_eq!(config.image_quota, 1000);
        assert!(config.os_versions["Ubuntu"].contains(&"Ubuntu 22.04 server 64bit".to_string()));
    }

    #[test]
    fn create_keys_parse() {
        let config = SimConfig::from_yaml(
            r#"
image_quota: 5
os_versions:
  CentOS: [CentOS 7.9 64bit]
faults: {drop_create_response: 0.25}
"#,
        )
        .unwrap();
        assert_eq!(config.image_quota, 5);
        assert_eq!(config.os_versions.len(), 1);
        assert_eq!(config.faults.drop_create_response, 0.25);
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(SimConfig::from_yaml("failure_fraction: 2").is_err());
        assert!(SimConfig::from_yaml("rate_limits: {nope: {rate: 1}}").is_err());
        assert!(SimConfig::from_yaml("auto_create_unknown: true").is_err());
        assert!(SimConfig::from_yaml("job_duration: {min: 2s, max: 1s}").is_err());
        assert!(SimConfig::from_yaml("faults: {error_500: 0.6, drop_connection: 0.6}").is_err());
        assert!(SimConfig::from_yaml("faults: {drop_create_response: 1.5}").is_err());
        assert!(SimConfig::from_yaml("os_versions: {CentOS: [\"\"]}").is_err());
        assert!(SimConfig::from_yaml("image_quota: -1").is_err());
        assert!(
            SimConfig::from_yaml(
                "rate_limits: {quota: {rate: 1}, os_version: {rate: 1}, delete_image: {rate: 1}}"
            )
            .is_ok()
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let text = format!("{:?}", SimConfig::default());
        assert!(!text.contains(DEFAULT_SK));
        assert!(!text.contains(DEFAULT_TOKEN));
    }

    #[test]
    fn uniform_pick_stays_in_range() {
        let dist = DurationDist::Uniform {
            min: Duration::from_secs(1),
            max: Duration::from_secs(3),
        };
        assert_eq!(dist.pick(0.0), Duration::from_secs(1));
        assert_eq!(dist.pick(0.5), Duration::from_secs(2));
        assert!(dist.pick(0.999) < Duration::from_secs(3));
    }
}
