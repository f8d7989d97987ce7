//! Seed for the service and sales tables (`schema/sales.rs`): an address,
//! notes, a case, a quote, an order and an invoice of seeded contact 1
//! (and a note on seeded lead 1), so those tables are not empty and a
//! search for someone else that over-matches shows up. No contacts or
//! leads are added: tests count those.

use super::{Changes, Store};
use serde_json::{Value, json};

pub const OTHER_ADDRESS: &str = "9a700000-0000-4000-8000-000000000003";
pub const OTHER_NOTE_CONTACT: &str = "9a700000-0000-4000-8000-000000000004";
pub const OTHER_NOTE_LEAD: &str = "9a700000-0000-4000-8000-000000000005";
pub const OTHER_CASE: &str = "9a700000-0000-4000-8000-000000000006";
pub const OTHER_QUOTE: &str = "9a700000-0000-4000-8000-000000000007";
pub const OTHER_ORDER: &str = "9a700000-0000-4000-8000-000000000008";
pub const OTHER_INVOICE: &str = "9a700000-0000-4000-8000-000000000009";

/// Adds the rows, linked to seeded `contact` and `lead`.
pub fn add(store: &mut Store, caller: &str, contact: &str, lead: &str, at: u64) {
    let mut put = |entity: &str, id: &str, values: Value, lookups: &[(&str, &str, &str)]| {
        let mut changes = Changes::default();
        if let Value::Object(m) = values {
            changes.values = m;
        }
        for (attr, target, target_id) in lookups {
            changes.lookups.insert(
                (*attr).to_string(),
                Some(((*target).to_string(), (*target_id).to_string())),
            );
        }
        if let Err(e) = store.create(entity, Some(id.to_string()), changes, caller, at) {
            panic!("seeding {entity} {id}: {e:?}");
        }
    };
    put(
        "customeraddress",
        OTHER_ADDRESS,
        json!({
            "name": "Home", "line1": "12 Other Street", "city": "Seattle",
            "postalcode": "98052", "telephone1": "+1 425 555 0100", "addressnumber": 3,
        }),
        &[("parentid", "contact", contact)],
    );
    put(
        "annotation",
        OTHER_NOTE_CONTACT,
        json!({"subject": "Call notes", "notetext": "Prefers email."}),
        &[("objectid", "contact", contact)],
    );
    put(
        "annotation",
        OTHER_NOTE_LEAD,
        json!({"subject": "Lead note", "notetext": "Met at the fair."}),
        &[("objectid", "lead", lead)],
    );
    put(
        "incident",
        OTHER_CASE,
        json!({"title": "Someone else's case", "ticketnumber": "CAS-0002",
               "description": "Unrelated.", "emailaddress": "someone@example.com"}),
        &[("customerid", "contact", contact)],
    );
    for (entity, id, name) in [
        ("quote", OTHER_QUOTE, "QUO-0001"),
        ("salesorder", OTHER_ORDER, "ORD-0001"),
        ("invoice", OTHER_INVOICE, "INV-0001"),
    ] {
        put(
            entity,
            id,
            json!({
                "name": name, "totalamount": 120.5, "billto_name": "Someone Else",
                "billto_line1": "12 Other Street", "billto_city": "Seattle",
                "billto_telephone": "+1 425 555 0100", "shipto_line1": "12 Other Street",
                "emailaddress": "someone@example.com",
            }),
            &[("customerid", "contact", contact)],
        );
    }
}
