//! Full semiring-network waves run through `GpuStore::run_semiring_wave` (on
//! the emulated device, and with a forced kernel failure, so on the CPU
//! fallback) equal mmsb-core's `SemiringNetwork::run_full`, for random DAGs
//! with scalar, diagonal and CSR weights over every built-in with device
//! kernels.

use mmsb_core::semiring::{MaxPlus, MinPlus, OrAnd, PlusTimes, Semiring as CoreSemiring};
use mmsb_core::{Csr, ErrorCode, PageId, SemiringNetwork, Weight};
use mmsb_gpu::{Elem, FailurePoint, GpuStore};
use proptest::prelude::*;

/// A random network: `n` nodes of length `len`, an edge `i -> j` (i < j) where
/// `edges` says so, weights cycling scalar / diagonal / matrix; values from `v`.
fn network<S: CoreSemiring>(
    s: S,
    n: usize,
    len: usize,
    edges: &[bool],
    v: impl Fn(usize) -> S::Elem,
) -> SemiringNetwork<S> {
    let mut net = SemiringNetwork::new(s.clone());
    for i in 0..n {
        let input = (i % 2 == 0).then(|| (0..len).map(|k| v(i * 31 + k)).collect());
        net.add_node(PageId(i as u64 + 1), len, input).unwrap();
    }
    let mut e = 0;
    for j in 0..n {
        for i in 0..j {
            let on = edges.get(e).copied().unwrap_or(false);
            e += 1;
            if !on {
                continue;
            }
            let w = match e % 3 {
                0 => Weight::Scalar(v(e)),
                1 => Weight::Diagonal((0..len).map(|k| v(e + k)).collect()),
                _ => {
                    let trip: Vec<(usize, usize, S::Elem)> = (0..2 * len)
                        .map(|k| ((k * 7 + e) % len, (k * 3 + e) % len, v(e * 5 + k)))
                        .collect();
                    Weight::Matrix(Csr::from_triplets(&s, len, len, &trip).unwrap())
                }
            };
            net.add_edge(PageId(i as u64 + 1), PageId(j as u64 + 1), w)
                .unwrap();
        }
    }
    net
}

fn check<S>(mut net: SemiringNetwork<S>, forced: bool) -> Result<(), TestCaseError>
where
    S: CoreSemiring,
    S::Elem: Elem,
{
    let mut gs = GpuStore::emulated();
    if forced {
        gs.set_forced_failure(Some(FailurePoint::Kernel));
    }
    let got = gs.run_semiring_wave(&net).unwrap();
    net.run_full().unwrap();
    for (id, v) in &got {
        prop_assert_eq!(v.as_slice(), net.value(*id).unwrap(), "node {:?}", id);
    }
    prop_assert_eq!(got.len(), net.topo_order().len());
    if forced {
        prop_assert_eq!(gs.stats().ops_finished_on_cpu, 1);
    } else {
        prop_assert_eq!(gs.stats().gpu_ops, 1);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn device_semiring_wave_equals_the_cpu_network(
        n in 1usize..9,
        len in 1usize..12,
        edges in prop::collection::vec(any::<bool>(), 36),
        seed in any::<u64>(),
        forced in any::<bool>(),
    ) {
        let h = move |k: usize| (seed.wrapping_mul(6364136223846793005).wrapping_add((k as u64).wrapping_mul(1442695040888963407)) >> 33) as i64;
        check(network(PlusTimes::<i64>::new(), n, len, &edges, |k| h(k) % 7 - 3), forced)?;
        check(network(MinPlus::<i64>::new(), n, len, &edges, |k| h(k) % 50), forced)?;
        check(network(MinPlus::<f64>::new(), n, len, &edges, |k| (h(k) % 64) as f64 * 0.25), forced)?;
        check(network(MaxPlus::<i32>::new(), n, len, &edges, |k| (h(k) % 40 - 20) as i32), forced)?;
        check(network(OrAnd::<u8>::new(), n, len, &edges, |k| (h(k) % 3 == 0) as u8), forced)?;
    }
}

#[test]
fn semirings_without_device_kernels_are_unsupported() {
    use mmsb_core::semiring::MinMax;
    let mut net = SemiringNetwork::new(MinMax::<i64>::new());
    net.add_node(PageId(1), 2, Some(vec![1, 2])).unwrap();
    let mut gs = GpuStore::emulated();
    let e = gs.run_semiring_wave(&net).unwrap_err();
    assert_eq!(e.code, ErrorCode::Unsupported);
}
