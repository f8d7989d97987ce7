//! FetchXML: parsing and validating a query, rewriting `<fetch>`'s paging
//! attributes, paging-cookie extraction (annotation, response body,
//! `nextPage` tokens) and the GET/`$batch` plan.
#![no_main]

use arbitrary::Arbitrary;
use d365_connector::fetchxml::{self, FetchXml, NextPage, Paging, PagingCookie};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    xml: &'a str,
    page: Option<u32>,
    count: Option<u16>,
    cookie: Option<&'a str>,
    annotation: &'a str,
    more_records: Option<bool>,
    current_page: u32,
    token: &'a str,
}

/// The `paging-cookie` attribute of the `<fetch>` root of `xml`.
fn fetch_cookie(xml: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    loop {
        match reader.read_event().ok()? {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                return e
                    .attributes()
                    .flatten()
                    .find(|a| a.key.as_ref() == b"paging-cookie")
                    .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()));
            }
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
    }
}

/// A token must read back as the same page and cookie.
fn check_token(next: &NextPage) {
    let token = next.token();
    let again = NextPage::parse_token("nextPage", &token)
        .unwrap_or_else(|e| panic!("token {token:?} does not parse back: {e:?}"));
    assert_eq!(again.page, next.page, "{token:?}");
    assert_eq!(
        again.cookie.as_ref().map(|c| c.xml.trim()),
        next.cookie.as_ref().map(|c| c.xml.trim()),
        "{token:?}"
    );
}

fuzz_target!(|i: Input<'_>| {
    if let Ok(q) = FetchXml::parse(i.xml) {
        assert!(!q.entity_name().trim().is_empty());
        let paging = Paging {
            page: i.page.filter(|p| *p > 0),
            count: i.count.map(|c| u32::from(c) % fetchxml::MAX_PAGE_SIZE + 1),
            cookie: i.cookie.map(str::to_string),
        };
        let rewritten = q
            .rewrite(&paging)
            .unwrap_or_else(|e| panic!("a parsed query does not rewrite: {e:?}"));
        // The rewrite is still a valid query for the same entity, with
        // exactly the paging asked for (a `top` + `page` query is refused,
        // as the parser refuses it).
        match FetchXml::parse(&rewritten) {
            Ok(r) => {
                assert_eq!(r.entity_name(), q.entity_name(), "{rewritten}");
                assert_eq!(r.page(), paging.page, "{rewritten}");
                assert_eq!(r.count(), paging.count, "{rewritten}");
                assert_eq!(r.top(), q.top());
                assert_eq!(r.is_aggregate(), q.is_aggregate());
                assert_eq!(fetch_cookie(&rewritten), paging.cookie, "{rewritten}");
            }
            Err(e) => assert!(
                q.top().is_some() && paging.page.is_some(),
                "rewritten query {rewritten:?} does not parse: {e:?}"
            ),
        }
        let root = "https://org.crm.dynamics.com/api/data/v9.2/";
        if let Ok((_, path)) = fetchxml::plan(root, "accounts", &rewritten) {
            assert!(path.starts_with("accounts?fetchXml="));
            assert!(!path.contains(['#', ' ', '&', '+']));
        }
    }

    if let Ok(c) = PagingCookie::from_annotation(i.annotation) {
        assert!(c.xml.trim_start().starts_with('<'));
    }

    let mut body = json!({ "value": [] });
    if let Some(m) = i.more_records {
        body[fetchxml::MORE_RECORDS] = Value::Bool(m);
    }
    body[fetchxml::PAGING_COOKIE] = Value::String(i.annotation.to_string());
    if let Ok(Some(next)) = NextPage::from_response(i.current_page, &body) {
        assert_eq!(next.page, i.current_page.saturating_add(1));
        let paging = next.paging(Some(50));
        assert_eq!(paging.page, Some(next.page));
        if next
            .cookie
            .as_ref()
            .is_none_or(|c| !c.xml.contains("pagingcookie"))
        {
            check_token(&next);
        }
    }

    if let Ok(next) = NextPage::parse_token("nextPage", i.token) {
        assert!(next.page >= 1);
        if next
            .cookie
            .as_ref()
            .is_none_or(|c| !c.xml.contains("pagingcookie"))
        {
            check_token(&next);
        }
    }
});
