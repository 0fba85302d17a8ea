//! Model checking of the lock-free freelist with loom.
//!
//! Only built with `--cfg loom` (loom is a dev-dependency for that cfg only):
//!
//! ```sh
//! cd rust && RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 \
//!     CARGO_TARGET_DIR=target/loom cargo test --release -p mmsb-core --test loom_freelist
//! ```
//!
//! The very source of `src/page_alloc/freelist.rs` is compiled here against
//! loom's atomics (it names its atomics through `super::sync`, which this file
//! provides). loom then runs each model under every interleaving of the
//! threads' atomic operations (up to the preemption bound) and every
//! memory-ordering outcome the C++ model allows. Slot ownership is checked
//! with a loom `UnsafeCell` per slot that each owner writes: if the freelist
//! ever handed one slot to two threads at once, loom would report the
//! unsynchronised accesses as a data race, and a slot whose link or bytes were
//! written without a happens-before edge to its next owner would be reported
//! the same way.
#![cfg(loom)]
#![allow(dead_code)]

mod sync {
    pub use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
}

#[path = "../src/page_alloc/freelist.rs"]
mod freelist;

use freelist::{Freelist, Links, LIVE};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use sync::AtomicU32;

/// Link table plus one "page" cell per slot.
struct Slots {
    links: Vec<AtomicU32>,
    pages: Vec<UnsafeCell<u64>>,
}

impl Links for Slots {
    fn link(&self, index: u32) -> &AtomicU32 {
        &self.links[index as usize]
    }
}

impl Slots {
    /// `n` slots, all on `list` (0 on top).
    fn on_list(n: u32, list: &Freelist) -> Slots {
        let s = Slots {
            links: (0..n).map(|_| AtomicU32::new(LIVE)).collect(),
            pages: (0..n).map(|_| UnsafeCell::new(0)).collect(),
        };
        for i in 0..n - 1 {
            s.links[i as usize].store(i + 1, sync::Ordering::Relaxed);
        }
        let mut r = 0;
        list.push_chain(&s, 0, n - 1, &mut r);
        s
    }

    /// Use the slot as its owner: write its page (a race if someone else owns it).
    fn own(&self, i: u32, v: u64) {
        // SAFETY: exclusive if the freelist is correct; loom checks exactly that.
        self.pages[i as usize].with_mut(|p| unsafe { *p = v });
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

fn drain(list: &Freelist, s: &Slots) -> Vec<u32> {
    let mut r = 0;
    let mut v: Vec<u32> = std::iter::from_fn(|| list.pop(s, &mut r)).collect();
    v.sort_unstable();
    v
}

/// The ABA schedule: A pops and pushes back while B pops two, pushes them back
/// in another order. With an untagged head, A's stale CAS could install a slot
/// B owns; with the tag every interleaving keeps each slot single-owned.
#[test]
fn pop_push_races_never_hand_a_slot_to_two_owners() {
    model(|| {
        let list = Arc::new(Freelist::new());
        let slots = Arc::new(Slots::on_list(3, &list));
        let (l, s) = (list.clone(), slots.clone());
        let a = loom::thread::spawn(move || {
            let mut r = 0;
            if let Some(i) = l.pop(&*s, &mut r) {
                s.own(i, 1);
                assert!(Freelist::mark_free(&*s, i));
                l.push(&*s, i, &mut r);
            }
        });
        let mut r = 0;
        let x = list.pop(&*slots, &mut r);
        let y = list.pop(&*slots, &mut r);
        for (i, v) in [(x, 2), (y, 3)] {
            if let Some(i) = i {
                slots.own(i, v);
            }
        }
        for i in [x, y].into_iter().flatten() {
            assert!(Freelist::mark_free(&*slots, i));
            list.push(&*slots, i, &mut r);
        }
        a.join().unwrap();
        assert_eq!(
            drain(&list, &slots),
            vec![0, 1, 2],
            "every slot back exactly once"
        );
    });
}

/// Two threads allocate and free concurrently, and frees of slots allocated by
/// the other thread happen after a hand-off: all slots end up free once.
#[test]
fn concurrent_pops_get_distinct_slots() {
    model(|| {
        let list = Arc::new(Freelist::new());
        let slots = Arc::new(Slots::on_list(2, &list));
        let hs: Vec<_> = (0..2)
            .map(|t| {
                let (l, s) = (list.clone(), slots.clone());
                loom::thread::spawn(move || {
                    let mut r = 0;
                    let i = l.pop(&*s, &mut r);
                    if let Some(i) = i {
                        s.own(i, t);
                    }
                    i
                })
            })
            .collect();
        let got: Vec<u32> = hs.into_iter().filter_map(|h| h.join().unwrap()).collect();
        assert_eq!(got.len(), 2, "two slots, two pops: both succeed");
        assert_ne!(got[0], got[1]);
        let mut r = 0;
        for i in got {
            assert!(Freelist::mark_free(&*slots, i));
            list.push(&*slots, i, &mut r);
        }
        assert_eq!(drain(&list, &slots), vec![0, 1]);
    });
}

/// Two threads race to free the same slot: exactly one succeeds.
#[test]
fn racing_double_free_is_refused_once() {
    model(|| {
        let list = Arc::new(Freelist::new());
        let slots = Arc::new(Slots::on_list(1, &list));
        let mut r = 0;
        let i = list.pop(&*slots, &mut r).unwrap();
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (l, s) = (list.clone(), slots.clone());
                loom::thread::spawn(move || {
                    let mut r = 0;
                    let ok = Freelist::mark_free(&*s, i);
                    if ok {
                        l.push(&*s, i, &mut r);
                    }
                    ok
                })
            })
            .collect();
        let wins = hs
            .into_iter()
            .filter(|_| true)
            .map(|h| h.join().unwrap())
            .filter(|&w| w)
            .count();
        assert_eq!(wins, 1);
        assert_eq!(drain(&list, &slots), vec![0]);
    });
}

/// A thread cache takes a whole list while another thread pops and pushes:
/// the taken chain and the popped slot are disjoint, and everything comes back.
#[test]
fn take_all_races_with_pop_and_push() {
    model(|| {
        let list = Arc::new(Freelist::new());
        let slots = Arc::new(Slots::on_list(3, &list));
        let (l, s) = (list.clone(), slots.clone());
        let b = loom::thread::spawn(move || {
            let mut r = 0;
            if let Some(i) = l.pop(&*s, &mut r) {
                s.own(i, 7);
                assert!(Freelist::mark_free(&*s, i));
                l.push(&*s, i, &mut r);
            }
        });
        let mut r = 0;
        let top = list.take_all(&mut r);
        // Walk the taken chain, owning each slot, then give it back whole.
        let mut chain = Vec::new();
        let mut i = top;
        while i != freelist::NIL {
            slots.own(i, 9);
            chain.push(i);
            i = slots.links[i as usize].load(sync::Ordering::Relaxed);
        }
        if let (Some(&first), Some(&last)) = (chain.first(), chain.last()) {
            list.push_chain(&*slots, first, last, &mut r);
        }
        b.join().unwrap();
        assert_eq!(drain(&list, &slots), vec![0, 1, 2]);
    });
}
