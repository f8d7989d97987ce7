//! `invoke` end to end (natively): an action key from the catalog or
//! garbage, arbitrary connection settings, token state and inputs, against a
//! fake HTTP layer whose every answer (status, headers, body, transport
//! failure) comes from the fuzz data. The fake answers at most 24 requests
//! and never really sleeps.
#![no_main]

use arbitrary::Unstructured;
use d365_connector::catalog;
use d365_connector::connection::{ConnectionType, TokenState};
use d365_fuzz::{
    CANARY_REFRESH, CANARY_SECRET, CANARY_TOKEN, FakePlatform, assert_no_canary, batch_item, json,
    object_with_keys, string,
};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

/// Values that get past the first checks of inputs with these keys.
fn plausible(u: &mut Unstructured<'_>, key: &str) -> arbitrary::Result<Option<Value>> {
    let s = |v: &str| Some(Value::String(v.to_string()));
    Ok(match key {
        "entityType" | "targetEntityType" | "boundEntitySet" => {
            s(u.choose(&["accounts", "contacts", "account", "EntityDefinitions"])?)
        }
        "entityId" | "targetId" | "boundId" => s(u.choose(&[
            "00000000-0000-0000-0000-000000000001",
            "{9A1D2B3C-0000-4000-8000-00000000ABCD}",
            "accountnumber='A-1'",
            "k1='x',k2=2",
            "LogicalName='account'",
        ])?),
        "fetchXml" => s(u.choose(&[
            "<fetch><entity name='account'><attribute name='name'/></entity></fetch>",
            "<fetch page='2' count='10'><entity name='account'><order attribute='name'/></entity></fetch>",
            "<fetch top='5'><entity name='contact'/></fetch>",
            "<fetch aggregate='true'><entity name='account'><attribute name='name' aggregate='count' alias='n'/></entity></fetch>",
        ])?),
        "batchActions" => {
            let n = u.int_in_range(1..=4u8)?;
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(batch_item(u)?);
            }
            Some(Value::Array(items))
        }
        "nextPage" | "nextLink" | "state" | "url" => s(u.choose(&[
            "https://org.crm.dynamics.com/api/data/v9.2/accounts?$skiptoken=1",
            "https://org.crm.dynamics.com/api/data/v9.2/accounts?$deltatoken=9",
            "/api/data/v9.2/accounts",
            "accounts?$select=name",
            "WhoAmI",
            "2",
            "2:<cookie page=\"1\"><accountid last=\"{X}\" first=\"{Y}\" /></cookie>",
        ])?),
        "method" => s(u.choose(&["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"])?),
        "name" => s(u.choose(&["WhoAmI", "WinOpportunity", "Microsoft.Dynamics.CRM.WinOpportunity"])?),
        "kind" => s(u.choose(&["action", "function"])?),
        "fieldValues" | "data" | "parameters" | "attributeBody" => Some(
            object_with_keys(u, &["name", "revenue", "parentaccountid@odata.bind", "@odata.type", "SchemaName"], 1)?,
        ),
        _ => None,
    })
}

/// A value for an input of this type: usually plausible, sometimes not.
fn input_value(
    u: &mut Unstructured<'_>,
    key: &str,
    ty: catalog::def::InputType,
) -> arbitrary::Result<Value> {
    use catalog::def::InputType as T;
    if u.ratio(1u8, 6u8)? {
        return json(u, 2);
    }
    if u.ratio(2u8, 3u8)? {
        if let Some(v) = plausible(u, key)? {
            return Ok(v);
        }
    }
    Ok(match ty {
        T::Boolean => Value::Bool(u.arbitrary()?),
        T::Integer => Value::from(u.int_in_range(-2i64..=6000)?),
        T::List => Value::Array(
            (0..u.int_in_range(0..=3u8)?)
                .map(|_| string(u).map(Value::String))
                .collect::<arbitrary::Result<_>>()?,
        ),
        T::Json | T::KeyValueList => json(u, 3)?,
        T::String | T::Code | T::Password => Value::String(string(u)?),
    })
}

fuzz_target!(|data: &[u8]| {
    // The first half drives the call, the rest the fake server.
    let split = data.len() / 2;
    let (call, server) = data.split_at(split);
    let mut u = Unstructured::new(call);
    let cat = catalog::catalog();
    let Ok(pick) = u.int_in_range(0..=cat.actions.len()) else {
        return;
    };
    let def = cat.actions.get(pick);
    let key = match def {
        Some(d) => d.key.to_string(),
        None => string(&mut u).unwrap_or_default(),
    };
    let kind = if u.ratio(3u8, 4u8).unwrap_or(true) {
        ConnectionType::ClientCredentials
    } else {
        ConnectionType::AuthCode
    };
    let mut settings = serde_json::json!({
        "webApiUrl": "https://org.crm.dynamics.com",
        "clientId": "00000000-0000-0000-0000-0000000000c1",
        "clientSecret": CANARY_SECRET,
        "tokenUrl": "https://login.microsoftonline.com/t/oauth2/v2.0/token",
    });
    if u.ratio(1u8, 4u8).unwrap_or(false) {
        let extra = d365_fuzz::object_with_keys(
            &mut u,
            &[
                "retryPolicy",
                "allowedOperations",
                "scopes",
                "webApiUrl",
                "region",
                "redirectUri",
            ],
            2,
        )
        .unwrap_or(Value::Null);
        if let (Value::Object(s), Value::Object(e)) = (&mut settings, extra) {
            s.extend(e);
        }
    }
    let settings_json = if u.ratio(1u8, 20u8).unwrap_or(false) {
        string(&mut u).unwrap_or_default()
    } else {
        settings.to_string()
    };
    let state = match u.int_in_range(0..=5u8).unwrap_or(0) {
        0 => None,
        1 => Some(TokenState {
            access_token: CANARY_TOKEN.into(),
            expires_at: 0,
            refresh_token: Some(CANARY_REFRESH.into()),
            scope: None,
        }),
        _ => Some(TokenState {
            access_token: CANARY_TOKEN.into(),
            expires_at: 1_800_000_000,
            refresh_token: Some(CANARY_REFRESH.into()),
            scope: None,
        }),
    };
    let inputs = match def {
        Some(d) if u.ratio(7u8, 8u8).unwrap_or(true) => {
            let mut map = Map::new();
            for input in &d.inputs() {
                let present = input.required || u.arbitrary().unwrap_or(false);
                if present {
                    if let Ok(v) = input_value(&mut u, input.key, input.ty) {
                        map.insert(input.key.to_string(), v);
                    }
                }
            }
            Value::Object(map).to_string()
        }
        _ => json(&mut u, 3).unwrap_or(Value::Null).to_string(),
    };

    let mut platform = FakePlatform::new(server, 24);
    let result = d365_connector::invoke(&mut platform, &key, kind, &settings_json, state, &inputs);
    assert!(
        platform.sent <= 64,
        "{} requests for one call",
        platform.sent
    );
    // Secrets never come back unless the (fake) server or the caller wrote
    // them somewhere they may be echoed from.
    // The settings hold the client secret once, in its own slot; a canary
    // anywhere else in them (say in webApiUrl) was written by the caller.
    let caller_wrote = [CANARY_SECRET, CANARY_TOKEN, CANARY_REFRESH]
        .iter()
        .any(|c| {
            let own_slot = usize::from(*c == CANARY_SECRET);
            inputs.contains(c) || key.contains(c) || settings_json.matches(c).count() > own_slot
        });
    if platform.echoed_canary || caller_wrote {
        return;
    }
    match result {
        Ok(inv) => assert_no_canary("output", &inv.output),
        Err(e) => assert_no_canary(
            "error",
            &format!("{} {:?} {:?} {:?}", e.message, e.hint, e.code, e.kind),
        ),
    }
});
