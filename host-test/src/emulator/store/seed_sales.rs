//! Seed for the service and sales tables (`schema/sales.rs`): one person,
//! Pat Privacy (`PRIVACY_EMAIL`), present as a contact and a lead, with an
//! address, notes, a case, a quote, a sales order and an invoice — what a
//! data-privacy access request has to find. Plus unrelated rows, so a search
//! that over-matches shows up.

use super::{Changes, Store};
use serde_json::{Value, json};

pub const PRIVACY_EMAIL: &str = "pat.privacy@example.org";
pub const PRIVACY_CONTACT: &str = "9a700000-0000-4000-8000-000000000001";
pub const PRIVACY_LEAD: &str = "9a700000-0000-4000-8000-000000000002";
pub const PRIVACY_ADDRESS: &str = "9a700000-0000-4000-8000-000000000003";
pub const PRIVACY_NOTE_CONTACT: &str = "9a700000-0000-4000-8000-000000000004";
pub const PRIVACY_NOTE_LEAD: &str = "9a700000-0000-4000-8000-000000000005";
pub const PRIVACY_CASE: &str = "9a700000-0000-4000-8000-000000000006";
pub const PRIVACY_QUOTE: &str = "9a700000-0000-4000-8000-000000000007";
pub const PRIVACY_ORDER: &str = "9a700000-0000-4000-8000-000000000008";
pub const PRIVACY_INVOICE: &str = "9a700000-0000-4000-8000-000000000009";
/// Another person's case, which no search for Pat may touch.
pub const OTHER_CASE: &str = "9a700000-0000-4000-8000-000000000010";

/// Adds the rows; `contact_1` is an unrelated seeded contact.
pub fn add(store: &mut Store, caller: &str, contact_1: &str, at: u64) {
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
        "contact",
        PRIVACY_CONTACT,
        json!({
            "firstname": "Pat", "lastname": "Privacy", "fullname": "Pat Privacy",
            "emailaddress1": PRIVACY_EMAIL, "telephone1": "+44 20 7946 0001",
            "address1_city": "London", "birthdate": "1984-03-09T00:00:00Z",
            "jobtitle": "Buyer",
        }),
        &[],
    );
    put(
        "lead",
        PRIVACY_LEAD,
        json!({
            "subject": "Pricing enquiry", "firstname": "Pat", "lastname": "Privacy",
            "emailaddress1": PRIVACY_EMAIL, "companyname": "Privacy Ltd",
        }),
        &[],
    );
    put(
        "customeraddress",
        PRIVACY_ADDRESS,
        json!({
            "name": "Home", "line1": "1 Privacy Row", "city": "London",
            "postalcode": "N1 1AA", "telephone1": "+44 20 7946 0002", "addressnumber": 3,
        }),
        &[("parentid", "contact", PRIVACY_CONTACT)],
    );
    put(
        "annotation",
        PRIVACY_NOTE_CONTACT,
        json!({"subject": "Call with Pat", "notetext": "Pat prefers calls after 5pm on +44 20 7946 0001."}),
        &[("objectid", "contact", PRIVACY_CONTACT)],
    );
    put(
        "annotation",
        PRIVACY_NOTE_LEAD,
        json!({"subject": "Lead note", "notetext": "Met Pat at the fair."}),
        &[("objectid", "lead", PRIVACY_LEAD)],
    );
    put(
        "incident",
        PRIVACY_CASE,
        json!({"title": "Delivery to Pat Privacy late", "ticketnumber": "CAS-0001",
               "description": "Parcel for 1 Privacy Row not delivered.", "emailaddress": PRIVACY_EMAIL}),
        &[("customerid", "contact", PRIVACY_CONTACT)],
    );
    put(
        "incident",
        OTHER_CASE,
        json!({"title": "Someone else's case", "ticketnumber": "CAS-0002",
               "description": "Unrelated.", "emailaddress": "someone@example.com"}),
        &[("customerid", "contact", contact_1)],
    );
    for (entity, id, name) in [
        ("quote", PRIVACY_QUOTE, "QUO-0001"),
        ("salesorder", PRIVACY_ORDER, "ORD-0001"),
        ("invoice", PRIVACY_INVOICE, "INV-0001"),
    ] {
        put(
            entity,
            id,
            json!({
                "name": name, "totalamount": 120.5, "billto_name": "Pat Privacy",
                "billto_line1": "1 Privacy Row", "billto_city": "London",
                "billto_telephone": "+44 20 7946 0001", "shipto_line1": "1 Privacy Row",
                "emailaddress": PRIVACY_EMAIL,
            }),
            &[("customerid", "contact", PRIVACY_CONTACT)],
        );
    }
}
