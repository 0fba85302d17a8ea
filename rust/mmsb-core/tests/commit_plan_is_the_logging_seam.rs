//! The seam for the durability layer: `plan_commit` returns the whole commit
//! (inputs, then derived deltas with provenance) without changing anything;
//! `apply_commit` applies it; replaying the same deltas on a copy of the pages
//! rebuilds the same state without running user code; a plan made before any
//! other change is refused. Also: non-data edge marks, events, deferred mode.

use mmsb_core::{
    ByteTransform, Delta, EdgeKind, Engine, ErrorCode, Event, EventKind, PageLocation, PageStore,
    PropagationMode, RecomputeFn,
};
use std::sync::{Arc, Mutex};

#[test]
fn planned_deltas_replay_to_the_same_state() {
    let mut e = Engine::new();
    let [a, b, c] = [(); 3].map(|_| e.create_page(8, PageLocation::Cpu).unwrap());
    e.add_edge(a, b, EdgeKind::Data, None).unwrap();
    e.add_edge(b, c, EdgeKind::Data, None).unwrap();
    e.set_recompute(b, RecomputeFn::Transform(ByteTransform::XorConst(0x0F)))
        .unwrap();
    e.set_recompute(c, RecomputeFn::Passthrough).unwrap();
    // A replica that only ever sees logged deltas.
    let mut replica = PageStore::new();
    for _ in 0..3 {
        replica.create_page(8, PageLocation::Cpu).unwrap();
    }
    for round in 0..4u8 {
        let input = [Delta::dense(a, 2, vec![round, round + 1])];
        let bytes_before: Vec<Vec<u8>> = [a, b, c]
            .iter()
            .map(|&p| e.store().read(p).unwrap())
            .collect();
        let plan = e.plan_commit(&input).unwrap();
        let bytes_after_plan: Vec<Vec<u8>> = [a, b, c]
            .iter()
            .map(|&p| e.store().read(p).unwrap())
            .collect();
        assert_eq!(bytes_before, bytes_after_plan, "planning changed pages");
        assert_eq!(plan.input_count, 1);
        for d in plan.derived() {
            assert!(d.source.starts_with("derived:"), "{}", d.source);
            let intent: serde_json::Value =
                serde_json::from_str(d.intent.as_deref().unwrap()).unwrap();
            assert_eq!(intent["cause"], "propagation");
            assert_eq!(intent["page"], d.page.get());
        }
        e.apply_commit(&plan).unwrap();
        for d in &plan.deltas {
            replica.apply_delta(d).unwrap();
        }
        for p in [a, b, c] {
            assert_eq!(replica.read(p).unwrap(), e.store().read(p).unwrap());
            assert_eq!(
                replica.page(p).unwrap().epoch(),
                e.store().page(p).unwrap().epoch()
            );
        }
    }
    let d = &e
        .plan_commit(&[Delta::dense(a, 0, vec![9])])
        .unwrap()
        .deltas[1];
    assert_eq!(d.source, format!("derived:{a}"));
    assert_eq!(d.page, b);
    assert_eq!(
        (d.offset, d.len),
        (0, 1),
        "a derived delta covers the changed range only"
    );
}

#[test]
fn a_plan_made_before_another_change_is_refused() {
    let mut e = Engine::new();
    let a = e.create_page(4, PageLocation::Cpu).unwrap();
    let plan = e.plan_commit(&[Delta::dense(a, 0, vec![1])]).unwrap();
    e.commit(&[Delta::dense(a, 0, vec![2])]).unwrap();
    let err = e.apply_commit(&plan).unwrap_err();
    assert_eq!(err.code, ErrorCode::TransactionConflict);
    assert!(err.is_retryable());
    assert_eq!(e.store().read(a).unwrap()[0], 2);
}

#[test]
fn non_data_edges_mark_and_events_reach_subscribers() {
    let mut e = Engine::new();
    let [a, s, g, k] = [(); 4].map(|_| e.create_page(4, PageLocation::Cpu).unwrap());
    e.add_edge(a, s, EdgeKind::Control, None).unwrap();
    e.add_edge(a, g, EdgeKind::GpuSync, None).unwrap();
    e.add_edge(a, k, EdgeKind::Compiler, None).unwrap();
    let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
    let mut subs = vec![];
    for kind in [
        EventKind::PageChanged,
        EventKind::Stale,
        EventKind::Invalidated,
    ] {
        let seen = Arc::clone(&seen);
        subs.push(e.subscribe(kind, move |ev| seen.lock().unwrap().push(*ev)));
    }
    let r = e.commit(&[Delta::dense(a, 0, vec![1])]).unwrap();
    assert_eq!(
        (r.stale.clone(), r.gpu_sync.clone(), r.invalidated.clone()),
        (vec![s], vec![g], vec![k])
    );
    assert!(e.is_stale(s) && e.is_invalidated(k));
    assert!(e.pending_gpu_sync().contains(&g));
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            Event::PageChanged { page: a, epoch: 1 },
            Event::Stale { page: s, cause: a },
            Event::Invalidated { page: k, cause: a },
        ]
    );
    // A no-op delta changes nothing and triggers nothing.
    seen.lock().unwrap().clear();
    e.commit(&[Delta::dense(a, 0, vec![1])]).unwrap();
    assert!(seen.lock().unwrap().is_empty());
    // Writing the stale and invalidated pages clears their marks.
    e.commit(&[Delta::dense(s, 0, vec![1]), Delta::dense(k, 0, vec![1])])
        .unwrap();
    assert!(!e.is_stale(s) && !e.is_invalidated(k));
    assert_eq!(e.take_gpu_sync().into_iter().collect::<Vec<_>>(), vec![g]);
    assert!(e.pending_gpu_sync().is_empty());
    // Unsubscribed callbacks hear nothing more.
    for id in subs {
        assert!(e.unsubscribe(id));
        assert!(!e.unsubscribe(id));
    }
    seen.lock().unwrap().clear();
    e.commit(&[Delta::dense(a, 0, vec![2])]).unwrap();
    assert!(seen.lock().unwrap().is_empty());
}

#[test]
fn deferred_commits_batch_into_one_wave() {
    let mut e = Engine::new();
    e.set_mode(PropagationMode::Deferred);
    let [a, b, sum] = [(); 3].map(|_| e.create_page(1, PageLocation::Cpu).unwrap());
    e.add_edge(a, sum, EdgeKind::Data, None).unwrap();
    e.add_edge(b, sum, EdgeKind::Data, None).unwrap();
    let calls = Arc::new(Mutex::new(0));
    let c2 = Arc::clone(&calls);
    e.set_recompute(
        sum,
        RecomputeFn::rust_bytes(move |inp| {
            *c2.lock().unwrap() += 1;
            Ok(vec![inp.inputs[0][0].wrapping_add(inp.inputs[1][0])])
        }),
    )
    .unwrap();
    e.propagate().unwrap();
    *calls.lock().unwrap() = 0;
    for i in 0..10u8 {
        let p = if i % 2 == 0 { a } else { b };
        e.commit(&[Delta::dense(p, 0, vec![i])]).unwrap();
    }
    assert_eq!(
        e.store().read(sum).unwrap(),
        vec![0],
        "deferred: not yet propagated"
    );
    assert_eq!(e.dirty_pages().len(), 2);
    let r = e.propagate().unwrap();
    assert_eq!(*calls.lock().unwrap(), 1, "ten commits, one wave, one call");
    assert_eq!(r.recomputed, vec![sum]);
    assert_eq!(e.store().read(sum).unwrap(), vec![8 + 9]);
    assert!(e.dirty_pages().is_empty());
}

#[test]
fn edges_need_existing_pages_and_deleting_a_page_cleans_up() {
    let mut e = Engine::new();
    let [a, b] = [(); 2].map(|_| e.create_page(2, PageLocation::Cpu).unwrap());
    let ghost = mmsb_core::PageId(999);
    assert_eq!(
        e.add_edge(a, ghost, EdgeKind::Data, None).unwrap_err().code,
        ErrorCode::NotFound
    );
    e.add_edge(a, b, EdgeKind::Data, None).unwrap();
    e.set_recompute(b, RecomputeFn::Passthrough).unwrap();
    let err = e.add_edge(b, a, EdgeKind::Control, None).unwrap_err();
    assert_eq!(err.code, ErrorCode::Cycle);
    assert_eq!(err.cycle_path(), Some(&[b, a, b][..]));
    e.commit(&[Delta::dense(a, 0, vec![3, 4])]).unwrap();
    assert_eq!(e.store().read(b).unwrap(), vec![3, 4]);
    e.delete_page(a).unwrap();
    assert_eq!(e.graph().edge_count(), 0);
    // b lost its only input: its forced recompute now fails cleanly.
    let err = e.propagate().unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    e.clear_recompute(b).unwrap();
    e.propagate().unwrap();
}
