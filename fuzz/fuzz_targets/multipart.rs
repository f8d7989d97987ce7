//! `$batch` response decoding: arbitrary Content-Type and body, and a
//! round trip of a well-formed response built from arbitrary parts.
#![no_main]

use arbitrary::Arbitrary;
use d365_connector::batch;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Part {
    status: u16,
    content_id: Option<u16>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    in_changeset: bool,
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    content_type: &'a str,
    body: &'a [u8],
    boundary: &'a str,
    parts: Vec<Part>,
    crlf: bool,
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 70
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"'()+_,-./:=?".contains(&b))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fuzz_target!(|i: Input<'_>| {
    // Hostile input: anything goes, nothing panics.
    if let Ok(parts) = batch::decode(i.content_type, i.body) {
        for p in &parts {
            assert!((100..=599).contains(&p.status));
            let _ = p.json();
            let _ = p.error();
            let _ = p.entity_id_url();
        }
        let assigned = batch::assign_to_items(parts.len().min(1000), parts);
        let _ = assigned;
    }
    let _ = batch::boundary_of(i.content_type);

    // Round trip: a response written the way Dataverse writes one decodes
    // to the same statuses, Content-IDs, headers and bodies.
    if !is_token(i.boundary) || i.boundary.ends_with(' ') {
        return;
    }
    let nl: &[u8] = if i.crlf { b"\r\n" } else { b"\n" };
    let outer = format!("batchresponse_{}", i.boundary);
    let inner = format!("changesetresponse_{}", i.boundary);
    let mut expected = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    let mut open_changeset = false;
    for p in i.parts.iter().take(16) {
        let status = 100 + p.status % 500;
        // A header is one line; a body must not hold a delimiter line or
        // end in a line break (both belong to the framing).
        let headers: Vec<(String, String)> = p
            .headers
            .iter()
            .take(4)
            .filter(|(k, v)| {
                let k_ok = !k.is_empty()
                    && k.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                    && !k.eq_ignore_ascii_case("Content-Type");
                let v_ok =
                    v.bytes().all(|b| b.is_ascii_graphic() || b == b' ') && v.trim() == v.as_str();
                // A header line must not be a delimiter line (RFC 2046: the
                // boundary may not occur inside an encapsulated part).
                let line_ok = !format!("{k}: {v}").contains("--");
                k_ok && v_ok && line_ok
            })
            .cloned()
            .collect();
        if contains(&p.body, b"--") || p.body.ends_with(b"\n") || p.body.ends_with(b"\r") {
            continue;
        }
        if p.in_changeset && !open_changeset {
            body.extend_from_slice(format!("--{outer}").as_bytes());
            body.extend_from_slice(nl);
            body.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary={inner}").as_bytes(),
            );
            body.extend_from_slice(nl);
            body.extend_from_slice(nl);
            open_changeset = true;
        } else if !p.in_changeset && open_changeset {
            body.extend_from_slice(format!("--{inner}--").as_bytes());
            body.extend_from_slice(nl);
            open_changeset = false;
        }
        let delimiter = if open_changeset { &inner } else { &outer };
        body.extend_from_slice(format!("--{delimiter}").as_bytes());
        body.extend_from_slice(nl);
        body.extend_from_slice(b"Content-Type: application/http");
        body.extend_from_slice(nl);
        body.extend_from_slice(b"Content-Transfer-Encoding: binary");
        body.extend_from_slice(nl);
        if let Some(id) = p.content_id {
            body.extend_from_slice(format!("Content-ID: {id}").as_bytes());
            body.extend_from_slice(nl);
        }
        body.extend_from_slice(nl);
        body.extend_from_slice(format!("HTTP/1.1 {status} Whatever").as_bytes());
        body.extend_from_slice(nl);
        for (k, v) in &headers {
            body.extend_from_slice(format!("{k}: {v}").as_bytes());
            body.extend_from_slice(nl);
        }
        body.extend_from_slice(nl);
        body.extend_from_slice(&p.body);
        body.extend_from_slice(nl);
        expected.push((
            status,
            p.content_id,
            open_changeset,
            headers,
            p.body.clone(),
        ));
    }
    if open_changeset {
        body.extend_from_slice(format!("--{inner}--").as_bytes());
        body.extend_from_slice(nl);
    }
    body.extend_from_slice(format!("--{outer}--").as_bytes());
    body.extend_from_slice(nl);
    let quoted = if i.crlf { "\"" } else { "" };
    let ct = format!("multipart/mixed; boundary={quoted}{outer}{quoted}");
    let parts = batch::decode(&ct, &body).unwrap_or_else(|e| {
        panic!(
            "a well-formed response does not decode: {e:?}\n{}",
            String::from_utf8_lossy(&body)
        )
    });
    assert_eq!(
        parts.len(),
        expected.len(),
        "{}",
        String::from_utf8_lossy(&body)
    );
    for (got, (status, id, in_cs, headers, b)) in parts.iter().zip(&expected) {
        assert_eq!(got.status, *status);
        assert_eq!(got.content_id, id.map(|n| n.to_string()));
        assert_eq!(got.in_changeset, *in_cs);
        let got_headers: Vec<(String, String)> = got
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(&got_headers, headers);
        assert_eq!(&got.body, b, "{}", String::from_utf8_lossy(&body));
    }
});
