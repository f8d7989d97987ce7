//! `runFetchXml`: a FetchXML query through the Web API (reference §4), page
//! by page with Dataverse's paging cookie, by page number, or to the end.
//!
//! The query is parsed and its `<fetch>` paging attributes rewritten by
//! [`crate::fetchxml`] (quick-xml, never string splicing). A query whose
//! URL would pass Dataverse's GET limit is sent as the same GET inside
//! `$batch`. Paging annotations are always asked for, whatever
//! `includeAnnotations` says, so that no page is missed.

use crate::actions::action::Action;
use crate::actions::controls;
use crate::batch;
use crate::catalog::def::{ActionDef, InputType, input};
use crate::client::Session;
use crate::error::{ConnectorError, Result};
use crate::fetchxml::{self, FetchXml, NextPage, Transport};
use crate::http::Method;
use crate::inputs::Inputs;
use crate::odata;
use crate::page::{self, Follow, Next, Output, RawRecords};
use crate::types::EntitySet;
use serde_json::{Map, Value, json};

// Input keys, each written once: the definitions and `run` use these.
const ENTITY_TYPE: &str = "entityType";
const FETCH_XML: &str = "fetchXml";
const INCLUDE_ANNOTATIONS: &str = "includeAnnotations";
const FETCH_ALL: &str = "fetchAll";
const PAGE_NUMBER: &str = "pageNumber";
const NEXT_PAGE: &str = "nextPage";

/// The controls a FetchXML query takes: who runs it, and the session token
/// of an elastic table's write (the URL is built by the query's paging, so
/// partitions are named in the query's own filter).
const CONTROLS: &[&str] = &[
    crate::controls::IMPERSONATE_USER_ID,
    crate::controls::IMPERSONATION_HEADER,
    crate::controls::SESSION_TOKEN,
];

/// The annotations paging needs (reference §4).
const PAGING_ANNOTATIONS: &str =
    "Microsoft.Dynamics.CRM.fetchxmlpagingcookie,Microsoft.Dynamics.CRM.morerecords";

pub const RUN_FETCH_XML: Action = Action {
    def: ActionDef {
        key: "runFetchXml",
        label: "Run Fetch XML Query",
        description: "Runs a FetchXML query (GET {entityType}?fetchXml=…, or inside $batch when the URL would pass 32 KB). One page at a time (pageNumber or nextPage) or every page (fetchAll), each record once. Aggregate queries return their rows as Dataverse shapes them.",
        deprecated: false,
        input_defs: || {
            vec![
                {
                    let text = "The entity set name (plural), e.g. accounts; the <entity name> in the query is the logical name of the same table (account).";
                    input(ENTITY_TYPE, "Entity Type", InputType::String, text)
                        .required()
                        .example(json!("accounts"))
                },
                {
                    let text = "The FetchXML query, <fetch> root with one <entity>. Its count attribute is the page size (Dataverse's default and maximum: 5000); page and paging-cookie are set by this action.";
                    input(FETCH_XML, "XML Query", InputType::Code, text).required().example(json!("<fetch count=\"500\"><entity name=\"account\"><attribute name=\"name\"/><order attribute=\"name\"/></entity></fetch>"))
                },
                input(
                    INCLUDE_ANNOTATIONS,
                    "Include Annotations",
                    InputType::String,
                    "Prefer odata.include-annotations value, e.g. OData.Community.Display.V1.FormattedValue (display text of choices, money, dates and lookups), Microsoft.Dynamics.CRM.lookuplogicalname, or * for all. The paging annotations are always asked for as well.",
                ),
                {
                    let text = "Follow the paging cookie to the last page and return every record once, in order. At most 127 MiB of records in one answer: past that, an error asks for fewer attributes or rows.";
                    input(FETCH_ALL, "Fetch All", InputType::Boolean, text).default(json!(false))
                },
                {
                    let text = "The page to read (1-based), by page number alone. Paging by the nextPage of the previous page is faster on large tables. With fetchAll, the page to start from.";
                    input(PAGE_NUMBER, "Page Number", InputType::Integer, text)
                        .range(1, i64::from(u32::MAX))
                },
                input(
                    NEXT_PAGE,
                    "Next Page ID",
                    InputType::String,
                    "The nextPage value an earlier call returned (page number and paging cookie), to read the following page. Wins over Page Number. Dataverse's raw @Microsoft.Dynamics.CRM.fetchxmlpagingcookie value is accepted too.",
                ),
            ]
            .into_iter()
            .chain(controls::inputs(CONTROLS))
            .collect()
        },
    },
    run: run_fetch_xml,
};

/// The `Prefer` value: the user's annotations plus the paging ones.
fn prefer_value(annotations: Option<&str>) -> String {
    let list = match annotations {
        Some(a) if a.split(',').any(|x| x.trim() == "*") => "*".to_string(),
        Some(a) => format!("{a},{PAGING_ANNOTATIONS}"),
        None => PAGING_ANNOTATIONS.to_string(),
    };
    odata::prefer_header(None, Some(&list)).unwrap_or_default()
}

fn run_fetch_xml(session: &mut Session<'_>, inputs: &Inputs) -> Result<Output> {
    let set = EntitySet::parse(ENTITY_TYPE, inputs.expect_str(ENTITY_TYPE)?)?;
    let query = FetchXml::parse(inputs.expect_str(FETCH_XML)?)?;
    let annotations = match inputs.str(INCLUDE_ANNOTATIONS)? {
        Some(a) => odata::parse_annotations(INCLUDE_ANNOTATIONS, a)?,
        None => None,
    };
    let mut headers = vec![("Prefer".to_string(), prefer_value(annotations.as_deref()))];
    for (name, value) in controls::of(inputs, CONTROLS)?.headers {
        headers.push((name.to_string(), value));
    }
    let fetch_all = inputs.bool(FETCH_ALL)?;
    let start = match inputs.str(NEXT_PAGE)?.filter(|s| !s.trim().is_empty()) {
        Some(token) => NextPage::parse_token(NEXT_PAGE, token)?,
        None => NextPage {
            page: match inputs.u64(PAGE_NUMBER)? {
                Some(n) => u32::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
                    ConnectorError::invalid_input(PAGE_NUMBER, "must be 1 or more")
                })?,
                None => query.page().unwrap_or(1),
            },
            cookie: None,
        },
    };
    // `top` and paging do not combine (Dataverse's rule): one request.
    let single_shot = query.top().is_some();

    let records = RawRecords::new(
        FETCH_ALL,
        "Ask for less per call: fewer <attribute> elements, a narrower <filter>, or page by page (nextPage) instead of fetchAll.",
    );
    let follow = if fetch_all {
        Follow::All
    } else {
        Follow::OnePage
    };
    let mut transports = Vec::new();
    let mut first_body: Option<Value> = None;
    let paged = page::read_pages(
        session,
        records,
        start.clone(),
        follow,
        "a FetchXML query",
        "paging cookie",
        |session, current: &NextPage| {
            let paging = if single_shot {
                fetchxml::Paging {
                    page: None,
                    count: query.count(),
                    cookie: None,
                }
            } else {
                current.paging(query.count())
            };
            let xml = query.rewrite(&paging)?;
            let (transport, response) = send_page(session, &set, &xml, &headers)?;
            if !transports.contains(&transport) {
                transports.push(transport);
            }
            Ok(response)
        },
        |_, current, page, records| {
            for record in &page.records {
                records.push(record)?;
            }
            // The paging annotations (a few small values) are all that is kept.
            let body = Value::Object(page.annotations.clone());
            let next = if single_shot {
                None
            } else {
                NextPage::from_response(current.page, &body)?
            };
            if first_body.is_none() {
                first_body = Some(body);
            }
            Ok(match next {
                Some(next) => {
                    let mark = next.token();
                    Next::Page { cursor: next, mark }
                }
                None => Next::Done,
            })
        },
    )?;
    let records = paged.records;
    let next = paged.next.map(|(next, _)| next);
    let mut out = Map::new();
    out.insert("count".into(), Value::from(records.len()));
    out.insert("pageNumber".into(), Value::from(start.page));
    out.insert("pages".into(), Value::from(paged.pages));
    out.insert("moreRecords".into(), Value::from(next.is_some()));
    out.insert(
        "nextPage".into(),
        next.as_ref()
            .map_or(Value::Null, |n| Value::from(n.token())),
    );
    let via = if transports.contains(&Transport::Batch) {
        "batch"
    } else {
        "get"
    };
    out.insert("sentVia".into(), Value::from(via));
    if let Some(body) = first_body {
        for key in [
            "@Microsoft.Dynamics.CRM.totalrecordcount",
            "@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded",
        ] {
            if let Some(v) = body.get(key) {
                out.insert(key.into(), v.clone());
            }
        }
    }
    Ok(Output::Collection {
        envelope: out,
        key: "value",
        records,
    })
}

/// Sends one page, as a GET or (for long URLs) a GET inside `$batch`, and
/// returns the (inner) response.
fn send_page(
    session: &mut Session<'_>,
    set: &EntitySet,
    xml: &str,
    headers: &[(String, String)],
) -> Result<(Transport, crate::http::Response)> {
    let root = session.web_api().service_root().clone();
    let (transport, path) = fetchxml::plan(root.as_str(), set.as_str(), xml)?;
    match transport {
        Transport::Get => {
            let mut request = session.request(Method::Get, &path)?;
            for (k, v) in headers {
                request = request.header(k, v.clone());
            }
            Ok((transport, session.send_ok(request)?))
        }
        Transport::Batch => {
            let mut inner = vec![("Accept".to_string(), "application/json".to_string())];
            inner.extend(headers.iter().cloned());
            let encoded = batch::encode(&fetchxml::batch_parts(root.path(), &path, inner));
            let mut request = session
                .request(Method::Post, "$batch")?
                .header("Content-Type", encoded.content_type);
            request.body = encoded.body;
            let response = session.send(request)?;
            let content_type = response.header("Content-Type").unwrap_or("").to_string();
            let parts = match batch::decode(&content_type, &response.body) {
                Ok(parts) => parts,
                Err(_) if !response.is_success() => {
                    return Err(ConnectorError::from_web_api(
                        response.status,
                        response.retry_after(),
                        &response.body,
                    ));
                }
                Err(e) => return Err(e),
            };
            let part = parts.into_iter().next().ok_or_else(|| {
                ConnectorError::transport("the $batch answer to a FetchXML query has no part")
            })?;
            if let Some(e) = part.error() {
                return Err(e);
            }
            let page = crate::http::Response {
                status: part.status,
                headers: part
                    .headers()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                body: part.body,
            };
            Ok((transport, page))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_always_asks_for_paging_annotations() {
        assert_eq!(
            prefer_value(None),
            format!("odata.include-annotations=\"{PAGING_ANNOTATIONS}\"")
        );
        assert_eq!(
            prefer_value(Some("OData.Community.Display.V1.FormattedValue")),
            format!(
                "odata.include-annotations=\"OData.Community.Display.V1.FormattedValue,{PAGING_ANNOTATIONS}\""
            )
        );
        assert_eq!(
            prefer_value(Some("*")),
            "odata.include-annotations=\"*\"".to_string()
        );
    }
}
