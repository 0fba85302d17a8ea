//! Backward compatibility: a data directory written by format version 1 and
//! committed under `tests/data/format-v1/` must keep opening, with exactly the
//! contents it was written with. Set `MMSB_WRITE_SAMPLE=1` to regenerate it
//! (only when the format version changes, into a new directory). The sample
//! is no longer regenerated: this build writes version 2 (see
//! `format_v2_sample_still_reads.rs`), and the sample stays what version 1 wrote.

mod common;

use common::files::copy_dir;
use mmsb_core::tlog_segment::OLDEST_READABLE_VERSION;
use mmsb_core::{DType, Delta, NumericView, Op, PageId, PageLocation, Store, StoreOptions, Target};
use std::path::{Path, PathBuf};

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/format-v1")
}

/// How the sample was written (by a version 1 build; kept for the record).
#[allow(dead_code)]
fn write_sample(dir: &Path) {
    let s = Store::open(dir, StoreOptions::default()).unwrap();
    let r = s
        .commit(vec![
            Op::CreatePage {
                size: 16,
                location: PageLocation::Cpu,
            },
            Op::Delta(Delta::dense(PageId(1), 0, b"hello".to_vec())),
        ])
        .unwrap();
    assert_eq!(r.lsn, 1);
    s.commit(vec![
        Op::SetMetadata {
            page: PageId(1),
            key: "owner".into(),
            value: b"sample".to_vec(),
        },
        Op::SetView {
            page: PageId(1),
            view: Some(NumericView {
                dtype: DType::U32,
                len: 4,
            }),
        },
    ])
    .unwrap();
    s.checkpoint().unwrap();
    s.commit(vec![Op::Delta(Delta::sparse(
        PageId(1),
        8,
        8,
        vec![0b1000_0001],
        vec![0xAA, 0xBB],
    ))])
    .unwrap();
    s.close().unwrap();
}

#[test]
fn the_committed_format_v1_sample_opens_with_its_contents() {
    assert_eq!(
        OLDEST_READABLE_VERSION, 1,
        "dropping version 1 needs this test removed"
    );
    let seg = std::fs::read(sample_dir().join("log/00000000000000000001.tlog")).unwrap();
    assert_eq!(
        seg[8..12],
        1u32.to_le_bytes(),
        "the sample is a version 1 segment"
    );
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&sample_dir(), tmp.path());
    let s = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    assert_eq!(s.lsn(), 3);
    assert_eq!(s.recovery_report().checkpoint.as_ref().unwrap().lsn, 2);
    let mut want = vec![0u8; 16];
    want[..5].copy_from_slice(b"hello");
    want[8] = 0xAA;
    want[15] = 0xBB;
    assert_eq!(s.read(PageId(1)).unwrap(), want);
    let p = s.page(PageId(1)).unwrap();
    assert_eq!(p.epoch(), 2);
    assert_eq!(p.metadata("owner"), Some(&b"sample"[..]));
    assert_eq!(p.view().unwrap().dtype, DType::U32);
    let past = s.state_at(Target::Lsn(1)).unwrap();
    assert_eq!(&past.read(PageId(1)).unwrap()[..5], b"hello");
    assert_eq!(past.page(PageId(1)).unwrap().metadata("owner"), None);
}
