//! The bytes of the simulator's virtual objects: the first bytes of a real image of the object's
//! kind at the start, that image's last 512 bytes at the end (a fixed VHD's footer lives
//! there), and zeros in between. The heads are the ones `tests/data/formats/make_heads.py` cut
//! from qemu-img output (stored without trailing zeros); ISO 9660, ZVHD and ZVHD2 heads, which
//! no local tool makes, are built here byte by byte as their specifications lay them out.

use std::sync::OnceLock;

use super::obs_config::Content;

macro_rules! formats_file {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/formats/",
            $name
        ))
    };
}

/// The first bytes of an object of this kind (trailing zeros left out).
pub fn head(content: Content) -> &'static [u8] {
    match content {
        Content::Qcow => formats_file!("qcow.head"),
        Content::Qcow2 => formats_file!("qcow2.head"),
        Content::Qed => formats_file!("qed.head"),
        Content::Vdi => formats_file!("vdi.head"),
        Content::Vhd => formats_file!("vpc-dynamic.head"),
        Content::VhdFixed => formats_file!("vpc-fixed.head"),
        Content::Vhdx => formats_file!("vhdx.head"),
        Content::Vmdk => formats_file!("vmdk-monolithicSparse.head"),
        Content::VmdkStream => formats_file!("vmdk-streamOptimized.head"),
        Content::VmdkDescriptor => formats_file!("vmdk-monolithicFlat.head"),
        Content::Raw => formats_file!("raw.head"),
        Content::Iso => built(&ISO, iso_head),
        Content::Zvhd => built(&ZVHD, || zvhd_head(b"stream\0\0")),
        Content::Zvhd2 => built(&ZVHD2, || zvhd_head(b"z2strm\0\0")),
        Content::Garbage => GARBAGE,
    }
}

/// The last bytes of an object of this kind, when they matter (the VHD footer) or are known.
pub fn tail(content: Content) -> &'static [u8] {
    match content {
        Content::Qcow => formats_file!("qcow.tail"),
        Content::Qcow2 => formats_file!("qcow2.tail"),
        Content::Qed => formats_file!("qed.tail"),
        Content::Vdi => formats_file!("vdi.tail"),
        Content::Vhd => formats_file!("vpc-dynamic.tail"),
        Content::VhdFixed => formats_file!("vpc-fixed.tail"),
        Content::Vhdx => formats_file!("vhdx.tail"),
        Content::Vmdk => formats_file!("vmdk-monolithicSparse.tail"),
        Content::VmdkStream => formats_file!("vmdk-streamOptimized.tail"),
        Content::Raw => formats_file!("raw.tail"),
        // A descriptor is a whole small file; the others end in data.
        Content::VmdkDescriptor
        | Content::Iso
        | Content::Zvhd
        | Content::Zvhd2
        | Content::Garbage => &[],
    }
}

/// The bytes `first..=last` of an object of `size` bytes (the caller keeps `last < size`).
/// The tail wins where it overlaps the head (only in objects smaller than both).
pub fn read(content: Content, size: u64, first: u64, last: u64) -> Vec<u8> {
    let (head, tail) = (head(content), tail(content));
    let tail_start = size.saturating_sub(tail.len() as u64);
    (first..=last.min(size.saturating_sub(1)))
        .map(|offset| {
            if offset >= tail_start {
                let at = (offset - tail_start) as usize;
                // An object shorter than its tail shows the tail's last bytes.
                let skip = (tail.len() as u64).saturating_sub(size) as usize;
                tail.get(skip + at).copied().unwrap_or(0)
            } else {
                head.get(offset as usize).copied().unwrap_or(0)
            }
        })
        .collect()
}

const GARBAGE: &[u8] = b"This is not a disk image: it is a text file uploaded by mistake.\n";

static ISO: OnceLock<Vec<u8>> = OnceLock::new();
static ZVHD: OnceLock<Vec<u8>> = OnceLock::new();
static ZVHD2: OnceLock<Vec<u8>> = OnceLock::new();

fn built(cell: &'static OnceLock<Vec<u8>>, make: impl FnOnce() -> Vec<u8>) -> &'static [u8] {
    cell.get_or_init(make)
}

/// A zero system area, the primary volume descriptor at 0x8000 and the set terminator at
/// 0x8800 (ECMA-119 §8).
fn iso_head() -> Vec<u8> {
    let mut head = vec![0u8; 0x8807];
    head[0x8000] = 1;
    head[0x8001..0x8006].copy_from_slice(b"CD001");
    head[0x8006] = 1;
    head[0x8008..0x800D].copy_from_slice(b"LINUX");
    head[0x8800] = 0xFF;
    head[0x8801..0x8806].copy_from_slice(b"CD001");
    head[0x8806] = 1;
    head
}

/// Huawei's ZVHD/ZVHD2 header (`struct ZVHD_FOOTER` of ims-qemu-img, little-endian): the
/// cookie, creator `tap`, a 40 GiB disk, the checksum, then the first chunk's stream prefix.
fn zvhd_head(cookie: &[u8; 8]) -> Vec<u8> {
    let disk_size: u64 = 40 << 30;
    let mut head = vec![0u8; 4096 + 11];
    head[0..8].copy_from_slice(cookie);
    head[8..12].copy_from_slice(&2u32.to_le_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ImageFormat;
    use crate::preflight::format::{self, HEAD_BYTES, TAIL_BYTES};

    /// What the preflight would see: the first 36 KiB and the last 512 bytes.
    fn probe(content: Content, size: u64) -> format::Detected {
        let head = read(content, size, 0, HEAD_BYTES.min(size) - 1);
        let tail = read(content, size, size.saturating_sub(TAIL_BYTES), size - 1);
        format::detect(&head, Some(&tail))
    }

    #[test]
    fn every_kind_is_detected_as_itself_at_any_size() {
        let expect = [
            (Content::Qcow, Some(ImageFormat::Qcow)),
            (Content::Qcow2, Some(ImageFormat::Qcow2)),
            (Content::Qed, Some(ImageFormat::Qed)),
            (Content::Vdi, Some(ImageFormat::Vdi)),
            (Content::Vhd, Some(ImageFormat::Vhd)),
            (Content::VhdFixed, Some(ImageFormat::Vhd)),
            (Content::Vhdx, Some(ImageFormat::Vhdx)),
            (Content::Vmdk, Some(ImageFormat::Vmdk)),
            (Content::VmdkStream, Some(ImageFormat::Vmdk)),
            (Content::Iso, Some(ImageFormat::Iso)),
            (Content::Zvhd, Some(ImageFormat::Zvhd)),
            (Content::Zvhd2, Some(ImageFormat::Zvhd2)),
            (Content::Raw, None),
            (Content::Garbage, None),
        ];
        for (content, format) in expect {
            for size in [1 << 20, 10 << 30, 100 << 30] {
                assert_eq!(probe(content, size).format(), format, "{content:?} {size}");
            }
        }
        assert!(matches!(
            probe(Content::VmdkStream, 1 << 30),
            format::Detected::VmdkSparse { create_type: Some(t), .. } if t == "streamOptimized"
        ));
        assert!(matches!(
            probe(Content::VhdFixed, 1 << 30),
            format::Detected::Vhd {
                disk_type: format::VhdType::Fixed
            }
        ));
        let descriptor = head(Content::VmdkDescriptor).len() as u64;
        assert!(matches!(
            probe(Content::VmdkDescriptor, descriptor),
            format::Detected::VmdkDescriptor { .. }
        ));
    }

    #[test]
    fn reads_are_zero_between_head_and_tail_and_clipped_at_the_end() {
        let size = 1 << 30;
        assert!(
            read(Content::Qcow2, size, 1 << 20, (1 << 20) + 9)
                .iter()
                .all(|&b| b == 0)
        );
        assert_eq!(read(Content::Qcow2, size, 0, 3), b"QFI\xfb");
        assert_eq!(read(Content::Qcow2, 100, 90, 200).len(), 10);
        assert_eq!(
            read(Content::VhdFixed, size, size - 512, size - 505),
            b"conectix"
        );
    }
}
