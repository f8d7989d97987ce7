//! Hosting the connector's `webhook` trigger: a request file for one-shot
//! runs, and a loopback HTTP listener that hands every request to the
//! component and answers the caller as the trigger decides (used by
//! `d365 trigger webhook`).

use crate::host::{ConnectorHost, IncomingWebhook, rejection_json, trap};
use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Reads a request file: `{"method", "url", "headers", "body"}`.
/// `headers` is an object (`{"Name": "value"}`) or a list of `[name, value]`
/// pairs or `{name, value}` objects; `body` is a string sent as is, or any
/// other JSON value, sent serialized. `method` defaults to POST.
pub fn request_from_json(text: &str) -> Result<IncomingWebhook> {
    let v: Value = serde_json::from_str(text).context("the request file is not JSON")?;
    let Value::Object(obj) = v else {
        bail!("the request file must be a JSON object {{method, url, headers, body}}");
    };
    let method = match obj.get("method") {
        None | Some(Value::Null) => "POST".to_string(),
        Some(Value::String(m)) => m.clone(),
        Some(_) => bail!("method must be a string"),
    };
    let url = match obj.get("url") {
        Some(Value::String(u)) => u.clone(),
        _ => bail!("url must be a string, e.g. \"/hook?code=KEY\""),
    };
    let mut headers = Vec::new();
    match obj.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                headers.push((k.clone(), header_value(k, v)?));
            }
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let (name, value) = match item {
                    Value::Array(pair) if pair.len() == 2 => (&pair[0], &pair[1]),
                    Value::Object(o) => match (o.get("name"), o.get("value")) {
                        (Some(n), Some(v)) => (n, v),
                        _ => bail!("headers[{i}] must be [name, value] or {{name, value}}"),
                    },
                    _ => bail!("headers[{i}] must be [name, value] or {{name, value}}"),
                };
                let name = name
                    .as_str()
                    .with_context(|| format!("headers[{i}]: the name must be a string"))?;
                headers.push((name.to_string(), header_value(name, value)?));
            }
        }
        Some(_) => bail!("headers must be an object or a list of [name, value] pairs"),
    }
    let body = match obj.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(other) => other.to_string().into_bytes(),
    };
    Ok(IncomingWebhook {
        method,
        url,
        headers,
        body,
    })
}

fn header_value(name: &str, v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(_) | Value::Bool(_) => Ok(v.to_string()),
        _ => bail!("header {name}: the value must be a string"),
    }
}

/// What the listener did with one request.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// The trigger accepted it: the event payload.
    Event(Value),
    /// The trigger refused it: the rejection as JSON (status, headers, body,
    /// reason); the caller got that status.
    Rejected(Value),
}

/// A running webhook listener.
pub struct WebhookListener {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookListener {
    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn shutdown(self) {
        self.task.abort();
    }
}

/// Listens on 127.0.0.1:`port` (0 picks one) and runs the trigger with
/// `inputs` on every request. Accepted requests are answered `200` with an
/// empty body (Dataverse reads only the status); rejected ones with the
/// rejection's status, headers and body. Each outcome is sent on the
/// returned channel, in order of completion.
pub async fn listen(
    host: &'static ConnectorHost,
    port: u16,
    inputs: String,
) -> Result<(WebhookListener, mpsc::UnboundedReceiver<Delivery>)> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{port}"))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let tx = tx.clone();
            let inputs = inputs.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    let inputs = inputs.clone();
                    async move { Ok::<_, Infallible>(answer(host, req, &inputs, &tx).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((WebhookListener { addr, task }, rx))
}

async fn answer(
    host: &ConnectorHost,
    req: hyper::Request<hyper::body::Incoming>,
    inputs: &str,
    tx: &mpsc::UnboundedSender<Delivery>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => return plain(400, "could not read the request body"),
    };
    let request = IncomingWebhook {
        method: parts.method.to_string(),
        url: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "/".into()),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect(),
        body,
    };
    match host.webhook(&request, inputs).await {
        Ok(Ok(event)) => {
            let payload = serde_json::from_str(&event.payload)
                .unwrap_or_else(|_| json!({"unparsedPayload": event.payload}));
            let _ = tx.send(Delivery::Event(payload));
            hyper::Response::new(Full::new(Bytes::new()))
        }
        Ok(Err(rejection)) => {
            let _ = tx.send(Delivery::Rejected(rejection_json(&rejection)));
            let mut response = hyper::Response::builder().status(rejection.status);
            for (name, value) in &rejection.headers {
                response = response.header(name, value);
            }
            response
                .body(Full::new(Bytes::from(rejection.body)))
                .unwrap_or_else(|_| plain(500, "the trigger's rejection is not valid HTTP"))
        }
        Err(e) => {
            let _ = tx.send(Delivery::Rejected(json!({
                "status": 500,
                "reason": format!("the component trapped: {}", trap(e)),
            })));
            plain(500, "the trigger failed")
        }
    }
}

fn plain(status: u16, text: &'static str) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_file_forms() {
        let r = request_from_json(
            r#"{"url": "/h?code=k", "headers": {"X-A": "1"}, "body": {"MessageName": "Create"}}"#,
        )
        .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.headers, vec![("X-A".to_string(), "1".to_string())]);
        assert_eq!(r.body, br#"{"MessageName":"Create"}"#);
        let r = request_from_json(
            r#"{"method": "PUT", "url": "/h", "headers": [["a", "b"], {"name": "c", "value": "d"}], "body": "x"}"#,
        )
        .unwrap();
        assert_eq!(r.method, "PUT");
        assert_eq!(r.headers.len(), 2);
        assert_eq!(r.body, b"x");
        for bad in [
            "[]",
            "{}",
            r#"{"url": 1}"#,
            r#"{"url": "/", "headers": [1]}"#,
            "x",
        ] {
            assert!(request_from_json(bad).is_err(), "{bad}");
        }
    }
}
