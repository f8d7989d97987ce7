//! Service and sales tables with personal data in them, for flows that
//! follow a person across Dataverse (data-privacy access and erasure
//! requests): customer addresses, notes, cases, quotes, orders and
//! invoices, each linked to contacts/accounts (notes also to leads and
//! cases) by the lookups Dataverse has. Kept apart from `schema.rs` so the
//! built-in list stays one registration line.

use super::{AttributeKind, EntityDef, Ownership, attr, entity, lookup, string, system_columns};

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

fn memo(n: u32) -> AttributeKind {
    AttributeKind::Memo { max_length: n }
}

/// `customerid`: account or contact, navigation `customerid_account` /
/// `customerid_contact`, relationships `<rel>_customer_accounts` / `…_contacts`.
fn customer(e: &str, rel: &str) -> super::AttributeDef {
    attr(
        e,
        "customerid",
        "Customer",
        lookup(&[
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
        ]),
    )
}

fn customeraddress() -> EntityDef {
    let e = "customeraddress";
    let mut attrs = vec![
        attr(e, "name", "Address Name", string(200)),
        attr(e, "line1", "Street 1", string(250)),
        attr(e, "line2", "Street 2", string(250)),
        attr(e, "city", "City", string(80)),
        attr(e, "postalcode", "ZIP/Postal Code", string(20)),
        attr(e, "telephone1", "Main Phone", string(50)),
        attr(e, "addressnumber", "Address Number", AttributeKind::Integer),
        attr(
            e,
            "parentid",
            "Parent",
            lookup(&[
                ("account", "parentid_account", "Account_CustomerAddress"),
                ("contact", "parentid_contact", "Contact_CustomerAddress"),
            ]),
        ),
    ];
    attrs.extend(system_columns(e, "customeraddress"));
    entity(
        e,
        "customeraddresses",
        "CustomerAddress",
        "Address",
        "Addresses",
        "Address and shipping information of a customer.",
        "name",
        Ownership::UserOwned,
        attrs,
        Vec::new(),
    )
}

fn annotation() -> EntityDef {
    let e = "annotation";
    let mut attrs = vec![
        attr(e, "subject", "Title", string(500)),
        attr(e, "notetext", "Description", memo(100_000)),
        attr(e, "filename", "File Name", string(255)),
        attr(
            e,
            "objectid",
            "Regarding",
            lookup(&[
                ("account", "objectid_account", "Account_Annotation"),
                ("contact", "objectid_contact", "Contact_Annotation"),
                ("lead", "objectid_lead", "Lead_Annotation"),
                ("incident", "objectid_incident", "Incident_Annotation"),
            ]),
        ),
    ];
    attrs.extend(system_columns(e, "annotation"));
    entity(
        e,
        "annotations",
        "Annotation",
        "Note",
        "Notes",
        "Note that is attached to one or more objects.",
        "subject",
        Ownership::UserOwned,
        attrs,
        Vec::new(),
    )
}

fn incident() -> EntityDef {
    let e = "incident";
    let mut attrs = vec![
        attr(e, "title", "Case Title", string(200)),
        attr(e, "ticketnumber", "Case Number", string(100)),
        attr(e, "description", "Description", memo(2000)),
        attr(e, "emailaddress", "Email Address", string(100)),
        customer(e, "incident"),
    ];
    attrs.extend(system_columns(e, "incident"));
    entity(
        e,
        "incidents",
        "Incident",
        "Case",
        "Cases",
        "Service request case associated with a contract.",
        "title",
        Ownership::UserOwned,
        attrs,
        Vec::new(),
    )
}

/// Quotes, orders and invoices share their bill-to/ship-to columns.
fn sales_document(
    e: &'static str,
    set: &'static str,
    display: &'static str,
    plural: &'static str,
    rel: &str,
) -> EntityDef {
    let mut attrs = vec![
        attr(e, "name", "Name", string(300)),
        attr(e, "totalamount", "Total Amount", AttributeKind::Money),
        attr(e, "billto_name", "Bill To Name", string(200)),
        attr(e, "billto_line1", "Bill To Street 1", string(250)),
        attr(e, "billto_city", "Bill To City", string(80)),
        attr(e, "billto_telephone", "Bill To Phone", string(50)),
        attr(e, "shipto_line1", "Ship To Street 1", string(250)),
        attr(e, "emailaddress", "Email Address", string(100)),
        customer(e, rel),
    ];
    attrs.extend(system_columns(e, e));
    let schema_name = match e {
        "quote" => "Quote",
        "salesorder" => "SalesOrder",
        _ => "Invoice",
    };
    entity(
        e,
        set,
        schema_name,
        display,
        plural,
        "Sales document with the customer's billing and shipping details.",
        "name",
        Ownership::UserOwned,
        attrs,
        Vec::new(),
    )
}
