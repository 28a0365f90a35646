//! Seeded random inputs: nothing the manifest reader is given may panic, and what it returns
//! must hold together (sorted diagnostics, every entry accounted for, positions inside the
//! file). Random bytes, mutated small manifests, and mutated big ones (read in slices).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use imsreg::manifest::{self, Manifest, Severity};

const DEMO: &str = include_str!("../examples/demo.yaml");
const ALL_FORMS: &str = include_str!("fixtures/manifest/good-all-forms.yaml");
const CREATE: &str = include_str!("fixtures/manifest/good-create.yaml");

/// Fragments that stress YAML: indicators, anchors, tags, quotes, tabs, odd line breaks.
const FRAGMENTS: [&str; 24] = [
    ":",
    "- ",
    "[",
    "]",
    "{",
    "}",
    "&a ",
    "*a",
    "!tag ",
    "\"",
    "'",
    "\t",
    "\r",
    "\n",
    "# ",
    "---\n",
    "...\n",
    "? ",
    "|\n",
    ">-\n",
    "%YAML 1.2\n",
    "\u{feff}",
    "é",
    "\\",
];

fn check_invariants(manifest: &Manifest, input_lines: usize) {
    let mut last = (0, 0);
    for d in &manifest.diagnostics {
        assert!(d.line >= 1 && d.column >= 1, "{d}");
        assert!(d.line <= input_lines + 1, "{d} beyond {input_lines} lines");
        assert!((d.line, d.column) >= last, "unsorted at {d}");
        last = (d.line, d.column);
        assert!(!d.message.is_empty() && !d.field.is_empty(), "{d:?}");
    }
    if manifest.error_count() == 0 {
        assert!(!manifest.fatal);
        assert!(manifest.valid_count() > 0);
        assert!(manifest.invalid.is_empty());
    }
    for entry in &manifest.invalid {
        assert!(!entry.problems.is_empty());
    }
    for created in &manifest.creates {
        assert!(
            !created.name.is_empty() && created.tags.len() < 10,
            "{created:?}"
        );
    }
    for image in &manifest.images {
        let shown = image.image_id.to_string();
        assert_eq!(shown, shown.to_lowercase());
        assert_eq!(shown.len(), 36);
    }
    if manifest.fatal {
        assert!(
            manifest
                .diagnostics
                .iter()
                .any(|d| d.severity == Severity::Error)
        );
    }
}

fn lines_of(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .filter(|b| **b == b'\n' || **b == b'\r')
        .count()
        + 1
}

fn mutate(rng: &mut StdRng, base: &str, edits: usize) -> Vec<u8> {
    let mut bytes = base.as_bytes().to_vec();
    for _ in 0..edits {
        let at = rng.random_range(0..=bytes.len());
        match rng.random_range(0..6) {
            0 if !bytes.is_empty() => {
                let end = (at + rng.random_range(1..8)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            1 => {
                let fragment = FRAGMENTS[rng.random_range(0..FRAGMENTS.len())];
                bytes.splice(at..at, fragment.bytes());
            }
            2 if at < bytes.len() => bytes[at] = rng.random(),
            3 => {
                // Duplicate a line (duplicate keys, duplicate entries).
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let lines: Vec<&str> = text.split('\n').collect();
                let pick = rng.random_range(0..lines.len());
                let mut out: Vec<&str> = lines.clone();
                out.insert(pick, lines[pick]);
                bytes = out.join("\n").into_bytes();
            }
            4 if at < bytes.len() => {
                // Re-indent: a space more or less at a line start.
                let start = bytes[..at]
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1);
                if rng.random_bool(0.5) {
                    bytes.insert(start, b' ');
                } else if bytes.get(start) == Some(&b' ') {
                    bytes.remove(start);
                }
            }
            _ => {
                let fragment = FRAGMENTS[rng.random_range(0..FRAGMENTS.len())];
                bytes.splice(at..at, fragment.bytes());
            }
        }
    }
    bytes
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x1a5_2e6);
    for _ in 0..400 {
        let len = rng.random_range(0..300);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let manifest = manifest::parse_bytes(&bytes, "random.yaml");
        check_invariants(&manifest, lines_of(&bytes));
        assert!(manifest.error_count() > 0);
    }
}

#[test]
fn mutated_manifests_never_panic() {
    let mut rng = StdRng::seed_from_u64(2);
    for round in 0..1500 {
        let base = [DEMO, ALL_FORMS, CREATE][round % 3];
        let edits = rng.random_range(1..6);
        let bytes = mutate(&mut rng, base, edits);
        let manifest = manifest::parse_bytes(&bytes, "mutated.yaml");
        check_invariants(&manifest, lines_of(&bytes));
    }
}

/// A manifest big enough to be read in slices (see src/manifest/stream.rs).
fn big(entries: usize) -> String {
    let mut text = String::from("version: 1\nimages:\n");
    for i in 0..entries {
        text.push_str(&format!(
            "  - image_id: 0f3c1a2e-2222-4a2b-9c3d-{i:012x}\n    image_url: bkt-{}:d/disk-{i}.qcow2\n",
            i % 3
        ));
    }
    text.push_str("settings:\n  concurrency: 4\n");
    text
}

#[test]
fn mutated_big_manifests_never_panic_and_agree_on_entry_counts() {
    let base = big(1100);
    let clean = manifest::parse_str(&base, "big.yaml");
    assert_eq!(clean.images.len(), 1100);
    assert!(clean.diagnostics.is_empty());
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..60 {
        let edits = rng.random_range(1..4);
        let bytes = mutate(&mut rng, &base, edits);
        let manifest = manifest::parse_bytes(&bytes, "big.yaml");
        check_invariants(&manifest, lines_of(&bytes));
        if !manifest.fatal {
            // Entries are never lost or counted twice, whatever slice they fell in.
            let total = manifest.valid_count() + manifest.invalid.len();
            assert!((1099..=1102).contains(&total), "{total} entries");
        }
    }
}
