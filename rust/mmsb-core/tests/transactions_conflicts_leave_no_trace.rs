//! A transaction that conflicts, aborts or is dropped leaves no trace: the LSN,
//! the log's byte count, the log files on disk, the pages in memory and the
//! state recovered after reopening are all as if it had never run.

use mmsb_core::recovery::LOG_DIR;
use mmsb_core::{Delta, ErrorCode, Op, PageId, PageLocation, Store, StoreOptions};
use std::path::Path;

/// Log files by name with their bytes.
type LogFiles = Vec<(String, Vec<u8>)>;

/// Every log file's name and bytes, sorted: the on-disk oracle.
fn log_files(dir: &Path) -> LogFiles {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join(LOG_DIR))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
    a: PageId,
    b: PageId,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let ids = store
        .commit(vec![
            Op::CreatePage {
                size: 16,
                location: PageLocation::Cpu,
            },
            Op::CreatePage {
                size: 16,
                location: PageLocation::Cpu,
            },
        ])
        .unwrap()
        .created;
    Fixture {
        dir,
        store,
        a: ids[0],
        b: ids[1],
    }
}

/// What must not change: LSN, log bytes, log files, both pages.
fn trace(f: &Fixture) -> (u64, u64, LogFiles, Vec<u8>, Vec<u8>) {
    f.store.sync().unwrap();
    (
        f.store.lsn(),
        f.store.stats().log_bytes,
        log_files(f.dir.path()),
        f.store.read(f.a).unwrap(),
        f.store.read(f.b).unwrap(),
    )
}

/// Reopens the store and checks the recovered pages equal the live ones.
fn reopen_matches(f: Fixture) {
    let (a, b) = (f.store.read(f.a).unwrap(), f.store.read(f.b).unwrap());
    let lsn = f.store.lsn();
    f.store.close().unwrap();
    let s = Store::open(f.dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(s.lsn(), lsn);
    assert_eq!(s.read(f.a).unwrap(), a);
    assert_eq!(s.read(f.b).unwrap(), b);
}

#[test]
fn a_read_set_conflict_leaves_no_trace() {
    let f = fixture();
    let mut t = f.store.begin();
    t.read(f.a).unwrap();
    t.write(Delta::dense(f.b, 0, vec![0xBB; 16])).unwrap();
    f.store
        .commit(vec![Op::Delta(Delta::dense(f.a, 0, vec![1]))])
        .unwrap();
    let before = trace(&f);
    let e = t.commit().unwrap_err();
    assert_eq!(e.code, ErrorCode::TransactionConflict);
    assert!(e.message.contains(&f.a.to_string()), "{e}");
    assert_eq!(trace(&f), before);
    reopen_matches(f);
}

#[test]
fn a_write_set_conflict_leaves_no_trace() {
    let f = fixture();
    let mut t = f.store.begin();
    t.write(Delta::dense(f.b, 0, vec![0xBB; 16])).unwrap();
    f.store
        .commit(vec![Op::Delta(Delta::dense(f.b, 8, vec![2]))])
        .unwrap();
    let before = trace(&f);
    assert_eq!(t.commit().unwrap_err().code, ErrorCode::TransactionConflict);
    assert_eq!(trace(&f), before);
    reopen_matches(f);
}

#[test]
fn a_page_deleted_under_a_transaction_is_a_conflict() {
    let f = fixture();
    let mut t = f.store.begin();
    t.read(f.a).unwrap();
    t.write(Delta::dense(f.b, 0, vec![3])).unwrap();
    f.store.commit(vec![Op::DeletePage(f.a)]).unwrap();
    let before = trace_without_a(&f);
    assert_eq!(t.commit().unwrap_err().code, ErrorCode::TransactionConflict);
    assert_eq!(trace_without_a(&f), before);
}

fn trace_without_a(f: &Fixture) -> (u64, u64, LogFiles, Vec<u8>) {
    f.store.sync().unwrap();
    (
        f.store.lsn(),
        f.store.stats().log_bytes,
        log_files(f.dir.path()),
        f.store.read(f.b).unwrap(),
    )
}

#[test]
fn aborted_and_dropped_transactions_leave_no_trace() {
    let f = fixture();
    let before = trace(&f);
    let mut t = f.store.begin();
    t.write(Delta::dense(f.a, 0, vec![9; 16])).unwrap();
    t.abort();
    {
        let mut t = f.store.begin();
        t.write(Delta::dense(f.b, 0, vec![9; 16])).unwrap();
        // dropped without commit
    }
    assert_eq!(trace(&f), before);
    let st = f.store.transaction_stats();
    assert_eq!((st.begun, st.aborted, st.committed), (2, 2, 0));
    reopen_matches(f);
}

#[test]
fn a_lost_compare_and_set_inside_a_transaction_leaves_no_trace() {
    let f = fixture();
    let mut t = f.store.begin();
    t.write(Delta::dense(f.a, 0, vec![4]).with_expected_epoch(7))
        .unwrap();
    t.write(Delta::dense(f.b, 0, vec![4])).unwrap();
    let before = trace(&f);
    assert_eq!(t.commit().unwrap_err().code, ErrorCode::EpochMismatch);
    assert_eq!(trace(&f), before);
    reopen_matches(f);
}

#[test]
fn a_committed_transaction_logs_one_group_with_its_intent() {
    let f = fixture();
    let mut t = f.store.begin();
    t.set_intent(r#"{"op":"swap"}"#).unwrap();
    let a = t.read(f.a).unwrap();
    t.write(Delta::dense(f.a, 0, vec![6; 16])).unwrap();
    t.write(Delta::dense(f.b, 0, a)).unwrap();
    // A delta carrying its own intent keeps it.
    t.write(
        Delta::dense(f.b, 15, vec![5])
            .with_intent(r#"{"own":1}"#)
            .unwrap(),
    )
    .unwrap();
    let r = t.commit().unwrap();
    assert_eq!(r.lsn, 2);
    let intents = |p| -> Vec<Option<String>> {
        f.store
            .page_history(p, 2, 2)
            .unwrap()
            .into_iter()
            .map(|h| h.delta.intent)
            .collect()
    };
    let swap = Some(r#"{"op":"swap"}"#.to_owned());
    assert_eq!(intents(f.a), vec![swap.clone()]);
    assert_eq!(intents(f.b), vec![swap, Some(r#"{"own":1}"#.to_owned())]);
    assert_eq!(f.store.read(f.b).unwrap()[15], 5);
    reopen_matches(f);
}
