//! FetchXML through the Web API (reference §4): validating the user's query,
//! rewriting the `<fetch>` element's paging attributes with a real XML
//! library, reading Dataverse's paging cookie, and deciding when the query
//! is too long for a plain GET.
//!
//! How `runFetchXml` uses it: [`FetchXml::parse`] → for each page
//! [`FetchXml::rewrite`] with [`NextPage::paging`] (page 1: no cookie) →
//! [`plan`] (GET, or [`batch_parts`] inside `$batch`) → send with
//! `Prefer: odata.include-annotations="Microsoft.Dynamics.CRM.fetchxmlpagingcookie,Microsoft.Dynamics.CRM.morerecords"`
//! (or `*`) → [`NextPage::from_response`] until `None`; a `nextPage` input
//! is read with [`NextPage::parse_token`] and [`NextPage::token`] is
//! returned with every page.
//!
//! The XML is never spliced as a string: attributes are read and written
//! through `quick-xml`, which escapes values itself.

use crate::error::{ConnectorError, Result};
use crate::percent;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, Writer};
use serde_json::Value;

/// The input key every error about the query names.
pub const INPUT: &str = "fetchXml";

/// Longest `GET …?fetchXml=…` URL sent as is. Longer queries go inside a
/// `$batch` body instead, where the inner request line may be up to
/// [`MAX_BATCH_GET_URL_LEN`]. Reference §4 ("URL length is limited for GET;
/// move long FetchXML into a `$batch` body", the ~32 KB figure is the
/// commonly cited limit, UNCONFIRMED by Microsoft) and §5.
pub const MAX_GET_URL_LEN: usize = 32 * 1024;

/// Longest inner GET URL Dataverse accepts inside `$batch`: 64 KB (65,536
/// characters), reference §4 [S: FXW] [S: BATCH].
pub const MAX_BATCH_GET_URL_LEN: usize = 65_536;

/// The annotations that carry FetchXML paging (reference §4).
pub const MORE_RECORDS: &str = "@Microsoft.Dynamics.CRM.morerecords";
pub const PAGING_COOKIE: &str = "@Microsoft.Dynamics.CRM.fetchxmlpagingcookie";

/// Default and maximum FetchXML page size (reference §4).
pub const MAX_PAGE_SIZE: u32 = 5000;

/// A FetchXML query that parsed and has a `<fetch>` root with an `<entity>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchXml {
    source: String,
    entity: String,
    page: Option<u32>,
    count: Option<u32>,
    top: Option<u32>,
    aggregate: bool,
}

/// What to set on `<fetch>` for one request. `None` removes the attribute
/// (a stale `paging-cookie` must not survive a jump to another page).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paging {
    pub page: Option<u32>,
    pub count: Option<u32>,
    pub cookie: Option<String>,
}

/// How a query is sent: a plain GET, or a GET inside `$batch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Get,
    Batch,
}

impl FetchXml {
    /// Parses and validates the user's query.
    pub fn parse(xml: &str) -> Result<Self> {
        let mut reader = Reader::from_str(xml);
        let mut depth = 0usize;
        let mut root_seen = false;
        let mut query = FetchXml {
            source: xml.to_string(),
            entity: String::new(),
            page: None,
            count: None,
            top: None,
            aggregate: false,
        };
        let mut entity_found = false;
        loop {
            let event = reader
                .read_event()
                .map_err(|e| invalid_at(xml, reader.error_position(), &e.to_string()))?;
            let pos = reader.buffer_position();
            match event {
                Event::Start(ref e) | Event::Empty(ref e) => {
                    let is_empty = matches!(event, Event::Empty(_));
                    if depth == 0 {
                        if root_seen {
                            return Err(invalid_at(xml, pos, "more than one root element"));
                        }
                        root_seen = true;
                        let name = element_name(e);
                        if name != "fetch" {
                            return Err(invalid_at(
                                xml,
                                pos,
                                &format!("the root element is <{name}>, expected <fetch>"),
                            ));
                        }
                        for (key, value) in attributes(xml, pos, e)? {
                            match key.as_str() {
                                "page" => query.page = Some(positive(xml, pos, "page", &value)?),
                                "count" => {
                                    let count = positive(xml, pos, "count", &value)?;
                                    if count > MAX_PAGE_SIZE {
                                        return Err(invalid_at(
                                            xml,
                                            pos,
                                            &format!(
                                                "fetch count is {count}; Dataverse pages hold at most {MAX_PAGE_SIZE} rows"
                                            ),
                                        ));
                                    }
                                    query.count = Some(count);
                                }
                                "top" => query.top = Some(positive(xml, pos, "top", &value)?),
                                "aggregate" => query.aggregate = value.eq_ignore_ascii_case("true"),
                                _ => {}
                            }
                        }
                    } else if depth == 1 && element_name(e) == "entity" {
                        if entity_found {
                            return Err(invalid_at(xml, pos, "more than one <entity> in <fetch>"));
                        }
                        entity_found = true;
                        let name = attributes(xml, pos, e)?
                            .into_iter()
                            .find(|(k, _)| k == "name")
                            .map(|(_, v)| v)
                            .unwrap_or_default();
                        if name.trim().is_empty() {
                            return Err(invalid_at(xml, pos, "<entity> has no name attribute"));
                        }
                        query.entity = name.trim().to_string();
                    } else {
                        // Checks the attributes of every element are well-formed.
                        attributes(xml, pos, e)?;
                    }
                    if !is_empty {
                        depth += 1;
                    }
                }
                Event::End(_) => depth = depth.saturating_sub(1),
                Event::Text(ref t) if depth == 0 => {
                    let text = String::from_utf8_lossy(t.as_ref());
                    if !text.trim().is_empty() {
                        return Err(invalid_at(xml, pos, "text outside the <fetch> element"));
                    }
                }
                Event::CData(_) | Event::GeneralRef(_) if depth == 0 => {
                    return Err(invalid_at(xml, pos, "text outside the <fetch> element"));
                }
                Event::Eof => break,
                _ => {}
            }
        }
        let end = reader.buffer_position();
        if !root_seen {
            return Err(invalid_at(xml, end, "no <fetch> element"));
        }
        if depth > 0 {
            return Err(invalid_at(
                xml,
                end,
                "unexpected end of the query: an element is not closed",
            ));
        }
        if !entity_found {
            return Err(invalid_at(xml, end, "<fetch> has no <entity> element"));
        }
        if query.top.is_some() && query.page.is_some() {
            return Err(ConnectorError::invalid_input(
                INPUT,
                "fetch has both top and page; Dataverse does not combine top with paging: remove one",
            ));
        }
        Ok(query)
    }

    /// The `<entity name=…>` logical name.
    pub fn entity_name(&self) -> &str {
        &self.entity
    }

    pub fn page(&self) -> Option<u32> {
        self.page
    }

    pub fn count(&self) -> Option<u32> {
        self.count
    }

    pub fn top(&self) -> Option<u32> {
        self.top
    }

    pub fn is_aggregate(&self) -> bool {
        self.aggregate
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The query with `<fetch>`'s `page`, `count` and `paging-cookie` set
    /// (or removed) as `paging` says; everything else is copied through.
    pub fn rewrite(&self, paging: &Paging) -> Result<String> {
        let xml = self.source.as_str();
        let mut reader = Reader::from_str(xml);
        let mut writer = Writer::new(Vec::with_capacity(xml.len() + 256));
        let mut depth = 0usize;
        loop {
            let event = reader
                .read_event()
                .map_err(|e| invalid_at(xml, reader.error_position(), &e.to_string()))?;
            let pos = reader.buffer_position();
            let out = match event {
                Event::Eof => break,
                Event::Start(e) if depth == 0 => {
                    depth += 1;
                    Event::Start(paged_fetch(xml, pos, &e, paging)?)
                }
                Event::Empty(e) if depth == 0 => Event::Empty(paged_fetch(xml, pos, &e, paging)?),
                Event::Start(e) => {
                    depth += 1;
                    Event::Start(e)
                }
                Event::End(e) => {
                    depth = depth.saturating_sub(1);
                    Event::End(e)
                }
                other => other,
            };
            writer
                .write_event(out)
                .map_err(|e| ConnectorError::invalid_input(INPUT, e.to_string()))?;
        }
        String::from_utf8(writer.into_inner())
            .map_err(|_| ConnectorError::invalid_input(INPUT, "the query is not UTF-8"))
    }
}

/// `<fetch …>` with its own attributes except the paging ones, then the
/// paging ones from `paging` (values escaped by quick-xml).
fn paged_fetch(
    xml: &str,
    pos: u64,
    e: &BytesStart<'_>,
    paging: &Paging,
) -> Result<BytesStart<'static>> {
    let name = element_name(e);
    let mut out = BytesStart::new(name);
    for (key, value) in attributes(xml, pos, e)? {
        if !matches!(key.as_str(), "page" | "count" | "paging-cookie") {
            out.push_attribute((key.as_str(), value.as_str()));
        }
    }
    if let Some(count) = paging.count {
        out.push_attribute(("count", count.to_string().as_str()));
    }
    if let Some(page) = paging.page {
        out.push_attribute(("page", page.to_string().as_str()));
    }
    if let Some(cookie) = &paging.cookie {
        out.push_attribute(("paging-cookie", cookie.as_str()));
    }
    Ok(out)
}

fn element_name(e: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(e.name().as_ref()).into_owned()
}

/// Every attribute as (name, unescaped value); malformed ones are errors.
fn attributes(xml: &str, pos: u64, e: &BytesStart<'_>) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for attr in e.attributes() {
        let attr = attr.map_err(|err| invalid_at(xml, pos, &err.to_string()))?;
        let key = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
        let value = attr
            .unescape_value()
            .map_err(|err| invalid_at(xml, pos, &err.to_string()))?
            .into_owned();
        out.push((key, value));
    }
    Ok(out)
}

fn positive(xml: &str, pos: u64, name: &str, value: &str) -> Result<u32> {
    match value.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(invalid_at(
            xml,
            pos,
            &format!("fetch {name}=\"{value}\" is not a positive whole number"),
        )),
    }
}

/// `invalid-input` naming `fetchXml`, with the byte offset turned into a
/// line and column a person can find in their editor.
fn invalid_at(xml: &str, offset: u64, message: &str) -> ConnectorError {
    let offset = usize::try_from(offset).unwrap_or(usize::MAX).min(xml.len());
    let before = xml.get(..offset).unwrap_or(xml);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count() + 1)
        .unwrap_or(1);
    ConnectorError::invalid_input(
        INPUT,
        format!("invalid FetchXML at line {line}, column {column} (byte {offset}): {message}"),
    )
}

/// The paging cookie for the next request: the inner
/// `<cookie page="N">…</cookie>` Dataverse returned, URL-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagingCookie {
    /// The decoded inner cookie, put as is into `paging-cookie`.
    pub xml: String,
    /// Its `page` attribute: the page it was returned with.
    pub page: Option<u32>,
}

impl PagingCookie {
    /// Reads `@Microsoft.Dynamics.CRM.fetchxmlpagingcookie`
    /// (`<cookie pagenumber="2" pagingcookie="%253ccookie…" istracking="False" />`):
    /// takes the `pagingcookie` attribute and URL-decodes it as many times
    /// as Dataverse encoded it (twice in every documented response). A
    /// malformed annotation is the server's fault: a `transport` error.
    pub fn from_annotation(annotation: &str) -> Result<Self> {
        let bad = |why: &str| {
            ConnectorError::transport(format!(
                "Dataverse returned a FetchXML paging cookie that cannot be read: {why}"
            ))
        };
        let outer = first_element(annotation).map_err(|e| bad(&e))?;
        let encoded = outer
            .attrs
            .iter()
            .find(|(k, _)| k == "pagingcookie")
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| bad("no pagingcookie attribute"))?;
        let inner = decode_cookie(encoded)
            .ok_or_else(|| bad("the pagingcookie attribute is not URL-encoded XML"))?;
        Self::from_inner(inner).map_err(|e| bad(&e))
    }

    /// Reads a decoded inner cookie (`<cookie page="1">…</cookie>`).
    fn from_inner(xml: String) -> std::result::Result<Self, String> {
        let el = first_element(&xml)?;
        if el.name != "cookie" {
            return Err(format!(
                "the cookie's root is <{}>, expected <cookie>",
                el.name
            ));
        }
        let page = el
            .attrs
            .iter()
            .find(|(k, _)| k == "page")
            .and_then(|(_, v)| v.trim().parse::<u32>().ok());
        Ok(PagingCookie { xml, page })
    }
}

/// Decodes `%XX` up to three times until the text is XML (`<…`): the
/// documented responses encode twice; a server that encodes once still works,
/// and a `%` inside a cookie value (encoded as `%2525`) survives intact.
fn decode_cookie(encoded: &str) -> Option<String> {
    let mut text = encoded.trim().to_string();
    for _ in 0..3 {
        if text.starts_with('<') {
            return Some(text);
        }
        text = percent::decode(&text)?;
    }
    text.starts_with('<').then_some(text)
}

struct Element {
    name: String,
    attrs: Vec<(String, String)>,
}

/// The first element of an XML fragment, with unescaped attributes.
fn first_element(xml: &str) -> std::result::Result<Element, String> {
    let mut reader = Reader::from_str(xml);
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) | Event::Empty(e) => {
                let mut attrs = Vec::new();
                for a in e.attributes() {
                    let a = a.map_err(|e| e.to_string())?;
                    let v = a.unescape_value().map_err(|e| e.to_string())?;
                    attrs.push((
                        String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                        v.into_owned(),
                    ));
                }
                return Ok(Element {
                    name: element_name(&e),
                    attrs,
                });
            }
            Event::Eof => return Err("no element".into()),
            _ => {}
        }
    }
}

/// Where to resume: the next page number and, when Dataverse gave one, the
/// paging cookie. It becomes the `nextPage` output a workflow passes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextPage {
    pub page: u32,
    pub cookie: Option<PagingCookie>,
}

impl NextPage {
    /// From a FetchXML response body fetched with page `current_page`:
    /// `None` when `morerecords` is absent or false (the last page). The
    /// next page number is our own counter + 1 (the outer `pagenumber` may
    /// not advance, reference §4). With `morerecords` but no cookie (e.g.
    /// ordered by a link-entity column), paging falls back to page numbers.
    pub fn from_response(current_page: u32, body: &Value) -> Result<Option<Self>> {
        if body.get(MORE_RECORDS).and_then(Value::as_bool) != Some(true) {
            return Ok(None);
        }
        let cookie = match body.get(PAGING_COOKIE).and_then(Value::as_str) {
            Some(annotation) if !annotation.trim().is_empty() => {
                Some(PagingCookie::from_annotation(annotation)?)
            }
            _ => None,
        };
        Ok(Some(NextPage {
            page: current_page.saturating_add(1),
            cookie,
        }))
    }

    /// The `nextPage` value handed to workflows: `"<page>"` alone, or
    /// `"<page>:<inner cookie XML>"`. Opaque to users; parsed back by
    /// [`NextPage::parse_token`].
    pub fn token(&self) -> String {
        match &self.cookie {
            Some(c) => format!("{}:{}", self.page, c.xml),
            None => self.page.to_string(),
        }
    }

    /// Reads a `nextPage` input: our own token, or (for workflows that kept
    /// Dataverse's raw value) the whole `fetchxmlpagingcookie` annotation or
    /// the decoded inner cookie, whose `page` + 1 is the next page.
    pub fn parse_token(input_key: &str, token: &str) -> Result<Self> {
        let token = token.trim();
        let bad = |why: &str| {
            ConnectorError::invalid_input(
                input_key,
                format!("not a next-page value returned by an earlier call: {why}"),
            )
        };
        let (page_text, rest) = match token.split_once(':') {
            Some((p, rest)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                (Some(p), Some(rest))
            }
            _ if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) => {
                (Some(token), None)
            }
            _ => (None, Some(token)),
        };
        let page = match page_text {
            Some(p) => match p.parse::<u32>() {
                Ok(n) if n >= 1 => Some(n),
                _ => return Err(bad("the page number is out of range")),
            },
            None => None,
        };
        let cookie = match rest {
            None => None,
            Some(xml) => {
                let xml = decode_cookie(xml).ok_or_else(|| bad("the cookie is not XML"))?;
                let el = first_element(&xml).map_err(|e| bad(&e))?;
                let is_outer = el.attrs.iter().any(|(k, _)| k == "pagingcookie");
                let cookie = if is_outer {
                    PagingCookie::from_annotation(&xml).map_err(|e| bad(&e.message))?
                } else {
                    PagingCookie::from_inner(xml).map_err(|e| bad(&e))?
                };
                Some(cookie)
            }
        };
        let page = match (page, &cookie) {
            (Some(p), _) => p,
            (None, Some(PagingCookie { page: Some(p), .. })) => p.saturating_add(1),
            _ => return Err(bad("the cookie carries no page number")),
        };
        Ok(NextPage { page, cookie })
    }

    /// The `<fetch>` attributes for this page.
    pub fn paging(&self, count: Option<u32>) -> Paging {
        Paging {
            page: Some(self.page),
            count,
            cookie: self.cookie.as_ref().map(|c| c.xml.clone()),
        }
    }
}

/// `{entity_set}?fetchXml=<encoded>`, relative to the service root.
pub fn request_path(entity_set: &str, fetch_xml: &str) -> String {
    format!(
        "{entity_set}?fetchXml={}",
        percent::encode_component(fetch_xml)
    )
}

/// GET when the full URL fits [`MAX_GET_URL_LEN`], `$batch` when it fits
/// [`MAX_BATCH_GET_URL_LEN`]; longer is an `invalid-input` (no transport
/// Dataverse offers would take it).
pub fn transport_for(full_url_len: usize) -> Result<Transport> {
    if full_url_len <= MAX_GET_URL_LEN {
        Ok(Transport::Get)
    } else if full_url_len <= MAX_BATCH_GET_URL_LEN {
        Ok(Transport::Batch)
    } else {
        Err(ConnectorError::invalid_input(
            INPUT,
            format!(
                "the encoded query is {full_url_len} characters; Dataverse accepts at most {MAX_BATCH_GET_URL_LEN} even inside $batch: shorten long in-lists or split the query"
            ),
        ))
    }
}

/// One page's request: the path relative to the service root and how to
/// send it. `service_root` is the absolute root the GET would use
/// (`https://org.crm.dynamics.com/api/data/v9.2/`), which counts toward the
/// URL length.
pub fn plan(service_root: &str, entity_set: &str, fetch_xml: &str) -> Result<(Transport, String)> {
    let path = request_path(entity_set, fetch_xml);
    let transport = transport_for(service_root.len() + path.len())?;
    Ok((transport, path))
}

/// The `$batch` form of a long FetchXML GET: one individual GET part with
/// a server-relative URL (`api_root` such as `/api/data/v9.2/`) and the
/// request's own headers (`Prefer` for annotations, impersonation). The
/// single response is read back with [`crate::batch::decode`].
pub fn batch_parts(
    api_root: &str,
    path: &str,
    headers: Vec<(String, String)>,
) -> Vec<crate::batch::BatchPart> {
    vec![crate::batch::BatchPart::Request(
        crate::batch::InnerRequest {
            method: "GET",
            url: format!("{api_root}{path}"),
            headers,
            body: None,
            content_id: Some("1".into()),
        },
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde_json::json;

    const Q: &str = "<fetch count='2' page='1'><entity name='contact'><attribute name='fullname'/><order attribute='fullname'/></entity></fetch>";

    /// Reference §4, Microsoft's FetchXML Web API example (first page).
    const ANNOTATION_PAGE1: &str = "<cookie pagenumber=\"2\" pagingcookie=\"%253ccookie%2520page%253d%25221%2522%253e%253cfullname%2520last%253d%2522Ben%2520Ode%2522%2520first%253d%2522Ana%2520Ruiz%2522%2520%252f%253e%253ccontactid%2520last%253d%2522%257b1E7A0000-0000-0000-0000-000000000002%257d%2522%2520first%253d%2522%257b0D6F0000-0000-0000-0000-000000000001%257d%2522%2520%252f%253e%253c%252fcookie%253e\" istracking=\"False\" />";
    /// Same shape, second page: the outer pagenumber stays "2" (the quirk),
    /// the inner page advances.
    const ANNOTATION_PAGE2: &str = "<cookie pagenumber=\"2\" pagingcookie=\"%253ccookie%2520page%253d%25222%2522%253e%253caccountid%2520last%253d%2522%257bA1B2C3D4-0000-0000-0000-000000000004%257d%2522%2520first%253d%2522%257bA1B2C3D4-0000-0000-0000-000000000003%257d%2522%2520%252f%253e%253c%252fcookie%253e\" istracking=\"False\" />";

    fn input_of(e: &ConnectorError) -> String {
        match &e.kind {
            ErrorKind::InvalidInput { input } => input.clone(),
            other => panic!("expected invalid-input, got {other:?}"),
        }
    }

    #[test]
    fn parses_entity_and_paging_attributes() {
        let q = FetchXml::parse(Q).unwrap();
        assert_eq!(q.entity_name(), "contact");
        assert_eq!(q.page(), Some(1));
        assert_eq!(q.count(), Some(2));
        assert!(!q.is_aggregate());
        let agg = FetchXml::parse("<?xml version='1.0'?><!-- c --><fetch aggregate='true'><entity name='account'><attribute name='accountid' aggregate='count' alias='n'/></entity></fetch>").unwrap();
        assert!(agg.is_aggregate());
        assert_eq!(agg.entity_name(), "account");
    }

    #[test]
    fn malformed_xml_names_fetchxml_with_position() {
        let e = FetchXml::parse("<fetch>\n  <entity name='account'>\n  </entitx>\n</fetch>")
            .unwrap_err();
        assert_eq!(input_of(&e), "fetchXml");
        assert!(e.message.contains("line 3"), "{}", e.message);
        let e = FetchXml::parse("<fetch><entity name='account'></entity>").unwrap_err();
        assert_eq!(input_of(&e), "fetchXml");
        assert!(e.message.contains("not closed"), "{}", e.message);
        let e = FetchXml::parse("<fetch><entity name='a' x=></entity></fetch>").unwrap_err();
        assert!(e.message.contains("line 1, column"), "{}", e.message);
        let e = FetchXml::parse("not xml at all").unwrap_err();
        assert_eq!(input_of(&e), "fetchXml");
    }

    #[test]
    fn wrong_root_missing_entity_and_bad_numbers() {
        let e = FetchXml::parse("<query><entity name='a'/></query>").unwrap_err();
        assert!(
            e.message.contains("root element is <query>"),
            "{}",
            e.message
        );
        let e = FetchXml::parse("<fetch><attribute name='a'/></fetch>").unwrap_err();
        assert!(e.message.contains("no <entity>"), "{}", e.message);
        let e = FetchXml::parse("<fetch><entity/></fetch>").unwrap_err();
        assert!(e.message.contains("no name"), "{}", e.message);
        let e = FetchXml::parse("<fetch count='0'><entity name='a'/></fetch>").unwrap_err();
        assert!(e.message.contains("count"), "{}", e.message);
        let e = FetchXml::parse("<fetch count='5001'><entity name='a'/></fetch>").unwrap_err();
        assert!(e.message.contains("5000"), "{}", e.message);
        let e = FetchXml::parse("<fetch/><fetch/>").unwrap_err();
        assert_eq!(input_of(&e), "fetchXml");
        let e = FetchXml::parse("<fetch top='5' page='2'><entity name='a'/></fetch>").unwrap_err();
        assert!(e.message.contains("top"), "{}", e.message);
    }

    #[test]
    fn rewrite_sets_paging_with_escaping_and_keeps_the_rest() {
        let q = FetchXml::parse(
            "<fetch version=\"1.0\" page='7' paging-cookie='old' distinct='true'>\n <entity name='contact'><filter><condition attribute='fullname' operator='eq' value='O&apos;Neil &amp; \"Co\"'/></filter></entity></fetch>",
        )
        .unwrap();
        let cookie =
            "<cookie page=\"1\"><fullname last=\"Ben &amp; Ode\" first=\"Ana\" /></cookie>";
        let out = q
            .rewrite(&Paging {
                page: Some(2),
                count: Some(500),
                cookie: Some(cookie.into()),
            })
            .unwrap();
        // Parses again and holds exactly the values set, unescaped by the library.
        let again = FetchXml::parse(&out).unwrap();
        assert_eq!(again.page(), Some(2));
        assert_eq!(again.count(), Some(500));
        let fetch = first_element(&out).unwrap();
        let get = |k: &str| {
            fetch
                .attrs
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("paging-cookie").as_deref(), Some(cookie));
        assert_eq!(get("version").as_deref(), Some("1.0"));
        assert_eq!(get("distinct").as_deref(), Some("true"));
        assert_eq!(fetch.attrs.iter().filter(|(k, _)| k == "page").count(), 1);
        assert!(
            !out.contains("paging-cookie=\"<"),
            "the cookie is escaped: {out}"
        );
        // The condition's value survived byte-exact.
        assert!(out.contains("value='O&apos;Neil &amp; \"Co\"'"), "{out}");
        // Removing the cookie removes the attribute.
        let none = q
            .rewrite(&Paging {
                page: Some(3),
                count: None,
                cookie: None,
            })
            .unwrap();
        assert!(!none.contains("paging-cookie"), "{none}");
        assert!(none.contains("page=\"3\""), "{none}");
    }

    #[test]
    fn cookie_from_microsoft_example_is_decoded_twice() {
        let c = PagingCookie::from_annotation(ANNOTATION_PAGE1).unwrap();
        assert_eq!(
            c.xml,
            "<cookie page=\"1\"><fullname last=\"Ben Ode\" first=\"Ana Ruiz\" /><contactid last=\"{1E7A0000-0000-0000-0000-000000000002}\" first=\"{0D6F0000-0000-0000-0000-000000000001}\" /></cookie>"
        );
        assert_eq!(c.page, Some(1));
        let c2 = PagingCookie::from_annotation(ANNOTATION_PAGE2).unwrap();
        assert_eq!(
            c2.page,
            Some(2),
            "the inner page advances even though the outer pagenumber does not"
        );
        assert!(
            c2.xml
                .starts_with("<cookie page=\"2\"><accountid last=\"{A1B2C3D4")
        );
    }

    #[test]
    fn next_page_relies_on_own_counter_and_inner_cookie() {
        let body = json!({PAGING_COOKIE: ANNOTATION_PAGE2, MORE_RECORDS: true, "value": []});
        let next = NextPage::from_response(2, &body).unwrap().unwrap();
        assert_eq!(next.page, 3, "own counter, not the outer pagenumber=\"2\"");
        let token = next.token();
        assert!(token.starts_with("3:<cookie page=\"2\">"));
        assert_eq!(NextPage::parse_token("nextPage", &token).unwrap(), next);
        // The next request's fetch carries page 3 and the decoded cookie.
        let q = FetchXml::parse(Q).unwrap();
        let out = q.rewrite(&next.paging(Some(500))).unwrap();
        let fetch = first_element(&out).unwrap();
        let get = |k: &str| {
            fetch
                .attrs
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("page").as_deref(), Some("3"));
        assert_eq!(
            get("paging-cookie"),
            next.cookie.as_ref().map(|c| c.xml.clone())
        );
    }

    #[test]
    fn last_page_and_cookieless_pages() {
        assert_eq!(
            NextPage::from_response(4, &json!({"value": []})).unwrap(),
            None
        );
        assert_eq!(
            NextPage::from_response(4, &json!({MORE_RECORDS: false})).unwrap(),
            None
        );
        let n = NextPage::from_response(4, &json!({MORE_RECORDS: true}))
            .unwrap()
            .unwrap();
        assert_eq!(
            n,
            NextPage {
                page: 5,
                cookie: None
            }
        );
        assert_eq!(n.token(), "5");
        assert_eq!(NextPage::parse_token("nextPage", "5").unwrap(), n);
    }

    #[test]
    fn raw_dataverse_cookies_are_accepted_as_next_page() {
        let from_outer = NextPage::parse_token("nextPage", ANNOTATION_PAGE1).unwrap();
        assert_eq!(from_outer.page, 2);
        let inner = from_outer.cookie.clone().unwrap().xml;
        let from_inner = NextPage::parse_token("nextPage", &inner).unwrap();
        assert_eq!(from_inner, from_outer);
        for bad in ["", "0", "abc", "<cookie/>", "3:<notxml", "99999999999"] {
            let e = NextPage::parse_token("nextPage", bad).unwrap_err();
            assert_eq!(input_of(&e), "nextPage", "{bad}");
        }
    }

    #[test]
    fn malformed_cookie_annotation_is_a_transport_error() {
        for bad in [
            "<cookie pagenumber=\"2\" />",
            "<cookie pagingcookie=\"%zz\"/>",
            "garbage",
            "<cookie pagingcookie=\"%253cfoo%253e\"/>",
        ] {
            let e = PagingCookie::from_annotation(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Transport, "{bad}");
        }
        let e = NextPage::from_response(1, &json!({MORE_RECORDS: true, PAGING_COOKIE: "<x"}))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Transport);
    }

    #[test]
    fn percent_inside_a_cookie_value_survives() {
        // fullname "50% off" encoded twice: % → %25 → %2525.
        let ann = "<cookie pagenumber=\"2\" pagingcookie=\"%253ccookie%2520page%253d%25221%2522%253e%253cname%2520last%253d%252250%2525%2520off%2522%2520%252f%253e%253c%252fcookie%253e\" istracking=\"False\" />";
        let c = PagingCookie::from_annotation(ann).unwrap();
        assert_eq!(
            c.xml,
            "<cookie page=\"1\"><name last=\"50% off\" /></cookie>"
        );
    }

    #[test]
    fn long_queries_go_through_batch() {
        let ids: String = (0..700)
            .map(|i| format!("<value>{{00000000-0000-0000-0000-{i:012}}}</value>"))
            .collect();
        let xml = format!(
            "<fetch><entity name='account'><filter><condition attribute='accountid' operator='in'>{ids}</condition></filter></entity></fetch>"
        );
        let path = request_path("accounts", &xml);
        assert!(path.starts_with("accounts?fetchXml=%3Cfetch%3E"));
        let url = format!("https://contoso.crm.dynamics.com/api/data/v9.2/{path}");
        assert!(
            xml.len() > 36_000 && url.len() > MAX_GET_URL_LEN,
            "{} {}",
            xml.len(),
            url.len()
        );
        assert_eq!(transport_for(url.len()).unwrap(), Transport::Batch);
        assert_eq!(transport_for(MAX_GET_URL_LEN).unwrap(), Transport::Get);
        assert_eq!(
            transport_for(MAX_GET_URL_LEN + 1).unwrap(),
            Transport::Batch
        );
        let e = transport_for(MAX_BATCH_GET_URL_LEN + 1).unwrap_err();
        assert_eq!(input_of(&e), "fetchXml");
        // The plan and the $batch body carry the same long URL.
        let root = "https://contoso.crm.dynamics.com/api/data/v9.2/";
        let (t, p) = plan(root, "accounts", &xml).unwrap();
        assert_eq!((t, p.as_str()), (Transport::Batch, path.as_str()));
        let (t, _) = plan(root, "accounts", Q).unwrap();
        assert_eq!(t, Transport::Get);
        let prefer = (
            "Prefer".to_string(),
            "odata.include-annotations=\"*\"".to_string(),
        );
        let enc = crate::batch::encode(&batch_parts("/api/data/v9.2/", &p, vec![prefer]));
        let body = String::from_utf8(enc.body).unwrap();
        assert!(body.contains(&format!(
            "\r\n\r\nGET /api/data/v9.2/{p} HTTP/1.1\r\nPrefer: odata.include-annotations=\"*\"\r\n"
        )));
    }
}
