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
//! finds the endpoint, keeps the steps that are as asked (with the images
//! made with them), creates the ones missing and, once that worked,
//! removes its steps that are no longer asked for: never two steps of one
//! subscription for the same event. A failure part-way removes what the
//! call created and returns the first error.
//!
//! The key is a secret: it goes only into the endpoint's `authvalue`
//! (write-only in Dataverse), never into the subscription record, an
//! output or an error.
//!
//! Size: request bodies are built by [`obj`] and the three calls share one
//! session runner ([`in_session`]): `json!` bodies and three copies of the
//! session handling were ~20 KB of the component.

use super::{
    ENTITY_NAME, FILTERING_ATTRIBUTES, MESSAGES, POST_IMAGE_ATTRIBUTES, PRE_IMAGE_ATTRIBUTES,
    RUN_AS_USER_ID, STAGE, STAGE_SYNC, WEBHOOK_KEY, definition, hex,
};
use crate::client::{Session, answer_error, parse_json};
use crate::connection::{ConnectionType, Settings, TokenState, is_loopback};
use crate::error::{ConnectorError, Result};
use crate::http::{Method, Platform, Response};
use crate::inputs::Inputs;
use crate::secret;
use crate::types::{Guid, encode_query, is_identifier, string_literal};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// What every registered row's name starts with.
pub const NAME_PREFIX: &str = "d365-connector ";
/// Shorter keys are refused by `subscribe`: a webhook key is the only
/// thing between the callback URL and anyone who finds it.
pub const MIN_KEY_LEN: usize = 16;

const ENDPOINTS: &str = "serviceendpoints";
const STEPS: &str = "sdkmessageprocessingsteps";
const IMAGES: &str = "sdkmessageprocessingstepimages";
const STEP_ID: &str = "sdkmessageprocessingstepid";
const IMAGE_ID: &str = "sdkmessageprocessingstepimageid";
const ENDPOINT_ID: &str = "serviceendpointid";
const DESCRIPTION: &str =
    "Registered by the Dynamics 365 connector's webhook trigger; removed by its unsubscribe.";

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
    /// The inputs as given, without the key.
    copy: String,
}

fn invalid(input: &str, message: impl Into<String>) -> ConnectorError {
    ConnectorError::invalid_input(input, message)
}

fn columns(inputs: &Inputs, key: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for c in inputs.list(key)? {
        let c = c.trim().to_ascii_lowercase();
        if !is_identifier(&c) {
            return Err(invalid(key, format!("'{c}' is not a column logical name")));
        }
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// The inputs' JSON text without the key, member by member as given.
fn without_key(inputs_json: &str) -> String {
    let mut out = String::from("{");
    for (k, v) in crate::rawjson::members(inputs_json).unwrap_or_default() {
        if k != WEBHOOK_KEY {
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(&Value::from(k.as_ref()).to_string());
            out.push(':');
            out.push_str(v.get());
        }
    }
    out.push('}');
    out
}

impl Plan {
    #[inline(never)]
    fn parse(inputs_json: &str, callback_url: &str) -> Result<Plan> {
        let def = definition();
        let inputs = Inputs::parse_for(def.key, &def.inputs, inputs_json)?;
        let callback = url::Url::parse(callback_url.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| invalid("callbackUrl", "must be an absolute http(s) URL"))?;
        if !callback.username().is_empty()
            || callback.password().is_some()
            || callback.fragment().is_some()
            || callback.query_pairs().any(|(k, _)| k == "code")
        {
            return Err(invalid(
                "callbackUrl",
                "must carry no user, fragment or `code` parameter (Dataverse adds the key as `code`)",
            ));
        }
        let key = inputs.str(WEBHOOK_KEY)?.unwrap_or("").to_string();
        if key.is_empty() {
            if !is_loopback(callback.host_str().unwrap_or("")) {
                return Err(invalid(
                    WEBHOOK_KEY,
                    "is required to subscribe a callback URL that is not on loopback: without it anyone could call the webhook",
                ));
            }
        } else if key.chars().count() < MIN_KEY_LEN || key.chars().any(char::is_control) {
            return Err(invalid(
                WEBHOOK_KEY,
                "must be at least 16 characters, without control characters, to subscribe",
            ));
        }
        let entity = inputs
            .str(ENTITY_NAME)?
            .map(|e| e.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if !is_identifier(&entity) {
            return Err(invalid(
                ENTITY_NAME,
                format!("'{entity}' is not a table logical name (required to subscribe)"),
            ));
        }
        let mut messages: Vec<String> = Vec::new();
        for m in inputs.list(MESSAGES)? {
            let m = m.trim();
            let canonical = match ["Create", "Update", "Delete"]
                .into_iter()
                .find(|c| c.eq_ignore_ascii_case(m))
            {
                Some(c) => c.to_string(),
                None => m.to_string(),
            };
            if !is_identifier(&canonical) || canonical.len() > 256 {
                return Err(invalid(MESSAGES, format!("'{m}' is not a message name")));
            }
            if !messages.iter().any(|x| x.eq_ignore_ascii_case(&canonical)) {
                messages.push(canonical);
            }
        }
        if messages.is_empty() {
            return Err(invalid(
                MESSAGES,
                "must name at least one message (Create, Update, Delete, or a custom action) to subscribe",
            ));
        }
        let filtering = columns(&inputs, FILTERING_ATTRIBUTES)?;
        if !filtering.is_empty() && !messages.iter().any(|m| m == "Update") {
            return Err(invalid(
                FILTERING_ATTRIBUTES,
                "applies to Update only, and messages has no Update",
            ));
        }
        let run_as = match inputs.str(RUN_AS_USER_ID)?.map(str::trim) {
            None | Some("") => None,
            Some(s) => Some(
                Guid::parse(s)
                    .ok_or_else(|| invalid(RUN_AS_USER_ID, "must be a systemuserid (GUID)"))?,
            ),
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
            copy: without_key(inputs_json),
        })
    }

    fn name(&self) -> String {
        format!("{NAME_PREFIX}{}", hash(&[self.callback.as_str()]))
    }

    /// The images a step of `message` gets: (imagetype, alias, columns).
    /// An Update step gets both images with the filtering columns in them,
    /// so that its events can say what changed.
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
    #[inline(never)]
    fn step_name(&self, name: &str, message: &str) -> String {
        let mut settings = String::from(if self.sync { "s;" } else { "a;" });
        if message == "Update" {
            settings.push_str(&self.filtering.join(","));
        }
        for (kind, alias, cols) in self.images(message) {
            settings.push(char::from(b'0' + kind));
            settings.push_str(alias);
            settings.push_str(&cols.join(","));
            settings.push(';');
        }
        settings.push_str(self.run_as.as_ref().map_or("", Guid::as_str));
        format!(
            "{name}: {message} of {} #{}",
            self.entity,
            hash(&[&settings])
        )
    }
}

/// The first 8 bytes of the SHA-256 of `parts`, as hex.
fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex(&h.finalize()[..8])
}

/// A flat JSON object (one function for every request body).
#[inline(never)]
fn obj(pairs: Vec<(&str, Value)>) -> Value {
    let mut map = Map::new();
    for (k, v) in pairs {
        map.insert(k.to_string(), v);
    }
    Value::Object(map)
}

fn bind(set: &str, id: &str) -> Value {
    Value::String(format!("/{set}({id})"))
}

/// `GET set?$select=…&$filter=…` → the rows.
#[inline(never)]
fn query(s: &mut Session<'_>, set: &str, select: &str, filter: &str) -> Result<Vec<Value>> {
    let relative = format!("{set}?$select={select}&$filter={}", encode_query(filter));
    let request = s.request(Method::Get, &relative)?;
    match s.send_json(request)?.get_mut("value").map(Value::take) {
        Some(Value::Array(rows)) => Ok(rows),
        _ => Err(ConnectorError::transport(format!(
            "the answer to GET {set} has no `value` list"
        ))),
    }
}

/// The `field` GUIDs of `rows`.
#[inline(never)]
fn ids(rows: &[Value], field: &str) -> Vec<String> {
    let mut out = Vec::new();
    for row in rows {
        if let Some(id) = row[field].as_str().and_then(Guid::parse) {
            out.push(id.into_string());
        }
    }
    out
}

/// `a eq x or a eq y …` for `values` (ids or OData literals).
#[inline(never)]
fn any_of(attribute: &str, values: &[String]) -> String {
    let mut out = String::new();
    for v in values {
        if !out.is_empty() {
            out.push_str(" or ");
        }
        out.push_str(attribute);
        out.push_str(" eq ");
        out.push_str(v);
    }
    out
}

/// Sends `body` with `method` to `relative`; a non-2xx answer is an error.
#[inline(never)]
fn send(s: &mut Session<'_>, method: Method, relative: &str, body: Value) -> Result<Response> {
    let request = s
        .request(method, relative)?
        .header("If-Match", "*")
        .json_body(&body);
    s.send_ok(request)
}

/// `POST set` → the new row's id (from `OData-EntityId`).
fn create(s: &mut Session<'_>, set: &str, body: Value) -> Result<String> {
    let request = s.request(Method::Post, set)?.json_body(&body);
    let response = s.send_ok(request)?;
    response
        .header("OData-EntityId")
        .and_then(Guid::in_entity_url)
        .map(Guid::into_string)
        .ok_or_else(|| {
            ConnectorError::transport(format!(
                "POST {set} succeeded without an OData-EntityId naming the new row"
            ))
        })
}

/// `DELETE set(id)`; a row already gone is success.
#[inline(never)]
fn delete(s: &mut Session<'_>, set: &str, id: &str) -> Result<()> {
    let request = s.request(Method::Delete, &format!("{set}({id})"))?;
    let response = s.send(request)?;
    if response.is_success() || response.status == 404 {
        Ok(())
    } else {
        Err(answer_error(Method::Delete, &response))
    }
}

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
            None => query(s, ENDPOINTS, ENDPOINT_ID, &name_filter(name))
                .map(|rows| ids(&rows, ENDPOINT_ID))
                .unwrap_or_default(),
        };
        for id in endpoints {
            let _ = delete(s, ENDPOINTS, &id);
        }
    }
}

fn name_filter(name: &str) -> String {
    format!("name eq {}", string_literal(name))
}

/// What a lifecycle call returns.
enum Done {
    Subscribed(Subscription),
    Unsubscribed,
    Checked(bool),
}

/// Runs one lifecycle call in a session; errors leave without any
/// credential the session holds or sent (and without `key`).
fn in_session(
    platform: &mut dyn Platform,
    kind: ConnectionType,
    settings_json: &str,
    state: Option<TokenState>,
    key: &str,
    run: &mut dyn FnMut(&mut Session<'_>) -> Result<Done>,
) -> Result<(Done, Option<TokenState>)> {
    let settings = Settings::parse(kind, settings_json)?;
    if let Some(allowed) = &settings.allowed_operations
        && !allowed.iter().any(|a| a == "webhook")
    {
        return Err(ConnectorError::forbidden(
            "the webhook trigger's subscriptions are not in this connection's allowedOperations",
        )
        .with_hint("Add `webhook` to allowedOperations to let it register and remove webhooks."));
    }
    let mut s = Session::new(platform, settings, state);
    match run(&mut s) {
        Ok(done) => Ok((done, s.into_new_state())),
        Err(e) => Err(secret::scrub_error(s.scrub(e), &[key])),
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
    let (done, state) = in_session(platform, kind, settings_json, state, &plan.key, &mut |s| {
        let mut created = Created::default();
        register(s, &plan, &mut created)
            .inspect_err(|_| created.roll_back(s, &plan.name()))
            .map(Done::Subscribed)
    })?;
    match done {
        Done::Subscribed(sub) => Ok((sub, state)),
        _ => Err(ConnectorError::transport(
            "subscribe ended without a subscription",
        )),
    }
}

/// The message ids, by name, and each one's filter on the table.
#[inline(never)]
fn message_filters(s: &mut Session<'_>, plan: &Plan) -> Result<Vec<(String, String, String)>> {
    let literals: Vec<String> = plan.messages.iter().map(|m| string_literal(m)).collect();
    let found = query(
        s,
        "sdkmessages",
        "sdkmessageid,name",
        &any_of("name", &literals),
    )?;
    let mut message_ids = Vec::new();
    for m in &plan.messages {
        let mut id = None;
        for row in &found {
            if row["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(m))
            {
                id = row["sdkmessageid"].as_str().and_then(Guid::parse);
            }
        }
        let id = id.ok_or_else(|| {
            invalid(
                MESSAGES,
                format!("'{m}' is not a message of this environment"),
            )
        })?;
        message_ids.push(id.into_string());
    }
    let filter = format!(
        "primaryobjecttypecode eq {} and ({})",
        string_literal(&plan.entity),
        any_of("_sdkmessageid_value", &message_ids)
    );
    let filters = query(
        s,
        "sdkmessagefilters",
        "sdkmessagefilterid,_sdkmessageid_value",
        &filter,
    )?;
    let mut out = Vec::new();
    for (name, id) in plan.messages.iter().zip(message_ids) {
        let mut filter = None;
        for row in &filters {
            let of = row["_sdkmessageid_value"].as_str().and_then(Guid::parse);
            if of.as_ref().map(Guid::as_str) == Some(id.as_str()) {
                filter = row["sdkmessagefilterid"].as_str().and_then(Guid::parse);
            }
        }
        let Some(filter) = filter else {
            // No filter at all: the table is unknown (or has none of the
            // messages); else this message is not for this table.
            return Err(if filters.is_empty() {
                invalid(
                    ENTITY_NAME,
                    format!(
                        "'{}' is not a table these messages can be registered on",
                        plan.entity
                    ),
                )
            } else {
                invalid(
                    MESSAGES,
                    format!("'{name}' cannot be registered on table '{}'", plan.entity),
                )
            });
        };
        out.push((name.clone(), id, filter.into_string()));
    }
    Ok(out)
}

#[inline(never)]
fn register(s: &mut Session<'_>, plan: &Plan, created: &mut Created) -> Result<Subscription> {
    let filters = message_filters(s, plan)?;
    let name = plan.name();
    let found = ids(
        &query(s, ENDPOINTS, ENDPOINT_ID, &name_filter(&name))?,
        ENDPOINT_ID,
    );
    let (authtype, authvalue) = if plan.key.is_empty() {
        // No key (loopback only): a WebhookKey endpoint needs a value, so
        // HttpHeader with a marker header (the Plug-in Registration tool's
        // <settings> list; UNCONFIRMED format).
        (
            5,
            "<settings><setting name=\"x-d365-connector\" value=\"unauthenticated\" /></settings>",
        )
    } else {
        (4, plan.key.as_str())
    };
    let mut body = vec![
        ("authtype", Value::from(authtype)),
        ("authvalue", Value::from(authvalue)),
        ("url", Value::from(plan.callback.as_str())),
    ];
    let endpoint = match found.first() {
        Some(id) => {
            // The key may have changed; the URL is the one the name hashes.
            created.reused = true;
            send(s, Method::Patch, &format!("{ENDPOINTS}({id})"), obj(body))?;
            id.clone()
        }
        None => {
            body.extend([
                ("name", Value::from(name.as_str())),
                ("description", Value::from(DESCRIPTION)),
                ("contract", Value::from(8)),
                ("messageformat", Value::from(2)),
                ("namespaceformat", Value::from(2)),
                ("userclaim", Value::from(1)),
            ]);
            created.posted = true;
            let id = create(s, ENDPOINTS, obj(body))?;
            created.endpoint = Some(id.clone());
            id
        }
    };
    // What is already registered on a reused endpoint.
    let existing = if created.reused {
        let filter = format!("_eventhandler_value eq {endpoint}");
        query(s, STEPS, "sdkmessageprocessingstepid,name", &filter)?
    } else {
        Vec::new()
    };
    let mut step_ids = Vec::new();
    let mut image_ids = Vec::new();
    for (message, message_id, filter_id) in &filters {
        let step_name = plan.step_name(&name, message);
        let mut reused = None;
        for row in &existing {
            if row["name"].as_str() == Some(step_name.as_str()) {
                reused = row[STEP_ID].as_str().and_then(Guid::parse);
            }
        }
        if let Some(step) = reused {
            // Its images were made with it (its name covers them).
            let filter = format!("_sdkmessageprocessingstepid_value eq {step}");
            image_ids.extend(ids(&query(s, IMAGES, IMAGE_ID, &filter)?, IMAGE_ID));
            step_ids.push(step.into_string());
            continue;
        }
        let mut body = vec![
            ("name", Value::from(step_name.as_str())),
            ("description", Value::from(DESCRIPTION)),
            ("stage", Value::from(40)),
            ("mode", Value::from(if plan.sync { 0 } else { 1 })),
            ("rank", Value::from(1)),
            ("supporteddeployment", Value::from(0)),
            ("asyncautodelete", Value::from(!plan.sync)),
            ("sdkmessageid@odata.bind", bind("sdkmessages", message_id)),
            (
                "sdkmessagefilterid@odata.bind",
                bind("sdkmessagefilters", filter_id),
            ),
            (
                "eventhandler_serviceendpoint@odata.bind",
                bind(ENDPOINTS, &endpoint),
            ),
        ];
        if message == "Update" && !plan.filtering.is_empty() {
            body.push(("filteringattributes", Value::from(plan.filtering.join(","))));
        }
        if let Some(user) = &plan.run_as {
            body.push((
                "impersonatinguserid@odata.bind",
                bind("systemusers", user.as_str()),
            ));
        }
        let step = create(s, STEPS, obj(body))?;
        created.steps.push(step.clone());
        for (kind, alias, columns) in plan.images(message) {
            // messagepropertyname: `Id` for Create, `Target` for Update and
            // Delete (Learn, sdkmessageprocessingstepimage reference).
            let property = if message == "Create" { "Id" } else { "Target" };
            let body = vec![
                ("name", Value::from(format!("{step_name} {alias}"))),
                ("entityalias", Value::from(alias)),
                ("imagetype", Value::from(kind)),
                ("messagepropertyname", Value::from(property)),
                ("attributes", Value::from(columns.join(","))),
                ("sdkmessageprocessingstepid@odata.bind", bind(STEPS, &step)),
            ];
            let image = create(s, IMAGES, obj(body))?;
            created.images.push(image.clone());
            image_ids.push(image);
        }
        step_ids.push(step);
    }
    // Only now that everything asked for exists: remove this subscription's
    // steps that other inputs made (they would deliver the same events a
    // second time), and endpoints that duplicate the name.
    for id in ids(&existing, STEP_ID) {
        if !step_ids.contains(&id) {
            delete(s, STEPS, &id)?;
        }
    }
    for id in found.iter().skip(1) {
        delete(s, ENDPOINTS, id)?;
    }
    Ok(Subscription {
        name,
        callback_url: plan.callback.to_string(),
        endpoint_id: endpoint,
        step_ids,
        image_ids,
        inputs: plan.copy.clone(),
    })
}

/// The subscription's ids, checked to be GUIDs (they go into URLs).
fn checked_ids(sub: &Subscription) -> Result<(String, Vec<String>, Vec<String>)> {
    if !sub.name.starts_with(NAME_PREFIX) {
        return Err(invalid(
            "subscription.name",
            "is not a name subscribe gives (`d365-connector …`)",
        ));
    }
    let all = |field: &str, list: &[String]| -> Result<Vec<String>> {
        list.iter()
            .map(|id| {
                Guid::parse(id).map(Guid::into_string).ok_or_else(|| {
                    invalid(format!("subscription.{field}").as_str(), "must be a GUID")
                })
            })
            .collect()
    };
    let endpoint = all("endpointId", std::slice::from_ref(&sub.endpoint_id))?;
    Ok((
        endpoint.concat(),
        all("stepIds", &sub.step_ids)?,
        all("imageIds", &sub.image_ids)?,
    ))
}

/// The endpoint's row when it is this subscription's (its name), `None`
/// when it is gone.
fn endpoint_row(s: &mut Session<'_>, id: &str, name: &str) -> Result<Option<Value>> {
    let request = s.request(Method::Get, &format!("{ENDPOINTS}({id})?$select=name,url"))?;
    let response = s.send(request)?;
    if response.status == 404 {
        return Ok(None);
    }
    if !response.is_success() {
        return Err(answer_error(Method::Get, &response));
    }
    let row = parse_json(&response)?;
    if row["name"].as_str() != Some(name) {
        return Err(invalid(
            "subscription.endpointId",
            "names a service endpoint that is not this subscription's; nothing was changed",
        ));
    }
    Ok(Some(row))
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
    let run = &mut |s: &mut Session<'_>| {
        // Gone: its steps and images went with it (delete cascades).
        if endpoint_row(s, &endpoint, &sub.name)?.is_some() {
            // The endpoint first: its delete cascades to the steps and
            // their images, so a failure leaves everything or nothing.
            // Then the steps and images by id, in case one was moved off
            // the endpoint (already gone answers 404, which is fine).
            delete(s, ENDPOINTS, &endpoint)?;
            for id in &images {
                delete(s, IMAGES, id)?;
            }
            for id in &steps {
                delete(s, STEPS, id)?;
            }
        }
        Ok(Done::Unsubscribed)
    };
    in_session(platform, kind, settings_json, state, "", run).map(|(_, state)| state)
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
    let run = &mut |s: &mut Session<'_>| {
        let Some(row) = endpoint_row(s, &endpoint, &sub.name)? else {
            return Ok(Done::Checked(false));
        };
        if row["url"].as_str() != Some(sub.callback_url.as_str()) {
            return Ok(Done::Checked(false));
        }
        let filter = format!("_eventhandler_value eq {endpoint}");
        let have = ids(&query(s, STEPS, STEP_ID, &filter)?, STEP_ID);
        let mut ok = steps.iter().all(|id| have.contains(id));
        if ok && !images.is_empty() {
            let have = ids(
                &query(s, IMAGES, IMAGE_ID, &any_of(IMAGE_ID, &images))?,
                IMAGE_ID,
            );
            ok = images.iter().all(|id| have.contains(id));
        }
        Ok(Done::Checked(ok))
    };
    match in_session(platform, kind, settings_json, state, "", run)? {
        (Done::Checked(ok), state) => Ok((ok, state)),
        _ => Err(ConnectorError::transport("check ended without an answer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Request;
    use serde_json::json;

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
        assert!(!plan.copy.contains(KEY), "{}", plan.copy);
        let copy: Value = serde_json::from_str(&plan.copy).unwrap();
        let mut given: Value = serde_json::from_str(&inputs(json!({}))).unwrap();
        given.as_object_mut().unwrap().remove("webhookKey");
        assert_eq!(copy, given, "the inputs as given, without the key");
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

    /// (method, URL part, status, headers, body).
    type Answer = (
        &'static str,
        &'static str,
        u16,
        Vec<(String, String)>,
        String,
    );

    /// Answers by method and URL substring; records `METHOD url` and bodies.
    struct Org {
        answers: Vec<Answer>,
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
