//! JUnit XML report: one testsuite, one testcase per image, so GitLab, Jenkins and GitHub test
//! reporters show a migration like a test run. Failed, pending and invalid images carry a
//! `<failure>` with the IMS code and reason; cancelled images are `<skipped>`.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};

use super::model::{ImageOutcome, ImageRecord, Report};

fn status_of(record: &ImageRecord) -> TestCaseStatus {
    let reason = || {
        let code = record.error_code.as_deref().unwrap_or("");
        let message = record.error_message.as_deref().unwrap_or("");
        match (code.is_empty(), message.is_empty()) {
            (true, true) => record.status.as_str().to_string(),
            (true, false) => message.to_string(),
            (false, true) => code.to_string(),
            (false, false) => format!("{code}: {message}"),
        }
    };
    match record.status {
        ImageOutcome::Registered | ImageOutcome::AlreadyRegistered => TestCaseStatus::success(),
        ImageOutcome::Cancelled => {
            let mut status = TestCaseStatus::skipped();
            status.set_message(reason());
            status
        }
        ImageOutcome::Failed
        | ImageOutcome::Invalid
        | ImageOutcome::Pending
        | ImageOutcome::Unreachable
        | ImageOutcome::PreflightFailed => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_type(record.status.as_str());
            status.set_message(reason());
            let mut description = format!("status: {}", record.status);
            if let Some(job) = &record.job_id {
                description.push_str(&format!("\njob_id: {job}"));
            }
            if let Some(url) = &record.image_url {
                description.push_str(&format!("\nimage_url: {url}"));
            }
            if let Some(region) = &record.region {
                description.push_str(&format!("\nregion: {region}"));
            }
            if record.created {
                description.push_str("\ncreated: true (imsreg created this image)");
            }
            status.set_description(description);
            status
        }
    }
}

pub fn render(report: &Report) -> Result<Vec<u8>, quick_junit::SerializeError> {
    let mut suite = TestSuite::new("imsreg");
    suite.set_timestamp(report.started_at);
    suite.set_time(
        (report.finished_at - report.started_at)
            .to_std()
            .unwrap_or_default(),
    );
    suite.add_property(Property::new("manifest", report.manifest.as_str()));
    suite.add_property(Property::new("endpoint", report.settings.endpoint.as_str()));
    if let Some(digest) = &report.manifest_sha256 {
        suite.add_property(Property::new("manifest_sha256", digest.as_str()));
    }
    if let Some(shard) = &report.shard {
        let shard = format!("{}/{} ({})", shard.index, shard.total, shard.scheme);
        suite.add_property(Property::new("shard", shard.as_str()));
    }
    for record in &report.images {
        let name = match (&record.name, &record.image_id) {
            (Some(name), Some(id)) => format!("{name} ({id})"),
            (None, Some(id)) => id.clone(),
            (Some(name), None) => name.clone(),
            (None, None) => record
                .image_url
                .clone()
                .unwrap_or_else(|| "(unnamed)".into()),
        };
        let mut case = TestCase::new(name, status_of(record));
        // Test reporters group cases by class: by region, when the records name one.
        let format = record.format.as_deref().unwrap_or("image");
        case.set_classname(match &record.region {
            Some(region) => format!("imsreg.{region}.{format}"),
            None => format!("imsreg.{format}"),
        });
        if let Some(d) = record.duration_s.filter(|d| d.is_finite() && *d >= 0.0) {
            case.set_time(Duration::from_secs_f64(d));
        }
        if record.created {
            // The manifest had no image_id: the ID in the name is the image imsreg created.
            case.add_property(Property::new("created", "true"));
        }
        suite.add_test_case(case);
    }
    let mut junit = quick_junit::Report::new("imsreg");
    junit.set_timestamp(report.started_at);
    junit.add_test_suite(suite);
    let mut out = Vec::new();
    junit.serialize(&mut out)?;
    Ok(out)
}
