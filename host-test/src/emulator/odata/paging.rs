//! Server-driven paging: Dataverse's `$skiptoken`, an XML cookie whose
//! `pagingcookie` attribute is itself a double-URL-encoded cookie naming the
//! first and last primary keys of the page just served:
//! `<cookie pagenumber="2" pagingcookie="%253ccookie%2520page…" istracking="False" />`.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Default and maximum page size.
pub const MAX_PAGE_SIZE: usize = 5000;

/// Everything but unreserved characters is encoded.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

/// Leaves `=` and `/` readable, as Dataverse's nextLinks show the token:
/// `$skiptoken=%3Ccookie%20pagenumber=%222%22%20…%20/%3E`.
const TOKEN_IN_URL: &AsciiSet = &ENCODE.remove(b'=').remove(b'/');

/// The `$skiptoken` value as it appears in a nextLink.
pub fn encode_token_for_url(token: &str) -> String {
    utf8_percent_encode(token, TOKEN_IN_URL).to_string()
}

/// Like [`encode`] with lower-case hex digits, as .NET's `UrlEncode` writes
/// the inner paging cookie.
fn encode_lower(s: &str) -> String {
    let upper = encode(s);
    let mut out = String::with_capacity(upper.len());
    let mut hex_left = 0;
    for c in upper.chars() {
        if c == '%' {
            hex_left = 2;
            out.push(c);
        } else if hex_left > 0 {
            hex_left -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Where the previous page ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCookie {
    /// The page number the token asks for (1-based).
    pub page: usize,
    /// Primary key of the last row served (lower case).
    pub last: String,
    pub first: String,
}

/// The `$skiptoken` value (not yet URL-encoded for the query string) for
/// the page after one that held `first`..`last` of `primary_id`.
pub fn skiptoken(primary_id: &str, page_served: usize, first: &str, last: &str) -> String {
    let inner = format!(
        "<cookie page=\"{page_served}\"><{primary_id} last=\"{{{}}}\" first=\"{{{}}}\" /></cookie>",
        last.to_ascii_uppercase(),
        first.to_ascii_uppercase()
    );
    format!(
        "<cookie pagenumber=\"{}\" pagingcookie=\"{}\" istracking=\"False\" />",
        page_served + 1,
        encode_lower(&encode_lower(&inner))
    )
}

fn attr<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let start = xml.find(&key)? + key.len();
    let len = xml[start..].find('"')?;
    Some(&xml[start..start + len])
}

/// Reads a `$skiptoken` (already URL-decoded once by the query parser).
pub fn parse_skiptoken(token: &str) -> Option<PageCookie> {
    let page = attr(token, "pagenumber")?.parse().ok()?;
    let cookie = attr(token, "pagingcookie")?;
    let once = percent_decode_str(cookie).decode_utf8().ok()?;
    let inner = percent_decode_str(&once).decode_utf8().ok()?.into_owned();
    let clean = |s: &str| s.trim_matches(['{', '}']).to_ascii_lowercase();
    Some(PageCookie {
        page,
        last: clean(attr(&inner, "last")?),
        first: clean(attr(&inner, "first")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skiptoken_round_trips_and_looks_like_dataverse() {
        let t = skiptoken(
            "accountid",
            1,
            "a0000000-0000-4000-8000-000000000001",
            "a0000000-0000-4000-8000-000000000002",
        );
        assert!(t.starts_with("<cookie pagenumber=\"2\" pagingcookie=\"%253ccookie%2520page%253d%25221%2522%253e%253caccountid%2520last%253d%2522%257bA0000000"));
        assert!(t.ends_with("istracking=\"False\" />"));
        let c = parse_skiptoken(&t).unwrap();
        assert_eq!(c.page, 2);
        assert_eq!(c.last, "a0000000-0000-4000-8000-000000000002");
        assert_eq!(c.first, "a0000000-0000-4000-8000-000000000001");
        assert!(parse_skiptoken("garbage").is_none());
    }
}
