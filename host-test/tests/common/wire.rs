//! Requests straight to the in-process emulator's Web API, without the
//! connector, carrying a bearer token the real component obtained: for
//! checking that the emulator answers as Dataverse does (status codes,
//! headers, error bodies, paging links).

use super::{Env, host};
use bytes::Bytes;
use host_test::emulator::Emulator;
use serde_json::Value;

/// The service root the in-process emulator's links start with.
pub const ROOT: &str = "http://localhost/api/data/v9.2/";

/// A bearer token from the component's client-credentials export.
pub async fn token(env: &Env) -> String {
    host()
        .client_credentials_token(&env.route, &env.connection.settings_json())
        .await
        .expect("no trap")
        .expect("token")
        .access_token
}

/// One Web API request: a method, a target relative to [`ROOT`] (or a full
/// link under it, as an `@odata.nextLink`), headers and a JSON body.
pub struct Req {
    method: &'static str,
    target: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Value>,
    raw: Option<Bytes>,
}

impl Req {
    pub fn new(method: &'static str, target: impl Into<String>) -> Self {
        Req {
            method,
            target: target.into(),
            headers: Vec::new(),
            body: None,
            raw: None,
        }
    }

    pub fn get(target: impl Into<String>) -> Self {
        Self::new("GET", target)
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn prefer(self, value: impl Into<String>) -> Self {
        self.header("Prefer", value)
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// A body of bytes, sent as they are (a file chunk).
    pub fn bytes(mut self, body: impl Into<Bytes>) -> Self {
        let body = body.into();
        self.headers
            .push(("Content-Length", body.len().to_string()));
        self.raw = Some(body);
        self
    }
}

/// An answer: its status, headers and body (as JSON; `Null` when the body
/// is not JSON).
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Value,
    /// The body as received.
    pub raw: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The value at a JSON pointer of the body (`Null` when absent).
    pub fn at(&self, pointer: &str) -> &Value {
        self.body.pointer(pointer).unwrap_or(&Value::Null)
    }

    /// The records of the array at `pointer`.
    pub fn array(&self, pointer: &str) -> &Vec<Value> {
        self.at(pointer)
            .as_array()
            .unwrap_or_else(|| panic!("an array at {pointer}: {}", self.body))
    }

    /// The `key` column of every record of the array at `pointer`.
    pub fn ids(&self, pointer: &str, key: &str) -> Vec<String> {
        self.array(pointer)
            .iter()
            .map(|r| r[key].as_str().expect("an id").to_string())
            .collect()
    }

    /// The string at `pointer` (a paging link, say); panics when there is
    /// none.
    pub fn string(&self, pointer: &str) -> String {
        self.at(pointer)
            .as_str()
            .unwrap_or_else(|| panic!("a string at {pointer}: {}", self.body))
            .to_string()
    }

    /// Asserts every fact, naming `what` and showing the body on failure.
    pub fn check(&self, what: &str, facts: &[Fact]) {
        for fact in facts {
            let body = &self.body;
            match fact {
                Fact::Status(s) => assert_eq!(self.status, *s, "{what}: status; {body}"),
                Fact::Header(name, want) => {
                    assert_eq!(self.header(name), Some(*want), "{what}: {name}")
                }
                Fact::HeaderStartsWith(name, prefix) => {
                    let got = self.header(name);
                    assert!(
                        got.is_some_and(|v| v.starts_with(prefix)),
                        "{what}: {name} = {got:?}, not starting with {prefix}"
                    )
                }
                Fact::Json(pointer, want) => {
                    assert_eq!(self.at(pointer), want, "{what}: {pointer}; {body}")
                }
                Fact::EndsWith(pointer, suffix) => assert!(
                    self.at(pointer)
                        .as_str()
                        .is_some_and(|s| s.ends_with(suffix)),
                    "{what}: {pointer} should end with {suffix}; {body}"
                ),
                Fact::Contains(pointer, part) => assert!(
                    self.at(pointer).as_str().is_some_and(|s| s.contains(part)),
                    "{what}: {pointer} should contain {part}; {body}"
                ),
                Fact::Str(pointer) => assert!(
                    self.at(pointer).is_string(),
                    "{what}: {pointer} should be a string; {body}"
                ),
                Fact::Len(pointer, n) => {
                    assert_eq!(self.array(pointer).len(), *n, "{what}: {pointer}; {body}")
                }
                Fact::Absent(pointer) => assert!(
                    self.body.pointer(pointer).is_none(),
                    "{what}: {pointer} should be absent; {body}"
                ),
            }
        }
    }
}

/// What a [`Reply`] must show; pointers are JSON pointers into its body.
pub enum Fact {
    Status(u16),
    /// The header is present with exactly this value.
    Header(&'static str, &'static str),
    HeaderStartsWith(&'static str, &'static str),
    /// The body at the pointer equals the value.
    Json(&'static str, Value),
    /// The body at the pointer is a string ending with the text.
    EndsWith(&'static str, &'static str),
    /// The body at the pointer is a string containing the text.
    Contains(&'static str, &'static str),
    /// The body at the pointer is a string.
    Str(&'static str),
    /// The body at the pointer is an array of this length.
    Len(&'static str, usize),
    /// The body has nothing at the pointer.
    Absent(&'static str),
}

/// Sends [`Req`]s to an [`Env`]'s emulator with one token; it keeps no
/// borrow of the `Env`, so actions can run between its requests.
pub struct Wire {
    emulator: Emulator,
    token: String,
}

impl Wire {
    pub async fn new(env: &Env) -> Self {
        Wire {
            emulator: env.emulator.clone(),
            token: token(env).await,
        }
    }

    pub async fn send(&self, req: Req) -> Reply {
        // A path under the Web API root, or a whole URL elsewhere on the
        // emulator (`http://localhost/api/search/v2.0/…`).
        let uri = match req.target.strip_prefix(ROOT) {
            Some(target) => format!("{ROOT}{target}"),
            None if req.target.starts_with("http://") => req.target.clone(),
            None => format!("{ROOT}{}", req.target),
        };
        let mut builder = http::Request::builder()
            .method(req.method)
            .uri(uri)
            .header("Host", "localhost")
            .header("Authorization", format!("Bearer {}", self.token));
        for (k, v) in &req.headers {
            builder = builder.header(*k, v);
        }
        let body = match (req.raw, req.body) {
            (Some(raw), _) => raw,
            (None, body) => body.map(|b| Bytes::from(b.to_string())).unwrap_or_default(),
        };
        let response = self
            .emulator
            .handle(builder.body(body).expect("a valid request"))
            .await;
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: serde_json::from_slice(response.body()).unwrap_or(Value::Null),
            raw: response.body().clone(),
        }
    }

    /// Sends `req` and asserts `facts` of the reply, which it returns.
    pub async fn expect(&self, what: &str, req: Req, facts: &[Fact]) -> Reply {
        let reply = self.send(req).await;
        reply.check(what, facts);
        reply
    }
}
