//! The emulator's record endpoints on the wire, without the connector (a
//! token from the real component, requests by hand): writes, conditional
//! requests, navigation and expand paging, and the query quirks of
//! Dataverse. The record actions themselves are in `records.rs`.

mod common;

use common::Env;
use common::wire::{Fact::*, Req, Wire};
use host_test::emulator::Config;
use host_test::emulator::store::seed;
use serde_json::json;

#[tokio::test]
async fn emulator_writes_follow_dataverse() {
    let env = Env::new();
    let w = Wire::new(&env).await;
    let id = "11111111-2222-4333-8444-555555555555";
    let repr = "return=representation";
    // Each request in turn, with what Dataverse answers to it.
    let cases = [
        (
            "create: 204 + OData-EntityId",
            Req::new("POST", "accounts").json(json!({"name":"W1"})),
            vec![
                Status(204),
                HeaderStartsWith("OData-EntityId", "http://localhost/api/data/v9.2/accounts("),
            ],
        ),
        (
            "create with representation: 201 + body",
            Req::new("POST", "accounts?$select=name")
                .prefer(repr)
                .json(json!({"name":"W2"})),
            vec![
                Status(201),
                Header("Preference-Applied", repr),
                EndsWith("/@odata.context", "$metadata#accounts(name)/$entity"),
            ],
        ),
        (
            "upsert by alternate key echoes the key form",
            Req::new("PATCH", "accounts(accountnumber='K-1')").json(json!({"name":"K"})),
            vec![
                Status(204),
                Header(
                    "OData-EntityId",
                    "http://localhost/api/data/v9.2/accounts(accountnumber='K-1')",
                ),
            ],
        ),
        (
            "upsert with representation: 201 when created",
            Req::new("PATCH", format!("accounts({id})"))
                .prefer(repr)
                .json(json!({"name":"U"})),
            vec![Status(201)],
        ),
        (
            "upsert with representation: 200 when updated",
            Req::new("PATCH", format!("accounts({id})"))
                .prefer(repr)
                .json(json!({"name":"U2"})),
            vec![Status(200)],
        ),
        (
            "If-None-Match: * on an existing record",
            Req::new("PATCH", format!("accounts({id})"))
                .header("If-None-Match", "*")
                .json(json!({"name":"U3"})),
            vec![Status(412), Json("/error/code", json!("0x80040237"))],
        ),
        (
            "If-Match: * on a missing record",
            Req::new("PATCH", "accounts(99999999-2222-4333-8444-555555555555)")
                .header("If-Match", "*")
                .json(json!({"name":"U"})),
            vec![Status(404), Json("/error/code", json!("0x80040217"))],
        ),
        (
            "duplicate alternate key on create",
            Req::new("POST", "accounts").json(json!({"accountnumber":"A-1"})),
            vec![Status(412)],
        ),
        (
            "unknown attribute",
            Req::new("POST", "accounts").json(json!({"bogus":1})),
            vec![Status(400), Json("/error/code", json!("0x80060888"))],
        ),
        (
            "bind to an unknown set",
            Req::new("POST", "accounts")
                .json(json!({"primarycontactid@odata.bind":"/nosuchset(1)"})),
            vec![Status(400)],
        ),
    ];
    for (what, req, facts) in cases {
        w.expect(what, req, &facts).await;
    }

    // ETags: a conditional GET answers 304; a stale If-Match is 412.
    let record = format!("accounts({id})?$select=name");
    let etag = w.send(Req::get(&record)).await.string("/@odata.etag");
    let if_none_match = |req: Req| req.header("If-None-Match", &etag);
    let if_match = |req: Req| req.header("If-Match", &etag);
    let patch =
        |name: &str| Req::new("PATCH", format!("accounts({id})")).json(json!({"name": name}));
    let cases = [
        (
            "a conditional GET of an unchanged record",
            if_none_match(Req::get(&record)),
            vec![Status(304)],
        ),
        (
            "an update with the current etag",
            if_match(patch("U4")),
            vec![Status(204)],
        ),
        (
            "the etag changed with the update",
            if_match(patch("U5")),
            vec![Status(412)],
        ),
        (
            "a conditional GET of a changed record",
            if_none_match(Req::get(&record)),
            vec![Status(200), Json("/name", json!("U4"))],
        ),
    ];
    for (what, req, facts) in cases {
        w.expect(what, req, &facts).await;
    }

    // Navigation properties and single columns can be read directly, and the
    // per-row nextLink of a collection $expand is such a URL.
    let account = seed::account_id(1);
    let r = w
        .send(Req::get(format!(
            "accounts({account})?$select=name&$expand=contact_customer_accounts($select=fullname)"
        )))
        .await;
    let link = r.string("/contact_customer_accounts@odata.nextLink");
    let expanded = r.ids("/contact_customer_accounts", "contactid");
    let r = w
        .expect(
            "the expand's nextLink",
            Req::get(link).prefer("odata.maxpagesize=2"),
            &[Status(200)],
        )
        .await;
    assert_eq!(r.ids("/value", "contactid"), expanded[..2].to_vec());
    let next = r.string("/@odata.nextLink");
    assert!(
        next.contains(&format!("accounts({account})/contact_customer_accounts?")),
        "{next}"
    );
    w.expect(
        "a single-valued navigation property",
        Req::get(format!(
            "accounts({account})/primarycontactid?$select=fullname"
        )),
        &[Json("/contactid", json!(seed::contact_id(1)))],
    )
    .await;
    w.expect(
        "a single column",
        Req::get(format!("accounts({account})/name")),
        &[Json("/value", json!("Contoso"))],
    )
    .await;
    // A nested expand pages every expanded collection by maxpagesize.
    let r = w
        .expect(
            "a nested expand",
            Req::get(format!("accounts({account})?$select=name&$expand=contact_customer_accounts($select=fullname;$expand=parentcustomerid_account($select=name))"))
                .prefer("odata.maxpagesize=2"),
            &[
                Len("/contact_customer_accounts", 2),
                Json(
                    "/contact_customer_accounts/0/parentcustomerid_account/accountid",
                    json!(account),
                ),
                Contains("/contact_customer_accounts@odata.nextLink", "$skiptoken="),
            ],
        )
        .await;
    let link = r.string("/contact_customer_accounts@odata.nextLink");
    let r = w.send(Req::get(link).prefer("odata.maxpagesize=2")).await;
    assert_eq!(r.ids("/value", "contactid"), expanded[2..].to_vec());

    // DELETE → 204, then 404; unknown set → 404 0x8006088a.
    let cases = [
        (
            "a delete",
            Req::new("DELETE", format!("accounts({id})")),
            vec![Status(204)],
        ),
        (
            "the same delete again",
            Req::new("DELETE", format!("accounts({id})")),
            vec![Status(404)],
        ),
        (
            "an unknown entity set",
            Req::get("nosuchset"),
            vec![Json("/error/code", json!("0x8006088a"))],
        ),
    ];
    for (what, req, facts) in cases {
        w.expect(what, req, &facts).await;
    }
}

#[tokio::test]
async fn emulator_query_quirks_follow_dataverse() {
    let env = Env::with_config(Config {
        generated_records: 6_000,
        ..Default::default()
    });
    let w = Wire::new(&env).await;
    w.expect(
        "$skip is rejected",
        Req::get("accounts?$skip=10"),
        &[Status(400)],
    )
    .await;
    let r = w
        .expect(
            "$top is ignored when odata.maxpagesize is sent",
            Req::get("accounts?$select=name&$top=2").prefer("odata.maxpagesize=5"),
            &[
                Len("/value", 5),
                Header("Preference-Applied", "odata.maxpagesize=5"),
                // The token is the XML cookie, URL-encoded once more in the link.
                Contains(
                    "/@odata.nextLink",
                    "$skiptoken=%3Ccookie%20pagenumber=%222%22%20pagingcookie=%22%25253ccookie%252520page%25253d%2525221%252522",
                ),
                EndsWith("/@odata.nextLink", "istracking=%22False%22%20/%3E"),
            ],
        )
        .await;
    // Following it gives the next five, none repeated.
    let first = r.ids("/value", "accountid");
    let r2 = w
        .expect(
            "the next page",
            Req::get(r.string("/@odata.nextLink")).prefer("odata.maxpagesize=5"),
            &[Len("/value", 5)],
        )
        .await;
    assert!(
        r2.ids("/value", "accountid")
            .iter()
            .all(|s| !first.contains(s))
    );
    // Default page size 5000; @odata.count caps at 5000; totalrecordcount -1 without $count.
    let annotations = "odata.include-annotations=\"Microsoft.Dynamics.CRM.totalrecordcount,Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded\"";
    let cases = [
        (
            "$top alone caps, without a next link",
            Req::get("accounts?$select=name&$top=2"),
            vec![Len("/value", 2), Absent("/@odata.nextLink")],
        ),
        (
            "$count=true past 5000",
            Req::get("accounts?$select=name&$count=true").prefer(annotations),
            vec![
                Len("/value", 5000),
                Json("/@odata.count", json!(5000)),
                Json("/@Microsoft.Dynamics.CRM.totalrecordcount", json!(5000)),
                Json(
                    "/@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded",
                    json!(true),
                ),
                Str("/@odata.nextLink"),
            ],
        ),
        (
            "no $count",
            Req::get("accounts?$select=name&$top=1").prefer(annotations),
            vec![Json("/@Microsoft.Dynamics.CRM.totalrecordcount", json!(-1))],
        ),
        (
            "a filter error carries its position",
            Req::get("accounts?$filter=name%20eq%20'O'Bryan'"),
            vec![
                Status(400),
                Json(
                    "/error/message",
                    json!(
                        "There is an unterminated literal at position 17 in 'name eq 'O'Bryan''."
                    ),
                ),
            ],
        ),
        (
            "an unknown property in $select",
            Req::get("accounts?$select=foo"),
            vec![Json(
                "/error/message",
                json!(
                    "Could not find a property named 'foo' on type 'Microsoft.Dynamics.CRM.account'."
                ),
            )],
        ),
        (
            "directory users are systemusers records",
            Req::get(format!(
                "systemusers({})?$select=fullname",
                host_test::emulator::data::USER_APP
            )),
            vec![Status(200), Contains("/fullname", "application user")],
        ),
    ];
    for (what, req, facts) in cases {
        w.expect(what, req, &facts).await;
    }
    // LastXDays and Between work against seeded dates and numbers.
    let r = w.expect("LastXDays and Between", Req::get("accounts?$select=name&$filter=Microsoft.Dynamics.CRM.LastXDays(PropertyName='createdon',PropertyValue=3)%20and%20Microsoft.Dynamics.CRM.Between(PropertyName='revenue',PropertyValues=[%22100000%22,%22300000%22])"), &[Status(200)]).await;
    assert!(!r.array("/value").is_empty(), "{}", r.body);
}

#[tokio::test]
async fn paging_resumes_after_a_row_deleted_between_pages() {
    let env = Env::new();
    let w = Wire::new(&env).await;
    let query = "contacts?$select=fullname&$orderby=fullname%20desc";
    let r = w.send(Req::get(query).prefer("odata.maxpagesize=10")).await;
    let page1 = r.ids("/value", "contactid");
    let next = r.string("/@odata.nextLink");
    // Everything in order, for comparison.
    let all = w.send(Req::get(query)).await.ids("/value", "contactid");
    // The last row of page 1 disappears before page 2 is read.
    let last = page1.last().unwrap();
    w.expect(
        "deleting the last row of page 1",
        Req::new("DELETE", format!("contacts({last})")),
        &[Status(204)],
    )
    .await;
    let page2 = w
        .send(Req::get(next).prefer("odata.maxpagesize=10"))
        .await
        .ids("/value", "contactid");
    assert_eq!(
        page2,
        all[10..20].to_vec(),
        "page 2 starts right after the deleted row"
    );
}
