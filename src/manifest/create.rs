//! The entries imsreg creates (those without `image_id`): the rules for their own values
//! (`name`, `os_version`, `min_disk`, `min_ram`, `tags`, also used for `defaults:`) and the
//! merge of `defaults:` into each entry.
//!
//! The limits are IMS's (ims-api.md, image attributes; create-shard-metrics.md A.1 and A.4):
//! a name of 1-128 characters of letters, digits, `-`, `.`, `_`, space and Chinese, without a
//! space at either end; at most 10 tags an image, one of which imsreg adds itself (its identity
//! tag, [`IDENTITY_TAG_KEY`]); tag keys of 1-36 and values of 0-43 characters of
//! `A-Z a-z 0-9 _ -` (values may also hold `.`); `min_disk` of 1-1024 GB.

use std::borrow::Cow;
use std::ops::RangeInclusive;

use super::model::{CreateEntry, Defaults, Position};
use super::raw::Raw;
use super::rules::{RuleResult, describe_value};
use super::text::shorten;
use crate::ids::IDENTITY_TAG_KEY;

/// The keys `defaults:` takes; a created entry may give each of them itself.
pub const DEFAULT_KEYS: [&str; 4] = ["os_version", "min_disk", "min_ram", "tags"];

pub const MAX_NAME_CHARS: usize = 128;
/// Tags an image may carry in all.
pub const MAX_TAGS: usize = 10;
/// Tags imsreg adds to every image it creates: the identity tag.
pub const OWN_TAGS: usize = 1;
/// Tags left for the user, after `defaults:` are merged in.
pub const MAX_USER_TAGS: usize = MAX_TAGS - OWN_TAGS;
pub const MAX_TAG_KEY_CHARS: usize = 36;
pub const MAX_TAG_VALUE_CHARS: usize = 43;
/// `min_disk`, in GB.
pub const MIN_DISK_GB: RangeInclusive<u32> = 1..=1024;

const NAME_RULE: &str = "names of images imsreg creates are 1-128 characters of letters a-z and \
                         A-Z, digits, `-`, `.`, `_`, spaces and Chinese characters \
                         (U+4E00-U+9FFF), without a space at either end";
const TAG_KEY_RULE: &str = "tag keys are 1-36 characters of A-Z, a-z, 0-9, `_` and `-`";
const TAG_VALUE_RULE: &str = "tag values are 0-43 characters of A-Z, a-z, 0-9, `_`, `-` and `.`";

fn is_cjk(c: char) -> bool {
    ('\u{4e00}'..='\u{9fff}').contains(&c)
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ' ') || is_cjk(c)
}

fn tag_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-')
}

fn tag_value_char(c: char) -> bool {
    tag_key_char(c) || c == '.'
}

/// A character for a message: itself in backticks, or its code point when it would not show.
fn show_char(c: char) -> String {
    if c == ' ' {
        "a space".to_string()
    } else if c.is_control() || c.is_whitespace() {
        format!("the character U+{:04X}", c as u32)
    } else {
        format!("`{c}`")
    }
}

/// `name` of a created entry: the image's name in IMS and its identity. A number is refused:
/// YAML may read it otherwise than written (`0x1F` as 31, `+5` as 5), and the identity must be
/// the text as written.
pub fn name(raw: &Raw) -> RuleResult<String> {
    let text = match raw {
        Raw::Str(s) if !s.is_empty() => s.as_ref(),
        Raw::Int(_) => {
            return Err(
                "is a number, which YAML may read otherwise than written (`0x1F` as 31): quote \
                 it as written, e.g. `name: \"2024\"` (the name is how imsreg finds the image \
                 again)"
                    .to_string(),
            );
        }
        Raw::Str(_) | Raw::Null => {
            return Err(format!(
                "is empty (give the name of the image to create; {NAME_RULE})"
            ));
        }
        other => {
            return Err(format!(
                "must be text, found {} (quote the name; {NAME_RULE})",
                other.describe()
            ));
        }
    };
    if let Some(c) = text.chars().find(|c| !name_char(*c)) {
        return Err(format!(
            "`{}` contains {} ({NAME_RULE}; replace it)",
            shorten(text),
            show_char(c)
        ));
    }
    let count = text.chars().count();
    if count > MAX_NAME_CHARS {
        return Err(format!(
            "is {count} characters long ({NAME_RULE}; shorten it)"
        ));
    }
    if text.starts_with(' ') || text.ends_with(' ') {
        return Err(format!(
            "`{}` starts or ends with a space (IMS refuses such names; remove the space)",
            shorten(text)
        ));
    }
    Ok(text.to_string())
}

/// `os_version`: sent as `__os_version`; `imsreg run` checks it against IMS's list.
pub fn os_version(raw: &Raw) -> RuleResult<String> {
    let fix = "write the OS version as IMS lists it, e.g. \"Ubuntu 22.04 server 64bit\" or \
               \"CentOS 7.9 64bit\"";
    match raw {
        Raw::Str(s) if !s.trim().is_empty() => match s.chars().find(|c| c.is_control()) {
            Some(c) => Err(format!(
                "contains the control character U+{:04X} ({fix})",
                c as u32
            )),
            None => Ok(s.to_string()),
        },
        Raw::Str(_) | Raw::Null => Err(format!(
            "is empty ({fix}, or remove the line: IMS then uses \"Other Linux(64 bit)\")"
        )),
        other => Err(format!(
            "must be text, found {} ({fix})",
            describe_value(other)
        )),
    }
}

/// `min_disk`: the smallest system disk for the image, in GB, within [`MIN_DISK_GB`].
pub fn min_disk(raw: &Raw) -> RuleResult<u32> {
    let (min, max) = (*MIN_DISK_GB.start(), *MIN_DISK_GB.end());
    let fix = "give the size of system disk the image needs, in GB, e.g. 40";
    match raw {
        Raw::Int(n) if (i128::from(min)..=i128::from(max)).contains(n) => {
            // In range, so it fits.
            Ok(u32::try_from(*n).unwrap_or(max))
        }
        other => Err(format!(
            "must be a whole number from {min} to {max}, found {} ({fix})",
            describe_value(other)
        )),
    }
}

/// `min_ram`: the memory the image needs, in MB, 0 or more.
pub fn min_ram(raw: &Raw) -> RuleResult<u64> {
    let fix = "give the memory the image needs in MB, a whole number of 0 or more, e.g. 2048";
    match raw {
        Raw::Int(n) if *n < 0 => Err(format!("must be 0 or more, found {n} ({fix})")),
        Raw::Int(n) => u64::try_from(*n).map_err(|_| format!("{n} is too large ({fix})")),
        other => Err(format!(
            "must be a whole number of MB, found {} ({fix})",
            describe_value(other)
        )),
    }
}

/// A key of `tags:`. imsreg's own key is reserved (in any case, so no look-alike confuses the
/// lookup).
pub fn tag_key(key: &str) -> RuleResult<()> {
    if key.eq_ignore_ascii_case(IDENTITY_TAG_KEY) {
        return Err(format!(
            "the tag key `{IDENTITY_TAG_KEY}` is reserved: imsreg tags every image it creates \
             with it, to find the image again (use another key)"
        ));
    }
    if key.is_empty() {
        return Err(format!("a tag key is empty ({TAG_KEY_RULE})"));
    }
    let shown = shorten(key);
    if let Some(c) = key.chars().find(|c| !tag_key_char(*c)) {
        return Err(format!(
            "the tag key `{shown}` contains {} ({TAG_KEY_RULE})",
            show_char(c)
        ));
    }
    let count = key.chars().count();
    if count > MAX_TAG_KEY_CHARS {
        return Err(format!(
            "the tag key `{shown}` is {count} characters long ({TAG_KEY_RULE})"
        ));
    }
    Ok(())
}

/// A value of `tags:`: text (numbers as their text, an empty value as ``).
pub fn tag_value(raw: &Raw) -> RuleResult<String> {
    let text: Cow<str> = match raw {
        Raw::Str(s) => Cow::Borrowed(s.as_ref()),
        Raw::Int(n) => Cow::Owned(n.to_string()),
        Raw::Null => Cow::Borrowed(""),
        Raw::Float(_) => {
            return Err(format!(
                "is a decimal number, which YAML may change (1.10 reads as 1.1): quote it, e.g. \
                 \"1.10\" ({TAG_VALUE_RULE})"
            ));
        }
        other => {
            return Err(format!(
                "must be text, found {} (quote it; {TAG_VALUE_RULE})",
                describe_value(other)
            ));
        }
    };
    if let Some(c) = text.chars().find(|c| !tag_value_char(*c)) {
        return Err(format!(
            "the tag value `{}` contains {} ({TAG_VALUE_RULE})",
            shorten(&text),
            show_char(c)
        ));
    }
    let count = text.chars().count();
    if count > MAX_TAG_VALUE_CHARS {
        return Err(format!(
            "the tag value `{}` is {count} characters long ({TAG_VALUE_RULE})",
            shorten(&text)
        ));
    }
    Ok(text.into_owned())
}

/// Whether an image's tags fit IMS's limit once imsreg adds its own: `own` tags written in the
/// entry (or in `defaults:` itself), `merged` after `defaults:` (written on `defaults_line`)
/// were merged in.
pub fn tag_count(own: usize, merged: usize, defaults_line: Option<usize>) -> RuleResult<()> {
    if merged <= MAX_USER_TAGS {
        return Ok(());
    }
    let excess = merged - MAX_USER_TAGS;
    let limit = format!(
        "and imsreg adds its own `{IDENTITY_TAG_KEY}` tag: IMS allows {MAX_TAGS} tags an image"
    );
    match defaults_line {
        Some(line) if merged > own => Err(format!(
            "{merged} tags with those of `defaults:` (line {line}), {limit} (remove {excess}, \
             here or in `defaults:`)"
        )),
        _ => Err(format!("{merged} tags, {limit} (remove {excess})")),
    }
}

/// Fills in what a created entry left out from `defaults:`: `os_version`, `min_disk`,
/// `min_ram`; tags merge, the entry's value winning per key. `os_version_at` is where
/// `defaults:` gives its `os_version`.
pub fn apply_defaults(
    entry: &mut CreateEntry,
    defaults: &Defaults,
    os_version_at: Option<Position>,
) {
    if entry.os_version.is_none() && defaults.os_version.is_some() {
        entry.os_version.clone_from(&defaults.os_version);
        entry.os_version_at = os_version_at;
    }
    entry.min_disk = entry.min_disk.or(defaults.min_disk);
    entry.min_ram = entry.min_ram.or(defaults.min_ram);
    for (key, value) in &defaults.tags {
        if !entry.tags.contains_key(key) {
            entry.tags.insert(key.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::manifest::model::{ImageFormat, ImageUrl};

    fn s(text: &str) -> Raw<'_> {
        Raw::Str(text.into())
    }

    #[test]
    fn names_follow_the_ims_rule() {
        for good in [
            "web-01",
            "Ubuntu 22.04_base.v2",
            "中文镜像 01",
            "a",
            &"x".repeat(128),
        ] {
            assert_eq!(name(&s(good)).as_deref(), Ok(good), "{good}");
        }
        assert!(
            name(&Raw::Int(2024))
                .unwrap_err()
                .contains("`name: \"2024\"`")
        );
        let err = name(&s("web/01")).unwrap_err();
        assert!(
            err.contains("contains `/`") && err.contains("1-128"),
            "{err}"
        );
        assert!(name(&s("диск")).unwrap_err().contains("`д`"));
        assert!(name(&s("a\tb")).unwrap_err().contains("U+0009"));
        assert!(
            name(&s(&"中".repeat(129)))
                .unwrap_err()
                .contains("129 characters")
        );
        assert!(name(&s(" web")).unwrap_err().contains("space"));
        assert!(name(&s("web ")).unwrap_err().contains("space"));
        assert!(name(&s("")).unwrap_err().starts_with("is empty"));
        assert!(name(&Raw::Null).unwrap_err().starts_with("is empty"));
        assert!(name(&Raw::Bool(true)).unwrap_err().contains("quote"));
    }

    #[test]
    fn disk_ram_and_os_version_values() {
        assert_eq!(min_disk(&Raw::Int(1)), Ok(1));
        assert_eq!(min_disk(&Raw::Int(1024)), Ok(1024));
        assert!(min_disk(&Raw::Int(0)).unwrap_err().contains("1 to 1024"));
        assert!(
            min_disk(&Raw::Int(1025))
                .unwrap_err()
                .contains("found 1025")
        );
        assert!(min_disk(&s("40GB")).unwrap_err().contains("`40GB`"));
        assert_eq!(min_ram(&Raw::Int(0)), Ok(0));
        assert_eq!(min_ram(&Raw::Int(2048)), Ok(2048));
        assert!(min_ram(&Raw::Int(-1)).unwrap_err().contains("0 or more"));
        assert!(min_ram(&Raw::Float(1.5)).is_err());
        assert_eq!(
            os_version(&s("CentOS 7.9 64bit")).as_deref(),
            Ok("CentOS 7.9 64bit")
        );
        assert!(os_version(&s(" ")).unwrap_err().contains("Other Linux"));
        assert!(os_version(&Raw::Int(7)).unwrap_err().contains("text"));
    }

    #[test]
    fn tag_keys_and_values() {
        assert!(tag_key("env").is_ok() && tag_key("cost_center-2").is_ok());
        assert!(tag_key(&"k".repeat(36)).is_ok());
        assert!(
            tag_key(&"k".repeat(37))
                .unwrap_err()
                .contains("37 characters")
        );
        assert!(tag_key("imsreg-key").unwrap_err().contains("reserved"));
        assert!(tag_key("IMSREG-KEY").unwrap_err().contains("reserved"));
        assert!(tag_key("team.name").unwrap_err().contains("`.`"));
        assert!(tag_key("").unwrap_err().contains("empty"));
        assert_eq!(tag_value(&s("v1.2-rc_3")).as_deref(), Ok("v1.2-rc_3"));
        assert_eq!(tag_value(&Raw::Null).as_deref(), Ok(""));
        assert_eq!(tag_value(&Raw::Int(7)).as_deref(), Ok("7"));
        assert!(tag_value(&s(&"v".repeat(43))).is_ok());
        assert!(
            tag_value(&s(&"v".repeat(44)))
                .unwrap_err()
                .contains("44 characters")
        );
        assert!(
            tag_value(&s("a b"))
                .unwrap_err()
                .contains("contains a space")
        );
        assert!(
            tag_value(&Raw::Float(1.1))
                .unwrap_err()
                .contains("\"1.10\"")
        );
        assert!(tag_value(&Raw::Bool(true)).unwrap_err().contains("quote"));
    }

    #[test]
    fn ten_tags_in_all_counting_imsregs_own() {
        assert!(tag_count(9, 9, None).is_ok());
        let err = tag_count(10, 10, None).unwrap_err();
        assert!(
            err.starts_with("10 tags,") && err.contains("remove 1)"),
            "{err}"
        );
        assert!(err.contains("imsreg-key"), "{err}");
        let err = tag_count(5, 11, Some(3)).unwrap_err();
        assert!(err.contains("`defaults:` (line 3)"), "{err}");
        assert!(err.contains("remove 2, here or in `defaults:`"), "{err}");
    }

    #[test]
    fn defaults_fill_gaps_and_tags_merge_with_the_entry_winning() {
        let tags = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let mut entry = CreateEntry {
            name: "web".into(),
            image_url: ImageUrl {
                bucket: "b01".into(),
                object: "web.qcow2".into(),
            },
            format: ImageFormat::Qcow2,
            os_version: None,
            min_disk: Some(80),
            min_ram: None,
            tags: tags(&[("env", "prod"), ("app", "web")]),
            line: 9,
            os_version_at: None,
        };
        let defaults = Defaults {
            os_version: Some("CentOS 7.9 64bit".into()),
            min_disk: Some(40),
            min_ram: Some(2048),
            tags: tags(&[("env", "test"), ("owner", "ops")]),
        };
        let at = Position {
            line: 3,
            column: 15,
        };
        apply_defaults(&mut entry, &defaults, Some(at));
        assert_eq!(entry.os_version.as_deref(), Some("CentOS 7.9 64bit"));
        assert_eq!(entry.os_version_at, Some(at));
        assert_eq!((entry.min_disk, entry.min_ram), (Some(80), Some(2048)));
        assert_eq!(
            entry.tags,
            tags(&[("app", "web"), ("env", "prod"), ("owner", "ops")])
        );

        // The entry's own os_version and its position stay.
        let own = Position {
            line: 10,
            column: 17,
        };
        entry.os_version = Some("Ubuntu 22.04 server 64bit".into());
        entry.os_version_at = Some(own);
        apply_defaults(&mut entry, &defaults, Some(at));
        assert_eq!(
            entry.os_version.as_deref(),
            Some("Ubuntu 22.04 server 64bit")
        );
        assert_eq!(entry.os_version_at, Some(own));
    }
}
