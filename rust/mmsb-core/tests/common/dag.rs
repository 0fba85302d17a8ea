//! Random DAGs of pages and their oracle, shared by the propagation tests
//! (`propagation_matches_from_scratch.rs` on the engine,
//! `durable_propagation_matches_from_scratch.rs` on the durable store).
//!
//! A DAG is drawn from a hidden random order of the pages: each page takes up
//! to four parents earlier in that order (mostly among the few just before
//! it, so chains get deep; sometimes anywhere, so fan-out gets wide), with a
//! random edge kind, and the edges come out shuffled. The oracle knows
//! nothing of the engine: it sorts the test's own edge list topologically
//! (Kahn's algorithm) and recomputes every derived page from scratch with
//! the same pure functions the engine's recompute closures call.

use mmsb_core::{EdgeKind, PageId};
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Size of every page in these DAGs.
pub const SIZE: usize = 8;

/// An edge of the test's own list: `(parent, child, kind)`.
pub type DagEdge = (PageId, PageId, EdgeKind);

/// The recompute functions the tests register, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fk {
    /// Order-sensitive weighted sum (input order = edge insertion order).
    Sum,
    /// Keeps two high bits of the max: changes rarely (cutoff).
    Coarse,
    /// The first input (zeros without inputs).
    Pass,
    /// The first input xor 0x5A.
    Xor5a,
    /// Xor of every input (the engine runs it as a C function).
    CXor,
}

/// The pure functions, shared by the engine's closures and the oracle.
pub fn eval(k: Fk, inputs: &[&[u8]]) -> [u8; SIZE] {
    let mut out = [0u8; SIZE];
    for (j, o) in out.iter_mut().enumerate() {
        *o = match k {
            Fk::Sum => inputs.iter().enumerate().fold(0u8, |a, (i, x)| {
                a.wrapping_add(x[j].wrapping_mul(i as u8 * 2 + 1))
            }),
            Fk::Coarse => inputs.iter().map(|x| x[j]).max().unwrap_or(0) & 0xC0,
            Fk::Pass => inputs.first().map_or(0, |x| x[j]),
            Fk::Xor5a => inputs.first().map_or(0, |x| x[j]) ^ 0x5A,
            Fk::CXor => inputs.iter().fold(0u8, |a, x| a ^ x[j]),
        };
    }
    out
}

/// A random edge kind, data most of the time.
pub fn random_kind(rng: &mut StdRng) -> EdgeKind {
    match rng.gen_range(0..10) {
        0 => EdgeKind::Control,
        1 => EdgeKind::GpuSync,
        2 => EdgeKind::Compiler,
        _ => EdgeKind::Data,
    }
}

/// The edges of a random DAG over `pages`, distinct, in random order. A page
/// has no parent with probability `p_root`; a parent is among the `window`
/// pages just before it in the hidden order with probability 0.7.
pub fn random_dag(rng: &mut StdRng, pages: &[PageId], p_root: f64, window: usize) -> Vec<DagEdge> {
    let n = pages.len();
    let mut rank: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        rank.swap(i, rng.gen_range(0..=i));
    }
    let mut by_rank = vec![0; n];
    for (i, &r) in rank.iter().enumerate() {
        by_rank[r] = i;
    }
    let mut seen = HashSet::new();
    let mut edges = Vec::new();
    for i in 0..n {
        if rank[i] == 0 || rng.gen_bool(p_root) {
            continue;
        }
        for _ in 0..rng.gen_range(1..=4) {
            let r = if rng.gen_bool(0.7) {
                rank[i] - 1 - rng.gen_range(0..rank[i].min(window))
            } else {
                rng.gen_range(0..rank[i])
            };
            let e = (pages[by_rank[r]], pages[i], random_kind(rng));
            if seen.insert(e) {
                edges.push(e);
            }
        }
    }
    for i in (1..edges.len()).rev() {
        edges.swap(i, rng.gen_range(0..=i));
    }
    edges
}

/// The data parents of `child`, in edge order (the input order of its function).
pub fn data_parents(edges: &[DagEdge], child: PageId) -> Vec<PageId> {
    edges
        .iter()
        .filter(|e| e.1 == child && e.2 == EdgeKind::Data)
        .map(|e| e.0)
        .collect()
}

/// Kahn's algorithm over the test's own edge list (every kind orders).
pub fn topo_order(pages: &[PageId], edges: &[DagEdge]) -> Vec<PageId> {
    let mut indeg: BTreeMap<PageId, usize> = pages.iter().map(|&p| (p, 0)).collect();
    for e in edges {
        *indeg.get_mut(&e.1).unwrap() += 1;
    }
    let mut ready: Vec<PageId> = indeg
        .iter()
        .filter(|(_, &d)| d == 0)
        .map(|(&p, _)| p)
        .collect();
    let mut out = Vec::new();
    while let Some(p) = ready.pop() {
        out.push(p);
        for e in edges.iter().filter(|e| e.0 == p) {
            let d = indeg.get_mut(&e.1).unwrap();
            *d -= 1;
            if *d == 0 {
                ready.push(e.1);
            }
        }
    }
    assert_eq!(out.len(), pages.len(), "the test's graph has a cycle");
    out
}

/// Every page's value recomputed from scratch: pages with a function from
/// their data parents' values, the others from `sources`.
pub fn from_scratch(
    pages: &[PageId],
    edges: &[DagEdge],
    funcs: &BTreeMap<PageId, Fk>,
    sources: &HashMap<PageId, [u8; SIZE]>,
) -> HashMap<PageId, [u8; SIZE]> {
    let mut v: HashMap<PageId, [u8; SIZE]> = HashMap::new();
    for p in topo_order(pages, edges) {
        let val = match funcs.get(&p) {
            Some(&k) => {
                let ins: Vec<&[u8]> = data_parents(edges, p).iter().map(|q| &v[q][..]).collect();
                eval(k, &ins)
            }
            None => sources[&p],
        };
        v.insert(p, val);
    }
    v
}
