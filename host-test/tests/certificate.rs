//! Client credentials with a certificate instead of a secret: the component
//! signs the JWT client assertion (PS256 + x5t#S256, RS256 + x5t); the
//! emulator verifies it against the certificate registered on the app.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::Env;
use common::cert::TestCert;
use host_test::emulator::data;
use host_test::emulator::identity::{CLIENT_CREDENTIALS_APP_ID, JWT_BEARER};
use rsa::rand_core::OsRng;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn cert_env(settings: &[(&str, Value)]) -> Env {
    let mut env = Env::new();
    env.connection.settings.remove("clientSecret");
    for (k, v) in settings {
        env.connection.settings.insert((*k).into(), v.clone());
    }
    env
}

#[tokio::test]
async fn ps256_with_the_certificate_in_the_pem() {
    let cert = TestCert::new();
    let mut env = cert_env(&[("certificatePem", json!(cert.pem()))]);
    cert.register(&env);
    let out = env.ok("getCurrentUser", "{}").await;
    assert_eq!(out["UserId"], data::USER_APP);
    assert_eq!(env.token_requests(), 1);
}

#[tokio::test]
async fn rs256_with_the_portal_sha1_thumbprint() {
    let cert = TestCert::new();
    let mut env = cert_env(&[
        ("certificatePem", json!(cert.key_pem())),
        ("certificateThumbprint", json!(cert.sha1_hex())),
    ]);
    cert.register(&env);
    let out = env.ok("getCurrentUser", "{}").await;
    assert_eq!(out["UserId"], data::USER_APP);
}

#[tokio::test]
async fn a_key_that_does_not_match_the_certificate_is_rejected() {
    let registered = TestCert::new();
    let other = TestCert::new();
    // The other key, presented with the registered certificate's thumbprint.
    let mut env = cert_env(&[(
        "certificatePem",
        json!(format!("{}{}", other.key_pem(), registered.cert_pem())),
    )]);
    registered.register(&env);
    let pem = env.connection.settings["certificatePem"]
        .as_str()
        .unwrap()
        .to_string();
    let err = env.err("getCurrentUser", "{}").await;
    assert_eq!(err["kind"], "unauthorized");
    assert_eq!(err["code"], "AADSTS700027");
    assert!(err["hint"].as_str().unwrap().contains("certificate"));
    let text = err.to_string();
    assert!(!text.contains(&pem[40..120]), "no key material in errors");
}

#[tokio::test]
async fn an_unregistered_certificate_is_rejected() {
    let cert = TestCert::new();
    let mut env = cert_env(&[("certificatePem", json!(cert.pem()))]);
    let err = env.err("getCurrentUser", "{}").await;
    assert_eq!(err["code"], "AADSTS700027");
}

#[tokio::test]
async fn bad_certificate_inputs_name_the_input() {
    let cert = TestCert::new();
    for (settings, input) in [
        (
            vec![(
                "certificatePem",
                json!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"),
            )],
            "certificatePem",
        ),
        (
            vec![("certificatePem", json!(cert.key_pem()))],
            "certificateThumbprint",
        ),
        (
            vec![
                ("certificatePem", json!(cert.key_pem())),
                ("certificateThumbprint", json!("xyz")),
            ],
            "certificateThumbprint",
        ),
        (
            vec![
                ("certificatePem", json!(cert.key_pem())),
                ("certificateThumbprint", json!(cert.sha1_hex())),
                ("assertionAlgorithm", json!("PS256")),
            ],
            "certificateThumbprint",
        ),
    ] {
        let mut env = cert_env(&settings);
        let err = env.err("getCurrentUser", "{}").await;
        assert_eq!(err["kind"], "invalid-input", "{err}");
        assert_eq!(err["input"], input, "{err}");
        assert!(env.emulator.log().is_empty(), "nothing sent for bad input");
    }
}

/// The emulator's own checks, with assertions built by hand.
#[tokio::test]
async fn emulator_rejects_wrong_audience_and_expired_assertions() {
    let cert = TestCert::new();
    let env = Env::new();
    cert.register(&env);
    let token_path = format!("/{}/oauth2/v2.0/token", data::TENANT_ID);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sign = |claims: Value| {
        let header = json!({"alg": "PS256", "typ": "JWT", "x5t#S256": URL_SAFE_NO_PAD.encode(Sha256::digest(&cert.der))});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = rsa::pss::BlindedSigningKey::<Sha256>::new(cert.key.clone())
            .sign_with_rng(&mut OsRng, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_vec()))
    };
    let post = |assertion: String| {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", CLIENT_CREDENTIALS_APP_ID)
            .append_pair("client_assertion_type", JWT_BEARER)
            .append_pair("client_assertion", &assertion)
            .append_pair("scope", "http://localhost/.default")
            .finish();
        http::Request::post(token_path.as_str())
            .header("Host", "localhost")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(bytes::Bytes::from(body))
            .unwrap()
    };
    let claims = |aud: &str, nbf: u64, exp: u64| {
        json!({"aud": aud, "iss": CLIENT_CREDENTIALS_APP_ID, "sub": CLIENT_CREDENTIALS_APP_ID,
               "jti": "5f0c3e0e-9b7a-4f7d-9d7e-0d6c1f1b2a33", "nbf": nbf, "exp": exp})
    };
    let good_aud = format!("http://localhost{token_path}");
    let ok = env
        .emulator
        .handle(post(sign(claims(&good_aud, now, now + 600))))
        .await;
    assert_eq!(ok.status(), 200);

    let wrong_aud = env
        .emulator
        .handle(post(sign(claims(
            "https://login.microsoftonline.com/other/oauth2/v2.0/token",
            now,
            now + 600,
        ))))
        .await;
    assert_eq!(wrong_aud.status(), 401);
    let body: Value = serde_json::from_slice(wrong_aud.body()).unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_codes"], json!([70002, 50012]));

    let expired = env
        .emulator
        .handle(post(sign(claims(&good_aud, now - 1200, now - 600))))
        .await;
    let body: Value = serde_json::from_slice(expired.body()).unwrap();
    assert_eq!(body["error_codes"], json!([700024]));

    let tampered = {
        let a = sign(claims(&good_aud, now, now + 600));
        let mut parts: Vec<String> = a.split('.').map(str::to_string).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(claims(&good_aud, now, now + 6000).to_string());
        parts.join(".")
    };
    let body: Value =
        serde_json::from_slice(env.emulator.handle(post(tampered)).await.body()).unwrap();
    assert_eq!(body["error_codes"], json!([700027]));
}
