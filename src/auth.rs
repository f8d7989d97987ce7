//! OAuth 2.0 against the Microsoft identity platform: client credentials, the
//! authorization code flow with PKCE (S256), and refresh.

use crate::assertion::CertificateCredential;
use crate::connection::{Settings, TokenState};
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::http::{Method, Platform, Request};
use crate::secret::{self, Secret};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The fixed `client_assertion_type` of certificate credentials.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Tokens are renewed this many seconds before they expire, so that a token
/// never dies in flight.
pub const EXPIRY_MARGIN_SECS: u64 = 120;

/// The first leg of the authorization code flow.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub url: String,
    pub state: String,
    pub code_verifier: String,
    pub warnings: Vec<String>,
}

/// Builds the consent URL with a fresh `state` and PKCE S256 challenge.
pub fn authorize_url(platform: &mut dyn Platform, settings: &Settings) -> Result<AuthorizeRequest> {
    let redirect_uri = settings.redirect_uri.as_deref().ok_or_else(|| {
        ConnectorError::invalid_input("redirectUri", "is required for the authorization code flow")
    })?;
    let state = URL_SAFE_NO_PAD.encode(platform.random_bytes(16));
    let code_verifier = URL_SAFE_NO_PAD.encode(platform.random_bytes(32));
    let challenge = pkce_challenge(&code_verifier);
    let mut url = settings.authorize_url.clone().ok_or_else(|| {
        ConnectorError::invalid_input(
            "connection",
            "only an oauth2AuthCode connection has an authorize URL",
        )
    })?;
    url.query_pairs_mut()
        .append_pair("client_id", &settings.client_id)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("response_mode", "query")
        .append_pair("scope", &settings.scopes)
        .append_pair("state", &state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let mut warnings = Vec::new();
    if !settings.wants_refresh_token() {
        warnings.push(
            "scopes lack offline_access: no refresh token will be issued, so the connection must be re-authorised every hour".to_string(),
        );
    }
    Ok(AuthorizeRequest {
        url: url.to_string(),
        state,
        code_verifier,
        warnings,
    })
}

/// `BASE64URL(SHA256(verifier))`, RFC 7636 §4.2.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Client credentials grant, with the certificate credential when the
/// connection has one, else with the client secret.
pub fn client_credentials(platform: &mut dyn Platform, settings: &Settings) -> Result<TokenState> {
    if let Some(cert) = &settings.certificate {
        let credential = CertificateCredential::parse(
            &cert.pem,
            cert.thumbprint.as_deref(),
            cert.algorithm.as_deref(),
        )?;
        let assertion = Secret::new(credential.assertion(
            platform,
            &settings.client_id,
            settings.token_url.as_str(),
        )?);
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", settings.client_id.as_str()),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.expose()),
            ("scope", settings.scopes.as_str()),
        ];
        return token_request(platform, settings, &form, &[&assertion, &cert.pem]);
    }
    let secret = settings
        .client_secret
        .clone()
        .ok_or_else(|| ConnectorError::invalid_input("clientSecret", "is required"))?;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", settings.client_id.as_str()),
        ("client_secret", secret.expose()),
        ("scope", settings.scopes.as_str()),
    ];
    token_request(platform, settings, &form, &[&secret])
}

/// Redeems an authorization code (with the PKCE verifier).
pub fn exchange_code(
    platform: &mut dyn Platform,
    settings: &Settings,
    code: &str,
    code_verifier: &str,
) -> Result<TokenState> {
    if code.trim().is_empty() {
        return Err(ConnectorError::invalid_input("code", "is empty"));
    }
    let redirect_uri = settings.redirect_uri.as_deref().ok_or_else(|| {
        ConnectorError::invalid_input("redirectUri", "is required for the authorization code flow")
    })?;
    let code = Secret::new(code);
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("client_id", settings.client_id.as_str()),
        ("code", code.expose()),
        ("redirect_uri", redirect_uri),
        ("code_verifier", code_verifier),
        ("scope", settings.scopes.as_str()),
    ];
    let secret = settings.client_secret.clone().unwrap_or_default();
    if !secret.is_empty() {
        form.push(("client_secret", secret.expose()));
    }
    token_request(platform, settings, &form, &[&secret, &code])
}

/// Refresh token grant. Keeps the old refresh token when the answer has none.
pub fn refresh(
    platform: &mut dyn Platform,
    settings: &Settings,
    refresh_token: &str,
) -> Result<TokenState> {
    let rt = Secret::new(refresh_token);
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("client_id", settings.client_id.as_str()),
        ("refresh_token", rt.expose()),
        ("scope", settings.scopes.as_str()),
    ];
    let secret = settings.client_secret.clone().unwrap_or_default();
    if !secret.is_empty() {
        form.push(("client_secret", secret.expose()));
    }
    let mut state = token_request(platform, settings, &form, &[&secret, &rt])?;
    if state.refresh_token.is_none() {
        state.refresh_token = Some(refresh_token.to_string());
    }
    Ok(state)
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<serde_json::Value>,
    refresh_token: Option<String>,
    scope: Option<String>,
}

#[derive(Deserialize)]
struct TokenErrorResponse {
    error: String,
    #[serde(default)]
    error_description: String,
    #[serde(default)]
    error_codes: Vec<u64>,
}

/// Every error that leaves here is scrubbed of the secrets the request
/// carried: an endpoint (or a proxy) may echo them, and serde quotes the
/// values it could not parse.
fn token_request(
    platform: &mut dyn Platform,
    settings: &Settings,
    form: &[(&str, &str)],
    secrets: &[&Secret],
) -> Result<TokenState> {
    send_token_request(platform, settings, form).map_err(|e| {
        let secrets: Vec<&str> = secrets.iter().map(|s| s.expose()).collect();
        secret::scrub_error(e, &secrets)
    })
}

fn send_token_request(
    platform: &mut dyn Platform,
    settings: &Settings,
    form: &[(&str, &str)],
) -> Result<TokenState> {
    let request = Request::new(Method::Post, settings.token_url.clone())
        .header("Accept", "application/json")
        .form_body(form);
    let response = platform.send(&request)?;
    if response.is_success() {
        let parsed: TokenResponse = serde_json::from_slice(&response.body).map_err(|e| {
            ConnectorError::transport(format!(
                "the token endpoint's answer is not a token response ({e})"
            ))
            .with_status(response.status)
        })?;
        // Some endpoints send expires_in as a string.
        let expires_in = match &parsed.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(3600),
            Some(serde_json::Value::String(s)) => s.parse().unwrap_or(3600),
            _ => 3600,
        };
        return Ok(TokenState {
            access_token: parsed.access_token,
            expires_at: platform.now_unix().saturating_add(expires_in),
            refresh_token: parsed.refresh_token,
            scope: parsed.scope,
        });
    }
    Err(token_error(response.status, &response.body))
}

/// Maps an identity-platform error body to a typed error with the AADSTS code.
fn token_error(status: u16, body: &[u8]) -> ConnectorError {
    let Ok(parsed) = serde_json::from_slice::<TokenErrorResponse>(body) else {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).to_string();
        return ConnectorError::unauthorized(format!(
            "token endpoint answered HTTP {status}: {text}"
        ))
        .with_status(status);
    };
    // error_description is "AADSTS7000215: text\r\nTrace ID: …"; keep the first line.
    let first_line = parsed
        .error_description
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let aadsts = parsed
        .error_codes
        .first()
        .map(|c| format!("AADSTS{c}"))
        .or_else(|| {
            first_line
                .split(':')
                .next()
                .filter(|p| p.starts_with("AADSTS"))
                .map(str::to_string)
        });
    let message = if first_line.is_empty() {
        format!("token endpoint refused the request: {}", parsed.error)
    } else {
        format!(
            "token endpoint refused the request ({}): {first_line}",
            parsed.error
        )
    };
    let kind = match parsed.error.as_str() {
        "invalid_scope" => ErrorKind::InvalidInput {
            input: "scopes".into(),
        },
        "temporarily_unavailable" => ErrorKind::Transport,
        _ => ErrorKind::Unauthorized,
    };
    let hint = aadsts.as_deref().and_then(aadsts_hint).map(str::to_string);
    ConnectorError {
        kind,
        status: Some(status),
        code: aadsts,
        message,
        hint,
        retryable: parsed.error == "temporarily_unavailable",
    }
}

fn aadsts_hint(code: &str) -> Option<&'static str> {
    Some(match code {
        "AADSTS7000215" => {
            "Invalid client secret: use the secret's Value, not its Secret ID, and check it has not been rotated."
        }
        "AADSTS7000222" => {
            "The client secret has expired: create a new one in the app registration."
        }
        "AADSTS700016" => {
            "The client id is not registered in this tenant: check the tenant in the token URL and the Application (client) ID."
        }
        "AADSTS70011" => {
            "The scope is not valid: for Dataverse use https://<org>.crm.dynamics.com/.default (client credentials)."
        }
        "AADSTS90002" => "Tenant not found: check the tenant id in the token URL.",
        "AADSTS700082" | "AADSTS50173" | "AADSTS70008" => {
            "The refresh token has expired or was revoked: reconnect (sign in again)."
        }
        "AADSTS54005" => "This authorization code was already redeemed: start the sign-in again.",
        "AADSTS501481" => {
            "The PKCE code_verifier does not match the challenge: start the sign-in again."
        }
        "AADSTS70000" => "The authorization code is invalid or expired: start the sign-in again.",
        "AADSTS700027" => {
            "The certificate is not registered on the app, or the key does not match it: upload the certificate (its public part) to the app registration."
        }
        "AADSTS700024" => {
            "The client assertion is outside its validity window: check this machine's clock."
        }
        "AADSTS70002" | "AADSTS50012" => {
            "The client assertion's audience must be the token URL of the app's tenant."
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::ConnectionType;
    use crate::http::fake::ByUrl;

    /// Found by the token_and_error_bodies fuzz target: serde quoted the
    /// secret an endpoint echoed as a JSON string.
    #[test]
    fn a_token_answer_echoing_the_secret_is_an_error_without_it() {
        const SECRET: &str = "CANARYechoed-secret-42";
        let settings = Settings::parse(
            ConnectionType::ClientCredentials,
            &format!(
                r#"{{"webApiUrl":"https://org.crm.dynamics.com","clientId":"c","clientSecret":"{SECRET}","tokenUrl":"https://login.microsoftonline.com/t/oauth2/v2.0/token"}}"#
            ),
        )
        .unwrap();
        for body in [
            format!("\"{SECRET}\""),
            format!(r#"{{"access_token":1,"x":"{SECRET}"}}"#),
            format!(r#"["{SECRET}"]"#),
        ] {
            let e = client_credentials(&mut ByUrl::new(vec![("", 200, body.clone())]), &settings)
                .unwrap_err();
            let all = format!("{} {:?}", e.message, e.hint);
            assert!(!all.contains(SECRET), "{body} -> {all}");
            assert!(all.contains("not a token response"), "{all}");
        }
    }

    #[test]
    fn pkce_matches_rfc7636_example() {
        // RFC 7636 Appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn aadsts_error_is_typed() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1\r\nCorrelation ID: 2\r\nTimestamp: 2025-01-01 00:00:00Z","error_codes":[7000215]}"#;
        let e = token_error(401, body);
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        assert_eq!(e.code.as_deref(), Some("AADSTS7000215"));
        assert!(e.message.contains("Invalid client secret provided."));
        assert!(!e.message.contains("Trace ID"));
        assert!(e.hint.unwrap().contains("Value"));
    }
}
