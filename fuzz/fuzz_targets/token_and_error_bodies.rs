//! Token-endpoint answers (success and error JSON, or anything else) through
//! the three OAuth flows, and Dataverse error bodies (`from_web_api`,
//! `parse_json`, service-protection detection). Secrets sent in the request
//! must never come back in an error, even when the server echoes them.
#![no_main]

use arbitrary::Arbitrary;
use d365_connector::auth;
use d365_connector::connection::{ConnectionType, Settings};
use d365_connector::error::{ConnectorError, Result};
use d365_connector::http::{Platform, Request, Response};
use d365_connector::{client, retry};
use d365_fuzz::{CANARY_REFRESH, CANARY_SECRET};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    flow: u8,
    status: u16,
    retry_after: Option<u32>,
    /// Where to splice a secret into the body (the server echoing it).
    echo: Option<(u16, bool)>,
    body: &'a [u8],
}

/// Answers one request with a fixed response.
struct OneShot(Option<Response>);

impl Platform for OneShot {
    fn send(&mut self, _: &Request) -> Result<Response> {
        self.0
            .take()
            .ok_or_else(|| ConnectorError::transport("only one answer"))
    }
    fn now_unix(&self) -> u64 {
        1_700_000_000
    }
    fn sleep_ms(&mut self, _: u64) {}
    fn random_bytes(&mut self, len: usize) -> Vec<u8> {
        vec![7; len]
    }
}

/// The secrets the request carried must not come back in the error.
fn check_error(e: &ConnectorError, sent: &[&str]) {
    let all = format!("{} {:?} {:?} {:?}", e.message, e.hint, e.code, e.kind);
    for secret in sent {
        assert!(!all.contains(secret), "token error leaks a secret: {all}");
    }
}

fuzz_target!(|i: Input<'_>| {
    let mut body = i.body.to_vec();
    if let Some((at, which)) = i.echo {
        let at = usize::from(at).min(body.len());
        let secret = if which { CANARY_SECRET } else { CANARY_REFRESH };
        body.splice(at..at, secret.bytes());
    }
    let response = Response {
        status: i.status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body,
    };

    // Dataverse error bodies.
    let e = ConnectorError::from_web_api(i.status, i.retry_after, &response.body);
    assert_eq!(e.status, Some(i.status));
    assert!(!e.message.is_empty());
    let _ = client::parse_json(&response);
    let _ = retry::is_service_protection(&response);
    let _ = response.retry_after();

    // Token endpoint answers.
    let kind = if i.flow & 1 == 0 {
        ConnectionType::ClientCredentials
    } else {
        ConnectionType::AuthCode
    };
    let mut settings = serde_json::json!({
        "webApiUrl": "https://org.crm.dynamics.com",
        "clientId": "c",
        "clientSecret": CANARY_SECRET,
        "tokenUrl": "https://login.microsoftonline.com/t/oauth2/v2.0/token",
    });
    if kind == ConnectionType::AuthCode {
        settings["redirectUri"] = "https://app.example.com/cb".into();
    }
    let settings = Settings::parse(kind, &settings.to_string()).expect("fixed settings parse");
    let mut platform = OneShot(Some(response));
    // Client credentials sends only the client secret; the other flows
    // send the refresh token or the authorization code as well.
    let sent: &[&str] = match kind {
        ConnectionType::ClientCredentials => &[CANARY_SECRET],
        ConnectionType::AuthCode => &[CANARY_SECRET, CANARY_REFRESH],
    };
    let result = match (kind, i.flow >> 1 & 1) {
        (ConnectionType::ClientCredentials, _) => {
            auth::client_credentials(&mut platform, &settings)
        }
        (_, 0) => auth::refresh(&mut platform, &settings, CANARY_REFRESH),
        _ => auth::exchange_code(&mut platform, &settings, CANARY_REFRESH, "verifier"),
    };
    match result {
        Ok(state) => assert!(state.expires_at >= 1_700_000_000),
        Err(e) => check_error(&e, sent),
    }
});
