//! Typed request and response bodies of the IMS calls imsreg makes.
//!
//! Field names are exactly the API's (see `shared/ims-api.md`). Responses are read leniently:
//! unknown fields are ignored, missing optional ones are `None`, and status strings the API may
//! add later land in an `Other` variant instead of failing the whole response.

use chrono::{DateTime, Utc};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// Body of `PUT /v1/cloudimages/{image_id}/upload`.
#[derive(Debug, Clone, Serialize)]
pub struct RegisterImageRequest<'a> {
    pub image_url: &'a str,
}

/// Answer of `PUT /v1/cloudimages/{image_id}/upload`.
#[derive(Debug, Clone, Deserialize)]
pub struct RegisterImageResponse {
    pub job_id: String,
}

/// Status of an asynchronous IMS job. Only `Success` and `Fail` are terminal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobStatus {
    Init,
    Running,
    Success,
    Fail,
    /// A value this version does not know; treated as "still running".
    Other(String),
}

impl JobStatus {
    pub fn parse(raw: &str) -> Self {
        let known = [
            ("INIT", Self::Init),
            ("RUNNING", Self::Running),
            ("SUCCESS", Self::Success),
            ("FAIL", Self::Fail),
            ("FAILED", Self::Fail),
        ];
        parse_known(raw, known, Self::Other)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Init => "INIT",
            Self::Running => "RUNNING",
            Self::Success => "SUCCESS",
            Self::Fail => "FAIL",
            Self::Other(raw) => raw,
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Success | Self::Fail)
    }
}

impl<'de> Deserialize<'de> for JobStatus {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_str(ParsedStr(JobStatus::parse))
    }
}

impl Serialize for JobStatus {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(self.as_str())
    }
}

/// Answer of `GET /v1/{project_id}/jobs/{job_id}` and `GET /v1/cloudimages/job/{job_id}`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Job {
    #[serde(default)]
    pub status: Option<JobStatus>,
    #[serde(default)]
    pub job_id: Option<String>,
    #[serde(default)]
    pub job_type: Option<String>,
    /// UTC, as the API sent it; see [`parse_api_time`].
    #[serde(default)]
    pub begin_time: Option<String>,
    #[serde(default)]
    pub end_time: Option<String>,
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub fail_reason: Option<String>,
    #[serde(default)]
    pub entities: Option<JobEntities>,
}

/// `entities` of a job (SDK model `JobEntities`); register jobs carry only `image_id`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct JobEntities {
    #[serde(default)]
    pub image_id: Option<String>,
    #[serde(default)]
    pub image_name: Option<String>,
    #[serde(default)]
    pub current_task: Option<String>,
    #[serde(default)]
    pub process_percent: Option<f64>,
    #[serde(default, rename = "subJobId")]
    pub sub_job_id: Option<String>,
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// Status of an image. `Active` is the success test of a registration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImageStatus {
    Queued,
    Saving,
    Active,
    Killed,
    Deleted,
    Other(String),
}

impl ImageStatus {
    pub fn parse(raw: &str) -> Self {
        let known = [
            ("queued", Self::Queued),
            ("saving", Self::Saving),
            ("active", Self::Active),
            ("killed", Self::Killed),
            ("deleted", Self::Deleted),
        ];
        parse_known(raw, known, Self::Other)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Queued => "queued",
            Self::Saving => "saving",
            Self::Active => "active",
            Self::Killed => "killed",
            Self::Deleted => "deleted",
            Self::Other(raw) => raw,
        }
    }
}

impl<'de> Deserialize<'de> for ImageStatus {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_str(ParsedStr(ImageStatus::parse))
    }
}

/// The value whose name matches `raw` (trimmed, any case), else `other(raw)`: statuses the
/// API may add later are kept, not refused.
fn parse_known<T, const N: usize>(
    raw: &str,
    known: [(&str, T); N],
    other: impl FnOnce(String) -> T,
) -> T {
    let trimmed = raw.trim();
    known
        .into_iter()
        .find(|(name, _)| trimmed.eq_ignore_ascii_case(name))
        .map_or_else(|| other(raw.to_string()), |(_, value)| value)
}

/// A string field turned into `T` straight from the decoder's buffer (statuses come by the
/// thousand in list pages; no `String` is allocated for the common values).
struct ParsedStr<F>(F);

impl<T, F: FnOnce(&str) -> T> Visitor<'_> for ParsedStr<F> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, raw: &str) -> Result<T, E> {
        Ok((self.0)(raw))
    }
}

impl Serialize for ImageStatus {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(self.as_str())
    }
}

/// The fields of an image (`ImageInfo`) imsreg reads; the rest is ignored.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ImageInfo {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub status: ImageStatus,
    #[serde(default)]
    pub disk_format: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default, rename = "__imagetype")]
    pub imagetype: Option<String>,
    #[serde(default, rename = "__image_size")]
    pub image_size: Option<String>,
    #[serde(default)]
    pub min_disk: Option<i64>,
    /// MB; read leniently (a number or a numeric string).
    #[serde(default, deserialize_with = "lenient_int")]
    pub min_ram: Option<i64>,
    /// `__os_version`, e.g. `CentOS 7.9 64bit`.
    #[serde(default, rename = "__os_version")]
    pub os_version: Option<String>,
    /// `key=value` strings as `POST /v2/images` takes them (`null` reads as none).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub active_at: Option<String>,
}

impl ImageInfo {
    /// The value of the image's `key=value` tag with this key (`""` for a tag without a
    /// value); `None` when it has no such tag.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find_map(|tag| match tag.split_once('=') {
            Some((k, value)) if k == key => Some(value),
            None if tag == key => Some(""),
            _ => None,
        })
    }
}

fn null_as_empty<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(de)?.unwrap_or_default())
}

/// An integer sent as a number or as a numeric string (IMS sends several numbers as strings);
/// `null` or an unreadable value is `None`, never a failure of the whole answer.
fn lenient_int<'de, D: Deserializer<'de>>(de: D) -> Result<Option<i64>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(de)?;
    Ok(match value {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// One OS version a region accepts as `__os_version`, flattened from the platform list of
/// `GET /v1/cloudimages/os_version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OsVersion {
    pub platform: String,
    pub os_version: String,
    pub os_version_key: Option<String>,
    pub os_bit: Option<i64>,
    pub os_type: Option<String>,
}

/// One platform of the `GET /v1/cloudimages/os_version` answer (a bare JSON array of these).
#[derive(Debug, Clone, Deserialize)]
pub struct OsPlatform {
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty_versions")]
    pub version_list: Vec<OsVersionEntry>,
}

/// One entry of a platform's `version_list`.
#[derive(Debug, Clone, Deserialize)]
pub struct OsVersionEntry {
    #[serde(default)]
    pub platform: Option<String>,
    pub os_version: String,
    #[serde(default)]
    pub os_version_key: Option<String>,
    #[serde(default, deserialize_with = "lenient_int")]
    pub os_bit: Option<i64>,
    #[serde(default)]
    pub os_type: Option<String>,
}

fn null_as_empty_versions<'de, D: Deserializer<'de>>(
    de: D,
) -> Result<Vec<OsVersionEntry>, D::Error> {
    Ok(Option::<Vec<OsVersionEntry>>::deserialize(de)?.unwrap_or_default())
}

/// The platform list flattened: one [`OsVersion`] per version, in the answer's order. An
/// entry's own `platform` wins over its group's (they agree in the documented example).
pub fn flatten_os_versions(platforms: Vec<OsPlatform>) -> Vec<OsVersion> {
    platforms
        .into_iter()
        .flat_map(|group| {
            let group_platform = group.platform.unwrap_or_default();
            group.version_list.into_iter().map(move |entry| OsVersion {
                platform: entry
                    .platform
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| group_platform.clone()),
                os_version: entry.os_version,
                os_version_key: entry.os_version_key,
                os_bit: entry.os_bit,
                os_type: entry.os_type,
            })
        })
        .collect()
}

/// The account's private image quota: images that exist (`used`) and may exist (`quota`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ImageQuota {
    pub used: u64,
    pub quota: u64,
}

impl ImageQuota {
    /// How many more images may be created (0 when the account is at or over its quota).
    pub fn remaining(&self) -> u64 {
        self.quota.saturating_sub(self.used)
    }
}

/// Answer of `GET /v1/cloudimages/quota`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct QuotaResponse {
    #[serde(default)]
    pub quotas: QuotaSet,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct QuotaSet {
    #[serde(default)]
    pub resources: Vec<QuotaResource>,
}

/// One resource of the quota answer (`type` is `image`, `image_shared` or `image_member`).
#[derive(Debug, Clone, Deserialize)]
pub struct QuotaResource {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "lenient_int")]
    pub used: Option<i64>,
    #[serde(default, deserialize_with = "lenient_int")]
    pub quota: Option<i64>,
}

impl QuotaResponse {
    /// The `image` resource; `None` when the answer has none with both numbers.
    pub fn image(&self) -> Option<ImageQuota> {
        let resource = self.quotas.resources.iter().find(|r| r.kind == "image")?;
        Some(ImageQuota {
            used: u64::try_from(resource.used?).unwrap_or(0),
            quota: u64::try_from(resource.quota?).unwrap_or(0),
        })
    }
}

/// Answer of `GET /v2/cloudimages`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ListImagesResponse {
    #[serde(default)]
    pub images: Vec<ImageInfo>,
    #[serde(default)]
    pub page_info: Option<PageInfo>,
}

/// One image of a list page as the run engine reads it (bulk status checks and sweeps): ID,
/// status and last update. Every other field of `ImageInfo` is skipped by the decoder without
/// being stored, which makes a page of 1,000 images about half as costly to read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ImageStatusEntry {
    pub id: String,
    pub status: ImageStatus,
    /// `None` when absent, `null`, or in no format [`parse_api_time`] reads.
    #[serde(default, deserialize_with = "lenient_api_time")]
    pub updated_at: Option<DateTime<Utc>>,
}

/// `GET /v2/cloudimages` read as [`ImageStatusEntry`]s.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ImageStatusPage {
    #[serde(default)]
    pub images: Vec<ImageStatusEntry>,
    #[serde(default)]
    pub page_info: Option<PageInfo>,
}

fn lenient_api_time<'de, D: Deserializer<'de>>(de: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    struct Time;
    impl<'de> Visitor<'de> for Time {
        type Value = Option<DateTime<Utc>>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a time or null")
        }

        fn visit_str<E: de::Error>(self, raw: &str) -> Result<Self::Value, E> {
            Ok(parse_api_time(raw))
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
            de.deserialize_str(self)
        }
    }
    de.deserialize_option(Time)
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct PageInfo {
    #[serde(default)]
    pub next_marker: Option<String>,
}

/// Query of `GET /v2/cloudimages`. `None` fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListImagesQuery {
    /// A single image ID.
    pub id: Option<String>,
    pub status: Option<ImageStatus>,
    /// `__imagetype`; imsreg always asks for `private`.
    pub imagetype: Option<String>,
    /// `updated_at`, e.g. `gt:2018-10-28T10:00:00Z`, for incremental polling.
    pub updated_at: Option<String>,
    pub marker: Option<String>,
    pub limit: Option<u32>,
    /// `tag`: `key=value` (IMS matches a tag exactly; legacy `key.value` tags too).
    pub tag: Option<String>,
}

impl ListImagesQuery {
    /// Raw `(key, value)` pairs, ready for signing (the signer sorts and encodes them).
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        let mut push = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                pairs.push((key.to_string(), value));
            }
        };
        push("id", self.id.clone());
        push(
            "status",
            self.status.as_ref().map(|s| s.as_str().to_string()),
        );
        push("__imagetype", self.imagetype.clone());
        push("updated_at", self.updated_at.clone());
        push("marker", self.marker.clone());
        push("limit", self.limit.map(|l| l.to_string()));
        push("tag", self.tag.clone());
        pairs
    }
}

/// Body of `POST /v2/images` (every field optional; `None` is not sent).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateImageMetadataRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "__os_version", skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_disk: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_ram: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visibility: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protected: Option<bool>,
}

/// Parses a UTC time as IMS writes it, leniently: RFC 3339 with or without fraction or zone,
/// or `yyyy-MM-dd hh:mm:ss`. `None` if it is none of those.
pub fn parse_api_time(raw: &str) -> Option<DateTime<Utc>> {
    use chrono::NaiveDateTime;
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    let naive = raw.trim_end_matches('Z');
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive, format) {
            return Some(t.and_utc());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_parses_with_unknown_fields_and_nulls() {
        let job: Job = serde_json::from_str(
            r#"{"status":"SUCCESS","job_id":"abc","job_type":"imsNativeImportImageJob",
                "begin_time":"2024-11-06T07:14:54.848Z","end_time":null,"error_code":null,
                "fail_reason":null,"entities":{"image_id":"x"},"new_field":1}"#,
        )
        .unwrap();
        assert_eq!(job.status, Some(JobStatus::Success));
        assert!(job.status.as_ref().unwrap().is_terminal());
        assert_eq!(job.entities.unwrap().image_id.as_deref(), Some("x"));
        assert!(job.end_time.is_none());
    }

    #[test]
    fn status_pages_keep_id_status_and_update_time_only() {
        let page: ImageStatusPage = serde_json::from_str(
            r#"{"images":[
                {"id":"a","name":"x","status":"active","tags":["t"],"min_disk":40,
                 "nested":{"k":[1,{"updated_at":"no"}]},"updated_at":"2024-11-06T07:14:54Z"},
                {"status":"SAVING","id":"b\u0031","updated_at":null},
                {"id":"c","status":"pending_delete","updated_at":"yesterday"},
                {"id":"d","status":"killed"}
            ],"page_info":{"next_marker":"d"},"schema":"/v2/schemas/images"}"#,
        )
        .unwrap();
        let t = parse_api_time("2024-11-06T07:14:54Z");
        let got: Vec<_> = page
            .images
            .iter()
            .map(|i| (i.id.as_str(), i.status.as_str(), i.updated_at))
            .collect();
        assert_eq!(
            got,
            [
                ("a", "active", t),
                ("b1", "saving", None),
                ("c", "pending_delete", None),
                ("d", "killed", None),
            ]
        );
        assert_eq!(page.page_info.unwrap().next_marker.as_deref(), Some("d"));
        let empty: ImageStatusPage = serde_json::from_str("{}").unwrap();
        assert!(empty.images.is_empty() && empty.page_info.is_none());
        assert!(serde_json::from_str::<ImageStatusPage>(r#"{"images":[{"id":"x"}]}"#).is_err());
    }

    #[test]
    fn images_read_tags_os_version_and_min_ram_leniently() {
        let image: ImageInfo = serde_json::from_str(
            r#"{"id":"a","status":"queued","tags":["imsreg-key=abc","team=web","bare"],
                "__os_version":"CentOS 7.9 64bit","min_ram":"1024"}"#,
        )
        .unwrap();
        assert_eq!(image.tag("imsreg-key"), Some("abc"));
        assert_eq!(image.tag("team"), Some("web"));
        assert_eq!(image.tag("bare"), Some(""));
        assert_eq!(image.tag("imsreg"), None);
        assert_eq!(image.os_version.as_deref(), Some("CentOS 7.9 64bit"));
        assert_eq!(image.min_ram, Some(1024));
        let sparse: ImageInfo =
            serde_json::from_str(r#"{"id":"b","status":"active","tags":null,"min_ram":null}"#)
                .unwrap();
        assert!(sparse.tags.is_empty() && sparse.min_ram.is_none());
    }

    #[test]
    fn os_versions_are_flattened_from_the_platform_list() {
        let platforms: Vec<OsPlatform> = serde_json::from_str(
            r#"[{"platform":"SUSE","version_list":[
                   {"platform":"SUSE","os_version_key":"SUSE Linux Enterprise Server 12 SP5 64bit",
                    "os_version":"SUSE Linux Enterprise Server 12 SP5 64bit","os_bit":64,
                    "os_type":"Linux"}]},
                {"platform":"Ubuntu","version_list":[
                   {"os_version":"Ubuntu 22.04 server 64bit","os_bit":"64"},
                   {"os_version":"Ubuntu 20.04 server 64bit","extra":true}]},
                {"platform":"Empty","version_list":null}]"#,
        )
        .unwrap();
        let flat = flatten_os_versions(platforms);
        let got: Vec<_> = flat
            .iter()
            .map(|v| (v.platform.as_str(), v.os_version.as_str(), v.os_bit))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "SUSE",
                    "SUSE Linux Enterprise Server 12 SP5 64bit",
                    Some(64)
                ),
                ("Ubuntu", "Ubuntu 22.04 server 64bit", Some(64)),
                ("Ubuntu", "Ubuntu 20.04 server 64bit", None),
            ]
        );
        assert_eq!(flat[0].os_type.as_deref(), Some("Linux"));
    }

    #[test]
    fn the_image_quota_is_the_image_resource() {
        let answer: QuotaResponse = serde_json::from_str(
            r#"{"quotas":{"resources":[
                {"type":"image_shared","used":1,"quota":5,"min":1,"max":10},
                {"type":"image","used":18,"quota":20,"min":1,"max":1000}]}}"#,
        )
        .unwrap();
        let quota = answer.image().unwrap();
        assert_eq!(
            quota,
            ImageQuota {
                used: 18,
                quota: 20
            }
        );
        assert_eq!(quota.remaining(), 2);
        assert_eq!(
            ImageQuota {
                used: 25,
                quota: 20
            }
            .remaining(),
            0
        );
        let none: QuotaResponse = serde_json::from_str(r#"{"quotas":{"resources":[]}}"#).unwrap();
        assert!(none.image().is_none());
    }

    #[test]
    fn the_tag_filter_is_sent_as_key_equals_value() {
        let query = ListImagesQuery {
            imagetype: Some("private".into()),
            tag: Some("imsreg-key=abc".into()),
            ..ListImagesQuery::default()
        };
        assert_eq!(
            query.to_pairs(),
            [
                ("__imagetype".to_string(), "private".to_string()),
                ("tag".to_string(), "imsreg-key=abc".to_string())
            ]
        );
    }

    #[test]
    fn unknown_statuses_are_kept() {
        assert_eq!(
            JobStatus::parse("WAITING"),
            JobStatus::Other("WAITING".into())
        );
        assert_eq!(ImageStatus::parse("ACTIVE"), ImageStatus::Active);
        assert_eq!(ImageStatus::parse(" killed "), ImageStatus::Killed);
        assert_eq!(JobStatus::parse("failed"), JobStatus::Fail);
        assert_eq!(
            ImageStatus::parse("pending_delete").as_str(),
            "pending_delete"
        );
    }

    #[test]
    fn times_parse_leniently() {
        for raw in [
            "2024-11-06T07:14:54.848Z",
            "2024-11-06T07:14:54Z",
            "2024-11-06T07:14:54",
            "2024-11-06 07:14:54",
            "2024-11-06T07:14:54.848+00:00",
        ] {
            let t = parse_api_time(raw).unwrap_or_else(|| panic!("{raw}"));
            assert_eq!(t.format("%H:%M:%S").to_string(), "07:14:54");
        }
        assert!(parse_api_time("yesterday").is_none());
    }
}
