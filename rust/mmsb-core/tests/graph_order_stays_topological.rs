//! The dependency graph under random inserts, removals and node deletions,
//! checked against an independent oracle: a plain edge set with reachability
//! computed by search. Every accepted edge keeps the Pearce–Kelly order
//! topological; an edge is rejected exactly when it would close a cycle, the
//! reported cycle is a real one, and a rejected edge changes nothing.

use mmsb_core::{DependencyGraph, EdgeKind, ErrorCode, PageId};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

type Oracle = BTreeSet<(u64, u64, u8)>;

fn reaches(o: &Oracle, from: u64, to: u64) -> bool {
    let mut stack = vec![from];
    let mut seen = BTreeSet::from([from]);
    while let Some(w) = stack.pop() {
        if w == to {
            return true;
        }
        for &(a, b, _) in o.iter() {
            if a == w && seen.insert(b) {
                stack.push(b);
            }
        }
    }
    false
}

fn snapshot(g: &DependencyGraph) -> (Vec<(u64, u64, u8)>, Vec<PageId>) {
    let e = g
        .edges()
        .iter()
        .map(|e| (e.parent.0, e.child.0, e.kind.as_u8()))
        .collect();
    (e, g.topo_order())
}

fn check_order(g: &DependencyGraph, o: &Oracle) {
    g.check_invariants().unwrap();
    for &(a, b, _) in o {
        assert!(
            g.ord(PageId(a)).unwrap() < g.ord(PageId(b)).unwrap(),
            "edge {a}->{b} goes backward"
        );
    }
    let order = g.topo_order();
    let pos: BTreeMap<PageId, usize> = order.iter().enumerate().map(|(i, &p)| (p, i)).collect();
    for &(a, b, _) in o {
        assert!(pos[&PageId(a)] < pos[&PageId(b)]);
    }
}

#[derive(Clone, Debug)]
enum Op {
    Add(u64, u64, u8),
    Remove(usize),
    DeleteNode(u64),
}

fn op(n: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1..=n, 1..=n, 0u8..4).prop_map(|(a, b, k)| Op::Add(a, b, k)),
        2 => any::<usize>().prop_map(Op::Remove),
        1 => (1..=n).prop_map(Op::DeleteNode),
    ]
}

fn run(ops: &[Op]) {
    let mut g = DependencyGraph::new();
    let mut o: Oracle = BTreeSet::new();
    for op in ops {
        match *op {
            Op::Add(a, b, k) => {
                let kind = EdgeKind::from_u8(k).unwrap();
                let before = snapshot(&g);
                let r = g.add_edge(PageId(a), PageId(b), kind, None);
                if o.contains(&(a, b, k)) {
                    assert_eq!(r.unwrap_err().code, ErrorCode::InvalidArgument);
                    assert_eq!(snapshot(&g), before);
                } else if a == b || reaches(&o, b, a) {
                    let e = r.unwrap_err();
                    assert_eq!(e.code, ErrorCode::Cycle);
                    let path = e.cycle_path().unwrap();
                    assert_eq!(path.first(), Some(&PageId(a)));
                    assert_eq!(path.last(), Some(&PageId(a)));
                    assert_eq!(path[1], PageId(b));
                    for w in path[1..].windows(2) {
                        assert!(
                            o.iter().any(|&(x, y, _)| x == w[0].0 && y == w[1].0),
                            "cycle step {} -> {} is not an edge",
                            w[0],
                            w[1]
                        );
                    }
                    // A rejected edge may add its missing nodes, nothing else:
                    // here both ends are known (a cycle needs a path b ~> a).
                    if a != b {
                        assert_eq!(snapshot(&g), before);
                    }
                } else {
                    r.unwrap();
                    o.insert((a, b, k));
                }
            }
            Op::Remove(i) => {
                if o.is_empty() {
                    continue;
                }
                let &(a, b, k) = o.iter().nth(i % o.len()).unwrap();
                let kind = EdgeKind::from_u8(k).unwrap();
                let e = g.remove_edge(PageId(a), PageId(b), kind).unwrap();
                assert_eq!((e.parent, e.child, e.kind), (PageId(a), PageId(b), kind));
                o.remove(&(a, b, k));
                assert!(g.remove_edge(PageId(a), PageId(b), kind).is_err());
            }
            Op::DeleteNode(n) => {
                let had = g.contains_node(PageId(n));
                let r = g.remove_node(PageId(n));
                assert_eq!(r.is_ok(), had);
                o.retain(|&(a, b, _)| a != n && b != n);
            }
        }
        check_order(&g, &o);
        let got: Oracle = snapshot(&g).0.into_iter().collect();
        assert_eq!(got, o);
    }
    // Traversals against the oracle.
    for &(a, _, _) in o.iter().take(5) {
        let d = g.descendants([PageId(a)]);
        for n in 1..=40u64 {
            let expect = n != a && reaches(&o, a, n);
            assert_eq!(d.contains(&PageId(n)), expect, "descendant {n} of {a}");
        }
        let bfs = g.bfs([PageId(a)]);
        assert_eq!(bfs[0], PageId(a));
        assert_eq!(bfs.len(), d.len() + 1);
        let sub = g.topo_order_of(d.iter().copied());
        for &(x, y, _) in o.iter() {
            let (px, py) = (
                sub.iter().position(|&p| p == PageId(x)),
                sub.iter().position(|&p| p == PageId(y)),
            );
            if let (Some(px), Some(py)) = (px, py) {
                assert!(px < py);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_inserts_and_removals_keep_a_topological_order(
        ops in proptest::collection::vec(op(12), 1..120)
    ) {
        run(&ops);
    }

    #[test]
    fn dense_small_graphs_reject_exactly_the_cycles(
        ops in proptest::collection::vec(op(5), 1..60)
    ) {
        run(&ops);
    }
}

#[test]
fn removing_and_re_adding_an_edge_works() {
    let mut g = DependencyGraph::new();
    let (a, b, c) = (PageId(1), PageId(2), PageId(3));
    g.add_edge(a, b, EdgeKind::Data, None).unwrap();
    g.add_edge(b, c, EdgeKind::Data, None).unwrap();
    assert_eq!(
        g.add_edge(c, a, EdgeKind::Data, None).unwrap_err().code,
        ErrorCode::Cycle
    );
    g.remove_edge(b, c, EdgeKind::Data).unwrap();
    g.add_edge(c, a, EdgeKind::Data, None).unwrap();
    g.check_invariants().unwrap();
    assert_eq!(g.topo_order(), vec![c, a, b]);
    g.remove_edge(c, a, EdgeKind::Data).unwrap();
    g.add_edge(b, c, EdgeKind::Data, None).unwrap();
    g.check_invariants().unwrap();
    assert_eq!(g.parents_of_kind(c, EdgeKind::Data), vec![b]);
}

#[test]
fn deleting_a_node_drops_its_edges() {
    let mut g = DependencyGraph::new();
    g.add_edge(PageId(1), PageId(2), EdgeKind::Data, None)
        .unwrap();
    g.add_edge(PageId(2), PageId(3), EdgeKind::Compiler, None)
        .unwrap();
    let removed = g.remove_node(PageId(2)).unwrap();
    assert_eq!(removed.len(), 2);
    assert_eq!(g.edge_count(), 0);
    assert_eq!(g.children(PageId(1)).count(), 0);
    assert_eq!(g.parents(PageId(3)).count(), 0);
    g.check_invariants().unwrap();
}

#[test]
fn long_chain_built_backwards_stays_ordered() {
    // Each new edge points at the front of the order: the worst case for
    // a static sort, a bounded region for Pearce–Kelly.
    let mut g = DependencyGraph::new();
    let n = 1000;
    for i in 1..=n {
        g.add_node(PageId(i));
    }
    for i in (1..n).rev() {
        g.add_edge(PageId(i + 1), PageId(i), EdgeKind::Data, None)
            .unwrap();
    }
    g.check_invariants().unwrap();
    let order = g.topo_order();
    assert_eq!(order.first(), Some(&PageId(n)));
    assert_eq!(order.last(), Some(&PageId(1)));
    let e = g
        .add_edge(PageId(1), PageId(n), EdgeKind::Data, None)
        .unwrap_err();
    assert_eq!(e.cycle_path().unwrap().len() as u64, n + 1);
}
