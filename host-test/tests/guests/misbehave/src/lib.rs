//! Misbehaves according to the action key:
//! - `loop`: spins forever without calling the host;
//! - `allocate`: allocates and touches memory until something stops it;
//! - `read-endless`: GETs the URL given as `inputs` and reads the body
//!   without any cap of its own, returning how much it read when the stream
//!   fails;
//! - anything else: answers `{"ok":true}` at once.

wit_bindgen::generate!({
    path: "../../../../wit",
    world: "connector",
    with: {
        "wasi:http/outgoing-handler@0.2.12": wasi::http::outgoing_handler,
        "wasi:http/types@0.2.12": wasi::http::types,
        "wasi:io/poll@0.2.12": wasi::io::poll,
        "wasi:io/error@0.2.12": wasi::io::error,
        "wasi:io/streams@0.2.12": wasi::io::streams,
        "wasi:clocks/monotonic-clock@0.2.12": wasi::clocks::monotonic_clock,
        "wasi:clocks/wall-clock@0.2.12": wasi::clocks::wall_clock,
        "wasi:random/random@0.2.12": wasi::random::random,
    },
});

use d365::connector::types as wit;
use exports::d365::connector::{
    actions, catalog, oauth2_auth_code, oauth2_client_credentials, webhook,
};

struct Guest;

export!(Guest);

fn error(message: String) -> wit::ConnectorError {
    wit::ConnectorError {
        kind: wit::ErrorKind::Transport,
        status: None,
        code: None,
        message,
        hint: None,
        retryable: false,
    }
}

fn unsupported() -> wit::ConnectorError {
    error("not supported by the misbehaving test guest".into())
}

fn spin() -> u64 {
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        if std::hint::black_box(x) == 0 {
            return x;
        }
    }
}

fn allocate() -> usize {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        // 16 MiB at a time, written so the pages are really used.
        kept.push(vec![7u8; 16 << 20]);
        if std::hint::black_box(kept.len()) == usize::MAX {
            return kept.len();
        }
    }
}

fn read_endless(url: &str) -> Result<u64, String> {
    use wasi::http::types::{Fields, Method, OutgoingRequest, Scheme};
    use wasi::io::streams::StreamError;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http URL: {url}"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_method(&Method::Get);
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(if path.is_empty() { "/" } else { path }));
    let future =
        wasi::http::outgoing_handler::handle(request, None).map_err(|e| format!("send: {e:?}"))?;
    future.subscribe().block();
    let response = future
        .get()
        .ok_or("no response")?
        .map_err(|_| "response taken twice")?
        .map_err(|e| format!("response: {e:?}"))?;
    let body = response.consume().map_err(|_| "body taken")?;
    let stream = body.stream().map_err(|_| "stream taken")?;
    let mut total: u64 = 0;
    loop {
        match stream.blocking_read(1 << 20) {
            Ok(chunk) => total += chunk.len() as u64,
            Err(StreamError::Closed) => return Ok(total),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(format!(
                    "body failed after {total} bytes: {}",
                    e.to_debug_string()
                ));
            }
        }
    }
}

impl actions::Guest for Guest {
    fn invoke(
        action_key: String,
        _connection: wit::Connection,
        inputs: String,
    ) -> Result<wit::ActionResult, wit::ConnectorError> {
        let output = match action_key.as_str() {
            "loop" => format!("{{\"spun\":{}}}", spin()),
            "allocate" => format!("{{\"chunks\":{}}}", allocate()),
            "read-endless" => match read_endless(&inputs) {
                Ok(n) => format!("{{\"read\":{n}}}"),
                Err(e) => return Err(error(e)),
            },
            _ => "{\"ok\":true}".to_string(),
        };
        Ok(wit::ActionResult {
            output,
            state: None,
        })
    }
}

impl catalog::Guest for Guest {
    fn describe() -> String {
        "{\"actions\":[]}".into()
    }
}

impl oauth2_auth_code::Guest for Guest {
    fn authorize_url(_settings: String) -> Result<wit::AuthorizeRequest, wit::ConnectorError> {
        Err(unsupported())
    }

    fn exchange_code(
        _settings: String,
        _code: String,
        _code_verifier: String,
    ) -> Result<wit::TokenState, wit::ConnectorError> {
        Err(unsupported())
    }

    fn refresh(
        _settings: String,
        _refresh_token: String,
    ) -> Result<wit::TokenState, wit::ConnectorError> {
        Err(unsupported())
    }
}

impl oauth2_client_credentials::Guest for Guest {
    fn get_token(_settings: String) -> Result<wit::TokenState, wit::ConnectorError> {
        Err(unsupported())
    }
}

impl webhook::Guest for Guest {
    fn handle(
        _request: webhook::IncomingWebhook,
        _inputs: String,
    ) -> Result<webhook::WebhookEvent, webhook::WebhookRejection> {
        Err(webhook::WebhookRejection {
            status: 500,
            headers: Vec::new(),
            body: "{}".into(),
            reason: "test guest".into(),
        })
    }

    fn subscribe(
        _connection: wit::Connection,
        _inputs: String,
        _callback_url: String,
    ) -> Result<webhook::Subscription, wit::ConnectorError> {
        Err(unsupported())
    }

    fn unsubscribe(
        _connection: wit::Connection,
        _subscription: webhook::Subscription,
    ) -> Result<(), wit::ConnectorError> {
        Err(unsupported())
    }

    fn check(
        _connection: wit::Connection,
        _subscription: webhook::Subscription,
    ) -> Result<bool, wit::ConnectorError> {
        Err(unsupported())
    }
}
