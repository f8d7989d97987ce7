//! The webhook trigger's lifecycle: `subscribe` registers what Dataverse
//! needs to send the trigger's events (one `serviceendpoint`, one
//! `sdkmessageprocessingstep` per message, their
//! `sdkmessageprocessingstepimage`s), `check` says whether it is all still
//! there, `unsubscribe` removes it. Everything goes through the Web API, as
//! "Register a WebHook" and "Use webhooks to create external handlers for
//! server events" describe it (Microsoft Learn,
//! power-apps/developer/data-platform/register-web-hook and use-webhooks):
//! the endpoint is a `serviceendpoint` with contract 8 (Webhook),
//! authtype 4 (WebhookKey, the key in `authvalue`, sent back as `?code=`);
//! each step binds `sdkmessageid`, `sdkmessagefilterid` (the message on
//! the table), `eventhandler_serviceendpoint` and optionally
//! `impersonatinguserid`.
//!
//! Recognising its own rows: every row carries the subscription's name,
//! `d365-connector <hash of the callback URL>`; each step's name adds the
//! message, the table and a hash of what else shapes it (stage, filtering
//! columns, images, user). So subscribing again with the same callback URL
//! finds the endpoint, keeps the steps that are as asked, creates the ones
//! missing and, once that worked, removes its steps that are no longer
//! asked for: never two steps of one subscription for the same event. A
//! failure part-way removes what the call created and returns the first
//! error.
//!
//! The key is a secret: it goes only into the endpoint's `authvalue`
//! (write-only in Dataverse), never into the subscription record, an
//! output or an error.

use super::{
    ENTITY_NAME, FILTERING_ATTRIBUTES, MESSAGES, POST_IMAGE_ATTRIBUTES, PRE_IMAGE_ATTRIBUTES,
    RUN_AS_USER_ID, STAGE, STAGE_SYNC, WEBHOOK_KEY, definition,
};
use crate::client::Session;
use crate::connection::{ConnectionType, Settings, TokenState, is_loopback};
use crate::error::{ConnectorError, Result};
use crate::http::{Method, Platform};
use crate::inputs::Inputs;
use crate::secret;
use crate::types::{Guid, encode_query, is_identifier, string_literal};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// What every registered row's name starts with.
pub const NAME_PREFIX: &str = "d365-connector ";
/// Shorter keys are refused by `subscribe`: a webhook key is the only
/// thing between the callback URL and anyone who finds it.
pub const MIN_KEY_LEN: usize = 16;

/// What `subscribe` registered (the WIT `subscription` without the token
/// state).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    pub name: String,
    pub callback_url: String,
    pub endpoint_id: String,
    pub step_ids: Vec<String>,
    pub image_ids: Vec<String>,
    /// The inputs as JSON, without the key.
    pub inputs: String,
}

/// The validated inputs of a subscription.
#[derive(Debug, Clone)]
struct Plan {
    key: String,
    callback: url::Url,
    entity: String,
    messages: Vec<String>,
    filtering: Vec<String>,
    sync: bool,
    pre: Vec<String>,
    post: Vec<String>,
    run_as: Option<Guid>,
}

fn columns(inputs: &Inputs, key: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for c in inputs.list(key)? {
        let c = c.trim().to_ascii_lowercase();
        if !is_identifier(&c) {
            return Err(ConnectorError::invalid_input(
                key,
                format!("'{c}' is not a column logical name"),
            ));
        }
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

impl Plan {
    fn parse(inputs_json: &str, callback_url: &str) -> Result<Plan> {
        let def = definition();
        let inputs = Inputs::parse_for(def.key, &def.inputs, inputs_json)?;
        let callback = url::Url::parse(callback_url.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| {
                ConnectorError::invalid_input("callbackUrl", "must be an absolute http(s) URL")
            })?;
        if !callback.username().is_empty()
            || callback.password().is_some()
            || callback.fragment().is_some()
            || callback.query_pairs().any(|(k, _)| k == "code")
        {
            return Err(ConnectorError::invalid_input(
                "callbackUrl",
                "must carry no user, fragment or `code` parameter (Dataverse adds the key as `code`)",
            ));
        }
        let key = inputs.str(WEBHOOK_KEY)?.unwrap_or("").to_string();
        if key.is_empty() {
            if !is_loopback(callback.host_str().unwrap_or("")) {
                return Err(ConnectorError::invalid_input(
                    WEBHOOK_KEY,
                    "is required to subscribe a callback URL that is not on loopback: without it anyone could call the webhook",
                ));
            }
        } else if key.chars().count() < MIN_KEY_LEN || key.chars().any(char::is_control) {
            return Err(ConnectorError::invalid_input(
                WEBHOOK_KEY,
                format!(
                    "must be at least {MIN_KEY_LEN} characters, without control characters, to subscribe"
                ),
            ));
        }
        let entity = inputs
            .str(ENTITY_NAME)?
            .map(|e| e.trim().to_ascii_lowercase())
            .filter(|e| !e.is_empty())
            .ok_or_else(|| {
                ConnectorError::invalid_input(ENTITY_NAME, "is required to subscribe")
            })?;
        if !is_identifier(&entity) {
            return Err(ConnectorError::invalid_input(
                ENTITY_NAME,
                format!("'{entity}' is not a table logical name"),
            ));
        }
        let mut messages: Vec<String> = Vec::new();
        for m in inputs.list(MESSAGES)? {
            let m = m.trim();
            let canonical = ["Create", "Update", "Delete"]
                .into_iter()
                .find(|c| c.eq_ignore_ascii_case(m))
                .map_or_else(|| m.to_string(), str::to_string);
            if !is_identifier(&canonical) || canonical.len() > 256 {
                return Err(ConnectorError::invalid_input(
                    MESSAGES,
                    format!("'{m}' is not a message name"),
                ));
            }
            if !messages.iter().any(|x| x.eq_ignore_ascii_case(&canonical)) {
                messages.push(canonical);
            }
        }
        if messages.is_empty() {
            return Err(ConnectorError::invalid_input(
                MESSAGES,
                "must name at least one message (Create, Update, Delete, or a custom action) to subscribe",
            ));
        }
        let filtering = columns(&inputs, FILTERING_ATTRIBUTES)?;
        if !filtering.is_empty() && !messages.iter().any(|m| m == "Update") {
            return Err(ConnectorError::invalid_input(
                FILTERING_ATTRIBUTES,
                "applies to Update only, and messages has no Update",
            ));
        }
        let run_as = match inputs.str(RUN_AS_USER_ID)?.map(str::trim) {
            None | Some("") => None,
            Some(s) => Some(Guid::parse(s).ok_or_else(|| {
                ConnectorError::invalid_input(RUN_AS_USER_ID, "must be a systemuserid (GUID)")
            })?),
        };
        Ok(Plan {
            key,
            callback,
            entity,
            messages,
            filtering,
            sync: inputs.expect_str(STAGE)? == STAGE_SYNC,
            pre: columns(&inputs, PRE_IMAGE_ATTRIBUTES)?,
            post: columns(&inputs, POST_IMAGE_ATTRIBUTES)?,
            run_as,
        })
    }

    /// The inputs as the subscription keeps them: no key.
    fn inputs_json(&self) -> String {
        json!({
            ENTITY_NAME: self.entity,
            MESSAGES: self.messages,
            FILTERING_ATTRIBUTES: self.filtering,
            STAGE: if self.sync { STAGE_SYNC } else { super::STAGE_ASYNC },
            PRE_IMAGE_ATTRIBUTES: self.pre,
            POST_IMAGE_ATTRIBUTES: self.post,
            RUN_AS_USER_ID: self.run_as.as_ref().map(Guid::as_str),
        })
        .to_string()
    }

    fn name(&self) -> String {
        format!("{NAME_PREFIX}{}", hash(&[self.callback.as_str()]))
    }

    /// The images a step of `message` gets: (imagetype, alias, columns).
    /// An Update step whose events should say what changed gets both
    /// images with the filtering columns in them.
    fn images(&self, message: &str) -> Vec<(u8, &'static str, Vec<String>)> {
        let with_filtering = |cols: &[String]| {
            let mut all = cols.to_vec();
            for c in &self.filtering {
                if !all.contains(c) {
                    all.push(c.clone());
                }
            }
            all
        };
        let (pre, post) = match message {
            "Create" => (Vec::new(), self.post.clone()),
            "Update" => (with_filtering(&self.pre), with_filtering(&self.post)),
            "Delete" => (self.pre.clone(), Vec::new()),
            _ => (Vec::new(), Vec::new()),
        };
        let mut out = Vec::new();
        if !pre.is_empty() {
            out.push((0, "PreImage", pre));
        }
        if !post.is_empty() {
            out.push((1, "PostImage", post));
        }
        out
    }

    /// The name of the step for `message`: what it is, and a hash of every
    /// setting that shapes it, so a step made from other inputs never
    /// passes for this one.
    fn step_name(&self, name: &str, message: &str) -> String {
        let images = format!("{:?}", self.images(message));
        let filtering = if message == "Update" {
            self.filtering.join(",")
        } else {
            String::new()
        };
        let run_as = self.run_as.as_ref().map_or("", Guid::as_str);
        let settings = hash(&[
            &filtering,
            &images,
            run_as,
            if self.sync { "s" } else { "a" },
        ]);
        format!("{name}: {message} of {} #{settings}", self.entity)
    }
}

/// The first 8 bytes of the SHA-256 of `parts`, as hex.
fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A session for one lifecycle call.
fn session<'p>(
    platform: &'p mut dyn Platform,
    kind: ConnectionType,
    settings_json: &str,
    state: Option<TokenState>,
) -> Result<Session<'p>> {
    let settings = Settings::parse(kind, settings_json)?;
    if let Some(allowed) = &settings.allowed_operations
        && !allowed.iter().any(|a| a == "webhook")
    {
        return Err(ConnectorError::forbidden(
            "the webhook trigger's subscriptions are not in this connection's allowedOperations",
        )
        .with_hint("Add `webhook` to allowedOperations to let it register and remove webhooks."));
    }
    Ok(Session::new(platform, settings, state))
}

/// `GET set?$select=…&$filter=…` → the rows.
fn query(s: &mut Session<'_>, set: &str, select: &str, filter: &str) -> Result<Vec<Value>> {
    let relative = format!("{set}?$select={select}&$filter={}", encode_query(filter));
    let request = s.request(Method::Get, &relative)?;
    let mut body = s.send_json(request)?;
    match body.get_mut("value").map(Value::take) {
        Some(Value::Array(rows)) => Ok(rows),
        _ => Err(ConnectorError::transport(format!(
            "the answer to GET {set} has no `value` list"
        ))),
    }
}

fn id_field(row: &Value, field: &str) -> Option<String> {
    row.get(field)
        .and_then(Value::as_str)
        .and_then(Guid::parse)
        .map(Guid::into_string)
}

/// `POST set` → the new row's id (from `OData-EntityId`).
fn create(s: &mut Session<'_>, set: &str, body: &Value) -> Result<String> {
    let request = s.request(Method::Post, set)?.json_body(body);
    let response = s.send_ok(request)?;
    response
        .header("OData-EntityId")
        .and_then(|u| u.rsplit_once('(')?.1.split(')').next())
        .and_then(Guid::parse)
        .map(Guid::into_string)
        .ok_or_else(|| {
            ConnectorError::transport(format!(
                "POST {set} succeeded without an OData-EntityId naming the new row"
            ))
        })
}

/// `DELETE set(id)`; a row already gone is success.
fn delete(s: &mut Session<'_>, set: &str, id: &str) -> Result<()> {
    let request = s.request(Method::Delete, &format!("{set}({id})"))?;
    let response = s.send(request)?;
    if response.is_success() || response.status == 404 {
        Ok(())
    } else {
        Err(crate::client::answer_error(Method::Delete, &response))
    }
}

const ENDPOINTS: &str = "serviceendpoints";
const STEPS: &str = "sdkmessageprocessingsteps";
const IMAGES: &str = "sdkmessageprocessingstepimages";

/// What one `subscribe` call created, to remove again when it fails.
#[derive(Default)]
struct Created {
    /// Whether the endpoint was found (reused) rather than created.
    reused: bool,
    /// Whether the endpoint's POST was sent (its answer may be lost).
    posted: bool,
    endpoint: Option<String>,
    steps: Vec<String>,
    images: Vec<String>,
}

impl Created {
    /// Best effort; the caller reports the original error. An endpoint
    /// this call created goes with everything on it (deleting a
    /// serviceendpoint cascades to its steps, and a step to its images:
    /// the relationships' CascadeConfiguration, Learn's serviceendpoint
    /// and sdkmessageprocessingstep references), including a step whose
    /// POST was applied but whose answer was lost. When the endpoint's own
    /// POST may have been applied without an answer, it is looked up by
    /// its name. On a reused endpoint, the rows this call created go one
    /// by one.
    fn roll_back(&self, s: &mut Session<'_>, name: &str) {
        if self.reused {
            for id in self.images.iter().rev() {
                let _ = delete(s, IMAGES, id);
            }
            for id in self.steps.iter().rev() {
                let _ = delete(s, STEPS, id);
            }
            return;
        }
        let endpoints = match &self.endpoint {
            Some(id) => vec![id.clone()],
            None if !self.posted => Vec::new(),
            None => query(
                s,
                ENDPOINTS,
                "serviceendpointid",
                &format!("name eq {}", string_literal(name)),
            )
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| id_field(r, "serviceendpointid"))
                    .collect()
            })
            .unwrap_or_default(),
        };
        for id in endpoints {
            let _ = delete(s, ENDPOINTS, &id);
        }
    }
}

/// Registers the subscription (see the module documentation); returns it
/// and the new token state, if any.
pub fn subscribe(
    platform: &mut dyn Platform,
    kind: ConnectionType,
    settings_json: &str,
    state: Option<TokenState>,
    inputs_json: &str,
    callback_url: &str,
) -> Result<(Subscription, Option<TokenState>)> {
    let plan = Plan::parse(inputs_json, callback_url)?;
    let mut s = session(platform, kind, settings_json, state)?;
    let mut created = Created::default();
    let result = register(&mut s, &plan, &mut created);
    let result = result.map_err(|e| {
        created.roll_back(&mut s, &plan.name());
        e
    });
    // The key never leaves in an error, whatever a server echoed.
    let result = result.map_err(|e| secret::scrub_error(s.scrub(e), &[&plan.key]));
    result.map(|sub| (sub, s.into_new_state()))
}

/// The message ids, by name, and each one's filter on the table.
fn message_filters(s: &mut Session<'_>, plan: &Plan) -> Result<Vec<(String, String, String)>> {
    let names: Vec<String> = plan
        .messages
        .iter()
        .map(|m| format!("name eq {}", string_literal(m)))
        .collect();
    let found = query(s, "sdkmessages", "sdkmessageid,name", &names.join(" or "))?;
    let mut messages = Vec::new();
    for m in &plan.messages {
        let row = found.iter().find(|r| {
            r.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case(m))
        });
        let Some(id) = row.and_then(|r| id_field(r, "sdkmessageid")) else {
            return Err(ConnectorError::invalid_input(
                MESSAGES,
                format!("'{m}' is not a message of this environment"),
            ));
        };
        messages.push((m.clone(), id));
    }
    let ids: Vec<String> = messages
        .iter()
        .map(|(_, id)| format!("_sdkmessageid_value eq {id}"))
        .collect();
    let filter = format!(
        "primaryobjecttypecode eq {} and ({})",
        string_literal(&plan.entity),
        ids.join(" or ")
    );
    let filters = query(
        s,
        "sdkmessagefilters",
        "sdkmessagefilterid,_sdkmessageid_value",
        &filter,
    )?;
    if filters.is_empty() {
        return Err(ConnectorError::invalid_input(
            ENTITY_NAME,
            format!(
                "'{}' is not a table these messages can be registered on (no sdkmessagefilter)",
                plan.entity
            ),
        ));
    }
    let mut out = Vec::new();
    for (name, id) in messages {
        let filter = filters
            .iter()
            .find(|f| id_field(f, "_sdkmessageid_value").as_deref() == Some(id.as_str()))
            .and_then(|f| id_field(f, "sdkmessagefilterid"))
            .ok_or_else(|| {
                ConnectorError::invalid_input(
                    MESSAGES,
                    format!("'{name}' cannot be registered on table '{}'", plan.entity),
                )
            })?;
        out.push((name, id, filter));
    }
    Ok(out)
}

fn endpoint_body(plan: &Plan, name: &str) -> Value {
    let (authtype, authvalue) = if plan.key.is_empty() {
        // No key (loopback only): HttpHeader with a marker header, since a
        // WebhookKey endpoint needs a value. UNCONFIRMED format (the
        // Plug-in Registration tool's <settings> list).
        (
            5,
            "<settings><setting name=\"x-d365-connector\" value=\"unauthenticated\" /></settings>"
                .to_string(),
        )
    } else {
        (4, plan.key.clone())
    };
    json!({
        "name": name,
        "description": "Registered by the Dynamics 365 connector's webhook trigger; removed by its unsubscribe.",
        "contract": 8,
        "authtype": authtype,
        "authvalue": authvalue,
        "url": plan.callback.as_str(),
        "messageformat": 2,
        "namespaceformat": 2,
        "userclaim": 1,
    })
}

fn register(s: &mut Session<'_>, plan: &Plan, created: &mut Created) -> Result<Subscription> {
    let filters = message_filters(s, plan)?;
    let name = plan.name();
    let endpoints = query(
        s,
        ENDPOINTS,
        "serviceendpointid,name",
        &format!("name eq {}", string_literal(&name)),
    )?;
    let mut endpoint_ids = endpoints
        .iter()
        .filter_map(|e| id_field(e, "serviceendpointid"));
    let reused = endpoint_ids.next();
    let duplicates: Vec<String> = endpoint_ids.collect();
    let mut body = endpoint_body(plan, &name);
    created.reused = reused.is_some();
    let endpoint = match &reused {
        Some(id) => {
            // The key may have changed; the URL is the one the name hashes.
            if let Some(obj) = body.as_object_mut() {
                obj.retain(|k, _| matches!(k.as_str(), "authtype" | "authvalue" | "url"));
            }
            let request = s
                .request(Method::Patch, &format!("{ENDPOINTS}({id})"))?
                .header("If-Match", "*")
                .json_body(&body);
            s.send_ok(request)?;
            id.clone()
        }
        None => {
            created.posted = true;
            let id = create(s, ENDPOINTS, &body)?;
            created.endpoint = Some(id.clone());
            id
        }
    };
    // What is already registered on a reused endpoint.
    let (existing_steps, existing_images) = if reused.is_some() {
        let steps = query(
            s,
            STEPS,
            "sdkmessageprocessingstepid,name",
            &format!("_eventhandler_value eq {endpoint}"),
        )?;
        let ids: Vec<String> = steps
            .iter()
            .filter_map(|r| id_field(r, "sdkmessageprocessingstepid"))
            .map(|id| format!("_sdkmessageprocessingstepid_value eq {id}"))
            .collect();
        let images = if ids.is_empty() {
            Vec::new()
        } else {
            query(
                s,
                IMAGES,
                "sdkmessageprocessingstepimageid,name,_sdkmessageprocessingstepid_value",
                &ids.join(" or "),
            )?
        };
        (steps, images)
    } else {
        (Vec::new(), Vec::new())
    };
    let mut step_ids = Vec::new();
    let mut image_ids = Vec::new();
    for (message, message_id, filter_id) in &filters {
        let step_name = plan.step_name(&name, message);
        let found = existing_steps
            .iter()
            .filter(|r| r.get("name").and_then(Value::as_str) == Some(step_name.as_str()))
            .find_map(|r| id_field(r, "sdkmessageprocessingstepid"));
        let step = match found {
            Some(id) => id,
            None => {
                let mut body = json!({
                    "name": step_name,
                    "description": "Registered by the Dynamics 365 connector's webhook trigger.",
                    "stage": 40,
                    "mode": if plan.sync { 0 } else { 1 },
                    "rank": 1,
                    "supporteddeployment": 0,
                    "asyncautodelete": !plan.sync,
                    "sdkmessageid@odata.bind": format!("/sdkmessages({message_id})"),
                    "sdkmessagefilterid@odata.bind": format!("/sdkmessagefilters({filter_id})"),
                    "eventhandler_serviceendpoint@odata.bind": format!("/{ENDPOINTS}({endpoint})"),
                });
                if message == "Update" && !plan.filtering.is_empty() {
                    body["filteringattributes"] = json!(plan.filtering.join(","));
                }
                if let Some(user) = &plan.run_as {
                    body["impersonatinguserid@odata.bind"] = json!(format!("/systemusers({user})"));
                }
                let id = create(s, STEPS, &body)?;
                created.steps.push(id.clone());
                id
            }
        };
        for (kind, alias, columns) in plan.images(message) {
            let image_name = format!("{step_name} {alias}");
            let found = existing_images
                .iter()
                .filter(|r| {
                    r.get("name").and_then(Value::as_str) == Some(image_name.as_str())
                        && id_field(r, "_sdkmessageprocessingstepid_value").as_deref()
                            == Some(step.as_str())
                })
                .find_map(|r| id_field(r, "sdkmessageprocessingstepimageid"));
            let image = match found {
                Some(id) => id,
                None => {
                    // messagepropertyname: `Id` for Create, `Target` for
                    // Update and Delete (Learn, sdkmessageprocessingstepimage).
                    let property = if message == "Create" { "Id" } else { "Target" };
                    let body = json!({
                        "name": image_name,
                        "entityalias": alias,
                        "imagetype": kind,
                        "messagepropertyname": property,
                        "attributes": columns.join(","),
                        "sdkmessageprocessingstepid@odata.bind": format!("/{STEPS}({step})"),
                    });
                    let id = create(s, IMAGES, &body)?;
                    created.images.push(id.clone());
                    id
                }
            };
            image_ids.push(image);
        }
        step_ids.push(step);
    }
    // Only now that everything asked for exists: remove this subscription's
    // steps that other inputs made (they would deliver the same events a
    // second time), and endpoints that duplicate the name.
    for row in &existing_steps {
        if let Some(id) = id_field(row, "sdkmessageprocessingstepid")
            && !step_ids.contains(&id)
        {
            delete(s, STEPS, &id)?;
        }
    }
    for id in &duplicates {
        delete(s, ENDPOINTS, id)?;
    }
    Ok(Subscription {
        name,
        callback_url: plan.callback.to_string(),
        endpoint_id: endpoint,
        step_ids,
        image_ids,
        inputs: plan.inputs_json(),
    })
}

/// The subscription's ids, checked to be GUIDs (they go into URLs).
fn checked_ids(sub: &Subscription) -> Result<(String, Vec<String>, Vec<String>)> {
    let one = |field: &str, id: &str| {
        Guid::parse(id).map(Guid::into_string).ok_or_else(|| {
            ConnectorError::invalid_input(format!("subscription.{field}"), "must be a GUID")
        })
    };
    let endpoint = one("endpointId", &sub.endpoint_id)?;
    let steps = sub
        .step_ids
        .iter()
        .map(|id| one("stepIds", id))
        .collect::<Result<_>>()?;
    let images = sub
        .image_ids
        .iter()
        .map(|id| one("imageIds", id))
        .collect::<Result<_>>()?;
    if !sub.name.starts_with(NAME_PREFIX) {
        return Err(ConnectorError::invalid_input(
            "subscription.name",
            format!("is not a name subscribe gives (`{NAME_PREFIX}…`)"),
        ));
    }
    Ok((endpoint, steps, images))
}

/// The endpoint's row, or `None` when it is gone.
fn endpoint_row(s: &mut Session<'_>, id: &str) -> Result<Option<Value>> {
    let request = s.request(Method::Get, &format!("{ENDPOINTS}({id})?$select=name,url"))?;
    let response = s.send(request)?;
    if response.status == 404 {
        return Ok(None);
    }
    if !response.is_success() {
        return Err(crate::client::answer_error(Method::Get, &response));
    }
    crate::client::parse_json(&response).map(Some)
}

/// Removes the subscription's endpoint, steps and images (see the module
/// documentation); rows already gone are fine. An endpoint that carries
/// another name is not this subscription's and is left alone.
pub fn unsubscribe(
    platform: &mut dyn Platform,
    kind: ConnectionType,
    settings_json: &str,
    state: Option<TokenState>,
    sub: &Subscription,
) -> Result<Option<TokenState>> {
    let (endpoint, steps, images) = checked_ids(sub)?;
    let mut s = session(platform, kind, settings_json, state)?;
    let result = (|| {
        let Some(row) = endpoint_row(&mut s, &endpoint)? else {
            // Gone, and its steps and images with it (delete cascades).
            return Ok(());
        };
        if row.get("name").and_then(Value::as_str) != Some(sub.name.as_str()) {
            return Err(ConnectorError::invalid_input(
                "subscription.endpointId",
                "names a service endpoint that is not this subscription's; nothing was removed",
            ));
        }
        // The endpoint first: its delete cascades to the steps and their
        // images, so a failure leaves either everything or nothing. The
        // steps and images are then deleted by id in case a row was moved
        // off the endpoint (already gone answers 404, which is fine).
        delete(&mut s, ENDPOINTS, &endpoint)?;
        for id in &images {
            delete(&mut s, IMAGES, id)?;
        }
        for id in &steps {
            delete(&mut s, STEPS, id)?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(s.into_new_state()),
        Err(e) => Err(s.scrub(e)),
    }
}

/// Whether the endpoint (same name and URL), every step and every image
/// still exist.
pub fn check(
    platform: &mut dyn Platform,
    kind: ConnectionType,
    settings_json: &str,
    state: Option<TokenState>,
    sub: &Subscription,
) -> Result<(bool, Option<TokenState>)> {
    let (endpoint, steps, images) = checked_ids(sub)?;
    let mut s = session(platform, kind, settings_json, state)?;
    let result = (|| {
        let Some(row) = endpoint_row(&mut s, &endpoint)? else {
            return Ok(false);
        };
        if row.get("name").and_then(Value::as_str) != Some(sub.name.as_str())
            || row.get("url").and_then(Value::as_str) != Some(sub.callback_url.as_str())
        {
            return Ok(false);
        }
        let rows = query(
            &mut s,
            STEPS,
            "sdkmessageprocessingstepid",
            &format!("_eventhandler_value eq {endpoint}"),
        )?;
        let have: Vec<String> = rows
            .iter()
            .filter_map(|r| id_field(r, "sdkmessageprocessingstepid"))
            .collect();
        if !steps.iter().all(|id| have.contains(id)) {
            return Ok(false);
        }
        for id in &images {
            let request = s.request(
                Method::Get,
                &format!("{IMAGES}({id})?$select=sdkmessageprocessingstepimageid"),
            )?;
            let response = s.send(request)?;
            match response.status {
                404 => return Ok(false),
                200..=299 => {}
                _ => return Err(crate::client::answer_error(Method::Get, &response)),
            }
        }
        Ok(true)
    })();
    match result {
        Ok(ok) => Ok((ok, s.into_new_state())),
        Err(e) => Err(s.scrub(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Request, Response};

    const KEY: &str = "unit-Key-0123456789abcdef";
    const HOOK: &str = "https://hooks.example.com/d365";
    const SETTINGS: &str = r#"{"webApiUrl":"https://org.crm.dynamics.com","clientId":"c"}"#;

    fn inputs(extra: Value) -> String {
        let mut v = json!({"webhookKey": KEY, "entityName": "Account",
            "messages": ["create", "Update", "update", "new_SetCreditHold"],
            "filteringAttributes": ["Name"], "preImageAttributes": ["telephone1"]});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v.to_string()
    }

    #[test]
    fn a_plan_is_normalised_and_its_copy_holds_no_key() {
        let plan = Plan::parse(&inputs(json!({})), HOOK).unwrap();
        assert_eq!(plan.entity, "account");
        assert_eq!(plan.messages, ["Create", "Update", "new_SetCreditHold"]);
        assert_eq!(plan.filtering, ["name"]);
        assert!(!plan.sync);
        let copy = plan.inputs_json();
        assert!(!copy.contains(KEY), "{copy}");
        let copy: Value = serde_json::from_str(&copy).unwrap();
        assert_eq!(copy["stage"], "postOperationAsync");
        assert_eq!(copy["runAsUserId"], Value::Null);
        // Update gets both images with the filtering column; Create a
        // post-image only when asked; a custom message none.
        assert_eq!(
            plan.images("Update"),
            vec![
                (
                    0,
                    "PreImage",
                    vec!["telephone1".to_string(), "name".to_string()]
                ),
                (1, "PostImage", vec!["name".to_string()])
            ]
        );
        assert!(plan.images("Create").is_empty());
        assert!(plan.images("new_SetCreditHold").is_empty());
    }

    #[test]
    fn names_follow_the_url_and_step_names_the_settings() {
        let a = Plan::parse(&inputs(json!({})), HOOK).unwrap();
        let b = Plan::parse(
            &inputs(json!({"webhookKey": "another-Key-0123456789"})),
            HOOK,
        )
        .unwrap();
        assert_eq!(a.name(), b.name(), "the key is not part of the name");
        assert!(a.name().starts_with(NAME_PREFIX));
        assert_eq!(
            a.step_name(&a.name(), "Update"),
            b.step_name(&b.name(), "Update")
        );
        let other_url = Plan::parse(&inputs(json!({})), "https://hooks.example.com/other").unwrap();
        assert_ne!(a.name(), other_url.name());
        let sync = Plan::parse(&inputs(json!({"stage": "postOperationSync"})), HOOK).unwrap();
        let filtered = Plan::parse(
            &inputs(json!({"filteringAttributes": ["telephone1"]})),
            HOOK,
        )
        .unwrap();
        let name = a.name();
        let update = a.step_name(&name, "Update");
        assert!(
            update.starts_with(&format!("{name}: Update of account #")),
            "{update}"
        );
        assert_ne!(update, sync.step_name(&name, "Update"));
        assert_ne!(update, filtered.step_name(&name, "Update"));
        // Filtering columns shape the Update step only.
        assert_eq!(
            a.step_name(&name, "Create"),
            filtered.step_name(&name, "Create")
        );
    }

    #[test]
    fn bad_inputs_name_the_input() {
        let cases = [
            (inputs(json!({"entityName": ""})), HOOK, "entityName"),
            (inputs(json!({"entityName": "a b"})), HOOK, "entityName"),
            (inputs(json!({"messages": []})), HOOK, "messages"),
            (inputs(json!({"messages": ["Cre ate"]})), HOOK, "messages"),
            (
                inputs(json!({"messages": ["Create"]})),
                HOOK,
                "filteringAttributes",
            ),
            (
                inputs(json!({"filteringAttributes": ["na-me"]})),
                HOOK,
                "filteringAttributes",
            ),
            (
                inputs(json!({"preImageAttributes": ["x y"]})),
                HOOK,
                "preImageAttributes",
            ),
            (inputs(json!({"webhookKey": ""})), HOOK, "webhookKey"),
            (inputs(json!({"webhookKey": "short"})), HOOK, "webhookKey"),
            (
                inputs(json!({"webhookKey": "0123456789abcdef\n"})),
                HOOK,
                "webhookKey",
            ),
            (inputs(json!({"stage": "preValidation"})), HOOK, "stage"),
            (inputs(json!({"runAsUserId": "me"})), HOOK, "runAsUserId"),
            (inputs(json!({"webhookkey": KEY})), HOOK, "webhookkey"),
            (inputs(json!({})), "not a url", "callbackUrl"),
            (inputs(json!({})), "file:///etc/passwd", "callbackUrl"),
            (
                inputs(json!({})),
                "https://u:p@hooks.example.com/",
                "callbackUrl",
            ),
            (
                inputs(json!({})),
                "https://hooks.example.com/?code=1",
                "callbackUrl",
            ),
        ];
        for (inputs, url, input) in cases {
            let e = Plan::parse(&inputs, url).expect_err(input);
            assert_eq!(
                e.kind,
                crate::error::ErrorKind::InvalidInput {
                    input: input.to_string()
                },
                "{input}: {}",
                e.message
            );
            assert!(!e.message.contains(KEY));
        }
        // No key is fine on loopback.
        assert!(
            Plan::parse(
                &inputs(json!({"webhookKey": ""})),
                "http://127.0.0.1:8080/h"
            )
            .is_ok()
        );
        assert!(Plan::parse(&inputs(json!({"webhookKey": ""})), "http://localhost/h").is_ok());
    }

    /// Answers by method and URL substring; records `METHOD url` and bodies.
    struct Org {
        answers: Vec<(
            &'static str,
            &'static str,
            u16,
            Vec<(String, String)>,
            String,
        )>,
        sent: Vec<(String, String)>,
    }

    impl Platform for Org {
        fn send(&mut self, request: &Request) -> Result<Response> {
            let method = request.method.as_str();
            let url = request.url.to_string();
            let body = String::from_utf8_lossy(&request.body).to_string();
            self.sent.push((format!("{method} {url}"), body));
            let (_, _, status, headers, body) = self
                .answers
                .iter()
                .find(|(m, part, ..)| *m == method && url.contains(part))
                .cloned()
                .unwrap_or(("", "", 404, Vec::new(), String::new()));
            Ok(Response {
                status,
                headers,
                body: body.into_bytes(),
            })
        }
        fn now_unix(&self) -> u64 {
            1_700_000_000
        }
        fn sleep_ms(&mut self, _ms: u64) {}
        fn random_bytes(&mut self, len: usize) -> Vec<u8> {
            vec![7; len]
        }
    }

    fn token() -> Option<TokenState> {
        Some(TokenState {
            access_token: "access-token-xyz".into(),
            expires_at: 2_000_000_000,
            refresh_token: None,
            scope: None,
        })
    }

    fn created(id: &str) -> Vec<(String, String)> {
        vec![(
            "OData-EntityId".to_string(),
            format!("https://org.crm.dynamics.com/api/data/v9.2/x({id})"),
        )]
    }

    const MSG: &str = "00000000-0000-4000-8000-0000000000a1";
    const FILTER: &str = "00000000-0000-4000-8000-0000000000b1";
    const EP: &str = "00000000-0000-4000-8000-0000000000c1";
    const STEP: &str = "00000000-0000-4000-8000-0000000000d1";

    fn org(step_status: u16) -> Org {
        Org {
            answers: vec![
                ("GET", "/sdkmessages?", 200, Vec::new(),
                    json!({"value": [{"sdkmessageid": MSG, "name": "Create"}]}).to_string()),
                ("GET", "/sdkmessagefilters?", 200, Vec::new(),
                    json!({"value": [{"sdkmessagefilterid": FILTER, "_sdkmessageid_value": MSG}]}).to_string()),
                ("GET", "/serviceendpoints?", 200, Vec::new(), json!({"value": []}).to_string()),
                ("POST", "/serviceendpoints", 204, created(EP), String::new()),
                ("POST", "/sdkmessageprocessingsteps", step_status,
                    if step_status == 204 { created(STEP) } else { Vec::new() },
                    json!({"error": {"code": "0x80040220", "message": format!("refused; echo {KEY}")}}).to_string()),
                ("DELETE", "/serviceendpoints(", 204, Vec::new(), String::new()),
            ],
            sent: Vec::new(),
        }
    }

    #[test]
    fn subscribe_sends_the_documented_rows_and_keeps_the_key_in_authvalue_only() {
        let mut platform = org(204);
        let plan = inputs(json!({"messages": ["Create"], "filteringAttributes": [],
            "preImageAttributes": [], "runAsUserId": "00000000-0000-4000-8000-0000000000e1"}));
        let (sub, state) = subscribe(
            &mut platform,
            ConnectionType::AuthCode,
            SETTINGS,
            token(),
            &plan,
            HOOK,
        )
        .unwrap();
        assert!(state.is_none(), "the token was reused");
        assert_eq!(sub.endpoint_id, EP);
        assert_eq!(sub.step_ids, [STEP]);
        assert!(sub.image_ids.is_empty());
        assert!(!sub.inputs.contains(KEY));
        let posts: Vec<&(String, String)> = platform
            .sent
            .iter()
            .filter(|(m, _)| m.starts_with("POST"))
            .collect();
        assert_eq!(posts.len(), 2, "{:?}", platform.sent);
        let endpoint: Value = serde_json::from_str(&posts[0].1).unwrap();
        assert_eq!(endpoint["contract"], 8);
        assert_eq!(endpoint["authtype"], 4);
        assert_eq!(endpoint["authvalue"], KEY);
        assert_eq!(endpoint["url"], HOOK);
        let step: Value = serde_json::from_str(&posts[1].1).unwrap();
        assert!(!posts[1].1.contains(KEY));
        assert_eq!(
            step["sdkmessageid@odata.bind"],
            format!("/sdkmessages({MSG})")
        );
        assert_eq!(
            step["sdkmessagefilterid@odata.bind"],
            format!("/sdkmessagefilters({FILTER})")
        );
        assert_eq!(
            step["eventhandler_serviceendpoint@odata.bind"],
            format!("/serviceendpoints({EP})")
        );
        assert_eq!(
            step["impersonatinguserid@odata.bind"],
            "/systemusers(00000000-0000-4000-8000-0000000000e1)"
        );
        assert_eq!(
            (step["stage"].clone(), step["mode"].clone()),
            (json!(40), json!(1))
        );
        assert!(step.get("filteringattributes").is_none());
        // The lookups quote their filters as OData literals.
        let lookups: Vec<&String> = platform
            .sent
            .iter()
            .map(|(m, _)| m)
            .filter(|m| m.starts_with("GET"))
            .collect();
        assert!(
            lookups[0].contains("name%20eq%20%27Create%27"),
            "{lookups:?}"
        );
        assert!(
            lookups[1].contains("primaryobjecttypecode%20eq%20%27account%27"),
            "{lookups:?}"
        );
    }

    #[test]
    fn a_failed_step_removes_the_new_endpoint_and_the_error_has_no_key() {
        let mut platform = org(400);
        let plan = inputs(json!({"messages": ["Create"], "filteringAttributes": []}));
        let e = subscribe(
            &mut platform,
            ConnectionType::AuthCode,
            SETTINGS,
            token(),
            &plan,
            HOOK,
        )
        .unwrap_err();
        assert_eq!(e.status, Some(400));
        assert!(e.message.contains("refused"), "{}", e.message);
        assert!(!e.message.contains(KEY), "{}", e.message);
        let last = &platform.sent.last().unwrap().0;
        assert_eq!(
            last,
            &format!("DELETE https://org.crm.dynamics.com/api/data/v9.2/serviceendpoints({EP})")
        );
    }

    #[test]
    fn unsubscribe_checks_ids_and_the_endpoint_name() {
        let sub = Subscription {
            name: format!("{NAME_PREFIX}abc"),
            callback_url: HOOK.into(),
            endpoint_id: "not-a-guid".into(),
            ..Subscription::default()
        };
        let mut platform = org(204);
        let e = unsubscribe(
            &mut platform,
            ConnectionType::AuthCode,
            SETTINGS,
            token(),
            &sub,
        )
        .unwrap_err();
        assert_eq!(
            e.kind,
            crate::error::ErrorKind::InvalidInput {
                input: "subscription.endpointId".into()
            }
        );
        assert!(platform.sent.is_empty());
        // An endpoint with another name is not ours: nothing is deleted.
        let sub = Subscription {
            endpoint_id: EP.into(),
            ..sub
        };
        let mut platform = Org {
            answers: vec![(
                "GET",
                "/serviceendpoints(",
                200,
                Vec::new(),
                json!({"name": "someone else's", "url": HOOK}).to_string(),
            )],
            sent: Vec::new(),
        };
        let e = unsubscribe(
            &mut platform,
            ConnectionType::AuthCode,
            SETTINGS,
            token(),
            &sub,
        )
        .unwrap_err();
        assert!(
            e.message.contains("not this subscription's"),
            "{}",
            e.message
        );
        assert!(platform.sent.iter().all(|(m, _)| m.starts_with("GET")));
        // Gone already: success, nothing deleted.
        let mut platform = Org {
            answers: Vec::new(),
            sent: Vec::new(),
        };
        unsubscribe(
            &mut platform,
            ConnectionType::AuthCode,
            SETTINGS,
            token(),
            &sub,
        )
        .unwrap();
        assert_eq!(platform.sent.len(), 1);
        let (ok, _) = check(
            &mut platform,
            ConnectionType::AuthCode,
            SETTINGS,
            token(),
            &sub,
        )
        .unwrap();
        assert!(!ok);
    }
}
