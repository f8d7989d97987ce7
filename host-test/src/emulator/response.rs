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
