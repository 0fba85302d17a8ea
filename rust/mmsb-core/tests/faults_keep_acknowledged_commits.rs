//! Injected faults and simulated power loss, on the fault-injecting file system.
//!
//! * Power loss (everything not synced vanishes): every acknowledged
//!   immediate commit survives; buffered commits survive as a prefix.
//! * Write error, short write, ENOSPC, fsync error: the failing commit gets a
//!   clear error (`Io` / `NoSpace`) and is not acknowledged; the store then
//!   refuses writes (`ReadOnly`) until reopened; after a crash and reopen every
//!   acknowledged commit is there and the state equals the model.
//! * Failed rename during a checkpoint: a clear error, the store stays usable,
//!   and nothing committed is lost.

mod workload;

use mmsb_core::fault_fs::{Fault, FaultFs};
use mmsb_core::{Durability, ErrorCode, Store, StoreOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use workload::{assert_same_state, model_at, workload};

fn opts() -> StoreOptions {
    StoreOptions {
        segment_bytes: 2048,
        ..StoreOptions::default()
    }
}

fn open(fs: &FaultFs, o: StoreOptions) -> Store {
    Store::open_with_vfs(Arc::new(fs.clone()), Path::new("/db"), o).unwrap()
}

#[test]
fn power_loss_keeps_every_acknowledged_immediate_commit() {
    // Both log write paths: direct I/O (the default where the file system
    // takes it) and the buffered one (where it does not).
    for direct in [true, false] {
        power_loss_case(direct);
    }
}

fn power_loss_case(direct: bool) {
    let w = workload(21, 200);
    let fs = FaultFs::new();
    fs.set_direct_io(direct);
    let mut acked = 0;
    for round in 0..5 {
        let s = open(&fs, opts());
        assert_eq!(s.lsn(), acked, "round {round}");
        assert_eq!(s.stats().log_direct_io, direct);
        for c in &w[acked as usize..acked as usize + 30] {
            acked = s.commit(c.clone()).unwrap().lsn;
        }
        if round == 2 {
            s.checkpoint().unwrap();
        }
        fs.crash();
        drop(s);
        let s = open(&fs, opts());
        assert_eq!(s.lsn(), acked);
        s.read_with(|st| assert_same_state(st, &model_at(&w, acked), "after power loss"));
    }
}

#[test]
fn power_loss_under_buffered_durability_keeps_a_prefix() {
    let w = workload(22, 100);
    let fs = FaultFs::new();
    let o = StoreOptions {
        durability: Durability::Buffered {
            max_delay: Duration::from_secs(3600),
        },
        ..opts()
    };
    let s = open(&fs, o);
    for c in &w[..50] {
        s.commit(c.clone()).unwrap();
    }
    s.sync().unwrap();
    for c in &w[50..] {
        s.commit(c.clone()).unwrap();
    }
    fs.crash();
    drop(s);
    let s = open(&fs, opts());
    let lsn = s.lsn();
    assert!((50..=100).contains(&lsn), "recovered {lsn}");
    s.read_with(|st| assert_same_state(st, &model_at(&w, lsn), "buffered prefix"));
}

fn fault_case(fault: Fault, want: &[ErrorCode], seed: u64) {
    for direct in [true, false] {
        fault_case_on(fault, want, seed, direct);
    }
}

fn fault_case_on(fault: Fault, want: &[ErrorCode], seed: u64, direct: bool) {
    let w = workload(seed, 120);
    let fs = FaultFs::new();
    fs.set_direct_io(direct);
    let s = open(&fs, opts());
    assert_eq!(s.stats().log_direct_io, direct);
    let mut acked = 0;
    for c in &w[..40] {
        acked = s.commit(c.clone()).unwrap().lsn;
    }
    fs.fail_after(fault, 3);
    let mut failed = None;
    for c in &w[40..80] {
        match s.commit(c.clone()) {
            Ok(r) => acked = r.lsn,
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let e = failed.unwrap_or_else(|| panic!("{fault:?} never surfaced"));
    assert!(want.contains(&e.code), "{fault:?}: got {e}");
    // The store now refuses writes with a clear error, until reopened.
    let again = s.commit(w[acked as usize].clone()).unwrap_err();
    assert_eq!(again.code, ErrorCode::ReadOnly, "{again}");
    assert!(again.message.contains("reopen"), "{again}");
    // Reads still work.
    s.read_with(|st| st.page_ids());
    fs.crash();
    drop(s);
    let s = open(&fs, opts());
    let lsn = s.lsn();
    assert!(
        lsn == acked || lsn == acked + 1,
        "{fault:?}: acked {acked}, recovered {lsn}"
    );
    s.read_with(|st| assert_same_state(st, &model_at(&w, lsn), &format!("{fault:?}")));
    // And it takes writes again.
    for c in &w[lsn as usize..lsn as usize + 5] {
        s.commit(c.clone()).unwrap();
    }
}

#[test]
fn write_error_fails_the_commit_and_loses_nothing_acknowledged() {
    fault_case(Fault::WriteError, &[ErrorCode::Io], 23);
}

#[test]
fn short_write_fails_the_commit_and_loses_nothing_acknowledged() {
    fault_case(Fault::ShortWrite, &[ErrorCode::Io], 24);
}

#[test]
fn enospc_is_no_space_and_loses_nothing_acknowledged() {
    fault_case(Fault::NoSpace, &[ErrorCode::NoSpace], 25);
}

#[test]
fn fsync_error_fails_the_commit_and_loses_nothing_acknowledged() {
    fault_case(Fault::FsyncError, &[ErrorCode::Io], 26);
}

#[test]
fn failed_checkpoint_rename_is_an_error_and_the_store_goes_on() {
    let w = workload(27, 60);
    let fs = FaultFs::new();
    let s = open(&fs, opts());
    for c in &w[..30] {
        s.commit(c.clone()).unwrap();
    }
    fs.fail_after(Fault::RenameError, 0);
    let e = s.checkpoint().unwrap_err();
    assert_eq!(e.code, ErrorCode::Io);
    assert!(e.message.contains("renaming checkpoint"), "{e}");
    for c in &w[30..] {
        s.commit(c.clone()).unwrap();
    }
    s.checkpoint().unwrap();
    fs.crash();
    drop(s);
    let s = open(&fs, opts());
    assert_eq!(s.lsn(), 60);
    s.read_with(|st| assert_same_state(st, &model_at(&w, 60), "rename"));
}
