//! Secrets: a wrapper whose Debug never prints the value, and a scrubber for
//! text that came from elsewhere (server messages may echo what we sent).

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

/// Replaces every occurrence of each secret in `text` with `***`.
pub fn scrub(text: &str, secrets: &[&Secret]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        // Short values would blank out ordinary words; real secrets are long.
        if s.0.len() >= 6 {
            out = out.replace(&s.0, "***");
        }
    }
    out
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
        let s = Secret::new("s3cr3t~value");
        assert_eq!(scrub("a s3cr3t~value b s3cr3t~value", &[&s]), "a *** b ***");
    }
}
