//! `@odata.nextLink` validation: whatever the link, an accepted one is on
//! the connection's own origin (so the token never leaves it) and under
//! `/api/data/`.
#![no_main]

use arbitrary::Arbitrary;
use d365_connector::connection::WebApiUrl;
use d365_connector::odata;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    root: u8,
    link: &'a str,
}

const ROOTS: &[&str] = &[
    "https://org.crm.dynamics.com",
    "org.crm4.dynamics.com/api/data/v9.1/",
    "https://org.api.crm.dynamics.com:8443/api/data/v9.2",
    "http://localhost:8080",
    "http://127.0.0.1:3000/api/data/v9.2/",
    "https://[::1]",
];

fuzz_target!(|i: Input<'_>| {
    let root = ROOTS[usize::from(i.root) % ROOTS.len()];
    let web_api = WebApiUrl::parse(root).expect("fixed roots parse");
    let Ok(url) = odata::resolve_next_link(&web_api, "nextLink", i.link) else {
        return;
    };
    let origin = url::Url::parse(web_api.origin()).expect("origin");
    assert_eq!(url.scheme(), origin.scheme(), "{:?} → {url}", i.link);
    assert_eq!(
        url.host_str().map(str::to_ascii_lowercase).as_deref(),
        origin.host_str(),
        "{:?} → {url}",
        i.link
    );
    assert_eq!(url.port_or_known_default(), origin.port_or_known_default());
    assert!(url.username().is_empty() && url.password().is_none());
    assert!(url.path().starts_with("/api/data/"), "{url}");
    if url.scheme() == "http" {
        assert!(d365_connector::connection::is_loopback(
            url.host_str().unwrap_or("")
        ));
    }
    // The serialised URL (what is sent) still says the same.
    let reparsed = url::Url::parse(url.as_str()).expect("reparse");
    assert!(web_api.is_same_origin(&reparsed));
});
