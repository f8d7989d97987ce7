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
    Url::parse(&lower_host(text, None))
}

/// `base.join(text)` of untrusted text (which may be absolute, or
/// scheme-relative like `//host/path`).
pub fn join(base: &Url, text: &str) -> Result<Url, ParseError> {
    base.join(&lower_host(text, Some(base.scheme())))
}

/// The schemes whose hosts go through IDNA.
const SPECIAL: &[&str] = &["http", "https", "ws", "wss", "ftp", "file"];

/// `text` with the ASCII letters of its authority lowercased, when it has
/// one whose host the URL parser would send through IDNA. Follows the
/// parser's order: tabs and newlines are dropped first (so `%4\n1` is
/// `%41`), leading spaces and controls are skipped, backslashes count as
/// slashes. The whole authority is lowercased, userinfo included: a
/// Dataverse URL never carries userinfo, and `file:` URLs have none (their
/// `@` belongs to the host). `base_scheme` is the scheme `text` is resolved
/// against, if any.
fn lower_host<'a>(text: &'a str, base_scheme: Option<&str>) -> Cow<'a, str> {
    let cleaned = if text.contains(['\t', '\n', '\r']) {
        Cow::Owned(text.replace(['\t', '\n', '\r'], ""))
    } else {
        Cow::Borrowed(text)
    };
    let t: &str = &cleaned;
    let rest = t.trim_start_matches(|c: char| c <= ' ');
    let (scheme, after) = match rest.split_once(':') {
        Some((s, a)) if is_scheme(s) => (Some(s.to_ascii_lowercase()), a),
        _ => (None, rest),
    };
    let body = after.trim_start_matches(['/', '\\']);
    let slashes = after.len() - body.len();
    let names_host = match scheme.as_deref() {
        None => slashes >= 2,
        Some(s) if !SPECIAL.contains(&s) => false,
        Some("file") => slashes >= 2,
        // `https:host` names a host, unless it is resolved against an
        // `https` base: then it is a relative path.
        Some(s) => slashes >= 2 || base_scheme.is_none_or(|b| !b.eq_ignore_ascii_case(s)),
    };
    let authority = &body[..body.find(['/', '\\', '?', '#']).unwrap_or(body.len())];
    if !names_host
        || !authority
            .bytes()
            .any(|b| b.is_ascii_uppercase() || b == b'%')
    {
        return cleaned;
    }
    let at = t.len() - body.len();
    let mut out = String::with_capacity(t.len());
    out.push_str(&t[..at]);
    out.push_str(&lower_host_text(authority));
    out.push_str(&t[at + authority.len()..]);
    Cow::Owned(out)
}

/// A URL scheme: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
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
        let lower = |t| lower_host(t, None).into_owned();
        assert_eq!(
            lower("https://Org.CRM.dynamics.com/api/data/v9.2/Accounts?$select=Name#X"),
            "https://org.crm.dynamics.com/api/data/v9.2/Accounts?$select=Name#X"
        );
        assert_eq!(lower("//Org.Example/Path"), "//org.example/Path");
        assert_eq!(lower("https://User:Pw@Host/P"), "https://user:pw@host/P");
        assert_eq!(lower("  HTTPS:\\\\Host\\P"), "  HTTPS:\\\\host\\P");
        assert_eq!(lower("https:Host/P"), "https:host/P");
        assert_eq!(
            lower("https://%41b%c3%A9%4/P%41"),
            "https://ab%c3%a9%4/P%41"
        );
        // The parser drops tabs and newlines before it decodes `%5\r5`.
        assert_eq!(lower("https://%5\r5X/Y\n"), "https://ux/Y");
        assert_eq!(lower("file:///C:/Dir"), "file:///c:/Dir");
        assert_eq!(lower("file:Dir/X"), "file:Dir/X");
        assert_eq!(lower("mailto:Bob@Example"), "mailto:Bob@Example");
        assert_eq!(lower("Accounts(1)/Name"), "Accounts(1)/Name");
        assert_eq!(lower("/api/data/v9.2/Accounts"), "/api/data/v9.2/Accounts");
        assert!(matches!(
            lower_host("https://org/X", None),
            Cow::Borrowed(_)
        ));
        // Against an https base, `https:Name` is a relative path.
        assert_eq!(lower_host("https:Name", Some("https")), "https:Name");
        assert_eq!(lower_host("http:Name", Some("https")), "http:name");
    }

    /// Debug builds panicked here inside the IDNA adapter.
    #[test]
    fn uppercase_hosts_with_non_ascii_labels_are_errors_not_panics() {
        for text in [
            "https://Ä.Contoso.com",
            "https://É%41.Org.com/x",
            "https:Ä.B",
            // The two inputs the fuzzers found after the first fix.
            "https:///\r5555%5\r\r5\u{e956}\r&7B88888888\n\n\n888888888\u{fffd}\"",
            "file\r:/\\\"fIl}\n\nJ\n\"fIl\nJ\u{79d0}0\u{79d0}i.\u{79d0}\n@&\n",
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
