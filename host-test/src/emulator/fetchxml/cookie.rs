//! FetchXML paging cookies shaped like Dataverse's (reference §4, §3.3):
//! the inner cookie `<cookie page="N"><accountid last="{GUID}" first="{GUID}" /></cookie>`
//! (uppercase braced GUIDs), carried in the
//! `@Microsoft.Dynamics.CRM.fetchxmlpagingcookie` annotation as
//! `<cookie pagenumber="P" pagingcookie="…" istracking="False" />` where the
//! inner cookie is URL-encoded twice with lowercase hex (`%253ccookie%2520page…`).

use quick_xml::Reader;
use quick_xml::events::Event;

/// One ordering column's boundary values on the returned page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieColumn {
    /// Column logical name (`accountid`, `fullname`, …).
    pub name: String,
    /// Value on the page's last row, as Dataverse writes it (GUIDs braced
    /// and uppercase: use [`braced_guid`]).
    pub last: String,
    /// Value on the page's first row.
    pub first: String,
}

/// `{8A1D…}`: a GUID as it appears in paging cookies.
pub fn braced_guid(guid: &str) -> String {
    let g = guid.trim().trim_start_matches('{').trim_end_matches('}');
    format!("{{{}}}", g.to_ascii_uppercase())
}

/// The inner cookie for page `page` (the page being returned).
pub fn inner_cookie(page: u32, columns: &[CookieColumn]) -> String {
    let mut out = format!("<cookie page=\"{page}\">");
    for c in columns {
        out.push_str(&format!(
            "<{} last=\"{}\" first=\"{}\" />",
            c.name,
            xml_escape(&c.last),
            xml_escape(&c.first)
        ));
    }
    out.push_str("</cookie>");
    out
}

/// The annotation value: the inner cookie double-URL-encoded inside the
/// outer element. `outer_page_number` is what Dataverse puts in
/// `pagenumber` (in Microsoft's examples it stays at "2" while the inner
/// `page` advances — callers emulate that quirk, reference §4).
pub fn annotation(outer_page_number: u32, inner: &str) -> String {
    format!(
        "<cookie pagenumber=\"{outer_page_number}\" pagingcookie=\"{}\" istracking=\"False\" />",
        url_encode(&url_encode(inner))
    )
}

/// The `$skiptoken` cookie of OData paging (reference §3.3): same
/// double-encoded inner cookie, `pagenumber` = the next page.
pub fn skiptoken(next_page: u32, inner: &str) -> String {
    annotation(next_page, inner)
}

/// URL-encoding as Dataverse applies it to cookies: lowercase hex, `%20`
/// for spaces, letters, digits and `-_.!*()` kept.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!*()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A paging cookie as a client sent it back in `paging-cookie`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCookie {
    pub page: Option<u32>,
    pub columns: Vec<CookieColumn>,
}

/// Reads an inner cookie (`<cookie page="1"><accountid last=… first=… /></cookie>`).
/// `None` when it is not one: Dataverse then falls back to simple paging
/// (UNCONFIRMED; the reference does not say how a bad cookie is answered).
pub fn parse_inner(xml: &str) -> Option<ParsedCookie> {
    let mut reader = Reader::from_str(xml);
    let mut cookie: Option<ParsedCookie> = None;
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) | Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let mut attrs = Vec::new();
                for a in e.attributes() {
                    let a = a.ok()?;
                    attrs.push((
                        String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                        a.unescape_value().ok()?.into_owned(),
                    ));
                }
                let get = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                match cookie.as_mut() {
                    None if name == "cookie" => {
                        cookie = Some(ParsedCookie {
                            page: get("page").and_then(|p| p.parse().ok()),
                            columns: Vec::new(),
                        });
                    }
                    None => return None,
                    Some(c) => c.columns.push(CookieColumn {
                        name,
                        last: get("last")?,
                        first: get("first")?,
                    }),
                }
            }
            Event::Eof => return cookie,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference §4 (Microsoft's FetchXML Web API example), the annotation
    /// of the first page, byte for byte.
    const MS_ANNOTATION: &str = "<cookie pagenumber=\"2\" pagingcookie=\"%253ccookie%2520page%253d%25221%2522%253e%253cfullname%2520last%253d%2522Ben%2520Ode%2522%2520first%253d%2522Ana%2520Ruiz%2522%2520%252f%253e%253ccontactid%2520last%253d%2522%257b1E7A0000-0000-0000-0000-000000000002%257d%2522%2520first%253d%2522%257b0D6F0000-0000-0000-0000-000000000001%257d%2522%2520%252f%253e%253c%252fcookie%253e\" istracking=\"False\" />";

    #[test]
    fn builds_microsofts_example_exactly() {
        let inner = inner_cookie(
            1,
            &[
                CookieColumn {
                    name: "fullname".into(),
                    last: "Ben Ode".into(),
                    first: "Ana Ruiz".into(),
                },
                CookieColumn {
                    name: "contactid".into(),
                    last: braced_guid("1e7a0000-0000-0000-0000-000000000002"),
                    first: braced_guid("0d6f0000-0000-0000-0000-000000000001"),
                },
            ],
        );
        assert_eq!(
            inner,
            "<cookie page=\"1\"><fullname last=\"Ben Ode\" first=\"Ana Ruiz\" /><contactid last=\"{1E7A0000-0000-0000-0000-000000000002}\" first=\"{0D6F0000-0000-0000-0000-000000000001}\" /></cookie>"
        );
        assert_eq!(annotation(2, &inner), MS_ANNOTATION);
    }

    #[test]
    fn round_trips_through_the_request_attribute() {
        let inner = inner_cookie(
            4,
            &[CookieColumn {
                name: "name".into(),
                last: "A \"quoted\" & <odd> 50%".into(),
                first: "Z".into(),
            }],
        );
        let parsed = parse_inner(&inner).unwrap();
        assert_eq!(parsed.page, Some(4));
        assert_eq!(parsed.columns[0].last, "A \"quoted\" & <odd> 50%");
        assert_eq!(parse_inner("<other/>"), None);
        assert_eq!(parse_inner("<cookie page='1'><x last='1'/></cookie>"), None);
        assert_eq!(parse_inner("not xml <"), None);
        // The encoded form contains no characters that need XML escaping.
        let ann = annotation(5, &inner);
        let encoded = ann
            .split("pagingcookie=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(
            encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"%-_.!*()".contains(&b))
        );
    }
}
