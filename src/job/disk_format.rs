//! Which `disk_format` imsreg sends in `POST /v2/images` for each manifest format.
//!
//! IMS's metadata takes fewer formats than its registration reads: `zvhd2`, `vhd`, `raw`,
//! `qcow2`, `iso` (Huawei's page; OTC and the SDK enum differ slightly), while `PUT
//! /v1/cloudimages/{id}/upload` registers eleven file formats from OBS and takes no format of
//! its own, so IMS must detect the file's format itself. A format the metadata can name is
//! sent as itself; every other one is sent as `zvhd2`, the documented default for non-ISO
//! images (what IMS records when `disk_format` is absent). docs/create.md gives the sources.

use crate::manifest::ImageFormat;

/// The `disk_format` value of the create call for an image file of this format.
pub fn disk_format_for(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Zvhd2 => "zvhd2",
        ImageFormat::Vhd => "vhd",
        ImageFormat::Raw => "raw",
        ImageFormat::Qcow2 => "qcow2",
        ImageFormat::Iso => "iso",
        // Not accepted by every IMS region's metadata (zvhd is missing from Huawei's current
        // list): the default, which IMS would record anyway.
        ImageFormat::Zvhd
        | ImageFormat::Qcow
        | ImageFormat::Vhdx
        | ImageFormat::Qed
        | ImageFormat::Vdi
        | ImageFormat::Vmdk => "zvhd2",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value Huawei's `POST /v2/images` page documents.
    const METADATA_FORMATS: [&str; 5] = ["zvhd2", "vhd", "raw", "qcow2", "iso"];

    #[test]
    fn every_format_maps_to_a_value_the_metadata_takes() {
        let sent: Vec<(&str, &str)> = ImageFormat::ALL
            .into_iter()
            .map(|format| (format.as_str(), disk_format_for(format)))
            .collect();
        assert_eq!(
            sent,
            [
                ("zvhd", "zvhd2"),
                ("qcow2", "qcow2"),
                ("vhd", "vhd"),
                ("raw", "raw"),
                ("vhdx", "zvhd2"),
                ("qed", "zvhd2"),
                ("vdi", "zvhd2"),
                ("qcow", "zvhd2"),
                ("zvhd2", "zvhd2"),
                ("iso", "iso"),
                ("vmdk", "zvhd2"),
            ]
        );
        for (_, value) in sent {
            assert!(METADATA_FORMATS.contains(&value), "{value}");
        }
    }

    #[test]
    fn formats_the_metadata_names_are_sent_as_themselves() {
        for format in ImageFormat::ALL {
            if METADATA_FORMATS.contains(&format.as_str()) {
                assert_eq!(disk_format_for(format), format.as_str());
            }
        }
    }
}
