//! `d365 mcp`: every catalog action the connection permits, as a Model
//! Context Protocol tool (issue #31), served with the official Rust SDK
//! (`rmcp`) over stdio or the streamable HTTP transport.
//!
//! Nothing here knows an action's inputs or outputs: tools are built from
//! the component's own catalog (`catalog.describe()`: key, label,
//! description, the JSON Schemas), and a call runs the action exactly as
//! `d365 run` does ([`cli::run_action`]: a fresh instance, the connector's
//! retries, the new token state written back to the connection file). What
//! the host adds is what the catalog does not say: which actions only read
//! and which destroy ([`EFFECTS`], the one table of it), and which actions
//! this server may run at all ([`Permits`]).

use crate::cli;
use crate::emulator::{self, Emulator};
use crate::host::{ConnectionFile, ConnectorHost, Route, trap};
use anyhow::{Context as _, Result, bail};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ProgressToken, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt as _};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What an action does to the organisation: the source of each tool's
/// annotations and of what `--read-only` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Reads only (data or metadata); calling it again changes nothing.
    Read,
    /// Changes data or metadata.
    Write {
        /// The same call again has no further effect (a PATCH or PUT of the
        /// same values, a DELETE of what is already gone).
        idempotent: bool,
        /// It may remove or overwrite what cannot be restored from the call
        /// (a delete, a broken relationship, an arbitrary request).
        destructive: bool,
    },
}

const READ: Effect = Effect::Read;
const ADD: Effect = Effect::Write {
    idempotent: false,
    destructive: false,
};
const SET: Effect = Effect::Write {
    idempotent: true,
    destructive: false,
};
const REMOVE: Effect = Effect::Write {
    idempotent: true,
    destructive: true,
};
/// Overwrites what was there: repeatable, but what it replaced is lost.
const REPLACE: Effect = Effect::Write {
    idempotent: true,
    destructive: true,
};
/// Whatever the caller sends (a raw request, a custom action, a batch):
/// assume the worst.
const ANY: Effect = Effect::Write {
    idempotent: false,
    destructive: true,
};

/// Every catalog action's effect, in one place. `tests/mcp.rs` fails when
/// the catalog has an action that is not listed here, so a new action gets
/// a deliberate entry; until then [`effect`] treats it as [`ANY`].
pub const EFFECTS: &[(&str, Effect)] = &[
    ("getCurrentUser", READ),
    ("createEntity", ADD),
    ("getEntity", READ),
    // PATCH with If-Match: * (never creates): the same values again change nothing.
    ("updateEntity", SET),
    ("upsertEntity", SET),
    ("deleteEntity", REMOVE),
    ("queryEntities", READ),
    ("rawRequest", ANY),
    ("rawRequestDeprecated", ANY),
    ("runFetchXml", READ),
    // A poll: it reads changes since a state token the caller keeps.
    ("recordChanges", READ),
    ("getEntityMetadata", READ),
    ("getEntitiesMetadata", READ),
    ("listEntities", READ),
    ("listEntityTypes", READ),
    ("listAttributes", READ),
    ("queryAttributes", READ),
    ("getAttribute", READ),
    // Adds a column to a table: a schema change, additive.
    ("createAttribute", ADD),
    ("updateAttribute", SET),
    // Replaces the column's file (the old one is gone); the same file
    // again leaves the same content.
    ("uploadFile", REPLACE),
    ("downloadFile", READ),
    ("deleteFile", REMOVE),
    // Linking the same two records again leaves one link.
    ("associate", SET),
    ("disassociate", REMOVE),
    // A custom action may do anything; a function would be a read, but the
    // catalog cannot tell which one the caller names.
    ("executeAction", ANY),
    // Reads a background operation's row (Dataverse advances it, not the read).
    ("getBackgroundOperation", READ),
    // Dataverse search: POSTs that only read the index.
    ("searchRecords", READ),
    ("suggestRecords", READ),
    ("autocompleteSearch", READ),
    ("getSearchStatus", READ),
    // Any mix of creates, updates and deletes.
    ("runBatch", ANY),
];

/// The effect of `key` from [`EFFECTS`]; an unlisted action counts as [`ANY`].
pub fn effect(key: &str) -> Effect {
    EFFECTS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(ANY, |(_, e)| *e)
}

/// MCP's hints for an effect. Every hint is set explicitly: MCP's defaults
/// (destructive unless said otherwise) would mislabel additive writes.
pub fn annotations(label: &str, effect: Effect) -> ToolAnnotations {
    let base = ToolAnnotations::with_title(label);
    match effect {
        Effect::Read => base.read_only(true).destructive(false).idempotent(true),
        Effect::Write {
            idempotent,
            destructive,
        } => base
            .read_only(false)
            .destructive(destructive)
            .idempotent(idempotent),
    }
}

/// Which actions this server runs: the connection's `allowedOperations`
/// (default-deny when present), `--allow`, `--read-only`, all at once.
#[derive(Debug, Clone, Default)]
pub struct Permits {
    /// The connection's `allowedOperations`, when it has one.
    pub allowed_operations: Option<Vec<String>>,
    /// `--allow KEY,KEY…`, when given.
    pub allow: Option<Vec<String>>,
    /// `--read-only`: only [`Effect::Read`] actions.
    pub read_only: bool,
}

impl Permits {
    /// Why `key` may not run here, or `None` when it may.
    pub fn refusal(&self, key: &str) -> Option<String> {
        if self.read_only && effect(key) != Effect::Read {
            return Some(format!(
                "'{key}' changes data, and this MCP server runs with --read-only"
            ));
        }
        if let Some(allow) = &self.allow
            && !allow.iter().any(|a| a == key)
        {
            return Some(format!("'{key}' is not in this MCP server's --allow list"));
        }
        if let Some(allowed) = &self.allowed_operations
            && !allowed.iter().any(|a| a == key)
        {
            return Some(format!(
                "'{key}' is not in this connection's allowedOperations"
            ));
        }
        None
    }
}

/// The connection's `allowedOperations` as the component reads it (a list
/// of action keys; absent or null means every action). Anything else is
/// refused at start rather than served as "everything".
fn allowed_operations(file: &ConnectionFile) -> Result<Option<Vec<String>>> {
    match file.settings.get("allowedOperations") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .context("allowedOperations must be a list of action keys")
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(_) => bail!("allowedOperations must be a list of action keys"),
    }
}

/// The MCP tool for one catalog entry (`describe()` JSON).
pub fn tool(action: &Value) -> Option<Tool> {
    let key = action["key"].as_str()?;
    let label = action["label"].as_str().unwrap_or(key);
    let description = action["description"].as_str().unwrap_or("");
    let input_schema = action["inputSchema"].as_object()?.clone();
    let mut tool = Tool::new(key.to_string(), description.to_string(), input_schema)
        .with_title(label)
        .with_annotations(annotations(label, effect(key)));
    // Only a schema that says something: clients check structuredContent
    // against it, and a bare {"type": "object"} adds nothing but the check.
    if let Some(output) = action["outputSchema"].as_object()
        && output.contains_key("properties")
    {
        tool = tool.with_raw_output_schema(Arc::new(output.clone()));
    }
    Some(tool)
}

/// `d365 mcp`'s options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The connection file; without one, the embedded emulator answers.
    pub connection: Option<PathBuf>,
    pub read_only: bool,
    /// `--allow`: empty means no such restriction.
    pub allow: Vec<String>,
    /// `--http PORT`: the streamable HTTP transport on 127.0.0.1 instead of stdio.
    pub http: Option<u16>,
}

/// Serves MCP until the client closes stdin (stdio) or the process is
/// interrupted (HTTP).
pub async fn serve(options: Options) -> Result<()> {
    let host = ConnectorHost::shared().map_err(trap)?;
    let server = Server::new(host, &options).await?;
    // Progress of a fetch-all: the same request observer as `d365 run`,
    // routed to the tool call that made the request (see `PAGES`).
    crate::host::route::set_observer(Some(Arc::new(|method, uri| {
        let _ = PAGES.try_with(|sink| sink.page(method, uri));
    })));
    match options.http {
        None => {
            let running = server
                .serve(rmcp::transport::stdio())
                .await
                .context("MCP initialization over stdio")?;
            running.waiting().await.context("MCP over stdio")?;
        }
        Some(port) => http_transport::serve(server, port).await?,
    }
    Ok(())
}

/// The MCP server: the catalog's tools over one connection.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    host: &'static ConnectorHost,
    /// Every catalog action key (to tell "not permitted" from "no such tool").
    catalog_keys: BTreeSet<String>,
    /// The permitted actions' tools, in catalog order.
    tools: Vec<Tool>,
    permits: Permits,
    /// connector.yaml, served as a resource.
    catalog_yaml: String,
    /// The connection, with the newest token state.
    connection: tokio::sync::Mutex<ConnectionFile>,
    /// Where a new token state is written back (none for the embedded emulator).
    path: Option<PathBuf>,
    route: Route,
}

const CATALOG_URI: &str = "d365://connector.yaml";

impl Server {
    pub async fn new(host: &'static ConnectorHost, options: &Options) -> Result<Self> {
        let catalog_json = host.describe().await.map_err(trap)?;
        let catalog: Value = serde_json::from_str(&catalog_json)?;
        let actions = catalog["actions"].as_array().cloned().unwrap_or_default();
        let catalog_keys: BTreeSet<String> = actions
            .iter()
            .filter_map(|a| a["key"].as_str().map(str::to_string))
            .collect();
        if let Some(unknown) = options.allow.iter().find(|k| !catalog_keys.contains(*k)) {
            bail!("--allow: '{unknown}' is not an action (see `d365 actions`)");
        }
        let (file, route) = match &options.connection {
            Some(path) => (cli::read_connection(path)?, Route::Network),
            None => (
                cli::emulator_connection(cli::IN_PROCESS_ORIGIN),
                // One emulator for the session (a record created by one call
                // is there for the next), keeping only recent log entries, as
                // `d365 emulator` does: a server may run for hours.
                Route::InProcess(Emulator::new(emulator::Config {
                    log_retention: emulator::LogRetention::RECENT,
                    ..Default::default()
                })),
            ),
        };
        // An unknown connection type fails here rather than on every call
        // (the component checks the rest of the settings on each call).
        file.connection()?;
        let permits = Permits {
            allowed_operations: allowed_operations(&file)?,
            allow: (!options.allow.is_empty()).then(|| options.allow.clone()),
            read_only: options.read_only,
        };
        let tools = actions
            .iter()
            .filter(|a| {
                a["key"]
                    .as_str()
                    .is_some_and(|k| permits.refusal(k).is_none())
            })
            .filter_map(tool)
            .collect();
        Ok(Server {
            inner: Arc::new(Inner {
                host,
                catalog_keys,
                tools,
                permits,
                catalog_yaml: cli::catalog_yaml(&catalog_json)?,
                connection: tokio::sync::Mutex::new(file),
                path: options.connection.clone(),
                route,
            }),
        })
    }

    /// The tools this server lists.
    pub fn tools(&self) -> &[Tool] {
        &self.inner.tools
    }

    async fn call(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let key = request.name.as_ref();
        if !self.inner.catalog_keys.contains(key) {
            // What MCP specifies for a tool that does not exist: a protocol
            // error (-32602), as the SDK's own tool router answers.
            return Err(McpError::invalid_params(
                format!("Unknown tool: {key}"),
                None,
            ));
        }
        if let Some(why) = self.inner.permits.refusal(key) {
            return Ok(error_result(&json!({
                "kind": "forbidden",
                "status": null,
                "code": null,
                "message": format!("not permitted: {why}"),
                "hint": "Call only the tools that tools/list returns.",
                "retryable": false,
            })));
        }
        let inputs = Value::Object(request.arguments.unwrap_or_default()).to_string();
        let file = self.inner.connection.lock().await.clone();
        let progress = context
            .meta
            .get_progress_token()
            .map(|token| Progress::start(token, context.peer.clone()));
        let sink = Arc::new(PageSink {
            pages: cli::PageCounter::default(),
            tx: progress.as_ref().map(|p| p.tx.clone()),
        });
        let run = cli::run_action(
            self.inner.host,
            key,
            &inputs,
            Some(&file),
            Some(self.inner.route.clone()),
        );
        // Cancellation (notifications/cancelled) drops the call: the store
        // and instance go with it, so the component sends no further
        // request, and a request under way is abandoned (a write already
        // sent may still be applied by Dataverse). The SDK drops the
        // response to a cancelled request, as MCP specifies, so the error
        // below reaches no one.
        let outcome = tokio::select! {
            outcome = PAGES.scope(sink.clone(), run) => outcome,
            _ = context.ct.cancelled() => {
                return Err(McpError::internal_error("the call was cancelled", None));
            }
        };
        drop(sink);
        if let Some(progress) = progress {
            progress.finish().await;
        }
        match outcome {
            Ok(cli::RunOutcome::Ok { output, refreshed }) => {
                if let Some(updated) = refreshed {
                    self.store_state(updated).await;
                }
                Ok(output_result(output))
            }
            Ok(cli::RunOutcome::Err(error)) => Ok(error_result(&error)),
            // A trap or a host failure: still a tool result the agent can
            // read, never a protocol error for an action's failure.
            Err(e) => Ok(error_result(&json!({
                "kind": "host",
                "status": null,
                "code": null,
                "message": format!("{e:#}"),
                "hint": null,
                "retryable": false,
            }))),
        }
    }

    /// Keeps the new token state for the next call and writes it back to
    /// the connection file, as `d365 run` does.
    async fn store_state(&self, updated: ConnectionFile) {
        let mut current = self.inner.connection.lock().await;
        current.state = updated.state;
        if let Some(path) = &self.inner.path
            && let Err(e) = cli::write_connection(path, &current)
        {
            // The call succeeded; only the saved token is lost (the next
            // process fetches a new one). The message names the file only.
            eprintln!("d365 mcp: could not save the token state: {e:#}");
        }
    }
}

/// An action's output: `structuredContent`, and the same JSON as text for
/// clients that read only text. MCP wants an object as structured content;
/// every catalog output is one, anything else is wrapped as `{"value": …}`.
fn output_result(output: Value) -> CallToolResult {
    let structured = match output {
        Value::Object(_) => output,
        other => json!({ "value": other }),
    };
    let mut result = CallToolResult::success(vec![ContentBlock::text(structured.to_string())]);
    result.structured_content = Some(structured);
    result
}

/// The connector's typed error as a tool result with `isError`. Only text:
/// clients check any structuredContent against the tool's output schema,
/// which describes success.
fn error_result(error: &Value) -> CallToolResult {
    let text = serde_json::to_string_pretty(error).unwrap_or_else(|_| error.to_string());
    CallToolResult::error(vec![ContentBlock::text(text)])
}

tokio::task_local! {
    /// The tool call whose requests the observer sees. Body-less GETs (every
    /// page of a fetch-all) are sent inside the call's own task (see
    /// `host/outgoing.rs`), so the observer runs within this scope.
    static PAGES: Arc<PageSink>;
}

/// Counts a call's follow-up pages and forwards them as progress.
struct PageSink {
    pages: cli::PageCounter,
    tx: Option<mpsc::UnboundedSender<usize>>,
}

impl PageSink {
    fn page(&self, method: &http::Method, uri: &http::Uri) {
        if let (Some(n), Some(tx)) = (self.pages.count(method, uri), &self.tx) {
            let _ = tx.send(n);
        }
    }
}

/// `notifications/progress` for one call: the observer runs inside the
/// component's request (synchronous), so pages go through a channel to a
/// task that sends them to the client.
struct Progress {
    tx: mpsc::UnboundedSender<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(token: ProgressToken, peer: rmcp::Peer<RoleServer>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<usize>();
        let task = tokio::spawn(async move {
            while let Some(page) = rx.recv().await {
                let note = ProgressNotificationParam::new(token.clone(), page as f64)
                    .with_message(format!("reading page {page}"));
                if peer.notify_progress(note).await.is_err() {
                    break;
                }
            }
        });
        Progress { tx, task }
    }

    /// Sends what is queued before the result goes out (the client ignores
    /// progress that arrives after the response).
    async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("d365", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.inner.tools.clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.inner.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        self.call(request, context).await.map(Into::into)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let catalog = Resource::new(CATALOG_URI, "connector.yaml")
            .with_title("The connector's catalog")
            .with_description(
                "Every action, trigger and connection type with its inputs and JSON Schemas \
                 (what `d365 actions --yaml` prints).",
            )
            .with_mime_type("application/yaml");
        Ok(ListResourcesResult::with_all_items(vec![catalog]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        if request.uri != CATALOG_URI {
            return Err(McpError::resource_not_found(
                format!("no resource {}", request.uri),
                None,
            ));
        }
        let contents = ResourceContents::text(self.inner.catalog_yaml.clone(), CATALOG_URI)
            .with_mime_type("application/yaml");
        Ok(ReadResourceResult::new(vec![contents]).into())
    }
}

const INSTRUCTIONS: &str = "Tools for one Microsoft Dataverse (Dynamics 365) environment. \
Entity types are entity set names (plural: accounts, contacts). Learn a table's columns with \
getEntityMetadata before querying or writing it. Set a lookup with \
\"<navigationProperty>@odata.bind\": \"/<entityset>(<GUID>)\", never a plain GUID. \
A failed call returns isError with a JSON error (kind, status, code, message, hint).";

/// The streamable HTTP transport on 127.0.0.1, served by hyper.
mod http_transport {
    use super::Server;
    use anyhow::{Context as _, Result};
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    use std::sync::Arc;

    pub async fn serve(server: Server, port: u16) -> Result<()> {
        let service = StreamableHttpService::new(
            move || Ok(server.clone()),
            Arc::new(LocalSessionManager::default()),
            // Loopback hosts only (the SDK's default): a web page cannot
            // reach the server through DNS rebinding.
            StreamableHttpServerConfig::default(),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("listening on 127.0.0.1:{port}"))?;
        let addr = listener.local_addr()?;
        eprintln!("MCP (streamable HTTP) on http://{addr}/mcp");
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => accepted?,
                _ = tokio::signal::ctrl_c() => return Ok(()),
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_refuses_every_write_and_allows_every_read() {
        let permits = Permits {
            read_only: true,
            ..Default::default()
        };
        for (key, effect) in EFFECTS {
            assert_eq!(
                permits.refusal(key).is_none(),
                *effect == Effect::Read,
                "{key}"
            );
        }
        // An action the table does not know is not served read-only.
        assert!(permits.refusal("someNewAction").is_some());
    }

    #[test]
    fn every_restriction_applies_at_once() {
        let permits = Permits {
            allowed_operations: Some(vec!["getEntity".into(), "createEntity".into()]),
            allow: Some(vec!["getEntity".into(), "queryEntities".into()]),
            read_only: false,
        };
        assert_eq!(permits.refusal("getEntity"), None);
        assert!(permits.refusal("createEntity").unwrap().contains("--allow"));
        assert!(
            permits
                .refusal("queryEntities")
                .unwrap()
                .contains("allowedOperations")
        );
    }

    #[test]
    fn annotations_say_every_hint() {
        let a = annotations("Delete Entity", effect("deleteEntity"));
        assert_eq!(a.read_only_hint, Some(false));
        assert_eq!(a.destructive_hint, Some(true));
        let a = annotations("Create Entity", effect("createEntity"));
        assert_eq!(a.destructive_hint, Some(false));
        assert_eq!(a.idempotent_hint, Some(false));
        let a = annotations("Get Entity", effect("getEntity"));
        assert_eq!(a.read_only_hint, Some(true));
    }

    #[test]
    fn the_table_lists_each_action_once() {
        let keys: BTreeSet<_> = EFFECTS.iter().map(|(k, _)| k).collect();
        assert_eq!(keys.len(), EFFECTS.len());
    }
}
