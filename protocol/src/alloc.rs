//! A global allocator that makes absurd allocation requests harmless.
//!
//! The generated Kafka decoders reserve `Vec::with_capacity(n)` with `n` read straight off
//! the wire, before checking that `n` elements could possibly fit in the frame. A garbage
//! array length of two billion would ask the system allocator for hundreds of gigabytes;
//! that request fails, and a failed allocation aborts the whole process, taking every other
//! client's connection with it.
//!
//! This allocator serves requests of [`HUGE`] bytes or more with an `mmap` that reserves
//! address space without committing memory (`MAP_NORESERVE`). The decoder then fails on
//! the first element it cannot read, drops the vector, and the mapping is returned; memory
//! that is really written is committed page by page as usual. Everything smaller goes to
//! the system allocator unchanged. Install it in every binary that decodes requests:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: strand_protocol::alloc::HugeAllocationGuard = strand_protocol::alloc::HugeAllocationGuard;
//! ```

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at or above this size are served by reserved mappings.
pub const HUGE: usize = 1 << 30;

const PAGE: usize = 4096;

/// See the module documentation.
pub struct HugeAllocationGuard;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

unsafe fn map_reserved(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        ptr.cast()
    }
}

/// Keeps buffers of megabytes on the heap and freed memory for reuse.
///
/// Fetch responses are built in buffers of up to tens of megabytes. glibc serves
/// allocations that large with fresh `mmap`s and unmaps them on free, so every response
/// paid a page fault and the zeroing of each of its pages, a large share of the broker's
/// CPU in a catch-up read. Call once at start, before other threads allocate.
pub fn keep_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's tuning parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
    }
}

// SAFETY: every pointer handed out is either from `System` (and returned to it) or from
// `mmap` of exactly `layout.size()` bytes (and unmapped with that size); `is_huge` on the
// layout decides which, and it is the same layout on allocation and deallocation.
unsafe impl GlobalAlloc for HugeAllocationGuard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            unsafe { map_reserved(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Anonymous mappings are zero-filled.
            unsafe { map_reserved(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new_ptr = unsafe { self.alloc(new_layout) };
        if !new_ptr.is_null() {
            let keep = layout.size().min(new_size);
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, keep);
                self.dealloc(ptr, layout);
            }
        }
        new_ptr
    }
}

#[cfg(test)]
mod tests {
    // lib.rs installs the guard as this test binary's allocator; this checks the property
    // the codec tests rely on: reserving far more than the machine has succeeds and is freed.
    #[test]
    fn reserving_a_terabyte_does_not_abort() {
        let v: Vec<u64> = Vec::with_capacity((1usize << 40) / 8);
        assert!(v.capacity() >= (1 << 37));
        drop(v);
        let mut small = Vec::with_capacity(4);
        small.extend_from_slice(&[1u8, 2, 3, 4, 5]);
        assert_eq!(small, [1, 2, 3, 4, 5]);
    }
}
