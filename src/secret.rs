//! Secrets: a wrapper whose Debug never prints the value, and a scrubber for
//! text that came from elsewhere (server messages may echo what we sent).

use crate::error::ConnectorError;
use std::fmt;

/// A credential value (client secret, refresh token, access token).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that puts it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Shorter values would blank out ordinary words; real secrets are long.
const MIN_SCRUBBED_LEN: usize = 6;

fn scrubbed<'a>(secrets: &'a [&'a str]) -> impl Iterator<Item = &'a str> {
    secrets
        .iter()
        .copied()
        .filter(|s| s.len() >= MIN_SCRUBBED_LEN)
}

/// Replaces every occurrence of each secret in `text` with `***`.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in scrubbed(secrets) {
        if out.contains(s) {
            out = out.replace(s, "***");
        }
    }
    out
}

/// [`scrub`] for a body that may not be UTF-8, in place.
pub fn scrub_bytes(bytes: &mut Vec<u8>, secrets: &[&str]) {
    for s in scrubbed(secrets) {
        let needle = s.as_bytes();
        let Some(mut at) = crate::bytes::find(bytes, needle) else {
            continue;
        };
        let mut out = Vec::with_capacity(bytes.len());
        let mut rest = 0;
        loop {
            out.extend_from_slice(&bytes[rest..rest + at]);
            out.extend_from_slice(b"***");
            rest += at + needle.len();
            match crate::bytes::find(&bytes[rest..], needle) {
                Some(next) => at = next,
                None => break,
            }
        }
        out.extend_from_slice(&bytes[rest..]);
        *bytes = out;
    }
}

/// The error with every secret in the text it may have quoted from a
/// server (message, hint, code) replaced by `***`.
pub fn scrub_error(mut e: ConnectorError, secrets: &[&str]) -> ConnectorError {
    e.message = scrub(&e.message, secrets);
    e.hint = e.hint.map(|h| scrub(&h, secrets));
    e.code = e.code.map(|c| scrub(&c, secrets));
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2-canary")),
            "Secret(***)"
        );
    }

    #[test]
    fn scrub_replaces_all() {
        assert_eq!(
            scrub("a s3cr3t~value b s3cr3t~value", &["s3cr3t~value"]),
            "a *** b ***"
        );
        // Too short to be a secret: left alone.
        assert_eq!(scrub("a b c", &["b"]), "a b c");
    }

    #[test]
    fn scrub_bytes_replaces_all_in_place() {
        let mut body = b"x\xffTOKEN-123 y TOKEN-123".to_vec();
        scrub_bytes(&mut body, &["TOKEN-123", "absent-secret"]);
        assert_eq!(body, b"x\xff*** y ***");
        let mut clean = b"nothing here".to_vec();
        scrub_bytes(&mut clean, &["TOKEN-123"]);
        assert_eq!(clean, b"nothing here");
    }

    #[test]
    fn scrub_error_covers_message_hint_and_code() {
        let e = ConnectorError::transport("echo: Bearer TOKEN-123")
            .with_code("TOKEN-123")
            .with_hint("see TOKEN-123");
        let e = scrub_error(e, &["TOKEN-123"]);
        assert_eq!(e.message, "echo: Bearer ***");
        assert_eq!(e.hint.as_deref(), Some("see ***"));
        assert_eq!(e.code.as_deref(), Some("***"));
    }
}
