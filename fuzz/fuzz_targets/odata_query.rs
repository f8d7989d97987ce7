//! OData query pieces and key escaping: `$select`/`$orderby`/`$expand`/
//! `$apply`/annotation parsing, the query string they render, entity set names,
//! record keys and their URL segment, string literals and percent-encoding.
#![no_main]

use arbitrary::Arbitrary;
use d365_connector::odata::{self, ODataQuery};
use d365_connector::percent;
use d365_connector::types::{self, EntityKey, EntitySet, KeyValue};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    select: Vec<&'a str>,
    orderby: &'a str,
    expand: &'a str,
    /// Wraps `expand` in this many `a($expand=…)` levels.
    nest: u8,
    annotations: &'a str,
    filter: Option<&'a str>,
    top: Option<u32>,
    count: bool,
    apply: &'a str,
    set: &'a str,
    key: &'a str,
    text: &'a str,
}

/// Bytes an encoded path segment or query value may hold raw.
fn is_segment_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~'%".contains(&b)
}

fuzz_target!(|i: Input<'_>| {
    let names: Vec<String> = i.select.iter().map(|s| s.to_string()).collect();
    let select = odata::parse_select("select", &names);
    if let Ok(cols) = &select {
        assert!(cols.iter().all(|c| types::is_identifier(c)));
    }
    let orderby = odata::parse_orderby("orderby", i.orderby);
    let levels = usize::from(i.nest % 32);
    let nested = format!(
        "{}{}{}",
        "a($expand=".repeat(levels),
        i.expand,
        ")".repeat(levels)
    );
    let expand = odata::parse_expand("expand", &nested);
    if levels >= odata::MAX_EXPAND_DEPTH && !i.expand.trim().is_empty() {
        // Too deep for Dataverse: refused, whatever the inner text.
        assert!(expand.is_err(), "{nested:?} parsed");
    }
    if let Ok(Some(a)) = odata::parse_annotations("includeAnnotations", i.annotations) {
        assert!(!a.contains('"'), "annotation list keeps a quote: {a:?}");
        let prefer = odata::prefer_header(Some(5000), Some(&a)).unwrap_or_default();
        assert!(!prefer.contains(['\r', '\n']));
    }
    // $apply: refused or kept as written, never a panic.
    let apply = odata::parse_apply("apply", i.apply).ok();
    if let Some(a) = &apply {
        assert_eq!(a, i.apply.trim());
    }
    let query = ODataQuery {
        select: select.unwrap_or_default(),
        filter: i.filter.map(str::to_string),
        orderby: orderby.unwrap_or_default(),
        expand: expand.unwrap_or_default(),
        top: i.top,
        count: i.count,
        apply,
    };
    let qs = query.to_query_string();
    // Every value is encoded: nothing that would end the query or split an
    // option can appear raw (a `&` only between options, a `#` never).
    assert!(
        !qs.bytes()
            .any(|b| b == b'#' || b == b' ' || b == b'+' || !b.is_ascii_graphic()),
        "raw delimiter in query string {qs:?}"
    );
    let options = qs.split('&').filter(|o| !o.is_empty()).count();
    let expected = usize::from(!query.select.is_empty())
        + usize::from(
            query
                .filter
                .as_deref()
                .is_some_and(|f| !f.trim().is_empty()),
        )
        + usize::from(!query.orderby.is_empty())
        + usize::from(!query.expand.is_empty())
        + usize::from(query.top.is_some())
        + usize::from(query.count);
    assert_eq!(options, expected, "an option value split the query: {qs:?}");
    let _ = query.append_to("accounts");

    if let Ok(set) = EntitySet::parse("entityType", i.set) {
        assert!(types::is_identifier(set.as_str()));
    }

    if let Ok(key) = EntityKey::parse("entityId", i.key) {
        let segment = key.to_segment();
        let inner = segment
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .expect("a key segment is parenthesised");
        assert!(
            inner
                .bytes()
                .all(|b| is_segment_byte(b) || b == b'=' || b == b','),
            "unencoded byte in key segment {segment:?}"
        );
        // Round trip: the decoded segment parses back to the same key.
        let decoded = percent::decode(inner).expect("the segment decodes");
        let again = EntityKey::parse("entityId", &decoded)
            .unwrap_or_else(|e| panic!("{decoded:?} from {key:?} does not parse: {e:?}"));
        assert_eq!(again, key, "key round trip through {segment:?}");
        if let EntityKey::Alternate(pairs) = &key {
            assert!(!pairs.is_empty());
            for (name, v) in pairs {
                assert!(types::is_identifier(name));
                if let KeyValue::Bare(b) = v {
                    assert!(!b.contains('\''));
                }
            }
        }
    }

    // A string literal: quoted, every inner quote doubled.
    let lit = types::string_literal(i.text);
    let inner = &lit[1..lit.len() - 1];
    assert!(lit.starts_with('\'') && lit.ends_with('\''));
    assert_eq!(inner.replace("''", "'"), i.text);
    assert_eq!(
        inner.matches('\'').count(),
        2 * i.text.matches('\'').count()
    );
    // Percent-encoding: the result is safe where it goes and decodes back.
    let path = types::encode_path(i.text);
    assert!(path.bytes().all(is_segment_byte), "{path:?}");
    assert_eq!(percent::decode(&path).as_deref(), Some(i.text));
    let value = types::encode_query(i.text);
    assert!(
        !value
            .bytes()
            .any(|b| matches!(b, b'&' | b'#' | b'+' | b'?' | b' ' | b'"') || !b.is_ascii_graphic()),
        "{value:?}"
    );
    assert_eq!(percent::decode(&value).as_deref(), Some(i.text));
    let component = percent::encode_component(i.text);
    assert!(component.bytes().all(|b| is_segment_byte(b) && b != b'\''));
    assert_eq!(percent::decode(&component).as_deref(), Some(i.text));
    let raw_query = percent::encode_query(i.text);
    assert!(
        !raw_query
            .bytes()
            .any(|b| matches!(b, b'#' | b'+' | b' ') || !b.is_ascii_graphic()),
        "{raw_query:?}"
    );
    assert_eq!(percent::decode(&raw_query).as_deref(), Some(i.text));
});
