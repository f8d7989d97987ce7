//! Connection files hold a client secret and tokens (issue #32): `d365`
//! creates them 0600, rewrites them atomically so that concurrent `d365 run`
//! processes saving a refreshed token never leave a torn or empty file, and
//! warns on stderr (never showing the contents) when one is readable by
//! others. Each test drives the real `d365` binary against a `d365 emulator`
//! server.

#![cfg(unix)]

mod common;

use host_test::emulator::identity::CLIENT_CREDENTIALS_SECRET;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn d365() -> Command {
    Command::new(env!("CARGO_BIN_EXE_d365"))
}

/// The test's own folder under the temp dir (pid in the name), removed on
/// drop, and a `d365 emulator` server that wrote `conn.json` in it, killed
/// on drop.
struct Fixture {
    dir: PathBuf,
    conn: PathBuf,
    server: Child,
}

impl Fixture {
    fn start(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("d365-connfiles-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let conn = dir.join("conn.json");
        // The server prints its URL once the connection file is written.
        let server = common::spawn_cli_emulator(&[], &conn);
        Fixture { dir, conn, server }
    }

    fn run(&self) -> Output {
        run_with(&self.conn).output().unwrap()
    }

    /// The file names in the folder, sorted.
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run_with(conn: &Path) -> Command {
    let mut cmd = d365();
    cmd.args(["run", "getCurrentUser", "--connection"])
        .arg(conn);
    cmd
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn assert_ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

/// `--connection-out` creates the file 0600, and the token state written
/// back after `d365 run` keeps it 0600.
#[test]
fn created_and_written_back_files_are_0600() {
    let fx = Fixture::start("created");
    assert_eq!(mode(&fx.conn), 0o600, "--connection-out");
    assert!(read_json(&fx.conn).get("state").is_none());
    let stderr = assert_ok(&fx.run());
    assert!(!stderr.contains("warning"), "{stderr}");
    let saved = read_json(&fx.conn);
    assert!(
        saved["state"]["accessToken"].is_string(),
        "state written back"
    );
    assert_eq!(saved["clientSecret"], CLIENT_CREDENTIALS_SECRET);
    assert_eq!(mode(&fx.conn), 0o600, "after the write-back");
    assert_eq!(fx.entries(), ["conn.json"]);
}

/// 20 `d365 run` processes start at once on a file whose token has expired:
/// each fetches a token and writes the file back at about the same time.
/// Meanwhile this test reads the file in a loop; every read must be a whole
/// connection file (a truncate-and-write would show an empty or partial
/// one). Afterwards the file is valid, 0600, alone in its folder, and its
/// token works.
#[test]
fn concurrent_refreshes_leave_a_whole_private_file() {
    let fx = Fixture::start("concurrent");
    let mut file = read_json(&fx.conn);
    file["state"] = json!({"accessToken": "expired-token", "expiresAt": 1});
    std::fs::write(&fx.conn, serde_json::to_string_pretty(&file).unwrap()).unwrap();
    std::fs::set_permissions(&fx.conn, std::fs::Permissions::from_mode(0o600)).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, conn) = (stop.clone(), fx.conn.clone());
        std::thread::spawn(move || {
            let (mut reads, mut bad) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&conn).unwrap_or_default();
                reads += 1;
                match serde_json::from_str::<Value>(&text) {
                    Ok(v) if v["clientSecret"] == CLIENT_CREDENTIALS_SECRET => {}
                    // The length only: the text holds the secret.
                    _ => bad.push(text.len()),
                }
            }
            (reads, bad)
        })
    };
    let children: Vec<Child> = (0..20)
        .map(|_| {
            run_with(&fx.conn)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    stop.store(true, Ordering::Relaxed);
    let (reads, bad) = reader.join().unwrap();

    for out in &outputs {
        assert_ok(out);
    }
    assert!(reads > 0);
    assert!(
        bad.is_empty(),
        "{} of {reads} reads saw a torn file (first lengths {:?})",
        bad.len(),
        &bad[..bad.len().min(10)]
    );
    let saved = read_json(&fx.conn);
    let token = saved["state"]["accessToken"]
        .as_str()
        .expect("state.accessToken")
        .to_string();
    assert_ne!(token, "expired-token", "a refreshed token was saved");
    assert_eq!(saved["clientSecret"], CLIENT_CREDENTIALS_SECRET);
    assert_eq!(mode(&fx.conn), 0o600);
    assert_eq!(fx.entries(), ["conn.json"], "no temporary file left");

    // The saved token is used as is (not expired) and the emulator accepts it.
    assert_ok(&fx.run());
    assert_eq!(read_json(&fx.conn)["state"]["accessToken"], token.as_str());
}

/// A connection file others can read gets an ssh-style warning naming the
/// file, its mode and the fix, without its contents; the run still works.
#[test]
fn a_loose_file_gets_a_warning_without_its_contents() {
    let fx = Fixture::start("loose");
    std::fs::set_permissions(&fx.conn, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = fx.run();
    let stderr = assert_ok(&out);
    assert!(stderr.contains("warning"), "{stderr}");
    assert!(stderr.contains(&fx.conn.display().to_string()), "{stderr}");
    assert!(stderr.contains("0644"), "{stderr}");
    assert!(
        stderr.contains(&format!("chmod 600 {}", fx.conn.display())),
        "{stderr}"
    );
    for stream in [&stderr, &String::from_utf8_lossy(&out.stdout).into_owned()] {
        assert!(!stream.contains(CLIENT_CREDENTIALS_SECRET));
        assert!(!stream.contains("emulator-secret"));
    }
    // The write-back replaced the file with a private one: no more warning.
    assert_eq!(mode(&fx.conn), 0o600);
    let stderr = assert_ok(&fx.run());
    assert!(!stderr.contains("warning"), "{stderr}");
}
