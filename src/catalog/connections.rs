//! The two connection types and their inputs.

use crate::catalog::def::{ConnectionDef, InputDef, InputType, input};
use serde_json::json;

fn allowed_operations() -> InputDef {
    input(
        "allowedOperations",
        "Allowed Operations",
        InputType::List,
        "Default-deny list of action keys; when present, any other action is refused before a request is sent.",
    )
}

fn region() -> InputDef {
    let text = "Short form: with webApiUrl set to just the environment name (contoso), the region code builds https://contoso.{region}.dynamics.com.";
    input("region", "Region", InputType::String, text).choices(crate::connection::REGIONS)
}

fn retry_policy() -> InputDef {
    let text = "How every action retries throttling (429, with Retry-After), 503, 502/504 and network errors; writes are retried only when they cannot have been applied. Object with any of maxRetries (default 5), baseDelayMs (1000), maxDelayMs (30000), maxRetryAfterSeconds (300), maxTotalSeconds (600).";
    input("retryPolicy", "Retry Policy", InputType::Json, text)
        .example(json!({"maxRetries": 3, "maxTotalSeconds": 120}))
}

fn web_api_url() -> InputDef {
    let text = "The environment URL, e.g. https://contoso.crm.dynamics.com; …/api/data/v9.2/ forms are accepted too.";
    input("webApiUrl", "Web API URL", InputType::String, text)
        .required()
        .example(json!("https://contoso.crm.dynamics.com"))
}

pub fn connections() -> Vec<ConnectionDef> {
    vec![
        ConnectionDef {
            key: "oauth2AuthCode",
            label: "OAuth 2.0 Authorization Code",
            description: "Delegated: acts as the signed-in Dynamics user (PKCE S256, refresh tokens).",
            inputs: vec![
                web_api_url(),
                region(),
                input(
                    "scopes",
                    "Scopes",
                    InputType::String,
                    "Space-separated. Default: {webApiUrl}/user_impersonation offline_access; without offline_access no refresh token is issued.",
                ),
                input(
                    "clientId",
                    "Client ID",
                    InputType::String,
                    "The app registration's Application (client) ID.",
                )
                .required(),
                input(
                    "clientSecret",
                    "Client Secret",
                    InputType::Password,
                    "For confidential (web) app registrations; leave empty for public clients.",
                ),
                input(
                    "authorizeUrl",
                    "Authorize URL",
                    InputType::String,
                    "Default: https://login.microsoftonline.com/{tenantId or organizations}/oauth2/v2.0/authorize.",
                ),
                input(
                    "tokenUrl",
                    "Token URL",
                    InputType::String,
                    "Default: https://login.microsoftonline.com/{tenantId or organizations}/oauth2/v2.0/token.",
                ),
                input(
                    "tenantId",
                    "Tenant ID",
                    InputType::String,
                    "Directory (tenant) ID or domain; default organizations.",
                ),
                input(
                    "redirectUri",
                    "Redirect URI",
                    InputType::String,
                    "Must equal a redirect URI registered on the app, e.g. http://localhost:8400/callback.",
                ),
                allowed_operations(),
                retry_policy(),
            ],
        },
        ConnectionDef {
            key: "oauth2ClientCredentials",
            label: "OAuth 2.0 Client Credentials",
            description: "Server-to-server as an Application User of the environment.",
            inputs: vec![
                web_api_url(),
                region(),
                {
                    let text = "https://login.microsoftonline.com/{tenant id}/oauth2/v2.0/token";
                    input("tokenUrl", "Token URL", InputType::String, text).required()
                },
                input(
                    "scopes",
                    "Scopes",
                    InputType::String,
                    "Default: {webApiUrl}/.default.",
                ),
                input(
                    "clientId",
                    "Client ID",
                    InputType::String,
                    "The app registration's Application (client) ID.",
                )
                .required(),
                input(
                    "clientSecret",
                    "Client secret value",
                    InputType::Password,
                    "The secret's Value (not its Secret ID). Required unless a certificate credential is given.",
                ),
                input(
                    "certificatePem",
                    "Certificate Private Key (PEM)",
                    InputType::Password,
                    "Certificate credential instead of a secret: the PKCS#8 private key (-----BEGIN PRIVATE KEY-----), optionally followed by the certificate.",
                ),
                input(
                    "certificateThumbprint",
                    "Certificate Thumbprint",
                    InputType::String,
                    "Hex SHA-1 thumbprint (as the Azure portal shows) or SHA-256; not needed when certificatePem includes the certificate.",
                ),
                {
                    let text = "PS256 (x5t#S256 header) or RS256 (x5t header). Default: PS256 when the SHA-256 thumbprint is known, else RS256.";
                    input(
                        "assertionAlgorithm",
                        "Assertion Algorithm",
                        InputType::String,
                        text,
                    )
                    .choices(&["PS256", "RS256"])
                },
                allowed_operations(),
                retry_policy(),
            ],
        },
    ]
}
