//! The Dataverse Web API under `/api/data/v{9.0,9.1,9.2}/`: bearer checks,
//! then dispatch by the first path segment.

mod actions;
pub mod batch;
mod bulk;
mod caller;
pub mod changes;
mod events;
pub mod files;
mod functions;
pub mod impersonation;
mod metadata;
mod operations;
pub mod plugins;
pub mod records;
mod refs;
mod registration;
mod registrations;
mod reply;
mod rows;

use super::{EmuRequest, EmuResponse, State, data, origin_of};
use bytes::Bytes;
pub use caller::Caller;

pub fn handle(state: &mut State, request: &EmuRequest) -> EmuResponse {
    let path = request.uri().path();
    let rest = path.trim_start_matches("/api/data/");
    let (version, resource) = rest.split_once('/').unwrap_or((rest, ""));
    if !matches!(version, "v9.0" | "v9.1" | "v9.2") {
        return reply::error(reply::segment_not_found(version));
    }
    let caller = match authenticate(state, request) {
        Ok(user_id) => match impersonation::effective_user(state, request) {
            Ok(acting) => {
                let on_behalf_of = acting.as_ref().map(|_| user_id.clone());
                let user_id = acting.unwrap_or(user_id);
                let logic = match plugins::logic_of(state, request, &user_id) {
                    Ok(l) => l,
                    Err(response) => return response,
                };
                Caller {
                    on_behalf_of,
                    user_id,
                    service_root: format!("{}/api/data/{version}/", origin_of(request)),
                    logic,
                }
            }
            Err(response) => return response,
        },
        Err(response) => return response,
    };
    let segment = resource.split('/').next().unwrap_or("");
    let name = segment.split('(').next().unwrap_or("");
    match name {
        "WhoAmI" => functions::who_am_i(state, request, &caller),
        "PublishXml" => actions::publish_xml(request),
        "PublishAllXml" => actions::publish_all_xml(request),
        "RetrieveDuplicates" => plugins::retrieve_duplicates(state, request, &caller, resource),
        "$batch" => batch::handle(state, request, &caller),
        "EntityDefinitions" => metadata::handle(state, request, &caller, resource),
        n if operations::is_unbound(n) => operations::unbound(state, request, &caller, resource),
        n if files::is_block_message(n) => files::block_message(state, request, n),
        "" => reply::error(reply::segment_not_found("")),
        // Bulk messages before the record endpoints they run each target
        // through, so that `records` need not know them.
        other => registration::route(state, request, &caller, resource)
            .or_else(|| bulk::route(state, request, &caller, resource))
            .or_else(|| records::handle(state, request, &caller, resource))
            .unwrap_or_else(|| reply::error(reply::segment_not_found(other))),
    }
}

/// `GET|DELETE /api/backgroundoperation/<id>`: a background operation's
/// status monitor resource (outside `/api/data/`, see
/// [`operations::status_monitor`]).
pub fn status_monitor(state: &mut State, request: &EmuRequest) -> EmuResponse {
    let user_id = match authenticate(state, request) {
        Ok(u) => u,
        Err(response) => return response,
    };
    let caller = Caller {
        on_behalf_of: None,
        user_id,
        service_root: format!("{}/api/data/v9.2/", origin_of(request)),
        logic: Default::default(),
    };
    let id = request
        .uri()
        .path()
        .trim_start_matches("/api/backgroundoperation/");
    operations::status_monitor(state, request, &caller, id)
}

/// Checks `Authorization: Bearer …`; a missing, unknown or expired token gets
/// 401 with the `WWW-Authenticate` challenge clients use to find the tenant.
pub(crate) fn authenticate(state: &State, request: &EmuRequest) -> Result<String, EmuResponse> {
    let token = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let grant = token.and_then(|t| state.identity.check_access_token(t, state.now()));
    match grant {
        Some(g) if !state.faults.reject_all_tokens => Ok(g.user_id.clone()),
        _ => Err(unauthorized(request)),
    }
}

fn unauthorized(request: &EmuRequest) -> EmuResponse {
    let origin = origin_of(request);
    http::Response::builder()
        .status(401)
        .header(
            "WWW-Authenticate",
            format!(
                "Bearer authorization_uri={origin}/{}/oauth2/authorize, resource_id={origin}/",
                data::TENANT_ID
            ),
        )
        .header("OData-Version", "4.0")
        .body(Bytes::new())
        .unwrap_or_default()
}
