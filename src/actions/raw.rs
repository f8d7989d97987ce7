//! `rawRequest` (and `rawRequestDeprecated`, kept for saved workflows): any
//! Web API call the typed actions do not cover, on the connection's token,
//! with the caller's own retry options.
//!
//! Body rules: `data` is JSON (an object, list, number…) sent as
//! `application/json`, or text (a string) sent as `application/json` when it
//! parses as a JSON object or list, else `text/plain`, unless a
//! `Content-Type` header says otherwise. `formData` alone is sent
//! form-urlencoded. `fileData` is sent as `multipart/form-data` (one part
//! named `file` per item, after the `formData` fields) — except when the
//! headers carry `x-ms-file-name` or a non-multipart `Content-Type`: then the
//! one file's bytes are the whole body (`application/octet-stream` unless
//! told), which is how Dataverse file columns are uploaded
//! (`PATCH …/accounts(<id>)/<filecolumn>`).
//!
//! Answers with status 400 or above become typed errors (after the retries
//! the inputs ask for); every other answer is the output
//! `{status, headers, body}`.

use crate::actions::action::Action;
use crate::catalog::def::{ActionDef, InputDef, InputType, input};
use crate::client::{Session, parse_json};
use crate::error::{ConnectorError, Result};
use crate::http::{Method, Response};
use crate::inputs::Inputs;
use crate::page::Output;
use crate::retry::{Delay, Mode, Plan};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde_json::{Map, Value, json};
use url::Url;

// Input keys, each written once: the definitions and `run` use these.
const URL: &str = "url";
const METHOD: &str = "method";
const DATA: &str = "data";
const FORM_DATA: &str = "formData";
const FILE_DATA: &str = "fileData";
const FILE_DATA_FILE_NAMES: &str = "fileDataFileNames";
const QUERY_PARAMS: &str = "queryParams";
const HEADERS: &str = "headers";
const RESPONSE_TYPE: &str = "responseType";
const TIMEOUT: &str = "timeout";
const RETRY_DELAY_MS: &str = "retryDelayMs";
const RETRY_ALL_ERRORS: &str = "retryAllErrors";
const MAX_RETRIES: &str = "maxRetries";
const USE_EXPONENTIAL_BACKOFF: &str = "useExponentialBackoff";

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Headers the caller may not set: the connection supplies `Authorization`,
/// the transport owns the rest (wasi:http refuses them anyway).
const RESERVED_HEADERS: [&str; 11] = [
    "authorization",
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "te",
    "proxy-authorization",
    "proxy-connection",
    "http2-settings",
];

fn inputs() -> Vec<InputDef> {
    vec![
        {
            let text = "A path such as /api/data/v9.2/accounts?$select=name (or accounts?$select=name, relative to the Web API URL); the base is the connection's. An absolute URL must be on the connection's host.";
            input(URL, "URL", InputType::String, text)
                .required()
                .example(json!("/api/data/v9.2/accounts?$select=name"))
        },
        input(
            METHOD,
            "Method",
            InputType::String,
            "GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS.",
        )
        .default(json!("GET"))
        .choices(&METHODS),
        input(
            DATA,
            "Data",
            InputType::Json,
            "Request body: JSON (sent as application/json) or text (text/plain unless it is a JSON object or list, or a Content-Type header says otherwise).",
        ),
        input(
            FORM_DATA,
            "Form Data",
            InputType::KeyValueList,
            "Sent as application/x-www-form-urlencoded; with File Data, as the multipart/form-data fields.",
        ),
        input(
            FILE_DATA,
            "File Data",
            InputType::Json,
            "Base64 file content, or a list of them (data: URLs accepted). Sent as multipart/form-data parts named file; with an x-ms-file-name header (file column upload), the one file is the raw body.",
        ),
        input(
            FILE_DATA_FILE_NAMES,
            "File Data File Names",
            InputType::List,
            "The File Data items' file names, in order (default file1, file2, …).",
        ),
        input(
            QUERY_PARAMS,
            "Query Parameter",
            InputType::KeyValueList,
            "Appended to the URL's query, percent-encoded; repeated keys allowed.",
        ),
        input(
            HEADERS,
            "Header",
            InputType::KeyValueList,
            "Request headers; repeated keys allowed. Accept and the OData version headers default to JSON / 4.0 unless given here; Authorization comes from the connection.",
        ),
        {
            let text = "json (parsed; a non-JSON body is an error), text, or binary (base64).";
            input(RESPONSE_TYPE, "Response Type", InputType::String, text)
                .default(json!("json"))
                .choices(&["json", "text", "binary"])
        },
        {
            let text = "Milliseconds per attempt (default 120000). A timed-out attempt is a timeout error, or is retried per the retry options.";
            input(TIMEOUT, "Timeout", InputType::Integer, text).range(1, 3_600_000)
        },
        {
            let text = "Fixed wait between retries. Ignored with Use Exponential Backoff, and when a 429 or 503 carries Retry-After (which is waited, up to the connection's cap).";
            input(RETRY_DELAY_MS, "Retry Delay (ms)", InputType::Integer, text)
                .default(json!(0))
                .range(0, 600_000)
        },
        {
            let text = "Retry every error answer (4xx included; a 401 only gets the token renewal). Otherwise only 5xx, 408, 429 and network errors.";
            input(
                RETRY_ALL_ERRORS,
                "Retry On All Errors",
                InputType::Boolean,
                text,
            )
            .default(json!(false))
        },
        {
            let text = "Retries after the first attempt; 0 = none. The connection's retryPolicy caps (Retry-After, total time) still apply.";
            input(MAX_RETRIES, "Max Retry Count", InputType::Integer, text)
                .default(json!(0))
                .range(0, 20)
        },
        {
            let text = "Wait per the connector's exponential schedule with jitter (about 1 s, 2 s, 4 s … capped at 30 s by default); Retry Delay is then ignored.";
            input(
                USE_EXPONENTIAL_BACKOFF,
                "Use Exponential Backoff",
                InputType::Boolean,
                text,
            )
            .default(json!(false))
        },
    ]
}

pub const RAW_REQUEST: Action = Action {
    def: ActionDef {
        key: "rawRequest",
        label: "Raw Request",
        description: "Any Dataverse Web API request on the connection's token: method, path, query, headers, JSON/text/form/multipart/file body, response as JSON, text or base64, with optional retries.",
        deprecated: false,
        input_defs: inputs,
    },
    run: |s, i| raw_request(s, i).map(Output::from),
};

pub const RAW_REQUEST_DEPRECATED: Action = Action {
    def: ActionDef {
        key: "rawRequestDeprecated",
        label: "Raw Request (Deprecated)",
        description: "Same as Raw Request; kept for saved workflows that still name it. Use rawRequest.",
        deprecated: true,
        input_defs: inputs,
    },
    run: RAW_REQUEST.run,
};

fn raw_request(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let method = parse_method(inputs.expect_str(METHOD)?)?;
    let mut url = resolve_url(session, inputs.expect_str(URL)?)?;
    append_query(&mut url, &inputs.pairs(QUERY_PARAMS)?);
    let user_headers = headers(&inputs.pairs(HEADERS)?)?;
    let body = body(inputs, &user_headers, session)?;

    let mut request = session.request_to(method, url);
    request
        .headers
        .retain(|(n, _)| !user_headers.iter().any(|(u, _)| u.eq_ignore_ascii_case(n)));
    if let Some(body) = body {
        if body.force_content_type {
            request
                .headers
                .retain(|(n, _)| !n.eq_ignore_ascii_case("Content-Type"));
        }
        for (name, value) in &user_headers {
            if !(body.force_content_type && name.eq_ignore_ascii_case("Content-Type")) {
                request.headers.push((name.clone(), value.clone()));
            }
        }
        if !request.has_header("Content-Type") {
            request.set_header("Content-Type", body.content_type);
        }
        request.body = body.bytes;
    } else {
        request.headers.extend(user_headers);
    }
    if let Some(ms) = inputs.u64(TIMEOUT)? {
        request.timeout_ms = ms;
    }

    let plan = Plan {
        policy: session.settings().retry.clone(),
        max_retries: inputs.expect_u64(MAX_RETRIES)? as u32,
        mode: Mode::Explicit {
            retry_all_errors: inputs.bool(RETRY_ALL_ERRORS)?,
            delay: if inputs.bool(USE_EXPONENTIAL_BACKOFF)? {
                Delay::Exponential
            } else {
                Delay::Fixed(inputs.expect_u64(RETRY_DELAY_MS)?)
            },
        },
    };
    let method = request.method;
    let response = session.send_with(request, &plan)?;
    if response.status >= 400 {
        return Err(crate::client::answer_error(method, &response));
    }
    output(&response, inputs.expect_str(RESPONSE_TYPE)?)
}

fn parse_method(text: &str) -> Result<Method> {
    Ok(match text.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        "HEAD" => Method::Head,
        "OPTIONS" => Method::Options,
        other => {
            return Err(ConnectorError::invalid_input(
                METHOD,
                format!("must be one of {}, got '{other}'", METHODS.join(", ")),
            ));
        }
    })
}

/// `/api/…` paths are taken from the host's root, other paths from the Web
/// API URL (`accounts`, `/accounts`); an absolute URL must stay on the
/// connection's host, or the token would go elsewhere.
fn resolve_url(session: &Session<'_>, text: &str) -> Result<Url> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ConnectorError::invalid_input(URL, "is empty"));
    }
    let web_api = session.web_api();
    let refuse = |url: &str| {
        ConnectorError::invalid_input(
            URL,
            format!(
                "{url} is not on this connection's environment ({})",
                web_api.origin()
            ),
        )
        .with_hint("Give a path such as /api/data/v9.2/accounts: the token is only sent to the connection's host.")
    };
    let url = if text.contains("://") || text.starts_with("//") {
        let url = match Url::parse(text) {
            Ok(u) => u,
            Err(_) => web_api.service_root().join(text).map_err(|e| {
                ConnectorError::invalid_input(URL, format!("'{text}' is not a URL ({e})"))
            })?,
        };
        if !web_api.is_same_origin(&url) {
            return Err(refuse(url.as_str()));
        }
        url
    } else if text.starts_with("/api/") {
        web_api.resource(text)?
    } else {
        web_api.resource(text.trim_start_matches('/'))?
    };
    if !web_api.is_same_origin(&url) {
        return Err(refuse(url.as_str()));
    }
    Ok(url)
}

/// Percent-encodes a query key or value; keeps the characters OData queries
/// use literally (`$`, quotes, parentheses, commas, colons, slashes, `@`).
fn encode_query_component(text: &str) -> String {
    crate::percent::encode_except(text, b"$'(),:/@!*;")
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn append_query(url: &mut Url, pairs: &[(String, Value)]) {
    if pairs.is_empty() {
        return;
    }
    let mut query = url.query().unwrap_or("").to_string();
    for (key, value) in pairs {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&encode_query_component(key));
        query.push('=');
        query.push_str(&encode_query_component(&value_text(value)));
    }
    url.set_query(Some(&query));
}

fn headers(pairs: &[(String, Value)]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::with_capacity(pairs.len());
    for (i, (name, value)) in pairs.iter().enumerate() {
        let key = format!("headers[{i}]");
        let name = name.trim();
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(token) {
            return Err(ConnectorError::invalid_input(
                key,
                format!("'{name}' is not a valid header name"),
            ));
        }
        if RESERVED_HEADERS
            .iter()
            .any(|r| r.eq_ignore_ascii_case(name))
            || name.to_ascii_lowercase().starts_with("proxy-")
        {
            return Err(ConnectorError::invalid_input(
                key,
                format!("{name} cannot be set here (the connection or the transport sets it)"),
            ));
        }
        let value = value_text(value);
        if value.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
            return Err(ConnectorError::invalid_input(
                key,
                "a header value cannot contain line breaks",
            ));
        }
        out.push((name.to_string(), value));
    }
    Ok(out)
}

struct Body {
    bytes: Vec<u8>,
    content_type: String,
    /// Multipart: the boundary is ours, whatever Content-Type was given.
    force_content_type: bool,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn body(
    inputs: &Inputs,
    user_headers: &[(String, String)],
    session: &mut Session<'_>,
) -> Result<Option<Body>> {
    let data = inputs.get(DATA)?;
    let form = inputs.pairs(FORM_DATA)?;
    let files = files(inputs)?;
    if data.is_some() && (!form.is_empty() || !files.is_empty()) {
        return Err(ConnectorError::invalid_input(
            DATA,
            "cannot be combined with formData or fileData: give one kind of body",
        ));
    }
    if let Some(data) = data {
        return Ok(Some(match data {
            Value::String(text) => {
                let looks_json = matches!(
                    serde_json::from_str::<Value>(text),
                    Ok(Value::Object(_) | Value::Array(_))
                );
                Body {
                    bytes: text.clone().into_bytes(),
                    content_type: if looks_json {
                        "application/json; charset=utf-8".into()
                    } else {
                        "text/plain; charset=utf-8".into()
                    },
                    force_content_type: false,
                }
            }
            other => Body {
                bytes: other.to_string().into_bytes(),
                content_type: "application/json; charset=utf-8".into(),
                force_content_type: false,
            },
        }));
    }
    let given_type = header(user_headers, "Content-Type");
    let raw_file = header(user_headers, "x-ms-file-name").is_some()
        || given_type.is_some_and(|t| !t.to_ascii_lowercase().starts_with("multipart/"));
    if !files.is_empty() && raw_file {
        if files.len() > 1 || !form.is_empty() {
            return Err(ConnectorError::invalid_input(
                FILE_DATA,
                "a raw file upload (x-ms-file-name or a non-multipart Content-Type header) takes exactly one file and no formData",
            ));
        }
        let Some(file) = files.into_iter().next() else {
            return Ok(None);
        };
        return Ok(Some(Body {
            bytes: file.bytes,
            content_type: "application/octet-stream".into(),
            force_content_type: false,
        }));
    }
    if !files.is_empty() {
        let boundary = format!(
            "d365-{}",
            session
                .platform()
                .random_bytes(12)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        return Ok(Some(Body {
            bytes: multipart(&boundary, &form, &files),
            content_type: format!("multipart/form-data; boundary={boundary}"),
            force_content_type: true,
        }));
    }
    if !form.is_empty() {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &form {
            ser.append_pair(k, &value_text(v));
        }
        return Ok(Some(Body {
            bytes: ser.finish().into_bytes(),
            content_type: "application/x-www-form-urlencoded".into(),
            force_content_type: false,
        }));
    }
    Ok(None)
}

struct File {
    name: String,
    bytes: Vec<u8>,
}

/// Standard or URL-safe alphabet, padded or not.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let cleaned: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(&alphabet::STANDARD, config)
        .decode(&cleaned)
        .or_else(|_| GeneralPurpose::new(&alphabet::URL_SAFE, config).decode(&cleaned))
        .ok()
}

fn files(inputs: &Inputs) -> Result<Vec<File>> {
    let items: Vec<(String, &str)> = match inputs.get(FILE_DATA)? {
        None => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![("fileData".to_string(), s.as_str())],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(|s| (format!("fileData[{i}]"), s))
                    .ok_or_else(|| {
                        ConnectorError::invalid_input(
                            format!("fileData[{i}]"),
                            "must be a base64 string",
                        )
                    })
            })
            .collect::<Result<_>>()?,
        Some(_) => {
            return Err(ConnectorError::invalid_input(
                FILE_DATA,
                "must be a base64 string or a list of them",
            ));
        }
    };
    let names = inputs.list(FILE_DATA_FILE_NAMES)?;
    if names.len() > items.len() {
        return Err(ConnectorError::invalid_input(
            FILE_DATA_FILE_NAMES,
            format!("has {} names for {} files", names.len(), items.len()),
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, (key, text))| {
            // `data:application/pdf;base64,JVBER…` → the part after the comma.
            let payload = match text.trim().strip_prefix("data:") {
                Some(rest) => rest.split_once(',').map(|(_, p)| p).unwrap_or(""),
                None => text,
            };
            let bytes = decode_base64(payload)
                .ok_or_else(|| ConnectorError::invalid_input(key, "is not valid base64"))?;
            let name = names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("file{}", i + 1));
            Ok(File { name, bytes })
        })
        .collect()
}

/// A `Content-Disposition` parameter value: quotes and line breaks are
/// percent-encoded, as browsers do (WHATWG HTML multipart/form-data).
fn disposition_value(text: &str) -> String {
    text.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn content_type_for(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("txt") => "text/plain",
        Some("csv") => "text/csv",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        Some("html" | "htm") => "text/html",
        Some("zip") => "application/zip",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

fn multipart(boundary: &str, form: &[(String, Value)], files: &[File]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in form {
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{}\r\n",
                disposition_value(key),
                value_text(value)
            )
            .as_bytes(),
        );
    }
    for file in files {
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\nContent-Type: {}\r\n\r\n",
                disposition_value(&file.name),
                content_type_for(&file.name)
            )
            .as_bytes(),
        );
        out.extend_from_slice(&file.bytes);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// `{status, headers, body}`; header names lower-cased, repeated ones joined
/// with ", " (RFC 9110 §5.3).
fn output(response: &Response, response_type: &str) -> Result<Value> {
    let mut headers = Map::new();
    for (name, value) in &response.headers {
        let name = name.to_ascii_lowercase();
        match headers.get_mut(&name) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(value);
            }
            _ => {
                headers.insert(name, Value::String(value.clone()));
            }
        }
    }
    Ok(json!({
        "status": response.status,
        "headers": headers,
        "body": response_body(response, response_type)?,
    }))
}

fn response_body(response: &Response, response_type: &str) -> Result<Value> {
    Ok(match response_type.to_ascii_lowercase().as_str() {
        "text" => Value::String(String::from_utf8_lossy(&response.body).into_owned()),
        "binary" => Value::String(STANDARD.encode(&response.body)),
        _ => {
            // `$count` answers start with a UTF-8 byte order mark.
            let body = response
                .body
                .strip_prefix(b"\xEF\xBB\xBF".as_slice())
                .unwrap_or(&response.body);
            if body.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                parse_json(&Response {
                    status: response.status,
                    headers: Vec::new(),
                    body: body.to_vec(),
                })
                .map_err(|e| {
                    e.with_hint("Set responseType to text or binary for answers that are not JSON.")
                })?
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn response(body: &[u8]) -> Response {
        Response {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "text/plain".into()),
                ("Set-Cookie".into(), "a=1".into()),
                ("set-cookie".into(), "b=2".into()),
            ],
            body: body.to_vec(),
        }
    }

    #[test]
    fn response_types() {
        let r = response(b"{\"a\":1}");
        assert_eq!(output(&r, "json").unwrap()["body"], json!({"a": 1}));
        assert_eq!(output(&r, "text").unwrap()["body"], json!("{\"a\":1}"));
        assert_eq!(output(&r, "binary").unwrap()["body"], json!("eyJhIjoxfQ=="));
        assert_eq!(output(&response(b""), "json").unwrap()["body"], Value::Null);
        assert_eq!(
            output(&response(b"\xEF\xBB\xBF10"), "json").unwrap()["body"],
            json!(10)
        );
        let out = output(&r, "json").unwrap();
        assert_eq!(out["status"], 200);
        assert_eq!(out["headers"]["set-cookie"], "a=1, b=2");
    }

    #[test]
    fn json_response_type_shows_the_first_bytes_of_a_non_json_body() {
        let e = output(&response(b"<html><body>Oops</body></html>"), "json").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Transport);
        assert!(e.message.contains("<html><body>Oops"), "{}", e.message);
        assert!(e.hint.unwrap().contains("responseType"));
    }

    #[test]
    fn query_components_keep_odata_syntax_and_encode_the_rest() {
        assert_eq!(encode_query_component("$select"), "$select");
        assert_eq!(
            encode_query_component("name eq 'A&B+C' and x=1#"),
            "name%20eq%20'A%26B%2BC'%20and%20x%3D1%23"
        );
        assert_eq!(encode_query_component("é"), "%C3%A9");
        let mut url = Url::parse("http://localhost/api/data/v9.2/accounts?$top=1").unwrap();
        append_query(
            &mut url,
            &[
                ("tag".into(), json!("a")),
                ("tag".into(), json!("b")),
                ("n".into(), json!(5)),
            ],
        );
        assert_eq!(url.query(), Some("$top=1&tag=a&tag=b&n=5"));
    }

    #[test]
    fn headers_are_validated_naming_the_item() {
        let bad = |pairs: Vec<(String, Value)>| match headers(&pairs).unwrap_err().kind {
            ErrorKind::InvalidInput { input } => input,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            bad(vec![
                ("X-Ok".into(), json!("1")),
                ("Authorization".into(), json!("x"))
            ]),
            "headers[1]"
        );
        assert_eq!(bad(vec![("Bad Name".into(), json!("1"))]), "headers[0]");
        assert_eq!(bad(vec![("X-A".into(), json!("a\r\nb: c"))]), "headers[0]");
        assert_eq!(bad(vec![("Host".into(), json!("evil"))]), "headers[0]");
        assert_eq!(
            headers(&[("Prefer".into(), json!("return=representation"))]).unwrap(),
            vec![("Prefer".to_string(), "return=representation".to_string())]
        );
    }

    #[test]
    fn multipart_body_layout() {
        let body = multipart(
            "B",
            &[("note".into(), json!("hi"))],
            &[File {
                name: "a\"b.txt".into(),
                bytes: b"xyz".to_vec(),
            }],
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "--B\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a%22b.txt\"\r\nContent-Type: text/plain\r\n\r\nxyz\r\n--B--\r\n"
        );
    }

    #[test]
    fn base64_variants() {
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64("aGk").unwrap(), b"hi");
        assert_eq!(decode_base64("_-8").unwrap(), vec![0xff, 0xef]);
        assert_eq!(decode_base64(" aG\nk= ").unwrap(), b"hi");
        assert!(decode_base64("not base64!").is_none());
    }
}
