//! Percent-encoding (RFC 3986) for query values and cookie decoding, in one
//! place so every caller encodes the same way.

/// Encodes everything except the RFC 3986 unreserved characters
/// (`A–Z a–z 0–9 - . _ ~`), so the result is safe as one query value
/// (`fetchXml=…`) whatever it contains. Spaces become `%20`, never `+`.
pub fn encode_component(value: &str) -> String {
    encode_except(value, b"")
}

/// Encodes everything except the unreserved characters and the bytes in
/// `keep` — the one primitive behind every "encode this value" helper
/// (`types::encode_path`, `types::encode_query`, rawRequest's query pairs).
pub fn encode_except(value: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || keep.contains(&b)
        {
            out.push(b as char);
        } else {
            push_escaped(&mut out, b);
        }
    }
    out
}

/// Encodes only what may not appear raw in a request line's query string
/// (controls, space, non-ASCII, `"`, `#`, `%`, `+`, `<`, `>`, `\\`, `^`,
/// `` ` ``, `{`, `|`, `}`), keeping OData's `$`, `=`, `&`, `'`, `(`, `)`,
/// `,`, `/` readable — for query options an integrator already wrote in
/// OData syntax. Inside a `'…'` string literal `&` and `=` are encoded too,
/// so `name eq 'A&B'` stays one option. `+` is always encoded: servers read
/// a raw `+` as a space (a `+01:00` offset would break).
pub fn encode_query(query: &str) -> String {
    let mut out = String::with_capacity(query.len() + 16);
    let mut in_literal = false;
    for &b in query.as_bytes() {
        if b == b'\'' {
            // `''` inside a literal toggles twice: still inside.
            in_literal = !in_literal;
        }
        let raw_ok = b.is_ascii_graphic()
            && !matches!(
                b,
                b'"' | b'#' | b'%' | b'+' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
            )
            && !(in_literal && matches!(b, b'&' | b'='));
        if raw_ok {
            out.push(b as char);
        } else {
            push_escaped(&mut out, b);
        }
    }
    out
}

fn push_escaped(out: &mut String, b: u8) {
    let hex = |n: u8| {
        char::from_digit(u32::from(n), 16)
            .unwrap_or('0')
            .to_ascii_uppercase()
    };
    out.push('%');
    out.push(hex(b >> 4));
    out.push(hex(b & 0x0f));
}

/// Decodes `%XX` sequences once (`+` is left alone: Dataverse encodes
/// spaces as `%20`). `None` when a `%` is not followed by two hex digits or
/// the result is not UTF-8.
pub fn decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16))?;
            let lo = bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16))?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_encoding_round_trips() {
        let s = "<fetch count='2'><x a=\"é & b\"/></fetch>";
        let e = encode_component(s);
        assert!(
            e.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b))
        );
        assert!(e.starts_with("%3Cfetch%20count%3D%272%27"));
        assert_eq!(decode(&e).as_deref(), Some(s));
    }

    #[test]
    fn query_encoding_keeps_odata_syntax() {
        assert_eq!(
            encode_query(
                "$filter=name eq 'A&B=1 100%' and x gt 2024-01-01T00:00:00+01:00&$select=name"
            ),
            "$filter=name%20eq%20'A%26B%3D1%20100%25'%20and%20x%20gt%202024-01-01T00:00:00%2B01:00&$select=name"
        );
    }

    #[test]
    fn decode_rejects_bad_escapes() {
        assert_eq!(decode("%2"), None);
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%ff"), None, "not UTF-8");
        assert_eq!(decode("a+b%2520").as_deref(), Some("a+b%20"));
    }
}
