//! Builds the connector component (the root crate) for wasm32-wasip2 in
//! release mode, so `cargo test` and `cargo run -p host-test` never need a
//! manual step. It uses its own target directory (the outer cargo holds the
//! lock on the main one), `target/wasm-<checkout hash>/`.
//!
//! `D365_COMPONENT_WASM=path/to.wasm` skips the build and embeds that file
//! instead (another build of the component, or a known-good one while the
//! guest is being edited).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    report_facts(&out);
    let dest = out.join("d365_connector.wasm");
    println!("cargo:rerun-if-env-changed=D365_COMPONENT_WASM");
    if let Ok(prebuilt) = env::var("D365_COMPONENT_WASM") {
        println!("cargo:rerun-if-changed={prebuilt}");
        std::fs::copy(&prebuilt, &dest).unwrap_or_else(|e| panic!("copying {prebuilt}: {e}"));
        return;
    }
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("workspace root").to_path_buf();
    // Checkouts that share a CARGO_TARGET_DIR share this script's
    // fingerprint: with absolute paths, cargo checked the files of whichever
    // checkout ran it last, and that checkout's component stayed embedded
    // in the others. The paths are relative to this package, and
    // D365_CHECKOUT (set per checkout in .cargo/config.toml) reruns the
    // script when the build moves to another checkout.
    println!("cargo:rerun-if-env-changed=D365_CHECKOUT");
    // .cargo/config.toml holds the guest's rustflags (SIMD).
    for watched in [
        "src",
        "wit",
        "build.rs",
        "Cargo.toml",
        "Cargo.lock",
        ".cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed=../{watched}");
    }
    // One wasm target dir per checkout: several worktrees may share one
    // CARGO_TARGET_DIR, and the final `d365_connector.wasm` path would
    // otherwise be the same for all of them.
    let checkout = root
        .to_string_lossy()
        .bytes()
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join(format!("wasm-{checkout:016x}"));
    ensure_wasm_target(&root);
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            "d365-connector",
            "--target-dir",
        ])
        .arg(&target_dir);
    // Settings meant for the host build must not leak into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    for (key, _) in env::vars() {
        if key.starts_with("CARGO_PROFILE_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
        {
            cmd.env_remove(key);
        }
    }
    let status = cmd
        .status()
        .expect("running cargo for the wasm32-wasip2 component");
    assert!(
        status.success(),
        "building the connector component failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)"
    );
    let built = target_dir.join("wasm32-wasip2/release/d365_connector.wasm");
    std::fs::copy(&built, &dest).unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
}

/// rustup installs the targets `rust-toolchain.toml` names only when it
/// installs the toolchain itself: a machine that already had the pinned
/// toolchain lacks `wasm32-wasip2`, and the README's first command failed
/// there. With rustup on PATH, add the target when it is missing (a local
/// check first, so a machine that has it never touches the network).
/// Without rustup (a distribution's Rust), the build below says what to do.
fn ensure_wasm_target(root: &std::path::Path) {
    const TARGET: &str = "wasm32-wasip2";
    let installed = Command::new("rustup")
        .current_dir(root)
        .args(["target", "list", "--installed"])
        .output();
    let Ok(listed) = installed else { return };
    if !listed.status.success()
        || String::from_utf8_lossy(&listed.stdout)
            .lines()
            .any(|l| l.trim() == TARGET)
    {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target with rustup (once)");
    let added = Command::new("rustup")
        .current_dir(root)
        .args(["target", "add", TARGET])
        .status();
    if !matches!(added, Ok(s) if s.success()) {
        println!(
            "cargo:warning=`rustup target add {TARGET}` failed; the component build below will fail too"
        );
    }
}

/// Facts `d365 bench` prints: the host's cargo profile (`<target>/<profile>/
/// build/<pkg>/out`; `PROFILE` says only debug/release).
fn report_facts(out: &std::path::Path) {
    let profile = out
        .ancestors()
        .nth(3)
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().replace("debug", "dev"))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=D365_HOST_PROFILE={profile}");
}
