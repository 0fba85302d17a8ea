//! Corruption: one bit flipped at every offset, and truncation at every
//! offset, of a small log and a small checkpoint. Every outcome must be either
//! a clean recovery whose state equals the reference model at the recovered
//! LSN (a damaged last frame is a torn tail, cut), or an error with code
//! `Corruption` / `ChecksumMismatch` naming the offset. Never a panic, never
//! wrong data. Runs on the in-memory fault file system, so each of the
//! thousands of opens costs microseconds.

mod workload;

use mmsb_core::fault_fs::FaultFs;
use mmsb_core::vfs::Vfs;
use mmsb_core::{ErrorCode, Op, RecoveryOptions, Store, StoreOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use workload::{assert_same_state, model_at, workload};

const N: u64 = 6;

fn opts() -> StoreOptions {
    StoreOptions {
        segment_bytes: 1 << 20,
        ..StoreOptions::default()
    }
}

/// A data directory with one segment holding commits 1..=N, and optionally a checkpoint at LSN 4.
fn build(w: &[Vec<Op>], with_checkpoint: bool) -> Vec<(PathBuf, Vec<u8>)> {
    let fs = FaultFs::new();
    let dir = Path::new("/db");
    let s = Store::open_with_vfs(Arc::new(fs.clone()), dir, opts()).unwrap();
    for (i, c) in w[..N as usize].iter().enumerate() {
        s.commit(c.clone()).unwrap();
        if with_checkpoint && i == 3 {
            s.checkpoint().unwrap();
        }
    }
    s.close().unwrap();
    let mut files = Vec::new();
    for sub in ["log", "checkpoints"] {
        let d = dir.join(sub);
        for n in fs.list(&d).unwrap() {
            let p = d.join(n);
            files.push((p.clone(), fs.read(&p).unwrap()));
        }
    }
    files
}

/// Opens a copy of `files` with `victim` replaced by `bytes`; checks the outcome.
/// Returns the recovered LSN, or None for a detected error.
fn check(
    files: &[(PathBuf, Vec<u8>)],
    victim: &Path,
    bytes: Vec<u8>,
    w: &[Vec<Op>],
    ctx: &str,
) -> Option<u64> {
    let fs = FaultFs::new();
    fs.create_dir_all(Path::new("/db/log")).unwrap();
    fs.create_dir_all(Path::new("/db/checkpoints")).unwrap();
    for (p, b) in files {
        fs.put(
            p,
            if p == victim {
                bytes.clone()
            } else {
                b.clone()
            },
        );
    }
    match Store::open_with_vfs(Arc::new(fs), Path::new("/db"), opts()) {
        Ok(s) => {
            let lsn = s.lsn();
            s.read_with(|st| assert_same_state(st, &model_at(w, lsn), ctx));
            Some(lsn)
        }
        Err(e) => {
            assert!(
                matches!(e.code, ErrorCode::Corruption | ErrorCode::ChecksumMismatch),
                "{ctx}: unexpected error {e}"
            );
            assert!(
                e.message.contains("byte"),
                "{ctx}: error names no offset: {e}"
            );
            None
        }
    }
}

#[test]
fn every_bit_flip_in_the_log_is_detected_or_cut_at_the_last_frame() {
    let w = workload(11, N as usize);
    let files = build(&w, false);
    let (seg, bytes) = files
        .iter()
        .find(|(p, _)| p.starts_with("/db/log"))
        .unwrap();
    let (mut ok, mut err) = (0, 0);
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 1 << (i % 8);
        match check(&files, seg, b, &w, &format!("flip at {i}")) {
            Some(lsn) => {
                assert!(lsn >= N - 1, "flip at {i}: recovered only to {lsn}");
                ok += 1;
            }
            None => err += 1,
        }
    }
    assert!(err > 0 && ok > 0, "ok {ok} err {err}");
}

#[test]
fn every_truncation_of_the_log_recovers_the_complete_commits_before_it() {
    let w = workload(12, N as usize);
    let files = build(&w, false);
    let (seg, bytes) = files
        .iter()
        .find(|(p, _)| p.starts_with("/db/log"))
        .unwrap();
    let mut last = 0;
    let mut complete_at = None;
    for cut in 0..bytes.len() {
        let lsn = check(
            &files,
            seg,
            bytes[..cut].to_vec(),
            &w,
            &format!("cut at {cut}"),
        )
        .unwrap_or_else(|| panic!("truncation at {cut} must be a torn tail, not an error"));
        assert!(lsn >= last, "cut at {cut}: LSN went back");
        if lsn == N && complete_at.is_none() {
            assert_eq!(last, N - 1, "cut at {cut}");
            complete_at = Some(cut);
        }
        last = lsn;
    }
    match complete_at {
        // The file ends with the last frame: every cut loses it.
        None => assert_eq!(last, N - 1),
        // A direct-I/O log pads its last block with zeros (the clean-end
        // convention): cuts there lose nothing, and nothing else is there.
        Some(at) => assert!(
            at > 0 && bytes[at..].iter().all(|&b| b == 0),
            "only zeros may follow the last frame (from {at})"
        ),
    }
}

#[test]
fn every_bit_flip_and_truncation_of_a_checkpoint_falls_back_to_the_log() {
    let w = workload(13, N as usize);
    let files = build(&w, true);
    let (ck, bytes) = files
        .iter()
        .find(|(p, _)| p.starts_with("/db/checkpoints"))
        .unwrap();
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 1 << (i % 8);
        let lsn = check(&files, ck, b, &w, &format!("checkpoint flip at {i}"));
        assert_eq!(lsn, Some(N), "checkpoint flip at {i}");
    }
    for cut in 0..bytes.len() {
        let lsn = check(
            &files,
            ck,
            bytes[..cut].to_vec(),
            &w,
            &format!("checkpoint cut {cut}"),
        );
        assert_eq!(lsn, Some(N), "checkpoint cut at {cut}");
    }
}

#[test]
fn corruption_inside_the_log_can_be_accepted_explicitly_and_is_reported() {
    let w = workload(14, N as usize);
    let files = build(&w, false);
    let (seg, bytes) = files
        .iter()
        .find(|(p, _)| p.starts_with("/db/log"))
        .unwrap();
    let mut b = bytes.clone();
    b[60] ^= 0x10; // inside the first frame's header
    let fs = FaultFs::new();
    fs.create_dir_all(Path::new("/db/log")).unwrap();
    fs.create_dir_all(Path::new("/db/checkpoints")).unwrap();
    fs.put(seg, b);
    let e = Store::open_with_vfs(Arc::new(fs.clone()), Path::new("/db"), opts()).unwrap_err();
    assert!(matches!(
        e.code,
        ErrorCode::Corruption | ErrorCode::ChecksumMismatch
    ));
    assert!(e.message.contains("at byte 40"), "{e}");
    let o = StoreOptions {
        recovery: RecoveryOptions {
            recover_past_corruption: true,
        },
        ..opts()
    };
    let s = Store::open_with_vfs(Arc::new(fs.clone()), Path::new("/db"), o).unwrap();
    let loss = s.recovery_report().corruption_accepted.clone().unwrap();
    assert_eq!(loss.offset, 40);
    assert!(loss.bytes > 0);
    assert_eq!(s.lsn(), 0);
    // The store is usable afterwards, and a plain reopen now succeeds.
    s.commit(w[0].clone()).unwrap();
    drop(s);
    let s = Store::open_with_vfs(Arc::new(fs), Path::new("/db"), opts()).unwrap();
    assert_eq!(s.lsn(), 1);
}
