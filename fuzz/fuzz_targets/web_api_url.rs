//! Web API URL normalisation: `WebApiUrl::parse`, `from_org_and_region`,
//! and resolving relative resources under the service root.
#![no_main]

use arbitrary::Arbitrary;
use d365_connector::connection::{API_PATH, WebApiUrl, is_loopback};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    url: &'a str,
    org: &'a str,
    region: &'a str,
    relative: &'a str,
}

fn check(w: &WebApiUrl) {
    let root = w.service_root();
    // The token audience and the data root agree, and the root is the one
    // API version whatever the user typed.
    assert_eq!(root.as_str(), format!("{}{API_PATH}", w.origin()));
    assert!(root.query().is_none() && root.fragment().is_none());
    assert!(root.username().is_empty() && root.password().is_none());
    let host = root.host_str().expect("a host");
    match root.scheme() {
        "https" => {}
        "http" => assert!(is_loopback(host), "http to a non-loopback host {host}"),
        other => panic!("scheme {other}"),
    }
    assert!(w.is_same_origin(root));
    // Parsing the normalised form again is a fixed point.
    let again = WebApiUrl::parse(w.origin()).expect("the origin parses again");
    assert_eq!(&again, w);
    let again = WebApiUrl::parse(root.as_str()).expect("the service root parses again");
    assert_eq!(&again, w);
}

fuzz_target!(|i: Input<'_>| {
    // The shortcut for the usual input agrees with the thorough parse.
    match (WebApiUrl::parse(i.url), WebApiUrl::parse_thorough(i.url)) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{:?}", i.url),
        (Err(a), Err(b)) => assert_eq!(a, b, "{:?}", i.url),
        (a, b) => panic!("{:?}: parse {a:?}, parse_thorough {b:?}", i.url),
    }
    if let Ok(w) = WebApiUrl::parse(i.url) {
        check(&w);
        if let Ok(r) = w.resource(i.relative) {
            let _ = w.is_same_origin(&r);
        }
    }
    if let Ok(w) = WebApiUrl::from_org_and_region(i.org, i.region) {
        check(&w);
        assert!(w.origin().ends_with(".dynamics.com"));
        assert_eq!(w.service_root().scheme(), "https");
    }
});
