//! Response builders shared by the emulator's endpoints, so every answer
//! carries the headers Dataverse and Entra send.

use super::EmuResponse;
use bytes::Bytes;
use serde_json::Value;

/// A Web API JSON answer: `OData-Version: 4.0`, `odata.metadata=minimal`.
pub fn odata_json(status: u16, body: &Value) -> EmuResponse {
    http::Response::builder()
        .status(status)
        .header("Content-Type", "application/json; odata.metadata=minimal")
        .header("OData-Version", "4.0")
        .body(Bytes::from(body.to_string()))
        .unwrap_or_default()
}

/// A Web API error: `{"error":{"code":"0x…","message":"…"}}`.
pub fn odata_error(status: u16, code: &str, message: &str) -> EmuResponse {
    odata_json(
        status,
        &serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

/// An empty answer (204) with the OData version header.
pub fn no_content() -> EmuResponse {
    http::Response::builder()
        .status(204)
        .header("OData-Version", "4.0")
        .body(Bytes::new())
        .unwrap_or_default()
}

/// A token-endpoint JSON answer (`Cache-Control: no-store, no-cache`).
pub fn identity_json(status: u16, body: &Value) -> EmuResponse {
    http::Response::builder()
        .status(status)
        .header("Content-Type", "application/json; charset=utf-8")
        .header("Cache-Control", "no-store, no-cache")
        .body(Bytes::from(body.to_string()))
        .unwrap_or_default()
}

/// HTTP.sys's own answer (before Dataverse sees the request) to a POST, PUT
/// or PATCH that declares no length: neither `Content-Length` nor chunked
/// `Transfer-Encoding`. The status and page are HTTP.sys's standard ones;
/// that Dataverse's front end answers exactly so is UNCONFIRMED (any
/// HTTP/1.1 server may refuse such a request with 411, RFC 9110 §15.5.12).
pub fn length_required() -> EmuResponse {
    http::Response::builder()
        .status(411)
        .header("Content-Type", "text/html; charset=us-ascii")
        .body(Bytes::from_static(
            b"<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\"\"http://www.w3.org/TR/html4/strict.dtd\">\r\n<HTML><HEAD><TITLE>Length Required</TITLE>\r\n<META HTTP-EQUIV=\"Content-Type\" Content=\"text/html; charset=us-ascii\"></HEAD>\r\n<BODY><h2>Length Required</h2>\r\n<hr><p>HTTP Error 411. The request must be chunked or have a content length.</p>\r\n</BODY></HTML>\r\n",
        ))
        .unwrap_or_default()
}
