//! The worked uses of docs/semiring-propagation.md, each against an independent
//! oracle after a full wave and after every incremental update:
//!
//! * single-source shortest paths (min-plus, unrolled Bellman-Ford layers)
//!   against Dijkstra, as edges get longer and shorter and the source moves;
//! * reachability (or-and) against BFS, as edges are cut and restored and
//!   sources switch off and on;
//! * linear valuation (plus-times) against dense matrix-vector products;
//! * critical path (max-plus) against a longest-path recursion on the task DAG,
//!   as task durations grow and shrink.
//!
//! Graph counts: `MMSB_SEMIRING_CASES` (default 8) random graphs per use.

use mmsb_core::semiring::{MaxPlus, MinPlus, OrAnd, PlusTimes};
use mmsb_core::{Change, Csr, PageId, SemiringNetwork, Weight};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

fn cases() -> u64 {
    std::env::var("MMSB_SEMIRING_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

/// A random digraph on `n` vertices: `(from, to, weight)`, no self-loops, no duplicates.
fn random_digraph(rng: &mut StdRng, n: usize, m: usize, wmax: i64) -> Vec<(usize, usize, i64)> {
    let mut edges: Vec<(usize, usize, i64)> = Vec::new();
    while edges.len() < m {
        let (u, v) = (rng.gen_range(0..n), rng.gen_range(0..n));
        if u != v && !edges.iter().any(|e| e.0 == u && e.1 == v) {
            edges.push((u, v, rng.gen_range(1..=wmax)));
        }
    }
    edges
}

fn layer(k: usize) -> PageId {
    PageId(k as u64 + 1)
}

/// `n` layers of `n` entries, `x_{k+1} = x_k ⊕ Aᵀ ⊗ x_k` (diagonal = `one`):
/// after `n - 1` steps the last layer holds the closure from the first's input.
fn unrolled<S: mmsb_core::Semiring>(
    s: S,
    n: usize,
    edges: &[(usize, usize, S::Elem)],
    input: Vec<S::Elem>,
) -> SemiringNetwork<S> {
    let mut net = SemiringNetwork::new(s.clone());
    let mut t: Vec<(usize, usize, S::Elem)> = edges.iter().map(|&(u, v, w)| (v, u, w)).collect();
    t.extend((0..n).map(|i| (i, i, s.one())));
    let a = Csr::from_triplets(&s, n, n, &t).unwrap();
    net.add_node(layer(0), n, Some(input)).unwrap();
    for k in 1..n {
        net.add_node(layer(k), n, None).unwrap();
        net.add_edge(layer(k - 1), layer(k), Weight::Matrix(a.clone()))
            .unwrap();
    }
    net.run_full().unwrap();
    net
}

/// The same weight change on every layer's matrix: entry (v, u) of Aᵀ.
fn on_every_layer<E: Copy>(n: usize, u: usize, v: usize, w: E) -> Vec<Change<E>> {
    (1..n)
        .map(|k| Change::Weight {
            parent: layer(k - 1),
            child: layer(k),
            row: v,
            col: u,
            value: w,
        })
        .collect()
}

fn dijkstra(n: usize, edges: &[(usize, usize, i64)], src: usize) -> Vec<i64> {
    let mut adj = vec![Vec::new(); n];
    for &(u, v, w) in edges {
        adj[u].push((v, w));
    }
    let mut dist = vec![i64::MAX; n];
    let mut heap = BinaryHeap::new();
    dist[src] = 0;
    heap.push(Reverse((0i64, src)));
    while let Some(Reverse((d, u))) = heap.pop() {
        if d > dist[u] {
            continue;
        }
        for &(v, w) in &adj[u] {
            if d + w < dist[v] {
                dist[v] = d + w;
                heap.push(Reverse((d + w, v)));
            }
        }
    }
    dist
}

#[test]
fn shortest_paths_by_min_plus_equal_dijkstra_as_edges_and_source_change() {
    for seed in 0..cases() {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.gen_range(5..=24);
        let m = rng.gen_range(n..=3 * n);
        let mut edges = random_digraph(&mut rng, n, m, 20);
        let mut src = 0;
        let mut b = vec![i64::MAX; n];
        b[src] = 0;
        let mut net = unrolled(MinPlus::<i64>::new(), n, &edges, b);
        let last = layer(n - 1);
        assert_eq!(net.value(last).unwrap(), &dijkstra(n, &edges, src)[..]);
        for step in 0..15 {
            let changes = if rng.gen_bool(0.2) {
                // Move the source: the old one becomes unreachable (worse).
                let new = rng.gen_range(0..n);
                let c = vec![
                    Change::Input {
                        page: layer(0),
                        index: src,
                        value: i64::MAX,
                    },
                    Change::Input {
                        page: layer(0),
                        index: new,
                        value: 0,
                    },
                ];
                src = new;
                c
            } else {
                // Lengthen (a distance may grow) or shorten an edge.
                let e = rng.gen_range(0..edges.len());
                edges[e].2 = if rng.gen_bool(0.5) {
                    edges[e].2 + rng.gen_range(1..30)
                } else {
                    rng.gen_range(1..=edges[e].2)
                };
                let (u, v, w) = edges[e];
                on_every_layer(n, u, v, w)
            };
            net.update(&changes).unwrap();
            assert_eq!(
                net.value(last).unwrap(),
                &dijkstra(n, &edges, src)[..],
                "seed {seed} step {step}"
            );
        }
    }
}

fn bfs(n: usize, edges: &[(usize, usize, u8)], sources: &[u8]) -> Vec<u8> {
    let mut adj = vec![Vec::new(); n];
    for &(u, v, on) in edges {
        if on != 0 {
            adj[u].push(v);
        }
    }
    let mut seen = vec![0u8; n];
    let mut q: VecDeque<usize> = (0..n).filter(|&i| sources[i] != 0).collect();
    for &i in &q {
        seen[i] = 1;
    }
    while let Some(u) = q.pop_front() {
        for &v in &adj[u] {
            if seen[v] == 0 {
                seen[v] = 1;
                q.push_back(v);
            }
        }
    }
    seen
}

#[test]
fn reachability_by_or_and_equals_bfs_as_edges_are_cut_and_sources_switch() {
    for seed in 0..cases() {
        let mut rng = StdRng::seed_from_u64(100 + seed);
        let n = rng.gen_range(5..=24);
        let m = rng.gen_range(n..=2 * n);
        let mut edges: Vec<(usize, usize, u8)> = random_digraph(&mut rng, n, m, 1)
            .into_iter()
            .map(|(u, v, _)| (u, v, 1u8))
            .collect();
        let mut sources = vec![0u8; n];
        sources[0] = 1;
        let mut net = unrolled(OrAnd::<u8>::new(), n, &edges, sources.clone());
        let last = layer(n - 1);
        assert_eq!(net.value(last).unwrap(), &bfs(n, &edges, &sources)[..]);
        for step in 0..15 {
            let changes = if rng.gen_bool(0.3) {
                // A source switches: true -> false (worse) or false -> true.
                let i = rng.gen_range(0..n);
                sources[i] ^= 1;
                vec![Change::Input {
                    page: layer(0),
                    index: i,
                    value: sources[i],
                }]
            } else {
                // Cut (weight false) or restore an edge.
                let e = rng.gen_range(0..edges.len());
                edges[e].2 ^= 1;
                let (u, v, w) = edges[e];
                on_every_layer(n, u, v, w)
            };
            net.update(&changes).unwrap();
            assert_eq!(
                net.value(last).unwrap(),
                &bfs(n, &edges, &sources)[..],
                "seed {seed} step {step}"
            );
        }
    }
}

/// Dense `y += M x` (`M` rows x cols, row-major), the textbook loop.
fn dense_mv_acc(m: &[Vec<f64>], x: &[f64], y: &mut [f64]) {
    for (yi, row) in y.iter_mut().zip(m) {
        *yi += row.iter().zip(x).map(|(a, b)| a * b).sum::<f64>();
    }
}

#[test]
fn linear_valuation_by_plus_times_equals_dense_matrix_vector_products() {
    // Holdings (node 1) -> exposures by sector (node 2, matrix) -> values in
    // currencies (node 3, matrix) -> a total (node 4, matrix of one row); an
    // adjustment input on node 3. Oracle: dense matrices, textbook products.
    for seed in 0..cases() {
        let mut rng = StdRng::seed_from_u64(200 + seed);
        let (h, sct, cur) = (
            rng.gen_range(5..40),
            rng.gen_range(2..10),
            rng.gen_range(1..5),
        );
        let dense = |rows: usize, cols: usize, rng: &mut StdRng| -> Vec<Vec<f64>> {
            (0..rows)
                .map(|_| {
                    (0..cols)
                        .map(|_| {
                            if rng.gen_bool(0.5) {
                                rng.gen_range(-1.0..1.0)
                            } else {
                                0.0
                            }
                        })
                        .collect()
                })
                .collect()
        };
        let mut m1 = dense(sct, h, &mut rng);
        let m2 = dense(cur, sct, &mut rng);
        let m3 = vec![vec![1.0; cur]];
        let s = PlusTimes::<f64>::new();
        let csr = |m: &[Vec<f64>]| {
            let t: Vec<(usize, usize, f64)> = m
                .iter()
                .enumerate()
                .flat_map(|(i, r)| {
                    r.iter()
                        .enumerate()
                        .filter(|(_, v)| **v != 0.0)
                        .map(move |(j, v)| (i, j, *v))
                })
                .collect();
            Csr::from_triplets(&s, m.len(), m[0].len(), &t).unwrap()
        };
        let mut holdings: Vec<f64> = (0..h).map(|_| rng.gen_range(0.0..100.0)).collect();
        let mut adjust: Vec<f64> = (0..cur).map(|_| rng.gen_range(-5.0..5.0)).collect();
        let mut net = SemiringNetwork::new(s);
        let ids = [PageId(1), PageId(2), PageId(3), PageId(4)];
        net.add_node(ids[0], h, Some(holdings.clone())).unwrap();
        net.add_node(ids[1], sct, None).unwrap();
        net.add_node(ids[2], cur, Some(adjust.clone())).unwrap();
        net.add_node(ids[3], 1, None).unwrap();
        net.add_edge(ids[0], ids[1], Weight::Matrix(csr(&m1)))
            .unwrap();
        net.add_edge(ids[1], ids[2], Weight::Matrix(csr(&m2)))
            .unwrap();
        net.add_edge(ids[2], ids[3], Weight::Matrix(csr(&m3)))
            .unwrap();
        net.run_full().unwrap();
        for step in 0..20 {
            let mut y1 = vec![0.0; sct];
            dense_mv_acc(&m1, &holdings, &mut y1);
            let mut y2 = adjust.clone();
            dense_mv_acc(&m2, &y1, &mut y2);
            let mut y3 = vec![0.0];
            dense_mv_acc(&m3, &y2, &mut y3);
            for (page, want) in [(ids[1], &y1), (ids[2], &y2), (ids[3], &y3)] {
                let scale = 1.0 + 100.0 * h as f64;
                for (g, w) in net.value(page).unwrap().iter().zip(want.iter()) {
                    assert!(
                        (g - w).abs() <= 1e-9 * scale,
                        "seed {seed} step {step}: {g} vs {w}"
                    );
                }
            }
            let c = match rng.gen_range(0..3) {
                0 => {
                    let i = rng.gen_range(0..h);
                    holdings[i] = rng.gen_range(0.0..100.0);
                    Change::Input {
                        page: ids[0],
                        index: i,
                        value: holdings[i],
                    }
                }
                1 => {
                    let i = rng.gen_range(0..cur);
                    adjust[i] = rng.gen_range(-5.0..5.0);
                    Change::Input {
                        page: ids[2],
                        index: i,
                        value: adjust[i],
                    }
                }
                _ => {
                    // Reweight a stored entry of the first matrix.
                    let nz: Vec<(usize, usize)> = (0..sct)
                        .flat_map(|i| (0..h).map(move |j| (i, j)))
                        .filter(|&(i, j)| m1[i][j] != 0.0)
                        .collect();
                    if nz.is_empty() {
                        continue;
                    }
                    let (i, j) = nz[rng.gen_range(0..nz.len())];
                    m1[i][j] = rng.gen_range(0.1..1.0);
                    Change::Weight {
                        parent: ids[0],
                        child: ids[1],
                        row: i,
                        col: j,
                        value: m1[i][j],
                    }
                }
            };
            net.update(&[c]).unwrap();
        }
    }
}

/// Earliest finish of every task: `finish[v] = dur[v] + max(0, max_{u -> v} finish[u])`,
/// by memoised recursion over predecessors (no topological sort needed).
fn longest_finish(n: usize, deps: &[(usize, usize)], dur: &[i64]) -> Vec<i64> {
    fn go(v: usize, deps: &[(usize, usize)], dur: &[i64], memo: &mut [Option<i64>]) -> i64 {
        if let Some(f) = memo[v] {
            return f;
        }
        let start = deps
            .iter()
            .filter(|d| d.1 == v)
            .map(|d| go(d.0, deps, dur, memo))
            .max()
            .unwrap_or(0)
            .max(0);
        let f = start + dur[v];
        memo[v] = Some(f);
        f
    }
    let mut memo = vec![None; n];
    (0..n).map(|v| go(v, deps, dur, &mut memo)).collect()
}

#[test]
fn critical_path_by_max_plus_equals_longest_paths_as_durations_change() {
    // One page per task (length 1): x_v = dur_v ⊕ max_u (dur_v ⊗ x_u), i.e.
    // b_v = dur_v and every edge u -> v weighs dur_v.
    for seed in 0..cases() {
        let mut rng = StdRng::seed_from_u64(300 + seed);
        let n = rng.gen_range(3..30);
        let deps: Vec<(usize, usize)> = (0..n)
            .flat_map(|v| (0..v).map(move |u| (u, v)))
            .filter(|_| rng.gen_bool(0.15))
            .collect();
        let mut dur: Vec<i64> = (0..n).map(|_| rng.gen_range(1..50)).collect();
        let task = |v: usize| PageId(v as u64 + 1);
        let mut net = SemiringNetwork::new(MaxPlus::<i64>::new());
        for (v, &d) in dur.iter().enumerate() {
            net.add_node(task(v), 1, Some(vec![d])).unwrap();
        }
        for &(u, v) in &deps {
            net.add_edge(task(u), task(v), Weight::Scalar(dur[v]))
                .unwrap();
        }
        net.run_full().unwrap();
        for step in 0..20 {
            let want = longest_finish(n, &deps, &dur);
            for (v, want) in want.iter().enumerate() {
                assert_eq!(
                    net.value(task(v)).unwrap(),
                    &[*want],
                    "seed {seed} step {step} task {v}"
                );
            }
            // A task gets longer (its successors may finish later: an
            // improvement for max) or shorter (worse: recomputed).
            let v = rng.gen_range(0..n);
            dur[v] = (dur[v] + rng.gen_range(-40..40)).max(1);
            let mut changes = vec![Change::Input {
                page: task(v),
                index: 0,
                value: dur[v],
            }];
            for &(u, w) in &deps {
                if w == v {
                    changes.push(Change::Weight {
                        parent: task(u),
                        child: task(v),
                        row: 0,
                        col: 0,
                        value: dur[v],
                    });
                }
            }
            net.update(&changes).unwrap();
        }
    }
}

/// `min` over little-endian i64 bytes, as a C caller would supply it.
unsafe extern "C" fn c_min(_: *mut std::ffi::c_void, a: *const u8, b: *const u8, out: *mut u8) {
    // SAFETY: the semiring passes 8 readable bytes at a and b, 8 writable at out.
    unsafe {
        let a = i64::from_le_bytes(std::ptr::read(a as *const [u8; 8]));
        let b = i64::from_le_bytes(std::ptr::read(b as *const [u8; 8]));
        std::ptr::write(out as *mut [u8; 8], a.min(b).to_le_bytes());
    }
}

/// Tropical `+` (i64::MAX is +∞) over little-endian i64 bytes.
unsafe extern "C" fn c_plus(_: *mut std::ffi::c_void, a: *const u8, b: *const u8, out: *mut u8) {
    // SAFETY: as for `c_min`.
    unsafe {
        let a = i64::from_le_bytes(std::ptr::read(a as *const [u8; 8]));
        let b = i64::from_le_bytes(std::ptr::read(b as *const [u8; 8]));
        let s = if a == i64::MAX || b == i64::MAX {
            i64::MAX
        } else {
            a.saturating_add(b)
        };
        std::ptr::write(out as *mut [u8; 8], s.to_le_bytes());
    }
}

#[test]
fn shortest_paths_through_a_c_function_pointer_semiring_equal_dijkstra() {
    use mmsb_core::semiring::Semiring;
    use mmsb_core::semiring_user::CSemiring;
    use mmsb_core::Strategy;
    let props = MinPlus::<i64>::new().properties();
    // As declared (idempotent: Improve), and declared with nothing to exploit (Recompute).
    for (declared, want) in [
        (props, Strategy::Improve),
        (
            mmsb_core::Properties {
                idempotent_add: false,
                ..props
            },
            Strategy::Recompute,
        ),
    ] {
        // SAFETY: c_min and c_plus read and write exactly 8 bytes, ignore
        // user_data, never unwind, and are thread-safe.
        let s = unsafe {
            CSemiring::<8>::new(
                c_min,
                c_plus,
                &i64::MAX.to_le_bytes(),
                &0i64.to_le_bytes(),
                declared,
                std::ptr::null_mut(),
            )
        }
        .unwrap();
        let b8 = |v: i64| v.to_le_bytes();
        let mut rng = StdRng::seed_from_u64(400);
        let n = 12;
        let mut edges = random_digraph(&mut rng, n, 30, 20);
        let e8: Vec<(usize, usize, [u8; 8])> =
            edges.iter().map(|&(u, v, w)| (u, v, b8(w))).collect();
        let mut input = vec![b8(i64::MAX); n];
        input[0] = b8(0);
        let mut net = unrolled(s, n, &e8, input);
        assert_eq!(net.strategy(), want);
        let last = layer(n - 1);
        let decode = |v: &[[u8; 8]]| v.iter().map(|b| i64::from_le_bytes(*b)).collect::<Vec<_>>();
        assert_eq!(decode(net.value(last).unwrap()), dijkstra(n, &edges, 0));
        for step in 0..10 {
            let e = rng.gen_range(0..edges.len());
            edges[e].2 = rng.gen_range(1..40);
            let (u, v, w) = edges[e];
            net.update(&on_every_layer(n, u, v, b8(w))).unwrap();
            assert_eq!(
                decode(net.value(last).unwrap()),
                dijkstra(n, &edges, 0),
                "{want:?} step {step}"
            );
        }
    }
}
