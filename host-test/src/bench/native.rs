//! The native baseline: a plain Rust client (hyper + serde_json) doing the
//! same HTTP requests as the connector and parsing the same JSON — the
//! practical limit for a client on this machine.

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;

const API: &str = "/api/data/v9.2/";

/// One keep-alive HTTP/1.1 connection to the emulator, with a bearer token.
pub struct Native {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
    base: String,
    token: String,
}

impl Native {
    /// Connects to `base` (`http://127.0.0.1:PORT`) and fetches a
    /// client-credentials token from `token_path` (as the connector does).
    pub async fn connect(
        base: &str,
        token_path: &str,
        client_id: &str,
        secret: &str,
    ) -> Result<Self> {
        let authority = base.trim_start_matches("http://").to_string();
        let stream = tokio::net::TcpStream::connect(&authority).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut native = Native {
            sender,
            authority,
            base: base.to_string(),
            token: String::new(),
        };
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", client_id)
            .append_pair("client_secret", secret)
            .append_pair("scope", &format!("{base}/.default"))
            .finish();
        let (status, _, body) = native
            .send(
                http::Method::POST,
                token_path,
                &[("Content-Type", "application/x-www-form-urlencoded")],
                Bytes::from(form),
            )
            .await?;
        if status != 200 {
            bail!("token endpoint answered {status}");
        }
        let v: Value = serde_json::from_slice(&body)?;
        native.token = v["access_token"]
            .as_str()
            .context("no access_token")?
            .to_string();
        Ok(native)
    }

    async fn send(
        &mut self,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(u16, http::HeaderMap, Bytes)> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("Host", &self.authority);
        if !self.token.is_empty() {
            req = req
                .header("Authorization", format!("Bearer {}", self.token))
                .header("OData-Version", "4.0")
                .header("OData-MaxVersion", "4.0")
                .header("Accept", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.sender.ready().await?;
        let res = self.sender.send_request(req.body(Full::new(body))?).await?;
        let status = res.status().as_u16();
        let (parts, body) = res.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok((status, parts.headers, body))
    }

    async fn get_json(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Value> {
        let (status, _, body) = self
            .send(http::Method::GET, path, headers, Bytes::new())
            .await?;
        if status != 200 {
            bail!("GET {path} answered {status}");
        }
        Ok(serde_json::from_slice(&body)?)
    }

    /// The path-and-query of an absolute link on this server.
    fn local(&self, link: &str) -> String {
        link.strip_prefix(&self.base).unwrap_or(link).to_string()
    }

    /// Every account, `page_size` per page, following `@odata.nextLink`.
    pub async fn fetch_all(&mut self, page_size: usize) -> Result<Vec<Value>> {
        let prefer = format!("odata.maxpagesize={page_size}");
        let mut records = Vec::new();
        let mut path = format!("{API}accounts");
        loop {
            let mut page = self.get_json(&path, &[("Prefer", &prefer)]).await?;
            if let Some(Value::Array(v)) = page.get_mut("value").map(Value::take) {
                records.extend(v);
            }
            match page.get("@odata.nextLink").and_then(Value::as_str) {
                Some(next) => path = self.local(next),
                None => return Ok(records),
            }
        }
    }

    /// Like [`Self::fetch_all`] without building the records: only each
    /// page's `@odata.nextLink` is read (serde skips the rest). Returns the
    /// bytes received; `examples/fetch_cost.rs` uses it to split HTTP from
    /// parsing.
    pub async fn fetch_all_bytes(&mut self, page_size: usize) -> Result<usize> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(rename = "@odata.nextLink")]
            next: Option<String>,
        }
        let prefer = format!("odata.maxpagesize={page_size}");
        let mut bytes = 0;
        let mut path = format!("{API}accounts");
        loop {
            let (status, _, body) = self
                .send(
                    http::Method::GET,
                    &path,
                    &[("Prefer", &prefer)],
                    Bytes::new(),
                )
                .await?;
            if status != 200 {
                bail!("GET {path} answered {status}");
            }
            bytes += body.len();
            match serde_json::from_slice::<Page>(&body)?.next {
                Some(next) => path = self.local(&next),
                None => return Ok(bytes),
            }
        }
    }

    /// One account by id.
    pub async fn get_account(&mut self, id: &str) -> Result<Value> {
        self.get_json(&format!("{API}accounts({id})"), &[]).await
    }

    /// WhoAmI (the request behind getCurrentUser).
    pub async fn who_am_i(&mut self) -> Result<Value> {
        self.get_json(&format!("{API}WhoAmI"), &[]).await
    }

    /// The requests uploadFile makes for a file above 4 MiB ("Use file
    /// column data"): the column's type and MaxSizeInKB, the chunked
    /// session, `Content-Range` chunks of the session's `x-ms-chunk-size`,
    /// and the stored file's id. Returns how many chunks were sent.
    pub async fn upload_file(&mut self, account: &str, name: &str, data: &[u8]) -> Result<usize> {
        let column = "new_document";
        let filter = "$filter=EntitySetName%20eq%20'accounts'&$select=LogicalName&$expand=Attributes($select=LogicalName;$filter=LogicalName%20eq%20'new_document')";
        self.get_json(&format!("{API}EntityDefinitions?{filter}"), &[])
            .await?;
        let meta = self
            .get_json(
                &format!("{API}EntityDefinitions(LogicalName='account')/Attributes(LogicalName='{column}')/Microsoft.Dynamics.CRM.FileAttributeMetadata?$select=MaxSizeInKB"),
                &[],
            )
            .await?;
        let max = meta["MaxSizeInKB"].as_u64().context("no MaxSizeInKB")?;
        if data.len() as u64 > max * 1024 {
            bail!("{} bytes is over the column's {max} KB", data.len());
        }
        let target = format!("{API}accounts({account})/{column}");
        let (status, headers, _) = self
            .send(
                http::Method::PATCH,
                &format!("{target}?x-ms-file-name={name}"),
                &[("x-ms-transfer-mode", "chunked"), ("Content-Length", "0")],
                Bytes::new(),
            )
            .await?;
        if status != 200 {
            bail!("the chunked upload session answered {status}");
        }
        let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
        let location = self.local(header("location").context("no Location")?);
        let chunk: usize = header("x-ms-chunk-size")
            .and_then(|v| v.parse().ok())
            .unwrap_or(4 << 20);
        let total = data.len();
        let mut chunks = 0;
        for (n, part) in data.chunks(chunk).enumerate() {
            let start = n * chunk;
            let range = format!("bytes {start}-{}/{total}", start + part.len() - 1);
            let (status, _, _) = self
                .send(
                    http::Method::PATCH,
                    &location,
                    &[
                        ("Content-Type", "application/octet-stream"),
                        ("x-ms-file-name", name),
                        ("Content-Range", &range),
                    ],
                    Bytes::copy_from_slice(part),
                )
                .await?;
            if !matches!(status, 204 | 206) {
                bail!("chunk {range} answered {status}");
            }
            chunks += 1;
        }
        self.get_json(&format!("{API}accounts({account})?$select={column}"), &[])
            .await?;
        Ok(chunks)
    }

    /// The requests downloadFile makes: `Range` GETs of 4 MiB on
    /// `…/new_document/$value` until `x-ms-file-size` bytes are in.
    pub async fn download_file(&mut self, account: &str) -> Result<Vec<u8>> {
        const CHUNK: usize = 4 << 20;
        let path = format!("{API}accounts({account})/new_document/$value");
        let mut out = Vec::new();
        loop {
            let from = out.len();
            let range = format!("bytes={from}-{}", from + CHUNK - 1);
            let (status, headers, body) = self
                .send(http::Method::GET, &path, &[("Range", &range)], Bytes::new())
                .await?;
            if status != 206 {
                bail!("GET {range} answered {status}");
            }
            let total: usize = headers
                .get("x-ms-file-size")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .context("no x-ms-file-size")?;
            if from == 0 {
                out.reserve_exact(total);
            }
            out.extend_from_slice(&body);
            if out.len() >= total || body.is_empty() {
                return Ok(out);
            }
        }
    }
}

/// The `pagingcookie` attribute of a `fetchxmlpagingcookie` annotation,
/// URL-decoded twice (it arrives double-encoded), ready for `paging-cookie`.
fn paging_cookie(annotation: &str) -> Option<String> {
    let start = annotation.find("pagingcookie=\"")? + "pagingcookie=\"".len();
    let len = annotation[start..].find('"')?;
    let once = percent_encoding::percent_decode_str(&annotation[start..start + len])
        .decode_utf8()
        .ok()?
        .into_owned();
    Some(
        percent_encoding::percent_decode_str(&once)
            .decode_utf8()
            .ok()?
            .into_owned(),
    )
}

fn xml_attr(v: &str) -> String {
    v.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Native {
    /// Every record of a FetchXML query (`{page}` and `{cookie}` are filled
    /// per page), following paging cookies as the wire reference describes.
    pub async fn fetch_xml_all(&mut self, template: &str) -> Result<Vec<Value>> {
        const PREFER: &str = "odata.include-annotations=\"Microsoft.Dynamics.CRM.fetchxmlpagingcookie,Microsoft.Dynamics.CRM.morerecords\"";
        let mut records = Vec::new();
        let mut page = 1;
        let mut cookie = String::new();
        loop {
            let xml = template
                .replace("{page}", &page.to_string())
                .replace("{cookie}", &xml_attr(&cookie));
            let q: String = url::form_urlencoded::byte_serialize(xml.as_bytes()).collect();
            let mut body = self
                .get_json(
                    &format!("{API}accounts?fetchXml={q}"),
                    &[("Prefer", PREFER)],
                )
                .await?;
            if let Some(Value::Array(v)) = body.get_mut("value").map(Value::take) {
                records.extend(v);
            }
            let more = body["@Microsoft.Dynamics.CRM.morerecords"].as_bool() == Some(true);
            if !more {
                return Ok(records);
            }
            cookie = body["@Microsoft.Dynamics.CRM.fetchxmlpagingcookie"]
                .as_str()
                .and_then(paging_cookie)
                .context("morerecords without a paging cookie")?;
            page += 1;
        }
    }

    /// The `$batch` body of `creates` contact creates and its Content-Type
    /// (`round` keeps the names unique, see [`Native::batch_creates`]).
    pub fn batch_body(&self, creates: usize, round: usize) -> (String, Bytes) {
        const BOUNDARY: &str = "batch_d365bench";
        let mut body = String::with_capacity(creates * 256);
        for i in 0..creates {
            let data = serde_json::to_string(&Contact {
                firstname: "Bench",
                lastname: format!("Native r{round} {i}"),
            })
            .unwrap_or_default();
            body.push_str(&format!(
                "--{BOUNDARY}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nPOST {}{API}contacts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{data}\r\n",
                self.base
            ));
        }
        body.push_str(&format!("--{BOUNDARY}--\r\n"));
        (
            format!("multipart/mixed; boundary={BOUNDARY}"),
            Bytes::from(body),
        )
    }

    /// One `$batch` of `creates` contact creates (no change set); returns
    /// the created ids, decoded from each part's OData-EntityId. Names carry
    /// `round`: contacts have an alternate key on first and last name.
    pub async fn batch_creates(&mut self, creates: usize, round: usize) -> Result<Vec<String>> {
        let (ct, body) = self.batch_body(creates, round);
        let (status, headers, res) = self
            .send(
                http::Method::POST,
                &format!("{API}$batch"),
                &[("Content-Type", &ct)],
                body,
            )
            .await?;
        if status != 200 {
            bail!(
                "$batch answered {status}: {}",
                String::from_utf8_lossy(&res)
            );
        }
        let boundary = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("boundary=").nth(1))
            .map(|b| b.trim_matches('"').to_string())
            .context("$batch response without a boundary")?;
        let text = std::str::from_utf8(&res)?;
        let mut ids = Vec::with_capacity(creates);
        for part in text.split(&format!("--{boundary}")) {
            let Some(at) = part.find("HTTP/1.1 ") else {
                continue;
            };
            let code = part.get(at + 9..at + 12).unwrap_or("");
            if !code.starts_with('2') {
                bail!("a batch create answered {code}");
            }
            let id = part
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("odata-entityid").then_some(v)
                })
                .and_then(|l| l.rsplit_once('(').map(|(_, r)| r.trim_end_matches(')')))
                .context("a batch create without OData-EntityId")?;
            ids.push(id.trim().to_string());
        }
        Ok(ids)
    }
}

/// A contact to create: the data of every create in scenario 4, for the
/// connector's inputs and the native client's body alike.
#[derive(serde::Serialize)]
pub struct Contact {
    pub firstname: &'static str,
    pub lastname: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_cookie_is_decoded_twice() {
        let annotation = r#"<cookie pagenumber="2" pagingcookie="%253ccookie%2520page%253d%25221%2522%253e%253caccountid%2520last%253d%2522%257bB0000000-0000-4000-8000-000000000064%257d%2522%2520%252f%253e%253c%252fcookie%253e" istracking="False" />"#;
        assert_eq!(
            paging_cookie(annotation).as_deref(),
            Some(
                r#"<cookie page="1"><accountid last="{B0000000-0000-4000-8000-000000000064}" /></cookie>"#
            )
        );
        assert_eq!(paging_cookie("<cookie />"), None);
        assert_eq!(xml_attr(r#"<a b="&">"#), "&lt;a b=&quot;&amp;&quot;&gt;");
    }
}
