//! A semiring network driven through a page store, as an engine would: each
//! write to an input page is decoded into input changes, the incremental wave
//! runs, and its deltas are applied to the node pages. After every write the
//! node pages decode to the network's values, which equal a from-scratch
//! computation, and the deltas wrote only the entries the wave changed.

use mmsb_core::dtype::{decode, encode};
use mmsb_core::semiring::{MinPlus, PlusTimes, Semiring};
use mmsb_core::{Csr, Delta, Element, PageId, PageLocation, PageStore, SemiringNetwork, Weight};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn drive<S: Semiring>(s: S, seed: u64, gen: impl Fn(&mut StdRng) -> S::Elem)
where
    S::Elem: Element,
{
    let mut rng = StdRng::seed_from_u64(seed);
    let size = std::mem::size_of::<S::Elem>() as u64;
    let lens = [
        rng.gen_range(4..40usize),
        rng.gen_range(4..40),
        rng.gen_range(4..40),
    ];
    let mut store = PageStore::new();
    let mut net = SemiringNetwork::new(s.clone());
    // Value pages 1..=3, then input pages for nodes 1 and 2.
    let nodes: Vec<PageId> = lens
        .iter()
        .map(|&n| {
            store
                .create_page(n as u64 * size, PageLocation::Cpu)
                .unwrap()
        })
        .collect();
    let inputs: Vec<PageId> = lens[..2]
        .iter()
        .map(|&n| {
            store
                .create_page(n as u64 * size, PageLocation::Cpu)
                .unwrap()
        })
        .collect();
    for (k, &p) in nodes.iter().enumerate() {
        let b = (k < 2).then(|| (0..lens[k]).map(|_| gen(&mut rng)).collect::<Vec<_>>());
        if let Some(b) = &b {
            store
                .apply_delta(&Delta::dense(inputs[k], 0, encode(b)))
                .unwrap();
        }
        net.add_node(p, lens[k], b).unwrap();
        store.set_view(p, Some(net.view_of(p).unwrap())).unwrap();
    }
    let matrix = |rows: usize, cols: usize, rng: &mut StdRng| {
        let mut t: Vec<(usize, usize, S::Elem)> = Vec::new();
        for i in 0..rows {
            for j in 0..cols {
                if rng.gen_bool(0.3) {
                    t.push((i, j, gen(rng)));
                }
            }
        }
        Weight::Matrix(Csr::from_triplets(&s, rows, cols, &t).unwrap())
    };
    let (w01, w02, w12) = (
        matrix(lens[1], lens[0], &mut rng),
        matrix(lens[2], lens[0], &mut rng),
        matrix(lens[2], lens[1], &mut rng),
    );
    net.add_edge(nodes[0], nodes[1], w01).unwrap();
    net.add_edge(nodes[0], nodes[2], w02).unwrap();
    net.add_edge(nodes[1], nodes[2], w12).unwrap();
    net.run_full().unwrap();
    for &p in &nodes {
        store.apply_delta(&net.value_delta(p).unwrap()).unwrap();
    }
    for step in 0..30 {
        let k = rng.gen_range(0..2);
        let i = rng.gen_range(0..lens[k]);
        let old = store.read(inputs[k]).unwrap();
        let v = encode(&[gen(&mut rng)]);
        store
            .apply_delta(&Delta::dense(inputs[k], i as u64 * size, v))
            .unwrap();
        let new = store.read(inputs[k]).unwrap();
        let changes = net.input_changes(nodes[k], &old, &new).unwrap();
        let report = net.update(&changes).unwrap();
        let before: Vec<Vec<u8>> = nodes.iter().map(|&p| store.read(p).unwrap()).collect();
        for d in net.deltas(&report).unwrap() {
            store.apply_delta(&d).unwrap();
        }
        let want = net.from_scratch().unwrap();
        for (n, &p) in nodes.iter().enumerate() {
            let bytes = store.read(p).unwrap();
            let got: Vec<S::Elem> = decode(&bytes).unwrap();
            assert_eq!(&got[..], net.value(p).unwrap(), "seed {seed} step {step}");
            assert_eq!(got, want[&p], "seed {seed} step {step}");
            // Only the reported entries' bytes moved.
            let listed = report.changed.get(&p).cloned().unwrap_or_default();
            for (e, (a, b)) in before[n]
                .chunks_exact(size as usize)
                .zip(bytes.chunks_exact(size as usize))
                .enumerate()
            {
                assert_eq!(
                    a != b,
                    listed.contains(&e),
                    "seed {seed} step {step} {p}[{e}]"
                );
            }
        }
    }
}

#[test]
fn node_pages_follow_incremental_waves_driven_by_input_page_writes() {
    for seed in 0..8 {
        drive(MinPlus::<i64>::new(), seed, |r| {
            if r.gen_range(0..5) == 0 {
                i64::MAX
            } else {
                r.gen_range(0..100)
            }
        });
        drive(PlusTimes::<i64>::new(), seed, |r| r.gen_range(-9..10));
        drive(MinPlus::<f64>::new(), seed, |r| r.gen_range(0..100) as f64);
    }
}
