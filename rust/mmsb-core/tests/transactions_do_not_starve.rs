//! A long transaction that keeps losing to short rivals on the same page
//! still commits: after `STARVATION_ATTEMPTS` failed attempts
//! `with_transaction` runs it alone (the transaction gate), so it does not
//! exhaust its retries. Oracle: the page's final counter equals the number of
//! successful increments of both sides (no lost update).

use mmsb_core::transaction::STARVATION_ATTEMPTS;
use mmsb_core::{Delta, Op, PageId, PageLocation, Store};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

fn counter(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

#[test]
fn a_slow_transaction_against_a_stream_of_fast_rivals_still_commits() {
    let store = Store::in_memory();
    let page = store
        .commit(vec![Op::CreatePage {
            size: 8,
            location: PageLocation::Cpu,
        }])
        .unwrap()
        .created[0];
    let stop = AtomicBool::new(false);
    let rival_commits = AtomicU64::new(0);
    let incr = |store: &Store, page: PageId, slow: bool| {
        store.with_transaction(|t| {
            let v = counter(&t.read(page)?);
            if slow {
                // Far longer than a rival's whole transaction: without the
                // gate, some rival commits inside this window on every try.
                std::thread::sleep(Duration::from_millis(2));
            }
            t.write(Delta::dense(page, 0, (v + 1).to_le_bytes().to_vec()))
        })
    };
    let mut slow_attempts = Vec::new();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                incr(&store, page, false).unwrap();
                rival_commits.fetch_add(1, Ordering::Relaxed);
            }
        });
        // Let the rival get going, then run slow transactions against it.
        while rival_commits.load(Ordering::Relaxed) < 100 {
            std::thread::yield_now();
        }
        for _ in 0..5 {
            let c = incr(&store, page, true).expect("the slow transaction starved");
            slow_attempts.push(c.attempts);
        }
        stop.store(true, Ordering::Relaxed);
    });
    let total = rival_commits.load(Ordering::Relaxed) + 5;
    assert_eq!(counter(&store.read(page).unwrap()), total, "a lost update");
    for &a in &slow_attempts {
        // Commits already past the gate can make the first gated attempt
        // conflict; later ones run alone.
        assert!(
            a <= STARVATION_ATTEMPTS + 3,
            "a slow transaction took {a} attempts: {slow_attempts:?}"
        );
    }
}
