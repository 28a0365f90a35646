//! The run's Prometheus metrics ([`Metrics`]): one registry, fed by the engine's
//! [`RunEvent`]s (it is an [`EventSink`]) and by the job's milestones (the run's start, the
//! engine's start, the report), rendered in the Prometheus text format 0.0.4 (what
//! node_exporter's textfile collector reads, and what `/metrics` answers).
//!
//! Labels carry no secrets and nothing per image: `status` (the report's status names plus
//! `in_progress`), `region`, `api` (the IMS API, [`Api`]), `manifest` (the manifest's file
//! name) and `version`. Every series that will exist is exported from the start, at 0.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::ids::ImageId;
use crate::ims::ImageStatus;
use crate::report::{ImageOutcome, Report};
use crate::run::{Api, CloudStatus, EventSink, PlannedImage, RunEvent};

/// Every report status, in the report's order: each is exported as a series of
/// `imsreg_images` from the start.
pub const STATUSES: [ImageOutcome; 8] = [
    ImageOutcome::Registered,
    ImageOutcome::AlreadyRegistered,
    ImageOutcome::Failed,
    ImageOutcome::Invalid,
    ImageOutcome::Pending,
    ImageOutcome::Cancelled,
    ImageOutcome::Unreachable,
    ImageOutcome::PreflightFailed,
];

/// The `status` of images the engine has not finished yet (0 once the run has ended).
pub const IN_PROGRESS: &str = "in_progress";

/// Upper bounds of `imsreg_job_duration_seconds`: registrations take from about a second (the
/// simulator, small images) to many hours (IMS allows 12 h and more for large files).
pub const JOB_DURATION_BUCKETS: [f64; 15] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
    28800.0, 43200.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ImagesLabels {
    status: &'static str,
    region: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ManifestLabels {
    manifest: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// A gauge holding seconds since the Unix epoch.
type Timestamp = Gauge<f64, AtomicU64>;

/// What the events need to remember between them (never exported as such).
#[derive(Default)]
struct Live {
    /// Registrations this run follows in IMS: submitted by it, or found `saving`.
    in_flight: HashSet<ImageId>,
    /// Object sizes from the preflight, for the bytes registered.
    sizes: HashMap<ImageId, u64>,
    /// The `region` label of images not in the run's default region (a manifest across
    /// regions).
    regions: HashMap<ImageId, String>,
}

/// The registry of one run's metrics.
pub struct Metrics {
    registry: Registry,
    region: String,
    manifest: String,
    images: Family<ImagesLabels, Gauge>,
    submitted: Counter,
    retries: Family<ApiLabels, Counter>,
    throttled: Family<ApiLabels, Counter>,
    jobs_in_flight: Gauge,
    job_duration: Histogram,
    registered_bytes: Counter,
    run_start: Timestamp,
    last_progress: Timestamp,
    last_success: Family<ManifestLabels, Timestamp>,
    live: Mutex<Live>,
}

impl Metrics {
    /// The metrics of a run in `region` (empty when only an endpoint was given) of the
    /// manifest whose file name is `manifest`.
    pub fn new(region: Option<&str>, manifest: &str) -> Self {
        let mut registry = Registry::with_prefix("imsreg");
        let images = Family::<ImagesLabels, Gauge>::default();
        let submitted = Counter::default();
        let retries = Family::<ApiLabels, Counter>::default();
        let throttled = Family::<ApiLabels, Counter>::default();
        let jobs_in_flight = Gauge::default();
        let job_duration = Histogram::new(JOB_DURATION_BUCKETS);
        let registered_bytes = Counter::default();
        let run_start = Timestamp::default();
        let last_progress = Timestamp::default();
        let last_success = Family::<ManifestLabels, Timestamp>::default();

        registry.register(
            "images",
            "Images of the manifest by status (the report's status names; in_progress while the \
             run follows them)",
            images.clone(),
        );
        // The encoder adds `_total` to counters (registering the suffix panics in debug builds).
        registry.register(
            "registrations_submitted",
            "Register calls IMS accepted (a job ID answered) in this run",
            submitted.clone(),
        );
        registry.register(
            "retries",
            "IMS calls retried after a failure, by API",
            retries.clone(),
        );
        registry.register(
            "throttled",
            "IMS answers 429 (throttled), by API",
            throttled.clone(),
        );
        registry.register(
            "jobs_in_flight",
            "Registrations running in IMS that this run follows",
            jobs_in_flight.clone(),
        );
        registry.register_with_unit(
            "job_duration",
            "From submission to the registration's end, for images submitted in this run",
            Unit::Seconds,
            job_duration.clone(),
        );
        registry.register_with_unit(
            "registered",
            "Bytes of the images this run registered (sizes known from the preflight)",
            Unit::Bytes,
            registered_bytes.clone(),
        );
        registry.register_with_unit(
            "run_start_timestamp",
            "When this run started (Unix time)",
            Unit::Seconds,
            run_start.clone(),
        );
        registry.register_with_unit(
            "last_progress_timestamp",
            "When the run last learned something new about an image (Unix time)",
            Unit::Seconds,
            last_progress.clone(),
        );
        registry.register_with_unit(
            "last_success_timestamp",
            "When a run of this manifest last ended with every image registered (Unix time)",
            Unit::Seconds,
            last_success.clone(),
        );
        registry.register(
            "build",
            "The imsreg version",
            Info::new(BuildLabels {
                version: crate::VERSION,
            }),
        );

        let region = region.unwrap_or_default().to_string();
        for status in STATUSES.iter().map(|s| s.as_str()).chain([IN_PROGRESS]) {
            images.get_or_create_owned(&ImagesLabels {
                status,
                region: region.clone(),
            });
        }
        for api in Api::ALL {
            retries.get_or_create_owned(&ApiLabels { api: api.as_str() });
            throttled.get_or_create_owned(&ApiLabels { api: api.as_str() });
        }
        Metrics {
            registry,
            region,
            manifest: manifest.to_string(),
            images,
            submitted,
            retries,
            throttled,
            jobs_in_flight,
            job_duration,
            registered_bytes,
            run_start,
            last_progress,
            last_success,
            live: Mutex::new(Live::default()),
        }
    }

    /// The run started at `at` (also its first progress).
    pub fn run_started(&self, at: DateTime<Utc>) {
        self.run_start.set(unix_seconds(at));
        self.last_progress.set(unix_seconds(at));
    }

    /// A last success known from before this run (the previous metrics file), kept unless this
    /// run succeeds.
    pub fn remember_last_success(&self, manifest: &str, at: f64) {
        self.last_success
            .get_or_create_owned(&ManifestLabels {
                manifest: manifest.to_string(),
            })
            .set(at);
    }

    /// What is known of the manifest's entries: `in_progress` still to be run, and the
    /// statuses of the others (settled from the journal or by the preflight, invalid).
    pub fn images_known(
        &self,
        in_progress: usize,
        settled: impl IntoIterator<Item = ImageOutcome>,
    ) {
        self.images_known_in(None, in_progress, settled);
    }

    /// [`Metrics::images_known`] of the images of `region` (`None`: the run's default region).
    pub fn images_known_in(
        &self,
        region: Option<&str>,
        in_progress: usize,
        settled: impl IntoIterator<Item = ImageOutcome>,
    ) {
        let region = region.unwrap_or(&self.region);
        let mut counts: HashMap<&'static str, i64> = HashMap::new();
        for status in settled {
            *counts.entry(status.as_str()).or_default() += 1;
        }
        for status in STATUSES.map(ImageOutcome::as_str) {
            self.image_gauge_in(region, status)
                .set(counts.get(status).copied().unwrap_or(0));
        }
        self.image_gauge_in(region, IN_PROGRESS)
            .set(in_progress as i64);
    }

    /// The images of a region other than the run's default one: their `region` label.
    pub fn place(&self, region: &str, images: impl IntoIterator<Item = ImageId>) {
        if region == self.region {
            return;
        }
        let mut live = self.lock();
        for image in images {
            live.regions.insert(image, region.to_string());
        }
    }

    /// The engine is about to run `images`; `settled` are the statuses of the other entries.
    pub fn engine_starting(
        &self,
        images: &[PlannedImage],
        settled: impl IntoIterator<Item = ImageOutcome>,
    ) {
        self.images_known(images.len(), settled);
        let mut live = self.lock();
        live.sizes = images
            .iter()
            .filter_map(|image| Some((image.entry.image_id, image.size_bytes?)))
            .collect();
    }

    /// The run has ended with `report` (written or not); `succeeded` when its verdict is a
    /// success. The images by status are then the report's counts.
    pub fn finished(&self, report: &Report, succeeded: bool) {
        // Each record counts in its own region (the default one when it names none).
        let mut by_region: HashMap<&str, Vec<ImageOutcome>> = HashMap::new();
        by_region.insert(&self.region, Vec::new());
        for record in &report.images {
            let region = record.region.as_deref().unwrap_or(&self.region);
            by_region.entry(region).or_default().push(record.status);
        }
        for (region, statuses) in by_region {
            self.images_known_in(Some(region), 0, statuses);
        }
        self.lock().in_flight.clear();
        self.jobs_in_flight.set(0);
        if succeeded {
            self.remember_last_success(&self.manifest, unix_seconds(report.finished_at));
        }
    }

    /// The metrics in the Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; an encoder error would leave a partial text,
        // which is still better than none for a scrape.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }

    fn image_gauge_in(&self, region: &str, status: &'static str) -> Gauge {
        self.images.get_or_create_owned(&ImagesLabels {
            status,
            region: region.to_string(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        // The state stays consistent even if a holder panicked (each update is one step).
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn progressed(&self) {
        self.last_progress.set(unix_seconds(Utc::now()));
    }

    fn follows(&self, image_id: ImageId) {
        let mut live = self.lock();
        live.in_flight.insert(image_id);
        self.jobs_in_flight.set(live.in_flight.len() as i64);
    }
}

impl EventSink for Metrics {
    fn event(&self, event: &RunEvent) {
        match event {
            RunEvent::StatusKnown { image_id, status } => {
                if matches!(status, CloudStatus::Found(ImageStatus::Saving)) {
                    self.follows(*image_id);
                }
                self.progressed();
            }
            RunEvent::Submitted { image_id, .. } => {
                self.submitted.inc();
                self.follows(*image_id);
                self.progressed();
            }
            RunEvent::Retrying { api, .. } => {
                self.retries
                    .get_or_create(&ApiLabels { api: api.as_str() })
                    .inc();
            }
            RunEvent::Throttled { api, .. } => {
                self.throttled
                    .get_or_create(&ApiLabels { api: api.as_str() })
                    .inc();
            }
            RunEvent::Progress { .. } => self.progressed(),
            RunEvent::Finished { result, .. } => {
                let (size, region) = {
                    let mut live = self.lock();
                    live.in_flight.remove(&result.image_id);
                    self.jobs_in_flight.set(live.in_flight.len() as i64);
                    let region = live.regions.get(&result.image_id).cloned();
                    (live.sizes.get(&result.image_id).copied(), region)
                };
                let region = region.as_deref().unwrap_or(&self.region);
                self.image_gauge_in(region, IN_PROGRESS).dec();
                self.image_gauge_in(region, result.outcome.as_str()).inc();
                if let Some(seconds) = result.duration_s {
                    self.job_duration.observe(seconds);
                }
                if result.outcome == ImageOutcome::Registered
                    && let Some(size) = size
                {
                    self.registered_bytes.inc_by(size);
                }
                self.progressed();
            }
            RunEvent::CheckingStatus { .. }
            | RunEvent::Submitting { .. }
            | RunEvent::AuthFailed { .. }
            | RunEvent::Unreachable { .. } => {}
        }
    }
}

fn unix_seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_micros() as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::ids::JobId;
    use crate::manifest::{ImageEntry, ImageFormat, ImageUrl};
    use crate::report::{ImageRecord, ReportSettings, Summary};
    use crate::run::ImageResult;

    fn id(n: u32) -> ImageId {
        ImageId::parse(&format!("0f3c1a2e-2222-4a2b-9c3d-{n:012}")).unwrap()
    }

    fn planned(n: u32, size_bytes: Option<u64>) -> PlannedImage {
        PlannedImage {
            entry: ImageEntry {
                image_id: id(n),
                image_url: ImageUrl {
                    bucket: "bucket".into(),
                    object: format!("disk-{n}.qcow2"),
                },
                name: None,
                format: ImageFormat::Qcow2,
                line: n as usize,
            },
            known_job_id: None,
            size_bytes,
        }
    }

    /// Every sample of the text, by its series (`name{labels}` as written).
    fn samples(text: &str) -> BTreeMap<String, f64> {
        text.lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').unwrap();
                (series.to_string(), value.parse().unwrap())
            })
            .collect()
    }

    fn value(metrics: &Metrics, series: &str) -> f64 {
        *samples(&metrics.render())
            .get(series)
            .unwrap_or_else(|| panic!("{series} missing from\n{}", metrics.render()))
    }

    fn images(metrics: &Metrics, status: &str) -> f64 {
        value(
            metrics,
            &format!("imsreg_images{{status=\"{status}\",region=\"eu-west-101\"}}"),
        )
    }

    fn finished(n: u32, outcome: ImageOutcome, duration_s: Option<f64>) -> RunEvent {
        let mut result = ImageResult::new(id(n), outcome);
        result.duration_s = duration_s;
        RunEvent::Finished {
            result,
            image_url: format!("bucket:disk-{n}.qcow2"),
        }
    }

    #[test]
    fn every_series_is_exported_from_the_start_at_zero() {
        let metrics = Metrics::new(Some("eu-west-101"), "wave.yaml");
        let all = samples(&metrics.render());
        for status in STATUSES
            .map(ImageOutcome::as_str)
            .iter()
            .chain(&[IN_PROGRESS])
        {
            assert_eq!(images(&metrics, status), 0.0, "{status}");
        }
        for api in Api::ALL {
            let api = api.as_str();
            assert_eq!(all[&format!("imsreg_retries_total{{api=\"{api}\"}}")], 0.0);
            assert_eq!(
                all[&format!("imsreg_throttled_total{{api=\"{api}\"}}")],
                0.0
            );
        }
        for series in [
            "imsreg_registrations_submitted_total",
            "imsreg_jobs_in_flight",
            "imsreg_registered_bytes_total",
            "imsreg_job_duration_seconds_count",
            "imsreg_job_duration_seconds_sum",
            "imsreg_job_duration_seconds_bucket{le=\"+Inf\"}",
            "imsreg_job_duration_seconds_bucket{le=\"43200\"}",
            "imsreg_job_duration_seconds_bucket{le=\"1\"}",
            "imsreg_run_start_timestamp_seconds",
            "imsreg_last_progress_timestamp_seconds",
        ] {
            assert_eq!(all[series], 0.0, "{series}");
        }
        let build = format!("imsreg_build_info{{version=\"{}\"}}", crate::VERSION);
        assert_eq!(all[&build], 1.0);
        // No success known yet: no last-success series (a 0 would read as "in 1970").
        assert!(
            !metrics
                .render()
                .contains("imsreg_last_success_timestamp_seconds{")
        );
        // Counters are typed as such, with the `_total` suffix once.
        let text = metrics.render();
        assert!(text.contains("# TYPE imsreg_retries_total counter"));
        assert!(text.contains("# TYPE imsreg_job_duration_seconds histogram"));
        assert!(!text.contains("_total_total"));
    }

    #[test]
    fn events_move_the_counts() {
        let metrics = Metrics::new(Some("eu-west-101"), "wave.yaml");
        let started = DateTime::parse_from_rfc3339("2026-12-04T10:00:00.5Z")
            .unwrap()
            .with_timezone(&Utc);
        metrics.run_started(started);
        assert_eq!(
            value(&metrics, "imsreg_run_start_timestamp_seconds"),
            1796378400.5
        );
        metrics.engine_starting(
            &[
                planned(1, Some(1000)),
                planned(2, Some(20)),
                planned(3, None),
            ],
            [ImageOutcome::AlreadyRegistered, ImageOutcome::Invalid],
        );
        assert_eq!(images(&metrics, IN_PROGRESS), 3.0);
        assert_eq!(images(&metrics, "already_registered"), 1.0);
        assert_eq!(images(&metrics, "invalid"), 1.0);

        let events = [
            RunEvent::StatusKnown {
                image_id: id(1),
                status: CloudStatus::Found(ImageStatus::Saving),
            },
            RunEvent::StatusKnown {
                image_id: id(2),
                status: CloudStatus::Found(ImageStatus::Queued),
            },
            RunEvent::Submitting {
                image_id: id(2),
                attempt: 1,
            },
            RunEvent::Throttled {
                api: Api::Register,
                delay: Duration::from_secs(2),
            },
            RunEvent::Retrying {
                api: Api::Register,
                image_id: Some(id(2)),
                reason: "429".into(),
                delay: Duration::from_secs(2),
            },
            RunEvent::Retrying {
                api: Api::ListImages,
                image_id: None,
                reason: "500".into(),
                delay: Duration::from_secs(1),
            },
            RunEvent::Throttled {
                api: Api::ShowJobProgress,
                delay: Duration::ZERO,
            },
            RunEvent::Submitted {
                image_id: id(2),
                image_url: "bucket:disk-2.qcow2".into(),
                job_id: JobId::parse("ff8080814dbd65d7014dc1f1b9cd0ab2").unwrap(),
            },
        ];
        for event in &events {
            metrics.event(event);
        }
        assert_eq!(value(&metrics, "imsreg_registrations_submitted_total"), 1.0);
        assert_eq!(value(&metrics, "imsreg_jobs_in_flight"), 2.0);
        assert_eq!(
            value(&metrics, "imsreg_retries_total{api=\"register\"}"),
            1.0
        );
        assert_eq!(
            value(&metrics, "imsreg_retries_total{api=\"list_images\"}"),
            1.0
        );
        assert_eq!(
            value(&metrics, "imsreg_retries_total{api=\"show_job\"}"),
            0.0
        );
        assert_eq!(
            value(&metrics, "imsreg_throttled_total{api=\"register\"}"),
            1.0
        );
        assert_eq!(
            value(
                &metrics,
                "imsreg_throttled_total{api=\"show_job_progress\"}"
            ),
            1.0
        );
        let progress = value(&metrics, "imsreg_last_progress_timestamp_seconds");
        assert!(progress > 1796378400.5, "{progress}");

        metrics.event(&finished(1, ImageOutcome::Registered, None));
        metrics.event(&finished(2, ImageOutcome::Registered, Some(3.5)));
        metrics.event(&finished(3, ImageOutcome::Cancelled, None));
        assert_eq!(images(&metrics, IN_PROGRESS), 0.0);
        assert_eq!(images(&metrics, "registered"), 2.0);
        assert_eq!(images(&metrics, "cancelled"), 1.0);
        assert_eq!(value(&metrics, "imsreg_jobs_in_flight"), 0.0);
        assert_eq!(value(&metrics, "imsreg_registered_bytes_total"), 1020.0);
        assert_eq!(value(&metrics, "imsreg_job_duration_seconds_count"), 1.0);
        assert_eq!(value(&metrics, "imsreg_job_duration_seconds_sum"), 3.5);
        assert_eq!(
            value(&metrics, "imsreg_job_duration_seconds_bucket{le=\"1\"}"),
            0.0
        );
        assert_eq!(
            value(&metrics, "imsreg_job_duration_seconds_bucket{le=\"5\"}"),
            1.0
        );
    }

    fn report(statuses: &[ImageOutcome]) -> Report {
        let images: Vec<ImageRecord> = statuses
            .iter()
            .enumerate()
            .map(|(n, status)| ImageRecord::for_entry(&planned(n as u32, None).entry, *status))
            .collect();
        Report {
            imsreg_version: crate::VERSION.into(),
            manifest: "waves/wave.yaml".into(),
            started_at: Utc::now(),
            finished_at: DateTime::parse_from_rfc3339("2026-12-04T11:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            settings: ReportSettings {
                endpoint: "https://ims.eu-west-101.myhuaweicloud.eu".into(),
                region: Some("eu-west-101".into()),
                project_id: None,
                concurrency: 8,
                max_active_jobs: 20,
                submit_rate: 2.0,
                query_rate: 10.0,
                poll_interval_s: 10.0,
                job_timeout_s: 7200.0,
                dry_run: false,
                regions: Vec::new(),
            },
            summary: Summary::from_records(&images),
            images,
            manifest_sha256: None,
            shard: None,
        }
    }

    #[test]
    fn the_end_shows_the_reports_counts_and_a_success_only_when_the_run_succeeded() {
        let metrics = Metrics::new(Some("eu-west-101"), "wave.yaml");
        metrics.remember_last_success("wave.yaml", 17.0);
        metrics.remember_last_success("other.yaml", 5.0);
        metrics.engine_starting(&[planned(1, None), planned(2, None)], []);
        // The engine told only one end before the run stopped; the report has both.
        metrics.event(&finished(1, ImageOutcome::Failed, None));
        metrics.finished(
            &report(&[ImageOutcome::Failed, ImageOutcome::Pending]),
            false,
        );
        assert_eq!(images(&metrics, "failed"), 1.0);
        assert_eq!(images(&metrics, "pending"), 1.0);
        assert_eq!(images(&metrics, IN_PROGRESS), 0.0);
        let wave = "imsreg_last_success_timestamp_seconds{manifest=\"wave.yaml\"}";
        let other = "imsreg_last_success_timestamp_seconds{manifest=\"other.yaml\"}";
        assert_eq!(
            value(&metrics, wave),
            17.0,
            "a failed run keeps the last success"
        );

        metrics.finished(
            &report(&[ImageOutcome::Registered, ImageOutcome::AlreadyRegistered]),
            true,
        );
        assert_eq!(images(&metrics, "registered"), 1.0);
        assert_eq!(images(&metrics, "already_registered"), 1.0);
        assert_eq!(images(&metrics, "failed"), 0.0);
        assert_eq!(images(&metrics, "pending"), 0.0);
        assert_eq!(value(&metrics, wave), 1796382000.0, "the report's end");
        assert_eq!(value(&metrics, other), 5.0, "other manifests' are kept");
    }

    #[test]
    fn across_regions_each_image_counts_in_its_own_region() {
        let metrics = Metrics::new(None, "wave.yaml");
        let series = |status: &str, region: &str| {
            format!("imsreg_images{{status=\"{status}\",region=\"{region}\"}}")
        };
        metrics.images_known_in(Some("eu-west-101"), 1, [ImageOutcome::Invalid]);
        metrics.images_known_in(Some("ap-southeast-1"), 1, []);
        metrics.place("eu-west-101", [id(1)]);
        metrics.place("ap-southeast-1", [id(2)]);
        assert_eq!(value(&metrics, &series(IN_PROGRESS, "eu-west-101")), 1.0);
        assert_eq!(value(&metrics, &series("invalid", "eu-west-101")), 1.0);
        metrics.event(&finished(2, ImageOutcome::Registered, Some(3.0)));
        assert_eq!(value(&metrics, &series(IN_PROGRESS, "ap-southeast-1")), 0.0);
        assert_eq!(
            value(&metrics, &series("registered", "ap-southeast-1")),
            1.0
        );
        assert_eq!(value(&metrics, &series("registered", "eu-west-101")), 0.0);

        let mut report = report(&[ImageOutcome::Failed, ImageOutcome::Registered]);
        report.images[0].region = Some("eu-west-101".into());
        report.images[1].region = Some("ap-southeast-1".into());
        metrics.finished(&report, false);
        assert_eq!(value(&metrics, &series("failed", "eu-west-101")), 1.0);
        assert_eq!(value(&metrics, &series("invalid", "eu-west-101")), 0.0);
        assert_eq!(value(&metrics, &series(IN_PROGRESS, "eu-west-101")), 0.0);
        assert_eq!(
            value(&metrics, &series("registered", "ap-southeast-1")),
            1.0
        );
        assert_eq!(value(&metrics, &series("registered", "")), 0.0);
    }

    #[test]
    fn without_a_region_the_label_is_empty() {
        let metrics = Metrics::new(None, "wave.yaml");
        assert!(
            metrics
                .render()
                .contains("imsreg_images{status=\"registered\",region=\"\"} 0")
        );
    }
}
