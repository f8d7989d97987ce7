//! The WIT boundary: generated bindings stay private here, and every export
//! converts its arguments, calls plain Rust, and converts the result back.

use crate::connection::{ConnectionType, Settings, TokenState};
use crate::error::{ConnectorError, ErrorKind};
use crate::http::wasi::WasiPlatform;
use crate::trigger::subscription::{self, Subscription};

wit_bindgen::generate!({
    path: "wit",
    world: "connector",
    with: {
        "wasi:http/outgoing-handler@0.2.12": wasi::http::outgoing_handler,
        "wasi:http/types@0.2.12": wasi::http::types,
        "wasi:io/poll@0.2.12": wasi::io::poll,
        "wasi:io/error@0.2.12": wasi::io::error,
        "wasi:io/streams@0.2.12": wasi::io::streams,
        "wasi:clocks/monotonic-clock@0.2.12": wasi::clocks::monotonic_clock,
        "wasi:clocks/wall-clock@0.2.12": wasi::clocks::wall_clock,
        "wasi:random/random@0.2.12": wasi::random::random,
    },
});

use d365::connector::types as wit;
use exports::d365::connector::{
    actions, catalog, oauth2_auth_code, oauth2_client_credentials, webhook,
};

struct Component;

export!(Component);

fn to_wit_error(e: ConnectorError) -> wit::ConnectorError {
    let kind = match e.kind {
        ErrorKind::InvalidInput { input } => wit::ErrorKind::InvalidInput(input),
        ErrorKind::Unauthorized => wit::ErrorKind::Unauthorized,
        ErrorKind::Forbidden => wit::ErrorKind::Forbidden,
        ErrorKind::NotFound => wit::ErrorKind::NotFound,
        ErrorKind::Conflict => wit::ErrorKind::Conflict,
        ErrorKind::Throttled { retry_after } => wit::ErrorKind::Throttled(retry_after),
        ErrorKind::Dataverse => wit::ErrorKind::Dataverse,
        ErrorKind::Transport => wit::ErrorKind::Transport,
        ErrorKind::Timeout => wit::ErrorKind::Timeout,
    };
    wit::ConnectorError {
        kind,
        status: e.status,
        code: e.code,
        message: e.message,
        hint: e.hint,
        retryable: e.retryable,
    }
}

fn to_wit_state(s: TokenState) -> wit::TokenState {
    wit::TokenState {
        access_token: s.access_token,
        expires_at: s.expires_at,
        refresh_token: s.refresh_token,
        scope: s.scope,
    }
}

fn from_wit_state(s: wit::TokenState) -> TokenState {
    TokenState {
        access_token: s.access_token,
        expires_at: s.expires_at,
        refresh_token: s.refresh_token,
        scope: s.scope,
    }
}

impl oauth2_auth_code::Guest for Component {
    fn authorize_url(settings: String) -> Result<wit::AuthorizeRequest, wit::ConnectorError> {
        let settings =
            Settings::parse(ConnectionType::AuthCode, &settings).map_err(to_wit_error)?;
        let req = crate::auth::authorize_url(&mut WasiPlatform, &settings).map_err(to_wit_error)?;
        Ok(wit::AuthorizeRequest {
            url: req.url,
            state: req.state,
            code_verifier: req.code_verifier,
            warnings: req.warnings,
        })
    }

    fn exchange_code(
        settings: String,
        code: String,
        code_verifier: String,
    ) -> Result<wit::TokenState, wit::ConnectorError> {
        let settings =
            Settings::parse(ConnectionType::AuthCode, &settings).map_err(to_wit_error)?;
        crate::auth::exchange_code(&mut WasiPlatform, &settings, &code, &code_verifier)
            .map(to_wit_state)
            .map_err(to_wit_error)
    }

    fn refresh(
        settings: String,
        refresh_token: String,
    ) -> Result<wit::TokenState, wit::ConnectorError> {
        let settings =
            Settings::parse(ConnectionType::AuthCode, &settings).map_err(to_wit_error)?;
        crate::auth::refresh(&mut WasiPlatform, &settings, &refresh_token)
            .map(to_wit_state)
            .map_err(to_wit_error)
    }
}

impl oauth2_client_credentials::Guest for Component {
    fn get_token(settings: String) -> Result<wit::TokenState, wit::ConnectorError> {
        let settings =
            Settings::parse(ConnectionType::ClientCredentials, &settings).map_err(to_wit_error)?;
        crate::auth::client_credentials(&mut WasiPlatform, &settings)
            .map(to_wit_state)
            .map_err(to_wit_error)
    }
}

impl catalog::Guest for Component {
    fn describe() -> String {
        crate::catalog::catalog().to_json()
    }
}

fn connection_kind(connection: &wit::Connection) -> ConnectionType {
    match connection.connection_type {
        wit::ConnectionType::Oauth2AuthCode => ConnectionType::AuthCode,
        wit::ConnectionType::Oauth2ClientCredentials => ConnectionType::ClientCredentials,
    }
}

fn from_wit_subscription(s: webhook::Subscription) -> Subscription {
    Subscription {
        name: s.name,
        callback_url: s.callback_url,
        endpoint_id: s.endpoint_id,
        step_ids: s.step_ids,
        image_ids: s.image_ids,
        inputs: s.inputs,
    }
}

impl actions::Guest for Component {
    fn invoke(
        action_key: String,
        connection: wit::Connection,
        inputs: String,
    ) -> Result<wit::ActionResult, wit::ConnectorError> {
        let kind = connection_kind(&connection);
        let state = connection.state.map(from_wit_state);
        crate::invoke(
            &mut WasiPlatform,
            &action_key,
            kind,
            &connection.settings,
            state,
            &inputs,
        )
        .map(|inv| wit::ActionResult {
            output: inv.output,
            state: inv.state.map(to_wit_state),
        })
        .map_err(to_wit_error)
    }
}

impl webhook::Guest for Component {
    fn handle(
        request: webhook::IncomingWebhook,
        inputs: String,
    ) -> Result<webhook::WebhookEvent, webhook::WebhookRejection> {
        let request = crate::trigger::WebhookRequest {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
        };
        crate::trigger::handle_webhook(&request, &inputs)
            .map(|e| webhook::WebhookEvent {
                authenticated: e.authenticated,
                message_name: e.message_name,
                primary_entity_name: e.primary_entity_name,
                primary_entity_id: e.primary_entity_id,
                payload: e.payload.to_string(),
            })
            .map_err(|r| webhook::WebhookRejection {
                status: r.status,
                headers: r.headers,
                body: r.body,
                reason: r.reason,
            })
    }

    fn subscribe(
        connection: wit::Connection,
        inputs: String,
        callback_url: String,
    ) -> Result<webhook::Subscription, wit::ConnectorError> {
        let kind = connection_kind(&connection);
        let state = connection.state.map(from_wit_state);
        let (s, state) = subscription::subscribe(
            &mut WasiPlatform,
            kind,
            &connection.settings,
            state,
            &inputs,
            &callback_url,
        )
        .map_err(to_wit_error)?;
        Ok(webhook::Subscription {
            name: s.name,
            callback_url: s.callback_url,
            endpoint_id: s.endpoint_id,
            step_ids: s.step_ids,
            image_ids: s.image_ids,
            inputs: s.inputs,
            state: state.map(to_wit_state),
        })
    }

    fn unsubscribe(
        connection: wit::Connection,
        sub: webhook::Subscription,
    ) -> Result<(), wit::ConnectorError> {
        let kind = connection_kind(&connection);
        let state = connection.state.map(from_wit_state);
        subscription::unsubscribe(
            &mut WasiPlatform,
            kind,
            &connection.settings,
            state,
            &from_wit_subscription(sub),
        )
        .map(|_| ())
        .map_err(to_wit_error)
    }

    fn check(
        connection: wit::Connection,
        sub: webhook::Subscription,
    ) -> Result<bool, wit::ConnectorError> {
        let kind = connection_kind(&connection);
        let state = connection.state.map(from_wit_state);
        subscription::check(
            &mut WasiPlatform,
            kind,
            &connection.settings,
            state,
            &from_wit_subscription(sub),
        )
        .map(|(ok, _)| ok)
        .map_err(to_wit_error)
    }
}
