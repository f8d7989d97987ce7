//! Keeps the component's imports to what its world needs: no environment
//! variables, no stdin or stdout, no terminals.
//!
//! Rust's std for `wasm32-wasip2` links wasi-libc, and two of its functions
//! bring in `wasi:cli` interfaces the connector never uses:
//! - `getenv`: std's panic and allocation-error hooks ask for
//!   `RUST_BACKTRACE`. wasi-libc's `getenv` imports
//!   `wasi:cli/environment` (and `wasi:cli/exit`, on its out-of-memory path).
//! - `write`/`writev`: std writes a panic message to stderr through them.
//!   wasi-libc's go through its descriptor table, which sets up all three
//!   standard streams and asks each whether it is a terminal: `wasi:cli/stdin`,
//!   `stdout` and the five `terminal-*` interfaces.
//!
//! Defining those symbols here means the linker never takes wasi-libc's. What
//! remains is `wasi:cli/stderr`, so that a panic's message still reaches the
//! host. `component_imports_only_allowed_interfaces` (host-test) lists the
//! imports.

use core::ffi::c_char;

/// Every variable is unset: the connector's configuration comes only from
/// its connection and inputs.
#[unsafe(no_mangle)]
extern "C" fn getenv(_name: *const c_char) -> *mut c_char {
    core::ptr::null_mut()
}

unsafe extern "C" {
    /// wasi-libc's `errno`.
    fn __errno_location() -> *mut i32;
}

/// wasi-libc's error numbers (WASI's `errno` enum).
const EBADF: i32 = 8;
const EINVAL: i32 = 28;
const EIO: i32 = 29;

/// -1 with `errno` set, as POSIX calls fail. A standard stream that
/// answers `EBADF` is closed to std, so a stray `print!` is dropped
/// instead of panicking.
fn fail(errno: i32) -> isize {
    // SAFETY: wasi-libc's errno location is valid for the program's life.
    unsafe { *__errno_location() = errno };
    -1
}

/// `struct iovec` as wasi-libc lays it out.
#[repr(C)]
struct IoVec {
    base: *const u8,
    len: usize,
}

/// POSIX `write`: file descriptor 2 goes to `wasi:cli/stderr`; no other
/// descriptor exists in this component (`EBADF`).
///
/// # Safety
/// `buf` points to `len` readable bytes (the libc contract std keeps).
#[unsafe(no_mangle)]
unsafe extern "C" fn write(fd: i32, buf: *const u8, len: usize) -> isize {
    if fd != 2 {
        return fail(EBADF);
    }
    if len == 0 {
        return 0;
    }
    // SAFETY: the caller's contract above.
    to_stderr(unsafe { core::slice::from_raw_parts(buf, len) })
}

/// POSIX `writev`, for file descriptor 2 only (see [`write`]).
///
/// # Safety
/// `iov` points to `count` `iovec`s, each to `len` readable bytes.
#[unsafe(no_mangle)]
unsafe extern "C" fn writev(fd: i32, iov: *const IoVec, count: i32) -> isize {
    if fd != 2 {
        return fail(EBADF);
    }
    let Ok(count) = usize::try_from(count) else {
        return fail(EINVAL);
    };
    if count == 0 {
        return 0;
    }
    // SAFETY: the caller's contract above.
    let iov = unsafe { core::slice::from_raw_parts(iov, count) };
    let mut written = 0;
    for v in iov.iter().filter(|v| v.len > 0) {
        // SAFETY: as above.
        match to_stderr(unsafe { core::slice::from_raw_parts(v.base, v.len) }) {
            n if n < 0 => return if written > 0 { written } else { n },
            n => written += n,
        }
    }
    written
}

/// Writes all of `bytes` to the host's stderr; -1 (`EIO`) when the stream
/// fails.
fn to_stderr(bytes: &[u8]) -> isize {
    let stderr = wasi::cli::stderr::get_stderr();
    // `blocking-write-and-flush` takes at most 4096 bytes per call.
    for chunk in bytes.chunks(4096) {
        if stderr.blocking_write_and_flush(chunk).is_err() {
            return fail(EIO);
        }
    }
    isize::try_from(bytes.len()).unwrap_or(isize::MAX)
}
