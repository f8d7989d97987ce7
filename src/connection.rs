//! A connection's settings (the inputs a builder fills in), validated and
//! normalised once, and the token state the host keeps for it.

use crate::error::{ConnectorError, Result};
use crate::retry::RetryPolicy;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

/// Which connection type, as in the WIT `connection-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionType {
    AuthCode,
    ClientCredentials,
}

impl ConnectionType {
    pub fn key(self) -> &'static str {
        match self {
            ConnectionType::AuthCode => "oauth2AuthCode",
            ConnectionType::ClientCredentials => "oauth2ClientCredentials",
        }
    }
}

/// Tokens kept by the host between calls.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenState {
    pub access_token: String,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenState")
            .field("access_token", &"***")
            .field("expires_at", &self.expires_at)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "***"))
            .field("scope", &self.scope)
            .finish()
    }
}

/// The Dataverse Web API endpoint of one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebApiUrl {
    /// `https://org.crm.dynamics.com/api/data/v9.2/` — every data request is
    /// relative to it; its origin is the token audience.
    service_root: Url,
}

/// Region host labels of `{org}.{region}.dynamics.com` (Microsoft's list:
/// crm = North America, crm2 South America, crm3 Canada, crm4 EMEA, crm5
/// APAC, crm6 Oceania, crm7 Japan, crm8 India, crm9 North America 2 (GCC),
/// crm11 UK, crm12 France, crm14 UAE, crm15 Germany, crm16 Switzerland,
/// crm17 Norway, crm19 Korea, crm20 Singapore, crm21 Sweden).
pub const REGIONS: &[&str] = &[
    "crm", "crm2", "crm3", "crm4", "crm5", "crm6", "crm7", "crm8", "crm9", "crm11", "crm12",
    "crm14", "crm15", "crm16", "crm17", "crm19", "crm20", "crm21",
];

/// The API version data requests use, whatever version the user typed.
pub const API_PATH: &str = "/api/data/v9.2/";

impl WebApiUrl {
    /// The short form: an environment name plus a region code, e.g.
    /// `contoso` + `crm4` → `https://contoso.crm4.dynamics.com`.
    pub fn from_org_and_region(org: &str, region: &str) -> Result<Self> {
        let region = region.trim().to_ascii_lowercase();
        if !REGIONS.contains(&region.as_str()) {
            return Err(ConnectorError::invalid_input(
                "region",
                format!(
                    "'{region}' is not a Dataverse region code (valid: {})",
                    REGIONS.join(", ")
                ),
            ));
        }
        let org = org.trim().to_ascii_lowercase();
        let valid_org = !org.is_empty()
            && org.len() <= 63
            && org.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !org.starts_with('-')
            && !org.ends_with('-');
        if !valid_org {
            return Err(ConnectorError::invalid_input(
                "webApiUrl",
                format!("'{org}' is not an environment name (letters, digits and hyphens)"),
            ));
        }
        Self::parse(&format!("https://{org}.{region}.dynamics.com"))
    }

    /// Accepts `https://org.crm.dynamics.com`, `org.crm4.dynamics.com/`,
    /// `https://org.api.crm.dynamics.com/api/data/v9.2/` and the like.
    /// `http://` is allowed only for loopback hosts (tests, the emulator).
    pub fn parse(input: &str) -> Result<Self> {
        Self::parse_usual(input).map_or_else(|| Self::parse_thorough(input), Ok)
    }

    /// The usual input, an origin in canonical form (or the service root
    /// under it, any API version): the service root formed as text and
    /// parsed once. Every call parses its settings, and one URL parse is
    /// several µs of a getEntity's ~40 µs of guest time. `None` for
    /// anything else, which [`Self::parse_thorough`] normalises or refuses;
    /// the two agree on every input (the `web_api_url` fuzz target checks).
    fn parse_usual(input: &str) -> Option<Self> {
        let trimmed = input.trim();
        let (scheme, rest) = trimmed.split_once("://")?;
        let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let version = path
            .trim_end_matches('/')
            .strip_prefix("/api/data")
            .map(|v| v.trim_start_matches('/'));
        let path_ok = path.trim_end_matches('/').is_empty()
            || version.is_some_and(|v| v.is_empty() || is_version_segment(v));
        if !path_ok || authority.contains(".api.") || authority.contains('@') {
            return None;
        }
        let root = format!("{scheme}://{authority}{API_PATH}");
        let url = Url::parse(&root).ok()?;
        // Anything the parser had to normalise (case, a default port, dots,
        // percent-escapes) takes the thorough path.
        if url.as_str() != root {
            return None;
        }
        let host = url.host_str()?;
        let scheme_ok = match url.scheme() {
            "https" => true,
            "http" => is_loopback(host),
            _ => false,
        };
        scheme_ok.then_some(WebApiUrl { service_root: url })
    }

    /// [`Self::parse`] without the shortcut for the usual input: public
    /// only so that the fuzz target can check that both agree.
    #[doc(hidden)]
    pub fn parse_thorough(input: &str) -> Result<Self> {
        let bad = |msg: &str| {
            ConnectorError::invalid_input("webApiUrl", msg.to_string()).with_hint(
                "Use your environment's URL, e.g. https://contoso.crm.dynamics.com (Power Platform admin center → Environments → Environment URL).",
            )
        };
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(bad("is empty"));
        }
        let with_scheme = if trimmed.contains("://") {
            trimmed.to_string()
        } else {
            format!("https://{trimmed}")
        };
        // At most two parses (it was three): every call parses its settings,
        // and a URL parse is a few µs in the component (getEntity's whole
        // guest time is ~40 µs). `set_path` would save one more but brings
        // in url's mutation code (+4.4 KB).
        let url = Url::parse(&with_scheme).map_err(|e| match e {
            // The IDNA back end is the no-op adapter (see Cargo.toml): only
            // ASCII host names parse.
            url::ParseError::IdnaError => bad(&format!(
                "'{trimmed}' has a non-ASCII host name; use its ASCII (xn--) form"
            )),
            e => bad(&format!("'{trimmed}' is not a URL ({e})")),
        })?;
        // Special-scheme hosts come out of the parser lowercased.
        let host = url.host_str().ok_or_else(|| bad("has no host"))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(host) => {}
            "http" => {
                return Err(bad(
                    "must use https:// (http:// is only accepted for localhost)",
                ));
            }
            other => return Err(bad(&format!("has unsupported scheme '{other}'"))),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not contain credentials"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must not contain a query or fragment"));
        }
        let path = url.path().trim_end_matches('/');
        let path_ok = path.is_empty() || {
            let rest = path.strip_prefix("/api/data").unwrap_or("?");
            rest.is_empty() || is_version_segment(rest.trim_start_matches('/'))
        };
        if !path_ok {
            return Err(bad(&format!(
                "has an unexpected path '{path}' (expected nothing or /api/data/v9.2)"
            )));
        }
        // `org.api.crm.dynamics.com` is the same environment as `org.crm.dynamics.com`.
        let root = match host.split_once(".api.") {
            Some((org, rest)) if rest.ends_with("dynamics.com") => {
                let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
                format!("{}://{org}.{rest}{port}{API_PATH}", url.scheme())
            }
            _ => format!("{}{API_PATH}", &url[..url::Position::BeforePath]),
        };
        // Already the service root (given in full): no second parse.
        if url.as_str() == root {
            return Ok(WebApiUrl { service_root: url });
        }
        let service_root = Url::parse(&root).map_err(|e| bad(&e.to_string()))?;
        Ok(WebApiUrl { service_root })
    }

    /// `https://org.crm.dynamics.com` without a trailing slash.
    pub fn origin(&self) -> &str {
        &self.service_root[..url::Position::BeforePath]
    }

    pub fn service_root(&self) -> &Url {
        &self.service_root
    }

    /// A URL under the service root, e.g. `resource("WhoAmI")`.
    pub fn resource(&self, relative: &str) -> Result<Url> {
        self.service_root.join(relative).map_err(|e| {
            ConnectorError::invalid_input(
                "url",
                format!("cannot form a URL from '{relative}': {e}"),
            )
        })
    }

    /// Whether `url` points at this environment (same scheme, host and port):
    /// anything else must never receive the token.
    pub fn is_same_origin(&self, url: &Url) -> bool {
        let root = &self.service_root;
        url.scheme() == root.scheme()
            && url.host_str().map(str::to_ascii_lowercase) == root.host_str().map(str::to_string)
            && url.port_or_known_default() == root.port_or_known_default()
    }
}

fn is_version_segment(s: &str) -> bool {
    s.strip_prefix('v')
        .map(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .unwrap_or(false)
}

pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// The validated settings of either connection type.
#[derive(Debug, Clone)]
pub struct Settings {
    pub kind: ConnectionType,
    pub web_api: WebApiUrl,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub token_url: Url,
    /// The consent endpoint; only the authorization code flow has one.
    pub authorize_url: Option<Url>,
    pub redirect_uri: Option<String>,
    /// Space-separated scopes to ask for.
    pub scopes: String,
    /// When present, only these action keys may run (default-deny).
    pub allowed_operations: Option<Vec<String>>,
    /// A certificate credential instead of the client secret.
    pub certificate: Option<CertificateSettings>,
    /// How every action retries (the `retryPolicy` setting; see [`crate::retry`]).
    pub retry: RetryPolicy,
}

/// The inputs of a certificate credential, parsed lazily by
/// [`crate::assertion::CertificateCredential::parse`].
#[derive(Debug, Clone)]
pub struct CertificateSettings {
    /// PKCS#8 private key PEM, optionally followed by the certificate.
    pub pem: Secret,
    pub thumbprint: Option<String>,
    pub algorithm: Option<String>,
}

const AUTH_CODE_KEYS: &[&str] = &[
    "webApiUrl",
    "region",
    "scopes",
    "clientId",
    "clientSecret",
    "authorizeUrl",
    "tokenUrl",
    "tenantId",
    "redirectUri",
    "allowedOperations",
    "retryPolicy",
];
const CLIENT_CREDENTIALS_KEYS: &[&str] = &[
    "webApiUrl",
    "region",
    "tokenUrl",
    "scopes",
    "clientId",
    "clientSecret",
    "certificatePem",
    "certificateThumbprint",
    "assertionAlgorithm",
    "allowedOperations",
    "retryPolicy",
];

impl Settings {
    /// Parses the connection inputs (a JSON object keyed as in connector.yaml).
    pub fn parse(kind: ConnectionType, json: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(json).map_err(|e| {
            ConnectorError::invalid_input(
                "connection",
                format!("settings are not valid JSON ({e})"),
            )
        })?;
        let Value::Object(map) = value else {
            return Err(ConnectorError::invalid_input(
                "connection",
                "settings must be a JSON object",
            ));
        };
        let known = match kind {
            ConnectionType::AuthCode => AUTH_CODE_KEYS,
            ConnectionType::ClientCredentials => CLIENT_CREDENTIALS_KEYS,
        };
        if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ConnectorError::invalid_input(
                unknown.clone(),
                format!(
                    "is not a setting of {} (known: {})",
                    kind.key(),
                    known.join(", ")
                ),
            ));
        }
        let url_text = required_str(&map, "webApiUrl")?;
        let web_api = match optional_str(&map, "region")? {
            Some(region) if !region.is_empty() => {
                WebApiUrl::from_org_and_region(&url_text, &region)?
            }
            _ => WebApiUrl::parse(&url_text)?,
        };
        let client_id = required_str(&map, "clientId")?;
        let client_secret = optional_str(&map, "clientSecret")?.map(Secret::new);
        let tenant = optional_str(&map, "tenantId")?.unwrap_or_else(|| "organizations".into());
        let token_url = match (kind, optional_str(&map, "tokenUrl")?) {
            (_, Some(t)) => endpoint_url("tokenUrl", &t)?,
            (ConnectionType::ClientCredentials, None) => {
                return Err(ConnectorError::invalid_input(
                    "tokenUrl",
                    "is required (https://login.microsoftonline.com/<tenant id>/oauth2/v2.0/token)",
                ));
            }
            (ConnectionType::AuthCode, None) => endpoint_url(
                "tokenUrl",
                &format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"),
            )?,
        };
        let authorize_url = match (kind, optional_str(&map, "authorizeUrl")?) {
            (ConnectionType::ClientCredentials, _) => None,
            (ConnectionType::AuthCode, Some(a)) => Some(endpoint_url("authorizeUrl", &a)?),
            // Default to the authorize endpoint beside the token endpoint.
            (ConnectionType::AuthCode, None) => {
                let guess = token_url
                    .as_str()
                    .strip_suffix("/token")
                    .map(|p| format!("{p}/authorize"))
                    .unwrap_or_else(|| {
                        format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize")
                    });
                Some(endpoint_url("authorizeUrl", &guess)?)
            }
        };
        let scopes = match optional_str(&map, "scopes")? {
            Some(s) if !s.trim().is_empty() => s.split_whitespace().collect::<Vec<_>>().join(" "),
            _ => match kind {
                ConnectionType::ClientCredentials => format!("{}/.default", web_api.origin()),
                ConnectionType::AuthCode => {
                    format!("{}/user_impersonation offline_access", web_api.origin())
                }
            },
        };
        let certificate = optional_str(&map, "certificatePem")?
            .filter(|p| !p.is_empty())
            .map(|pem| -> Result<CertificateSettings> {
                Ok(CertificateSettings {
                    pem: Secret::new(pem),
                    thumbprint: optional_str(&map, "certificateThumbprint")?,
                    algorithm: optional_str(&map, "assertionAlgorithm")?,
                })
            })
            .transpose()?;
        if kind == ConnectionType::ClientCredentials
            && certificate.is_none()
            && client_secret.as_ref().is_none_or(Secret::is_empty)
        {
            return Err(ConnectorError::invalid_input(
                "clientSecret",
                "is required (or a certificate credential: certificatePem)",
            ));
        }
        let allowed_operations = match map.get("allowedOperations") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| {
                        v.as_str().map(str::to_string).ok_or_else(|| {
                            ConnectorError::invalid_input(
                                "allowedOperations",
                                "must be a list of action keys",
                            )
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
            Some(_) => {
                return Err(ConnectorError::invalid_input(
                    "allowedOperations",
                    "must be a list of action keys",
                ));
            }
        };
        let retry = match map.get("retryPolicy") {
            None | Some(Value::Null) => RetryPolicy::default(),
            // Builders often hand JSON settings over as text.
            Some(Value::String(text)) => {
                let parsed: Value = serde_json::from_str(text).map_err(|e| {
                    ConnectorError::invalid_input("retryPolicy", format!("is not JSON ({e})"))
                })?;
                RetryPolicy::from_setting(&parsed)?
            }
            Some(v) => RetryPolicy::from_setting(v)?,
        };
        Ok(Settings {
            kind,
            web_api,
            client_id,
            client_secret,
            token_url,
            authorize_url,
            redirect_uri: optional_str(&map, "redirectUri")?,
            scopes,
            allowed_operations,
            certificate,
            retry,
        })
    }

    /// Whether the scopes ask for a refresh token.
    pub fn wants_refresh_token(&self) -> bool {
        self.scopes.split(' ').any(|s| s == "offline_access")
    }
}

fn required_str(map: &Map<String, Value>, key: &str) -> Result<String> {
    optional_str(map, key)?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ConnectorError::invalid_input(key, "is required"))
}

fn optional_str(map: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(ConnectorError::invalid_input(key, "must be a string")),
    }
}

/// An identity-platform endpoint: https, or http on loopback.
fn endpoint_url(key: &str, text: &str) -> Result<Url> {
    let url = Url::parse(text)
        .map_err(|e| ConnectorError::invalid_input(key, format!("'{text}' is not a URL ({e})")))?;
    let host = url.host_str().unwrap_or("");
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(host) => Ok(url),
        _ => Err(ConnectorError::invalid_input(
            key,
            "must be an https:// URL",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debug of settings and token state never shows a credential.
    #[test]
    fn the_shortcut_agrees_with_the_thorough_parse() {
        for input in [
            "https://org.crm.dynamics.com",
            "https://org.crm.dynamics.com/",
            "https://org.crm.dynamics.com//",
            "https://org.crm4.dynamics.com/api/data",
            "https://org.crm4.dynamics.com/api/data/v9.0",
            "https://org.crm4.dynamics.com/api/data//v9.1/",
            "https://org.crm.dynamics.com/api/data/v9.2/",
            "https://org.crm.dynamics.com:8443/api/data/v9.2/",
            "https://Org.crm.dynamics.com",
            "https://org.crm.dynamics.com:443",
            "https://org.api.crm.dynamics.com/api/data/v9.2",
            "https://user:pw@org.crm.dynamics.com",
            "https://org.crm.dynamics.com?x=1",
            "https://org.crm.dynamics.com/api/data/v9.2?x",
            "https://org.crm.dynamics.com/api/data/v9.2#f",
            "https://org.crm.dynamics.com/other",
            "https://org.crm.dynamics.com\\api",
            "https:///api/data",
            "http://org.crm.dynamics.com",
            "http://localhost:8080",
            "http://127.0.0.1:5555/api/data/v9.2/",
            "http://[::1]:80",
            "ftp://org.crm.dynamics.com",
            "org.crm.dynamics.com",
            "  https://org.crm.dynamics.com  ",
            "",
        ] {
            let usual = WebApiUrl::parse(input);
            let thorough = WebApiUrl::parse_thorough(input);
            assert_eq!(usual, thorough, "{input:?}");
        }
        // The usual forms do take the shortcut.
        assert!(WebApiUrl::parse_usual("https://org.crm.dynamics.com").is_some());
        assert!(WebApiUrl::parse_usual("http://127.0.0.1:5555").is_some());
        assert!(WebApiUrl::parse_usual("https://Org.crm.dynamics.com").is_none());
    }

    #[test]
    fn debug_redacts_credentials() {
        let secret = "CANARY-settings-secret-91ab";
        let pem = "CANARY-settings-pem-5c2d";
        for json in [
            format!(
                r#"{{"webApiUrl":"https://org.crm.dynamics.com","clientId":"c","clientSecret":"{secret}","tokenUrl":"https://login.microsoftonline.com/t/oauth2/v2.0/token"}}"#
            ),
            format!(
                r#"{{"webApiUrl":"https://org.crm.dynamics.com","clientId":"c","certificatePem":"{pem}","certificateThumbprint":"84E05C1D98BCE3A5421D225B140B36E86A3D5534","tokenUrl":"https://login.microsoftonline.com/t/oauth2/v2.0/token"}}"#
            ),
        ] {
            let settings = Settings::parse(ConnectionType::ClientCredentials, &json).unwrap();
            let shown = format!("{settings:?} {settings:#?}");
            assert!(!shown.contains(secret) && !shown.contains(pem), "{shown}");
        }
        let state = TokenState {
            access_token: "CANARY-access-7d1e".into(),
            expires_at: 1,
            refresh_token: Some("CANARY-refresh-4f0a".into()),
            scope: Some("s".into()),
        };
        let shown = format!("{state:?} {state:#?}");
        assert!(!shown.contains("CANARY"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }

    fn root(input: &str) -> String {
        WebApiUrl::parse(input).unwrap().service_root().to_string()
    }

    #[test]
    fn normalises_the_accepted_forms() {
        let want = "https://org.crm.dynamics.com/api/data/v9.2/";
        assert_eq!(root("https://org.crm.dynamics.com"), want);
        assert_eq!(root("https://org.crm.dynamics.com/"), want);
        assert_eq!(root("org.crm.dynamics.com"), want);
        assert_eq!(
            root("https://org.api.crm.dynamics.com/api/data/v9.2/"),
            want
        );
        assert_eq!(root("https://ORG.crm.dynamics.com/api/data/v9.0"), want);
        assert_eq!(
            root("https://org.crm4.dynamics.com/"),
            "https://org.crm4.dynamics.com/api/data/v9.2/"
        );
        assert_eq!(
            root("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080/api/data/v9.2/"
        );
        assert_eq!(root("http://localhost"), "http://localhost/api/data/v9.2/");
        let w = WebApiUrl::parse("https://Org.API.crm.dynamics.com:8443/api/data").unwrap();
        assert_eq!(w.origin(), "https://org.crm.dynamics.com:8443");
    }

    /// Inputs on which debug builds panicked inside idna or the IDNA
    /// adapter (found by the invoke and web_api_url fuzz targets; see the
    /// profile overrides in Cargo.toml): refused with an error naming the
    /// input, or kept as given, never a panic.
    #[test]
    fn hosts_idna_asserted_on_are_refused_or_kept() {
        for text in [
            "https://Ä.Contoso.com",
            "https://É%41.Org.com/x",
            "https:///\r5555%5\r\r5\u{e956}\r&7B88888888\n\n\n888888888\u{fffd}\"",
        ] {
            let e = WebApiUrl::parse(text).unwrap_err();
            assert!(
                matches!(&e.kind, crate::error::ErrorKind::InvalidInput { input } if input == "webApiUrl"),
                "{text:?}: {e:?}"
            );
        }
        // U+200F (right-to-left mark) as punycode: the no-op adapter cannot
        // check punycode, so the ASCII host stays as given (DNS will not
        // know it); what matters is that it is no panic.
        let w = WebApiUrl::parse("https://xn--3ug.xn--a-ygn.crm.dynamics.com").unwrap();
        assert_eq!(w.origin(), "https://xn--3ug.xn--a-ygn.crm.dynamics.com");
    }

    #[test]
    fn rejects_bad_urls_naming_the_input() {
        for bad in [
            "",
            "http://org.crm.dynamics.com",
            "ftp://org.crm.dynamics.com",
            "https://org.crm.dynamics.com/foo",
            "https://org.crm.dynamics.com/?x=1",
            "https://user:pw@org.crm.dynamics.com",
            "https://",
            "not a url at all",
        ] {
            let e = WebApiUrl::parse(bad).unwrap_err();
            assert_eq!(
                e.kind,
                crate::error::ErrorKind::InvalidInput {
                    input: "webApiUrl".into()
                },
                "{bad}"
            );
        }
    }

    /// Dataverse hosts are ASCII; a non-ASCII one is an `invalid_input` on
    /// webApiUrl that says so (never a panic), and the ASCII (punycode) form
    /// of an internationalised name is accepted.
    #[test]
    fn non_ascii_host_is_invalid_input() {
        for bad in [
            "https://contoßo.crm.dynamics.com",
            "bücher.crm4.dynamics.com",
        ] {
            let e = WebApiUrl::parse(bad).unwrap_err();
            assert_eq!(
                e.kind,
                crate::error::ErrorKind::InvalidInput {
                    input: "webApiUrl".into()
                },
                "{bad}"
            );
            assert!(e.message.contains("non-ASCII host"), "{bad}: {}", e.message);
        }
        let w = WebApiUrl::parse("https://xn--bcher-kva.crm4.dynamics.com").unwrap();
        assert_eq!(w.origin(), "https://xn--bcher-kva.crm4.dynamics.com");
    }

    #[test]
    fn short_form_org_and_region() {
        let w = WebApiUrl::from_org_and_region("contoso", "crm4").unwrap();
        assert_eq!(w.origin(), "https://contoso.crm4.dynamics.com");
        let e = WebApiUrl::from_org_and_region("contoso", "crm99").unwrap_err();
        assert_eq!(
            e.kind,
            crate::error::ErrorKind::InvalidInput {
                input: "region".into()
            }
        );
        assert!(e.message.contains("crm11"), "lists the valid codes");
        let e = WebApiUrl::from_org_and_region("con toso", "crm").unwrap_err();
        assert_eq!(
            e.kind,
            crate::error::ErrorKind::InvalidInput {
                input: "webApiUrl".into()
            }
        );
    }

    #[test]
    fn same_origin_check() {
        let w = WebApiUrl::parse("https://org.crm.dynamics.com").unwrap();
        assert!(
            w.is_same_origin(&Url::parse("https://org.crm.dynamics.com/api/data/v9.2/x").unwrap())
        );
        assert!(w.is_same_origin(&Url::parse("https://ORG.crm.dynamics.com:443/x").unwrap()));
        assert!(!w.is_same_origin(&Url::parse("https://evil.example/api/data/v9.2/x").unwrap()));
        assert!(!w.is_same_origin(&Url::parse("http://org.crm.dynamics.com/x").unwrap()));
    }

    #[test]
    fn settings_defaults_and_unknown_keys() {
        let s = Settings::parse(
            ConnectionType::ClientCredentials,
            r#"{"webApiUrl":"https://org.crm.dynamics.com","clientId":"c","clientSecret":"s","tokenUrl":"https://login.microsoftonline.com/t/oauth2/v2.0/token"}"#,
        )
        .unwrap();
        assert_eq!(s.scopes, "https://org.crm.dynamics.com/.default");
        let a = Settings::parse(
            ConnectionType::AuthCode,
            r#"{"webApiUrl":"https://org.crm.dynamics.com","clientId":"c"}"#,
        )
        .unwrap();
        assert_eq!(
            a.scopes,
            "https://org.crm.dynamics.com/user_impersonation offline_access"
        );
        assert_eq!(
            a.authorize_url.as_ref().map(Url::as_str),
            Some("https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize")
        );
        assert_eq!(
            s.authorize_url, None,
            "client credentials have no consent step"
        );
        assert_eq!(a.retry, RetryPolicy::default());
        let r = Settings::parse(
            ConnectionType::AuthCode,
            r#"{"webApiUrl":"https://org.crm.dynamics.com","clientId":"c","retryPolicy":{"maxRetries":1}}"#,
        )
        .unwrap();
        assert_eq!(r.retry.max_retries, 1);
        let e = Settings::parse(
            ConnectionType::AuthCode,
            r#"{"webApiUrl":"x","clientid":"c"}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.kind,
            crate::error::ErrorKind::InvalidInput {
                input: "clientid".into()
            }
        );
    }
}
