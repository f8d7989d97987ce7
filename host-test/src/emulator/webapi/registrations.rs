//! Webhook registrations stored as rows (`serviceendpoint`,
//! `sdkmessageprocessingstep`, `sdkmessageprocessingstepimage`, written
//! through `registration.rs`) read back as the [`ServiceEndpoint`]s and
//! [`Step`]s that `events` delivers to ("Use webhooks to create external
//! handlers for server events",
//! https://learn.microsoft.com/power-apps/developer/data-platform/use-webhooks;
//! "Register a WebHook",
//! https://learn.microsoft.com/power-apps/developer/data-platform/register-web-hook).
//! Imports no handler, so that `events` can use it.

use crate::emulator::State;
use crate::emulator::store::schema::sdk;
use crate::emulator::webhooks::{
    CONTRACT_WEBHOOK, Message, Mode, ServiceEndpoint, Stage, Step, StepRegistration, WebhookAuth,
};
use serde_json::Value;

pub(super) fn message_name(state: &State, message_id: &str) -> Option<String> {
    state
        .store
        .get("sdkmessage", message_id)
        .and_then(|r| r.get("name").as_str().map(str::to_string))
}

/// The message a `sdkmessage.name` raises events as, when the emulator
/// raises any for it.
fn message_of(name: &str) -> Option<Message> {
    match name {
        "Create" => Some(Message::Create),
        "Update" => Some(Message::Update),
        "Delete" => Some(Message::Delete),
        other => sdk::MESSAGES
            .iter()
            .find(|(m, _)| *m == other)
            .map(|(m, _)| Message::Custom(m)),
    }
}

/// `<settings><setting name="k" value="v" /></settings>`, the authvalue of
/// the HttpHeader and HttpQueryString modes as the Plug-in Registration
/// tool writes it (UNCONFIRMED against a reference).
fn settings_pairs(text: &str) -> Vec<(String, String)> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let end = tag[start..].find('"')? + start;
        Some(
            tag[start..end]
                .replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        )
    };
    text.split("<setting ")
        .skip(1)
        .filter_map(|tag| Some((attr(tag, "name")?, attr(tag, "value")?)))
        .collect()
}

/// The webhook registrations stored as rows: each enabled step on a
/// webhook endpoint whose message the emulator raises, with its images.
pub fn registered(state: &State) -> (Vec<ServiceEndpoint>, Vec<Step>) {
    let store = &state.store;
    let mut endpoints: Vec<ServiceEndpoint> = Vec::new();
    let mut steps = Vec::new();
    for row in store.records("sdkmessageprocessingstep") {
        let Some(endpoint_id) = row.get("eventhandler").as_str() else {
            continue;
        };
        let Some(endpoint) = store.get("serviceendpoint", endpoint_id) else {
            continue;
        };
        if endpoint.get("contract").as_i64() != Some(i64::from(CONTRACT_WEBHOOK)) {
            continue;
        }
        let Some(message) = row
            .get("sdkmessageid")
            .as_str()
            .and_then(|m| message_name(state, m))
            .and_then(|n| message_of(&n))
        else {
            continue;
        };
        let Some(entity) = row
            .get("sdkmessagefilterid")
            .as_str()
            .and_then(|f| store.get("sdkmessagefilter", f))
            .and_then(|f| f.get("primaryobjecttypecode").as_str().map(str::to_string))
        else {
            continue; // steps on every table are not emulated
        };
        if !endpoints.iter().any(|e| e.id == endpoint.id) {
            let Ok(url) = url::Url::parse(endpoint.get("url").as_str().unwrap_or("")) else {
                continue;
            };
            let value = state
                .webhooks
                .auth_values
                .get(&endpoint.id)
                .cloned()
                .unwrap_or_default();
            let auth = match endpoint.get("authtype").as_i64() {
                Some(5) => WebhookAuth::HttpHeader(settings_pairs(&value)),
                Some(6) => WebhookAuth::HttpQueryString(settings_pairs(&value)),
                _ => WebhookAuth::WebhookKey(value),
            };
            endpoints.push(ServiceEndpoint {
                id: endpoint.id.clone(),
                name: endpoint.get("name").as_str().unwrap_or("").to_string(),
                url,
                auth,
            });
        }
        let mut registration = StepRegistration::new(message, &entity);
        registration.stage = match row.get("stage").as_i64() {
            Some(10) => Stage::PreValidation,
            Some(20) => Stage::PreOperation,
            _ => Stage::PostOperation,
        };
        registration.mode = match row.get("mode").as_i64() {
            Some(1) => Mode::Asynchronous,
            _ => Mode::Synchronous,
        };
        registration.filtering_attributes = columns(row.get("filteringattributes"));
        registration.run_as = row.get("impersonatinguserid").as_str().map(str::to_string);
        for image in store
            .records("sdkmessageprocessingstepimage")
            .filter(|i| i.get("sdkmessageprocessingstepid").as_str() == Some(row.id.as_str()))
        {
            let alias = image
                .get("entityalias")
                .as_str()
                .or_else(|| image.get("name").as_str())
                .unwrap_or("Image")
                .to_string();
            let attributes = columns(image.get("attributes"));
            let kind = image.get("imagetype").as_i64();
            if matches!(kind, Some(0 | 2)) {
                registration.pre_image = Some(alias.clone());
                registration.pre_image_attributes = attributes.clone();
            }
            if matches!(kind, Some(1 | 2)) {
                registration.post_image = Some(alias);
                registration.post_image_attributes = attributes;
            }
        }
        steps.push(Step {
            id: row.id.clone(),
            endpoint_id: endpoint.id.clone(),
            registration,
        });
    }
    (endpoints, steps)
}

/// A comma-separated column list (`filteringattributes`, `attributes`).
fn columns(value: &Value) -> Vec<String> {
    value
        .as_str()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_columns_parse() {
        assert_eq!(
            settings_pairs(
                r#"<settings><setting name="X-Key" value="a&amp;b" /><setting name="y" value="2" /></settings>"#
            ),
            vec![
                ("X-Key".to_string(), "a&b".to_string()),
                ("y".to_string(), "2".to_string())
            ]
        );
        assert_eq!(
            columns(&Value::from(" name, telephone1 ,,")),
            vec!["name", "telephone1"]
        );
    }
}
