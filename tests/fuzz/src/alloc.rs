//! A global allocator that counts live heap bytes and their peak, so that
//! each case can be held to a memory bound (PID 1 must stay under 1 MiB
//! whatever the input). Past [`HARD_LIMIT`] it aborts at once, naming the
//! size, rather than let a runaway case take the machine's memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// LIVE when the current case started.
static BASE: AtomicUsize = AtomicUsize::new(0);
/// A case that holds more than this aborts on the spot.
const HARD_LIMIT: usize = 64 << 20;

fn grew(size: usize) {
    let live = LIVE.fetch_add(size, Relaxed) + size;
    PEAK.fetch_max(live, Relaxed);
    if live.saturating_sub(BASE.load(Relaxed)) > HARD_LIMIT {
        // No allocation here: a fixed message, then abort (libFuzzer saves
        // the input as a crash).
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"fuzz: a case holds more than 64 MiB of heap\n",
        );
        std::process::abort();
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters are only atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded as it is.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded as it is.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded as it is.
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: forwarded as it is.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE.fetch_sub(l.size(), Relaxed);
            grew(new);
        }
        q
    }
}

/// Runs `f`; the peak of heap bytes it held above what was live before.
pub fn measure(f: impl FnOnce()) -> usize {
    let base = LIVE.load(Relaxed);
    BASE.store(base, Relaxed);
    PEAK.store(base, Relaxed);
    f();
    PEAK.load(Relaxed).saturating_sub(base)
}
