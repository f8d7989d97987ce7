//! Shared pieces of the fuzz targets: a hostile fake [`Platform`] that answers
//! from fuzz data, and a small generator of JSON values and strings that look
//! enough like Dataverse's to get past the first checks.

use arbitrary::{Result as AResult, Unstructured};
use d365_connector::error::{ConnectorError, Result};
use d365_connector::http::{Platform, Request, Response, transport_code};
use serde_json::{Map, Value};

/// The environment every fuzz connection points at.
pub const ORG: &str = "https://org.crm.dynamics.com";

/// Canary secrets: the connector must never put them in an output or error
/// unless a (fake) server response already contained them.
pub const CANARY_SECRET: &str = "CANARYsecret7Q";
pub const CANARY_TOKEN: &str = "CANARYtoken9Z";
pub const CANARY_REFRESH: &str = "CANARYrefresh3X";

/// Strings the fuzzer would take long to find on its own.
pub const WORDS: &[&str] = &[
    "",
    " ",
    "accounts",
    "contacts",
    "account",
    "name",
    "accountid",
    "00000000-0000-0000-0000-000000000001",
    "{9A1D2B3C-0000-4000-8000-00000000ABCD}",
    "accountnumber='A-1'",
    "k1='x',k2=2",
    "O'Brien",
    "createdon desc,name",
    "primarycontactid($select=fullname)",
    "*",
    "true",
    "false",
    "1",
    "0",
    "-1",
    "5000",
    "4294967296",
    "1e309",
    "/Date(1735689600000)/",
    "$1",
    "https://org.crm.dynamics.com/api/data/v9.2/accounts?$skiptoken=1",
    "https://evil.example.com/api/data/v9.2/accounts",
    "/api/data/v9.2/accounts",
    "accounts?$select=name",
    "<fetch><entity name='account'><attribute name='name'/></entity></fetch>",
    "<fetch page='2' count='10'><entity name='account'/></fetch>",
    "<fetch aggregate='true'><entity name='account'><attribute name='name' aggregate='count' alias='n'/></entity></fetch>",
    "2:<cookie page=\"1\"><accountid last=\"{X}\" first=\"{Y}\" /></cookie>",
    "GET",
    "POST",
    "PATCH",
    "DELETE",
    "create",
    "update",
    "upsert",
    "delete",
    "retrieve",
    "WhoAmI",
    "Microsoft.Dynamics.CRM.WinOpportunity",
    "%3Ccookie%20page%3D%221%22%3E%3C%2Fcookie%3E",
    "\u{0}",
    "é",
    "'",
    "''",
    "%",
    "%zz",
    "(",
    ")",
    "\r\n",
];

/// Header names the connector reads from responses.
const HEADER_NAMES: &[&str] = &[
    "Content-Type",
    "Retry-After",
    "OData-EntityId",
    "Location",
    "Preference-Applied",
    "x-ms-service-request-id",
    "x-ms-ratelimit-burst-remaining-xrm-requests",
    "ETag",
    "WWW-Authenticate",
    "Content-Length",
];

/// A string: a dictionary word, an arbitrary string, or a word with
/// arbitrary text around it.
pub fn string(u: &mut Unstructured<'_>) -> AResult<String> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => u.choose(WORDS)?.to_string(),
        1 => format!(
            "{}{}",
            u.choose(WORDS)?,
            u.arbitrary::<&str>().unwrap_or_default()
        ),
        _ => u.arbitrary::<String>()?,
    })
}

/// A JSON value at most `depth` levels deep.
pub fn json(u: &mut Unstructured<'_>, depth: u32) -> AResult<Value> {
    let top = if depth == 0 { 4 } else { 6 };
    Ok(match u.int_in_range(0..=top)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => match u.int_in_range(0..=2u8)? {
            0 => Value::from(u.arbitrary::<i64>()?),
            1 => Value::from(u.arbitrary::<u64>()?),
            _ => serde_json::Number::from_f64(u.arbitrary::<f64>()?)
                .map(Value::Number)
                .unwrap_or(Value::Null),
        },
        3 | 4 => Value::String(string(u)?),
        5 => {
            let n = u.int_in_range(0..=4u8)?;
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(json(u, depth - 1)?);
            }
            Value::Array(items)
        }
        _ => {
            let n = u.int_in_range(0..=4u8)?;
            let mut map = Map::new();
            for _ in 0..n {
                let k = string(u)?;
                map.insert(k, json(u, depth - 1)?);
            }
            Value::Object(map)
        }
    })
}

/// A JSON object with keys drawn from `keys` (and now and then another).
pub fn object_with_keys(u: &mut Unstructured<'_>, keys: &[&str], depth: u32) -> AResult<Value> {
    let mut map = Map::new();
    let n = u.int_in_range(0..=keys.len().saturating_add(1).min(12))?;
    for _ in 0..n {
        let key = if !keys.is_empty() && u.ratio(9u8, 10u8)? {
            u.choose(keys)?.to_string()
        } else {
            string(u)?
        };
        map.insert(key, json(u, depth)?);
    }
    Ok(Value::Object(map))
}

/// One `batchActions` item, mostly with plausible gating fields.
pub fn batch_item(u: &mut Unstructured<'_>) -> AResult<Value> {
    let mut v = object_with_keys(u, d365_connector::batch::ITEM_FIELDS, 2)?;
    // Mostly plausible values for the fields that gate everything else.
    if let Value::Object(map) = &mut v {
        if u.ratio(3u8, 4u8)? {
            map.insert(
                "collection".into(),
                Value::String(u.choose(&["accounts", "contacts", "x y", ""])?.to_string()),
            );
        }
        if u.ratio(3u8, 4u8)? {
            let a = u.choose(&[
                "create", "update", "upsert", "delete", "get", "GET ", "nope",
            ])?;
            map.insert("action".into(), Value::String(a.to_string()));
        }
        if u.arbitrary()? {
            let k = match u.int_in_range(0..=3u8)? {
                0 => Value::String("00000000-0000-0000-0000-000000000001".into()),
                1 => Value::String(format!("${}", u.int_in_range(0..=4u8)?)),
                2 => object_with_keys(u, &["accountnumber", "name"], 0)?,
                _ => Value::String(string(u)?),
            };
            map.insert("key".into(), k);
        }
        if u.arbitrary()? {
            map.insert(
                "data".into(),
                object_with_keys(u, &["name", "parentaccountid@odata.bind"], 1)?,
            );
        }
        if u.arbitrary()? {
            map.insert(
                "headers".into(),
                object_with_keys(
                    u,
                    &[
                        "If-Match",
                        "MSCRMCallerID",
                        "Prefer",
                        "Content-Type",
                        "X\r\nY",
                    ],
                    0,
                )?,
            );
        }
    }
    Ok(v)
}

/// A Web API response body: arbitrary bytes, or JSON shaped like
/// Dataverse's (collections with nextLinks, records, error bodies, tokens).
pub fn response_body(u: &mut Unstructured<'_>, content_type: &mut String) -> AResult<Vec<u8>> {
    Ok(match u.int_in_range(0..=6u8)? {
        0 => u.arbitrary::<Vec<u8>>()?,
        1 => {
            let mut page = Map::new();
            let n = u.int_in_range(0..=3u8)?;
            let mut rows = Vec::new();
            for _ in 0..n {
                rows.push(object_with_keys(
                    u,
                    &["accountid", "name", "@odata.etag", "_parentaccountid_value"],
                    2,
                )?);
            }
            page.insert("value".into(), Value::Array(rows));
            if u.arbitrary()? {
                let link = match u.int_in_range(0..=2u8)? {
                    0 => format!("{ORG}/api/data/v9.2/accounts?$skiptoken={}", string(u)?),
                    1 => format!("{ORG}/api/data/v9.2/accounts?$deltatoken={}", string(u)?),
                    _ => string(u)?,
                };
                let key = if u.arbitrary()? {
                    "@odata.nextLink"
                } else {
                    "@odata.deltaLink"
                };
                page.insert(key.into(), Value::String(link));
            }
            if u.arbitrary()? {
                page.insert(
                    "@Microsoft.Dynamics.CRM.morerecords".into(),
                    Value::Bool(u.arbitrary()?),
                );
                page.insert(
                    "@Microsoft.Dynamics.CRM.fetchxmlpagingcookie".into(),
                    Value::String(string(u)?),
                );
            }
            Value::Object(page).to_string().into_bytes()
        }
        2 => object_with_keys(
            u,
            &[
                "accountid",
                "name",
                "UserId",
                "BusinessUnitId",
                "OrganizationId",
                "value",
                "@odata.context",
                "LogicalName",
                "EntitySetName",
                "Attributes",
                "MetadataId",
            ],
            3,
        )?
        .to_string()
        .into_bytes(),
        3 => {
            let mut err = Map::new();
            err.insert("code".into(), Value::String(string(u)?));
            err.insert("message".into(), json(u, 1)?);
            serde_json::json!({ "error": err }).to_string().into_bytes()
        }
        4 => {
            let obj = object_with_keys(
                u,
                &[
                    "access_token",
                    "expires_in",
                    "refresh_token",
                    "scope",
                    "token_type",
                    "error",
                    "error_description",
                    "error_codes",
                ],
                1,
            )?;
            obj.to_string().into_bytes()
        }
        5 => {
            // A $batch response whose boundary matches the Content-Type.
            let boundary = format!("batchresponse_{}", u.int_in_range(0..=9u8)?);
            *content_type = format!("multipart/mixed; boundary={boundary}");
            let mut body = String::new();
            let n = u.int_in_range(0..=3u8)?;
            for i in 0..n {
                let status = *u.choose(&[200u16, 201, 204, 400, 404, 412, 429, 500])?;
                body.push_str(&format!(
                    "--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {}\r\n\r\nHTTP/1.1 {status} X\r\nOData-EntityId: {ORG}/api/data/v9.2/accounts(00000000-0000-0000-0000-00000000000{})\r\nContent-Type: application/json\r\n\r\n{}\r\n",
                    i + 1,
                    i % 10,
                    json(u, 2)?
                ));
            }
            if u.ratio(7u8, 8u8)? {
                body.push_str(&format!("--{boundary}--\r\n"));
            }
            body.into_bytes()
        }
        _ => string(u)?.into_bytes(),
    })
}

/// A fake HTTP layer answering from fuzz data: status, headers and body
/// are all hostile. It answers at most `budget` requests, then fails with a
/// transport error; its clocks only move when the connector sleeps, and
/// sleeping returns at once.
pub struct FakePlatform<'a> {
    u: Unstructured<'a>,
    budget: usize,
    clock_ms: u64,
    /// Requests sent so far.
    pub sent: usize,
    /// Whether any response carried a canary (then echoes are the server's).
    pub echoed_canary: bool,
}

impl<'a> FakePlatform<'a> {
    pub fn new(data: &'a [u8], budget: usize) -> Self {
        FakePlatform {
            u: Unstructured::new(data),
            budget,
            clock_ms: 0,
            sent: 0,
            echoed_canary: false,
        }
    }

    fn answer(&mut self, request: &Request) -> AResult<Result<Response>> {
        let u = &mut self.u;
        if u.ratio(1u8, 12u8)? {
            let code = *u.choose(&[
                transport_code::CONNECTION_REFUSED,
                transport_code::CONNECT_TIMEOUT,
                transport_code::DNS,
                transport_code::HOST_NOT_FOUND,
                transport_code::RESPONSE_TIMEOUT,
                transport_code::CONNECTION_BROKEN,
            ])?;
            return Ok(Err(
                ConnectorError::transport("fake transport failure").with_code(code)
            ));
        }
        let status = match u.int_in_range(0..=3u8)? {
            0 => u.arbitrary::<u16>()?,
            _ => *u.choose(&[
                200u16, 200, 201, 204, 204, 304, 400, 401, 403, 404, 409, 410, 412, 429, 500, 502,
                503, 504,
            ])?,
        };
        let mut headers = Vec::new();
        let n = u.int_in_range(0..=3u8)?;
        for _ in 0..n {
            let name = if u.ratio(7u8, 8u8)? {
                u.choose(HEADER_NAMES)?.to_string()
            } else {
                string(u)?
            };
            let value = match name.as_str() {
                "Retry-After" if u.arbitrary()? => u.arbitrary::<u32>()?.to_string(),
                "OData-EntityId" | "Location" if u.arbitrary()? => {
                    format!("{ORG}/api/data/v9.2/accounts({})", string(u)?)
                }
                _ => string(u)?,
            };
            headers.push((name, value));
        }
        let mut content_type = "application/json; odata.metadata=minimal".to_string();
        let body = if request.method.as_str() == "HEAD" {
            Vec::new()
        } else {
            response_body(u, &mut content_type)?
        };
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("Content-Type"))
        {
            headers.push(("Content-Type".into(), content_type));
        }
        Ok(Ok(Response {
            status,
            headers,
            body,
        }))
    }
}

fn contains_canary(bytes: &[u8]) -> bool {
    [CANARY_SECRET, CANARY_TOKEN, CANARY_REFRESH]
        .iter()
        .any(|c| bytes.windows(c.len()).any(|w| w == c.as_bytes()))
}

impl Platform for FakePlatform<'_> {
    fn send(&mut self, request: &Request) -> Result<Response> {
        self.sent += 1;
        if self.budget == 0 {
            return Err(ConnectorError::transport("fake: no more answers")
                .with_code(transport_code::CONNECTION_REFUSED));
        }
        self.budget -= 1;
        let answer = match self.answer(request) {
            Ok(a) => a,
            // Out of fuzz data: the connection broke.
            Err(_) => Err(ConnectorError::transport("fake: out of data")
                .with_code(transport_code::CONNECTION_BROKEN)),
        };
        if let Ok(r) = &answer {
            if contains_canary(&r.body)
                || r.headers
                    .iter()
                    .any(|(n, v)| contains_canary(n.as_bytes()) || contains_canary(v.as_bytes()))
            {
                self.echoed_canary = true;
            }
        }
        answer
    }
    fn now_unix(&self) -> u64 {
        1_700_000_000 + self.clock_ms / 1000
    }
    fn monotonic_ms(&self) -> u64 {
        self.clock_ms
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.clock_ms = self.clock_ms.saturating_add(ms);
    }
    fn random_bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        let _ = self.u.fill_buffer(&mut out);
        out
    }
}

/// Asserts that a text the connector produced holds no canary secret.
pub fn assert_no_canary(what: &str, text: &str) {
    for c in [CANARY_SECRET, CANARY_TOKEN, CANARY_REFRESH] {
        assert!(!text.contains(c), "{what} leaks a secret: {text}");
    }
}
