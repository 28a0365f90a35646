//! The validation rules for single values: image IDs, OBS locations, formats and settings.
//!
//! Each rule takes the value as read and returns the typed value or a message of the form
//! `<what is wrong> (<how to fix>)`. The OBS and IMS facts come from ims-api.md sections 1 and 9.

use std::ops::RangeInclusive;
use std::time::Duration;

use super::bounds;
use super::model::{ImageFormat, ImageUrl};
use super::raw::Raw;
use super::text::shorten;
use crate::ids::ImageId;

pub type RuleResult<T> = Result<T, String>;

/// Longest object key OBS accepts, in bytes of UTF-8.
pub const MAX_OBJECT_BYTES: usize = 1024;

fn accepted_formats() -> String {
    ImageFormat::ALL.map(|f| f.as_str()).join(", ")
}

/// `image_id`: a hyphenated UUID in any case (shown in lower case from here on).
pub fn image_id(raw: &Raw) -> RuleResult<ImageId> {
    let text = match raw {
        Raw::Str(s) => s.as_ref(),
        Raw::Null => {
            return Err("is empty (give the UUID of the image created in IMS, \
                        e.g. 4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86)"
                .to_string());
        }
        other => {
            return Err(format!(
                "must be a UUID, found {} (write the image's UUID, \
                 e.g. 4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86)",
                other.describe()
            ));
        }
    };
    if text.is_empty() {
        return image_id(&Raw::Null);
    }
    ImageId::parse(text).map_err(|_| {
        format!(
            "`{}` is not a UUID (IMS image IDs look like 4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86: \
             8-4-4-4-12 hexadecimal digits)",
            shorten(text)
        )
    })
}

/// `image_url`: `bucket:object` or `obs://bucket/object`, normalized to bucket and object.
pub fn image_url(raw: &Raw) -> RuleResult<ImageUrl> {
    let text = match raw {
        Raw::Str(s) if !s.is_empty() => s.as_ref(),
        Raw::Str(_) | Raw::Null => {
            return Err("is empty (write the OBS location as bucket:object or \
                        obs://bucket/object)"
                .to_string());
        }
        other => {
            return Err(format!(
                "must be text, found {} (write the OBS location as bucket:object or \
                 obs://bucket/object)",
                other.describe()
            ));
        }
    };
    let (bucket, object) = split_url(text)?;
    check_bucket(bucket)?;
    check_object(object)?;
    Ok(ImageUrl {
        bucket: bucket.to_string(),
        object: object.to_string(),
    })
}

fn split_url(text: &str) -> RuleResult<(&str, &str)> {
    if let Some(scheme_end) = text.find("://") {
        let scheme = &text[..scheme_end];
        let rest = &text[scheme_end + 3..];
        if scheme.eq_ignore_ascii_case("obs") {
            return match rest.split_once('/') {
                Some((bucket, object)) => Ok((bucket, object)),
                None => Err(format!(
                    "`{}` names a bucket but no object (write obs://bucket/path/to/file)",
                    shorten(text)
                )),
            };
        }
        if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http") {
            // Virtual-host form: https://bucket.obs.region.myhuaweicloud.com/key
            let (host, key) = rest.split_once('/').unwrap_or((rest, ""));
            let hint = match host.split_once(".obs.") {
                Some((bucket, _)) if !key.is_empty() => format!("write it as {bucket}:{key}"),
                _ => "write bucket:object or obs://bucket/object".to_string(),
            };
            return Err(format!("HTTP URLs are not accepted ({hint})"));
        }
        return Err(format!(
            "unknown URL scheme `{}://` (write bucket:object or obs://bucket/object)",
            shorten(scheme)
        ));
    }
    match text.split_once(':') {
        Some(pair) => Ok(pair),
        None => Err(format!(
            "`{}` has no bucket (write bucket:object or obs://bucket/object)",
            shorten(text)
        )),
    }
}

/// OBS bucket naming rules (ims-api.md section 9).
pub fn check_bucket(bucket: &str) -> RuleResult<()> {
    let fix = "bucket names are 3-63 characters of a-z, 0-9, `-` and `.`, starting and ending \
               with a letter or digit";
    let shown = shorten(bucket);
    if bucket.is_empty() {
        return Err(format!("the bucket name is empty ({fix})"));
    }
    if bucket.chars().any(char::is_whitespace) {
        return Err(format!(
            "bucket `{shown}` contains a space ({fix}; IMS rejects spaces with IMG.0175)"
        ));
    }
    if bucket.chars().any(|c| c.is_ascii_uppercase()) {
        let lower = bucket.to_ascii_lowercase();
        let hint = if check_bucket(&lower).is_ok() {
            format!("OBS bucket names are lower-case: `{lower}`")
        } else {
            fix.to_string()
        };
        return Err(format!("bucket `{shown}` has upper-case letters ({hint})"));
    }
    if let Some(bad) = bucket
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Err(format!("bucket `{shown}` contains `{bad}` ({fix})"));
    }
    let len = bucket.len();
    if !(3..=63).contains(&len) {
        return Err(format!("bucket `{shown}` is {len} characters long ({fix})"));
    }
    let first_last_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_last_ok(bucket.chars().next()) || !first_last_ok(bucket.chars().last()) {
        return Err(format!(
            "bucket `{shown}` must start and end with a letter or digit ({fix})"
        ));
    }
    for bad in ["..", ".-", "-."] {
        if bucket.contains(bad) {
            return Err(format!(
                "bucket `{shown}` contains `{bad}` (OBS bucket names cannot have two dots in a \
                 row or a dot next to a hyphen)"
            ));
        }
    }
    let parts: Vec<&str> = bucket.split('.').collect();
    if parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "bucket `{shown}` is shaped like an IP address (OBS bucket names cannot be IP \
             addresses; use the real bucket name)"
        ));
    }
    Ok(())
}

/// OBS object key rules plus the IMS rule on spaces (IMG.0175).
pub fn check_object(object: &str) -> RuleResult<()> {
    if object.is_empty() {
        return Err(
            "the object key is empty (give the path of the image file in the bucket, \
                    e.g. bucket:images/disk1.qcow2)"
                .to_string(),
        );
    }
    if object.len() > MAX_OBJECT_BYTES {
        return Err(format!(
            "the object key is {} bytes long (OBS keys are at most {MAX_OBJECT_BYTES} bytes of \
             UTF-8; shorten the path)",
            object.len()
        ));
    }
    if object.starts_with('/') {
        return Err(format!(
            "the object key `{}` starts with `/` (OBS keys have no leading slash: write \
             bucket:{})",
            shorten(object),
            shorten(object.trim_start_matches('/'))
        ));
    }
    if let Some(pos) = object.find(char::is_whitespace) {
        let ch = object[pos..].chars().next().unwrap_or(' ');
        let what = if ch == ' ' { "a space" } else { "white space" };
        return Err(format!(
            "the object key `{}` contains {what} (IMS rejects spaces in folder and file names \
             with IMG.0175; rename the object in OBS)",
            shorten(object)
        ));
    }
    if let Some(c) = object.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the object key contains the control character U+{:04X} (rename the object in OBS)",
            c as u32
        ));
    }
    Ok(())
}

/// `format:` when given explicitly.
pub fn format_value(raw: &Raw) -> RuleResult<ImageFormat> {
    let names = ImageFormat::ALL.map(|f| f.as_str());
    let (shown, suggestion) = match raw {
        Raw::Str(s) => {
            if let Some(format) = ImageFormat::from_name(s) {
                return Ok(format);
            }
            (format!("`{}`", shorten(s)), suggest(s, &names))
        }
        other => (other.describe().to_string(), None),
    };
    let fix = match suggestion {
        Some(name) => format!("did you mean `{name}`? accepted: {}", accepted_formats()),
        None => format!("use one of: {}", accepted_formats()),
    };
    Err(format!(
        "{shown} is not an image format IMS imports ({fix})"
    ))
}

/// The extension of the object's file name, if any.
fn extension(object: &str) -> Option<&str> {
    let file = object.rsplit('/').next().unwrap_or(object);
    match file.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => Some(ext),
        _ => None,
    }
}

/// The format of an entry: the explicit `format:` wins, else the extension. The second value is
/// a warning when both are given and disagree.
pub fn entry_format(
    object: &str,
    explicit: Option<ImageFormat>,
) -> RuleResult<(ImageFormat, Option<String>)> {
    let ext = extension(object);
    let from_ext = ext.and_then(ImageFormat::from_name);
    match (explicit, from_ext) {
        (Some(format), Some(ext_format)) if format != ext_format => Ok((
            format,
            Some(format!(
                "`format: {format}` overrides the `.{}` extension (check which one is right)",
                ext.unwrap_or_default()
            )),
        )),
        (Some(format), _) => Ok((format, None)),
        (None, Some(format)) => Ok((format, None)),
        (None, None) => match ext {
            Some(ext) => Err(format!(
                "the extension `.{}` is not an image format IMS imports (accepted: {}; if the \
                 file is in one of them, say which with `format:`)",
                shorten(ext),
                accepted_formats()
            )),
            None => Err(format!(
                "the object `{}` has no extension to tell its format (add `format:` with one \
                 of: {})",
                shorten(object),
                accepted_formats()
            )),
        },
    }
}

/// `name` of an entry with an `image_id`: an optional label; numbers are taken as their text.
/// (The name of an entry imsreg creates follows IMS's rules: [`super::create::name`].)
pub fn name(raw: &Raw) -> RuleResult<String> {
    match raw {
        Raw::Str(s) if !s.trim().is_empty() => Ok(s.to_string()),
        Raw::Int(n) => Ok(n.to_string()),
        Raw::Str(_) | Raw::Null => {
            Err("is empty (give a label or remove the `name:` line)".to_string())
        }
        other => Err(format!(
            "must be text, found {} (quote the label)",
            other.describe()
        )),
    }
}

/// `version`: only 1 exists.
pub fn version(raw: &Raw) -> RuleResult<()> {
    match raw {
        Raw::Int(1) => Ok(()),
        Raw::Int(n) => Err(format!(
            "manifest version {n} is not supported (this imsreg reads version 1; write \
             `version: 1` or remove the line)"
        )),
        other => Err(format!(
            "must be the number 1, found {} (write `version: 1` or remove the line)",
            match other {
                Raw::Str(s) => format!("`{}`", shorten(s)),
                other => other.describe().to_string(),
            }
        )),
    }
}

/// `concurrency`, `max_active_jobs`: a whole number inside `range` ([`super::bounds`]).
pub fn positive_count(raw: &Raw, range: &RangeInclusive<u32>) -> RuleResult<u32> {
    match raw {
        Raw::Int(n) => bounds::check_count(*n, range),
        other => Err(format!(
            "must be a whole number, found {} (use a whole number such as 8)",
            describe_value(other)
        )),
    }
}

/// `submit_rate`, `query_rate`: calls per second, inside [`bounds::RATE`].
pub fn rate(raw: &Raw) -> RuleResult<f64> {
    let value = match raw {
        Raw::Int(n) => *n as f64,
        Raw::Float(f) => *f,
        other => {
            return Err(format!(
                "must be a number of calls per second, found {} (e.g. 2 or 0.5)",
                describe_value(other)
            ));
        }
    };
    bounds::check_rate(value)
}

/// `poll_interval`, `job_timeout`: a humantime duration such as `10s` or `2h`, inside `range`
/// ([`super::bounds`]).
pub fn duration(raw: &Raw, range: &RangeInclusive<Duration>) -> RuleResult<Duration> {
    match raw {
        Raw::Str(s) => bounds::parse_duration(s, range),
        Raw::Int(n) => Err(format!(
            "`{n}` has no unit (write a duration with a unit, e.g. {n}s, 10m or 2h)"
        )),
        other => Err(format!(
            "must be a duration, found {} (e.g. 10s, 5m or 2h)",
            describe_value(other)
        )),
    }
}

/// `region`: a region name such as `ap-southeast-1`.
pub fn region(raw: &Raw) -> RuleResult<String> {
    match raw {
        Raw::Str(s) => region_name(s),
        other => Err(format!(
            "must be a region name, found {} (e.g. ap-southeast-1)",
            describe_value(other)
        )),
    }
}

/// A region name (the value of `region:`, or a key of `settings.regions`): lower-case letters,
/// digits and `-`, such as `ap-southeast-1`.
pub fn region_name(name: &str) -> RuleResult<String> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(name.to_string())
    } else {
        Err(format!(
            "`{}` is not a region name (regions look like ap-southeast-1: lower-case letters, \
             digits and `-`)",
            shorten(name)
        ))
    }
}

/// `project_id`: the IAM project ID. Returns the value and a warning when it does not look like
/// the usual 32 hexadecimal digits.
pub fn project_id(raw: &Raw) -> RuleResult<(String, Option<String>)> {
    if let Raw::Str(s) = raw
        && let Some(problem) = crate::ims::auth::malformation(s)
    {
        return Err(format!(
            "contains {problem}, which HTTP cannot carry (project IDs are printable ASCII \
             without spaces; copy it from the console's My Credentials page)"
        ));
    }
    match raw {
        Raw::Str(s) if !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c == '/') => {
            let usual = s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
            let warning = (!usual).then(|| {
                "does not look like a project ID (they are usually 32 hexadecimal digits; \
                 check the console's My Credentials page)"
                    .to_string()
            });
            Ok((s.to_string(), warning))
        }
        Raw::Str(s) => Err(format!(
            "`{}` is not a project ID (copy it from the console's My Credentials page)",
            shorten(s)
        )),
        other => Err(format!(
            "must be text, found {} (quote the project ID)",
            describe_value(other)
        )),
    }
}

/// `endpoint`: an http(s) URL with a host.
pub fn endpoint(raw: &Raw) -> RuleResult<String> {
    let Raw::Str(s) = raw else {
        return Err(format!(
            "must be a URL, found {} (e.g. https://ims.ap-southeast-1.myhuaweicloud.com)",
            describe_value(raw)
        ));
    };
    match url::Url::parse(s) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Ok(s.to_string())
        }
        _ => Err(format!(
            "`{}` is not an http(s) URL (e.g. https://ims.ap-southeast-1.myhuaweicloud.com, \
             or remove it to derive it from the region)",
            shorten(s)
        )),
    }
}

/// `obs_endpoint`: an http(s) URL with a host and nothing after it (OBS puts the bucket and
/// the object in the host and path).
pub fn obs_endpoint(raw: &Raw) -> RuleResult<String> {
    let example = "e.g. https://obs.ap-southeast-1.myhuaweicloud.com, or remove it to derive \
                   it from the region";
    let Raw::Str(s) = raw else {
        return Err(format!(
            "must be a URL, found {} ({example})",
            describe_value(raw)
        ));
    };
    match url::Url::parse(s) {
        Ok(url)
            if matches!(url.scheme(), "http" | "https")
                && url.host().is_some()
                && matches!(url.path(), "" | "/")
                && url.query().is_none() =>
        {
            Ok(s.to_string())
        }
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Err(format!(
                "`{}` has a path or query; give only the scheme and host ({example})",
                shorten(s)
            ))
        }
        _ => Err(format!(
            "`{}` is not an http(s) URL ({example})",
            shorten(s)
        )),
    }
}

/// `preflight`: `true` or `false`.
pub fn boolean(raw: &Raw) -> RuleResult<bool> {
    match raw {
        Raw::Bool(b) => Ok(*b),
        other => Err(format!(
            "must be true or false, found {} (unquoted)",
            describe_value(other)
        )),
    }
}

pub fn describe_value(raw: &Raw) -> String {
    match raw {
        Raw::Str(s) => format!("`{}`", shorten(s)),
        Raw::Int(n) => n.to_string(),
        Raw::Float(f) => f.to_string(),
        Raw::Bool(b) => b.to_string(),
        other => other.describe().to_string(),
    }
}

/// The closest known key, when it is close enough to be a typo.
pub fn suggest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    // Long keys are no typo of a short one (and the distance costs length x length).
    if key.len() > 64 {
        return None;
    }
    let key = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&key, k), *k))
        .filter(|(distance, k)| *distance <= (k.len() / 3).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Raw<'_> {
        Raw::Str(text.into())
    }

    #[test]
    fn image_ids_are_uuids_normalized_to_lower_case() {
        assert_eq!(
            image_id(&s("4CA46BF1-5C61-48FF-B4F3-0AD4E5E3BA86"))
                .unwrap()
                .to_string(),
            "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba86"
        );
        assert!(image_id(&s("4ca46bf15c6148ffb4f30ad4e5e3ba86")).is_err());
        assert!(image_id(&Raw::Int(12)).unwrap_err().contains("a number"));
        assert!(image_id(&Raw::Null).unwrap_err().contains("empty"));
        assert!(image_id(&s("")).unwrap_err().contains("empty"));
    }

    #[test]
    fn both_url_forms_normalize_to_bucket_and_object() {
        let a = image_url(&s("obs://my-bucket/exports/web-01.qcow2")).unwrap();
        assert_eq!(a.to_string(), "my-bucket:exports/web-01.qcow2");
        let b = image_url(&s("bucketname:Centos6.5-disk1.vmdk")).unwrap();
        assert_eq!(
            (b.bucket.as_str(), b.object.as_str()),
            ("bucketname", "Centos6.5-disk1.vmdk")
        );
        // Split at the first colon: the key may contain more.
        let c = image_url(&s("b01:a:b.raw")).unwrap();
        assert_eq!(c.object, "a:b.raw");
    }

    #[test]
    fn url_shape_errors() {
        assert!(
            image_url(&s("obs://bucket"))
                .unwrap_err()
                .contains("no object")
        );
        assert!(
            image_url(&s("just-a-file.qcow2"))
                .unwrap_err()
                .contains("no bucket")
        );
        let err = image_url(&s(
            "https://bkt.obs.ap-southeast-1.myhuaweicloud.com/a/b.vhd",
        ))
        .unwrap_err();
        assert!(err.contains("bkt:a/b.vhd"), "{err}");
        assert!(image_url(&s("s3://b/x")).unwrap_err().contains("scheme"));
    }

    #[test]
    fn bucket_rules() {
        for good in ["abc", "my-bucket.v2", "0bucket9", &"a".repeat(63)] {
            assert!(check_bucket(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("ab", "2 characters"),
            (&"a".repeat(64) as &str, "64 characters"),
            ("My-bucket", "upper-case"),
            ("-abc", "start and end"),
            ("abc.", "start and end"),
            ("a..b", "`..`"),
            ("a.-b", "`.-`"),
            ("a-.b", "`-.`"),
            ("192.168.1.1", "IP address"),
            ("a_b", "`_`"),
            ("", "empty"),
        ] {
            let err = check_bucket(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn object_rules() {
        assert!(check_object("folder/file.qcow2").is_ok());
        assert!(check_object("образы/диск.vmdk").is_ok());
        assert!(check_object("").unwrap_err().contains("empty"));
        assert!(
            check_object("/a.raw")
                .unwrap_err()
                .contains("leading slash")
        );
        assert!(
            check_object("my folder/a.raw")
                .unwrap_err()
                .contains("IMG.0175")
        );
        assert!(
            check_object(&"é".repeat(513))
                .unwrap_err()
                .contains("1026 bytes")
        );
        assert!(check_object(&"a".repeat(1024)).is_ok());
    }

    #[test]
    fn formats_from_extension_or_override() {
        assert_eq!(
            entry_format("a/B.QCOW2", None).unwrap().0,
            ImageFormat::Qcow2
        );
        assert_eq!(
            entry_format("raw/db-02.img", Some(ImageFormat::Raw)).unwrap(),
            (ImageFormat::Raw, None)
        );
        let (format, warning) = entry_format("x.vhd", Some(ImageFormat::Raw)).unwrap();
        assert_eq!(format, ImageFormat::Raw);
        assert!(warning.unwrap().contains(".vhd"));
        let err = entry_format("disk.img", None).unwrap_err();
        assert!(err.contains("format:") && err.contains("zvhd2"), "{err}");
        assert!(
            entry_format("dir.v2/disk", None)
                .unwrap_err()
                .contains("no extension")
        );
        assert!(entry_format(".qcow2", None).is_err());
        assert!(format_value(&s("VMDK")).is_ok());
        assert!(format_value(&s("vmdx")).unwrap_err().contains("vmdk"));
    }

    #[test]
    fn settings_values() {
        let counts = &bounds::CONCURRENCY;
        assert_eq!(positive_count(&Raw::Int(8), counts).unwrap(), 8);
        assert!(
            positive_count(&Raw::Int(0), counts)
                .unwrap_err()
                .contains("at least 1")
        );
        assert!(positive_count(&s("8"), counts).is_err());
        assert!(positive_count(&Raw::Int(1 << 40), counts).is_err());
        assert_eq!(rate(&Raw::Float(0.5)).unwrap(), 0.5);
        assert!(rate(&Raw::Int(-1)).unwrap_err().contains("more than 0"));
        assert!(rate(&Raw::Int(0)).is_err());
        assert!(rate(&Raw::Float(f64::NAN)).is_err());
        assert!(
            rate(&Raw::Float(1e-300))
                .unwrap_err()
                .contains("lowest rate")
        );
        let poll = &bounds::POLL_INTERVAL;
        assert_eq!(
            duration(&s("1m 30s"), poll).unwrap(),
            Duration::from_secs(90)
        );
        assert!(
            duration(&s("10 parsecs"), poll)
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(duration(&Raw::Int(10), poll).unwrap_err().contains("10s"));
        assert!(duration(&s("0s"), poll).is_err());
        assert!(duration(&s("500000000000y"), &bounds::JOB_TIMEOUT).is_err());
        assert!(version(&Raw::Int(1)).is_ok());
        assert!(version(&Raw::Int(2)).unwrap_err().contains("version 2"));
        assert!(version(&s("1")).is_err());
        assert!(endpoint(&s("http://127.0.0.1:8080")).is_ok());
        assert!(endpoint(&s("ims.example.com")).is_err());
        assert!(
            project_id(&s("0123456789abcdef0123456789abcdef"))
                .unwrap()
                .1
                .is_none()
        );
        assert!(project_id(&s("proj")).unwrap().1.is_some());
        assert!(
            project_id(&s("0123\u{1}"))
                .unwrap_err()
                .contains("control character")
        );
        assert!(
            project_id(&s("projé"))
                .unwrap_err()
                .contains("printable ASCII")
        );
        assert!(region(&s("ap-southeast-1")).is_ok());
        assert!(region(&s("AP South")).is_err());
        assert!(obs_endpoint(&s("https://obs.ap-southeast-1.myhuaweicloud.com")).is_ok());
        assert!(obs_endpoint(&s("http://127.0.0.1:9000/")).is_ok());
        assert!(
            obs_endpoint(&s("https://obs.example.com/images"))
                .unwrap_err()
                .contains("path")
        );
        assert!(obs_endpoint(&s("obs.example.com")).is_err());
        assert!(obs_endpoint(&Raw::Int(3)).is_err());
        assert_eq!(boolean(&Raw::Bool(false)), Ok(false));
        assert!(boolean(&s("no")).unwrap_err().contains("true or false"));
    }

    #[test]
    fn suggestions_for_typos() {
        let known = ["image_id", "image_url", "name", "format"];
        assert_eq!(suggest("imge_url", &known), Some("image_url"));
        assert_eq!(suggest("Image_ID", &known), Some("image_id"));
        assert_eq!(suggest("fromat", &known), Some("format"));
        assert_eq!(suggest("completely_else", &known), None);
    }
}
