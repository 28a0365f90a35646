//! Format detection on real disk images, read the way the preflight reads an OBS object: the
//! first 36 KiB and the last 512 bytes.
//!
//! - Images made with `qemu-img` at test time (qcow, qcow2, qed, vdi, vpc dynamic and fixed,
//!   vhdx, vmdk monolithicSparse, streamOptimized and a monolithicFlat descriptor), both
//!   converted from a raw disk with data and created empty, when `qemu-img` is on PATH.
//! - The same kinds from `tests/data/formats/` (made by its `make_heads.py`), so detection is
//!   checked on real qemu-img output where qemu-img is not installed.
//! - ISO 9660, ZVHD and ZVHD2 heads built here, byte by byte (no tool makes them here), and raw.

use std::path::{Path, PathBuf};
use std::process::Command;

use imsreg::manifest::ImageFormat;
use imsreg::preflight::format::{self, Detected, HEAD_BYTES, TAIL_BYTES, VhdType};
use serde_json::Value;

/// The first 36 KiB and last 512 bytes of a file, as the preflight's two ranged reads give them.
fn head_and_tail(path: &Path) -> (Vec<u8>, Vec<u8>) {
    let data = std::fs::read(path).unwrap();
    let head = data[..data.len().min(HEAD_BYTES as usize)].to_vec();
    let tail = data[data.len().saturating_sub(TAIL_BYTES as usize)..].to_vec();
    (head, tail)
}

fn detect_file(path: &Path) -> Detected {
    let (head, tail) = head_and_tail(path);
    format::detect(&head, Some(&tail))
}

#[test]
fn committed_heads_of_real_images_are_detected() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/formats");
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    let images = index["images"].as_array().unwrap();
    assert!(images.len() >= 12, "expected every format's head");
    for image in images {
        let name = image["name"].as_str().unwrap();
        let mut head = std::fs::read(dir.join(format!("{name}.head"))).unwrap();
        // Stored without trailing zeros: restore the length that was read.
        head.resize(image["head_len"].as_u64().unwrap() as usize, 0);
        let tail = std::fs::read(dir.join(format!("{name}.tail"))).unwrap();
        let found = format::detect(&head, Some(&tail));
        assert_eq!(
            found.to_string(),
            image["expect"].as_str().unwrap(),
            "{name}"
        );
    }
}

/// What each qemu-img output format must be detected as (`create` and `convert` alike).
const QEMU_FORMATS: &[(&str, &[&str], &str, Option<ImageFormat>)] = &[
    (
        "qcow",
        &["qcow"],
        "qcow (version 1)",
        Some(ImageFormat::Qcow),
    ),
    (
        "qcow2",
        &["qcow2"],
        "qcow2 (version 3)",
        Some(ImageFormat::Qcow2),
    ),
    (
        "qcow2-v2",
        &["qcow2", "-o", "compat=0.10"],
        "qcow2 (version 2)",
        Some(ImageFormat::Qcow2),
    ),
    ("qed", &["qed"], "qed", Some(ImageFormat::Qed)),
    ("vdi", &["vdi"], "vdi", Some(ImageFormat::Vdi)),
    (
        "vpc-dynamic",
        &["vpc", "-o", "subformat=dynamic"],
        "vhd (dynamic)",
        Some(ImageFormat::Vhd),
    ),
    (
        "vpc-fixed",
        &["vpc", "-o", "subformat=fixed"],
        "vhd (fixed)",
        Some(ImageFormat::Vhd),
    ),
    ("vhdx", &["vhdx"], "vhdx", Some(ImageFormat::Vhdx)),
    (
        "vmdk-sparse",
        &["vmdk", "-o", "subformat=monolithicSparse"],
        "vmdk (monolithicSparse)",
        Some(ImageFormat::Vmdk),
    ),
    (
        "vmdk-stream",
        &["vmdk", "-o", "subformat=streamOptimized"],
        "vmdk (streamOptimized)",
        Some(ImageFormat::Vmdk),
    ),
];

fn qemu_img_available() -> bool {
    Command::new("qemu-img")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A 4 MiB raw disk with an MBR boot signature, a GPT header and data at 1 MiB.
fn source_disk(path: &Path) {
    let mut data = vec![0u8; 4 << 20];
    data[510..512].copy_from_slice(&[0x55, 0xAA]);
    data[512..520].copy_from_slice(b"EFI PART");
    for (i, byte) in data[1 << 20..(1 << 20) + 65536].iter_mut().enumerate() {
        *byte = i as u8;
    }
    std::fs::write(path, data).unwrap();
}

#[test]
fn images_made_by_qemu_img_now_are_detected() {
    if !qemu_img_available() {
        eprintln!(
            "qemu-img is not on PATH: skipped here; the committed heads of the same formats \
             are checked by committed_heads_of_real_images_are_detected"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("source.raw");
    source_disk(&raw);
    assert_eq!(detect_file(&raw), Detected::Unrecognised, "raw");

    let mut checked = 0;
    for (name, spec, expect, format) in QEMU_FORMATS {
        let (fmt, options) = spec.split_first().unwrap();
        let converted = dir.path().join(format!("{name}-converted.img"));
        let mut args = vec!["convert", "-q", "-f", "raw", "-O", fmt];
        args.extend_from_slice(options);
        args.extend([raw.to_str().unwrap(), converted.to_str().unwrap()]);
        qemu_img(&args);

        let created = dir.path().join(format!("{name}-created.img"));
        let mut args = vec!["create", "-q", "-f", fmt];
        args.extend_from_slice(options);
        args.extend([created.to_str().unwrap(), "1M"]);
        qemu_img(&args);

        for path in [&converted, &created] {
            let found = detect_file(path);
            assert_eq!(found.to_string(), *expect, "{}", path.display());
            assert_eq!(found.format(), *format, "{}", path.display());
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * QEMU_FORMATS.len());

    // A fixed VHD converted from the raw disk starts with its MBR: only the footer tells.
    let (head, tail) = head_and_tail(&dir.path().join("vpc-fixed-converted.img"));
    assert_eq!(&head[510..512], &[0x55, 0xAA]);
    assert_eq!(format::detect(&head, None), Detected::Unrecognised);
    assert_eq!(
        format::detect(&head, Some(&tail)),
        Detected::Vhd {
            disk_type: VhdType::Fixed
        }
    );

    // A descriptor-only vmdk: its data is in the separate -flat file, which is raw.
    let flat = dir.path().join("flat.vmdk");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vmdk",
        "-o",
        "subformat=monolithicFlat",
        flat.to_str().unwrap(),
        "1M",
    ]);
    assert_eq!(
        detect_file(&flat),
        Detected::VmdkDescriptor {
            create_type: Some("monolithicFlat".into())
        }
    );
    assert_eq!(
        detect_file(&dir.path().join("flat-flat.vmdk")),
        Detected::Unrecognised
    );
}

/// An ISO 9660 head: a zero system area, the primary volume descriptor at 0x8000 and the set
/// terminator at 0x8800 (ECMA-119 §8).
fn iso_head() -> Vec<u8> {
    let mut head = vec![0u8; HEAD_BYTES as usize];
    let pvd = &mut head[0x8000..0x8800];
    pvd[0] = 1;
    pvd[1..6].copy_from_slice(b"CD001");
    pvd[6] = 1;
    pvd[8..8 + 5].copy_from_slice(b"LINUX");
    pvd[40..40 + 8].copy_from_slice(b"IMSREG  ");
    let terminator = &mut head[0x8800..0x8807];
    terminator[0] = 0xFF;
    terminator[1..6].copy_from_slice(b"CD001");
    terminator[6] = 1;
    head
}

/// A ZVHD/ZVHD2 head as Huawei's ims-qemu-img writes it (`struct ZVHD_FOOTER`, native
/// little-endian, 4 KiB): the cookie, creator "tap", sizes, disk type, the one's-complement
/// checksum over the 512-byte struct, then the first data chunk's "hwstream bg" prefix.
fn zvhd_head(cookie: &[u8; 8], disk_size: u64) -> Vec<u8> {
    let mut head = vec![0u8; 4096 + 64];
    head[0..8].copy_from_slice(cookie);
    head[8..12].copy_from_slice(&2u32.to_le_bytes()); // features: reserved bit
    head[12..16].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    head[28..32].copy_from_slice(b"tap\0");
    head[32..36].copy_from_slice(&0x0001_0004u32.to_le_bytes());
    head[40..48].copy_from_slice(&disk_size.to_le_bytes());
    head[48..56].copy_from_slice(&disk_size.to_le_bytes());
    head[60..64].copy_from_slice(&3u32.to_le_bytes());
    let sum: u32 = head[..512].iter().map(|&b| u32::from(b)).sum();
    head[64..68].copy_from_slice(&(!sum).to_le_bytes());
    head[4096..4096 + 11].copy_from_slice(b"hwstream bg");
    head
}

#[test]
fn iso_zvhd_zvhd2_and_raw_heads() {
    let iso = iso_head();
    assert_eq!(format::detect(&iso, Some(&[0u8; 512])), Detected::Iso);
    // A hybrid ISO carries an MBR in its system area: still an ISO.
    let mut hybrid = iso.clone();
    hybrid[510..512].copy_from_slice(&[0x55, 0xAA]);
    assert_eq!(
        format::detect(&hybrid, None).format(),
        Some(ImageFormat::Iso)
    );
    // Cut before 0x8001 (the object is that small): no longer recognisable.
    assert_eq!(format::detect(&iso[..0x8000], None), Detected::Unrecognised);

    let zvhd = zvhd_head(b"stream\0\0", 40 << 30);
    assert_eq!(format::detect(&zvhd, None), Detected::Zvhd);
    let zvhd2 = zvhd_head(b"z2strm\0\0", 40 << 30);
    assert_eq!(format::detect(&zvhd2, None), Detected::Zvhd2);
    assert_eq!(
        format::detect(&zvhd2, None).format(),
        Some(ImageFormat::Zvhd2)
    );

    let mut raw = vec![0u8; HEAD_BYTES as usize];
    raw[510..512].copy_from_slice(&[0x55, 0xAA]);
    assert_eq!(
        format::detect(&raw, Some(&[7u8; 512])),
        Detected::Unrecognised
    );
    assert_eq!(format::detect(&raw, Some(&[7u8; 512])).format(), None);
}
