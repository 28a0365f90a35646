//! Credentials for IMS, and where they come from.
//!
//! Two kinds exist: an AK/SK pair (optionally temporary, with a security token) that signs
//! every request, and a pre-issued IAM token sent as `X-Auth-Token`. [`discover`] finds them the
//! way the official SDKs do, through an injectable variable lookup so tests never touch the
//! process environment. Precedence, first match wins:
//!
//! 1. `HUAWEICLOUD_SDK_AK` + `HUAWEICLOUD_SDK_SK` (+ `HUAWEICLOUD_SDK_SECURITY_TOKEN`);
//!    one of AK/SK without the other is an error, never a silent fall-through.
//! 2. `OS_AUTH_TOKEN` (an IAM token, the OpenStack convention).
//! 3. The credentials file: `HUAWEICLOUD_SDK_CREDENTIALS_FILE`, default
//!    `~/.huaweicloud/credentials`, INI, section `[basic]` with `ak`, `sk`, `security_token`,
//!    `project_id`. A file named explicitly must exist; the default one may be absent.
//!
//! The project ID comes from `HUAWEICLOUD_SDK_PROJECT_ID` (which also overrides the file's
//! `project_id`), then, for a token, `OS_PROJECT_ID`, then the file. Empty values count as unset.
//! Secret values live in [`Secret`], whose `Debug` and `Display` print `***`.

use std::path::{Path, PathBuf};

pub const ENV_AK: &str = "HUAWEICLOUD_SDK_AK";
pub const ENV_SK: &str = "HUAWEICLOUD_SDK_SK";
pub const ENV_SECURITY_TOKEN: &str = "HUAWEICLOUD_SDK_SECURITY_TOKEN";
pub const ENV_PROJECT_ID: &str = "HUAWEICLOUD_SDK_PROJECT_ID";
pub const ENV_CREDENTIALS_FILE: &str = "HUAWEICLOUD_SDK_CREDENTIALS_FILE";
pub const ENV_AUTH_TOKEN: &str = "OS_AUTH_TOKEN";
pub const ENV_OS_PROJECT_ID: &str = "OS_PROJECT_ID";
/// The default credentials file, relative to the home directory.
pub const DEFAULT_CREDENTIALS_FILE: &str = ".huaweicloud/credentials";
/// A credentials file is a few lines; anything larger is not one.
pub const MAX_CREDENTIALS_FILE_BYTES: u64 = 1024 * 1024;

/// A secret string (SK, security token, IAM token). Formatting it prints `***`; the value is
/// only reachable through [`Secret::expose`], at the point where it goes on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value. Call only to sign or to fill a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// How requests are authenticated. `Debug` shows the AK and which secrets are present, never
/// their values.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// AK/SK signing (`SDK-HMAC-SHA256`). The AK is an identifier sent in clear in every
    /// `Authorization` header; the SK and the temporary token are secrets.
    AkSk {
        ak: String,
        sk: Secret,
        /// Temporary credentials: sent (and signed) as `X-Security-Token`.
        security_token: Option<Secret>,
    },
    /// A pre-issued IAM token, sent as `X-Auth-Token`; nothing is signed.
    Token(Secret),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Written out rather than derived, so that a field added later is not printed unseen.
        match self {
            Credentials::AkSk {
                ak,
                sk,
                security_token,
            } => f
                .debug_struct("AkSk")
                .field("ak", ak)
                .field("sk", sk)
                .field("security_token", security_token)
                .finish(),
            Credentials::Token(token) => f.debug_tuple("Token").field(token).finish(),
        }
    }
}

impl Credentials {
    /// A short description for logs ("AK/SK (AK ABCD...)", "IAM token"), without secrets.
    pub fn describe(&self) -> String {
        match self {
            Credentials::AkSk {
                ak, security_token, ..
            } => {
                let kind = if security_token.is_some() {
                    "temporary AK/SK"
                } else {
                    "AK/SK"
                };
                format!("{kind} (AK {ak})")
            }
            Credentials::Token(_) => "IAM token".to_string(),
        }
    }
}

/// Where [`discover`] found the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `HUAWEICLOUD_SDK_AK` / `HUAWEICLOUD_SDK_SK`.
    Environment,
    /// `OS_AUTH_TOKEN`.
    AuthToken,
    /// The `[basic]` section of this credentials file.
    File(PathBuf),
}

impl std::fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialSource::Environment => write!(f, "{ENV_AK}/{ENV_SK}"),
            CredentialSource::AuthToken => f.write_str(ENV_AUTH_TOKEN),
            CredentialSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The result of [`discover`]: credentials plus the project ID found next to them (CLI flags
/// and manifest settings may override it later). The derived `Debug` is safe: the secrets are
/// inside [`Credentials`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub credentials: Credentials,
    pub project_id: Option<String>,
    pub source: CredentialSource,
}

/// Why no usable credentials were found. Messages name what to set; never a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no IMS credentials found: set {ENV_AK} and {ENV_SK} (plus {ENV_SECURITY_TOKEN} for \
         temporary credentials), or {ENV_AUTH_TOKEN} (an IAM token), or put ak/sk in the \
         [basic] section of {file} (the file can be chosen with {ENV_CREDENTIALS_FILE})"
    )]
    NotConfigured { file: String },
    #[error("{present} is set but {missing} is not: set both, or unset {present}")]
    MissingVariable {
        present: &'static str,
        missing: &'static str,
    },
    #[error("cannot read the credentials file {path}: {detail}")]
    FileUnreadable { path: PathBuf, detail: String },
    #[error("the credentials file {path} is not valid INI (line {line}, column {column})")]
    FileInvalid {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    #[error("the credentials file {path} has no usable [basic] section: {detail}")]
    FileIncomplete { path: PathBuf, detail: String },
    /// A value HTTP cannot carry (named, never shown: it may be a secret).
    #[error(
        "{what} contains {problem}, which HTTP cannot carry: credentials and project IDs are \
         printable ASCII without spaces (copy the value again; it is not shown here)"
    )]
    Malformed { what: String, problem: &'static str },
}

impl From<AuthError> for super::error::ImsError {
    /// Nothing was sent: a configuration problem, final for the run.
    fn from(err: AuthError) -> Self {
        super::error::ImsError::Config(err.to_string())
    }
}

/// What makes `value` unusable as a credential or project ID, if anything: these travel in
/// HTTP headers (the AK inside `Authorization`, tokens and the project ID in headers of their
/// own) or key the signature (the SK), and the ones IMS issues are printable ASCII without
/// spaces. Callers trim the value first.
pub fn malformation(value: &str) -> Option<&'static str> {
    value.chars().find_map(|c| match c {
        '!'..='~' => None,
        ' ' | '\t' => Some("a space"),
        c if c.is_control() => Some("a control character"),
        _ => Some("a character outside printable ASCII"),
    })
}

/// A project ID (from a flag, a manifest or a variable), trimmed; `what` names where it came
/// from in the error.
pub fn check_project_id(value: &str, what: &str) -> Result<String, AuthError> {
    let value = value.trim();
    match malformation(value) {
        None => Ok(value.to_string()),
        Some(problem) => Err(AuthError::Malformed {
            what: what.to_string(),
            problem,
        }),
    }
}

/// `--project-id`: a project ID HTTP can carry.
pub fn parse_project_id(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        return Err("the project ID is empty".to_string());
    }
    check_project_id(value, "the project ID").map_err(|err| err.to_string())
}

/// Refuses a discovered value HTTP cannot carry, naming where it came from.
fn well_formed(found: Discovered, project_from_env: bool) -> Result<Discovered, AuthError> {
    let file_key = |key: &str| match &found.source {
        CredentialSource::File(path) => Some(format!(
            "`{key}` in the [basic] section of {}",
            path.display()
        )),
        _ => None,
    };
    let name = |env: &str, key: &str| file_key(key).unwrap_or_else(|| env.to_string());
    let mut values: Vec<(String, &str)> = Vec::with_capacity(4);
    match &found.credentials {
        Credentials::AkSk {
            ak,
            sk,
            security_token,
        } => {
            values.push((name(ENV_AK, "ak"), ak));
            values.push((name(ENV_SK, "sk"), sk.expose()));
            if let Some(token) = security_token {
                values.push((name(ENV_SECURITY_TOKEN, "security_token"), token.expose()));
            }
        }
        Credentials::Token(token) => values.push((ENV_AUTH_TOKEN.to_string(), token.expose())),
    }
    if let Some(project) = &found.project_id {
        let what = match &found.source {
            _ if project_from_env => ENV_PROJECT_ID.to_string(),
            CredentialSource::AuthToken => ENV_OS_PROJECT_ID.to_string(),
            _ => name(ENV_PROJECT_ID, "project_id"),
        };
        values.push((what, project));
    }
    for (what, value) in values {
        if let Some(problem) = malformation(value.trim()) {
            return Err(AuthError::Malformed { what, problem });
        }
    }
    Ok(found)
}

/// Finds credentials through `lookup` (a variable name -> value function), in the order given
/// in the module documentation.
/// Every value found must be one HTTP can carry ([`malformation`]); a malformed one is an
/// [`AuthError::Malformed`] naming the variable or file key, never the value.
pub fn discover(lookup: impl Fn(&str) -> Option<String>) -> Result<Discovered, AuthError> {
    let project_from_env = lookup(ENV_PROJECT_ID).is_some_and(|v| !v.trim().is_empty());
    let found = find(&lookup)?;
    well_formed(found, project_from_env)
}

fn find(lookup: impl Fn(&str) -> Option<String>) -> Result<Discovered, AuthError> {
    // Empty or blank values count as unset, as in the SDKs (`if not ak`).
    let var = |name: &str| {
        lookup(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let env_project = var(ENV_PROJECT_ID);

    match (var(ENV_AK), var(ENV_SK)) {
        (Some(ak), Some(sk)) => {
            return Ok(Discovered {
                credentials: Credentials::AkSk {
                    ak,
                    sk: Secret::new(sk),
                    security_token: var(ENV_SECURITY_TOKEN).map(Secret::new),
                },
                project_id: env_project,
                source: CredentialSource::Environment,
            });
        }
        (Some(_), None) => {
            return Err(AuthError::MissingVariable {
                present: ENV_AK,
                missing: ENV_SK,
            });
        }
        (None, Some(_)) => {
            return Err(AuthError::MissingVariable {
                present: ENV_SK,
                missing: ENV_AK,
            });
        }
        (None, None) => {}
    }

    if let Some(token) = var(ENV_AUTH_TOKEN) {
        return Ok(Discovered {
            credentials: Credentials::Token(Secret::new(token)),
            project_id: env_project.or_else(|| var(ENV_OS_PROJECT_ID)),
            source: CredentialSource::AuthToken,
        });
    }

    let explicit_file = var(ENV_CREDENTIALS_FILE).map(PathBuf::from);
    let default_file = var("HOME")
        .or_else(|| var("USERPROFILE"))
        .map(|home| Path::new(&home).join(DEFAULT_CREDENTIALS_FILE));
    let not_configured = |file: Option<&Path>| AuthError::NotConfigured {
        file: file.map_or_else(
            || format!("~/{DEFAULT_CREDENTIALS_FILE}"),
            |p| p.display().to_string(),
        ),
    };

    let (path, must_exist) = match (explicit_file, default_file) {
        (Some(path), _) => (path, true),
        (None, Some(path)) => (path, false),
        (None, None) => return Err(not_configured(None)),
    };
    let bytes = match crate::input::read("credentials file", &path, MAX_CREDENTIALS_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(err) if err.is_not_found() && !must_exist => {
            return Err(not_configured(Some(&path)));
        }
        Err(err) => {
            return Err(AuthError::FileUnreadable {
                path,
                detail: err.detail(),
            });
        }
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return Err(AuthError::FileUnreadable {
            path,
            detail: "it is not UTF-8 text".to_string(),
        });
    };
    let mut found = parse_credentials_file(&path, &text)?;
    if env_project.is_some() {
        found.project_id = env_project;
    }
    Ok(found)
}

/// [`discover`] over the real process environment.
pub fn discover_from_process_env() -> Result<Discovered, AuthError> {
    discover(|name| std::env::var(name).ok())
}

/// Reads the `[basic]` section of a credentials file (its text already loaded).
pub fn parse_credentials_file(path: &Path, text: &str) -> Result<Discovered, AuthError> {
    // Like Python's configparser: no escapes, quotes are literal.
    let options = ini::ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        ..Default::default()
    };
    let ini = ini::Ini::load_from_str_opt(text, options).map_err(|err| AuthError::FileInvalid {
        path: path.to_path_buf(),
        line: err.line,
        column: err.col,
    })?;
    let incomplete = |detail: &str| AuthError::FileIncomplete {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    };
    let basic = ini
        .section(Some("basic"))
        .ok_or_else(|| incomplete("the [basic] section is missing"))?;
    // Keys are case-insensitive, as in Python's configparser.
    let get = |key: &str| {
        basic
            .iter()
            .find(|(name, _)| name.trim().eq_ignore_ascii_case(key))
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let (ak, sk) = match (get("ak"), get("sk")) {
        (Some(ak), Some(sk)) => (ak, sk),
        (Some(_), None) => return Err(incomplete("`ak` is set but `sk` is missing")),
        (None, Some(_)) => return Err(incomplete("`sk` is set but `ak` is missing")),
        (None, None) => return Err(incomplete("`ak` and `sk` are missing")),
    };
    Ok(Discovered {
        credentials: Credentials::AkSk {
            ak,
            sk: Secret::new(sk),
            security_token: get("security_token").map(Secret::new),
        },
        project_id: get("project_id"),
        source: CredentialSource::File(path.to_path_buf()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_value() {
        let s = Secret::new("very-secret");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), "very-secret");
        let c = Credentials::AkSk {
            ak: "AKID".into(),
            sk: s,
            security_token: Some(Secret::new("tok-value")),
        };
        let dbg = format!("{c:?} {c:#?} {}", c.describe());
        assert!(!dbg.contains("very-secret") && !dbg.contains("tok-value"));
        assert!(dbg.contains("AKID"));
        assert_eq!(
            format!("{c:?}"),
            r#"AkSk { ak: "AKID", sk: ***, security_token: Some(***) }"#
        );
    }

    #[test]
    fn discovered_credentials_print_without_secrets() {
        let env = |name: &str| match name {
            ENV_AUTH_TOKEN => Some("iam-token-never-printed".to_string()),
            ENV_PROJECT_ID => Some("p1".to_string()),
            _ => None,
        };
        let found = discover(env).unwrap();
        assert_eq!(found.credentials.describe(), "IAM token");
        let printed = format!("{found:?}");
        assert!(!printed.contains("never-printed"), "{printed}");
        assert!(
            printed.contains("Token(***)") && printed.contains("p1"),
            "{printed}"
        );

        let env = |name: &str| match name {
            ENV_AK => Some("AKFOUND".to_string()),
            ENV_SK => Some("sk-never-printed".to_string()),
            ENV_SECURITY_TOKEN => Some("st-never-printed".to_string()),
            _ => None,
        };
        let printed = format!("{:?}", discover(env).unwrap());
        assert!(!printed.contains("never-printed"), "{printed}");
        assert!(printed.contains("AKFOUND"), "{printed}");
    }

    #[test]
    fn malformed_credentials_name_the_variable_not_the_value() {
        let lookup = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let cases: [(&[(&str, &str)], &str); 6] = [
            (&[(ENV_AK, "AK\u{1}zq"), (ENV_SK, "sk")], ENV_AK),
            (&[(ENV_AK, "AK"), (ENV_SK, "zq\u{7f}zq")], ENV_SK),
            (
                &[
                    (ENV_AK, "AK"),
                    (ENV_SK, "sk"),
                    (ENV_SECURITY_TOKEN, "zq zq"),
                ],
                ENV_SECURITY_TOKEN,
            ),
            (&[(ENV_AUTH_TOKEN, "zq\u{1b}[2Jzq")], ENV_AUTH_TOKEN),
            (
                &[(ENV_AK, "AK"), (ENV_SK, "sk"), (ENV_PROJECT_ID, "zqé")],
                ENV_PROJECT_ID,
            ),
            (
                &[(ENV_AUTH_TOKEN, "tok"), (ENV_OS_PROJECT_ID, "z\nq")],
                ENV_OS_PROJECT_ID,
            ),
        ];
        for (pairs, variable) in cases {
            let err = discover(lookup(pairs)).unwrap_err();
            let message = err.to_string();
            assert!(matches!(err, AuthError::Malformed { .. }), "{message}");
            assert!(message.starts_with(variable), "{message}");
            assert!(!message.contains("zq"), "the value leaked: {message}");
        }
        // Surrounding white space is trimmed, as the SDKs do; only what is left counts.
        assert!(discover(lookup(&[(ENV_AK, " AK\r\n"), (ENV_SK, "\tsk ")])).is_ok());
        let file = parse_credentials_file(Path::new("c"), "[basic]\nak=A\u{1}K\nsk=s\n")
            .and_then(|found| well_formed(found, false));
        let message = file.unwrap_err().to_string();
        assert!(
            message.starts_with("`ak` in the [basic] section of c"),
            "{message}"
        );
        assert!(parse_project_id("0123456789abcdef0123456789abcdef").is_ok());
        assert!(
            parse_project_id("p\n1")
                .unwrap_err()
                .contains("control character")
        );
    }

    #[test]
    fn ini_file_with_quotes_and_backslashes_is_literal() {
        let found = parse_credentials_file(
            Path::new("c"),
            "[basic]\nAK = A1\nsk = s\\k\"x\nproject_id=p1\n[global]\nak=G\n",
        )
        .unwrap();
        match found.credentials {
            Credentials::AkSk { ak, sk, .. } => {
                assert_eq!(ak, "A1");
                assert_eq!(sk.expose(), "s\\k\"x");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(found.project_id.as_deref(), Some("p1"));
    }
}
