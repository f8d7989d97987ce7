//! Deterministic demo data: the directory's business units and users as
//! records, 60 accounts (alternate key `accountnumber` = `A-1` … `A-60`),
//! 150 contacts (one is Siobhan O'Brien), 50 leads and 40 opportunities,
//! plus `generated` synthetic accounts for paging and benchmarks. Ids are
//! fixed so tests and docs can name them.

use super::schema::{Schema, sdk};
use super::{Changes, Store};
use crate::emulator::data::{self, Directory};
use serde_json::{Value, json};

pub const ACCOUNTS: usize = 60;
pub const CONTACTS: usize = 150;
pub const LEADS: usize = 50;
pub const OPPORTUNITIES: usize = 40;

/// Siobhan O'Brien, a contact whose last name needs quote escaping.
pub const CONTACT_OBRIEN: &str = "c0000000-0000-4000-8000-000000000007";

/// The id of seeded account `n` (1-based).
pub fn account_id(n: usize) -> String {
    format!("a0000000-0000-4000-8000-{n:012x}")
}

pub fn contact_id(n: usize) -> String {
    format!("c0000000-0000-4000-8000-{n:012x}")
}

pub fn lead_id(n: usize) -> String {
    format!("1ead0000-0000-4000-8000-{n:012x}")
}

pub fn opportunity_id(n: usize) -> String {
    format!("09900000-0000-4000-8000-{n:012x}")
}

/// The id of generated account `n` (1-based); they sort after the seeded ones.
pub fn generated_account_id(n: usize) -> String {
    format!("b0000000-0000-4000-8000-{n:012x}")
}

const COMPANIES: [&str; 20] = [
    "Contoso",
    "Fabrikam",
    "Adventure Works",
    "Northwind Traders",
    "Litware",
    "Tailspin Toys",
    "Wide World Importers",
    "Proseware",
    "Alpine Ski House",
    "Coho Winery",
    "Fourth Coffee",
    "Graphic Design Institute",
    "Humongous Insurance",
    "Lucerne Publishing",
    "Margie's Travel",
    "Trey Research",
    "Woodgrove Bank",
    "Blue Yonder Airlines",
    "City Power & Light",
    "Relecloud",
];
const SUFFIXES: [&str; 3] = ["", " Ltd", " Group"];
const CITIES: [&str; 8] = [
    "Seattle", "Redmond", "London", "Paris", "Berlin", "Dublin", "Madrid", "Toronto",
];
const FIRST: [&str; 15] = [
    "Ana", "Ben", "Cara", "Dev", "Eve", "Finn", "Gia", "Hugo", "Ivy", "Jon", "Kai", "Lea", "Max",
    "Nia", "Oscar",
];
const LAST: [&str; 10] = [
    "Ruiz", "Ode", "Lind", "Patel", "Smith", "Kowalski", "Nguyen", "Schmidt", "Rossi", "Tanaka",
];

const DAY: u64 = 86_400;

/// The seeded store. `now` is the emulator clock: creation dates spread
/// over the days before it, so relative date filters (LastXDays) find rows.
pub fn seeded(directory: &Directory, generated: usize, now: u64) -> Store {
    let mut store = Store::new(Schema::builtin());
    let sys = data::USER_ANA;
    let owners = [data::USER_ANA, data::USER_BEN, data::USER_CARA];
    let put = |store: &mut Store,
               entity: &str,
               id: String,
               values: Value,
               lookups: &[(&str, &str, String)],
               caller: &str,
               at: u64| {
        let mut changes = Changes::default();
        if let Value::Object(map) = values {
            changes.values = map;
        }
        for (attr, target, tid) in lookups {
            changes
                .lookups
                .insert(attr.to_string(), Some((target.to_string(), tid.clone())));
        }
        // Seed data is well-formed by construction; a failure is a bug in
        // this file, reported loudly in every test.
        if let Err(e) = store.create(entity, Some(id.clone()), changes, caller, at) {
            panic!("seeding {entity} {id}: {e:?}");
        }
    };

    for bu in &directory.business_units {
        let lookups: Vec<(&str, &str, String)> = bu
            .parent
            .map(|p| ("parentbusinessunitid", "businessunit", p.to_string()))
            .into_iter()
            .collect();
        put(
            &mut store,
            "businessunit",
            bu.id.into(),
            json!({"name": bu.name}),
            &lookups,
            sys,
            now - 400 * DAY,
        );
    }
    for u in &directory.users {
        put(
            &mut store,
            "systemuser",
            u.id.into(),
            json!({
                "fullname": u.fullname,
                "domainname": u.domainname,
                "internalemailaddress": u.domainname,
                "azureactivedirectoryobjectid": u.entra_object_id,
                "applicationid": u.application_id,
                "isdisabled": false,
            }),
            &[(
                "businessunitid",
                "businessunit",
                u.business_unit.to_string(),
            )],
            sys,
            now - 400 * DAY,
        );
    }

    for n in 1..=ACCOUNTS {
        let name = format!(
            "{}{}",
            COMPANIES[(n - 1) % COMPANIES.len()],
            SUFFIXES[((n - 1) / COMPANIES.len()) % SUFFIXES.len()]
        );
        let owner = owners[n % owners.len()];
        put(
            &mut store,
            "account",
            account_id(n),
            json!({
                "name": name,
                "accountnumber": format!("A-{n}"),
                "telephone1": format!("+1 555 01{n:02}"),
                "emailaddress1": format!("info{n}@{}.example.com", COMPANIES[(n - 1) % COMPANIES.len()].to_lowercase().replace([' ', '\'', '&'], "")),
                "address1_city": CITIES[n % CITIES.len()],
                "revenue": (n as f64) * 125_000.0,
                "numberofemployees": (n * 37) % 5000 + 5,
                "creditonhold": n % 7 == 0,
                "accountcategorycode": if n % 3 == 0 { 1 } else { 2 },
                "industrycode": (n % 8) + 1,
                "description": format!("Seeded account number {n}."),
            }),
            &[("ownerid", "systemuser", owner.to_string())],
            owner,
            now - (n as u64) * DAY,
        );
    }
    for n in 1..=CONTACTS {
        let (first, last) = if contact_id(n) == CONTACT_OBRIEN {
            ("Siobhan", "O'Brien")
        } else {
            (
                FIRST[(n - 1) % FIRST.len()],
                LAST[(n - 1) / FIRST.len() % LAST.len()],
            )
        };
        let account = account_id((n - 1) % ACCOUNTS + 1);
        let owner = owners[n % owners.len()];
        put(
            &mut store,
            "contact",
            contact_id(n),
            json!({
                "firstname": first,
                "lastname": last,
                "emailaddress1": format!("{}.{}{n}@example.com", first.to_lowercase(), last.to_lowercase().replace('\'', "")),
                "jobtitle": (["Buyer", "CEO", "Engineer", "Analyst"][n % 4]),
                "address1_city": CITIES[n % CITIES.len()],
                "birthdate": format!("19{:02}-{:02}-{:02}T00:00:00Z", 60 + n % 40, n % 12 + 1, n % 28 + 1),
                "gendercode": if n % 2 == 0 { 2 } else { 1 },
                "donotemail": n % 5 == 0,
            }),
            &[
                ("parentcustomerid", "account", account),
                ("ownerid", "systemuser", owner.to_string()),
            ],
            owner,
            now - (n as u64 % 90) * DAY - 3600,
        );
    }
    // Each account's primary contact is its first contact.
    for n in 1..=ACCOUNTS {
        let mut changes = Changes::default();
        changes.lookups.insert(
            "primarycontactid".into(),
            Some(("contact".into(), contact_id(n))),
        );
        if let Err(e) = store.update(
            "account",
            &account_id(n),
            changes,
            sys,
            now - (n as u64) * DAY,
        ) {
            panic!("seeding primary contact of account {n}: {e:?}");
        }
    }
    for n in 1..=LEADS {
        let (first, last) = (FIRST[(n + 3) % FIRST.len()], LAST[(n + 1) % LAST.len()]);
        put(
            &mut store,
            "lead",
            lead_id(n),
            json!({
                "subject": format!("Interested in product line {}", n % 6 + 1),
                "firstname": first,
                "lastname": last,
                "companyname": COMPANIES[(n + 5) % COMPANIES.len()],
                "emailaddress1": format!("lead{n}@example.net"),
                "estimatedamount": (n as f64) * 4_000.0,
                "leadsourcecode": ([1, 2, 3, 4, 8][n % 5]),
            }),
            &[
                (
                    "parentaccountid",
                    "account",
                    account_id((n - 1) % ACCOUNTS + 1),
                ),
                ("ownerid", "systemuser", owners[n % 3].to_string()),
            ],
            owners[n % 3],
            now - (n as u64 % 30) * DAY - 7200,
        );
    }
    for n in 1..=OPPORTUNITIES {
        let account = account_id((n * 7 - 1) % ACCOUNTS + 1);
        put(
            &mut store,
            "opportunity",
            opportunity_id(n),
            json!({
                "name": format!("{} units for {}", n * 10, COMPANIES[(n * 7 - 1) % COMPANIES.len()]),
                "estimatedvalue": (n as f64) * 15_500.0,
                "estimatedclosedate": format!("2026-{:02}-{:02}T00:00:00Z", n % 12 + 1, n % 28 + 1),
                "closeprobability": (n * 13) % 100,
            }),
            &[
                ("customerid", "account", account.clone()),
                ("parentaccountid", "account", account),
                ("ownerid", "systemuser", owners[n % 3].to_string()),
            ],
            owners[n % 3],
            now - (n as u64 % 60) * DAY - 600,
        );
    }
    for n in 1..=generated {
        put(
            &mut store,
            "account",
            generated_account_id(n),
            json!({
                "name": format!("Generated Account {n:06}"),
                "accountnumber": format!("G-{n}"),
                "revenue": ((n % 1000) as f64) * 1_000.0,
                "numberofemployees": n % 10_000,
                "address1_city": CITIES[n % CITIES.len()],
                "creditonhold": false,
                "accountcategorycode": 2,
            }),
            &[("ownerid", "systemuser", sys.to_string())],
            sys,
            now - (n as u64 % 365) * DAY,
        );
    }
    super::seed_sales::add(&mut store, sys, &contact_id(1), &lead_id(1), now - 5 * DAY);
    // The SDK message catalogue a webhook registration looks ids up in
    // (`schema/sdk.rs`): one sdkmessage per message, one sdkmessagefilter
    // per message and table.
    let tables: Vec<&'static str> = store
        .schema()
        .entities
        .iter()
        .map(|e| e.logical_name)
        .filter(|t| !sdk::REGISTRATION_TABLES.contains(t))
        .collect();
    for (message, only) in sdk::MESSAGES {
        let mid = sdk::message_id(message);
        put(
            &mut store,
            "sdkmessage",
            mid.clone(),
            json!({"name": message}),
            &[],
            sys,
            now - 400 * DAY,
        );
        let on: Vec<&str> = match only {
            Some(t) => vec![t],
            None => tables.clone(),
        };
        for table in on {
            put(
                &mut store,
                "sdkmessagefilter",
                sdk::filter_id(message, table),
                json!({
                    "name": format!("{message} {table}"),
                    "primaryobjecttypecode": table,
                    "secondaryobjecttypecode": "none",
                    "iscustomprocessingstepallowed": true,
                }),
                &[("sdkmessageid", "sdkmessage", mid.clone())],
                sys,
                now - 400 * DAY,
            );
        }
    }
    store
}
