//! Shared by every target: an allocation larger than any input could
//! justify is a finding ("untrusted means bounded"). libFuzzer's own
//! `-malloc_limit_mb` needs a sanitizer's allocator hooks, and the targets
//! are built without a sanitizer (`scripts/fuzz.sh`: safe Rust under test,
//! debug assertions on), so the cap lives here: the allocation fails, Rust
//! reports "memory allocation of N bytes failed" and aborts, and libFuzzer
//! keeps the input as a crash.

use std::alloc::{GlobalAlloc, Layout, System};

/// No input of these targets needs more in one piece (the largest honest
/// buffer is a 64 KiB NBD option reply).
const LIMIT: usize = 64 << 20;

pub struct Bounded;

// SAFETY: every call is forwarded unchanged to the system allocator, or
// refused with a null pointer, which `GlobalAlloc` allows for any request.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > LIMIT {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract (non-zero size) is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > LIMIT {
            return std::ptr::null_mut();
        }
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout (only `System`
        // ever allocates here).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > LIMIT {
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` and `layout` came from `System` (as `dealloc`); the
        // caller guarantees `new_size` is valid for `layout`'s alignment.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
