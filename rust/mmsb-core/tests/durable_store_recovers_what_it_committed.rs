//! The durable store, end to end, against the reference model: reopen equals
//! the model, replay to an LSN or a time equals the model then, page history is
//! the model's deltas, group commit shares fsyncs, bad commits leave no trace.

mod workload;

use mmsb_core::{
    Delta, Durability, ErrorCode, Op, PageId, PageLocation, Store, StoreOptions, Target,
};
use std::sync::Arc;
use std::time::Duration;
use workload::{assert_same_state, model_at, workload};

fn opts() -> StoreOptions {
    StoreOptions {
        segment_bytes: 4096,
        ..StoreOptions::default()
    }
}

fn run(store: &Store, commits: &[Vec<Op>], first: usize) {
    for (i, c) in commits.iter().enumerate() {
        let r = store.commit(c.clone()).unwrap();
        assert_eq!(r.lsn, (first + i + 1) as u64);
    }
}

#[test]
fn reopened_store_equals_the_model_across_segments_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let w = workload(1, 300);
    for compression in [false, true] {
        let dir = dir.path().join(format!("c{compression}"));
        let o = StoreOptions {
            compression,
            ..opts()
        };
        let s = Store::open(&dir, o).unwrap();
        run(&s, &w[..100], 0);
        s.checkpoint().unwrap();
        run(&s, &w[100..200], 100);
        s.checkpoint().unwrap();
        run(&s, &w[200..250], 200);
        s.close().unwrap();
        let s = Store::open(&dir, o).unwrap();
        assert_eq!(s.lsn(), 250);
        assert_eq!(s.recovery_report().checkpoint.as_ref().unwrap().lsn, 200);
        assert_eq!(s.recovery_report().commits_replayed, 50);
        s.read_with(|st| assert_same_state(st, &model_at(&w, 250), "reopen"));
        run(&s, &w[250..], 250);
        drop(s);
        let s = Store::open(&dir, o).unwrap();
        s.read_with(|st| assert_same_state(st, &model_at(&w, 300), "second reopen"));
        if compression {
            let ratio = s.recovery_report().log.compression_ratio();
            assert!(ratio > 1.0, "zero-heavy log should compress, ratio {ratio}");
        }
    }
}

#[test]
fn replay_to_any_retained_lsn_equals_the_model_then() {
    let dir = tempfile::tempdir().unwrap();
    let w = workload(2, 120);
    // One big segment: the checkpoint at LSN 60 prunes nothing, so 0..=120 is retained.
    let o = StoreOptions {
        segment_bytes: 1 << 30,
        ..opts()
    };
    let s = Store::open(dir.path(), o).unwrap();
    run(&s, &w[..60], 0);
    s.checkpoint().unwrap();
    run(&s, &w[60..], 60);
    for lsn in [0u64, 1, 17, 59, 60, 61, 100, 120] {
        let past = s.state_at(Target::Lsn(lsn)).unwrap();
        assert_eq!(past.lsn(), lsn);
        assert_same_state(past.pages(), &model_at(&w, lsn), &format!("lsn {lsn}"));
        let e = past.commit(vec![Op::DeletePage(PageId(1))]).unwrap_err();
        assert_eq!(e.code, ErrorCode::ReadOnly);
    }
    let e = s.state_at(Target::Lsn(121)).unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
}

#[test]
fn replay_to_a_time_selects_the_last_commit_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let w = workload(3, 30);
    let s = Store::open(dir.path(), opts()).unwrap();
    let mut stamps = Vec::new();
    for c in &w {
        stamps.push(s.commit(c.clone()).unwrap().timestamp_ns);
        std::thread::sleep(Duration::from_micros(200));
    }
    for k in [0usize, 5, 29] {
        let past = s.state_at(Target::Time(stamps[k])).unwrap();
        assert_eq!(past.lsn(), k as u64 + 1);
        assert_same_state(past.pages(), &model_at(&w, k as u64 + 1), "time");
    }
    let before = s.state_at(Target::Time(stamps[0] - 1)).unwrap();
    assert_eq!(before.lsn(), 0);
    assert!(before.page_ids().is_empty());
}

#[test]
fn page_history_lists_every_delta_of_the_page_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let w = workload(4, 80);
    let s = Store::open(dir.path(), opts()).unwrap();
    run(&s, &w, 0);
    let page = PageId(1);
    let want: Vec<(u64, Delta)> = w
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            c.iter().filter_map(move |op| match op {
                Op::Delta(d) if d.page == page => Some((i as u64 + 1, d.clone())),
                _ => None,
            })
        })
        .filter(|(l, _)| (10..=70).contains(l))
        .collect();
    let got = s.page_history(page, 10, 70).unwrap();
    let got: Vec<(u64, Delta)> = got.into_iter().map(|h| (h.lsn, h.delta)).collect();
    assert_eq!(got, want);
}

#[test]
fn a_bad_op_rejects_the_whole_commit_without_a_trace() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), opts()).unwrap();
    let r = s
        .commit(vec![Op::CreatePage {
            size: 8,
            location: PageLocation::Cpu,
        }])
        .unwrap();
    let id = r.created[0];
    let bad = vec![
        Op::Delta(Delta::dense(id, 0, vec![1, 2])),
        Op::Delta(Delta::dense(id, 7, vec![1, 2])),
    ];
    assert_eq!(s.commit(bad).unwrap_err().code, ErrorCode::InvalidArgument);
    let cas = vec![Op::Delta(
        Delta::dense(id, 0, vec![1]).with_expected_epoch(5),
    )];
    assert_eq!(s.commit(cas).unwrap_err().code, ErrorCode::EpochMismatch);
    assert_eq!(s.lsn(), 1);
    assert_eq!(s.read(id).unwrap(), vec![0; 8]);
    drop(s);
    let s = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(s.lsn(), 1);
    assert_eq!(s.recovery_report().log.frames, 1);
    assert_eq!(s.read(id).unwrap(), vec![0; 8]);
}

#[test]
fn concurrent_immediate_commits_share_fsyncs_and_all_survive() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Store::open(dir.path(), opts()).unwrap());
    let threads = 8;
    let per = 40;
    let mut ids = Vec::new();
    for _ in 0..threads {
        let r = s
            .commit(vec![Op::CreatePage {
                size: 8,
                location: PageLocation::Cpu,
            }])
            .unwrap();
        ids.push(r.created[0]);
    }
    let hs: Vec<_> = ids
        .iter()
        .map(|&id| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                for i in 0..per {
                    let v = (i as u64 + 1).to_le_bytes().to_vec();
                    s.commit(vec![Op::Delta(Delta::dense(id, 0, v))]).unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let stats = s.stats();
    assert_eq!(stats.commits, (threads + threads * per) as u64);
    assert_eq!(stats.durable_lsn, stats.lsn);
    assert!(
        stats.log_syncs <= stats.commits,
        "syncs {} commits {}",
        stats.log_syncs,
        stats.commits
    );
    eprintln!(
        "group commit: {} commits, {} fsyncs",
        stats.commits, stats.log_syncs
    );
    drop(s);
    let s = Store::open(dir.path(), opts()).unwrap();
    for id in ids {
        assert_eq!(s.read(id).unwrap(), (per as u64).to_le_bytes().to_vec());
        assert_eq!(s.page(id).unwrap().epoch(), per as u64);
    }
}

#[test]
fn buffered_commits_become_durable_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let o = StoreOptions {
        durability: Durability::Buffered {
            max_delay: Duration::from_millis(5),
        },
        ..opts()
    };
    let w = workload(5, 40);
    let s = Store::open(dir.path(), o).unwrap();
    run(&s, &w, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while s.stats().durable_lsn < 40 {
        assert!(std::time::Instant::now() < deadline, "never synced");
        std::thread::sleep(Duration::from_millis(1));
    }
    s.close().unwrap();
    let s = Store::open(dir.path(), opts()).unwrap();
    s.read_with(|st| assert_same_state(st, &model_at(&w, 40), "buffered"));
}

#[test]
fn in_memory_store_writes_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let o = StoreOptions {
        durability: Durability::None,
        ..opts()
    };
    let w = workload(6, 50);
    let s = Store::open(dir.path().join("x"), o).unwrap();
    run(&s, &w, 0);
    s.read_with(|st| assert_same_state(st, &model_at(&w, 50), "none"));
    assert!(!dir.path().join("x").exists());
    assert_eq!(s.checkpoint().unwrap_err().code, ErrorCode::Unsupported);
}

#[test]
fn old_segments_and_checkpoints_are_pruned_and_the_rest_still_replays() {
    let dir = tempfile::tempdir().unwrap();
    let w = workload(7, 400);
    let o = StoreOptions {
        segment_bytes: 2048,
        checkpoints_kept: 2,
        ..opts()
    };
    let s = Store::open(dir.path(), o).unwrap();
    let mut t50 = 0;
    for k in 0..4 {
        run(&s, &w[k * 100..(k + 1) * 100], k * 100);
        if k == 0 {
            t50 = s.state_at(Target::Lsn(50)).unwrap().timestamp_ns();
        }
        s.checkpoint().unwrap();
    }
    let ckpts = std::fs::read_dir(dir.path().join("checkpoints"))
        .unwrap()
        .count();
    assert_eq!(ckpts, 2);
    // Retained: from the oldest kept checkpoint (LSN 300) on.
    let past = s.state_at(Target::Lsn(300)).unwrap();
    assert_same_state(past.pages(), &model_at(&w, 300), "lsn 300");
    assert_eq!(
        s.state_at(Target::Lsn(50)).unwrap_err().code,
        ErrorCode::NotFound
    );
    // By time too: no checkpoint is that old, and the log begins later.
    assert_eq!(
        s.state_at(Target::Time(t50)).unwrap_err().code,
        ErrorCode::NotFound
    );
    drop(s);
    let s = Store::open(dir.path(), o).unwrap();
    s.read_with(|st| assert_same_state(st, &model_at(&w, 400), "reopen"));
}

#[test]
fn a_data_directory_opens_once_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let e = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert_eq!(e.code, ErrorCode::Io);
    assert!(e.message.contains("in use"), "{}", e.message);
    a.close().unwrap();
    let b = Store::open(dir.path(), StoreOptions::default()).unwrap();
    drop(b);
    Store::open(dir.path(), StoreOptions::default())
        .unwrap()
        .close()
        .unwrap();
}
