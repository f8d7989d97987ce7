//! The component's shadow stack (the part of linear memory below its data
//! where Rust keeps address-taken locals): 256 KiB instead of the default
//! 1 MiB. Every call is a fresh instance, and the host keeps the first
//! 512 KiB of an instance slot's memory resident (`host-test/src/host`):
//! with the default, the stack alone would be twice that, and the data and
//! heap start every call touches would sit beyond it.
//!
//! 256 KiB is four times what the deepest JSON input needs
//! (`host-test/tests/deep_inputs.rs` passes with 64 KiB and traps with
//! 32 KiB).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-cdylib=-zstack-size=262144");
    }
}
