//! Service and sales tables with personal data in them, for flows that
//! follow a person across Dataverse (data-privacy access and erasure
//! requests): customer addresses, notes, cases, quotes, orders and
//! invoices, each linked to contacts/accounts (notes also to leads and
//! cases) by the lookups Dataverse has. Kept apart from `schema.rs` so the
//! built-in list stays one registration line.

use super::{Columns, EntityDef, Ownership, Table};

/// The entities this file adds to the built-in schema.
pub fn entities() -> Vec<EntityDef> {
    vec![
        customeraddress(),
        annotation(),
        incident(),
        sales_document("quote", "quotes", "Quote", "Quotes", "quote"),
        sales_document("salesorder", "salesorders", "Order", "Orders", "order"),
        sales_document("invoice", "invoices", "Invoice", "Invoices", "invoice"),
    ]
}

impl Columns {
    /// `customerid`: account or contact, navigation `customerid_account` /
    /// `customerid_contact`, relationships `<rel>_customer_accounts` / `…_contacts`.
    fn customer(self, rel: &str) -> Self {
        self.lookup(
            "customerid",
            "Customer",
            &[
                (
                    "account",
                    "customerid_account",
                    &format!("{rel}_customer_accounts"),
                ),
                (
                    "contact",
                    "customerid_contact",
                    &format!("{rel}_customer_contacts"),
                ),
            ],
        )
    }
}

fn customeraddress() -> EntityDef {
    let e = "customeraddress";
    let attrs = Columns::of(e)
        .string("name", "Address Name", 200)
        .string("line1", "Street 1", 250)
        .string("line2", "Street 2", 250)
        .string("city", "City", 80)
        .string("postalcode", "ZIP/Postal Code", 20)
        .string("telephone1", "Main Phone", 50)
        .integer("addressnumber", "Address Number")
        .lookup(
            "parentid",
            "Parent",
            &[
                ("account", "parentid_account", "Account_CustomerAddress"),
                ("contact", "parentid_contact", "Contact_CustomerAddress"),
            ],
        )
        .system("customeraddress")
        .done();
    Table {
        logical_name: e,
        entity_set_name: "customeraddresses",
        schema_name: "CustomerAddress",
        display_name: "Address",
        display_collection_name: "Addresses",
        description: "Address and shipping information of a customer.",
        primary_name: "name",
        ownership: Ownership::UserOwned,
    }
    .entity(attrs, Vec::new())
}

fn annotation() -> EntityDef {
    let e = "annotation";
    let attrs = Columns::of(e)
        .string("subject", "Title", 500)
        .memo("notetext", "Description", 100_000)
        .string("filename", "File Name", 255)
        .lookup(
            "objectid",
            "Regarding",
            &[
                ("account", "objectid_account", "Account_Annotation"),
                ("contact", "objectid_contact", "Contact_Annotation"),
                ("lead", "objectid_lead", "Lead_Annotation"),
                ("incident", "objectid_incident", "Incident_Annotation"),
            ],
        )
        .system("annotation")
        .done();
    Table {
        logical_name: e,
        entity_set_name: "annotations",
        schema_name: "Annotation",
        display_name: "Note",
        display_collection_name: "Notes",
        description: "Note that is attached to one or more objects.",
        primary_name: "subject",
        ownership: Ownership::UserOwned,
    }
    .entity(attrs, Vec::new())
}

fn incident() -> EntityDef {
    let e = "incident";
    let attrs = Columns::of(e)
        .string("title", "Case Title", 200)
        .string("ticketnumber", "Case Number", 100)
        .memo("description", "Description", 2000)
        .string("emailaddress", "Email Address", 100)
        .customer("incident")
        .system("incident")
        .done();
    Table {
        logical_name: e,
        entity_set_name: "incidents",
        schema_name: "Incident",
        display_name: "Case",
        display_collection_name: "Cases",
        description: "Service request case associated with a contract.",
        primary_name: "title",
        ownership: Ownership::UserOwned,
    }
    .entity(attrs, Vec::new())
}

/// Quotes, orders and invoices share their bill-to/ship-to columns.
fn sales_document(
    e: &'static str,
    set: &'static str,
    display: &'static str,
    plural: &'static str,
    rel: &str,
) -> EntityDef {
    let attrs = Columns::of(e)
        .string("name", "Name", 300)
        .money("totalamount", "Total Amount")
        .string("billto_name", "Bill To Name", 200)
        .string("billto_line1", "Bill To Street 1", 250)
        .string("billto_city", "Bill To City", 80)
        .string("billto_telephone", "Bill To Phone", 50)
        .string("shipto_line1", "Ship To Street 1", 250)
        .string("emailaddress", "Email Address", 100)
        .customer(rel)
        .system(e)
        .done();
    let schema_name = match e {
        "quote" => "Quote",
        "salesorder" => "SalesOrder",
        _ => "Invoice",
    };
    Table {
        logical_name: e,
        entity_set_name: set,
        schema_name,
        display_name: display,
        display_collection_name: plural,
        description: "Sales document with the customer's billing and shipping details.",
        primary_name: "name",
        ownership: Ownership::UserOwned,
    }
    .entity(attrs, Vec::new())
}
