//! The connector's description for builders: connections, trigger and
//! actions with every input's key, label, type, default, required flag and
//! comment. This is the single source of truth: `connector.yaml` is generated
//! from it (`d365 actions --yaml`) and a test keeps the two equal; input
//! validation ([`crate::inputs`]) reads the same definitions.
//!
//! This module assembles it, and is the only place that does: connections
//! ([`connections`]), triggers ([`crate::trigger`] and the polling ones from
//! [`crate::actions`]) and actions (the registry, [`crate::actions::ACTIONS`]).
//! What an entry is lives in [`def`], which action modules import; only
//! actions that work are listed: an action appears in the same change that
//! implements it.

pub mod connections;
pub mod def;

use def::{ActionDef, ConnectionDef, TriggerDef};
use serde::Serialize;
use serde_json::Value;

pub const CONNECTOR_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    pub key: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub version: &'static str,
    pub connections: Vec<ConnectionDef>,
    pub triggers: Vec<TriggerDef>,
    pub actions: Vec<ActionDef>,
}

impl Catalog {
    pub fn action(&self, key: &str) -> Option<&ActionDef> {
        self.actions.iter().find(|a| a.key == key)
    }

    pub fn trigger(&self, key: &str) -> Option<&TriggerDef> {
        self.triggers.iter().find(|t| t.key == key)
    }

    /// The catalog as JSON, each action carrying its generated
    /// `inputSchema` and `outputSchema` (JSON Schema 2020-12).
    pub fn to_json(&self) -> String {
        // Serialising plain owned data cannot fail.
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(actions) = v.get_mut("actions").and_then(Value::as_array_mut) {
            for (entry, def) in actions.iter_mut().zip(&self.actions) {
                if let Some(obj) = entry.as_object_mut() {
                    obj.insert("inputSchema".into(), crate::schema::input_schema(def));
                    obj.insert("outputSchema".into(), crate::schema::output_schema(def.key));
                }
            }
        }
        v.to_string()
    }
}

/// The whole catalog.
pub fn catalog() -> Catalog {
    Catalog {
        key: "dynamics365",
        name: "Microsoft Dynamics 365",
        description: "Dataverse Web API (OData v4) connector: records, FetchXML, batches, metadata and raw requests.",
        version: CONNECTOR_VERSION,
        connections: connections::connections(),
        // The webhook first, then the polling triggers (which run as the
        // actions of the same keys).
        triggers: std::iter::once(crate::trigger::definition())
            .chain(crate::actions::polling_triggers())
            .collect(),
        actions: crate::actions::ACTIONS
            .iter()
            .map(|a| a.def.clone())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::def::TriggerKind;
    use super::*;

    #[test]
    fn keys_are_unique_and_camel_case() {
        let c = catalog();
        let mut keys: Vec<_> = c.actions.iter().map(|a| a.key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), c.actions.len());
        for a in &c.actions {
            assert!(
                a.key.chars().next().unwrap().is_ascii_lowercase(),
                "{}",
                a.key
            );
            let defs = a.inputs();
            let mut inputs: Vec<_> = defs.iter().map(|i| i.key).collect();
            inputs.sort();
            inputs.dedup();
            assert_eq!(inputs.len(), defs.len(), "duplicate input in {}", a.key);
        }
        for t in &c.triggers {
            // A polling trigger runs as the action of its key; a webhook
            // trigger is never an action.
            match t.kind {
                TriggerKind::Polling => {
                    assert!(c.action(t.key).is_some(), "{} has no action", t.key)
                }
                TriggerKind::Webhook => assert!(c.action(t.key).is_none(), "{} is both", t.key),
            }
            assert!(c.trigger(t.key).is_some());
        }
    }

    #[test]
    fn json_has_connections_and_actions() {
        let v: Value = serde_json::from_str(&catalog().to_json()).unwrap();
        assert_eq!(v["connections"].as_array().unwrap().len(), 2);
        assert!(
            v["actions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["key"] == "getCurrentUser")
        );
        let webhook = &v["triggers"][0];
        assert_eq!(webhook["key"], "webhook");
        assert_eq!(webhook["inputs"][0]["key"], "webhookKey");
        assert_eq!(webhook["inputs"][0]["label"], "Webhook Authentication Key");
        assert_eq!(webhook["inputs"][0]["type"], "password");
        assert_eq!(webhook["inputs"][0]["required"], false);
    }
}
