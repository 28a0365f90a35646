//! Every report format, rendered from one report that holds every outcome, parsed back and
//! checked; the JSON report validated against `report.schema.json`.

mod common;

use common::schema_validator;

use std::path::PathBuf;

use chrono::{Duration, TimeZone, Utc};
use imsreg::report::{
    self, ImageOutcome, ImageRecord, Report, ReportFormat, ReportSettings, Summary,
};

fn record(status: ImageOutcome, n: u32) -> ImageRecord {
    let start = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap();
    let submitted = !matches!(status, ImageOutcome::Invalid | ImageOutcome::Cancelled);
    ImageRecord {
        image_id: Some(format!("4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba{n:02}")),
        image_url: Some(format!("bucket-a:folder/img-{n}, \"quoted\" | piped.qcow2")),
        name: n.is_multiple_of(2).then(|| format!("web-{n}")),
        format: Some("qcow2".into()),
        status,
        job_id: submitted.then(|| format!("ff8080814dbd65d7014dbe0d84db00{n:02}")),
        error_code: matches!(status, ImageOutcome::Failed).then(|| "IMG.0057".into()),
        error_message: match status {
            ImageOutcome::Failed => {
                Some("The image file is empty, not found\nor in the wrong format <&>".into())
            }
            ImageOutcome::Invalid => Some("image_url: bucket name too short".into()),
            ImageOutcome::Pending => Some("still running after job_timeout 2h".into()),
            ImageOutcome::Cancelled => Some("run interrupted before submission".into()),
            _ => None,
        },
        attempts: u32::from(submitted),
        submitted_at: submitted.then_some(start),
        finished_at: submitted.then_some(start + Duration::milliseconds(90_500)),
        duration_s: submitted.then_some(90.5),
        size_bytes: None,
        created: false,
        line: Some(3 + 2 * n as usize),
        region: None,
        project_id: None,
    }
}

fn sample() -> Report {
    let outcomes = [
        ImageOutcome::Registered,
        ImageOutcome::AlreadyRegistered,
        ImageOutcome::Failed,
        ImageOutcome::Invalid,
        ImageOutcome::Pending,
        ImageOutcome::Cancelled,
        ImageOutcome::Registered,
    ];
    let images: Vec<_> = outcomes
        .iter()
        .enumerate()
        .map(|(i, s)| record(*s, i as u32))
        .collect();
    let started_at = Utc.with_ymd_and_hms(2026, 11, 28, 9, 59, 0).unwrap();
    Report {
        imsreg_version: imsreg::VERSION.into(),
        manifest: "migrations/wave-1.yaml".into(),
        manifest_sha256: Some(
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        ),
        shard: Some(report::ReportShard {
            index: 2,
            total: 3,
            scheme: "hash-v1".into(),
        }),
        started_at,
        finished_at: started_at + Duration::seconds(200),
        settings: ReportSettings {
            endpoint: "https://ims.ap-southeast-1.myhuaweicloud.com".into(),
            region: Some("ap-southeast-1".into()),
            project_id: Some("0123456789abcdef0123456789abcdef".into()),
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
    }
}

#[test]
fn summary_counts_every_outcome() {
    let s = sample().summary;
    assert_eq!(
        (
            s.total,
            s.registered,
            s.already_registered,
            s.failed,
            s.invalid,
            s.pending,
            s.cancelled
        ),
        (7, 2, 1, 1, 1, 1, 1)
    );
    assert!(!s.all_succeeded());
}

#[test]
fn json_report_matches_schema_and_round_trips() {
    let report = sample();
    let bytes = report::render(&report, ReportFormat::Json).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let validator = schema_validator();
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "schema errors: {errors:?}");
    assert_eq!(value["summary"]["failed"], 1);
    assert_eq!(value["images"][3]["status"], "invalid");
    assert!(value["images"][3]["job_id"].is_null());
    assert_eq!(value["images"][0]["submitted_at"], "2026-11-28T10:00:00Z");
    let back: Report = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back, report);

    // The schema is not a rubber stamp: a wrong status or a missing field is refused.
    let mut broken = value.clone();
    broken["images"][0]["status"] = "done".into();
    assert!(!validator.is_valid(&broken));
    let mut broken = value;
    broken["summary"].as_object_mut().unwrap().remove("pending");
    assert!(!validator.is_valid(&broken));
}

#[test]
fn yaml_report_round_trips() {
    let report = sample();
    let bytes = report::render(&report, ReportFormat::Yaml).unwrap();
    let back: Report = serde_yaml::from_slice(&bytes).unwrap();
    assert_eq!(back, report);
}

#[test]
fn csv_report_has_one_row_per_image() {
    let report = sample();
    let bytes = report::render(&report, ReportFormat::Csv).unwrap();
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let headers: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(headers, report::csv::COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), report.images.len());
    for (row, image) in rows.iter().zip(&report.images) {
        assert_eq!(&row[0], image.image_id.as_deref().unwrap());
        assert_eq!(
            &row[1],
            image.image_url.as_deref().unwrap(),
            "quotes and commas survive"
        );
        assert_eq!(&row[4], image.status.as_str());
        assert_eq!(&row[7], image.error_message.as_deref().unwrap_or(""));
    }
    assert_eq!(&rows[0][9], "2026-11-28T10:00:00.000Z");
    assert_eq!(&rows[0][11], "90.500");
    assert_eq!(&rows[3][9], "", "unknown times are empty cells");
}

#[test]
fn junit_report_has_a_testcase_per_image() {
    let report = sample();
    let bytes = report::render(&report, ReportFormat::Junit).unwrap();
    let xml = String::from_utf8(bytes).unwrap();
    let parsed = quick_junit::Report::deserialize_from_str(&xml).unwrap();
    let suite = &parsed.test_suites[0];
    assert_eq!(suite.test_cases.len(), 7);
    assert_eq!(
        suite.failures, 3,
        "failed, invalid and pending are failures"
    );
    let skipped = suite
        .test_cases
        .iter()
        .filter(|c| matches!(c.status, quick_junit::TestCaseStatus::Skipped { .. }))
        .count();
    assert_eq!(skipped, 1, "cancelled is skipped");
    let failed = &suite.test_cases[2];
    match &failed.status {
        quick_junit::TestCaseStatus::NonSuccess { message, ty, .. } => {
            let message = message.as_ref().unwrap().as_str();
            assert!(
                message.starts_with("IMG.0057: The image file is empty"),
                "{message}"
            );
            assert_eq!(ty.as_ref().unwrap().as_str(), "failed");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(matches!(
        suite.test_cases[0].status,
        quick_junit::TestCaseStatus::Success { .. }
    ));
    assert!(suite.test_cases[0].name.as_str().contains("4ca46bf1"));
}

#[test]
fn markdown_report_lists_summary_and_failures() {
    let report = sample();
    let md = String::from_utf8(report::render(&report, ReportFormat::Markdown).unwrap()).unwrap();
    assert!(md.contains("| failed | 1 |"), "{md}");
    assert!(md.contains("| **total** | **7** |"));
    assert!(md.contains("## Needs attention (4)"));
    assert!(md.contains("IMG.0057: The image file is empty, not found or in the wrong format"));
    assert!(md.contains("\\|"), "pipes in cells are escaped");
    assert!(
        !md.contains("| registered | web-0"),
        "successes are not listed"
    );
    assert!(
        md.contains("Shard 2/3 (`hash-v1`) of the manifest."),
        "{md}"
    );
    assert!(md.contains("Manifest SHA-256 `9f86d081"), "{md}");
}

#[test]
fn junit_and_csv_reports_carry_the_shard_and_the_manifest_line() {
    let report = sample();
    let xml = String::from_utf8(report::render(&report, ReportFormat::Junit).unwrap()).unwrap();
    assert!(
        xml.contains(r#"<property name="manifest_sha256" value="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"/>"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<property name="shard" value="2/3 (hash-v1)"/>"#),
        "{xml}"
    );
    let csv_bytes = report::render(&report, ReportFormat::Csv).unwrap();
    let mut reader = csv::Reader::from_reader(csv_bytes.as_slice());
    let lines: Vec<String> = reader
        .records()
        .map(|row| row.unwrap()[13].to_string())
        .collect();
    assert_eq!(lines, ["3", "5", "7", "9", "11", "13", "15"]);
}

#[test]
fn every_format_says_which_images_imsreg_created() {
    let mut report = sample();
    for record in report.images.iter_mut().take(2) {
        record.created = true;
    }
    report.summary = imsreg::report::Summary::from_records(&report.images);
    assert_eq!(report.summary.created, 2);
    let json: serde_json::Value =
        serde_json::from_slice(&report::render(&report, ReportFormat::Json).unwrap()).unwrap();
    assert!(schema_validator().is_valid(&json));
    assert_eq!(json["images"][0]["created"], true);
    assert_eq!(json["images"][2]["created"], false);
    assert_eq!(json["summary"]["created"], 2);
    let yaml = String::from_utf8(report::render(&report, ReportFormat::Yaml).unwrap()).unwrap();
    assert!(yaml.contains("created: true"), "{yaml}");
    let csv_bytes = report::render(&report, ReportFormat::Csv).unwrap();
    let mut reader = csv::Reader::from_reader(csv_bytes.as_slice());
    assert_eq!(&reader.headers().unwrap()[14], "created");
    let created: Vec<String> = reader
        .records()
        .map(|row| row.unwrap()[14].to_string())
        .collect();
    assert_eq!(created[..3], ["true", "true", "false"]);
    let xml = String::from_utf8(report::render(&report, ReportFormat::Junit).unwrap()).unwrap();
    assert_eq!(
        xml.matches(r#"<property name="created" value="true"/>"#)
            .count(),
        2,
        "{xml}"
    );
    let md = String::from_utf8(report::render(&report, ReportFormat::Markdown).unwrap()).unwrap();
    assert!(
        md.contains("2 of these images were created by imsreg."),
        "{md}"
    );
}

#[test]
fn writes_every_path_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = ["r.json", "r.yml", "r.csv", "r.xml", "r.md"]
        .iter()
        .map(|n| dir.path().join(n))
        .collect();
    std::fs::write(&paths[0], "old content").unwrap();
    report::write_reports(&sample(), &paths).unwrap();
    for path in &paths {
        assert!(
            std::fs::metadata(path).unwrap().len() > 100,
            "{}",
            path.display()
        );
    }
    let json: Report = serde_json::from_slice(&std::fs::read(&paths[0]).unwrap()).unwrap();
    assert_eq!(json.summary.total, 7);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".imsreg-tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "no temp files left behind");
}

#[test]
fn bad_paths_are_reported_but_do_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("ok.json");
    // A folder that cannot exist: its parent is a regular file.
    std::fs::write(dir.path().join("plain-file"), "x").unwrap();
    let missing_dir = dir.path().join("plain-file/sub/r.json");
    let created = dir.path().join("new/folder/r.md");
    let unknown = dir.path().join("r.txt");
    assert!(report::check_paths(std::slice::from_ref(&unknown)).is_err());
    let err = report::write_reports(
        &sample(),
        &[missing_dir.clone(), good.clone(), unknown, created.clone()],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("plain-file/sub"), "{err}");
    assert!(created.exists(), "missing report folders are created");
    assert!(good.exists(), "the writable report is still written");
}

#[test]
fn hostile_text_cannot_forge_lines_run_formulas_or_break_xml() {
    let mut report = sample();
    let image = &mut report.images[2];
    image.name = Some("=HYPERLINK(\"http://evil\",\"x\")\u{1}".into());
    image.image_url = Some("+bucket:a.qcow2".into());
    image.error_message = Some("-2+3\n| forged | row |\u{1b}[2J\u{0}".into());
    image.error_code = Some("@SUM(A1)".into());

    let csv_bytes = report::render(&report, ReportFormat::Csv).unwrap();
    let mut reader = csv::Reader::from_reader(csv_bytes.as_slice());
    let row = reader.records().nth(2).unwrap().unwrap();
    assert!(row[2].starts_with("'=HYPERLINK"), "{:?}", &row[2]);
    assert!(row[1].starts_with("'+bucket"), "{:?}", &row[1]);
    assert!(row[6].starts_with("'@SUM"), "{:?}", &row[6]);
    assert!(row[7].starts_with("'-2+3"), "{:?}", &row[7]);
    assert_eq!(&row[0], report.images[2].image_id.as_deref().unwrap());

    let md = String::from_utf8(report::render(&report, ReportFormat::Markdown).unwrap()).unwrap();
    assert!(!md.contains("\n| forged"), "{md}");
    assert!(!md.contains('\u{1b}') && !md.contains('\u{0}'), "{md}");

    let xml = String::from_utf8(report::render(&report, ReportFormat::Junit).unwrap()).unwrap();
    let parsed = quick_junit::Report::deserialize_from_str(&xml);
    assert!(parsed.is_ok(), "{parsed:?}\n{xml}");
    assert!(!xml.contains('\u{1b}') && !xml.contains('\u{1}'), "{xml}");
}

/// The sample with its images in two regions (odd ones in eu-west-101) and the settings each
/// region used.
fn sample_in_two_regions() -> Report {
    let mut report = sample();
    for (n, record) in report.images.iter_mut().enumerate() {
        let (region, project) = if n % 2 == 0 {
            ("ap-southeast-1", "0123456789abcdef0123456789abcdef")
        } else {
            ("eu-west-101", "fedcba9876543210fedcba9876543210")
        };
        record.region = Some(region.into());
        record.project_id = Some(project.into());
    }
    report.summary = Summary::from_records(&report.images);
    report.settings.regions = ["ap-southeast-1", "eu-west-101"]
        .into_iter()
        .map(|region| report::RegionReportSettings {
            region: Some(region.into()),
            project_id: None,
            endpoint: format!("https://ims.{region}.myhuaweicloud.com"),
            concurrency: 8,
            max_active_jobs: 20,
            submit_rate: 2.0,
            query_rate: 10.0,
        })
        .collect();
    report
}

#[test]
fn regions_are_in_the_summary_and_every_rendering() {
    let report = sample_in_two_regions();
    let regions = &report.summary.regions;
    assert_eq!(regions.len(), 2);
    assert_eq!(regions["ap-southeast-1"].total, 4);
    assert_eq!(regions["eu-west-101"].total, 3);
    assert_eq!(regions["ap-southeast-1"].registered, 2);
    assert_eq!(regions["eu-west-101"].already_registered, 1);
    let total: usize = regions.values().map(|counts| counts.total).sum();
    assert_eq!(total, report.summary.total);

    let json: serde_json::Value =
        serde_json::from_slice(&report::render(&report, ReportFormat::Json).unwrap()).unwrap();
    let errors: Vec<String> = schema_validator()
        .iter_errors(&json)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "schema errors: {errors:?}");
    assert_eq!(json["images"][1]["region"], "eu-west-101");
    assert_eq!(json["summary"]["regions"]["eu-west-101"]["total"], 3);
    assert_eq!(json["settings"]["regions"][1]["region"], "eu-west-101");
    let back: Report = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);

    let csv = report::render(&report, ReportFormat::Csv).unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_slice());
    let headers: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(headers.len(), report::csv::COLUMNS.len() + 2);
    assert_eq!(headers[headers.len() - 2..], report::csv::REGION_COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(&rows[1][headers.len() - 2], "eu-west-101");

    let markdown =
        String::from_utf8(report::render(&report, ReportFormat::Markdown).unwrap()).unwrap();
    assert!(markdown.contains("| region | total |"), "{markdown}");
    assert!(markdown.contains("| eu-west-101 | 3 |"), "{markdown}");

    let junit = String::from_utf8(report::render(&report, ReportFormat::Junit).unwrap()).unwrap();
    assert!(
        junit.contains("classname=\"imsreg.eu-west-101.qcow2\""),
        "{junit}"
    );
}
