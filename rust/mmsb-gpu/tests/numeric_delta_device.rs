//! Numeric (accumulate) deltas on device pages: `page ⊕= payload` runs the
//! masked accumulate kernel where the (semiring, dtype) pair has one and the
//! CPU on the range otherwise, in batch order with overwrite deltas, with
//! and without a forced kernel failure and host copies. Oracle: mmsb-core's
//! `apply_reference` (one element at a time with the scalar `⊕`) on plain
//! vectors. Runs on the emulated device (CPU CI); `mmsb-gpu-check` runs the
//! same comparison on a GPU.

use mmsb_core::apply::apply_reference;
use mmsb_core::delta::{Delta, Payload};
use mmsb_core::dtype::DType;
use mmsb_core::numeric_delta;
use mmsb_core::semiring::SemiringKind;
use mmsb_core::{PageId, PageLocation};
use mmsb_gpu::{FailurePoint, GpuStore};
use proptest::prelude::*;

const PAGE: usize = 512;
const PAGES: u64 = 3;

/// Little-endian bytes of the small integer `v` as `dtype` (floats hold
/// small integers, so sums are exact and no NaN appears).
fn encode(dtype: DType, v: i16) -> Vec<u8> {
    match dtype {
        DType::U8 => vec![v as u8],
        DType::Bool => vec![(v & 1) as u8],
        DType::I32 => (v as i32).to_le_bytes().to_vec(),
        DType::U32 => (v as u32).to_le_bytes().to_vec(),
        DType::I64 => (v as i64).to_le_bytes().to_vec(),
        DType::U64 => (v as u64).to_le_bytes().to_vec(),
        DType::F32 => (v as f32).to_le_bytes().to_vec(),
        DType::F64 => (v as f64).to_le_bytes().to_vec(),
    }
}

fn pairs() -> Vec<(SemiringKind, DType)> {
    let mut v = Vec::new();
    for k in SemiringKind::ALL {
        for d in DType::ALL {
            if k.supports(d) {
                v.push((k, d));
            }
        }
    }
    v
}

#[derive(Clone, Debug)]
enum Op {
    Overwrite(Delta),
    Numeric(Delta),
}

fn arb_numeric(page: PageId) -> impl Strategy<Value = Delta> {
    let n = pairs().len();
    (0..n, 0usize..32, 1usize..24, any::<u64>(), 0u8..3).prop_flat_map(
        move |(pi, first, count, seed, form)| {
            let (kind, dtype) = pairs()[pi];
            let size = dtype.size() as usize;
            let count = count.min(PAGE / size - first.min(PAGE / size - 1));
            let first = first.min(PAGE / size - count);
            prop::collection::vec(-5i16..6, count).prop_map(move |vals| {
                let bytes: Vec<u8> = vals.iter().flat_map(|&v| encode(dtype, v)).collect();
                let flags: Vec<bool> = (0..count).map(|j| (seed >> (j % 64)) & 1 == 1).collect();
                let masked = form > 0;
                let mut d = numeric_delta::accumulate_bytes(
                    page,
                    kind,
                    dtype,
                    first as u64,
                    bytes,
                    masked.then_some(&flags[..]),
                )
                .unwrap();
                if form == 2 {
                    // Sparse: only the masked elements' bytes, packed in order.
                    let packed: Vec<u8> = (0..count)
                        .filter(|&j| flags[j])
                        .flat_map(|j| d.payload.bytes()[j * size..(j + 1) * size].to_vec())
                        .collect();
                    d.payload = Payload::Sparse(packed);
                }
                d
            })
        },
    )
}

fn arb_op() -> impl Strategy<Value = Op> {
    (1..=PAGES).prop_flat_map(|p| {
        let page = PageId(p);
        prop_oneof![
            (0usize..PAGE - 1, 1usize..64, any::<u8>()).prop_map(move |(off, len, b)| {
                let len = len.min(PAGE - off);
                Op::Overwrite(Delta::dense(page, off as u64, vec![b; len]))
            }),
            arb_numeric(page).prop_map(Op::Numeric),
            arb_numeric(page).prop_map(Op::Numeric),
        ]
    })
}

fn run(
    ops: &[Op],
    batch: usize,
    fail: bool,
    host_copy: bool,
    placement: &[PageLocation],
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, GpuStore) {
    let mut s = GpuStore::emulated();
    s.set_host_copy(host_copy).unwrap();
    let mut model = vec![vec![0u8; PAGE]; PAGES as usize];
    for p in 1..=PAGES {
        let at = placement[(p as usize - 1) % placement.len()];
        s.create_page(PageId(p), PAGE, at).unwrap();
    }
    let deltas: Vec<Delta> = ops
        .iter()
        .map(|o| match o {
            Op::Overwrite(d) | Op::Numeric(d) => d.clone(),
        })
        .collect();
    for (i, chunk) in deltas.chunks(batch.max(1)).enumerate() {
        s.set_forced_failure((fail && i == 1).then_some(FailurePoint::Kernel));
        s.apply_batch(chunk).unwrap();
        for d in chunk {
            let page = &mut model[(d.page.0 - 1) as usize];
            let (lo, hi) = (d.offset as usize, (d.offset + d.len) as usize);
            apply_reference(&mut page[lo..hi], d).unwrap();
        }
    }
    let got = (1..=PAGES).map(|p| s.read(PageId(p)).unwrap()).collect();
    (got, model, s)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn numeric_deltas_on_device_pages_equal_the_reference(
        ops in prop::collection::vec(arb_op(), 1..40),
        batch in 1usize..12,
        fail in any::<bool>(),
        host_copy in any::<bool>(),
    ) {
        let placement = [PageLocation::Gpu, PageLocation::Unified, PageLocation::Cpu];
        let (got, model, s) = run(&ops, batch, fail, host_copy, &placement);
        prop_assert_eq!(got, model);
        let st = s.stats();
        let numeric = ops.iter().filter(|o| matches!(o, Op::Numeric(_))).count() as u64;
        prop_assert!(st.numeric_deltas_on_gpu + st.numeric_deltas_on_cpu <= numeric);
    }
}

#[test]
fn kernel_pairs_run_on_the_device_and_others_on_the_cpu_range() {
    let p = PageId(1);
    let mut s = GpuStore::emulated();
    s.create_page(p, 64, PageLocation::Gpu).unwrap();
    let mut model = vec![0u8; 64];
    let deltas = vec![
        numeric_delta::accumulate::<f64>(p, SemiringKind::PlusTimes, 0, &[1.5, 2.0]).unwrap(),
        numeric_delta::accumulate::<f64>(p, SemiringKind::PlusTimes, 0, &[1.0, -4.0]).unwrap(),
        numeric_delta::accumulate::<f64>(p, SemiringKind::MinMax, 2, &[3.0]).unwrap(),
        numeric_delta::accumulate_masked::<i32>(
            p,
            SemiringKind::MinPlus,
            8,
            &[-7, 9],
            &[true, false],
        )
        .unwrap(),
    ];
    s.apply_batch(&deltas).unwrap();
    for d in &deltas {
        let (lo, hi) = (d.offset as usize, (d.offset + d.len) as usize);
        apply_reference(&mut model[lo..hi], d).unwrap();
    }
    assert_eq!(s.read(p).unwrap(), model);
    assert_eq!(&model[0..8], &2.5f64.to_le_bytes());
    assert_eq!(s.stats().numeric_deltas_on_gpu, 3);
    assert_eq!(s.stats().numeric_deltas_on_cpu, 1);
    assert_eq!(s.epoch(p).unwrap(), 1);
}

#[test]
fn graph_replay_leaves_numeric_batches_on_the_stream_path() {
    let p = PageId(1);
    let mut s = GpuStore::emulated();
    s.set_graph_replay(true);
    s.create_page(p, 64, PageLocation::Gpu).unwrap();
    for _ in 0..3 {
        let d = numeric_delta::accumulate::<i64>(p, SemiringKind::PlusTimes, 1, &[5]).unwrap();
        s.apply_batch(&[d]).unwrap();
    }
    assert_eq!(&s.read(p).unwrap()[8..16], &15i64.to_le_bytes());
    assert_eq!(s.stats().graph_captures + s.stats().graph_replays, 0);
    assert_eq!(s.stats().numeric_deltas_on_gpu, 3);
}
