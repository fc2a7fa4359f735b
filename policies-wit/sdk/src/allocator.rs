//! The plugins' memory allocator: size classes with free lists, in front of the system allocator.
//!
//! A decision allocates a few dozen small blocks (the input's strings, the reason, the proposals) and frees them
//! all when the call returns. The system allocator (dlmalloc) coalesces and splits chunks on every one of those
//! calls and touches its bins all over the instance's memory; here a small block is one pop from, or push onto,
//! a stack of free blocks of its size class. The stacks are arrays of addresses in the allocator's own few cache
//! lines, so taking a block reads nothing from the block: a host running a thousand plugins meets each instance's
//! memory cold, and a free list linked through the blocks would cost a cache miss per allocation. Only when a
//! class has more free blocks than its stack holds are the rest linked through themselves.
//!
//! Blocks of 16 to 2048 bytes are carved from 64 KiB chunks and never go back to the system allocator (a plugin
//! reuses the same sizes call after call); larger or over-aligned blocks go straight to it. Plugins are
//! single-threaded (wasm32 without threads), which is what makes the unsynchronized state sound.
//!
//! It is the global allocator of every plugin built with the SDK's default `fast-alloc` feature; a plugin that
//! brings its own allocator turns the feature off.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

const SMALLEST: usize = 16;
const CLASSES: usize = 8;
const LARGEST: usize = SMALLEST << (CLASSES - 1);
const CHUNK: usize = 64 << 10;
/// Free blocks per class kept by address; more than a decision of the built-in policies frees of any one size.
const STACKED: usize = 16;

struct Pools {
    /// Free blocks of each class, by address: `stacked[class][..depth[class]]`.
    stacked: [[*mut u8; STACKED]; CLASSES],
    depth: [u8; CLASSES],
    /// Free blocks beyond the stacks: each class's list, linked through the blocks' first word.
    overflow: [*mut u8; CLASSES],
    /// The unused rest of the current chunk.
    next: *mut u8,
    end: *mut u8,
}

/// Size classes in front of `System`.
pub struct SizeClasses(UnsafeCell<Pools>);

// SAFETY: plugins run on one thread (wasm32 without the threads proposal); natively, only tests use it, each with
// its own instance on one thread.
unsafe impl Sync for SizeClasses {}

impl SizeClasses {
    pub const fn new() -> Self {
        SizeClasses(UnsafeCell::new(Pools {
            stacked: [[ptr::null_mut(); STACKED]; CLASSES],
            depth: [0; CLASSES],
            overflow: [ptr::null_mut(); CLASSES],
            next: ptr::null_mut(),
            end: ptr::null_mut(),
        }))
    }
}

impl Default for SizeClasses {
    fn default() -> Self {
        Self::new()
    }
}

/// The class serving a layout: blocks of `SMALLEST << class` bytes, 16-byte aligned. `None` for larger or
/// over-aligned layouts.
fn class(layout: Layout) -> Option<usize> {
    if layout.align() > SMALLEST || layout.size() > LARGEST {
        return None;
    }
    let block = layout.size().max(SMALLEST).next_power_of_two();
    Some((block.trailing_zeros() - SMALLEST.trailing_zeros()) as usize)
}

unsafe impl GlobalAlloc for SizeClasses {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class(layout) else {
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: single-threaded (see `Sync`), and no reference to the pools outlives this call.
        let pools = unsafe { &mut *self.0.get() };
        let depth = usize::from(pools.depth[class]);
        if depth > 0 {
            pools.depth[class] -= 1;
            return pools.stacked[class][depth - 1];
        }
        let head = pools.overflow[class];
        if !head.is_null() {
            // SAFETY: a block on the overflow list holds the next one's address at its (aligned) start.
            pools.overflow[class] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        let size = SMALLEST << class;
        if (pools.end as usize) - (pools.next as usize) < size {
            // SAFETY: a non-zero size and a valid power-of-two alignment.
            let chunk = unsafe { System.alloc(Layout::from_size_align_unchecked(CHUNK, SMALLEST)) };
            if chunk.is_null() {
                return chunk;
            }
            pools.next = chunk;
            // SAFETY: one past the end of the chunk just allocated.
            pools.end = unsafe { chunk.add(CHUNK) };
        }
        let block = pools.next;
        // SAFETY: `size` bytes fit between `next` and `end` (checked above).
        pools.next = unsafe { block.add(size) };
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = class(layout) else {
            // SAFETY: the caller's contract: `block` came from `alloc` with this layout, which sent it to `System`.
            return unsafe { System.dealloc(block, layout) };
        };
        // SAFETY: single-threaded (see `Sync`), and no reference to the pools outlives this call.
        let pools = unsafe { &mut *self.0.get() };
        let depth = usize::from(pools.depth[class]);
        if depth < STACKED {
            pools.stacked[class][depth] = block;
            pools.depth[class] += 1;
        } else {
            // SAFETY: `block` is a block of this class the caller no longer uses, at least 16 bytes and 16-byte
            // aligned, so it can hold the list's next pointer.
            unsafe { block.cast::<*mut u8>().write(pools.overflow[class]) };
            pools.overflow[class] = block;
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded up to `layout.align()`, does not overflow.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new_layout)) {
            // The block already has room for the new size.
            (Some(old), Some(new)) if old == new => block,
            // SAFETY: the caller's contract: `block` came from `System` with this layout.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: the caller's contract for `realloc`, which `alloc` and `dealloc` here share.
                unsafe {
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn classes_cover_small_aligned_layouts_only() {
        assert_eq!(class(layout(1, 1)), Some(0));
        assert_eq!(class(layout(16, 8)), Some(0));
        assert_eq!(class(layout(17, 1)), Some(1));
        assert_eq!(class(layout(2048, 16)), Some(7));
        assert_eq!(class(layout(2049, 1)), None);
        assert_eq!(class(layout(64, 32)), None);
    }

    #[test]
    fn freed_blocks_are_reused_and_live_ones_never_overlap() {
        let heap = SizeClasses::new();
        unsafe {
            let sizes = [1, 16, 24, 100, 700, 2048, 5000];
            let blocks: Vec<(*mut u8, Layout)> = sizes
                .iter()
                .enumerate()
                .map(|(i, &size)| {
                    let l = layout(size, 8);
                    let block = heap.alloc(l);
                    assert!(!block.is_null() && (block as usize).is_multiple_of(if size <= 2048 { 16 } else { 8 }));
                    ptr::write_bytes(block, i as u8, size);
                    (block, l)
                })
                .collect();
            for (i, (block, l)) in blocks.iter().enumerate() {
                let bytes = std::slice::from_raw_parts(*block, l.size());
                assert!(bytes.iter().all(|b| *b == i as u8), "block {i} was overwritten");
            }
            let (first, l) = blocks[2];
            heap.dealloc(first, l);
            assert_eq!(heap.alloc(layout(30, 4)), first, "a freed 32-byte block serves the next 17..=32 bytes");
            for (block, l) in &blocks[3..] {
                heap.dealloc(*block, *l);
            }
        }
    }

    #[test]
    fn more_free_blocks_than_the_stack_holds_are_all_reused() {
        let heap = SizeClasses::new();
        let l = layout(40, 8);
        unsafe {
            let blocks: Vec<*mut u8> = (0..3 * STACKED).map(|_| heap.alloc(l)).collect();
            for block in &blocks {
                heap.dealloc(*block, l);
            }
            let mut again: Vec<*mut u8> = (0..3 * STACKED).map(|_| heap.alloc(l)).collect();
            let mut first = blocks.clone();
            first.sort_unstable();
            again.sort_unstable();
            assert_eq!(again, first, "every freed block comes back, none twice");
        }
    }

    #[test]
    fn realloc_keeps_the_contents() {
        let heap = SizeClasses::new();
        unsafe {
            let mut l = layout(10, 1);
            let mut block = heap.alloc(l);
            ptr::copy_nonoverlapping(b"0123456789".as_ptr(), block, 10);
            for size in [12, 40, 3000, 100, 9] {
                block = heap.realloc(block, l, size);
                l = layout(size, 1);
                let kept = std::slice::from_raw_parts(block, 9);
                assert_eq!(kept, b"012345678", "after growing or shrinking to {size}");
            }
            heap.dealloc(block, l);
        }
    }
}
