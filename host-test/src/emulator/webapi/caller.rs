//! Who is calling: what the bearer check and impersonation leave for every
//! handler. A module of its own so that the dispatcher ([`super`]) and the
//! handlers it calls (`$batch` among them) take it without importing each
//! other.

use crate::emulator::State;
use crate::emulator::odata::options::Prefer;
use crate::emulator::odata::shape::Shaper;

/// Who is calling, after the bearer check.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The systemuser the token acts as.
    pub user_id: String,
    /// The service root the client used, e.g. `http://localhost/api/data/v9.2/`.
    pub service_root: String,
    /// The token's own user when the request impersonates `user_id`
    /// (`CallerObjectId`/`MSCRMCallerID`, see [`super::impersonation`]).
    pub on_behalf_of: Option<String>,
    /// What the request asked of the org's custom logic
    /// ([`super::plugins`]).
    pub logic: Logic,
}

/// The write controls a request carries, as headers and query options
/// (read by [`super::plugins::logic_of`]).
#[derive(Debug, Clone, Default)]
pub struct Logic {
    /// `MSCRM.BypassBusinessLogicExecution: CustomSync` (or the older
    /// `MSCRM.BypassCustomPluginExecution: true`).
    pub skip_sync: bool,
    /// `… CustomAsync`.
    pub skip_async: bool,
    /// `MSCRM.BypassBusinessLogicExecutionStepIds`.
    pub skip_steps: Vec<String>,
    /// `MSCRM.SuppressCallbackRegistrationExpanderJob: true`.
    pub suppress_flows: bool,
    /// `MSCRM.SuppressDuplicateDetection: false`.
    pub detect_duplicates: bool,
    /// The `tag` query option, the plug-ins' shared variable.
    pub tag: Option<String>,
    /// The version an `MSCRM.SessionToken` header names (elastic tables).
    pub session_version: Option<u64>,
}

impl Caller {
    /// Writes rows for this caller: its service root in links, its user in
    /// `EqualUserId`-style filters, the emulator's clock.
    pub fn shaper<'a>(&'a self, state: &'a State, prefer: &'a Prefer) -> Shaper<'a> {
        Shaper {
            store: &state.store,
            prefer,
            service_root: &self.service_root,
            now: state.now(),
            user_id: &self.user_id,
            collection_page_size: None,
        }
    }
}
