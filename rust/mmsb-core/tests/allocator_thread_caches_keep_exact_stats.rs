//! The process-wide allocator's thread caches: statistics stay exact while
//! threads hold slots in their caches (counts are derived from per-thread
//! counters), frees from other threads land in the freeing thread's cache,
//! and a thread's cached slots go back to the shared freelists when it exits.
//!
//! The oracle is a model kept by the test: every thread reports the
//! allocations and frees it performed per size class, and the blocks still
//! held are counted directly. This file is its own test binary, so the global
//! allocator's counters are these tests' alone (the tests in it use disjoint
//! size classes and compare deltas).

use mmsb_core::page_alloc::size_class::{class_of, class_size};
use mmsb_core::page_alloc::{Block, PageAllocator};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::{Barrier, Mutex};

/// Page sizes of the stats test: classes 64, 1024, 4096 and 8192 B.
const LENS: [usize; 4] = [64, 1000, 4096, 8192];

fn fill(b: &Block, tag: u8) {
    // SAFETY: the block owns len() bytes.
    unsafe { b.ptr().as_ptr().write_bytes(tag, b.len()) };
}

fn check(b: &Block, tag: u8) {
    // SAFETY: the block owns len() initialised bytes.
    let s = unsafe { std::slice::from_raw_parts(b.ptr().as_ptr(), b.len()) };
    assert!(s.iter().all(|&x| x == tag), "block overwritten while live");
}

/// (allocations, frees, live pages) of the global allocator per class of LENS.
fn snapshot() -> Vec<(u64, u64, u64)> {
    let s = PageAllocator::global().stats();
    LENS.iter()
        .map(|&l| {
            let c = &s.classes[class_of(l).unwrap()];
            (c.allocations, c.frees, c.live_pages)
        })
        .collect()
}

#[test]
fn stats_are_exact_at_every_pause_while_threads_hold_cached_slots() {
    let threads = 3;
    let phases = 6;
    let ops = 2_000;
    let before = snapshot();
    // Model: allocations and frees per class, summed over all threads.
    let model: Mutex<Vec<(u64, u64)>> = Mutex::new(vec![(0, 0); LENS.len()]);
    let pool: Mutex<Vec<(Block, u8)>> = Mutex::new(Vec::new());
    let held_total: Mutex<Vec<u64>> = Mutex::new(vec![0; LENS.len()]);
    let (work_done, resume) = (Barrier::new(threads + 1), Barrier::new(threads + 1));
    std::thread::scope(|s| {
        for t in 0..threads {
            let (model, pool, held_total) = (&model, &pool, &held_total);
            let (work_done, resume) = (&work_done, &resume);
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(40 + t as u64);
                let mut mine: Vec<(Block, u8)> = Vec::new();
                let g = PageAllocator::global();
                for _ in 0..phases {
                    let mut counts = vec![(0u64, 0u64); LENS.len()];
                    for _ in 0..ops {
                        let k = rng.gen_range(0..LENS.len());
                        if rng.gen_bool(0.55) || mine.is_empty() {
                            let b = g.alloc_zeroed(LENS[k]).unwrap();
                            let tag = rng.gen();
                            fill(&b, tag);
                            mine.push((b, tag));
                            counts[k].0 += 1;
                        } else {
                            // Half the frees take a block another thread allocated.
                            let (b, tag) = if rng.gen_bool(0.5) {
                                pool.lock().unwrap().pop()
                            } else {
                                None
                            }
                            .unwrap_or_else(|| mine.swap_remove(rng.gen_range(0..mine.len())));
                            check(&b, tag);
                            let k = LENS.iter().position(|&l| class_of(l) == b.class()).unwrap();
                            g.free(b).unwrap();
                            counts[k].1 += 1;
                        }
                        if rng.gen_bool(0.05) {
                            if let Some(x) = mine.pop() {
                                pool.lock().unwrap().push(x);
                            }
                        }
                    }
                    {
                        let mut m = model.lock().unwrap();
                        for (m, c) in m.iter_mut().zip(&counts) {
                            m.0 += c.0;
                            m.1 += c.1;
                        }
                    }
                    // Pause with the cache alive (its free lists hold slots)
                    // while the main thread reads the statistics.
                    work_done.wait();
                    resume.wait();
                }
                let mut h = held_total.lock().unwrap();
                for (b, _) in &mine {
                    let k = LENS.iter().position(|&l| class_of(l) == b.class()).unwrap();
                    h[k] += 1;
                }
                pool.lock().unwrap().extend(mine);
            });
        }
        for _ in 0..phases {
            work_done.wait();
            let now = snapshot();
            let m = model.lock().unwrap();
            for k in 0..LENS.len() {
                let (a, f) = (now[k].0 - before[k].0, now[k].1 - before[k].1);
                assert_eq!((a, f), m[k], "class of {} B: (allocations, frees)", LENS[k]);
                assert_eq!(now[k].2 - before[k].2, m[k].0 - m[k].1, "live pages");
            }
            drop(m);
            resume.wait();
        }
    });
    // The threads have exited: their caches were drained and their counts
    // folded into the classes; the live pages are the blocks left in the pool.
    let now = snapshot();
    let m = model.into_inner().unwrap();
    let left = pool.into_inner().unwrap();
    for k in 0..LENS.len() {
        assert_eq!((now[k].0 - before[k].0, now[k].1 - before[k].1), m[k]);
        let n = left
            .iter()
            .filter(|(b, _)| b.class() == class_of(LENS[k]))
            .count() as u64;
        assert_eq!(now[k].2 - before[k].2, n);
    }
    let s = PageAllocator::global().stats();
    for &l in &LENS {
        let c = &s.classes[class_of(l).unwrap()];
        assert_eq!(
            c.live_bytes,
            c.live_pages * class_size(class_of(l).unwrap()) as u64
        );
    }
    for (b, tag) in left {
        check(&b, tag);
        PageAllocator::global().free(b).unwrap();
    }
    let _ = held_total;
}

#[test]
fn an_exited_thread_gives_its_cached_slots_back_to_other_threads() {
    // A class no other test here uses: 57344 B, 16 slots per chunk.
    let len = 57_344;
    let c = class_of(len).unwrap();
    let g = PageAllocator::global();
    let reserved = || g.stats().classes[c].reserved_bytes;
    let before = g.stats().classes[c];
    // A thread takes 40 blocks (three chunks), frees them all into its own
    // cache (past the flush limit of 4, so some go to the shared lists while
    // it runs), then exits with the rest cached.
    let addrs: Vec<usize> = std::thread::spawn(move || {
        let blocks: Vec<Block> = (0..40).map(|_| g.alloc_uninit(len).unwrap()).collect();
        let addrs = blocks.iter().map(|b| b.ptr().as_ptr() as usize).collect();
        for b in blocks {
            g.free(b).unwrap();
        }
        addrs
    })
    .join()
    .unwrap();
    let after_exit = g.stats().classes[c];
    assert_eq!(after_exit.live_pages, before.live_pages);
    assert_eq!(after_exit.allocations - before.allocations, 40);
    assert_eq!(after_exit.frees - before.frees, 40);
    let grown = reserved();
    // Another thread takes as many blocks: every one of them is served from
    // the slots the exited thread reserved (no chunk is carved), none twice,
    // each zeroed.
    let got: Vec<usize> = std::thread::spawn(move || {
        let blocks: Vec<Block> = (0..40).map(|_| g.alloc_zeroed(len).unwrap()).collect();
        blocks
            .into_iter()
            .map(|b| {
                let a = b.ptr().as_ptr() as usize;
                // SAFETY: the block owns len zeroed bytes.
                let z = unsafe { std::slice::from_raw_parts(b.ptr().as_ptr(), len) };
                assert!(z.iter().all(|&x| x == 0), "reused slot comes back zeroed");
                g.free(b).unwrap();
                a
            })
            .collect()
    })
    .join()
    .unwrap();
    assert_eq!(
        reserved(),
        grown,
        "no new chunk: the cached slots came back"
    );
    let mut distinct = got.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 40, "no slot handed out twice");
    // The freed blocks of the first thread are among them (its free list
    // is reused first, LIFO, once on the shared lists).
    let reused = got.iter().filter(|a| addrs.contains(a)).count();
    assert!(
        reused >= 32,
        "only {reused} of the exited thread's freed slots reused"
    );
    assert_eq!(g.stats().classes[c].live_pages, before.live_pages);
}
