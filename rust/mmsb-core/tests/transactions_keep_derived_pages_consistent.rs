//! In immediate mode the propagation wave runs inside a transaction's commit,
//! so derived pages are consistent with the transaction in every view.
//!
//! Two account pages `a` and `b` (one `i64` each) feed a derived page
//! `d = a - b` (a Rust recompute function over both parents). Writer threads
//! move money between `a` and `b` in transactions; readers check, in
//! snapshots and in read transactions, that `a + b` is the opening total and
//! that `d` equals `a - b` — a derived page computed from the same commit as
//! the accounts. A transaction that read `d` conflicts when another commit to
//! `a` moves `d`, and a failing recompute fails the transaction's commit with
//! no trace.

use mmsb_core::{Delta, EdgeKind, Error, ErrorCode, Op, PageId, PageLocation, RecomputeFn, Store};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const TOTAL: i64 = 1_000_000;

fn i64_of(b: &[u8]) -> i64 {
    i64::from_le_bytes(b[..8].try_into().unwrap())
}

/// A store with `a = TOTAL`, `b = 0` and `d = a - b`; `fail` makes the function fail.
fn bank(fail: Arc<AtomicBool>) -> (Store, PageId, PageId, PageId) {
    let s = Store::in_memory();
    let ids = s
        .commit(
            (0..3)
                .map(|_| Op::CreatePage {
                    size: 8,
                    location: PageLocation::Cpu,
                })
                .collect(),
        )
        .unwrap()
        .created;
    let (a, b, d) = (ids[0], ids[1], ids[2]);
    s.set_recompute(
        d,
        RecomputeFn::rust_bytes(move |inp| {
            if fail.load(Ordering::Relaxed) {
                return Err(Error::invalid("recompute asked to fail"));
            }
            Ok((i64_of(inp.inputs[0]) - i64_of(inp.inputs[1]))
                .to_le_bytes()
                .to_vec())
        }),
    )
    .unwrap();
    s.commit(vec![
        Op::AddEdge {
            parent: a,
            child: d,
            kind: EdgeKind::Data,
            weight: None,
        },
        Op::AddEdge {
            parent: b,
            child: d,
            kind: EdgeKind::Data,
            weight: None,
        },
        Op::Delta(Delta::dense(a, 0, TOTAL.to_le_bytes().to_vec())),
    ])
    .unwrap();
    assert_eq!(i64_of(&s.read(d).unwrap()), TOTAL);
    (s, a, b, d)
}

fn check(a: i64, b: i64, d: i64, what: &str) {
    assert_eq!(a + b, TOTAL, "{what}: the total moved");
    assert_eq!(d, a - b, "{what}: the derived page lags its inputs");
}

#[test]
fn derived_pages_move_in_the_same_commit_as_the_transaction() {
    let (s, a, b, d) = bank(Arc::new(AtomicBool::new(false)));
    let done = AtomicBool::new(false);
    let views = AtomicU64::new(0);
    std::thread::scope(|sc| {
        let writers: Vec<_> = (0..4u64)
            .map(|t| {
                let s = &s;
                sc.spawn(move || {
                    for i in 0..1_000i64 {
                        let amount = (i * 7 + t as i64) % 50 + 1;
                        let (from, to) = if (i + t as i64) % 2 == 0 {
                            (a, b)
                        } else {
                            (b, a)
                        };
                        s.with_transaction(|txn| {
                            let fv = i64_of(&txn.read(from)?);
                            let tv = i64_of(&txn.read(to)?);
                            if fv >= amount {
                                txn.write(Delta::dense(
                                    from,
                                    0,
                                    (fv - amount).to_le_bytes().to_vec(),
                                ))?;
                                txn.write(Delta::dense(
                                    to,
                                    0,
                                    (tv + amount).to_le_bytes().to_vec(),
                                ))?;
                            }
                            Ok(())
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        sc.spawn(|| {
            while !done.load(Ordering::Acquire) {
                let snap = s.snapshot_of(&[a, b, d]).unwrap();
                let v = |p| i64_of(snap.bytes(p).unwrap());
                check(v(a), v(b), v(d), "a snapshot");
                views.fetch_add(1, Ordering::Relaxed);
            }
        });
        sc.spawn(|| {
            while !done.load(Ordering::Acquire) {
                let c = s
                    .with_transaction(|txn| {
                        Ok((
                            i64_of(&txn.read(d)?),
                            i64_of(&txn.read(a)?),
                            i64_of(&txn.read(b)?),
                        ))
                    })
                    .unwrap();
                let (dv, av, bv) = c.value;
                check(av, bv, dv, "a read transaction");
                views.fetch_add(1, Ordering::Relaxed);
            }
        });
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
    });
    let v = |p| i64_of(&s.read(p).unwrap());
    check(v(a), v(b), v(d), "the final state");
    assert!(views.load(Ordering::Relaxed) > 0);
}

#[test]
fn a_transaction_that_read_a_derived_page_conflicts_when_it_moves() {
    let (s, a, b, d) = bank(Arc::new(AtomicBool::new(false)));
    let mut t = s.begin();
    let before = i64_of(&t.read(d).unwrap());
    t.write(Delta::dense(b, 0, before.to_le_bytes().to_vec()))
        .unwrap();
    // Another commit writes only `a`; its wave moves `d`.
    s.commit(vec![Op::Delta(Delta::dense(
        a,
        0,
        (TOTAL - 1).to_le_bytes().to_vec(),
    ))])
    .unwrap();
    let lsn = s.lsn();
    assert_eq!(t.commit().unwrap_err().code, ErrorCode::TransactionConflict);
    assert_eq!(s.lsn(), lsn);
    assert_eq!(i64_of(&s.read(b).unwrap()), 0);
}

#[test]
fn a_failing_recompute_fails_the_transaction_with_no_trace() {
    let fail = Arc::new(AtomicBool::new(false));
    let (s, a, b, d) = bank(Arc::clone(&fail));
    fail.store(true, Ordering::Relaxed);
    let lsn = s.lsn();
    let e = s
        .with_transaction(|txn| {
            let av = i64_of(&txn.read(a)?);
            txn.write(Delta::dense(a, 0, (av - 5).to_le_bytes().to_vec()))?;
            txn.write(Delta::dense(b, 0, 5i64.to_le_bytes().to_vec()))
        })
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument, "{e}");
    assert_eq!(s.lsn(), lsn);
    let v = |p| i64_of(&s.read(p).unwrap());
    check(v(a), v(b), v(d), "after the failed commit");
    assert_eq!(v(a), TOTAL);
}
