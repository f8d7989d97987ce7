//! The OData engine: query options ([`options`]), `$filter` parsing
//! ([`filter`]) and evaluation ([`eval`]), record shaping with `$select`,
//! `$expand` and annotations ([`shape`]), Dataverse's paging cookie
//! ([`paging`]) and write payload checks ([`payload`]). Independent of HTTP: the Web API layer calls it.

pub mod aggregate;
pub mod apply;
pub mod eval;
pub mod filter;
pub mod options;
pub mod paging;
pub mod payload;
pub mod shape;

/// An OData error as Dataverse answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ODataError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ODataError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ODataError {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// Bad query syntax or an unknown property: 400 `0x80060888`.
    pub fn bad_request(message: String) -> Self {
        Self::new(400, "0x80060888", message)
    }

    pub fn not_implemented(message: String) -> Self {
        Self::new(501, "0x8006088a", message)
    }
}
