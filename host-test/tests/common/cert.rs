//! A certificate credential for client credentials: an RSA key and
//! stand-in DER bytes of its certificate (the emulator and the connector
//! only hash them, for thumbprints, exactly as Entra matches certificates).

use super::Env;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use host_test::emulator::identity::{CLIENT_CREDENTIALS_APP_ID, RegisteredCertificate};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::rand_core::{OsRng, RngCore};
use rsa::{RsaPrivateKey, RsaPublicKey};

pub struct TestCert {
    pub key: RsaPrivateKey,
    pub der: Vec<u8>,
}

impl TestCert {
    /// A fresh 2048-bit key and 600 random bytes of "certificate".
    pub fn new() -> Self {
        let key = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
        let mut der = vec![0u8; 600];
        OsRng.fill_bytes(&mut der);
        TestCert { key, der }
    }

    pub fn key_pem(&self) -> String {
        self.key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
    }

    pub fn cert_pem(&self) -> String {
        let b64 = STANDARD.encode(&self.der);
        let lines: Vec<_> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    }

    /// The key, then the certificate, in one PEM text (as the
    /// `certificatePem` setting takes them).
    pub fn pem(&self) -> String {
        format!("{}{}", self.key_pem(), self.cert_pem())
    }

    /// The portal's SHA-1 thumbprint (upper-case hex).
    pub fn sha1_hex(&self) -> String {
        use sha1::Digest as _;
        sha1::Sha1::digest(&self.der)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect()
    }

    /// The certificate as an app registration holds it.
    pub fn registered(&self) -> RegisteredCertificate {
        RegisteredCertificate::new(RsaPublicKey::from(&self.key), &self.der)
    }

    /// Registers the certificate on the client-credentials app.
    pub fn register(&self, env: &Env) {
        env.emulator
            .state()
            .identity
            .register_certificate(CLIENT_CREDENTIALS_APP_ID, self.registered());
    }
}
