//! Backward compatibility of log segment format version 2 (the version that
//! announces the dependency-graph records): a data directory written by this
//! build and committed under `tests/data/format-v2/` must keep opening with
//! exactly the contents it was written with, its log must hold exactly the
//! records that were committed, and a segment or checkpoint of a *newer*
//! version than this build reads must be refused by name, with nothing cut.
//! Set `MMSB_WRITE_SAMPLE=1` to write the sample when it is missing (only when
//! the format version changes, into a new directory).

mod common;

use common::files::copy_dir;
use mmsb_core::checkpoint;
use mmsb_core::tlog_frame::crc32c;
use mmsb_core::tlog_reader;
use mmsb_core::tlog_segment::{self, FORMAT_VERSION};
use mmsb_core::vfs::RealVfs;
use mmsb_core::{
    DType, Delta, EdgeKind, EdgeWeight, ErrorCode, NumericView, Op, PageId, PageLocation,
    RecomputeFn, Store, StoreOptions, Target,
};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/format-v2")
}

fn p(n: u64) -> PageId {
    PageId(n)
}

/// Every record kind, graph records and a derived delta included, a
/// checkpoint in the middle and compressed frames.
fn write_sample(dir: &Path) {
    let opts = StoreOptions {
        compression: true,
        ..StoreOptions::default()
    };
    let s = Store::open(dir, opts).unwrap();
    // LSN 1: pages 1, 2, 3; "hello" into page 1.
    let r = s
        .commit(vec![
            Op::CreatePage {
                size: 16,
                location: PageLocation::Cpu,
            },
            Op::CreatePage {
                size: 16,
                location: PageLocation::Cpu,
            },
            Op::CreatePage {
                size: 16,
                location: PageLocation::Cpu,
            },
            Op::Delta(Delta::dense(p(1), 0, b"hello".to_vec())),
        ])
        .unwrap();
    assert_eq!((r.lsn, r.created.clone()), (1, vec![p(1), p(2), p(3)]));
    s.set_recompute(p(2), RecomputeFn::Passthrough).unwrap();
    // LSN 2: metadata, a view, edges 1 -> 2 (data, weight 0.5) and 1 -> 3 (control).
    s.commit(vec![
        Op::SetMetadata {
            page: p(1),
            key: "owner".into(),
            value: b"sample".to_vec(),
        },
        Op::SetView {
            page: p(1),
            view: Some(NumericView {
                dtype: DType::U32,
                len: 4,
            }),
        },
        Op::AddEdge {
            parent: p(1),
            child: p(2),
            kind: EdgeKind::Data,
            weight: Some(EdgeWeight::Scalar(0.5)),
        },
        Op::AddEdge {
            parent: p(1),
            child: p(3),
            kind: EdgeKind::Control,
            weight: None,
        },
    ])
    .unwrap();
    s.checkpoint().unwrap();
    // LSN 3: a sparse write of page 1 (page 2 follows it), edge 1 -> 3 removed.
    s.commit(vec![
        Op::Delta(Delta::sparse(
            p(1),
            8,
            8,
            vec![0b1000_0001],
            vec![0xAA, 0xBB],
        )),
        Op::RemoveEdge {
            parent: p(1),
            child: p(3),
            kind: EdgeKind::Control,
        },
    ])
    .unwrap();
    // LSN 4: metadata removed, page 3 deleted.
    s.commit(vec![
        Op::RemoveMetadata {
            page: p(1),
            key: "owner".into(),
        },
        Op::DeletePage(p(3)),
    ])
    .unwrap();
    s.close().unwrap();
}

/// The sample, copied into a temporary directory (opening writes a new segment).
fn sample_copy() -> tempfile::TempDir {
    assert_eq!(
        FORMAT_VERSION, 2,
        "a new format needs a new sample directory"
    );
    // Once per test binary: the tests run in parallel.
    static WRITE: std::sync::Once = std::sync::Once::new();
    WRITE.call_once(|| {
        if std::env::var("MMSB_WRITE_SAMPLE").is_ok() && !sample_dir().exists() {
            write_sample(&sample_dir());
            std::fs::remove_file(sample_dir().join("LOCK")).unwrap();
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&sample_dir(), tmp.path());
    tmp
}

fn segment_1(dir: &Path) -> PathBuf {
    tlog_segment::path(&dir.join("log"), 1)
}

fn only_checkpoint(dir: &Path) -> PathBuf {
    let list = checkpoint::list(&RealVfs, &dir.join("checkpoints")).unwrap();
    assert_eq!(list.len(), 1);
    list[0].1.clone()
}

/// Page 1 after LSN 3 (and 4), written out by hand.
fn page_1_after_lsn_3() -> Vec<u8> {
    let mut want = vec![0u8; 16];
    want[..5].copy_from_slice(b"hello");
    want[8] = 0xAA;
    want[15] = 0xBB;
    want
}

fn edges_of(g: &mmsb_core::DependencyGraph) -> Vec<(u64, u64, EdgeKind, Option<EdgeWeight>)> {
    g.edges()
        .into_iter()
        .map(|e| (e.parent.0, e.child.0, e.kind, e.weight))
        .collect()
}

#[test]
fn the_committed_format_v2_sample_holds_exactly_the_committed_records() {
    let tmp = sample_copy();
    let seg = std::fs::read(segment_1(tmp.path())).unwrap();
    assert_eq!(&seg[0..8], b"MMSBTLOG");
    assert_eq!(seg[8..12], 2u32.to_le_bytes(), "a version 2 segment");
    let mut frames: Vec<(u64, Vec<(&'static str, u64)>)> = Vec::new();
    let scan = tlog_reader::scan(&RealVfs, &tmp.path().join("log"), |f, recs| {
        frames.push((
            f.lsn,
            recs.iter().map(|r| (r.kind_name(), r.page().0)).collect(),
        ));
        Ok(())
    })
    .unwrap();
    assert!(matches!(scan.end, tlog_reader::LogEnd::Clean));
    assert_eq!(scan.summary.last_lsn, 4);
    assert!(
        scan.summary.compressed_frames > 0,
        "the sample has compressed frames"
    );
    // The input records in op order; a wave may append derived deltas of page 2.
    let inputs: [&[(&str, u64)]; 4] = [
        &[
            ("create-page", 1),
            ("create-page", 2),
            ("create-page", 3),
            ("delta", 1),
        ],
        &[
            ("set-metadata", 1),
            ("set-view", 1),
            ("add-edge", 1),
            ("add-edge", 1),
        ],
        &[("delta", 1), ("remove-edge", 1)],
        &[("remove-metadata", 1), ("delete-page", 3)],
    ];
    assert_eq!(frames.len(), 4);
    for ((lsn, recs), (want_lsn, want)) in frames.iter().zip((1u64..).zip(inputs)) {
        assert_eq!(*lsn, want_lsn);
        assert_eq!(&recs[..want.len()], want, "LSN {lsn}");
        for extra in &recs[want.len()..] {
            assert_eq!(
                *extra,
                ("delta", 2),
                "LSN {lsn}: only derived deltas of page 2"
            );
        }
    }
    assert!(
        frames[2].1.len() > inputs[2].len(),
        "the write of page 1 at LSN 3 logs page 2's derived delta"
    );
}

#[test]
fn the_committed_format_v2_sample_opens_with_its_contents() {
    let tmp = sample_copy();
    let c = checkpoint::load(&RealVfs, &only_checkpoint(tmp.path())).unwrap();
    assert_eq!((c.version, c.info.lsn), (checkpoint::FORMAT_VERSION, 2));
    assert_eq!(c.graph.edge_count(), 2);

    let s = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    assert_eq!(s.lsn(), 4);
    assert_eq!(s.recovery_report().checkpoint.as_ref().unwrap().lsn, 2);
    assert_eq!(s.read(p(1)).unwrap(), page_1_after_lsn_3());
    // Page 2 is page 1 passed through, restored from the log with no function registered.
    assert_eq!(s.recompute_fn(p(2)), None);
    assert_eq!(s.read(p(2)).unwrap(), page_1_after_lsn_3());
    assert!(s.page(p(3)).is_err(), "page 3 was deleted at LSN 4");
    let p1 = s.page(p(1)).unwrap();
    assert_eq!(p1.epoch(), 2);
    assert_eq!(p1.metadata("owner"), None);
    assert_eq!(
        p1.view(),
        Some(NumericView {
            dtype: DType::U32,
            len: 4
        })
    );
    assert_eq!(
        s.with_graph(edges_of),
        vec![(1, 2, EdgeKind::Data, Some(EdgeWeight::Scalar(0.5)))]
    );
    s.with_graph(|g| g.check_invariants()).unwrap();

    let mut hello = vec![0u8; 16];
    hello[..5].copy_from_slice(b"hello");
    let at1 = s.state_at(Target::Lsn(1)).unwrap();
    assert_eq!(at1.read(p(1)).unwrap(), hello);
    assert_eq!(at1.read(p(3)).unwrap(), vec![0u8; 16]);
    assert_eq!(at1.graph().edge_count(), 0);
    let at2 = s.state_at(Target::Lsn(2)).unwrap();
    assert_eq!(
        at2.page(p(1)).unwrap().metadata("owner"),
        Some(&b"sample"[..])
    );
    assert_eq!(
        edges_of(at2.graph()),
        vec![
            (1, 2, EdgeKind::Data, Some(EdgeWeight::Scalar(0.5))),
            (1, 3, EdgeKind::Control, None),
        ]
    );
    let at3 = s.state_at(Target::Lsn(3)).unwrap();
    assert_eq!(at3.read(p(2)).unwrap(), page_1_after_lsn_3());
    assert_eq!(at3.read(p(3)).unwrap(), vec![0u8; 16]);
}

/// Rewrites the version of segment 1's header and fixes its checksum.
fn set_segment_version(dir: &Path, version: u32) {
    let path = segment_1(dir);
    let mut b = std::fs::read(&path).unwrap();
    b[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32c(&b[0..32]);
    b[32..36].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, b).unwrap();
}

#[test]
fn a_segment_of_a_newer_version_is_refused_by_file_and_version_and_left_alone() {
    let tmp = sample_copy();
    set_segment_version(tmp.path(), FORMAT_VERSION + 1);
    let before = std::fs::read(segment_1(tmp.path())).unwrap();
    for recover_past_corruption in [false, true] {
        let mut opts = StoreOptions::default();
        opts.recovery.recover_past_corruption = recover_past_corruption;
        let e = Store::open(tmp.path(), opts).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unsupported, "{e}");
        assert!(e.message.contains("00000000000000000001.tlog"), "{e}");
        assert!(
            e.message
                .contains(&format!("format version {}", FORMAT_VERSION + 1)),
            "{e}"
        );
    }
    assert_eq!(
        std::fs::read(segment_1(tmp.path())).unwrap(),
        before,
        "nothing was cut"
    );
    let e = tlog_reader::scan(&RealVfs, &tmp.path().join("log"), |_, _| Ok(())).unwrap_err();
    assert_eq!(e.code, ErrorCode::Unsupported);
}

#[test]
fn a_segment_of_version_1_in_a_version_2_directory_still_reads() {
    // Same bytes, older version number: what a version 1 build wrote.
    let tmp = sample_copy();
    set_segment_version(tmp.path(), 1);
    let s = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    assert_eq!(s.lsn(), 4);
    assert_eq!(s.read(p(2)).unwrap(), page_1_after_lsn_3());
}

#[test]
fn a_checkpoint_of_a_newer_version_is_refused_by_file_and_version() {
    let tmp = sample_copy();
    let path = only_checkpoint(tmp.path());
    let mut b = std::fs::read(&path).unwrap();
    let newer = checkpoint::FORMAT_VERSION + 1;
    b[8..12].copy_from_slice(&newer.to_le_bytes());
    let body = b.len() - 32;
    let sha = Sha256::digest(&b[..body]);
    b[body..].copy_from_slice(&sha);
    std::fs::write(&path, &b).unwrap();
    let name = path.file_name().unwrap().to_str().unwrap().to_owned();
    let e = checkpoint::load(&RealVfs, &path).unwrap_err();
    assert_eq!(e.code, ErrorCode::Unsupported, "{e}");
    assert!(e.message.contains(&name), "{e}");
    assert!(
        e.message.contains(&format!("format version {newer}")),
        "{e}"
    );
    // Recovery stops on it rather than falling back to the log alone.
    let e = Store::open(tmp.path(), StoreOptions::default()).unwrap_err();
    assert_eq!(e.code, ErrorCode::Unsupported, "{e}");
    assert!(e.message.contains(&name), "{e}");
}
