//! Bank transfers by many threads at once, as optimistic transactions.
//!
//! Threads (`MMSB_TXN_THREADS`, default 12) run transfers
//! (`MMSB_TXN_COUNT` in all, default 20 000; the 100 000 with
//! `MMSB_TXN_COUNT=100000`) between random accounts spread over pages, through
//! `with_transaction`, while reader threads check that every snapshot — and
//! every read-only transaction — shows the opening total. Then the oracle
//! replays the committed log serially (`bank::replay_log`): every transfer
//! could pay at its place in LSN order, every written balance is what the
//! serial replay computes (no lost update), each transfer is logged exactly
//! once, and the final balances equal the store's. Conflicts are counted: each
//! conflicting attempt is one retry, and the store's counters agree with the
//! attempts the threads saw.

mod bank;

use bank::{env_or, replay_log, Bank, Rng};
use mmsb_core::{Durability, Store, StoreOptions};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

fn run(bank: Bank, threads: u64, count: u64) {
    let dir = tempfile::tempdir_in(shm()).unwrap();
    let store = Store::open(
        dir.path(),
        StoreOptions {
            durability: Durability::Buffered {
                max_delay: Duration::from_millis(20),
            },
            ..StoreOptions::default()
        },
    )
    .unwrap();
    bank.open_accounts(&store);
    let done = AtomicBool::new(false);
    let moved = AtomicU64::new(0);
    let retries_seen = AtomicU64::new(0);
    let snapshots = AtomicU64::new(0);
    let ids = bank.page_ids();
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..threads)
            .map(|t| {
                let (store, moved, retries_seen) = (&store, &moved, &retries_seen);
                s.spawn(move || {
                    let mut rng = Rng::new(t + 1);
                    let n = count / threads + u64::from(t < count % threads);
                    for seq in 0..n {
                        let from = rng.below(bank.accounts);
                        let to = rng.below(bank.accounts);
                        let amount = 1 + rng.below(300) as i64;
                        let c = store
                            .with_transaction(|txn| bank.transfer(txn, (t, seq), from, to, amount))
                            .unwrap();
                        if c.value {
                            moved.fetch_add(1, Ordering::Relaxed);
                        }
                        retries_seen.fetch_add(u64::from(c.attempts - 1), Ordering::Relaxed);
                    }
                })
            })
            .collect();
        // A snapshot reader and a read-transaction reader.
        s.spawn(|| {
            while !done.load(Ordering::Acquire) {
                let snap = store.snapshot_of(&ids).unwrap();
                let b = bank.balances(|p| snap.read(p).unwrap());
                assert_eq!(
                    b.iter().sum::<i64>(),
                    bank.total(),
                    "snapshot at LSN {} breaks the total",
                    snap.lsn()
                );
                snapshots.fetch_add(1, Ordering::Relaxed);
            }
        });
        s.spawn(|| {
            while !done.load(Ordering::Acquire) {
                let c = store
                    .with_transaction(|txn| {
                        let mut sum = 0;
                        for &p in &ids {
                            let bytes = txn.read(p)?;
                            sum += bank.balances_of_page(&bytes);
                        }
                        Ok(sum)
                    })
                    .unwrap();
                assert_eq!(c.value, bank.total(), "a read transaction broke the total");
                std::thread::yield_now();
            }
        });
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
    });
    store.sync().unwrap();
    let st = store.transaction_stats();
    let lsn = store.lsn();
    let final_bal = bank.balances(|p| store.read(p).unwrap());
    store.close().unwrap();

    let r = replay_log(bank, dir.path());
    let moved = moved.load(Ordering::Relaxed);
    assert_eq!(r.last_lsn, lsn);
    assert_eq!(
        r.transfers, moved,
        "exactly the committed transfers are in the log"
    );
    assert_eq!(
        lsn,
        1 + moved,
        "conflicted and read-only attempts logged nothing"
    );
    assert_eq!(r.ids.len() as u64, moved);
    assert_eq!(
        final_bal, r.balances,
        "final balances equal the serial replay"
    );
    assert_eq!(final_bal.iter().sum::<i64>(), bank.total());
    // Every attempt committed or aborted; every abort here was a conflict, retried.
    assert_eq!(st.begun, st.committed + st.aborted);
    assert_eq!(st.conflicts, st.aborted);
    assert_eq!(st.retries, st.conflicts);
    // The readers' transactions may conflict too; the writers' own retries are a part.
    assert!(st.retries >= retries_seen.load(Ordering::Relaxed));
    eprintln!(
        "bank: {threads} threads, {count} transfers ({moved} moved money), {} conflicts, \
         {} snapshots checked, final LSN {lsn}",
        st.conflicts,
        snapshots.load(Ordering::Relaxed)
    );
}

fn shm() -> &'static std::path::Path {
    let p = std::path::Path::new("/dev/shm");
    if p.is_dir() {
        p
    } else {
        std::path::Path::new("/tmp")
    }
}

#[test]
fn concurrent_transfers_equal_a_serial_replay_of_the_log() {
    let threads = env_or("MMSB_TXN_THREADS", 12);
    let count = env_or("MMSB_TXN_COUNT", 20_000);
    run(Bank { accounts: 1024 }, threads, count);
}

#[test]
fn high_contention_transfers_equal_a_serial_replay_of_the_log() {
    // Four pages for all threads: most transactions overlap.
    let threads = env_or("MMSB_TXN_THREADS", 12).max(8);
    let count = env_or("MMSB_TXN_COUNT", 20_000) / 4;
    run(Bank { accounts: 64 }, threads, count);
}

#[test]
fn many_threads_on_one_page_still_move_every_unit() {
    // A single page: every pair of concurrent transfers conflicts.
    run(Bank { accounts: 16 }, 16, 2_000);
}
