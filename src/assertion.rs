//! Certificate credentials: the signed JWT `client_assertion` that replaces a
//! client secret (Microsoft recommends certificates over secrets).
//!
//! Header and claims as the identity platform documents them: PS256 with the
//! `x5t#S256` header (SHA-256 of the certificate's DER), or RS256 with `x5t`
//! (SHA-1 thumbprint, the one the Azure portal shows); `aud` = the token URL,
//! `iss` = `sub` = the client id, a random `jti`, `nbf`/`iat` = now, `exp` = now + 10 min.
//!
//! Signing uses the pure-Rust `rsa` crate (builds for wasm32-wasip2; blinded
//! signing with randomness from wasi:random).

use crate::error::{ConnectorError, Result};
use crate::http::Platform;
use crate::secret::Secret;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rsa::RsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use serde_json::json;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// How long an assertion is valid.
pub const ASSERTION_LIFETIME_SECS: u64 = 600;

/// The signing algorithm of the assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// RSASSA-PSS with SHA-256; header `x5t#S256`. The current documentation.
    Ps256,
    /// RSASSA-PKCS1-v1_5 with SHA-256; header `x5t`. Older, still accepted.
    Rs256,
}

/// A certificate credential, validated.
pub struct CertificateCredential {
    key: RsaPrivateKey,
    algorithm: Algorithm,
    /// base64url of the thumbprint matching the algorithm.
    thumbprint_b64: String,
}

impl std::fmt::Debug for CertificateCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateCredential")
            .field("key", &"***")
            .field("algorithm", &self.algorithm)
            .field("thumbprint", &self.thumbprint_b64)
            .finish()
    }
}

impl CertificateCredential {
    /// `pem` holds the PKCS#8 private key and optionally the certificate
    /// (`-----BEGIN CERTIFICATE-----`); `thumbprint` is the hex SHA-1 (40
    /// chars, as the portal shows) or SHA-256 (64 chars) thumbprint. One of the
    /// certificate or the thumbprint is needed. `algorithm`: "PS256" or "RS256";
    /// by default PS256 when the SHA-256 thumbprint is known, else RS256.
    pub fn parse(pem: &Secret, thumbprint: Option<&str>, algorithm: Option<&str>) -> Result<Self> {
        let blocks = pem_blocks(pem.expose());
        let key_der = blocks
            .iter()
            .find(|(label, _)| label == "PRIVATE KEY")
            .map(|(_, der)| der)
            .ok_or_else(|| {
                if blocks.iter().any(|(l, _)| l == "RSA PRIVATE KEY" || l == "ENCRYPTED PRIVATE KEY") {
                    ConnectorError::invalid_input(
                        "certificatePem",
                        "needs an unencrypted PKCS#8 key (-----BEGIN PRIVATE KEY-----); convert with `openssl pkcs8 -topk8 -nocrypt`",
                    )
                } else {
                    ConnectorError::invalid_input("certificatePem", "contains no -----BEGIN PRIVATE KEY----- block")
                }
            })?;
        let key = RsaPrivateKey::from_pkcs8_der(key_der).map_err(|_| {
            ConnectorError::invalid_input(
                "certificatePem",
                "the private key is not a valid PKCS#8 RSA key",
            )
        })?;
        let cert = blocks
            .iter()
            .find(|(l, _)| l == "CERTIFICATE")
            .map(|(_, der)| der);
        let (sha1, sha256) = match (cert, thumbprint.map(str::trim).filter(|t| !t.is_empty())) {
            (Some(der), _) => (
                Some(Sha1::digest(der).to_vec()),
                Some(Sha256::digest(der).to_vec()),
            ),
            (None, Some(t)) => {
                let bytes = hex_decode(t).ok_or_else(|| {
                    ConnectorError::invalid_input(
                        "certificateThumbprint",
                        "must be hexadecimal (40 or 64 digits)",
                    )
                })?;
                match bytes.len() {
                    20 => (Some(bytes), None),
                    32 => (None, Some(bytes)),
                    _ => {
                        return Err(ConnectorError::invalid_input(
                            "certificateThumbprint",
                            "must be a SHA-1 (40 hex digits) or SHA-256 (64 hex digits) thumbprint",
                        ));
                    }
                }
            }
            (None, None) => {
                return Err(ConnectorError::invalid_input(
                    "certificateThumbprint",
                    "is required unless certificatePem also contains the certificate",
                ));
            }
        };
        let algorithm = match algorithm.map(str::to_ascii_uppercase).as_deref() {
            None | Some("") => {
                if sha256.is_some() {
                    Algorithm::Ps256
                } else {
                    Algorithm::Rs256
                }
            }
            Some("PS256") => Algorithm::Ps256,
            Some("RS256") => Algorithm::Rs256,
            Some(other) => {
                return Err(ConnectorError::invalid_input(
                    "assertionAlgorithm",
                    format!("must be PS256 or RS256, got '{other}'"),
                ));
            }
        };
        let thumbprint = match algorithm {
            Algorithm::Ps256 => sha256.ok_or_else(|| {
                ConnectorError::invalid_input(
                    "certificateThumbprint",
                    "PS256 needs the SHA-256 thumbprint (64 hex digits) or the certificate in certificatePem",
                )
            })?,
            Algorithm::Rs256 => sha1.ok_or_else(|| {
                ConnectorError::invalid_input(
                    "certificateThumbprint",
                    "RS256 needs the SHA-1 thumbprint (40 hex digits) or the certificate in certificatePem",
                )
            })?,
        };
        Ok(CertificateCredential {
            key,
            algorithm,
            thumbprint_b64: URL_SAFE_NO_PAD.encode(thumbprint),
        })
    }

    /// A signed assertion for `client_id` at `token_url`.
    pub fn assertion(
        &self,
        platform: &mut dyn Platform,
        client_id: &str,
        token_url: &str,
    ) -> Result<String> {
        let now = platform.now_unix();
        let header = match self.algorithm {
            Algorithm::Ps256 => {
                json!({"alg": "PS256", "typ": "JWT", "x5t#S256": self.thumbprint_b64})
            }
            Algorithm::Rs256 => json!({"alg": "RS256", "typ": "JWT", "x5t": self.thumbprint_b64}),
        };
        let claims = json!({
            "aud": token_url,
            "iss": client_id,
            "sub": client_id,
            "jti": guid(&platform.random_bytes(16)),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut rng = PlatformRng(platform);
        let signature = match self.algorithm {
            Algorithm::Ps256 => rsa::pss::BlindedSigningKey::<Sha256>::new(self.key.clone())
                .try_sign_with_rng(&mut rng, signing_input.as_bytes())
                .map(|s| s.to_vec()),
            Algorithm::Rs256 => rsa::pkcs1v15::SigningKey::<Sha256>::new(self.key.clone())
                .try_sign_with_rng(&mut rng, signing_input.as_bytes())
                .map(|s| s.to_vec()),
        }
        .map_err(|_| {
            ConnectorError::invalid_input("certificatePem", "the key could not sign the assertion")
        })?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// `(label, DER)` of every PEM block in `text`.
fn pem_blocks(text: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = after[..label_end].to_string();
        let body_start = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = body_start.find(&end_marker) else {
            break;
        };
        let b64: String = body_start[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if let Ok(der) = STANDARD.decode(b64) {
            out.push((label, der));
        }
        rest = &body_start[end + end_marker.len()..];
    }
    out
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| !matches!(c, ':' | ' ')).collect();
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// A version-4 GUID from 16 random bytes.
pub fn guid(bytes: &[u8]) -> String {
    let mut b = [0u8; 16];
    for (dst, src) in b.iter_mut().zip(bytes) {
        *dst = *src;
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// rand_core over the platform's randomness (wasi:random in the component).
struct PlatformRng<'a>(&'a mut dyn Platform);

impl rand_core::RngCore for PlatformRng<'_> {
    fn next_u32(&mut self) -> u32 {
        let b = self.0.random_bytes(4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    fn next_u64(&mut self) -> u64 {
        let b = self.0.random_bytes(8);
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        u64::from_le_bytes(a)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let b = self.0.random_bytes(dest.len());
        dest.copy_from_slice(&b[..dest.len()]);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for PlatformRng<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_and_hex() {
        let text = "junk\n-----BEGIN PRIVATE KEY-----\nAAEC\n-----END PRIVATE KEY-----\n-----BEGIN CERTIFICATE-----\nAwQ=\n-----END CERTIFICATE-----\n";
        let blocks = pem_blocks(text);
        assert_eq!(
            blocks,
            vec![
                ("PRIVATE KEY".into(), vec![0, 1, 2]),
                ("CERTIFICATE".into(), vec![3, 4])
            ]
        );
        assert_eq!(hex_decode("84:E0:5c"), Some(vec![0x84, 0xe0, 0x5c]));
        assert_eq!(hex_decode("8"), None);
        assert_eq!(hex_decode("zz"), None);
    }

    #[test]
    fn x5t_matches_the_documented_example() {
        // The identity platform's older example: hex 84E0…5534 → hOBcHZi846VCHSJbFAs26Go9VTQ.
        let bytes = hex_decode("84E05C1D98BCE3A5421D225B140B36E86A3D5534").unwrap();
        assert_eq!(URL_SAFE_NO_PAD.encode(bytes), "hOBcHZi846VCHSJbFAs26Go9VTQ");
    }

    /// Debug of a parsed credential shows neither the PEM nor any line of
    /// the key (the key is a throwaway generated for this test).
    #[test]
    fn debug_redacts_the_private_key() {
        let pem = include_str!("testdata/canary_key.pem");
        let credential = CertificateCredential::parse(
            &Secret::new(pem),
            Some("84E05C1D98BCE3A5421D225B140B36E86A3D5534"),
            None,
        )
        .unwrap();
        let shown = format!("{credential:?} {credential:#?}");
        assert!(shown.contains("***"), "{shown}");
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!shown.contains(line), "key material in Debug: {shown}");
        }
        let wrapped = format!("{:?}", Secret::new(pem));
        assert!(!wrapped.contains("PRIVATE"), "{wrapped}");
    }

    #[test]
    fn bad_pem_names_the_input() {
        let e =
            CertificateCredential::parse(&Secret::new("not a pem"), Some("00"), None).unwrap_err();
        assert_eq!(
            e.kind,
            crate::error::ErrorKind::InvalidInput {
                input: "certificatePem".into()
            }
        );
    }
}
