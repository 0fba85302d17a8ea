//! Incremental semiring waves equal a from-scratch computation after every
//! update: random DAG networks (scalar, diagonal and CSR weights), random
//! inputs, random batches of input and weight changes — many of which make
//! values worse — for every built-in semiring over representative types, with
//! the strategy the semiring's properties select and with every other strategy
//! it allows. Exact for integers, booleans, min and max; plus-times over
//! floats within the documented tolerance (relative 1e-9 for f64, 1e-3 for
//! f32, against the largest magnitude in the network).
//!
//! The oracle is `SemiringNetwork::from_scratch` (sequential reference mxv,
//! independent of the wave executor); the report's changed entries must be
//! exactly the entries whose value moved. Cases per semiring:
//! `MMSB_SEMIRING_CASES` (default 64).

use mmsb_core::semiring::{MaxPlus, MaxTimes, MinMax, MinPlus, OrAnd, PlusTimes, Semiring};
use mmsb_core::{Change, Csr, PageId, SemiringNetwork, Strategy, Weight};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt::Debug;

fn cases() -> u32 {
    std::env::var("MMSB_SEMIRING_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// How two values of a network are compared.
trait Close: Copy + PartialEq + Debug {
    /// Relative tolerance (0 = exact).
    const TOL: f64;
    /// Magnitude (0 for exact types and infinities).
    fn mag(self) -> f64;
    /// `|self - other|` (exact types: never used).
    fn diff(self, other: Self) -> f64;
}
macro_rules! exact {
    ($($t:ty),*) => {$(impl Close for $t {
        const TOL: f64 = 0.0;
        fn mag(self) -> f64 { 0.0 }
        fn diff(self, _: Self) -> f64 { f64::INFINITY }
    })*};
}
exact!(i32, i64, u8, u32);
macro_rules! float {
    ($t:ty, $tol:expr) => {
        impl Close for $t {
            const TOL: f64 = $tol;
            fn mag(self) -> f64 {
                if self.is_finite() {
                    self.abs() as f64
                } else {
                    0.0
                }
            }
            fn diff(self, other: Self) -> f64 {
                (self as f64 - other as f64).abs()
            }
        }
    };
}
float!(f64, 1e-9);
float!(f32, 1e-3);

/// Equal, or (floats) within the relative tolerance of the network's scale.
fn close<E: Close>(a: E, b: E, scale: f64) -> bool {
    a == b || (E::TOL > 0.0 && a.diff(b) <= E::TOL * (1.0 + scale))
}

/// Builds a random DAG network: nodes 1..=k, lengths from two sizes, edges
/// from lower to higher ids added in random order.
fn random_network<S: Semiring>(
    s: S,
    rng: &mut StdRng,
    gen: &impl Fn(&mut StdRng) -> S::Elem,
) -> SemiringNetwork<S> {
    let mut net = SemiringNetwork::new(s.clone());
    let k = rng.gen_range(2..=7u64);
    let sizes = [rng.gen_range(1..=9usize), rng.gen_range(1..=9usize)];
    let mut lens = Vec::new();
    for v in 1..=k {
        let len = sizes[rng.gen_range(0..2)];
        lens.push(len);
        let input = if rng.gen_bool(0.7) {
            Some((0..len).map(|_| gen(rng)).collect())
        } else {
            None
        };
        net.add_node(PageId(v), len, input).unwrap();
    }
    let mut pairs = Vec::new();
    for u in 1..=k {
        for v in (u + 1)..=k {
            if rng.gen_bool(0.45) {
                pairs.push((u, v));
            }
        }
    }
    // Random insertion order exercises the incremental topological order.
    for i in (1..pairs.len()).rev() {
        pairs.swap(i, rng.gen_range(0..=i));
    }
    for (u, v) in pairs {
        let (nu, nv) = (lens[u as usize - 1], lens[v as usize - 1]);
        let pick = if nu == nv { rng.gen_range(0..3) } else { 2 };
        let w = match pick {
            0 => Weight::Scalar(gen(rng)),
            1 => Weight::Diagonal((0..nv).map(|_| gen(rng)).collect()),
            _ => {
                let mut t = Vec::new();
                for i in 0..nv {
                    for j in 0..nu {
                        if rng.gen_bool(0.4) {
                            t.push((i, j, gen(rng)));
                        }
                    }
                }
                Weight::Matrix(Csr::from_triplets(&s, nv, nu, &t).unwrap())
            }
        };
        net.add_edge(PageId(u), PageId(v), w).unwrap();
    }
    net
}

fn random_change<S: Semiring>(
    net: &SemiringNetwork<S>,
    rng: &mut StdRng,
    gen: &impl Fn(&mut StdRng) -> S::Elem,
) -> Change<S::Elem> {
    let nodes = net.topo_order();
    let edges: Vec<(PageId, PageId)> = nodes
        .iter()
        .flat_map(|&v| net.parents(v).into_iter().map(move |u| (u, v)))
        .collect();
    if edges.is_empty() || rng.gen_bool(0.6) {
        let page = nodes[rng.gen_range(0..nodes.len())];
        let len = net.len_of(page).unwrap();
        return Change::Input {
            page,
            index: rng.gen_range(0..len),
            value: gen(rng),
        };
    }
    let (parent, child) = edges[rng.gen_range(0..edges.len())];
    let (row, col) = match net.weight(parent, child).unwrap() {
        Weight::Scalar(_) => (0, 0),
        Weight::Diagonal(d) => {
            let i = rng.gen_range(0..d.len());
            (i, i)
        }
        Weight::Matrix(a) => {
            if a.nnz() == 0 {
                return Change::Input {
                    page: parent,
                    index: 0,
                    value: gen(rng),
                };
            }
            let k = rng.gen_range(0..a.nnz());
            let row = a.indptr().partition_point(|&p| p <= k) - 1;
            (row, a.indices()[k] as usize)
        }
    };
    Change::Weight {
        parent,
        child,
        row,
        col,
        value: gen(rng),
    }
}

/// Checks every node against from-scratch, and the report against the values that moved.
fn check_against_scratch<S: Semiring>(net: &SemiringNetwork<S>, what: &str)
where
    S::Elem: Close,
{
    let want = net.from_scratch().unwrap();
    let scale = want
        .values()
        .flatten()
        .map(|v| v.mag())
        .fold(0.0f64, f64::max);
    for (page, w) in &want {
        let got = net.value(*page).unwrap();
        for (i, (g, e)) in got.iter().zip(w).enumerate() {
            assert!(
                close(*g, *e, scale),
                "{what}: {page}[{i}] incremental {g:?} != from scratch {e:?}"
            );
        }
    }
}

fn run_case<S: Semiring>(
    s: S,
    seed: u64,
    strategy: Option<Strategy>,
    gen: impl Fn(&mut StdRng) -> S::Elem,
) where
    S::Elem: Close,
{
    let mut rng = StdRng::seed_from_u64(seed);
    let mut net = random_network(s, &mut rng, &gen);
    if let Some(st) = strategy {
        net.set_strategy(st).unwrap();
    }
    let zero = net.semiring().zero();
    let full = net.run_full().unwrap();
    assert_eq!(full.strategy, None);
    check_against_scratch(&net, "after the first full wave");
    for page in net.topo_order() {
        let moved: Vec<usize> = net
            .value(page)
            .unwrap()
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != zero)
            .map(|(i, _)| i)
            .collect();
        let listed = full.changed.get(&page).cloned().unwrap_or_default();
        assert_eq!(
            listed, moved,
            "seed {seed}: first full wave's changed entries of {page}"
        );
    }
    for step in 0..12 {
        let before: Vec<(PageId, Vec<S::Elem>)> = net
            .topo_order()
            .into_iter()
            .map(|p| (p, net.value(p).unwrap().to_vec()))
            .collect();
        let batch: Vec<Change<S::Elem>> = (0..rng.gen_range(1..=3))
            .map(|_| random_change(&net, &mut rng, &gen))
            .collect();
        // Now and then a full wave instead: it too must report exactly what moved.
        let report = if step % 4 == 3 {
            let r = net.run_full().unwrap();
            assert_eq!(r.strategy, None);
            r
        } else {
            let r = net.update(&batch).unwrap();
            assert_eq!(r.strategy, Some(net.strategy()));
            r
        };
        check_against_scratch(&net, &format!("seed {seed} step {step} after {batch:?}"));
        for (page, old) in before {
            let now = net.value(page).unwrap();
            let moved: Vec<usize> = (0..old.len()).filter(|&i| old[i] != now[i]).collect();
            let listed = report.changed.get(&page).cloned().unwrap_or_default();
            assert_eq!(
                listed, moved,
                "seed {seed} step {step}: changed entries of {page}"
            );
        }
    }
}

/// Runs `run_case` with the chosen strategy and every other one the semiring allows.
fn all_strategies<S: Semiring>(s: S, seed: u64, gen: impl Fn(&mut StdRng) -> S::Elem + Copy)
where
    S::Elem: Close,
{
    run_case(s.clone(), seed, None, gen);
    let p = s.properties();
    run_case(s.clone(), seed, Some(Strategy::Recompute), gen);
    if p.idempotent_add {
        run_case(s.clone(), seed, Some(Strategy::Improve), gen);
    }
}

fn small_f64(r: &mut StdRng) -> f64 {
    match r.gen_range(0..8) {
        0 => 0.0,
        1 => 1.0,
        _ => r.gen_range(-2.0..2.0),
    }
}

/// Tropical values: small integers as floats, sometimes the infinite zero.
fn trop_f64(inf: f64) -> impl Fn(&mut StdRng) -> f64 + Copy {
    move |r: &mut StdRng| {
        if r.gen_range(0..6) == 0 {
            inf
        } else {
            r.gen_range(-20..20) as f64 + 0.25 * r.gen_range(0..4) as f64
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn plus_times_incremental_equals_from_scratch(seed in any::<u64>()) {
        all_strategies(PlusTimes::<f64>::new(), seed, small_f64);
        all_strategies(PlusTimes::<f32>::new(), seed, |r| small_f64(r) as f32);
        all_strategies(PlusTimes::<i64>::new(), seed, |r| r.gen_range(-1000i64..1000));
        // Wrapping: any byte, products and sums overflow and stay exact.
        all_strategies(PlusTimes::<u8>::new(), seed, |r| r.gen::<u8>());
    }

    #[test]
    fn min_plus_incremental_equals_from_scratch(seed in any::<u64>()) {
        all_strategies(MinPlus::<f64>::new(), seed, trop_f64(f64::INFINITY));
        all_strategies(MinPlus::<i64>::new(), seed, |r| {
            if r.gen_range(0..6) == 0 { i64::MAX } else { r.gen_range(-50i64..50) }
        });
        all_strategies(MinPlus::<u32>::new(), seed, |r| {
            if r.gen_range(0..6) == 0 { u32::MAX } else { r.gen_range(0u32..50) }
        });
    }

    #[test]
    fn max_plus_incremental_equals_from_scratch(seed in any::<u64>()) {
        all_strategies(MaxPlus::<f64>::new(), seed, trop_f64(f64::NEG_INFINITY));
        all_strategies(MaxPlus::<i32>::new(), seed, |r| {
            if r.gen_range(0..6) == 0 { i32::MIN } else { r.gen_range(-50i32..50) }
        });
    }

    #[test]
    fn max_times_incremental_equals_from_scratch(seed in any::<u64>()) {
        all_strategies(MaxTimes::<f64>::new(), seed, |r| r.gen_range(0..5) as f64 * 0.5);
        all_strategies(MaxTimes::<u32>::new(), seed, |r| r.gen_range(0u32..6));
    }

    #[test]
    fn min_max_incremental_equals_from_scratch(seed in any::<u64>()) {
        all_strategies(MinMax::<f64>::new(), seed, |r| r.gen_range(-10..10) as f64);
        all_strategies(MinMax::<i32>::new(), seed, |r| r.gen_range(-10i32..10));
    }

    #[test]
    fn or_and_incremental_equals_from_scratch(seed in any::<u64>()) {
        // 0 and 1 only: another non-zero byte reads as true too, but an input
        // that is already terminal stops the fold early and keeps its byte,
        // where a full fold would normalise it to 1.
        all_strategies(OrAnd::<u8>::new(), seed, |r| r.gen_range(0u8..2));
    }
}

#[test]
fn a_min_plus_distance_that_grows_is_recomputed_from_all_parents() {
    // a -> c and b -> c; c takes the shorter. Lengthen the shorter one.
    let s = MinPlus::<i64>::new();
    let mut net = SemiringNetwork::new(s);
    let (a, b, c) = (PageId(1), PageId(2), PageId(3));
    net.add_node(a, 1, Some(vec![0])).unwrap();
    net.add_node(b, 1, Some(vec![0])).unwrap();
    net.add_node(c, 1, None).unwrap();
    net.add_edge(a, c, Weight::Scalar(3)).unwrap();
    net.add_edge(b, c, Weight::Scalar(7)).unwrap();
    net.run_full().unwrap();
    assert_eq!(net.value(c).unwrap(), &[3]);
    assert_eq!(net.strategy(), Strategy::Improve);
    let r = net
        .update(&[Change::Input {
            page: a,
            index: 0,
            value: 10,
        }])
        .unwrap();
    assert_eq!(net.value(c).unwrap(), &[7]);
    // a's own entry (its input got worse), then c's from both parents.
    assert_eq!(r.entries_recomputed, 2);
    // An improvement is pushed, not recomputed.
    let r = net
        .update(&[Change::Weight {
            parent: b,
            child: c,
            row: 0,
            col: 0,
            value: 1,
        }])
        .unwrap();
    assert_eq!(net.value(c).unwrap(), &[1]);
    assert_eq!(r.entries_recomputed, 0);
}

#[test]
fn an_or_and_input_going_false_clears_exactly_what_it_alone_reached() {
    let s = OrAnd::<u8>::new();
    let mut net = SemiringNetwork::new(s);
    let (a, b, c) = (PageId(1), PageId(2), PageId(3));
    net.add_node(a, 3, Some(vec![1, 0, 1])).unwrap();
    net.add_node(b, 3, Some(vec![0, 0, 1])).unwrap();
    net.add_node(c, 3, None).unwrap();
    net.add_edge(a, c, Weight::Diagonal(vec![1, 1, 1])).unwrap();
    net.add_edge(b, c, Weight::Scalar(1)).unwrap();
    net.run_full().unwrap();
    assert_eq!(net.value(c).unwrap(), &[1, 0, 1]);
    let r = net
        .update(&[
            Change::Input {
                page: a,
                index: 0,
                value: 0,
            },
            Change::Input {
                page: a,
                index: 2,
                value: 0,
            },
        ])
        .unwrap();
    // c[0] was reached only through a; c[2] also through b.
    assert_eq!(net.value(c).unwrap(), &[0, 0, 1]);
    assert_eq!(r.changed.get(&c), Some(&vec![0]));
}

#[test]
fn bad_changes_and_cycles_leave_the_network_unchanged() {
    let s = PlusTimes::<i64>::new();
    let mut net = SemiringNetwork::new(s);
    let (a, b) = (PageId(1), PageId(2));
    net.add_node(a, 2, Some(vec![1, 2])).unwrap();
    net.add_node(b, 2, None).unwrap();
    net.add_edge(a, b, Weight::Scalar(3)).unwrap();
    assert!(net.add_edge(b, a, Weight::Scalar(1)).is_err());
    assert!(net.add_edge(a, b, Weight::Scalar(1)).is_err());
    assert!(net.add_edge(a, PageId(9), Weight::Scalar(1)).is_err());
    net.run_full().unwrap();
    assert_eq!(net.value(b).unwrap(), &[3, 6]);
    let good = Change::Input {
        page: a,
        index: 0,
        value: 5,
    };
    let bad = Change::Weight {
        parent: a,
        child: b,
        row: 1,
        col: 1,
        value: 2,
    };
    assert!(net.update(&[good.clone(), bad]).is_err());
    assert_eq!(net.value(b).unwrap(), &[3, 6]);
    assert_eq!(net.input(a).unwrap(), Some(&[1i64, 2][..]));
    net.update(&[good]).unwrap();
    assert_eq!(net.value(b).unwrap(), &[15, 6]);
    assert!(net.set_strategy(Strategy::Improve).is_err());
}
