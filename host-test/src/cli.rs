//! Pieces of the `d365` CLI that tests call directly: the embedded emulator
//! connection, running an action, and the catalog as YAML.

use crate::emulator::{self, Emulator};
use crate::host::{ConnectionFile, ConnectorHost, Route, error_json, trap};
use anyhow::{Context as _, Result};
use serde_json::{Map, Value, json};
use std::path::Path;

/// The in-process emulator's origin. Requests never leave the process; the
/// name only has to be a loopback host so that `http://` is accepted.
pub const IN_PROCESS_ORIGIN: &str = "http://localhost";

/// A ready client-credentials connection to an emulator at `origin`.
pub fn emulator_connection(origin: &str) -> ConnectionFile {
    let mut settings = Map::new();
    settings.insert("webApiUrl".into(), json!(origin));
    settings.insert(
        "tokenUrl".into(),
        json!(format!(
            "{origin}/{}/oauth2/v2.0/token",
            emulator::data::TENANT_ID
        )),
    );
    settings.insert(
        "clientId".into(),
        json!(emulator::identity::CLIENT_CREDENTIALS_APP_ID),
    );
    settings.insert(
        "clientSecret".into(),
        json!(emulator::identity::CLIENT_CREDENTIALS_SECRET),
    );
    ConnectionFile {
        connection_type: "oauth2ClientCredentials".into(),
        settings,
        state: None,
    }
}

/// An authorization-code connection to an emulator at `origin` (the seeded
/// public client; PKCE, no secret).
pub fn emulator_auth_code_connection(origin: &str, redirect_uri: &str) -> ConnectionFile {
    let mut settings = Map::new();
    settings.insert("webApiUrl".into(), json!(origin));
    settings.insert("tenantId".into(), json!(emulator::data::TENANT_ID));
    settings.insert(
        "tokenUrl".into(),
        json!(format!(
            "{origin}/{}/oauth2/v2.0/token",
            emulator::data::TENANT_ID
        )),
    );
    settings.insert(
        "authorizeUrl".into(),
        json!(format!(
            "{origin}/{}/oauth2/v2.0/authorize",
            emulator::data::TENANT_ID
        )),
    );
    settings.insert(
        "clientId".into(),
        json!(emulator::identity::AUTH_CODE_APP_ID),
    );
    settings.insert("redirectUri".into(), json!(redirect_uri));
    ConnectionFile {
        connection_type: "oauth2AuthCode".into(),
        settings,
        state: None,
    }
}

/// What `d365 run` ends with.
pub enum RunOutcome {
    /// The action's output JSON, and the connection with its new token state
    /// when it changed.
    Ok {
        output: Value,
        refreshed: Option<ConnectionFile>,
    },
    /// The connector's typed error, as JSON.
    Err(Value),
}

/// Runs `action` through the component. Without a connection, an embedded
/// emulator answers in-process.
pub async fn run_action(
    host: &ConnectorHost,
    action: &str,
    inputs: &str,
    connection: Option<&ConnectionFile>,
    route: Option<Route>,
) -> Result<RunOutcome> {
    let (file, route) = match connection {
        Some(c) => (c.clone(), route.unwrap_or(Route::Network)),
        None => (
            emulator_connection(IN_PROCESS_ORIGIN),
            route.unwrap_or_else(|| Route::InProcess(Emulator::new(Default::default()))),
        ),
    };
    let conn = file.connection()?;
    match host
        .invoke(&route, action, &conn, inputs)
        .await
        .map_err(trap)?
    {
        Ok(result) => {
            let output: Value = serde_json::from_str(&result.output)
                .context("the component's output is not JSON")?;
            let refreshed = result.state.map(|s| ConnectionFile {
                state: Some(s.into()),
                ..file.clone()
            });
            Ok(RunOutcome::Ok { output, refreshed })
        }
        Err(e) => {
            let mut err = error_json(&e);
            let catalog = host.describe().await.map_err(trap)?;
            add_schema_path(&mut err, action, &catalog);
            Ok(RunOutcome::Err(err))
        }
    }
}

/// For an `invalid-input` error about one of the action's inputs, adds
/// `schemaPath`: the JSON pointer of that input's schema in the catalog
/// (connector.yaml), e.g. `/actions/queryEntities/inputSchema/properties/pageSize`.
pub fn add_schema_path(err: &mut Value, action: &str, catalog_json: &str) {
    let Some(input) = err.get("input").and_then(Value::as_str).map(str::to_string) else {
        return;
    };
    let Ok(catalog) = serde_json::from_str::<Value>(catalog_json) else {
        return;
    };
    let base = input.split(['[', '.']).next().unwrap_or(&input).to_string();
    let Some(entry) = catalog["actions"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["key"] == action))
    else {
        return;
    };
    if entry["inputSchema"]["properties"].get(&base).is_some() {
        let mut pointer = format!("/actions/{action}/inputSchema/properties/{base}");
        if input.contains('[') {
            pointer.push_str("/items");
        }
        err["schemaPath"] = json!(pointer);
    }
}

/// One action for people: label, description, then every input.
pub fn describe_action(catalog_json: &str, key: &str) -> Result<String> {
    let catalog: Value = serde_json::from_str(catalog_json)?;
    let action = catalog["actions"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["key"] == key))
        .with_context(|| format!("no action '{key}' (see `d365 actions`)"))?;
    let mut out = format!(
        "{} ({key}){}\n{}\n\n",
        action["label"].as_str().unwrap_or(""),
        if action["deprecated"] == json!(true) {
            " — deprecated"
        } else {
            ""
        },
        action["description"].as_str().unwrap_or("")
    );
    let inputs = action["inputs"].as_array().cloned().unwrap_or_default();
    if inputs.is_empty() {
        out.push_str("No inputs.\n");
        return Ok(out);
    }
    let width = inputs
        .iter()
        .filter_map(|i| i["key"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(5)
        .max(5);
    out.push_str(&format!(
        "{:width$}  {:12}  {:8}  {:14}  {}\n",
        "INPUT", "TYPE", "REQUIRED", "DEFAULT", "LABEL — COMMENT"
    ));
    for i in &inputs {
        let default = match &i["default"] {
            Value::Null => "—".to_string(),
            v => v.to_string(),
        };
        out.push_str(&format!(
            "{:width$}  {:12}  {:8}  {:14}  {} — {}\n",
            i["key"].as_str().unwrap_or(""),
            i["type"].as_str().unwrap_or(""),
            if i["required"] == json!(true) {
                "yes"
            } else {
                "no"
            },
            default,
            i["label"].as_str().unwrap_or(""),
            i["comment"].as_str().unwrap_or(""),
        ));
    }
    Ok(out)
}

/// Progress for long runs on stderr: one line per follow-up page of a
/// paged query (requests carrying a `$skiptoken`).
pub fn progress_observer() -> crate::host::route::Observer {
    let pages = PageCounter::default();
    std::sync::Arc::new(move |method, uri| {
        if let Some(n) = pages.count(method, uri) {
            eprintln!("page {n} … {}", uri.path());
        }
    })
}

/// Numbers the pages of a paged query as their requests go out, for
/// `d365 run`'s progress and `d365 mcp`'s: the first page is 1, each
/// follow-up page ([`is_follow_up_page`]) the next number, and the same
/// URL again is that page retried (after a 429 or a 503), not a new one.
#[derive(Debug, Default)]
pub struct PageCounter {
    /// The last page counted (0: none yet, so the first follow-up is 2)
    /// and its URL.
    last: std::sync::Mutex<(usize, String)>,
}

impl PageCounter {
    /// The number of the page this request reads, when it is a new
    /// follow-up page.
    pub fn count(&self, method: &http::Method, uri: &http::Uri) -> Option<usize> {
        if !is_follow_up_page(method, uri) {
            return None;
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let url = uri.to_string();
        if last.1 == url {
            return None;
        }
        last.0 = last.0.max(1) + 1;
        last.1 = url;
        Some(last.0)
    }
}

/// A request for the second or a later page of a paged query (a GET of a
/// nextLink, which carries `$skiptoken`): what `d365 run` prints and
/// `d365 mcp` reports as progress.
pub fn is_follow_up_page(method: &http::Method, uri: &http::Uri) -> bool {
    let query = uri.query().unwrap_or("");
    method == http::Method::GET && (query.contains("$skiptoken") || query.contains("%24skiptoken"))
}

/// Reads a connection file, warning on stderr (as ssh does for keys) when
/// others may read it: it holds a client secret and tokens.
pub fn read_connection(path: &Path) -> Result<ConnectionFile> {
    let read = || -> std::io::Result<String> {
        let mut f = std::fs::File::open(path)?;
        // The mode of the file we read, not of whatever the path names later.
        if let Some(warning) = loose_permissions_warning(path, &f.metadata()?) {
            eprintln!("{warning}");
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut f, &mut text)?;
        Ok(text)
    };
    let text = read().with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a connection file", path.display()))
}

/// The warning for a secret-holding file that group or others may access
/// (any bit of 0o077), naming the file, its mode and the fix; never its
/// contents. `None` where permissions are fine, and off Unix.
pub fn loose_permissions_warning(path: &Path, meta: &std::fs::Metadata) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then(|| {
            format!(
                "warning: {} has mode {mode:04o}, so group or others can access the client \
                 secret and tokens it holds; fix with: chmod 600 {}",
                path.display(),
                path.display()
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = (path, meta);
        None
    }
}

/// Writes a connection file only its owner can read, atomically (see
/// [`write_private`]): concurrent `d365 run`s saving a refreshed token each
/// replace the whole file, so it is never torn or empty.
pub fn write_connection(path: &Path, file: &ConnectionFile) -> Result<()> {
    let text = serde_json::to_string_pretty(file)? + "\n";
    write_private(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// Replaces `path` with `bytes` as a file of mode 0600 (on Unix): a new
/// temporary file in the same folder (same filesystem, so the rename is
/// atomic), created exclusively with 0600 before any byte is written,
/// synced, then renamed over `path`. On failure the temporary file is
/// removed and `path` is left as it was. A symlink is followed, as
/// `std::fs::write` did, so the file it points to is replaced.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path)?,
        _ => path.to_path_buf(),
    };
    let (tmp, mut file) = create_temp_beside(&target)?;
    let written = (|| {
        #[cfg(unix)]
        {
            // `mode` is filtered by the umask; the file must be exactly 0600.
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &target)
    })();
    match written {
        Ok(()) => {
            // The rename itself survives a crash once the folder is synced;
            // the file is complete either way, so a failure here is ignored.
            #[cfg(unix)]
            if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// A new, exclusively created file next to `target`, named
/// `.<name>.<pid>.<n>.tmp` (pid and a per-process counter keep concurrent
/// writers apart; `create_new` guards against a name left by a crash).
fn create_temp_beside(target: &Path) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = target.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path does not name a file",
        )
    })?;
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut attempts = 0;
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".{}.{}.{n}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            // A stale file from a crashed process with the same pid.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 100 => {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The catalog as connector.yaml holds it.
pub fn catalog_yaml(catalog_json: &str) -> Result<String> {
    let value: Value = serde_json::from_str(catalog_json)?;
    let body = serde_norway::to_string(&value)?;
    Ok(format!(
        "# Generated from the component's catalog (src/catalog.rs) by `d365 actions --yaml`.\n# A test fails when this file and the component disagree.\n{body}"
    ))
}

/// A table of actions for people.
pub fn catalog_table(catalog_json: &str) -> Result<String> {
    let value: Value = serde_json::from_str(catalog_json)?;
    let mut out = String::new();
    let actions = value["actions"].as_array().cloned().unwrap_or_default();
    let width = actions
        .iter()
        .filter_map(|a| a["key"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(10);
    out.push_str(&format!("{:width$}  {}\n", "ACTION", "LABEL"));
    for a in &actions {
        let deprecated = if a["deprecated"] == json!(true) {
            "  (deprecated)"
        } else {
            ""
        };
        out.push_str(&format!(
            "{:width$}  {}{deprecated}\n",
            a["key"].as_str().unwrap_or(""),
            a["label"].as_str().unwrap_or("")
        ));
    }
    let triggers = value["triggers"].as_array().cloned().unwrap_or_default();
    if !triggers.is_empty() {
        out.push_str(&format!("\n{:width$}  {}\n", "TRIGGER", "LABEL"));
        for t in &triggers {
            out.push_str(&format!(
                "{:width$}  {}\n",
                t["key"].as_str().unwrap_or(""),
                t["label"].as_str().unwrap_or("")
            ));
        }
    }
    Ok(out)
}

/// `KEY=PATH` of `d365 run --file`.
pub fn parse_file_arg(arg: &str) -> std::result::Result<(String, std::path::PathBuf), String> {
    match arg.split_once('=') {
        Some((k, p)) if !k.trim().is_empty() && !p.is_empty() => {
            Ok((k.trim().to_string(), std::path::PathBuf::from(p)))
        }
        _ => Err(format!(
            "'{arg}' is not KEY=PATH (e.g. fileContent=./report.pdf)"
        )),
    }
}

/// `d365 run --file KEY=PATH`: each file's bytes, as base64, become input
/// `KEY` of the inputs object (replacing any value given there).
pub fn attach_files(inputs: &str, files: &[(String, std::path::PathBuf)]) -> Result<String> {
    use base64::Engine as _;
    if files.is_empty() {
        return Ok(inputs.to_string());
    }
    let text = if inputs.trim().is_empty() {
        "{}"
    } else {
        inputs
    };
    let mut object: Map<String, Value> =
        serde_json::from_str(text).context("--file needs the inputs to be a JSON object")?;
    for (key, path) in files {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        object.insert(key.clone(), Value::String(encoded));
    }
    Ok(serde_json::to_string(&object)?)
}

/// `d365 run … --save PATH`: writes the output's `fileContent` (base64),
/// decoded, to `path` (0600, through [`write_private`]) and returns the
/// output without it, with `savedTo` and `savedBytes` instead.
pub fn save_content(mut output: Value, path: &Path) -> Result<Value> {
    use base64::Engine as _;
    let Some(Value::String(content)) = output.as_object_mut().and_then(|o| o.remove("fileContent"))
    else {
        anyhow::bail!("--save: the action's output has no fileContent to save");
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(content.as_bytes())
        .context("--save: fileContent is not base64")?;
    write_private(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    if let Some(o) = output.as_object_mut() {
        o.insert("savedTo".into(), json!(path.display().to_string()));
        o.insert("savedBytes".into(), json!(bytes.len()));
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pages_are_counted_once_each_from_two() {
        let c = super::PageCounter::default();
        let get = http::Method::GET;
        let first: http::Uri = "http://h/api/data/v9.2/accounts".parse().unwrap();
        let p2: http::Uri = "http://h/api/data/v9.2/accounts?$skiptoken=a"
            .parse()
            .unwrap();
        let p3: http::Uri = "http://h/api/data/v9.2/accounts?%24skiptoken=b"
            .parse()
            .unwrap();
        assert_eq!(
            c.count(&get, &first),
            None,
            "the first page is not a follow-up"
        );
        assert_eq!(c.count(&get, &p2), Some(2));
        assert_eq!(c.count(&get, &p2), None, "a retry of page 2");
        assert_eq!(c.count(&http::Method::POST, &p3), None);
        assert_eq!(c.count(&get, &p3), Some(3));
    }

    use super::*;

    /// A fresh folder of the test's own under the temp dir, removed on drop.
    struct Folder(std::path::PathBuf);
    impl Folder {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("d365-cli-unit-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Folder(dir)
        }
        fn entries(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }
    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn write_connection_replaces_a_loose_file_with_a_private_one() {
        let folder = Folder::new("replace");
        let path = folder.0.join("conn.json");
        std::fs::write(&path, "old").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let conn = emulator_connection("http://127.0.0.1:1");
        write_connection(&path, &conn).unwrap();
        let back = read_connection(&path).unwrap();
        assert_eq!(back.settings, conn.settings);
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        assert_eq!(folder.entries(), ["conn.json"], "no temporary file left");
    }

    /// The rename fails (the target is a folder): the target is untouched
    /// and the temporary file, already written, is removed.
    #[test]
    fn failed_write_leaves_the_old_target_and_no_temporary_file() {
        let folder = Folder::new("fail");
        let target = folder.0.join("conn.json");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), "kept").unwrap();
        assert!(write_private(&target, b"new secret").is_err());
        assert_eq!(
            std::fs::read_to_string(target.join("inside")).unwrap(),
            "kept"
        );
        assert_eq!(folder.entries(), ["conn.json"], "temporary file removed");
    }

    /// A folder that does not exist: an error, and nothing created.
    #[test]
    fn write_into_a_missing_folder_fails_cleanly() {
        let folder = Folder::new("missing");
        let path = folder.0.join("absent").join("conn.json");
        assert!(write_connection(&path, &emulator_connection("http://x")).is_err());
        assert!(folder.entries().is_empty());
    }

    /// A symlinked connection file keeps its link; the file it names is
    /// replaced (what `std::fs::write` did before).
    #[cfg(unix)]
    #[test]
    fn write_follows_a_symlink() {
        let folder = Folder::new("symlink");
        let real = folder.0.join("real.json");
        let link = folder.0.join("link.json");
        std::fs::write(&real, "old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_private(&link, b"new").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        assert_eq!(mode(&real), 0o600);
        assert_eq!(folder.entries(), ["link.json", "real.json"]);
    }

    #[cfg(unix)]
    #[test]
    fn loose_permissions_are_named_with_the_fix() {
        use std::os::unix::fs::PermissionsExt as _;
        let folder = Folder::new("loose");
        let path = folder.0.join("conn.json");
        std::fs::write(&path, "{}").unwrap();
        for (bits, warns) in [(0o600, false), (0o400, false), (0o640, true), (0o604, true)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bits)).unwrap();
            let meta = std::fs::metadata(&path).unwrap();
            let warning = loose_permissions_warning(&path, &meta);
            assert_eq!(warning.is_some(), warns, "{bits:o}: {warning:?}");
            if let Some(w) = warning {
                assert!(w.contains(&path.display().to_string()), "{w}");
                assert!(w.contains(&format!("{bits:04o}")), "{w}");
                assert!(w.contains("chmod 600"), "{w}");
            }
        }
    }
}
