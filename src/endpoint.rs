//! Where a Huawei Cloud service is reached: its endpoint from a region
//! (`https://{service}.{region}.myhuaweicloud.com`) or an explicit URL, and the rule every
//! endpoint follows: `https://`, or plain `http://` only for a loopback host (the simulator),
//! because signed requests and tokens must not travel in clear over a network. One rule for
//! IMS and OBS; each client wraps the message in its own error type.

use url::{Host, Url};

/// A service's names, for its endpoint and the messages about it.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// `IMS`, `OBS`: as the messages name it.
    pub label: &'static str,
    /// `ims`, `obs`: the first label of the regional host name.
    pub host_prefix: &'static str,
    /// The manifest key that sets the endpoint (`endpoint`, `obs_endpoint`).
    pub key: &'static str,
    /// Why the URL must have no path, when it must not (OBS puts the bucket there).
    pub no_path: Option<&'static str>,
}

pub const IMS: Service = Service {
    label: "IMS",
    host_prefix: "ims",
    key: "endpoint",
    no_path: None,
};

pub const OBS: Service = Service {
    label: "OBS",
    host_prefix: "obs",
    key: "obs_endpoint",
    no_path: Some("OBS puts the bucket and object there"),
};

/// The endpoint: `endpoint` when given (an override, e.g. the simulator), else the region's;
/// checked with [`check`]. The error is a sentence for the user.
pub fn resolve(
    service: Service,
    region: Option<&str>,
    endpoint: Option<&str>,
) -> Result<Url, String> {
    let (label, prefix) = (service.label, service.host_prefix);
    let region = region.map(str::trim).filter(|r| !r.is_empty());
    let endpoint = endpoint.map(str::trim).filter(|e| !e.is_empty());
    let url = match (endpoint, region) {
        (Some(raw), _) => Url::parse(raw).map_err(|err| {
            format!(
                "the {label} endpoint {raw:?} is not a valid URL ({err}); write it as \
                 https://{prefix}.<region>.myhuaweicloud.com"
            )
        })?,
        (None, Some(region)) => {
            let valid = region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid {
                return Err(format!(
                    "the region {region:?} is not a Huawei Cloud region ID (e.g. cn-north-4, \
                     ap-southeast-1)"
                ));
            }
            Url::parse(&format!("https://{prefix}.{region}.myhuaweicloud.com")).map_err(|err| {
                format!("cannot build the {label} endpoint of region {region}: {err}")
            })?
        }
        (None, None) => {
            return Err(format!(
                "no {label} region or endpoint: set the region (`region:` in the manifest \
                 settings or on the command line), or the {label} endpoint (`{}:`)",
                service.key
            ));
        }
    };
    check(service, &url)?;
    Ok(url)
}

/// Accepts `https://host[:port][/base]`, and `http://` only for loopback hosts (127.0.0.0/8,
/// `::1`, `localhost`); never a user name, password, query or fragment.
pub fn check(service: Service, url: &Url) -> Result<(), String> {
    // Never echo a password someone put into the URL.
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    let refuse = |why: &str| Err(format!("the {} endpoint {shown} {why}", service.label));
    if url.host().is_none() {
        return refuse("has no host name");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return refuse("must not contain a user name or password");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return refuse("must not contain a query (?...) or a fragment (#...)");
    }
    if let Some(why) = service.no_path
        && url.path() != "/"
        && !url.path().is_empty()
    {
        return refuse(&format!("must not have a path: {why}"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => refuse(
            "uses plain http://, which is only allowed for a loopback address (127.0.0.1, ::1, \
             localhost); use https://",
        ),
        _ => refuse("must start with https:// (or http:// for a loopback address)"),
    }
}

/// A loopback host: 127.0.0.0/8, `::1` or `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_give_the_services_endpoints() {
        let ims = resolve(IMS, Some("cn-north-4"), None).unwrap();
        assert_eq!(ims.as_str(), "https://ims.cn-north-4.myhuaweicloud.com/");
        let obs = resolve(OBS, Some("cn-north-4"), None).unwrap();
        assert_eq!(obs.as_str(), "https://obs.cn-north-4.myhuaweicloud.com/");
        let missing = resolve(OBS, None, None).unwrap_err();
        assert!(missing.contains("`obs_endpoint:`"), "{missing}");
    }

    #[test]
    fn plain_http_only_on_loopback_and_obs_takes_no_path() {
        for ok in ["http://127.0.0.1:9", "http://[::1]:9", "http://localhost:9"] {
            assert!(resolve(OBS, None, Some(ok)).is_ok(), "{ok}");
        }
        let remote = resolve(IMS, None, Some("http://10.0.0.1")).unwrap_err();
        assert!(remote.contains("only allowed for a loopback"), "{remote}");
        assert!(resolve(IMS, None, Some("https://h.example/base")).is_ok());
        let path = resolve(OBS, None, Some("https://h.example/base")).unwrap_err();
        assert!(path.contains("must not have a path"), "{path}");
        let secret = resolve(OBS, None, Some("https://u:hunter2@h.example")).unwrap_err();
        assert!(!secret.contains("hunter2"), "{secret}");
    }
}
