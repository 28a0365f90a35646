//! Which disk-image format a file is, from its first [`HEAD_BYTES`] and its last [`TAIL_BYTES`]
//! (for the VHD footer), by the magic bytes of ims-api.md §10, probed in its order.
//!
//! Pure: it reads only the slices it is given, so it works on ranged OBS reads, on files, and
//! on test data alike. A file no probe recognises is [`Detected::Unrecognised`]: raw images
//! have no magic, so that is what a raw disk looks like, and also what anything unknown does.

use std::fmt;
use std::ops::RangeInclusive;

use crate::manifest::ImageFormat;

/// How much of the start of a file the probes need: ISO 9660's `CD001` sits at 0x8001.
pub const HEAD_BYTES: u64 = 36 * 1024;

/// How much of the end of a file the probes need: the VHD footer.
pub const TAIL_BYTES: u64 = 512;

/// A VHD's disk type (BE u32 at footer offset 60).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VhdType {
    Fixed,
    Dynamic,
    /// Needs its parent image: useless on its own.
    Differencing,
    Other(u32),
}

/// What the probes found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detected {
    /// `QFI\xfb`, version 1.
    Qcow,
    /// `QFI\xfb`, version 2 or 3 (or a later one).
    Qcow2 { version: u32 },
    /// `QED\0`.
    Qed,
    /// `0xBEDA107F` at 0x40.
    Vdi,
    /// `vhdxfile`.
    Vhdx,
    /// `conectix` at offset 0 (dynamic, differencing) or only at EOF-512 (fixed).
    Vhd { disk_type: VhdType },
    /// `KDMV` (monolithicSparse, streamOptimized), with the embedded descriptor's `createType`.
    VmdkSparse {
        version: u32,
        create_type: Option<String>,
    },
    /// `COWD`: the old ESX sparse format.
    VmdkCowd,
    /// A text descriptor (`# Disk DescriptorFile`) whose data lives in other files.
    VmdkDescriptor { create_type: Option<String> },
    /// `CD001` at 0x8001.
    Iso,
    /// Huawei's `stream` header.
    Zvhd,
    /// Huawei's `z2strm` header.
    Zvhd2,
    /// No probe matched: a raw disk, or something unknown.
    Unrecognised,
}

impl Detected {
    /// The IMS format this is, if any probe matched.
    pub fn format(&self) -> Option<ImageFormat> {
        Some(match self {
            Detected::Qcow => ImageFormat::Qcow,
            Detected::Qcow2 { .. } => ImageFormat::Qcow2,
            Detected::Qed => ImageFormat::Qed,
            Detected::Vdi => ImageFormat::Vdi,
            Detected::Vhdx => ImageFormat::Vhdx,
            Detected::Vhd { .. } => ImageFormat::Vhd,
            Detected::VmdkSparse { .. } | Detected::VmdkCowd | Detected::VmdkDescriptor { .. } => {
                ImageFormat::Vmdk
            }
            Detected::Iso => ImageFormat::Iso,
            Detected::Zvhd => ImageFormat::Zvhd,
            Detected::Zvhd2 => ImageFormat::Zvhd2,
            Detected::Unrecognised => return None,
        })
    }
}

impl fmt::Display for Detected {
    /// `qcow2 (version 3)`, `vhd (fixed)`, `vmdk (streamOptimized)`, ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Detected::Qcow => f.write_str("qcow (version 1)"),
            Detected::Qcow2 { version } => write!(f, "qcow2 (version {version})"),
            Detected::Vhd { disk_type } => match disk_type {
                VhdType::Fixed => f.write_str("vhd (fixed)"),
                VhdType::Dynamic => f.write_str("vhd (dynamic)"),
                VhdType::Differencing => f.write_str("vhd (differencing)"),
                VhdType::Other(n) => write!(f, "vhd (disk type {n})"),
            },
            Detected::VmdkSparse {
                create_type: Some(create_type),
                ..
            } => write!(f, "vmdk ({create_type})"),
            Detected::VmdkSparse { version, .. } => write!(f, "vmdk (sparse, version {version})"),
            Detected::VmdkCowd => f.write_str("vmdk (ESX sparse)"),
            Detected::VmdkDescriptor { create_type } => write!(
                f,
                "a vmdk descriptor without its data (createType {})",
                create_type.as_deref().unwrap_or("unknown")
            ),
            Detected::Unrecognised => f.write_str("no known image format"),
            other => match other.format() {
                Some(format) => write!(f, "{format}"),
                None => f.write_str("no known image format"),
            },
        }
    }
}

/// Identifies a file from `head` (its first bytes, ideally [`HEAD_BYTES`] or the whole file)
/// and `tail` (its last bytes, ideally [`TAIL_BYTES`]; `None` when not read). Shorter slices are
/// fine: a probe whose bytes are missing does not match.
pub fn detect(head: &[u8], tail: Option<&[u8]>) -> Detected {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);

    if at(0, b"QFI\xfb") {
        return match be_u32(head, 4) {
            Some(1) => Detected::Qcow,
            version => Detected::Qcow2 {
                version: version.unwrap_or(0),
            },
        };
    }
    if at(0, b"QED\0") {
        return Detected::Qed;
    }
    if at(0, b"vhdxfile") {
        return Detected::Vhdx;
    }
    if le_u32(head, 0x40) == Some(0xBEDA_107F) {
        return Detected::Vdi;
    }
    if at(0, b"KDMV") {
        return Detected::VmdkSparse {
            version: le_u32(head, 4).unwrap_or(0),
            create_type: embedded_descriptor(head).and_then(create_type),
        };
    }
    if at(0, b"COWD") {
        return Detected::VmdkCowd;
    }
    // Huawei's probes compare six bytes of the eight-byte cookie.
    if at(0, b"z2strm") {
        return Detected::Zvhd2;
    }
    if at(0, b"stream") {
        return Detected::Zvhd;
    }
    if at(0, b"conectix") {
        return Detected::Vhd {
            disk_type: vhd_type(head),
        };
    }
    if is_vmdk_descriptor(head) {
        return Detected::VmdkDescriptor {
            create_type: create_type(head),
        };
    }
    if at(0x8001, b"CD001") {
        return Detected::Iso;
    }
    if let Some(footer) = tail.and_then(vhd_footer) {
        return Detected::Vhd {
            disk_type: vhd_type(footer),
        };
    }
    Detected::Unrecognised
}

/// The first ranged read for an object of `size` bytes (`None` for an empty object).
pub fn head_range(size: u64) -> Option<RangeInclusive<u64>> {
    (size > 0).then(|| 0..=size.min(HEAD_BYTES) - 1)
}

/// The second ranged read, for the VHD footer (`None` for an empty object).
pub fn tail_range(size: u64) -> Option<RangeInclusive<u64>> {
    (size > 0).then(|| size.saturating_sub(TAIL_BYTES)..=size - 1)
}

/// Whether the tail must be read too: only when nothing at the start matched (a fixed VHD is
/// recognised by its footer alone), which saves a request for every other format.
pub fn needs_tail(head: &[u8]) -> bool {
    detect(head, None) == Detected::Unrecognised
}

fn be_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let b = bytes.get(offset..offset + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn le_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let b = bytes.get(offset..offset + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn le_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    let b = bytes.get(offset..offset + 8)?;
    Some(u64::from_le_bytes([
        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
    ]))
}

fn vhd_type(footer: &[u8]) -> VhdType {
    match be_u32(footer, 60) {
        Some(2) => VhdType::Fixed,
        Some(3) => VhdType::Dynamic,
        Some(4) => VhdType::Differencing,
        Some(n) => VhdType::Other(n),
        None => VhdType::Other(0),
    }
}

/// The footer at EOF-512, or at EOF-511 as some old writers left it (unconfirmed).
fn vhd_footer(tail: &[u8]) -> Option<&[u8]> {
    [512, 511].into_iter().find_map(|len| {
        let start = tail.len().checked_sub(len)?;
        let footer = &tail[start..];
        footer.starts_with(b"conectix").then_some(footer)
    })
}

/// A KDMV header's embedded descriptor: `descriptorOffset` and `descriptorSize` (LE u64 at
/// 28 and 36, in sectors), cut to what `head` holds.
fn embedded_descriptor(head: &[u8]) -> Option<&[u8]> {
    let start = usize::try_from(le_u64(head, 28)?.checked_mul(512)?).ok()?;
    let size = usize::try_from(le_u64(head, 36)?.checked_mul(512)?).ok()?;
    let end = start.saturating_add(size).min(head.len());
    (start > 0 && start < end).then(|| &head[start..end])
}

fn is_vmdk_descriptor(head: &[u8]) -> bool {
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    head[start..].starts_with(b"# Disk DescriptorFile")
}

/// The value of `createType="..."` in a descriptor.
fn create_type(text: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"createType=\"";
    let start = text.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = text[start..].iter().take(64).position(|&b| b == b'"')?;
    let value = std::str::from_utf8(&text[start..start + len]).ok()?;
    (!value.is_empty()).then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(len: usize, parts: &[(usize, &[u8])]) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        for (offset, data) in parts {
            bytes[*offset..offset + data.len()].copy_from_slice(data);
        }
        bytes
    }

    #[test]
    fn read_ranges() {
        assert_eq!(head_range(0), None);
        assert_eq!(head_range(100), Some(0..=99));
        assert_eq!(head_range(1 << 40), Some(0..=36863));
        assert_eq!(tail_range(0), None);
        assert_eq!(tail_range(100), Some(0..=99));
        assert_eq!(tail_range(1 << 20), Some((1 << 20) - 512..=(1 << 20) - 1));
        assert!(needs_tail(&[0u8; 64]));
        assert!(!needs_tail(b"QFI\xfb\0\0\0\x03"));
    }

    #[test]
    fn qcow_versions() {
        let v1 = with(64, &[(0, b"QFI\xfb"), (4, &1u32.to_be_bytes())]);
        assert_eq!(detect(&v1, None), Detected::Qcow);
        let v3 = with(64, &[(0, b"QFI\xfb"), (4, &3u32.to_be_bytes())]);
        assert_eq!(detect(&v3, None), Detected::Qcow2 { version: 3 });
        assert_eq!(detect(&v3, None).to_string(), "qcow2 (version 3)");
        // Four bytes only: still the qcow family, version unknown.
        assert_eq!(detect(b"QFI\xfb", None), Detected::Qcow2 { version: 0 });
    }

    #[test]
    fn vhd_by_its_head_or_only_by_its_footer() {
        let footer =
            |disk_type: u32| with(512, &[(0, b"conectix"), (60, &disk_type.to_be_bytes())]);
        let dynamic = footer(3);
        assert_eq!(
            detect(&dynamic, Some(&dynamic)),
            Detected::Vhd {
                disk_type: VhdType::Dynamic
            }
        );
        // A fixed VHD starts with guest data (an MBR here): only the tail tells.
        let mbr = with(36864, &[(510, &[0x55, 0xAA])]);
        assert_eq!(detect(&mbr, None), Detected::Unrecognised);
        assert_eq!(
            detect(&mbr, Some(&footer(2))),
            Detected::Vhd {
                disk_type: VhdType::Fixed
            }
        );
        // An old 511-byte footer.
        let short = &footer(2)[..511];
        assert_eq!(detect(&mbr, Some(short)).format(), Some(ImageFormat::Vhd));
        // `conectix` elsewhere in the tail is not a footer.
        let elsewhere = with(512, &[(100, b"conectix")]);
        assert_eq!(detect(&mbr, Some(&elsewhere)), Detected::Unrecognised);
        assert_eq!(detect(&footer(4), None).to_string(), "vhd (differencing)");
    }

    #[test]
    fn iso_zvhd_zvhd2_and_raw() {
        let iso = with(
            36864,
            &[(0x8000, b"\x01CD001\x01"), (0x8800, b"\xffCD001\x01")],
        );
        assert_eq!(detect(&iso, None), Detected::Iso);
        // Huawei's headers: an eight-byte cookie, creator "tap" at 28.
        let zvhd = with(
            4096 + 16,
            &[(0, b"stream\0\0"), (28, b"tap\0"), (4096, b"hwstream bg")],
        );
        assert_eq!(detect(&zvhd, None), Detected::Zvhd);
        let zvhd2 = with(4096, &[(0, b"z2strm\0\0"), (28, b"tap\0")]);
        assert_eq!(detect(&zvhd2, None), Detected::Zvhd2);
        assert_eq!(detect(&zvhd2, None).format(), Some(ImageFormat::Zvhd2));
        assert_eq!(
            detect(&[0u8; 36864], Some(&[0u8; 512])),
            Detected::Unrecognised
        );
        assert_eq!(detect(&[], None), Detected::Unrecognised);
        assert_eq!(detect(&[], None).format(), None);
    }

    #[test]
    fn vmdk_kinds() {
        let descriptor = b"# Disk DescriptorFile\nversion=1\ncreateType=\"streamOptimized\"\n";
        let mut sparse = with(
            2048,
            &[
                (0, b"KDMV"),
                (4, &3u32.to_le_bytes()),
                (28, &1u64.to_le_bytes()),
                (36, &2u64.to_le_bytes()),
            ],
        );
        sparse[512..512 + descriptor.len()].copy_from_slice(descriptor);
        assert_eq!(
            detect(&sparse, None),
            Detected::VmdkSparse {
                version: 3,
                create_type: Some("streamOptimized".into())
            }
        );
        assert_eq!(detect(&sparse, None).to_string(), "vmdk (streamOptimized)");
        // A descriptor offset pointing past what was read: still sparse vmdk.
        let far = with(64, &[(0, b"KDMV"), (28, &u64::MAX.to_le_bytes())]);
        assert!(matches!(
            detect(&far, None),
            Detected::VmdkSparse {
                create_type: None,
                ..
            }
        ));
        let text = b"\n# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\n";
        let found = detect(text, Some(text));
        assert_eq!(
            found,
            Detected::VmdkDescriptor {
                create_type: Some("monolithicFlat".into())
            }
        );
        assert!(found.to_string().contains("without its data"));
        assert_eq!(
            detect(b"COWD\x01\0\0\0", None).format(),
            Some(ImageFormat::Vmdk)
        );
    }

    #[test]
    fn offset_zero_magics_win_over_the_footer() {
        // A qcow2 whose last sector happens to hold a VHD footer is still qcow2.
        let qcow2 = with(64, &[(0, b"QFI\xfb"), (4, &2u32.to_be_bytes())]);
        let footer = with(512, &[(0, b"conectix")]);
        assert_eq!(
            detect(&qcow2, Some(&footer)),
            Detected::Qcow2 { version: 2 }
        );
        let vdi = with(
            0x48,
            &[
                (0, b"<<< QEMU VM Virtual Disk Image >>>\n"),
                (0x40, &0xBEDA_107Fu32.to_le_bytes()),
            ],
        );
        assert_eq!(detect(&vdi, Some(&footer)), Detected::Vdi);
        assert_eq!(detect(b"QED\0\0\0\x01\0", None), Detected::Qed);
        assert_eq!(detect(b"vhdxfile", None), Detected::Vhdx);
    }
}
