//! The peer: DynamicsWebApi under Node (`host-test/js/bench-dwa.mjs`), one
//! Node process per measurement, against the same emulator.

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn js_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/js"))
}

/// Checks Node is there and installs the pinned dynamics-web-api (from
/// `host-test/js/package.json`) when it is missing. `Err` says why the peer
/// cannot run; the bench then reports its rows as unavailable.
pub fn prepare() -> Result<()> {
    let node = Command::new("node").arg("--version").output();
    if !node.as_ref().is_ok_and(|o| o.status.success()) {
        bail!("Node.js not found (apt-get install nodejs)");
    }
    let dir = js_dir();
    if !dir
        .join("node_modules/dynamics-web-api/package.json")
        .exists()
    {
        // Not `npm ci`: npm 11 refuses this lockfile (other platforms'
        // optional binaries) as out of sync; `npm install` keeps the locked versions.
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .context("running npm install")?;
        if !out.status.success() {
            bail!(
                "npm install in host-test/js failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
        }
    }
    Ok(())
}

/// What one run of the script reported, and how long the process took from
/// spawn to exit.
pub struct PeerRun {
    pub out: Value,
    pub wall: Duration,
}

/// Runs one scenario job (`job` gets the connection fields added).
pub async fn run(
    base: &str,
    token_url: &str,
    id: &str,
    secret: &str,
    mut job: Value,
) -> Result<PeerRun> {
    job["serverUrl"] = json!(base);
    job["tokenUrl"] = json!(token_url);
    job["clientId"] = json!(id);
    job["clientSecret"] = json!(secret);
    let start = Instant::now();
    let out = tokio::process::Command::new("node")
        .arg(js_dir().join("bench-dwa.mjs"))
        .arg(job.to_string())
        .current_dir(js_dir())
        .output()
        .await
        .context("running node")?;
    let wall = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    let v: Value = serde_json::from_str(line).with_context(|| {
        format!(
            "bench-dwa.mjs printed no result (stderr: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    if v["ok"] != true {
        bail!("DynamicsWebApi failed: {}", v["error"]);
    }
    Ok(PeerRun { out: v, wall })
}
