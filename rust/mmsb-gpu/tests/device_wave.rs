//! Propagation waves on the (emulated) device equal the CPU engine's waves.
//!
//! Random DAGs of derived pages computed by the built-in device-capable
//! functions (passthrough, xor-const, add-const; pages of different sizes),
//! random input updates: for each commit the CPU engine plans and runs the
//! wave; the GPU store applies the same inputs and runs the same planned
//! command buffer with device kernels (some pages kept in host memory, some
//! in device or unified memory). Every page's bytes, the pages recomputed and
//! the pages changed must equal the engine's; a forced kernel failure
//! finishes on the CPU with the same result, and so does a wave run with
//! graph replay on (levels captured once, replayed afterwards).

use mmsb_core::propagation::Engine;
use mmsb_core::recompute::{ByteTransform, FunctionId, RecomputeFn};
use mmsb_core::{Delta, EdgeKind, ErrorCode, PageId, PageLocation};
use mmsb_gpu::{DeviceFn, FailurePoint, GpuStore};
use proptest::prelude::*;
use std::collections::{BTreeSet, HashMap};

struct Setup {
    engine: Engine,
    gs: GpuStore,
    fns: HashMap<FunctionId, DeviceFn>,
    sources: Vec<PageId>,
    pages: Vec<PageId>,
}

/// `n` pages; page i > 0 derives from 1 or 2 earlier pages (first one = the
/// input its function reads) when `derived[i]`; functions chosen by `kinds`.
fn build(n: usize, parents: &[(usize, usize)], derived: &[bool], kinds: &[u8]) -> Setup {
    let mut engine = Engine::new();
    let mut gs = GpuStore::emulated();
    let mut pages = Vec::new();
    for i in 0..n {
        let size = [32u64, 48, 64][i % 3];
        let id = engine.create_page(size, PageLocation::Cpu).unwrap();
        let at = [PageLocation::Gpu, PageLocation::Cpu, PageLocation::Unified][i % 3];
        gs.create_page(id, size as usize, at).unwrap();
        pages.push(id);
    }
    let mut fns = HashMap::new();
    let mut sources = Vec::new();
    for i in 0..n {
        if i == 0 || !derived[i] {
            sources.push(pages[i]);
            continue;
        }
        let (a, b) = parents[i];
        let (a, b) = (a % i, b % i);
        engine
            .add_edge(pages[a], pages[i], EdgeKind::Data, None)
            .unwrap();
        if b != a {
            engine
                .add_edge(pages[b], pages[i], EdgeKind::Data, None)
                .unwrap();
        }
        let f = match kinds[i] % 3 {
            0 => RecomputeFn::Passthrough,
            1 => RecomputeFn::Transform(ByteTransform::XorConst(kinds[i] | 1)),
            _ => RecomputeFn::Transform(ByteTransform::AddConst(kinds[i])),
        };
        let dev = DeviceFn::from_recompute(&f).unwrap();
        let id = engine.set_recompute(pages[i], f).unwrap();
        fns.insert(id, dev);
    }
    Setup {
        engine,
        gs,
        fns,
        sources,
        pages,
    }
}

/// One commit through both; returns whether the device ran commands.
fn commit_both(s: &mut Setup, deltas: &[Delta]) -> bool {
    let before: HashMap<PageId, Vec<u8>> = s
        .sources
        .iter()
        .map(|&p| (p, s.engine.store().read(p).unwrap()))
        .collect();
    let plan = s.engine.plan_commit(deltas).unwrap();
    s.engine.apply_commit(&plan).unwrap();
    let roots: BTreeSet<PageId> = s
        .sources
        .iter()
        .copied()
        .filter(|p| s.engine.store().read(*p).unwrap() != before[p])
        .collect();
    s.gs.apply_batch(deltas).unwrap();
    let report = s.gs.run_wave(&plan.commands, &s.fns, &roots).unwrap();
    assert_eq!(report.recomputed, plan.recomputed);
    let derived: Vec<PageId> = plan.derived().iter().map(|d| d.page).collect();
    assert_eq!(report.changed, derived);
    for &p in &s.pages {
        assert_eq!(
            s.gs.read(p).unwrap(),
            s.engine.store().read(p).unwrap(),
            "page {p}"
        );
    }
    report.on_device > 0
}

fn random_deltas(sources: &[PageId], seed: u64) -> Vec<Delta> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut used = BTreeSet::new();
    let mut out = Vec::new();
    for _ in 0..1 + next() % 3 {
        let p = sources[(next() % sources.len() as u64) as usize];
        if !used.insert(p) {
            continue;
        }
        let off = next() % 24;
        let len = 1 + next() % 8;
        // Sometimes rewrite the same bytes (no change: the wave must cut off).
        let bytes: Vec<u8> = (0..len).map(|_| (next() % 4) as u8).collect();
        out.push(Delta::dense(p, off, bytes));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn device_wave_equals_the_cpu_engine_wave(
        n in 2usize..24,
        parents in prop::collection::vec((0usize..64, 0usize..64), 24),
        derived in prop::collection::vec(any::<bool>(), 24),
        kinds in prop::collection::vec(any::<u8>(), 24),
        seeds in prop::collection::vec(any::<u64>(), 1..8),
        fail_at in 0usize..10,
        replay in any::<bool>(),
    ) {
        let mut s = build(n, &parents, &derived, &kinds);
        s.gs.set_graph_replay(replay);
        for (k, seed) in seeds.iter().enumerate() {
            if k == fail_at {
                s.gs.set_forced_failure(Some(FailurePoint::Kernel));
            }
            let deltas = random_deltas(&s.sources, *seed);
            commit_both(&mut s, &deltas);
        }
    }
}

#[test]
fn a_chain_runs_on_the_device_and_cuts_off_where_bytes_do_not_change() {
    // a -> b (xor 0xFF) -> c (passthrough) -> d (add 1), all on the device.
    let mut s = build(
        4,
        &[(0, 0), (0, 0), (1, 1), (2, 2)],
        &[false, true, true, true],
        &[0, 1, 0, 2],
    );
    for p in 0..4 {
        let id = s.pages[p];
        if s.gs.location(id).unwrap() != PageLocation::Gpu {
            s.gs.migrate_page(id, PageLocation::Gpu).unwrap();
        }
    }
    let a = s.pages[0];
    assert!(commit_both(&mut s, &[Delta::dense(a, 0, vec![7; 8])]));
    // Rewriting the same bytes changes nothing: no command runs.
    let plan = s
        .engine
        .plan_commit(&[Delta::dense(a, 0, vec![7; 8])])
        .unwrap();
    let report =
        s.gs.run_wave(&plan.commands, &s.fns, &BTreeSet::new())
            .unwrap();
    assert!(report.recomputed.is_empty());
    assert_eq!(s.gs.stats().kernel_failures, 0);
}

#[test]
fn a_plan_with_a_function_that_has_no_device_form_is_unsupported_and_changes_nothing() {
    let mut engine = Engine::new();
    let a = engine.create_page(16, PageLocation::Cpu).unwrap();
    let b = engine.create_page(16, PageLocation::Cpu).unwrap();
    engine.add_edge(a, b, EdgeKind::Data, None).unwrap();
    engine
        .set_recompute(b, RecomputeFn::Transform(ByteTransform::Map("not", |x| !x)))
        .unwrap();
    assert!(DeviceFn::from_recompute(&RecomputeFn::rust(|_, _| Ok(()))).is_none());
    let mut gs = GpuStore::emulated();
    gs.create_page(a, 16, PageLocation::Gpu).unwrap();
    gs.create_page(b, 16, PageLocation::Gpu).unwrap();
    let plan = engine
        .plan_commit(&[Delta::dense(a, 0, vec![1; 4])])
        .unwrap();
    let e = gs
        .run_wave(&plan.commands, &HashMap::new(), &[a].into_iter().collect())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unsupported);
    assert_eq!(gs.read(b).unwrap(), vec![0; 16]);
}

#[test]
fn steady_waves_with_graph_replay_capture_each_level_once_and_equal_the_engine() {
    // a -> b (xor) -> c (passthrough) -> d (add 3), all on the device.
    let mut s = build(
        4,
        &[(0, 0), (0, 0), (1, 1), (2, 2)],
        &[false, true, true, true],
        &[0, 1, 0, 2],
    );
    for p in 0..4 {
        let id = s.pages[p];
        if s.gs.location(id).unwrap() != PageLocation::Gpu {
            s.gs.migrate_page(id, PageLocation::Gpu).unwrap();
        }
    }
    s.gs.set_graph_replay(true);
    let a = s.pages[0];
    for round in 0..6u8 {
        assert!(commit_both(
            &mut s,
            &[Delta::dense(a, 0, vec![round + 1; 8])]
        ));
    }
    // Every device level is captured in the first wave and replayed in the
    // five after it (the same commands each time).
    let st = s.gs.stats().clone();
    assert!(st.graph_captures >= 3, "{st:?}");
    assert_eq!(st.graph_replays, 5 * st.graph_captures, "{st:?}");
    s.gs.set_graph_replay(false);
    assert!(commit_both(&mut s, &[Delta::dense(a, 0, vec![9; 8])]));
    assert_eq!(s.gs.stats().graph_replays, st.graph_replays);
}
