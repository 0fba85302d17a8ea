//! Semiring nodes inside durable commits equal independent oracles after every
//! commit and after close/reopen.
//!
//! * Single-source shortest paths (min-plus f64): Bellman-Ford unrolled into
//!   `n` layer nodes over a random digraph; the input page holds start
//!   offsets (multi-source: `x[v] = min_s b[s] + dist(s, v)`). Random commits
//!   rewrite entries of the input, often making distances worse (`+∞`).
//!   Oracle: Dijkstra from every source with its offset. Exact (min of sums
//!   of small integers is exact in f64).
//! * Linear valuation (plus-times, f64 and i64): holdings -> exposures (CSR)
//!   -> values (CSR, plus an adjustment input) -> total (a row of ones).
//!   Random commits rewrite holdings and adjustments. Oracle: dense
//!   matrix-vector products in textbook loops. i64 exactly (wrapping); f64
//!   within `1e-9` relative to the largest magnitude (the tolerance of
//!   docs/semiring-propagation.md: each incremental step rounds).
//!
//! Each run also checks: a commit that fails after the semiring wave was
//! planned (it closes a cycle) leaves no trace; writing a node page directly
//! is refused; close/reopen (with and without a checkpoint) restores node
//! pages byte-exactly without logging anything, and later commits keep
//! matching the oracle. `MMSB_SEMIRING_CASES` (default 3) sets the seeds.

use mmsb_core::commit::Op;
use mmsb_core::delta::Delta;
use mmsb_core::dependency_graph::EdgeKind;
use mmsb_core::dtype::{DType, Element};
use mmsb_core::durable_store::{Store, StoreOptions};
use mmsb_core::error::ErrorCode;
use mmsb_core::location::PageLocation;
use mmsb_core::page_id::PageId;
use mmsb_core::semiring::SemiringKind;
use mmsb_core::semiring_matrix::Csr;
use mmsb_core::semiring_nodes::{NodeDecl, SemiringWeight};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;

fn cases() -> u64 {
    std::env::var("MMSB_SEMIRING_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

fn opts() -> StoreOptions {
    StoreOptions {
        segment_bytes: 16 * 1024,
        ..StoreOptions::default()
    }
}

fn create_pages(store: &Store, sizes: &[u64]) -> Vec<PageId> {
    let ops = sizes
        .iter()
        .map(|&size| Op::CreatePage {
            size,
            location: PageLocation::Cpu,
        })
        .collect();
    store.commit(ops).unwrap().created
}

fn write<E: Element>(page: PageId, index: usize, v: E) -> Op {
    Op::Delta(Delta::dense(
        page,
        (index * std::mem::size_of::<E>()) as u64,
        mmsb_core::dtype::encode(&[v]),
    ))
}

fn node_bytes(store: &Store, pages: &[PageId]) -> Vec<Vec<u8>> {
    pages.iter().map(|&p| store.read(p).unwrap()).collect()
}

/// Reopens `dir`, optionally after a checkpoint; node pages must come back
/// byte-exactly and the reopen must log nothing.
fn reopen(store: Store, dir: &Path, nodes: &[PageId], checkpoint: bool) -> Store {
    if checkpoint {
        store.checkpoint().unwrap();
    }
    let before = node_bytes(&store, nodes);
    let lsn = store.lsn();
    store.close().unwrap();
    let store = Store::open(dir, opts()).unwrap();
    assert_eq!(store.lsn(), lsn, "reopening logged something");
    assert_eq!(
        node_bytes(&store, nodes),
        before,
        "node pages changed on reopen"
    );
    for &p in nodes {
        assert!(store.semiring_node(p).is_some(), "{p} lost its declaration");
    }
    store
}

// ---------------------------------------------------------------- SSSP

/// Multi-source Dijkstra: `dist[v] = min_s b[s] + d(s, v)` (`+∞` unreachable).
fn dijkstra(n: usize, adj: &[Vec<(usize, f64)>], b: &[f64]) -> Vec<f64> {
    let mut dist = b.to_vec();
    // Integer-valued distances: order them through i64 keys.
    let mut heap: BinaryHeap<Reverse<(i64, usize)>> = (0..n)
        .filter(|&v| dist[v].is_finite())
        .map(|v| Reverse((dist[v] as i64, v)))
        .collect();
    while let Some(Reverse((d, u))) = heap.pop() {
        if d as f64 > dist[u] {
            continue;
        }
        for &(v, w) in &adj[u] {
            let nd = dist[u] + w;
            if nd < dist[v] {
                dist[v] = nd;
                heap.push(Reverse((nd as i64, v)));
            }
        }
    }
    dist
}

#[test]
fn shortest_paths_in_durable_commits_equal_dijkstra_across_reopen() {
    for seed in 0..cases() {
        let mut rng = StdRng::seed_from_u64(0x5eed_0000 + seed);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let mut store = Store::open(&dir, opts()).unwrap();
        let n = rng.gen_range(4..9usize);
        let bytes = (n * 8) as u64;
        // Page 0: the input b; pages 1..=n: layers 0..n-1; two scratch pages.
        let mut sizes = vec![bytes; n + 1];
        sizes.extend([8, 8]);
        let pages = create_pages(&store, &sizes);
        let (input, layers, scratch) = (pages[0], pages[1..=n].to_vec(), &pages[n + 1..]);
        let mut adj: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
        let mut trip = Vec::new();
        for (u, out) in adj.iter_mut().enumerate() {
            for v in 0..n {
                if u != v && rng.gen_bool(0.35) {
                    let w = rng.gen_range(1..20) as f64;
                    out.push((v, w));
                    trip.push((v, u, w)); // Aᵀ[v, u] = w(u, v)
                }
            }
            trip.push((u, u, 0.0)); // keep x_k's own value: the diagonal of 0
        }
        type S = mmsb_core::semiring::MinPlus<f64>;
        let a = Csr::from_triplets(&S::default(), n, n, &trip).unwrap();
        let mut b = vec![f64::INFINITY; n];
        b[0] = 0.0;
        let init: Vec<Op> = (0..n).map(|i| write(input, i, b[i])).collect();
        store.commit(init).unwrap();
        for (k, &page) in layers.iter().enumerate() {
            let decl = NodeDecl {
                kind: SemiringKind::MinPlus,
                dtype: DType::F64,
                len: n as u64,
                input: (k == 0).then_some(input),
            };
            store.declare_semiring_node(page, decl).unwrap();
        }
        for w in layers.windows(2) {
            store
                .add_semiring_edge(w[0], w[1], SemiringWeight::csr(&a))
                .unwrap();
        }
        let last = *layers.last().unwrap();
        let check = |store: &Store, b: &[f64], what: &str| {
            let got: Vec<f64> = store.read_semiring_node(last).unwrap();
            assert_eq!(got, dijkstra(n, &adj, b), "seed {seed}: {what}");
            let first: Vec<f64> = store.read_semiring_node(layers[0]).unwrap();
            assert_eq!(first, b, "seed {seed}: {what}: layer 0 is b");
        };
        check(&store, &b, "after declaring");
        store
            .add_edge(scratch[0], scratch[1], EdgeKind::Control, None)
            .unwrap();
        let rounds = 24;
        for round in 0..rounds {
            if round == rounds / 2 {
                store = reopen(store, &dir, &layers, seed % 2 == 0);
                check(&store, &b, "after reopen");
            }
            let mut ops = Vec::new();
            let mut next = b.clone();
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..n);
                next[i] = if rng.gen_bool(0.4) {
                    f64::INFINITY
                } else {
                    rng.gen_range(0..30) as f64
                };
                ops.push(write(input, i, next[i]));
            }
            if rng.gen_bool(0.2) {
                ops.push(write(scratch[0], 0, round as u64));
            }
            if round % 7 == 3 {
                // Fails after the semiring wave is planned: no trace.
                let lsn = store.lsn();
                let mut bad = ops.clone();
                bad.push(Op::AddEdge {
                    parent: scratch[1],
                    child: scratch[0],
                    kind: EdgeKind::Control,
                    weight: None,
                });
                let e = store.commit(bad).unwrap_err();
                assert_eq!(e.code, ErrorCode::Cycle);
                assert_eq!(store.lsn(), lsn);
                check(&store, &b, "after a rejected commit");
                // Writing a node page directly is refused.
                let e = store.commit(vec![write(last, 0, 1.0f64)]).unwrap_err();
                assert_eq!(e.code, ErrorCode::InvalidArgument);
                assert_eq!(store.lsn(), lsn);
            }
            store.commit(ops).unwrap();
            b = next;
            check(&store, &b, &format!("after commit {round}"));
        }
        let store = reopen(store, &dir, &layers, true);
        check(&store, &b, "after the final reopen");
        store.close().unwrap();
    }
}

// ---------------------------------------------------------- valuation

trait Num: Element + Default {
    const DTYPE: DType;
    fn one() -> Self;
    fn add(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn random(rng: &mut StdRng) -> Self;
    fn close(got: &[Self], want: &[Self], scale: f64) -> bool;
    fn magnitude(self) -> f64;
}

impl Num for f64 {
    const DTYPE: DType = DType::F64;
    fn one() -> f64 {
        1.0
    }
    fn add(self, o: f64) -> f64 {
        self + o
    }
    fn mul(self, o: f64) -> f64 {
        self * o
    }
    fn random(rng: &mut StdRng) -> f64 {
        rng.gen_range(-100.0..100.0)
    }
    fn close(got: &[f64], want: &[f64], scale: f64) -> bool {
        got.len() == want.len()
            && got
                .iter()
                .zip(want)
                .all(|(g, w)| (g - w).abs() <= 1e-9 * scale.max(1.0))
    }
    fn magnitude(self) -> f64 {
        self.abs()
    }
}

impl Num for i64 {
    const DTYPE: DType = DType::I64;
    fn one() -> i64 {
        1
    }
    fn add(self, o: i64) -> i64 {
        self.wrapping_add(o)
    }
    fn mul(self, o: i64) -> i64 {
        self.wrapping_mul(o)
    }
    fn random(rng: &mut StdRng) -> i64 {
        rng.gen_range(-1000..1000)
    }
    fn close(got: &[i64], want: &[i64], _scale: f64) -> bool {
        got == want
    }
    fn magnitude(self) -> f64 {
        (self as f64).abs()
    }
}

/// A dense matrix (rows × cols) and its CSR weight (only nonzero entries stored).
fn random_matrix<E: Num>(
    rng: &mut StdRng,
    rows: usize,
    cols: usize,
) -> (Vec<Vec<E>>, SemiringWeight) {
    let mut dense = vec![vec![E::default(); cols]; rows];
    let mut indptr = vec![0u64];
    let mut indices = Vec::new();
    let mut values = Vec::new();
    for (i, row) in dense.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            if rng.gen_bool(0.5) || (i == j) {
                let v = E::random(rng);
                *cell = v;
                indices.push(j as u32);
                values.push(v);
            }
        }
        indptr.push(indices.len() as u64);
    }
    let w = SemiringWeight::Csr {
        nrows: rows as u64,
        ncols: cols as u64,
        indptr,
        indices,
        values: mmsb_core::dtype::encode(&values),
    };
    (dense, w)
}

fn matvec<E: Num>(a: &[Vec<E>], x: &[E], plus: Option<&[E]>) -> Vec<E> {
    a.iter()
        .enumerate()
        .map(|(i, row)| {
            let mut acc = plus.map_or(E::default(), |p| p[i]);
            for (aij, xj) in row.iter().zip(x) {
                acc = acc.add(aij.mul(*xj));
            }
            acc
        })
        .collect()
}

fn valuation_case<E: Num>(seed: u64) {
    let mut rng = StdRng::seed_from_u64(0xa1_0000 + seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut store = Store::open(&dir, opts()).unwrap();
    let size = std::mem::size_of::<E>();
    let (m, k, c) = (
        rng.gen_range(2..8usize),
        rng.gen_range(2..6usize),
        rng.gen_range(1..5usize),
    );
    // hold_in, adj_in, H, X, V, T
    let pages = create_pages(&store, &[m, c, m, k, c, 1].map(|n| (n * size) as u64));
    let [hold_in, adj_in, h, x, v, t] =
        [pages[0], pages[1], pages[2], pages[3], pages[4], pages[5]];
    let nodes = [h, x, v, t];
    let decl = |len: usize, input: Option<PageId>| NodeDecl {
        kind: SemiringKind::PlusTimes,
        dtype: <E as Num>::DTYPE,
        len: len as u64,
        input,
    };
    let mut hold: Vec<E> = (0..m).map(|_| E::random(&mut rng)).collect();
    let mut adj: Vec<E> = (0..c).map(|_| E::random(&mut rng)).collect();
    let mut init: Vec<Op> = hold
        .iter()
        .enumerate()
        .map(|(i, &y)| write(hold_in, i, y))
        .collect();
    init.extend(adj.iter().enumerate().map(|(i, &y)| write(adj_in, i, y)));
    store.commit(init).unwrap();
    store
        .declare_semiring_node(h, decl(m, Some(hold_in)))
        .unwrap();
    store.declare_semiring_node(x, decl(k, None)).unwrap();
    store
        .declare_semiring_node(v, decl(c, Some(adj_in)))
        .unwrap();
    store.declare_semiring_node(t, decl(1, None)).unwrap();
    let (ax, wx) = random_matrix::<E>(&mut rng, k, m);
    let (bv, wv) = random_matrix::<E>(&mut rng, c, k);
    let one = E::one();
    let ones = vec![vec![one; c]];
    let wt = SemiringWeight::Csr {
        nrows: 1,
        ncols: c as u64,
        indptr: vec![0, c as u64],
        indices: (0..c as u32).collect(),
        values: mmsb_core::dtype::encode(&ones[0]),
    };
    store.add_semiring_edge(h, x, wx).unwrap();
    store.add_semiring_edge(x, v, wv).unwrap();
    store.add_semiring_edge(v, t, wt).unwrap();
    let check = |store: &Store, hold: &[E], adj: &[E], what: &str| {
        let ex = matvec(&ax, hold, None);
        let ev = matvec(&bv, &ex, Some(adj));
        let et = matvec(&ones, &ev, None);
        let scale = [hold, &ex, &ev, &et, adj]
            .iter()
            .flat_map(|s| s.iter())
            .map(|e| e.magnitude())
            .fold(0.0, f64::max)
            * 100.0;
        for (page, want) in [(h, hold.to_vec()), (x, ex), (v, ev), (t, et)] {
            let got: Vec<E> = store.read_semiring_node(page).unwrap();
            assert!(
                E::close(&got, &want, scale),
                "seed {seed}: {what}: {page} is {got:?}, the oracle {want:?}"
            );
        }
    };
    check(&store, &hold, &adj, "after declaring");
    for round in 0..24 {
        if round == 12 {
            store = reopen(store, &dir, &nodes, seed % 2 == 1);
            check(&store, &hold, &adj, "after reopen");
        }
        let mut ops = Vec::new();
        for _ in 0..rng.gen_range(1..4) {
            if rng.gen_bool(0.6) {
                let i = rng.gen_range(0..m);
                hold[i] = E::random(&mut rng);
                ops.push(write(hold_in, i, hold[i]));
            } else {
                let i = rng.gen_range(0..c);
                adj[i] = E::random(&mut rng);
                ops.push(write(adj_in, i, adj[i]));
            }
        }
        if round % 5 == 2 {
            // Rejected after the wave ran on the live network (a cycle of
            // control edges closes in the engine's staging): undone.
            let lsn = store.lsn();
            let mut bad = ops.clone();
            bad.push(Op::AddEdge {
                parent: hold_in,
                child: adj_in,
                kind: EdgeKind::Control,
                weight: None,
            });
            bad.push(Op::AddEdge {
                parent: adj_in,
                child: hold_in,
                kind: EdgeKind::Control,
                weight: None,
            });
            assert_eq!(store.commit(bad).unwrap_err().code, ErrorCode::Cycle);
            assert_eq!(store.lsn(), lsn);
        }
        store.commit(ops).unwrap();
        check(&store, &hold, &adj, &format!("after commit {round}"));
    }
    let store = reopen(store, &dir, &nodes, true);
    check(&store, &hold, &adj, "after the final reopen");
    store.close().unwrap();
}

#[test]
fn linear_valuation_f64_in_durable_commits_equals_dense_matvec_across_reopen() {
    for seed in 0..cases() {
        valuation_case::<f64>(seed);
    }
}

#[test]
fn linear_valuation_i64_in_durable_commits_equals_dense_matvec_exactly() {
    for seed in 0..cases() {
        valuation_case::<i64>(seed);
    }
}

#[test]
fn semiring_declarations_are_checked_and_change_nothing_on_error() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), opts()).unwrap();
    let p = create_pages(&store, &[32, 32, 16, 32]);
    let decl = NodeDecl {
        kind: SemiringKind::MinPlus,
        dtype: DType::I64,
        len: 4,
        input: None,
    };
    let lsn = store.lsn();
    // Too small a page; an unsupported pair; an unknown input page.
    assert!(store.declare_semiring_node(p[2], decl).is_err());
    let bad = NodeDecl {
        kind: SemiringKind::OrAnd,
        ..decl
    };
    assert_eq!(
        store.declare_semiring_node(p[0], bad).unwrap_err().code,
        ErrorCode::Unsupported
    );
    assert!(store
        .declare_semiring_node(
            p[0],
            NodeDecl {
                input: Some(PageId(999)),
                ..decl
            }
        )
        .is_err());
    assert_eq!(store.lsn(), lsn);
    store.declare_semiring_node(p[0], decl).unwrap();
    store.declare_semiring_node(p[1], decl).unwrap();
    // A min-plus node without input starts at +∞ (the zero), not at the page's 0 bytes.
    assert_eq!(
        store.read_semiring_node::<i64>(p[0]).unwrap(),
        vec![i64::MAX; 4]
    );
    store
        .add_semiring_edge(p[0], p[1], SemiringWeight::scalar(1i64))
        .unwrap();
    let lsn = store.lsn();
    let e = store
        .add_semiring_edge(p[1], p[0], SemiringWeight::scalar(1i64))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Cycle);
    // Different semirings cannot be linked; reserved metadata is refused.
    let other = NodeDecl {
        kind: SemiringKind::MaxPlus,
        ..decl
    };
    store.declare_semiring_node(p[3], other).unwrap();
    let lsn2 = store.lsn();
    assert!(store
        .add_semiring_edge(p[0], p[3], SemiringWeight::scalar(0i64))
        .is_err());
    assert!(store
        .commit(vec![Op::SetMetadata {
            page: p[2],
            key: "mmsb.semiring.node".into(),
            value: vec![1],
        }])
        .is_err());
    assert!(store.commit(vec![Op::DeletePage(p[0])]).is_err());
    assert_eq!(store.lsn(), lsn2);
    assert!(lsn2 > lsn);
    assert!(
        store.read_semiring_node::<f64>(p[0]).is_err(),
        "dtype is checked"
    );
    store.close().unwrap();
}

#[test]
fn a_derived_page_of_a_node_follows_in_the_same_commit_with_provenance_logged() {
    use mmsb_core::recompute::{RecomputeFn, RecomputeInputs};
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), opts()).unwrap();
    let p = create_pages(&store, &[24, 24, 8]);
    let (input, node, total) = (p[0], p[1], p[2]);
    let decl = NodeDecl {
        kind: SemiringKind::PlusTimes,
        dtype: DType::I64,
        len: 3,
        input: Some(input),
    };
    store.declare_semiring_node(node, decl).unwrap();
    // An ordinary derived page: the sum of the node's entries.
    store.add_edge(node, total, EdgeKind::Data, None).unwrap();
    let sum = RecomputeFn::rust(|inp: &RecomputeInputs<'_>, out: &mut [u8]| {
        let v = mmsb_core::dtype::decode::<i64>(inp.inputs[0])?;
        out.copy_from_slice(&v.iter().sum::<i64>().to_le_bytes());
        Ok(())
    });
    store.set_recompute(total, sum).unwrap();
    store.propagate().unwrap();
    let r = store
        .commit(vec![write(input, 0, 5i64), write(input, 2, 7i64)])
        .unwrap();
    assert_eq!(
        store.read_semiring_node::<i64>(node).unwrap(),
        vec![5, 0, 7]
    );
    assert_eq!(store.read(total).unwrap(), 12i64.to_le_bytes().to_vec());
    assert_eq!(r.propagation.recomputed, vec![total]);
    // The node's delta is in the same commit group, with its provenance.
    let h = store.page_history(node, r.lsn, r.lsn).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].delta.source, format!("semiring:{input}"));
    let intent = h[0].delta.intent.as_deref().unwrap();
    assert!(intent.contains("\"cause\":\"semiring\"") && intent.contains("plus_times"));
    assert_eq!(store.page_history(total, r.lsn, r.lsn).unwrap().len(), 1);
    store.close().unwrap();
}

/// The store plans each commit on a clone of the network; clones share
/// weights, and a weight change on one side must not reach the other.
#[test]
fn a_cloned_network_shares_weights_until_one_side_changes_them() {
    use mmsb_core::semiring::PlusTimes;
    use mmsb_core::semiring_matrix::Weight;
    use mmsb_core::{Change, SemiringNetwork};
    let (p1, p2) = (PageId(1), PageId(2));
    let mut a = SemiringNetwork::new(PlusTimes::<i64>::default());
    a.add_node(p1, 2, Some(vec![1, 2])).unwrap();
    a.add_node(p2, 2, None).unwrap();
    a.add_edge(p1, p2, Weight::Diagonal(vec![3, 4])).unwrap();
    a.run_full().unwrap();
    let mut b = a.clone();
    b.update(&[Change::Weight {
        parent: p1,
        child: p2,
        row: 1,
        col: 1,
        value: 10,
    }])
    .unwrap();
    assert_eq!(a.weight(p1, p2), Some(&Weight::Diagonal(vec![3, 4])));
    assert_eq!(a.value(p2).unwrap(), &[3, 8]);
    assert_eq!(b.value(p2).unwrap(), &[3, 20]);
    assert_eq!(b.from_scratch().unwrap()[&p2], vec![3, 20]);
    assert_eq!(a.from_scratch().unwrap()[&p2], vec![3, 8]);
}

// ------------------------------------------------- changing edges

/// Plus-times over i64 on a random DAG of nodes (each of length `L`, the
/// first three with input pages): random commits replace an edge's weight
/// (a new random matrix), remove an edge, add one back, or rewrite inputs.
/// Oracle: every node from scratch in index order (edges go from lower to
/// higher index) with textbook dense products. Also: a missing edge and a
/// weight of the wrong shape fail and change nothing; reopen (with and
/// without a checkpoint) keeps the changed edges.
#[test]
fn edge_weight_changes_and_removals_equal_from_scratch_across_reopen() {
    const L: usize = 3;
    for seed in 0..cases() {
        let mut rng = StdRng::seed_from_u64(0xed9e_0000 + seed);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let mut store = Store::open(&dir, opts()).unwrap();
        let n = rng.gen_range(4..7usize);
        let inputs = 3;
        let pages = create_pages(&store, &vec![(L * 8) as u64; n + inputs]);
        let (nodes, ins) = (pages[..n].to_vec(), pages[n..].to_vec());
        let mut b: Vec<Vec<i64>> = (0..inputs)
            .map(|_| (0..L).map(|_| i64::random(&mut rng)).collect())
            .collect();
        let init: Vec<Op> = (0..inputs)
            .flat_map(|k| (0..L).map(move |i| (k, i)))
            .map(|(k, i)| write(ins[k], i, b[k][i]))
            .collect();
        store.commit(init).unwrap();
        for (v, &page) in nodes.iter().enumerate() {
            let decl = NodeDecl {
                kind: SemiringKind::PlusTimes,
                dtype: DType::I64,
                len: L as u64,
                input: (v < inputs).then(|| ins[v]),
            };
            store.declare_semiring_node(page, decl).unwrap();
        }
        // (u, v) -> dense L×L weight, u < v.
        let mut w: std::collections::BTreeMap<(usize, usize), Vec<Vec<i64>>> = Default::default();
        for u in 0..n {
            for v in u + 1..n {
                if rng.gen_bool(0.5) {
                    let (dense, sw) = random_matrix::<i64>(&mut rng, L, L);
                    store.add_semiring_edge(nodes[u], nodes[v], sw).unwrap();
                    w.insert((u, v), dense);
                }
            }
        }
        let check = |store: &Store,
                     w: &std::collections::BTreeMap<_, Vec<Vec<i64>>>,
                     b: &[Vec<i64>],
                     what: &str| {
            let mut x: Vec<Vec<i64>> = Vec::new();
            for v in 0..n {
                let mut acc = b.get(v).cloned().unwrap_or_else(|| vec![0; L]);
                for (u, xu) in x.iter().enumerate() {
                    if let Some(a) = w.get(&(u, v)) {
                        acc = matvec(a, xu, Some(&acc));
                    }
                }
                x.push(acc);
            }
            for (v, want) in x.iter().enumerate() {
                let got: Vec<i64> = store.read_semiring_node(nodes[v]).unwrap();
                assert_eq!(&got, want, "seed {seed}: {what}: node {v}");
            }
        };
        check(&store, &w, &b, "after declaring");
        for round in 0..30 {
            if round == 15 {
                store = reopen(store, &dir, &nodes, seed % 2 == 0);
                check(&store, &w, &b, "after reopen");
            }
            let u = rng.gen_range(0..n - 1);
            let v = rng.gen_range(u + 1..n);
            let lsn = store.lsn();
            match rng.gen_range(0..4) {
                0 => {
                    let (dense, sw) = random_matrix::<i64>(&mut rng, L, L);
                    let r = store.set_semiring_edge_weight(nodes[u], nodes[v], sw);
                    if let Some(old) = w.get_mut(&(u, v)) {
                        r.unwrap();
                        *old = dense;
                    } else {
                        assert_eq!(r.unwrap_err().code, ErrorCode::NotFound);
                        assert_eq!(store.lsn(), lsn);
                    }
                }
                1 => {
                    let r = store.remove_semiring_edge(nodes[u], nodes[v]);
                    if w.remove(&(u, v)).is_some() {
                        r.unwrap();
                    } else {
                        assert_eq!(r.unwrap_err().code, ErrorCode::NotFound);
                        assert_eq!(store.lsn(), lsn);
                    }
                }
                2 => {
                    if let std::collections::btree_map::Entry::Vacant(e) = w.entry((u, v)) {
                        let (dense, sw) = random_matrix::<i64>(&mut rng, L, L);
                        store.add_semiring_edge(nodes[u], nodes[v], sw).unwrap();
                        e.insert(dense);
                    } else {
                        // A weight of the wrong shape is refused; the edge stays.
                        let (_, sw) = random_matrix::<i64>(&mut rng, L + 1, L);
                        let e = store
                            .set_semiring_edge_weight(nodes[u], nodes[v], sw)
                            .unwrap_err();
                        assert_eq!(e.code, ErrorCode::InvalidArgument, "{e}");
                        assert_eq!(store.lsn(), lsn);
                    }
                }
                _ => {
                    let k = rng.gen_range(0..inputs);
                    let i = rng.gen_range(0..L);
                    b[k][i] = i64::random(&mut rng);
                    store.commit(vec![write(ins[k], i, b[k][i])]).unwrap();
                }
            }
            check(&store, &w, &b, &format!("after round {round}"));
        }
        let store = reopen(store, &dir, &nodes, true);
        check(&store, &w, &b, "after the final reopen");
        store.close().unwrap();
    }
}
