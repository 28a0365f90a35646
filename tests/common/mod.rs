//! Helpers shared by the integration tests: the report schema check.
#![allow(dead_code)]

pub mod e2e;
pub mod job;

use std::path::Path;

use serde_json::Value;

/// A validator for the shipped `report.schema.json`.
pub fn schema_validator() -> jsonschema::Validator {
    let schema_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("report.schema.json");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

/// Panics with every schema violation of `report`.
pub fn assert_matches_schema(report: &Value) {
    let problems: Vec<String> = schema_validator()
        .iter_errors(report)
        .map(|e| e.to_string())
        .collect();
    assert!(
        problems.is_empty(),
        "report breaks the schema: {problems:?}"
    );
}

/// Reads a JSON report and checks it against the shipped schema.
pub fn read_report(path: &Path) -> Value {
    let report: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_matches_schema(&report);
    report
}
