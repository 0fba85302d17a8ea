//! The GPU layer's contract on machines without a GPU (CPU-only CI):
//! the crate builds, the probe reports "unavailable", every entry point falls
//! back to the CPU or returns `GpuUnavailable`, and a forced failure halfway
//! through a batch (on the emulated device) finishes on the CPU with bytes
//! identical to an independent reference.

use mmsb_core::apply::apply_reference;
use mmsb_core::delta::Delta;
use mmsb_core::error::ErrorCode;
use mmsb_core::{PageId, PageLocation};
use mmsb_gpu::semiring_core;
use mmsb_gpu::{Csr, CudaDevice, FailurePoint, GpuStore, Semiring};
use proptest::prelude::*;

fn no_gpu() -> bool {
    !mmsb_gpu::probe().available()
}

#[test]
fn probe_reports_unavailable_with_a_reason_when_there_is_no_gpu() {
    let p = mmsb_gpu::probe();
    if no_gpu() {
        assert!(p.reason.is_some(), "{p:?}");
        let e = CudaDevice::open(0).expect_err("no GPU, yet a device opened");
        assert_eq!(e.code, ErrorCode::GpuUnavailable);
    }
}

#[test]
fn open_without_a_gpu_and_forced_init_failure_both_give_a_cpu_store() {
    if no_gpu() {
        let s = GpuStore::open();
        assert!(!s.has_device());
        assert!(s.stats().init_fallback.is_some());
    }
    // SAFETY-free in edition 2021; only this test reads the variable.
    std::env::set_var(mmsb_gpu::gpu_store::FORCE_FAIL_ENV, "init");
    let s = GpuStore::open();
    std::env::remove_var(mmsb_gpu::gpu_store::FORCE_FAIL_ENV);
    assert!(!s.has_device());
    assert_eq!(s.describe(), "cpu");
}

#[test]
fn every_entry_point_of_a_cpu_store_falls_back_or_reports_gpu_unavailable() {
    let mut s = GpuStore::cpu_only("test");
    let p = PageId(1);
    assert_eq!(
        s.create_page(p, 256, PageLocation::Gpu).unwrap(),
        PageLocation::Cpu
    );
    assert_eq!(
        s.create_page(PageId(2), 256, PageLocation::Unified)
            .unwrap(),
        PageLocation::Cpu
    );
    assert_eq!(s.stats().placement_fallbacks, 2);
    let e = s.migrate_page(p, PageLocation::Gpu).unwrap_err();
    assert_eq!(e.code, ErrorCode::GpuUnavailable);
    s.apply_batch(&[Delta::dense(p, 10, vec![7; 5])]).unwrap();
    assert_eq!(&s.read(p).unwrap()[10..15], &[7; 5]);
    assert_eq!(s.epoch(p).unwrap(), 1);
    let x: Vec<i32> = (1..=10).collect();
    assert_eq!(s.fold_add(Semiring::PlusTimes, &x).unwrap(), 55);
    assert_eq!(s.fold_mul(Semiring::MinPlus, &x).unwrap(), 55);
    assert_eq!(s.fold_add(Semiring::MaxPlus, &x).unwrap(), 10);
    let mut c = vec![1.0f64; 3];
    s.accumulate(Semiring::MinPlus, &mut c, &[0.5, 2.0, -1.0], None)
        .unwrap();
    assert_eq!(c, vec![0.5, 1.0, -1.0]);
    let a = Csr {
        nrows: 2,
        ncols: 2,
        row_ptr: vec![0, 1, 3],
        cols: vec![1, 0, 1],
        vals: vec![2.0f32, 3.0, 4.0],
    };
    let mut y = vec![f32::NAN; 2];
    s.spmv(Semiring::PlusTimes, &a, &[1.0, 10.0], &mut y)
        .unwrap();
    assert_eq!(y, vec![20.0, 43.0]);
}

#[test]
fn invalid_deltas_are_rejected_before_any_page_changes() {
    let mut s = GpuStore::emulated();
    let p = PageId(1);
    s.create_page(p, 64, PageLocation::Gpu).unwrap();
    let good = Delta::dense(p, 0, vec![1; 8]);
    let bad = Delta::dense(p, 60, vec![1; 8]);
    let e = s.apply_batch(&[good, bad]).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    assert_eq!(s.read(p).unwrap(), vec![0; 64]);
    assert_eq!(s.epoch(p).unwrap(), 0);
}

#[test]
fn migration_keeps_bytes_and_epoch_through_every_location() {
    let mut s = GpuStore::emulated();
    let p = PageId(9);
    s.create_page(p, 1000, PageLocation::Cpu).unwrap();
    s.apply_batch(&[Delta::dense(p, 0, (0..1000).map(|i| i as u8).collect())])
        .unwrap();
    let want = s.read(p).unwrap();
    for to in [
        PageLocation::Gpu,
        PageLocation::Unified,
        PageLocation::Cpu,
        PageLocation::Unified,
    ] {
        s.migrate_page(p, to).unwrap();
        assert_eq!(s.location(p).unwrap(), to);
        assert_eq!(s.read(p).unwrap(), want);
        assert_eq!(s.epoch(p).unwrap(), 1);
    }
}

#[test]
fn forced_copy_failure_without_a_host_copy_is_a_gpu_error_and_with_one_recovers() {
    let p = PageId(1);
    let d = Delta::dense(p, 0, vec![5; 16]);
    let mut s = GpuStore::emulated();
    s.create_page(p, 64, PageLocation::Gpu).unwrap();
    s.set_forced_failure(Some(FailurePoint::Copy));
    // The kernel works; only reading back fails.
    s.apply_batch(std::slice::from_ref(&d)).unwrap();
    assert_eq!(s.read(p).unwrap_err().code, ErrorCode::GpuError);

    let mut s = GpuStore::emulated();
    s.set_host_copy(true).unwrap();
    s.create_page(p, 64, PageLocation::Gpu).unwrap();
    s.apply_batch(std::slice::from_ref(&d)).unwrap();
    s.set_forced_failure(Some(FailurePoint::Copy));
    let bytes = s.read(p).unwrap();
    assert_eq!(&bytes[..16], &[5; 16]);
    assert!(s.stats().copy_failures >= 1);
}

#[test]
fn forced_kernel_failure_on_semiring_ops_finishes_on_the_cpu() {
    let mut s = GpuStore::emulated();
    s.set_forced_failure(Some(FailurePoint::Kernel));
    let x: Vec<u8> = vec![0, 1, 0, 1];
    assert_eq!(s.fold_add(Semiring::OrAnd, &x).unwrap(), 1);
    assert_eq!(s.fold_mul(Semiring::OrAnd, &x).unwrap(), 0);
    assert_eq!(s.stats().ops_finished_on_cpu, 2);
    assert_eq!(s.stats().gpu_ops, 0);
}

fn arb_delta(page: PageId, size: usize) -> impl Strategy<Value = Delta> {
    (0..size, 1..=size, 0u8..3, any::<u64>()).prop_map(move |(off, len, kind, seed)| {
        let len = len.min(size - off).max(1);
        let off = off.min(size - len);
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let mut mask = vec![0u64; len.div_ceil(64)];
        for i in 0..len {
            if next() % 3 == 0 {
                mask[i / 64] |= 1 << (i % 64);
            }
        }
        match kind {
            0 => Delta::dense(page, off as u64, bytes),
            1 => Delta::masked(page, off as u64, bytes, mask),
            _ => {
                let n = mask.iter().map(|w| w.count_ones() as usize).sum();
                Delta::sparse(page, off as u64, len as u64, mask, bytes[..n].to_vec())
            }
        }
    })
}

fn arb_batch() -> impl Strategy<Value = Vec<Delta>> {
    let sizes = [64usize, 200, 4096];
    prop::collection::vec(
        (0usize..3).prop_flat_map(move |k| arb_delta(PageId(k as u64 + 1), sizes[k])),
        1..24,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Pages on the emulated device, batches with a forced kernel failure
    /// halfway through a launch group (with and without a host copy), equal an
    /// independent reference: `apply_reference` on plain vectors.
    #[test]
    fn forced_kernel_failure_mid_batch_gives_reference_bytes(
        batches in prop::collection::vec(arb_batch(), 1..5),
        host_copy in any::<bool>(),
        fail_from in 0usize..5,
    ) {
        let sizes = [64usize, 200, 4096];
        let mut s = GpuStore::emulated();
        s.set_host_copy(host_copy).unwrap();
        let mut reference: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![0; n]).collect();
        for (k, &n) in sizes.iter().enumerate() {
            let loc = if k == 1 { PageLocation::Unified } else { PageLocation::Gpu };
            s.create_page(PageId(k as u64 + 1), n, loc).unwrap();
        }
        for (b, batch) in batches.iter().enumerate() {
            if b == fail_from {
                s.set_forced_failure(Some(FailurePoint::Kernel));
            }
            s.apply_batch(batch).unwrap();
            for d in batch {
                let page = &mut reference[(d.page.0 - 1) as usize];
                apply_reference(&mut page[d.offset as usize..(d.offset + d.len) as usize], d).unwrap();
            }
        }
        for (k, want) in reference.iter().enumerate() {
            prop_assert_eq!(&s.read(PageId(k as u64 + 1)).unwrap(), want);
        }
        if fail_from < batches.len() {
            prop_assert!(s.stats().batches_finished_on_cpu >= 1);
        }
    }

    /// The CPU reference folds agree with a direct computation.
    #[test]
    fn cpu_fold_add_over_plus_times_is_the_wrapping_sum(x in prop::collection::vec(any::<i32>(), 0..200)) {
        let want = x.iter().fold(0i32, |a, &b| a.wrapping_add(b));
        prop_assert_eq!(semiring_core::fold_add(Semiring::PlusTimes, &x).unwrap(), want);
    }
}

#[test]
fn gpu_sync_edges_refresh_the_device_copy_of_the_child_after_a_wave() {
    use mmsb_core::{EdgeKind, Op, Store};
    let store = Store::in_memory();
    let r = store
        .commit(vec![
            Op::CreatePage {
                size: 16,
                location: PageLocation::Cpu,
            },
            Op::CreatePage {
                size: 16,
                location: PageLocation::Cpu,
            },
        ])
        .unwrap();
    let (a, b) = (r.created[0], r.created[1]);
    store.add_edge(a, b, EdgeKind::GpuSync, None).unwrap();
    store
        .commit(vec![Op::Delta(Delta::dense(b, 0, vec![9; 16]))])
        .unwrap();
    let mut gs = GpuStore::emulated();
    // Whatever the setup left pending (writing the child directly marks nothing).
    let _ = gs.sync_from(&store, PageLocation::Gpu).unwrap();
    // A change of the parent marks the child for a device sync.
    store
        .commit(vec![Op::Delta(Delta::dense(a, 0, vec![1; 4]))])
        .unwrap();
    assert_eq!(gs.sync_from(&store, PageLocation::Gpu).unwrap(), vec![b]);
    assert_eq!(gs.location(b).unwrap(), PageLocation::Gpu);
    assert_eq!(gs.read(b).unwrap(), store.read(b).unwrap());
    assert_eq!(gs.epoch(b).unwrap(), store.page(b).unwrap().epoch());
    // Drained: nothing pending until the parent changes again.
    assert!(gs.sync_from(&store, PageLocation::Gpu).unwrap().is_empty());
    store
        .commit(vec![Op::Delta(Delta::dense(b, 0, vec![3; 16]))])
        .unwrap();
    store
        .commit(vec![Op::Delta(Delta::dense(a, 0, vec![2; 4]))])
        .unwrap();
    // A copy failure keeps the refreshed bytes, on the host.
    gs.set_forced_failure(Some(FailurePoint::Copy));
    assert_eq!(gs.sync_from(&store, PageLocation::Gpu).unwrap(), vec![b]);
    gs.set_forced_failure(None);
    assert_eq!(gs.read(b).unwrap(), vec![3; 16]);
    assert_eq!(gs.location(b).unwrap(), PageLocation::Cpu);
}

#[test]
fn graph_replay_captures_once_per_batch_shape_and_gives_reference_bytes() {
    let mut s = GpuStore::emulated();
    assert!(!s.graph_replay());
    for k in 1..=3u64 {
        s.create_page(PageId(k), 256, PageLocation::Gpu).unwrap();
    }
    let mut reference = vec![vec![0u8; 256]; 3];
    let run = |s: &mut GpuStore, reference: &mut [Vec<u8>], wave: u8, len: usize| {
        // Same pages, ranges and masks every wave; new payload bytes.
        let batch: Vec<Delta> = (1..=3u64)
            .map(|k| {
                let bytes: Vec<u8> = (0..len).map(|i| wave ^ (i as u8) ^ (k as u8)).collect();
                let mask: Vec<u64> = vec![0x5555_5555_5555_5555; len.div_ceil(64)];
                Delta::masked(PageId(k), 8 * k, bytes, mask)
            })
            .collect();
        s.apply_batch(&batch).unwrap();
        for d in &batch {
            let page = &mut reference[(d.page.0 - 1) as usize];
            apply_reference(&mut page[d.offset as usize..(d.offset + d.len) as usize], d).unwrap();
        }
    };
    s.set_graph_replay(true);
    for wave in 0..5 {
        run(&mut s, &mut reference, wave, 128);
    }
    assert_eq!((s.stats().graph_captures, s.stats().graph_replays), (1, 4));
    // Another shape is captured anew, then replayed.
    run(&mut s, &mut reference, 9, 64);
    run(&mut s, &mut reference, 10, 64);
    assert_eq!((s.stats().graph_captures, s.stats().graph_replays), (2, 5));
    // Two deltas on one page make two launch groups: the stream path.
    let two = [
        Delta::dense(PageId(1), 0, vec![1; 4]),
        Delta::dense(PageId(1), 2, vec![2; 4]),
    ];
    s.apply_batch(&two).unwrap();
    for d in &two {
        apply_reference(
            &mut reference[0][d.offset as usize..(d.offset + d.len) as usize],
            d,
        )
        .unwrap();
    }
    s.set_graph_replay(false);
    run(&mut s, &mut reference, 11, 64);
    assert_eq!((s.stats().graph_captures, s.stats().graph_replays), (2, 5));
    for (k, want) in reference.iter().enumerate() {
        assert_eq!(&s.read(PageId(k as u64 + 1)).unwrap(), want);
    }
}

/// `device_pointer`: `NotFound`, `GpuUnavailable` on a CPU store and on the
/// emulated device, `InvalidArgument` for a host page; on a real GPU the
/// address reads back (through the driver, not the store) as the page's bytes.
#[test]
fn device_pointer_is_refused_without_a_real_device_and_reads_back_the_page_on_one() {
    let mut cpu = GpuStore::cpu_only("test");
    cpu.create_page(PageId(1), 64, PageLocation::Gpu).unwrap();
    assert_eq!(
        cpu.device_pointer(PageId(1)).unwrap_err().code,
        ErrorCode::GpuUnavailable
    );
    assert_eq!(
        cpu.device_pointer(PageId(2)).unwrap_err().code,
        ErrorCode::NotFound
    );

    let mut emu = GpuStore::emulated();
    emu.create_page(PageId(1), 64, PageLocation::Gpu).unwrap();
    emu.create_page(PageId(2), 64, PageLocation::Unified)
        .unwrap();
    emu.create_page(PageId(3), 64, PageLocation::Cpu).unwrap();
    for (id, code) in [
        (1, ErrorCode::GpuUnavailable),
        (2, ErrorCode::GpuUnavailable),
        (3, ErrorCode::InvalidArgument),
        (4, ErrorCode::NotFound),
    ] {
        assert_eq!(
            emu.device_pointer(PageId(id)).unwrap_err().code,
            code,
            "page {id}"
        );
    }

    if no_gpu() {
        return;
    }
    let dev = std::sync::Arc::new(CudaDevice::open(0).unwrap());
    let mut s = GpuStore::with_device(dev.clone());
    for (id, loc) in [(1, PageLocation::Gpu), (2, PageLocation::Unified)] {
        assert_eq!(s.create_page(PageId(id), 300, loc).unwrap(), loc);
        let payload: Vec<u8> = (0..200u32).map(|i| (i * 7 + id as u32) as u8).collect();
        s.apply_batch(&[Delta::dense(PageId(id), 50, payload.clone())])
            .unwrap();
        let (addr, len) = s.device_pointer(PageId(id)).unwrap();
        assert!(addr != 0);
        assert_eq!(len, 300);
        let mut got = vec![0u8; len];
        dev.download(addr, &mut got).unwrap();
        let mut want = vec![0u8; 300];
        want[50..250].copy_from_slice(&payload);
        assert_eq!(got, want, "page {id} at {loc:?}");
    }
    s.create_page(PageId(3), 8, PageLocation::Cpu).unwrap();
    assert_eq!(
        s.device_pointer(PageId(3)).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
}
