//! Collection answers (`{"value": [...], "@odata.nextLink": ...}`) read
//! without building a JSON tree per record, and action outputs that pass
//! records through as the Web API sent them.
//!
//! A fetch-all of 100,000 records used to parse every record into a
//! `serde_json::Value`, clone it into the result and serialise it again.
//! Records are now validated and kept as raw JSON text, copied once into the
//! output; only the page's annotations (a handful of small values) become
//! `Value`s. Less time, and far less memory (a `Value` tree is several times
//! the size of its text).

use crate::error::{ConnectorError, Result};
use crate::http::Response;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::fmt;

/// One page: its records as raw JSON, and every other member (the
/// `@odata.*` / `@Microsoft.Dynamics.CRM.*` annotations) as values.
#[derive(Debug)]
pub struct Page<'a> {
    pub records: Vec<&'a RawValue>,
    pub annotations: Map<String, Value>,
}

impl<'de> Deserialize<'de> for Page<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct PageVisitor;
        impl<'de> Visitor<'de> for PageVisitor {
            type Value = Page<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an OData collection object with a value array")
            }

            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Page<'de>, A::Error> {
                let mut records = None;
                let mut annotations = Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "value" {
                        records = Some(map.next_value::<Vec<&'de RawValue>>()?);
                    } else {
                        let v = map.next_value::<Value>()?;
                        annotations.insert(key, v);
                    }
                }
                let records = records.ok_or_else(|| serde::de::Error::missing_field("value"))?;
                Ok(Page {
                    records,
                    annotations,
                })
            }
        }
        d.deserialize_map(PageVisitor)
    }
}

impl Page<'_> {
    pub fn annotation(&self, key: &str) -> Option<&Value> {
        self.annotations.get(key)
    }
}

/// Reads a page from a Web API answer; `what` names the query in errors
/// ("a query", "a FetchXML query").
pub fn parse_page<'a>(response: &'a Response, what: &str) -> Result<Page<'a>> {
    serde_json::from_slice(&response.body).map_err(|e| {
        let head = String::from_utf8_lossy(&response.body[..response.body.len().min(120)]);
        ConnectorError::transport(format!(
            "the Web API answer to {what} is not a collection with a value array ({e}); the body begins: {head}"
        ))
        .with_status(response.status)
    })
}

/// Validates a JSON body and keeps it as text (a single record passed
/// through unchanged).
pub fn raw_json(response: &Response) -> Result<String> {
    match serde_json::from_slice::<&RawValue>(&response.body) {
        Ok(raw) => Ok(raw.get().to_string()),
        Err(e) => {
            let head = String::from_utf8_lossy(&response.body[..response.body.len().min(120)]);
            Err(ConnectorError::transport(format!(
                "expected JSON from the Web API ({e}); the body begins: {head}"
            ))
            .with_status(response.status))
        }
    }
}

/// The most record text one action returns. A fetch-all, or a change
/// tracking full sync, that would pass it stops with an error naming the
/// input to change. Without it, a larger output failed in the host, not
/// here: wasmtime lifts at most 128 MiB out of one call by default (its
/// "hostcall fuel"), and the call ended with "too much data is being copied
/// between the host and the guest", naming nothing the user could change.
/// 1 MiB is left for the envelope and the token state beside the output.
pub const MAX_OUTPUT_BYTES: usize = 127 << 20;

/// The most pages one call follows, whatever their size.
pub const MAX_PAGES: usize = 100_000;

/// Pages a fetch-all has followed, and the links (or paging cookies) it was
/// given: a server that hands one back again, or pages on past
/// [`MAX_PAGES`], stops the fetch with an error that says which.
#[derive(Debug, Default)]
struct PageTrail {
    seen: BTreeSet<String>,
    pages: usize,
}

impl PageTrail {
    /// Counts one page read.
    pub fn read_one(&mut self) {
        self.pages += 1;
    }

    pub fn pages(&self) -> usize {
        self.pages
    }

    /// Checks the link to the next page (`what` names it in the error:
    /// "nextLink", "paging cookie") before it is followed.
    pub fn follow(&mut self, next: &str, what: &str) -> Result<()> {
        let pages = self.pages;
        if !self.seen.insert(next.to_string()) {
            return Err(ConnectorError::transport(format!(
                "paging stopped after {pages} pages: the server repeated a {what}"
            )));
        }
        if pages >= MAX_PAGES {
            return Err(ConnectorError::transport(format!(
                "paging stopped after {pages} pages, the most one call follows"
            )));
        }
        Ok(())
    }
}

/// Records gathered across pages, as the text of a JSON array's elements.
#[derive(Debug)]
pub struct RawRecords {
    text: String,
    len: usize,
    /// The input an oversized result is blamed on (e.g. `fetchAll`), and
    /// what to do instead.
    input: &'static str,
    hint: &'static str,
    limit: usize,
}

impl RawRecords {
    /// Gathers at most [`MAX_OUTPUT_BYTES`]; past them, [`Self::push`]
    /// fails naming `input`, with `hint`.
    pub fn new(input: &'static str, hint: &'static str) -> Self {
        Self::with_limit(input, hint, MAX_OUTPUT_BYTES)
    }

    fn with_limit(input: &'static str, hint: &'static str, limit: usize) -> Self {
        RawRecords {
            text: String::new(),
            len: 0,
            input,
            hint,
            limit,
        }
    }

    pub fn push(&mut self, record: &RawValue) -> Result<()> {
        let record = record.get();
        // Checked before growing: the buffer doubles, and the push that
        // crosses the limit would otherwise allocate twice the limit.
        if self.text.len() + record.len() + 1 > self.limit {
            return Err(ConnectorError::invalid_input(
                self.input,
                format!(
                    "the records passed the {} MiB output limit after {} records",
                    self.limit >> 20,
                    self.len
                ),
            )
            .with_hint(self.hint));
        }
        if self.len > 0 {
            self.text.push(',');
        }
        self.text.push_str(record);
        self.len += 1;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// How far a paged read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// The first page only; the next one's cursor is returned.
    OnePage,
    /// Every page, to the last.
    All,
    /// At most this many pages; the next one's cursor is returned.
    UpTo(usize),
}

impl Follow {
    fn goes_past(self, pages_read: usize) -> bool {
        match self {
            Follow::OnePage => false,
            Follow::All => true,
            Follow::UpTo(n) => pages_read < n,
        }
    }
}

/// What one page says comes after it.
#[derive(Debug)]
pub enum Next<C> {
    /// Nothing: this was the last page (or the caller has all it wants).
    Done,
    /// Another page, read with `cursor`. `mark` is its text (a nextLink, a
    /// paging cookie's token): what a server repeating itself is caught by,
    /// and what the caller hands back when the read stops before it.
    Page { cursor: C, mark: String },
}

/// The end of a paged read.
#[derive(Debug)]
pub struct Paged<C> {
    pub records: RawRecords,
    pub pages: usize,
    /// The page after the last one read, when the read stopped before the
    /// end ([`Follow::OnePage`], [`Follow::UpTo`]): its cursor and mark.
    pub next: Option<(C, String)>,
}

/// The one paging loop (queryEntities, runFetchXml, recordChanges): fetch
/// a page with `fetch`, read it as a collection (`what` names the query in
/// errors: "a query"), let `read` (given the page's cursor) take its records (into [`RawRecords`], so
/// the 127 MiB output cap holds) and say what comes next, and follow as far
/// as `follow` says. Every followed mark goes through [`PageTrail`]: a
/// repeated nextLink or cookie, or more than [`MAX_PAGES`] pages, stops the
/// read with an error naming `mark_name`. Links are checked against the
/// connection's environment by the callers' `fetch` (one function for
/// both: `odata::resolve_next_link`).
///
/// `S` is the session (generic, so this module needs no HTTP client).
#[allow(clippy::too_many_arguments)]
pub fn read_pages<S, C>(
    session: &mut S,
    mut records: RawRecords,
    first: C,
    follow: Follow,
    what: &str,
    mark_name: &str,
    mut fetch: impl FnMut(&mut S, &C) -> Result<Response>,
    mut read: impl FnMut(&mut S, &C, &Page<'_>, &mut RawRecords) -> Result<Next<C>>,
) -> Result<Paged<C>> {
    let mut trail = PageTrail::default();
    let mut cursor = first;
    loop {
        let response = fetch(session, &cursor)?;
        let page = parse_page(&response, what)?;
        trail.read_one();
        match read(session, &cursor, &page, &mut records)? {
            Next::Done => {
                return Ok(Paged {
                    records,
                    pages: trail.pages(),
                    next: None,
                });
            }
            Next::Page { cursor: c, mark } => {
                if !follow.goes_past(trail.pages()) {
                    return Ok(Paged {
                        records,
                        pages: trail.pages(),
                        next: Some((c, mark)),
                    });
                }
                trail.follow(&mark, mark_name)?;
                cursor = c;
            }
        }
    }
}

/// What an action returns: a JSON value, JSON text passed through, or a
/// collection envelope around raw records.
#[derive(Debug)]
pub enum Output {
    Value(Value),
    /// Valid JSON text (checked when it was read).
    Json(String),
    /// `{…envelope members…, "<key>": [records]}`.
    Collection {
        envelope: Map<String, Value>,
        /// The member that holds the records (`value`, `changed`).
        key: &'static str,
        records: RawRecords,
    },
}

impl From<Value> for Output {
    fn from(v: Value) -> Self {
        Output::Value(v)
    }
}

impl Output {
    /// The output JSON text.
    pub fn into_json(self) -> String {
        match self {
            // serde_json's own writer, not Value's Display (which goes
            // through fmt::Formatter a few bytes at a time). A Value always
            // serialises.
            Output::Value(v) => serde_json::to_string(&v).unwrap_or_default(),
            Output::Json(s) => s,
            Output::Collection {
                envelope,
                key,
                records,
            } => {
                let mut head = String::with_capacity(64 * envelope.len() + 16);
                head.push('{');
                for (k, v) in &envelope {
                    // Serialising a String or a Value to a String cannot fail.
                    head.push_str(&serde_json::to_string(k).unwrap_or_default());
                    head.push(':');
                    head.push_str(&serde_json::to_string(v).unwrap_or_default());
                    head.push(',');
                }
                head.push_str(&serde_json::to_string(key).unwrap_or_default());
                head.push_str(":[");
                // The records' text becomes the output in place: a fetch-all's
                // records are ~100 MB, and a second buffer for the output
                // doubled the memory the call touched (every page of it
                // faulted in and zeroed) for one more copy.
                let mut out = records.text;
                out.reserve(head.len() + 2);
                out.insert_str(0, &head);
                out.push_str("]}");
                out
            }
        }
    }

    /// The output as a value (tests, and callers that post-process).
    pub fn into_value(self) -> Result<Value> {
        match self {
            Output::Value(v) => Ok(v),
            other => serde_json::from_str(&other.into_json())
                .map_err(|e| ConnectorError::transport(format!("output is not JSON: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(body: &str) -> Response {
        Response {
            status: 200,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_page_keeps_records_raw_and_annotations_as_values() {
        let r = response(
            r#"{"@odata.context":"c","value":[{"a":1,"b":"x\"y"} , {"a":2}],"@odata.nextLink":"n"}"#,
        );
        let page = parse_page(&r, "a query").unwrap();
        assert_eq!(page.records.len(), 2);
        assert_eq!(page.records[0].get(), r#"{"a":1,"b":"x\"y"}"#);
        assert_eq!(page.annotation("@odata.nextLink"), Some(&Value::from("n")));
        let mut all = RawRecords::new("fetchAll", "hint");
        for r in &page.records {
            all.push(r).unwrap();
        }
        let mut envelope = Map::new();
        envelope.insert("count".into(), Value::from(2));
        envelope.insert("nextLink".into(), Value::Null);
        let out = Output::Collection {
            envelope,
            key: "value",
            records: all,
        };
        let v: Value = serde_json::from_str(&out.into_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"count": 2, "nextLink": null, "value": [{"a":1,"b":"x\"y"}, {"a":2}]})
        );
    }

    #[test]
    fn records_past_the_output_limit_are_an_error_naming_the_input() {
        let page = response(r#"{"value":[{"a":"0123456789"},{"a":"0123456789"}]}"#);
        let page = parse_page(&page, "a query").unwrap();
        // Room for the first record (18 bytes) and a comma, not the second.
        let mut all = RawRecords::with_limit("fetchAll", "hint", 20);
        all.push(page.records[0]).unwrap();
        let e = all.push(page.records[1]).unwrap_err();
        assert_eq!(
            e.kind,
            crate::error::ErrorKind::InvalidInput {
                input: "fetchAll".into()
            }
        );
        assert!(e.message.contains("after 1 records"), "{}", e.message);
        assert_eq!(e.hint.as_deref(), Some("hint"));
        assert_eq!(all.len(), 1);
        // Exactly at the limit still fits.
        let mut exact = RawRecords::with_limit("fetchAll", "hint", 37);
        for r in &page.records {
            exact.push(r).unwrap();
        }
        let out = Output::Collection {
            envelope: Map::new(),
            key: "changed",
            records: exact,
        };
        assert_eq!(
            out.into_json(),
            r#"{"changed":[{"a":"0123456789"},{"a":"0123456789"}]}"#
        );
    }

    #[test]
    fn a_repeated_link_and_too_many_pages_are_told_apart() {
        let mut trail = PageTrail::default();
        trail.read_one();
        trail.follow("a", "nextLink").unwrap();
        trail.read_one();
        let e = trail.follow("a", "nextLink").unwrap_err();
        assert!(
            e.message
                .contains("after 2 pages: the server repeated a nextLink"),
            "{}",
            e.message
        );
        let mut trail = PageTrail::default();
        for n in 0..MAX_PAGES {
            trail.read_one();
            if n + 1 < MAX_PAGES {
                trail.follow(&n.to_string(), "nextLink").unwrap();
            }
        }
        let e = trail.follow("last", "nextLink").unwrap_err();
        assert!(
            e.message
                .contains("after 100000 pages, the most one call follows"),
            "{}",
            e.message
        );
    }

    #[test]
    fn bad_pages_are_typed_errors() {
        for body in [
            "",
            "[]",
            "{\"value\":3}",
            "{\"x\":1}",
            "{\"value\":[1,]}",
            "{\"value\":[] ",
        ] {
            let e = parse_page(&response(body), "a query").unwrap_err();
            assert_eq!(e.kind, crate::error::ErrorKind::Transport, "{body}");
        }
        assert!(raw_json(&response("{\"a\":")).is_err());
        assert_eq!(raw_json(&response(" {\"a\":1} ")).unwrap(), "{\"a\":1}");
    }

    /// Pages `n` of a fake server: two records each, a nextLink to n + 1
    /// up to `last` (the link of page 3 points back at page 2 when
    /// `repeat` is set).
    fn fake_page(n: u32, last: u32, repeat: bool) -> Response {
        let next = match n {
            _ if n == last => String::new(),
            3 if repeat => r#","@odata.nextLink":"p2""#.to_string(),
            _ => format!(r#","@odata.nextLink":"p{}""#, n + 1),
        };
        response(&format!(r#"{{"value":[{{"n":{n}}},{{"n":{n}}}]{next}}}"#))
    }

    fn run(follow: Follow, last: u32, repeat: bool) -> Result<(Paged<u32>, Vec<u32>)> {
        let mut fetched = Vec::new();
        let paged = read_pages(
            &mut fetched,
            RawRecords::new("fetchAll", "hint"),
            1u32,
            follow,
            "a query",
            "nextLink",
            |fetched, n| {
                fetched.push(*n);
                Ok(fake_page(*n, last, repeat))
            },
            |_, _, page, records| {
                for r in &page.records {
                    records.push(r)?;
                }
                Ok(
                    match page.annotation("@odata.nextLink").and_then(Value::as_str) {
                        Some(link) => Next::Page {
                            cursor: link[1..].parse().unwrap(),
                            mark: link.to_string(),
                        },
                        None => Next::Done,
                    },
                )
            },
        )?;
        Ok((paged, fetched))
    }

    #[test]
    fn one_loop_follows_as_far_as_told() {
        let (all, fetched) = run(Follow::All, 4, false).unwrap();
        assert_eq!(fetched, vec![1, 2, 3, 4]);
        assert_eq!((all.records.len(), all.pages), (8, 4));
        assert!(all.next.is_none());

        let (one, fetched) = run(Follow::OnePage, 4, false).unwrap();
        assert_eq!(fetched, vec![1]);
        assert_eq!(one.next, Some((2, "p2".to_string())));

        let (some, fetched) = run(Follow::UpTo(3), 4, false).unwrap();
        assert_eq!(fetched, vec![1, 2, 3]);
        assert_eq!((some.records.len(), some.pages), (6, 3));
        assert_eq!(some.next.map(|(c, _)| c), Some(4));

        // Asked for more pages than there are: all of them, no next.
        let (short, _) = run(Follow::UpTo(10), 2, false).unwrap();
        assert!(short.next.is_none());
    }

    #[test]
    fn a_repeated_mark_stops_the_loop() {
        let e = run(Follow::All, 9, true).unwrap_err();
        assert!(
            e.message.contains("repeated a nextLink") && e.message.contains("after 3 pages"),
            "{}",
            e.message
        );
    }
}
