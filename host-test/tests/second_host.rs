//! The same `.wasm`, unchanged, in a host we did not write: transpiled by
//! `@bytecodealliance/jco` and run by Node with `@bytecodealliance/preview2-shim`
//! (versions pinned in host-test/js/package.json and package-lock.json). Both hosts call the
//! same loopback emulator; their outputs must be identical byte for byte.

mod common;

use host_test::cli;
use host_test::emulator::{self, Emulator};
use host_test::host::{COMPONENT_WASM, Route};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Installs the pinned npm packages (once) and transpiles the embedded
/// component into `js/build/<tag>/connector.js`.
fn transpiled() -> PathBuf {
    static MODULE: OnceLock<PathBuf> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let dir = js_dir();
            let node = Command::new("node").arg("--version").output();
            assert!(
                node.as_ref().is_ok_and(|o| o.status.success()),
                "Node.js is required for the second-host test (apt-get install nodejs)"
            );
            if !dir.join("node_modules/@bytecodealliance/jco").exists() {
                // Not `npm ci`: npm 11 leaves other platforms' optional
                // binaries out of the lockfile and then refuses it as out of
                // sync. `npm install` installs the locked versions and leaves
                // the lockfile unchanged.
                let status = Command::new("npm")
                    .args(["install", "--no-audit", "--no-fund"])
                    .current_dir(&dir)
                    .status()
                    .expect("npm runs");
                assert!(status.success(), "npm install in host-test/js failed");
            }
            let out = dir
                .join("build")
                .join(format!("test-{}", std::process::id()));
            std::fs::create_dir_all(&out).unwrap();
            let wasm = out.join("connector.wasm");
            std::fs::write(&wasm, COMPONENT_WASM).unwrap();
            let status = Command::new("node")
                .arg(dir.join("node_modules/@bytecodealliance/jco/dist/jco.js"))
                .args([
                    "transpile",
                    "--no-typescript",
                    "--quiet",
                    "--name",
                    "connector",
                    "-o",
                ])
                .arg(&out)
                .arg(&wasm)
                .current_dir(&dir)
                .status()
                .expect("jco runs");
            assert!(status.success(), "jco transpile failed");
            out.join("connector.js")
        })
        .clone()
}

/// Runs one action in Node; returns (exit code, stdout, stderr).
async fn node_invoke(connection: &Path, action: &str, inputs: &str) -> (i32, String, String) {
    let out = tokio::process::Command::new("node")
        .arg(js_dir().join("invoke.mjs"))
        .arg(transpiled())
        .arg(connection)
        .arg(action)
        .arg(inputs)
        .output()
        .await
        .expect("node runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_host_output_equals_wasmtime_output() {
    // Enough generated accounts for a fetch-all over several pages.
    let emulator = Emulator::new(emulator::Config {
        generated_records: 2_500,
        ..Default::default()
    });
    let server = emulator::server::serve(emulator.clone(), 0).await.unwrap();
    let conn = cli::emulator_connection(&server.base_url());
    let dir = std::env::temp_dir().join(format!("d365-node-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conn_path = dir.join("conn.json");
    cli::write_connection(&conn_path, &conn).unwrap();

    let cases = [
        ("getCurrentUser", "{}"),
        (
            "queryEntities",
            r#"{"entityType":"accounts","fieldNames":["name","accountnumber"],"orderBy":"name asc","fetchAll":true,"pageSize":1000}"#,
        ),
    ];
    for (action, inputs) in cases {
        let wasmtime = common::host()
            .invoke(&Route::Network, action, &conn.connection().unwrap(), inputs)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{action} in wasmtime: {}", e.message));
        let (code, node_out, node_err) = node_invoke(&conn_path, action, inputs).await;
        assert_eq!(code, 0, "{action} in node failed: {node_err}");
        assert_eq!(
            node_out, wasmtime.output,
            "{action}: node and wasmtime outputs differ"
        );
    }

    // Errors cross the boundary typed in both hosts.
    let (code, _, err) = node_invoke(&conn_path, "noSuchAction", "{}").await;
    assert_eq!(code, 1);
    let err: serde_json::Value = serde_json::from_str(err.trim()).unwrap();
    assert_eq!(err["kind"]["tag"], "invalid-input");
    assert_eq!(err["kind"]["val"], "action");

    // Both hosts really reached the emulator over loopback.
    let who_am_i = emulator
        .log()
        .iter()
        .filter(|r| r.path().ends_with("/WhoAmI"))
        .count();
    assert_eq!(who_am_i, 2);
    server.shutdown();
}
