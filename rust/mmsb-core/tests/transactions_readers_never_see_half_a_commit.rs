//! A concurrent reader never observes a half-applied multi-page commit.
//!
//! Writer threads commit transactions that stamp one value over every byte of
//! all `PAGES` pages (one commit, many pages). Reader threads look at all the
//! pages at once in three ways — a snapshot of the named pages, a snapshot of
//! the whole store, a read-only transaction reading the pages one by one —
//! and each view must show a single stamp everywhere: a mix of two stamps
//! would be a commit seen half applied.

use mmsb_core::{Delta, Op, PageId, PageLocation, Store};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const PAGES: u64 = 8;
const SIZE: u64 = 256;

fn stamp_of(bytes: &[u8]) -> u64 {
    let first = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    for c in bytes.chunks_exact(8) {
        assert_eq!(
            u64::from_le_bytes(c.try_into().unwrap()),
            first,
            "a page holds two stamps"
        );
    }
    first
}

fn one_stamp(pages: impl Iterator<Item = Vec<u8>>, what: &str) -> u64 {
    let stamps: Vec<u64> = pages.map(|b| stamp_of(&b)).collect();
    assert!(
        stamps.iter().all(|&s| s == stamps[0]),
        "{what} saw a half-applied commit: {stamps:?}"
    );
    stamps[0]
}

fn spin(done: &AtomicBool, views: &AtomicU64, view: impl Fn()) {
    while !done.load(Ordering::Acquire) {
        view();
        views.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn readers_see_whole_commits_only() {
    let writes: u64 = std::env::var("MMSB_TXN_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
        / 4;
    let store = Store::in_memory();
    let ids = store
        .commit(
            (0..PAGES)
                .map(|_| Op::CreatePage {
                    size: SIZE,
                    location: PageLocation::Cpu,
                })
                .collect(),
        )
        .unwrap()
        .created;
    let done = AtomicBool::new(false);
    let views = AtomicU64::new(0);
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..2u64)
            .map(|t| {
                let (store, ids) = (&store, &ids);
                s.spawn(move || {
                    for seq in 1..=writes / 2 {
                        let stamp = (t + 1) << 32 | seq;
                        let bytes: Vec<u8> =
                            std::iter::repeat_n(stamp.to_le_bytes(), SIZE as usize / 8)
                                .flatten()
                                .collect();
                        store
                            .with_transaction(|txn| {
                                // Read one page so that the transaction is not blind.
                                txn.read(ids[0])?;
                                for &p in ids {
                                    txn.write(Delta::dense(p, 0, bytes.clone()))?;
                                }
                                Ok(())
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        let page_snapshot = || {
            let snap = store.snapshot_of(&ids).unwrap();
            one_stamp(
                ids.iter().map(|&p| snap.read(p).unwrap()),
                "a page snapshot",
            );
        };
        let store_snapshot = || {
            let snap = store.snapshot();
            one_stamp(
                snap.page_ids()
                    .into_iter()
                    .map(|p: PageId| snap.read(p).unwrap()),
                "a store snapshot",
            );
        };
        let read_txn = || {
            let c = store
                .with_transaction(|txn| {
                    let mut pages = Vec::new();
                    for &p in &ids {
                        pages.push(txn.read(p)?);
                        std::thread::yield_now();
                    }
                    Ok(pages)
                })
                .unwrap();
            one_stamp(c.value.into_iter(), "a read transaction");
        };
        let (done, views) = (&done, &views);
        s.spawn(move || spin(done, views, page_snapshot));
        s.spawn(move || spin(done, views, store_snapshot));
        s.spawn(move || spin(done, views, read_txn));
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
    });
    let last = one_stamp(
        ids.iter().map(|&p| store.read(p).unwrap()),
        "the final state",
    );
    assert_ne!(last, 0);
    assert_eq!(store.lsn(), 1 + writes / 2 * 2);
    eprintln!(
        "{} views checked over {} multi-page commits",
        views.load(Ordering::Relaxed),
        store.lsn() - 1
    );
}
