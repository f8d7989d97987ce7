//! The typed error every action returns: a kind a workflow can branch on, the
//! Dataverse or identity-platform code, and a hint for the common causes.

use serde::Serialize;
use serde_json::Value;

/// Coarse classification, mirrored one to one by the WIT `error-kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The payload is the input's key, e.g. `webApiUrl` or `batchActions[3].key`.
    InvalidInput {
        input: String,
    },
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    Throttled {
        #[serde(rename = "retryAfter")]
        retry_after: Option<u32>,
    },
    Dataverse,
    Transport,
    Timeout,
}

/// An error with everything a caller needs to act on it. Never holds secrets:
/// messages that quote server text are scrubbed by [`crate::secret::scrub`]
/// before they leave the component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectorError {
    #[serde(flatten)]
    pub kind: ErrorKind,
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: String,
    pub hint: Option<String>,
    pub retryable: bool,
}

pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

// Size: the constructors are `inline(never)`. They are called at hundreds of
// error sites; inlined, each site carried its own copy of the String
// conversions and the struct initialisation.
impl ConnectorError {
    #[inline(never)]
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ConnectorError {
            kind,
            status: None,
            code: None,
            message: message.into(),
            hint: None,
            retryable: false,
        }
    }

    /// A bad or missing input, named by its key.
    #[inline(never)]
    pub fn invalid_input(input: impl Into<String>, message: impl Into<String>) -> Self {
        let input = input.into();
        let message = format!("{input}: {}", message.into());
        Self::new(ErrorKind::InvalidInput { input }, message)
    }

    /// Something the caller named does not exist (found by the connector,
    /// e.g. an empty answer to a lookup query).
    #[inline(never)]
    pub fn not_found(message: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorKind::NotFound, message);
        e.status = Some(404);
        e
    }

    #[inline(never)]
    pub fn transport(message: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorKind::Transport, message);
        e.retryable = true;
        e
    }

    #[inline(never)]
    pub fn timeout(message: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorKind::Timeout, message);
        e.retryable = true;
        e
    }

    #[inline(never)]
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }

    #[inline(never)]
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    #[inline(never)]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    #[inline(never)]
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// A request whose URL is longer than a URL can be here (the `http`
    /// crate's 64 KiB), refused before sending: reported as the 414 the
    /// Web API gives a URL over its own ~32 KB, since the remedy is the same.
    #[inline(never)]
    pub fn url_too_long(len: usize) -> Self {
        ConnectorError {
            kind: ErrorKind::Dataverse,
            status: Some(414),
            code: None,
            message: format!(
                "the request URL is {len} bytes long, too long to send (URI Too Long)"
            ),
            hint: hint_for(414, None, ""),
            retryable: false,
        }
    }

    /// Builds the error for a non-success Web API answer from its status,
    /// `Retry-After` header and body (`{"error":{"code":"0x…","message":"…"}}`,
    /// or anything else a gateway may send).
    pub fn from_web_api(status: u16, retry_after: Option<u32>, body: &[u8]) -> Self {
        let (code, message) = parse_odata_error(body).unwrap_or_else(|| {
            let head = String::from_utf8_lossy(&body[..body.len().min(8 * 1024)]);
            let text = html_text(&head).unwrap_or_else(|| head.trim().to_string());
            (None, clip(&text, 300).to_string())
        });
        let message = if message.is_empty() {
            format!("HTTP {status} from the Dataverse Web API")
        } else {
            message
        };
        let kind = match status {
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            409 | 412 => ErrorKind::Conflict,
            429 => ErrorKind::Throttled { retry_after },
            _ => ErrorKind::Dataverse,
        };
        let retryable = matches!(status, 408 | 429 | 500 | 502 | 503 | 504);
        let hint = hint_for(status, code.as_deref(), &message);
        ConnectorError {
            kind,
            status: Some(status),
            code,
            message,
            hint,
            retryable,
        }
    }
}

impl std::fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The readable text of an HTML error page (a gateway's, or the front end's
/// before Dataverse sees the request): tags, styles and scripts dropped,
/// whitespace collapsed, a heading that repeats the title kept once, the
/// title set off with a colon. `None` when `body` is not HTML. Not through
/// quick-xml: such pages are rarely XML (HTTP.sys's leaves `<META>` and
/// `<hr>` unclosed), and only their text is wanted.
fn html_text(body: &str) -> Option<String> {
    let start = body.trim_start();
    let lower: String = start
        .chars()
        .take(14)
        .collect::<String>()
        .to_ascii_lowercase();
    if !(lower.starts_with("<!doctype html") || lower.starts_with("<html")) {
        return None;
    }
    let mut pieces: Vec<String> = Vec::new();
    let mut rest = start;
    while let Some(open) = rest.find('<') {
        push_text(&mut pieces, &rest[..open]);
        let tag_end = rest[open..].find('>').map_or(rest.len(), |i| open + i + 1);
        let tag = rest[open..tag_end].to_ascii_lowercase();
        rest = &rest[tag_end..];
        let skip_to = if tag.starts_with("<style") {
            Some("</style")
        } else if tag.starts_with("<script") {
            Some("</script")
        } else {
            None
        };
        if let Some(close) = skip_to {
            // ASCII lowercasing keeps byte offsets.
            let at = rest.to_ascii_lowercase().find(close).unwrap_or(rest.len());
            rest = &rest[at..];
        }
    }
    push_text(&mut pieces, rest);
    // A page without text leaves the message to the status.
    Some(match pieces.split_first() {
        None => String::new(),
        Some((first, [])) => first.clone(),
        Some((first, others)) => format!("{first}: {}", others.join(" ")),
    })
}

/// Adds one text node, decoded and whitespace-collapsed, unless it is empty
/// or repeats the previous one.
fn push_text(pieces: &mut Vec<String>, raw: &str) {
    let text = raw
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    if !text.is_empty() && pieces.last() != Some(&text) {
        pieces.push(text);
    }
}

/// At most `max` characters of `text` (for quoting untrusted text in a
/// message).
pub(crate) fn clip(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// Reads `{"error":{"code":…,"message":…}}`; `None` when the body is not that.
fn parse_odata_error(body: &[u8]) -> Option<(Option<String>, String)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let err = v.get("error")?;
    let code = err
        .get("code")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Some((code, message))
}

/// Hints for the causes integrators hit most often.
fn hint_for(status: u16, code: Option<&str>, message: &str) -> Option<String> {
    let code = code.unwrap_or("");
    let hint = match (status, code) {
        (401, _) => {
            "The access token was refused even after a refresh: check that the app registration is an Application User in this environment (client credentials) or reconnect (authorization code)."
        }
        (403, "0x80095ffc") => {
            "This application id is blocked from the Dataverse API by the environment's admin policy."
        }
        (403, _) => {
            "The user or application user lacks a privilege for this operation: add a security role that grants it."
        }
        (404, "0x8006088a") => {
            "The entity set or function name is unknown: entity set names are usually plural logical names (accounts, contacts) and case-sensitive."
        }
        (404, _) => "The record does not exist, or the id or alternate key is wrong.",
        (412, "0x80040237") => "A record with the same key already exists.",
        (412, _) => "The record changed since it was read (ETag mismatch) or already exists.",
        (429, _) => {
            "Dataverse service protection limits were hit: the connector waits for Retry-After; reduce concurrency or batch requests."
        }
        (414, _) => {
            "The request URL is too long (Dataverse takes about 32 KB): shorten the filter, select or expand, or use runFetchXml, which sends a long query inside $batch."
        }
        (400, _)
            if message.contains("odata.bind")
                || message.contains("undeclared property")
                || message.contains("navigation property")
                || message.contains("Entity Reference") =>
        {
            "Set lookups with \"<navigationProperty>@odata.bind\": \"/<entityset>(<GUID>)\", not with a plain GUID."
        }
        _ => return None,
    };
    Some(hint.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dataverse_error_body() {
        let e = ConnectorError::from_web_api(
            404,
            None,
            br#"{"error":{"code":"0x80040217","message":"account With Id = 1 Does Not Exist"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.code.as_deref(), Some("0x80040217"));
        assert_eq!(e.message, "account With Id = 1 Does Not Exist");
        assert!(e.hint.is_some());
        assert!(!e.retryable);
    }

    #[test]
    fn html_gateway_body_becomes_message() {
        let e = ConnectorError::from_web_api(503, None, b"<html>Service Unavailable</html>");
        assert_eq!(e.kind, ErrorKind::Dataverse);
        assert!(e.retryable);
        assert!(e.message.contains("Service Unavailable"));
    }

    #[test]
    fn html_error_pages_become_their_text() {
        let cases: [(&str, &str); 5] = [
            (
                // HTTP.sys's 411, as the emulator sends it.
                "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\"\"http://www.w3.org/TR/html4/strict.dtd\">\r\n<HTML><HEAD><TITLE>Length Required</TITLE>\r\n<META HTTP-EQUIV=\"Content-Type\" Content=\"text/html; charset=us-ascii\"></HEAD>\r\n<BODY><h2>Length Required</h2>\r\n<hr><p>HTTP Error 411. The request must be chunked or have a content length.</p>\r\n</BODY></HTML>\r\n",
                "Length Required: HTTP Error 411. The request must be chunked or have a content length.",
            ),
            (
                "<html><head><title>Service Unavailable</title></head><body><h2>Service Unavailable</h2></body></html>",
                "Service Unavailable",
            ),
            (
                "  <html><head><style>body { color: red; }</style><title>502 Bad Gateway</title><script>var x = '<p>';</script></head>\n<body><p>The proxy &amp; the server   disagreed &lt;here&gt;.</p></body></html>",
                "502 Bad Gateway: The proxy & the server disagreed <here>.",
            ),
            // Not HTML: as sent.
            ("upstream connect error", "upstream connect error"),
            ("<error>not html</error>", "<error>not html</error>"),
        ];
        for (body, message) in cases {
            let e = ConnectorError::from_web_api(502, None, body.as_bytes());
            assert_eq!(e.message, message, "{body}");
        }
        // Long pages are cut to 300 characters, on a character boundary.
        let long = format!("<html><body><p>{}</p></body></html>", "é".repeat(400));
        let e = ConnectorError::from_web_api(500, None, long.as_bytes());
        assert_eq!(e.message, "é".repeat(300));
        // An unterminated tag or style ends the text without a panic; a
        // page without text leaves the message to the status.
        let e = ConnectorError::from_web_api(500, None, b"<html><body>cut <p");
        assert_eq!(e.message, "cut");
        let e = ConnectorError::from_web_api(500, None, b"<html><style>never closed");
        assert_eq!(e.message, "HTTP 500 from the Dataverse Web API");
    }

    #[test]
    fn throttled_carries_retry_after() {
        let e = ConnectorError::from_web_api(
            429,
            Some(17),
            br#"{"error":{"code":"0x80072322","message":"x"}}"#,
        );
        assert_eq!(
            e.kind,
            ErrorKind::Throttled {
                retry_after: Some(17)
            }
        );
    }

    #[test]
    fn invalid_input_names_the_input() {
        let e = ConnectorError::invalid_input("webApiUrl", "not a URL");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["kind"], "invalid-input");
        assert_eq!(json["input"], "webApiUrl");
    }
}
