//! Backward compatibility of checkpoint format 2 (the dependency graph in the
//! checkpoint) and of the graph log records: a data directory committed under
//! `tests/data/checkpoint-v2/` must keep opening with exactly the pages and
//! graph it was written with — derived pages included, with no recompute
//! function registered. Set `MMSB_WRITE_SAMPLE=1` to regenerate it (only when
//! the format changes, into a new directory).

mod common;

use common::files::copy_dir;
use mmsb_core::checkpoint::{self, FORMAT_VERSION};
use mmsb_core::vfs::RealVfs;
use mmsb_core::{
    Delta, EdgeKind, EdgeWeight, Op, PageId, PageLocation, RecomputeFn, Store, StoreOptions, Target,
};
use std::path::{Path, PathBuf};

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/checkpoint-v2")
}

fn p(n: u64) -> PageId {
    PageId(n)
}

fn write_sample(dir: &Path) {
    let s = Store::open(dir, StoreOptions::default()).unwrap();
    // LSN 1: pages 1..=4.
    s.commit(
        (0..4)
            .map(|_| Op::CreatePage {
                size: 8,
                location: PageLocation::Cpu,
            })
            .collect(),
    )
    .unwrap();
    s.set_recompute(p(2), RecomputeFn::Passthrough).unwrap();
    // LSN 2: 1 -> 2 (data, weight 0.5), 1 -> 3 (control), 2 -> 4 (gpu-sync), and a write of 1.
    s.commit(vec![
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
        Op::AddEdge {
            parent: p(2),
            child: p(4),
            kind: EdgeKind::GpuSync,
            weight: None,
        },
        Op::Delta(Delta::dense(p(1), 0, b"derived!".to_vec())),
    ])
    .unwrap();
    s.checkpoint().unwrap();
    // LSN 3: remove 1 -> 3, add 3 -> 4 (compiler), write 1 again.
    s.commit(vec![
        Op::RemoveEdge {
            parent: p(1),
            child: p(3),
            kind: EdgeKind::Control,
        },
        Op::AddEdge {
            parent: p(3),
            child: p(4),
            kind: EdgeKind::Compiler,
            weight: None,
        },
        Op::Delta(Delta::dense(p(1), 0, b"DER".to_vec())),
    ])
    .unwrap();
    s.close().unwrap();
}

fn edges_of(g: &mmsb_core::DependencyGraph) -> Vec<(u64, u64, EdgeKind, Option<EdgeWeight>)> {
    g.edges()
        .into_iter()
        .map(|e| (e.parent.0, e.child.0, e.kind, e.weight))
        .collect()
}

#[test]
fn the_committed_checkpoint_v2_sample_opens_with_its_pages_and_graph() {
    assert_eq!(
        FORMAT_VERSION, 2,
        "a new format needs a new sample directory"
    );
    if std::env::var("MMSB_WRITE_SAMPLE").is_ok() && !sample_dir().exists() {
        write_sample(&sample_dir());
    }
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&sample_dir(), tmp.path());
    let ckpts = checkpoint::list(&RealVfs, &tmp.path().join("checkpoints")).unwrap();
    assert_eq!(ckpts.len(), 1);
    let c = checkpoint::load(&RealVfs, &ckpts[0].1).unwrap();
    assert_eq!((c.version, c.info.lsn), (2, 2));
    assert_eq!(c.graph.edge_count(), 3);

    let s = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    assert_eq!(s.lsn(), 3);
    assert_eq!(s.recovery_report().checkpoint.as_ref().unwrap().lsn, 2);
    assert_eq!(s.read(p(1)).unwrap(), b"DERived!");
    // The derived page comes from the log: no function is registered.
    assert_eq!(s.recompute_fn(p(2)), None);
    assert_eq!(s.read(p(2)).unwrap(), b"DERived!");
    assert_eq!(s.page(p(2)).unwrap().epoch(), 2);
    let want = vec![
        (1, 2, EdgeKind::Data, Some(EdgeWeight::Scalar(0.5))),
        (2, 4, EdgeKind::GpuSync, None),
        (3, 4, EdgeKind::Compiler, None),
    ];
    assert_eq!(s.with_graph(edges_of), want);
    s.with_graph(|g| g.check_invariants()).unwrap();

    let past = s.state_at(Target::Lsn(2)).unwrap();
    assert_eq!(past.read(p(2)).unwrap(), b"derived!");
    assert_eq!(
        edges_of(past.graph()),
        vec![
            (1, 2, EdgeKind::Data, Some(EdgeWeight::Scalar(0.5))),
            (1, 3, EdgeKind::Control, None),
            (2, 4, EdgeKind::GpuSync, None),
        ]
    );
    let first = s.state_at(Target::Lsn(1)).unwrap();
    assert_eq!(first.graph().edge_count(), 0);
}
