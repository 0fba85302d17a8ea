//! The preallocated log: under immediate durability the writer zero-fills
//! space ahead of its position so each commit's sync flushes data only. These
//! tests run a log long enough to be preallocated on the fault-injecting file
//! system and check, against a reference model of the page, that a power loss
//! keeps every acknowledged commit, that the zero tail reads as a clean end
//! (no torn tail reported, nothing cut), and that the store goes on writing
//! after reopening.

use mmsb_core::fault_fs::FaultFs;
use mmsb_core::tlog_writer::{PREALLOCATE_AFTER, PREALLOCATE_CHUNK};
use mmsb_core::vfs::Vfs;
use mmsb_core::{Delta, Durability, Op, PageLocation, Store, StoreOptions};
use std::path::Path;
use std::sync::Arc;

const PAGE: usize = 64 << 10;

fn open(fs: &FaultFs, durability: Durability) -> Store {
    let o = StoreOptions {
        durability,
        ..StoreOptions::default()
    };
    Store::open_with_vfs(Arc::new(fs.clone()), Path::new("/db"), o).unwrap()
}

/// Commits deltas of 60 KiB until `bytes` of log were written; applies each to `model`.
fn write_until(s: &Store, model: &mut [u8], bytes: u64, seed: &mut u64) {
    let id = s.read_with(|st| st.page_ids()[0]);
    while s.stats().log_bytes < bytes {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let off = (*seed >> 33) as usize % (PAGE - 60_000);
        let payload: Vec<u8> = (0..60_000).map(|i| (*seed >> 40) as u8 ^ i as u8).collect();
        model[off..off + payload.len()].copy_from_slice(&payload);
        s.commit(vec![Op::Delta(Delta::dense(id, off as u64, payload))])
            .unwrap();
    }
}

fn log_files(fs: &FaultFs) -> Vec<Vec<u8>> {
    let d = Path::new("/db/log");
    let mut names = fs.list(d).unwrap();
    names.sort();
    names.iter().map(|n| fs.read(&d.join(n)).unwrap()).collect()
}

#[test]
fn power_loss_in_a_preallocated_segment_keeps_every_acknowledged_commit() {
    let fs = FaultFs::new();
    let mut model = vec![0u8; PAGE];
    let mut seed = 7;
    let s = open(&fs, Durability::Immediate);
    s.commit(vec![Op::CreatePage {
        size: PAGE as u64,
        location: PageLocation::Cpu,
    }])
    .unwrap();
    write_until(&s, &mut model, PREALLOCATE_AFTER + (512 << 10), &mut seed);
    let acked = s.lsn();
    let seg = log_files(&fs).pop().unwrap();
    let frames = s.stats().log_bytes as usize + 40;
    assert!(
        seg.len() >= frames + (PREALLOCATE_CHUNK / 2) as usize,
        "no zero tail"
    );
    assert!(seg[frames..].iter().all(|&b| b == 0));
    fs.crash();
    drop(s);

    let s = open(&fs, Durability::Immediate);
    assert_eq!(s.lsn(), acked);
    let r = s.recovery_report();
    assert!(
        r.torn_tail.is_none(),
        "the zero tail was taken for a torn tail"
    );
    assert!(r.corruption_accepted.is_none());
    let id = s.read_with(|st| st.page_ids()[0]);
    assert!(s.read(id).unwrap() == model, "page differs from the model");

    // The reopened store writes a new segment, preallocates it too, and survives another loss.
    write_until(&s, &mut model, PREALLOCATE_AFTER + (256 << 10), &mut seed);
    let acked = s.lsn();
    fs.crash();
    drop(s);
    let s = open(&fs, Durability::Immediate);
    assert_eq!(s.lsn(), acked);
    assert!(s.recovery_report().torn_tail.is_none());
    assert!(s.read(id).unwrap() == model, "page differs from the model");
    s.close().unwrap();
}

#[test]
fn buffered_durability_does_not_preallocate() {
    let fs = FaultFs::new();
    let mut model = vec![0u8; PAGE];
    let s = open(
        &fs,
        Durability::Buffered {
            max_delay: std::time::Duration::from_secs(3600),
        },
    );
    s.commit(vec![Op::CreatePage {
        size: PAGE as u64,
        location: PageLocation::Cpu,
    }])
    .unwrap();
    write_until(&s, &mut model, PREALLOCATE_AFTER + (512 << 10), &mut 3);
    let frames = s.stats().log_bytes as usize + 40;
    s.close().unwrap();
    assert_eq!(log_files(&fs).pop().unwrap().len(), frames);
}
