//! Outbound webhooks, as Dataverse sends them: service endpoints
//! (`serviceendpoint` rows with `contract = 8`) with an authentication mode,
//! steps (`sdkmessageprocessingstep`) that bind a message and table to an
//! endpoint, and, on each matching write, a POST of a serialized
//! `RemoteExecutionContext` (wire reference §8).
//!
//! How the record store uses it: inside its write path (under the state
//! lock) it calls [`super::State::queue_webhooks`] with a [`Write`];
//! [`super::Emulator::handle`] sends what was queued once the lock is
//! released — synchronous steps before the response goes out, asynchronous
//! ones in the background. Tests and tools can also call
//! [`super::Emulator::fire_webhooks`], which sends and waits for everything.
//!
//! Delivery (§8.4): only the status is read; non-2xx is a failure, except
//! 502/503/504 which are retried once; 60 s timeout. Not emulated: a failed
//! synchronous step does not roll the write back, and failed asynchronous
//! deliveries are not written to `asyncoperation` (System Jobs); both are in
//! [`Webhooks::deliveries`] instead. Registrations come from two places:
//! the Rust API ([`Webhooks::register_endpoint`], for tests and tools), and
//! the Web API (`POST serviceendpoints`, `sdkmessageprocessingsteps`,
//! `sdkmessageprocessingstepimages`: rows of the record store, read back
//! into [`ServiceEndpoint`]s and [`Step`]s by `webapi/registration.rs`).

use super::data::Directory;
use super::dates::iso_to_millis;
use super::store::new_guid;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Map, Value, json};
use std::time::Duration;

/// `serviceendpoint.contract` for a webhook.
pub const CONTRACT_WEBHOOK: i32 = 8;
/// Above this many bytes Dataverse strips the payload (§8.3).
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

const XRM: &str = "http://schemas.microsoft.com/xrm/2011/Contracts";

/// The messages the emulator raises events for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    Create,
    Update,
    Delete,
    /// A custom API or action the emulator executes (its message name, as
    /// in `sdkmessage.name`); the Target is a reference to the bound row.
    Custom(&'static str),
}

impl Message {
    pub fn name(self) -> &'static str {
        match self {
            Message::Create => "Create",
            Message::Update => "Update",
            Message::Delete => "Delete",
            Message::Custom(name) => name,
        }
    }
}

/// Pipeline stage of a step (`stage` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    PreValidation = 10,
    PreOperation = 20,
    PostOperation = 40,
}

/// Execution mode of a step (`mode` column). Dataverse allows asynchronous
/// only in post-operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Synchronous = 0,
    Asynchronous = 1,
}

/// How the endpoint authenticates what Dataverse sends (§8.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAuth {
    /// `?code=<key>` (the Azure Functions convention).
    WebhookKey(String),
    /// These headers on every request.
    HttpHeader(Vec<(String, String)>),
    /// These query parameters on every request.
    HttpQueryString(Vec<(String, String)>),
}

impl WebhookAuth {
    /// `serviceendpoint.authtype` (4/5/6; UNCONFIRMED in the reference).
    pub fn authtype(&self) -> i32 {
        match self {
            WebhookAuth::WebhookKey(_) => 4,
            WebhookAuth::HttpHeader(_) => 5,
            WebhookAuth::HttpQueryString(_) => 6,
        }
    }
}

/// A registered webhook (`serviceendpoint`, contract 8).
#[derive(Debug, Clone)]
pub struct ServiceEndpoint {
    pub id: String,
    pub name: String,
    /// The URL as registered, without authentication parameters.
    pub url: url::Url,
    /// Write-only in Dataverse (`authvalue` cannot be read back).
    pub auth: WebhookAuth,
}

/// What a step binds an endpoint to.
#[derive(Debug, Clone)]
pub struct StepRegistration {
    pub message: Message,
    /// The table's logical name, e.g. `contact`.
    pub entity: String,
    pub stage: Stage,
    pub mode: Mode,
    /// Update only: fire only when one of these columns is set (empty: any).
    pub filtering_attributes: Vec<String>,
    /// Name of a pre-image (`PreImage` by convention); not for Create.
    pub pre_image: Option<String>,
    /// Name of a post-image; post-operation only, not for Delete.
    pub post_image: Option<String>,
    /// The columns of each image (`sdkmessageprocessingstepimage.attributes`);
    /// empty: every column.
    pub pre_image_attributes: Vec<String>,
    pub post_image_attributes: Vec<String>,
    /// The step's impersonating user (`impersonatinguserid`): the context's
    /// `UserId` (the caller stays `InitiatingUserId`).
    pub run_as: Option<String>,
}

impl StepRegistration {
    /// A post-operation asynchronous step without images, the usual choice.
    pub fn new(message: Message, entity: &str) -> Self {
        StepRegistration {
            message,
            entity: entity.to_string(),
            stage: Stage::PostOperation,
            mode: Mode::Asynchronous,
            filtering_attributes: Vec::new(),
            pre_image: None,
            post_image: None,
            pre_image_attributes: Vec::new(),
            post_image_attributes: Vec::new(),
            run_as: None,
        }
    }
}

/// A registered step (`sdkmessageprocessingstep`).
#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub endpoint_id: String,
    pub registration: StepRegistration,
}

/// One write, as the record store reports it. Attribute maps are Web API
/// JSON (`{"firstname": "Ana", "_parentcustomerid_value": "…",
/// "_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname":
/// "account", "createdon": "2025-01-01T00:00:00Z"}`); values already in WCF
/// form (objects with `__type`, e.g. Money or OptionSetValue) pass through.
#[derive(Debug, Clone)]
pub struct Write<'a> {
    pub message: Message,
    pub entity: &'a str,
    pub record_id: &'a str,
    /// The columns the request set (the Target); ignored for Delete. For a
    /// [`Message::Custom`], the action's parameters (other than Target).
    pub attributes: &'a Map<String, Value>,
    /// The row before the write (Update, Delete).
    pub pre_image: Option<&'a Map<String, Value>>,
    /// The row after the write (Create, Update).
    pub post_image: Option<&'a Map<String, Value>>,
    /// The calling user (`systemuserid`).
    pub user_id: &'a str,
}

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub endpoint_id: String,
    pub step_id: String,
    pub mode: Mode,
    /// The registered URL (for logs: no authentication parameters).
    pub registered_url: String,
    /// The URL actually requested (with `code` or the query parameters).
    url: url::Url,
    pub headers: Vec<(String, String)>,
    /// The RemoteExecutionContext as sent.
    pub context: Value,
}

/// What happened to one delivery.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub endpoint_id: String,
    pub step_id: String,
    pub registered_url: String,
    /// Status of the last attempt, when there was an answer.
    pub status: Option<u16>,
    /// 1, or 2 after a retried 502/503/504.
    pub attempts: u32,
    /// Transport error or timeout of the last attempt.
    pub error: Option<String>,
    pub headers: Vec<(String, String)>,
    pub context: Value,
}

impl DeliveryRecord {
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Registrations, queued deliveries and the delivery log.
#[derive(Debug, Clone)]
pub struct Webhooks {
    pub endpoints: Vec<ServiceEndpoint>,
    pub steps: Vec<Step>,
    /// Sent as `x-ms-dynamics-organization`.
    pub organization_host: String,
    /// Per attempt; Dataverse waits 60 s.
    pub timeout: Duration,
    pending: Vec<Delivery>,
    deliveries: Vec<DeliveryRecord>,
    /// `serviceendpoint.authvalue` of endpoints registered through the Web
    /// API, by endpoint id: write-only, so it is kept apart from the rows.
    pub auth_values: std::collections::HashMap<String, String>,
}

impl Webhooks {
    pub fn new(organization_host: &str) -> Self {
        Webhooks {
            endpoints: Vec::new(),
            steps: Vec::new(),
            organization_host: organization_host.to_string(),
            timeout: Duration::from_secs(60),
            pending: Vec::new(),
            deliveries: Vec::new(),
            auth_values: std::collections::HashMap::new(),
        }
    }

    /// Registers a webhook service endpoint; returns its id. Dataverse
    /// requires an absolute http(s) URL.
    pub fn register_endpoint(
        &mut self,
        name: &str,
        url: &str,
        auth: WebhookAuth,
    ) -> Result<String, String> {
        let url = url::Url::parse(url).map_err(|e| format!("invalid webhook URL '{url}': {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("the webhook URL must be http(s), got {url}"));
        }
        let id = new_guid();
        self.endpoints.push(ServiceEndpoint {
            id: id.clone(),
            name: name.to_string(),
            url,
            auth,
        });
        Ok(id)
    }

    /// Registers a step on an endpoint; returns its id. Refuses the
    /// combinations Dataverse refuses (asynchronous before post-operation,
    /// a pre-image on Create, a post-image on Delete or before
    /// post-operation).
    pub fn register_step(
        &mut self,
        endpoint_id: &str,
        registration: StepRegistration,
    ) -> Result<String, String> {
        if !self.endpoints.iter().any(|e| e.id == endpoint_id) {
            return Err(format!("no service endpoint {endpoint_id}"));
        }
        let r = &registration;
        if r.mode == Mode::Asynchronous && r.stage != Stage::PostOperation {
            return Err("asynchronous steps must be registered in PostOperation".into());
        }
        if r.pre_image.is_some() && r.message == Message::Create {
            return Err("Create has no pre-image".into());
        }
        if r.post_image.is_some()
            && (r.message == Message::Delete || r.stage != Stage::PostOperation)
        {
            return Err("post-images exist only in PostOperation and not for Delete".into());
        }
        let id = new_guid();
        self.steps.push(Step {
            id: id.clone(),
            endpoint_id: endpoint_id.to_string(),
            registration,
        });
        Ok(id)
    }

    /// Builds the deliveries for one write and queues them; returns how many.
    pub fn on_write(&mut self, directory: &Directory, now_ms: i64, write: &Write<'_>) -> usize {
        self.on_write_with(directory, now_ms, write, &[], &[])
    }

    /// [`Self::on_write`] with registrations made through the Web API as
    /// well (`endpoints`, `steps`: read from the record store).
    pub fn on_write_with(
        &mut self,
        directory: &Directory,
        now_ms: i64,
        write: &Write<'_>,
        endpoints: &[ServiceEndpoint],
        steps: &[Step],
    ) -> usize {
        let mut deliveries = self.build(directory, now_ms, write);
        deliveries.extend(self.build_for(directory, now_ms, write, endpoints, steps));
        let n = deliveries.len();
        self.pending.extend(deliveries);
        n
    }

    /// The queued deliveries, removing them from the queue.
    pub fn take_pending(&mut self) -> Vec<Delivery> {
        std::mem::take(&mut self.pending)
    }

    /// Every delivery made so far, in completion order.
    pub fn deliveries(&self) -> &[DeliveryRecord] {
        &self.deliveries
    }

    pub fn record(&mut self, record: DeliveryRecord) {
        self.deliveries.push(record);
    }

    /// The deliveries one write causes, one per matching step, in
    /// registration order.
    pub fn build(&self, directory: &Directory, now_ms: i64, write: &Write<'_>) -> Vec<Delivery> {
        self.build_for(directory, now_ms, write, &self.endpoints, &self.steps)
    }

    fn build_for(
        &self,
        directory: &Directory,
        now_ms: i64,
        write: &Write<'_>,
        endpoints: &[ServiceEndpoint],
        steps: &[Step],
    ) -> Vec<Delivery> {
        steps
            .iter()
            .filter(|s| matches(&s.registration, write))
            .filter_map(|step| {
                let endpoint = endpoints.iter().find(|e| e.id == step.endpoint_id)?;
                Some(self.delivery(directory, now_ms, endpoint, step, write))
            })
            .collect()
    }

    fn delivery(
        &self,
        directory: &Directory,
        now_ms: i64,
        endpoint: &ServiceEndpoint,
        step: &Step,
        write: &Write<'_>,
    ) -> Delivery {
        let correlation_id = new_guid();
        let mut context = remote_execution_context(directory, now_ms, step, write, &correlation_id);
        let mut headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            (
                "x-ms-dynamics-organization".to_string(),
                self.organization_host.clone(),
            ),
            (
                "x-ms-dynamics-entity-name".to_string(),
                write.entity.to_string(),
            ),
            (
                "x-ms-dynamics-request-name".to_string(),
                write.message.name().to_string(),
            ),
            ("x-ms-correlation-request-id".to_string(), correlation_id),
        ];
        if context.to_string().len() > MAX_PAYLOAD_BYTES {
            // §8.3: these go; what remains identifies the operation.
            // UNCONFIRMED whether Dataverse sends them empty or drops them.
            for key in ["InputParameters", "PreEntityImages", "PostEntityImages"] {
                context[key] = json!([]);
            }
            context["ParentContext"] = Value::Null;
            headers.push((
                "x-ms-dynamics-msg-size-exceeded".to_string(),
                "true".to_string(),
            ));
        }
        let mut url = endpoint.url.clone();
        match &endpoint.auth {
            WebhookAuth::WebhookKey(key) => {
                url.query_pairs_mut().append_pair("code", key);
            }
            WebhookAuth::HttpQueryString(pairs) => {
                let mut q = url.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
            }
            WebhookAuth::HttpHeader(pairs) => headers.extend(pairs.iter().cloned()),
        }
        Delivery {
            endpoint_id: endpoint.id.clone(),
            step_id: step.id.clone(),
            mode: step.registration.mode,
            registered_url: endpoint.url.to_string(),
            url,
            headers,
            context,
        }
    }
}

fn matches(step: &StepRegistration, write: &Write<'_>) -> bool {
    step.message == write.message
        && step.entity.eq_ignore_ascii_case(write.entity)
        && (write.message != Message::Update
            || step.filtering_attributes.is_empty()
            || step
                .filtering_attributes
                .iter()
                .any(|a| write.attributes.contains_key(a.as_str())))
}

/// The body Dataverse POSTs, shaped as §8.3.
pub fn remote_execution_context(
    directory: &Directory,
    now_ms: i64,
    step: &Step,
    write: &Write<'_>,
    correlation_id: &str,
) -> Value {
    let r = &step.registration;
    let business_unit = directory
        .user(write.user_id)
        .map(|u| u.business_unit)
        .unwrap_or(super::data::ROOT_BU);
    let target = match write.message {
        Message::Delete | Message::Custom(_) => entity_reference(write.entity, write.record_id),
        Message::Create | Message::Update => {
            let mut attributes = write.attributes.clone();
            let id_attr = format!("{}id", write.entity);
            attributes
                .entry(id_attr)
                .or_insert_with(|| json!(write.record_id));
            entity(write.entity, write.record_id, &attributes)
        }
    };
    let output_parameters = if write.message == Message::Create && r.stage == Stage::PostOperation {
        json!([{"key": "id", "value": write.record_id}])
    } else {
        json!([])
    };
    // An image holds the registered columns only (all when none are
    // listed), as `sdkmessageprocessingstepimage.attributes` says.
    let image = |name: &Option<String>, columns: &[String], row: Option<&Map<String, Value>>| match (
        name, row,
    ) {
        (Some(name), Some(row)) => {
            let row: Map<String, Value> = if columns.is_empty() {
                row.clone()
            } else {
                row.iter()
                    .filter(|(k, _)| {
                        let base = k.split('@').next().unwrap_or(k);
                        columns
                            .iter()
                            .any(|c| c == base || format!("_{c}_value") == base)
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            json!([{"key": name, "value": entity(write.entity, write.record_id, &row)}])
        }
        _ => json!([]),
    };
    let pre_images = if write.message == Message::Create {
        json!([])
    } else {
        image(&r.pre_image, &r.pre_image_attributes, write.pre_image)
    };
    let post_images = if write.message == Message::Delete || r.stage != Stage::PostOperation {
        json!([])
    } else {
        image(&r.post_image, &r.post_image_attributes, write.post_image)
    };
    let mut input_parameters = vec![json!({"key": "Target", "value": target})];
    if let Message::Custom(_) = write.message {
        for (k, v) in write.attributes {
            input_parameters.push(json!({"key": k, "value": v}));
        }
    }
    let user_id = r.run_as.as_deref().unwrap_or(write.user_id);
    json!({
        "BusinessUnitId": business_unit,
        "CorrelationId": correlation_id,
        "Depth": 1,
        "InitiatingUserId": write.user_id,
        "InputParameters": input_parameters,
        "IsExecutingOffline": false,
        "IsInTransaction": r.mode == Mode::Synchronous && r.stage != Stage::PreValidation,
        "IsOfflinePlayback": false,
        "IsolationMode": 1,
        "MessageName": write.message.name(),
        "Mode": r.mode as i32,
        "OperationCreatedOn": format!("/Date({now_ms}-0000)/"),
        "OperationId": new_guid(),
        "OrganizationId": directory.organization_id,
        "OrganizationName": directory.organization_name,
        "OutputParameters": output_parameters,
        "OwningExtension": {
            "Id": step.id, "KeyAttributes": [], "LogicalName": "sdkmessageprocessingstep",
            "Name": null, "RowVersion": null
        },
        "ParentContext": null,
        "PostEntityImages": post_images,
        "PreEntityImages": pre_images,
        "PrimaryEntityId": write.record_id,
        "PrimaryEntityName": write.entity,
        "RequestId": if r.mode == Mode::Synchronous { json!(new_guid()) } else { Value::Null },
        "SecondaryEntityName": "none",
        "SharedVariables": [],
        "Stage": r.stage as i32,
        "UserId": user_id,
    })
}

fn entity_reference(logical_name: &str, id: &str) -> Value {
    json!({
        "__type": format!("EntityReference:{XRM}"),
        "Id": id, "KeyAttributes": [], "LogicalName": logical_name, "Name": null, "RowVersion": null
    })
}

fn entity(logical_name: &str, id: &str, attributes: &Map<String, Value>) -> Value {
    json!({
        "__type": format!("Entity:{XRM}"),
        "Attributes": wcf_attributes(attributes),
        "EntityState": null,
        "FormattedValues": [],
        "Id": id,
        "KeyAttributes": [],
        "LogicalName": logical_name,
        "RelatedEntities": [],
        "RowVersion": null,
    })
}

/// Web API JSON → the WCF key/value list: annotations dropped, lookups
/// (`_x_value` + its lookuplogicalname annotation) as EntityReference under
/// `x`, ISO-8601 UTC dates as `/Date(ms)/`.
pub fn wcf_attributes(attributes: &Map<String, Value>) -> Value {
    let mut out = Vec::new();
    for (key, value) in attributes {
        if key.contains('@') {
            continue;
        }
        if let Some(name) = key.strip_prefix('_').and_then(|k| k.strip_suffix("_value")) {
            let annotation = |a: &str| attributes.get(&format!("{key}@{a}")).cloned();
            let wcf = match value {
                Value::String(id) => json!({
                    "__type": format!("EntityReference:{XRM}"),
                    "Id": id,
                    "KeyAttributes": [],
                    "LogicalName": annotation("Microsoft.Dynamics.CRM.lookuplogicalname").unwrap_or(Value::Null),
                    "Name": annotation("OData.Community.Display.V1.FormattedValue").unwrap_or(Value::Null),
                    "RowVersion": null,
                }),
                _ => Value::Null,
            };
            out.push(json!({"key": name, "value": wcf}));
            continue;
        }
        let wcf = match value {
            Value::String(s) => match iso_to_millis(s) {
                Some(ms) => json!(format!("/Date({ms})/")),
                None => value.clone(),
            },
            _ => value.clone(),
        };
        out.push(json!({"key": key, "value": wcf}));
    }
    Value::Array(out)
}

/// Sends one delivery: POST, 60 s timeout per attempt, one retry on
/// 502/503/504. Plain HTTP only (the emulator's receivers are on loopback).
pub async fn send(delivery: &Delivery, timeout: Duration) -> DeliveryRecord {
    let mut record = DeliveryRecord {
        endpoint_id: delivery.endpoint_id.clone(),
        step_id: delivery.step_id.clone(),
        registered_url: delivery.registered_url.clone(),
        status: None,
        attempts: 0,
        error: None,
        headers: delivery.headers.clone(),
        context: delivery.context.clone(),
    };
    let body = Bytes::from(delivery.context.to_string());
    for _ in 0..2 {
        record.attempts += 1;
        match tokio::time::timeout(
            timeout,
            post(&delivery.url, &delivery.headers, body.clone()),
        )
        .await
        {
            Ok(Ok(status)) => {
                record.status = Some(status);
                record.error = None;
                if !matches!(status, 502..=504) {
                    break;
                }
            }
            Ok(Err(e)) => {
                record.status = None;
                record.error = Some(e);
                break;
            }
            Err(_) => {
                record.status = None;
                record.error = Some(format!("no answer within {} s", timeout.as_secs()));
                break;
            }
        }
    }
    record
}

async fn post(url: &url::Url, headers: &[(String, String)], body: Bytes) -> Result<u16, String> {
    if url.scheme() != "http" {
        return Err(format!(
            "the emulator delivers over plain HTTP only, not {}",
            url.scheme()
        ));
    }
    let host = url.host_str().ok_or("the URL has no host")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(conn);
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let mut request = http::Request::post(target).header("Host", format!("{host}:{port}"));
    for (k, v) in headers {
        request = request.header(k, v);
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| format!("building the request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let status = response.status().as_u16();
    // Only the status matters; drain the body so the connection ends cleanly.
    let _ = response.into_body().collect().await;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write<'a>(attrs: &'a Map<String, Value>) -> Write<'a> {
        Write {
            message: Message::Create,
            entity: "contact",
            record_id: "0d6f0000-0000-0000-0000-000000000001",
            attributes: attrs,
            pre_image: None,
            post_image: Some(attrs),
            user_id: crate::emulator::data::USER_BEN,
        }
    }

    #[test]
    fn context_for_a_create_has_the_documented_shape() {
        let dir = Directory::seeded(0);
        let mut hooks = Webhooks::new("contoso.crm.dynamics.com");
        let ep = hooks
            .register_endpoint(
                "hook",
                "http://127.0.0.1:9/h?x=1",
                WebhookAuth::WebhookKey("k&y".into()),
            )
            .unwrap();
        let mut reg = StepRegistration::new(Message::Create, "contact");
        reg.post_image = Some("PostImage".into());
        hooks.register_step(&ep, reg).unwrap();
        hooks
            .register_step(&ep, StepRegistration::new(Message::Update, "contact"))
            .unwrap();
        let attrs: Map<String, Value> = serde_json::from_value(json!({
            "firstname": "Ana",
            "createdon": "2025-01-01T00:00:00Z",
            "_parentcustomerid_value": "00000000-0000-0000-0000-0000000000aa",
            "_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "account",
            "_parentcustomerid_value@OData.Community.Display.V1.FormattedValue": "Contoso",
        }))
        .unwrap();
        let d = hooks.build(&dir, 1_735_689_600_000, &write(&attrs));
        assert_eq!(d.len(), 1, "only the Create step matches");
        let d = &d[0];
        assert_eq!(d.url.as_str(), "http://127.0.0.1:9/h?x=1&code=k%26y");
        assert_eq!(d.registered_url, "http://127.0.0.1:9/h?x=1");
        let c = &d.context;
        assert_eq!(c["MessageName"], "Create");
        assert_eq!(c["Stage"], 40);
        assert_eq!(c["Mode"], 1);
        assert_eq!(c["BusinessUnitId"], crate::emulator::data::SALES_BU);
        assert_eq!(c["OperationCreatedOn"], "/Date(1735689600000-0000)/");
        assert_eq!(c["SecondaryEntityName"], "none");
        assert_eq!(
            c["OutputParameters"][0]["value"],
            "0d6f0000-0000-0000-0000-000000000001"
        );
        let target = &c["InputParameters"][0]["value"];
        assert_eq!(target["LogicalName"], "contact");
        let attrs = target["Attributes"].as_array().unwrap();
        let get = |k: &str| {
            attrs
                .iter()
                .find(|a| a["key"] == k)
                .map(|a| a["value"].clone())
        };
        assert_eq!(get("createdon"), Some(json!("/Date(1735689600000)/")));
        assert_eq!(
            get("contactid"),
            Some(json!("0d6f0000-0000-0000-0000-000000000001"))
        );
        let parent = get("parentcustomerid").unwrap();
        assert_eq!(parent["LogicalName"], "account");
        assert_eq!(parent["Name"], "Contoso");
        assert!(
            attrs
                .iter()
                .all(|a| !a["key"].as_str().unwrap().contains('@'))
        );
        assert_eq!(c["PostEntityImages"][0]["key"], "PostImage");
        assert_eq!(c["PreEntityImages"], json!([]));
        let header = |n: &str| {
            d.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("x-ms-dynamics-request-name"), Some("Create"));
        assert_eq!(header("x-ms-dynamics-entity-name"), Some("contact"));
        assert_eq!(
            header("x-ms-dynamics-organization"),
            Some("contoso.crm.dynamics.com")
        );
        assert_eq!(
            header("x-ms-correlation-request-id"),
            c["CorrelationId"].as_str()
        );
    }

    #[test]
    fn registration_rules_and_filters() {
        let mut hooks = Webhooks::new("o");
        assert!(
            hooks
                .register_endpoint("x", "not a url", WebhookAuth::WebhookKey("k".into()))
                .is_err()
        );
        let ep = hooks
            .register_endpoint(
                "x",
                "http://h/",
                WebhookAuth::HttpHeader(vec![("X-Key".into(), "v".into())]),
            )
            .unwrap();
        let mut bad = StepRegistration::new(Message::Create, "contact");
        bad.pre_image = Some("PreImage".into());
        assert!(hooks.register_step(&ep, bad).is_err());
        let mut bad = StepRegistration::new(Message::Update, "contact");
        bad.stage = Stage::PreOperation;
        assert!(hooks.register_step(&ep, bad).is_err(), "async pre-op");
        assert!(
            hooks
                .register_step("nope", StepRegistration::new(Message::Create, "contact"))
                .is_err()
        );
        let mut upd = StepRegistration::new(Message::Update, "contact");
        upd.filtering_attributes = vec!["lastname".into()];
        hooks.register_step(&ep, upd).unwrap();
        let dir = Directory::seeded(0);
        let first: Map<String, Value> = serde_json::from_value(json!({"firstname": "A"})).unwrap();
        let last: Map<String, Value> = serde_json::from_value(json!({"lastname": "B"})).unwrap();
        let mut w = write(&first);
        w.message = Message::Update;
        assert_eq!(hooks.build(&dir, 0, &w).len(), 0);
        w.attributes = &last;
        let d = hooks.build(&dir, 0, &w);
        assert_eq!(d.len(), 1);
        assert!(d[0].headers.contains(&("X-Key".into(), "v".into())));
    }

    #[test]
    fn oversized_payloads_are_stripped_and_flagged() {
        let dir = Directory::seeded(0);
        let mut hooks = Webhooks::new("o");
        let ep = hooks
            .register_endpoint(
                "x",
                "http://h/",
                WebhookAuth::HttpQueryString(vec![("a".into(), "b".into())]),
            )
            .unwrap();
        hooks
            .register_step(&ep, StepRegistration::new(Message::Create, "note"))
            .unwrap();
        let attrs: Map<String, Value> =
            serde_json::from_value(json!({"documentbody": "x".repeat(MAX_PAYLOAD_BYTES)})).unwrap();
        let mut w = write(&attrs);
        w.entity = "note";
        let d = hooks.build(&dir, 0, &w);
        assert_eq!(d[0].context["InputParameters"], json!([]));
        assert!(
            d[0].headers
                .contains(&("x-ms-dynamics-msg-size-exceeded".into(), "true".into()))
        );
        assert_eq!(d[0].url.query(), Some("a=b"));
    }
}
