//! The Microsoft identity platform v2.0 endpoints, as far as a Dataverse
//! client meets them: `/{tenant}/oauth2/v2.0/token` (client_credentials with a
//! secret, authorization_code with PKCE, refresh_token) and
//! `/{tenant}/oauth2/v2.0/authorize`, which signs in a seeded user without a
//! page and redirects with a code. Errors carry `error`, `error_description`
//! (with Trace/Correlation/Timestamp lines), `error_codes`, `timestamp`,
//! `trace_id`, `correlation_id` and `error_uri` as the real service does.

use super::data::{self, Directory};
use super::dates::format_datetime;
use super::response::identity_json;
use super::store::new_guid;
use super::{EmuRequest, EmuResponse, State, origin_of};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// The seeded confidential app used with client credentials. Its home is
/// [`data`] (its application user is seeded data); named here too, where
/// clients look for it.
pub use super::data::CLIENT_CREDENTIALS_APP_ID;
/// Its secret. Emulator-only; never valid anywhere else.
pub const CLIENT_CREDENTIALS_SECRET: &str = "emulator-secret~value";
/// The seeded app registration used with the authorization code flow (a
/// public client: no secret, PKCE required).
pub const AUTH_CODE_APP_ID: &str = "cccccccc-0000-1111-2222-dddddddddddd";

/// An app registration in the emulated tenant.
#[derive(Debug, Clone)]
pub struct AppRegistration {
    pub client_id: String,
    /// `None` for public clients.
    pub secret: Option<String>,
    /// The systemuser it acts as with client credentials.
    pub application_user: Option<String>,
    /// Certificates uploaded to the app (certificate credentials).
    pub certificates: Vec<RegisteredCertificate>,
}

/// The public part of a certificate credential, found by its thumbprints.
#[derive(Debug, Clone)]
pub struct RegisteredCertificate {
    pub public_key: rsa::RsaPublicKey,
    /// SHA-1 of the certificate's DER (`x5t`).
    pub sha1: Vec<u8>,
    /// SHA-256 of the certificate's DER (`x5t#S256`).
    pub sha256: Vec<u8>,
}

impl RegisteredCertificate {
    /// A certificate with DER bytes `der` certifying `public_key`.
    pub fn new(public_key: rsa::RsaPublicKey, der: &[u8]) -> Self {
        use sha1::Digest as _;
        RegisteredCertificate {
            public_key,
            sha1: sha1::Sha1::digest(der).to_vec(),
            sha256: Sha256::digest(der).to_vec(),
        }
    }
}

/// The fixed `client_assertion_type` of certificate credentials.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Debug, Clone)]
struct IssuedCode {
    client_id: String,
    redirect_uri: String,
    challenge: Option<(String, String)>,
    scope: String,
    user_id: String,
    expires_at: u64,
    redeemed: bool,
}

#[derive(Debug, Clone)]
pub struct AccessGrant {
    /// The systemuser the token acts as.
    pub user_id: String,
    pub client_id: String,
    pub expires_at: u64,
}

#[derive(Debug, Clone)]
struct RefreshGrant {
    client_id: String,
    user_id: String,
    scope: String,
    revoked: bool,
}

/// Apps, codes and tokens of the emulated tenant.
pub struct Identity {
    pub apps: Vec<AppRegistration>,
    codes: HashMap<String, IssuedCode>,
    access_tokens: HashMap<String, AccessGrant>,
    refresh_tokens: HashMap<String, RefreshGrant>,
}

impl Identity {
    pub fn seeded(_directory: &Directory) -> Self {
        Identity {
            apps: vec![
                AppRegistration {
                    client_id: CLIENT_CREDENTIALS_APP_ID.into(),
                    secret: Some(CLIENT_CREDENTIALS_SECRET.into()),
                    application_user: Some(data::USER_APP.into()),
                    certificates: Vec::new(),
                },
                AppRegistration {
                    client_id: AUTH_CODE_APP_ID.into(),
                    secret: None,
                    application_user: None,
                    certificates: Vec::new(),
                },
            ],
            codes: HashMap::new(),
            access_tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
        }
    }

    /// The grant behind a bearer token, if it is known and unexpired.
    pub fn check_access_token(&self, token: &str, now: u64) -> Option<&AccessGrant> {
        self.access_tokens.get(token).filter(|g| g.expires_at > now)
    }

    pub fn expire_access_tokens(&mut self) {
        for g in self.access_tokens.values_mut() {
            g.expires_at = 0;
        }
    }

    /// Revokes every refresh token (as an admin revoking sessions would).
    pub fn revoke_refresh_tokens(&mut self) {
        for g in self.refresh_tokens.values_mut() {
            g.revoked = true;
        }
    }

    /// Uploads a certificate to an app registration.
    pub fn register_certificate(&mut self, client_id: &str, certificate: RegisteredCertificate) {
        if let Some(app) = self
            .apps
            .iter_mut()
            .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
        {
            app.certificates.push(certificate);
        }
    }

    /// Accepts `token` as an access token, as if this tenant had issued it
    /// (tests that plant a known token, e.g. secret canaries).
    pub fn grant_access_token(&mut self, token: &str, grant: AccessGrant) {
        self.access_tokens.insert(token.to_string(), grant);
    }

    /// Accepts `token` as a refresh token of `client_id` for `user_id`.
    pub fn grant_refresh_token(
        &mut self,
        token: &str,
        client_id: &str,
        user_id: &str,
        scope: &str,
    ) {
        self.refresh_tokens.insert(
            token.to_string(),
            RefreshGrant {
                client_id: client_id.to_string(),
                user_id: user_id.to_string(),
                scope: scope.to_string(),
                revoked: false,
            },
        );
    }

    fn app(&self, client_id: &str) -> Option<&AppRegistration> {
        self.apps
            .iter()
            .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
    }
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A JWT-shaped access token (unsigned; only the emulator reads it).
fn jwt_like(origin: &str, grant: &AccessGrant) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"RS256","x5t":"emulator"}"#);
    let payload = URL_SAFE_NO_PAD.encode(
        json!({
            "aud": origin,
            "iss": format!("https://sts.windows.net/{}/", data::TENANT_ID),
            "tid": data::TENANT_ID,
            "appid": grant.client_id,
            "oid": grant.user_id,
            "exp": grant.expires_at,
        })
        .to_string(),
    );
    format!("{header}.{payload}.{}", random_token(32))
}

/// Answers `/{tenant}/oauth2/v2.0/{token|authorize}`.
pub fn handle(state: &mut State, request: &EmuRequest) -> EmuResponse {
    let path = request.uri().path();
    let mut segments = path.trim_start_matches('/').split('/');
    let tenant = segments.next().unwrap_or("");
    let rest: Vec<_> = segments.collect();
    let known_tenant = [
        data::TENANT_ID,
        "organizations",
        "common",
        "contoso.onmicrosoft.com",
    ]
    .iter()
    .any(|t| t.eq_ignore_ascii_case(tenant));
    if !known_tenant {
        return aad_error(
            state,
            400,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    match (request.method().as_str(), rest.as_slice()) {
        ("POST", ["oauth2", "v2.0", "token"]) => token(state, request),
        ("GET", ["oauth2", "v2.0", "authorize"]) => authorize(state, request),
        _ => aad_error(
            state,
            404,
            "invalid_request",
            900561,
            "The endpoint only accepts POST requests.",
        ),
    }
}

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn token(state: &mut State, request: &EmuRequest) -> EmuResponse {
    let is_form = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return aad_error(
            state,
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    }
    let params = form(request.body());
    let origin = origin_of(request);
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    let client_id = get("client_id");
    if client_id.is_empty() {
        return aad_error(
            state,
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    }
    let Some(app) = state.identity.app(client_id).cloned() else {
        return aad_error(
            state,
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.",
                data::TENANT_ID
            ),
        );
    };
    // Client authentication: confidential apps prove themselves with a
    // secret or a signed assertion; public clients must send neither.
    let secret = params.get("client_secret");
    if let Some(assertion_type) = params.get("client_assertion_type") {
        if assertion_type != JWT_BEARER {
            return aad_error(
                state,
                400,
                "invalid_request",
                70002,
                "Error validating credentials. The client_assertion_type is not supported.",
            );
        }
        let expected_aud = format!("{origin}{}", request.uri().path());
        if let Err(response) = verify_assertion(state, &app, get("client_assertion"), &expected_aud)
        {
            return response;
        }
    } else {
        match (&app.secret, secret) {
            (Some(_), None) => {
                return aad_error(
                    state,
                    401,
                    "invalid_client",
                    7000218,
                    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                );
            }
            (Some(expected), Some(given)) if expected != given => {
                return aad_error(
                    state,
                    401,
                    "invalid_client",
                    7000215,
                    &format!(
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                        app.client_id
                    ),
                );
            }
            (None, Some(_)) => {
                return aad_error(
                    state,
                    401,
                    "invalid_client",
                    700025,
                    "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
                );
            }
            _ => {}
        }
    }
    match get("grant_type") {
        "client_credentials" => {
            let scope = get("scope");
            let expected = format!("{origin}/.default");
            if scope != expected {
                return aad_error(
                    state,
                    400,
                    "invalid_scope",
                    70011,
                    &format!(
                        "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid. Use {expected}."
                    ),
                );
            }
            let Some(user) = app.application_user.clone() else {
                return aad_error(
                    state,
                    400,
                    "unauthorized_client",
                    700016,
                    "The application is not configured for client credentials in this tenant.",
                );
            };
            issue(state, &origin, &app.client_id, &user, None, None)
        }
        "authorization_code" => {
            let code = get("code").to_string();
            let now = state.now();
            let Some(issued) = state.identity.codes.get_mut(&code) else {
                return aad_error(
                    state,
                    400,
                    "invalid_grant",
                    70000,
                    "The provided value for the 'code' parameter is not valid.",
                );
            };
            if issued.redeemed {
                return aad_error(
                    state,
                    400,
                    "invalid_grant",
                    54005,
                    "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
                );
            }
            issued.redeemed = true;
            let issued = issued.clone();
            if issued.expires_at <= now {
                return aad_error(
                    state,
                    400,
                    "invalid_grant",
                    70008,
                    "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
                );
            }
            if !issued.client_id.eq_ignore_ascii_case(client_id) {
                return aad_error(
                    state,
                    400,
                    "invalid_grant",
                    70000,
                    "The code was issued to another client.",
                );
            }
            if issued.redirect_uri != get("redirect_uri") {
                return aad_error(
                    state,
                    400,
                    "invalid_grant",
                    50148,
                    "The redirect_uri does not match the one used when the authorization code was requested.",
                );
            }
            if let Some((challenge, method)) = &issued.challenge {
                let verifier = get("code_verifier");
                let computed = if method == "S256" {
                    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
                } else {
                    verifier.to_string()
                };
                if verifier.is_empty() || &computed != challenge {
                    return aad_error(
                        state,
                        400,
                        "invalid_grant",
                        501481,
                        "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                    );
                }
            }
            let scope = issued.scope.clone();
            let offline = scope.split(' ').any(|s| s == "offline_access");
            issue(
                state,
                &origin,
                &issued.client_id,
                &issued.user_id,
                Some(scope),
                Some(offline),
            )
        }
        "refresh_token" => {
            let rt = get("refresh_token").to_string();
            let Some(grant) = state.identity.refresh_tokens.get(&rt).cloned() else {
                return aad_error(
                    state,
                    400,
                    "invalid_grant",
                    9002313,
                    "Invalid request. Request is malformed or invalid.",
                );
            };
            if grant.revoked {
                return aad_error(
                    state,
                    400,
                    "invalid_grant",
                    50173,
                    "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.",
                );
            }
            if !grant.client_id.eq_ignore_ascii_case(client_id) {
                return aad_error(
                    state,
                    400,
                    "invalid_grant",
                    70000,
                    "The refresh token was issued to another client.",
                );
            }
            issue(
                state,
                &origin,
                &grant.client_id,
                &grant.user_id,
                Some(grant.scope),
                Some(true),
            )
        }
        "" => aad_error(
            state,
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        ),
        other => aad_error(
            state,
            400,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{other}'."),
        ),
    }
}

/// Issues an access token (and a refresh token for delegated flows that
/// asked for offline_access).
fn issue(
    state: &mut State,
    origin: &str,
    client_id: &str,
    user_id: &str,
    scope: Option<String>,
    refresh: Option<bool>,
) -> EmuResponse {
    let lifetime = state.config.access_token_lifetime;
    let grant = AccessGrant {
        user_id: user_id.to_string(),
        client_id: client_id.to_string(),
        expires_at: state.now() + lifetime,
    };
    let access_token = jwt_like(origin, &grant);
    state
        .identity
        .access_tokens
        .insert(access_token.clone(), grant);
    let mut body = json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access_token,
    });
    if let Some(scope) = &scope {
        // Entra reports the granted resource scopes, without offline_access.
        let granted: Vec<_> = scope
            .split(' ')
            .filter(|s| *s != "offline_access")
            .collect();
        body["scope"] = json!(granted.join(" "));
    }
    if refresh == Some(true) {
        let rt = format!("1.{}", random_token(48));
        state.identity.refresh_tokens.insert(
            rt.clone(),
            RefreshGrant {
                client_id: client_id.to_string(),
                user_id: user_id.to_string(),
                scope: scope.unwrap_or_default(),
                revoked: false,
            },
        );
        body["refresh_token"] = json!(rt);
    }
    identity_json(200, &body)
}

/// The authorize leg: no sign-in page; the user is the seeded Ana Ruiz, or
/// the user named by `login_hint`. Redirects with `code` and `state`.
fn authorize(state: &mut State, request: &EmuRequest) -> EmuResponse {
    let params: HashMap<String, String> = request
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    let client_id = get("client_id");
    if state.identity.app(client_id).is_none() {
        return aad_error(
            state,
            400,
            "unauthorized_client",
            700016,
            &format!("Application with identifier '{client_id}' was not found in the directory."),
        );
    }
    let redirect_uri = get("redirect_uri").to_string();
    let redirect_ok = url::Url::parse(&redirect_uri)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| h == "localhost" || h == "127.0.0.1" || u.scheme() == "https")
        })
        .unwrap_or(false);
    if !redirect_ok {
        return aad_error(
            state,
            400,
            "invalid_request",
            50011,
            "The redirect URI specified in the request does not match the redirect URIs configured for the application.",
        );
    }
    let redirect_with = |pairs: &[(&str, &str)]| -> EmuResponse {
        let mut url = url::Url::parse(&redirect_uri)
            .unwrap_or_else(|_| url::Url::parse("http://localhost/").unwrap());
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in pairs {
                q.append_pair(k, v);
            }
        }
        http::Response::builder()
            .status(302)
            .header("Location", url.to_string())
            .body(Bytes::new())
            .unwrap_or_default()
    };
    if get("response_type") != "code" {
        return redirect_with(&[
            ("error", "unsupported_response_type"),
            (
                "error_description",
                "AADSTS700054: response_type 'code' is expected.",
            ),
            ("state", get("state")),
        ]);
    }
    let challenge = match (get("code_challenge"), get("code_challenge_method")) {
        ("", _) => None,
        (c, "") | (c, "plain") => Some((c.to_string(), "plain".to_string())),
        (c, "S256") => Some((c.to_string(), "S256".to_string())),
        (_, _) => {
            return redirect_with(&[
                ("error", "invalid_request"),
                (
                    "error_description",
                    "AADSTS501491: Invalid code_challenge_method.",
                ),
                ("state", get("state")),
            ]);
        }
    };
    let public = state
        .identity
        .app(client_id)
        .is_some_and(|a| a.secret.is_none());
    if public && challenge.is_none() {
        return redirect_with(&[
            ("error", "invalid_request"),
            (
                "error_description",
                "AADSTS9002325: Proof Key for Code Exchange is required for cross-origin authorization code redemption.",
            ),
            ("state", get("state")),
        ]);
    }
    let user = match get("login_hint") {
        "" => data::USER_ANA.to_string(),
        hint => match state.directory.user_by_domain(hint) {
            Some(u) => u.id.to_string(),
            None => {
                return redirect_with(&[
                    ("error", "access_denied"),
                    (
                        "error_description",
                        "AADSTS50034: The user account does not exist in this directory.",
                    ),
                    ("state", get("state")),
                ]);
            }
        },
    };
    let code = format!("0.{}", random_token(48));
    let now = state.now();
    state.identity.codes.insert(
        code.clone(),
        IssuedCode {
            client_id: client_id.to_string(),
            redirect_uri: redirect_uri.clone(),
            challenge,
            scope: get("scope").to_string(),
            user_id: user,
            expires_at: now + 600,
            redeemed: false,
        },
    );
    redirect_with(&[("code", &code), ("state", get("state"))])
}

/// Checks a certificate-credential assertion: a known certificate (by `x5t`
/// or `x5t#S256`), a valid RS256/PS256 signature, `aud` = this token
/// endpoint, `iss` = `sub` = the client id, and the time window.
fn verify_assertion(
    state: &State,
    app: &AppRegistration,
    jwt: &str,
    expected_aud: &str,
) -> Result<(), EmuResponse> {
    use rsa::signature::Verifier as _;
    let malformed = || {
        aad_error(
            state,
            401,
            "invalid_client",
            50027,
            "JWT token is invalid or malformed.",
        )
    };
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, p, sig] = parts.as_slice() else {
        return Err(malformed());
    };
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).ok();
    let header: serde_json::Value = decode(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(malformed)?;
    let claims: serde_json::Value = decode(p)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(malformed)?;
    let signature = decode(sig).ok_or_else(malformed)?;
    let thumb = |name: &str| header.get(name).and_then(|v| v.as_str()).and_then(decode);
    let cert = match (thumb("x5t#S256"), thumb("x5t")) {
        (Some(t), _) => app.certificates.iter().find(|c| c.sha256 == t),
        (None, Some(t)) => app.certificates.iter().find(|c| c.sha1 == t),
        _ => None,
    };
    let signature_invalid = || {
        aad_error(
            state,
            401,
            "invalid_client",
            700027,
            &format!(
                "Client assertion failed signature validation. Key was found, but use of the key to verify the signature failed, or the key was not found on app '{}'.",
                app.client_id
            ),
        )
    };
    let Some(cert) = cert else {
        return Err(signature_invalid());
    };
    let message = format!("{h}.{p}");
    let verified = match header.get("alg").and_then(|v| v.as_str()) {
        Some("PS256") => rsa::pss::Signature::try_from(signature.as_slice()).is_ok_and(|s| {
            rsa::pss::VerifyingKey::<Sha256>::new(cert.public_key.clone())
                .verify(message.as_bytes(), &s)
                .is_ok()
        }),
        Some("RS256") => rsa::pkcs1v15::Signature::try_from(signature.as_slice()).is_ok_and(|s| {
            rsa::pkcs1v15::VerifyingKey::<Sha256>::new(cert.public_key.clone())
                .verify(message.as_bytes(), &s)
                .is_ok()
        }),
        _ => false,
    };
    if !verified {
        return Err(signature_invalid());
    }
    let claim = |k: &str| claims.get(k).and_then(|v| v.as_str()).unwrap_or("");
    if claim("aud") != expected_aud {
        return Err(aad_error_codes(
            state,
            401,
            "invalid_client",
            &[70002, 50012],
            "Error validating credentials. AADSTS50012: Client assertion audience claim does not match Realm issuer.",
        ));
    }
    if !claim("iss").eq_ignore_ascii_case(&app.client_id)
        || !claim("sub").eq_ignore_ascii_case(&app.client_id)
    {
        return Err(aad_error_codes(
            state,
            401,
            "invalid_client",
            &[70002, 50012],
            "Error validating credentials. AADSTS50012: Client assertion issuer and subject must be the client id.",
        ));
    }
    let now = state.now();
    let number = |k: &str| claims.get(k).and_then(|v| v.as_u64());
    let in_window = match (number("nbf"), number("exp")) {
        (Some(nbf), Some(exp)) => nbf <= now + 300 && exp > now,
        _ => false,
    };
    if !in_window {
        return Err(aad_error(
            state,
            401,
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range.",
        ));
    }
    Ok(())
}

/// An identity-platform error body, shaped like Entra's.
fn aad_error(state: &State, status: u16, error: &str, code: u64, text: &str) -> EmuResponse {
    aad_error_codes(state, status, error, &[code], text)
}

/// Like [`aad_error`] with several codes (`error_codes: [70002, 50012]`); the
/// description starts with the first.
fn aad_error_codes(
    state: &State,
    status: u16,
    error: &str,
    codes: &[u64],
    text: &str,
) -> EmuResponse {
    let code = codes.first().copied().unwrap_or(0);
    let trace = new_guid();
    let correlation = new_guid();
    let timestamp = format_timestamp(state.now());
    identity_json(
        status,
        &json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {timestamp}"
            ),
            "error_codes": codes,
            "timestamp": timestamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

/// `yyyy-MM-dd HH:mm:ssZ` from Unix seconds (UTC): the ISO form with a
/// space for its `T`.
pub fn format_timestamp(secs: u64) -> String {
    format_datetime(i64::try_from(secs).unwrap_or(i64::MAX)).replacen('T', " ", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_format() {
        assert_eq!(format_timestamp(1_735_689_600), "2025-01-01 00:00:00Z");
        assert_eq!(format_timestamp(951_782_400), "2000-02-29 00:00:00Z");
    }
}
