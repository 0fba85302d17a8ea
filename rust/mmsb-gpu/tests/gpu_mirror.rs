//! Gpu-sync edges act by themselves: with a [`GpuMirror`] attached, every
//! acknowledged commit of the durable store that changes a gpu-sync parent
//! leaves the child's device copy (on the emulated device) equal to the
//! store's page — bytes and epoch — without any call after the commit.

use mmsb_core::recompute::{ByteTransform, RecomputeFn};
use mmsb_core::{Delta, EdgeKind, Op, PageId, PageLocation, Store};
use mmsb_gpu::{FailurePoint, GpuMirror, GpuStore};
use std::sync::{Arc, Mutex};

fn create(store: &Store, n: usize, size: u64) -> Vec<PageId> {
    let ops = (0..n)
        .map(|_| Op::CreatePage {
            size,
            location: PageLocation::Cpu,
        })
        .collect();
    store.commit(ops).unwrap().created
}

#[test]
fn device_copies_of_gpu_sync_children_follow_every_commit() {
    let store = Arc::new(Store::in_memory());
    let p = create(&store, 4, 32);
    let (a, b, c, d) = (p[0], p[1], p[2], p[3]);
    // b = a ^ 0x5A (a derived page), c and d are gpu-sync children of a and b.
    store.add_edge(a, b, EdgeKind::Data, None).unwrap();
    store
        .set_recompute(b, RecomputeFn::Transform(ByteTransform::XorConst(0x5A)))
        .unwrap();
    store.add_edge(a, c, EdgeKind::GpuSync, None).unwrap();
    store.add_edge(b, d, EdgeKind::GpuSync, None).unwrap();
    // The device mirrors b itself too: a gpu-sync edge from a to b.
    store.add_edge(a, b, EdgeKind::GpuSync, None).unwrap();
    let gpu = Arc::new(Mutex::new(GpuStore::emulated()));
    let mirror = GpuMirror::attach(&store, gpu.clone(), PageLocation::Gpu).unwrap();
    let mut seed = 7u64;
    for round in 0..20u64 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let off = (seed >> 33) % 24;
        let bytes: Vec<u8> = (0..8).map(|i| (seed >> (i * 5)) as u8).collect();
        let mut ops = vec![Op::Delta(Delta::dense(a, off, bytes))];
        if round % 3 == 0 {
            // Writing a child directly marks nothing; its next sync carries it.
            ops.push(Op::Delta(Delta::dense(c, 0, vec![round as u8; 4])));
        }
        store.commit(ops).unwrap();
        let mut g = gpu.lock().unwrap();
        for child in [b, c, d] {
            assert_eq!(g.location(child).unwrap(), PageLocation::Gpu);
            assert_eq!(
                g.read(child).unwrap(),
                store.read(child).unwrap(),
                "round {round}"
            );
            assert_eq!(g.epoch(child).unwrap(), store.page(child).unwrap().epoch());
        }
        // An independent oracle for the derived page: a ^ 0x5A.
        let want: Vec<u8> = store.read(a).unwrap().iter().map(|x| x ^ 0x5A).collect();
        assert_eq!(g.read(b).unwrap(), want);
        assert!(g.read(a).is_err(), "a is no gpu-sync child: not mirrored");
    }
    let st = mirror.stats();
    assert_eq!(st.refreshes, 20);
    assert_eq!(st.errors, 0);
    assert_eq!(st.pages_refreshed, 60);
    // A commit that changes no gpu-sync parent refreshes nothing.
    store
        .commit(vec![Op::Delta(Delta::dense(d, 0, vec![1; 4]))])
        .unwrap();
    assert_eq!(mirror.stats().refreshes, 20);
    // A copy failure keeps the refreshed bytes (on the host); still equal.
    gpu.lock()
        .unwrap()
        .set_forced_failure(Some(FailurePoint::Copy));
    store
        .commit(vec![Op::Delta(Delta::dense(a, 0, vec![3; 4]))])
        .unwrap();
    let mut g = gpu.lock().unwrap();
    for child in [b, c, d] {
        assert_eq!(g.read(child).unwrap(), store.read(child).unwrap());
    }
    assert_eq!(g.location(c).unwrap(), PageLocation::Cpu);
    drop(g);
    // Detached: later commits leave the mirror alone.
    drop(mirror);
    store
        .commit(vec![Op::Delta(Delta::dense(a, 0, vec![4; 4]))])
        .unwrap();
    assert_ne!(gpu.lock().unwrap().read(b).unwrap(), store.read(b).unwrap());
}
