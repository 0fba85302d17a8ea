//! `GpuStore::follow_commit`: after each acknowledged commit of a durable
//! store, the commit's wave runs on the (emulated) device — built-in
//! functions as device kernels — and every mirrored page equals the store's
//! page (bytes and epoch). The store's own CPU wave is the oracle.

use mmsb_core::recompute::{ByteTransform, FunctionId, RecomputeFn};
use mmsb_core::{Delta, EdgeKind, ErrorCode, Op, PageId, PageLocation, Store};
use mmsb_gpu::{DeviceFn, GpuStore};
use std::collections::HashMap;

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn each_commit_wave_runs_on_the_device_and_equals_the_store() {
    let store = Store::in_memory();
    let n = 30;
    let ops = (0..n)
        .map(|i| Op::CreatePage {
            size: [32u64, 48, 64][i % 3],
            location: PageLocation::Cpu,
        })
        .collect();
    let pages = store.commit(ops).unwrap().created;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut fns: HashMap<FunctionId, DeviceFn> = HashMap::new();
    let sources = &pages[..6];
    for i in 6..n {
        let a = pages[(next(&mut seed) % i as u64) as usize];
        store.add_edge(a, pages[i], EdgeKind::Data, None).unwrap();
        let b = pages[(next(&mut seed) % i as u64) as usize];
        let _ = store.add_edge(b, pages[i], EdgeKind::Data, None);
        let k = next(&mut seed) as u8;
        let f = match k % 3 {
            0 => RecomputeFn::Passthrough,
            1 => RecomputeFn::Transform(ByteTransform::XorConst(k | 1)),
            _ => RecomputeFn::Transform(ByteTransform::AddConst(k)),
        };
        let dev = DeviceFn::from_recompute(&f).unwrap();
        fns.insert(store.set_recompute(pages[i], f).unwrap(), dev);
    }
    let mut gs = GpuStore::emulated();
    for (i, &p) in pages.iter().enumerate() {
        let page = store.page(p).unwrap();
        let at = [PageLocation::Gpu, PageLocation::Unified, PageLocation::Cpu][i % 3];
        gs.mirror_page(p, page.bytes(), page.epoch(), at).unwrap();
    }
    let mut on_device = 0;
    for _ in 0..25 {
        let mut deltas = Vec::new();
        for &p in sources {
            if next(&mut seed).is_multiple_of(2) {
                let off = next(&mut seed) % 24;
                let bytes = (0..1 + next(&mut seed) % 8)
                    .map(|_| next(&mut seed) as u8)
                    .collect();
                deltas.push(Delta::dense(p, off, bytes));
            }
        }
        let receipt = store
            .commit(deltas.iter().cloned().map(Op::Delta).collect())
            .unwrap();
        let rep = gs
            .follow_commit(&store, &deltas, &receipt, &fns, true)
            .unwrap();
        on_device += rep.on_device;
        for &p in &pages {
            let page = store.page(p).unwrap();
            assert_eq!(gs.read(p).unwrap(), page.bytes(), "page {p}");
            assert_eq!(gs.epoch(p).unwrap(), page.epoch(), "epoch of {p}");
        }
    }
    assert!(on_device > 0);
    assert_eq!(gs.stats().kernel_failures, 0);
}

#[test]
fn a_wave_with_a_function_without_device_form_or_an_unmirrored_page_changes_nothing() {
    let store = Store::in_memory();
    let p = store
        .commit(
            (0..3)
                .map(|_| Op::CreatePage {
                    size: 16,
                    location: PageLocation::Cpu,
                })
                .collect(),
        )
        .unwrap()
        .created;
    let (a, b, c) = (p[0], p[1], p[2]);
    store.add_edge(a, b, EdgeKind::Data, None).unwrap();
    store.add_edge(a, c, EdgeKind::Data, None).unwrap();
    let fb = store.set_recompute(b, RecomputeFn::Passthrough).unwrap();
    store
        .set_recompute(c, RecomputeFn::Transform(ByteTransform::Map("not", |x| !x)))
        .unwrap();
    let mut gs = GpuStore::emulated();
    for &q in &[a, b, c] {
        gs.mirror_page(q, &[0; 16], 0, PageLocation::Gpu).unwrap();
    }
    let fns: HashMap<FunctionId, DeviceFn> = [(fb, DeviceFn::Copy)].into_iter().collect();
    let deltas = vec![Delta::dense(a, 0, vec![5; 4])];
    let receipt = store
        .commit(deltas.iter().cloned().map(Op::Delta).collect())
        .unwrap();
    let e = gs
        .follow_commit(&store, &deltas, &receipt, &fns, true)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unsupported);
    assert_eq!(gs.read(a).unwrap(), vec![0; 16]);
    gs.remove_page(c).unwrap();
    let e = gs
        .follow_commit(&store, &deltas, &receipt, &fns, true)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    assert_eq!(gs.read(b).unwrap(), vec![0; 16]);
    let _: PageId = a;
}
