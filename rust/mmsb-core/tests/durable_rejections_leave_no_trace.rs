//! On the durable store, a commit that is rejected — a recompute function that
//! fails, an edge that would close a cycle, an edit of a missing edge — leaves
//! no trace: not in the pages (bytes, epochs), not in the graph, not in the
//! log (LSN, log bytes, what a reopened store holds). The store goes on
//! working afterwards. Deleting a page removes its edges, durably.

use mmsb_core::{
    Delta, Durability, EdgeKind, Error, ErrorCode, Op, PageId, PageLocation, RecomputeFn,
    RecomputeInputs, Store, StoreOptions,
};
use std::path::Path;

type Trace = (
    u64,
    u64,
    Vec<(PageId, Vec<u8>, u64)>,
    Vec<(u64, u64, u8)>,
    Vec<PageId>,
    u64,
);

/// Everything a rejected commit must leave alone, including the log's size on disk.
fn trace(s: &Store) -> Trace {
    let pages = s.read_with(|st| {
        st.page_ids()
            .into_iter()
            .map(|p| {
                let pg = st.page(p).unwrap();
                (p, pg.bytes().to_vec(), pg.epoch())
            })
            .collect()
    });
    let (edges, topo) = s.with_graph(|g| {
        (
            g.edges()
                .iter()
                .map(|e| (e.parent.0, e.child.0, e.kind.as_u8()))
                .collect(),
            g.topo_order(),
        )
    });
    (
        s.lsn(),
        s.stats().log_bytes,
        pages,
        edges,
        topo,
        log_size(s.dir().unwrap()),
    )
}

fn log_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn opts() -> StoreOptions {
    StoreOptions {
        durability: Durability::Immediate,
        ..StoreOptions::default()
    }
}

/// Pages a, b, c, s: a -> b -> c (data), a -> s (control). `b` copies `a` and
/// fails when `a` starts with 0xFF; `c` copies `b`.
fn setup(dir: &Path) -> (Store, [PageId; 4]) {
    let s = Store::open(dir, opts()).unwrap();
    let ids = s
        .commit(
            (0..4)
                .map(|_| Op::CreatePage {
                    size: 4,
                    location: PageLocation::Cpu,
                })
                .collect(),
        )
        .unwrap()
        .created;
    let [a, b, c, st] = [ids[0], ids[1], ids[2], ids[3]];
    s.set_recompute(
        b,
        RecomputeFn::rust(|inp: &RecomputeInputs<'_>, out: &mut [u8]| {
            if inp.inputs[0][0] == 0xFF {
                return Err(Error::new(ErrorCode::InvariantViolation, "b refuses 0xFF"));
            }
            out.copy_from_slice(inp.inputs[0]);
            Ok(())
        }),
    )
    .unwrap();
    s.set_recompute(c, RecomputeFn::Passthrough).unwrap();
    s.commit(vec![
        Op::AddEdge {
            parent: a,
            child: b,
            kind: EdgeKind::Data,
            weight: None,
        },
        Op::AddEdge {
            parent: b,
            child: c,
            kind: EdgeKind::Data,
            weight: None,
        },
        Op::AddEdge {
            parent: a,
            child: st,
            kind: EdgeKind::Control,
            weight: None,
        },
        Op::Delta(Delta::dense(a, 0, vec![1, 2, 3, 4])),
    ])
    .unwrap();
    assert_eq!(s.read(c).unwrap(), vec![1, 2, 3, 4]);
    (s, [a, b, c, st])
}

#[test]
fn a_failing_recompute_leaves_pages_log_and_graph_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (s, [a, b, c, st]) = setup(dir.path());
    let stale_before = s.is_stale(st);
    let before = trace(&s);
    let e = s
        .commit(vec![Op::Delta(Delta::dense(a, 0, vec![0xFF]))])
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvariantViolation, "{e}");
    assert_eq!(trace(&s), before);
    assert_eq!(s.is_stale(st), stale_before);
    // The same with a graph edit in the failing commit: the edge is not added.
    let e = s
        .commit(vec![
            Op::AddEdge {
                parent: st,
                child: c,
                kind: EdgeKind::Compiler,
                weight: None,
            },
            Op::Delta(Delta::dense(a, 0, vec![0xFF])),
        ])
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvariantViolation);
    assert_eq!(trace(&s), before);
    // Batch routing fails the same way.
    assert!(s
        .batch_route_deltas(vec![Delta::dense(a, 0, vec![0xFF])])
        .is_err());
    assert_eq!(trace(&s), before);
    // The store goes on; a reopened store holds exactly what was acknowledged.
    s.commit(vec![Op::Delta(Delta::dense(a, 0, vec![7]))])
        .unwrap();
    assert_eq!(s.read(c).unwrap(), vec![7, 2, 3, 4]);
    assert_eq!(s.read(b).unwrap(), vec![7, 2, 3, 4]);
    let after = trace(&s);
    s.close().unwrap();
    let s = Store::open(dir.path(), opts()).unwrap();
    let reopened = trace(&s);
    assert_eq!(
        (&reopened.0, &reopened.2, &reopened.3, &reopened.4),
        (&after.0, &after.2, &after.3, &after.4)
    );
}

#[test]
fn a_rejected_cycle_errors_with_its_path_and_is_not_logged() {
    let dir = tempfile::tempdir().unwrap();
    let (s, [a, b, c, st]) = setup(dir.path());
    let before = trace(&s);
    let e = s.add_edge(c, a, EdgeKind::Control, None).unwrap_err();
    assert_eq!(e.code, ErrorCode::Cycle);
    assert_eq!(e.cycle_path(), Some(&[c, a, b, c][..]));
    assert_eq!(trace(&s), before);
    // In a commit with other operations, nothing of it is applied.
    let e = s
        .commit(vec![
            Op::Delta(Delta::dense(a, 0, vec![9])),
            Op::AddEdge {
                parent: c,
                child: b,
                kind: EdgeKind::Data,
                weight: None,
            },
        ])
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Cycle);
    assert_eq!(e.cycle_path(), Some(&[c, b, c][..]));
    assert_eq!(trace(&s), before);
    // Removing a missing edge, or adding an existing one, is rejected the same way.
    assert_eq!(
        s.remove_edge(c, a, EdgeKind::Data).unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        s.add_edge(a, b, EdgeKind::Data, None).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    assert_eq!(trace(&s), before);
    // Remove and re-add works (in one commit, or in two), and survives reopening.
    s.commit(vec![
        Op::RemoveEdge {
            parent: b,
            child: c,
            kind: EdgeKind::Data,
        },
        Op::AddEdge {
            parent: b,
            child: c,
            kind: EdgeKind::Data,
            weight: None,
        },
    ])
    .unwrap();
    s.remove_edge(a, st, EdgeKind::Control).unwrap();
    assert!(s.with_graph(|g| g.edge(a, st, EdgeKind::Control).is_none()));
    s.add_edge(a, st, EdgeKind::Control, None).unwrap();
    let after = trace(&s);
    assert_eq!(after.0, before.0 + 3);
    s.close().unwrap();
    let s = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(trace(&s).3, after.3);
}

#[test]
fn deleting_a_page_removes_its_edges_and_recomputes_its_children_durably() {
    let dir = tempfile::tempdir().unwrap();
    let (s, [a, b, c, st]) = setup(dir.path());
    // Deleting b recomputes c, whose Passthrough then has no input: the
    // commit fails, and the page and its edges stay.
    let before = trace(&s);
    let e = s.commit(vec![Op::DeletePage(b)]).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument, "{e}");
    assert_eq!(trace(&s), before);
    s.clear_recompute(c).unwrap();
    s.commit(vec![Op::DeletePage(b)]).unwrap();
    let edges = s.edges();
    assert!(
        edges.iter().all(|e| e.parent != b && e.child != b),
        "{edges:?}"
    );
    assert!(s.with_graph(|g| !g.contains_node(b)));
    assert_eq!(s.recompute_fn(b), None);
    let after = trace(&s);
    s.close().unwrap();
    let s = Store::open(dir.path(), opts()).unwrap();
    let t = trace(&s);
    assert_eq!(
        (&t.0, &t.2, &t.3, &t.4),
        (&after.0, &after.2, &after.3, &after.4)
    );
    assert!(s.read(b).is_err());
    let _ = (a, c, st);
}
