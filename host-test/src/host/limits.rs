//! Per-call limits that keep one misbehaving call (a component that loops,
//! allocates without bound, or meets a server streaming gigabytes) from
//! taking the host down: a linear-memory cap, a wall-clock deadline enforced
//! by epoch interruption, and a cap on the response body wasi:http hands the
//! guest. Every limit ends the call with an error that names it; the host
//! and its other calls carry on.

use std::sync::OnceLock;
use std::time::Duration;
use wasmtime::{Engine, EngineWeak, ResourceLimiter};

/// How often the epoch ticker advances the engine's epoch: the precision of
/// the deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(50);

/// The limits every call of a [`super::ConnectorHost`] runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLimits {
    /// Linear memory of one call's instance, all memories together.
    pub memory_bytes: usize,
    /// Wall-clock time one call may run wasm; checked whenever the guest
    /// runs code (time the guest spends waiting in a host call, e.g. on an
    /// HTTP response, is bounded by wasi:http's own timeouts instead).
    pub deadline: Duration,
    /// Bytes of one HTTP response body the host passes to the guest; beyond
    /// it the body stream fails with `HTTP-response-body-size`. The
    /// component reads at most 128 MiB itself; this protects the host when
    /// a guest keeps reading.
    pub max_response_body: u64,
}

impl Default for HostLimits {
    fn default() -> Self {
        HostLimits {
            memory_bytes: 512 << 20,
            deadline: Duration::from_secs(300),
            max_response_body: 256 << 20,
        }
    }
}

impl HostLimits {
    /// Epoch ticks of the deadline (at least one).
    pub fn deadline_ticks(&self) -> u64 {
        let ticks = self.deadline.as_millis() / EPOCH_TICK.as_millis().max(1);
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
    }

    /// The message of a call stopped at its deadline.
    pub fn deadline_message(&self) -> String {
        format!(
            "the call exceeded its deadline of {:?} and was stopped",
            self.deadline
        )
    }
}

/// Tracks one call's linear memory against [`HostLimits::memory_bytes`].
pub struct MemoryLimiter {
    cap: usize,
    used: usize,
}

impl MemoryLimiter {
    pub fn new(cap: usize) -> Self {
        MemoryLimiter { cap, used: 0 }
    }

    /// The linear memory the instance holds now: its peak too, since
    /// linear memory only grows.
    pub fn used(&self) -> usize {
        self.used
    }
}

/// Tables are small for this component; this bounds a hostile one.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let used = self.used.saturating_sub(current).saturating_add(desired);
        if used > self.cap {
            // An error (not `false`) so the call ends with this message
            // instead of the guest's own "memory allocation failed" abort.
            wasmtime::bail!(
                "the call exceeded its linear memory limit of {} MiB ({} MiB requested) and was stopped",
                self.cap >> 20,
                used >> 20
            );
        }
        self.used = used;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            wasmtime::bail!("the call exceeded its table limit of {MAX_TABLE_ELEMENTS} elements");
        }
        Ok(true)
    }
}

/// Starts (once per engine) a thread that advances the engine's epoch every
/// [`EPOCH_TICK`]; it ends when the engine is dropped.
pub fn start_epoch_ticker(engine: &Engine) {
    let weak: EngineWeak = engine.weak();
    let started = std::thread::Builder::new()
        .name("wasm-epoch-ticker".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        });
    if let Err(e) = started {
        // Without a ticker no deadline fires; say so once rather than fail
        // every call.
        static WARNED: OnceLock<()> = OnceLock::new();
        WARNED.get_or_init(|| eprintln!("warning: no epoch ticker ({e}); call deadlines are off"));
    }
}

/// Turns a call's wasmtime error into one that says which limit stopped it.
pub fn explain(error: wasmtime::Error, limits: &HostLimits) -> wasmtime::Error {
    if matches!(
        error.downcast_ref::<wasmtime::Trap>(),
        Some(wasmtime::Trap::Interrupt)
    ) {
        return error.context(limits.deadline_message());
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_cap_counts_all_growth() {
        let mut l = MemoryLimiter::new(10 << 20);
        assert!(l.memory_growing(0, 4 << 20, None).unwrap());
        assert!(l.memory_growing(4 << 20, 8 << 20, None).unwrap());
        let e = l.memory_growing(8 << 20, 12 << 20, None).unwrap_err();
        assert!(
            e.to_string().contains("linear memory limit of 10 MiB"),
            "{e}"
        );
        // A second memory counts too.
        assert!(l.memory_growing(0, 2 << 20, None).unwrap());
        assert!(l.memory_growing(0, 1 << 20, None).is_err());
    }

    #[test]
    fn deadline_ticks() {
        let l = HostLimits {
            deadline: Duration::from_secs(2),
            ..HostLimits::default()
        };
        assert_eq!(l.deadline_ticks(), 40);
        let tiny = HostLimits {
            deadline: Duration::from_millis(1),
            ..HostLimits::default()
        };
        assert_eq!(tiny.deadline_ticks(), 1);
    }
}
