//! Manifest parsing and validation: one fixture per rule (each naming the line it must report),
//! a valid manifest with every accepted form (and one with every form of entry imsreg creates,
//! `defaults:` included), the `imsreg validate` command, and the sliced two-thread reading of
//! big manifests against the whole-document reading.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use imsreg::manifest::{
    self, CreateEntry, Defaults, ImageFormat, ImageUrl, Manifest, Position, Severity,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/manifest")
}

/// `# expect: <severity> <line>:<col> <field>: <message part>` from a fixture's first line.
struct Expect {
    severity: Severity,
    line: usize,
    column: usize,
    field: String,
    message_part: String,
}

fn expectation(path: &Path) -> Expect {
    let bytes = fs::read(path).unwrap();
    let first = bytes.split(|b| *b == b'\n').next().unwrap();
    let first = String::from_utf8_lossy(first);
    let rest = first
        .strip_prefix("# expect: ")
        .unwrap_or_else(|| panic!("{} has no `# expect:` line", path.display()));
    let (severity, rest) = rest.split_once(' ').unwrap();
    let (position, rest) = rest.split_once(' ').unwrap();
    let (line, column) = position.split_once(':').unwrap();
    let (field, message_part) = rest.split_once(": ").unwrap();
    Expect {
        severity: if severity == "error" {
            Severity::Error
        } else {
            Severity::Warning
        },
        line: line.parse().unwrap(),
        column: column.parse().unwrap(),
        field: field.to_string(),
        message_part: message_part.to_string(),
    }
}

fn fixture_paths(prefix: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".yaml"))
        })
        .collect();
    paths.sort();
    paths
}

#[test]
fn every_bad_fixture_reports_its_line() {
    let paths = fixture_paths("bad-");
    assert!(paths.len() >= 40, "only {} bad fixtures", paths.len());
    for path in paths {
        let expect = expectation(&path);
        let manifest = manifest::load(&path).unwrap();
        let found = manifest.diagnostics.iter().any(|d| {
            d.severity == expect.severity
                && d.line == expect.line
                && d.column == expect.column
                && d.field == expect.field
                && d.message.contains(&expect.message_part)
        });
        assert!(
            found,
            "{}: expected {:?} {}:{} {}: ..{}.., got:\n{}",
            path.display(),
            expect.severity,
            expect.line,
            expect.column,
            expect.field,
            expect.message_part,
            render(&manifest)
        );
        assert!(manifest.error_count() > 0, "{}", path.display());
        assert_sorted(&manifest);
    }
}

#[test]
fn warning_fixtures_stay_valid() {
    for path in fixture_paths("warn-") {
        let expect = expectation(&path);
        let manifest = manifest::load(&path).unwrap();
        assert_eq!(manifest.error_count(), 0, "{}", render(&manifest));
        let d = &manifest.diagnostics[0];
        assert_eq!(
            (d.severity, d.line, d.column),
            (Severity::Warning, expect.line, expect.column)
        );
        assert!(d.message.contains(&expect.message_part), "{}", d.message);
    }
}

fn render(manifest: &Manifest) -> String {
    manifest
        .diagnostics
        .iter()
        .map(|d| format!("{d}\n"))
        .collect()
}

fn assert_sorted(manifest: &Manifest) {
    let lines: Vec<(usize, usize)> = manifest
        .diagnostics
        .iter()
        .map(|d| (d.line, d.column))
        .collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
}

#[test]
fn valid_manifest_with_every_accepted_form() {
    let manifest = manifest::load(&fixtures().join("good-all-forms.yaml")).unwrap();
    assert!(manifest.diagnostics.is_empty(), "{}", render(&manifest));
    assert!(!manifest.fatal);
    let got: Vec<(String, String, ImageFormat, Option<String>, usize)> = manifest
        .images
        .iter()
        .map(|i| {
            (
                i.image_id.to_string(),
                i.image_url.to_string(),
                i.format,
                i.name.clone(),
                i.line,
            )
        })
        .collect();
    let id = |n: u32| format!("0f3c1a2e-2222-4a2b-9c3d-00000000000{n}");
    assert_eq!(
        got,
        vec![
            (
                "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86".to_string(),
                "bucketname:Centos6.5-disk1.VMDK".to_string(),
                ImageFormat::Vmdk,
                None,
                15
            ),
            (
                id(1),
                "my-bucket:exports/web-01.qcow2".into(),
                ImageFormat::Qcow2,
                Some("web-01".into()),
                17
            ),
            (
                id(2),
                "my-bucket:raw/db-02.img".into(),
                ImageFormat::Raw,
                None,
                20
            ),
            (
                id(3),
                "my-bucket:образы/диск-03.qcow2".into(),
                ImageFormat::Qcow2,
                Some("диск 03".into()),
                23
            ),
            (
                id(4),
                "b.v2-x:镜像/盘.vhd".into(),
                ImageFormat::Vhd,
                None,
                26
            ),
            (
                id(5),
                "my-bucket:a:b/c.zvhd2".into(),
                ImageFormat::Zvhd2,
                Some("2024".into()),
                27
            ),
        ]
    );
    let s = &manifest.settings;
    assert_eq!(s.region.as_deref(), Some("ap-southeast-1"));
    assert_eq!(s.concurrency, Some(8));
    assert_eq!(s.max_active_jobs, Some(20));
    assert_eq!(s.submit_rate, Some(2.0));
    assert_eq!(s.query_rate, Some(0.5));
    assert_eq!(s.poll_interval, Some(std::time::Duration::from_secs(10)));
    assert_eq!(s.job_timeout, Some(std::time::Duration::from_secs(5400)));
    assert_eq!(
        s.endpoint.as_deref(),
        Some("https://ims.ap-southeast-1.myhuaweicloud.com")
    );
}

#[test]
fn entry_problems_make_invalid_entries_not_a_fatal_manifest() {
    let text = "images:\n  - image_id: 4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86\n    image_url: b01:a.qcow2\n  - image_id: nope\n    image_url: b01:b c.qcow2\n    name: broken\n";
    let manifest = manifest::parse_str(text, "m.yaml");
    assert!(!manifest.fatal);
    assert_eq!(manifest.images.len(), 1);
    assert_eq!(manifest.invalid.len(), 1);
    let invalid = &manifest.invalid[0];
    assert_eq!(invalid.line, 4);
    assert_eq!(invalid.image_id.as_deref(), Some("nope"));
    assert_eq!(invalid.image_url.as_deref(), Some("b01:b c.qcow2"));
    assert_eq!(invalid.name.as_deref(), Some("broken"));
    assert_eq!(invalid.problems.len(), 2, "{:?}", invalid.problems);
    assert!(invalid.problems[0].starts_with("images[1].image_id: "));
    assert!(invalid.problems[1].contains("IMG.0175"));
    assert_eq!(manifest.diagnostics[0].file, "m.yaml");

    let with_bad_settings = format!("settings:\n  concurrency: 0\n{text}");
    assert!(manifest::parse_str(&with_bad_settings, "m.yaml").fatal);
}

#[test]
fn diagnostics_render_in_the_documented_form() {
    let text =
        "images:\n  - image_id: 4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86\n    imge_url: b01:a.qcow2\n";
    let manifest = manifest::parse_str(text, "m.yaml");
    let lines: Vec<String> = manifest.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        lines,
        vec![
            "m.yaml:2:5: error: images[0].image_url: missing (add `image_url:` with the OBS location, bucket:object or obs://bucket/object)",
            "m.yaml:3:5: error: images[0].imge_url: unknown key `imge_url` (did you mean `image_url`?)",
        ]
    );
}

#[test]
fn alias_bomb_is_refused_without_expanding_it() {
    // 10^10 values if expanded: finishing at all shows it was refused without expanding.
    let path = fixtures().join("bad-alias-bomb.yaml");
    let manifest = manifest::load(&path).unwrap();
    assert!(manifest.fatal);
    assert_eq!(manifest.diagnostics.len(), 1, "{}", render(&manifest));
}

#[test]
fn small_alias_use_is_accepted() {
    let text = "version: 1\nimages:\n  - &web {image_id: 4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86, image_url: b01:a.qcow2}\n  - image_id: 0f3c1a2e-2222-4a2b-9c3d-000000000001\n    image_url: &url b01:b.qcow2\n  - image_id: 0f3c1a2e-2222-4a2b-9c3d-000000000002\n    image_url: *url\n";
    let manifest = manifest::parse_str(text, "m.yaml");
    assert_eq!(manifest.error_count(), 0, "{}", render(&manifest));
    assert_eq!(manifest.images.len(), 3);
    // The repeated URL is a warning at the alias.
    assert_eq!(manifest.warning_count(), 1);
    assert_eq!(
        (manifest.diagnostics[0].line, manifest.diagnostics[0].column),
        (7, 16)
    );
}

/// A manifest of `count` entries where every 97th entry has a bad URL and entry 1300 repeats
/// the ID of entry 3. With `plain: false` an anchor in the settings forces whole-document
/// reading.
fn big_manifest(count: usize, plain: bool) -> String {
    let region = if plain {
        "ap-southeast-1"
    } else {
        "&r ap-southeast-1"
    };
    let mut text = format!("# big\nversion: 1\nsettings:\n  region: {region}\nimages:\n");
    for i in 0..count {
        let id = if i == 1300 { 3 } else { i };
        text.push_str(&format!(
            "  - image_id: 0f3c1a2e-2222-4a2b-9c3d-{id:012x}\n"
        ));
        if i % 97 == 0 {
            text.push_str(&format!("    image_url: bad bucket:disk-{i}.qcow2\n"));
        } else if i % 2 == 0 {
            text.push_str(&format!(
                "    image_url: obs://bkt-{}/d/disk-{i}.qcow2\n",
                i % 5
            ));
        } else {
            text.push_str(&format!("    image_url: 'bkt-{}:d/disk-{i}.vhd'\n", i % 5));
        }
        if i % 10 == 0 {
            text.push_str("    # a comment between keys\n");
            text.push_str(&format!("    name: disk-{i}\n"));
        }
        if i % 500 == 7 {
            text.push_str("\n# a comment between entries\n");
        }
    }
    text.push_str("# trailing comment\n");
    text
}

#[test]
fn sliced_reading_matches_whole_document_reading() {
    let count = 1700; // four slices
    let sliced = manifest::parse_str(&big_manifest(count, true), "big.yaml");
    let whole = manifest::parse_str(&big_manifest(count, false), "big.yaml");
    assert_eq!(sliced.images, whole.images);
    assert_eq!(sliced.invalid, whole.invalid);
    assert_eq!(sliced.diagnostics, whole.diagnostics);
    assert_eq!(sliced.images.len() + sliced.invalid.len(), count);
    let bad_urls = (0..count).filter(|i| i % 97 == 0).count();
    assert_eq!(sliced.invalid.len(), bad_urls + 1);
    // Line numbers past the first slice are exact: find entry 1300's image_id line.
    let text = big_manifest(count, true);
    let line = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("image_id: 0f3c1a2e-2222-4a2b-9c3d-000000000003"))
        .nth(1)
        .map(|(n, _)| n + 1)
        .unwrap();
    let dup = sliced
        .diagnostics
        .iter()
        .find(|d| d.field == "images[1300].image_id")
        .unwrap();
    assert_eq!((dup.line, dup.column), (line, 15));
    assert!(dup.message.contains("entry on line"), "{}", dup.message);
}

#[test]
fn sliced_reading_reports_syntax_errors_at_their_line() {
    let mut text = big_manifest(1200, true);
    // Break entry 900 with an unclosed flow sequence.
    let needle = "  - image_id: 0f3c1a2e-2222-4a2b-9c3d-000000000384\n";
    let at = text.find(needle).unwrap();
    let line = text[..at].lines().count() + 1;
    text.insert_str(at + needle.len(), "    oops: [unclosed\n");
    let manifest = manifest::parse_str(&text, "big.yaml");
    assert!(manifest.fatal);
    let first = &manifest.diagnostics[0];
    assert_eq!(first.field, "yaml");
    assert!(first.line > line && first.line <= line + 3, "{first}");
}

fn imsreg(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_imsreg"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn validate_exits_2_and_names_the_line_for_each_bad_fixture() {
    for path in fixture_paths("bad-") {
        let expect = expectation(&path);
        let shown = path.display().to_string();
        let (code, stdout, _) = imsreg(&["validate", &shown]);
        assert_eq!(code, 2, "{shown}\n{stdout}");
        let prefix = format!("{shown}:{}:{}: ", expect.line, expect.column);
        assert!(
            stdout.contains(&prefix),
            "{shown}: no `{prefix}` in\n{stdout}"
        );
        assert!(!stdout.contains("\u{1b}["), "colours when not a terminal");
    }
}

#[test]
fn validate_summarizes_a_valid_manifest() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.yaml");
    let (code, stdout, stderr) = imsreg(&["validate", &demo.display().to_string()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("ok: 15 images, 3 to create ("), "{stdout}");
    assert!(stdout.contains("qcow2 6"), "{stdout}");
    assert!(stdout.contains("0 warnings"), "{stdout}");

    let warn = fixtures().join("warn-duplicate-image-url.yaml");
    let (code, stdout, _) = imsreg(&["validate", &warn.display().to_string()]);
    assert_eq!(code, 0);
    assert!(stdout.contains("warning: images[1].image_url:"), "{stdout}");
    assert!(stdout.contains("1 warning"), "{stdout}");
}

#[test]
fn validate_json_output() {
    let path = fixtures().join("bad-object-space.yaml");
    let (code, stdout, _) = imsreg(&["validate", "--format", "json", &path.display().to_string()]);
    assert_eq!(code, 2);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let first = &json.as_array().unwrap()[0];
    assert_eq!(first["file"], path.display().to_string());
    assert_eq!(first["line"], 7);
    assert_eq!(first["column"], 16);
    assert_eq!(first["severity"], "error");
    assert_eq!(first["field"], "images[1].image_url");
    assert!(first["message"].as_str().unwrap().contains("IMG.0175"));
}

#[test]
fn validate_refuses_a_missing_file() {
    let (code, stdout, stderr) = imsreg(&["validate", "/nonexistent/manifest.yaml"]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("cannot read manifest /nonexistent/manifest.yaml"),
        "{stderr}"
    );
    let (code, stdout, _) = imsreg(&["validate", "--format", "json", "/nonexistent/manifest.yaml"]);
    assert_eq!(code, 2);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json[0]["field"], "file");
}

#[test]
fn the_invalid_example_shows_errors_and_the_demo_is_clean() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let invalid = manifest::load(&examples.join("invalid.yaml")).unwrap();
    assert!(invalid.error_count() >= 10, "{}", render(&invalid));
    let demo = manifest::load(&examples.join("demo.yaml")).unwrap();
    assert!(demo.diagnostics.is_empty(), "{}", render(&demo));
    assert_eq!(demo.images.len(), 12);
    assert!(
        demo.images
            .iter()
            .all(|i| !i.image_url.object.contains("corrupt"))
    );
}

#[test]
fn anchors_late_in_a_big_list_fall_back_to_whole_reading() {
    let plain = big_manifest(1100, true);
    let with_alias = plain
        .replace(
            "image_url: obs://bkt-0/d/disk-800.qcow2",
            "image_url: &u obs://bkt-0/d/disk-800.qcow2",
        )
        .replace("image_url: obs://bkt-0/d/disk-900.qcow2", "image_url: *u");
    assert_ne!(plain, with_alias);
    let a = manifest::parse_str(&plain, "big.yaml");
    let b = manifest::parse_str(&with_alias, "big.yaml");
    assert_eq!(a.images.len() + a.invalid.len(), 1100);
    assert_eq!(b.images.len() + b.invalid.len(), 1100);
    assert_eq!(a.error_count(), b.error_count());
    // Entry 900 now repeats entry 800's URL.
    let warning = b
        .diagnostics
        .iter()
        .find(|d| d.severity == Severity::Warning)
        .expect("duplicate URL warning");
    assert_eq!(warning.field, "images[900].image_url");
}

#[test]
fn crlf_and_flow_style_big_lists_read_like_the_plain_one() {
    let plain = big_manifest(1100, true);
    let a = manifest::parse_str(&plain, "big.yaml");
    let crlf = manifest::parse_str(&plain.replace('\n', "\r\n"), "big.yaml");
    assert_eq!(a.images, crlf.images);
    assert_eq!(a.diagnostics, crlf.diagnostics);
    let cr = manifest::parse_str(&plain.replace('\n', "\r"), "big.yaml");
    assert_eq!(a.images, cr.images);
    assert_eq!(a.diagnostics, cr.diagnostics);

    let mut flow = String::from("images: [\n");
    for i in 0..1100 {
        flow.push_str(&format!(
            "  {{image_id: 0f3c1a2e-2222-4a2b-9c3d-{i:012x}, image_url: 'b01:d/{i}.vhd'}},\n"
        ));
    }
    flow.push_str("]\n");
    let manifest = manifest::parse_str(&flow, "flow.yaml");
    assert!(manifest.diagnostics.is_empty(), "{}", render(&manifest));
    assert_eq!(manifest.images.len(), 1100);
    assert_eq!(manifest.images[1099].line, 1101);
}

#[test]
fn duplicate_keys_in_a_huge_mapping_are_found() {
    let mut text = String::from("settings:\n");
    for i in 0..20_000 {
        text.push_str(&format!("  key{i}: 1\n"));
    }
    text.push_str("  key7: 2\nimages:\n  - {image_id: 4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86, image_url: b01:a.vhd}\n");
    let manifest = manifest::parse_str(&text, "m.yaml");
    let duplicate = manifest
        .diagnostics
        .iter()
        .find(|d| d.message.starts_with("duplicate key `key7`"))
        .expect("duplicate reported");
    assert_eq!(duplicate.line, 20_002);
    assert!(
        duplicate.message.contains("first given on line 9"),
        "{}",
        duplicate.message
    );
    // Every other key is unknown: 20,000 errors, all reported.
    assert_eq!(manifest.error_count(), 20_001);
}

#[test]
fn a_slice_boundary_that_cannot_be_cut_falls_back_to_whole_reading() {
    let plain = big_manifest(1100, true);
    // Entry 1024 starts a slice; a comment after its dash makes the cut unsafe to find.
    let needle = "  - image_id: 0f3c1a2e-2222-4a2b-9c3d-000000000400\n";
    assert!(plain.contains(needle));
    let odd = plain.replace(
        needle,
        "  -   # entry 1024\n    image_id: 0f3c1a2e-2222-4a2b-9c3d-000000000400\n",
    );
    let a = manifest::parse_str(&plain, "big.yaml");
    let b = manifest::parse_str(&odd, "big.yaml");
    assert_eq!(b.images.len(), a.images.len());
    assert_eq!(b.invalid.len(), a.invalid.len());
    assert_eq!(b.error_count(), a.error_count());
    let entry = b
        .images
        .iter()
        .find(|i| i.image_id.to_string().ends_with("000000000400"))
        .unwrap();
    let line = odd
        .lines()
        .position(|l| l.contains("000000000400"))
        .unwrap()
        + 1;
    assert_eq!(entry.line, line);
}

#[test]
fn preflight_settings_are_validated_with_their_position() {
    let entry =
        "images:\n  - {image_id: 4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86, image_url: b01:a.vhd}\n";
    let good = format!(
        "settings:\n  preflight: false\n  obs_endpoint: https://obs.ap-southeast-1.myhuaweicloud.com\n{entry}"
    );
    let manifest = manifest::parse_str(&good, "m.yaml");
    assert!(manifest.diagnostics.is_empty(), "{}", render(&manifest));
    assert_eq!(manifest.settings.preflight, Some(false));
    assert_eq!(
        manifest.settings.obs_endpoint.as_deref(),
        Some("https://obs.ap-southeast-1.myhuaweicloud.com")
    );

    let bad = format!(
        "settings:\n  preflight: maybe\n  obs_endpoint: https://obs.example.com/bucket\n{entry}"
    );
    let manifest = manifest::parse_str(&bad, "m.yaml");
    let at = |field: &str| {
        manifest
            .diagnostics
            .iter()
            .find(|d| d.field == field)
            .unwrap_or_else(|| panic!("no diagnostic for {field}: {}", render(&manifest)))
    };
    let preflight = at("settings.preflight");
    assert_eq!((preflight.line, preflight.column), (2, 14));
    assert!(
        preflight.message.contains("true or false"),
        "{}",
        preflight.message
    );
    let endpoint = at("settings.obs_endpoint");
    assert_eq!((endpoint.line, endpoint.column), (3, 17));
    assert!(endpoint.message.contains("path"), "{}", endpoint.message);
    assert!(manifest.fatal);

    let typo = format!("settings:\n  obs_endpiont: https://obs.x.myhuaweicloud.com\n{entry}");
    let manifest = manifest::parse_str(&typo, "m.yaml");
    assert!(
        manifest.diagnostics[0].message.contains("obs_endpoint"),
        "{}",
        render(&manifest)
    );
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn valid_manifest_with_every_form_of_created_entry() {
    let manifest = manifest::load(&fixtures().join("good-create.yaml")).unwrap();
    assert!(manifest.diagnostics.is_empty(), "{}", render(&manifest));
    assert!(!manifest.fatal && manifest.invalid.is_empty());
    assert_eq!(manifest.images.len(), 1);
    assert_eq!(manifest.images[0].name.as_deref(), Some("legacy-app"));
    assert_eq!(
        manifest.defaults,
        Defaults {
            os_version: Some("Ubuntu 22.04 server 64bit".into()),
            min_disk: Some(40),
            min_ram: Some(2048),
            tags: tags(&[("env", "prod"), ("owner", "ops")]),
        }
    );
    let ubuntu = "Ubuntu 22.04 server 64bit";
    let defaults_os_at = Position {
        line: 30,
        column: 15,
    };
    let url = |bucket: &str, object: &str| ImageUrl {
        bucket: bucket.into(),
        object: object.into(),
    };
    let expected = vec![
        CreateEntry {
            name: "web-01".into(),
            image_url: url("migration-images", "web/web-01.qcow2"),
            format: ImageFormat::Qcow2,
            os_version: Some(ubuntu.into()),
            min_disk: Some(40),
            min_ram: Some(2048),
            tags: tags(&[("env", "prod"), ("owner", "ops")]),
            line: 7,
            os_version_at: Some(defaults_os_at),
        },
        CreateEntry {
            name: "db-01".into(),
            image_url: url("migration-images", "db/db-01.vhd"),
            format: ImageFormat::Vhd,
            os_version: Some("CentOS 7.9 64bit".into()),
            min_disk: Some(100),
            min_ram: Some(0),
            tags: tags(&[
                ("app", "postgres"),
                ("env", "staging"),
                ("note", ""),
                ("owner", "ops"),
                ("release", "1.10"),
            ]),
            line: 9,
            os_version_at: Some(Position {
                line: 11,
                column: 17,
            }),
        },
        CreateEntry {
            name: "中文镜像 01".into(),
            image_url: url("migration-images", "cn/disk.raw"),
            format: ImageFormat::Raw,
            os_version: Some(ubuntu.into()),
            min_disk: Some(40),
            min_ram: Some(2048),
            tags: tags(&[("env", "prod"), ("owner", "ops")]),
            line: 22,
            os_version_at: Some(defaults_os_at),
        },
        CreateEntry {
            name: "2024".into(),
            image_url: url("migration-images", "y/2024.zvhd2"),
            format: ImageFormat::Zvhd2,
            os_version: Some(ubuntu.into()),
            min_disk: Some(40),
            min_ram: Some(4096),
            tags: tags(&[("env", "prod"), ("owner", "ops")]),
            line: 25,
            os_version_at: Some(defaults_os_at),
        },
        CreateEntry {
            name: "full Ubuntu_22.04-tags".into(),
            image_url: url("migration-images", "full/disk.qcow2"),
            format: ImageFormat::Qcow2,
            os_version: Some(ubuntu.into()),
            min_disk: Some(40),
            min_ram: Some(2048),
            // 7 of its own and `env` from the defaults: 8, plus imsreg's own = 9 of 10.
            tags: tags(&[
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "4"),
                ("e", "5"),
                ("env", "prod"),
                ("f", "6"),
                ("owner", "web-team"),
            ]),
            line: 26,
            os_version_at: Some(defaults_os_at),
        },
    ];
    assert_eq!(manifest.creates, expected);
}

#[test]
fn created_entries_without_defaults_keep_only_their_own_values() {
    let text = "images:\n  - name: web-01\n    image_url: b01:web.qcow2\n    tags: {env: prod}\n";
    let manifest = manifest::parse_str(text, "m.yaml");
    assert!(manifest.diagnostics.is_empty(), "{}", render(&manifest));
    let created = &manifest.creates[0];
    assert_eq!(created.os_version, None);
    assert_eq!(created.os_version_at, None);
    assert_eq!((created.min_disk, created.min_ram), (None, None));
    assert_eq!(created.tags, tags(&[("env", "prod")]));
    assert_eq!(manifest.defaults, Defaults::default());
}

#[test]
fn ten_tags_in_all_count_imsregs_own_after_the_defaults_merge() {
    let entry = |n: usize, own: &str| {
        format!("  - name: web-{n}\n    image_url: b01:web-{n}.qcow2\n    tags: {{{own}}}\n")
    };
    // 3 from defaults; the entries bring 6 (9 in all: fits), 6 with one overriding a default
    // key (still 9), and 7 (10: with imsreg-key, 11 > 10).
    let text = format!(
        "defaults:\n  tags: {{env: prod, team: ops, tier: web}}\nimages:\n{}{}{}",
        entry(0, "a: 1, b: 2, c: 3, d: 4, e: 5, f: 6"),
        entry(1, "a: 1, b: 2, c: 3, d: 4, e: 5, env: test"),
        entry(2, "a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7"),
    );
    let manifest = manifest::parse_str(&text, "m.yaml");
    let names: Vec<&str> = manifest.creates.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["web-0", "web-1"]);
    assert_eq!(manifest.creates[0].tags.len(), 9);
    assert_eq!(manifest.creates[1].tags.len(), 8);
    assert_eq!(manifest.creates[1].tags["env"], "test");
    assert_eq!(manifest.error_count(), 1, "{}", render(&manifest));
    let d = &manifest.diagnostics[0];
    assert_eq!((d.line, d.column), (12, 11));
    assert_eq!(d.field, "images[2].tags");
    assert_eq!(
        d.message,
        "10 tags with those of `defaults:` (line 2), and imsreg adds its own `imsreg-key` tag: \
         IMS allows 10 tags an image (remove 1, here or in `defaults:`)"
    );
    // The entry is invalid (not fatal), with its name as written and no image_id.
    assert!(!manifest.fatal);
    let invalid = &manifest.invalid[0];
    assert_eq!(invalid.line, 10);
    assert_eq!(invalid.image_id, None);
    assert_eq!(invalid.name.as_deref(), Some("web-2"));
    assert_eq!(invalid.image_url.as_deref(), Some("b01:web-2.qcow2"));
    assert_eq!(invalid.problems, [format!("images[2].tags: {}", d.message)]);
}

#[test]
fn duplicate_created_names_name_both_lines_and_image_id_entries_only_warn() {
    let text = "images:\n  - name: web-01\n    image_url: b01:a.qcow2\n  - image_id: 4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86\n    image_url: b01:b.qcow2\n    name: web-01\n  - name: web-01\n    image_url: b01:c.qcow2\n  - name: Web-01\n    image_url: b01:d.qcow2\n";
    let manifest = manifest::parse_str(text, "m.yaml");
    let lines: Vec<String> = manifest.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        lines,
        [
            "m.yaml:6:11: warning: images[1].name: `web-01` is also the name of the image imsreg creates on line 2 (this entry registers an existing image, so IMS will hold two images of that name; rename one of them unless that is what you want)",
            "m.yaml:7:11: error: images[2].name: `web-01` is also the name of the entry on line 2 (a created image is found again by its name, so each name is created once; rename one of the two entries)",
        ]
    );
    // Names are compared exactly: `Web-01` is another name.
    let names: Vec<&str> = manifest.creates.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["web-01", "Web-01"]);
    assert_eq!(manifest.images.len(), 1);
    assert_eq!(manifest.invalid.len(), 1);
    assert_eq!(manifest.invalid[0].line, 7);
    assert_eq!(manifest.invalid[0].image_id, None);
    assert_eq!(manifest.invalid[0].name.as_deref(), Some("web-01"));
}

#[test]
fn an_invalid_created_entry_keeps_its_values_as_written() {
    let text = "images:\n  - name: web/01\n    image_url: obs://b01/web.qcow2\n    min_disk: 0\n";
    let manifest = manifest::parse_str(text, "m.yaml");
    assert!(manifest.creates.is_empty() && !manifest.fatal);
    let invalid = &manifest.invalid[0];
    assert_eq!(invalid.image_id, None);
    assert_eq!(invalid.name.as_deref(), Some("web/01"));
    assert_eq!(invalid.image_url.as_deref(), Some("obs://b01/web.qcow2"));
    assert_eq!(invalid.problems.len(), 2, "{:?}", invalid.problems);
    assert!(invalid.problems[0].starts_with("images[0].name: "));
    assert!(invalid.problems[1].starts_with("images[0].min_disk: "));
}

/// `count` created entries (every 50th with a bad tag) and entries with an image_id,
/// with `defaults:` after the list; `plain: false` forces whole-document reading.
fn big_create_manifest(count: usize, plain: bool) -> String {
    let anchor = if plain { "" } else { "&os " };
    let mut text = String::from("version: 1\nimages:\n");
    for i in 0..count {
        if i % 3 == 0 {
            text.push_str(&format!(
                "  - image_id: 0f3c1a2e-2222-4a2b-9c3d-{i:012x}\n    image_url: b01:d/{i}.vhd\n    name: vm-{}\n",
                i + 1
            ));
        } else {
            text.push_str(&format!(
                "  - name: vm-{i}\n    image_url: b01:d/{i}.qcow2\n"
            ));
            if i % 50 == 1 {
                text.push_str("    tags: {imsreg-key: x}\n");
            } else if i % 7 == 0 {
                text.push_str(&format!(
                    "    tags: {{app: a{i}, env: test}}\n    min_disk: 80\n"
                ));
            }
        }
    }
    text.push_str(&format!(
        "defaults:\n  os_version: {anchor}CentOS 7.9 64bit\n  min_disk: 40\n  tags: {{env: prod}}\n"
    ));
    text
}

#[test]
fn sliced_reading_of_created_entries_matches_whole_document_reading() {
    let count = 1800;
    let sliced = manifest::parse_str(&big_create_manifest(count, true), "big.yaml");
    let whole = manifest::parse_str(&big_create_manifest(count, false), "big.yaml");
    assert_eq!(sliced.creates, whole.creates);
    assert_eq!(sliced.images, whole.images);
    assert_eq!(sliced.invalid, whole.invalid);
    assert_eq!(sliced.diagnostics, whole.diagnostics);
    assert_eq!(sliced.valid_count() + sliced.invalid.len(), count);
    // The defaults, written after the list, reached every created entry.
    assert!(sliced.creates.iter().all(|c| {
        c.os_version.as_deref() == Some("CentOS 7.9 64bit") && c.os_version_at.is_some()
    }));
    let vm7 = sliced.creates.iter().find(|c| c.name == "vm-7").unwrap();
    assert_eq!(vm7.min_disk, Some(80));
    assert_eq!(vm7.tags, tags(&[("app", "a7"), ("env", "test")]));
    let vm2 = sliced.creates.iter().find(|c| c.name == "vm-2").unwrap();
    assert_eq!(vm2.min_disk, Some(40));
    assert_eq!(vm2.tags, tags(&[("env", "prod")]));
    let reserved = (0..count).filter(|i| i % 3 != 0 && i % 50 == 1).count();
    assert_eq!(sliced.invalid.len(), reserved);
    // Every image_id entry `vm-{i+1}` shares its name with a created entry (i + 1 is not a
    // multiple of 3), also with an invalid one: a warning each.
    let shared = (0..count).filter(|i| i % 3 == 0).count();
    assert_eq!(sliced.warning_count(), shared, "{}", render(&sliced));
    let first = &sliced.diagnostics[0];
    assert_eq!(
        (first.line, first.column, first.severity),
        (5, 11, Severity::Warning)
    );
    assert!(
        first.message.contains("the image imsreg creates on line 6"),
        "{first}"
    );
}

#[test]
fn validate_counts_the_entries_to_create() {
    let path = fixtures().join("good-create.yaml");
    let (code, stdout, stderr) = imsreg(&["validate", &path.display().to_string()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.ends_with(
            "good-create.yaml: ok: 6 images, 5 to create (qcow2 2, vhd 1, raw 1, zvhd2 1, vmdk 1), 0 warnings\n"
        ),
        "{stdout}"
    );

    let path = fixtures().join("bad-create-name-duplicate.yaml");
    let shown = path.display().to_string();
    let (code, stdout, _) = imsreg(&["validate", &shown]);
    assert_eq!(code, 2);
    assert!(
        stdout.ends_with("invalid: 1 error, 0 warnings; 1 of 3 entries invalid\n"),
        "{stdout}"
    );
    let (code, stdout, _) = imsreg(&["validate", "--format", "json", &shown]);
    assert_eq!(code, 2);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let diagnostics = json.as_array().unwrap();
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(diagnostics[0]["line"], 8);
    assert_eq!(diagnostics[0]["column"], 11);
    assert_eq!(diagnostics[0]["field"], "images[2].name");
    assert!(
        diagnostics[0]["message"]
            .as_str()
            .unwrap()
            .contains("entry on line 4"),
        "{stdout}"
    );
}

#[test]
fn the_create_example_is_clean() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/create.yaml");
    let manifest = manifest::load(&path).unwrap();
    assert!(manifest.diagnostics.is_empty(), "{}", render(&manifest));
    assert!(manifest.images.is_empty());
    assert_eq!(manifest.creates.len(), 7);
    assert!(manifest.defaults.os_version.is_some());
    assert!(
        manifest.creates.iter().all(|c| c.os_version.is_some()
            && c.min_disk.is_some()
            && c.tags.contains_key("project"))
    );
}

#[test]
fn keys_of_created_entries_in_the_wrong_place_say_where_they_go() {
    let text = "os_version: CentOS 7.9 64bit\ndefaults:\n  tag: {env: prod}\nimages:\n  - name: web-01\n    image_url: b01:a.qcow2\n    min_rma: 1024\n";
    let manifest = manifest::parse_str(text, "m.yaml");
    let lines: Vec<String> = manifest.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        lines,
        [
            "m.yaml:1:1: error: os_version: unknown key `os_version` (values for every image imsreg creates go under `defaults:`)",
            "m.yaml:3:3: error: defaults.tag: unknown key `tag` (did you mean `tags`?)",
            "m.yaml:7:5: error: images[0].min_rma: unknown key `min_rma` (did you mean `min_ram`?)",
        ]
    );
    assert!(manifest.fatal);
}

#[test]
fn regions_and_the_entries_own_region_and_project_are_read() {
    let manifest = manifest::load(&fixtures().join("good-regions.yaml")).unwrap();
    assert!(
        manifest.diagnostics.is_empty(),
        "{:?}",
        manifest.diagnostics
    );
    let eu = &manifest.settings.regions["eu-west-101"];
    assert_eq!(
        eu,
        &manifest::RegionSettings {
            project_id: Some("fedcba9876543210fedcba9876543210".into()),
            endpoint: Some("https://ims.eu-west-101.myhuaweicloud.eu".into()),
            obs_endpoint: Some("https://obs.eu-west-101.myhuaweicloud.eu".into()),
            concurrency: Some(4),
            max_active_jobs: Some(10),
            submit_rate: Some(0.5),
            query_rate: Some(5.0),
        }
    );
    assert_eq!(
        manifest.placements.len(),
        2,
        "the first entry takes settings'"
    );
    assert_eq!(
        manifest.placements[&18],
        manifest::Placement {
            region: Some("eu-west-101".into()),
            project_id: None
        }
    );
    assert_eq!(
        manifest.placements[&21].project_id.as_deref(),
        Some("00000000000000000000000000000001")
    );
    assert_eq!(manifest.creates.len(), 1);
}
