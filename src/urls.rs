//! Parsing URL text that comes from inputs or servers (`webApiUrl`,
//! `tokenUrl`, `@odata.nextLink`, `rawRequest`'s `url`).
//!
//! Why not `Url::parse` directly: the IDNA back end is the no-op adapter
//! (Cargo.toml pins `idna_adapter` 1.0.0 to keep the Unicode tables out of
//! the component). When a host takes IDNA's slow path (a non-ASCII or
//! `xn--` label) the adapter expects its ASCII letters lowercased already —
//! the real adapter lowercases them itself — and debug-asserts it, so a host
//! like `Ä.Contoso.com` panics in debug builds (found by the `invoke` fuzz
//! target). Host names are case-insensitive, so lowercasing the host before
//! parsing changes nothing else.

use std::borrow::Cow;
use url::{ParseError, Url};

/// `Url::parse` of untrusted text.
pub fn parse(text: &str) -> Result<Url, ParseError> {
    Url::parse(&lower_host(text))
}

/// `base.join(text)` of untrusted text (which may be absolute, or
/// scheme-relative like `//host/path`).
pub fn join(base: &Url, text: &str) -> Result<Url, ParseError> {
    base.join(&lower_host(text))
}

/// `text` with the ASCII letters of its host lowercased, when it has one.
/// Follows the URL standard's leniency: leading spaces and controls, tabs and
/// newlines anywhere, backslashes as slashes, and any number of slashes
/// after the scheme.
fn lower_host(text: &str) -> Cow<'_, str> {
    let is_ignored = |c: char| matches!(c, '\t' | '\n' | '\r');
    let bytes = text.as_bytes();
    let mut i = bytes.iter().position(|&b| b > b' ').unwrap_or(bytes.len());
    // A scheme: a letter, then letters, digits, `+`, `-`, `.`, then `:`.
    let scheme_end = text[i..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c) || is_ignored(c)))
        .map(|n| i + n);
    let has_scheme = matches!(scheme_end, Some(e) if e > i
        && bytes[e] == b':'
        && bytes[i].is_ascii_alphabetic());
    let mut slashes = 0;
    if let (true, Some(e)) = (has_scheme, scheme_end) {
        i = e + 1;
    }
    while i < bytes.len() && (matches!(bytes[i], b'/' | b'\\') || is_ignored(bytes[i] as char)) {
        if bytes[i] != b'\t' && bytes[i] != b'\n' && bytes[i] != b'\r' {
            slashes += 1;
        }
        i += 1;
    }
    // Without a scheme only `//host…` names a host; with one, `https:host`
    // does too (special schemes).
    if !has_scheme && slashes < 2 {
        return Cow::Borrowed(text);
    }
    let end = text[i..]
        .find(['/', '\\', '?', '#'])
        .map_or(text.len(), |n| i + n);
    // The host follows any `userinfo@`, which keeps its case.
    let start = text[i..end].rfind('@').map_or(i, |n| i + n + 1);
    let host = &text[start..end];
    if !host.bytes().any(|b| b.is_ascii_uppercase() || b == b'%') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..start]);
    out.push_str(&lower_host_text(host));
    out.push_str(&text[end..]);
    Cow::Owned(out)
}

/// ASCII letters lowercased, and percent-encoded ones too (the URL parser
/// decodes `%41` to `A` before IDNA sees it): `%41` becomes `a`.
fn lower_host_text(host: &str) -> String {
    let mut out = String::with_capacity(host.len());
    let mut rest = host;
    while let Some(c) = rest.chars().next() {
        let encoded = rest
            .strip_prefix('%')
            .and_then(|r| r.get(..2))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(u8::is_ascii_uppercase);
        match encoded {
            Some(b) => {
                out.push(char::from(b.to_ascii_lowercase()));
                rest = &rest[3..];
            }
            None => {
                out.push(c.to_ascii_lowercase());
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_host_is_lowercased() {
        assert_eq!(
            lower_host("https://Org.CRM.dynamics.com/api/data/v9.2/Accounts?$select=Name#X"),
            "https://org.crm.dynamics.com/api/data/v9.2/Accounts?$select=Name#X"
        );
        assert_eq!(lower_host("//Org.Example/Path"), "//org.example/Path");
        assert_eq!(
            lower_host("https://User:Pw@Host/P"),
            "https://User:Pw@host/P"
        );
        assert_eq!(lower_host("  HTTPS:\\\\Host\\P"), "  HTTPS:\\\\host\\P");
        assert_eq!(lower_host("https:Host/P"), "https:host/P");
        assert_eq!(
            lower_host("https://%41b%c3%A9%4/P%41"),
            "https://ab%c3%a9%4/P%41"
        );
        assert_eq!(lower_host("Accounts(1)/Name"), "Accounts(1)/Name");
        assert_eq!(
            lower_host("/api/data/v9.2/Accounts"),
            "/api/data/v9.2/Accounts"
        );
        assert!(matches!(lower_host("https://org/X"), Cow::Borrowed(_)));
    }

    /// Debug builds panicked here inside the IDNA adapter.
    #[test]
    fn uppercase_hosts_with_non_ascii_labels_are_errors_not_panics() {
        for text in [
            "https://Ä.Contoso.com",
            "https://É%41.Org.com/x",
            "https:Ä.B",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
        // A punycode label takes the slow path too; it is valid ASCII.
        assert_eq!(
            parse("https://XN--ABC.Contoso.com").unwrap().host_str(),
            Some("xn--abc.contoso.com")
        );
        let base = Url::parse("https://org.crm.dynamics.com/api/data/v9.2/").unwrap();
        assert!(join(&base, "//Ä.Evil.com/x").is_err());
        assert_eq!(
            join(&base, "//Org.crm.dynamics.com/x").unwrap().as_str(),
            "https://org.crm.dynamics.com/x"
        );
    }
}
