//! The APIs the simulator serves and which method and path address each. The API names key
//! `rate_limits` in the configuration and the request counts in the simulator's stats.

use axum::http::Method;
use percent_encoding::percent_decode_str;

/// The APIs the simulator serves; the names key `rate_limits` and `SimStats::requests`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Api {
    /// `PUT /v1/cloudimages/{image_id}/upload`
    Register,
    /// `GET /v1/{project_id}/jobs/{job_id}`
    ShowJob,
    /// `GET /v1/cloudimages/job/{job_id}`
    ShowJobProgress,
    /// `GET /v2/cloudimages`
    ListImages,
    /// `POST /v2/images`
    CreateImage,
    /// `GET /v2/images/{image_id}`
    GetImage,
    /// `DELETE /v2/images/{image_id}`
    DeleteImage,
    /// `GET /v1/cloudimages/os_version`
    OsVersion,
    /// `GET /v1/cloudimages/quota`
    Quota,
}

impl Api {
    pub const ALL: [Api; 9] = [
        Api::Register,
        Api::ShowJob,
        Api::ShowJobProgress,
        Api::ListImages,
        Api::CreateImage,
        Api::GetImage,
        Api::DeleteImage,
        Api::OsVersion,
        Api::Quota,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Api::Register => "register",
            Api::ShowJob => "show_job",
            Api::ShowJobProgress => "show_job_progress",
            Api::ListImages => "list_images",
            Api::CreateImage => "create_image",
            Api::GetImage => "get_image",
            Api::DeleteImage => "delete_image",
            Api::OsVersion => "os_version",
            Api::Quota => "quota",
        }
    }

    pub fn from_name(name: &str) -> Option<Api> {
        Api::ALL.into_iter().find(|api| api.name() == name)
    }
}

/// Which API a method and path address, with the path parameters (percent-decoded).
pub fn route(method: &Method, path: &str) -> Option<(Api, Vec<String>)> {
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    let api = match (method, parts.as_slice()) {
        (&Method::PUT, ["v1", "cloudimages", id, "upload"]) => (Api::Register, vec![*id]),
        (&Method::GET, ["v1", "cloudimages", "job", job]) => (Api::ShowJobProgress, vec![*job]),
        (&Method::GET, ["v1", "cloudimages", "os_version"]) => (Api::OsVersion, vec![]),
        (&Method::GET, ["v1", "cloudimages", "quota"]) => (Api::Quota, vec![]),
        (&Method::GET, ["v1", project, "jobs", job]) => (Api::ShowJob, vec![*project, *job]),
        (&Method::GET, ["v2", "cloudimages"]) => (Api::ListImages, vec![]),
        (&Method::POST, ["v2", "images"]) => (Api::CreateImage, vec![]),
        (&Method::GET, ["v2", "images", id]) => (Api::GetImage, vec![*id]),
        (&Method::DELETE, ["v2", "images", id]) => (Api::DeleteImage, vec![*id]),
        _ => return None,
    };
    Some((api.0, api.1.into_iter().map(String::from).collect()))
}

/// The OBS calls the simulator serves; the names key `rate_limits` and `ObsStats::requests`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObsApi {
    HeadBucket,
    HeadObject,
    GetObject,
}

impl ObsApi {
    pub const ALL: [ObsApi; 3] = [ObsApi::HeadBucket, ObsApi::HeadObject, ObsApi::GetObject];

    pub fn name(self) -> &'static str {
        match self {
            ObsApi::HeadBucket => "obs_head_bucket",
            ObsApi::HeadObject => "obs_head_object",
            ObsApi::GetObject => "obs_get_object",
        }
    }

    pub fn from_name(name: &str) -> Option<ObsApi> {
        ObsApi::ALL.into_iter().find(|api| api.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = |m: Method, p: &str| route(&m, p);
        assert_eq!(
            r(Method::PUT, "/v1/cloudimages/abc/upload"),
            Some((Api::Register, vec!["abc".into()]))
        );
        assert_eq!(
            r(Method::GET, "/v1/cloudimages/job/j1"),
            Some((Api::ShowJobProgress, vec!["j1".into()]))
        );
        assert_eq!(
            r(Method::GET, "/v1/p1/jobs/j1"),
            Some((Api::ShowJob, vec!["p1".into(), "j1".into()]))
        );
        assert_eq!(
            r(Method::GET, "/v2/cloudimages"),
            Some((Api::ListImages, vec![]))
        );
        assert_eq!(
            r(Method::POST, "/v2/images"),
            Some((Api::CreateImage, vec![]))
        );
        assert_eq!(
            r(Method::GET, "/v2/images/x"),
            Some((Api::GetImage, vec!["x".into()]))
        );
        assert_eq!(
            r(Method::DELETE, "/v2/images/x"),
            Some((Api::DeleteImage, vec!["x".into()]))
        );
        assert_eq!(
            r(Method::GET, "/v1/cloudimages/os_version"),
            Some((Api::OsVersion, vec![]))
        );
        assert_eq!(
            r(Method::GET, "/v1/cloudimages/quota"),
            Some((Api::Quota, vec![]))
        );
        assert_eq!(r(Method::POST, "/v1/cloudimages/quota"), None);
        assert_eq!(r(Method::DELETE, "/v2/images"), None);
        assert_eq!(r(Method::GET, "/v1/cloudimages/abc/upload"), None);
        assert_eq!(r(Method::GET, "/nope"), None);
    }

    #[test]
    fn names_round_trip() {
        for api in Api::ALL {
            assert_eq!(Api::from_name(api.name()), Some(api));
        }
        assert_eq!(Api::from_name("nope"), None);
    }
}
