//! A Dataverse Web API session for one action call: the connection's
//! settings, its token (reused, fetched or refreshed as needed) and the
//! platform that sends requests. No state outlives the call: a new token
//! leaves through [`Session::into_new_state`].

use crate::auth::{self, EXPIRY_MARGIN_SECS};
use crate::connection::{ConnectionType, Settings, TokenState, WebApiUrl};
use crate::error::{ConnectorError, Result};
use crate::http::{Method, Platform, Request, Response};
use crate::retry::{Decision, Outcome, Plan, is_idempotent, jitter_from, may_have_been_applied};
use crate::secret::{self, Secret};
use serde_json::Value;
use url::Url;

pub struct Session<'p> {
    platform: &'p mut dyn Platform,
    settings: Settings,
    token: Option<TokenState>,
    token_changed: bool,
    /// Whether an earlier attempt of the last send may have been applied
    /// (a 502/504 or a connection broken after sending, then retried): a
    /// retried DELETE that then answers 404 deleted the record itself.
    retried_after_maybe_applied: bool,
    /// The bearer tokens this call put on the wire. An error answer that
    /// quotes one (a proxy or gateway echoing the request) gets `***` in
    /// its place before anything reads it.
    sent_tokens: Vec<String>,
}

impl<'p> Session<'p> {
    pub fn new(
        platform: &'p mut dyn Platform,
        settings: Settings,
        token: Option<TokenState>,
    ) -> Self {
        Session {
            platform,
            settings,
            token,
            token_changed: false,
            retried_after_maybe_applied: false,
            sent_tokens: Vec::new(),
        }
    }

    pub fn web_api(&self) -> &WebApiUrl {
        &self.settings.web_api
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn platform(&mut self) -> &mut dyn Platform {
        self.platform
    }

    /// The token state to hand back to the host, when this call changed it.
    pub fn into_new_state(self) -> Option<TokenState> {
        if self.token_changed { self.token } else { None }
    }

    /// A valid access token: the cached one while it has more than the
    /// safety margin left, else a new or refreshed one.
    fn access_token(&mut self) -> Result<String> {
        let now = self.platform.now_unix();
        if let Some(t) = &self.token
            && t.expires_at > now + EXPIRY_MARGIN_SECS
        {
            return Ok(t.access_token.clone());
        }
        self.renew_token()
    }

    fn renew_token(&mut self) -> Result<String> {
        let fresh = match self.settings.kind {
            ConnectionType::ClientCredentials => {
                auth::client_credentials(self.platform, &self.settings)?
            }
            ConnectionType::AuthCode => {
                let refresh_token = self
                    .token
                    .as_ref()
                    .and_then(|t| t.refresh_token.clone())
                    .ok_or_else(|| {
                        ConnectorError::unauthorized(
                            "the connection has no valid token and no refresh token",
                        )
                        .with_hint("Sign in again (d365 login), and include offline_access in the scopes to get a refresh token.")
                    })?;
                auth::refresh(self.platform, &self.settings, &refresh_token)?
            }
        };
        let token = fresh.access_token.clone();
        self.token = Some(fresh);
        self.token_changed = true;
        Ok(token)
    }

    /// A request to `relative` under the service root with the standard
    /// OData headers.
    pub fn request(&self, method: Method, relative: &str) -> Result<Request> {
        Ok(self.request_to(method, self.web_api().resource(relative)?))
    }

    /// A request to an absolute URL that must be on this environment (a
    /// nextLink, say): the token goes only to the connection's own host.
    pub fn request_to(&self, method: Method, url: Url) -> Request {
        Request::new(method, url)
            .header("Accept", "application/json")
            .header("OData-MaxVersion", "4.0")
            .header("OData-Version", "4.0")
    }

    /// Sends with the bearer token under the connection's retry policy
    /// ([`crate::retry`]). A 401 gets exactly one token renewal and one
    /// retry. Returns the last answer, success or not; see [`Self::send_ok`].
    pub fn send(&mut self, request: Request) -> Result<Response> {
        let plan = self.settings.retry.safe();
        self.send_with(request, &plan)
    }

    /// Like [`Self::send`] with an explicit retry plan (rawRequest's options).
    /// Sleeps between attempts go through the platform (wasi:clocks).
    pub fn send_with(&mut self, mut request: Request, plan: &Plan) -> Result<Response> {
        if !self.web_api().is_same_origin(&request.url) {
            return Err(ConnectorError::invalid_input(
                "url",
                format!("{} is not on this connection's environment", request.url),
            )
            .with_hint("Only URLs on the connection's Web API host receive its token."));
        }
        let token = self.access_token()?;
        self.authorize(&mut request, token);
        let started = self.platform.monotonic_ms();
        self.retried_after_maybe_applied = false;
        let mut retries = 0;
        let mut renewed = false;
        loop {
            let result = self.platform.send(&request);
            if !renewed && matches!(&result, Ok(r) if r.status == 401) {
                // The token may have been revoked or expired early: renew once.
                renewed = true;
                let token = self.renew_token()?;
                self.authorize(&mut request, token);
                continue;
            }
            let outcome = match &result {
                Ok(response) => Outcome::Response(response),
                Err(e) => Outcome::Failed(e),
            };
            let elapsed = self.platform.monotonic_ms().saturating_sub(started);
            let jitter = jitter_from(&self.platform.random_bytes(8));
            let maybe_applied = may_have_been_applied(outcome);
            let retry_as = if request.reads_only {
                Method::Get
            } else {
                request.method
            };
            match plan.decide(retry_as, retries, elapsed, outcome, jitter) {
                Decision::Stop if maybe_applied && !is_idempotent(retry_as) => {
                    return self.scrub_answer(result).map_err(maybe_applied_write);
                }
                Decision::Stop => return self.scrub_answer(result),
                Decision::Retry { wait_ms } => {
                    self.retried_after_maybe_applied |= maybe_applied;
                    self.platform.sleep_ms(wait_ms);
                    retries += 1;
                }
            }
        }
    }

    fn authorize(&mut self, request: &mut Request, token: String) {
        request.set_header("Authorization", format!("Bearer {token}"));
        if !self.sent_tokens.contains(&token) {
            self.sent_tokens.push(token);
        }
    }

    /// An error answer without the tokens this call sent (see
    /// `sent_tokens`). Success bodies are records and left as they came.
    fn scrub_answer(&self, result: Result<Response>) -> Result<Response> {
        let mut response = result?;
        if !response.is_success() {
            let tokens: Vec<&str> = self.sent_tokens.iter().map(String::as_str).collect();
            secret::scrub_bytes(&mut response.body, &tokens);
            for (_, value) in &mut response.headers {
                *value = secret::scrub(value, &tokens);
            }
        }
        Ok(response)
    }

    /// `e` without any credential this call holds or sent: the last line
    /// of defence for text an error quotes from elsewhere.
    pub fn scrub(&self, e: ConnectorError) -> ConnectorError {
        let mut secrets: Vec<&str> = self.sent_tokens.iter().map(String::as_str).collect();
        if let Some(t) = &self.token {
            secrets.push(&t.access_token);
            secrets.extend(t.refresh_token.as_deref());
        }
        secrets.extend(self.settings.client_secret.as_ref().map(Secret::expose));
        secrets.extend(self.settings.certificate.as_ref().map(|c| c.pem.expose()));
        secret::scrub_error(e, &secrets)
    }

    /// True when the last send retried after an attempt that may have been
    /// applied (see the field).
    pub fn retried_after_maybe_applied(&self) -> bool {
        self.retried_after_maybe_applied
    }

    /// Sends and turns any non-2xx answer into a typed error.
    pub fn send_ok(&mut self, request: Request) -> Result<Response> {
        let method = request.method;
        let response = self.send(request)?;
        if response.is_success() {
            Ok(response)
        } else {
            Err(answer_error(method, &response))
        }
    }

    /// Sends and parses a JSON answer.
    pub fn send_json(&mut self, request: Request) -> Result<Value> {
        let response = self.send_ok(request)?;
        parse_json(&response)
    }
}

/// The typed error for an error answer to a `method` request.
pub fn answer_error(method: Method, response: &Response) -> ConnectorError {
    let e = ConnectorError::from_web_api(response.status, response.retry_after(), &response.body);
    if !is_idempotent(method) && may_have_been_applied(Outcome::Response(response)) {
        maybe_applied_write(e)
    } else {
        e
    }
}

/// A write (POST, PATCH) whose last attempt may have been applied (502/504,
/// a connection broken after sending) is not retried by the session, and
/// must not be retried blindly by the caller either: repeating it could
/// create a record twice.
fn maybe_applied_write(mut e: ConnectorError) -> ConnectorError {
    e.retryable = false;
    e.hint = Some(
        "The request may have been applied before the answer was lost; check whether the change was made before sending it again."
            .to_string(),
    );
    e
}

/// Parses a JSON body, with a clear error showing the first bytes otherwise.
pub fn parse_json(response: &Response) -> Result<Value> {
    serde_json::from_slice(&response.body).map_err(|e| {
        let head =
            String::from_utf8_lossy(&response.body[..response.body.len().min(120)]).to_string();
        ConnectorError::transport(format!(
            "expected JSON from the Web API ({e}); the body begins: {head}"
        ))
        .with_status(response.status)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::ConnectionType;

    /// Answers from a script, records what was sent and slept; time only
    /// moves when the session sleeps.
    struct Scripted {
        answers: Vec<Response>,
        sent: Vec<String>,
        slept: Vec<u64>,
        clock_ms: u64,
    }

    impl Platform for Scripted {
        fn send(&mut self, request: &Request) -> Result<Response> {
            let auth = request
                .headers
                .iter()
                .find(|(n, _)| n == "Authorization")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            self.sent
                .push(format!("{} {auth}", request.method.as_str()));
            if self.answers.is_empty() {
                return Err(ConnectorError::transport("script exhausted"));
            }
            Ok(self.answers.remove(0))
        }
        fn now_unix(&self) -> u64 {
            1_700_000_000
        }
        fn monotonic_ms(&self) -> u64 {
            self.clock_ms
        }
        fn sleep_ms(&mut self, ms: u64) {
            self.slept.push(ms);
            self.clock_ms += ms;
        }
        fn random_bytes(&mut self, len: usize) -> Vec<u8> {
            vec![0; len]
        }
    }

    fn scripted(answers: Vec<Response>) -> Scripted {
        Scripted {
            answers,
            sent: Vec::new(),
            slept: Vec::new(),
            clock_ms: 0,
        }
    }

    fn auth_code_settings() -> Settings {
        Settings::parse(
            ConnectionType::AuthCode,
            r#"{"webApiUrl":"https://org.crm.dynamics.com","clientId":"c"}"#,
        )
        .unwrap()
    }

    fn token(access: &str, refresh: Option<&str>) -> TokenState {
        TokenState {
            access_token: access.into(),
            expires_at: 1_800_000_000,
            refresh_token: refresh.map(str::to_string),
            scope: None,
        }
    }

    fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn an_error_answer_that_quotes_the_token_has_it_scrubbed() {
        const TOKEN: &str = "eyJ0eXAiOiJKV1Qi.canary-access-token";
        let echo = format!("Authorization: Bearer {TOKEN}");
        let mut platform = scripted(vec![
            answer(
                400,
                &[("Content-Type", "text/html"), ("X-Echo", &echo)],
                &format!("<html><body><pre>{echo}</pre></body></html>"),
            ),
            answer(200, &[], &format!(r#"{{"note":"{TOKEN}"}}"#)),
        ]);
        let settings = auth_code_settings();
        let mut session = Session::new(&mut platform, settings, Some(token(TOKEN, None)));
        let request = session.request(Method::Get, "WhoAmI").unwrap();
        let refused = session.send(request).unwrap();
        let body = String::from_utf8(refused.body.clone()).unwrap();
        assert_eq!(
            body,
            "<html><body><pre>Authorization: Bearer ***</pre></body></html>"
        );
        assert_eq!(refused.header("X-Echo"), Some("Authorization: Bearer ***"));
        let e = session.scrub(answer_error(Method::Get, &refused));
        assert!(!format!("{e:?}").contains(TOKEN), "{e:?}");
        // A success body is the caller's data and comes as it was.
        let request = session.request(Method::Get, "WhoAmI").unwrap();
        let ok = session.send(request).unwrap();
        assert!(String::from_utf8(ok.body).unwrap().contains(TOKEN));
        // The token did go out, on both requests.
        drop(session);
        assert!(
            platform.sent.iter().all(|s| s.ends_with(TOKEN)),
            "{:?}",
            platform.sent
        );
    }

    #[test]
    fn scrub_removes_every_credential_the_session_holds() {
        let mut platform = scripted(Vec::new());
        let settings = Settings::parse(
            ConnectionType::ClientCredentials,
            r#"{"webApiUrl":"https://org.crm.dynamics.com","clientId":"c","clientSecret":"canary-client-secret","tokenUrl":"https://login.microsoftonline.com/t/oauth2/v2.0/token"}"#,
        )
        .unwrap();
        let token = token("canary-access-token", Some("canary-refresh-token"));
        let session = Session::new(&mut platform, settings, Some(token));
        let e = ConnectorError::transport(
            "canary-client-secret canary-access-token canary-refresh-token",
        );
        assert_eq!(session.scrub(e).message, "*** *** ***");
    }

    fn run(answers: Vec<Response>, method: Method) -> (Result<Response>, Scripted) {
        let mut platform = scripted(answers);
        let settings = auth_code_settings();
        let token = token("t1", Some("r"));
        let result = {
            let mut session = Session::new(&mut platform, settings, Some(token));
            let request = session.request(method, "WhoAmI").unwrap();
            session.send(request)
        };
        (result, platform)
    }

    #[test]
    fn throttled_then_ok_sleeps_retry_after_through_the_platform() {
        let (result, p) = run(
            vec![
                answer(
                    429,
                    &[("Retry-After", "7")],
                    r#"{"error":{"code":"0x80072322","message":"x"}}"#,
                ),
                answer(503, &[], ""),
                answer(200, &[], "{}"),
            ],
            Method::Post,
        );
        assert_eq!(result.unwrap().status, 200);
        assert_eq!(p.sent.len(), 3);
        // Retry-After 7 s, then the schedule's second step (2 s, no jitter).
        assert_eq!(p.slept, [7_000, 2_000]);
    }

    #[test]
    fn a_post_meeting_a_500_or_502_is_sent_once() {
        for status in [500, 502, 504] {
            let (result, p) = run(
                vec![answer(status, &[], ""), answer(200, &[], "")],
                Method::Post,
            );
            assert_eq!(result.unwrap().status, status);
            assert_eq!(p.sent.len(), 1, "{status}");
            assert!(p.slept.is_empty());
        }
        let (result, p) = run(
            vec![answer(502, &[], ""), answer(200, &[], "")],
            Method::Get,
        );
        assert_eq!(result.unwrap().status, 200);
        assert_eq!(p.sent.len(), 2);
    }

    #[test]
    fn a_write_that_may_have_been_applied_is_not_retryable() {
        let post = answer_error(Method::Post, &answer(502, &[], ""));
        assert!(!post.retryable);
        assert!(
            post.hint
                .is_some_and(|h| h.contains("may have been applied"))
        );
        assert!(answer_error(Method::Get, &answer(502, &[], "")).retryable);
        assert!(answer_error(Method::Post, &answer(503, &[], "")).retryable);
    }

    #[test]
    fn a_401_renews_once_without_counting_as_a_retry() {
        let token = r#"{"access_token":"t2","expires_in":3599,"token_type":"Bearer"}"#;
        let (result, p) = run(
            vec![
                answer(401, &[], ""),
                answer(200, &[], token),
                answer(401, &[], ""),
            ],
            Method::Get,
        );
        assert_eq!(result.unwrap().status, 401);
        assert_eq!(p.sent, ["GET Bearer t1", "POST ", "GET Bearer t2"]);
        assert!(p.slept.is_empty());
    }
}
