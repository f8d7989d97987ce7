//! The foundation through the real component: both connections, token reuse
//! and renewal, getCurrentUser, input errors and the component's imports.
//! The CLI is tested in `cli.rs`.

mod common;

use common::{Env, host, http_get, is_guid};
use host_test::cli;
use host_test::emulator::{self, Faults, Injected, Trigger, data};
use host_test::host::{ConnectionType, Route, error_json};
use serde_json::{Value, json};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn client_credentials_token_then_who_am_i() {
    let mut env = Env::new();
    let out = env.ok("getCurrentUser", "{}").await;
    assert_eq!(out["UserId"], data::USER_APP);
    assert_eq!(out["BusinessUnitId"], data::ROOT_BU);
    assert_eq!(out["OrganizationId"], data::ORGANIZATION_ID);
    for k in ["UserId", "BusinessUnitId", "OrganizationId"] {
        assert!(is_guid(&out[k]), "{k} is a GUID");
    }
    let state = env.state().expect("a fetched token comes back as state");
    assert!(state.expires_at > now() + 3000);
    assert!(
        state.refresh_token.is_none(),
        "client credentials never get a refresh token"
    );
    assert_eq!(env.token_requests(), 1);
}

#[tokio::test]
async fn client_credentials_get_token_export() {
    let env = Env::new();
    let token = host()
        .client_credentials_token(&env.route, &env.connection.settings_json())
        .await
        .unwrap()
        .expect("token");
    assert!(token.access_token.starts_with("ey"));
    assert!(token.expires_at > now());
}

#[tokio::test]
async fn a_valid_token_is_reused() {
    let mut env = Env::new();
    env.ok("getCurrentUser", "{}").await;
    let second = env.invoke_raw("getCurrentUser", "{}").await.expect("ok");
    assert!(second.state.is_none(), "state unchanged: nothing to store");
    env.ok("getCurrentUser", "{}").await;
    let log = env.emulator.log();
    assert_eq!(
        env.token_requests(),
        1,
        "one token request for three calls: {log:#?}"
    );
    assert_eq!(
        log.iter().filter(|r| r.path().ends_with("/WhoAmI")).count(),
        3
    );
}

#[tokio::test]
async fn an_expired_token_is_renewed_before_the_call() {
    let mut env = Env::new();
    env.ok("getCurrentUser", "{}").await;
    let mut state = env.state().unwrap();
    state.expires_at = now() + 30; // inside the safety margin
    let old = state.access_token.clone();
    env.connection.state = Some(state);
    env.emulator.clear_log();
    env.ok("getCurrentUser", "{}").await;
    let log = env.emulator.log();
    assert_eq!(log.len(), 2, "{log:#?}");
    assert!(log[0].is_token_request());
    assert_eq!(log[1].status, 200);
    assert_ne!(env.state().unwrap().access_token, old);
}

#[tokio::test]
async fn a_401_gets_exactly_one_renewal_and_one_retry() {
    let mut env = Env::new();
    env.ok("getCurrentUser", "{}").await;
    // The server invalidates the token although the state says it is valid.
    env.emulator.expire_access_tokens();
    env.emulator.clear_log();
    env.ok("getCurrentUser", "{}").await;
    let statuses = env.statuses();
    assert_eq!(statuses, vec![(false, 401), (true, 200), (false, 200)]);

    // A server that refuses every token: one renewal, one retry, then a typed error.
    env.emulator.set_faults(Faults {
        reject_all_tokens: true,
        ..Default::default()
    });
    env.emulator.clear_log();
    let err = env.err("getCurrentUser", "{}").await;
    assert_eq!(err["kind"], "unauthorized");
    assert_eq!(err["status"], 401);
    let statuses = env.statuses();
    assert_eq!(statuses, vec![(false, 401), (true, 200), (false, 401)]);
}

#[tokio::test]
async fn wrong_client_secret_is_unauthorized_without_the_secret() {
    let mut env = Env::new();
    let canary = "canary-Secret-7f3a9c1e55";
    env.connection
        .settings
        .insert("clientSecret".into(), json!(canary));
    let err = env.err("getCurrentUser", "{}").await;
    assert_eq!(err["kind"], "unauthorized");
    assert_eq!(err["code"], "AADSTS7000215");
    assert_eq!(err["status"], 401);
    assert!(err["hint"].as_str().unwrap().contains("Value"));
    assert!(!err.to_string().contains(canary), "secret leaked: {err}");
}

/// A gateway in front of the org that answers 400 quoting the request,
/// bearer token and all: the error still says what the gateway said, with
/// `***` where the token was.
#[tokio::test]
async fn a_gateway_echoing_the_request_does_not_leak_the_token() {
    let mut env = Env::new();
    env.ok("getCurrentUser", "{}").await;
    let token = env.state().expect("the call kept its token").access_token;
    env.emulator
        .set_faults(Faults::default().with_error(Trigger::Next(1), Injected::EchoRequest));
    let err = env.err("getCurrentUser", "{}").await;
    eprintln!("{err:#}");
    assert_eq!(err["status"], 400, "{err}");
    assert_eq!(env.emulator.fault_stats().injected, vec![400]);
    let text = err.to_string();
    assert!(!text.contains(&token), "token leaked: {err}");
    assert!(
        text.contains("Bearer ***"),
        "the gateway's page is quoted: {err}"
    );
}

#[tokio::test]
async fn malformed_web_api_url_names_the_input_and_sends_nothing() {
    for bad in [
        "ftp://org.crm.dynamics.com",
        "http://org.crm.dynamics.com",
        "https://org.crm.dynamics.com/x/y",
        "::",
    ] {
        let mut env = Env::new();
        env.connection
            .settings
            .insert("webApiUrl".into(), json!(bad));
        let err = env.err("getCurrentUser", "{}").await;
        assert_eq!(err["kind"], "invalid-input", "{bad}: {err}");
        assert_eq!(err["input"], "webApiUrl", "{bad}");
        assert!(env.emulator.log().is_empty(), "no request for {bad}");
    }
}

#[tokio::test]
async fn unknown_action_and_bad_inputs_are_invalid_input() {
    let mut env = Env::new();
    let err = env.err("getCurentUser", "{}").await;
    assert_eq!(err["kind"], "invalid-input");
    assert!(
        err["message"].as_str().unwrap().contains("getCurrentUser"),
        "lists known actions"
    );
    let err = env.err("getCurrentUser", r#"{"unexpected":1}"#).await;
    assert_eq!(err["input"], "unexpected");
    let err = env.err("getCurrentUser", "not json").await;
    assert_eq!(err["input"], "inputs");
    assert!(env.emulator.log().is_empty());
}

#[tokio::test]
async fn allowed_operations_refuses_other_actions_before_sending() {
    let mut env = Env::new();
    env.connection
        .settings
        .insert("allowedOperations".into(), json!(["queryEntities"]));
    let err = env.err("getCurrentUser", "{}").await;
    assert_eq!(err["kind"], "forbidden");
    let err = env
        .err(
            "deleteEntity",
            r#"{"entityType":"accounts","entityId":"00000000-0000-0000-0000-000000000001"}"#,
        )
        .await;
    assert_eq!(err["kind"], "forbidden");
    assert!(err["message"].as_str().unwrap().contains("deleteEntity"));
    assert!(
        env.emulator.log().is_empty(),
        "refused before any request, token included"
    );
    // The listed action runs.
    env.ok("queryEntities", r#"{"entityType":"accounts","top":1}"#)
        .await;
}

/// A DNS failure on a *.dynamics.com host says the region may be wrong.
#[tokio::test]
async fn dns_failure_hints_at_the_region() {
    let mut env = Env::new();
    env.route = Route::Network;
    let host = "https://no-such-org-7f3a.crm4.dynamics.com";
    env.connection
        .settings
        .insert("webApiUrl".into(), json!(host));
    env.connection.settings.insert(
        "tokenUrl".into(),
        json!(format!("{host}/t/oauth2/v2.0/token")),
    );
    env.connection
        .settings
        .insert("retryPolicy".into(), json!({"maxRetries": 0}));
    let err = env.err("getCurrentUser", "{}").await;
    assert_eq!(err["kind"], "transport", "{err}");
    assert!(err["hint"].as_str().unwrap().contains("region"), "{err}");
}

/// `contoso` + `crm4` → https://contoso.crm4.dynamics.com: the requests reach
/// that host (the in-process route answers for any host).
#[tokio::test]
async fn region_short_form_builds_the_regional_url() {
    let mut env = Env::new();
    let origin = "https://contoso.crm4.dynamics.com";
    env.connection
        .settings
        .insert("webApiUrl".into(), json!("contoso"));
    env.connection
        .settings
        .insert("region".into(), json!("crm4"));
    env.connection.settings.insert(
        "tokenUrl".into(),
        json!(format!("{origin}/{}/oauth2/v2.0/token", data::TENANT_ID)),
    );
    env.ok("getCurrentUser", "{}").await;
    let log = env.emulator.log();
    let who = log
        .iter()
        .find(|r| r.path().ends_with("/WhoAmI"))
        .expect("WhoAmI sent");
    let host = &who.headers.iter().find(|(k, _)| k == "host").unwrap().1;
    assert_eq!(host, "contoso.crm4.dynamics.com");
    assert_eq!(who.target, "/api/data/v9.2/WhoAmI");

    env.connection
        .settings
        .insert("region".into(), json!("crm99"));
    let err = env.err("getCurrentUser", "{}").await;
    assert_eq!(err["input"], "region");
    assert!(
        err["message"].as_str().unwrap().contains("crm4"),
        "lists valid codes: {err}"
    );
}

/// The "browser" at an authorize URL: the emulator signs the user in and
/// redirects (302); the query of the redirect's location.
async fn sign_in(env: &Env, authorize: &url::Url) -> std::collections::HashMap<String, String> {
    let redirect = env
        .emulator
        .handle(
            http::Request::get(authorize.as_str())
                .header("Host", "localhost")
                .body(Default::default())
                .unwrap(),
        )
        .await;
    assert_eq!(redirect.status(), 302);
    let location = url::Url::parse(redirect.headers()["location"].to_str().unwrap()).unwrap();
    location.query_pairs().into_owned().collect()
}

/// Makes the connection's saved access token expired.
fn expire_token(env: &mut Env) {
    let mut state = env.state().unwrap();
    state.expires_at = 1;
    env.connection.state = Some(state);
}

/// The full delegated flow: authorize URL (PKCE S256) → sign-in redirect →
/// code exchange → WhoAmI as the user → refresh.
#[tokio::test]
async fn auth_code_flow_with_pkce_exchange_and_refresh() {
    let env = Env::new();
    let conn = cli::emulator_auth_code_connection(
        cli::IN_PROCESS_ORIGIN,
        "http://localhost:8400/callback",
    );
    let settings = conn.settings_json();
    let req = host()
        .authorize_url(&settings)
        .await
        .unwrap()
        .expect("authorize URL");
    let url = url::Url::parse(&req.url).unwrap();
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["state"], req.state);
    assert_eq!(q["response_type"], "code");
    assert!(q["scope"].contains("offline_access"));
    assert!(req.code_verifier.len() >= 43);
    assert!(req.warnings.is_empty());

    // The "browser": the emulator signs the user in and redirects.
    let back = sign_in(&env, &url).await;
    assert_eq!(back["state"], req.state);
    let code = back["code"].clone();

    // A wrong verifier is refused with the PKCE error code…
    let bad = host()
        .exchange_code(
            &env.route,
            &settings,
            &code,
            "wrong-verifier-wrong-verifier-wrong-verifier",
        )
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error_json(&bad)["code"], "AADSTS501481");
    // …and the code is then spent, as Entra does.
    let back = sign_in(&env, &url).await;
    let code = back["code"].clone();
    let token = host()
        .exchange_code(&env.route, &settings, &code, &req.code_verifier)
        .await
        .unwrap()
        .expect("exchange");
    let refresh_token = token
        .refresh_token
        .clone()
        .expect("offline_access → refresh token");

    // Act as the signed-in user.
    let mut user_env = Env {
        emulator: env.emulator.clone(),
        route: env.route.clone(),
        connection: conn.clone(),
    };
    user_env.connection.state = Some(token.clone().into());
    let me = user_env.ok("getCurrentUser", "{}").await;
    assert_eq!(me["UserId"], data::USER_ANA);

    // The refresh export.
    let refreshed = host()
        .refresh(&env.route, &settings, &refresh_token)
        .await
        .unwrap()
        .expect("refresh");
    assert_ne!(refreshed.access_token, token.access_token);

    // An expired state renews itself through the refresh token inside invoke.
    expire_token(&mut user_env);
    user_env.emulator.clear_log();
    let me = user_env.ok("getCurrentUser", "{}").await;
    assert_eq!(me["UserId"], data::USER_ANA);
    assert_eq!(user_env.token_requests(), 1);
    assert!(user_env.state().unwrap().refresh_token.is_some());

    // A revoked refresh token says to reconnect.
    user_env.emulator.state().identity.revoke_refresh_tokens();
    expire_token(&mut user_env);
    let err = user_env.err("getCurrentUser", "{}").await;
    assert_eq!(err["kind"], "unauthorized");
    assert_eq!(err["code"], "AADSTS50173");
    assert!(err["hint"].as_str().unwrap().contains("reconnect"));
}

#[tokio::test]
async fn auth_code_without_offline_access_warns() {
    let mut conn = cli::emulator_auth_code_connection(
        cli::IN_PROCESS_ORIGIN,
        "http://localhost:8400/callback",
    );
    conn.settings.insert(
        "scopes".into(),
        json!("http://localhost/user_impersonation"),
    );
    let req = host()
        .authorize_url(&conn.settings_json())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(req.warnings.len(), 1);
    assert!(req.warnings[0].contains("offline_access"));
}

#[tokio::test]
async fn loopback_server_route_over_real_sockets() {
    let emulator = emulator::Emulator::new(Default::default());
    let server = emulator::server::serve(emulator.clone(), 0).await.unwrap();
    let conn = cli::emulator_connection(&server.base_url());
    let result = host()
        .invoke(
            &Route::Network,
            "getCurrentUser",
            &conn.connection().unwrap(),
            "{}",
        )
        .await
        .unwrap()
        .expect("WhoAmI over loopback");
    let out: Value = serde_json::from_str(&result.output).unwrap();
    assert_eq!(out["UserId"], data::USER_APP);
    assert_eq!(emulator.log().len(), 2);
    // The documented 401 shape, seen by a plain client.
    let (status, headers, body) =
        http_get(&format!("{}/api/data/v9.2/WhoAmI", server.base_url())).await;
    assert_eq!(status, 401);
    let challenge = &headers
        .iter()
        .find(|(k, _)| k == "www-authenticate")
        .unwrap()
        .1;
    assert!(
        challenge.starts_with("Bearer authorization_uri="),
        "{challenge}"
    );
    assert!(challenge.contains("resource_id="));
    assert!(body.is_empty());
    server.shutdown();
}

/// The release component's size, held where it is: #11's target is
/// 512 KiB (see host-test/benches/RESULTS.md), and this budget catches a
/// build setting lost or a dependency added without anyone deciding to
/// (unstripped it is ~3.5 MB; without `--compress-relocations`, ~978 KB).
/// Raise it on purpose, with the reason in the commit. The guide's ceiling
/// is 1 MiB. 920,000 → 960,000 bought Dataverse search (four actions,
/// ~31 KB) and queryEntities' count and apply (~10 KB), measured at
/// 952,742 bytes. 960,000 → 994,000 bought the write controls (#29) on
/// every write, read and runBatch item, background operations and
/// getBackgroundOperation, measured at 993,028 bytes. 994,000 → 1,020,000
/// bought files and images (uploadFile, downloadFile, deleteFile and their
/// output schemas: ~26.4 KB on their own, 985,566 bytes from 959,139).
/// 1,020,000 → 1,048,576 (the guide's ceiling, 1 MiB) bought the webhook
/// trigger's lifecycle (issue 30: subscribe/unsubscribe/check, ~29 KB of
/// logic and ~9 KB of export glue) and its events' eventId and
/// changedAttributes (~4 KB): 1,075,760 bytes, brought to 1,046,038 by
/// dropping the component's custom sections (build.rs, -8.5 KB), opt-level
/// "z" for url, idna, quick-xml and serde_json (Cargo.toml says what each
/// costs, -12.6 KB), naming wasi:http error codes without their generated
/// Debug (-4.3 KB) and the output schemas' descriptions (-4.1 KB). There
/// is no room left: the next feature pays for itself.
#[test]
fn component_stays_within_its_size_budget() {
    const BUDGET: usize = 1_048_576;
    let size = host_test::host::COMPONENT_WASM.len();
    eprintln!("component: {size} bytes (budget {BUDGET})");
    assert!(
        size <= BUDGET,
        "the release component is {size} bytes, over its {BUDGET}-byte budget"
    );
}

/// Only wasi:http, wasi:io, wasi:clocks, wasi:random and wasi:cli/stderr
/// (a panic's message) — no environment, no stdin or stdout, no terminals,
/// no filesystem, no sockets (`src/sandbox.rs` keeps wasi-libc's stdio and
/// environment out).
#[test]
fn component_imports_only_allowed_interfaces() {
    let host = host();
    let component =
        wasmtime::component::Component::new(host.engine(), host_test::host::COMPONENT_WASM)
            .unwrap();
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(host.engine())
        .map(|(name, _)| name.to_string())
        .collect();
    assert!(
        imports
            .iter()
            .any(|i| i.starts_with("wasi:http/outgoing-handler@")),
        "{imports:?}"
    );
    // `d365:connector/types` is the connector's own type-only interface (no
    // functions): WIT `use` makes every component import it.
    let allowed = [
        "wasi:http/",
        "wasi:io/",
        "wasi:clocks/",
        "wasi:random/",
        "wasi:cli/stderr@",
        "d365:connector/types@",
    ];
    eprintln!("component imports: {imports:#?}");
    for import in &imports {
        assert!(
            allowed.iter().any(|a| import.starts_with(a)),
            "unexpected import {import}"
        );
        assert!(
            !import.starts_with("wasi:filesystem") && !import.starts_with("wasi:sockets"),
            "{import}"
        );
    }
    let exports: Vec<String> = ty
        .exports(host.engine())
        .map(|(name, _)| name.to_string())
        .collect();
    for e in [
        "actions",
        "catalog",
        "oauth2-auth-code",
        "oauth2-client-credentials",
        "webhook",
    ] {
        assert!(
            exports
                .iter()
                .any(|x| x.starts_with(&format!("d365:connector/{e}@"))),
            "{exports:?}"
        );
    }
}

#[tokio::test]
async fn connector_yaml_equals_the_component_catalog() {
    let from_component: Value = serde_json::from_str(&host().describe().await.unwrap()).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../connector.yaml");
    let text = std::fs::read_to_string(path).expect("connector.yaml exists");
    let from_yaml: Value = serde_norway::from_str(&text).expect("connector.yaml parses");
    assert!(
        from_component == from_yaml,
        "connector.yaml differs from the component's catalog; regenerate it with `cargo run -p host-test --bin d365 -- actions --yaml > connector.yaml`"
    );
    assert_eq!(
        ConnectionType::Oauth2AuthCode,
        ConnectionType::Oauth2AuthCode
    );
}
