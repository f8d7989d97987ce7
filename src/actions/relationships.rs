//! `associate` / `disassociate`: link and unlink records through a
//! navigation property's `$ref`, as DynamicsWebApi's associate /
//! associateSingleValued do. A collection-valued property (one-to-many or
//! many-to-many) takes `POST …/{nav}/$ref` and `DELETE …/{nav}({id})/$ref`;
//! a single-valued lookup takes `PUT …/{nav}/$ref` and `DELETE …/{nav}/$ref`.

use crate::actions::action::Action;
use crate::actions::controls;
use crate::catalog::def::{ActionDef, InputDef, InputType, input};
use crate::client::Session;
use crate::controls::OPERATION_KEYS;
use crate::error::{ConnectorError, Result};
use crate::http::Method;
use crate::inputs::Inputs;
use crate::page::Output;
use crate::types::{EntityKey, EntitySet, encode_query, is_identifier};
use serde_json::{Value, json};

// Input keys, each written once: the definitions and `run` use these.
const TARGET_ENTITY_TYPE: &str = "targetEntityType";
const TARGET_ID: &str = "targetId";
const ENTITY_TYPE: &str = "entityType";
const ENTITY_ID: &str = "entityId";
const NAVIGATION_PROPERTY: &str = "navigationProperty";
const SINGLE_VALUED: &str = "singleValued";

fn inputs(target_required: bool) -> Vec<InputDef> {
    let mut target_set = input(
        TARGET_ENTITY_TYPE,
        "Related Entity Type",
        InputType::String,
        "The entity set of the record to link, e.g. contacts.",
    );
    let mut target_id = input(
        TARGET_ID,
        "Related Entity ID",
        InputType::String,
        "The GUID (or alternate key values) of the record to link.",
    );
    if target_required {
        target_set = target_set.required();
        target_id = target_id.required();
    }
    vec![
        {
            let text =
                "The entity set of the record whose navigation property is used, e.g. accounts.";
            input(ENTITY_TYPE, "Entity Type", InputType::String, text)
                .required()
                .example(json!("accounts"))
        },
        {
            let text = "The record's GUID, or alternate key values such as accountnumber='A-1'.";
            input(ENTITY_ID, "Entity ID", InputType::String, text).required()
        },
        {
            let text = "The navigation property (case-sensitive): a collection such as contact_customer_accounts, or a single-valued lookup such as parentaccountid.";
            input(
                NAVIGATION_PROPERTY,
                "Navigation Property",
                InputType::String,
                text,
            )
            .required()
            .example(json!("contact_customer_accounts"))
        },
        target_set,
        target_id,
        {
            let text = "On when the navigation property is a many-to-one lookup (parentaccountid, primarycontactid): associate sets it with PUT, disassociate clears it (no related record needed).";
            input(
                SINGLE_VALUED,
                "Single-Valued Lookup",
                InputType::Boolean,
                text,
            )
            .default(json!(false))
        },
    ]
    .into_iter()
    .chain(controls::inputs(OPERATION_KEYS))
    .collect()
}

pub const ASSOCIATE: Action = Action {
    def: ActionDef {
        key: "associate",
        label: "Associate Entities",
        description: "Links two records through a relationship's navigation property ($ref): adds to a one-to-many or many-to-many collection, or sets a single-valued lookup.",
        deprecated: false,
        input_defs: || inputs(true),
    },
    run: |s, i| associate(s, i).map(Output::from),
};

pub const DISASSOCIATE: Action = Action {
    def: ActionDef {
        key: "disassociate",
        label: "Disassociate Entities",
        description: "Removes the link between two records ($ref): from a collection-valued navigation property, or clears a single-valued lookup.",
        deprecated: false,
        input_defs: || inputs(false),
    },
    run: |s, i| disassociate(s, i).map(Output::from),
};

/// The validated inputs.
struct Link {
    set: EntitySet,
    key: EntityKey,
    nav: String,
    target: Option<(EntitySet, EntityKey)>,
    single: bool,
}

impl Link {
    fn parse(inputs: &Inputs, target_required: bool) -> Result<Link> {
        let set = EntitySet::parse(ENTITY_TYPE, inputs.expect_str(ENTITY_TYPE)?)?;
        let key = EntityKey::parse(ENTITY_ID, inputs.expect_str(ENTITY_ID)?)?;
        let nav = inputs
            .str(NAVIGATION_PROPERTY)?
            .unwrap_or("")
            .trim()
            .to_string();
        if !is_identifier(&nav) {
            return Err(ConnectorError::invalid_input(
                NAVIGATION_PROPERTY,
                format!("'{nav}' is not a navigation property name (letters, digits and _ only)"),
            ));
        }
        let single = inputs.bool(SINGLE_VALUED)?;
        let target_set = inputs
            .str(TARGET_ENTITY_TYPE)?
            .filter(|s| !s.trim().is_empty());
        let target_id = inputs.str(TARGET_ID)?.filter(|s| !s.trim().is_empty());
        let target = match (target_set, target_id) {
            (Some(s), Some(i)) => Some((
                EntitySet::parse(TARGET_ENTITY_TYPE, s)?,
                EntityKey::parse(TARGET_ID, i)?,
            )),
            (None, None) if !target_required => None,
            (None, _) => {
                return Err(ConnectorError::invalid_input(
                    TARGET_ENTITY_TYPE,
                    "is required with a related record",
                ));
            }
            (Some(_), None) => {
                return Err(ConnectorError::invalid_input(
                    TARGET_ID,
                    "is required with a related record",
                ));
            }
        };
        Ok(Link {
            set,
            key,
            nav,
            target,
            single,
        })
    }

    /// `set(key)/nav`
    fn nav_path(&self) -> String {
        format!("{}{}/{}", self.set, self.key.to_segment(), self.nav)
    }

    fn summary(&self, session: &Session<'_>, verb: &str) -> Result<Value> {
        let target = match &self.target {
            Some((s, k)) => Value::String(target_url(session, s, k)?),
            None => Value::Null,
        };
        Ok(json!({
            verb: true,
            "entityType": self.set.as_str(),
            "navigationProperty": self.nav,
            "target": target,
        }))
    }
}

/// The absolute URL of a record, as `@odata.id` and `$id` carry it.
fn target_url(session: &Session<'_>, set: &EntitySet, key: &EntityKey) -> Result<String> {
    Ok(session
        .web_api()
        .resource(&format!("{set}{}", key.to_segment()))?
        .to_string())
}

fn associate(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let link = Link::parse(inputs, true)?;
    let Some((set, key)) = &link.target else {
        return Err(ConnectorError::invalid_input(
            TARGET_ID,
            "is required to associate",
        ));
    };
    let body = json!({"@odata.id": target_url(session, set, key)?});
    let method = if link.single {
        Method::Put
    } else {
        Method::Post
    };
    let request = session
        .request(method, &format!("{}/$ref", link.nav_path()))?
        .json_body(&body);
    let c = controls::of(inputs, OPERATION_KEYS)?;
    session
        .send_ok(c.apply(request))
        .map_err(|e| c.explain(e))?;
    link.summary(session, "associated")
}

fn disassociate(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let link = Link::parse(inputs, false)?;
    let path = match (&link.target, link.single) {
        // A lookup is cleared whatever it points at.
        (_, true) => format!("{}/$ref", link.nav_path()),
        (Some((_, EntityKey::Id(id))), false) => format!("{}({id})/$ref", link.nav_path()),
        (Some((set, key)), false) => format!(
            "{}/$ref?$id={}",
            link.nav_path(),
            encode_query(&target_url(session, set, key)?)
        ),
        (None, false) => {
            return Err(ConnectorError::invalid_input(
                TARGET_ID,
                "is required to remove a record from a collection-valued navigation property (or turn on singleValued for a lookup)",
            ));
        }
    };
    let request = session.request(Method::Delete, &path)?;
    let c = controls::of(inputs, OPERATION_KEYS)?;
    session
        .send_ok(c.apply(request))
        .map_err(|e| c.explain(e))?;
    link.summary(session, "disassociated")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::def::ActionDef;

    fn input_of(r: Result<Link>) -> Option<String> {
        match r.err()?.kind {
            crate::error::ErrorKind::InvalidInput { input } => Some(input),
            _ => None,
        }
    }

    fn parse(def: &ActionDef, json: &str) -> Result<Link> {
        let inputs = Inputs::parse(def, json)?;
        Link::parse(&inputs, def.key == "associate")
    }

    #[test]
    fn names_and_ids_are_validated_before_sending() {
        let assoc = &ASSOCIATE.def;
        let base = r#""entityType":"accounts","entityId":"a0000000-0000-4000-8000-000000000001""#;
        let bad_nav = parse(
            assoc,
            &format!(
                r#"{{{base},"navigationProperty":"x/../y","targetEntityType":"contacts","targetId":"c0000000-0000-4000-8000-000000000001"}}"#
            ),
        );
        assert_eq!(input_of(bad_nav).as_deref(), Some("navigationProperty"));
        let bad_id = parse(
            assoc,
            &format!(
                r#"{{{base},"navigationProperty":"n","targetEntityType":"contacts","targetId":"not a guid"}}"#
            ),
        );
        assert_eq!(input_of(bad_id).as_deref(), Some("targetId"));
        let ok = parse(
            assoc,
            &format!(r#"{{{base},"navigationProperty":"contact_customer_accounts","targetEntityType":"contacts","targetId":"{{C0000000-0000-4000-8000-000000000001}}"}}"#),
        )
        .ok()
        .map(|l| l.nav_path());
        assert_eq!(
            ok.as_deref(),
            Some("accounts(a0000000-0000-4000-8000-000000000001)/contact_customer_accounts")
        );
    }
}
