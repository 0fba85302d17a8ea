//! Every page `alloc_zeroed` hands out is all zero bytes, whatever the slot
//! held before: fresh slots, slots its previous owner dirtied, slots that
//! went through a thread's free list, a flush to the shared lists, or
//! another thread. For every size class, on the global allocator (thread
//! caches, the inline and wide zeroing paths) and on a private one (shared
//! freelists). The oracle is a plain byte-by-byte comparison with zero.

use mmsb_core::page_alloc::size_class::{class_size, NUM_CLASSES};
use mmsb_core::page_alloc::{Block, PageAllocator};

/// Blocks per class and round: more than the largest flush limit (63), so
/// the recycled slots include some that were flushed to the shared lists and
/// taken back.
const BLOCKS: usize = 70;

/// Lengths that map to `class`: its slot size, one byte less, and the
/// smallest length of the class (one more than the class below).
fn lengths(class: usize) -> Vec<usize> {
    let hi = class_size(class);
    let lo = if class == 0 {
        1
    } else {
        class_size(class - 1) + 1
    };
    let mut v = vec![hi, hi - 1, lo];
    v.dedup();
    v
}

fn bytes(b: &Block) -> &[u8] {
    // SAFETY: the block owns `len` initialised bytes (zeroed, or written by
    // `dirty` below) and is not written while the slice lives.
    unsafe { std::slice::from_raw_parts(b.ptr().as_ptr(), b.len()) }
}

fn dirty(b: &Block, byte: u8) {
    // SAFETY: the block owns `len` bytes.
    unsafe { b.ptr().as_ptr().write_bytes(byte, b.len()) };
}

fn assert_zero(b: &Block, what: &str) {
    let s = bytes(b);
    if let Some(i) = s.iter().position(|&x| x != 0) {
        panic!(
            "{what}: {} byte page at {:p} has byte {i} = {:#x}",
            s.len(),
            b.ptr(),
            s[i]
        );
    }
}

/// Rounds of allocate (check zero), dirty, free, for every class and length,
/// alternating zeroed and uninitialised allocations to dirty the slots.
fn rounds(a: &PageAllocator, tag: &str) {
    for class in 0..NUM_CLASSES {
        for (k, &len) in lengths(class).iter().enumerate() {
            for round in 0..3u8 {
                let blocks: Vec<Block> = (0..BLOCKS)
                    .map(|_| {
                        let b = a.alloc_zeroed(len).unwrap();
                        assert_zero(&b, &format!("{tag} class {class} len {len} round {round}"));
                        b
                    })
                    .collect();
                for b in &blocks {
                    dirty(b, 0xFF - round);
                }
                for b in blocks {
                    a.free(b).unwrap();
                }
                // Uninitialised pages, dirtied and freed: the next round's
                // zeroed pages come from the same slots.
                let raw: Vec<Block> = (0..BLOCKS / 2)
                    .map(|_| a.alloc_uninit(len).unwrap())
                    .collect();
                for b in &raw {
                    dirty(b, 0xA5 ^ k as u8);
                }
                for b in raw {
                    a.free(b).unwrap();
                }
            }
        }
    }
}

#[test]
fn private_allocator_hands_out_only_zeroed_pages_in_every_class() {
    rounds(&PageAllocator::new(), "private");
}

#[test]
fn global_allocator_hands_out_only_zeroed_pages_in_every_class() {
    rounds(PageAllocator::global(), "global");
}

#[test]
fn pages_dirtied_and_freed_on_another_thread_come_back_zeroed() {
    // Blocks allocated here are dirtied and freed by a second thread (onto
    // its cache, then, when it exits, back to the shared lists); every page
    // either thread allocates afterwards is zero.
    let g = PageAllocator::global();
    for class in 0..NUM_CLASSES {
        let len = class_size(class);
        let blocks: Vec<Block> = (0..BLOCKS).map(|_| g.alloc_zeroed(len).unwrap()).collect();
        std::thread::spawn(move || {
            for b in &blocks {
                dirty(b, 0x3C);
            }
            for b in blocks {
                g.free(b).unwrap();
            }
            let again: Vec<Block> = (0..BLOCKS).map(|_| g.alloc_zeroed(len).unwrap()).collect();
            for b in &again {
                assert_zero(b, &format!("other thread, class {class}"));
                dirty(b, 0xC3);
            }
            for b in again {
                g.free(b).unwrap();
            }
        })
        .join()
        .unwrap();
        let here: Vec<Block> = (0..2 * BLOCKS)
            .map(|_| g.alloc_zeroed(len).unwrap())
            .collect();
        for b in &here {
            assert_zero(b, &format!("after the other thread exited, class {class}"));
        }
        for b in here {
            g.free(b).unwrap();
        }
    }
}
