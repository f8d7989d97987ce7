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
    let bytes =
        std::fs::read(&built).unwrap_or_else(|e| panic!("reading {}: {e}", built.display()));
    std::fs::write(&dest, strip_custom_sections(&bytes))
        .unwrap_or_else(|e| panic!("writing {}: {e}", dest.display()));
}

/// The component without its top-level custom sections (`component-name`,
/// 8.3 KB of debugging names for the component's own items, and
/// `producers`), as `wasm-tools strip` leaves it; every other section is
/// copied byte for byte. `d365 component --out FILE` writes this file, the
/// one the tests load and the size budget measures.
fn strip_custom_sections(bytes: &[u8]) -> Vec<u8> {
    use wasmparser::{Parser, Payload};
    let mut out = wasm_encoder::Component::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.expect("the built component parses");
        match &payload {
            // Nested modules and components: copied whole at the top level,
            // their own payloads skipped.
            Payload::ModuleSection {
                unchecked_range, ..
            }
            | Payload::ComponentSection {
                unchecked_range, ..
            } => {
                if depth == 0 {
                    let id = if matches!(payload, Payload::ModuleSection { .. }) {
                        1
                    } else {
                        4
                    };
                    out.section(&wasm_encoder::RawSection {
                        id,
                        data: &bytes[unchecked_range.start as usize..unchecked_range.end as usize],
                    });
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::Version { .. } | Payload::CustomSection(_) => {}
            other if depth == 0 => {
                if let Some((id, range)) = other.as_section() {
                    out.section(&wasm_encoder::RawSection {
                        id,
                        data: &bytes[range.start as usize..range.end as usize],
                    });
                }
            }
            _ => {}
        }
    }
    out.finish()
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
