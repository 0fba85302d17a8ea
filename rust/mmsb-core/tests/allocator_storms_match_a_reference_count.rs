//! Multi-threaded allocate/free storms against the page allocator, checked
//! against a reference count kept by the test, and a single-threaded property
//! test against a model of live blocks.
//!
//! Every block is filled with a pattern naming its owner and serial number and
//! checked before it is freed, so two live blocks sharing memory (a freelist
//! handing one slot out twice) shows up as a corrupted pattern. Blocks also
//! migrate between threads through a shared pool, so frees land on other
//! shards than the allocations. `MMSB_ALLOC_STORM_OPS` sets the operations per
//! thread (default 10 000).

use mmsb_core::page_alloc::size_class::{class_of, class_size};
use mmsb_core::page_alloc::{Block, PageAllocator};
use mmsb_core::ErrorCode;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::{Barrier, Mutex};

fn ops_per_thread() -> usize {
    std::env::var("MMSB_ALLOC_STORM_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// A block with the word pattern its owner wrote.
struct Owned {
    block: Block,
    tag: u64,
}

fn words(b: &Block) -> usize {
    b.len() / 8
}

fn fill(b: &Block, tag: u64) {
    // SAFETY: the block owns len() bytes, 64-byte aligned, so words() u64s fit.
    let s = unsafe { std::slice::from_raw_parts_mut(b.ptr().as_ptr().cast::<u64>(), words(b)) };
    for (i, w) in s.iter_mut().enumerate() {
        *w = tag ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

fn check(o: &Owned) {
    // SAFETY: as in fill; the block is still owned by the test.
    let s = unsafe {
        std::slice::from_raw_parts(o.block.ptr().as_ptr().cast::<u64>(), words(&o.block))
    };
    for (i, w) in s.iter().enumerate() {
        assert_eq!(
            *w,
            o.tag ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            "block {:p} overwritten by another owner",
            o.block.ptr()
        );
    }
}

fn random_len(rng: &mut StdRng) -> usize {
    match rng.gen_range(0..10) {
        0 => rng.gen_range(65_537..140_000), // large path
        1..=3 => rng.gen_range(1..=65_536),
        _ => [64, 1024, 4096][rng.gen_range(0..3)], // hot classes: contention
    }
}

#[test]
fn concurrent_storms_never_hand_out_a_slot_twice_and_counts_match() {
    storm(&PageAllocator::new());
}

/// The same through the process-wide allocator, whose thread caches serve
/// most operations (no other test in this binary uses it, so its counts are
/// this test's alone).
#[test]
fn storms_through_the_thread_caches_of_the_global_allocator_match_too() {
    storm(PageAllocator::global());
}

fn storm(a: &PageAllocator) {
    let before = a.stats().totals();
    let threads = 4;
    let ops = ops_per_thread();
    let pool: Mutex<Vec<Owned>> = Mutex::new(Vec::new());
    let barrier = Barrier::new(threads);
    // Per thread: (allocations, frees) it performed.
    let counts: Vec<(u64, u64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let (pool, barrier) = (&pool, &barrier);
                s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(t as u64 + 1);
                    let mut mine: Vec<Owned> = Vec::new();
                    let (mut allocs, mut frees) = (0u64, 0u64);
                    barrier.wait();
                    for op in 0..ops {
                        match rng.gen_range(0..10) {
                            0..=3 => {
                                let block = a.alloc_zeroed(random_len(&mut rng)).unwrap();
                                let tag = ((t as u64) << 48) | op as u64;
                                fill(&block, tag);
                                mine.push(Owned { block, tag });
                                allocs += 1;
                            }
                            4 => {
                                // Hand a block to whoever comes next.
                                if let Some(o) = mine.pop() {
                                    pool.lock().unwrap().push(o);
                                }
                            }
                            _ => {
                                let o = if rng.gen_bool(0.5) {
                                    pool.lock().unwrap().pop()
                                } else {
                                    None
                                }
                                .or_else(|| {
                                    (!mine.is_empty())
                                        .then(|| mine.swap_remove(rng.gen_range(0..mine.len())))
                                });
                                if let Some(o) = o {
                                    check(&o);
                                    a.free(o.block).unwrap();
                                    frees += 1;
                                }
                            }
                        }
                    }
                    // Everything still held goes into the pool for the final count.
                    pool.lock().unwrap().extend(mine);
                    (allocs, frees)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let allocs: u64 = counts.iter().map(|c| c.0).sum();
    let frees: u64 = counts.iter().map(|c| c.1).sum();
    let left = pool.into_inner().unwrap();
    let t = a.stats().totals();
    assert_eq!(t.allocations - before.allocations, allocs);
    assert_eq!(t.frees - before.frees, frees);
    assert_eq!(t.live_pages, allocs - frees);
    assert_eq!(left.len() as u64, allocs - frees);
    // Live bytes per class equal the reference sum over the blocks still held.
    let mut per_class: HashMap<Option<usize>, u64> = HashMap::new();
    for o in &left {
        let bytes = o.block.class().map_or(o.block.len(), class_size) as u64;
        *per_class.entry(o.block.class()).or_default() += bytes;
    }
    let s = a.stats();
    for (c, cs) in s.classes.iter().enumerate() {
        assert_eq!(cs.live_bytes, per_class.get(&Some(c)).copied().unwrap_or(0));
    }
    assert_eq!(
        s.large.live_bytes,
        per_class.get(&None).copied().unwrap_or(0)
    );
    for o in left {
        check(&o);
        a.free(o.block).unwrap();
    }
    let t = a.stats().totals();
    assert_eq!(t.live_pages, 0);
    assert_eq!(t.live_bytes, 0);
}

#[test]
fn racing_double_frees_succeed_exactly_once() {
    // Two threads race to free the same raw pointer: exactly one wins, the
    // other gets an error, and the slot is on the freelist once (the next two
    // allocations of that class are distinct).
    let a = PageAllocator::new();
    for _ in 0..200 {
        let (p, len) = a.alloc_zeroed(512).unwrap().into_raw();
        let addr = p.as_ptr() as usize;
        let oks: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let a = &a;
                    // SAFETY: the test owns the block; the race between the two
                    // frees is exactly what free_raw must resolve with an error.
                    s.spawn(move || unsafe { a.free_raw(addr as *mut u8, len) })
                })
                .collect();
            hs.into_iter()
                .map(|h| match h.join().unwrap() {
                    Ok(()) => 1,
                    Err(e) => {
                        assert_eq!(e.code, ErrorCode::InvalidArgument);
                        0
                    }
                })
                .sum()
        });
        assert_eq!(oks, 1);
        let b1 = a.alloc_zeroed(512).unwrap();
        let b2 = a.alloc_zeroed(512).unwrap();
        assert_ne!(b1.ptr(), b2.ptr());
        a.free(b1).unwrap();
        a.free(b2).unwrap();
    }
    assert_eq!(a.stats().totals().live_pages, 0);
}

#[derive(Debug, Clone)]
enum Op {
    Alloc(usize),
    Free(usize), // index into the live list, modulo its length
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1usize..=140_000).prop_map(Op::Alloc),
        2 => any::<usize>().prop_map(Op::Free),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn stats_equal_a_model_of_live_blocks(ops in prop::collection::vec(op(), 1..200)) {
        let a = PageAllocator::new();
        let mut live: Vec<Owned> = Vec::new();
        let mut serial = 0u64;
        for op in ops {
            match op {
                Op::Alloc(len) => {
                    let block = a.alloc_zeroed(len).unwrap();
                    prop_assert_eq!(block.ptr().as_ptr() as usize % 64, 0);
                    prop_assert_eq!(block.class(), class_of(len));
                    serial += 1;
                    fill(&block, serial);
                    live.push(Owned { block, tag: serial });
                }
                Op::Free(i) if !live.is_empty() => {
                    let o = live.swap_remove(i % live.len());
                    check(&o);
                    a.free(o.block).unwrap();
                }
                Op::Free(_) => {}
            }
            let s = a.stats();
            for (c, cs) in s.classes.iter().enumerate() {
                let n = live.iter().filter(|o| o.block.class() == Some(c)).count() as u64;
                prop_assert_eq!(cs.live_pages, n);
                prop_assert_eq!(cs.live_bytes, n * class_size(c) as u64);
            }
            let large: Vec<&Owned> = live.iter().filter(|o| o.block.class().is_none()).collect();
            prop_assert_eq!(s.large.live_pages, large.len() as u64);
            prop_assert_eq!(
                s.large.live_bytes,
                large.iter().map(|o| o.block.len() as u64).sum::<u64>()
            );
        }
        for o in live {
            check(&o);
            a.free(o.block).unwrap();
        }
        prop_assert_eq!(a.stats().totals().live_pages, 0);
    }
}
