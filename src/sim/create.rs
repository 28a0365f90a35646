//! The body of `POST /v2/images`, checked as IMS checks it: the image name, `disk_format`,
//! `min_disk`, `min_ram`, tags (at most 10, `key=value`, IMS's lengths and characters),
//! `visibility`. A valid body becomes a [`NewImage`] for the store; anything else the IMS
//! error answer (see `docs/simulator.md` for the codes, some of which are our choice).

use serde_json::Value;

use super::state::{ImsFault, NewImage};

/// `disk_format` values the metadata accepts (Huawei's page, plus `zvhd` from the SDK enum).
pub const DISK_FORMATS: [&str; 6] = ["zvhd2", "vhd", "zvhd", "raw", "qcow2", "iso"];

/// Tags an image may carry.
pub const MAX_TAGS: usize = 10;
pub const MAX_TAG_KEY: usize = 36;
pub const MAX_TAG_VALUE: usize = 43;
pub const MAX_NAME: usize = 128;
pub const MIN_DISK_RANGE: std::ops::RangeInclusive<i64> = 1..=1024;

/// Parses and checks a create body (an empty body is `{}`: every field is optional).
pub fn parse_new_image(body: &[u8]) -> Result<NewImage, ImsFault> {
    let parsed: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(body)
            .map_err(|e| invalid(format!("The request message format is invalid: {e}.")))?
    };
    let Value::Object(fields) = parsed else {
        return Err(invalid(
            "The request message format is invalid: the body must be a JSON object.",
        ));
    };
    let text = |key: &str| -> Result<Option<String>, ImsFault> {
        match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(format!(
                "The request message format is invalid: {key} must be a string."
            ))),
        }
    };
    let integer = |key: &str| -> Result<Option<i64>, ImsFault> {
        match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value.as_i64().map(Some).ok_or_else(|| {
                invalid(format!(
                    "The request message format is invalid: {key} must be an integer."
                ))
            }),
        }
    };

    let name = text("name")?;
    if let Some(name) = &name {
        check_name(name)?;
    }
    let disk_format = text("disk_format")?;
    if let Some(format) = &disk_format
        && !DISK_FORMATS.contains(&format.as_str())
    {
        return Err(invalid(format!(
            "The request message format is invalid: disk_format {format:?} is not one of {}.",
            DISK_FORMATS.join(", ")
        )));
    }
    let min_disk = integer("min_disk")?;
    if let Some(min_disk) = min_disk
        && !MIN_DISK_RANGE.contains(&min_disk)
    {
        return Err(invalid(format!(
            "The request message format is invalid: min_disk must be from 1 to 1024 (GB), got {min_disk}."
        )));
    }
    let min_ram = integer("min_ram")?;
    if min_ram.is_some_and(|ram| ram < 0) {
        return Err(invalid(
            "The request message format is invalid: min_ram must not be negative.",
        ));
    }
    if let Some(visibility) = text("visibility")?
        && visibility != "private"
    {
        return Err(invalid(format!(
            "The request message format is invalid: visibility can only be private when creating image metadata, got {visibility:?}."
        )));
    }
    text("container_format")?;
    let protected = match fields.get("protected") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => {
            return Err(invalid(
                "The request message format is invalid: protected must be a boolean.",
            ));
        }
    };
    let tags = match fields.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut texts = Vec::with_capacity(items.len());
            for item in items {
                let Value::String(tag) = item else {
                    return Err(invalid(
                        "The request message format is invalid: tags must be strings.",
                    ));
                };
                texts.push(tag.clone());
            }
            check_tags(texts)?
        }
        Some(_) => {
            return Err(invalid(
                "The request message format is invalid: tags must be an array of strings.",
            ));
        }
    };
    Ok(NewImage {
        name,
        disk_format,
        min_disk,
        min_ram,
        tags,
        os_version: text("__os_version")?,
        protected,
    })
}

/// 1-128 characters of letters, digits, `-`, `.`, `_`, space or CJK, no space at either end.
fn check_name(name: &str) -> Result<(), ImsFault> {
    if name.chars().count() > MAX_NAME {
        return Err(ImsFault {
            status: 400,
            code: "IMG.0002",
            message: "The image name is longer than 128 characters.".to_string(),
        });
    }
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ' ') || is_cjk(c);
    if name.is_empty() || name.starts_with(' ') || name.ends_with(' ') || !name.chars().all(allowed)
    {
        return Err(ImsFault {
            status: 400,
            code: "IMG.0003",
            message: format!(
                "The image name format is invalid: {name:?} (1 to 128 letters, digits, '-', '.', '_', spaces or Chinese characters, not starting or ending with a space)."
            ),
        });
    }
    Ok(())
}

fn is_cjk(c: char) -> bool {
    ('\u{4E00}'..='\u{9FFF}').contains(&c)
}

/// Checks each tag and the count; a key given twice keeps its last value (as adding a tag
/// whose key exists overwrites it).
fn check_tags(tags: Vec<String>) -> Result<Vec<String>, ImsFault> {
    let mut kept: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let (key, value) = tag.split_once('=').unwrap_or((tag.as_str(), ""));
        let key_ok = (1..=MAX_TAG_KEY).contains(&key.chars().count())
            && key.chars().all(|c| tag_char(c, false));
        let value_ok =
            value.chars().count() <= MAX_TAG_VALUE && value.chars().all(|c| tag_char(c, true));
        if !key_ok || !value_ok {
            return Err(ImsFault {
                status: 400,
                code: "IMG.0115",
                message: format!(
                    "The tag {tag:?} is invalid: the key has 1 to 36 and the value at most 43 letters, digits, '_' or '-' (the value also '.')."
                ),
            });
        }
        kept.retain(|old| old.split_once('=').map_or(old.as_str(), |(k, _)| k) != key);
        kept.push(tag);
    }
    if kept.len() > MAX_TAGS {
        return Err(ImsFault {
            status: 400,
            code: "IMG.0116",
            message: format!(
                "The number of tags exceeds the quota: {} tags, at most {MAX_TAGS}.",
                kept.len()
            ),
        });
    }
    Ok(kept)
}

fn tag_char(c: char, in_value: bool) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || is_cjk(c) || (in_value && c == '.')
}

fn invalid(message: impl Into<String>) -> ImsFault {
    ImsFault {
        status: 400,
        code: "IMG.0001",
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<NewImage, ImsFault> {
        parse_new_image(body.as_bytes())
    }

    fn code(body: &str) -> &'static str {
        parse(body).unwrap_err().code
    }

    #[test]
    fn a_full_body_is_read() {
        let image = parse(
            r#"{"name":"web 01","__os_version":"CentOS 7.9 64bit","disk_format":"qcow2",
                "container_format":"bare","min_disk":40,"min_ram":1024,"visibility":"private",
                "protected":false,"tags":["imsreg-key=abc","team=web","release=1.2"]}"#,
        )
        .unwrap();
        assert_eq!(image.name.as_deref(), Some("web 01"));
        assert_eq!(image.os_version.as_deref(), Some("CentOS 7.9 64bit"));
        assert_eq!(image.disk_format.as_deref(), Some("qcow2"));
        assert_eq!((image.min_disk, image.min_ram), (Some(40), Some(1024)));
        assert_eq!(image.tags, ["imsreg-key=abc", "team=web", "release=1.2"]);
        assert_eq!(parse("").unwrap(), NewImage::default());
    }

    #[test]
    fn names_follow_the_image_attribute_rules() {
        assert_eq!(
            code(&format!(r#"{{"name":"{}"}}"#, "a".repeat(129))),
            "IMG.0002"
        );
        assert!(parse(&format!(r#"{{"name":"{}"}}"#, "a".repeat(128))).is_ok());
        for bad in ["", " lead", "trail ", "a/b", "a*b"] {
            assert_eq!(
                code(&format!(r#"{{"name":"{bad}"}}"#)),
                "IMG.0003",
                "{bad:?}"
            );
        }
        assert!(parse(r#"{"name":"镜像-1.0_x y"}"#).is_ok());
    }

    #[test]
    fn formats_sizes_and_visibility_are_checked() {
        for format in DISK_FORMATS {
            assert!(parse(&format!(r#"{{"disk_format":"{format}"}}"#)).is_ok());
        }
        assert_eq!(code(r#"{"disk_format":"vmdk"}"#), "IMG.0001");
        assert_eq!(code(r#"{"min_disk":0}"#), "IMG.0001");
        assert_eq!(code(r#"{"min_disk":1025}"#), "IMG.0001");
        assert_eq!(code(r#"{"min_disk":"40"}"#), "IMG.0001");
        assert_eq!(code(r#"{"min_ram":-1}"#), "IMG.0001");
        assert_eq!(code(r#"{"visibility":"public"}"#), "IMG.0001");
        assert_eq!(code(r#"[1]"#), "IMG.0001");
        assert_eq!(code("{nope"), "IMG.0001");
        assert!(parse(r#"{"min_disk":1,"min_ram":0}"#).is_ok());
    }

    #[test]
    fn tags_follow_the_limits() {
        let tags = |list: &[String]| format!(r#"{{"tags":{}}}"#, serde_json::json!(list));
        let ten: Vec<String> = (0..10).map(|i| format!("k{i}=v")).collect();
        assert_eq!(parse(&tags(&ten)).unwrap().tags.len(), 10);
        let eleven: Vec<String> = (0..11).map(|i| format!("k{i}=v")).collect();
        assert_eq!(code(&tags(&eleven)), "IMG.0116");
        let longest = format!("{}={}", "k".repeat(36), "v".repeat(43));
        assert!(parse(&tags(&[longest])).is_ok());
        for bad in [
            format!("{}=v", "k".repeat(37)),
            format!("k={}", "v".repeat(44)),
            "=v".to_string(),
            "k.x=v".to_string(),
            "k=v/w".to_string(),
            "k=a=b".to_string(),
        ] {
            assert_eq!(code(&tags(std::slice::from_ref(&bad))), "IMG.0115", "{bad}");
        }
        assert_eq!(code(r#"{"tags":[1]}"#), "IMG.0001");
        let twice = ["k=1".to_string(), "k=2".to_string(), "bare".to_string()];
        assert_eq!(parse(&tags(&twice)).unwrap().tags, ["k=2", "bare"]);
    }
}
