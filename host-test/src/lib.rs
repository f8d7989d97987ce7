//! The native side of the d365 connector: a wasmtime host for the component
//! ([`host`]), a Dataverse emulator ([`emulator`], standalone: it imports
//! nothing from the host), the pieces of the `d365` CLI ([`cli`]), the
//! webhook trigger's listener ([`trigger`]), the fault matrix that
//! runs every action under every injected fault ([`fault_matrix`]), and
//! `d365 mcp`, the actions as Model Context Protocol tools ([`mcp`]), and
//! `d365 load`, concurrent workflows under service protection ([`load`]).

pub mod bench;
pub mod cli;
pub mod emulator;
pub mod fault_matrix;
pub mod host;
pub mod load;
pub mod mcp;
pub mod trigger;
